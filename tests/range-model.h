/* SPDX-License-Identifier: MIT */
#ifndef RANGE_MODEL_H
#define RANGE_MODEL_H

/*
 * A brute-force model of the range allocator, shared by the differential test
 * (tests/test-range-diff.c, numbers from a seeded generator) and the fuzzer
 * (fuzz/fuzz-range.c, numbers from the input): both drive the same
 * operations and checks and differ only in where the numbers come from and
 * in what a disagreement does.
 */

#include <stdbool.h>
#include <stdint.h>

#include "alloc/range.h"

#define MODEL_UNITS 1024

struct model_live {
        uint64_t start;
        uint64_t asked; /* the size the caller passed, before rounding */
        uint64_t units;
};

struct model_run {
        int start, len;
};

struct model {
        uint64_t q, base; /* unit u covers [base + u*q, base + (u+1)*q) */
        uint8_t unit[MODEL_UNITS];
        struct model_live live[MODEL_UNITS];
        int nlive;
        struct model_run runs[MODEL_UNITS];
        int nruns;
        uint64_t last_freed;
        uint64_t reserved_end; /* where the last range_reserve's range ended: the next often starts there */
        long op;
        long walk_every; /* walk the arena after every walk_every-th operation */
        bool natural;    /* requests mostly of power-of-two sizes aligned to their size (gen_natural) */
        struct range_arena *a;
        /* A number below n, or any 64-bit number when n is 0. */
        uint64_t (*next)(struct model *m, uint64_t n);
        /* A disagreement, described; must not return. */
        void (*fail)(const struct model *m, const char *msg);
};

/* An empty arena of quantum q; base, a multiple of q, is where the model's units start.  Returns range_arena_new's. */
int model_init(struct model *m, uint64_t q, uint64_t base);
/* One random operation (add, alloc, reserve, free or query), then every check. */
void model_step(struct model *m);
/* Frees every live range and checks that each span is one free segment again; frees the arena. */
void model_finish(struct model *m);

#endif
