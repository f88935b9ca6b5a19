/* SPDX-License-Identifier: MIT */
/*
 * kind-engines: the measurement that chose the kinds' engine (issue 16;
 * docs/PERFORMANCE.md, "Kinds").  One program per engine, since Debian's
 * jemalloc and mimalloc both replace malloc in any program that links them:
 * kind-engine-glibc (the baseline), kind-engine-jemalloc (an arena with
 * extent hooks over the region, and an explicit tcache, as memkind makes
 * them) and kind-engine-mimalloc (mi_manage_os_memory_ex + a heap in that
 * arena).  The region is a memfd mapping, as an allocd region is.  Each
 * prints what it found about the engine's constraints, then malloc + free
 * pairs and batches of 64, 16-4096 B, three times; run them interleaved:
 *
 *   for i in 1 2 3; do for e in glibc jemalloc mimalloc; do build/bench/kind-engine-$e; done; done
 *
 * Built only where libjemalloc-dev and libmimalloc-dev are installed (not by
 * install-deps.sh: the kinds use neither).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#if defined(ENGINE_JE)
#include <jemalloc/jemalloc.h>
#elif defined(ENGINE_MI)
#include <mimalloc.h>
#endif

#define POOL (256ull << 20)
static uint8_t *pool;
static size_t sizes[1024];

static double now(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec + t.tv_nsec * 1e-9;
}

static void map_pool(void) {
        int fd = memfd_create("pool", MFD_CLOEXEC);
        uint8_t *p;

        if (fd < 0 || ftruncate(fd, POOL + (32 << 20)) < 0 ||
            (p = mmap(NULL, POOL + (32 << 20), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
                perror("memfd");
                exit(1);
        }
        pool = (uint8_t *)(((uintptr_t)p + (32 << 20) - 1) & ~(uintptr_t)((32 << 20) - 1));
}

#if defined(ENGINE_JE)
static size_t used;
static unsigned hook_allocs;

static void *hook_alloc(extent_hooks_t *h, void *addr, size_t size, size_t align, bool *zero, bool *commit,
                        unsigned ind) {
        (void)h;
        (void)ind;
        if (addr)
                return NULL;
        size_t start = (used + align - 1) & ~(align - 1);
        if (start + size > POOL)
                return NULL;
        used = start + size;
        hook_allocs++;
        *zero = false;
        *commit = true;
        return pool + start;
}
static extent_hooks_t hooks = {.alloc = hook_alloc};
static unsigned arena;
static unsigned tc;
static void *e_malloc(size_t s) {
        return mallocx(s, MALLOCX_ARENA(arena) | MALLOCX_TCACHE(tc));
}
static void e_free(void *p) {
        dallocx(p, MALLOCX_TCACHE(tc));
}
static void setup(void) {
        extent_hooks_t *hp = &hooks;
        size_t sz = sizeof(arena);
        if (mallctl("arenas.create", &arena, &sz, &hp, sizeof(hp))) {
                puts("arenas.create failed");
                exit(1);
        }
        printf("jemalloc: hook allocations before the first mallocx (arena metadata in the region): %u (%zu bytes)\n",
               hook_allocs, used);
        sz = sizeof(tc);
        if (mallctl("tcache.create", &tc, &sz, NULL, 0)) {
                puts("tcache.create failed");
                exit(1);
        }
}
#elif defined(ENGINE_MI)
static mi_heap_t *heap;
static void *e_malloc(size_t s) {
        return mi_heap_malloc(heap, s);
}
static void e_free(void *p) {
        mi_free(p);
}
static void setup(void) {
        mi_arena_id_t id;
        size_t tries[] = {2 << 20, 16 << 20, 32 << 20, 64 << 20};
        for (int i = 0; i < 4; i++) {
                bool ok = mi_manage_os_memory_ex(pool + (i ? 64 << 20 : 0) * i, tries[i], true, false, false, -1, true,
                                                 &id);
                printf("mimalloc: mi_manage_os_memory_ex(%zu MiB): %s\n", tries[i] >> 20, ok ? "ok" : "refused");
                if (ok && tries[i] >= (32 << 20))
                        break;
        }
        heap = mi_heap_new_in_arena(id);
        void *p = mi_heap_malloc(heap, 64);
        size_t sz;
        uint8_t *a = mi_arena_area(id, &sz);
        printf("mimalloc: arena at %p, block at %p; bytes written in the arena's first 64 KiB by the allocator: ",
               (void *)a, p);
        unsigned n = 0;
        for (size_t i = 0; i < 65536; i++)
                n += a[i] != 0;
        printf("%u\n", n);
        mi_free(p);
}
#else
static void *e_malloc(size_t s) {
        return malloc(s);
}
static void e_free(void *p) {
        free(p);
}
static void setup(void) {
}
#endif

int main(void) {
        map_pool();
        setup();
        uint64_t x = 88172645463325252ull;
        for (int i = 0; i < 1024; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                sizes[i] = 16 + x % 4081;
        }
        void *ptrs[64];
        for (int round = 0; round < 3; round++) {
                size_t n = 20000000;
                double t = now();
                for (size_t i = 0; i < n; i++) {
                        void *p = e_malloc(sizes[i & 1023]);
                        *(volatile char *)p = 1;
                        e_free(p);
                }
                double pair = (now() - t) / n * 1e9;
                t = now();
                for (size_t i = 0; i < n / 64; i++) {
                        for (int k = 0; k < 64; k++) {
                                ptrs[k] = e_malloc(sizes[(i * 64 + k) & 1023]);
                                *(volatile char *)ptrs[k] = 1;
                        }
                        for (int k = 0; k < 64; k++)
                                e_free(ptrs[k]);
                }
                double batch = (now() - t) / (n / 64 * 64) * 1e9;
                printf("%s pair %.1f ns  batch64 %.1f ns\n", ENGINE_NAME, pair, batch);
        }
        return 0;
}
