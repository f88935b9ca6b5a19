/* SPDX-License-Identifier: MIT */
/*
 * A chaos worker's operations on its liballoc-client connections (see chaos-client.c): the
 * regions a thread holds, and each random request with what it checks of the answer.
 */
#include <errno.h>
#include <string.h>

#include "chaos-client.h"

static void forget_stale(struct thr *t, uint64_t id) {
        t->stale[t->nstale++ % NSTALE] = id;
}

/* Drops held region i by Free or Detach; one this connection holds must go without complaint. */
void release(struct thr *t, int i, bool detach) {
        struct held h = t->h[i];
        int e;

        detach = detach && !h.persist;
        if (h.own && h.ptr)
                check_tags(&h, "before it was freed");
        e = detach ? alloc_region_detach(t->c, h.id) : alloc_region_free(t->c, h.id);
        count(detach ? OP_DETACH : OP_FREE, e);
        lost(e);
        if (e < 0)
                violation("%s of region %#llx, which this connection holds, failed: %s", detach ? "Detach" : "Free",
                          (unsigned long long)h.id, alloc_last_error());
        t->h[i] = t->h[--t->nh];
        if (h.own)
                forget_stale(t, h.id);
}

void keep(struct thr *t, const struct alloc_region *r, int pool, bool own, bool persist) {
        struct held *h;

        if (t->nh == MAXHELD)
                release(t, (int)below(&t->rng, MAXHELD), chance(&t->rng, 30));
        h = &t->h[t->nh++];
        *h = (struct held){.id = r->id,
                           .addr = r->addr,
                           .size = r->size,
                           .ptr = r->ptr,
                           .pool = pool,
                           .own = own,
                           .persist = persist};
        h->tag = next(&t->rng) | 1;
        if (h->ptr)
                write_tags(h);
}

/* ---- the operations ---- */

int pick_pool(struct rng *r) {
        uint64_t x = below(r, 100);
        return x < 55 ? P_HOST : x < 70 ? P_SMALL : P_FPGA;
}

uint64_t pick_size(struct rng *r, int pool) {
        uint64_t x = below(r, 100);

        switch (pool) {
        case P_HOST:
                return x < 70   ? size_between(r, 1, 64 << 10)
                       : x < 92 ? size_between(r, 64 << 10, 1 << 20)
                                : size_between(r, (1 << 20) + 1, 3 << 20); /* zeroed on allocd's thread pool */
        case P_SMALL:
                return size_between(r, 1, 512 << 10);
        default:
                return size_between(r, 1, 4 << 20);
        }
}

/* Constraints now and then: alignment with a phase, a boundary, a window. */
static void pick_constraints(struct rng *r, int pool, uint64_t size, struct alloc_opts *o) {
        static const uint64_t aligns[] = {PAGE, 64 << 10, 1 << 20, 2 << 20};
        uint64_t base = is_host(pool) ? 0 : CHAOS_FPGA_BASE0;
        uint64_t span = is_host(pool) ? pool_end(pool) : CHAOS_FPGA_SIZE0;

        if (chance(r, 12))
                o->count = 2 + below(r, 3);
        if (chance(r, 15)) {
                o->align = aligns[below(r, 4)];
                if (chance(r, 40))
                        o->phase = below(r, o->align / PAGE) * PAGE;
        }
        if (chance(r, 8)) {
                uint64_t b = 1ull << (63 - __builtin_clzll(size | 1));
                o->boundary = chance(r, 80) ? b << (1 + below(r, 3)) : b; /* sometimes too small: INVALID */
        }
        if (chance(r, 10)) {
                if (pool == P_FPGA && chance(r, 30)) {
                        o->low = CHAOS_FPGA_BASE1;
                } else {
                        o->low = base + below(r, span / 2 / PAGE) * PAGE;
                        if (chance(r, 70))
                                o->high = o->low + span / 4 + below(r, span / 4 / PAGE) * PAGE;
                }
        }
}

void op_alloc(struct thr *t, enum alloc_kind_op kind) {
        struct rng *r = &t->rng;
        struct alloc_opts o = {0};
        struct alloc_region reg;
        char name[32];
        int pool = kind == A_PERSIST ? (chance(r, 80) ? P_FPGA : P_HOST) : pick_pool(r);
        uint64_t size = kind == A_PERSIST ? size_between(r, 1, 16 << 10) : pick_size(r, pool);
        enum chaos_op op = kind == A_PLAIN ? OP_ALLOC : kind == A_NAMED ? OP_ALLOC_NAMED : OP_PERSIST;

        if (kind != A_PERSIST)
                pick_constraints(r, pool, size, &o);
        if (is_host(pool) ? chance(r, 30) : chance(r, 2))
                o.flags |= ALLOC_ZERO; /* on an fpga pool: INVALID */
        if (chance(r, 40) || kind == A_PERSIST)
                o.flags |= ALLOC_NOWAIT;
        else if (chance(r, 70))
                o.timeout_ms = 1 + (uint32_t)below(r, 50); /* else allocd's wait_timeout */
        if (kind == A_NAMED) {
                name_of(r, name, sizeof(name));
                o.name = name;
                if (!calm && chance(r, 30))
                        o.flags |= ALLOC_PERSIST;
        }
        if (kind == A_PERSIST)
                o.flags |= ALLOC_PERSIST;
        int e = alloc_region_new(t->c, pool_names[pool], size, &o, &reg);
        count(op, e);
        lost(e);
        if (e < 0)
                return;
        check_placement(&reg, pool, size * (o.count ? o.count : 1), &o);
        struct held h = {.id = reg.id, .addr = reg.addr, .size = reg.size, .ptr = reg.ptr, .pool = pool};
        if ((o.flags & ALLOC_ZERO) && !o.name && reg.ptr)
                check_zero(&h);
        keep(t, &reg, pool, !o.name, !o.name && (o.flags & ALLOC_PERSIST));
}

void op_attach(struct thr *t) {
        struct alloc_region reg;
        char name[32];

        name_of(&t->rng, name, sizeof(name));
        int e = alloc_region_attach(t->c, name, NULL, &reg);
        count(OP_ATTACH, e);
        lost(e);
        if (e == 0)
                keep(t, &reg, reg.kind == ALLOC_KIND_FPGA ? P_FPGA : P_HOST, false, false);
}

void op_touch(struct thr *t) {
        if (!t->nh)
                return;
        struct held *h = &t->h[below(&t->rng, (uint64_t)t->nh)];
        if (!h->ptr)
                return;
        if (h->own)
                check_tags(h, "when it was read back");
        h->tag = next(&t->rng) | 1;
        write_tags(h);
        count(OP_TOUCH, 0);
}

void op_stale(struct thr *t) {
        int n = t->nstale < NSTALE ? t->nstale : NSTALE;

        if (!n)
                return;
        uint64_t id = t->stale[below(&t->rng, (uint64_t)n)];
        int e = chance(&t->rng, 50) ? alloc_region_free(t->c, id) : alloc_region_detach(t->c, id);
        count(OP_FREE_STALE, e);
        lost(e);
        if (e != -ENOENT)
                violation("Free/Detach of region %#llx, which this thread freed before, answered %s (%s); "
                          "want NOT_FOUND: ids are never reused",
                          (unsigned long long)id, e ? strerror(-e) : "OK", alloc_last_error());
}

/*
 * Many small regions at once, then each freed or detached in random order: the
 * region and hold tables grow and shrink under everyone else's requests.
 */
void op_batch(struct thr *t) {
        struct alloc_opts o = {.flags = ALLOC_NOWAIT};
        struct alloc_region reg;
        uint64_t ids[128];
        int n = 32 + (int)below(&t->rng, 97), got = 0, e;

        for (int i = 0; i < n; i++) {
                e = alloc_region_new(t->c, CHAOS_POOL_FPGA, PAGE, &o, &reg);
                count(OP_BATCH, e);
                lost(e);
                if (e == 0)
                        ids[got++] = reg.id;
        }
        while (got > 0) {
                int i = (int)below(&t->rng, (uint64_t)got);
                bool detach = chance(&t->rng, 30);
                uint64_t id = ids[i];
                ids[i] = ids[--got];
                e = detach ? alloc_region_detach(t->c, id) : alloc_region_free(t->c, id);
                count(detach ? OP_DETACH : OP_FREE, e);
                lost(e);
                if (e < 0)
                        violation("%s of region %#llx, which this connection holds, failed: %s",
                                  detach ? "Detach" : "Free", (unsigned long long)id, alloc_last_error());
        }
}

/* Requests allocd must refuse, with the code docs/protocol.md gives. */
void op_invalid(struct thr *t) {
        struct alloc_opts o = {0};
        struct alloc_region reg;
        const char *pool = CHAOS_POOL_HOST, *what;
        uint64_t size = PAGE;
        int want, e, which = (int)below(&t->rng, 12);

        switch (which) {
        case 0:
                size = 0, want = -EINVAL, what = "size 0";
                break;
        case 1:
                pool = "no-such-pool", want = -ENODEV, what = "an unknown pool";
                break;
        case 2:
                o.flags = ALLOC_WRITECOMBINED, want = -EINVAL, what = "WRITECOMBINED";
                break;
        case 3:
                o.flags = 0x100, want = -EINVAL, what = "an unknown flag";
                break;
        case 4:
                o.flags = ALLOC_NOWAIT | ALLOC_NOFAIL, want = -EINVAL, what = "NOWAIT with NOFAIL";
                break;
        case 5:
                size = UINT64_MAX / 2, o.count = 3, want = -EOVERFLOW, what = "count x size past 2^64";
                break;
        case 6:
                size = 1ull << 40, want = -E2BIG, what = "more than the pool";
                break;
        case 7:
                o.align = 3 * PAGE, want = -EINVAL, what = "align not a power of two";
                break;
        case 8:
                o.low = 2 * PAGE, o.high = PAGE, want = -EINVAL, what = "low above high";
                break;
        case 9:
                pool = CHAOS_POOL_FPGA, o.flags = ALLOC_ZERO, want = -EINVAL, what = "ZERO in an fpga pool";
                break;
        case 10:
                o.name = "bad\001name", want = -EINVAL, what = "a name with a control character";
                break;
        default:
                pool = CHAOS_POOL_SMALL, size = CHAOS_SMALL_QUOTA + PAGE, want = -EDQUOT,
                what = "more than the whole quota";
                break;
        }
        e = alloc_region_new(t->c, pool, size, &o, &reg);
        count(OP_INVALID, e);
        lost(e);
        if (e == 0) {
                violation("allocd granted %s (region %#llx)", what, (unsigned long long)reg.id);
                alloc_region_free(t->c, reg.id);
        } else if (e != want) {
                violation("allocd answered %s with %s (%s), not %s", what, strerror(-e), alloc_last_error(),
                          strerror(-want));
        }
}

/* Status adds up: every pool's used and free bytes make its size. */
void op_status(struct thr *t) {
        struct alloc_status *s;
        int e = alloc_status(t->c, &s);

        count(OP_STATUS, e);
        lost(e);
        if (e < 0)
                return;
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                if (p->used + p->free != p->size || p->largest_free > p->free)
                        violation("status of pool %s: used %llu + free %llu != size %llu, or largest free %llu > free",
                                  p->name, (unsigned long long)p->used, (unsigned long long)p->free,
                                  (unsigned long long)p->size, (unsigned long long)p->largest_free);
        }
        alloc_status_free(s);
}

/* A Dump of under 100 regions is one packet, so one moment: no name twice, no region without a reference. */
void op_dump(struct thr *t) {
        struct alloc_dump *d;
        const char *pool = chance(&t->rng, 50) ? NULL : pool_names[below(&t->rng, NPOOLS)];
        int e = alloc_dump(t->c, pool, &d);

        count(OP_DUMP, e);
        lost(e);
        if (e < 0)
                return;
        for (size_t i = 0; i < d->nregions; i++) {
                const struct alloc_region_info *x = &d->regions[i];
                if (x->refs == 0 || x->refs < x->nholders)
                        violation("dump: region %#llx has %u references and %zu holders", (unsigned long long)x->id,
                                  x->refs, x->nholders);
                for (size_t j = 0; d->nregions < 100 && *x->name && j < i; j++)
                        if (!strcmp(d->regions[j].name, x->name))
                                violation("dump: regions %#llx and %#llx are both published as '%s'",
                                          (unsigned long long)d->regions[j].id, (unsigned long long)x->id, x->name);
        }
        alloc_dump_free(d);
}

/* A second connection of this process: a few regions, then a clean disconnect (or one later). */
void op_second(struct thr *t) {
        struct alloc_region reg;
        struct alloc_opts o = {.flags = ALLOC_NOWAIT};
        char name[32];
        int e;

        t->second = alloc_disconnect(t->second);
        e = alloc_connect(&t->second, sock_path, "chaos-second");
        count(OP_CONNECT, e);
        if (e < 0)
                return;
        for (int i = (int)below(&t->rng, 4); i > 0; i--) {
                int pool = pick_pool(&t->rng);
                e = alloc_region_new(t->second, pool_names[pool], pick_size(&t->rng, pool), &o, &reg);
                count(OP_ALLOC, e);
                if (e == 0 && reg.ptr)
                        memset(reg.ptr, 0xa5, reg.size < PAGE ? reg.size : PAGE);
        }
        if (chance(&t->rng, 40)) {
                name_of(&t->rng, name, sizeof(name));
                e = alloc_region_attach(t->second, name, NULL, &reg);
                count(OP_ATTACH, e);
        }
        if (chance(&t->rng, 60))
                t->second = alloc_disconnect(t->second);
}
