/* SPDX-License-Identifier: MIT */
/*
 * The module: allocd.connect, the exceptions, and the helpers the types share.  Each error code of
 * liballoc-client(3) has an exception class, so that callers catch what they can handle (WouldBlock,
 * Timeout) and let the rest through; each also derives from the builtin that means the same (the
 * standard library's TimeoutError, PermissionError...), so generic handlers work too.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pyallocd.h"
#include "text.h"

static PyObject *error_base;

static struct error_class {
        const char *name;
        int errnos[3];
        PyObject **builtin; /* a second base, or NULL */
        const char *doc;
        PyObject *cls;
} error_classes[] = {
        {"NoPool", {ENODEV}, NULL, "No pool of that name (ENODEV).", NULL},
        {"Quota", {EDQUOT}, NULL, "The uid's quota in the pool would be exceeded (EDQUOT).", NULL},
        {"WouldBlock",
         {EAGAIN},
         &PyExc_BlockingIOError,
         "No room now and nowait=True, or the name is not sealed yet (EAGAIN).",
         NULL},
        {"Timeout",
         {ETIMEDOUT, ETIME},
         &PyExc_TimeoutError,
         "No room or no such name within the timeout (ETIMEDOUT), or allocd did not answer in time (ETIME).",
         NULL},
        {"Denied",
         {EACCES, EPERM},
         &PyExc_PermissionError,
         "The pool's owner, group and mode forbid it (EACCES).",
         NULL},
        {"NotFound", {ENOENT}, &PyExc_FileNotFoundError, "No region published under that name (ENOENT).", NULL},
        {"Exists",
         {EEXIST},
         &PyExc_FileExistsError,
         "The name is published already, or in another pool or by another owner than asked (EEXIST).",
         NULL},
        {"TooBig", {E2BIG}, NULL, "The request cannot fit even in the empty pool (E2BIG).", NULL},
        {"NoMemory",
         {ENOMEM},
         &PyExc_MemoryError,
         "A kind has no room: its pool cannot give it a region (ENOMEM; the message says why).",
         NULL},
        {"Limit", {EMFILE}, NULL, "A limit of allocd: connections, regions, waiters or names (EMFILE).", NULL},
        {"Invalid",
         {EINVAL, EOVERFLOW},
         &PyExc_ValueError,
         "allocd refused an argument (EINVAL), or count x size overflows (EOVERFLOW).",
         NULL},
        {"Disconnected",
         {ECONNRESET, ECONNREFUSED, EPIPE},
         &PyExc_ConnectionError,
         "The connection to allocd is gone, or there is no allocd at the socket (ECONNRESET, ECONNREFUSED).",
         NULL},
};

PyObject *py_raise_msg(int err, const char *fmt, ...) {
        PyObject *cls = error_base, *msg, *exc;
        va_list ap;

        if (err < 0)
                err = -err;
        for (size_t i = 0; i < sizeof(error_classes) / sizeof(error_classes[0]); i++)
                for (size_t j = 0; j < 3 && error_classes[i].errnos[j]; j++)
                        if (error_classes[i].errnos[j] == err)
                                cls = error_classes[i].cls;
        va_start(ap, fmt);
        msg = PyUnicode_FromFormatV(fmt, ap);
        va_end(ap);
        if (!msg)
                return NULL;
        exc = PyObject_CallFunction(cls, "iO", err, msg);
        if (exc && PyObject_SetAttrString(exc, "message", msg) == 0)
                PyErr_SetObject(cls, exc);
        Py_XDECREF(exc);
        Py_DECREF(msg);
        return NULL;
}

PyObject *py_raise(int err) {
        const char *m = alloc_last_error();

        /*
         * A signal handler raised (KeyboardInterrupt) while the call waited (interrupted, below): that is
         * the call's exception, whatever the call made of -EINTR (a kind's malloc says ENOMEM).
         */
        if (PyErr_Occurred())
                return NULL;
        return py_raise_msg(err, "%s", *m ? m : strerror(err < 0 ? -err : err));
}

int py_client_enter(struct py_client *cl) {
        if (cl->closed || !cl->c) {
                PyErr_SetString(PyExc_ValueError, cl->forked ? "this allocd client was connected by the parent process "
                                                               "before fork(): connect again in this one"
                                                             : "the allocd client is closed");
                return -1;
        }
        cl->holds++;
        return 0;
}

void py_client_leave(struct py_client *cl) {
        if (--cl->holds == 0 && cl->closed && cl->c) {
                struct alloc_client *c = cl->c;
                cl->c = NULL;
                PyThreadState *ts = PyEval_SaveThread();
                alloc_disconnect(c);
                PyEval_RestoreThread(ts);
        }
}

/*
 * A child forked from this process has a copy of each Client, whose socket is still the parent's
 * connection: a request there (a Region deallocated, alloc_disconnect giving back what the kinds
 * hold) would act on the parent's regions, and could read the parent's replies.  So in the child
 * every client is closed and its connection forgotten, left to the parent, without a word sent.
 */
static struct py_client *clients;

static void after_fork_child(void) {
        for (struct py_client *cl = clients; cl; cl = cl->next) {
                cl->closed = cl->forked = true;
                cl->c = NULL;
        }
}

static void client_remember(struct py_client *cl) {
        cl->prev = NULL;
        cl->next = clients;
        if (clients)
                clients->prev = cl;
        clients = cl;
}

void py_client_forget(struct py_client *cl) {
        if (cl->prev)
                cl->prev->next = cl->next;
        else
                clients = cl->next;
        if (cl->next)
                cl->next->prev = cl->prev;
}

/* Names and client names are bytes to allocd; surrogateescape gives back exactly the bytes it sent. */
PyObject *py_text(const char *s) {
        return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "surrogateescape");
}

int py_name_arg(PyObject *o, void *ret) {
        PyObject **out = ret, *b = NULL;

        if (!o) { /* the cleanup call of an O& converter */
                Py_CLEAR(*out);
                return 1;
        }
        if (o == Py_None) {
                *out = NULL;
                return 1;
        }
        if (PyUnicode_Check(o))
                b = PyUnicode_AsEncodedString(o, "utf-8", "surrogateescape");
        else if (PyBytes_Check(o))
                b = Py_NewRef(o);
        else
                PyErr_Format(PyExc_TypeError, "a name is a str or bytes, not %.80s", Py_TYPE(o)->tp_name);
        if (!b)
                return 0;
        if ((size_t)PyBytes_GET_SIZE(b) != strlen(PyBytes_AS_STRING(b))) {
                PyErr_SetString(PyExc_ValueError, "a name may not contain a NUL character");
                Py_DECREF(b);
                return 0;
        }
        *out = b;
        return Py_CLEANUP_SUPPORTED;
}

int py_timeout_ms(PyObject *o, const char *what, bool zero_ok, uint32_t *ret) {
        double s = PyFloat_AsDouble(o);

        if (s == -1.0 && PyErr_Occurred()) {
                if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                        PyErr_Clear(); /* an int past a double's range: out of range below */
                        s = -1;
                } else {
                        if (PyErr_ExceptionMatches(PyExc_TypeError))
                                PyErr_Format(PyExc_TypeError, "%s is in seconds (an int or a float), not %.80s", what,
                                             Py_TYPE(o)->tp_name);
                        return -1;
                }
        }
        if (!(s >= 0) || (!zero_ok && s == 0) || ceil(s * 1000) > UINT32_MAX) {
                PyErr_Format(PyExc_ValueError, "%s=%R: seconds, %s and at most %u", what, o,
                             zero_ok ? "0 or more" : "more than 0", UINT32_MAX / 1000);
                return -1;
        }
        *ret = (uint32_t)ceil(s * 1000);
        return 0;
}

const char *py_kind_name(enum alloc_kind k) {
        static const char *names[] = {"host", "fpga", "pinned", "gpu"};

        return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

/*
 * alloc_set_interrupt's callback, without the GIL: asked before a call's wait for allocd sleeps and
 * every 50 ms while it does, signal or not.  Python's rule (PEP 475): the handlers run, and the call
 * ends if one raised (the exception stays set for the method to return), else it goes on waiting.
 * Handlers run in the main thread only (data: its id when the client was made): elsewhere
 * PyErr_CheckSignals does nothing, so the answer is no without contending for the GIL with the
 * threads that run Python meanwhile.  No thread may hold the GIL while it waits on the connection
 * (kind.c, let_go): the main thread's reads would wait for it.
 */
static int interrupted(void *data) {
        PyGILState_STATE g;
        int r;

        if (PyThread_get_thread_ident() != (unsigned long)(uintptr_t)data)
                return 0;
        g = PyGILState_Ensure();
        r = PyErr_CheckSignals();
        PyGILState_Release(g);
        return r < 0;
}

/* threading.main_thread().ident, as PyThread_get_thread_ident says it there; 0 and an exception if not known. */
static unsigned long main_thread_ident(void) {
        PyObject *t = PyImport_ImportModule("threading");
        PyObject *m = t ? PyObject_CallMethod(t, "main_thread", NULL) : NULL;
        PyObject *i = m ? PyObject_GetAttrString(m, "ident") : NULL;
        unsigned long id = i ? PyLong_AsUnsignedLong(i) : 0;

        Py_XDECREF(i);
        Py_XDECREF(m);
        Py_XDECREF(t);
        return PyErr_Occurred() ? 0 : id;
}

static PyObject *py_connect(PyObject *self, PyObject *args, PyObject *kw) {
        static char *kwlist[] = {"socket", "name", NULL};
        PyObject *sock = NULL, *name = NULL;
        struct py_client *cl = NULL;
        struct alloc_client *c = NULL;
        PyThreadState *ts;
        unsigned long main_id;
        int r;
        (void)self;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "|O&O&:connect", kwlist, PyUnicode_FSConverter, &sock, py_name_arg,
                                         &name) ||
            !(main_id = main_thread_ident()))
                goto out;
        /* Checked here, so that the error names this parameter, not the protocol's client_name. */
        if (name && !text_valid(PyBytes_AS_STRING(name), ALLOC_CLIENT_NAME_MAX)) {
                PyErr_Format(PyExc_ValueError,
                             "connect(): name is 1-%d bytes of UTF-8 without control characters, or None for the "
                             "program's name",
                             ALLOC_CLIENT_NAME_MAX);
                goto out;
        }
        ts = PyEval_SaveThread();
        r = alloc_connect(&c, sock ? PyBytes_AS_STRING(sock) : NULL, name ? PyBytes_AS_STRING(name) : NULL);
        PyEval_RestoreThread(ts);
        if (r < 0) {
                py_raise(r);
                goto out;
        }
        cl = PyObject_New(struct py_client, &py_client_type);
        if (!cl) {
                alloc_disconnect(c);
                goto out;
        }
        alloc_set_interrupt(c, interrupted, (void *)(uintptr_t)main_id);
        cl->c = c;
        cl->closed = cl->forked = false;
        cl->holds = 0;
        client_remember(cl);
out:
        Py_XDECREF(sock);
        Py_XDECREF(name);
        return (PyObject *)cl;
}

static PyObject *py_cuda_unavailable(PyObject *self, PyObject *unused) {
        const char *why;
        (void)self;
        (void)unused;

        PyThreadState *ts = PyEval_SaveThread();
        why = alloc_cuda_unavailable();
        PyEval_RestoreThread(ts);
        if (!why)
                Py_RETURN_NONE;
        return py_text(why);
}

static PyMethodDef module_methods[] = {
        {"connect", (PyCFunction)(void (*)(void))py_connect, METH_VARARGS | METH_KEYWORDS,
         "connect(socket=None, name=None) -> Client\n\n"
         "Connects to allocd at socket (None: $ALLOCD_SOCKET, else the system daemon's /run/allocd/allocd.sock\n"
         "for root or when it exists, else $XDG_RUNTIME_DIR/allocd/allocd.sock).  name (None: the program's name)\n"
         "shows in allocctl status.\n"
         "The connection is a lease: what it holds goes back to allocd when it closes or the process ends."},
        {"kind_of", py_kind_of, METH_O,
         "kind_of(obj) -> Kind or None\n\n"
         "The Kind whose blocks obj lies in (alloc_kind_detect(3)): obj is an address (an int), a Block, an\n"
         "object with the buffer protocol (a NumPy array) or with data_ptr() (a torch tensor).  None for memory\n"
         "of no kind, or of a kind whose client is closed."},
        {"cuda_unavailable", py_cuda_unavailable, METH_NOARGS,
         "cuda_unavailable() -> str or None\n\nNone if this process can use CUDA, else why not, in words."},
        {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
        PyModuleDef_HEAD_INIT,
        .m_name = "allocd",
        .m_doc = "Regions of allocd's memory pools, shared between processes, as buffers, NumPy arrays and\n"
                 "DLPack tensors (PyTorch, CuPy) without a copy.  See docs/python.md.",
        .m_size = -1,
        .m_methods = module_methods,
};

static int add_errors(PyObject *m) {
        error_base = PyErr_NewExceptionWithDoc("allocd.Error",
                                               "An allocd request failed.  errno is the error code of "
                                               "liballoc-client(3), message what allocd said.",
                                               PyExc_OSError, NULL);
        if (!error_base || PyModule_AddObjectRef(m, "Error", error_base) < 0)
                return -1;
        for (size_t i = 0; i < sizeof(error_classes) / sizeof(error_classes[0]); i++) {
                struct error_class *e = &error_classes[i];
                char qual[64];
                PyObject *bases = e->builtin ? PyTuple_Pack(2, error_base, *e->builtin) : PyTuple_Pack(1, error_base);

                snprintf(qual, sizeof(qual), "allocd.%s", e->name);
                e->cls = bases ? PyErr_NewExceptionWithDoc(qual, e->doc, bases, NULL) : NULL;
                Py_XDECREF(bases);
                if (!e->cls || PyModule_AddObjectRef(m, e->name, e->cls) < 0)
                        return -1;
        }
        return 0;
}

PyMODINIT_FUNC PyInit_allocd(void);

PyMODINIT_FUNC PyInit_allocd(void) {
        static bool at_fork;
        PyObject *m;

        if (PyType_Ready(&py_client_type) < 0 || PyType_Ready(&py_region_type) < 0 || PyType_Ready(&py_view_type) < 0 ||
            PyType_Ready(&py_kind_type) < 0 || PyType_Ready(&py_block_type) < 0)
                return NULL;
        if (!at_fork && pthread_atfork(NULL, NULL, after_fork_child) != 0) {
                PyErr_SetString(PyExc_ImportError, "allocd: pthread_atfork failed");
                return NULL;
        }
        at_fork = true;
        m = PyModule_Create(&module_def);
        if (!m)
                return NULL;
        if (add_errors(m) < 0 || PyModule_AddObjectRef(m, "Client", (PyObject *)&py_client_type) < 0 ||
            PyModule_AddObjectRef(m, "Region", (PyObject *)&py_region_type) < 0 ||
            PyModule_AddObjectRef(m, "View", (PyObject *)&py_view_type) < 0 ||
            PyModule_AddObjectRef(m, "Kind", (PyObject *)&py_kind_type) < 0 ||
            PyModule_AddObjectRef(m, "Block", (PyObject *)&py_block_type) < 0 || py_dlpack_add_constants(m) < 0) {
                Py_DECREF(m);
                return NULL;
        }
        return m;
}
