/* SPDX-License-Identifier: MIT */
/*
 * The brute-force model of the range allocator (range-model.h).  It keeps one
 * byte per quantum (outside any span, free, used) and finds placements by
 * trying every aligned start, in 128-bit arithmetic, so it shares no logic
 * with the allocator.  After every operation the allocator's answer, its
 * statistics and its internal invariants must match the model.
 *
 * The operations are drawn from m->next with fixed odds, so a seeded
 * generator (the test) and a fuzzer's bytes (fuzz-range) reach the same
 * cases: invalid sizes, alignments and windows as well as good ones.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "range-internal.h"
#include "range-model.h"

#define UNITS MODEL_UNITS

typedef unsigned __int128 u128;

enum { OUTSIDE = 0, FREE = 1, USED = 2 };

static void model_fail(const struct model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void model_fail(const struct model *m, const char *fmt, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        m->fail(m, buf);
}

#define CHECK(m, cond, ...)                                                                                            \
        do {                                                                                                           \
                if (!(cond))                                                                                           \
                        model_fail((m), __VA_ARGS__);                                                                  \
        } while (0)

static uint64_t rnd64(struct model *m) {
        return m->next(m, 0);
}

static uint64_t rnd(struct model *m, uint64_t n) {
        return n ? m->next(m, n) : 0;
}

static bool pow2(uint64_t v) {
        return v && !(v & (v - 1));
}

static uint64_t addr_of(const struct model *m, int u) {
        return m->base + (uint64_t)u * m->q;
}

static void compute_runs(struct model *m) {
        m->nruns = 0;
        for (int u = 0; u < UNITS;) {
                if (m->unit[u] != FREE) {
                        u++;
                        continue;
                }
                int s = u;
                while (u < UNITS && m->unit[u] == FREE)
                        u++;
                m->runs[m->nruns++] = (struct model_run){s, u - s};
        }
}

struct request {
        uint64_t size; /* rounded */
        u128 align, phase, boundary, low, high;
};

/* Does run r hold a placement of rq?  Tries every aligned start. */
static bool run_fits(const struct model *m, const struct model_run *r, const struct request *rq) {
        u128 lo = addr_of(m, r->start), hi = (u128)addr_of(m, r->start) + (u128)r->len * m->q;
        if (rq->low > lo)
                lo = rq->low;
        if (rq->high < hi)
                hi = rq->high;
        u128 x = lo - lo % rq->align + rq->phase;
        if (x < lo)
                x += rq->align;
        for (; x + rq->size <= hi; x += rq->align)
                if (!rq->boundary || x / rq->boundary == (x + rq->size - 1) / rq->boundary)
                        return true;
        return false;
}

/* Length of the smallest run that holds rq, or 0 if none does. */
static int smallest_fit(const struct model *m, const struct request *rq) {
        int best = 0;
        for (int i = 0; i < m->nruns; i++)
                if ((!best || m->runs[i].len < best) && run_fits(m, &m->runs[i], rq))
                        best = m->runs[i].len;
        return best;
}

/* Would rq fit anywhere if every unit of every span were free? */
static bool fits_in_empty_spans(const struct model *m, const struct request *rq) {
        for (int u = 0; u < UNITS;) {
                if (m->unit[u] == OUTSIDE) {
                        u++;
                        continue;
                }
                int s = u;
                while (u < UNITS && m->unit[u] != OUTSIDE)
                        u++;
                struct model_run r = {s, u - s};
                if (run_fits(m, &r, rq))
                        return true;
        }
        return false;
}

static void check_stats(struct model *m) {
        struct range_stats st;
        uint64_t total = 0, used = 0, largest = 0;
        range_stats(m->a, &st);
        for (int u = 0; u < UNITS; u++) {
                total += m->unit[u] != OUTSIDE;
                used += m->unit[u] == USED;
        }
        for (int i = 0; i < m->nruns; i++)
                if ((uint64_t)m->runs[i].len > largest)
                        largest = m->runs[i].len;
        CHECK(m, st.total == total * m->q, "total %llu, model %llu", (unsigned long long)st.total,
              (unsigned long long)(total * m->q));
        CHECK(m, st.in_use == used * m->q, "in_use %llu, model %llu", (unsigned long long)st.in_use,
              (unsigned long long)(used * m->q));
        CHECK(m, st.free == st.total - st.in_use, "free");
        CHECK(m, st.largest_free == largest * m->q, "largest_free %llu, model %llu",
              (unsigned long long)st.largest_free, (unsigned long long)(largest * m->q));
        CHECK(m, st.free_segments == (uint64_t)m->nruns, "free_segments %llu, model %d (coalescing)",
              (unsigned long long)st.free_segments, m->nruns);
        CHECK(m, st.used_segments == (uint64_t)m->nlive, "used_segments %llu, model %d",
              (unsigned long long)st.used_segments, m->nlive);
}

struct walk_state {
        struct model *m;
        u128 prev_end;
        bool prev_free;
        int n;
};

static int walk_check(const struct range_seg *s, void *userdata) {
        struct walk_state *w = userdata;
        struct model *m = w->m;
        CHECK(m, s->size > 0 && s->start >= m->base && (s->start - m->base) % m->q == 0 && s->size % m->q == 0,
              "segment %#llx+%#llx is not whole units", (unsigned long long)s->start, (unsigned long long)s->size);
        CHECK(m, w->n == 0 || s->start >= w->prev_end, "segments out of order");
        CHECK(m, !(w->n > 0 && w->prev_free && !s->used && s->start == w->prev_end),
              "two touching free segments at %#llx were not merged", (unsigned long long)s->start);
        int u0 = (int)((s->start - m->base) / m->q), n = (int)(s->size / m->q);
        CHECK(m, u0 + n <= UNITS, "segment past the model");
        /* Units between the previous segment and this one lie outside every span. */
        if (w->n > 0)
                for (int u = (int)((w->prev_end - m->base) / m->q); u < u0; u++)
                        CHECK(m, m->unit[u] == OUTSIDE, "unit %d is in a span but in no segment", u);
        for (int u = u0; u < u0 + n; u++)
                CHECK(m, m->unit[u] == (s->used ? USED : FREE), "unit %d is %d in the model, %s in the arena", u,
                      m->unit[u], s->used ? "used" : "free");
        w->prev_end = (u128)s->start + s->size;
        w->prev_free = !s->used;
        w->n++;
        return 0;
}

static void check_walk(struct model *m) {
        struct walk_state w = {.m = m};
        range_walk(m->a, walk_check, &w);
        /* Units after the last segment lie outside every span. */
        for (int u = w.n ? (int)((w.prev_end - m->base) / m->q) : 0; u < UNITS; u++)
                CHECK(m, m->unit[u] == OUTSIDE, "unit %d is in a span but in no segment", u);
}

static void op_add(struct model *m) {
        int len = 1 + (int)rnd(m, 64), u0 = (int)rnd(m, UNITS - len + 1);
        uint64_t start = addr_of(m, u0), size = (uint64_t)len * m->q;
        int want = 0, r;
        uint64_t pick = rnd(m, 100);
        if (pick < 3)
                size = 0;
        else if (pick < 6 && m->q > 1)
                start += 1 + rnd(m, m->q - 1);
        else if (pick < 8)
                start = UINT64_MAX - (m->q - 1); /* ends past 2^64 */

        if (size == 0)
                want = -EINVAL;
        else if ((start | size) % m->q)
                want = -EDOM;
        else if ((u128)start + size > UINT64_MAX)
                want = -EOVERFLOW;
        else
                for (int u = u0; u < u0 + len; u++)
                        if (m->unit[u] != OUTSIDE)
                                want = -EEXIST;
        r = range_add(m->a, start, size);
        CHECK(m, r == want, "range_add(%#llx, %#llx) = %d, model %d", (unsigned long long)start,
              (unsigned long long)size, r, want);
        if (r == 0)
                memset(&m->unit[u0], FREE, (size_t)len);
}

/*
 * The churn of most device users (natural mode): power-of-two sizes, aligned
 * to their size or not at all, no window, mostly instant fit; sometimes a
 * size short of its power of two (mem_alloc's alignment) or a boundary.
 */
static void gen_natural(struct model *m, uint64_t *size, struct range_req *req) {
        uint64_t block = m->q << rnd(m, 6), pick = rnd(m, 100);
        *size = pick < 80 ? block : block - rnd(m, block);
        *req = (struct range_req){.align = rnd(m, 3) ? block : 0};
        if (rnd(m, 10) == 0)
                req->boundary = block << rnd(m, 3);
        pick = rnd(m, 100);
        req->policy = pick < 80 ? RANGE_INSTANTFIT : pick < 90 ? RANGE_BESTFIT : RANGE_NEXTFIT;
}

static void gen_request(struct model *m, uint64_t *size, struct range_req *req) {
        if (m->natural && rnd(m, 10)) {
                gen_natural(m, size, req);
                return;
        }
        uint64_t units = 1 + (rnd(m, 4) == 0 ? rnd(m, 64) : rnd(m, 8));
        uint64_t pick = rnd(m, 100);
        *size = units * m->q - rnd(m, m->q);
        if (pick < 1)
                *size = 0;
        else if (pick < 2)
                *size = UINT64_MAX - rnd(m, 2 * m->q);
        else if (pick < 3)
                *size = m->q << 40;

        *req = (struct range_req){0};
        pick = rnd(m, 100);
        if (pick < 50)
                req->align = m->q << rnd(m, 11);
        else if (pick < 53)
                req->align = (m->q << rnd(m, 11)) + m->q; /* rarely a power of two */
        else if (pick < 58)
                req->align = UINT64_C(1) << rnd(m, 64);
        uint64_t a = req->align > m->q && pow2(req->align) ? req->align : m->q;
        pick = rnd(m, 100);
        if (pick < 25)
                req->phase = m->q * rnd(m, a / m->q);
        else if (pick < 28)
                req->phase = rnd(m, 4 * a);
        pick = rnd(m, 100);
        if (pick < 35)
                req->boundary = m->q << rnd(m, 12);
        else if (pick < 38)
                req->boundary = rnd64(m) >> rnd(m, 64);
        pick = rnd(m, 100);
        uint64_t span = UNITS * m->q;
        if (pick < 20) {
                req->low = m->base + rnd(m, span) - rnd(m, 2) * rnd(m, m->q);
        } else if (pick < 45) {
                req->low = m->base + rnd(m, span);
                req->high = req->low + 1 + rnd(m, span / 2);
                if (req->high < req->low)
                        req->high = 0;
        } else if (pick < 48) {
                req->low = m->base + rnd(m, span);
                req->high = req->low - rnd(m, m->q);
        }
        pick = rnd(m, 100);
        req->policy = pick < 1 ? (enum range_policy)(3 + rnd(m, 7)) : (enum range_policy)rnd(m, 3);
}

/* The documented error for a request, before any search. */
static int expected_error(const struct model *m, uint64_t size, const struct range_req *req, struct request *rq) {
        uint64_t q = m->q;
        if (size == 0)
                return -EINVAL;
        if ((unsigned)req->policy > RANGE_NEXTFIT)
                return -EDOM;
        if ((req->align && !pow2(req->align)) || (req->boundary && !pow2(req->boundary)))
                return -EDOM;
        uint64_t a = req->align > q ? req->align : q;
        if (req->phase >= a || req->phase % q)
                return -EDOM;
        if ((u128)size + q - 1 > UINT64_MAX)
                return -EOVERFLOW;
        if (req->high && req->low >= req->high)
                return -ERANGE;
        *rq = (struct request){
                .size = (size + q - 1) / q * q,
                .align = a,
                .phase = req->phase,
                .boundary = req->boundary,
                .low = req->low,
                .high = req->high ? (u128)req->high : (u128)1 << 64,
        };
        if (rq->boundary) {
                u128 step = a < rq->boundary ? a : rq->boundary;
                if (rq->size > rq->boundary || rq->phase % step + rq->size > rq->boundary)
                        return -EMSGSIZE;
        }
        return 0;
}

static void op_alloc(struct model *m) {
        uint64_t size, x = 0;
        struct range_req req;
        struct request rq;
        gen_request(m, &size, &req);
        int want = expected_error(m, size, &req, &rq), best = 0;
        if (want == -EMSGSIZE)
                CHECK(m, !fits_in_empty_spans(m, &rq), "a satisfiable request was refused as -EMSGSIZE");
        if (want == 0) {
                best = smallest_fit(m, &rq);
                want = best ? 0 : -ENOSPC;
        }
        /* Asked first: whether it fits must neither differ from the answer nor change it (next fit's rotor). */
        int f = range_fits(m->a, size, &req);
        CHECK(m, f == want, "range_fits(size %#llx policy %d) = %d, model %d", (unsigned long long)size, req.policy, f,
              want);
        int r = range_alloc(m->a, size, &req, &x);
        CHECK(m, r == want,
              "range_alloc(size %#llx align %#llx phase %#llx boundary %#llx low %#llx high %#llx policy %d) = %d, "
              "model %d",
              (unsigned long long)size, (unsigned long long)req.align, (unsigned long long)req.phase,
              (unsigned long long)req.boundary, (unsigned long long)req.low, (unsigned long long)req.high, req.policy,
              r, want);
        if (r != 0)
                return;

        u128 end = (u128)x + rq.size;
        CHECK(m, x % rq.align == rq.phase, "start %#llx breaks align/phase", (unsigned long long)x);
        CHECK(m, x >= rq.low && end <= rq.high, "start %#llx outside the window", (unsigned long long)x);
        CHECK(m, !rq.boundary || x / rq.boundary == (end - 1) / rq.boundary, "start %#llx crosses the boundary",
              (unsigned long long)x);
        CHECK(m, x >= m->base && (x - m->base) % m->q == 0 && end <= (u128)addr_of(m, UNITS - 1) + m->q,
              "start %#llx is not a unit of the model", (unsigned long long)x);
        int u0 = (int)((x - m->base) / m->q), n = (int)(rq.size / m->q);
        for (int u = u0; u < u0 + n; u++)
                CHECK(m, m->unit[u] == FREE, "unit %d of the new range is %d, not free", u, m->unit[u]);
        if (req.policy == RANGE_BESTFIT) {
                int len = 0;
                for (int i = 0; i < m->nruns; i++)
                        if (u0 >= m->runs[i].start && u0 < m->runs[i].start + m->runs[i].len)
                                len = m->runs[i].len;
                CHECK(m, len == best, "best fit took a segment of %d units; the smallest that fits has %d", len, best);
        }
        memset(&m->unit[u0], USED, (size_t)n);
        m->live[m->nlive++] = (struct model_live){x, size, (uint64_t)n};
}

/* range_reserve: in address order half the time (its O(1) hint), anywhere else the other half. */
static void op_reserve(struct model *m) {
        uint64_t pick = rnd(m, 100), start, size, q = m->q;
        int want = 0;

        start = pick < 50 ? m->reserved_end : addr_of(m, (int)rnd(m, UNITS));
        if (pick % 10 == 0)
                start += rnd(m, q); /* mostly not a multiple of the quantum */
        else if (pick % 10 == 1)
                start = rnd64(m) & ~(q - 1); /* mostly outside the spans */
        size = pick % 7 == 0 ? rnd64(m) : 1 + rnd(m, 8 * q);
        if (pick == 99)
                size = 0;
        u128 units = ((u128)size + q - 1) / q, end = (u128)start + units * q;
        if (!size)
                want = -EINVAL;
        else if (start % q)
                want = -EDOM;
        else if (units * q > UINT64_MAX || end > (u128)1 << 64)
                want = -EOVERFLOW; /* the size rounded up, or the end, passes 2^64 */
        else if (start < m->base || end > (u128)addr_of(m, UNITS - 1) + q)
                want = -ENOSPC;
        else
                for (u128 u = (start - m->base) / q; u < (start - m->base) / q + units && !want; u++)
                        want = m->unit[u] == FREE ? 0 : -ENOSPC;
        int r = range_reserve(m->a, start, size);
        CHECK(m, r == want, "range_reserve(%#llx, %#llx) = %d, model %d", (unsigned long long)start,
              (unsigned long long)size, r, want);
        if (r != 0)
                return;
        int u0 = (int)((start - m->base) / q);
        memset(&m->unit[u0], USED, (size_t)units);
        m->live[m->nlive++] = (struct model_live){start, size, (uint64_t)units};
        m->reserved_end = (uint64_t)end;
}

static int live_index(const struct model *m, uint64_t start) {
        for (int i = 0; i < m->nlive; i++)
                if (m->live[i].start == start)
                        return i;
        return -1;
}

static void drop_live(struct model *m, int i) {
        struct model_live *l = &m->live[i];
        memset(&m->unit[(l->start - m->base) / m->q], FREE, l->units);
        m->last_freed = l->start;
        m->live[i] = m->live[--m->nlive];
}

static void op_free(struct model *m) {
        uint64_t pick = rnd(m, 100), start, size = 0;
        int i, want;
        if (pick < 80 && m->nlive) {
                i = (int)rnd(m, m->nlive);
                start = m->live[i].start;
                pick = rnd(m, 100);
                if (pick < 20)
                        size = m->live[i].asked;
                else if (pick < 30)
                        size = (m->live[i].units + 1 + rnd(m, 3)) * m->q;
                else if (pick < 35)
                        size = 1 + rnd(m, (m->live[i].units - 1) * m->q); /* short, unless one unit */
                /* A size that rounds to another number of units is not this range's. */
                want = size && ((u128)size + m->q - 1) / m->q != m->live[i].units ? -EINVAL : 0;
        } else {
                start = rnd(m, 2) ? m->last_freed : addr_of(m, (int)rnd(m, UNITS)) + rnd(m, 2) * rnd(m, m->q);
                i = live_index(m, start);
                want = i < 0 ? -ENOENT : 0;
        }
        int r = range_free(m->a, start, size);
        CHECK(m, r == want, "range_free(%#llx, %#llx) = %d, model %d", (unsigned long long)start,
              (unsigned long long)size, r, want);
        if (r == 0)
                drop_live(m, i);
}

/* Frees all but a few live ranges: the arena's tags and hash fall far below their peak and are compacted. */
static void op_drain(struct model *m) {
        int keep = (int)rnd(m, 8);
        while (m->nlive > keep) {
                int i = (int)rnd(m, m->nlive);
                CHECK(m, range_free(m->a, m->live[i].start, 0) == 0, "range_free(%#llx) in a drain",
                      (unsigned long long)m->live[i].start);
                drop_live(m, i);
        }
}

static void op_query(struct model *m) {
        bool live = m->nlive && rnd(m, 2);
        uint64_t start = live ? m->live[rnd(m, m->nlive)].start : addr_of(m, (int)rnd(m, UNITS)), size = 0;
        int i = live_index(m, start);
        int r = range_query(m->a, start, &size);
        CHECK(m, r == (i < 0 ? -ENOENT : 0), "range_query(%#llx) = %d", (unsigned long long)start, r);
        if (i >= 0)
                CHECK(m, size == m->live[i].units * m->q, "range_query size %llu", (unsigned long long)size);
}

int model_init(struct model *m, uint64_t q, uint64_t base) {
        memset(m->unit, OUTSIDE, sizeof(m->unit));
        m->q = q;
        m->base = base;
        m->nlive = m->nruns = 0;
        m->last_freed = 0;
        m->reserved_end = base;
        m->op = 0;
        return range_arena_new(&m->a, q);
}

void model_step(struct model *m) {
        char why[256];
        int in_spans = 0;

        for (int u = 0; u < UNITS; u++)
                in_spans += m->unit[u] != OUTSIDE;
        uint64_t pick = rnd(m, 1000);
        if (pick < (in_spans < UNITS / 2 ? 60u : 4u))
                op_add(m);
        else if (pick < 500)
                op_alloc(m);
        else if (pick < 560)
                op_reserve(m);
        else if (pick == 949 && rnd(m, 10) == 0)
                op_drain(m); /* one operation in 10,000 */
        else if (pick < 950)
                op_free(m);
        else
                op_query(m);
        /* The next search rebuilds the treap from the address list: the rebuild is checked too. */
        if (rnd(m, 100) == 0)
                range_arena_drop_tree(m->a);
        CHECK(m, range_arena_check(m->a, why, sizeof(why)) == 0, "arena corrupt: %s", why);
        compute_runs(m);
        check_stats(m);
        if (m->op % m->walk_every == 0)
                check_walk(m);
        m->op++;
}

void model_finish(struct model *m) {
        while (m->nlive) {
                int i = (int)rnd(m, m->nlive);
                CHECK(m, range_free(m->a, m->live[i].start, 0) == 0, "final free");
                drop_live(m, i);
        }
        compute_runs(m);
        check_stats(m);
        check_walk(m);
        m->a = range_arena_free(m->a);
}
