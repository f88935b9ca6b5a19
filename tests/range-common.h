/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_RANGE_COMMON_H
#define ALLOC_TEST_RANGE_COMMON_H

/* What the range allocator's unit tests share (range-common.c); each fails the test it runs in. */
#include <stdint.h>

#include "alloc/range.h"

/* A new arena of quantum whose one span is [start, start + size). */
struct range_arena *arena_with(uint64_t quantum, uint64_t start, uint64_t size);
/* range_alloc, which must succeed: the start. */
uint64_t must_alloc(struct range_arena *a, uint64_t size, const struct range_req *req);
/* range_arena_check passes a. */
void assert_sound(const struct range_arena *a);

#endif
