/* SPDX-License-Identifier: MIT */
/*
 * gpu-restart's client process (gpu-restart.c says what the test does with it): one liballoc-client
 * connection, a command a line on stdin (alloc, fill, check, spin, free, ...), one answer line each.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <alloc/client.h>

#include "gpu-util.h"

#if HAVE_CUDA && defined(KERNELS_PATH)

#include "gpu-restart.h"

#define MAX_REGIONS 32

struct wregion {
        char name[64];
        struct alloc_region r;
};

struct worker {
        const struct cuda *cu;
        CUfunction fill, check;
        struct alloc_client *c;
        struct wregion reg[MAX_REGIONS];
        int n;
        pthread_t spinner;
        bool spinning;
        atomic_bool stop;
        atomic_ullong rounds, bad;
        CUdeviceptr busy[MAX_REGIONS];
        uint64_t busy_size[MAX_REGIONS];
        int nbusy;
};

static struct wregion *lookup(struct worker *w, const char *name) {
        for (int i = 0; i < w->n; i++)
                if (!strcmp(w->reg[i].name, name))
                        return &w->reg[i];
        return NULL;
}

/* fill or check size bytes at p with seed's pattern; the mismatches (check, counted in bad) or 0. */
static unsigned long long launch(struct worker *w, CUdeviceptr p, uint64_t size, bool fill, uint32_t seed,
                                 CUdeviceptr bad) {
        uint64_t n = size / 4;
        unsigned long long nbad = 0;
        void *fill_args[] = {&p, &n, &seed}, *check_args[] = {&p, &n, &seed, &bad};

        if (!fill)
                gpu_check(w->cu->cuMemsetD8(bad, 0, sizeof(nbad)), "cuMemsetD8");
        gpu_check(w->cu->cuLaunchKernel(fill ? w->fill : w->check, 264, 1, 1, 256, 1, 1, 0, NULL,
                                        fill ? fill_args : check_args, NULL),
                  "cuLaunchKernel");
        gpu_check(w->cu->cuCtxSynchronize(), "cuCtxSynchronize");
        if (!fill)
                gpu_check(w->cu->cuMemcpyDtoH(&nbad, bad, sizeof(nbad)), "cuMemcpyDtoH");
        return nbad;
}

/* The busy regions, written and read by kernels, round after round, until told to stop. */
static void *spin(void *arg) {
        struct worker *w = arg;
        CUdevice dev;
        CUcontext ctx;
        CUdeviceptr bad;

        gpu_check(w->cu->cuDeviceGet(&dev, 0), "cuDeviceGet");
        gpu_check(w->cu->cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
        gpu_check(w->cu->cuCtxPushCurrent(ctx), "cuCtxPushCurrent");
        gpu_check(w->cu->cuMemAlloc(&bad, sizeof(unsigned long long)), "cuMemAlloc");
        for (uint32_t round = 0; !atomic_load(&w->stop); round++) {
                for (int i = 0; i < w->nbusy; i++) {
                        launch(w, w->busy[i], w->busy_size[i], true, 1000 + round, bad);
                        atomic_fetch_add(&w->bad, launch(w, w->busy[i], w->busy_size[i], false, 1000 + round, bad));
                }
                atomic_fetch_add(&w->rounds, 1);
        }
        w->cu->cuMemFree(bad);
        return NULL;
}

/* Every region of the table is in allocd's dump as it was handed out, held by this process. */
static bool held(struct worker *w, char *why, size_t whysize) {
        struct alloc_dump *d = NULL;
        struct alloc_status *st = NULL;
        int found = 0;

        if (alloc_dump(w->c, NULL, &d) < 0 || alloc_status(w->c, &st) < 0) {
                snprintf(why, whysize, "dump/status: %s", alloc_last_error());
                alloc_dump_free(d);
                return false;
        }
        for (int i = 0; i < w->n; i++) {
                const struct wregion *x = &w->reg[i];
                for (size_t j = 0; j < d->nregions; j++) {
                        const struct alloc_region_info *y = &d->regions[j];
                        bool mine = y->nholders == 1 && y->holders[0].pid == getpid();
                        if (y->id == x->r.id && !strcmp(y->pool, x->r.pool) && y->addr == x->r.addr &&
                            y->size == x->r.size && !strcmp(y->name, x->name) && mine)
                                found++;
                }
        }
        uint64_t refs = UINT64_MAX;
        for (size_t i = 0; i < st->nclients; i++)
                if (st->clients[i].pid == getpid())
                        refs = st->clients[i].regions;
        snprintf(why, whysize, "%d of %d regions as they were, %" PRIu64 " references on this pid's connection", found,
                 w->n, refs);
        alloc_dump_free(d);
        alloc_status_free(st);
        return found == w->n && refs == (uint64_t)w->n;
}

static void command(struct worker *w, char *line) {
        char op[16], a[64], b[64], extra[32] = "", zero[8] = "";
        int n = sscanf(line, "%15s %63s %63s %31s %7s", op, a, b, extra, zero);
        struct wregion *x = n >= 2 ? lookup(w, a) : NULL;
        uint32_t seed = n >= 3 ? (uint32_t)strtoul(b, NULL, 0) : 0;
        unsigned long long bad = 0;
        char why[256];
        static CUdeviceptr badbuf;

        if (!badbuf)
                gpu_check(w->cu->cuMemAlloc(&badbuf, sizeof(bad)), "cuMemAlloc");
        if (n >= 4 && !strcmp(op, "alloc") && w->n < MAX_REGIONS) {
                /* alloc NAME POOL SIZE [zero] */
                struct alloc_opts o = {.name = a, .flags = !strcmp(zero, "zero") ? ALLOC_ZERO : 0};
                x = &w->reg[w->n];
                if (alloc_region_new(w->c, b, strtoull(extra, NULL, 0), &o, &x->r) < 0) {
                        printf("error alloc: %s\n", alloc_last_error());
                        return;
                }
                snprintf(x->name, sizeof(x->name), "%s", a);
                w->n++;
        } else if (n == 2 && !strcmp(op, "attach") && w->n < MAX_REGIONS) {
                x = &w->reg[w->n];
                if (alloc_region_attach(w->c, a, NULL, &x->r) < 0) {
                        printf("error attach: %s\n", alloc_last_error());
                        return;
                }
                snprintf(x->name, sizeof(x->name), "%s", a);
                w->n++;
        } else if (n == 2 && x && !strcmp(op, "free")) {
                if (alloc_region_free(w->c, x->r.id) < 0) {
                        printf("error free: %s\n", alloc_last_error());
                        return;
                }
                *x = w->reg[--w->n];
                x = NULL;
        } else if (n == 3 && x && (!strcmp(op, "fill") || !strcmp(op, "check"))) {
                bad = launch(w, x->r.dev_ptr, x->r.size, op[0] == 'f', seed, badbuf);
        } else if (n == 3 && x && x->r.ptr && (!strcmp(op, "fill-host") || !strcmp(op, "check-host"))) {
                uint32_t *p = x->r.ptr;
                for (uint64_t i = 0; i < x->r.size / 4; i++) {
                        if (op[0] == 'f')
                                p[i] = gpu_pattern(seed, i);
                        else
                                bad += p[i] != gpu_pattern(seed, i);
                }
        } else if (n == 2 && x && !strcmp(op, "zeros")) {
                /* Read through the device pointer, whatever the pool: what a kernel would see. */
                uint32_t *h = malloc(x->r.size);
                if (!h)
                        exit(1);
                gpu_check(w->cu->cuMemcpyDtoH(h, x->r.dev_ptr, x->r.size), "cuMemcpyDtoH");
                for (uint64_t i = 0; i < x->r.size / 4; i++)
                        bad += h[i] != 0;
                free(h);
        } else if (n == 1 && !strcmp(op, "held")) {
                bool ok = held(w, why, sizeof(why));
                printf("%s %s\n", ok ? "ok" : "error", why);
                return;
        } else if (n == 1 && !strcmp(op, "spin") && !w->spinning) {
                w->nbusy = 0;
                for (int i = 0; i < w->n; i++)
                        if (strstr(w->reg[i].name, "/busy")) {
                                w->busy[w->nbusy] = w->reg[i].r.dev_ptr;
                                w->busy_size[w->nbusy++] = w->reg[i].r.size;
                        }
                atomic_store(&w->stop, false);
                w->spinning = pthread_create(&w->spinner, NULL, spin, w) == 0;
                printf("%s %d busy regions\n", w->spinning ? "ok" : "error", w->nbusy);
                return;
        } else if (n == 1 && (!strcmp(op, "rounds") || !strcmp(op, "stop")) && w->spinning) {
                if (op[1] == 't') {
                        atomic_store(&w->stop, true);
                        pthread_join(w->spinner, NULL);
                        w->spinning = false;
                }
                bad = atomic_load(&w->bad);
                printf("%s %llu rounds, %llu words differed\n", bad ? "error" : "ok", atomic_load(&w->rounds), bad);
                return;
        } else {
                printf("error bad command: %s", line);
                return;
        }
        if (bad)
                printf("error %llu of %" PRIu64 " words differ\n", bad, x->r.size / 4);
        else if (x)
                printf("ok id=%" PRIu64 " offset=%#" PRIx64 " dev_ptr=%#" PRIx64 "\n", x->r.id, x->r.addr,
                       x->r.dev_ptr);
        else
                printf("ok\n");
}

int gpu_restart_worker(const char *sock) {
        struct worker w = {0};
        char line[256];

        setvbuf(stdout, NULL, _IOLBF, 0);
        w.cu = gpu_setup();
        CUmodule mod = gpu_load_module(GPU_PATH(KERNELS_PATH));
        gpu_check(w.cu->cuModuleGetFunction(&w.fill, mod, "fill"), "cuModuleGetFunction fill");
        gpu_check(w.cu->cuModuleGetFunction(&w.check, mod, "check"), "cuModuleGetFunction check");
        if (alloc_connect(&w.c, sock, "gpu-restart") < 0) {
                printf("error connect: %s\n", alloc_last_error());
                return 1;
        }
        while (fgets(line, sizeof(line), stdin) && strncmp(line, "quit", 4))
                command(&w, line);
        if (w.spinning) {
                atomic_store(&w.stop, true);
                pthread_join(w.spinner, NULL);
        }
        alloc_disconnect(w.c);
        return 0;
}

#endif
