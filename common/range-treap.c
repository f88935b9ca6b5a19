/* SPDX-License-Identifier: MIT */
/*
 * The address treap of free segments: a binary search tree by start,
 * augmented with the largest free size of each subtree, heap-ordered by the
 * priority prio() gives (size class first).  Kept only while requests search
 * it; "Address treap" and "The treap is kept" in range.c say why.
 */
#include "range-internal.h"

void range_treap_fix_up(struct range_arena *a, uint32_t i) {
        for (; i; i = a->segs[i].parent) {
                uint64_t m = node_max(a, i);
                if (m == a->segs[i].max)
                        return;
                a->segs[i].max = m;
        }
}

static void treap_replace_child(struct range_arena *a, uint32_t parent, uint32_t old, uint32_t new) {
        if (!parent)
                a->root = new;
        else if (a->segs[parent].left == old)
                a->segs[parent].left = new;
        else
                a->segs[parent].right = new;
}

/* Rotates x above its parent; the subtree as a whole keeps its maximum. */
static void treap_rotate_up(struct range_arena *a, uint32_t x) {
        struct seg *sx = &a->segs[x];
        uint32_t p = sx->parent;
        struct seg *sp = &a->segs[p];
        uint32_t g = sp->parent, b;
        if (sp->left == x) {
                b = sx->right;
                sp->left = b;
                sx->right = p;
        } else {
                b = sx->left;
                sp->right = b;
                sx->left = p;
        }
        if (b)
                a->segs[b].parent = p;
        sp->parent = x;
        sx->parent = g;
        treap_replace_child(a, g, p, x);
        sx->max = sp->max;
        sp->max = node_max(a, p);
}

/* Rotates i up while it outranks its parent. */
static void treap_sift_up(struct range_arena *a, uint32_t i) {
        while (a->segs[i].parent && prio(a, i) > prio(a, a->segs[i].parent))
                treap_rotate_up(a, i);
}

/* The child of i with the higher priority, or NIL for a leaf. */
static uint32_t treap_higher_child(const struct range_arena *a, uint32_t i) {
        uint32_t l = a->segs[i].left, r = a->segs[i].right;
        if (!l || !r)
                return l ? l : r;
        return prio(a, l) > prio(a, r) ? l : r;
}

/* Rotates i down while a child outranks it. */
static void treap_sift_down(struct range_arena *a, uint32_t i) {
        for (uint32_t c; (c = treap_higher_child(a, i)) && prio(a, c) > prio(a, i);)
                treap_rotate_up(a, c);
}

void range_treap_insert(struct range_arena *a, uint32_t z) {
        struct seg *sz = &a->segs[z];
        uint32_t p = NIL;
        sz->left = sz->right = NIL;
        sz->max = sz->size;
        for (uint32_t c = a->root; c;) {
                struct seg *sc = &a->segs[c];
                if (sc->max < sz->size)
                        sc->max = sz->size;
                p = c;
                c = sz->start < sc->start ? sc->left : sc->right;
        }
        sz->parent = p;
        if (!p)
                a->root = z;
        else if (sz->start < a->segs[p].start)
                a->segs[p].left = z;
        else
                a->segs[p].right = z;
        treap_sift_up(a, z);
}

void range_treap_delete(struct range_arena *a, uint32_t z) {
        /* Down to a leaf, whatever the priorities say, then off. */
        for (uint32_t c; (c = treap_higher_child(a, z));)
                treap_rotate_up(a, c);
        uint32_t p = a->segs[z].parent;
        treap_replace_child(a, p, z, NIL);
        range_treap_fix_up(a, p);
}

/*
 * Builds the treap of every free segment from the address list in O(n), as a
 * Cartesian tree: each segment joins the right spine, below the last node
 * that outranks it, and takes the nodes it outranks as its left subtree.  A
 * node's subtree is complete when it leaves the spine, so its maximum is
 * computed then.  The parent links are the spine's stack: no memory needed.
 */
static void treap_build(struct range_arena *a) {
        uint32_t last = NIL;
        a->root = NIL;
        for (uint32_t i = a->head; i; i = a->segs[i].anext) {
                struct seg *s = &a->segs[i];
                if (s->state != SEG_FREE)
                        continue;
                uint32_t c = last, below = NIL;
                uint64_t pi = prio(a, i);
                for (; c && prio(a, c) < pi; below = c, c = a->segs[c].parent)
                        a->segs[c].max = node_max(a, c);
                s->left = below;
                s->right = NIL;
                if (below)
                        a->segs[below].parent = i;
                s->parent = c;
                if (c)
                        a->segs[c].right = i;
                else
                        a->root = i;
                last = i;
        }
        for (uint32_t c = last; c; c = a->segs[c].parent)
                a->segs[c].max = node_max(a, c);
        a->tree = true;
}

void range_tree_use(struct range_arena *a) {
        if (!a->tree)
                treap_build(a);
        a->tree_idle = 0;
}

void range_treap_resift(struct range_arena *a, uint32_t i) {
        treap_sift_up(a, i);
        treap_sift_down(a, i);
}
