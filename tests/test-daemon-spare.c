/* SPDX-License-Identifier: MIT */
/*
 * Spares (docs/protocol.md, "Spares"): a free that asks allocd for a region of
 * the same shape in the same request, taken by the next alloc without a round
 * trip (several ahead, asked in batches: docs/protocol.md).  "Without a round trip" is shown by stopping allocd
 * (SIGSTOP) before the alloc: it returns all the same.  What a spare holds is seen in the pool's used bytes, which
 * count it as the connection's.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sysd.h"

#define CONF "[pool small]\nkind = host\nsize = 64K\n"
#define SMALL_AHEAD 8 /* spares of a small region ahead at most (docs/protocol.md): a batch is half */

static struct daemon d;

static void stop(void) {
        daemon_stop(&d);
}

static void start(void) {
        daemon_start(&d, CONF "[pool other]\nkind = host\nsize = 1M\nisolation = region\n[pool big]\nkind = "
                              "host\nsize = 32M\n");
}

TestSuite(spare, .init = start, .fini = stop, .timeout = 60);

static struct alloc_client *spare_client(struct daemon *dd) {
        struct alloc_client *c = daemon_connect(dd);

        cr_assert_eq(alloc_set_spare(c, true), 0, "%s", alloc_last_error());
        return c;
}

/*
 * alloc_region_new while allocd is stopped: only a spare already answered can satisfy it.  NOWAIT
 * (which a spare's shape leaves out) so that an alloc sent to allocd times out at once.
 */
static int alloc_stopped(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *shape,
                         struct alloc_region *r) {
        struct alloc_opts o = shape ? *shape : (struct alloc_opts){0};
        int e;

        cr_assert_eq(alloc_set_timeout(c, 300), 0);
        freeze(d.pid);
        o.flags |= ALLOC_NOWAIT;
        e = alloc_region_new(c, pool, size, &o, r);
        kill(d.pid, SIGCONT);
        cr_assert_eq(alloc_set_timeout(c, 10000), 0);
        return e;
}

Test(spare, the_next_alloc_of_the_shape_takes_it_without_a_round_trip) {
        struct alloc_client *c = spare_client(&d);
        struct alloc_region r, s;

        cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error()); /* the free's answer is in */
        cr_assert_eq(pool_used(c, "small"), SMALL_AHEAD / 2 * 4096,
                     "the first free asks for four spares (the most one Free may), the connection's");
        int e = alloc_stopped(c, "small", 4096, NULL, &s);
        cr_assert_eq(e, 0, "the alloc waited for allocd: %d %s", e, alloc_last_error());
        cr_assert_neq(s.id, r.id);
        memset(s.ptr, 'x', 4096);
        /*
         * Cycling the shape keeps one region and four to eight spares (asked, or at hand), never more: a
         * free asks for four once no more than four are ahead, and for none before, so that one answer
         * serves four allocs.  Four asked at the first free, one taken: the frees of the first and every
         * fourth cycle after ask, and the 100th alloc leaves seven.
         */
        for (int i = 0; i < 100; i++) {
                cr_assert_eq(alloc_region_free(c, s.id), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &s), 0, "%s", alloc_last_error());
                cr_assert_leq(pool_used(c, "small"), (1 + SMALL_AHEAD) * 4096, "cycle %d", i);
        }
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), (1 + SMALL_AHEAD - 1) * 4096);
        cr_assert_eq(alloc_region_free(c, s.id), 0);
        cr_assert_eq(alloc_set_spare(c, false), 0, "%s", alloc_last_error()); /* gives the spares back */
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 0);
        alloc_disconnect(c);
}

/* Cycles regions of size in pool big: each cycle holds the region and at most depth spares. */
static unsigned long long cycle_big(struct alloc_client *c, uint64_t size, unsigned depth) {
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "big", size, NULL, &r), 0, "%s", alloc_last_error());
        for (int i = 0; i < 20; i++) {
                cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_new(c, "big", size, NULL, &r), 0, "%s", alloc_last_error());
                cr_assert_leq(pool_used(c, "big"), (1 + depth) * size, "%llu bytes, cycle %d", (unsigned long long)size,
                              i);
        }
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        unsigned long long n = pool_used(c, "big") / size;
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        return n;
}

Test(spare, larger_regions_keep_fewer_ahead) {
        struct alloc_client *c = spare_client(&d);

        /*
         * 8 MiB ahead at most, and never fewer than two: eight of 1 MiB (four asked at a time, four to
         * seven left after an alloc), four of 2 MiB (two at a time, two or three), two of 8 MiB (one at a
         * time, one); the region held, and the spares left after the 20th alloc.
         */
        unsigned long long n = cycle_big(c, 1 << 20, 8);
        cr_assert_eq(n, 1 + 4, "%llu", n);
        n = cycle_big(c, 2 << 20, 4);
        cr_assert_eq(n, 1 + 2, "%llu", n);
        n = cycle_big(c, 8 << 20, 2);
        cr_assert_eq(n, 1 + 1, "%llu", n);
        cr_assert_eq(alloc_set_spare(c, false), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "big"), 0);
        alloc_disconnect(c);
}

Test(spare, a_spare_is_zero_when_the_alloc_asks_zero) {
        struct alloc_client *c = spare_client(&d);
        const struct alloc_opts zero = {.flags = ALLOC_ZERO};
        struct alloc_region r, s;

        cr_assert_eq(alloc_region_new(c, "small", 8192, &zero, &r), 0, "%s", alloc_last_error());
        memset(r.ptr, 0xff, 8192);
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_stopped(c, "small", 8192, &zero, &s), 0, "%s", alloc_last_error());
        for (int i = 0; i < 8192; i++)
                cr_assert_eq(((unsigned char *)s.ptr)[i], 0, "byte %d", i);
        /* A spare without ZERO is not one for an alloc that asks it: it goes back, the alloc asks allocd. */
        cr_assert_eq(alloc_region_free(c, s.id), 0);
        cr_assert_eq(alloc_region_new(c, "small", 8192, NULL, &r), 0, "%s", alloc_last_error());
        memset(r.ptr, 0xff, 8192);
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(alloc_region_new(c, "small", 8192, &zero, &s), 0, "%s", alloc_last_error());
        for (int i = 0; i < 8192; i++)
                cr_assert_eq(((unsigned char *)s.ptr)[i], 0, "byte %d", i);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "small"), 8192, "the other spare went back");
        alloc_disconnect(c);
}

Test(spare, another_shape_and_the_close_give_it_back) {
        struct alloc_client *c = spare_client(&d), *watch = daemon_connect(&d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        /* Another size: the 4 KiB spare goes back before it, and the whole pool fits, NOWAIT. */
        const struct alloc_opts nowait = {.flags = ALLOC_NOWAIT};
        cr_assert_eq(alloc_region_new(c, "small", 65536, &nowait, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(watch, "small"), 65536, "a spare of the whole pool");
        alloc_disconnect(c);
        cr_assert_eq(wait_used(watch, "small", 0), 0, "the close gave the spare back");
        alloc_disconnect(watch);
}

/* A client that waits for the whole pool, then gives it back (its connection closes). */
static void *waiter(void *arg) {
        const struct alloc_opts wait = {.timeout_ms = 10000};
        struct alloc_client *cb = daemon_connect(&d);
        struct alloc_region x;
        intptr_t e = alloc_region_new(cb, "small", 65536, &wait, &x);

        (void)arg;
        alloc_disconnect(cb);
        return (void *)e;
}

Test(spare, a_client_waiting_for_the_room_gets_it_first) {
        struct alloc_client *c = spare_client(&d), *b = daemon_connect(&d);
        const struct alloc_opts nowait = {.flags = ALLOC_NOWAIT};
        struct alloc_region r;
        pthread_t t;
        void *e;

        cr_assert_eq(alloc_region_new(c, "small", 65536, &nowait, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(pthread_create(&t, NULL, waiter, NULL), 0);
        cr_assert_eq(wait_waiters(b, "small", 1), 1, "the waiter is queued");
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pthread_join(t, &e), 0);
        cr_assert_eq((intptr_t)e, 0, "the waiter did not get the room: %d", (int)(intptr_t)e);
        /* The free stands, and made no spare: the pool is empty once the waiter has gone. */
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(wait_used(b, "small", 0), 0, "no spare was made");
        cr_assert_eq(alloc_region_new(c, "small", 65536, &nowait, &r), 0, "%s", alloc_last_error());
        alloc_disconnect(b);
        alloc_disconnect(c);
}

/* Threads that cycle one shape on one connection with spares, each holding one region at a time. */
#define CYCLERS 3
/* Past half of SPARE_BYTES_AHEAD: two spares ahead, asked one at a time, so that an ask is often used up. */
#define CYCLE_SIZE ((4u << 20) + 4096)
static struct {
        struct alloc_client *c;
        pthread_mutex_t lock;
        uint64_t live[CYCLERS]; /* the region each thread holds; 0: none */
        uint64_t size;
        bool mixed;
        int rounds;
        _Atomic int done; /* threads finished */
} cycle = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *cycler(void *arg) {
        uintptr_t me = (uintptr_t)arg;
        int e = 0;

        for (int i = 0; i < cycle.rounds && e == 0; i++) {
                struct alloc_region r;
                /* Now and then another shape, which gives back every spare of the first. */
                uint64_t size = cycle.mixed && (i + me) % 7 == 6 ? 8192 : cycle.size;
                if ((e = alloc_region_new(cycle.c, "big", size, NULL, &r)) < 0)
                        break;
                if (r.size != size) {
                        e = -EBADSLT; /* a spare of another shape */
                        break;
                }
                pthread_mutex_lock(&cycle.lock);
                for (uintptr_t k = 0; k < CYCLERS; k++)
                        if (cycle.live[k] == r.id)
                                e = -EEXIST;
                cycle.live[me] = e ? cycle.live[me] : r.id;
                pthread_mutex_unlock(&cycle.lock);
                if (e < 0)
                        break;
                pthread_mutex_lock(&cycle.lock);
                cycle.live[me] = 0;
                pthread_mutex_unlock(&cycle.lock);
                e = alloc_region_free(cycle.c, r.id);
        }
        atomic_fetch_add(&cycle.done, 1);
        return (void *)(intptr_t)e;
}

/*
 * An alloc that waits for the first spare's answer lets the connection's lock go: another thread
 * may take that spare, or drop the last ask, meanwhile.  Each region goes to one thread, and the
 * list of asks is read afresh after the wait (it was read from a freed reply, or dropped below empty).
 */
static void cycle_threads(uint64_t size, bool mixed, int rounds) {
        struct alloc_client *watch = daemon_connect(&d);
        pthread_t t[CYCLERS];

        cycle.c = spare_client(&d);
        cycle.size = size;
        cycle.mixed = mixed;
        cycle.rounds = rounds;
        unsigned long long most = 0;
        for (uintptr_t i = 0; i < CYCLERS; i++)
                cr_assert_eq(pthread_create(&t[i], NULL, cycler, (void *)i), 0);
        /* Each thread holds one region at a time, and the connection at most SMALL_AHEAD spares. */
        while (atomic_load(&cycle.done) < CYCLERS) {
                unsigned long long used = pool_used(watch, "big");
                most = used > most ? used : most;
        }
        for (int i = 0; i < CYCLERS; i++) {
                void *e;
                cr_assert_eq(pthread_join(t[i], &e), 0);
                cr_assert_eq((intptr_t)e, 0, "thread %d: %s", i, strerror(-(int)(intptr_t)e));
        }
        /* Another shape's spares may overlap those that go back: only one shape has a bound to check. */
        if (!mixed)
                cr_assert_leq(most, (CYCLERS + SMALL_AHEAD) * size, "%llu regions held at once", most / size);
        cr_assert_eq(alloc_region_sync(cycle.c), 0, "%s", alloc_last_error());
        alloc_disconnect(cycle.c);
        cr_assert_eq(wait_used(watch, "big", 0), 0, "the spares went back with the connection");
        alloc_disconnect(watch);
}

Test(spare, threads_that_cycle_one_shape_on_one_connection_each_get_their_own_region) {
        cycle_threads(CYCLE_SIZE, false, 20000);
}

/*
 * Threads that free at once each asked for the spares that would fill the depth, before any of
 * them listed its ask: more than eight came, each counted against the connection's limits.
 */
Test(spare, threads_that_free_at_once_ask_for_no_more_spares_than_the_depth) {
        cycle_threads(4096, false, 100000);
}

/*
 * Small regions go eight ahead, asked four at a time; threads that free at once each ask before
 * any ask is listed, so more than eight may come.  An alloc of another shape gives back every one
 * of them (it wrote them past its array of eight, over its own stack).
 */
Test(spare, another_shape_gives_back_every_spare_that_threads_asked_for) {
        cycle_threads(4096, true, 20000);
}

Test(spare, a_hang_up_in_the_middle_of_a_renew_leaks_nothing) {
        struct alloc_client *c = spare_client(&d), *watch = daemon_connect(&d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0, "%s", alloc_last_error());
        /*
         * allocd reads the free, makes the spare and answers a connection already closed: its Goodbye
         * (alloc_disconnect) times out unanswered, and the library closes.
         */
        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        freeze(d.pid);
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        kill(d.pid, SIGCONT);
        cr_assert_eq(wait_used(watch, "small", 0), 0);
        alloc_disconnect(watch);
}

Test(spare, isolation_region_pools_have_spares_too) {
        struct alloc_client *c = spare_client(&d);
        struct alloc_region r, s;

        cr_assert_eq(alloc_region_new(c, "other", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_stopped(c, "other", 4096, NULL, &s), 0, "%s", alloc_last_error());
        memset(s.ptr, 'y', 4096);
        cr_assert_eq(alloc_region_free(c, s.id), 0);
        cr_assert_eq(alloc_set_spare(c, false), 0);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "other"), 0);
        alloc_disconnect(c);
}

Test(spare, allocd_spare_is_0_or_1) {
        struct alloc_client *c;

        setenv("ALLOCD_SPARE", "yes", 1);
        cr_assert_eq(alloc_connect(&c, d.sock, NULL), -EINVAL);
        cr_assert(strstr(alloc_last_error(), "ALLOCD_SPARE=yes"), "%s", alloc_last_error());
        setenv("ALLOCD_SPARE", "1", 1);
        c = daemon_connect(&d);
        unsetenv("ALLOCD_SPARE");
        struct alloc_region r, s;
        cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_stopped(c, "small", 4096, NULL, &s), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
}

static void start_limited(void) {
        daemon_start(&d, "[daemon]\nmax_regions_per_connection = 3\n" CONF);
}

Test(limits, spares_stay_within_max_regions_per_connection, .init = start_limited, .fini = stop) {
        struct alloc_region r;
        struct alloc_client *c = spare_client(&d);
        /* Fewer spares than asked, and the allocs go on: the region and two spares make the three. */
        for (int i = 0; i < 20; i++) {
                cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0, "cycle %d: %s", i, alloc_last_error());
                cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
                cr_assert_leq(pool_used(c, "small"), 3 * 4096, "cycle %d", i);
        }
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        unsigned long long used = pool_used(c, "small");
        cr_assert_eq(used, 3 * 4096, "three spares, the most the limit leaves: %llu bytes", used);
        alloc_disconnect(c);
}

/* ---- across a restart with the state (systemd's fd store, played by sysd.c) ---- */

static struct sysd s;

static void end_sysd(void) {
        sysd_end(&s);
}

Test(restart, a_spare_held_across_a_restart_is_one_region_and_no_more, .fini = end_sysd) {
        struct alloc_region r, n;

        sysd_start(&s, CONF);
        struct alloc_client *c = spare_client(&s.d);
        /* One spare answered before the restart, one whose answer the restart may cut. */
        for (int round = 0; round < 2; round++) {
                cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &r), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
                if (round == 0)
                        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
                sysd_restart(&s, SIGTERM);
                cr_assert_eq(alloc_region_new(c, "small", 4096, NULL, &n), 0, "%s", alloc_last_error());
                memset(n.ptr, 'z', 4096);
                cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
                struct alloc_status *st;
                cr_assert_eq(alloc_status(c, &st), 0, "%s / %s", alloc_last_error(), sysd_log(&s));
                alloc_status_free(st);
                cr_assert_eq(pool_used(c, "small"), 4096, "round %d: one region held, no spare left over", round);
                cr_assert_eq(alloc_region_free_sync(c, n.id), 0, "%s", alloc_last_error());
        }
        cr_assert_eq(pool_used(c, "small"), 0);
        alloc_disconnect(c);
}

/* This process's mappings of pool's memfds (isolation = region: one a region). */
static int mapped(const char *pool) {
        char want[64], *line = NULL;
        size_t len = 0;
        int n = 0;
        FILE *f = fopen("/proc/self/maps", "r");

        cr_assert(f);
        snprintf(want, sizeof(want), "/memfd:allocd:%s ", pool);
        while (getline(&line, &len, f) > 0)
                n += strstr(line, want) != NULL;
        free(line);
        fclose(f);
        return n;
}

/*
 * A spare of an isolation = region pool comes mapped; one that a reconnect made stale (its squaring
 * gave it back) is dropped, and its mapping with it: it stayed until alloc_disconnect, the memory
 * of a region allocd had freed, one more at each restart.
 */
Test(restart, a_stale_spare_of_an_isolated_region_is_unmapped, .fini = end_sysd) {
        struct alloc_region r, n;

        sysd_start(&s, "[pool iso]\nkind = host\nsize = 1M\nisolation = region\n");
        struct alloc_client *c = spare_client(&s.d);
        cr_assert_eq(alloc_region_new(c, "iso", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_geq(mapped("iso"), 1, "the spare came unmapped: the test sees nothing");
        sysd_restart(&s, SIGTERM);
        /* A call that reconnects: its squaring gives the spare back, which makes it stale here. */
        cr_assert_eq(pool_used(c, "iso"), 0, "%s", sysd_log(&s));
        cr_assert_eq(alloc_set_spare(c, false), 0);
        cr_assert_eq(alloc_region_new(c, "iso", 4096, NULL, &n), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free_sync(c, n.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "iso"), 0, "%s", sysd_log(&s));
        cr_assert_eq(mapped("iso"), 0, "a region given back is still mapped");
        alloc_disconnect(c);
}
