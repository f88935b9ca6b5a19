/* SPDX-License-Identifier: MIT */
/*
 * Regression tests for faults that a client (or a crowd of them) could cause:
 * one test a fault, each against a real allocd started with the configuration
 * the fault needs.  Nothing is timed: the tests measure the work allocd did
 * (CPU seconds, resident memory, lines of log) with wide margins, and whether
 * it answered or exited within a deadline of seconds.  Here: connections,
 * replies and uids; test-daemon-faults-regions.c has the regions' faults, and
 * faults-common.c what both share.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faults-common.h"
#include "wire.h"

TestSuite(faults, .fini = teardown, .timeout = 90);

/*
 * Fault 1: out of fds, allocd spun on its listening socket (EMFILE leaves the
 * connection queued, so the poll fires again at once) and logged each failed
 * accept.  With RLIMIT_NOFILE = 40 and 60 connections it must neither burn
 * CPU nor flood the log, and it must serve again once they are gone.
 */
Test(faults, out_of_fds_does_not_spin) {
        enum { NOFILE = 40, NCONN = 60, HOLD_MS = 2500 };
        int fds[NCONN], nconnected = 0;

        start("[pool f]\nkind = fpga\nranges = 0x0+1M\n", NOFILE, NULL);
        /* allocd keeps max_connections (1024 by default) to what RLIMIT_NOFILE leaves room for, and says so. */
        cr_expect_geq(log_count((const char *[]){"max_connections", NULL}), 1,
                      "allocd did not log that it lowered max_connections to fit RLIMIT_NOFILE = %d; its log:\n%s",
                      NOFILE, slurp(log_path));

        double cpu0 = daemon_cpu_seconds(&d);
        long t0 = now_ms();
        for (int i = 0; i < NCONN; i++) {
                bool ok;
                fds[i] = raw_socket(true, &ok); /* beyond the backlog a blocking connect would wait */
                nconnected += ok;
        }
        cr_assert_gt(nconnected, NOFILE, "only %d of %d connections were queued", nconnected, NCONN);
        while (now_ms() - t0 < HOLD_MS)
                usleep(50000);
        double cpu = daemon_cpu_seconds(&d) - cpu0;
        long held_ms = now_ms() - t0;
        /* Today's line is "accept: Too many open files"; in other words, EMFILE's strerror or "file descriptors". */
        unsigned long accept_lines = log_count((const char *[]){"accept:", "open files", "file descriptors", NULL});

        cr_log_info("out of fds: %.2f s of CPU in %ld ms, %lu log lines about accept", cpu, held_ms, accept_lines);
        cr_expect_lt(cpu, 0.5, "allocd used %.2f s of CPU in %ld ms while out of fds: it spins on accept", cpu,
                     held_ms);
        cr_expect_leq(accept_lines, 5, "allocd logged %lu lines about failing to accept in %ld ms", accept_lines,
                      held_ms);

        for (int i = 0; i < NCONN; i++)
                close(fds[i]);
        /* Served again: a new connection is answered, and a client allocates and frees. */
        close(raw_hello("after"));
        c = daemon_connect(&d);
        struct alloc_region r;
        cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        c = alloc_disconnect(c);
        stop();
}

/*
 * Fault 2: a connection over max_connections is kept until its first request
 * (to tell it why it is refused); one that says nothing held allocd up on
 * SIGTERM.  And no connection may stay silent for ever: hello_timeout.
 */
Test(faults, silent_connections_do_not_hold_allocd) {
        static const char *pool = "[pool f]\nkind = fpga\nranges = 0x0+1M\n";
        char conf[256];
        int status = 0;

        snprintf(conf, sizeof(conf), "[daemon]\nmax_connections = 1\n%s", pool);
        start(conf, 0, NULL);
        c = daemon_connect(&d);
        int b = raw_connect(); /* over the limit, and silent */
        /* Refused in turn after b: once it is answered, allocd has accepted b (accept takes them in order). */
        int third = raw_connect();
        /* Should allocd tell it unasked and close it, this send fails: its answer is read all the same. */
        send_hello(third, "third");
        Allocd__Reply *r = recv_reply(third, 10000, "a refused Hello");
        cr_assert_not_null(r, "closed without saying why");
        cr_assert_eq(r->error, ALLOCD__ERROR__LIMIT, "error %d: %s", r->error, r->message);
        allocd__reply__free_unpacked(r, NULL);
        close(third);

        kill(d.pid, SIGTERM);
        long end = now_ms() + 5000;
        pid_t w = 0;
        while ((w = waitpid(d.pid, &status, WNOHANG)) == 0 && now_ms() < end)
                usleep(10000);
        cr_expect_eq(w, d.pid, "allocd did not exit within 5 s of SIGTERM while a refused connection stays silent");
        if (w == d.pid)
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "allocd did not exit cleanly: %#x", status);
        close(b);
        if (w != d.pid) {
                /* Today it exits once the silent one hangs up; failing that, it is killed. */
                end = now_ms() + 5000;
                while ((w = waitpid(d.pid, &status, WNOHANG)) == 0 && now_ms() < end)
                        usleep(10000);
                if (w == 0) {
                        kill(d.pid, SIGKILL);
                        waitpid(d.pid, &status, 0);
                }
        }
        c = alloc_disconnect(c);
        d.pid = 0;
        stop();

        /* hello_timeout: a connection that has not said Hello within it is closed, whether it fits or not. */
        snprintf(conf, sizeof(conf), "[daemon]\nmax_connections = 1\nhello_timeout = 200ms\n%s", pool);
        start(conf, 0, NULL);
        int s = raw_connect();
        cr_expect(closed_by_allocd(s, 5000), "allocd did not close a connection silent for 5 s (hello_timeout 200ms)");
        close(s);
        c = daemon_connect(&d);
        b = raw_connect();
        cr_expect(closed_by_allocd(b, 5000),
                  "allocd did not close a refused connection silent for 5 s (hello_timeout 200ms)");
        close(b);
        struct alloc_region reg;
        cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &reg), 0, "%s", alloc_last_error());
        c = alloc_disconnect(c);
        /* Each line about a client names it by pid and uid, as allocd(8) says: whose connection it was. */
        static const char *const said[] = {"refusing client pid %d uid %u: ", "client pid %d uid %u said no Hello"};
        for (size_t i = 0; i < 2; i++) {
                char want[64];
                snprintf(want, sizeof(want), said[i], (int)getpid(), (unsigned)getuid());
                cr_expect(strstr(slurp(log_path), want), "no '%s' in allocd's log:\n%s", want, slurp(log_path));
        }
        stop();
}

/*
 * Fault 4: replies were queued per connection up to 256 packets whatever their
 * size, so clients that send requests and never read the replies made allocd
 * grow by hundreds of MiB.  Status replies are made large here (many pools
 * with long names, many clients): 64 connections each send up to 250 Status
 * requests without reading.  allocd must stay within a bound, and keep
 * answering a client that reads its replies.
 */
Test(faults, unread_replies_are_bounded) {
        enum { NCONN = 64, NREQ = 250, NPOOLS = 128 };
        static char conf[NPOOLS * 220 + 128];
        char name[ALLOC_CLIENT_NAME_MAX + 1];
        int fds[NCONN];
        size_t n = 0;

        for (int i = 0; i < NPOOLS; i++) /* names of 63 characters, the most a pool name may have */
                n += (size_t)snprintf(conf + n, sizeof(conf) - n,
                                      "[pool p%03d-%058d]\nkind = fpga\nranges = 0x%x000000+4K\n", i, 0, i + 1);
        /* AddressSanitizer's quarantine would keep what allocd frees resident: without it, growth is what it holds. */
        static char asan[512];
        const char *inherited = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof(asan), "ASAN_OPTIONS=%s%squarantine_size_mb=0", inherited ? inherited : "",
                 inherited ? ":" : "");
        start(conf, 0, (char *[]){asan, NULL});
        memset(name, 'c', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        int good = raw_hello("reads its replies");
        for (int i = 0; i < NCONN; i++)
                fds[i] = raw_hello(name);

        unsigned long long rss0 = daemon_rss(&d), peak = rss0;
        unsigned long sent = 0;
        for (int i = 0; i < NCONN; i++) {
                for (int j = 0; j < NREQ; j++) {
                        int e = send_status(fds[i], 2 + (uint64_t)j, MSG_DONTWAIT);
                        if (e < 0) /* -EAGAIN: allocd stops reading; -EPIPE, -ECONNRESET: it hung up */
                                break;
                        sent++;
                }
        }
        /* While they sit there, a client that reads its replies is answered; allocd's size is sampled meanwhile. */
        for (int i = 0; i < 15; i++) {
                cr_assert_eq(send_status(good, 1000 + (uint64_t)i, 0), 0);
                Allocd__Reply *r = recv_reply(good, 10000, "a well-behaved client's Status");
                cr_assert_not_null(r, "allocd closed the connection of a client that reads its replies");
                cr_assert_eq(r->error, ALLOCD__ERROR__OK, "Status: error %d: %s", r->error, r->message);
                cr_assert_eq(r->id, 1000 + (uint64_t)i);
                allocd__reply__free_unpacked(r, NULL);
                unsigned long long rss = daemon_rss(&d);
                if (rss > peak)
                        peak = rss;
                usleep(100000);
        }
        c = daemon_connect(&d);
        struct alloc_status *st;
        cr_assert_eq(alloc_status(c, &st), 0, "alloc_status: %s", alloc_last_error());
        cr_expect_eq(st->npools, NPOOLS);
        alloc_status_free(st);
        c = alloc_disconnect(c);

        cr_log_info("unread replies: %lu requests sent, VmRSS %llu -> %llu KiB", sent, rss0 >> 10, peak >> 10);
        cr_expect_lt(peak - rss0, 64 * MiB,
                     "allocd grew by %llu MiB holding replies that %d clients do not read (%lu requests)",
                     (peak - rss0) / MiB, NCONN, sent);
        for (int i = 0; i < NCONN; i++)
                close(fds[i]);
        close(good);
        stop();
}

/* ---- another uid ---- */

struct helper {
        pid_t pid;
        int in, out; /* its stdin (we close it to let it go), its stdout */
};

/* helper-client SOCKET op count [pool] as nobody:nogroup, holding what it got until helper_finish. */
static void helper_start(struct helper *h, const char *op, int count, const char *pool) {
        char n[16], cmd[512];
        int in[2], out[2];

        if (access(helper, X_OK) < 0) {
                snprintf(cmd, sizeof(cmd), "install -m 0755 '%s' '%s'", HELPER_PATH, helper);
                cr_assert_eq(system(cmd), 0, "%s", cmd);
        }
        snprintf(n, sizeof(n), "%d", count);
        cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
        cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
        h->pid = test_fork();
        cr_assert(h->pid >= 0);
        if (h->pid == 0) {
                if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)
                        _exit(103);
                if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test())
                        _exit(101);
                execl(helper, "helper-client", d.sock, op, n, pool, (char *)NULL);
                _exit(102);
        }
        close(in[0]);
        close(out[1]);
        h->in = in[1];
        h->out = out[0];
}

/* Its report: how many it got, the errno value of the one refused (0: none), allocd's message. */
static int helper_report(struct helper *h, int *err, char *msg, size_t size) {
        char line[1024];
        size_t n = 0;
        int ok = -1, off = 0;

        while (n < sizeof(line) - 1 && !memchr(line, '\n', n)) {
                struct pollfd p = {.fd = h->out, .events = POLLIN};
                cr_assert_eq(poll(&p, 1, 10000), 1, "helper-client said nothing within 10 s");
                ssize_t k = read(h->out, line + n, sizeof(line) - 1 - n);
                cr_assert_gt(k, 0, "helper-client ended without a report");
                n += (size_t)k;
        }
        line[n] = '\0';
        line[strcspn(line, "\n")] = '\0';
        cr_assert_eq(sscanf(line, "%d %d %n", &ok, err, &off), 2, "helper-client said: %s", line);
        snprintf(msg, size, "%s", line + off);
        return ok;
}

/* Lets it go; returns its exit code. */
static int helper_finish(struct helper *h) {
        int status;

        close(h->in);
        close(h->out);
        cr_assert_eq(waitpid(h->pid, &status, 0), h->pid);
        cr_assert(WIFEXITED(status), "helper-client: status %#x", status);
        cr_assert_lt(WEXITSTATUS(status), 100, "helper-client failed to run: %d", WEXITSTATUS(status));
        return WEXITSTATUS(status);
}

/* Runs op as nobody: expects want successes, then LIMIT (EMFILE) naming key; holds the result until released. */
static void expect_uid_limit(struct helper *h, const char *op, int want, const char *pool, const char *key) {
        char msg[1024];
        int err = 0;

        helper_start(h, op, want + 1, pool);
        int ok = helper_report(h, &err, msg, sizeof(msg));
        cr_log_info("nobody: %s %d: %d, then errno %d: %s", op, want + 1, ok, err, msg);
        cr_expect_eq(ok, want, "%s: nobody got %d, want %d (then refused): %s", op, ok, want, msg);
        cr_expect_eq(err, EMFILE, "%s: the one over %s: errno %d (want EMFILE, allocd's LIMIT): %s", op, key, err, msg);
        cr_expect(strstr(msg, key), "%s: the refusal does not name %s: %s", op, key, msg);
}

/*
 * Fault 7: max_connections and max_names were global, so one uid could take
 * them all.  max_connections_per_uid, max_names_per_uid and
 * max_persist_per_uid bound each uid, and refuse with LIMIT naming the key.
 * The other uid is real: nobody, through helper-client.
 */
Test(faults, one_uid_cannot_exhaust_global_limits) {
        struct helper h;
        struct alloc_region r;
        char name[32];

        start("[daemon]\n"
              "max_connections = 16\n"
              "max_connections_per_uid = 4\n"
              "max_names = 64\n"
              "max_names_per_uid = 8\n"
              "max_persist_per_uid = 4\n"
              "[pool f]\nkind = fpga\nranges = 0x0+16M\nmode = 0666\n",
              0, NULL);
        c = daemon_connect(&d);

        /* Connections: nobody holds 4 and is refused a 5th; root still connects (2 of its own 4). */
        expect_uid_limit(&h, "conns", 4, NULL, "max_connections_per_uid");
        cr_expect_eq(alloc_connect(&c2, d.sock, "root too"), 0, "root is refused while nobody is at its limit: %s",
                     alloc_last_error());
        c2 = alloc_disconnect(c2);
        cr_assert_eq(helper_finish(&h), EMFILE);

        /* Names: nobody publishes 8 and is refused a 9th; root still publishes. */
        expect_uid_limit(&h, "names", 8, "f", "max_names_per_uid");
        for (int i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "root-%d", i);
                struct alloc_opts o = {.name = name};
                cr_expect_eq(alloc_region_new(c, "f", 4096, &o, &r), 0, "root cannot publish %s: %s", name,
                             alloc_last_error());
        }
        cr_assert_eq(helper_finish(&h), EMFILE);

        /* PERSIST: nobody makes 4 and is refused a 5th; root still makes some; nobody's count outlives it. */
        expect_uid_limit(&h, "persist", 4, "f", "max_persist_per_uid");
        for (int i = 0; i < 2; i++)
                cr_expect_eq(alloc_region_new(c, "f", 4096, &(struct alloc_opts){.flags = ALLOC_PERSIST}, &r), 0,
                             "root cannot make a PERSIST region: %s", alloc_last_error());
        cr_assert_eq(helper_finish(&h), EMFILE);
        expect_uid_limit(&h, "persist", 0, "f", "max_persist_per_uid");
        cr_assert_eq(helper_finish(&h), EMFILE);

        c = alloc_disconnect(c);
        stop();
}

/*
 * Fault 9: an isolation = region pool's regions each hold a memfd in allocd, and nothing bounded
 * them per uid: one uid's regions (each connection below max_regions_per_connection) took every
 * fd allocd had, or every slot of the fd store, and other uids could allocate there no more (nor,
 * out of fds, connect).  max_region_fds_per_uid bounds them, and refuses with LIMIT naming it.
 */
Test(faults, one_uid_cannot_take_every_region_fd) {
        struct helper h;
        struct alloc_region r[3];

        start("[daemon]\n"
              "max_region_fds_per_uid = 4\n"
              "[pool r]\nkind = host\nsize = 1M\nisolation = region\nmode = 0666\n",
              0, NULL);
        c = daemon_connect(&d);
        expect_uid_limit(&h, "regions", 4, "r", "max_region_fds_per_uid");
        for (int i = 0; i < 3; i++)
                cr_expect_eq(alloc_region_new(c, "r", 4096, NULL, &r[i]), 0, "root cannot allocate: %s",
                             alloc_last_error());
        cr_assert_eq(helper_finish(&h), EMFILE);
        /* Its regions went with its connection, and with them its count. */
        expect_uid_limit(&h, "regions", 4, "r", "max_region_fds_per_uid");
        cr_assert_eq(helper_finish(&h), EMFILE);
        c = alloc_disconnect(c);
        stop();
}

/*
 * Fault 10: every refused reclaim is logged, and a refused reclaim leaves the connection in its
 * handshake, so one connection could make allocd write a line per request, as fast as it sent them
 * (so could denied Allocs, or connections over a limit): the journal's own rate limit would then
 * drop allocd's other lines.  Lines about clients are rate-limited, and allocd says so.
 */
/*
 * n Hellos on a new connection that each reclaim with a secret one byte short, which allocd logs (a
 * reclaim of a connection it does not have is everyday, logged at debug only).
 */
static void refused_reclaims(int n) {
        uint8_t buf[256], secret[15] = {0};
        int s = raw_connect();

        for (int i = 0; i < n; i++) {
                Allocd__Request req = ALLOCD__REQUEST__INIT;
                Allocd__Hello h = ALLOCD__HELLO__INIT;
                h.has_version = h.has_reclaim_serial = h.has_reclaim_secret = true;
                h.reclaim_secret = (ProtobufCBinaryData){sizeof(secret), secret};
                h.version = WIRE_VERSION;
                h.reclaim_serial = 1000000 + (uint64_t)i;
                req.body_case = ALLOCD__REQUEST__BODY_HELLO;
                req.hello = &h;
                cr_assert_eq(wire_send(s, buf, allocd__request__pack(&req, buf), NULL, 0, MSG_NOSIGNAL), 0);
                Allocd__Reply *r = recv_reply(s, 10000, "a reclaim with a short secret");
                cr_assert_not_null(r, "allocd closed the connection after %d refused reclaims", i);
                cr_assert_eq(r->error, ALLOCD__ERROR__INVALID, "error %d: %s", r->error, r->message);
                allocd__reply__free_unpacked(r, NULL);
        }
        close(s);
}

/* With own_pid_namespace, allocd runs in a pid namespace of its own, in which this test is not. */
static void flood_the_log(bool own_pid_namespace) {
        enum { NREQ = 3000 };
        static const char *const reclaim[] = {"cannot reclaim connection", NULL};
        static const char *const limited[] = {"lines about clients", NULL};
        int ours = -1;

        if (own_pid_namespace) {
                ours = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
                cr_assert(ours >= 0, "/proc/self/ns/pid: %s", strerror(errno));
                cr_assert_eq(unshare(CLONE_NEWPID), 0, "unshare(CLONE_NEWPID): %s", strerror(errno));
        }
        start("[pool f]\nkind = fpga\nranges = 0x0+1M\n", 0, NULL);
        if (ours >= 0) {
                /* Later children in ours again: LeakSanitizer's, at exit, must be able to trace this process. */
                cr_assert_eq(setns(ours, CLONE_NEWPID), 0, "setns: %s", strerror(errno));
                close(ours);
        }
        refused_reclaims(NREQ);
        /* allocd still serves. */
        close(raw_hello("after"));
        unsigned long lines = log_count(reclaim);
        cr_log_info("%d refused reclaims: %lu lines about them", NREQ, lines);
        cr_expect_lt(lines, NREQ / 2, "one connection made allocd log %lu lines in %d requests", lines, NREQ);
        cr_expect_eq(log_count(limited), 1, "allocd did not say once that it leaves lines about clients out:\n%s",
                     slurp(log_path));
        stop();
}

Test(faults, one_client_cannot_flood_the_log) {
        flood_the_log(false);
}

/* The limit is each uid's: one uid's flood does not leave out the lines about another's clients. */
Test(faults, one_uid_flooding_the_log_does_not_hide_another) {
        static const char *const nobody[] = {"uid 65534 cannot reclaim", NULL};
        int status;

        start("[pool f]\nkind = fpga\nranges = 0x0+1M\n", 0, NULL);
        refused_reclaims(3000);
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test())
                        _exit(126);
                refused_reclaims(1);
                _exit(0);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other uid's client: %#x", status);
        close(raw_hello("after"));
        cr_expect_eq(log_count(nobody), 1, "uid %d's refused reclaim is not in allocd's log:\n%s", NOBODY,
                     slurp(log_path));
        stop();
}

/*
 * A client in a pid namespace allocd cannot see (allocd run in a container, the socket bound into it from
 * outside) has pid 0 in SO_PEERCRED: its lines are about a client all the same, and limited as well.
 */
Test(faults, a_client_allocd_sees_as_pid_0_cannot_flood_the_log) {
        flood_the_log(true);
}

/* The fds allocd has open. */
static int daemon_fds(void) {
        char path[64];
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)d.pid);
        DIR *dir = opendir(path);
        cr_assert_not_null(dir, "%s: %s", path, strerror(errno));
        for (struct dirent *e; (e = readdir(dir));)
                n += e->d_name[0] != '.';
        closedir(dir);
        return n;
}

/*
 * Fault 11: each reply that hands out an isolation = region region carries an fd allocd opened for
 * it, which a reply queued in allocd keeps open; only the queue's bytes paused the connection, so one
 * that attached a region over and over without reading held an fd in allocd per ~60-byte reply,
 * over a thousand before its requests stopped being read, and a few such connections took every fd
 * allocd had.  A connection with replies queued that carry such fds is not read until it reads them.
 */
Test(faults, unread_replies_do_not_hold_fds) {
        enum { NREQ = 4000 };
        struct alloc_region r;

        start("[pool r]\nkind = host\nsize = 1M\nisolation = region\n", 0, NULL);
        c = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(c, "r", 4096, &(struct alloc_opts){.name = "x"}, &r), 0, "%s",
                     alloc_last_error());
        int before = daemon_fds();
        int s = raw_hello("attacher");
        int sent = send_attaches(s, 2, "x", NREQ, 3000);
        usleep(300000);
        int held = daemon_fds() - before;
        cr_log_info("%d attaches not read: allocd holds %d fds more", sent, held);
        cr_expect_lt(held, 64, "one connection that reads none of its %d replies holds %d fds in allocd", sent, held);
        close(s);
        c = alloc_disconnect(c);
        stop();
}

/* An OK reply to an Alloc sent on fd, and the fd that came with it (closed). */
static void expect_granted(int fd, uint64_t id, const char *pool, const char *who) {
        send_alloc(fd, id, pool, 4096, 0);
        Allocd__Reply *r = recv_reply(fd, 10000, who);
        cr_assert_not_null(r, "%s: allocd closed its connection instead of granting its Alloc in %s; its log:\n%s", who,
                           pool, slurp(log_path));
        cr_assert_eq(r->error, ALLOCD__ERROR__OK, "%s: error %d: %s", who, r->error, r->message);
        allocd__reply__free_unpacked(r, NULL);
}

/*
 * An fd allocd sends is in flight until its client reads it, and the kernel lets a user without
 * CAP_SYS_RESOURCE (allocd's, in its unit) have at most RLIMIT_NOFILE of them: a few connections
 * of one uid that attached an isolation = region region over and over without reading held them
 * all (some 278 each), and from then on every send with an fd failed, to any client, and allocd
 * took that for a hang-up: an innocent client's Alloc closed its connection.  Each connection has
 * at most FDS_IN_FLIGHT of them now.
 */
Test(faults, unread_fds_do_not_cost_others_their_connection) {
        enum { NOFILE = 300, NATT = 3, NREQ = 400 };
        int att[NATT], total = 0;
        struct alloc_region r;

        start_as("[pool r]\nkind = host\nsize = 1M\nisolation = region\n[pool h]\nkind = host\nsize = 1M\n", NOFILE,
                 geteuid() == 0 ? NOBODY : 0);
        c = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(c, "r", 4096, &(struct alloc_opts){.name = "x"}, &r), 0, "%s",
                     alloc_last_error());
        int innocent = raw_hello("innocent"); /* connected before, and after: */
        for (int i = 0; i < NATT; i++) {
                att[i] = raw_hello("attacher");
                total += send_attaches(att[i], 2, "x", NREQ, 2000);
        }
        usleep(300000);
        cr_log_info("%d connections sent %d attaches and read none", NATT, total);
        int late = raw_hello("late");
        expect_granted(innocent, 2, "h", "a client connected before"); /* the pool's fd comes with it */
        expect_granted(late, 2, "r", "a client connected after");      /* a memfd of its own */
        expect_granted(late, 3, "h", "a client connected after");
        for (int i = 0; i < NATT; i++)
                close(att[i]);
        close(innocent);
        close(late);
        c = alloc_disconnect(c);
        stop();
}

/* The cap on fds in flight delays a client that pipelines, never loses a reply. */
Test(faults, pipelined_region_allocs_all_arrive) {
        enum { N = 200 };
        int s, got = 0, fds = 0, sent = 0;

        start_as("[pool r]\nkind = host\nsize = 4M\nisolation = region\n", 0, geteuid() == 0 ? NOBODY : 0);
        s = raw_hello("pipeliner");
        for (long end = now_ms() + 20000; got < N && now_ms() < end;) {
                static uint8_t buf[WIRE_MAX_PACKET];
                Allocd__Request req = ALLOCD__REQUEST__INIT;
                Allocd__Alloc a = ALLOCD__ALLOC__INIT;
                a.pool = "r";
                a.has_size = req.has_id = true;
                a.size = 4096;
                req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
                req.alloc = &a;
                /* As many as the socket takes, then every reply there is. */
                for (int e = 0; sent < N && e == 0; sent += e == 0) {
                        req.id = 2 + (uint64_t)sent;
                        e = wire_send(s, buf, allocd__request__pack(&req, buf), NULL, 0, MSG_DONTWAIT | MSG_NOSIGNAL);
                        cr_assert(e == 0 || e == -EAGAIN, "send: %s", strerror(-e));
                }
                struct pollfd p = {.fd = s, .events = POLLIN};
                if (poll(&p, 1, 100) != 1)
                        continue;
                int fd[WIRE_MAX_FDS];
                size_t nfd = WIRE_MAX_FDS;
                ssize_t n = wire_recv(s, buf, sizeof(buf), fd, &nfd, 0);
                cr_assert_gt(n, 0, "allocd closed the connection after %d of %d replies", got, N);
                Allocd__Reply *r = allocd__reply__unpack(NULL, (size_t)n, buf);
                cr_assert_not_null(r);
                cr_assert_eq(r->error, ALLOCD__ERROR__OK, "reply %d: error %d: %s", got, r->error, r->message);
                allocd__reply__free_unpacked(r, NULL);
                for (size_t i = 0; i < nfd; i++)
                        close(fd[i]);
                fds += (int)nfd;
                got++;
        }
        cr_assert_eq(got, N, "%d of %d pipelined Allocs were answered within 20 s", got, N);
        cr_expect_eq(fds, N, "%d fds came with %d regions", fds, N);
        close(s);
        stop();
}
