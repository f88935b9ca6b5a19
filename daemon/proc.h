/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_PROC_H
#define ALLOCD_PROC_H

/* What /proc says of a client's process (proc.c): best effort, for a pid of allocd's own pid namespace. */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Its command name, made printable, into buf (size bytes, at least 1); "" when unreadable. */
void proc_comm(pid_t pid, char *buf, size_t size);

/*
 * When it started, in clock ticks after boot (/proc/PID/stat, field 22); 0 when unreadable.  With the pid,
 * it names one process for the life of the boot: a pid is reused, a (pid, start) pair is not.
 */
uint64_t proc_start(pid_t pid);

#endif
