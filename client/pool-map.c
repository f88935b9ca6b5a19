/* SPDX-License-Identifier: MIT */
/*
 * The pools one connection has mapped, found by name or by pointer.
 *
 * allocd sends a pool's fd once per connection, with the first region of
 * that pool; the pool is mapped then, whole (a memfd with mmap, registered
 * with CUDA for pinned pools; CUDA memory imported and mapped by gpu.c), and
 * stays mapped until disconnect.  Every later region of the pool is an
 * offset in a mapping that exists already, which is what makes an
 * allocation one round trip.
 *
 * Theory.  The mappings are disjoint ranges [addr, addr + size) of this
 * process's address space: the kernel's mmaps and CUDA's address
 * reservations never overlap.  They are added one at a time and all leave
 * together, when the table is freed.  The table keeps pointers to them in
 * an array sorted by addr:
 *
 *   - find by pointer: a binary search for the last pool whose addr is at
 *     or below the pointer, which lies in that pool iff pointer - addr <
 *     size: O(log n).  This is the common path: what client-side kinds
 *     (arenas carved from regions) ask on every free, "which pool, at what
 *     offset".  PipeWire's mem.c answers the same question for its blocks
 *     by walking a list; a free must not cost a walk.
 *   - insert: a binary search and a memmove, O(n); it happens once per
 *     pool per connection, and n is bounded by the pools allocd serves.
 *   - by name: a walk, O(n), for the same reason, and a name is looked up
 *     once per region handed out, beside a round trip to allocd.
 *
 * Rare inserts and frequent lookups are the case a sorted array serves
 * best: no rebalancing, no node per entry, and a search over contiguous
 * memory.  The pools themselves are allocated one by one and never move,
 * so a struct pool_map pointer stays valid while the array is reallocated
 * as it grows, until the table is freed.  The lock guards the array only:
 * lookups share it, and it is never held across mmap or CUDA calls, so a
 * find is not held up by the import of another pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "client-internal.h"

struct pool_table {
        pthread_rwlock_t lock;
        struct pool_map **by_addr; /* sorted by addr; their ranges do not overlap */
        size_t n, allocated;
        struct pool_map **retired; /* replaced after a reconnect: mapped until the table goes, for old pointers */
        size_t nretired;
};

struct pool_table *pool_table_new(void) {
        struct pool_table *t = calloc(1, sizeof(*t));

        if (t)
                pthread_rwlock_init(&t->lock, NULL);
        return t;
}

/* Undoes what map_fd set up, each step only if it was done, in reverse order.  Accepts NULL; returns NULL. */
static struct pool_map *pool_map_free(struct pool_map *m) {
        if (!m)
                return NULL;
        /* Unregisters a pinned memfd mapping, or unmaps CUDA memory; nothing for a host pool. */
        gpu_release(&m->gpu, m->base);
        if (m->mmapped)
                munmap(m->base, m->size);
        free(m->name);
        free(m);
        return NULL;
}

struct pool_table *pool_table_free(struct pool_table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n; i++)
                pool_map_free(t->by_addr[i]);
        for (size_t i = 0; i < t->nretired; i++)
                pool_map_free(t->retired[i]);
        free(t->by_addr);
        free(t->retired);
        pthread_rwlock_destroy(&t->lock);
        free(t);
        return NULL;
}

/* The index of the first pool whose addr is above addr; t->n if there is none.  Lock held. */
static size_t upper_bound(const struct pool_table *t, uint64_t addr) {
        size_t lo = 0, hi = t->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (t->by_addr[mid]->addr <= addr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Lock held. */
static struct pool_map *find_name(const struct pool_table *t, const char *name) {
        for (size_t i = 0; i < t->n; i++)
                if (!strcmp(t->by_addr[i]->name, name))
                        return t->by_addr[i];
        return NULL;
}

/*
 * Whether pool name may join t, and room in the array for it.  Asked once
 * before the pool is mapped, so that a refusal or a lack of memory costs no
 * mapping (a CUDA import is not cheap to make or undo), and again as it
 * joins.  Write lock held.
 */
static int admit(struct pool_table *t, const char *name, char *err, size_t errsize) {
        if (find_name(t, name)) {
                /* renew() retired a mapping of this name first: one still here was inserted meanwhile. */
                snprintf(err, errsize, "allocd sent the fd of pool %s a second time", name);
                return -EPROTO;
        }
        if (t->n == t->allocated) {
                size_t want = t->allocated ? 2 * t->allocated : 8;
                struct pool_map **p = reallocarray(t->by_addr, want, sizeof(*p));
                if (!p) {
                        snprintf(err, errsize, "out of memory");
                        return -ENOMEM;
                }
                t->by_addr = p;
                t->allocated = want;
        }
        return 0;
}

void pool_table_renew(struct pool_table *t) {
        pthread_rwlock_wrlock(&t->lock);
        for (size_t i = 0; i < t->n; i++)
                t->by_addr[i]->renewed = true;
        pthread_rwlock_unlock(&t->lock);
}

/*
 * The fd of pool name, for a pool mapped already: after a reconnect, or while connected when the
 * pool drained away and allocd made it anew under its name (it sends the new one's fd then).  The
 * same memfd (allocd kept it across its restart) is mapped already, 1; another file (a new allocd,
 * or a new pool) retires the old mapping, so that the old pointers still reach memory, and the new
 * is mapped beside it.  CUDA's exports cannot be told apart: they are always mapped anew.  Write
 * lock held.
 */
static int renew(struct pool_table *t, const char *name, int fd, char *err, size_t errsize) {
        struct pool_map *m = find_name(t, name), **p;
        struct stat st;
        size_t i;

        if (!m)
                return 0;
        m->renewed = false;
        if (m->mmapped && fstat(fd, &st) == 0 && st.st_dev == m->dev && st.st_ino == m->ino)
                return 1;
        if (!(p = reallocarray(t->retired, t->nretired + 1, sizeof(*p)))) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        t->retired = p;
        t->retired[t->nretired++] = m;
        for (i = 0; t->by_addr[i] != m; i++)
                ;
        memmove(&t->by_addr[i], &t->by_addr[i + 1], (t->n - i - 1) * sizeof(*t->by_addr));
        t->n--;
        return 0;
}

/* Adds m to t in address order; on failure t is as it was and m is still the caller's. */
static int insert(struct pool_table *t, struct pool_map *m, char *err, size_t errsize) {
        size_t i;
        int r;

        pthread_rwlock_wrlock(&t->lock);
        r = admit(t, m->name, err, errsize);
        if (r < 0)
                goto out;
        i = upper_bound(t, m->addr);
        /* Mappings cannot overlap; if these seem to, one pointer would have two answers: refuse the second. */
        if ((i > 0 && m->addr - t->by_addr[i - 1]->addr < t->by_addr[i - 1]->size) ||
            (i < t->n && t->by_addr[i]->addr - m->addr < m->size)) {
                snprintf(err, errsize, "pool %s is mapped where another pool is mapped already", m->name);
                r = -EADDRINUSE;
                goto out;
        }
        memmove(&t->by_addr[i + 1], &t->by_addr[i], (t->n - i) * sizeof(*t->by_addr));
        t->by_addr[i] = m;
        t->n++;
out:
        pthread_rwlock_unlock(&t->lock);
        return r;
}

/*
 * Where a pool is mapped: at a multiple of its largest power of two, from
 * 2 MiB (a huge page) to 1 GiB, so that a region's align, which allocd
 * applies to its offset, holds for its pointer too.  Reserving the extra is
 * address space only, given back at once.
 */
uint64_t map_align(uint64_t size) {
        uint64_t a = MAP_ALIGN_MIN;

        while (a < MAP_ALIGN_MAX && a * 2 <= size)
                a *= 2;
        return a;
}

/* mmap of fd at a multiple of align: a PROT_NONE reservation of size + align, the pool inside it, the rest unmapped. */
void *mmap_aligned(int fd, uint64_t size, uint64_t align, bool read_only) {
        uint8_t *p, *a;
        uint64_t span;

        if (size > SIZE_MAX - align) {
                errno = ENOMEM;
                return MAP_FAILED;
        }
        span = size + align;
        p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
                return MAP_FAILED;
        a = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
        if (mmap(a, size, read_only ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) ==
            MAP_FAILED) {
                int e = errno;
                munmap(p, span);
                errno = e;
                return MAP_FAILED;
        }
        if (a > p)
                munmap(p, (size_t)(a - p));
        if (p + span > a + size)
                munmap(a + size, (size_t)(p + span - (a + size)));
        return a;
}

int fd_holds(int fd, uint64_t size, struct stat *st, char *err, size_t errsize) {
        if (fstat(fd, st) < 0) {
                snprintf(err, errsize, "the fd allocd sent cannot be inspected: %s", strerror(errno));
                return -EPROTO;
        }
        if (st->st_size < 0 || (uint64_t)st->st_size < size) {
                snprintf(err, errsize, "allocd sent an fd of %lld bytes for %llu bytes", (long long)st->st_size,
                         (unsigned long long)size);
                return -EPROTO;
        }
        /*
         * The size is only what it is now: whoever else holds the fd could shrink it under the
         * mapping, and a page past its new end would then fault (SIGBUS) here, in the caller's code.
         * allocd seals every memfd it sends (pool-host.c); one that is not sealed is no allocd's.
         */
        int seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
                snprintf(err, errsize, "allocd sent an fd that is not sealed against shrinking (%s)",
                         seals < 0 ? strerror(errno) : "no F_SEAL_SHRINK");
                return -EPROTO;
        }
        return 0;
}

/*
 * Maps fd as g says into m, recording each step as it succeeds (gpu_import
 * and gpu_register leave nothing behind when they fail), so that
 * pool_map_free undoes exactly what was set up.
 */
static int map_fd(struct pool_map *m, const Allocd__Region *g, int fd, char *err, size_t errsize) {
        struct stat st;
        void *p;
        int r;

        if (g->has_backing && g->backing == ALLOCD__BACKING__CUDA_VMM) {
                bool gpu = g->kind == ALLOCD__POOL_KIND__GPU;
                if (gpu && (!g->has_device_uuid || g->device_uuid.len != 16))
                        return -EPROTO;
                r = gpu_import(&m->gpu, fd, m->size, map_align(m->size), gpu ? g->device_uuid.data : NULL, m->read_only,
                               err, errsize);
                if (r < 0)
                        return r;
                m->addr = m->gpu.va;
                /* Host memory mapped by CUDA is reached by the CPU at the same address; device memory is not. */
                if (!gpu)
                        m->base = (void *)(uintptr_t)m->gpu.va;
                return 0;
        }
        if ((r = fd_holds(fd, m->size, &st, err, errsize)) < 0)
                return r;
        p = mmap_aligned(fd, m->size, map_align(m->size), m->read_only);
        if (p == MAP_FAILED) {
                r = -errno;
                snprintf(err, errsize, "%s", strerror(errno));
                return r;
        }
        m->base = p;
        m->addr = (uintptr_t)p;
        m->mmapped = true;
        m->dev = st.st_dev;
        m->ino = st.st_ino;
        /* CUDA registers a read-only mapping only when told that the device must not write it either. */
        if (g->kind == ALLOCD__POOL_KIND__PINNED)
                return gpu_register(&m->gpu, m->base, m->size,
                                    g->register_flags | (m->read_only ? REGISTER_READ_ONLY : 0), err, errsize);
        return 0;
}

int pool_table_map(struct pool_table *t, const Allocd__Reply *reply, int fd, char *err, size_t errsize) {
        const Allocd__Region *g = reply->body_case == ALLOCD__REPLY__BODY_REGION ? reply->region : NULL;

        /* A batch's fd belongs to its first region, the one that names the pool. */
        if (reply->body_case == ALLOCD__REPLY__BODY_BATCH && client_batch_size(reply->batch))
                g = client_batch_first(reply->batch);
        struct pool_map *m;
        int r;

        snprintf(err, errsize, "allocd sent a pool fd this library cannot use");
        if (!g || !g->pool_fd || !g->pool || !g->has_pool_size || g->pool_size == 0 || g->pool_size > SIZE_MAX)
                return -EPROTO;
        /* Everything that can be refused or run out is settled before the pool is mapped. */
        pthread_rwlock_wrlock(&t->lock);
        r = renew(t, g->pool, fd, err, errsize);
        if (r == 0)
                r = admit(t, g->pool, err, errsize);
        pthread_rwlock_unlock(&t->lock);
        if (r != 0)
                return r > 0 ? 0 : r;
        m = calloc(1, sizeof(*m));
        if (!m || !(m->name = strdup(g->pool))) {
                free(m);
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        m->kind = (enum alloc_kind)g->kind;
        m->size = g->pool_size;
        m->read_only = g->read_only;
        m->gpu = (struct gpu_map){.device = -1, .ctx_device = -1};
        r = map_fd(m, g, fd, err, errsize);
        if (r == 0)
                r = insert(t, m, err, errsize);
        if (r < 0)
                pool_map_free(m);
        return r;
}

int pool_table_locate(struct pool_table *t, const Allocd__Region *g, struct alloc_region *ret) {
        const struct pool_map *m;

        pthread_rwlock_rdlock(&t->lock);
        m = find_name(t, g->pool);
        pthread_rwlock_unlock(&t->lock);
        /* m's fields are fixed while the table lives: no lock needed to read them. */
        if (!m || g->size > m->size || g->offset > m->size - g->size)
                return -EPROTO;
        ret->cptr = m->base ? (char *)m->base + g->offset : NULL;
        /* The mapping's, not the reply's: a pool is mapped once, as the connection's mode was then. */
        ret->read_only = m->read_only;
        ret->ptr = m->read_only ? NULL : (void *)ret->cptr;
        ret->dev_ptr = gpu_dev_ptr(&m->gpu, g->offset, g->size);
        ret->device = m->gpu.device;
        ret->registered = m->gpu.registered;
        return 0;
}

int pool_table_find(struct pool_table *t, const void *ptr, const struct pool_map **ret_pool, uint64_t *ret_offset) {
        uint64_t addr = (uintptr_t)ptr;
        const struct pool_map *m = NULL;
        size_t i;

        pthread_rwlock_rdlock(&t->lock);
        i = upper_bound(t, addr);
        if (i > 0 && addr - t->by_addr[i - 1]->addr < t->by_addr[i - 1]->size)
                m = t->by_addr[i - 1];
        pthread_rwlock_unlock(&t->lock);
        if (!m)
                return -ENOENT;
        if (ret_pool)
                *ret_pool = m;
        if (ret_offset)
                *ret_offset = addr - m->addr;
        return 0;
}

int pool_map_find(struct alloc_client *c, const void *ptr, const struct pool_map **ret_pool, uint64_t *ret_offset) {
        if (!c)
                return -EINVAL;
        return pool_table_find(client_pools(c), ptr, ret_pool, ret_offset);
}
