/* SPDX-License-Identifier: MIT */
/*
 * Theory of the falloc heap
 * =========================
 *
 * The heap is a block of memory: a header, a bitmap and chunk_count chunks of
 * chunk_size bytes.  Everything inside refers to everything else by its offset
 * from the header, so the block works at whatever address each process maps
 * it, in any number of processes at once, and nothing in it is a pointer.
 *
 * State.  The bitmap has one 64-bit word for each 32 chunks.  In word w, bit b
 * (b < 32) is 1 while chunk 32w + b is taken, and bit 32 + b is 1 when that
 * chunk continues the fallocGetChunks run of the chunk before it.  A chunk is
 * free when both its bits are 0; bits of no chunk (past the last) read taken
 * from the start.  Nothing else is shared, not even a count of the free
 * chunks: there are no lists, no indices that are recycled and no version
 * counters, so there is no ABA to defend against (a compare-and-swap that sees
 * a word holding the value it read has seen every fact that word stands for)
 * and no counter to wrap, and a get or a free changes one word of the bitmap
 * (a run, the words it spans; a free whose chunk or run ends its word also
 * reads the next word's run bits), not a word that every caller touches.
 *
 * Getting one chunk: one pass over the words from a start of this thread's
 * own.  In a word with a free chunk, set the used bit of the free chunk nearest
 * a bit of the thread's own with a fetch-or: the chunk is the caller's if that
 * bit was 0; if not, read the word again and try its other free chunks.  A
 * pass that finds every word full returns NULL.  A run of n chunks claims the
 * first gap of n free chunks (first fit, one pass), word by word in
 * increasing order, each word's share of it with one compare-and-swap that
 * sets its used bits and its run bits together; when a chunk of the gap turns
 * out taken, it clears what it had set and goes on past that chunk; with no
 * gap left it returns NULL.  Freeing: read the word of the first chunk; it
 * must be taken and not continue a run.  The run goes on while the run bits
 * after it are 1; clear both bits of its chunks with one fetch-and a word,
 * the last word first (so that a run bit never continues a chunk that has
 * been freed: a free of that chunk would take the bits for its own run).
 *
 * Why it is correct under any interleaving:
 *
 *   No chunk twice: a chunk is handed out only by the atomic that turned its
 *   used bit from 0 to 1, which one caller alone can do, and the bit stays 1
 *   until the chunk's holder frees it.
 *
 *   Lock-free, and every call ends: a pass reads each word once, and it tries
 *   a word again only after an atomic there that found a chunk it wanted taken,
 *   which means another caller's atomic took it (on the host a weak compare-
 *   and-swap may also fail spuriously, a bounded number of times in practice).
 *   Nothing a caller does depends on a count being right, so a heap whose
 *   bitmap a peer scribbled on hands out at worst what the bitmap says is free,
 *   and a get on it still ends.
 *
 *   NULL means full as far as one pass could see: a get returns NULL when each
 *   word was full when it read it.  A get that runs while the heap stays full
 *   returns NULL; under churn, a chunk given back behind a pass is not seen by
 *   it (the next call sees it).  A run returns NULL when no free gap of its size was
 *   seen in its pass; a gap another caller held for a moment counts as not
 *   free.  A corrupt 0 past the last chunk is set back, never handed out.
 *
 *   Publication: a free's fetch-and is a release and a claim's atomic an
 *   acquire, so whatever the previous holder wrote in a chunk happens before
 *   its next holder gets it (a later atomic on the word continues the
 *   release sequence).  Each needs only its half: on the device an
 *   acquire-release atomic is a fence before it and an L1 invalidation after
 *   it.  The bitmap is the only synchronisation; there are no plain fences.
 *
 *   Frees that are wrong: a pointer outside the chunks or inside one, or a
 *   chunk that reads free or inside a run, changes nothing and counts in
 *   bad_frees.  Because a run's used bits and run bits are set by the same
 *   atomic and cleared by the same atomic, a chunk inside a run reads inside a
 *   run for as long as it reads taken: a free of it is refused whatever it
 *   races with.  (Version 2 kept the run bits in a bitmap of their own, written
 *   after the claim and cleared before the used bits: a free of a pointer
 *   inside a run in between freed that chunk under its holder.)  What no heap
 *   that does not know owners can tell: a free of a chunk that someone else
 *   holds now or is taking (a double free after the chunk was taken again,
 *   even as the first chunk of a run being claimed) frees it under its holder;
 *   in a claim under way, the claimer's other chunks of that word with it,
 *   and the claim, if it then fails, clears chunks that may be others' by
 *   then.
 *
 * Each thread starts its pass at a word of its own and prefers a bit of its
 * own in a word (a hash of its global index on the device; on the host the
 * last word it used and a hash of the thread), so that threads meet on a word
 * only when the heap is nearly full, and those that meet pick different chunks
 * of it: a fetch-or does not fail when another caller takes another chunk of
 * the word, as a compare-and-swap would.  Version 1 of the heap also kept a
 * count of free chunks that a get reserved from before it claimed a bit: every
 * get and free of every thread was an atomic on that one word, which held an
 * H200 to 5 M pairs a second; and lanes of a warp that shared one atomic on it
 * (a leader reserving for all, its count passed on by a shuffle) lost chunks
 * there (driver 580): lanes that other lanes of the warp joined mid-way
 * sometimes read the count before the leader wrote it and took NULL for chunks
 * reserved for them.  Versions 2 and 3 have no count and no warp-wide
 * operation.
 *
 * Contexts, stacks of bytes in chunks, are in falloc-ctx.h.
 */
#ifndef ALLOC_FALLOC_IMPL_H
#define ALLOC_FALLOC_IMPL_H

#ifndef ALLOC_FALLOC_H
#error "include <alloc/falloc.h>, not falloc-impl.h"
#endif

#include <errno.h>
#include <string.h>

#if defined(__CUDACC__)
#include <cuda/atomic>
#ifdef FALLOC_SYSTEM_SCOPE
#define FALLOC_REF_(p) cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*(p))
#else
#define FALLOC_REF_(p) cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*(p))
#endif
#define FALLOC_ORDER_(mo) cuda::std::memory_order_##mo
#define FALLOC_PEEK_(p) FALLOC_REF_(p).load(cuda::std::memory_order_relaxed)
#define FALLOC_CAS_(p, e, d)                                                                                           \
        FALLOC_REF_(p).compare_exchange_weak(*(e), d, cuda::std::memory_order_acquire, cuda::std::memory_order_relaxed)
#define FALLOC_RMW_(op, p, v, mo) FALLOC_REF_(p).fetch_##op(v, FALLOC_ORDER_(mo))
#elif defined(__cplusplus)
#define FALLOC_ORDER_relaxed __ATOMIC_RELAXED
#define FALLOC_ORDER_acquire __ATOMIC_ACQUIRE
#define FALLOC_ORDER_release __ATOMIC_RELEASE
#define FALLOC_PEEK_(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define FALLOC_CAS_(p, e, d) __atomic_compare_exchange_n(p, e, d, true, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)
#define FALLOC_RMW_(op, p, v, mo) __atomic_fetch_##op(p, v, FALLOC_ORDER_##mo)
#else
#include <stdatomic.h>
#define FALLOC_PEEK_(p) atomic_load_explicit((_Atomic uint64_t *)(p), memory_order_relaxed)
#define FALLOC_CAS_(p, e, d)                                                                                           \
        atomic_compare_exchange_weak_explicit((_Atomic uint64_t *)(p), e, d, memory_order_acquire, memory_order_relaxed)
#define FALLOC_RMW_(op, p, v, mo) atomic_fetch_##op##_explicit((_Atomic uint64_t *)(p), v, memory_order_##mo)
#endif

/* Reads of the bitmap are relaxed: what orders one holder's bytes before the next's is the atomics that change it. */
#define falloc_peek_(p) FALLOC_PEEK_((uint64_t *)(p))

#define FALLOC_NONE_ UINT64_MAX
#define FALLOC_CTX_MAGIC 0x78544331u /* "1CTx" */

#ifdef __cplusplus
static_assert(sizeof(fallocDeviceHeap) == FALLOC_HEADER_SIZE, "the header is 256 bytes");
#else
_Static_assert(sizeof(fallocDeviceHeap) == FALLOC_HEADER_SIZE, "the header is 256 bytes");
#endif

#if defined(__CUDACC__)
static __device__ fallocDeviceHeap *falloc_default_device_heap_;
#endif
static fallocDeviceHeap *falloc_default_host_heap_;
#ifdef __cplusplus
static thread_local uint64_t falloc_hint_; /* the word this thread last used, plus 1 */
#else
static _Thread_local uint64_t falloc_hint_;
#endif

FALLOC_FN unsigned falloc_ctz_(uint64_t v) {
#if defined(__CUDA_ARCH__)
        return (unsigned)__ffsll((long long)v) - 1;
#else
        return (unsigned)__builtin_ctzll(v);
#endif
}

FALLOC_FN unsigned falloc_popcount_(uint64_t v) {
#if defined(__CUDA_ARCH__)
        return (unsigned)__popcll(v);
#else
        return (unsigned)__builtin_popcountll(v);
#endif
}

FALLOC_FN fallocDeviceHeap *falloc_heap_or_default_(fallocDeviceHeap *heap) {
        if (heap)
                return heap;
#if defined(__CUDA_ARCH__)
        return falloc_default_device_heap_;
#else
        return falloc_default_host_heap_;
#endif
}

#define FALLOC_PER_WORD_ 32u
#define FALLOC_LOW_ 0xffffffffull

FALLOC_FN uint64_t *falloc_used_(fallocDeviceHeap *h) {
        return (uint64_t *)((char *)h + h->used_offset);
}

FALLOC_FN char *falloc_chunk_(fallocDeviceHeap *h, uint64_t i) {
        return (char *)h + h->chunks_offset + i * h->chunk_size;
}

/* The chunks of a word that are free: both bits 0. */
FALLOC_FN uint64_t falloc_free_bits_(uint64_t v) {
        return ~(v | v >> 32) & FALLOC_LOW_;
}

/* The low bits of word w that are chunks (the last word may have fewer than 32). */
FALLOC_FN uint64_t falloc_real_(uint64_t count, uint64_t w) {
        uint64_t left = count - w * FALLOC_PER_WORD_;
        return left >= FALLOC_PER_WORD_ ? FALLOC_LOW_ : (1ull << left) - 1;
}

/* Chunks [first, first + n) of the word holding chunk first, up to its end, as low bits; *len says how many. */
FALLOC_FN uint64_t falloc_mask_(uint64_t first, uint64_t n, uint64_t *len) {
        uint64_t lo = first % FALLOC_PER_WORD_, k = FALLOC_PER_WORD_ - lo < n ? FALLOC_PER_WORD_ - lo : n;
        *len = k;
        return (k == FALLOC_PER_WORD_ ? FALLOC_LOW_ : ((1ull << k) - 1)) << lo;
}

/* Where this thread starts its pass, and (*rot) the bit of a word it prefers. */
FALLOC_FN uint64_t falloc_start_(uint64_t words, unsigned *rot) {
#if defined(__CUDA_ARCH__)
        uint64_t block = blockIdx.x + (uint64_t)gridDim.x * (blockIdx.y + (uint64_t)gridDim.y * blockIdx.z);
        uint64_t tid = threadIdx.x + (uint64_t)blockDim.x * (threadIdx.y + (uint64_t)blockDim.y * threadIdx.z);
        uint64_t g = (block * ((uint64_t)blockDim.x * blockDim.y * blockDim.z) + tid) * 0x9E3779B97F4A7C15ull;
        *rot = (unsigned)(g >> 59);
        return (g >> 20) % words;
#else
        uint64_t t = (uint64_t)(uintptr_t)&falloc_hint_ * 0x9E3779B97F4A7C15ull;
        if (!falloc_hint_)
                falloc_hint_ = (t >> 20) + 1;
        *rot = (unsigned)(t >> 59);
        return (falloc_hint_ - 1) % words;
#endif
}

FALLOC_FN void falloc_used_word_(uint64_t w) {
#if defined(__CUDA_ARCH__)
        (void)w;
#else
        falloc_hint_ = w + 1;
#endif
}

/* Of the set bits of free (low 32), the one at or after bit rot, going round. */
FALLOC_FN unsigned falloc_pick_(uint64_t free, unsigned rot) {
        uint64_t r = rot ? (free >> rot | free << (FALLOC_PER_WORD_ - rot)) & FALLOC_LOW_ : free;
        return (falloc_ctz_(r) + rot) % FALLOC_PER_WORD_;
}

/* Takes a free chunk in one pass from this thread's start: its index, or FALLOC_NONE_. */
FALLOC_FN uint64_t falloc_claim_one_(fallocDeviceHeap *h) {
        uint64_t *used = falloc_used_(h), words = h->words, count = h->chunk_count;
        unsigned rot;
        uint64_t w = falloc_start_(words, &rot);
        for (uint64_t seen = 0; seen < words; seen++, w = w + 1 == words ? 0 : w + 1) {
                uint64_t real = falloc_real_(count, w), v = falloc_peek_(&used[w]), free;
                /* A 0 past the last chunk was written by no falloc call: set it back, never hand it out. */
                if (~v & FALLOC_LOW_ & ~real)
                        v = FALLOC_RMW_(or, &used[w], FALLOC_LOW_ & ~real, relaxed) | (FALLOC_LOW_ & ~real);
                while ((free = falloc_free_bits_(v) & real)) {
                        /*
                         * Only the bit's old value is used, so that x86 makes it one lock bts (a fetch-or
                         * whose whole result is used is a compare-and-swap loop there); a lost bit reads
                         * the word again.
                         */
                        uint64_t b = falloc_pick_(free, rot), bit = 1ull << b;
                        if (!(FALLOC_RMW_(or, &used[w], bit, acquire) & bit)) {
                                falloc_used_word_(w);
                                return w * FALLOC_PER_WORD_ + b;
                        }
                        v = falloc_peek_(&used[w]);
                }
        }
        return FALLOC_NONE_;
}

/* The first free chunk at or after i, or count. */
FALLOC_FN uint64_t falloc_next_free_(uint64_t *used, uint64_t i, uint64_t count) {
        uint64_t w = i / FALLOC_PER_WORD_,
                 f = falloc_free_bits_(falloc_peek_(&used[w])) & ~((1ull << (i % FALLOC_PER_WORD_)) - 1);
        while (!f) {
                if (++w * FALLOC_PER_WORD_ >= count)
                        return count;
                f = falloc_free_bits_(falloc_peek_(&used[w]));
        }
        uint64_t z = w * FALLOC_PER_WORD_ + falloc_ctz_(f);
        return z < count ? z : count;
}

/* How many free chunks follow from i on, counting up to n. */
FALLOC_FN uint64_t falloc_free_from_(uint64_t *used, uint64_t i, uint64_t n) {
        uint64_t pos = i;
        while (pos < i + n) {
                uint64_t b = pos % FALLOC_PER_WORD_, left = FALLOC_PER_WORD_ - b;
                uint64_t taken = ~falloc_free_bits_(falloc_peek_(&used[pos / FALLOC_PER_WORD_])) & FALLOC_LOW_;
                uint64_t z = taken >> b ? falloc_ctz_(taken >> b) : left;
                pos += z;
                if (z < left)
                        break;
        }
        return pos - i < n ? pos - i : n;
}

/*
 * Clears both bits of chunks [i, i + n), from the last word to the first, so that no run bit outlives
 * the chunk before it: were the first word cleared first, its last chunk could be taken and freed
 * again meanwhile, and that free would read the next word's run bits as its own run.  Returns how
 * many of the chunks were taken.
 */
FALLOC_FN uint64_t falloc_clear_(uint64_t *used, uint64_t i, uint64_t n) {
        uint64_t cleared = 0, len;
        for (uint64_t end = i + n; end > i;) {
                uint64_t pos = (end - 1) / FALLOC_PER_WORD_ * FALLOC_PER_WORD_;
                pos = pos > i ? pos : i;
                uint64_t m = falloc_mask_(pos, end - pos, &len);
                cleared +=
                        falloc_popcount_(FALLOC_RMW_(and, &used[pos / FALLOC_PER_WORD_], ~(m | m << 32), release) & m);
                end = pos;
        }
        return cleared;
}

/*
 * Takes chunks [i, i + n), all of which it saw free, word by word: the used
 * bits of all and the run bits of all but chunk i, a word with one atomic.
 * Returns n, or the offset from i of a chunk some other caller took first,
 * having cleared what it set.
 */
FALLOC_FN uint64_t falloc_set_run_(uint64_t *used, uint64_t i, uint64_t n) {
        uint64_t len;
        for (uint64_t pos = i; pos < i + n; pos += len) {
                uint64_t m = falloc_mask_(pos, i + n - pos, &len), both = m | m << 32;
                uint64_t runs = pos == i ? (m & (m - 1)) << 32 : m << 32, *at = &used[pos / FALLOC_PER_WORD_];
                uint64_t v = falloc_peek_(at);
                while (!(v & both) && !FALLOC_CAS_(at, &v, v | m | runs))
                        ;
                if (v & both) {
                        falloc_clear_(used, i, pos - i);
                        return pos - pos % FALLOC_PER_WORD_ + falloc_ctz_((v | v >> 32) & m) - i;
                }
        }
        return n;
}

/* The first chunk of a gap of n free chunks, now taken, or FALLOC_NONE_. */
FALLOC_FN uint64_t falloc_claim_run_(fallocDeviceHeap *h, uint64_t n) {
        uint64_t *used = falloc_used_(h), count = h->chunk_count, i = 0;
        while (i + n <= count) {
                uint64_t z = falloc_next_free_(used, i, count);
                if (z + n > count)
                        break;
                uint64_t got = falloc_free_from_(used, z, n);
                if (got == n)
                        got = falloc_set_run_(used, z, n);
                if (got == n)
                        return z;
                i = z + got + 1;
        }
        return FALLOC_NONE_;
}

FALLOC_FN void falloc_bad_free_(fallocDeviceHeap *h) {
        FALLOC_RMW_(add, &h->bad_frees, 1, relaxed);
}

FALLOC_FN void *fallocGetChunk(fallocDeviceHeap *heap) {
        heap = falloc_heap_or_default_(heap);
        uint64_t i = heap ? falloc_claim_one_(heap) : FALLOC_NONE_;
        return i == FALLOC_NONE_ ? FALLOC_NULL : falloc_chunk_(heap, i);
}

FALLOC_FN void *fallocGetChunks(size_t length, size_t *allocLength, fallocDeviceHeap *heap) {
        heap = falloc_heap_or_default_(heap);
        if (allocLength)
                *allocLength = 0;
        if (!heap || length == 0)
                return FALLOC_NULL;
        uint64_t cs = heap->chunk_size, n = length / cs + (length % cs != 0);
        if (n > heap->chunk_count)
                return FALLOC_NULL;
        uint64_t i = n == 1 ? falloc_claim_one_(heap) : falloc_claim_run_(heap, n);
        if (i == FALLOC_NONE_)
                return FALLOC_NULL;
        if (allocLength)
                *allocLength = (size_t)(n * cs);
        return falloc_chunk_(heap, i);
}

FALLOC_FN void fallocFreeChunks(void *obj, fallocDeviceHeap *heap) {
        heap = falloc_heap_or_default_(heap);
        if (!heap || !obj)
                return;
        char *chunks = (char *)heap + heap->chunks_offset;
        uint64_t cs = heap->chunk_size, count = heap->chunk_count, i = (uint64_t)((char *)obj - chunks) / cs;
        uint64_t *used = falloc_used_(heap), w = i / FALLOC_PER_WORD_, b = i % FALLOC_PER_WORD_, n = 1, v = 0;
        bool chunk = (char *)obj >= chunks && i < count && (uint64_t)((char *)obj - chunks) % cs == 0;
        if (chunk)
                v = falloc_peek_(&used[w]);
        if (!chunk || !(v >> b & 1) || (v >> 32 >> b & 1)) { /* not taken, or inside a run */
                falloc_bad_free_(heap);
                return;
        }
        /* Only the run's holder changes its run bits, and the chunk after the run reads not continuing it. */
        for (uint64_t pos = i + 1; pos < count;) {
                uint64_t left = FALLOC_PER_WORD_ - pos % FALLOC_PER_WORD_;
                uint64_t x = pos / FALLOC_PER_WORD_ == w ? v : falloc_peek_(&used[pos / FALLOC_PER_WORD_]);
                uint64_t ones = falloc_ctz_(~(x >> 32 >> pos % FALLOC_PER_WORD_));
                n += ones;
                pos += ones;
                if (ones < left)
                        break;
        }
        if (n > count - i) /* run bits past the last chunk: only a peer's scribbling writes them */
                n = count - i;
        if (falloc_clear_(used, i, n) < n)
                falloc_bad_free_(heap);
        falloc_used_word_(w);
}

FALLOC_FN void fallocFreeChunk(void *obj, fallocDeviceHeap *heap) {
        fallocFreeChunks(obj, heap);
}

/* Host helpers. */

FALLOC_FN uint64_t falloc_meta_(uint64_t count) {
        uint64_t words = count / FALLOC_PER_WORD_ + (count % FALLOC_PER_WORD_ != 0);
        return (FALLOC_HEADER_SIZE + 8 * words + FALLOC_CHUNKS_ALIGN - 1) & ~(uint64_t)(FALLOC_CHUNKS_ALIGN - 1);
}

FALLOC_FN uint64_t falloc_heap_size(uint64_t chunk_size, uint64_t count) {
        /* Checked before it is rounded up: the largest values would wrap to 0. */
        if (chunk_size == 0 || chunk_size > FALLOC_CHUNK_MAX || count > (UINT64_MAX >> 8))
                return 0;
        uint64_t cs = (chunk_size + FALLOC_CHUNK_ALIGN - 1) & ~(uint64_t)(FALLOC_CHUNK_ALIGN - 1);
        uint64_t meta = falloc_meta_(count);
        return count > (UINT64_MAX - meta) / cs ? 0 : meta + count * cs;
}

FALLOC_HOST_FN int falloc_heap_geometry(uint64_t size, uint64_t chunk_size, uint64_t *ret_chunk_size,
                                        uint64_t *ret_count) {
        uint64_t cs, count;
        if (chunk_size == 0 || chunk_size > FALLOC_CHUNK_MAX) /* FALLOC_CHUNK_MAX is a multiple of 16 */
                return -EINVAL;
        cs = (chunk_size + FALLOC_CHUNK_ALIGN - 1) & ~(uint64_t)(FALLOC_CHUNK_ALIGN - 1);
        if (size < falloc_heap_size(cs, 1))
                return -ENOSPC;
        /* Metadata is at most 2 bits a chunk plus 527 bytes: this count is low by at most a few. */
        count = (size - 528) / (4 * cs + 1) * 4;
        if (count > (UINT64_MAX >> 8) - 1)
                count = (UINT64_MAX >> 8) - 1;
        while (falloc_heap_size(cs, count + 1) && falloc_heap_size(cs, count + 1) <= size)
                count++;
        if (count == 0)
                return -ENOSPC;
        *ret_chunk_size = cs;
        *ret_count = count;
        return 0;
}

FALLOC_HOST_FN uint64_t falloc_heap_meta_size(uint64_t size, uint64_t chunk_size) {
        uint64_t cs, count;
        return falloc_heap_geometry(size, chunk_size, &cs, &count) ? 0 : falloc_meta_(count);
}

FALLOC_HOST_FN int falloc_heap_format(void *mem, uint64_t size, uint64_t chunk_size, fallocDeviceHeap **ret) {
        uint64_t cs, count;
        if ((uintptr_t)mem % 8)
                return -EINVAL;
        int r = falloc_heap_geometry(size, chunk_size, &cs, &count);
        if (r < 0)
                return r;
        fallocDeviceHeap *h = (fallocDeviceHeap *)mem;
        uint64_t meta = falloc_meta_(count);
        if (meta > size) /* never (the geometry fits in size), but GCC's -Warray-bounds cannot tell */
                return -ENOSPC;
        memset(mem, 0, meta);
        h->magic = FALLOC_MAGIC;
        h->version = FALLOC_VERSION;
        h->header_size = FALLOC_HEADER_SIZE;
        h->size = size;
        h->chunk_size = cs;
        h->chunk_count = count;
        h->words = count / FALLOC_PER_WORD_ + (count % FALLOC_PER_WORD_ != 0);
        h->used_offset = FALLOC_HEADER_SIZE;
        h->chunks_offset = meta;
        falloc_used_(h)[h->words - 1] = FALLOC_LOW_ & ~falloc_real_(count, h->words - 1); /* no chunks there */
        if (ret)
                *ret = h;
        return 0;
}

FALLOC_HOST_FN int falloc_heap_open(void *mem, uint64_t size, fallocDeviceHeap **ret) {
        fallocDeviceHeap *h = (fallocDeviceHeap *)mem;
        if (!mem || (uintptr_t)mem % 8)
                return -EINVAL;
        if (size < FALLOC_HEADER_SIZE || h->magic != FALLOC_MAGIC || h->version != FALLOC_VERSION ||
            h->header_size != FALLOC_HEADER_SIZE || h->chunk_size % FALLOC_CHUNK_ALIGN || h->chunk_count == 0 ||
            h->size > size || !falloc_heap_size(h->chunk_size, h->chunk_count) ||
            falloc_heap_size(h->chunk_size, h->chunk_count) > h->size ||
            h->words != h->chunk_count / FALLOC_PER_WORD_ + (h->chunk_count % FALLOC_PER_WORD_ != 0) ||
            h->used_offset != FALLOC_HEADER_SIZE || h->chunks_offset != falloc_meta_(h->chunk_count))
                return -EBADMSG;
        if (ret)
                *ret = h;
        return 0;
}

FALLOC_FN uint64_t falloc_heap_available(const fallocDeviceHeap *heap) {
        fallocDeviceHeap *h = (fallocDeviceHeap *)heap;
        uint64_t *used = falloc_used_(h), count = h->chunk_count, n = 0;
        for (uint64_t w = 0; w < h->words; w++) /* bits past the last chunk are no chunks, whatever they read */
                n += falloc_popcount_(falloc_free_bits_(falloc_peek_(&used[w])) & falloc_real_(count, w));
        return n;
}

FALLOC_HOST_FN void fallocSetDefaultHeap(fallocDeviceHeap *heap) {
        falloc_default_host_heap_ = heap;
}

#endif
