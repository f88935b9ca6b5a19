/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_STATE_LOST_H
#define ALLOCD_STATE_LOST_H

/*
 * A restore's lost pools (state-lost.c): pools of the state that hold regions but cannot take them
 * back (not configured, not available, configured otherwise, or not of the stored memory).  Their
 * records are read and checked as any, but their regions are not restored: what those regions
 * count (holds, references, bytes, names, PERSIST) is kept here, to be taken out of the checks.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "core.h"

struct lost_pool {
        char name[POOL_NAME_MAX_LEN + 1];
        char why[200];
        uint64_t regions; /* as its POOL record says */
        uint64_t seen;    /* REGION records of it */
        uint64_t bytes;   /* their sizes */
        uint64_t usage;   /* its USAGE records' bytes */
};

struct lost_region {
        uint32_t slot, gen, refs, counted; /* counted: its HOLD records' counts, plus one for PERSIST */
        uint32_t uid, pool;                /* pool: an index into lost.pools */
        uint64_t size, creator;
        bool named, persist;
};

struct lost {
        uint32_t *at; /* by the state's pool id: 1 + its index in pools, 0: not lost */
        uint32_t nat;
        struct lost_pool *pools;
        uint32_t npools;
        struct lost_region *regions; /* by slot rising, until lost_by_uid */
        uint32_t nregions, cap;
        uint64_t nholds; /* HOLD records of them */
};

int lost_init(struct lost *l, uint32_t npools);
void lost_free(struct lost *l);
/* Pool id (named name, with nregions regions) is lost, for the reason fmt says; -ENOMEM. */
int lost_pool(struct lost *l, uint32_t id, const char *name, uint64_t nregions, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static inline bool lost_has(const struct lost *l, uint32_t id) {
        return id < l->nat && l->at[id];
}
/* A region of lost pool id, as its record has it (slots rising); -ENOMEM. */
int lost_region(struct lost *l, uint32_t id, uint32_t slot, const struct region *r, bool named);
/* The lost region at slot, or NULL. */
struct lost_region *lost_find(struct lost *l, uint32_t slot);
/* Each lost region's references and each lost pool's regions against their records; 0, or the first slot or pool wrong.
 */
int lost_check(const struct lost *l, char *err, size_t errsize);
/* Sorts the regions by uid (lost_find no longer works); then the names and PERSIST regions of uid lost. */
void lost_by_uid(struct lost *l);
void lost_uid(const struct lost *l, uint32_t uid, uint32_t *names, uint32_t *persist);
/* "NAME: N regions (WHY)" for each lost pool, one a line, into buf (cut short with "..." if it does not fit). */
void lost_text(const struct lost *l, char *buf, size_t size);

#endif
