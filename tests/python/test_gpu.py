# SPDX-License-Identifier: MIT
"""pinned and gpu pools.  pinned regions run everywhere (without a GPU allocd keeps a memfd pinned pool
as locked shared memory, and the region says kDLCPU: nothing registered it with CUDA); the gpu test
skips where this process cannot use CUDA.  On a GPU it checks the DLPack device and pointer, then
writes in one process and reads in another, through torch.cuda where Debian's CPU-only PyTorch is
not what is installed, else through the driver (ctypes), which is always there with a GPU."""
import pytest

import allocd
from conftest import PINNED_SKIP, daemon_fixture

np = pytest.importorskip("numpy", reason="NumPy is not importable (Debian: python3-numpy)")

CONFIG = "[pool pin]\nkind = pinned\nsize = 4M\nbackend = memfd\n[pool g]\nkind = gpu\ndevice = 0\nsize = 64M\n"
gpu_daemon = daemon_fixture(CONFIG, PINNED_SKIP)


def test_pinned_region(gpu_daemon):
    torch = pytest.importorskip("torch", reason="PyTorch is not importable (Debian: python3-torch)")
    with gpu_daemon.connect() as c:
        r = c.alloc("pin", 8192, zero=True)
        assert r.kind == "pinned"
        want = (allocd.kDLCUDAHost if r.registered else allocd.kDLCPU, 0)
        assert r.__dlpack_device__() == want
        # PyTorch takes no kDLCUDAHost: the view says cpu, which pinned memory is too.
        v = r.view("float32", (2, 1024), device="cpu")
        assert v.__dlpack_device__() == (allocd.kDLCPU, 0)
        t = torch.from_dlpack(v)
        assert t.data_ptr() == r.ptr
        t[1, 3] = 8.5
        assert r.as_array("float32", (2, 1024))[1, 3] == 8.5
        cap = r.__dlpack__(dl_device=(allocd.kDLCPU, 0))  # the consumer's way of asking for the same
        del cap, t, v


def cuda_torch():
    """torch where it has CUDA (not Debian's python3-torch, which is CPU-only), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


CUDA = """
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
def check(r):
    assert r == 0, "CUDA error %d" % r
def cuda_context(device):
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    check(cuda.cuInit(0))
    check(cuda.cuDeviceGet(ctypes.byref(dev), device))
    check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev))
    check(cuda.cuCtxSetCurrent(ctx))
def to_device(dev_ptr, data):
    check(cuda.cuMemcpyHtoD_v2(ctypes.c_uint64(dev_ptr), data, ctypes.c_size_t(len(data))))
def from_device(dev_ptr, n):
    buf = ctypes.create_string_buffer(n)
    check(cuda.cuMemcpyDtoH_v2(buf, ctypes.c_uint64(dev_ptr), ctypes.c_size_t(n)))
    return buf.raw
"""

READER = CUDA + """
import sys, allocd
with allocd.connect(sys.argv[1], name="reader") as c:
    r = c.attach("gpu/shared", timeout=10)
    assert r.__dlpack_device__() == (allocd.kDLCUDA, r.device)
    try:
        import torch
        cuda_torch = torch.cuda.is_available()
    except ImportError:
        cuda_torch = False
    if cuda_torch:
        t = torch.from_dlpack(r.view("float32"))
        assert t.is_cuda and t.data_ptr() == r.dev_ptr
        assert float(t[:1024].sum()) == 1024 * 3.0, float(t[:1024].sum())
        t[1024:2048] = 4.0
        torch.cuda.synchronize()
    else:
        cuda_context(r.device)
        assert from_device(r.dev_ptr, 4096) == bytes([3]) * 4096
        to_device(r.dev_ptr + 4096, bytes([4]) * 4096)
print("ok", flush=True)
"""


def test_gpu_region_between_two_processes(gpu_daemon):
    why = allocd.cuda_unavailable()
    if why:
        pytest.skip(why)
    with gpu_daemon.connect() as c:
        if not any(p["name"] == "g" for p in c.status()["pools"]):
            pytest.skip("allocd made no gpu pool: %s" % c.status()["unavailable"])
        r = c.alloc("g", 1 << 20, name="gpu/shared", zero=True)
        assert r.__dlpack_device__() == (allocd.kDLCUDA, r.device) and r.dev_ptr
        with pytest.raises(BufferError, match="gpu"):
            memoryview(r)
        torch = cuda_torch()
        scope = {}
        exec(CUDA, scope)
        if torch:
            t = torch.from_dlpack(r.view("float32"))
            assert t.is_cuda and t.data_ptr() == r.dev_ptr
            t[:1024] = 3.0
            torch.cuda.synchronize()
        else:
            scope["cuda_context"](r.device)
            scope["to_device"](r.dev_ptr, bytes([3]) * 4096)
        p = gpu_daemon.python(READER)
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok"
        if torch:
            assert float(t[1024:2048].sum()) == 1024 * 4.0
        else:
            assert scope["from_device"](r.dev_ptr + 4096, 4096) == bytes([4]) * 4096


def test_cupy_takes_a_gpu_region(gpu_daemon):
    """CuPy is no Debian 12 package: this runs on a GPU host that has it (the GPU suite's bundle)."""
    why = allocd.cuda_unavailable()
    if why:
        pytest.skip(why)
    cupy = pytest.importorskip("cupy", reason="CuPy is not importable (not in Debian 12; a GPU host's)")
    import struct

    with gpu_daemon.connect() as c:
        if not any(p["name"] == "g" for p in c.status()["pools"]):
            pytest.skip("allocd made no gpu pool: %s" % c.status()["unavailable"])
        r = c.alloc("g", 1 << 20, zero=True)
        x = cupy.from_dlpack(r.view("float32"))
        assert x.data.ptr == r.dev_ptr and x.shape == (1 << 18,) and x.dtype == cupy.float32
        assert x.device.id == r.device and float(x.sum()) == 0.0  # ZERO, seen through CuPy
        x[:1024] = 5.0
        cupy.cuda.runtime.deviceSynchronize()
        scope = {}
        exec(CUDA, scope)
        scope["cuda_context"](r.device)
        assert scope["from_device"](r.dev_ptr, 8) == struct.pack("ff", 5.0, 5.0)  # the region's own bytes
        del x
        r.free()
