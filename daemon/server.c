/* SPDX-License-Identifier: MIT */
/*
 * Sockets and connections.  libuv cannot carry arbitrary fds on its streams
 * (libuv#1587), so the listening socket and every connection are raw
 * non-blocking fds under a uv_poll_t, read and written with recvmsg/sendmsg
 * (common/wire.c).
 *
 * In: one packet is one request.  A packet over the limit, a packet that is
 * not an allocd.Request, or a request before Hello ends the connection after
 * an error reply; fds a client sends are closed and answered with an error.
 * Out: replies go straight to the socket; when it is full they queue, with
 * their fds, up to OUT_MAX packets, and a client that lets more pile up
 * without reading is disconnected.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "allocd.h"

#define OUT_MAX 256    /* replies queued for one client that does not read them */
#define READ_BURST 32  /* requests served from one connection before the loop moves on */
#define REFUSED_MAX 16 /* connections over the limit kept just long enough to say why */

struct packet {
        STAILQ_ENTRY(packet) link;
        size_t len;
        int fd;
        uint8_t data[];
};

struct conn_list conns = TAILQ_HEAD_INITIALIZER(conns);
uint32_t nconns;
static uint32_t nrefused;
static uv_poll_t listen_poll;
static int listen_fd = -1;
static char *bound_path;
static uint64_t next_serial = 1;

static void conn_cb(uv_poll_t *h, int status, int events);

static void conn_free(struct conn *c) {
        struct packet *p;

        while ((p = STAILQ_FIRST(&c->out))) {
                STAILQ_REMOVE_HEAD(&c->out, link);
                if (p->fd >= 0)
                        close(p->fd);
                free(p);
        }
        free(c->pool_fd_sent);
        free(c);
}

static void conn_handle_closed(uv_handle_t *h) {
        struct conn *c = h->data;

        close(c->fd);
        c->fd = -1;
        if (c->busy == 0)
                conn_free(c);
}

void conn_unbusy(struct conn *c) {
        if (--c->busy == 0 && c->fd < 0)
                conn_free(c);
}

static void conn_close(struct conn *c) {
        struct waiter *w;
        uint32_t n = c->nholds;

        c->closing = true;
        if (c->refused) {
                nrefused--;
        } else {
                TAILQ_REMOVE(&conns, c, link);
                nconns--;
        }
        while ((w = TAILQ_FIRST(&c->waiters)))
                waitq_cancel(w, ALLOCD__ERROR__CANCELLED, "connection closed");
        while (!LIST_EMPTY(&c->holds))
                region_drop_hold(LIST_FIRST(&c->holds));
        logx(n ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, &(struct log_ctx){.pid = c->pid},
             "client pid %d uid %u%s%s disconnected; %u references "
             "released",
             (int)c->pid, (unsigned)c->uid, *c->name ? " " : "", c->name, n);
        uv_poll_stop(&c->poll);
        uv_close((uv_handle_t *)&c->poll, conn_handle_closed);
        status_changed();
}

static void conn_events(struct conn *c) {
        int ev = UV_READABLE | UV_DISCONNECT;

        if (!STAILQ_EMPTY(&c->out) || c->closing)
                ev |= UV_WRITABLE;
        uv_poll_start(&c->poll, ev, conn_cb);
}

void conn_kill(struct conn *c) {
        if (c->closing)
                return;
        c->closing = true;
        /* The socket is writable at once, so the poll callback comes soon and closes it there. */
        conn_events(c);
}

static void flush(struct conn *c) {
        struct packet *p;

        while ((p = STAILQ_FIRST(&c->out))) {
                int r = wire_send(c->fd, p->data, p->len, &p->fd, p->fd >= 0, MSG_DONTWAIT);
                if (r == -EAGAIN)
                        break;
                STAILQ_REMOVE_HEAD(&c->out, link);
                c->nout--;
                if (p->fd >= 0)
                        close(p->fd);
                free(p);
                if (r < 0) {
                        conn_kill(c);
                        return;
                }
        }
        conn_events(c);
}

void conn_send(struct conn *c, const Allocd__Reply *reply, const int *fds, size_t nfds) {
        uint8_t buf[WIRE_MAX_PACKET];
        size_t len = allocd__reply__get_packed_size(reply);
        struct packet *p;
        int r;

        if (c->closing)
                return;
        if (len > sizeof(buf) || nfds > 1) {
                log_err("reply to pid %d does not fit in one packet (%zu bytes); dropping the connection", (int)c->pid,
                        len);
                conn_kill(c);
                return;
        }
        allocd__reply__pack(reply, buf);
        if (STAILQ_EMPTY(&c->out)) {
                r = wire_send(c->fd, buf, len, fds, nfds, MSG_DONTWAIT);
                if (r == 0)
                        return;
                if (r != -EAGAIN) {
                        conn_kill(c);
                        return;
                }
        }
        if (c->nout >= OUT_MAX) {
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pid = c->pid},
                     "client pid %d leaves its replies unread (%u queued); disconnecting it", (int)c->pid, c->nout);
                conn_kill(c);
                return;
        }
        p = malloc(sizeof(*p) + len);
        if (!p) {
                conn_kill(c);
                return;
        }
        p->len = len;
        p->fd = nfds ? fcntl(fds[0], F_DUPFD_CLOEXEC, 3) : -1;
        memcpy(p->data, buf, len);
        if (nfds && p->fd < 0) {
                free(p);
                conn_kill(c);
                return;
        }
        STAILQ_INSERT_TAIL(&c->out, p, link);
        c->nout++;
        conn_events(c);
}

void conn_reply_error(struct conn *c, uint64_t id, int error, const char *fmt, ...) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.error = (Allocd__Error)error;
        reply.message = msg;
        conn_send(c, &reply, NULL, 0);
}

static void serve(struct conn *c) {
        static uint8_t buf[WIRE_MAX_PACKET];
        static _Alignas(16) uint8_t arena[16384]; /* the loop is single-threaded: one message at a time */

        for (int i = 0; i < READ_BURST && !c->closing; i++) {
                struct wire_budget budget;
                Allocd__Request *req;
                size_t nfds = 0;
                ssize_t n = wire_recv(c->fd, buf, sizeof(buf), NULL, &nfds, MSG_DONTWAIT);

                if (n == -EAGAIN)
                        return;
                if (n == 0 || n == -ECONNRESET) {
                        c->closing = true;
                        return;
                }
                if (n == -ENOBUFS) {
                        conn_reply_error(c, 0, ALLOCD__ERROR__PROTOCOL,
                                         "requests carry no file descriptors; the ones sent were closed and the "
                                         "request ignored");
                        continue;
                }
                if (n == -EMSGSIZE) {
                        conn_reply_error(c, 0, ALLOCD__ERROR__PROTOCOL, "packet over the %d-byte limit; closing",
                                         WIRE_MAX_PACKET);
                        conn_kill(c);
                        return;
                }
                if (n < 0) {
                        c->closing = true;
                        return;
                }
                wire_budget_init(&budget, WIRE_UNPACK_BUDGET, arena, sizeof(arena));
                req = allocd__request__unpack(&budget.allocator, (size_t)n, buf);
                if (!req) {
                        logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pid = c->pid},
                             "client pid %d sent %zd bytes that are not an allocd request; disconnecting it",
                             (int)c->pid, n);
                        conn_reply_error(c, 0, ALLOCD__ERROR__PROTOCOL,
                                         "cannot decode the packet as an allocd.Request; closing");
                        conn_kill(c);
                        return;
                }
                dispatch(c, req);
                wire_budget_free(&budget, &req->base);
        }
}

static void conn_cb(uv_poll_t *h, int status, int events) {
        struct conn *c = h->data;

        if (status < 0) {
                conn_close(c);
                return;
        }
        if ((events & UV_WRITABLE) && !c->closing)
                flush(c);
        if (events & (UV_READABLE | UV_DISCONNECT))
                serve(c);
        if (c->closing)
                conn_close(c);
}

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
        if (n <= 0)
                n = 0;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
}

static void conn_new(int fd, bool refused) {
        struct conn *c = calloc(1, sizeof(*c));
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_err("accepting a client: %s", c ? strerror(errno) : "out of memory");
                free(c);
                close(fd);
                return;
        }
        c->fd = fd;
        c->serial = next_serial++;
        c->pid = cred.pid;
        c->uid = cred.uid;
        c->gid = cred.gid;
        read_comm(c->pid, c->comm, sizeof(c->comm));
        len = sizeof(c->groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
                c->ngroups = (int)(len / sizeof(gid_t));
        else
                logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pid = c->pid},
                     "client pid %d: its supplementary groups are not known (%s); only its primary group counts",
                     (int)c->pid, strerror(errno));
        LIST_INIT(&c->holds);
        TAILQ_INIT(&c->waiters);
        STAILQ_INIT(&c->out);
        uv_poll_init(loop, &c->poll, fd);
        c->poll.data = c;
        c->refused = refused;
        if (refused) {
                nrefused++;
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pid = c->pid},
                     "refusing client pid %d: max_connections (%u) reached", (int)c->pid, limits.max_connections);
        } else {
                TAILQ_INSERT_TAIL(&conns, c, link);
                nconns++;
        }
        conn_events(c);
        logx(LOG_LEVEL_DEBUG, &(struct log_ctx){.pid = c->pid}, "client pid %d uid %u connected", (int)c->pid,
             (unsigned)c->uid);
        status_changed();
}

static void refuse(int fd) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        uint8_t buf[1024];
        char msg[256];
        struct ucred cred = {0};
        socklen_t len = sizeof(cred);

        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
        logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pid = cred.pid},
             "refusing client pid %d: max_connections (%u) reached", (int)cred.pid, limits.max_connections);
        snprintf(msg, sizeof(msg),
                 "allocd has max_connections = %u clients already; close some or raise max_connections",
                 limits.max_connections);
        reply.has_id = reply.has_error = true;
        reply.error = ALLOCD__ERROR__LIMIT;
        reply.message = msg;
        wire_send(fd, buf, allocd__reply__pack(&reply, buf), NULL, 0, MSG_DONTWAIT);
        close(fd);
}

static void listen_cb(uv_poll_t *h, int status, int events) {
        (void)h;
        (void)events;
        if (status < 0)
                return;
        for (int i = 0; i < 64; i++) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warn("accept: %s", strerror(errno));
                        return;
                }
                if (nconns < limits.max_connections)
                        conn_new(fd, false);
                else if (nrefused < REFUSED_MAX)
                        conn_new(fd, true); /* closing now could reset the socket before it reads why */
                else
                        refuse(fd);
        }
}

static int start_listening(int fd) {
        listen_fd = fd;
        uv_poll_init(loop, &listen_poll, fd);
        return uv_poll_start(&listen_poll, UV_READABLE, listen_cb);
}

int server_adopt(int fd) {
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        return start_listening(fd);
}

int server_listen(const char *path, char *err, size_t errsize) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char dir[sizeof(sa.sun_path)];
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                snprintf(err, errsize, "socket path %s is longer than %zu bytes; choose a shorter --socket", path,
                         sizeof(sa.sun_path) - 1);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        strcpy(dir, path);
        /* The parent of a default path is ours to create: /run/allocd, or $XDG_RUNTIME_DIR/allocd. */
        if (mkdir(dirname(dir), geteuid() == 0 ? 0755 : 0700) < 0 && errno != EEXIST) {
                r = -errno;
                snprintf(err, errsize, "creating %s for the socket: %s", dir, strerror(errno));
                return r;
        }
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errsize, "socket: %s", strerror(errno));
                return r;
        }
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        if (r < 0 && errno == EADDRINUSE) {
                /* A live daemon answers; a stale socket file left by a crash does not. */
                int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
                if (probe >= 0)
                        close(probe);
                if (live) {
                        close(fd);
                        snprintf(err, errsize, "another allocd is already listening on %s; stop it or use --socket",
                                 path);
                        return -EADDRINUSE;
                }
                unlink(path);
                r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        }
        if (r < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                snprintf(err, errsize, "listening on %s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        /* Who may do what is each pool's mode; anyone may connect and ask for status. */
        chmod(path, 0666);
        bound_path = strdup(path);
        return start_listening(fd);
}

static void listen_closed(uv_handle_t *h) {
        (void)h;
}

void server_stop(void) {
        struct conn *c;

        if (listen_fd >= 0) {
                uv_poll_stop(&listen_poll);
                uv_close((uv_handle_t *)&listen_poll, listen_closed);
                close(listen_fd);
                listen_fd = -1;
        }
        if (bound_path) {
                unlink(bound_path);
                free(bound_path);
                bound_path = NULL;
        }
        while ((c = TAILQ_FIRST(&conns))) {
                struct waiter *w;
                while ((w = TAILQ_FIRST(&c->waiters)))
                        waitq_cancel(w, ALLOCD__ERROR__CANCELLED, "allocd is stopping");
                conn_close(c);
        }
}
