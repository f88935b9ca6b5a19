/* SPDX-License-Identifier: MIT */
/*
 * What allocd keeps in systemd's fd store while it serves (docs/ARCHITECTURE.md, "Across a restart"),
 * counted against FileDescriptorStoreMax=; restart.c takes it back at start and hands over at
 * restart_begin (store_serve, store_keep).
 *
 * What systemd keeps for allocd in its fd store, by name (fdstore.h):
 *   pool.KIND.SIZE.NAME   each pool's memory (a memfd, or a CUDA VMM export), stored when made
 *                         (SIZEqQUANTUM where the quantum is not the page size)
 *   state.0, state.1      the state (keep.h): a new memfd goes under the name the old one does
 *                         not use, then the old name is removed, so a crash between the two leaves
 *                         both and the start takes the newer (keep_epoch_fd); a start that restored
 *                         one goes on appending to it where it can (keep_adopt), stored as it is
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fdstore.h"
#include "keep.h"
#include "log.h"
#include "restart-deferred.h"
#include "restart-store.h"
#include "restart.h"
#include "server.h"

const char *const store_state_names[2] = {"state.0", "state.1"};

static bool serving;        /* restart_begin ran: every pool and region restored is in the core */
static unsigned store_max;  /* FileDescriptorStoreMax= */
static struct keep *keep;   /* keeping the state, once serving */
static int state_name = -1; /* which of state.0/state.1 holds keep_fd() in the store; -1: none */
static bool keep_failed;    /* keep_turn failed: said once */
static bool store_failed;   /* systemd could not take keep_fd(): said once */
enum { POOL_NEW, POOL_STORED, POOL_LEFT_OUT };
static uint8_t *stored; /* by pool id: POOL_*, whether its fd is in the store */
static size_t nstored;
static size_t npool_fds; /* pools' fds in the store */

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

void store_region_fds(struct region_fds *rf) {
        rf->made = region_made;
        rf->gone = region_gone;
        rf->room = region_room;
}

static void unstore_gone(void) {
        char name[32];

        for (size_t i = 0; i < ngone; i++) {
                fdstore_region_name(name, sizeof(name), gone_ids[i]);
                fdstore_remove(name);
        }
        nregion_fds -= ngone < nregion_fds ? ngone : nregion_fds;
        ngone = 0;
}

/* The name a pool's fd has in the store. */
void store_pool_name(const struct pool_info *pi, char *name, size_t size) {
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
        store_pool_name(pi, name, sizeof(name));
        if ((r = fdstore_put(pi->fd, name)) < 0)
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pool = pi->name},
                     "pool %s: cannot store its fd in systemd's fd store (%s): a restart loses its regions", pi->name,
                     strerror(-r));
        npool_fds++;
        return POOL_STORED;
}

static void unstore_pool(const struct pool_info *pi) {
        char name[300];

        store_pool_name(pi, name, sizeof(name));
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
        fdstore_remove(store_state_names[0]);
        fdstore_remove(store_state_names[1]);
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
                r = fdstore_put(keep_fd(keep), store_state_names[next]);
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
        fdstore_remove(store_state_names[!next]); /* the old one; or a stale one whose removal failed */
        state_name = next;
}

bool store_serve(struct core *core, unsigned max) {
        serving = true;
        store_max = max;
        return sync_pools_size(core);
}

void store_pool_kept(size_t id) {
        if (stored[id] == POOL_NEW) {
                stored[id] = POOL_STORED;
                npool_fds++;
        }
}

bool store_keep(struct core *core, uint64_t next_serial, int state_fd, const struct state_info *restored,
                int state_at_name, size_t region_fds) {
        bool adopted = false;
        int r;

        state_name = state_at_name;
        nregion_fds = region_fds;
        if (restored && keep_adopt(&keep, core, state_fd, restored, next_serial) == 0) {
                /* The keep appends to the state restored, which the store holds under its name already. */
                adopted = true;
                fdstore_remove(store_state_names[state_name == 0 ? 1 : 0]);
        } else if ((r = keep_new(&keep, core, next_serial, restored ? restored->epoch + 1 : 1)) < 0) {
                log_err("cannot keep the state for a restart (%s): a restart loses every region", strerror(-r));
                unstore_state(); /* the one restored goes stale with the first change */
        } else {
                /* A state of that name restored is not the one restored: a crash between two stores left it. */
                fdstore_remove(store_state_names[state_name == 0 ? 1 : 0]);
                store_state();
        }
        sync_pools(core);
        return adopted;
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
        uint64_t regions;

        core_stats(core, &cs);
        /* A region still being zeroed is no one's yet, and is not in the state: its Alloc is answered CANCELLED. */
        regions = cs.regions - (server_jobs() < cs.regions ? server_jobs() : cs.regions);
        if (keep) {
                /* The last changes, then no more: closing the connections below must not free their regions there. */
                restart_turn(core, next_serial);
                serving = false; /* nor retire a draining pool that holds them */
                keep_free(keep);
                keep = NULL;
                /* A restart and `systemctl stop` (which empties the store) are the same SIGTERM here: say both. */
                if (regions && !keep_failed)
                        log_info("stopping with %" PRIu64 " %s held by %u %s: they are kept in systemd's fd store: "
                                 "a restart (systemctl restart, a crash) restores them; systemctl stop empties the "
                                 "store and they are lost",
                                 regions, plural(regions, "region", "regions"), core_nclients(core),
                                 plural(core_nclients(core), "client", "clients"));
                return !keep_failed;
        }
        serving = false;
        if (regions)
                log_warn("stopping with %" PRIu64 " %s held by %u %s: they are lost, since allocd keeps them "
                         "across a restart only in systemd's fd store (run it as allocd.service, which sets "
                         "FileDescriptorStoreMax= and FDSTORE=; allocd(8), RESTART)",
                         regions, plural(regions, "region", "regions"), core_nclients(core),
                         plural(core_nclients(core), "client", "clients"));
        return false;
}
