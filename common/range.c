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
 * a tag at 32 bytes (range-internal.h says what it holds and why no more) and
 * makes the whole table a plain data structure that can be written out and
 * read back.  Retired tags go on a spare list, and every operation reserves
 * the tags it may need before it changes anything, so once the array has
 * grown to the working set no operation calls malloc but a search that builds
 * the treap (below), and an operation that cannot get memory fails before it
 * has changed any state.
 * The array doubles when it is full; when the segments fall below a quarter
 * of it, a free compacts them into one of twice their number ("giving memory
 * back" below), so that an arena's memory follows its segments down too.
 *
 * Address list.  All segments, in address order, doubly linked.  Freeing a
 * segment looks at its two neighbours and merges with the free ones: O(1)
 * coalescing.  Two neighbours merge only if they touch, so spans that touch
 * behave as one span and spans with a gap between them never merge.
 *
 * Used segments are also in a hash table keyed by start (a table of cache
 * lines: range-internal.h), so a free needs only the start: O(1), one line
 * and one tag read.
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
 * address list in O(n), its nodes in an array of their own beside the tags;
 * every change keeps it from then on; and after as many operations as there
 * are free segments with no search, it is dropped again and its nodes freed,
 * so that a rebuild never costs more than the upkeep it saved.  range_stats
 * reads the largest free size from the treap when it is kept, else from the
 * highest size class's lists.
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
 *
 * The code: this file has the tags, the segment surgery and the API;
 * range-internal.h the structures and the small operations every request
 * runs (tags, address list, free lists, hash), inline; range-treap.c the
 * treap; range-place.c the policies; range-mem.c the big tables' memory
 * (huge pages); range-check.c the invariant checker.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "range-internal.h"

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
        struct seg *segs = range_mem_grow(a->segs, a->cap * sizeof(*segs), ncap * sizeof(*segs));
        if (!segs)
                return -ENOMEM;
        a->segs = segs;
        a->cap = ncap;
        /* Its nodes were sized to the old array: the next search rebuilds it, O(n) as this growth was. */
        range_tree_drop(a);
        return 0;
}

/* ---- hash of used segments ----------------------------------------------- */

/*
 * Replaces the table with t, n zeroed lines, and files every used tag in it.
 * The tags are read in index order: sequential reads, and after a compaction
 * the old lines name old indices.
 */
static void hash_install(struct range_arena *a, struct hline *t, uint64_t n) {
        range_mem_free(a->lines, a->nlines * sizeof(*t));
        a->lines = t;
        a->nlines = n;
        a->hash_shift = 64 - floor_log2(n);
        for (uint32_t i = 1; i <= a->hw; i++)
                if (seg_used(&a->segs[i]))
                        hash_insert(a, i);
}

/* Room for one more used segment: at most three quarters of the slots are used. */
static int hash_reserve(struct range_arena *a) {
        if ((a->nused + 1) * 4 <= a->nlines * LINE_SLOTS * 3)
                return 0;
        uint64_t n = a->nlines ? a->nlines * 2 : 8;
        struct hline *t = range_mem_alloc(n * sizeof(*t), true);
        if (!t)
                return -ENOMEM;
        hash_install(a, t, n);
        return 0;
}

/* ---- giving memory back -------------------------------------------------- */

/*
 * The tag array and the hash table grow by doubling; without this they would
 * keep the memory of their peak for the arena's life.  When the tags in use
 * fall below a quarter of the array, they are copied in address order into a
 * new array of at least twice their number, and everything that names a tag
 * is rebuilt from the address order: the free lists, the hash; the treap is
 * dropped, for the next search to build.  The hash table alone is rebuilt
 * smaller when the used segments fill less than 3/32 of its slots.  Either
 * way the new size leaves room for what is in use to double before the table
 * must grow, and the next shrink waits for it to halve: churn at a threshold
 * does not thrash, and the O(n) rebuild is paid for by the n or more frees
 * since the last one.  Short of memory, nothing changes: the free that
 * triggered it has succeeded, and a later one tries again.
 */

static inline uint64_t table_size(uint64_t n) {
        return n <= 32 ? 64 : UINT64_C(1) << ceil_log2(2 * n);
}

static inline bool tags_oversized(const struct range_arena *a) {
        return a->cap > 64 && (a->nfree + a->nused + 1) * 4 < a->cap;
}

/* Lines for nused used segments: they fill 3/16 to 3/8 of the slots, half of where the table grows. */
static inline uint64_t lines_for(uint64_t nused) {
        uint64_t n = 8;
        while (n * LINE_SLOTS * 3 < nused * 8)
                n *= 2;
        return n;
}

static inline bool hash_oversized(const struct range_arena *a) {
        return a->nlines > 8 && a->nused * 32 < a->nlines * LINE_SLOTS * 3;
}

/* Copies the tags in address order into an array of ncap and rebuilds what names them. */
static void tags_compact(struct range_arena *a, uint64_t ncap) {
        /* Called after a free, so there is a hash table to size from. */
        uint64_t nl = umin(a->nlines, lines_for(a->nused));
        struct seg *segs = range_mem_alloc(ncap * sizeof(*segs), false);
        struct hline *t = range_mem_alloc(nl * sizeof(*t), true);
        if (!segs || !t) {
                range_mem_free(segs, ncap * sizeof(*segs));
                range_mem_free(t, nl * sizeof(*t));
                return;
        }
        uint32_t n = 0;
        for (uint32_t i = a->head; i; i = a->segs[i].anext) {
                n++;
                segs[n] = a->segs[i];
                segs[n].aprev = n - 1;
                segs[n].anext = n + 1;
        }
        segs[n].anext = NIL;
        range_mem_free(a->segs, a->cap * sizeof(*segs));
        a->segs = segs;
        a->cap = ncap;
        a->hw = n;
        a->spare = NIL;
        a->nspare = 0;
        a->head = n ? 1 : NIL;
        a->tail = n;
        range_tree_drop(a);
        memset(a->lists, 0, sizeof(a->lists));
        memset(a->list_bits, 0, sizeof(a->list_bits));
        /* From the top down, so that each list starts with its lowest segment. */
        for (uint32_t i = n; i; i--)
                if (seg_free(&segs[i]))
                        class_insert(a, i);
        hash_install(a, t, nl);
}

static void give_back(struct range_arena *a) {
        if (tags_oversized(a)) {
                tags_compact(a, table_size(a->nfree + a->nused + 1));
                return;
        }
        uint64_t nl = lines_for(a->nused);
        struct hline *t = range_mem_alloc(nl * sizeof(*t), true);
        if (t)
                hash_install(a, t, nl);
}

/* ---- segment surgery ----------------------------------------------------- */

/*
 * A free segment was [old_start, + old_size) and is now what its tag says
 * (its start may have moved, but never past a neighbour): fix the maxima
 * first, so that the rotations that restore the priority order start from a
 * consistent tree.
 */
static void free_resized(struct range_arena *a, uint32_t i, uint64_t old_start, uint64_t old_size) {
        struct seg *s = &a->segs[i];
        unsigned k = list_of(old_start, old_size);
        if (a->tree)
                range_treap_fix_up(a, i);
        if (k == list_of(s->start, s->size))
                return;
        class_remove(a, i, k);
        class_insert(a, i);
        if (a->tree && floor_log2(old_size) != floor_log2(s->size))
                range_treap_resift(a, i);
}

/* Cuts [x, x + size) out of free segment f; needs two reserved tags.  Returns the used tag. */
static uint32_t carve(struct range_arena *a, uint32_t f, uint64_t x, uint64_t size) {
        struct seg *sf = &a->segs[f];
        uint64_t start = sf->start, end = seg_end(sf), old = sf->size;
        uint32_t u;

        if (x == start && x + size == end) {
                treap_delete(a, f);
                class_remove(a, f, list_of(start, old));
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
                free_resized(a, f, start, old);
                if (x > start && x + size < end) {
                        uint32_t r = tag_get(a);
                        a->segs[r].start = x + size;
                        a->segs[r].size = end - (x + size);
                        addr_link_after(a, u, r);
                        class_insert(a, r);
                        treap_insert(a, r);
                        a->nfree++;
                }
        }
        a->segs[u].lprev = LPREV_USED;
        hash_insert(a, u);
        a->nused++;
        a->in_use += size;
        return u;
}

/* Makes i (linked in the address list, in no other structure) free, merging with free neighbours. */
static void release(struct range_arena *a, uint32_t i) {
        struct seg *s = &a->segs[i];
        uint32_t p = s->aprev, n = s->anext;
        bool left = p && seg_free(&a->segs[p]) && seg_end(&a->segs[p]) == s->start;
        bool right = n && seg_free(&a->segs[n]) && seg_end(s) == a->segs[n].start;

        if (left) {
                struct seg *sp = &a->segs[p];
                uint64_t old = sp->size;
                if (right) {
                        struct seg *sn = &a->segs[n];
                        treap_delete(a, n);
                        class_remove(a, n, list_of(sn->start, sn->size));
                        sp->size += sn->size;
                        addr_unlink(a, n);
                        tag_put(a, n);
                        a->nfree--;
                }
                sp->size += s->size;
                addr_unlink(a, i);
                tag_put(a, i);
                free_resized(a, p, sp->start, old);
        } else if (right) {
                struct seg *sn = &a->segs[n];
                uint64_t old_start = sn->start, old = sn->size;
                /* The start moves down but stays above the previous segment: the treap order holds. */
                sn->start = s->start;
                sn->size += s->size;
                addr_unlink(a, i);
                tag_put(a, i);
                free_resized(a, n, old_start, old);
        } else {
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
        /* Not secret from the process, only from what its callers choose; the address stands in without getrandom. */
        if (getrandom(&a->hash_key, sizeof(a->hash_key), GRND_NONBLOCK) != sizeof(a->hash_key))
                a->hash_key = (uint64_t)(uintptr_t)a * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)clock();
        *ret = a;
        return 0;
}

struct range_arena *range_arena_free(struct range_arena *a) {
        if (a) {
                range_tree_drop(a);
                range_mem_free(a->segs, a->cap * sizeof(struct seg));
                range_mem_free(a->lines, a->nlines * sizeof(struct hline));
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

/* Cuts [x, x + size) out of free segment f, found by a search; *used: its tag. */
static int take(struct range_arena *a, uint32_t f, uint64_t x, uint64_t size, uint32_t *used) {
        /* Reserve after the search, which needs no memory but the treap's nodes: a full arena costs no growth. */
        int r = tags_reserve(a, 2);
        if (r >= 0)
                r = hash_reserve(a);
        if (r < 0)
                return r;
        *used = carve(a, f, x, size);
        tree_idle(a);
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
        f = range_find(a, &w, req ? req->policy : RANGE_INSTANTFIT, &x, &r);
        if (!f)
                return r < 0 ? r : -ENOSPC;
        if ((r = take(a, f, x, w.size, &f)) < 0)
                return r;
        if (req && req->policy == RANGE_NEXTFIT)
                a->rotor = x + w.size;
        *ret = x;
        return 0;
}

int range_fits(struct range_arena *a, uint64_t size, const struct range_req *req) {
        struct want w;
        uint64_t x;
        int r;

        if (!a)
                return -EINVAL;
        if ((r = want_init(a, size, req, &w)) < 0)
                return r;
        if (w.low >= w.high)
                return -ENOSPC;
        /* Every policy finds a placement when one exists: instant fit answers whether, at its cost. */
        if (range_find(a, &w, RANGE_INSTANTFIT, &x, &r))
                return 0;
        return r < 0 ? r : -ENOSPC;
}

/* Free segment f (a hint, perhaps stale) holds [start, start + size). */
static bool holds(const struct range_arena *a, uint32_t f, uint64_t start, uint64_t size) {
        if (!f || f > a->hw)
                return false;
        const struct seg *s = &a->segs[f];
        return seg_free(s) && start >= s->start && start - s->start <= s->size && size <= s->size - (start - s->start);
}

int range_reserve(struct range_arena *a, uint64_t start, uint64_t size) {
        uint64_t q, x = start;
        uint32_t f, u;
        int r = 0;

        if (!a || !size)
                return -EINVAL;
        q = a->quantum;
        if (start & (q - 1))
                return -EDOM;
        if (size > UINT64_MAX - (q - 1))
                return -EOVERFLOW;
        size = (size + q - 1) & ~(q - 1);
        if (size - 1 > UINT64_MAX - start)
                return -EOVERFLOW;
        f = a->reserved_next;
        if (!holds(a, f, start, size)) {
                /* A window of exactly the range: the treap's first fit finds the segment that holds it. */
                struct want w = {.size = size, .align = q, .low = start, .high = start + size ?: UINT64_MAX};
                f = range_find(a, &w, RANGE_INSTANTFIT, &x, &r);
                if (!f || x != start)
                        return r < 0 ? r : -ENOSPC;
        }
        if ((r = take(a, f, start, size, &u)) < 0)
                return r;
        f = a->segs[u].anext;
        a->reserved_next = f && seg_free(&a->segs[f]) && a->segs[f].start == start + size ? f : NIL;
        return 0;
}

int range_free(struct range_arena *a, uint64_t start, uint64_t size) {
        struct hpos pos;
        uint32_t i;
        if (!a)
                return -EINVAL;
        i = hash_find(a, start, &pos);
        if (!i)
                return -ENOENT;
        if (size &&
            (size > UINT64_MAX - (a->quantum - 1) || ((size + a->quantum - 1) & ~(a->quantum - 1)) != a->segs[i].size))
                return -EINVAL;
        hash_remove(a, &pos);
        a->nused--;
        a->in_use -= a->segs[i].size;
        release(a, i);
        tree_idle(a);
        if (tags_oversized(a) || hash_oversized(a))
                give_back(a);
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
                .meta_bytes = sizeof(*a) + a->cap * sizeof(struct seg) + a->nlines * sizeof(struct hline) +
                              (a->tn ? a->cap * sizeof(struct tnode) : 0),
        };
}

int range_walk(const struct range_arena *a, range_walk_fn fn, void *userdata) {
        if (!a || !fn)
                return -EINVAL;
        for (uint32_t i = a->head; i; i = a->segs[i].anext) {
                const struct seg *s = &a->segs[i];
                struct range_seg rs = {.start = s->start, .size = s->size, .used = seg_used(s)};
                int r = fn(&rs, userdata);
                if (r)
                        return r;
        }
        return 0;
}
