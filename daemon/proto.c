/* SPDX-License-Identifier: MIT */
/*
 * Requests in, replies out (docs/ARCHITECTURE.md, "How a request travels").
 * Unpacking is bounded (a byte budget over a reused arena); a request that is
 * not an allocd.Request, or anything but Hello first, ends the connection
 * after an error reply.  Each handler maps the message onto a core call; the
 * core validates and answers with a code and a message, which go back as
 * they are.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"

/* The core's codes are the protocol's, value for value. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(E_OK, ALLOCD__ERROR__OK) && SAME(E_INVALID, ALLOCD__ERROR__INVALID) &&
                       SAME(E_LIMIT, ALLOCD__ERROR__LIMIT) && SAME(E_WOULD_BLOCK, ALLOCD__ERROR__WOULD_BLOCK) &&
                       SAME(E_CANCELLED, ALLOCD__ERROR__CANCELLED) && SAME(E_INTERNAL, ALLOCD__ERROR__INTERNAL) &&
                       SAME(E_DISCONNECTED, ALLOCD__ERROR__DISCONNECTED),
               "core errors are the protocol's");
_Static_assert(SAME(F_ZERO, ALLOCD__FLAG__ZERO) && SAME(F_NOWAIT, ALLOCD__FLAG__NOWAIT) &&
                       SAME(F_NOFAIL, ALLOCD__FLAG__NOFAIL) && SAME(F_PERSIST, ALLOCD__FLAG__PERSIST) &&
                       SAME(F_WRITECOMBINED, ALLOCD__FLAG__WRITECOMBINED) && SAME(F_UNSEALED, ALLOCD__FLAG__UNSEALED),
               "core flags are the protocol's");
_Static_assert(CORE_BATCH_MAX == WIRE_MAX_BATCH, "the core's batches are the protocol's");
_Static_assert(SAME(POOL_HOST, ALLOCD__POOL_KIND__HOST) && SAME(POOL_FPGA, ALLOCD__POOL_KIND__FPGA) &&
                       SAME(POOL_PINNED, ALLOCD__POOL_KIND__PINNED) && SAME(POOL_GPU, ALLOCD__POOL_KIND__GPU),
               "pool kinds are the protocol's");

_Static_assert(SAME(FMT_RAW, ALLOCD__FORMAT__RAW) && SAME(FMT_FALLOC, ALLOCD__FORMAT__FALLOC_HEAP),
               "formats are the protocol's");

void proto_region_format(Allocd__Region *out, const struct region_info *r) {
        out->has_format = true;
        out->format = (Allocd__Format)r->fmt.format;
        if (r->fmt.format == FMT_RAW)
                return;
        out->has_chunk_size = out->has_chunk_count = out->has_formatted_by_allocd = true;
        out->chunk_size = r->fmt.chunk_size;
        out->chunk_count = r->fmt.chunk_count;
        out->formatted_by_allocd = r->formatted;
}

/* Packs reply into out if it fits in one packet (sized once: a batch's 1,000 regions are costly to size). */
static bool pack_if_it_fits(struct proto_out *out, const Allocd__Reply *reply, size_t *len) {
        if ((*len = allocd__reply__get_packed_size(reply)) > sizeof(out->buf))
                return false;
        out->len = allocd__reply__pack(reply, out->buf);
        return true;
}

void proto_pack(struct proto_out *out, const Allocd__Reply *reply) {
        size_t len;

        if (!pack_if_it_fits(out, reply, &len)) {
                log_err("a reply of %zu bytes does not fit in one packet; answering INTERNAL", len);
                if (out->fd_owned)
                        close(out->fd);
                out->fd = -1;
                out->fd_owned = false;
                proto_error(out, reply->id, E_INTERNAL, "the reply does not fit in one packet (allocd's log)");
        }
}

void proto_error(struct proto_out *out, uint64_t req_id, int code, const char *msg) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;

        reply.has_id = reply.has_error = true;
        reply.id = req_id;
        reply.error = (Allocd__Error)code;
        reply.message = (char *)msg;
        proto_pack(out, &reply);
}

static void reply_result(struct proto_out *out, uint64_t id, const struct core_result *res) {
        proto_error(out, id, res->code, res->code == E_OK ? NULL : res->msg);
}

/* A quiet request's success goes unsaid: the client learns of it from the reply to any later request. */
static void reply_unless_quiet(struct proto_out *out, uint64_t id, bool quiet, const struct core_result *res) {
        if (!quiet || res->code != E_OK)
                reply_result(out, id, res);
}

/*
 * Which fd of pool p s has (FD_NONE, FD_RW, FD_RO); mark_fd sets it the first time (out of memory:
 * then it is sent again, harmless).  By id and by which pool holds that id: a pool that drained
 * away and was made anew under its name keeps the id, but is other memory, whose fd the
 * connection must be sent again (the client then maps it anew, pool-map.c).
 */
enum { FD_NONE, FD_RW, FD_RO };
static int fd_sent(const struct session *s, const struct pool_info *p) {
        return p->id < s->nfd_sent && s->fd_sent[p->id].made == p->made ? s->fd_sent[p->id].form : FD_NONE;
}

static void mark_fd(struct session *s, const struct pool_info *p, int form) {
        if (s->nfd_sent <= p->id) {
                size_t n = (size_t)p->id + 16;
                struct fd_sent *f = reallocarray(s->fd_sent, n, sizeof(*f));
                if (!f)
                        return;
                memset(f + s->nfd_sent, 0, (n - s->nfd_sent) * sizeof(*f));
                s->fd_sent = f;
                s->nfd_sent = n;
        }
        s->fd_sent[p->id] = (struct fd_sent){.made = p->made, .form = (uint8_t)form};
        s->any_ro |= form == FD_RO;
}

/*
 * The fd that lets this connection map region r: the pool's, the first time it gets a region of
 * that pool; the region's own, each time, in an isolation = region pool.  A connection that may
 * only attach in the pool gets a read-only open of the memory (CUDA's exports have none: there
 * the read-only mapping is the client library's choice, not enforced; docs/configuration.md).
 */
static void region_fd(struct session *s, const struct region_info *r, const struct pool_info *p, Allocd__Region *region,
                      struct proto_out *out) {
        bool rw = core_pool_may(r->pool, &s->client, ACCESS_ALLOC);

        if (p->kind != POOL_FPGA) {
                region->has_read_only = true;
                region->read_only = !rw;
        }
        if (r->fd >= 0) {
                /* Owned by the reply: the region may die (a Free of a guessed id) while it is queued. */
                out->fd = core_fd_open(r->fd, !rw);
                if (out->fd < 0) {
                        out->fd = -1; /* the client gives the region back, not having its memory */
                        return;
                }
                out->fd_owned = true;
                region->has_region_fd = region->region_fd = true;
                region->has_pool_size = true;
                region->pool_size = r->size;
                region->has_backing = true;
                region->backing = ALLOCD__BACKING__MEMFD;
                return;
        }
        if (p->fd < 0 || fd_sent(s, p) != FD_NONE)
                return;
        mark_fd(s, p, rw ? FD_RW : FD_RO); /* the client maps it as read_only says */
        out->fd = rw || p->ro_fd < 0 ? p->fd : p->ro_fd;
        region->has_pool_fd = region->pool_fd = true;
        region->has_pool_size = true;
        region->pool_size = p->size;
        region->has_backing = true;
        region->backing = !strcmp(p->backend, "vmm") ? ALLOCD__BACKING__CUDA_VMM : ALLOCD__BACKING__MEMFD;
        if (p->kind == POOL_PINNED) {
                region->has_register_flags = true;
                region->register_flags = p->conf->register_flags;
        }
        if (p->kind == POOL_GPU) {
                region->has_device_uuid = true;
                region->device_uuid.data = (uint8_t *)p->uuid;
                region->device_uuid.len = 16;
        }
}

/* slot's Region message (its strings the core's), with what this connection needs to map it (region_fd). */
static void region_msg(struct core *core, struct session *s, struct proto_out *out, uint32_t slot,
                       Allocd__Region *region) {
        struct region_info r;
        struct pool_info p;

        core_region_info(core, slot, &r);
        core_pool_info(r.pool, &p);
        allocd__region__init(region);
        region->has_id = region->has_kind = region->has_offset = region->has_size = true;
        region->id = r.id;
        region->pool = (char *)p.name;
        region->kind = (Allocd__PoolKind)p.kind;
        region->offset = r.offset;
        region->size = r.size;
        region->name = (char *)r.name;
        region->has_uid = region->has_sealed = true;
        region->uid = r.uid;
        region->sealed = !(r.flags & F_UNSEALED);
        proto_region_format(region, &r);
        region_fd(s, &r, &p, region, out);
}

/* The region's reply. */
static void reply_region(struct core *core, struct session *s, struct proto_out *out, uint64_t id, uint32_t slot) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__Region region;

        region_msg(core, s, out, slot, &region);
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.error = ALLOCD__ERROR__OK;
        reply.body_case = ALLOCD__REPLY__BODY_REGION;
        reply.region = &region;
        proto_pack(out, &reply);
}

/* What a grant asks of the server: a reply now, zeroing first, or nothing yet. */
static void granted(struct core *core, struct session *s, struct proto_out *out, uint64_t id, int grant, uint32_t slot,
                    const struct core_result *res) {
        struct region_info r;

        switch (grant) {
        case GRANT_REGION:
                reply_region(core, s, out, id, slot);
                core_region_info(core, slot, &r);
                if (r.persist)
                        out->persist_grant = r.id;
                return;
        case GRANT_ZEROING:
                out->zero = true;
                out->slot = slot;
                out->req_id = id;
                return;
        case GRANT_WAITING:
                return;
        default:
                return reply_result(out, id, res);
        }
}

static struct alloc_request alloc_request(const Allocd__Alloc *m) {
        return (struct alloc_request){
                .pool = m->pool,
                .size = m->has_size ? m->size : 0,
                .count = m->has_count ? m->count : 1,
                .req =
                        {
                                .align = m->has_align ? m->align : 0,
                                .phase = m->has_phase ? m->phase : 0,
                                .boundary = m->has_boundary ? m->boundary : 0,
                                .low = m->has_low ? m->low : 0,
                                .high = m->has_high ? m->high : 0,
                        },
                .numa_node = m->has_numa_node ? m->numa_node : -1,
                .flags = m->has_flags ? m->flags : 0,
                .timeout_ms = m->has_timeout_ms ? m->timeout_ms : 0,
                .name = m->name,
                .format = m->has_format ? (uint32_t)m->format : FMT_RAW,
                .chunk_size = m->has_chunk_size ? m->chunk_size : 0,
        };
}

/*
 * Whether this connection mapped pool read-only (its mode let it only attach) and may allocate
 * there now (a reload): its mapping cannot take a region it would write.  Most connections never
 * had a read-only fd, and pay nothing.
 */
static bool mapped_read_only(struct core *core, const struct session *s, const char *pool) {
        struct pool *p = s->any_ro && pool ? core_pool_find(core, pool) : NULL;
        struct pool_info info;

        if (!p)
                return false;
        core_pool_info(p, &info);
        return fd_sent(s, &info) == FD_RO && core_pool_may(p, &s->client, ACCESS_ALLOC);
}

static void refuse_read_only(struct proto_out *out, uint64_t id) {
        proto_error(out, id, E_DENIED,
                    "this connection mapped the pool read-only, when its mode let it only attach; connect again to "
                    "allocate in it");
}

static void handle_alloc(struct core *core, struct session *s, struct proto_out *out, uint64_t id,
                         const Allocd__Alloc *m) {
        struct alloc_request a = alloc_request(m);
        struct core_result res;
        uint32_t slot = 0;

        if (m->has_count && m->count == 0)
                return proto_error(out, id, E_INVALID, "count must be above 0 (or unset for 1)");
        if (mapped_read_only(core, s, m->pool))
                return refuse_read_only(out, id);
        int grant = core_alloc(core, &s->client, id, &a, &slot, &res);
        granted(core, s, out, id, grant, slot, &res);
}

/*
 * A Free's spares (docs/protocol.md, "Spares"), once the Free is done: the spare made (a Region), or
 * a batch of those made, or OK and why there is none.  The Free stands either way, so nothing here is an error.  An
 * isolation = region pool's regions each bring their memfd, and a packet carries one: one spare there.
 */
static void handle_renew(struct core *core, struct session *s, struct proto_out *out, uint64_t id,
                         const Allocd__Free *f) {
        static Allocd__Region regions[SPARES_MAX];
        Allocd__Region *list[SPARES_MAX];
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__RegionBatch batch = ALLOCD__REGION_BATCH__INIT;
        struct alloc_request a = alloc_request(f->renew);
        struct core_result res = {.code = E_OK};
        uint32_t slot, n = f->has_spares ? f->spares : 1, k = 0;
        char msg[CORE_MSG_MAX + 32];

        *res.msg = '\0';
        if (n < 1 || n > SPARES_MAX)
                snprintf(res.msg, sizeof(res.msg), "spares is 1 to %d, not %u", SPARES_MAX, n);
        else if (f->renew->has_count && f->renew->count == 0)
                snprintf(res.msg, sizeof(res.msg), "count must be above 0 (or unset for 1)");
        else if (mapped_read_only(core, s, f->renew->pool))
                snprintf(res.msg, sizeof(res.msg), "this connection mapped the pool read-only");
        for (; !*res.msg && k < n && !out->fd_owned; k++) {
                if (core_spare(core, &s->client, &a, &slot, &res) != GRANT_REGION)
                        break;
                region_msg(core, s, out, slot, &regions[k]);
                if (k > 0)
                        regions[k].pool = NULL;
                list[k] = &regions[k];
        }
        snprintf(msg, sizeof(msg), "%s%s", k ? "fewer spares than asked: " : "no spare: ", res.msg);
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.message = *res.msg ? msg : NULL;
        if (k == 1) {
                /* As an Alloc's: an isolation = region pool's region_fd is mapped from a Region. */
                reply.body_case = ALLOCD__REPLY__BODY_REGION;
                reply.region = &regions[0];
        } else if (k) {
                batch.n_regions = k;
                batch.regions = list;
                reply.body_case = ALLOCD__REPLY__BODY_BATCH;
                reply.batch = &batch;
        }
        proto_pack(out, &reply);
}

/*
 * The regions of a batch, in one reply (docs/protocol.md, "Batches"): listed, where only the first
 * names the pool, or, when the client asks, in columns, which cost a tenth as much to pack and to
 * unpack: a thousand Regions were half of a batch's time, on both sides.
 */
static void batch_reply(struct core *core, struct session *s, struct proto_out *out, const uint32_t *slots, size_t n,
                        bool columns, Allocd__RegionBatch *batch) {
        static Allocd__Region regions[CORE_BATCH_MAX]; /* the loop is single-threaded: one reply at a time */
        static Allocd__Region *list[CORE_BATCH_MAX];
        static uint64_t ids[CORE_BATCH_MAX], offsets[CORE_BATCH_MAX], sizes[CORE_BATCH_MAX];

        if (!columns) {
                for (size_t i = 0; i < n; i++) {
                        region_msg(core, s, out, slots[i], &regions[i]);
                        if (i > 0)
                                regions[i].pool = NULL;
                        list[i] = &regions[i];
                }
                batch->n_regions = n;
                batch->regions = list;
                return;
        }
        region_msg(core, s, out, slots[0], &regions[0]);
        for (size_t i = 0; i < n; i++) {
                struct region_info r;
                core_region_info(core, slots[i], &r);
                ids[i] = r.id;
                offsets[i] = r.offset;
                sizes[i] = r.size;
        }
        regions[0].has_id = regions[0].has_offset = regions[0].has_size = false;
        batch->common = &regions[0];
        batch->n_ids = batch->n_offsets = batch->n_sizes = n;
        batch->ids = ids;
        batch->offsets = offsets;
        batch->sizes = sizes;
}

static void handle_alloc_batch(struct core *core, struct session *s, struct proto_out *out, uint64_t id,
                               const Allocd__AllocBatch *m) {
        static uint32_t slots[CORE_BATCH_MAX];
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__RegionBatch batch = ALLOCD__REGION_BATCH__INIT;
        struct alloc_request a;
        struct core_result res;

        if (!m->alloc)
                return proto_error(out, id, E_INVALID, "AllocBatch needs alloc: the pool, constraints and flags");
        if (m->alloc->has_count && m->alloc->count == 0)
                return proto_error(out, id, E_INVALID, "count must be 1 or unset in a batch");
        if (mapped_read_only(core, s, m->alloc->pool))
                return refuse_read_only(out, id);
        a = alloc_request(m->alloc);
        if (core_alloc_batch(core, &s->client, &a, m->sizes, m->n_sizes, slots, &res) != E_OK)
                return reply_result(out, id, &res);
        batch_reply(core, s, out, slots, m->n_sizes, m->has_columns && m->columns, &batch);
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_BATCH;
        reply.batch = &batch;
        size_t len;
        if (!pack_if_it_fits(out, &reply, &len)) {
                /*
                 * WIRE_MAX_BATCH is sized so that this cannot happen; if it did, the regions must not outlive
                 * it, and the pool's fd, if this reply was to bring it, is not sent: the next region brings it.
                 */
                for (size_t i = 0; i < m->n_sizes; i++) {
                        struct region_info r;
                        core_region_info(core, slots[i], &r);
                        core_free_region(core, &s->client, r.id, &res);
                }
                if (out->fd >= 0) {
                        struct pool_info info;
                        core_pool_info(core_pool_find(core, a.pool), &info);
                        mark_fd(s, &info, FD_NONE);
                        out->fd = -1;
                }
                return proto_error(out, id, E_INTERNAL, "the batch's reply does not fit in one packet; none allocated");
        }
}

/* An Attach's outcome, now or after its wait: never a persist_grant, the region is not this connection's. */
static void attached(struct core *core, struct session *s, struct proto_out *out, uint64_t id, int grant, uint32_t slot,
                     const struct core_result *res) {
        if (grant == GRANT_REGION)
                reply_region(core, s, out, id, slot);
        else if (grant != GRANT_WAITING)
                reply_result(out, id, res);
}

static void handle_attach(struct core *core, struct session *s, struct proto_out *out, uint64_t id,
                          const Allocd__Attach *m) {
        struct attach_request a = {
                .name = m->name,
                .timeout_ms = m->has_timeout_ms ? m->timeout_ms : 0,
                .pool = m->pool,
                .by_owner = m->has_owner,
                .owner = m->owner,
        };
        struct core_result res;
        uint32_t slot = 0;
        int grant = core_attach(core, &s->client, id, &a, &slot, &res);

        attached(core, s, out, id, grant, slot, &res);
}

static void dispatch(struct core *core, struct session *s, const Allocd__Request *req, struct proto_out *out) {
        uint64_t id = req->has_id ? req->id : 0;
        struct core_result res;

        if (!s->hello && req->body_case != ALLOCD__REQUEST__BODY_HELLO) {
                out->close = true;
                return proto_error(out, id, E_PROTOCOL, "the first request must be Hello; closing");
        }
        switch (req->body_case) {
        case ALLOCD__REQUEST__BODY_HELLO:
                return proto_hello(core, s, out, id, req->hello);
        case ALLOCD__REQUEST__BODY_ALLOC:
                return handle_alloc(core, s, out, id, req->alloc);
        case ALLOCD__REQUEST__BODY_FREE:
                if (core_free_region(core, &s->client, req->free->region, &res) == E_OK && req->free->renew)
                        return handle_renew(core, s, out, id, req->free);
                return reply_unless_quiet(out, id, req->free->quiet, &res);
        case ALLOCD__REQUEST__BODY_ATTACH:
                return handle_attach(core, s, out, id, req->attach);
        case ALLOCD__REQUEST__BODY_DETACH:
                core_detach(core, &s->client, req->detach->region, &res);
                return reply_unless_quiet(out, id, req->detach->quiet, &res);
        case ALLOCD__REQUEST__BODY_STATUS:
                return proto_status(core, s, id, req->status, out);
        case ALLOCD__REQUEST__BODY_DUMP:
                return proto_dump(core, s, id, req->dump, out);
        case ALLOCD__REQUEST__BODY_DISCONNECT:
                return proto_disconnect(core, s, out, id, req->disconnect);
        case ALLOCD__REQUEST__BODY_SEAL:
                core_seal(core, &s->client, req->seal->has_region ? req->seal->region : 0, &res);
                return reply_result(out, id, &res);
        case ALLOCD__REQUEST__BODY_ALLOC_BATCH:
                return handle_alloc_batch(core, s, out, id, req->alloc_batch);
        case ALLOCD__REQUEST__BODY_FREE_BATCH:
                core_free_batch(core, &s->client, req->free_batch->regions, req->free_batch->n_regions, &res);
                return reply_unless_quiet(out, id, req->free_batch->quiet, &res);
        case ALLOCD__REQUEST__BODY_SYNC:
                return proto_error(out, id, E_OK, NULL);
        case ALLOCD__REQUEST__BODY_HELD:
                return proto_held(core, s, id, req->held, out);
        case ALLOCD__REQUEST__BODY_CANCEL:
                if (!req->cancel->has_request)
                        return proto_error(out, id, E_INVALID, "Cancel needs request: the id of the request to end");
                if (core_cancel(core, &s->client, req->cancel->request, &res) == E_NOT_FOUND) {
                        out->cancel = req->cancel->request; /* being zeroed, perhaps: the server knows */
                        out->req_id = id;
                }
                return reply_result(out, id, &res);
        case ALLOCD__REQUEST__BODY_GOODBYE:
                /* The server releases the connection before it sends the OK, then closes it (server.c, act). */
                out->goodbye = out->close = true;
                return proto_error(out, id, E_OK, NULL);
        default:
                return proto_error(out, id, E_INVALID,
                                   "unknown request; this allocd serves Hello, Alloc, Free, Attach, Detach, Status, "
                                   "Dump, Disconnect, Seal, AllocBatch, FreeBatch, Sync, Held, Cancel and Goodbye");
        }
}

/*
 * A string field that holds a NUL byte or is not UTF-8 is refused before anything reads the C
 * string protobuf-c made of it, which would be cut at the NUL (common/wire-check.c): INVALID,
 * naming the field, as any argument out of its domain, and the connection stays.  A request
 * before Hello is left to dispatch, which ends the connection for it whatever its fields.
 */
static bool text_refused(const struct session *s, const Allocd__Request *req, const uint8_t *buf, size_t len,
                         struct proto_out *out) {
        struct wire_bad_text bad;
        char msg[160];
        int r;

        if (!s->hello && req->body_case != ALLOCD__REQUEST__BODY_HELLO)
                return false;
        r = wire_check_text(&allocd__request__descriptor, buf, len, &bad);
        if (r == 0)
                return false;
        /* Not met: protobuf-c refuses all that the walk does, and no message of allocd.proto holds itself. */
        if (r != -EILSEQ) {
                out->close = true;
                proto_error(out, 0, E_PROTOCOL, "cannot decode the packet as an allocd.Request; closing");
                return true;
        }
        char where[96];
        wire_bad_text_where(&bad, where, sizeof(where));
        snprintf(msg, sizeof(msg), "%s: %s", where, wire_bad_text_why(&bad));
        proto_error(out, req->has_id ? req->id : 0, E_INVALID, msg);
        return true;
}

static void out_init(struct proto_out *out) {
        out->len = 0;
        out->fd = -1;
        out->close = out->zero = out->fd_owned = out->goodbye = false;
        out->persist_grant = out->reclaimed = out->cancel = 0;
}

void proto_request(struct core *core, struct session *s, const uint8_t *buf, size_t len, void *arena, size_t arena_size,
                   struct proto_out *out) {
        struct wire_budget budget;
        Allocd__Request *req;

        out_init(out);
        wire_budget_init(&budget, WIRE_UNPACK_BUDGET, arena, arena_size);
        req = allocd__request__unpack(&budget.allocator, len, buf);
        if (!req) {
                logx(LOG_LEVEL_NOTICE, CLIENT_CTX(&s->client),
                     CLIENT_FMT " sent %zu bytes that are not an allocd request; disconnecting it",
                     CLIENT_ARGS(&s->client), len);
                out->close = true;
                return proto_error(out, 0, E_PROTOCOL, "cannot decode the packet as an allocd.Request; closing");
        }
        if (!text_refused(s, req, buf, len, out))
                dispatch(core, s, req, out);
        wire_budget_free(&budget, &req->base);
}

void proto_done(struct core *core, struct session *s, const struct core_done *d, struct proto_out *out) {
        out_init(out);
        if (d->attach)
                attached(core, s, out, d->req_id, d->grant, d->slot, &d->res);
        else
                granted(core, s, out, d->req_id, d->grant, d->slot, &d->res);
}

void proto_zeroed(struct core *core, struct session *s, uint32_t slot, uint64_t req_id, int result,
                  struct proto_out *out) {
        struct core_result res;
        int grant = core_zero_done(core, s ? &s->client : NULL, slot, result, &res);

        out_init(out);
        if (s)
                granted(core, s, out, req_id, grant, slot, &res);
}

void session_clear(struct session *s) {
        free(s->fd_sent);
        s->fd_sent = NULL;
        s->nfd_sent = 0;
        s->any_ro = false;
}
