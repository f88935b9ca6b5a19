/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_RANGE_H
#define ALLOC_RANGE_H

/*
 * A constraint-aware allocator of integer ranges: offsets inside a pool, or
 * addresses in a device's logical address space.  It never touches the memory
 * it manages; all bookkeeping lives in the arena.
 *
 * An arena is not locked: callers that share one between threads serialise
 * access themselves.  Every function returns 0 or a negative errno value:
 *
 *   -EINVAL     size 0, a NULL argument, or (range_free) a size that does not
 *               match the live range
 *   -EDOM       quantum, align or boundary not a power of two; phase not a
 *               multiple of the quantum or not below align; span or policy
 *               not valid for the arena
 *   -ERANGE     window with low >= high
 *   -EMSGSIZE   the range cannot fit inside one boundary block
 *               (boundary < size, or phase puts every start too late)
 *   -EOVERFLOW  size rounded up to the quantum, or start + size, passes 2^64
 *               (range_add: reaches it)
 *   -EEXIST     range_add: span overlaps one already added
 *   -ENOENT     range_free/range_query: not the start of a live range
 *   -ENOSPC     no free placement satisfies the request now
 *   -ENOMEM     the arena could not grow its own metadata
 */

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct range_arena;

enum range_policy {
        RANGE_INSTANTFIT = 0, /* O(1) from power-of-two size classes; the default */
        RANGE_BESTFIT = 1,    /* the smallest free segment that can hold it */
        RANGE_NEXTFIT = 2,    /* first fit from just after the previous next-fit range */
};

/*
 * Placement constraints, as contigmalloc(9) and vmem_xalloc(9) take them.
 * A zero-initialised struct (or a NULL pointer) means "no constraint".
 */
struct range_req {
        uint64_t align;    /* power of two; 0 = the quantum */
        uint64_t phase;    /* start % align == phase; a multiple of the quantum */
        uint64_t boundary; /* power of two; the range never crosses a multiple of it; 0 = none */
        uint64_t low;      /* the range lies inside [low, high) */
        uint64_t high;     /* 0 = no upper limit */
        enum range_policy policy;
};

struct range_stats {
        uint64_t quantum;
        uint64_t total;        /* bytes in all spans */
        uint64_t in_use;       /* bytes in live ranges */
        uint64_t free;         /* total - in_use */
        uint64_t largest_free; /* size of the largest free segment */
        uint64_t free_segments;
        uint64_t used_segments;
        uint64_t meta_bytes; /* memory the arena holds for its own bookkeeping, heap and mappings (range_free) */
};

struct range_seg {
        uint64_t start;
        uint64_t size;
        bool used;
};

/* Stops the walk when it returns non-zero; range_walk then returns that value. */
typedef int (*range_walk_fn)(const struct range_seg *seg, void *userdata);

/* quantum: the smallest unit handed out, a power of two; every size is rounded up to it. */
int range_arena_new(struct range_arena **ret, uint64_t quantum);
/* Accepts NULL; always returns NULL. */
struct range_arena *range_arena_free(struct range_arena *arena);

/*
 * Adds [start, start + size) as free space.  start and size must be multiples
 * of the quantum and start + size must be below 2^64: no span holds the last
 * address, 2^64 - 1, so that every end is a 64-bit number.  A span that
 * touches an existing one merges with it.
 */
int range_add(struct range_arena *arena, uint64_t start, uint64_t size);

/* On success *ret is the start of a range of size bytes (rounded up to the quantum). */
int range_alloc(struct range_arena *arena, uint64_t size, const struct range_req *req, uint64_t *ret);

/*
 * 0 if range_alloc(arena, size, req) would succeed now (where is the policy's
 * choice; whether is not), -ENOSPC if not, or the error it would return;
 * takes nothing.  For a narrow window O(log n), as range_alloc's search is.
 */
int range_fits(struct range_arena *arena, uint64_t size, const struct range_req *req);

/*
 * Takes [start, start + size) itself (size rounded up to the quantum), as
 * drm_mm_reserve_node does: for a range whose place is already decided, such
 * as a region read back at a restart.  start must be a multiple of the
 * quantum (else -EDOM); -ENOSPC unless every byte of the range is free.
 * O(1) when the range starts in what the previous range_reserve left free
 * after its range (ranges reserved in address order), else O(log n).
 */
int range_reserve(struct range_arena *arena, uint64_t start, uint64_t size);

/*
 * Frees the live range that starts at start; size 0 skips the size check.
 * O(1), except now and then: a free that leaves the segments (or the used
 * ones) below a quarter of the room the arena's tables have also moves them
 * into tables of about twice their number and gives the rest of the memory
 * back, in O(segments).  The next such move needs them to halve again (a
 * growth, to double), so it costs a constant a free, amortised.
 */
int range_free(struct range_arena *arena, uint64_t start, uint64_t size);

/* The size of the live range that starts at start. */
int range_query(const struct range_arena *arena, uint64_t start, uint64_t *ret_size);

/* A NULL arena reports all zeroes. */
void range_stats(const struct range_arena *arena, struct range_stats *ret);

/* Calls fn for every segment, free and used, in address order.  fn must not change the arena. */
int range_walk(const struct range_arena *arena, range_walk_fn fn, void *userdata);

#ifdef __cplusplus
}
#endif

#endif
