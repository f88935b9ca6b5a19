/* SPDX-License-Identifier: MIT */
/*
 * The region table.
 *
 * Regions live in one array of plain structs (no pointers), indexed by slot;
 * a region's id is (generation << 32 | slot), so an id names one region for
 * the daemon's lifetime even after its slot is reused.  That array, with the
 * pools' arenas, is the state a restart must carry (DESIGN §10).
 *
 * Leases are holds: a hold is one reference from one connection to one
 * region, on two lists at once, the connection's (walked when it closes) and
 * the region's (short: its holders; singly linked from a per-slot array,
 * which may move when the table grows).  A region's references are its holds,
 * plus one while PERSIST, plus one while a worker zeroes it; at zero it goes
 * back to its pool and the pool's waiters are woken.
 *
 * Names are one global namespace (attach needs only the name), kept in a
 * tsearch(3) tree of slots ordered by the name stored in the region.
 */
#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "allocd.h"

struct region *regions;
uint32_t nslots;
uint64_t nnames;
static struct hold **holders; /* per slot, the first hold; runtime state, kept out of the plain table */
static uint32_t *free_slots;
static uint32_t nfree;
static void *names;
static const char *lookup; /* the name a search looks for: key 0 */

static int name_cmp(const void *a, const void *b) {
        uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;

        return strcmp(x ? regions[x - 1].name : lookup, y ? regions[y - 1].name : lookup);
}

uint64_t region_id(uint32_t slot) {
        return (uint64_t)regions[slot].gen << 32 | slot;
}

int region_slot(uint64_t id) {
        uint32_t slot = (uint32_t)id;

        if (slot >= nslots || !regions[slot].live || regions[slot].gen != id >> 32)
                return -ENOENT;
        return (int)slot;
}

static int grow(void) {
        uint32_t n = nslots ? nslots * 2 : 64;
        struct region *r;
        struct hold **h;
        uint32_t *f;

        if (nslots >= (1u << 30))
                return -ENOMEM;
        r = realloc(regions, n * sizeof(*r));
        if (!r)
                return -ENOMEM;
        regions = r;
        h = realloc(holders, n * sizeof(*h));
        if (!h)
                return -ENOMEM;
        holders = h;
        f = realloc(free_slots, n * sizeof(*f));
        if (!f)
                return -ENOMEM;
        free_slots = f;
        memset(regions + nslots, 0, (n - nslots) * sizeof(*regions));
        for (uint32_t i = n; i-- > nslots;) {
                holders[i] = NULL;
                free_slots[nfree++] = i;
        }
        nslots = n;
        return 0;
}

int region_hold(uint32_t slot, struct conn *c) {
        struct hold *h = malloc(sizeof(*h));

        if (!h)
                return -ENOMEM;
        h->conn = c;
        h->slot = slot;
        LIST_INSERT_HEAD(&c->holds, h, by_conn);
        h->next_in_region = holders[slot];
        holders[slot] = h;
        c->nholds++;
        regions[slot].refs++;
        return 0;
}

struct hold *region_find_hold(uint32_t slot, const struct conn *c) {
        struct hold *h;

        for (h = holders[slot]; h; h = h->next_in_region)
                if (h->conn == c)
                        return h;
        return NULL;
}

int region_new(struct pool *p, struct conn *c, uint64_t offset, uint64_t size, uint32_t flags, const char *name,
               uint32_t *ret_slot) {
        struct region *r;
        uint32_t slot;
        int e;

        if (nfree == 0 && (e = grow()) < 0)
                return e;
        if (pool_charge(p, c->uid, (int64_t)size) < 0)
                return -ENOMEM;
        slot = free_slots[--nfree];
        r = &regions[slot];
        uint32_t gen = r->gen + 1 ? r->gen + 1 : 1;
        *r = (struct region){
                .gen = gen,
                .live = true,
                .pool = p->index,
                .offset = offset,
                .size = size,
                .flags = flags,
                .uid = c->uid,
                .pid = c->pid,
                .conn = c->serial,
                .created = (uint64_t)time(NULL),
                .persist = flags & ALLOCD__FLAG__PERSIST,
        };
        r->refs = r->persist;
        /* On failure nothing is left behind, and the range stays the caller's. */
        if (name && *name) {
                snprintf(r->name, sizeof(r->name), "%s", name);
                if (!tsearch((void *)(uintptr_t)(slot + 1), &names, name_cmp)) {
                        e = -ENOMEM;
                        goto undo;
                }
                r->published = true;
                nnames++;
        }
        if ((e = region_hold(slot, c)) < 0) {
                region_unpublish(slot);
                goto undo;
        }
        p->nregions++;
        *ret_slot = slot;
        return 0;
undo:
        r->live = false;
        free_slots[nfree++] = slot;
        pool_charge(p, c->uid, -(int64_t)size);
        return e;
}

int region_by_name(const char *name) {
        void *n;

        lookup = name;
        n = tfind((void *)0, &names, name_cmp);
        return n ? (int)(*(uintptr_t *)n - 1) : -ENOENT;
}

void region_unpublish(uint32_t slot) {
        if (!regions[slot].published)
                return;
        tdelete((void *)(uintptr_t)(slot + 1), &names, name_cmp);
        regions[slot].published = false;
        nnames--;
}

void region_unref(uint32_t slot) {
        struct region *r = &regions[slot];
        struct pool *p = pools[r->pool];

        if (--r->refs > 0)
                return;
        region_unpublish(slot);
        range_free(p->arena, r->offset, r->size);
        pool_charge(p, r->uid, -(int64_t)r->size);
        p->nregions--;
        logx(LOG_LEVEL_DEBUG, &(struct log_ctx){.pool = p->conf.name, .region = region_id(slot)},
             "region %llu returned to pool %s", (unsigned long long)region_id(slot), p->conf.name);
        r->live = false;
        free_slots[nfree++] = slot;
        waitq_wake(p);
        status_changed();
}

void region_drop_hold(struct hold *h) {
        uint32_t slot = h->slot;

        struct hold **pp;

        LIST_REMOVE(h, by_conn);
        for (pp = &holders[slot]; *pp != h; pp = &(*pp)->next_in_region)
                ;
        *pp = h->next_in_region;
        h->conn->nholds--;
        free(h);
        region_unref(slot);
}

void region_fill(Allocd__Region *out, uint32_t slot, bool full) {
        const struct region *r = &regions[slot];
        const struct pool *p = pools[r->pool];

        allocd__region__init(out);
        out->has_id = out->has_kind = out->has_offset = out->has_size = true;
        out->id = region_id(slot);
        out->pool = (char *)p->conf.name;
        out->kind = (Allocd__PoolKind)p->conf.kind;
        out->offset = r->offset;
        out->size = r->size;
        if (r->published)
                out->name = (char *)r->name;
        if (!full)
                return;
        out->has_flags = out->has_refs = out->has_uid = out->has_pid = out->has_created = true;
        out->flags = r->flags;
        out->refs = r->refs;
        out->uid = r->uid;
        out->pid = r->pid;
        out->created = r->created;
}

const struct hold *region_holders(uint32_t slot) {
        return holders[slot];
}

static void no_free(void *p) {
        (void)p;
}

void regions_destroy(void) {
        tdestroy(names, no_free);
        names = NULL;
        free(regions);
        free(holders);
        free(free_slots);
        regions = NULL;
        holders = NULL;
        free_slots = NULL;
        nslots = nfree = 0;
        nnames = 0;
}
