/* SPDX-License-Identifier: MIT */
/*
 * The seed's host API on the CUDA runtime (nvcc only; falloc.h includes it): a
 * heap in cudaMalloc memory, for one process.  A heap that several processes
 * share is a region of an allocd pool: alloc_falloc_new and alloc_falloc_attach
 * (<alloc/falloc-client.h>, falloc(3)).
 */
#ifndef ALLOC_FALLOC_CUDA_H
#define ALLOC_FALLOC_CUDA_H

#ifndef ALLOC_FALLOC_H
#error "include <alloc/falloc.h>, not falloc-cuda.h"
#endif

#include <cuda_runtime.h>
#include <stdlib.h>

typedef struct cudaDeviceFallocHeap {
        fallocDeviceHeap *deviceHeap; /* device memory: pass it to kernels */
        size_t length;                /* bytes of the heap */
        size_t chunkSize;             /* as asked for, rounded up to 16 */
        size_t chunkCount;
        void *reserved;
} cudaDeviceFallocHeap;

/*
 * Call this to initialize a falloc heap of length bytes (the header and bitmap included) in the
 * current device's memory; *error (if given) says why deviceHeap is NULL.  Only the header and the
 * bitmap are copied to the device (a quarter of a byte a chunk), so a large heap is made at the
 * speed of cudaMalloc.
 */
static __host__ inline cudaDeviceFallocHeap cudaDeviceFallocHeapCreate(size_t chunkSize = FALLOC_DEFAULT_CHUNK,
                                                                       size_t length = FALLOC_DEFAULT_LENGTH,
                                                                       cudaError_t *error = nullptr,
                                                                       void *reserved = nullptr) {
        cudaDeviceFallocHeap heap = {};
        cudaError_t e = cudaErrorInvalidValue;
        uint64_t meta = falloc_heap_meta_size(length, chunkSize);
        void *staging = meta ? malloc(meta) : nullptr;
        fallocDeviceHeap *h = nullptr;
        void *dev = nullptr;

        if (meta && !staging)
                e = cudaErrorMemoryAllocation;
        else if (staging && falloc_heap_format(staging, length, chunkSize, &h) == 0 &&
                 (e = cudaMalloc(&dev, length)) == cudaSuccess &&
                 (e = cudaMemcpy(dev, staging, meta, cudaMemcpyHostToDevice)) != cudaSuccess) {
                cudaFree(dev);
                dev = nullptr;
        }
        if (dev) {
                heap.deviceHeap = (fallocDeviceHeap *)dev;
                heap.length = length;
                heap.chunkSize = h->chunk_size;
                heap.chunkCount = h->chunk_count;
                heap.reserved = reserved;
        }
        free(staging);
        if (error)
                *error = e;
        return heap;
}

/* Cleans up the memory of a heap from cudaDeviceFallocHeapCreate; heap is zero afterwards. */
static __host__ inline cudaError_t cudaDeviceFallocHeapDestroy(cudaDeviceFallocHeap &heap) {
        cudaError_t e = heap.deviceHeap ? cudaFree(heap.deviceHeap) : cudaSuccess;
        heap = cudaDeviceFallocHeap{};
        return e;
}

/* The heap the kernels of this file (module) use when given none. */
static __host__ inline cudaError_t cudaFallocSetDefaultHeap(cudaDeviceFallocHeap &heap) {
        return cudaMemcpyToSymbol(falloc_default_device_heap_, &heap.deviceHeap, sizeof(heap.deviceHeap));
}

#endif
