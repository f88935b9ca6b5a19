/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_CORE_CHECK_H
#define FUZZ_CORE_CHECK_H

/*
 * fuzz-request's oracles (core-check.c): the core's state recounted from its
 * regions and compared with every count the core keeps, and snapshots of what
 * a request may change, to prove that a refused one changed nothing.  Each
 * check abort()s with a description on the first disagreement.
 */

#include <stdbool.h>

#include "core.h"

#define CHECK_POOLS_MAX 8
#define CHECK_CLIENTS_MAX 4

/* What a refused request must leave as it was. */
struct core_snap {
        struct core_stats st;
        struct {
                struct range_stats rs;
                uint64_t regions, waiters;
        } pools[CHECK_POOLS_MAX];
        struct {
                uint32_t nrefs, npending, nwaiters;
                uint64_t bytes;
        } clients[CHECK_CLIENTS_MAX];
};

/* The clients the harness has in the core, and the regions it has zeroing jobs for. */
struct core_view {
        struct client *clients[CHECK_CLIENTS_MAX]; /* NULL: not connected */
        uint32_t npending[CHECK_CLIENTS_MAX];      /* jobs for each client */
        const uint32_t *jobs;                      /* slots being zeroed */
        size_t njobs;
};

void core_snap(struct core *core, const struct core_view *v, struct core_snap *s);
/* Forgets what s says of memory held for tables and arenas (their capacity), to compare the rest. */
void core_snap_forget_capacity(struct core_snap *s);
/*
 * Forgets only the arenas' memory: a refused placement may build an arena's search tree (range.c
 * keeps its nodes only while such requests come), which is a cache, not state.
 */
void core_snap_forget_arenas(struct core_snap *s);
/* Aborts, saying what differs, unless a and b are the same. */
void core_snap_same(const struct core_snap *a, const struct core_snap *b, const char *what);
/*
 * Recounts regions, holds, names, bytes, quotas and per-uid counts; with arenas, checks every
 * pool's range arena too (O(its segments): once an input, fuzz-range covers the allocator).
 */
void core_check(struct core *core, const struct core_view *v, bool arenas);
/* After every client went and every job ended: only PERSIST regions are left, held by nobody. */
void core_check_empty(struct core *core);
void check_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
