/* SPDX-License-Identifier: MIT */
/*
 * The core's requests: Alloc, Free, Detach, Attach and the end of zeroing.
 * Each validates its whole input before it touches state, so a refused
 * request changes nothing (docs/ARCHITECTURE.md, "How a request travels").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "alloc/falloc.h"
#include "core-impl.h"
#include "log.h"
#include "text.h"

/* E_OK if p's access rules (a reload may change them) let cl do what; else E_DENIED, logged. */
static int pool_allows(const struct pool *p, const struct client *cl, int what, struct core_result *res) {
        if (core_pool_may(p, cl, what))
                return E_OK;
        logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pool = p->conf.name, .pid = cl->pid, .client = true, .uid = cl->uid},
             "denied: " CLIENT_FMT " may not %s in pool %s", CLIENT_ARGS(cl),
             what == ACCESS_ALLOC ? "allocate" : "attach", p->conf.name);
        /* Restored draining (restart.c): its rules went with its section, and no owner can change them now. */
        if (p->draining[0] && !p->reload_drained)
                return fail(res, E_DENIED,
                            "pool %s drains (%s): its access rules went with its section, so only root attaches its "
                            "regions now; their holders keep them",
                            p->conf.name, p->draining);
        return fail(res, E_DENIED,
                    "uid %u may not %s pool %s (owner %u, group %u, mode %04o); ask its owner to change "
                    "owner/group/mode",
                    (unsigned)cl->uid, what == ACCESS_ALLOC ? "allocate in" : "attach regions of", p->conf.name,
                    (unsigned)p->conf.owner, (unsigned)p->conf.group, (unsigned)p->conf.mode);
}

/* E_OK unless name is reserved for a pool other than p (its names = ...); the reservations may change on reload. */
static int name_allowed(const struct core *core, const struct pool *p, const char *name, struct core_result *res) {
        char pat[NAME_MAX_LEN + 1];

        if (!*name || core_pool_reserves(p, name))
                return E_OK;
        for (size_t i = 0; i < core->npools; i++)
                if (core_pool_reserves(core->pools[i], name) && (core->pools[i]->draining[0] || core->pools[i]->gone))
                        return fail(res, E_DENIED,
                                    "the name '%s' is reserved for pool %s, which is made anew (as the file now "
                                    "describes it) once its draining namesake has gone (with its last region); "
                                    "publish it there then, or pick another name",
                                    name, core->pools[i]->conf.name);
                else if (core_pool_reserving(core->pools[i], name, pat, sizeof(pat)))
                        return fail(res, E_DENIED,
                                    "the name '%s' is reserved for pool %s (its names = %s); allocate it in pool %s "
                                    "(if its mode lets you), or pick a name no pool's names covers",
                                    name, core->pools[i]->conf.name, pat, core->pools[i]->conf.name);
        return E_OK;
}

int alloc_allowed(const struct core *core, const struct client *cl, const struct alloc_args *a,
                  struct core_result *res) {
        int e = pool_allows(a->pool, cl, ACCESS_ALLOC, res);

        return e != E_OK ? e : name_allowed(core, a->pool, a->name, res);
}

int core_no_pool(struct core_result *res, const char *name) {
        char shown[NAME_MAX_LEN + 1];

        return fail(res, E_NO_POOL, TEXT_NO_POOL_FMT, *name ? text_escape(name, false, shown, sizeof(shown)) : "");
}

/* The pool a request names, if cl may use it for what. */
static struct pool *usable_pool(struct core *core, const struct client *cl, const char *name, int what,
                                struct core_result *res) {
        struct pool *p = name && *name ? core_pool_find(core, name) : NULL;

        if (!name || !*name) {
                fail(res, E_INVALID, "Alloc needs a pool name");
                return NULL;
        }
        if (!p) {
                core_no_pool(res, name);
                return NULL;
        }
        if (!p->available) {
                fail(res, E_NO_POOL, "pool %s (%s) is configured but not available: %s", p->conf.name,
                     pool_kind_name(p->conf.kind), p->reason);
                return NULL;
        }
        if (what == ACCESS_ALLOC && p->draining[0]) {
                fail(res, E_NO_POOL, POOL_DRAINING_FMT, p->conf.name, p->draining);
                return NULL;
        }
        return pool_allows(p, cl, what, res) == E_OK ? p : NULL;
}

/* What the region is to hold: its tag, with a heap's geometry checked against the region's size. */
static int check_format(const struct pool *p, const struct alloc_request *m, uint64_t size, struct region_format *fmt,
                        struct core_result *res) {
        uint64_t cs, count;
        int r;

        *fmt = (struct region_format){.format = FMT_RAW};
        if (m->format > FMT_FALLOC)
                return fail(res, E_INVALID, "unknown format %u; known are RAW 0 and FALLOC_HEAP 1", m->format);
        if (m->format == FMT_RAW)
                return m->chunk_size ? fail(res, E_INVALID,
                                            "chunk_size is for format FALLOC_HEAP; a RAW region has no chunks")
                                     : E_OK;
        if (!p->ops->zero)
                return fail(res, E_INVALID, "pool %s is an address space without memory; a falloc heap needs memory",
                            p->conf.name);
        r = falloc_heap_geometry(size, m->chunk_size, &cs, &count);
        if (r == -EINVAL)
                return fail(res, E_INVALID,
                            "FALLOC_HEAP needs a chunk_size of 1 to %u bytes (chunks are rounded up to %u), not "
                            "%" PRIu64,
                            FALLOC_CHUNK_MAX, FALLOC_CHUNK_ALIGN, m->chunk_size);
        if (r < 0)
                return fail(res, E_INVALID,
                            "%" PRIu64 " bytes do not hold a falloc heap of %" PRIu64 "-byte chunks (a %u-byte "
                            "header, a bitmap and one chunk at least); ask for at least %" PRIu64 " bytes",
                            size, m->chunk_size, FALLOC_HEADER_SIZE, falloc_heap_size(m->chunk_size, 1));
        /* A heap only its creator can write must not be attached before it is written. */
        if (m->name && *m->name && !(m->flags & F_UNSEALED) && !format_by_allocd(p))
                return fail(res, E_INVALID,
                            "allocd does not write falloc heaps in pool %s (%s memory, which only CUDA reaches): "
                            "allocate a named heap there UNSEALED, write it and Seal it (alloc_falloc_new does)",
                            p->conf.name, pool_kind_name(p->conf.kind));
        *fmt = (struct region_format){.format = FMT_FALLOC, .heap_size = size, .chunk_size = cs, .chunk_count = count};
        return E_OK;
}

int check_alloc(struct core *core, const struct client *cl, const struct alloc_request *m, struct alloc_args *a,
                struct core_result *res) {
        struct pool *p = usable_pool(core, cl, m->pool, ACCESS_ALLOC, res);
        uint64_t count = m->count ? m->count : 1;

        if (!p)
                return res->code;
        if (m->size == 0)
                return fail(res, E_INVALID, "size must be above 0");
        if (m->size > UINT64_MAX / count)
                return fail(res, E_OVERFLOW, "count %" PRIu64 " x size %" PRIu64 " overflows 64 bits", count, m->size);
        if (m->flags & F_WRITECOMBINED)
                return fail(res, E_INVALID,
                            "WRITECOMBINED: write-combined memory comes only from cuMemHostAlloc, which cannot be "
                            "shared between processes; for memory only this process uses, call "
                            "cuMemHostAlloc(CU_MEMHOSTALLOC_WRITECOMBINED) yourself");
        if (m->flags & ~F_KNOWN)
                return fail(res, E_INVALID,
                            "unknown flags %#x; known are ZERO 1, NOWAIT 2, NOFAIL 4, PERSIST 8, UNSEALED 32",
                            m->flags & ~F_KNOWN);
        if ((m->flags & F_UNSEALED) && !(m->name && *m->name))
                return fail(res, E_INVALID, "UNSEALED reserves a name until Seal: give the region a name");
        if ((m->flags & F_NOWAIT) && (m->flags & F_NOFAIL))
                return fail(res, E_INVALID, "NOWAIT and NOFAIL contradict each other");
        if ((m->flags & F_ZERO) && !p->ops->zero)
                return fail(res, E_INVALID, "pool %s is an address space without memory; ZERO does not apply",
                            p->conf.name);
        if (m->numa_node != -1 && m->numa_node != p->conf.numa_node) {
                if (p->conf.numa_node < 0)
                        return fail(res, E_INVALID,
                                    "pool %s is not bound to a NUMA node, so it cannot promise node %d; ask for any "
                                    "node (-1) or use a pool with numa_node = %d",
                                    p->conf.name, m->numa_node, m->numa_node);
                return fail(res, E_INVALID, "pool %s is on NUMA node %d, not %d", p->conf.name, p->conf.numa_node,
                            m->numa_node);
        }
        if (m->name && *m->name && !text_valid(m->name, NAME_MAX_LEN))
                return fail(res, E_INVALID, "a region name is 1-%d bytes of UTF-8 without control characters",
                            NAME_MAX_LEN);
        if (m->name && name_allowed(core, p, m->name, res) != E_OK)
                return res->code;
        *a = (struct alloc_args){
                .pool = p,
                .size = m->size * count,
                .req = m->req,
                .flags = m->flags,
                .timeout_ms = m->timeout_ms,
                .name = m->name ? m->name : "",
        };
        if (check_format(p, m, a->size, &a->fmt, res) != E_OK)
                return res->code;
        if (p->conf.quota_per_uid && a->size > p->conf.quota_per_uid)
                return fail(res, E_QUOTA,
                            "%" PRIu64 " bytes is more than the whole per-uid quota of pool %s (%" PRIu64 ")", a->size,
                            p->conf.name, p->conf.quota_per_uid);
        return E_OK;
}

bool alloc_never_fits(const struct alloc_args *a, struct core_result *res) {
        uint64_t off;
        int r = range_alloc(a->pool->empty, a->size, &a->req, &off);

        if (r == -ENOMEM)
                return false; /* not known: it may fit */
        if (r < 0) {
                explain(r, a->pool, a, res);
                return true;
        }
        range_free(a->pool->empty, off, 0);
        return false;
}

/*
 * Why cl may not queue one more request to wait, or NULL: per connection, and per uid, since every
 * waiter is tried again whenever its pool gets room back (waitq.c), so that one user's waiters cannot
 * take that time from everyone else's requests.
 */
static bool waiters_full(const struct core *core, const struct client *cl, char *why, size_t size) {
        const struct limits *l = &core->limits;

        if (cl->nwaiters >= l->max_waiters_per_connection)
                snprintf(why, size, "this connection has max_waiters_per_connection = %u requests waiting",
                         l->max_waiters_per_connection);
        else if (cl->user->waiters >= l->max_waiters_per_uid)
                snprintf(why, size,
                         "uid %u has max_waiters_per_uid = %u requests waiting; let some end or raise "
                         "max_waiters_per_uid",
                         (unsigned)cl->uid, l->max_waiters_per_uid);
        else
                return false;
        return true;
}

int core_alloc(struct core *core, struct client *cl, uint64_t req_id, const struct alloc_request *m, uint32_t *slot,
               struct core_result *res) {
        struct alloc_args a;
        int e;

        if (check_alloc(core, cl, m, &a, res) != E_OK)
                return GRANT_NONE;
        e = alloc_try(core, cl, &a, false, slot, res);
        if (e == E_OK)
                return alloc_finish(core, cl, *slot, res);
        if (e != E_WOULD_BLOCK)
                return GRANT_NONE;
        /* A request that no amount of freeing can satisfy fails now instead of waiting for nothing. */
        if (alloc_never_fits(&a, res))
                return GRANT_NONE;
        if (a.flags & F_NOWAIT) {
                size_t n = strlen(res->msg);
                snprintf(res->msg + n, sizeof(res->msg) - n, "; NOWAIT was given");
                return GRANT_NONE;
        }
        char why[160];
        if (waiters_full(core, cl, why, sizeof(why))) {
                size_t n = strlen(res->msg);
                res->code = E_LIMIT;
                snprintf(res->msg + n, sizeof(res->msg) - n, ", and %s", why);
                return GRANT_NONE;
        }
        if (waitq_add(core, cl, req_id, &a) < 0) {
                fail(res, E_INTERNAL, "out of memory queueing the request");
                return GRANT_NONE;
        }
        return GRANT_WAITING;
}

int core_spare(struct core *core, struct client *cl, const struct alloc_request *m, uint32_t *slot,
               struct core_result *res) {
        struct alloc_request want = *m;
        struct alloc_args a;

        if ((m->name && *m->name) || m->format != FMT_RAW || (m->flags & (F_PERSIST | F_UNSEALED))) {
                fail(res, E_INVALID, "a spare is an unnamed region of raw bytes, neither PERSIST nor UNSEALED");
                return GRANT_NONE;
        }
        want.flags = (m->flags | F_NOWAIT) & ~F_NOFAIL;
        want.timeout_ms = 0;
        if (check_alloc(core, cl, &want, &a, res) != E_OK)
                return GRANT_NONE;
        /* Room the Free just made goes to those waiting for it first (docs/ARCHITECTURE.md, "Wake-ups"). */
        if (a.pool->nwaiters) {
                fail(res, E_WOULD_BLOCK, "%" PRIu64 " requests wait for room in pool %s, and come first",
                     a.pool->nwaiters, a.pool->conf.name);
                return GRANT_NONE;
        }
        if (alloc_try(core, cl, &a, false, slot, res) != E_OK)
                return GRANT_NONE;
        /* The reply is the Free's, and waits for nothing: no worker's zeroing. */
        if (alloc_defers(core, *slot)) {
                region_discard(core, *slot);
                fail(res, E_WOULD_BLOCK, "the spare would be zeroed or filled off allocd's loop (over %u bytes)",
                     ZERO_INLINE_MAX);
                return GRANT_NONE;
        }
        return alloc_finish(core, cl, *slot, res);
}

int check_free(const struct core *core, const struct client *cl, uint64_t id, struct core_result *res) {
        int slot = region_slot(&core->regions, id);
        const struct region *r;

        if (slot < 0)
                return fail(res, E_NOT_FOUND, "no region %" PRIu64 " is alive", id);
        r = &core->regions.tab[slot];
        /* A PERSIST region outlives its creator's connection: its owner frees it without holding it. */
        if (region_hold_of(core, (uint32_t)slot, cl) == HOLD_NONE && !(r->state & R_PERSIST))
                /* Said to an operator's `allocctl free` too, who needs what takes such a region back. */
                return fail(res, E_NOT_FOUND,
                            "this connection holds no region %" PRIu64 ", which is not PERSIST: it goes when its "
                            "holders free or detach it or disconnect (`allocctl dump` lists them, `allocctl "
                            "disconnect` closes one)",
                            id);
        if (region_hold_of(core, (uint32_t)slot, cl) == HOLD_NONE && (r->state & R_PENDING))
                return fail(res, E_NOT_FOUND, "this connection holds no region %" PRIu64, id);
        if (cl->uid != r->uid && cl->uid != 0 && cl->uid != core->pools[r->pool]->conf.owner)
                return fail(res, E_DENIED,
                            "region %" PRIu64 " belongs to uid %u; only its owner, the pool's owner or root may free "
                            "it; use Detach to drop your reference",
                            id, (unsigned)r->uid);
        return ok_result(res);
}

int core_free_region(struct core *core, struct client *cl, uint64_t id, struct core_result *res) {
        int slot = region_slot(&core->regions, id);
        uint32_t hold;

        if (check_free(core, cl, id, res) != E_OK)
                return res->code;
        hold = region_hold_of(core, (uint32_t)slot, cl);
        /*
         * Free takes the name and the PERSIST reference away, and one of this holder's references:
         * in that order, since the last reference to go can take the region, and even shrink the
         * table, with it; nothing may read the slot, or r, after that.  Neither of the first two
         * moves a hold, so the one found above is still where it was.
         */
        region_unpublish(core, (uint32_t)slot);
        region_unpersist(core, (uint32_t)slot);
        if (hold != HOLD_NONE)
                region_drop_one(core, hold);
        return ok_result(res);
}

int core_detach(struct core *core, struct client *cl, uint64_t id, struct core_result *res) {
        int slot = region_slot(&core->regions, id);
        uint32_t hold = slot < 0 ? HOLD_NONE : region_hold_of(core, (uint32_t)slot, cl);

        if (hold == HOLD_NONE)
                return fail(res, E_NOT_FOUND, "this connection holds no region %" PRIu64, id);
        /* Its creator lets go of it before the Seal: as if it had freed it. */
        if ((core->regions.tab[slot].flags & F_UNSEALED) && core->regions.tab[slot].creator == cl->serial)
                region_abort_unsealed(core, (uint32_t)slot);
        region_drop_one(core, hold);
        return ok_result(res);
}

int attach_try(struct core *core, struct client *cl, const char *name, const struct attach_want *want, uint32_t *slot,
               struct core_result *res) {
        struct region_info r;
        int s, e;

        if ((s = names_find(&core->names, name)) < 0)
                return fail(res, E_NOT_FOUND, "no region is published as '%s'; attach with a timeout to wait for it",
                            name);
        core_region_info(core, (uint32_t)s, &r);
        if ((want->by_pool && r.pool->id != want->pool) || (want->by_owner && r.uid != want->owner)) {
                char asked[128];
                int n = want->by_pool ? snprintf(asked, sizeof(asked), "in pool %s", core->pools[want->pool]->conf.name)
                                      : 0;
                if (want->by_owner)
                        snprintf(asked + n, sizeof(asked) - (size_t)n, "%sby uid %u", n ? " " : "",
                                 (unsigned)want->owner);
                return fail(res, E_EXISTS,
                            "'%s' is published in pool %s by uid %u, not %s as this Attach asks: the name is someone "
                            "else's; do not trust it (allocctl dump shows who holds it)",
                            name, r.pool->conf.name, (unsigned)r.uid, asked);
        }
        if (!usable_pool(core, cl, r.pool->conf.name, ACCESS_ATTACH, res))
                return res->code;
        if (r.flags & F_UNSEALED)
                return fail(res, E_WOULD_BLOCK,
                            "'%s' is not sealed yet; attach with a timeout to wait for its creator's Seal", name);
        if (r.pending)
                return fail(res, E_WOULD_BLOCK, "'%s' is still being zeroed for its creator; try again", name);
        if (cl->nrefs + cl->npending >= core->limits.max_regions_per_connection)
                return fail(res, E_LIMIT, "this connection holds max_regions_per_connection = %u regions",
                            core->limits.max_regions_per_connection);
        if ((e = region_hold(core, (uint32_t)s, cl)) < 0)
                return e == -EOVERFLOW ? fail(res, E_LIMIT, "'%s' has as many references as allocd counts", name)
                                       : fail(res, E_INTERNAL, "out of memory");
        *slot = (uint32_t)s;
        return ok_result(res);
}

int core_attach(struct core *core, struct client *cl, uint64_t req_id, const struct attach_request *m, uint32_t *slot,
                struct core_result *res) {
        struct attach_want want = {.by_owner = m->by_owner, .owner = m->owner};
        int e;

        if (!m->name || !text_valid(m->name, NAME_MAX_LEN)) {
                fail(res, E_INVALID, "Attach needs a name of 1-%d bytes of UTF-8 without control characters",
                     NAME_MAX_LEN);
                return GRANT_NONE;
        }
        if (m->pool && *m->pool) {
                const struct pool *p = core_pool_find(core, m->pool);
                if (!p) {
                        core_no_pool(res, m->pool);
                        return GRANT_NONE;
                }
                /* Waiting would not change it (but for a reload, which the waiter cannot count on). */
                if (pool_allows(p, cl, ACCESS_ATTACH, res) != E_OK)
                        return GRANT_NONE;
                want.by_pool = true;
                want.pool = p->id;
        }
        e = attach_try(core, cl, m->name, &want, slot, res);
        if (e == E_OK)
                return GRANT_REGION;
        if (m->timeout_ms == 0 || (e != E_NOT_FOUND && e != E_WOULD_BLOCK))
                return GRANT_NONE;
        char why[160];
        if (waiters_full(core, cl, why, sizeof(why))) {
                fail(res, E_LIMIT, "%s", why);
                return GRANT_NONE;
        }
        if (waitq_add_attach(core, cl, req_id, m->name, &want, m->timeout_ms) < 0) {
                fail(res, E_INTERNAL, "out of memory queueing the request");
                return GRANT_NONE;
        }
        return GRANT_WAITING;
}

int core_seal(struct core *core, struct client *cl, uint64_t id, struct core_result *res) {
        int slot = region_slot(&core->regions, id);
        struct region *r;

        /* One being zeroed is nobody's yet (check_free): its creator learns its id with the Alloc's reply. */
        if (slot < 0 || (core->regions.tab[slot].state & R_PENDING))
                return fail(res, E_NOT_FOUND, "no region %" PRIu64 " is alive", id);
        r = &core->regions.tab[slot];
        if (r->creator != cl->serial)
                return fail(res, E_DENIED, "only the connection that allocated region %" PRIu64 " may seal it", id);
        if (!(r->flags & F_UNSEALED))
                return fail(res, E_INVALID,
                            "region %" PRIu64 " is not unsealed: it was allocated without UNSEALED, or sealed already",
                            id);
        r->flags &= (uint16_t)~F_UNSEALED;
        kept_region(core, (uint32_t)slot, NULL);
        /* Its name may have gone before the Seal: an owner's Free from another connection takes it. */
        if (r->name)
                waitq_name_ready(core, names_text(&core->names, r->name));
        return ok_result(res);
}

void core_zero_job(const struct core *core, uint32_t slot, struct zero_job *job) {
        const struct region *r = &core->regions.tab[slot];
        struct pool *p = core->pools[r->pool];

        *job = (struct zero_job){
                .pool = p,
                .offset = r->offset,
                .size = r->size,
                .fd = r->fd,
                .zero = r->fd < 0 && (r->flags & F_ZERO),
        };
        if (r->format != FMT_RAW && format_by_allocd(p))
                formats_get(&core->regions.formats, slot, &job->fmt);
}

int core_zero_run(const struct zero_job *job) {
        int r = 0;

        if (job->fd >= 0)
                r = pool_region_fill(job->fd, job->size);
        else if (job->zero)
                r = job->pool->ops->zero(job->pool, job->offset, job->size);
        /* The heap last: ZERO would wipe its header. */
        if (r == 0 && job->fmt.format != FMT_RAW)
                r = format_write(job->pool, job->fd, job->offset, job->size, &job->fmt);
        return r;
}

void prep_failed(struct core_result *res, const struct zero_job *job, int result) {
        const char *step = job->fd >= 0 ? "taking the memory of the region (the machine's, not the pool's)"
                           : job->zero  ? "zeroing the region"
                                        : NULL;
        char what[128];

        if (job->fmt.format == FMT_RAW || !step)
                snprintf(what, sizeof(what), "%s", step ? step : "writing the region's falloc heap");
        else
                snprintf(what, sizeof(what), "%s, or writing its falloc heap,", step);
        fail(res, E_INTERNAL, "%s failed: %s; nothing was allocated", what, strerror(-result));
}

int core_zero_done(struct core *core, struct client *cl, uint32_t slot, int result, struct core_result *res) {
        if (cl)
                cl->npending--;
        if (!cl) {
                region_discard(core, slot);
                return GRANT_NONE;
        }
        if (result == -ECANCELED) {
                region_discard(core, slot);
                fail(res, E_CANCELLED, "the client cancelled this request (Cancel) while its region was being zeroed");
                return GRANT_NONE;
        }
        if (result < 0) {
                struct zero_job job;
                core_zero_job(core, slot, &job);
                prep_failed(res, &job, result);
                region_discard(core, slot);
                return GRANT_NONE;
        }
        if (region_hand_out(core, slot, cl) < 0) {
                region_discard(core, slot);
                fail(res, E_INTERNAL, "out of memory recording the region's holder");
                return GRANT_NONE;
        }
        ok_result(res);
        return GRANT_REGION;
}
