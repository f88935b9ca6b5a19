/* SPDX-License-Identifier: MIT */
/*
 * Spares (docs/protocol.md, "Spares"; liballoc-client(3), "SPARES"): with
 * alloc_set_spare or ALLOCD_SPARE=1, the pipelined Free of the region the
 * last alloc_region_new handed out asks allocd, in the same request, for a
 * region of the same shape (Free.renew).  Nobody waits for that reply at the
 * free: whoever reads next files it here.  The next alloc_region_new of that
 * shape takes the spare from the reply, which was sent while the caller did
 * its work, so the alloc costs no round trip; an alloc of another shape gives
 * the spare back first (a pipelined Free), so that it never holds room that
 * alloc needs.
 *
 * At most one spare per connection, asked or at hand: the shape is the last
 * alloc's, and a program that cycles one shape is what it is for.  A spare
 * is an ordinary region of the connection to allocd (quota, limits, Dump),
 * and not in the held table until it is taken: a reconnect's squaring gives
 * back whatever allocd holds beyond that table, so a spare of a lost
 * connection is given back there, and this side forgets it (its generation).
 * All of it under the connection's lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-internal.h"
#include "connection.h"

static bool same_opts(const struct alloc_opts *a, const struct alloc_opts *b) {
        /* What allocd places a spare by; the wait (NOWAIT, NOFAIL, timeout_ms) does not matter to one. */
        uint32_t f = ~(uint32_t)(ALLOC_NOWAIT | ALLOC_NOFAIL);

        return a->count == b->count && a->align == b->align && a->phase == b->phase && a->boundary == b->boundary &&
               a->low == b->low && a->high == b->high && a->on_node == b->on_node &&
               (!a->on_node || a->numa_node == b->numa_node) && (a->flags & f) == (b->flags & f);
}

/* The shape of an alloc_region_new, or false where it may have no spare (named, a format, PERSIST, UNSEALED). */
static bool shape_of(const char *pool, const struct alloc_opts *opts, struct alloc_opts *ret) {
        static const struct alloc_opts none;

        *ret = opts ? *opts : none;
        if ((ret->name && *ret->name) || ret->format != ALLOC_FORMAT_RAW || ret->chunk_size ||
            (ret->flags & (ALLOC_PERSIST | ALLOC_UNSEALED)) || strlen(pool) > ALLOC_POOL_NAME_MAX)
                return false;
        ret->name = NULL;
        ret->timeout_ms = 0;
        return true;
}

static void forget(struct alloc_client *c) {
        if (c->spare.reply)
                allocd__reply__free_unpacked(c->spare.reply, NULL);
        c->spare.reply = NULL;
        c->spare.req = 0;
        c->spare.answered = false;
}

void conn_spare_forget(struct alloc_client *c) {
        forget(c);
        c->spare.last = 0;
}

void conn_spare_listed(struct alloc_client *c, const struct pending *p) {
        forget(c);
        c->spare.req = p->id;
        c->spare.gen = c->gen;
}

bool conn_spare_answered(struct alloc_client *c, const struct pending *p, Allocd__Reply *r,
                         const struct map_error *map) {
        if (p->id != c->spare.req || c->spare.answered)
                return false;
        c->spare.answered = true;
        if ((r->has_error && r->error != ALLOCD__ERROR__OK) || r->body_case != ALLOCD__REPLY__BODY_REGION ||
            !r->region || !r->region->has_id)
                return false; /* no spare, and why is in the message: nothing to keep */
        c->spare.reply = r;
        c->spare.map = *map;
        return true;
}

void client_spare_set(struct alloc_client *c, bool on) {
        pthread_mutex_lock(&c->lock);
        c->spare_on = on;
        c->spare.last = 0;
        pthread_mutex_unlock(&c->lock);
}

void client_spare_note(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                       uint64_t id) {
        struct alloc_opts shape;
        bool ok = shape_of(pool, opts, &shape);

        pthread_mutex_lock(&c->lock);
        if (c->spare_on && ok) {
                snprintf(c->spare.pool, sizeof(c->spare.pool), "%s", pool);
                c->spare.size = size;
                c->spare.opts = shape;
        }
        c->spare.last = c->spare_on && ok ? id : 0;
        pthread_mutex_unlock(&c->lock);
}

bool client_spare_renew(struct alloc_client *c, uint64_t id, char *pool, uint64_t *size, struct alloc_opts *opts) {
        bool ok;

        pthread_mutex_lock(&c->lock);
        /* One spare at a time: one still asked or at hand is the next alloc's. */
        ok = c->spare_on && c->renew_ok && id && id == c->spare.last && !c->spare.req && !c->dead;
        if (ok) {
                strcpy(pool, c->spare.pool);
                *size = c->spare.size;
                *opts = c->spare.opts;
                c->spare.last = 0;
        }
        pthread_mutex_unlock(&c->lock);
        return ok;
}

static bool settled(const struct alloc_client *c, const void *arg) {
        (void)arg;
        return !c->spare.req || c->spare.answered || c->gen != c->spare.gen;
}

Allocd__Reply *client_spare_take(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                                 struct map_error *map, uint64_t *give_back) {
        struct alloc_opts shape;
        struct timespec deadline;
        Allocd__Reply *r = NULL;
        bool same;

        *give_back = 0;
        pthread_mutex_lock(&c->lock);
        if (!c->spare.req) {
                pthread_mutex_unlock(&c->lock);
                return NULL;
        }
        same = shape_of(pool, opts, &shape) && !strcmp(pool, c->spare.pool) && size == c->spare.size &&
               same_opts(&shape, &c->spare.opts);
        /* Its reply was asked for with the Free, and is read now if it has not been yet. */
        if (!settled(c, NULL) && !c->dead)
                conn_await(c, settled, NULL, conn_plain_deadline(c, &deadline) ? &deadline : NULL);
        if (c->spare.answered && c->spare.reply && c->spare.gen == c->gen && !c->dead) {
                r = c->spare.reply;
                *map = c->spare.map;
                c->spare.reply = NULL;
        }
        forget(c);
        pthread_mutex_unlock(&c->lock);
        if (r && !same) {
                *give_back = r->region->id;
                allocd__reply__free_unpacked(r, NULL);
                return NULL;
        }
        return r;
}
