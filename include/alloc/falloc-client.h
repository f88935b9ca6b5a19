/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_FALLOC_CLIENT_H
#define ALLOC_FALLOC_CLIENT_H

/*
 * falloc heaps as allocd regions (falloc(3)).  One process makes a heap as a
 * named region of a host, pinned or gpu pool; others attach it by name; each
 * gets a fallocDeviceHeap * valid in its own address space, and all of them
 * (their CPU threads for host and pinned pools, their kernels for pinned and
 * gpu pools) take chunks from the one heap at once.  The region is a region
 * like any other: it lives while a connection holds it (or until
 * alloc_region_free with ALLOC_PERSIST), whatever chunks are taken.
 *
 * *heap is region->ptr for host and pinned pools (kernels use region->dev_ptr,
 * the same heap) and region->dev_ptr, a device pointer, for gpu pools.
 *
 * Errors as liballoc-client's (alloc/client.h), and:
 *   -EINVAL   chunk_size 0 or over FALLOC_CHUNK_MAX, or an fpga pool
 *   -ENOSPC   size does not hold the header, the bitmap and one chunk
 *   -EBADMSG  alloc_falloc_attach: the region is not tagged as a falloc heap, or holds none that fits
 *             it and its tag
 *   -EACCES   alloc_falloc_attach: the region is mapped read-only here (a heap is written by all)
 */

#include <alloc/client.h>
#include <alloc/falloc.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A heap of size bytes (header and bitmap included) of chunk_size chunks
 * (rounded up to 16) in pool, its region tagged ALLOC_FORMAT_FALLOC and
 * formatted before anyone can attach it (by allocd in host and pinned memfd
 * pools, by this process in gpu and vmm pools): with opts->name the region is
 * allocated ALLOC_UNSEALED and sealed once the heap is written (unless opts has
 * ALLOC_UNSEALED itself: then the caller seals).  opts as alloc_region_new's,
 * whose format and chunk_size are set here; may be NULL (an unnamed heap).
 */
int alloc_falloc_new(struct alloc_client *c, const char *pool, uint64_t size, uint64_t chunk_size,
                     const struct alloc_opts *opts, struct alloc_region *region, fallocDeviceHeap **heap);
/* Attaches the heap published as name (opts as alloc_region_attach's; may be NULL); checks its tag and header. */
int alloc_falloc_attach(struct alloc_client *c, const char *name, const struct alloc_attach_opts *opts,
                        struct alloc_region *region, fallocDeviceHeap **heap);

#ifdef __cplusplus
}
#endif

#endif
