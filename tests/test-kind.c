/* SPDX-License-Identifier: MIT */
/*
 * Kinds (alloc/kind.h) over a real allocd: memkind's semantics checked
 * against glibc's, every block inside the kind's regions as allocd lists
 * them, threads freeing each other's blocks under a checker.
 * test-kind-regions.c has the kinds' regions in allocd (policies, waits, two
 * pools, the end of a connection or a process); kind-common.c what both share.
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

#include "kind-common.h"

/* Every size class of kind-arena.c, so that each is checked by name. */
static const size_t classes[] = {16,   32,   48,   64,   80,   96,   112,  128,  160,   192,   224,   256,
                                 320,  384,  448,  512,  640,  768,  896,  1024, 1280,  1536,  1792,  2048,
                                 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384};

TestSuite(kind, .init = setup, .fini = teardown, .timeout = 120);

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
        /* Past what a pool's mapping is aligned to: at once, without a region asked for that cannot serve. */
        struct alloc_kind_stats st0, st;
        cr_assert_eq(alloc_kind_stats(k, &st0), 0);
        cr_assert_eq(alloc_kind_posix_memalign(k, &p, (size_t)2 << 30, 64), ENOMEM);
        cr_assert(strstr(alloc_last_error(), "aligned to 2147483648 bytes"), "%s", alloc_last_error());
        cr_assert_eq(alloc_kind_stats(k, &st), 0);
        cr_assert_eq(st.round_trips, st0.round_trips, "allocd was asked for a region");
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
