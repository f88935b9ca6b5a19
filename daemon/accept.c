/* SPDX-License-Identifier: MIT */
/*
 * Accepting connections (docs/ARCHITECTURE.md, "Connections"): the listening
 * socket (made or checked in listen.c) under a uv_poll_t, each accepted fd
 * made a connection in HANDSHAKE (counted against the limits) or REFUSED
 * (over a limit: told why at once, kept only until it speaks, its Hello
 * deadline, or stop, so that it reads the reason before the socket closes;
 * at most REFUSED_MAX of them).  HANDSHAKE and REFUSED connections sit, in
 * the order they joined (accepted), on a deadline list that one timer
 * sweeps: a client that never says Hello is closed.  So is one that said
 * Goodbye and leaves its replies unread for as long (lingering: it joins at
 * the Goodbye): released already, it still holds an fd of allocd's and its
 * uid's room, and no one else can close it.  Out of fds, accepting pauses
 * until a connection closes or ACCEPT_PAUSE_MS pass, rather than spin.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "listen.h"
#include "log.h"
#include "proc.h"
#include "server.h"

#define REFUSED_MAX 16      /* refused connections kept just long enough to read why */
#define ACCEPT_PAUSE_MS 100 /* out of fds: accept again after this, or when a connection closes */

static uv_loop_t *loop;
static struct core *core;
static void (*changed)(void);
static TAILQ_HEAD(, conn) handshakes = TAILQ_HEAD_INITIALIZER(handshakes); /* HANDSHAKE, REFUSED, lingering */
static uint32_t nrefused;
static uint64_t next_serial = 1;
static uv_timer_t hello_timer, accept_timer;
static bool accept_paused, stopping;
static uv_poll_t listen_poll;
static int listen_fd = -1;
static char *bound_path;     /* the socket file we made, removed at stop */
static struct proto_out out; /* a refusal's words */

static void listen_cb(uv_poll_t *h, int status, int events);

uint64_t server_next_serial(void) {
        return next_serial;
}

void server_set_next_serial(uint64_t serial) {
        next_serial = serial;
}

/*
 * Closes the connections that have not said Hello in time, and the lingering ones past theirs.  Each
 * is due hello_timeout after it joined, read now rather than when it joined, so that a SIGHUP that
 * changes hello_timeout applies to those already waiting too (server_limits_changed sweeps at once);
 * the list is in the order they joined, so it is in deadline order and the sweep stops at the
 * first not yet due.
 */
static void hello_sweep(uv_timer_t *t) {
        struct conn *c;
        uint64_t now = uv_now(loop), ms = core_limits(core)->hello_timeout_ms;

        (void)t;
        while ((c = TAILQ_FIRST(&handshakes))) {
                if (c->joined + ms > now) {
                        uv_timer_start(&hello_timer, hello_sweep, c->joined + ms - now, 0);
                        return;
                }
                logx(LOG_LEVEL_INFO, CLIENT_CTX(&c->s.client), CLIENT_FMT " %s within hello_timeout; closing it",
                     CLIENT_ARGS(&c->s.client),
                     c->lingering ? "said Goodbye and did not read its replies" : "said no Hello");
                conn_close(c); /* takes c off the list (accept_handshake_done) */
        }
}

void server_limits_changed(void) {
        if (!stopping && !TAILQ_EMPTY(&handshakes))
                uv_timer_start(&hello_timer, hello_sweep, 0, 0);
}

void accept_handshake_done(struct conn *c) {
        TAILQ_REMOVE(&handshakes, c, hs_link);
        if (c->state == CONN_REFUSED)
                nrefused--;
        c->lingering = false;
}

/* c goes on the deadline list, due hello_timeout from now. */
static void due(struct conn *c) {
        uint64_t ms = core_limits(core)->hello_timeout_ms;

        c->joined = uv_now(loop);
        TAILQ_INSERT_TAIL(&handshakes, c, hs_link);
        if (!uv_is_active((uv_handle_t *)&hello_timer) || uv_timer_get_due_in(&hello_timer) > ms)
                uv_timer_start(&hello_timer, hello_sweep, ms, 0);
}

void accept_linger(struct conn *c) {
        c->lingering = true;
        due(c);
}

void accept_fd_freed(void) {
        if (accept_paused && !stopping) {
                accept_paused = false;
                uv_timer_stop(&accept_timer);
                uv_poll_start(&listen_poll, UV_READABLE, listen_cb);
        }
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
                logx(LOG_LEVEL_NOTICE, CLIENT_CTX(cl),
                     CLIENT_FMT ": its supplementary groups are not known (%s); only its primary group counts",
                     CLIENT_ARGS(cl), strerror(errno));
        cl->start = proc_stat(cl->pid, cl->comm, sizeof(cl->comm));
        core_client_add(core, cl, &res);
        if (res.code != E_OK && nrefused >= REFUSED_MAX) {
                /* Too many refused already: say why and close now. */
                accept_refuse_now(fd, res.code, res.msg);
                logx(LOG_LEVEL_WARNING, CLIENT_CTX(cl), "refusing " CLIENT_FMT ": %s", CLIENT_ARGS(cl), res.msg);
                free(c);
                return -1;
        }
        STAILQ_INIT(&c->out);
        uv_poll_init(loop, &c->poll, fd);
        c->poll.data = c;
        c->in_core = res.code == E_OK;
        c->state = c->in_core ? CONN_HANDSHAKE : CONN_REFUSED;
        due(c);
        conn_start(c);
        if (!c->in_core) {
                nrefused++;
                logx(LOG_LEVEL_WARNING, CLIENT_CTX(cl), "refusing " CLIENT_FMT ": %s", CLIENT_ARGS(cl), res.msg);
                conn_error_reply(c, 0, res.code, res.msg);
        } else {
                logx(LOG_LEVEL_DEBUG, CLIENT_CTX(cl), CLIENT_FMT " connected", CLIENT_ARGS(cl));
        }
        changed();
        return 0;
}

void accept_refuse_now(int fd, int code, const char *msg) {
        char junk[64];

        proto_error(&out, 0, code, msg);
        wire_send(fd, out.buf, out.len, NULL, 0, MSG_DONTWAIT);
        for (int i = 0; i < 4 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_TRUNC) >= 0; i++)
                ;
}

static void accept_again(uv_timer_t *t) {
        (void)t;
        accept_paused = false;
        if (!stopping)
                uv_poll_start(&listen_poll, UV_READABLE, listen_cb);
}

/* Says why accept failed, how full allocd is, and what the operator can do about it. */
static void accept_failed(int err) {
        struct rlimit rl = {0};
        const char *fix = err == EMFILE   ? "raise LimitNOFILE= (allocd.service), or lower max_connections or "
                                            "max_region_fds_per_uid (allocd.conf(5))"
                          : err == ENFILE ? "the whole system is out of file descriptors: raise fs.file-max "
                                            "(sysctl), or find what holds them"
                                          : "the kernel is short of memory";

        getrlimit(RLIMIT_NOFILE, &rl);
        log_warn("accept: %s (RLIMIT_NOFILE = %llu; connections open: %u); not accepting until a connection closes "
                 "(at most %d ms); %s",
                 strerror(err), (unsigned long long)rl.rlim_cur, server_nconns(), ACCEPT_PAUSE_MS, fix);
}

static void listen_cb(uv_poll_t *h, int status, int events) {
        static bool said; /* out of fds or memory since the queue of connections last ran dry: said so once */

        (void)h;
        (void)events;
        if (status < 0)
                return;
        for (int i = 0; i < 64; i++) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd >= 0) {
                        if (conn_new(fd) < 0)
                                close(fd);
                        continue;
                }
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /* Accepting again at once would spin: wait for a connection to close, or a moment. */
                        if (!said)
                                accept_failed(errno);
                        said = true;
                        accept_paused = true;
                        uv_poll_stop(&listen_poll);
                        uv_timer_start(&accept_timer, accept_again, ACCEPT_PAUSE_MS, 0);
                } else if (errno == EAGAIN) {
                        /*
                         * Every waiting connection taken: only now is the shortage over.  A connection taken
                         * while others wait is no sign of it, and each one that closes lets in one more.
                         */
                        said = false;
                } else if (errno != EINTR && errno != ECONNABORTED) {
                        log_warn("accept: %s", strerror(errno));
                }
                return;
        }
}

/* ---- set-up and stop ---- */

void accept_init(uv_loop_t *l, struct core *c, void (*changed_cb)(void)) {
        loop = l;
        core = c;
        changed = changed_cb;
        stopping = false; /* a server started again in one process (tests/test-reclaim.c) */
        uv_timer_init(loop, &hello_timer);
        uv_timer_init(loop, &accept_timer);
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

void accept_stop(void) {
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
        uv_close((uv_handle_t *)&hello_timer, NULL);
        uv_close((uv_handle_t *)&accept_timer, NULL);
}
