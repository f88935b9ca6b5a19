/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_SERVER_H
#define ALLOCD_SERVER_H

/*
 * Sockets and connections (server.c): listening, accepting, the connection
 * lifecycle, packets in and out, and the once-a-loop-turn drain of the
 * core's outcomes.  main.c is its only caller.
 */

#include <stddef.h>

#include <uv.h>

#include "core.h"

/* Serves core on loop; changed() is called whenever STATUS= may have changed. */
void server_init(uv_loop_t *loop, struct core *core, void (*changed)(void));
int server_listen(const char *path, char *err, size_t errsize);
int server_adopt(int fd);
/* Cancels every waiter, answers them, closes every connection and the socket. */
void server_stop(void);
uint32_t server_nconns(void);
/* Zeroing jobs on the thread pool. */
uint32_t server_jobs(void);

#endif
