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
 *
 * Timeouts: each request has a budget (the connection's timeout, plus the
 * wait an allocation asked for), so a stopped or wedged allocd costs a
 * caller -ETIME, not its thread.  A request that timed out stays in the
 * list as abandoned: allocd may still answer it, and its reply must be
 * consumed (a pool fd mapped, since allocd sends each pool's fd once), and a
 * region granted to no one given back, or the connection would hold memory
 * its owner never learned of.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "client-internal.h"
#include "duration.h"
#include "kind-internal.h"
#include "wire.h"

#define DEFAULT_TIMEOUT_MS 30000

struct pending {
        uint64_t id;
        Allocd__Request__BodyCase what; /* abandoned: what was asked, so that a late grant is given back */
        bool abandoned;                 /* its caller timed out; the entry is on the heap */
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
        struct region_table *regions; /* isolation = region pools' regions, each its own mapping */
        uint32_t timeout_ms;          /* each request's, beyond the wait it asks for; 0: none */
        uint32_t wait_ms;             /* allocd's wait_timeout, for an allocation that gives no timeout_ms */
        char path[108];               /* sizeof(sun_path), for messages */
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

struct region_table *client_regions(struct alloc_client *c) {
        return c->regions;
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

/* Milliseconds until deadline, rounded up, for poll(); 0 once it has passed. */
static int ms_left(const struct timespec *deadline) {
        struct timespec now;
        int64_t ns;

        clock_gettime(CLOCK_MONOTONIC, &now);
        ns = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000 + (deadline->tv_nsec - now.tv_nsec);
        if (ns <= 0)
                return 0;
        return ns / 1000000 >= INT32_MAX ? INT32_MAX : (int)((ns + 999999) / 1000000);
}

/* Sends a packet for which no one waits; lock held.  It must not block: the reading thread sends it. */
static void send_quietly(struct alloc_client *c, Allocd__Request *req) {
        uint8_t buf[64];
        size_t len = allocd__request__get_packed_size(req);

        if (len > sizeof(buf) || wire_send(c->fd, buf, allocd__request__pack(req, buf), NULL, 0, MSG_DONTWAIT) < 0) {
                /* Hanging up gives it back: allocd releases all the connection holds. */
                die(c, -ECONNRESET, "a region allocd granted after its request timed out could not be given back");
                shutdown(c->fd, SHUT_RDWR);
        }
}

/*
 * The late reply to an abandoned request: a region it granted goes back with
 * a Free (alloc) or Detach (attach) whose own reply is dropped in turn.
 * Returns whether p stays in the list, waiting for that reply.
 */
static bool answer_abandoned(struct alloc_client *c, struct pending *p, const Allocd__Reply *r) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Free fr = ALLOCD__FREE__INIT;
        Allocd__Detach dt = ALLOCD__DETACH__INIT;

        if ((r->has_error && r->error != ALLOCD__ERROR__OK) || r->body_case != ALLOCD__REPLY__BODY_REGION ||
            !r->region || !r->region->has_id)
                return false;
        if (p->what == ALLOCD__REQUEST__BODY_ALLOC) {
                fr.has_region = true;
                fr.region = r->region->id;
                req.body_case = ALLOCD__REQUEST__BODY_FREE;
                req.free = &fr;
        } else if (p->what == ALLOCD__REQUEST__BODY_ATTACH) {
                dt.has_region = true;
                dt.region = r->region->id;
                req.body_case = ALLOCD__REQUEST__BODY_DETACH;
                req.detach = &dt;
        } else {
                return false;
        }
        req.has_id = true;
        req.id = p->id = ++c->next_id;
        p->what = req.body_case;
        region_table_drop(c->regions, r->region->id);
        send_quietly(c, &req);
        return !c->dead;
}

/*
 * Reads one reply and files it under its id.  Called with the lock held, returns with it held;
 * false if deadline (NULL: none) passed with nothing to read.
 */
static bool read_one(struct alloc_client *c, const struct timespec *deadline) {
        struct wire_budget budget;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int fd = -1, k = 1;
        size_t nfds = 1;
        ssize_t n = 0;

        c->reading = true;
        pthread_mutex_unlock(&c->lock);
        if (deadline)
                do
                        k = poll(&pfd, 1, ms_left(deadline));
                while (k < 0 && errno == EINTR);
        if (k != 0)
                n = wire_recv(c->fd, c->rbuf, sizeof(c->rbuf), &fd, &nfds, 0);
        pthread_mutex_lock(&c->lock);
        c->reading = false;
        if (k == 0) {
                /* Another waiter, with a later deadline, may read instead. */
                if (c->sleepers)
                        pthread_cond_broadcast(&c->cond);
                return false;
        }
        if (n <= 0) {
                die(c, n == 0 ? -ECONNRESET : (int)n, "the connection to allocd is gone");
        } else {
                wire_budget_init(&budget, WIRE_UNPACK_BUDGET, NULL, 0);
                Allocd__Reply *r = allocd__reply__unpack(&budget.allocator, (size_t)n, c->rbuf);
                struct pending *p = NULL, **pp = &c->pending;
                if (!r)
                        die(c, -EPROTO, "allocd sent a reply this library cannot decode");
                else
                        for (; (p = *pp) && (p->reply || p->id != r->id); pp = &p->next)
                                ;
                if (p) {
                        struct map_error scratch, *map = p->abandoned ? &scratch : &p->map;
                        if (nfds)
                                map->err = r->body_case == ALLOCD__REPLY__BODY_REGION && r->region->region_fd
                                                   ? region_table_map(c->regions, r, fd, map->msg, sizeof(map->msg))
                                                   : pool_table_map(c->pools, r, fd, map->msg, sizeof(map->msg));
                        if (!p->abandoned) {
                                p->reply = r;
                        } else {
                                if (!answer_abandoned(c, p, r)) {
                                        *pp = p->next;
                                        free(p);
                                }
                                allocd__reply__free_unpacked(r, NULL);
                        }
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
        return true;
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
static void unlist(struct alloc_client *c, struct pending *p) {
        struct pending **pp;

        for (pp = &c->pending; *pp != p; pp = &(*pp)->next)
                ;
        *pp = p->next;
}

/* me's caller gives up; lock held.  A copy takes its place in the list, to take allocd's late answer. */
static int abandon(struct alloc_client *c, struct pending *me, Allocd__Request__BodyCase what) {
        struct pending *p = malloc(sizeof(*p));

        unlist(c, me);
        if (!p) {
                /* A late grant could not be given back: the connection, and every region it holds, ends. */
                die(c, -ENOMEM, "out of memory while giving up on a request");
                shutdown(c->fd, SHUT_RDWR);
                return client_fail(-ENOMEM, "out of memory");
        }
        *p = (struct pending){.id = me->id, .what = what, .abandoned = true, .next = c->pending};
        c->pending = p;
        return client_fail(-ETIME,
                           "allocd at %s did not answer within %u ms (beyond any wait for room the request asked "
                           "for); is it stopped or overloaded? (the timeout is ALLOCD_TIMEOUT or alloc_set_timeout)",
                           c->path, c->timeout_ms);
}

int client_call(struct alloc_client *c, Allocd__Request *req, Allocd__Reply **ret, struct map_error *map) {
        uint8_t buf[WIRE_MAX_PACKET];
        struct pending me = {0};
        struct timespec deadline;
        bool timed, expired = false;
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
        timed = request_deadline(c, req, &deadline); /* before packing: it may state an allocation's wait */
        len = allocd__request__get_packed_size(req);
        if (len > sizeof(buf)) {
                pthread_mutex_unlock(&c->lock);
                return client_fail(-EMSGSIZE, "request too large for one packet (%zu bytes)", len);
        }
        allocd__request__pack(req, buf);
        /*
         * Listed before it is sent, so whoever reads finds it; sent without the lock, so a full socket
         * holds up no other thread (a SEQPACKET send is one packet, whole or not at all, whoever else
         * sends), and SO_SNDTIMEO bounds it.
         */
        me.next = c->pending;
        c->pending = &me;
        pthread_mutex_unlock(&c->lock);
        r = wire_send(c->fd, buf, len, NULL, 0, 0);
        pthread_mutex_lock(&c->lock);
        if (r == -EAGAIN) {
                unlist(c, &me);
                pthread_mutex_unlock(&c->lock);
                return client_fail(-ETIME, "allocd at %s took no request for %u ms; is it stopped or overloaded?",
                                   c->path, c->timeout_ms);
        }
        if (r < 0) {
                /* allocd may have said why it closed (a refused connection): that beats EPIPE. */
                if (!c->reading)
                        read_one(c, timed ? &deadline : NULL);
                die(c, r, "the connection to allocd is gone");
        }
        while (!me.reply && !c->dead && !expired) {
                if (!c->reading) {
                        expired = !read_one(c, timed ? &deadline : NULL);
                } else {
                        c->sleepers++;
                        if (timed)
                                expired = pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT;
                        else
                                pthread_cond_wait(&c->cond, &c->lock);
                        c->sleepers--;
                }
        }
        if (!me.reply && !c->dead) {
                r = abandon(c, &me, req->body_case);
                pthread_mutex_unlock(&c->lock);
                return r;
        }
        unlist(c, &me);
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

/* ALLOCD_TIMEOUT, or the default; an unparsable value is an error, not silently the default. */
static int env_timeout(uint32_t *ret) {
        const char *s = secure_getenv("ALLOCD_TIMEOUT");

        *ret = DEFAULT_TIMEOUT_MS;
        if (!s || !*s)
                return 0;
        if (parse_duration_ms(s, ret) < 0)
                return client_fail(-EINVAL,
                                   "ALLOCD_TIMEOUT=%s is not a duration: write 500ms, 30s or 2m (0 for no timeout)", s);
        return 0;
}

int alloc_connect(struct alloc_client **ret, const char *socket_path, const char *client_name) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char def[sizeof(sa.sun_path)];
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello hello = ALLOCD__HELLO__INIT;
        Allocd__Reply *reply;
        struct alloc_client *c;
        uint32_t timeout_ms;
        int r;

        client_clear_error();
        if (!ret)
                return client_fail(-EINVAL, "alloc_connect: ret is NULL");
        *ret = NULL;
        if (!socket_path) {
                if ((r = wire_default_socket(def, sizeof(def), true)) < 0)
                        return client_fail(r, "no allocd socket: ALLOCD_SOCKET is unset, " WIRE_SYSTEM_SOCKET
                                              " does not exist and XDG_RUNTIME_DIR is unset; set ALLOCD_SOCKET");
                socket_path = def;
        }
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                return client_fail(-ENAMETOOLONG, "socket path %s is too long", socket_path);
        if ((r = env_timeout(&timeout_ms)) < 0)
                return r;
        strcpy(sa.sun_path, socket_path);
        c = calloc(1, sizeof(*c));
        if (!c)
                return client_fail(-ENOMEM, "out of memory");
        c->fd = -1;
        strcpy(c->path, socket_path);
        c->wait_ms = DEFAULT_TIMEOUT_MS; /* until Hello says */
        pthread_mutex_init(&c->lock, NULL);
        /* Deadlines are on the monotonic clock: setting the time of day must not fire or stall them. */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cond, &ca);
        pthread_condattr_destroy(&ca);
        c->pools = pool_table_new();
        c->regions = region_table_new();
        if (!c->pools || !c->regions) {
                alloc_disconnect(c);
                return client_fail(-ENOMEM, "out of memory");
        }
        c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                r = client_fail(-errno, "cannot make a socket: %s", strerror(errno));
                alloc_disconnect(c);
                return r;
        }
        /* A Unix connect() waits while allocd's backlog is full; SO_SNDTIMEO bounds that wait too. */
        alloc_set_timeout(c, timeout_ms);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno == EAGAIN)
                        r = client_fail(-ETIME,
                                        "allocd at %s accepted no connection within %u ms (its backlog is full); is it "
                                        "stopped or overloaded? (the timeout is ALLOCD_TIMEOUT)",
                                        socket_path, timeout_ms);
                else
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
        if (reply->hello->has_wait_timeout_ms)
                c->wait_ms = reply->hello->wait_timeout_ms;
        allocd__reply__free_unpacked(reply, NULL);
        *ret = c;
        return 0;
}

int alloc_set_timeout(struct alloc_client *c, uint32_t timeout_ms) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};

        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "alloc_set_timeout: c is NULL");
        pthread_mutex_lock(&c->lock);
        c->timeout_ms = timeout_ms;
        /* Sends wait no longer than replies: a full socket buffer is as stuck as a silent allocd. */
        if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
                pthread_mutex_unlock(&c->lock);
                return client_fail(-errno, "cannot set the socket's send timeout: %s", strerror(errno));
        }
        pthread_mutex_unlock(&c->lock);
        return 0;
}

struct alloc_client *alloc_disconnect(struct alloc_client *c) {
        if (!c)
                return NULL;
        /* Kinds carve this connection's mappings, which are about to go: they go first (alloc_kind(3)). */
        kind_connection_closing(c);
        /*
         * Only abandoned requests can be left (no call is in flight).  A grant that has arrived is given
         * back before the socket closes (allocd reads the Free before it sees the hang-up); one still to
         * come finds the socket closed, and allocd frees a PERSIST region it could not hand over.
         */
        pthread_mutex_lock(&c->lock);
        while (c->fd >= 0 && c->pending && !c->dead) {
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (!read_one(c, &now))
                        break;
        }
        pthread_mutex_unlock(&c->lock);
        if (c->fd >= 0)
                close(c->fd);
        for (struct pending *p = c->pending, *next; p; p = next) {
                next = p->next;
                free(p);
        }
        c->pools = pool_table_free(c->pools);
        c->regions = region_table_free(c->regions);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}
