/* SPDX-License-Identifier: MIT */
/* What the range allocator's unit tests (test-range-unit.c, test-range-internals.c) share. */
#include <criterion/criterion.h>
#include <string.h>

#include "range-common.h"
#include "range-internal.h"

struct range_arena *arena_with(uint64_t quantum, uint64_t start, uint64_t size) {
        struct range_arena *a = NULL;
        cr_assert_eq(range_arena_new(&a, quantum), 0);
        cr_assert_eq(range_add(a, start, size), 0);
        return a;
}

uint64_t must_alloc(struct range_arena *a, uint64_t size, const struct range_req *req) {
        uint64_t x;
        int r = range_alloc(a, size, req, &x);
        cr_assert_eq(r, 0, "range_alloc(%llu) failed: %s", (unsigned long long)size, strerror(-r));
        return x;
}

void assert_sound(const struct range_arena *a) {
        char why[256];
        cr_assert_eq(range_arena_check(a, why, sizeof(why)), 0, "arena corrupt: %s", why);
}
