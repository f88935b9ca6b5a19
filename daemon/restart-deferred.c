/* SPDX-License-Identifier: MIT */
/*
 * A stored pool restored draining (restart.c) keeps its name until its last region goes: the
 * configured pool of that name is made then, from the section it has at that time.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reload.h"
#include "restart-deferred.h"
#include "restart.h"

static struct pool_conf *deferred; /* configured pools waiting for a draining namesake to empty */
static size_t ndeferred;

bool deferred_add(const struct pool_conf *pc) {
        struct pool_conf *n = realloc(deferred, (ndeferred + 1) * sizeof(*n));
        struct span *ranges = pc->nranges ? malloc(pc->nranges * sizeof(*ranges)) : NULL;

        if (n)
                deferred = n;
        if (!n || (pc->nranges && !ranges)) {
                free(ranges);
                return false;
        }
        if (pc->nranges)
                memcpy(ranges, pc->ranges, pc->nranges * sizeof(*ranges));
        deferred[ndeferred] = *pc;
        deferred[ndeferred++].ranges = ranges; /* an fpga pool's, in place of a stored memory pool */
        return true;
}

static void undefer_all(void) {
        for (size_t i = 0; i < ndeferred; i++)
                free(deferred[i].ranges);
        ndeferred = 0;
}

void deferred_free(void) {
        undefer_all();
        free(deferred);
        deferred = NULL;
}

size_t deferred_list(char *buf, size_t size) {
        buf[0] = '\0';
        for (size_t i = 0; i < ndeferred; i++)
                reload_list_add(buf, size, deferred[i].name);
        return ndeferred;
}

const struct pool_conf *deferred_find(const char *name) {
        for (size_t i = 0; i < ndeferred; i++)
                if (!strcmp(deferred[i].name, name))
                        return &deferred[i];
        return NULL;
}

/*
 * The configured pool that waited for its draining namesake, made now that the namesake is gone: on the
 * thread pool, as a reload's (fallocate and mlock of a large pool would hold up the loop, and the watchdog).
 */
void deferred_make(const char *name) {
        for (size_t i = 0; i < ndeferred; i++) {
                if (strcmp(deferred[i].name, name))
                        continue;
                reload_make_deferred(&deferred[i]);
                free(deferred[i].ranges);
                deferred[i] = deferred[--ndeferred];
                return;
        }
}

/*
 * SIGHUP: the pools waiting for a draining namesake are what the file says now, so that a section
 * changed meanwhile is made as it is, one taken out is not made, and one put back is made.  A retired
 * pool whose namesake is being made at the time lets go of its names too (core_pool_hold_names).
 */
void restart_reconfigured(struct core *core, const struct config *conf) {
        struct pool_info pi;
        struct pool *p;

        undefer_all();
        for (size_t i = 0; i < core_npools(core); i++)
                core_pool_hold_names(core_pool_at(core, i), "");
        for (size_t i = 0; i < conf->npools; i++) {
                if (!(p = core_pool_find(core, conf->pools[i].name)) || (core_pool_info(p, &pi), !pi.draining))
                        continue;
                core_pool_hold_names(p, conf->pools[i].names); /* the section's names are its, meanwhile */
                if (!deferred_add(&conf->pools[i]))
                        log_err("SIGHUP: pool %s: out of memory; it is not made when its draining namesake "
                                "empties, its names stay reserved; reload again",
                                conf->pools[i].name);
        }
}
