/* SPDX-License-Identifier: MIT */
/*
 * A state read into a core where a pool cannot take its regions back (not configured, configured
 * otherwise, not available, its ranges moved): that pool's regions are lost, and only they
 * (daemon/state-lost.c, state-scan.c); a lie in a lost pool's records is still refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-check.h"
#include "core-impl.h"
#include "state-util.h"
#include "state.h"

/* How pool b is not as state_busy() had it: not configured, configured otherwise, or not available. */
enum pool_b { B_MISSING, B_CHANGED, B_UNAVAILABLE };

static struct core *core_with(enum pool_b how) {
        struct pool_conf hc = {.kind = POOL_HOST, .has_kind = true, .size = 32ull << 20, .mode = 0666, .numa_node = -1};
        struct core *c = state_core(how == B_UNAVAILABLE);
        char err[256];

        snprintf(hc.name, sizeof(hc.name), "b");
        cr_assert_eq(how == B_CHANGED ? core_pool_add(c, &hc, err, sizeof(err)) : 0, 0, "%s", err);
        if (how == B_UNAVAILABLE) { /* as a gpu pool whose driver failed to load: configured as it was */
                c->pools[1]->available = false;
                snprintf(c->pools[1]->reason, sizeof(c->pools[1]->reason), "driver/library version mismatch");
        }
        return c;
}

static void core_with_free(struct core *c) {
        state_drop_absent(c);
        if (c->npools > 1)
                c->pools[1]->available = true; /* its memory was made: freed as it was */
        core_free(c);
}

/*
 * state_busy()'s state read into b, whose pool b is not as it was: pool b's regions are lost, and only
 * they; the rest is as in a (ids, offsets, names, references), and the counts add up.
 */
/*
 * a's state (in *buf) read into b, where pool (0: "a", 1: "b") cannot take its regions back for why:
 * they are lost, and only they; the rest is as in a (ids, offsets, sizes, references, names).
 */
static void loses_only(struct core *a, struct core *b, uint32_t pool, const char *why, void **buf, size_t *len) {
        struct state_info info;
        char err[512];
        uint64_t serial, lost = 0;

        for (uint32_t s = 0; s < a->regions.slots.cap; s++)
                lost += (a->regions.tab[s].state & R_LIVE) && a->regions.tab[s].pool == pool;
        cr_assert_gt(lost, 0);
        cr_assert_eq(state_write(a, 77, buf, len), 0);
        cr_assert_eq(state_read_info(b, *buf, *len, &serial, &info, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(info.lost_pools, 1);
        cr_assert_eq(info.lost_regions, lost);
        cr_assert(!strncmp(info.lost, pool ? "b: " : "a: ", 3) && strstr(info.lost, why), "%s", info.lost);
        cr_assert(!info.same_pools, "a state with lost regions must not be appended to");
        for (uint32_t s = 0; s < a->regions.slots.cap; s++) {
                const struct region *x = &a->regions.tab[s];
                const struct region *y = s < b->regions.slots.cap ? &b->regions.tab[s] : NULL;
                if (!(x->state & R_LIVE))
                        continue;
                if (x->pool == pool) { /* lost: its slot free, and its id never another's */
                        cr_assert(!y || !(y->state & R_LIVE), "lost slot %u restored", s);
                        cr_assert(!y || y->gen >= x->gen, "slot %u: gen %u, was %u", s, y->gen, x->gen);
                        continue;
                }
                cr_assert(y && (y->state & R_LIVE), "slot %u not restored", s);
                cr_assert(y->gen == x->gen && y->offset == x->offset && y->size == x->size && y->refs == x->refs,
                          "slot %u restored otherwise", s);
                cr_assert_eq(!!y->name, !!x->name, "slot %u's name", s);
        }
}

static void loses_only_pool_b(enum pool_b how, const char *why) {
        struct core *a = state_busy(), *b = core_with(how);
        struct state_info info;
        char err[512];
        uint64_t serial;
        void *buf;
        size_t len;

        loses_only(a, b, 1, why, &buf, &len);
        cr_assert_lt(names_find(&b->names, "r8"), 0); /* state_busy() names regions of pool b, and "orphan" in a */
        cr_assert_geq(names_find(&b->names, "orphan"), 0);
        state_check(b);
        free(buf);

        /* What b restored is a whole state of its own: written and read again, nothing more is lost. */
        struct core *c = core_with(how);
        char *before = state_dump(b), *after;
        cr_assert_eq(state_write(b, 77, &buf, &len), 0);
        cr_assert_eq(state_read_info(c, buf, len, &serial, &info, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(info.lost_pools, 0);
        after = state_dump(c);
        cr_assert_str_eq(after, before);
        free(before);
        free(after);
        free(buf);
        core_with_free(c);
        core_with_free(b);
        state_gone(a);
}

Test(state, a_missing_pool_loses_only_its_regions) {
        loses_only_pool_b(B_MISSING, "not configured");
}

Test(state, a_changed_pool_loses_only_its_regions) {
        loses_only_pool_b(B_CHANGED, "configured otherwise");
}

Test(state, an_unavailable_pool_loses_only_its_regions) {
        loses_only_pool_b(B_UNAVAILABLE, "not available: driver/library version mismatch");
}

/* state_busy()'s pools with pool a's ranges as given (the same total, 64M), each start in units of 4G. */
static struct core *core_ranges(const uint64_t *starts, size_t n) {
        struct span sp[2];
        struct pool_conf a = {.kind = POOL_FPGA,
                              .has_kind = true,
                              .quantum = 4096,
                              .ranges = sp,
                              .nranges = n,
                              .mode = 0666,
                              .numa_node = -1};
        struct pool_conf b = {.kind = POOL_HOST, .has_kind = true, .size = 16ull << 20, .mode = 0666, .numa_node = -1};
        struct limits l = state_limits();
        struct core *c;
        char err[256];

        for (size_t i = 0; i < n; i++)
                sp[i] = (struct span){.base = starts[i] << 32, .size = (64ull << 20) / n};
        cr_assert_eq(core_new(&c, &l), 0);
        snprintf(a.name, sizeof(a.name), "a");
        snprintf(b.name, sizeof(b.name), "b");
        cr_assert_eq(core_pool_add(c, &a, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(core_pool_add(c, &b, err, sizeof(err)), 0, "%s", err);
        return c;
}

/*
 * Pool a's ranges moved, the total kept: its POOL record is as configured, but its regions lie
 * outside its spans now.  It loses them, and only them; ranges that still hold them lose nothing.
 */
Test(state, a_pool_whose_ranges_moved_loses_only_its_regions) {
        struct core *a = state_busy(), *b = core_ranges((const uint64_t[]){2}, 1),
                    *c = core_ranges((const uint64_t[]){1, 3}, 2);
        struct state_info info;
        char err[512];
        uint64_t serial;
        void *buf;
        size_t len;

        loses_only(a, b, 0, "its ranges no longer hold the region at 0x1000", &buf, &len);
        cr_assert_geq(names_find(&b->names, "r8"), 0); /* state_busy() names regions of pool b, and "orphan" in a */
        cr_assert_lt(names_find(&b->names, "orphan"), 0);
        /* Not state_check: b's host pool is fresh memory, without the falloc heaps of a's. */

        /* Split in two, the first half where it was: a's regions (a few MB) are all still in it. */
        cr_assert_eq(state_read_info(c, buf, len, &serial, &info, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(info.lost_pools, 0, "%s", info.lost);
        for (uint32_t s = 0; s < a->regions.slots.cap; s++) {
                const struct region *x = &a->regions.tab[s], *y = &c->regions.tab[s];
                if (x->state & R_LIVE)
                        cr_assert(s < c->regions.slots.cap && (y->state & R_LIVE) && y->offset == x->offset &&
                                          y->size == x->size && y->gen == x->gen,
                                  "slot %u not restored as it was", s);
        }
        free(buf);
        core_with_free(c);
        core_with_free(b);
        state_gone(a);
}

/* The lost pool's records are checked all the same: a lie in them refuses the state, changing nothing. */
Test(state, a_lie_in_a_lost_pool_is_refused) {
        struct core *a = state_core(true), *b = state_core(false);
        char err[512], *before = state_dump(b), *after;
        uint64_t serial;
        uint8_t *buf;
        size_t len, at = STATE_HEADER_LEN;

        state_connect(a, 0, 1000);
        state_alloc(a, 0, "a", 4096, 0, "kept", FMT_RAW);
        uint32_t lost = state_alloc(a, 0, "b", 4096, 0, "lost", FMT_RAW);
        cr_assert_eq(state_write(a, 100, (void **)&buf, &len), 0);
        for (uint32_t slot = UINT32_MAX;; at += 8) {
                uint16_t type;
                uint32_t n;
                memcpy(&type, buf + at, 2);
                memcpy(&n, buf + at + 4, 4);
                if (type == 7 /* REC_HOLD */ && (memcpy(&slot, buf + at + 8, 4), slot == lost))
                        break;
                at += n;
                cr_assert_lt(at, len, "no HOLD record of the lost region");
        }
        uint32_t count = 2; /* its REGION record says 1 */
        memcpy(buf + at + 12, &count, 4);
        state_checksum_again(buf, len);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), -EBADMSG);
        after = state_dump(b);
        cr_assert_str_eq(after, before);
        cr_assert_eq(b->nclients, 0);
        free(before);
        free(after);
        free(buf);
        core_free(b);
        core_client_remove(a, &state_cls[0]);
        core_free(a);
}

/* ---- reclaim (daemon/reclaim.c): a connection of the restored state comes back ---- */

/* The record of type type whose first u32 is first, in buf: its payload's offset. */
static size_t record_at(const uint8_t *buf, size_t len, uint16_t type, uint32_t first) {
        for (size_t at = STATE_HEADER_LEN; at + 12 <= len;) {
                uint16_t t;
                uint32_t n, f;
                memcpy(&t, buf + at, 2);
                memcpy(&n, buf + at + 4, 4);
                memcpy(&f, buf + at + 8, 4);
                if (t == type && f == first)
                        return at + 8;
                at += 8 + n;
        }
        cr_assert_fail("no record of type %u for %u", type, first);
        return 0;
}

/*
 * A pool made from its stored memory (restart.c adopts it only as the state's fd store names it) whose
 * records say otherwise is damage, not a pool configured otherwise: losing its regions would hand out
 * memory their holders still map and write, so the whole state is refused, as a state that cannot be
 * read is (restart.c then makes every pool of fresh memory).
 */
Test(state, a_lie_about_a_pool_of_the_stored_memory_refuses_the_state) {
        struct core *a = state_core(true), *b = state_core(true);
        char err[512], *before = state_dump(b), *after;
        uint64_t serial, offset = 64ull << 20; /* past pool b's 16M */
        uint32_t q = 1;                        /* a quantum of 1, below the pool's */
        uint8_t *buf;
        size_t len;

        cr_assert_geq(b->pools[1]->fd, 0);
        b->pools[1]->from_store = true;
        state_connect(a, 0, 1000);
        uint32_t slot = state_alloc(a, 0, "b", 4096, 0, "held", FMT_RAW);
        cr_assert_eq(state_write(a, 100, (void **)&buf, &len), 0);
        for (int lie = 0; lie < 2; lie++) {
                uint8_t *copy = malloc(len);
                memcpy(copy, buf, len);
                if (lie == 0)
                        memcpy(copy + record_at(copy, len, REC_POOL, 1) + 12, &q, 4);
                else
                        memcpy(copy + record_at(copy, len, REC_REGION, slot) + 8, &offset, 8);
                state_checksum_again(copy, len);
                cr_assert_lt(state_read(b, copy, len, &serial, err, sizeof(err)), 0, "lie %d accepted", lie);
                after = state_dump(b);
                cr_assert_str_eq(after, before);
                free(after);
                free(copy);
        }
        b->pools[1]->from_store = false;
        free(before);
        free(buf);
        core_free(b);
        core_client_remove(a, &state_cls[0]);
        core_free(a);
}
