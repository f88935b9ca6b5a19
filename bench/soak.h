/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_BENCH_SOAK_H
#define ALLOC_BENCH_SOAK_H

/*
 * soak (soak.c): what the soak and its client processes (soak-worker.c) share, in a MAP_SHARED
 * mapping made before the fork: the stop flag, each worker's counts, and the names published, for
 * any worker to attach.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define SOAK_MAXW 16
#define SOAK_NAMES 4096
#define SOAK_ERRNO 160
#define SOAK_ODD 64 /* unexpected errors kept in full */
#define SOAK_ODD_LEN 384

struct soak_count {
        uint64_t ops, allocs, frees, attaches, detaches, seals, timeouts, cancels, goodbyes, shorts, killed, reconnects;
        uint64_t by_errno[SOAK_ERRNO]; /* the errors calls returned, by errno (what a soak expects, mostly) */
};

struct soak_shared {
        _Atomic int stop;
        _Atomic unsigned nnames;
        char sock[128];
        /* Published (sealed) names "w%d/%u" as (worker + 1) << 32 | number, 0 while none: a name in one store, read
         * whole; a freed one fails its attach: -ENOENT. */
        _Atomic uint64_t names[SOAK_NAMES];
        _Atomic unsigned nodd;            /* unexpected errors seen; the first SOAK_ODD are in odd */
        char odd[SOAK_ODD][SOAK_ODD_LEN]; /* which worker, call, arguments, errno, alloc_last_error() */
        struct soak_count w[SOAK_MAXW];
};

/* Worker w of the soak (shared in sh), as uid and gid, until sh->stop; exits 0. */
_Noreturn void soak_worker(struct soak_shared *sh, int w, uid_t uid, gid_t gid);

#endif
