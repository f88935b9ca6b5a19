/* SPDX-License-Identifier: MIT */
/*
 * alloc_set_interrupt: a signal ends a call that waits in allocd (an attach for a name, an
 * allocation for room), its wait in allocd is cancelled, and the connection carries on.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct daemon d;
static struct alloc_client *c, *k; /* c watches; k waits, with no timeout of its own */
static struct alloc_region fill[4];

static atomic_bool signalled; /* what a handler does: interrupted() answers from it */

static void on_signal(int sig) {
        (void)sig;
        atomic_store(&signalled, true);
}

/* A 16 KiB pool, filled by four 4 KiB regions; SIGUSR1 has a handler, without SA_RESTART. */
static void setup(void) {
        struct sigaction sa = {.sa_handler = on_signal};

        atomic_store(&signalled, false);
        cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
        daemon_start(&d, "[pool h]\nkind = host\nsize = 16K\n");
        c = daemon_connect(&d);
        k = daemon_connect(&d);
        cr_assert_eq(alloc_set_timeout(k, 0), 0);
        cr_assert_eq(alloc_set_spin(k, 0), 0);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &fill[i]), 0, "%s", alloc_last_error());
}

static void teardown(void) {
        alloc_disconnect(k);
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(client_interrupt, .init = setup, .fini = teardown, .timeout = 60);

static atomic_int asked; /* interrupted() calls that found a signal, which each takes */

static int stop(void *data) {
        if (!atomic_exchange(&signalled, false))
                return 0;
        atomic_fetch_add(&asked, 1);
        return *(const int *)data;
}

struct call {
        pthread_t thread;
        bool alloc;       /* an NOFAIL allocation, else an attach of "late" */
        bool raise_first; /* the signal comes before the call */
        int result;
        char error[512];
        atomic_bool calling, done;
};

static void *call_thread(void *arg) {
        struct call *t = arg;
        struct alloc_attach_opts ao = {.timeout_ms = 10000}; /* far past the 2 s an interrupted call may take */
        struct alloc_opts o = {.flags = ALLOC_NOFAIL};
        struct alloc_region r;

        if (t->raise_first)
                raise(SIGUSR1);
        atomic_store(&t->calling, true);
        t->result = t->alloc ? alloc_region_new(k, "h", 4096, &o, &r) : alloc_region_attach(k, "late", &ao, &r);
        snprintf(t->error, sizeof(t->error), "%s", alloc_last_error());
        atomic_store(&t->done, true);
        return NULL;
}

/* Whether allocd counts want waiters within ms. */
static bool wait_waiting(uint64_t want, int ms) {
        for (int i = 0; i < ms / 10; i++) {
                if (pool_waiters(c, NULL) == want)
                        return true;
                usleep(10000);
        }
        return false;
}

/* Starts t, waits until allocd counts its wait, then signals its thread until asked counts a call. */
static void start_and_signal(struct call *t) {
        atomic_store(&asked, 0);
        cr_assert_eq(pthread_create(&t->thread, NULL, call_thread, t), 0);
        cr_assert(wait_waiting(1, 10000), "the call did not wait in allocd");
        for (int i = 0; i < 200 && !atomic_load(&asked); i++) {
                pthread_kill(t->thread, SIGUSR1);
                usleep(10000);
        }
        cr_assert(atomic_load(&asked) > 0, "interrupted() was never called");
}

static bool wait_done(struct call *t, int ms) {
        for (int i = 0; i < ms / 10 && !atomic_load(&t->done); i++)
                usleep(10000);
        return atomic_load(&t->done);
}

Test(client_interrupt, a_signal_ends_an_attach_and_its_wait_in_allocd) {
        static int yes = 1;
        struct call t = {0};
        struct alloc_region r;

        cr_assert_eq(alloc_set_interrupt(k, stop, &yes), 0);
        start_and_signal(&t);
        cr_assert(wait_done(&t, 2000), "the attach went on waiting");
        pthread_join(t.thread, NULL);
        cr_expect_eq(t.result, -EINTR, "%d: %s", t.result, t.error);
        cr_expect(strstr(t.error, "interrupted by a signal"), "%s", t.error);
        /* Well before the attach's own timeout: the Cancel ended it. */
        cr_expect(wait_waiting(0, 1000), "allocd still counts the wait");
        cr_expect_eq(alloc_region_free(c, fill[0].id), 0);
        cr_expect_eq(alloc_region_new(k, "h", 4096, NULL, &r), 0, "the connection is unusable: %s", alloc_last_error());
}

Test(client_interrupt, an_attach_goes_on_when_interrupted_says_so) {
        static int no = 0;
        struct call t = {0};
        struct alloc_opts o = {.name = "late"};
        struct alloc_region r;

        cr_assert_eq(alloc_set_interrupt(k, stop, &no), 0);
        start_and_signal(&t);
        usleep(100000);
        cr_assert_not(atomic_load(&t.done), "the attach ended: %d (%s)", t.result, t.error);
        cr_assert_eq(alloc_region_free(c, fill[0].id), 0);
        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), 0, "%s", alloc_last_error());
        cr_assert(wait_done(&t, 5000), "the attach did not see the name");
        pthread_join(t.thread, NULL);
        cr_expect_eq(t.result, 0, "%d: %s", t.result, t.error);
}

/* Room made right after the signal may reach the allocation before its Cancel: the late grant goes back. */
Test(client_interrupt, an_interrupted_allocation_leaves_no_region) {
        static int yes = 1;
        struct call t = {.alloc = true};
        struct alloc_status *s;
        int i;

        cr_assert_eq(alloc_set_interrupt(k, stop, &yes), 0);
        start_and_signal(&t);
        cr_assert_eq(alloc_region_free(c, fill[0].id), 0);
        cr_assert(wait_done(&t, 2000), "the allocation went on waiting");
        pthread_join(t.thread, NULL);
        cr_expect_eq(t.result, -EINTR, "%d: %s", t.result, t.error);
        /* k's calls read what is left to read on it: a late grant, given back. */
        for (i = 0; i < 500 && (pool_used(c, "h") != 3 * 4096 || pool_waiters(c, NULL)); i++) {
                cr_assert_eq(alloc_status(k, &s), 0, "%s", alloc_last_error());
                alloc_status_free(s);
                usleep(10000);
        }
        cr_expect_eq(pool_used(c, "h"), 3 * 4096, "a region is left behind");
        cr_expect_eq(pool_waiters(c, NULL), 0);
}

/*
 * t, an allocation that no room will end, is over within ms with -EINTR, and its wait in allocd is
 * cancelled.  If not, room ends it, so that the failure does not hang the test.
 */
static void expect_interrupted_within(struct call *t, int ms, const char *why) {
        bool done = wait_done(t, ms);

        if (!done) {
                cr_expect_eq(alloc_region_free(c, fill[0].id), 0);
                wait_done(t, 5000);
        }
        pthread_join(t->thread, NULL);
        cr_assert(done, "%s: the allocation went on waiting", why);
        cr_expect_eq(t->result, -EINTR, "%d: %s", t->result, t->error);
        cr_expect(wait_waiting(0, 1000), "allocd still counts the wait");
}

/* The handler ran before the call reached poll: nothing interrupts that poll. */
Test(client_interrupt, a_signal_before_the_wait_ends_it) {
        static int yes = 1;
        struct call t = {.alloc = true, .raise_first = true};

        cr_assert_eq(alloc_set_interrupt(k, stop, &yes), 0);
        cr_assert_eq(pthread_create(&t.thread, NULL, call_thread, &t), 0);
        expect_interrupted_within(&t, 2000, "signalled before the call");
}

/* One signal, while the call spins (10 ms, the most alloc_set_spin allows) before it polls. */
Test(client_interrupt, a_signal_while_spinning_ends_the_wait) {
        static int yes = 1;
        struct call t = {.alloc = true};

        cr_assert_eq(alloc_set_spin(k, 10000), 0);
        cr_assert_eq(alloc_set_interrupt(k, stop, &yes), 0);
        cr_assert_eq(pthread_create(&t.thread, NULL, call_thread, &t), 0);
        while (!atomic_load(&t.calling))
                usleep(100);
        usleep(2000);
        pthread_kill(t.thread, SIGUSR1);
        expect_interrupted_within(&t, 2000, "signalled while spinning");
}

/* interrupted() that a handler follows at once, as one that lands between the question and poll does. */
static int stop_then_raise(void *data) {
        bool s = atomic_load(&signalled);

        (void)data;
        if (!s)
                raise(SIGUSR1);
        return s;
}

Test(client_interrupt, a_signal_just_before_poll_is_seen_within_the_bound) {
        struct call t = {.alloc = true};

        cr_assert_eq(alloc_set_interrupt(k, stop_then_raise, NULL), 0);
        cr_assert_eq(pthread_create(&t.thread, NULL, call_thread, &t), 0);
        /* 50 ms at most (alloc_set_interrupt): a second leaves room for a loaded machine. */
        expect_interrupted_within(&t, 1000, "signalled between interrupted() and poll");
}
