/* SPDX-License-Identifier: MIT */
/*
 * Reading a state back (state.c has the format and the plan).  One pass over records already
 * checksummed: each is applied as it is read, and any refusal unwinds what was applied
 * (undo()), so a bad state changes nothing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc/falloc.h"
#include "core-impl.h"
#include "state-in.h"
#include "state-lost.h"
#include "state.h"

struct restore {
        struct core *core;
        char *err;
        size_t errsize;
        uint64_t next_serial;
        uint32_t floor, hi, npools, nregions, nclients, nholds, nheld;
        size_t body_len;
        struct pool **pools; /* the state's pool ids to the configured pools (NULL: not configured) */
        uint64_t *pool_regions;
        uint32_t *slots; /* restored, in order */
        uint32_t *refs;  /* their records' reference counts */
        uint32_t nslots;
        uint32_t last_slot;  /* of the last REGION record, restored or lost */
        struct lost lost;    /* pools with regions that cannot take them back, and those regions */
        uint32_t same_pools; /* POOL records that describe the core's pool of their id as it is */
        bool done;           /* the restore's own references dropped */
        struct slot_fill fill;
        uint32_t old_floor;
        struct {
                uint32_t refs;
                uint64_t bytes;
        } * want; /* each absent client's CLIENT record (less its lost holds), to check the recount against */
        struct holder {
                uint64_t serial;
                size_t at; /* in core->absent, and want */
        } * by_serial;     /* the absent clients sorted, for the holds: a search each, not a scan */
        size_t nby_serial;
};

static int bad(struct restore *st, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(struct restore *st, int e, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(st->err, st->errsize, fmt, ap);
        va_end(ap);
        return e;
}

static struct client *absent_find(const struct core *core, uint64_t serial) {
        size_t i = absent_index(core, serial);

        return i == SIZE_MAX ? NULL : core->absent[i];
}

static int by_serial(const void *a, const void *b) {
        uint64_t x = ((const struct holder *)a)->serial, y = ((const struct holder *)b)->serial;
        return (x > y) - (x < y);
}

/* A hold's client, and its index in core->absent: up to a million holds, each of up to max_connections clients. */
static struct client *holder_find(struct restore *st, uint64_t serial, size_t *at) {
        struct core *core = st->core;
        struct holder key = {.serial = serial}, *found;

        if (st->nby_serial != core->nabsent) { /* CLIENT records come first: sorted once */
                struct holder *n = reallocarray(st->by_serial, core->nabsent + 1, sizeof(*n));
                if (!n) {
                        *at = absent_index(core, serial);
                        return *at == SIZE_MAX ? NULL : core->absent[*at];
                }
                st->by_serial = n;
                st->nby_serial = core->nabsent;
                for (size_t i = 0; i < core->nabsent; i++)
                        n[i] = (struct holder){core->absent[i]->serial, i};
                qsort(n, st->nby_serial, sizeof(*n), by_serial);
        }
        if (!st->nby_serial)
                return NULL;
        found = bsearch(&key, st->by_serial, st->nby_serial, sizeof(*found), by_serial);
        if (!found)
                return NULL;
        *at = found->at;
        return core->absent[found->at];
}

static int rec_core(struct restore *st, struct in *in) {
        st->next_serial = GET(in, uint64_t);
        st->floor = GET(in, uint32_t);
        st->hi = GET(in, uint32_t);
        st->npools = GET(in, uint32_t);
        st->nregions = GET(in, uint32_t);
        st->nclients = GET(in, uint32_t);
        st->nholds = GET(in, uint32_t);
        /* Every region and client is a record of at least a header: the body bounds what is allocated for them. */
        if (in->bad || st->npools > 1u << 16 || st->nregions > st->hi || st->hi > state_slots_max() ||
            st->nregions > st->body_len / 8 || st->nclients > st->body_len / 8 || st->nholds > st->body_len / 8)
                return bad(st, -EBADMSG, "the state's CORE record is malformed");
        /*
         * Every slot the restore adds to the table starts at the state's floor (undo() puts the core's
         * back): a slot free in the state, below a region restored, would otherwise start at this
         * allocd's own seed, and its next region could take an id the previous allocd gave.
         */
        if (st->floor > st->core->regions.gen_floor)
                st->core->regions.gen_floor = st->floor;
        st->pools = calloc(st->npools + 1, sizeof(*st->pools));
        st->pool_regions = calloc(st->npools + 1, sizeof(*st->pool_regions));
        st->slots = malloc(((size_t)st->nregions + 1) * sizeof(*st->slots));
        st->refs = malloc(((size_t)st->nregions + 1) * sizeof(*st->refs));
        st->fill.cap = st->hi - st->nregions;
        st->fill.slots = malloc(((size_t)st->fill.cap + 1) * sizeof(*st->fill.slots));
        st->core->absent = calloc(st->nclients + 1, sizeof(*st->core->absent));
        st->want = calloc(st->nclients + 1, sizeof(*st->want));
        if (lost_init(&st->lost, st->npools, st->fill.cap + 1) < 0 || !st->pools || !st->pool_regions || !st->slots ||
            !st->refs || !st->fill.slots || !st->core->absent || !st->want)
                return bad(st, -ENOMEM, "out of memory reading the state");
        return 0;
}

static int rec_pool(struct restore *st, struct in *in) {
        char name[NAME_MAX_LEN + 1];
        uint32_t id = GET(in, uint32_t), kind = GET(in, uint32_t), iso = GET(in, uint32_t);
        uint32_t q = GET(in, uint32_t); /* log2 of its quantum, + 1; 0: not said */
        uint64_t total = GET(in, uint64_t), nregions = GET(in, uint64_t);
        struct pool *p;

        get_str(in, name, POOL_NAME_MAX_LEN);
        if (in->bad || id >= st->npools || st->pools[id] || st->pool_regions[id] || q > 64)
                return bad(st, -EBADMSG, "the state's record of pool %u is malformed or repeated", id);
        st->pool_regions[id] = nregions + 1; /* + 1: seen */
        if (id < st->core->npools) {
                const struct pool *c = st->core->pools[id];
                st->same_pools += !strcmp(c->conf.name, name) && c->conf.kind == kind && c->conf.isolation == iso &&
                                  c->total == total && q && c->conf.quantum == 1ull << (q - 1);
        }
        if (!nregions)
                return 0; /* nothing of it to restore: whether it is still configured does not matter */
        /*
         * A pool that cannot take its regions back loses them, and only them: the rest of the state is
         * restored without them (state-lost.c), and the caller says what was lost (state_info.lost).
         */
        if (!(p = core_pool_find(st->core, name)))
                return lost_pool(&st->lost, id, name, nregions, "not configured");
        if (!p->available)
                return lost_pool(&st->lost, id, name, nregions, "not available: %s", p->reason);
        bool otherwise = p->conf.kind != kind || p->conf.isolation != iso || p->total != total ||
                         (q && p->conf.quantum > 1ull << (q - 1));
        /* Adopted only as the store named it: a record that says otherwise is damage (state_adopted_memory). */
        if (otherwise && state_adopted_memory(p))
                return bad(st, -EBADMSG, "the state's record of pool %s is not the stored pool it was made from", name);
        if (otherwise)
                return lost_pool(&st->lost, id, name, nregions,
                                 "configured otherwise: %s, isolation = %s, %llu bytes, quantum %llu then; %s, "
                                 "isolation = %s, %llu bytes, quantum %llu now",
                                 pool_kind_name((enum pool_kind)kind), iso == ISOLATION_REGION ? "region" : "pool",
                                 (unsigned long long)total, q ? 1ull << (q - 1) : 0ull, pool_kind_name(p->conf.kind),
                                 p->conf.isolation == ISOLATION_REGION ? "region" : "pool",
                                 (unsigned long long)p->total, (unsigned long long)p->conf.quantum);
        /*
         * Restoring from an fd store (region_fds.stored set), a pool with memory must be the stored one: old
         * clients map that and write it still, while attachers would map fresh zeros.
         */
        if (st->core->region_fds.stored && p->conf.isolation == ISOLATION_POOL && p->fd >= 0 && !p->from_store)
                return lost_pool(&st->lost, id, name, nregions,
                                 "its memory is not in the fd store: it was not stored, or systemd dropped it "
                                 "(raise FileDescriptorStoreMax=), and a pool of fresh memory cannot hold them");
        st->pools[id] = p;
        return 0;
}

static int rec_client(struct restore *st, struct in *in) {
        struct core *core = st->core;
        struct client *cl = calloc(1, sizeof(*cl));
        struct user *u;

        if (!cl)
                return bad(st, -ENOMEM, "out of memory reading the state");
        cl->serial = GET(in, uint64_t);
        cl->uid = GET(in, uint32_t);
        cl->gid = GET(in, uint32_t);
        cl->pid = GET(in, int32_t);
        cl->nrefs = GET(in, uint32_t); /* moved to st->want: client_enter starts the counts at 0 */
        cl->bytes = GET(in, uint64_t);
        get_str(in, cl->name, CLIENT_NAME_MAX_LEN);
        get_str(in, cl->comm, sizeof(cl->comm) - 1);
        get(in, cl->secret, sizeof(cl->secret));
        if (in->left == sizeof(uint64_t)) /* else a record of version 3 or 4: its process's start unknown */
                cl->start = GET(in, uint64_t);
        if (in->bad || !cl->serial || cl->serial >= st->next_serial || absent_find(core, cl->serial) ||
            core->nabsent == st->nclients) {
                free(cl);
                return bad(st, -EBADMSG, "the state's CLIENT record is malformed or repeated");
        }
        if (!(u = user_get(core, cl->uid))) {
                free(cl);
                return bad(st, -ENOMEM, "out of memory reading the state");
        }
        st->want[core->nabsent].refs = cl->nrefs;
        st->want[core->nabsent].bytes = cl->bytes;
        client_enter(core, cl, u);
        cl->absent = true;
        core->absent[core->nabsent++] = cl;
        return 0;
}

/* A falloc heap's geometry as Alloc gave it (check_format): attachers are told it, and check the header against it. */
static bool heap_geometry_ok(const struct region_format *f) {
        uint64_t cs, count;

        return falloc_heap_geometry(f->heap_size, f->chunk_size, &cs, &count) == 0 && cs == f->chunk_size &&
               count == f->chunk_count;
}

static int rec_region(struct restore *st, struct in *in) {
        struct region_rec rr;
        const struct region *r = &rr.r;
        const struct region_format *f = &rr.f;
        uint32_t slot, id;
        int e;

        get_region(in, &rr);
        slot = rr.slot;
        id = rr.pool;
        bool lost = id < st->npools && lost_has(&st->lost, id);
        if (in->bad || st->nslots + st->lost.nregions == st->nregions || slot >= st->hi ||
            (st->nslots + st->lost.nregions && slot <= st->last_slot) || !r->gen || r->gen > st->floor || !r->size ||
            r->offset + r->size < r->offset || !r->refs || r->state != (r->state & (R_LIVE | R_PERSIST)) ||
            !(r->state & R_LIVE) || r->format > FMT_FALLOC || (r->flags & ~(F_KNOWN | F_WRITECOMBINED)) ||
            id >= st->npools || (!st->pools[id] && !lost) ||
            (f->format && (f->heap_size > r->size || !heap_geometry_ok(f))))
                return bad(st, -EBADMSG, "the state's record of region slot %u is malformed or out of order", slot);
        st->last_slot = slot;
        if (lost) /* its slot is free now: one more for fill */
                return lost_region(&st->lost, id, slot, r, rr.name[0] != '\0', &st->fill) < 0
                               ? bad(st, -ENOMEM, "out of memory reading the state")
                               : 0;
        if ((e = region_restore(st->core, st->pools[id], slot, r, f, rr.name, &st->fill)) < 0)
                return bad(st, e == -ENOMEM ? -ENOMEM : -EBADMSG,
                           "region slot %u (%s, offset %#llx, %llu bytes) cannot be restored: %s", slot,
                           core_pool_name(st->pools[id]), (unsigned long long)r->offset, (unsigned long long)r->size,
                           e == -ENOSPC || e == -EEXIST ? "it overlaps another or lies outside the pool"
                           : e == -EDOM                 ? "its offset or size is not a multiple of the pool's quantum"
                           : e == -ENOMEM               ? "out of memory"
                                                        : "its name is taken, or its slot");
        st->refs[st->nslots] = r->refs;
        st->slots[st->nslots++] = slot;
        if ((e = pool_region_restore(st->core, st->pools[id], slot)) < 0)
                return bad(st, e == -ENOMEM ? -ENOMEM : -ENOENT, "region slot %u of pool %s (isolation = region): %s",
                           slot, core_pool_name(st->pools[id]),
                           e == -ENOENT   ? "its memfd is not in the fd store"
                           : e == -ENOMEM ? "out of memory"
                                          : "its memfd is not of its size");
        return 0;
}

static int rec_hold(struct restore *st, struct in *in) {
        uint32_t slot = GET(in, uint32_t), count = GET(in, uint32_t);
        uint64_t serial = GET(in, uint64_t);
        size_t at = 0;
        struct client *cl = holder_find(st, serial, &at);
        int e;

        /* A lost region's hold: its references and bytes are the client record's no more. */
        if (cl && !in->bad && (e = lost_hold(&st->lost, slot, serial, count, &st->want[at].refs, &st->want[at].bytes)))
                return e < 0 ? bad(st, e, "the state's hold of slot %u (lost) by connection %llu is malformed", slot,
                                   (unsigned long long)serial)
                             : 0;
        /* The slot is the file's word: within the table, and a region restored there, before it is read. */
        if (in->bad || !cl || slot >= st->hi || slot >= st->core->regions.slots.cap ||
            !(st->core->regions.tab[slot].state & R_LIVE))
                return bad(st, -EBADMSG, "the state's hold of slot %u by connection %llu is malformed", slot,
                           (unsigned long long)serial);
        if ((e = region_restore_hold(st->core, slot, cl, count)) < 0)
                return bad(st, e == -ENOMEM ? -ENOMEM : -EBADMSG,
                           "the state's hold of slot %u by connection %llu is repeated or too large", slot,
                           (unsigned long long)serial);
        st->nheld++;
        return 0;
}

/* USAGE and USER records (kept from the pass) against the recount: every figure, and their totals. */
static int check_usage(struct restore *st, struct in *in) {
        struct core *core = st->core;
        uint64_t bytes = 0, counts = 0, core_bytes = 0, core_counts = 0;

        while (in->left) {
                uint16_t type = GET(in, uint16_t);
                (void)GET(in, uint16_t);
                (void)GET(in, uint32_t);
                uint32_t a = GET(in, uint32_t), uid = GET(in, uint32_t);
                if (type == REC_USAGE) {
                        uint64_t b = GET(in, uint64_t);
                        if (a < st->npools && lost_has(&st->lost, a)) {
                                st->lost.pools[st->lost.at[a] - 1].usage += b;
                                continue;
                        }
                        if (a >= st->npools || !st->pools[a] || pool_usage(st->pools[a], uid) != b)
                                return bad(st, -EBADMSG,
                                           "uid %u: the state's bytes charged in pool %u are not its "
                                           "regions'",
                                           uid, a);
                        bytes += b;
                } else {
                        const struct user *u = user_find(core, a);
                        uint32_t persist = GET(in, uint32_t), lost_names, lost_persist;
                        lost_uid(&st->lost, a, &lost_names, &lost_persist);
                        bool short_ = uid < lost_names || persist < lost_persist;
                        uid -= short_ ? 0 : lost_names;
                        persist -= short_ ? 0 : lost_persist;
                        /* A uid whose names and PERSIST regions were all lost may have no record now. */
                        if (short_ || (u ? u->names != uid || u->persist != persist : uid || persist))
                                return bad(st, -EBADMSG,
                                           "uid %u: the state's names or PERSIST count is not its "
                                           "regions'",
                                           a);
                        counts += (uint64_t)uid + persist;
                }
        }
        for (uint32_t i = 0; i < st->lost.npools; i++)
                if (st->lost.pools[i].usage != st->lost.pools[i].bytes)
                        return bad(st, -EBADMSG, "pool %s (lost): the state's bytes charged are not its regions'",
                                   st->lost.pools[i].name);
        for (size_t i = 0; i < core->npools; i++)
                for (size_t u = 0; u < core->pools[i]->nusage; u++)
                        core_bytes += core->pools[i]->usage[u].bytes;
        for (const struct user *u = core->users; u; u = u->next)
                core_counts += (uint64_t)u->names + u->persist;
        if (bytes != core_bytes || counts != core_counts)
                return bad(st, -EBADMSG, "the state's accounting leaves out some of its regions");
        return 0;
}

/* Every count the core keeps, recounted by the restore, against the records. */
static int check_counts(struct restore *st) {
        struct core *core = st->core;
        int e;

        for (uint32_t i = 0; i < st->nslots; i++)
                if (core->regions.tab[st->slots[i]].refs != st->refs[i] + 1 || st->refs[i] < 1)
                        return bad(st, -EBADMSG, "region slot %u: the state counts %u references, has %u", st->slots[i],
                                   st->refs[i], core->regions.tab[st->slots[i]].refs - 1);
        for (uint32_t i = 0; i < st->npools; i++)
                if (st->pools[i] && st->pools[i]->nregions != st->pool_regions[i] - 1)
                        return bad(st, -EBADMSG, "pool %s: the state counts %llu regions, holds %llu",
                                   core_pool_name(st->pools[i]), (unsigned long long)st->pool_regions[i] - 1,
                                   (unsigned long long)st->pools[i]->nregions);
        for (size_t i = 0; i < core->nabsent; i++)
                if (core->absent[i]->nrefs != st->want[i].refs || core->absent[i]->bytes != st->want[i].bytes)
                        return bad(st, -EBADMSG, "connection %llu: the state counts %u references, its holds make %u",
                                   (unsigned long long)core->absent[i]->serial, st->want[i].refs,
                                   core->absent[i]->nrefs);
        if (core->nabsent != st->nclients || st->nslots + st->lost.nregions != st->nregions ||
            st->nheld + st->lost.nholds != st->nholds)
                return bad(st, -EBADMSG, "the state says %u holders, %u regions and %u holds, has %zu, %u and %llu",
                           st->nclients, st->nregions, st->nholds, core->nabsent, st->nslots + st->lost.nregions,
                           (unsigned long long)(st->nheld + st->lost.nholds));
        if ((e = lost_check(&st->lost, st->err, st->errsize)) < 0)
                return e;
        return 0;
}

/* A refused state: what was restored goes by the ordinary paths, and the core is as it was. */
static void undo(struct restore *st) {
        struct core *core = st->core;

        for (size_t i = 0; i < core->nabsent; i++) {
                core_client_remove(core, core->absent[i]);
                free(core->absent[i]);
        }
        core->nabsent = 0;
        for (uint32_t i = st->nslots; i-- > 0;) {
                const struct region *r = &core->regions.tab[st->slots[i]];
                if (!(r->state & R_LIVE))
                        continue;
                region_unpersist(core, st->slots[i]);
                if (!st->done)
                        region_restore_done(core, st->slots[i]);
        }
        region_restore_fill(core, &st->fill);
        core->regions.gen_floor = st->old_floor;
}

static int records(struct restore *st, const uint8_t *body, size_t len, struct in *usage) {
        struct in in = {body, len, false};
        uint16_t last = 0;
        int e = 0;

        st->body_len = len;
        while (!e && last != REC_END) {
                uint16_t type = GET(&in, uint16_t), zero = GET(&in, uint16_t);
                uint32_t n = GET(&in, uint32_t);
                if (in.bad || zero || n > in.left || type < last || type > REC_END || (type == REC_CORE) != !last ||
                    (last == REC_CORE && type == REC_CORE))
                        return bad(st, -EBADMSG, "the state's record at byte %zu is malformed or out of order",
                                   (size_t)(in.p - body) + STATE_HEADER_LEN);
                struct in rec = {in.p, n, false};
                if ((type == REC_USAGE || type == REC_USER) && !usage->p)
                        usage->p = in.p - 8;
                if (type == REC_USAGE || type == REC_USER)
                        usage->left = (size_t)(in.p + n - usage->p);
                in.p += n;
                in.left -= n;
                /*
                 * Before any region is in: a pool whose spans moved, or whose region memfds the store lacks,
                 * is lost alone, not the whole state.
                 */
                if (type == REC_REGION && last != REC_REGION &&
                    lost_scan(&st->lost, &st->core->region_fds, st->pools, st->pool_regions, st->npools, in.p - n - 8,
                              in.left + n + 8) < 0)
                        return bad(st, -ENOMEM, "out of memory reading the state");
                last = type;
                e = type == REC_CORE     ? rec_core(st, &rec)
                    : type == REC_POOL   ? rec_pool(st, &rec)
                    : type == REC_CLIENT ? rec_client(st, &rec)
                    : type == REC_REGION ? rec_region(st, &rec)
                    : type == REC_HOLD   ? rec_hold(st, &rec)
                    : type == REC_USER   ? (rec.left == 12 ? 0 : -EBADMSG)
                    : type == REC_USAGE  ? (rec.left == 16 ? 0 : -EBADMSG)
                                         : (rec.left == 0 ? 0 : -EBADMSG);
                if (!e && rec.bad)
                        e = -EBADMSG;
                if (e == -EBADMSG && !st->err[0])
                        bad(st, e, "the state's record of type %u is malformed", type);
                if (!e && rec.left && type != REC_USER && type != REC_USAGE)
                        e = bad(st, -EBADMSG, "the state's record of type %u has %zu bytes too many", type, rec.left);
        }
        if (!e && in.left)
                return bad(st, -EBADMSG, "the state has %zu bytes after its END", in.left);
        return e;
}

/* Placeholders of connections that held nothing: nothing to reclaim, so nothing to keep. */
static void drop_idle(struct core *core) {
        size_t n = 0;

        for (size_t i = 0; i < core->nabsent; i++) {
                struct client *cl = core->absent[i];
                if (cl->holds != HOLD_NONE) {
                        core->absent[n++] = cl;
                        continue;
                }
                core_client_remove(core, cl);
                free(cl);
        }
        core->nabsent = n;
}

/* body: the snapshot's, or one rebuilt with the log (derived: its accounting is the recount's own). */
static int restore(struct restore *st, const uint8_t *body, size_t len, bool derived) {
        struct core *core = st->core;
        struct in usage = {0};
        int e = records(st, body, len, &usage);

        if (!e)
                e = check_counts(st);
        if (!e) {
                for (uint32_t i = 0; i < st->nslots; i++)
                        region_restore_done(core, st->slots[i]);
                st->done = true;
                region_restore_fill(core, &st->fill);
                st->fill.n = 0;
                if (st->floor > core->regions.gen_floor)
                        core->regions.gen_floor = st->floor;
                lost_by_uid(&st->lost);
                if (!derived)
                        e = check_usage(st, &usage); /* refused: undo() trims the table, gens and all */
        }
        if (e)
                undo(st);
        else
                drop_idle(core);
        if (e || !core->nabsent) {
                free(core->absent);
                core->absent = NULL;
                core->nabsent = 0;
        }
        free(st->pools);
        free(st->pool_regions);
        free(st->slots);
        free(st->refs);
        free(st->fill.slots);
        free(st->want);
        free(st->by_serial);
        return e; /* st->lost: the caller's, for what it says */
}

int state_read_info(struct core *core, const void *buf, size_t len, uint64_t *next_serial, struct state_info *info,
                    char *err, size_t errsize) {
        struct restore st = {.core = core, .err = err, .errsize = errsize, .old_floor = core->regions.gen_floor};
        struct state_rebuilt rb = {0};
        struct state_info si = {0};
        const uint8_t *b = buf;
        uint64_t body;
        uint32_t v, crc;
        int e;

        err[0] = '\0';
        if (core->regions.slots.used || core->names.count || core->nclients || core->absent)
                return bad(&st, -EBUSY, "a state is restored only into a core with no region, name or client");
        if (len < 16 || memcmp(b, "ALLOCDST", 8) != 0)
                return bad(&st, -EBADMSG, "not an allocd state (%zu bytes, no ALLOCDST header)", len);
        memcpy(&v, b + 8, 4);
        if ((e = state_header(buf, len, &si.epoch, &body)) == -EPROTO)
                return bad(&st, -EPROTO, "the state is of version %u; this allocd reads version %u", v, STATE_VERSION);
        if (e < 0)
                return bad(&st, -EBADMSG, "the state's header is damaged (checksum)");
        if (body > len - STATE_HEADER_LEN)
                return bad(&st, -EBADMSG, "the state is %zu bytes; its header says %llu at least: it was cut short",
                           len, (unsigned long long)body + STATE_HEADER_LEN);
        memcpy(&crc, b + 32, 4);
        if (crc != state_crc32c(b + STATE_HEADER_LEN, body))
                return bad(&st, -EBADMSG, "the state is damaged (checksum of its %llu bytes)",
                           (unsigned long long)body);
        b += STATE_HEADER_LEN;
        if ((e = state_log_apply(b, body, b + body, len - STATE_HEADER_LEN - body, &rb, &si, err, errsize)) < 0)
                return e;
        e = rb.body ? restore(&st, rb.body, rb.len, true) : restore(&st, b, body, false);
        free(rb.body);
        si.version = v;
        /* A state that holds lost regions is not appended to: restored again, its pool would take them back. */
        si.same_pools = st.same_pools == st.npools && st.npools == core->npools && !st.lost.npools;
        si.lost_pools = st.lost.npools;
        si.lost_regions = st.lost.nregions;
        lost_text(&st.lost, si.lost, sizeof(si.lost));
        lost_free(&st.lost);
        if (!e) {
                *next_serial = st.next_serial;
                if (info)
                        *info = si;
        }
        return e;
}

int state_read(struct core *core, const void *buf, size_t len, uint64_t *next_serial, char *err, size_t errsize) {
        return state_read_info(core, buf, len, next_serial, NULL, err, errsize);
}

int state_read_fd_info(struct core *core, int fd, uint64_t *next_serial, struct state_info *info, char *err,
                       size_t errsize) {
        struct restore st = {.err = err, .errsize = errsize};
        struct stat sb;
        void *map;
        int e;

        /* Mapped, not copied: a memfd of 1M regions is some 100 MB, and the log's zeros after it more. */
        if (fstat(fd, &sb) < 0)
                return bad(&st, -errno, "cannot read the state: %m");
        if (sb.st_size < STATE_HEADER_LEN)
                return bad(&st, -EBADMSG, "not an allocd state (%lld bytes)", (long long)sb.st_size);
        if ((map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
                return bad(&st, -errno, "cannot map the state: %m");
        e = state_read_info(core, map, (size_t)sb.st_size, next_serial, info, err, errsize);
        munmap(map, (size_t)sb.st_size);
        return e;
}

int state_read_fd(struct core *core, int fd, uint64_t *next_serial, char *err, size_t errsize) {
        return state_read_fd_info(core, fd, next_serial, NULL, err, errsize);
}
