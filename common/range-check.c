/* SPDX-License-Identifier: MIT */
/* The invariant checker of the range allocator, for the tests and the fuzzers: O(n) a call. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "range-internal.h"

#define BAD(...)                                                                                                       \
        do {                                                                                                           \
                snprintf(why, why_size, __VA_ARGS__);                                                                  \
                return -EUCLEAN;                                                                                       \
        } while (0)

/* Checks the subtree under i; *count gets its size. */
static int check_treap(const struct range_arena *a, uint32_t i, uint32_t parent, uint64_t lo, uint64_t hi,
                       uint64_t *count, char *why, size_t why_size) {
        if (!i)
                return 0;
        const struct seg *s = &a->segs[i];
        const struct tnode *t = &a->tn[i];
        uint64_t nl = 0, nr = 0;
        if (i > a->hw || t->left > a->hw || t->right > a->hw)
                BAD("treap node %u or a child is past the %u tags handed out", i, a->hw);
        if (!seg_free(s))
                BAD("treap node %u is not free", i);
        if (t->parent != parent)
                BAD("treap node %u has parent %u, expected %u", i, t->parent, parent);
        if (s->start < lo || s->start > hi)
                BAD("treap node %u at %#llx is out of order", i, (unsigned long long)s->start);
        if (parent && prio(a, i) > prio(a, parent))
                BAD("treap node %u outranks its parent", i);
        if (t->max != node_max(a, i))
                BAD("treap node %u has max %#llx, its subtree %#llx", i, (unsigned long long)t->max,
                    (unsigned long long)node_max(a, i));
        int r = check_treap(a, t->left, i, lo, s->start, &nl, why, why_size);
        if (r == 0)
                r = check_treap(a, t->right, i, s->start, hi, &nr, why, why_size);
        *count = 1 + nl + nr;
        return r;
}

/*
 * Every used tag is found from its line by the address list's walk; here,
 * nothing else is filed, and each line's count of insertions passed on is
 * exact (or saturated).
 */
static int check_lines(const struct range_arena *a, uint64_t *passed, char *why, size_t why_size) {
        uint64_t filed = 0;
        for (uint64_t h = 0; h < a->nlines; h++) {
                const struct hline *l = &a->lines[h];
                for (unsigned k = 0; k < LINE_SLOTS; k++) {
                        uint32_t i = l->tag[k];
                        if (!(l->occ & (1u << k))) {
                                if (i)
                                        BAD("hash line %llu slot %u is empty but names tag %u", (unsigned long long)h,
                                            k, i);
                                continue;
                        }
                        filed++;
                        if (i > a->hw)
                                BAD("hash line %llu slot %u names tag %u, past the %u handed out",
                                    (unsigned long long)h, k, i, a->hw);
                        uint64_t z = start_hash(a, a->segs[i].start);
                        if (!seg_used(&a->segs[i]) || l->fp[k] != hash_fp(a, z))
                                BAD("hash line %llu slot %u names tag %u, not a used tag with that hash",
                                    (unsigned long long)h, k, i);
                        for (uint64_t g = z >> a->hash_shift; g != h; g = (g + 1) & (a->nlines - 1))
                                passed[g]++;
                }
        }
        for (uint64_t h = 0; h < a->nlines; h++)
                if (a->lines[h].over != UINT16_MAX && a->lines[h].over != passed[h])
                        BAD("hash line %llu counts %u insertions passed on, %llu were", (unsigned long long)h,
                            a->lines[h].over, (unsigned long long)passed[h]);
        if (filed != a->nused || a->nused * 4 > a->nlines * LINE_SLOTS * 3)
                BAD("%llu used segments, %llu in the hash's %llu lines", (unsigned long long)a->nused,
                    (unsigned long long)filed, (unsigned long long)a->nlines);
        return 0;
}

static int check_hash(const struct range_arena *a, char *why, size_t why_size) {
        if (a->nlines && (!is_pow2(a->nlines) || a->hash_shift != 64 - floor_log2(a->nlines)))
                BAD("a hash of %llu lines with shift %u", (unsigned long long)a->nlines, a->hash_shift);
        uint64_t *passed = calloc(a->nlines ? a->nlines : 1, sizeof(*passed));
        if (!passed)
                BAD("no memory to check the hash");
        int r = check_lines(a, passed, why, why_size);
        free(passed);
        return r;
}

static int check_tree(const struct range_arena *a, char *why, size_t why_size) {
        uint64_t count = 0;
        if (!a->tree)
                return 0;
        int r = check_treap(a, a->root, NIL, 0, UINT64_MAX, &count, why, why_size);
        if (r < 0)
                return r;
        if (count != a->nfree)
                BAD("treap holds %llu segments, %llu are free", (unsigned long long)count,
                    (unsigned long long)a->nfree);
        return 0;
}

void range_arena_drop_tree(struct range_arena *a) {
        range_tree_drop(a);
}

/*
 * Every listed tag is a free segment of its list, linked both ways; the walk
 * stops at the first link back (which the lprev check catches), so a loop is
 * reported.  That the lists hold exactly the free segments of the address
 * list follows from the count (the tags handed out are each in the address
 * list or spare, which the caller checks), so no segment is searched for.
 */
static int check_lists(const struct range_arena *a, uint64_t nfree, char *why, size_t why_size) {
        uint64_t listed = 0;
        for (unsigned k = 0; k < NLISTS; k++) {
                if (!a->lists[k] != !(a->list_bits[k / 64] & (UINT64_C(1) << (k % 64))))
                        BAD("list bitmap wrong at %u", k);
                for (uint32_t j = a->lists[k], p = NIL; j; p = j, j = a->segs[j].lnext, listed++) {
                        if (j > a->hw || !seg_free(&a->segs[j]) || list_of(a->segs[j].start, a->segs[j].size) != k)
                                BAD("tag %u on free list %u is not a free segment of that list", j, k);
                        if (a->segs[j].lprev != p)
                                BAD("tag %u on free list %u has lprev %u, expected %u", j, k, a->segs[j].lprev, p);
                }
        }
        if (listed != nfree)
                BAD("the free lists hold %llu segments, %llu are free", (unsigned long long)listed,
                    (unsigned long long)nfree);
        return 0;
}

int range_arena_check(const struct range_arena *a, char *why, size_t why_size) {
        uint64_t nfree = 0, nused = 0, total = 0, in_use = 0;
        uint32_t prev = NIL;
        if (a->hw && a->hw >= a->cap)
                BAD("tags 1 to %u handed out of %llu", a->hw, (unsigned long long)a->cap);
        /* First: the walk's lookups below read the tags the hash names. */
        int r = check_hash(a, why, why_size);
        if (r < 0)
                return r;
        for (uint32_t i = a->head; i; prev = i, i = a->segs[i].anext) {
                const struct seg *s = &a->segs[i];
                if (i > a->hw)
                        BAD("tag %u in the address list is above the highest handed out, %u", i, a->hw);
                if (s->aprev != prev)
                        BAD("tag %u: aprev %u, expected %u", i, s->aprev, prev);
                if (s->size == 0 || (s->start | s->size) & (a->quantum - 1) || seg_end(s) <= s->start)
                        BAD("tag %u: %#llx+%#llx", i, (unsigned long long)s->start, (unsigned long long)s->size);
                if (prev && seg_end(&a->segs[prev]) > s->start)
                        BAD("tag %u overlaps its predecessor", i);
                if (prev && seg_free(s) && seg_free(&a->segs[prev]) && seg_end(&a->segs[prev]) == s->start)
                        BAD("tags %u and %u are touching free segments", prev, i);
                total += s->size;
                if (seg_free(s))
                        nfree++;
                else if (seg_used(s)) {
                        nused++;
                        in_use += s->size;
                        if (hash_find(a, s->start, NULL) != i)
                                BAD("used tag %u is not in the hash", i);
                } else
                        BAD("tag %u in the address list is spare", i);
        }
        if (prev != a->tail)
                BAD("tail is %u, expected %u", a->tail, prev);
        if (nfree != a->nfree || nused != a->nused || total != a->total || in_use != a->in_use)
                BAD("counters differ from the address list");
        r = check_lists(a, nfree, why, why_size);
        if (r < 0)
                return r;
        /* Every tag handed out is in the address list or spare (a compaction must lose none). */
        uint64_t nspare = 0;
        for (uint32_t i = a->spare; i && nspare <= a->hw; i = a->segs[i].anext, nspare++)
                if (i > a->hw || !seg_spare(&a->segs[i]))
                        BAD("tag %u on the spare list is not a spare tag", i);
        if (nspare != a->nspare || nfree + nused + nspare != a->hw)
                BAD("tags 1 to %u of %llu handed out: %llu segments, %llu spare (%u counted)", a->hw,
                    (unsigned long long)a->cap, (unsigned long long)(nfree + nused), (unsigned long long)nspare,
                    a->nspare);
        return check_tree(a, why, why_size);
}
