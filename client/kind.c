/* SPDX-License-Identifier: MIT */
/*
 * Kinds: memkind's operations over regions of allocd's pools (alloc/kind.h).
 *
 * This file is the API and its argument checks; the memory is carved by
 * kind-arena.c, cached per thread by kind-cache.c and found by pointer by
 * kind-map.c.  A small block's malloc and free are a thread-local load, a
 * table lookup and a stack push or pop (kind-cache.c); everything else takes
 * an arena's lock, and only a region's arrival or departure talks to allocd.
 *
 * Why our own allocator and not jemalloc's or mimalloc's arenas: measured
 * and argued in docs/PERFORMANCE.md ("Kinds"); in short, neither can keep
 * its metadata out of the regions or give a region back, and Debian builds
 * both to replace the process's malloc.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client-internal.h"
#include "kind-internal.h"

#define REGION_FLAGS_OK (ALLOC_NOWAIT | ALLOC_NOFAIL)

static int check_opts(const struct alloc_kind_opts *o) {
        if (o->arena != ALLOC_KIND_ARENA_THREAD && o->arena != ALLOC_KIND_ARENA_BIJECTIVE)
                return client_fail(-EINVAL, "arena policy %d is neither ALLOC_KIND_ARENA_THREAD nor BIJECTIVE",
                                   (int)o->arena);
        if (o->usage != ALLOC_KIND_USAGE_DEFAULT && o->usage != ALLOC_KIND_USAGE_CONSERVATIVE)
                return client_fail(-EINVAL, "usage policy %d is neither ALLOC_KIND_USAGE_DEFAULT nor CONSERVATIVE",
                                   (int)o->usage);
        if (o->region_size % ALLOC_KIND_REGION_UNIT || o->region_size > SIZE_MAX / 2)
                return client_fail(-EINVAL, "region_size %llu is not a multiple of 2 MiB; use 2M, 4M, 64M, ...",
                                   (unsigned long long)o->region_size);
        if (o->region_flags & ~REGION_FLAGS_OK)
                return client_fail(-EINVAL,
                                   "region_flags %#x: a kind's regions take only ALLOC_NOWAIT and ALLOC_NOFAIL (zero "
                                   "memory with alloc_kind_calloc; a kind's regions end with its process)",
                                   o->region_flags);
        return 0;
}

/* What the first region says about the pool: whether it has memory, and where blocks are to be found. */
static int check_region(struct alloc_memkind *k, const struct alloc_region *r, bool device_pointers) {
        if (r->kind == ALLOC_KIND_FPGA)
                return client_fail(-EINVAL, "pool %s is an fpga pool: its addresses are no memory to carve", k->pool);
        if (r->kind == ALLOC_KIND_GPU)
                k->device = true;
        else if (device_pointers && r->kind == ALLOC_KIND_HOST)
                return client_fail(-EINVAL, "pool %s is a host pool: it has no device pointers", k->pool);
        else
                k->device = device_pointers;
        if (k->device && !r->dev_ptr)
                return client_fail(-EINVAL, "pool %s has no device pointer in this process (%s)", k->pool,
                                   alloc_cuda_unavailable() ? alloc_cuda_unavailable()
                                                            : "a pinned pool needs devicemap or backend vmm");
        k->device_ordinal = r->device;
        return 0;
}

/* Whether k was inherited through fork() (kind-cache.c): then errno EINVAL, alloc_last_error says so. */
static bool orphaned(struct alloc_memkind *k) {
        if (!k->orphan)
                return false;
        client_fail(-EINVAL,
                    "this kind (pool %s) was made before fork() by the parent process: a child makes its "
                    "own connection and kinds",
                    k->pool);
        errno = EINVAL;
        return true;
}

static struct alloc_memkind *kind_free(struct alloc_memkind *k, bool release) {
        if (!k)
                return NULL;
        if (k->registered)
                kind_registry_remove(k);
        for (unsigned i = 0; i < k->narenas_made; i++)
                kind_arena_fini(&k->arenas[i], release);
        free(k->arenas);
        pthread_mutex_destroy(&k->caches_lock);
        free(k->pool);
        free(k);
        return NULL;
}

int alloc_kind_create(struct alloc_client *c, const char *pool, const struct alloc_kind_opts *opts,
                      struct alloc_memkind **ret) {
        static const struct alloc_kind_opts none;
        struct alloc_memkind *k;
        struct alloc_region r;
        uint64_t afresh;
        long cpus;
        int e;

        client_clear_error();
        if (!c || !pool || !ret)
                return client_fail(-EINVAL, "alloc_kind_create: c, pool and ret must not be NULL");
        if (!opts)
                opts = &none;
        e = check_opts(opts);
        if (e < 0)
                return e;
        kind_classes_init();
        k = calloc(1, sizeof(*k));
        if (!k || !(k->pool = strdup(pool))) {
                free(k);
                return client_fail(-ENOMEM, "out of memory");
        }
        pthread_mutex_init(&k->caches_lock, NULL);
        k->client = c;
        k->region_size = opts->region_size ? opts->region_size : ALLOC_KIND_REGION_UNIT;
        k->region_flags = opts->region_flags;
        k->timeout_ms = opts->timeout_ms;
        k->decay_ms = opts->decay_ms ? opts->decay_ms : ALLOC_KIND_DECAY_MS;
        k->usage = opts->usage;
        cpus = sysconf(_SC_NPROCESSORS_ONLN);
        k->narenas = opts->arena == ALLOC_KIND_ARENA_BIJECTIVE ? 1 : 4 * (unsigned)(cpus > 0 ? cpus : 1);
        k->arenas = aligned_alloc(64, k->narenas * sizeof(*k->arenas));
        if (!k->arenas) {
                kind_free(k, false);
                return client_fail(-ENOMEM, "out of memory for %u arenas", k->narenas);
        }
        for (; k->narenas_made < k->narenas; k->narenas_made++) {
                e = kind_arena_init(&k->arenas[k->narenas_made], k);
                if (e < 0) {
                        kind_free(k, false);
                        return client_fail(e, "cannot make an arena's lock");
                }
        }
        e = kind_registry_add(k);
        if (e < 0) {
                kind_free(k, false);
                return client_fail(e, "%d kinds are alive in this process; destroy one first", ALLOC_KIND_MAX);
        }
        k->registered = true;
        afresh = client_afresh(c);
        /* The first region now: a pool that cannot serve the kind is refused here, not at some later malloc. */
        e = alloc_region_new(c, pool, k->region_size,
                             &(struct alloc_opts){.align = ALLOC_KIND_REGION_UNIT,
                                                  .flags = k->region_flags,
                                                  .timeout_ms = k->timeout_ms},
                             &r);
        k->round_trips = 1;
        if (e < 0) {
                kind_free(k, false);
                return e;
        }
        e = check_region(k, &r, opts->device_pointers);
        if (e < 0) {
                char why[CLIENT_ERROR_MAX];
                snprintf(why, sizeof(why), "%s", alloc_last_error());
                alloc_region_free(c, r.id);
                kind_free(k, false);
                return client_fail(e, "%s", why);
        }
        /* Into this thread's arena: the thread that makes a kind is the likeliest to use it first. */
        e = kind_arena_adopt(kind_thread_arena(k), &r, afresh);
        if (e < 0) {
                kind_free(k, false);
                return e;
        }
        *ret = k;
        return 0;
}

struct alloc_memkind *alloc_kind_destroy(struct alloc_memkind *kind) {
        /* A child of fork frees its copy of the bookkeeping; the regions are the parent's. */
        return kind_free(kind, kind && !kind->orphan);
}

void kind_connection_closing(struct alloc_client *c) {
        struct alloc_memkind *ks[ALLOC_KIND_MAX];
        unsigned n = kind_registry_of(c, ks, ALLOC_KIND_MAX);

        /* The connection's close gives allocd back every region at once: no Free each. */
        for (unsigned i = 0; i < n; i++)
                kind_free(ks[i], false);
}

int alloc_kind_update_memory_usage_policy(struct alloc_memkind *kind, enum alloc_kind_usage_policy usage) {
        client_clear_error();
        if (!kind || (usage != ALLOC_KIND_USAGE_DEFAULT && usage != ALLOC_KIND_USAGE_CONSERVATIVE))
                return client_fail(-EINVAL, "alloc_kind_update_memory_usage_policy: no kind, or policy %d unknown",
                                   (int)usage);
        if (orphaned(kind))
                return -EINVAL;
        atomic_store(&kind->usage, (int)usage);
        atomic_fetch_add(&kind->epoch, 1);
        /* This thread's cache settles now; other threads' at their next call on the kind. */
        kind_cache_get(kind);
        for (unsigned i = 0; i < kind->narenas; i++) {
                pthread_mutex_lock(&kind->arenas[i].lock);
                kind_arena_decay(&kind->arenas[i]);
                kind_arena_unlock(&kind->arenas[i]);
        }
        return 0;
}

int alloc_kind_stats(struct alloc_memkind *kind, struct alloc_kind_stats *ret) {
        if (!kind || !ret)
                return client_fail(-EINVAL, "alloc_kind_stats: kind and ret must not be NULL");
        ret->regions = atomic_load(&kind->regions);
        ret->region_bytes = atomic_load(&kind->region_bytes);
        ret->round_trips = atomic_load(&kind->round_trips);
        return 0;
}

/* A block of class cls, through this thread's cache or, without one, the arena. */
static void *small(struct alloc_memkind *k, unsigned cls) {
        struct kind_cache *tc = kind_cache_get(k);
        void *p;

        if (__builtin_expect(tc != NULL, 1))
                return kind_cache_malloc(tc, cls);
        if (orphaned(k))
                return NULL;
        if (kind_arena_take(kind_thread_arena(k), cls, &p, 1) == 1)
                return p;
        errno = ENOMEM;
        return NULL;
}

static void *run(struct alloc_memkind *k, size_t size, size_t align) {
        void *p = orphaned(k) ? NULL : kind_arena_take_run(kind_thread_arena(k), size ? size : 1, align);

        if (!p && !k->orphan)
                errno = ENOMEM;
        return p;
}

void *alloc_kind_malloc(struct alloc_memkind *kind, size_t size) {
        if (__builtin_expect(!kind, 0)) {
                errno = EINVAL;
                return NULL;
        }
        if (__builtin_expect(size <= KIND_SMALL_MAX, 1))
                return small(kind, kind_class(size));
        return run(kind, size, KIND_PAGE);
}

void *alloc_kind_calloc(struct alloc_memkind *kind, size_t count, size_t size) {
        size_t total;
        void *p;

        if (kind && kind->device) {
                client_fail(-ENOTSUP, "pool %s: the CPU cannot zero device memory; cudaMemset it", kind->pool);
                errno = ENOTSUP;
                return NULL;
        }
        if (__builtin_mul_overflow(count, size, &total)) {
                client_fail(-ENOMEM, "calloc: %zu x %zu overflows", count, size);
                errno = ENOMEM;
                return NULL;
        }
        p = alloc_kind_malloc(kind, total);
        if (p)
                memset(p, 0, total);
        return p;
}

void alloc_kind_free(struct alloc_memkind *kind, void *ptr) {
        struct kind_chunk *c;
        uintptr_t pg;

        if (!ptr)
                return;
        c = kind_map_find(ptr);
        if (__builtin_expect(!c, 0)) {
                /* No kind's: with detection it is the process heap's, as memkind hands it to MEMKIND_DEFAULT. */
                if (!kind)
                        free(ptr);
                return;
        }
        pg = c->pages[((uintptr_t)ptr - c->base) >> KIND_PAGE_SHIFT];
        if (__builtin_expect(!(pg & 1), 1)) {
                struct kind_cache *tc = kind_cache_get(c->kind);
                if (__builtin_expect(tc != NULL, 1)) {
                        kind_cache_free(tc, ptr, ((const struct kind_slab *)pg)->cls);
                        return;
                }
        }
        if (__builtin_expect(c->kind->orphan, 0))
                return; /* the parent's block (kind-cache.c) */
        kind_arena_give(&ptr, 1);
}

size_t alloc_kind_malloc_usable_size(struct alloc_memkind *kind, void *ptr) {
        struct kind_chunk *c = ptr ? kind_map_find(ptr) : NULL;

        (void)kind;
        return c ? kind_block_size(c, ptr) : 0;
}

struct alloc_memkind *alloc_kind_detect(const void *ptr) {
        return kind_map_kind(ptr);
}

void *alloc_kind_realloc(struct alloc_memkind *kind, void *ptr, size_t size) {
        struct kind_chunk *c;
        size_t old;
        void *p;

        if (!ptr)
                return kind ? alloc_kind_malloc(kind, size) : realloc(NULL, size);
        c = kind_map_find(ptr);
        if (!c) {
                if (!kind)
                        return realloc(ptr, size);
                client_fail(-EINVAL, "realloc: %p is not a block of a kind", ptr);
                errno = EINVAL;
                return NULL;
        }
        if (size == 0) {
                alloc_kind_free(c->kind, ptr);
                return NULL;
        }
        old = kind_block_size(c, ptr);
        /* In place while it fits and is not mostly empty; a device block cannot be copied by the CPU, so it stays. */
        if (size <= old && (size > old / 2 || c->kind->device))
                return ptr;
        if (c->kind->device) {
                client_fail(-ENOTSUP, "pool %s: a device block cannot grow past its %zu usable bytes", c->kind->pool,
                            old);
                errno = ENOTSUP;
                return NULL;
        }
        p = alloc_kind_malloc(c->kind, size);
        if (!p)
                return NULL;
        memcpy(p, ptr, size < old ? size : old);
        alloc_kind_free(c->kind, ptr);
        return p;
}

int alloc_kind_posix_memalign(struct alloc_memkind *kind, void **memptr, size_t alignment, size_t size) {
        int saved = errno;
        void *p = NULL;

        if (!kind || kind->orphan || !memptr || alignment < sizeof(void *) || (alignment & (alignment - 1)))
                return EINVAL;
        /* allocd aligns a region's offset, and a pool is mapped at a multiple of at most MAP_ALIGN_MAX. */
        if (alignment > MAP_ALIGN_MAX) {
                client_fail(-ENOMEM, "posix_memalign: no block of pool %s can be aligned to %zu bytes (at most %llu)",
                            kind->pool, alignment, (unsigned long long)MAP_ALIGN_MAX);
                errno = saved;
                return ENOMEM;
        }
        if (size <= KIND_SMALL_MAX && alignment <= KIND_SMALL_MAX) {
                /* Blocks lie at multiples of their class size in a slab aligned to 64 KiB: a class that
                 * is a multiple of alignment aligns every block.  The largest class is a power of two. */
                unsigned cls = kind_class(size);
                while (kind_class_size[cls] % alignment)
                        cls++;
                p = small(kind, cls);
        } else {
                p = run(kind, size, alignment);
        }
        errno = saved;
        if (!p)
                return ENOMEM;
        *memptr = p;
        return 0;
}
