/* SPDX-License-Identifier: MIT */
#ifndef BENCH_FIRSTFIT_H
#define BENCH_FIRSTFIT_H

/*
 * The classic design the range allocator is measured against: one free list
 * sorted by address, first fit, merge on free.  Alloc and free both walk the
 * list.  Nodes come from a pool so that malloc is not what gets measured.
 */

#include <stdint.h>

struct ff_node {
        uint64_t start, size;
        uint32_t prev, next;
};

struct firstfit {
        struct ff_node *nodes; /* nodes[0] is unused: index 0 is "none" */
        uint32_t cap, used, spare, head;
        uint32_t last; /* the last node ff_append added */
};

struct ff_req {
        uint64_t align, boundary, low, high; /* align, boundary: powers of two or 0; high 0 = none */
};

int ff_init(struct firstfit *f, uint32_t max_nodes);
void ff_destroy(struct firstfit *f);
/* Appends a free block above every block in the list (building a state quickly). */
void ff_append(struct firstfit *f, uint64_t start, uint64_t size);
int ff_alloc(struct firstfit *f, uint64_t size, const struct ff_req *req, uint64_t *ret);
void ff_free(struct firstfit *f, uint64_t start, uint64_t size);

#endif
