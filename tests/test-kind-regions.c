/* SPDX-License-Identifier: MIT */
/*
 * Kinds (alloc/kind.h) and their regions in a real allocd (test-kind.c has the blocks): decay and
 * the conservative policy seen in allocd's accounting, a region waiting for room, a free waiting
 * for allocd, no round trip in steady state, two kinds on two pools, detection, bad options, large
 * blocks, destroy, disconnect and process exit giving everything back, and a restart without
 * allocd's state.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kind-common.h"
#include "sysd.h"

TestSuite(kind, .init = setup, .fini = teardown, .timeout = 120);

/* Four runs of 1.5 MiB: four regions of 2 MiB. */
static void take_four(struct alloc_memkind *k, void **p) {
        for (int i = 0; i < 4; i++)
                cr_assert_not_null(p[i] = alloc_kind_malloc(k, 3 * MiB / 2), "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "h"), 4 * 2 * MiB);
}

Test(kind, decay_gives_regions_back_after_its_time) {
        struct alloc_memkind *k =
                make("h", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE, .decay_ms = 300});
        void *p[4];

        take_four(k, p);
        for (int i = 0; i < 4; i++)
                alloc_kind_free(k, p[i]);
        cr_assert_eq(pool_used(c, "h"), 4 * 2 * MiB, "kept for the decay time");
        usleep(400 * 1000);
        alloc_kind_free(k, alloc_kind_malloc(k, 100000)); /* the arena's next use decays */
        cr_assert_leq(pool_used(c, "h"), 2 * MiB, "at most the region the last block took is left");
        alloc_kind_destroy(k);
}

Test(kind, conservative_gives_regions_back_at_once) {
        struct alloc_memkind *k = make("h", &(struct alloc_kind_opts){.usage = ALLOC_KIND_USAGE_CONSERVATIVE});
        void *p[4];
        struct alloc_kind_stats st;

        take_four(k, p);
        for (int i = 0; i < 4; i++)
                alloc_kind_free(k, p[i]);
        cr_assert_eq(pool_used(c, "h"), 0);
        cr_assert_eq(alloc_kind_stats(k, &st), 0);
        cr_assert_eq(st.regions, 0);
        /* Small blocks too: no thread keeps them back. */
        void *s = alloc_kind_malloc(k, 32);
        cr_assert_eq(pool_used(c, "h"), 2 * MiB);
        alloc_kind_free(k, s);
        cr_assert_eq(pool_used(c, "h"), 0);
        alloc_kind_destroy(k);
}

static void *take_big(void *k) {
        return alloc_kind_malloc(k, 3 * MiB / 2);
}

/* A thread whose region waits for room holds no lock another thread's free needs to make that room. */
Test(kind, a_region_waiting_for_room_blocks_no_free) {
        struct alloc_memkind *k = make("tiny", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE,
                                                                         .usage = ALLOC_KIND_USAGE_CONSERVATIVE,
                                                                         .timeout_ms = 20000});
        void *p = alloc_kind_malloc(k, MiB), *q;
        pthread_t t;

        cr_assert_not_null(p);
        cr_assert_eq(pthread_create(&t, NULL, take_big, k), 0);
        wait_waiters(c, "tiny", 1);
        alloc_kind_free(k, p); /* the pool's only region goes back: the waiting one gets it */
        cr_assert_eq(pthread_join(t, &q), 0);
        cr_assert_not_null(q, "the waiting region got the room the free made: %s", alloc_last_error());
        alloc_kind_free(k, q);
        alloc_kind_destroy(k);
}

static void *free_it(void *arg) {
        void **a = arg;

        alloc_kind_free(a[0], a[1]);
        return NULL;
}

static void *take_small(void *k) {
        return alloc_kind_malloc(k, 64);
}

/*
 * A free that gives a region back may wait for allocd (here: PIPE_MAX frees in flight and allocd
 * stopped); it must not hold the arena's lock meanwhile, or every thread's malloc waits with it.
 */
Test(kind, a_free_waiting_for_allocd_holds_no_arena_lock) {
        struct alloc_memkind *k = make("h", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE,
                                                                      .usage = ALLOC_KIND_USAGE_CONSERVATIVE});
        void *small = alloc_kind_malloc(k, 64), *big = alloc_kind_malloc(k, 2 * MiB - 4096), *got;
        void *args[2] = {k, big};
        struct alloc_region r[64];
        pthread_t f, t;
        struct timespec until;

        cr_assert(small && big);
        for (int i = 0; i < 64; i++)
                cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &r[i]), 0, "%s", alloc_last_error());
        freeze(d.pid);
        for (int i = 0; i < 64; i++)
                cr_assert_eq(alloc_region_free(c, r[i].id), 0, "pipelined: it does not wait");
        /* big's chunk empties: its region goes back, and that free waits for a Sync allocd cannot answer. */
        cr_assert_eq(pthread_create(&f, NULL, free_it, args), 0);
        usleep(200 * 1000);
        cr_assert_eq(pthread_create(&t, NULL, take_small, k), 0);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        int e = pthread_timedjoin_np(t, &got, &until);
        kill(d.pid, SIGCONT);
        if (e)
                pthread_join(t, &got);
        pthread_join(f, NULL);
        cr_assert_eq(e, 0, "a malloc from a chunk with room waited for another thread's free to reach allocd");
        cr_assert_not_null(got);
        alloc_kind_free(k, got);
        alloc_kind_free(k, small);
        alloc_kind_destroy(k);
}

Test(kind, policy_update_to_conservative_gives_back_at_once) {
        struct alloc_memkind *k = make("h", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE});
        void *p[4];
        void *s = alloc_kind_malloc(k, 32);

        take_four(k, p);
        for (int i = 0; i < 4; i++)
                alloc_kind_free(k, p[i]);
        alloc_kind_free(k, s);
        cr_assert_geq(pool_used(c, "h"), 4 * 2 * MiB, "the default policy keeps them for 10 s");
        cr_assert_eq(alloc_kind_update_memory_usage_policy(k, ALLOC_KIND_USAGE_CONSERVATIVE), 0);
        cr_assert_eq(pool_used(c, "h"), 0, "this thread's cache emptied, every region given back");
        cr_assert_eq(alloc_kind_update_memory_usage_policy(k, 7), -EINVAL);
        alloc_kind_destroy(k);
}

Test(kind, steady_state_takes_no_round_trip) {
        struct alloc_memkind *k = make("h", NULL);
        struct alloc_kind_stats before, after;
        void *p[64];

        /* The first pass takes the regions the load needs; the second must not take any. */
        for (int pass = 0; pass < 2; pass++) {
                if (pass)
                        cr_assert_eq(alloc_kind_stats(k, &before), 0);
                for (int i = 0; i < 20000; i++) {
                        for (int j = 0; j < 64; j++)
                                p[j] = alloc_kind_malloc(k, 16 + (size_t)(i * 64 + j) % 4081);
                        for (int j = 0; j < 64; j++)
                                alloc_kind_free(k, p[j]);
                }
        }
        cr_assert_eq(alloc_kind_stats(k, &after), 0);
        cr_assert_eq(after.round_trips, before.round_trips, "%llu round trips to allocd in steady state",
                     (unsigned long long)(after.round_trips - before.round_trips));
        alloc_kind_destroy(k);
}

Test(kind, two_kinds_on_two_pools) {
        struct alloc_memkind *a = make("h", NULL), *b = make("h2", NULL);
        uintptr_t base_a = pool_base("h"), base_b = pool_base("h2");
        void *pa = alloc_kind_malloc(a, 1000), *pb = alloc_kind_malloc(b, 1000);

        cr_assert_eq(alloc_kind_detect(pa), a);
        cr_assert_eq(alloc_kind_detect(pb), b);
        cr_assert_lt((uintptr_t)pa - base_a, 128 * MiB, "a's block is in pool h");
        cr_assert_lt((uintptr_t)pb - base_b, 32 * MiB, "b's block is in pool h2");
        cr_assert_eq(pool_used(c, "h2"), 2 * MiB);
        alloc_kind_destroy(b);
        cr_assert_eq(pool_used(c, "h2"), 0);
        cr_assert_null(alloc_kind_detect(pb), "b's regions are gone");
        cr_assert_eq(alloc_kind_detect(pa), a, "a is untouched");
        memset(pa, 1, 1000);
        alloc_kind_free(NULL, pa);
        alloc_kind_destroy(a);
}

Test(kind, detect_says_null_for_memory_of_no_kind) {
        struct alloc_memkind *k = make("h", NULL);
        static int in_data;
        int on_stack;
        struct alloc_region r;
        void *g = malloc(100);

        cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &r), 0);
        cr_assert_null(alloc_kind_detect(g));
        cr_assert_null(alloc_kind_detect(&on_stack));
        cr_assert_null(alloc_kind_detect(&in_data));
        cr_assert_null(alloc_kind_detect(NULL));
        cr_assert_null(alloc_kind_detect((void *)UINTPTR_MAX));
        cr_assert_null(alloc_kind_detect(r.ptr), "a plain region of the same pool is no kind's");
        cr_assert_eq(alloc_kind_malloc_usable_size(NULL, g), 0);
        /* With detection, memory of no kind goes to the process's heap, as memkind's goes to MEMKIND_DEFAULT. */
        g = alloc_kind_realloc(NULL, g, 200);
        cr_assert_not_null(g);
        alloc_kind_free(NULL, g);
        alloc_kind_destroy(k);
}

Test(kind, bad_options_are_refused_with_a_reason) {
        struct alloc_memkind *k = (void *)0x1;
        struct {
                const char *pool;
                struct alloc_kind_opts o;
                int err;
                const char *says;
        } cases[] = {
                {"h", {.region_size = 3 * MiB}, -EINVAL, "multiple of 2 MiB"},
                {"h", {.region_flags = ALLOC_ZERO}, -EINVAL, "alloc_kind_calloc"},
                {"h", {.region_flags = ALLOC_PERSIST}, -EINVAL, "ALLOC_NOWAIT"},
                {"h", {.arena = 9}, -EINVAL, "arena policy"},
                {"h", {.usage = 9}, -EINVAL, "usage policy"},
                {"h", {.device_pointers = true}, -EINVAL, "host pool"},
                {"nope", {0}, -ENODEV, "nope"},
                {"f", {0}, -EINVAL, "fpga"},
                {"h2", {.region_size = 64 * MiB}, -E2BIG, ""},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                cr_assert_eq(alloc_kind_create(c, cases[i].pool, &cases[i].o, &k), cases[i].err, "case %zu: %s", i,
                             alloc_last_error());
                cr_assert(strstr(alloc_last_error(), cases[i].says), "case %zu says %s", i, alloc_last_error());
                cr_assert_eq(k, (void *)0x1, "nothing returned");
        }
        cr_assert_eq(pool_used(c, "h"), 0, "nothing held");
        cr_assert_eq(pool_used(c, "h2"), 0);
}

Test(kind, large_regions_and_blocks_larger_than_a_region) {
        struct alloc_memkind *k = make("h", &(struct alloc_kind_opts){.region_size = 8 * MiB});
        struct alloc_kind_stats st;

        cr_assert_eq(pool_used(c, "h"), 8 * MiB);
        void *big = alloc_kind_malloc(k, 20 * MiB);
        cr_assert_not_null(big, "%s", alloc_last_error());
        memset(big, 3, 20 * MiB);
        cr_assert_eq(alloc_kind_stats(k, &st), 0);
        cr_assert_eq(st.regions, 2);
        cr_assert_eq(st.region_bytes, 8 * MiB + 20 * MiB, "a block past the region size gets a region of its own");
        cr_assert_eq(alloc_kind_detect((char *)big + 20 * MiB - 1), k);
        alloc_kind_free(k, big);
        alloc_kind_destroy(k);
}

Test(kind, disconnect_destroys_live_kinds) {
        struct alloc_client *own = daemon_connect(&d);
        struct alloc_memkind *k = NULL;
        void *p;

        cr_assert_eq(alloc_kind_create(own, "h", NULL, &k), 0, "%s", alloc_last_error());
        p = alloc_kind_malloc(k, 5000);
        cr_assert_eq(alloc_kind_detect(p), k);
        alloc_disconnect(own);
        cr_assert_null(alloc_kind_detect(p), "the kind is gone with its connection");
        cr_assert_eq(wait_used(c, "h", 0), 0, "and its regions with the connection");
}

/* The process ends (exits, or is killed) holding a kind: allocd takes every region back. */
static void child_holding_a_kind(bool killed) {
        pid_t pid = test_fork();

        cr_assert_geq(pid, 0);
        if (pid == 0) {
                struct alloc_client *cc = daemon_connect(&d);
                struct alloc_memkind *k;
                if (alloc_kind_create(cc, "h", NULL, &k) < 0)
                        _exit(2);
                for (int i = 0; i < 100; i++)
                        memset(alloc_kind_malloc(k, 100000), 1, 100000);
                if (killed)
                        raise(SIGKILL);
                exit(0);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(killed ? WIFSIGNALED(status) : WIFEXITED(status) && WEXITSTATUS(status) == 0);
        cr_assert_eq(wait_used(c, "h", 0), 0);
}

Test(kind, process_exit_gives_everything_back) {
        child_holding_a_kind(false);
        child_holding_a_kind(true);
}

Test(kind, cuda_pair_on_a_pool_without_a_device) {
        /* The pair finds its pool through the environment; a host pool has no device to check. */
        setenv("ALLOCD_KIND_POOL_0", "h2", 1);
        void *p = alloc_kind_cuda_malloc(1000, 0, NULL);
        cr_assert_not_null(p, "%s", alloc_last_error());
        cr_assert_not_null(alloc_kind_detect(p));
        cr_assert_eq(pool_used(c, "h2"), 2 * MiB);
        alloc_kind_cuda_free(p, 1000, 0, NULL);
        setenv("ALLOCD_KIND_POOL_1", "nope", 1);
        cr_assert_null(alloc_kind_cuda_malloc(1000, 1, NULL));
        cr_assert(strstr(alloc_last_error(), "nope"), "%s", alloc_last_error());
        cr_assert_null(alloc_kind_cuda_malloc(1000, -1, NULL));
}

/*
 * allocd restarts without its state: the kind's regions are gone, and a new allocd hands out the
 * same region ids again.  Destroying the kind must not give back, by those ids, regions it no
 * longer holds: they may now be another kind's.
 */
Test(kind, regions_lost_in_a_restart_are_not_given_back_by_their_old_ids) {
        struct alloc_memkind *old = make("h", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE});
        struct alloc_region r;
        int status;

        cr_assert_not_null(alloc_kind_malloc(old, 100));
        kill(d.pid, SIGTERM);
        cr_assert_eq(waitpid(d.pid, &status, 0), d.pid);
        cr_assert_eq(daemon_respawn(&d, NULL), -1);
        cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &r), -ESTALE, "%s", alloc_last_error());
        struct alloc_memkind *k = make("h", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE});
        void *p = alloc_kind_malloc(k, 100);
        cr_assert_not_null(p);
        cr_assert_eq(pool_used(c, "h"), 2 * MiB);
        alloc_kind_destroy(old);
        cr_assert_eq(pool_used(c, "h"), 2 * MiB, "the new kind's region is still held");
        memset(p, 1, 100);
        alloc_kind_destroy(k);
        cr_assert_eq(pool_used(c, "h"), 0);
}

/*
 * A child of fork() inherits the parent's kinds, their caches and its connection's socket: the
 * regions are shared memory, so a block the child took from a kind would be one the parent hands
 * out too, and a destroy would give the parent's regions back to allocd.  The child can do neither.
 */
Test(kind, a_child_of_fork_neither_allocates_from_nor_destroys_its_parents_kinds) {
        struct alloc_memkind *k = make("h", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE});
        void *big = alloc_kind_malloc(k, 100000), *p;
        int status;

        alloc_kind_free(k, alloc_kind_malloc(k, 64)); /* this thread's cache now holds blocks of 64 */
        pid_t pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                errno = 0;
                void *x = alloc_kind_malloc(k, 64), *y = alloc_kind_malloc(k, 200000);
                int e = errno;
                alloc_kind_free(k, big); /* ignored: the parent's block */
                alloc_kind_destroy(k);   /* only the child's copy of the bookkeeping */
                _exit(x || y ? 1 : e != EINVAL ? 2 : 0);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status), "the child died");
        cr_assert_eq(WEXITSTATUS(status), 0, "the child %s", WEXITSTATUS(status) == 1 ? "got blocks" : "saw no EINVAL");
        cr_assert_eq(pool_used(c, "h"), 2 * MiB, "the parent's region is still held");
        cr_assert_not_null(p = alloc_kind_malloc(k, 64));
        memset(p, 1, 64);
        memset(big, 2, 100000);
        alloc_kind_destroy(k);
        cr_assert_eq(pool_used(c, "h"), 0);
}

/* allocd crashes and restarts with its state (the fd store): the kind carries on with its regions. */
Test(kind, a_kind_keeps_its_regions_across_a_restart_with_state) {
        struct sysd s;
        struct alloc_memkind *k = NULL;

        sysd_start(&s, "[pool h]\nkind = host\nsize = 64M\nmode = 0666\n");
        struct alloc_client *own = daemon_connect(&s.d);
        cr_assert_eq(alloc_kind_create(own, "h", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE}, &k), 0,
                     "%s", alloc_last_error());
        void *small = alloc_kind_malloc(k, 1000), *big = alloc_kind_malloc(k, 3 * MiB);
        cr_assert(small && big, "%s", alloc_last_error());
        fill(small, 1000, 1);
        fill(big, 3 * MiB, 2);
        sysd_restart(&s, SIGKILL);
        void *more = alloc_kind_malloc(k, 5 * MiB); /* a region: the connection is made again and reclaimed */
        cr_assert_not_null(more, "%s", alloc_last_error());
        cr_assert(filled(small, 1000, 1) && filled(big, 3 * MiB, 2));
        cr_assert_eq(pool_used(own, "h"), (2 + 4 + 6) * MiB, "every region kept");
        alloc_kind_free(k, big);
        alloc_kind_free(k, more);
        alloc_kind_destroy(k);
        cr_assert_eq(pool_used(own, "h"), 0, "and given back by its id");
        alloc_disconnect(own);
        sysd_end(&s);
}
