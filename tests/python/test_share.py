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


def test_a_forked_child_leaves_the_parents_connection_alone(daemon, client):
    """fork() (multiprocessing's default on Linux) copies the Client, whose socket is the parent's
    connection: a request or a Region's deallocation in the child would act on the parent's regions
    and could read the parent's replies.  The child sees the client closed and sends nothing."""
    import gc
    import os
    r = client.alloc("h", 8192, name="fork/kept")
    r.as_array("uint8")[:4] = 9
    k = client.kind("h")
    b = k.malloc(64)
    gc.collect()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = 1
            assert client.closed and not r.live and not b.live and not k.live
            code = 2
            with pytest.raises(ValueError, match="fork"):
                client.alloc("h", 4096)
            with pytest.raises(ValueError, match="fork"):
                client.status()
            with pytest.raises(ValueError):
                memoryview(r)
            with pytest.raises(ValueError):
                r.free()
            with pytest.raises(ValueError):
                k.malloc(64)
            code = 3
            m = allocd.connect(daemon.sock, name="forked")  # a connection of its own works
            assert m.attach("fork/kept").as_array("uint8")[0] == 9
            m.close()
            code = 4
            del b, k, r  # deallocation detaches nothing of the parent's
            client.close()
            gc.collect()
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert r.live and b.live and k.live and not client.closed
    assert [x["name"] for x in client.dump()].count("fork/kept") == 1
    assert len(region_ids(client)) == 2  # r and the kind's region
    assert client.status()["pools"] and r.as_array("uint8")[0] == 9
    b.free()
    k.destroy()
    r.free()
    assert region_ids(client) == []
