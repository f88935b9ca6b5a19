/* SPDX-License-Identifier: MIT */
/* Allocation through a real allocd: both pool kinds, every constraint, every refusal. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"

static const char *conf = "[pool h]\n"
                          "kind = host\n"
                          "size = 8M\n"
                          "mode = 0666\n"
                          "[pool f]\n"
                          "kind = fpga\n"
                          "ranges = 0x100000000+1G, 0x200000000 + 64M\n"
                          "quantum = 4K\n";

static struct daemon d;
static struct alloc_client *c;

static void setup(void) {
        daemon_start(&d, conf);
        c = daemon_connect(&d);
}

static void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(daemon_alloc, .init = setup, .fini = teardown, .timeout = 60);

Test(daemon_alloc, host_region_is_mapped_and_returned) {
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "h", 10000, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(r.kind, ALLOC_KIND_HOST);
        cr_assert_not_null(r.ptr);
        cr_assert_eq(r.size, 12288, "rounded to the 4 KiB quantum");
        cr_assert_eq(r.addr % 4096, 0);
        memset(r.ptr, 0xab, r.size);
        cr_assert_eq(pool_used(c, "h"), 12288);
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(pool_used(c, "h"), 0);
        cr_assert_eq(alloc_region_free(c, r.id), -ENOENT, "a second free is refused");
}

Test(daemon_alloc, zero_fills_small_and_large_regions) {
        /* Dirty the whole pool, give it back, and ask again with ZERO: inline and worker-thread paths. */
        uint64_t sizes[] = {64 << 10, 6 << 20};
        for (int i = 0; i < 2; i++) {
                struct alloc_region r;
                struct alloc_opts z = {.flags = ALLOC_ZERO};
                cr_assert_eq(alloc_region_new(c, "h", 8 << 20, NULL, &r), 0, "%s", alloc_last_error());
                memset(r.ptr, 0x5a, r.size);
                cr_assert_eq(alloc_region_free(c, r.id), 0);
                cr_assert_eq(alloc_region_new(c, "h", sizes[i], &z, &r), 0, "%s", alloc_last_error());
                const unsigned char *p = r.ptr;
                for (uint64_t k = 0; k < r.size; k++)
                        cr_assert_eq(p[k], 0, "byte %llu of a ZERO region is %#x", (unsigned long long)k, p[k]);
                cr_assert_eq(alloc_region_free(c, r.id), 0);
        }
}

Test(daemon_alloc, regions_share_one_mapping) {
        struct alloc_region a, b;

        cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &a), 0);
        cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &b), 0);
        cr_assert_eq((char *)b.ptr - (char *)a.ptr, (long)(b.addr - a.addr));
}

Test(daemon_alloc, fpga_regions_are_addresses_in_the_ranges) {
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "f", 1 << 20, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(r.kind, ALLOC_KIND_FPGA);
        cr_assert_null(r.ptr);
        cr_assert((r.addr >= 0x100000000ull && r.addr + r.size <= 0x140000000ull) ||
                  (r.addr >= 0x200000000ull && r.addr + r.size <= 0x204000000ull));
        cr_assert_eq(alloc_region_free(c, r.id), 0);
}

Test(daemon_alloc, constraints_hold_end_to_end) {
        for (int i = 0; i < 200; i++) {
                struct alloc_region r;
                uint64_t size = 4096u * (1 + (i * 7919u) % 50);
                struct alloc_opts o = {
                        .align = 1ull << (12 + i % 10),
                        .boundary = 1ull << 22,
                        .low = 0x200000000ull + 4096,
                        .high = 0x204000000ull - 8192,
                };
                o.phase = (i % 3 == 0) ? 0 : 4096 * (uint64_t)(i % 2) % o.align;
                int e = alloc_region_new(c, "f", size, &o, &r);
                cr_assert_eq(e, 0, "i=%d: %s", i, alloc_last_error());
                cr_assert_eq(r.addr % o.align, o.phase);
                cr_assert_eq(r.addr / o.boundary, (r.addr + r.size - 1) / o.boundary, "crosses a boundary");
                cr_assert(r.addr >= o.low && r.addr + r.size <= o.high, "outside the window");
        }
        /* Host pools obey the same constraints, on offsets. */
        struct alloc_region r;
        struct alloc_opts o = {.align = 1 << 20, .phase = 8192, .low = 1 << 20, .high = 4 << 20};
        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(r.addr % (1 << 20), 8192);
        cr_assert(r.addr >= (1 << 20) && r.addr < (4 << 20));
}

/* align holds for the pointer too: the pool is mapped at a multiple of its size's largest power of two. */
Test(daemon_alloc, alignment_holds_for_the_pointer) {
        struct alloc_region r;

        for (uint64_t align = 4096; align <= (4u << 20); align *= 2) {
                struct alloc_opts o = {.align = align, .phase = align > 4096 ? 4096 : 0};
                cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), 0, "%s", alloc_last_error());
                cr_assert_eq((uintptr_t)r.ptr % align, o.phase, "align %#llx: ptr %p, offset %#llx",
                             (unsigned long long)align, r.ptr, (unsigned long long)r.addr);
                cr_assert_eq(alloc_region_free(c, r.id), 0);
        }
        /* The README's: 1 MiB aligned. */
        cr_assert_eq(alloc_region_new(c, "h", 2 << 20, &(struct alloc_opts){.align = 1 << 20}, &r), 0);
        cr_assert_eq((uintptr_t)r.ptr % (1 << 20), 0);
}

Test(daemon_alloc, count_times_size) {
        struct alloc_region r;
        struct alloc_opts o = {.count = 3};

        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), 0);
        cr_assert_eq(r.size, 3 * 4096);
        o.count = UINT64_MAX / 2;
        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), -EOVERFLOW);
        cr_assert_str_not_empty(alloc_last_error());
}

Test(daemon_alloc, bad_requests_are_refused_and_change_nothing) {
        struct alloc_region r;
        struct {
                const char *pool;
                uint64_t size;
                struct alloc_opts o;
                int err;
        } bad[] = {
                {"h", 0, {0}, -EINVAL},
                {"nope", 4096, {0}, -ENODEV},
                {"h", 4096, {.align = 3 << 12}, -EINVAL},
                {"h", 4096, {.boundary = 12345}, -EINVAL},
                {"h", 8192, {.boundary = 4096}, -EINVAL},
                {"h", 4096, {.low = 8192, .high = 4096}, -EINVAL},
                {"h", 4096, {.flags = 0x100}, -EINVAL},
                {"h", 4096, {.flags = ALLOC_NOWAIT | ALLOC_NOFAIL}, -EINVAL},
                {"f", 4096, {.flags = ALLOC_ZERO}, -EINVAL},
                {"h", 4096, {.on_node = true, .numa_node = 0}, -EINVAL},
                {"h", 16 << 20, {0}, -E2BIG},
                {"h", 4096, {.low = 16 << 20}, -E2BIG},
                {"f", 128 << 20, {.low = 0x200000000ull}, -E2BIG},
                {"h", UINT64_MAX, {0}, -EOVERFLOW},
        };

        unsigned long long before = pool_used(c, "h");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int e = alloc_region_new(c, bad[i].pool, bad[i].size, &bad[i].o, &r);
                cr_expect_eq(e, bad[i].err, "case %zu: got %d (%s), want %d", i, e, alloc_last_error(), bad[i].err);
                cr_expect_str_not_empty(alloc_last_error(), "case %zu has no message", i);
        }
        cr_assert_eq(pool_used(c, "h"), before);
        cr_assert_eq(pool_used(c, "f"), 0);
        cr_assert_eq(alloc_region_new(c, "h", 4096, NULL, &r), 0, "the connection still works");
}

Test(daemon_alloc, nowait_fails_at_once_when_full) {
        struct alloc_region all, r;
        struct alloc_opts o = {.flags = ALLOC_NOWAIT};

        cr_assert_eq(alloc_region_new(c, "h", 8 << 20, NULL, &all), 0);
        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), -EAGAIN);
        cr_assert_eq(alloc_region_free(c, all.id), 0);
        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), 0);
}

Test(daemon_alloc, regions_of_other_connections_are_not_ours) {
        struct alloc_client *other = daemon_connect(&d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(other, "h", 4096, NULL, &r), 0);
        cr_assert_eq(alloc_region_free(c, r.id), -ENOENT);
        cr_assert_eq(alloc_region_detach(c, r.id), -ENOENT);
        cr_assert_eq(alloc_region_free(c, r.id + (1ull << 32)), -ENOENT);
        cr_assert_eq(pool_used(c, "h"), 4096);
        alloc_disconnect(other);
        cr_assert_eq(wait_used(c, "h", 0), 0);
}

struct first_use {
        struct alloc_client *conn;
        int result;
        void *ptr;
};

static void *first_use_thread(void *arg) {
        struct first_use *f = arg;
        struct alloc_region r;

        f->result = alloc_region_new(f->conn, "h", 4096, NULL, &r);
        if (f->result == 0) {
                memset(r.ptr, 0x33, r.size); /* the pool is mapped before any thread uses it */
                f->ptr = r.ptr;
        }
        return NULL;
}

Test(daemon_alloc, threads_race_for_the_first_region_of_a_pool) {
        /* Only the first reply carries the pool's fd; whichever thread reads it, all must find the mapping. */
        for (int round = 0; round < 20; round++) {
                struct alloc_client *k = daemon_connect(&d);
                struct first_use f[8] = {0};
                pthread_t t[8];
                for (int i = 0; i < 8; i++) {
                        f[i].conn = k;
                        cr_assert_eq(pthread_create(&t[i], NULL, first_use_thread, &f[i]), 0);
                }
                for (int i = 0; i < 8; i++) {
                        pthread_join(t[i], NULL);
                        cr_assert_eq(f[i].result, 0, "round %d thread %d: %s", round, i, alloc_last_error());
                        cr_assert_not_null(f[i].ptr);
                }
                alloc_disconnect(k);
        }
        cr_assert_eq(wait_used(c, "h", 0), 0);
}
