/* SPDX-License-Identifier: MIT */
/*
 * Pipelined requests (client-internal.h, client_send_pipelined): a Free,
 * Detach or FreeBatch of regions the connection holds goes without anyone
 * waiting for its reply.  It is listed like any request; whoever reads next
 * (transport.c) files the reply here, keeps a refusal for client_sync and
 * frees the entry.  Replies come in the order of the requests, so a request
 * sent after one sees its effect in allocd; at most PIPE_MAX are in flight,
 * so that a caller that never waits cannot fill the socket with replies
 * nobody reads (allocd would stop reading it, and its sends would block).
 *
 * Quiet (where Hello says allocd understands it): the request asks for no
 * reply unless refused, which saves allocd a send and this side a receive.
 * Since allocd serves in order and sends in order, the reply to any request
 * sent after a quiet one says it was accepted: each listed request records
 * how many quiet ones had been sent (confirms), and its reply confirms them.
 * Sent means wire_send returned: one still in it may reach allocd after a
 * request listed meanwhile, so it is numbered (sent) only when back.  Where
 * no other reply comes, a Sync asks for one (PIPE_MAX in flight, client_sync).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-internal.h"
#include "connection.h"
#include "wire.h"

/* The reply to pipelined request p (out of the list already): a refusal is kept, and its regions are held again. */
void conn_pipelined_answered(struct alloc_client *c, struct pending *p, const Allocd__Reply *r) {
        if (p->sending)
                p->answered = true; /* its sender still holds it */
        c->npipelined--;
        if (r->has_error && r->error != ALLOCD__ERROR__OK) {
                held_add(c->held, p->ids, p->n);
                if (c->refused) {
                        c->refused_more++;
                } else {
                        c->refused = -wire_error_errno(r->error);
                        snprintf(c->refused_msg, sizeof(c->refused_msg), "allocd refused the %s of region %llu%s: %s",
                                 p->what == ALLOCD__REQUEST__BODY_DETACH ? "Detach" : "Free",
                                 (unsigned long long)p->ids[0], p->n > 1 ? " and the rest of its batch" : "",
                                 client_reply_words(r));
                }
        }
        if (!p->answered)
                free(p);
}

void conn_quiet_confirmed(struct alloc_client *c, uint64_t upto) {
        for (struct pending *p, **pp = &c->pending; (p = *pp);) {
                if (p->pipelined && p->sent && p->sent <= upto) {
                        *pp = p->next;
                        c->npipelined--;
                        free(p);
                } else {
                        pp = &p->next;
                }
        }
}

/* One Sync round trip: every quiet request sent before it is answered, by a refusal or by its reply. */
static int quiet_sync(struct alloc_client *c) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Sync s = ALLOCD__SYNC__INIT;
        Allocd__Reply *reply;
        int r;

        req.body_case = ALLOCD__REQUEST__BODY_SYNC;
        req.sync = &s;
        if ((r = client_call(c, &req, &reply, NULL)) < 0)
                return r;
        r = client_reply_error(reply);
        allocd__reply__free_unpacked(reply, NULL);
        return r;
}

/* Whether a pipelined request sent before request id last is not answered yet; lock held. */
static bool unanswered(const struct alloc_client *c, const void *arg) {
        uint64_t last = *(const uint64_t *)arg;

        for (const struct pending *p = c->pending; p; p = p->next)
                if (p->pipelined && p->id <= last)
                        return true;
        return false;
}

static bool pipe_has_room(const struct alloc_client *c, const void *arg) {
        (void)arg;
        return c->npipelined < PIPE_MAX;
}

static bool answered(const struct alloc_client *c, const void *arg) {
        return !unanswered(c, arg);
}

static void set_quiet(Allocd__Request *req) {
        if (req->body_case == ALLOCD__REQUEST__BODY_FREE && !req->free->renew)
                req->free->has_quiet = req->free->quiet = true;
        else if (req->body_case == ALLOCD__REQUEST__BODY_DETACH)
                req->detach->has_quiet = req->detach->quiet = true;
        else if (req->body_case == ALLOCD__REQUEST__BODY_FREE_BATCH)
                req->free_batch->has_quiet = req->free_batch->quiet = true;
}

int client_send_pipelined(struct alloc_client *c, Allocd__Request *req, const uint64_t *ids, size_t n) {
        uint8_t buf[WIRE_MAX_PACKET];
        struct pending *p;
        struct timespec deadline;
        uint64_t gen;
        size_t len;
        int r;

        if ((r = conn_forked(c)) < 0)
                return r;
        if (!(p = malloc(sizeof(*p) + n * sizeof(*ids))))
                return client_fail(-ENOMEM, "out of memory");
        /*
         * Listed at once (not pipelined yet: nothing to read for it), as its regions leave the held
         * table, so that a reconnect before it is sent counts them as given back (reconnect.c) and
         * gives back what allocd still holds.
         */
        *p = (struct pending){.what = req->body_case,
                              .ids = memcpy(p + 1, ids, n * sizeof(*ids)),
                              .n = n,
                              .renew = req->body_case == ALLOCD__REQUEST__BODY_FREE && req->free->renew};
        pthread_mutex_lock(&c->lock);
        if (!held_take(c->held, ids, n)) {
                pthread_mutex_unlock(&c->lock);
                free(p);
                return 1;
        }
        p->id = ++c->next_id;
        p->next = c->pending;
        c->pending = p;
        if (p->renew) {
                uint32_t asked = req->free->has_spares ? req->free->spares : 1;
                if (conn_spare_listed(c, p, req->free->renew, &asked)) {
                        req->free->spares = asked;
                        req->free->has_spares = asked != 1;
                } else {
                        /* No room left, or another shape since: a plain Free, quiet if allowed. */
                        req->free->renew = NULL;
                        req->free->has_spares = false;
                        p->renew = false;
                }
        }
        gen = c->gen;
        if (c->dead && (r = conn_revive(c, gen, false)) < 0 && r != -ESTALE)
                goto fail;
        /* Quiet ones are answered only by later replies: ask for one. */
        while (c->quiet && !c->dead && !pipe_has_room(c, NULL)) {
                pthread_mutex_unlock(&c->lock);
                r = quiet_sync(c);
                pthread_mutex_lock(&c->lock);
                if (r < 0 && !c->dead && c->gen == gen)
                        goto fail;
        }
        if (!pipe_has_room(c, NULL))
                conn_await(c, pipe_has_room, NULL, conn_plain_deadline(c, &deadline) ? &deadline : NULL, true);
        if (c->gen != gen) {
                /* Made again meanwhile: its squaring gave them back, or they are gone (-ESTALE). */
                r = conn_revive(c, gen, false);
                conn_unlist(c, p);
                pthread_mutex_unlock(&c->lock);
                free(p);
                return r;
        }
        if (c->dead || !pipe_has_room(c, NULL)) {
                r = c->dead ? conn_fail_dead(c)
                            : client_fail(-ETIME, "allocd at %s answered none of %d requests within %u ms", c->path,
                                          PIPE_MAX, c->timeout_ms);
                goto fail;
        }
        req->has_id = true;
        req->id = p->id;
        if (c->quiet)
                set_quiet(req);
        len = allocd__request__get_packed_size(req);
        if (len > sizeof(buf)) {
                r = client_fail(-EMSGSIZE, "request too large for one packet (%zu bytes)", len);
                goto fail;
        }
        allocd__request__pack(req, buf);
        p->confirms = c->quiet_sent;
        p->pipelined = p->sending = true;
        c->npipelined++;
        r = conn_send(c, buf, len);
        p->sending = false;
        if (p->answered) {
                /* Refused already (it was sent): the refusal is filed, and the entry is out of the list. */
                free(p);
                r = 0;
        } else if (r == 0 && c->quiet && !p->renew) {
                p->sent = ++c->quiet_sent; /* a renew is always answered: its reply is its own */
        } else if (r == -EAGAIN) {
                c->npipelined--;
                r = client_fail(-ETIME, "allocd at %s took no request for %u ms; is it stopped or overloaded?", c->path,
                                c->timeout_ms);
                goto fail;
        } else if (conn_unsent(r) < 0) {
                c->npipelined--;
                goto fail;
        }
        if (r < 0) {
                /*
                 * The entry stays listed: the connection is over, and alloc_disconnect frees it, or a
                 * reconnect, whose squaring with allocd gives these regions back (reconnect.c).
                 */
                conn_die(c, r, "the connection to allocd is gone");
                r = conn_revive(c, gen, false);
        }
        pthread_mutex_unlock(&c->lock);
        return r;
fail:
        conn_unlist(c, p);
        if (p->renew)
                conn_spare_unlisted(c, p);
        held_add(c->held, ids, n); /* under the lock, as they were taken */
        pthread_mutex_unlock(&c->lock);
        free(p);
        return r;
}

int client_sync(struct alloc_client *c) {
        struct timespec deadline;
        uint64_t last;
        int r;

        if ((r = conn_forked(c)) < 0)
                return r;
        pthread_mutex_lock(&c->lock);
        last = c->next_id;
        /* A Sync's reply confirms the quiet ones sent before it; one still in wire_send waits for the next Sync. */
        while (c->quiet && !c->dead && unanswered(c, &last)) {
                pthread_mutex_unlock(&c->lock);
                r = quiet_sync(c);
                pthread_mutex_lock(&c->lock);
                if (r < 0)
                        break;
        }
        /* Only what was pipelined before this call: other threads' frees since are theirs to sync. */
        if (!c->quiet)
                conn_await(c, answered, &last, conn_plain_deadline(c, &deadline) ? &deadline : NULL, true);
        if (c->refused) {
                if (c->refused_more)
                        r = client_fail(c->refused, "%s (and %u more refused since)", c->refused_msg, c->refused_more);
                else
                        r = client_fail(c->refused, "%s", c->refused_msg);
                c->refused = 0;
                c->refused_more = 0;
        } else if (c->dead) {
                r = conn_revive(c, c->gen, false); /* the frees are given back by its squaring, or gone */
        } else if (r < 0) {
                /* The Sync itself failed, and alloc_last_error says how. */
        } else if (unanswered(c, &last)) {
                r = client_fail(-ETIME, "allocd at %s did not answer %u requests within %u ms", c->path, c->npipelined,
                                c->timeout_ms);
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}
