/* SPDX-License-Identifier: MIT */
/*
 * scale-bench: how allocd behaves with many live regions (docs/ARCHITECTURE.md, "Scale").
 *
 *   memory   allocd's RSS per live region, at 1k, 100k and 1M live 4 KiB regions of an fpga
 *            pool (no memory behind them: what is measured is allocd's own bookkeeping)
 *   latency  an alloc + free pair from a second client at each of those counts, and its
 *            ratio to the pair at 1k live (same run, same daemon)
 *   dump     a whole Dump of every live region at the largest count: through liballoc-client's
 *            alloc_dump, and `allocctl dump` and `allocctl --json dump` into /dev/null
 *   stall    a client holding 65,536 regions of a full pool is SIGKILLed while 400 other
 *            connections wait (NOFAIL) for room; a probe client sends Status round trips all the
 *            while, and the longest one is the loop's longest stall.  The baseline is the
 *            probe's longest round trip over the same time with nothing happening.
 *
 * The alloc + free pairs run with allocd and the client pinned to CPU 0, so that they measure
 * allocd's work and not the wake-up of an idle CPU (about 100 us on these VMs); everything else
 * runs unpinned.  allocd is the one just built.  Regions are filled by FILLERS threads sharing one connection, so
 * requests are pipelined.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <alloc/client.h>
#include <json-c/json.h>

#include "bench-allocd.h"
#include "bench-util.h"

#define FILLERS 4
#define PAIRS 2000
#define STALL_REGIONS 65536
#define STALL_WAITERS 400

static char dir[64], sock[128];
static pid_t allocd_pid;

/* Says what failed (the client library's reason, else errno's) and exits 1, killing allocd first. */
static _Noreturn void fail(const char *what) {
        fprintf(stderr, "scale-bench: %s: %s\n", what, alloc_last_error()[0] ? alloc_last_error() : strerror(errno));
        if (allocd_pid > 0)
                kill(allocd_pid, SIGKILL);
        exit(1);
}

/* The field key (e.g. "VmRSS:") of /proc/PID/status in KiB, or -1; if name, only while pid runs that program. */
static long status_kib(pid_t pid, const char *key, const char *name) {
        char path[64], line[256], comm[64] = "";
        long kib = -1;
        size_t n = strlen(key);
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        if (!(f = fopen(path, "re")))
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Name: %63s", comm) != 1 && !strncmp(line, key, n) &&
                    sscanf(line + n, "%ld", &kib) == 1)
                        break;
        fclose(f);
        return name && strcmp(comm, name) ? -1 : kib;
}

/*
 * Runs allocctl [--json] dump into /dev/null; returns seconds, and its peak RSS in *kib.  The peak is
 * allocctl's VmHWM, read while it runs: wait4's ru_maxrss would be this process's own RSS, which a
 * forked child carries through exec (here the client side of a million regions).
 */
static double allocctl_dump(bool json, long *kib) {
        double t = now();
        int status;
        pid_t pid = fork(), r;

        if (pid < 0)
                fail("fork");
        if (pid == 0) {
                if (!freopen("/dev/null", "w", stdout))
                        _exit(127);
                if (json)
                        execl(ALLOCCTL_PATH, "allocctl", "--socket", sock, "--json", "dump", (char *)NULL);
                else
                        execl(ALLOCCTL_PATH, "allocctl", "--socket", sock, "dump", (char *)NULL);
                _exit(127);
        }
        *kib = 0;
        while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
                long hwm = status_kib(pid, "VmHWM:", "allocctl");
                if (hwm > *kib)
                        *kib = hwm;
                usleep(1000);
        }
        if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail("allocctl dump");
        return now() - t;
}

static void start_allocd(const char *conf_text) {
        const char *what;

        if ((allocd_pid = bench_allocd_start(ALLOCD_PATH, dir, conf_text, sock, sizeof(sock), &what)) < 0)
                fail(what);
}

static void stop_allocd(void) {
        kill(allocd_pid, SIGTERM);
        waitpid(allocd_pid, NULL, 0);
        allocd_pid = 0;
}

static struct alloc_client *connect_or_die(const char *name) {
        struct alloc_client *c;
        if (alloc_connect(&c, sock, name) < 0)
                fail("connect");
        return c;
}

struct filler {
        pthread_t t;
        struct alloc_client *c;
        long n;
};

static void *fill(void *arg) {
        struct filler *f = arg;
        struct alloc_region r;

        for (long i = 0; i < f->n; i++)
                if (alloc_region_new(f->c, "f", 4096, NULL, &r) < 0)
                        fail("filling the pool");
        return NULL;
}

/* Adds n regions to c's, from FILLERS threads. */
static void fill_to(struct alloc_client *c, long n) {
        struct filler f[FILLERS];

        for (int i = 0; i < FILLERS; i++) {
                f[i] = (struct filler){.c = c, .n = n / FILLERS + (i < n % FILLERS)};
                pthread_create(&f[i].t, NULL, fill, &f[i]);
        }
        for (int i = 0; i < FILLERS; i++)
                pthread_join(f[i].t, NULL);
}

static void pin(pid_t pid, int cpu) {
        cpu_set_t set;

        CPU_ZERO(&set);
        if (cpu >= 0)
                CPU_SET(cpu, &set);
        else
                for (int i = 0; i < CPU_SETSIZE; i++)
                        CPU_SET(i, &set);
        sched_setaffinity(pid, sizeof(set), &set);
}

/* allocd and this thread on one CPU: a round trip is then allocd's work, not a CPU's wake-up. */
static double pair_us(struct alloc_client *c) {
        struct alloc_region r;
        double t;

        pin(allocd_pid, 0);
        pin(0, 0);
        t = now();
        for (int i = 0; i < PAIRS; i++)
                if (alloc_region_new(c, "f", 4096, NULL, &r) < 0 || alloc_region_free(c, r.id) < 0)
                        fail("alloc + free");
        t = (now() - t) / PAIRS * 1e6;
        pin(allocd_pid, -1);
        pin(0, -1);
        return t;
}

struct probe {
        pthread_t t;
        atomic_bool stop;
        double worst;
        long n;
};

static void *probe_run(void *arg) {
        struct probe *p = arg;
        struct alloc_client *c = connect_or_die("bench-probe");

        while (!atomic_load(&p->stop)) {
                struct alloc_status *s;
                double t = now();
                if (alloc_status(c, &s) < 0)
                        fail("status");
                alloc_status_free(s);
                t = now() - t;
                if (t > p->worst)
                        p->worst = t;
                p->n++;
        }
        alloc_disconnect(c);
        return NULL;
}

struct waiter {
        pthread_t t;
        struct alloc_client *c;
        atomic_bool *granted;
        atomic_int *count;
};

static void *wait_one(void *arg) {
        struct waiter *w = arg;
        struct alloc_opts o = {.flags = ALLOC_NOFAIL};
        struct alloc_region r;

        if (alloc_region_new(w->c, "f", 4096, &o, &r) < 0)
                fail("waiting alloc");
        atomic_fetch_add(w->count, 1);
        return NULL;
}

static long waiters_of(struct alloc_client *c) {
        struct alloc_status *s;
        long n = -1;

        if (alloc_status(c, &s) < 0)
                fail("status");
        for (size_t i = 0; i < s->npools; i++)
                if (!strcmp(s->pools[i].name, "f"))
                        n = (long)s->pools[i].waiters;
        alloc_status_free(s);
        return n;
}

/* The longest Status round trip while a holder of STALL_REGIONS dies with STALL_WAITERS waiting. */
static void stall(double *worst_ms, double *baseline_ms, double *settle_ms) {
        static struct waiter w[STALL_WAITERS];
        atomic_int granted = 0;
        struct probe p = {0};
        struct alloc_client *ctl;
        int pipefd[2];
        pid_t holder;
        char conf[512];
        double t0;

        snprintf(conf, sizeof(conf),
                 "[daemon]\nmax_connections = 1024\nmax_connections_per_uid = 1024\nmax_waiters_per_uid = 1024\n"
                 "max_regions_per_connection = %d\n[pool f]\nkind = fpga\nranges = 0x100000000+%d\n",
                 STALL_REGIONS, STALL_REGIONS * 4096);
        start_allocd(conf);
        if (pipe(pipefd) < 0 || (holder = fork()) < 0)
                fail("fork");
        if (holder == 0) {
                /* Its own process: it dies by SIGKILL, as a crashed client does. */
                struct alloc_client *c = connect_or_die("bench-holder");
                fill_to(c, STALL_REGIONS);
                if (write(pipefd[1], "x", 1) != 1)
                        _exit(1);
                pause();
                _exit(0);
        }
        char x;
        if (read(pipefd[0], &x, 1) != 1)
                fail("the holder did not fill the pool");
        ctl = connect_or_die("bench-ctl");
        for (int i = 0; i < STALL_WAITERS; i++) {
                w[i] = (struct waiter){.c = connect_or_die("bench-waiter"), .count = &granted};
                pthread_create(&w[i].t, NULL, wait_one, &w[i]);
        }
        while (waiters_of(ctl) < STALL_WAITERS)
                usleep(1000);
        /* Baseline: the probe alone, as long as the kill is expected to take. */
        pthread_create(&p.t, NULL, probe_run, &p);
        usleep(300000);
        atomic_store(&p.stop, true);
        pthread_join(p.t, NULL);
        *baseline_ms = p.worst * 1e3;
        p = (struct probe){0};
        pthread_create(&p.t, NULL, probe_run, &p);
        usleep(50000);
        t0 = now();
        kill(holder, SIGKILL);
        waitpid(holder, NULL, 0);
        while (atomic_load(&granted) < STALL_WAITERS)
                usleep(200);
        *settle_ms = (now() - t0) * 1e3;
        usleep(50000);
        atomic_store(&p.stop, true);
        pthread_join(p.t, NULL);
        *worst_ms = p.worst * 1e3;
        for (int i = 0; i < STALL_WAITERS; i++) {
                pthread_join(w[i].t, NULL);
                alloc_disconnect(w[i].c);
        }
        alloc_disconnect(ctl);
        close(pipefd[0]);
        close(pipefd[1]);
        stop_allocd();
}

#define USAGE "usage: scale-bench [--json] [--max N (1000-1000000)]"

int main(int argc, char **argv) {
        static const long counts[] = {1000, 100000, 1000000};
        static const struct option opts[] = {
                {"json", no_argument, NULL, 'j'}, {"max", required_argument, NULL, 'm'}, {0}};
        long max = 1000000, rss0, rss[3] = {0};
        double pair[3] = {0}, dump_s = 0, ctl_s[2] = {0}, worst, base, settle;
        long ctl_kib[2] = {0};
        size_t ndumped = 0;
        uint64_t v;
        bool json = false;
        int c, n = 0;
        char conf[512];

        while ((c = getopt_long(argc, argv, "jm:", opts, NULL)) != -1) {
                if (c == 'j')
                        json = true;
                else if (c == 'm' && parse_u64(optarg, 1000, 1000000, &v))
                        max = (long)v;
                else if (c == 'm')
                        return bad_arg(USAGE, "--max", optarg, "a number of regions from 1000 to 1000000");
                else {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
        }
        snprintf(dir, sizeof(dir), "/tmp/scale-bench.XXXXXX");
        if (!bench_mkdtemp(dir))
                fail("mkdtemp");
        snprintf(conf, sizeof(conf),
                 "[daemon]\nmax_regions_per_connection = 2000000\n[pool f]\nkind = fpga\nranges = "
                 "0x100000000+%ld\n",
                 (max + PAIRS + 16) * 4096);
        start_allocd(conf);
        struct alloc_client *holder = connect_or_die("bench-holder"), *other = connect_or_die("bench-pairs");
        pair_us(other); /* warm up: the pool's first region, the tables' first pages */
        rss0 = status_kib(allocd_pid, "VmRSS:", NULL);
        for (long have = 0; n < 3 && counts[n] <= max; n++) {
                fill_to(holder, counts[n] - have);
                have = counts[n];
                rss[n] = status_kib(allocd_pid, "VmRSS:", NULL);
                pair[n] = pair_us(other);
        }
        if (n > 0) {
                struct alloc_dump *d;
                double t = now();
                if (alloc_dump(other, "f", &d) < 0)
                        fail("dump");
                dump_s = now() - t;
                ndumped = d->nregions;
                alloc_dump_free(d);
                ctl_s[0] = allocctl_dump(false, &ctl_kib[0]);
                ctl_s[1] = allocctl_dump(true, &ctl_kib[1]);
        }
        alloc_disconnect(holder);
        alloc_disconnect(other);
        stop_allocd();
        stall(&worst, &base, &settle);
        rmdir(dir);

        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (json) {
                json_object *o = json_object_new_object(), *a = json_object_new_array();
                for (int i = 0; i < n; i++) {
                        json_object *x = json_object_new_object();
                        json_object_object_add(x, "live", json_object_new_int64(counts[i]));
                        json_object_object_add(x, "rss_kib", json_object_new_int64(rss[i]));
                        json_object_object_add(x, "bytes_per_region",
                                               json_object_new_double((rss[i] - rss0) * 1024.0 / counts[i]));
                        json_object_object_add(x, "pair_us", json_object_new_double(pair[i]));
                        json_object_object_add(x, "pair_ratio_to_1k", json_object_new_double(pair[i] / pair[0]));
                        json_object_array_add(a, x);
                }
                json_object_object_add(o, "cpus", json_object_new_int64(cpus));
                json_object_object_add(o, "placement",
                                       json_object_new_string("pairs: client and allocd on CPU 0; the rest unpinned"));
                json_object_object_add(o, "rss0_kib", json_object_new_int64(rss0));
                json_object_object_add(o, "live", a);
                json_object_object_add(o, "dump_regions", json_object_new_int64((int64_t)ndumped));
                json_object_object_add(o, "dump_s", json_object_new_double(dump_s));
                json_object_object_add(o, "allocctl_dump_s", json_object_new_double(ctl_s[0]));
                json_object_object_add(o, "allocctl_dump_rss_kib", json_object_new_int64(ctl_kib[0]));
                json_object_object_add(o, "allocctl_json_dump_s", json_object_new_double(ctl_s[1]));
                json_object_object_add(o, "allocctl_json_dump_rss_kib", json_object_new_int64(ctl_kib[1]));
                json_object_object_add(o, "stall_ms", json_object_new_double(worst));
                json_object_object_add(o, "stall_baseline_ms", json_object_new_double(base));
                json_object_object_add(o, "stall_settle_ms", json_object_new_double(settle));
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
                json_object_put(o);
                return 0;
        }
        printf("scale-bench: %ld CPUs; pairs pinned with allocd to CPU 0, the rest unpinned; allocd RSS %ld KiB with "
               "no regions\n\n",
               cpus, rss0);
        printf("%10s %12s %16s %14s %10s\n", "live", "RSS KiB", "bytes/region", "alloc+free us", "vs 1k");
        for (int i = 0; i < n; i++)
                printf("%10ld %12ld %16.1f %14.1f %10.2f\n", counts[i], rss[i], (rss[i] - rss0) * 1024.0 / counts[i],
                       pair[i], pair[i] / pair[0]);
        printf("\ndump of %zu regions: alloc_dump %.2f s; allocctl dump %.2f s (peak RSS %ld KiB); allocctl --json "
               "dump %.2f s (peak RSS %ld KiB)\n",
               ndumped, dump_s, ctl_s[0], ctl_kib[0], ctl_s[1], ctl_kib[1]);
        printf("a holder of %d regions SIGKILLed with %d waiters: longest Status round trip %.1f ms "
               "(baseline %.1f ms); every waiter granted %.1f ms after the kill\n",
               STALL_REGIONS, STALL_WAITERS, worst, base, settle);
        return 0;
}
