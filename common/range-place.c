/* SPDX-License-Identifier: MIT */
/*
 * Placement: where a request goes.  Instant fit takes the head of a free
 * list that certainly fits, best fit scans the size classes, next fit and
 * every fallback search the treap pruning by largest size ("Constrained
 * requests" and "Policies" in range.c).  Nothing here changes a segment.
 */
#include "range-internal.h"

/* The smallest x >= v with x % align == phase, or false if it passes 2^64. */
static inline bool align_up(uint64_t v, const struct want *w, uint64_t *x) {
        uint64_t c = (v & ~(w->align - 1)) + w->phase;
        if (c < v && __builtin_add_overflow(c, w->align, &c))
                return false;
        *x = c;
        return true;
}

/* The lowest placement inside free segment s that satisfies w. */
static bool place(const struct seg *s, const struct want *w, uint64_t *ret) {
        uint64_t lo = umax(s->start, w->low), hi = umin(seg_end(s), w->high), x;
        if (hi <= lo || hi - lo < w->size || !align_up(lo, w, &x) || x > hi - w->size)
                return false;
        if (w->boundary && ((x ^ (x + w->size - 1)) & ~(w->boundary - 1))) {
                /* Crosses a line: move to the next line (validation made sure the range fits after it). */
                uint64_t line = x | (w->boundary - 1);
                if (line == UINT64_MAX || !align_up(line + 1, w, &x))
                        return false;
        }
        if (x > hi - w->size)
                return false;
        *ret = x;
        return true;
}

/* Size of free segment that certainly holds a placement of w (see the theory above). */
static uint64_t guaranteed_size(const struct range_arena *a, const struct want *w) {
        uint64_t g = sat_add(w->size, w->align - a->quantum);
        if (w->boundary && w->align < w->boundary)
                g = sat_add(g, sat_add(w->size - a->quantum, w->phase));
        return g;
}

/* Lowest-addressed free segment under i of at least min bytes with a placement. */
static uint32_t treap_first_fit(const struct range_arena *a, uint32_t i, const struct want *w, uint64_t min,
                                uint64_t *x) {
        while (i) {
                const struct seg *s = &a->segs[i];
                const struct tnode *t = &a->tn[i];
                if (t->max < min)
                        return NIL;
                /* Segments on the left end at or before s->start. */
                if (t->left && s->start > w->low) {
                        uint32_t f = treap_first_fit(a, t->left, w, min, x);
                        if (f)
                                return f;
                }
                if (s->start >= w->high)
                        return NIL;
                if (s->size >= min && place(s, w, x))
                        return i;
                i = t->right;
        }
        return NIL;
}

static uint32_t first_fit(struct range_arena *a, const struct want *w, uint64_t guaranteed, uint64_t *x, int *err) {
        *err = range_tree_use(a);
        if (*err < 0)
                return NIL;
        uint32_t i = treap_first_fit(a, a->root, w, guaranteed, x);
        if (!i && guaranteed > w->size)
                i = treap_first_fit(a, a->root, w, w->size, x);
        return i;
}

/*
 * The lowest free list whose every segment certainly holds a placement of w
 * (an unwindowed request): a size of at least G, or a block aligned to its
 * size 2^m >= max(align, phase + size) that no boundary line crosses.
 */
static unsigned sure_list(const struct range_arena *a, const struct want *w) {
        unsigned k = ceil_log2(guaranteed_size(a, w)), m = ceil_log2(umax(w->align, sat_add(w->phase, w->size)));
        unsigned t = k < NCLASSES ? 2 * k : NLISTS;
        if (m < NCLASSES && (!w->boundary || UINT64_C(1) << m <= w->boundary))
                t = umin(t, 2 * m + 1);
        return t;
}

static uint32_t instant_fit(struct range_arena *a, const struct want *w, uint64_t guaranteed, uint64_t *x, int *err) {
        if (w->low == 0 && w->high == UINT64_MAX) {
                unsigned k = first_list_from(a, sure_list(a, w));
                if (k < NLISTS) {
                        uint32_t i = a->lists[k];
                        if (place(&a->segs[i], w, x))
                                return i;
                }
        }
        return first_fit(a, w, guaranteed, x, err);
}

static uint32_t best_fit(const struct range_arena *a, const struct want *w, uint64_t *ret) {
        uint32_t best = NIL;
        /* The two lists of a class hold sizes in the same range: scan both before stopping. */
        for (unsigned k = first_list_from(a, 2 * floor_log2(w->size)); k < NLISTS && !best;
             k = first_list_from(a, (k | 1) + 1)) {
                uint64_t x;
                for (unsigned l = k; l <= (k | 1); l++)
                        for (uint32_t i = a->lists[l]; i; i = a->segs[i].lnext) {
                                const struct seg *s = &a->segs[i];
                                if (s->size < w->size || !place(s, w, &x))
                                        continue;
                                const struct seg *b = &a->segs[best];
                                if (!best || s->size < b->size || (s->size == b->size && s->start < b->start)) {
                                        best = i;
                                        *ret = x;
                                }
                        }
        }
        return best;
}

static uint32_t next_fit(struct range_arena *a, const struct want *w, uint64_t guaranteed, uint64_t *x, int *err) {
        if (a->rotor > w->low && a->rotor < w->high) {
                struct want v = *w;
                v.low = a->rotor;
                uint32_t i = first_fit(a, &v, guaranteed, x, err);
                if (i || *err < 0)
                        return i;
        }
        return first_fit(a, w, guaranteed, x, err);
}

uint32_t range_find(struct range_arena *a, const struct want *w, enum range_policy policy, uint64_t *x, int *err) {
        uint64_t g = guaranteed_size(a, w);
        *err = 0;
        switch (policy) {
        case RANGE_BESTFIT:
                return best_fit(a, w, x);
        case RANGE_NEXTFIT:
                return next_fit(a, w, g, x, err);
        default:
                return instant_fit(a, w, g, x, err);
        }
}
