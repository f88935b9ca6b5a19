# SPDX-License-Identifier: MIT
"""Ctrl-C (SIGINT) ends a call that waits in allocd with KeyboardInterrupt, as PEP 475 says a
blocking call does; the wait leaves allocd's queue, and the client carries on."""
import signal
import subprocess
import time

import pytest

from conftest import used

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
