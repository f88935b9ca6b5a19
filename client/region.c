/* SPDX-License-Identifier: MIT */
/*
 * Regions: alloc, free, attach, detach, seal.  Each is one request and its reply;
 * a region reply becomes a struct alloc_region through the pool it lies in,
 * which the reading thread mapped (pool-map.c) if the reply brought its fd.
 */
#include <errno.h>
#include <stdio.h>

#include "client-internal.h"

/* Where region g is in this process: its host pointer, device address and device. */
static int locate(struct alloc_client *c, const Allocd__Region *g, const struct map_error *map,
                  struct alloc_region *ret) {
        int r = g->region_fd ? region_table_locate(client_regions(c), g, ret)
                             : pool_table_locate(client_pools(c), g, ret);

        /* A pool that could not be mapped is not in the table: its own reason says more than "not mapped". */
        if (map->err < 0)
                return client_fail(map->err, "mapping pool %s (%llu bytes): %s", g->pool,
                                   (unsigned long long)g->pool_size, map->msg);
        if (r < 0)
                return client_fail(r,
                                   "allocd sent a region of pool %s that this connection has not mapped, or outside it",
                                   g->pool);
        return 0;
}

/* Turns a region reply into *ret; on failure the region is given back so nothing leaks. */
static int take_region(struct alloc_client *c, Allocd__Reply *reply, const struct map_error *map,
                       struct alloc_region *ret) {
        const Allocd__Region *g = reply->region;
        struct alloc_region out = {.device = -1};
        int r;

        if (reply->body_case != ALLOCD__REPLY__BODY_REGION || !g || !g->has_id || !g->pool)
                return client_fail(-EPROTO, "allocd answered without a region");
        if (g->kind != ALLOCD__POOL_KIND__FPGA) {
                r = locate(c, g, map, &out);
                if (r < 0) {
                        char why[CLIENT_ERROR_MAX];
                        snprintf(why, sizeof(why), "%s", alloc_last_error());
                        alloc_region_detach(c, g->id); /* nothing leaks; its result does not change ours */
                        return client_fail(r, "%s", why);
                }
        }
        out.id = g->id;
        out.kind = (enum alloc_kind)g->kind;
        out.addr = g->offset;
        out.size = g->size;
        snprintf(out.pool, sizeof(out.pool), "%s", g->pool);
        out.owner = g->uid;
        out.sealed = g->sealed;
        out.read_only = g->read_only;
        out.format = (enum alloc_format)g->format;
        out.chunk_size = g->chunk_size;
        out.chunk_count = g->chunk_count;
        out.formatted_by_allocd = g->formatted_by_allocd;
        *ret = out;
        return 0;
}

/* Runs req; for a region reply fills *region.  Returns 0 or a negative errno value. */
static int run(struct alloc_client *c, Allocd__Request *req, struct alloc_region *region) {
        Allocd__Reply *reply;
        struct map_error map;
        int r;

        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "no connection (NULL)");
        r = client_call(c, req, &reply, &map);
        if (r < 0)
                return r;
        r = client_reply_error(reply);
        if (r == 0 && region)
                r = take_region(c, reply, &map, region);
        allocd__reply__free_unpacked(reply, NULL);
        return r;
}

int alloc_region_new(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                     struct alloc_region *ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        static const struct alloc_opts none;

        if (!pool || !ret)
                return client_fail(-EINVAL, "alloc_region_new: pool and ret must not be NULL");
        if (!opts)
                opts = &none;
        a.pool = (char *)pool;
        a.has_size = true;
        a.size = size;
        a.has_count = opts->count != 0;
        a.count = opts->count;
        /* Only what differs from the protocol's defaults goes on the wire: fewer fields, less to code. */
        a.has_align = (a.align = opts->align) != 0;
        a.has_phase = (a.phase = opts->phase) != 0;
        a.has_boundary = (a.boundary = opts->boundary) != 0;
        a.has_low = (a.low = opts->low) != 0;
        a.has_high = (a.high = opts->high) != 0;
        a.has_flags = (a.flags = opts->flags) != 0;
        a.has_numa_node = opts->on_node;
        a.numa_node = opts->on_node ? opts->numa_node : -1;
        if (opts->on_node && opts->numa_node < 0)
                return client_fail(-EINVAL, "on_node is set but numa_node is %d", opts->numa_node);
        a.has_timeout_ms = opts->timeout_ms != 0;
        a.timeout_ms = opts->timeout_ms;
        a.name = (char *)opts->name;
        a.has_format = opts->format != ALLOC_FORMAT_RAW;
        a.format = (Allocd__Format)opts->format;
        a.has_chunk_size = opts->chunk_size != 0;
        a.chunk_size = opts->chunk_size;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
        req.alloc = &a;
        return run(c, &req, ret);
}

/* Free, Detach and Seal: a region id, and an empty answer. */
static int on_region(struct alloc_client *c, Allocd__Request__BodyCase what, uint64_t id) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        Allocd__Detach d = ALLOCD__DETACH__INIT;
        Allocd__Seal s = ALLOCD__SEAL__INIT;

        req.body_case = what;
        if (what == ALLOCD__REQUEST__BODY_FREE) {
                f.has_region = true;
                f.region = id;
                req.free = &f;
        } else if (what == ALLOCD__REQUEST__BODY_DETACH) {
                d.has_region = true;
                d.region = id;
                req.detach = &d;
        } else {
                s.has_region = true;
                s.region = id;
                req.seal = &s;
        }
        return run(c, &req, NULL);
}

/* Free and Detach drop a reference: the last one of an isolation = region region unmaps it here. */
static int drop(struct alloc_client *c, Allocd__Request__BodyCase what, uint64_t id) {
        int r = on_region(c, what, id);

        if (r == 0)
                region_table_drop(client_regions(c), id);
        return r;
}

int alloc_region_free(struct alloc_client *c, uint64_t id) {
        return drop(c, ALLOCD__REQUEST__BODY_FREE, id);
}

int alloc_region_seal(struct alloc_client *c, uint64_t id) {
        return on_region(c, ALLOCD__REQUEST__BODY_SEAL, id);
}

int alloc_region_attach(struct alloc_client *c, const char *name, const struct alloc_attach_opts *opts,
                        struct alloc_region *ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Attach a = ALLOCD__ATTACH__INIT;
        static const struct alloc_attach_opts none;

        if (!name || !ret)
                return client_fail(-EINVAL, "alloc_region_attach: name and ret must not be NULL");
        if (!opts)
                opts = &none;
        a.name = (char *)name;
        a.has_timeout_ms = opts->timeout_ms != 0;
        a.timeout_ms = opts->timeout_ms;
        a.pool = opts->pool && *opts->pool ? (char *)opts->pool : NULL;
        a.has_owner = opts->by_owner;
        a.owner = opts->owner;
        req.body_case = ALLOCD__REQUEST__BODY_ATTACH;
        req.attach = &a;
        return run(c, &req, ret);
}

int alloc_region_detach(struct alloc_client *c, uint64_t id) {
        return drop(c, ALLOCD__REQUEST__BODY_DETACH, id);
}
