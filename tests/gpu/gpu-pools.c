/* SPDX-License-Identifier: MIT */
/*
 * GPU test: what gpu-share does not cover (issue 20), one process, no kernels.  Exits 77 without
 * a GPU.
 *
 * - every kind of CUDA pool named explicitly (pinned with backend = memfd and = vmm, gpu), and the
 *   backend allocd reports for each;
 * - ZERO on gpu and vmm pools (a region written, freed and handed out again zeroed);
 * - regions at non-zero offsets: written through one address, read through the other;
 * - the memfd registration flags (none, portable, devicemap) and what each gives a region;
 * - a client whose current context is its own (cuCtxCreate), not the primary one: a pinned
 *   region registered without PORTABLE must serve that context;
 * - two connections of one process to one pinned pool (two mappings, two registrations);
 * - a clean SIGTERM of allocd while regions are mapped, which keep working after it;
 * - the device memory back when everyone is gone (cuMemGetInfo before and after).
 */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <alloc/client.h>

#include "gpu-util.h"

#if !HAVE_CUDA
int main(void) {
        printf("skipped: built without the CUDA toolkit\n");
        return EXIT_SKIP;
}
#else

#define MiB ((size_t)1 << 20)

static const struct cuda *cu;
static int failures;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        printf("%-4s ", ok ? "ok" : "FAIL");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        failures += !ok;
}

/* A driver function the loader does not hold (the tests' own needs), through cuGetProcAddress_v2. */
static void *driver_fn(const char *name, int version) {
        void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
        PFN_cuGetProcAddress_v12000 get = lib ? (PFN_cuGetProcAddress_v12000)dlsym(lib, "cuGetProcAddress_v2") : NULL;
        void *fn = NULL;

        if (!get || get(name, &fn, version, CU_GET_PROC_ADDRESS_DEFAULT, NULL) != CUDA_SUCCESS)
                return NULL;
        return fn;
}

static size_t device_free(void) {
        static PFN_cuMemGetInfo_v3020 get_info;
        size_t free_bytes = 0, total = 0;

        if (!get_info)
                get_info = (PFN_cuMemGetInfo_v3020)driver_fn("cuMemGetInfo", 3020);
        if (!get_info)
                return 0;
        gpu_check(get_info(&free_bytes, &total), "cuMemGetInfo");
        return free_bytes;
}

static const struct alloc_pool_status *find(const struct alloc_status *s, const char *name) {
        for (size_t i = 0; i < s->npools; i++)
                if (!strcmp(s->pools[i].name, name))
                        return &s->pools[i];
        return NULL;
}

/* Writes pattern through the device address and reads it back through the host (pinned) or the device. */
static bool round_trip(const struct alloc_region *r, unsigned char pattern) {
        static unsigned char buf[4 * MiB];
        size_t n = r->size < sizeof(buf) ? (size_t)r->size : sizeof(buf);

        if (!r->dev_ptr || cu->cuMemsetD8(r->dev_ptr, pattern, n) != CUDA_SUCCESS ||
            cu->cuCtxSynchronize() != CUDA_SUCCESS)
                return false;
        if (r->cptr)
                return ((const unsigned char *)r->cptr)[0] == pattern &&
                       ((const unsigned char *)r->cptr)[n - 1] == pattern;
        if (cu->cuMemcpyDtoH(buf, r->dev_ptr, n) != CUDA_SUCCESS)
                return false;
        return buf[0] == pattern && buf[n - 1] == pattern;
}

static bool all_zero(const struct alloc_region *r) {
        static unsigned char buf[4 * MiB];
        size_t n = r->size < sizeof(buf) ? (size_t)r->size : sizeof(buf);

        if (cu->cuMemcpyDtoH(buf, r->dev_ptr, n) != CUDA_SUCCESS)
                return false;
        for (size_t i = 0; i < n; i++)
                if (buf[i])
                        return false;
        return true;
}

/* Explicit backends, non-zero offsets, ZERO, flags. */
static void pools(struct alloc_client *c) {
        static const char *const names[] = {"mem", "vmm", "g", "none", "port", "map"};
        static const char *const backends[] = {"memfd", "vmm", "", "memfd", "memfd", "memfd"};
        struct alloc_status *s;
        struct alloc_region first, r, z;
        struct alloc_opts zero = {.flags = ALLOC_ZERO};

        if (alloc_status(c, &s) < 0) {
                check(false, "status: %s", alloc_last_error());
                return;
        }
        for (size_t i = 0; i < 6; i++) {
                const struct alloc_pool_status *p = find(s, names[i]);
                check(p && (!*backends[i] || !strcmp(p->backend, backends[i])), "pool %s is there, backend %s",
                      names[i], p ? p->backend : "(none)");
        }
        alloc_status_free(s);
        for (size_t i = 0; i < 3; i++) {
                /* A region after another: at a non-zero offset, so the pool's base plus offset is what is checked. */
                if (alloc_region_new(c, names[i], 2 * MiB, NULL, &first) < 0 ||
                    alloc_region_new(c, names[i], 4 * MiB, NULL, &r) < 0) {
                        check(false, "%s: two regions: %s", names[i], alloc_last_error());
                        continue;
                }
                check(r.addr != 0 && round_trip(&r, 0xa5),
                      "%s: a region at offset %#" PRIx64 " written on the device, "
                      "read back",
                      names[i], r.addr);
                check(first.addr != r.addr && round_trip(&first, 0x5a) && round_trip(&r, 0xa5) ? true : false,
                      "%s: the region before it is its own bytes", names[i]);
                uint64_t at = r.addr;
                alloc_region_free(c, r.id);
                /* The same place again, with ZERO: allocd zeroes what the last holder wrote. */
                if (alloc_region_new(c, names[i], 4 * MiB, &zero, &z) < 0) {
                        check(false, "%s: ZERO: %s", names[i], alloc_last_error());
                } else {
                        check(all_zero(&z), "%s: ZERO at %#" PRIx64 " (the freed region was at %#" PRIx64 ")", names[i],
                              z.addr, at);
                        alloc_region_free(c, z.id);
                }
                alloc_region_free(c, first.id);
        }
        /* The registration flags: what each gives a memfd region here. */
        for (size_t i = 3; i < 6; i++) {
                if (alloc_region_new(c, names[i], MiB, NULL, &r) < 0) {
                        check(false, "%s: %s", names[i], alloc_last_error());
                        continue;
                }
                bool devicemap = i != 4 && i != 3;
                check(r.registered && (devicemap ? r.dev_ptr != 0 : r.dev_ptr == 0),
                      "flags of pool %s: registered %d, dev_ptr %s", names[i], r.registered,
                      r.dev_ptr ? "set" : "none");
                if (devicemap)
                        check(round_trip(&r, 0x3c), "flags of pool %s: written on the device, read on the host",
                              names[i]);
                alloc_region_free(c, r.id);
        }
}

/* A context of the program's own current: a registration without PORTABLE must serve it. */
static void own_context(const char *sock) {
        PFN_cuCtxCreate_v3020 create = (PFN_cuCtxCreate_v3020)driver_fn("cuCtxCreate", 3020);
        PFN_cuCtxDestroy_v4000 destroy = (PFN_cuCtxDestroy_v4000)driver_fn("cuCtxDestroy", 4000);
        struct alloc_client *c;
        struct alloc_region r;
        CUcontext mine, popped;
        CUdevice dev;
        CUdeviceptr d;

        if (!create || !destroy) {
                printf("note: this driver has no cuCtxCreate v3020: the own-context check is left out\n");
                return;
        }
        gpu_check(cu->cuDeviceGet(&dev, 0), "cuDeviceGet");
        gpu_check(create(&mine, 0, dev), "cuCtxCreate");
        if (alloc_connect(&c, sock, "gpu-pools-own-ctx") < 0 || alloc_region_new(c, "map", MiB, NULL, &r) < 0) {
                check(false, "own context: connect and allocate: %s", alloc_last_error());
        } else {
                check(cu->cuMemHostGetDevicePointer(&d, r.ptr, 0) == CUDA_SUCCESS,
                      "own context: the pinned region (DEVICEMAP, not PORTABLE) is registered in it");
                check(round_trip(&r, 0x77), "own context: written on the device in it, read on the host");
                alloc_region_free(c, r.id);
        }
        alloc_disconnect(c);
        cu->cuCtxPopCurrent(&popped);
        destroy(mine);
}

/* Two connections of one process: two mappings of one pinned pool, each registered; one's bytes are the other's. */
static void two_connections(const char *sock) {
        struct alloc_client *a = NULL, *b = NULL;
        struct alloc_region ra, rb;
        struct alloc_opts named = {.name = "two/conn", .flags = ALLOC_UNSEALED}; /* sealed below, as a writer would */

        bool ok = alloc_connect(&a, sock, "gpu-pools-a") == 0 && alloc_connect(&b, sock, "gpu-pools-b") == 0 &&
                  alloc_region_new(a, "mem", MiB, &named, &ra) == 0 && alloc_region_seal(a, ra.id) == 0 &&
                  alloc_region_attach(b, "two/conn", NULL, &rb) == 0;
        check(ok, "two connections of one process attach one pinned region: %s", ok ? "" : alloc_last_error());
        if (ok) {
                check(ra.registered && rb.registered && ra.ptr != rb.ptr, "each connection maps and registers it");
                check(round_trip(&ra, 0x42) && ((const unsigned char *)rb.cptr)[0] == 0x42,
                      "written through one's device pointer, read through the other's mapping");
        }
        alloc_disconnect(b);
        alloc_disconnect(a);
}

int main(void) {
        char sock[128];
        struct alloc_client *c;
        struct alloc_region g, p;

        setvbuf(stdout, NULL, _IOLBF, 0);
        cu = gpu_setup();
        size_t free_before = device_free();
        pid_t allocd = gpu_start_allocd(ALLOCD_PATH,
                                        "[pool mem]\nkind = pinned\nbackend = memfd\nsize = 64M\n"
                                        "[pool vmm]\nkind = pinned\nbackend = vmm\nsize = 64M\n"
                                        "[pool g]\nkind = gpu\ndevice = 0\nsize = 1G\n"
                                        "[pool none]\nkind = pinned\nbackend = memfd\nsize = 4M\nflags = none\n"
                                        "[pool port]\nkind = pinned\nbackend = memfd\nsize = 4M\nflags = portable\n"
                                        "[pool map]\nkind = pinned\nbackend = memfd\nsize = 4M\nflags = devicemap\n",
                                        sock, sizeof(sock));
        size_t free_running = device_free();
        check(free_before >= free_running + 1024 * MiB, "the gpu pool takes its 1 GiB on the device (%zu MiB)",
              free_before >= free_running ? (free_before - free_running) / MiB : 0);
        if (alloc_connect(&c, sock, "gpu-pools") < 0) {
                check(false, "connect: %s", alloc_last_error());
                return 1;
        }
        pools(c);
        own_context(sock);
        two_connections(sock);

        /* SIGTERM with regions mapped: allocd stops cleanly, and the regions keep working. */
        bool mapped =
                alloc_region_new(c, "g", 4 * MiB, NULL, &g) == 0 && alloc_region_new(c, "mem", MiB, NULL, &p) == 0;
        check(mapped, "regions mapped before the SIGTERM: %s", mapped ? "" : alloc_last_error());
        int status = gpu_stop_allocd(allocd, SIGTERM);
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "allocd stops cleanly on SIGTERM with clients mapped (%#x)", status);
        if (mapped)
                check(round_trip(&g, 0x11) && round_trip(&p, 0x22), "the regions work after allocd has gone");
        alloc_disconnect(c);
        size_t free_after = device_free();
        /* The driver's own allocations come and go; the pool's gigabyte must not stay. */
        check(free_after + 256 * MiB >= free_before,
              "device memory back once everyone is gone (%zu MiB before, %zu "
              "after)",
              free_before / MiB, free_after / MiB);
        printf("%s: %d failure%s\n", failures ? "FAIL" : "PASS", failures, failures == 1 ? "" : "s");
        return failures ? 1 : 0;
}
#endif
