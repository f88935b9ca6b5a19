/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_STATE_IN_H
#define ALLOCD_STATE_IN_H

/*
 * Reading a state's records (state.c has the format): shared by the restore (state-read.c) and the
 * scan that runs ahead of it (state-scan.c), so that a record is parsed the same way by both.
 */

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core-impl.h"

struct in {
        const uint8_t *p;
        size_t left;
        bool bad; /* read past the record */
};

static inline void get(struct in *in, void *v, size_t n) {
        if (in->bad || in->left < n) {
                in->bad = true;
                memset(v, 0, n);
                return;
        }
        memcpy(v, in->p, n);
        in->p += n;
        in->left -= n;
}

#define GET(in, type)                                                                                                  \
        ({                                                                                                             \
                type v_;                                                                                               \
                get(in, &v_, sizeof(v_));                                                                              \
                v_;                                                                                                    \
        })

/* A string of at most max bytes, without a NUL, copied into buf (max + 1 bytes). */
static inline void get_str(struct in *in, char *buf, size_t max) {
        uint16_t n = GET(in, uint16_t);

        if (n > max || in->left < n || memchr(in->p, 0, n) != NULL) {
                in->bad = true;
                buf[0] = '\0';
                return;
        }
        get(in, buf, n);
        buf[n] = '\0';
}

/*
 * Whether p serves the stored memory of the pool the state describes (restart.c adopts a stored
 * pool only as its name in the fd store says it was): its regions' holders may still map and write
 * it.  A record of it that it cannot take back is damage, and refuses the whole state, since losing
 * its regions alone would hand that memory out again.  A draining one takes no Alloc: it may lose them.
 */
static inline bool state_adopted_memory(const struct pool *p) {
        return p->from_store && p->fd >= 0 && p->conf.isolation == ISOLATION_POOL && !p->draining[0];
}

/* A REGION record's fields; in->bad if it is cut short.  What they may be is the restore's to check. */
struct region_rec {
        uint32_t slot, pool; /* pool: the state's id */
        struct region r;
        struct region_format f;
        char name[NAME_MAX_LEN + 1];
};

static inline void get_region(struct in *in, struct region_rec *rr) {
        struct region *r = &rr->r;

        *rr = (struct region_rec){0};
        rr->slot = GET(in, uint32_t);
        r->gen = GET(in, uint32_t);
        r->offset = GET(in, uint64_t);
        r->size = GET(in, uint64_t);
        r->creator = GET(in, uint64_t);
        r->created = GET(in, uint32_t);
        rr->pool = GET(in, uint32_t);
        r->uid = GET(in, uint32_t);
        r->pid = GET(in, int32_t);
        r->refs = GET(in, uint32_t);
        r->flags = GET(in, uint16_t);
        r->state = GET(in, uint8_t);
        r->format = GET(in, uint8_t);
        if (r->format != FMT_RAW) {
                rr->f.format = r->format;
                rr->f.heap_size = GET(in, uint64_t);
                rr->f.chunk_size = GET(in, uint64_t);
                rr->f.chunk_count = GET(in, uint64_t);
        }
        get_str(in, rr->name, NAME_MAX_LEN);
}

#endif
