#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Python: the time to get a shared array into NumPy through allocd against
multiprocessing.shared_memory.SharedMemory + numpy.ndarray(buffer=...), at 4 KiB, 1 MiB and 64 MiB,
and what DLPack costs per call.  `./dev.sh bench python [--json] [--rounds N]`.

Both sides run in this process, interleaved (one allocd turn, one SharedMemory turn), against an allocd
started here on a private socket with a 256 MiB host pool; each figure is the median of the turns.
  create   alloc + as_array      | SharedMemory(create=True) + ndarray, and back: free | close + unlink
  +fill    the same, writing every byte once (page faults: where the memory comes from matters)
  open     attach by name + as_array from a second connection | SharedMemory(name) + ndarray
DLPack: region.__dlpack__ + numpy.from_dlpack / torch.from_dlpack of a View, per call, against
numpy.frombuffer(region) (the buffer protocol) as the baseline.
Kinds: kind.malloc(n) + free(), and kind.malloc(n) + as_array(), per call, against numpy.empty(n) (the
process's own heap) at 64 B to 1 MiB, interleaved batches; the ratio is kind / numpy.empty.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import shared_memory

import numpy as np

import allocd

SIZES = [(4096, "4 KiB", 2000), (1 << 20, "1 MiB", 500), (64 << 20, "64 MiB", 20)]


def start_allocd(d):
    """allocd on a socket in d, once it says READY=1; an allocd that exits first or takes 20 s fails."""
    conf, sock, notify = (os.path.join(d, n) for n in ("allocd.conf", "allocd.sock", "notify"))
    with open(conf, "w") as f:
        f.write("[pool h]\nkind = host\nsize = 256M\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as n:
        n.bind(notify)
        n.settimeout(0.1)
        p = subprocess.Popen([os.environ.get("ALLOCD_PATH", "build/daemon/allocd"), "--socket", sock, "--config",
                              conf, "--log-level", "warning"], env=dict(os.environ, NOTIFY_SOCKET=notify))
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    if b"READY=1" in n.recv(4096):
                        return p, sock
                except socket.timeout:
                    pass
                if p.poll() is not None:
                    sys.exit("python-bench: allocd exited with status %d before it was ready" % p.returncode)
                if time.monotonic() > deadline:
                    sys.exit("python-bench: allocd was not ready after 20 s")
        except BaseException:
            p.kill()
            p.wait()
            raise


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def timed(fn):
    t = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t


def compare(rounds, sizes, c, c2):
    rows = []
    for size, label, n in sizes:
        n = max(3, n * rounds // 100)
        res = {k: [] for k in ("allocd create", "shm create", "allocd +fill", "shm +fill", "allocd open", "shm open")}
        for i in range(n):
            for fill in (False, True):
                def a_get():
                    r = c.alloc("h", size)
                    a = r.as_array()
                    if fill:
                        a.fill(1)
                    del a
                    r.free()

                def s_get():
                    s = shared_memory.SharedMemory(create=True, size=size)
                    a = np.ndarray((size,), np.uint8, buffer=s.buf)
                    if fill:
                        a.fill(1)
                    del a
                    s.close()
                    s.unlink()

                key = "+fill" if fill else "create"
                res["allocd " + key].append(timed(a_get))
                res["shm " + key].append(timed(s_get))
            r = c.alloc("h", size, name="bench/open")
            s = shared_memory.SharedMemory(create=True, size=size)

            def a_open():
                g = c2.attach("bench/open")
                a = g.as_array()
                del a
                g.detach()

            def s_open():
                o = shared_memory.SharedMemory(name=s.name)
                a = np.ndarray((size,), np.uint8, buffer=o.buf)
                del a
                o.close()

            res["allocd open"].append(timed(a_open))
            res["shm open"].append(timed(s_open))
            r.free()
            s.close()
            s.unlink()
        m = {k: median(v) / 1000 for k, v in res.items()}
        rows.append({"size": size, "label": label, "turns": n, **{k.replace(" ", "_"): v for k, v in m.items()}})
    return rows


def interleaved(calls, rounds):
    """ns per call of each of calls, the median of 5 batches taken in turn."""
    n = max(100, 20000 * rounds // 100)
    out = {k: [] for k in calls}
    for _ in range(5):
        for k, fn in calls.items():
            t = time.perf_counter_ns()
            for _ in range(n // 5):
                fn()
            out[k].append((time.perf_counter_ns() - t) / (n // 5))
    return {k: median(v) for k, v in out.items()}


def dlpack_costs(rounds, c):
    r = c.alloc("h", 1 << 20)
    v = r.view("float32", (256, 1024))
    calls = {
        "numpy.frombuffer(region) (baseline)": lambda: np.frombuffer(r, np.float32),
        "region.__dlpack__() alone": lambda: r.__dlpack__(),
        "numpy.from_dlpack(view)": lambda: np.from_dlpack(v),
        "numpy.from_dlpack(region.view(...))": lambda: np.from_dlpack(r.view("float32", (256, 1024))),
    }
    try:
        import torch
        calls["torch.from_dlpack(view)"] = lambda: torch.from_dlpack(v)
        calls["torch.from_numpy(frombuffer) (baseline)"] = lambda: torch.from_numpy(np.frombuffer(r, np.float32))
    except ImportError:
        pass
    res = [{"call": k, "ns": ns} for k, ns in interleaved(calls, rounds).items()]
    r.free()
    return res


KIND_SIZES = [64, 4096, 65536, 1 << 20]


def kind_costs(rounds, c):
    rows = []
    with c.kind("h") as k:
        for size in KIND_SIZES:
            calls = {
                "malloc_free": lambda: k.malloc(size).free(),
                "malloc_array": lambda: k.malloc(size).as_array(),
                "numpy_empty": lambda: np.empty(size, np.uint8),
            }
            rows.append({"size": size, **interleaved(calls, rounds)})
        rows.append({"round_trips": k.stats()["round_trips"]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--rounds", type=int, default=100, help="percent of the default number of turns")
    ap.add_argument("--cpu", type=int, help="pin this process to CPU N")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    d = tempfile.mkdtemp(prefix="allocd-pybench-")
    try:
        p, sock = start_allocd(d)
        try:
            with allocd.connect(sock, "bench") as c, allocd.connect(sock, "bench-open") as c2:
                rows = compare(args.rounds, SIZES, c, c2)
                dl = dlpack_costs(args.rounds, c)
                kinds = kind_costs(args.rounds, c)
        finally:
            p.terminate()
            p.wait()
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)
    where = {"python": sys.version.split()[0], "numpy": np.__version__, "cpus": sorted(os.sched_getaffinity(0))}
    if args.json:
        print(json.dumps({"where": where, "arrays": rows, "dlpack": dl, "kind": kinds}, indent=2))
        return
    print("shared array into NumPy, median us per turn (allocd / SharedMemory: the ratio; < 1: allocd faster)")
    print("%-8s %6s  %10s %10s %6s  %10s %10s %6s  %10s %10s %6s" % (
        "size", "turns", "allocd", "shm", "ratio", "+fill", "shm+fill", "ratio", "open", "shm open", "ratio"))
    for r in rows:
        print("%-8s %6d  %10.1f %10.1f %6.2f  %10.1f %10.1f %6.2f  %10.1f %10.1f %6.2f" % (
            r["label"], r["turns"], r["allocd_create"], r["shm_create"], r["allocd_create"] / r["shm_create"],
            r["allocd_+fill"], r["shm_+fill"], r["allocd_+fill"] / r["shm_+fill"], r["allocd_open"],
            r["shm_open"], r["allocd_open"] / r["shm_open"]))
    print("\nDLPack, ns per call (1 MiB region as float32 (256, 1024))")
    for x in dl:
        print("  %-42s %8.0f" % (x["call"], x["ns"]))
    print("\nKind blocks against numpy.empty, ns per call (ratio: kind / numpy.empty)")
    print("%-8s %12s %12s %12s %8s %8s" % ("size", "malloc+free", "+as_array", "numpy.empty", "ratio", "ratio"))
    for x in kinds[:-1]:
        print("%-8d %12.0f %12.0f %12.0f %8.2f %8.2f" % (x["size"], x["malloc_free"], x["malloc_array"],
                                                         x["numpy_empty"], x["malloc_free"] / x["numpy_empty"],
                                                         x["malloc_array"] / x["numpy_empty"]))
    print("  round trips to allocd over all of them: %d" % kinds[-1]["round_trips"])
    print("\n(%s; CPUs %s)" % (", ".join("%s %s" % kv for kv in where.items() if kv[0] != "cpus"), where["cpus"]))


if __name__ == "__main__":
    main()
