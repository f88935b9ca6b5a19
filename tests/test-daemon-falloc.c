/* SPDX-License-Identifier: MIT */
/* falloc heaps as allocd regions: two processes on one heap in a host pool, at different addresses. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <alloc/falloc-client.h>

#include "harness.h"

#define HEAP_SIZE (1u << 20)
#define CHUNK 256
#define CHURN_NS 400000000ll /* long enough for both processes to run at once on a busy machine */
#define HELD 16

static struct daemon d;
static struct alloc_client *c;

static void setup(void) {
        daemon_start(&d, "[pool h]\nkind = host\nsize = 8M\n[pool f]\nkind = fpga\nranges = 0x1000+1M\n");
        c = daemon_connect(&d);
}

static void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(daemon_falloc, .init = setup, .fini = teardown, .timeout = 120);

static void stamp(uint64_t *p, uint64_t tag) {
        for (size_t i = 0; i < CHUNK / 8; i++)
                p[i] = tag + i;
}

static bool stamped(const uint64_t *p, uint64_t tag) {
        for (size_t i = 0; i < CHUNK / 8; i++)
                if (p[i] != tag + i)
                        return false;
        return true;
}

/*
 * For CHURN_NS, gets and frees chunks, HELD at a time, each stamped with who and when and
 * checked before it goes back: a chunk the other process got at the same time
 * would carry its stamp.  Returns the number of chunks found overwritten.
 */
static long long now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static uint64_t churn(fallocDeviceHeap *heap, uint64_t who) {
        uint64_t *held[HELD] = {0}, tags[HELD] = {0}, bad = 0;
        long long end = now_ns() + CHURN_NS;
        for (uint64_t op = 0; op % 1024 || now_ns() < end; op++) {
                int k = (int)(op % HELD);
                if (held[k]) {
                        bad += !stamped(held[k], tags[k]);
                        fallocFreeChunk(held[k], heap);
                }
                if ((held[k] = fallocGetChunk(heap)))
                        stamp(held[k], tags[k] = who << 48 | op << 8);
        }
        for (int k = 0; k < HELD; k++)
                if (held[k]) {
                        bad += !stamped(held[k], tags[k]);
                        fallocFreeChunk(held[k], heap);
                }
        return bad;
}

/* Takes every chunk it can get; returns them in got (size: the chunk count), and how many. */
static uint64_t drain(fallocDeviceHeap *heap, void **got) {
        uint64_t n = 0;
        while ((got[n] = fallocGetChunk(heap)))
                n++;
        return n;
}

/* The child: attach, churn beside the parent, drain beside it, report, free on its word. */
static int child(int to_parent, int from_parent, const fallocDeviceHeap *parents) {
        struct alloc_client *k;
        struct alloc_region r;
        fallocDeviceHeap *heap;
        static void *got[HEAP_SIZE / CHUNK];
        char go;

        if (alloc_connect(&k, d.sock, "child") < 0 || alloc_falloc_attach(k, "heap/shared", NULL, &r, &heap) < 0)
                return 10;
        if (heap == parents)
                return 11; /* the point is another address: the parent's mapping is still here too */
        uint64_t msg[2] = {(uint64_t)(uintptr_t)heap, 0};
        if (write(to_parent, msg, 8) != 8 || read(from_parent, &go, 1) != 1)
                return 12;
        msg[0] = churn(heap, 2);
        if (read(from_parent, &go, 1) != 1)
                return 13;
        msg[1] = drain(heap, got);
        if (write(to_parent, msg, sizeof(msg)) != sizeof(msg) || read(from_parent, &go, 1) != 1)
                return 14;
        while (msg[1])
                fallocFreeChunk(got[--msg[1]], heap);
        alloc_disconnect(k);
        return 0;
}

Test(daemon_falloc, two_processes_share_one_heap) {
        struct alloc_region r;
        struct alloc_opts o = {.name = "heap/shared"};
        fallocDeviceHeap *heap;
        static void *got[HEAP_SIZE / CHUNK];
        int up[2], down[2], status;
        uint64_t msg[2];

        cr_assert_eq(alloc_falloc_new(c, "h", HEAP_SIZE, CHUNK, &o, &r, &heap), 0, "%s", alloc_last_error());
        cr_assert_eq((void *)heap, r.ptr);
        uint64_t count = heap->chunk_count;
        cr_assert_eq(count, 4091, "1 MiB holds 4091 chunks of 256 bytes beside 1280 of header and bitmaps");
        cr_assert(pipe(up) == 0 && pipe(down) == 0);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                close(up[0]); /* so that either side sees EOF, not a hang, when the other dies */
                close(down[1]);
                _exit(child(up[1], down[0], heap));
        }
        close(up[1]);
        close(down[0]);
        cr_assert_eq(read(up[0], msg, 8), 8, "the child could not attach the heap");
        cr_assert_neq(msg[0], (uint64_t)(uintptr_t)heap, "the child maps the heap elsewhere");
        cr_assert_eq(write(down[1], "g", 1), 1);
        cr_assert_eq(churn(heap, 1), 0, "a chunk of the parent's was overwritten");
        cr_assert_eq(write(down[1], "d", 1), 1);
        uint64_t mine = drain(heap, got);
        cr_assert_eq(read(up[0], msg, sizeof(msg)), sizeof(msg));
        cr_assert_eq(msg[0], 0, "%llu of the child's chunks were overwritten", (unsigned long long)msg[0]);
        cr_assert_eq(mine + msg[1], count, "together they drained %llu + %llu chunks of %llu", (unsigned long long)mine,
                     (unsigned long long)msg[1], (unsigned long long)count);
        cr_assert_eq(falloc_heap_available(heap), 0);
        cr_assert_eq(write(down[1], "f", 1), 1);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %#x)", status);
        while (mine)
                fallocFreeChunk(got[--mine], heap);
        cr_assert_eq(falloc_heap_available(heap), count, "every chunk is back");
        cr_assert_eq(heap->bad_frees, 0);
        alloc_disconnect(c);
        c = daemon_connect(&d);
        cr_assert_eq(wait_used(c, "h", 0), 0, "the heap's region went with its last holder");
}

Test(daemon_falloc, attach_checks_that_a_region_holds_a_heap) {
        struct alloc_region r, a;
        struct alloc_opts o = {.name = "plain"};
        fallocDeviceHeap *heap;

        cr_assert_eq(alloc_region_new(c, "h", 65536, &o, &r), 0);
        memset(r.ptr, 0, 65536);
        cr_assert_eq(alloc_falloc_attach(c, "plain", NULL, &a, &heap), -EBADMSG);
        cr_assert(strstr(alloc_last_error(), "holds no falloc heap"), "%s", alloc_last_error());
        cr_assert_eq(alloc_falloc_attach(c, "no-such-heap", NULL, &a, &heap), -ENOENT);
        cr_assert_eq(alloc_falloc_new(c, "h", 600, CHUNK, NULL, &a, &heap), -ENOSPC);
        cr_assert(strstr(alloc_last_error(), "ask for at least"), "%s", alloc_last_error());
        cr_assert_eq(alloc_falloc_new(c, "h", 65536, 0, NULL, &a, &heap), -EINVAL);
        cr_assert_eq(alloc_falloc_new(c, "f", 65536, CHUNK, NULL, &a, &heap), -EINVAL, "an fpga pool has no memory");
        cr_assert_eq(pool_used(c, "h"), 65536, "refused heaps leave nothing behind");
        cr_assert_eq(pool_used(c, "f"), 0);
}

Test(daemon_falloc, a_named_heap_is_formatted_before_it_can_be_attached) {
        struct alloc_region r, a;
        struct alloc_opts o = {.name = "heap/later", .flags = ALLOC_UNSEALED};
        fallocDeviceHeap *heap, *h2;

        cr_assert_eq(alloc_falloc_new(c, "h", 65536, 64, &o, &r, &heap), 0);
        cr_assert_eq(alloc_falloc_attach(c, "heap/later", NULL, &a, &h2), -EAGAIN, "ALLOC_UNSEALED: the caller seals");
        void *p = fallocGetChunk(heap);
        cr_assert(p);
        cr_assert_eq(alloc_region_seal(c, r.id), 0);
        cr_assert_eq(alloc_falloc_attach(c, "heap/later", NULL, &a, &h2), 0, "%s", alloc_last_error());
        cr_assert_eq(falloc_heap_available(h2), heap->chunk_count - 1, "the chunk taken before the seal");
}
