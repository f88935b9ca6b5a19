/* SPDX-License-Identifier: MIT */
/*
 * The process's map from a pointer to the kind's chunk it lies in.
 *
 * Theory.  Every chunk (a region a kind holds) starts at a multiple of
 * 2 MiB and covers whole units of 2 MiB, so a pointer's unit, ptr >> 21,
 * names at most one chunk.  The map is a two-level radix table over the
 * 48-bit user address space: a static root of 2^14 leaves, each leaf 2^13
 * chunk pointers and beside them the 2^13 kinds of those chunks (128 KiB,
 * made when the first chunk in its 16 GiB is entered and kept for the life
 * of the process).  A lookup is two dependent loads and no lock: this is
 * what free and malloc_usable_size ask (the chunk) and alloc_kind_detect
 * (the kind, without a third load from the chunk) on every call, and what
 * makes detect a few nanoseconds where memkind's jemalloc arena lookup takes
 * about 76.
 *
 * Why not the connection's pool index (pool-map.c): it is per connection,
 * while detect takes no connection, and a pool holds regions of several
 * kinds and of none; it also takes a reader lock, a shared cache line that
 * every thread's free would write.  The pool index says where a region lies;
 * this map says whose it is.
 *
 * Writers (a chunk entered or removed) hold the map's mutex; readers load
 * with acquire, so a chunk is seen whole.  A reader racing with the removal
 * of the chunk its pointer lies in holds a pointer that is being freed
 * (undefined, as free(3) of freed memory is).
 */
#include <errno.h>
#include <stdlib.h>

#include "kind-internal.h"

#define ADDR_BITS 48
#define LEAF_BITS 13
#define ROOT_BITS (ADDR_BITS - KIND_CHUNK_SHIFT - LEAF_BITS)

struct leaf {
        _Atomic(struct kind_chunk *) chunk[1u << LEAF_BITS];
        _Atomic(struct alloc_memkind *) kind[1u << LEAF_BITS]; /* chunk[i]'s kind */
};

static _Atomic(struct leaf *) root[1u << ROOT_BITS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct leaf *leaf_of(uintptr_t unit) {
        return atomic_load_explicit(&root[unit >> LEAF_BITS], memory_order_acquire);
}

/* Sets every unit of [base, base + size) to c; lock held, leaves made. */
static void set_units(uintptr_t base, size_t size, struct kind_chunk *c) {
        for (uintptr_t u = base >> KIND_CHUNK_SHIFT; u < (base + size) >> KIND_CHUNK_SHIFT; u++) {
                struct leaf *l = leaf_of(u);
                atomic_store_explicit(&l->kind[u & ((1u << LEAF_BITS) - 1)], c ? c->kind : NULL, memory_order_relaxed);
                atomic_store_explicit(&l->chunk[u & ((1u << LEAF_BITS) - 1)], c, memory_order_release);
        }
}

int kind_map_add(struct kind_chunk *c) {
        uintptr_t first = c->base >> KIND_CHUNK_SHIFT, last = (c->base + c->size - 1) >> KIND_CHUNK_SHIFT;

        if ((c->base | c->size) & ((1ul << KIND_CHUNK_SHIFT) - 1) || last >> (ROOT_BITS + LEAF_BITS))
                return -EINVAL;
        pthread_mutex_lock(&lock);
        /* Every leaf first, so that a lack of memory leaves nothing entered. */
        for (uintptr_t r = first >> LEAF_BITS; r <= last >> LEAF_BITS; r++) {
                if (atomic_load_explicit(&root[r], memory_order_relaxed))
                        continue;
                struct leaf *l = calloc(1, sizeof(*l));
                if (!l) {
                        pthread_mutex_unlock(&lock);
                        return -ENOMEM;
                }
                atomic_store_explicit(&root[r], l, memory_order_release);
        }
        set_units(c->base, c->size, c);
        pthread_mutex_unlock(&lock);
        return 0;
}

void kind_map_remove(const struct kind_chunk *c) {
        pthread_mutex_lock(&lock);
        set_units(c->base, c->size, NULL);
        pthread_mutex_unlock(&lock);
}

/* The leaf that would hold ptr's unit, or NULL; *index its place there. */
static struct leaf *find_leaf(const void *ptr, size_t *index) {
        uintptr_t unit = (uintptr_t)ptr >> KIND_CHUNK_SHIFT;

        if (unit >> (ROOT_BITS + LEAF_BITS))
                return NULL;
        *index = unit & ((1u << LEAF_BITS) - 1);
        return leaf_of(unit);
}

struct kind_chunk *kind_map_find(const void *ptr) {
        size_t i;
        struct leaf *l = find_leaf(ptr, &i);

        return l ? atomic_load_explicit(&l->chunk[i], memory_order_acquire) : NULL;
}

struct alloc_memkind *kind_map_kind(const void *ptr) {
        size_t i;
        struct leaf *l = find_leaf(ptr, &i);

        return l ? atomic_load_explicit(&l->kind[i], memory_order_relaxed) : NULL;
}
