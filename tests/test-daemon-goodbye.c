/* SPDX-License-Identifier: MIT */
/*
 * A connection's end across a restart (docs/protocol.md, "Goodbye" and "Reconnecting"):
 * alloc_disconnect's Goodbye, which allocd answers only once the release is in its kept state, so
 * that a kill at any moment of it leaves no placeholder behind for a process that lives on; and a
 * reconnection's Hello that the next allocd reads from the listening socket's queue long after the
 * client's timeout, which must reclaim the regions for the client, not release them.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "allocd.pb-c.h"
#include "restart-checks.h"
#include "restart-proxy.h"
#include "wire.h"

TestSuite(goodbye, .fini = teardown, .timeout = 120);

#define POOL_A "[pool a]\nkind = host\nsize = 4M\n"

/* A client of pool a at path holding one region of 8 KiB, its bytes written (seed 50), in allocd's state. */
static struct alloc_client *one_region(const char *path, struct alloc_region *r) {
        struct alloc_client *k;
        struct alloc_status *st;

        cr_assert_eq(alloc_connect(&k, path, "goodbye"), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(k, "a", 8192, NULL, r), 0, "%s", alloc_last_error());
        pattern(r->ptr, r->size, 50);
        cr_assert_eq(alloc_status(k, &st), 0, "%s", alloc_last_error());
        alloc_status_free(st);
        return k;
}

/* Nothing is held in pool a, and no connection a restart brought back is left, while this process lives. */
static void nothing_kept(void) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_status *st;

        cr_assert_eq(pool_used(k, "a"), 0, "a placeholder holds the region: %s", sysd_log(&s));
        cr_assert_eq(alloc_status(k, &st), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < st->nclients; i++)
                cr_assert(!st->clients[i].restored, "connection %llu is a placeholder: %s",
                          (unsigned long long)st->clients[i].serial, sysd_log(&s));
        alloc_status_free(st);
        alloc_disconnect(k);
}

static void *disconnecting(void *k) {
        alloc_disconnect(k);
        return NULL;
}

/*
 * The client disconnects just as allocd is killed, before allocd read it (allocd stopped, then
 * SIGKILLed): a close alone would stay in the state, and the next allocd keep the connection as a
 * placeholder for as long as this process lives.  The Goodbye is not answered, so the library
 * reconnects, reclaims and says it again.
 */
Test(goodbye, a_disconnect_that_allocd_is_killed_before_reading_leaves_no_placeholder) {
        struct alloc_region r;
        pthread_t t;

        sysd_start(&s, POOL_A);
        struct alloc_client *k = one_region(s.d.sock, &r);
        freeze(s.d.pid);
        pthread_create(&t, NULL, disconnecting, k);
        usleep(300 * 1000); /* its Goodbye (or its close) is in allocd's socket, unread */
        sysd_restart(&s, SIGKILL);
        pthread_join(t, NULL);
        nothing_kept();
        cr_assert(strstr(sysd_log(&s), "said goodbye"), "%s", sysd_log(&s));
        all_restored();
}

/*
 * allocd read the Goodbye, released the connection and kept that, and was killed before its OK went
 * out: the next allocd has nothing of the connection, the library's reclaim is refused, and nothing
 * is held.
 */
Test(goodbye, a_goodbye_allocd_kept_before_it_went_is_not_undone) {
        struct alloc_region r;
        struct proxy p;

        sysd_start(&s, POOL_A);
        proxy_start(&p, &s);
        struct alloc_client *k = one_region(p.path, &r);
        proxy_trip(&p, 1, true, 3); /* Hello, Alloc and Status answered: the Goodbye's OK is cut */
        alloc_disconnect(k);
        cr_assert(p.tripped, "no Goodbye was answered: %s", sysd_log(&s));
        nothing_kept();
        /* The allocd the proxy started dies with its thread (PR_SET_PDEATHSIG): this thread starts the next. */
        sysd_restart(&s, SIGKILL);
        nothing_kept();
        proxy_stop(&p);
}

struct call {
        struct alloc_client *k;
        int r;
        char err[512];
};

static void *status_call(void *arg) {
        struct call *c = arg;
        struct alloc_status *st;

        c->r = alloc_status(c->k, &st);
        snprintf(c->err, sizeof(c->err), "%s", c->r < 0 ? alloc_last_error() : "");
        if (c->r == 0)
                alloc_status_free(st);
        return NULL;
}

/*
 * allocd is down longer than the client's timeout, its listening socket kept (systemd's): the
 * reconnection's Hello waits in the socket's queue until the next allocd reads it.  A socket the
 * client had given up on and closed would have that allocd reclaim the connection for no one and
 * release it at the close; the client's next try then finds no placeholder, and its regions, still
 * mapped here, gone to the pool.
 */
Test(goodbye, a_reconnection_hello_read_late_still_reclaims_the_regions) {
        struct alloc_region r;
        pthread_t t;

        sysd_start(&s, POOL_A);
        setenv("ALLOCD_RECONNECT", "30s", 1);
        struct call c = {.k = one_region(s.d.sock, &r)};
        unsetenv("ALLOCD_RECONNECT");
        cr_assert_eq(alloc_set_timeout(c.k, 200), 0);
        sysd_kill(&s, SIGKILL);
        pthread_create(&t, NULL, status_call, &c);
        usleep(1500 * 1000); /* seven of the client's timeouts */
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        pthread_join(t, NULL);
        cr_assert_eq(c.r, 0, "%s; allocd: %s", c.err, sysd_log(&s));
        cr_assert_eq(pool_used(c.k, "a"), 8192, "%s", sysd_log(&s));
        cr_assert(pattern_ok(r.ptr, r.size, 50));
        cr_assert_eq(alloc_region_free_sync(c.k, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c.k, "a"), 0);
        alloc_disconnect(c.k);
}

static atomic_bool stop_now; /* what a signal handler would set */

static int stop_when_told(void *data) {
        (void)data;
        return atomic_load(&stop_now);
}

/*
 * As above, and an interrupt (alloc_set_interrupt) comes while the reconnection's Hello waits: the
 * call ends with -EINTR, the socket is kept, and the next call waits there for the answer that the
 * next allocd gives, reclaiming the regions (a second Hello on a new socket would find the
 * placeholder taken over by the first, which no one reads, and the regions gone).
 */
Test(goodbye, an_interrupt_ends_a_reconnection_hello_wait_and_the_next_call_waits_for_its_answer) {
        struct alloc_region r;
        struct timespec until;
        pthread_t t;

        sysd_start(&s, POOL_A);
        setenv("ALLOCD_RECONNECT", "30s", 1);
        struct call c = {.k = one_region(s.d.sock, &r)};
        unsetenv("ALLOCD_RECONNECT");
        cr_assert_eq(alloc_set_timeout(c.k, 200), 0);
        cr_assert_eq(alloc_set_interrupt(c.k, stop_when_told, NULL), 0);
        sysd_kill(&s, SIGKILL);
        pthread_create(&t, NULL, status_call, &c);
        usleep(500 * 1000); /* its Hello waits in the listening socket's queue */
        atomic_store(&stop_now, true);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        cr_assert_eq(pthread_timedjoin_np(t, NULL, &until), 0, "an interrupt did not end the Hello's wait");
        cr_assert_eq(c.r, -EINTR, "%s", c.err);
        cr_assert(strstr(c.err, "Hello"), "%s", c.err);
        atomic_store(&stop_now, false);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        cr_assert_eq(pool_used(c.k, "a"), 8192, "%s", sysd_log(&s));
        cr_assert(pattern_ok(r.ptr, r.size, 50));
        cr_assert_eq(alloc_region_free_sync(c.k, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c.k, "a"), 0);
        alloc_disconnect(c.k);
}

/* ---- the request itself, on a raw socket ---- */

static void send_body(int fd, uint64_t id, Allocd__Request__BodyCase body_case, void *body) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        uint8_t buf[WIRE_MAX_PACKET];

        req.has_id = true;
        req.id = id;
        req.body_case = body_case;
        req.hello = body; /* the oneof's members share one pointer */
        cr_assert_eq(wire_send(fd, buf, allocd__request__pack(&req, buf), NULL, 0, 0), 0);
}

/* The next reply (its fds closed), or NULL when allocd closed the connection. */
static Allocd__Reply *next_reply(int fd) {
        static uint8_t buf[WIRE_MAX_PACKET];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int fds[WIRE_MAX_FDS];
        size_t nfds = WIRE_MAX_FDS;

        cr_assert_eq(poll(&p, 1, 10000), 1, "allocd neither answered nor closed");
        ssize_t n = wire_recv(fd, buf, sizeof(buf), fds, &nfds, 0);
        /* allocd closed with requests of ours unread: the socket says so once, ahead of what allocd sent. */
        if (n == -ECONNRESET) {
                nfds = WIRE_MAX_FDS;
                n = wire_recv(fd, buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT);
        }
        while (nfds > 0)
                close(fds[--nfds]);
        if (n <= 0)
                return NULL;
        Allocd__Reply *r = allocd__reply__unpack(NULL, (size_t)n, buf);
        cr_assert_not_null(r);
        return r;
}

/* The next reply's error, or -1 when allocd closed the connection. */
static int next_error(int fd, uint64_t *id) {
        Allocd__Reply *r = next_reply(fd);
        int e;

        if (!r)
                return -1;
        e = r->has_error ? (int)r->error : 0;
        *id = r->id;
        allocd__reply__free_unpacked(r, NULL);
        return e;
}

Test(goodbye, allocd_answers_a_goodbye_once_released_and_then_closes) {
        Allocd__Hello h = ALLOCD__HELLO__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Goodbye g = ALLOCD__GOODBYE__INIT;
        uint64_t id;

        sysd_start(&s, POOL_A);
        /* Before Hello, as any request: PROTOCOL, and closed. */
        int fd = daemon_raw_connect(&s.d);
        send_body(fd, 1, ALLOCD__REQUEST__BODY_GOODBYE, &g);
        cr_assert_eq(next_error(fd, &id), ALLOCD__ERROR__PROTOCOL);
        cr_assert_eq(next_error(fd, &id), -1);
        close(fd);

        fd = daemon_raw_connect(&s.d);
        h.has_version = true;
        h.version = WIRE_VERSION;
        send_body(fd, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
        cr_assert_eq(next_error(fd, &id), 0);
        a.pool = "a";
        a.has_size = true;
        a.size = 8192;
        send_body(fd, 2, ALLOCD__REQUEST__BODY_ALLOC, &a);
        cr_assert_eq(next_error(fd, &id), 0);
        send_body(fd, 3, ALLOCD__REQUEST__BODY_GOODBYE, &g);
        cr_assert_eq(next_error(fd, &id), 0);
        cr_assert_eq(id, 3);
        /* Released by the time of the OK, with this socket still open: not at its close. */
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(pool_used(k, "a"), 0, "%s", sysd_log(&s));
        alloc_disconnect(k);
        cr_assert_eq(next_error(fd, &id), -1, "allocd did not close the connection after its OK");
        close(fd);
        sysd_restart(&s, SIGKILL);
        nothing_kept();
}

/* A Cancel ends an Alloc whose region is being zeroed: OK, then the Alloc's CANCELLED, and the region goes. */
Test(goodbye, a_cancel_ends_an_alloc_being_zeroed) {
        Allocd__Hello h = ALLOCD__HELLO__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Cancel k = ALLOCD__CANCEL__INIT;
        uint64_t id;

        sysd_start(&s, POOL_A "[pool b]\nkind = host\nsize = 256M\n");
        int fd = daemon_raw_connect(&s.d);
        h.has_version = true;
        h.version = WIRE_VERSION;
        send_body(fd, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
        cr_assert_eq(next_error(fd, &id), 0);
        a.pool = "b";
        a.has_size = a.has_flags = true;
        a.size = 128 << 20; /* zeroed off the loop, for far longer than the Cancel takes to follow */
        a.flags = ALLOCD__FLAG__ZERO | ALLOCD__FLAG__PERSIST;
        send_body(fd, 2, ALLOCD__REQUEST__BODY_ALLOC, &a);
        k.has_request = true;
        k.request = 2;
        send_body(fd, 3, ALLOCD__REQUEST__BODY_CANCEL, &k);
        cr_assert_eq(next_error(fd, &id), 0, "the Cancel was refused");
        cr_assert_eq(id, 3);
        cr_assert_eq(next_error(fd, &id), ALLOCD__ERROR__CANCELLED);
        cr_assert_eq(id, 2);
        struct alloc_client *w = daemon_connect(&s.d);
        cr_assert_eq(pool_used(w, "b"), 0, "%s", sysd_log(&s));
        alloc_disconnect(w);
        close(fd);
}

/* The size of the Region the next reply grants, or 0 for a reply without one; *err its error. */
static uint64_t next_region_size(int fd, int *err) {
        Allocd__Reply *r = next_reply(fd);
        uint64_t size = 0;

        cr_assert_not_null(r, "allocd closed the connection");
        *err = r->has_error ? (int)r->error : 0;
        if (r->body_case == ALLOCD__REPLY__BODY_REGION)
                size = r->region->size;
        allocd__reply__free_unpacked(r, NULL);
        return size;
}

/*
 * A hostile client's two Allocs under one id, both being zeroed: its Cancel ends the older, as it
 * would of two waiting (docs/protocol.md), and the newer is granted.
 */
Test(goodbye, a_cancel_of_two_zeroing_allocs_under_one_id_ends_the_older) {
        Allocd__Hello h = ALLOCD__HELLO__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Cancel k = ALLOCD__CANCEL__INIT;
        uint64_t id, size, granted = 0;
        int err, ncancelled = 0;

        sysd_start(&s, POOL_A "[pool b]\nkind = host\nsize = 512M\n");
        int fd = daemon_raw_connect(&s.d);
        h.has_version = true;
        h.version = WIRE_VERSION;
        send_body(fd, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
        cr_assert_eq(next_error(fd, &id), 0);
        a.pool = "b";
        a.has_size = a.has_flags = true;
        a.flags = ALLOCD__FLAG__ZERO;
        a.size = 256 << 20; /* the older */
        send_body(fd, 2, ALLOCD__REQUEST__BODY_ALLOC, &a);
        a.size = 128 << 20;
        send_body(fd, 2, ALLOCD__REQUEST__BODY_ALLOC, &a);
        k.has_request = true;
        k.request = 2;
        send_body(fd, 3, ALLOCD__REQUEST__BODY_CANCEL, &k);
        for (int i = 0; i < 3; i++) {
                size = next_region_size(fd, &err);
                ncancelled += err == ALLOCD__ERROR__CANCELLED;
                granted += size;
                cr_assert(err == 0 || err == ALLOCD__ERROR__CANCELLED, "error %d", err);
        }
        cr_assert_eq(ncancelled, 1);
        cr_assert_eq(granted, 128 << 20, "the Cancel ended the newer Alloc: granted %llu bytes",
                     (unsigned long long)granted);
        close(fd);
}

/*
 * allocd stopped for good, its socket gone (no systemd socket to start it again): the Goodbye finds
 * the connection lost and no socket to make it again on, and the disconnect returns at once rather
 * than try for ALLOCD_RECONNECT (a minute) as a call would.
 */
Test(goodbye, a_disconnect_with_no_allocd_to_reach_returns_at_once) {
        struct daemon d;
        struct alloc_client *k;
        struct alloc_region r;
        struct timespec t0, t1;

        daemon_start(&d, POOL_A);
        cr_assert_eq(alloc_connect(&k, d.sock, "goodbye"), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(k, "a", 8192, NULL, &r), 0, "%s", alloc_last_error());
        daemon_stop(&d);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        alloc_disconnect(k);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        cr_assert_lt(t1.tv_sec - t0.tv_sec, 5, "alloc_disconnect took %ld s", (long)(t1.tv_sec - t0.tv_sec));
}

static void *resume_later(void *arg) {
        usleep(100 * 1000);
        kill(*(pid_t *)arg, SIGCONT);
        return NULL;
}

/*
 * An Alloc of a named PERSIST region timed out (allocd stopped) and is answered only as the client
 * disconnects: its grant is given back with a Free, which must reach allocd before the Goodbye (allocd
 * reads nothing after it), or the region would stay, named, for good.
 */
Test(goodbye, a_persist_grant_that_comes_as_the_client_disconnects_is_given_back) {
        struct alloc_opts o = {.name = "late", .flags = ALLOC_PERSIST | ALLOC_NOWAIT};
        struct alloc_region r;
        pthread_t t;

        sysd_start(&s, POOL_A);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_set_timeout(k, 200), 0);
        freeze(s.d.pid);
        cr_assert_eq(alloc_region_new(k, "a", 8192, &o, &r), -ETIME, "%s", alloc_last_error());
        cr_assert_eq(alloc_set_timeout(k, 10000), 0);
        pthread_create(&t, NULL, resume_later, &s.d.pid);
        alloc_disconnect(k);
        pthread_join(t, NULL);
        struct alloc_client *w = daemon_connect(&s.d);
        cr_assert_eq(wait_used(w, "a", 0), 0, "the late grant stayed: %s", sysd_log(&s));
        cr_assert_eq(alloc_region_attach(w, "late", NULL, &r), -ENOENT);
        alloc_disconnect(w);
}

/* How many times needle occurs in text. */
static size_t count_of(const char *text, const char *needle) {
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/*
 * What happens just before the client sends its Goodbye: this file's send(), which liballoc-client's
 * reaches before libc's (the executable's definition comes first), runs at_goodbye once, on the
 * disconnecting thread, when the packet is a Goodbye.  The library is as shipped.
 */
static void (*_Atomic at_goodbye)(void);
extern ssize_t __interceptor_send(int, const void *, size_t, int) __attribute__((weak));

ssize_t send(int fd, const void *buf, size_t len, int flags) {
        static ssize_t (*real)(int, const void *, size_t, int);
        void (*fn)(void);

        if (atomic_load(&at_goodbye)) {
                Allocd__Request *r = allocd__request__unpack(NULL, len, buf);
                bool bye = r && r->body_case == ALLOCD__REQUEST__BODY_GOODBYE;
                if (r)
                        allocd__request__free_unpacked(r, NULL);
                if (bye && (fn = atomic_exchange(&at_goodbye, NULL)))
                        fn();
        }
        if (!real)
                real = __interceptor_send ? __interceptor_send
                                          : (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
        return real(fd, buf, len, flags);
}

static struct alloc_client *filler;
static struct alloc_region room;

/* The room that the waiting Alloc waits for comes back; up to 1 s for allocd to grant it (not if it was cancelled). */
static void room_comes_back(void) {
        cr_assert_eq(alloc_region_free_sync(filler, room.id), 0, "%s", alloc_last_error());
        for (int i = 0; i < 100 && pool_used(filler, "a") != 8192; i++)
                usleep(10 * 1000);
}

/*
 * A PERSIST Alloc the client gave up on (allocd stopped past its timeout) waits for room in allocd, and
 * the room comes back after the disconnect's last answer before the Goodbye and before allocd reads the
 * Goodbye: its grant reaches the client after the Goodbye went, and the Free the library sends for it
 * then is never read.  The disconnect cancels the wait first.
 */
Test(goodbye, a_persist_alloc_granted_from_the_wait_queue_as_the_goodbye_goes_is_not_kept) {
        struct alloc_opts o = {.name = "late-wait", .flags = ALLOC_PERSIST, .timeout_ms = 3000};
        struct alloc_region r;

        sysd_start(&s, POOL_A);
        filler = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(filler, "a", 4 << 20, NULL, &room), 0, "%s", alloc_last_error());
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_set_timeout(k, 200), 0);
        freeze(s.d.pid);
        cr_assert_eq(alloc_region_new(k, "a", 8192, &o, &r), -ETIME, "%s", alloc_last_error());
        cr_assert_eq(kill(s.d.pid, SIGCONT), 0);
        cr_assert_eq(wait_waiters(filler, "a", 1), 1, "the Alloc does not wait: %s", sysd_log(&s));
        cr_assert_eq(alloc_set_timeout(k, 10000), 0);
        at_goodbye = room_comes_back;
        alloc_disconnect(k);
        cr_assert_null(at_goodbye, "no Goodbye was sent");
        cr_assert_eq(wait_used(filler, "a", 0), 0, "the late grant stayed: %s", sysd_log(&s));
        cr_assert_eq(alloc_region_attach(filler, "late-wait", NULL, &r), -ENOENT);
        alloc_disconnect(filler);
}

/*
 * As above, the grant made and sent before the disconnect, and allocd killed (stopped first) while
 * the disconnect's Cancel waits for its answer: the Free the library sent for the grant it read is
 * lost with allocd, the next allocd holds the region for the connection's placeholder, and the
 * reconnection's squaring frees it, before the Goodbye is said again.
 */
Test(goodbye, a_late_persist_grant_read_as_allocd_is_killed_is_freed_by_the_reconnection) {
        struct alloc_opts o = {.name = "late-kill", .flags = ALLOC_PERSIST, .timeout_ms = 3000};
        struct alloc_region r;
        pthread_t t;

        sysd_start(&s, POOL_A);
        filler = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(filler, "a", 4 << 20, NULL, &room), 0, "%s", alloc_last_error());
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_set_timeout(k, 200), 0);
        freeze(s.d.pid);
        cr_assert_eq(alloc_region_new(k, "a", 8192, &o, &r), -ETIME, "%s", alloc_last_error());
        cr_assert_eq(kill(s.d.pid, SIGCONT), 0);
        cr_assert_eq(wait_waiters(filler, "a", 1), 1, "the Alloc does not wait: %s", sysd_log(&s));
        cr_assert_eq(alloc_region_free_sync(filler, room.id), 0, "%s", alloc_last_error());
        cr_assert_eq(wait_used(filler, "a", 8192), 8192, "the Alloc was not granted: %s", sysd_log(&s));
        alloc_disconnect(filler);
        cr_assert_eq(alloc_set_timeout(k, 10000), 0);
        freeze(s.d.pid);
        pthread_create(&t, NULL, disconnecting, k);
        usleep(300 * 1000); /* the grant read, its Free and the Cancel in allocd's socket, unread */
        sysd_restart(&s, SIGKILL);
        pthread_join(t, NULL);
        nothing_kept();
        struct alloc_client *w = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(w, "late-kill", NULL, &r), -ENOENT, "%s", sysd_log(&s));
        alloc_disconnect(w);
        all_restored();
}

static void zeroing_ends(void) {
        usleep(1000 * 1000); /* 128 MiB zeroed many times over */
}

/*
 * As above, for an Alloc whose region allocd zeroes off its loop: the zeroing ends after the
 * disconnect's last answer before the Goodbye, and before allocd reads the Goodbye.
 */
Test(goodbye, a_persist_alloc_zeroed_as_the_goodbye_goes_is_not_kept) {
        struct alloc_opts o = {.name = "late-zero", .flags = ALLOC_PERSIST | ALLOC_ZERO | ALLOC_NOWAIT};
        struct alloc_region r;

        sysd_start(&s, POOL_A "[pool b]\nkind = host\nsize = 256M\n");
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_set_timeout(k, 200), 0);
        freeze(s.d.pid);
        cr_assert_eq(alloc_region_new(k, "b", 128 << 20, &o, &r), -ETIME, "%s", alloc_last_error());
        cr_assert_eq(alloc_set_timeout(k, 10000), 0);
        at_goodbye = zeroing_ends;
        cr_assert_eq(kill(s.d.pid, SIGCONT), 0);
        alloc_disconnect(k);
        cr_assert_null(at_goodbye, "no Goodbye was sent");
        struct alloc_client *w = daemon_connect(&s.d);
        cr_assert_eq(wait_used(w, "b", 0), 0, "the late grant stayed: %s", sysd_log(&s));
        cr_assert_eq(alloc_region_attach(w, "late-zero", NULL, &r), -ENOENT);
        alloc_disconnect(w);
}

/*
 * A raw connection to a fresh allocd that said Hello, then an Alloc of 8192 bytes of pool a (flags) and a
 * Goodbye queued behind 2000 small replies it leaves unread (they fill the socket: each packet costs far
 * more than its bytes there); returns once allocd has served the Goodbye.
 */
static int goodbye_queued_on(uint32_t flags) {
        Allocd__Hello h = ALLOCD__HELLO__INIT;
        Allocd__Sync y = ALLOCD__SYNC__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Goodbye g = ALLOCD__GOODBYE__INIT;
        uint64_t id;
        size_t said = count_of(sysd_log(&s), "said goodbye");

        int fd = daemon_raw_connect(&s.d);
        h.has_version = true;
        h.version = WIRE_VERSION;
        send_body(fd, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
        cr_assert_eq(next_error(fd, &id), 0);
        for (uint64_t i = 0; i < 2000; i++)
                send_body(fd, 10 + i, ALLOCD__REQUEST__BODY_SYNC, &y);
        a.pool = "a";
        a.has_size = a.has_flags = true;
        a.size = 8192;
        a.flags = flags;
        send_body(fd, 2, ALLOCD__REQUEST__BODY_ALLOC, &a);
        send_body(fd, 3, ALLOCD__REQUEST__BODY_GOODBYE, &g);
        /* A request after the Goodbye, which allocd never reads. */
        send_body(fd, 4, ALLOCD__REQUEST__BODY_SYNC, &y);
        for (int i = 0; i < 200 && count_of(sysd_log(&s), "said goodbye") == said; i++)
                usleep(10 * 1000);
        cr_assert_gt(count_of(sysd_log(&s), "said goodbye"), said, "%s", sysd_log(&s));
        return fd;
}

static int goodbye_queued(uint32_t flags) {
        sysd_start(&s, POOL_A);
        return goodbye_queued_on(flags);
}

/*
 * A PERSIST grant queued behind replies the client has not read (its socket full) when its Goodbye
 * comes: the client sent the Goodbye before the grant was even sent, so the Free it would send for it
 * comes after the Goodbye, and is never read.  It goes at the Goodbye, while the client still reads
 * its replies, and its reply still goes out (naming a region that is gone).
 */
Test(goodbye, a_persist_grant_queued_at_a_goodbye_is_freed_at_the_goodbye) {
        int fd = goodbye_queued(ALLOCD__FLAG__PERSIST);
        struct alloc_client *k = daemon_connect(&s.d);
        uint64_t id = 0;

        cr_assert_eq(pool_used(k, "a"), 0, "the PERSIST grant no one can free stayed: %s", sysd_log(&s));
        for (int i = 0, e; i < 2000; i++)
                cr_assert_eq(e = next_error(fd, &id), 0, "reply %d: %d, id %llu", i, e, (unsigned long long)id);
        cr_assert_eq(next_error(fd, &id), 0);
        cr_assert_eq(id, 2, "the Alloc's reply is not the next one");
        cr_assert_eq(next_error(fd, &id), 0);
        cr_assert_eq(id, 3, "the Goodbye's OK is not the next one");
        cr_assert_eq(next_error(fd, &id), -1, "allocd did not close the connection after its OK");
        close(fd);
        alloc_disconnect(k);
}

/*
 * A Goodbye whose OK queues behind unread replies, with a request after it: allocd reads nothing more
 * from the connection, and must not be woken for it again and again meanwhile (it spun at full CPU
 * while the client read nothing).
 */
Test(goodbye, a_request_after_a_queued_goodbye_does_not_keep_allocd_busy) {
        int fd = goodbye_queued(0);
        double t0 = daemon_cpu_seconds(&s.d);
        usleep(1000 * 1000);
        double used = daemon_cpu_seconds(&s.d) - t0;
        cr_assert_lt(used * 1000, 200, "allocd used %.0f ms of CPU in 1 s while a said-goodbye connection read nothing",
                     used * 1000);
        close(fd);
}

/*
 * Connections that said Goodbye with their replies unread stay open until they read them: they count
 * against max_connections_per_uid and max_connections meanwhile.  Out of the count, one user's such
 * connections piled up past both, each an fd of allocd's, until accept failed for every user.
 */
Test(goodbye, a_queued_goodbye_still_counts_against_the_connection_limits) {
        uint64_t id;
        int fds[2];

        sysd_start(&s,
                   "[daemon]\nmax_connections_per_uid = 2\n" POOL_A); /* hello_timeout 10 s: the close frees the room */
        fds[0] = goodbye_queued_on(0);
        fds[1] = goodbye_queued_on(0);
        int fd = daemon_raw_connect(&s.d);
        cr_assert_eq(next_error(fd, &id), ALLOCD__ERROR__LIMIT, "a third connection was let in: %s", sysd_log(&s));
        close(fd);
        /* Once one of them is closed, its room is back. */
        close(fds[0]);
        for (int i = 0; i < 100; i++) {
                struct alloc_client *k;
                if (alloc_connect(&k, s.d.sock, "goodbye") == 0) {
                        alloc_disconnect(k);
                        close(fds[1]);
                        return;
                }
                usleep(10 * 1000);
        }
        cr_assert_fail("no room came back at the close: %s", sysd_log(&s));
}

/*
 * A connection that said Goodbye and never reads its replies is closed at hello_timeout: released
 * already, only it could close itself, and it held its uid's room for as long as it liked.
 */
Test(goodbye, a_queued_goodbye_left_unread_is_closed_at_hello_timeout) {
        uint64_t id;

        sysd_start(&s, "[daemon]\nmax_connections_per_uid = 1\nhello_timeout = 300ms\n" POOL_A);
        int fd = goodbye_queued_on(0);
        int other = daemon_raw_connect(&s.d);
        cr_assert_eq(next_error(other, &id), ALLOCD__ERROR__LIMIT, "a second connection was let in: %s", sysd_log(&s));
        close(other);
        for (int i = 0; i < 300; i++) {
                struct alloc_client *k;
                if (alloc_connect(&k, s.d.sock, "goodbye") == 0) {
                        alloc_disconnect(k);
                        cr_assert(
                                strstr(sysd_log(&s), "said Goodbye and did not read its replies within hello_timeout"),
                                "%s", sysd_log(&s));
                        close(fd);
                        return;
                }
                usleep(10 * 1000);
        }
        cr_assert_fail("the connection that said Goodbye was not closed in 3 s: %s", sysd_log(&s));
}

/*
 * A stop that keeps the state (SIGTERM) while a Goodbye's OK waits behind unread replies: the
 * release was kept at the Goodbye, so the next allocd brings back no placeholder for this process.
 */
Test(goodbye, a_queued_goodbye_at_a_restart_leaves_no_placeholder) {
        int fd = goodbye_queued(0);

        sysd_restart(&s, SIGTERM);
        nothing_kept();
        close(fd);
}
