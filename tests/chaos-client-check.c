/* SPDX-License-Identifier: MIT */
/*
 * A chaos worker's bookkeeping and its checks (see chaos-client.c): every outcome counted in the
 * shared stats, and what allocd promises that a worker can see: a region's tags (a second writer
 * shows at once), ZERO, and where a region was placed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "chaos-client.h"

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

void count(enum chaos_op op, int e) {
        __atomic_fetch_add(&stats->n[op][res_of(e)], 1, __ATOMIC_RELAXED);
}

void violation(const char *fmt, ...) {
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
void lost(int e) {
        if (e == -ECONNRESET)
                _exit(3);
}

/* A tag at the start of every page and the complement at the end: a second writer shows up at once. */
void write_tags(const struct held *h) {
        volatile uint64_t *p;

        for (uint64_t off = 0; off < h->size; off += PAGE) {
                p = (volatile uint64_t *)((char *)h->ptr + off);
                *p = h->tag ^ off;
        }
        p = (volatile uint64_t *)((char *)h->ptr + h->size - 8);
        *p = ~h->tag;
}

void check_tags(const struct held *h, const char *when) {
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
void check_zero(const struct held *h) {
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
void check_placement(const struct alloc_region *r, int pool, uint64_t want, const struct alloc_opts *o) {
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
