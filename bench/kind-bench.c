/* SPDX-License-Identifier: MIT */
/*
 * kind-bench: a kind (alloc/kind.h) against glibc's malloc, measured in the
 * same run (issue 16; docs/PERFORMANCE.md, "Kinds").
 *
 *   pair      malloc + free of one block, sizes 16-4096 B drawn from a fixed
 *             table, one thread
 *   batch64   64 mallocs, then their 64 frees
 *   threads2  the pair loop on two threads pinned to two CPUs, per pair,
 *             over the same loop on one thread: each allocator's ratio to
 *             itself (a lock shared by the threads would show here)
 *   detect    alloc_kind_detect on a mix of a kind's blocks and glibc's
 *   trips     requests to allocd during the one-thread rows, after one
 *             warm-up pass: 0 in steady state (threads2 makes new threads,
 *             whose first blocks may come from an arena no thread used yet)
 *
 * The two allocators alternate within each of TRIALS trials and a figure
 * is the median of the trials' ratios, as these machines change speed from
 * one tenth of a second to the next.
 *
 *   kind-bench [--json] [--seconds S] [--cpu N]   (--cpu: where the one-thread rows run; two-thread rows
 *                                                   use CPU N and the next CPU it may run on)
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <alloc/kind.h>
#include <json-c/json.h>

#include "bench-allocd.h"
#include "bench-util.h"

#define SIZES 1024
#define BATCH 64

static size_t sizes[SIZES];
static struct alloc_memkind *kind; /* NULL: glibc */
static double seconds = 0.3;
static int cpu0 = -1, cpu1 = -1; /* -1: the first CPU this process may run on; the second */

static void fail(const char *what) {
        fprintf(stderr, "kind-bench: %s: %s\n", what, alloc_last_error()[0] ? alloc_last_error() : strerror(errno));
        exit(1);
}

static inline void *a_malloc(struct alloc_memkind *k, size_t n) {
        return k ? alloc_kind_malloc(k, n) : malloc(n);
}

static inline void a_free(struct alloc_memkind *k, void *p) {
        if (k)
                alloc_kind_free(k, p);
        else
                free(p);
}

/* ns per pair (or per block of a batch) over about secs seconds; k NULL is glibc. */
static double pairs(struct alloc_memkind *k, bool batch, double secs) {
        void *p[BATCH];
        uint64_t n = 0;
        double t0 = now(), t;

        do {
                for (unsigned i = 0; i < 4096; i += BATCH) {
                        if (batch) {
                                for (unsigned j = 0; j < BATCH; j++)
                                        *(volatile char *)(p[j] = a_malloc(k, sizes[(n + i + j) % SIZES])) = 1;
                                for (unsigned j = 0; j < BATCH; j++)
                                        a_free(k, p[j]);
                        } else {
                                for (unsigned j = 0; j < BATCH; j++) {
                                        void *q = a_malloc(k, sizes[(n + i + j) % SIZES]);
                                        *(volatile char *)q = 1;
                                        a_free(k, q);
                                }
                        }
                }
                n += 4096;
                t = now() - t0;
        } while (t < secs);
        return t * 1e9 / (double)n;
}

struct thread_run {
        int cpu;
        double ns;
};

static void *thread_pairs(void *arg) {
        struct thread_run *r = arg;

        if (bench_pin(0, r->cpu) < 0)
                fail("sched_setaffinity");
        r->ns = pairs(kind, false, seconds / TRIALS);
        return NULL;
}

/* Per pair on two threads at once, over per pair on one (both pinned). */
static double two_over_one(struct alloc_memkind *k) {
        struct thread_run one = {.cpu = cpu0}, two[2] = {{.cpu = cpu0}, {.cpu = cpu1}};
        pthread_t t[2];

        kind = k;
        pthread_create(&t[0], NULL, thread_pairs, &one);
        pthread_join(t[0], NULL);
        for (int i = 0; i < 2; i++)
                pthread_create(&t[i], NULL, thread_pairs, &two[i]);
        for (int i = 0; i < 2; i++)
                pthread_join(t[i], NULL);
        return (two[0].ns + two[1].ns) / 2 / one.ns;
}

static double detect_ns(struct alloc_memkind *k) {
        void *p[SIZES];
        uint64_t n = 0;
        uintptr_t sum = 0;
        double t0 = now(), t;

        for (int i = 0; i < SIZES; i++)
                p[i] = i % 2 ? malloc(sizes[i]) : alloc_kind_malloc(k, sizes[i]);
        do {
                for (int r = 0; r < 64; r++)
                        for (int i = 0; i < SIZES; i++)
                                sum += (uintptr_t)alloc_kind_detect(p[i]);
                n += 64 * SIZES;
                t = now() - t0;
        } while (t < seconds / TRIALS);
        if (sum == 1)
                puts(""); /* keeps the loop */
        for (int i = 0; i < SIZES; i++)
                alloc_kind_free(NULL, p[i]);
        return t * 1e9 / (double)n;
}

struct row {
        const char *what, *unit;
        double kind, glibc, ratio, limit; /* ratio <= limit is the target */
};

#define USAGE "usage: kind-bench [--json] [--seconds S] [--cpu N]"

int main(int argc, char **argv) {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"cpu", required_argument, NULL, 'c'},
                                             {NULL, 0, NULL, 0}};
        bool json = false;
        char sock[128];
        struct alloc_client *c;
        struct alloc_memkind *k;
        struct alloc_kind_stats before, after;
        double r[3][TRIALS], g[3][TRIALS], kd[3][TRIALS], det[TRIALS];
        int o;

        while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (o == 'j')
                        json = true;
                else if (o == 's') {
                        if (!bench_arg_seconds(USAGE, optarg, 0.05, 60, &seconds))
                                return 2;
                } else if (o == 'c') {
                        if (!bench_arg_cpu(USAGE, optarg, &cpu0))
                                return 2;
                } else {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
        }
        if (cpu0 < 0)
                cpu0 = bench_cpu_next(-1);
        /* The two-thread rows' second CPU: the next one this process may run on, wrapping around. */
        cpu1 = bench_cpu_next(cpu0);
        if (cpu0 < 0 || cpu1 < 0) {
                fprintf(stderr,
                        "kind-bench: the two-thread rows need two CPUs, but this process may run on only one "
                        "(see taskset -p %d)\n",
                        (int)getpid());
                return 1;
        }
        for (uint64_t i = 0, x = 88172645463325252ull; i < SIZES; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                sizes[i] = 16 + x % 4081;
        }
        char dir[] = "/tmp/kind-bench-XXXXXX";
        const char *what = "mkdtemp";
        pid_t allocd = bench_mkdtemp(dir)
                               ? bench_allocd_start(ALLOCD_PATH, dir, "[pool bench]\nkind = host\nsize = 256M\n", sock,
                                                    sizeof(sock), &what)
                               : -1;
        if (allocd < 0)
                fail(what);
        if (alloc_connect(&c, sock, "kind-bench") < 0 || alloc_kind_create(c, "bench", NULL, &k) < 0)
                fail("kind");
        bench_pin(0, cpu0);
        pairs(k, true, seconds / TRIALS); /* the warm-up pass: the regions this load needs */
        pairs(NULL, true, seconds / TRIALS);
        uint64_t trips = 0;
        for (int t = 0; t < TRIALS; t++) {
                alloc_kind_stats(k, &before);
                for (int m = 0; m < 2; m++) {
                        kd[m][t] = pairs(k, m, seconds / TRIALS);
                        g[m][t] = pairs(NULL, m, seconds / TRIALS);
                        r[m][t] = kd[m][t] / g[m][t];
                }
                alloc_kind_stats(k, &after);
                trips += after.round_trips - before.round_trips;
                kd[2][t] = two_over_one(k);
                g[2][t] = two_over_one(NULL);
                r[2][t] = kd[2][t] / g[2][t];
                bench_pin(0, cpu0);
                det[t] = detect_ns(k);
        }
        struct row rows[] = {
                {"pair 16-4096 B", "ns", median(kd[0], TRIALS), median(g[0], TRIALS), median(r[0], TRIALS), 1.2},
                {"batch64 16-4096 B", "ns", median(kd[1], TRIALS), median(g[1], TRIALS), median(r[1], TRIALS), 1.2},
                {"threads2 / threads1", "x", median(kd[2], TRIALS), median(g[2], TRIALS), median(r[2], TRIALS), 1.0},
                {"detect", "ns", median(det, TRIALS), 0, median(det, TRIALS), 5.0},
                {"round trips in steady state", "", (double)trips, 0, (double)trips, 0},
        };
        bool all = true;
        json_object *root = json_object_new_object(), *arr = json_object_new_array();
        if (!json)
                printf("%-30s %10s %10s %8s %8s  %s\n", "what", "kind", "glibc", "ratio", "target", "met");
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
                bool met = rows[i].ratio <= rows[i].limit;
                all &= met;
                if (!json)
                        printf("%-30s %10.2f %10.2f %8.2f %8.2f  %s\n", rows[i].what, rows[i].kind, rows[i].glibc,
                               rows[i].ratio, rows[i].limit, met ? "yes" : "NO");
                json_object *row = json_object_new_object();
                json_object_object_add(row, "what", json_object_new_string(rows[i].what));
                json_object_object_add(row, "unit", json_object_new_string(rows[i].unit));
                json_object_object_add(row, "kind", json_object_new_double(rows[i].kind));
                json_object_object_add(row, "glibc", json_object_new_double(rows[i].glibc));
                json_object_object_add(row, "ratio", json_object_new_double(rows[i].ratio));
                json_object_object_add(row, "target_at_most", json_object_new_double(rows[i].limit));
                json_object_object_add(row, "target_met", json_object_new_boolean(met));
                json_object_array_add(arr, row);
        }
        json_object_object_add(root, "cpu", json_object_new_int(cpu0));
        json_object_object_add(root, "results", arr);
        json_object_object_add(root, "all_targets_met", json_object_new_boolean(all));
        if (json)
                puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
        else
                printf("(detect and round trips: ratio is the value itself; pinned to CPU %d, threads2 on %d and %d)\n",
                       cpu0, cpu0, cpu1);
        json_object_put(root);
        alloc_kind_destroy(k);
        alloc_disconnect(c);
        kill(allocd, SIGTERM);
        waitpid(allocd, NULL, 0);
        char conf[64];
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        unlink(conf);
        unlink(sock);
        rmdir(dir);
        return 0;
}
