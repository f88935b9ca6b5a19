/* SPDX-License-Identifier: MIT */
/* OPAE's mem_alloc API over the range allocator: one arena of quantum 1 per struct mem_alloc. */

#include "alloc/mem_alloc.h"

#include <errno.h>
#include <stddef.h>

#include "alloc/range.h"

void mem_alloc_init(struct mem_alloc *m) {
        if (m)
                m->arena = NULL;
}

void mem_alloc_destroy(struct mem_alloc *m) {
        if (m)
                m->arena = range_arena_free(m->arena);
}

int mem_alloc_add_free(struct mem_alloc *m, uint64_t address, uint64_t size) {
        int r;
        if (!m)
                return -EINVAL;
        if (!m->arena) {
                r = range_arena_new(&m->arena, 1);
                if (r < 0)
                        return r;
        }
        return range_add(m->arena, address, size);
}

int mem_alloc_get(struct mem_alloc *m, uint64_t *address, uint64_t size) {
        if (!m || !address || size == 0)
                return -EINVAL;
        if (size > UINT64_C(1) << 63)
                return -EOVERFLOW;
        if (!m->arena)
                return -ENOSPC;
        struct range_req req = {.align = size == 1 ? 1 : UINT64_C(1) << (64 - __builtin_clzll(size - 1))};
        return range_alloc(m->arena, size, &req, address);
}

int mem_alloc_put(struct mem_alloc *m, uint64_t address) {
        if (!m || !m->arena)
                return -ENOENT;
        return range_free(m->arena, address, 0);
}
