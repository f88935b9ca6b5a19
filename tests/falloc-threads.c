/* SPDX-License-Identifier: MIT */
/*
 * The falloc heap under threads, with an invariant checker (falloc-impl.h,
 * "Theory").  A plain program, so that meson also builds it with
 * -fsanitize=thread (the test falloc-threads-tsan).
 *
 *   falloc-threads [-p] [THREADS [OPS [SEED]]]
 *
 * With -p the workers are processes (fork) instead of threads, each mapping
 * the heap (a memfd) again at an address of its own.
 *
 * 1. Drain: every thread takes single chunks until NULL; together they must
 *    get exactly chunk_count (no chunk twice, no NULL before exhaustion), then
 *    they give them all back at once.
 * 2. Churn: each thread takes single chunks and runs of 1..6 chunks (mostly
 *    on a heap too small for all of them, so that it is often exhausted),
 *    writes its mark through every byte, and checks them before it frees.  An
 *    owner word per chunk, set by compare-and-swap from 0, catches a chunk
 *    handed out twice; a run must be contiguous and as long as asked.
 * 3. At the end every chunk is back: the bitmap empty
 *    (past the last chunk: full), no bad free.
 *
 * Any violation prints what and where and exits 1.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloc/falloc.h>

#define CHUNK 64
#define HELD_MAX 24

/* What the workers share, in a MAP_SHARED mapping so that processes share it too. */
static struct shared {
        _Atomic uint64_t drained, nulls, runs_got;
        pthread_barrier_t barrier;
        _Atomic uint32_t owner[];
} * sh;
static fallocDeviceHeap *heap;
static uint64_t ops = 200000, seed = 1;
static int nthreads = 4;

static void fail(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "falloc-threads: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, " (seed %llu)\n", (unsigned long long)seed);
        va_end(ap);
        exit(1);
}

static uint64_t next(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* The chunk index of p, checked to be a chunk of the heap. */
static uint64_t index_of(const void *p) {
        const char *chunks = (const char *)heap + heap->chunks_offset;
        if ((const char *)p < chunks || ((const char *)p - chunks) % heap->chunk_size ||
            (uint64_t)((const char *)p - chunks) / heap->chunk_size >= heap->chunk_count)
                fail("%p is not a chunk of the heap", p);
        return (uint64_t)((const char *)p - chunks) / heap->chunk_size;
}

static void own(uint32_t me, void *p, uint64_t n) {
        uint64_t i = index_of(p);
        if (i + n > heap->chunk_count)
                fail("a run of %llu at chunk %llu passes the end", (unsigned long long)n, (unsigned long long)i);
        for (uint64_t j = i; j < i + n; j++) {
                uint32_t was = 0;
                if (!atomic_compare_exchange_strong_explicit(&sh->owner[j], &was, me, memory_order_relaxed,
                                                             memory_order_relaxed))
                        fail("chunk %llu handed to thread %u while thread %u holds it", (unsigned long long)j, me, was);
        }
        memset(p, (int)me, n * heap->chunk_size);
}

static void disown(uint32_t me, void *p, uint64_t n) {
        uint64_t i = index_of(p);
        for (uint64_t b = 0; b < n * heap->chunk_size; b++)
                if (((unsigned char *)p)[b] != (unsigned char)me)
                        fail("byte %llu of thread %u's chunk %llu was overwritten", (unsigned long long)b, me,
                             (unsigned long long)i);
        for (uint64_t j = i; j < i + n; j++)
                atomic_store_explicit(&sh->owner[j], 0, memory_order_relaxed);
        fallocFreeChunk(p, heap);
}

static void *drain(uint32_t me) {
        void **got = malloc(heap->chunk_count * sizeof(*got));
        uint64_t n = 0;
        void *p;
        while ((p = fallocGetChunk(heap))) {
                own(me, p, 1);
                got[n++] = p;
        }
        atomic_fetch_add(&sh->drained, n);
        pthread_barrier_wait(&sh->barrier);
        if (atomic_load(&sh->drained) != heap->chunk_count)
                fail("the threads drained %llu chunks of %llu", (unsigned long long)atomic_load(&sh->drained),
                     (unsigned long long)heap->chunk_count);
        while (n)
                disown(me, got[--n], 1);
        free(got);
        return NULL;
}

static void *worker(void *arg) {
        uint32_t me = (uint32_t)(uintptr_t)arg;
        uint64_t s = seed * 0x9E3779B97F4A7C15ull + me, held = 0, len[HELD_MAX];
        void *ptr[HELD_MAX];

        drain(me);
        pthread_barrier_wait(&sh->barrier);
        for (uint64_t op = 0; op < ops; op++) {
                uint64_t r = next(&s);
                if (held < HELD_MAX && (held == 0 || r % 8 < 5)) {
                        uint64_t n = 1;
                        size_t got = 0;
                        void *p;
                        if (r % 4 == 0) {
                                n = 1 + (r >> 8) % 6;
                                p = fallocGetChunks(n * CHUNK - (r >> 16) % CHUNK, &got, heap);
                                if (p && got != n * CHUNK)
                                        fail("a run of %llu chunks came with allocLength %zu", (unsigned long long)n,
                                             got);
                                if (p)
                                        atomic_fetch_add(&sh->runs_got, 1);
                        } else {
                                p = fallocGetChunk(heap);
                        }
                        if (!p) {
                                atomic_fetch_add(&sh->nulls, 1);
                                continue;
                        }
                        own(me, p, n);
                        ptr[held] = p;
                        len[held++] = n;
                } else {
                        uint64_t k = (r >> 8) % held;
                        disown(me, ptr[k], len[k]);
                        ptr[k] = ptr[--held];
                        len[k] = len[held];
                }
        }
        while (held--)
                disown(me, ptr[held], len[held]);
        return NULL;
}

static void check_empty(void) {
        uint64_t *used = (uint64_t *)((char *)heap + heap->used_offset);
        uint64_t count = heap->chunk_count;
        if (falloc_heap_available(heap) != count || heap->bad_frees)
                fail("at the end %llu of %llu chunks are free, bad frees %llu",
                     (unsigned long long)falloc_heap_available(heap), (unsigned long long)count,
                     (unsigned long long)heap->bad_frees);
        for (uint64_t w = 0; w < heap->words; w++) { /* 32 chunks a word: their used bits, then their run bits */
                uint64_t pad = w == heap->words - 1 && count % 32 ? 0xffffffffull << (count % 32) & 0xffffffffull : 0;
                if (used[w] != pad)
                        fail("at the end bitmap word %llu is %#llx", (unsigned long long)w,
                             (unsigned long long)used[w]);
        }
}

/* The heap's memfd mapped (again: each process maps it at an address of its own), opened unless format. */
static fallocDeviceHeap *map_heap(int fd, uint64_t size, bool format) {
        fallocDeviceHeap *h = NULL;
        void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mem == MAP_FAILED ||
            (format ? falloc_heap_format(mem, size, CHUNK, &h) : falloc_heap_open(mem, size, &h)) < 0)
                fail("cannot map a heap of %llu bytes", (unsigned long long)size);
        return h;
}

/* Runs worker in n processes; the first that fails takes the others down with it. */
static void run_procs(int fd, uint64_t size) {
        pid_t pid[64];
        for (int i = 0; i < nthreads; i++) {
                pid[i] = fork();
                if (pid[i] < 0)
                        fail("fork");
                if (pid[i] == 0) {
                        heap = map_heap(fd, size, false);
                        worker((void *)(uintptr_t)(i + 1));
                        _exit(0);
                }
        }
        for (int left = nthreads; left; left--) {
                int status;
                pid_t p = wait(&status);
                if (p < 0)
                        fail("wait");
                if (!WIFEXITED(status) || WEXITSTATUS(status)) {
                        for (int i = 0; i < nthreads; i++)
                                if (pid[i] != p)
                                        kill(pid[i], SIGKILL);
                        while (wait(NULL) > 0)
                                ;
                        fail("a worker process failed (status %#x)", status);
                }
        }
}

int main(int argc, char **argv) {
        bool procs = argc > 1 && !strcmp(argv[1], "-p");
        argc -= procs;
        argv += procs;
        if (argc > 1)
                nthreads = atoi(argv[1]);
        if (argc > 2)
                ops = strtoull(argv[2], NULL, 0);
        if (argc > 3)
                seed = strtoull(argv[3], NULL, 0);
        if (nthreads < 1 || nthreads > 64 || !seed)
                fail("usage: falloc-threads [-p] [THREADS (1-64) [OPS [SEED (not 0)]]]");

        /* Fewer chunks than the threads hold on average once they are busy (about 40 each), and a count that
         * leaves part of a bitmap word: the heap is exhausted often. */
        uint64_t count = (uint64_t)nthreads * HELD_MAX * 3 / 2 + 37, size = falloc_heap_size(CHUNK, count);
        int fd = memfd_create("falloc-threads", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
                fail("cannot make a memfd of %llu bytes", (unsigned long long)size);
        heap = map_heap(fd, size, true);
        sh = mmap(NULL, sizeof(*sh) + count * sizeof(sh->owner[0]), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
        pthread_barrierattr_t attr;
        if (sh == MAP_FAILED || pthread_barrierattr_init(&attr) ||
            pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) ||
            pthread_barrier_init(&sh->barrier, &attr, (unsigned)nthreads))
                fail("cannot share the checker's state");
        if (procs) {
                run_procs(fd, size);
        } else {
                pthread_t t[64];
                for (int i = 0; i < nthreads; i++)
                        if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)))
                                fail("pthread_create");
                for (int i = 0; i < nthreads; i++)
                        pthread_join(t[i], NULL);
        }
        check_empty();
        if (nthreads > 1 && !atomic_load(&sh->nulls))
                fail("the heap was never exhausted: the test did not test that");
        printf("falloc-threads: %d %s x %llu operations on %llu chunks: %llu NULLs (exhausted), %llu runs, "
               "every chunk back\n",
               nthreads, procs ? "processes" : "threads", (unsigned long long)ops,
               (unsigned long long)heap->chunk_count, (unsigned long long)atomic_load(&sh->nulls),
               (unsigned long long)atomic_load(&sh->runs_got));
        return 0;
}
