/* SPDX-License-Identifier: MIT */
/*
 * Theory of the range allocator
 * =============================
 *
 * The arena manages integers (pool offsets, device addresses), never memory,
 * so all its metadata is out of band.  The model is Bonwick and Adams' vmem
 * (USENIX 2001, FreeBSD vmem(9)), with an augmented tree for the constrained
 * requests that vmem answers by walking lists.
 *
 * Segments.  Every byte of every span belongs to exactly one segment, free or
 * used.  A segment is a boundary tag: start, size, and links.  Tags live in
 * one array and refer to each other by 32-bit index (0 is "none"), which keeps
 * a tag at 56 bytes and makes the whole table a plain data structure that can
 * be written out and read back.  Retired tags go on a spare list, and every
 * operation reserves the tags it may need before it changes anything, so once
 * the array has grown to the working set no operation calls malloc, and an
 * operation that cannot get memory fails before it has changed any state.
 *
 * Address list.  All segments, in address order, doubly linked.  Freeing a
 * segment looks at its two neighbours and merges with the free ones: O(1)
 * coalescing.  Two neighbours merge only if they touch, so spans that touch
 * behave as one span and spans with a gap between them never merge.
 *
 * Used segments are also in a hash table keyed by start (chained through the
 * tag), so a free needs only the start: O(1).
 *
 * Free segments are in two structures at once:
 *
 *   Size classes.  Class k holds the free segments with 2^k <= size <
 *   2^(k+1), in two lists: list 2k+1 those that hold a block of 2^k bytes
 *   aligned to 2^k, list 2k those that do not (a segment of class k always
 *   holds an aligned block of 2^(k-1)).  A bitmap says which lists are
 *   non-empty.  Any segment in a class at or above ceil(log2(n)) holds n
 *   bytes, and any segment on list 2m+1 or above holds a block aligned to
 *   2^m, so "instant fit" is: find the lowest set bit at or above the first
 *   list whose every segment holds the request, take the head of that list.
 *   O(1), whatever the fragmentation.  The second list is what makes
 *   requests aligned to their size (most device users') instant: with sizes
 *   alone they would need a segment of twice their size.
 *
 *   Address treap.  A binary search tree ordered by start, each node
 *   augmented with the largest free size in its subtree (as Linux drm_mm
 *   does).  A node's priority is its size class, then a hash of its tag
 *   index, so priorities cost no space.  Large segments therefore sit above
 *   small ones: the segment that most allocations are cut from is at or near
 *   the root, and propagating its new size is short.  Among segments of one
 *   class the hash makes the order random, so the part of any path inside
 *   one class is a random treap's, O(log n) expected; a path crosses each
 *   of the 64 classes at most once.  A segment whose size moves to another
 *   class is rotated to its new place.  A search for the lowest-addressed
 *   segment that fits skips every subtree whose largest size is too small
 *   and every subtree outside the window [low, high): O(log n).
 *
 * The treap is kept only while requests use it.  Unwindowed instant-fit and
 * best-fit requests, and frees, need only the lists, the address list and
 * the hash, all O(1) per change; keeping the treap would add a walk from the
 * root for each segment inserted and rotations for each that changes class,
 * which under churn is most of the cost (a cache miss a level at a million
 * segments).  So the arena starts without it; the first request that
 * searches it (a window, next fit, a fallback below) builds it from the
 * address list in O(n), with no memory; every change keeps it from then on;
 * and after as many operations as there are free segments with no search,
 * it is dropped again, so that a rebuild never costs more than the upkeep it
 * saved.  range_stats reads the largest free size from the treap when it is
 * kept, else from the highest size class's lists.
 *
 * Constrained requests.  For a request of size s, alignment a, phase p and
 * boundary b, every free segment of at least G bytes lying inside the window
 * is certain to hold a placement:
 *
 *   G = s + (a - q)                          no boundary, or a >= b
 *   G = s + (a - q) + (s - q) + p            a < b (one step past a boundary)
 *
 * (q is the quantum).  A constrained request first searches the treap
 * pruning with G: the first candidate it checks fits, except the at most two
 * segments cut by the window's edges, so this is O(log n).  Only if no
 * segment of G bytes exists does it search again pruning with s, checking
 * each candidate exactly; that second pass is linear in the number of free
 * segments between s and G bytes in the worst case, and it is what keeps the
 * contract: a request fails only if no placement satisfying all of its
 * constraints exists.  Unwindowed instant-fit requests use the free lists
 * and stay O(1): a segment of G bytes, or one holding a block aligned to its
 * size 2^m >= max(a, p + s) (when 2^m <= b, such a block crosses no
 * boundary line), certainly holds a placement; the lower of the two lists
 * these conditions give is where the search starts.
 *
 * Policies.  Instant fit: the free lists, falling back to the treap.  Best
 * fit: the smallest free segment that holds the request, lowest address on
 * ties; it scans the size classes (both lists of each) from the request's
 * upward and stops at the first class with a fit, so it is linear in the
 * length of the classes it scans.  Next fit: treap first fit starting just after the previous next-fit
 * range (a rotor), wrapping round once; it keeps recently freed ranges from
 * being handed out again at once.
 *
 * The arena is not locked: allocd runs it on its one loop thread.
 */

#include "alloc/range.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define NIL 0u
#define NCLASSES 64
#define NLISTS (2 * NCLASSES)           /* two lists a size class: see "Size classes" above */
#define MAX_TAGS ((uint64_t)UINT32_MAX) /* indices 1 .. UINT32_MAX - 1 */

enum seg_state {
        SEG_SPARE = 0,
        SEG_FREE,
        SEG_USED,
};

struct seg {
        uint64_t start;
        uint64_t size;
        uint64_t max;          /* free: largest size in this treap subtree */
        uint32_t aprev, anext; /* address order; spare tags chain through anext */
        uint32_t lprev, lnext; /* free: size-class list; used: hash chain (lnext) */
        uint32_t left, right;  /* free: treap children */
        uint32_t parent;       /* free: treap parent */
        uint16_t state;
        uint16_t list; /* free: the free list it is on */
};

_Static_assert(sizeof(struct seg) == 56, "a boundary tag must stay within the 64-byte budget with its hash bucket");

struct range_arena {
        struct seg *segs; /* segs[0] is never used: index 0 is NIL */
        uint64_t cap;     /* tags allocated in segs */
        uint32_t hw;      /* highest index ever handed out */
        uint32_t spare;   /* retired tags */
        uint32_t nspare;
        uint32_t head, tail; /* address list */
        uint32_t root;       /* treap of free segments, while tree is set */
        bool tree;           /* the treap is kept (see "The treap is kept" above) */
        uint64_t tree_idle;  /* operations since a request last used the treap */
        uint32_t lists[NLISTS];
        uint64_t list_bits[2]; /* bit k % 64 of word k / 64: list k is not empty */
        uint32_t *buckets;
        uint32_t nbuckets; /* a power of two, or 0 before the first allocation */
        unsigned hash_shift;
        uint64_t quantum;
        uint64_t total, in_use;
        uint64_t nfree, nused;
        uint64_t rotor; /* next fit resumes here */
};

/* A validated request, in bytes, every field a multiple of the quantum. */
struct want {
        uint64_t size, align, phase, boundary;
        uint64_t low, high; /* high is exclusive; UINT64_MAX when unlimited */
};

static inline bool is_pow2(uint64_t v) {
        return v != 0 && (v & (v - 1)) == 0;
}

static inline unsigned floor_log2(uint64_t v) {
        return 63u - (unsigned)__builtin_clzll(v);
}

static inline uint64_t sat_add(uint64_t a, uint64_t b) {
        uint64_t r;
        return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static inline uint64_t umax(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

static inline uint64_t umin(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

static inline uint64_t seg_end(const struct seg *s) {
        return s->start + s->size;
}

/* ---- tags ---------------------------------------------------------------- */

/* Makes sure n tags can be taken without growing the array. */
static int tags_reserve(struct range_arena *a, uint32_t n) {
        uint64_t avail = a->nspare + (a->cap - 1 - a->hw);
        if (a->cap > 0 && avail >= n)
                return 0;
        uint64_t ncap = a->cap ? a->cap * 2 : 64;
        if (ncap > MAX_TAGS)
                ncap = MAX_TAGS;
        if (ncap <= a->cap || ncap - 1 - a->hw + a->nspare < n)
                return -ENOMEM;
        /* Not cleared: tag_get initialises each tag, and untouched growth stays out of memory. */
        struct seg *segs = realloc(a->segs, ncap * sizeof(*segs));
        if (!segs)
                return -ENOMEM;
        a->segs = segs;
        a->cap = ncap;
        return 0;
}

static uint32_t tag_get(struct range_arena *a) {
        uint32_t i;
        if (a->spare) {
                i = a->spare;
                a->spare = a->segs[i].anext;
                a->nspare--;
        } else
                i = ++a->hw;
        a->segs[i] = (struct seg){0};
        return i;
}

static void tag_put(struct range_arena *a, uint32_t i) {
        a->segs[i].state = SEG_SPARE;
        a->segs[i].anext = a->spare;
        a->spare = i;
        a->nspare++;
}

/* ---- address list -------------------------------------------------------- */

/* Links i after p (p == NIL: at the head). */
static void addr_link_after(struct range_arena *a, uint32_t p, uint32_t i) {
        uint32_t n = p ? a->segs[p].anext : a->head;
        a->segs[i].aprev = p;
        a->segs[i].anext = n;
        if (p)
                a->segs[p].anext = i;
        else
                a->head = i;
        if (n)
                a->segs[n].aprev = i;
        else
                a->tail = i;
}

static void addr_unlink(struct range_arena *a, uint32_t i) {
        uint32_t p = a->segs[i].aprev, n = a->segs[i].anext;
        if (p)
                a->segs[p].anext = n;
        else
                a->head = n;
        if (n)
                a->segs[n].aprev = p;
        else
                a->tail = p;
}

/* ---- size classes -------------------------------------------------------- */

/* Does [start, start + size) hold a block of 2^floor_log2(size) bytes aligned to its size? */
static inline bool holds_aligned_block(uint64_t start, uint64_t size) {
        uint64_t b = UINT64_C(1) << floor_log2(size);
        return (-start & (b - 1)) <= size - b;
}

static inline unsigned list_of(uint64_t start, uint64_t size) {
        return 2 * floor_log2(size) + holds_aligned_block(start, size);
}

static void class_insert(struct range_arena *a, uint32_t i) {
        unsigned k = list_of(a->segs[i].start, a->segs[i].size);
        uint32_t h = a->lists[k];
        a->segs[i].list = (uint16_t)k;
        a->segs[i].lprev = NIL;
        a->segs[i].lnext = h;
        if (h)
                a->segs[h].lprev = i;
        a->lists[k] = i;
        a->list_bits[k / 64] |= UINT64_C(1) << (k % 64);
}

static void class_remove(struct range_arena *a, uint32_t i) {
        uint32_t p = a->segs[i].lprev, n = a->segs[i].lnext;
        unsigned k = a->segs[i].list;
        if (p)
                a->segs[p].lnext = n;
        else
                a->lists[k] = n;
        if (n)
                a->segs[n].lprev = p;
        if (!a->lists[k])
                a->list_bits[k / 64] &= ~(UINT64_C(1) << (k % 64));
}

/* The lowest non-empty list at or above k, or NLISTS. */
static unsigned first_list_from(const struct range_arena *a, unsigned k) {
        for (; k < NLISTS; k = (k / 64 + 1) * 64) {
                uint64_t bits = a->list_bits[k / 64] & (~UINT64_C(0) << (k % 64));
                if (bits)
                        return k / 64 * 64 + (unsigned)__builtin_ctzll(bits);
        }
        return NLISTS;
}

/* ---- hash of used segments ----------------------------------------------- */

/*
 * Starts aligned to their sizes are a lattice that a single multiply spreads
 * badly (at a million ranges aligned to 4-64 KiB, 2.4 probes a lookup instead
 * of 1.5, each probe a tag that is likely a cache miss): mix twice.
 */
static inline uint32_t bucket_of(const struct range_arena *a, uint64_t start) {
        uint64_t z = start * UINT64_C(0x9E3779B97F4A7C15);
        z ^= z >> 29;
        z *= UINT64_C(0xBF58476D1CE4E5B9);
        return (uint32_t)(z >> a->hash_shift);
}

static int hash_reserve(struct range_arena *a) {
        if (a->nused < a->nbuckets)
                return 0;
        uint64_t nb = a->nbuckets ? (uint64_t)a->nbuckets * 2 : 64;
        if (nb > UINT32_MAX)
                return -ENOMEM;
        uint32_t *b = calloc(nb, sizeof(*b));
        if (!b)
                return -ENOMEM;
        uint32_t *old = a->buckets;
        uint32_t nold = a->nbuckets;
        a->buckets = b;
        a->nbuckets = (uint32_t)nb;
        a->hash_shift = 64 - floor_log2(nb);
        for (uint32_t k = 0; k < nold; k++)
                for (uint32_t i = old[k], next; i; i = next) {
                        next = a->segs[i].lnext;
                        uint32_t h = bucket_of(a, a->segs[i].start);
                        a->segs[i].lnext = b[h];
                        b[h] = i;
                }
        free(old);
        return 0;
}

static void hash_insert(struct range_arena *a, uint32_t i) {
        uint32_t h = bucket_of(a, a->segs[i].start);
        a->segs[i].lnext = a->buckets[h];
        a->buckets[h] = i;
}

/* The used segment starting at start; *link is where it is chained from. */
static uint32_t hash_find(const struct range_arena *a, uint64_t start, uint32_t **link) {
        if (!a->nbuckets)
                return NIL;
        uint32_t *l = &a->buckets[bucket_of(a, start)];
        for (; *l; l = &a->segs[*l].lnext)
                if (a->segs[*l].start == start) {
                        if (link)
                                *link = l;
                        return *l;
                }
        return NIL;
}

/* ---- treap of free segments ---------------------------------------------- */

/*
 * Treap priority: the size class first, then a bijective mix of the index
 * (distinct tags never tie).  Large segments sit near the root, so the
 * segment that most allocations cut from has a short path to fix up.
 */
static inline uint64_t prio(const struct range_arena *a, uint32_t i) {
        uint32_t h = i;
        h ^= h >> 16;
        h *= UINT32_C(0x7feb352d);
        h ^= h >> 15;
        h *= UINT32_C(0x846ca68b);
        h ^= h >> 16;
        return (uint64_t)floor_log2(a->segs[i].size) << 32 | h;
}

static inline uint64_t sub_max(const struct range_arena *a, uint32_t i) {
        return i ? a->segs[i].max : 0;
}

static inline uint64_t node_max(const struct range_arena *a, uint32_t i) {
        const struct seg *s = &a->segs[i];
        return umax(s->size, umax(sub_max(a, s->left), sub_max(a, s->right)));
}

/* Recomputes the augmented maximum from i upwards until it stops changing. */
static void treap_fix_up(struct range_arena *a, uint32_t i) {
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

static void treap_insert(struct range_arena *a, uint32_t z) {
        if (!a->tree)
                return;
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

static void treap_delete(struct range_arena *a, uint32_t z) {
        if (!a->tree)
                return;
        /* Down to a leaf, whatever the priorities say, then off. */
        for (uint32_t c; (c = treap_higher_child(a, z));)
                treap_rotate_up(a, c);
        uint32_t p = a->segs[z].parent;
        treap_replace_child(a, p, z, NIL);
        treap_fix_up(a, p);
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

/* A request is about to search the treap. */
static void tree_use(struct range_arena *a) {
        if (!a->tree)
                treap_build(a);
        a->tree_idle = 0;
}

/*
 * An operation that did not use the treap: after as many of them as there
 * are free segments (a build's cost), stop keeping it.
 */
static void tree_idle(struct range_arena *a) {
        if (a->tree && ++a->tree_idle > a->nfree + 64)
                a->tree = false;
}

/*
 * A free segment's size changed from old_size (its start may have moved, but
 * never past a neighbour): fix the maxima first, so that the rotations that
 * restore the priority order start from a consistent tree.
 */
static void free_resized(struct range_arena *a, uint32_t i, uint64_t old_size) {
        struct seg *s = &a->segs[i];
        if (a->tree)
                treap_fix_up(a, i);
        if (s->list == list_of(s->start, s->size))
                return;
        class_remove(a, i);
        class_insert(a, i);
        if (!a->tree || floor_log2(old_size) == floor_log2(s->size))
                return;
        treap_sift_up(a, i);
        treap_sift_down(a, i);
}

/* ---- placement ----------------------------------------------------------- */

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
                if (s->max < min)
                        return NIL;
                /* Segments on the left end at or before s->start. */
                if (s->left && s->start > w->low) {
                        uint32_t f = treap_first_fit(a, s->left, w, min, x);
                        if (f)
                                return f;
                }
                if (s->start >= w->high)
                        return NIL;
                if (s->size >= min && place(s, w, x))
                        return i;
                i = s->right;
        }
        return NIL;
}

static uint32_t first_fit(struct range_arena *a, const struct want *w, uint64_t guaranteed, uint64_t *x) {
        tree_use(a);
        uint32_t i = treap_first_fit(a, a->root, w, guaranteed, x);
        if (!i && guaranteed > w->size)
                i = treap_first_fit(a, a->root, w, w->size, x);
        return i;
}

/* The ceiling of log2(v), v > 0. */
static inline unsigned ceil_log2(uint64_t v) {
        return floor_log2(v) + !is_pow2(v);
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

static uint32_t instant_fit(struct range_arena *a, const struct want *w, uint64_t guaranteed, uint64_t *x) {
        if (w->low == 0 && w->high == UINT64_MAX) {
                unsigned k = first_list_from(a, sure_list(a, w));
                if (k < NLISTS) {
                        uint32_t i = a->lists[k];
                        if (place(&a->segs[i], w, x))
                                return i;
                }
        }
        return first_fit(a, w, guaranteed, x);
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

static uint32_t next_fit(struct range_arena *a, const struct want *w, uint64_t guaranteed, uint64_t *x) {
        if (a->rotor > w->low && a->rotor < w->high) {
                struct want v = *w;
                v.low = a->rotor;
                uint32_t i = first_fit(a, &v, guaranteed, x);
                if (i)
                        return i;
        }
        return first_fit(a, w, guaranteed, x);
}

/* ---- segment surgery ----------------------------------------------------- */

/* Cuts [x, x + size) out of free segment f; needs two reserved tags.  Returns the used tag. */
static uint32_t carve(struct range_arena *a, uint32_t f, uint64_t x, uint64_t size) {
        struct seg *sf = &a->segs[f];
        uint64_t start = sf->start, end = seg_end(sf), old = sf->size;
        uint32_t u;

        if (x == start && x + size == end) {
                treap_delete(a, f);
                class_remove(a, f);
                a->nfree--;
                u = f;
        } else {
                u = tag_get(a);
                a->segs[u].start = x;
                a->segs[u].size = size;
                if (x == start) {
                        /* f keeps the part above; its start moves up between the same neighbours. */
                        addr_link_after(a, sf->aprev, u);
                        sf->start += size;
                        sf->size -= size;
                } else {
                        /* f keeps the part below. */
                        addr_link_after(a, f, u);
                        sf->size = x - start;
                }
                /*
                 * Settle f's shrink before inserting anything: a rotation would
                 * recompute f's maximum and leave its ancestors stale behind it.
                 */
                free_resized(a, f, old);
                if (x > start && x + size < end) {
                        uint32_t r = tag_get(a);
                        a->segs[r].start = x + size;
                        a->segs[r].size = end - (x + size);
                        a->segs[r].state = SEG_FREE;
                        addr_link_after(a, u, r);
                        class_insert(a, r);
                        treap_insert(a, r);
                        a->nfree++;
                }
        }
        a->segs[u].state = SEG_USED;
        hash_insert(a, u);
        a->nused++;
        a->in_use += size;
        return u;
}

/* Makes i (linked in the address list, in no other structure) free, merging with free neighbours. */
static void release(struct range_arena *a, uint32_t i) {
        struct seg *s = &a->segs[i];
        uint32_t p = s->aprev, n = s->anext;
        bool left = p && a->segs[p].state == SEG_FREE && seg_end(&a->segs[p]) == s->start;
        bool right = n && a->segs[n].state == SEG_FREE && seg_end(s) == a->segs[n].start;

        if (left) {
                struct seg *sp = &a->segs[p];
                uint64_t old = sp->size;
                if (right) {
                        struct seg *sn = &a->segs[n];
                        treap_delete(a, n);
                        class_remove(a, n);
                        sp->size += sn->size;
                        addr_unlink(a, n);
                        tag_put(a, n);
                        a->nfree--;
                }
                sp->size += s->size;
                addr_unlink(a, i);
                tag_put(a, i);
                free_resized(a, p, old);
        } else if (right) {
                struct seg *sn = &a->segs[n];
                uint64_t old = sn->size;
                /* The start moves down but stays above the previous segment: the treap order holds. */
                sn->start = s->start;
                sn->size += s->size;
                addr_unlink(a, i);
                tag_put(a, i);
                free_resized(a, n, old);
        } else {
                s->state = SEG_FREE;
                class_insert(a, i);
                treap_insert(a, i);
                a->nfree++;
        }
}

/* ---- public API ---------------------------------------------------------- */

int range_arena_new(struct range_arena **ret, uint64_t quantum) {
        if (!ret)
                return -EINVAL;
        if (!is_pow2(quantum))
                return -EDOM;
        struct range_arena *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->quantum = quantum;
        *ret = a;
        return 0;
}

struct range_arena *range_arena_free(struct range_arena *a) {
        if (a) {
                free(a->segs);
                free(a->buckets);
                free(a);
        }
        return NULL;
}

int range_add(struct range_arena *a, uint64_t start, uint64_t size) {
        uint64_t end;
        if (!a || size == 0)
                return -EINVAL;
        if ((start | size) & (a->quantum - 1))
                return -EDOM;
        if (__builtin_add_overflow(start, size, &end))
                return -EOVERFLOW;

        /* Spans are usually added in address order: search from the top. */
        uint32_t p = a->tail;
        while (p && a->segs[p].start >= start)
                p = a->segs[p].aprev;
        uint32_t n = p ? a->segs[p].anext : a->head;
        if ((p && seg_end(&a->segs[p]) > start) || (n && a->segs[n].start < end))
                return -EEXIST;
        int r = tags_reserve(a, 1);
        if (r < 0)
                return r;

        uint32_t i = tag_get(a);
        a->segs[i].start = start;
        a->segs[i].size = size;
        addr_link_after(a, p, i);
        release(a, i);
        a->total += size;
        return 0;
}

static int want_init(const struct range_arena *a, uint64_t size, const struct range_req *req, struct want *w) {
        static const struct range_req none = {0};
        uint64_t q = a->quantum;
        if (!req)
                req = &none;
        if (size == 0)
                return -EINVAL;
        if ((unsigned)req->policy > RANGE_NEXTFIT)
                return -EDOM;
        if ((req->align && !is_pow2(req->align)) || (req->boundary && !is_pow2(req->boundary)))
                return -EDOM;
        w->align = umax(req->align, q);
        if (req->phase >= w->align || (req->phase & (q - 1)))
                return -EDOM;
        if (size > UINT64_MAX - (q - 1))
                return -EOVERFLOW;
        if (req->high && req->low >= req->high)
                return -ERANGE;
        w->size = (size + q - 1) & ~(q - 1);
        w->phase = req->phase;
        w->boundary = req->boundary;
        if (w->boundary &&
            (w->size > w->boundary || (w->phase & (umin(w->align, w->boundary) - 1)) + w->size > w->boundary))
                return -EMSGSIZE;
        /* The window, shrunk to whole quanta. */
        w->low = req->low > UINT64_MAX - (q - 1) ? UINT64_MAX : (req->low + q - 1) & ~(q - 1);
        w->high = req->high ? req->high & ~(q - 1) : UINT64_MAX;
        return 0;
}

int range_alloc(struct range_arena *a, uint64_t size, const struct range_req *req, uint64_t *ret) {
        struct want w;
        uint64_t x = 0;
        uint32_t f;
        int r;

        if (!a || !ret)
                return -EINVAL;
        r = want_init(a, size, req, &w);
        if (r < 0)
                return r;
        if (w.low >= w.high)
                return -ENOSPC;
        uint64_t g = guaranteed_size(a, &w);
        switch (req ? req->policy : RANGE_INSTANTFIT) {
        case RANGE_BESTFIT:
                f = best_fit(a, &w, &x);
                break;
        case RANGE_NEXTFIT:
                f = next_fit(a, &w, g, &x);
                break;
        default:
                f = instant_fit(a, &w, g, &x);
                break;
        }
        if (!f)
                return -ENOSPC;
        /* Reserve after the search, which needs no memory: a full arena costs no growth. */
        r = tags_reserve(a, 2);
        if (r >= 0)
                r = hash_reserve(a);
        if (r < 0)
                return r;
        carve(a, f, x, w.size);
        tree_idle(a);
        if (req && req->policy == RANGE_NEXTFIT)
                a->rotor = x + w.size;
        *ret = x;
        return 0;
}

int range_free(struct range_arena *a, uint64_t start, uint64_t size) {
        uint32_t *link, i;
        if (!a)
                return -EINVAL;
        i = hash_find(a, start, &link);
        if (!i)
                return -ENOENT;
        if (size &&
            (size > UINT64_MAX - (a->quantum - 1) || ((size + a->quantum - 1) & ~(a->quantum - 1)) != a->segs[i].size))
                return -EINVAL;
        *link = a->segs[i].lnext;
        a->nused--;
        a->in_use -= a->segs[i].size;
        release(a, i);
        tree_idle(a);
        return 0;
}

int range_query(const struct range_arena *a, uint64_t start, uint64_t *ret_size) {
        if (!a || !ret_size)
                return -EINVAL;
        uint32_t i = hash_find(a, start, NULL);
        if (!i)
                return -ENOENT;
        *ret_size = a->segs[i].size;
        return 0;
}

/* Without the treap: the largest segment of the highest class, by a walk of its two lists. */
static uint64_t largest_listed(const struct range_arena *a) {
        uint64_t m = 0;
        int w = a->list_bits[1] ? 1 : 0;
        if (!a->list_bits[w])
                return 0;
        unsigned k = (unsigned)(64 * w + 63 - __builtin_clzll(a->list_bits[w])) & ~1u;
        for (unsigned l = k; l <= k + 1; l++)
                for (uint32_t i = a->lists[l]; i; i = a->segs[i].lnext)
                        m = umax(m, a->segs[i].size);
        return m;
}

void range_stats(const struct range_arena *a, struct range_stats *st) {
        if (!a) {
                *st = (struct range_stats){0};
                return;
        }
        *st = (struct range_stats){
                .quantum = a->quantum,
                .total = a->total,
                .in_use = a->in_use,
                .free = a->total - a->in_use,
                .largest_free = a->tree ? sub_max(a, a->root) : largest_listed(a),
                .free_segments = a->nfree,
                .used_segments = a->nused,
                .meta_bytes = sizeof(*a) + a->cap * sizeof(struct seg) + (uint64_t)a->nbuckets * sizeof(uint32_t),
        };
}

int range_walk(const struct range_arena *a, range_walk_fn fn, void *userdata) {
        if (!a || !fn)
                return -EINVAL;
        for (uint32_t i = a->head; i; i = a->segs[i].anext) {
                const struct seg *s = &a->segs[i];
                struct range_seg rs = {.start = s->start, .size = s->size, .used = s->state == SEG_USED};
                int r = fn(&rs, userdata);
                if (r)
                        return r;
        }
        return 0;
}

/* ---- self-check (tests) -------------------------------------------------- */

#include <stdio.h>

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
        uint64_t nl = 0, nr = 0;
        if (s->state != SEG_FREE)
                BAD("treap node %u is not free", i);
        if (s->parent != parent)
                BAD("treap node %u has parent %u, expected %u", i, s->parent, parent);
        if (s->start < lo || s->start > hi)
                BAD("treap node %u at %#llx is out of order", i, (unsigned long long)s->start);
        if (parent && prio(a, i) > prio(a, parent))
                BAD("treap node %u outranks its parent", i);
        if (s->max != node_max(a, i))
                BAD("treap node %u has max %#llx, its subtree %#llx", i, (unsigned long long)s->max,
                    (unsigned long long)node_max(a, i));
        int r = check_treap(a, s->left, i, lo, s->start, &nl, why, why_size);
        if (r == 0)
                r = check_treap(a, s->right, i, s->start, hi, &nr, why, why_size);
        *count = 1 + nl + nr;
        return r;
}

void range_arena_drop_tree(struct range_arena *a) {
        a->tree = false;
}

int range_arena_check(const struct range_arena *a, char *why, size_t why_size) {
        uint64_t nfree = 0, nused = 0, total = 0, in_use = 0, count = 0;
        uint32_t prev = NIL;
        for (uint32_t i = a->head; i; prev = i, i = a->segs[i].anext) {
                const struct seg *s = &a->segs[i];
                if (s->aprev != prev)
                        BAD("tag %u: aprev %u, expected %u", i, s->aprev, prev);
                if (s->size == 0 || (s->start | s->size) & (a->quantum - 1))
                        BAD("tag %u: %#llx+%#llx", i, (unsigned long long)s->start, (unsigned long long)s->size);
                if (prev && seg_end(&a->segs[prev]) > s->start)
                        BAD("tag %u overlaps its predecessor", i);
                if (prev && s->state == SEG_FREE && a->segs[prev].state == SEG_FREE &&
                    seg_end(&a->segs[prev]) == s->start)
                        BAD("tags %u and %u are touching free segments", prev, i);
                total += s->size;
                if (s->state == SEG_FREE) {
                        nfree++;
                        if (s->list != list_of(s->start, s->size))
                                BAD("free tag %u is filed on list %u, belongs on %u", i, s->list,
                                    list_of(s->start, s->size));
                        uint32_t j = a->lists[s->list];
                        while (j && j != i)
                                j = a->segs[j].lnext;
                        if (!j)
                                BAD("free tag %u is not on its free list", i);
                } else if (s->state == SEG_USED) {
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
        uint64_t listed = 0;
        for (unsigned k = 0; k < NLISTS; k++) {
                if (!a->lists[k] != !(a->list_bits[k / 64] & (UINT64_C(1) << (k % 64))))
                        BAD("list bitmap wrong at %u", k);
                for (uint32_t j = a->lists[k]; j && listed <= nfree; j = a->segs[j].lnext, listed++)
                        if (a->segs[j].state != SEG_FREE || a->segs[j].list != k)
                                BAD("tag %u on free list %u is not a free segment of that list", j, k);
        }
        if (listed != nfree)
                BAD("the free lists hold %llu segments or more, %llu are free", (unsigned long long)listed,
                    (unsigned long long)nfree);
        if (!a->tree)
                return 0;
        int r = check_treap(a, a->root, NIL, 0, UINT64_MAX, &count, why, why_size);
        if (r < 0)
                return r;
        if (count != nfree)
                BAD("treap holds %llu segments, %llu are free", (unsigned long long)count, (unsigned long long)nfree);
        return 0;
}
