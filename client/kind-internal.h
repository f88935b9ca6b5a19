/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_KIND_INTERNAL_H
#define ALLOC_KIND_INTERNAL_H

/*
 * What the files of kinds tell each other (alloc/kind.h is the API):
 *
 *   kind.c        the API: create, destroy, malloc and the rest, the CUDA pair
 *   kind-arena.c  an arena: the regions it holds (chunks), slabs of size
 *                 classes and page runs carved from them, decay
 *   kind-cache.c  each thread's cache of free blocks per kind, and what
 *                 happens to it when the thread or the kind ends
 *   kind-map.c    the process's table from a pointer's 2 MiB to its chunk
 *
 * Nothing here is written into the memory a kind hands out: blocks, slabs
 * and chunks are described from this process's heap only (alloc/kind.h).
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "alloc/kind.h"
#include "alloc/range.h"

#define KIND_CHUNK_SHIFT 21 /* the map's unit: ALLOC_KIND_REGION_UNIT, where every chunk starts */
#define KIND_PAGE_SHIFT 12
#define KIND_PAGE (1ul << KIND_PAGE_SHIFT)
#define KIND_SLAB_SIZE (64ul << 10) /* a slab of one size class */
#define KIND_SMALL_MAX 16384ul      /* larger blocks are runs of pages */
#define KIND_NCLASSES 36
#define KIND_CACHE_MAX 64 /* blocks a thread keeps per class, at most */

/* The size classes: multiples of 16, then four per doubling, as jemalloc's. */
extern const uint32_t kind_class_size[KIND_NCLASSES];
extern uint8_t kind_class_of16[KIND_SMALL_MAX / 16 + 1]; /* by (size + 15) / 16; kind_classes_init fills it */
void kind_classes_init(void);

static inline unsigned kind_class(size_t size) {
        return kind_class_of16[(size + 15) >> 4];
}

struct kind_arena;

/* One region held from allocd. */
struct kind_chunk {
        struct alloc_memkind *kind;
        struct kind_arena *arena;
        uint64_t region_id;
        uint64_t afresh; /* the connection's client_afresh before the region was asked for */
        uintptr_t base;  /* where blocks are: the region's host pointer, or its device pointer */
        size_t size;
        size_t used;                 /* bytes of its pages in slabs and runs */
        uint64_t empty_since_ns;     /* when used last fell to 0 */
        struct range_arena *space;   /* its free and used pages, by address */
        LIST_ENTRY(kind_chunk) link; /* in its arena's list */
        /* Per page: 0 (free, or inside a run), a struct kind_slab * (every page of a slab), or a run's start: pages <<
         * 1 | 1. */
        uintptr_t pages[];
};

/* A slab of one class; its free blocks are the set bits of free_map. */
struct kind_slab {
        struct kind_chunk *chunk;
        uintptr_t base;
        uint32_t cls, nblocks, nfree;
        LIST_ENTRY(kind_slab) link; /* in its arena's list of slabs of its class with a free block */
        uint64_t free_map[];
};

struct kind_arena {
        pthread_mutex_t lock;
        struct alloc_memkind *kind;
        LIST_HEAD(, kind_slab) partial[KIND_NCLASSES];
        LIST_HEAD(, kind_chunk) chunks; /* the latest first */
        unsigned nempty;                /* chunks with nothing in them, waiting for their decay */
        LIST_HEAD(, kind_chunk) doomed; /* decayed, given back to allocd by kind_arena_unlock, after the lock */
} __attribute__((aligned(64)));

struct kind_cache;

struct alloc_memkind {
        /* Read on every call: the map (kind-cache.c) finds this thread's cache by id and serial. */
        unsigned id;
        uint64_t serial;
        _Atomic unsigned epoch; /* rises when the usage policy changes: each thread's cache is settled again */
        _Atomic int usage;
        bool device; /* blocks are device pointers: the CPU never touches them */
        unsigned narenas;
        struct kind_arena *arenas;
        unsigned narenas_made; /* initialised so far (a create that fails frees those) */
        bool registered;
        bool orphan;        /* inherited through fork(): the parent's, never used or given back here (kind-cache.c) */
        int device_ordinal; /* the pool's CUDA device here, -1: none */

        struct alloc_client *client;
        char *pool;
        uint64_t region_size;
        uint32_t region_flags, timeout_ms;
        _Atomic uint32_t decay_ms;
        _Atomic uint64_t regions, region_bytes, round_trips;

        pthread_mutex_t caches_lock; /* the list below */
        LIST_HEAD(, kind_cache) caches;
};

/* kind-map.c */

/* Enters every 2 MiB of c; -ENOMEM if the map could not grow (then nothing is entered). */
int kind_map_add(struct kind_chunk *c);
void kind_map_remove(const struct kind_chunk *c);
/* The chunk that ptr lies in, or NULL: two loads, no lock. */
struct kind_chunk *kind_map_find(const void *ptr);
/* Its kind, or NULL, without a load from the chunk. */
struct alloc_memkind *kind_map_kind(const void *ptr);

/* kind-arena.c */

int kind_arena_init(struct kind_arena *a, struct alloc_memkind *kind);
/* Frees its metadata; with release, gives its regions back to allocd first (not when the connection is closing). */
void kind_arena_fini(struct kind_arena *a, bool release);
/* Up to n blocks of class cls into out; the count (0: none, errno ENOMEM, alloc_last_error says why). */
unsigned kind_arena_take(struct kind_arena *a, unsigned cls, void **out, unsigned n);
/* A run of pages for a block over KIND_SMALL_MAX (or aligned past a page); NULL and ENOMEM. */
void *kind_arena_take_run(struct kind_arena *a, size_t size, size_t align);
/* Gives back n blocks of any arena of the kind, each to its own arena. */
void kind_arena_give(void *const *blocks, unsigned n);
/* The usable size of the block at ptr in chunk c. */
size_t kind_block_size(const struct kind_chunk *c, const void *ptr);
/*
 * Makes region r (a multiple of 2 MiB at a multiple of 2 MiB) a chunk of a; lock not held.  afresh is
 * client_afresh before r was asked for.  On failure r is given back.
 */
int kind_arena_adopt(struct kind_arena *a, const struct alloc_region *r, uint64_t afresh);
/* Gives chunks empty for longer than the decay (all of them, for the conservative policy) back to allocd. */
void kind_arena_decay(struct kind_arena *a);
/*
 * Lets go of a's lock, then gives the chunks decay took back to allocd: a free may wait for the
 * connection (another thread's request on it), and nobody should wait for that on the arena.
 */
void kind_arena_unlock(struct kind_arena *a);

/* kind-cache.c: each thread's cache of free blocks, per kind; the fast path is inline, below. */

struct kind_bin {
        uint32_t n, cap;
        void *blocks[KIND_CACHE_MAX]; /* a stack: the latest freed is the first handed out */
};

struct kind_cache {
        struct kind_arena *arena;    /* this thread's arena of the kind */
        unsigned epoch;              /* the kind's when the cache was last settled */
        LIST_ENTRY(kind_cache) link; /* in the kind's list */
        struct kind_bin bins[KIND_NCLASSES];
};

/* A thread's caches, by kind id; serial tells a live kind from an earlier one that had its id. */
struct kind_dir {
        struct {
                uint64_t serial;
                struct kind_cache *cache;
        } e[ALLOC_KIND_MAX];
};

extern __thread struct kind_dir *kind_tl_dir;

/* kind_cache_get's way when the thread has no settled cache for kind: makes it, settles it, or says none. */
struct kind_cache *kind_cache_slow(struct alloc_memkind *kind);
/* A cache bin ran dry: refills it from the arena.  NULL, errno ENOMEM, if there is no room. */
void *kind_cache_refill(struct kind_cache *tc, unsigned cls);
/* A cache bin is full: gives its older half back to the arenas. */
void kind_cache_spill(struct kind_bin *b);

/* This thread's cache for kind, or NULL where the policy keeps none (or out of memory). */
static inline struct kind_cache *kind_cache_get(struct alloc_memkind *kind) {
        struct kind_dir *d = kind_tl_dir;

        if (__builtin_expect(d != NULL, 1)) {
                struct kind_cache *tc = d->e[kind->id].cache;
                if (__builtin_expect(d->e[kind->id].serial == kind->serial && tc != NULL &&
                                             tc->epoch == atomic_load_explicit(&kind->epoch, memory_order_relaxed),
                                     1))
                        return tc;
        }
        return kind_cache_slow(kind);
}

static inline void *kind_cache_malloc(struct kind_cache *tc, unsigned cls) {
        struct kind_bin *b = &tc->bins[cls];

        if (__builtin_expect(b->n != 0, 1))
                return b->blocks[--b->n];
        return kind_cache_refill(tc, cls);
}

static inline void kind_cache_free(struct kind_cache *tc, void *ptr, unsigned cls) {
        struct kind_bin *b = &tc->bins[cls];

        if (__builtin_expect(b->n == b->cap, 0))
                kind_cache_spill(b);
        b->blocks[b->n++] = ptr;
}

/* The arena of this thread for kind, cache or not. */
struct kind_arena *kind_thread_arena(struct alloc_memkind *kind);
/* Registers the kind (id, serial); -EMFILE when ALLOC_KIND_MAX are alive. */
int kind_registry_add(struct alloc_memkind *kind);
/* Unregisters it and frees every thread's cache of it (the blocks in them stay its arenas'). */
void kind_registry_remove(struct alloc_memkind *kind);
/* The kinds made on connection c (for alloc_disconnect); fills up to max, returns the count. */
unsigned kind_registry_of(struct alloc_client *c, struct alloc_memkind **out, unsigned max);

/* kind.c */

/* alloc_disconnect(c): destroys the kinds made on c, leaving their regions to the connection's close. */
void kind_connection_closing(struct alloc_client *c);

#endif
