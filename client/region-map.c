/* SPDX-License-Identifier: MIT */
/*
 * The regions of isolation = region pools that one connection has mapped,
 * by id.  Such a region comes with its own memfd each time this connection
 * is handed a reference to it (an Alloc, each Attach); it is mapped the
 * first time, and the later fds are closed unused, so that every reference
 * to one region in this process has one address.  Each Free or Detach that
 * allocd accepts drops one reference, and the last one unmaps it: a region
 * this connection no longer holds is no longer readable here, which is the
 * isolation (docs/configuration.md, "Who can touch which bytes").
 *
 * A tsearch(3) tree by id under a mutex: the reading thread maps, the
 * callers' threads look up and drop; one lookup per region handed out,
 * beside a round trip, and one per Free or Detach.
 */
#include <errno.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "client-internal.h"

struct region_map {
        uint64_t id;
        void *base;
        uint64_t size;
        uint32_t refs;
        bool read_only;
        struct region_map *next_lost; /* region_table_forget's list */
};

struct region_table {
        pthread_mutex_t lock;
        void *root;
        struct region_map *lost; /* forgotten, mapped until the table is freed */
};

static int cmp(const void *a, const void *b) {
        uint64_t x = ((const struct region_map *)a)->id, y = ((const struct region_map *)b)->id;

        return x < y ? -1 : x > y;
}

struct region_table *region_table_new(void) {
        struct region_table *t = calloc(1, sizeof(*t));

        if (t)
                pthread_mutex_init(&t->lock, NULL);
        return t;
}

static void unmap(void *node) {
        struct region_map *m = node;

        munmap(m->base, m->size);
        free(m);
}

struct region_table *region_table_free(struct region_table *t) {
        if (!t)
                return NULL;
        tdestroy(t->root, unmap);
        for (struct region_map *m = t->lost, *next; m; m = next) {
                next = m->next_lost;
                unmap(m);
        }
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
}

/* Lock held. */
static struct region_map *find(struct region_table *t, uint64_t id) {
        struct region_map key = {.id = id};
        void *x = tfind(&key, &t->root, cmp);

        return x ? *(struct region_map **)x : NULL;
}

int region_table_map(struct region_table *t, const Allocd__Reply *reply, int fd, char *err, size_t errsize) {
        const Allocd__Region *g = reply->body_case == ALLOCD__REPLY__BODY_REGION ? reply->region : NULL;
        struct region_map *m;
        struct stat st;
        void *p;
        int r = 0;

        snprintf(err, errsize, "allocd sent a region fd this library cannot use");
        if (!g || !g->region_fd || !g->has_id || !g->has_pool_size || g->pool_size == 0 || g->pool_size > SIZE_MAX ||
            g->pool_size != g->size)
                return -EPROTO;
        pthread_mutex_lock(&t->lock);
        if ((m = find(t, g->id))) {
                m->refs++;
                goto out;
        }
        if ((r = fd_holds(fd, g->pool_size, &st, err, errsize)) < 0)
                goto out;
        m = calloc(1, sizeof(*m));
        p = m ? mmap_aligned(fd, g->pool_size, map_align(g->pool_size), g->read_only) : MAP_FAILED;
        if (p == MAP_FAILED) {
                r = m ? -errno : -ENOMEM;
                snprintf(err, errsize, "%s", strerror(-r));
                free(m);
                goto out;
        }
        *m = (struct region_map){.id = g->id, .base = p, .size = g->pool_size, .refs = 1, .read_only = g->read_only};
        if (!tsearch(m, &t->root, cmp)) {
                unmap(m);
                r = -ENOMEM;
                snprintf(err, errsize, "out of memory");
        }
out:
        pthread_mutex_unlock(&t->lock);
        return r;
}

int region_table_locate(struct region_table *t, const Allocd__Region *g, struct alloc_region *ret) {
        const struct region_map *m;

        pthread_mutex_lock(&t->lock);
        m = find(t, g->id);
        /* A later reference that says the region is larger than its first mapping would reach past it. */
        if (m && g->size > m->size)
                m = NULL;
        if (m) {
                ret->cptr = m->base;
                ret->read_only = m->read_only;
                ret->ptr = m->read_only ? NULL : m->base;
        }
        pthread_mutex_unlock(&t->lock);
        return m ? 0 : -EPROTO;
}

static void lose(const void *node, VISIT v, void *arg) {
        struct region_table *t = arg;
        struct region_map *m = *(struct region_map *const *)node;

        if (v == postorder || v == leaf) {
                m->next_lost = t->lost;
                t->lost = m;
        }
}

static void keep(void *node) {
        (void)node;
}

void region_table_forget(struct region_table *t) {
        pthread_mutex_lock(&t->lock);
        twalk_r(t->root, lose, t);
        tdestroy(t->root, keep);
        t->root = NULL;
        pthread_mutex_unlock(&t->lock);
}

void region_table_drop(struct region_table *t, uint64_t id) {
        struct region_map *m;

        pthread_mutex_lock(&t->lock);
        if ((m = find(t, id)) && --m->refs == 0) {
                tdelete(m, &t->root, cmp);
                unmap(m);
        }
        pthread_mutex_unlock(&t->lock);
}
