/* SPDX-License-Identifier: MIT */
/*
 * SIGHUP: a file that does not load (one with no pools included) changes nothing; a pool the machine cannot
 * make (a host pool larger than its memory: refused on any machine before a byte is taken) is
 * listed as not available with its reason, at start-up and on reload, while the others serve;
 * the journal and STATUS= say what the last reload did.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define NOBODY 65534
#define TOO_BIG_WORDS "is more than this machine's memory"

static const char running[] = "[daemon]\nmax_regions_per_connection = 2\n"
                              "[pool a]\nkind = host\nsize = 1M\nmode = 0666\nquota_per_uid = 16K\n";

static char log_path[64];

/* A fresh file for allocd's stderr. */
static void new_log(void) {
        snprintf(log_path, sizeof(log_path), "/tmp/allocd-reload-log-XXXXXX");
        close(mkstemp(log_path));
}

/* Starts allocd, its stderr in a fresh log_path; it dies with the test, even one that fails half-way. */
static int spawn(struct daemon *d, const char *config) {
        new_log();
        return daemon_spawn_opts(d, config, &(struct daemon_opts){.stderr_file = log_path});
}

static void start(struct daemon *d, const char *config) {
        int r = spawn(d, config);
        cr_assert_eq(r, -1, "allocd exited with %d: %s", r, slurp(log_path));
}

static void stop(struct daemon *d) {
        daemon_stop(d);
        unlink(log_path);
}

/* Sends SIGHUP and waits until allocd's log says what. */
static void reload(struct daemon *d, const char *config, const char *what) {
        write_file(d->conf, config);
        kill(d->pid, SIGHUP);
        for (int i = 0; i < 1000 && !strstr(slurp(log_path), what); i++)
                usleep(10000);
        cr_assert(strstr(slurp(log_path), what), "allocd did not say '%s':\n%s", what, slurp(log_path));
}

/* Allocates 4 KiB of pool as nobody (the pool's mode decides); 0 or a negative errno value. */
static int alloc_as_nobody(const struct daemon *d, const char *pool) {
        int status;
        pid_t pid = test_fork();

        if (pid == 0) {
                struct alloc_client *c;
                struct alloc_region r;
                if (setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test() ||
                    alloc_connect(&c, d->sock, "nobody") < 0)
                        _exit(100);
                _exit(-alloc_region_new(c, pool, 4096, NULL, &r));
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 100, "the child could not connect as nobody");
        return -WEXITSTATUS(status);
}

static const char *allocctl_status(const struct daemon *d) {
        static char out[8192];
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "%s --socket %s status", ALLOCCTL_PATH, d->sock);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        cr_assert_eq(pclose(p), 0, "%s", out);
        return out;
}

/* The running configuration is still in force: the limit, the quota and the mode. */
static void expect_running(const struct daemon *d, struct alloc_client *c) {
        struct alloc_region r;

        cr_expect_eq(alloc_region_new(c, "a", 20 << 10, NULL, &r), -EDQUOT, "quota_per_uid = 16K stays");
        cr_expect_eq(alloc_region_new(c, "a", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_expect_eq(alloc_region_new(c, "a", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_expect_eq(alloc_region_new(c, "a", 4096, NULL, &r), -EMFILE, "max_regions_per_connection = 2 stays");
        if (getuid() == 0)
                cr_expect_eq(alloc_as_nobody(d, "a"), 0, "mode = 0666 stays");
}

Test(reload, a_file_that_does_not_load_changes_nothing, .timeout = 60) {
        struct daemon d;

        start(&d, running);
        reload(&d,
               "[daemon]\nmax_regions_per_connection = 100\n"
               "[pool a]\nkind = host\nsize = 1M\nmode = 0600\n"
               "[pool b]\nkind = host\nsize = oops\n",
               "keeping the running configuration");
        cr_expect(strstr(slurp(log_path), "allocd.conf:9: size = oops"), "%s", slurp(log_path));
        cr_expect(daemon_notified(&d, "; last reload ", 5000), "STATUS= says what the reload did");
        struct alloc_client *c = daemon_connect(&d);
        expect_running(&d, c);
        const char *out = allocctl_status(&d);
        cr_expect(strstr(out, "\na ") && !strstr(out, "\nb "), "%s", out);
        alloc_disconnect(c);

        /* The same file, fixed, applies, and the journal says what changed. */
        reload(&d,
               "[daemon]\nmax_regions_per_connection = 100\n"
               "[pool a]\nkind = host\nsize = 1M\nmode = 0600\nquota_per_uid = 16K\n",
               "SIGHUP: reloaded ");
        cr_expect(strstr(slurp(log_path),
                         "allocd.conf: limits changed (max_regions_per_connection 2 -> 100), 1 pool's access rules "
                         "changed"),
                  "%s", slurp(log_path));
        cr_expect(daemon_notified(&d, "; last reload ", 5000));
        if (getuid() == 0)
                cr_expect_eq(alloc_as_nobody(&d, "a"), -EACCES, "mode = 0600 applies");

        /* The file gone: kept too, with advice for a running allocd (not a start's --config). */
        cr_assert_eq(unlink(d.conf), 0);
        kill(d.pid, SIGHUP);
        for (int i = 0; i < 1000 && !strstr(slurp(log_path), "put it back"); i++)
                usleep(10000);
        cr_expect(strstr(slurp(log_path), "No such file or directory; put it back, or restart allocd with --no-config "
                                          "for the built-in pools; keeping the running configuration"),
                  "%s", slurp(log_path));
        stop(&d);
}

/* spin is reloadable like the limits it sits beside, and a bad one is refused at its line. */
Test(reload, spin_changes_on_reload, .timeout = 60) {
        static const char *pool = "[pool a]\nkind = host\nsize = 1M\n";
        char conf[256];
        struct daemon d;

        snprintf(conf, sizeof(conf), "[daemon]\nspin = 0\n%s", pool);
        start(&d, conf);
        snprintf(conf, sizeof(conf), "[daemon]\nspin = 2ms\n%s", pool);
        reload(&d, conf, "limits changed (spin 0us -> 2000us)"); /* which limit, from what to what */
        snprintf(conf, sizeof(conf), "[daemon]\nspin = forever\n%s", pool);
        reload(&d, conf, "allocd.conf:2: spin = forever: not a duration");
        stop(&d);
}

/* log_level is reloadable, and the reload says it changed (it said 'no changes'); debug lines come then. */
Test(reload, log_level_changes_on_reload, .timeout = 60) {
        static const char *pool = "[pool a]\nkind = host\nsize = 1M\n";
        char conf[256];
        struct daemon d;

        start(&d, pool);
        snprintf(conf, sizeof(conf), "[daemon]\nlog_level = debug\n%s", pool);
        reload(&d, conf, "SIGHUP: reloaded ");
        cr_assert(strstr(slurp(log_path), "allocd.conf: log level info -> debug"), "%s", slurp(log_path));
        alloc_disconnect(daemon_connect(&d));
        reload(&d, pool, "log level debug -> info");
        cr_expect(strstr(slurp(log_path), "connected as "), "no debug line at debug level: %s", slurp(log_path));
        stop(&d);
}

/* A quantum taken out of the file is a change to the default: logged as waiting for a restart, not skipped. */
Test(reload, a_quantum_back_to_the_default_waits_for_a_restart, .timeout = 60) {
        struct daemon d;
        struct alloc_region r;

        start(&d, "[pool f]\nkind = fpga\nranges = 0x0+1M\nquantum = 64K\n");
        reload(&d, "[pool f]\nkind = fpga\nranges = 0x0+1M\n", "SIGHUP: reloaded ");
        /* It says which key changed, not every key that could. */
        cr_expect(
                strstr(slurp(log_path), "SIGHUP: pool f: the file changes quantum (keys that change only on restart)"),
                "%s", slurp(log_path));
        struct alloc_client *c = daemon_connect(&d);
        cr_expect_eq(alloc_region_new(c, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_expect_eq(pool_used(c, "f"), 64 << 10, "the running quantum stays");
        alloc_disconnect(c);
        stop(&d);
}

/* Limits lowered below what is in use: what is held stays (connections and regions), new requests meet the limit. */
Test(reload, lowered_limits_keep_what_is_held_and_refuse_more, .timeout = 60) {
        struct alloc_client *k[3], *extra;
        struct alloc_region r;
        struct daemon d;

        start(&d, "[daemon]\nmax_connections = 8\nmax_regions_per_connection = 8\n"
                  "[pool a]\nkind = host\nsize = 1M\n");
        for (int i = 0; i < 3; i++)
                k[i] = daemon_connect(&d);
        for (int i = 0; i < 3; i++)
                cr_assert_eq(alloc_region_new(k[0], "a", 4096, NULL, &r), 0, "%s", alloc_last_error());
        reload(&d, "[daemon]\nmax_connections = 1\nmax_regions_per_connection = 1\n[pool a]\nkind = host\nsize = 1M\n",
               "SIGHUP: reloaded ");
        cr_expect_eq(alloc_connect(&extra, d.sock, "one too many"), -EMFILE, "max_connections = 1 applies");
        cr_expect_eq(pool_used(k[2], "a"), 3 * 4096, "the connections and regions held are kept");
        cr_expect_eq(alloc_region_new(k[0], "a", 4096, NULL, &r), -EMFILE, "max_regions_per_connection = 1 applies");
        cr_expect_eq(alloc_region_new(k[1], "a", 4096, NULL, &r), 0, "up to the new limit: %s", alloc_last_error());
        for (int i = 0; i < 3; i++)
                alloc_disconnect(k[i]);
        stop(&d);
}

/* True if allocd closes fd (which sends nothing) within ms. */
static bool closed_within(int fd, int ms) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char b;

        return poll(&p, 1, ms) == 1 && recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

/* A lowered hello_timeout applies to a connection already waiting for its Hello, not only to later ones. */
Test(reload, a_lowered_hello_timeout_closes_a_connection_already_silent, .timeout = 60) {
        static const char pool[] = "[pool a]\nkind = host\nsize = 1M\n";
        char conf[128];
        struct daemon d;

        snprintf(conf, sizeof(conf), "[daemon]\nhello_timeout = 1h\n%s", pool);
        start(&d, conf);
        int s = daemon_raw_connect(&d);
        cr_assert(!closed_within(s, 300), "allocd closed a connection silent for 300 ms (hello_timeout 1h)");
        snprintf(conf, sizeof(conf), "[daemon]\nhello_timeout = 200ms\n%s", pool);
        reload(&d, conf, "SIGHUP: reloaded ");
        cr_expect(closed_within(s, 5000),
                  "allocd did not close a connection silent since before a reload to hello_timeout = 200ms");
        cr_expect(strstr(slurp(log_path), "said no Hello within hello_timeout"), "%s", slurp(log_path));
        close(s);
        stop(&d);
}

/* allocd started with SIGHUP blocked (a mask goes across exec: a script's trap) reloads all the same. */
Test(reload, a_sighup_blocked_by_whoever_started_allocd_still_reloads, .timeout = 60) {
        sigset_t hup, old;
        struct daemon d;

        sigemptyset(&hup);
        sigaddset(&hup, SIGHUP);
        cr_assert_eq(pthread_sigmask(SIG_BLOCK, &hup, &old), 0);
        int r = spawn(&d, running);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        cr_assert_eq(r, -1, "allocd exited with %d: %s", r, slurp(log_path));
        reload(&d, running, "SIGHUP: reloaded ");
        stop(&d);
}

/* A SIGHUP while the pools are being made (here a 256 MiB one, after the first) once killed allocd. */
Test(reload, a_sighup_during_start_up_is_a_reload_once_ready, .timeout = 60) {
        char dir[] = "/tmp/allocd-hup-XXXXXX", sock[64], conf[64];
        int status;

        cr_assert_not_null(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/allocd.sock", dir);
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        write_file(conf, "[pool first]\nkind = fpga\nranges = 0x0+1M\n[pool big]\nkind = host\nsize = 256M\n");
        new_log();
        pid_t pid = test_fork();
        if (pid == 0) {
                freopen(log_path, "w", stderr);
                execl(ALLOCD_PATH, "allocd", "--socket", sock, "--config", conf, (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 20000 && !strstr(slurp(log_path), "pool first:"); i++)
                usleep(500);
        cr_assert(strstr(slurp(log_path), "pool first:"), "%s", slurp(log_path));
        kill(pid, SIGHUP);
        for (int i = 0; i < 2000 && !strstr(slurp(log_path), "SIGHUP: reloaded"); i++) {
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        pid = 0;
                        break;
                }
                usleep(5000);
        }
        cr_expect(pid, "allocd died of the SIGHUP: %#x", status);
        cr_expect(strstr(slurp(log_path), "SIGHUP: reloaded"), "%s", slurp(log_path));
        if (pid) {
                kill(pid, SIGTERM);
                waitpid(pid, &status, 0);
        }
        unlink(log_path);
        unlink(conf);
        unlink(sock);
        rmdir(dir);
}

Test(reload, an_empty_file_is_refused, .timeout = 60) {
        static const char *empty[] = {"", "# allocd.conf, cut short\n[daemon]\nmax_regions_per_connection = 100\n"};

        for (size_t i = 0; i < 2; i++) {
                struct daemon d;
                start(&d, running);
                reload(&d, empty[i], "allocd.conf: configures no pools; add a [pool NAME] section");
                cr_expect(daemon_notified(&d, "refused (", 5000), "STATUS= says the reload was refused");
                struct alloc_client *c = daemon_connect(&d);
                expect_running(&d, c);
                alloc_disconnect(c);
                stop(&d);
        }
}

static const struct alloc_unavailable_pool *unavailable(const struct alloc_status *s, const char *name) {
        for (size_t i = 0; i < s->nunavailable; i++)
                if (!strcmp(s->unavailable[i].name, name))
                        return &s->unavailable[i];
        return NULL;
}

Test(reload, a_pool_that_cannot_be_made_is_listed_and_the_next_reload_makes_it, .timeout = 60) {
        struct daemon d;
        struct alloc_region r;
        struct alloc_status *s;

        start(&d, "[pool a]\nkind = host\nsize = 1M\n");
        struct alloc_client *c = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(c, "a", 4096, NULL, &r), 0);
        reload(&d, "[pool a]\nkind = host\nsize = 1M\n[pool big]\nkind = host\nsize = 64T\n", " done: ");
        cr_expect(strstr(slurp(log_path), "SIGHUP: reloaded ") && strstr(slurp(log_path), "1 pool pending (big)"), "%s",
                  slurp(log_path));
        cr_expect(strstr(slurp(log_path), "done: 1 pool failed (big: size 64T " TOO_BIG_WORDS), "%s", slurp(log_path));
        cr_expect(strstr(slurp(log_path), "allocd.conf:4: pool big is not available: size 64T "), "%s",
                  slurp(log_path)); /* the reason without its "pool big: " again */
        cr_expect(daemon_notified(&d, "; not available: big (allocctl status says why); last reload ", 5000));

        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        const struct alloc_unavailable_pool *u = unavailable(s, "big");
        cr_assert(u, "big is listed as not available");
        cr_expect_eq(u->kind, ALLOC_KIND_HOST);
        cr_expect(strstr(u->reason, "size 64T " TOO_BIG_WORDS), "%s", u->reason);
        cr_expect_eq(pool_status(s, "a")->used, 4096, "the running pool keeps its region");
        alloc_status_free(s);
        cr_expect(strstr(allocctl_status(&d), "\nbig              host   not available: size 64T " TOO_BIG_WORDS), "%s",
                  allocctl_status(&d));
        cr_expect_eq(alloc_region_new(c, "big", 4096, NULL, &r), -ENODEV);
        cr_expect(strstr(alloc_last_error(), TOO_BIG_WORDS), "%s", alloc_last_error());

        reload(&d, "[pool a]\nkind = host\nsize = 1M\n[pool big]\nkind = host\nsize = 2M\n",
               "done: 1 pool added (big)");
        cr_expect(daemon_notified(&d, "last reload ", 5000));
        cr_expect_eq(alloc_region_new(c, "big", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        cr_expect_eq(s->nunavailable, 0);
        cr_expect_eq(pool_status(s, "big")->size, 2 << 20);
        cr_expect_eq(pool_status(s, "a")->used, 4096);
        alloc_status_free(s);
        alloc_disconnect(c);
        stop(&d);
}

Test(reload, start_up_lists_a_pool_that_cannot_be_made_and_serves_the_rest, .timeout = 60) {
        struct daemon d;
        struct alloc_region r;
        struct alloc_status *s;

        cr_assert_eq(spawn(&d, "[pool a]\nkind = host\nsize = 1M\n[pool big]\nkind = host\nsize = 64T\n"), -1,
                     "allocd serves the pools it could make: %s", slurp(log_path));
        /* The machine's refusal, at the line of the section that asked for it. */
        cr_expect(strstr(slurp(log_path), "/allocd.conf:4: pool big: size 64T " TOO_BIG_WORDS), "%s", slurp(log_path));
        struct alloc_client *c = daemon_connect(&d);
        cr_expect_eq(alloc_region_new(c, "a", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        cr_expect(s->nunavailable == 1 && strstr(s->unavailable[0].reason, TOO_BIG_WORDS));
        alloc_status_free(s);
        alloc_disconnect(c);
        stop(&d);

        /* Not one pool: allocd still starts, says so, and allocctl status says why. */
        cr_assert_eq(spawn(&d, "[pool big]\nkind = host\nsize = 64T\n"), -1, "%s", slurp(log_path));
        cr_expect(strstr(slurp(log_path), "the pool could not be made: allocd serves none"), "%s", slurp(log_path));
        cr_expect(strstr(allocctl_status(&d), "\nbig              host   not available: "), "%s", allocctl_status(&d));
        stop(&d);
}

/* A pool of huge pages the kernel has none of said where to look but not what to do. */
Test(reload, a_pool_without_huge_pages_says_what_to_do, .timeout = 60) {
        struct daemon d;
        FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
        long free_pages = -1;

        if (f) {
                if (fscanf(f, "%ld", &free_pages) != 1)
                        free_pages = -1;
                fclose(f);
        }
        if (free_pages != 0)
                cr_skip_test("this machine has free 2 MiB huge pages (or none of that size at all)");
        start(&d, "[pool a]\nkind = host\nsize = 1M\n[pool hp]\nkind = host\nsize = 4M\nhugepages = 2M\n");
        cr_expect(strstr(slurp(log_path), "/allocd.conf:4: pool hp: "), "%s", slurp(log_path));
        cr_expect(strstr(slurp(log_path), "; reserve huge pages (sysctl vm.nr_hugepages, or hugepages= at boot) or "
                                          "set hugepages = no"),
                  "%s", slurp(log_path));
        stop(&d);
}

/* kB of one /proc/meminfo line, or 0. */
static uint64_t meminfo_kb(const char *key) {
        FILE *f = fopen("/proc/meminfo", "r");
        char line[128];
        uint64_t kb = 0;
        size_t n = strlen(key);

        while (f && fgets(line, sizeof(line), f))
                if (!strncmp(line, key, n) && line[n] == ':')
                        kb = strtoull(line + n + 1, NULL, 10);
        if (f)
                fclose(f);
        return kb;
}

/*
 * A pool smaller than the machine but larger than what is free beside its other pools and programs was
 * fallocated, all of it, until the kernel's OOM killer took something (allocd, or another program).
 */
Test(reload, a_pool_larger_than_the_memory_available_is_refused, .timeout = 60) {
        uint64_t total = meminfo_kb("MemTotal"), avail = meminfo_kb("MemAvailable") + meminfo_kb("SwapFree");
        char config[256], want[128];
        struct daemon d;

        /* 16 MiB short of the whole machine: never available while anything runs, so nothing is taken. */
        if (!total || avail + (1 << 20) > total)
                cr_skip_test("less than 1 GiB of this machine is in use or swap is large: no size to test with");
        snprintf(config, sizeof(config), "[pool a]\nkind = host\nsize = 1M\n[pool big]\nkind = host\nsize = %lluK\n",
                 (unsigned long long)(total - (16 << 10)));
        start(&d, config);
        snprintf(want, sizeof(want), "pool big: size %lluK is more than the memory available now (",
                 (unsigned long long)(total - (16 << 10)));
        cr_expect(strstr(slurp(log_path), want), "%s", slurp(log_path));
        cr_expect(strstr(slurp(log_path), "make it smaller or free memory"), "%s", slurp(log_path));
        stop(&d);
}
