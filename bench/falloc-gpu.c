/* SPDX-License-Identifier: MIT */
/*
 * falloc-bench's GPU part.  Every thread of a grid that fills the device (its
 * SMs times the threads an SM holds, in blocks of 256) runs ITERS pairs; the
 * heap has two chunks a thread and device malloc's heap is raised to match,
 * so neither runs dry.  Beside them the floor of a bitmap heap: the same
 * threads setting and clearing a bit of as many words as the heap has.  One
 * warm-up launch each, then the median of 5 timed launches of each,
 * interleaved.  The kernels: tests/gpu/falloc-kernels.cu.
 */
#include "falloc-gpu.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench-util.h"
#include "gpu-util.h"

#include <alloc/falloc.h>

#if HAVE_CUDA && defined(FALLOC_KERNELS_PATH)
#define ITERS 64

static double launch(const struct cuda *cu, CUfunction fn, unsigned blocks, void **args) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        gpu_check(cu->cuLaunchKernel(fn, blocks, 1, 1, 256, 1, 1, 0, NULL, args, NULL), "cuLaunchKernel");
        gpu_check(cu->cuCtxSynchronize(), "cuCtxSynchronize");
        clock_gettime(CLOCK_MONOTONIC, &b);
        return (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
}

void falloc_gpu_bench(size_t chunk, struct falloc_gpu_result *r) {
        const char *why;
        const struct cuda *cu;
        memset(r, 0, sizeof(*r));
        /* Only a machine without a GPU skips the GPU part; gpu_setup fails the benchmark on a broken one. */
        if (cuda_load(&cu, &why) == -ENODEV) {
                snprintf(r->skipped, sizeof(r->skipped), "%s", why);
                return;
        }
        cu = gpu_setup();
        CUdevice dev;
        int sms, per_sm;
        gpu_check(cu->cuDeviceGet(&dev, 0), "cuDeviceGet");
        gpu_check(cu->cuDeviceGetName(r->device, sizeof(r->device), dev), "cuDeviceGetName");
        gpu_check(cu->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev), "SM count");
        gpu_check(cu->cuDeviceGetAttribute(&per_sm, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, dev),
                  "threads per SM");
        unsigned blocks = (unsigned)(sms * (per_sm / 256));
        r->threads = (uint64_t)blocks * 256;

        CUmodule mod = gpu_load_module(GPU_PATH(FALLOC_KERNELS_PATH));
        CUfunction ff, mf, af;
        gpu_check(cu->cuModuleGetFunction(&ff, mod, "falloc_pairs"), "falloc_pairs");
        gpu_check(cu->cuModuleGetFunction(&mf, mod, "malloc_pairs"), "malloc_pairs");
        gpu_check(cu->cuModuleGetFunction(&af, mod, "atomic_floor"), "atomic_floor");
        uint64_t heap_bytes = falloc_heap_size(chunk, 2 * r->threads), iters = ITERS;
        gpu_check(cu->cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, heap_bytes + (64u << 20)), "cuCtxSetLimit");
        CUdeviceptr heap = gpu_falloc_heap(heap_bytes, chunk), nulls, words;
        uint64_t nwords = (2 * r->threads + 31) / 32; /* the heap's: a word for each 32 chunks */
        gpu_check(cu->cuMemAlloc(&nulls, 8), "cuMemAlloc");
        gpu_check(cu->cuMemsetD8(nulls, 0, 8), "cuMemsetD8");
        gpu_check(cu->cuMemAlloc(&words, nwords * 8), "cuMemAlloc");
        gpu_check(cu->cuMemsetD8(words, 0, nwords * 8), "cuMemsetD8");
        void *fargs[] = {&heap, &iters, &nulls}, *margs[] = {&chunk, &iters, &nulls},
             *aargs[] = {&words, &nwords, &iters};
        double ft[TRIALS], mt[TRIALS], at[TRIALS];
        launch(cu, ff, blocks, fargs);
        launch(cu, mf, blocks, margs);
        launch(cu, af, blocks, aargs);
        for (int k = 0; k < TRIALS; k++) {
                ft[k] = r->threads * (double)ITERS / launch(cu, ff, blocks, fargs);
                mt[k] = r->threads * (double)ITERS / launch(cu, mf, blocks, margs);
                at[k] = r->threads * (double)ITERS / launch(cu, af, blocks, aargs);
        }
        unsigned long long n = 0;
        gpu_check(cu->cuMemcpyDtoH(&n, nulls, 8), "cuMemcpyDtoH");
        if (n)
                fprintf(stderr, "falloc-bench: %llu NULLs on the GPU (the heaps were sized not to run dry)\n", n);
        r->falloc_rate = median(ft, TRIALS);
        r->malloc_rate = median(mt, TRIALS);
        r->floor_rate = median(at, TRIALS);
        cu->cuMemFree(heap);
        cu->cuMemFree(words);
        cu->cuMemFree(nulls);
        cu->cuModuleUnload(mod);
}
#else
void falloc_gpu_bench(size_t chunk, struct falloc_gpu_result *r) {
        (void)chunk;
        memset(r, 0, sizeof(*r));
        snprintf(r->skipped, sizeof(r->skipped), "built without the CUDA toolkit (headers and nvcc)");
}
#endif
