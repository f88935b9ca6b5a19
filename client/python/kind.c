/* SPDX-License-Identifier: MIT */
/*
 * allocd.Kind and allocd.Block: a kind (alloc_kind(3)) on a pool of a connection, and the blocks
 * its malloc returns.  A Block is a struct py_region with kind set (pyallocd.h), so its bytes are
 * buffers, NumPy arrays, Views and DLPack tensors through the Region's own code, and its lifetime
 * follows the Region's: free() waits for the last view, and so does the Kind's destroy().
 */
#include <errno.h>
#include <string.h>

#include <alloc/kind.h>

#include "pyallocd.h"
#include <structmember.h>

/*
 * Every Kind object, so that kind_of() can name the object of the C kind a pointer lies in.  Weak:
 * a Kind leaves as it is deallocated.  One whose client disconnected stays (its C kind is gone,
 * and its address may be a new kind's): lookups skip it.
 */
static struct py_kind **registry;
static size_t nregistry, registry_cap;

static int registry_add(struct py_kind *kd) {
        if (nregistry == registry_cap) {
                size_t cap = registry_cap ? 2 * registry_cap : 16;
                struct py_kind **r = PyMem_Realloc(registry, cap * sizeof(*r));
                if (!r) {
                        PyErr_NoMemory();
                        return -1;
                }
                registry = r;
                registry_cap = cap;
        }
        registry[nregistry++] = kd;
        return 0;
}

static void registry_remove(struct py_kind *kd) {
        for (size_t i = 0; i < nregistry; i++)
                if (registry[i] == kd) {
                        registry[i] = registry[--nregistry];
                        return;
                }
}

/* The C kind, while it exists: alloc_disconnect destroyed it if the client is disconnected. */
static struct alloc_memkind *kind_ptr(struct py_kind *kd) {
        if (!kd->client->c)
                kd->k = NULL;
        return kd->k;
}

bool py_kind_alive(struct py_kind *kd) {
        return kind_ptr(kd) && !kd->destroying && !kd->client->closed;
}

static void *block_ptr(const struct py_region *b) {
        return b->r.kind == ALLOC_KIND_GPU ? (void *)(uintptr_t)b->r.dev_ptr : b->r.ptr;
}

/*
 * A call on the kind that may give a region back (a free, a policy's trim) may wait on the connection
 * (for room among the requests in flight): it runs without the GIL, since the thread that reads the
 * connection's replies may need the GIL first (module.c, interrupted).  The holds keep the kind and
 * the connection meanwhile.
 */
static PyThreadState *let_go(struct py_kind *kd) {
        kd->holds++;
        kd->client->holds++;
        return PyEval_SaveThread();
}

static void take_back(struct py_kind *kd, PyThreadState *ts) {
        PyEval_RestoreThread(ts);
        py_kind_leave(kd);
        py_client_leave(kd->client);
}

int py_block_give_back(struct py_region *b) {
        struct alloc_memkind *k = kind_ptr(b->kind);
        PyThreadState *ts;

        b->state = REGION_GONE;
        if (k && !b->client->closed) {
                ts = let_go(b->kind);
                alloc_kind_free(k, block_ptr(b));
                take_back(b->kind, ts);
        }
        return 0;
}

/* Gives every region back without the GIL (the frees are requests to allocd); k is forgotten first. */
static void destroy_now(struct py_kind *kd) {
        struct alloc_memkind *k = kind_ptr(kd);

        kd->k = NULL;
        kd->destroying = false;
        if (!k || kd->client->closed)
                return; /* the disconnect destroys it */
        kd->client->holds++;
        PyThreadState *ts = PyEval_SaveThread();
        alloc_kind_destroy(k);
        PyEval_RestoreThread(ts);
        py_client_leave(kd->client);
}

void py_kind_leave(struct py_kind *kd) {
        if (--kd->holds == 0 && kd->destroying)
                destroy_now(kd);
}

static int check_alive(struct py_kind *kd) {
        if (py_kind_alive(kd))
                return 0;
        PyErr_SetString(PyExc_ValueError,
                        kd->client->closed ? "the kind's allocd client is closed" : "the kind was destroyed");
        return -1;
}

/* An int from 0 to max; None leaves *ret alone. */
static int size_arg(PyObject *o, const char *what, size_t max, size_t *ret) {
        size_t v;

        if (o == Py_None)
                return 0;
        if (!PyIndex_Check(o)) {
                PyErr_Format(PyExc_TypeError, "%s must be an int, not %.80s", what, Py_TYPE(o)->tp_name);
                return -1;
        }
        PyObject *i = PyNumber_Index(o);
        v = i ? PyLong_AsSize_t(i) : (size_t)-1;
        Py_XDECREF(i);
        if ((v == (size_t)-1 && PyErr_Occurred()) || v > max) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "%s=%R: an int from 0 to %zu", what, o, max);
                return -1;
        }
        *ret = v;
        return 0;
}

/* One of names (a str), as its index. */
static int choice_arg(PyObject *o, const char *what, const char *const names[2], int *ret) {
        for (int i = 0; i < 2; i++)
                if (PyUnicode_Check(o) && PyUnicode_CompareWithASCIIString(o, names[i]) == 0) {
                        *ret = i;
                        return 0;
                }
        PyErr_Format(PyExc_ValueError, "%s=%R: '%s' or '%s'", what, o, names[0], names[1]);
        return -1;
}

static const char *const arenas[2] = {"thread", "bijective"}, *const usages[2] = {"default", "conservative"};

/*
 * What DLPack must say of the blocks (the pool's kind, pinned memory registered with CUDA here, a
 * gpu pool's ordinal here) is what a region of the pool says: one of a quantum is taken and given
 * back, with the kind's flags, so that it waits or fails as the kind's first region would.
 */
static int probe_pool(struct py_kind *kd, const char *pool, const struct alloc_kind_opts *o) {
        struct alloc_opts ro = {.flags = o->region_flags, .timeout_ms = o->timeout_ms};
        struct alloc_region r;
        int e = alloc_region_new(kd->client->c, pool, 1, &ro, &r);

        if (e < 0)
                return e;
        kd->mem = r.kind;
        kd->registered = r.registered;
        kd->device = r.device;
        memcpy(kd->pool_name, r.pool, sizeof(kd->pool_name));
        return alloc_region_free(kd->client->c, r.id);
}

PyObject *py_client_kind(struct py_client *cl, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"pool",   "arena",   "region_size", "zero",     "nowait",
                                 "nofail", "timeout", "usage",       "decay_ms", NULL};
        PyObject *pool = NULL, *arena = NULL, *region_size = Py_None, *timeout = Py_None, *usage = NULL,
                 *decay = Py_None;
        int zero = 0, nowait = 0, nofail = 0, a = 0, u = 0, e;
        struct alloc_kind_opts o = {0};
        struct py_kind *kd = NULL;
        size_t rs = 0, dm = 0;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|$OOpppOOO:kind", kwlist, py_name_arg, &pool, &arena,
                                         &region_size, &zero, &nowait, &nofail, &timeout, &usage, &decay))
                return NULL;
        if (!pool) {
                PyErr_SetString(PyExc_TypeError, "kind() needs a pool name, not None");
                goto out;
        }
        if ((arena && choice_arg(arena, "arena", arenas, &a) < 0) ||
            (usage && choice_arg(usage, "usage", usages, &u) < 0) ||
            size_arg(region_size, "region_size", UINT64_MAX, &rs) < 0 ||
            size_arg(decay, "decay_ms", UINT32_MAX, &dm) < 0 ||
            (timeout != Py_None && py_timeout_ms(timeout, "timeout", false, &o.timeout_ms) < 0))
                goto out;
        o.arena = (enum alloc_kind_arena_policy)a;
        o.usage = (enum alloc_kind_usage_policy)u;
        o.region_size = rs;
        o.decay_ms = (uint32_t)dm;
        o.region_flags = (nowait ? ALLOC_NOWAIT : 0) | (nofail ? ALLOC_NOFAIL : 0);
        if (py_client_enter(cl) < 0)
                goto out;
        if (!(kd = PyObject_New(struct py_kind, &py_kind_type))) {
                py_client_leave(cl);
                goto out;
        }
        kd->client = (struct py_client *)Py_NewRef((PyObject *)cl);
        kd->k = NULL;
        kd->pool = py_text(PyBytes_AS_STRING(pool));
        kd->holds = 0;
        kd->destroying = false;
        kd->zero = zero;
        PyThreadState *ts = PyEval_SaveThread();
        e = probe_pool(kd, PyBytes_AS_STRING(pool), &o);
        if (e >= 0)
                e = alloc_kind_create(cl->c, PyBytes_AS_STRING(pool), &o, &kd->k);
        PyEval_RestoreThread(ts);
        if (e < 0)
                py_raise(e);
        else if (!kd->pool || registry_add(kd) < 0)
                e = -ENOMEM;
        py_client_leave(cl);
        if (e < 0)
                Py_CLEAR(kd);
out:
        Py_XDECREF(pool);
        return (PyObject *)kd;
}

static PyObject *block_new(struct py_kind *kd, void *p, size_t size) {
        struct py_region *b = PyObject_New(struct py_region, &py_block_type);

        if (!b)
                return NULL;
        memset(&b->r, 0, sizeof(b->r));
        b->r.kind = kd->mem;
        b->r.size = size;
        b->r.device = kd->device;
        b->r.registered = kd->registered;
        b->r.sealed = true;
        if (kd->mem == ALLOC_KIND_GPU)
                b->r.dev_ptr = (uintptr_t)p;
        else
                b->r.cptr = b->r.ptr = p;
        memcpy(b->r.pool, kd->pool_name, sizeof(b->r.pool));
        b->client = (struct py_client *)Py_NewRef((PyObject *)kd->client);
        b->kind = (struct py_kind *)Py_NewRef((PyObject *)kd);
        b->name = Py_NewRef(Py_None);
        b->exports = 0;
        b->state = REGION_LIVE;
        return (PyObject *)b;
}

/*
 * Without the GIL: a block usually comes from this thread's cache, but a new region from allocd
 * may wait for room.  The holds keep the kind and the connection while it runs.
 */
static PyObject *kind_malloc(struct py_kind *kd, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"size", "align", "zero", NULL};
        PyObject *size_o, *align_o = Py_None, *zero_o = Py_None, *b;
        size_t size = 0, align = 0;
        int zero = kd->zero, e = 0;
        void *p = NULL;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO:malloc", kwlist, &size_o, &align_o, &zero_o) ||
            size_arg(size_o, "size", PY_SSIZE_T_MAX, &size) < 0 || size_arg(align_o, "align", SIZE_MAX, &align) < 0 ||
            (zero_o != Py_None && (zero = PyObject_IsTrue(zero_o)) < 0) || check_alive(kd) < 0)
                return NULL;
        /* alloc_kind_posix_memalign says EINVAL, not why. */
        if (align_o != Py_None && (align < sizeof(void *) || (align & (align - 1))))
                return py_raise_msg(EINVAL, "align=%zu: a power of two, at least %zu", align, sizeof(void *));
        if (py_client_enter(kd->client) < 0)
                return NULL;
        kd->holds++;
        PyThreadState *ts = PyEval_SaveThread();
        if (align_o != Py_None) {
                e = alloc_kind_posix_memalign(kd->k, &p, align, size);
                if (!e && zero && kd->mem == ALLOC_KIND_GPU)
                        e = ENOTSUP; /* the CPU cannot write device memory */
                else if (!e && zero)
                        memset(p, 0, size);
                if (e == ENOTSUP)
                        alloc_kind_free(kd->k, p);
        } else {
                p = zero ? alloc_kind_calloc(kd->k, 1, size) : alloc_kind_malloc(kd->k, size);
                e = p ? 0 : errno;
        }
        PyEval_RestoreThread(ts);
        if (e == ENOTSUP && align_o != Py_None)
                py_raise_msg(e, "zero=True with align: a gpu pool's kind cannot zero its blocks");
        else if (e)
                py_raise(-e);
        b = e ? NULL : block_new(kd, p, size);
        if (!e && !b) { /* without the GIL, as py_block_give_back's free */
                ts = PyEval_SaveThread();
                alloc_kind_free(kd->k, p);
                PyEval_RestoreThread(ts);
        }
        py_kind_leave(kd);
        py_client_leave(kd->client);
        return b;
}

static PyObject *kind_update_policy(struct py_kind *kd, PyObject *arg) {
        int u, e;

        if (choice_arg(arg, "usage", usages, &u) < 0 || check_alive(kd) < 0)
                return NULL;
        PyThreadState *ts = let_go(kd);
        e = alloc_kind_update_memory_usage_policy(kd->k, (enum alloc_kind_usage_policy)u);
        take_back(kd, ts);
        if (e < 0)
                return py_raise(e);
        Py_RETURN_NONE;
}

static PyObject *kind_stats(struct py_kind *kd, PyObject *unused) {
        struct alloc_kind_stats st;
        int e;
        (void)unused;

        if (check_alive(kd) < 0)
                return NULL;
        e = alloc_kind_stats(kd->k, &st);
        if (e < 0)
                return py_raise(e);
        return Py_BuildValue("{s:K,s:K,s:K}", "regions", (unsigned long long)st.regions, "region_bytes",
                             (unsigned long long)st.region_bytes, "round_trips", (unsigned long long)st.round_trips);
}

static PyObject *kind_destroy(struct py_kind *kd, PyObject *unused) {
        (void)unused;

        if (kd->holds > 0)
                kd->destroying = true;
        else
                destroy_now(kd);
        Py_RETURN_NONE;
}

static PyObject *kind_enter(PyObject *self, PyObject *unused) {
        (void)unused;
        return Py_NewRef(self);
}

static PyObject *kind_exit(struct py_kind *kd, PyObject *args) {
        (void)args;
        return kind_destroy(kd, NULL);
}

/* Blocks hold their kind: when this runs, none is left. */
static void kind_dealloc(struct py_kind *kd) {
        registry_remove(kd);
        destroy_now(kd);
        Py_DECREF(kd->client);
        Py_XDECREF(kd->pool);
        PyObject_Free(kd);
}

static PyObject *kind_repr(struct py_kind *kd) {
        return PyUnicode_FromFormat("<allocd.Kind on %s pool %R%s>", py_kind_name(kd->mem), kd->pool,
                                    py_kind_alive(kd) ? "" : ", destroyed");
}

static PyObject *kind_get_live(struct py_kind *kd, void *u) {
        (void)u;
        return PyBool_FromLong(py_kind_alive(kd));
}

static PyObject *kind_get_memory(struct py_kind *kd, void *u) {
        (void)u;
        return PyUnicode_FromString(py_kind_name(kd->mem));
}

/* The address obj stands for: an int, a Block, a buffer's start, or a tensor's data_ptr(). */
static int address_of(PyObject *obj, uintptr_t *ret) {
        PyObject *o = NULL;
        Py_buffer view;

        if (Py_IS_TYPE(obj, &py_block_type)) {
                *ret = (uintptr_t)block_ptr((struct py_region *)obj);
                return 0;
        }
        if (PyLong_Check(obj))
                o = Py_NewRef(obj);
        else if (PyObject_HasAttrString(obj, "data_ptr"))
                o = PyObject_CallMethod(obj, "data_ptr", NULL);
        else if (PyObject_CheckBuffer(obj) && PyObject_GetBuffer(obj, &view, PyBUF_FULL_RO) == 0) {
                *ret = (uintptr_t)view.buf;
                PyBuffer_Release(&view);
                return 0;
        } else if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "kind_of(%.80s): an address (int), a Block, a buffer or a tensor",
                             Py_TYPE(obj)->tp_name);
        *ret = o ? (uintptr_t)PyLong_AsVoidPtr(o) : 0;
        Py_XDECREF(o);
        return PyErr_Occurred() ? -1 : 0;
}

PyObject *py_kind_of(PyObject *self, PyObject *obj) {
        struct alloc_memkind *k;
        uintptr_t p;
        (void)self;

        if (address_of(obj, &p) < 0)
                return NULL;
        k = alloc_kind_detect((const void *)p);
        for (size_t i = 0; k && i < nregistry; i++)
                if (kind_ptr(registry[i]) == k && !registry[i]->client->closed)
                        return Py_NewRef((PyObject *)registry[i]);
        Py_RETURN_NONE;
}

static PyMemberDef kind_members[] = {
        {"pool", T_OBJECT, offsetof(struct py_kind, pool), READONLY, "The pool its regions come from."},
        {"client", T_OBJECT, offsetof(struct py_kind, client), READONLY, "The Client it takes them through."},
        {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef kind_getset[] = {
        {"live", (getter)kind_get_live, NULL, "Not destroyed, and its client is open.", NULL},
        {"memory", (getter)kind_get_memory, NULL, "The pool's kind: 'host', 'pinned' or 'gpu'.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef kind_methods[] = {
        {"malloc", (PyCFunction)(void (*)(void))kind_malloc, METH_VARARGS | METH_KEYWORDS,
         "malloc(size, *, align=None, zero=None) -> Block\n\n"
         "size bytes from the kind (alloc_kind_malloc; align: alloc_kind_posix_memalign, a power of two and a\n"
         "multiple of the pointer's size, else Invalid).  zero (None: the kind's zero) zeroes them; a gpu\n"
         "pool's kind cannot (Error, ENOTSUP).  NoMemory when the pool has no room for a region."},
        {"update_memory_usage_policy", (PyCFunction)kind_update_policy, METH_O,
         "update_memory_usage_policy(usage)\n\n'default' (empty regions go back after decay_ms) or 'conservative'\n"
         "(at once), as memkind_update_memory_usage_policy."},
        {"stats", (PyCFunction)kind_stats, METH_NOARGS,
         "stats() -> dict\n\nregions and region_bytes it holds from allocd now, round_trips to allocd so far."},
        {"destroy", (PyCFunction)kind_destroy, METH_NOARGS,
         "destroy()\n\nGives every region back to allocd: its blocks are gone.  While arrays still view one of\n"
         "them, that happens when the last of them goes; nothing may use the kind from now on."},
        {"__enter__", kind_enter, METH_NOARGS, NULL},
        {"__exit__", (PyCFunction)kind_exit, METH_VARARGS, NULL},
        {NULL, NULL, 0, NULL},
};

PyTypeObject py_kind_type = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "allocd.Kind",
        .tp_doc = "A heap over an allocd pool (Client.kind(), alloc_kind(3)): small blocks without a round trip\n"
                  "to allocd.  A context manager that destroys it.",
        .tp_basicsize = sizeof(struct py_kind),
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_dealloc = (destructor)kind_dealloc,
        .tp_repr = (reprfunc)kind_repr,
        .tp_methods = kind_methods,
        .tp_members = kind_members,
        .tp_getset = kind_getset,
};

/* ---- Block ---- */

static PyObject *block_free(struct py_region *b, PyObject *unused) {
        (void)unused;
        return py_region_end(b, true);
}

static void block_dealloc(struct py_region *b) {
        if (b->state == REGION_LIVE)
                py_block_give_back(b);
        Py_DECREF(b->kind);
        Py_DECREF(b->client);
        Py_XDECREF(b->name);
        PyObject_Free(b);
}

static PyObject *block_repr(struct py_region *b) {
        return PyUnicode_FromFormat("<allocd.Block of %llu bytes at %p in %s pool %s%s>", (unsigned long long)b->r.size,
                                    block_ptr(b), py_kind_name(b->r.kind), b->r.pool,
                                    b->state == REGION_LIVE ? "" : ", freed");
}

static PyObject *block_get_ptr(struct py_region *b, void *u) {
        (void)u;
        return PyLong_FromVoidPtr(block_ptr(b));
}

static PyObject *block_get_usable(struct py_region *b, void *u) {
        (void)u;
        if (py_region_check(b) < 0)
                return NULL;
        return PyLong_FromSize_t(alloc_kind_malloc_usable_size(b->kind->k, block_ptr(b)));
}

static PyObject *block_get_live(struct py_region *b, void *u) {
        (void)u;
        return PyBool_FromLong(b->state == REGION_LIVE && py_kind_alive(b->kind));
}

static PyObject *block_get_device(struct py_region *b, void *u) {
        (void)u;
        return b->r.device >= 0 ? PyLong_FromLong(b->r.device) : Py_NewRef(Py_None);
}

static PyMemberDef block_members[] = {
        {"size", T_ULONGLONG, offsetof(struct py_region, r.size), READONLY, "The bytes asked for."},
        {"kind", T_OBJECT, offsetof(struct py_region, kind), READONLY, "The Kind it came from."},
        {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef block_getset[] = {
        {"ptr", (getter)block_get_ptr, NULL, "Its address: in this process (host, pinned), or the device's (gpu).",
         NULL},
        {"usable_size", (getter)block_get_usable, NULL, "The bytes usable (alloc_kind_malloc_usable_size).", NULL},
        {"live", (getter)block_get_live, NULL, "Not freed, its kind not destroyed, its client open.", NULL},
        {"device", (getter)block_get_device, NULL, "gpu: the CUDA device ordinal in this process; else None.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef block_methods[] = {
        {"free", (PyCFunction)block_free, METH_NOARGS,
         "free()\n\nGives it back to its kind; while arrays still view it, when the last of them goes.  A Block\n"
         "nobody references is freed."},
        {"as_array", (PyCFunction)(void (*)(void))py_region_as_array, METH_VARARGS | METH_KEYWORDS,
         "as_array(dtype='uint8', shape=None, *, offset=0) -> numpy.ndarray\n\nAs Region.as_array."},
        {"view", (PyCFunction)(void (*)(void))py_region_view, METH_VARARGS | METH_KEYWORDS,
         "view(dtype='uint8', shape=None, *, offset=0, device=None) -> View\n\nAs Region.view."},
        {"__dlpack__", (PyCFunction)(void (*)(void))py_region_dlpack, METH_VARARGS | METH_KEYWORDS,
         "__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None) -> capsule\n\n"
         "Its bytes as a one-dimensional uint8 DLPack tensor, without a copy (View.__dlpack__)."},
        {"__dlpack_device__", (PyCFunction)py_region_dlpack_device, METH_NOARGS,
         "__dlpack_device__() -> (device_type, device_id)\n\nAs the pool's regions: kDLCPU, kDLCUDAHost, kDLCUDA."},
        {NULL, NULL, 0, NULL},
};

PyTypeObject py_block_type = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "allocd.Block",
        .tp_doc = "A block of a Kind (Kind.malloc()): a buffer (host and pinned pools) and a DLPack tensor,\n"
                  "as a Region is.",
        .tp_basicsize = sizeof(struct py_region),
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_dealloc = (destructor)block_dealloc,
        .tp_repr = (reprfunc)block_repr,
        .tp_as_buffer = &py_region_buffer,
        .tp_methods = block_methods,
        .tp_members = block_members,
        .tp_getset = block_getset,
};
