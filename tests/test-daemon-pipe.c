/* SPDX-License-Identifier: MIT */
/*
 * Pipelined frees and detaches, batches, and both sides staying awake
 * (spin).  A pipelined free is shown not to wait by stopping allocd
 * (SIGSTOP) before it: the call returns, and the requests after it, once
 * allocd runs again, see its effect.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct daemon d;

static void stop(void) {
        daemon_stop(&d);
}

/* A 1 MiB pool, a 4 MiB one for big batches, and a connection limit on regions to run into. */
static void start(void) {
        daemon_start(&d, "[daemon]\nmax_regions_per_connection = 1100\n"
                         "[pool small]\nkind = host\nsize = 1M\n"
                         "[pool big]\nkind = host\nsize = 8M\n"
                         "[pool iso]\nkind = host\nsize = 1M\nisolation = region\n");
}

TestSuite(pipe, .init = start, .fini = stop, .timeout = 60);

Test(pipe, a_free_does_not_wait_and_the_next_alloc_gets_its_room) {
        struct alloc_client *c = daemon_connect(&d);
        struct alloc_region r, again;
        const struct alloc_opts nowait = {.flags = ALLOC_NOWAIT};

        cr_assert_eq(alloc_region_new(c, "small", 1 << 20, NULL, &r), 0, "%s", alloc_last_error());
        /* A free that waited for allocd's answer would time out while allocd is stopped. */
        cr_assert_eq(alloc_set_timeout(c, 300), 0);
        freeze(d.pid);
        int e = alloc_region_free(c, r.id);
        kill(d.pid, SIGCONT);
        cr_assert_eq(e, 0, "the free waited: %d %s", e, alloc_last_error());
        cr_assert_eq(alloc_set_timeout(c, 10000), 0);
        /* Same connection, at once, the whole pool again, without waiting for room: the free came first. */
        cr_assert_eq(alloc_region_new(c, "small", 1 << 20, &nowait, &again), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_detach(c, again.id), 0);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        alloc_disconnect(c);
}

Test(pipe, many_frees_in_flight_are_bounded_and_all_answered) {
        struct alloc_client *c = daemon_connect(&d);
        static struct alloc_region r[1000];

        for (int round = 0; round < 3; round++) {
                for (int i = 0; i < 1000; i++)
                        cr_assert_eq(alloc_region_new(c, "big", 4096, NULL, &r[i]), 0, "%s", alloc_last_error());
                /* Never a call that waits in between: the library must read the replies itself. */
                for (int i = 0; i < 1000; i++)
                        cr_assert_eq(alloc_region_free(c, r[i].id), 0, "%d: %s", i, alloc_last_error());
        }
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "big"), 0);
        alloc_disconnect(c);
}

Test(pipe, what_the_connection_does_not_hold_is_answered_by_allocd) {
        struct alloc_client *c = daemon_connect(&d), *other = daemon_connect(&d);
        struct alloc_region r;
        const struct alloc_opts persist = {.flags = ALLOC_PERSIST};

        cr_assert_eq(alloc_region_detach(c, 12345), -ENOENT);
        cr_assert_eq(alloc_region_free(c, 12345), -ENOENT);
        /* Another connection's PERSIST region: this one holds nothing of it, and may still free it. */
        cr_assert_eq(alloc_region_new(other, "small", 4096, &persist, &r), 0, "%s", alloc_last_error());
        alloc_disconnect(other);
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        /* A region freed twice: the second is not this connection's any more. */
        cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0);
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(alloc_region_free(c, r.id), -ENOENT);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
}

/* ALLOCD_QUIET=0: pipelined frees ask for their replies, as for an allocd that does not offer quiet ones. */
Test(pipe, allocd_quiet_0_asks_for_every_reply_and_other_values_are_refused) {
        struct alloc_client *c;
        struct alloc_region r;

        setenv("ALLOCD_QUIET", "yes", 1);
        cr_assert_eq(alloc_connect(&c, d.sock, "quiet"), -EINVAL);
        cr_assert(strstr(alloc_last_error(), "ALLOCD_QUIET=yes"), "%s", alloc_last_error());
        setenv("ALLOCD_QUIET", "0", 1);
        c = daemon_connect(&d);
        unsetenv("ALLOCD_QUIET");
        for (int i = 0; i < 200; i++) {
                cr_assert_eq(alloc_region_new(c, "small", 1 << 20, NULL, &r), 0, "%d: %s", i, alloc_last_error());
                cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        }
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        alloc_disconnect(c);
}

Test(pipe, the_sync_variants_wait_and_answer) {
        struct alloc_client *c = daemon_connect(&d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0);
        cr_assert_eq(alloc_region_free_sync(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        cr_assert_eq(alloc_region_detach_sync(c, r.id), -ENOENT);
        cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0);
        cr_assert_eq(alloc_region_detach_sync(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        /* A sync free waits for allocd's answer, even for a region the connection holds. */
        cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0);
        cr_assert_eq(alloc_set_timeout(c, 300), 0);
        freeze(d.pid);
        int e = alloc_region_free_sync(c, r.id);
        kill(d.pid, SIGCONT);
        cr_assert_eq(e, -ETIME, "the sync free did not wait: %d", e);
        cr_assert_eq(alloc_set_timeout(c, 10000), 0);
        cr_assert_eq(wait_used(c, "small", 0), 0);
        alloc_disconnect(c);
}

Test(pipe, a_batch_is_all_or_nothing) {
        struct alloc_client *c = daemon_connect(&d);
        struct alloc_region r[4];
        const uint64_t too_much[] = {256 << 10, 256 << 10, 1 << 20};
        const uint64_t fits[] = {256 << 10, 256 << 10, 256 << 10, 256 << 10};

        struct alloc_region half;

        cr_assert_eq(alloc_region_new(c, "small", 512 << 10, NULL, &half), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new_batch(c, "small", fits, 3, NULL, r), -EAGAIN, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "region 2 of the batch of 3") &&
                          strstr(alloc_last_error(), "counted with the batch's regions before it") &&
                          strstr(alloc_last_error(), "none was allocated"),
                  "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 512 << 10);
        cr_assert_eq(alloc_region_free_sync(c, half.id), 0, "%s", alloc_last_error());
        /* Each fits the empty pool, but not all together: no amount of freeing helps, so E2BIG, not "retry". */
        cr_assert_eq(alloc_region_new_batch(c, "small", too_much, 3, NULL, r), -E2BIG, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "region 2 of the batch of 3") &&
                          strstr(alloc_last_error(), "first 3 regions (1572864 bytes in all) cannot fit together") &&
                          !strstr(alloc_last_error(), "counted with the batch's regions"),
                  "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        /* One that cannot fit even in the empty pool is E2BIG, as for Alloc: not "no room now", to retry. */
        const uint64_t never[] = {256 << 10, 2 << 20};
        cr_assert_eq(alloc_region_new_batch(c, "small", never, 2, NULL, r), -E2BIG, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "region 1 of the batch of 2") &&
                          strstr(alloc_last_error(), "even when it is empty") &&
                          !strstr(alloc_last_error(), "counted with the batch's regions"),
                  "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        cr_assert_eq(alloc_region_new_batch(c, "small", fits, 4, NULL, r), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 1 << 20);
        for (int i = 0; i < 4; i++) {
                cr_assert_eq(r[i].size, 256 << 10);
                memset(r[i].ptr, i, r[i].size); /* mapped, and no two overlap: each keeps its byte */
        }
        for (int i = 0; i < 4; i++)
                cr_assert_eq(((unsigned char *)r[i].ptr)[r[i].size - 1], i);
        /* One id it does not hold: allocd refuses the whole batch, and the others stay. */
        uint64_t ids[] = {r[0].id, r[1].id, 424242};
        cr_assert_eq(alloc_region_free_batch(c, ids, 3), -ENOENT);
        cr_assert(strstr(alloc_last_error(), "none of the batch"), "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 1 << 20);
        uint64_t twice[] = {r[0].id, r[0].id};
        cr_assert_eq(alloc_region_free_batch(c, twice, 2), -EINVAL);
        uint64_t all[] = {r[0].id, r[1].id, r[2].id, r[3].id};
        cr_assert_eq(alloc_region_free_batch(c, all, 4), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        alloc_disconnect(c);
}

Test(pipe, a_batch_keeps_to_the_limits_and_refuses_what_does_not_apply) {
        struct alloc_client *c = daemon_connect(&d);
        static struct alloc_region r[ALLOC_BATCH_MAX];
        static uint64_t sizes[ALLOC_BATCH_MAX];
        const struct alloc_opts named = {.name = "x"}, persist = {.flags = ALLOC_PERSIST},
                                big_zero = {.flags = ALLOC_ZERO};

        for (int i = 0; i < ALLOC_BATCH_MAX; i++)
                sizes[i] = 4096;
        cr_assert_eq(alloc_region_new_batch(c, "big", sizes, ALLOC_BATCH_MAX + 1, NULL, r), -EINVAL);
        cr_assert_eq(alloc_region_new_batch(c, "big", sizes, 2, &named, r), -EINVAL);
        cr_assert_eq(alloc_region_new_batch(c, "big", sizes, 2, &persist, r), -EINVAL);
        uint64_t two_mib[] = {2 << 20};
        cr_assert_eq(alloc_region_new_batch(c, "big", two_mib, 1, &big_zero, r), -EINVAL);
        cr_assert_eq(pool_used(c, "big"), 0, "the region placed before the refusal went back");
        /* Each region of an isolation = region pool brings its own fd; a packet carries 4. */
        cr_assert_eq(alloc_region_new_batch(c, "iso", sizes, 2, NULL, r), -EINVAL);
        cr_assert_eq(alloc_region_new_batch(c, "big", sizes, 1, &big_zero, r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r[0].id), 0);
        /* The largest batch fits one packet each way, and max_regions_per_connection (1100) still counts. */
        cr_assert_eq(alloc_region_new_batch(c, "big", sizes, ALLOC_BATCH_MAX, NULL, r), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "big"), (unsigned long long)ALLOC_BATCH_MAX * 4096);
        cr_assert_eq(alloc_region_new_batch(c, "big", sizes, 100, NULL, r + 0), -EMFILE);
        cr_assert_eq(pool_used(c, "big"), (unsigned long long)ALLOC_BATCH_MAX * 4096);
        alloc_disconnect(c);
}

/* allocd's CPU time over one second, in seconds. */
static double idle_cpu(void) {
        double before = daemon_cpu_seconds(&d);
        sleep(1);
        return daemon_cpu_seconds(&d) - before;
}

/* A burst of requests with the spin both sides have, then a second of nothing. */
static void burst_then_idle(uint32_t client_spin_us) {
        struct alloc_client *c = daemon_connect(&d);
        struct alloc_region r;

        cr_assert_eq(alloc_set_spin(c, client_spin_us), 0);
        for (int i = 0; i < 2000; i++) {
                cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        }
        cr_assert_eq(alloc_region_sync(c), 0);
        /* A coarse bound, not a timing: spinning for ever would be 100%. */
        double cpu = idle_cpu();
        cr_assert_lt(cpu, 0.05, "allocd used %.3f s of CPU in an idle second", cpu);
        cr_assert_eq(alloc_set_spin(c, 10001), -EINVAL);
        alloc_disconnect(c);
}

TestSuite(spin, .fini = stop, .timeout = 60);

Test(spin, spinning_ends_when_the_requests_do) {
        daemon_start(&d, "[daemon]\nspin = 10ms\n[pool small]\nkind = host\nsize = 1M\n");
        burst_then_idle(10000);
}

Test(spin, no_spin_on_either_side_works_too) {
        struct alloc_client *bad;

        daemon_start(&d, "[daemon]\nspin = 0\n[pool small]\nkind = host\nsize = 1M\n");
        setenv("ALLOCD_SPIN", "50", 1);
        cr_assert_eq(alloc_connect(&bad, d.sock, NULL), -EINVAL);
        cr_assert(strstr(alloc_last_error(), "ALLOCD_SPIN=50"), "%s", alloc_last_error());
        setenv("ALLOCD_SPIN", "0", 1);
        burst_then_idle(0);
}
