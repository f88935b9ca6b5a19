/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_AWAKE_H
#define ALLOCD_AWAKE_H

/* Keeping the loop polling for spin_us after each request served (awake.c); server.c is its only caller. */

#include <stdint.h>

#include <uv.h>

void awake_init(uv_loop_t *loop);
/* A request was served: the loop polls without sleeping until spin_us from now (0: not at all). */
void awake_served(uint32_t spin_us);
void awake_close(void);

#endif
