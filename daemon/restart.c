/* SPDX-License-Identifier: MIT */
/*
 * allocd across a restart (docs/ARCHITECTURE.md, "Across a restart").
 * What systemd keeps for allocd in its fd store, by name, and how: restart-store.c.
 * At start the pools come back first, made from their stored fds where the configuration still
 * asks for the same pool, then the state is read into them, all before the socket is served.
 * A state that cannot be read means its regions are lost: the adopted pools would hand out
 * memory that old clients may still map and write, so the whole core is made again from fresh
 * memory.  A state that can be read but holds regions of a pool that cannot take them back (not
 * configured and not restored draining, not available, configured otherwise, not of the stored
 * memory) loses those regions only (state_info.lost, said once a pool): the rest is restored, the
 * lost regions' memfds (isolation = region) leave the store with what no region claims, and the
 * state is not appended to (keep_adopt), lest a later start give them back.  A stored pool with no configuration (or
 * another kind, size or hugepages now, or a larger quantum; a gpu pool on another device) is restored all the same,
 * draining: its regions can be attached, detached and freed, it takes no Alloc, and it goes (from the store too) with
 * its last region; a configured pool of its name waits for that.  So are memfds, pinned vmm pools and gpu pools
 * (restart-deferred.c); a gpu pool's name does not say its device, so each device is tried with a copy of its fd
 * until one is not refused as another's (pool-vmm.c), and a configured gpu pool adopts a copy, so that on that
 * refusal the stored fd is still here to be restored draining (restart_pool_refused).
 * Without a store nothing is kept, and a stop says what it loses.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "keep.h"
#include "log.h"
#include "restart-deferred.h"
#include "restart-store.h"
#include "restart.h"
#include "state.h"

static struct passed_fd *passed;
static size_t npassed;
static size_t *by_name;   /* passed[] sorted by name (fdstore_passed_sort); NULL: out of memory, scanned */
static int state_at = -1; /* passed[] index of the state to restore */

static bool store;                 /* there is a store to keep things in */
static unsigned store_max;         /* FileDescriptorStoreMax= */
static int state_name = -1;        /* which of state.0/state.1 holds passed[state_at]; -1: none */
static struct state_info restored; /* what restart_restore said of passed[state_at] */
static size_t nregion_fds;         /* region memfds taken from the store (restored regions') */

/* passed[]'s index of the memfd kept for region id, or -1. */
static ssize_t region_at(uint64_t id) {
        char name[32];

        fdstore_region_name(name, sizeof(name), id);
        return fdstore_passed_find(passed, by_name, npassed, name);
}

static void passed_release(void) {
        fdstore_passed_free(passed, npassed);
        passed = NULL;
        npassed = 0;
        free(by_name);
        by_name = NULL;
}

static int region_stored(void *data, uint64_t id) {
        ssize_t i = region_at(id);
        int fd;

        (void)data;
        if (i < 0)
                return -1;
        fd = passed[i].fd;
        passed[i].fd = -1;
        nregion_fds++;
        return fd;
}

/* Asked before any is taken: a pool with a region whose memfd is not here loses its regions alone. */
static bool region_has(void *data, uint64_t id) {
        (void)data;
        return region_at(id) >= 0;
}

/* made, gone and room: restart-store.c's (store_region_fds). */
static struct region_fds region_fds = {.stored = region_stored, .has = region_has};

int restart_collect(int *sock) {
        char fds[32], names[64];
        snprintf(fds, sizeof(fds), "%s", getenv("LISTEN_FDS") ? getenv("LISTEN_FDS") : "");
        snprintf(names, sizeof(names), "%s", getenv("LISTEN_FDNAMES") ? getenv("LISTEN_FDNAMES") : "(unset)");
        int r = fdstore_passed(&passed, &npassed); /* unsets LISTEN_FDS and LISTEN_FDNAMES */
        uint64_t epoch, best = 0;

        *sock = -1;
        if (r == -EBADF)
                log_err("LISTEN_FDS=%s: some of those fds (from fd 3 on) are not open; allocd takes fds only as "
                        "systemd passes them",
                        fds);
        else if (r == -EINVAL)
                log_err("LISTEN_FDS=%s, LISTEN_FDNAMES=%s: not a count of fds with one name each; allocd takes "
                        "fds only as systemd passes them",
                        fds, names);
        else if (r < 0)
                log_err("LISTEN_FDS=%s: %s", fds, strerror(-r));
        if (r < 0)
                return r;
        store = fdstore_enabled(&store_max);
        for (size_t i = 0; i < npassed; i++) {
                struct passed_fd *f = &passed[i];
                if (sd_is_socket(f->fd, AF_UNSPEC, 0, -1) > 0) {
                        if (*sock >= 0) {
                                log_err("systemd passed more than one socket; allocd.socket must have exactly one "
                                        "ListenSequentialPacket=");
                                return -EINVAL;
                        }
                        *sock = f->fd;
                        f->fd = -1;
                        f->name[0] = '\0'; /* allocd.socket's, not the store's */
                } else if (!strcmp(f->name, store_state_names[0]) || !strcmp(f->name, store_state_names[1])) {
                        if ((r = keep_epoch_fd(f->fd, &epoch)) < 0) {
                                log_err("the fd store holds %s, which is not a state this allocd can read (%s): what "
                                        "it held is not restored",
                                        f->name,
                                        r == -EPROTO    ? "another version of the format"
                                        : r == -EBADMSG ? "its header is damaged"
                                                        : strerror(-r));
                                continue;
                        }
                        /* The later of two of the same epoch: systemd passes them in the order they were stored. */
                        if (state_at < 0 || epoch >= best) {
                                state_at = (int)i;
                                best = epoch;
                        }
                }
        }
        if (fdstore_passed_sort(passed, npassed, &by_name) < 0)
                by_name = NULL;
        return 0;
}

/* The passed fd stored for a pool named name, or NULL. */
static struct passed_fd *stored_pool(const char *name, struct stored_pool *sp) {
        for (size_t i = 0; i < npassed; i++)
                if (passed[i].fd >= 0 && fdstore_pool_parse(passed[i].name, sp) && !strcmp(sp->name, name))
                        return &passed[i];
        return NULL;
}

/*
 * passed[]'s index of the stored gpu pool whose copy restart_pool_fd gave its configured namesake, or -1:
 * the name does not say the device, and memory of another one is refused only once the driver imported
 * it (pool-vmm.c, adopted_in_place), so the stored fd stays here for restart_pool_refused to restore draining.
 */
static ssize_t lent = -1;

int restart_pool_fd(struct pool_conf *pc) {
        struct stored_pool sp;
        struct passed_fd *f = state_at >= 0 ? stored_pool(pc->name, &sp) : NULL;
        int fd;

        if (!f || !fdstore_pool_matches(pc, &sp, f->fd))
                return -1;
        if (pc->kind == POOL_PINNED)
                pc->backend = sp.vmm ? BACKEND_VMM : BACKEND_MEMFD;
        if (sp.kind == POOL_GPU) {
                if ((fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 3)) >= 0)
                        lent = f - passed;
                return fd; /* none: made of fresh memory, its regions lost (restart_begin drops the stored fd) */
        }
        fd = f->fd;
        f->fd = -1;
        return fd;
}

bool restart_pool_refused(const struct pool_conf *pc, int r) {
        struct passed_fd *f = lent >= 0 ? &passed[lent] : NULL;

        lent = -1;
        if (!f || f->fd < 0)
                return false;
        /* Another device's memory: it drains, on its own device (deferred_drain_stored), and pc waits for it. */
        if (r == -EBADF && deferred_add(pc))
                return true;
        close(f->fd); /* adopted, or made of nothing as a memfd pool whose stored fd failed is */
        f->fd = -1;
        return false;
}

bool restart_pool_deferred(const struct pool_conf *pc) {
        struct stored_pool sp;
        struct passed_fd *f = state_at >= 0 ? stored_pool(pc->name, &sp) : NULL;

        if (!f || fdstore_pool_matches(pc, &sp, f->fd))
                return false;
        return deferred_add(pc);
}

/* Each pool whose regions the state held but could not give back (state_info.lost: one a line). */
static void log_lost(const struct state_info *info) {
        char pool[POOL_NAME_MAX_LEN + 1];
        const char *l = info->lost;

        for (uint32_t i = 0; i < info->lost_pools && *l; i++) {
                const char *nl = strchr(l, '\n'), *colon = strchr(l, ':');
                int n = nl ? (int)(nl - l) : (int)strlen(l);
                snprintf(pool, sizeof(pool), "%.*s", colon && (!nl || colon < nl) ? (int)(colon - l) : 0, l);
                logx(LOG_LEVEL_ERR, &(struct log_ctx){.pool = pool},
                     "pool %.*s: the state's regions of this pool are lost, the rest is restored; their holders "
                     "are told they are gone when they reconnect.  To keep a pool's regions across a restart, "
                     "configure it as it was (kind, size, isolation, quantum) and make sure its device works first",
                     n, l);
                if (!nl)
                        break;
                l = nl + 1;
        }
}

int restart_restore(struct core *core, uint64_t *next_serial) {
        struct state_info info;
        struct core_stats cs;
        struct stored_pool sp;
        char err[512];
        int r;

        *next_serial = 1;
        if (state_at < 0)
                return 0;
        store_region_fds(&region_fds);
        core_set_region_fds(core, &region_fds);
        for (size_t i = 0; i < npassed; i++) {
                if (passed[i].fd < 0 || !fdstore_pool_parse(passed[i].name, &sp))
                        continue;
                /* A configured gpu pool that refused it as another device's memory waits, not made (deferred). */
                struct pool *p = core_pool_find(core, sp.name);
                struct pool_info pi;
                if (p)
                        core_pool_info(p, &pi);
                if (!p || (!pi.available && deferred_find(sp.name))) {
                        deferred_drain_stored(core, passed[i].fd, &sp);
                        passed[i].fd = -1;
                } /* else restart_begin removes it from the store as unused */
        }
        if ((r = state_read_fd_info(core, passed[state_at].fd, next_serial, &info, err, sizeof(err))) < 0) {
                log_err("the state the previous allocd left in the fd store (%s) cannot be restored: %s; every region "
                        "it held is lost, and allocd starts with fresh pools",
                        passed[state_at].name, err);
                return r;
        }
        core_stats(core, &cs);
        log_info("restored from the fd store (%s, epoch %" PRIu64 ", %" PRIu64 " %s after its snapshot): %" PRIu64
                 " %s, %" PRIu64 " %s, %" PRIu64 " %s of %u %s (they keep them until they reconnect); %" PRIu64
                 " bytes in use",
                 passed[state_at].name, info.epoch, info.records, plural(info.records, "change", "changes"), cs.regions,
                 plural(cs.regions, "region", "regions"), cs.names, plural(cs.names, "name", "names"), cs.holds,
                 plural(cs.holds, "reference", "references"), core_nclients(core),
                 plural(core_nclients(core), "client", "clients"), cs.used);
        log_lost(&info);
        if (info.torn)
                log_warn("the state's log ends in %" PRIu64 " bytes that are not a whole change (one cut short when "
                         "allocd was killed while writing it, whose request was never answered; or damage): what "
                         "they held is not restored",
                         info.torn);
        state_name = !strcmp(passed[state_at].name, store_state_names[1]);
        restored = info;
        return 0;
}

void restart_discard(void) {
        for (size_t i = 0; i < npassed; i++) {
                if (!passed[i].name[0])
                        continue; /* the socket, or removed already */
                fdstore_remove(passed[i].name);
                if (passed[i].fd >= 0)
                        close(passed[i].fd);
                passed[i].fd = -1;
                passed[i].name[0] = '\0'; /* nothing of it is in the store now */
        }
        free(by_name); /* the names it sorted are gone: a lookup scans (and finds nothing) */
        by_name = NULL;
        state_at = -1;
        state_name = -1;
        nregion_fds = 0; /* a restore undone closed those it had taken */
        deferred_free();
}

void restart_begin(struct core *core, uint64_t next_serial) {
        size_t want = 2;
        bool fit = store_serve(core, store_max);

        if (!store) {
                restart_discard();
                passed_release();
                return;
        }
        /*
         * The pools made from stored fds are in the store already, under their names (one adopted with a
         * smaller quantum is stored again under its new one, below).  One that took its stored fd but could
         * not use it (damaged, a failed mlock, no GPU yet) is made of other memory by a reload: the old fd
         * leaves the store, so that the new one is stored then and the next start does not adopt the old.
         */
        for (size_t i = 0; fit && i < core_npools(core); i++) {
                struct pool_info pi;
                struct stored_pool sp;
                char name[300];
                core_pool_info(core_pool_at(core, i), &pi);
                bool made = pi.available && pi.fd >= 0;
                want += made;
                store_pool_name(&pi, name, sizeof(name));
                for (size_t j = 0; j < npassed; j++) {
                        if (passed[j].fd >= 0 || !fdstore_pool_parse(passed[j].name, &sp) || strcmp(sp.name, pi.name))
                                continue;
                        if (!made || strcmp(passed[j].name, name)) {
                                fdstore_remove(passed[j].name);
                                passed[j].name[0] = '\0';
                        } else {
                                store_pool_kept(i);
                        }
                }
        }
        size_t regions = 0;
        for (size_t i = 0; i < npassed; i++) {
                if (passed[i].fd < 0 || (int)i == state_at)
                        continue;
                fdstore_remove(passed[i].name);
                /* A region's memfd stored just before a crash that its state never named, or freed after it was kept.
                 */
                if (!strncmp(passed[i].name, "region-", 7)) {
                        regions++;
                        continue;
                }
                /* A second state, older, or a pool nobody configured that held no region. */
                logx(LOG_LEVEL_NOTICE, NULL,
                     "the fd store held %s, which nothing restored uses; removed from the store", passed[i].name);
        }
        if (regions)
                logx(LOG_LEVEL_NOTICE, NULL,
                     "the fd store held %zu region memfds that no restored region claims (the state does not name "
                     "them, or their pool's regions were lost); removed from the store",
                     regions);
        store_region_fds(&region_fds);
        core_set_region_fds(core, &region_fds);
        if (store_keep(core, next_serial, state_at >= 0 ? passed[state_at].fd : -1, state_at >= 0 ? &restored : NULL,
                       state_name, nregion_fds))
                passed[state_at].fd = -1; /* the keep appends to it */
        passed_release();
        state_at = -1;
        if (want > store_max)
                log_warn("FileDescriptorStoreMax=%u is less than the %zu fds allocd stores (its pools' and the "
                         "state's): systemd drops the rest without a word, and a restart loses their regions; raise it",
                         store_max, want);
}
