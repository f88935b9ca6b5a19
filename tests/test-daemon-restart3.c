/* SPDX-License-Identifier: MIT */
/*
 * allocd restarted at chosen moments of a client's exchange (restart-proxy.h, issue 18): while a
 * reconnection squares its regions, after a Hello's reclaim or an Alloc that allocd did and kept
 * but whose reply never came.  The client carries on with what it holds, and nothing is counted
 * twice.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "restart-checks.h"
#include "restart-proxy.h"

TestSuite(restart3, .fini = teardown, .timeout = 120);

#define POOL_A "[pool a]\nkind = host\nsize = 4M\n"

/* A client of pool a through proxy p with two regions of 8 KiB, their bytes written (seeds 40, 41). */
static struct alloc_client *two_regions(struct proxy *p, struct alloc_region *r) {
        struct alloc_client *k;
        struct alloc_status *st;

        sysd_start(&s, POOL_A);
        proxy_start(p, &s);
        cr_assert_eq(alloc_connect(&k, p->path, "restart3"), 0, "%s", alloc_last_error());
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(alloc_region_new(k, "a", 8192, NULL, &r[i]), 0, "%s", alloc_last_error());
                pattern(r[i].ptr, r[i].size, 40u + (unsigned)i);
        }
        cr_assert_eq(alloc_status(k, &st), 0, "%s", alloc_last_error());
        alloc_status_free(st);
        return k;
}

/* The client carries on holding r[0, n) with their bytes and nothing else; a restart keeps that. */
static void holds_just(struct proxy *p, struct alloc_client *k, const struct alloc_region *r, int n) {
        unsigned long long used = pool_used(k, "a");
        cr_assert(p->tripped, "allocd was not restarted where the test meant");
        cr_assert_eq(used, 8192u * (unsigned)n, "%s", sysd_log(&s));
        for (int i = 0; i < n; i++)
                cr_assert(pattern_ok(r[i].ptr, r[i].size, 40u + (unsigned)i));
        /* The allocd the proxy started dies with its thread (PR_SET_PDEATHSIG): this thread starts the next. */
        sysd_restart(&s, SIGKILL);
        cr_assert_eq(pool_used(k, "a"), 8192u * (unsigned)n, "%s", sysd_log(&s));
        for (int i = 0; i < n; i++)
                cr_assert_eq(alloc_region_free_sync(k, r[i].id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(k, "a"), 0);
        alloc_disconnect(k);
        proxy_stop(p);
}

/* A restart by kill, then allocd restarted again at the reconnection's packet after after that way (reply). */
static void reconnection_cut(bool reply, int after) {
        struct alloc_region r[2];
        struct proxy p;
        struct alloc_client *k = two_regions(&p, r);

        proxy_trip(&p, 2, reply, after);
        sysd_restart(&s, SIGKILL);
        holds_just(&p, k, r, 2);
}

/*
 * allocd dies again while a client squares its regions with the allocd it reconnected to (a crash
 * loop, or restarts in quick succession): the client reconnects once more and carries on with its
 * regions, rather than failing the call and, for good, its connection.
 */
Test(restart3, a_restart_while_a_client_squares_its_regions) {
        reconnection_cut(false, 1); /* the reconnection's Hello reclaims; its next request finds allocd gone */
}

/* allocd reclaimed the connection (and kept it) but went before its reply: the next allocd reclaims it again. */
Test(restart3, a_restart_after_a_reclaim_whose_reply_was_lost) {
        reconnection_cut(true, 0);
}

/* allocd made a region (and kept it) but went before the Alloc's reply: the Alloc is sent again, and the first given
 * back. */
Test(restart3, a_restart_after_an_alloc_whose_reply_was_lost) {
        struct alloc_region r[3];
        struct proxy p;
        struct alloc_client *k = two_regions(&p, r);

        proxy_trip(&p, 1, true, 4); /* Hello, two Allocs and a Status answered */
        cr_assert_eq(alloc_region_new(k, "a", 8192, NULL, &r[2]), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        pattern(r[2].ptr, r[2].size, 42);
        holds_just(&p, k, r, 3);
}

/* A Free that allocd never saw (reply: false), or did and kept (true), before it went: the region is freed once. */
static void free_cut(bool reply) {
        struct alloc_region r[2];
        struct proxy p;
        struct alloc_client *k = two_regions(&p, r);

        proxy_trip(&p, 1, reply, 4); /* Hello, two Allocs and a Status */
        cr_assert_eq(alloc_region_free_sync(k, r[1].id), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        holds_just(&p, k, r, 1);
}

Test(restart3, a_restart_before_a_free) {
        free_cut(false);
}

Test(restart3, a_restart_after_a_free_whose_reply_was_lost) {
        free_cut(true);
}

/* A Free that asked for a spare (liballoc-client(3), SPARES), allocd went before the reply: the spare is given back. */
Test(restart3, a_restart_after_a_free_that_asked_for_a_spare) {
        struct alloc_region r[2];
        struct proxy p;
        struct alloc_client *k = two_regions(&p, r);

        cr_assert_eq(alloc_set_spare(k, true), 0);
        proxy_trip(&p, 1, true, 4); /* Hello, two Allocs and a Status */
        cr_assert_eq(alloc_region_free(k, r[1].id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(k, "a", 8192, NULL, &r[1]), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        pattern(r[1].ptr, r[1].size, 41);
        holds_just(&p, k, r, 2);
}

/* An Attach whose reply was lost: sent again, and the reference too many given back (a Detach: the name stays). */
Test(restart3, a_restart_after_an_attach_whose_reply_was_lost) {
        struct alloc_region r[3];
        struct proxy p;
        struct alloc_client *k = two_regions(&p, r), *owner = daemon_connect(&s.d);
        struct alloc_region named;

        cr_assert_eq(
                alloc_region_new(owner, "a", 8192, &(struct alloc_opts){.name = "n", .flags = ALLOC_PERSIST}, &named),
                0, "%s", alloc_last_error());
        pattern(named.ptr, named.size, 42);
        cr_assert_eq(alloc_region_detach(owner, named.id), 0, "%s", alloc_last_error());
        pool_used(owner, "a");
        alloc_disconnect(owner);
        proxy_trip(&p, 1, true, 4); /* Hello, two Allocs and a Status */
        cr_assert_eq(alloc_region_attach(k, "n", NULL, &r[2]), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        cr_assert_eq(r[2].id, named.id);
        /* One reference of k's, and PERSIST: a detach leaves it to its name. */
        cr_assert_eq(alloc_region_detach(k, r[2].id), 0, "%s", alloc_last_error());
        struct alloc_client *c = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(c, "n", NULL, &named), 0, "the name went with the give-back: %s",
                     alloc_last_error());
        cr_assert(pattern_ok(named.ptr, named.size, 42));
        cr_assert_eq(alloc_region_free_sync(c, named.id), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        holds_just(&p, k, r, 2);
}

/* A client that holds regions and says nothing across three restarts reclaims them at its next call. */
Test(restart3, a_client_idle_across_three_restarts) {
        struct alloc_region r[2];
        struct proxy p;
        struct alloc_client *k = two_regions(&p, r);

        for (int i = 0; i < 3; i++)
                sysd_restart(&s, i == 1 ? SIGTERM : SIGKILL);
        p.tripped = true; /* no trip: the restarts are this test's */
        holds_just(&p, k, r, 2);
}

struct waiter {
        struct alloc_client *k;
        struct alloc_region r;
        int e;
};

static void *wait_for_room(void *arg) {
        struct waiter *w = arg;

        w->e = alloc_region_new(w->k, "a", 1 << 20, &(struct alloc_opts){.timeout_ms = 20000}, &w->r);
        return NULL;
}

/*
 * An Alloc waiting for room when allocd is killed (or stopped, which cancels it) waits again on the
 * next one, and gets the room a free there makes.
 */
static void wait_across(int sig, int restarts) {
        struct alloc_region full;
        struct waiter w = {0};
        pthread_t t;

        sysd_start(&s, POOL_A);
        struct alloc_client *x = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(x, "a", 4 << 20, NULL, &full), 0, "%s", alloc_last_error());
        w.k = daemon_connect(&s.d);
        cr_assert_eq(pthread_create(&t, NULL, wait_for_room, &w), 0);
        cr_assert_eq(wait_waiters(x, "a", 1), 1);
        for (int i = 0; i < restarts; i++) {
                sysd_restart(&s, sig);
                cr_assert_eq(wait_waiters(x, "a", 1), 1, "the Alloc does not wait on allocd %d: %s", i + 2,
                             sysd_log(&s));
        }
        cr_assert_eq(alloc_region_free_sync(x, full.id), 0, "%s", alloc_last_error());
        pthread_join(t, NULL);
        cr_assert_eq(w.e, 0, "%s", sysd_log(&s));
        cr_assert_eq(pool_used(x, "a"), 1 << 20);
        alloc_disconnect(w.k);
        alloc_disconnect(x);
}

Test(restart3, a_wait_for_room_carries_on_across_a_kill) {
        wait_across(SIGKILL, 1);
}

Test(restart3, a_wait_for_room_carries_on_across_a_stop) {
        wait_across(SIGTERM, 1);
}

/* A wait allocd cancels as it stops is sent again at every restart: the bound on sending again is for losses. */
Test(restart3, a_wait_for_room_carries_on_across_five_stops) {
        wait_across(SIGTERM, 5);
}

static void *attach_when_sealed(void *arg) {
        struct waiter *w = arg;

        w->e = alloc_region_attach(w->k, "unsealed", &(struct alloc_attach_opts){.timeout_ms = 20000}, &w->r);
        return NULL;
}

/*
 * An ALLOC_UNSEALED region across a kill: still reserved for its creator, an attach that waited
 * for the Seal waits on the next allocd, and the creator, reconnected, seals it; the attach gets
 * its bytes.
 */
Test(restart3, an_unsealed_region_is_sealed_after_a_kill) {
        struct alloc_region r;
        struct waiter w = {0};
        pthread_t t;

        sysd_start(&s, POOL_A);
        struct alloc_client *c = daemon_connect(&s.d);
        cr_assert_eq(
                alloc_region_new(c, "a", 8192, &(struct alloc_opts){.name = "unsealed", .flags = ALLOC_UNSEALED}, &r),
                0, "%s", alloc_last_error());
        pattern(r.ptr, r.size, 7);
        w.k = daemon_connect(&s.d);
        cr_assert_eq(pthread_create(&t, NULL, attach_when_sealed, &w), 0);
        usleep(100000); /* the attach waits for the Seal, then for the next allocd */
        sysd_restart(&s, SIGKILL);
        usleep(100000);
        cr_assert_eq(alloc_region_seal(c, r.id), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        pthread_join(t, NULL);
        cr_assert_eq(w.e, 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        cr_assert(pattern_ok(w.r.ptr, w.r.size, 7));
        alloc_disconnect(w.k);
        alloc_disconnect(c);
}

/* A placeholder that allocctl disconnects (after a kill, before its client came back) stays gone after the next kill.
 */
Test(restart3, a_placeholder_disconnected_stays_gone) {
        struct alloc_region r;
        struct alloc_status *st;
        char cmd[512];
        uint64_t serial = 0;

        sysd_start(&s, POOL_A);
        struct alloc_client *c = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(c, "a", 8192, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_status(c, &st), 0);
        for (size_t i = 0; i < st->nclients; i++)
                serial = st->clients[i].regions ? st->clients[i].serial : serial;
        alloc_status_free(st);
        sysd_restart(&s, SIGKILL);
        snprintf(cmd, sizeof(cmd), "%s --socket %s disconnect serial:%llu >/dev/null", ALLOCCTL_PATH, s.d.sock,
                 (unsigned long long)serial);
        cr_assert_eq(system(cmd), 0, "%s", sysd_log(&s));
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(wait_used(k, "a", 0), 0, "%s", sysd_log(&s));
        alloc_disconnect(k);
        sysd_restart(&s, SIGKILL);
        k = daemon_connect(&s.d);
        cr_assert_eq(pool_used(k, "a"), 0, "the placeholder's region is back: %s", sysd_log(&s));
        alloc_disconnect(k);
        alloc_disconnect(c);
}

static void *disconnect_thread(void *k) {
        alloc_disconnect(k);
        return NULL;
}

/*
 * A PERSIST region's Free that the killed allocd never read, and the connection ended after it: the
 * disconnect makes sure allocd took the Free (a reconnect squares it, as a call would), or the
 * region and its name stay for good once the placeholder is released (kill storm, h-kill:
 * left with its PERSIST reference alone).  kill_first: allocd is killed before the disconnect, else
 * while the disconnect waits for it (the Free sent, allocd stopped, the socket not closed yet).
 */
static void free_then_disconnect_across_a_kill(bool kill_first) {
        struct alloc_region r;
        pthread_t t;

        sysd_start(&s, "[daemon]\nreclaim_grace = 1s\n" POOL_A);
        struct alloc_client *c = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(c, "a", 8192, &(struct alloc_opts){.name = "kept", .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        freeze(s.d.pid);
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error()); /* pipelined: sent, not answered */
        if (kill_first)
                sysd_kill(&s, SIGKILL);
        cr_assert_eq(pthread_create(&t, NULL, disconnect_thread, c), 0);
        usleep(100000);
        if (!kill_first)
                sysd_kill(&s, SIGKILL);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        pthread_join(t, NULL);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(wait_used(k, "a", 0), 0, "a freed PERSIST region stays: %s", sysd_log(&s));
        struct alloc_region a;
        cr_assert_eq(alloc_region_attach(k, "kept", NULL, &a), -ENOENT, "its name stays");
        alloc_disconnect(k);
}

Test(restart3, a_free_the_killed_allocd_never_read_is_done_by_the_disconnect) {
        free_then_disconnect_across_a_kill(true);
}

Test(restart3, a_free_a_disconnect_left_unread_is_done_after_the_kill) {
        free_then_disconnect_across_a_kill(false);
}

/*
 * A connection holds its own PERSIST region twice (made, and attached by its name) and gives both
 * back, pipelined, a Free and a Detach, which the killed allocd never read: the squaring gives the
 * two references back, the first by the Free whichever of the two came first, so that the region
 * goes with its name.  (kill storm, h-persist: the Detach listed after the Free was found first, both
 * went back as Detaches, and the region stayed for good, named and PERSIST, its Free said done.)
 */
static void free_and_detach_across_a_kill(bool free_first) {
        struct alloc_region r, a;

        sysd_start(&s, POOL_A);
        struct alloc_client *c = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(c, "a", 8192, &(struct alloc_opts){.name = "twice", .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_attach(c, "twice", NULL, &a), 0, "%s", alloc_last_error());
        cr_assert_eq(a.id, r.id);
        freeze(s.d.pid);
        /* Pipelined: sent, not answered. */
        cr_assert_eq(free_first ? alloc_region_free(c, r.id) : alloc_region_detach(c, a.id), 0, "%s",
                     alloc_last_error());
        cr_assert_eq(free_first ? alloc_region_detach(c, a.id) : alloc_region_free(c, r.id), 0, "%s",
                     alloc_last_error());
        sysd_restart(&s, SIGKILL);
        cr_assert_eq(alloc_region_sync(c), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(pool_used(k, "a"), 0, "the freed PERSIST region stays: %s", sysd_log(&s));
        cr_assert_eq(alloc_region_attach(k, "twice", NULL, &a), -ENOENT, "its name stays");
        alloc_disconnect(k);
        alloc_disconnect(c);
}

Test(restart3, a_free_then_a_detach_of_one_region_the_killed_allocd_never_read) {
        free_and_detach_across_a_kill(true);
}

Test(restart3, a_detach_then_a_free_of_one_region_the_killed_allocd_never_read) {
        free_and_detach_across_a_kill(false);
}

static void *zeroed_alloc(void *arg) {
        struct alloc_region r;
        struct alloc_opts o = {.flags = ALLOC_ZERO | ALLOC_PERSIST};

        return (void *)(intptr_t)alloc_region_new(arg, "b", 256 << 20, &o, &r);
}

/*
 * A stop while a region is being zeroed: the Alloc is answered CANCELLED "allocd is stopping", as a
 * wait is (its client sends it again to the next allocd; not with ALLOCD_RECONNECT=0, as here), and
 * the region, no one's yet and not in the kept state, is not counted in the stop's "stopping with N
 * regions ... kept".  Should the zeroing end before the stop, the region is granted and counted.
 */
Test(restart3, a_stop_cancels_an_alloc_being_zeroed) {
        struct alloc_client *k, *w;
        struct alloc_region r;
        pthread_t t;
        void *ret;

        setenv("ALLOCD_RECONNECT", "0", 1);
        sysd_start(&s, POOL_A "[pool b]\nkind = host\nsize = 256M\n");
        cr_assert_eq(alloc_connect(&k, s.d.sock, "restart3"), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_connect(&w, s.d.sock, "watch"), 0, "%s", alloc_last_error());
        /* Written once, so that zeroing it again takes a while. */
        cr_assert_eq(alloc_region_new(k, "b", 256 << 20, NULL, &r), 0, "%s", alloc_last_error());
        memset(r.ptr, 0x5a, r.size);
        cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pthread_create(&t, NULL, zeroed_alloc, k), 0);
        while (pool_used(w, "b") == 0) /* the region is taken before it is zeroed */
                ;
        sysd_kill(&s, SIGTERM);
        pthread_join(t, &ret);
        if ((intptr_t)ret == 0) {
                cr_expect(strstr(sysd_log(&s), "stopping with 1 region held by"), "%s", sysd_log(&s));
        } else {
                cr_expect_eq((intptr_t)ret, -ECANCELED, "%s", strerror(-(int)(intptr_t)ret));
                cr_expect_null(strstr(sysd_log(&s), "stopping with"), "%s", sysd_log(&s));
        }
        alloc_disconnect(w);
        alloc_disconnect(k);
}
