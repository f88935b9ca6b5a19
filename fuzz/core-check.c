/* SPDX-License-Identifier: MIT */
/*
 * fuzz-request's oracles (core-check.h).  The core keeps counts in many
 * places (per pool, per client, per uid, in the range arenas, the name index
 * and the hold hash) so that no request has to walk anything; here each is
 * recounted the slow way from the region table and compared, so that a count
 * that drifts on one path is caught on the record that made it drift, not on
 * the crash it causes later.  It reads the core's internals (core-impl.h):
 * the harness's view of what the core must hold.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc/falloc.h"

#include "core-check.h"
#include "core-impl.h"
#include "range-internal.h"

void check_fail(const char *fmt, ...) {
        va_list ap;

        fputs("fuzz-request: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        abort();
}

void core_snap(struct core *core, const struct core_view *v, struct core_snap *s) {
        memset(s, 0, sizeof(*s));
        core_stats(core, &s->st);
        for (size_t i = 0; i < core->npools && i < CHECK_POOLS_MAX; i++) {
                struct pool_info pi;
                core_pool_info(core->pools[i], &pi);
                core_pool_stats(core->pools[i], &s->pools[i].rs);
                s->pools[i].regions = pi.regions;
                s->pools[i].waiters = pi.waiters;
        }
        for (int c = 0; c < CHECK_CLIENTS_MAX; c++) {
                const struct client *cl = v->clients[c];
                if (!cl)
                        continue;
                s->clients[c].nrefs = cl->nrefs;
                s->clients[c].npending = cl->npending;
                s->clients[c].nwaiters = cl->nwaiters;
                s->clients[c].bytes = cl->bytes;
        }
}

void core_snap_forget_arenas(struct core_snap *s) {
        for (size_t i = 0; i < CHECK_POOLS_MAX; i++)
                s->pools[i].rs.meta_bytes = 0;
}

void core_snap_forget_capacity(struct core_snap *s) {
        s->st.table_bytes = 0;
        core_snap_forget_arenas(s);
}

void core_snap_same(const struct core_snap *a, const struct core_snap *b, const char *what) {
        if (memcmp(a, b, sizeof(*a)) == 0)
                return;
        check_fail("%s changed the core: regions %llu -> %llu, holds %llu -> %llu, names %llu -> %llu, waiters %llu -> "
                   "%llu, used %llu -> %llu, table bytes %zu -> %zu (or a pool's or client's counts)",
                   what, (unsigned long long)a->st.regions, (unsigned long long)b->st.regions,
                   (unsigned long long)a->st.holds, (unsigned long long)b->st.holds, (unsigned long long)a->st.names,
                   (unsigned long long)b->st.names, (unsigned long long)a->st.waiters,
                   (unsigned long long)b->st.waiters, (unsigned long long)a->st.used, (unsigned long long)b->st.used,
                   a->st.table_bytes, b->st.table_bytes);
}

static int client_index(const struct core_view *v, const struct client *cl) {
        for (int c = 0; c < CHECK_CLIENTS_MAX; c++)
                if (v->clients[c] == cl)
                        return c;
        return -1;
}

#define UIDS_MAX 16

/* Everything recounted, in one pass over the region table. */
struct tally {
        uint64_t regions, named, pending, bytes, holds, hashed, formats;
        uint64_t client_refs[CHECK_CLIENTS_MAX], client_bytes[CHECK_CLIENTS_MAX];
        uint64_t pool_regions[CHECK_POOLS_MAX], pool_bytes[CHECK_POOLS_MAX];
        struct {
                uid_t uid;
                uint64_t named, persist, fds, bytes[CHECK_POOLS_MAX], regions[CHECK_POOLS_MAX];
        } uids[UIDS_MAX];
        size_t nuids;
};

static size_t uid_index(struct tally *t, uid_t uid) {
        size_t i;

        for (i = 0; i < t->nuids && t->uids[i].uid != uid; i++)
                ;
        if (i == t->nuids) {
                if (i == UIDS_MAX)
                        check_fail("more than %d uids: the checker cannot count them", UIDS_MAX);
                memset(&t->uids[i], 0, sizeof(t->uids[i]));
                t->uids[t->nuids++].uid = uid;
        }
        return i;
}

/* The region's holds, found by walking its list: each must be found by the hash too. */
static uint64_t count_holds(struct core *core, const struct core_view *v, uint32_t slot, struct tally *t) {
        const struct holds *h = &core->regions.holds;
        const struct region *r = &core->regions.tab[slot];
        uint64_t refs = 0;

        for (uint32_t i = r->holds; i != HOLD_NONE; i = h->tab[i].rnext) {
                const struct hold *x = &h->tab[i];
                int c = client_index(v, x->cl);

                if (c < 0 || x->count == 0 || x->slot != slot ||
                    hold_find(h, core->regions.tab[slot].holds, x->cl, slot) != i)
                        check_fail("region slot %u: hold %u is of a client that is gone, empty, of another region, "
                                   "or not in the hash",
                                   slot, i);
                if (i != r->holds && !x->hashed)
                        check_fail("region slot %u: hold %u is not its first, yet not in the hash", slot, i);
                refs += x->count;
                t->holds++;
                t->hashed += x->hashed;
                t->client_refs[c] += x->count;
                if (r->creator == x->cl->serial)
                        t->client_bytes[c] += r->size;
        }
        return refs;
}

/* A heap allocd wrote and handed out is in the region, as its tag says (nothing here writes chunks). */
static void check_heap(struct core *core, uint32_t slot) {
        const struct region *r = &core->regions.tab[slot];
        const struct pool *p = core->pools[r->pool];
        struct region_format f;
        fallocDeviceHeap *h;
        void *at;

        formats_get(&core->regions.formats, slot, &f);
        if (f.format != r->format || f.heap_size > r->size ||
            falloc_heap_size(f.chunk_size, f.chunk_count) > f.heap_size)
                check_fail("region slot %u: its tag (format %u, %llu chunks of %llu in %llu bytes) does not fit it",
                           slot, f.format, (unsigned long long)f.chunk_count, (unsigned long long)f.chunk_size,
                           (unsigned long long)f.heap_size);
        if ((r->state & R_PENDING) || !format_by_allocd(p))
                return;
        at = r->fd >= 0 ? mmap(NULL, r->size, PROT_READ, MAP_SHARED, r->fd, 0) : (char *)p->map + r->offset;
        if (at == MAP_FAILED)
                check_fail("region slot %u: cannot map its memfd", slot);
        if (falloc_heap_open(at, r->size, &h) < 0 || h->chunk_size != f.chunk_size || h->chunk_count != f.chunk_count ||
            h->size != f.heap_size || falloc_heap_available(h) != f.chunk_count)
                check_fail("region slot %u was handed out without the falloc heap its tag says", slot);
        if (r->fd >= 0)
                munmap(at, r->size);
}

static void count_region(struct core *core, const struct core_view *v, uint32_t slot, struct tally *t) {
        const struct region *r = &core->regions.tab[slot];
        uint64_t held = count_holds(core, v, slot, t);
        uint64_t refs = held + !!(r->state & R_PERSIST) + !!(r->state & R_PENDING);
        size_t u = uid_index(t, r->uid);

        if (refs != r->refs || r->refs == 0)
                check_fail("region slot %u has %u references; its holds, PERSIST and pending make %llu", slot, r->refs,
                           (unsigned long long)refs);
        if ((r->state & R_PENDING) && held)
                check_fail("region slot %u is pending but held", slot);
        if (r->pool >= core->npools || r->pool >= CHECK_POOLS_MAX || r->offset + r->size < r->offset || !r->size)
                check_fail("region slot %u: pool %u, %#llx+%#llx", slot, r->pool, (unsigned long long)r->offset,
                           (unsigned long long)r->size);
        if (region_slot(&core->regions, region_id(&core->regions, slot)) != (int)slot)
                check_fail("region slot %u is not found by its id", slot);
        if (r->name && names_find(&core->names, names_text(&core->names, r->name)) != (int)slot)
                check_fail("region slot %u is not found by its name", slot);
        if (r->format != FMT_RAW)
                check_heap(core, slot);
        t->regions++;
        t->named += r->name != 0;
        t->formats += r->format != FMT_RAW;
        t->pending += !!(r->state & R_PENDING);
        t->bytes += r->size;
        t->pool_regions[r->pool]++;
        t->pool_bytes[r->pool] += r->size;
        t->uids[u].named += r->name != 0;
        t->uids[u].persist += !!(r->state & R_PERSIST);
        t->uids[u].fds += r->fd >= 0;
        t->uids[u].bytes[r->pool] += r->size;
        t->uids[u].regions[r->pool]++;
}

static uint32_t pool_waiters(const struct pool *p) {
        uint32_t n = 0;

        for (const struct waiter *w = TAILQ_FIRST(&p->waiters); w; w = TAILQ_NEXT(w, by_pool))
                n++;
        return n;
}

static uint32_t client_waiters(const struct client *cl) {
        uint32_t n = 0;

        for (const struct waiter *w = TAILQ_FIRST(&cl->waiters); w; w = TAILQ_NEXT(w, by_client))
                n++;
        return n;
}

static void check_pools(struct core *core, struct tally *t, bool arenas) {
        char why[256];

        for (size_t i = 0; i < core->npools; i++) {
                struct pool *p = core->pools[i];
                struct range_stats rs;

                if (arenas && p->arena && range_arena_check(p->arena, why, sizeof(why)) < 0)
                        check_fail("pool %s: arena: %s", p->conf.name, why);
                range_stats(p->arena, &rs);
                if (rs.in_use != t->pool_bytes[i] || p->nregions != t->pool_regions[i])
                        check_fail("pool %s: %llu bytes in %llu regions; its arena and count say %llu and %llu",
                                   p->conf.name, (unsigned long long)t->pool_bytes[i],
                                   (unsigned long long)t->pool_regions[i], (unsigned long long)rs.in_use,
                                   (unsigned long long)p->nregions);
                for (size_t u = 0; u < p->nusage; u++) {
                        size_t k = uid_index(t, p->usage[u].uid);
                        if (p->usage[u].bytes != t->uids[k].bytes[i] || p->usage[u].regions != t->uids[k].regions[i])
                                check_fail("pool %s: uid %u is charged %llu bytes in %llu regions, holds %llu in %llu",
                                           p->conf.name, (unsigned)p->usage[u].uid,
                                           (unsigned long long)p->usage[u].bytes,
                                           (unsigned long long)p->usage[u].regions,
                                           (unsigned long long)t->uids[k].bytes[i],
                                           (unsigned long long)t->uids[k].regions[i]);
                }
                if (pool_waiters(p) != p->nwaiters)
                        check_fail("pool %s: %llu waiters counted, %u queued", p->conf.name,
                                   (unsigned long long)p->nwaiters, pool_waiters(p));
                /* Room only comes back by a free, which makes the pool ready: one that is not has none for them. */
                for (const struct waiter *w = TAILQ_FIRST(&p->waiters); w && !p->ready; w = TAILQ_NEXT(w, by_pool))
                        if (range_fits(p->arena, w->args.size, &w->args.req) != -ENOSPC)
                                check_fail("pool %s: a waiter for %llu bytes fits, and the pool is not ready to try it",
                                           p->conf.name, (unsigned long long)w->args.size);
        }
        /* The ready list outlives a loop turn while a pass is broken off: what it points at must be alive. */
        size_t nready = 0;
        for (const struct pool *p = TAILQ_FIRST(&core->waitq.ready); p; p = TAILQ_NEXT(p, ready_link)) {
                bool listed = false, resumed = !p->resume;
                for (size_t i = 0; i < core->npools; i++)
                        listed |= core->pools[i] == p;
                if (!listed || !p->ready || p->draining[0] || !p->available)
                        check_fail("a pool on the ready list is not one of the core's, or not ready, or draining");
                for (const struct waiter *w = TAILQ_FIRST(&p->waiters); w && !resumed; w = TAILQ_NEXT(w, by_pool))
                        resumed = w == p->resume;
                if (!resumed)
                        check_fail("pool %s: the waiter its pass goes on from is not one of its own", p->conf.name);
                nready++;
        }
        for (size_t i = 0; i < core->npools; i++)
                nready -= core->pools[i]->ready;
        if (nready)
                check_fail("the ready list and the pools marked ready differ");
}

static void check_clients(struct core *core, const struct core_view *v, const struct tally *t) {
        const struct limits *l = &core->limits;
        uint64_t waiters = 0;

        for (int c = 0; c < CHECK_CLIENTS_MAX; c++) {
                const struct client *cl = v->clients[c];
                uint32_t nw;

                if (!cl)
                        continue;
                nw = client_waiters(cl);
                waiters += nw;
                if (cl->nrefs != t->client_refs[c] || cl->bytes != t->client_bytes[c] ||
                    cl->npending != v->npending[c] || cl->nwaiters != nw)
                        check_fail("client %d counts %u references, %llu bytes, %u pending, %u waiters; the core "
                                   "holds %llu, %llu, %u, %u",
                                   c, cl->nrefs, (unsigned long long)cl->bytes, cl->npending, cl->nwaiters,
                                   (unsigned long long)t->client_refs[c], (unsigned long long)t->client_bytes[c],
                                   v->npending[c], nw);
                if ((uint64_t)cl->nrefs + cl->npending > l->max_regions_per_connection ||
                    cl->nwaiters > l->max_waiters_per_connection)
                        check_fail("client %d is past its limits: %u references, %u pending, %u waiters", c, cl->nrefs,
                                   cl->npending, cl->nwaiters);
                if (cl->user != user_find(core, cl->uid))
                        check_fail("client %d is not counted under its uid", c);
        }
        if (waiters != core->waitq.nwaiters)
                check_fail("%llu waiters counted, the clients have %llu", (unsigned long long)core->waitq.nwaiters,
                           (unsigned long long)waiters);
}

/* Each uid's connections, names, PERSIST regions and regions' own memfds; a uid with none has no entry. */
static void check_users(struct core *core, const struct core_view *v, struct tally *t) {
        for (const struct user *u = core->users; u; u = u->next) {
                size_t k = uid_index(t, u->uid);
                uint32_t conns = 0, waiters = 0;

                for (int c = 0; c < CHECK_CLIENTS_MAX; c++) {
                        conns += v->clients[c] && v->clients[c]->uid == u->uid;
                        waiters += v->clients[c] && v->clients[c]->uid == u->uid ? v->clients[c]->nwaiters : 0;
                }
                if (u->waiters != waiters)
                        check_fail("uid %u: %u waiters counted; its connections have %u", (unsigned)u->uid, u->waiters,
                                   waiters);
                if (u->conns != conns || u->names != t->uids[k].named || u->persist != t->uids[k].persist ||
                    u->fds != t->uids[k].fds)
                        check_fail(
                                "uid %u: %u connections, %u names, %u PERSIST, %u memfds counted; there are %u, %llu, "
                                "%llu, %llu",
                                (unsigned)u->uid, u->conns, u->names, u->persist, u->fds, conns,
                                (unsigned long long)t->uids[k].named, (unsigned long long)t->uids[k].persist,
                                (unsigned long long)t->uids[k].fds);
                if (!u->conns && !u->names && !u->persist && !u->fds)
                        check_fail("uid %u has an entry with nothing in it", (unsigned)u->uid);
        }
}

void core_check(struct core *core, const struct core_view *v, bool arenas) {
        static struct tally t;
        const struct regions *rt = &core->regions;
        struct core_stats st;

        memset(&t, 0, sizeof(t));
        for (uint32_t slot = 0; slot < rt->slots.hi; slot++)
                if (rt->tab[slot].state & R_LIVE)
                        count_region(core, v, slot, &t);
        core_stats(core, &st);
        if (core->regions.holds.hash_used != t.hashed)
                check_fail("the hold hash counts %u entries; %llu holds are marked as in it",
                           core->regions.holds.hash_used, (unsigned long long)t.hashed);
        if (st.regions != t.regions || st.names != t.named || st.holds != t.holds || st.used != t.bytes ||
            st.formats != t.formats)
                check_fail("core_stats says %llu regions, %llu names, %llu holds, %llu bytes, %llu tags; there are "
                           "%llu, %llu, %llu, %llu, %llu",
                           (unsigned long long)st.regions, (unsigned long long)st.names, (unsigned long long)st.holds,
                           (unsigned long long)st.used, (unsigned long long)st.formats, (unsigned long long)t.regions,
                           (unsigned long long)t.named, (unsigned long long)t.holds, (unsigned long long)t.bytes,
                           (unsigned long long)t.formats);
        if (t.pending != v->njobs)
                check_fail("%llu regions are pending, %zu are being zeroed", (unsigned long long)t.pending, v->njobs);
        for (size_t j = 0; j < v->njobs; j++)
                if (!(rt->tab[v->jobs[j]].state & R_PENDING))
                        check_fail("slot %u is being zeroed but not pending", v->jobs[j]);
        check_pools(core, &t, arenas);
        check_clients(core, v, &t);
        check_users(core, v, &t);
}

void core_check_empty(struct core *core) {
        struct core_view none = {0};
        struct core_done d;
        struct core_stats st;

        core_check(core, &none, true);
        core_stats(core, &st);
        if (core_nclients(core) || st.holds || st.waiters || core_done_pop(core, &d))
                check_fail("with every client gone: %u clients, %llu holds, %llu waiters, or outcomes left",
                           core_nclients(core), (unsigned long long)st.holds, (unsigned long long)st.waiters);
        for (uint32_t slot = 0; slot < core->regions.slots.hi; slot++) {
                const struct region *r = &core->regions.tab[slot];
                if (r->state && (r->state != (R_LIVE | R_PERSIST) || r->refs != 1))
                        check_fail("with every client gone, region slot %u is left: state %#x, %u references", slot,
                                   r->state, r->refs);
        }
}
