/* SPDX-License-Identifier: MIT */
/*
 * The memory of the range allocator's two big tables, the tag array and the
 * hash table.  Under random frees at a million segments every tag and slot
 * a pair touches is a cache miss, and with 4 KiB pages most are a TLB miss
 * too, whose page walk (nested under a hypervisor) costs as much as the miss
 * itself.  So a table of HUGE_MIN bytes or more gets its own mapping, aligned
 * to a huge page and advised MADV_HUGEPAGE: where transparent huge pages are
 * enabled for madvise (Debian's default) it is backed by 2 MiB pages; where
 * not, it behaves as malloc would.  Only the huge pages touched become
 * resident, so a table's untouched growth slack still costs no memory beyond
 * the page its used part ends in.  Smaller tables stay on the heap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "range-internal.h"

#define HUGE_PAGE (UINT64_C(2) << 20)
#define HUGE_MIN (2 * HUGE_PAGE)

static size_t map_len(size_t bytes) {
        return (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

void *range_mem_alloc(size_t bytes, bool zero) {
        if (bytes < HUGE_MIN) {
                /* Aligned to a cache line, for the hash's lines. */
                void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
                if (p && zero)
                        memset(p, 0, bytes);
                return p;
        }
        size_t len = map_len(bytes);
        uint8_t *raw = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
                return NULL;
        uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
        if (p > raw)
                munmap(raw, (size_t)(p - raw));
        if (raw + HUGE_PAGE > p)
                munmap(p + len, (size_t)(raw + HUGE_PAGE - p));
        /* Advice only: without transparent huge pages the table works the same, slower. */
        (void)madvise(p, len, MADV_HUGEPAGE);
        return p;
}

void range_mem_free(void *p, size_t bytes) {
        if (!p)
                return;
        if (bytes < HUGE_MIN)
                free(p);
        else
                munmap(p, map_len(bytes));
}

void *range_mem_grow(void *p, size_t old_bytes, size_t new_bytes) {
        if (new_bytes < HUGE_MIN)
                return realloc(p, new_bytes);
        void *n = range_mem_alloc(new_bytes, false);
        if (!n)
                return NULL;
        if (p)
                memcpy(n, p, old_bytes);
        range_mem_free(p, old_bytes);
        return n;
}
