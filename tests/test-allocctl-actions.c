/* SPDX-License-Identifier: MIT */
/*
 * allocctl's commands that change allocd, against a real allocd holding a known set of regions
 * (allocctl-common.c): free, disconnect, wait; and a stopped allocd.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "allocctl-common.h"

TestSuite(allocctl, .init = setup, .fini = teardown, .timeout = 60);

/* An operator frees a PERSIST region whose creator is gone; other regions cannot be freed this way. */
Test(allocctl, free_takes_back_an_orphaned_persist_region) {
        struct alloc_region r;
        struct alloc_client *gone;
        char id[32];

        cr_assert_eq(alloc_connect(&gone, d.sock, "gone"), 0);
        cr_assert_eq(alloc_region_new(gone, "f", 4096, &(struct alloc_opts){.flags = ALLOC_PERSIST}, &r), 0);
        alloc_disconnect(gone);
        unsigned long long before = pool_used(c, "f");
        snprintf(id, sizeof(id), "%llu", (unsigned long long)r.id);
        struct run *x = allocctl(d.sock, "free", id, (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        cr_assert_eq(pool_used(c, "f"), before - 4096);
        x = allocctl(d.sock, "free", id, (char *)NULL);
        cr_assert_eq(x->status, 1, "a dead region: %s", x->err);
        snprintf(id, sizeof(id), "%llu", (unsigned long long)small.id);
        x = allocctl(d.sock, "free", id, (char *)NULL);
        cr_assert_eq(x->status, 1, "not PERSIST, held by another connection");
        /* An operator is told why, and what frees it instead: not only the Free's "holds no region". */
        cr_assert(strstr(x->err, "holds no region") && strstr(x->err, "not PERSIST") &&
                          strstr(x->err, "allocctl disconnect"),
                  "%s", x->err);
        x = allocctl(d.sock, "free", "twelve", (char *)NULL);
        cr_assert_eq(x->status, 2);
}

static uint64_t serial_of(const char *name) {
        struct alloc_status *s;
        uint64_t serial = 0;

        cr_assert_eq(alloc_status(c, &s), 0);
        for (size_t i = 0; i < s->nclients; i++)
                if (!strcmp(s->clients[i].name, name))
                        serial = s->clients[i].serial;
        alloc_status_free(s);
        cr_assert_neq(serial, 0, "no client %s", name);
        return serial;
}

static bool region_alive(uint64_t id) {
        struct alloc_dump *dump;
        bool alive = false;

        cr_assert_eq(alloc_dump(c, NULL, &dump), 0);
        for (size_t i = 0; i < dump->nregions; i++)
                alive |= dump->regions[i].id == id;
        alloc_dump_free(dump);
        return alive;
}

/* Tester one and tester two both still answered. */
static void both_still_connected(void) {
        struct alloc_status *s;

        cr_assert_eq(alloc_status(c, &s), 0, "tester one still connected");
        alloc_status_free(s);
        cr_assert_eq(alloc_status(c2, &s), 0, "tester two still connected");
        alloc_status_free(s);
}

/*
 * Ids, pids and serials are decimal, as allocctl prints them, and nothing else: strtoull took "010"
 * as 8 (another region), "-N" as 2^64 - N (serial:-18446744073709551615 was serial 1) and
 * " N" or "+N" as N.  Each is refused before anything is asked of allocd.
 */
Test(allocctl, ids_pids_and_serials_are_decimal_digits_only) {
        struct alloc_region r;
        char arg[64];
        struct run *x;

        /* Ids are large (a generation above the slot): no spelling below is another region's id. */
        cr_assert_eq(alloc_region_new(c, "f", 4096, &(struct alloc_opts){.flags = ALLOC_PERSIST}, &r), 0);
        const char *forms[] = {"0x%llx", "0%llo", "+%llu", " %llu", "%llu "};
        for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
                snprintf(arg, sizeof(arg), forms[i], (unsigned long long)r.id);
                x = allocctl(d.sock, "free", arg, (char *)NULL);
                cr_assert_neq(x->status, 0, "free '%s' freed region %llu", arg, (unsigned long long)r.id);
                cr_assert(region_alive(r.id), "free '%s' freed region %llu", arg, (unsigned long long)r.id);
        }
        snprintf(arg, sizeof(arg), "serial:-%llu", (unsigned long long)(0 - serial_of("tester one")));
        x = allocctl(d.sock, "disconnect", arg, (char *)NULL);
        cr_assert_eq(x->status, 2, "%s: %s", arg, x->err);
        cr_assert(strstr(x->err, "a process id, or serial:N"), "%s", x->err);
        snprintf(arg, sizeof(arg), "+%d", (int)getpid());
        x = allocctl(d.sock, "disconnect", arg, (char *)NULL);
        cr_assert_eq(x->status, 2, "%s: %s", arg, x->err);
        snprintf(arg, sizeof(arg), "serial: %llu", (unsigned long long)serial_of("tester two"));
        x = allocctl(d.sock, "disconnect", arg, (char *)NULL);
        cr_assert_eq(x->status, 2, "%s: %s", arg, x->err);
        both_still_connected();
}

Test(allocctl, disconnect_drops_a_clients_leases) {
        char arg[32];
        struct alloc_region r;
        unsigned long long before = pool_used(c, "f");

        snprintf(arg, sizeof(arg), "serial:%llu", (unsigned long long)serial_of("tester two"));
        struct run *x = allocctl(d.sock, "disconnect", arg, (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        cr_assert_str_eq(x->out, "disconnected 1 connection\n");
        /* Its 300 MiB fpga region went with it; tester one's stay. */
        cr_assert_eq(wait_used(c, "f", before - (300 << 20)), before - (300 << 20));
        cr_assert_eq(alloc_region_new(c2, "h", 4096, NULL, &r), -ECONNRESET);
        cr_assert(strstr(alloc_last_error(), "an operator disconnected this connection"), "%s", alloc_last_error());
        x = allocctl(d.sock, "disconnect", arg, (char *)NULL);
        cr_assert_eq(x->status, 1, "gone already");
        cr_assert(strstr(x->err, "no other connection has serial"), "%s", x->err);
        x = allocctl(d.sock, "disconnect", "2147483647", (char *)NULL);
        cr_assert_eq(x->status, 1);
        cr_assert(strstr(x->err, "no other connection is from pid 2147483647"), "%s", x->err);
        x = allocctl(d.sock, "disconnect", "serial:x", (char *)NULL);
        cr_assert_eq(x->status, 2);
        x = allocctl(d.sock, "disconnect", "0", (char *)NULL);
        cr_assert_eq(x->status, 2);
        /* A pid closes every connection of the process: tester one is the last of this one's. */
        snprintf(arg, sizeof(arg), "%d", (int)getpid());
        x = allocctl(d.sock, "--json", "disconnect", arg, (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        json_object *o = json_tokener_parse(x->out);
        cr_assert_eq(get_u64(o, "connections"), 1);
        json_object_put(o);
        cr_assert_eq(alloc_status(c, &(struct alloc_status *){NULL}), -ECONNRESET);
}

/*
 * By pid, a user closes its own connections of the process and leaves another's there (a socket passed on):
 * one process connects as root, then as nobody twice; nobody's Disconnect of that pid closes nobody's other.
 */
Test(allocctl, disconnect_by_pid_closes_the_callers_own_of_the_process) {
        if (geteuid() != 0) {
                teardown();
                cr_skip_test("needs root to act as another uid");
        }
        pid_t pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                struct alloc_client *root, *mine, *by;
                uint32_t n = 0;
                if (!die_with_test() || alloc_connect(&root, d.sock, "root's") < 0)
                        _exit(100);
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(101);
                if (alloc_connect(&mine, d.sock, "mine") < 0 || alloc_connect(&by, d.sock, "by") < 0)
                        _exit(102);
                if (alloc_drop_client(by, getpid(), 0, &n) < 0 || n != 1)
                        _exit(103);
                if (alloc_status(mine, &(struct alloc_status *){NULL}) != -ECONNRESET)
                        _exit(104);
                struct alloc_status *st = NULL;
                _exit(alloc_status(root, &st) == 0 ? 0 : 105);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
        both_still_connected();
}

/* Another uid may not close root's connections, and closes none when one of the targets is not its. */
Test(allocctl, disconnect_is_the_owners_or_roots) {
        if (geteuid() != 0) {
                teardown(); /* a skipped test's .fini does not run: its allocd would be left running */
                cr_skip_test("needs root to act as another uid");
        }
        pid_t pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                struct alloc_client *other;
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0 || !die_with_test())
                        _exit(100);
                if (alloc_connect(&other, d.sock, "nobody") < 0)
                        _exit(101);
                int r = alloc_drop_client(other, getppid(), 0, NULL);
                _exit(r == -EACCES && strstr(alloc_last_error(), "only root may disconnect") ? 0 : 102);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
        both_still_connected();
}

/* Another uid sees no region of pool h (mode 0660, root's): its map draws them free and says how much they hold. */
Test(allocctl, a_map_says_what_it_may_not_show) {
        if (geteuid() != 0) {
                teardown();
                cr_skip_test("needs root to act as another uid");
        }
        unsigned long long used = pool_used(c, "h");
        cr_assert_gt(used, 0);
        struct run *x = allocctl(d.sock, "--json", "map", "h", (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        cr_assert(strstr(x->out, "\"unshown_used\":0"), "root sees every region: %s", x->out);
        pid_t pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                char want[96];
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0 || !die_with_test())
                        _exit(100);
                x = allocctl(d.sock, "--json", "map", "h", (char *)NULL);
                snprintf(want, sizeof(want), "\"unshown_used\":%llu", used);
                if (x->status != 0 || !strstr(x->out, want))
                        _exit(101);
                x = allocctl(d.sock, "map", "h", "--width", "40", "--rows", "2", (char *)NULL);
                _exit(x->status == 0 && strstr(x->out, "more is in use than the regions drawn") ? 0 : 102);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

Test(allocctl, a_stopped_daemon_times_out) {
        freeze(d.pid);
        setenv("ALLOCD_TIMEOUT", "300ms", 1);
        struct run *x = allocctl(d.sock, "status", (char *)NULL);
        kill(d.pid, SIGCONT);
        cr_assert_eq(x->status, 3, "%s", x->err);
        cr_assert(strstr(x->err, "did not answer within 300 ms"), "%s", x->err);
        setenv("ALLOCD_TIMEOUT", "soon", 1);
        x = allocctl(d.sock, "status", (char *)NULL);
        cr_assert_eq(x->status, 2, "%s", x->err);
        cr_assert(strstr(x->err, "ALLOCD_TIMEOUT=soon is not a duration"), "%s", x->err);
        unsetenv("ALLOCD_TIMEOUT");
}

Test(allocctl, wait_for_a_name) {
        char want[64];
        struct run *x = allocctl(d.sock, "wait", "frame buffer", (char *)NULL);

        cr_assert_eq(x->status, 0, "%s", x->err);
        snprintf(want, sizeof(want), "frame buffer: region %llu, host, 4MiB", (unsigned long long)shared.id);
        cr_assert(strstr(x->out, want), "%s", x->out);
        x = allocctl(d.sock, "wait", "nobody's", "200ms", (char *)NULL);
        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert(strstr(x->err, "no region was published and sealed as 'nobody's'"), "%s", x->err);
        /* 0 looks once; the advice is allocctl's (a DURATION), not the library's (attach with a timeout). */
        x = allocctl(d.sock, "wait", "nobody's", "0", (char *)NULL);
        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert(strstr(x->err, "'nobody's' is not published; 0 looks once: give a DURATION"), "%s", x->err);
        x = allocctl(d.sock, "wait", "x", "soon", (char *)NULL);
        cr_assert_eq(x->status, 2);
        /* Past 2^32 - 1 ms the duration is well formed but too long: say so, not "a duration". */
        x = allocctl(d.sock, "wait", "x", "71583m", (char *)NULL);
        cr_assert_eq(x->status, 2);
        cr_assert(strstr(x->err, "too long: at most 71582m"), "%s", x->err);
}

/*
 * allocd gone in the middle of a command (killed by sig): allocctl tries again for ALLOCD_RECONNECT
 * (allocctl(1)), then exits 3 as when it cannot reach allocd; it neither hangs nor calls it a
 * refusal (exit 1).  Returns what allocctl said.
 */
static const char *gone_mid_wait(const char *reconnect, int sig) {
        static char msg[1024];
        int err[2], status;
        struct timespec t0, t1;

        cr_assert_eq(pipe(err), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pid_t pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                dup2(err[1], 2);
                setenv("ALLOCD_RECONNECT", reconnect, 1);
                execl(ALLOCCTL_PATH, "allocctl", "--socket", d.sock, "wait", "never published", "30s", (char *)NULL);
                _exit(127);
        }
        close(err[1]);
        /* allocd counts allocctl's Attach: killed before, allocctl would exit 3 without ever having been connected. */
        cr_assert_eq(wait_waiters(c, NULL, 1), 1, "allocctl's Attach never waited in allocd");
        cr_assert_eq(kill(d.pid, sig), 0);
        cr_assert_eq(waitpid(d.pid, &status, 0), d.pid);
        d.pid = -1; /* teardown: nothing left to stop */
        ssize_t n = read(err[0], msg, sizeof(msg) - 1);
        msg[n > 0 ? n : 0] = '\0';
        close(err[0]);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "ALLOCD_RECONNECT=%s, signal %d: status %#x: %s",
                  reconnect, sig, status, msg);
        cr_assert_lt(t1.tv_sec - t0.tv_sec, 10, "allocctl took %lds", (long)(t1.tv_sec - t0.tv_sec));
        return msg;
}

Test(allocctl, allocd_gone_mid_command_exits_3_after_reconnect) {
        const char *msg = gone_mid_wait("500ms", SIGKILL);
        cr_assert(strstr(msg, "ALLOCD_RECONNECT"), "%s", msg);
}

Test(allocctl, allocd_stopping_mid_command_exits_3) {
        gone_mid_wait("0", SIGTERM);
}

/*
 * A bad ID, DURATION or PID is a usage error (exit 2, docs/cli.md: "nothing was asked of allocd")
 * whether or not allocd is there: allocctl checks its words before it connects, as it does its options.
 */
Test(allocctl, bad_words_are_usage_errors_without_allocd) {
        const char *none = "/nonexistent/allocd.sock";
        const char *cases[][3] = {{"free", "twelve", NULL},
                                  {"wait", "x", "soon"},
                                  {"wait", "x", "71583m"},
                                  {"disconnect", "serial:x", NULL},
                                  {"disconnect", "0", NULL}};
        struct run *x;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                x = allocctl(none, cases[i][0], cases[i][1], cases[i][2], (char *)NULL);
                cr_assert_eq(x->status, 2, "%s %s %s: exit %d: %s", cases[i][0], cases[i][1],
                             cases[i][2] ? cases[i][2] : "", x->status, x->err);
                cr_assert_null(strstr(x->err, "not running"), "%s", x->err);
        }
}

/* allocd's line about a disconnect says whose connections an operator (or a client) closed, not only how many. */
Test(allocctl_log, disconnect_says_whose_connections) {
        struct daemon dl;
        struct alloc_client *victim;
        char log[] = "/tmp/allocd-disconnect-log-XXXXXX", arg[32], want[64];
        int fd = mkstemp(log);

        cr_assert(fd >= 0);
        close(fd);
        cr_assert_eq(daemon_spawn(&dl, "[pool h]\nkind = host\nsize = 1M\n", NULL, log), -1);
        cr_assert_eq(alloc_connect(&victim, dl.sock, "victim"), 0);
        struct alloc_status *s;
        cr_assert_eq(alloc_status(victim, &s), 0);
        unsigned long long serial = 0;
        for (size_t i = 0; i < s->nclients; i++)
                if (!strcmp(s->clients[i].name, "victim"))
                        serial = s->clients[i].serial;
        alloc_status_free(s);
        snprintf(arg, sizeof(arg), "serial:%llu", serial);
        struct run *x = allocctl(dl.sock, "disconnect", arg, (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        /* And by pid: this process's other connection. */
        struct alloc_client *other;
        cr_assert_eq(alloc_connect(&other, dl.sock, "other"), 0);
        snprintf(arg, sizeof(arg), "%d", (int)getpid());
        x = allocctl(dl.sock, "disconnect", arg, (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        alloc_disconnect(victim);
        alloc_disconnect(other);
        daemon_stop(&dl);
        const char *text = slurp(log);
        unlink(log);
        snprintf(want, sizeof(want), "disconnects connection %llu:", serial);
        cr_expect(strstr(text, want), "no '%s' in allocd's log:\n%s", want, text);
        snprintf(want, sizeof(want), "disconnects pid %d's: 1 connection holding", (int)getpid());
        cr_expect(strstr(text, want), "no '%s' in allocd's log:\n%s", want, text);
}

/* A --svg FILE that cannot be written fails map before it prints anything (the picture was printed, then exit 1). */
Test(allocctl, map_checks_its_svg_file_before_printing) {
        struct run *x = allocctl(d.sock, "map", "h", "--svg", "/nonexistent/x.svg", (char *)NULL);

        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert_str_eq(x->out, "");
        cr_assert(strstr(x->err, "allocctl: map: --svg /nonexistent/x.svg: No such file or directory"), "%s", x->err);
}

/* An unknown pool, in the words of every command that names one. */
Test(allocctl, an_unknown_pool_is_worded_alike) {
        char map[sizeof(((struct run *)0)->err)];
        struct run *x = allocctl(d.sock, "map", "nope", (char *)NULL);

        cr_assert_eq(x->status, 1, "%s", x->err);
        snprintf(map, sizeof(map), "%s", x->err);
        x = allocctl(d.sock, "dump", "nope", (char *)NULL);
        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert_str_eq(map, "allocctl: map: no pool named 'nope'; `allocctl status` lists the pools\n");
        cr_assert_str_eq(x->err, "allocctl: dump: no pool named 'nope'; `allocctl status` lists the pools\n");
}

/* A name published and not sealed: said so whether wait looked once or waited ("no region was published"). */
Test(allocctl, wait_says_a_name_is_not_sealed_yet) {
        struct alloc_region r;
        struct run *x;

        cr_assert_eq(alloc_region_new(c, "h", 4096, &(struct alloc_opts){.name = "half", .flags = ALLOC_UNSEALED}, &r),
                     0, "%s", alloc_last_error());
        x = allocctl(d.sock, "wait", "half", "200ms", (char *)NULL);
        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert(strstr(x->err, "allocctl: wait: 'half' is published but not sealed yet: its creator did not Seal it "
                                 "within the timeout"),
                  "%s", x->err);
        x = allocctl(d.sock, "wait", "half", "0", (char *)NULL);
        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert(strstr(x->err, "'half' is not sealed yet"), "%s", x->err);
}
