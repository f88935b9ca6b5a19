// SPDX-License-Identifier: MIT
// falloc kernels for the GPU test (falloc-gpu) and the benchmark (falloc-bench), built by nvcc into a
// fatbin loaded with cuModuleLoadData: they include the header-only heap and need no relocatable
// device code.  Each takes the heap's device pointer in its own process.
#include <alloc/falloc.h>

__device__ static uint64_t gid(void) {
        return blockIdx.x * (uint64_t)blockDim.x + threadIdx.x;
}

// iters get+free pairs a thread; a pair writes the chunk's first byte.  nulls counts NULLs.
extern "C" __global__ void falloc_pairs(fallocDeviceHeap *heap, uint64_t iters, unsigned long long *nulls) {
        for (uint64_t i = 0; i < iters; i++) {
                char *p = (char *)fallocGetChunk(heap);
                if (!p) {
                        atomicAdd(nulls, 1ull);
                        continue;
                }
                *(volatile char *)p = (char)i;
                fallocFreeChunk(p, heap);
        }
}

// The same with CUDA's device malloc/free of size bytes.
extern "C" __global__ void malloc_pairs(size_t size, uint64_t iters, unsigned long long *nulls) {
        for (uint64_t i = 0; i < iters; i++) {
                char *p = (char *)malloc(size);
                if (!p) {
                        atomicAdd(nulls, 1ull);
                        continue;
                }
                *(volatile char *)p = (char)i;
                free(p);
        }
}

// What any bitmap heap must do at least, for falloc-bench to set beside it: a pair is one atomic
// that sets a bit of a word and one that clears it, on as many words as the heap has, spread over the
// threads as falloc spreads them, with nothing else (no check of what the atomic found, relaxed).
extern "C" __global__ void atomic_floor(unsigned long long *words, uint64_t nwords, uint64_t iters) {
        uint64_t g = gid() * 0x9E3779B97F4A7C15ull;
        unsigned long long *w = &words[(g >> 20) % nwords], bit = 1ull << (g >> 59);
        for (uint64_t i = 0; i < iters; i++) {
                atomicOr(w, bit);
                atomicAnd(w, ~bit);
        }
}

// Every thread takes chunks until NULL, marking each with its owner in owners[chunk] (which must
// have been 0: no chunk twice) and in the chunk's first 8 bytes; got[gid] is how many.  Several
// processes may run it at once on one heap, each with its tag.
extern "C" __global__ void falloc_drain(fallocDeviceHeap *heap, unsigned long long tag, unsigned long long *owners,
                                        unsigned long long *got, unsigned long long *twice) {
        const char *chunks = (const char *)heap + heap->chunks_offset;
        unsigned long long me = tag << 40 | (gid() + 1), n = 0;
        for (char *p; (p = (char *)fallocGetChunk(heap)); n++) {
                uint64_t i = (uint64_t)(p - chunks) / heap->chunk_size;
                if (atomicCAS(&owners[i], 0ull, me) != 0ull)
                        atomicAdd(twice, 1ull);
                *(unsigned long long *)p = me;
        }
        got[gid()] = n;
}

// Frees what falloc_drain took, after checking each chunk still holds its owner's mark.
extern "C" __global__ void falloc_undrain(fallocDeviceHeap *heap, unsigned long long tag, unsigned long long *owners,
                                          unsigned long long *bad) {
        char *chunks = (char *)heap + heap->chunks_offset;
        for (uint64_t i = gid(); i < heap->chunk_count; i += (uint64_t)gridDim.x * blockDim.x) {
                unsigned long long o = owners[i];
                if (o >> 40 != tag)
                        continue;
                char *p = chunks + i * heap->chunk_size;
                if (*(unsigned long long *)p != o)
                        atomicAdd(bad, 1ull);
                owners[i] = 0;
                fallocFreeChunk(p, heap);
        }
}

// On a heap of two chunks: even threads take and give back its only run, counting in seen_free each
// time the heap reads as having a free chunk while they hold both; odd threads free the run's second
// chunk, which is never the start of anything, counting in frees: each must be refused (bad_frees).
extern "C" __global__ void falloc_run_race(fallocDeviceHeap *heap, uint64_t iters, unsigned long long *seen_free,
                                           unsigned long long *frees) {
        char *inside = (char *)heap + heap->chunks_offset + heap->chunk_size;
        for (uint64_t i = 0; i < iters; i++) {
                if (gid() % 2) {
                        fallocFreeChunk(inside, heap);
                        atomicAdd(frees, 1ull);
                        continue;
                }
                char *p = (char *)fallocGetChunks(2 * heap->chunk_size, nullptr, heap);
                if (!p)
                        continue;
                if (falloc_heap_available(heap) != 0)
                        atomicAdd(seen_free, 1ull);
                fallocFreeChunks(p, heap);
        }
}

// Each thread pushes n values on its own context, checks marks, pops them back in reverse order.
extern "C" __global__ void falloc_contexts(fallocDeviceHeap *heap, unsigned n, unsigned long long *bad) {
        fallocCtx *ctx = fallocCreateCtx(heap);
        if (!ctx) {
                atomicAdd(bad, 1ull);
                return;
        }
        void *mark;
        unsigned short mark2;
        fallocMark(ctx, mark, mark2);
        for (unsigned i = 0; i < n; i++)
                fallocPush<uint64_t>(ctx, gid() * 1000003u + i);
        if (n && fallocAtMark(ctx, mark, mark2))
                atomicAdd(bad, 1ull);
        for (unsigned i = n; i-- > 0;)
                if (fallocPop<uint64_t>(ctx) != gid() * 1000003u + i)
                        atomicAdd(bad, 1ull);
        if (!fallocAtMark(ctx, mark, mark2))
                atomicAdd(bad, 1ull);
        fallocDisposeCtx(ctx);
}
