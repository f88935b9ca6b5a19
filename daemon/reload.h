/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_RELOAD_H
#define ALLOCD_RELOAD_H

/* SIGHUP (reload.c; the limits it applies: limits-apply.h); main.c is its caller. */

#include <uv.h>

#include "config.h"
#include "core.h"

/*
 * path NULL: the built-in pools, --no-config; path with optional: the built-in pools, since the
 * default file path did not exist (a SIGHUP reads it once it does); log_level_override -1: the file's.
 */
void reload_init(uv_loop_t *loop, struct core *core, const char *path, bool optional, int log_level_override,
                 void (*changed)(void));
void reload_run(void);
/*
 * restart-deferred.c: pc (copied), the pool that waited for its draining namesake, made now that the namesake
 * is gone as a reload's new pool is: queued with them and made on the thread pool, keeping the retired
 * namesake's id; "made as configured" is logged, or why it is left out.
 */
void reload_make_deferred(const struct pool_conf *pc);
/* Pools queued or being made (a reload's, or reload_make_deferred's). */
unsigned reload_busy(void);
/* Drops queued pools; the one being made is discarded when done. */
void reload_stop(void);
/* What the last reload did, for STATUS= ("last reload 12:03:01: 1 pool failed (staging)"); "" before the first. */
const char *reload_summary(void);
/* Appends item to the comma-separated list in buf, ending it with "..." once the next would not fit. */
void reload_list_add(char *buf, size_t size, const char *item);

#endif
