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
 * A reply may carry a pool's fd (the first region of that pool on this
 * connection); the reading thread has pool-map.c map the pool before it
 * files the reply, so that another thread's reply for a later region of the
 * same pool, which may be read next, finds the mapping made.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client-internal.h"
#include "wire.h"

struct pending {
        uint64_t id;
        Allocd__Reply *reply;
        struct map_error map; /* the pool fd that came with the reply, if it could not be mapped */
        struct pending *next;
};

struct alloc_client {
        int fd;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t next_id;
        bool reading;
        int sleepers; /* threads in pthread_cond_wait */
        int dead;     /* 0, or the negative errno that ended the connection */
        char dead_msg[256];
        struct pending *pending;
        struct pool_table *pools;
        uint8_t rbuf[WIRE_MAX_PACKET];
};

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

struct pool_table *client_pools(struct alloc_client *c) {
        return c->pools;
}

/* The connection is unusable from now on; every call reports why.  Lock held. */
static void die(struct alloc_client *c, int r, const char *why) {
        if (c->dead)
                return;
        /* However the socket says it, a peer that went away is one documented error. */
        if (r == -EPIPE || r == -ENOTCONN)
                r = -ECONNRESET;
        c->dead = r;
        snprintf(c->dead_msg, sizeof(c->dead_msg), "%s", why);
}

/* Reads one reply and files it under its id.  Called with the lock held, returns with it held. */
static void read_one(struct alloc_client *c) {
        struct wire_budget budget;
        int fd = -1;
        size_t nfds = 1;
        ssize_t n;

        c->reading = true;
        pthread_mutex_unlock(&c->lock);
        n = wire_recv(c->fd, c->rbuf, sizeof(c->rbuf), &fd, &nfds, 0);
        pthread_mutex_lock(&c->lock);
        c->reading = false;
        if (n <= 0) {
                die(c, n == 0 ? -ECONNRESET : (int)n, "the connection to allocd is gone");
        } else {
                wire_budget_init(&budget, WIRE_UNPACK_BUDGET, NULL, 0);
                Allocd__Reply *r = allocd__reply__unpack(&budget.allocator, (size_t)n, c->rbuf);
                struct pending *p = NULL;
                if (!r)
                        die(c, -EPROTO, "allocd sent a reply this library cannot decode");
                else
                        for (p = c->pending; p && (p->reply || p->id != r->id); p = p->next)
                                ;
                if (p) {
                        p->reply = r;
                        if (nfds)
                                p->map.err = pool_table_map(c->pools, r, fd, p->map.msg, sizeof(p->map.msg));
                } else {
                        /* Unsolicited: a refusal (id 0) ends the connection with its reason. */
                        if (r && r->has_error && r->error != ALLOCD__ERROR__OK)
                                die(c, -wire_error_errno(r->error),
                                    r->message ? r->message : wire_error_name(r->error));
                        if (r)
                                allocd__reply__free_unpacked(r, NULL);
                }
                /* Mapped or not, the pool fd is not needed past this point: a mapping outlives its fd. */
                if (nfds)
                        close(fd);
        }
        if (c->sleepers)
                pthread_cond_broadcast(&c->cond);
}

int client_call(struct alloc_client *c, Allocd__Request *req, Allocd__Reply **ret, struct map_error *map) {
        uint8_t buf[WIRE_MAX_PACKET];
        struct pending me = {0}, **pp;
        size_t len;
        int r = 0;

        *ret = NULL;
        if (map)
                map->err = 0;
        pthread_mutex_lock(&c->lock);
        if (c->dead) {
                r = c->dead;
                goto out;
        }
        req->has_id = true;
        req->id = me.id = ++c->next_id;
        len = allocd__request__get_packed_size(req);
        if (len > sizeof(buf)) {
                pthread_mutex_unlock(&c->lock);
                return client_fail(-EMSGSIZE, "request too large for one packet (%zu bytes)", len);
        }
        allocd__request__pack(req, buf);
        me.next = c->pending;
        c->pending = &me;
        r = wire_send(c->fd, buf, len, NULL, 0, 0);
        if (r < 0) {
                /* allocd may have said why it closed (a refused connection): that beats EPIPE. */
                if (!c->reading)
                        read_one(c);
                die(c, r, "the connection to allocd is gone");
        }
        while (!me.reply && !c->dead) {
                if (!c->reading)
                        read_one(c);
                else {
                        c->sleepers++;
                        pthread_cond_wait(&c->cond, &c->lock);
                        c->sleepers--;
                }
        }
        for (pp = &c->pending; *pp != &me; pp = &(*pp)->next)
                ;
        *pp = me.next;
        if (me.reply) {
                *ret = me.reply;
                /* Only a failure has words to copy: the message buffer is most of the struct. */
                if (map && (map->err = me.map.err) < 0)
                        memcpy(map->msg, me.map.msg, sizeof(map->msg));
                r = 0;
        } else {
                r = c->dead;
        }
out:
        if (r < 0)
                client_fail(r, "%s (%s)", c->dead_msg, strerror(-r));
        pthread_mutex_unlock(&c->lock);
        return r;
}

int client_reply_error(const Allocd__Reply *r) {
        if (!r->has_error || r->error == ALLOCD__ERROR__OK)
                return 0;
        return client_fail(-wire_error_errno(r->error), "%s", r->message ? r->message : wire_error_name(r->error));
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

int alloc_connect(struct alloc_client **ret, const char *socket_path, const char *client_name) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char def[sizeof(sa.sun_path)];
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello hello = ALLOCD__HELLO__INIT;
        Allocd__Reply *reply;
        struct alloc_client *c;
        int r;

        client_clear_error();
        if (!ret)
                return client_fail(-EINVAL, "alloc_connect: ret is NULL");
        *ret = NULL;
        if (!socket_path) {
                if ((r = wire_default_socket(def, sizeof(def))) < 0)
                        return client_fail(
                                r, "no allocd socket: not root and XDG_RUNTIME_DIR is unset; set ALLOCD_SOCKET");
                socket_path = def;
        }
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                return client_fail(-ENAMETOOLONG, "socket path %s is too long", socket_path);
        strcpy(sa.sun_path, socket_path);
        c = calloc(1, sizeof(*c));
        if (!c)
                return client_fail(-ENOMEM, "out of memory");
        c->fd = -1;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        c->pools = pool_table_new();
        if (!c->pools) {
                alloc_disconnect(c);
                return client_fail(-ENOMEM, "out of memory");
        }
        c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = client_fail(-errno, "cannot connect to allocd at %s: %s; is allocd running?", socket_path,
                                strerror(errno));
                alloc_disconnect(c);
                return r;
        }
        hello.has_version = true;
        hello.version = WIRE_VERSION;
        hello.client_name = (char *)(client_name ? client_name : program_invocation_short_name);
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &hello;
        r = client_call_for(c, &req, ALLOCD__REPLY__BODY_HELLO, "Hello", &reply);
        if (r < 0) {
                alloc_disconnect(c);
                return r;
        }
        allocd__reply__free_unpacked(reply, NULL);
        *ret = c;
        return 0;
}

struct alloc_client *alloc_disconnect(struct alloc_client *c) {
        if (!c)
                return NULL;
        if (c->fd >= 0)
                close(c->fd);
        c->pools = pool_table_free(c->pools);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}
