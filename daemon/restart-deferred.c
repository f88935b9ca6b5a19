/* SPDX-License-Identifier: MIT */
/*
 * A stored pool restored draining (restart.c: deferred_drain_stored, a memfd, pinned vmm or gpu pool)
 * keeps its name until its last region goes: the configured pool of that name is made then, from the
 * section it has at that time.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-parse.h"
#include "cuda-loader.h"
#include "fdstore.h"
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

/* The pool named name waits no more; not made here. */
static void deferred_drop(const char *name) {
        for (size_t i = 0; i < ndeferred; i++) {
                if (strcmp(deferred[i].name, name))
                        continue;
                free(deferred[i].ranges);
                deferred[i] = deferred[--ndeferred];
                return;
        }
}

/*
 * The configured pool that waited for its draining namesake, made now that the namesake is gone: on the
 * thread pool, as a reload's (fallocate and mlock of a large pool would hold up the loop, and the watchdog).
 */
void deferred_make(const char *name) {
        const struct pool_conf *pc = deferred_find(name);

        if (pc) {
                reload_make_deferred(pc); /* takes a copy */
                deferred_drop(name);
        }
}

/*
 * SIGHUP: the pools waiting for a draining namesake are what the file says now, so that a section
 * changed meanwhile is made as it is, one taken out is not made, and one put back is made.  A retired
 * pool still holding names lets go of them too (core_pool_hold_names): a SIGHUP waits for pools being
 * made, so its namesake's making failed outright (out of memory, no worker thread), and the file decides.
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

/* The devices a gpu pool's stored memory may be on: those allocd sees; 1 where it sees none (to say why). */
static int ndevices(void) {
#if HAVE_CUDA
        const struct cuda *cu = cuda_get(NULL);

        if (cu && cu->ndevices > 0)
                return cu->ndevices;
#endif
        return 1;
}

/* The configured pool that waited for a stored one that cannot be restored draining after all: made now. */
static void make_waiting(struct core *core, const char *name) {
        const struct pool_conf *pc = deferred_find(name);
        char err[512];

        if (!pc)
                return;
        if (core_pool_add(core, pc, err, sizeof(err)) < 0)
                logx(LOG_LEVEL_ERR, &(struct log_ctx){.pool = name},
                     "%s; pool %s is left out (allocctl status lists it as not available), SIGHUP tries again", err,
                     name);
        else
                logx(LOG_LEVEL_INFO, &(struct log_ctx){.pool = name}, "pool %s: made as configured, of fresh memory",
                     name);
        deferred_drop(name);
}

/*
 * A memfd, a pinned pool made by CUDA (backend = vmm: host memory, device 0's context as pool_device()
 * says), or a gpu pool, whose device its name does not say: each device allocd sees is tried in turn with
 * a copy of the fd, until one is not refused as another's (pool-vmm.c, adopted_in_place: -EBADF).  That
 * costs a context retained on each device tried, and only in this rare case.
 */
void deferred_drain_stored(struct core *core, int stored, const struct stored_pool *sp) {
        struct pool_conf pc;
        char err[512], why[200];
        struct pool *p;
        int r = -EBADF;

        pool_conf_defaults(&pc);
        snprintf(pc.name, sizeof(pc.name), "%s", sp->name);
        pc.kind = sp->kind;
        pc.size = sp->size;
        pc.quantum = sp->quantum; /* its regions' */
        pc.backend = sp->vmm ? BACKEND_VMM : BACKEND_MEMFD;
        /* Its access rules went with its section: only root reaches a name in it; holders keep theirs. */
        pc.owner = 0;
        pc.group = 0;
        pc.mode = 0600;
        if (sp->kind == POOL_GPU) {
                /* A refused try leaves a pool not made, which the next one replaces (core_pool_adopt). */
                for (int d = 0, n = ndevices(); d < n && r == -EBADF; d++) {
                        int fd = fcntl(stored, F_DUPFD_CLOEXEC, 3);
                        pc.device = d;
                        r = fd < 0 ? -errno : core_pool_add_fd(core, &pc, fd, err, sizeof(err));
                        if (fd < 0)
                                snprintf(err, sizeof(err), "cannot copy its fd: %s", strerror(-r));
                }
                close(stored);
        } else {
                r = core_pool_add_fd(core, &pc, stored, err, sizeof(err));
        }
        if (r < 0 || !(p = core_pool_find(core, sp->name))) {
                log_err("the stored pool %s (%s, %" PRIu64 " bytes) cannot be restored: %s; its regions are lost",
                        sp->name, pool_kind_name(sp->kind), sp->size, err);
                if (deferred_find(sp->name))
                        make_waiting(core, sp->name);
                else /* its placeholder: no section asks for it, so it is not a pool "not available" */
                        core_pool_forget(core, sp->name);
                return;
        }
        const struct pool_conf *waiting = deferred_find(sp->name);
        snprintf(why, sizeof(why), "restored from the fd store, but %s",
                 !waiting ? "no longer configured"
                 : sp->kind == POOL_GPU && fdstore_pool_matches(waiting, sp, -1)
                         ? "configured on another device now"
                         : "configured with another kind, size, quantum or hugepages now");
        core_pool_drain(core, p, why, false);
        if (waiting)
                core_pool_hold_names(p, waiting->names);
}
