/* SPDX-License-Identifier: MIT */
/*
 * Reading allocd's replies (transport.c says who reads): each is filed
 * under its request's id, handed to pipeline.c if no one waits for it, or
 * answered if its request was abandoned (it timed out): what allocd granted
 * to no one goes back with a request whose reply is dropped in turn.
 *
 * A reply may carry a pool's fd (the first region of that pool on this
 * connection); the reading thread has pool-map.c map the pool before it
 * files the reply, so that another thread's reply for a later region of the
 * same pool, which may be read next, finds the mapping made.
 *
 * Spinning: a thread about to sleep for a reply first polls the socket
 * without blocking for up to spin_ns (ALLOCD_SPIN, alloc_set_spin), yielding
 * the CPU between tries so that an allocd on the same CPU can run: a reply
 * within that time costs no wake-up.  Adaptive: a reply that took longer
 * than spin_ns halves the next spin, one that came within it restores the
 * whole, so clients that outnumber the CPUs (each reply late) soon stop
 * burning CPU on each other, and a connection that talks fast spins again.
 *
 * Signals (alloc_set_interrupt): recvmsg is restarted after a handler when it
 * has SA_RESTART, and wire.c retries it on EINTR, so a thread that may be
 * interrupted waits in poll instead, which a handler always interrupts, and
 * asks the caller's interrupted() whether to stop: before it first polls (a
 * handler that ran while it spun) and after each wake-up.  A handler that
 * runs after that question and before poll does not interrupt it, and the
 * library cannot block the application's signals around poll (ppoll): so,
 * with interrupted() set, no poll lasts longer than INTR_POLL_MS before the
 * question is asked again.  Without it, waits are as they were.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client-internal.h"
#include "connection.h"
#include "wire.h"

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
        uint8_t small[64], *buf = small;
        size_t len = allocd__request__get_packed_size(req);

        if (len > sizeof(small) && len <= WIRE_MAX_PACKET)
                buf = malloc(len); /* a FreeBatch: rare, and no stack for it on a reading thread */
        if (!buf || len > WIRE_MAX_PACKET ||
            wire_send(c->fd, buf, allocd__request__pack(req, buf), NULL, 0, MSG_DONTWAIT) < 0) {
                /* Hanging up gives it back: allocd releases all the connection holds. */
                conn_die(c, -ECONNRESET, "a region allocd granted after its request timed out could not be given back");
                shutdown(c->fd, SHUT_RDWR);
        }
        if (buf != small)
                free(buf);
}

/* A batch allocated after its request timed out goes back whole: req a FreeBatch of its ids (fb's, malloc'd). */
static bool give_back_batch(const Allocd__Reply *r, Allocd__Request *req, Allocd__FreeBatch *fb) {
        _Static_assert(sizeof(uint64_t) * WIRE_MAX_BATCH < WIRE_MAX_PACKET - 64, "a FreeBatch of a batch fits");
        size_t n = r->body_case == ALLOCD__REPLY__BODY_BATCH ? client_batch_size(r->batch) : 0;
        uint64_t *ids;

        if (!n || n > WIRE_MAX_BATCH || !(ids = malloc(n * sizeof(*ids))))
                return false;
        for (size_t i = 0; i < n; i++)
                ids[i] = client_batch_region(r->batch, i).id;
        fb->n_regions = n;
        fb->regions = ids;
        req->body_case = ALLOCD__REQUEST__BODY_FREE_BATCH;
        req->free_batch = fb;
        return true;
}

/*
 * The late reply to an abandoned request: what it granted goes back with a
 * Free (alloc), a Detach (attach) or a FreeBatch (a batch) whose own reply is
 * dropped in turn.  Returns whether p stays in the list, waiting for that reply.
 */
static bool answer_abandoned(struct alloc_client *c, struct pending *p, const Allocd__Reply *r) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Free fr = ALLOCD__FREE__INIT;
        Allocd__Detach dt = ALLOCD__DETACH__INIT;
        Allocd__FreeBatch fb = ALLOCD__FREE_BATCH__INIT;
        bool one = r->body_case == ALLOCD__REPLY__BODY_REGION && r->region && r->region->has_id;

        if (r->has_error && r->error != ALLOCD__ERROR__OK)
                return false;
        if (p->what == ALLOCD__REQUEST__BODY_ALLOC && one) {
                fr.has_region = true;
                fr.region = r->region->id;
                req.body_case = ALLOCD__REQUEST__BODY_FREE;
                req.free = &fr;
        } else if (p->what == ALLOCD__REQUEST__BODY_ATTACH && one) {
                dt.has_region = true;
                dt.region = r->region->id;
                req.body_case = ALLOCD__REQUEST__BODY_DETACH;
                req.detach = &dt;
        } else if (p->what != ALLOCD__REQUEST__BODY_ALLOC_BATCH || !give_back_batch(r, &req, &fb)) {
                return false;
        }
        req.has_id = true;
        req.id = p->id = ++c->next_id;
        p->what = req.body_case;
        if (one)
                region_table_drop(c->regions, r->region->id);
        send_quietly(c, &req);
        free(fb.regions);
        return !c->dead;
}

/*
 * Spares granted that no alloc will take (their wait timed out, spare.c): each goes back with a Free
 * that is listed nowhere, so that its OK is dropped as unsolicited.
 */
static void unwanted_spares(struct alloc_client *c, const Allocd__Reply *r) {
        const Allocd__RegionBatch *b = r->body_case == ALLOCD__REPLY__BODY_BATCH ? r->batch : NULL;
        /* Listed or in columns, as spare.c reads them; listed, each region with an id, its pool named or not. */
        size_t n = b ? (b->n_regions ? b->n_regions : client_batch_size(b))
                     : r->body_case == ALLOCD__REPLY__BODY_REGION && r->region;

        if (r->has_error && r->error != ALLOCD__ERROR__OK)
                return;
        for (size_t i = 0; i < n && !c->dead; i++) {
                Allocd__Request req = ALLOCD__REQUEST__INIT;
                Allocd__Free fr = ALLOCD__FREE__INIT;
                Allocd__Region g = b ? client_batch_region(b, i) : *r->region;
                if (!g.has_id)
                        continue;
                region_table_drop(c->regions, g.id);
                client_give_back_request(&req, ALLOCD__REQUEST__BODY_FREE, g.id, &fr, NULL);
                req.has_id = true;
                req.id = ++c->next_id;
                send_quietly(c, &req);
        }
}

static uint64_t now_ns(void) {
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t)t.tv_sec * 1000000000 + (uint64_t)t.tv_nsec;
}

ssize_t conn_recv(int sock, void *buf, size_t size, int *fds, size_t *nfds, int flags) {
        size_t max = *nfds;
        ssize_t n = wire_recv(sock, buf, size, fds, nfds, flags), m;

        if (n != -ECONNRESET)
                return n;
        *nfds = max;
        if ((m = wire_recv(sock, buf, size, fds, nfds, flags | MSG_DONTWAIT)) > 0)
                return m;
        if (m == 0 && *nfds)
                close(fds[0]);
        *nfds = 0;
        return n;
}

/*
 * A packet that arrives within spin_ns, read without sleeping; -EAGAIN if none did.  Yielding between
 * tries lets an allocd that shares this CPU run; where it has a CPU of its own, sched_yield returns at
 * once.
 */
static ssize_t spin_recv(struct alloc_client *c, uint64_t spin_ns, int *fd, size_t *nfds) {
        uint64_t end = now_ns() + spin_ns;
        ssize_t n;

        for (;;) {
                *nfds = 1;
                n = conn_recv(c->fd, c->rbuf, sizeof(c->rbuf), fd, nfds, MSG_DONTWAIT);
                if (n != -EAGAIN || now_ns() >= end)
                        return n;
                sched_yield();
        }
}

bool conn_deadline_passed(const struct timespec *deadline) {
        return ms_left(deadline) == 0;
}

/*
 * Waits until the socket has something to read, deadline (NULL: none) passes (0), or intr(data) says
 * to stop (-1); else 1.  Without the lock.  intr is asked before the first poll (a handler that ran
 * while the thread spun, or before it got here) and after each wake-up.
 */
static int wait_readable(int fd, const struct timespec *deadline, int (*intr)(void *), void *data) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int k, ms;

        for (;;) {
                if (intr && intr(data))
                        return -1;
                ms = deadline ? ms_left(deadline) : -1;
                if (intr && (ms < 0 || ms > INTR_POLL_MS))
                        ms = INTR_POLL_MS;
                k = poll(&pfd, 1, ms);
                if (k > 0 || (k < 0 && errno != EINTR))
                        return 1; /* a poll that failed otherwise: recvmsg says why */
                if (k == 0 && (!intr || (deadline && ms_left(deadline) == 0)))
                        return 0;
        }
}

int conn_read_one(struct alloc_client *c, const struct timespec *deadline, bool spin_first, bool interruptible) {
        struct wire_budget budget;
        int (*intr)(void *) = interruptible ? c->interrupted : NULL;
        void *intr_data = c->interrupted_data;
        int fd = -1, k = 1;
        size_t nfds = 1;
        ssize_t n = -EAGAIN;
        bool drain = deadline && ms_left(deadline) == 0; /* what has arrived, nothing more */
        bool adapt = c->spin_ns && !drain && spin_first; /* a request not spun for says nothing of spinning */
        uint64_t spin = adapt ? c->spin_now : 0, start = adapt ? now_ns() : 0;

        c->reading = true;
        pthread_mutex_unlock(&c->lock);
        if (spin)
                n = spin_recv(c, spin, &fd, &nfds);
        if (n == -EAGAIN) {
                if (deadline || intr)
                        k = wait_readable(c->fd, deadline, intr, intr_data);
                if (k > 0) {
                        nfds = 1;
                        n = conn_recv(c->fd, c->rbuf, sizeof(c->rbuf), &fd, &nfds, 0);
                }
        }
        pthread_mutex_lock(&c->lock);
        c->reading = false;
        /* A reply that came within spin_ns, spun for or not, says spinning pays on this connection. */
        if (start && n > 0)
                c->spin_now = now_ns() - start <= c->spin_ns ? c->spin_ns : c->spin_now / 2;
        if (k <= 0) {
                /* Another waiter, with a later deadline or not interrupted, may read instead. */
                if (c->sleepers)
                        pthread_cond_broadcast(&c->cond);
                return k == 0 ? 0 : -EINTR;
        }
        if (n <= 0) {
                /* 0 is the end of the stream, or an empty packet, whose fd is not wanted either. */
                if (n == 0 && nfds)
                        close(fd);
                if (n == -ENOBUFS) /* the kernel dropped the reply's fd (MSG_CTRUNC): the reply is lost with it */
                        conn_die(
                                c, -EMFILE,
                                "a reply's file descriptor could not be received (this process may have none left: "
                                "RLIMIT_NOFILE), and the reply was lost with it; the connection to allocd is given up");
                else
                        conn_die(c, n == 0 ? -ECONNRESET : (int)n, "the connection to allocd is gone");
        } else {
                /* allocd's batch replies unpack to 240 bytes a region and more; its replies are trusted that far. */
                wire_budget_init(&budget, 16 * WIRE_MAX_PACKET, NULL, 0);
                Allocd__Reply *r = allocd__reply__unpack(&budget.allocator, (size_t)n, c->rbuf);
                struct pending *p = NULL, **pp = &c->pending;
                if (!r)
                        conn_die(c, -EPROTO, "allocd sent a reply this library cannot decode");
                else
                        for (; (p = *pp) && (p->reply || p->id != r->id); pp = &p->next)
                                ;
                if (p) {
                        uint64_t confirms = p->confirms; /* p may be freed below */
                        struct map_error scratch = {0}, *map = p->abandoned || p->pipelined ? &scratch : &p->map;
                        if (nfds) {
                                bool region = r->body_case == ALLOCD__REPLY__BODY_REGION && r->region->region_fd;
                                map->err = region ? region_table_map(c->regions, r, fd, map->msg, sizeof(map->msg))
                                                  : pool_table_map(c->pools, r, fd, map->msg, sizeof(map->msg));
                                map->region_mapped = region && map->err == 0;
                        }
                        if (p->pipelined) {
                                bool kept = p->renew && conn_spare_answered(c, p, r, map);
                                *pp = p->next;
                                if (p->renew && !kept)
                                        unwanted_spares(c, r);
                                conn_pipelined_answered(c, p, r);
                                if (!kept)
                                        allocd__reply__free_unpacked(r, NULL);
                        } else if (!p->abandoned) {
                                p->reply = r;
                        } else {
                                if (!answer_abandoned(c, p, r)) {
                                        *pp = p->next;
                                        free(p);
                                }
                                allocd__reply__free_unpacked(r, NULL);
                        }
                        conn_quiet_confirmed(c, confirms);
                } else {
                        /* Unsolicited: a refusal (id 0) ends the connection with its reason. */
                        if (r && r->has_error && r->error != ALLOCD__ERROR__OK) {
                                if (!c->dead)
                                        c->dead_said = true;
                                conn_die(c, -wire_error_errno(r->error), client_reply_words(r));
                                /* An operator closed it (Disconnect): coming back would undo that. */
                                c->given_up |= r->error == ALLOCD__ERROR__DISCONNECTED;
                        }
                        if (r)
                                allocd__reply__free_unpacked(r, NULL);
                }
                /* Mapped or not, the pool fd is not needed past this point: a mapping outlives its fd. */
                if (nfds)
                        close(fd);
        }
        if (c->sleepers)
                pthread_cond_broadcast(&c->cond);
        return 1;
}
