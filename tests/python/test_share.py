# SPDX-License-Identifier: MIT
"""Two processes share a named region through NumPy; a killed process gives its regions back."""
import signal
import subprocess

import pytest

import allocd

from conftest import region_ids, wait_used

np = pytest.importorskip("numpy", reason="NumPy is not importable (Debian: python3-numpy)")

CHILD = """
import sys, allocd, numpy as np
with allocd.connect(sys.argv[1], name="child") as c:
    r = c.attach("job/buffer", timeout=10)
    a = r.as_array("float64", (2, 512))
    assert (a[0] == np.arange(512)).all(), a[0][:8]
    a[1] = a[0] * 2          # the parent sees this
    print(r.owner, r.pool, r.sealed, flush=True)
"""


def test_two_processes_share_a_named_region(daemon, client):
    r = client.alloc("h", 8192, name="job/buffer", zero=True)
    a = r.as_array("float64", (2, 512))
    a[0] = np.arange(512)
    child = daemon.python(CHILD)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert out.split() == [str(r.owner), "h", "True"]
    assert (a[1] == np.arange(512) * 2).all()


HOLDER = """
import sys, allocd
c = allocd.connect(sys.argv[1], name="holder")
a = c.alloc("h", 65536, name="held/one")
b = c.alloc("h", 4096, count=4, persist=False)
v = a.as_array("uint8")   # an array over it, too
v[:] = 7
print("holding", flush=True)
sys.stdin.read()          # until killed
"""


def test_a_killed_process_gives_its_regions_back(daemon, client):
    p = daemon.python(HOLDER, stdin=subprocess.PIPE)
    assert p.stdout.readline().strip() == "holding"
    assert wait_used(client, "h", 65536 + 16384) == 65536 + 16384
    assert len(region_ids(client)) == 2
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert wait_used(client, "h", 0) == 0
    assert region_ids(client) == []
    with pytest.raises(allocd.NotFound):
        client.attach("held/one")
