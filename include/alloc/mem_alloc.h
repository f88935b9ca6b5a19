/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_MEM_ALLOC_H
#define ALLOC_MEM_ALLOC_H

/*
 * Allocating and freeing a logical address space, source-compatible with
 * OPAE's <opae/mem_alloc.h>: an OPAE program switches by changing its
 * include and link line.  Built on <alloc/range.h>.
 *
 * Every block is aligned to the smallest power of two that is at least its
 * size, as OPAE's implementation yields for power-of-two sizes.  Unlike it,
 * this one returns non-zero (a negative errno value) for size 0, for ranges
 * that overlap ones already added, and for unknown or repeated puts, and then
 * changes nothing.  Which free block a get takes is not specified.
 *
 * Not locked: serialise calls on one struct mem_alloc yourself.
 */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct range_arena;

struct mem_alloc {
        struct range_arena *arena; /* private; NULL until the first mem_alloc_add_free */
};

/* After the call the allocator is empty; add space with mem_alloc_add_free(). */
void mem_alloc_init(struct mem_alloc *m);

/* Frees the allocator's internal resources; m may be initialised and used again. */
void mem_alloc_destroy(struct mem_alloc *m);

/* Adds [address, address + size) to the allocatable space.  Zero on success. */
int mem_alloc_add_free(struct mem_alloc *m, uint64_t address, uint64_t size);

/* Stores in *address the start of a free block of size bytes.  Zero on success. */
int mem_alloc_get(struct mem_alloc *m, uint64_t *address, uint64_t size);

/* Releases the block that starts at address.  Zero on success. */
int mem_alloc_put(struct mem_alloc *m, uint64_t address);

#ifdef __cplusplus
}
#endif

#endif
