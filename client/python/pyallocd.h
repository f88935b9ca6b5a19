/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_PY_H
#define ALLOCD_PY_H

/*
 * The allocd Python module, written with the CPython C API over liballoc-client.
 *
 * Lifetime.  A region's memory is mapped by its connection and goes when the region is freed or
 * detached, or the connection closes.  Python code may still hold arrays over it then (a
 * memoryview, a NumPy array, a tensor from DLPack), and a write through one of those would fault.
 * So nothing is unmapped while a view lives: every exported view holds a reference to its Region
 * object and counts in region->exports and client->holds; free(), detach() and close() only mark
 * the object, and the call that gives the memory back runs when the last view goes.  client->holds
 * also counts calls running without the GIL, so that close() from another thread never frees the
 * connection under them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>

#include <alloc/client.h>

struct py_client {
        PyObject_HEAD struct alloc_client *c; /* NULL once disconnected */
        bool closed;                          /* close() was called: no new calls, no new views */
        bool forked;                          /* this is a child forked after connect: closed, c NULL */
        Py_ssize_t holds;                     /* calls without the GIL + views of its regions */
        struct py_client *prev, *next;        /* every client of the process (module.c) */
};

enum region_state { REGION_LIVE, REGION_FREE_PENDING, REGION_DETACH_PENDING, REGION_GONE };

struct py_region {
        PyObject_HEAD struct py_client *client; /* a strong reference */
        struct alloc_region r;
        PyObject *name;     /* the name it was allocated or attached under, or None */
        Py_ssize_t exports; /* views (buffers, DLPack tensors) alive */
        enum region_state state;
        struct py_kind *kind; /* a Block's kind (a strong reference); NULL for a Region */
};

/*
 * A kind (kind.c).  Its blocks are struct py_region with kind set, so that the buffer protocol,
 * View and DLPack serve them as they serve regions.  k is valid while the client is connected
 * (alloc_disconnect destroys every kind of the connection) and destroy() has not run; holds counts
 * the blocks' views and malloc calls running without the GIL, and destroy() waits for them.
 */
struct py_kind {
        PyObject_HEAD struct py_client *client; /* a strong reference */
        struct alloc_memkind *k;                /* NULL once destroyed */
        PyObject *pool;
        char pool_name[ALLOC_POOL_NAME_MAX + 1];
        Py_ssize_t holds;
        bool destroying;     /* destroy() was called while something held it */
        bool zero;           /* malloc's default for zero */
        enum alloc_kind mem; /* the pool's kind */
        bool registered;     /* pinned: registered with CUDA here (kDLCUDAHost) */
        int device;          /* gpu: the CUDA ordinal here */
};

extern PyTypeObject py_client_type, py_region_type, py_view_type, py_kind_type, py_block_type;

/* module.c */
PyObject *py_raise(int err);                           /* allocd.Error subclass for -err, alloc_last_error() */
PyObject *py_raise_msg(int err, const char *fmt, ...); /* the same with a message of our own */
int py_client_enter(struct py_client *cl);             /* -1 (ValueError set) if closed */
void py_client_leave(struct py_client *cl);            /* disconnects once closed and nothing holds it */
void py_client_forget(struct py_client *cl);           /* out of the list of clients, as it is deallocated */
PyObject *py_text(const char *s);                      /* bytes from allocd as str, losslessly */
int py_name_arg(PyObject *o, void *ret);               /* O& converter: str/bytes/None -> PyBytes or NULL */
int py_timeout_ms(PyObject *o, const char *what, bool zero_ok, uint32_t *ret); /* seconds -> ms */
const char *py_kind_name(enum alloc_kind k);

/* region.c */
PyObject *py_region_new(struct py_client *cl, const struct alloc_region *r, PyObject *name);
int py_region_check(struct py_region *rg);                 /* -1 (ValueError set) if its memory is gone */
int py_region_export(struct py_region *rg, bool writable); /* -1 (exception set) or 0 and one more view */
void py_region_unexport(struct py_region *rg);             /* with the GIL */
PyObject *py_region_end(struct py_region *rg, bool free);  /* free() or detach(), or their wait for the views */
/* What Regions and Blocks share: their bytes as buffers, arrays, Views and DLPack tensors. */
extern PyBufferProcs py_region_buffer;
PyObject *py_region_as_array(struct py_region *rg, PyObject *args, PyObject *kw);
PyObject *py_region_view(struct py_region *rg, PyObject *args, PyObject *kw);
PyObject *py_region_dlpack(struct py_region *rg, PyObject *args, PyObject *kw);
PyObject *py_region_dlpack_device(struct py_region *rg, PyObject *unused);

/* kind.c */
bool py_kind_alive(struct py_kind *kd);      /* its k may be used: not destroyed, client open */
int py_block_give_back(struct py_region *b); /* alloc_kind_free, when the kind is still there */
void py_kind_leave(struct py_kind *kd);      /* one hold fewer; destroys it when destroy() waited */
PyObject *py_client_kind(struct py_client *cl, PyObject *args, PyObject *kw);
PyObject *py_kind_of(PyObject *self, PyObject *obj);

/* dlpack.c */
PyObject *py_view_make(struct py_region *rg, PyObject *dtype, PyObject *shape, Py_ssize_t offset, PyObject *device);
PyObject *py_view_dlpack(PyObject *view, PyObject *args, PyObject *kw);
PyObject *py_view_dlpack_device(PyObject *view, PyObject *unused);
int py_dlpack_add_constants(PyObject *m);

/* info.c */
PyObject *py_status_dict(const struct alloc_status *s);
PyObject *py_dump_list(struct py_client *cl, const char *pool);

#endif
