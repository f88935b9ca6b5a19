/* SPDX-License-Identifier: MIT */
/*
 * falloc heaps as allocd regions (include/alloc/falloc-client.h).  A heap's
 * region is tagged as one at its Alloc (ALLOC_FORMAT_FALLOC, its chunk size),
 * and allocd writes its header and bitmap before it hands the region out
 * where it reaches the memory (host and pinned memfd pools).  In gpu and vmm
 * pools it cannot (daemon/formats.c says why): there the creator writes them
 * through a staging copy and cuMemcpyHtoD.  Either way a named heap is sealed
 * only once written, so an attacher never sees one half written; an attacher
 * checks the tag, and the header against the tag, before it trusts either.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc/falloc-client.h"
#include "client-internal.h"
#include "gpu.h"

/* Formats the heap of region; its memory is the host's (ptr) or a gpu pool's (dev_ptr). */
static int format(struct alloc_region *region, uint64_t size, uint64_t chunk_size) {
        char err[256];
        uint64_t meta = falloc_heap_meta_size(size, chunk_size);
        void *staging;
        int r;

        if (region->ptr)
                return falloc_heap_format(region->ptr, size, chunk_size, NULL);
        if (!(staging = malloc(meta)))
                return client_fail(-ENOMEM, "alloc_falloc_new: out of memory for the heap's header");
        r = falloc_heap_format(staging, size, chunk_size, NULL);
        if (r == 0 && (r = gpu_copy(region->device, region->dev_ptr, staging, meta, true, err, sizeof(err))) < 0)
                client_fail(r, "alloc_falloc_new: cannot write the heap's header: %s", err);
        free(staging);
        return r;
}

/* Lets go of a region that did not become a heap, keeping the error that said why. */
static int give_back(struct alloc_client *c, uint64_t id, bool attached, int r) {
        char why[CLIENT_ERROR_MAX];

        snprintf(why, sizeof(why), "%s", alloc_last_error());
        if (attached)
                alloc_region_detach(c, id);
        else
                alloc_region_free(c, id);
        return client_fail(r, "%s", why);
}

int alloc_falloc_new(struct alloc_client *c, const char *pool, uint64_t size, uint64_t chunk_size,
                     const struct alloc_opts *opts, struct alloc_region *region, fallocDeviceHeap **heap) {
        struct alloc_opts o = opts ? *opts : (struct alloc_opts){0};
        bool seal = o.name && !(o.flags & ALLOC_UNSEALED);
        uint64_t cs, count;
        int r;

        client_clear_error();
        if (!c || !pool || !region || !heap)
                return client_fail(-EINVAL, "alloc_falloc_new: c, pool, region and heap must not be NULL");
        if ((r = falloc_heap_geometry(size, chunk_size, &cs, &count)) == -ENOSPC)
                return client_fail(r, "%llu bytes do not hold a falloc heap of %llu-byte chunks: ask for at least %llu",
                                   (unsigned long long)size, (unsigned long long)chunk_size,
                                   (unsigned long long)falloc_heap_size(chunk_size, 1));
        if (r < 0)
                return client_fail(r, "chunk size %llu is not between 1 and 1 GiB", (unsigned long long)chunk_size);
        o.format = ALLOC_FORMAT_FALLOC;
        o.chunk_size = chunk_size;
        /* Sealed once written: allocd writes it where it can, but only its answer says whether it did. */
        if (o.name)
                o.flags |= ALLOC_UNSEALED;
        if ((r = alloc_region_new(c, pool, size, &o, region)) < 0)
                return r;
        if (region->format != ALLOC_FORMAT_FALLOC || region->chunk_size != cs || region->chunk_count != count)
                r = client_fail(-EPROTO, "allocd tagged the heap's region with another format or geometry");
        else if (!region->ptr && !region->dev_ptr)
                r = client_fail(-EINVAL, "pool %s has no memory this process reaches for a falloc heap", pool);
        else if ((region->formatted_by_allocd || (r = format(region, size, chunk_size)) == 0) && seal)
                r = alloc_region_seal(c, region->id);
        if (r < 0)
                return give_back(c, region->id, false, r);
        *heap = (fallocDeviceHeap *)(region->ptr ? region->ptr : (void *)(uintptr_t)region->dev_ptr);
        return 0;
}

int alloc_falloc_attach(struct alloc_client *c, const char *name, const struct alloc_attach_opts *opts,
                        struct alloc_region *region, fallocDeviceHeap **heap) {
        _Alignas(8) char header[FALLOC_HEADER_SIZE];
        fallocDeviceHeap *h = NULL;
        char err[256];
        void *at;
        int r;

        client_clear_error();
        if (!c || !name || !region || !heap)
                return client_fail(-EINVAL, "alloc_falloc_attach: c, name, region and heap must not be NULL");
        if ((r = alloc_region_attach(c, name, opts, region)) < 0)
                return r;
        at = region->ptr ? region->ptr : (void *)(uintptr_t)region->dev_ptr;
        if (region->read_only)
                r = client_fail(-EACCES, "region %s is mapped read-only here: a falloc heap needs write access", name);
        else if (region->format != ALLOC_FORMAT_FALLOC)
                r = client_fail(-EBADMSG, "region %s holds no falloc heap: it was allocated as raw bytes", name);
        else if (!at)
                r = client_fail(-EBADMSG, "region %s holds no falloc heap this process reaches: it has no memory here",
                                name);
        else if (!region->ptr &&
                 (r = gpu_copy(region->device, region->dev_ptr, header, sizeof(header), false, err, sizeof(err))) < 0)
                client_fail(r, "cannot read the heap's header in region %s: %s", name, err);
        else if (falloc_heap_open(region->ptr ? region->ptr : header, region->size, &h) < 0 ||
                 h->chunk_size != region->chunk_size || h->chunk_count != region->chunk_count) {
                const fallocDeviceHeap *seen = region->ptr ? region->ptr : (const void *)header;
                char why[160] = "no header, or another geometry";
                if (seen->magic == FALLOC_MAGIC && seen->version != FALLOC_VERSION)
                        snprintf(why, sizeof(why),
                                 "a header of version %llu; this library reads version %u only: free the region and "
                                 "make the heap again",
                                 (unsigned long long)seen->version, FALLOC_VERSION);
                r = client_fail(-EBADMSG,
                                "region %s is tagged as a falloc heap of %llu chunks of %llu bytes, but holds none "
                                "that fits it (%s)",
                                name, (unsigned long long)region->chunk_count, (unsigned long long)region->chunk_size,
                                why);
        }
        if (r < 0)
                return give_back(c, region->id, true, r);
        *heap = (fallocDeviceHeap *)at;
        return 0;
}
