/* SPDX-License-Identifier: MIT */
/*
 * falloc heaps as allocd regions: two processes on one heap in a host pool, at different addresses;
 * the region's format tag, and the heaps allocd writes itself (inline, on a worker, in a region's
 * own memfd).
 */
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
        daemon_start(&d, "[pool h]\nkind = host\nsize = 8M\n[pool f]\nkind = fpga\nranges = 0x1000+1M\n"
                         "[pool iso]\nkind = host\nsize = 8M\nisolation = region\n");
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
        if (r.format != ALLOC_FORMAT_FALLOC || r.chunk_size != CHUNK || r.chunk_count != heap->chunk_count)
                return 15; /* the geometry comes with the region, and it is the header's */
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
        cr_assert_eq(count, 4091, "1 MiB holds 4091 chunks of 256 bytes beside 1280 of header and bitmap");
        cr_assert(r.format == ALLOC_FORMAT_FALLOC && r.chunk_size == CHUNK && r.chunk_count == count);
        cr_assert(r.formatted_by_allocd, "allocd writes the heaps of host pools");
        cr_assert(pipe(up) == 0 && pipe(down) == 0);
        pid_t pid = test_fork();
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

/* A heap allocd made: valid at once, every chunk free, whatever the bytes were before. */
static void assert_fresh_heap(void *at, const struct alloc_region *r, uint64_t chunk_size) {
        fallocDeviceHeap *h;
        void *p;
        uint64_t n = 0;

        cr_assert(r->format == ALLOC_FORMAT_FALLOC && r->formatted_by_allocd);
        cr_assert_eq(falloc_heap_open(at, r->size, &h), 0, "no heap in region %llu", (unsigned long long)r->id);
        cr_assert(h->chunk_size == chunk_size && h->chunk_count == r->chunk_count && r->chunk_size == chunk_size);
        cr_assert_eq(falloc_heap_available(h), h->chunk_count);
        while ((p = fallocGetChunk(h))) {
                memset(p, 0x5a, chunk_size); /* every chunk lies in the region */
                n++;
        }
        cr_assert_eq(n, h->chunk_count, "%llu chunks of %llu", (unsigned long long)n,
                     (unsigned long long)h->chunk_count);
}

Test(daemon_falloc, allocd_writes_the_heap_over_what_was_there) {
        struct alloc_region raw, r, a;
        struct alloc_opts o = {.format = ALLOC_FORMAT_FALLOC, .chunk_size = 100, .name = "heap/by-allocd"};
        struct alloc_client *other = daemon_connect(&d);
        fallocDeviceHeap *heap;

        cr_assert_eq(alloc_region_new(c, "h", 65536, NULL, &raw), 0);
        memset(raw.ptr, 0xff, 65536); /* an old heap's bitmap: every chunk taken */
        cr_assert_eq(alloc_region_free(c, raw.id), 0);
        cr_assert_eq(alloc_region_new(c, "h", 65536, &o, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(r.addr, raw.addr, "the same bytes again (lowest fit)");
        cr_assert_eq(r.chunk_size, 112, "rounded up to 16");
        cr_assert(r.sealed, "allocd wrote it before anyone could attach it: no Seal needed");
        cr_assert_eq(alloc_falloc_attach(other, "heap/by-allocd", NULL, &a, &heap), 0, "%s", alloc_last_error());
        cr_assert(a.format == ALLOC_FORMAT_FALLOC && a.chunk_count == r.chunk_count && a.chunk_size == 112);
        assert_fresh_heap(r.ptr, &r, 112);
        alloc_disconnect(other);
}

Test(daemon_falloc, a_large_heap_is_written_on_a_worker) {
        /* 16-byte chunks: over a MiB of bitmap (ZERO_INLINE_MAX) in 72 MiB. */
        struct daemon big;
        struct alloc_client *k;
        struct alloc_region r;
        struct alloc_opts o = {.format = ALLOC_FORMAT_FALLOC, .chunk_size = 16, .flags = ALLOC_ZERO};

        daemon_start(&big, "[pool b]\nkind = host\nsize = 80M\n");
        k = daemon_connect(&big);
        cr_assert_eq(alloc_region_new(k, "b", 72 << 20, &o, &r), 0, "%s", alloc_last_error());
        cr_assert_gt(falloc_heap_meta_size(72 << 20, 16), 1 << 20);
        assert_fresh_heap(r.ptr, &r, 16);
        alloc_disconnect(k);
        daemon_stop(&big);
}

Test(daemon_falloc, allocd_writes_heaps_in_a_regions_own_memfd) {
        struct alloc_opts o = {.format = ALLOC_FORMAT_FALLOC, .chunk_size = 64, .name = "heap/small"};
        struct alloc_client *other = daemon_connect(&d);
        struct alloc_region r, a;
        fallocDeviceHeap *heap;

        cr_assert_eq(alloc_region_new(c, "iso", 65536, &o, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_falloc_attach(other, "heap/small", NULL, &a, &heap), 0, "%s", alloc_last_error());
        cr_assert_neq(a.ptr, r.ptr, "each holder maps the region's memfd on its own");
        assert_fresh_heap(heap, &a, 64);
        o.name = "heap/large"; /* its memory is taken on a worker, and the heap written there */
        cr_assert_eq(alloc_falloc_new(c, "iso", 4 << 20, 4096, &o, &r, &heap), 0, "%s", alloc_last_error());
        assert_fresh_heap(heap, &r, 4096);
        alloc_disconnect(other);
}

Test(daemon_falloc, a_bad_format_is_refused_and_changes_nothing) {
        static const struct {
                const char *pool;
                uint64_t size;
                enum alloc_format format;
                uint64_t chunk_size;
                const char *says;
        } bad[] = {
                {"h", 65536, ALLOC_FORMAT_FALLOC, 0, "needs a chunk_size of 1 to 1073741824"},
                {"h", 65536, ALLOC_FORMAT_FALLOC, (1ull << 30) + 1, "needs a chunk_size of 1 to 1073741824"},
                /* Rounded up to 16, these wrapped to 0 and passed the check: INTERNAL once the region was made. */
                {"h", 100, ALLOC_FORMAT_FALLOC, UINT64_MAX, "needs a chunk_size of 1 to 1073741824"},
                {"iso", 4096, ALLOC_FORMAT_FALLOC, UINT64_MAX - 14, "needs a chunk_size of 1 to 1073741824"},
                {"h", 600, ALLOC_FORMAT_FALLOC, 256, "600 bytes do not hold a falloc heap of 256-byte chunks"},
                {"iso", 4096, ALLOC_FORMAT_FALLOC, 4096, "ask for at least 4608 bytes"},
                {"f", 65536, ALLOC_FORMAT_FALLOC, 256, "a falloc heap needs memory"},
                {"h", 65536, (enum alloc_format)7, 0, "unknown format 7"},
                {"h", 65536, ALLOC_FORMAT_RAW, 256, "a RAW region has no chunks"},
        };
        struct alloc_region r;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct alloc_opts o = {.format = bad[i].format, .chunk_size = bad[i].chunk_size, .name = "bad"};
                cr_assert_eq(alloc_region_new(c, bad[i].pool, bad[i].size, &o, &r), -EINVAL, "case %zu: %s", i,
                             alloc_last_error());
                cr_assert(strstr(alloc_last_error(), bad[i].says), "case %zu: %s", i, alloc_last_error());
        }
        struct alloc_opts heaps = {.format = ALLOC_FORMAT_FALLOC, .chunk_size = 256};
        struct alloc_region two[2];
        cr_assert_eq(alloc_region_new_batch(c, "h", (uint64_t[]){65536, 65536}, 2, &heaps, two), -EINVAL);
        cr_assert(strstr(alloc_last_error(), "allocate falloc heaps one by one"), "%s", alloc_last_error());
        cr_assert_eq(alloc_region_attach(c, "bad", NULL, &r), -ENOENT, "no name was published");
        cr_assert_eq(pool_used(c, "h") + pool_used(c, "iso") + pool_used(c, "f"), 0, "nothing was allocated");
}

Test(daemon_falloc, attach_trusts_the_tag_not_the_bytes) {
        struct alloc_region r, a;
        struct alloc_opts o = {.name = "looks-like-a-heap"};
        struct alloc_dump *dump;
        fallocDeviceHeap *heap;

        cr_assert_eq(alloc_region_new(c, "h", 65536, &o, &r), 0);
        cr_assert_eq(falloc_heap_format(r.ptr, 65536, 256, NULL), 0, "a heap written into raw bytes");
        cr_assert_eq(alloc_falloc_attach(c, "looks-like-a-heap", NULL, &a, &heap), -EBADMSG);
        cr_assert(strstr(alloc_last_error(), "allocated as raw bytes"), "%s", alloc_last_error());
        o = (struct alloc_opts){.name = "heap/wiped", .format = ALLOC_FORMAT_FALLOC, .chunk_size = 256};
        cr_assert_eq(alloc_region_new(c, "h", 65536, &o, &r), 0);
        memset(r.ptr, 0, 256);
        cr_assert_eq(alloc_falloc_attach(c, "heap/wiped", NULL, &a, &heap), -EBADMSG, "a tag without its header");
        cr_assert(strstr(alloc_last_error(), "tagged as a falloc heap of 254 chunks of 256 bytes"), "%s",
                  alloc_last_error());
        cr_assert_eq(alloc_dump(c, "h", &dump), 0);
        cr_assert_eq(dump->nregions, 2, "the refused attaches hold nothing");
        cr_assert_eq(dump->regions[0].format, ALLOC_FORMAT_RAW);
        cr_assert(dump->regions[1].format == ALLOC_FORMAT_FALLOC && dump->regions[1].chunk_size == 256 &&
                  dump->regions[1].chunk_count == 254);
        alloc_dump_free(dump);
}

/* Version 1 heaps counted free chunks in the header, version 2 kept runs in a bitmap of their own. */
Test(daemon_falloc, attach_refuses_a_heap_of_another_version) {
        struct alloc_region r, a;
        struct alloc_opts o = {.name = "heap/v1"};
        fallocDeviceHeap *heap, *h2;

        cr_assert_eq(alloc_falloc_new(c, "h", 65536, 256, &o, &r, &heap), 0, "%s", alloc_last_error());
        heap->version = 1;
        cr_assert_eq(alloc_falloc_attach(c, "heap/v1", NULL, &a, &h2), -EBADMSG);
        cr_assert(strstr(alloc_last_error(), "holds none that fits it"), "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "a header of version 1; this library reads version 3"), "%s",
                  alloc_last_error());
        heap->version = FALLOC_VERSION;
        cr_assert_eq(alloc_falloc_attach(c, "heap/v1", NULL, &a, &h2), 0, "%s", alloc_last_error());
}
