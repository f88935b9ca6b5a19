/* SPDX-License-Identifier: MIT */
/*
 * Allocations waiting for memory.  Each pool keeps its waiters in arrival
 * order; every time a region goes back to the pool, the waiters are tried in
 * that order and each one that now fits is granted, so a large request at the
 * head does not hold back small ones behind it, and among requests that fit
 * the oldest wins.  A waiter ends granted, timed out, refused (its request
 * became impossible, e.g. its name was taken meanwhile) or cancelled (its
 * connection closed, or the daemon stops).
 */
#include <errno.h>
#include <stdlib.h>

#include "allocd.h"

static void waiter_closed(uv_handle_t *h) {
        free(h->data);
}

static void waiter_remove(struct waiter *w) {
        struct pool *p = w->args.pool;

        TAILQ_REMOVE(&p->waiters, w, by_pool);
        TAILQ_REMOVE(&w->conn->waiters, w, by_conn);
        p->nwaiters--;
        w->conn->nwaiters--;
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, waiter_closed);
        status_changed();
}

void waitq_cancel(struct waiter *w, int error, const char *msg) {
        conn_reply_error(w->conn, w->id, error, "%s", msg);
        waiter_remove(w);
}

static void timed_out(uv_timer_t *t) {
        struct waiter *w = t->data;

        conn_reply_error(w->conn, w->id, ALLOCD__ERROR__TIMEOUT,
                         "no room in pool %s within the timeout (%llu bytes asked); free regions, raise timeout_ms, "
                         "or use NOFAIL to wait without limit",
                         w->args.pool->conf.name, (unsigned long long)w->args.size);
        waiter_remove(w);
}

int waitq_add(struct conn *c, uint64_t id, const struct alloc_args *a, uint32_t timeout_ms) {
        struct waiter *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        w->conn = c;
        w->id = id;
        w->args = *a;
        uv_timer_init(loop, &w->timer);
        w->timer.data = w;
        if (!(a->flags & ALLOCD__FLAG__NOFAIL))
                uv_timer_start(&w->timer, timed_out, timeout_ms, 0);
        TAILQ_INSERT_TAIL(&a->pool->waiters, w, by_pool);
        TAILQ_INSERT_TAIL(&c->waiters, w, by_conn);
        a->pool->nwaiters++;
        c->nwaiters++;
        status_changed();
        return 0;
}

void waitq_wake(struct pool *p) {
        struct waiter *w, *next;
        char msg[512];

        for (w = TAILQ_FIRST(&p->waiters); w; w = next) {
                next = TAILQ_NEXT(w, by_pool);
                if (w->conn->closing)
                        continue;
                int e = alloc_try(w->conn, w->id, &w->args, msg, sizeof(msg));
                if (e == ALLOCD__ERROR__OK)
                        waiter_remove(w);
                else if (e != ALLOCD__ERROR__WOULD_BLOCK)
                        waitq_cancel(w, e, msg);
        }
}
