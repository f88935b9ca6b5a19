/* SPDX-License-Identifier: MIT */
/*
 * Status and Dump: the core's state, marshalled into one packet each.  Both
 * page: Status lists the clients after a serial until the packet is full and
 * says how many it left out (of each pool's uids, a few, counting the rest);
 * Dump lists regions after an id, at most DUMP_MAX a packet and DUMP_SCAN
 * slots looked at, and says whether there are more and after what to ask, so
 * neither side ever holds more than a packet of it, nor allocd's loop more
 * than a bounded scan, however many regions there are.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "proto.h"
#include "text.h"
#include "version.h"

static uint64_t started_realtime, started_ms;

void proto_set_started(uint64_t realtime_s, uint64_t monotonic_ms) {
        started_realtime = realtime_s;
        started_ms = monotonic_ms;
}

/* A pool Status lists: made, or configured and waiting for a GPU. */
static bool listed(const struct pool_info *p) {
        return p->available || *p->reason;
}

static size_t nspans(const struct pool_info *p) {
        return p->kind == POOL_FPGA ? p->conf->nranges : 1;
}

/* A pinned pool's flags, as a slice of this: both, "portable" alone, or "devicemap" alone. */
static char *flag_names[] = {"portable", "devicemap"};

/* NAMES_TEXT_MAX: room for a pool's names = as one line (a '\n' becomes ", "). */
#define NAMES_TEXT_MAX (2 * NAME_PATTERNS_MAX + 1)

/*
 * Per-uid use in a Status reply: at most USAGE_LISTED uids a pool, and all the pools' lists together at
 * most USAGE_BUDGET bytes and half the room the pools leave, shared alike among the pools, so that a
 * page still holds clients however many uids use however many pools.  USAGE_ENTRY_MAX: one entry's
 * most bytes packed (tag and length, uid, bytes, regions).
 */
#define USAGE_LISTED 32
#define USAGE_BUDGET (WIRE_MAX_PACKET / 4)
#define USAGE_ENTRY_MAX 32

/* Room for n uids of each of the pools' lists, n as the share allows: at most some 500 entries in all. */
struct usage_block {
        struct uid_usage *top;
        Allocd__UidUsage *u, **p;
};

/* Who uses the pool: others' use only to whom Dump shows their regions (the rules are fill_pool's). */
static void fill_usage(Allocd__PoolStatus *ps, const struct pool *pool, const struct client *cl,
                       const struct usage_block *b, size_t n) {
        bool hidden = cl->uid != 0 && !core_pool_may(pool, cl, ACCESS_ATTACH) && !core_pool_may(pool, cl, ACCESS_ALLOC);
        size_t users, k = core_pool_users(pool, cl->uid, hidden, b->top, n, &users);

        for (size_t j = 0; j < k; j++) {
                allocd__uid_usage__init(&b->u[j]);
                b->u[j].has_uid = b->u[j].has_bytes = b->u[j].has_regions = true;
                b->u[j].uid = b->top[j].uid;
                b->u[j].bytes = b->top[j].bytes;
                b->u[j].regions = b->top[j].regions;
                b->p[j] = &b->u[j];
        }
        ps->usage = b->p;
        ps->n_usage = k;
        ps->usage_omitted = hidden ? 0 : users - k;
        ps->usage_hidden = hidden;
}

static void fill_pool(Allocd__PoolStatus *ps, const struct pool *pool, const struct pool_info *p, Allocd__Span *sp,
                      Allocd__Span **spp, char *names) {
        struct range_stats st;

        core_pool_stats(pool, &st);
        allocd__pool_status__init(ps);
        ps->name = (char *)p->name;
        ps->has_kind = ps->has_size = ps->has_used = ps->has_free = ps->has_largest_free = ps->has_regions =
                ps->has_waiters = ps->has_quantum = true;
        ps->kind = (Allocd__PoolKind)p->kind;
        ps->size = st.total;
        ps->used = st.in_use;
        ps->free = st.free;
        ps->largest_free = st.largest_free;
        ps->regions = p->regions;
        ps->waiters = p->waiters;
        /* Here, not in fill_access: the room left for the uids' use is what the rest leaves. */
        ps->has_owner = ps->has_group = ps->has_mode = ps->has_quota_per_uid = true;
        ps->owner = p->conf->owner;
        ps->group = p->conf->group;
        ps->mode = p->conf->mode;
        ps->quota_per_uid = p->conf->quota_per_uid;
        ps->has_usage_omitted = ps->has_usage_hidden = true;
        ps->quantum = st.quantum;
        ps->backend = (char *)p->backend;
        ps->has_device = p->kind == POOL_GPU;
        ps->device = p->conf->device;
        if (p->kind == POOL_PINNED && strcmp(p->backend, "vmm")) {
                uint32_t f = p->conf->register_flags;
                ps->flags = &flag_names[f & REGISTER_PORTABLE ? 0 : 1];
                ps->n_flags = (size_t) !!(f & REGISTER_PORTABLE) + !!(f & REGISTER_DEVICEMAP);
        }
        if (p->kind != POOL_FPGA)
                ps->isolation = p->conf->isolation == ISOLATION_REGION ? "region" : "pool";
        /* A draining pool's own patterns reserve nothing; those it holds for its namesake do (core_pool_reserves). */
        if (*p->names)
                ps->names = names;
        ps->draining = (char *)p->draining;
        for (const char *c = p->names; *c; c++) {
                if (*c != '\n')
                        *names++ = *c;
                else if (c[1])
                        *names++ = ',', *names++ = ' ';
        }
        ps->spans = spp;
        ps->n_spans = nspans(p);
        for (size_t j = 0; j < ps->n_spans; j++) {
                allocd__span__init(&sp[j]);
                sp[j].has_address = sp[j].has_size = true;
                sp[j].address = p->kind == POOL_FPGA ? p->conf->ranges[j].base : 0;
                sp[j].size = p->kind == POOL_FPGA ? p->conf->ranges[j].size : p->conf->size;
                spp[j] = &sp[j];
        }
}

void proto_status(struct core *core, const struct session *s, uint64_t id, const Allocd__Status *m,
                  struct proto_out *out) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__StatusReply st = ALLOCD__STATUS_REPLY__INIT;
        uint64_t after = m->has_clients_after ? m->clients_after : 0, omitted = 0;
        size_t npools = core_npools(core), nsp = 0, nc = core_nclients(core), n = 0;
        size_t budget = WIRE_MAX_PACKET - 1024;
        struct pool_info *info = calloc(npools + 1, sizeof(*info));
        const struct client *k;
        struct timespec now;

        for (size_t i = 0; info && i < npools; i++) {
                core_pool_info(core_pool_at(core, i), &info[i]);
                nsp += info[i].available ? nspans(&info[i]) : 0;
        }
        Allocd__PoolStatus *ps = calloc(npools + 1, sizeof(*ps)), **pp = calloc(npools + 1, sizeof(*pp));
        Allocd__Span *sp = calloc(nsp + 1, sizeof(*sp)), **spp = calloc(nsp + 1, sizeof(*spp));
        Allocd__ClientStatus *cs = calloc(nc + 1, sizeof(*cs)), **cp = calloc(nc + 1, sizeof(*cp));
        Allocd__UnavailablePool *us = calloc(npools + 1, sizeof(*us)), **up = calloc(npools + 1, sizeof(*up));
        char *names = calloc(npools + 1, NAMES_TEXT_MAX);
        struct usage_block ub = {0};

        if (!info || !ps || !pp || !sp || !spp || !cs || !cp || !us || !up || !names) {
                proto_error(out, id, E_INTERNAL, "out of memory");
                goto out;
        }
        nsp = 0;
        /* A later page (clients_after) is for the clients: the pools came whole in the first. */
        for (size_t i = 0; !m->has_clients_after && i < npools; i++) {
                if (info[i].available) {
                        fill_pool(&ps[st.n_pools], core_pool_at(core, i), &info[i], &sp[nsp], &spp[nsp],
                                  names + i * NAMES_TEXT_MAX);
                        nsp += nspans(&info[i]);
                        pp[st.n_pools] = &ps[st.n_pools];
                        st.n_pools++;
                } else if (listed(&info[i])) {
                        allocd__unavailable_pool__init(&us[st.n_unavailable]);
                        us[st.n_unavailable].name = (char *)info[i].name;
                        us[st.n_unavailable].has_kind = true;
                        us[st.n_unavailable].kind = (Allocd__PoolKind)info[i].kind;
                        us[st.n_unavailable].reason = (char *)info[i].reason;
                        up[st.n_unavailable] = &us[st.n_unavailable];
                        st.n_unavailable++;
                }
        }
        st.pools = pp;
        st.unavailable = up;
        st.daemon_version = (char *)ALLOCD_VERSION;
        st.has_uptime = st.has_started = true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        st.uptime = ((uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000 - started_ms) / 1000;
        st.started = started_realtime;
        size_t fixed = allocd__status_reply__get_packed_size(&st);
        if (st.n_pools) {
                size_t room = fixed < budget ? (budget - fixed) / 2 : 0;
                size_t share = (room < USAGE_BUDGET ? room : USAGE_BUDGET) / st.n_pools / USAGE_ENTRY_MAX;
                size_t listed = share < USAGE_LISTED ? share : USAGE_LISTED;
                ub.top = calloc(st.n_pools * listed + 1, sizeof(*ub.top));
                ub.u = calloc(st.n_pools * listed + 1, sizeof(*ub.u));
                ub.p = calloc(st.n_pools * listed + 1, sizeof(*ub.p));
                if (!ub.top || !ub.u || !ub.p) {
                        proto_error(out, id, E_INTERNAL, "out of memory");
                        goto out;
                }
                for (size_t i = 0, j = 0; i < npools; i++) {
                        if (!info[i].available)
                                continue;
                        struct usage_block b = {ub.top + j * listed, ub.u + j * listed, ub.p + j * listed};
                        fill_usage(&ps[j], core_pool_at(core, i), &s->client, &b, listed);
                        j++;
                }
                fixed = allocd__status_reply__get_packed_size(&st);
        }
        budget = fixed < budget ? budget - fixed : 0; /* pools too many to list: proto_pack answers INTERNAL */
        TAILQ_FOREACH(k, core_clients(core), link) {
                Allocd__ClientStatus *x = &cs[n];

                if (k->serial <= after)
                        continue;
                if (omitted) {
                        omitted++;
                        continue;
                }
                allocd__client_status__init(x);
                x->has_pid = x->has_uid = x->has_regions = x->has_bytes = x->has_waiters = x->has_serial = true;
                x->pid = k->pid;
                x->uid = k->uid;
                x->name = (char *)k->name;
                x->comm = (char *)k->comm;
                x->regions = k->nrefs;
                x->bytes = k->bytes;
                x->waiters = k->nwaiters;
                x->serial = k->serial;
                x->has_restored = x->restored = k->absent;
                x->has_watched = x->watched = k->watched;
                size_t sz = allocd__client_status__get_packed_size(x) + 8;
                if (sz > budget) {
                        omitted++;
                        continue;
                }
                budget -= sz;
                cp[n++] = x;
        }
        st.n_clients = n;
        st.clients = cp;
        st.has_clients_omitted = true;
        st.clients_omitted = omitted;
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_STATUS;
        reply.status = &st;
        proto_pack(out, &reply);
out:
        free(info);
        free(ps);
        free(pp);
        free(sp);
        free(spp);
        free(cs);
        free(cp);
        free(us);
        free(up);
        free(names);
        free(ub.top);
        free(ub.u);
        free(ub.p);
}

/* Holders listed per region in a Dump; the rest are counted in holders_omitted. */
#define HOLDERS_LISTED 32
#define DUMP_MAX 512
/*
 * Slots one Dump looks at, listed or not: a Dump that sees few of the regions (of another pool,
 * or another user's) would otherwise walk the whole table for one page, ~20 ms at 1M regions, and
 * a client may pipeline many.  At about 20 ns a slot this is ~0.3 ms; the reply's next says where
 * to go on.
 */
#define DUMP_SCAN 16384

struct holder_block {
        Allocd__Holder h[HOLDERS_LISTED];
        Allocd__Holder *p[HOLDERS_LISTED];
        Allocd__Region *out;
};

static bool add_holder(const struct client *cl, uint32_t count, void *data) {
        struct holder_block *b = data;
        Allocd__Region *out = b->out;

        (void)count;
        if (out->n_holders == HOLDERS_LISTED) {
                out->holders_omitted++;
                return true;
        }
        Allocd__Holder *x = &b->h[out->n_holders];
        allocd__holder__init(x);
        x->has_pid = x->has_uid = true;
        x->pid = cl->pid;
        x->uid = cl->uid;
        x->name = (char *)cl->name;
        x->comm = (char *)cl->comm;
        b->p[out->n_holders++] = x;
        return true;
}

static void fill_region(Allocd__Region *out, const struct region_info *r) {
        allocd__region__init(out);
        out->has_id = out->has_kind = out->has_offset = out->has_size = true;
        out->id = r->id;
        out->pool = (char *)core_pool_name(r->pool);
        out->kind = (Allocd__PoolKind)core_pool_kind(r->pool);
        out->offset = r->offset;
        out->size = r->size;
        out->name = (char *)r->name;
        out->has_flags = out->has_refs = out->has_uid = out->has_pid = out->has_created = true;
        out->flags = r->flags;
        out->refs = r->refs;
        out->uid = r->uid;
        out->pid = r->pid;
        out->created = r->created;
        out->has_holders_omitted = true;
        proto_region_format(out, r);
}

void proto_dump(struct core *core, const struct session *s, uint64_t id, const Allocd__Dump *m, struct proto_out *out) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__DumpReply d = ALLOCD__DUMP_REPLY__INIT;
        Allocd__Region *rs = calloc(DUMP_MAX, sizeof(*rs));
        Allocd__Region **rp = calloc(DUMP_MAX, sizeof(*rp));
        struct holder_block *blocks = calloc(DUMP_MAX, sizeof(*blocks));
        const struct client *cl = &s->client;
        size_t n = 0, budget = WIRE_MAX_PACKET - 256;
        uint32_t slot = m->has_after && m->after ? (uint32_t)m->after + 1 : 0;
        const struct pool *only = NULL;
        bool more = false, full = false;

        if (!rs || !rp || !blocks) {
                proto_error(out, id, E_INTERNAL, "out of memory");
                goto out;
        }
        if (m->has_after && m->after && (uint32_t)m->after == UINT32_MAX)
                slot = UINT32_MAX; /* nothing after the last slot */
        if (m->pool && (!text_valid(m->pool, NAME_MAX_LEN) || !(only = core_pool_find(core, m->pool)))) {
                struct core_result res;
                core_no_pool(&res, m->pool);
                proto_error(out, id, E_NO_POOL, res.msg);
                goto out;
        }
        uint32_t end = slot > UINT32_MAX - DUMP_SCAN ? UINT32_MAX : slot + DUMP_SCAN;
        for (; slot != UINT32_MAX; slot++) {
                struct region_info r;
                if (!core_region_next_before(core, &slot, end)) {
                        more = slot != UINT32_MAX;
                        d.next = (uint64_t)end - 1; /* the last slot looked at, as an id's low 32 bits */
                        break;
                }
                core_region_info(core, slot, &r);
                if (only && r.pool != only)
                        continue;
                if (cl->uid != 0 && r.uid != cl->uid && !core_pool_may(r.pool, cl, ACCESS_ATTACH) &&
                    !core_pool_may(r.pool, cl, ACCESS_ALLOC))
                        continue;
                if (n == DUMP_MAX) {
                        full = true;
                        break;
                }
                fill_region(&rs[n], &r);
                blocks[n].out = &rs[n];
                core_region_holders(core, slot, add_holder, &blocks[n]);
                rs[n].holders = blocks[n].p;
                size_t sz = allocd__region__get_packed_size(&rs[n]) + 8;
                if (sz > budget) {
                        full = true;
                        break;
                }
                budget -= sz;
                rp[n] = &rs[n];
                n++;
        }
        if (full) {
                more = true;
                d.next = n ? rs[n - 1].id : 0; /* 0 only for a region over the budget alone: never */
        }
        d.n_regions = n;
        d.regions = rp;
        d.has_more = true;
        d.more = more;
        d.has_next = more;
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_DUMP;
        reply.dump = &d;
        proto_pack(out, &reply);
out:
        free(blocks);
        free(rs);
        free(rp);
}

void proto_held(struct core *core, const struct session *s, uint64_t id, const Allocd__Held *m, struct proto_out *out) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__HeldReply h = ALLOCD__HELD_REPLY__INIT;
        struct held_page *page = malloc(sizeof(*page));
        struct core_result res;

        if (!page)
                return proto_error(out, id, E_INTERNAL, "out of memory listing the connection's regions");
        if (core_client_held(core, &s->client, m->has_after ? m->after : 0, page, &res) != E_OK) {
                free(page);
                return proto_error(out, id, res.code, res.msg);
        }
        _Static_assert(HELD_PAGE * (10 + 5 + 1) < WIRE_MAX_PACKET - 64, "a page of held ids fits in a packet");
        _Static_assert(sizeof(page->created[0]) == sizeof(protobuf_c_boolean), "created[] is protobuf-c's booleans");
        h.n_regions = h.n_counts = h.n_created = page->n;
        h.regions = page->ids;
        h.counts = page->counts;
        h.created = (protobuf_c_boolean *)page->created;
        h.has_more = true;
        h.more = page->more;
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_HELD;
        reply.held = &h;
        proto_pack(out, &reply);
        free(page);
}
