/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_SLOTS_H
#define ALLOCD_SLOTS_H

/* The lowest free slot of a table that grows and shrinks (slots.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLOTS_MIN 64u

struct slots {
        uint64_t *free, *sum;
        uint32_t cap; /* a multiple of 64 */
        uint32_t hi;  /* 1 + the highest slot in use; 0 when none is */
        uint32_t used;
        uint32_t low; /* no summary word below this one has a free bit: where slots_get starts */
};

void slots_init(struct slots *s);
void slots_clear(struct slots *s);
/* Sets the capacity; shrinking below hi is -EINVAL.  New slots are free. */
int slots_resize(struct slots *s, uint32_t cap);
/* The lowest free slot, now in use; -ENOSPC when every slot is (resize, then try again). */
int slots_get(struct slots *s, uint32_t *ret);
void slots_put(struct slots *s, uint32_t i);
bool slots_is_free(const struct slots *s, uint32_t i);
/* The capacity the table may shrink to now (cap itself when it should not). */
uint32_t slots_shrink_to(const struct slots *s);
/* For a table *tab of elem-byte entries: the lowest free slot, doubling the table when it is full. */
int slots_take(struct slots *s, void **tab, size_t elem, uint32_t *ret);
/* Halves the table while its top quarters are empty. */
void slots_shrink(struct slots *s, void **tab, size_t elem);
static inline void slots_trim(struct slots *s, void **tab, size_t elem) {
        if (s->cap > SLOTS_MIN && s->hi <= s->cap / 4) /* the common case, a call for nothing, stays inline */
                slots_shrink(s, tab, elem);
}

#endif
