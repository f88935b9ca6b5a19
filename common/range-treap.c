/* SPDX-License-Identifier: MIT */
/*
 * The address treap of free segments: a binary search tree by start,
 * augmented with the largest free size of each subtree, heap-ordered by the
 * priority prio() gives (size class first), its nodes (struct tnode) in an
 * array beside the tags.  Kept only while requests search it; "Address
 * treap" and "The treap is kept" in range.c say why.
 */
#include <errno.h>
#include <stdlib.h>

#include "range-internal.h"

void range_treap_fix_up(struct range_arena *a, uint32_t i) {
        for (; i; i = a->tn[i].parent) {
                uint64_t m = node_max(a, i);
                if (m == a->tn[i].max)
                        return;
                a->tn[i].max = m;
        }
}

static void treap_replace_child(struct range_arena *a, uint32_t parent, uint32_t old, uint32_t new) {
        if (!parent)
                a->root = new;
        else if (a->tn[parent].left == old)
                a->tn[parent].left = new;
        else
                a->tn[parent].right = new;
}

/* Rotates x above its parent; the subtree as a whole keeps its maximum. */
static void treap_rotate_up(struct range_arena *a, uint32_t x) {
        struct tnode *sx = &a->tn[x];
        uint32_t p = sx->parent;
        struct tnode *sp = &a->tn[p];
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
                a->tn[b].parent = p;
        sp->parent = x;
        sx->parent = g;
        treap_replace_child(a, g, p, x);
        sx->max = sp->max;
        sp->max = node_max(a, p);
}

/* Rotates i up while it outranks its parent. */
static void treap_sift_up(struct range_arena *a, uint32_t i) {
        while (a->tn[i].parent && prio(a, i) > prio(a, a->tn[i].parent))
                treap_rotate_up(a, i);
}

/* The child of i with the higher priority, or NIL for a leaf. */
static uint32_t treap_higher_child(const struct range_arena *a, uint32_t i) {
        uint32_t l = a->tn[i].left, r = a->tn[i].right;
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
        struct tnode *tz = &a->tn[z];
        uint64_t start = a->segs[z].start, size = a->segs[z].size;
        uint32_t p = NIL;
        tz->left = tz->right = NIL;
        tz->max = size;
        for (uint32_t c = a->root; c;) {
                struct tnode *tc = &a->tn[c];
                if (tc->max < size)
                        tc->max = size;
                p = c;
                c = start < a->segs[c].start ? tc->left : tc->right;
        }
        tz->parent = p;
        if (!p)
                a->root = z;
        else if (start < a->segs[p].start)
                a->tn[p].left = z;
        else
                a->tn[p].right = z;
        treap_sift_up(a, z);
}

void range_treap_delete(struct range_arena *a, uint32_t z) {
        /* Down to a leaf, whatever the priorities say, then off. */
        for (uint32_t c; (c = treap_higher_child(a, z));)
                treap_rotate_up(a, c);
        uint32_t p = a->tn[z].parent;
        treap_replace_child(a, p, z, NIL);
        range_treap_fix_up(a, p);
}

/*
 * Builds the treap of every free segment from the address list in O(n), as a
 * Cartesian tree: each segment joins the right spine, below the last node
 * that outranks it, and takes the nodes it outranks as its left subtree.  A
 * node's subtree is complete when it leaves the spine, so its maximum is
 * computed then.  The parent links are the spine's stack: no memory beyond the nodes.
 */
static void treap_build(struct range_arena *a) {
        uint32_t last = NIL;
        a->root = NIL;
        for (uint32_t i = a->head; i; i = a->segs[i].anext) {
                if (!seg_free(&a->segs[i]))
                        continue;
                struct tnode *s = &a->tn[i];
                uint32_t c = last, below = NIL;
                uint64_t pi = prio(a, i);
                for (; c && prio(a, c) < pi; below = c, c = a->tn[c].parent)
                        a->tn[c].max = node_max(a, c);
                s->left = below;
                s->right = NIL;
                if (below)
                        a->tn[below].parent = i;
                s->parent = c;
                if (c)
                        a->tn[c].right = i;
                else
                        a->root = i;
                last = i;
        }
        for (uint32_t c = last; c; c = a->tn[c].parent)
                a->tn[c].max = node_max(a, c);
        a->tree = true;
}

int range_tree_use(struct range_arena *a) {
        if (!a->tree) {
                /* At least one: an arena with no tags yet has a treap too, an empty one. */
                a->tn = malloc((a->cap ? a->cap : 1) * sizeof(*a->tn));
                if (!a->tn)
                        return -ENOMEM;
                treap_build(a);
        }
        a->tree_idle = 0;
        return 0;
}

void range_tree_drop(struct range_arena *a) {
        free(a->tn);
        a->tn = NULL;
        a->tree = false;
}

void range_treap_resift(struct range_arena *a, uint32_t i) {
        treap_sift_up(a, i);
        treap_sift_down(a, i);
}
