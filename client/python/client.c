/* SPDX-License-Identifier: MIT */
/* allocd.Client: one connection to allocd, and the requests on it. */
#include <errno.h>

#include "pyallocd.h"

/* An int argument that must fit a uint64_t; None leaves *ret as it is. */
static int u64_arg(PyObject *o, const char *what, uint64_t *ret) {
        PyObject *i;
        unsigned long long v;

        if (!o || o == Py_None)
                return 0;
        i = PyNumber_Index(o);
        if (!i) {
                PyErr_Format(PyExc_TypeError, "%s must be an int, not %.80s", what, Py_TYPE(o)->tp_name);
                return -1;
        }
        v = PyLong_AsUnsignedLongLong(i);
        Py_DECREF(i);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Format(PyExc_ValueError, "%s=%R: an int from 0 to 2**64-1", what, o);
                return -1;
        }
        *ret = v;
        return 0;
}

/*
 * Allocates (o) or attaches (ao) what, without the GIL: both may wait.  A region that came while the
 * client was being closed is left to the disconnect: nothing will ever see it.
 */
static PyObject *region_request(struct py_client *cl, const char *what, uint64_t size, const struct alloc_opts *o,
                                const struct alloc_attach_opts *ao, PyObject *name) {
        struct alloc_region reg;
        PyObject *rg = NULL;
        PyThreadState *ts;
        int r;

        if (py_client_enter(cl) < 0)
                return NULL;
        ts = PyEval_SaveThread();
        r = o ? alloc_region_new(cl->c, what, size, o, &reg) : alloc_region_attach(cl->c, what, ao, &reg);
        PyEval_RestoreThread(ts);
        if (r < 0)
                py_raise(r);
        else if (cl->closed)
                PyErr_SetString(PyExc_ValueError, "the allocd client was closed while the request waited");
        else if (!(rg = py_region_new(cl, &reg,
                                      name ? PyUnicode_DecodeUTF8(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                                                                  "surrogateescape")
                                           : Py_NewRef(Py_None)))) {
                /* Without the GIL too: the detach may wait for the thread that reads replies (kind.c). */
                ts = PyEval_SaveThread();
                alloc_region_detach(cl->c, reg.id);
                PyEval_RestoreThread(ts);
        }
        py_client_leave(cl);
        return rg;
}

static PyObject *client_alloc(struct py_client *cl, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"pool",    "size",     "count",     "align", "phase",  "boundary",
                                 "low",     "high",     "numa_node", "zero",  "nowait", "nofail",
                                 "persist", "unsealed", "timeout",   "name",  NULL};
        PyObject *pool = NULL, *size_o, *count = NULL, *align = NULL, *phase = NULL, *boundary = NULL, *low = NULL,
                 *high = NULL, *node = Py_None, *timeout = Py_None, *name = NULL, *ret = NULL;
        int zero = 0, nowait = 0, nofail = 0, persist = 0, unsealed = 0;
        struct alloc_opts o = {0};
        uint64_t size = 0;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O|$OOOOOOOpppppOO&:alloc", kwlist, py_name_arg, &pool, &size_o,
                                         &count, &align, &phase, &boundary, &low, &high, &node, &zero, &nowait, &nofail,
                                         &persist, &unsealed, &timeout, py_name_arg, &name))
                return NULL;
        if (!pool) {
                PyErr_SetString(PyExc_TypeError, "alloc() needs a pool name, not None");
                goto out;
        }
        if (u64_arg(size_o, "size", &size) < 0 || u64_arg(count, "count", &o.count) < 0 ||
            u64_arg(align, "align", &o.align) < 0 || u64_arg(phase, "phase", &o.phase) < 0 ||
            u64_arg(boundary, "boundary", &o.boundary) < 0 || u64_arg(low, "low", &o.low) < 0 ||
            u64_arg(high, "high", &o.high) < 0)
                goto out;
        if (node != Py_None) {
                long n = PyLong_Check(node) ? PyLong_AsLong(node) : -1;
                if (n < 0 || n > INT_MAX) {
                        PyErr_Clear();
                        PyErr_Format(PyExc_ValueError, "numa_node=%R: a NUMA node number (0, 1, ...) or None", node);
                        goto out;
                }
                o.on_node = true;
                o.numa_node = (int)n;
        }
        if (timeout != Py_None && py_timeout_ms(timeout, "timeout", false, &o.timeout_ms) < 0)
                goto out;
        o.flags = (zero ? ALLOC_ZERO : 0) | (nowait ? ALLOC_NOWAIT : 0) | (nofail ? ALLOC_NOFAIL : 0) |
                  (persist ? ALLOC_PERSIST : 0) | (unsealed ? ALLOC_UNSEALED : 0);
        o.name = name ? PyBytes_AS_STRING(name) : NULL;
        ret = region_request(cl, PyBytes_AS_STRING(pool), size, &o, NULL, name);
out:
        Py_XDECREF(pool);
        Py_XDECREF(name);
        return ret;
}

static PyObject *client_attach(struct py_client *cl, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"name", "timeout", "pool", "owner", NULL};
        PyObject *name = NULL, *pool = NULL, *timeout = Py_None, *owner = Py_None, *ret = NULL;
        struct alloc_attach_opts o = {0};

        if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|$OO&O:attach", kwlist, py_name_arg, &name, &timeout, py_name_arg,
                                         &pool, &owner))
                return NULL;
        if (!name) {
                PyErr_SetString(PyExc_TypeError, "attach() needs a region name, not None");
                goto out;
        }
        if (timeout != Py_None && py_timeout_ms(timeout, "timeout", true, &o.timeout_ms) < 0)
                goto out;
        if (owner != Py_None) {
                uint64_t uid = UINT64_MAX;
                if (u64_arg(owner, "owner", &uid) < 0 || uid >= (uid_t)-1) {
                        if (!PyErr_Occurred())
                                PyErr_Format(PyExc_ValueError, "owner=%R: a uid", owner);
                        goto out;
                }
                o.by_owner = true;
                o.owner = (uid_t)uid;
        }
        o.pool = pool ? PyBytes_AS_STRING(pool) : NULL;
        ret = region_request(cl, PyBytes_AS_STRING(name), 0, NULL, &o, name);
out:
        Py_XDECREF(name);
        Py_XDECREF(pool);
        return ret;
}

static PyObject *client_status(struct py_client *cl, PyObject *unused) {
        struct alloc_status *s = NULL;
        PyObject *ret = NULL;
        int r;
        (void)unused;

        if (py_client_enter(cl) < 0)
                return NULL;
        PyThreadState *ts = PyEval_SaveThread();
        r = alloc_status(cl->c, &s);
        PyEval_RestoreThread(ts);
        if (r < 0)
                py_raise(r);
        else
                ret = py_status_dict(s);
        alloc_status_free(s);
        py_client_leave(cl);
        return ret;
}

static PyObject *client_dump(struct py_client *cl, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"pool", NULL};
        PyObject *pool = NULL, *ret = NULL;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "|O&:dump", kwlist, py_name_arg, &pool))
                return NULL;
        if (py_client_enter(cl) == 0) {
                ret = py_dump_list(cl, pool ? PyBytes_AS_STRING(pool) : NULL);
                py_client_leave(cl);
        }
        Py_XDECREF(pool);
        return ret;
}

static PyObject *client_close(struct py_client *cl, PyObject *unused) {
        (void)unused;

        if (!cl->closed) {
                cl->closed = true;
                cl->holds++;
                py_client_leave(cl);
        }
        Py_RETURN_NONE;
}

static PyObject *client_enter_ctx(PyObject *self, PyObject *unused) {
        (void)unused;
        return Py_NewRef(self);
}

static PyObject *client_exit_ctx(struct py_client *cl, PyObject *args) {
        (void)args;
        return client_close(cl, NULL);
}

static PyObject *client_get_closed(struct py_client *cl, void *unused) {
        (void)unused;
        return PyBool_FromLong(cl->closed);
}

static PyObject *client_repr(struct py_client *cl) {
        return PyUnicode_FromFormat("<allocd.Client %s>", cl->closed ? "closed" : "open");
}

/* Regions hold their client, and views their region: when this runs, nothing of it is left in use. */
static void client_dealloc(struct py_client *cl) {
        py_client_forget(cl);
        if (cl->c) {
                struct alloc_client *c = cl->c;
                cl->c = NULL;
                PyThreadState *ts = PyEval_SaveThread();
                alloc_disconnect(c);
                PyEval_RestoreThread(ts);
        }
        PyObject_Free(cl);
}

static PyMethodDef client_methods[] = {
        {"alloc", (PyCFunction)(void (*)(void))client_alloc, METH_VARARGS | METH_KEYWORDS,
         "alloc(pool, size, *, count=None, align=None, phase=None, boundary=None, low=None, high=None,\n"
         "      numa_node=None, zero=False, nowait=False, nofail=False, persist=False, unsealed=False,\n"
         "      timeout=None, name=None) -> Region\n\n"
         "A region of size bytes (times count) in pool, as alloc_region_new(3): align and boundary are powers\n"
         "of two, the region lies in [low, high) of the pool, on numa_node if given.  zero: its bytes are 0.\n"
         "It waits for room up to timeout seconds (None: allocd's wait_timeout), or not at all with nowait\n"
         "(WouldBlock), or without limit with nofail.  name publishes it for attach(); persist keeps it after\n"
         "this connection ends, until someone frees it; unsealed keeps attach() waiting until Region.seal()."},
        {"attach", (PyCFunction)(void (*)(void))client_attach, METH_VARARGS | METH_KEYWORDS,
         "attach(name, *, timeout=None, pool=None, owner=None) -> Region\n\n"
         "The region published as name, mapped here.  timeout: seconds to wait for the name to be published\n"
         "and sealed (None or 0: NotFound or WouldBlock at once, else Timeout).  pool and owner (a uid): the\n"
         "name must have been published in that pool, by that uid (else Exists)."},
        {"kind", (PyCFunction)(void (*)(void))py_client_kind, METH_VARARGS | METH_KEYWORDS,
         "kind(pool, *, arena='thread', region_size=None, zero=False, nowait=False, nofail=False, timeout=None,\n"
         "     usage='default', decay_ms=None) -> Kind\n\n"
         "A kind on pool (alloc_kind_create(3)): its malloc carves regions of region_size bytes (None: 2 MiB; a\n"
         "multiple of 2 MiB) taken from allocd, so that small blocks need no round trip.  arena: 'thread' (arenas\n"
         "by a hash of the thread) or 'bijective' (one).  zero: malloc's default.  nowait, nofail, timeout: how a\n"
         "region waits for room, as in alloc().  usage: 'default' (empty regions go back after decay_ms, None:\n"
         "10000) or 'conservative' (at once).  The kind lives until destroy(), or close()."},
        {"status", (PyCFunction)client_status, METH_NOARGS,
         "status() -> dict\n\nallocd's pools, unavailable pools and clients: the fields of `allocctl --json status`."},
        {"dump", (PyCFunction)(void (*)(void))client_dump, METH_VARARGS | METH_KEYWORDS,
         "dump(pool=None) -> list of dict\n\nEvery region this uid may see (of pool, if given), in order of id: the "
         "fields of `allocctl --json dump`."},
        {"close", (PyCFunction)client_close, METH_NOARGS,
         "close()\n\nEnds the connection: allocd takes back every region it holds (but persist ones).  Arrays that\n"
         "still view its regions keep the connection open until the last of them goes; nothing else may use it."},
        {"__enter__", client_enter_ctx, METH_NOARGS, NULL},
        {"__exit__", (PyCFunction)client_exit_ctx, METH_VARARGS, NULL},
        {NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
        {"closed", (getter)client_get_closed, NULL,
         "True once close() was called, and in a child forked after connect().", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject py_client_type = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "allocd.Client",
        .tp_doc = "A connection to allocd (allocd.connect()); a context manager that closes it.",
        .tp_basicsize = sizeof(struct py_client),
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_dealloc = (destructor)client_dealloc,
        .tp_repr = (reprfunc)client_repr,
        .tp_methods = client_methods,
        .tp_getset = client_getset,
};
