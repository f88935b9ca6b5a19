/* SPDX-License-Identifier: MIT */
/*
 * restart-bench (issue 18): allocd restarted as systemd restarts it, with tests/sysd.c in systemd's
 * place (the socket, a NOTIFY_SOCKET that takes FDSTORE=1 fds, LISTEN_FDS/LISTEN_FDNAMES for the next
 * allocd).
 *   (a) restart: with 1k, 100k and 1M live 4 KiB regions of one host pool (held by a few
 *       connections, the first NAMES of them named; made with AllocBatch), the time from the signal
 *       to the old allocd (SIGTERM, then SIGKILL) to the first answer of a client that connects after
 *       the new one says READY=1, split into stop (signal to reaped), start to READY=1 (fork, exec,
 *       the pools adopted, the state restored) and first answer (connect, Hello, Status).  The
 *       harness's own time between the two (its reader thread stopping: up to 50 ms of its poll) is
 *       left out: systemd's own part is not measured here.  Every trial checks the pool's used bytes.
 *   (b) the round trip: alloc + free (two round trips: the free waits for its answer) through
 *       liballoc-client against an allocd that keeps its state (sysd: FDSTORE, a store that takes
 *       the fds) and one that does not (no NOTIFY_SOCKET), with the same live regions.  One client
 *       holds both connections and alternates SLICE-request bursts between them (allocd-bench's
 *       method: these VMs change speed from one millisecond to the next); the figure is the median
 *       of the slices' ratios.  Unpinned, then pinned (client on CPU 0, both allocds on CPU 1).
 *   restart-bench [--json] [--trials N] [--seconds S] [--max-regions N]
 */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-allocd.h"
#include "bench-util.h"
#include "sysd.h"

#define NCONNS 4
#define NAMES 100
#define SLICE 128 /* requests per burst: about 1 ms */
#define MAX_SIZES 3

/* A host pool just large enough: allocd fallocates it whole, so every MiB of it is memory taken. */
static const char *conf(unsigned regions) {
        static char text[256];

        snprintf(text, sizeof(text),
                 "[daemon]\nmax_regions_per_connection = 1048576\n"
                 "log_level = warning\n[pool host]\nkind = host\nsize = %lluM\nmode = 0666\n",
                 ((unsigned long long)regions * 4096 >> 20) + 64);
        return text;
}

struct restart_row {
        unsigned regions;
        double stop[2], ready[2], answer[2], total[2]; /* medians, seconds; [0] SIGTERM, [1] SIGKILL */
};

struct rt_row {
        unsigned regions;
        bool pinned;
        double plain_ns, kept_ns, ratio; /* per request (half a pair); ratio: median of the slices' */
};

static int trials = 5;

static double ts_seconds(const struct timespec *t) {
        return (double)t->tv_sec + (double)t->tv_nsec * 1e-9;
}

static struct alloc_client *open_client(const char *sock, const char *name) {
        struct alloc_client *c;
        int r = alloc_connect(&c, sock, name);

        if (r < 0)
                die(alloc_last_error(), 0);
        return c;
}

/* n live 4 KiB regions of "host" over NCONNS connections (conns[]), the first NAMES named "r-I". */
static void populate(const char *sock, unsigned n, struct alloc_client **conns) {
        static uint64_t sizes[ALLOC_BATCH_MAX];
        static struct alloc_region got[ALLOC_BATCH_MAX];
        char name[32];
        unsigned done = 0;

        for (size_t i = 0; i < ALLOC_BATCH_MAX; i++)
                sizes[i] = 4096;
        for (int i = 0; i < NCONNS; i++)
                conns[i] = open_client(sock, "restart-bench-holder");
        for (; done < NAMES && done < n; done++) {
                snprintf(name, sizeof(name), "r-%u", done);
                if (alloc_region_new(conns[done % NCONNS], "host", 4096, &(struct alloc_opts){.name = name}, got) < 0)
                        die(alloc_last_error(), 0);
        }
        for (unsigned k = 0; done < n; k++) {
                size_t b = n - done < ALLOC_BATCH_MAX ? n - done : ALLOC_BATCH_MAX;
                if (alloc_region_new_batch(conns[k % NCONNS], "host", sizes, b, NULL, got) < 0)
                        die(alloc_last_error(), 0);
                done += (unsigned)b;
        }
}

static void disconnect_all(struct alloc_client **conns) {
        for (int i = 0; i < NCONNS; i++)
                conns[i] = alloc_disconnect(conns[i]);
}

/* One restart by sig; the three parts in seconds. */
static void restart_once(struct sysd *s, int sig, unsigned regions, double *stop, double *ready, double *answer) {
        struct alloc_client *c;
        struct alloc_status *st;
        double t0 = now();

        sysd_kill(s, sig);
        double reaped = ts_seconds(&s->reaped), t1 = now();
        int r = sysd_spawn(s);
        if (r != -1) {
                fprintf(stderr, "restart-bench: allocd exited with %d before READY=1: %s\n", r, sysd_log(s));
                exit(1);
        }
        double t2 = now();
        c = open_client(s->d.sock, "restart-bench-first");
        if (alloc_status(c, &st) < 0)
                die(alloc_last_error(), 0);
        double t3 = now();
        unsigned long long used = pool_status(st, "host")->used;
        if (used != (unsigned long long)regions * 4096) {
                fprintf(stderr, "restart-bench: after the restart host has %llu bytes used, not %llu\n", used,
                        (unsigned long long)regions * 4096);
                exit(1);
        }
        alloc_status_free(st);
        alloc_disconnect(c);
        *stop = reaped - t0;
        *ready = t2 - t1;
        *answer = t3 - t2;
}

static void restart_cost(unsigned regions, struct restart_row *row) {
        struct alloc_client *conns[NCONNS];
        struct sysd s;
        double stop[2][64], ready[2][64], answer[2][64], total[2][64];

        row->regions = regions;
        sysd_start(&s, conf(regions));
        populate(s.d.sock, regions, conns);
        /* Interleaved: a stop by SIGTERM, then a kill, and again. */
        for (int t = 0; t < trials; t++)
                for (int k = 0; k < 2; k++) {
                        restart_once(&s, k ? SIGKILL : SIGTERM, regions, &stop[k][t], &ready[k][t], &answer[k][t]);
                        total[k][t] = stop[k][t] + ready[k][t] + answer[k][t];
                }
        for (int k = 0; k < 2; k++) {
                row->stop[k] = median(stop[k], trials);
                row->ready[k] = median(ready[k], trials);
                row->answer[k] = median(answer[k], trials);
                row->total[k] = median(total[k], trials);
        }
        disconnect_all(conns);
        sysd_end(&s);
}

static void pair_burst(struct alloc_client *c) {
        struct alloc_region r;

        for (int i = 0; i < SLICE; i += 2)
                if (alloc_region_new(c, "host", 4096, NULL, &r) < 0 || alloc_region_free_sync(c, r.id) < 0)
                        die(alloc_last_error(), 0);
}

static void pin_or_die(pid_t pid, int cpu) {
        int r = bench_pin(pid, cpu);
        if (r < 0)
                die("sched_setaffinity", r);
}

/* Both allocds with regions live; the slices alternate which goes first. */
static void round_trip(unsigned regions, bool pinned, struct rt_row *row) {
        struct alloc_client *kconns[NCONNS], *pconns[NCONNS], *kc, *pc;
        char dir[] = "/tmp/restart-bench-XXXXXX", sock[128];
        const char *what = "";
        struct sysd s;
        size_t max = 100000, n = 0;
        double *k = calloc(max, sizeof(double)), *p = calloc(max, sizeof(double)), *ra = calloc(max, sizeof(double));

        if (!k || !p || !ra)
                die("calloc", -ENOMEM);
        if (!bench_mkdtemp(dir))
                die("mkdtemp", -errno);
        sysd_start(&s, conf(regions));
        pid_t plain = bench_allocd_start(ALLOCD_PATH, dir, conf(regions), sock, sizeof(sock), &what);
        if (plain < 0)
                die(what, -errno);
        pin_or_die(s.d.pid, pinned ? 1 : -1);
        pin_or_die(plain, pinned ? 1 : -1);
        pin_or_die(0, pinned ? 0 : -1);
        populate(s.d.sock, regions, kconns);
        populate(sock, regions, pconns);
        kc = open_client(s.d.sock, "restart-bench-rt");
        pc = open_client(sock, "restart-bench-rt");
        for (int w = 0; w < 8; w++) { /* warm: the pool's mapping, caches, the log's first pages */
                pair_burst(kc);
                pair_burst(pc);
        }
        for (double deadline = now() + min_seconds; n < max && now() < deadline; n++) {
                for (int j = 0; j < 2; j++) {
                        double t0 = now();
                        if ((j + n) % 2 == 0) {
                                pair_burst(kc);
                                k[n] = (now() - t0) * 1e9 / SLICE;
                        } else {
                                pair_burst(pc);
                                p[n] = (now() - t0) * 1e9 / SLICE;
                        }
                }
                ra[n] = k[n] / p[n];
        }
        *row = (struct rt_row){.regions = regions,
                               .pinned = pinned,
                               .kept_ns = median(k, (int)n),
                               .plain_ns = median(p, (int)n),
                               .ratio = median(ra, (int)n)};
        alloc_disconnect(kc);
        alloc_disconnect(pc);
        disconnect_all(kconns);
        disconnect_all(pconns);
        pin_or_die(0, -1);
        kill(plain, SIGTERM);
        waitpid(plain, NULL, 0);
        sysd_end(&s);
        char conf[160];
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        unlink(conf);
        unlink(sock);
        rmdir(dir);
        free(k);
        free(p);
        free(ra);
}

/* An object of n numbers named by keys. */
static json_object *json_numbers(const char *const *keys, const double *v, size_t n) {
        json_object *o = json_object_new_object();

        for (size_t i = 0; i < n; i++)
                json_object_object_add(o, keys[i], json_object_new_double(v[i]));
        return o;
}

static void print_json(const struct restart_row *rr, int nr, const struct rt_row *tr, int nt) {
        static const char *const sig[] = {"SIGTERM", "SIGKILL"},
                                 *rkeys[] = {"stop_s", "start_to_ready_s", "first_answer_s", "total_s"},
                                 *tkeys[] = {"ns_plain", "ns_kept", "ratio"};
        json_object *root = json_object_new_object(), *ra = json_object_new_array(), *ta = json_object_new_array();

        json_object_object_add(root, "benchmark", json_object_new_string("restart-bench"));
        json_object_object_add(root, "trials", json_object_new_int(trials));
        for (int i = 0; i < nr; i++)
                for (int k = 0; k < 2; k++) {
                        double v[] = {rr[i].stop[k], rr[i].ready[k], rr[i].answer[k], rr[i].total[k]};
                        json_object *r = json_numbers(rkeys, v, 4);
                        json_object_object_add(r, "regions", json_object_new_uint64(rr[i].regions));
                        json_object_object_add(r, "signal", json_object_new_string(sig[k]));
                        json_object_array_add(ra, r);
                }
        for (int i = 0; i < nt; i++) {
                double v[] = {tr[i].plain_ns, tr[i].kept_ns, tr[i].ratio};
                json_object *r = json_numbers(tkeys, v, 3);
                json_object_object_add(r, "live_regions", json_object_new_uint64(tr[i].regions));
                json_object_object_add(r, "pinned", json_object_new_boolean(tr[i].pinned));
                json_object_array_add(ta, r);
        }
        json_object_object_add(root, "restart", ra);
        json_object_object_add(root, "round_trip", ta);
        puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
        json_object_put(root);
}

static void print_table(const struct restart_row *rr, int nr, const struct rt_row *tr, int nt) {
        printf("(a) restart to the first answer, ms (median of %d; SIGTERM and SIGKILL interleaved)\n\n", trials);
        printf("%-10s %-8s %9s %14s %13s %9s %8s\n", "regions", "signal", "stop", "start-READY", "first answer",
               "total", "target");
        for (int i = 0; i < nr; i++)
                for (int k = 0; k < 2; k++)
                        printf("%-10u %-8s %9.1f %14.1f %13.2f %9.1f %8s\n", rr[i].regions, k ? "SIGKILL" : "SIGTERM",
                               rr[i].stop[k] * 1e3, rr[i].ready[k] * 1e3, rr[i].answer[k] * 1e3, rr[i].total[k] * 1e3,
                               rr[i].regions < 1000000 ? ""
                               : rr[i].total[k] < 1.0  ? "<1s ok"
                                                       : "<1s MISS");
        printf("\n(b) alloc+free round trips, ns a request, state kept against not (median over %.2f s of "
               "interleaved %d-request slices)\n\n",
               min_seconds, SLICE);
        printf("%-12s %-24s %9s %9s %7s %8s\n", "live", "where", "not kept", "kept", "ratio", "target");
        for (int i = 0; i < nt; i++)
                printf("%-12u %-24s %9.0f %9.0f %6.3fx %8s\n", tr[i].regions,
                       tr[i].pinned ? "client CPU 0, allocd 1" : "unpinned", tr[i].plain_ns, tr[i].kept_ns, tr[i].ratio,
                       tr[i].ratio < 1.05 ? "<5% ok" : "<5% MISS");
}

#define USAGE "Usage: restart-bench [--json] [--trials N (1-64)] [--seconds S] [--max-regions N]"

int main(int argc, char **argv) {
        static const unsigned sizes[MAX_SIZES] = {1000, 100000, 1000000}, live[] = {1000, 100000};
        struct restart_row rr[MAX_SIZES];
        struct rt_row tr[4];
        unsigned max_regions = 1000000;
        bool json = false;
        int nr = 0, nt = 0;
        uint64_t v;

        min_seconds = 2;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--json"))
                        json = true;
                else if (!strcmp(argv[i], "--trials") && i + 1 < argc) {
                        if (!parse_u64(argv[++i], 1, 64, &v))
                                return bad_arg(USAGE, "--trials", argv[i], "a number from 1 to 64");
                        trials = (int)v;
                } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
                        if (!bench_arg_seconds(USAGE, argv[++i], 0.001, 3600, &min_seconds))
                                return 2;
                } else if (!strcmp(argv[i], "--max-regions") && i + 1 < argc) {
                        if (!parse_u64(argv[++i], 1, UINT_MAX, &v))
                                return bad_arg(USAGE, "--max-regions", argv[i], "a number from 1 to 4294967295");
                        max_regions = (unsigned)v;
                } else {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
        }
        for (int i = 0; i < MAX_SIZES && sizes[i] <= max_regions; i++)
                restart_cost(sizes[i], &rr[nr++]);
        for (size_t i = 0; i < sizeof(live) / sizeof(live[0]) && live[i] <= max_regions; i++)
                for (int pinned = 0; pinned < (sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 2 : 1); pinned++)
                        round_trip(live[i], pinned, &tr[nt++]);
        if (json)
                print_json(rr, nr, tr, nt);
        else
                print_table(rr, nr, tr, nt);
        return 0;
}
