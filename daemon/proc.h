/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_PROC_H
#define ALLOCD_PROC_H

/* What /proc says of a client's process (proc.c): best effort, for a pid of allocd's own pid namespace. */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * When pid's process started, in clock ticks after boot (/proc/PID/stat, field 22), 0 when unreadable;
 * and, where comm is not NULL, its command name made printable (size bytes at least 1; "" when
 * unreadable).  With the pid, the start names one process for the life of the boot: a pid is
 * reused, a (pid, start) pair is not.
 */
uint64_t proc_stat(pid_t pid, char *comm, size_t size);

#endif
