/* SPDX-License-Identifier: MIT */
/*
 * The range allocator's internals, shared by its files: range.c (the theory
 * of the structure, tags, segment surgery, the API), range-treap.c (the
 * address treap), range-place.c (the placement policies) and range-check.c
 * (the invariant checker).  The small operations every allocation and free
 * runs several of are inline here, so that splitting the file costs no calls
 * on those paths.
 */
#ifndef ALLOC_RANGE_INTERNAL_H
#define ALLOC_RANGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "alloc/range.h"

#define NIL 0u
#define NCLASSES 64
#define NLISTS (2 * NCLASSES)               /* two lists a size class: see "Size classes" in range.c */
#define MAX_TAGS ((uint64_t)UINT32_MAX - 2) /* indices 1 .. UINT32_MAX - 3; the top two mark states */

/*
 * A boundary tag: 32 bytes, two to a cache line.  Under random frees at a
 * million segments the tags are most of the working set, and how much of it
 * the last-level cache holds is what a pair costs (a 56-byte tag padded to 88
 * cost 1.05-1.26x per pair from 30k to 300k live).  So a tag has no field
 * that only some segments use: the state is in lprev (a free segment's is an
 * index, used and spare ones hold a mark no index takes), the free list is
 * computed from start and size (list_of), and the treap's fields are in a
 * side array that exists only while the treap is kept (struct tnode).
 */
#define LPREV_USED UINT32_MAX
#define LPREV_SPARE (UINT32_MAX - 1)

struct seg {
        uint64_t start;
        uint64_t size;
        uint32_t aprev, anext; /* address order; spare tags chain through anext */
        uint32_t lprev, lnext; /* free: size-class list; used, spare: lprev is the mark */
};

_Static_assert(sizeof(struct seg) == 32, "a boundary tag is half a cache line");

/* A free segment's node in the treap, at the same index as its tag. */
struct tnode {
        uint64_t max; /* largest size in this subtree */
        uint32_t left, right, parent;
};

static inline bool seg_used(const struct seg *s) {
        return s->lprev == LPREV_USED;
}

static inline bool seg_spare(const struct seg *s) {
        return s->lprev == LPREV_SPARE;
}

static inline bool seg_free(const struct seg *s) {
        return s->lprev < LPREV_SPARE;
}

struct range_arena {
        struct seg *segs; /* segs[0] is never used: index 0 is NIL */
        uint64_t cap;     /* tags allocated in segs */
        uint32_t hw;      /* highest index handed out since the array last changed size */
        uint32_t spare;   /* retired tags */
        uint32_t nspare;
        uint32_t head, tail; /* address list */
        uint32_t root;       /* treap of free segments, while tree is set */
        bool tree;           /* the treap is kept (see "The treap is kept" in range.c) */
        struct tnode *tn;    /* its nodes, cap of them, while tree is set */
        uint64_t tree_idle;  /* operations since a request last used the treap */
        uint32_t lists[NLISTS];
        uint64_t list_bits[2]; /* bit k % 64 of word k / 64: list k is not empty */
        struct hline *lines;   /* hash of used segments (see below) */
        uint64_t nlines;       /* a power of two, or 0 before the first allocation */
        unsigned hash_shift;   /* 64 - log2(nlines) */
        uint64_t hash_key;     /* random, per arena: see start_hash */
        uint64_t quantum;
        uint64_t total, in_use;
        uint64_t nfree, nused;
        uint64_t rotor;         /* next fit resumes here */
        uint32_t reserved_next; /* the free segment after the last range_reserve's range, if any: a hint */
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

/* The ceiling of log2(v), v > 0. */
static inline unsigned ceil_log2(uint64_t v) {
        return floor_log2(v) + !is_pow2(v);
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

static inline uint32_t tag_get(struct range_arena *a) {
        uint32_t i;
        if (a->spare) {
                i = a->spare;
                a->spare = a->segs[i].anext;
                a->nspare--;
        } else
                i = ++a->hw;
        a->segs[i] = (struct seg){.lprev = LPREV_USED};
        return i;
}

static inline void tag_put(struct range_arena *a, uint32_t i) {
        a->segs[i].lprev = LPREV_SPARE;
        a->segs[i].anext = a->spare;
        a->spare = i;
        a->nspare++;
}

/* ---- address list -------------------------------------------------------- */

/* Links i after p (p == NIL: at the head). */
static inline void addr_link_after(struct range_arena *a, uint32_t p, uint32_t i) {
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

static inline void addr_unlink(struct range_arena *a, uint32_t i) {
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

/* Files free segment i (which makes it free: lprev becomes an index) on its list. */
static inline void class_insert(struct range_arena *a, uint32_t i) {
        unsigned k = list_of(a->segs[i].start, a->segs[i].size);
        uint32_t h = a->lists[k];
        a->segs[i].lprev = NIL;
        a->segs[i].lnext = h;
        if (h)
                a->segs[h].lprev = i;
        a->lists[k] = i;
        a->list_bits[k / 64] |= UINT64_C(1) << (k % 64);
}

/* Takes free segment i off list k, the list its start and size were filed by. */
static inline void class_remove(struct range_arena *a, uint32_t i, unsigned k) {
        uint32_t p = a->segs[i].lprev, n = a->segs[i].lnext;
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
static inline unsigned first_list_from(const struct range_arena *a, unsigned k) {
        for (; k < NLISTS; k = (k / 64 + 1) * 64) {
                uint64_t bits = a->list_bits[k / 64] & (~UINT64_C(0) << (k % 64));
                if (bits)
                        return k / 64 * 64 + (unsigned)__builtin_ctzll(bits);
        }
        return NLISTS;
}

/* ---- hash of used segments ----------------------------------------------- */

/*
 * The hash is a table of cache lines, each holding up to LINE_SLOTS used tags
 * with one byte of their start's hash beside each (the line's own bits are
 * above it), so a lookup reads one line and then, but for a one-in-256 false
 * match, only the tag it wants.  (A chain through the tags read 1.5 tags a
 * lookup at a million ranges, and each was a cache miss; open addressing with
 * 8-byte slots, at most half full, made the table four times the size of
 * those buckets and gained nothing.)  A line that is full passes an insertion
 * on to the next line and counts it in over, so a lookup goes on to the next
 * line only while over is not zero; a count that reaches its maximum stays
 * there (lookups then always go on, which is slower but right).  At most
 * three quarters of the slots are used, so nearly every lookup reads one line.
 */
#define LINE_SLOTS 12

struct hline {
        uint32_t tag[LINE_SLOTS];
        uint8_t fp[LINE_SLOTS];
        uint16_t occ;  /* bit k: tag[k] is used */
        uint16_t over; /* insertions passed on to the next line, saturating */
};

_Static_assert(sizeof(struct hline) == 64, "a hash line is one cache line");

/*
 * Starts aligned to their sizes are a lattice that a single multiply spreads
 * badly (at a million ranges aligned to 4-64 KiB, 2.4 probes a lookup instead
 * of 1.5 with one bucket a segment): mix twice.  The arena's random key goes in
 * first: a client of allocd picks its regions' starts (low and high), and with
 * a hash anyone can compute it could file thousands of them in one line, whose
 * lookups then walk them all (8,470 in a 64 GiB pool: 190 times slower).
 */
static inline uint64_t start_hash(const struct range_arena *a, uint64_t start) {
        uint64_t z = (start ^ a->hash_key) * UINT64_C(0x9E3779B97F4A7C15);
        z ^= z >> 29;
        return z * UINT64_C(0xBF58476D1CE4E5B9);
}

static inline uint8_t hash_fp(const struct range_arena *a, uint64_t z) {
        return (uint8_t)(z >> (a->hash_shift - 8));
}

/* Bit k set where fp[k] == f and slot k is used. */
static inline unsigned line_match(const struct hline *l, uint8_t f) {
#ifdef __SSE2__
        /* The 16 bytes from fp on: the 12 fingerprints, then occ and over, which the mask drops. */
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)l->fp);
        return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8((char)f))) & l->occ;
#else
        /* Eight bytes at a time, exactly (no borrow from one byte into the next). */
        uint64_t lo, ones = UINT64_C(0x0101010101010101), high = ones * 0x7F;
        uint32_t hi;
        unsigned m = 0;
        memcpy(&lo, l->fp, 8);
        memcpy(&hi, l->fp + 8, 4);
        uint64_t x = lo ^ (ones * f), y = (uint64_t)(hi ^ (uint32_t)(ones * f)) | ~UINT64_C(0xFFFFFFFF);
        x = ~(((x & high) + high) | x | high);
        y = ~(((y & high) + high) | y | high);
        for (; x; x &= x - 1)
                m |= 1u << (__builtin_ctzll(x) / 8);
        for (; y; y &= y - 1)
                m |= 1u << (8 + __builtin_ctzll(y) / 8);
        return m & l->occ;
#endif
}

static inline void hash_insert(struct range_arena *a, uint32_t i) {
        uint64_t z = start_hash(a, a->segs[i].start), h = z >> a->hash_shift;
        struct hline *l;
        while ((l = &a->lines[h])->occ == (1u << LINE_SLOTS) - 1) {
                if (l->over != UINT16_MAX)
                        l->over++;
                h = (h + 1) & (a->nlines - 1);
        }
        unsigned k = (unsigned)__builtin_ctz(~l->occ);
        l->tag[k] = i;
        l->fp[k] = hash_fp(a, z);
        l->occ |= (uint16_t)(1u << k);
}

/* Where a used tag is filed: line, slot, and the line its start hashes to. */
struct hpos {
        uint64_t line, home;
        unsigned slot;
};

/* The used segment starting at start, NIL if none; *pos says where it is filed. */
static inline uint32_t hash_find(const struct range_arena *a, uint64_t start, struct hpos *pos) {
        if (!a->nlines)
                return NIL;
        uint64_t z = start_hash(a, start), home = z >> a->hash_shift, h = home;
        uint8_t f = hash_fp(a, z);
        for (;;) {
                const struct hline *l = &a->lines[h];
                for (unsigned m = line_match(l, f); m; m &= m - 1) {
                        unsigned k = (unsigned)__builtin_ctz(m);
                        if (a->segs[l->tag[k]].start == start) {
                                if (pos)
                                        *pos = (struct hpos){h, home, k};
                                return l->tag[k];
                        }
                }
                if (!l->over)
                        return NIL;
                h = (h + 1) & (a->nlines - 1);
        }
}

static inline void hash_remove(struct range_arena *a, const struct hpos *pos) {
        a->lines[pos->line].occ &= (uint16_t) ~(1u << pos->slot);
        a->lines[pos->line].tag[pos->slot] = NIL;
        for (uint64_t h = pos->home; h != pos->line; h = (h + 1) & (a->nlines - 1))
                if (a->lines[h].over != UINT16_MAX)
                        a->lines[h].over--;
}

/* ---- treap of free segments (range-treap.c) ------------------------------ */

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
        return i ? a->tn[i].max : 0;
}

static inline uint64_t node_max(const struct range_arena *a, uint32_t i) {
        const struct tnode *t = &a->tn[i];
        return umax(a->segs[i].size, umax(sub_max(a, t->left), sub_max(a, t->right)));
}

void range_treap_insert(struct range_arena *a, uint32_t i);
void range_treap_delete(struct range_arena *a, uint32_t i);
/* Recomputes the augmented maximum from i upwards until it stops changing. */
void range_treap_fix_up(struct range_arena *a, uint32_t i);
/* Free segment i changed size class: rotates it to where its new priority puts it. */
void range_treap_resift(struct range_arena *a, uint32_t i);
/* A request is about to search the treap: builds it if it is not kept.  -ENOMEM without memory for its nodes. */
int range_tree_use(struct range_arena *a);
/* Stops keeping the treap and frees its nodes. */
void range_tree_drop(struct range_arena *a);

static inline void treap_insert(struct range_arena *a, uint32_t i) {
        if (a->tree)
                range_treap_insert(a, i);
}

static inline void treap_delete(struct range_arena *a, uint32_t i) {
        if (a->tree)
                range_treap_delete(a, i);
}

/*
 * An operation that did not use the treap: after as many of them as there
 * are free segments (a build's cost), stop keeping it.
 */
static inline void tree_idle(struct range_arena *a) {
        if (a->tree && ++a->tree_idle > a->nfree + 64)
                range_tree_drop(a);
}

/* ---- placement (range-place.c) ------------------------------------------- */

/*
 * The free segment to cut w from under policy, its placement in *x; NIL if
 * none, or if the treap it needed could not get memory (*err = -ENOMEM).
 */
uint32_t range_find(struct range_arena *a, const struct want *w, enum range_policy policy, uint64_t *x, int *err);

/* ---- the tables' memory (range-mem.c) ------------------------------------ */

/*
 * bytes of memory aligned to a cache line, zeroed if zero is set; on huge
 * pages from 4 MiB on.  NULL without memory.
 */
void *range_mem_alloc(size_t bytes, bool zero);
/* Frees what range_mem_alloc or range_mem_grow returned for bytes; takes NULL. */
void range_mem_free(void *p, size_t bytes);
/* p (old_bytes, or NULL) moved into new_bytes > old_bytes, as realloc; on failure p is left as it was. */
void *range_mem_grow(void *p, size_t old_bytes, size_t new_bytes);

/* ---- for tests (range-check.c) ------------------------------------------- */

/*
 * Verifies every internal invariant of the arena (address list, free lists
 * and their bitmap, hash, spare tags, counters, and while it is kept the
 * treap's order, priorities and maxima).  Returns 0, or a negative errno
 * value with a description in why.  O(n): for tests only.
 */
int range_arena_check(const struct range_arena *arena, char *why, size_t why_size);

/* Stops keeping the treap, as a long run of requests that do not search it would: for tests. */
void range_arena_drop_tree(struct range_arena *arena);

#endif
