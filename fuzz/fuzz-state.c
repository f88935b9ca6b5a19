/* SPDX-License-Identifier: MIT */
/*
 * A state memfd (snapshot and log, daemon/state.c) from arbitrary bytes, read into a fresh core
 * with two pools.  Byte 0 says how: bit 0, put every checksum right first (the header's, the
 * body's, each log record's as the input's lengths cut them), so that the records themselves are
 * fuzzed and not only the checksums; bit 1, leave the last log record's wrong (a torn tail); bit 2,
 * leave pool c out of the core, so that a state with regions in it loses them (state-lost.c) and the
 * rest is restored.  The rest is the memfd's bytes.
 *
 * A refused state must leave the core as it was (but for its tables' capacity), with a message.  An accepted one must
 * hold what the core promises (core_check's recount), be written back and read again to the same regions and counts
 * (nothing lost the second time), and, once its placeholders are released, leave only PERSIST regions nobody holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-check.h"
#include "core-impl.h"
#include "fuzz-state.h"
#include "state.h"

void fuzz_state_add_pool(struct core *c, int i) {
        static struct span spans[3] = {{.base = 1ull << 32, .size = 1ull << 24},
                                       {.base = 1ull << 40, .size = 1ull << 20},
                                       {.base = 1ull << 44, .size = 1ull << 20}};
        struct pool_conf pc = {
                .kind = POOL_FPGA, .has_kind = true, .quantum = 4096, .nranges = 1, .mode = 0666, .ranges = &spans[i]};
        char err[256];

        snprintf(pc.name, sizeof(pc.name), "%c", 'a' + i);
        if (core_pool_add(c, &pc, err, sizeof(err)) < 0)
                check_fail("pool %s: %s", pc.name, err);
}

struct core *fuzz_state_core(void) {
        return fuzz_state_core_pools(3);
}

struct core *fuzz_state_core_pools(int npools) {
        /* A restore takes no limit into account: none is met here, so that core_check's are the state's. */
        struct limits l = {.max_connections = 64,
                           .max_connections_per_uid = 64,
                           .max_regions_per_connection = UINT32_MAX,
                           .max_waiters_per_connection = 4,
                           .max_waiters_per_uid = 1024,
                           .max_names = 1u << 20,
                           .max_names_per_uid = 1u << 20,
                           .max_persist_per_uid = 1u << 20,
                           .max_region_fds_per_uid = 1u << 20};
        struct core *c;

        if (core_new(&c, &l) < 0)
                check_fail("core_new");
        for (int i = 0; i < npools; i++)
                fuzz_state_add_pool(c, i);
        return c;
}

/* The checksums the input's bytes would have had from a writer. */
static void fix(uint8_t *b, size_t len, bool torn) {
        uint64_t body;
        uint32_t crc;
        size_t at, last = 0;

        if (len < STATE_HEADER_LEN)
                return;
        memcpy(&body, b + 16, 8);
        if (body > len - STATE_HEADER_LEN)
                body = len - STATE_HEADER_LEN;
        crc = state_crc32c(b + STATE_HEADER_LEN, body);
        memcpy(b + 32, &crc, 4);
        crc = state_crc32c(b, 36);
        memcpy(b + 36, &crc, 4);
        for (at = STATE_HEADER_LEN + body; len - at >= LOG_HEADER_LEN;) {
                uint16_t n;
                memcpy(&n, b + at + 6, 2);
                if (n > len - at - LOG_HEADER_LEN)
                        break;
                crc = state_crc32c(b + at + 4, 4 + (size_t)n);
                memcpy(b + at, &crc, 4);
                last = at;
                at += LOG_HEADER_LEN + n;
        }
        if (torn && last)
                b[last] ^= 1;
}

static void view(struct core *c, struct core_view *v) {
        struct client *cl;
        int i = 0;

        memset(v, 0, sizeof(*v));
        TAILQ_FOREACH(cl, core_clients(c), link) {
                if (i < CHECK_CLIENTS_MAX)
                        v->clients[i] = cl;
                i++;
        }
}

/* The same regions, ids, places, names, tags and references. */
static void same_regions(struct core *a, struct core *b) {
        uint32_t s = 0, t = 0;

        for (;; s++, t++) {
                bool more = core_region_next(a, &s);
                if (more != core_region_next(b, &t))
                        check_fail("a state written back and read again has %s regions", more ? "fewer" : "more");
                if (!more)
                        return;
                struct region_info x, y;
                core_region_info(a, s, &x);
                core_region_info(b, t, &y);
                if (x.id != y.id || x.offset != y.offset || x.size != y.size || x.flags != y.flags ||
                    x.refs != y.refs || x.uid != y.uid || x.creator != y.creator || x.persist != y.persist ||
                    (x.name == NULL) != (y.name == NULL) || (x.name && strcmp(x.name, y.name) != 0) ||
                    x.fmt.format != y.fmt.format || x.fmt.heap_size != y.fmt.heap_size || x.pool->id != y.pool->id)
                        check_fail("region %#llx is not the same written back and read again",
                                   (unsigned long long)x.id);
        }
}

static void drop_absent(struct core *c) {
        while (c->nabsent) {
                struct client *k = c->absent[--c->nabsent];
                core_client_remove(c, k);
                free(k);
        }
}

static void accepted(struct core *c, int npools, uint64_t serial) {
        struct core_view v;
        struct core_snap x, y;
        char err[512];
        uint64_t serial2;
        void *buf;
        size_t len;

        size_t uids = 0;
        for (const struct user *u = c->users; u; u = u->next)
                uids++;
        view(c, &v);
        if (c->nabsent <= CHECK_CLIENTS_MAX && uids <= 16) /* what core_check can count */
                core_check(c, &v, true);
        if (state_write(c, serial, &buf, &len) < 0)
                check_fail("an accepted state cannot be written back");
        struct core *d = fuzz_state_core_pools(npools);
        struct state_info info;
        if (state_read_info(d, buf, len, &serial2, &info, err, sizeof(err)) < 0)
                check_fail("an accepted state, written back, is refused: %s", err);
        if (info.lost_pools || info.lost_regions)
                check_fail("an accepted state, written back, loses regions: %s", info.lost);
        free(buf);
        if (serial2 != serial)
                check_fail("the next serial changed from %llu to %llu", (unsigned long long)serial,
                           (unsigned long long)serial2);
        same_regions(c, d);
        core_snap(c, &v, &x);
        view(d, &v);
        core_snap(d, &v, &y);
        core_snap_forget_capacity(&x);
        core_snap_forget_capacity(&y);
        core_snap_same(&x, &y, "writing the state back and reading it again");
        drop_absent(d);
        core_free(d);
        drop_absent(c);
        core_check_empty(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct core_view none = {0};
        struct core_snap before, after;
        struct state_info info;
        char err[512];
        uint64_t serial;
        uint8_t *buf;

        if (size < 1 || !(buf = malloc(size)))
                return 0;
        state_limit_slots(1u << 16);
        memcpy(buf, data + 1, size - 1);
        if (data[0] & 1)
                fix(buf, size - 1, data[0] & 2);
        int npools = data[0] & 4 ? 2 : 3;
        struct core *c = fuzz_state_core_pools(npools);
        core_snap(c, &none, &before);
        int e = state_read_info(c, buf, size - 1, &serial, &info, err, sizeof(err));
        if (e < 0) {
                if (!err[0])
                        check_fail("a refused state (%d) without a message", e);
                core_snap(c, &none, &after);
                core_snap_forget_capacity(&before); /* tables grown stay grown, as after a refused AllocBatch */
                core_snap_forget_capacity(&after);
                core_snap_same(&before, &after, err);
                if (core_nclients(c) || c->nabsent || c->absent)
                        check_fail("a refused state left clients behind");
        } else {
                if (info.torn > size)
                        check_fail("%llu bytes torn of %zu", (unsigned long long)info.torn, size);
                if (!info.lost_pools != !info.lost_regions || (info.lost_pools && !info.lost[0]))
                        check_fail("%u pools lost with %llu regions: '%s'", info.lost_pools,
                                   (unsigned long long)info.lost_regions, info.lost);
                accepted(c, npools, serial);
        }
        core_free(c);
        free(buf);
        return 0;
}
