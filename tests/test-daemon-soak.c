/* SPDX-License-Identifier: MIT */
/*
 * A bounded soak: each kind of operation a few hundred times against one
 * allocd, after which allocd must hold what it held before (its fds, its
 * mappings, nothing in use, nobody waiting) and so must the client (its fds,
 * its mappings).  What LeakSanitizer cannot see: state that stays reachable
 * but grows with operations instead of with what is alive.  A longer, mixed
 * run with killed clients, two uids and reloads is kept out of the suite.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloc/kind.h>

#include "harness.h"

#define N 300
#define NOBODY 65534

static struct daemon d;
static struct alloc_client *c, *c2;

static void start(void) {
        daemon_start(&d, "[pool host]\nkind = host\nsize = 16M\nmode = 0666\n"
                         "[pool iso]\nkind = host\nsize = 16M\nisolation = region\nmode = 0666\n"
                         "[pool block]\nkind = host\nsize = 1M\nmode = 0666\n");
        c = daemon_connect(&d);
        c2 = daemon_connect(&d);
        /* allocd's first work off its loop thread (a kind's regions, zeroed) starts libuv's threads, whose stacks are
         * mappings: before any mark. */
        for (int i = 0; i < 2; i++) {
                struct alloc_memkind *k;
                void *p;
                cr_assert_eq(alloc_kind_create(c, i ? "iso" : "host", NULL, &k), 0, "%s", alloc_last_error());
                cr_assert((p = alloc_kind_calloc(k, 1, 4 << 20)));
                alloc_kind_free(k, p);
                alloc_kind_destroy(k);
        }
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        wait_used(c, "iso", 0);
        wait_used(c, "host", 0);
}

static void stop(void) {
        alloc_disconnect(c2);
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(soak, .init = start, .fini = stop, .timeout = 120);

static unsigned count_fds(pid_t pid) {
        char path[64];
        unsigned n = 0;
        DIR *dir;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        cr_assert((dir = opendir(path)), "%s", path);
        for (struct dirent *e; (e = readdir(dir));)
                n += e->d_name[0] != '.';
        closedir(dir);
        return n;
}

static unsigned count_maps(pid_t pid) {
        char path[64];
        unsigned n = 0;
        int ch;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
        cr_assert((f = fopen(path, "r")), "%s", path);
        while ((ch = fgetc(f)) != EOF)
                n += ch == '\n';
        fclose(f);
        return n;
}

struct mark {
        unsigned fds, maps, my_fds, my_maps;
};

static struct mark mark(void) {
        return (struct mark){count_fds(d.pid), count_maps(d.pid), count_fds(getpid()), count_maps(getpid())};
}

/* Nothing in use, nobody waiting, and allocd's and our fds and mappings as at m (mappings: at most one more, the
 * first mapping of a pool; not under AddressSanitizer, whose allocator maps as it goes). */
static void settled(const struct mark *m, const char *what) {
        struct mark now;
        struct alloc_status *st;

        for (int i = 0; i < 200; i++) {
                if (!alloc_status(c, &st)) {
                        uint64_t busy = 0;
                        for (size_t p = 0; p < st->npools; p++)
                                busy += st->pools[p].used + st->pools[p].regions + st->pools[p].waiters;
                        alloc_status_free(st);
                        now = mark();
                        if (!busy && now.fds == m->fds && now.my_fds == m->my_fds &&
                            (UNDER_ASAN || (now.maps <= m->maps + 1 && now.my_maps <= m->my_maps + 3)))
                                return;
                }
                usleep(50000);
        }
        cr_assert_fail("after %d x %s: allocd holds %u fds (%u before), %u mappings (%u); this client %u fds (%u), %u "
                       "mappings (%u)",
                       N, what, now.fds, m->fds, now.maps, m->maps, now.my_fds, m->my_fds, now.my_maps, m->my_maps);
}

static volatile sig_atomic_t fired;

static void on_alarm(int sig) {
        (void)sig;
        fired = 1;
}

static int interrupted(void *data) {
        (void)data;
        return fired;
}

/* SIGALRM every ms until disarm: whichever lands in the wait, before or during its poll, ends it. */
static void arm(void) {
        struct itimerval it = {.it_value = {.tv_usec = 1000}, .it_interval = {.tv_usec = 1000}};

        fired = 0;
        signal(SIGALRM, on_alarm);
        setitimer(ITIMER_REAL, &it, NULL);
}

/* interrupted() is asked in every wait, not only after a signal: the next waits are not to end. */
static void disarm(void) {
        setitimer(ITIMER_REAL, &(struct itimerval){0}, NULL);
        fired = 0;
}

static const char *pool(int i) {
        return i % 2 ? "iso" : "host";
}

Test(soak, connections_regions_and_batches) {
        struct alloc_region r, rs[8];
        uint64_t sizes[8] = {4096, 8192, 4096, 4096, 12288, 4096, 4096, 4096}, ids[8];
        struct mark m = mark();

        for (int i = 0; i < N; i++) {
                alloc_disconnect(daemon_connect(&d));
                cr_assert_eq(alloc_region_new(c, pool(i), 8192, &(struct alloc_opts){.flags = ALLOC_ZERO}, &r), 0, "%s",
                             alloc_last_error());
                cr_assert_eq(alloc_region_free_sync(c, r.id), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_new_batch(c, "host", sizes, 8, NULL, rs), 0, "%s", alloc_last_error());
                for (int j = 0; j < 8; j++)
                        ids[j] = rs[j].id;
                cr_assert_eq(alloc_region_free_batch(c, ids, 8), 0, "%s", alloc_last_error());
        }
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        settled(&m, "connect, alloc, free, batch");
}

Test(soak, names_and_persist_freed_by_another_connection) {
        struct alloc_region r, a;
        char name[32];
        struct mark m = mark();

        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "soak-%d", i % 3 ? 0 : i);
                cr_assert_eq(alloc_region_new(c, pool(i), 4096,
                                              &(struct alloc_opts){.name = name, .flags = ALLOC_UNSEALED}, &r),
                             0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_seal(c, r.id), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_attach(c2, name, NULL, &a), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_detach_sync(c2, a.id), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_free_sync(c, r.id), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_new(c, pool(i), 4096, &(struct alloc_opts){.flags = ALLOC_PERSIST}, &r), 0,
                             "%s", alloc_last_error());
                cr_assert_eq(alloc_region_detach_sync(c, r.id), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_free_sync(c2, r.id), 0, "%s", alloc_last_error());
        }
        settled(&m, "named, attach, detach, PERSIST freed by another connection");
}

Test(soak, waits_that_time_out_and_waits_cancelled) {
        struct alloc_region r, a;
        struct mark m;

        alloc_set_interrupt(c2, interrupted, NULL);
        m = mark();
        for (int i = 0; i < N; i++) {
                cr_assert_eq(alloc_region_attach(c2, "nobody", &(struct alloc_attach_opts){.timeout_ms = 1}, &a),
                             -ETIMEDOUT, "%s", alloc_last_error());
                arm();
                cr_assert_eq(alloc_region_attach(c2, "nobody", &(struct alloc_attach_opts){.timeout_ms = 60000}, &a),
                             -EINTR, "%s", alloc_last_error());
                disarm();
                cr_assert_eq(alloc_region_new(c, "block", 1 << 20, NULL, &r), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_new(c2, "block", 4096, &(struct alloc_opts){.timeout_ms = 1}, &a), -ETIMEDOUT,
                             "%s", alloc_last_error());
                arm();
                cr_assert_eq(alloc_region_new(c2, "block", 4096, &(struct alloc_opts){.flags = ALLOC_NOFAIL}, &a),
                             -EINTR, "%s", alloc_last_error());
                disarm();
                cr_assert_eq(alloc_region_free_sync(c, r.id), 0, "%s", alloc_last_error());
        }
        settled(&m, "attach and alloc waits timed out and cancelled");
}

Test(soak, spares_and_kinds) {
        struct alloc_region r;
        struct mark m = mark();

        for (int i = 0; i < N; i++) {
                struct alloc_memkind *k;
                void *p[8];

                cr_assert_eq(alloc_set_spare(c, true), 0);
                for (int j = 0; j < 4; j++) {
                        cr_assert_eq(alloc_region_new(c, pool(i), 4096u << (j / 2), NULL, &r), 0, "%s",
                                     alloc_last_error());
                        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
                }
                cr_assert_eq(alloc_set_spare(c, false), 0);
                cr_assert_eq(alloc_kind_create(c, pool(i),
                                               &(struct alloc_kind_opts){.usage = ALLOC_KIND_USAGE_CONSERVATIVE}, &k),
                             0, "%s", alloc_last_error());
                for (int j = 0; j < 8; j++)
                        cr_assert((p[j] = alloc_kind_malloc(k, 1 << 20)));
                for (int j = 0; j < 8; j++)
                        alloc_kind_free(k, p[j]);
                alloc_kind_destroy(k);
        }
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        settled(&m, "spares and kinds");
}

/* Clients of another uid killed in the middle of their requests, and reloads. */
Test(soak, killed_clients_and_reloads) {
        struct mark m = mark();

        for (int i = 0; i < N; i++) {
                pid_t pid = test_fork();
                cr_assert(pid >= 0);
                if (pid == 0) {
                        struct alloc_client *k;
                        struct alloc_region r;
                        if (i % 2 && (setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test()))
                                _exit(1);
                        if (alloc_connect(&k, d.sock, "killed") < 0)
                                _exit(2);
                        alloc_region_new(k, pool(i), 4096, NULL, &r);
                        alloc_region_new(k, "host", 4096, &(struct alloc_opts){.flags = ALLOC_PERSIST}, &r);
                        alloc_region_new(k, "block", 1 << 20, &(struct alloc_opts){.timeout_ms = 1}, &r);
                        alloc_region_attach(k, "nobody", &(struct alloc_attach_opts){.timeout_ms = 60000}, &r);
                        _exit(0);
                }
                usleep((useconds_t)(i % 7) * 300);
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                if (i % 30 == 0)
                        kill(d.pid, SIGHUP);
                daemon_notified(&d, "\n", 0); /* reads what allocd told its notify socket */
        }
        /* The PERSIST regions outlive their clients: root frees them. */
        struct alloc_dump *dm;
        cr_assert_eq(alloc_dump(c, NULL, &dm), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < dm->nregions; i++)
                if (dm->regions[i].flags & ALLOC_PERSIST)
                        cr_assert_eq(alloc_region_free_sync(c, dm->regions[i].id), 0, "%s", alloc_last_error());
        alloc_dump_free(dm);
        settled(&m, "killed clients and reloads");
}
