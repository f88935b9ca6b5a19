/* SPDX-License-Identifier: MIT */
/*
 * Slot numbers for the region table and the hold table: always the lowest
 * free one.  Handing out the lowest keeps a table dense, so when entries go,
 * its top empties and the table can shrink (a table that only grows keeps the
 * memory of its peak for the daemon's life).
 *
 * Two bitmap levels, one bit per slot set while it is free and one bit per
 * word of those set while that word has a free bit: finding the lowest free
 * slot scans at most cap / 4096 summary words.  The highest slot in use is
 * found again only when it is the one put back, by scanning down; the slots
 * it skips were all handed out before, so that cost is paid once per slot.
 * The scan for the lowest starts at the lowest summary word that may have a
 * free bit (low), so a table filled from the bottom (a restore, a burst of
 * allocations) costs O(1) a slot, not cap / 4096 words.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"

#define WORD_BITS 64u

static uint32_t nwords(uint32_t cap) {
        return (cap + WORD_BITS - 1) / WORD_BITS;
}

void slots_init(struct slots *s) {
        *s = (struct slots){0};
}

void slots_clear(struct slots *s) {
        free(s->free);
        free(s->sum);
        slots_init(s);
}

static void set_free(struct slots *s, uint32_t i) {
        s->free[i / WORD_BITS] |= 1ull << (i % WORD_BITS);
        s->sum[i / (WORD_BITS * WORD_BITS)] |= 1ull << (i / WORD_BITS % WORD_BITS);
        if (i / (WORD_BITS * WORD_BITS) < s->low)
                s->low = i / (WORD_BITS * WORD_BITS);
}

int slots_resize(struct slots *s, uint32_t cap) {
        uint32_t old = s->cap, nw = nwords(cap), ns = nwords(nw);
        uint64_t *f, *m;

        if (cap % WORD_BITS || cap < s->hi)
                return -EINVAL;
        f = realloc(s->free, (nw ? nw : 1) * sizeof(*f));
        if (!f)
                return -ENOMEM;
        s->free = f;
        m = realloc(s->sum, (ns ? ns : 1) * sizeof(*m));
        if (!m)
                return -ENOMEM;
        s->sum = m;
        s->cap = cap;
        if (cap > old) {
                memset(f + nwords(old), 0, (nw - nwords(old)) * sizeof(*f));
                memset(m + nwords(nwords(old)), 0, (ns - nwords(nwords(old))) * sizeof(*m));
                for (uint32_t i = old; i < cap; i++)
                        set_free(s, i);
        } else if (ns) {
                /* The last summary word may name words that are gone. */
                uint32_t keep = nw - (ns - 1) * WORD_BITS;
                if (keep < WORD_BITS)
                        m[ns - 1] &= (1ull << keep) - 1;
        }
        return 0;
}

int slots_get(struct slots *s, uint32_t *ret) {
        uint32_t ns = nwords(nwords(s->cap));

        for (uint32_t j = s->low; j < ns; j++) {
                s->low = j;
                if (!s->sum[j])
                        continue;
                uint32_t w = j * WORD_BITS + (uint32_t)__builtin_ctzll(s->sum[j]);
                uint32_t i = w * WORD_BITS + (uint32_t)__builtin_ctzll(s->free[w]);
                s->free[w] &= s->free[w] - 1;
                if (!s->free[w])
                        s->sum[j] &= ~(1ull << (w % WORD_BITS));
                if (i >= s->hi)
                        s->hi = i + 1;
                s->used++;
                *ret = i;
                return 0;
        }
        return -ENOSPC;
}

void slots_put(struct slots *s, uint32_t i) {
        set_free(s, i);
        s->used--;
        if (i + 1 != s->hi)
                return;
        /* Down to the highest slot still in use. */
        uint32_t w = i / WORD_BITS;
        for (;;) {
                uint64_t used = ~s->free[w];
                if (w == i / WORD_BITS && (i + 1) % WORD_BITS)
                        used &= (1ull << ((i + 1) % WORD_BITS)) - 1;
                if (used) {
                        s->hi = w * WORD_BITS + 64u - (uint32_t)__builtin_clzll(used);
                        return;
                }
                if (w == 0) {
                        s->hi = 0;
                        return;
                }
                w--;
        }
}

bool slots_is_free(const struct slots *s, uint32_t i) {
        return i >= s->cap || (s->free[i / WORD_BITS] >> (i % WORD_BITS) & 1);
}

uint32_t slots_shrink_to(const struct slots *s) {
        uint32_t cap = s->cap;

        while (cap > SLOTS_MIN && s->hi <= cap / 4)
                cap /= 2;
        return cap;
}

int slots_take(struct slots *s, void **tab, size_t elem, uint32_t *ret) {
        uint32_t cap = s->cap ? s->cap * 2 : SLOTS_MIN;
        void *t;

        if (slots_get(s, ret) == 0)
                return 0;
        if (cap > (1u << 30))
                return -ENOMEM;
        if (!(t = realloc(*tab, (size_t)cap * elem)))
                return -ENOMEM;
        *tab = t;
        if (slots_resize(s, cap) < 0)
                return -ENOMEM;
        return slots_get(s, ret);
}

void slots_shrink(struct slots *s, void **tab, size_t elem) {
        uint32_t cap = slots_shrink_to(s);
        void *t;

        if (cap == s->cap || slots_resize(s, cap) < 0)
                return;
        if ((t = realloc(*tab, (size_t)cap * elem)))
                *tab = t; /* else the larger block stays: harmless */
}
