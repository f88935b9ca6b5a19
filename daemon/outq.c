/* SPDX-License-Identifier: MIT */
/*
 * A connection's replies out (docs/ARCHITECTURE.md, "Connections"): they go
 * straight to the socket; when it is full they queue, with their fds.  While
 * a connection has OUT_PAUSE bytes queued, or OUT_FDS_PAUSE replies that each
 * hold an fd open in allocd, its requests are not read (it gets no more
 * replies until it reads the ones it has); past OUT_MAX bytes (only waiters'
 * outcomes can get it there) it is closed.  An fd sent is in flight until the
 * peer reads it, and the kernel caps allocd's user at RLIMIT_NOFILE of those,
 * all connections together: so a connection is sent at most FDS_IN_FLIGHT
 * packets with an fd that it may not have read, and then waits (not read
 * either) until its socket says it read them all.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "server.h"

#define OUT_PAUSE (64u << 10) /* queued reply bytes at which a connection's requests wait */
#define OUT_MAX (1u << 20)    /* queued reply bytes at which it is closed */
#define OUT_FDS_PAUSE 4       /* queued replies with an fd of their own at which its requests wait */
#define RETRY_MAX_MS 16       /* the longest the retry timer backs off to while no waiting connection moves */

struct packet {
        STAILQ_ENTRY(packet) link;
        size_t len;
        int fd;                 /* an fd to send beside it, or -1 */
        bool fd_owned;          /* fd is the packet's, closed once sent or dropped; else a pool's */
        uint64_t persist_grant; /* proto_out's: freed if the packet is never sent */
        uint8_t data[];
};

static uv_timer_t retry_timer; /* flushes the waiting connections (outq_set_waiting) */
static TAILQ_HEAD(, conn) waiting_conns = TAILQ_HEAD_INITIALIZER(waiting_conns);
static uint32_t retry_ms;
static bool refused_logged; /* a send with an fd failed and was said; again once one has gone since */

static void packet_free(struct packet *p) {
        if (p->fd_owned)
                close(p->fd);
        free(p);
}

/* The PERSIST grants c's queued replies carry will reach no one who gives them back (conn_unsent_grant). */
void outq_unsent(struct conn *c) {
        struct packet *p;

        STAILQ_FOREACH(p, &c->out, link) {
                conn_unsent_grant(c, p->persist_grant);
                p->persist_grant = 0;
        }
}

void outq_free(struct conn *c) {
        struct packet *p;

        while ((p = STAILQ_FIRST(&c->out))) {
                STAILQ_REMOVE_HEAD(&c->out, link);
                packet_free(p);
        }
}

bool outq_room(const struct conn *c) {
        return c->out_bytes < OUT_PAUSE && c->out_fds < OUT_FDS_PAUSE && !c->waiting;
}

static void retry_cb(uv_timer_t *t);

/*
 * Nothing tells allocd that a peer read a packet: its socket stays writable (a few small packets
 * are far from the send buffer's size), so UV_WRITABLE would fire at once, again and again.  One
 * timer retries every waiting connection instead, every millisecond while one moves, backing off
 * to RETRY_MAX_MS while none does, so that connections that never read cost little.
 */
void outq_set_waiting(struct conn *c, bool waiting) {
        if (c->waiting == waiting)
                return;
        c->waiting = waiting;
        if (waiting)
                TAILQ_INSERT_TAIL(&waiting_conns, c, wait_link);
        else
                TAILQ_REMOVE(&waiting_conns, c, wait_link);
        if (waiting && (retry_ms > 1 || !uv_is_active((uv_handle_t *)&retry_timer))) {
                /* Not pushed back by each new waiter: due within 1 ms already, it stays. */
                retry_ms = 1;
                uv_timer_start(&retry_timer, retry_cb, retry_ms, 0);
        } else if (!waiting && TAILQ_EMPTY(&waiting_conns)) {
                uv_timer_stop(&retry_timer);
        }
}

enum sent { SENT, FULL, WAIT, GONE }; /* FULL: until the socket is writable; WAIT: the retry timer's */

/* Sends a packet to c, and fd beside it unless it is -1. */
static enum sent send_packet(struct conn *c, const void *buf, size_t len, int fd) {
        int r, unread;

        if (fd >= 0 && c->sent_fds >= FDS_IN_FLIGHT) {
                /* For AF_UNIX, the bytes of the packets sent that the peer has not read yet. */
                if (ioctl(c->fd, SIOCOUTQ, &unread) == 0 && unread > 0)
                        return WAIT;
                c->sent_fds = 0;
        }
        r = wire_send(c->fd, buf, len, &fd, fd >= 0, MSG_DONTWAIT);
        if (r == 0) {
                c->sent_fds += fd >= 0;
                refused_logged &= fd < 0;
                return SENT;
        }
        if (r == -EAGAIN)
                return FULL;
        if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN)
                return GONE;
        /*
         * Not the peer's doing (ETOOMANYREFS: allocd's user has RLIMIT_NOFILE fds in flight, all
         * connections together): closing this connection would not help the next, so it waits.
         */
        if (!refused_logged) {
                refused_logged = true;
                logx(LOG_LEVEL_WARNING, CLIENT_CTX(&c->s.client),
                     "sending a reply to " CLIENT_FMT " failed: %s; it waits and is retried", CLIENT_ARGS(&c->s.client),
                     strerror(-r));
        }
        return WAIT;
}

/* Sends out's reply to c now, or queues it; a connection that cannot take it is closed. */
void outq_send(struct conn *c, const struct proto_out *o) {
        struct packet *p;

        if (c->state == CONN_CLOSING || o->len == 0)
                goto drop;
        if (STAILQ_EMPTY(&c->out)) {
                switch (send_packet(c, o->buf, o->len, o->fd)) {
                case SENT:
                        goto drop;
                case GONE:
                        conn_unsent_grant(c, o->persist_grant); /* it hung up: a queued Alloc's answer has no reader */
                        conn_close(c);
                        goto drop;
                case WAIT:
                        outq_set_waiting(c, true);
                        break;
                case FULL:
                        break;
                }
        }
        if (c->out_bytes + o->len > OUT_MAX) {
                logx(LOG_LEVEL_WARNING, CLIENT_CTX(&c->s.client),
                     CLIENT_FMT " leaves its replies unread (%zu bytes queued); disconnecting it",
                     CLIENT_ARGS(&c->s.client), c->out_bytes);
                conn_unsent_grant(c, o->persist_grant);
                conn_close(c);
                goto drop;
        }
        if (!(p = malloc(sizeof(*p) + o->len))) {
                conn_unsent_grant(c, o->persist_grant);
                conn_close(c);
                goto drop;
        }
        p->len = o->len;
        p->persist_grant = o->persist_grant;
        /* A pool's fd lives as long as the core, so a queued reply need not dup it; an owned one goes with it. */
        p->fd = o->fd;
        p->fd_owned = o->fd_owned;
        memcpy(p->data, o->buf, o->len);
        STAILQ_INSERT_TAIL(&c->out, p, link);
        c->out_bytes += p->len;
        c->out_fds += p->fd_owned;
        conn_events(c);
        return;
drop:
        if (o->fd_owned)
                close(o->fd);
}

/* Sends what c has queued, as far as it goes; returns whether anything went. */
bool outq_flush(struct conn *c) {
        struct packet *p;
        bool moved = false;
        enum sent r = SENT;

        while ((p = STAILQ_FIRST(&c->out)) && (r = send_packet(c, p->data, p->len, p->fd)) == SENT) {
                moved = true;
                STAILQ_REMOVE_HEAD(&c->out, link);
                c->out_bytes -= p->len;
                c->out_fds -= p->fd_owned;
                packet_free(p);
        }
        if (r == GONE || (c->bye && !p)) {
                conn_close(c);
                return moved;
        }
        outq_set_waiting(c, r == WAIT && p);
        conn_events(c);
        return moved;
}

static void retry_cb(uv_timer_t *t) {
        struct conn *c, *next;
        bool moved = false;

        /* Only the waiting ones: thousands of idle connections cost a timer that fires every millisecond nothing. */
        for (c = TAILQ_FIRST(&waiting_conns); c; c = next) {
                next = TAILQ_NEXT(c, wait_link); /* flush closes, or stops waiting, only c */
                moved |= outq_flush(c);
        }
        retry_ms = moved ? 1 : retry_ms * 2 < RETRY_MAX_MS ? retry_ms * 2 : RETRY_MAX_MS;
        if (!TAILQ_EMPTY(&waiting_conns))
                uv_timer_start(t, retry_cb, retry_ms, 0);
}

void outq_init(uv_loop_t *loop) {
        uv_timer_init(loop, &retry_timer);
}

void outq_close(void) {
        uv_close((uv_handle_t *)&retry_timer, NULL);
}
