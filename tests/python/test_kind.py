# SPDX-License-Identifier: MIT
"""Kinds (Client.kind): blocks of many sizes as NumPy arrays and torch tensors without a copy, inside
regions allocd lists and charges, given back as the usage policy says, kept while a DLPack export
lives, and bad arguments each refused with the right class."""
import gc
import time

import pytest

import allocd
from conftest import PINNED_SKIP, daemon_fixture, used, wait_used

np = pytest.importorskip("numpy", reason="NumPy is not importable (Debian: python3-numpy)")

MIB = 1 << 20
CONFIG = """\
[pool k]
kind = host
size = 64M
[pool tiny]
kind = host
size = 64K
[pool f]
kind = fpga
ranges = 0x200000+8M
"""
SIZES = [0, 1, 7, 16, 100, 4096, 5000, 16384, 16385, 100000, MIB, 3 * MIB + 5]
kdaemon = daemon_fixture(CONFIG)


@pytest.fixture
def kc(kdaemon):
    with kdaemon.connect() as c:
        yield c


def test_blocks_are_numpy_and_torch_without_a_copy(kc):
    torch = pytest.importorskip("torch", reason="PyTorch is not importable (Debian: python3-torch)")
    with kc.kind("k") as k:
        blocks = [k.malloc(n) for n in SIZES]
        for b, n in zip(blocks, SIZES):
            assert b.size == n and b.usable_size >= n and b.kind is k and allocd.kind_of(b) is k
            assert b.__dlpack_device__() == (allocd.kDLCPU, 0)
            a = b.as_array()
            t = torch.from_dlpack(b)
            assert a.shape == (n,) and t.shape == (n,) and memoryview(b).nbytes == n
            if n == 0:
                continue
            assert a.ctypes.data == b.ptr == t.data_ptr(), "a copy"
            assert np.from_dlpack(b).ctypes.data == b.ptr
            assert allocd.kind_of(a) is k and allocd.kind_of(t) is k and allocd.kind_of(b.ptr + n - 1) is k
            t[:] = n % 251
            assert int(a[0]) == int(a[-1]) == n % 251
            a[n // 2] = 99
            assert int(t[n // 2]) == 99
        # Typed views: torch writes, NumPy reads, and back.
        b = k.malloc(4096 * 8, align=4096)
        assert b.ptr % 4096 == 0
        t = torch.from_dlpack(b.view(torch.float64, (64, 64)))
        assert t.stride() == (64, 1) and t.data_ptr() == b.ptr
        t[63, 63] = 2.5
        assert b.as_array("float64", (64, 64))[63, 63] == 2.5
        # Distinct blocks do not overlap.
        spans = sorted((x.ptr, x.ptr + x.size) for x in blocks + [b] if x.size)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    assert allocd.kind_of(np.zeros(4)) is None and allocd.kind_of(0) is None


def test_blocks_lie_in_regions_allocd_lists(kc):
    probe = kc.alloc("k", 4096)
    base = probe.ptr - probe.addr  # the pool's start in this process
    probe.free()
    k = kc.kind("k", arena="bijective")
    blocks = [k.malloc(n) for n in SIZES[:-2] * 20 + SIZES[-2:]]
    st = k.stats()
    regions = kc.dump("k")
    assert len(regions) == st["regions"] >= 2, "allocd lists the kind's regions, and only them"
    assert used(kc, "k") == st["region_bytes"] == sum(r["size"] for r in regions)
    for b in blocks:
        off = b.ptr - base
        assert any(r["addr"] <= off and off + b.size <= r["addr"] + r["size"] for r in regions), b
    del blocks
    k.destroy()
    assert not k.live and used(kc, "k") == 0


def test_free_and_decay_in_status(kc):
    k = kc.kind("k", arena="bijective", decay_ms=200)
    blocks = [k.malloc(MIB + 1) for _ in range(8)]
    held = used(kc, "k")
    assert held >= 8 * MIB and k.stats()["region_bytes"] == held
    for b in blocks:
        b.free()
        assert not b.live
    assert used(kc, "k") == held, "the default policy keeps empty regions for decay_ms"
    time.sleep(0.3)
    k.malloc(MIB + 1).free()  # the arena decays when its lock is next taken
    assert used(kc, "k") <= 2 * MIB < held
    # conservative: at once.
    blocks = [k.malloc(MIB + 1) for _ in range(8)]
    assert used(kc, "k") >= 8 * MIB
    k.update_memory_usage_policy("conservative")
    del blocks
    assert used(kc, "k") == 0 == k.stats()["regions"]
    c2 = kc.kind("k", usage="conservative")
    b = c2.malloc(5 * MIB)
    assert used(kc, "k") >= 5 * MIB
    b.free()
    assert used(kc, "k") == 0


def test_an_export_keeps_the_block(kc):
    torch = pytest.importorskip("torch", reason="PyTorch is not importable (Debian: python3-torch)")
    k = kc.kind("k", arena="bijective")
    b = k.malloc(3 * MIB)
    ptr = b.ptr
    t = torch.from_dlpack(b)
    del b
    gc.collect()
    other = k.malloc(3 * MIB)
    assert other.ptr != ptr, "the block went back to its kind while a tensor viewed it"
    other.free()
    t[-1] = 7
    m = memoryview(k.malloc(3 * MIB))
    assert m.obj.ptr != ptr
    del m
    # destroy() and close() wait for it too, and then give everything back.
    k.destroy()
    assert used(kc, "k") >= 3 * MIB and allocd.kind_of(t) is k
    t[0] = 1
    del t
    gc.collect()
    assert used(kc, "k") == 0
    # A block freed while exported goes when the export goes: its place is then reused.
    k = kc.kind("k", arena="bijective")
    b = k.malloc(3 * MIB)
    ptr = b.ptr
    cap = b.__dlpack__()
    b.free()
    x = k.malloc(3 * MIB)
    assert x.ptr != ptr
    del cap
    assert k.malloc(3 * MIB).ptr == ptr


def test_a_closed_client_under_kinds_and_blocks(kdaemon, kc):
    other = kdaemon.connect("other")
    k = other.kind("k")
    b, kept = k.malloc(1000), k.malloc(2000)
    a = kept.as_array()
    other.close()
    for call in (lambda: k.malloc(8), k.stats, b.free, lambda: b.as_array(), lambda: memoryview(b),
                 lambda: b.__dlpack__(), lambda: k.update_memory_usage_policy("default")):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert not k.live and not b.live and allocd.kind_of(b) is None
    a[:] = 1  # the connection stays while the array lives
    assert used(kc, "k") == 2 * MIB
    del a, kept, b
    gc.collect()
    assert wait_used(kc, "k", 0) == 0
    k.destroy()  # harmless now
    del k
    gc.collect()


def test_bad_arguments(kc):
    with pytest.raises(allocd.NoPool):
        kc.kind("nope")
    with pytest.raises(allocd.TooBig):
        kc.kind("tiny")  # no room for a 2 MiB region
    with pytest.raises(allocd.Invalid, match="fpga"):
        kc.kind("f")
    with pytest.raises(allocd.Invalid, match="2 MiB"):
        kc.kind("k", region_size=3 * MIB)
    for kw in ({"arena": "fifo"}, {"usage": "eager"}, {"region_size": -1}, {"decay_ms": 1 << 40},
               {"timeout": 0}):
        with pytest.raises(ValueError):
            kc.kind("k", **kw)
    with pytest.raises(TypeError):
        kc.kind(None)
    with pytest.raises(TypeError):
        kc.kind("k", region_size="2M")
    assert used(kc, "k") == 0, "a refused kind holds nothing"
    k = kc.kind("k")
    with pytest.raises(ValueError):
        k.malloc(-1)
    with pytest.raises(TypeError):
        k.malloc("12")
    with pytest.raises(TypeError):
        k.malloc(12, bogus=1)
    with pytest.raises(allocd.Invalid, match="power of two"):
        k.malloc(12, align=24)
    with pytest.raises(allocd.Invalid):
        k.malloc(12, align=4)
    with pytest.raises(allocd.NoMemory) as e:
        k.malloc(1 << 40)
    assert isinstance(e.value, MemoryError) and e.value.errno == 12 and "pool k" in str(e.value)
    with pytest.raises(ValueError):
        k.update_memory_usage_policy("eager")
    b = k.malloc(64)
    with pytest.raises(ValueError, match="shape"):
        b.as_array("float32", (100,))
    with pytest.raises(BufferError, match="copy"):
        b.__dlpack__(copy=True)
    with pytest.raises(TypeError):
        allocd.kind_of(object())
    b.free()
    with pytest.raises(ValueError, match="freed"):
        b.free()
    k.destroy()
    with pytest.raises(ValueError, match="destroyed"):
        k.malloc(8)
    k.destroy()  # again: nothing


PINNED = "[pool pin]\nkind = pinned\nsize = 8M\nbackend = memfd\n[pool g]\nkind = gpu\ndevice = 0\nsize = 64M\n"
gpu_daemon = daemon_fixture(PINNED, PINNED_SKIP)


def test_pinned_kind(gpu_daemon):
    with gpu_daemon.connect() as c:
        k = c.kind("pin")
        b = k.malloc(10000, zero=True)
        r = c.alloc("pin", 4096)
        assert k.memory == "pinned"
        assert b.__dlpack_device__() == r.__dlpack_device__()
        a = b.as_array()
        assert (a == 0).all()
        a[9999] = 42
        assert np.from_dlpack(b.view(device="cpu"))[9999] == 42


def test_gpu_kind(gpu_daemon):
    why = allocd.cuda_unavailable()
    if why:
        pytest.skip("no usable GPU here: %s" % why)
    with gpu_daemon.connect() as c:
        k = c.kind("g")
        assert k.memory == "gpu"
        b = k.malloc(MIB)
        assert b.__dlpack_device__() == (allocd.kDLCUDA, b.device)
        with pytest.raises(BufferError, match="gpu"):
            memoryview(b)
        with pytest.raises(allocd.Error) as e:
            k.malloc(64, zero=True)
        assert e.value.errno == 95  # ENOTSUP: the CPU cannot zero device memory
        assert allocd.kind_of(b) is k
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            t = torch.from_dlpack(b.view(torch.float32, (MIB // 4,)))
            assert t.device.type == "cuda" and t.data_ptr() == b.ptr
            t.fill_(3.0)
            assert float(t.sum()) == 3.0 * MIB / 4
