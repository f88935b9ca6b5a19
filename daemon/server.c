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
 *   READY      said Hello;
 *   REFUSED    over a connection limit: told why at once (an id-0 error) and
 *              kept only until it speaks, its Hello deadline, or stop, so
 *              that it reads the reason before it sees the socket close;
 *   CLOSING    being torn down.
 * HANDSHAKE and REFUSED connections also sit, in accept order, on a deadline
 * list that one timer sweeps: a client that never says Hello is closed.
 *
 * Out: replies go straight to the socket; when it is full they queue, with
 * their fds.  While a connection has OUT_PAUSE bytes queued its requests are
 * not read (it gets no more replies until it reads the ones it has); past
 * OUT_MAX bytes (only waiters' outcomes can get it there) it is closed.
 *
 * Once per loop turn (a uv_check) the core runs its deferred work and each
 * outcome is answered; one timer follows the core's earliest waiter deadline.
 * After each request the loop stays awake for allocd.conf's spin (awake.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "awake.h"
#include "grace.h"
#include "listen.h"
#include "log.h"
#include "text.h"
#include "proto.h"
#include "server.h"

#define OUT_PAUSE (64u << 10) /* queued reply bytes at which a connection's requests wait */
#define OUT_MAX (1u << 20)    /* queued reply bytes at which it is closed */
#define READ_BURST 32         /* requests served from one connection before the loop moves on */
#define REFUSED_MAX 16        /* refused connections kept just long enough to read why */
#define ACCEPT_PAUSE_MS 100   /* out of fds: accept again after this, or when a connection closes */

enum conn_state { CONN_HANDSHAKE, CONN_READY, CONN_REFUSED, CONN_CLOSING };

struct packet {
        STAILQ_ENTRY(packet) link;
        size_t len;
        int fd;                 /* an fd to send beside it, or -1 */
        bool fd_owned;          /* fd is the packet's, closed once sent or dropped; else a pool's */
        uint64_t persist_grant; /* proto_out's: freed if the packet is never sent */
        uint8_t data[];
};

struct conn {
        struct session s; /* s.client is the core's once in_core */
        uv_poll_t poll;
        int fd;
        enum conn_state state;
        bool in_core;
        uint64_t deadline; /* HANDSHAKE, REFUSED: closed at this uv_now() */
        STAILQ_HEAD(, packet) out;
        size_t out_bytes;
        uint32_t busy; /* zeroing jobs that will answer on this connection */
        TAILQ_ENTRY(conn) link, hs_link;
};
TAILQ_HEAD(conn_list, conn);

struct zero_work {
        uv_work_t work;
        struct conn *conn;
        uint32_t slot;
        uint64_t req_id;
        struct zero_job job;
        int result;
};

static uv_loop_t *loop;
static struct core *core;
static void (*changed)(void);
static struct conn_list conns = TAILQ_HEAD_INITIALIZER(conns);
static struct conn_list handshakes = TAILQ_HEAD_INITIALIZER(handshakes); /* HANDSHAKE and REFUSED, oldest first */
static uint32_t nconns, nrefused, njobs;                                 /* njobs: zeroing jobs in flight */
static uint64_t next_serial = 1;
static void (*turn_end)(void);
static bool served, dirty; /* this turn answered a request; something else changed (server_changed) */
static uv_check_t turn;
static uv_timer_t wait_timer, hello_timer, accept_timer;
static bool accept_paused, stopping;
static uv_poll_t listen_poll;
static int listen_fd = -1;
static char *bound_path;     /* the socket file we made, removed at stop */
static struct proto_out out; /* one reply at a time: the loop is single-threaded */

static void conn_cb(uv_poll_t *h, int status, int events);
static void listen_cb(uv_poll_t *h, int status, int events);

uint32_t server_nconns(void) {
        return nconns;
}

uint32_t server_jobs(void) {
        return njobs;
}

/* ---- lifecycle ---- */

static void packet_free(struct packet *p) {
        if (p->fd_owned)
                close(p->fd);
        free(p);
}

static void conn_free(struct conn *c) {
        struct packet *p;

        while ((p = STAILQ_FIRST(&c->out))) {
                STAILQ_REMOVE_HEAD(&c->out, link);
                packet_free(p);
        }
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

/*
 * A PERSIST region whose grant did not reach its client: no one knows its id, so nothing would
 * ever free it.  It goes as the client's Free would (the connection is closing; its hold goes too).
 */
static void unsent_grant(struct conn *c, uint64_t id) {
        struct core_result res;

        if (!id || !c->in_core || core_free_region(core, &c->s.client, id, &res) != E_OK)
                return;
        logx(LOG_LEVEL_INFO, &(struct log_ctx){.pid = c->s.client.pid},
             "client pid %d went before PERSIST region %" PRIu64 " reached it; freed", (int)c->s.client.pid, id);
}

static void conn_close(struct conn *c) {
        uint32_t n = c->s.client.nrefs;
        struct packet *p;

        if (c->state == CONN_CLOSING)
                return;
        STAILQ_FOREACH(p, &c->out, link)
        unsent_grant(c, p->persist_grant);
        if (c->state == CONN_HANDSHAKE || c->state == CONN_REFUSED)
                TAILQ_REMOVE(&handshakes, c, hs_link);
        if (c->state == CONN_REFUSED)
                nrefused--;
        c->state = CONN_CLOSING;
        TAILQ_REMOVE(&conns, c, link);
        nconns--;
        if (c->in_core) {
                core_client_remove(core, &c->s.client);
                c->in_core = false;
                logx(n ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, &(struct log_ctx){.pid = c->s.client.pid},
                     "client pid %d uid %u%s%s disconnected; %u references released", (int)c->s.client.pid,
                     (unsigned)c->s.client.uid, *c->s.client.name ? " " : "", c->s.client.name, n);
        }
        uv_poll_stop(&c->poll);
        uv_close((uv_handle_t *)&c->poll, conn_handle_closed);
        /* A freed fd may be what accept was waiting for. */
        if (accept_paused && !stopping) {
                accept_paused = false;
                uv_timer_stop(&accept_timer);
                uv_poll_start(&listen_poll, UV_READABLE, listen_cb);
        }
        changed();
}

static void conn_events(struct conn *c) {
        int ev = UV_DISCONNECT;

        if (c->state == CONN_CLOSING)
                return;
        if (c->out_bytes < OUT_PAUSE)
                ev |= UV_READABLE;
        if (!STAILQ_EMPTY(&c->out))
                ev |= UV_WRITABLE;
        uv_poll_start(&c->poll, ev, conn_cb);
}

/* ---- out ---- */

/* Sends out's reply to c now, or queues it; a connection that cannot take it is closed. */
static void conn_send(struct conn *c, const struct proto_out *o) {
        struct packet *p;
        int r;

        if (c->state == CONN_CLOSING || o->len == 0)
                goto drop;
        if (STAILQ_EMPTY(&c->out)) {
                r = wire_send(c->fd, o->buf, o->len, &o->fd, o->fd >= 0, MSG_DONTWAIT);
                if (r == 0)
                        goto drop;
                if (r != -EAGAIN) {
                        unsent_grant(c, o->persist_grant); /* it hung up: a queued Alloc's answer has no reader */
                        conn_close(c);
                        goto drop;
                }
        }
        if (c->out_bytes + o->len > OUT_MAX) {
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pid = c->s.client.pid},
                     "client pid %d leaves its replies unread (%zu bytes queued); disconnecting it",
                     (int)c->s.client.pid, c->out_bytes);
                unsent_grant(c, o->persist_grant);
                conn_close(c);
                goto drop;
        }
        if (!(p = malloc(sizeof(*p) + o->len))) {
                unsent_grant(c, o->persist_grant);
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
        conn_events(c);
        return;
drop:
        if (o->fd_owned)
                close(o->fd);
}

static void flush(struct conn *c) {
        struct packet *p;

        while ((p = STAILQ_FIRST(&c->out))) {
                int r = wire_send(c->fd, p->data, p->len, &p->fd, p->fd >= 0, MSG_DONTWAIT);
                if (r == -EAGAIN)
                        break;
                if (r < 0)
                        return conn_close(c);
                STAILQ_REMOVE_HEAD(&c->out, link);
                c->out_bytes -= p->len;
                packet_free(p);
        }
        conn_events(c);
}

static void error_reply(struct conn *c, uint64_t id, int code, const char *msg) {
        proto_error(&out, id, code, msg);
        out.fd = -1;
        out.fd_owned = false;
        conn_send(c, &out);
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
        if (status < 0 && z->result == 0)
                z->result = status;
        proto_zeroed(core, live ? &c->s : NULL, z->slot, z->req_id, z->result, &out);
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
                        return;
                }
                free(z);
        }
        proto_zeroed(core, &c->s, slot, req_id, -ENOMEM, &out);
        act(c);
}

/* Does what the protocol layer asked for in out. */
static void act(struct conn *c) {
        if (out.zero) {
                out.zero = false;
                start_zeroing(c, out.slot, out.req_id);
                return;
        }
        conn_send(c, &out);
        if (out.close)
                conn_close(c);
}

/* ---- in ---- */

/* The connections a Disconnect marked: each is told why, as far as its socket takes it now, and closed. */
static void close_evicted(void) {
        struct conn *c, *next;

        proto_error(&out, 0, E_DISCONNECTED,
                    "an operator disconnected this connection (allocctl disconnect); its regions were released");
        for (c = TAILQ_FIRST(&conns); c; c = next) {
                next = TAILQ_NEXT(c, link);
                if (!c->in_core || !c->s.client.evicted)
                        continue;
                wire_send(c->fd, out.buf, out.len, NULL, 0, MSG_DONTWAIT);
                conn_close(c);
        }
}

static void serve(struct conn *c) {
        static uint8_t buf[WIRE_MAX_PACKET];
        static _Alignas(16) uint8_t arena[16384]; /* the loop is single-threaded: one message at a time */

        core_set_now(core, uv_now(loop));
        for (int i = 0; i < READ_BURST && c->state != CONN_CLOSING && c->out_bytes < OUT_PAUSE; i++) {
                size_t nfds = 0;
                ssize_t n = wire_recv(c->fd, buf, sizeof(buf), NULL, &nfds, MSG_DONTWAIT);

                if (n == -EAGAIN)
                        return;
                if (n == -ENOBUFS) {
                        error_reply(c, 0, E_PROTOCOL,
                                    "requests carry no file descriptors; the ones sent were closed and the request "
                                    "ignored");
                        continue;
                }
                if (n == -EMSGSIZE) {
                        char msg[96];
                        snprintf(msg, sizeof(msg), "packet over the %d-byte limit; closing", WIRE_MAX_PACKET);
                        error_reply(c, 0, E_PROTOCOL, msg);
                        return conn_close(c);
                }
                if (n <= 0 || c->state == CONN_REFUSED)
                        return conn_close(c); /* hung up, or refused and told why already */
                /* Room an earlier request freed goes to the waiters first, not to whoever asks next. */
                if (core_pending(core)) {
                        run_core();
                        if (c->state == CONN_CLOSING)
                                return;
                }
                proto_request(core, &c->s, buf, (size_t)n, arena, sizeof(arena), &out);
                if (c->state == CONN_HANDSHAKE && c->s.hello) {
                        c->state = CONN_READY;
                        TAILQ_REMOVE(&handshakes, c, hs_link);
                }
                act(c);
                if (core_evictions(core))
                        close_evicted();
                awake_served(core_limits(core)->spin_us);
                served = true;
        }
}

static void conn_cb(uv_poll_t *h, int status, int events) {
        struct conn *c = h->data;

        if (status < 0)
                return conn_close(c);
        if (events & UV_WRITABLE)
                flush(c);
        if (c->state != CONN_CLOSING && (events & (UV_READABLE | UV_DISCONNECT)))
                serve(c);
        if (c->state != CONN_CLOSING && (events & UV_DISCONNECT) && !(events & UV_READABLE))
                conn_close(c);
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
        } while (core_pending(core));
        arm_wait_timer();
}

/*
 * Closes the connections that have not said Hello in time.  The list is in accept order, which is
 * deadline order until a SIGHUP changes hello_timeout: so the whole list is looked at, and it holds
 * at most max_connections + REFUSED_MAX entries.
 */
static void hello_sweep(uv_timer_t *t) {
        struct conn *c, *next;
        uint64_t now = uv_now(loop), first = UINT64_MAX;

        (void)t;
        for (c = TAILQ_FIRST(&handshakes); c; c = next) {
                next = TAILQ_NEXT(c, hs_link);
                if (c->deadline > now) {
                        first = c->deadline < first ? c->deadline : first;
                        continue;
                }
                logx(LOG_LEVEL_INFO, &(struct log_ctx){.pid = c->s.client.pid},
                     "client pid %d said no Hello within hello_timeout; closing it", (int)c->s.client.pid);
                conn_close(c);
        }
        if (first != UINT64_MAX)
                uv_timer_start(&hello_timer, hello_sweep, first - now, 0);
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

uint64_t server_next_serial(void) {
        return next_serial;
}

void server_set_next_serial(uint64_t serial) {
        next_serial = serial;
}

/* ---- accepting ---- */

/* The command name of pid, for allocctl; best effort (another pid namespace, a process already gone). */
static void read_comm(pid_t pid, char *buf, size_t size) {
        char path[64];
        ssize_t n;
        int fd;

        *buf = '\0';
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, buf, size - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        /* Any process names itself (prctl PR_SET_NAME), and the kernel cuts the name at 15 bytes. */
        text_sanitize(buf);
}

static int conn_new(int fd) {
        struct conn *c = calloc(1, sizeof(*c));
        struct client *cl = c ? &c->s.client : NULL;
        struct core_result res;
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_err("accepting a client: %s", c ? strerror(errno) : "out of memory");
                free(c);
                return -1;
        }
        c->fd = fd;
        cl->serial = next_serial++;
        cl->pid = cred.pid;
        cl->uid = cred.uid;
        cl->gid = cred.gid;
        len = sizeof(cl->groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, cl->groups, &len) == 0)
                cl->ngroups = (int)(len / sizeof(gid_t));
        else
                logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pid = cl->pid},
                     "client pid %d: its supplementary groups are not known (%s); only its primary group counts",
                     (int)cl->pid, strerror(errno));
        read_comm(cl->pid, cl->comm, sizeof(cl->comm));
        core_client_add(core, cl, &res);
        if (res.code != E_OK && nrefused >= REFUSED_MAX) {
                /*
                 * Too many refused already: say why and close now.  What the client sent is read
                 * first: closing a socket with unread packets resets it, and the client would see
                 * ECONNRESET before the reason.
                 */
                char junk[64];
                proto_error(&out, 0, res.code, res.msg);
                wire_send(fd, out.buf, out.len, NULL, 0, MSG_DONTWAIT);
                for (int i = 0; i < 4 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_TRUNC) >= 0; i++)
                        ;
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pid = cl->pid}, "refusing client pid %d: %s", (int)cl->pid,
                     res.msg);
                free(c);
                return -1;
        }
        STAILQ_INIT(&c->out);
        uv_poll_init(loop, &c->poll, fd);
        c->poll.data = c;
        c->in_core = res.code == E_OK;
        c->state = c->in_core ? CONN_HANDSHAKE : CONN_REFUSED;
        c->deadline = uv_now(loop) + core_limits(core)->hello_timeout_ms;
        TAILQ_INSERT_TAIL(&conns, c, link);
        TAILQ_INSERT_TAIL(&handshakes, c, hs_link);
        nconns++;
        if (!uv_is_active((uv_handle_t *)&hello_timer) ||
            uv_timer_get_due_in(&hello_timer) > core_limits(core)->hello_timeout_ms)
                uv_timer_start(&hello_timer, hello_sweep, core_limits(core)->hello_timeout_ms, 0);
        if (!c->in_core) {
                nrefused++;
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pid = cl->pid}, "refusing client pid %d: %s", (int)cl->pid,
                     res.msg);
                error_reply(c, 0, res.code, res.msg);
        }
        conn_events(c);
        logx(LOG_LEVEL_DEBUG, &(struct log_ctx){.pid = cl->pid}, "client pid %d uid %u connected", (int)cl->pid,
             (unsigned)cl->uid);
        changed();
        return 0;
}

static void accept_again(uv_timer_t *t) {
        (void)t;
        accept_paused = false;
        if (!stopping)
                uv_poll_start(&listen_poll, UV_READABLE, listen_cb);
}

static void listen_cb(uv_poll_t *h, int status, int events) {
        static bool said;

        (void)h;
        (void)events;
        if (status < 0)
                return;
        for (int i = 0; i < 64; i++) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd >= 0) {
                        said = false;
                        if (conn_new(fd) < 0)
                                close(fd);
                        continue;
                }
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /* Accepting again at once would spin: wait for a connection to close, or a moment. */
                        if (!said)
                                log_warn("accept: %s; not accepting until a connection closes (at most %d ms)",
                                         strerror(errno), ACCEPT_PAUSE_MS);
                        said = true;
                        accept_paused = true;
                        uv_poll_stop(&listen_poll);
                        uv_timer_start(&accept_timer, accept_again, ACCEPT_PAUSE_MS, 0);
                } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                        log_warn("accept: %s", strerror(errno));
                }
                return;
        }
}

/* ---- set-up and stop ---- */

void server_init(uv_loop_t *l, struct core *c, void (*changed_cb)(void)) {
        loop = l;
        core = c;
        changed = changed_cb;
        stopping = false; /* a server started again in one process (tests/test-reclaim.c) */
        uv_check_init(loop, &turn);
        uv_check_start(&turn, turn_cb);
        uv_timer_init(loop, &wait_timer);
        uv_timer_init(loop, &hello_timer);
        uv_timer_init(loop, &accept_timer);
        awake_init(loop);
        grace_init(loop, core, changed);
}

static int start_listening(int fd) {
        listen_fd = fd;
        uv_poll_init(loop, &listen_poll, fd);
        return uv_poll_start(&listen_poll, UV_READABLE, listen_cb);
}

int server_adopt(int fd) {
        int r = listen_adopt(fd);

        return r < 0 ? r : start_listening(fd);
}

int server_listen(const char *path, char *err, size_t errsize) {
        int fd = listen_open(path, err, errsize);

        if (fd < 0)
                return fd;
        bound_path = strdup(path);
        return start_listening(fd);
}

void server_stop(void) {
        struct conn *c;

        stopping = true;
        if (listen_fd >= 0) {
                uv_poll_stop(&listen_poll);
                uv_close((uv_handle_t *)&listen_poll, NULL);
                close(listen_fd);
                listen_fd = -1;
        }
        if (bound_path) {
                listen_remove(bound_path);
                free(bound_path);
                bound_path = NULL;
        }
        /* Waiters are told before anyone's regions go, so none is granted room that a hang-up made. */
        core_cancel_waiters(core, "allocd is stopping");
        run_core();
        while ((c = TAILQ_FIRST(&conns))) {
                flush(c);
                conn_close(c);
        }
        uv_check_stop(&turn);
        uv_close((uv_handle_t *)&turn, NULL);
        uv_close((uv_handle_t *)&wait_timer, NULL);
        uv_close((uv_handle_t *)&hello_timer, NULL);
        uv_close((uv_handle_t *)&accept_timer, NULL);
        awake_close();
        grace_close();
}
