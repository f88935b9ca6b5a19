/* SPDX-License-Identifier: MIT */
/*
 * allocd across a restart (docs/ARCHITECTURE.md, "Across a restart").
 *
 * What systemd keeps for allocd in its fd store, by name (fdstore.h):
 *   pool.KIND.SIZE.NAME   each pool's memory (a memfd, or a CUDA VMM export), stored when made
 *                         (SIZEqQUANTUM where the quantum is not the page size)
 *   state.0, state.1      the state (keep.h): a new memfd goes under the name the old one does
 *                         not use, then the old name is removed, so a crash between the two leaves
 *                         both and the start takes the newer (keep_epoch_fd); a start that restored
 *                         one goes on appending to it where it can (keep_adopt), stored as it is
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
#include "restart.h"
#include "state.h"

static struct passed_fd *passed;
static size_t npassed;
static size_t *by_name;   /* passed[] sorted by name (fdstore_passed_sort); NULL: out of memory, scanned */
static int state_at = -1; /* passed[] index of the state to restore */

static bool store;                 /* there is a store to keep things in */
static bool serving;               /* restart_begin ran: every pool and region restored is in the core */
static unsigned store_max;         /* FileDescriptorStoreMax= */
static struct keep *keep;          /* keeping the state, once serving */
static int state_name = -1;        /* which of state.0/state.1 holds keep_fd() in the store; -1: none */
static bool keep_failed;           /* keep_turn failed: said once */
static bool store_failed;          /* systemd could not take keep_fd(): said once */
static struct state_info restored; /* what restart_restore said of passed[state_at] */
enum { POOL_NEW, POOL_STORED, POOL_LEFT_OUT };
static uint8_t *stored; /* by pool id: POOL_*, whether its fd is in the store */
static size_t nstored;
static size_t npool_fds; /* pools' fds in the store */

static const char *const state_names[] = {"state.0", "state.1"};
static uint64_t *gone_ids; /* regions whose memfds leave the store once the state says they are gone */
static size_t ngone, gone_cap;
static size_t nregion_fds; /* region memfds in the store */

/*
 * Whether the store has room for one more pool's or region's fd: two places are kept for the state,
 * whose new memfd is stored before the old one is removed.  Past FileDescriptorStoreMax= systemd
 * drops an fd without a word, and the state that names it could not be restored.
 */
static bool store_room(void) {
        return npool_fds + nregion_fds + 2 < store_max;
}

/* ---- isolation = region: a memfd a region, stored as region-ID (core_set_region_fds) ---- */

static void region_made(void *data, uint64_t id, int fd) {
        char name[32];
        int r;

        (void)data;
        if (!keep)
                return;
        fdstore_region_name(name, sizeof(name), id);
        if ((r = fdstore_put(fd, name)) < 0)
                log_warn("region %" PRIu64 ": cannot store its memfd in systemd's fd store (%s): a restart loses "
                         "every region of its pool",
                         id, strerror(-r));
        nregion_fds++; /* region_gone counts it out whether it was stored or not */
}

static bool region_room(void *data) {
        (void)data;
        return !keep || store_room();
}

/* Removed from the store only after the state that no longer has it is kept: a crash keeps what it names. */
static void region_gone(void *data, uint64_t id) {
        (void)data;
        if (!keep)
                return;
        if (ngone == gone_cap) {
                size_t cap = gone_cap ? 2 * gone_cap : 64;
                uint64_t *n = realloc(gone_ids, cap * sizeof(*n));
                if (!n)
                        return; /* left in the store: the next start removes what no region claims */
                gone_ids = n;
                gone_cap = cap;
        }
        gone_ids[ngone++] = id;
}

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

static const struct region_fds region_fds = {
        .made = region_made, .gone = region_gone, .stored = region_stored, .has = region_has, .room = region_room};

static void unstore_gone(void) {
        char name[32];

        for (size_t i = 0; i < ngone; i++) {
                fdstore_region_name(name, sizeof(name), gone_ids[i]);
                fdstore_remove(name);
        }
        nregion_fds -= ngone < nregion_fds ? ngone : nregion_fds;
        ngone = 0;
}

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
                } else if (!strcmp(f->name, state_names[0]) || !strcmp(f->name, state_names[1])) {
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
        state_name = !strcmp(passed[state_at].name, state_names[1]);
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

/* The name a pool's fd has in the store. */
static void pool_fdname(const struct pool_info *pi, char *name, size_t size) {
        struct stored_pool sp = {.kind = pi->kind,
                                 .vmm = pi->kind == POOL_PINNED && pi->backend && !strcmp(pi->backend, "vmm"),
                                 .size = pi->size_asked,
                                 .quantum = pi->conf->quantum};

        snprintf(sp.name, sizeof(sp.name), "%s", pi->name);
        fdstore_pool_name(name, size, &sp);
}

/* POOL_STORED, or POOL_LEFT_OUT (said). */
static uint8_t store_pool(const struct pool_info *pi) {
        char name[300];
        int r;

        if (!store_room()) {
                logx(LOG_LEVEL_ERR, &(struct log_ctx){.pool = pi->name},
                     "pool %s: systemd's fd store is full (FileDescriptorStoreMax=%u: %zu pools, %zu region memfds, "
                     "the state): its fd is not stored, and a restart loses its regions (only this pool's); raise "
                     "FileDescriptorStoreMax= in allocd.service",
                     pi->name, store_max, npool_fds, nregion_fds);
                return POOL_LEFT_OUT;
        }
        pool_fdname(pi, name, sizeof(name));
        if ((r = fdstore_put(pi->fd, name)) < 0)
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pool = pi->name},
                     "pool %s: cannot store its fd in systemd's fd store (%s): a restart loses its regions", pi->name,
                     strerror(-r));
        npool_fds++;
        return POOL_STORED;
}

static void unstore_pool(const struct pool_info *pi) {
        char name[300];

        pool_fdname(pi, name, sizeof(name));
        fdstore_remove(name);
}

static bool sync_pools_size(struct core *core) {
        size_t n = core_npools(core);

        if (n > nstored) {
                uint8_t *g = realloc(stored, n * sizeof(*g));
                if (!g)
                        return false;
                memset(g + nstored, 0, (n - nstored) * sizeof(*g));
                stored = g;
                nstored = n;
        }
        return true;
}

/*
 * Retires empty draining pools (from the store too) and has the pool that waited for each made; with
 * a store, stores the fd of each pool that has memory and is not in it yet.  Not before restart_begin:
 * a pool restored draining holds no region until the state is read into it.
 */
static void sync_pools_as(struct core *core, const char *emptied) {
        if (!serving || !sync_pools_size(core))
                return;
        for (size_t i = 0; i < core_npools(core); i++) {
                struct pool *p = core_pool_at(core, i);
                struct pool_info pi;
                core_pool_info(p, &pi);
                if (pi.draining && !pi.regions) {
                        char name[POOL_NAME_MAX_LEN + 1]; /* the pool made in its place frees pi's */
                        snprintf(name, sizeof(name), "%s", pi.name);
                        if (keep)
                                unstore_pool(&pi);
                        core_pool_retire(p);
                        npool_fds -= stored[i] == POOL_STORED;
                        stored[i] = POOL_NEW;
                        logx(LOG_LEVEL_INFO, &(struct log_ctx){.pool = name},
                             "pool %s: %s; the draining pool is dropped", name, emptied);
                        /* The pool made in its place keeps its id, and is stored when adopted (restart_pools_added). */
                        deferred_make(name);
                        core_pool_info(core_pool_at(core, i), &pi); /* retired: nothing to store */
                }
                if (keep && pi.available && pi.fd >= 0 && stored[i] == POOL_NEW)
                        stored[i] = store_pool(&pi);
        }
}

static void sync_pools(struct core *core) {
        sync_pools_as(core, "its last region went");
}

void restart_drained(struct core *core) {
        sync_pools_as(core, "it holds no region");
}

void restart_pools_added(struct core *core) {
        sync_pools(core);
}

/*
 * The state can no longer be kept: a stale one left in the store would be restored as if current
 * (freed regions back, with their memory reused), so the next start is fresh, as after stop and start.
 */
static void unstore_state(void) {
        fdstore_remove(state_names[0]);
        fdstore_remove(state_names[1]);
        state_name = -1;
}

/*
 * Stores keep_fd() under the state name not in use, then removes the other: a crash between leaves
 * both, and the start takes the newer.  When systemd cannot take it, the one stored before is stale
 * (a compaction made a new memfd, and the old one is appended to no more): it leaves the store, lest
 * a restart restore freed regions over reused memory, and each loop turn tries again (restart_turn).
 */
static void store_state(void) {
        int next = state_name == 0 ? 1 : 0, r = -ENOSPC;

        /* store_room keeps two places for it: this is never so, but systemd would drop it without a word. */
        if (npool_fds + nregion_fds + (state_name >= 0) < store_max)
                r = fdstore_put(keep_fd(keep), state_names[next]);
        if (r < 0) {
                if (!store_failed)
                        log_err("cannot store the state in systemd's fd store (%s): until it can be, a restart "
                                "loses every region%s",
                                r == -ENOSPC ? "it is full; raise FileDescriptorStoreMax= in allocd.service"
                                             : strerror(-r),
                                state_name >= 0 ? ", since the one stored before is behind and leaves the store" : "");
                store_failed = true;
                unstore_state();
                return;
        }
        if (store_failed)
                log_info("the state is stored in systemd's fd store again: a restart restores it");
        store_failed = false;
        fdstore_remove(state_names[!next]); /* the old one; or a stale one whose removal failed */
        state_name = next;
}

void restart_begin(struct core *core, uint64_t next_serial) {
        size_t want = 2;
        int r;

        serving = true;
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
        for (size_t i = 0; sync_pools_size(core) && i < core_npools(core); i++) {
                struct pool_info pi;
                struct stored_pool sp;
                char name[300];
                core_pool_info(core_pool_at(core, i), &pi);
                bool made = pi.available && pi.fd >= 0;
                want += made;
                pool_fdname(&pi, name, sizeof(name));
                for (size_t j = 0; j < npassed; j++) {
                        if (passed[j].fd >= 0 || !fdstore_pool_parse(passed[j].name, &sp) || strcmp(sp.name, pi.name))
                                continue;
                        if (!made || strcmp(passed[j].name, name)) {
                                fdstore_remove(passed[j].name);
                                passed[j].name[0] = '\0';
                        } else if (stored[i] == POOL_NEW) {
                                stored[i] = POOL_STORED;
                                npool_fds++;
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
        core_set_region_fds(core, &region_fds);
        if (state_at >= 0 && keep_adopt(&keep, core, passed[state_at].fd, &restored, next_serial) == 0) {
                /* The keep appends to the state restored, which the store holds under its name already. */
                passed[state_at].fd = -1;
                fdstore_remove(state_names[state_name == 0 ? 1 : 0]);
        } else if ((r = keep_new(&keep, core, next_serial, state_at >= 0 ? restored.epoch + 1 : 1)) < 0) {
                log_err("cannot keep the state for a restart (%s): a restart loses every region", strerror(-r));
                unstore_state(); /* the one restored goes stale with the first change */
        } else {
                /* A state of that name restored is not the one restored: a crash between two stores left it. */
                fdstore_remove(state_names[state_name == 0 ? 1 : 0]);
                store_state();
        }
        passed_release();
        state_at = -1;
        sync_pools(core);
        if (want > store_max)
                log_warn("FileDescriptorStoreMax=%u is less than the %zu fds allocd stores (its pools' and the "
                         "state's): systemd drops the rest without a word, and a restart loses their regions; raise it",
                         store_max, want);
}

void restart_turn(struct core *core, uint64_t next_serial) {
        char err[512];
        int r;

        sync_pools(core); /* a pool a reload drained goes with its last region, store or none */
        if (!keep)
                return;
        r = keep_turn(keep, next_serial, err, sizeof(err));
        if (r == 1 || (r == 0 && state_name < 0 && !keep_failed))
                store_state(); /* a new memfd; or one systemd could not take yet */
        if (r >= 0)
                unstore_gone();
        else if (!keep_failed)
                log_err("cannot keep the state for a restart any longer: %s; lest a restart restore it as if current, "
                        "it is removed from the fd store, and a restart loses every region until a compaction works",
                        err);
        if (r < 0 && state_name >= 0)
                unstore_state();
        /* A compaction that works is a whole state again. */
        keep_failed = r < 0 || (keep_failed && r != 1);
}

bool restart_stop(struct core *core, uint64_t next_serial) {
        struct core_stats cs;

        core_stats(core, &cs);
        if (keep) {
                /* The last changes, then no more: closing the connections below must not free their regions there. */
                restart_turn(core, next_serial);
                serving = false; /* nor retire a draining pool that holds them */
                keep_free(keep);
                keep = NULL;
                /* A restart and `systemctl stop` (which empties the store) are the same SIGTERM here: say both. */
                if (cs.regions && !keep_failed)
                        log_info("stopping with %" PRIu64 " %s held by %u %s: they are kept in systemd's fd store: "
                                 "a restart (systemctl restart, a crash) restores them; systemctl stop empties the "
                                 "store and they are lost",
                                 cs.regions, plural(cs.regions, "region", "regions"), core_nclients(core),
                                 plural(core_nclients(core), "client", "clients"));
                return !keep_failed;
        }
        serving = false;
        if (cs.regions)
                log_warn("stopping with %" PRIu64 " %s held by %u %s: they are lost, since allocd keeps them "
                         "across a restart only in systemd's fd store (run it as allocd.service, which sets "
                         "FileDescriptorStoreMax= and FDSTORE=; allocd(8), RESTART)",
                         cs.regions, plural(cs.regions, "region", "regions"), core_nclients(core),
                         plural(core_nclients(core), "client", "clients"));
        return false;
}
