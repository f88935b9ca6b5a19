# SPDX-License-Identifier: MIT
"""DLPack into NumPy and PyTorch (CPU) without a copy, the versioned capsule, and lifetimes: a region
stays while an array views it, and goes after."""
import ctypes
import gc

import pytest

import allocd
from conftest import region_ids, wait_used

np = pytest.importorskip("numpy", reason="NumPy is not importable (Debian: python3-numpy)")


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is not importable (Debian: python3-torch)")


def test_numpy_from_dlpack_is_the_region(client):
    r = client.alloc("h", 3 * 4096, zero=True)
    v = r.view("float32", (3, 1024))
    assert v.__dlpack_device__() == (allocd.kDLCPU, 0) == r.__dlpack_device__()
    a = np.from_dlpack(v)
    assert a.shape == (3, 1024) and a.dtype == np.float32 and a.strides == (4096, 4)
    assert a.ctypes.data == r.ptr, "a copy"
    b = r.as_array("float32", (3, 1024))
    if a.flags.writeable:  # NumPy 2; NumPy 1.x makes every array from DLPack read-only
        a[2, 5] = 1.25
    else:
        b[2, 5] = 1.25
    assert a[2, 5] == 1.25 and b[2, 5] == 1.25
    b[0, 0] = -3
    assert a[0, 0] == -3
    m = memoryview(r)
    assert m.nbytes == 3 * 4096 and not m.readonly
    assert np.frombuffer(m, np.float32)[2 * 1024 + 5] == 1.25
    # The bytes themselves, and another offset and dtype.
    assert np.from_dlpack(r).dtype == np.uint8 and np.from_dlpack(r).shape == (3 * 4096,)
    w = np.from_dlpack(r.view("int64", offset=4096))
    assert w.shape == (1024,) and w.ctypes.data == r.ptr + 4096


def test_torch_from_dlpack_is_the_region(client):
    torch = torch_or_skip()
    r = client.alloc("h", 8192, zero=True)
    t = torch.from_dlpack(r.view(torch.float64, (4, 256)))
    assert t.shape == (4, 256) and t.dtype == torch.float64 and t.stride() == (256, 1)
    assert t.device.type == "cpu" and t.data_ptr() == r.ptr, "a copy"
    t[3, 255] = 42.5
    a = r.as_array(np.float64, (4, 256))
    assert a[3, 255] == 42.5
    a[1] = np.arange(256)
    assert t[1].tolist() == list(range(256))
    u = torch.from_dlpack(r)  # the bytes
    assert u.dtype == torch.uint8 and u.shape == (8192,) and u.data_ptr() == r.ptr
    # A tensor and a NumPy array of the same view see each other's writes.
    v = r.view("int32", (2, 1024))
    x, y = torch.from_dlpack(v), np.from_dlpack(v)
    x[1, 7] = 77
    assert y[1, 7] == 77


def capsule_name(cap):
    get = ctypes.pythonapi.PyCapsule_GetName
    get.restype, get.argtypes = ctypes.c_char_p, [ctypes.py_object]
    return get(cap)


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int), ("device_id", ctypes.c_int32),
                ("ndim", ctypes.c_int32), ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class Versioned(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64), ("dl_tensor", DLTensor)]


def capsule_pointer(cap, name):
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get(cap, name)


def test_versioned_capsule_when_asked(client):
    r = client.alloc("h", 4096)
    assert capsule_name(r.__dlpack__()) == b"dltensor"
    assert capsule_name(r.__dlpack__(max_version=(0, 8))) == b"dltensor"
    cap = r.view("uint16", (2, 1024)).__dlpack__(max_version=(1, 2), stream=None, dl_device=(allocd.kDLCPU, 0),
                                                 copy=False)
    assert capsule_name(cap) == b"dltensor_versioned"
    t = Versioned.from_address(capsule_pointer(cap, b"dltensor_versioned"))
    assert (t.major, t.minor, t.flags) == (1, 0, 0)
    d = t.dl_tensor
    assert (d.data, d.device_type, d.ndim, d.code, d.bits, d.lanes) == (r.ptr, allocd.kDLCPU, 2, 1, 16, 1)
    assert (d.shape[0], d.shape[1], d.strides[0], d.strides[1], d.byte_offset) == (2, 1024, 1024, 1, 0)
    # An unconsumed capsule gives its view back as it goes: the free then happens at once.
    r.free()
    assert region_ids(client) == [r.id]
    del cap, t, d
    gc.collect()
    assert region_ids(client) == []


def test_dlpack_arguments(client):
    r = client.alloc("h", 4096)
    with pytest.raises(BufferError, match="copy"):
        r.__dlpack__(copy=True)
    with pytest.raises(BufferError, match="does not copy"):
        r.__dlpack__(dl_device=(allocd.kDLCUDA, 0))
    for bad in [dict(max_version=1), dict(max_version=("a", 0)), dict(max_version=(-1, 0)),
                dict(max_version=(2 ** 32, 0)), dict(max_version=(1, -1)), dict(dl_device=1), dict(stream="s"),
                dict(copy=3), dict(nonsense=1)]:
        with pytest.raises(TypeError):
            r.__dlpack__(**bad)
    for dtype, shape, offset in [("float128", None, 0), (">f4", None, 0), ("float32", (3, 1024), 0),
                                 ("float32", (-1, -1), 0), ("float32", (-2,), 0), ("float32", None, 2),
                                 ("float32", None, 8192), ("float32", (1,) * 33, 0), ("float32", (2 ** 62, 2 ** 62), 0),
                                 ("uint8", (5000,), 0), ("float64", (3, -1), 0)]:
        with pytest.raises(ValueError):
            r.view(dtype, shape, offset=offset)
    with pytest.raises(TypeError):
        r.view("float32", "x")
    with pytest.raises(ValueError):
        r.view("float32", device="cuda")
    f = client.alloc("f", 4096)
    with pytest.raises(BufferError, match="fpga"):
        f.__dlpack__()
    with pytest.raises(BufferError):
        memoryview(f)


class PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.POINTER(ctypes.c_ssize_t)),
                ("strides", ctypes.POINTER(ctypes.c_ssize_t)), ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p)]


def get_buffer(obj, flags):
    """PyObject_GetBuffer with flags that memoryview() never asks: the strides it gave, released."""
    b = PyBuffer()
    ctypes.pythonapi.PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]
    ctypes.pythonapi.PyBuffer_Release.argtypes = [ctypes.POINTER(PyBuffer)]
    ctypes.pythonapi.PyObject_GetBuffer(obj, ctypes.byref(b), flags)
    strides = [b.strides[i] for i in range(b.ndim)]
    ctypes.pythonapi.PyBuffer_Release(ctypes.byref(b))
    return strides


PyBUF_STRIDES, PyBUF_C, PyBUF_F, PyBUF_ANY = 0x18, 0x20 | 0x18, 0x40 | 0x18, 0x80 | 0x18


def test_buffer_orders(client):
    """A view is C-contiguous: a consumer that asks for Fortran order gets a BufferError, not C strides."""
    r = client.alloc("h", 4096)
    v = r.view("float32", (32, 32))
    for flags in (PyBUF_STRIDES, PyBUF_C, PyBUF_ANY):
        assert get_buffer(v, flags) == [128, 4]
    with pytest.raises(BufferError, match="Fortran"):
        get_buffer(v, PyBUF_F)
    assert get_buffer(r.view("float32", (1, 1024)), PyBUF_F) == [4096, 4]  # one line is both orders
    assert get_buffer(r, PyBUF_F) == [1]
    r.free()
    assert region_ids(client) == []  # no export left behind


def test_region_stays_while_an_array_views_it(client):
    torch = torch_or_skip()
    r = client.alloc("h", 65536)
    rid = r.id
    t = torch.from_dlpack(r.view("float32"))
    a = r.as_array("uint32")
    m = memoryview(r)
    del r
    gc.collect()
    t[0] = 1.0
    assert region_ids(client) == [rid], "the region went while arrays viewed it"
    del t
    gc.collect()
    assert a[0] == 0x3F800000 and m[3] == 0x3F
    assert region_ids(client) == [rid]
    del a
    gc.collect()
    assert region_ids(client) == [rid]
    m.release()
    assert region_ids(client) == []


def test_free_and_close_wait_for_the_last_view(daemon, client):
    r = client.alloc("h", 4096, name="freed/later")
    a = r.as_array()
    r.free()
    assert not r.live and r.ptr is None
    with pytest.raises(ValueError, match="freed"):
        r.free()
    with pytest.raises(ValueError):
        memoryview(r)
    a[:] = 5  # still mapped
    assert region_ids(client) == [r.id]
    del a
    gc.collect()
    assert region_ids(client) == []
    with pytest.raises(allocd.NotFound):
        client.attach("freed/later")

    other = daemon.connect("other")
    s = other.alloc("h", 8192)
    b = s.as_array("uint64")
    other.close()
    assert other.closed
    with pytest.raises(ValueError, match="closed"):
        other.alloc("h", 4096)
    b[:] = 9  # the connection stays until the array goes
    assert wait_used(client, "h", 8192) == 8192
    del b, s
    gc.collect()
    assert wait_used(client, "h", 0) == 0


def test_detach_keeps_a_persist_region(client):
    r = client.alloc("h", 4096, persist=True, name="kept")
    r.detach()
    assert region_ids(client) == [r.id]
    k = client.attach("kept")
    assert k.id == r.id
    k.free()
    assert region_ids(client) == []


def test_unsealed_until_sealed(client):
    r = client.alloc("h", 4096, name="later", unsealed=True)
    assert not r.sealed
    with pytest.raises(allocd.WouldBlock):
        client.attach("later")
    r.as_array()[:4] = [1, 2, 3, 4]
    r.seal()
    assert r.sealed and list(client.attach("later").as_array()[:4]) == [1, 2, 3, 4]
