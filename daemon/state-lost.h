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

struct pool;
struct region;
struct slot_fill;

struct lost_pool {
        char name[POOL_NAME_MAX_LEN + 1];
        char why[200];
        uint64_t regions; /* as its POOL record says */
        uint64_t seen;    /* REGION records of it */
        uint64_t bytes;   /* their sizes */
        uint64_t usage;   /* its USAGE records' bytes */
};

struct lost_region {
        uint32_t slot, refs, counted; /* counted: its HOLD records' counts, plus one for PERSIST */
        uint32_t uid, pool;           /* pool: an index into lost.pools */
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
        uint64_t nholds;    /* HOLD records of them */
        uint32_t fill_room; /* the restore's fill.slots' */
};

/* fill_room: how many slots the restore's struct slot_fill has room for. */
int lost_init(struct lost *l, uint32_t npools, uint32_t fill_room);
void lost_free(struct lost *l);
/* Pool id (named name, with nregions regions) is lost, for the reason fmt says; -ENOMEM. */
int lost_pool(struct lost *l, uint32_t id, const char *name, uint64_t nregions, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static inline bool lost_has(const struct lost *l, uint32_t id) {
        return id < l->nat && l->at[id];
}
/*
 * A region of lost pool id, as its record has it (slots rising); -ENOMEM.  Its slot is free in the
 * restored core: fill (region_restore's) takes one more.
 */
int lost_region(struct lost *l, uint32_t id, uint32_t slot, const struct region *r, bool named, struct slot_fill *fill);
/*
 * A HOLD record (slot, serial, count): 1 if slot is a lost region's, its count and bytes taken out of
 * the holder's CLIENT record's (*refs, *bytes); 0 if not; -EBADMSG if it cannot be so.
 */
int lost_hold(struct lost *l, uint32_t slot, uint64_t serial, uint32_t count, uint32_t *refs, uint64_t *bytes);
/* Each lost region's references and each lost pool's regions against their records; 0, or the first slot or pool wrong.
 */
int lost_check(const struct lost *l, char *err, size_t errsize);
/* Sorts the regions by uid (lost_find no longer works); then the names and PERSIST regions of uid lost. */
void lost_by_uid(struct lost *l);
void lost_uid(const struct lost *l, uint32_t uid, uint32_t *names, uint32_t *persist);
/*
 * Before the first REGION record is applied (p: its header, left: the bytes from there; state-scan.c):
 * each pool of pools (by the state's id, pool_regions its POOL record's count + 1; NULL: none restored)
 * with a region its spans no longer hold, or not on its quantum, or (isolation = region, fds->has set)
 * whose memfd fds does not have, is lost, its entry set to NULL.  No fd is taken.  What the scan cannot
 * read is left to the restore, which refuses it.  0 or -ENOMEM.
 */
int lost_scan(struct lost *l, const struct region_fds *fds, struct pool **pools, const uint64_t *pool_regions,
              uint32_t npools, const uint8_t *p, size_t left);
/* "NAME: N regions (WHY)" for each lost pool, one a line, into buf (cut short with "..." if it does not fit). */
void lost_text(const struct lost *l, char *buf, size_t size);

#endif
