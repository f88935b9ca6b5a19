/* SPDX-License-Identifier: MIT */
/* Named sharing between processes, PERSIST, and leases that end with their process however it ends. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct daemon d;
static struct alloc_client *c;

static void setup(void) {
        daemon_start(&d, "[pool h]\nkind = host\nsize = 4M\n[pool f]\nkind = fpga\nranges = 0x1000+1M\n");
        c = daemon_connect(&d);
}

static void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(daemon_share, .init = setup, .fini = teardown, .timeout = 60);

/* Runs fn in a child process with its own connection; returns its exit status. */
static int in_child(int (*fn)(struct alloc_client *, const void *), const void *arg) {
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                struct alloc_client *k;
                if (alloc_connect(&k, d.sock, "child") < 0)
                        _exit(100);
                int r = fn(k, arg);
                alloc_disconnect(k);
                _exit(r);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

static int read_shared(struct alloc_client *k, const void *arg) {
        struct alloc_region r;
        const char *want = arg;

        if (alloc_region_attach(k, "job/buffer", NULL, &r) < 0)
                return 1;
        if (memcmp(r.ptr, want, strlen(want) + 1) != 0)
                return 2;
        strcpy((char *)r.ptr + 4096, "reply from the child");
        return alloc_region_detach(k, r.id) < 0 ? 3 : 0;
}

Test(daemon_share, two_processes_share_a_named_region) {
        struct alloc_region r;
        struct alloc_opts o = {.name = "job/buffer"};
        const char *msg = "written by the parent process";

        cr_assert_eq(alloc_region_new(c, "h", 8192, &o, &r), 0, "%s", alloc_last_error());
        strcpy(r.ptr, msg);
        cr_assert_eq(in_child(read_shared, msg), 0);
        cr_assert_str_eq((char *)r.ptr + 4096, "reply from the child");
        cr_assert_eq(pool_used(c, "h"), 8192, "the child's detach left the creator's reference");
}

Test(daemon_share, names_are_unique_and_freed_with_the_region) {
        struct alloc_region a, b;
        struct alloc_opts o = {.name = "only-one"};

        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &a), 0);
        cr_assert_eq(alloc_region_new(c, "f", 4096, &o, &b), -EEXIST, "names are one global namespace");
        cr_assert_eq(alloc_region_attach(c, "no-such-name", NULL, &b), -ENOENT);
        cr_assert_eq(alloc_region_free(c, a.id), 0);
        cr_assert_eq(alloc_region_attach(c, "only-one", NULL, &b), -ENOENT);
        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &b), 0, "the name is free again");
}

static int attach_and_hold(struct alloc_client *k, const void *arg) {
        struct alloc_region r;
        (void)arg;
        if (alloc_region_attach(k, "shared", NULL, &r) < 0)
                return 1;
        /* Tell the parent, then wait to be killed while holding the reference. */
        if (write(3, "x", 1) != 1)
                return 2;
        pause();
        return 0;
}

Test(daemon_share, free_unpublishes_but_attachers_keep_the_memory) {
        struct alloc_region r;
        struct alloc_opts o = {.name = "shared"};
        int p[2];

        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), 0);
        cr_assert_eq(pipe(p), 0);
        pid_t pid = test_fork();
        if (pid == 0) {
                dup2(p[1], 3);
                struct alloc_client *k;
                if (alloc_connect(&k, d.sock, "holder") < 0)
                        _exit(100);
                _exit(attach_and_hold(k, NULL));
        }
        char x;
        cr_assert_eq(read(p[0], &x, 1), 1);
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        struct alloc_region again;
        cr_assert_eq(alloc_region_attach(c, "shared", NULL, &again), -ENOENT, "free unpublished the name");
        cr_assert_eq(pool_used(c, "h"), 4096, "the attacher still holds it");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_eq(wait_used(c, "h", 0), 0, "the killed attacher's reference was the last one");
        close(p[0]);
        close(p[1]);
}

static int make_persistent(struct alloc_client *k, const void *arg) {
        struct alloc_region r;
        struct alloc_opts o = {.name = "persistent", .flags = ALLOC_PERSIST};
        (void)arg;
        if (alloc_region_new(k, "h", 4096, &o, &r) < 0)
                return 1;
        strcpy(r.ptr, "still here");
        return 0;
}

Test(daemon_share, persist_outlives_its_creator_until_freed) {
        struct alloc_region r;

        cr_assert_eq(in_child(make_persistent, NULL), 0);
        cr_assert_eq(pool_used(c, "h"), 4096);
        cr_assert_eq(alloc_region_attach(c, "persistent", NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_str_eq(r.ptr, "still here");
        cr_assert_eq(alloc_region_detach(c, r.id), 0);
        cr_assert_eq(pool_used(c, "h"), 4096, "detach leaves the PERSIST reference");
        cr_assert_eq(alloc_region_attach(c, "persistent", NULL, &r), 0);
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "h"), 0, "free drops PERSIST");
}

static int alloc_and_wait(struct alloc_client *k, const void *arg) {
        struct alloc_region r;
        (void)arg;
        for (int i = 0; i < 50; i++)
                if (alloc_region_new(k, i % 2 ? "h" : "f", 4096 * (1 + i % 3), NULL, &r) < 0)
                        return 1;
        if (write(3, "x", 1) != 1)
                return 2;
        pause();
        return 0;
}

Test(daemon_share, sigkill_releases_every_region) {
        int p[2];
        cr_assert_eq(pipe(p), 0);
        pid_t pid = test_fork();
        if (pid == 0) {
                dup2(p[1], 3);
                struct alloc_client *k;
                if (alloc_connect(&k, d.sock, "victim") < 0)
                        _exit(100);
                _exit(alloc_and_wait(k, NULL));
        }
        char x;
        cr_assert_eq(read(p[0], &x, 1), 1);
        cr_assert_gt(pool_used(c, "h"), 0);
        cr_assert_gt(pool_used(c, "f"), 0);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_eq(wait_used(c, "h", 0), 0);
        cr_assert_eq(wait_used(c, "f", 0), 0);
        struct alloc_status *s;
        cr_assert_eq(alloc_status(c, &s), 0);
        cr_assert_eq(s->nclients, 1, "only this test's connection is left");
        alloc_status_free(s);
        close(p[0]);
        close(p[1]);
}

Test(daemon_share, mappings_survive_the_daemon) {
        struct alloc_region r;

        /* Not reconnecting (that is test-daemon-reconnect's): a lost allocd is an error at once. */
        setenv("ALLOCD_RECONNECT", "0", 1);
        alloc_disconnect(c);
        c = daemon_connect(&d);
        unsetenv("ALLOCD_RECONNECT");
        cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &r), 0);
        strcpy(r.ptr, "before");
        kill(d.pid, SIGKILL);
        waitpid(d.pid, NULL, 0);
        d.pid = 0;
        cr_assert_str_eq(r.ptr, "before", "the mapping outlives allocd");
        strcpy(r.ptr, "after");
        struct alloc_region r2;
        cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &r2), -ECONNRESET);
        cr_assert_str_not_empty(alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), -ECONNRESET);
}

/*
 * A child of fork() that calls on its parent's connection would speak on the parent's socket with
 * the parent's next request ids: its region would be the parent's lease, which the parent never
 * learns of, and a reply either reads could be matched to the other's request.  It is refused.
 */
Test(daemon_share, a_child_of_fork_may_not_speak_on_its_parents_connection) {
        struct alloc_region r;
        struct alloc_status *s;
        int status;

        pid_t pid = test_fork();
        if (pid == 0) {
                int e = alloc_region_new(c, "h", 4096, NULL, &r);
                if (e == 0)
                        _exit(1);
                /* Nor may it set the send timeout of the socket it shares with its parent. */
                _exit(e == -EINVAL && strstr(alloc_last_error(), "fork") && alloc_set_timeout(c, 1) == -EINVAL ? 0 : 2);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's call on its parent's connection: %s",
                  WIFEXITED(status) && WEXITSTATUS(status) == 1 ? "allocated" : "failed otherwise");
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        alloc_status_free(s);
        cr_assert_eq(pool_used(c, "h"), 0, "the parent's connection holds what the child allocated");
}
