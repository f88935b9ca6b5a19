/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_SEED_WRITER_H
#define FUZZ_SEED_WRITER_H

/*
 * Writing fuzz-request's seeds (gen-request-seeds.c): begin() starts an input, the calls below
 * add records to it (s: the session a packet comes from), save() writes it to seed_dir/name.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "allocd.pb-c.h"
#include "fuzz-request.h"

extern const char *seed_dir;

/* Each input starts from a fresh core: the n-th slot handed out (lowest free first) has id 1 << 32 | n. */
#define ID(slot) (UINT64_C(1) << 32 | (slot))
#define BIG ((1u << 20) + 4096) /* above ZERO_INLINE_MAX: zeroed by a job */

void begin(uint8_t header);
void save(const char *name);
void record(int s, int kind);
void raw(int s, const void *data, size_t n);
void cut(size_t n);
void tick(int ms);
void zeroed(int failed);
/* One Request with body (of the kind body_case says) as a packet from session s. */
void put(int s, uint64_t id, Allocd__Request__BodyCase body_case, void *body);
/* put()'s packet, in buf (WIRE_MAX_PACKET bytes); its length. */
size_t pack(uint8_t *buf, uint64_t id, Allocd__Request__BodyCase body_case, void *body);
void hello_as(int s, uint32_t version, const char *name);
void hello(int s);
/* a with pool, size, flags and name set (the rest as the caller left it); returns a. */
Allocd__Alloc *alloc_shape(Allocd__Alloc *a, const char *pool, uint64_t size, uint32_t flags, const char *name);
void alloc_with(int s, const char *pool, uint64_t size, uint32_t flags, const char *name, Allocd__Alloc *a);
void alloc(int s, const char *pool, uint64_t size, uint32_t flags, const char *name);
void free_region(int s, uint64_t region);
void detach(int s, uint64_t region);
void attach_within(int s, const char *name, uint32_t timeout_ms);
void attach(int s, const char *name);
/* A Cancel of request (0: none named), with id 9. */
void cancel(int s, uint64_t request);
void seal(int s, uint64_t region);
/* A Goodbye, with id 9. */
void goodbye(int s);
void alloc_batch(int s, const char *pool, const uint64_t *sizes, size_t n, uint32_t flags, const char *name,
                 bool columns);
void free_batch(int s, const uint64_t *ids, size_t n);
void status(int s, uint64_t after);
void dump(int s, uint64_t after, const char *pool);
void disconnect(int s, int32_t pid, uint64_t serial);

/* f is 0664, owner 1000: fills it with session s's regions. */
void fill_f(int s);
/* Sessions 0 (uid 1000) and 1 (root), and f full of session 0's regions (ID(0), ID(1)). */
void begin_f_full(void);

#endif
