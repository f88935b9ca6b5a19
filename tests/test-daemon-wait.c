/* SPDX-License-Identifier: MIT */
/* The wait queue: arrival order, wake-up on free, timeouts, NOWAIT, NOFAIL, cancellation, its limit. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct daemon d;
static struct alloc_client *c;
static struct alloc_region fill[4];

/* A 16 KiB pool, filled by four 4 KiB regions before each test. */
static void setup(void) {
        daemon_start(&d, "[daemon]\nwait_timeout = 300ms\nmax_waiters_per_connection = 2\nmax_waiters_per_uid = 3\n"
                         "[pool h]\nkind = host\nsize = 16K\n");
        c = daemon_connect(&d);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &fill[i]), 0, "%s", alloc_last_error());
}

static void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(daemon_wait, .init = setup, .fini = teardown, .timeout = 60);

struct waiter {
        pthread_t thread;
        struct alloc_client *conn; /* NULL: its own connection */
        uint64_t size;
        struct alloc_opts opts;
        int result;
        atomic_bool done;
};

static void *wait_thread(void *arg) {
        struct waiter *w = arg;
        struct alloc_client *k = w->conn ? w->conn : daemon_connect(&d);
        struct alloc_region r;

        w->result = alloc_region_new(k, "h", w->size, &w->opts, &r);
        atomic_store(&w->done, true);
        /* Hold the region until the test ends. */
        return w->conn ? NULL : k;
}

static void start(struct waiter *w, uint64_t size, uint32_t flags, unsigned long long waiters_after) {
        w->size = size;
        w->opts.flags |= flags;
        cr_assert_eq(pthread_create(&w->thread, NULL, wait_thread, w), 0);
        if (waiters_after)
                cr_assert_eq(wait_waiters(c, "h", waiters_after), waiters_after, "the request did not queue");
}

static int finish(struct waiter *w) {
        void *k;
        pthread_join(w->thread, &k);
        alloc_disconnect(k);
        return w->result;
}

Test(daemon_wait, waiters_are_served_in_arrival_order) {
        struct waiter a = {0}, b = {0};

        start(&a, 4096, ALLOC_NOFAIL, 1);
        start(&b, 4096, ALLOC_NOFAIL, 2);
        cr_assert_eq(alloc_region_free(c, fill[0].id), 0);
        cr_assert_eq(wait_waiters(c, "h", 1), 1);
        for (int i = 0; i < 5000 && !atomic_load(&a.done); i++)
                usleep(1000);
        cr_assert(atomic_load(&a.done) && a.result == 0, "the first waiter got the freed region");
        cr_assert_not(atomic_load(&b.done), "the second is still waiting, but returned %d", b.result);
        cr_assert_eq(alloc_region_free(c, fill[1].id), 0);
        cr_assert_eq(finish(&b), 0);
        cr_assert_eq(finish(&a), 0);
        cr_assert_eq(pool_waiters(c, "h"), 0);
}

Test(daemon_wait, a_large_waiter_does_not_block_smaller_ones) {
        struct waiter big = {0}, small = {0};

        start(&big, 8192, ALLOC_NOFAIL, 1);
        start(&small, 4096, ALLOC_NOFAIL, 2);
        cr_assert_eq(alloc_region_free(c, fill[0].id), 0); /* 4 KiB free: only the small one fits */
        cr_assert_eq(finish(&small), 0);
        cr_assert_not(atomic_load(&big.done));
        cr_assert_eq(alloc_region_free(c, fill[2].id), 0);
        cr_assert_eq(alloc_region_free(c, fill[3].id), 0); /* 8 KiB together at the end */
        cr_assert_eq(finish(&big), 0);
}

Test(daemon_wait, timeout_and_nowait) {
        struct alloc_region r;
        struct alloc_opts t = {.timeout_ms = 100};
        struct alloc_opts nw = {.flags = ALLOC_NOWAIT};

        cr_assert_eq(alloc_region_new(c, "h", 4096, &t, &r), -ETIMEDOUT);
        cr_assert_str_not_empty(alloc_last_error());
        cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &r), -ETIMEDOUT, "wait_timeout = 300ms applies");
        cr_assert_eq(alloc_region_new(c, "h", 4096, &nw, &r), -EAGAIN);
        cr_assert_eq(pool_waiters(c, "h"), 0, "nothing is left queued");
}

Test(daemon_wait, nofail_waits_past_the_default_timeout) {
        struct waiter w = {0};

        start(&w, 4096, ALLOC_NOFAIL, 1);
        usleep(600 * 1000); /* twice wait_timeout */
        cr_assert_not(atomic_load(&w.done));
        cr_assert_eq(pool_waiters(c, "h"), 1);
        cr_assert_eq(alloc_region_free(c, fill[0].id), 0);
        cr_assert_eq(finish(&w), 0);
}

Test(daemon_wait, a_closed_connection_cancels_its_waiters) {
        pid_t pid = test_fork();
        if (pid == 0) {
                struct alloc_client *k;
                struct alloc_region r;
                struct alloc_opts o = {.flags = ALLOC_NOFAIL};
                if (alloc_connect(&k, d.sock, "waiter") < 0)
                        _exit(1);
                alloc_region_new(k, "h", 4096, &o, &r);
                _exit(2);
        }
        cr_assert_eq(wait_waiters(c, "h", 1), 1);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_eq(wait_waiters(c, "h", 0), 0);
        cr_assert_eq(alloc_region_free(c, fill[0].id), 0);
        cr_assert_eq(pool_used(c, "h"), 3 * 4096, "the cancelled request took nothing");
}

Test(daemon_wait, waiters_per_connection_are_limited) {
        struct alloc_client *shared = daemon_connect(&d);
        struct waiter a = {.conn = shared}, b = {.conn = shared};
        struct alloc_region r;
        struct alloc_opts o = {.flags = ALLOC_NOFAIL};

        start(&a, 4096, ALLOC_NOFAIL, 1);
        start(&b, 4096, ALLOC_NOFAIL, 2);
        cr_assert_eq(alloc_region_new(shared, "h", 4096, &o, &r), -EMFILE, "max_waiters_per_connection = 2");
        cr_assert_eq(alloc_region_free(c, fill[0].id), 0);
        cr_assert_eq(alloc_region_free(c, fill[1].id), 0);
        cr_assert_eq(finish(&a), 0);
        cr_assert_eq(finish(&b), 0);
        alloc_disconnect(shared);
}

/* A uid's waiters on all its connections together: every free tries each again, so one uid must not queue them all. */
Test(daemon_wait, waiters_per_uid_are_limited) {
        struct waiter w[3] = {0};
        struct alloc_region r;
        struct alloc_opts o = {.flags = ALLOC_NOFAIL};
        struct alloc_client *k = daemon_connect(&d);

        for (int i = 0; i < 3; i++)
                start(&w[i], 4096, ALLOC_NOFAIL, (unsigned long long)i + 1);
        cr_assert_eq(alloc_region_new(k, "h", 4096, &o, &r), -EMFILE, "a 4th waiter of the uid was queued");
        cr_assert(strstr(alloc_last_error(), "max_waiters_per_uid = 3"), "%s", alloc_last_error());
        /* One ends (granted; its thread holds the region): the uid may queue one again. */
        cr_assert_eq(alloc_region_free(c, fill[0].id), 0);
        cr_assert_eq(wait_waiters(c, "h", 2), 2);
        struct waiter again = {.conn = k};
        start(&again, 4096, ALLOC_NOFAIL, 3);
        for (int i = 1; i < 4; i++)
                cr_assert_eq(alloc_region_free(c, fill[i].id), 0);
        for (int i = 0; i < 3; i++)
                cr_assert_eq(finish(&w[i]), 0);
        cr_assert_eq(finish(&again), 0);
        alloc_disconnect(k);
}

/*
 * SIGTERM answers every waiter CANCELLED before any connection's regions go, so a waiter is never
 * granted room that the stop itself made (here: the filler's connection closing).
 */
Test(daemon_wait, stop_cancels_waiters_it_could_have_granted) {
        /* Not the suite's wait_timeout (300 ms): a test slower than that to send SIGTERM got -ETIMEDOUT. */
        struct waiter w = {.opts = {.timeout_ms = 60000}};

        /* A client that reconnects sends its wait again to the allocd that follows: this one is not. */
        setenv("ALLOCD_RECONNECT", "0", 1);
        start(&w, 4096, 0, 1);
        kill(d.pid, SIGTERM);
        cr_assert_eq(finish(&w), -ECANCELED, "allocd is stopping: the waiter is cancelled, not served");
        alloc_disconnect(c);
        c = NULL;
        int status;
        cr_assert_eq(waitpid(d.pid, &status, 0), d.pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        d.pid = 0;
}

/* ---- waiters across a SIGHUP: what the reload changes applies to them at their next try ---- */

#define NOBODY 65534

/* Rewrites allocd's file, sends SIGHUP and waits until allocd says the reload is done. */
static void reload(struct daemon *e, const char *config) {
        write_file(e->conf, config);
        kill(e->pid, SIGHUP);
        cr_assert(daemon_notified(e, "last reload ", 10000), "allocd did not finish the reload");
}

struct attacher {
        struct daemon *d;
        int result;
};

static void *attach_thread(void *arg) {
        struct attacher *a = arg;
        struct alloc_client *k = daemon_connect(a->d);
        struct alloc_attach_opts o = {.timeout_ms = 10000, .pool = "big"};
        struct alloc_region r;

        a->result = alloc_region_attach(k, "late", &o, &r);
        alloc_disconnect(k);
        return NULL;
}

/*
 * An Attach may name a pool that is configured but not made yet (not available); a reload that
 * makes it at last replaces the placeholder it waited on.  The waiter still waits for that pool,
 * and attaches the name once it is published there.
 */
Test(daemon_wait_reload, an_attach_waiting_in_a_pool_made_by_a_reload_attaches) {
        struct daemon e;
        struct attacher a = {.d = &e};
        struct alloc_region r;
        pthread_t t;

        daemon_start(&e, "[pool h]\nkind = host\nsize = 16K\n[pool big]\nkind = host\nsize = 64T\n");
        struct alloc_client *k = daemon_connect(&e);
        cr_assert_eq(pthread_create(&t, NULL, attach_thread, &a), 0);
        cr_assert_eq(wait_waiters(k, NULL, 1), 1, "the Attach did not wait");
        reload(&e, "[pool h]\nkind = host\nsize = 16K\n[pool big]\nkind = host\nsize = 2M\n");
        int x;
        /* The pool is made off allocd's loop: not available until it is. */
        for (int i = 0;
             i < 1000 && (x = alloc_region_new(k, "big", 4096, &(struct alloc_opts){.name = "late"}, &r)) == -ENODEV;
             i++)
                usleep(10000);
        cr_assert_eq(x, 0, "%s", alloc_last_error());
        pthread_join(t, NULL);
        cr_expect_eq(a.result, 0, "the waiter attached the name published in the pool it asked: %s",
                     strerror(-a.result));
        alloc_disconnect(k);
        daemon_stop(&e);
}

/* In a child of fork(): its connection to e as nobody (exit 100 where it cannot have one). */
static struct alloc_client *as_nobody(const struct daemon *e) {
        struct alloc_client *n;

        if (setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test() || alloc_connect(&n, e->sock, "nobody") < 0)
                _exit(100);
        return n;
}

/* What the child pid said (a negative errno value, as it exited with its opposite). */
static int child_result(pid_t pid) {
        int status;

        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 100, "the child could not connect as nobody");
        return -WEXITSTATUS(status);
}

/* A reload that takes a uid's access to a pool away refuses its waiting Allocs too, at their next try. */
Test(daemon_wait_reload, a_reload_that_denies_the_pool_refuses_its_waiters) {
        static const char conf[] = "[pool h]\nkind = host\nsize = 16K\nmode = %s\n";
        char text[128];
        struct daemon e;
        struct alloc_region f[4];

        if (getuid() != 0)
                cr_skip_test("needs root, to wait as another uid");
        snprintf(text, sizeof(text), conf, "0666");
        daemon_start(&e, text);
        struct alloc_client *k = daemon_connect(&e);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc_region_new(k, "h", 4096, NULL, &f[i]), 0, "%s", alloc_last_error());
        pid_t pid = test_fork();
        if (pid == 0) {
                struct alloc_region r;
                _exit(-alloc_region_new(as_nobody(&e), "h", 4096, &(struct alloc_opts){.timeout_ms = 10000}, &r));
        }
        cr_assert_eq(wait_waiters(k, "h", 1), 1, "nobody's Alloc did not wait");
        snprintf(text, sizeof(text), conf, "0600");
        reload(&e, text);
        cr_assert_eq(alloc_region_free(k, f[0].id), 0);
        int x = child_result(pid);
        cr_expect_eq(x, -EACCES, "mode = 0600 denies nobody the room it waited for, got %s", strerror(-x));
        cr_expect_eq(pool_used(k, "h"), 3 * 4096, "the freed room stays free");
        alloc_disconnect(k);
        daemon_stop(&e);
}

struct named {
        struct alloc_client *conn;
        int result;
};

static void *named_thread(void *arg) {
        struct named *n = arg;
        struct alloc_region r;

        n->result =
                alloc_region_new(n->conn, "h", 4096, &(struct alloc_opts){.name = "job.out", .timeout_ms = 10000}, &r);
        return NULL;
}

/* A reload that reserves a waiting Alloc's name for another pool refuses it at its next try. */
Test(daemon_wait_reload, a_reload_that_reserves_the_name_elsewhere_refuses_its_waiter) {
        static const char conf[] = "[pool h]\nkind = host\nsize = 16K\n[pool n]\nkind = host\nsize = 16K\n%s";
        char text[160];
        struct daemon e;
        struct alloc_region f[4], r;
        pthread_t t;

        snprintf(text, sizeof(text), conf, "");
        daemon_start(&e, text);
        struct alloc_client *k = daemon_connect(&e);
        struct named n = {.conn = daemon_connect(&e)};
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc_region_new(k, "h", 4096, NULL, &f[i]), 0, "%s", alloc_last_error());
        cr_assert_eq(pthread_create(&t, NULL, named_thread, &n), 0);
        cr_assert_eq(wait_waiters(k, "h", 1), 1, "the named Alloc did not wait");
        snprintf(text, sizeof(text), conf, "names = job.*\n");
        reload(&e, text);
        cr_assert_eq(alloc_region_free(k, f[0].id), 0);
        pthread_join(t, NULL);
        cr_expect_eq(n.result, -EACCES, "job.out is pool n's now, got %s", strerror(-n.result));
        cr_expect_eq(alloc_region_attach(k, "job.out", NULL, &r), -ENOENT, "nothing was published");
        alloc_disconnect(n.conn);
        alloc_disconnect(k);
        daemon_stop(&e);
}

/* An Attach that names a pool its uid may not attach in is refused at once: waiting would not change it. */
Test(daemon_wait_reload, an_attach_in_a_pool_it_may_not_read_does_not_wait) {
        struct daemon e;

        if (getuid() != 0)
                cr_skip_test("needs root, to attach as another uid");
        daemon_start(&e, "[pool h]\nkind = host\nsize = 16K\nmode = 0600\n");
        pid_t pid = test_fork();
        if (pid == 0) {
                struct alloc_region r;
                _exit(-alloc_region_attach(as_nobody(&e), "later",
                                           &(struct alloc_attach_opts){.timeout_ms = 300, .pool = "h"}, &r));
        }
        int x = child_result(pid);
        cr_expect_eq(x, -EACCES, "got %s rather than EACCES at once", strerror(-x));
        daemon_stop(&e);
}
