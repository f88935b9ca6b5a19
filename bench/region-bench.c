/* SPDX-License-Identifier: MIT */
/*
 * region-bench: a shared region from allocd against doing it by hand, the
 * targets of issue 15 (docs/PERFORMANCE.md, "Regions against doing it by hand").
 *
 *   region    alloc + touch the first and last byte + free, 4 KiB to 1 GiB,
 *             against memfd_create + ftruncate + mmap + touch + munmap + close
 *             and shm_open + ftruncate + mmap + touch + munmap + close +
 *             shm_unlink; with allocd and this process on one CPU, on two,
 *             and unpinned; allocd as configured (spin 50 us on both sides)
 *             and with spinning off on both sides, and with a spare
 *             (alloc_set_spare: the free asks for the next region, which
 *             the next alloc takes without a round trip), on an allocd of
 *             its own, since its spares hold more regions of the size
 *   hand-off  a producer seals a name a consumer process already waits for
 *             in alloc_region_attach, against one round trip, both after
 *             1 ms of quiet (each side asleep, as a waiting consumer is)
 *   batch     1,000 regions in one alloc_region_new_batch against 1,000
 *             alloc_region_new calls (their frees not counted)
 *   cpu       allocd's CPU time per request with and without spin, and over
 *             one idle second
 *
 * These 2-vCPU VMs are shared and change speed within milliseconds, so every
 * comparison is made in slices: SLICE operations of each way in turn, the
 * order alternating, and the figure is the median over the slices of each
 * slice's ratio, both halves of which ran under the same conditions.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <alloc/client.h>
#include <json-c/json.h>

#include "bench-allocd.h"
#include "bench-util.h"

#define SLICE 16      /* operations of each way per slice */
#define HANDOFFS 200  /* hand-offs measured, each after QUIET_US */
#define QUIET_US 1000 /* how long both sides sleep before a hand-off or a cold round trip */
#define BATCH 1000

enum way { ALLOCD, NOSPIN, SPARE, MEMFD, SHM, NWAYS };
static const char *way_key[NWAYS] = {"allocd", "allocd_nospin", "allocd_spare", "memfd", "shm_open"}; /* in --json */

static double seconds = 0.2; /* per cell */
static char dir[64];
static pid_t servers[6]; /* 0 on CPU 0, 1 on CPU 0 spinning not at all, 2 and 3 the same unpinned; 4, 5: spares' */

static _Noreturn void fail(const char *what) {
        fprintf(stderr, "region-bench: %s: %s\n", what, alloc_last_error()[0] ? alloc_last_error() : strerror(errno));
        exit(1);
}

/* allocd number k's socket (servers[k]). */
static void sock_path(char *buf, size_t n, int k) {
        snprintf(buf, n, "%s/allocd%d.sock", dir, k);
}

static pid_t start_allocd(int k, int cpu, const char *conf) {
        char path[128];
        const char *what;
        pid_t pid;

        sock_path(path, sizeof(path), k);
        if ((pid = bench_allocd_spawn(ALLOCD_PATH, conf, path, cpu, &what)) < 0)
                fail(what);
        return pid;
}

static struct alloc_client *open_allocd(int k, uint32_t spin_us) {
        char path[128];
        struct alloc_client *c;

        sock_path(path, sizeof(path), k);
        errno = 0;
        if (alloc_connect(&c, path, "bench") < 0 || alloc_set_spin(c, spin_us) < 0)
                fail("connecting");
        return c;
}

/* SLICE regions of size one way; c is the allocd connection for ALLOCD and NOSPIN. */
static void slice(enum way w, struct alloc_client *c, uint64_t size) {
        for (int i = 0; i < SLICE; i++) {
                if (w == ALLOCD || w == NOSPIN || w == SPARE) {
                        struct alloc_region r;
                        errno = 0;
                        if (alloc_region_new(c, "bench", size, NULL, &r) < 0)
                                fail("alloc");
                        bench_touch(r.ptr, size);
                        if (alloc_region_free(c, r.id) < 0)
                                fail("free");
                        continue;
                }
                int fd = w == MEMFD ? memfd_create("bench", MFD_CLOEXEC)
                                    : shm_open("/region-bench", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (bench_map_cycle(fd, size) < 0)
                        fail(w == MEMFD ? "memfd" : "shm_open");
                if (w == SHM)
                        shm_unlink("/region-bench");
        }
}

/*
 * One cell: the median time per region of each way (ns) and the median over slices of allocd's
 * speed-up against each baseline (baseline time / allocd time).
 */
struct cell {
        double ns[NWAYS];
        double speedup_memfd, speedup_shm, nospin_speedup_memfd, spare_speedup_memfd, spare_speedup_shm;
};

static void region_cell(int pinned_k, int nospin_k, int spare_k, int client_cpu, uint64_t size, struct cell *out) {
        struct alloc_client *c = open_allocd(pinned_k, 50), *z = open_allocd(nospin_k, 0),
                            *sp = open_allocd(spare_k, 50);
        struct alloc_client *conn[NWAYS] = {[ALLOCD] = c, [NOSPIN] = z, [SPARE] = sp};
        size_t max = 4096, n = 0;
        double *t[NWAYS], *sm = calloc(max, sizeof(double)), *ss = calloc(max, sizeof(double)),
                          *zm = calloc(max, sizeof(double)), *pm = calloc(max, sizeof(double)),
                          *ps = calloc(max, sizeof(double));

        if (alloc_set_spare(sp, true) < 0)
                fail("alloc_set_spare");

        for (int w = 0; w < NWAYS; w++)
                t[w] = calloc(max, sizeof(double));
        bench_pin(0, client_cpu);
        for (int w = 0; w < NWAYS; w++)
                slice((enum way)w, conn[w], size); /* warm: pool mappings, page cache */
        for (double end = now() + seconds; n < max && (now() < end || n < 5); n++) {
                for (int k = 0; k < NWAYS; k++) {
                        enum way w = (enum way)((k + n) % NWAYS);
                        double t0 = now();
                        slice(w, conn[w], size);
                        t[w][n] = (now() - t0) * 1e9 / SLICE;
                }
                sm[n] = t[MEMFD][n] / t[ALLOCD][n];
                ss[n] = t[SHM][n] / t[ALLOCD][n];
                zm[n] = t[MEMFD][n] / t[NOSPIN][n];
                pm[n] = t[MEMFD][n] / t[SPARE][n];
                ps[n] = t[SHM][n] / t[SPARE][n];
        }
        bench_pin(0, -1);
        for (int w = 0; w < NWAYS; w++) {
                out->ns[w] = median(t[w], (int)n);
                free(t[w]);
        }
        out->speedup_memfd = median(sm, (int)n);
        out->speedup_shm = median(ss, (int)n);
        out->nospin_speedup_memfd = median(zm, (int)n);
        out->spare_speedup_memfd = median(pm, (int)n);
        out->spare_speedup_shm = median(ps, (int)n);
        free(sm);
        free(ss);
        free(zm);
        free(pm);
        free(ps);
        alloc_disconnect(c);
        alloc_disconnect(z);
        alloc_disconnect(sp);
}

/*
 * Hand-off: a consumer process waits in alloc_region_attach; after QUIET_US the producer seals the
 * name and the consumer's clock says when it had the region.  Interleaved with round trips (a
 * Detach of an id nobody holds, answered NOT_FOUND) after the same quiet.  Medians, in ns.
 */
static void handoff(int k, double *handoff_ns, double *rtt_ns) {
        char path[128], name[32];
        int ready[2], took[2];
        double h[HANDOFFS], rt[HANDOFFS];
        pid_t kid;

        sock_path(path, sizeof(path), k);
        if (pipe(ready) < 0 || pipe(took) < 0)
                fail("pipe");
        if ((kid = fork()) < 0)
                fail("fork");
        if (kid == 0) {
                close(ready[0]);
                close(took[0]);
                struct alloc_client *c = open_allocd(k, 50);
                struct alloc_region r;
                for (int i = 0; i < HANDOFFS; i++) {
                        snprintf(name, sizeof(name), "handoff-%d", i);
                        char x = 1;
                        if (write(ready[1], &x, 1) != 1)
                                _exit(1);
                        if (alloc_region_attach(c, name, &(struct alloc_attach_opts){.timeout_ms = 10000}, &r) < 0)
                                _exit(2);
                        double t = now();
                        if (write(took[1], &t, sizeof(t)) != sizeof(t))
                                _exit(1);
                        alloc_region_detach(c, r.id);
                }
                alloc_disconnect(c);
                _exit(0);
        }
        /* Only the consumer writes: if it fails, the reads below see the end instead of waiting forever. */
        close(ready[1]);
        close(took[1]);
        struct alloc_client *c = open_allocd(k, 50);
        for (int i = 0; i < HANDOFFS; i++) {
                struct alloc_region r;
                struct alloc_opts o = {.flags = ALLOC_UNSEALED, .name = name};
                char x;
                double t, t0;
                snprintf(name, sizeof(name), "handoff-%d", i);
                errno = 0;
                if (alloc_region_new(c, "bench", 4096, &o, &r) < 0 || read(ready[0], &x, 1) != 1)
                        fail("hand-off");
                usleep(QUIET_US); /* the consumer's Attach is in allocd, and both sides are asleep */
                t0 = now();
                if (alloc_region_seal(c, r.id) < 0)
                        fail("seal");
                if (read(took[0], &t, sizeof(t)) != sizeof(t)) {
                        errno = EPIPE;
                        fail("the consumer stopped");
                }
                h[i] = (t - t0) * 1e9;
                alloc_region_free(c, r.id);
                usleep(QUIET_US);
                t0 = now();
                alloc_region_detach_sync(c, 1);
                rt[i] = (now() - t0) * 1e9;
        }
        waitpid(kid, NULL, 0);
        alloc_disconnect(c);
        close(ready[0]);
        close(took[0]);
        *handoff_ns = median(h, HANDOFFS);
        *rtt_ns = median(rt, HANDOFFS);
}

/* 1,000 regions: one batch against 1,000 requests, interleaved; medians in ns and of the ratio. */
static void batch(int k, double *batch_ns, double *single_ns, double *ratio) {
        static struct alloc_region r[BATCH];
        static uint64_t sizes[BATCH], ids[BATCH];
        double b[64], s[64], q[64];
        struct alloc_client *c = open_allocd(k, 50);
        int n = 0;

        for (int i = 0; i < BATCH; i++)
                sizes[i] = 4096;
        for (double end = now() + 4 * seconds; n < 64 && (now() < end || n < 5); n++) {
                double t0 = now();
                errno = 0;
                if (alloc_region_new_batch(c, "bench", sizes, BATCH, NULL, r) < 0)
                        fail("batch");
                b[n] = (now() - t0) * 1e9;
                for (int i = 0; i < BATCH; i++)
                        ids[i] = r[i].id;
                alloc_region_free_batch(c, ids, BATCH);
                t0 = now();
                for (int i = 0; i < BATCH; i++)
                        if (alloc_region_new(c, "bench", 4096, NULL, &r[i]) < 0)
                                fail("alloc");
                s[n] = (now() - t0) * 1e9;
                for (int i = 0; i < BATCH; i++)
                        ids[i] = r[i].id;
                alloc_region_free_batch(c, ids, BATCH);
                q[n] = s[n] / b[n];
        }
        alloc_region_sync(c);
        alloc_disconnect(c);
        *batch_ns = median(b, n);
        *single_ns = median(s, n);
        *ratio = median(q, n);
}

/* allocd k's CPU time (user + system), in seconds. */
static double cpu_of(pid_t pid) {
        char path[64], buf[1024];
        unsigned long long ut, st;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        if (!(f = fopen(path, "re")))
                fail(path);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                fail("parsing /proc/PID/stat");
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* allocd's CPU per request (us) over a second of alloc+free pairs, with the client's spin as allocd's. */
static double cpu_per_request(int k, uint32_t spin_us, double *client_us) {
        struct alloc_client *c = open_allocd(k, spin_us);
        struct rusage r0, r1;
        uint64_t requests = 0;
        double c0 = cpu_of(servers[k]);

        getrusage(RUSAGE_SELF, &r0);
        for (double end = now() + 4 * seconds; now() < end; requests += 2 * SLICE)
                slice(ALLOCD, c, 4096);
        alloc_region_sync(c);
        getrusage(RUSAGE_SELF, &r1);
        alloc_disconnect(c);
        *client_us = ((double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                      (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) *
                              1e-6) *
                     1e6 / (double)requests;
        return (cpu_of(servers[k]) - c0) * 1e6 / (double)requests;
}

static const uint64_t sizes[] = {4ull << 10, 64ull << 10, 1ull << 20, 16ull << 20, 256ull << 20, 1ull << 30};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
static const struct {
        const char *what;
        int allocd, client; /* CPUs; -1: unpinned */
} places[] = {{"one CPU", 0, 0}, {"two CPUs", 0, 1}, {"unpinned", -1, -1}};
#define NPLACES (sizeof(places) / sizeof(places[0]))

static void size_name(char *buf, size_t n, uint64_t size) {
        if (size >= 1ull << 30)
                snprintf(buf, n, "%llu GiB", (unsigned long long)(size >> 30));
        else if (size >= 1ull << 20)
                snprintf(buf, n, "%llu MiB", (unsigned long long)(size >> 20));
        else
                snprintf(buf, n, "%llu KiB", (unsigned long long)(size >> 10));
}

static void add_double(json_object *o, const char *key, double v) {
        json_object_object_add(o, key, json_object_new_double(v));
}

/* root's object name: n figures, and whether its target was met. */
static void add_figures(json_object *root, const char *name, int n, const char **keys, const double *v, bool met) {
        json_object *o = json_object_new_object();

        for (int i = 0; i < n; i++)
                add_double(o, keys[i], v[i]);
        json_object_object_add(o, "target_met", json_object_new_boolean(met));
        json_object_object_add(root, name, o);
}

enum { P_REGIONS = 1, P_HANDOFF = 2, P_BATCH = 4, P_CPU = 8 };

/* --only's list: a mask of P_*, or -1. */
static int parts(const char *list) {
        static const char *names[] = {"regions", "handoff", "batch", "cpu"};
        char buf[64], *save, *w;
        int mask = 0, i;

        if ((size_t)snprintf(buf, sizeof(buf), "%s", list) >= sizeof(buf))
                return -1;
        for (w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                for (i = 0; i < 4 && strcmp(w, names[i]); i++)
                        ;
                if (i == 4)
                        return -1;
                mask |= 1 << i;
        }
        return mask ? mask : -1;
}

#define USAGE "usage: region-bench [--json] [--seconds S (per cell, 0.2)] [--only regions,handoff,batch,cpu]"

int main(int argc, char **argv) {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"only", required_argument, NULL, 'o'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
        static struct cell cells[NPLACES][NSIZES];
        char conf[2][128], p[128];
        bool json = false, all = true;
        int o, only = ~0;

        while ((o = getopt_long(argc, argv, "js:o:h", opts, NULL)) != -1) {
                if (o == 'j') {
                        json = true;
                } else if (o == 'o') {
                        if ((only = parts(optarg)) < 0) {
                                fprintf(stderr, "region-bench: --only %s: a list of regions, handoff, batch, cpu\n",
                                        optarg);
                                return 2;
                        }
                } else if (o == 's') {
                        if (!bench_arg_seconds(USAGE, optarg, 0.05, 60, &seconds))
                                return 2;
                } else {
                        fprintf(o == 'h' ? stdout : stderr, "%s\n", USAGE);
                        return o == 'h' ? 0 : 2;
                }
        }
        if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
                fprintf(stderr, "region-bench: needs 2 CPUs (allocd on one, the client on another)\n");
                return 77;
        }
        signal(SIGPIPE, SIG_IGN);
        strcpy(dir, "/tmp/region-bench-XXXXXX");
        if (!bench_mkdtemp(dir))
                fail("mkdtemp");
        for (int k = 0; k < 2; k++) {
                snprintf(conf[k], sizeof(conf[k]), "%s/allocd%d.conf", dir, k);
                FILE *f = fopen(conf[k], "we");
                if (!f)
                        fail(conf[k]);
                /* 1 GiB and a little: the largest region, and the hand-offs' and batches' small ones beside it. */
                fprintf(f,
                        "[daemon]\nspin = %s\nmax_regions_per_connection = 4096\n[pool bench]\nkind = host\nsize = "
                        "1040M\n",
                        k ? "0" : "50us");
                fclose(f);
        }
        for (int k = 0; k < 6; k++)
                servers[k] = start_allocd(k, k == 5 || k == 2 || k == 3 ? -1 : 0, conf[k < 4 ? k % 2 : 0]);

        for (size_t pl = 0; pl < NPLACES && (only & P_REGIONS); pl++)
                for (size_t i = 0; i < NSIZES; i++) {
                        int base = places[pl].allocd < 0 ? 2 : 0;
                        region_cell(base, base + 1, places[pl].allocd < 0 ? 5 : 4, places[pl].client, sizes[i],
                                    &cells[pl][i]);
                }
        double handoff_ns = 0, rtt_ns = 0, batch_ns = 0, single_ns = 0, batch_ratio = 0, cpu_spin = 0, cpu_nospin = 0,
               client_spin = 0, client_nospin = 0, idle = 0;
        if (only & P_HANDOFF)
                handoff(2, &handoff_ns, &rtt_ns);
        if (only & P_BATCH)
                batch(2, &batch_ns, &single_ns, &batch_ratio);
        if (only & P_CPU) {
                cpu_spin = cpu_per_request(2, 50, &client_spin);
                cpu_nospin = cpu_per_request(3, 0, &client_nospin);
                sleep(1);
                double c0 = cpu_of(servers[2]);
                sleep(1);
                idle = cpu_of(servers[2]) - c0;
        }

        for (int k = 0; k < 6; k++) {
                kill(servers[k], SIGTERM);
                waitpid(servers[k], NULL, 0);
                sock_path(p, sizeof(p), k);
                unlink(p);
        }
        unlink(conf[0]);
        unlink(conf[1]);
        rmdir(dir);

        json_object *root = json_object_new_object(), *arr = json_object_new_array();
        if (!json && (only & P_REGIONS))
                printf("region-bench: a region = alloc + touch first and last byte + free; ns per region, medians of "
                       "%.2f s of %d-region slices per cell, the ways alternating; speed-up = baseline / allocd, "
                       "median of the slices' ratios (target >= 1.5); spare: alloc_set_spare\n\n%-9s %-8s %9s %9s %9s "
                       "%9s "
                       "%9s %7s %7s %8s %7s %7s\n",
                       seconds, SLICE, "placement", "size", "allocd", "no spin", "spare", "memfd", "shm_open",
                       "x memfd", "x shm", "nospin x", "spare x", "x shm");
        for (size_t pl = 0; pl < NPLACES && (only & P_REGIONS); pl++)
                for (size_t i = 0; i < NSIZES; i++) {
                        struct cell *c = &cells[pl][i];
                        char sz[16];
                        bool met = c->speedup_memfd >= 1.5 && c->speedup_shm >= 1.5,
                             spare_met = c->spare_speedup_memfd >= 1.5 && c->spare_speedup_shm >= 1.5;
                        all &= met || spare_met; /* by allocd, with or without a spare */
                        size_name(sz, sizeof(sz), sizes[i]);
                        if (!json)
                                printf("%-9s %-8s %9.0f %9.0f %9.0f %9.0f %9.0f %7.2f %7.2f %8.2f %7.2f %7.2f %s%s\n",
                                       places[pl].what, sz, c->ns[ALLOCD], c->ns[NOSPIN], c->ns[SPARE], c->ns[MEMFD],
                                       c->ns[SHM], c->speedup_memfd, c->speedup_shm, c->nospin_speedup_memfd,
                                       c->spare_speedup_memfd, c->spare_speedup_shm, met ? "met" : "MISSED",
                                       spare_met ? ", spare met" : ", spare MISSED");
                        json_object *e = json_object_new_object();
                        json_object_object_add(e, "placement", json_object_new_string(places[pl].what));
                        json_object_object_add(e, "size", json_object_new_int64((int64_t)sizes[i]));
                        for (int w = 0; w < NWAYS; w++) {
                                char key[32];
                                snprintf(key, sizeof(key), "%s_ns", way_key[w]);
                                add_double(e, key, c->ns[w]);
                        }
                        add_double(e, "speedup_memfd", c->speedup_memfd);
                        add_double(e, "speedup_shm", c->speedup_shm);
                        add_double(e, "nospin_speedup_memfd", c->nospin_speedup_memfd);
                        add_double(e, "spare_speedup_memfd", c->spare_speedup_memfd);
                        add_double(e, "spare_speedup_shm", c->spare_speedup_shm);
                        json_object_object_add(e, "target_met", json_object_new_boolean(met));
                        json_object_object_add(e, "spare_target_met", json_object_new_boolean(spare_met));
                        json_object_array_add(arr, e);
                }
        bool handoff_met = handoff_ns <= 1.5 * rtt_ns, batch_met = batch_ratio >= 10;
        json_object_object_add(root, "regions", arr);
        if (only & P_HANDOFF) {
                all &= handoff_met;
                if (!json)
                        printf("\nhand-off through a sealed name, consumer waiting, unpinned, after %d us of quiet: "
                               "%.0f "
                               "ns, one round trip after the same quiet %.0f ns: %.2fx (target <= 1.5) %s\n",
                               QUIET_US, handoff_ns, rtt_ns, handoff_ns / rtt_ns, handoff_met ? "met" : "MISSED");
                add_figures(root, "handoff", 3, (const char *[]){"handoff_ns", "round_trip_ns", "ratio"},
                            (double[]){handoff_ns, rtt_ns, handoff_ns / rtt_ns}, handoff_met);
        }
        if (only & P_BATCH) {
                all &= batch_met;
                if (!json)
                        printf("1,000 regions, unpinned: one batch %.0f ns, 1,000 requests %.0f ns: %.1fx faster "
                               "(target >= 10) %s\n",
                               batch_ns, single_ns, batch_ratio, batch_met ? "met" : "MISSED");
                add_figures(root, "batch", 3, (const char *[]){"batch_ns", "single_ns", "speedup"},
                            (double[]){batch_ns, single_ns, batch_ratio}, batch_met);
        }
        if (only & P_CPU) {
                if (!json)
                        printf("CPU per request (alloc or free of 4 KiB, unpinned): allocd %.2f us, client %.2f us "
                               "with spin; allocd %.2f us, client %.2f us without\n"
                               "allocd idle for 1 s after that: %.3f s of CPU\n",
                               cpu_spin, client_spin, cpu_nospin, client_nospin, idle);
                add_figures(root, "cpu", 5,
                            (const char *[]){"allocd_us_per_request_spin", "client_us_per_request_spin",
                                             "allocd_us_per_request_nospin", "client_us_per_request_nospin",
                                             "allocd_idle_cpu_s_per_s"},
                            (double[]){cpu_spin, client_spin, cpu_nospin, client_nospin, idle}, true);
        }
        json_object_object_add(root, "all_targets_met", json_object_new_boolean(all));
        if (json)
                puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
        json_object_put(root);
        return 0;
}
