# SPDX-License-Identifier: MIT
"""status() and dump() have the fields and values of `allocctl --json status` and `dump`."""
import json
import subprocess

from conftest import ALLOCCTL

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
