/* SPDX-License-Identifier: MIT */
/*
 * One handler per request type.  Each validates its whole payload first and
 * answers a bad one with an error naming the field and what to send instead;
 * only then does it touch state, so a refused request changes nothing.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocd.h"

#define KNOWN_FLAGS (ALLOCD__FLAG__ZERO | ALLOCD__FLAG__NOWAIT | ALLOCD__FLAG__NOFAIL | ALLOCD__FLAG__PERSIST)

static void reply_ok(struct conn *c, uint64_t id) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;

        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.error = ALLOCD__ERROR__OK;
        conn_send(c, &reply, NULL, 0);
}

/* The region's reply; with the pool's fd the first time this connection gets a region of that pool. */
static void reply_region(struct conn *c, uint64_t id, uint32_t slot) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__Region region;
        struct pool *p = pools[regions[slot].pool];
        int fds[1];
        size_t nfds = 0;

        region_fill(&region, slot, false);
        if (p->fd >= 0) {
                if (c->npool_fd_sent <= p->index) {
                        bool *n = realloc(c->pool_fd_sent, npools * sizeof(*n));
                        if (!n) {
                                conn_kill(c);
                                return;
                        }
                        memset(n + c->npool_fd_sent, 0, (npools - c->npool_fd_sent) * sizeof(*n));
                        c->pool_fd_sent = n;
                        c->npool_fd_sent = npools;
                }
                if (!c->pool_fd_sent[p->index]) {
                        fds[nfds++] = p->fd;
                        c->pool_fd_sent[p->index] = true;
                        region.has_pool_fd = region.pool_fd = true;
                        region.has_pool_size = true;
                        region.pool_size = p->conf.size;
                        region.has_backing = true;
                        region.backing = p->ops == &pool_vmm_ops ? ALLOCD__BACKING__CUDA_VMM : ALLOCD__BACKING__MEMFD;
                        if (p->conf.kind == POOL_PINNED) {
                                region.has_register_flags = true;
                                region.register_flags = p->conf.register_flags;
                        }
                        if (p->conf.kind == POOL_GPU) {
                                region.has_device_uuid = true;
                                region.device_uuid.data = p->uuid;
                                region.device_uuid.len = sizeof(p->uuid);
                        }
                }
        }
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.error = ALLOCD__ERROR__OK;
        reply.body_case = ALLOCD__REPLY__BODY_REGION;
        reply.region = &region;
        conn_send(c, &reply, fds, nfds);
}

static bool valid_name(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > NAME_MAX_LEN)
                return false;
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

struct zero_job {
        uv_work_t work;
        struct conn *conn;
        struct pool *pool;
        uint64_t id, offset, size;
        uint32_t slot;
        int result;
};

/* Undoes region_new for a region that could not be handed out: no name, no PERSIST, no hold of c. */
static void discard(struct conn *c, uint32_t slot) {
        struct hold *h = region_find_hold(slot, c);
        bool persist = regions[slot].persist;

        regions[slot].persist = false;
        region_unpublish(slot);
        if (h)
                region_drop_hold(h);
        if (persist)
                region_unref(slot);
}

static void zero_work(uv_work_t *w) {
        struct zero_job *j = w->data;

        j->result = j->pool->ops->zero(j->pool, j->offset, j->size);
}

static void zero_done(uv_work_t *w, int status) {
        struct zero_job *j = w->data;

        regions[j->slot].zeroing = false;
        if (status < 0 && j->result == 0)
                j->result = status;
        if (j->result < 0 && !j->conn->closing) {
                discard(j->conn, j->slot);
                conn_reply_error(j->conn, j->id, ALLOCD__ERROR__INTERNAL,
                                 "zeroing the region failed (allocd's log says why); nothing was allocated");
        } else if (!j->conn->closing) {
                reply_region(j->conn, j->id, j->slot);
        }
        region_unref(j->slot);
        conn_unbusy(j->conn);
        free(j);
}

/* Why the range allocator refuses a request, in words. */
static int explain(int r, const struct pool *p, const struct alloc_args *a, char *msg, size_t n) {
        switch (r) {
        case -ENOSPC:
                snprintf(msg, n,
                         "%" PRIu64 " bytes with these constraints cannot fit in pool %s even when it is "
                         "empty (%" PRIu64 " bytes); ask for less or relax align/boundary/low/high",
                         a->size, p->conf.name, p->total);
                return ALLOCD__ERROR__NEVER_FITS;
        case -EOVERFLOW:
                snprintf(msg, n, "size %" PRIu64 " rounded up to the quantum passes 2^64", a->size);
                return ALLOCD__ERROR__OVERFLOW;
        case -ERANGE:
                snprintf(msg, n, "low %#" PRIx64 " must be below high %#" PRIx64 " (high 0 means no limit)", a->req.low,
                         a->req.high);
                return ALLOCD__ERROR__INVALID;
        case -EMSGSIZE:
                snprintf(msg, n,
                         "a region of %" PRIu64 " bytes cannot avoid crossing a multiple of boundary %#" PRIx64
                         " with phase %#" PRIx64 "; use a boundary of at least the size",
                         a->size, a->req.boundary, a->req.phase);
                return ALLOCD__ERROR__INVALID;
        case -EDOM:
                snprintf(msg, n,
                         "align (%#" PRIx64 ") and boundary (%#" PRIx64 ") must be 0 or powers of two, and "
                         "phase (%#" PRIx64 ") a multiple of the pool's quantum (%#" PRIx64 ") below align",
                         a->req.align, a->req.boundary, a->req.phase, p->conf.quantum);
                return ALLOCD__ERROR__INVALID;
        default:
                snprintf(msg, n, "invalid request: %s", strerror(-r));
                return ALLOCD__ERROR__INVALID;
        }
}

/* Everything that can change while a request waits is checked here, at every try. */
int alloc_try(struct conn *c, uint64_t id, const struct alloc_args *a, char *msg, size_t msgsize) {
        struct pool *p = a->pool;
        uint64_t off, size;
        uint32_t slot;
        int r;

        if (*a->name && region_by_name(a->name) >= 0) {
                snprintf(msg, msgsize, "the name '%s' is already published; pick another or attach to it", a->name);
                return ALLOCD__ERROR__EXISTS;
        }
        if (*a->name && nnames >= limits.max_names) {
                snprintf(msg, msgsize, "allocd holds max_names = %u names; free named regions or raise max_names",
                         limits.max_names);
                return ALLOCD__ERROR__LIMIT;
        }
        if (c->nholds >= limits.max_regions_per_connection) {
                snprintf(msg, msgsize,
                         "this connection holds max_regions_per_connection = %u regions; free some or "
                         "raise the limit",
                         limits.max_regions_per_connection);
                return ALLOCD__ERROR__LIMIT;
        }
        if (p->conf.quota_per_uid && pool_usage(p, c->uid) + a->size > p->conf.quota_per_uid) {
                snprintf(msg, msgsize,
                         "uid %u holds %" PRIu64 " of its %" PRIu64 "-byte quota in pool %s and asks "
                         "%" PRIu64 " more; free regions or raise quota_per_uid",
                         (unsigned)c->uid, pool_usage(p, c->uid), p->conf.quota_per_uid, p->conf.name, a->size);
                return ALLOCD__ERROR__QUOTA;
        }
        r = range_alloc(p->arena, a->size, &a->req, &off);
        if (r == -ENOSPC) {
                struct range_stats st;
                range_stats(p->arena, &st);
                snprintf(msg, msgsize,
                         "pool %s has no room now for %" PRIu64 " bytes with these constraints (%" PRIu64
                         " free, largest free piece %" PRIu64 ")",
                         p->conf.name, a->size, st.free, st.largest_free);
                return ALLOCD__ERROR__WOULD_BLOCK;
        }
        if (r < 0)
                return explain(r, p, a, msg, msgsize);
        if (range_query(p->arena, off, &size) < 0) {
                snprintf(msg, msgsize, "range allocator: %s", strerror(-r));
                return ALLOCD__ERROR__INTERNAL;
        }
        r = region_new(p, c, off, size, a->flags, a->name, &slot);
        if (r < 0) {
                range_free(p->arena, off, size);
                snprintf(msg, msgsize, "recording the region: %s", strerror(-r));
                return ALLOCD__ERROR__INTERNAL;
        }
        logx(LOG_LEVEL_DEBUG, &(struct log_ctx){.pool = p->conf.name, .region = region_id(slot), .pid = c->pid},
             "region %" PRIu64 ": %" PRIu64 " bytes at %#" PRIx64 " in pool %s for pid %d", region_id(slot), size, off,
             p->conf.name, (int)c->pid);
        status_changed();
        if ((a->flags & ALLOCD__FLAG__ZERO) && (size > ZERO_INLINE_MAX || p->ops->zero_blocks)) {
                struct zero_job *j = malloc(sizeof(*j));
                if (j) {
                        *j = (struct zero_job){
                                .conn = c, .pool = p, .id = id, .offset = off, .size = size, .slot = slot};
                        j->work.data = j;
                        if (uv_queue_work(loop, &j->work, zero_work, zero_done) == 0) {
                                regions[slot].refs++;
                                regions[slot].zeroing = true;
                                c->busy++;
                                return ALLOCD__ERROR__OK;
                        }
                        free(j);
                }
        }
        if ((a->flags & ALLOCD__FLAG__ZERO) && p->ops->zero(p, off, size) < 0) {
                discard(c, slot);
                snprintf(msg, msgsize, "zeroing the region failed (allocd's log says why)");
                return ALLOCD__ERROR__INTERNAL;
        }
        reply_region(c, id, slot);
        return ALLOCD__ERROR__OK;
}

static void handle_alloc(struct conn *c, uint64_t id, const Allocd__Alloc *m) {
        struct alloc_args a = {0};
        char msg[512];
        uint64_t count = m->has_count ? m->count : 1, off;
        uint32_t flags = m->has_flags ? m->flags : 0;
        int e, r;

        if (!m->pool || !*m->pool)
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID, "Alloc needs a pool name");
        a.pool = pool_find(m->pool);
        const struct unavailable *u = a.pool ? NULL : pool_unavailable(m->pool);
        if (u)
                return conn_reply_error(c, id, ALLOCD__ERROR__NO_POOL,
                                        "pool %s (%s) is configured but not available: %s", u->name,
                                        pool_kind_name(u->kind), u->reason);
        if (!a.pool)
                return conn_reply_error(c, id, ALLOCD__ERROR__NO_POOL,
                                        "no pool named '%.255s'; `allocctl status` lists the pools", m->pool);
        struct pool *p = a.pool;
        if (!pool_may(p, c, ACCESS_ALLOC)) {
                logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pool = p->conf.name, .pid = c->pid},
                     "denied: pid %d uid %u may not allocate in pool %s", (int)c->pid, (unsigned)c->uid, p->conf.name);
                return conn_reply_error(c, id, ALLOCD__ERROR__DENIED,
                                        "uid %u may not allocate in pool %s (owner %u, group %u, mode %04o); ask its "
                                        "owner to change owner/group/mode",
                                        (unsigned)c->uid, p->conf.name, (unsigned)p->conf.owner,
                                        (unsigned)p->conf.group, (unsigned)p->conf.mode);
        }
        if (!m->has_size || m->size == 0)
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID, "size must be above 0");
        if (count == 0)
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID, "count must be above 0 (or unset for 1)");
        if (m->size > UINT64_MAX / count)
                return conn_reply_error(c, id, ALLOCD__ERROR__OVERFLOW,
                                        "count %" PRIu64 " x size %" PRIu64 " overflows 64 bits", count, m->size);
        if (flags & ALLOCD__FLAG__WRITECOMBINED)
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID,
                                        "WRITECOMBINED: write-combined memory comes only from cuMemHostAlloc, which "
                                        "cannot be shared between processes; for memory only this process uses, call "
                                        "cuMemHostAlloc(CU_MEMHOSTALLOC_WRITECOMBINED) yourself");
        if (flags & ~KNOWN_FLAGS)
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID,
                                        "unknown flags %#x; known are ZERO 1, NOWAIT 2, NOFAIL 4, PERSIST 8",
                                        flags & ~KNOWN_FLAGS);
        if ((flags & ALLOCD__FLAG__NOWAIT) && (flags & ALLOCD__FLAG__NOFAIL))
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID, "NOWAIT and NOFAIL contradict each other");
        if ((flags & ALLOCD__FLAG__ZERO) && !p->ops->zero)
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID,
                                        "pool %s is an address space without memory; ZERO does not apply",
                                        p->conf.name);
        if (m->has_numa_node && m->numa_node != -1 && m->numa_node != p->conf.numa_node) {
                if (p->conf.numa_node < 0)
                        return conn_reply_error(c, id, ALLOCD__ERROR__INVALID,
                                                "pool %s is not bound to a NUMA node, so it cannot promise node %d; "
                                                "ask for any node (-1) or use a pool with numa_node = %d",
                                                p->conf.name, (int)m->numa_node, (int)m->numa_node);
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID, "pool %s is on NUMA node %d, not %d",
                                        p->conf.name, p->conf.numa_node, (int)m->numa_node);
        }
        if (m->name && *m->name) {
                if (!valid_name(m->name))
                        return conn_reply_error(c, id, ALLOCD__ERROR__INVALID,
                                                "a region name is 1-%d bytes without control characters", NAME_MAX_LEN);
                strcpy(a.name, m->name);
        }
        a.size = m->size * count;
        a.flags = flags;
        a.req = (struct range_req){
                .align = m->has_align ? m->align : 0,
                .phase = m->has_phase ? m->phase : 0,
                .boundary = m->has_boundary ? m->boundary : 0,
                .low = m->has_low ? m->low : 0,
                .high = m->has_high ? m->high : 0,
        };
        if (p->conf.quota_per_uid && a.size > p->conf.quota_per_uid)
                return conn_reply_error(c, id, ALLOCD__ERROR__QUOTA,
                                        "%" PRIu64 " bytes is more than the whole per-uid quota of pool %s (%" PRIu64
                                        ")",
                                        a.size, p->conf.name, p->conf.quota_per_uid);
        e = alloc_try(c, id, &a, msg, sizeof(msg));
        if (e == ALLOCD__ERROR__OK)
                return;
        if (e != ALLOCD__ERROR__WOULD_BLOCK)
                return conn_reply_error(c, id, e, "%s", msg);
        /* A request that no amount of freeing can satisfy fails now instead of waiting for nothing. */
        r = range_alloc(p->empty, a.size, &a.req, &off);
        if (r < 0) {
                e = explain(r, p, &a, msg, sizeof(msg));
                return conn_reply_error(c, id, e, "%s", msg);
        }
        range_free(p->empty, off, 0);
        if (flags & ALLOCD__FLAG__NOWAIT)
                return conn_reply_error(c, id, e, "%s; NOWAIT was given", msg);
        if (c->nwaiters >= limits.max_waiters_per_connection)
                return conn_reply_error(c, id, ALLOCD__ERROR__LIMIT,
                                        "%s, and this connection already has max_waiters_per_connection = %u "
                                        "requests waiting",
                                        msg, limits.max_waiters_per_connection);
        uint32_t timeout = m->has_timeout_ms && m->timeout_ms ? m->timeout_ms : limits.wait_timeout_ms;
        if (waitq_add(c, id, &a, timeout) < 0)
                conn_reply_error(c, id, ALLOCD__ERROR__INTERNAL, "out of memory queueing the request");
}

static int held(struct conn *c, uint64_t id, bool has, struct hold **ret) {
        int slot = has ? region_slot(id) : -ENOENT;

        *ret = slot >= 0 ? region_find_hold((uint32_t)slot, c) : NULL;
        return *ret ? slot : -ENOENT;
}

static void handle_free(struct conn *c, uint64_t id, const Allocd__Free *m) {
        struct hold *h;
        int slot = held(c, m->region, m->has_region, &h);

        if (slot < 0)
                return conn_reply_error(c, id, ALLOCD__ERROR__NOT_FOUND, "this connection holds no region %" PRIu64,
                                        m->region);
        struct region *r = &regions[slot];
        struct pool *p = pools[r->pool];
        if (c->uid != r->uid && c->uid != 0 && c->uid != p->conf.owner)
                return conn_reply_error(c, id, ALLOCD__ERROR__DENIED,
                                        "region %" PRIu64 " belongs to uid %u; only its owner, the pool's owner or "
                                        "root may free it; use Detach to drop your reference",
                                        m->region, (unsigned)r->uid);
        bool persist = r->persist;
        r->persist = false;
        region_unpublish((uint32_t)slot);
        region_drop_hold(h);
        if (persist)
                region_unref((uint32_t)slot);
        reply_ok(c, id);
}

static void handle_detach(struct conn *c, uint64_t id, const Allocd__Detach *m) {
        struct hold *h;

        if (held(c, m->region, m->has_region, &h) < 0)
                return conn_reply_error(c, id, ALLOCD__ERROR__NOT_FOUND, "this connection holds no region %" PRIu64,
                                        m->region);
        region_drop_hold(h);
        reply_ok(c, id);
}

static void handle_attach(struct conn *c, uint64_t id, const Allocd__Attach *m) {
        int slot;

        if (!m->name || !valid_name(m->name))
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID,
                                        "Attach needs a name of 1-%d bytes without control characters", NAME_MAX_LEN);
        slot = region_by_name(m->name);
        if (slot < 0)
                return conn_reply_error(c, id, ALLOCD__ERROR__NOT_FOUND, "no region is published as '%s'", m->name);
        struct pool *p = pools[regions[slot].pool];
        if (!pool_may(p, c, ACCESS_ATTACH)) {
                logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pool = p->conf.name, .pid = c->pid},
                     "denied: pid %d uid %u may not attach in pool %s", (int)c->pid, (unsigned)c->uid, p->conf.name);
                return conn_reply_error(c, id, ALLOCD__ERROR__DENIED,
                                        "uid %u may not attach regions of pool %s (owner %u, group %u, mode %04o)",
                                        (unsigned)c->uid, p->conf.name, (unsigned)p->conf.owner,
                                        (unsigned)p->conf.group, (unsigned)p->conf.mode);
        }
        if (regions[slot].zeroing)
                return conn_reply_error(c, id, ALLOCD__ERROR__WOULD_BLOCK,
                                        "'%s' is still being zeroed for its creator; try again", m->name);
        if (c->nholds >= limits.max_regions_per_connection)
                return conn_reply_error(c, id, ALLOCD__ERROR__LIMIT,
                                        "this connection holds max_regions_per_connection = %u regions",
                                        limits.max_regions_per_connection);
        if (region_hold((uint32_t)slot, c) < 0)
                return conn_reply_error(c, id, ALLOCD__ERROR__INTERNAL, "out of memory");
        reply_region(c, id, (uint32_t)slot);
}

static void handle_hello(struct conn *c, uint64_t id, const Allocd__Hello *m) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__HelloReply hello = ALLOCD__HELLO_REPLY__INIT;

        if (c->hello)
                return conn_reply_error(c, id, ALLOCD__ERROR__PROTOCOL, "Hello was already sent");
        if (!m->has_version || m->version != WIRE_VERSION) {
                conn_reply_error(c, id, ALLOCD__ERROR__VERSION,
                                 "this allocd speaks protocol version %d, the client %u; use a matching "
                                 "liballoc-client",
                                 WIRE_VERSION, m->has_version ? m->version : 0);
                return conn_kill(c);
        }
        if (m->client_name) {
                if (strlen(m->client_name) > CLIENT_NAME_MAX_LEN || !valid_name(m->client_name))
                        return conn_reply_error(c, id, ALLOCD__ERROR__INVALID,
                                                "client_name is at most %d bytes without control characters",
                                                CLIENT_NAME_MAX_LEN);
                strcpy(c->name, m->client_name);
        }
        c->hello = true;
        hello.has_version = hello.has_max_packet = hello.has_max_regions = hello.has_max_waiters = true;
        hello.version = WIRE_VERSION;
        hello.daemon_version = (char *)ALLOCD_VERSION;
        hello.max_packet = WIRE_MAX_PACKET;
        hello.max_regions = limits.max_regions_per_connection;
        hello.max_waiters = limits.max_waiters_per_connection;
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_HELLO;
        reply.hello = &hello;
        conn_send(c, &reply, NULL, 0);
        logx(LOG_LEVEL_DEBUG, &(struct log_ctx){.pid = c->pid}, "client pid %d uid %u connected as '%s'", (int)c->pid,
             (unsigned)c->uid, c->name);
}

static size_t pool_nspans(const struct pool *p) {
        return p->conf.kind == POOL_FPGA ? p->conf.nranges : 1;
}

static void handle_status(struct conn *c, uint64_t id, const Allocd__Status *m) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__StatusReply st = ALLOCD__STATUS_REPLY__INIT;
        uint64_t after = m->has_clients_after ? m->clients_after : 0, omitted = 0;
        size_t nspans = 0, n = 0, budget = WIRE_MAX_PACKET - 1024;

        for (size_t i = 0; i < npools; i++)
                nspans += pool_nspans(pools[i]);
        Allocd__PoolStatus *ps = calloc(npools, sizeof(*ps)), **pp = calloc(npools, sizeof(*pp));
        Allocd__Span *sp = calloc(nspans, sizeof(*sp)), **spp = calloc(nspans, sizeof(*spp));
        Allocd__ClientStatus *cs = calloc(nconns, sizeof(*cs)), **cp = calloc(nconns, sizeof(*cp));
        Allocd__UnavailablePool *us = calloc(nunavailable, sizeof(*us)), **up = calloc(nunavailable, sizeof(*up));
        /* A pinned pool's flags, as a slice of this: both, "portable" alone, or "devicemap" alone. */
        static char *flag_names[] = {"portable", "devicemap"};
        struct conn *k;

        if (!ps || !pp || !sp || !spp || (nconns && (!cs || !cp)) || (nunavailable && (!us || !up))) {
                conn_reply_error(c, id, ALLOCD__ERROR__INTERNAL, "out of memory");
                goto out;
        }
        nspans = 0;
        for (size_t i = 0; i < npools; i++) {
                const struct pool *p = pools[i];
                struct range_stats rs;
                range_stats(p->arena, &rs);
                allocd__pool_status__init(&ps[i]);
                ps[i].name = (char *)p->conf.name;
                ps[i].has_kind = ps[i].has_size = ps[i].has_used = ps[i].has_free = ps[i].has_largest_free =
                        ps[i].has_regions = ps[i].has_waiters = ps[i].has_quantum = true;
                ps[i].kind = (Allocd__PoolKind)p->conf.kind;
                ps[i].size = rs.total;
                ps[i].used = rs.in_use;
                ps[i].free = rs.free;
                ps[i].largest_free = rs.largest_free;
                ps[i].regions = p->nregions;
                ps[i].waiters = p->nwaiters;
                ps[i].quantum = rs.quantum;
                ps[i].backend = (char *)pool_backend_name(p);
                ps[i].has_device = p->conf.kind == POOL_GPU;
                ps[i].device = p->conf.device;
                if (p->conf.kind == POOL_PINNED && p->ops != &pool_vmm_ops) {
                        ps[i].flags = &flag_names[p->conf.register_flags & REGISTER_PORTABLE ? 0 : 1];
                        ps[i].n_flags = (size_t) !!(p->conf.register_flags & REGISTER_PORTABLE) +
                                        !!(p->conf.register_flags & REGISTER_DEVICEMAP);
                }
                ps[i].spans = &spp[nspans];
                ps[i].n_spans = pool_nspans(p);
                for (size_t j = 0; j < ps[i].n_spans; j++, nspans++) {
                        allocd__span__init(&sp[nspans]);
                        sp[nspans].has_address = sp[nspans].has_size = true;
                        sp[nspans].address = p->conf.kind == POOL_FPGA ? p->conf.ranges[j].base : 0;
                        sp[nspans].size = p->conf.kind == POOL_FPGA ? p->conf.ranges[j].size : p->conf.size;
                        spp[nspans] = &sp[nspans];
                }
                pp[i] = &ps[i];
        }
        st.n_pools = npools;
        st.pools = pp;
        st.n_unavailable = nunavailable;
        st.unavailable = up;
        for (size_t i = 0; i < nunavailable; i++) {
                allocd__unavailable_pool__init(&us[i]);
                us[i].name = unavailable[i].name;
                us[i].has_kind = true;
                us[i].kind = (Allocd__PoolKind)unavailable[i].kind;
                us[i].reason = unavailable[i].reason;
                up[i] = &us[i];
        }
        st.daemon_version = (char *)ALLOCD_VERSION;
        st.has_uptime = st.has_started = true;
        st.uptime = (uv_hrtime() - started_hrtime) / 1000000000u;
        st.started = started_realtime;
        size_t fixed = allocd__status_reply__get_packed_size(&st);
        budget = fixed < budget ? budget - fixed : 0; /* pools too many to list fail in conn_send, logged */
        TAILQ_FOREACH(k, &conns, link) {
                Allocd__ClientStatus *x = &cs[n];
                struct hold *h;
                uint64_t bytes = 0;

                if (k->serial <= after)
                        continue;
                if (omitted) {
                        omitted++;
                        continue;
                }
                LIST_FOREACH(h, &k->holds, by_conn)
                if (regions[h->slot].conn == k->serial)
                        bytes += regions[h->slot].size;
                allocd__client_status__init(x);
                x->has_pid = x->has_uid = x->has_regions = x->has_bytes = x->has_waiters = x->has_serial = true;
                x->pid = k->pid;
                x->uid = k->uid;
                x->name = k->name;
                x->comm = k->comm;
                x->regions = k->nholds;
                x->bytes = bytes;
                x->waiters = k->nwaiters;
                x->serial = k->serial;
                size_t sz = allocd__client_status__get_packed_size(x) + 8;
                if (sz > budget) {
                        omitted++;
                        continue;
                }
                budget -= sz;
                cp[n] = x;
                n++;
        }
        st.n_clients = n;
        st.clients = cp;
        st.has_clients_omitted = true;
        st.clients_omitted = omitted;
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_STATUS;
        reply.status = &st;
        conn_send(c, &reply, NULL, 0);
out:
        free(ps);
        free(pp);
        free(sp);
        free(spp);
        free(cs);
        free(cp);
        free(us);
        free(up);
}

/* Holders listed per region in a Dump; the rest are counted in holders_omitted. */
#define HOLDERS_LISTED 32

struct holder_block {
        Allocd__Holder h[HOLDERS_LISTED];
        Allocd__Holder *p[HOLDERS_LISTED];
};

/* Lists the region's holders into b; returns 0 or -ENOMEM. */
static int fill_holders(Allocd__Region *out, uint32_t slot, struct holder_block **ret) {
        struct holder_block *b = NULL;
        const struct hold *h;

        *ret = NULL;
        for (h = region_holders(slot); h; h = h->next_in_region) {
                if (out->n_holders == HOLDERS_LISTED) {
                        out->holders_omitted++;
                        continue;
                }
                if (!b && !(b = calloc(1, sizeof(*b))))
                        return -ENOMEM;
                Allocd__Holder *x = &b->h[out->n_holders];
                allocd__holder__init(x);
                x->has_pid = x->has_uid = true;
                x->pid = h->conn->pid;
                x->uid = h->conn->uid;
                x->name = h->conn->name;
                x->comm = h->conn->comm;
                b->p[out->n_holders++] = x;
        }
        out->holders = b ? b->p : NULL;
        out->has_holders_omitted = true;
        *ret = b;
        return 0;
}

static void handle_dump(struct conn *c, uint64_t id, const Allocd__Dump *m) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__DumpReply d = ALLOCD__DUMP_REPLY__INIT;
        enum { MAX = 512 };
        Allocd__Region *rs = calloc(MAX, sizeof(*rs));
        Allocd__Region **rp = calloc(MAX, sizeof(*rp));
        struct holder_block **blocks = calloc(MAX, sizeof(*blocks));
        size_t n = 0, budget = WIRE_MAX_PACKET - 256;
        uint64_t slot = m->has_after && m->after ? (uint64_t)(uint32_t)m->after + 1 : 0;
        const struct pool *only = NULL;

        if (!rs || !rp || !blocks) {
                conn_reply_error(c, id, ALLOCD__ERROR__INTERNAL, "out of memory");
                goto out;
        }
        if (m->pool) {
                if (!valid_name(m->pool) || !(only = pool_find(m->pool))) {
                        conn_reply_error(c, id, ALLOCD__ERROR__NO_POOL,
                                         "no pool is named '%.64s'; 'allocctl status' lists the pools", m->pool);
                        goto out;
                }
        }
        for (; slot < nslots; slot++) {
                const struct region *r = &regions[slot];
                if (!r->live || (only && r->pool != only->index))
                        continue;
                if (c->uid != 0 && r->uid != c->uid && !pool_may(pools[r->pool], c, ACCESS_ATTACH) &&
                    !pool_may(pools[r->pool], c, ACCESS_ALLOC))
                        continue;
                if (n == MAX)
                        break;
                region_fill(&rs[n], (uint32_t)slot, true);
                if (fill_holders(&rs[n], (uint32_t)slot, &blocks[n]) < 0) {
                        conn_reply_error(c, id, ALLOCD__ERROR__INTERNAL, "out of memory");
                        n++;
                        goto out;
                }
                size_t sz = allocd__region__get_packed_size(&rs[n]) + 8;
                if (sz > budget) {
                        free(blocks[n]);
                        blocks[n] = NULL;
                        break;
                }
                budget -= sz;
                rp[n] = &rs[n];
                n++;
        }
        d.n_regions = n;
        d.regions = rp;
        d.has_more = true;
        d.more = slot < nslots;
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_DUMP;
        reply.dump = &d;
        conn_send(c, &reply, NULL, 0);
out:
        for (size_t i = 0; blocks && i < n; i++)
                free(blocks[i]);
        free(blocks);
        free(rs);
        free(rp);
}

void dispatch(struct conn *c, const Allocd__Request *req) {
        uint64_t id = req->has_id ? req->id : 0;

        if (c->refused) {
                conn_reply_error(c, id, ALLOCD__ERROR__LIMIT,
                                 "allocd has max_connections = %u clients already; close some or raise "
                                 "max_connections",
                                 limits.max_connections);
                return conn_kill(c);
        }
        if (!c->hello && req->body_case != ALLOCD__REQUEST__BODY_HELLO) {
                conn_reply_error(c, id, ALLOCD__ERROR__PROTOCOL, "the first request must be Hello; closing");
                return conn_kill(c);
        }
        if (stopping)
                return conn_reply_error(c, id, ALLOCD__ERROR__CANCELLED, "allocd is stopping");
        switch (req->body_case) {
        case ALLOCD__REQUEST__BODY_HELLO:
                return handle_hello(c, id, req->hello);
        case ALLOCD__REQUEST__BODY_ALLOC:
                return handle_alloc(c, id, req->alloc);
        case ALLOCD__REQUEST__BODY_FREE:
                return handle_free(c, id, req->free);
        case ALLOCD__REQUEST__BODY_ATTACH:
                return handle_attach(c, id, req->attach);
        case ALLOCD__REQUEST__BODY_DETACH:
                return handle_detach(c, id, req->detach);
        case ALLOCD__REQUEST__BODY_STATUS:
                return handle_status(c, id, req->status);
        case ALLOCD__REQUEST__BODY_DUMP:
                return handle_dump(c, id, req->dump);
        default:
                return conn_reply_error(c, id, ALLOCD__ERROR__INVALID,
                                        "unknown request; this allocd serves Hello, Alloc, Free, Attach, Detach, "
                                        "Status and Dump");
        }
}
