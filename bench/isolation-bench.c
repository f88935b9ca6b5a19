/* SPDX-License-Identifier: MIT */
/*
 * What isolation = region costs (issue 14): a region of a pool pool (one
 * mapping, an offset per region) against a region of a region pool (its own
 * memfd, made, filled, sent, mapped and unmapped per region), and both
 * against doing it by hand (memfd_create + ftruncate + mmap + munmap).  Each
 * cycle touches the region's first and last byte.  Also an attach + touch +
 * detach by a second connection of a region already published, which is
 * where region isolation pays a mapping and pool isolation does not.
 *
 * The three are measured in turns, TRIALS times each, in the same run, and
 * the median is kept: on a noisy 2-vCPU machine a baseline measured apart is
 * not a baseline.  allocd and this client run unpinned unless --cpu N pins
 * both to one CPU.
 *
 *   isolation-bench [--json] [--seconds S] [--cpu N]
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <alloc/client.h>

#include "bench-allocd.h"
#include "bench-util.h"

enum way { POOL, REGION, BY_HAND, NWAYS };
static const char *const way_name[] = {"isolation = pool", "isolation = region", "memfd by hand"};
static const char *const way_pool[] = {"pool", "region", NULL};

static double seconds = 0.3;
static struct alloc_client *c, *other;

static _Noreturn void fail(const char *what) {
        fprintf(stderr, "isolation-bench: %s: %s\n", what,
                alloc_last_error()[0] ? alloc_last_error() : strerror(errno));
        exit(1);
}

/* One region made, touched and let go, the way w does it. */
static void cycle(enum way w, uint64_t size) {
        struct alloc_region r;

        if (w == BY_HAND) {
                if (bench_map_cycle(memfd_create("bench", MFD_CLOEXEC), size) < 0)
                        fail("memfd");
                return;
        }
        if (alloc_region_new(c, way_pool[w], size, NULL, &r) < 0)
                fail("alloc");
        bench_touch(r.ptr, size);
        if (alloc_region_free(c, r.id) < 0)
                fail("free");
}

/* A second connection attaches the region published as name, touches it and detaches. */
static void attach_cycle(const char *name, uint64_t size) {
        struct alloc_region r;

        if (alloc_region_attach(other, name, NULL, &r) < 0)
                fail("attach");
        bench_touch(r.ptr, size);
        if (alloc_region_detach(other, r.id) < 0)
                fail("detach");
}

/* µs per cycle of w (attach: the attach cycle of name), over seconds / TRIALS. */
static double trial(enum way w, uint64_t size, const char *name) {
        double t0 = now(), end = t0 + seconds / TRIALS, t;
        long n = 0;

        do {
                for (int i = 0; i < 8; i++)
                        name ? attach_cycle(name, size) : cycle(w, size);
                n += 8;
        } while ((t = now()) < end);
        return (t - t0) / (double)n * 1e6;
}

#define USAGE "usage: isolation-bench [--json] [--seconds S (0.05-60)] [--cpu N]"

int main(int argc, char **argv) {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"cpu", required_argument, NULL, 'c'},
                                             {0}};
        static const uint64_t sizes[] = {4 << 10, 64 << 10, 1 << 20, 16 << 20};
        enum { NSIZES = sizeof(sizes) / sizeof(sizes[0]) };
        double us[NSIZES][NWAYS + 2], v[NWAYS + 2][TRIALS];
        bool json = false;
        int cpu = -1, o;
        char dir[] = "/tmp/isolation-bench-XXXXXX", sock[128];

        while ((o = getopt_long(argc, argv, "js:c:", opts, NULL)) != -1) {
                if (o == 'j')
                        json = true;
                else if (o == 's') {
                        if (!bench_arg_seconds(USAGE, optarg, 0.05, 60, &seconds))
                                return 2;
                } else if (o == 'c') {
                        if (!bench_arg_cpu(USAGE, optarg, &cpu))
                                return 2;
                } else {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
        }
        if (!bench_mkdtemp(dir))
                fail("mkdtemp");
        const char *what;
        pid_t pid = bench_allocd_start(ALLOCD_PATH, dir,
                                       "[pool pool]\nkind = host\nsize = 512M\n"
                                       "[pool region]\nkind = host\nsize = 512M\nisolation = region\n",
                                       sock, sizeof(sock), &what);
        if (pid < 0)
                fail(what);
        if (alloc_connect(&c, sock, "isolation-bench") < 0 || alloc_connect(&other, sock, "attacher") < 0)
                fail("connect");
        if (cpu >= 0) {
                bench_pin(pid, cpu);
                bench_pin(0, cpu);
        }
        for (size_t s = 0; s < NSIZES; s++) {
                struct alloc_region pub[2];
                char name[2][32];
                for (int w = POOL; w <= REGION; w++) {
                        snprintf(name[w], sizeof(name[w]), "bench-%s-%zu", way_pool[w], s);
                        if (alloc_region_new(c, way_pool[w], sizes[s], &(struct alloc_opts){.name = name[w]}, &pub[w]) <
                            0)
                                fail("publish");
                }
                /* Turns: each way once per trial, so that the machine's moods fall on all of them alike. */
                for (int t = 0; t < TRIALS; t++) {
                        for (int w = 0; w < NWAYS; w++)
                                v[w][t] = trial((enum way)w, sizes[s], NULL);
                        v[NWAYS][t] = trial(POOL, sizes[s], name[POOL]);
                        v[NWAYS + 1][t] = trial(REGION, sizes[s], name[REGION]);
                }
                for (int w = 0; w < NWAYS + 2; w++) {
                        us[s][w] = median(v[w], TRIALS);
                }
                for (int w = POOL; w <= REGION; w++)
                        alloc_region_free(c, pub[w].id);
        }
        alloc_disconnect(other);
        alloc_disconnect(c);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        unlink(sock);
        char conf[160];
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        unlink(conf);
        rmdir(dir);

        const char *where = cpu >= 0 ? "allocd and client pinned to one CPU" : "allocd and client unpinned";
        if (json) {
                json_object *root = json_object_new_object(), *rows = json_object_new_array();
                json_object_object_add(root, "placement", json_object_new_string(where));
                for (size_t s = 0; s < NSIZES; s++) {
                        json_object *r = json_object_new_object();
                        json_object_object_add(r, "size", json_object_new_uint64(sizes[s]));
                        json_object_object_add(r, "pool_us", json_object_new_double(us[s][POOL]));
                        json_object_object_add(r, "region_us", json_object_new_double(us[s][REGION]));
                        json_object_object_add(r, "by_hand_us", json_object_new_double(us[s][BY_HAND]));
                        json_object_object_add(r, "region_over_pool",
                                               json_object_new_double(us[s][REGION] / us[s][POOL]));
                        json_object_object_add(r, "by_hand_over_region",
                                               json_object_new_double(us[s][BY_HAND] / us[s][REGION]));
                        json_object_object_add(r, "attach_pool_us", json_object_new_double(us[s][NWAYS]));
                        json_object_object_add(r, "attach_region_us", json_object_new_double(us[s][NWAYS + 1]));
                        json_object_array_add(rows, r);
                }
                json_object_object_add(root, "rows", rows);
                puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
                json_object_put(root);
                return 0;
        }
        printf("a region: alloc + touch first and last byte + free, µs (median of %d turns; %s)\n\n", TRIALS, where);
        printf("%8s %10s %10s %10s %12s %14s %12s %12s\n", "SIZE", way_name[POOL] + 12, way_name[REGION] + 12,
               "by hand", "region/pool", "by hand/region", "attach pool", "attach reg.");
        for (size_t s = 0; s < NSIZES; s++)
                printf("%7lluK %10.1f %10.1f %10.1f %11.2fx %13.2fx %12.1f %12.1f\n",
                       (unsigned long long)sizes[s] >> 10, us[s][POOL], us[s][REGION], us[s][BY_HAND],
                       us[s][REGION] / us[s][POOL], us[s][BY_HAND] / us[s][REGION], us[s][NWAYS], us[s][NWAYS + 1]);
        return 0;
}
