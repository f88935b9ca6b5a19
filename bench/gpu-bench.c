/* SPDX-License-Identifier: MIT */
/*
 * gpu-bench: how long it takes to get page-locked host memory, and device
 * memory, from allocd against asking the CUDA driver each time, measured in
 * the same run (issue 5; docs/PERFORMANCE.md).  GPU only: exits 77 without one.
 *
 *   pinned  alloc_region_new + alloc_region_free in a pinned pool, against
 *           cuMemHostAlloc(PORTABLE | DEVICEMAP) + cuMemFreeHost
 *   gpu     the same in a gpu pool, against cuMemAlloc + cuMemFree
 *
 * "first" is a region on a new connection: it includes mapping the pool and
 * registering (memfd) or importing (vmm) it with CUDA, once per process.
 * "next" is every region after that.  Each figure is a median.
 *
 *   gpu-bench [--json] [--rounds N]
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <alloc/client.h>
#include <json-c/json.h>

#include "bench-util.h"
#include "gpu-util.h"

#define USAGE "usage: gpu-bench [--json] [--rounds 1-64]"

/* The options, checked before anything needs a GPU (bench/test-args.sh runs without one): 0, or the exit status. */
static int options(int argc, char **argv, bool *json, int *rounds) {
        static const struct option opts[] = {
                {"json", no_argument, NULL, 'j'}, {"rounds", required_argument, NULL, 'r'}, {0}};
        uint64_t v;
        int opt;

        while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (opt == 'j') {
                        *json = true;
                } else if (opt == 'r') {
                        if (!parse_u64(optarg, 1, 64, &v))
                                return bad_arg(USAGE, "--rounds", optarg, "a number of rounds from 1 to 64");
                        *rounds = (int)v;
                } else {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
        }
        return 0;
}

#if !HAVE_CUDA
int main(int argc, char **argv) {
        bool json = false;
        int rounds = 15, r = options(argc, argv, &json, &rounds);

        if (r)
                return r;
        printf("skipped: built without the CUDA toolkit\n");
        return EXIT_SKIP;
}
#else

static const struct cuda *cu;
static char sock[128];

static void must(int r, const char *what) {
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", what, alloc_last_error());
                exit(1);
        }
}

/* Seconds for a region of size in pool on a new connection (first) and then per region (next). */
static void from_allocd(const char *pool, uint64_t size, int rounds, double *first, double *next) {
        double t[64];
        struct alloc_region r;

        for (int i = 0; i < rounds; i++) {
                struct alloc_client *c;
                must(alloc_connect(&c, sock, "gpu-bench"), "connect");
                double t0 = now();
                must(alloc_region_new(c, pool, size, NULL, &r), pool);
                t[i] = now() - t0;
                if (i == 0 && r.kind != ALLOC_KIND_GPU && !r.registered && !r.dev_ptr) {
                        fprintf(stderr, "pool %s: the region is not registered with CUDA\n", pool);
                        exit(1);
                }
                alloc_region_free(c, r.id);
                alloc_disconnect(c);
        }
        *first = median(t, rounds);
        struct alloc_client *c;
        must(alloc_connect(&c, sock, "gpu-bench"), "connect");
        must(alloc_region_new(c, pool, size, NULL, &r), pool); /* maps the pool */
        alloc_region_free(c, r.id);
        for (int i = 0; i < rounds; i++) {
                double t0 = now();
                must(alloc_region_new(c, pool, size, NULL, &r), pool);
                must(alloc_region_free(c, r.id), "free");
                t[i] = now() - t0;
        }
        *next = median(t, rounds);
        alloc_disconnect(c);
}

static double from_driver(bool host, uint64_t size, int rounds) {
        double t[64];

        for (int i = 0; i < rounds; i++) {
                void *p;
                CUdeviceptr d;
                double t0 = now();
                if (host) {
                        gpu_check(cu->cuMemHostAlloc(&p, size, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP),
                                  "cuMemHostAlloc");
                        gpu_check(cu->cuMemFreeHost(p), "cuMemFreeHost");
                } else {
                        gpu_check(cu->cuMemAlloc(&d, size), "cuMemAlloc");
                        gpu_check(cu->cuMemFree(d), "cuMemFree");
                }
                t[i] = now() - t0;
        }
        return median(t, rounds);
}

int main(int argc, char **argv) {
        static const uint64_t sizes[] = {4096, 1 << 20, 64 << 20, 1 << 30};
        static const char *const pools[] = {"pin", "auto", "g"};
        bool json = false;
        int rounds = 15, r = options(argc, argv, &json, &rounds);
        char devname[128] = "";
        CUdevice dev;

        if (r)
                return r;
        cu = gpu_setup();
        gpu_check(cu->cuDeviceGet(&dev, 0), "cuDeviceGet");
        cu->cuDeviceGetName(devname, sizeof(devname), dev);
        pid_t allocd = gpu_start_allocd(ALLOCD_PATH,
                                        "[pool pin]\nkind = pinned\nbackend = memfd\nsize = 2G\n"
                                        "[pool auto]\nkind = pinned\nsize = 2G\n"
                                        "[pool g]\nkind = gpu\ndevice = 0\nsize = 2G\n",
                                        sock, sizeof(sock));
        struct alloc_client *c;
        struct alloc_status *st;
        must(alloc_connect(&c, sock, "gpu-bench"), "connect");
        must(alloc_status(c, &st), "status");
        char auto_backend[8] = "";
        for (size_t i = 0; i < st->npools; i++)
                if (!strcmp(st->pools[i].name, "auto"))
                        snprintf(auto_backend, sizeof(auto_backend), "%s", st->pools[i].backend);
        alloc_status_free(st);
        alloc_disconnect(c);

        json_object *root = json_object_new_object(), *rows = json_object_new_array();
        json_object_object_add(root, "device", json_object_new_string(devname));
        json_object_object_add(root, "driver_cuda", json_object_new_int(cu->driver_version));
        json_object_object_add(root, "rounds", json_object_new_int(rounds));
        json_object_object_add(root, "placement",
                               json_object_new_string("unpinned: allocd and the benchmark on any CPU"));
        if (!json) {
                printf("%s, driver CUDA %d.%d, %d rounds, medians, processes unpinned; pool auto is %s\n\n", devname,
                       cu->driver_version / 1000, cu->driver_version % 1000 / 10, rounds, auto_backend);
                printf("%-6s %-8s %12s %12s %14s %10s\n", "POOL", "SIZE", "FIRST us", "NEXT us", "DRIVER us",
                       "DRIVER/NEXT");
        }
        for (size_t p = 0; p < 3; p++) {
                for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                        int n = sizes[s] >= (1u << 30) ? (rounds < 5 ? rounds : 5) : rounds;
                        double first, next, drv = from_driver(p < 2, sizes[s], n);
                        from_allocd(pools[p], sizes[s], n, &first, &next);
                        json_object *row = json_object_new_object();
                        json_object_object_add(row, "pool", json_object_new_string(pools[p]));
                        json_object_object_add(row, "backend",
                                               json_object_new_string(p == 0   ? "memfd"
                                                                      : p == 1 ? auto_backend
                                                                               : "vmm"));
                        json_object_object_add(row, "size", json_object_new_uint64(sizes[s]));
                        json_object_object_add(row, "first_us", json_object_new_double(first * 1e6));
                        json_object_object_add(row, "next_us", json_object_new_double(next * 1e6));
                        json_object_object_add(row, "driver_us", json_object_new_double(drv * 1e6));
                        json_object_object_add(row, "driver_over_next", json_object_new_double(drv / next));
                        json_object_array_add(rows, row);
                        if (!json)
                                printf("%-6s %-8" PRIu64 " %12.1f %12.1f %14.1f %9.0fx\n", pools[p], sizes[s],
                                       first * 1e6, next * 1e6, drv * 1e6, drv / next);
                }
        }
        json_object_object_add(root, "results", rows);
        if (json)
                printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
        json_object_put(root);
        gpu_stop_allocd(allocd, SIGTERM);
        return 0;
}
#endif
