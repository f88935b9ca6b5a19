/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_RESTART_DEFERRED_H
#define ALLOCD_RESTART_DEFERRED_H

/*
 * The configured pools that wait for a draining namesake restored from the fd store to empty
 * (restart-deferred.c): restart.c adds them at start, has the namesakes restored draining
 * (deferred_drain_stored) and has each waiting pool made when its namesake goes;
 * restart_reconfigured (restart.h) sets them anew on SIGHUP.
 */

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "core.h"
#include "fdstore.h"

/* pc (copied: the configuration it is in goes) is made when its draining namesake empties; false: no memory. */
bool deferred_add(const struct pool_conf *pc);
/* How many pools wait, their names in buf (comma-separated, cut to size). */
size_t deferred_list(char *buf, size_t size);
/* The pool named name that waits, or NULL. */
const struct pool_conf *deferred_find(const char *name);
/* The pool named name that waited is made now, on the thread pool (reload_make_deferred), and waits no more. */
void deferred_make(const char *name);
/* None waits any more; what they held is freed. */
void deferred_free(void);
/*
 * The stored pool sp (its fd stored, the callee's), which nobody configured as it was, restored read-only
 * for its regions' holders (draining; root only, 0600), holding the names of the pool that waits for it;
 * where it cannot be, that one is made now, and its regions are lost (logged).
 */
void deferred_drain_stored(struct core *core, int stored, const struct stored_pool *sp);

#endif
