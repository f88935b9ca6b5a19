/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_STANDBY_H
#define ALLOCD_STANDBY_H

/* A restart with an invalid configuration file (standby.c): allocd waits, keeping the fd store. */

#include <stdbool.h>

/* Whether systemd passed this process a stored state (LISTEN_FDNAMES has state.0 or state.1, a store is there). */
bool standby_wanted(void);
/*
 * Says why (the file's error) and what to do, sends READY=1 and a STATUS= saying so, closes every
 * connection at once, answers SIGHUP by checking path again, and returns 0 at SIGTERM or SIGINT.
 */
int standby_run(const char *path, const char *why);

#endif
