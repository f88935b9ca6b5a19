/* SPDX-License-Identifier: MIT */
/*
 * The range allocator against the brute-force model of tests/range-model.c,
 * with the fuzzer's bytes for numbers: the differential test's operations
 * (add spans, alloc under align/phase/boundary/low/high and policy, free,
 * query) and checks (answers, stats, walk, the arena's invariants after
 * every operation), steered by coverage instead of a seed.
 *
 * Input: byte 0 picks the quantum (1 to 1 MiB; 0xf8 and above: an invalid
 * one, which range_arena_new must refuse), byte 1 where the model's units
 * start, the rest are the operations' numbers, read as needed: a number below
 * 256 takes one byte, below 65536 two, any other eight (little-endian).  Past
 * the end every number is 0 and the run ends after the operation under way.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "range-model.h"

static const uint8_t *in;
static size_t in_len, in_pos;

static uint64_t next(struct model *m, uint64_t n) {
        size_t bytes = n && n <= 256 ? 1 : n && n <= 65536 ? 2 : 8;
        uint64_t v = 0;

        (void)m;
        for (size_t i = 0; i < bytes && in_pos < in_len; i++)
                v |= (uint64_t)in[in_pos++] << (8 * i);
        return n ? v % n : v;
}

static void fail(const struct model *m, const char *msg) {
        fprintf(stderr, "fuzz-range: quantum %#llx base %#llx op %ld: %s\n", (unsigned long long)m->q,
                (unsigned long long)m->base, m->op, msg);
        abort();
}

/* A quantum range_arena_new must refuse. */
static void bad_quantum(uint8_t b) {
        static const uint64_t bad[] = {0, 3, 4097, UINT64_MAX, (UINT64_C(1) << 63) + 1, 6, 0x30000, 12};
        struct range_arena *a = NULL;
        uint64_t q = bad[b % 8];

        if (range_arena_new(&a, q) != -EDOM || a) {
                fprintf(stderr, "fuzz-range: range_arena_new(%#llx) did not refuse it\n", (unsigned long long)q);
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct model m = {.walk_every = 1, .next = next, .fail = fail};
        uint64_t q, bases[4];

        if (size < 2)
                return 0;
        if (data[0] >= 0xf8) {
                bad_quantum(data[1]);
                return 0;
        }
        q = UINT64_C(1) << (data[0] % 21);
        /* The differential test's four places: at zero, mid-space, ending at 2^64 - q, and high up. */
        bases[0] = 0;
        bases[1] = (UINT64_C(1) << 40) + 7 * q;
        bases[2] = UINT64_C(0) - q * (MODEL_UNITS + 1);
        bases[3] = UINT64_C(1) << 50;
        in = data;
        in_len = size;
        in_pos = 2;
        if (model_init(&m, q, bases[data[1] % 4]) < 0)
                abort();
        m.natural = data[1] & 4; /* the differential test's natural mode too */
        while (in_pos < in_len)
                model_step(&m);
        model_finish(&m);
        return 0;
}
