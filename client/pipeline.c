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
                                 r->message ? r->message : wire_error_name(r->error));
                }
        }
        free(p);
}

static bool pipe_has_room(const struct alloc_client *c, const void *arg) {
        (void)arg;
        return c->npipelined < PIPE_MAX;
}

static bool pipe_empty(const struct alloc_client *c, const void *arg) {
        (void)arg;
        return c->npipelined == 0;
}

int client_send_pipelined(struct alloc_client *c, Allocd__Request *req, const uint64_t *ids, size_t n) {
        uint8_t buf[WIRE_MAX_PACKET];
        struct pending *p = malloc(sizeof(*p) + n * sizeof(*ids));
        struct timespec deadline;
        size_t len;
        int r;

        if (!p) {
                held_add(c->held, ids, n);
                return client_fail(-ENOMEM, "out of memory");
        }
        *p = (struct pending){
                .what = req->body_case, .pipelined = true, .ids = memcpy(p + 1, ids, n * sizeof(*ids)), .n = n};
        pthread_mutex_lock(&c->lock);
        if (!pipe_has_room(c, NULL))
                conn_await(c, pipe_has_room, NULL, conn_plain_deadline(c, &deadline) ? &deadline : NULL);
        if (c->dead || !pipe_has_room(c, NULL)) {
                r = c->dead ? conn_fail_dead(c)
                            : client_fail(-ETIME, "allocd at %s answered none of %d requests within %u ms", c->path,
                                          PIPE_MAX, c->timeout_ms);
                goto fail;
        }
        req->has_id = true;
        req->id = p->id = ++c->next_id;
        len = allocd__request__get_packed_size(req);
        if (len > sizeof(buf)) {
                r = client_fail(-EMSGSIZE, "request too large for one packet (%zu bytes)", len);
                goto fail;
        }
        allocd__request__pack(req, buf);
        p->next = c->pending;
        c->pending = p;
        c->npipelined++;
        pthread_mutex_unlock(&c->lock);
        r = wire_send(c->fd, buf, len, NULL, 0, 0);
        pthread_mutex_lock(&c->lock);
        if (r == -EAGAIN) {
                conn_unlist(c, p);
                c->npipelined--;
                r = client_fail(-ETIME, "allocd at %s took no request for %u ms; is it stopped or overloaded?", c->path,
                                c->timeout_ms);
                goto fail;
        }
        if (r < 0) {
                /* The entry stays listed: the connection is over, and alloc_disconnect frees it. */
                conn_die(c, r, "the connection to allocd is gone");
                r = conn_fail_dead(c);
        }
        pthread_mutex_unlock(&c->lock);
        return r;
fail:
        pthread_mutex_unlock(&c->lock);
        held_add(c->held, ids, n);
        free(p);
        return r;
}

int client_sync(struct alloc_client *c) {
        struct timespec deadline;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        conn_await(c, pipe_empty, NULL, conn_plain_deadline(c, &deadline) ? &deadline : NULL);
        if (c->refused) {
                if (c->refused_more)
                        r = client_fail(c->refused, "%s (and %u more refused since)", c->refused_msg, c->refused_more);
                else
                        r = client_fail(c->refused, "%s", c->refused_msg);
                c->refused = 0;
                c->refused_more = 0;
        } else if (c->dead) {
                r = conn_fail_dead(c);
        } else if (c->npipelined) {
                r = client_fail(-ETIME, "allocd at %s did not answer %u requests within %u ms", c->path, c->npipelined,
                                c->timeout_ms);
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}
