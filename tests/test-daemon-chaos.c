/* SPDX-License-Identifier: MIT */
/*
 * Chaos: allocd under about 32 processes (tests/chaos-client.c) doing random
 * requests on three threads each, while one is SIGKILLed every few tens of
 * milliseconds and replaced, some are stopped and continued, and some are
 * killed while they start and connect; until 1,000 kills.  Then allocd must
 * still answer, and be back where it started: every byte in use belongs to a
 * PERSIST region still alive, no name is left without its region, and once
 * those regions are freed the pools are empty, and allocd holds as many fds
 * as before and about as much memory.
 *
 * Nothing here is timed: deadlines are generous liveness bounds.  Knobs for a
 * longer or shorter run: CHAOS_KILLS (1000), CHAOS_WORKERS (32),
 * CHAOS_INTERVAL_MS (the mean pause between kills, 55), CHAOS_SEED.
 *
 * Here: allocd, the workers and the kills; what is checked afterwards, and
 * the summary, are in chaos-checks.c.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chaos-checks.h"

extern char **environ;

/* The pools of tests/chaos.h.  All workers are one uid: the small pool's quota and the limits are shared. */
#define CONFIG                                                                                                         \
        "[daemon]\n"                                                                                                   \
        "log_level = error\n"                                                                                          \
        "wait_timeout = 250ms\n"                                                                                       \
        "hello_timeout = 1s\n"                                                                                         \
        "max_connections_per_uid = 112\n"                                                                              \
        "max_waiters_per_connection = 8\n"                                                                             \
        "[pool host]\nkind = host\nsize = 16M\n"                                                                       \
        "[pool small]\nkind = host\nsize = 2M\nquota_per_uid = 1M\n"                                                   \
        "[pool fpga]\nkind = fpga\nranges = 0x100000000+64M, 0x200000000+16M\n"

#define RSS_MARGIN_KB (8 * 1024) /* allocd's VmRSS after the chaos, at most this above where it was */
#define MAX_STOPPED 3            /* workers stopped (SIGSTOP) at once */

/*
 * Under AddressSanitizer allocd's freed memory sits in a quarantine of 256 MiB
 * before it is reused, so its RSS climbs with any churn: allocd gets a 4 MiB
 * quarantine here (filled by the warm-up), and its RSS means something again.
 */

struct worker {
        pid_t pid;
        long stopped_until; /* 0: running */
};

struct daemon d;
struct alloc_client *c;
struct chaos_stats *stats;
static char stats_path[192];
static struct worker *workers;
unsigned nworkers;
static uint64_t rng;
unsigned kills, early_kills, stops, odd_exits;
long chaos_start, chaos_end; /* ms */
char first_odd_exit[128];

long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(long ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static uint64_t rnd(void) {
        uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) {
        return n ? rnd() % n : 0;
}

static unsigned env_uint(const char *name, unsigned def) {
        const char *v = getenv(name);
        return v && *v ? (unsigned)strtoul(v, NULL, 0) : def;
}

/*
 * allocd tells its notify socket its status once a second, with a blocking
 * send: one that nobody reads blocks allocd after max_dgram_qlen (10) of them.
 * systemd reads them; so does every loop here that outlasts a few seconds.
 */
void drain_notify(void) {
        char buf[4096];

        while (recv(d.notify_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
                ;
}

/*
 * A liveness bound, re-armed as the test makes progress: allocd (or a call to
 * it) stuck for two minutes ends the test with a message instead of at
 * criterion's timeout.  Workers die with the test (PR_SET_PDEATHSIG); allocd
 * is killed here.
 */
static void hung(int sig) {
        static const char msg[] = "chaos: no progress for 120 s: allocd does not answer; killing it\n";

        (void)sig;
        if (write(2, msg, sizeof(msg) - 1) < 0) {
        }
        if (d.pid > 0)
                kill(d.pid, SIGKILL);
        _exit(2);
}

void progress(void) {
        alarm(120);
}

/* ---- workers ---- */

static bool allocd_alive(void) {
        int st;

        if (d.pid > 0 && waitpid(d.pid, &st, WNOHANG) == d.pid) {
                d.pid = 0;
                cr_log_error("allocd %s %d", WIFSIGNALED(st) ? "was killed by signal" : "exited with",
                             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
        return d.pid > 0;
}

static pid_t spawn(bool calm) {
        char seed[24], parent[16];
        char *argv[] = {"chaos-client", d.sock, stats_path, seed, calm ? "calm" : "wild", parent, NULL};
        pid_t pid;

        snprintf(seed, sizeof(seed), "%llu", (unsigned long long)rnd());
        snprintf(parent, sizeof(parent), "%d", (int)getpid());
        int r = posix_spawn(&pid, CHAOS_CLIENT_PATH, NULL, NULL, argv, environ);
        cr_assert_eq(r, 0, "posix_spawn %s: %s", CHAOS_CLIENT_PATH, strerror(r));
        return pid;
}

/* A worker ends only by SIGKILL; any other end (a crash, a lost connection: exit 3) is counted. */
static void note_end(pid_t pid, int st) {
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
                return;
        if (!odd_exits++)
                snprintf(first_odd_exit, sizeof(first_odd_exit), "worker %d %s %d", (int)pid,
                         WIFSIGNALED(st) ? "died of signal" : "exited with",
                         WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

static void kill_worker(struct worker *w) {
        int st;

        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, &st, 0) < 0 && errno == EINTR)
                ;
        note_end(w->pid, st);
        w->pid = 0;
        w->stopped_until = 0;
}

static void kill_all(void) {
        for (unsigned i = 0; workers && i < nworkers; i++)
                if (workers[i].pid > 0)
                        kill_worker(&workers[i]);
}

/* Workers that ended on their own are counted and replaced; stopped ones whose time is up continue. */
static void tend(bool calm) {
        long now = now_ms();
        int st;

        for (unsigned i = 0; i < nworkers; i++) {
                struct worker *w = &workers[i];
                if (waitpid(w->pid, &st, WNOHANG) == w->pid) {
                        note_end(w->pid, st);
                        *w = (struct worker){.pid = spawn(calm)};
                } else if (w->stopped_until && w->stopped_until <= now) {
                        kill(w->pid, SIGCONT);
                        w->stopped_until = 0;
                }
        }
}

/*
 * Kills a random worker every few tens of ms (mean interval_ms) and starts
 * another, until `target` kills; one in 12 replacements is killed again within
 * 3 ms, while it starts and connects; with stop, one time in 40 a worker is
 * stopped for up to 1.5 s instead.  Every 100 kills allocd must answer.
 */
static void rampage(unsigned target, unsigned interval_ms, bool calm, bool stop) {
        unsigned next_check = 100;

        for (unsigned i = 0; i < nworkers; i++)
                workers[i] = (struct worker){.pid = spawn(calm)};
        for (unsigned done = 0; done < target;) {
                sleep_ms(1 + (long)below(2 * interval_ms));
                drain_notify();
                progress();
                cr_assert(allocd_alive(), "allocd died after %u kills", kills);
                tend(calm);
                struct worker *w = &workers[below(nworkers)];
                unsigned nstopped = 0;
                for (unsigned i = 0; i < nworkers; i++)
                        nstopped += workers[i].stopped_until != 0;
                if (stop && !w->stopped_until && nstopped < MAX_STOPPED && below(40) == 0) {
                        kill(w->pid, SIGSTOP);
                        w->stopped_until = now_ms() + 100 + (long)below(1400);
                        stops++;
                        continue;
                }
                kill_worker(w);
                w->pid = spawn(calm);
                done++, kills++;
                if (below(12) == 0 && done < target) {
                        sleep_ms((long)below(4));
                        kill_worker(w);
                        w->pid = spawn(calm);
                        done++, kills++, early_kills++;
                }
                if (done >= next_check) {
                        struct alloc_status *st;
                        next_check += 100;
                        cr_assert_eq(alloc_status(c, &st), 0, "allocd does not answer after %u kills: %s", kills,
                                     alloc_last_error());
                        alloc_status_free(st);
                }
        }
        kill_all();
}

/* ---- the test ---- */

static void setup(void) {
        static char asan[1024];
        char *env[] = {asan, NULL};
        const char *opts = getenv("ASAN_OPTIONS");

        snprintf(asan, sizeof(asan), "ASAN_OPTIONS=%s%squarantine_size_mb=4", opts ? opts : "",
                 opts && *opts ? ":" : "");
        int r = daemon_spawn(&d, CONFIG, UNDER_ASAN ? env : NULL, NULL);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1", r);
        c = daemon_connect(&d);
        fds_started = fd_count(d.pid);
        mem_started = mem_of(d.pid);
        snprintf(stats_path, sizeof(stats_path), "%s/chaos-stats", d.dir);
        int fd = open(stats_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        cr_assert(fd >= 0 && ftruncate(fd, sizeof(*stats)) == 0, "%s: %s", stats_path, strerror(errno));
        stats = mmap(NULL, sizeof(*stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        cr_assert(stats != MAP_FAILED);
        nworkers = env_uint("CHAOS_WORKERS", 32);
        cr_assert(nworkers > 0);
        workers = calloc(nworkers, sizeof(*workers));
        signal(SIGALRM, hung);
        progress();
        rng = env_uint("CHAOS_SEED", (unsigned)time(NULL) ^ (unsigned)getpid());
        printf("chaos: CHAOS_SEED=%llu\n", (unsigned long long)rng);
}

static void teardown(void) {
        alarm(0);
        kill_all();
        if (!summarised && chaos_start && stats && stats != MAP_FAILED)
                summary(" (the test stopped early)");
        free(workers);
        workers = NULL;
        if (stats && stats != MAP_FAILED)
                munmap(stats, sizeof(*stats));
        unlink(stats_path);
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(daemon_chaos, .init = setup, .fini = teardown, .timeout = 800);

/* The host pools' pages all touched by allocd (ZERO), its zeroing threads started. */
static void zero_pools(void) {
        struct alloc_region r;
        struct alloc_opts all = {.flags = ALLOC_ZERO | ALLOC_NOFAIL};
        struct alloc_opts lo = {.flags = ALLOC_ZERO | ALLOC_NOFAIL, .high = CHAOS_SMALL_QUOTA};
        struct alloc_opts hi = {.flags = ALLOC_ZERO | ALLOC_NOFAIL, .low = CHAOS_SMALL_QUOTA};

        cr_assert_eq(alloc_region_new(c, CHAOS_POOL_HOST, CHAOS_HOST_SIZE, &all, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        /* The small pool's quota is half of it: one half at a time. */
        cr_assert_eq(alloc_region_new(c, CHAOS_POOL_SMALL, CHAOS_SMALL_QUOTA, &lo, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(alloc_region_new(c, CHAOS_POOL_SMALL, CHAOS_SMALL_QUOTA, &hi, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
}

Test(daemon_chaos, a_thousand_kills_leave_allocd_as_it_was) {
        unsigned target = env_uint("CHAOS_KILLS", 1000), interval = env_uint("CHAOS_INTERVAL_MS", 55);
        struct alloc_dump *dm;
        char why[512] = "";

        /* Warm-up: allocd's first clients make it allocate what it then keeps (tables, buffers, threads). */
        zero_pools();
        rampage(2 * nworkers, interval, true, false);
        quiesce("after the warm-up");
        expect_empty("after the warm-up (no PERSIST)");
        check_workers("warm-up");
        memset(stats, 0, sizeof(*stats));
        kills = early_kills = stops = 0;
        int fds0 = settled_fds(-1);
        struct mem m0 = mem_of(d.pid);

        chaos_start = now_ms();
        rampage(target, interval, false, true);
        chaos_end = now_ms();

        cr_assert(allocd_alive(), "allocd died at the end of the chaos");
        quiesce("after the chaos");
        check_workers("chaos");
        cr_assert_eq(alloc_dump(c, NULL, &dm), 0, "%s", alloc_last_error());
        drain_notify();
        progress();
        check_leftovers(dm);
        unsigned stuck = free_leftovers(dm, why, sizeof(why));
        printf("chaos: %zu regions were left; root could not free %u of them%s%s\n", dm->nregions, stuck,
               stuck ? "; the first: " : "", why);
        alloc_dump_free(dm);
        cr_expect_eq(stuck, 0, "%u regions left cannot be freed; the first: %s", stuck, why);
        expect_empty("after freeing the regions left");
        /* No name is left behind: each attaches to nothing and can be taken again. */
        for (int n = 0; n < CHAOS_NNAMES; n++) {
                char name[32];
                struct alloc_region r;
                struct alloc_opts o = {.flags = ALLOC_NOWAIT, .name = name};
                snprintf(name, sizeof(name), CHAOS_NAME_FMT, n);
                cr_expect_eq(alloc_region_attach(c, name, NULL, &r), -ENOENT, "'%s' still attaches", name);
                int e = alloc_region_new(c, CHAOS_POOL_FPGA, 4096, &o, &r);
                cr_expect_eq(e, 0, "'%s' cannot be taken again: %s", name, alloc_last_error());
                if (e == 0)
                        cr_expect_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        }
        expect_empty("at the end");

        drain_notify();
        progress();
        int fds1 = settled_fds(fds0);
        struct mem m1 = mem_of(d.pid);
        char tail[512];
        snprintf(tail, sizeof(tail),
                 "; allocd fds %d -> %d, VmRSS %ld -> %ld kB (RssAnon %ld -> %ld, RssShmem %ld -> %ld; at start %d "
                 "fds, %ld kB)",
                 fds0, fds1, m0.rss, m1.rss, m0.anon, m1.anon, m0.shmem, m1.shmem, fds_started, mem_started.rss);
        summary(tail);
        cr_expect_eq(fds1, fds0, "allocd holds %d fds, %d before the chaos", fds1, fds0);
        cr_expect(m1.rss <= m0.rss + RSS_MARGIN_KB, "allocd's VmRSS grew from %ld to %ld kB (margin %d kB)", m0.rss,
                  m1.rss, RSS_MARGIN_KB);
        cr_expect_geq(kills, target);
}
