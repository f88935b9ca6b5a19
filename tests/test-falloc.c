/* SPDX-License-Identifier: MIT */
/*
 * The falloc heap in one thread (geometry, exhaustion, runs, refused frees, contexts), and threads on a
 * heap whose bitmap a peer scribbles on (falloc(3)).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <alloc/falloc.h>

static void *mem;
static fallocDeviceHeap *heap;

/* A heap of count chunks of chunk bytes. */
static fallocDeviceHeap *make(uint64_t chunk, uint64_t count) {
        uint64_t size = falloc_heap_size(chunk, count);
        cr_assert(size);
        free(mem);
        mem = aligned_alloc(FALLOC_CHUNKS_ALIGN, (size + 255) / 256 * 256);
        cr_assert_eq(falloc_heap_format(mem, size, chunk, &heap), 0);
        cr_assert_eq(heap->chunk_count, count);
        return heap;
}

static void fini(void) {
        free(mem);
        mem = NULL;
}

TestSuite(falloc, .fini = fini);

static uint64_t index_of(const void *p) {
        return (uint64_t)((const char *)p - ((const char *)heap + heap->chunks_offset)) / heap->chunk_size;
}

Test(falloc, geometry_rounds_the_chunk_and_fills_the_size) {
        uint64_t cs, count;
        cr_assert_eq(falloc_heap_geometry(FALLOC_DEFAULT_LENGTH, FALLOC_DEFAULT_CHUNK, &cs, &count), 0);
        cr_assert_eq(cs, 2048, "the seed's 2046 is rounded up to 16");
        cr_assert_eq(count, 511, "1 MiB holds 511 chunks of 2 KiB beside the header and bitmap");
        for (uint64_t size = 600; size < 200000; size = size * 3 / 2 + 7) {
                cr_assert_eq(falloc_heap_geometry(size, 48, &cs, &count), 0);
                cr_assert_leq(falloc_heap_size(cs, count), size);
                cr_assert_gt(falloc_heap_size(cs, count + 1), size, "%llu bytes hold more than %llu chunks",
                             (unsigned long long)size, (unsigned long long)count);
        }
        cr_assert_eq(falloc_heap_geometry(1 << 20, 0, &cs, &count), -EINVAL);
        cr_assert_eq(falloc_heap_geometry(1ull << 40, (1ull << 30) + 1, &cs, &count), -EINVAL);
        for (uint64_t wraps = UINT64_MAX - 14; wraps; wraps++) { /* rounded up to 16, each was 0 */
                cr_assert_eq(falloc_heap_geometry(100, wraps, &cs, &count), -EINVAL, "%#llx",
                             (unsigned long long)wraps);
                cr_assert_eq(falloc_heap_size(wraps, 1), 0);
                cr_assert_eq(falloc_heap_meta_size(1 << 20, wraps), 0);
        }
        cr_assert_eq(falloc_heap_geometry(700, 512, &cs, &count), -ENOSPC);
        cr_assert_eq(falloc_heap_geometry(falloc_heap_size(4096, 1), 4096, &cs, &count), 0, "the smallest heap fits");
        cr_assert_eq(count, 1);
        cr_assert_eq(falloc_heap_size(16, UINT64_MAX / 8), 0, "overflow is 0, not a wrapped size");
}

Test(falloc, open_checks_what_another_process_formatted) {
        fallocDeviceHeap *h = make(64, 100), *o;
        uint64_t size = falloc_heap_size(64, 100);
        cr_assert_eq(falloc_heap_open(mem, size, &o), 0);
        cr_assert_eq(o, h);
        cr_assert_eq(falloc_heap_open(mem, size - 1, &o), -EBADMSG, "the heap does not fit in the region");
        h->chunk_count++;
        cr_assert_eq(falloc_heap_open(mem, size, &o), -EBADMSG);
        h->chunk_count--;
        h->magic ^= 1;
        cr_assert_eq(falloc_heap_open(mem, size, &o), -EBADMSG);
        cr_assert_eq(falloc_heap_open((char *)mem + 4, size, &o), -EINVAL);
}

/*
 * What a peer that may write the heap can leave in it: a header of another version (version 1 kept a
 * count of free chunks, which a get reserved from: a count above the chunk count had a get on a full
 * heap look for a free bit for ever), a bitmap it scribbled on (every get still ends: one pass), 0 bits
 * past the last chunk (a get handed out a "chunk" past the heap's end).
 */
Test(falloc, a_corrupt_heap_is_refused_or_never_hands_out_memory_past_its_end) {
        fallocDeviceHeap *h = make(64, 100), *o;
        uint64_t size = falloc_heap_size(64, 100);
        h->version = 1;
        cr_assert_eq(falloc_heap_open(mem, size, &o), -EBADMSG, "a heap of version 1");
        h->version = FALLOC_VERSION;
        uint64_t *used = falloc_used_(heap); /* 100 chunks: 3 words of 32 and one of 4 */
        memset(used, 0xff, 32);
        cr_assert_null(fallocGetChunk(heap), "a bitmap that says every chunk is taken: NULL, not a search for ever");
        memset(used, 0, 24);
        used[3] = 0xfffffff0; /* chunks 100-127 do not exist */
        void *got[100];
        for (int i = 0; i < 100; i++)
                cr_assert(got[i] = fallocGetChunk(heap));
        char *c5 = (char *)heap + heap->chunks_offset + 5 * 64, *c70 = c5 + 65 * 64;
        fallocFreeChunk(c5, heap);
        fallocFreeChunk(c70, heap); /* this thread now looks in word 2 first */
        used[3] = 0xf;
        cr_assert_eq(fallocGetChunk(heap), c70);
        cr_assert_eq(fallocGetChunk(heap), c5, "bits of chunks 100-127 are no chunks, even when they read 0");
        cr_assert_eq(used[3], 0xffffffffull, "and are set again");
        cr_assert_null(fallocGetChunk(heap));
}

static atomic_bool scribbling;

static uint64_t xorshift(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* A peer that writes random words (all 0, all 1, any bits) over the bitmap while the others use the heap. */
static void *scribbler(void *arg) {
        uint64_t s = (uintptr_t)arg, *used = falloc_used_(heap);
        while (atomic_load(&scribbling)) {
                uint64_t r = xorshift(&s), v = r % 4 == 0 ? 0 : r % 4 == 1 ? ~0ull : xorshift(&s);
                atomic_store_explicit((_Atomic uint64_t *)&used[(r >> 8) % heap->words], v, memory_order_relaxed);
        }
        return NULL;
}

/* Gets, runs and frees (of what it got, and of chunks it never got) on a heap that a scribbler writes. */
static void *scribbled_on(void *arg) {
        uint64_t s = (uintptr_t)arg, n = 0, cs = heap->chunk_size, count = heap->chunk_count;
        char *chunks = (char *)heap + heap->chunks_offset, *held[16];
        for (int k = 0; k < 20000; k++) {
                uint64_t r = xorshift(&s);
                size_t len = cs;
                if (n < 16 && r % 3) {
                        char *p = r % 4 == 0 ? fallocGetChunks(1 + (r >> 8) % (8 * cs), &len, heap)
                                             : fallocGetChunk(heap);
                        if (!p)
                                continue;
                        if (p < chunks || (uint64_t)(p - chunks) % cs || (uint64_t)(p - chunks) + len > count * cs)
                                return p; /* outside the chunks */
                        memset(p, 1, len);
                        held[n++] = p;
                } else if (n) {
                        fallocFreeChunk(held[--n], heap);
                }
                if (r % 7 == 0)
                        fallocFreeChunk(chunks + (r >> 32) % count * cs, heap);
        }
        return NULL;
}

/* Every call on a bitmap that a peer keeps scribbling on ends and hands out only chunks of the heap. */
Test(falloc, a_bitmap_scribbled_on_meanwhile_never_hands_out_memory_past_the_heap) {
        make(64, 200); /* a last bitmap word of 8 chunks and 24 that are no chunks */
        pthread_t worker[3], peer;
        atomic_store(&scribbling, true);
        cr_assert_eq(pthread_create(&peer, NULL, scribbler, (void *)(uintptr_t)99), 0);
        for (uintptr_t i = 0; i < 3; i++)
                cr_assert_eq(pthread_create(&worker[i], NULL, scribbled_on, (void *)(i + 1)), 0);
        for (int i = 0; i < 3; i++) {
                void *outside;
                pthread_join(worker[i], &outside);
                cr_expect_null(outside, "a get handed out %p, not a chunk of the heap", outside);
        }
        atomic_store(&scribbling, false);
        pthread_join(peer, NULL);
        cr_assert_leq(falloc_heap_available(heap), 200);
}

Test(falloc, exhaustion_is_null_and_every_chunk_comes_back) {
        make(32, 130);
        void *got[130];
        for (int i = 0; i < 130; i++) {
                got[i] = fallocGetChunk(heap);
                cr_assert(got[i], "chunk %d of 130 is NULL", i);
                cr_assert_eq((uintptr_t)got[i] % 16, 0);
                memset(got[i], 0xa5, 32);
                for (int j = 0; j < i; j++)
                        cr_assert_neq(got[i], got[j], "a chunk handed out twice");
        }
        cr_assert_null(fallocGetChunk(heap), "an exhausted heap gives NULL");
        cr_assert_null(fallocGetChunks(1, NULL, heap));
        cr_assert_eq(falloc_heap_available(heap), 0);
        fallocFreeChunk(got[77], heap);
        cr_assert_eq(fallocGetChunk(heap), got[77], "a freed chunk is handed out again");
        for (int i = 0; i < 130; i++)
                fallocFreeChunk(got[i], heap);
        cr_assert_eq(falloc_heap_available(heap), 130);
        cr_assert_eq(heap->bad_frees, 0);
}

Test(falloc, runs_are_contiguous_or_null) {
        make(64, 200);
        size_t len = 1;
        char *a = fallocGetChunks(64 * 70 + 1, &len, heap);
        cr_assert(a);
        cr_assert_eq(len, 64 * 71, "a run is whole chunks");
        char *b = fallocGetChunks(64 * 128, &len, heap);
        cr_assert(b);
        cr_assert(b >= a + 64 * 71 || b + 64 * 128 <= a, "runs overlap");
        memset(a, 1, 64 * 71);
        memset(b, 2, 64 * 128);
        cr_assert_null(fallocGetChunks(64 * 2, &len, heap), "1 chunk left: no run of 2");
        cr_assert_eq(len, 0);
        cr_assert_null(fallocGetChunks(0, NULL, heap));
        cr_assert_null(fallocGetChunks(64 * 201, NULL, heap));
        cr_assert_eq(falloc_heap_available(heap), 1, "a refused run leaves no chunk taken");
        fallocFreeChunks(b, heap);
        cr_assert_eq(falloc_heap_available(heap), 129, "the whole run is freed");
        fallocFreeChunk(a, heap);
        cr_assert_eq(falloc_heap_available(heap), 200, "fallocFreeChunk frees a run as fallocFreeChunks does");
}

Test(falloc, a_fragmented_heap_has_no_run) {
        make(16, 256);
        void *got[256];
        for (int i = 0; i < 256; i++)
                got[i] = fallocGetChunk(heap);
        for (int i = 0; i < 256; i++)
                if (index_of(got[i]) % 2 == 0 && index_of(got[i]) != 200)
                        fallocFreeChunk(got[i], heap);
        cr_assert_eq(falloc_heap_available(heap), 127);
        cr_assert_null(fallocGetChunks(32, NULL, heap), "127 free chunks, none next to another");
        cr_assert_eq(falloc_heap_available(heap), 127);
        for (int i = 0; i < 256; i++)
                if (index_of(got[i]) == 101 || index_of(got[i]) == 103)
                        fallocFreeChunk(got[i], heap);
        char *r = fallocGetChunks(5 * 16, NULL, heap);
        cr_assert_eq(index_of(r), 100, "the only gap of 5 is chunks 100-104");
}

Test(falloc, refused_frees_change_nothing) {
        make(64, 64);
        char *a = fallocGetChunk(heap), *run = fallocGetChunks(64 * 3, NULL, heap);
        static char outside[64];
        fallocFreeChunk(a + 8, heap);
        fallocFreeChunk(run + 64, heap);
        fallocFreeChunk(outside, heap);
        fallocFreeChunk(NULL, heap);
        cr_assert_eq(heap->bad_frees, 3, "inside a chunk, inside a run, outside the heap");
        cr_assert_eq(falloc_heap_available(heap), 60);
        fallocFreeChunk(a, heap);
        fallocFreeChunk(a, heap);
        cr_assert_eq(heap->bad_frees, 4, "a double free is seen");
        cr_assert_eq(falloc_heap_available(heap), 61, "and gives nothing back twice");
        fallocFreeChunks(run, heap);
        cr_assert_eq(falloc_heap_available(heap), 64);
}

static atomic_bool racing;
static atomic_ullong attempts, seen_free;

/* Takes the heap's only run of two chunks and checks, while it holds it, that the bitmap says so. */
static void *run_holder(void *arg) {
        (void)arg;
        for (int k = 0; k < 100000; k++) {
                char *p = fallocGetChunks(2 * 64, NULL, heap);
                if (!p)
                        continue;
                if (falloc_heap_available(heap) != 0)
                        atomic_fetch_add(&seen_free, 1);
                fallocFreeChunks(p, heap);
        }
        return NULL;
}

/* Frees the second chunk of that run, which is never the start of anything, for as long as the holders run. */
static void *inside_freer(void *arg) {
        char *inside = (char *)arg;
        while (atomic_load(&racing)) {
                fallocFreeChunk(inside, heap);
                atomic_fetch_add(&attempts, 1);
        }
        return NULL;
}

/*
 * A pointer inside a run is refused whenever it is freed, even in the instant the run is being taken
 * or given back (version 2 of the heap wrote the run bits after the claim and cleared them before the
 * used bits, and such a free in between freed the chunk under the run's holder).
 */
Test(falloc, a_free_inside_a_held_run_is_refused_whatever_it_races_with) {
        make(64, 2);
        pthread_t holder[2], freer;
        atomic_store(&racing, true);
        cr_assert_eq(pthread_create(&freer, NULL, inside_freer, (char *)heap + heap->chunks_offset + 64), 0);
        for (int i = 0; i < 2; i++)
                cr_assert_eq(pthread_create(&holder[i], NULL, run_holder, NULL), 0);
        for (int i = 0; i < 2; i++)
                pthread_join(holder[i], NULL);
        atomic_store(&racing, false);
        pthread_join(freer, NULL);
        cr_assert_eq(atomic_load(&seen_free), 0, "a chunk of a held run read free %llu times",
                     (unsigned long long)atomic_load(&seen_free));
        cr_assert_eq(heap->bad_frees, atomic_load(&attempts), "every free inside the run was refused, and only those");
        cr_assert_eq(falloc_heap_available(heap), 2);
}

Test(falloc, the_default_heap_is_this_files) {
        make(64, 4);
        cr_assert_null(fallocGetChunk(NULL), "no default heap yet");
        fallocSetDefaultHeap(heap);
        void *p = fallocGetChunk(NULL);
        cr_assert(p);
        fallocFreeChunk(p, NULL);
        cr_assert_eq(falloc_heap_available(heap), 4);
        fallocSetDefaultHeap(NULL);
}

Test(falloc, a_context_is_a_stack_across_chunks) {
        make(128, 100);
        fallocCtx *ctx = fallocCreateCtx(heap);
        cr_assert(ctx);
        void *mark;
        unsigned short mark2;
        fallocMark(ctx, &mark, &mark2);
        cr_assert(fallocAtMark(ctx, mark, mark2));
        cr_assert_null(fallocRetract(ctx, 1), "nothing to retract");
        /* 1000 values of 8 bytes: 11 in the first chunk (88 bytes past the header), 14 in each of 71 more. */
        for (uint64_t i = 0; i < 1000; i++) {
                uint64_t *v = falloc(ctx, sizeof(*v), false);
                cr_assert(v, "push %llu", (unsigned long long)i);
                *v = i * 3;
                cr_assert_not(fallocAtMark(ctx, mark, mark2));
        }
        cr_assert_eq(falloc_heap_available(heap), 100 - 72);
        for (uint64_t i = 1000; i-- > 0;) {
                uint64_t *v = fallocRetract(ctx, sizeof(*v));
                cr_assert(v);
                cr_assert_eq(*v, i * 3, "pop %llu gave %llu", (unsigned long long)i, (unsigned long long)*v);
        }
        cr_assert(fallocAtMark(ctx, mark, mark2), "popping everything is back at the mark");
        cr_assert_eq(falloc_heap_available(heap), 100 - 2, "the context's chunk and one spare");
        cr_assert_null(fallocRetract(ctx, 8));
        fallocDisposeCtx(ctx);
        cr_assert_eq(falloc_heap_available(heap), 100);
        cr_assert_eq(heap->bad_frees, 0);
}

Test(falloc, context_marks_sizes_and_exhaustion) {
        make(64, 3);
        fallocCtx *ctx = fallocCreateCtx(heap);
        void *mark;
        unsigned short mark2;
        char *a = falloc(ctx, 3, true);
        cr_assert_eq((uintptr_t)a % 8, 0);
        cr_assert_eq((char *)falloc(ctx, 1, true), a + 8, "sizes are rounded up to 8");
        fallocMark(ctx, &mark, &mark2);
        cr_assert_null(falloc(ctx, 64 - 16 + 1, true), "more than a chunk holds beside its link");
        cr_assert(falloc(ctx, 48, true), "a whole chunk");
        cr_assert(falloc(ctx, 48, true), "the last chunk");
        cr_assert_null(falloc(ctx, 8, true), "the heap is exhausted");
        cr_assert_not(fallocAtMark(ctx, mark, mark2));
        cr_assert(fallocRetract(ctx, 48));
        cr_assert(fallocRetract(ctx, 48));
        cr_assert(fallocAtMark(ctx, mark, mark2), "back in the first chunk, where the mark was");
        cr_assert(falloc(ctx, 48, true), "pushing again reuses the spare chunk");
        fallocDisposeCtx(ctx);
        cr_assert_eq(falloc_heap_available(heap), 3);
        make(16, 8);
        cr_assert_null(fallocCreateCtx(heap), "a chunk too small for a context's header");
}
