/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_RANGE_INTERNAL_H
#define ALLOC_RANGE_INTERNAL_H

#include "alloc/range.h"

/*
 * Verifies every internal invariant of the arena (address list, free lists
 * and their bitmap, hash, counters, and while it is kept the treap's order,
 * priorities and maxima).  Returns 0, or a
 * negative errno value with a description in why.  O(n): for tests only.
 */
int range_arena_check(const struct range_arena *arena, char *why, size_t why_size);

/* Stops keeping the treap, as a long run of requests that do not search it would: for tests. */
void range_arena_drop_tree(struct range_arena *arena);

#endif
