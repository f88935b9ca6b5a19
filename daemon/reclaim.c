/* SPDX-License-Identifier: MIT */
/*
 * Connections that carry on across a restart (issue 18).
 *
 * A restored state brings every holder back as an absent placeholder
 * (state.c): a struct client of the old serial, uid, pid and secret, in the
 * client list, holding what the connection held.  A client that reconnects
 * names that serial and shows the secret allocd gave it at Hello; if the
 * placeholder is of the same uid and the secret matches, the new connection
 * takes the placeholder's serial, secret, holds and place in the client list
 * (Status pages by serial, so the list stays in serial order), and the
 * placeholder goes.  Its holds keep their records: a hold is found by its
 * client's serial, which is the same, so only the client pointers move.
 *
 * The secret is compared in constant time, so that a local process cannot
 * learn it byte by byte from how long a refusal takes; the uid is checked as
 * well, so a leaked secret is of use only to the uid that held the regions.
 *
 * A placeholder is released as a hang-up would release it when its client's
 * process ends, or, where allocd cannot watch that process, when no one
 * reclaimed it within reclaim_grace (core_absent_release_serial and
 * core_absent_release, called by the server's grace.c).  Never while the
 * process lives: a client that makes no call reconnects only at its next one,
 * and until then it still maps the regions.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"

size_t absent_index(const struct core *core, uint64_t serial) {
        for (size_t i = 0; i < core->nabsent; i++)
                if (core->absent[i]->serial == serial)
                        return i;
        return SIZE_MAX;
}

static bool same_secret(const uint8_t *a, const uint8_t *b) {
        uint8_t d = 0;

        for (size_t i = 0; i < CLIENT_SECRET_LEN; i++)
                d |= a[i] ^ b[i];
        return d == 0;
}

/* Takes placeholder i out of core->absent and frees it; it holds nothing and is off the client list. */
static void absent_drop(struct core *core, size_t i) {
        free(core->absent[i]);
        core->absent[i] = core->absent[--core->nabsent];
        if (!core->nabsent) {
                free(core->absent);
                core->absent = NULL;
        }
}

int core_client_reclaim(struct core *core, struct client *cl, uint64_t serial, const uint8_t *secret, size_t len,
                        struct core_result *res) {
        size_t i = absent_index(core, serial);
        struct client *ph;

        if (len != CLIENT_SECRET_LEN)
                return fail(res, E_INVALID, "reclaim_secret is %zu bytes; the secret Hello gave is %d", len,
                            CLIENT_SECRET_LEN);
        if (cl->holds != HOLD_NONE || cl->nwaiters || cl->npending)
                return fail(res, E_INVALID, "a connection reclaims in its Hello, before it holds anything");
        if (i == SIZE_MAX)
                return fail(res, E_NOT_FOUND,
                            /* Under 256 bytes: liballoc-client before ebdc1db kept no more of it. */
                            "connection %" PRIu64 " is not waiting to be reclaimed: it held no region, allocd "
                            "restarted without its state or lost its pools (see its log), or it was released (process "
                            "ended, allocctl disconnect, grace time: reclaim_grace); what it held is gone",
                            serial);
        ph = core->absent[i];
        if (ph->uid != cl->uid || !same_secret(ph->secret, secret))
                return fail(res, E_DENIED,
                            "connection %" PRIu64 " may be reclaimed only by its own uid with the secret its Hello "
                            "gave; this is uid %u with another secret or uid",
                            serial, (unsigned)cl->uid);
        /*
         * The kept state (keep.c) sees the connection's own serial go, holding nothing, and the
         * placeholder's record become this connection's (its pid, name, comm): the holds are the
         * serial's, so they stay as they are kept.
         */
        kept_client_gone(core, cl->serial);
        client_unpast(core, cl); /* in the placeholder's place, which counts */
        region_take_over(core, ph, cl);
        cl->serial = ph->serial;
        memcpy(cl->secret, ph->secret, sizeof(cl->secret));
        TAILQ_REMOVE(&core->clients, cl, link);
        TAILQ_INSERT_BEFORE(ph, cl, link);
        client_leave(core, ph);
        absent_drop(core, i);
        kept_client(core, cl);
        return ok_result(res);
}

uint32_t absent_of_uid(const struct core *core, uid_t uid) {
        uint32_t n = 0;

        for (size_t i = 0; i < core->nabsent; i++)
                n += core->absent[i]->uid == uid;
        return n;
}

size_t core_nabsent(const struct core *core) {
        return core->nabsent;
}

bool absent_release(struct core *core, struct client *cl) {
        for (size_t i = 0; i < core->nabsent; i++) {
                if (core->absent[i] != cl)
                        continue;
                core_client_remove(core, cl);
                absent_drop(core, i);
                return true;
        }
        return false;
}

/* Releases placeholder i as its hang-up would have, saying in info what it held. */
static void release_at(struct core *core, size_t i, struct absent_info *info) {
        struct client *ph = core->absent[i];

        *info = (struct absent_info){
                .serial = ph->serial, .uid = ph->uid, .pid = ph->pid, .refs = ph->nrefs, .bytes = ph->bytes};
        snprintf(info->name, sizeof(info->name), "%s", ph->name);
        core_client_remove(core, ph);
        absent_drop(core, i);
}

bool core_absent_release(struct core *core, struct absent_info *info) {
        for (size_t i = core->nabsent; i-- > 0;)
                if (!core->absent[i]->watched) {
                        release_at(core, i, info);
                        return true;
                }
        return false;
}

bool core_absent_release_serial(struct core *core, uint64_t serial, struct absent_info *info) {
        size_t i = absent_index(core, serial);

        if (i == SIZE_MAX)
                return false;
        release_at(core, i, info);
        return true;
}

bool core_absent_has(const struct core *core, uint64_t serial) {
        return absent_index(core, serial) != SIZE_MAX;
}

bool core_absent_at(const struct core *core, size_t i, uint64_t *serial, pid_t *pid, uint64_t *start) {
        if (i >= core->nabsent)
                return false;
        *serial = core->absent[i]->serial;
        *pid = core->absent[i]->pid;
        *start = core->absent[i]->start;
        return !core->absent[i]->watched;
}

void core_absent_watched(struct core *core, uint64_t serial, uint64_t start) {
        size_t i = absent_index(core, serial);

        if (i == SIZE_MAX)
                return;
        core->absent[i]->watched = true;
        if (!core->absent[i]->start && start) {
                /* Restored from an older state, which had no start: kept, the next restart has it. */
                core->absent[i]->start = start;
                kept_client(core, core->absent[i]);
        }
}

static int by_slot(const void *a, const void *b) {
        uint32_t x = (uint32_t) * (const uint64_t *)a, y = (uint32_t) * (const uint64_t *)b;

        return (x > y) - (x < y);
}

int core_client_held(const struct core *core, const struct client *cl, uint64_t after, struct held_page *page,
                     struct core_result *res) {
        const struct hold *tab = core->regions.holds.tab;
        uint64_t from = after ? (uint64_t)(uint32_t)after + 1 : 0, *all;
        size_t n = 0;

        page->n = 0;
        page->more = false;
        if (!cl->nrefs)
                return ok_result(res);
        /* A hold's count fits in 31 bits: it rides in the high half of a sort key whose low half is the slot. */
        if (!(all = malloc(sizeof(*all) * cl->nrefs)))
                return fail(res, E_INTERNAL, "out of memory listing the connection's regions");
        for (uint32_t i = cl->holds; i != HOLD_NONE; i = tab[i].cnext)
                if (tab[i].slot >= from)
                        all[n++] = (uint64_t)tab[i].count << 32 | tab[i].slot;
        qsort(all, n, sizeof(*all), by_slot);
        page->more = n > HELD_PAGE;
        page->n = page->more ? HELD_PAGE : n;
        for (size_t k = 0; k < page->n; k++) {
                page->ids[k] = region_id(&core->regions, (uint32_t)all[k]);
                page->counts[k] = (uint32_t)(all[k] >> 32);
                page->created[k] = core->regions.tab[(uint32_t)all[k]].creator == cl->serial;
        }
        free(all);
        return ok_result(res);
}
