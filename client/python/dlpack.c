/* SPDX-License-Identifier: MIT */
/*
 * allocd.View and DLPack.  A View is a region's bytes with a dtype and a C-contiguous shape, for
 * consumers that take DLPack (numpy.from_dlpack, torch.from_dlpack, cupy.from_dlpack) or the buffer
 * protocol (numpy.asarray, memoryview).  __dlpack__ follows the Python specification of DLPack
 * (https://dmlc.github.io/dlpack/latest/python_spec.html): a capsule "dltensor" holding a
 * DLManagedTensor by default, "dltensor_versioned" holding a DLManagedTensorVersioned when the
 * consumer's max_version is 1.0 or later; the consumer renames it "used_..." and calls the deleter
 * when its tensor goes, and an unconsumed capsule calls it as it is destroyed.  Each export counts
 * as a view of the region (pyallocd.h), so the memory stays mapped until the last tensor goes.
 */
#include "dlpack.h"
#include "pyallocd.h"
#include <structmember.h>

#define VIEW_MAX_DIMS 32 /* NumPy's limit before 2.0 */

struct dtype_info {
        const char *name;
        uint8_t code, bits;
        const char *format; /* struct-module format for the buffer protocol; NULL: none */
};

static const struct dtype_info dtypes[] = {
        {"uint8", kDLUInt, 8, "B"},          {"int8", kDLInt, 8, "b"},
        {"uint16", kDLUInt, 16, "H"},        {"int16", kDLInt, 16, "h"},
        {"uint32", kDLUInt, 32, "I"},        {"int32", kDLInt, 32, "i"},
        {"uint64", kDLUInt, 64, "Q"},        {"int64", kDLInt, 64, "q"},
        {"float16", kDLFloat, 16, "e"},      {"float32", kDLFloat, 32, "f"},
        {"float64", kDLFloat, 64, "d"},      {"bfloat16", kDLBfloat, 16, NULL},
        {"complex64", kDLComplex, 64, "Zf"}, {"complex128", kDLComplex, 128, "Zd"},
        {"bool", kDLBool, 8, "?"},
};
#define NDTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

struct py_view {
        PyObject_HEAD struct py_region *region;
        const struct dtype_info *dtype;
        int ndim;
        Py_ssize_t shape[VIEW_MAX_DIMS], strides[VIEW_MAX_DIMS]; /* strides in bytes, as the buffer protocol has them */
        Py_ssize_t offset, nbytes;
        DLDevice device;
};

static const struct dtype_info *dtype_by_name(const char *name) {
        for (size_t i = 0; i < NDTYPES; i++)
                if (!strcmp(dtypes[i].name, name))
                        return &dtypes[i];
        return NULL;
}

/* A name, "torch.NAME" (a torch dtype), or what numpy.dtype() makes of it when NumPy is there. */
static const struct dtype_info *parse_dtype(PyObject *o) {
        const struct dtype_info *d = NULL;
        PyObject *s = o ? PyObject_Str(o) : NULL, *np, *dt;
        Py_ssize_t len = 5;
        const char *name = !o ? "uint8" : s ? PyUnicode_AsUTF8AndSize(s, &len) : NULL;

        if (!name) { /* str(o) raised: that error stands */
                Py_XDECREF(s);
                return NULL;
        }
        if (strlen(name) != (size_t)len)
                goto out; /* a NUL: no dtype's name, and NumPy would read it up to the NUL */
        if (!strncmp(name, "torch.", 6))
                name += 6;
        if ((d = dtype_by_name(name)) || !o || (np = PyImport_ImportModule("numpy")) == NULL) {
                PyErr_Clear();
                goto out;
        }
        dt = PyObject_CallMethod(np, "dtype", "O", o);
        if (dt) {
                PyObject *n = PyObject_GetAttrString(dt, "name"), *native = PyObject_GetAttrString(dt, "isnative");
                if (n && native == Py_True && PyUnicode_Check(n))
                        d = dtype_by_name(PyUnicode_AsUTF8(n));
                Py_XDECREF(n);
                Py_XDECREF(native);
                Py_DECREF(dt);
        }
        PyErr_Clear();
        Py_DECREF(np);
out:
        if (!d)
                PyErr_Format(PyExc_ValueError,
                             "dtype %R: one of bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, "
                             "float16, float32, float64, bfloat16, complex64, complex128 (in the machine's byte order)",
                             o);
        Py_XDECREF(s);
        return d;
}

static Py_ssize_t itemsize(const struct dtype_info *d) {
        return d->bits / 8;
}

/* shape None: all the bytes from offset; else ints, one of which may be -1 (what is left). */
static int parse_shape(struct py_view *v, PyObject *shape, Py_ssize_t avail) {
        Py_ssize_t isz = itemsize(v->dtype), n = 1, extent = 1, unknown = -1;
        PyObject *seq;

        if (shape == Py_None) {
                if (avail % isz) {
                        PyErr_Format(PyExc_ValueError,
                                     "%zd bytes are not a whole number of %s (%zd bytes): give a shape", avail,
                                     v->dtype->name, isz);
                        return -1;
                }
                v->ndim = 1;
                v->shape[0] = avail / isz;
                return 0;
        }
        seq = PyLong_Check(shape) ? PyTuple_Pack(1, shape) : PySequence_Tuple(shape);
        if (!seq) {
                PyErr_Format(PyExc_TypeError, "shape is a tuple of ints, not %.80s", Py_TYPE(shape)->tp_name);
                return -1;
        }
        v->ndim = (int)PyTuple_GET_SIZE(seq);
        if (v->ndim > VIEW_MAX_DIMS) {
                Py_DECREF(seq);
                PyErr_Format(PyExc_ValueError, "shape %R has more than %d dimensions", shape, VIEW_MAX_DIMS);
                return -1;
        }
        for (int i = 0; i < v->ndim; i++) {
                Py_ssize_t x = PyNumber_AsSsize_t(PyTuple_GET_ITEM(seq, i), PyExc_OverflowError);
                if (x == -1 && PyErr_Occurred()) {
                        Py_DECREF(seq);
                        return -1;
                }
                if (x < -1 || (x == -1 && unknown >= 0)) {
                        Py_DECREF(seq);
                        PyErr_Format(PyExc_ValueError, "shape %R: sizes are 0 or more, and one may be -1", shape);
                        return -1;
                }
                if (x == -1)
                        unknown = i;
                else if (x && n > PY_SSIZE_T_MAX / x)
                        n = PY_SSIZE_T_MAX; /* more than any region: refused below */
                else
                        n *= x;
                /* The strides are products of the sizes, a 0 among them or not: they must not overflow either. */
                if (x > 0)
                        extent = extent > PY_SSIZE_T_MAX / x ? PY_SSIZE_T_MAX : extent * x;
                v->shape[i] = x;
        }
        Py_DECREF(seq);
        if (extent > PY_SSIZE_T_MAX / isz) {
                PyErr_Format(PyExc_ValueError, "shape %R of %s: its strides would pass %zd bytes", shape,
                             v->dtype->name, PY_SSIZE_T_MAX);
                return -1;
        }
        if (unknown >= 0) {
                /* n <= avail / isz first: then n * isz cannot overflow, nor be 0. */
                if (n == 0 || n > avail / isz || avail % (n * isz)) {
                        PyErr_Format(PyExc_ValueError, "shape %R: %zd bytes of %s do not divide into it", shape, avail,
                                     v->dtype->name);
                        return -1;
                }
                v->shape[unknown] = avail / (n * isz);
                n *= v->shape[unknown];
        }
        if (n > avail / isz) {
                PyErr_Format(PyExc_ValueError, "shape %R of %s needs more than the %zd bytes the region has from there",
                             shape, v->dtype->name, avail);
                return -1;
        }
        return 0;
}

static int parse_device(struct py_view *v, PyObject *device) {
        const struct alloc_region *r = &v->region->r;
        bool cpu = r->kind == ALLOC_KIND_HOST || r->kind == ALLOC_KIND_PINNED;

        if (r->kind == ALLOC_KIND_FPGA) {
                PyErr_Format(PyExc_BufferError, "region %llu of fpga pool %s is an address range, not memory",
                             (unsigned long long)r->id, r->pool);
                return -1;
        }
        if (r->kind == ALLOC_KIND_GPU && !r->dev_ptr) {
                PyErr_Format(PyExc_BufferError, "gpu region %llu is not mapped in this process",
                             (unsigned long long)r->id);
                return -1;
        }
        if (device != Py_None) {
                PyObject *cpu_tuple = Py_BuildValue("(ii)", kDLCPU, 0);
                int is_cpu = PyUnicode_Check(device) ? PyUnicode_CompareWithASCIIString(device, "cpu") == 0
                                                     : PyObject_RichCompareBool(device, cpu_tuple, Py_EQ);
                Py_XDECREF(cpu_tuple);
                if (is_cpu < 0)
                        return -1;
                if (!is_cpu || !cpu) {
                        PyErr_Format(PyExc_ValueError,
                                     "device=%R: only 'cpu' (or (kDLCPU, 0)), for host and "
                                     "pinned regions",
                                     device);
                        return -1;
                }
                v->device = (DLDevice){kDLCPU, 0};
        } else if (r->kind == ALLOC_KIND_GPU) {
                v->device = (DLDevice){kDLCUDA, r->device};
        } else {
                /* Only memory registered with CUDA is what kDLCUDAHost promises. */
                v->device = (DLDevice){r->kind == ALLOC_KIND_PINNED && r->registered ? kDLCUDAHost : kDLCPU, 0};
        }
        return 0;
}

PyObject *py_view_make(struct py_region *rg, PyObject *dtype, PyObject *shape, Py_ssize_t offset, PyObject *device) {
        struct py_view *v;
        Py_ssize_t avail;

        if (py_region_check(rg) < 0)
                return NULL;
        v = PyObject_New(struct py_view, &py_view_type);
        if (!v)
                return NULL;
        v->region = (struct py_region *)Py_NewRef((PyObject *)rg);
        v->offset = offset;
        if (parse_device(v, device) < 0 || !(v->dtype = parse_dtype(dtype)))
                goto fail;
        if (offset < 0 || (uint64_t)offset > rg->r.size || offset % itemsize(v->dtype)) {
                PyErr_Format(PyExc_ValueError, "offset=%zd: a multiple of %s's %zd bytes, at most the size (%llu)",
                             offset, v->dtype->name, itemsize(v->dtype), (unsigned long long)rg->r.size);
                goto fail;
        }
        avail = (Py_ssize_t)(rg->r.size - (uint64_t)offset);
        if (parse_shape(v, shape, avail) < 0)
                goto fail;
        v->nbytes = itemsize(v->dtype);
        for (int i = v->ndim - 1; i >= 0; i--) {
                v->strides[i] = v->nbytes;
                v->nbytes *= v->shape[i];
        }
        return (PyObject *)v;
fail:
        Py_DECREF(v);
        return NULL;
}

/* ---- DLPack ---- */

struct export {
        union {
                DLManagedTensor v0;
                DLManagedTensorVersioned v1;
        } t;
        struct py_region *region;
        int64_t shape[VIEW_MAX_DIMS], strides[VIEW_MAX_DIMS];
};

/*
 * The consumer's tensor is gone.  This may run in any thread, without the GIL (PyTorch frees tensors
 * in its own threads), or after the interpreter ended, when the region cannot matter any more.
 */
static void export_free(struct export *e) {
        PyGILState_STATE st;

        if (!Py_IsInitialized())
                return;
        st = PyGILState_Ensure();
        py_region_unexport(e->region);
        Py_DECREF(e->region);
        PyMem_RawFree(e);
        PyGILState_Release(st);
}

static void deleter_v0(DLManagedTensor *t) {
        export_free(t->manager_ctx);
}

static void deleter_v1(DLManagedTensorVersioned *t) {
        export_free(t->manager_ctx);
}

/* A capsule nobody consumed still owns its tensor. */
static void capsule_free_v0(PyObject *cap) {
        if (PyCapsule_IsValid(cap, "dltensor")) {
                DLManagedTensor *t = PyCapsule_GetPointer(cap, "dltensor");
                t->deleter(t);
        }
}

static void capsule_free_v1(PyObject *cap) {
        if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
                DLManagedTensorVersioned *t = PyCapsule_GetPointer(cap, "dltensor_versioned");
                t->deleter(t);
        }
}

static int check_dl_device(struct py_view *v, PyObject *dl_device) {
        int type, id;

        if (dl_device == Py_None)
                return 0;
        if (!PyTuple_Check(dl_device) || !PyArg_ParseTuple(dl_device, "ii", &type, &id)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError, "dl_device=%R: a (device_type, device_id) tuple", dl_device);
                return -1;
        }
        if (type == (int)v->device.device_type && id == v->device.device_id)
                return 0;
        /* Host and pinned memory is the CPU's too. */
        if (type == kDLCPU && id == 0 && (v->device.device_type == kDLCPU || v->device.device_type == kDLCUDAHost)) {
                v->device = (DLDevice){kDLCPU, 0};
                return 0;
        }
        PyErr_Format(PyExc_BufferError, "dl_device=%R: the memory is on (%d, %d) and allocd does not copy it",
                     dl_device, (int)v->device.device_type, (int)v->device.device_id);
        return -1;
}

PyObject *py_view_dlpack(PyObject *self, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"stream", "max_version", "dl_device", "copy", NULL};
        struct py_view *v = (struct py_view *)self;
        PyObject *stream = Py_None, *max_version = Py_None, *dl_device = Py_None, *copy = Py_None, *cap;
        struct py_region *rg = v->region;
        const struct alloc_region *r = &rg->r;
        int major = 0, minor = 0;
        DLDevice saved = v->device;
        struct export *e;
        DLTensor *t;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "|O$OOO:__dlpack__", kwlist, &stream, &max_version, &dl_device,
                                         &copy))
                return NULL;
        if (stream != Py_None && !PyLong_Check(stream))
                return PyErr_Format(PyExc_TypeError, "stream=%R: an int or None", stream);
        /* "ii", not "II": those take -1 as 4294967295 and 2**32 as 0, without a word. */
        if (max_version != Py_None &&
            (!PyTuple_Check(max_version) || !PyArg_ParseTuple(max_version, "ii", &major, &minor) || major < 0 ||
             minor < 0)) {
                PyErr_Clear();
                return PyErr_Format(PyExc_TypeError, "max_version=%R: a (major, minor) tuple of ints from 0, or None",
                                    max_version);
        }
        if (copy == Py_True)
                return PyErr_Format(PyExc_BufferError, "copy=True: allocd exports its own memory, never a copy");
        if (copy != Py_None && copy != Py_False)
                return PyErr_Format(PyExc_TypeError, "copy=%R: True, False or None", copy);
        if (r->read_only && major < 1)
                return PyErr_Format(PyExc_BufferError,
                                    "region %llu is read-only here and DLPack before 1.0 cannot say so: use a "
                                    "consumer that asks for max_version (1, 0), or memoryview / Region.as_array",
                                    (unsigned long long)r->id);
        if (check_dl_device(v, dl_device) < 0)
                return NULL;
        /* No stream work of anyone's is pending on allocd's memory: there is nothing to order after. */
        e = PyMem_RawCalloc(1, sizeof(*e));
        if (!e || py_region_export(rg, false) < 0) {
                PyMem_RawFree(e);
                v->device = saved;
                return e ? NULL : PyErr_NoMemory();
        }
        e->region = (struct py_region *)Py_NewRef((PyObject *)rg);
        t = major >= 1 ? &e->t.v1.dl_tensor : &e->t.v0.dl_tensor;
        t->data = r->kind == ALLOC_KIND_GPU ? (void *)(uintptr_t)r->dev_ptr : (void *)r->cptr;
        t->data = (char *)t->data + v->offset;
        t->device = v->device;
        t->ndim = v->ndim;
        t->dtype = (DLDataType){v->dtype->code, v->dtype->bits, 1};
        for (int i = 0; i < v->ndim; i++) {
                e->shape[i] = v->shape[i];
                e->strides[i] = v->strides[i] / itemsize(v->dtype);
        }
        t->shape = e->shape;
        t->strides = e->strides;
        v->device = saved;
        if (major >= 1) {
                e->t.v1.version = (DLPackVersion){DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION};
                e->t.v1.manager_ctx = e;
                e->t.v1.deleter = deleter_v1;
                e->t.v1.flags = r->read_only ? DLPACK_FLAG_BITMASK_READ_ONLY : 0;
                cap = PyCapsule_New(&e->t.v1, "dltensor_versioned", capsule_free_v1);
        } else {
                e->t.v0.manager_ctx = e;
                e->t.v0.deleter = deleter_v0;
                cap = PyCapsule_New(&e->t.v0, "dltensor", capsule_free_v0);
        }
        if (!cap)
                export_free(e);
        return cap;
}

PyObject *py_view_dlpack_device(PyObject *self, PyObject *unused) {
        struct py_view *v = (struct py_view *)self;
        (void)unused;

        return Py_BuildValue("(ii)", (int)v->device.device_type, (int)v->device.device_id);
}

int py_dlpack_add_constants(PyObject *m) {
        return PyModule_AddIntConstant(m, "kDLCPU", kDLCPU) < 0 || PyModule_AddIntConstant(m, "kDLCUDA", kDLCUDA) < 0 ||
                               PyModule_AddIntConstant(m, "kDLCUDAHost", kDLCUDAHost) < 0
                       ? -1
                       : 0;
}

/* ---- the View type ---- */

/* A view is laid out in C order; that is Fortran order too when at most one size is above 1. */
static bool fortran_too(const struct py_view *v) {
        int above1 = 0;

        for (int i = 0; i < v->ndim; i++) {
                if (v->shape[i] == 0)
                        return true;
                above1 += v->shape[i] > 1;
        }
        return above1 <= 1;
}

static int view_getbuffer(struct py_view *v, Py_buffer *b, int flags) {
        struct py_region *rg = v->region;

        b->obj = NULL;
        if (v->device.device_type == kDLCUDA) {
                PyErr_SetString(PyExc_BufferError,
                                "a gpu region's memory is the device's: use torch.from_dlpack(view)");
                return -1;
        }
        if (!v->dtype->format && (flags & PyBUF_FORMAT)) {
                PyErr_Format(PyExc_BufferError, "the buffer protocol has no format for %s: use DLPack", v->dtype->name);
                return -1;
        }
        if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && !fortran_too(v)) {
                PyErr_SetString(PyExc_BufferError, "the view is C-contiguous (row-major), not Fortran-contiguous");
                return -1;
        }
        if (py_region_export(rg, flags & PyBUF_WRITABLE) < 0)
                return -1;
        b->obj = Py_NewRef((PyObject *)v);
        b->buf = (char *)rg->r.cptr + v->offset;
        b->len = v->nbytes;
        b->readonly = rg->r.read_only;
        b->itemsize = itemsize(v->dtype);
        b->format = flags & PyBUF_FORMAT ? (char *)v->dtype->format : NULL;
        b->ndim = v->ndim;
        b->shape = flags & PyBUF_ND ? v->shape : NULL;
        b->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? v->strides : NULL;
        b->suboffsets = NULL;
        b->internal = NULL;
        if (!b->shape && v->ndim != 1) {
                /* A consumer that takes only flat buffers gets the bytes. */
                b->ndim = 1;
                b->itemsize = 1;
                b->format = flags & PyBUF_FORMAT ? "B" : NULL;
        }
        return 0;
}

static void view_releasebuffer(struct py_view *v, Py_buffer *b) {
        (void)b;
        py_region_unexport(v->region);
}

static PyBufferProcs view_buffer = {
        .bf_getbuffer = (getbufferproc)view_getbuffer,
        .bf_releasebuffer = (releasebufferproc)view_releasebuffer,
};

static void view_dealloc(struct py_view *v) {
        Py_XDECREF(v->region);
        PyObject_Free(v);
}

static PyObject *view_get_shape(struct py_view *v, void *u) {
        PyObject *t = PyTuple_New(v->ndim);
        (void)u;

        for (int i = 0; t && i < v->ndim; i++) {
                PyObject *x = PyLong_FromSsize_t(v->shape[i]);
                if (!x) {
                        Py_CLEAR(t);
                        break;
                }
                PyTuple_SET_ITEM(t, i, x);
        }
        return t;
}

static PyObject *view_get_dtype(struct py_view *v, void *u) {
        (void)u;
        return PyUnicode_FromString(v->dtype->name);
}

static PyObject *view_repr(struct py_view *v) {
        PyObject *shape = view_get_shape(v, NULL), *s;

        if (!shape)
                return NULL;
        s = PyUnicode_FromFormat("<allocd.View %s%R of region %llu at offset %zd, device (%d, %d)>", v->dtype->name,
                                 shape, (unsigned long long)v->region->r.id, v->offset, (int)v->device.device_type,
                                 (int)v->device.device_id);
        Py_DECREF(shape);
        return s;
}

static PyMemberDef view_members[] = {
        {"nbytes", T_PYSSIZET, offsetof(struct py_view, nbytes), READONLY, "The bytes it covers."},
        {"offset", T_PYSSIZET, offsetof(struct py_view, offset), READONLY, "Where it starts in the region, in bytes."},
        {"region", T_OBJECT, offsetof(struct py_view, region), READONLY, "The Region it views."},
        {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef view_getset[] = {
        {"shape", (getter)view_get_shape, NULL, "The shape, C-contiguous.", NULL},
        {"dtype", (getter)view_get_dtype, NULL, "The element type's name.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef view_methods[] = {
        {"__dlpack__", (PyCFunction)(void (*)(void))py_view_dlpack, METH_VARARGS | METH_KEYWORDS,
         "__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None) -> capsule\n\n"
         "The view as a DLPack tensor, without a copy: a 'dltensor' capsule, or 'dltensor_versioned' (DLPack\n"
         "1.0, read-only flag set where the region is read-only) when max_version is (1, 0) or later.  A\n"
         "read-only region needs the latter (BufferError).  dl_device may ask for (kDLCPU, 0) for pinned\n"
         "memory; copy=True is refused (BufferError).  The region stays mapped until the tensor goes."},
        {"__dlpack_device__", py_view_dlpack_device, METH_NOARGS, "__dlpack_device__() -> (device_type, device_id)"},
        {NULL, NULL, 0, NULL},
};

PyTypeObject py_view_type = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "allocd.View",
        .tp_doc = "A region's bytes with a dtype and a C-contiguous shape (Region.view()): DLPack and the buffer\n"
                  "protocol, without a copy.",
        .tp_basicsize = sizeof(struct py_view),
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_dealloc = (destructor)view_dealloc,
        .tp_repr = (reprfunc)view_repr,
        .tp_as_buffer = &view_buffer,
        .tp_methods = view_methods,
        .tp_members = view_members,
        .tp_getset = view_getset,
};
