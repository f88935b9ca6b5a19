/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_REQUEST_H
#define FUZZ_REQUEST_H

/*
 * fuzz-request's input, shared with gen-request-seeds.c, which writes the
 * seed corpus:
 *
 *   byte 0   bit 0: tiny limits (FUZZ_TIGHT), else the daemon's defaults
 *            (config_default); bits 1-6: the uid of each session, two bits
 *            each, an index into fuzz_uids; bit 7: pool p is large
 *            (FUZZ_BIG_P)
 *   records  a tag byte: tag % 8 is the kind, tag / 8 % FUZZ_SESSIONS the session
 *     0-3  FUZZ_PACKET  a 2-byte little-endian length, then that many bytes
 *                       (fewer at the end of the input): one packet from the
 *                       session's socket; 0 bytes is a hang-up
 *     4    FUZZ_TICK    2 bytes: milliseconds the clock moves on; then Hello
 *                       deadlines and a loop turn
 *     5    FUZZ_TURN    a loop turn: core_run, every waiter's outcome answered
 *     6    FUZZ_ZEROED  1 byte: a zeroing job ends (the (byte / 2 % jobs
 *                       queued)-th, oldest first); bit 0 set: it failed
 *     7    FUZZ_STOP    what SIGTERM does (waiters cancelled, a turn, every
 *                       connection closed); the rest of the input is ignored
 *
 * A session connects when its first packet comes, and again after it was
 * closed.  The pools, built afresh for each input: h (host, 256 KiB, 0666,
 * quota 192 KiB a uid), p (pinned memfd, 64 KiB, or with FUZZ_BIG_P 1 MiB +
 * 64 KiB so that a ZERO region can be too large to zero inline; 0660, owner
 * 1000, group 1001), f (fpga, 1 MiB at 4 GiB and 64 KiB at 8 GiB; 0664, owner
 * 1000), g (gpu: unavailable without one).  Memory pools are small because
 * making them is most of the cost of a short input: their pages are
 * allocated at start (pool-host.c).
 */

#include <stdint.h>
#include <sys/types.h>

#define FUZZ_SESSIONS 3
#define FUZZ_TIGHT 1
#define FUZZ_BIG_P 0x80

enum { FUZZ_PACKET = 0, FUZZ_TICK = 4, FUZZ_TURN = 5, FUZZ_ZEROED = 6, FUZZ_STOP = 7 };

static const uid_t fuzz_uids[4] = {0, 1000, 1001, 65534};

/* The header byte: FUZZ_TIGHT and FUZZ_BIG_P or 0, and the sessions' uids (indices into fuzz_uids). */
static inline uint8_t fuzz_header(int flags, int u0, int u1, int u2) {
        return (uint8_t)(flags | (u0 & 3) << 1 | (u1 & 3) << 3 | (u2 & 3) << 5);
}

#endif
