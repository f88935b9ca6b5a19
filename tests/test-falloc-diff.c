/* SPDX-License-Identifier: MIT */
/* The falloc heap against a brute-force model (falloc(3); docs/HACKING.md, "falloc-diff"). */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <sanitizer/asan_interface.h> /* no-ops unless built with ASan */
#include <stdlib.h>
#include <string.h>

#include <alloc/falloc.h>

static void *mem;
static fallocDeviceHeap *heap;

static uint64_t index_of(const void *p) {
        return (uint64_t)((const char *)p - ((const char *)heap + heap->chunks_offset)) / heap->chunk_size;
}

/* A heap of count chunks of chunk bytes, the last one's memory given back. */
static void make(uint64_t chunk, uint64_t count) {
        uint64_t size = falloc_heap_size(chunk, count);
        free(mem);
        mem = aligned_alloc(FALLOC_CHUNKS_ALIGN, (size + 255) / 256 * 256);
        cr_assert(size && mem && falloc_heap_format(mem, size, chunk, &heap) == 0 && heap->chunk_count == count);
}

/*
 * Differential: one thread, seeded random gets, runs and frees (good and bad) against a brute-force
 * model, an array of chunk states, on heaps of chunk counts around the bitmap's 32-chunk words.  In one
 * thread a run is the first fit, so its chunk is known; a single chunk is any free one.  After every
 * step the bitmap must say what the model says.  Reproduce a failure with FALLOC_DIFF_SEED=<seed
 * printed> (and FALLOC_DIFF_OPS, the operations on each heap).
 */
#define DIFF_FREE UINT32_MAX

static struct {
        uint64_t seed, rng, op, count, cs, held, bad_frees;
        uint64_t nulls, runs; /* what the steps did, all heaps together: so that they are seen to do it */
        uint32_t *owner;      /* the first chunk of the allocation holding each chunk, or DIFF_FREE */
        uint32_t *len;        /* at an allocation's first chunk: its length in chunks */
        uint64_t *heads;      /* the first chunks of the allocations held, in no order */
        uint64_t *before;     /* the bitmap before a bad free, which must leave it as it was */
        char *chunks;
} d;

static void diff_fail(const char *fmt, ...) {
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        cr_assert_fail("FALLOC_DIFF_SEED=%llu, %llu chunks, op %llu: %s", (unsigned long long)d.seed,
                       (unsigned long long)d.count, (unsigned long long)d.op, what);
}

#define DCHECK(cond, ...)                                                                                              \
        do {                                                                                                           \
                if (!(cond))                                                                                           \
                        diff_fail(__VA_ARGS__);                                                                        \
        } while (0)

static uint64_t diff_next(uint64_t n) {
        uint64_t z = (d.rng += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return n ? z % n : z;
}

static uint64_t diff_free_count(void) {
        uint64_t n = 0;
        for (uint64_t i = 0; i < d.count; i++)
                n += d.owner[i] == DIFF_FREE;
        return n;
}

/* The model's first gap of n free chunks, or FALLOC_NONE_. */
static uint64_t diff_first_fit(uint64_t n) {
        for (uint64_t i = 0, gap = 0; i < d.count; i++)
                if ((gap = d.owner[i] == DIFF_FREE ? gap + 1 : 0) == n)
                        return i + 1 - n;
        return FALLOC_NONE_;
}

static unsigned char diff_mark(uint64_t i) {
        return (unsigned char)(i * 7 + 1);
}

/* Both bits of every chunk as the model has them; bits of no chunk: taken, not in a run. */
static void diff_check_bitmap(void) {
        uint64_t *used = falloc_used_(heap);
        DCHECK(falloc_heap_available(heap) == diff_free_count(), "%llu chunks available, the model has %llu",
               (unsigned long long)falloc_heap_available(heap), (unsigned long long)diff_free_count());
        DCHECK(heap->bad_frees == d.bad_frees, "%llu bad frees counted, the model made %llu",
               (unsigned long long)heap->bad_frees, (unsigned long long)d.bad_frees);
        for (uint64_t c = 0; c < heap->words * 32; c++) {
                int u = used[c / 32] >> c % 32 & 1, r = used[c / 32] >> (32 + c % 32) & 1;
                int want_u = c >= d.count || d.owner[c] != DIFF_FREE, want_r = c < d.count && want_u && d.owner[c] != c;
                DCHECK(u == want_u && r == want_r, "word %llu is %#llx: chunk %llu reads used %d run %d, not %d %d",
                       (unsigned long long)(c / 32), (unsigned long long)used[c / 32], (unsigned long long)c, u, r,
                       want_u, want_r);
        }
}

/* What a get returned, n chunks at p: every one of them free in the model, now held. */
static void diff_take(char *p, uint64_t n) {
        uint64_t i = index_of(p);
        DCHECK(p >= d.chunks && (uint64_t)(p - d.chunks) % d.cs == 0 && i + n <= d.count,
               "a run of %llu at %p is not chunks of the heap", (unsigned long long)n, (void *)p);
        for (uint64_t j = i; j < i + n; j++) {
                DCHECK(d.owner[j] == DIFF_FREE, "chunk %llu handed out while %llu holds it", (unsigned long long)j,
                       (unsigned long long)d.owner[j]);
                d.owner[j] = (uint32_t)i;
        }
        d.len[i] = (uint32_t)n;
        d.heads[d.held++] = i;
        ASAN_UNPOISON_MEMORY_REGION(p, n * d.cs);
        memset(p, diff_mark(i), n * d.cs);
}

static void diff_get(void) {
        uint64_t r = diff_next(10), n = r == 0 ? 1 + diff_next(d.count + 1) : 1 + diff_next(d.count < 9 ? d.count : 9);
        uint64_t avail = diff_free_count(), want = n > d.count ? FALLOC_NONE_ : n == 1 ? 0 : diff_first_fit(n);
        size_t len = 12345, length = (n - 1) * d.cs + 1 + diff_next(d.cs);
        if (r == 1) { /* a single chunk */
                char *p = fallocGetChunk(heap);
                DCHECK(!p == !avail, "a get returned %p with %llu chunks free", (void *)p, (unsigned long long)avail);
                d.nulls += !p;
                if (p)
                        diff_take(p, 1);
                return;
        }
        if (r == 2) {
                DCHECK(!fallocGetChunks(0, &len, heap) && len == 0, "a run of 0 bytes is not NULL");
                return;
        }
        char *p = fallocGetChunks(length, r % 2 ? &len : NULL, heap);
        if (n == 1)
                DCHECK(!p == !avail, "a run of 1 returned %p with %llu chunks free", (void *)p,
                       (unsigned long long)avail);
        else
                DCHECK(p ? index_of(p) == want : want == FALLOC_NONE_,
                       "a run of %llu returned chunk %lld; the first fit is %lld", (unsigned long long)n,
                       p ? (long long)index_of(p) : -1ll, (long long)want);
        if (r % 2)
                DCHECK(len == (p ? n * d.cs : 0), "a run of %llu came with allocLength %zu", (unsigned long long)n,
                       len);
        d.nulls += !p;
        d.runs += p && n > 1;
        if (p)
                diff_take(p, n);
}

/* Gives back the k-th allocation held: exactly its chunks come back, untouched while it was held. */
static void diff_give(uint64_t k) {
        uint64_t i = d.heads[k], n = d.len[i];
        char *p = d.chunks + i * d.cs;
        for (uint64_t b = 0; b < n * d.cs; b++)
                DCHECK((unsigned char)p[b] == diff_mark(i), "byte %llu of the run at chunk %llu changed",
                       (unsigned long long)b, (unsigned long long)i);
        ASAN_POISON_MEMORY_REGION(p, n * d.cs);
        if (diff_next(2))
                fallocFreeChunks(p, heap);
        else
                fallocFreeChunk(p, heap);
        for (uint64_t j = i; j < i + n; j++)
                d.owner[j] = DIFF_FREE;
        d.heads[k] = d.heads[--d.held];
}

/* A free of what was not handed out (inside a run or a chunk, a free chunk, outside the chunks): refused, counted. */
static void diff_bad_free(void) {
        static char elsewhere[64];
        uint64_t r = diff_next(4), j = diff_next(d.count), k = d.held ? diff_next(d.held) : 0;
        char *p;
        if (r == 0 && d.held && d.len[d.heads[k]] > 1)
                p = d.chunks + (d.heads[k] + 1 + diff_next(d.len[d.heads[k]] - 1)) * d.cs;
        else if (r == 1)
                p = d.chunks + j * d.cs + 1 + diff_next(d.cs - 1);
        else if (r == 2 && d.owner[j] == DIFF_FREE)
                p = d.chunks + j * d.cs;
        else if (diff_next(3) == 0)
                p = (char *)heap + diff_next(heap->chunks_offset);
        else
                p = diff_next(2) ? elsewhere : d.chunks + (d.count + diff_next(3)) * d.cs + diff_next(d.cs);
        memcpy(d.before, falloc_used_(heap), heap->words * 8);
        if (diff_next(2))
                fallocFreeChunks(p, heap);
        else
                fallocFreeChunk(p, heap);
        d.bad_frees++;
        DCHECK(!memcmp(d.before, falloc_used_(heap), heap->words * 8), "a bad free (kind %llu, %p) changed the bitmap",
               (unsigned long long)r, (void *)p);
}

static void diff_run(uint64_t chunk, uint64_t count, uint64_t ops) {
        make(chunk, count);
        d.count = count;
        d.cs = heap->chunk_size;
        d.chunks = (char *)heap + heap->chunks_offset;
        d.held = d.bad_frees = 0;
        d.owner = malloc(count * sizeof(*d.owner));
        d.len = malloc(count * sizeof(*d.len));
        d.heads = malloc(count * sizeof(*d.heads));
        d.before = malloc(heap->words * 8);
        cr_assert(d.owner && d.len && d.heads && d.before);
        memset(d.owner, 0xff, count * sizeof(*d.owner));
        /* Under ASan: what no call may touch, free chunks and the bytes between the bitmap and chunk 0. */
        uint64_t *end = falloc_used_(heap) + heap->words;
        ASAN_POISON_MEMORY_REGION(end, (uint64_t)(d.chunks + count * d.cs - (char *)end));
        diff_check_bitmap();
        uint64_t target = 50; /* percent of the chunks held that the steps lean to, changed now and then */
        for (d.op = 0; d.op < ops; d.op++) {
                if (diff_next(200) == 0)
                        target = diff_next(130); /* over 100: gets on a full heap */
                uint64_t r = diff_next(100);
                if (r < 12) {
                        diff_bad_free();
                } else if (r == 12) {
                        fallocFreeChunk(NULL, heap); /* nothing, and no bad free */
                } else if (r == 13 && diff_next(10) == 0) {
                        while (d.held)
                                diff_give(d.held - 1);
                } else if (!d.held || (count - diff_free_count()) * 100 < target * count) {
                        diff_get();
                } else {
                        diff_give(diff_next(d.held));
                }
                diff_check_bitmap();
        }
        while (d.held)
                diff_give(diff_next(d.held));
        diff_check_bitmap();
        DCHECK(falloc_heap_available(heap) == count, "not every chunk came back");
        ASAN_UNPOISON_MEMORY_REGION(end, (uint64_t)(d.chunks + count * d.cs - (char *)end));
        free(d.owner);
        free(d.len);
        free(d.heads);
        free(d.before);
}

static uint64_t diff_env(const char *name, uint64_t dflt) {
        const char *v = getenv(name);
        return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static void diff_counts(const uint64_t *counts, size_t n, uint64_t default_seed) {
        uint64_t ops = diff_env("FALLOC_DIFF_OPS", 20000);
        uint64_t bad = 0;
        d.seed = d.rng = diff_env("FALLOC_DIFF_SEED", default_seed);
        d.nulls = d.runs = 0;
        for (size_t k = 0; k < n; k++) {
                diff_run(16 << k % 3, counts[k], ops);
                bad += d.bad_frees;
        }
        cr_log_info(
                "FALLOC_DIFF_SEED=%llu: %llu operations on each of %zu heaps: %llu runs, %llu NULLs, %llu bad frees",
                (unsigned long long)d.seed, (unsigned long long)ops, n, (unsigned long long)d.runs,
                (unsigned long long)d.nulls, (unsigned long long)bad);
}

Test(falloc_diff, counts_around_one_bitmap_word) {
        static const uint64_t counts[] = {1, 2, 3, 31, 32, 33};
        diff_counts(counts, sizeof(counts) / sizeof(counts[0]), 1);
}

Test(falloc_diff, counts_around_two_and_more_words) {
        static const uint64_t counts[] = {63, 64, 65, 95, 96, 97, 200, 257};
        diff_counts(counts, sizeof(counts) / sizeof(counts[0]), 2);
}
