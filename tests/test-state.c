/* SPDX-License-Identifier: MIT */
/*
 * The core's state written out and read back into a fresh core (daemon/state.c): the same regions,
 * ids, names, tags, holders and counts; every cut and every damaged byte refused, changing nothing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core-check.h"
#include "core-impl.h"
#include "keep.h"
#include "state-util.h"
#include "state.h"

static struct client cls[4];

static void connect(struct core *c, int i, uid_t uid) {
        struct core_result res;

        cls[i] = (struct client){.serial = 10 + (uint64_t)i, .uid = uid, .pid = 100 + i};
        snprintf(cls[i].name, sizeof(cls[i].name), "client%d", i);
        cr_assert_eq(core_client_add(c, &cls[i], &res), E_OK, "%s", res.msg);
}

static uint32_t alloc(struct core *c, int i, const char *pool, uint64_t size, uint32_t flags, const char *name,
                      uint32_t format) {
        struct alloc_request a = {.pool = pool,
                                  .size = size,
                                  .numa_node = -1,
                                  .flags = flags,
                                  .name = name,
                                  .format = format,
                                  .chunk_size = format ? 256 : 0};
        struct core_result res;
        uint32_t slot;

        cr_assert_eq(core_alloc(c, &cls[i], 0, &a, &slot, &res), GRANT_REGION, "%s", res.msg);
        if (flags & F_UNSEALED)
                cr_assert_eq(core_seal(c, &cls[i], region_id(&c->regions, slot), &res), E_OK, "%s", res.msg);
        return slot;
}

/* A core with many regions: named, PERSIST, tagged, shared, freed ones between, several uids. */
static struct core *busy(void) {
        struct core *c = state_core(true);
        struct core_result res;
        uint32_t s;

        connect(c, 0, 1000);
        connect(c, 1, 1001);
        connect(c, 2, 1000);
        for (int k = 0; k < 300; k++) {
                char name[32];
                snprintf(name, sizeof(name), "r%d", k);
                s = alloc(c, k % 3, k % 2 ? "a" : "b", 4096 * (1 + k % 7), k % 5 == 0 ? F_PERSIST : 0,
                          k % 4 == 0 ? name : NULL, k % 22 == 0 ? FMT_FALLOC : FMT_RAW);
                if (k % 3 == 0) {
                        struct attach_request at = {.name = name};
                        if (k % 4 == 0)
                                cr_assert_eq(core_attach(c, &cls[1], 0, &at, &s, &res), GRANT_REGION, "%s", res.msg);
                }
                if (k % 9 == 4) /* freed: a gap in the slots, a hole in the arena, a gen bumped */
                        cr_assert_eq(core_free_region(c, &cls[k % 3], region_id(&c->regions, s), &res), E_OK, "%s",
                                     res.msg);
        }
        connect(c, 3, 1002);
        s = alloc(c, 3, "a", 8192, F_PERSIST, "orphan", FMT_RAW);
        core_client_remove(c, &cls[3]); /* a PERSIST region nobody holds */
        return c;
}

static void gone(struct core *c) {
        for (int i = 0; i < 3; i++)
                core_client_remove(c, &cls[i]);
        core_free(c);
}

Test(state, a_round_trip_restores_everything_in_place) {
        struct core *a = busy(), *b = state_core(true);
        char err[512], *before = state_dump(a), *after;
        uint64_t serial = 0;
        int fd;

        cr_assert_eq(state_write_memfd(a, 77, &fd), 0);
        cr_assert_eq(state_read_fd(b, fd, &serial, err, sizeof(err)), 0, "%s", err);
        close(fd);
        cr_assert_eq(serial, 77);
        after = state_dump(b);
        cr_assert_str_eq(after, before);
        /* The pool's memory, as the fd store would hand it over: the heaps allocd wrote are in it. */
        memcpy(b->pools[1]->map, a->pools[1]->map, b->pools[1]->total);
        state_check(b);
        /* An id freed before is not handed out again; a new region takes the lowest free slot. */
        struct client n = {.serial = 77, .uid = 1000, .pid = 7};
        struct core_result res;
        struct alloc_request r = {.pool = "a", .size = 4096, .numa_node = -1};
        uint32_t s;
        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(core_alloc(b, &n, 0, &r, &s, &res), GRANT_REGION, "%s", res.msg);
        cr_assert_gt(b->regions.tab[s].gen, a->regions.tab[s].gen);
        /* Names are found; an absent holder's release frees what only it held. */
        cr_assert_geq(names_find(&b->names, "r8"), 0);
        core_client_remove(b, &n);
        state_drop_absent(b);
        state_check(b);
        cr_assert_eq(b->nclients, 0);
        free(before);
        free(after);
        gone(a);
        core_free(b);
}

/* One core for every refused state: each must leave it exactly as it was. */
static void refused(struct core *b, const char *before, const uint8_t *buf, size_t len, const char *what, size_t at) {
        char err[512], *after;
        uint64_t serial = 0;

        cr_assert_lt(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s %zu was accepted", what, at);
        cr_assert_neq(err[0], '\0');
        after = state_dump(b);
        cr_assert_str_eq(after, before, "%s %zu changed the core", what, at);
        cr_assert_eq(b->nclients, 0);
        free(after);
}

Test(state, every_cut_and_every_damaged_byte_is_refused) {
        struct core *a = state_core(true);
        void *buf;
        size_t len;

        connect(a, 0, 1000);
        connect(a, 1, 1001);
        for (int k = 0; k < 6; k++)
                alloc(a, k % 2, k == 4 ? "b" : "a", 4096, k == 2 ? F_PERSIST : 0, k == 3 ? "x" : NULL,
                      k == 4 ? FMT_FALLOC : 0);
        struct core *b = state_core(true);
        char *before = state_dump(b);
        cr_assert_eq(state_write(a, 5, &buf, &len), 0);
        for (size_t n = 0; n < len; n++)
                refused(b, before, buf, n, "a cut at", n);
        for (size_t i = 0; i < len; i++) {
                uint8_t *p = buf;
                p[i] ^= 0x5a;
                refused(b, before, buf, len, "a damaged byte at", i);
                p[i] ^= 0x5a;
        }
        state_check(b);
        free(before);
        free(buf);
        core_free(b);
        core_client_remove(a, &cls[0]); /* gone() would remove cls[2] too, which this core never had */
        core_client_remove(a, &cls[1]);
        core_free(a);
}

/* A region still being zeroed was never handed out: the state leaves it out, and its counts with it. */
Test(state, a_region_being_zeroed_is_left_out) {
        struct core *a = state_core(true), *b = state_core(true);
        struct alloc_request z = {
                .pool = "b", .size = 2 << 20, .numa_node = -1, .flags = F_ZERO | F_PERSIST, .name = "zeroing"};
        struct core_result res;
        char err[512];
        uint64_t serial;
        uint32_t s;
        void *buf;
        size_t len;

        connect(a, 0, 1000);
        alloc(a, 0, "b", 4096, F_PERSIST, "kept", FMT_RAW);
        cr_assert_eq(core_alloc(a, &cls[0], 0, &z, &s, &res), GRANT_ZEROING, "%s", res.msg);
        cr_assert_eq(state_write(a, 100, &buf, &len), 0);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s", err);
        cr_assert_geq(names_find(&b->names, "kept"), 0);
        cr_assert_lt(names_find(&b->names, "zeroing"), 0);
        cr_assert_eq(b->regions.slots.used, 1);
        state_check(b);
        free(buf);
        state_drop_absent(b);
        core_free(b);
        core_zero_done(a, &cls[0], s, 0, &res);
        core_client_remove(a, &cls[0]);
        core_free(a);
}

/* The body's checksum and the header's, made right again after a test changed the body. */
static void checksum_again(uint8_t *buf, size_t len) {
        uint32_t crc = state_crc32c(buf + STATE_HEADER_LEN, len - STATE_HEADER_LEN);

        memcpy(buf + 32, &crc, 4);
        crc = state_crc32c(buf, 36);
        memcpy(buf + 36, &crc, 4);
}

/* A state whose checksums are right but whose records lie: each lie refused, nothing read past the table. */
Test(state, a_checksummed_lie_is_refused) {
        struct core *a = state_core(true), *b = state_core(true);
        char err[512];
        uint64_t serial;
        uint8_t *buf;
        size_t len, at = STATE_HEADER_LEN;

        connect(a, 0, 1000);
        alloc(a, 0, "b", 4096, F_PERSIST, "kept", FMT_RAW);
        cr_assert_eq(state_write(a, 100, (void **)&buf, &len), 0);
        for (uint16_t type; memcpy(&type, buf + at, 2), type != 7 /* REC_HOLD */;) {
                uint32_t n;
                memcpy(&n, buf + at + 4, 4);
                at += 8 + n;
                cr_assert_lt(at, len, "no HOLD record");
        }
        uint32_t slot = 1u << 28;
        memcpy(buf + at + 8, &slot, 4);
        checksum_again(buf, len);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), -EBADMSG);
        cr_assert(strstr(err, "hold of slot 268435456"), "%s", err);
        cr_assert_eq(b->regions.slots.used, 0);
        cr_assert_eq(b->nclients, 0);
        free(buf);
        core_free(b);
        core_client_remove(a, &cls[0]);
        core_free(a);
}

/* The same for a falloc heap's geometry: a chunk count its size and chunk size do not give is refused. */
Test(state, a_checksummed_heap_geometry_lie_is_refused) {
        struct core *a = state_core(true), *b = state_core(true);
        const uint64_t heap[2] = {4096, 256}; /* heap_size, chunk_size; chunk_count follows */
        char err[512];
        uint64_t serial, count;
        uint8_t *buf, *at;
        size_t len;

        connect(a, 0, 1000);
        alloc(a, 0, "b", 4096, F_PERSIST, "heap", FMT_FALLOC);
        cr_assert_eq(state_write(a, 100, (void **)&buf, &len), 0);
        cr_assert_not_null(at = memmem(buf, len, heap, sizeof(heap)), "no heap record");
        memcpy(&count, at + sizeof(heap), 8);
        count++;
        memcpy(at + sizeof(heap), &count, 8);
        checksum_again(buf, len);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), -EBADMSG);
        cr_assert(strstr(err, "malformed"), "%s", err);
        cr_assert_eq(b->regions.slots.used, 0);
        free(buf);
        core_free(b);
        core_client_remove(a, &cls[0]);
        core_free(a);
}

/* How pool b is not as busy() had it: not configured, configured otherwise, or not available. */
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
 * busy()'s state read into b, whose pool b is not as it was: pool b's regions are lost, and only
 * they; the rest is as in a (ids, offsets, names, references), and the counts add up.
 */
static void loses_only_pool_b(enum pool_b how, const char *why) {
        struct core *a = busy(), *b = core_with(how);
        struct state_info info;
        char err[512];
        uint64_t serial, lost = 0;
        void *buf;
        size_t len;

        for (uint32_t s = 0; s < a->regions.slots.cap; s++)
                lost += (a->regions.tab[s].state & R_LIVE) && a->regions.tab[s].pool == 1;
        cr_assert_gt(lost, 0);
        cr_assert_eq(state_write(a, 77, &buf, &len), 0);
        cr_assert_eq(state_read_info(b, buf, len, &serial, &info, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(info.lost_pools, 1);
        cr_assert_eq(info.lost_regions, lost);
        cr_assert(!strncmp(info.lost, "b: ", 3) && strstr(info.lost, why), "%s", info.lost);
        cr_assert(!info.same_pools, "a state with lost regions must not be appended to");
        for (uint32_t s = 0; s < a->regions.slots.cap; s++) {
                const struct region *x = &a->regions.tab[s];
                const struct region *y = s < b->regions.slots.cap ? &b->regions.tab[s] : NULL;
                if (!(x->state & R_LIVE))
                        continue;
                if (x->pool == 1) { /* lost: its slot free, and its id never another's */
                        cr_assert(!y || !(y->state & R_LIVE), "lost slot %u restored", s);
                        cr_assert(!y || y->gen >= x->gen, "slot %u: gen %u, was %u", s, y->gen, x->gen);
                        continue;
                }
                cr_assert(y && (y->state & R_LIVE), "slot %u not restored", s);
                cr_assert(y->gen == x->gen && y->offset == x->offset && y->size == x->size && y->refs == x->refs,
                          "slot %u restored otherwise", s);
                cr_assert_eq(!!y->name, !!x->name, "slot %u's name", s);
        }
        cr_assert_lt(names_find(&b->names, "r8"), 0); /* busy() names regions of pool b, and "orphan" in a */
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
        gone(a);
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

/* busy()'s pools with pool a's ranges as given (the same total, 64M), each start in units of 4G. */
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
        struct core *a = busy(), *b = core_ranges((const uint64_t[]){2}, 1),
                    *c = core_ranges((const uint64_t[]){1, 3}, 2);
        struct state_info info;
        char err[512];
        uint64_t serial, lost = 0;
        void *buf;
        size_t len;

        for (uint32_t s = 0; s < a->regions.slots.cap; s++)
                lost += (a->regions.tab[s].state & R_LIVE) && a->regions.tab[s].pool == 0;
        cr_assert_gt(lost, 0);
        cr_assert_eq(state_write(a, 77, &buf, &len), 0);
        cr_assert_eq(state_read_info(b, buf, len, &serial, &info, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(info.lost_pools, 1);
        cr_assert_eq(info.lost_regions, lost);
        cr_assert(!strncmp(info.lost, "a: ", 3) && strstr(info.lost, "its ranges no longer hold the region at 0x1000"),
                  "%s", info.lost);
        cr_assert(!info.same_pools, "a state with lost regions must not be appended to");
        for (uint32_t s = 0; s < a->regions.slots.cap; s++) {
                const struct region *x = &a->regions.tab[s];
                const struct region *y = s < b->regions.slots.cap ? &b->regions.tab[s] : NULL;
                if (x->state & R_LIVE)
                        cr_assert_eq(y && (y->state & R_LIVE), x->pool == 1, "slot %u of pool %u", s, x->pool);
        }
        cr_assert_geq(names_find(&b->names, "r8"), 0); /* busy() names regions of pool b, and "orphan" in a */
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
        gone(a);
}

/* The lost pool's records are checked all the same: a lie in them refuses the state, changing nothing. */
Test(state, a_lie_in_a_lost_pool_is_refused) {
        struct core *a = state_core(true), *b = state_core(false);
        char err[512], *before = state_dump(b), *after;
        uint64_t serial;
        uint8_t *buf;
        size_t len, at = STATE_HEADER_LEN;

        connect(a, 0, 1000);
        alloc(a, 0, "a", 4096, 0, "kept", FMT_RAW);
        uint32_t lost = alloc(a, 0, "b", 4096, 0, "lost", FMT_RAW);
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
        checksum_again(buf, len);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), -EBADMSG);
        after = state_dump(b);
        cr_assert_str_eq(after, before);
        cr_assert_eq(b->nclients, 0);
        free(before);
        free(after);
        free(buf);
        core_free(b);
        core_client_remove(a, &cls[0]);
        core_free(a);
}

/* ---- reclaim (daemon/reclaim.c): a connection of the restored state comes back ---- */

/* busy()'s state, each client with a secret of its own, read into a fresh core. */
static struct core *restored(void) {
        struct core *a = busy(), *b = state_core(true);
        char err[512];
        uint64_t serial;
        void *buf;
        size_t len;

        for (int i = 0; i < 3; i++)
                memset(cls[i].secret, 0xa0 + i, sizeof(cls[i].secret));
        cr_assert_eq(state_write(a, 77, &buf, &len), 0);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s", err);
        free(buf);
        memcpy(b->pools[1]->map, a->pools[1]->map, b->pools[1]->total); /* the fd store's part: the same memory */
        gone(a);
        return b;
}

static int reclaim(struct core *b, struct client *n, uint64_t serial, uint8_t fill, size_t len) {
        uint8_t secret[CLIENT_SECRET_LEN + 1];
        struct core_result res;

        memset(secret, fill, sizeof(secret));
        return core_client_reclaim(b, n, serial, secret, len, &res);
}

Test(state, a_reclaim_takes_the_holds_and_the_serial_over) {
        struct core *b = restored();
        char *before = state_dump(b), *after;
        struct client n = {.serial = 500, .uid = 1000, .pid = 100}; /* cls[0]'s uid and pid: the dump reads the same */
        struct core_result res;
        uint32_t refs = 0;

        for (size_t i = 0; i < b->nabsent; i++)
                if (b->absent[i]->serial == 10)
                        refs = b->absent[i]->nrefs;
        cr_assert_gt(refs, 0);
        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN), E_OK);
        cr_assert_eq(n.serial, 10);
        cr_assert_eq(n.nrefs, refs);
        cr_assert_eq(n.secret[0], 0xa0);
        cr_assert_eq(core_nabsent(b), 2);
        after = state_dump(b);
        cr_assert_str_eq(after, before);
        state_check(b);
        /* Its own again: it frees what it made, and the list stays in serial order for Status. */
        cr_assert_eq(TAILQ_FIRST(core_clients(b)), &n);
        uint32_t s = b->regions.holds.tab[n.holds].slot;
        cr_assert_eq(core_detach(b, &n, region_id(&b->regions, s), &res), E_OK, "%s", res.msg);
        state_check(b);
        core_client_remove(b, &n);
        free(before);
        free(after);
        core_free(b);
}

/* Placeholders are no connections: a uid at its limit before the restart gets in again to reclaim. */
/* The kept state (keep.c) follows a reclaim: the placeholder's record becomes the connection's, its holds stay. */
Test(state, a_reclaim_is_kept) {
        struct core *b = restored(), *c = state_core(true);
        struct client n = {.serial = 500, .uid = 1000, .pid = 4242};
        struct core_result res;
        struct keep *k;
        uint64_t serial;
        char err[512];

        cr_assert_eq(keep_new(&k, b, 1000, 1), 0);
        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN), E_OK);
        char *want = state_dump(b);
        cr_assert_eq(state_read_fd(c, keep_fd(k), &serial, err, sizeof(err)), 0, "%s", err);
        char *got = state_dump(c);
        cr_assert_str_eq(got, want);
        cr_assert_eq(c->nabsent, 3);
        for (size_t i = 0; i < c->nabsent; i++)
                if (c->absent[i]->serial == 10)
                        cr_assert_eq(c->absent[i]->pid, 4242);
        free(want);
        free(got);
        state_drop_absent(c);
        core_free(c);
        core_client_remove(b, &n);
        keep_free(k);
        core_free(b);
}

Test(state, placeholders_do_not_count_against_connection_limits) {
        struct core *b = restored();
        struct limits l = state_limits();
        struct client n = {.serial = 500, .uid = 1000, .pid = 100}, m = {.serial = 501, .uid = 1000, .pid = 102};
        struct core_result res;

        l.max_connections = 2;
        l.max_connections_per_uid = 1; /* uid 1000 had two connections: cls[0] and cls[2] */
        core_set_limits(b, &l);
        cr_assert_eq(core_client_add(b, &n, &res), E_OK, "%s", res.msg);
        cr_assert_eq(core_client_add(b, &m, &res), E_LIMIT); /* n is a connection */
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN), E_OK);
        core_client_remove(b, &n);
        core_free(b);
}

Test(state, a_wrong_secret_uid_or_serial_is_refused_changing_nothing) {
        struct core *b = restored();
        char *before = state_dump(b), *after;
        struct client n = {.serial = 500, .uid = 1000, .pid = 100}, m = {.serial = 501, .uid = 1001, .pid = 101};
        struct core_result res;

        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(core_client_add(b, &m, &res), E_OK);
        cr_assert_eq(reclaim(b, &n, 10, 0xa1, CLIENT_SECRET_LEN), E_DENIED); /* cls[1]'s secret */
        cr_assert_eq(reclaim(b, &m, 10, 0xa0, CLIENT_SECRET_LEN), E_DENIED); /* the secret, another uid */
        cr_assert_eq(reclaim(b, &n, 99, 0xa0, CLIENT_SECRET_LEN), E_NOT_FOUND);
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN - 1), E_INVALID);
        cr_assert_eq(core_client_reclaim(b, &n, 12, (const uint8_t[16]){0}, 16, &res), E_DENIED);
        cr_assert_eq(n.serial, 500);
        cr_assert_eq(n.nrefs + m.nrefs, 0);
        cr_assert_eq(core_nabsent(b), 3);
        core_client_remove(b, &n);
        core_client_remove(b, &m);
        after = state_dump(b);
        cr_assert_str_eq(after, before);
        state_check(b);
        free(before);
        free(after);
        core_free(b);
}

Test(state, the_grace_time_releases_what_no_one_reclaimed) {
        struct core *b = restored();
        struct absent_info info;
        struct core_stats st;
        uint64_t refs = 0;
        int n = 0;

        while (core_absent_release(b, &info)) {
                cr_assert(info.serial >= 10 && info.serial <= 12, "%llu", (unsigned long long)info.serial);
                char want[16];
                snprintf(want, sizeof(want), "client%d", (int)(info.serial - 10));
                cr_assert_str_eq(info.name, want);
                refs += info.refs;
                n++;
        }
        cr_assert_eq(n, 3);
        cr_assert_gt(refs, 0);
        cr_assert_eq(b->nclients, 0);
        core_stats(b, &st);
        cr_assert_eq(st.holds, 0);
        state_check(b);
        for (uint32_t s = 0; core_region_next(b, &s); s++) /* what is left is PERSIST, held by no one */
                cr_assert(b->regions.tab[s].state & R_PERSIST);
        core_free(b);
}

Test(state, held_lists_a_connections_regions_a_page_at_a_time) {
        struct core *c = state_core(false);
        struct held_page *page = malloc(sizeof(*page));
        struct core_result res;
        uint64_t after = 0, seen = 0, last = 0;
        uint32_t first;

        connect(c, 0, 1000);
        connect(c, 1, 1000);
        first = alloc(c, 0, "a", 4096, 0, "twice", FMT_RAW);
        for (int k = 0; k < HELD_PAGE + 500; k++)
                alloc(c, k % 7 ? 0 : 1, "a", 4096, 0, NULL, FMT_RAW);
        struct attach_request at = {.name = "twice"};
        uint32_t s;
        cr_assert_eq(core_attach(c, &cls[0], 0, &at, &s, &res), GRANT_REGION);
        do {
                cr_assert_eq(core_client_held(c, &cls[0], after, page, &res), E_OK);
                for (size_t i = 0; i < page->n; i++) {
                        cr_assert_gt((uint32_t)page->ids[i] + 1, (uint32_t)last + (seen ? 1 : 0));
                        cr_assert_neq(region_hold_of(c, (uint32_t)page->ids[i], &cls[0]), HOLD_NONE);
                        cr_assert_eq(page->counts[i], (uint32_t)page->ids[i] == first ? 2 : 1);
                        last = page->ids[i];
                        seen++;
                }
                after = page->n ? page->ids[page->n - 1] : 0;
        } while (page->more);
        cr_assert_eq(seen + 1, cls[0].nrefs);
        free(page);
        core_client_remove(c, &cls[0]);
        core_client_remove(c, &cls[1]);
        core_free(c);
}
