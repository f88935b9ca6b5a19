/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_GRACE_H
#define ALLOCD_GRACE_H

/*
 * The connections a restored state brought back as placeholders (grace.c): each is released when
 * its client's process ends, or, where that process cannot be watched, once reclaim_grace has
 * passed without it reconnecting.  server.c starts and stops it, and says when a placeholder was
 * reclaimed (proto_out.reclaimed); limits-apply.c re-arms it when a reload changes reclaim_grace.
 */

#include <uv.h>

#include "core.h"

/* Arms grace_arm for the loop's first turn: the state restored is kept (restart_begin) by then. */
void grace_init(uv_loop_t *loop, struct core *core, void (*changed)(void));
/*
 * Watches the processes of placeholders not watched yet, releasing those whose process is gone;
 * counts reclaim_grace from the first call that finds placeholders (the restore), and fires
 * reclaim_grace after that, as the limits say now; nothing while there are none.  Called at the
 * loop's first turn (grace_init) and after each reload.
 */
void grace_arm(void);
/* Placeholder serial was reclaimed: its process is no longer watched. */
void grace_reclaimed(uint64_t serial);
/*
 * A Disconnect released placeholders (core_client_evict): their processes are no longer watched.
 * Their pidfds stayed open, one each, until those processes ended.
 */
void grace_sweep(void);
void grace_close(void);

#endif
