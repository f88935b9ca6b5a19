/* SPDX-License-Identifier: MIT */
/*
 * A restore's lost pools (state-lost.h).  One broken or removed pool costs its own regions only:
 * the rest of the state is restored and checked as strictly as if the lost regions were not in
 * it, and the lost ones are checked among themselves (each region's references against its holds,
 * each pool's regions and bytes against its records), so a malformed state is still refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"
#include "state-lost.h"

int lost_init(struct lost *l, uint32_t npools, uint32_t fill_room) {
        *l = (struct lost){.fill_room = fill_room};
        if (!(l->at = calloc(npools + 1, sizeof(*l->at))))
                return -ENOMEM;
        l->nat = npools;
        return 0;
}

void lost_free(struct lost *l) {
        free(l->at);
        free(l->pools);
        free(l->regions);
        *l = (struct lost){0};
}

int lost_pool(struct lost *l, uint32_t id, const char *name, uint64_t nregions, const char *fmt, ...) {
        struct lost_pool *n = reallocarray(l->pools, l->npools + 1, sizeof(*n));
        va_list ap;

        if (!n)
                return -ENOMEM;
        l->pools = n;
        n = &l->pools[l->npools];
        *n = (struct lost_pool){.regions = nregions};
        snprintf(n->name, sizeof(n->name), "%s", name);
        va_start(ap, fmt);
        vsnprintf(n->why, sizeof(n->why), fmt, ap);
        va_end(ap);
        l->at[id] = ++l->npools;
        return 0;
}

int lost_region(struct lost *l, uint32_t id, uint32_t slot, const struct region *r, bool named,
                struct slot_fill *fill) {
        struct lost_pool *p = &l->pools[l->at[id] - 1];

        if (fill->cap + 1 >= l->fill_room) {
                uint32_t *n = reallocarray(fill->slots, 2 * (size_t)l->fill_room, sizeof(*n));
                if (!n)
                        return -ENOMEM;
                fill->slots = n;
                l->fill_room *= 2;
        }

        if (l->nregions == l->cap) {
                uint32_t cap = l->cap ? 2 * l->cap : 16;
                struct lost_region *n = reallocarray(l->regions, cap, sizeof(*n));
                if (!n)
                        return -ENOMEM;
                l->regions = n;
                l->cap = cap;
        }
        l->regions[l->nregions++] = (struct lost_region){
                .slot = slot,
                .refs = r->refs,
                .counted = !!(r->state & R_PERSIST),
                .uid = r->uid,
                .pool = l->at[id] - 1,
                .size = r->size,
                .creator = r->creator,
                .named = named,
                .persist = !!(r->state & R_PERSIST),
        };
        p->seen++;
        p->bytes += r->size;
        fill->cap++;
        return 0;
}

static int by_slot(const void *a, const void *b) {
        uint32_t x = ((const struct lost_region *)a)->slot, y = ((const struct lost_region *)b)->slot;
        return (x > y) - (x < y);
}

static struct lost_region *lost_find(struct lost *l, uint32_t slot) {
        struct lost_region key = {.slot = slot};

        return l->nregions ? bsearch(&key, l->regions, l->nregions, sizeof(key), by_slot) : NULL;
}

int lost_hold(struct lost *l, uint32_t slot, uint64_t serial, uint32_t count, uint32_t *refs, uint64_t *bytes) {
        struct lost_region *r = lost_find(l, slot);
        uint64_t b;

        if (!r)
                return 0;
        b = r->creator == serial ? r->size : 0; /* a holder's bytes are those of the regions it made */
        if (!count || count >= 1u << 31 || r->counted > UINT32_MAX - count || *refs < count || *bytes < b)
                return -EBADMSG;
        r->counted += count;
        *refs -= count;
        *bytes -= b;
        l->nholds++;
        return 1;
}

int lost_check(const struct lost *l, char *err, size_t errsize) {
        for (uint32_t i = 0; i < l->nregions; i++) {
                const struct lost_region *r = &l->regions[i];
                if (r->counted != r->refs) {
                        snprintf(err, errsize,
                                 "region slot %u (lost with pool %s): the state counts %u references, has %u", r->slot,
                                 l->pools[r->pool].name, r->refs, r->counted);
                        return -EBADMSG;
                }
        }
        for (uint32_t i = 0; i < l->npools; i++) {
                const struct lost_pool *p = &l->pools[i];
                if (p->seen != p->regions) {
                        snprintf(err, errsize, "pool %s: the state counts %llu regions, holds %llu", p->name,
                                 (unsigned long long)p->regions, (unsigned long long)p->seen);
                        return -EBADMSG;
                }
        }
        return 0;
}

static int by_uid(const void *a, const void *b) {
        uint32_t x = ((const struct lost_region *)a)->uid, y = ((const struct lost_region *)b)->uid;
        return (x > y) - (x < y);
}

void lost_by_uid(struct lost *l) {
        if (l->nregions)
                qsort(l->regions, l->nregions, sizeof(*l->regions), by_uid);
}

void lost_uid(const struct lost *l, uint32_t uid, uint32_t *names, uint32_t *persist) {
        size_t lo = 0, hi = l->nregions;

        *names = *persist = 0;
        while (lo < hi) { /* the first of uid's */
                size_t mid = lo + (hi - lo) / 2;
                if (l->regions[mid].uid < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (; lo < l->nregions && l->regions[lo].uid == uid; lo++) {
                *names += l->regions[lo].named;
                *persist += l->regions[lo].persist;
        }
}

void lost_text(const struct lost *l, char *buf, size_t size) {
        size_t n = 0;

        if (size)
                buf[0] = '\0';
        for (uint32_t i = 0; i < l->npools && n < size; i++) {
                const struct lost_pool *p = &l->pools[i];
                int k = snprintf(buf + n, size - n, "%s%s: %llu region%s (%s)", i ? "\n" : "", p->name,
                                 (unsigned long long)p->regions, p->regions == 1 ? "" : "s", p->why);
                if (k < 0 || (size_t)k >= size - n) {
                        if (size >= 4)
                                memcpy(buf + size - 4, "...", 4);
                        return;
                }
                n += (size_t)k;
        }
}
