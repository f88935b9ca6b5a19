/* SPDX-License-Identifier: MIT */
/*
 * The pool interface: what every kind shares (the range arena, access rules,
 * per-uid accounting).  What differs per kind (the backing) is behind struct
 * pool_ops, one file per kind.  A pool keeps its id for its life and pools
 * are never removed, so an id is as good as a name; a pool configured but
 * not made (allocd cannot use its GPU, or the machine refused its memory) is
 * listed too, unavailable, with the reason, so it takes its place and shifts
 * nobody, and a reload that can make it gives it that same id.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core-impl.h"
#include "cuda-loader.h"
#include "log.h"

/* Says once, the first time a pool wants it, why allocd cannot use the GPU, and again when a reload's retry says
 * otherwise (the loader hands out the same pointer for the same words). */
static void say_no_gpu(void) {
        static const char *said;
        const char *why;

        if (!cuda_get(&why) && why != said) {
                log_warn("%s", why);
                said = why;
        }
}

static const struct pool_ops *pick_ops(struct pool_conf *conf) {
        char why[256];
        int r;

        switch (conf->kind) {
        case POOL_FPGA:
                return &pool_fpga_ops;
        case POOL_GPU:
                say_no_gpu();
                return &pool_vmm_ops;
        case POOL_PINNED:
                say_no_gpu();
                if (conf->backend == BACKEND_AUTO) {
                        r = vmm_host_numa_probe(conf->numa_node, why, sizeof(why));
                        conf->backend = r == 0 ? BACKEND_VMM : BACKEND_MEMFD;
                        logx(LOG_LEVEL_INFO, &(struct log_ctx){.pool = conf->name}, "pool %s: backend = auto: %s%s",
                             conf->name,
                             r == 0         ? "vmm"
                             : r == -ENODEV ? "memfd (no GPU)"
                                            : "memfd, since ",
                             r == 0 || r == -ENODEV ? "" : why);
                }
                return conf->backend == BACKEND_VMM ? &pool_vmm_ops : &pool_host_ops;
        case POOL_HOST:
                break;
        }
        return conf->isolation == ISOLATION_REGION ? &pool_region_ops : &pool_host_ops;
}

static const char *backend_name(const struct pool *p) {
        if (!p->available || p->ops == &pool_fpga_ops)
                return NULL;
        return p->ops == &pool_vmm_ops ? "vmm" : "memfd";
}

static struct pool *find_any(const struct core *core, const char *name) {
        for (size_t i = 0; i < core->npools; i++)
                if (!strcmp(core->pools[i]->conf.name, name))
                        return core->pools[i];
        return NULL;
}

struct pool *core_pool_find(const struct core *core, const char *name) {
        struct pool *p = find_any(core, name);

        return p && !p->gone ? p : NULL;
}

size_t core_npools(const struct core *core) {
        return core->npools;
}

struct pool *core_pool_at(const struct core *core, size_t i) {
        return core->pools[i];
}

static void free_pool(struct pool *p) {
        if (!p)
                return;
        range_arena_free(p->arena);
        range_arena_free(p->empty);
        free(p->conf.ranges);
        free(p->usage);
        free(p);
}

void core_pool_discard(struct pool *p) {
        pool_destroy(p);
}

void pool_destroy(struct pool *p) {
        if (p && p->available)
                p->ops->close(p);
        free_pool(p);
}

/* The reason an unavailable pool shows: err without its "pool NAME: ", which the listing says already. */
static void set_reason(struct pool *p, const char *err) {
        size_t n = strlen(p->conf.name);

        if (!strncmp(err, "pool ", 5) && !strncmp(err + 5, p->conf.name, n) && !strncmp(err + 5 + n, ": ", 2))
                err += 5 + n + 2;
        snprintf(p->reason, sizeof(p->reason), "%s", *err ? err : "cannot be made");
}

/* Makes p's backing; on failure p stays unavailable, with the reason. */
static int open_pool(struct pool *p, char *err, size_t errsize) {
        struct range_stats st;
        const char *why;
        int r;

        p->ops = pick_ops(&p->conf);
        p->conf.quantum = pool_conf_quantum(&p->conf);
        p->fd = p->ro_fd = -1;
        if ((r = range_arena_new(&p->arena, p->conf.quantum)) < 0 ||
            (r = range_arena_new(&p->empty, p->conf.quantum)) < 0)
                snprintf(err, errsize, "pool %s: cannot create its arena: %s", p->conf.name, strerror(-r));
        else
                r = p->ops->open(p, err, errsize);
        if (p->adopt_fd >= 0) /* a kind that keeps no fd, or one that failed before it took it */
                close(p->adopt_fd);
        p->adopt_fd = -1;
        if (r == -ENODEV && !cuda_get(&why))
                snprintf(p->reason, sizeof(p->reason), "%s", why);
        else if (r < 0)
                set_reason(p, err);
        if (r < 0)
                return r;
        range_stats(p->arena, &st);
        p->total = st.total;
        p->available = true;
        p->reason[0] = '\0';
        return 0;
}

static int make_pool(const struct pool_conf *conf, int fd, struct pool **ret, char *err, size_t errsize) {
        struct pool *p = calloc(1, sizeof(*p));

        *ret = NULL;
        if (!p) {
                if (fd >= 0)
                        close(fd);
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        p->adopt_fd = fd;
        p->from_store = fd >= 0;
        p->conf = *conf;
        p->size_asked = conf->size;
        p->conf.ranges = NULL;
        TAILQ_INIT(&p->waiters);
        if (conf->nranges) {
                p->conf.ranges = malloc(conf->nranges * sizeof(*conf->ranges));
                if (!p->conf.ranges) {
                        if (fd >= 0)
                                close(fd);
                        free(p);
                        snprintf(err, errsize, "out of memory");
                        return -ENOMEM;
                }
                memcpy(p->conf.ranges, conf->ranges, conf->nranges * sizeof(*conf->ranges));
        }
        *ret = p;
        return open_pool(p, err, errsize);
}

int core_pool_make(const struct pool_conf *conf, struct pool **ret, char *err, size_t errsize) {
        return make_pool(conf, -1, ret, err, errsize);
}

int core_pool_adopt(struct core *core, struct pool *p, char *err, size_t errsize) {
        struct pool *old = find_any(core, p->conf.name), **n;

        if (old && old->available) {
                snprintf(err, errsize, "pool %s exists already", p->conf.name);
                return -EEXIST;
        }
        if (p->available)
                p->made = ++core->pools_made;
        if (old) {
                /*
                 * It takes the id of the pool of its name that was not made, or went: the configuration it
                 * was made from is the one Status shows and whose names = reserve (a placeholder still not
                 * made may come from a section changed since, a drained pool's from a section taken out).
                 */
                p->id = old->id;
                core->pools[p->id] = p;
                waitq_pool_unready(core, old); /* a drained pool emptied while a pass over other pools broke off */
                pool_destroy(old);
                if (p->available)
                        kept_pool(core, p);
                return 0;
        }
        if (core->npools >= UINT32_MAX || !(n = realloc(core->pools, (core->npools + 1) * sizeof(*n)))) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        core->pools = n;
        p->id = (uint32_t)core->npools;
        core->pools[core->npools++] = p;
        kept_pool(core, p);
        return 0;
}

int core_pool_add_fd(struct core *core, const struct pool_conf *conf, int fd, char *err, size_t errsize) {
        struct pool *p;
        int r = make_pool(conf, fd, &p, err, errsize), e;

        if (p && (e = core_pool_adopt(core, p, err, errsize)) < 0) {
                pool_destroy(p);
                return e;
        }
        return r;
}

int core_pool_add(struct core *core, const struct pool_conf *conf, char *err, size_t errsize) {
        return core_pool_add_fd(core, conf, -1, err, errsize);
}

void core_pool_drain(struct core *core, struct pool *p, const char *why, bool reload) {
        snprintf(p->draining, sizeof(p->draining), "%s", why);
        p->reload_drained = reload;
        /* As a new Alloc is told (usable_pool); a waiter would otherwise wait out its timeout, or for ever (NOFAIL). */
        waitq_pool_refuse(core, p);
}

bool core_pool_undrain(struct pool *p) {
        if (!p->available || !p->draining[0] || !p->reload_drained)
                return false;
        p->draining[0] = '\0';
        p->held_names[0] = '\0';
        p->reload_drained = false;
        return true;
}

bool core_pool_retire(struct pool *p) {
        if (!p->available || !p->draining[0] || p->nregions)
                return false;
        /* Like a pool taken out of the configuration that was never made: its id stays, nobody sees it. */
        p->ops->close(p);
        p->available = false;
        p->gone = true;
        p->draining[0] = '\0';
        p->reload_drained = false;
        p->reason[0] = '\0';
        /* held_names stay: the namesake that waited is being made (off the loop), and takes them when adopted. */
        return true;
}

void core_pool_hold_names(struct pool *p, const char *names) {
        if (p->draining[0] || p->gone)
                snprintf(p->held_names, sizeof(p->held_names), "%s", names);
}

/*
 * The patterns p reserves now: a draining pool's own went with its section; it holds its namesake's,
 * and so does a retired one until that namesake is made (a gone pool otherwise holds none).
 */
static const char *reserved(const struct pool *p) {
        return p->gone || p->draining[0] ? p->held_names : p->conf.names;
}

void core_set_region_fds(struct core *core, const struct region_fds *fds) {
        core->region_fds = *fds;
}

void core_pool_forget(struct core *core, const char *name) {
        struct pool *p = core_pool_find(core, name);

        /* Its id stays taken, by a placeholder with nothing in it that nobody sees. */
        if (p && !p->available) {
                p->gone = true;
                p->reason[0] = '\0';
        }
}

int pool_add_span(struct pool *p, uint64_t base, uint64_t size, char *err, size_t errsize) {
        int r = range_add(p->arena, base, size);

        if (r == 0)
                r = range_add(p->empty, base, size);
        if (r == -EEXIST)
                snprintf(err, errsize, "pool %s: range %#" PRIx64 "+%#" PRIx64 " overlaps another range", p->conf.name,
                         base, size);
        else if (r < 0)
                snprintf(err, errsize, "pool %s: range %#" PRIx64 "+%#" PRIx64 ": %s", p->conf.name, base, size,
                         strerror(-r));
        return r;
}

void core_pool_info(const struct pool *p, struct pool_info *info) {
        *info = (struct pool_info){
                .name = p->conf.name,
                .kind = p->conf.kind,
                .id = p->id,
                .made = p->made,
                .available = p->available,
                .reason = p->reason,
                .backend = backend_name(p),
                .fd = p->available ? p->fd : -1,
                .ro_fd = p->available ? p->ro_fd : -1,
                .size = p->conf.size,
                .regions = p->nregions,
                .waiters = p->nwaiters,
                .size_asked = p->size_asked,
                .conf = &p->conf,
                .uuid = p->uuid,
                .draining = p->available && p->draining[0] ? p->draining : NULL,
                .reload_drained = p->available && p->draining[0] && p->reload_drained,
                .names = reserved(p),
        };
}

int core_fd_open(int fd, bool read_only) {
        int r = read_only ? host_reopen_ro(fd) : fcntl(fd, F_DUPFD_CLOEXEC, 0);

        return r < 0 && !read_only ? -errno : r;
}

void core_pool_stats(const struct pool *p, struct range_stats *st) {
        range_stats(p->arena, st);
}

void core_pool_update(struct pool *p, const struct pool_conf *conf) {
        p->conf.owner = conf->owner;
        p->conf.group = conf->group;
        p->conf.mode = conf->mode;
        p->conf.quota_per_uid = conf->quota_per_uid;
        p->conf.register_flags = conf->register_flags;             /* sent to clients that map the pool from now on */
        memcpy(p->conf.names, conf->names, sizeof(p->conf.names)); /* names published already keep their pools */
}

/* Like a file's mode: the owner's bits, else the group's, else the others'; root may do anything. */
bool core_pool_may(const struct pool *p, const struct client *cl, int what) {
        mode_t m = p->conf.mode;
        int bits;

        if (cl->uid == 0)
                return true;
        if (cl->uid == p->conf.owner) {
                bits = (m >> 6) & 7;
        } else {
                bool in = cl->gid == p->conf.group;
                for (int i = 0; i < cl->ngroups && !in; i++)
                        in = cl->groups[i] == p->conf.group;
                bits = in ? (m >> 3) & 7 : m & 7;
        }
        return (bits & what) == what;
}

const char *core_pool_reserving(const struct pool *p, const char *name, char *buf, size_t size) {
        const char *pat = reserved(p);

        for (const char *nl; (nl = strchr(pat, '\n')); pat = nl + 1) {
                snprintf(buf, size, "%.*s", (int)(nl - pat), pat);
                if (fnmatch(buf, name, 0) == 0)
                        return buf;
        }
        return NULL;
}

bool core_pool_reserves(const struct pool *p, const char *name) {
        char one[NAME_MAX_LEN + 1];

        return core_pool_reserving(p, name, one, sizeof(one)) != NULL;
}

void pool_count_region(struct pool *p, int delta) {
        p->nregions = (uint64_t)((int64_t)p->nregions + delta);
}

uint64_t pool_usage(const struct pool *p, uid_t uid) {
        for (size_t i = 0; i < p->nusage; i++)
                if (p->usage[i].uid == uid)
                        return p->usage[i].bytes;
        return 0;
}

int pool_charge(struct pool *p, uid_t uid, int64_t bytes) {
        for (size_t i = 0; i < p->nusage; i++) {
                if (p->usage[i].uid == uid) {
                        p->usage[i].regions += bytes > 0 ? 1 : (uint64_t)-1;
                        /* The uid's last byte gone: its record goes too, so records are one per uid with bytes here. */
                        if (!(p->usage[i].bytes += (uint64_t)bytes))
                                p->usage[i] = p->usage[--p->nusage];
                        return 0;
                }
        }
        if (bytes <= 0)
                return 0;
        struct uid_usage *n = realloc(p->usage, (p->nusage + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        p->usage = n;
        p->usage[p->nusage++] = (struct uid_usage){.uid = uid, .bytes = (uint64_t)bytes, .regions = 1};
        return 0;
}

static bool ahead(const struct uid_usage *a, const struct uid_usage *b) {
        return a->bytes != b->bytes ? a->bytes > b->bytes : a->uid < b->uid;
}

/* A pass that keeps the n first in order: n is small (a Status reply's room), the uids may be many. */
size_t core_pool_users(const struct pool *p, uid_t mine, bool only_mine, struct uid_usage *top, size_t n,
                       size_t *users) {
        const struct uid_usage *own = NULL;
        size_t k = 0;

        *users = p->nusage;
        for (size_t i = 0; i < p->nusage; i++) {
                const struct uid_usage *u = &p->usage[i];
                if (u->uid == mine)
                        own = u;
                if (only_mine || (k == n && (!n || !ahead(u, &top[n - 1]))))
                        continue;
                size_t j = k < n ? k++ : n - 1;
                for (; j > 0 && ahead(u, &top[j - 1]); j--)
                        top[j] = top[j - 1];
                top[j] = *u;
        }
        if (!own || !n)
                return k;
        for (size_t j = 0; j < k; j++)
                if (top[j].uid == mine)
                        return k;
        /* Not among the biggest: the asker still sees where it stands against the quota. */
        top[k < n ? k++ : n - 1] = *own;
        return k;
}

const char *core_pool_name(const struct pool *p) {
        return p->conf.name;
}

enum pool_kind core_pool_kind(const struct pool *p) {
        return p->conf.kind;
}
