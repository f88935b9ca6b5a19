/* SPDX-License-Identifier: MIT */
/*
 * What a region holds: its format tag, and the falloc heaps allocd writes
 * (docs/ARCHITECTURE.md, "falloc heaps").
 *
 * Nearly every region is raw bytes, and struct region is 64 bytes by design
 * ("Scale"), so it keeps only the format's number, in the one byte its
 * padding had left.  The rest of a tag (a heap's size and geometry, 32 bytes)
 * lives here, apart, as names do: a tsearch(3) tree keyed by slot, one node a
 * region that is not raw, nothing for the others.  region.c adds a region's
 * entry when it makes the region and removes it when the region dies, so an
 * entry's slot is always a live region whose format byte is not FMT_RAW.
 *
 * allocd writes a heap's header and bitmap where it reaches the memory:
 * host and pinned memfd pools through its own mapping of the pool, regions
 * of isolation = region pools through a mapping of their memfd made for the
 * write.  It does not write gpu and vmm pools: that would be a copy from the
 * host through CUDA, which allocd does nowhere else; their creator, which has
 * mapped the region to use it anyway, writes the heap before its Seal
 * (client/falloc.c).
 */
#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "alloc/falloc.h"
#include "core-impl.h"

struct format_entry {
        uint32_t slot;
        struct region_format fmt;
};

static int by_slot(const void *a, const void *b) {
        uint32_t x = ((const struct format_entry *)a)->slot, y = ((const struct format_entry *)b)->slot;

        return (x > y) - (x < y);
}

void formats_clear(struct formats *f) {
        tdestroy(f->tree, free);
        *f = (struct formats){0};
}

int formats_add(struct formats *f, uint32_t slot, const struct region_format *fmt) {
        struct format_entry *e = malloc(sizeof(*e));

        if (!e)
                return -ENOMEM;
        *e = (struct format_entry){.slot = slot, .fmt = *fmt};
        if (!tsearch(e, &f->tree, by_slot)) {
                free(e);
                return -ENOMEM;
        }
        f->count++;
        return 0;
}

static struct format_entry *find(const struct formats *f, uint32_t slot) {
        struct format_entry key = {.slot = slot};
        void *x = tfind(&key, &f->tree, by_slot);

        return x ? *(struct format_entry **)x : NULL;
}

void formats_get(const struct formats *f, uint32_t slot, struct region_format *fmt) {
        *fmt = find(f, slot)->fmt;
}

void formats_remove(struct formats *f, uint32_t slot) {
        struct format_entry *e = find(f, slot);

        tdelete(e, &f->tree, by_slot);
        free(e);
        f->count--;
}

bool format_by_allocd(const struct pool *p) {
        return p->map || p->conf.isolation == ISOLATION_REGION;
}

uint64_t format_bytes(const struct region_format *fmt) {
        return falloc_heap_meta_size(fmt->heap_size, fmt->chunk_size);
}

int format_write(const struct pool *p, int fd, uint64_t offset, uint64_t size, const struct region_format *fmt) {
        void *at;
        int r;

        if (fd < 0)
                return falloc_heap_format((char *)p->map + offset, fmt->heap_size, fmt->chunk_size, NULL);
        /* The whole region, so that the length is a multiple of its pages, huge or not. */
        if ((at = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
                return -errno;
        r = falloc_heap_format(at, fmt->heap_size, fmt->chunk_size, NULL);
        munmap(at, size);
        return r;
}
