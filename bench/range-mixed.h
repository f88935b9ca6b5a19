/* SPDX-License-Identifier: MIT */
#ifndef BENCH_RANGE_MIXED_H
#define BENCH_RANGE_MIXED_H

/*
 * range-bench's mixed churn (issue 21): N live ranges of random power-of-two
 * sizes from 4 KiB to 64 KiB in one span of N x 48 KiB (about half used);
 * each step frees a random live range and allocates one of a new random size
 * in its place.  Four columns: without alignment and with align = size, each
 * at quantum 1 and 4 KiB; beside them the floor, the least any allocator must
 * do on this churn (a table lookup and a table write a step).  Where N <= OPAE_MAX_LIVE, OPAE's list (opae-list.c)
 * and our mem_alloc run the same churn side by side (both align to the size).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench-util.h"

struct json_object;

#define MIX_COLS 4
#define OPAE_MAX_LIVE 10000

struct mix_row {
        uint64_t live;
        double ns[MIX_COLS], ref_ns[MIX_COLS]; /* ref: the same column on a 1,000-live arena, same trials */
        uint64_t steps[MIX_COLS];
        double meta_per_seg[MIX_COLS];
        double floor_ns, floor_ref_ns; /* the floor (range-mixed.c), here and on 1,000 live, same trials */
        uint64_t floor_steps;
        bool opae; /* measured */
        double opae_ns, ours_ns;
        uint64_t opae_steps, ours_steps;
};

extern const char *const mix_col_names[MIX_COLS];

/* Builds the 1,000-live references (mix_done frees them). */
void mix_init(void);
void mix_measure(struct mix_row *row);
void mix_done(void);
/* Adds the mixed churn's targets (at most MIX_TARGETS) to t; returns how many. */
#define MIX_TARGETS 3
size_t mix_targets(const struct mix_row *rows, size_t n, struct target *t);
void mix_print(const struct mix_row *rows, size_t n);
struct json_object *mix_json(const struct mix_row *rows, size_t n);

#endif
