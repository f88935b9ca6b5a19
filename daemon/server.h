/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_SERVER_H
#define ALLOCD_SERVER_H

/*
 * Sockets and connections (server.c; accept.c): listening, accepting, the connection
 * lifecycle, packets in and out, and the once-a-loop-turn drain of the
 * core's outcomes.  main.c is its only caller.
 */

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core.h"

/*
 * Packets with an fd a connection may have been sent and not yet read (outq.c): the kernel lets
 * allocd's user (no CAP_SYS_RESOURCE) have at most RLIMIT_NOFILE fds in flight, all connections
 * together, so limits-apply.c's fit_nofile keeps max_connections x FDS_IN_FLIGHT within it.
 */
#define FDS_IN_FLIGHT 4

/* Serves core on loop; changed() is called whenever STATUS= may have changed. */
void server_init(uv_loop_t *loop, struct core *core, void (*changed)(void));
int server_listen(const char *path, char *err, size_t errsize);
int server_adopt(int fd);
/*
 * fn runs at the end of each loop turn that answered a request or saw server_changed(), after the
 * core's deferred work: whatever a reply sent this turn said is in the core by then.
 */
void server_on_turn(void (*fn)(void));
void server_changed(void);
/* The serial the next connection gets; set before serving, to go on from a restored state's. */
uint64_t server_next_serial(void);
void server_set_next_serial(uint64_t serial);
/* Cancels every waiter, answers them, closes every connection and the socket; kept: the state was kept for a restart
 * (restart_stop), so the log says their references are kept, not released. */
void server_stop(bool kept);
uint32_t server_nconns(void);
/* The limits changed (a SIGHUP): a connection waiting for its Hello or lingering is due at the new hello_timeout. */
void server_limits_changed(void);
/* Zeroing jobs on the thread pool. */
uint32_t server_jobs(void);

#endif
