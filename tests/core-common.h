/* SPDX-License-Identifier: MIT */
#ifndef TESTS_CORE_COMMON_H
#define TESTS_CORE_COMMON_H

#include <stdint.h>

#include "core.h"

#define K UINT64_C(1024)

/* The core of the test running (setup makes it, teardown frees it and every client made). */
extern struct core *core;

struct limits test_limits(void);
void setup_with(const struct limits *l);
void setup(void);
void teardown(void);
void add_fpga(const char *name, uint64_t size);
void add_host(const char *name, uint64_t size);
/* A client of uid, freed at teardown: core_client_add's answer (client asserts E_OK). */
int client_add(uid_t uid, struct client **ret, struct core_result *res);
struct client *client(uid_t uid);
/* The client goes; its memory stays until teardown (outcomes may still name it). */
void bye(struct client *cl);
int alloc(struct client *cl, const char *pool, uint64_t size, uint32_t flags, const char *name, uint32_t *slot);
uint64_t id_of(uint32_t slot);
struct core_stats stats(void);
/* Pops every outcome; counts those that are refusals in *errors. */
unsigned drain(int *errors);

#endif
