/* SPDX-License-Identifier: MIT */
/*
 * The regions this connection holds, as far as the library has seen them
 * granted: id -> references.  It lets a Free or Detach go without waiting for
 * allocd's answer (region.c): a region the table holds is the connection's,
 * so allocd can refuse it only for what the library cannot see (DENIED), and
 * the answer may come later.  An id the table does not hold is not refused
 * here: it goes to allocd and waits (another connection's PERSIST region may
 * be freed by its owner), so an entry missing for lack of memory costs a
 * round trip, never a wrong answer.
 *
 * Open addressing with linear probing, ids mixed by a multiplicative hash;
 * deletion shifts the entries after it back, so there are no tombstones and a
 * lookup stops at the first empty slot.  The table doubles at half full and
 * never shrinks below its first size.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "client-internal.h"

#define HELD_MIN 64

struct held_entry {
        uint64_t id; /* 0: empty (allocd never hands out id 0) */
        uint32_t refs;
};

struct held {
        pthread_mutex_t lock;
        struct held_entry *tab;
        size_t cap, used; /* cap: a power of two */
};

static size_t slot_of(const struct held *h, uint64_t id) {
        return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & (h->cap - 1);
}

static struct held_entry *find(const struct held *h, uint64_t id) {
        for (size_t i = slot_of(h, id);; i = (i + 1) & (h->cap - 1))
                if (h->tab[i].id == id || h->tab[i].id == 0)
                        return &h->tab[i];
}

struct held *held_new(void) {
        struct held *h = calloc(1, sizeof(*h));

        if (!h || !(h->tab = calloc(HELD_MIN, sizeof(*h->tab)))) {
                free(h);
                return NULL;
        }
        h->cap = HELD_MIN;
        pthread_mutex_init(&h->lock, NULL);
        return h;
}

struct held *held_free(struct held *h) {
        if (h) {
                pthread_mutex_destroy(&h->lock);
                free(h->tab);
                free(h);
        }
        return NULL;
}

static int grow(struct held *h) {
        struct held old = *h;

        h->tab = calloc(old.cap * 2, sizeof(*h->tab));
        if (!h->tab) {
                h->tab = old.tab;
                return -ENOMEM;
        }
        h->cap = old.cap * 2;
        for (size_t i = 0; i < old.cap; i++)
                if (old.tab[i].id)
                        *find(h, old.tab[i].id) = old.tab[i];
        free(old.tab);
        return 0;
}

static int add_locked(struct held *h, uint64_t id) {
        struct held_entry *e = find(h, id);

        if (e->id == id) {
                /* Past what a count holds, the id is simply not refused locally: allocd counts for itself. */
                if (e->refs < UINT32_MAX)
                        e->refs++;
                return 0;
        }
        if (h->used + 1 > h->cap / 2) {
                if (grow(h) < 0)
                        return -ENOMEM;
                e = find(h, id);
        }
        *e = (struct held_entry){.id = id, .refs = 1};
        h->used++;
        return 0;
}

void held_add(struct held *h, const uint64_t *ids, size_t n) {
        pthread_mutex_lock(&h->lock);
        for (size_t i = 0; i < n; i++)
                add_locked(h, ids[i]); /* out of memory: the id goes to allocd and waits, see above */
        pthread_mutex_unlock(&h->lock);
}

/* Removes e, shifting back the entries of the cluster after it that may sit in its place. */
static void remove_entry(struct held *h, struct held_entry *e) {
        size_t i = (size_t)(e - h->tab), j = i;

        for (;;) {
                j = (j + 1) & (h->cap - 1);
                if (h->tab[j].id == 0)
                        break;
                size_t home = slot_of(h, h->tab[j].id);
                /* The entry at j may move to i if its home is not within (i, j], cyclically. */
                if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
                        h->tab[i] = h->tab[j];
                        i = j;
                }
        }
        h->tab[i] = (struct held_entry){0};
        h->used--;
}

static void take_one(struct held *h, uint64_t id) {
        struct held_entry *e = find(h, id);

        if (--e->refs == 0)
                remove_entry(h, e);
}

bool held_take(struct held *h, const uint64_t *ids, size_t n) {
        size_t i;

        pthread_mutex_lock(&h->lock);
        for (i = 0; i < n; i++) {
                struct held_entry *e = find(h, ids[i]);
                if (e->id != ids[i] || e->refs == 0)
                        break;
                take_one(h, ids[i]);
        }
        if (i < n)
                for (size_t k = 0; k < i; k++)
                        add_locked(h, ids[k]); /* the space they had is still there: this cannot fail */
        pthread_mutex_unlock(&h->lock);
        return i == n;
}

size_t held_count(struct held *h) {
        size_t n;

        pthread_mutex_lock(&h->lock);
        n = h->used;
        pthread_mutex_unlock(&h->lock);
        return n;
}

int held_sync(struct held *h, const uint64_t *ids, const uint32_t *counts, size_t n, uint32_t *excess) {
        struct held now = {.cap = HELD_MIN};
        int e = 0;

        pthread_mutex_lock(&h->lock);
        while (now.cap / 2 < n)
                now.cap *= 2;
        if (!(now.tab = calloc(now.cap, sizeof(*now.tab)))) {
                e = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                const struct held_entry *old = find(h, ids[i]);
                uint32_t keep = old->id != ids[i] ? 0 : old->refs < counts[i] ? old->refs : counts[i];
                excess[i] = counts[i] - keep;
                if (keep && ids[i]) {
                        *find(&now, ids[i]) = (struct held_entry){.id = ids[i], .refs = keep};
                        now.used++;
                }
        }
        free(h->tab);
        h->tab = now.tab;
        h->cap = now.cap;
        h->used = now.used;
out:
        pthread_mutex_unlock(&h->lock);
        return e;
}
