/* SPDX-License-Identifier: MIT */
/*
 * Replaying the log after a snapshot (state.c has the format).  The snapshot's records and the
 * log's are read into an image that points at the latest record of each key: regions by slot,
 * their holds (newest first, as the core keeps them), connections by serial.  Each log record is
 * applied to the image in order; references are derived (holds' counts, plus one for PERSIST),
 * and a region left with none is gone, as it went in the core.  The image is then written out as
 * a snapshot's body (POOL, CLIENT and REGION records patched with the derived counts; the log's
 * POOL records, of pools a reload added, with the snapshot's or in place of one of their id) for
 * state-read.c to restore with every check it makes of a snapshot, so that a log can do nothing a
 * snapshot could not.  Nothing here touches the core.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-impl.h"
#include "state.h"

#define NONE UINT32_MAX
#define REGION_MIN 58 /* a REGION payload without a tag or a name */
#define CLIENT_MIN (32 + 2 + 2 + CLIENT_SECRET_LEN)

struct img_region {
        const uint8_t *rec; /* its REGION payload; NULL: no region */
        uint32_t len;
        uint32_t holds; /* the newest hold, or NONE */
};

struct img_pool {
        const uint8_t *rec; /* its POOL payload */
        uint32_t len;
};

struct img_hold {
        uint32_t client; /* index in clients */
        uint32_t count;
        uint32_t next; /* the region's next (older) hold, or the next free one */
};

struct img_client {
        const uint8_t *rec;
        uint32_t len;
        uint32_t holds; /* how many regions it holds */
        bool gone;
};

struct image {
        const uint8_t *core_rec;
        struct img_pool *pools;
        uint32_t npools, npools_cap;
        struct img_region *regions;
        uint32_t nslots;   /* regions[0, nslots) exist */
        uint64_t nrecords; /* REGION records seen: no slot can be above (slots are taken lowest first) */
        struct img_hold *holds;
        uint32_t nholds, holds_cap, free_hold;
        struct img_client *clients;
        uint32_t nclients, clients_cap;
        uint32_t *hash; /* client index + 1, by serial; linear probing */
        uint32_t hash_cap;
        uint64_t next_serial;
        uint32_t floor;
        char *err;
        size_t errsize;
};

static int bad(struct image *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct image *im, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(im->err, im->errsize, fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

static int oom(struct image *im) {
        snprintf(im->err, im->errsize, "out of memory reading the state");
        return -ENOMEM;
}

static uint64_t u64_at(const uint8_t *p) {
        uint64_t v;

        memcpy(&v, p, 8);
        return v;
}

static uint32_t u32_at(const uint8_t *p) {
        uint32_t v;

        memcpy(&v, p, 4);
        return v;
}

/* Doubles *tab (of elem-byte entries) until it has room for n; false when out of memory. */
static bool room(void **tab, uint32_t *cap, uint64_t n, size_t elem) {
        uint64_t c = *cap ? *cap : 16;
        void *t;

        if (n <= *cap)
                return true;
        while (c < n)
                c *= 2;
        if (c > UINT32_MAX || !(t = reallocarray(*tab, c, elem)))
                return false;
        *tab = t;
        *cap = (uint32_t)c;
        return true;
}

/* ---- connections, by serial ---- */

static uint32_t hash_serial(uint64_t serial, uint32_t cap) {
        return (uint32_t)((serial * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

static uint32_t client_find(const struct image *im, uint64_t serial) {
        if (!im->hash_cap)
                return NONE;
        for (uint32_t b = hash_serial(serial, im->hash_cap); im->hash[b]; b = (b + 1) & (im->hash_cap - 1))
                if (u64_at(im->clients[im->hash[b] - 1].rec) == serial)
                        return im->hash[b] - 1;
        return NONE;
}

static int client_set(struct image *im, const uint8_t *rec, uint32_t len) {
        uint64_t serial;
        uint32_t i;

        if (len < CLIENT_MIN || len > STATE_CLIENT_MAX || !(serial = u64_at(rec)))
                return bad(im, "the state's record of a connection is malformed");
        if ((i = client_find(im, serial)) != NONE) {
                if (im->clients[i].gone)
                        return bad(im, "connection %llu comes back after it went", (unsigned long long)serial);
                im->clients[i].rec = rec; /* its name or secret changed */
                im->clients[i].len = len;
                return 0;
        }
        if ((im->nclients + 1) * 2 > im->hash_cap) {
                uint32_t cap = im->hash_cap ? im->hash_cap * 2 : 64, *h = calloc(cap, sizeof(*h));
                if (!h)
                        return oom(im);
                for (uint32_t k = 0; k < im->nclients; k++) {
                        uint32_t b = hash_serial(u64_at(im->clients[k].rec), cap);
                        while (h[b])
                                b = (b + 1) & (cap - 1);
                        h[b] = k + 1;
                }
                free(im->hash);
                im->hash = h;
                im->hash_cap = cap;
        }
        if (!room((void **)&im->clients, &im->clients_cap, im->nclients + 1, sizeof(*im->clients)))
                return oom(im);
        im->clients[im->nclients] = (struct img_client){.rec = rec, .len = len};
        uint32_t b = hash_serial(serial, im->hash_cap);
        while (im->hash[b])
                b = (b + 1) & (im->hash_cap - 1);
        im->hash[b] = ++im->nclients;
        if (serial >= im->next_serial)
                im->next_serial = serial + 1;
        return 0;
}

static int client_gone(struct image *im, uint64_t serial) {
        uint32_t i = client_find(im, serial);

        if (i == NONE || im->clients[i].gone || im->clients[i].holds)
                return bad(im, "connection %llu goes while %s", (unsigned long long)serial,
                           i == NONE || im->clients[i].gone ? "unknown" : "it holds regions");
        im->clients[i].gone = true;
        return 0;
}

/* ---- regions and holds ---- */

static bool persist(const struct img_region *r) {
        return r->rec[54] & R_PERSIST;
}

/* Its references as the core counts them (holds' counts, + 1 for PERSIST). */
static uint64_t refs(const struct image *im, const struct img_region *r) {
        uint64_t n = persist(r);

        for (uint32_t h = r->holds; h != NONE; h = im->holds[h].next)
                n += im->holds[h].count;
        return n;
}

static int region_set(struct image *im, const uint8_t *rec, uint32_t len, bool fresh) {
        uint32_t slot, gen;
        struct img_region *r;

        if (len < REGION_MIN || len > STATE_REGION_MAX)
                return bad(im, "the state's record of a region is malformed");
        slot = u32_at(rec);
        gen = u32_at(rec + 4);
        if (slot >= state_slots_max())
                return bad(im, "the state's record of region slot %u is above the most a state may have", slot);
        if (slot >= im->nslots) {
                uint32_t cap = im->nslots;
                if (!room((void **)&im->regions, &cap, (uint64_t)slot + 1, sizeof(*im->regions)))
                        return oom(im);
                for (uint32_t s = im->nslots; s < cap; s++)
                        im->regions[s] = (struct img_region){.holds = NONE};
                im->nslots = cap;
        }
        r = &im->regions[slot];
        if (fresh != !r->rec)
                return bad(im, "the state's record of region slot %u %s", slot,
                           fresh ? "makes a region where one is" : "changes a region that is not there");
        /* The writer never moves a region or changes its generation: a record that does is damage. */
        if (!fresh && (u32_at(r->rec + 4) != gen || memcmp(r->rec + 8, rec + 8, 16) != 0 ||
                       u32_at(r->rec + 36) != u32_at(rec + 36)))
                return bad(im, "the state's record of region slot %u changes its place", slot);
        r->rec = rec;
        r->len = len;
        if (gen > im->floor)
                im->floor = gen;
        return 0;
}

/* A region with no reference left went. */
static void reap(struct image *im, uint32_t slot) {
        struct img_region *r = &im->regions[slot];

        if (r->holds == NONE && !persist(r))
                r->rec = NULL;
}

static int hold_set(struct image *im, uint32_t slot, uint32_t count, uint64_t serial, bool snapshot) {
        uint32_t c = client_find(im, serial), *at;
        struct img_region *r;

        if (slot >= im->nslots || !im->regions[slot].rec || c == NONE || im->clients[c].gone || count >= 1u << 31 ||
            (snapshot && !count))
                return bad(im, "the state's hold of slot %u by connection %llu is malformed or names neither", slot,
                           (unsigned long long)serial);
        r = &im->regions[slot];
        for (at = &r->holds; *at != NONE && im->holds[*at].client != c; at = &im->holds[*at].next)
                ;
        if (*at != NONE && snapshot)
                return bad(im, "the state's hold of slot %u by connection %llu is repeated", slot,
                           (unsigned long long)serial);
        if (*at != NONE && count) {
                im->holds[*at].count = count;
        } else if (*at != NONE) { /* gone: unlinked, onto the free list */
                uint32_t h = *at;
                *at = im->holds[h].next;
                im->holds[h].next = im->free_hold;
                im->free_hold = h;
                im->clients[c].holds--;
                reap(im, slot);
        } else if (count) {
                uint32_t h = im->free_hold;
                if (h != NONE) {
                        im->free_hold = im->holds[h].next;
                } else {
                        if (!room((void **)&im->holds, &im->holds_cap, (uint64_t)im->nholds + 1, sizeof(*im->holds)))
                                return oom(im);
                        h = im->nholds++;
                }
                im->holds[h] = (struct img_hold){.client = c, .count = count, .next = r->holds};
                r->holds = h;
                im->clients[c].holds++;
        } else {
                return bad(im, "the state drops a hold of slot %u by connection %llu it does not have", slot,
                           (unsigned long long)serial);
        }
        return 0;
}

/* ---- pools, by id ---- */

#define POOL_MIN (32 + 2) /* a POOL payload with an empty name */

/* A POOL payload: a pool of a new id, or (the log's) in place of the one of its id, unavailable then. */
static int pool_set(struct image *im, const uint8_t *p, uint32_t n, bool snapshot) {
        uint32_t i = 0;

        if (n < POOL_MIN)
                return bad(im, "the state's POOL record is malformed");
        while (i < im->npools && u32_at(im->pools[i].rec) != u32_at(p))
                i++;
        if (snapshot && i < im->npools)
                return bad(im, "the state's snapshot has two POOL records of id %u", u32_at(p));
        if (i == im->npools &&
            !room((void **)&im->pools, &im->npools_cap, (uint64_t)im->npools + 1, sizeof(*im->pools)))
                return oom(im);
        im->npools += i == im->npools;
        im->pools[i] = (struct img_pool){p, n};
        return 0;
}

/* ---- the snapshot into the image ---- */

static int snapshot(struct image *im, const uint8_t *body, size_t len) {
        for (size_t at = 0; at + 8 <= len;) {
                uint16_t type;
                uint32_t n;
                const uint8_t *p = body + at + 8;
                int e = 0;

                memcpy(&type, body + at, 2);
                memcpy(&n, body + at + 4, 4);
                if (n > len - at - 8)
                        return bad(im, "the state's record at byte %zu is malformed", at + STATE_HEADER_LEN);
                if (type == REC_CORE && n >= 12 && !im->core_rec) {
                        im->core_rec = p;
                        im->next_serial = u64_at(p);
                        im->floor = u32_at(p + 8);
                } else if (type == REC_POOL) {
                        e = pool_set(im, p, n, true);
                } else if (type == REC_CLIENT) {
                        e = client_set(im, p, n);
                } else if (type == REC_REGION) {
                        e = region_set(im, p, n, true);
                } else if (type == REC_HOLD) {
                        e = n == 16 ? hold_set(im, u32_at(p), u32_at(p + 4), u64_at(p + 8), true)
                                    : bad(im, "the state's HOLD record is malformed");
                } else if (type == REC_END) {
                        break;
                }
                if (e < 0)
                        return e;
                at += 8 + n;
        }
        if (!im->core_rec)
                return bad(im, "the state has no CORE record");
        /* The snapshot's own references must be what its holds make: nothing in it may be reaped. */
        for (uint32_t s = 0; s < im->nslots; s++) {
                const struct img_region *r = &im->regions[s];
                if (r->rec && refs(im, r) != u32_at(r->rec + 48))
                        return bad(im, "region slot %u: the state counts %u references, its holds make %llu", s,
                                   u32_at(r->rec + 48), (unsigned long long)refs(im, r));
        }
        return 0;
}

/* ---- the log ---- */

static int apply(struct image *im, uint16_t type, const uint8_t *p, uint32_t n) {
        int e;

        switch (type) {
        case LOG_REGION: {
                uint64_t holder;
                uint32_t slot;
                if (n < 8 + REGION_MIN)
                        break;
                holder = u64_at(p);
                slot = u32_at(p + 8);
                if ((e = region_set(im, p + 8, n - 8, holder != 0)) < 0)
                        return e;
                if (holder) /* its first hold: a new region never stands without a reference */
                        return hold_set(im, slot, 1, holder, false);
                reap(im, slot);
                return 0;
        }
        case LOG_HOLD:
                if (n != 16)
                        break;
                return hold_set(im, u32_at(p), u32_at(p + 4), u64_at(p + 8), false);
        case LOG_CLIENT:
                return client_set(im, p, n);
        case LOG_CLIENT_GONE:
                if (n != 8)
                        break;
                return client_gone(im, u64_at(p));
        case LOG_POOL:
                return pool_set(im, p, n, false);
        case LOG_SERIAL:
                if (n != 8)
                        break;
                if (u64_at(p) > im->next_serial)
                        im->next_serial = u64_at(p);
                return 0;
        }
        return bad(im, "the state's log record of type %u (%u bytes) is malformed", type, n);
}

/* Whether the record at log is whole: its length within len, its CRC right (type 0: the zeros after the last). */
static bool whole(const uint8_t *log, size_t len) {
        uint16_t type, n;

        if (len < LOG_HEADER_LEN)
                return false;
        memcpy(&type, log + 4, 2);
        memcpy(&n, log + 6, 2);
        return type && n <= len - LOG_HEADER_LEN && u32_at(log) == state_crc32c(log + 4, 4 + (size_t)n);
}

/*
 * How many bytes after at are not the zeros a memfd grows by: a record cut short, or damage.  Only
 * as far as the longest record reaches: the rest of the room is never read (nor faulted in).
 */
static size_t torn(const uint8_t *log, size_t at, size_t len) {
        size_t end = len - at > LOG_HEADER_LEN + UINT16_MAX ? at + LOG_HEADER_LEN + UINT16_MAX : len;

        for (size_t k = at; k < end; k++)
                if (log[k])
                        return end - at;
        return 0;
}

/*
 * Whether the log is damaged at at, where its whole records end: a kill cuts short at most the record
 * it was writing, the last, so a whole record right after that one (as far as its length says) is
 * damage.  Replaying the records before it alone would restore regions freed since and lose regions
 * handed out since, into the stored memory that their holders still write: the whole state is
 * refused instead, and allocd starts with fresh pools.
 */
static int damaged_at(struct image *im, const uint8_t *log, size_t at, size_t len, uint64_t records) {
        uint16_t n;

        if (len - at < LOG_HEADER_LEN)
                return 0;
        memcpy(&n, log + at + 6, 2);
        size_t next = at + LOG_HEADER_LEN + n;
        if (next < len && whole(log + next, len - next))
                return bad(im,
                           "the state's log is damaged: record %llu (at byte %zu of the log) is broken and a whole "
                           "one follows it, which a kill cannot leave",
                           (unsigned long long)records + 1, at);
        return 0;
}

static int replay(struct image *im, const uint8_t *log, size_t len, struct state_info *info) {
        size_t at = 0;

        while (whole(log + at, len - at)) {
                uint16_t type, n;
                int e;

                memcpy(&type, log + at + 4, 2);
                memcpy(&n, log + at + 6, 2);
                if ((e = apply(im, type, log + at + LOG_HEADER_LEN, n)) < 0) {
                        size_t k = strlen(im->err);
                        snprintf(im->err + k, im->errsize - k, " (log record %llu, at byte %zu of the log)",
                                 (unsigned long long)info->records + 1, at);
                        return e;
                }
                info->records++;
                at += LOG_HEADER_LEN + n;
        }
        info->log_bytes = at;
        info->torn = torn(log, at, len);
        return info->torn ? damaged_at(im, log, at, len, info->records) : 0;
}

/* ---- the image as a snapshot's body ---- */

static uint8_t *rec(uint8_t *o, uint16_t type, const void *payload, uint32_t n) {
        uint16_t zero = 0;

        memcpy(o, &type, 2);
        memcpy(o + 2, &zero, 2);
        memcpy(o + 4, &n, 4);
        if (n)
                memcpy(o + 8, payload, n);
        return o + 8 + n;
}

static int rebuild(struct image *im, struct state_rebuilt *out) {
        uint32_t hi = 0, nregions = 0, nclients = 0, nholds = 0;
        uint64_t *pool_n = calloc(im->npools + 1, sizeof(*pool_n)), *bytes = calloc(im->nclients + 1, sizeof(*bytes));
        uint32_t *crefs = calloc(im->nclients + 1, sizeof(*crefs)), *order = malloc(((size_t)im->nholds + 1) * 4);
        size_t len = 8 + 32 + 8;
        uint8_t *o, core[32];

        if (!pool_n || !bytes || !crefs || !order)
                goto nomem;
        for (uint32_t i = 0; i < im->npools; i++)
                len += 8 + im->pools[i].len;
        for (uint32_t s = 0; s < im->nslots; s++) {
                const struct img_region *r = &im->regions[s];
                if (!r->rec)
                        continue;
                hi = s + 1;
                nregions++;
                len += 8 + r->len;
                uint32_t pool = u32_at(r->rec + 36);
                for (uint32_t i = 0; i < im->npools; i++)
                        if (u32_at(im->pools[i].rec) == pool)
                                pool_n[i]++;
                for (uint32_t h = r->holds; h != NONE; h = im->holds[h].next) {
                        uint32_t c = im->holds[h].client;
                        nholds++;
                        len += 8 + 16;
                        crefs[c] += im->holds[h].count; /* below 2^32: the restore refuses more */
                        if (u64_at(r->rec + 24) == u64_at(im->clients[c].rec))
                                bytes[c] += u64_at(r->rec + 16);
                }
        }
        for (uint32_t c = 0; c < im->nclients; c++)
                if (!im->clients[c].gone) {
                        nclients++;
                        len += 8 + im->clients[c].len;
                }
        if (!(o = out->body = malloc(len)))
                goto nomem;
        memcpy(core, &im->next_serial, 8);
        uint32_t counts[6] = {im->floor, hi, im->npools, nregions, nclients, nholds};
        memcpy(core + 8, counts, sizeof(counts));
        o = rec(o, REC_CORE, core, sizeof(core));
        for (uint32_t i = 0; i < im->npools; i++) {
                uint8_t *p = o + 8;
                o = rec(o, REC_POOL, im->pools[i].rec, im->pools[i].len);
                memcpy(p + 24, &pool_n[i], 8);
        }
        for (uint32_t c = 0; c < im->nclients; c++) {
                if (im->clients[c].gone)
                        continue;
                uint8_t *p = o + 8;
                o = rec(o, REC_CLIENT, im->clients[c].rec, im->clients[c].len);
                memcpy(p + 20, &crefs[c], 4);
                memcpy(p + 24, &bytes[c], 8);
        }
        for (uint32_t s = 0; s < im->nslots; s++) {
                const struct img_region *r = &im->regions[s];
                if (!r->rec)
                        continue;
                uint32_t n = (uint32_t)refs(im, r);
                uint8_t *p = o + 8;
                o = rec(o, REC_REGION, r->rec, r->len);
                memcpy(p + 48, &n, 4);
        }
        for (uint32_t s = 0; s < im->nslots; s++) {
                /* Oldest first, so that the restore's lists come out newest first, as the core had them. */
                uint32_t k = 0;
                for (uint32_t h = im->regions[s].rec ? im->regions[s].holds : NONE; h != NONE; h = im->holds[h].next)
                        order[k++] = h;
                while (k) {
                        const struct img_hold *h = &im->holds[order[--k]];
                        uint8_t p[16];
                        memcpy(p, &s, 4);
                        memcpy(p + 4, &h->count, 4);
                        memcpy(p + 8, im->clients[h->client].rec, 8);
                        o = rec(o, REC_HOLD, p, 16);
                }
        }
        o = rec(o, REC_END, NULL, 0);
        out->len = (size_t)(o - out->body);
        free(pool_n);
        free(bytes);
        free(crefs);
        free(order);
        return 0;
nomem:
        free(pool_n);
        free(bytes);
        free(crefs);
        free(order);
        return oom(im);
}

int state_log_apply(const uint8_t *body, size_t body_len, const uint8_t *log, size_t log_len, struct state_rebuilt *out,
                    struct state_info *info, char *err, size_t errsize) {
        struct image im = {.err = err, .errsize = errsize, .free_hold = NONE};
        int e;

        *out = (struct state_rebuilt){0};
        info->records = info->log_bytes = info->torn = 0;
        if (!whole(log, log_len)) { /* a snapshot alone: read as it is, unless its log is damaged */
                info->torn = torn(log, 0, log_len);
                return info->torn ? damaged_at(&im, log, 0, log_len, 0) : 0;
        }
        if ((e = snapshot(&im, body, body_len)) == 0 && (e = replay(&im, log, log_len, info)) == 0 && info->records)
                e = rebuild(&im, out);
        free(im.pools);
        free(im.regions);
        free(im.holds);
        free(im.clients);
        free(im.hash);
        return e;
}
