/* SPDX-License-Identifier: MIT */
/*
 * Randomised differential test of the range allocator against the
 * brute-force model of range-model.c: after every operation the allocator's
 * answer, its statistics and its invariants must match the model.  The
 * numbers come from a seeded generator (fuzz/fuzz-range.c drives the same
 * model with a fuzzer's bytes).
 *
 * Reproduce a failure with RANGE_DIFF_SEED=<seed printed> (and RANGE_DIFF_OPS).
 */

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>

#include "range-model.h"

#define DEFAULT_OPS 200000

static uint64_t rng, seed;

static uint64_t next(struct model *m, uint64_t n) {
        uint64_t z = (rng += UINT64_C(0x9E3779B97F4A7C15));

        (void)m;
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        z ^= z >> 31;
        return n ? z % n : z;
}

static void fail(const struct model *m, const char *msg) {
        cr_assert_fail("seed %llu op %ld: %s", (unsigned long long)seed, m->op, msg);
}

static uint64_t env_or(const char *name, uint64_t dflt) {
        const char *v = getenv(name);
        return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static void run_model(uint64_t q, uint64_t base, uint64_t default_seed, bool natural) {
        static struct model m = {.walk_every = 997, .next = next, .fail = fail};
        long ops = (long)env_or("RANGE_DIFF_OPS", DEFAULT_OPS);

        seed = rng = env_or("RANGE_DIFF_SEED", default_seed);
        cr_assert_eq(model_init(&m, q, base), 0);
        m.natural = natural;
        while (m.op < ops)
                model_step(&m);
        /* Free everything: each span must be one free segment again. */
        model_finish(&m);
        cr_log_info("seed %llu: %ld operations", (unsigned long long)seed, ops);
}

Test(differential, byte_quantum_at_zero) {
        run_model(1, 0, 1, false);
}

Test(differential, page_quantum_mid_space) {
        run_model(4096, (UINT64_C(1) << 40) + 4096 * 7, 2, false);
}

Test(differential, quantum_16_at_top_of_space) {
        /* The last unit ends at 2^64 - 16: windows, alignment and boundaries near overflow. */
        run_model(16, UINT64_C(0) - 16 * (MODEL_UNITS + 1), 3, false);
}

Test(differential, large_quantum_big_alignments) {
        run_model(UINT64_C(1) << 20, UINT64_C(1) << 50, 4, false);
}

/* Mixed power-of-two sizes aligned to their size, random frees: the churn of issue 21. */
Test(differential, natural_alignment_byte_quantum) {
        run_model(1, 0, 5, true);
}

Test(differential, natural_alignment_page_quantum_at_top_of_space) {
        run_model(4096, UINT64_C(0) - 4096 * (MODEL_UNITS + 1), 6, true);
}
