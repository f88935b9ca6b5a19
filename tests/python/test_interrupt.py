# SPDX-License-Identifier: MIT
"""Ctrl-C (SIGINT) ends a call that waits in allocd with KeyboardInterrupt, as PEP 475 says a
blocking call does; the wait leaves allocd's queue, and the client carries on."""
import signal
import subprocess
import time

import pytest

from conftest import daemon_fixture, used

WAITER = """
import sys, allocd
c = allocd.connect(sys.argv[1], name="waiter")
print("ready", flush=True)
try:
    if sys.argv[2] == "attach":
        c.attach("never/published", timeout=600)
    else:
        c.alloc("small", 4096, nofail=True)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
mine = [k for k in c.status()["clients"] if k["name"] == "waiter"]
print("waiters", sum(k["waiters"] for k in mine), flush=True)
r = c.alloc("h", 4096)
print("works", r.size, flush=True)
"""


def waiters(c):
    return sum(k["waiters"] for k in c.status()["clients"])


@pytest.mark.parametrize("how", ["attach", "nofail"])
def test_ctrl_c_ends_a_wait(daemon, client, how):
    full = client.alloc("small", 65536)  # a nofail allocation waits for room
    assert used(client, "small") == 65536
    p = daemon.python(WAITER, how)
    try:
        assert p.stdout.readline().strip() == "ready"
        end = time.monotonic() + 10
        while waiters(client) != 1 and time.monotonic() < end:
            time.sleep(0.01)
        assert waiters(client) == 1, "the child's call did not wait in allocd"
        start = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=10)
        took = time.monotonic() - start
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.split("\n")[:3] == ["interrupted", "waiters 0", "works 4096"], out
    assert p.returncode == 0
    assert took < 3, f"KeyboardInterrupt came {took:.1f} s after SIGINT"
    assert used(client, "small") == 65536, "a region was left behind"
    full.free()



FREER = """
import sys, threading, allocd
c = allocd.connect(sys.argv[1])
k = c.kind("big", arena="bijective", usage="conservative")  # an emptied region goes back at once
done = threading.Event()
def frees():
    while not done.is_set():
        blocks = [k.malloc((1 << 20) + 1) for _ in range(100)]
        del blocks  # 100 Frees, the GIL held around them, more than PIPE_MAX in flight
def waits():
    try:
        c.attach("never/published", timeout=2)  # it reads the connection's replies meanwhile
    except allocd.Timeout:
        pass
    done.set()
one, other = (frees, waits) if sys.argv[2] == "thread" else (waits, frees)
t = threading.Thread(target=other)
t.start()
one()
done.wait()
t.join()
print("done", flush=True)
"""
big = daemon_fixture("[pool big]\nkind = host\nsize = 256M\n")


@pytest.mark.parametrize("waits_in", ["thread", "main"])
def test_frees_while_another_thread_waits(big, waits_in):
    """A wait's interrupted() is asked every 50 ms and after each reply it reads, and in the main
    thread it takes the GIL: no thread may hold the GIL while it waits for that reader (a Block's
    free, which may wait for room among the requests in flight); elsewhere no GIL is taken."""
    p = big.python(FREER, waits_in)
    try:
        out, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        pytest.fail("the frees and the waiting thread deadlocked on the GIL")
    assert out.strip() == "done" and p.returncode == 0, out
