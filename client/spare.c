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
 * Ahead: a spare asked for at a free is taken at the alloc right after, too
 * soon for its answer to have come if it were the only one; so each alloc
 * takes the oldest spare, whose answer is in, and a free asks for as many as
 * bring those asked or at hand back to the shape's depth.  Small regions go
 * deeper, and are asked for in batches: where allocd runs on the caller's
 * CPU, each answer costs a send, a receive and a switch between the two, more
 * than the rest of a small region; so a free asks only once a batch fits
 * (half the depth, and no more than allocd grants one Free), and one answer
 * serves a batch of allocs.  The depth is as many regions as
 * SPARE_BYTES_AHEAD holds, two to eight: what is held ahead stays small, or
 * two regions as before.  The shape is the last alloc's, and a program that
 * cycles one shape is what it is for.  A spare is an ordinary region of the
 * connection to allocd (quota, limits, Dump), and not in the held table until
 * it is taken: a reconnect's squaring gives back whatever allocd holds beyond
 * that table, so a spare of a lost connection is given back there, and this
 * side forgets it (its generation).
 * All of it under the connection's lock.
 */
#include <errno.h>
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

/* The spares a reply granted: a Region, or a RegionBatch, listed or in columns (client_batch_size). */
static size_t granted(const Allocd__Reply *r) {
        if (!r || (r->has_error && r->error != ALLOCD__ERROR__OK))
                return 0;
        if (r->body_case == ALLOCD__REPLY__BODY_REGION && r->region)
                return 1;
        if (r->body_case == ALLOCD__REPLY__BODY_BATCH && client_batch_size(r->batch) <= SPARES_AHEAD)
                return client_batch_size(r->batch);
        return 0;
}

static Allocd__Region region_at(const Allocd__Reply *r, size_t i) {
        return r->body_case == ALLOCD__REPLY__BODY_REGION ? *r->region : client_batch_region(r->batch, i);
}

/* Spares asked or at hand. */
static uint32_t ahead(const struct alloc_client *c) {
        uint32_t n = 0;

        for (size_t i = 0; i < c->spare.nask; i++) {
                const struct spare_ask *a = &c->spare.ask[i];
                n += a->answered ? (uint32_t)(granted(a->reply) - a->taken) : a->asked;
        }
        return n;
}

static void drop(struct alloc_client *c, size_t i) {
        if (c->spare.ask[i].reply)
                allocd__reply__free_unpacked(c->spare.ask[i].reply, NULL);
        memmove(&c->spare.ask[i], &c->spare.ask[i + 1], (c->spare.nask - i - 1) * sizeof(c->spare.ask[0]));
        c->spare.nask--;
}

/*
 * Drops ask i, whose spares not taken are allocd's no more (a reconnect's squaring gave them back, or
 * will): the mapping a spare of an isolation = region pool came with goes too, or it stayed until
 * alloc_disconnect, the memory of a region allocd had freed.
 */
static void drop_lost(struct alloc_client *c, size_t i) {
        const struct spare_ask *a = &c->spare.ask[i];

        if (a->answered && a->map.region_mapped && a->taken < granted(a->reply))
                region_table_drop(c->regions, a->reply->region->id);
        drop(c, i);
}

void conn_spare_forget(struct alloc_client *c) {
        while (c->spare.nask)
                drop(c, 0);
        c->spare.last = 0;
}

bool conn_spare_listed(struct alloc_client *c, const struct pending *p, const Allocd__Alloc *renew, uint32_t *n) {
        /*
         * client_spare_renew made room, but let the lock go: other threads' Frees may have listed
         * their asks since, each counting on the same room, and another thread's alloc may have
         * changed the shape.  So both are looked at again here, where asks are listed in order under
         * the lock (and answered in that order), and each ask is tagged with the shape it asks for.
         */
        struct alloc_opts o = {.count = renew->count,
                               .align = renew->align,
                               .phase = renew->phase,
                               .boundary = renew->boundary,
                               .low = renew->low,
                               .high = renew->high,
                               .on_node = renew->has_numa_node,
                               .numa_node = renew->numa_node,
                               .flags = renew->flags};
        uint32_t have = ahead(c);

        if (c->spare.nask >= SPARES_AHEAD || have >= c->spare.depth || !renew->pool ||
            strcmp(renew->pool, c->spare.pool) || renew->size != c->spare.size || !same_opts(&o, &c->spare.opts))
                return false;
        if (*n > c->spare.depth - have)
                *n = c->spare.depth - have;
        c->spare.ask[c->spare.nask++] =
                (struct spare_ask){.req = p->id, .gen = c->gen, .asked = *n, .shape = c->spare.shape};
        return true;
}

void conn_spare_unlisted(struct alloc_client *c, const struct pending *p) {
        for (size_t i = 0; i < c->spare.nask; i++)
                if (c->spare.ask[i].req == p->id)
                        return drop(c, i);
}

bool conn_spare_answered(struct alloc_client *c, const struct pending *p, Allocd__Reply *r,
                         const struct map_error *map) {
        size_t n = granted(r);

        for (size_t i = 0; i < c->spare.nask; i++) {
                struct spare_ask *a = &c->spare.ask[i];
                if (a->req != p->id || a->answered)
                        continue;
                a->answered = true;
                if (n > a->asked)
                        n = 0; /* more than asked: all go back (transport.c), none is kept */
                for (size_t k = 0; k < n; k++)
                        if (!region_at(r, k).has_id)
                                n = 0;
                if (!n)
                        return false; /* no spare, and why is in the message: nothing to keep */
                a->reply = r;
                a->map = *map;
                return true;
        }
        return false;
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
                uint64_t bytes;
                /* Asks listed before are of the old shape: their spares go back (client_spare_take). */
                if (strcmp(pool, c->spare.pool) || size != c->spare.size || !same_opts(&shape, &c->spare.opts))
                        c->spare.shape++;
                snprintf(c->spare.pool, sizeof(c->spare.pool), "%s", pool);
                c->spare.size = size;
                c->spare.opts = shape;
                /* allocd made a region of it, so this does not overflow; count 0 is 1. */
                if (__builtin_mul_overflow(size, shape.count ? shape.count : 1, &bytes) || !bytes)
                        bytes = UINT64_MAX;
                c->spare.depth = bytes > SPARE_BYTES_AHEAD / 2 ? 2 : (uint32_t)(SPARE_BYTES_AHEAD / bytes);
                if (c->spare.depth > SPARES_AHEAD)
                        c->spare.depth = SPARES_AHEAD;
                c->spare.batch = c->spare.depth / 2 < c->spares_max ? c->spare.depth / 2 : c->spares_max;
        }
        c->spare.last = c->spare_on && ok ? id : 0;
        pthread_mutex_unlock(&c->lock);
}

bool client_spare_renew(struct alloc_client *c, uint64_t id, char *pool, uint64_t *size, struct alloc_opts *opts,
                        uint32_t *n) {
        uint32_t have;
        bool ok;

        pthread_mutex_lock(&c->lock);
        have = ahead(c);
        ok = c->spare_on && c->renew_ok && id && id == c->spare.last && !c->dead && c->spare.nask < SPARES_AHEAD &&
             have + c->spare.batch <= c->spare.depth;
        if (ok) {
                /* As many as bring it to the depth, as allocd allows: the first asks for the most. */
                *n = c->spare.depth - have < c->spares_max ? c->spare.depth - have : c->spares_max;
                strcpy(pool, c->spare.pool);
                *size = c->spare.size;
                *opts = c->spare.opts;
                c->spare.last = 0;
        }
        pthread_mutex_unlock(&c->lock);
        return ok;
}

/* Whether the first ask (arg NULL) or every ask (arg non-NULL) is answered, or gone with its connection. */
static bool settled(const struct alloc_client *c, const void *arg) {
        for (size_t i = 0; i < c->spare.nask && (i == 0 || arg); i++)
                if (!c->spare.ask[i].answered && c->spare.ask[i].gen == c->gen)
                        return false;
        return true;
}

int client_spare_take(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                      struct alloc_region *ret, uint64_t back[SPARES_AHEAD], size_t *nback) {
        struct alloc_opts shape;
        struct timespec deadline;
        bool ok, same, dl;
        int r = -ENOENT;

        *nback = 0;
        if (conn_forked(c) < 0)
                return -ENOENT; /* the alloc's own request says why */
        pthread_mutex_lock(&c->lock);
        ok = shape_of(pool, opts, &shape);
        same = ok && !strcmp(pool, c->spare.pool) && size == c->spare.size && same_opts(&shape, &c->spare.opts);
        dl = conn_plain_deadline(c, &deadline);
        /* Another shape: every spare goes back, so that none holds room the alloc needs. */
        if (!same && c->spare.nask && !c->dead && !settled(c, c))
                conn_await(c, settled, c, dl ? &deadline : NULL, true);
        while (c->spare.nask && r < 0) {
                struct spare_ask *a;
                /*
                 * Its answer was asked for with the Free, a cycle ago, and is read now if it has not been.
                 * The wait lets the lock go: another thread's alloc may have taken that spare, or dropped
                 * every ask, meanwhile, so the first ask is looked up after it.
                 */
                if (same && !c->dead && !settled(c, NULL)) {
                        conn_await(c, settled, NULL, dl ? &deadline : NULL, true);
                        if (!c->spare.nask)
                                break;
                }
                /* Another thread's alloc may have changed the shape while the lock was let go. */
                same = ok && !strcmp(pool, c->spare.pool) && size == c->spare.size && same_opts(&shape, &c->spare.opts);
                a = &c->spare.ask[0];
                if (!a->answered || a->gen != c->gen || c->dead) {
                        /* A reconnect gave it back (or will): allocd held it, the held table not. */
                        drop_lost(c, 0);
                        continue;
                }
                if (a->taken < granted(a->reply)) {
                        /*
                         * conn_spare_listed keeps what is at hand within the depth, SPARES_AHEAD at most;
                         * should more ever be, back is not overrun: the caller gives these back, and asks again.
                         */
                        if (*nback == SPARES_AHEAD)
                                break;
                        Allocd__Region g = region_at(a->reply, a->taken++);
                        /* An ask listed under another shape holds spares of that one: back they go. */
                        if (!same || a->shape != c->spare.shape || (r = client_region_out(c, &g, &a->map, ret)) < 0)
                                back[(*nback)++] = g.id;
                        continue;
                }
                drop(c, 0);
        }
        if (c->spare.nask && c->spare.ask[0].answered && c->spare.ask[0].taken == granted(c->spare.ask[0].reply))
                drop(c, 0);
        /* Held from now on, under the lock: a reconnect's squaring then counts them the connection's. */
        if (r == 0)
                held_add(c->held, &ret->id, 1);
        held_add(c->held, back, *nback);
        pthread_mutex_unlock(&c->lock);
        return r < 0 ? -ENOENT : 0;
}
