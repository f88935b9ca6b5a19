/* SPDX-License-Identifier: MIT */
/*
 * The region table, and the only code that changes reference counts,
 * PERSIST and zeroing state (docs/ARCHITECTURE.md, "How a region dies").
 *
 * Regions live in one array of plain 64-byte structs, indexed by slot; a
 * region's id is (generation << 32 | slot), so an id names one region for the
 * daemon's life even after its slot is reused.  Slots are handed out lowest
 * first (slots.c) and the array shrinks when its top empties; a slot dropped
 * that way comes back with a generation above every one it had (gen_floor).
 *
 * A region's references are its holds' counts (hold.c), plus one while
 * PERSIST, plus one while it is pending: made but not yet handed out, which
 * lasts as long as a worker zeroes it.  A pending region has no holder, so
 * its creator cannot free it before it has it.  At zero it goes back to its
 * pool, and the pool is marked ready: its waiters are retried on the next
 * loop turn, never from inside this call.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core-impl.h"

int regions_init(struct regions *rt) {
        *rt = (struct regions){0};
        slots_init(&rt->slots);
        return holds_init(&rt->holds);
}

void regions_clear(struct regions *rt) {
        free(rt->tab);
        slots_clear(&rt->slots);
        holds_clear(&rt->holds);
        formats_clear(&rt->formats);
        *rt = (struct regions){0};
}

uint64_t region_id(const struct regions *rt, uint32_t slot) {
        return (uint64_t)rt->tab[slot].gen << 32 | slot;
}

int region_slot(const struct regions *rt, uint64_t id) {
        uint32_t slot = (uint32_t)id;

        if (slot >= rt->slots.cap || !(rt->tab[slot].state & R_LIVE) || rt->tab[slot].gen != id >> 32)
                return -ENOENT;
        return (int)slot;
}

static void shrink(struct regions *rt) {
        uint32_t cap = slots_shrink_to(&rt->slots);

        for (uint32_t i = cap; i < rt->slots.cap; i++)
                if (rt->tab[i].gen > rt->gen_floor)
                        rt->gen_floor = rt->tab[i].gen;
        slots_trim(&rt->slots, (void **)&rt->tab, sizeof(*rt->tab));
}

int region_new(struct core *core, struct pool *p, const struct client *cl, uint64_t offset, uint64_t size,
               uint32_t flags, int fd, const struct region_format *fmt, uint32_t *ret) {
        struct regions *rt = &core->regions;
        uint32_t slot;
        int e;

        uint32_t old = rt->slots.cap;

        if ((e = slots_take(&rt->slots, (void **)&rt->tab, sizeof(*rt->tab), &slot)) < 0)
                return e;
        /* New slots start above every generation a slot dropped by shrinking had. */
        for (uint32_t i = old; i < rt->slots.cap; i++)
                rt->tab[i] = (struct region){.gen = rt->gen_floor, .fd = -1};
        if (fmt && fmt->format != FMT_RAW && formats_add(&rt->formats, slot, fmt) < 0) {
                slots_put(&rt->slots, slot);
                return -ENOMEM;
        }
        if (pool_charge(p, cl->uid, (int64_t)size) < 0) {
                if (fmt && fmt->format != FMT_RAW)
                        formats_remove(&rt->formats, slot);
                slots_put(&rt->slots, slot);
                return -ENOMEM;
        }
        struct region *r = &rt->tab[slot];
        uint32_t gen = r->gen + 1 ? r->gen + 1 : 1;
        *r = (struct region){
                .offset = offset,
                .size = size,
                .creator = cl->serial,
                .created = (uint32_t)time(NULL),
                .fd = fd,
                .gen = gen,
                .pool = p->id,
                .uid = cl->uid,
                .pid = cl->pid,
                .holds = HOLD_NONE,
                .flags = (uint16_t)flags,
                .refs = 1,
                .state = R_LIVE | R_PENDING,
                .format = fmt ? fmt->format : FMT_RAW,
        };
        if (flags & F_PERSIST) {
                r->state |= R_PERSIST;
                r->refs++;
                user_count(core, cl->uid, 0, 1, 0);
        }
        if (fd >= 0)
                user_count(core, cl->uid, 0, 0, 1);
        pool_count_region(p, 1);
        if (fd >= 0 && core->region_fds.made)
                core->region_fds.made(core->region_fds.data, region_id(rt, slot), fd);
        *ret = slot;
        return 0;
}

/* The last reference went: the range goes back to the pool, and the pool's waiters get a try next turn. */
static void region_die(struct core *core, uint32_t slot) {
        struct regions *rt = &core->regions;
        struct region *r = &rt->tab[slot];
        struct pool *p = core->pools[r->pool];
        uint64_t offset = r->offset, size = r->size; /* shrink may move the table */

        region_unpublish(core, slot);
        range_free(p->arena, offset, size);
        if (r->fd >= 0 && core->region_fds.gone)
                core->region_fds.gone(core->region_fds.data, region_id(rt, slot));
        if (r->fd >= 0) {
                pool_region_drop(r->fd, core->closing ? 0 : r->size);
                user_count(core, r->uid, 0, 0, -1);
        }
        r->fd = -1;
        if (r->format != FMT_RAW)
                formats_remove(&rt->formats, slot);
        pool_charge(p, r->uid, -(int64_t)r->size);
        pool_count_region(p, -1);
        r->state = 0;
        slots_put(&rt->slots, slot);
        shrink(rt);
        waitq_pool_freed(core, p, offset, size);
}

static void unref(struct core *core, uint32_t slot, uint32_t n) {
        struct region *r = &core->regions.tab[slot];

        r->refs -= n;
        if (r->refs == 0)
                region_die(core, slot);
}

int region_hold(struct core *core, uint32_t slot, struct client *cl) {
        struct regions *rt = &core->regions;
        struct region *r = &rt->tab[slot];
        uint32_t i = hold_find(&rt->holds, r->holds, cl, slot);
        int e;

        if (r->refs == UINT32_MAX || (i != HOLD_NONE && rt->holds.tab[i].count == (1u << 31) - 1))
                return -EOVERFLOW;
        if (i == HOLD_NONE && (e = hold_add(&rt->holds, r, cl, slot, &i)) < 0)
                return e;
        if (rt->holds.tab[i].count++ == 0 && r->creator == cl->serial)
                cl->bytes += r->size;
        cl->nrefs++;
        r->refs++;
        kept_hold(core, slot, cl->serial, rt->holds.tab[i].count);
        return 0;
}

uint32_t region_hold_of(const struct core *core, uint32_t slot, const struct client *cl) {
        return hold_find(&core->regions.holds, core->regions.tab[slot].holds, cl, slot);
}

static void drop(struct core *core, uint32_t i, bool all) {
        struct regions *rt = &core->regions;
        struct hold *h = &rt->holds.tab[i];
        struct client *cl = h->cl;
        uint32_t slot = h->slot, n = all ? h->count : 1;
        struct region *r = &rt->tab[slot];

        cl->nrefs -= n;
        h->count -= n;
        kept_hold(core, slot, cl->serial, h->count); /* at 0 with no other reference, the region is gone too */
        if (h->count == 0) {
                if (r->creator == cl->serial)
                        cl->bytes -= r->size;
                hold_remove(&rt->holds, rt->tab, i);
        }
        unref(core, slot, n);
}

void region_drop_one(struct core *core, uint32_t hold) {
        drop(core, hold, false);
}

/* An UNSEALED region loses its name and PERSIST: its creator went, or gave it up, before the Seal. */
void region_abort_unsealed(struct core *core, uint32_t slot) {
        region_unpublish(core, slot);
        region_unpersist(core, slot);
}

void region_release_client(struct core *core, struct client *cl) {
        while (cl->holds != HOLD_NONE) {
                uint32_t slot = core->regions.holds.tab[cl->holds].slot;
                const struct region *r = &core->regions.tab[slot];
                /* What it did not seal goes whole, PERSIST or not: nothing half-written is left behind. */
                if ((r->flags & F_UNSEALED) && r->creator == cl->serial)
                        region_abort_unsealed(core, slot);
                drop(core, cl->holds, true);
        }
}

void region_take_over(struct core *core, struct client *from, struct client *to) {
        struct hold *tab = core->regions.holds.tab;

        /* The hash finds a hold by its client's serial, which stays: only the pointers move. */
        for (uint32_t i = from->holds; i != HOLD_NONE; i = tab[i].cnext)
                tab[i].cl = to;
        to->holds = from->holds;
        to->nrefs = from->nrefs;
        to->bytes = from->bytes;
        from->holds = HOLD_NONE;
        from->nrefs = 0;
        from->bytes = 0;
}

void region_unpersist(struct core *core, uint32_t slot) {
        struct region *r = &core->regions.tab[slot];

        if (!(r->state & R_PERSIST))
                return;
        r->state &= (uint8_t)~R_PERSIST;
        user_count(core, r->uid, 0, -1, 0);
        kept_region(core, slot, NULL);
        unref(core, slot, 1);
}

/* r's name's waiters may attach from the next loop turn: it is published, sealed and handed out. */
static void name_ready(struct core *core, const struct region *r) {
        if (r->name && !(r->flags & F_UNSEALED) && !(r->state & R_PENDING))
                waitq_name_ready(core, names_text(&core->names, r->name));
}

int region_hand_out(struct core *core, uint32_t slot, struct client *cl) {
        struct region *r = &core->regions.tab[slot];
        int e;

        if ((e = region_hold(core, slot, cl)) < 0)
                return e;
        r->state &= (uint8_t)~R_PENDING;
        unref(core, slot, 1);
        kept_region(core, slot, cl); /* the region and its first hold, in one record */
        name_ready(core, r);         /* zeroed: attachable now, if sealed */
        return 0;
}

void region_discard(struct core *core, uint32_t slot) {
        struct region *r = &core->regions.tab[slot];

        region_unpersist(core, slot);
        r->state &= (uint8_t)~R_PENDING;
        unref(core, slot, 1);
}

void core_region_info(const struct core *core, uint32_t slot, struct region_info *info) {
        const struct region *r = &core->regions.tab[slot];

        *info = (struct region_info){
                .id = region_id(&core->regions, slot),
                .pool = core->pools[r->pool],
                .offset = r->offset,
                .size = r->size,
                .flags = r->flags,
                .refs = r->refs,
                .uid = r->uid,
                .pid = r->pid,
                .creator = r->creator,
                .created = r->created,
                .fd = r->fd,
                .name = r->name ? names_text(&core->names, r->name) : NULL,
                .pending = r->state & R_PENDING,
                .persist = r->state & R_PERSIST,
                .fmt = {.format = r->format},
        };
        if (r->format != FMT_RAW) {
                formats_get(&core->regions.formats, slot, &info->fmt);
                info->formatted = format_by_allocd(info->pool);
        }
}

bool core_region_next(const struct core *core, uint32_t *slot) {
        uint32_t s = *slot;

        if (!core_region_next_before(core, &s, UINT32_MAX))
                return false; /* *slot as it was: callers start again from it */
        *slot = s;
        return true;
}

bool core_region_next_before(const struct core *core, uint32_t *slot, uint32_t end) {
        const struct regions *rt = &core->regions;
        uint32_t hi = rt->slots.hi < end ? rt->slots.hi : end;

        for (uint32_t s = *slot; s < hi; s++) {
                if (rt->tab[s].state & R_LIVE) {
                        *slot = s;
                        return true;
                }
        }
        *slot = end < rt->slots.hi ? end : UINT32_MAX;
        return false;
}

void core_region_holders(const struct core *core, uint32_t slot,
                         bool (*fn)(const struct client *cl, uint32_t count, void *data), void *data) {
        const struct holds *h = &core->regions.holds;

        for (uint32_t i = core->regions.tab[slot].holds; i != HOLD_NONE; i = h->tab[i].rnext)
                if (!fn(h->tab[i].cl, h->tab[i].count, data))
                        return;
}

int region_publish(struct core *core, uint32_t slot, const char *name) {
        struct region *r = &core->regions.tab[slot];
        int e;

        if ((e = names_add(&core->names, name, slot, &r->name)) < 0)
                return e;
        user_count(core, r->uid, 1, 0, 0); /* a name counts against its creator's uid */
        kept_region(core, slot, NULL);
        name_ready(core, r);
        return 0;
}

void region_unpublish(struct core *core, uint32_t slot) {
        struct region *r = &core->regions.tab[slot];

        if (!r->name)
                return;
        if (r->flags & F_UNSEALED)
                waitq_name_gone(core, names_text(&core->names, r->name));
        names_remove(&core->names, r->name);
        user_count(core, r->uid, -1, 0, 0);
        r->name = 0;
        if (r->refs) /* not as it dies: its last reference's record took it already */
                kept_region(core, slot, NULL);
}

/*
 * Restoring (state.c): a region put back at its own slot, gen and offset, with one reference that
 * stands for the restore itself until region_restore_done, so that a half-done restore unwinds by
 * the ordinary paths (holds released, PERSIST dropped, that reference dropped: the region dies).
 */
int region_restore(struct core *core, struct pool *p, uint32_t slot, const struct region *rec,
                   const struct region_format *fmt, const char *name, struct slot_fill *fill) {
        struct regions *rt = &core->regions;
        struct user *u = user_get(core, rec->uid);
        uint32_t got, old;
        int e;

        if (!u)
                return -ENOMEM;
        /* Slots come lowest first: those below slot that hold no region are taken, and given back at the end. */
        for (;;) {
                old = rt->slots.cap;
                if ((e = slots_take(&rt->slots, (void **)&rt->tab, sizeof(*rt->tab), &got)) < 0)
                        goto no_slot;
                for (uint32_t i = old; i < rt->slots.cap; i++)
                        rt->tab[i] = (struct region){.gen = rt->gen_floor, .fd = -1};
                if (got == slot)
                        break;
                if (got > slot || fill->n == fill->cap) {
                        slots_put(&rt->slots, got);
                        e = -EEXIST;
                        goto no_slot;
                }
                fill->slots[fill->n++] = got;
        }
        /* A region is whole quanta (its range's size): range_reserve would round a size that is not. */
        if (rec->size % p->conf.quantum)
                e = -EDOM;
        else if ((e = range_reserve(p->arena, rec->offset, rec->size)) < 0)
                e = e == -ENOMEM || e == -EDOM ? e : -ENOSPC;
        if (e < 0)
                goto no_range;
        if (fmt->format != FMT_RAW && (e = formats_add(&rt->formats, slot, fmt)) < 0)
                goto no_format;
        if ((e = pool_charge(p, rec->uid, (int64_t)rec->size)) < 0)
                goto no_charge;
        struct region *r = &rt->tab[slot];
        *r = *rec;
        r->fd = -1;
        r->pool = p->id;
        r->refs = 1;
        r->holds = HOLD_NONE;
        r->name = 0;
        r->state = R_LIVE;
        pool_count_region(p, 1);
        if (rec->state & R_PERSIST) {
                r->state |= R_PERSIST;
                r->refs++;
                user_count(core, rec->uid, 0, 1, 0);
        }
        if (name && *name && (e = region_publish(core, slot, name)) < 0)
                region_discard(core, slot);
        /* A uid with neither names nor PERSIST keeps no record; found again, as a discard may have let it go. */
        if ((u = user_find(core, rec->uid)))
                user_put(core, u);
        return e;
no_charge:
        if (fmt->format != FMT_RAW)
                formats_remove(&rt->formats, slot);
no_format:
        range_free(p->arena, rec->offset, rec->size);
no_range:
        slots_put(&rt->slots, slot);
no_slot:
        user_put(core, u);
        return e;
}

int region_restore_hold(struct core *core, uint32_t slot, struct client *cl, uint32_t count) {
        struct regions *rt = &core->regions;
        struct region *r = &rt->tab[slot];
        uint32_t i;
        int e;

        if (count == 0 || count >= 1u << 31 || r->refs > UINT32_MAX - count || cl->nrefs > UINT32_MAX - count)
                return -EOVERFLOW;
        if (hold_find(&rt->holds, r->holds, cl, slot) != HOLD_NONE)
                return -EEXIST;
        if ((e = hold_add(&rt->holds, r, cl, slot, &i)) < 0)
                return e;
        rt->holds.tab[i].count = count;
        if (r->creator == cl->serial)
                cl->bytes += r->size;
        cl->nrefs += count;
        r->refs += count;
        return 0;
}

void region_restore_done(struct core *core, uint32_t slot) {
        unref(core, slot, 1);
}

void region_restore_fill(struct core *core, const struct slot_fill *fill) {
        for (uint32_t i = 0; i < fill->n; i++)
                slots_put(&core->regions.slots, fill->slots[i]);
        shrink(&core->regions);
}
