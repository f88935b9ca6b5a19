/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_CHAOS_H
#define ALLOC_TEST_CHAOS_H

/*
 * What test-daemon-chaos and its workers (chaos-client) share: the pools the
 * workers use, the names they fight over, and the counters they keep in a
 * file both map.  A worker dies by SIGKILL at any instruction, so it cannot
 * report at exit: it adds to the shared counters as it goes (atomically; a
 * counter may miss the operation that was in flight when it died).
 */

#include <stdint.h>

#define CHAOS_POOL_HOST "host"   /* host, 16 MiB */
#define CHAOS_POOL_SMALL "small" /* host, 2 MiB, quota_per_uid 1 MiB: every worker is the same uid */
#define CHAOS_POOL_FPGA "fpga"   /* two address windows */
#define CHAOS_HOST_SIZE (16ull << 20)
#define CHAOS_SMALL_SIZE (2ull << 20)
#define CHAOS_SMALL_QUOTA (1ull << 20)
#define CHAOS_FPGA_BASE0 0x100000000ull
#define CHAOS_FPGA_SIZE0 (64ull << 20)
#define CHAOS_FPGA_BASE1 0x200000000ull
#define CHAOS_FPGA_SIZE1 (16ull << 20)

/* Names from a small set, so that attaches find something and allocations collide (EXISTS). */
#define CHAOS_NNAMES 12
#define CHAOS_NAME_FMT "chaos-%d"

enum chaos_op {
        OP_CONNECT,     /* alloc_connect of a worker's connections */
        OP_ALLOC,       /* unnamed, random pool, size, constraints and flags */
        OP_ALLOC_NAMED, /* a name from the set, PERSIST sometimes */
        OP_PERSIST,     /* unnamed PERSIST */
        OP_WAIT,        /* an allocation meant to wait (timeout_ms, or NOFAIL) */
        OP_INVALID,     /* a request allocd must refuse with a known code */
        OP_FREE,
        OP_FREE_STALE, /* an id this worker freed before: must be NOT_FOUND (ids are never reused) */
        OP_DETACH,
        OP_ATTACH,
        OP_TOUCH, /* write and read back the mapped bytes of a host region */
        OP_STATUS,
        OP_DUMP,
        OP_BURST,   /* a reply to a request pipelined on a raw connection */
        OP_NOHELLO, /* a raw connection that says nothing */
        OP_BATCH,   /* one of many small regions taken at once and then freed in random order */
        NOPS
};

/* Outcomes: 0 and the errno values of include/alloc/client.h, then everything else. */
enum chaos_res {
        RES_OK,
        RES_EINVAL,
        RES_EOVERFLOW,
        RES_ENODEV,
        RES_ENOENT,
        RES_EEXIST,
        RES_EACCES,
        RES_EDQUOT,
        RES_EMFILE,
        RES_EAGAIN,
        RES_ETIMEDOUT,
        RES_E2BIG,
        RES_ECANCELED,
        RES_ECONNRESET,
        RES_EPROTO,
        RES_EIO,
        RES_OTHER,
        NRES
};

struct chaos_stats {
        uint64_t n[NOPS][NRES];
        uint64_t violations; /* allocd broke a promise (see first_violation) */
        uint32_t violation_claimed;
        char first_violation[512];
};

#endif
