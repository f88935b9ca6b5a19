/* SPDX-License-Identifier: MIT */
/*
 * Regions: alloc, free, attach, detach, seal, and batches of allocs and
 * frees.  Each is one request and its reply; a region reply becomes a struct
 * alloc_region through the pool it lies in, which the reading thread mapped
 * (pool-map.c) if the reply brought its fd.
 *
 * Every region handed out is recorded as held (held.c).  A Free or Detach of
 * regions all held is pipelined: it goes without waiting for its reply,
 * since allocd can refuse it only for what the library cannot see, and that
 * refusal waits for alloc_region_sync (docs/protocol.md, "Pipelining").
 * Anything else waits for allocd's word, as the _sync variants always do.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-internal.h"
#include "ids.h"
#include "wire.h"

_Static_assert(ALLOC_BATCH_MAX == WIRE_MAX_BATCH, "a batch is the protocol's");

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

int client_region_out(struct alloc_client *c, const Allocd__Region *g, const struct map_error *map,
                      struct alloc_region *ret) {
        struct alloc_region out = {.device = -1};
        int r;

        if (!g || !g->has_id || !g->pool)
                return client_fail(-EPROTO, "allocd answered without a region");
        /* A kind this library does not know (a newer allocd's) it cannot map, nor its caller switch on. */
        if ((unsigned)g->kind > ALLOCD__POOL_KIND__GPU)
                return client_fail(-EPROTO,
                                   "allocd sent a region of pool kind %u, which this liballoc-client does not know; "
                                   "update it to allocd's version",
                                   (unsigned)g->kind);
        if (g->kind != ALLOCD__POOL_KIND__FPGA && (r = locate(c, g, map, &out)) < 0)
                return r;
        out.id = g->id;
        out.kind = (enum alloc_kind)g->kind;
        out.addr = g->offset;
        out.size = g->size;
        /* Not snprintf: a batch of 1,000 regions spent 4% of its time formatting this. */
        size_t n = strnlen(g->pool, sizeof(out.pool) - 1);
        memcpy(out.pool, g->pool, n);
        out.pool[n] = '\0';
        out.owner = g->uid;
        out.sealed = g->sealed;
        out.format = (enum alloc_format)g->format;
        out.chunk_size = g->chunk_size;
        out.chunk_count = g->chunk_count;
        out.formatted_by_allocd = g->formatted_by_allocd;
        *ret = out;
        return 0;
}

size_t client_batch_size(const Allocd__RegionBatch *b) {
        if (!b)
                return 0;
        if (b->n_regions)
                return b->regions[0]->pool ? b->n_regions : 0;
        if (!b->common || !b->common->pool || b->n_offsets != b->n_ids || b->n_sizes != b->n_ids)
                return 0;
        return b->n_ids;
}

const Allocd__Region *client_batch_first(const Allocd__RegionBatch *b) {
        return b->n_regions ? b->regions[0] : b->common;
}

/* A copy: the reply's strings are freed with it. */
Allocd__Region client_batch_region(const Allocd__RegionBatch *b, size_t i) {
        Allocd__Region g;

        if (b->n_regions) {
                g = *b->regions[i];
                if (!g.pool)
                        g.pool = b->regions[0]->pool;
                return g;
        }
        g = *b->common;
        g.has_id = g.has_offset = g.has_size = true;
        g.id = b->ids[i];
        g.offset = b->offsets[i];
        g.size = b->sizes[i];
        return g;
}

/*
 * Gives back ids[0, n), regions a reply granted that cannot be handed to the caller: held as they
 * came (transport.c), they leave the held table as the request is listed, under the connection's
 * lock, so that a reconnect meanwhile gives them back once.  Refused or not known, they stay out
 * (forsaken): no caller holds them, and a reconnect, then or later, is to give back what allocd
 * still holds of them (put back and taken out again after the lock, one in between kept them).
 * The failure r stays the call's.
 */
static int refuse_grant(struct alloc_client *c, Allocd__Request *req, const uint64_t *ids, size_t n, int r) {
        char why[CLIENT_ERROR_MAX];
        bool taken;

        snprintf(why, sizeof(why), "%s", alloc_last_error());
        /* Nothing leaks; its result does not change ours. */
        (void)client_give_back_sync(c, req, ids, n, &taken, true);
        return client_fail(r, "%s", why);
}

/*
 * Turns a region reply into *ret; on failure the region is given back so nothing leaks: by a Free
 * where an Alloc made it (a Detach would leave a PERSIST region, named or not, to no one), else by
 * a Detach.
 */
static int take_region(struct alloc_client *c, Allocd__Reply *reply, const struct map_error *map, bool made,
                       struct alloc_region *ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Detach d = ALLOCD__DETACH__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        int r;

        if (reply->body_case != ALLOCD__REPLY__BODY_REGION)
                return client_fail(-EPROTO, "allocd answered without a region");
        if ((r = client_region_out(c, reply->region, map, ret)) < 0) {
                if (r == -EPROTO && (!reply->region || !reply->region->has_id))
                        return r;
                uint64_t id = reply->region->id;
                client_give_back_request(&req, made ? ALLOCD__REQUEST__BODY_FREE : ALLOCD__REQUEST__BODY_DETACH, id, &f,
                                         &d);
                region_table_drop(client_regions(c), id); /* its own mapping, if it came with one */
                return refuse_grant(c, &req, &id, 1, r);
        }
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
                r = take_region(c, reply, &map, req->body_case == ALLOCD__REQUEST__BODY_ALLOC, region);
        allocd__reply__free_unpacked(reply, NULL);
        return r;
}

/* An Alloc of pool with opts (NULL: none), all but its size. */
static int alloc_fill(Allocd__Alloc *a, const char *pool, const struct alloc_opts *opts) {
        static const struct alloc_opts none;

        if (!opts)
                opts = &none;
        a->pool = (char *)pool;
        a->has_count = opts->count != 0;
        a->count = opts->count;
        /* Only what differs from the protocol's defaults goes on the wire: fewer fields, less to code. */
        a->has_align = (a->align = opts->align) != 0;
        a->has_phase = (a->phase = opts->phase) != 0;
        a->has_boundary = (a->boundary = opts->boundary) != 0;
        a->has_low = (a->low = opts->low) != 0;
        a->has_high = (a->high = opts->high) != 0;
        a->has_flags = (a->flags = opts->flags) != 0;
        a->has_numa_node = opts->on_node;
        a->numa_node = opts->on_node ? opts->numa_node : -1;
        if (opts->on_node && opts->numa_node < 0)
                return client_fail(-EINVAL, "on_node is set but numa_node is %d", opts->numa_node);
        a->has_timeout_ms = opts->timeout_ms != 0;
        a->timeout_ms = opts->timeout_ms;
        /* On the wire "" is no name at all: taken as such it would be a region nobody can attach. */
        if (opts->name && !*opts->name)
                return client_fail(-EINVAL, "a region name is 1-%d bytes, not \"\"; NULL for none", ALLOC_NAME_MAX);
        a->name = (char *)opts->name;
        a->has_format = opts->format != ALLOC_FORMAT_RAW;
        a->format = (Allocd__Format)opts->format;
        a->has_chunk_size = opts->chunk_size != 0;
        a->chunk_size = opts->chunk_size;
        return 0;
}

static int free_batch(struct alloc_client *c, const uint64_t *ids, size_t n);

/* A spare a Free asked for, if it is of this shape; spares of another shape go back (spare.c). */
static int take_spare(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                      struct alloc_region *ret) {
        uint64_t back[SPARES_AHEAD];
        size_t nback;
        int r;

        do {
                r = client_spare_take(c, pool, size, opts, ret, back, &nback);
                /* One request: a reconnect on the way then squares them all, or none (reconnect.c). */
                if (nback)
                        free_batch(c, back, nback);
        } while (r < 0 && nback == SPARES_AHEAD); /* more to give back, or to look at */
        client_clear_error(); /* a spare that could not be taken went back: the alloc goes on as usual */
        return r;
}

int alloc_set_spare(struct alloc_client *c, bool on) {
        struct alloc_region unused;

        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "alloc_set_spare: c is NULL");
        client_spare_set(c, on);
        if (!on)
                take_spare(c, "", 0, NULL, &unused); /* no pool is named "": a spare goes back */
        return 0;
}

int alloc_region_new(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                     struct alloc_region *ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        int r;

        if (!pool || !ret)
                return client_fail(-EINVAL, "alloc_region_new: pool and ret must not be NULL");
        if (alloc_fill(&a, pool, opts) < 0)
                return -EINVAL;
        a.has_size = true;
        a.size = size;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
        req.alloc = &a;
        if (!c)
                return run(c, &req, ret);
        if (take_spare(c, pool, size, opts, ret) < 0 && (r = run(c, &req, ret)) < 0)
                return r;
        client_spare_note(c, pool, size, opts, ret->id);
        return 0;
}

/*
 * Gives back the n regions of ids with req (a Free, Detach or FreeBatch): without waiting when the
 * connection holds them all and pipe allows it, else waiting for allocd's answer.  Held regions are
 * taken out of the table before the request goes, so that a reconnect on the way knows them given
 * back (reconnect.c), and put back, under the same lock, if allocd refuses.  Each reference given back drops one of an
 * isolation = region region's mapping here (region-map.c); a pipelined one at once, since its
 * caller is done with the memory.
 */
static int give_back(struct alloc_client *c, Allocd__Request *req, const uint64_t *ids, size_t n, bool pipe) {
        bool taken = false;
        int r = 1;

        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "no connection (NULL)");
        if (pipe && (r = client_send_pipelined(c, req, ids, n)) <= 0)
                taken = true;
        if (r == 1) {
                if (req->body_case == ALLOCD__REQUEST__BODY_FREE)
                        req->free->renew = NULL; /* its answer is waited for, and is no spare */
                /* Refused, or not known (-ETIME): still held, put back in the table under the connection's lock. */
                r = client_give_back_sync(c, req, ids, n, &taken, false);
        }
        for (size_t i = 0; r == 0 && i < n; i++) {
                /* Not taken before: what allocd took back is held no longer; an id no record holds (PERSIST) is
                 * skipped. */
                if (!taken)
                        held_take(client_held(c), &ids[i], 1);
                region_table_drop(client_regions(c), ids[i]);
        }
        return r;
}

void client_give_back_request(Allocd__Request *req, Allocd__Request__BodyCase what, uint64_t id, Allocd__Free *f,
                              Allocd__Detach *d) {
        req->body_case = what;
        if (what == ALLOCD__REQUEST__BODY_FREE) {
                f->has_region = true;
                f->region = id;
                req->free = f;
        } else {
                d->has_region = true;
                d->region = id;
                req->detach = d;
        }
}

/* Free or Detach of one region. */
static int give_back_one(struct alloc_client *c, Allocd__Request__BodyCase what, uint64_t id, bool pipe) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        Allocd__Detach d = ALLOCD__DETACH__INIT;

        client_give_back_request(&req, what, id, &f, &d);
        return give_back(c, &req, &id, 1, pipe);
}

int alloc_region_free(struct alloc_client *c, uint64_t id) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        struct alloc_opts opts;
        char pool[ALLOC_POOL_NAME_MAX + 1];

        if (!c || !client_spare_renew(c, id, pool, &a.size, &opts, &f.spares))
                return give_back_one(c, ALLOCD__REQUEST__BODY_FREE, id, true);
        alloc_fill(&a, pool, &opts); /* checked when the region was allocated */
        a.has_size = true;
        client_give_back_request(&req, ALLOCD__REQUEST__BODY_FREE, id, &f, NULL);
        f.renew = &a;
        f.has_spares = f.spares != 1;
        return give_back(c, &req, &id, 1, true);
}

int alloc_region_free_sync(struct alloc_client *c, uint64_t id) {
        return give_back_one(c, ALLOCD__REQUEST__BODY_FREE, id, false);
}

int alloc_region_detach(struct alloc_client *c, uint64_t id) {
        return give_back_one(c, ALLOCD__REQUEST__BODY_DETACH, id, true);
}

int alloc_region_detach_sync(struct alloc_client *c, uint64_t id) {
        return give_back_one(c, ALLOCD__REQUEST__BODY_DETACH, id, false);
}

int alloc_region_sync(struct alloc_client *c) {
        client_clear_error();
        if (!c)
                return client_fail(-EINVAL, "alloc_region_sync: c is NULL");
        return client_sync(c);
}

/* A pipelined FreeBatch of ids, checked (each once, 1 to ALLOC_BATCH_MAX). */
static int free_batch(struct alloc_client *c, const uint64_t *ids, size_t n) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__FreeBatch fb = ALLOCD__FREE_BATCH__INIT;

        fb.n_regions = n;
        fb.regions = (uint64_t *)ids;
        req.body_case = ALLOCD__REQUEST__BODY_FREE_BATCH;
        req.free_batch = &fb;
        return give_back(c, &req, ids, n, true);
}

int alloc_region_free_batch(struct alloc_client *c, const uint64_t *ids, size_t n) {
        uint64_t *sorted, dup;

        if (n == 0 || n > ALLOC_BATCH_MAX || !ids)
                return client_fail(-EINVAL, "alloc_region_free_batch: 1 to %d ids, not %zu%s", ALLOC_BATCH_MAX, n,
                                   ids ? "" : " (ids is NULL)");
        /* allocd refuses a batch that names a region twice; that much is plain here, so it fails here. */
        if (!(sorted = malloc(n * sizeof(*ids))))
                return client_fail(-ENOMEM, "out of memory");
        dup = ids_first_duplicate(ids, n, sorted);
        free(sorted);
        if (dup)
                return client_fail(-EINVAL, "alloc_region_free_batch: region %llu appears twice; name each once",
                                   (unsigned long long)dup);
        return free_batch(c, ids, n);
}

int alloc_region_seal(struct alloc_client *c, uint64_t id) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Seal s = ALLOCD__SEAL__INIT;

        s.has_region = true;
        s.region = id;
        req.body_case = ALLOCD__REQUEST__BODY_SEAL;
        req.seal = &s;
        return run(c, &req, NULL);
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

/* FreeBatches of ids[0, n), ALLOC_BATCH_MAX at a time, refusing a grant with r (refuse_grant). */
static int refuse_grants(struct alloc_client *c, const uint64_t *ids, size_t n, int r) {
        for (size_t i = 0; i < n; i += ALLOC_BATCH_MAX) {
                Allocd__Request req = ALLOCD__REQUEST__INIT;
                Allocd__FreeBatch fb = ALLOCD__FREE_BATCH__INIT;
                fb.n_regions = n - i < ALLOC_BATCH_MAX ? n - i : ALLOC_BATCH_MAX;
                fb.regions = (uint64_t *)ids + i;
                req.body_case = ALLOCD__REQUEST__BODY_FREE_BATCH;
                req.free_batch = &fb;
                refuse_grant(c, &req, fb.regions, fb.n_regions, r);
        }
        return r;
}

/*
 * A batch reply of another size than asked (allocd's mistake, or a hostile one): what it granted
 * went into the held table as it came (transport.c), and goes back now, not at the disconnect.
 */
static int wrong_batch(struct alloc_client *c, const Allocd__RegionBatch *b, size_t n) {
        size_t got = client_batch_size(b), nids = 0;
        uint64_t *ids = got ? calloc(got, sizeof(*ids)) : NULL;
        int r = client_fail(-EPROTO, "allocd answered a batch of %zu regions with something else (%zu regions)", n,
                            got);

        if (got && !ids)
                return client_fail(-EPROTO,
                                   "allocd answered a batch of %zu regions with something else (%zu regions, and no "
                                   "memory to give them back: they go with the connection)",
                                   n, got);
        for (size_t i = 0; i < got; i++) {
                Allocd__Region g = client_batch_region(b, i);
                if (g.has_id)
                        ids[nids++] = g.id;
        }
        refuse_grants(c, ids, nids, r);
        free(ids);
        return r;
}

/* The n regions of a batch reply into ret; on failure all are given back, so nothing leaks. */
static int take_batch(struct alloc_client *c, Allocd__Reply *reply, const struct map_error *map, size_t n,
                      struct alloc_region *ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__FreeBatch fb = ALLOCD__FREE_BATCH__INIT;
        const Allocd__RegionBatch *b = reply->body_case == ALLOCD__REPLY__BODY_BATCH ? reply->batch : NULL;
        uint64_t ids[ALLOC_BATCH_MAX];
        size_t nids = 0;
        int r = 0;

        if (client_batch_size(b) != n)
                return wrong_batch(c, b, n);
        for (size_t i = 0; i < n; i++) {
                Allocd__Region g = client_batch_region(b, i);
                if (!g.has_id) {
                        /* The others are given back all the same. */
                        if (r == 0)
                                r = client_fail(-EPROTO, "allocd answered a batch with a region without an id");
                        continue;
                }
                if (r == 0)
                        r = client_region_out(c, &g, map, &ret[i]);
                ids[nids++] = g.id;
        }
        if (r < 0 && nids == 0)
                return r;
        if (r < 0) {
                fb.n_regions = nids;
                fb.regions = ids;
                req.body_case = ALLOCD__REQUEST__BODY_FREE_BATCH;
                req.free_batch = &fb;
                return refuse_grant(c, &req, ids, nids, r);
        }
        return 0;
}

int alloc_region_new_batch(struct alloc_client *c, const char *pool, const uint64_t *sizes, size_t n,
                           const struct alloc_opts *opts, struct alloc_region *ret) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__AllocBatch b = ALLOCD__ALLOC_BATCH__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Reply *reply;
        struct map_error map;
        int r;

        client_clear_error();
        if (!c || !pool || !sizes || !ret)
                return client_fail(-EINVAL, "alloc_region_new_batch: c, pool, sizes and ret must not be NULL");
        if (n == 0 || n > ALLOC_BATCH_MAX)
                return client_fail(-EINVAL, "alloc_region_new_batch: a batch is 1 to %d regions, not %zu",
                                   ALLOC_BATCH_MAX, n);
        if (alloc_fill(&a, pool, opts) < 0)
                return -EINVAL;
        b.alloc = &a;
        b.n_sizes = n;
        b.sizes = (uint64_t *)sizes;
        b.has_columns = b.columns = true;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC_BATCH;
        req.alloc_batch = &b;
        if ((r = client_call(c, &req, &reply, &map)) < 0)
                return r;
        if ((r = client_reply_error(reply)) == 0)
                r = take_batch(c, reply, &map, n, ret);
        allocd__reply__free_unpacked(reply, NULL);
        return r;
}
