/* SPDX-License-Identifier: MIT */
/*
 * The range allocator's own structures (range-internal.h), white-box: its start hash's lines, and
 * range_arena_check catching each corruption of its lists, treap, hash and segments.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include "alloc/range.h"
#include "range-common.h"
#include "range-internal.h"

/*
 * Used ranges whose starts all hash to the first of the hash's 8 lines, so
 * that it and the lines after it fill and pass insertions on: every lookup,
 * free and the checker's count of what each line passed on must hold while
 * they are taken and given back in a scrambled order.
 */
Test(hash, lines_that_overflow) {
        enum { N = 60 }; /* below the 72 that 8 lines hold before the table grows */
        struct range_arena *a = arena_with(1, 0, 1 << 20);
        uint64_t xs[N], size;
        int n = 0;
        for (uint64_t x = 0; n < N; x++)
                if (start_hash(a, x) >> 61 == 0) {
                        struct range_req req = {.low = x, .high = x + 1};
                        cr_assert_eq(range_alloc(a, 1, &req, &xs[n]), 0);
                        cr_assert_eq(xs[n++], x);
                        assert_sound(a);
                }
        cr_assert_eq(a->nlines, 8, "the table grew: the test no longer fills one line");
        cr_assert_gt(a->lines[0].over, 0);
        for (int i = 0; i < N; i++)
                cr_assert(range_query(a, xs[i], &size) == 0 && size == 1);
        for (int i = 0; i < N; i++) {
                cr_assert_eq(range_free(a, xs[i * 37 % N], 1), 0);
                assert_sound(a);
        }
        cr_assert_eq(a->lines[0].over, 0);
        range_arena_free(a);
}

/*
 * Starts an outsider chose to fill the first two lines of a hash without the arena's key (as a
 * client of allocd can, with low and high) spread over the arena's lines: no line passes on more
 * than a line's worth.  Without the key, all 600 went to those two lines.
 */
Test(hash, starts_chosen_without_the_key_spread) {
        enum { N = 600 }; /* 128 lines */
        struct range_arena *a = arena_with(1, 0, 1 << 20), keyless = {.hash_key = 0};
        uint64_t at;
        unsigned most = 0;
        int n = 0;

        for (uint64_t x = 0; n < N; x++)
                if (start_hash(&keyless, x) >> 58 == 0) {
                        struct range_req req = {.low = x, .high = x + 1};
                        cr_assert_eq(range_alloc(a, 1, &req, &at), 0);
                        n++;
                }
        cr_assert_eq(a->nlines, 128);
        for (uint64_t h = 0; h < a->nlines; h++)
                most = a->lines[h].over > most ? a->lines[h].over : most;
        cr_assert_lt(most, LINE_SLOTS, "a line passed on %u insertions: the starts were filed by a hash without a key",
                     most);
        assert_sound(a);
        range_arena_free(a);
}

/*
 * Each corruption below is one a bug in the segment surgery could leave; the
 * checker must report it (not pass it, read out of bounds or loop), and must
 * pass the arena again once it is undone.
 */
static void assert_caught(const struct range_arena *a, const char *what) {
        char why[256];
        cr_assert_eq(range_arena_check(a, why, sizeof(why)), -EUCLEAN, "the checker missed %s", what);
}

/* Free segments of one unit at every other unit of [0, 2n): all on one free list, n long. */
static struct range_arena *one_long_list(int n) {
        struct range_arena *a = arena_with(1, 0, 2 * (uint64_t)n);
        for (int i = 0; i < 2 * n; i++)
                must_alloc(a, 1, NULL);
        for (int i = 0; i < 2 * n; i += 2)
                cr_assert_eq(range_free(a, (uint64_t)i, 0), 0);
        assert_sound(a);
        return a;
}

Test(check, broken_free_list_links_are_caught) {
        struct range_arena *a = one_long_list(8);
        unsigned k = list_of(0, 1);
        uint32_t h = a->lists[k], s = a->segs[h].lnext, t = a->segs[s].lnext, last = t;
        cr_assert(h && s && t);
        while (a->segs[last].lnext)
                last = a->segs[last].lnext;

        a->segs[s].lprev = t; /* a class_remove of s would now unlink the wrong neighbour */
        assert_caught(a, "a free segment whose lprev is not the one before it");
        a->segs[s].lprev = h;
        a->segs[h].lprev = s;
        assert_caught(a, "a list head whose lprev is not none");
        a->segs[h].lprev = NIL;
        a->segs[last].lnext = s; /* a cycle */
        assert_caught(a, "a free list that loops");
        a->segs[last].lnext = NIL;
        a->lists[k] = a->hw + 100; /* a head past the tags handed out */
        assert_caught(a, "a free list head past the tags");
        a->lists[k] = h;
        assert_sound(a);
        range_arena_free(a);
}

Test(check, links_past_the_tags_are_caught) {
        struct range_arena *a = arena_with(1, 0, 1 << 20);
        struct range_req window = {.low = 100, .high = 200}; /* builds the treap */
        must_alloc(a, 1, NULL);
        must_alloc(a, 1, &window);
        cr_assert(a->tree && a->root);
        uint32_t *child = a->tn[a->root].left ? &a->tn[a->root].right : &a->tn[a->root].left;
        cr_assert_eq(*child, NIL);
        *child = UINT32_MAX - 8;
        assert_caught(a, "a treap child past the array");
        *child = NIL;
        struct hline *l = NULL;
        for (uint64_t i = 0; i < a->nlines && !l; i++)
                if (a->lines[i].occ)
                        l = &a->lines[i];
        unsigned k = (unsigned)__builtin_ctz(l->occ);
        uint32_t tag = l->tag[k];
        l->tag[k] = UINT32_MAX - 8; /* far past the array */
        assert_caught(a, "a hash slot naming a tag past the array");
        l->tag[k] = tag;
        a->hash_shift--; /* homes past the last line */
        assert_caught(a, "a hash whose shift does not match its size");
        a->hash_shift++;
        assert_sound(a);
        range_arena_free(a);
}

Test(check, segment_ending_past_the_address_space_is_caught) {
        struct range_arena *a = arena_with(1, UINT64_MAX - 64, 32);
        cr_assert_eq(range_reserve(a, UINT64_MAX - 40, 8), 0); /* the used tail */
        uint32_t t = a->tail;
        uint64_t grow = UINT64_MAX - 40;
        cr_assert(seg_used(&a->segs[t]));
        a->segs[t].size += grow; /* wraps past 2^64; the counters agree */
        a->total += grow;
        a->in_use += grow;
        assert_caught(a, "a segment that wraps past 2^64");
        a->segs[t].size -= grow;
        a->total -= grow;
        a->in_use -= grow;
        assert_sound(a);
        range_arena_free(a);
}

/* The checker is O(n): at 200,000 free segments on one list it takes well under a second. */
Test(check, linear_in_the_segments, .timeout = 20) {
        struct range_arena *a = one_long_list(200000);
        assert_sound(a);
        range_arena_free(a);
}
