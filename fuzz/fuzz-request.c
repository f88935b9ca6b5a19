/* SPDX-License-Identifier: MIT */
/*
 * The daemon's request path without the socket: packets -> proto_request ->
 * the core, for up to three connections, with the server's part played here
 * as daemon/server.c plays it where it matters: a connection that is told to
 * close is closed (its holds dropped), a region to be zeroed is zeroed by a
 * job that ends when the input says (after its connection may have gone),
 * loop turns run the core and answer every waiter's outcome, and the clock
 * moves so that waiters and Hello deadlines expire.  fuzz-request.h gives the
 * input's format.
 *
 * Oracles, besides the sanitizers: every reply decodes, every error has a
 * message, a region lies in its pool and comes with the pool's fd the first
 * time a connection gets one of that pool; a refused request changes nothing (core_snap before and after);
 * after each record the core's counts agree with its regions (core-check.c);
 * and once every connection is gone only PERSIST regions are left.  The core
 * and its pools are made afresh for each input, so an input means the same
 * every time it runs.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core-check.h"
#include "fuzz-request.h"
#include "log.h"
#include "proto.h"

#define JOBS_MAX 64
#define START_MS 1000

enum conn_state { CONN_CLOSED, CONN_OPEN, CONN_REFUSED };

struct conn {
        struct session s;
        enum conn_state state;
        uint32_t gen;      /* bumped at each close: a zeroing job for an older one answers nobody */
        uint64_t deadline; /* Hello by then, or closed */
        uint32_t fds;      /* the pools whose fd this connection was sent, a bit per pool id */
};

struct job {
        int conn;
        uint32_t gen, slot;
        uint64_t req_id;
        struct zero_job z;
};

static struct core *core;
static struct conn conns[FUZZ_SESSIONS];
static uid_t uids[FUZZ_SESSIONS];
static uint64_t now, serial;
static struct job jobs[JOBS_MAX];
static size_t njobs;
static struct proto_out out;
static bool trace; /* FUZZ_TRACE=1: what each record did, on stderr, to read what an input means */

static void view(struct core_view *v) {
        static uint32_t slots[JOBS_MAX];

        *v = (struct core_view){.jobs = slots, .njobs = njobs};
        for (int c = 0; c < FUZZ_SESSIONS; c++)
                v->clients[c] = conns[c].state == CONN_OPEN ? &conns[c].s.client : NULL;
        for (size_t j = 0; j < njobs; j++) {
                slots[j] = jobs[j].slot;
                if (conns[jobs[j].conn].gen == jobs[j].gen)
                        v->npending[jobs[j].conn]++;
        }
}

static void snap(struct core_snap *s) {
        struct core_view v;

        view(&v);
        core_snap(core, &v, s);
}

/* ---- the core and its pools, afresh for each input ---- */

static void add_pool(const char *name, enum pool_kind kind, uint64_t size, mode_t mode, const struct span *ranges,
                     size_t nranges) {
        struct pool_conf pc = {
                .kind = kind,
                .has_kind = true,
                .size = size,
                .numa_node = -1,
                .ranges = (struct span *)ranges,
                .nranges = nranges,
                .owner = 1000,
                .group = kind == POOL_PINNED ? 1001 : 1000,
                .mode = mode,
                .backend = BACKEND_MEMFD,
                .register_flags = REGISTER_PORTABLE,
        };
        char err[256];

        snprintf(pc.name, sizeof(pc.name), "%s", name);
        if (kind == POOL_HOST)
                pc.quota_per_uid = 192 << 10;
        if (kind == POOL_FPGA)
                pc.quantum = 4096;
        if (kind == POOL_GPU)
                pc.device = 0;
        if (!strcmp(name, "r")) /* each region its own memfd, read-only for those who may only attach */
                pc.isolation = ISOLATION_REGION;
        if (!strcmp(name, "h")) /* names only h may publish */
                snprintf(pc.names, sizeof(pc.names), "res/*\n");
        int r = core_pool_add(core, &pc, err, sizeof(err));
        if (r < 0 && !(r == -ENODEV && kind == POOL_GPU))
                check_fail("pool %s: %s", name, err);
}

static void setup(uint8_t header) {
        static const struct span f_ranges[] = {{1ull << 32, 1u << 20}, {2ull << 32, 64u << 10}};
        /* Small enough that a few requests reach every limit. */
        static const struct limits tight = {
                .max_connections = 2,
                .max_connections_per_uid = 1,
                .max_regions_per_connection = 3,
                .max_waiters_per_connection = 1,
                .max_waiters_per_uid = 1024,
                .max_names = 2,
                .max_names_per_uid = 1,
                .max_persist_per_uid = 1,
                .max_region_fds_per_uid = 2,
                .wait_timeout_ms = 50,
                .hello_timeout_ms = 100,
        };
        struct config defaults; /* else the daemon's own */

        if (config_default(&defaults) < 0)
                check_fail("config_default failed");
        config_clear(&defaults);
        if (core_new(&core, header & FUZZ_TIGHT ? &tight : &defaults.limits) < 0)
                check_fail("core_new failed");
        core_set_slice(core, UINT64_MAX); /* an input does the same whatever the machine's load */
        now = START_MS;
        serial = 0;
        njobs = 0;
        core_set_now(core, now);
        add_pool("h", POOL_HOST, 256u << 10, 0666, NULL, 0);
        add_pool("p", POOL_PINNED, (header & FUZZ_BIG_P ? 1u << 20 : 0) + (64u << 10), 0660, NULL, 0);
        add_pool("f", POOL_FPGA, 0, 0664, f_ranges, 2);
        add_pool("g", POOL_GPU, 1u << 20, 0666, NULL, 0);
        add_pool("r", POOL_HOST, 128u << 10, 0664, NULL, 0);
        for (int c = 0; c < FUZZ_SESSIONS; c++) {
                conns[c] = (struct conn){.state = CONN_CLOSED};
                uids[c] = fuzz_uids[(header >> (1 + 2 * c)) & 3];
        }
}

/* ---- connections ---- */

static void conn_close(struct conn *c) {
        if (c->state == CONN_OPEN)
                core_client_remove(core, &c->s.client);
        session_clear(&c->s);
        c->state = CONN_CLOSED;
        c->gen++;
}

/* A new connection, as conn_new makes it: counted against the limits, or refused. */
static void conn_open(int i) {
        struct conn *c = &conns[i];
        struct client *cl = &c->s.client;
        struct core_result res;

        memset(&c->s, 0, sizeof(c->s));
        cl->serial = ++serial;
        cl->pid = 100 + (pid_t)serial;
        cl->uid = uids[i];
        cl->gid = uids[i];
        cl->groups[0] = 100;
        cl->ngroups = 1;
        snprintf(cl->comm, sizeof(cl->comm), "fuzz%d", i);
        c->fds = 0;
        c->state = core_client_add(core, cl, &res) == E_OK ? CONN_OPEN : CONN_REFUSED;
        c->deadline = now + core_limits(core)->hello_timeout_ms;
}

/* A region lies in its pool, and the pool's fd comes with the first region of that pool a connection gets. */
/* fd: the one the reply carries (-1: none, as for a batch's regions after its first). */
static void check_region(struct conn *c, const Allocd__Region *g, int fd) {
        struct pool *p = g->pool ? core_pool_find(core, g->pool) : NULL;
        struct pool_info pi;

        if (!p)
                check_fail("a region of pool '%s', which does not exist", g->pool ? g->pool : "(none)");
        core_pool_info(p, &pi);
        if (!g->has_format || (g->format == ALLOCD__FORMAT__FALLOC_HEAP) != (g->has_chunk_size && g->has_chunk_count))
                check_fail("a region without its format, or a heap without its geometry");
        if (g->region_fd) {
                /* isolation = region: the region's own memfd, each time, the reply's to close. */
                if (pi.fd >= 0 || g->pool_fd || out.fd < 0 || !out.fd_owned || g->pool_size != g->size ||
                    g->offset >= pi.size)
                        check_fail("pool %s: a region fd reply that is not one (fd %d)", pi.name, out.fd);
                return;
        }
        bool first = pi.fd >= 0 && !(c->fds & 1u << pi.id);
        if (g->pool_fd != first || (fd >= 0) != first ||
            (first && fd != (g->read_only && pi.ro_fd >= 0 ? pi.ro_fd : pi.fd)))
                check_fail("pool %s: the reply %s its fd (fd %d), but this connection %s it", pi.name,
                           g->pool_fd ? "carries" : "lacks", fd, first ? "lacks" : "has");
        if (first)
                c->fds |= 1u << pi.id;
        if (!g->size || (pi.fd >= 0 && (g->offset > pi.size || g->size > pi.size - g->offset)))
                check_fail("region %#llx+%#llx does not lie in pool %s (%llu bytes)", (unsigned long long)g->offset,
                           (unsigned long long)g->size, pi.name, (unsigned long long)pi.size);
}

/*
 * A batch, listed (the first region names the pool and brings its fd; the others lie in it too) or
 * in columns (common, with the fd fields, and three columns of one length): each region as a Region.
 */
static void check_batch(struct conn *c, const Allocd__RegionBatch *b) {
        size_t n = b->n_regions ? b->n_regions : b->n_ids;

        if (b->n_regions && (b->common || b->n_ids || b->n_offsets || b->n_sizes))
                check_fail("a batch both listed and in columns");
        if (!b->n_regions && (!b->common || !b->n_ids || b->n_offsets != b->n_ids || b->n_sizes != b->n_ids ||
                              b->common->has_id || b->common->has_offset || b->common->has_size))
                check_fail("a batch in columns without its common region, or with columns of %zu, %zu and %zu",
                           b->n_ids, b->n_offsets, b->n_sizes);
        for (size_t k = 0; k < n; k++) {
                Allocd__Region g = b->n_regions ? *b->regions[k] : *b->common;
                if (b->n_regions && k > 0 && g.pool)
                        check_fail("region %zu of a batch names its pool; only the first does", k);
                if (b->n_regions) {
                        g.pool = b->regions[0]->pool;
                } else {
                        g.has_id = g.has_offset = g.has_size = true;
                        g.id = b->ids[k];
                        g.offset = b->offsets[k];
                        g.size = b->sizes[k];
                        g.pool_fd &= k == 0; /* the batch's, once */
                }
                check_region(c, &g, k == 0 ? out.fd : -1);
        }
}

/* A Dump's page: in order of slot, and next (set with more, and only then) not before its last. */
static void check_dump(const Allocd__DumpReply *d) {
        uint32_t prev = 0;

        if (d->has_next != d->more)
                check_fail("a Dump reply with more %d and next %s", d->more, d->has_next ? "set" : "unset");
        for (size_t k = 0; k < d->n_regions; k++) {
                if (k && (uint32_t)d->regions[k]->id <= prev)
                        check_fail("a Dump reply's regions out of order (%#llx after slot %u)",
                                   (unsigned long long)d->regions[k]->id, prev);
                prev = (uint32_t)d->regions[k]->id;
        }
        if (d->has_next && (!d->next || (d->n_regions && (uint32_t)d->next < prev)))
                check_fail("a Dump reply's next %#llx goes back (last slot listed %u)", (unsigned long long)d->next,
                           prev);
}

/* The reply in out must decode, and an error must say why. */
static int check_reply(int i) {
        Allocd__Reply *r = allocd__reply__unpack(NULL, out.len, out.buf);
        int code;

        if (!r)
                check_fail("a reply of %zu bytes does not decode", out.len);
        code = r->has_error ? (int)r->error : 0;
        if (code != E_OK && (!r->message || !*r->message))
                check_fail("error %d without a message", code);
        if (r->body_case == ALLOCD__REPLY__BODY_REGION)
                check_region(&conns[i], r->region, out.fd);
        if (r->body_case == ALLOCD__REPLY__BODY_BATCH)
                check_batch(&conns[i], r->batch);
        if (r->body_case == ALLOCD__REPLY__BODY_DUMP)
                check_dump(r->dump);
        if (trace)
                fprintf(stderr, "  session %d <- id %llu %s%s%s%s\n", i, (unsigned long long)r->id,
                        wire_error_name(code), r->message ? ": " : "", r->message ? r->message : "",
                        out.close ? " (closed)" : "");
        allocd__reply__free_unpacked(r, NULL);
        return code;
}

static void zeroed(uint8_t b);

/* What server.c's act() does with out; returns the reply's error code (E_OK when there is none). */
static int act(int i) {
        struct conn *c = &conns[i];
        int code = E_OK;

        if (out.zero) {
                struct job j = {.conn = i, .gen = c->gen, .slot = out.slot, .req_id = out.req_id};

                if (trace)
                        fprintf(stderr, "  session %d: slot %u is to be zeroed\n", i, out.slot);
                core_zero_job(core, j.slot, &j.z);
                if (njobs == JOBS_MAX)
                        zeroed(0); /* the workers are all busy: the oldest job ends first */
                jobs[njobs++] = j;
                return E_OK;
        }
        if (out.len)
                code = check_reply(i);
        if (out.fd_owned)
                close(out.fd);
        if (out.goodbye && c->state == CONN_OPEN) {
                /* server.c: released at once, counted until the close (here at once: the OK is read). */
                core_client_bye(core, &c->s.client);
                c->state = CONN_CLOSED;
                core_client_gone(core, c->s.client.uid);
        }
        if (out.close)
                conn_close(c);
        return code;
}

static void turn(void);

/*
 * Session i's request (buf) ended a waiter of its own while it was served: only a Cancel answered OK
 * may, and it ends exactly one and changes nothing else.
 */
static void check_cancel(int i, const uint8_t *buf, size_t len, const struct core_snap *before,
                         struct core_snap *after) {
        struct wire_budget budget;
        Allocd__Request *req;
        Allocd__Reply *r = out.len ? allocd__reply__unpack(NULL, out.len, out.buf) : NULL;

        wire_budget_init(&budget, WIRE_UNPACK_BUDGET, NULL, 0);
        req = allocd__request__unpack(&budget.allocator, len, buf);
        if (!req || req->body_case != ALLOCD__REQUEST__BODY_CANCEL || !r || r->error != ALLOCD__ERROR__OK)
                check_fail("session %d's request ended a waiter, and it is not a Cancel answered OK", i);
        if (after->clients[i].nwaiters + 1 != before->clients[i].nwaiters)
                check_fail("a Cancel ended %u waiters", before->clients[i].nwaiters - after->clients[i].nwaiters);
        /* The rest as it was: a pool's count of waiters, if it was an Alloc's, and the core's. */
        after->clients[i].nwaiters = before->clients[i].nwaiters;
        after->st.waiters = before->st.waiters;
        for (int k = 0; k < CHECK_POOLS_MAX; k++)
                after->pools[k].waiters = before->pools[k].waiters;
        core_snap_same(before, after, "a Cancel");
        allocd__reply__free_unpacked(r, NULL);
        wire_budget_free(&budget, &req->base);
}

static void packet(int i, const uint8_t *buf, size_t len) {
        static _Alignas(16) uint8_t arena[16384];
        struct conn *c = &conns[i];
        struct core_snap before, after;

        if (c->state == CONN_CLOSED)
                conn_open(i);
        if (trace)
                fprintf(stderr, "session %d (uid %u, %s) -> %zu bytes\n", i, (unsigned)uids[i],
                        c->state == CONN_OPEN ? "open" : "refused", len);
        /* A hang-up, a packet from a refused connection, or one over the limit (wire_recv: -EMSGSIZE). */
        if (len == 0 || c->state == CONN_REFUSED || len > WIRE_MAX_PACKET) {
                conn_close(c);
                return;
        }
        /* As the server does: room an earlier request freed goes to the waiters first. */
        if (core_pending(core)) {
                turn();
                if (c->state != CONN_OPEN)
                        return;
        }
        snap(&before);
        proto_request(core, &c->s, buf, len, arena, sizeof(arena), &out);
        snap(&after);
        if (after.clients[i].nwaiters < before.clients[i].nwaiters)
                check_cancel(i, buf, len, &before, &after);
        if (act(i) != E_OK) {
                /* An AllocBatch finds out that it does not fit by placing regions: tables may have grown. */
                struct wire_budget budget;
                wire_budget_init(&budget, WIRE_UNPACK_BUDGET, NULL, 0);
                Allocd__Request *req = allocd__request__unpack(&budget.allocator, len, buf);
                if (req && req->body_case == ALLOCD__REQUEST__BODY_ALLOC_BATCH) {
                        core_snap_forget_capacity(&before);
                        core_snap_forget_capacity(&after);
                }
                core_snap_forget_arenas(&before);
                core_snap_forget_arenas(&after);
                if (req)
                        wire_budget_free(&budget, &req->base);
                core_snap_same(&before, &after, "a refused request");
        }
        /* As the server does once the reply is out: a Disconnect's marked connections close. */
        if (core_evictions(core))
                for (int k = 0; k < FUZZ_SESSIONS; k++)
                        if (conns[k].state == CONN_OPEN && conns[k].s.client.evicted)
                                conn_close(&conns[k]);
}

/* A job ends: the region is the client's, or goes back if its connection is gone or zeroing failed. */
static void zeroed(uint8_t b) {
        struct job j;
        size_t k;

        if (!njobs)
                return;
        k = (size_t)(b >> 1) % njobs;
        j = jobs[k];
        memmove(&jobs[k], &jobs[k + 1], (njobs - k - 1) * sizeof(*jobs));
        njobs--;
        struct conn *c = &conns[j.conn];
        bool live = c->gen == j.gen && c->state == CONN_OPEN;
        int result = b & 1 ? -EIO : core_zero_run(&j.z);
        if (trace)
                fprintf(stderr, "zeroing slot %u for session %d ends: %s%s\n", j.slot, j.conn,
                        result < 0 ? "failed" : "done", live ? "" : " (its connection is gone)");
        proto_zeroed(core, live ? &c->s : NULL, j.slot, j.req_id, result, &out);
        if (live)
                act(j.conn);
}

/* run_core: the core's deferred work, and every outcome answered on its connection. */
static void turn(void) {
        struct core_done d;

        core_set_now(core, now);
        core_run(core);
        while (core_done_pop(core, &d)) {
                struct conn *c = (struct conn *)((char *)d.client - offsetof(struct conn, s.client));
                proto_done(core, &c->s, &d, &out);
                act((int)(c - conns));
        }
}

static void tick(uint64_t ms) {
        if (trace)
                fprintf(stderr, "tick %llu ms\n", (unsigned long long)ms);
        now += ms;
        for (int i = 0; i < FUZZ_SESSIONS; i++)
                if (conns[i].state != CONN_CLOSED && !conns[i].s.hello && conns[i].deadline <= now)
                        conn_close(&conns[i]);
        turn();
}

/* server_stop: waiters cancelled and answered before any connection's regions go. */
static void stop(void) {
        core_cancel_waiters(core, "allocd is stopping");
        turn();
}

static void teardown(void) {
        struct core_view v;

        for (int i = 0; i < FUZZ_SESSIONS; i++)
                conn_close(&conns[i]);
        while (njobs)
                zeroed(0);
        view(&v);
        core_check(core, &v, true);
        core_check_empty(core);
        core_free(core);
        core = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        log_set_level(0); /* refusals are the point here, not news */
        trace = getenv("FUZZ_TRACE") != NULL;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *p = data + 1, *end = data + size;
        struct core_view v;
        unsigned records = 0;

        if (size == 0)
                return 0;
        setup(data[0]);
        while (p < end) {
                uint8_t tag = *p++;
                int kind = tag % 8, i = tag / 8 % FUZZ_SESSIONS;
                size_t avail = (size_t)(end - p), len;

                if (kind < FUZZ_TICK) {
                        len = avail >= 2 ? (size_t)(p[0] | p[1] << 8) : 0;
                        p += avail >= 2 ? 2 : avail;
                        len = len < (size_t)(end - p) ? len : (size_t)(end - p);
                        packet(i, p, len);
                        p += len;
                } else if (kind == FUZZ_TICK) {
                        tick(avail >= 2 ? (uint64_t)(p[0] | p[1] << 8) : 0);
                        p += avail >= 2 ? 2 : avail;
                } else if (kind == FUZZ_TURN) {
                        turn();
                } else if (kind == FUZZ_ZEROED) {
                        zeroed(avail ? *p++ : 0);
                } else {
                        stop();
                        break;
                }
                /* Every record of a short input; every 16th past that, so that long ones stay affordable. */
                if (++records <= 256 || records % 16 == 0) {
                        view(&v);
                        core_check(core, &v, false);
                }
        }
        teardown();
        return 0;
}
