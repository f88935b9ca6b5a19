/* SPDX-License-Identifier: MIT */
#ifndef BENCH_FALLOC_GPU_H
#define BENCH_FALLOC_GPU_H

#include <stddef.h>
#include <stdint.h>

/* falloc-bench's GPU part: every thread of a full-device grid, falloc against device malloc/free. */
struct falloc_gpu_result {
        char skipped[256]; /* why it was not measured; "" when it was */
        char device[128];
        uint64_t threads;
        double falloc_rate, malloc_rate; /* get+free (malloc+free) pairs per second */
        double floor_rate;               /* set+clear pairs of bits, nothing else (falloc-kernels.cu) */
};

void falloc_gpu_bench(size_t chunk, struct falloc_gpu_result *r);

#endif
