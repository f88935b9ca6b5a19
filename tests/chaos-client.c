/* SPDX-License-Identifier: MIT */
/*
 * chaos-client SOCKET STATS SEED calm|wild PARENT: one worker of test-daemon-chaos.
 *
 * Runs random requests against allocd until it is killed: three threads on
 * one liballoc-client connection (so their requests are pipelined on one
 * socket), two of them doing random operations and one allocations that wait.
 * Beside it: second connections, raw connections that pipeline a burst of
 * requests and hang up before, during or after the replies, and raw
 * connections that never say Hello.  "calm" leaves out PERSIST (the warm-up
 * round, which must leave nothing behind).
 *
 * Every outcome is counted in STATS (tests/chaos.h).  What allocd promises
 * and this worker can see is checked, and a broken promise is a violation:
 * a region that is not where its constraints say, bytes of an unnamed region
 * that changed under its only holder (a region handed out twice), a ZERO
 * region that is not zero, a refused request answered with another code than
 * documented, a Free of a region this connection holds that fails, a stale id
 * that frees something, a Status whose numbers do not add up.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <alloc/client.h>

#include "allocd.pb-c.h"
#include "chaos.h"
#include "wire.h"

#define MAXHELD 4  /* regions a thread holds at once */
#define NSTALE 16  /* ids a thread freed, kept to ask for again */
#define NNOHELLO 1 /* silent raw connections a thread keeps */
#define PAGE 4096u /* the host pools' quantum */

enum { P_HOST, P_SMALL, P_FPGA, NPOOLS };
static const char *const pool_names[NPOOLS] = {CHAOS_POOL_HOST, CHAOS_POOL_SMALL, CHAOS_POOL_FPGA};

static const char *sock_path;
static struct chaos_stats *stats;
static bool calm;

/* ---- counting and complaining ---- */

static enum chaos_res res_of(int e) {
        switch (-e) {
        case 0:
                return RES_OK;
        case EINVAL:
                return RES_EINVAL;
        case EOVERFLOW:
                return RES_EOVERFLOW;
        case ENODEV:
                return RES_ENODEV;
        case ENOENT:
                return RES_ENOENT;
        case EEXIST:
                return RES_EEXIST;
        case EACCES:
                return RES_EACCES;
        case EDQUOT:
                return RES_EDQUOT;
        case EMFILE:
                return RES_EMFILE;
        case EAGAIN:
                return RES_EAGAIN;
        case ETIMEDOUT:
                return RES_ETIMEDOUT;
        case E2BIG:
                return RES_E2BIG;
        case ECANCELED:
                return RES_ECANCELED;
        case ECONNRESET:
                return RES_ECONNRESET;
        case EPROTO:
                return RES_EPROTO;
        case EIO:
                return RES_EIO;
        default:
                return RES_OTHER;
        }
}

static void count(enum chaos_op op, int e) {
        __atomic_fetch_add(&stats->n[op][res_of(e)], 1, __ATOMIC_RELAXED);
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...) {
        char msg[sizeof(stats->first_violation) - 32];
        uint32_t unclaimed = 0;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        __atomic_fetch_add(&stats->violations, 1, __ATOMIC_RELAXED);
        if (__atomic_compare_exchange_n(&stats->violation_claimed, &unclaimed, 1, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
                snprintf(stats->first_violation, sizeof(stats->first_violation), "pid %d: %s", (int)getpid(), msg);
        fprintf(stderr, "chaos-client %d: %s\n", (int)getpid(), msg);
}

/* The main connection is gone: allocd closed a client that did nothing wrong, or died.  The test counts it. */
static void lost(int e) {
        if (e == -ECONNRESET)
                _exit(3);
}

/* ---- randomness ---- */

struct rng {
        uint64_t s;
};

static uint64_t next(struct rng *r) {
        uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static uint64_t below(struct rng *r, uint64_t n) {
        return n ? next(r) % n : 0;
}

static bool chance(struct rng *r, unsigned pct) {
        return below(r, 100) < pct;
}

/* A size from lo to hi bytes, spread evenly over the powers of two between them, in whole pages. */
static uint64_t size_between(struct rng *r, uint64_t lo, uint64_t hi) {
        unsigned a = 63 - (unsigned)__builtin_clzll(lo), b = 63 - (unsigned)__builtin_clzll(hi);
        unsigned e = a + (unsigned)below(r, b - a + 1);
        uint64_t v = (1ull << e) + below(r, 1ull << e);

        v = v < lo ? lo : v > hi ? hi : v;
        /* Not always whole pages: allocd rounds up to its quantum. */
        return chance(r, 70) ? (v + PAGE - 1) / PAGE * PAGE : v;
}

static void name_of(struct rng *r, char *buf, size_t size) {
        snprintf(buf, size, CHAOS_NAME_FMT, (int)below(r, CHAOS_NNAMES));
}

static void pause_ms(uint64_t ms) {
        struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
}

/* ---- regions this thread holds ---- */

struct held {
        uint64_t id, addr, size, tag;
        void *ptr;
        int pool;
        bool own;     /* allocated unnamed by this thread: nobody else can write it, so its bytes are checked */
        bool persist; /* own and PERSIST: always Freed (detached, nobody could ever free it: see the test) */
};

struct thr {
        struct alloc_client *c;
        struct rng rng;
        struct held h[MAXHELD];
        int nh;
        uint64_t stale[NSTALE];
        int nstale;
        int nohello[NNOHELLO];
        struct alloc_client *second;
};

static bool is_host(int pool) {
        return pool != P_FPGA;
}

static uint64_t pool_end(int pool) {
        return pool == P_HOST ? CHAOS_HOST_SIZE : CHAOS_SMALL_SIZE;
}

/* A tag at the start of every page and the complement at the end: a second writer shows up at once. */
static void write_tags(const struct held *h) {
        volatile uint64_t *p;

        for (uint64_t off = 0; off < h->size; off += PAGE) {
                p = (volatile uint64_t *)((char *)h->ptr + off);
                *p = h->tag ^ off;
        }
        p = (volatile uint64_t *)((char *)h->ptr + h->size - 8);
        *p = ~h->tag;
}

static void check_tags(const struct held *h, const char *when) {
        const volatile uint64_t *p;

        for (uint64_t off = 0; off < h->size; off += PAGE) {
                p = (const volatile uint64_t *)((char *)h->ptr + off);
                if (*p != (h->tag ^ off)) {
                        violation("region %#llx (pool %s, offset %#llx, %llu bytes, held by this connection only): "
                                  "%s, +%#llx holds %#llx, not the %#llx written; someone else wrote into it",
                                  (unsigned long long)h->id, pool_names[h->pool], (unsigned long long)h->addr,
                                  (unsigned long long)h->size, when, (unsigned long long)off, (unsigned long long)*p,
                                  (unsigned long long)(h->tag ^ off));
                        return;
                }
        }
        p = (const volatile uint64_t *)((char *)h->ptr + h->size - 8);
        if (*p != ~h->tag)
                violation("region %#llx (pool %s, offset %#llx, %llu bytes): %s, its last 8 bytes changed under its "
                          "only holder",
                          (unsigned long long)h->id, pool_names[h->pool], (unsigned long long)h->addr,
                          (unsigned long long)h->size, when);
}

/* The first and last 8 bytes of every page: where earlier holders left their tags. */
static void check_zero(const struct held *h) {
        for (uint64_t off = 0; off < h->size; off += PAGE) {
                const volatile uint64_t *a = (const volatile uint64_t *)((char *)h->ptr + off);
                uint64_t end = off + PAGE <= h->size ? off + PAGE : h->size;
                const volatile uint64_t *b = (const volatile uint64_t *)((char *)h->ptr + end - 8);
                if (*a || *b) {
                        violation("ZERO region %#llx (pool %s, offset %#llx, %llu bytes) is not zero at +%#llx",
                                  (unsigned long long)h->id, pool_names[h->pool], (unsigned long long)h->addr,
                                  (unsigned long long)h->size, (unsigned long long)(*a ? off : end - 8));
                        return;
                }
        }
}

/* Where allocd put a region: inside the pool, and as its constraints say. */
static void check_placement(const struct alloc_region *r, int pool, uint64_t want, const struct alloc_opts *o) {
        const char *bad = NULL;
        uint64_t end = r->addr + r->size;

        if (r->size < want)
                bad = "smaller than asked";
        else if (o->align && r->addr % o->align != o->phase)
                bad = "not at phase modulo align";
        else if (o->boundary && r->addr / o->boundary != (end - 1) / o->boundary)
                bad = "across a boundary";
        else if (r->addr < o->low || (o->high && end > o->high))
                bad = "outside [low, high)";
        else if (is_host(pool) && (!r->ptr || end > pool_end(pool) || r->kind != ALLOC_KIND_HOST))
                bad = "not a host region inside the pool";
        else if (!is_host(pool) && !(r->addr >= CHAOS_FPGA_BASE0 && end <= CHAOS_FPGA_BASE0 + CHAOS_FPGA_SIZE0) &&
                 !(r->addr >= CHAOS_FPGA_BASE1 && end <= CHAOS_FPGA_BASE1 + CHAOS_FPGA_SIZE1))
                bad = "not inside one of the fpga pool's windows";
        if (bad)
                violation("region %#llx of pool %s at %#llx, %llu bytes (asked %llu, align %#llx phase %#llx boundary "
                          "%#llx low %#llx high %#llx): %s",
                          (unsigned long long)r->id, pool_names[pool], (unsigned long long)r->addr,
                          (unsigned long long)r->size, (unsigned long long)want, (unsigned long long)o->align,
                          (unsigned long long)o->phase, (unsigned long long)o->boundary, (unsigned long long)o->low,
                          (unsigned long long)o->high, bad);
}

static void forget_stale(struct thr *t, uint64_t id) {
        t->stale[t->nstale++ % NSTALE] = id;
}

/* Drops held region i by Free or Detach; one this connection holds must go without complaint. */
static void release(struct thr *t, int i, bool detach) {
        struct held h = t->h[i];
        int e;

        detach = detach && !h.persist;
        if (h.own && h.ptr)
                check_tags(&h, "before it was freed");
        e = detach ? alloc_region_detach(t->c, h.id) : alloc_region_free(t->c, h.id);
        count(detach ? OP_DETACH : OP_FREE, e);
        lost(e);
        if (e < 0)
                violation("%s of region %#llx, which this connection holds, failed: %s", detach ? "Detach" : "Free",
                          (unsigned long long)h.id, alloc_last_error());
        t->h[i] = t->h[--t->nh];
        if (h.own)
                forget_stale(t, h.id);
}

static void keep(struct thr *t, const struct alloc_region *r, int pool, bool own, bool persist) {
        struct held *h;

        if (t->nh == MAXHELD)
                release(t, (int)below(&t->rng, MAXHELD), chance(&t->rng, 30));
        h = &t->h[t->nh++];
        *h = (struct held){.id = r->id,
                           .addr = r->addr,
                           .size = r->size,
                           .ptr = r->ptr,
                           .pool = pool,
                           .own = own,
                           .persist = persist};
        h->tag = next(&t->rng) | 1;
        if (h->ptr)
                write_tags(h);
}

/* ---- the operations ---- */

static int pick_pool(struct rng *r) {
        uint64_t x = below(r, 100);
        return x < 55 ? P_HOST : x < 70 ? P_SMALL : P_FPGA;
}

static uint64_t pick_size(struct rng *r, int pool) {
        uint64_t x = below(r, 100);

        switch (pool) {
        case P_HOST:
                return x < 70   ? size_between(r, 1, 64 << 10)
                       : x < 92 ? size_between(r, 64 << 10, 1 << 20)
                                : size_between(r, (1 << 20) + 1, 3 << 20); /* zeroed on allocd's thread pool */
        case P_SMALL:
                return size_between(r, 1, 512 << 10);
        default:
                return size_between(r, 1, 4 << 20);
        }
}

/* Constraints now and then: alignment with a phase, a boundary, a window. */
static void pick_constraints(struct rng *r, int pool, uint64_t size, struct alloc_opts *o) {
        static const uint64_t aligns[] = {PAGE, 64 << 10, 1 << 20, 2 << 20};
        uint64_t base = is_host(pool) ? 0 : CHAOS_FPGA_BASE0;
        uint64_t span = is_host(pool) ? pool_end(pool) : CHAOS_FPGA_SIZE0;

        if (chance(r, 12))
                o->count = 2 + below(r, 3);
        if (chance(r, 15)) {
                o->align = aligns[below(r, 4)];
                if (chance(r, 40))
                        o->phase = below(r, o->align / PAGE) * PAGE;
        }
        if (chance(r, 8)) {
                uint64_t b = 1ull << (63 - __builtin_clzll(size | 1));
                o->boundary = chance(r, 80) ? b << (1 + below(r, 3)) : b; /* sometimes too small: INVALID */
        }
        if (chance(r, 10)) {
                if (pool == P_FPGA && chance(r, 30)) {
                        o->low = CHAOS_FPGA_BASE1;
                } else {
                        o->low = base + below(r, span / 2 / PAGE) * PAGE;
                        if (chance(r, 70))
                                o->high = o->low + span / 4 + below(r, span / 4 / PAGE) * PAGE;
                }
        }
}

enum alloc_kind_op { A_PLAIN, A_NAMED, A_PERSIST };

static void op_alloc(struct thr *t, enum alloc_kind_op kind) {
        struct rng *r = &t->rng;
        struct alloc_opts o = {0};
        struct alloc_region reg;
        char name[32];
        int pool = kind == A_PERSIST ? (chance(r, 80) ? P_FPGA : P_HOST) : pick_pool(r);
        uint64_t size = kind == A_PERSIST ? size_between(r, 1, 16 << 10) : pick_size(r, pool);
        enum chaos_op op = kind == A_PLAIN ? OP_ALLOC : kind == A_NAMED ? OP_ALLOC_NAMED : OP_PERSIST;

        if (kind != A_PERSIST)
                pick_constraints(r, pool, size, &o);
        if (is_host(pool) ? chance(r, 30) : chance(r, 2))
                o.flags |= ALLOC_ZERO; /* on an fpga pool: INVALID */
        if (chance(r, 40) || kind == A_PERSIST)
                o.flags |= ALLOC_NOWAIT;
        else if (chance(r, 70))
                o.timeout_ms = 1 + (uint32_t)below(r, 50); /* else allocd's wait_timeout */
        if (kind == A_NAMED) {
                name_of(r, name, sizeof(name));
                o.name = name;
                if (!calm && chance(r, 30))
                        o.flags |= ALLOC_PERSIST;
        }
        if (kind == A_PERSIST)
                o.flags |= ALLOC_PERSIST;
        int e = alloc_region_new(t->c, pool_names[pool], size, &o, &reg);
        count(op, e);
        lost(e);
        if (e < 0)
                return;
        check_placement(&reg, pool, size * (o.count ? o.count : 1), &o);
        struct held h = {.id = reg.id, .addr = reg.addr, .size = reg.size, .ptr = reg.ptr, .pool = pool};
        if ((o.flags & ALLOC_ZERO) && !o.name && reg.ptr)
                check_zero(&h);
        keep(t, &reg, pool, !o.name, !o.name && (o.flags & ALLOC_PERSIST));
}

static void op_attach(struct thr *t) {
        struct alloc_region reg;
        char name[32];

        name_of(&t->rng, name, sizeof(name));
        int e = alloc_region_attach(t->c, name, NULL, &reg);
        count(OP_ATTACH, e);
        lost(e);
        if (e == 0)
                keep(t, &reg, reg.kind == ALLOC_KIND_FPGA ? P_FPGA : P_HOST, false, false);
}

static void op_touch(struct thr *t) {
        if (!t->nh)
                return;
        struct held *h = &t->h[below(&t->rng, (uint64_t)t->nh)];
        if (!h->ptr)
                return;
        if (h->own)
                check_tags(h, "when it was read back");
        h->tag = next(&t->rng) | 1;
        write_tags(h);
        count(OP_TOUCH, 0);
}

static void op_stale(struct thr *t) {
        int n = t->nstale < NSTALE ? t->nstale : NSTALE;

        if (!n)
                return;
        uint64_t id = t->stale[below(&t->rng, (uint64_t)n)];
        int e = chance(&t->rng, 50) ? alloc_region_free(t->c, id) : alloc_region_detach(t->c, id);
        count(OP_FREE_STALE, e);
        lost(e);
        if (e != -ENOENT)
                violation("Free/Detach of region %#llx, which this thread freed before, answered %s (%s); "
                          "want NOT_FOUND: ids are never reused",
                          (unsigned long long)id, e ? strerror(-e) : "OK", alloc_last_error());
}

/*
 * Many small regions at once, then each freed or detached in random order: the
 * region and hold tables grow and shrink under everyone else's requests.
 */
static void op_batch(struct thr *t) {
        struct alloc_opts o = {.flags = ALLOC_NOWAIT};
        struct alloc_region reg;
        uint64_t ids[128];
        int n = 32 + (int)below(&t->rng, 97), got = 0, e;

        for (int i = 0; i < n; i++) {
                e = alloc_region_new(t->c, CHAOS_POOL_FPGA, PAGE, &o, &reg);
                count(OP_BATCH, e);
                lost(e);
                if (e == 0)
                        ids[got++] = reg.id;
        }
        while (got > 0) {
                int i = (int)below(&t->rng, (uint64_t)got);
                bool detach = chance(&t->rng, 30);
                uint64_t id = ids[i];
                ids[i] = ids[--got];
                e = detach ? alloc_region_detach(t->c, id) : alloc_region_free(t->c, id);
                count(detach ? OP_DETACH : OP_FREE, e);
                lost(e);
                if (e < 0)
                        violation("%s of region %#llx, which this connection holds, failed: %s",
                                  detach ? "Detach" : "Free", (unsigned long long)id, alloc_last_error());
        }
}

/* Requests allocd must refuse, with the code docs/protocol.md gives. */
static void op_invalid(struct thr *t) {
        struct alloc_opts o = {0};
        struct alloc_region reg;
        const char *pool = CHAOS_POOL_HOST, *what;
        uint64_t size = PAGE;
        int want, e, which = (int)below(&t->rng, 12);

        switch (which) {
        case 0:
                size = 0, want = -EINVAL, what = "size 0";
                break;
        case 1:
                pool = "no-such-pool", want = -ENODEV, what = "an unknown pool";
                break;
        case 2:
                o.flags = ALLOC_WRITECOMBINED, want = -EINVAL, what = "WRITECOMBINED";
                break;
        case 3:
                o.flags = 0x100, want = -EINVAL, what = "an unknown flag";
                break;
        case 4:
                o.flags = ALLOC_NOWAIT | ALLOC_NOFAIL, want = -EINVAL, what = "NOWAIT with NOFAIL";
                break;
        case 5:
                size = UINT64_MAX / 2, o.count = 3, want = -EOVERFLOW, what = "count x size past 2^64";
                break;
        case 6:
                size = 1ull << 40, want = -E2BIG, what = "more than the pool";
                break;
        case 7:
                o.align = 3 * PAGE, want = -EINVAL, what = "align not a power of two";
                break;
        case 8:
                o.low = 2 * PAGE, o.high = PAGE, want = -EINVAL, what = "low above high";
                break;
        case 9:
                pool = CHAOS_POOL_FPGA, o.flags = ALLOC_ZERO, want = -EINVAL, what = "ZERO in an fpga pool";
                break;
        case 10:
                o.name = "bad\001name", want = -EINVAL, what = "a name with a control character";
                break;
        default:
                pool = CHAOS_POOL_SMALL, size = CHAOS_SMALL_QUOTA + PAGE, want = -EDQUOT,
                what = "more than the whole quota";
                break;
        }
        e = alloc_region_new(t->c, pool, size, &o, &reg);
        count(OP_INVALID, e);
        lost(e);
        if (e == 0) {
                violation("allocd granted %s (region %#llx)", what, (unsigned long long)reg.id);
                alloc_region_free(t->c, reg.id);
        } else if (e != want) {
                violation("allocd answered %s with %s (%s), not %s", what, strerror(-e), alloc_last_error(),
                          strerror(-want));
        }
}

/* Status adds up: every pool's used and free bytes make its size. */
static void op_status(struct thr *t) {
        struct alloc_status *s;
        int e = alloc_status(t->c, &s);

        count(OP_STATUS, e);
        lost(e);
        if (e < 0)
                return;
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                if (p->used + p->free != p->size || p->largest_free > p->free)
                        violation("status of pool %s: used %llu + free %llu != size %llu, or largest free %llu > free",
                                  p->name, (unsigned long long)p->used, (unsigned long long)p->free,
                                  (unsigned long long)p->size, (unsigned long long)p->largest_free);
        }
        alloc_status_free(s);
}

/* A Dump of under 100 regions is one packet, so one moment: no name twice, no region without a reference. */
static void op_dump(struct thr *t) {
        struct alloc_dump *d;
        const char *pool = chance(&t->rng, 50) ? NULL : pool_names[below(&t->rng, NPOOLS)];
        int e = alloc_dump(t->c, pool, &d);

        count(OP_DUMP, e);
        lost(e);
        if (e < 0)
                return;
        for (size_t i = 0; i < d->nregions; i++) {
                const struct alloc_region_info *x = &d->regions[i];
                if (x->refs == 0 || x->refs < x->nholders)
                        violation("dump: region %#llx has %u references and %zu holders", (unsigned long long)x->id,
                                  x->refs, x->nholders);
                for (size_t j = 0; d->nregions < 100 && *x->name && j < i; j++)
                        if (!strcmp(d->regions[j].name, x->name))
                                violation("dump: regions %#llx and %#llx are both published as '%s'",
                                          (unsigned long long)d->regions[j].id, (unsigned long long)x->id, x->name);
        }
        alloc_dump_free(d);
}

/* A second connection of this process: a few regions, then a clean disconnect (or one later). */
static void op_second(struct thr *t) {
        struct alloc_region reg;
        struct alloc_opts o = {.flags = ALLOC_NOWAIT};
        char name[32];
        int e;

        t->second = alloc_disconnect(t->second);
        e = alloc_connect(&t->second, sock_path, "chaos-second");
        count(OP_CONNECT, e);
        if (e < 0)
                return;
        for (int i = (int)below(&t->rng, 4); i > 0; i--) {
                int pool = pick_pool(&t->rng);
                e = alloc_region_new(t->second, pool_names[pool], pick_size(&t->rng, pool), &o, &reg);
                count(OP_ALLOC, e);
                if (e == 0 && reg.ptr)
                        memset(reg.ptr, 0xa5, reg.size < PAGE ? reg.size : PAGE);
        }
        if (chance(&t->rng, 40)) {
                name_of(&t->rng, name, sizeof(name));
                e = alloc_region_attach(t->second, name, NULL, &reg);
                count(OP_ATTACH, e);
        }
        if (chance(&t->rng, 60))
                t->second = alloc_disconnect(t->second);
}

static int raw_connect(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                fd = -1;
        }
        return fd;
}

/* A raw connection that says nothing: allocd closes it at hello_timeout, or this thread does, or death. */
static void op_nohello(struct thr *t) {
        int i = (int)below(&t->rng, NNOHELLO);

        if (t->nohello[i] >= 0)
                close(t->nohello[i]);
        t->nohello[i] = raw_connect();
        count(OP_NOHELLO, t->nohello[i] >= 0 ? 0 : -errno);
}

static bool raw_send(int fd, Allocd__Request *req) {
        uint8_t buf[1024];
        size_t n = allocd__request__get_packed_size(req);

        if (n > sizeof(buf))
                return false;
        allocd__request__pack(req, buf);
        return wire_send(fd, buf, n, NULL, 0, 0) == 0;
}

/* One reply within ms, counted; false at the end of the stream, on a timeout or on garbage. */
static bool raw_reply(int fd, int ms) {
        static __thread uint8_t buf[WIRE_MAX_PACKET];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int fds[WIRE_MAX_FDS];
        size_t nfds = WIRE_MAX_FDS;

        if (poll(&p, 1, ms) != 1)
                return false;
        ssize_t n = wire_recv(fd, buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT);
        if (n <= 0)
                return false;
        for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
        Allocd__Reply *r = allocd__reply__unpack(NULL, (size_t)n, buf);
        if (!r) {
                violation("allocd sent %zd bytes that do not decode as a Reply", n);
                return false;
        }
        count(OP_BURST, r->has_error ? -wire_error_errno(r->error) : 0);
        allocd__reply__free_unpacked(r, NULL);
        return true;
}

/*
 * Hello and up to 24 requests pipelined on a raw connection without reading,
 * then: read every reply, read some, hang up at once, or shut the sending side
 * and read to the end.  Replies that wait for memory come out of order.
 */
static void op_burst(struct thr *t) {
        struct rng *r = &t->rng;
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello hello = ALLOCD__HELLO__INIT;
        int fd = raw_connect(), k = 2 + (int)below(r, 23), sent = 0;
        char name[32];

        if (fd < 0) {
                count(OP_BURST, -errno);
                return;
        }
        hello.has_version = true;
        hello.version = WIRE_VERSION;
        hello.client_name = "chaos-burst";
        req.has_id = true;
        req.id = 1;
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &hello;
        if (!raw_send(fd, &req))
                goto out;
        sent++;
        for (int i = 0; i < k; i++) {
                Allocd__Request q = ALLOCD__REQUEST__INIT;
                Allocd__Alloc a = ALLOCD__ALLOC__INIT;
                Allocd__Attach at = ALLOCD__ATTACH__INIT;
                Allocd__Free f = ALLOCD__FREE__INIT;
                Allocd__Detach de = ALLOCD__DETACH__INIT;
                Allocd__Status st = ALLOCD__STATUS__INIT;
                Allocd__Dump du = ALLOCD__DUMP__INIT;
                uint64_t x = below(r, 100);
                int pool = pick_pool(r);

                q.has_id = true;
                q.id = (uint64_t)i + 2;
                if (x < 70) {
                        q.body_case = ALLOCD__REQUEST__BODY_ALLOC;
                        q.alloc = &a;
                        a.pool = (char *)pool_names[pool];
                        a.has_size = true;
                        a.size = pick_size(r, pool);
                        a.has_flags = true;
                        a.flags = chance(r, 40) ? ALLOC_NOWAIT : chance(r, 10) ? ALLOC_NOFAIL : 0;
                        if (is_host(pool) && chance(r, 30))
                                a.flags |= ALLOC_ZERO;
                        a.has_timeout_ms = !(a.flags & (ALLOC_NOWAIT | ALLOC_NOFAIL));
                        a.timeout_ms = 1 + (uint32_t)below(r, 100);
                        if (chance(r, 15)) {
                                name_of(r, name, sizeof(name));
                                a.name = name;
                                if (!calm && chance(r, 20))
                                        a.flags |= ALLOC_PERSIST;
                        }
                } else if (x < 80) {
                        q.body_case = ALLOCD__REQUEST__BODY_ATTACH;
                        q.attach = &at;
                        name_of(r, name, sizeof(name));
                        at.name = name;
                } else if (x < 85) {
                        q.body_case = ALLOCD__REQUEST__BODY_FREE;
                        q.free = &f;
                        f.has_region = true;
                        f.region = next(r); /* nobody's: NOT_FOUND */
                } else if (x < 90) {
                        q.body_case = ALLOCD__REQUEST__BODY_DETACH;
                        q.detach = &de;
                        de.has_region = true;
                        de.region = next(r);
                } else if (x < 95) {
                        q.body_case = ALLOCD__REQUEST__BODY_STATUS;
                        q.status = &st;
                } else {
                        q.body_case = ALLOCD__REQUEST__BODY_DUMP;
                        q.dump = &du;
                }
                if (!raw_send(fd, &q))
                        break; /* refused (a limit), or allocd closed it */
                sent++;
        }
        switch (below(r, 4)) {
        case 0: /* every reply, as long as they come */
                while (sent-- > 0 && raw_reply(fd, 300))
                        ;
                break;
        case 1: /* some */
                for (int i = (int)below(r, (uint64_t)sent + 1); i > 0 && raw_reply(fd, 100); i--)
                        ;
                break;
        case 2: /* none: hang up with the requests in flight */
                break;
        default: /* no more requests; allocd closes when it reads that */
                shutdown(fd, SHUT_WR);
                while (raw_reply(fd, 300))
                        ;
                break;
        }
out:
        close(fd);
}

/* ---- threads ---- */

static void thr_init(struct thr *t, struct alloc_client *c, uint64_t seed) {
        *t = (struct thr){.c = c, .rng = {seed}};
        for (int i = 0; i < NNOHELLO; i++)
                t->nohello[i] = -1;
}

static void *ops_main(void *arg) {
        struct thr *t = arg;
        struct rng *r = &t->rng;

        for (;;) {
                uint64_t x = below(r, 1000);
                if (x < 280)
                        op_alloc(t, A_PLAIN);
                else if (x < 370)
                        op_alloc(t, A_NAMED);
                else if (x < 380 && !calm)
                        op_alloc(t, A_PERSIST);
                else if (x < 530 && t->nh)
                        release(t, (int)below(r, (uint64_t)t->nh), false);
                else if (x < 600 && t->nh)
                        release(t, (int)below(r, (uint64_t)t->nh), true);
                else if (x < 700)
                        op_attach(t);
                else if (x < 800)
                        op_touch(t);
                else if (x < 830)
                        op_stale(t);
                else if (x < 860)
                        op_invalid(t);
                else if (x < 880)
                        op_status(t);
                else if (x < 900)
                        op_dump(t);
                else if (x < 920)
                        op_second(t);
                else if (x < 945)
                        op_burst(t);
                else if (x < 948)
                        op_nohello(t);
                else if (x < 975)
                        pause_ms(below(r, 3));
                else if (x < 978)
                        op_batch(t);
        }
        return NULL;
}

/* Allocations big enough to wait: with a timeout, or NOFAIL until they fit or the process dies. */
static void *waiter_main(void *arg) {
        struct thr *t = arg;
        struct rng *r = &t->rng;

        for (;;) {
                struct alloc_opts o = {0};
                struct alloc_region reg;
                uint64_t x = below(r, 100);
                int pool = x < 70 ? P_HOST : x < 85 ? P_SMALL : P_FPGA;
                uint64_t size = pool == P_HOST    ? size_between(r, 512 << 10, 6 << 20)
                                : pool == P_SMALL ? size_between(r, 256 << 10, 1 << 20)
                                                  : size_between(r, 8 << 20, 40 << 20);

                x = below(r, 100);
                if (x < 20)
                        o.flags |= ALLOC_NOFAIL; /* and now and then a timeout, which NOFAIL overrides */
                if (x < 10 || (x >= 20 && x < 90))
                        o.timeout_ms = 5 + (uint32_t)below(r, 400);
                if (is_host(pool) && chance(r, 50))
                        o.flags |= ALLOC_ZERO;
                int e = alloc_region_new(t->c, pool_names[pool], size, &o, &reg);
                count(OP_WAIT, e);
                lost(e);
                if (e == -ETIMEDOUT && (o.flags & ALLOC_NOFAIL))
                        violation("a NOFAIL request (timeout_ms %u) for %llu bytes of pool %s timed out: %s",
                                  o.timeout_ms, (unsigned long long)size, pool_names[pool], alloc_last_error());
                if (e < 0)
                        continue;
                check_placement(&reg, pool, size, &o);
                struct held h = {.id = reg.id, .addr = reg.addr, .size = reg.size, .ptr = reg.ptr, .pool = pool};
                if ((o.flags & ALLOC_ZERO) && reg.ptr)
                        check_zero(&h);
                keep(t, &reg, pool, true, false);
                pause_ms(below(r, 20));
                release(t, 0, chance(r, 20));
        }
        return NULL;
}

int main(int argc, char **argv) {
        struct alloc_client *c;
        struct thr t[3];
        pthread_t th[3];
        uint64_t seed;
        int fd, e;

        if (argc != 6)
                return 100;
        /* A test that fails half-way leaves no worker behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != (pid_t)strtol(argv[5], NULL, 10))
                return 0;
        sock_path = argv[1];
        seed = strtoull(argv[3], NULL, 0);
        calm = !strcmp(argv[4], "calm");
        fd = open(argv[2], O_RDWR | O_CLOEXEC);
        stats = fd < 0 ? MAP_FAILED : mmap(NULL, sizeof(*stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (stats == MAP_FAILED)
                return 101;
        close(fd);
        signal(SIGPIPE, SIG_IGN);
        struct rng r = {seed};
        /* Over a connection limit, or stopped past hello_timeout while connecting: try again. */
        while ((e = alloc_connect(&c, sock_path, "chaos")) < 0) {
                count(OP_CONNECT, e);
                pause_ms(1 + below(&r, 5));
        }
        count(OP_CONNECT, 0);
        for (int i = 0; i < 3; i++) {
                thr_init(&t[i], c, next(&r));
                if (pthread_create(&th[i], NULL, i == 2 ? waiter_main : ops_main, &t[i]) != 0)
                        return 102;
        }
        pthread_join(th[0], NULL); /* never: the test kills this process */
        return 0;
}
