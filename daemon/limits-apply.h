/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_LIMITS_APPLY_H
#define ALLOCD_LIMITS_APPLY_H

/* The limits a configuration is applied with (limits-apply.c); main.c at start and reload.c on SIGHUP call it. */

#include "config.h"
#include "core.h"

/* conf's limits, with max_connections lowered to what RLIMIT_NOFILE (raised to its hard limit) fits, said once. */
void limits_apply(struct core *core, const struct config *conf);

#endif
