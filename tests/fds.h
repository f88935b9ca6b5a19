/* SPDX-License-Identifier: MIT */
#ifndef TESTS_FDS_H
#define TESTS_FDS_H

/* How many fds this process has open whose target (/proc/self/fd) starts with one of prefixes (NULL ends them). */
int fds_open(const char *const *prefixes);

#endif
