/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_KEEP_H
#define ALLOCD_KEEP_H

/*
 * The core's state kept current in a memfd for systemd's fd store (issue 18), so that a successor
 * allocd (restart, or after kill -9) restores it with state_read_fd().  The server (main.c) stores
 * keep_fd() under an fd-store name and swaps it when keep_turn() says it changed.
 *
 * The memfd holds a snapshot and an append log after it (keep.c; the format in state.c): a change
 * is in the memfd before the core call that made it returns, so a reply sent after it is covered
 * even when allocd is killed with -9.  keep_new attaches the keep to the core (the core's change
 * points append through it); keep_free detaches it.
 */

#include <stddef.h>
#include <stdint.h>

#include "core.h"

struct keep;

/*
 * Starts keeping core's state: a snapshot now, in a new memfd (O_CLOEXEC), of epoch epoch (1, or above
 * that of any state the store may still hold: a start picks the highest, so a restart that restored
 * epoch E and writes anew starts at E + 1, lest the old one win if its removal were lost).
 */
int keep_new(struct keep **ret, struct core *core, uint64_t next_serial, uint64_t epoch);
/*
 * Starts keeping core's state by appending to fd, the memfd it was just restored from (info: what
 * the restore said of it), instead of writing a new snapshot (at 1M regions some 90 MB, a tenth of
 * a second of every restart): the keep owns fd from now on.  Only a state of this version whose
 * pools are the core's, id for id, and whose log ends in a whole record (info->same_pools, no
 * torn bytes) goes on: -EXDEV otherwise, and the caller keeps fd and calls keep_new.
 */
struct state_info;
int keep_adopt(struct keep **ret, struct core *core, int fd, const struct state_info *info, uint64_t next_serial);
/*
 * Stops keeping (the memfd is closed here; the fd store keeps its own copy). NULL is fine.  At stop,
 * call it before the connections are closed: a close after it would be kept too, every hold it
 * releases with it, and the successor would find only PERSIST regions.
 */
void keep_free(struct keep *k);
/* The memfd that holds the state now. */
int keep_fd(const struct keep *k);
/*
 * Once per loop turn.  Returns 1 when keep_fd() changed (the new memfd must be stored, then the
 * old one removed from the store; the old fd is closed at the next keep_turn), 0 when it did not,
 * or a negative errno with a message in err when the state can no longer be kept (a restart would
 * then lose what changed since).
 */
int keep_turn(struct keep *k, uint64_t next_serial, char *err, size_t errsize);
/* Compaction waits until the log is over twice the snapshot and over bytes (1 MiB unless set): tests, benchmarks. */
void keep_set_log_min(struct keep *k, size_t bytes);
/* Bytes of log after the snapshot in keep_fd(). */
size_t keep_log_bytes(const struct keep *k);
/*
 * Which of several stored state memfds is newest: its epoch (raised at each new memfd), after
 * checking its header.  -EBADMSG or -EPROTO when it is not a state this allocd can read.
 */
int keep_epoch_fd(int fd, uint64_t *epoch);

#endif
