# SPDX-License-Identifier: MIT
"""Runs the Python module's tests (meson test python): pytest over this directory, or SKIP (77)
with the reason when pytest is missing (Debian: python3-pytest; scripts/install-deps.sh installs it)."""
import os
import sys

try:
    import pytest
except ImportError:
    print("SKIP: pytest is not importable by %s (Debian: python3-pytest)" % sys.executable)
    sys.exit(77)

here = os.path.dirname(os.path.abspath(__file__))
# -rs: say why each skipped test skipped; no cache directory in the source tree.
sys.exit(pytest.main(["-q", "-rs", "-p", "no:cacheprovider", here] + sys.argv[1:]))
