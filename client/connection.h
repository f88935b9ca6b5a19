/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_CONNECTION_H
#define ALLOC_CONNECTION_H

/*
 * A connection's insides, shared by the files that make it work:
 * transport.c (requests and replies), pipeline.c (requests no one waits
 * for) and connect.c (making and ending it).  Nothing else sees them.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "client-internal.h"
#include "wire.h"

/*
 * wire_recv, and after a reset the packets allocd sent before it: allocd closed the socket with
 * requests of ours unread, and a SEQPACKET socket then says ECONNRESET once, ahead of what allocd
 * sent, such as why it closed (an operator's Disconnect, which a reconnect would undo; a refusal).
 */
ssize_t conn_recv(int sock, void *buf, size_t size, int *fds, size_t *nfds, int flags);

/* The longest a signal that lands while a thread waits goes unseen (alloc/client.h says so): reader.c, reconnect.c. */
#define INTR_POLL_MS 50

struct pending {
        uint64_t id;
        Allocd__Request__BodyCase what; /* abandoned: what was asked, so that a late grant is given back */
        bool abandoned;                 /* its caller timed out; the entry is on the heap */
        bool pipelined;                 /* no caller waits (client_send_pipelined); the entry is on the heap */
        bool sending;                   /* pipelined: its sender is in wire_send, and frees it once back */
        bool answered;                  /* pipelined: answered while sending; its sender frees it */
        const uint64_t *ids;            /* pipelined: the regions it gives back, n of them */
        size_t n;
        uint64_t sent;     /* pipelined and quiet: its place among the quiet requests sent (1, 2, ...); 0: not yet */
        uint64_t confirms; /* its reply says allocd accepted the quiet requests with sent <= confirms */
        bool renew;        /* pipelined: a Free that asks for a spare (spare.c); always answered */
        Allocd__Reply *reply;
        bool forsaken; /* a give-back of ids no caller holds: refused or not known, they stay out of the table */
        bool restored; /* a give-back's refusal, read before a reconnect, whose ids its squaring put back in the table
                        */
        struct map_error map; /* the pool fd that came with the reply, if it could not be mapped */
        struct pending *next;
};

/*
 * Spares (spare.c, docs/protocol.md "Spares"): the shape they are of, and the Frees that asked for
 * them, oldest first, each with its answer once read.
 */
struct spare_ask {
        uint64_t req;   /* the Free's request id */
        uint64_t gen;   /* the connection's generation then: a reconnect since and its spares are gone */
        uint32_t asked; /* spares it asked for */
        uint64_t shape; /* struct spare's shape when it was listed: its spares are of that shape */
        bool answered;
        Allocd__Reply *reply; /* answered: the spares granted (a Region or a RegionBatch), or NULL */
        size_t taken;         /* of reply's regions */
        struct map_error map; /* the pool fd that came with it, if it could not be mapped */
};
struct spare {
        uint64_t last; /* the region the last alloc_region_new of this shape handed out; 0: none */
        char pool[ALLOC_POOL_NAME_MAX + 1];
        uint64_t size;
        struct alloc_opts opts; /* name NULL, format RAW, no PERSIST or UNSEALED */
        uint32_t depth;         /* spares asked or at hand of this shape, at most (spare.c) */
        uint32_t batch;         /* how many a Free asks for at once, at least */
        uint64_t shape;         /* bumped by each change of pool, size or opts */
        struct spare_ask ask[SPARES_AHEAD];
        size_t nask;
};

struct alloc_client {
        int fd;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t next_id;
        bool reading;
        int sleepers; /* threads in pthread_cond_wait */
        int dead;     /* 0, or the negative errno that ended the connection */
        char dead_msg[CLIENT_ERROR_MAX];
        bool dead_said; /* dead_msg is allocd's own words: dead's strerror would only blur them */
        struct pending *pending;
        struct pool_table *pools;
        struct region_table *regions; /* isolation = region pools' regions, each its own mapping */
        uint32_t timeout_ms;          /* each request's, beyond the wait it asks for; 0: none */
        uint32_t wait_ms;             /* allocd's wait_timeout, for an allocation that gives no timeout_ms */
        char path[108];               /* sizeof(sun_path), for messages */
        struct held *held;
        uint32_t npipelined; /* pipelined requests not answered yet */
        bool quiet;          /* allocd answers a pipelined request only to refuse it (Hello said so) */
        bool quiet_env;      /* ALLOCD_QUIET allows it */
        uint64_t quiet_sent; /* quiet requests sent so far: each request listed confirms those */
        int refused;         /* the first pipelined request allocd refused since client_sync, or 0 */
        uint32_t refused_more;
        char refused_msg[CLIENT_ERROR_MAX];
        /* reconnect.c: carrying on after allocd restarts */
        uint64_t gen;          /* bumped by each reconnect: a request sent before it has no reply coming */
        uint32_t senders;      /* threads in wire_send on fd without the lock: a reconnect waits for them */
        uint32_t reconnect_ms; /* ALLOCD_RECONNECT: how long a lost connection is tried again; 0: never */
        bool given_up;         /* reconnecting failed: dead stays, and calls fail at once */
        bool closing;          /* alloc_disconnect says Goodbye: reconnect only where a socket takes it */
        bool reviving;         /* a reconnect waits between tries without the lock: others wait for it */
        /*
         * An interrupt ended a reconnect's wait for its Hello's answer (reconnect.c): c->fd is that socket,
         * kept, and the next reconnect waits there for the answer to request hello_id (a reclaim or not).
         */
        bool hello_pending;
        bool hello_reclaim;
        uint64_t hello_id;
        int revived; /* the last reconnect's outcome for the calls it cut: 0, or -ESTALE (regions gone) */
        char revived_msg[CLIENT_ERROR_MAX];
        /* Times a reconnect started afresh (client_afresh): the region ids held before are gone, and reused. */
        _Atomic uint64_t afresh;
        uint64_t serial; /* Hello's: this connection's number and secret, to reclaim its regions with */
        uint8_t secret[32];
        size_t secret_len;
        char name[256];      /* the client name Hello gave (allocd refuses one past 63 bytes, cut here or not) */
        bool spare_on;       /* ALLOCD_SPARE, alloc_set_spare */
        bool renew_ok;       /* Hello said allocd understands Free.renew */
        uint32_t spares_max; /* renew_ok: spares one Free may ask for (HelloReply.spares_max) */
        struct spare spare;
        pid_t pid;      /* the process that made it: a child of fork() shares its socket (alloc_disconnect) */
        uint64_t forks; /* the process's fork() count when it was made (conn_forked) */
        int (*interrupted)(void *data); /* alloc_set_interrupt: whether a signal ends a call's wait */
        void *interrupted_data;
        bool cancel_ok;    /* Hello said allocd understands Cancel */
        bool goodbye_ok;   /* Hello said allocd understands Goodbye (alloc_disconnect) */
        uint64_t spin_ns;  /* poll the socket at most this long before sleeping for a reply */
        uint64_t spin_now; /* this long, next time: spin_ns while replies come within it */
        uint8_t rbuf[WIRE_MAX_PACKET];
};

/*
 * -EINVAL (alloc_last_error says why) in a child of fork() of the process that made c, which must not
 * speak on the socket it shares with its parent, nor read its parent's replies; else 0.
 */
int conn_forked(const struct alloc_client *c);
/* Why the connection is unusable, as a call's failure (alloc_last_error). */
int conn_fail_dead(const struct alloc_client *c);
/* The connection is unusable from now on; every call reports why.  Lock held. */
void conn_die(struct alloc_client *c, int r, const char *why);
/*
 * Sends one packet without the lock, as one of the senders a reconnect waits for before it replaces
 * fd (a SEQPACKET send is one packet, whole or not at all, whoever else sends); lock held.
 */
int conn_send(struct alloc_client *c, const void *buf, size_t len);
/*
 * conn_send's r when it failed without a hang-up (ENOBUFS, ENOMEM): nothing was sent, a SEQPACKET send being one
 * packet or none, and allocd has nothing to say about it, so the call fails (alloc_last_error says so) and the
 * connection carries on; 0 for anything else (sent, -EAGAIN, a hang-up).
 */
int conn_unsent(int r);
/* Takes p out of the list of requests waiting for a reply; lock held. */
void conn_unlist(struct alloc_client *c, struct pending *p);
/*
 * Reads one reply and files it under its id, spinning first (reader.c) if spin.  Called with the
 * lock held, returns with it held; 1 once one is read, 0 if deadline (NULL: none) passed with nothing
 * to read, and, where interruptible, -EINTR when c->interrupted, asked as it waits (reader.c),
 * said to stop.
 */
int conn_read_one(struct alloc_client *c, const struct timespec *deadline, bool spin, bool interruptible);
/*
 * Reads, or sleeps while another thread reads, until done(c, arg), the connection dies or deadline
 * (NULL: none) passes; lock held.  spin: as conn_read_one.
 */
void conn_await(struct alloc_client *c, bool (*done)(const struct alloc_client *c, const void *arg), const void *arg,
                const struct timespec *deadline, bool spin);
/* Whether deadline has passed. */
bool conn_deadline_passed(const struct timespec *deadline);
/* The connection's own deadline from now, for requests that wait for no room; false for none. */
bool conn_plain_deadline(const struct alloc_client *c, struct timespec *ret);
/*
 * reconnect.c: the connection of generation gen was lost: unless another thread did it already,
 * makes it again (ALLOCD_RECONNECT), reclaims its regions and squares the held table with them;
 * lock held.  0: carry on (a safe request may be sent again); -ESTALE: carry on, but the regions
 * the connection held are gone (alloc_last_error says why); -EINTR (interruptible: a call that
 * waits for allocd's answer): c->interrupted said to stop between tries or while a Hello waited
 * for its answer, and the connection stays lost for the next call to make again; else it stays
 * dead, and why.
 */
int conn_revive(struct alloc_client *c, uint64_t gen, bool interruptible);
/*
 * reconnect.c: the pause between tries to make a connection: the first BACKOFF_FIRST_MS, then
 * *wait_ms doubles up to BACKOFF_MAX_MS; conn_backoff sleeps it (not interruptible) and doubles it.
 */
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 1000
void conn_backoff(uint32_t *wait_ms);
/* Milliseconds of the monotonic clock. */
uint64_t conn_now_ms(void);
/* Whether req may be sent again on a new connection when its reply was lost (reconnect.c). */
bool conn_retry_safe(const Allocd__Request *req);
/* connect.c: Hello for this connection (reclaiming, with secret); and what its reply says, kept. */
void conn_hello(struct alloc_client *c, Allocd__Hello *hello, bool reclaim);
void conn_hello_done(struct alloc_client *c, const Allocd__HelloReply *h);
/* pipeline.c: the reply r to pipelined request p, out of the list already (p is freed); lock held. */
void conn_pipelined_answered(struct alloc_client *c, struct pending *p, const Allocd__Reply *r);
/*
 * spare.c: renew Free p, asking for *n spares of renew's shape, was listed: *n is cut to the room
 * left of the depth; false where none is left, or the shape is no longer the connection's, and the
 * Free is to ask for none.  Lock held.
 */
bool conn_spare_listed(struct alloc_client *c, const struct pending *p, const Allocd__Alloc *renew, uint32_t *n);
/* spare.c: renew Free p was never sent; lock held. */
void conn_spare_unlisted(struct alloc_client *c, const struct pending *p);
/* spare.c: the reply r to renew Free p came (map: its fd's mapping); true when r is kept as the spare. */
bool conn_spare_answered(struct alloc_client *c, const struct pending *p, Allocd__Reply *r,
                         const struct map_error *map);
/* spare.c: forgets the spare (alloc_disconnect: allocd releases it with the connection); lock held. */
void conn_spare_forget(struct alloc_client *c);
/* pipeline.c: a reply that confirms the quiet requests sent up to upto came; lock held. */
void conn_quiet_confirmed(struct alloc_client *c, uint64_t upto);

#endif
