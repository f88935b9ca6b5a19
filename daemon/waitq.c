/* SPDX-License-Identifier: MIT */
/*
 * Allocations waiting for room (docs/ARCHITECTURE.md, "Wake-ups").
 *
 * Each pool keeps its waiters in arrival order.  A region that comes back
 * only marks its pool ready; core_run, once per loop turn, walks each ready
 * pool's waiters once, oldest first, granting every one that now fits, so a
 * large request at the head does not hold back small ones behind it and among
 * those that fit the oldest wins.  A waiter larger than the pool's largest
 * free range is skipped at the cost of a comparison, nothing is formatted for
 * one that still does not fit, and a pool nobody freed into costs nothing: a
 * hang-up that returns 65,536 regions retries each waiter once, not 65,536
 * times, and waiters of one pool never slow another's frees.
 *
 * Deadlines are a binary heap, so expiring is O(log n) a waiter.  A waiter
 * ends granted, timed out, refused (its request became impossible, e.g. its
 * name was taken meanwhile) or cancelled; the outcome goes on the done list
 * for the server to answer.  A waiter whose client goes is dropped silently.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"

void waitq_init(struct waitq *q) {
        *q = (struct waitq){0};
        TAILQ_INIT(&q->ready);
        STAILQ_INIT(&q->done);
}

void waitq_clear(struct waitq *q) {
        struct waiter *w;

        while ((w = STAILQ_FIRST(&q->done))) {
                STAILQ_REMOVE_HEAD(&q->done, done_link);
                free(w);
        }
        free(q->heap);
        waitq_init(q);
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

int waitq_add(struct core *core, struct client *cl, uint64_t req_id, const struct alloc_args *a) {
        struct waitq *q = &core->waitq;
        struct waiter *w;
        uint32_t timeout = a->timeout_ms ? a->timeout_ms : core->limits.wait_timeout_ms;

        if (q->nheap == q->heap_cap) {
                uint32_t cap = q->heap_cap ? q->heap_cap * 2 : 64;
                struct waiter **h = realloc(q->heap, cap * sizeof(*h));
                if (!h)
                        return -ENOMEM;
                q->heap = h;
                q->heap_cap = cap;
        }
        if (!(w = calloc(1, sizeof(*w) + strlen(a->name) + 1)))
                return -ENOMEM;
        w->cl = cl;
        w->req_id = req_id;
        w->args = *a;
        w->args.name = strcpy(w->name, a->name); /* the request's buffer is gone once it is answered */
        w->heap = UINT32_MAX;
        w->deadline = a->flags & F_NOFAIL ? UINT64_MAX : core->now + timeout;
        if (w->deadline != UINT64_MAX) {
                heap_set(q, q->nheap++, w);
                heap_up(q, w->heap);
        }
        TAILQ_INSERT_TAIL(&a->pool->waiters, w, by_pool);
        TAILQ_INSERT_TAIL(&cl->waiters, w, by_client);
        a->pool->nwaiters++;
        cl->nwaiters++;
        q->nwaiters++;
        return 0;
}

static void unlink_waiter(struct core *core, struct waiter *w) {
        struct waitq *q = &core->waitq;
        struct pool *p = w->args.pool;

        heap_remove(q, w);
        TAILQ_REMOVE(&p->waiters, w, by_pool);
        TAILQ_REMOVE(&w->cl->waiters, w, by_client);
        p->nwaiters--;
        w->cl->nwaiters--;
        q->nwaiters--;
}

/* Ends w with its outcome in w->done (filled by the caller), for the server to answer. */
static void finish(struct core *core, struct waiter *w) {
        unlink_waiter(core, w);
        w->done.client = w->cl;
        w->done.req_id = w->req_id;
        STAILQ_INSERT_TAIL(&core->waitq.done, w, done_link);
}

void waitq_pool_ready(struct core *core, struct pool *p) {
        if (p->ready || TAILQ_EMPTY(&p->waiters))
                return;
        p->ready = true;
        TAILQ_INSERT_TAIL(&core->waitq.ready, p, ready_link);
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
                if (d->done.grant == GRANT_REGION) {
                        uint32_t hold = region_hold_of(core, d->done.slot, cl);
                        if (hold != HOLD_NONE)
                                region_drop_one(core, hold);
                } else if (d->done.grant == GRANT_ZEROING) {
                        core_zero_done(core, NULL, d->done.slot, 0, &d->done.res);
                }
                free(d);
        }
}

/* Tries p's waiters once, oldest first. */
static void retry(struct core *core, struct pool *p) {
        struct waiter *w, *next;
        struct range_stats st;

        range_stats(p->arena, &st);
        for (w = TAILQ_FIRST(&p->waiters); w; w = next) {
                next = TAILQ_NEXT(w, by_pool);
                if (w->args.size > st.largest_free)
                        continue;
                core->waitq.tries++;
                int e = alloc_try(core, w->cl, &w->args, true, &w->done.slot, &w->done.res);
                if (e == E_WOULD_BLOCK)
                        continue;
                w->done.grant =
                        e == E_OK ? alloc_finish(core, w->cl, &w->args, w->done.slot, &w->done.res) : GRANT_NONE;
                finish(core, w);
                range_stats(p->arena, &st);
                if (st.largest_free == 0)
                        break;
        }
}

static void retry_now(struct core *core, struct pool *p) {
        if (!p->ready)
                return;
        TAILQ_REMOVE(&core->waitq.ready, p, ready_link);
        p->ready = false;
        retry(core, p);
}

void core_run(struct core *core) {
        struct waitq *q = &core->waitq;
        struct pool *p;

        while (q->nheap && q->heap[0]->deadline <= core->now) {
                struct waiter *w = q->heap[0];
                fail(&w->done.res, E_TIMEOUT,
                     "no room in pool %s within the timeout (%llu bytes asked); free regions, raise timeout_ms, "
                     "or use NOFAIL to wait without limit",
                     w->args.pool->conf.name, (unsigned long long)w->args.size);
                w->done.grant = GRANT_NONE;
                finish(core, w);
        }
        while ((p = TAILQ_FIRST(&q->ready)))
                retry_now(core, p);
}

bool core_pending(const struct core *core) {
        return !TAILQ_EMPTY(&core->waitq.ready) || !STAILQ_EMPTY(&core->waitq.done);
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
        for (size_t i = 0; i < core->npools; i++) {
                struct pool *p = core->pools[i];
                struct waiter *w;
                while ((w = TAILQ_FIRST(&p->waiters))) {
                        fail(&w->done.res, E_CANCELLED, "%s", why);
                        w->done.grant = GRANT_NONE;
                        finish(core, w);
                }
        }
}
