/* SPDX-License-Identifier: MIT */
/*
 * The scan of the REGION records before any is restored.  A region is restored as its record is
 * read, so one its pool cannot take back would refuse the whole state once others are in; what
 * only a pool's own configuration or memory explains is found first, and costs that pool alone
 * (state-lost.c):
 * - its spans moved (an fpga pool's ranges, same total: its POOL record cannot tell) so that they
 *   no longer hold one of its regions, or the region is not on its quantum;
 * - isolation = region: a region's memfd is not in the fd store (systemd dropped it, or could not
 *   take it).  Only asked, not taken: the restore takes those of the pools kept, and restart.c
 *   removes the rest from the store.  A memfd there but not the region's is the restore's to refuse.
 * Overlaps inside the spans are still the restore's to refuse, and so is any region of a pool made
 * from its stored memory (state_adopted_memory): its spans are the stored pool's.
 */
#include <errno.h>
#include <stdlib.h>

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

/* A region of pool (state id) whose spans do not hold it, or not on its quantum: the pool is lost. */
static int lost_spans(struct lost *l, struct pool **pools, const uint64_t *pool_regions, const struct region_rec *rr) {
        const struct region *r = &rr->r;
        const struct pool *pool = pools[rr->pool];
        uint64_t q = pool->conf.quantum ? pool->conf.quantum : 1;
        bool quantum = !(r->offset % q) && !(r->size % q);
        char size[32];
        int e;

        if (quantum && spans_hold(pool, r->offset, r->size))
                return 0;
        size_text(r->size, size, sizeof(size));
        e = quantum ? lost_pool(l, rr->pool, pool->conf.name, pool_regions[rr->pool] - 1,
                                "configured otherwise: its ranges no longer hold the region at %#llx+%s",
                                (unsigned long long)r->offset, size)
                    : lost_pool(l, rr->pool, pool->conf.name, pool_regions[rr->pool] - 1,
                                "configured otherwise: the region at %#llx+%s is not on its quantum, %llu",
                                (unsigned long long)r->offset, size, (unsigned long long)pool->conf.quantum);
        if (e < 0)
                return e;
        pools[rr->pool] = NULL;
        return 0;
}

int lost_scan(struct lost *l, const struct region_fds *fds, struct pool **pools, const uint64_t *pool_regions,
              uint32_t npools, const uint8_t *p, size_t left) {
        struct in in = {p, left, false};
        struct region_rec rr;
        uint32_t *missing = NULL; /* by the state's pool id: its regions whose memfds the store lacks */
        int e = 0;

        if (fds->has && !(missing = calloc(npools + 1, sizeof(*missing))))
                return -ENOMEM;
        for (;;) {
                uint16_t type = GET(&in, uint16_t), zero = GET(&in, uint16_t);
                uint32_t n = GET(&in, uint32_t);
                if (in.bad || zero || type != REC_REGION || n > in.left)
                        break; /* past the REGION records, or a frame the restore refuses */
                struct in rec = {in.p, n, false};
                in.p += n;
                in.left -= n;
                get_region(&rec, &rr);
                const struct region *r = &rr.r;
                struct pool *pool = rr.pool < npools ? pools[rr.pool] : NULL;
                /* Malformed, of no pool restored, or of one of the stored memory: the restore's to judge. */
                if (rec.bad || !pool || !r->size || r->offset + r->size < r->offset || state_adopted_memory(pool))
                        continue;
                if ((e = lost_spans(l, pools, pool_regions, &rr)) < 0)
                        goto out;
                /* Its id as region_id makes it once restored: the record's gen and slot. */
                if (missing && pools[rr.pool] && pool->conf.isolation == ISOLATION_REGION &&
                    !fds->has(fds->data, (uint64_t)r->gen << 32 | rr.slot))
                        missing[rr.pool]++;
        }
        for (uint32_t id = 0; missing && id < npools; id++) {
                if (!missing[id] || !pools[id])
                        continue;
                if ((e = lost_pool(l, id, pools[id]->conf.name, pool_regions[id] - 1,
                                   "its region memfds are not all in the fd store (%u missing): systemd dropped them "
                                   "or could not take them (raise FileDescriptorStoreMax=), and a region's holders "
                                   "map its memfd",
                                   missing[id])) < 0)
                        goto out;
                pools[id] = NULL;
        }
out:
        free(missing);
        return e;
}
