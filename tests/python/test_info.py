# SPDX-License-Identifier: MIT
"""status() and dump() have the fields and values of `allocctl --json status` and `dump`."""
import json
import os
import signal
import subprocess
import time

from conftest import ALLOCCTL, CONFIG, as_nobody

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


def pool(status, name):
    return next(p for p in status["pools"] if p["name"] == name)


def test_status_shows_each_pools_access_and_use_per_uid(daemon, client):
    """Rules to anyone, as ls -l shows a file's; use per uid, the most first, to who may see the regions."""
    held = [client.alloc("quota", 8192), client.alloc("quota", 4096), client.alloc("private", 4096)]

    def child():
        with daemon.connect("nobody") as c:
            c.alloc("quota", 16384, persist=True)  # outlives the connection: allocd holds it
            s = c.status()
            private, quota = pool(s, "private"), pool(s, "quota")
            if private["usage"] or not private["usage_hidden"] or private["mode"] != "0600":
                return 1  # nobody may neither attach nor allocate there: root's use is not its to see
            if quota["usage_hidden"] or [u["uid"] for u in quota["usage"]] != [65534, 0]:
                return 2
        return 0
    assert as_nobody(child) == 0
    s, j = client.status(), allocctl(daemon, "status")
    assert without(s) == without(j)
    q = pool(s, "quota")
    assert (q["owner"], q["owner_name"], q["group"], q["group_name"]) == (0, "root", 0, "root")
    assert (q["mode"], q["quota_per_uid"], q["usage_omitted"], q["usage_hidden"]) == ("0666", 64 << 10, 0, False)
    assert q["usage"] == [{"uid": 65534, "user": "nobody", "bytes": 16384, "regions": 1},
                          {"uid": 0, "user": "root", "bytes": 12288, "regions": 2}]
    assert pool(s, "private")["usage"] == [{"uid": 0, "user": "root", "bytes": 4096, "regions": 1}]
    assert pool(s, "h")["usage"] == [] and pool(s, "h")["mode"] == "0664"
    del held
