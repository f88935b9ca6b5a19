/* SPDX-License-Identifier: MIT */
/*
 * SIGHUP (docs/configuration.md, "Reload"): the file is read again; limits, the log level and
 * running pools' access rules and quotas apply at once; a running pool taken out of the file drains
 * (no new regions; it goes with its last one), and serves again if put back; new pools are made on
 * the thread pool, one at a time, and adopted by the core on the loop thread (and so is the pool
 * that waited for a draining namesake, restart.c); the rest waits for a restart.  A file
 * that does not load (one with no pools included) changes nothing.  What a
 * reload did goes to the journal and, in short, to STATUS=.  Also the limits every configuration
 * is applied with, start-up's included.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cuda-loader.h"
#include "grace.h"
#include "log.h"
#include "reload.h"
#include "restart.h"
#include "server.h"

static uv_loop_t *loop;
static struct core *core;
static const char *config_path;
static bool config_optional; /* serving the built-in pools until config_path exists */
static int cli_log_level = -1;
static void (*changed)(void);

/*
 * Raises the soft NOFILE limit to the hard one and keeps max_connections to
 * what fits beside the pools' fds and a margin (journal, CUDA, zero jobs),
 * so that running out of fds is a limit clients are told about, not a
 * failing accept().
 */
static void fit_nofile(struct limits *l, bool quiet) {
        struct rlimit rl;
        /* About 14 fds are the daemon's own (stdio, epoll, signals, the thread pool, the socket, the
         * journal), 2 each pool (its fd, and one a queued reply may be sending), 10 to spare. */
        uint64_t reserve = 24 + 2 * core_npools(core), fit, flight;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        getrlimit(RLIMIT_NOFILE, &rl);
        }
        /*
         * 16: refused ones, told why.  Two a connection: its socket, and after a restart the pidfd of
         * its process while it is a placeholder (grace.c), which new connections count with
         * (core_client_admit), so connections and pidfds are at most max_connections each.
         */
        fit = rl.rlim_cur > reserve + 16 ? (rl.rlim_cur - reserve - 16) / 2 : 1;
        fit = fit ? fit : 1;
        /*
         * The kernel refuses a user without CAP_SYS_RESOURCE more fds in flight (sent, not yet read)
         * than its RLIMIT_NOFILE, and each connection may have FDS_IN_FLIGHT (server.h); 16 spare
         * for the fds allocd gives systemd's fd store.
         */
        flight = rl.rlim_cur > 16 + FDS_IN_FLIGHT ? (rl.rlim_cur - 16) / FDS_IN_FLIGHT : 1;
        if (flight < fit)
                fit = flight;
        if (rl.rlim_cur != RLIM_INFINITY && l->max_connections > fit) {
                if (!quiet)
                        log_warn("max_connections = %u does not fit in %llu file descriptors (LimitNOFILE=: two "
                                 "for each connection, its socket and after a restart its process's pidfd, and %d in "
                                 "flight to each); serving at most %llu connections",
                                 l->max_connections, (unsigned long long)rl.rlim_cur, FDS_IN_FLIGHT,
                                 (unsigned long long)fit);
                l->max_connections = (uint32_t)fit;
        }
}

/* Applies conf's limits; lists in changes (when not NULL) each that changed, as "key old -> new". */
static void apply_limits(const struct config *conf, char *changes, size_t size) {
        struct limits l = conf->limits;
        const struct limits *o = core_limits(core);

        fit_nofile(&l, false);
        for (size_t i = 0; changes && i < nlimit_keys; i++) {
                uint32_t a = *(const uint32_t *)((const char *)o + limit_keys[i].off);
                uint32_t b = *(const uint32_t *)((const char *)&l + limit_keys[i].off);
                char item[96];
                if (a == b)
                        continue;
                snprintf(item, sizeof(item), "%s %u%s -> %u%s", limit_keys[i].key, a, limit_keys[i].unit, b,
                         limit_keys[i].unit);
                reload_list_add(changes, size, item);
        }
        core_set_limits(core, &l);
        server_limits_changed();
        grace_arm();
}

void reload_apply_limits(const struct config *conf) {
        apply_limits(conf, NULL, 0);
}

void reload_list_add(char *buf, size_t size, const char *item) {
        size_t n = strlen(buf);

        if (n >= 3 && !strcmp(buf + n - 3, "..."))
                return;
        if (n + 2 + strlen(item) + 5 <= size)
                snprintf(buf + n, size - n, "%s%s", n ? ", " : "", item);
        else if (n + 5 <= size)
                snprintf(buf + n, size - n, "%s...", n ? ", " : "");
}

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
        bool deferred; /* restart.c's: made in place of its drained namesake, not by a reload */
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

/*
 * What the last reload did.  Its new pools are made after reload_run returns, so it is counted as
 * they come: said in the journal when the file is read and again once the last pool is made, and
 * in STATUS= (reload_summary) all along, the pools still being made as pending.
 */
static struct {
        char when[16];     /* local time, HH:MM:SS; "": no reload yet */
        char refused[512]; /* why the file was refused; "": it was not */
        unsigned added, failed, rules, restart_only, draining, removed, back, waiting;
        char limits[768]; /* the limits that changed, "key old -> new" each */
        char level[40];   /* "log level old -> new", or "" */
        char added_names[96], failed_names[96];
        char draining_names[96], removed_names[96], back_names[96]; /* taken out: held regions, or none; put back */
        char waiting_names[96]; /* put back changed: made once the draining pool empties */
        char failed_why[1024];  /* "name: reason", one a failed pool, for the journal */
} last;
static char summary[320];

/* Appends a part to a list of parts. */
static void part(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void part(char *buf, size_t size, const char *fmt, ...) {
        char item[1200]; /* the longest part: a count and failed_why */
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(item, sizeof(item), fmt, ap);
        va_end(ap);
        reload_list_add(buf, size, item);
}

/* The outcome in words; full: with each failed pool's reason and what changed besides pools (the journal's). */
static void describe(char *buf, size_t size, bool full) {
        char pending[96] = "";
        unsigned npending;

        buf[0] = '\0';
        if (*last.refused) {
                snprintf(buf, size, "refused (%s)", last.refused);
                return;
        }
        npending = pending_names(pending, sizeof(pending));
        if (last.added)
                part(buf, size, "%u %s added (%s)", last.added, plural(last.added, "pool", "pools"), last.added_names);
        if (npending)
                part(buf, size, "%u %s pending (%s)", npending, plural(npending, "pool", "pools"), pending);
        if (last.failed)
                part(buf, size, "%u %s failed (%s)", last.failed, plural(last.failed, "pool", "pools"),
                     full ? last.failed_why : last.failed_names);
        if (last.draining)
                part(buf, size, "%u %s draining (%s)", last.draining, plural(last.draining, "pool", "pools"),
                     last.draining_names);
        if (last.removed)
                part(buf, size, "%u %s removed (%s)", last.removed, plural(last.removed, "pool", "pools"),
                     last.removed_names);
        if (last.back)
                part(buf, size, "%u %s serving again (%s)", last.back, plural(last.back, "pool", "pools"),
                     last.back_names);
        if (last.waiting)
                part(buf, size, "%u %s waiting for a draining namesake (%s)", last.waiting,
                     plural(last.waiting, "pool", "pools"), last.waiting_names);
        if (!full)
                return;
        if (*last.limits)
                part(buf, size, "limits changed (%s)", last.limits);
        if (*last.level)
                part(buf, size, "%s", last.level);
        if (last.rules)
                part(buf, size, "%u %s access rules changed", last.rules, plural(last.rules, "pool's", "pools'"));
        if (last.restart_only)
                part(buf, size, "%u %s other changes wait for a restart", last.restart_only,
                     plural(last.restart_only, "pool's", "pools'"));
}

/* Refreshes STATUS='s part and tells main.c. */
static void update(void) {
        char what[256];

        describe(what, sizeof(what), false);
        snprintf(summary, sizeof(summary), "last reload %s: %s", last.when, *what ? what : "applied");
        changed();
}

static void begin(void) {
        time_t now = time(NULL);
        struct tm tm;

        memset(&last, 0, sizeof(last));
        if (!localtime_r(&now, &tm) || !strftime(last.when, sizeof(last.when), "%H:%M:%S", &tm))
                snprintf(last.when, sizeof(last.when), "?");
}

static void refuse(const char *why) {
        begin();
        snprintf(last.refused, sizeof(last.refused), "%s", why);
        log_err("SIGHUP: %s; keeping the running configuration", why);
        update();
}

static void pool_failed(const char *name, const char *why) {
        char item[NAME_MAX_LEN + 520];

        last.failed++;
        reload_list_add(last.failed_names, sizeof(last.failed_names), name);
        snprintf(item, sizeof(item), "%s: %s", name, why);
        reload_list_add(last.failed_why, sizeof(last.failed_why), item);
}

const char *reload_summary(void) {
        return summary;
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
                last.restart_only++;
        }
        if (o->owner != n->owner || o->group != n->group || o->mode != n->mode ||
            o->quota_per_uid != n->quota_per_uid || o->register_flags != n->register_flags ||
            strcmp(o->names, n->names))
                last.rules++;
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
                        pool_failed(pw->conf.name, "no worker thread");
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
                pool_failed(name, pw->err);
                core_pool_discard(pw->pool);
        } else if (pw->r < 0) {
                /* Adopted as a placeholder: listed as not available, with the reason; the next reload tries
                 * again. */
                core_pool_info(core_pool_find(core, name), &info);
                logx(pw->r == -ENODEV ? LOG_LEVEL_WARNING : LOG_LEVEL_ERR, &(struct log_ctx){.pool = name},
                     "SIGHUP: %s:%d: pool %s is not available: %s; the next reload tries again", config_path,
                     pw->conf.line, name, info.reason); /* err without its "pool NAME: " */
                pool_failed(name, info.reason);
        } else {
                logx(LOG_LEVEL_INFO, &(struct log_ctx){.pool = name}, "SIGHUP: added pool %s", name);
                last.added++;
                reload_list_add(last.added_names, sizeof(last.added_names), name);
        }
        free(pw->conf.ranges);
        free(pw);
        pools_in_flight--;
        next_pool();
        if (stopping)
                return;
        restart_pools_added(core);
        if (*last.when)
                update();
        else
                changed(); /* no reload yet: a deferred pool, for STATUS= */
        if (reload_making && !pending_names(NULL, 0)) {
                reload_making = false;
                describe(what, sizeof(what), true);
                log_info("SIGHUP: reload of %s at %s done: %s", config_path, last.when, what);
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
                        pool_failed(n->name, "out of memory");
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
 * last (restart.c retires it, from the fd store too; an empty one at once, restart_drained).
 */
static void take_out(struct pool *pool, const struct pool_info *p) {
        if (p->regions) {
                logx(LOG_LEVEL_WARNING, &(struct log_ctx){.pool = p->name},
                     "SIGHUP: pool %s is no longer configured: it takes no new regions, and goes with the last of "
                     "the %llu it holds",
                     p->name, (unsigned long long)p->regions);
                last.draining++;
                reload_list_add(last.draining_names, sizeof(last.draining_names), p->name);
        } else {
                logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pool = p->name},
                     "SIGHUP: pool %s is no longer configured and holds no region: it goes", p->name);
                last.removed++;
                reload_list_add(last.removed_names, sizeof(last.removed_names), p->name);
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
                        last.back++;
                        reload_list_add(last.back_names, sizeof(last.back_names), n->name);
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
                last.waiting++;
                reload_list_add(last.waiting_names, sizeof(last.waiting_names), n->name);
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
        begin();
        cuda_retry(); /* a driver installed or loaded since: the pools that need it are tried below */
        apply_limits(&conf, last.limits, sizeof(last.limits));
        put_back(&conf); /* before restart_reconfigured: a pool serving again waits for nothing */
        restart_reconfigured(core, &conf);
        int level = cli_log_level >= 0 ? cli_log_level : conf.log_level, was = log_set_level(level);
        if (level != was)
                snprintf(last.level, sizeof(last.level), "log level %s -> %s", log_level_name(was),
                         log_level_name(level));
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
