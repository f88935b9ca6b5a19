/* SPDX-License-Identifier: MIT */
/*
 * The daemon's core in-process, without a socket: the costs the restructure
 * removed are counted here (waiter tries, hold records, table bytes), not
 * timed, and each test is the regression test of one fault the old core had.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define K UINT64_C(1024)

static struct core *core;
static uint64_t serial;
static struct client *clients[1024]; /* every client a test made, freed at teardown */

static struct limits test_limits(void) {
        return (struct limits){
                .max_connections = 100000,
                .max_connections_per_uid = 100000,
                .max_regions_per_connection = 1u << 24,
                .max_waiters_per_connection = 64,
                .max_waiters_per_uid = 1024,
                .max_names = 1u << 20,
                .max_names_per_uid = 1u << 20,
                .max_persist_per_uid = 1u << 20,
                .max_region_fds_per_uid = 1u << 20,
                .wait_timeout_ms = 1000,
                .hello_timeout_ms = 1000,
        };
}

static void setup_with(const struct limits *l) {
        cr_assert_eq(core_new(&core, l), 0);
        core_set_slice(core, UINT64_MAX); /* a run does all it can, whatever the machine's load; tests set less */
        serial = 0;
}

static void setup(void) {
        struct limits l = test_limits();
        setup_with(&l);
}

static void teardown(void) {
        core_free(core);
        core = NULL;
        for (uint64_t i = 0; i < serial && i < 1024; i++)
                free(clients[i]);
}

static void add_fpga(const char *name, uint64_t size) {
        struct span s = {.base = 1ull << 32, .size = size};
        struct pool_conf pc = {.kind = POOL_FPGA,
                               .has_kind = true,
                               .quantum = 4096,
                               .ranges = &s,
                               .nranges = 1,
                               .mode = 0666,
                               .numa_node = -1};
        char err[256];

        snprintf(pc.name, sizeof(pc.name), "%s", name);
        cr_assert_eq(core_pool_add(core, &pc, err, sizeof(err)), 0, "%s", err);
}

static void add_host(const char *name, uint64_t size) {
        struct pool_conf pc = {.kind = POOL_HOST, .has_kind = true, .size = size, .mode = 0666, .numa_node = -1};
        char err[256];

        snprintf(pc.name, sizeof(pc.name), "%s", name);
        cr_assert_eq(core_pool_add(core, &pc, err, sizeof(err)), 0, "%s", err);
}

static struct client *client(uid_t uid) {
        struct client *cl = calloc(1, sizeof(*cl));
        struct core_result res;

        cl->serial = ++serial;
        cl->uid = uid;
        cl->pid = 1000 + (pid_t)serial;
        cr_assert_lt(serial, 1024);
        clients[serial - 1] = cl;
        cr_assert_eq(core_client_add(core, cl, &res), E_OK, "%s", res.msg);
        return cl;
}

/* The client goes; its memory stays until teardown (outcomes may still name it). */
static void bye(struct client *cl) {
        core_client_remove(core, cl);
}

static int alloc(struct client *cl, const char *pool, uint64_t size, uint32_t flags, const char *name, uint32_t *slot) {
        struct alloc_request a = {.pool = pool, .size = size, .numa_node = -1, .flags = flags, .name = name};
        struct core_result res;
        uint32_t s = UINT32_MAX;
        int g = core_alloc(core, cl, 0, &a, &s, &res);

        if (slot)
                *slot = s;
        return g == GRANT_NONE ? -res.code : g;
}

static uint64_t id_of(uint32_t slot) {
        struct region_info r;
        core_region_info(core, slot, &r);
        return r.id;
}

static struct core_stats stats(void) {
        struct core_stats st;
        core_stats(core, &st);
        return st;
}

static unsigned drain(int *errors) {
        struct core_done d;
        unsigned n = 0;

        while (core_done_pop(core, &d)) {
                n++;
                if (d.grant == GRANT_NONE && errors)
                        (*errors)++;
        }
        return n;
}

TestSuite(core, .init = setup, .fini = teardown, .timeout = 120);

/* Fault 3: a hang-up that returns N regions retried every waiter N times. */
Test(core, a_hangup_retries_each_waiter_once) {
        enum { N = 20000, W = 400 };
        struct client *a, *w[W];

        add_fpga("f", N * 4 * K);
        a = client(1);
        for (int i = 0; i < N; i++)
                cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, NULL), GRANT_REGION);
        for (int i = 0; i < W; i++) {
                w[i] = client(2);
                cr_assert_eq(alloc(w[i], "f", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        }
        cr_assert_eq(stats().waiters, W);
        bye(a);
        cr_assert_eq(stats().tries, 0, "nothing is retried inside the hang-up");
        core_run(core);
        cr_assert_eq(drain(NULL), W);
        cr_assert_leq(stats().tries, W, "%llu tries for %d waiters", (unsigned long long)stats().tries, W);
        for (int i = 0; i < W; i++)
                bye(w[i]);
}

/* Fault 6: waiters of one pool cost nothing to another pool's frees. */
Test(core, another_pools_waiters_are_not_tried) {
        struct client *a = client(1), *b = client(2);
        uint32_t slot;

        add_fpga("busy", 4 * K);
        add_fpga("other", 64 * K);
        cr_assert_eq(alloc(a, "busy", 4 * K, 0, NULL, NULL), GRANT_REGION);
        for (int i = 0; i < 64; i++)
                cr_assert_eq(alloc(b, "busy", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        for (int i = 0; i < 1000; i++) {
                struct core_result res;
                cr_assert_eq(alloc(a, "other", 4 * K, 0, NULL, &slot), GRANT_REGION);
                cr_assert_eq(core_free_region(core, a, id_of(slot), &res), E_OK);
                core_run(core);
        }
        cr_assert_eq(stats().tries, 0);
        bye(b);
        bye(a);
}

/* A waiter larger than the largest free range is skipped without a try; one that fits is granted. */
Test(core, waiters_too_large_are_skipped_and_fifo_holds) {
        struct client *a = client(1), *big = client(2), *small = client(3);
        uint32_t s1, s2;
        struct core_done d;
        struct core_result res;

        add_fpga("f", 16 * K);
        cr_assert_eq(alloc(a, "f", 8 * K, 0, NULL, &s1), GRANT_REGION);
        cr_assert_eq(alloc(a, "f", 8 * K, 0, NULL, &s2), GRANT_REGION);
        cr_assert_eq(alloc(big, "f", 16 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        cr_assert_eq(alloc(small, "f", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        cr_assert_eq(core_free_region(core, a, id_of(s1), &res), E_OK);
        core_run(core);
        cr_assert(core_done_pop(core, &d));
        cr_assert_eq(d.client, small);
        cr_assert_eq(d.grant, GRANT_REGION);
        cr_assert_not(core_done_pop(core, &d));
        cr_assert_eq(stats().tries, 1, "the 16 KiB waiter cannot fit in 8 KiB and costs no try");
        bye(big);
        bye(small);
        bye(a);
}

/*
 * Waiters costly to try must not hold up the loop: core_run stops after its slice (here none: one
 * try a call) and the next call goes on where it stopped; room that comes back meanwhile has the
 * waiters the broken-off pass tried already tried again.
 */
Test(core, a_pass_broken_off_goes_on_in_the_next_run) {
        struct client *a = client(1), *w[6];
        uint32_t s[4];
        struct core_result res;
        struct core_done d;

        add_fpga("f", 16 * K);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &s[i]), GRANT_REGION);
        for (int i = 0; i < 3; i++) {
                w[i] = client(2);
                cr_assert_eq(alloc(w[i], "f", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        }
        core_set_slice(core, 0);
        for (int i = 0; i < 3; i++)
                cr_assert_eq(core_free_region(core, a, id_of(s[i]), &res), E_OK);
        for (int i = 0; i < 3; i++) {
                core_run(core);
                cr_assert(core_done_pop(core, &d), "run %d granted nothing", i);
                cr_assert_eq(d.client, w[i], "run %d: not the oldest waiter", i);
                cr_assert_not(core_done_pop(core, &d), "run %d went past its slice", i);
                cr_assert_eq(core_yielded(core), i < 2, "run %d", i);
        }
        cr_assert_not(core_pending(core));
        cr_assert_eq(stats().slices, 2);

        /* The pool is full again.  An 8 KiB waiter, then two of 4 KiB. */
        w[3] = client(3), w[4] = client(3), w[5] = client(3);
        cr_assert_eq(alloc(w[3], "f", 8 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        cr_assert_eq(alloc(w[4], "f", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        cr_assert_eq(alloc(w[5], "f", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        bye(w[0]); /* 4 KiB back: the 8 KiB one is skipped, the first 4 KiB one granted, the pass broken off */
        core_run(core);
        cr_assert(core_done_pop(core, &d) && d.client == w[4]);
        cr_assert(core_yielded(core));
        bye(a); /* and w[1], w[2]: 12 KiB back behind the broken-off pass, room for the 8 KiB one too */
        bye(w[1]);
        bye(w[2]);
        bool granted[6] = {0};
        for (int i = 0; i < 10 && core_pending(core); i++) {
                core_run(core);
                while (core_done_pop(core, &d))
                        for (int j = 3; j < 6; j++)
                                granted[j] |= d.client == w[j] && d.grant == GRANT_REGION;
        }
        cr_assert(granted[5], "the waiter the pass stopped at was not granted");
        cr_assert(granted[3], "the waiter before where the pass stopped was not tried again");
        cr_assert_eq(stats().waiters, 0);
        for (int i = 3; i < 6; i++)
                bye(w[i]);
}

/*
 * A waiter the arena had no room for is tried again only against what came back since: a free
 * that cannot hold it costs no search of the pool's other holes (skips), one that can grants it,
 * and what a try checks besides room (here a name taken meanwhile) still ends the waiter.
 */
Test(core, a_waiter_is_tried_against_what_came_back) {
        struct client *a = client(1), *w = client(2), *n = client(2), *b = client(3);
        struct alloc_request r = {
                .pool = "f", .size = 8 * K, .req = {.align = 8 * K}, .numa_node = -1, .flags = F_NOFAIL};
        uint32_t s[128], slot;
        struct core_result res;
        struct core_done d;

        add_fpga("f", 512 * K);
        add_fpga("g", 64 * K);
        for (int i = 0; i < 128; i++)
                cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &s[i]), GRANT_REGION);
        /* Holes of 8 KiB at 4K mod 8K (4K, 20K, 36K): none holds 8 KiB aligned to 8 KiB. */
        for (int i = 1; i < 12; i += 4) {
                cr_assert_eq(core_free_region(core, a, id_of(s[i]), &res), E_OK);
                cr_assert_eq(core_free_region(core, a, id_of(s[i + 1]), &res), E_OK);
        }
        cr_assert_eq(core_alloc(core, w, 0, &r, &slot, &res), GRANT_WAITING);
        r.name = "job";
        cr_assert_eq(core_alloc(core, n, 0, &r, &slot, &res), GRANT_WAITING);

        struct core_stats before = stats();
        cr_assert_eq(core_free_region(core, a, id_of(s[127]), &res), E_OK); /* its neighbour is held */
        core_run(core);
        cr_assert_not(core_done_pop(core, &d), "a waiter was answered: %s", d.res.msg);
        cr_assert_eq(stats().skips - before.skips, 2, "the waiters were searched for again");
        /* More single 4 KiB holes than the log has entries: merged, still none searched for in vain. */
        for (int i = 125; i > 125 - 2 * 24; i -= 2)
                cr_assert_eq(core_free_region(core, a, id_of(s[i]), &res), E_OK);
        core_run(core);
        cr_assert_not(core_done_pop(core, &d), "a waiter was answered: %s", d.res.msg);
        cr_assert_eq(stats().skips - before.skips, 4, "the waiters were searched for again");

        cr_assert_eq(alloc(b, "g", 4 * K, 0, "job", NULL), GRANT_REGION); /* the named waiter's name, taken */
        cr_assert_eq(core_free_region(core, a, id_of(s[3]), &res), E_OK); /* 12K: 4K-16K holds 8K-16K */
        core_run(core);
        cr_assert(core_done_pop(core, &d) && d.client == w && d.grant == GRANT_REGION, "the waiter was not granted");
        cr_assert(core_done_pop(core, &d) && d.client == n && d.grant == GRANT_NONE && d.res.code == E_EXISTS,
                  "the named waiter was not refused");
        cr_assert_not(core_done_pop(core, &d));

        /* Room that comes back among merged entries is found too. */
        r.name = NULL;
        cr_assert_eq(core_alloc(core, w, 0, &r, &slot, &res), GRANT_WAITING);
        for (int i = 30; i < 30 + 2 * 20; i += 2)
                cr_assert_eq(core_free_region(core, a, id_of(s[i]), &res), E_OK);
        cr_assert_eq(core_free_region(core, a, id_of(s[126]), &res), E_OK); /* 504K: 500K-512K is free now */
        core_run(core);
        cr_assert(core_done_pop(core, &d) && d.client == w && d.grant == GRANT_REGION, "the waiter was not granted");
        bye(w);
        bye(n);
        bye(b);
        bye(a);
}

/*
 * A pool left on the ready list behind a broken-off pass may drain, empty and be retired meanwhile, and a
 * pool made under its name then takes its place: the old one must leave the list before it goes.
 */
Test(core, a_pool_replaced_while_a_pass_is_broken_off_leaves_the_ready_list) {
        struct client *a = client(1), *b = client(2), *w[3];
        uint32_t s[4], sb;
        struct core_result res;

        add_fpga("a", 16 * K);
        add_fpga("b", 16 * K);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc(a, "a", 4 * K, 0, NULL, &s[i]), GRANT_REGION);
        for (int i = 0; i < 3; i++) {
                w[i] = client(3);
                cr_assert_eq(alloc(w[i], "a", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        }
        cr_assert_eq(alloc(b, "b", 16 * K, 0, NULL, &sb), GRANT_REGION);
        cr_assert_eq(alloc(b, "b", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        core_set_slice(core, 0);
        cr_assert_eq(core_free_region(core, a, id_of(s[0]), &res), E_OK);
        cr_assert_eq(core_free_region(core, a, id_of(s[1]), &res), E_OK); /* a is ready first, then b */
        cr_assert_eq(core_free_region(core, b, id_of(sb), &res), E_OK);
        struct pool *pb = core_pool_find(core, "b");
        core_pool_drain(core, pb, "taken out", true); /* b's waiter is refused; b stays on the list */
        core_run(core);
        cr_assert(core_yielded(core), "a's pass was not broken off");
        drain(NULL);
        cr_assert(core_pool_retire(pb));
        add_fpga("b", 32 * K); /* in b's place: the old b goes */
        for (int i = 0; i < 10 && core_pending(core); i++) {
                core_run(core);
                drain(NULL);
        }
        cr_assert_not(core_pending(core));
        for (int i = 0; i < 3; i++)
                bye(w[i]);
        bye(b);
        bye(a);
}

/*
 * A pool whose waiters keep getting room back, each pass broken off, must not keep another pool's
 * waiters from theirs: the next run begins with the other pool.
 */
Test(core, a_pool_whose_pass_breaks_off_does_not_starve_the_others) {
        struct client *a = client(1), *b = client(2), *wa[8], *wb = client(4);
        uint32_t sa[4], sb;
        struct core_result res;
        struct core_done d;
        bool b_granted = false;

        add_fpga("a", 16 * K);
        add_fpga("b", 4 * K);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc(a, "a", 4 * K, 0, NULL, &sa[i]), GRANT_REGION);
        cr_assert_eq(alloc(b, "b", 4 * K, 0, NULL, &sb), GRANT_REGION);
        for (int i = 0; i < 8; i++) {
                wa[i] = client(3);
                cr_assert_eq(alloc(wa[i], "a", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        }
        cr_assert_eq(alloc(wb, "b", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        core_set_slice(core, 0);
        cr_assert_eq(core_free_region(core, a, id_of(sa[0]), &res), E_OK); /* a is ready first, */
        cr_assert_eq(core_free_region(core, b, id_of(sb), &res), E_OK);    /* b behind it */
        /* Each run grants one of a's waiters, which leaves at once: a gets room back every time. */
        for (int i = 0; i < 6 && !b_granted; i++) {
                core_run(core);
                while (core_done_pop(core, &d)) {
                        b_granted |= d.client == wb && d.grant == GRANT_REGION;
                        for (int j = 0; j < 8; j++)
                                if (d.client == wa[j])
                                        bye(wa[j]);
                }
        }
        cr_assert(b_granted, "b's waiter fits, and was not tried while a's pass kept breaking off");
}

/*
 * A pool drained while it waits behind a broken-off pass leaves the ready list: retired and replaced
 * by its namesake (core_pool_adopt frees it), it must not be reached by the runs that follow.
 */
Test(core, a_drained_pool_leaves_the_ready_list) {
        struct client *a = client(1), *b = client(2), *wa[3], *wb = client(4);
        uint32_t sa[4], sb[2];
        struct core_result res;
        struct core_done d;
        struct pool *pb;

        add_fpga("a", 16 * K);
        add_fpga("b", 8 * K);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc(a, "a", 4 * K, 0, NULL, &sa[i]), GRANT_REGION);
        for (int i = 0; i < 2; i++)
                cr_assert_eq(alloc(b, "b", 4 * K, 0, NULL, &sb[i]), GRANT_REGION);
        for (int i = 0; i < 3; i++) {
                wa[i] = client(3);
                cr_assert_eq(alloc(wa[i], "a", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        }
        cr_assert_eq(alloc(wb, "b", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        core_set_slice(core, 0);
        cr_assert_eq(core_free_region(core, a, id_of(sa[0]), &res), E_OK);
        cr_assert_eq(core_free_region(core, a, id_of(sa[1]), &res), E_OK);
        core_run(core); /* one of a's waiters granted, the pass broken off at the next */
        cr_assert(core_yielded(core));
        for (int i = 0; i < 2; i++) /* b is ready, behind a, and empty */
                cr_assert_eq(core_free_region(core, b, id_of(sb[i]), &res), E_OK);
        cr_assert(pb = core_pool_find(core, "b"));
        core_pool_drain(core, pb, "taken out of the configuration", true);
        cr_assert(core_pool_retire(pb));
        add_fpga("b", 8 * K); /* made and adopted in pb's place, which is freed */
        for (int i = 0; i < 10 && core_pending(core); i++) {
                core_run(core);
                while (core_done_pop(core, &d))
                        ;
        }
        cr_assert_not(core_pending(core));
        cr_assert_eq(stats().waiters, 1); /* a's third: a has no room for it */
}

Test(core, waiters_time_out_by_the_clock_they_are_given) {
        struct client *a = client(1), *b = client(2);
        struct core_done d;

        add_fpga("f", 4 * K);
        core_set_now(core, 5000);
        cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, NULL), GRANT_REGION);
        cr_assert_eq(alloc(b, "f", 4 * K, 0, NULL, NULL), GRANT_WAITING);
        cr_assert_eq(core_next_deadline(core), 6000);
        core_set_now(core, 5999);
        core_run(core);
        cr_assert_not(core_done_pop(core, &d));
        core_set_now(core, 6000);
        core_run(core);
        cr_assert(core_done_pop(core, &d));
        cr_assert_eq(d.res.code, E_TIMEOUT);
        cr_assert_eq(stats().waiters, 0);
        cr_assert_eq(core_next_deadline(core), UINT64_MAX);
        bye(b);
        bye(a);
}

/* Fault 5: a connection's many references to one region are one record, dropped in one step. */
Test(core, duplicate_holds_are_one_record) {
        enum { N = 65536 };
        struct client *owner = client(1), *a = client(2), *b = client(3);
        struct core_result res;
        uint32_t slot, s;

        add_fpga("f", 64 * K);
        cr_assert_eq(alloc(owner, "f", 4 * K, 0, "shared", &slot), GRANT_REGION);
        for (int i = 0; i < N; i++) {
                cr_assert_eq(core_attach(core, a, 0, &(struct attach_request){.name = "shared"}, &s, &res),
                             GRANT_REGION, "%s", res.msg);
                cr_assert_eq(core_attach(core, b, 0, &(struct attach_request){.name = "shared"}, &s, &res),
                             GRANT_REGION, "%s", res.msg);
        }
        cr_assert_eq(stats().holds, 3);
        cr_assert_eq(a->nrefs, N);
        struct region_info r;
        core_region_info(core, slot, &r);
        cr_assert_eq(r.refs, 2 * N + 1);
        cr_assert_eq(core_detach(core, a, r.id, &res), E_OK);
        cr_assert_eq(a->nrefs, N - 1);
        bye(a);
        core_region_info(core, slot, &r);
        cr_assert_eq(r.refs, N + 1);
        cr_assert_eq(stats().holds, 2);
        bye(owner);
        bye(b);
        cr_assert_eq(stats().regions, 0);
        cr_assert_eq(stats().used, 0);
}

/* Fault 8: a region being zeroed is not its creator's yet: a Free of its id does not free it. */
Test(core, a_region_being_zeroed_cannot_be_freed) {
        struct client *a = client(1), *b = client(2);
        struct core_result res;
        struct zero_job job;
        uint32_t slot;

        add_host("h", 16 << 20);
        cr_assert_eq(alloc(a, "h", 4 << 20, F_ZERO, "z", &slot), GRANT_ZEROING);
        cr_assert_eq(core_free_region(core, a, id_of(slot), &res), E_NOT_FOUND);
        cr_assert_eq(core_detach(core, a, id_of(slot), &res), E_NOT_FOUND);
        cr_assert_eq(core_attach(core, b, 0, &(struct attach_request){.name = "z"}, &slot, &res), GRANT_NONE);
        cr_assert_eq(res.code, E_WOULD_BLOCK);
        cr_assert_eq(stats().used, 4 << 20);
        core_zero_job(core, slot, &job);
        cr_assert_eq(core_zero_run(&job), 0);
        cr_assert_eq(core_zero_done(core, a, slot, 0, &res), GRANT_REGION);
        cr_assert_eq(core_free_region(core, a, id_of(slot), &res), E_OK);
        cr_assert_eq(stats().used, 0);
        bye(b);
        bye(a);
}

/* Nor sealed: a Seal of its id is NOT_FOUND, as a Free is, until it has been handed out. */
Test(core, a_region_being_zeroed_cannot_be_sealed) {
        struct client *a = client(1);
        struct core_result res;
        struct zero_job job;
        uint32_t slot;

        add_host("h", 16 << 20);
        cr_assert_eq(alloc(a, "h", 4 << 20, F_ZERO | F_UNSEALED, "u", &slot), GRANT_ZEROING);
        cr_assert_eq(core_seal(core, a, id_of(slot), &res), E_NOT_FOUND);
        core_zero_job(core, slot, &job);
        cr_assert_eq(core_zero_run(&job), 0);
        cr_assert_eq(core_zero_done(core, a, slot, 0, &res), GRANT_REGION);
        cr_assert_eq(core_seal(core, a, id_of(slot), &res), E_OK);
        bye(a);
}

/* A client that goes while its region is zeroed: the region goes back when the worker is done. */
Test(core, a_region_zeroed_for_a_client_that_left_goes_back) {
        struct client *a = client(1);
        struct core_result res;
        uint32_t slot;

        add_host("h", 16 << 20);
        cr_assert_eq(alloc(a, "h", 4 << 20, F_ZERO | F_PERSIST, NULL, &slot), GRANT_ZEROING);
        bye(a);
        cr_assert_eq(stats().used, 4 << 20);
        cr_assert_eq(core_zero_done(core, NULL, slot, 0, &res), GRANT_NONE);
        cr_assert_eq(stats().used, 0, "PERSIST included: nothing was handed out");
        cr_assert_eq(stats().regions, 0);
}

/* Fault 9: the region table, holds and names shrink when regions go. */
Test(core, tables_shrink_when_regions_go) {
        enum { N = 262144 };
        struct client *a = client(1);
        size_t before, peak;
        char name[32];

        add_fpga("f", (uint64_t)N * 4 * K);
        before = stats().table_bytes;
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "n%d", i);
                cr_assert_eq(alloc(a, "f", 4 * K, 0, i % 4 ? NULL : name, NULL), GRANT_REGION);
        }
        peak = stats().table_bytes;
        cr_assert_geq(peak, (size_t)N * 64);
        bye(a);
        cr_assert_eq(stats().regions, 0);
        cr_assert_eq(stats().names, 0);
        cr_assert_leq(stats().table_bytes, before + 16384,
                      /* the tables' smallest sizes */ "%zu bytes left of a %zu-byte peak (%zu at start)",
                      stats().table_bytes, peak, before);
}

/* Ids stay unique when the table shrinks and grows again. */
Test(core, ids_are_never_reused) {
        enum { N = 5000 };
        uint64_t *ids = calloc(2 * N, sizeof(*ids));
        struct client *a;
        uint32_t slot;

        add_fpga("f", N * 4 * K);
        for (int round = 0; round < 2; round++) {
                a = client(1);
                for (int i = 0; i < N; i++) {
                        cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &slot), GRANT_REGION);
                        ids[round * N + i] = id_of(slot);
                }
                bye(a);
        }
        for (int i = 0; i < N; i++)
                for (int j = N; j < 2 * N; j++)
                        cr_assert_neq(ids[i], ids[j]);
        free(ids);
}

/* Fault 7: one uid cannot take every connection, name or PERSIST region. */
Test(core, per_uid_limits) {
        struct limits l = test_limits();
        struct client *bob[3], *alice;
        struct core_result res;

        teardown();
        l.max_connections_per_uid = 2;
        l.max_names_per_uid = 2;
        l.max_persist_per_uid = 1;
        setup_with(&l);
        add_fpga("f", 64 * K);
        bob[0] = client(1001);
        bob[1] = client(1001);
        bob[2] = calloc(1, sizeof(*bob[2]));
        bob[2]->uid = 1001;
        bob[2]->serial = ++serial;
        clients[serial - 1] = bob[2];
        cr_assert_eq(core_client_add(core, bob[2], &res), E_LIMIT);
        cr_assert(strstr(res.msg, "max_connections_per_uid"), "%s", res.msg);
        alice = client(1002);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, 0, "b1", NULL), GRANT_REGION);
        cr_assert_eq(alloc(bob[1], "f", 4 * K, 0, "b2", NULL), GRANT_REGION);
        cr_assert_eq(alloc(bob[1], "f", 4 * K, 0, "b3", NULL), -E_LIMIT);
        cr_assert_eq(alloc(alice, "f", 4 * K, 0, "a1", NULL), GRANT_REGION);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, F_PERSIST, NULL, NULL), GRANT_REGION);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, F_PERSIST, NULL, NULL), -E_LIMIT);
        cr_assert_eq(alloc(alice, "f", 4 * K, F_PERSIST, NULL, NULL), GRANT_REGION);
        /* Names go with their regions, and the count with them. */
        bye(bob[1]);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, 0, "b4", NULL), GRANT_REGION);
        bye(bob[0]);
        bye(alice);
        cr_assert_eq(stats().regions, 2, "the PERSIST regions stay");
}

/* A refused request changes nothing. */
Test(core, refused_requests_change_nothing) {
        struct client *a = client(1);
        struct core_stats before;

        add_fpga("f", 64 * K);
        cr_assert_eq(alloc(a, "f", 4 * K, 0, "taken", NULL), GRANT_REGION);
        before = stats();
        cr_assert_eq(alloc(a, "f", 4 * K, 0, "taken", NULL), -E_EXISTS);
        cr_assert_eq(alloc(a, "f", 0, 0, NULL, NULL), -E_INVALID);
        cr_assert_eq(alloc(a, "f", 4 * K, F_ZERO, NULL, NULL), -E_INVALID);
        cr_assert_eq(alloc(a, "f", 4 * K, F_NOWAIT | F_NOFAIL, NULL, NULL), -E_INVALID);
        cr_assert_eq(alloc(a, "f", 128 * K, 0, NULL, NULL), -E_NEVER_FITS);
        cr_assert_eq(alloc(a, "nope", 4 * K, 0, NULL, NULL), -E_NO_POOL);
        cr_assert_eq(alloc(a, "f", 4 * K, 0, "bad\n", NULL), -E_INVALID);
        struct core_stats after = stats();
        cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
        bye(a);
}

/* A PERSIST region whose creator is gone is freed by its uid, the pool's owner or root, not others. */
Test(core, an_orphaned_persist_region_is_freed_by_its_owner) {
        struct client *a = client(1001), *other, *owner;
        struct core_result res;
        uint32_t slot;
        uint64_t id;

        add_fpga("f", 64 * K);
        cr_assert_eq(alloc(a, "f", 4 * K, F_PERSIST, "kept", &slot), GRANT_REGION);
        id = id_of(slot);
        bye(a);
        other = client(1002);
        cr_assert_eq(core_free_region(core, other, id, &res), E_DENIED);
        owner = client(1001);
        cr_assert_eq(core_free_region(core, owner, id, &res), E_OK, "%s", res.msg);
        cr_assert_eq(stats().regions, 0);
        cr_assert_eq(stats().names, 0);
        cr_assert_eq(core_free_region(core, owner, id, &res), E_NOT_FOUND);
        bye(other);
        bye(owner);
}

/* The last Free of a table's top region shrinks the table: nothing may read its slot after that. */
Test(core, freeing_the_top_region_reads_nothing_after_the_table_shrinks) {
        enum { N = 60000 };
        static uint32_t slots[N];
        struct client *a = client(1);
        struct core_result res;

        add_fpga("f", N * 4 * K);
        for (int i = 0; i < N; i++)
                cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &slots[i]), GRANT_REGION);
        for (int i = 1; i < N - 1; i++)
                cr_assert_eq(core_free_region(core, a, id_of(slots[i]), &res), E_OK);
        cr_assert_eq(core_free_region(core, a, id_of(slots[N - 1]), &res), E_OK);
        cr_assert_eq(stats().regions, 1);
        cr_assert_eq(stats().used, 4 * K);
        bye(a);
}

/* Room a free made goes to the waiter, not to the next request that asks before the loop turns. */
Test(core, freed_room_goes_to_waiters_before_newcomers) {
        struct client *a = client(1), *w = client(2);
        struct core_result res;
        struct core_done d;
        uint32_t slot;

        add_fpga("f", 4 * K);
        cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &slot), GRANT_REGION);
        cr_assert_eq(alloc(w, "f", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        cr_assert_eq(core_free_region(core, a, id_of(slot), &res), E_OK);
        /* The server runs the core's pending work before it serves the next request. */
        cr_assert(core_pending(core));
        core_run(core);
        cr_assert_eq(alloc(a, "f", 4 * K, F_NOWAIT, NULL, NULL), -E_WOULD_BLOCK);
        cr_assert(core_done_pop(core, &d));
        cr_assert_eq(d.client, w);
        cr_assert_eq(d.grant, GRANT_REGION);
        bye(w);
        bye(a);
}

/* One hold left high in a large hold table does not pin the table's peak size. */
Test(core, the_hold_table_shrinks_around_a_survivor) {
        enum { N = 65536 };
        struct client *a = client(1), *b = client(2);
        struct core_result res;
        uint32_t s;
        char name[32];
        size_t before = stats().table_bytes;

        add_fpga("f", N * 4 * K);
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "n%d", i);
                cr_assert_eq(alloc(a, "f", 4 * K, F_PERSIST, i == N / 2 - 1 ? name : NULL, NULL), GRANT_REGION);
        }
        snprintf(name, sizeof(name), "n%d", N / 2 - 1);
        cr_assert_eq(core_attach(core, b, 0, &(struct attach_request){.name = name}, &s, &res), GRANT_REGION, "%s",
                     res.msg);
        bye(a);
        cr_assert_eq(stats().holds, 1);
        /* The PERSIST regions stay: the region table is full, the hold table must not be. */
        cr_assert_leq(stats().table_bytes, before + (size_t)N * 64 + (size_t)N / 8 + 65536, "%zu bytes",
                      stats().table_bytes);
        bye(b);
}

/* A quota counts what a region takes: its size rounded up to the pool's quantum. */
Test(core, quota_counts_the_rounded_size) {
        struct pool_conf pc = {.kind = POOL_FPGA,
                               .has_kind = true,
                               .quantum = 64 * K,
                               .mode = 0666,
                               .numa_node = -1,
                               .quota_per_uid = 100 * K};
        struct span sp = {.base = 0, .size = 1024 * K};
        struct client *a;
        char err[256];

        snprintf(pc.name, sizeof(pc.name), "q");
        pc.ranges = &sp;
        pc.nranges = 1;
        cr_assert_eq(core_pool_add(core, &pc, err, sizeof(err)), 0, "%s", err);
        a = client(1000);
        cr_assert_eq(alloc(a, "q", 1, 0, NULL, NULL), GRANT_REGION);
        cr_assert_eq(alloc(a, "q", 1, 0, NULL, NULL), -E_QUOTA, "two 1-byte regions take 128 KiB of a 100 KiB quota");
        cr_assert_eq(stats().used, 64 * K);
        bye(a);
}

/* A pool's bytes-per-uid records (its quota's) go with the uid's last byte: they do not pile up with every uid that
 * ever allocated. */
Test(core, usage_records_go_with_the_last_byte) {
        enum { N = 1000 };
        uint32_t slot;

        add_fpga("f", 64 * K);
        for (uid_t uid = 1; uid <= N; uid++) {
                struct client *a = client(10000 + uid);
                cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &slot), GRANT_REGION);
                bye(a);
        }
        cr_assert_eq(stats().used, 0);
        cr_assert_eq(stats().usage, 0, "%llu per-uid usage records left with nothing in use, after %d uids",
                     (unsigned long long)stats().usage, N);
}

/* A falloc heap's tag: a side entry while the region lives; its header written inline, or by the zeroing job. */
Test(core, a_large_heap_is_written_off_the_loop_thread) {
        struct client *a = client(1);
        struct alloc_request heap = {.pool = "h", .numa_node = -1, .format = FMT_FALLOC, .chunk_size = 16};
        struct core_result res;
        struct region_info r;
        struct zero_job job;
        uint32_t small, large;

        add_host("h", 80 << 20);
        heap.size = 64 * K;
        cr_assert_eq(core_alloc(core, a, 0, &heap, &small, &res), GRANT_REGION, "%s", res.msg);
        heap.size = 72 << 20; /* its bitmap passes ZERO_INLINE_MAX */
        cr_assert_eq(core_alloc(core, a, 0, &heap, &large, &res), GRANT_ZEROING, "%s", res.msg);
        core_region_info(core, large, &r);
        cr_assert(r.pending && r.formatted && r.fmt.format == FMT_FALLOC && r.fmt.chunk_size == 16);
        cr_assert_eq(stats().formats, 2);
        core_zero_job(core, large, &job);
        cr_assert(!job.zero && job.fmt.format == FMT_FALLOC && job.fmt.chunk_count == r.fmt.chunk_count);
        cr_assert_eq(core_zero_run(&job), 0);
        cr_assert_eq(core_zero_done(core, a, large, 0, &res), GRANT_REGION);
        heap.chunk_size = 0;
        struct core_stats before = stats();
        cr_assert_eq(core_alloc(core, a, 0, &heap, &small, &res), GRANT_NONE);
        cr_assert_eq(res.code, E_INVALID);
        struct core_stats after = stats();
        cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0, "a refusal changes nothing");
        bye(a);
        cr_assert_eq(stats().formats, 0, "the tags went with their regions");
}
