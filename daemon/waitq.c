/* SPDX-License-Identifier: MIT */
/*
 * Allocations waiting for room (docs/ARCHITECTURE.md, "Wake-ups").
 *
 * Each pool keeps its waiters in arrival order.  A region that comes back
 * only marks its pool ready; core_run, once per loop turn, walks each ready
 * pool's waiters once, oldest first, granting every one that now fits, so a
 * large request at the head does not hold back small ones behind it and among
 * those that fit the oldest wins.  A waiter larger than the pool's largest
 * free range is skipped at the cost of a comparison, one that no range freed
 * since its last refusal can hold at the cost of a search near each of those
 * ranges (room_came_back), nothing is formatted for one that still does not
 * fit, and a pool nobody freed into costs nothing: a
 * hang-up that returns 65,536 regions retries each waiter once, not 65,536
 * times, and waiters of one pool never slow another's frees.
 *
 * An Attach may wait too, for a name to be published, sealed and zeroed.
 * Its waiters are kept by name (a tsearch tree of struct namewait), and a
 * change that may let them attach (a publish, a Seal, a region handed out
 * after zeroing) only queues the name; core_run tries its waiters once, in
 * arrival order.  If an unsealed region goes before its Seal, the name's
 * waiters are told so rather than left to time out.
 *
 * Deadlines are a binary heap, so expiring is O(log n) a waiter.  A waiter
 * ends granted, timed out, refused (its request became impossible, e.g. its
 * name was taken meanwhile) or cancelled (allocd stops, or its client sent a
 * Cancel: a client whose caller gave up, e.g. on a signal, frees its place
 * among the waiters at once); the outcome goes on the done list
 * for the server to answer.  A waiter whose client goes is dropped silently.
 */
#include <errno.h>
#include <inttypes.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core-impl.h"

/* A pass over waiters that are costly to try (constrained requests in a pool of many holes) goes on next turn. */
#define SLICE_NS_DEFAULT 500000

static uint64_t now_ns(void) {
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void waitq_init(struct waitq *q) {
        *q = (struct waitq){.slice_ns = SLICE_NS_DEFAULT};
        TAILQ_INIT(&q->ready);
        STAILQ_INIT(&q->done);
        STAILQ_INIT(&q->ready_names);
}

static void namewait_free(void *p) {
        struct namewait *nw = p;

        free(nw->name);
        free(nw);
}

void waitq_clear(struct waitq *q) {
        struct waiter *w;

        while ((w = STAILQ_FIRST(&q->done))) {
                STAILQ_REMOVE_HEAD(&q->done, done_link);
                free(w);
        }
        free(q->heap);
        /* Every waiter went with its client: what is left are names nobody waits for. */
        tdestroy(q->names, namewait_free);
        uint64_t slice = q->slice_ns;
        waitq_init(q);
        q->slice_ns = slice;
}

/* ---- names waited for ---- */

static int namewait_cmp(const void *a, const void *b) {
        return strcmp(((const struct namewait *)a)->name, ((const struct namewait *)b)->name);
}

static struct namewait *namewait_find(const struct waitq *q, const char *name) {
        struct namewait key = {.name = (char *)name};
        void *x = tfind(&key, &q->names, namewait_cmp);

        return x ? *(struct namewait **)x : NULL;
}

/* name's record, made if there is none; NULL when out of memory. */
static struct namewait *namewait_get(struct waitq *q, const char *name) {
        struct namewait *nw = namewait_find(q, name), **x;

        if (nw)
                return nw;
        if (!(nw = calloc(1, sizeof(*nw))) || !(nw->name = strdup(name))) {
                free(nw);
                return NULL;
        }
        TAILQ_INIT(&nw->waiters);
        if (!(x = tsearch(nw, &q->names, namewait_cmp))) {
                namewait_free(nw);
                return NULL;
        }
        return nw;
}

/* Drops nw once no one waits on it and it is not queued. */
static void namewait_put(struct waitq *q, struct namewait *nw) {
        if (!TAILQ_EMPTY(&nw->waiters) || nw->queued)
                return;
        tdelete(nw, &q->names, namewait_cmp);
        namewait_free(nw);
}

static void namewait_queue(struct core *core, const char *name, bool gone) {
        struct waitq *q = &core->waitq;
        struct namewait *nw = q->names ? namewait_find(q, name) : NULL;

        if (!nw)
                return;
        nw->gone |= gone;
        if (!nw->queued) {
                nw->queued = true;
                STAILQ_INSERT_TAIL(&q->ready_names, nw, ready_link);
        }
}

void waitq_name_ready(struct core *core, const char *name) {
        namewait_queue(core, name, false);
}

void waitq_name_gone(struct core *core, const char *name) {
        namewait_queue(core, name, true);
}

/* ---- the deadline heap ---- */

static void heap_set(struct waitq *q, uint32_t i, struct waiter *w) {
        q->heap[i] = w;
        w->heap = i;
}

static void heap_up(struct waitq *q, uint32_t i) {
        struct waiter *w = q->heap[i];

        while (i > 0 && q->heap[(i - 1) / 2]->deadline > w->deadline) {
                heap_set(q, i, q->heap[(i - 1) / 2]);
                i = (i - 1) / 2;
        }
        heap_set(q, i, w);
}

static void heap_down(struct waitq *q, uint32_t i) {
        struct waiter *w = q->heap[i];

        for (;;) {
                uint32_t c = 2 * i + 1;
                if (c >= q->nheap)
                        break;
                if (c + 1 < q->nheap && q->heap[c + 1]->deadline < q->heap[c]->deadline)
                        c++;
                if (q->heap[c]->deadline >= w->deadline)
                        break;
                heap_set(q, i, q->heap[c]);
                i = c;
        }
        heap_set(q, i, w);
}

static void heap_remove(struct waitq *q, struct waiter *w) {
        uint32_t i = w->heap;
        struct waiter *last;

        if (i == UINT32_MAX)
                return;
        w->heap = UINT32_MAX;
        last = q->heap[--q->nheap];
        if (i == q->nheap)
                return;
        heap_set(q, i, last);
        heap_up(q, i);
        heap_down(q, last->heap);
}

/* ---- waiters ---- */

/* A waiter for cl with a copy of name and room for it in the heap; NULL when out of memory. */
static struct waiter *waiter_new(struct waitq *q, struct client *cl, uint64_t req_id, const char *name) {
        struct waiter *w;

        if (q->nheap == q->heap_cap) {
                uint32_t cap = q->heap_cap ? q->heap_cap * 2 : 64;
                struct waiter **h = realloc(q->heap, cap * sizeof(*h));
                if (!h)
                        return NULL;
                q->heap = h;
                q->heap_cap = cap;
        }
        if (!(w = calloc(1, sizeof(*w) + strlen(name) + 1)))
                return NULL;
        w->cl = cl;
        w->req_id = req_id;
        w->heap = UINT32_MAX;
        strcpy(w->name, name); /* the request's buffer is gone once it is answered */
        return w;
}

/* Puts w, its list chosen by the caller, on its client's list and in the heap (deadline UINT64_MAX: none). */
static void waiter_start(struct waitq *q, struct waiter *w, uint64_t deadline) {
        w->deadline = deadline;
        if (deadline != UINT64_MAX) {
                heap_set(q, q->nheap++, w);
                heap_up(q, w->heap);
        }
        TAILQ_INSERT_TAIL(&w->cl->waiters, w, by_client);
        w->cl->nwaiters++;
        w->cl->user->waiters++;
        q->nwaiters++;
}

int waitq_add(struct core *core, struct client *cl, uint64_t req_id, const struct alloc_args *a) {
        struct waitq *q = &core->waitq;
        struct waiter *w = waiter_new(q, cl, req_id, a->name);
        uint32_t timeout = a->timeout_ms ? a->timeout_ms : core->limits.wait_timeout_ms;

        if (!w)
                return -ENOMEM;
        w->args = *a;
        w->args.name = w->name;
        w->refused = q->freed_seq; /* it waits because the try just before found no room */
        TAILQ_INSERT_TAIL(&a->pool->waiters, w, by_pool);
        a->pool->nwaiters++;
        waiter_start(q, w, a->flags & F_NOFAIL ? UINT64_MAX : core->now + timeout);
        return 0;
}

int waitq_add_attach(struct core *core, struct client *cl, uint64_t req_id, const char *name,
                     const struct attach_want *want, uint32_t timeout_ms) {
        struct waitq *q = &core->waitq;
        struct waiter *w = waiter_new(q, cl, req_id, name);
        struct namewait *nw = w ? namewait_get(q, name) : NULL;

        if (!nw) {
                free(w);
                return -ENOMEM;
        }
        w->args.name = w->name;
        w->nw = nw;
        w->want = *want;
        w->done.attach = true;
        TAILQ_INSERT_TAIL(&nw->waiters, w, by_pool);
        waiter_start(q, w, core->now + timeout_ms);
        return 0;
}

static void unlink_waiter(struct core *core, struct waiter *w) {
        struct waitq *q = &core->waitq;
        struct pool *p = w->args.pool;

        heap_remove(q, w);
        if (w->nw) {
                TAILQ_REMOVE(&w->nw->waiters, w, by_pool);
                namewait_put(q, w->nw);
                w->nw = NULL;
        } else {
                if (p->resume == w)
                        p->resume = TAILQ_NEXT(w, by_pool);
                TAILQ_REMOVE(&p->waiters, w, by_pool);
                p->nwaiters--;
        }
        TAILQ_REMOVE(&w->cl->waiters, w, by_client);
        w->cl->nwaiters--;
        w->cl->user->waiters--;
        q->nwaiters--;
}

/* Ends w with its outcome in w->done (filled by the caller), for the server to answer. */
static void finish(struct core *core, struct waiter *w) {
        unlink_waiter(core, w);
        w->done.client = w->cl;
        w->done.req_id = w->req_id;
        STAILQ_INSERT_TAIL(&core->waitq.done, w, done_link);
}

/* The bytes between [a, b) and [c, d), 0 when they touch or overlap. */
static uint64_t gap(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
        return c > b ? c - b : a > d ? a - d : 0;
}

void waitq_pool_freed(struct core *core, struct pool *p, uint64_t offset, uint64_t size) {
        uint64_t seq = ++core->waitq.freed_seq, q = p->conf.quantum, end = offset + (size + q - 1) / q * q;
        uint32_t near = 0;

        if (TAILQ_EMPTY(&p->waiters)) {
                p->nfreed = 0; /* a waiter queued from now on was refused after all of it */
                return;
        }
        if (p->nfreed < FREED_LOG) {
                p->freed[p->nfreed++] = (struct freed){.seq = seq, .offset = offset, .end = end};
        } else {
                /* Full: merged with the entry nearest it, which then covers both and the bytes between. */
                for (uint32_t i = 1; i < FREED_LOG; i++)
                        if (gap(offset, end, p->freed[i].offset, p->freed[i].end) <
                            gap(offset, end, p->freed[near].offset, p->freed[near].end))
                                near = i;
                struct freed *f = &p->freed[near];
                *f = (struct freed){.seq = seq,
                                    .offset = offset < f->offset ? offset : f->offset,
                                    .end = end > f->end ? end : f->end};
        }
        if (p->ready && p->resume)
                p->again = true; /* the waiters its broken-off pass tried already may fit now */
        if (p->ready || TAILQ_EMPTY(&p->waiters))
                return;
        p->ready = true;
        TAILQ_INSERT_TAIL(&core->waitq.ready, p, ready_link);
}

void waitq_pool_unready(struct core *core, struct pool *p) {
        if (!p->ready)
                return;
        TAILQ_REMOVE(&core->waitq.ready, p, ready_link);
        p->ready = p->again = false;
        p->resume = NULL;
}

void waitq_pool_refuse(struct core *core, struct pool *p) {
        struct waiter *w;

        while ((w = TAILQ_FIRST(&p->waiters))) {
                fail(&w->done.res, E_NO_POOL, POOL_DRAINING_FMT, p->conf.name, p->draining);
                w->done.grant = GRANT_NONE;
                finish(core, w);
        }
        /*
         * Off the ready list too: a draining pool gets no waiter again, and one that waited behind a
         * broken-off pass would stay listed while it is retired and freed for its namesake (core_pool_adopt).
         */
        waitq_pool_unready(core, p);
}

void waitq_drop_client(struct core *core, struct client *cl) {
        struct waiter *w, *d, *next;

        while ((w = TAILQ_FIRST(&cl->waiters))) {
                unlink_waiter(core, w);
                free(w);
        }
        /* Outcomes not yet answered have nobody to go to. */
        for (d = STAILQ_FIRST(&core->waitq.done); d; d = next) {
                next = STAILQ_NEXT(d, done_link);
                if (d->cl != cl)
                        continue;
                STAILQ_REMOVE(&core->waitq.done, d, waiter, done_link);
                /* An Alloc's PERSIST region whose id never reached anyone: it goes as the client's Free would. */
                if (d->done.grant == GRANT_REGION && !d->done.attach &&
                    (core->regions.tab[d->done.slot].state & R_PERSIST)) {
                        core_free_region(core, cl, region_id(&core->regions, d->done.slot), &d->done.res);
                } else if (d->done.grant == GRANT_REGION) {
                        uint32_t hold = region_hold_of(core, d->done.slot, cl);
                        if (hold != HOLD_NONE)
                                region_drop_one(core, hold);
                } else if (d->done.grant == GRANT_ZEROING) {
                        core_zero_done(core, NULL, d->done.slot, 0, &d->done.res);
                }
                free(d);
        }
}

/*
 * Whether w, refused room when the arena held no placement for it, may fit now.  A placement that
 * did not exist then holds a byte that was not free then, so it overlaps a range that came back
 * since: a search of the arena in a window around each such entry of the log (O(log n) for a range
 * of a few holes) answers exactly, however many holes the rest of the pool has that w cannot use.
 */
static bool room_came_back(struct pool *p, const struct waiter *w) {
        const struct alloc_args *a = &w->args;
        uint64_t q = p->conf.quantum, reach;

        if (a->size > UINT64_MAX - (q - 1))
                return true;
        reach = (a->size + q - 1) / q * q - q;
        for (uint32_t i = 0; i < p->nfreed; i++) {
                const struct freed *f = &p->freed[i];
                if (f->seq <= w->refused)
                        continue;
                struct range_req r = a->req;
                /* A placement overlapping f starts after f->offset - size and ends before f->end + size. */
                uint64_t from = f->offset > reach ? f->offset - reach : 0,
                         to = f->end > UINT64_MAX - reach ? UINT64_MAX : f->end + reach,
                         high = r.high && r.high < to ? r.high : to;
                r.low = r.low > from ? r.low : from;
                if (r.low >= high)
                        continue;
                r.high = high == UINT64_MAX ? 0 : high;
                if (range_fits(p->arena, a->size, &r) != -ENOSPC)
                        return true;
        }
        return false;
}

/*
 * Tries p's waiters once, oldest first, from where a pass broken off last turn stopped; false when
 * the slice ends first (*tried: this core_run tried a waiter already; it tries at least one, so every
 * pass ends).  The largest free piece is read once a call (without the arena's treap it is a walk of
 * a list): each grant only makes it smaller, so it stays an upper bound that skips the waiters that
 * cannot fit, and alloc_try decides the rest exactly; a free between two calls marks the pass to be
 * done again (p->again).
 */
static bool retry(struct core *core, struct pool *p, uint64_t deadline, bool *tried) {
        struct waiter *w, *next;
        struct range_stats st;

        range_stats(p->arena, &st);
        for (w = p->resume ? p->resume : TAILQ_FIRST(&p->waiters); w; w = next) {
                next = TAILQ_NEXT(w, by_pool);
                if (w->args.size > st.largest_free) {
                        w->refused = core->waitq.freed_seq; /* no room for it now, as a search would say */
                        continue;
                }
                if (*tried && now_ns() >= deadline) {
                        p->resume = w;
                        return false;
                }
                *tried = true;
                core->waitq.tries++;
                int e = alloc_check(core, w->cl, &w->args, &w->done.res);
                if (e == E_OK && !room_came_back(p, w)) {
                        w->refused = core->waitq.freed_seq;
                        core->waitq.skips++;
                        continue;
                }
                if (e == E_OK)
                        e = alloc_try(core, w->cl, &w->args, true, &w->done.slot, &w->done.res);
                if (e == E_WOULD_BLOCK) {
                        w->refused = core->waitq.freed_seq;
                        continue;
                }
                w->done.grant = e == E_OK ? alloc_finish(core, w->cl, w->done.slot, &w->done.res) : GRANT_NONE;
                finish(core, w);
        }
        p->resume = NULL;
        return true;
}

/*
 * p's pass, or what is left of it; false: the slice ended first.  A pass broken off, or one that
 * room came back during (another from the oldest is due), goes on after the other ready pools'
 * waiters: a pool whose waiters are costly and keep getting room (one user freeing in a loop) must
 * not keep everyone else's waiters from theirs.
 */
static bool retry_now(struct core *core, struct pool *p, uint64_t deadline, bool *tried) {
        struct waitq *q = &core->waitq;

        bool whole = !p->resume;
        if (whole)
                p->again = false; /* a pass from the oldest sees every free so far */
        bool done = retry(core, p, deadline, tried);
        /* Every waiter left was refused room after all that came back: none of it need be searched again. */
        if (whole && done)
                p->nfreed = 0;
        TAILQ_REMOVE(&q->ready, p, ready_link);
        if (done && !p->again) {
                p->ready = false;
                return true;
        }
        TAILQ_INSERT_TAIL(&q->ready, p, ready_link);
        return done;
}

/* Tries nw's waiters once, in arrival order: attach needs no room, so each may succeed. */
static void retry_name(struct core *core, struct namewait *nw) {
        struct waiter *w, *next;

        for (w = TAILQ_FIRST(&nw->waiters); w; w = next) {
                next = TAILQ_NEXT(w, by_pool);
                core->waitq.tries++;
                int e = attach_try(core, w->cl, w->name, &w->want, &w->done.slot, &w->done.res);
                if (e == E_NOT_FOUND || e == E_WOULD_BLOCK) {
                        if (!nw->gone)
                                continue;
                        fail(&w->done.res, E_NOT_FOUND,
                             "the region published as '%s' went before its creator sealed it", w->name);
                }
                w->done.grant = e == E_OK ? GRANT_REGION : GRANT_NONE;
                finish(core, w);
        }
}

/* Whether name is published, by a region its creator has not sealed yet. */
static bool name_unsealed(const struct core *core, const char *name) {
        struct region_info r;
        int s = names_find(&core->names, name);

        if (s < 0)
                return false;
        core_region_info(core, (uint32_t)s, &r);
        return r.flags & F_UNSEALED;
}

void core_run(struct core *core) {
        struct waitq *q = &core->waitq;
        struct namewait *nw;
        struct pool *p;

        while (q->nheap && q->heap[0]->deadline <= core->now) {
                struct waiter *w = q->heap[0];
                if (w->nw && name_unsealed(core, w->name))
                        fail(&w->done.res, E_TIMEOUT,
                             "'%s' is published but not sealed yet: its creator did not Seal it within the "
                             "timeout; raise the timeout, or check that its producer seals it",
                             w->name);
                else if (w->nw)
                        fail(&w->done.res, E_TIMEOUT,
                             "no region was published and sealed as '%s' within the timeout; raise the timeout, or "
                             "check that its producer runs",
                             w->name);
                else
                        fail(&w->done.res, E_TIMEOUT,
                             "no room in pool %s within the timeout (%llu bytes asked); free regions, give the "
                             "request a longer timeout, or use NOFAIL to wait without limit",
                             w->args.pool->conf.name, (unsigned long long)w->args.size);
                w->done.grant = GRANT_NONE;
                finish(core, w);
        }
        uint64_t start = now_ns(), deadline = q->slice_ns > UINT64_MAX - start ? UINT64_MAX : start + q->slice_ns;
        bool tried = false; /* at least one try a call, so that every pass ends */
        q->yielded = false;
        while (!q->yielded && (p = TAILQ_FIRST(&q->ready)))
                if (!retry_now(core, p, deadline, &tried)) {
                        q->yielded = true; /* p went behind the other ready pools */
                        q->slices++;
                }
        while ((nw = STAILQ_FIRST(&q->ready_names))) {
                STAILQ_REMOVE_HEAD(&q->ready_names, ready_link);
                retry_name(core, nw);
                nw->queued = nw->gone = false;
                namewait_put(q, nw);
        }
}

bool core_pending(const struct core *core) {
        return !TAILQ_EMPTY(&core->waitq.ready) || !STAILQ_EMPTY(&core->waitq.done) ||
               !STAILQ_EMPTY(&core->waitq.ready_names);
}

bool core_yielded(const struct core *core) {
        return core->waitq.yielded;
}

void core_set_slice(struct core *core, uint64_t ns) {
        core->waitq.slice_ns = ns;
}

uint64_t core_next_deadline(const struct core *core) {
        return core->waitq.nheap ? core->waitq.heap[0]->deadline : UINT64_MAX;
}

bool core_done_pop(struct core *core, struct core_done *d) {
        struct waiter *w = STAILQ_FIRST(&core->waitq.done);

        if (!w)
                return false;
        STAILQ_REMOVE_HEAD(&core->waitq.done, done_link);
        *d = w->done;
        free(w);
        return true;
}

void core_cancel_waiters(struct core *core, const char *why) {
        struct client *cl;
        struct waiter *w;

        TAILQ_FOREACH(cl, &core->clients, link) {
                while ((w = TAILQ_FIRST(&cl->waiters))) {
                        fail(&w->done.res, E_CANCELLED, "%s", why);
                        w->done.grant = GRANT_NONE;
                        finish(core, w);
                }
        }
}

int core_cancel(struct core *core, struct client *cl, uint64_t req_id, struct core_result *res) {
        struct waiter *w;

        /* At most max_waiters_per_connection of them: a walk is cheap, and a Cancel is rare. */
        TAILQ_FOREACH(w, &cl->waiters, by_client) {
                if (w->req_id != req_id)
                        continue;
                fail(&w->done.res, E_CANCELLED, "the client cancelled this request (Cancel) while it waited");
                w->done.grant = GRANT_NONE;
                finish(core, w);
                return ok_result(res);
        }
        return fail(res, E_NOT_FOUND,
                    "request %" PRIu64 " of this connection is not waiting (answered already, or never sent)", req_id);
}
