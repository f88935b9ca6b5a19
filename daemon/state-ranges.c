/* SPDX-License-Identifier: MIT */
/*
 * A pool whose spans moved (an fpga pool's ranges, same total): its POOL record cannot tell, and its
 * regions are restored as their records are read, so a region the spans no longer hold would refuse
 * the whole state once others are in.  Scanned first, each such pool is lost alone (state-lost.c):
 * a configuration change, not damage.  Overlaps inside the spans are still the restore's to refuse.
 */
#include <errno.h>

#include "alloc/range.h"
#include "config-values.h"
#include "core-impl.h"
#include "state-in.h"
#include "state-lost.h"
#include "state.h"

struct within {
        uint64_t start, size;
        bool in;
};

static int seg_holds(const struct range_seg *seg, void *data) {
        struct within *w = data;

        if (seg->start > w->start)
                return 1; /* in address order: no later span starts at or before it */
        if (w->start - seg->start < seg->size && w->size <= seg->size - (w->start - seg->start)) {
                w->in = true;
                return 1;
        }
        return 0;
}

/* Whether p's spans (its empty arena: touching spans are one) hold [start, start + size). */
static bool spans_hold(const struct pool *p, uint64_t start, uint64_t size) {
        struct within w = {start, size, false};

        range_walk(p->empty, seg_holds, &w);
        return w.in;
}

int lost_ranges(struct lost *l, struct pool **pools, const uint64_t *pool_regions, uint32_t npools, const uint8_t *p,
                size_t left) {
        struct in in = {p, left, false};
        struct region_rec rr;
        char size[32];
        int e;

        for (;;) {
                uint16_t type = GET(&in, uint16_t), zero = GET(&in, uint16_t);
                uint32_t n = GET(&in, uint32_t);
                if (in.bad || zero || type != REC_REGION || n > in.left)
                        return 0; /* past the REGION records, or a frame the restore refuses */
                struct in rec = {in.p, n, false};
                in.p += n;
                in.left -= n;
                get_region(&rec, &rr);
                const struct region *r = &rr.r;
                struct pool *pool = rr.pool < npools ? pools[rr.pool] : NULL;
                if (rec.bad || !pool || !r->size || r->offset + r->size < r->offset)
                        continue; /* malformed, or of no pool restored: the restore's to judge */
                uint64_t q = pool->conf.quantum ? pool->conf.quantum : 1;
                bool quantum = !(r->offset % q) && !(r->size % q);
                if (quantum && spans_hold(pool, r->offset, r->size))
                        continue;
                size_text(r->size, size, sizeof(size));
                e = quantum ? lost_pool(l, rr.pool, pool->conf.name, pool_regions[rr.pool] - 1,
                                        "configured otherwise: its ranges no longer hold the region at %#llx+%s",
                                        (unsigned long long)r->offset, size)
                            : lost_pool(l, rr.pool, pool->conf.name, pool_regions[rr.pool] - 1,
                                        "configured otherwise: the region at %#llx+%s is not on its quantum, %llu",
                                        (unsigned long long)r->offset, size, (unsigned long long)pool->conf.quantum);
                if (e < 0)
                        return e;
                pools[rr.pool] = NULL;
        }
}
