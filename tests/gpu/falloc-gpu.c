/* SPDX-License-Identifier: MIT */
/*
 * GPU test of falloc heaps: kernels of two processes take chunks from one heap
 * in a gpu pool of allocd at once.  Exits 77 without a GPU.
 *
 *   falloc-gpu                        the test: starts allocd and two workers
 *   falloc-gpu worker SOCKET ROLE     a worker (ROLE: create or attach);
 *                                     commands on stdin, one answer line each
 *
 * A creates the heap (64 MiB of 256-byte chunks) and an owner table (8 bytes a
 * chunk, zeroed) as named regions; B attaches both.  A alone, then both three
 * times at once: churn (every thread of 768 blocks of 256, three quarters of
 * the chunks: get+free pairs; one process alone sees no NULL).  Both then, at
 * once: drain (every thread of 1024 blocks of 256 takes chunks until NULL,
 * claiming each in the owner table: together they must get exactly the chunk
 * count and no chunk twice; exhaustion under contention), undrain (each frees
 * its own, checking its marks), contexts (every thread of 64 blocks of 256
 * pushes and pops 100 values on its own context, with marks).  After each
 * step every chunk must be free again (the bitmap says so) and no free
 * refused.  Last, A alone on a heap of two chunks of its own: half the
 * threads of 64 blocks take and give back its only run, checking that no
 * chunk reads free while they hold it, the other half free the run's second
 * chunk over and over (every such free must be refused).
 */
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloc/falloc-client.h>

#include "gpu-util.h"

#if !HAVE_CUDA || !defined(FALLOC_KERNELS_PATH)
int main(void) {
        printf("skipped: built without the CUDA toolkit (headers and nvcc)\n");
        return EXIT_SKIP;
}
#else

#define BLOCKS 1024u
#define THREADS (BLOCKS * 256u)

static const struct cuda *cu;
static CUfunction fn_pairs, fn_drain, fn_undrain, fn_contexts, fn_run_race;
static CUdeviceptr heap, owners, got, counter;
static uint64_t count;

/*
 * Churn runs threads for three quarters of the chunks: in one process at least a quarter of the chunks
 * is always free, about 8 in each bitmap word, so that a get's pass finding every word full (NULL, as
 * falloc-impl.h allows under churn) would take a scheduler that is against it word after word; a NULL
 * there is a bug.  Contexts take about 4 chunks a thread (100 values of 8 bytes in 256-byte chunks).
 */
#define CHURN_BLOCKS 768u
#define CONTEXT_BLOCKS 64u
#define RACE_BLOCKS 64u

static void run(CUfunction f, unsigned blocks, void **args) {
        gpu_check(cu->cuMemsetD8(counter, 0, 8), "cuMemsetD8");
        gpu_check(cu->cuLaunchKernel(f, blocks, 1, 1, 256, 1, 1, 0, NULL, args, NULL), "cuLaunchKernel");
        gpu_check(cu->cuCtxSynchronize(), "cuCtxSynchronize");
}

static unsigned long long read_u64(CUdeviceptr p) {
        unsigned long long v;
        gpu_check(cu->cuMemcpyDtoH(&v, p, 8), "cuMemcpyDtoH");
        return v;
}

static void command(const char *line, unsigned long long tag) {
        uint64_t iters = 16;
        unsigned n = 100;
        if (!strcmp(line, "churn\n")) {
                run(fn_pairs, CHURN_BLOCKS, (void *[]){&heap, &iters, &counter});
                printf("ok nulls %llu\n", read_u64(counter));
        } else if (!strncmp(line, "drain", 5)) {
                run(fn_drain, BLOCKS, (void *[]){&heap, &tag, &owners, &got, &counter});
                static unsigned long long per[THREADS];
                unsigned long long total = 0;
                gpu_check(cu->cuMemcpyDtoH(per, got, sizeof(per)), "cuMemcpyDtoH");
                for (unsigned i = 0; i < THREADS; i++)
                        total += per[i];
                printf("ok got %llu twice %llu\n", total, read_u64(counter));
        } else if (!strncmp(line, "undrain", 7)) {
                run(fn_undrain, BLOCKS, (void *[]){&heap, &tag, &owners, &counter});
                printf("ok bad %llu\n", read_u64(counter));
        } else if (!strncmp(line, "contexts", 8)) {
                run(fn_contexts, CONTEXT_BLOCKS, (void *[]){&heap, &n, &counter});
                printf("ok bad %llu\n", read_u64(counter));
        } else if (!strncmp(line, "runrace", 7)) {
                /* A heap of its own, of two chunks, in this process's device memory. */
                uint64_t size = falloc_heap_size(256, 2), race_iters = 200;
                CUdeviceptr small = gpu_falloc_heap(size, 256), frees;
                gpu_check(cu->cuMemAlloc(&frees, 8), "cuMemAlloc");
                gpu_check(cu->cuMemsetD8(frees, 0, 8), "cuMemsetD8");
                run(fn_run_race, RACE_BLOCKS, (void *[]){&small, &race_iters, &counter, &frees});
                printf("ok seen %llu bad %llu frees %llu\n", read_u64(counter),
                       read_u64(small + offsetof(fallocDeviceHeap, bad_frees)), read_u64(frees));
                cu->cuMemFree(small);
                cu->cuMemFree(frees);
        } else if (!strncmp(line, "free", 4)) {
                /* The chunks the bitmap says are free (a copy of the header and bitmap), and the refused frees. */
                uint64_t meta = read_u64(heap + offsetof(fallocDeviceHeap, chunks_offset));
                fallocDeviceHeap *copy = malloc(meta);
                gpu_check(cu->cuMemcpyDtoH(copy, heap, meta), "cuMemcpyDtoH");
                uint64_t zeros = falloc_heap_available(copy);
                free(copy);
                printf("ok free %llu count %llu bad %llu\n", (unsigned long long)zeros, (unsigned long long)count,
                       read_u64(heap + offsetof(fallocDeviceHeap, bad_frees)));
        } else {
                printf("error: unknown command %s", line);
        }
}

static int worker(const char *sock, const char *role) {
        struct alloc_client *c;
        struct alloc_region r, o;
        struct alloc_opts ho = {.name = "falloc/heap"}, oo = {.name = "falloc/owners", .flags = ALLOC_ZERO};
        fallocDeviceHeap *h;
        char line[128];
        bool create = !strcmp(role, "create");

        setvbuf(stdout, NULL, _IOLBF, 0);
        cu = gpu_setup();
        CUmodule mod = gpu_load_module(GPU_PATH(FALLOC_KERNELS_PATH));
        gpu_check(cu->cuModuleGetFunction(&fn_pairs, mod, "falloc_pairs"), "falloc_pairs");
        gpu_check(cu->cuModuleGetFunction(&fn_drain, mod, "falloc_drain"), "falloc_drain");
        gpu_check(cu->cuModuleGetFunction(&fn_undrain, mod, "falloc_undrain"), "falloc_undrain");
        gpu_check(cu->cuModuleGetFunction(&fn_contexts, mod, "falloc_contexts"), "falloc_contexts");
        gpu_check(cu->cuModuleGetFunction(&fn_run_race, mod, "falloc_run_race"), "falloc_run_race");
        int e = alloc_connect(&c, sock, role);
        if (e == 0)
                e = create ? alloc_falloc_new(c, "g", 64u << 20, 256, &ho, &r, &h)
                           : alloc_falloc_attach(c, "falloc/heap", &(struct alloc_attach_opts){.timeout_ms = 10000}, &r,
                                                 &h);
        if (e == 0) {
                heap = (CUdeviceptr)(uintptr_t)h;
                count = read_u64(heap + offsetof(fallocDeviceHeap, chunk_count));
                e = create ? alloc_region_new(c, "g", count * 8, &oo, &o)
                           : alloc_region_attach(c, "falloc/owners", &(struct alloc_attach_opts){.timeout_ms = 10000},
                                                 &o);
        }
        if (e < 0) {
                printf("error: %s\n", alloc_last_error());
                return 1;
        }
        owners = o.dev_ptr;
        gpu_check(cu->cuMemAlloc(&got, THREADS * 8ull), "cuMemAlloc");
        gpu_check(cu->cuMemAlloc(&counter, 8), "cuMemAlloc");
        printf("ok heap at %#llx in this process\n", (unsigned long long)heap);
        while (fgets(line, sizeof(line), stdin) && strncmp(line, "quit", 4))
                command(line, create ? 1 : 2);
        alloc_disconnect(c);
        return 0;
}

static int failures;

/* Sends cmd to both workers (their kernels run at once), then reads both answers into a and b. */
static void both(struct gpu_proc *p, const char *cmd, char a[128], char b[128]) {
        char *ans[2] = {a, b};
        for (int i = 0; i < 2; i++)
                fprintf(p[i].in, "%s\n", cmd);
        for (int i = 0; i < 2; i++) {
                if (!fgets(ans[i], 128, p[i].out))
                        snprintf(ans[i], 128, "error: the worker died\n");
                printf("%s %-9s %s", p[i].name, cmd, ans[i]);
                failures += strncmp(ans[i], "ok", 2) != 0;
        }
}

static void expect(bool ok, const char *what) {
        printf("%-4s %s\n", ok ? "ok" : "FAIL", what);
        failures += !ok;
}

static void all_back(struct gpu_proc *p) {
        char a[128], b[128];
        unsigned long long nfree = 0, n = 1, bad = 1;
        both(p, "free", a, b);
        sscanf(a, "ok free %llu count %llu bad %llu", &nfree, &n, &bad);
        expect(nfree == n && bad == 0, "every chunk is back in the heap");
}

int main(int argc, char **argv) {
        char sock[128], a[128], b[128];
        unsigned long long ga = 0, gb = 0, ta = 1, tb = 1, n = 0, x;

        if (argc == 4 && !strcmp(argv[1], "worker"))
                return worker(argv[2], argv[3]);
        setvbuf(stdout, NULL, _IOLBF, 0);
        gpu_setup();
        pid_t allocd =
                gpu_start_allocd(ALLOCD_PATH, "[pool g]\nkind = gpu\ndevice = 0\nsize = 256M\n", sock, sizeof(sock));
        struct gpu_proc p[2];
        p[0] = gpu_spawn(argv[0], "A", (char *const[]){argv[0], "worker", sock, "create", NULL});
        if (!fgets(a, sizeof(a), p[0].out) || strncmp(a, "ok", 2))
                expect(false, "A creates the heap");
        p[1] = gpu_spawn(argv[0], "B", (char *const[]){argv[0], "worker", sock, "attach", NULL});
        if (!fgets(b, sizeof(b), p[1].out) || strncmp(b, "ok", 2))
                expect(false, "B attaches the heap");
        printf("A %sB %s", a, b);
        all_back(p);
        /* One process, then both at once, three times (version 1 lost a reservation with each NULL here). */
        gpu_ask(&p[0], "churn", a, 128);
        printf("A churn alone %s\n", a);
        expect(!strcmp(a, "ok nulls 0"), "one process: no NULL from a heap a quarter free");
        all_back(p);
        for (int i = 0; i < 3; i++) {
                both(p, "churn", a, b);
                all_back(p);
        }
        both(p, "drain", a, b);
        sscanf(a, "ok got %llu twice %llu", &ga, &ta);
        sscanf(b, "ok got %llu twice %llu", &gb, &tb);
        both(p, "free", a, b);
        sscanf(a, "ok free %llu count %llu", &x, &n);
        expect(ga + gb == n, "the two processes' kernels drained exactly the chunk count together");
        expect(ta == 0 && tb == 0, "no chunk was handed out twice");
        expect(x == 0, "an exhausted heap: no chunk free");
        both(p, "undrain", a, b);
        expect(!strcmp(a, "ok bad 0\n") && !strcmp(b, "ok bad 0\n"), "every chunk kept its holder's mark");
        all_back(p);
        both(p, "contexts", a, b);
        expect(!strcmp(a, "ok bad 0\n") && !strcmp(b, "ok bad 0\n"), "contexts push, pop and mark in kernels");
        all_back(p);
        unsigned long long seen = 1, bad = 0, frees = 1;
        gpu_ask(&p[0], "runrace", a, 128);
        printf("A runrace %s\n", a);
        sscanf(a, "ok seen %llu bad %llu frees %llu", &seen, &bad, &frees);
        expect(seen == 0 && bad == frees, "in kernels too, a free inside a held run is refused whatever it races with");
        for (int i = 0; i < 2; i++) {
                fprintf(p[i].in, "quit\n");
                waitpid(p[i].pid, NULL, 0);
        }
        kill(allocd, SIGTERM);
        waitpid(allocd, NULL, 0);
        printf("falloc-gpu: %d failures\n", failures);
        return failures ? 1 : 0;
}
#endif
