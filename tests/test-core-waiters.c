/* SPDX-License-Identifier: MIT */
/*
 * The core's waiters in-process: what a free, a hang-up or a timeout costs
 * them is counted (tries, skips), not timed; each test is the regression test
 * of one fault the old core had.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-common.h"

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
