/* SPDX-License-Identifier: MIT */
/*
 * Connections (docs/ARCHITECTURE.md, "Connections").  libuv cannot carry
 * arbitrary fds on its streams (libuv#1587), so the listening socket and
 * every connection are raw non-blocking fds under a uv_poll_t, read and
 * written with recvmsg/sendmsg (common/wire.c); the socket itself is made or
 * checked in listen.c.
 *
 * Every connection is on one list, in one state:
 *   HANDSHAKE  accepted, counted against the limits, waiting for Hello;
 *   READY      said Hello (and, bye, Goodbye: released, closed once its replies are out);
 *   REFUSED    over a connection limit, told why, kept until it reads it;
 *   CLOSING    being torn down.
 * Accepting, the Hello deadline and the listening socket are accept.c's.
 *
 * Replies out, and their backpressure, are outq.c's.
 *
 * Once per loop turn (a uv_check) the core runs its deferred work and each
 * outcome is answered; one timer follows the core's earliest waiter deadline.
 * Retrying waiters stops after a slice (core_run) and goes on in the next turn,
 * with an idle handle keeping the loop from sleeping meanwhile, so that
 * requests are read between slices however costly the waiters are to try.
 * After each request the loop stays awake for allocd.conf's spin (awake.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "awake.h"
#include "conn.h"
#include "grace.h"
#include "log.h"
#include "proto.h"
#include "server.h"

#define READ_BURST 32 /* requests served from one connection before the loop moves on */

TAILQ_HEAD(conn_list, conn);

struct zero_work {
        uv_work_t work;
        struct conn *conn;
        uint32_t slot;
        uint64_t req_id;
        struct zero_job job;
        int result;
        bool cancelled; /* its client sent a Cancel of it: the region goes when done, the answer CANCELLED */
        LIST_ENTRY(zero_work) link;
};

static uv_loop_t *loop;
static struct core *core;
static void (*changed)(void);
static struct conn_list conns = TAILQ_HEAD_INITIALIZER(conns);
static uint32_t nconns, njobs; /* njobs: zeroing jobs in flight */
/* Those jobs, for a Cancel to find. */
static LIST_HEAD(, zero_work) zeroing = LIST_HEAD_INITIALIZER(zeroing);
static void (*turn_end)(void);
static bool served, dirty; /* this turn answered a request; something else changed (server_changed) */
static uv_check_t turn;
static uv_idle_t more; /* running while the core broke off its waiters for the next turn: poll does not block */
static uv_timer_t wait_timer;
static bool kept_at_stop;    /* the stop kept the state: connections closing now keep their references there */
static struct proto_out out; /* one reply at a time: the loop is single-threaded */

static void conn_cb(uv_poll_t *h, int status, int events);

uint32_t server_nconns(void) {
        return nconns;
}

uint32_t server_jobs(void) {
        return njobs;
}

/* ---- lifecycle ---- */

static void conn_free(struct conn *c) {
        outq_free(c);
        session_clear(&c->s);
        free(c);
}

static void conn_handle_closed(uv_handle_t *h) {
        struct conn *c = h->data;

        close(c->fd);
        c->fd = -1;
        if (c->busy == 0)
                conn_free(c);
}

/* Whether c's requests are read: not while it leaves its replies unread (backpressure). */
static bool conn_reading(const struct conn *c) {
        return outq_room(c) && !c->bye;
}

void conn_events(struct conn *c) {
        int ev = UV_DISCONNECT;

        if (c->state == CONN_CLOSING)
                return;
        if (conn_reading(c))
                ev |= UV_READABLE;
        if (!STAILQ_EMPTY(&c->out) && !c->waiting)
                ev |= UV_WRITABLE;
        uv_poll_start(&c->poll, ev, conn_cb);
}

/*
 * A PERSIST region whose grant did not reach its client: no one knows its id, so nothing would
 * ever free it.  It goes as the client's Free would (the connection is closing; its hold goes too).
 * After a Goodbye (bye) the client is out of the core, but its uid still frees its PERSIST region.
 */
void conn_unsent_grant(struct conn *c, uint64_t id) {
        struct core_result res;

        if (!id || !(c->in_core || c->bye) || core_free_region(core, &c->s.client, id, &res) != E_OK)
                return;
        logx(LOG_LEVEL_INFO, CLIENT_CTX(&c->s.client),
             CLIENT_FMT " went before PERSIST region %" PRIu64 " reached it; freed", CLIENT_ARGS(&c->s.client), id);
}

/* c's references go and its waits end (or stay in a state a stop keeps), kept so; bye: core_client_bye. */
static void leave_core(struct conn *c, const char *how, bool bye) {
        uint32_t n = c->s.client.nrefs;

        if (!c->in_core)
                return;
        (bye ? core_client_bye : core_client_remove)(core, &c->s.client);
        c->in_core = false;
        c->bye = bye;
        logx(n ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, CLIENT_CTX(&c->s.client), CLIENT_FMT "%s%s %s; %u %s %s",
             CLIENT_ARGS(&c->s.client), *c->s.client.name ? " " : "", c->s.client.name, how, n,
             plural(n, "reference", "references"),
             kept_at_stop ? "kept in the fd store for its reconnection" : "released");
}

void conn_close(struct conn *c) {
        if (c->state == CONN_CLOSING)
                return;
        outq_unsent(c);
        if (c->state == CONN_HANDSHAKE || c->state == CONN_REFUSED || c->lingering)
                accept_handshake_done(c);
        outq_set_waiting(c, false);
        c->state = CONN_CLOSING;
        TAILQ_REMOVE(&conns, c, link);
        nconns--;
        leave_core(c, "disconnected", false);
        if (c->bye)
                core_client_gone(core, c->s.client.uid);
        uv_poll_stop(&c->poll);
        uv_close((uv_handle_t *)&c->poll, conn_handle_closed);
        accept_fd_freed();
        changed();
}

void conn_error_reply(struct conn *c, uint64_t id, int code, const char *msg) {
        proto_error(&out, id, code, msg);
        out.fd = -1;
        out.fd_owned = false;
        outq_send(c, &out);
}

/* ---- zeroing off the loop thread ---- */

static void zero_work(uv_work_t *w) {
        struct zero_work *z = w->data;

        z->result = core_zero_run(&z->job);
}

static void act(struct conn *c);
static void run_core(void);

static void zero_done(uv_work_t *w, int status) {
        struct zero_work *z = w->data;
        struct conn *c = z->conn;
        bool live = c->in_core;

        njobs--;
        LIST_REMOVE(z, link);
        if (status < 0 && z->result == 0)
                z->result = status;
        proto_zeroed(core, live ? &c->s : NULL, z->slot, z->req_id, z->cancelled ? -ECANCELED : z->result, &out);
        if (live)
                act(c);
        if (--c->busy == 0 && c->state == CONN_CLOSING && c->fd < 0)
                conn_free(c);
        free(z);
        changed();
}

static void start_zeroing(struct conn *c, uint32_t slot, uint64_t req_id) {
        struct zero_work *z = malloc(sizeof(*z));

        if (z) {
                *z = (struct zero_work){.conn = c, .slot = slot, .req_id = req_id};
                core_zero_job(core, slot, &z->job);
                z->work.data = z;
                if (uv_queue_work(loop, &z->work, zero_work, zero_done) == 0) {
                        c->busy++;
                        njobs++;
                        LIST_INSERT_HEAD(&zeroing, z, link);
                        return;
                }
                free(z);
        }
        proto_zeroed(core, &c->s, slot, req_id, -ENOMEM, &out);
        act(c);
}

/*
 * A Cancel of c's request req_id, which is no waiter: one whose region is being zeroed ends too, so
 * that nothing is granted after the Cancel's answer (alloc_disconnect's Goodbye follows it).  Of
 * several under one id it ends the oldest, as of several waiting (docs/protocol.md): the list is
 * newest first, so the last match.
 */
static bool cancel_zeroing(struct conn *c, uint64_t req_id) {
        struct zero_work *z, *oldest = NULL;

        LIST_FOREACH(z, &zeroing, link) {
                if (z->conn == c && z->req_id == req_id && !z->cancelled)
                        oldest = z;
        }
        if (oldest)
                oldest->cancelled = true;
        return oldest != NULL;
}

/* Does what the protocol layer asked for in out. */
static void act(struct conn *c) {
        if (out.zero) {
                out.zero = false;
                start_zeroing(c, out.slot, out.req_id);
                return;
        }
        if (out.reclaimed)
                grace_reclaimed(out.reclaimed);
        if (out.cancel && cancel_zeroing(c, out.cancel))
                proto_error(&out, out.req_id, E_OK, NULL);
        /*
         * A Goodbye's OK says the release is kept (no restart brings it back); queued replies go first (bye).
         * A PERSIST grant among them was not sent when the client sent its Goodbye, so the client never
         * gave it back: it goes now, as at a hang-up (the reply still goes, naming a region that is gone).
         */
        if (out.goodbye) {
                leave_core(c, "said goodbye", true);
                outq_unsent(c);
                changed();
        }
        outq_send(c, &out);
        if (out.goodbye && c->state != CONN_CLOSING && !STAILQ_EMPTY(&c->out)) {
                conn_events(c); /* not readable any more: level-triggered, unread requests would wake it at once */
                accept_linger(c);
        } else if (out.close)
                conn_close(c);
}

/* ---- in ---- */

/*
 * The connections a Disconnect marked: each is told why, as far as its socket takes it now, and closed,
 * its requests unread drained first as a refusal's are (a SEQPACKET peer closed with packets unread
 * reports a reset to the client before what was sent it, and its library would reconnect).
 */
static void close_evicted(void) {
        struct conn *c, *next;

        for (c = TAILQ_FIRST(&conns); c; c = next) {
                next = TAILQ_NEXT(c, link);
                if (!c->in_core || !c->s.client.evicted)
                        continue;
                accept_refuse_now(c->fd, E_DISCONNECTED,
                                  "an operator disconnected this connection (allocctl disconnect); its regions were "
                                  "released");
                conn_close(c);
        }
}

/*
 * Whether the peer of a socket that read 0 bytes hung up: a packet of 0 bytes (an empty Request,
 * as protobuf packs one) reads as 0 too.
 */
static bool hung_up(int fd) {
        struct pollfd p = {.fd = fd, .events = POLLRDHUP};

        return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void serve(struct conn *c) {
        static uint8_t buf[WIRE_MAX_PACKET];
        static _Alignas(16) uint8_t arena[16384]; /* the loop is single-threaded: one message at a time */

        for (int i = 0; i < READ_BURST && c->state != CONN_CLOSING && conn_reading(c); i++) {
                size_t nfds = 0;
                ssize_t n;

                /*
                 * A request's timeout counts from its reading: the loop's time is the poll's, and allocd
                 * may have been descheduled or stopped (SIGSTOP) since, the request sent meanwhile.
                 */
                uv_update_time(loop);
                core_set_now(core, uv_now(loop));

                /*
                 * A peer gone before its Hello is read is not served: a reclaim from a socket its client
                 * gave up on, queued while allocd was down, would release what the client still maps
                 * at the hang-up (docs/protocol.md, "Reconnecting").
                 */
                if (c->state == CONN_HANDSHAKE && hung_up(c->fd))
                        return conn_close(c);
                n = wire_recv(c->fd, buf, sizeof(buf), NULL, &nfds, MSG_DONTWAIT);

                if (n == -EAGAIN)
                        return;
                if (n == -ENOBUFS) {
                        conn_error_reply(
                                c, 0, E_PROTOCOL,
                                "requests carry no file descriptors; the ones sent were closed and the request "
                                "ignored");
                        continue;
                }
                if (n == -EMSGSIZE) {
                        char msg[96];
                        snprintf(msg, sizeof(msg), "packet over the %d-byte limit; closing", WIRE_MAX_PACKET);
                        conn_error_reply(c, 0, E_PROTOCOL, msg);
                        return conn_close(c);
                }
                if (n < 0 || (n == 0 && hung_up(c->fd)) || c->state == CONN_REFUSED)
                        return conn_close(c); /* hung up, or refused and told why already */
                /*
                 * Room an earlier request freed goes to the waiters first, not to whoever asks next; but while
                 * the core has a pass broken off (costly waiters), the turn's slice is all they get, and
                 * requests are served meanwhile.
                 */
                if (core_pending(core) && !core_yielded(core)) {
                        run_core();
                        if (c->state == CONN_CLOSING)
                                return;
                }
                proto_request(core, &c->s, buf, (size_t)n, arena, sizeof(arena), &out);
                if (c->state == CONN_HANDSHAKE && c->s.hello) {
                        accept_handshake_done(c);
                        c->state = CONN_READY;
                }
                act(c);
                if (core_evictions(core)) {
                        close_evicted();
                        grace_sweep();
                }
                awake_served(core_limits(core)->spin_us);
                served = true;
        }
}

static void conn_cb(uv_poll_t *h, int status, int events) {
        struct conn *c = h->data;

        if (status < 0)
                return conn_close(c);
        if (events & UV_WRITABLE)
                (void)outq_flush(c);
        if (c->state != CONN_CLOSING && (events & (UV_READABLE | UV_DISCONNECT)))
                serve(c);
        if (c->state != CONN_CLOSING && (events & UV_DISCONNECT) && !(events & UV_READABLE))
                conn_close(c);
}

void conn_start(struct conn *c) {
        TAILQ_INSERT_TAIL(&conns, c, link);
        nconns++;
        conn_events(c);
}

/* ---- once per loop turn ---- */

static void wait_timer_cb(uv_timer_t *t) {
        (void)t; /* the turn that follows runs the core, which expires what is due */
}

static void arm_wait_timer(void) {
        uint64_t d = core_next_deadline(core), now = uv_now(loop);

        if (d == UINT64_MAX)
                uv_timer_stop(&wait_timer);
        else
                uv_timer_start(&wait_timer, wait_timer_cb, d > now ? d - now : 0, 0);
}

static void more_cb(uv_idle_t *h) {
        (void)h; /* the turn's check runs the core again */
}

static void run_core(void) {
        struct core_done d;

        core_set_now(core, uv_now(loop));
        /* Answering can close a connection, which can make a pool ready: run again, or that waits for an event. */
        do {
                core_run(core);
                while (core_done_pop(core, &d)) {
                        struct conn *c = (struct conn *)((char *)d.client - offsetof(struct conn, s.client));
                        proto_done(core, &c->s, &d, &out);
                        act(c);
                        changed();
                }
        } while (core_pending(core) && !core_yielded(core));
        if (core_yielded(core))
                uv_idle_start(&more, more_cb);
        else
                uv_idle_stop(&more);
        arm_wait_timer();
}

static void turn_cb(uv_check_t *h) {
        (void)h;
        run_core();
        if (turn_end && (served || dirty))
                turn_end();
        served = dirty = false;
}

void server_on_turn(void (*fn)(void)) {
        turn_end = fn;
}

void server_changed(void) {
        dirty = true;
}

/* ---- set-up and stop ---- */

void server_init(uv_loop_t *l, struct core *c, void (*changed_cb)(void)) {
        loop = l;
        core = c;
        changed = changed_cb;
        uv_check_init(loop, &turn);
        uv_check_start(&turn, turn_cb);
        uv_idle_init(loop, &more);
        uv_timer_init(loop, &wait_timer);
        outq_init(loop);
        accept_init(loop, core, changed);
        awake_init(loop);
        grace_init(loop, core, changed);
}

void server_stop(bool kept) {
        struct zero_work *z;
        struct conn *c;

        kept_at_stop = kept;
        accept_stop();
        /* Waiters are told before anyone's regions go, so none is granted room that a hang-up made. */
        core_cancel_waiters(core, "allocd is stopping");
        run_core();
        /*
         * An Alloc whose region is being zeroed waits as one for room does, and is told the same: its
         * region goes with this allocd (it is no one's yet, not in the kept state), and its client
         * sends it again to the next one.  zero_done, should it still run, finds the client gone.
         */
        LIST_FOREACH(z, &zeroing, link) {
                if (!z->cancelled && z->conn->in_core) {
                        z->cancelled = true;
                        conn_error_reply(z->conn, z->req_id, E_CANCELLED, "allocd is stopping");
                }
        }
        while ((c = TAILQ_FIRST(&conns))) {
                (void)outq_flush(c);
                conn_close(c);
        }
        uv_check_stop(&turn);
        uv_close((uv_handle_t *)&turn, NULL);
        uv_idle_stop(&more);
        uv_close((uv_handle_t *)&more, NULL);
        uv_close((uv_handle_t *)&wait_timer, NULL);
        outq_close();
        awake_close();
        grace_close();
}
