/* SPDX-License-Identifier: MIT */
/*
 * Batches: many regions allocated or freed in one request, all or none
 * (docs/protocol.md, "Batches").
 *
 * A free batch is checked whole before the first region goes, so a refused
 * one changes nothing.  An alloc batch cannot know whether its regions fit
 * until it has placed them: it checks what it can first (arguments, the
 * connection's region limit), then allocates one by one as Alloc does, and
 * gives back what it took if one fails.  What that leaves changed is
 * capacity only (tables grown for the regions it held for a moment), never a
 * count, a range or a name.  A batch never waits: waiting for n regions at
 * once would hold room others could use, and a batch is for setting up, when
 * a program can as well allocate one by one to wait.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"
#include "ids.h"

/*
 * Prefixes res's message with which region of the batch failed and that nothing changed.  The figures
 * of "no room now" and of a quota (what was free, what the uid held) were counted with the batch's first
 * i regions placed: a batch that "found 0 free" in a pool status shows empty would puzzle, so the message
 * says so; other refusals have no such figures.
 */
static int batch_fail(struct core_result *res, size_t i, size_t n, uint64_t size) {
        char why[CORE_MSG_MAX];
        bool counted = i && (res->code == E_WOULD_BLOCK || res->code == E_QUOTA);

        snprintf(why, sizeof(why), "%s", res->msg);
        return fail(res, res->code, "region %zu of the batch of %zu (%" PRIu64 " bytes): %s%s; none was allocated", i,
                    n, size, why, counted ? " (counted with the batch's regions before it placed)" : "");
}

static int batch_args(const struct core *core, const struct client *cl, const struct alloc_request *m, size_t n,
                      struct core_result *res) {
        const struct limits *l = &core->limits;

        if (n == 0 || n > CORE_BATCH_MAX)
                return fail(res, E_INVALID, "a batch is 1 to %d regions, not %zu", CORE_BATCH_MAX, n);
        if (m->name && *m->name)
                return fail(res, E_INVALID, "a batch's regions have no names; allocate named regions one by one");
        if (m->flags & (F_PERSIST | F_UNSEALED | F_NOFAIL))
                return fail(res, E_INVALID,
                            "PERSIST, UNSEALED and NOFAIL do not apply to a batch, which does not wait and whose "
                            "regions are the connection's; allocate such regions one by one");
        if (m->format != FMT_RAW)
                return fail(res, E_INVALID, "a batch's regions are raw bytes; allocate falloc heaps one by one");
        if (m->size || m->count > 1)
                return fail(res, E_INVALID, "a batch's sizes are its regions' sizes: leave size and count unset");
        if ((uint64_t)cl->nrefs + cl->npending + n > l->max_regions_per_connection)
                return fail(res, E_LIMIT,
                            "this connection holds %u regions; %zu more would pass max_regions_per_connection = %u",
                            cl->nrefs + cl->npending, n, l->max_regions_per_connection);
        return E_OK;
}

/*
 * Regions [0, n) of the batch, the last of which found no room now: where they cannot fit together even
 * in the empty pool, placed in order as Alloc places them, "no room now" is false (a program would try
 * again for ever), and res says so, as alloc_never_fits says of one region.
 */
static void batch_never_fits(struct alloc_args *a, const uint64_t *sizes, size_t n, struct core_result *res) {
        uint64_t offs[CORE_BATCH_MAX], total = 0;
        size_t j;
        int r = 0;

        if (alloc_never_fits(a, res))
                return;
        for (j = 0; j < n && (r = range_alloc(a->pool->empty, sizes[j], &a->req, &offs[j])) == 0; j++)
                total += sizes[j];
        for (size_t k = 0; k < j; k++)
                range_free(a->pool->empty, offs[k], 0);
        if (r == -ENOSPC)
                fail(res, E_NEVER_FITS,
                     "the batch's first %zu regions (%" PRIu64 " bytes in all) cannot fit together in pool %s even "
                     "when it is empty (%" PRIu64 " bytes); allocate fewer or smaller regions",
                     j + 1, total + sizes[j], a->pool->conf.name, a->pool->total);
}

int core_alloc_batch(struct core *core, struct client *cl, const struct alloc_request *m, const uint64_t *sizes,
                     size_t n, uint32_t *slots, struct core_result *res) {
        struct alloc_request one = *m;
        struct alloc_args a;
        struct core_result scratch;
        size_t i;

        if (batch_args(core, cl, m, n, res) != E_OK)
                return res->code;
        one.count = 1;
        for (i = 0; i < n; i++) {
                one.size = sizes[i];
                if (check_alloc(core, cl, &one, &a, res) != E_OK)
                        break;
                if (a.pool->conf.isolation == ISOLATION_REGION) {
                        /* A packet carries 4 fds; each region of such a pool brings its own. */
                        fail(res, E_INVALID,
                             "pool %s gives each region its own fd (isolation = region): allocate its regions one by "
                             "one",
                             a.pool->conf.name);
                        break;
                }
                if (alloc_try(core, cl, &a, false, &slots[i], res) != E_OK) {
                        if (res->code == E_WOULD_BLOCK)
                                batch_never_fits(&a, sizes, i + 1, res);
                        break;
                }
                /* A worker's zeroing answers later, one region at a time: a batch's answer is one reply. */
                if (alloc_defers(core, slots[i])) {
                        region_discard(core, slots[i]);
                        fail(res, E_INVALID,
                             "ZERO in a batch is for regions allocd zeroes at once (at most %u bytes, not in a gpu "
                             "pool); allocate larger ones one by one",
                             ZERO_INLINE_MAX);
                        break;
                }
                if (alloc_finish(core, cl, slots[i], res) != GRANT_REGION)
                        break;
        }
        if (i == n)
                return ok_result(res);
        batch_fail(res, i, n, sizes[i]);
        while (i-- > 0) {
                struct region_info r;
                core_region_info(core, slots[i], &r);
                core_free_region(core, cl, r.id, &scratch);
        }
        return res->code;
}

int core_free_batch(struct core *core, struct client *cl, const uint64_t *ids, size_t n, struct core_result *res) {
        uint64_t sorted[CORE_BATCH_MAX], dup;

        if (n == 0 || n > CORE_BATCH_MAX)
                return fail(res, E_INVALID, "a batch is 1 to %d regions, not %zu", CORE_BATCH_MAX, n);
        if ((dup = ids_first_duplicate(ids, n, sorted)))
                return fail(res, E_INVALID, "region %" PRIu64 " appears twice in the batch; name each once", dup);
        for (size_t i = 0; i < n; i++)
                if (check_free(core, cl, ids[i], res) != E_OK) {
                        char why[CORE_MSG_MAX];
                        snprintf(why, sizeof(why), "%s", res->msg);
                        return fail(res, res->code, "%s; none of the batch of %zu was freed", why, n);
                }
        /* Each is checked again as it goes, and passes: freeing one region changes no other's holder or owner. */
        for (size_t i = 0; i < n; i++)
                core_free_region(core, cl, ids[i], res);
        return ok_result(res);
}
