/* SPDX-License-Identifier: MIT */
#ifndef TESTS_STATE_UTIL_H
#define TESTS_STATE_UTIL_H

/* What test-state and test-keep share: a core like allocd's, and what Dump would show of it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* The clients state_busy connects: state_cls[i] has serial 10 + i. */
extern struct client state_cls[4];
/* state_cls[i] connected to c as uid. */
void state_connect(struct core *c, int i, uid_t uid);
/* A region of state_cls[i] (sealed if UNSEALED; FMT_FALLOC: a heap of 256-byte chunks); its slot. */
uint32_t state_alloc(struct core *c, int i, const char *pool, uint64_t size, uint32_t flags, const char *name,
                     uint32_t format);
/* A core with many regions: named, PERSIST, tagged, shared, freed ones between, several uids. */
struct core *state_busy(void);
/* Removes state_busy's clients and frees c. */
void state_gone(struct core *c);
/* The body's checksum and the header's, made right again after a test changed the body. */
void state_checksum_again(uint8_t *buf, size_t len);

#endif
