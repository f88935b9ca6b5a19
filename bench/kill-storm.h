/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_BENCH_KILL_STORM_H
#define ALLOC_BENCH_KILL_STORM_H

/*
 * kill-storm (kill-storm.c): what the storm and its client processes (kill-storm-worker.c) share,
 * in a MAP_SHARED mapping made before the fork: the stop flag, each worker's figures, and the names
 * published with the seed of their bytes, for any worker to attach and check.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sysd.h"

#define MAXW 16
#define NAMES (1 << 17)
#define HELD 24
#define CALL_TIMEOUT_MS 5000
/* A call may wait out a restart (up to 20 s to READY) and its own timeout: past this it hung. */
#define HUNG_MS 25000

struct name_ent {
        char name[40];
        unsigned seed;
        uint64_t size;
        bool persist;
        uint64_t id;
        int freed_rc;       /* what the maker's free returned */
        bool self_attached; /* its maker attached it by name too (a Free and a Detach of it may be in flight) */
        _Atomic int state;  /* 0 free, 1 published and sealed, 2 freed by its maker */
};

struct wstat {
        uint64_t ops, allocs, attaches, frees, detaches, disconnects, checked_regions, checked_bytes;
        uint64_t mismatches, unexpected, expected_errs, hung, max_call_ms;
        uint64_t by_errno[160]; /* the allowed errors, by errno */
        char first_problem[256];
};

struct shared {
        _Atomic int stop;
        _Atomic int frozen;  /* allocd is SIGSTOPped (or was, within its timeout): -ETIME is expected */
        _Atomic int reloads; /* a reload storm: the pool "extra" comes and goes */
        _Atomic unsigned nnames;
        struct wstat w[MAXW];
        struct name_ent names[NAMES];
};

extern struct shared *sh;
extern struct sysd s;

long now_ms(void);
/* The index of the first word of p that is not seed's pattern, or -1. */
long pattern_bad(const void *p, uint64_t size, unsigned seed);
/* Says what went wrong on stderr, and keeps the first in st. */
void problem(struct wstat *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Worker w, as uid and gid, until sh->stop: exits 0, or 1 on a finding. */
_Noreturn void worker_main(int w, uid_t uid, gid_t gid);

#endif
