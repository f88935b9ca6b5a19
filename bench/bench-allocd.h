/* SPDX-License-Identifier: MIT */
#ifndef BENCH_BENCH_ALLOCD_H
#define BENCH_BENCH_ALLOCD_H

/* An allocd of the benchmarks' own, on a socket in a directory they made. */

#include <stddef.h>
#include <sys/types.h>

/*
 * Writes conf_text to dir/allocd.conf and starts allocd_path on
 * dir/allocd.sock (its path into sock); returns its pid once it accepts a
 * connection, or -1 with errno set and *what saying which step failed.
 */
pid_t bench_allocd_start(const char *allocd_path, const char *dir, const char *conf_text, char *sock, size_t socksize,
                         const char **what);

/*
 * Starts allocd_path with conf on sock, pinned to cpu (< 0: not pinned); returns its pid once it
 * accepts a connection, or -1 with errno set and *what saying which step failed.
 */
pid_t bench_allocd_spawn(const char *allocd_path, const char *conf, const char *sock, int cpu, const char **what);

#endif
