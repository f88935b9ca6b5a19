/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client's connections made and ended: the socket, Hello, the
 * environment (ALLOCD_TIMEOUT, ALLOCD_SPIN, ALLOCD_QUIET, ALLOCD_SPARE, ALLOCD_RECONNECT) and the per-connection
 * settings.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "client-internal.h"
#include "connection.h"
#include "duration.h"
#include "kind-internal.h"
#include "text.h"
#include "wire.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_SPIN_US 50 /* alloc/client.h, alloc_set_spin: why this much */
/*
 * How long a lost connection is tried again: a systemctl restart (stop, then a start that restores
 * the state) takes seconds; a minute also covers a slow one, and a stop and start by hand.  allocd's
 * reclaim_grace default is twice this, so that a client that tries this long finds its regions.
 */
#define DEFAULT_RECONNECT_MS 60000

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

/* ALLOCD_SPIN, or the default. */
static int env_spin(uint32_t *ret) {
        const char *s = secure_getenv("ALLOCD_SPIN");

        *ret = DEFAULT_SPIN_US;
        if (!s || !*s)
                return 0;
        if (parse_duration_us(s, SPIN_MAX_US, ret) < 0)
                return client_fail(-EINVAL, "ALLOCD_SPIN=%s is not a duration of 0 to 10ms: write e.g. 50us or 0", s);
        return 0;
}

/*
 * A switch, 0 or 1, else def: ALLOCD_QUIET (pipelined frees may go unanswered where allocd allows
 * it; on by default), ALLOCD_SPARE (a free asks for a spare; off by default).
 */
static int env_switch(const char *name, bool def, bool *ret) {
        const char *s = secure_getenv(name);

        *ret = !s || !*s ? def : strcmp(s, "1") == 0;
        if (s && *s && strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
                return client_fail(-EINVAL, "%s=%s is neither 0 nor 1", name, s);
        return 0;
}

/* ALLOCD_RECONNECT: how long to try a lost connection again, or 0 for not at all. */
static int env_reconnect(uint32_t *ret) {
        const char *s = secure_getenv("ALLOCD_RECONNECT");

        *ret = DEFAULT_RECONNECT_MS;
        if (s && *s && parse_duration_ms(s, ret) < 0)
                return client_fail(-EINVAL,
                                   "ALLOCD_RECONNECT=%s is not a duration: write 0 (do not reconnect), 30s or 2m", s);
        return 0;
}

/*
 * The program's name as a client name allocd takes, so that no program is refused for its file's
 * name, which its user did not choose for allocd: cut to ALLOC_CLIENT_NAME_MAX bytes between
 * characters, what is not UTF-8 or a control character made '?'; "" (no name) stays "".
 */
static void default_name(char *buf, size_t size) {
        const char *p = program_invocation_short_name;

        snprintf(buf, size, "%.*s", (int)text_cut(p, ALLOC_CLIENT_NAME_MAX), p);
        text_sanitize(buf);
}

void conn_hello(struct alloc_client *c, Allocd__Hello *hello, bool reclaim) {
        hello->has_version = true;
        hello->version = WIRE_VERSION;
        hello->client_name = *c->name ? c->name : NULL; /* "" is no name (allocd refuses it as one) */
        hello->has_reclaim_serial = hello->has_reclaim_secret = reclaim && c->serial;
        hello->reclaim_serial = c->serial;
        hello->reclaim_secret.data = c->secret;
        hello->reclaim_secret.len = c->secret_len;
}

void conn_hello_done(struct alloc_client *c, const Allocd__HelloReply *h) {
        if (h->has_wait_timeout_ms)
                c->wait_ms = h->wait_timeout_ms;
        c->quiet = c->quiet_env && h->quiet;
        c->renew_ok = h->renew;
        c->spares_max = !h->renew ? 0 : h->has_spares_max && h->spares_max ? h->spares_max : 2;
        c->cancel_ok = h->has_cancel && h->cancel;
        c->goodbye_ok = h->has_goodbye && h->goodbye;
        c->serial = h->has_serial ? h->serial : 0;
        c->secret_len = h->has_secret && h->secret.len <= sizeof(c->secret) ? h->secret.len : 0;
        if (c->secret_len)
                memcpy(c->secret, h->secret.data, c->secret_len);
        else
                c->serial = 0; /* an allocd that gives no secret cannot be reclaimed from */
}

/*
 * fork()s so far in this process, counted in the child: a connection made before one is its parent's.
 * A count, not getpid(), which is a system call, on every request.
 */
static _Atomic uint64_t forks;
static pthread_once_t forks_once = PTHREAD_ONCE_INIT;

static void forked(void) {
        atomic_fetch_add(&forks, 1);
}

static void count_forks(void) {
        pthread_atfork(NULL, NULL, forked);
}

int conn_forked(const struct alloc_client *c) {
        if (c->forks == atomic_load_explicit(&forks, memory_order_relaxed))
                return 0;
        return client_fail(-EINVAL,
                           "this connection was made by the parent process before fork(): a child may not use it (it "
                           "shares the parent's socket), and makes its own with alloc_connect");
}

/* What the environment says for a new connection (alloc_connect). */
struct conn_env {
        uint32_t timeout_ms, spin_us, reconnect_ms;
        bool quiet, spare;
};

/*
 * One try of alloc_connect: a connection to allocd at socket_path, and its Hello answered.  *lost:
 * it failed because the connection was lost before the answer without a word from allocd (a
 * restart), not because allocd closed it saying why (an operator's Disconnect: -ECONNRESET too).
 */
static int connect_once(struct alloc_client **ret, const char *socket_path, const char *client_name,
                        const struct conn_env *e, bool *lost) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello hello = ALLOCD__HELLO__INIT;
        Allocd__Reply *reply;
        struct alloc_client *c;
        int r;

        *lost = false;
        strcpy(sa.sun_path, socket_path);
        c = calloc(1, sizeof(*c));
        if (!c)
                return client_fail(-ENOMEM, "out of memory");
        c->fd = -1;
        pthread_once(&forks_once, count_forks);
        c->pid = getpid();
        c->forks = atomic_load(&forks);
        strcpy(c->path, socket_path);
        c->wait_ms = DEFAULT_TIMEOUT_MS; /* until Hello says */
        pthread_mutex_init(&c->lock, NULL);
        /* Deadlines are on the monotonic clock: setting the time of day must not fire or stall them. */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cond, &ca);
        pthread_condattr_destroy(&ca);
        c->spin_ns = c->spin_now = (uint64_t)e->spin_us * 1000;
        c->pools = pool_table_new();
        c->regions = region_table_new();
        c->held = held_new();
        if (!c->pools || !c->regions || !c->held) {
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
        alloc_set_timeout(c, e->timeout_ms);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno == EAGAIN)
                        r = client_fail(-ETIME,
                                        "allocd at %s accepted no connection within %u ms (its backlog is full); is it "
                                        "stopped or overloaded? (the timeout is ALLOCD_TIMEOUT)",
                                        socket_path, e->timeout_ms);
                else
                        r = client_fail(-errno, "cannot connect to allocd at %s: %s; is allocd running?", socket_path,
                                        strerror(errno));
                alloc_disconnect(c);
                return r;
        }
        if (client_name) /* cut between characters: allocd then refuses it for its length, not as "not UTF-8" */
                snprintf(c->name, sizeof(c->name), "%.*s", (int)text_cut(client_name, sizeof(c->name) - 1),
                         client_name);
        else
                default_name(c->name, sizeof(c->name));
        conn_hello(c, &hello, false);
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &hello;
        r = client_call_for(c, &req, ALLOCD__REPLY__BODY_HELLO, "Hello", &reply);
        if (r < 0) {
                *lost = (r == -ECONNRESET || r == -EPIPE) && !c->dead_said;
                alloc_disconnect(c);
                return r;
        }
        c->quiet_env = e->quiet;
        c->spare_on = e->spare;
        conn_hello_done(c, reply->hello);
        allocd__reply__free_unpacked(reply, NULL);
        c->reconnect_ms = e->reconnect_ms; /* from now on: a Hello that fails is not tried again */
        *ret = c;
        return 0;
}

int alloc_connect(struct alloc_client **ret, const char *socket_path, const char *client_name) {
        struct sockaddr_un sa;
        char def[sizeof(sa.sun_path)];
        struct conn_env e;
        uint32_t wait = BACKOFF_FIRST_MS;
        uint64_t start = conn_now_ms();
        bool lost = false;
        int r;

        client_clear_error();
        if (!ret)
                return client_fail(-EINVAL, "alloc_connect: ret is NULL");
        *ret = NULL;
        /* An empty name would be sent as none (conn_hello): refused here, as allocd refused it. */
        if (client_name && !*client_name)
                return client_fail(-EINVAL,
                                   "client_name is 1-%d bytes of UTF-8 without control characters, or NULL "
                                   "for the program's name",
                                   ALLOC_CLIENT_NAME_MAX);
        /* "" is no file: connect() would reach the abstract address of zero bytes, which anyone may bind. */
        if (socket_path && !*socket_path)
                return client_fail(-EINVAL, "the socket path is empty: give allocd's socket, or NULL for the default");
        if (!socket_path) {
                if ((r = wire_default_socket(def, sizeof(def), true)) < 0)
                        return client_fail(r, "no allocd socket: ALLOCD_SOCKET is unset, " WIRE_SYSTEM_SOCKET
                                              " does not exist and XDG_RUNTIME_DIR is unset; set ALLOCD_SOCKET");
                socket_path = def;
        }
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                return client_fail(-ENAMETOOLONG, "socket path %s is too long", socket_path);
        if ((r = env_timeout(&e.timeout_ms)) < 0 || (r = env_spin(&e.spin_us)) < 0 ||
            (r = env_switch("ALLOCD_QUIET", true, &e.quiet)) < 0 ||
            (r = env_switch("ALLOCD_SPARE", false, &e.spare)) < 0 || (r = env_reconnect(&e.reconnect_ms)) < 0)
                return r;
        /*
         * A connection lost before its Hello was answered was accepted by an allocd that then stopped
         * without reading it, or died (a restart): the socket took it, so one is listening, and the
         * next allocd will answer a new one.  It holds nothing, so it is made again as a lost one is,
         * for ALLOCD_RECONNECT.  A connect refused (no socket at all) is not tried again, nor a
         * connection allocd closed saying why (an operator's Disconnect): a new one would undo it.
         */
        while ((r = connect_once(ret, socket_path, client_name, &e, &lost)) < 0 && lost) {
                if (conn_now_ms() - start + wait > e.reconnect_ms)
                        return e.reconnect_ms ? client_fail(r,
                                                            "allocd at %s closed each connection before it answered "
                                                            "its Hello, for %u ms; is it restarting in a loop? "
                                                            "(ALLOCD_RECONNECT says how long to try)",
                                                            socket_path, e.reconnect_ms)
                                              : r;
                conn_backoff(&wait);
        }
        return r;
}

int alloc_set_timeout(struct alloc_client *c, uint32_t timeout_ms) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};

        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "alloc_set_timeout: c is NULL");
        /* The socket's send timeout is the parent's too: a child leaves it alone. */
        if (conn_forked(c) < 0)
                return -EINVAL;
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

int alloc_set_spin(struct alloc_client *c, uint32_t spin_us) {
        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "alloc_set_spin: c is NULL");
        if (spin_us > SPIN_MAX_US)
                return client_fail(-EINVAL, "alloc_set_spin: %u us is more than the %u us a spin may take", spin_us,
                                   SPIN_MAX_US);
        pthread_mutex_lock(&c->lock);
        c->spin_ns = c->spin_now = (uint64_t)spin_us * 1000;
        pthread_mutex_unlock(&c->lock);
        return 0;
}

int alloc_set_interrupt(struct alloc_client *c, int (*interrupted)(void *data), void *data) {
        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "alloc_set_interrupt: c is NULL");
        pthread_mutex_lock(&c->lock);
        c->interrupted = interrupted;
        c->interrupted_data = data;
        pthread_mutex_unlock(&c->lock);
        return 0;
}

/* Whether a pipelined Free (or FreeBatch) is listed still: allocd has not said it took it. */
static bool frees_unconfirmed(struct alloc_client *c) {
        bool any = false;

        pthread_mutex_lock(&c->lock);
        for (const struct pending *p = c->pending; p && !any; p = p->next)
                any = p->pipelined && p->what != ALLOCD__REQUEST__BODY_DETACH;
        pthread_mutex_unlock(&c->lock);
        return any;
}

/*
 * Whether allocd may hold anything for the connection: a region, a request of it not answered (a grant
 * may come), a spare.  A connection that holds nothing is not kept across a restart, so its close
 * leaves nothing behind, and needs no Goodbye.
 */
static bool may_hold(struct alloc_client *c) {
        bool any;

        pthread_mutex_lock(&c->lock);
        any = held_count(c->held) || c->pending || c->spare.nask;
        pthread_mutex_unlock(&c->lock);
        return any;
}

/*
 * Replies already in (no call is in flight, so only abandoned and pipelined requests are left): a
 * grant to an abandoned request is given back before the socket closes, or the Goodbye goes (allocd
 * reads that Free first).  One still to come finds the socket closed, or the connection ended, and
 * allocd frees a PERSIST region it could not hand over; with a Goodbye, see alloc_disconnect.
 */
static void read_arrived(struct alloc_client *c) {
        pthread_mutex_lock(&c->lock);
        while (c->fd >= 0 && c->pending && !c->dead) {
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (!conn_read_one(c, &now, false, false))
                        break;
        }
        pthread_mutex_unlock(&c->lock);
}

/*
 * An abandoned Alloc that may still be answered, after request after (0: any); 0 for none.  Its
 * grant, a PERSIST region perhaps, goes back with a Free, which must reach allocd before the
 * Goodbye, after which allocd reads nothing.  An Attach's grant is a reference, which the Goodbye
 * releases.
 */
static uint64_t alloc_abandoned(struct alloc_client *c, uint64_t after) {
        uint64_t id = 0;

        pthread_mutex_lock(&c->lock);
        for (const struct pending *p = c->pending; p; p = p->next)
                if (p->abandoned && p->what == ALLOCD__REQUEST__BODY_ALLOC && p->id > after && (!id || p->id < id))
                        id = p->id;
        pthread_mutex_unlock(&c->lock);
        return id;
}

/*
 * req sent and its answer read, whatever it says (the callers below say what it gives them); false
 * where no answer was read (timed out, interrupted, the connection given up).
 */
static bool round_trip(struct alloc_client *c, Allocd__Request *req) {
        Allocd__Reply *reply;

        if (client_call(c, req, &reply, NULL) < 0)
                return false;
        allocd__reply__free_unpacked(reply, NULL);
        return true;
}

/*
 * A Sync round trip: allocd answers in order, so every reply to a request before it that does not
 * wait has been read by its end, and a grant among them given back (reader.c).
 */
static void sync_replies(struct alloc_client *c) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Sync y = ALLOCD__SYNC__INIT;

        req.body_case = ALLOCD__REQUEST__BODY_SYNC;
        req.sync = &y;
        round_trip(c, &req);
}

/*
 * A Cancel of request id, and its answer: a grant allocd made before it read the Cancel is read
 * before that answer (and given back, reader.c); one waiting for room, or being zeroed, ends
 * ungranted.  Sent again after a reconnect, it finds nothing (NOT_FOUND): the wait went with the
 * allocd that had it.  The answer's error (ALLOCD__ERROR__OK, NOT_FOUND, ...), or a negative errno
 * value where none was read.
 */
static int cancel(struct alloc_client *c, uint64_t id) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Cancel k = ALLOCD__CANCEL__INIT;
        Allocd__Reply *reply;
        int r;

        k.has_request = true;
        k.request = id;
        req.body_case = ALLOCD__REQUEST__BODY_CANCEL;
        req.cancel = &k;
        if ((r = client_call(c, &req, &reply, NULL)) < 0)
                return r;
        r = reply->has_error ? (int)reply->error : ALLOCD__ERROR__OK;
        allocd__reply__free_unpacked(reply, NULL);
        return r;
}

/* Whether the abandoned Alloc *arg has had its answer (its grant read and given back, or a refusal). */
static bool alloc_answered(const struct alloc_client *c, const void *arg) {
        for (const struct pending *p = c->pending; p; p = p->next)
                if (p->abandoned && p->what == ALLOCD__REQUEST__BODY_ALLOC && p->id == *(const uint64_t *)arg)
                        return false;
        return true;
}

/*
 * A Cancel of Alloc id answered NOT_FOUND while its answer has not come: an allocd from before a
 * Cancel ended a zeroing (protocol.md, "Cancelling a wait") is zeroing its region, and grants it
 * when done, perhaps after the Goodbye went.  Its answer is waited for, within the connection's
 * timeout, so that the grant is given back first.  A reconnect meanwhile forgets the request: the
 * zeroing went with the allocd that had it.
 */
static void await_zeroed(struct alloc_client *c, uint64_t id) {
        struct timespec deadline;

        pthread_mutex_lock(&c->lock);
        bool timed = conn_plain_deadline(c, &deadline);
        conn_await(c, alloc_answered, &id, timed ? &deadline : NULL, false);
        pthread_mutex_unlock(&c->lock);
}

/*
 * Goodbye, and its OK: allocd has released the connection and kept that in its state, so no restart
 * brings it back as a placeholder (its process may live on for long).  Its OK also says every quiet
 * Free before it was taken, as a Sync's would.  A connection lost before the OK is made again and
 * squared, as for any call, and the Goodbye said again; an allocd that does not know it (one went
 * back to meanwhile) answers INVALID, and the close does the rest.
 */
static void goodbye(struct alloc_client *c) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Goodbye g = ALLOCD__GOODBYE__INIT;

        req.body_case = ALLOCD__REQUEST__BODY_GOODBYE;
        req.goodbye = &g;
        round_trip(c, &req);
}

struct alloc_client *alloc_disconnect(struct alloc_client *c) {
        bool owner;

        if (!c)
                return NULL;
        /*
         * A child of fork() has a copy of the socket: it reads nothing from it (the replies are the
         * parent's) and only closes its copy.  The parent ends the connection for both, with a
         * shutdown: closing its own copy would leave allocd a socket still open in the child, and the
         * lease with it.
         */
        owner = c->pid == getpid();
        /* Kinds carve this connection's mappings, which are about to go: they go first (alloc_kind(3)). */
        kind_connection_closing(c);
        if (owner && c->goodbye_ok && may_hold(c)) {
                /*
                 * A close alone, which allocd is killed before it reads, leaves the connection in the
                 * state: the next allocd keeps its regions for as long as this process lives.
                 */
                read_arrived(c);
                pthread_mutex_lock(&c->lock);
                c->closing = true;
                pthread_mutex_unlock(&c->lock);
                /*
                 * Rare (a call timed out or was interrupted): an Alloc allocd may still answer is
                 * cancelled first, one round trip each, so that its grant is read, and given back,
                 * before the Goodbye goes: one granted between a Sync's answer and the Goodbye (it
                 * waited for room, or was zeroed) would be read after it, and its Free never read.
                 * An allocd without Cancel gets the Sync, which narrows that window to the
                 * Goodbye's own round trip, and so does a Cancel whose answer did not come (allocd
                 * stopped past the timeout): the Sync's answer says it was read.  An older allocd
                 * whose Cancel does not end a zeroing answers it NOT_FOUND: the grant is then
                 * waited for (await_zeroed).  One restarted meanwhile had its waits end with it,
                 * and the reconnect's squaring gives back what it granted.
                 */
                bool unsure = !c->cancel_ok;
                for (uint64_t id = 0; c->cancel_ok && (id = alloc_abandoned(c, id));) {
                        int k = cancel(c, id);
                        unsure |= k < 0;
                        if (k == ALLOCD__ERROR__NOT_FOUND)
                                await_zeroed(c, id);
                }
                if (unsure && alloc_abandoned(c, 0))
                        sync_replies(c);
                goodbye(c);
        } else {
                /*
                 * A Free allocd has not confirmed may never reach it: allocd killed before it read the
                 * Free (before or after this close) has its successor hold the region in the
                 * connection's name, and a hang-up gives back references, not PERSIST or the name, so
                 * a PERSIST region freed here would stay for good.  So its Sync is waited for, and a
                 * connection lost meanwhile is made again and squared (reconnect.c), as any call
                 * would; a Detach needs none of this.
                 */
                if (owner && frees_unconfirmed(c))
                        client_sync(c);
                if (owner)
                        read_arrived(c);
        }
        pthread_mutex_lock(&c->lock);
        conn_spare_forget(c); /* allocd releases it with the connection */
        pthread_mutex_unlock(&c->lock);
        if (c->fd >= 0 && owner)
                shutdown(c->fd, SHUT_RDWR);
        if (c->fd >= 0)
                close(c->fd);
        for (struct pending *p = c->pending, *next; p; p = next) {
                next = p->next;
                free(p);
        }
        c->pools = pool_table_free(c->pools);
        c->regions = region_table_free(c->regions);
        c->held = held_free(c->held);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}
