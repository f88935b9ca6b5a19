/* SPDX-License-Identifier: MIT */
/*
 * allocd.Region: a region this connection holds, its attributes, and its bytes as a buffer
 * (memoryview, numpy.frombuffer, as_array) for the pools whose memory is mapped here (host,
 * pinned).  pyallocd.h says why free(), detach() and close() wait for the last view.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "pyallocd.h"
#include <structmember.h>

PyObject *py_region_new(struct py_client *cl, const struct alloc_region *r, PyObject *name) {
        struct py_region *rg;

        if (!name)
                return NULL;
        rg = PyObject_New(struct py_region, &py_region_type);
        if (!rg) {
                Py_DECREF(name);
                return NULL;
        }
        rg->client = (struct py_client *)Py_NewRef((PyObject *)cl);
        rg->r = *r;
        rg->name = name;
        rg->exports = 0;
        rg->state = REGION_LIVE;
        rg->kind = NULL;
        return (PyObject *)rg;
}

/* The memory is the CPU's here: host, and pinned (registered with CUDA or not). */
static bool cpu_memory(const struct py_region *rg) {
        return rg->r.kind == ALLOC_KIND_HOST || rg->r.kind == ALLOC_KIND_PINNED;
}

int py_region_check(struct py_region *rg) {
        if (rg->kind && (rg->state != REGION_LIVE || !py_kind_alive(rg->kind))) {
                PyErr_SetString(PyExc_ValueError, "the block was freed, or its kind destroyed or its client closed");
                return -1;
        }
        if (rg->state != REGION_LIVE || rg->client->closed) {
                PyErr_Format(PyExc_ValueError, "region %llu was freed or detached, or its client closed",
                             (unsigned long long)rg->r.id);
                return -1;
        }
        return 0;
}

int py_region_export(struct py_region *rg, bool writable) {
        if (py_region_check(rg) < 0)
                return -1;
        if (writable && rg->r.read_only) {
                PyErr_Format(PyExc_BufferError,
                             "region %llu is read-only here: this uid may attach in pool %s, not allocate",
                             (unsigned long long)rg->r.id, rg->r.pool);
                return -1;
        }
        if (py_client_enter(rg->client) < 0)
                return -1;
        if (rg->kind)
                rg->kind->holds++;
        rg->exports++;
        return 0;
}

/*
 * Whether allocd may refuse to free it: another uid's region (attached) is freed only by the
 * pool's owner or root, which allocd alone knows.  A pipelined free reports that refusal to a
 * later alloc_region_sync, which this module never calls: the Region would read as freed while
 * the connection kept its reference until it closed.
 */
static bool free_may_be_refused(const struct py_region *rg) {
        uid_t me = geteuid();

        return me != 0 && rg->r.owner != me;
}

/*
 * Frees or detaches the region.  deferred: the request free() or detach() put off while views
 * lived, whose error has nobody left to hear it (a refused free then detaches, so that the
 * reference goes all the same); else a refused free leaves the Region live.
 */
static int give_back(struct py_region *rg, bool free, bool deferred) {
        struct alloc_client *c = rg->client->c;
        uint64_t id = rg->r.id;
        int r;

        rg->state = REGION_GONE;
        if (rg->client->closed || !c)
                return 0; /* the disconnect gives it back */
        if (rg->kind)
                return py_block_give_back(rg);
        bool ask = free && free_may_be_refused(rg);
        rg->client->holds++;
        PyThreadState *ts = PyEval_SaveThread();
        if (!free)
                r = alloc_region_detach(c, id);
        else if (!ask)
                r = alloc_region_free(c, id);
        else if ((r = alloc_region_free_sync(c, id)) == -EACCES && deferred)
                r = alloc_region_detach(c, id);
        PyEval_RestoreThread(ts);
        py_client_leave(rg->client);
        if (ask && r == -EACCES)
                rg->state = REGION_LIVE; /* still held, as allocd says */
        return r;
}

void py_region_unexport(struct py_region *rg) {
        if (--rg->exports == 0 && rg->state != REGION_LIVE && rg->state != REGION_GONE)
                give_back(rg, rg->state == REGION_FREE_PENDING, true);
        if (rg->kind)
                py_kind_leave(rg->kind);
        py_client_leave(rg->client);
}

PyObject *py_region_end(struct py_region *rg, bool free) {
        int r;

        if (rg->kind) {
                if (py_region_check(rg) < 0)
                        return NULL;
        } else if (rg->state != REGION_LIVE) {
                return PyErr_Format(PyExc_ValueError, "region %llu was freed or detached already",
                                    (unsigned long long)rg->r.id);
        } else if (rg->client->closed) {
                return PyErr_Format(PyExc_ValueError, "the allocd client is closed");
        }
        if (rg->exports > 0) {
                rg->state = free ? REGION_FREE_PENDING : REGION_DETACH_PENDING;
                Py_RETURN_NONE;
        }
        r = give_back(rg, free, false);
        if (r < 0 && r != -ECONNRESET)
                return py_raise(r);
        Py_RETURN_NONE;
}

static PyObject *region_free(struct py_region *rg, PyObject *unused) {
        (void)unused;
        return py_region_end(rg, true);
}

static PyObject *region_detach(struct py_region *rg, PyObject *unused) {
        (void)unused;
        return py_region_end(rg, false);
}

static PyObject *region_seal(struct py_region *rg, PyObject *unused) {
        int r;
        (void)unused;

        if (rg->state != REGION_LIVE)
                return PyErr_Format(PyExc_ValueError, "region %llu was freed or detached",
                                    (unsigned long long)rg->r.id);
        if (py_client_enter(rg->client) < 0)
                return NULL;
        PyThreadState *ts = PyEval_SaveThread();
        r = alloc_region_seal(rg->client->c, rg->r.id);
        PyEval_RestoreThread(ts);
        py_client_leave(rg->client);
        if (r < 0)
                return py_raise(r);
        rg->r.sealed = true;
        Py_RETURN_NONE;
}

PyObject *py_region_view(struct py_region *rg, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"dtype", "shape", "offset", "device", NULL};
        PyObject *dtype = NULL, *shape = Py_None, *device = Py_None;
        Py_ssize_t offset = 0;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO$nO:view", kwlist, &dtype, &shape, &offset, &device))
                return NULL;
        return py_view_make(rg, dtype, shape, offset, device);
}

/* numpy.frombuffer over the buffer, so that every dtype NumPy knows works, then the shape. */
PyObject *py_region_as_array(struct py_region *rg, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"dtype", "shape", "offset", NULL};
        PyObject *dtype = NULL, *shape = Py_None, *np, *a, *out = NULL;
        Py_ssize_t offset = 0;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO$n:as_array", kwlist, &dtype, &shape, &offset))
                return NULL;
        np = PyImport_ImportModule("numpy");
        if (!np) {
                PyErr_SetString(PyExc_ImportError, "Region.as_array needs NumPy (Debian: python3-numpy); "
                                                   "memoryview(region) needs nothing");
                return NULL;
        }
        a = dtype ? PyObject_CallMethod(np, "frombuffer", "OOnn", rg, dtype, (Py_ssize_t)-1, offset)
                  : PyObject_CallMethod(np, "frombuffer", "Osnn", rg, "uint8", (Py_ssize_t)-1, offset);
        if (a && shape != Py_None)
                out = PyObject_CallMethod(a, "reshape", "O", shape);
        else
                out = Py_XNewRef(a);
        Py_XDECREF(a);
        Py_DECREF(np);
        return out;
}

PyObject *py_region_dlpack(struct py_region *rg, PyObject *args, PyObject *kw) {
        PyObject *v = py_view_make(rg, NULL, Py_None, 0, Py_None), *cap;

        if (!v)
                return NULL;
        cap = py_view_dlpack(v, args, kw);
        Py_DECREF(v);
        return cap;
}

PyObject *py_region_dlpack_device(struct py_region *rg, PyObject *unused) {
        PyObject *v = py_view_make(rg, NULL, Py_None, 0, Py_None), *d;
        (void)unused;

        if (!v)
                return NULL;
        d = py_view_dlpack_device(v, NULL);
        Py_DECREF(v);
        return d;
}

static int region_getbuffer(struct py_region *rg, Py_buffer *view, int flags) {
        view->obj = NULL;
        if (!cpu_memory(rg)) {
                PyErr_Format(PyExc_BufferError, "region %llu of %s pool %s is not memory of this process: %s",
                             (unsigned long long)rg->r.id, py_kind_name(rg->r.kind), rg->r.pool,
                             rg->r.kind == ALLOC_KIND_GPU ? "use torch.from_dlpack(region) or cupy.from_dlpack(region)"
                                                          : "its addr is an address of the device");
                return -1;
        }
        if (py_region_export(rg, flags & PyBUF_WRITABLE) < 0)
                return -1;
        if (PyBuffer_FillInfo(view, (PyObject *)rg, (void *)rg->r.cptr, (Py_ssize_t)rg->r.size, rg->r.read_only,
                              flags) < 0) {
                py_region_unexport(rg);
                return -1;
        }
        return 0;
}

static void region_releasebuffer(struct py_region *rg, Py_buffer *view) {
        (void)view;
        py_region_unexport(rg);
}

PyBufferProcs py_region_buffer = {
        .bf_getbuffer = (getbufferproc)region_getbuffer,
        .bf_releasebuffer = (releasebufferproc)region_releasebuffer,
};

/* A region nobody references any more is detached: a persist region stays, as it would in C. */
static void region_dealloc(struct py_region *rg) {
        if (rg->state == REGION_LIVE)
                give_back(rg, false, true);
        Py_DECREF(rg->client);
        Py_XDECREF(rg->name);
        PyObject_Free(rg);
}

static PyObject *region_repr(struct py_region *rg) {
        static const char *states[] = {"", ", freed", ", detached", ", gone"};
        char addr[24];

        /* PyUnicode_FromFormat has no hexadecimal 64-bit conversion. */
        snprintf(addr, sizeof(addr), "%#llx", (unsigned long long)rg->r.addr);
        return PyUnicode_FromFormat("<allocd.Region %llu of %s pool %s, %llu bytes at %s, name %R%s%s>",
                                    (unsigned long long)rg->r.id, py_kind_name(rg->r.kind), rg->r.pool,
                                    (unsigned long long)rg->r.size, addr, rg->name,
                                    rg->r.read_only ? ", read-only" : "", states[rg->state]);
}

static PyObject *get_kind(struct py_region *rg, void *u) {
        (void)u;
        return PyUnicode_FromString(py_kind_name(rg->r.kind));
}

static PyObject *get_device(struct py_region *rg, void *u) {
        (void)u;
        return rg->r.device >= 0 ? PyLong_FromLong(rg->r.device) : Py_NewRef(Py_None);
}

static PyObject *get_dev_ptr(struct py_region *rg, void *u) {
        (void)u;
        return rg->r.dev_ptr ? PyLong_FromUnsignedLongLong(rg->r.dev_ptr) : Py_NewRef(Py_None);
}

static PyObject *get_ptr(struct py_region *rg, void *u) {
        (void)u;
        return rg->r.cptr && rg->state == REGION_LIVE ? PyLong_FromVoidPtr((void *)rg->r.cptr) : Py_NewRef(Py_None);
}

static PyObject *get_live(struct py_region *rg, void *u) {
        (void)u;
        return PyBool_FromLong(rg->state == REGION_LIVE && !rg->client->closed);
}

#define MEMBER(name, type, field, doc)                                                                                 \
        { name, type, offsetof(struct py_region, field), READONLY, doc }

static PyMemberDef region_members[] = {
        MEMBER("id", T_ULONGLONG, r.id, "allocd's id of the region (allocctl dump shows it)."),
        MEMBER("size", T_ULONGLONG, r.size, "Its size in bytes: as asked, rounded up to the pool's quantum."),
        MEMBER("addr", T_ULONGLONG, r.addr, "Its offset in a memory pool; the device address in an fpga pool."),
        MEMBER("offset", T_ULONGLONG, r.addr, "The same as addr: the offset in the pool."),
        MEMBER("pool", T_STRING_INPLACE, r.pool, "The pool it lies in."),
        MEMBER("owner", T_UINT, r.owner, "The uid that allocated it (from the kernel, not the client)."),
        MEMBER("sealed", T_BOOL, r.sealed, "False while allocated unsealed and not yet sealed."),
        MEMBER("read_only", T_BOOL, r.read_only,
               "This uid may only attach in the pool: the memory is mapped read-only, buffers are read-only."),
        MEMBER("registered", T_BOOL, r.registered, "pinned: registered with CUDA in this process."),
        MEMBER("name", T_OBJECT, name, "The name it was allocated or attached under, or None."),
        MEMBER("client", T_OBJECT, client, "The Client it was allocated or attached through."),
        {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef region_getset[] = {
        {"kind", (getter)get_kind, NULL, "The pool's kind: 'host', 'pinned', 'gpu' or 'fpga'.", NULL},
        {"device", (getter)get_device, NULL, "gpu: the CUDA device ordinal in this process; else None.", NULL},
        {"dev_ptr", (getter)get_dev_ptr, NULL, "pinned (devicemap) and gpu: its CUdeviceptr here; else None.", NULL},
        {"ptr", (getter)get_ptr, NULL, "host, pinned: its address in this process, as an int; else None.", NULL},
        {"live", (getter)get_live, NULL, "Not freed nor detached, and its client is open.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef region_methods[] = {
        {"free", (PyCFunction)region_free, METH_NOARGS,
         "free()\n\nFrees it: unpublishes its name, drops persist and this connection's reference.  While\n"
         "arrays still view it, that happens when the last of them goes."},
        {"detach", (PyCFunction)region_detach, METH_NOARGS,
         "detach()\n\nDrops this connection's reference (a persist region stays).  While arrays still view\n"
         "it, that happens when the last of them goes.  A Region nobody references is detached."},
        {"seal", (PyCFunction)region_seal, METH_NOARGS,
         "seal()\n\nLets a region allocated with unsealed=True be attached, typically once it is written."},
        {"as_array", (PyCFunction)(void (*)(void))py_region_as_array, METH_VARARGS | METH_KEYWORDS,
         "as_array(dtype='uint8', shape=None, *, offset=0) -> numpy.ndarray\n\n"
         "A NumPy array over the region's bytes from offset, without a copy: numpy.frombuffer, then reshape\n"
         "(shape None: one dimension, all the bytes).  Read-only where the region is.  host and pinned pools."},
        {"view", (PyCFunction)(void (*)(void))py_region_view, METH_VARARGS | METH_KEYWORDS,
         "view(dtype='uint8', shape=None, *, offset=0, device=None) -> View\n\n"
         "A typed, shaped, C-contiguous view for DLPack consumers (torch.from_dlpack, numpy.from_dlpack,\n"
         "cupy.from_dlpack) and the buffer protocol.  dtype: a name ('float32', 'int64', 'bfloat16', ...),\n"
         "a NumPy dtype or a torch dtype.  device='cpu' exports a pinned region as kDLCPU, for consumers\n"
         "that do not take kDLCUDAHost (PyTorch)."},
        {"__dlpack__", (PyCFunction)(void (*)(void))py_region_dlpack, METH_VARARGS | METH_KEYWORDS,
         "__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None) -> capsule\n\n"
         "The region's bytes as a one-dimensional uint8 DLPack tensor, without a copy (View.__dlpack__)."},
        {"__dlpack_device__", (PyCFunction)py_region_dlpack_device, METH_NOARGS,
         "__dlpack_device__() -> (device_type, device_id)\n\n"
         "(kDLCPU, 0) host, (kDLCUDAHost, 0) pinned and registered with CUDA, (kDLCUDA, ordinal) gpu."},
        {NULL, NULL, 0, NULL},
};

PyTypeObject py_region_type = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "allocd.Region",
        .tp_doc = "A region of an allocd pool held by this connection (Client.alloc, Client.attach).\n\n"
                  "host and pinned regions are buffers: memoryview(region), numpy.frombuffer(region).  Every\n"
                  "region but fpga ones exports DLPack: numpy.from_dlpack(region), torch.from_dlpack(region).",
        .tp_basicsize = sizeof(struct py_region),
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_dealloc = (destructor)region_dealloc,
        .tp_repr = (reprfunc)region_repr,
        .tp_as_buffer = &py_region_buffer,
        .tp_methods = region_methods,
        .tp_members = region_members,
        .tp_getset = region_getset,
};
