# SPDX-License-Identifier: MIT
"""status() and dump() have the fields and values of `allocctl --json status` and `dump`."""
import json
import os
import signal
import subprocess
import time

from conftest import ALLOCCTL, CONFIG

VARY = {"uptime", "age", "clients"}  # what changes between the two calls, or who is connected


def allocctl(daemon, *args):
    out = subprocess.run([ALLOCCTL, "--socket", daemon.sock, "--json"] + list(args), check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def without(d, keys=VARY):
    return {k: v for k, v in d.items() if k not in keys}


def test_status_and_dump_are_allocctls(daemon, client):
    held = [client.alloc("h", 8192, name="job/x", zero=True), client.alloc("f", 4096, count=2, persist=True)]
    s, j = client.status(), allocctl(daemon, "status")
    assert without(s) == without(j)
    assert sorted(s["clients"][0]) == sorted(j["clients"][0])
    mine = [c for c in s["clients"] if c["name"] == "test"]
    assert len(mine) == 1 and mine[0]["regions"] == 2 and mine[0]["bytes"] == 8192 + 8192
    d, jd = client.dump(), allocctl(daemon, "dump")
    assert len(d) == 2
    assert [without(x, {"age", "holders"}) for x in d] == [without(x, {"age", "holders"}) for x in jd]
    assert d[0]["flags"] == ["zero"] and d[0]["name"] == "job/x" and d[1]["flags"] == ["persist"]
    assert d[1]["name"] is None and d[0]["holders"][0]["name"] == "test"
    assert [x["pool"] for x in client.dump("f")] == ["f"]
    assert client.dump(pool="small") == []
    del held


def test_a_draining_pool_says_so_as_allocctl_does(daemon, client):
    held = client.alloc("small", 4096)
    with open(os.path.join(daemon.dir, "allocd.conf"), "w") as f:
        f.write(CONFIG.replace("[pool small]\nkind = host\nsize = 64K\n", ""))
    daemon.proc.send_signal(signal.SIGHUP)
    end = time.monotonic() + 10
    while "SIGHUP: reloaded" not in daemon.logtext() and time.monotonic() < end:
        time.sleep(0.01)
    s, j = client.status(), allocctl(daemon, "status")
    small = [p for p in s["pools"] if p["name"] == "small"]
    assert small and small[0].get("draining", "").startswith("taken out of the configuration at a reload")
    assert without(s) == without(j)
    del held
