/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client's connection to allocd.
 *
 * Threads share one socket.  Each request gets a fresh id and is sent whole
 * (a SEQPACKET send is one packet, so sends need no ordering beyond the
 * lock).  Replies are read by whichever waiting thread finds no one else
 * reading; it files each reply under its id and wakes the others, so a
 * thread waiting for memory does not hold up another's status call, and
 * requests from several threads are in flight at once.
 *
 * Timeouts: each request has a budget (the connection's timeout, plus the
 * wait an allocation asked for), so a stopped or wedged allocd costs a
 * caller -ETIME, not its thread.  A request that timed out stays in the
 * list as abandoned: allocd may still answer it, and its reply must be
 * consumed (a pool fd mapped, since allocd sends each pool's fd once), and a
 * region granted to no one given back, or the connection would hold memory
 * its owner never learned of.  A caller a signal interrupts (alloc_set_interrupt)
 * gives up the same way, and also sends allocd a Cancel of the request, so
 * that a wait with no deadline does not stay in allocd's queue.
 *
 * Pipelined requests (pipeline.c) are listed like any other, but no caller
 * waits for them: whoever reads next hands their replies to pipeline.c.
 * Reading and filing replies, spinning, and late replies to abandoned
 * requests are reader.c's; making and ending a connection is connect.c's;
 * the structures they share are in connection.h.
 *
 * Reconnecting (reconnect.c): each connection has a generation.  A call that
 * finds its connection lost, or made again by another thread while it
 * waited, takes its entry out and has conn_revive make the connection
 * again (once, whoever asks first); a request safe to repeat is then sent
 * again, at most RETRY_MAX times after a loss (a wait allocd cancelled as it
 * stopped, at each restart).  Sends happen without the lock, so a
 * reconnect waits for the senders (senders) and the reader to leave the old
 * socket before it closes it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "client-internal.h"
#include "connection.h"
#include "duration.h"
#include "wire.h"

/* Per thread, so that one thread's failure does not overwrite the words of another's. */
static __thread char last_error[CLIENT_ERROR_MAX];

int client_fail(int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(last_error, sizeof(last_error), fmt, ap);
        va_end(ap);
        return r;
}

void client_clear_error(void) {
        *last_error = '\0';
}

const char *alloc_last_error(void) {
        return last_error;
}

struct region_table *client_regions(struct alloc_client *c) {
        return c->regions;
}

struct pool_table *client_pools(struct alloc_client *c) {
        return c->pools;
}

struct held *client_held(struct alloc_client *c) {
        return c->held;
}

uint64_t client_afresh(struct alloc_client *c) {
        return atomic_load(&c->afresh);
}

/* Why the connection is unusable, as a call's failure. */
int conn_fail_dead(const struct alloc_client *c) {
        if (c->dead_said)
                return client_fail(c->dead, "%s", c->dead_msg);
        return client_fail(c->dead, "%s (%s)", c->dead_msg, strerror(-c->dead));
}

/* The connection is unusable from now on; every call reports why.  Lock held. */
void conn_die(struct alloc_client *c, int r, const char *why) {
        if (c->dead)
                return;
        /* However the socket says it, a peer that went away is one documented error. */
        if (r == -EPIPE || r == -ENOTCONN)
                r = -ECONNRESET;
        c->dead = r;
        snprintf(c->dead_msg, sizeof(c->dead_msg), "%s", why);
}

int conn_send(struct alloc_client *c, const void *buf, size_t len) {
        int fd = c->fd, r;

        c->senders++;
        pthread_mutex_unlock(&c->lock);
        r = wire_send(fd, buf, len, NULL, 0, 0);
        pthread_mutex_lock(&c->lock);
        if (--c->senders == 0 && c->sleepers)
                pthread_cond_broadcast(&c->cond); /* a reconnect may wait for this */
        return r;
}

int conn_unsent(int r) {
        if (r >= 0 || r == -EAGAIN || r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN)
                return 0;
        return client_fail(r, "sending the request to allocd failed (%s); it was not sent", strerror(-r));
}

/* Zeroing is counted at this rate, far below memset's even on a slow machine, so that it never times out. */
#define ZERO_BYTES_PER_S (128ull << 20)

/*
 * How long req may take, or false for no limit: the connection's timeout, plus, for an
 * allocation, the wait for room it asks for and the time its zeroing may take.  An allocation
 * that leaves its wait to allocd is given the wait_timeout Hello said, so that a reload that
 * changes it cannot make the two sides count different waits.
 */
static bool request_deadline(const struct alloc_client *c, Allocd__Request *req, struct timespec *ret) {
        uint64_t ms = c->timeout_ms;
        Allocd__Alloc *a = req->body_case == ALLOCD__REQUEST__BODY_ALLOC ? req->alloc : NULL;
        uint32_t flags = a && a->has_flags ? a->flags : 0;

        if (!ms || (flags & ALLOCD__FLAG__NOFAIL))
                return false;
        if (a && !(flags & ALLOCD__FLAG__NOWAIT)) {
                if (!a->has_timeout_ms || !a->timeout_ms) {
                        a->has_timeout_ms = true;
                        a->timeout_ms = c->wait_ms;
                }
                ms += a->timeout_ms;
        }
        if (req->body_case == ALLOCD__REQUEST__BODY_ATTACH && req->attach->has_timeout_ms)
                ms += req->attach->timeout_ms;
        if (a && (flags & ALLOCD__FLAG__ZERO)) {
                uint64_t n = a->has_count && a->count ? a->count : 1, size = a->has_size ? a->size : 0;
                ms += size > UINT64_MAX / n ? UINT32_MAX : size * n / ZERO_BYTES_PER_S * 1000 + 1000;
        }
        clock_gettime(CLOCK_MONOTONIC, ret);
        ret->tv_sec += (time_t)(ms / 1000);
        ret->tv_nsec += (long)(ms % 1000) * 1000000;
        if (ret->tv_nsec >= 1000000000) {
                ret->tv_sec++;
                ret->tv_nsec -= 1000000000;
        }
        return true;
}

/* Takes p out of the list of requests waiting for a reply; lock held. */
void conn_unlist(struct alloc_client *c, struct pending *p) {
        struct pending **pp;

        for (pp = &c->pending; *pp != p; pp = &(*pp)->next)
                ;
        *pp = p->next;
}

/* Lists an entry that takes allocd's answer to request id, which no caller waits for; lock held. */
static struct pending *list_abandoned(struct alloc_client *c, uint64_t id, Allocd__Request__BodyCase what) {
        struct pending *p = malloc(sizeof(*p));

        if (p) {
                *p = (struct pending){
                        .id = id, .what = what, .abandoned = true, .confirms = c->quiet_sent, .next = c->pending};
                c->pending = p;
        }
        return p;
}

/* me's caller gives up; lock held.  A copy takes its place in the list, to take allocd's late answer. */
static int abandon(struct alloc_client *c, struct pending *me, Allocd__Request__BodyCase what) {
        struct pending *p;

        conn_unlist(c, me);
        if (!(p = list_abandoned(c, me->id, what))) {
                /* A late grant could not be given back: the connection, and every region it holds, ends. */
                conn_die(c, -ENOMEM, "out of memory while giving up on a request");
                shutdown(c->fd, SHUT_RDWR);
                return client_fail(-ENOMEM, "out of memory");
        }
        p->confirms = me->confirms;
        return 0;
}

/*
 * A request that may wait in allocd (for room, for a name), abandoned because a signal interrupted
 * its caller: a Cancel ends the wait there, so that it does not count against the connection's
 * waiters until its deadline, or for ever.  Sent without blocking and listed as abandoned, so that
 * its answer (OK, or NOT_FOUND once the request was answered) is dropped; whether it was sent.
 * Lock held.
 */
static bool send_cancel(struct alloc_client *c, uint64_t id) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Cancel cancel = ALLOCD__CANCEL__INIT;
        uint8_t buf[64];
        struct pending *p;

        cancel.has_request = true;
        cancel.request = id;
        req.body_case = ALLOCD__REQUEST__BODY_CANCEL;
        req.cancel = &cancel;
        req.has_id = true;
        req.id = ++c->next_id;
        if (!(p = list_abandoned(c, req.id, req.body_case)))
                return false;
        /* A full socket leaves the wait in allocd until its deadline or the connection's end, no worse. */
        if (wire_send(c->fd, buf, allocd__request__pack(&req, buf), NULL, 0, MSG_DONTWAIT) < 0) {
                conn_unlist(c, p);
                free(p);
                return false;
        }
        return true;
}

/* The caller of request me, which waited for allocd's answer, gives up on a signal; lock held. */
static int interrupted(struct alloc_client *c, struct pending *me, Allocd__Request__BodyCase what) {
        bool waits = what == ALLOCD__REQUEST__BODY_ALLOC || what == ALLOCD__REQUEST__BODY_ATTACH;
        bool cancelled;
        int r;

        if ((r = abandon(c, me, what)) < 0)
                return r;
        cancelled = waits && c->cancel_ok && send_cancel(c, me->id);
        return client_fail(-EINTR, "interrupted by a signal while waiting for allocd's answer to %s%s",
                           what == ALLOCD__REQUEST__BODY_ALLOC    ? "an allocation"
                           : what == ALLOCD__REQUEST__BODY_ATTACH ? "an attach"
                                                                  : "a request",
                           cancelled ? " (allocd was asked to cancel it; a region it grants anyway is given back)"
                           : waits   ? " (a region allocd grants anyway is given back)"
                                     : "");
}

/*
 * Reads, or sleeps while another thread reads, until *done, the connection dies or deadline (NULL:
 * none) passes, or, where interruptible, c->interrupted, asked as the read waits, says to stop
 * (-EINTR; else 0); lock held.  done is a flag the reading thread sets: a reply filed, a count dropped.
 */
static int await(struct alloc_client *c, bool (*done)(const struct alloc_client *c, const void *arg), const void *arg,
                 const struct timespec *deadline, bool spin, bool interruptible) {
        bool expired = false;
        uint64_t gen = c->gen; /* a reconnect ends the wait: its requests have no reply coming */
        int k;

        while (!done(c, arg) && !c->dead && !expired && c->gen == gen) {
                if (!c->reading) {
                        if ((k = conn_read_one(c, deadline, spin, interruptible)) < 0)
                                return k;
                        expired = k == 0;
                } else {
                        c->sleepers++;
                        if (deadline)
                                expired = pthread_cond_timedwait(&c->cond, &c->lock, deadline) == ETIMEDOUT;
                        else
                                pthread_cond_wait(&c->cond, &c->lock);
                        c->sleepers--;
                }
        }
        return 0;
}

void conn_await(struct alloc_client *c, bool (*done)(const struct alloc_client *c, const void *arg), const void *arg,
                const struct timespec *deadline, bool spin) {
        await(c, done, arg, deadline, spin, false);
}

static bool replied(const struct alloc_client *c, const void *me) {
        (void)c;
        return ((const struct pending *)me)->reply != NULL;
}

/*
 * A request whose point is to wake other processes (a Seal; an Alloc that publishes a name at once)
 * is not spun for: a woken consumer needs a CPU, and one this side held spinning sends it to an idle
 * one, whose wake-up on a VM costs more than the round trip (docs/PERFORMANCE.md, the hand-off).
 */
static bool wakes_others(const Allocd__Request *req) {
        if (req->body_case == ALLOCD__REQUEST__BODY_SEAL)
                return true;
        return req->body_case == ALLOCD__REQUEST__BODY_ALLOC && req->alloc->name && *req->alloc->name &&
               !(req->alloc->flags & ALLOCD__FLAG__UNSEALED);
}

static bool never(const struct alloc_client *c, const void *arg) {
        (void)c;
        (void)arg;
        return false;
}

/*
 * A request allocd cancelled because it is stopping (a wait for room, for a name) is sent again to
 * the allocd that follows, if the connection is to be made again: once this one closes, which
 * allocd does as it stops.  Lock held; whether the connection was lost within the deadline.
 */
static bool stopping(struct alloc_client *c, const Allocd__Reply *r, const struct timespec *deadline, uint64_t gen) {
        if (!r->has_error || r->error != ALLOCD__ERROR__CANCELLED || !c->reconnect_ms || c->given_up)
                return false;
        if (c->gen == gen)
                conn_await(c, never, NULL, deadline, false);
        return c->dead || c->gen != gen;
}

#define RETRY_MAX 3

/*
 * A request sent again after a reconnect answers as the first sending would have: a Seal finds its
 * region sealed (INVALID); a give-back of regions the table did not hold (a PERSIST region's owner
 * frees it) finds them gone (NOT_FOUND; a FreeBatch allocd did is refused whole, one id at least
 * being unheld).  Give-backs of regions the table held are never sent again (reconnect.c).
 */
static void done_before(const Allocd__Request *req, Allocd__Reply *rep) {
        Allocd__Request__BodyCase what = req->body_case;

        if (!rep->has_error || rep->error == ALLOCD__ERROR__OK)
                return;
        if ((what == ALLOCD__REQUEST__BODY_SEAL && rep->error == ALLOCD__ERROR__INVALID) ||
            ((what == ALLOCD__REQUEST__BODY_FREE || what == ALLOCD__REQUEST__BODY_DETACH ||
              what == ALLOCD__REQUEST__BODY_FREE_BATCH) &&
             rep->error == ALLOCD__ERROR__NOT_FOUND))
                rep->error = ALLOCD__ERROR__OK;
}

/*
 * What reply grants the connection goes into the held table before the lock is let go, so that a
 * reconnect's squaring (under the lock) finds it there, not a reference too many to give back.
 */
static void hold_grants(struct alloc_client *c, const Allocd__Request *req, const Allocd__Reply *r) {
        Allocd__Request__BodyCase what = req->body_case;

        if (r->has_error && r->error != ALLOCD__ERROR__OK)
                return;
        if ((what == ALLOCD__REQUEST__BODY_ALLOC || what == ALLOCD__REQUEST__BODY_ATTACH) &&
            r->body_case == ALLOCD__REPLY__BODY_REGION && r->region && r->region->has_id)
                held_add(c->held, &r->region->id, 1);
        else if (what == ALLOCD__REQUEST__BODY_ALLOC_BATCH && r->body_case == ALLOCD__REPLY__BODY_BATCH)
                for (size_t i = 0, n = client_batch_size(r->batch); i < n; i++) {
                        Allocd__Region g = client_batch_region(r->batch, i);
                        if (g.has_id)
                                held_add(c->held, &g.id, 1);
                }
}

/*
 * A give-back of took[0, n) that did not happen, or may not have (r: refused, timed out, interrupted),
 * puts them back in the held table before the lock is let go: a reconnect squares the table with
 * allocd under the lock, and would give back (Free or Detach, by its own guess) what it finds
 * neither held nor in flight.  -ESTALE: nothing is held any more.  Lock held; returns r.
 */
static int restore(struct alloc_client *c, const uint64_t *took, size_t n, int r) {
        if (r < 0 && r != -ESTALE && n)
                held_add(c->held, took, n);
        return r;
}

/*
 * client_call; a give-back of ids[0, n) takes them out of the held table as it is listed (*taken),
 * and is then not sent again; refused or not known, it is put back (restore), unless forsake: no
 * caller holds them, and a reconnect's squaring is to give back what allocd still holds of them.
 */
static int call(struct alloc_client *c, Allocd__Request *req, const uint64_t *ids, size_t n, bool *taken, bool forsake,
                Allocd__Reply **ret, struct map_error *map) {
        const uint64_t *took = NULL;
        size_t ntaken = 0;
        uint8_t buf[WIRE_MAX_PACKET];
        struct pending me;
        struct timespec deadline;
        bool timed, intr;
        int again = 0; /* times sent again after a reconnect */
        int lost = 0;  /* of them, after a loss: a request that brings allocd down is not sent forever */
        uint64_t gen;
        size_t len;
        int r = 0;

        *ret = NULL;
        if (map)
                map->err = 0;
        if ((r = conn_forked(c)) < 0)
                return r;
        pthread_mutex_lock(&c->lock);
        if (ids && (*taken = held_take(c->held, ids, n))) {
                took = ids;
                ntaken = n;
        }
retry:
        me = (struct pending){.what = req->body_case, .ids = took, .n = ntaken, .forsaken = forsake};
        gen = c->gen;
        req->has_id = true;
        req->id = me.id = ++c->next_id;
        /*
         * Listed from here on, so whoever reads finds it, and a reconnect counts what it gives back as
         * given (reconnect.c); sent without the lock, so a full socket holds up no other thread (a
         * SEQPACKET send is one packet, whole or not at all, whoever else sends), and SO_SNDTIMEO
         * bounds it.
         */
        me.next = c->pending;
        c->pending = &me;
        /* A connection lost before this call is made again first, or says why not. */
        if (c->dead && ((r = conn_revive(c, gen, true)) < 0 || ntaken)) {
                conn_unlist(c, &me);
                goto out; /* 0 with ntaken: the squaring gave them back */
        }
        gen = c->gen;
        timed = request_deadline(c, req, &deadline); /* before packing: it may state an allocation's wait */
        len = allocd__request__get_packed_size(req);
        if (len > sizeof(buf)) {
                conn_unlist(c, &me);
                r = client_fail(-EMSGSIZE, "request too large for one packet (%zu bytes)", len);
                goto out;
        }
        allocd__request__pack(req, buf);
        me.confirms = c->quiet_sent;
        r = conn_send(c, buf, len);
        if (r == -EAGAIN) {
                conn_unlist(c, &me);
                r = client_fail(-ETIME, "allocd at %s took no request for %u ms; is it stopped or overloaded?", c->path,
                                c->timeout_ms);
                goto out;
        }
        if (conn_unsent(r) < 0) {
                conn_unlist(c, &me);
                goto out;
        }
        if (r < 0) {
                /* allocd may have said why it closed (a refused connection): that beats EPIPE. */
                if (!c->reading && c->gen == gen)
                        conn_read_one(c, timed ? &deadline : NULL, false, false);
                if (c->gen == gen)
                        conn_die(c, r, "the connection to allocd is gone");
        }
        intr = await(c, replied, &me, timed ? &deadline : NULL, !wakes_others(req), true) < 0;
        if (c->gen != gen || (!me.reply && c->dead)) {
                /*
                 * Lost with the connection: made again, it is sent again if that is safe.  Listed while
                 * the squaring runs, so that what it took from the table is given back there, once.  A
                 * reply read before another thread made it again is lost too: the squaring did not know
                 * of it, and gave back what it granted.
                 */
                r = conn_revive(c, gen, true);
                conn_unlist(c, &me);
                /*
                 * allocd's answer to a give-back, read before the reconnect, is the answer still: the
                 * squaring did not count the regions given (reconnect.c), and put back those it refused.
                 */
                if (me.reply && ntaken && r != -ESTALE) {
                        *ret = me.reply;
                        if (client_reply_error(me.reply) < 0 && !me.restored && !forsake)
                                held_add(c->held, took, ntaken);
                        pthread_mutex_unlock(&c->lock);
                        return 0;
                }
                /*
                 * A reply another thread read meanwhile is stale: the squaring has given back what it
                 * grants, and the mapping of its region (isolation = region) goes with it.
                 */
                if (me.reply) {
                        if (me.map.region_mapped)
                                region_table_drop(c->regions, me.reply->region->id);
                        allocd__reply__free_unpacked(me.reply, NULL);
                }
                if (r == 0 && ntaken)
                        goto out; /* no reply: allocd did it, or the squaring did */
                if (r == 0 && conn_retry_safe(req) && lost < RETRY_MAX) {
                        lost++;
                        again++;
                        goto retry;
                }
                if (r == 0)
                        r = client_fail(-ECONNRESET,
                                        "the connection to allocd was lost while this request was in flight and made "
                                        "again; whether allocd did it is not known");
                goto out;
        }
        if (!me.reply) {
                if (intr)
                        r = interrupted(c, &me, req->body_case);
                else if ((r = abandon(c, &me, req->body_case)) == 0)
                        r = client_fail(-ETIME,
                                        "allocd at %s did not answer within %u ms (beyond any wait for room the "
                                        "request asked for); is it stopped or overloaded? (the timeout is "
                                        "ALLOCD_TIMEOUT or alloc_set_timeout)",
                                        c->path, c->timeout_ms);
                goto out;
        }
        conn_unlist(c, &me);
        /* Not counted: allocd said it stops (a restart each time, not a request that brings it down). */
        if (conn_retry_safe(req) && stopping(c, me.reply, timed ? &deadline : NULL, gen)) {
                allocd__reply__free_unpacked(me.reply, NULL);
                if ((r = conn_revive(c, gen, true)) < 0)
                        goto out;
                again++;
                goto retry;
        }
        *ret = me.reply;
        if (again)
                done_before(req, me.reply);
        hold_grants(c, req, me.reply);
        if (ntaken && !forsake && me.reply->has_error && me.reply->error != ALLOCD__ERROR__OK)
                held_add(c->held, took, ntaken); /* refused: still held (restore) */
        /* Only a failure has words to copy: the message buffer is most of the struct. */
        if (map && (map->err = me.map.err) < 0)
                memcpy(map->msg, me.map.msg, sizeof(map->msg));
        pthread_mutex_unlock(&c->lock);
        return 0;
out:
        restore(c, took, forsake ? 0 : ntaken, r);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int client_call(struct alloc_client *c, Allocd__Request *req, Allocd__Reply **ret, struct map_error *map) {
        return call(c, req, NULL, 0, NULL, false, ret, map);
}

int client_give_back_sync(struct alloc_client *c, Allocd__Request *req, const uint64_t *ids, size_t n, bool *taken,
                          bool forsake) {
        Allocd__Reply *reply;
        int r = call(c, req, ids, n, taken, forsake, &reply, NULL);

        if (r < 0 || !reply)
                return r;
        r = client_reply_error(reply);
        allocd__reply__free_unpacked(reply, NULL);
        return r;
}

/* The connection's own deadline from now, for requests that wait for no room; false for none. */
bool conn_plain_deadline(const struct alloc_client *c, struct timespec *ret) {
        Allocd__Request status = ALLOCD__REQUEST__INIT;

        status.body_case = ALLOCD__REQUEST__BODY_STATUS;
        return request_deadline(c, &status, ret);
}

const char *client_reply_words(const Allocd__Reply *r) {
        /* An empty message is no words: the error's name at least says what allocd refused. */
        return r->message && *r->message ? r->message : wire_error_name(r->error);
}

int client_reply_error(const Allocd__Reply *r) {
        if (!r->has_error || r->error == ALLOCD__ERROR__OK)
                return 0;
        return client_fail(-wire_error_errno(r->error), "%s", client_reply_words(r));
}

int client_call_for(struct alloc_client *c, Allocd__Request *req, Allocd__Reply__BodyCase body, const char *what,
                    Allocd__Reply **ret) {
        int r = client_call(c, req, ret, NULL);

        if (r < 0)
                return r;
        if ((r = client_reply_error(*ret)) == 0 && (*ret)->body_case != body)
                r = client_fail(-EPROTO, "allocd answered %s with something else", what);
        if (r < 0) {
                allocd__reply__free_unpacked(*ret, NULL);
                *ret = NULL;
        }
        return r;
}
