/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_RESTART_H
#define ALLOCD_RESTART_H

/*
 * Across a restart (restart.c, restart-store.c, restart-deferred.c; docs/ARCHITECTURE.md, "Across a restart"): what
 * allocd takes back from systemd's fd store at start, and what it keeps there while it runs.  main.c
 * is the caller.
 */

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "core.h"

/*
 * At start, before anything else reads LISTEN_FDS: takes the fds systemd passed.  *sock: the one
 * socket among them (allocd.socket's, whatever its name), or -1.  Logs and returns a negative errno
 * when they cannot be taken or there is more than one socket.
 */
int restart_collect(int *sock);
/*
 * The stored fd of the configured pool *pc, when there is a state to restore and the fd was made
 * for a pool of the same kind, backend, size and pages (hugepages), with a quantum no smaller than
 * pc's; -1 otherwise.  The fd is the caller's (core_pool_add_fd); *pc's backend = auto is settled
 * to the stored pool's.  A gpu pool's is a copy, since its name does not say the device: the caller
 * then tells restart_pool_refused how the adoption went.
 */
int restart_pool_fd(struct pool_conf *pc);
/*
 * After core_pool_add_fd(pc, fd from restart_pool_fd) answered r: true when the stored memory is
 * another device's (-EBADF): it is restored draining (restart_restore, which replaces the pool not
 * made), and pc is made once it empties, as restart_pool_deferred's.  False otherwise (the stored
 * fd is closed: the pool holds its copy, or could not use it).
 */
bool restart_pool_refused(const struct pool_conf *pc, int r);
/*
 * Whether pc must wait for the regions of a stored pool of its name but another kind, size,
 * backend or hugepages, or a smaller quantum, to go: that pool (memfd, pinned vmm or gpu) is
 * restored read-only in its place (draining), and pc is made once it is empty.
 */
bool restart_pool_deferred(const struct pool_conf *pc);
/* SIGHUP read conf: the pools waiting for a draining namesake are conf's sections of those names now. */
void restart_reconfigured(struct core *core, const struct config *conf);
/*
 * After the configured pools: the stored pools no configured pool took become draining pools, then
 * the newest stored state is restored.  0 (*next_serial set, 1 when there was no state), or a
 * negative errno when the state could not be restored (logged, saying what is lost and why): the
 * caller then makes a fresh core, after restart_discard.
 */
int restart_restore(struct core *core, uint64_t *next_serial);
/* Every stored fd is removed from the store and closed: a fresh start. */
void restart_discard(void);
/*
 * Ready to serve: stores what the store lacks (each pool's fd, the state), removes what nobody
 * claimed, saying so, and starts keeping the state (keep.h).  Does nothing without a store.
 */
void restart_begin(struct core *core, uint64_t next_serial);
/*
 * Once per loop turn that changed something: keeps the state current (next_serial: the server's),
 * stores new pools' fds, retires draining pools whose last region went and has the configured pool
 * that waited for each (restart_pool_deferred) made on the thread pool (reload_make_deferred).
 */
void restart_turn(struct core *core, uint64_t next_serial);
/*
 * A pool joined the core (a reload made it): its fd is stored now, before a request can put a
 * region in it and be answered before the loop turn ends (a kill then would leave a state whose
 * pool the store lacks, and the next start would lose that pool's regions).
 */
void restart_pools_added(struct core *core);
/* SIGHUP drained pools (core_pool_drain): the empty ones go now, from the store too, as above. */
void restart_drained(struct core *core);
/*
 * allocd stops: the state is kept once more and then left as it is (the connections about to close
 * keep their references in it, for their reconnection); with no store, what is lost is logged.
 * Returns whether the state was kept.
 */
bool restart_stop(struct core *core, uint64_t next_serial);

#endif
