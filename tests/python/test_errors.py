# SPDX-License-Identifier: MIT
"""Bad arguments are Python's TypeError or ValueError and change nothing; each error allocd answers is
its allocd.Error subclass with the errno and allocd's message; read-only regions stay read-only."""
import errno
import os

import pytest

import allocd
from conftest import as_nobody, region_ids

BAD_ALLOCS = [
    ((), {}), (("h",), {}), ((None, 4096), {}), ((1, 4096), {}), (("h", "4096"), {}), (("h", -1), {}),
    (("h", 2 ** 64), {}), (("h", 4096.0), {}), (("h\0x", 4096), {}), (("h", 4096), {"count": -1}),
    (("h", 4096), {"align": "x"}), (("h", 4096), {"numa_node": -1}), (("h", 4096), {"numa_node": "0"}),
    (("h", 4096), {"timeout": -1}), (("h", 4096), {"timeout": 0}), (("h", 4096), {"timeout": float("nan")}),
    (("h", 4096), {"timeout": 1e12}), (("h", 4096), {"timeout": "1s"}), (("h", 4096), {"name": 5}),
    (("h", 4096), {"name": "a\0b"}), (("h", 4096), {"zero": True, "colour": "red"}), (("h", 4096, 1), {}),
]


def test_bad_arguments_raise_and_change_nothing(client):
    for args, kw in BAD_ALLOCS:
        with pytest.raises((TypeError, ValueError)) as e:
            client.alloc(*args, **kw)
        assert not isinstance(e.value, allocd.Error), (args, kw)
    for args, kw in [((), {}), ((None,), {}), ((b"x\0",), {}), (("x",), {"timeout": -1}),
                     (("x",), {"owner": -1}), (("x",), {"owner": "root"}), (("x",), {"pool": 3})]:
        with pytest.raises((TypeError, ValueError)):
            client.attach(*args, **kw)
    for huge in (10 ** 400, -10 ** 400):  # past a double: out of range, not "not an int"
        with pytest.raises(ValueError, match="at most"):
            client.alloc("h", 4096, timeout=huge)
        with pytest.raises(ValueError, match="at most"):
            client.attach("x", timeout=huge)
    with pytest.raises(TypeError):
        client.dump(5)
    with pytest.raises(TypeError):
        allocd.connect(5)
    with pytest.raises(TypeError):
        allocd.Region()
    r = client.alloc("h", 4096)
    for shape in [(-1, 2**61), (0, 2**62, 2**62), (2**62, 0, 4)]:  # sizes whose products overflow
        with pytest.raises(ValueError):
            r.view("int64", shape)

    class Unprintable:
        def __str__(self):
            raise RuntimeError("no str")
    with pytest.raises(RuntimeError, match="no str"):  # its own error, not a uint8 View
        r.view(Unprintable())
    for dtype in ["uint8\0junk", "float32\0", "torch.int64\0x"]:
        with pytest.raises(ValueError, match="dtype"):
            r.view(dtype)
    r.free()
    assert region_ids(client) == []


def test_a_bad_connect_name_names_the_parameter(daemon):
    # It said "client_name is 1-63 bytes...", the protocol's field, which no caller of connect() wrote.
    for name in ["", "x" * 64, "a\x01b", "bidi\u202e"]:
        with pytest.raises(ValueError, match=r"^connect\(\): name is 1-63 bytes of UTF-8") as e:
            allocd.connect(daemon.sock, name=name)
        assert "client_name" not in str(e.value)
    allocd.connect(daemon.sock, name="x" * 63).close()


def expect(cls, err, fn, *args, **kw):
    with pytest.raises(cls) as e:
        fn(*args, **kw)
    assert isinstance(e.value, allocd.Error) and isinstance(e.value, OSError)
    assert e.value.errno == err and e.value.message and e.value.message == e.value.strerror
    return e.value


def test_each_error_class(daemon, client, monkeypatch):
    e = expect(allocd.NoPool, errno.ENODEV, client.alloc, "nope", 4096)
    assert "nope" in e.message
    held = [client.alloc("quota", 48 << 10)]  # a Region nobody references is detached
    expect(allocd.Quota, errno.EDQUOT, client.alloc, "quota", 32 << 10)
    held.append(client.alloc("small", 60 << 10))
    e = expect(allocd.WouldBlock, errno.EAGAIN, client.alloc, "small", 8192, nowait=True)
    assert isinstance(e, BlockingIOError)
    e = expect(allocd.Timeout, errno.ETIMEDOUT, client.alloc, "small", 8192, timeout=0.05)
    assert isinstance(e, TimeoutError)
    expect(allocd.Timeout, errno.ETIMEDOUT, client.attach, "nobody/yet", timeout=0.05)
    e = expect(allocd.NotFound, errno.ENOENT, client.attach, "nobody/yet")
    assert isinstance(e, FileNotFoundError)
    held.append(client.alloc("h", 4096, name="taken"))
    expect(allocd.Exists, errno.EEXIST, client.alloc, "h", 4096, name="taken")
    expect(allocd.Exists, errno.EEXIST, client.attach, "taken", pool="small")
    expect(allocd.TooBig, errno.E2BIG, client.alloc, "h", 64 << 20)
    e = expect(allocd.Invalid, errno.EINVAL, client.alloc, "h", 4096, align=3)
    assert isinstance(e, ValueError)
    expect(allocd.Invalid, errno.EINVAL, client.alloc, "h", 0)
    expect(allocd.Invalid, errno.EOVERFLOW, client.alloc, "h", 2 ** 40, count=2 ** 40)
    with pytest.raises(allocd.Error) as x:
        allocd.connect(os.path.join(daemon.dir, "no-such.sock"))
    assert x.value.errno in (errno.ENOENT, errno.ECONNREFUSED) and x.value.message
    # A lost connection is tried again for $ALLOCD_RECONNECT (a minute by default) before it fails.
    monkeypatch.setenv("ALLOCD_RECONNECT", "1s")
    other = daemon.connect("doomed")
    daemon.proc.kill()
    daemon.proc.wait()
    e = expect(allocd.Disconnected, errno.ECONNRESET, other.status)
    assert isinstance(e, ConnectionError)


def test_denied_and_read_only_for_another_uid(daemon, client):
    np = pytest.importorskip("numpy", reason="NumPy is not importable (Debian: python3-numpy)")
    r = client.alloc("h", 8192, name="shared/ro")
    r.as_array("uint32")[:3] = [1, 2, 3]

    def child():
        with daemon.connect("nobody") as c:
            expect(allocd.Denied, errno.EACCES, c.alloc, "private", 4096)
            expect(allocd.Denied, errno.EACCES, c.alloc, "h", 4096)  # mode 0664: others may attach only
            g = c.attach("shared/ro", owner=0, pool="h")
            assert g.read_only and g.owner == 0 and g.pool == "h"
            m = memoryview(g)
            assert m.readonly and m[0] == 1
            a = g.as_array("uint32")
            assert not a.flags.writeable and list(a[:3]) == [1, 2, 3]
            with pytest.raises(ValueError):
                a[0] = 5
            if int(np.__version__.split(".")[0]) < 2:
                with pytest.raises(BufferError, match="read-only"):
                    np.from_dlpack(g)  # NumPy 1.24 asks for DLPack 0.x, which cannot say read-only
            else:
                assert not np.from_dlpack(g).flags.writeable  # NumPy 2 asks for 1.x, which says read-only
            cap = g.__dlpack__(max_version=(1, 0))
            from test_dlpack import Versioned, capsule_pointer
            t = Versioned.from_address(capsule_pointer(cap, b"dltensor_versioned"))
            assert t.flags & 1, "DLPACK_FLAG_BITMASK_READ_ONLY"
        return 0

    assert as_nobody(child) == 0
    assert region_ids(client) == [r.id]


def test_a_refused_free_raises_and_keeps_the_region(daemon, client):
    """free() of another uid's region, attached, is refused by allocd alone: it raises Denied and
    the Region stays live and held (a pipelined free's refusal, left to a sync nobody calls, read
    as freed while the connection kept the reference)."""
    r = client.alloc("quota", 4096, name="shared/theirs")

    def child():
        with daemon.connect("nobody") as c:
            g = c.attach("shared/theirs")
            expect(allocd.Denied, errno.EACCES, g.free)
            assert g.live
            assert [d["refs"] for d in c.dump("quota")] == [2]
            g.detach()
            assert [d["refs"] for d in c.dump("quota")] == [1]
            g = c.attach("shared/theirs")
            m = memoryview(g)
            g.free()  # put off while the view lives: its refusal has nobody to hear it
            m.release()
            assert [d["refs"] for d in c.dump("quota")] == [1], "the reference went all the same"
        return 0

    assert as_nobody(child) == 0
    assert region_ids(client) == [r.id] and r.live
