/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client's timeouts against a real allocd stopped with SIGSTOP:
 * connecting and each request fail with -ETIME instead of blocking, the
 * connection stays usable once allocd runs again, a region granted after its
 * request timed out is given back (its pool fd still mapped, since allocd
 * sends it once), and an allocation that asked to wait gets that wait on top.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct daemon d;

static void setup(void) {
        unsetenv("ALLOCD_TIMEOUT");
        daemon_start(&d, "[pool host]\nkind = host\nsize = 4M\n");
}

static void teardown(void) {
        kill(d.pid, SIGCONT);
        daemon_stop(&d);
}

TestSuite(timeout, .init = setup, .fini = teardown, .timeout = 60);

Test(timeout, connect_to_a_stopped_daemon) {
        struct alloc_client *c = NULL;

        freeze(d.pid);
        setenv("ALLOCD_TIMEOUT", "300ms", 1);
        cr_assert_eq(alloc_connect(&c, d.sock, NULL), -ETIME, "%s", alloc_last_error());
        cr_assert_null(c);
        cr_assert(strstr(alloc_last_error(), "did not answer within 300 ms"), "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), d.sock), "%s", alloc_last_error());
        kill(d.pid, SIGCONT);
        cr_assert_eq(alloc_connect(&c, d.sock, NULL), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
}

Test(timeout, bad_environment_value) {
        struct alloc_client *c = NULL;

        setenv("ALLOCD_TIMEOUT", "soon", 1);
        cr_assert_eq(alloc_connect(&c, d.sock, NULL), -EINVAL);
        cr_assert(strstr(alloc_last_error(), "ALLOCD_TIMEOUT=soon is not a duration"), "%s", alloc_last_error());
        setenv("ALLOCD_TIMEOUT", "0", 1); /* no timeout at all */
        cr_assert_eq(alloc_connect(&c, d.sock, NULL), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
}

Test(timeout, request_to_a_stopped_daemon_then_recovers) {
        struct alloc_client *c = daemon_connect(&d);
        struct alloc_status *s = NULL;

        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        freeze(d.pid);
        cr_assert_eq(alloc_status(c, &s), -ETIME);
        cr_assert_null(s);
        cr_assert(strstr(alloc_last_error(), "did not answer within 200 ms"), "%s", alloc_last_error());
        kill(d.pid, SIGCONT);
        /* The late answer to the first status is read and dropped; this one gets its own. */
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        cr_assert_eq(s->npools, 1);
        alloc_status_free(s);
        alloc_disconnect(c);
}

Test(timeout, late_grant_is_given_back) {
        struct alloc_client *c = daemon_connect(&d), *watch = daemon_connect(&d);
        struct alloc_opts nowait = {.flags = ALLOC_NOWAIT | ALLOC_PERSIST, .name = "late"};
        struct alloc_region r;

        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        freeze(d.pid);
        cr_assert_eq(alloc_region_new(c, "host", 1 << 20, &nowait, &r), -ETIME);
        kill(d.pid, SIGCONT);
        /* allocd grants it once it runs: PERSIST and the name would keep it past the connection. */
        cr_assert_eq(wait_used(watch, "host", 1 << 20), 1 << 20);
        /* c's next call reads the grant, gives it back, and the pool's fd that came with it is mapped. */
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &r), 0, "%s", alloc_last_error());
        memset(r.ptr, 0xa5, 4096);
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(wait_used(watch, "host", 0), 0);
        cr_assert_eq(alloc_region_attach(watch, "late", NULL, &r), -ENOENT, "the name was given back too");
        alloc_disconnect(c);
        alloc_disconnect(watch);
}

Test(timeout, late_batch_is_given_back) {
        struct alloc_client *c = daemon_connect(&d), *watch = daemon_connect(&d);
        uint64_t sizes[3] = {4096, 8192, 4096};
        struct alloc_region r[3];

        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        freeze(d.pid);
        cr_assert_eq(alloc_region_new_batch(c, "host", sizes, 3, NULL, r), -ETIME);
        kill(d.pid, SIGCONT);
        cr_assert_eq(wait_used(watch, "host", 16384), 16384);
        /* c's next call reads the late batch and gives every region of it back. */
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &r[0]), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r[0].id), 0);
        cr_assert_eq(wait_used(watch, "host", 0), 0);
        alloc_disconnect(c);
        alloc_disconnect(watch);
}

Test(timeout, a_wait_for_room_is_on_top) {
        struct alloc_client *c = daemon_connect(&d), *hog = daemon_connect(&d);
        struct alloc_opts wait = {.timeout_ms = 700};
        struct alloc_region full, r;

        cr_assert_eq(alloc_region_new(hog, "host", 4 << 20, NULL, &full), 0);
        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        /* allocd answers after 700 ms, past the 200 ms timeout but within 200 + 700. */
        cr_assert_eq(alloc_region_new(c, "host", 4096, &wait, &r), -ETIMEDOUT, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "did not answer") == NULL, "%s", alloc_last_error());
        alloc_disconnect(c);
        alloc_disconnect(hog);
}

/* The caller gives up and hangs up before allocd, stopped, even reads its PERSIST Alloc. */
Test(timeout, a_grant_after_the_hang_up_is_freed) {
        struct alloc_client *c = daemon_connect(&d), *watch = daemon_connect(&d);
        struct alloc_opts persist = {.flags = ALLOC_NOWAIT | ALLOC_PERSIST, .name = "orphan"};
        struct alloc_region r;

        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        freeze(d.pid);
        cr_assert_eq(alloc_region_new(c, "host", 1 << 20, &persist, &r), -ETIME);
        alloc_disconnect(c);
        kill(d.pid, SIGCONT);
        /* allocd makes it, cannot hand it over, and frees it: no region that no one can name. */
        cr_assert_eq(wait_used(watch, "host", 0), 0);
        cr_assert_eq(alloc_region_attach(watch, "orphan", NULL, &r), -ENOENT);
        alloc_disconnect(watch);
}

/* The answer is there when the caller hangs up: it is given back, not left to PERSIST. */
Test(timeout, a_grant_read_at_disconnect_is_given_back) {
        struct alloc_client *c = daemon_connect(&d), *watch = daemon_connect(&d);
        struct alloc_opts persist = {.flags = ALLOC_NOWAIT | ALLOC_PERSIST};
        struct alloc_region r;

        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        freeze(d.pid);
        cr_assert_eq(alloc_region_new(c, "host", 1 << 20, &persist, &r), -ETIME);
        kill(d.pid, SIGCONT);
        cr_assert_eq(wait_used(watch, "host", 1 << 20), 1 << 20, "granted, the answer waiting in c's socket");
        alloc_disconnect(c);
        cr_assert_eq(wait_used(watch, "host", 0), 0);
        alloc_disconnect(watch);
}

/*
 * A child of fork() shares the connection's socket (liballoc-client(3)): the parent's
 * alloc_disconnect still ends the lease while the child lives, and the child's alloc_disconnect
 * ends only its copy, leaving the parent's connection as it was.
 */
Test(timeout, a_forked_child_neither_keeps_nor_ends_the_lease) {
        struct alloc_client *c = daemon_connect(&d), *watch = daemon_connect(&d);
        struct alloc_status *st = NULL;
        struct alloc_region r;
        int go[2], status;
        char x;

        cr_assert_eq(pipe(go), 0);
        cr_assert_eq(alloc_region_new(c, "host", 1 << 20, NULL, &r), 0, "%s", alloc_last_error());
        pid_t quiet = test_fork(); /* keeps its copy, and waits */
        if (quiet == 0) {
                close(go[1]); /* the test's end going (a failed assertion) ends the wait too */
                _exit(read(go[0], &x, 1) == 1 ? 0 : 1);
        }
        pid_t closer = test_fork(); /* disconnects its copy, and exits */
        if (closer == 0) {
                alloc_disconnect(c);
                _exit(0);
        }
        cr_assert_eq(waitpid(closer, &status, 0), closer);
        cr_assert_eq(alloc_status(c, &st), 0, "%s", alloc_last_error());
        alloc_status_free(st);
        cr_assert_eq(alloc_region_free_sync(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(c, "host", 1 << 20, NULL, &r), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        cr_assert_eq(wait_used(watch, "host", 0), 0, "the child's copy of the socket kept the lease");
        cr_assert_eq(write(go[1], "x", 1), 1);
        cr_assert_eq(waitpid(quiet, &status, 0), quiet);
        close(go[0]);
        close(go[1]);
        alloc_disconnect(watch);
}

/* The wait Hello announced is the one the library asks for, so a reload that lengthens it cannot outrun the client. */
Test(timeout, a_reload_cannot_make_the_sides_count_different_waits) {
        struct alloc_client *c, *hog = daemon_connect(&d);
        struct alloc_region full, r;

        daemon_stop(&d);
        daemon_start(&d, "[daemon]\nwait_timeout = 500ms\n[pool host]\nkind = host\nsize = 4M\n");
        c = daemon_connect(&d);
        alloc_disconnect(hog);
        hog = daemon_connect(&d);
        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        cr_assert_eq(alloc_region_new(hog, "host", 4 << 20, NULL, &full), 0);
        write_file(d.conf, "[daemon]\nwait_timeout = 10s\n[pool host]\nkind = host\nsize = 4M\n");
        kill(d.pid, SIGHUP);
        cr_assert(daemon_notified(&d, "last reload", 5000));
        /* allocd gives up at the 500 ms c was told of (-ETIMEDOUT), within c's 200 ms beyond it. */
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &r), -ETIMEDOUT, "%s", alloc_last_error());
        alloc_disconnect(c);
        alloc_disconnect(hog);
}
