/* SPDX-License-Identifier: MIT */
/*
 * The OPAE-compatible mem_alloc API, linked from the shared liballoc-client as
 * an OPAE program that switched its include and link line would be.
 */

#include <criterion/criterion.h>
#include <stdint.h>

#include <alloc/mem_alloc.h>

static uint64_t next_pow2(uint64_t v) {
        uint64_t p = 1;
        while (p < v)
                p <<= 1;
        return p;
}

Test(mem_alloc, opae_documented_example) {
        struct mem_alloc m;
        uint64_t addr = 0;
        mem_alloc_init(&m);
        cr_assert_eq(mem_alloc_add_free(&m, 0x4000, 4096), 0);
        cr_assert_eq(mem_alloc_get(&m, &addr, 4096), 0);
        cr_assert_eq(addr, 0x4000);
        cr_assert_eq(mem_alloc_put(&m, addr), 0);
        mem_alloc_destroy(&m);
}

Test(mem_alloc, blocks_are_naturally_aligned) {
        struct mem_alloc m;
        mem_alloc_init(&m);
        /* A start that is aligned to nothing larger than 16 bytes. */
        cr_assert_eq(mem_alloc_add_free(&m, 0x10010, UINT64_C(64) << 20), 0);
        uint64_t v = 12345;
        for (int i = 0; i < 2000; i++) {
                v = v * 6364136223846793005ULL + 1442695040888963407ULL;
                uint64_t size = 1 + (v >> 33) % 70000, addr;
                cr_assert_eq(mem_alloc_get(&m, &addr, size), 0, "get(%llu)", (unsigned long long)size);
                cr_assert_eq(addr % next_pow2(size), 0, "block of %llu at %#llx is not aligned to %llu",
                             (unsigned long long)size, (unsigned long long)addr, (unsigned long long)next_pow2(size));
                if (i % 3)
                        cr_assert_eq(mem_alloc_put(&m, addr), 0);
        }
        mem_alloc_destroy(&m);
}

Test(mem_alloc, refuses_what_opae_silently_accepts) {
        struct mem_alloc m;
        uint64_t addr = 0x77, a;
        mem_alloc_init(&m);
        cr_assert_neq(mem_alloc_get(&m, &addr, 64), 0, "get before any add_free");
        cr_assert_neq(mem_alloc_put(&m, 0x1000), 0, "put before any add_free");
        cr_assert_eq(mem_alloc_add_free(&m, 0x1000, 0x1000), 0);
        cr_assert_neq(mem_alloc_add_free(&m, 0x1800, 0x1000), 0, "overlapping add_free");
        cr_assert_neq(mem_alloc_add_free(&m, 0x0800, 0x1000), 0, "overlapping add_free");
        cr_assert_neq(mem_alloc_add_free(&m, 0x1000, 0x1000), 0, "repeated add_free");
        cr_assert_neq(mem_alloc_add_free(&m, 0x3000, 0), 0, "empty add_free");
        cr_assert_neq(mem_alloc_get(&m, &addr, 0), 0, "get of size 0");
        cr_assert_eq(addr, 0x77, "a failed get wrote the address");
        cr_assert_neq(mem_alloc_get(&m, &addr, UINT64_MAX), 0);
        cr_assert_eq(mem_alloc_get(&m, &a, 0x100), 0);
        cr_assert_neq(mem_alloc_put(&m, a + 0x10), 0, "put inside a block");
        cr_assert_neq(mem_alloc_put(&m, 0x5000), 0, "put of an unknown address");
        cr_assert_eq(mem_alloc_put(&m, a), 0);
        cr_assert_neq(mem_alloc_put(&m, a), 0, "second put");
        /* Nothing above corrupted the state: the whole range is one block again. */
        cr_assert_eq(mem_alloc_get(&m, &a, 0x1000), 0);
        cr_assert_eq(a, 0x1000);
        mem_alloc_destroy(&m);
}

Test(mem_alloc, adjacent_ranges_join_and_exhaustion_is_reported) {
        struct mem_alloc m;
        uint64_t a, b;
        mem_alloc_init(&m);
        cr_assert_eq(mem_alloc_add_free(&m, 0x2000, 0x1000), 0);
        cr_assert_eq(mem_alloc_add_free(&m, 0x3000, 0x1000), 0);
        /* One 8 KiB block needs both ranges, as with OPAE's own merging free list. */
        cr_assert_eq(mem_alloc_get(&m, &a, 0x2000), 0);
        cr_assert_eq(a, 0x2000);
        cr_assert_neq(mem_alloc_get(&m, &b, 1), 0, "an exhausted allocator must fail, not return garbage");
        cr_assert_eq(mem_alloc_put(&m, a), 0);
        cr_assert_eq(mem_alloc_get(&m, &b, 1), 0);
        mem_alloc_destroy(&m);
}

Test(mem_alloc, destroy_then_reuse) {
        struct mem_alloc m;
        uint64_t a;
        mem_alloc_init(&m);
        mem_alloc_destroy(&m); /* never used */
        mem_alloc_init(&m);
        cr_assert_eq(mem_alloc_add_free(&m, 0, 1 << 20), 0);
        cr_assert_eq(mem_alloc_get(&m, &a, 100), 0);
        mem_alloc_destroy(&m); /* with a live block */
        mem_alloc_destroy(&m); /* twice */
        cr_assert_neq(mem_alloc_get(&m, &a, 100), 0);
        cr_assert_eq(mem_alloc_add_free(&m, 0, 1 << 20), 0);
        cr_assert_eq(mem_alloc_get(&m, &a, 1 << 20), 0);
        cr_assert_eq(a, 0);
        mem_alloc_destroy(&m);
}
