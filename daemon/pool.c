/* SPDX-License-Identifier: MIT */
/*
 * The pool interface: what every kind shares (the range arena, access rules,
 * per-uid accounting, the wait queue).  What differs per kind (the backing)
 * is behind struct pool_ops, one file per kind.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "allocd.h"
#include "cuda-loader.h"

struct pool **pools;
size_t npools;
struct unavailable *unavailable;
size_t nunavailable;

/* Says once, the first time a pool wants it, why allocd cannot use the GPU. */
static void say_no_gpu(void) {
        static bool said;
        const char *why;

        if (!said && !cuda_get(&why)) {
                log_warn("%s", why);
                said = true;
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
                        r = vmm_host_numa_check(why, sizeof(why));
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
        return &pool_host_ops;
}

const char *pool_backend_name(const struct pool *p) {
        if (p->ops == &pool_fpga_ops)
                return NULL;
        return p->ops == &pool_vmm_ops ? "vmm" : "memfd";
}

const struct unavailable *pool_unavailable(const char *name) {
        for (size_t i = 0; i < nunavailable; i++)
                if (!strcmp(unavailable[i].name, name))
                        return &unavailable[i];
        return NULL;
}

/* Records a pool that needs a GPU allocd cannot use, with the loader's reason. */
static void mark_unavailable(const struct pool_conf *conf) {
        struct unavailable *u = (struct unavailable *)pool_unavailable(conf->name);
        const char *why;

        if (!u) {
                u = realloc(unavailable, (nunavailable + 1) * sizeof(*u));
                if (!u)
                        return;
                unavailable = u;
                u = &unavailable[nunavailable++];
        }
        cuda_get(&why);
        snprintf(u->name, sizeof(u->name), "%s", conf->name);
        u->kind = conf->kind;
        snprintf(u->reason, sizeof(u->reason), "%s", why ? why : "allocd cannot use the GPU");
}

void pool_forget_unavailable(const char *name) {
        const struct unavailable *u = pool_unavailable(name);

        if (u)
                unavailable[u - unavailable] = unavailable[--nunavailable];
}

int pool_create(const struct pool_conf *conf, char *err, size_t errsize) {
        struct pool *p, **n;
        int r;

        p = calloc(1, sizeof(*p));
        n = realloc(pools, (npools + 1) * sizeof(*pools));
        if (!p || !n) {
                free(p);
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        pools = n;
        p->conf = *conf;
        p->size_asked = conf->size;
        p->conf.ranges = NULL;
        if (conf->nranges) {
                p->conf.ranges = malloc(conf->nranges * sizeof(*conf->ranges));
                if (!p->conf.ranges) {
                        free(p);
                        snprintf(err, errsize, "out of memory");
                        return -ENOMEM;
                }
                memcpy(p->conf.ranges, conf->ranges, conf->nranges * sizeof(*conf->ranges));
        }
        p->ops = pick_ops(&p->conf);
        if (!p->conf.quantum)
                p->conf.quantum = p->ops->default_quantum ? p->ops->default_quantum : (uint64_t)sysconf(_SC_PAGESIZE);
        p->fd = -1;
        p->index = (uint32_t)npools;
        TAILQ_INIT(&p->waiters);
        r = range_arena_new(&p->arena, p->conf.quantum);
        if (r == 0)
                r = range_arena_new(&p->empty, p->conf.quantum);
        if (r < 0) {
                snprintf(err, errsize, "pool %s: cannot create its arena: %s", conf->name, strerror(-r));
                goto fail;
        }
        r = p->ops->open(p, err, errsize);
        if (r == -ENODEV)
                mark_unavailable(conf);
        if (r < 0)
                goto fail;
        pool_forget_unavailable(conf->name);
        struct range_stats st;
        range_stats(p->arena, &st);
        p->total = st.total;
        pools[npools++] = p;
        return 0;
fail:
        range_arena_free(p->arena);
        range_arena_free(p->empty);
        free(p->conf.ranges);
        free(p);
        return r;
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

struct pool *pool_find(const char *name) {
        for (size_t i = 0; i < npools; i++)
                if (!strcmp(pools[i]->conf.name, name))
                        return pools[i];
        return NULL;
}

void pools_destroy(void) {
        for (size_t i = 0; i < npools; i++) {
                struct pool *p = pools[i];
                p->ops->close(p);
                range_arena_free(p->arena);
                range_arena_free(p->empty);
                free(p->conf.ranges);
                free(p->usage);
                free(p);
        }
        free(pools);
        pools = NULL;
        npools = 0;
        free(unavailable);
        unavailable = NULL;
        nunavailable = 0;
}

/* Like a file's mode: the owner's bits, else the group's, else the others'; root may do anything. */
bool pool_may(const struct pool *p, const struct conn *c, int what) {
        mode_t m = p->conf.mode;
        int bits;

        if (c->uid == 0)
                return true;
        if (c->uid == p->conf.owner) {
                bits = (m >> 6) & 7;
        } else {
                bool in = c->gid == p->conf.group;
                for (int i = 0; i < c->ngroups && !in; i++)
                        in = c->groups[i] == p->conf.group;
                bits = in ? (m >> 3) & 7 : m & 7;
        }
        return (bits & what) == what;
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
                        p->usage[i].bytes += (uint64_t)bytes;
                        return 0;
                }
        }
        if (bytes <= 0)
                return 0;
        struct uid_usage *n = realloc(p->usage, (p->nusage + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        p->usage = n;
        p->usage[p->nusage++] = (struct uid_usage){.uid = uid, .bytes = (uint64_t)bytes};
        return 0;
}
