/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_FALLOC_H
#define ALLOC_FALLOC_H

/*
 * falloc: a lock-free heap of fixed-size chunks that works at any address, in
 * any number of processes at once, from CUDA kernels and from CPU threads.
 * The heap is one block of memory (a cudaMalloc, a region of an allocd pool)
 * that holds its own header, its bitmap and its chunks; inside it there are
 * only offsets, so each process maps it wherever it likes.  The algorithm and
 * why it is correct: falloc-impl.h.
 *
 * Header-only: kernels include it and need no relocatable device code.  The
 * same source compiles as C11 (host threads, C11 atomics), as C++ and under
 * nvcc (host and device).  From C there are no default arguments and
 * fallocMark takes pointers; from C++ the seed's signatures hold as written.
 *
 *   fallocGetChunk       one chunk, or NULL when one pass over the bitmap
 *                        found every chunk in use
 *   fallocFreeChunk      gives back what fallocGetChunk or fallocGetChunks
 *                        returned (the whole run); anything else is ignored
 *                        where it can be told (falloc-impl.h, "Theory")
 *   fallocGetChunks      ceil(length / chunk size) contiguous chunks, or NULL
 *                        when no such run is free (it may be while others are
 *                        taken and given back around it: a run is first fit
 *                        in one pass over the heap; one chunk is got as
 *                        fallocGetChunk gets it)
 *   fallocFreeChunks     the same as fallocFreeChunk
 *
 * A context (fallocCreateCtx) is a stack of bytes made of chunks, for one
 * thread: falloc takes bytes (rounded up to 8, aligned to 8) from its top,
 * fallocRetract gives them back in reverse order and returns where they were
 * (still readable until the next call on the context), fallocMark and
 * fallocAtMark say whether the top is where it was.  A context's chunks go
 * back to the heap with fallocDisposeCtx.  NULL: the heap is exhausted, or
 * bytes do not fit in a chunk beside the context's 16-byte link (and, in the
 * first chunk, its 40-byte header), or fallocRetract is asked for more bytes
 * than the top chunk holds.
 *
 * The default heap (a NULL heap argument) belongs to the translation unit,
 * as any static variable of a header: on the device it is the module's
 * (cudaFallocSetDefaultHeap, from the file that launches its kernels), on the
 * host fallocSetDefaultHeap's.
 *
 * Memory scope: atomics are device-scope on the GPU.  A heap in pinned memory
 * that CPU threads and kernels use at the same time needs system scope:
 * define FALLOC_SYSTEM_SCOPE before including this header.
 *
 * A heap does not know who holds a chunk.  When a process dies holding
 * chunks, they stay taken until the heap goes (allocd frees the region when
 * its last holder goes) or the survivors reformat it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define FALLOC_FN static __host__ __device__ inline
#define FALLOC_HOST_FN static __host__ inline
#else
#define FALLOC_FN static inline
#define FALLOC_HOST_FN static inline
#endif

#ifdef __cplusplus
#define FALLOC_DEFAULT(x) = x
#define FALLOC_NULL nullptr
#else
#define FALLOC_DEFAULT(x)
#define FALLOC_NULL NULL
#endif

#define FALLOC_MAGIC 0x3148434f4c4c4146ull /* "FALLOCH1" */
#define FALLOC_VERSION 3u                  /* 1 kept a count of free chunks, 2 a second bitmap */
#define FALLOC_HEADER_SIZE 256u            /* the header; the bitmap follows it */
#define FALLOC_CHUNK_ALIGN 16u             /* chunk sizes are rounded up to this */
#define FALLOC_CHUNKS_ALIGN 256u           /* chunk 0 starts at this alignment, as cudaMalloc's */
#define FALLOC_CHUNK_MAX (1u << 30)        /* so that a context's offsets within a chunk fit 32 bits */
#define FALLOC_DEFAULT_CHUNK 2046u
#define FALLOC_DEFAULT_LENGTH 1048576u

/*
 * The heap's first bytes; what follows is the bitmap (a 64-bit word for each 32
 * chunks: in its low half a set bit says the chunk is taken, in its high half
 * that it continues the run of the chunk before it) and the chunks, each at its
 * offset from the header.  The geometry is written once by falloc_heap_format
 * and never changes; the counter that changes (bad_frees) sits on its own cache
 * line.
 */
typedef struct fallocDeviceHeap {
        uint64_t magic;
        uint32_t version;
        uint32_t header_size;
        uint64_t size;       /* bytes of the whole heap */
        uint64_t chunk_size; /* a multiple of FALLOC_CHUNK_ALIGN */
        uint64_t chunk_count;
        uint64_t words;         /* 64-bit words of the bitmap */
        uint64_t used_offset;   /* the bitmap, from the heap's start */
        uint64_t chunks_offset; /* chunk 0 */
        uint64_t reserved[9];
        uint64_t bad_frees; /* frees of something that was not a taken chunk or run */
        uint64_t pad[14];
} fallocDeviceHeap;

typedef struct fallocCtx fallocCtx;

/*
 * Host helpers, from C and C++ (not on the device).  Negative errno values:
 * -EINVAL  chunk_size 0 or over FALLOC_CHUNK_MAX, mem not 8-byte aligned
 * -ENOSPC  size does not hold the header, the bitmap and one chunk
 * -EBADMSG falloc_heap_open: not a heap (or one of another version), or its geometry does not fit in size
 */
/* Bytes a heap of count chunks of chunk_size takes; 0 if that passes 2^64 or chunk_size is out of range. */
FALLOC_FN uint64_t falloc_heap_size(uint64_t chunk_size, uint64_t count);
/* The geometry of the heap that fits in size bytes: its chunk size (rounded up) and chunk count. */
FALLOC_HOST_FN int falloc_heap_geometry(uint64_t size, uint64_t chunk_size, uint64_t *ret_chunk_size,
                                        uint64_t *ret_count);
/*
 * Writes the header and bitmap of a heap of size bytes at mem: every chunk free.  Only the first
 * falloc_heap_meta_size() bytes are written, so mem may be a staging copy of them (for a heap in
 * device memory): pass the heap's size all the same.
 */
FALLOC_HOST_FN int falloc_heap_format(void *mem, uint64_t size, uint64_t chunk_size, fallocDeviceHeap **ret);
/* How many bytes falloc_heap_format writes for a heap of size bytes and chunk_size; 0 if none fits. */
FALLOC_HOST_FN uint64_t falloc_heap_meta_size(uint64_t size, uint64_t chunk_size);
/* Checks that mem holds a heap whose geometry fits in size bytes (one another process formatted). */
FALLOC_HOST_FN int falloc_heap_open(void *mem, uint64_t size, fallocDeviceHeap **ret);
/* Chunks free now, as the bitmap says (a pass over it: a count, not a promise, while others use the heap). */
FALLOC_FN uint64_t falloc_heap_available(const fallocDeviceHeap *heap);
/* The heap fallocGetChunk(NULL) and friends use in this translation unit, on the host. */
FALLOC_HOST_FN void fallocSetDefaultHeap(fallocDeviceHeap *heap);

/* The seed's device API; host and device. */
FALLOC_FN void *fallocGetChunk(fallocDeviceHeap *heap FALLOC_DEFAULT(nullptr));
FALLOC_FN void fallocFreeChunk(void *obj, fallocDeviceHeap *heap FALLOC_DEFAULT(nullptr));
FALLOC_FN void *fallocGetChunks(size_t length, size_t *allocLength FALLOC_DEFAULT(nullptr),
                                fallocDeviceHeap *heap FALLOC_DEFAULT(nullptr));
FALLOC_FN void fallocFreeChunks(void *obj, fallocDeviceHeap *heap FALLOC_DEFAULT(nullptr));

FALLOC_FN fallocCtx *fallocCreateCtx(fallocDeviceHeap *heap FALLOC_DEFAULT(nullptr));
FALLOC_FN void fallocDisposeCtx(fallocCtx *ctx);
FALLOC_FN void *falloc(fallocCtx *ctx, unsigned short bytes, bool alloc FALLOC_DEFAULT(true));
FALLOC_FN void *fallocRetract(fallocCtx *ctx, unsigned short bytes);
#ifdef __cplusplus
FALLOC_FN void fallocMark(fallocCtx *ctx, void *&mark, unsigned short &mark2);
#else
FALLOC_FN void fallocMark(fallocCtx *ctx, void **mark, unsigned short *mark2);
#endif
FALLOC_FN bool fallocAtMark(fallocCtx *ctx, void *mark, unsigned short mark2);

#include "falloc-impl.h"
#include "falloc-ctx.h"

#ifdef __cplusplus
/* bytes is an unsigned short: a larger T would take (or give back) sizeof(T) mod 65536 bytes and overrun them. */
#define FALLOC_FITS_(T) static_assert(sizeof(T) <= 0xffff, "falloc contexts take at most 65535 bytes at a time")
template <typename T> FALLOC_FN T *falloc(fallocCtx *ctx) {
        FALLOC_FITS_(T);
        return (T *)falloc(ctx, sizeof(T), true);
}
/* Pushing to an exhausted heap writes nothing (the seed's version wrote through NULL). */
template <typename T> FALLOC_FN void fallocPush(fallocCtx *ctx, T t) {
        FALLOC_FITS_(T);
        T *p = (T *)falloc(ctx, sizeof(T), false);
        if (p)
                *p = t;
}
/* Popping an empty context returns T(). */
template <typename T> FALLOC_FN T fallocPop(fallocCtx *ctx) {
        FALLOC_FITS_(T);
        T *p = (T *)fallocRetract(ctx, sizeof(T));
        return p ? *p : T();
}
#endif

#if defined(__CUDACC__)
#include "falloc-cuda.h"
#endif

#endif
