// SPDX-License-Identifier: MIT
// Kernels for the GPU tests, built by nvcc into a fatbin that the tests load
// with cuModuleLoadData through the driver loader (no CUDA runtime linked).
#include <stdint.h>

__device__ static uint32_t pattern(uint32_t seed, uint64_t i) {
        return seed * 2654435761u ^ (uint32_t)i ^ (uint32_t)(i >> 32);
}

extern "C" __global__ void fill(uint32_t *p, uint64_t n, uint32_t seed) {
        for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
                p[i] = pattern(seed, i);
}

extern "C" __global__ void check(const uint32_t *p, uint64_t n, uint32_t seed, unsigned long long *bad) {
        for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
                if (p[i] != pattern(seed, i))
                        atomicAdd(bad, 1ull);
}
