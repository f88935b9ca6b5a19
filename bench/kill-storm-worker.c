/* SPDX-License-Identifier: MIT */
/*
 * kill-storm's client processes (kill-storm.h): each allocates, names, attaches, writes, checks,
 * frees, detaches and disconnects at random in the storm's pools, and counts what it checked and
 * every error that is not one the storm allows.
 */
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kill-storm.h"

static const char *const pools[] = {"host", "other", "iso", "extra"};

long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pattern(void *p, uint64_t size, unsigned seed) {
        uint32_t *w = p;
        for (uint64_t i = 0; i < size / 4; i++)
                w[i] = seed * 2654435761u + (uint32_t)i;
}

long pattern_bad(const void *p, uint64_t size, unsigned seed) {
        const uint32_t *w = p;
        for (uint64_t i = 0; i < size / 4; i++)
                if (w[i] != seed * 2654435761u + (uint32_t)i)
                        return (long)i;
        return -1;
}

void problem(struct wstat *st, const char *fmt, ...) {
        va_list ap;
        char msg[256];

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "kill-storm: %s\n", msg);
        if (!st->first_problem[0])
                snprintf(st->first_problem, sizeof(st->first_problem), "%s", msg);
}

struct held {
        struct alloc_region r;
        unsigned seed;
        bool mine, unknown; /* unknown: its seed is not known (attached as the table wrapped) */
        int name;           /* index in sh->names, or -1 */
};

struct worker {
        int w;
        struct wstat *st;
        struct alloc_client *k;
        struct held h[HELD];
        int n;
        unsigned rng, made;
        long call_start;
};

static unsigned rnd(struct worker *x) {
        x->rng = x->rng * 1103515245u + 12345u;
        return x->rng >> 8;
}

static void call_begin(struct worker *x) {
        x->call_start = now_ms();
}

/* After each call: its time, and whether its error is one the storm allows. */
static bool call_end(struct worker *x, int e, const char *what, bool allowed) {
        long ms = now_ms() - x->call_start;

        x->st->ops++;
        if ((uint64_t)ms > x->st->max_call_ms)
                x->st->max_call_ms = (uint64_t)ms;
        if (ms > HUNG_MS) {
                x->st->hung++;
                problem(x->st, "worker %d: %s took %ld ms", x->w, what, ms);
        }
        if (e >= 0)
                return true;
        if (e == -ETIME && atomic_load(&sh->frozen))
                allowed = true;
        if (allowed) {
                x->st->expected_errs++;
                x->st->by_errno[-e < 160 ? -e : 0]++;
                return false;
        }
        x->st->unexpected++;
        problem(x->st, "worker %d: %s: %d (%s) %s", x->w, what, e, strerror(-e), alloc_last_error());
        return false;
}

static void check(struct worker *x, struct held *h) {
        if (h->unknown)
                return;
        long bad = pattern_bad(h->r.cptr, h->r.size, h->seed);

        x->st->checked_regions++;
        x->st->checked_bytes += h->r.size;
        if (bad >= 0) {
                x->st->mismatches++;
                problem(x->st, "worker %d: region %#llx (%s, %llu bytes, %s, name %s) lost its bytes at word %ld", x->w,
                        (unsigned long long)h->r.id, h->r.pool, (unsigned long long)h->r.size,
                        h->mine ? "made here" : "attached", h->name >= 0 ? sh->names[h->name].name : "-", bad);
        }
}

static void drop(struct worker *x, int i) {
        struct held *h = &x->h[i];
        int e;

        check(x, h);
        if (h->mine && h->name >= 0)
                atomic_store(&sh->names[h->name].state, 2); /* before the free: an attach now finds it or not */
        call_begin(x);
        if (h->mine) {
                e = alloc_region_free(x->k, h->r.id);
                x->st->frees++;
        } else {
                e = alloc_region_detach(x->k, h->r.id);
                x->st->detaches++;
        }
        call_end(x, e, h->mine ? "free" : "detach", false);
        if (h->mine && h->name >= 0)
                sh->names[h->name].freed_rc = e;
        x->h[i] = x->h[--x->n];
}

static void do_alloc(struct worker *x) {
        struct held *h = &x->h[x->n];
        const char *pool = pools[rnd(x) % (atomic_load(&sh->reloads) ? 4 : 3)];
        uint64_t size = 4096u * (1 + rnd(x) % 32);
        bool named = rnd(x) % 3 == 0, persist = named && rnd(x) % 4 == 0, zero = rnd(x) % 2;
        char name[40];
        int slot = -1;

        snprintf(name, sizeof(name), "w%d/%u", x->w, x->made++);
        struct alloc_opts o = {.flags = ALLOC_NOWAIT | (zero ? ALLOC_ZERO : 0) | (persist ? ALLOC_PERSIST : 0) |
                                        (named ? ALLOC_UNSEALED : 0),
                               .name = named ? name : NULL};
        call_begin(x);
        int e = alloc_region_new(x->k, pool, size, &o, &h->r);
        x->st->allocs++;
        /* -EMFILE: the fd store is full of region memfds ("the store is full"); extra: not there, or draining. */
        bool extra = !strcmp(pool, "extra");
        if (!call_end(x, e, "alloc",
                      e == -EAGAIN || e == -EDQUOT || (e == -EMFILE && !strcmp(pool, "iso")) ||
                              (extra && (e == -ENODEV || e == -EBUSY || e == -ENOSPC || e == -E2BIG))))
                return;
        h->seed = (unsigned)x->w << 24 | x->made;
        h->mine = true;
        h->unknown = false;
        h->name = -1;
        if (zero) {
                const unsigned char *p = h->r.cptr;
                for (uint64_t j = 0; j < h->r.size; j++)
                        if (p[j]) {
                                x->st->mismatches++;
                                problem(x->st, "worker %d: ZERO region %#llx of %s not zero at %llu", x->w,
                                        (unsigned long long)h->r.id, pool, (unsigned long long)j);
                                break;
                        }
        }
        pattern(h->r.ptr, h->r.size, h->seed);
        x->n++;
        if (!named)
                return;
        call_begin(x);
        e = alloc_region_seal(x->k, h->r.id);
        if (!call_end(x, e, "seal", false))
                return;
        slot = (int)(atomic_fetch_add(&sh->nnames, 1) % NAMES);
        struct name_ent *ne = &sh->names[slot];
        if (atomic_load(&ne->state) == 1) {
                /* The table wrapped over a live name: this one is not tracked (a PERSIST one is a leftover). */
                problem(x->st, "worker %d: the name table is full: raise NAMES", x->w);
                x->st->unexpected++;
                return;
        }
        snprintf(ne->name, sizeof(ne->name), "%s", name);
        ne->seed = h->seed;
        ne->size = h->r.size;
        ne->persist = persist;
        ne->id = h->r.id;
        ne->self_attached = false;
        atomic_store(&ne->state, 1);
        h->name = slot;
}

static void do_attach(struct worker *x) {
        unsigned nn = atomic_load(&sh->nnames);
        if (!nn)
                return;
        int slot = (int)(rnd(x) % (nn < NAMES ? nn : NAMES));
        struct name_ent *ne = &sh->names[slot];
        if (atomic_load(&ne->state) != 1)
                return;
        char name[40], own[16];
        unsigned seed = ne->seed;
        snprintf(name, sizeof(name), "%s", ne->name);
        snprintf(own, sizeof(own), "w%d/", x->w);
        struct held *h = &x->h[x->n];
        call_begin(x);
        int e = alloc_region_attach(x->k, name, NULL, &h->r);
        x->st->attaches++;
        /*
         * Gone since (its maker freed it, or disconnected): -ENOENT.  In "extra" restored draining (a
         * restart after a reload took it out or resized it): -EACCES, its access rules gone with its
         * section (allocd(8), RESTART).
         */
        if (!call_end(x, e, "attach", e == -ENOENT || (e == -EACCES && atomic_load(&sh->reloads))))
                return;
        h->seed = seed;
        h->mine = false;
        h->name = slot;
        x->n++;
        /* The slot taken over by another name meanwhile (the table wrapped): not this region's seed. */
        h->unknown = strcmp(ne->name, name) || ne->seed != seed;
        if (!h->unknown && !strncmp(name, own, strlen(own)))
                ne->self_attached = true;
        check(x, h);
}

static void connect_worker(struct worker *x) {
        int e;
        for (int i = 0; (e = alloc_connect(&x->k, s.d.sock, "kill-storm")) < 0; i++) {
                if (i > 100) {
                        problem(x->st, "worker %d: connect: %d %s", x->w, e, alloc_last_error());
                        _exit(3);
                }
                usleep(100000);
        }
        alloc_set_timeout(x->k, CALL_TIMEOUT_MS);
}

/*
 * tidy: frees and detaches all first; else the lease lets go of what the connection holds, and
 * what it made PERSIST stays, its name in the table, for the end to free.
 */
static void disconnect_worker(struct worker *x, bool tidy) {
        while (tidy && x->n)
                drop(x, (int)(rnd(x) % (unsigned)x->n));
        for (int i = 0; i < x->n; i++)
                check(x, &x->h[i]);
        x->n = 0;
        alloc_disconnect(x->k);
        x->st->disconnects++;
        x->k = NULL;
}

_Noreturn void worker_main(int w, uid_t uid, gid_t gid) {
        struct worker x = {.w = w, .st = &sh->w[w], .rng = 0x9e3779b9u * (unsigned)(w + 1)};

        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0 || !die_with_test())
                _exit(4);
        connect_worker(&x);
        while (!atomic_load(&sh->stop)) {
                unsigned op = rnd(&x) % 100;
                if (op < 35 && x.n < HELD)
                        do_alloc(&x);
                else if (op < 55 && x.n < HELD)
                        do_attach(&x);
                else if (op < 80 && x.n)
                        drop(&x, (int)(rnd(&x) % (unsigned)x.n));
                else if (op < 98) {
                        for (int i = 0; i < x.n; i++)
                                check(&x, &x.h[i]);
                } else {
                        disconnect_worker(&x, op == 98);
                        connect_worker(&x);
                }
        }
        disconnect_worker(&x, true);
        _exit(x.st->mismatches || x.st->unexpected || x.st->hung ? 1 : 0);
}
