/* SPDX-License-Identifier: MIT */
/*
 * waiter-bench: what one user's costly waiters cost everyone else (docs/ARCHITECTURE.md,
 * "Wake-ups").
 *
 * An fpga pool f is cut into HOLES free 4 KiB pieces, a 4 KiB region between each; pool g is
 * left alone.  A kicker connection allocates and frees 1 MiB of f (above the holes) in a loop:
 * each free makes f ready, so every waiter of f is tried again; with --kick-batch N, N regions
 * of 4 KiB there freed by one FreeBatch, more ranges back at once than allocd logs for its
 * waiters (16), so that each is searched for in the whole pool again.  A probe connection times
 * alloc + free pairs in g.  Rounds of --seconds alternate, baseline first:
 *   baseline  the kicker and the probe only
 *   waiters   as many Allocs as max_waiters_per_uid lets one uid queue (256), 4 KiB aligned to
 *             8 KiB inside the holes' window, from CONNS connections: none ever fits, and each
 *             try walks every hole (O(holes): range-place.c's second pass), unless allocd can
 *             tell from the ranges that came back since its last try that it cannot fit
 * The report: the probe's median and worst pair in each kind of round, their ratio to the
 * baseline's, and the kicks a second.  Nothing is pinned: the kicker, the probe, the waiters'
 * threads and allocd share the machine's CPUs, as users of one allocd do.  $ALLOCD_PATH runs
 * another allocd (an older build, to compare) in place of the one built beside it.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <alloc/client.h>
#include <json-c/json.h>

#include "bench-allocd.h"
#include "bench-util.h"

#define USAGE "usage: waiter-bench [--json] [--seconds S (0.2-60)] [--holes N (1000-100000)] [--kick-batch N (1-256)]"
#define BASE 0x100000000ull
#define Q 4096u
#define WAITERS 256 /* max_waiters_per_uid's default */
#define CONNS 4     /* 64 each: max_waiters_per_connection's default */
#define ROUNDS 3    /* of each kind */
#define PROBES_MAX 200000

static double seconds = 1.0;
static uint64_t holes = 16384, batch = 1;
static char sock[128];
static atomic_bool stop;
static atomic_ulong kicks;

static _Noreturn void fail(const char *what) {
        fprintf(stderr, "waiter-bench: %s: %s\n", what, alloc_last_error()[0] ? alloc_last_error() : strerror(errno));
        exit(1);
}

static struct alloc_client *connect_or_die(const char *name) {
        struct alloc_client *c;

        if (alloc_connect(&c, sock, name) < 0)
                fail("connect");
        return c;
}

/* Frees into f until told to stop: each free has f's waiters tried again. */
static void *kick(void *arg) {
        struct alloc_client *c = arg;
        struct alloc_opts o = {.low = BASE + 2 * holes * Q};
        struct alloc_region r, rs[256];
        uint64_t sizes[256], ids[256];

        for (uint64_t i = 0; i < batch; i++)
                sizes[i] = Q;
        while (!atomic_load(&stop)) {
                if (batch == 1 && (alloc_region_new(c, "f", 1u << 20, &o, &r) < 0 || alloc_region_free(c, r.id) < 0))
                        fail("kick");
                if (batch > 1 && alloc_region_new_batch(c, "f", sizes, batch, &o, rs) < 0)
                        fail("kick");
                for (uint64_t i = 0; batch > 1 && i < batch; i++)
                        ids[i] = rs[i].id;
                if (batch > 1 && alloc_region_free_batch(c, ids, batch) < 0)
                        fail("kick");
                atomic_fetch_add(&kicks, 1);
        }
        return NULL;
}

struct waiter {
        pthread_t t;
        struct alloc_client *c;
        uint32_t ms;
};

/* One Alloc that never fits and waits the round out (its timeout). */
static void *wait_one(void *arg) {
        struct waiter *w = arg;
        struct alloc_opts o = {.align = 2 * Q, .low = BASE, .high = BASE + 2 * holes * Q, .timeout_ms = w->ms};
        struct alloc_region r;
        int e = alloc_region_new(w->c, "f", Q, &o, &r);

        if (e != -ETIMEDOUT)
                fail(e == 0 ? "a costly waiter was granted" : "costly waiter");
        return NULL;
}

static int by_value(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

struct round {
        double median_us, worst_us, kicks_per_s;
};

/* One round: the probe's pairs in g for --seconds, with the costly waiters queued or not. */
static struct round round_of(struct alloc_client *probe, struct alloc_client **conns, bool waiters) {
        static struct waiter w[WAITERS];
        static double t[PROBES_MAX];
        struct alloc_status *st;
        struct alloc_region r;
        int n = 0;

        if (waiters) {
                for (int i = 0; i < WAITERS; i++) {
                        w[i] = (struct waiter){.c = conns[i % CONNS], .ms = (uint32_t)(seconds * 1000) + 200};
                        if (pthread_create(&w[i].t, NULL, wait_one, &w[i]) != 0)
                                fail("pthread_create");
                }
                for (uint64_t queued = 0; queued < WAITERS;) {
                        if (alloc_status(probe, &st) < 0)
                                fail("status");
                        for (size_t i = 0; i < st->npools; i++)
                                if (!strcmp(st->pools[i].name, "f"))
                                        queued = st->pools[i].waiters;
                        alloc_status_free(st);
                        usleep(1000);
                }
        }
        unsigned long k0 = atomic_load(&kicks);
        double start = now(), end = start + seconds;
        while (now() < end && n < PROBES_MAX) {
                double t0 = now();
                if (alloc_region_new(probe, "g", Q, NULL, &r) < 0 || alloc_region_free(probe, r.id) < 0)
                        fail("probe");
                t[n++] = (now() - t0) * 1e6;
        }
        struct round out = {.kicks_per_s = (double)(atomic_load(&kicks) - k0) / (now() - start)};
        if (n == 0)
                fail("no probe in the round");
        if (waiters)
                for (int i = 0; i < WAITERS; i++)
                        pthread_join(w[i].t, NULL);
        qsort(t, (size_t)n, sizeof(*t), by_value);
        out.median_us = t[n / 2];
        out.worst_us = t[n - 1];
        return out;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"holes", required_argument, NULL, 'h'},
                                             {"kick-batch", required_argument, NULL, 'b'},
                                             {0}};
        char dir[] = "/tmp/waiter-bench-XXXXXX", conf[512];
        struct alloc_client *conns[CONNS], *kicker, *probe, *filler;
        struct round r[2][ROUNDS];
        pthread_t kt;
        bool json = false;
        int o;

        while ((o = getopt_long(argc, argv, "js:h:b:", opts, NULL)) != -1) {
                if (o == 'j')
                        json = true;
                else if (o == 's' && !bench_arg_seconds(USAGE, optarg, 0.2, 60, &seconds))
                        return 2;
                else if (o == 'h' && !parse_u64(optarg, 1000, 100000, &holes))
                        return bad_arg(USAGE, "--holes", optarg, "a whole number from 1000 to 100000");
                else if (o == 'b' && !parse_u64(optarg, 1, 256, &batch))
                        return bad_arg(USAGE, "--kick-batch", optarg, "a whole number from 1 to 256");
                else if (o != 'j' && o != 's' && o != 'h' && o != 'b') {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
        }
        /* f: the holes, then room for the kicker; g: the probe's. */
        snprintf(conf, sizeof(conf),
                 "[daemon]\nmax_regions_per_connection = 1000000\n"
                 "[pool f]\nkind = fpga\nranges = %#llx+%#llx\nquantum = 4K\n"
                 "[pool g]\nkind = fpga\nranges = 0x1000000000+16M\nquantum = 4K\n",
                 BASE, (unsigned long long)(2 * holes * Q + (4u << 20)));
        const char *what = "mkdtemp";
        const char *allocd = getenv("ALLOCD_PATH") ? getenv("ALLOCD_PATH") : ALLOCD_PATH;
        if (!bench_mkdtemp(dir) || bench_allocd_start(allocd, dir, conf, sock, sizeof(sock), &what) < 0)
                fail(what);
        filler = connect_or_die("waiter-bench-holes");
        /* 2 x holes regions at the bottom of f, in address order; the odd ones freed: holes at 4K mod 8K. */
        uint64_t *ids = calloc(2 * holes, sizeof(*ids));
        if (!ids)
                fail("calloc");
        for (uint64_t i = 0; i < 2 * holes; i++) {
                struct alloc_region x;
                if (alloc_region_new(filler, "f", Q, &(struct alloc_opts){.low = BASE + i * Q}, &x) < 0)
                        fail("fill");
                ids[i] = x.id;
        }
        for (uint64_t i = 1; i < 2 * holes; i += 2)
                if (alloc_region_free(filler, ids[i]) < 0)
                        fail("hole");
        free(ids);
        for (int i = 0; i < CONNS; i++)
                conns[i] = connect_or_die("waiter-bench-waiters");
        kicker = connect_or_die("waiter-bench-kicker");
        probe = connect_or_die("waiter-bench-probe");
        if (pthread_create(&kt, NULL, kick, kicker) != 0)
                fail("pthread_create");
        for (int i = 0; i < ROUNDS; i++) {
                r[0][i] = round_of(probe, conns, false);
                r[1][i] = round_of(probe, conns, true);
        }
        atomic_store(&stop, true);
        pthread_join(kt, NULL);

        double med[2][ROUNDS], worst[2], kps[2][ROUNDS];
        for (int k = 0; k < 2; k++) {
                worst[k] = 0;
                for (int i = 0; i < ROUNDS; i++) {
                        med[k][i] = r[k][i].median_us;
                        kps[k][i] = r[k][i].kicks_per_s;
                        worst[k] = r[k][i].worst_us > worst[k] ? r[k][i].worst_us : worst[k];
                }
        }
        double m0 = median(med[0], ROUNDS), m1 = median(med[1], ROUNDS);
        double k0 = median(kps[0], ROUNDS), k1 = median(kps[1], ROUNDS);
        if (json) {
                json_object *j = json_object_new_object();
                json_object_object_add(j, "holes", json_object_new_int64((int64_t)holes));
                json_object_object_add(j, "waiters", json_object_new_int64(WAITERS));
                json_object_object_add(j, "kick_batch", json_object_new_int64((int64_t)batch));
                json_object_object_add(j, "seconds_per_round", json_object_new_double(seconds));
                json_object_object_add(j, "rounds", json_object_new_int64(ROUNDS));
                json_object_object_add(j, "placement", json_object_new_string("unpinned"));
                json_object_object_add(j, "baseline_median_us", json_object_new_double(m0));
                json_object_object_add(j, "baseline_worst_us", json_object_new_double(worst[0]));
                json_object_object_add(j, "waiters_median_us", json_object_new_double(m1));
                json_object_object_add(j, "waiters_worst_us", json_object_new_double(worst[1]));
                json_object_object_add(j, "median_ratio", json_object_new_double(m1 / m0));
                json_object_object_add(j, "worst_ratio", json_object_new_double(worst[1] / worst[0]));
                json_object_object_add(j, "baseline_kicks_per_s", json_object_new_double(k0));
                json_object_object_add(j, "waiters_kicks_per_s", json_object_new_double(k1));
                puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY));
                json_object_put(j);
                return 0;
        }
        printf("waiter-bench: %llu holes of 4 KiB in pool f, a kicker freeing into f in a loop (%s), %d rounds of "
               "%.1f s of each kind, alternating; unpinned\n\n",
               (unsigned long long)holes, batch == 1 ? "1 MiB a free" : "a FreeBatch a kick", ROUNDS, seconds);
        printf("%-34s %14s %14s %12s\n", "round", "pair median us", "pair worst us", "kicks/s");
        printf("%-34s %14.1f %14.1f %12.0f\n", "baseline (no waiters)", m0, worst[0], k0);
        printf("%-34s %14.1f %14.1f %12.0f\n", "256 costly waiters of one uid", m1, worst[1], k1);
        printf("%-34s %14.2f %14.2f\n", "ratio", m1 / m0, worst[1] / worst[0]);
        return 0;
}
