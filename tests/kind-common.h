/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_KIND_COMMON_H
#define ALLOC_TEST_KIND_COMMON_H

/* What the kind tests (test-kind*.c) share (kind-common.c): allocd with their pools, kinds, bytes to check. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <alloc/kind.h>

#include "harness.h"

#define MiB (1ull << 20)

extern struct daemon d;
extern struct alloc_client *c;

void setup(void);
void teardown(void);
struct alloc_memkind *make(const char *pool, const struct alloc_kind_opts *o);
void fill(void *p, size_t n, unsigned seed);
bool filled(const void *p, size_t n, unsigned seed);
uintptr_t pool_base(const char *pool);

#endif
