/* SPDX-License-Identifier: MIT */
/*
 * status() and dump() as plain dicts and lists with the fields, names and values of `allocctl --json`
 * (docs/cli.md), so that a script can move between the two.  Names are str decoded with
 * surrogateescape: whatever bytes a client put in one come back as they were.
 */
#include <grp.h>
#include <pwd.h>
#include <time.h>

#include "pyallocd.h"

/*
 * Py_BuildValue makes each dict: its N arguments are steals that it drops on failure, and a NULL one
 * (a failed conversion) fails it with that error.
 */
static PyObject *text_or_none(const char *s) {
        return *s ? py_text(s) : Py_NewRef(Py_None);
}

/* Sets key to v in d, consuming v; a NULL v (a failed conversion) fails it. */
static int set_new(PyObject *d, const char *key, PyObject *v) {
        int r = v ? PyDict_SetItemString(d, key, v) : -1;

        Py_XDECREF(v);
        return r;
}

static PyObject *kind(enum alloc_kind k) {
        return PyUnicode_FromString(py_kind_name(k));
}

/* The list of f(items[i], i) for i < n. */
static PyObject *list_of(size_t n, PyObject *(*f)(const void *items, size_t i), const void *items) {
        PyObject *l = PyList_New((Py_ssize_t)n);

        for (size_t i = 0; l && i < n; i++) {
                PyObject *v = f(items, i);
                if (!v)
                        Py_CLEAR(l);
                else
                        PyList_SET_ITEM(l, (Py_ssize_t)i, v);
        }
        return l;
}

static PyObject *span(const void *items, size_t i) {
        const struct alloc_span *s = (const struct alloc_span *)items + i;

        return Py_BuildValue("{s:K,s:K}", "base", (unsigned long long)s->base, "size", (unsigned long long)s->size);
}

/* The name of uid (user) or gid here, as allocctl looks it up, or None; the _r calls: other threads may look too. */
static PyObject *id_name(unsigned id, bool user) {
        char buf[4096];
        struct passwd pw, *pwp = NULL;
        struct group gr, *grp = NULL;

        if (user ? getpwuid_r(id, &pw, buf, sizeof(buf), &pwp) == 0 && pwp
                 : getgrgid_r(id, &gr, buf, sizeof(buf), &grp) == 0 && grp)
                return py_text(user ? pw.pw_name : gr.gr_name);
        return Py_NewRef(Py_None);
}

static PyObject *uid_usage(const void *items, size_t i) {
        const struct alloc_uid_usage *u = (const struct alloc_uid_usage *)items + i;

        return Py_BuildValue("{s:K,s:N,s:K,s:K}", "uid", (unsigned long long)u->uid, "user", id_name(u->uid, true),
                             "bytes", (unsigned long long)u->bytes, "regions", (unsigned long long)u->regions);
}

/* allocctl's access keys, left out as it leaves them out for an allocd that does not send them. */
static int access_keys(PyObject *d, const struct alloc_pool_status *p) {
        char mode[8];

        if (!p->has_access)
                return 0;
        snprintf(mode, sizeof(mode), "%04o", (unsigned)p->mode);
        if (set_new(d, "owner", PyLong_FromUnsignedLong(p->owner)) < 0 ||
            set_new(d, "owner_name", id_name(p->owner, true)) < 0 ||
            set_new(d, "group", PyLong_FromUnsignedLong(p->group)) < 0 ||
            set_new(d, "group_name", id_name(p->group, false)) < 0 ||
            set_new(d, "mode", PyUnicode_FromString(mode)) < 0 ||
            set_new(d, "quota_per_uid", PyLong_FromUnsignedLongLong(p->quota_per_uid)) < 0 ||
            set_new(d, "usage", list_of(p->nusage, uid_usage, p->usage)) < 0 ||
            set_new(d, "usage_omitted", PyLong_FromUnsignedLongLong(p->usage_omitted)) < 0)
                return -1;
        return set_new(d, "usage_hidden", PyBool_FromLong(p->usage_hidden));
}

static PyObject *pool_dict(const void *items, size_t i) {
        const struct alloc_pool_status *p = (const struct alloc_pool_status *)items + i;
        PyObject *d =
                Py_BuildValue("{s:N,s:N,s:K,s:K,s:K,s:K,s:d,s:K,s:K,s:K,s:N,s:N,s:N}", "name", py_text(p->name), "kind",
                              kind(p->kind), "size", (unsigned long long)p->size, "used", (unsigned long long)p->used,
                              "free", (unsigned long long)p->free, "largest_free", (unsigned long long)p->largest_free,
                              "fragmentation", p->free ? 1.0 - (double)p->largest_free / (double)p->free : 0.0,
                              "regions", (unsigned long long)p->regions, "waiters", (unsigned long long)p->waiters,
                              "quantum", (unsigned long long)p->quantum, "backend", text_or_none(p->backend), "names",
                              py_text(p->names), "spans", list_of(p->nspans, span, p->spans));
        int r = d ? 0 : -1;

        /* The keys allocctl writes only for some kinds, or while the pool drains. */
        if (!r && p->kind != ALLOC_KIND_FPGA)
                r = set_new(d, "isolation", PyUnicode_FromString(p->isolated ? "region" : "pool"));
        if (!r && *p->draining)
                r = set_new(d, "draining", py_text(p->draining));
        if (!r && p->kind == ALLOC_KIND_GPU)
                r = set_new(d, "device", PyLong_FromLong(p->device));
        if (!r && p->kind == ALLOC_KIND_PINNED && !strcmp(p->backend, "memfd")) {
                bool portable = p->register_flags & ALLOC_REGISTER_PORTABLE,
                     devicemap = p->register_flags & ALLOC_REGISTER_DEVICEMAP;
                r = set_new(d, "register_flags",
                            portable && devicemap ? Py_BuildValue("[ss]", "portable", "devicemap")
                            : portable            ? Py_BuildValue("[s]", "portable")
                            : devicemap           ? Py_BuildValue("[s]", "devicemap")
                                                  : PyList_New(0));
        }
        if (!r)
                r = access_keys(d, p);
        if (r < 0)
                Py_CLEAR(d);
        return d;
}

static PyObject *client_dict(const void *items, size_t i) {
        const struct alloc_client_status *k = (const struct alloc_client_status *)items + i;

        return Py_BuildValue("{s:K,s:i,s:K,s:N,s:N,s:K,s:K,s:K,s:O,s:O}", "serial", (unsigned long long)k->serial,
                             "pid", (int)k->pid, "uid", (unsigned long long)k->uid, "comm", py_text(k->comm), "name",
                             py_text(k->name), "regions", (unsigned long long)k->regions, "bytes",
                             (unsigned long long)k->bytes, "waiters", (unsigned long long)k->waiters, "restored",
                             k->restored ? Py_True : Py_False, "watched", k->watched ? Py_True : Py_False);
}

static PyObject *unavailable_dict(const void *items, size_t i) {
        const struct alloc_unavailable_pool *u = (const struct alloc_unavailable_pool *)items + i;

        return Py_BuildValue("{s:N,s:N,s:N}", "name", py_text(u->name), "kind", kind(u->kind), "reason",
                             py_text(u->reason));
}

PyObject *py_status_dict(const struct alloc_status *s) {
        return Py_BuildValue("{s:N,s:K,s:K,s:N,s:N,s:N}", "version", py_text(s->daemon_version), "uptime",
                             (unsigned long long)s->uptime, "started", (unsigned long long)s->started, "pools",
                             list_of(s->npools, pool_dict, s->pools), "unavailable",
                             list_of(s->nunavailable, unavailable_dict, s->unavailable), "clients",
                             list_of(s->nclients, client_dict, s->clients));
}

/* allocctl's names of the flags, by bit number (include/alloc/client.h); write-combined is never granted. */
static PyObject *flags_list(uint32_t flags) {
        static const char *const by_bit[] = {"zero", "nowait", "nofail", "persist", NULL, "unsealed"};
        PyObject *l = PyList_New(0);

        for (unsigned b = 0; l && b < sizeof(by_bit) / sizeof(by_bit[0]); b++) {
                PyObject *v = (flags >> b & 1) && by_bit[b] ? PyUnicode_FromString(by_bit[b]) : NULL;
                if (v && PyList_Append(l, v) < 0)
                        Py_CLEAR(l);
                Py_XDECREF(v);
        }
        return l;
}

static PyObject *holder_dict(const void *items, size_t i) {
        const struct alloc_holder *h = (const struct alloc_holder *)items + i;

        return Py_BuildValue("{s:i,s:K,s:N,s:N}", "pid", (int)h->pid, "uid", (unsigned long long)h->uid, "comm",
                             py_text(h->comm), "name", py_text(h->name));
}

/* A falloc heap's geometry figure, None for raw bytes (allocctl's JSON). */
static PyObject *heap_figure(const struct alloc_region_info *g, uint64_t v) {
        if (g->format == ALLOC_FORMAT_FALLOC)
                return PyLong_FromUnsignedLongLong(v);
        Py_INCREF(Py_None);
        return Py_None;
}

static PyObject *region_dict(const struct alloc_region_info *g, uint64_t now) {
        const char *format = g->format == ALLOC_FORMAT_RAW ? "raw" : g->format == ALLOC_FORMAT_FALLOC ? "falloc" : "?";

        return Py_BuildValue("{s:K,s:N,s:N,s:K,s:K,s:N,s:s,s:N,s:N,s:N,s:K,s:K,s:i,s:K,s:K,s:N,s:K}", "id",
                             (unsigned long long)g->id, "pool", py_text(g->pool), "kind", kind(g->kind), "addr",
                             (unsigned long long)g->addr, "size", (unsigned long long)g->size, "flags",
                             flags_list(g->flags), "format", format, "chunk_size", heap_figure(g, g->chunk_size),
                             "chunk_count", heap_figure(g, g->chunk_count), "name", text_or_none(g->name), "refs",
                             (unsigned long long)g->refs, "uid", (unsigned long long)g->uid, "pid", (int)g->pid,
                             "created", (unsigned long long)g->created, "age",
                             (unsigned long long)(now > g->created ? now - g->created : 0), "holders",
                             list_of(g->nholders, holder_dict, g->holders), "holders_omitted",
                             (unsigned long long)g->holders_omitted);
}

struct dump_walk {
        PyObject *list;
        uint64_t now;
};

/* Runs without the GIL held by the caller (the walk does round trips): takes it for each region. */
static int dump_one(const struct alloc_region_info *g, void *data) {
        struct dump_walk *w = data;
        PyGILState_STATE st = PyGILState_Ensure();
        PyObject *d = region_dict(g, w->now);
        int r = d ? PyList_Append(w->list, d) : -1;

        Py_XDECREF(d);

        PyGILState_Release(st);
        return r < 0 ? 1 : 0;
}

PyObject *py_dump_list(struct py_client *cl, const char *pool) {
        struct dump_walk w = {.list = PyList_New(0), .now = (uint64_t)time(NULL)};
        int r;

        if (!w.list)
                return NULL;
        PyThreadState *ts = PyEval_SaveThread();
        r = alloc_dump_each(cl->c, pool, dump_one, &w);
        PyEval_RestoreThread(ts);
        if (r == 1) /* the Python error of dump_one stands */
                Py_CLEAR(w.list);
        else if (r < 0) {
                Py_CLEAR(w.list);
                py_raise(r);
        }
        return w.list;
}
