/* SPDX-License-Identifier: MIT */
/*
 * GPU test: two processes share pinned and gpu regions through allocd and
 * keep using them after allocd is killed (docs/ARCHITECTURE.md, "CUDA").  Exits 77 without a
 * GPU.
 *
 *   gpu-share                 the test: starts allocd and two workers
 *   gpu-share worker SOCKET   a worker: one liballoc-client connection,
 *                             commands on stdin, one answer line each
 *
 * Process A allocates each region and writes it with a kernel through its
 * device pointer; process B attaches and reads it on the host (pinned) and
 * with another kernel (pinned and gpu).  Then allocd is killed with SIGKILL
 * and both go on writing and reading the same memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloc/client.h>

#include "gpu-util.h"

#if !HAVE_CUDA || !defined(KERNELS_PATH)
int main(void) {
        printf("skipped: built without the CUDA toolkit (headers and nvcc)\n");
        return EXIT_SKIP;
}
#else

#define MAX_REGIONS 8

struct worker_state {
        const struct cuda *cu;
        CUfunction fill, check;
        struct alloc_client *c;
        char names[MAX_REGIONS][64];
        struct alloc_region regions[MAX_REGIONS];
        int n;
};

static struct alloc_region *lookup(struct worker_state *w, const char *name) {
        for (int i = 0; i < w->n; i++)
                if (!strcmp(w->names[i], name))
                        return &w->regions[i];
        return NULL;
}

static void load_kernels(struct worker_state *w) {
        const char *path = GPU_PATH(KERNELS_PATH);
        FILE *f = fopen(path, "rb");
        static char image[1 << 20];
        CUmodule mod;

        if (!f || fread(image, 1, sizeof(image), f) == 0) {
                fprintf(stderr, "cannot read %s\n", path);
                exit(1);
        }
        fclose(f);
        gpu_check(w->cu->cuModuleLoadData(&mod, image), "cuModuleLoadData");
        gpu_check(w->cu->cuModuleGetFunction(&w->fill, mod, "fill"), "cuModuleGetFunction fill");
        gpu_check(w->cu->cuModuleGetFunction(&w->check, mod, "check"), "cuModuleGetFunction check");
}

/* Runs fill or check over r through its device pointer; returns the mismatches (check) or 0. */
static unsigned long long launch(struct worker_state *w, const struct alloc_region *r, bool fill, uint32_t seed) {
        CUdeviceptr p = r->dev_ptr, bad = 0;
        uint64_t n = r->size / 4;
        unsigned long long nbad = 0;

        if (!fill) {
                gpu_check(w->cu->cuMemAlloc(&bad, sizeof(nbad)), "cuMemAlloc");
                gpu_check(w->cu->cuMemsetD8(bad, 0, sizeof(nbad)), "cuMemsetD8");
        }
        void *fill_args[] = {&p, &n, &seed}, *check_args[] = {&p, &n, &seed, &bad};
        gpu_check(w->cu->cuLaunchKernel(fill ? w->fill : w->check, 264, 1, 1, 256, 1, 1, 0, NULL,
                                        fill ? fill_args : check_args, NULL),
                  "cuLaunchKernel");
        gpu_check(w->cu->cuCtxSynchronize(), "cuCtxSynchronize");
        if (!fill) {
                gpu_check(w->cu->cuMemcpyDtoH(&nbad, bad, sizeof(nbad)), "cuMemcpyDtoH");
                w->cu->cuMemFree(bad);
        }
        return nbad;
}

static void command(struct worker_state *w, char *line) {
        char op[16], a[64], b[64], size[32];
        int n = sscanf(line, "%15s %63s %63s %31s", op, a, b, size);
        struct alloc_region *r = n >= 2 ? lookup(w, !strcmp(op, "alloc") ? b : a) : NULL;
        uint32_t seed = n >= 3 ? (uint32_t)strtoul(b, NULL, 0) : 0;
        unsigned long long bad = 0;

        if (n == 4 && !strcmp(op, "alloc") && w->n < MAX_REGIONS) {
                struct alloc_opts o = {.name = b};
                r = &w->regions[w->n];
                if (alloc_region_new(w->c, a, strtoull(size, NULL, 0), &o, r) < 0) {
                        printf("error alloc: %s\n", alloc_last_error());
                        return;
                }
                snprintf(w->names[w->n++], sizeof(w->names[0]), "%s", b);
        } else if (n == 2 && !strcmp(op, "attach") && w->n < MAX_REGIONS) {
                r = &w->regions[w->n];
                if (alloc_region_attach(w->c, a, NULL, r) < 0) {
                        printf("error attach: %s\n", alloc_last_error());
                        return;
                }
                snprintf(w->names[w->n++], sizeof(w->names[0]), "%s", a);
        } else if (n == 3 && r && (!strcmp(op, "fill") || !strcmp(op, "check"))) {
                if (!r->dev_ptr) {
                        printf("error %s has no device pointer\n", a);
                        return;
                }
                bad = launch(w, r, !strcmp(op, "fill"), seed);
        } else if (n == 3 && r && (!strcmp(op, "fill-host") || !strcmp(op, "check-host"))) {
                uint32_t *p = r->ptr;
                if (!p) {
                        printf("error %s has no host pointer\n", a);
                        return;
                }
                for (uint64_t i = 0; i < r->size / 4; i++) {
                        if (op[0] == 'f')
                                p[i] = gpu_pattern(seed, i);
                        else
                                bad += p[i] != gpu_pattern(seed, i);
                }
        } else {
                printf("error bad command: %s", line);
                return;
        }
        if (bad)
                printf("error %llu of %" PRIu64 " words differ\n", bad, r->size / 4);
        else
                printf("ok dev_ptr=%#" PRIx64 " device=%d registered=%d\n", r ? r->dev_ptr : 0, r ? r->device : -1,
                       r ? r->registered : 0);
}

static int worker(const char *sock) {
        struct worker_state w = {0};
        char line[256];

        setvbuf(stdout, NULL, _IOLBF, 0);
        w.cu = gpu_setup();
        load_kernels(&w);
        if (alloc_connect(&w.c, sock, "gpu-share") < 0) {
                printf("error connect: %s\n", alloc_last_error());
                return 1;
        }
        while (fgets(line, sizeof(line), stdin) && strncmp(line, "quit", 4))
                command(&w, line);
        /* allocd may be gone: the regions go with the process either way. */
        alloc_disconnect(w.c);
        return 0;
}

static int failures;

/* Sends one command and prints the answer; counts an answer other than "ok". */
static void say(struct gpu_proc *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct gpu_proc *p, const char *fmt, ...) {
        char cmd[256], answer[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        gpu_ask(p, cmd, answer, sizeof(answer));
        bool ok = !strncmp(answer, "ok", 2);
        failures += !ok;
        printf("%-4s %s %-36s %s\n", ok ? "ok" : "FAIL", p->name, cmd, answer);
}

/*
 * With a GPU, a gpu pool on a device allocd does not see is listed as not available, saying how many
 * there are, and the other pools serve (a GPU that fails must not take the rest down).
 */
static void lists_a_device_it_does_not_have(int ndevices) {
        char conf[128], sock[128], why[300] = "";
        struct alloc_client *c = NULL;
        struct alloc_status *s = NULL;
        struct alloc_region r;
        int e;

        snprintf(conf, sizeof(conf),
                 "[pool h]\nkind = host\nsize = 1M\n[pool g]\nkind = gpu\ndevice = %d\nsize = 64M\n", ndevices);
        pid_t allocd = gpu_start_allocd(ALLOCD_PATH, conf, sock, sizeof(sock));
        bool ok = (e = alloc_connect(&c, sock, "gpu-share")) == 0 &&
                  (e = alloc_region_new(c, "h", 4096, NULL, &r)) == 0 && (e = alloc_status(c, &s)) == 0 &&
                  s->nunavailable == 1 && !strcmp(s->unavailable[0].name, "g") &&
                  strstr(s->unavailable[0].reason, "CUDA device");
        if (s && s->nunavailable)
                snprintf(why, sizeof(why), "%s", s->unavailable[0].reason);
        else if (e < 0)
                snprintf(why, sizeof(why), "%s", alloc_last_error());
        alloc_status_free(s);
        alloc_disconnect(c);
        gpu_stop_allocd(allocd, SIGTERM);
        failures += !ok;
        printf("%-4s allocd with device = %d: pool g not available: %s\n", ok ? "ok" : "FAIL", ndevices, why);
}

int main(int argc, char **argv) {
        static const char *const pools[] = {"pin", "auto", "g"};
        char sock[128], name[8][32];

        if (argc == 3 && !strcmp(argv[1], "worker"))
                return worker(argv[2]);
        setvbuf(stdout, NULL, _IOLBF, 0);
        const struct cuda *cu = gpu_setup();
        gpu_print_device();
        pid_t allocd = gpu_start_allocd(ALLOCD_PATH,
                                        "[pool pin]\nkind = pinned\nbackend = memfd\nsize = 64M\n"
                                        "flags = portable, devicemap\n"
                                        "[pool auto]\nkind = pinned\nsize = 64M\n"
                                        "[pool g]\nkind = gpu\ndevice = 0\nsize = 256M\n",
                                        sock, sizeof(sock));
        struct gpu_proc a = gpu_spawn(argv[0], "A", (char *const[]){argv[0], "worker", sock, NULL}),
                        b = gpu_spawn(argv[0], "B", (char *const[]){argv[0], "worker", sock, NULL});

        for (int i = 0; i < 3; i++) {
                snprintf(name[i], sizeof(name[i]), "%s/buf", pools[i]);
                say(&a, "alloc %s %s %d", pools[i], name[i], 16 << 20);
                say(&a, "fill %s %d", name[i], 1 + i);
                say(&b, "attach %s", name[i]);
                say(&b, "check %s %d", name[i], 1 + i);
                if (i < 2)
                        say(&b, "check-host %s %d", name[i], 1 + i);
        }
        printf("killing allocd (pid %d) with SIGKILL\n", (int)allocd);
        gpu_stop_allocd(allocd, SIGKILL);
        for (int i = 0; i < 3; i++) {
                say(&a, "fill %s %d", name[i], 10 + i);
                say(&b, "check %s %d", name[i], 10 + i);
                if (i < 2) {
                        say(&b, "check-host %s %d", name[i], 10 + i);
                        say(&b, "fill-host %s %d", name[i], 20 + i);
                        say(&a, "check %s %d", name[i], 20 + i);
                }
        }
        fprintf(a.in, "quit\n");
        fprintf(b.in, "quit\n");
        int sa, sb;
        waitpid(a.pid, &sa, 0);
        waitpid(b.pid, &sb, 0);
        failures += !(WIFEXITED(sa) && WEXITSTATUS(sa) == 0) + !(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
        lists_a_device_it_does_not_have(cu->ndevices);
        printf("%s: %d failure%s\n", failures ? "FAIL" : "PASS", failures, failures == 1 ? "" : "s");
        return failures ? 1 : 0;
}
#endif
