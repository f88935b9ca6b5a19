/* SPDX-License-Identifier: MIT */
#ifndef BENCH_BENCH_ALLOCD_H
#define BENCH_BENCH_ALLOCD_H

/* An allocd of the benchmarks' own, on a socket in a directory they made. */

#include <stddef.h>
#include <sys/types.h>

/*
 * mkdtemp(tmpl), and the directory removed with the files in it when this process exit()s, however
 * it ends its run (a benchmark that dies half-way leaves nothing in /tmp; its forked children's
 * exits leave the directory alone); tmpl, or NULL with errno set.
 */
char *bench_mkdtemp(char *tmpl);

/*
 * Writes conf_text to dir/allocd.conf and starts allocd_path on
 * dir/allocd.sock (its path into sock); returns its pid once it accepts a
 * connection, or -1 with errno set and *what saying which step failed.
 */
pid_t bench_allocd_start(const char *allocd_path, const char *dir, const char *conf_text, char *sock, size_t socksize,
                         const char **what);

/*
 * Starts allocd_path with conf on sock, pinned to cpu (< 0: not pinned); returns its pid once it
 * accepts a connection, or -1 with errno set and *what saying which step failed (an allocd that
 * did not start is not left running).  It gets SIGTERM when the calling thread ends, so that a
 * benchmark that dies leaves no allocd behind: call it from the main thread.
 */
pid_t bench_allocd_spawn(const char *allocd_path, const char *conf, const char *sock, int cpu, const char **what);

#endif
