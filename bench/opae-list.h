/* SPDX-License-Identifier: MIT */
#ifndef BENCH_OPAE_LIST_H
#define BENCH_OPAE_LIST_H

/*
 * OPAE's own mem_alloc (opae-sdk, libraries/libopae-c/mem_alloc.c), rebuilt
 * from its description so that range-bench can time it beside ours without
 * OPAE installed: every block a malloc'ed node; free blocks in one list sorted
 * by address, searched first fit for a start aligned to the request's size;
 * allocated blocks in a second list, in allocation order, which a put
 * searches from its head; the freed block is put back by walking the free
 * list from its head and merged with the blocks it touches.  Get and put
 * are both linear in the number of blocks.
 */

#include <stdint.h>

struct opae_link {
        uint64_t address, size;
        struct opae_link *prev, *next;
};

struct opae_list {
        struct opae_link free, allocated; /* list heads */
};

void opae_init(struct opae_list *m);
void opae_destroy(struct opae_list *m);
int opae_add_free(struct opae_list *m, uint64_t address, uint64_t size);
/* size a power of two: the block is aligned to it, as OPAE's get aligns. */
int opae_get(struct opae_list *m, uint64_t *address, uint64_t size);
int opae_put(struct opae_list *m, uint64_t address);

#endif
