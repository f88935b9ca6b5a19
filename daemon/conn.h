/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_CONN_H
#define ALLOCD_CONN_H

/*
 * A connection, as server.c (requests, the loop turn), outq.c (replies out, backpressure) and
 * accept.c (accepting, the Hello deadline, the listening socket) share it; nothing else sees it.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <uv.h>

#include "core.h"
#include "proto.h"

enum conn_state { CONN_HANDSHAKE, CONN_READY, CONN_REFUSED, CONN_CLOSING };

struct packet;

struct conn {
        struct session s; /* s.client is the core's once in_core */
        uv_poll_t poll;
        int fd;
        enum conn_state state;
        bool in_core;
        uint64_t joined; /* on accept.c's deadline list: uv_now() when it joined */
        STAILQ_HEAD(, packet) out;
        size_t out_bytes;
        uint32_t out_fds;  /* queued replies that carry an fd of their own (an isolation = region region's) */
        uint32_t sent_fds; /* packets with an fd sent since its peer was last seen to have read all (FDS_IN_FLIGHT) */
        bool waiting;      /* its next packet waits for its peer to read, or for a refused send to be retried */
        uint32_t busy;     /* zeroing jobs that will answer on this connection */
        bool bye;          /* said Goodbye and is released: closed once its queued replies are out, read no more */
        bool lingering;    /* bye with replies queued: on accept.c's deadline list, closed at hello_timeout */
        TAILQ_ENTRY(conn) link, hs_link, wait_link; /* wait_link: while waiting */
};

/* server.c: c, made by accept.c, joins the served connections (refused ones too, until they go). */
void conn_start(struct conn *c);
void conn_close(struct conn *c);
void conn_error_reply(struct conn *c, uint64_t id, int code, const char *msg);
/* Polls c for what it can do now: read unless paused (outq.c's room), write while replies queue. */
void conn_events(struct conn *c);
/* A PERSIST region granted in a reply c's client never got goes as its Free would. */
void conn_unsent_grant(struct conn *c, uint64_t id);

/* outq.c */
void outq_init(uv_loop_t *loop);
void outq_close(void);
/* Sends o's reply to c now, or queues it; a connection that cannot take it is closed. */
void outq_send(struct conn *c, const struct proto_out *o);
/* Sends what c has queued, as far as it goes; whether anything went.  Closes c once it said Goodbye and all went. */
bool outq_flush(struct conn *c);
/* Whether c's queue leaves room for more replies, so that its requests are read. */
bool outq_room(const struct conn *c);
/* c waits for its peer to read (or a refused send's retry): the retry timer flushes it, not the poll. */
void outq_set_waiting(struct conn *c, bool waiting);
void outq_unsent(struct conn *c);
void outq_free(struct conn *c);

/* accept.c */
void accept_init(uv_loop_t *loop, struct core *core, void (*changed)(void));
/* c leaves HANDSHAKE or REFUSED (said Hello, or closing), or stops lingering (closing): off the deadline list. */
void accept_handshake_done(struct conn *c);
/* c said Goodbye with replies queued: closed if they are not all read within hello_timeout. */
void accept_linger(struct conn *c);
/* A connection closed: its fd may be what a paused accept waits for. */
void accept_fd_freed(void);
/*
 * Tells the client of fd why it is refused (an unsolicited reply, id 0, code and msg) without
 * waiting; what it sent is read first, since a socket closed with unread packets resets and the
 * client would see ECONNRESET before the reason.  The caller closes fd.
 */
void accept_refuse_now(int fd, int code, const char *msg);
/* Stops listening, removes the socket file we made, closes the timers. */
void accept_stop(void);

#endif
