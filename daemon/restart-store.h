/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_RESTART_STORE_H
#define ALLOCD_RESTART_STORE_H

/*
 * What allocd keeps in systemd's fd store while it serves (restart-store.c): each pool's fd, the
 * state (keep.h) and isolation = region memfds, counted against FileDescriptorStoreMax=.  restart.c
 * takes back what the store held at start and hands over in restart_begin; restart_turn,
 * restart_pools_added, restart_drained and restart_stop (restart.h) are restart-store.c's.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "state.h"

/* The names the state is stored under, one at a time but during a store (keep_epoch_fd takes the newer). */
extern const char *const store_state_names[2];

/* Fills in rf's made, gone and room: a region's memfd is stored when made, removed once a kept state lacks it. */
void store_region_fds(struct region_fds *rf);
/* The name a pool's fd has in the store. */
void store_pool_name(const struct pool_info *pi, char *name, size_t size);
/*
 * restart_begin, first: every pool and region restored is in the core, and the store takes at most max
 * fds (0: there is none).  False: out of memory for the pools' table (no pool is known to be stored).
 */
bool store_serve(struct core *core, unsigned max);
/* Pool id's fd is in the store already, under store_pool_name's name (restored from it). */
void store_pool_kept(size_t id);
/*
 * restart_begin, last: starts keeping the state, appending to the one restored (state_fd, under
 * store_state_names[state_name]; restored NULL: none) where it can, else in a new memfd stored
 * now; region_fds memfds of restored regions are in the store.  Then stores each pool's fd the
 * store lacks.  Returns whether the keep took state_fd.
 */
bool store_keep(struct core *core, uint64_t next_serial, int state_fd, const struct state_info *restored,
                int state_name, size_t region_fds);

#endif
