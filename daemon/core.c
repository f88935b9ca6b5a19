/* SPDX-License-Identifier: MIT */
/*
 * The core's requests (docs/ARCHITECTURE.md, "How a request travels").
 * Each validates everything it can before it touches state, and reserves
 * before it mutates, so a refused request changes nothing; each answers with
 * a protocol error code and a message that says what to do.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core-impl.h"

int fail(struct core_result *res, int code, const char *fmt, ...) {
        va_list ap;

        res->code = code;
        va_start(ap, fmt);
        vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
        va_end(ap);
        return code;
}

int ok_result(struct core_result *res) {
        res->code = E_OK;
        res->msg[0] = '\0';
        return E_OK;
}

int core_new(struct core **ret, const struct limits *limits) {
        struct core *core = calloc(1, sizeof(*core));

        if (!core)
                return -ENOMEM;
        core->limits = *limits;
        TAILQ_INIT(&core->clients);
        waitq_init(&core->waitq);
        if (names_init(&core->names) < 0 || regions_init(&core->regions) < 0) {
                names_clear(&core->names);
                regions_clear(&core->regions);
                free(core);
                return -ENOMEM;
        }
        *ret = core;
        return 0;
}

void core_seed_ids(struct core *core, uint32_t floor) {
        core->regions.gen_floor = floor;
}

void core_free(struct core *core) {
        struct client *cl;

        if (!core)
                return;
        core_stopping(core);
        while ((cl = TAILQ_FIRST(&core->clients)))
                core_client_remove(core, cl);
        for (size_t i = 0; i < core->nabsent; i++)
                free(core->absent[i]);
        free(core->absent);
        waitq_clear(&core->waitq);
        for (size_t i = 0; i < core->npools; i++)
                pool_destroy(core->pools[i]);
        free(core->pools);
        regions_clear(&core->regions);
        names_clear(&core->names);
        while (core->users) {
                struct user *u = core->users;
                core->users = u->next;
                free(u);
        }
        free(core);
}

void core_set_limits(struct core *core, const struct limits *limits) {
        core->limits = *limits;
}

const struct limits *core_limits(const struct core *core) {
        return &core->limits;
}

void core_set_now(struct core *core, uint64_t now_ms) {
        core->now = now_ms;
}

uint64_t core_now(const struct core *core) {
        return core->now;
}

/* ---- per-uid counts: one entry per uid that has a connection, a name, a PERSIST region or a region memfd ---- */

struct user *user_find(const struct core *core, uid_t uid) {
        for (struct user *u = core->users; u; u = u->next)
                if (u->uid == uid)
                        return u;
        return NULL;
}

struct user *user_get(struct core *core, uid_t uid) {
        struct user *u = user_find(core, uid);

        if (u || !(u = calloc(1, sizeof(*u))))
                return u;
        u->uid = uid;
        u->next = core->users;
        core->users = u;
        return u;
}

void user_put(struct core *core, struct user *u) {
        if (u->conns || u->names || u->persist || u->fds || u->leaving)
                return;
        for (struct user **pp = &core->users; *pp; pp = &(*pp)->next) {
                if (*pp == u) {
                        *pp = u->next;
                        free(u);
                        return;
                }
        }
}

void user_count(struct core *core, uid_t uid, int names, int persist, int fds) {
        /* The uid has a record: a connection made the region, and counts keep it until they are 0. */
        struct user *u = user_find(core, uid);

        u->names = (uint32_t)((int64_t)u->names + names);
        u->persist = (uint32_t)((int64_t)u->persist + persist);
        u->fds = (uint32_t)((int64_t)u->fds + fds);
        user_put(core, u);
}

/* ---- clients ---- */

int core_client_add(struct core *core, struct client *cl, struct core_result *res) {
        struct user *u;
        char why[80] = ""; /* Status lists no connection that said Goodbye (core_client_bye): how many count */

        /* Placeholders of a restored state are no connections: their clients must get in to reclaim them. */
        if (core->nclients - core->nabsent + core->nleaving >= core->limits.max_connections) {
                if (core->nleaving)
                        snprintf(why, sizeof(why), " (%u of them said Goodbye and leave replies unread)",
                                 core->nleaving);
                return fail(res, E_LIMIT,
                            "allocd has max_connections = %u clients already%s; close some or raise max_connections",
                            core->limits.max_connections, why);
        }
        if (!(u = user_get(core, cl->uid)))
                return fail(res, E_INTERNAL, "out of memory");
        if (u->conns + u->leaving >= core->limits.max_connections_per_uid &&
            u->conns + u->leaving - absent_of_uid(core, cl->uid) >= core->limits.max_connections_per_uid) {
                if (u->leaving)
                        snprintf(why, sizeof(why), " (%u of them said Goodbye and leave replies unread)", u->leaving);
                user_put(core, u);
                return fail(res, E_LIMIT,
                            "uid %u has max_connections_per_uid = %u connections already%s; close some or raise "
                            "max_connections_per_uid",
                            (unsigned)cl->uid, core->limits.max_connections_per_uid, why);
        }
        /*
         * Past the uid's share it may only reclaim (core_client_admit refuses its plain Hello), so it
         * is left out of the count another uid's Hello meets: else a user's silent processes held
         * their share twice over across a restart, their placeholders and as many connections that
         * never say Hello, and crowded everyone else out of max_connections.
         */
        cl->past = u->conns + u->leaving >= core->limits.max_connections_per_uid;
        core->npast += cl->past;
        client_enter(core, cl, u);
        kept_client(core, cl);
        return ok_result(res);
}

void client_unpast(struct core *core, struct client *cl) {
        if (cl->past) {
                cl->past = false;
                core->npast--;
        }
}

int core_client_admit(struct core *core, struct client *cl, struct core_result *res) {
        uint32_t mine = absent_of_uid(core, cl->uid);

        if (cl->user->conns + cl->user->leaving > core->limits.max_connections_per_uid && mine)
                return fail(res, E_LIMIT,
                            "uid %u has max_connections_per_uid = %u connections already, %u of them restored by a "
                            "restart and not reclaimed (allocctl clients lists them); their processes reclaim them "
                            "at their next call, or free them by ending (or allocctl disconnect serial:N)",
                            (unsigned)cl->uid, core->limits.max_connections_per_uid, mine);
        /* Its own uid's placeholders went since it was let in past the share: it is one of the share now. */
        if (core->nclients - core->npast + cl->past + core->nleaving > core->limits.max_connections && core->nabsent)
                return fail(res, E_LIMIT,
                            "allocd has max_connections = %u clients already, %zu of them restored by a restart "
                            "and not reclaimed (allocctl clients lists them); close some or raise max_connections",
                            core->limits.max_connections, core->nabsent);
        client_unpast(core, cl);
        return ok_result(res);
}

void client_enter(struct core *core, struct client *cl, struct user *u) {
        u->conns++;
        cl->user = u;
        cl->holds = HOLD_NONE;
        cl->nrefs = cl->npending = cl->nwaiters = 0;
        cl->bytes = 0;
        cl->evicted = false;
        TAILQ_INIT(&cl->waiters);
        TAILQ_INSERT_TAIL(&core->clients, cl, link);
        core->nclients++;
}

void core_client_remove(struct core *core, struct client *cl) {
        waitq_drop_client(core, cl);
        if (core->abandoned) {
                /* Its holds stay in the table, which core_free frees whole; no one reads them again. */
                cl->holds = HOLD_NONE;
                cl->nrefs = 0;
                cl->bytes = 0;
        } else {
                region_release_client(core, cl);
                kept_client_gone(core, cl->serial);
        }
        client_leave(core, cl);
}

void core_client_bye(struct core *core, struct client *cl) {
        cl->user->leaving++;
        core->nleaving++;
        core_client_remove(core, cl);
}

void core_client_gone(struct core *core, uid_t uid) {
        struct user *u = user_find(core, uid);

        if (!u || !u->leaving)
                return;
        u->leaving--;
        core->nleaving--;
        user_put(core, u);
}

void core_abandon(struct core *core) {
        core->abandoned = true;
}

void core_stopping(struct core *core) {
        core->closing = true;
}

void client_leave(struct core *core, struct client *cl) {
        TAILQ_REMOVE(&core->clients, cl, link);
        client_unpast(core, cl);
        core->nclients--;
        cl->user->conns--;
        user_put(core, cl->user);
        cl->user = NULL;
}

void core_client_set_name(struct core *core, struct client *cl, const char *name) {
        snprintf(cl->name, sizeof(cl->name), "%s", name);
        kept_client(core, cl);
}

void core_client_update(struct core *core, const struct client *cl) {
        kept_client(core, cl);
}

const struct client_list *core_clients(const struct core *core) {
        return &core->clients;
}

uint32_t core_nclients(const struct core *core) {
        return core->nclients;
}

/*
 * A placeholder (a connection of the allocd before a restart, not reclaimed yet) matches its serial
 * only: its pid was that of a process which may have exited, and the pid be another's now.
 */
static bool evict_target(const struct client *cl, const struct client *by, uint64_t serial, pid_t pid) {
        return cl != by && !cl->evicted && (serial ? cl->serial == serial : cl->pid == pid && !cl->absent);
}

static int not_yours(const struct client *cl, struct core_result *res) {
        return fail(res, E_DENIED,
                    "connection %" PRIu64 " (pid %d) belongs to uid %u; only root may disconnect another user's "
                    "clients",
                    cl->serial, (int)cl->pid, (unsigned)cl->uid);
}

int core_client_evict(struct core *core, const struct client *by, uint64_t serial, pid_t pid, uint32_t *count,
                      uint64_t *refs, struct core_result *res) {
        struct client *cl, *next, *denied = NULL;

        *count = 0;
        *refs = 0;
        if ((serial == 0) == (pid <= 0))
                return fail(res, E_INVALID, "Disconnect takes either a pid (above 0) or a connection serial");
        /*
         * All or none: every target is checked before the first is marked.  By pid, a user's targets are
         * its own connections of the process: another user's there came by a socket passed on (or a pid
         * taken since it connected), and would otherwise let that user keep this one from closing its own.
         */
        TAILQ_FOREACH(cl, &core->clients, link) {
                if (!evict_target(cl, by, serial, pid))
                        continue;
                if (by->uid != 0 && by->uid != cl->uid) {
                        if (serial)
                                return not_yours(cl, res);
                        denied = cl;
                        continue;
                }
                (*count)++;
        }
        if (*count == 0 && denied)
                return not_yours(denied, res);
        if (*count == 0) {
                if (serial)
                        return fail(res, E_NOT_FOUND, "no other connection has serial %" PRIu64, serial);
                /* Status lists a placeholder under its pid: an operator who asks by it is told how to name it. */
                TAILQ_FOREACH(cl, &core->clients, link)
                if (cl != by && !cl->evicted && cl->pid == pid && cl->absent && (by->uid == 0 || by->uid == cl->uid))
                        return fail(res, E_NOT_FOUND,
                                    "no other connection is from pid %d; connection %" PRIu64
                                    ", kept across a restart and not reclaimed yet, is named by its serial "
                                    "alone (the pid may be another process's now): allocctl disconnect "
                                    "serial:%" PRIu64,
                                    (int)pid, cl->serial, cl->serial);
                return fail(res, E_NOT_FOUND, "no other connection is from pid %d", (int)pid);
        }
        for (cl = TAILQ_FIRST(&core->clients); cl; cl = next) {
                next = TAILQ_NEXT(cl, link);
                if (!evict_target(cl, by, serial, pid) || (by->uid != 0 && by->uid != cl->uid))
                        continue;
                *refs += cl->nrefs;
                /* No connection to close: its references go now, as when its grace time passes. */
                if (!absent_release(core, cl))
                        cl->evicted = true;
        }
        core->evicting = true;
        return ok_result(res);
}

bool core_evictions(struct core *core) {
        bool r = core->evicting;

        core->evicting = false;
        return r;
}

/* ---- allocation ---- */

/* Why the range allocator refuses a request, in words. */
int explain(int r, const struct pool *p, const struct alloc_args *a, struct core_result *res) {
        switch (r) {
        case -ENOSPC:
                return fail(res, E_NEVER_FITS,
                            "%" PRIu64 " bytes with these constraints cannot fit in pool %s even when it is "
                            "empty (%" PRIu64 " bytes); ask for less or relax align/boundary/low/high",
                            a->size, p->conf.name, p->total);
        case -EOVERFLOW:
                return fail(res, E_OVERFLOW, "size %" PRIu64 " rounded up to the quantum passes 2^64", a->size);
        case -ERANGE:
                return fail(res, E_INVALID, "low %#" PRIx64 " must be below high %#" PRIx64 " (high 0 means no limit)",
                            a->req.low, a->req.high);
        case -EMSGSIZE:
                return fail(res, E_INVALID,
                            "a region of %" PRIu64 " bytes cannot avoid crossing a multiple of boundary %#" PRIx64
                            " with phase %#" PRIx64 "; use a boundary of at least the size",
                            a->size, a->req.boundary, a->req.phase);
        case -EDOM:
                return fail(res, E_INVALID,
                            "align (%#" PRIx64 ") and boundary (%#" PRIx64 ") must be 0 or powers of two, and "
                            "phase (%#" PRIx64 ") a multiple of the pool's quantum (%#" PRIx64 ") below align",
                            a->req.align, a->req.boundary, a->req.phase, p->conf.quantum);
        default:
                return fail(res, E_INVALID, "invalid request: %s", strerror(-r));
        }
}

/* Everything but room that can change while a request waits is checked here, at every try. */
int alloc_check(const struct core *core, const struct client *cl, const struct alloc_args *a, struct core_result *res) {
        const struct limits *l = &core->limits;
        const struct pool *p = a->pool;
        int r;

        if ((r = alloc_allowed(core, cl, a, res)) != E_OK)
                return r;
        if (*a->name) {
                if (names_find(&core->names, a->name) >= 0)
                        return fail(res, E_EXISTS, "the name '%s' is already published; pick another or attach to it",
                                    a->name);
                if (core->names.count >= l->max_names)
                        return fail(res, E_LIMIT,
                                    "allocd holds max_names = %u names; free named regions or raise max_names",
                                    l->max_names);
                if (cl->user->names >= l->max_names_per_uid)
                        return fail(res, E_LIMIT,
                                    "uid %u has published max_names_per_uid = %u names; free named regions or raise "
                                    "max_names_per_uid",
                                    (unsigned)cl->uid, l->max_names_per_uid);
        }
        if ((a->flags & F_PERSIST) && cl->user->persist >= l->max_persist_per_uid)
                return fail(res, E_LIMIT,
                            "uid %u holds max_persist_per_uid = %u PERSIST regions; free some or raise "
                            "max_persist_per_uid",
                            (unsigned)cl->uid, l->max_persist_per_uid);
        if (cl->nrefs + cl->npending >= l->max_regions_per_connection)
                return fail(res, E_LIMIT,
                            "this connection holds max_regions_per_connection = %u regions; free some or raise the "
                            "limit",
                            l->max_regions_per_connection);
        /* Each such region holds a file descriptor in allocd: one uid must not take them all. */
        if (p->conf.isolation == ISOLATION_REGION && cl->user->fds >= l->max_region_fds_per_uid)
                return fail(res, E_LIMIT,
                            "uid %u has max_region_fds_per_uid = %u regions in isolation = region pools (each a memfd "
                            "in allocd); free some or raise max_region_fds_per_uid",
                            (unsigned)cl->uid, l->max_region_fds_per_uid);
        /* The quota counts what a region takes, its size rounded up to the pool's quantum. */
        uint64_t q = p->conf.quantum, taken = a->size > UINT64_MAX - (q - 1) ? UINT64_MAX : (a->size + q - 1) / q * q;
        if (p->conf.quota_per_uid &&
            (taken > p->conf.quota_per_uid || pool_usage(p, cl->uid) > p->conf.quota_per_uid - taken))
                return fail(res, E_QUOTA,
                            "uid %u holds %" PRIu64 " of its %" PRIu64 "-byte quota in pool %s and asks %" PRIu64
                            " more (%" PRIu64 " as the pool's quantum rounds it); free regions or raise quota_per_uid",
                            (unsigned)cl->uid, pool_usage(p, cl->uid), p->conf.quota_per_uid, p->conf.name, a->size,
                            taken);
        return E_OK;
}

int alloc_try(struct core *core, struct client *cl, const struct alloc_args *a, bool quiet, uint32_t *slot,
              struct core_result *res) {
        struct pool *p = a->pool;
        uint64_t off, size;
        int r, fd = -1;

        if ((r = alloc_check(core, cl, a, res)) != E_OK)
                return r;
        r = range_alloc(p->arena, a->size, &a->req, &off);
        if (r == -ENOSPC) {
                struct range_stats st;
                if (quiet)
                        return res->code = E_WOULD_BLOCK;
                range_stats(p->arena, &st);
                return fail(res, E_WOULD_BLOCK,
                            "pool %s has no room now for %" PRIu64 " bytes with these constraints (%" PRIu64
                            " free, largest free piece %" PRIu64 ")",
                            p->conf.name, a->size, st.free, st.largest_free);
        }
        if (r < 0)
                return explain(r, p, a, res);
        if ((r = range_query(p->arena, off, &size)) < 0) {
                range_free(p->arena, off, 0);
                return fail(res, E_INTERNAL, "recording the region: %s", strerror(-r));
        }
        if (p->conf.isolation == ISOLATION_REGION && core->region_fds.room &&
            !core->region_fds.room(core->region_fds.data)) {
                range_free(p->arena, off, 0);
                return fail(res, E_LIMIT,
                            "pool %s gives each region a memfd of its own (isolation = region), which allocd keeps "
                            "in systemd's fd store for a restart, and the store is full (FileDescriptorStoreMax=); "
                            "free regions of such pools, or raise FileDescriptorStoreMax= in allocd.service",
                            p->conf.name);
        }
        if (p->conf.isolation == ISOLATION_REGION && (r = pool_region_new(p, size, &fd)) < 0) {
                range_free(p->arena, off, 0);
                if (r == -EMFILE || r == -ENFILE)
                        return fail(res, E_LIMIT,
                                    "allocd has no file descriptor left for another region of pool %s (isolation = "
                                    "region takes one a region); raise LimitNOFILE= in allocd.service",
                                    p->conf.name);
                return fail(res, E_INTERNAL, "making the region's memfd: %s", strerror(-r));
        }
        if ((r = region_new(core, p, cl, off, size, a->flags, fd, &a->fmt, slot)) < 0) {
                range_free(p->arena, off, 0);
                if (fd >= 0)
                        close(fd);
                return fail(res, E_INTERNAL, "recording the region: %s", strerror(-r));
        }
        if (*a->name && (r = region_publish(core, *slot, a->name)) < 0) {
                region_discard(core, *slot);
                return fail(res, E_INTERNAL, "publishing the name: %s", strerror(-r));
        }
        return ok_result(res);
}

/* Work a job may not do on the loop thread: more than ZERO_INLINE_MAX bytes, or a wait for a device. */
static bool job_blocks(const struct zero_job *job) {
        return (job->fd >= 0 && job->size > ZERO_INLINE_MAX) ||
               (job->zero && (job->size > ZERO_INLINE_MAX || job->pool->ops->zero_blocks)) ||
               (job->fmt.format != FMT_RAW && format_bytes(&job->fmt) > ZERO_INLINE_MAX);
}

bool alloc_defers(const struct core *core, uint32_t slot) {
        struct zero_job job;

        core_zero_job(core, slot, &job);
        return job_blocks(&job);
}

int alloc_finish(struct core *core, struct client *cl, uint32_t slot, struct core_result *res) {
        struct zero_job job;
        int e;

        core_zero_job(core, slot, &job);
        if (job_blocks(&job)) {
                cl->npending++;
                return GRANT_ZEROING;
        }
        if ((e = core_zero_run(&job)) < 0) {
                prep_failed(res, &job, e);
                region_discard(core, slot);
                return GRANT_NONE;
        }
        if (region_hand_out(core, slot, cl) < 0) {
                region_discard(core, slot);
                fail(res, E_INTERNAL, "out of memory recording the region's holder");
                return GRANT_NONE;
        }
        return GRANT_REGION;
}

void core_stats(const struct core *core, struct core_stats *st) {
        const struct regions *rt = &core->regions;
        const struct holds *h = &rt->holds;

        *st = (struct core_stats){
                .regions = rt->slots.used,
                .names = core->names.count,
                .formats = rt->formats.count,
                .holds = h->slots.used,
                .waiters = core->waitq.nwaiters,
                .tries = core->waitq.tries,
                .skips = core->waitq.skips,
                .slices = core->waitq.slices,
                .table_bytes = (size_t)rt->slots.cap * sizeof(*rt->tab) + (size_t)h->slots.cap * sizeof(*h->tab) +
                               (size_t)h->hash_cap * sizeof(*h->hash) +
                               (size_t)core->names.ids.cap * sizeof(*core->names.tab) +
                               (size_t)(rt->slots.cap + h->slots.cap + core->names.ids.cap) / 8,
        };
        for (size_t i = 0; i < core->npools; i++) {
                struct range_stats rs;
                range_stats(core->pools[i]->arena, &rs);
                st->used += rs.in_use;
                st->total += rs.total;
                st->usage += core->pools[i]->nusage;
        }
}
