/* SPDX-License-Identifier: MIT */
/*
 * Kinds (alloc/kind.h) over a real allocd: memkind's semantics checked
 * against glibc's, every block inside the kind's regions as allocd lists
 * them, threads freeing each other's blocks under a checker, decay and the
 * conservative policy seen in allocd's accounting, destroy, disconnect and
 * process exit giving everything back, two kinds on two pools, detection.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloc/kind.h>

#include "harness.h"

#define MiB (1ull << 20)

static const char *conf = "[pool h]\n"
                          "kind = host\n"
                          "size = 128M\n"
                          "mode = 0666\n"
                          "[pool h2]\n"
                          "kind = host\n"
                          "size = 32M\n"
                          "mode = 0666\n"
                          "[pool tiny]\n"
                          "kind = host\n"
                          "size = 2M\n"
                          "mode = 0666\n"
                          "[pool f]\n"
                          "kind = fpga\n"
                          "ranges = 0x100000000+1G\n"
                          "quantum = 4K\n";

/* Every size class of kind-arena.c, so that each is checked by name. */
static const size_t classes[] = {16,   32,   48,   64,   80,   96,   112,  128,  160,   192,   224,   256,
                                 320,  384,  448,  512,  640,  768,  896,  1024, 1280,  1536,  1792,  2048,
                                 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384};

static struct daemon d;
static struct alloc_client *c;

static void setup(void) {
        daemon_start(&d, conf);
        c = daemon_connect(&d);
        /* Where alloc_kind_cuda_malloc finds allocd: it takes no connection. */
        setenv("ALLOCD_SOCKET", d.sock, 1);
}

static void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(kind, .init = setup, .fini = teardown, .timeout = 120);

static struct alloc_memkind *make(const char *pool, const struct alloc_kind_opts *o) {
        struct alloc_memkind *k = NULL;

        cr_assert_eq(alloc_kind_create(c, pool, o, &k), 0, "%s", alloc_last_error());
        return k;
}

static void fill(void *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                ((unsigned char *)p)[i] = (unsigned char)(seed + i * 7);
}

static bool filled(const void *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                if (((const unsigned char *)p)[i] != (unsigned char)(seed + i * 7))
                        return false;
        return true;
}

Test(kind, every_class_is_aligned_as_glibc_and_usable) {
        struct alloc_memkind *k = make("h", NULL);

        for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
                /* The class itself, and the size just above the class below it. */
                size_t sizes[] = {classes[i], i ? classes[i - 1] + 1 : 1};
                for (int j = 0; j < 2; j++) {
                        void *p = alloc_kind_malloc(k, sizes[j]);
                        cr_assert_not_null(p, "%zu: %s", sizes[j], alloc_last_error());
                        cr_assert_eq((uintptr_t)p % _Alignof(max_align_t), 0,
                                     "%zu bytes: aligned as glibc's malloc promises", sizes[j]);
                        cr_assert_geq(alloc_kind_malloc_usable_size(k, p), sizes[j]);
                        if (!UNDER_ASAN) {
                                /* ASan's malloc_usable_size is the size asked for; glibc's is its chunk's. */
                                void *g = malloc(sizes[j]);
                                cr_assert_geq(alloc_kind_malloc_usable_size(k, p) + 8, malloc_usable_size(g),
                                              "%zu bytes: no less room than glibc's, give or take its header word",
                                              sizes[j]);
                                free(g);
                        }
                        fill(p, sizes[j], (unsigned)i);
                        cr_assert(filled(p, sizes[j], (unsigned)i));
                        alloc_kind_free(k, p);
                }
        }
        /* Large blocks are runs of pages; 0 bytes is a unique pointer, as glibc gives. */
        void *a = alloc_kind_malloc(k, 0), *b = alloc_kind_malloc(k, 0), *big = alloc_kind_malloc(k, 5 * MiB);
        cr_assert(a && b && a != b);
        cr_assert_not_null(big, "%s", alloc_last_error());
        cr_assert_eq((uintptr_t)big % 4096, 0);
        cr_assert_geq(alloc_kind_malloc_usable_size(k, big), 5 * MiB);
        memset(big, 1, 5 * MiB);
        alloc_kind_free(k, a);
        alloc_kind_free(k, b);
        alloc_kind_free(k, big);
        alloc_kind_destroy(k);
}

Test(kind, realloc_keeps_bytes_growing_shrinking_and_moving) {
        struct alloc_memkind *k = make("h", NULL);
        size_t steps[] = {1, 15, 17, 100, 4000, 4097, 16384, 16385, 100000, 3 * MiB, 70000, 5000, 40, 1};
        unsigned char *p = NULL, *g = NULL;
        size_t have = 0;

        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                size_t n = steps[i];
                p = alloc_kind_realloc(k, p, n);
                g = realloc(g, n);
                cr_assert_not_null(p, "%zu: %s", n, alloc_last_error());
                cr_assert_eq(alloc_kind_detect(p), k);
                size_t keep = have < n ? have : n;
                cr_assert_eq(memcmp(p, g, keep), 0, "realloc to %zu kept the first %zu bytes, as glibc's", n, keep);
                fill(p + keep, n - keep, (unsigned)i);
                memcpy(g + keep, p + keep, n - keep);
                have = n;
        }
        /* In place within the usable size. */
        void *q = alloc_kind_malloc(k, 100);
        cr_assert_eq(alloc_kind_realloc(k, q, 110), q);
        /* With detection, and size 0 frees as glibc's realloc does. */
        cr_assert_null(alloc_kind_realloc(NULL, q, 0));
        cr_assert_null(alloc_kind_realloc(k, p, 0));
        free(g);
        alloc_kind_destroy(k);
}

Test(kind, calloc_zeroes_and_refuses_overflow) {
        struct alloc_memkind *k = make("h", &(struct alloc_kind_opts){.arena = ALLOC_KIND_ARENA_BIJECTIVE});
        size_t sizes[] = {24, 4096, 16384, 300000};

        for (int i = 0; i < 4; i++) {
                /* Dirty the block first, so that zeroes come from calloc, not from a fresh region. */
                void *p = alloc_kind_malloc(k, sizes[i]);
                memset(p, 0xa5, sizes[i]);
                alloc_kind_free(k, p);
                unsigned char *z = alloc_kind_calloc(k, 1, sizes[i]);
                cr_assert_eq(z, p, "the block just freed comes back");
                for (size_t j = 0; j < sizes[i]; j++)
                        cr_assert_eq(z[j], 0, "byte %zu of calloc(%zu)", j, sizes[i]);
                alloc_kind_free(k, z);
        }
        volatile size_t half = SIZE_MAX / 2; /* through a volatile: gcc refuses a constant overflowing calloc */
        errno = 0;
        cr_assert_null(alloc_kind_calloc(k, half, 3));
        cr_assert_eq(errno, ENOMEM);
        if (!UNDER_ASAN) { /* ASan's calloc aborts instead */
                errno = 0;
                cr_assert_null(calloc(half, 3));
                cr_assert_eq(errno, ENOMEM, "as glibc's");
        }
        alloc_kind_destroy(k);
}

Test(kind, posix_memalign_as_posix_says) {
        struct alloc_memkind *k = make("h", NULL);
        size_t bad[] = {0, 1, 3, 4, 24, 4097};
        void *p = (void *)0x1;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                void *g;
                errno = 4242;
                cr_assert_eq(alloc_kind_posix_memalign(k, &p, bad[i], 64), EINVAL, "alignment %zu", bad[i]);
                cr_assert_eq(errno, 4242, "errno untouched");
                cr_assert_eq(p, (void *)0x1, "*memptr untouched");
                /* ASan's posix_memalign aborts instead. */
                cr_assert(UNDER_ASAN || posix_memalign(&g, bad[i], 64) == EINVAL, "as glibc's, alignment %zu", bad[i]);
        }
        errno = 4242;
        cr_assert_eq(alloc_kind_posix_memalign(k, &p, 64, SIZE_MAX - 4096), ENOMEM);
        cr_assert_eq(errno, 4242);
        for (size_t align = sizeof(void *); align <= 4 * MiB; align *= 2) {
                size_t sizes[] = {0, 1, align / 2 + 1, align, 3 * align + 5};
                for (int j = 0; j < 5; j++) {
                        if (sizes[j] > 16 * MiB)
                                continue;
                        cr_assert_eq(alloc_kind_posix_memalign(k, &p, align, sizes[j]), 0, "%zu at %zu: %s", sizes[j],
                                     align, alloc_last_error());
                        cr_assert_eq((uintptr_t)p % align, 0, "%zu bytes aligned to %zu", sizes[j], align);
                        cr_assert_geq(alloc_kind_malloc_usable_size(k, p), sizes[j]);
                        memset(p, 0x11, sizes[j]);
                        alloc_kind_free(k, p);
                }
        }
        cr_assert_eq(errno, 4242, "no call changed errno");
        alloc_kind_destroy(k);
}

/* The pool's base in this process: a plain region's pointer less its offset. */
static uintptr_t pool_base(const char *pool) {
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, pool, 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        return (uintptr_t)r.ptr - r.addr;
}

/* Whether [p, p + n) lies inside a region of pool that allocd lists for this uid. */
static bool in_dumped_region(const struct alloc_dump *dump, uintptr_t base, const void *p, size_t n) {
        uint64_t off = (uintptr_t)p - base;

        for (size_t i = 0; i < dump->nregions; i++) {
                const struct alloc_region_info *r = &dump->regions[i];
                if (r->uid == getuid() && off >= r->addr && off + n <= r->addr + r->size)
                        return true;
        }
        return false;
}

Test(kind, every_block_lies_in_a_region_allocd_lists) {
        struct alloc_memkind *k = make("h", NULL);
        uintptr_t base = pool_base("h");
        enum { N = 3000 };
        void **p = calloc(N, sizeof(*p));
        size_t *n = calloc(N, sizeof(*n));
        struct alloc_dump *dump;
        struct alloc_kind_stats st;

        for (int i = 0; i < N; i++) {
                n[i] = i % 100 == 0 ? 200000 + (size_t)i * 13 : 1 + (size_t)i * 37 % 20000;
                p[i] = alloc_kind_malloc(k, n[i]);
                cr_assert_not_null(p[i], "%s", alloc_last_error());
        }
        cr_assert_eq(alloc_dump(c, "h", &dump), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_kind_stats(k, &st), 0);
        cr_assert_eq(dump->nregions, st.regions, "allocd lists the kind's regions, and only them");
        cr_assert_eq(pool_used(c, "h"), st.region_bytes, "allocd charges what the kind holds");
        for (int i = 0; i < N; i++)
                cr_assert(in_dumped_region(dump, base, p[i], n[i]), "block %d (%zu bytes) outside every region", i,
                          n[i]);
        alloc_dump_free(dump);
        for (int i = 0; i < N; i++)
                alloc_kind_free(k, p[i]);
        free(p);
        free(n);
        alloc_kind_destroy(k);
        cr_assert_eq(pool_used(c, "h"), 0, "destroy gave every region back");
}

/* Threads allocate, check and free blocks, half of them another thread's (passed through a shared slot table). */
#define THREADS 4
#define SLOTS 512
static struct {
        pthread_mutex_t lock;
        void *p[SLOTS];
        size_t n[SLOTS];
        unsigned seed[SLOTS];
} shared = {.lock = PTHREAD_MUTEX_INITIALIZER};
static struct alloc_memkind *stress_kind;
static _Atomic unsigned long bad;

static void *stress(void *arg) {
        unsigned x = (unsigned)(uintptr_t)arg * 2654435761u + 1;
        void *mine[64] = {0};
        size_t mine_n[64];

        for (int it = 0; it < 40000; it++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                unsigned s = x % 64;
                if (mine[s]) {
                        if (!filled(mine[s], mine_n[s], s ^ (unsigned)(uintptr_t)arg))
                                bad++;
                        if (x & 0x100) {
                                alloc_kind_free(stress_kind, mine[s]);
                        } else {
                                /* Hand it to whoever takes the shared slot; free what was there. */
                                unsigned t = (x >> 9) % SLOTS;
                                pthread_mutex_lock(&shared.lock);
                                void *old = shared.p[t];
                                size_t on = shared.n[t];
                                unsigned os = shared.seed[t];
                                shared.p[t] = mine[s], shared.n[t] = mine_n[s],
                                shared.seed[t] = s ^ (unsigned)(uintptr_t)arg;
                                pthread_mutex_unlock(&shared.lock);
                                if (old && !filled(old, on, os))
                                        bad++;
                                alloc_kind_free(NULL, old);
                        }
                        mine[s] = NULL;
                        continue;
                }
                mine_n[s] = x % 8 == 0 ? 16384 + x % 100000 : 1 + x % 2048;
                mine[s] = alloc_kind_malloc(stress_kind, mine_n[s]);
                if (!mine[s] || alloc_kind_detect(mine[s]) != stress_kind) {
                        bad++;
                        continue;
                }
                fill(mine[s], mine_n[s], s ^ (unsigned)(uintptr_t)arg);
        }
        for (int s = 0; s < 64; s++)
                alloc_kind_free(stress_kind, mine[s]);
        return NULL;
}

static void stress_run(enum alloc_kind_arena_policy policy) {
        pthread_t t[THREADS];

        stress_kind = make("h", &(struct alloc_kind_opts){.arena = policy, .usage = ALLOC_KIND_USAGE_CONSERVATIVE});
        /* Conservative from the start would keep no caches: switch to the default, so both paths run. */
        cr_assert_eq(alloc_kind_update_memory_usage_policy(stress_kind, ALLOC_KIND_USAGE_DEFAULT), 0);
        for (uintptr_t i = 0; i < THREADS; i++)
                cr_assert_eq(pthread_create(&t[i], NULL, stress, (void *)(i + 1)), 0);
        for (int i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        cr_assert_eq(bad, 0, "%lu blocks were overwritten, lost or of another kind", (unsigned long)bad);
        for (int i = 0; i < SLOTS; i++) {
                cr_assert(!shared.p[i] || filled(shared.p[i], shared.n[i], shared.seed[i]));
                alloc_kind_free(stress_kind, shared.p[i]);
                shared.p[i] = NULL;
        }
        /* Every thread's cache went back as it ended: conservative now leaves no region held. */
        cr_assert_eq(alloc_kind_update_memory_usage_policy(stress_kind, ALLOC_KIND_USAGE_CONSERVATIVE), 0);
        cr_assert_eq(pool_used(c, "h"), 0, "every block came back and every region went");
        alloc_kind_destroy(stress_kind);
}

Test(kind, threads_share_blocks_thread_arenas) {
        stress_run(ALLOC_KIND_ARENA_THREAD);
}

Test(kind, threads_share_blocks_one_arena) {
        stress_run(ALLOC_KIND_ARENA_BIJECTIVE);
}

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
        cr_assert_eq(kill(d.pid, SIGSTOP), 0);
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
        pid_t pid = fork();

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
