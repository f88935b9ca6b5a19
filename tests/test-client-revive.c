/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client's reconnect (client/reconnect.c) against a fake allocd (fake-allocd.c) that hangs
 * up on a request, as an allocd that dies does, and then answers the new connection's reclaim and
 * its squaring (Held) wrongly.  The client must not trust those answers: the call fails, nothing
 * faults, and no fd is left behind.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "alloc/client.h"
#include "allocd.pb-c.h"
#include "fake-allocd.h"
#include "wire.h"
#include "fds.h"

/* How the fake answers a Held. */
enum held_answer {
        HELD_OK_WITHOUT_BODY,
        HELD_PAGES_FOR_EVER, /* each page one region past the last, and more to come */
        HELD_COUNT_FOR_EVER, /* one region the connection holds UINT32_MAX references to */
        HELD_HANGUP_ONCE,    /* allocd dies again at the first Held; the next one holds nothing */
        HELD_FLOOD,          /* answers of ids never asked, without end */
};

static struct {
        enum held_answer held;
        bool disconnects;   /* the first Seal is answered as an operator's Disconnect closes a connection */
        int lost_hellos;    /* the first ones are read and not answered: allocd stopped (a restart) */
        int evicted_hellos; /* the first ones are answered as an operator's Disconnect closes a connection */
        int hellos, seals, helds;
} fake;

static void held_page(const Allocd__Request *req, Allocd__Reply *reply) {
        static Allocd__HeldReply h;
        static uint64_t id;
        static uint32_t count;

        allocd__held_reply__init(&h);
        h.n_regions = h.n_counts = 1;
        h.regions = &id;
        h.counts = &count;
        if (fake.held == HELD_HANGUP_ONCE) {
                h.n_regions = h.n_counts = 0;
        } else if (fake.held == HELD_PAGES_FOR_EVER) {
                id = (req->held->has_after ? req->held->after : 0) + 1;
                count = 0;
                h.has_more = h.more = true;
        } else {
                id = 1ull << 32 | 5;
                count = UINT32_MAX;
        }
        reply->body_case = ALLOCD__REPLY__BODY_HELD;
        reply->held = &h;
}

static int answer(const Allocd__Request *req, Allocd__Reply *reply, int *fd, void *arg) {
        (void)fd;
        (void)arg;
        switch (req->body_case) {
        case ALLOCD__REQUEST__BODY_HELLO:
                if (fake.hellos++ < fake.lost_hellos)
                        return FAKE_HANGUP;
                if (fake.hellos <= fake.evicted_hellos) {
                        reply->id = 0;
                        reply->has_error = true;
                        reply->error = ALLOCD__ERROR__DISCONNECTED;
                        reply->message = "an operator disconnected this connection";
                        return FAKE_REPLY_HANGUP;
                }
                fake_hello_reclaimable(req, reply);
                return 0;
        case ALLOCD__REQUEST__BODY_SEAL:
                if (fake.disconnects && fake.seals++ == 0) {
                        /* The other thread's Seal comes meanwhile, and is left unread at the close. */
                        usleep(300 * 1000);
                        reply->id = 0;
                        reply->has_error = true;
                        reply->error = ALLOCD__ERROR__DISCONNECTED;
                        reply->message = "an operator disconnected this connection";
                        return FAKE_REPLY_HANGUP;
                }
                /* The first dies with allocd; the one sent again is answered. */
                return fake.seals++ == 0 ? FAKE_HANGUP : 0;
        case ALLOCD__REQUEST__BODY_HELD:
                if (fake.held == HELD_HANGUP_ONCE && fake.helds++ == 0)
                        return FAKE_HANGUP;
                if (fake.held == HELD_FLOOD) {
                        reply->id += 1000;
                        return FAKE_FLOOD;
                }
                if (fake.held == HELD_OK_WITHOUT_BODY) {
                        reply->has_error = true;
                        reply->error = ALLOCD__ERROR__OK;
                        return 0;
                }
                held_page(req, reply);
                return 0;
        default:
                return 0;
        }
}

/* Sockets open in this process: what a reconnect could leak. */
static int count_sockets(void) {
        return fds_open((const char *const[]){"socket:", NULL});
}

static void setup(void) {
        setenv("ALLOCD_RECONNECT", "1s", 1);
}

TestSuite(revive, .init = setup, .timeout = 30);

/* A call cut by the hang-up, made again on a connection whose squaring allocd answers with held: it fails. */
static void squaring_refused(enum held_answer held) {
        struct fake_allocd f;
        struct alloc_client *c;
        struct timespec t0, t1;
        int before = count_sockets(), r;

        fake.held = held;
        fake_allocd_start(&f, answer, NULL);
        cr_assert_eq(alloc_connect(&c, f.path, NULL), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_set_timeout(c, 300), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = alloc_region_seal(c, 7);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        cr_assert_lt(r, 0, "the squaring was refused, yet the call went on");
        /* The squaring as a whole is bounded: by ALLOCD_RECONNECT here, the longer of it and the timeout. */
        cr_assert_lt(t1.tv_sec - t0.tv_sec, 5, "the squaring went on for %ld s", (long)(t1.tv_sec - t0.tv_sec));
        cr_assert_eq(fake.hellos, 2, "no reconnect: %s", alloc_last_error());
        alloc_disconnect(c);
        fake_allocd_stop(&f);
        cr_assert_eq(count_sockets(), before);
}

/* An OK that is no HeldReply: the client read its page from a NULL body. */
Test(revive, a_held_answered_by_an_ok_without_a_page) {
        squaring_refused(HELD_OK_WITHOUT_BODY);
}

/* Pages that never end (allocd lists each region once): the squaring would ask for ever, the lock held. */
Test(revive, held_pages_that_never_end) {
        squaring_refused(HELD_PAGES_FOR_EVER);
}

/* UINT32_MAX references to give back, one round trip each: the squaring would give back for ever. */
Test(revive, a_held_count_that_never_ends) {
        squaring_refused(HELD_COUNT_FOR_EVER);
}

/*
 * Answers to no request on the new connection, one after another: nothing else was sent on it,
 * so the first is allocd's mistake, not a reply to wait past (the wait would never end, the lock held).
 */
Test(revive, answers_to_no_request_while_squaring) {
        squaring_refused(HELD_FLOOD);
}

static void *seal_8(void *arg) {
        return (void *)(intptr_t)alloc_region_seal(arg, 8);
}

/*
 * An operator's Disconnect closes the connection with a request of the client's still unread: the
 * socket then reports a reset before allocd's reason.  The client reads the reason and stays closed
 * (a reconnect would undo the Disconnect), in every thread that waited.
 */
Test(revive, a_disconnect_with_requests_unread_is_not_undone) {
        struct fake_allocd f;
        struct alloc_client *c;
        pthread_t t;
        void *other;
        int r;

        fake.disconnects = true;
        fake_allocd_start(&f, answer, NULL);
        cr_assert_eq(alloc_connect(&c, f.path, NULL), 0, "%s", alloc_last_error());
        cr_assert_eq(pthread_create(&t, NULL, seal_8, c), 0);
        usleep(100 * 1000);
        r = alloc_region_seal(c, 7);
        cr_assert_eq(pthread_join(t, &other), 0);
        cr_assert_eq(r, -ECONNRESET, "%d: %s", r, alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "operator"), "%s", alloc_last_error());
        cr_assert_eq((intptr_t)other, -ECONNRESET);
        cr_assert_eq(fake.hellos, 1, "the client reconnected");
        alloc_disconnect(c);
        /* The fake serves a connection after its hang-up: one that closes at once ends it. */
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f.path);
        cr_assert_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(s);
        fake_allocd_stop(&f);
}

/*
 * allocd dies again while the new connection squares its regions (restarts in quick succession):
 * the squaring starts over on a third connection, the call goes on there, and the sockets of the
 * two lost ones are closed.
 */
Test(revive, a_reconnect_cut_in_the_middle_of_its_squaring_starts_over) {
        struct fake_allocd f;
        struct alloc_client *c;
        int before = count_sockets();

        fake.held = HELD_HANGUP_ONCE;
        fake_allocd_start(&f, answer, NULL);
        cr_assert_eq(alloc_connect(&c, f.path, NULL), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_seal(c, 7), 0, "%s", alloc_last_error());
        cr_assert_eq(fake.hellos, 3);
        cr_assert_eq(fake.helds, 2);
        /* The fake's listener, the client's socket and the fake's end of it: none of the lost ones. */
        cr_assert_eq(count_sockets(), before + 3, "%d sockets", count_sockets() - before);
        alloc_disconnect(c);
        fake_allocd_stop(&f);
        cr_assert_eq(count_sockets(), before);
}

/*
 * allocd accepted the connection and stopped before it answered the Hello (a restart): the socket
 * took the connection, so the next allocd will take a new one, and alloc_connect makes it, within
 * ALLOCD_RECONNECT; with ALLOCD_RECONNECT=0 it fails at once, -ECONNRESET.
 */
Test(revive, a_connection_lost_before_its_hello_is_answered_is_made_again) {
        struct fake_allocd f;
        struct alloc_client *c;
        int before = count_sockets();

        fake_allocd_start(&f, answer, NULL);
        /* An allocd that never answers: tried for ALLOCD_RECONNECT, and said so. */
        fake.lost_hellos = 1000;
        setenv("ALLOCD_RECONNECT", "200ms", 1);
        cr_expect_eq(alloc_connect(&c, f.path, NULL), -ECONNRESET);
        cr_expect(strstr(alloc_last_error(), "closed each connection before it answered its Hello, for 200 ms"), "%s",
                  alloc_last_error());
        cr_expect_gt(fake.hellos, 3, "tried %d times in 200 ms", fake.hellos);
        fake.hellos = 0;
        fake.lost_hellos = 1;
        setenv("ALLOCD_RECONNECT", "0", 1);
        cr_expect_eq(alloc_connect(&c, f.path, NULL), -ECONNRESET, "ALLOCD_RECONNECT=0: %s", alloc_last_error());
        cr_expect_eq(fake.hellos, 1);
        fake.hellos = 0;
        setenv("ALLOCD_RECONNECT", "1s", 1);
        cr_assert_eq(alloc_connect(&c, f.path, NULL), 0, "%s", alloc_last_error());
        cr_expect_eq(fake.hellos, 2, "the Hello was not said again on a new connection");
        /* The fake's listener, the client's socket and the fake's end of it: not the lost one. */
        cr_expect_eq(count_sockets(), before + 3, "%d sockets", count_sockets() - before);
        alloc_disconnect(c);
        fake_allocd_stop(&f);
        cr_assert_eq(count_sockets(), before);
}

/*
 * An operator's Disconnect (allocctl disconnect PID) can close a connection whose Hello allocd has
 * not read yet: allocd says so (DISCONNECTED, -ECONNRESET) and closes it.  That is no restart:
 * alloc_connect fails, as a call on a connection so closed does, rather than undo the operator's
 * Disconnect with a new connection.
 */
Test(revive, a_connection_an_operator_disconnects_before_its_hello_is_answered_is_not_made_again) {
        struct fake_allocd f;
        struct alloc_client *c;
        int before = count_sockets();

        fake_allocd_start(&f, answer, NULL);
        fake.evicted_hellos = 1;
        cr_expect_eq(alloc_connect(&c, f.path, NULL), -ECONNRESET, "%s", alloc_last_error());
        cr_expect(strstr(alloc_last_error(), "an operator disconnected this connection"), "%s", alloc_last_error());
        cr_expect_eq(fake.hellos, 1, "the Disconnect was undone: %d Hellos", fake.hellos);
        /* The fake serves the next connection: a new alloc_connect is the program's to make. */
        if (fake.hellos == 1) {
                cr_assert_eq(alloc_connect(&c, f.path, NULL), 0, "%s", alloc_last_error());
                cr_expect_eq(fake.hellos, 2);
        }
        alloc_disconnect(c);
        fake_allocd_stop(&f);
        cr_assert_eq(count_sockets(), before);
}
