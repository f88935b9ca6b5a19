/* SPDX-License-Identifier: MIT */
/*
 * SIGHUP (docs/configuration.md, "Reload"): the file is read again; limits, the log level and
 * running pools' access rules and quotas apply at once; a running pool taken out of the file drains
 * (no new regions; it goes with its last one), and serves again if put back; new pools are made on
 * the thread pool, one at a time, and adopted by the core on the loop thread (and so is the pool
 * that waited for a draining namesake, restart-deferred.c); the rest waits for a restart.  A file
 * that does not load (one with no pools included) changes nothing.  What a reload did goes to
 * the journal and, in short, to STATUS= (reload-report.c).  The limits every configuration is
 * applied with, start-up's included, are limits-apply.c's.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "cuda-loader.h"
#include "limits-apply.h"
#include "log.h"
#include "reload-report.h"
#include "reload.h"
#include "restart.h"

static uv_loop_t *loop;
static struct core *core;
static const char *config_path;
static bool config_optional; /* serving the built-in pools until config_path exists */
static int cli_log_level = -1;
static void (*changed)(void);

/*
 * A pool added by SIGHUP is made on the thread pool (fallocate, mlock and cuMemCreate can take
 * seconds) and adopted by the core back on the loop thread, so clients are served meanwhile.
 */
struct pool_work {
        uv_work_t work;
        struct pool_conf conf;
        struct pool *pool;
        int r;
        char err[512];
        bool deferred; /* restart-deferred.c's: made in place of its drained namesake, not by a reload */
        STAILQ_ENTRY(pool_work) link;
};

/*
 * One pool is made at a time: libuv's thread pool (4 threads) is shared with zeroing, and a reload
 * that adds four large locked pools must not hold up every ZERO region for seconds.
 */
static STAILQ_HEAD(, pool_work) queue = STAILQ_HEAD_INITIALIZER(queue);
static unsigned pools_in_flight; /* queued or being made */
static bool reload_again, stopping;
static bool reload_making; /* the last reload's pools are still being made: said once they are */

/* Why a pool whose section a reload took out takes no Alloc (Status, and the error an Alloc gets). */
#define RELOAD_DRAIN_WHY "taken out of the configuration at a reload; it goes with its last region"

/* How many of the last reload's pools are queued or being made (not a deferred one); their names in buf (or NULL). */
static unsigned pending_names(char *buf, size_t size) {
        struct pool_work *pw;
        unsigned n = 0;

        STAILQ_FOREACH(pw, &queue, link) {
                if (pw->deferred)
                        continue;
                if (buf)
                        reload_list_add(buf, size, pw->conf.name);
                n++;
        }
        return n;
}

/* The outcome in words (report_describe), the pools still being made as pending. */
static void describe(char *buf, size_t size, bool full) {
        char pending[96] = "";
        unsigned npending = pending_names(pending, sizeof(pending));

        report_describe(buf, size, full, npending, pending);
}

/* Refreshes STATUS='s part and tells main.c. */
static void update(void) {
        char what[256];

        describe(what, sizeof(what), false);
        report_summarize(what);
        changed();
}

static void refuse(const char *why) {
        report_begin(why);
        log_err("SIGHUP: %s; keeping the running configuration", why);
        update();
}

static bool same_ranges(const struct pool_conf *a, const struct pool_conf *b) {
        /* memcmp must not see NULL, even for nothing (pools other than fpga have no ranges). */
        return a->nranges == b->nranges &&
               (a->nranges == 0 || !memcmp(a->ranges, b->ranges, a->nranges * sizeof(*a->ranges)));
}

static bool configured(const struct config *conf, const char *name) {
        for (size_t j = 0; j < conf->npools; j++)
                if (!strcmp(name, conf->pools[j].name))
                        return true;
        return false;
}

/* The keys of n that differ from running p's and that only a new pool can take, in keys; whether there are any. */
static bool restart_keys(const struct pool *p, const struct pool_conf *n, char *keys, size_t size) {
        struct pool_info info;
        const struct pool_conf *o;

        core_pool_info(p, &info);
        o = info.conf;
        /* A quantum left out is the kind's default, which the running one was given when made. */
        uint64_t quantum = pool_conf_quantum(n);
        /* What a running pool keeps until a restart (backend = auto became a backend when the pool was made). */
        const struct {
                bool changed;
                const char *key;
        } restart_only[] = {
                {o->kind != n->kind, "kind"},       {info.size_asked != n->size, "size"},
                {o->quantum != quantum, "quantum"}, {o->hugepage != n->hugepage, "hugepages"},
                {o->lock != n->lock, "lock"},       {o->numa_node != n->numa_node, "numa_node"},
                {!same_ranges(o, n), "ranges"},     {n->backend != BACKEND_AUTO && o->backend != n->backend, "backend"},
                {o->device != n->device, "device"}, {o->isolation != n->isolation, "isolation"},
        };
        keys[0] = '\0';
        for (size_t i = 0; i < sizeof(restart_only) / sizeof(restart_only[0]); i++)
                if (restart_only[i].changed)
                        reload_list_add(keys, size, restart_only[i].key);
        return *keys != '\0';
}

/* SIGHUP for a pool that is running: access rules and quota apply, the rest waits for a restart. */
static void reload_pool(struct pool *p, const struct pool_conf *n) {
        const struct pool_conf *o;
        struct pool_info info;
        char keys[128];

        core_pool_info(p, &info);
        o = info.conf;
        if (restart_keys(p, n, keys, sizeof(keys))) {
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pool = o->name},
                     "SIGHUP: pool %s: the file changes %s (keys that change only on restart); keeping the running "
                     "values until allocd restarts",
                     o->name, keys);
                report_pool(SAID_RESTART_ONLY, NULL, NULL);
        }
        if (o->owner != n->owner || o->group != n->group || o->mode != n->mode ||
            o->quota_per_uid != n->quota_per_uid || o->register_flags != n->register_flags ||
            strcmp(o->names, n->names))
                report_pool(SAID_RULES, NULL, NULL);
        core_pool_update(p, n);
}

static void make_pool_work(uv_work_t *w) {
        struct pool_work *pw = w->data;

        pw->r = core_pool_make(&pw->conf, &pw->pool, pw->err, sizeof(pw->err));
}

static void make_pool_done(uv_work_t *w, int status);

/* A deferred pool made, or left out as core_pool_add leaves one (an unavailable placeholder, if it came that far). */
static void deferred_done(struct pool_work *pw) {
        int r = pw->pool ? core_pool_adopt(core, pw->pool, pw->err, sizeof(pw->err)) : pw->r;

        if (r < 0)
                core_pool_discard(pw->pool);
        if (r < 0 || pw->r < 0)
                log_err("%s; pool %s is left out (allocctl status says why), SIGHUP tries again", pw->err,
                        pw->conf.name);
        else
                logx(LOG_LEVEL_INFO, &(struct log_ctx){.pool = pw->conf.name}, "pool %s: made as configured",
                     pw->conf.name);
}

/* Starts the next queued pool if none is being made. */
static void next_pool(void) {
        struct pool_work *pw;

        while (!stopping && (pw = STAILQ_FIRST(&queue)) && !pw->work.data) {
                pw->work.data = pw;
                if (uv_queue_work(loop, &pw->work, make_pool_work, make_pool_done) == 0)
                        return;
                if (pw->deferred) {
                        pw->r = -EAGAIN;
                        snprintf(pw->err, sizeof(pw->err), "pool %s: no worker thread", pw->conf.name);
                        deferred_done(pw);
                } else {
                        log_err("SIGHUP: cannot add pool %s: no worker thread", pw->conf.name);
                        report_pool(SAID_FAILED, pw->conf.name, "no worker thread");
                }
                STAILQ_REMOVE_HEAD(&queue, link);
                free(pw->conf.ranges);
                free(pw);
                pools_in_flight--;
        }
}

static void make_pool_done(uv_work_t *w, int status) {
        struct pool_work *pw = w->data;
        const char *name = pw->conf.name;
        struct pool_info info;
        char what[1536];

        STAILQ_REMOVE_HEAD(&queue, link);
        if (status < 0 || stopping) {
                core_pool_discard(pw->pool);
        } else if (pw->deferred) {
                deferred_done(pw);
        } else if (!pw->pool || core_pool_adopt(core, pw->pool, pw->err, sizeof(pw->err)) < 0) {
                log_err("SIGHUP: %s:%d: cannot add pool %s: %s", config_path, pw->conf.line, name, pw->err);
                report_pool(SAID_FAILED, name, pw->err);
                core_pool_discard(pw->pool);
        } else if (pw->r < 0) {
                /* Adopted as a placeholder: listed as not available, with the reason; the next reload tries
                 * again. */
                core_pool_info(core_pool_find(core, name), &info);
                logx(pw->r == -ENODEV ? LOG_LEVEL_WARNING : LOG_LEVEL_ERR, &(struct log_ctx){.pool = name},
                     "SIGHUP: %s:%d: pool %s is not available: %s; the next reload tries again", config_path,
                     pw->conf.line, name, info.reason); /* err without its "pool NAME: " */
                report_pool(SAID_FAILED, name, info.reason);
        } else {
                logx(LOG_LEVEL_INFO, &(struct log_ctx){.pool = name}, "SIGHUP: added pool %s", name);
                report_pool(SAID_ADDED, name, NULL);
        }
        free(pw->conf.ranges);
        free(pw);
        pools_in_flight--;
        next_pool();
        if (stopping)
                return;
        restart_pools_added(core);
        if (*report_when())
                update();
        else
                changed(); /* no reload yet: a deferred pool, for STATUS= */
        if (reload_making && !pending_names(NULL, 0)) {
                reload_making = false;
                describe(what, sizeof(what), true);
                log_info("SIGHUP: reload of %s at %s done: %s", config_path, report_when(), what);
        }
        if (pools_in_flight == 0 && reload_again) {
                reload_again = false;
                reload_run();
        }
}

static void make_pool(const struct pool_conf *n, bool deferred) {
        struct pool_work *pw = calloc(1, sizeof(*pw));

        if (!pw || (n->nranges && !(pw->conf.ranges = malloc(n->nranges * sizeof(*n->ranges))))) {
                if (deferred) {
                        log_err("pool %s: out of memory; it is left out, SIGHUP tries again", n->name);
                } else {
                        log_err("SIGHUP: cannot add pool %s: out of memory", n->name);
                        report_pool(SAID_FAILED, n->name, "out of memory");
                }
                free(pw);
                return;
        }
        struct span *ranges = pw->conf.ranges;
        pw->conf = *n;
        pw->conf.ranges = ranges;
        pw->deferred = deferred;
        if (n->nranges)
                memcpy(ranges, n->ranges, n->nranges * sizeof(*n->ranges));
        STAILQ_INSERT_TAIL(&queue, pw, link);
        pools_in_flight++;
        next_pool();
}

/*
 * A running pool whose section went drains: the regions clients hold live on, and it goes with the
 * last (restart-store.c retires it, from the fd store too; an empty one at once, restart_drained).
 */
static void take_out(struct pool *pool, const struct pool_info *p) {
        if (p->regions) {
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pool = p->name},
                     "SIGHUP: pool %s is no longer configured: it takes no new regions, and goes with the last of "
                     "the %llu it holds",
                     p->name, (unsigned long long)p->regions);
                report_pool(SAID_DRAINING, p->name, NULL);
        } else {
                logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pool = p->name},
                     "SIGHUP: pool %s is no longer configured and holds no region: it goes", p->name);
                report_pool(SAID_REMOVED, p->name, NULL);
        }
        core_pool_drain(core, pool, RELOAD_DRAIN_WHY, true);
}

/*
 * The section of a pool a reload drained is back: the same pool (nothing changed that only a new
 * pool could take) serves again, its new access rules and quota applied below as any running
 * pool's; another one is made once the draining pool's last region goes (restart_reconfigured), as
 * after a restart, so that no region loses a byte.
 */
static void put_back(const struct config *conf) {
        char keys[128], why[256];

        for (size_t i = 0; i < conf->npools; i++) {
                const struct pool_conf *n = &conf->pools[i];
                struct pool *p = core_pool_find(core, n->name);
                struct pool_info info;
                if (!p || (core_pool_info(p, &info), !info.reload_drained))
                        continue;
                if (!restart_keys(p, n, keys, sizeof(keys))) {
                        core_pool_undrain(p);
                        logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pool = n->name},
                             "SIGHUP: pool %s is configured again: it takes new regions again", n->name);
                        report_pool(SAID_BACK, n->name, NULL);
                        continue;
                }
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pool = n->name},
                     "SIGHUP: pool %s is configured again, with another %s: the draining pool stays until its last "
                     "region goes, and the pool the file describes is made then",
                     n->name, keys);
                snprintf(why, sizeof(why),
                         "configured again at a reload with another %s; the pool the file describes is made when "
                         "its last region goes",
                         keys);
                core_pool_drain(core, p, why, true); /* still the old pool's conf: put back as it was, it serves */
                report_pool(SAID_WAITING, n->name, NULL);
        }
}

/* SIGHUP: new pools and new access rules, limits and log level take effect; the rest needs a restart. */
void reload_run(void) {
        struct config conf;
        char err[512], what[1536];

        if (!config_path) {
                log_info("SIGHUP: no configuration file to re-read (started with --no-config: the built-in pools)");
                return;
        }
        /* A file written since allocd started with the built-in pools is what the operator reloads for. */
        if (config_optional && access(config_path, F_OK) < 0 && errno == ENOENT) {
                log_info("SIGHUP: still no %s: serving the built-in pools", config_path);
                return;
        }
        if (pools_in_flight) {
                log_info("SIGHUP: pools are still being made (the last reload's, or one that waited for a draining "
                         "pool); re-reading once they are");
                reload_again = true;
                return;
        }
        int r = config_load(&conf, config_path, err, sizeof(err));
        if (r == -ENOENT) /* config_load's advice (--config, --no-config) is for a start */
                snprintf(err, sizeof(err),
                         "%s: %s; put it back, or restart allocd with --no-config for the "
                         "built-in pools",
                         config_path, strerror(-r));
        if (r < 0) {
                refuse(err);
                return;
        }
        config_optional = false; /* read once: from now on a missing file is an error, as for --config */
        report_begin(NULL);
        cuda_retry(); /* a driver installed or loaded since: the pools that need it are tried below */
        const struct limits before = *core_limits(core);
        limits_apply(core, &conf);
        report_limits(&before, core_limits(core));
        put_back(&conf); /* before restart_reconfigured: a pool serving again waits for nothing */
        restart_reconfigured(core, &conf);
        int level = cli_log_level >= 0 ? cli_log_level : conf.log_level, was = log_set_level(level);
        if (level != was)
                report_level(was, level);
        for (size_t i = 0; i < core_npools(core); i++) {
                struct pool *pool = core_pool_at(core, i);
                struct pool_info p;
                core_pool_info(pool, &p);
                if (configured(&conf, p.name) || (!p.available && !*p.reason))
                        continue;
                /* A draining pool goes with its last region; put back changed, then out: drains as taken out. */
                if (p.draining) {
                        if (p.reload_drained && strcmp(p.draining, RELOAD_DRAIN_WHY))
                                take_out(pool, &p);
                        continue;
                }
                if (!p.available) {
                        core_pool_forget(core, p.name); /* left out, and now taken out of the file */
                        continue;
                }
                take_out(pool, &p);
        }
        for (size_t i = 0; i < conf.npools; i++) {
                const struct pool_conf *n = &conf.pools[i];
                struct pool *p = core_pool_find(core, n->name);
                struct pool_info info;
                if (!p || (core_pool_info(p, &info), !info.available))
                        make_pool(n, false);
                else if (!info.draining) /* its section is the waiting pool's (restart_reconfigured) */
                        reload_pool(p, n);
        }
        reload_making = pools_in_flight > 0;
        restart_drained(core); /* the empty ones go now (after the count: a namesake it makes is not this reload's) */
        config_clear(&conf);
        describe(what, sizeof(what), true);
        log_info("SIGHUP: reloaded %s: %s", config_path, *what ? what : "no changes");
        update();
}

void reload_make_deferred(const struct pool_conf *pc) {
        make_pool(pc, true);
}

unsigned reload_busy(void) {
        return pools_in_flight;
}

void reload_stop(void) {
        struct pool_work *head = STAILQ_FIRST(&queue), *pw, *next;
        bool making = head && head->work.data;

        stopping = true;
        /* Only the head is ever being made: it is discarded when its worker is done; the rest go now. */
        for (pw = making ? STAILQ_NEXT(head, link) : head; pw; pw = next) {
                next = STAILQ_NEXT(pw, link);
                free(pw->conf.ranges);
                free(pw);
                pools_in_flight--;
        }
        STAILQ_INIT(&queue);
        if (making)
                STAILQ_INSERT_TAIL(&queue, head, link);
}

void reload_init(uv_loop_t *l, struct core *c, const char *path, bool optional, int log_level_override,
                 void (*changed_cb)(void)) {
        loop = l;
        core = c;
        config_path = path;
        config_optional = optional;
        cli_log_level = log_level_override;
        changed = changed_cb;
}
