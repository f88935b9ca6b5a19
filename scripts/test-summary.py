#!/usr/bin/env python3
"""Prints one closing line for a meson test run: 'tests: N passed, N failed, N skipped'.

Criterion executables report how many tests they ran ("Synthesis: Tested: N | Passing: N |
Failing: N | Crashing: N"); other executables count as one test each.  Exit status: 1 if any
test failed, else 0.
"""
import json
import re
import sys

SYNTH = re.compile(r"Synthesis: Tested: *(\d+) *\| *Passing: *(\d+) *\| *Failing: *(\d+) *\| *Crashing: *(\d+)")

passed = failed = skipped = 0
with open(sys.argv[1]) as log:
    for line in log:
        t = json.loads(line)
        result = t.get("result")
        m = SYNTH.search(t.get("stdout", "") + t.get("stderr", ""))
        if result == "SKIP":
            skipped += 1
        elif m:
            passed += int(m.group(2))
            failed += int(m.group(3)) + int(m.group(4))
            # a binary that failed without a failing test (crash, sanitizer) still fails
            if result not in ("OK", "EXPECTEDFAIL") and int(m.group(3)) + int(m.group(4)) == 0:
                failed += 1
        elif result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        else:
            failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
