/* SPDX-License-Identifier: MIT */
/*
 * Carrying on after allocd restarts (issue 18).
 *
 * A call that finds the connection lost (EOF, ECONNRESET, EPIPE) makes it
 * again, tries for ALLOCD_RECONNECT (a minute by default) with a backoff
 * from 10 ms doubling to 1 s, and says Hello with the serial and secret the
 * first Hello gave.  An allocd that restarted with its state (the fd store)
 * has kept this connection's references for it, as a placeholder, for
 * reclaim_grace: the new connection takes them over, and the pools are the
 * same memfds, so every mapping and struct alloc_region stays good (pool-map.c
 * keeps a mapping whose file comes again).
 *
 * Then the held table is squared with what allocd says the connection holds
 * (Held, a page at a time).  Whatever allocd holds beyond the table is a
 * grant whose reply was lost (an Alloc, an Attach in flight) or a give-back
 * that did not reach it (a Free or Detach in flight, which took its table
 * entry as it was sent): each goes back, once, by how_back.  Whatever the
 * table holds that allocd does not list is gone.  So an Alloc or Attach in
 * flight may be sent again (it allocates anew), but a give-back of regions
 * the table held is not: allocd did it, or the squaring does (transport.c).
 *
 * allocd refuses the reclaim when it restarted without the state, or the
 * grace time passed, or the secret is wrong: the new connection starts
 * afresh (a plain Hello), and the calls cut by the loss fail with -ESTALE
 * and allocd's reason, once, if the connection held regions; the memory
 * stays mapped, so old pointers do not fault, but it is no longer shared.
 *
 * All of it runs with the connection's lock held, on a socket no other
 * thread knows yet: the others wait for the lock, then find a new
 * generation and learn the outcome from revived.  They wait past their own
 * deadlines (liballoc-client(3) says so): a deadline cut short would leave
 * a request that may be sent again with nothing to send it on.  Only an
 * interrupt (alloc_set_interrupt) ends it early, while no connection is made
 * yet: between tries, or while a Hello waits for allocd to answer it (its
 * socket is kept, and the next call waits there again).  Nothing is half
 * done then, and the next call starts over, with a whole ALLOCD_RECONNECT.
 * The lock is let go for those waits, so that interrupted() is called
 * without it as everywhere else; reviving keeps the others waiting.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client-internal.h"
#include "connection.h"
#include "wire.h"

#define RPC_TIMEOUT_MS 10000 /* a reply on the new socket, when the connection has no timeout of its own */

bool conn_retry_safe(const Allocd__Request *req) {
        switch (req->body_case) {
        case ALLOCD__REQUEST__BODY_HELLO:
        case ALLOCD__REQUEST__BODY_DISCONNECT: /* it closes others: done or not, not twice */
                return false;
        default:
                return true;
        }
}

uint64_t conn_now_ms(void) {
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

void conn_backoff(uint32_t *wait_ms) {
        uint32_t w = *wait_ms;

        nanosleep(&(struct timespec){.tv_sec = w / 1000, .tv_nsec = (long)(w % 1000) * 1000000}, NULL);
        *wait_ms = w * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w * 2;
}

/*
 * fd's receive timeout: the connection's (or RPC_TIMEOUT_MS), cut to until (ms of conn_now_ms(); 0: none);
 * false once until has passed.
 */
static bool receive_within(const struct alloc_client *c, int fd, uint64_t until) {
        uint64_t ms = c->timeout_ms ? c->timeout_ms : RPC_TIMEOUT_MS, now = conn_now_ms();
        struct timeval tv;

        if (until && now >= until)
                return false;
        if (until && until - now < ms)
                ms = until - now;
        tv = (struct timeval){.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
        return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0;
}

/* req on fd, numbered as the connection's next request: 0, or a negative errno value. */
static int rpc_send(struct alloc_client *c, int fd, Allocd__Request *req) {
        uint8_t out[128], *buf = out;
        size_t len;
        int r;

        req->has_id = true;
        req->id = ++c->next_id;
        len = allocd__request__get_packed_size(req); /* with the id, up to 11 bytes of it */
        if (len > sizeof(out) && !(buf = malloc(len)))
                return -ENOMEM;
        r = wire_send(fd, buf, allocd__request__pack(req, buf), NULL, 0, 0);
        if (buf != out)
                free(buf);
        return r;
}

/*
 * Waits without the lock until fd is readable (1), until passes (0) or c->interrupted says to stop
 * (-EINTR), asking it at least every INTR_POLL_MS, as reader.c does; fd -1: the backoff between
 * tries.  The others that find the connection lost meanwhile wait for this thread (reviving): no
 * connection is made yet, and none of it is half done.  Lock held.
 */
static int readable_interrupted(struct alloc_client *c, int fd, uint64_t until) {
        int (*intr)(void *) = c->interrupted;
        void *data = c->interrupted_data;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int k;

        c->reviving = true;
        pthread_mutex_unlock(&c->lock);
        for (;;) {
                uint64_t now = conn_now_ms();
                if (intr(data)) {
                        k = -EINTR;
                        break;
                }
                if (until && now >= until) {
                        k = 0;
                        break;
                }
                k = poll(&pfd, 1, until && until - now < INTR_POLL_MS ? (int)(until - now) : INTR_POLL_MS);
                if (k > 0 || (k < 0 && errno != EINTR)) {
                        k = 1; /* a poll that failed otherwise: recvmsg says why */
                        break;
                }
        }
        pthread_mutex_lock(&c->lock);
        c->reviving = false;
        if (c->sleepers)
                pthread_cond_broadcast(&c->cond);
        return k;
}

/*
 * The reply to request id on fd, read on this thread alone: no other reads fd yet.  A reply that takes
 * longer than the receive timeout is waited for on, until until (0: not at all): see hello();
 * interruptible (c->interrupted set), that wait ends with -EINTR where interrupted() says so.
 */
static int rpc_reply(struct alloc_client *c, int fd, uint64_t id, Allocd__Reply **ret, uint64_t until,
                     bool interruptible) {
        int pfd = -1, k;
        size_t nfds = 1;
        ssize_t n;

        if (interruptible && c->interrupted && until) {
                if ((k = readable_interrupted(c, fd, until)) <= 0)
                        return k < 0 ? k : -EAGAIN;
        } else if (until) {
                (void)receive_within(c, fd, until); /* not past it, where it is nearer than the timeout */
        }
        while ((n = conn_recv(fd, c->rbuf, sizeof(c->rbuf), &pfd, &nfds, 0)) == -EAGAIN && until &&
               receive_within(c, fd, until))
                nfds = 1;
        if (nfds)
                close(pfd);
        if (n <= 0)
                return n == 0 ? -ECONNRESET : (int)n;
        Allocd__Reply *rep = allocd__reply__unpack(NULL, (size_t)n, c->rbuf);
        if (!rep)
                return -EPROTO;
        if (rep->id == id || (rep->id == 0 && rep->has_error && rep->error != ALLOCD__ERROR__OK)) {
                *ret = rep;
                return 0;
        }
        /*
         * Nothing else was sent on fd (a request that timed out closes it), so this answers none:
         * waiting past it for the right one would wait for ever on an allocd that sends such.
         */
        allocd__reply__free_unpacked(rep, NULL);
        return -EPROTO;
}

/* req on fd and its reply (rpc_reply, not interruptible). */
static int rpc(struct alloc_client *c, int fd, Allocd__Request *req, Allocd__Reply **ret, uint64_t until) {
        int r = rpc_send(c, fd, req);

        return r < 0 ? r : rpc_reply(c, fd, req->id, ret, until, false);
}

/* A connected socket to allocd, with the connection's send timeout and rpc's receive timeout. */
static int dial(struct alloc_client *c, int *ret) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        uint32_t ms = c->timeout_ms ? c->timeout_ms : RPC_TIMEOUT_MS;
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), r;

        if (fd < 0)
                return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->path);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        *ret = fd;
        return 0;
}

/*
 * Hello on fd, reclaiming if the connection has a serial: 1 reclaimed, 0 a new connection (why the
 * reclaim was refused in why), or a negative errno value (try again, or give up: -EPROTO, -EPROTONOSUPPORT).
 *
 * Its reply is waited for on fd until until, however long allocd takes to start: while allocd is
 * down, systemd's listening socket queues the connection, and the next allocd reads the Hello from
 * that queue whenever it comes.  A socket given up on and closed meanwhile would have it take the
 * placeholder over for a client that is not there, and release it at the hang-up, while the client,
 * on a new socket, still maps the regions (allocd also refuses to serve a Hello whose peer hung up,
 * but cannot see a close that follows its check).  -EAGAIN: until passed, fd still waiting.
 * -EINTR (interruptible): c->interrupted said to stop, fd still waiting (hello_pending): the next
 * try calls this again on fd, which then waits for that Hello's reply rather than send another.
 */
static int hello(struct alloc_client *c, int fd, char *why, size_t whysize, uint64_t until, bool interruptible) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello h = ALLOCD__HELLO__INIT;
        Allocd__Reply *rep;
        bool reclaim = c->hello_pending ? c->hello_reclaim : c->serial != 0, sent = c->hello_pending;
        int r;

        *why = '\0';
        if (sent && !reclaim && c->serial)
                snprintf(why, whysize, "its reclaim was refused before an interrupted wait for the Hello after it");
        c->hello_pending = false;
        for (;;) {
                if (!sent) {
                        conn_hello(c, &h, reclaim);
                        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
                        req.hello = &h;
                        if ((r = rpc_send(c, fd, &req)) < 0)
                                return r;
                        c->hello_id = req.id;
                        c->hello_reclaim = reclaim;
                }
                sent = false;
                if ((r = rpc_reply(c, fd, c->hello_id, &rep, until, interruptible)) < 0) {
                        c->hello_pending = r == -EINTR;
                        return r;
                }
                if (rep->has_error && rep->error != ALLOCD__ERROR__OK) {
                        r = -wire_error_errno(rep->error);
                        /* Refused reclaims stay in the handshake: a plain Hello carries on as a new connection. */
                        if (reclaim && rep->id &&
                            (rep->error == ALLOCD__ERROR__NOT_FOUND || rep->error == ALLOCD__ERROR__DENIED ||
                             rep->error == ALLOCD__ERROR__INVALID)) {
                                snprintf(why, whysize, "%s", rep->message ? rep->message : "refused");
                                allocd__reply__free_unpacked(rep, NULL);
                                reclaim = false;
                                continue;
                        }
                        snprintf(why, whysize, "%s", client_reply_words(rep));
                        allocd__reply__free_unpacked(rep, NULL);
                        return r;
                }
                if (rep->body_case != ALLOCD__REPLY__BODY_HELLO) {
                        allocd__reply__free_unpacked(rep, NULL);
                        return -EPROTO;
                }
                conn_hello_done(c, rep->hello);
                allocd__reply__free_unpacked(rep, NULL);
                return reclaim;
        }
}

/* Sends back one reference to id (a Free, or a Detach) on fd. */
static int give_back(struct alloc_client *c, int fd, uint64_t id, bool free_it) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        Allocd__Detach d = ALLOCD__DETACH__INIT;
        Allocd__Reply *rep;
        int r;

        client_give_back_request(&req, free_it ? ALLOCD__REQUEST__BODY_FREE : ALLOCD__REQUEST__BODY_DETACH, id, &f, &d);
        if ((r = rpc(c, fd, &req, &rep, 0)) < 0)
                return r;
        r = rep->has_error ? -wire_error_errno(rep->error) : 0;
        allocd__reply__free_unpacked(rep, NULL);
        /* A Free another uid's region refuses (it was an Attach): a Detach gives the reference back. */
        return r == -EACCES && free_it ? give_back(c, fd, id, false) : r;
}

/* An id a give-back in flight named, and whether it was a Free (else a Detach). */
struct in_flight {
        uint64_t id;
        bool free;
};

/*
 * Whether the squaring gives back an extra reference to id (the first of them: first) with a Free,
 * else a Detach.  A Free takes the name and PERSIST away with it, so it is only for what the
 * connection meant to free: a Free in flight, or a region it made that the table never had (an
 * Alloc whose reply was lost).  Anything else, a lost Attach or Detach among them, is one
 * reference too many: a Detach.  Every give-back in flight is looked at, not the first found: a
 * Detach of the same region in flight with the Free (its own region attached by name too) would
 * otherwise send both back as Detaches, and the region would stay, named and PERSIST, for good.
 */
static bool how_back(const struct in_flight *f, size_t nf, uint64_t id, bool first, bool made, bool unknown) {
        bool named = false, freed = false;

        for (size_t i = 0; i < nf; i++)
                if (f[i].id == id) {
                        named = true;
                        freed |= f[i].free;
                }
        return first && (named ? freed : made && unknown);
}

/*
 * The squaring's whole budget: each of its round trips is bounded (dial), but pages that never end
 * or a count of billions (a buggy or hostile allocd) would keep it going, the lock held, for ever.
 * allocd's pages take a few round trips for a million regions, so this much only ends those.
 */
static uint64_t square_budget_ms(const struct alloc_client *c) {
        uint64_t ms = c->timeout_ms ? c->timeout_ms : RPC_TIMEOUT_MS;

        return ms > c->reconnect_ms ? ms : c->reconnect_ms;
}

/* What allocd says the reclaimed connection holds, squared with the held table (see above). */
static int square(struct alloc_client *c, int fd, const struct in_flight *given, size_t ngiven) {
        uint64_t end = conn_now_ms() + square_budget_ms(c);
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Held h = ALLOCD__HELD__INIT;
        uint64_t *ids = NULL;
        uint32_t *counts = NULL, *excess = NULL;
        uint8_t *made = NULL;
        size_t n = 0;
        int r = 0;

        req.body_case = ALLOCD__REQUEST__BODY_HELD;
        req.held = &h;
        for (bool more = true; more && r == 0;) {
                Allocd__Reply *rep;
                if (conn_now_ms() >= end)
                        r = -ETIME;
                if (r < 0 || (r = rpc(c, fd, &req, &rep, 0)) < 0)
                        break;
                Allocd__HeldReply *p = rep->body_case == ALLOCD__REPLY__BODY_HELD ? rep->held : NULL;
                size_t k = p ? p->n_regions : 0;
                void *a = reallocarray(ids, n + k, sizeof(*ids)), *b = reallocarray(counts, n + k, sizeof(*counts));
                void *m = realloc(made, n + k + 1);
                ids = a ? a : ids;
                counts = b ? b : counts;
                made = m ? m : made;
                /* A refusal says why; anything else that is no page (an OK without one) is allocd's mistake. */
                if (!p || p->n_counts != k || (p->n_created && p->n_created != k))
                        r = rep->has_error && rep->error != ALLOCD__ERROR__OK ? -wire_error_errno(rep->error) : -EPROTO;
                else if (!a || !b || !m)
                        r = -ENOMEM;
                for (size_t i = 0; r == 0 && i < k; i++, n++) {
                        /*
                         * allocd lists ids by slot (an id's low 32 bits) rising, page after page: anything else
                         * would never end or count twice.  Not by the whole id: a slot reused has a newer generation.
                         */
                        if (n && (uint32_t)p->regions[i] <= (uint32_t)ids[n - 1]) {
                                r = -EPROTO;
                                break;
                        }
                        ids[n] = p->regions[i];
                        counts[n] = p->counts[i];
                        made[n] = p->n_created && p->created[i];
                }
                more = r == 0 && p->more && k;
                h.has_after = true;
                h.after = k ? ids[n - 1] : 0;
                allocd__reply__free_unpacked(rep, NULL);
        }
        if (r == 0 && !(excess = calloc(n + 1, sizeof(*excess))))
                r = -ENOMEM;
        if (r == 0)
                r = held_sync(c->held, ids, counts, n, excess);
        for (size_t i = 0; r == 0 && i < n; i++)
                for (uint32_t k = 0; r == 0 && k < excess[i]; k++) {
                        /* All of them extra: the table had no entry for it. */
                        bool f = how_back(given, ngiven, ids[i], k == 0, made[i], excess[i] == counts[i]);
                        int e = conn_now_ms() >= end ? -ETIME : give_back(c, fd, ids[i], f);
                        r = e == -ENOENT ? 0 : e; /* gone meanwhile: what was wanted */
                }
        free(ids);
        free(counts);
        free(excess);
        free(made);
        return r;
}

/*
 * Forgets the requests of the lost connection that no caller waits for (abandoned, pipelined),
 * keeping the ids that give-backs in flight named, pipelined or not (*given, malloc'd); the callers'
 * own entries stay, for them to take out.  A give-back already answered is in flight no more: done,
 * or refused, its regions held again (the caller reports the refusal, and must not add them twice:
 * restored).  Lock held, no thread sending or reading.
 */
static void forget(struct alloc_client *c, struct in_flight **given, size_t *ngiven) {
        for (struct pending **pp = &c->pending, *p; (p = *pp);) {
                bool answered = p->reply != NULL;
                struct in_flight *f = p->n && !answered ? reallocarray(*given, *ngiven + p->n, sizeof(**given)) : NULL;
                if (answered && p->n && !p->restored && !p->forsaken && p->reply->has_error &&
                    p->reply->error != ALLOCD__ERROR__OK) {
                        held_add(c->held, p->ids, p->n);
                        p->restored = true;
                }
                /* Out of memory: squared as if no give-back named them (a Detach, but for a lost Alloc's). */
                for (size_t i = 0; f && i < p->n; i++)
                        f[(*ngiven)++] = (struct in_flight){p->ids[i], p->what != ALLOCD__REQUEST__BODY_DETACH};
                *given = f ? f : *given;
                if (!p->abandoned && !p->pipelined) {
                        pp = &p->next;
                        continue;
                }
                *pp = p->next;
                free(p);
        }
        c->npipelined = 0;
}

/* A new connection, not the old one reclaimed: what it held is gone (said once, if it held anything). */
static int start_afresh(struct alloc_client *c, bool had, const char *why) {
        held_sync(c->held, NULL, NULL, 0, NULL); /* nothing is held any more */
        region_table_forget(c->regions);
        atomic_fetch_add(&c->afresh, 1); /* a new allocd numbers its regions from the start again */
        if (had) {
                c->revived = -ESTALE;
                snprintf(c->revived_msg, sizeof(c->revived_msg),
                         "allocd at %s restarted and this connection's regions are gone (%s); the connection "
                         "carries on as a new one",
                         c->path, why);
        }
        return 0;
}

int conn_revive(struct alloc_client *c, uint64_t gen, bool interruptible) {
        uint64_t start = conn_now_ms();
        uint32_t wait = BACKOFF_FIRST_MS;
        struct in_flight *given = NULL;
        size_t ngiven = 0;
        char why[CLIENT_ERROR_MAX]; /* allocd's refusal, whole: its messages run to 1023 bytes (CORE_MSG_MAX) */
        int fd = -1, r;
        bool had = false, made = false; /* made: a connection was made and said Hello once */

        if (c->gen != gen)
                return c->revived ? client_fail(c->revived, "%s", c->revived_msg) : 0;
        if (!c->dead)
                return 0;
        if (c->dead != -ECONNRESET || !c->reconnect_ms || c->given_up)
                return conn_fail_dead(c);
        while (c->senders || c->reading || c->reviving) {
                c->sleepers++;
                pthread_cond_wait(&c->cond, &c->lock);
                c->sleepers--;
        }
        /* Made again meanwhile, or given up, by the thread this one waited for. */
        if (c->gen != gen || c->given_up)
                return conn_revive(c, gen, interruptible);
        for (;;) {
                why[0] = '\0'; /* allocd's words, if this try gets as far as a Hello */
                /* A Hello an interrupt left unanswered is waited for on its socket (hello()), kept as c->fd. */
                if (c->hello_pending)
                        r = (fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 3)) < 0 ? -errno : 0;
                else
                        r = dial(c, &fd);
                if (r == 0 &&
                    (r = hello(c, fd, why, sizeof(why), start + c->reconnect_ms, interruptible && !made)) >= 0) {
                        if (!made) {
                                forget(c, &given, &ngiven);
                                had = held_count(c->held) != 0;
                                made = true;
                        }
                        c->revived = 0;
                        r = r == 1 ? square(c, fd, given, ngiven) : start_afresh(c, had, why);
                        /*
                         * allocd went again while this connection squared its regions (restarts in quick
                         * succession): the next one has the reclaim in its state, and the squaring starts over.
                         */
                        if (r != -ECONNRESET && r != -EPIPE)
                                break;
                }
                if (r == -EINTR && c->hello_pending) {
                        /*
                         * As at give-up, the socket whose Hello is unanswered is kept, not closed (hello()),
                         * as c->fd: the next try waits there for that answer, for a whole ALLOCD_RECONNECT.
                         * A connect cut short by a signal (EINTR too) is a try that failed, as any.
                         */
                        close(c->fd);
                        c->fd = fd;
                        return client_fail(-EINTR,
                                           "interrupted by a signal while waiting for allocd at %s to answer the "
                                           "lost connection's Hello; the next call waits for that answer again",
                                           c->path);
                }
                /*
                 * A Goodbye (alloc_disconnect) goes on only while a socket takes the connection: systemd's,
                 * which allocd.service requires, stays through a restart, and a stop too, and starts
                 * allocd for it.  No socket at all (allocd stopped for good, or not socket-activated) and
                 * a process on its way out would wait a minute for nothing.
                 */
                bool unheard = c->closing && (r == -ENOENT || r == -ECONNREFUSED);
                if (unheard || r == -EPROTO || r == -EPROTONOSUPPORT ||
                    conn_now_ms() - start + wait > c->reconnect_ms) {
                        free(given);
                        c->given_up = true;
                        /*
                         * A Hello still unanswered is kept open, never closed, until alloc_disconnect or
                         * the process's end: an allocd that reads it late (hello()) reclaims the
                         * connection and holds its regions while this process maps them, rather than
                         * releasing them at a close.
                         */
                        if (r == -EAGAIN && fd >= 0) {
                                close(c->fd);
                                c->fd = fd;
                        } else if (fd >= 0) {
                                close(fd);
                        }
                        snprintf(c->dead_msg, sizeof(c->dead_msg),
                                 "the connection to allocd at %s was lost, and making it again failed for %u ms "
                                 "(%s%s%s; "
                                 "ALLOCD_RECONNECT says how long to try)",
                                 c->path, c->reconnect_ms, strerror(-r), *why ? ": " : "", why);
                        return conn_fail_dead(c);
                }
                if (fd >= 0)
                        close(fd);
                fd = -1;
                if (interruptible && c->interrupted && !made) {
                        /* Before a connection is made nothing is half done: the next call starts over. */
                        if (readable_interrupted(c, -1, conn_now_ms() + wait) < 0)
                                return client_fail(-EINTR,
                                                   "interrupted by a signal while making the lost connection to "
                                                   "allocd at %s again; the next call tries again",
                                                   c->path);
                        wait = wait * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : wait * 2;
                } else {
                        conn_backoff(&wait);
                }
        }
        free(given);
        if (r < 0) {
                close(fd);
                snprintf(c->dead_msg, sizeof(c->dead_msg),
                         "the connection to allocd was made again, but squaring "
                         "its regions with allocd failed (%s)",
                         r == -ETIME ? "it went on past ALLOCD_RECONNECT and the connection's timeout" : strerror(-r));
                c->dead = -EIO;
                return conn_fail_dead(c);
        }
        /* As alloc_set_timeout has it: sends bounded by the connection's timeout, reads by their deadlines. */
        uint32_t ms = c->timeout_ms;
        struct timeval snd = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000}, rcv = {0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
        close(c->fd);
        c->fd = fd;
        c->dead = 0;
        c->dead_said = false;
        c->gen++;
        pool_table_renew(c->pools);
        if (c->sleepers)
                pthread_cond_broadcast(&c->cond);
        return c->revived ? client_fail(c->revived, "%s", c->revived_msg) : 0;
}
