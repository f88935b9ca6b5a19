/* SPDX-License-Identifier: MIT */
/* Unit tests of the range allocator: every constraint and every error case. */

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc/range.h"
#include "range-common.h"
#include "range-internal.h"

#define K UINT64_C(1024)
#define M (K * K)

static struct range_stats stats_of(const struct range_arena *a) {
        struct range_stats st;
        range_stats(a, &st);
        return st;
}

static void assert_stats_eq(const struct range_stats *x, const struct range_stats *y) {
        cr_assert_eq(x->total, y->total);
        cr_assert_eq(x->in_use, y->in_use);
        cr_assert_eq(x->largest_free, y->largest_free);
        cr_assert_eq(x->free_segments, y->free_segments);
        cr_assert_eq(x->used_segments, y->used_segments);
}

/* Runs a request that must fail with err and checks that nothing changed. */
static void expect_alloc_error(struct range_arena *a, uint64_t size, const struct range_req *req, int err) {
        struct range_stats before = stats_of(a), after;
        uint64_t x = 0xdead;
        int r = range_fits(a, size, req);
        cr_assert_eq(r, err, "range_fits(size %#llx) returned %d (%s), expected %d (%s)", (unsigned long long)size, r,
                     strerror(-r), err, strerror(-err));
        r = range_alloc(a, size, req, &x);
        cr_assert_eq(r, err, "range_alloc(size %#llx) returned %d (%s), expected %d (%s)", (unsigned long long)size, r,
                     strerror(-r), err, strerror(-err));
        cr_assert_eq(x, 0xdead, "a failed allocation wrote its result");
        after = stats_of(a);
        assert_stats_eq(&before, &after);
}

Test(arena, new_rejects_bad_quantum) {
        struct range_arena *a = NULL;
        cr_assert_eq(range_arena_new(&a, 0), -EDOM);
        cr_assert_eq(range_arena_new(&a, 3), -EDOM);
        cr_assert_eq(range_arena_new(&a, 4096 + 1), -EDOM);
        cr_assert_eq(range_arena_new(NULL, 4096), -EINVAL);
        cr_assert_null(a);
        cr_assert_eq(range_arena_new(&a, 1), 0);
        cr_assert_null(range_arena_free(a));
        cr_assert_null(range_arena_free(NULL));
}

Test(span, add_rejects_bad_spans) {
        struct range_arena *a = arena_with(4096, 64 * K, 64 * K);
        cr_assert_eq(range_add(a, 0, 0), -EINVAL);
        cr_assert_eq(range_add(a, 100, 4096), -EDOM);
        cr_assert_eq(range_add(a, 0, 100), -EDOM);
        cr_assert_eq(range_add(a, UINT64_MAX - 4095, 8192), -EOVERFLOW);
        cr_assert_eq(range_add(a, UINT64_C(0) - 8192, 8192), -EOVERFLOW, "a span may not end at 2^64");
        /* Overlaps of every shape: same start, from the left, from the right, inside, around. */
        cr_assert_eq(range_add(a, 64 * K, 4 * K), -EEXIST);
        cr_assert_eq(range_add(a, 60 * K, 8 * K), -EEXIST);
        cr_assert_eq(range_add(a, 124 * K, 8 * K), -EEXIST);
        cr_assert_eq(range_add(a, 80 * K, 4 * K), -EEXIST);
        cr_assert_eq(range_add(a, 0, 1 * M), -EEXIST);
        struct range_stats st = stats_of(a);
        cr_assert_eq(st.total, 64 * K);
        cr_assert_eq(st.free_segments, 1);
        range_arena_free(a);
}

Test(span, touching_spans_merge_and_separate_ones_do_not) {
        struct range_arena *a = arena_with(4096, 64 * K, 64 * K);
        cr_assert_eq(range_add(a, 128 * K, 64 * K), 0); /* touches on the right */
        cr_assert_eq(range_add(a, 0, 64 * K), 0);       /* touches on the left */
        cr_assert_eq(range_add(a, 1 * M, 64 * K), 0);   /* a gap */
        struct range_stats st = stats_of(a);
        cr_assert_eq(st.total, 256 * K);
        cr_assert_eq(st.free_segments, 2);
        cr_assert_eq(st.largest_free, 192 * K);
        /* A range may straddle where two touching spans met. */
        struct range_req req = {.low = 32 * K};
        cr_assert_eq(must_alloc(a, 96 * K, &req), 32 * K);
        /* It may not bridge the gap. */
        expect_alloc_error(a, 160 * K, NULL, -ENOSPC);
        range_arena_free(a);
}

Test(span, span_at_top_of_address_space) {
        uint64_t top = UINT64_C(0) - 4096 * 3; /* the span ends at 2^64 - 4096 */
        struct range_arena *a = arena_with(4096, top, 8192);
        struct range_req req = {.boundary = 8192};
        uint64_t x = must_alloc(a, 4096, &req);
        cr_assert(x == top || x == top + 4096);
        /* Any 8 KiB-aligned start up here would pass 2^64. */
        req = (struct range_req){.align = 1 * M};
        expect_alloc_error(a, 4096, &req, -ENOSPC);
        range_arena_free(a);
}

Test(alloc, argument_errors_are_distinct_and_change_nothing) {
        struct range_arena *a = arena_with(4096, 0, 1 * M);
        uint64_t x;
        must_alloc(a, 4096, NULL);
        expect_alloc_error(a, 0, NULL, -EINVAL);
        cr_assert_eq(range_alloc(a, 4096, NULL, NULL), -EINVAL);
        cr_assert_eq(range_alloc(NULL, 4096, NULL, &x), -EINVAL);
        cr_assert_eq(range_fits(NULL, 4096, NULL), -EINVAL);
        expect_alloc_error(a, 4096, &(struct range_req){.align = 3 * 4096}, -EDOM);
        expect_alloc_error(a, 4096, &(struct range_req){.boundary = 12 * K}, -EDOM);
        expect_alloc_error(a, 4096, &(struct range_req){.align = 8192, .phase = 8192}, -EDOM);
        expect_alloc_error(a, 4096, &(struct range_req){.align = 8192, .phase = 100}, -EDOM);
        expect_alloc_error(a, 4096, &(struct range_req){.phase = 4096}, -EDOM);
        expect_alloc_error(a, 4096, &(struct range_req){.policy = (enum range_policy)7}, -EDOM);
        expect_alloc_error(a, 4096, &(struct range_req){.low = 64 * K, .high = 64 * K}, -ERANGE);
        expect_alloc_error(a, 4096, &(struct range_req){.low = 64 * K, .high = 32 * K}, -ERANGE);
        expect_alloc_error(a, 8192, &(struct range_req){.boundary = 4096}, -EMSGSIZE);
        /* Rounded up to the quantum, 4097 bytes do not fit a 4 KiB boundary block either. */
        expect_alloc_error(a, 4097, &(struct range_req){.boundary = 4096}, -EMSGSIZE);
        /* A phase that starts every candidate too late in its boundary block. */
        expect_alloc_error(a, 8192, &(struct range_req){.align = 16 * K, .phase = 12 * K, .boundary = 16 * K},
                           -EMSGSIZE);
        expect_alloc_error(a, UINT64_MAX, NULL, -EOVERFLOW);
        expect_alloc_error(a, UINT64_MAX - 4094, NULL, -EOVERFLOW);
        expect_alloc_error(a, 2 * M, NULL, -ENOSPC);
        range_arena_free(a);
}

Test(alloc, size_rounds_up_to_quantum) {
        struct range_arena *a = arena_with(4096, 0, 1 * M);
        uint64_t x = must_alloc(a, 1, NULL), size;
        cr_assert_eq(range_query(a, x, &size), 0);
        cr_assert_eq(size, 4096);
        cr_assert_eq(stats_of(a).in_use, 4096);
        range_arena_free(a);
}

Test(alloc, alignment_and_phase) {
        /* The span starts off any large alignment. */
        struct range_arena *a = arena_with(4096, 4096 * 3, 4 * M);
        for (uint64_t align = 4096; align <= 1 * M; align *= 2) {
                struct range_req req = {.align = align};
                uint64_t x = must_alloc(a, 4096 * 3, &req);
                cr_assert_eq(x % align, 0, "start %#llx not aligned to %#llx", (unsigned long long)x,
                             (unsigned long long)align);
        }
        struct range_req req = {.align = 64 * K, .phase = 12 * K};
        for (int i = 0; i < 8; i++)
                cr_assert_eq(must_alloc(a, 4096, &req) % (64 * K), 12 * K);
        range_arena_free(a);
}

Test(alloc, boundary_is_never_crossed) {
        struct range_arena *a = arena_with(4096, 0, 64 * K);
        cr_assert_eq(must_alloc(a, 12 * K, NULL), 0);
        /* [12K, 20K) would cross 16K: the range must move to 16K. */
        struct range_req req = {.boundary = 16 * K};
        cr_assert_eq(must_alloc(a, 8 * K, &req), 16 * K);
        /* The 4 KiB hole at 12K is still there, and fits a 4 KiB range. */
        cr_assert_eq(must_alloc(a, 4 * K, &req), 12 * K);
        range_arena_free(a);
}

Test(alloc, boundary_with_every_policy) {
        for (int p = RANGE_INSTANTFIT; p <= RANGE_NEXTFIT; p++) {
                struct range_arena *a = arena_with(4096, 4096, 4 * M);
                struct range_req req = {.boundary = 64 * K, .policy = p};
                for (int i = 0; i < 100; i++) {
                        uint64_t x = must_alloc(a, (uint64_t)(1 + i % 13) * 4096, &req);
                        uint64_t size;
                        cr_assert_eq(range_query(a, x, &size), 0);
                        cr_assert_eq(x / (64 * K), (x + size - 1) / (64 * K), "policy %d crossed a boundary", p);
                }
                range_arena_free(a);
        }
}

Test(alloc, window_is_respected) {
        struct range_arena *a = arena_with(4096, 0, 1 * M);
        struct range_req req = {.low = 100 * K, .high = 200 * K};
        uint64_t end = 0;
        for (;;) {
                uint64_t x;
                int r = range_alloc(a, 8 * K, &req, &x);
                if (r == -ENOSPC)
                        break;
                cr_assert_eq(r, 0);
                cr_assert(x >= 100 * K && x + 8 * K <= 200 * K, "range %#llx outside the window",
                          (unsigned long long)x);
                end += 8 * K;
        }
        /* Everything in the window that is whole 8 KiB was handed out: [100K, 196K). */
        cr_assert_eq(end, 96 * K);
        /* Space outside the window is untouched. */
        struct range_stats st = stats_of(a);
        cr_assert_eq(st.in_use, 96 * K);
        /* A window with only a low end. */
        req = (struct range_req){.low = 900 * K};
        cr_assert_geq(must_alloc(a, 64 * K, &req), 900 * K);
        /* A window smaller than a quantum, and one past every span. */
        expect_alloc_error(a, 4096, &(struct range_req){.low = 4097, .high = 8191}, -ENOSPC);
        expect_alloc_error(a, 4096, &(struct range_req){.low = 2 * M}, -ENOSPC);
        range_arena_free(a);
}

Test(alloc, everything_combined) {
        struct range_arena *a = arena_with(4096, 4096, 16 * M);
        struct range_req req = {
                .align = 64 * K, .phase = 8 * K, .boundary = 256 * K, .low = 3 * M + 4096, .high = 9 * M};
        for (int i = 0; i < 40; i++) {
                uint64_t x = must_alloc(a, 100 * K, &req);
                cr_assert_eq(x % (64 * K), 8 * K);
                cr_assert_eq(x / (256 * K), (x + 100 * K - 1) / (256 * K));
                cr_assert(x >= req.low && x + 100 * K <= req.high);
        }
        range_arena_free(a);
}

/* Holes of 3, 1 and 2 quanta at 1, 5 and 7, a used range at 9, a free tail [10, 100). */
static struct range_arena *holes(void) {
        struct range_arena *a = arena_with(1, 0, 100);
        uint64_t x[9];
        const uint64_t sizes[] = {1, 3, 1, 1, 1, 2, 1};
        for (int i = 0; i < 7; i++)
                x[i] = must_alloc(a, sizes[i], &(struct range_req){.policy = RANGE_NEXTFIT});
        cr_assert_eq(range_free(a, x[1], 0), 0);
        cr_assert_eq(range_free(a, x[3], 0), 0);
        cr_assert_eq(range_free(a, x[5], 0), 0);
        return a;
}

Test(policy, best_fit_takes_the_smallest_hole) {
        struct range_arena *a = holes();
        struct range_req req = {.policy = RANGE_BESTFIT};
        cr_assert_eq(must_alloc(a, 2, &req), 7); /* the 2-hole at [7, 9), not the 3-hole at [1, 4) */
        cr_assert_eq(must_alloc(a, 1, &req), 5); /* the 1-hole */
        cr_assert_eq(must_alloc(a, 2, &req), 1); /* now the 3-hole is the smallest that fits */
        range_arena_free(a);
}

/*
 * A request aligned to its size takes the head of the first free list whose
 * every segment holds a block aligned to that size, like an unaligned one
 * (the most recently freed), without searching by address.
 */
Test(policy, instant_fit_aligned_to_size_needs_no_search) {
        struct range_arena *a = arena_with(4 * K, 0, 2 * M);
        struct range_req req = {.align = 64 * K};
        uint64_t sizes[] = {64 * K, 64 * K, 896 * K, 64 * K, 960 * K}, starts[5];
        for (int i = 0; i < 5; i++)
                starts[i] = must_alloc(a, sizes[i], NULL);
        cr_assert_eq(starts[1], 64 * K);
        cr_assert_eq(starts[3], M);
        cr_assert_eq(range_free(a, starts[1], 0), 0);
        cr_assert_eq(range_free(a, starts[3], 0), 0);
        /* Both holes hold the range, neither holds size + align - quantum: the one freed last. */
        cr_assert_eq(must_alloc(a, 64 * K, &req), M);
        cr_assert_eq(must_alloc(a, 64 * K, &req), 64 * K);
        range_arena_free(a);
}

Test(policy, next_fit_moves_on) {
        struct range_arena *a = holes();
        struct range_req req = {.policy = RANGE_NEXTFIT};
        /* The rotor stands after the last range, at 10: the holes below it wait until it wraps. */
        cr_assert_eq(must_alloc(a, 1, &req), 10);
        cr_assert_eq(must_alloc(a, 1, &req), 11);
        struct range_req fill = {.policy = RANGE_NEXTFIT};
        cr_assert_eq(must_alloc(a, 88, &fill), 12); /* [12, 100): the rotor reaches the end */
        cr_assert_eq(must_alloc(a, 1, &req), 1, "next fit did not wrap round");
        range_arena_free(a);
}

Test(free, errors_change_nothing) {
        struct range_arena *a = arena_with(4096, 0, 1 * M);
        uint64_t x = must_alloc(a, 3 * 4096, NULL), size;
        struct range_stats before = stats_of(a), after;
        cr_assert_eq(range_free(a, x + 4096, 0), -ENOENT, "an address inside a range is not its start");
        cr_assert_eq(range_free(a, 2 * M, 0), -ENOENT);
        cr_assert_eq(range_free(a, x, 4096), -EINVAL, "a wrong size must be refused");
        cr_assert_eq(range_free(a, x, UINT64_MAX), -EINVAL);
        cr_assert_eq(range_free(NULL, x, 0), -EINVAL);
        after = stats_of(a);
        assert_stats_eq(&before, &after);
        cr_assert_eq(range_query(a, x, &size), 0);
        cr_assert_eq(range_free(a, x, 3 * 4096 - 100), 0, "a size that rounds to the range's is accepted");
        cr_assert_eq(range_free(a, x, 0), -ENOENT, "a second free must fail");
        cr_assert_eq(range_query(a, x, &size), -ENOENT);
        cr_assert_eq(stats_of(a).in_use, 0);
        range_arena_free(a);
}

Test(free, coalesces_in_every_order) {
        /* For each order of freeing three neighbours, the arena ends as one free segment. */
        const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
        for (int o = 0; o < 6; o++) {
                struct range_arena *a = arena_with(1, 10, 3);
                uint64_t x[3];
                for (int i = 0; i < 3; i++)
                        x[i] = must_alloc(a, 1, &(struct range_req){.policy = RANGE_NEXTFIT});
                cr_assert_eq(stats_of(a).free_segments, 0);
                for (int i = 0; i < 3; i++)
                        cr_assert_eq(range_free(a, x[orders[o][i]], 1), 0);
                struct range_stats st = stats_of(a);
                cr_assert_eq(st.free_segments, 1, "order %d left %llu free segments", o,
                             (unsigned long long)st.free_segments);
                cr_assert_eq(st.largest_free, 3);
                range_arena_free(a);
        }
}

struct walk_ctx {
        struct range_seg segs[64];
        int n;
        int stop_at;
};

static int record(const struct range_seg *s, void *userdata) {
        struct walk_ctx *c = userdata;
        if (c->n == c->stop_at)
                return 42;
        c->segs[c->n++] = *s;
        return 0;
}

Test(walk, segments_in_address_order_and_early_stop) {
        struct range_arena *a = arena_with(1, 1000, 100);
        cr_assert_eq(range_add(a, 0, 100), 0);
        uint64_t x = must_alloc(a, 10, &(struct range_req){.low = 1050});
        struct walk_ctx c = {.stop_at = -1};
        cr_assert_eq(range_walk(a, record, &c), 0);
        cr_assert_eq(c.n, 4);
        const struct range_seg want[] = {{0, 100, false}, {1000, 50, false}, {1050, 10, true}, {1060, 40, false}};
        for (int i = 0; i < 4; i++) {
                cr_assert_eq(c.segs[i].start, want[i].start, "segment %d", i);
                cr_assert_eq(c.segs[i].size, want[i].size, "segment %d", i);
                cr_assert_eq(c.segs[i].used, want[i].used, "segment %d", i);
        }
        cr_assert_eq(x, 1050);
        c = (struct walk_ctx){.stop_at = 2};
        cr_assert_eq(range_walk(a, record, &c), 42);
        cr_assert_eq(c.n, 2);
        range_arena_free(a);
}

Test(free, freeing_everything_restores_each_span) {
        struct range_arena *a = NULL;
        cr_assert_eq(range_arena_new(&a, 64), 0);
        for (uint64_t s = 0; s < 8; s++)
                cr_assert_eq(range_add(a, s * 1 * M, 512 * K), 0);
        static uint64_t xs[2000];
        int n = 0;
        for (int i = 0; i < 2000; i++) {
                struct range_req req = {.align = UINT64_C(64) << (i % 7), .policy = i % 3};
                if (range_alloc(a, (uint64_t)(i % 37 + 1) * 64, &req, &xs[n]) == 0)
                        n++;
        }
        cr_assert_gt(n, 1000);
        /* Free in an order unrelated to allocation. */
        for (int i = 0; i < n; i++) {
                int j = (i * 7919) % n; /* 7919 is prime: a permutation */
                cr_assert_eq(range_free(a, xs[j], 0), 0, "freeing %#llx failed", (unsigned long long)xs[j]);
        }
        struct range_stats st = stats_of(a);
        cr_assert_eq(st.used_segments, 0);
        cr_assert_eq(st.in_use, 0);
        cr_assert_eq(st.free_segments, 8);
        cr_assert_eq(st.largest_free, 512 * K);
        struct walk_ctx c = {.stop_at = -1};
        range_walk(a, record, &c);
        for (int i = 0; i < 8; i++) {
                cr_assert_eq(c.segs[i].start, (uint64_t)i * M);
                cr_assert_eq(c.segs[i].size, 512 * K);
        }
        range_arena_free(a);
}

Test(stats, metadata_is_reported) {
        struct range_arena *a = arena_with(4096, 0, 1 * M);
        cr_assert_gt(stats_of(a).meta_bytes, 0);
        range_arena_free(a);
}

/*
 * A used segment costs a 32-byte tag and its share of the hash's lines, with
 * the tables' growth slack: at most 60 bytes at 100,000 ranges (a 56-byte tag
 * and chained buckets took 78).
 */
Test(stats, metadata_per_segment) {
        enum { N = 100000 };
        struct range_arena *a = arena_with(1, 0, N);
        for (int i = 0; i < N; i++)
                must_alloc(a, 1, NULL);
        struct range_stats st = stats_of(a);
        cr_assert_eq(st.free_segments + st.used_segments, N);
        cr_assert_leq(st.meta_bytes, 60 * N, "%llu bytes of metadata for %d segments",
                      (unsigned long long)st.meta_bytes, N);
        range_arena_free(a);
}

/* Allocates a third as many ranges as there are segments, frees them: the metadata must not resize either way. */
static void churn_resizes_nothing(struct range_arena *a) {
        static uint64_t ys[100000];
        struct range_stats st = stats_of(a);
        uint64_t n = (st.free_segments + st.used_segments) / 3;
        cr_assert_leq(n, sizeof(ys) / sizeof(ys[0]));
        for (uint64_t i = 0; i < n; i++)
                ys[i] = must_alloc(a, 1, NULL);
        cr_assert_eq(stats_of(a).meta_bytes, st.meta_bytes, "resized at %llu more ranges", (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++)
                cr_assert_eq(range_free(a, ys[i], 0), 0);
        cr_assert_eq(stats_of(a).meta_bytes, st.meta_bytes, "resized at %llu more ranges and back",
                     (unsigned long long)n);
}

/*
 * The arena's memory follows its live ranges down (tags and hash buckets),
 * the ranges kept stay where they were, and churn right after each shrink
 * resizes nothing.
 */
Test(stats, memory_is_given_back_without_thrashing) {
        enum { N = 100000, KEEP = 64 };
        static uint64_t xs[N];
        struct range_arena *a = arena_with(1, 0, 2 * N);
        uint64_t size;
        int shrinks = 0;
        for (int i = 0; i < N; i++)
                xs[i] = must_alloc(a, 1, NULL);
        uint64_t peak = stats_of(a).meta_bytes, meta = peak;
        for (int i = 0; i < N; i++) {
                if (i % KEEP == 0)
                        continue;
                cr_assert_eq(range_free(a, xs[i], 0), 0);
                if (stats_of(a).meta_bytes < meta) {
                        shrinks++;
                        assert_sound(a);
                        churn_resizes_nothing(a);
                }
                meta = stats_of(a).meta_bytes;
        }
        cr_assert_lt(meta, peak / 8, "%llu bytes of metadata at the peak of %d ranges, %llu after %d shrinks",
                     (unsigned long long)peak, N, (unsigned long long)meta, shrinks);
        for (int i = 0; i < N; i += KEEP)
                cr_assert(range_query(a, xs[i], &size) == 0 && size == 1, "kept range %#llx lost",
                          (unsigned long long)xs[i]);
        assert_sound(a);

        for (int i = 0; i < N; i += KEEP)
                cr_assert_eq(range_free(a, xs[i], 0), 0);
        struct range_stats st = stats_of(a);
        cr_assert_eq(st.free_segments, 1);
        cr_assert_lt(st.meta_bytes, 8 * K, "%llu bytes of metadata for one free segment",
                     (unsigned long long)st.meta_bytes);
        assert_sound(a);
        cr_assert_eq(must_alloc(a, 1, NULL), 0);
        range_arena_free(a);
}

/* No span yet: every policy, windowed or not, finds nothing (the treap a search builds is empty). */
Test(arena, empty_arena_has_no_space_for_any_policy) {
        struct range_arena *a = NULL;
        uint64_t x;
        cr_assert_eq(range_arena_new(&a, 4096), 0);
        for (int p = RANGE_INSTANTFIT; p <= RANGE_NEXTFIT; p++) {
                struct range_req plain = {.policy = p}, window = {.policy = p, .low = 4096, .high = 1 << 20};
                cr_assert_eq(range_alloc(a, 4096, &plain, &x), -ENOSPC);
                cr_assert_eq(range_alloc(a, 4096, &window, &x), -ENOSPC);
        }
        assert_sound(a);
        range_arena_free(a);
}

/* The VmFlags line of the mapping that holds p, from /proc/self/smaps; "" if none does. */
static void vm_flags_of(const void *p, char *flags, size_t size) {
        FILE *fp = fopen("/proc/self/smaps", "re");
        char line[512];
        bool in = false;
        cr_assert_not_null(fp);
        snprintf(flags, size, "%s", "");
        while (fgets(line, sizeof(line), fp)) {
                unsigned long lo, hi;
                if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
                        in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
                else if (in && strncmp(line, "VmFlags:", 8) == 0)
                        snprintf(flags, size, "%s", line + 8);
        }
        fclose(fp);
}

/* Tables from 4 MiB on are mappings of their own, aligned to 2 MiB and advised for huge pages. */
Test(stats, big_tables_are_advised_huge_pages) {
        enum { N = 200000 };
        struct range_arena *a = arena_with(1, 0, 2 * N);
        char flags[512];
        for (int i = 0; i < N; i++)
                must_alloc(a, 1, NULL);
        cr_assert_geq(a->cap * sizeof(struct seg), 4 * M);
        cr_assert_eq((uintptr_t)a->segs % (2 * M), 0, "tag array at %p", (void *)a->segs);
        vm_flags_of(a->segs, flags, sizeof(flags));
        cr_assert(strstr(flags, " hg"), "the tag array's mapping has flags '%s', no hg", flags);
        assert_sound(a);
        range_arena_free(a);
}

Test(stats, null_arena_is_refused_not_dereferenced) {
        struct range_stats st = {.total = 1};
        range_stats(NULL, &st);
        cr_assert_eq(st.total, 0);
        cr_assert_eq(range_walk(NULL, record, NULL), -EINVAL);
        cr_assert_eq(range_add(NULL, 0, 4096), -EINVAL);
        uint64_t size;
        cr_assert_eq(range_query(NULL, 0, &size), -EINVAL);
}
