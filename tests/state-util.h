/* SPDX-License-Identifier: MIT */
#ifndef TESTS_STATE_UTIL_H
#define TESTS_STATE_UTIL_H

/* What test-state and test-keep share: a core like allocd's, and what Dump would show of it. */

#include <stdbool.h>

#include "core.h"

/* Limits high enough that no test meets one by accident. */
struct limits state_limits(void);
/* A fresh core: pool a (fpga, 64 MiB, no memory), with_b: pool b (host, 16 MiB: falloc heaps go here). */
struct core *state_core(bool with_b);
/*
 * What Dump would show (every region's info and holders, every pool's figures) and the accounting
 * (bytes charged per pool and uid, names and PERSIST per uid, references and bytes per holder),
 * in an order that does not depend on how the core got there; the caller frees it.
 */
char *state_dump(struct core *c);
/* core_check over the core's clients (at most CHECK_CLIENTS_MAX). */
void state_check(struct core *c);
/* Removes and frees a restored core's placeholders. */
void state_drop_absent(struct core *c);

#endif
