/* SPDX-License-Identifier: MIT */
/*
 * Each thread's cache of free blocks, per kind, and the registry of kinds.
 *
 * Theory.  A thread's small allocations and frees take blocks from, and put
 * them in, a stack per size class that only this thread touches (a
 * kind_cache), so the common case takes no lock and writes no line another
 * thread writes.  A stack that runs dry is refilled from the thread's arena
 * with half its capacity in one lock; one that is full gives its older half
 * back, each block to its own arena.  This is jemalloc's tcache, per kind,
 * as memkind makes one per kind with tcache.create; the capacity falls with
 * the class size (64 blocks of 16 B, 4 of 16 KiB) so that a thread holds
 * little memory back.
 *
 * A thread finds its cache through one thread-local pointer to a directory
 * indexed by the kind's id (kind ids are slots of the registry, at most
 * ALLOC_KIND_MAX).  An entry stores the serial of the kind it was made for:
 * a kind destroyed frees the caches of every thread (they are on its list),
 * and the id's next kind, with a new serial, does not see them.  A policy
 * change raises the kind's epoch; each thread settles its cache at its next
 * call (empties it, and drops it under the conservative policy).
 *
 * A thread that ends gives its caches back (a pthread key's destructor).
 * That and a kind's destroy both hold the registry's lock, so a cache is
 * either flushed into a live kind or freed with a dead one, never both.
 *
 * A child of fork() inherits every kind, its caches and its connection's
 * socket, while the regions are memory it shares with the parent: a block
 * it took would be one the parent hands out too, and a region it gave back
 * would be the parent's.  So the kinds alive at the fork are orphans in the
 * child: their epoch rises (every call leaves the fast path), and the slow
 * paths (kind.c) refuse them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "client-internal.h"
#include "kind-internal.h"

__thread struct kind_dir *kind_tl_dir;
static __thread unsigned tl_hash; /* a hash of the thread's id; 0: not yet */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct alloc_memkind *registry[ALLOC_KIND_MAX];
static uint64_t next_serial = 1;
static pthread_key_t dir_key;
static pthread_once_t dir_once = PTHREAD_ONCE_INIT;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

struct kind_arena *kind_thread_arena(struct alloc_memkind *kind) {
        if (kind->narenas == 1)
                return &kind->arenas[0];
        if (!tl_hash) {
                /* Fibonacci hashing spreads consecutive thread ids over the arenas. */
                uint32_t tid = (uint32_t)syscall(SYS_gettid);
                tl_hash = (uint32_t)(tid * 2654435761u) | 1;
        }
        return &kind->arenas[(tl_hash >> 8) % kind->narenas];
}

static void cache_empty(struct kind_cache *tc) {
        for (unsigned i = 0; i < KIND_NCLASSES; i++) {
                kind_arena_give(tc->bins[i].blocks, tc->bins[i].n);
                tc->bins[i].n = 0;
        }
}

/* Takes tc off its kind's list and frees it. */
static void cache_drop(struct alloc_memkind *kind, struct kind_cache *tc) {
        pthread_mutex_lock(&kind->caches_lock);
        LIST_REMOVE(tc, link);
        pthread_mutex_unlock(&kind->caches_lock);
        free(tc);
}

/* The thread ends: its caches of live kinds go back to their arenas. */
static void dir_free(void *p) {
        struct kind_dir *d = p;

        pthread_mutex_lock(&reg_lock);
        for (unsigned id = 0; id < ALLOC_KIND_MAX; id++) {
                struct alloc_memkind *k = registry[id];
                if (!d->e[id].cache || !k || k->serial != d->e[id].serial || k->orphan)
                        continue;
                cache_empty(d->e[id].cache);
                cache_drop(k, d->e[id].cache);
        }
        pthread_mutex_unlock(&reg_lock);
        kind_tl_dir = NULL;
        free(d);
}

static void dir_key_make(void) {
        pthread_key_create(&dir_key, dir_free);
}

static struct kind_cache *cache_new(struct alloc_memkind *kind) {
        struct kind_cache *tc = malloc(sizeof(*tc));

        if (!tc)
                return NULL;
        tc->arena = kind_thread_arena(kind);
        tc->epoch = atomic_load(&kind->epoch);
        for (unsigned i = 0; i < KIND_NCLASSES; i++) {
                uint32_t cap = 32768 / kind_class_size[i];
                tc->bins[i].n = 0;
                tc->bins[i].cap = cap > KIND_CACHE_MAX ? KIND_CACHE_MAX : cap < 4 ? 4 : cap;
        }
        pthread_mutex_lock(&kind->caches_lock);
        LIST_INSERT_HEAD(&kind->caches, tc, link);
        pthread_mutex_unlock(&kind->caches_lock);
        return tc;
}

struct kind_cache *kind_cache_slow(struct alloc_memkind *kind) {
        struct kind_dir *d = kind_tl_dir;
        bool keep = atomic_load(&kind->usage) != ALLOC_KIND_USAGE_CONSERVATIVE;
        struct kind_cache *tc;

        if (kind->orphan)
                return NULL;
        if (!d) {
                if (!keep)
                        return NULL;
                pthread_once(&dir_once, dir_key_make);
                d = calloc(1, sizeof(*d));
                if (!d)
                        return NULL;
                pthread_setspecific(dir_key, d);
                kind_tl_dir = d;
        }
        if (d->e[kind->id].serial != kind->serial) {
                /* Made for an earlier kind with this id, and freed when it was destroyed. */
                d->e[kind->id].serial = kind->serial;
                d->e[kind->id].cache = NULL;
        }
        tc = d->e[kind->id].cache;
        if (tc && tc->epoch != atomic_load(&kind->epoch)) {
                /* The policy changed: what this thread held back goes to the arenas. */
                cache_empty(tc);
                tc->epoch = atomic_load(&kind->epoch);
                if (!keep) {
                        cache_drop(kind, tc);
                        d->e[kind->id].cache = tc = NULL;
                }
        }
        if (!tc && keep)
                tc = d->e[kind->id].cache = cache_new(kind);
        return tc;
}

void *kind_cache_refill(struct kind_cache *tc, unsigned cls) {
        struct kind_bin *b = &tc->bins[cls];

        b->n = kind_arena_take(tc->arena, cls, b->blocks, b->cap / 2);
        if (!b->n) {
                errno = ENOMEM;
                return NULL;
        }
        return b->blocks[--b->n];
}

void kind_cache_spill(struct kind_bin *b) {
        uint32_t half = b->cap / 2;

        kind_arena_give(b->blocks, half);
        memmove(b->blocks, b->blocks + half, (b->n - half) * sizeof(b->blocks[0]));
        b->n -= half;
}

static void fork_prepare(void) {
        pthread_mutex_lock(&reg_lock);
}

static void fork_parent(void) {
        pthread_mutex_unlock(&reg_lock);
}

static void fork_child(void) {
        for (unsigned id = 0; id < ALLOC_KIND_MAX; id++) {
                if (!registry[id])
                        continue;
                registry[id]->orphan = true;
                atomic_fetch_add(&registry[id]->epoch, 1);
        }
        pthread_mutex_unlock(&reg_lock);
}

static void fork_handlers(void) {
        pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int kind_registry_add(struct alloc_memkind *kind) {
        int r = -EMFILE;

        pthread_once(&fork_once, fork_handlers);
        pthread_mutex_lock(&reg_lock);
        for (unsigned id = 0; id < ALLOC_KIND_MAX; id++) {
                if (registry[id])
                        continue;
                registry[id] = kind;
                kind->id = id;
                kind->serial = next_serial++;
                r = 0;
                break;
        }
        pthread_mutex_unlock(&reg_lock);
        return r;
}

void kind_registry_remove(struct alloc_memkind *kind) {
        pthread_mutex_lock(&reg_lock);
        registry[kind->id] = NULL;
        /* Threads that still point at these caches find the serial changed before they look inside. */
        while (!LIST_EMPTY(&kind->caches)) {
                struct kind_cache *tc = LIST_FIRST(&kind->caches);
                LIST_REMOVE(tc, link);
                free(tc);
        }
        pthread_mutex_unlock(&reg_lock);
}

unsigned kind_registry_of(struct alloc_client *c, struct alloc_memkind **out, unsigned max) {
        unsigned n = 0;

        pthread_mutex_lock(&reg_lock);
        for (unsigned id = 0; id < ALLOC_KIND_MAX && n < max; id++)
                if (registry[id] && registry[id]->client == c)
                        out[n++] = registry[id];
        pthread_mutex_unlock(&reg_lock);
        return n;
}
