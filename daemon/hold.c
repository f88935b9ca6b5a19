/* SPDX-License-Identifier: MIT */
/*
 * Holds: one record per (client, region) pair with a count, on two lists at
 * once (the region's holders, the client's references) and in a hash by the
 * pair.  So finding a client's hold is O(1) however many clients hold the
 * region, a client's 65,536 references to one region are one record, and a
 * hang-up walks each of its records once (docs/ARCHITECTURE.md, "Leases").
 *
 * Records live in a table indexed by slots.c (lowest free first, so the
 * table shrinks as holds go); the hash is open addressing with linear probing
 * and backward-shift deletion, resized to stay between 1/8 and 1/2 full.
 *
 * A region's first hold is found without the hash (it is the head of the
 * region's list), so a hold goes into the hash only when another one takes
 * its place at the head.  Most regions have one holder, their creator, and
 * then an alloc and a free cost no hash work at all.
 * Only region.c calls this file; it alone turns holds into reference counts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"

#define HASH_MIN 64u

static uint32_t hash_of(uint64_t serial, uint32_t slot, uint32_t cap) {
        uint64_t x = serial * 0x9e3779b97f4a7c15ull ^ slot;

        x ^= x >> 31;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 29;
        return (uint32_t)x & (cap - 1);
}

int holds_init(struct holds *h) {
        *h = (struct holds){0};
        slots_init(&h->slots);
        h->hash = calloc(HASH_MIN, sizeof(*h->hash));
        if (!h->hash)
                return -ENOMEM;
        h->hash_cap = HASH_MIN;
        return 0;
}

void holds_clear(struct holds *h) {
        free(h->tab);
        free(h->hash);
        slots_clear(&h->slots);
        *h = (struct holds){0};
}

static void hash_put(uint32_t *hash, uint32_t cap, const struct hold *tab, uint32_t i) {
        uint32_t b = hash_of(tab[i].cl->serial, tab[i].slot, cap);

        while (hash[b])
                b = (b + 1) & (cap - 1);
        hash[b] = i + 1;
}

static int rehash(struct holds *h, uint32_t cap) {
        uint32_t *n = calloc(cap, sizeof(*n));

        if (!n)
                return -ENOMEM;
        for (uint32_t b = 0; b < h->hash_cap; b++)
                if (h->hash[b])
                        hash_put(n, cap, h->tab, h->hash[b] - 1);
        free(h->hash);
        h->hash = n;
        h->hash_cap = cap;
        return 0;
}

uint32_t hold_find(const struct holds *h, uint32_t head, const struct client *cl, uint32_t slot) {
        if (head != HOLD_NONE && h->tab[head].cl == cl)
                return head;
        if (h->hash_used == 0)
                return HOLD_NONE;
        for (uint32_t b = hash_of(cl->serial, slot, h->hash_cap); h->hash[b]; b = (b + 1) & (h->hash_cap - 1)) {
                const struct hold *x = &h->tab[h->hash[b] - 1];
                if (x->cl == cl && x->slot == slot)
                        return h->hash[b] - 1;
        }
        return HOLD_NONE;
}

int hold_add(struct holds *h, struct region *r, struct client *cl, uint32_t slot, uint32_t *ret) {
        uint32_t i;
        int e;

        /* Reserve everything first: on failure nothing has changed. */
        if ((h->hash_used + 1) * 2 > h->hash_cap && (e = rehash(h, h->hash_cap * 2)) < 0)
                return e;
        if ((e = slots_take(&h->slots, (void **)&h->tab, sizeof(*h->tab), &i)) < 0)
                return e;
        h->tab[i] = (struct hold){.cl = cl,
                                  .slot = slot,
                                  .count = 0,
                                  .rprev = HOLD_NONE,
                                  .rnext = r->holds,
                                  .cprev = HOLD_NONE,
                                  .cnext = cl->holds};
        if (r->holds != HOLD_NONE) {
                struct hold *old = &h->tab[r->holds];
                old->rprev = i;
                if (!old->hashed) { /* no longer the head: found through the hash from now on */
                        hash_put(h->hash, h->hash_cap, h->tab, r->holds);
                        old->hashed = 1;
                        h->hash_used++;
                }
        }
        r->holds = i;
        if (cl->holds != HOLD_NONE)
                h->tab[cl->holds].cprev = i;
        cl->holds = i;
        *ret = i;
        return 0;
}

static void hash_remove(struct holds *h, uint32_t i) {
        uint32_t mask = h->hash_cap - 1, b = hash_of(h->tab[i].cl->serial, h->tab[i].slot, h->hash_cap);

        while (h->hash[b] != i + 1)
                b = (b + 1) & mask;
        /* Backward shift: move up every later entry whose home is at or before the hole. */
        for (uint32_t j = (b + 1) & mask; h->hash[j]; j = (j + 1) & mask) {
                const struct hold *x = &h->tab[h->hash[j] - 1];
                uint32_t home = hash_of(x->cl->serial, x->slot, h->hash_cap);
                if (((j - home) & mask) >= ((j - b) & mask)) {
                        h->hash[b] = h->hash[j];
                        b = j;
                }
        }
        h->hash[b] = 0;
        h->hash_used--;
}

/* Moves hold i to index to (a free one), so the table can shrink. */
static void hold_move(struct holds *h, struct region *regions, uint32_t i, uint32_t to) {
        struct hold *x = &h->tab[i];
        bool hashed = x->hashed;

        if (hashed)
                hash_remove(h, i);
        h->tab[to] = *x;
        x = &h->tab[to];
        if (x->rprev != HOLD_NONE)
                h->tab[x->rprev].rnext = to;
        else
                regions[x->slot].holds = to;
        if (x->rnext != HOLD_NONE)
                h->tab[x->rnext].rprev = to;
        if (x->cprev != HOLD_NONE)
                h->tab[x->cprev].cnext = to;
        else
                x->cl->holds = to;
        if (x->cnext != HOLD_NONE)
                h->tab[x->cnext].cprev = to;
        if (hashed) {
                hash_put(h->hash, h->hash_cap, h->tab, to);
                h->hash_used++;
        }
}

void hold_remove(struct holds *h, struct region *regions, uint32_t i) {
        struct hold *x = &h->tab[i];

        if (x->hashed)
                hash_remove(h, i);
        if (x->rprev != HOLD_NONE)
                h->tab[x->rprev].rnext = x->rnext;
        else
                regions[x->slot].holds = x->rnext;
        if (x->rnext != HOLD_NONE)
                h->tab[x->rnext].rprev = x->rprev;
        if (x->cprev != HOLD_NONE)
                h->tab[x->cprev].cnext = x->cnext;
        else
                x->cl->holds = x->cnext;
        if (x->cnext != HOLD_NONE)
                h->tab[x->cnext].cprev = x->cprev;
        slots_put(&h->slots, i);
        /* Lowest-free allocation keeps the table dense, but holds die in any order: pack the top down. */
        if (h->slots.used < h->slots.cap / 4 && h->slots.cap > SLOTS_MIN) {
                uint32_t to;
                while (slots_get(&h->slots, &to) == 0) {
                        uint32_t top = h->slots.hi - 1;
                        if (to >= top) {
                                slots_put(&h->slots, to);
                                break;
                        }
                        hold_move(h, regions, top, to);
                        slots_put(&h->slots, top);
                }
        }
        slots_trim(&h->slots, (void **)&h->tab, sizeof(*h->tab));
        if (h->hash_cap > HASH_MIN && h->hash_used * 8 < h->hash_cap)
                rehash(h, h->hash_cap / 2); /* on failure it stays larger: harmless */
}
