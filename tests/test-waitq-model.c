/* SPDX-License-Identifier: MIT */
/*
 * The waiters' skip (waitq.c, room_came_back) against the arena itself: random Allocs, Frees and
 * hang-ups in pools at 0, in the middle and at the top of the 64-bit space, with windows, phases,
 * boundaries and every policy; after each core_run, no waiter of a pool that is not ready may fit.
 * A waiter skipped wrongly would wait while its room sits free until some unrelated free, or for
 * ever (NOFAIL): the one test of the skip that does not depend on a layout someone thought of.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"

#define K UINT64_C(1024)
#define NPOOLS 3
#define NCLIENTS 12
#define NLIVE 4096

static struct core *core;
static uint64_t rng, serial;
static struct client *clients[NCLIENTS];
static struct client *made[1024]; /* every client made, freed at the end (outcomes may name them) */
static struct {
        struct client *cl;
        uint64_t id;
} live[NLIVE];
static int nlive;

/* base: 0, the middle, and the top (its last byte is 2^64 - quantum - 1: range_add refuses an end at 2^64). */
static const struct {
        const char *name;
        uint64_t base, size, quantum;
} pools[NPOOLS] = {
        {"low", 0, 256 * K, 4 * K},
        {"top", (UINT64_MAX - 64 * K) & ~(4 * K - 1), 64 * K, 4 * K},
        {"mid", UINT64_C(1) << 40, 128 * K, 16 * K},
};

static uint64_t pick(uint64_t n) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return n ? rng % n : 0;
}

static struct client *client_new(void) {
        struct client *cl = calloc(1, sizeof(*cl));
        struct core_result res;

        cr_assert(cl && serial < 1024);
        cl->serial = ++serial;
        cl->uid = 1 + (uid_t)pick(3);
        cl->pid = 1000 + (pid_t)serial;
        made[serial - 1] = cl;
        cr_assert_eq(core_client_add(core, cl, &res), E_OK, "%s", res.msg);
        return cl;
}

static void keep(struct client *cl, uint32_t slot) {
        struct region_info ri;

        if (nlive == NLIVE)
                return;
        core_region_info(core, slot, &ri);
        live[nlive].cl = cl;
        live[nlive++].id = ri.id;
}

/* A request of any shape the protocol allows in pool i, most of them a few quanta. */
static void random_alloc(long step) {
        int i = (int)pick(NPOOLS);
        uint64_t q = pools[i].quantum, base = pools[i].base, size = pools[i].size;
        struct alloc_request a = {.pool = pools[i].name, .numa_node = -1, .flags = pick(2) ? F_NOFAIL : 0};
        struct client *cl = clients[pick(NCLIENTS)];
        struct core_result res;
        uint32_t slot;

        a.size = pick(4) ? q * (1 + pick(6)) - pick(q) : 1 + pick(size / 4);
        if (!pick(3))
                a.req.align = UINT64_C(1) << (12 + pick(5));
        if (!pick(4))
                a.req.phase = pick((a.req.align > q ? a.req.align : q) / q) * q;
        if (!pick(4))
                a.req.boundary = UINT64_C(1) << (14 + pick(4));
        if (!pick(3))
                a.req.low = pick(5) ? base + pick(size / q) * q - (pick(2) ? pick(q) : 0) : 0;
        if (!pick(3)) {
                a.req.high = a.req.low + q + pick(size / 2) + (pick(2) ? pick(q) : 0);
                if (a.req.high < a.req.low || !pick(5))
                        a.req.high = UINT64_MAX - pick(3) * q;
        }
        a.req.policy = (enum range_policy)pick(3);
        if (core_alloc(core, cl, (uint64_t)step, &a, &slot, &res) == GRANT_REGION)
                keep(cl, slot);
}

static void check(long step) {
        for (size_t i = 0; i < core->npools; i++) {
                struct pool *p = core->pools[i];
                const struct waiter *w;

                if (p->ready)
                        continue;
                TAILQ_FOREACH(w, &p->waiters, by_pool) {
                        const struct range_req *r = &w->args.req;
                        cr_assert_eq(range_fits(p->arena, w->args.size, r), -ENOSPC,
                                     "step %ld: pool %s is not ready, and a waiter fits: size %" PRIu64
                                     " align %#" PRIx64 " phase %#" PRIx64 " boundary %#" PRIx64 " low %#" PRIx64
                                     " high %#" PRIx64 " policy %d",
                                     step, p->conf.name, w->args.size, r->align, r->phase, r->boundary, r->low, r->high,
                                     (int)r->policy);
                }
        }
}

/* allocs: percent of steps that allocate (the rest mostly free), so that pools run full or stay roomy. */
static void run(uint64_t seed, long steps, int allocs, uint64_t slice_ns) {
        struct limits l = {
                .max_connections = 1000,
                .max_connections_per_uid = 1000,
                .max_regions_per_connection = 1u << 20,
                .max_waiters_per_connection = 64,
                .max_waiters_per_uid = 1024,
                .max_names = 1024,
                .max_names_per_uid = 1024,
                .max_persist_per_uid = 1024,
                .max_region_fds_per_uid = 1024,
                .wait_timeout_ms = 50000,
                .hello_timeout_ms = 1000,
        };
        struct core_done d;
        char err[256];

        rng = seed * UINT64_C(0x9E3779B97F4A7C15) | 1;
        serial = 0;
        nlive = 0;
        cr_assert_eq(core_new(&core, &l), 0);
        core_set_slice(core, slice_ns); /* 1: every pass breaks off after one try, and goes on next run */
        for (int i = 0; i < NPOOLS; i++) {
                struct span s = {.base = pools[i].base, .size = pools[i].size};
                struct pool_conf pc = {.kind = POOL_FPGA,
                                       .has_kind = true,
                                       .quantum = pools[i].quantum,
                                       .ranges = &s,
                                       .nranges = 1,
                                       .mode = 0666,
                                       .numa_node = -1};
                snprintf(pc.name, sizeof(pc.name), "%s", pools[i].name);
                cr_assert_eq(core_pool_add(core, &pc, err, sizeof(err)), 0, "%s", err);
        }
        for (int i = 0; i < NCLIENTS; i++)
                clients[i] = client_new();
        for (long step = 0; step < steps; step++) {
                int op = (int)pick(100);
                if (op < allocs) {
                        random_alloc(step);
                } else if (op < 92 && nlive) {
                        int k = (int)pick((uint64_t)nlive);
                        struct core_result res;
                        core_free_region(core, live[k].cl, live[k].id, &res);
                        live[k] = live[--nlive];
                } else if (op < 94 && serial < 1024) {
                        /* A hang-up: its regions come back and its waiters go, in one step. */
                        int c = (int)pick(NCLIENTS);
                        core_client_remove(core, clients[c]);
                        for (int k = 0; k < nlive;)
                                if (live[k].cl == clients[c])
                                        live[k] = live[--nlive];
                                else
                                        k++;
                        clients[c] = client_new();
                } else if (op < 96) {
                        core->now += 1000 * pick(30); /* some waiters time out */
                }
                if (pick(3))
                        continue;
                core_run(core);
                while (core_done_pop(core, &d))
                        if (d.grant == GRANT_REGION)
                                keep(d.client, d.slot);
                check(step);
        }
        cr_assert_gt(core->waitq.skips, 0, "no waiter was ever skipped: the test tests nothing");
        core_free(core);
        for (uint64_t i = 0; i < serial; i++)
                free(made[i]);
}

Test(waitq_model, no_waiter_waits_while_its_room_is_free) {
        for (uint64_t seed = 1; seed <= 4; seed++)
                for (int allocs = 55; allocs <= 85; allocs += 15)
                        run(seed, 30000, allocs, UINT64_MAX);
}

Test(waitq_model, nor_when_passes_break_off) {
        for (uint64_t seed = 5; seed <= 8; seed++)
                for (int allocs = 55; allocs <= 85; allocs += 15)
                        run(seed, 30000, allocs, 1);
}
