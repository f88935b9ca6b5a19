/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_GRACE_H
#define ALLOCD_GRACE_H

/*
 * reclaim_grace (grace.c): the connections a restored state brought back as placeholders are
 * released once it has passed without them reconnecting.  server.c starts and stops it;
 * reload.c re-arms it when a reload changes reclaim_grace.
 */

#include <uv.h>

#include "core.h"

void grace_init(uv_loop_t *loop, struct core *core, void (*changed)(void));
/*
 * Counts reclaim_grace from the first call that finds placeholders (the restore), and fires
 * reclaim_grace after that, as the limits say now; nothing while there are none.  Called at start,
 * after a state is restored and after each reload.
 */
void grace_arm(void);
void grace_close(void);

#endif
