/* SPDX-License-Identifier: MIT */
/*
 * A kind's arena: the regions it holds from allocd (chunks) and what is
 * carved from them.
 *
 * Theory.  A chunk is one region, a multiple of 2 MiB starting at a
 * multiple of 2 MiB (kind-map.c finds it by pointer).  Its pages (4 KiB) are
 * handed out by a range allocator of its own (common/range.c, which keeps
 * its bookkeeping apart from the memory it manages, as a gpu pool needs):
 *
 *   - a slab is 64 KiB of pages, aligned to 64 KiB, cut into blocks of one
 *     size class; a bitmap of its free blocks is the only record of them;
 *   - a run is the pages of one block over 16 KiB (or one aligned past what
 *     a class gives), rounded to pages.
 *
 * The chunk's page table says, for each page, which slab it belongs to or
 * where a run starts and how long it is, so that free and usable size need
 * the pointer only.  A range allocator per chunk, not per arena, because
 * allocd hands out adjacent regions and one allocator over them would merge
 * them and could place a run across two, which could then never go back.
 *
 * Blocks are handed out to the threads' caches in batches (kind-cache.c)
 * and come back in batches, so the arena's lock is taken once per batch,
 * not per block.  A slab with no block in use goes back to its chunk at
 * once, and a chunk with nothing in it goes back to allocd when its decay
 * has passed (the conservative policy: at once), checked whenever the
 * arena's lock is taken, as jemalloc decays without background threads.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client-internal.h"
#include "kind-internal.h"

const uint32_t kind_class_size[KIND_NCLASSES] = {
        16,  32,   48,   64,   80,   96,   112,  128,  160,  192,  224,  256,  320,  384,  448,   512,   640,   768,
        896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384,
};
uint8_t kind_class_of16[KIND_SMALL_MAX / 16 + 1];

static void classes_fill(void) {
        unsigned cls = 0;

        for (unsigned i = 0; i <= KIND_SMALL_MAX / 16; i++) {
                while (kind_class_size[cls] < (i ? i * 16 : 16))
                        cls++;
                kind_class_of16[i] = (uint8_t)cls;
        }
}

void kind_classes_init(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, classes_fill);
}

static uint64_t now_ns(void) {
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int kind_arena_init(struct kind_arena *a, struct alloc_memkind *kind) {
        memset(a, 0, sizeof(*a));
        a->kind = kind;
        return -pthread_mutex_init(&a->lock, NULL);
}

static size_t page_index(const struct kind_chunk *c, uintptr_t p) {
        return (p - c->base) >> KIND_PAGE_SHIFT;
}

/* Frees c's metadata, slabs included; with release, gives its region back to allocd first. */
static void chunk_free(struct kind_arena *a, struct kind_chunk *c, bool release) {
        struct alloc_memkind *k = a->kind;

        /*
         * A failure means the connection is gone, and with it the region.  After allocd restarted
         * without its state the region is gone too, and its id may name another region now.
         */
        if (release && c->afresh == client_afresh(k->client)) {
                alloc_region_free(k->client, c->region_id);
                atomic_fetch_add(&k->round_trips, 1);
        }
        atomic_fetch_sub(&k->regions, 1);
        atomic_fetch_sub(&k->region_bytes, c->size);
        /* A slab's pages all point to it, and the first one met is its first: free it there, skip the rest. */
        for (size_t i = 0; i < c->size >> KIND_PAGE_SHIFT;) {
                uintptr_t pg = c->pages[i];
                if (pg && !(pg & 1)) {
                        free((struct kind_slab *)pg);
                        i += KIND_SLAB_SIZE >> KIND_PAGE_SHIFT;
                } else {
                        i += pg ? pg >> 1 : 1;
                }
        }
        range_arena_free(c->space);
        free(c);
}

void kind_arena_fini(struct kind_arena *a, bool release) {
        while (!LIST_EMPTY(&a->chunks)) {
                struct kind_chunk *c = LIST_FIRST(&a->chunks);
                LIST_REMOVE(c, link);
                kind_map_remove(c);
                chunk_free(a, c, release);
        }
        pthread_mutex_destroy(&a->lock);
}

void kind_arena_decay(struct kind_arena *a) {
        struct alloc_memkind *k = a->kind;
        uint64_t decay, now;

        if (!a->nempty)
                return;
        decay = atomic_load(&k->usage) == ALLOC_KIND_USAGE_CONSERVATIVE ? 0 : atomic_load(&k->decay_ms) * 1000000ull;
        now = now_ns();
        for (struct kind_chunk *c = LIST_FIRST(&a->chunks), *next; c; c = next) {
                next = LIST_NEXT(c, link);
                if (c->used || now - c->empty_since_ns < decay)
                        continue;
                LIST_REMOVE(c, link);
                a->nempty--;
                kind_map_remove(c); /* under the lock: no one finds it between here and its free */
                LIST_INSERT_HEAD(&a->doomed, c, link);
        }
}

void kind_arena_unlock(struct kind_arena *a) {
        struct kind_chunk *c = LIST_FIRST(&a->doomed);

        LIST_INIT(&a->doomed);
        pthread_mutex_unlock(&a->lock);
        while (c) {
                struct kind_chunk *next = LIST_NEXT(c, link);
                chunk_free(a, c, true);
                c = next;
        }
}

/* c's used bytes change by delta; a chunk that empties waits for its decay, or goes at once.  Lock held. */
static void chunk_use(struct kind_arena *a, struct kind_chunk *c, ssize_t delta) {
        if (!c->used && delta > 0)
                a->nempty--;
        c->used += (size_t)delta;
        if (!c->used) {
                a->nempty++;
                c->empty_since_ns = now_ns();
                kind_arena_decay(a);
        }
}

/* Makes r a chunk of a; lock held.  On failure r is given back to allocd. */
static int adopt(struct kind_arena *a, const struct alloc_region *r, uint64_t afresh) {
        struct alloc_memkind *k = a->kind;
        uintptr_t base = k->device ? (uintptr_t)r->dev_ptr : (uintptr_t)r->ptr;
        struct kind_chunk *c = calloc(1, sizeof(*c) + (r->size >> KIND_PAGE_SHIFT) * sizeof(c->pages[0]));
        int e;

        if (!c) {
                e = client_fail(-ENOMEM, "out of memory for a region's page table");
                goto fail;
        }
        *c = (struct kind_chunk){
                .kind = k, .arena = a, .region_id = r->id, .afresh = afresh, .base = base, .size = r->size};
        e = range_arena_new(&c->space, KIND_PAGE);
        if (e == 0)
                e = range_add(c->space, base, r->size);
        if (e == 0)
                e = kind_map_add(c);
        if (e < 0) {
                bool misplaced = e == -EINVAL || e == -EDOM;
                e = client_fail(misplaced ? -EINVAL : -ENOMEM, "region %llu of pool %s at %#lx cannot be a kind's: %s",
                                (unsigned long long)r->id, k->pool, (unsigned long)base,
                                misplaced ? "not a multiple of 2 MiB at a multiple of 2 MiB" : "out of memory");
                range_arena_free(c->space);
                free(c);
                goto fail;
        }
        LIST_INSERT_HEAD(&a->chunks, c, link);
        a->nempty++;
        c->empty_since_ns = now_ns();
        atomic_fetch_add(&k->regions, 1);
        atomic_fetch_add(&k->region_bytes, r->size);
        return 0;
fail:
        alloc_region_free(k->client, r->id);
        atomic_fetch_add(&k->round_trips, 1);
        return e;
}

int kind_arena_adopt(struct kind_arena *a, const struct alloc_region *r, uint64_t afresh) {
        int e;

        pthread_mutex_lock(&a->lock);
        e = adopt(a, r, afresh);
        kind_arena_unlock(a);
        return e;
}

/*
 * Adds a region of at least size bytes, aligned to align, to the arena.  Lock held, and let go
 * while allocd is asked: the request may wait for room, and the frees of other threads into
 * this arena may be what makes it.  The caller looks at the chunks again after this.
 */
static int arena_grow(struct kind_arena *a, size_t size, size_t align) {
        struct alloc_memkind *k = a->kind;
        uint64_t want = size > k->region_size
                                ? (size + ALLOC_KIND_REGION_UNIT - 1) & ~(uint64_t)(ALLOC_KIND_REGION_UNIT - 1)
                                : k->region_size;
        struct alloc_opts o = {.align = align > ALLOC_KIND_REGION_UNIT ? align : ALLOC_KIND_REGION_UNIT,
                               .flags = k->region_flags,
                               .timeout_ms = k->timeout_ms};
        struct alloc_region r;
        uint64_t afresh;
        int e;

        if (size > SIZE_MAX - ALLOC_KIND_REGION_UNIT)
                return client_fail(-ENOMEM, "%zu bytes is more than any region", size);
        kind_arena_unlock(a);
        afresh = client_afresh(k->client);
        e = alloc_region_new(k->client, k->pool, want, &o, &r);
        pthread_mutex_lock(&a->lock);
        atomic_fetch_add(&k->round_trips, 1);
        if (e < 0)
                return e;
        return adopt(a, &r, afresh);
}

/*
 * size bytes of pages aligned to align from some chunk, growing the arena
 * if none has room; a run shorter than 2 MiB stays inside one 2 MiB unit.
 * Lock held.  0, or a negative errno with alloc_last_error set.
 */
static int pages_take(struct kind_arena *a, size_t size, size_t align, struct kind_chunk **ret_chunk, uintptr_t *ret) {
        struct range_req q = {.align = align, .boundary = size <= ALLOC_KIND_REGION_UNIT ? ALLOC_KIND_REGION_UNIT : 0};
        struct kind_chunk *c;
        uint64_t start;
        int e;

        for (int tries = 0; tries < 2; tries++) {
                LIST_FOREACH(c, &a->chunks, link) {
                        if (c->size - c->used < size || range_alloc(c->space, size, &q, &start) < 0)
                                continue;
                        chunk_use(a, c, (ssize_t)size);
                        *ret_chunk = c;
                        *ret = (uintptr_t)start;
                        return 0;
                }
                if (tries == 0 && (e = arena_grow(a, size, align)) < 0)
                        return e;
        }
        return client_fail(-ENOMEM, "a new region of pool %s has no room for %zu bytes", a->kind->pool, size);
}

/* A slab of class cls, on the arena's list; NULL (alloc_last_error set) if there is no room.  Lock held. */
static struct kind_slab *slab_new(struct kind_arena *a, unsigned cls) {
        uint32_t nblocks = KIND_SLAB_SIZE / kind_class_size[cls];
        size_t words = (nblocks + 63) / 64;
        struct kind_chunk *c;
        struct kind_slab *s = calloc(1, sizeof(*s) + words * sizeof(uint64_t));
        uintptr_t base;

        if (!s) {
                client_fail(-ENOMEM, "out of memory for a slab's bitmap");
                return NULL;
        }
        if (pages_take(a, KIND_SLAB_SIZE, KIND_SLAB_SIZE, &c, &base) < 0) {
                free(s);
                return NULL;
        }
        *s = (struct kind_slab){.chunk = c, .base = base, .cls = cls, .nblocks = nblocks, .nfree = nblocks};
        memset(s->free_map, 0xff, words * sizeof(uint64_t));
        if (nblocks % 64)
                s->free_map[words - 1] = (1ull << (nblocks % 64)) - 1;
        for (size_t i = 0; i < KIND_SLAB_SIZE >> KIND_PAGE_SHIFT; i++)
                c->pages[page_index(c, base) + i] = (uintptr_t)s;
        LIST_INSERT_HEAD(&a->partial[cls], s, link);
        return s;
}

unsigned kind_arena_take(struct kind_arena *a, unsigned cls, void **out, unsigned n) {
        uint32_t size = kind_class_size[cls];
        unsigned got = 0;

        pthread_mutex_lock(&a->lock);
        while (got < n) {
                struct kind_slab *s = LIST_FIRST(&a->partial[cls]);
                if (!s && !(s = slab_new(a, cls)))
                        break;
                for (size_t w = 0; got < n && s->nfree; w++) {
                        while (s->free_map[w] && got < n) {
                                unsigned bit = (unsigned)__builtin_ctzll(s->free_map[w]);
                                s->free_map[w] &= s->free_map[w] - 1;
                                s->nfree--;
                                out[got++] = (void *)(s->base + (w * 64 + bit) * size);
                        }
                }
                if (!s->nfree)
                        LIST_REMOVE(s, link);
        }
        kind_arena_decay(a);
        kind_arena_unlock(a);
        return got;
}

void *kind_arena_take_run(struct kind_arena *a, size_t size, size_t align) {
        struct kind_chunk *c;
        uintptr_t p = 0;
        size_t pages;

        if (size > SIZE_MAX - KIND_PAGE) {
                client_fail(-ENOMEM, "%zu bytes is more than any region", size);
                return NULL;
        }
        pages = (size + KIND_PAGE - 1) & ~(KIND_PAGE - 1);
        pthread_mutex_lock(&a->lock);
        if (pages_take(a, pages, align > KIND_PAGE ? align : KIND_PAGE, &c, &p) == 0)
                c->pages[page_index(c, p)] = (pages >> KIND_PAGE_SHIFT) << 1 | 1;
        kind_arena_decay(a);
        kind_arena_unlock(a);
        return (void *)p;
}

/* Gives back one block of c; the arena's lock is held. */
static void give_one(struct kind_arena *a, struct kind_chunk *c, uintptr_t p) {
        size_t i = page_index(c, p);
        uintptr_t pg = c->pages[i];
        struct kind_slab *s = (struct kind_slab *)pg;
        size_t b;

        if (pg & 1) {
                size_t size = (pg >> 1) << KIND_PAGE_SHIFT;
                c->pages[i] = 0;
                range_free(c->space, p, size);
                chunk_use(a, c, -(ssize_t)size);
                return;
        }
        b = (p - s->base) / kind_class_size[s->cls];
        s->free_map[b / 64] |= 1ull << (b % 64);
        if (s->nfree++ == 0)
                LIST_INSERT_HEAD(&a->partial[s->cls], s, link);
        if (s->nfree < s->nblocks)
                return;
        /* Nothing in it: its pages go back to the chunk, and the chunk may then go back to allocd. */
        LIST_REMOVE(s, link);
        for (size_t k = 0; k < KIND_SLAB_SIZE >> KIND_PAGE_SHIFT; k++)
                c->pages[page_index(c, s->base) + k] = 0;
        range_free(c->space, s->base, KIND_SLAB_SIZE);
        free(s);
        chunk_use(a, c, -(ssize_t)KIND_SLAB_SIZE);
}

void kind_arena_give(void *const *blocks, unsigned n) {
        struct kind_arena *held = NULL;

        for (unsigned i = 0; i < n; i++) {
                struct kind_chunk *c = kind_map_find(blocks[i]);
                /* Blocks of one thread's cache mostly come from one arena: its lock is kept across them. */
                if (c->arena != held) {
                        if (held)
                                kind_arena_unlock(held);
                        held = c->arena;
                        pthread_mutex_lock(&held->lock);
                }
                give_one(held, c, (uintptr_t)blocks[i]);
        }
        if (held)
                kind_arena_unlock(held);
}

size_t kind_block_size(const struct kind_chunk *c, const void *ptr) {
        uintptr_t pg = c->pages[page_index(c, (uintptr_t)ptr)];

        if (pg & 1)
                return (pg >> 1) << KIND_PAGE_SHIFT;
        return kind_class_size[((const struct kind_slab *)pg)->cls];
}
