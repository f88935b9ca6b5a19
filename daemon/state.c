/* SPDX-License-Identifier: MIT */
/*
 * The core's state as bytes, for a successor allocd (issue 18).
 *
 * Format, version 5 (host byte order: a state never leaves the machine that wrote it): a snapshot,
 * then an append log (keep.c writes both into one memfd; state_write writes a snapshot alone).
 *
 *   header, 40 bytes: "ALLOCDST", u32 version, u32 header length (40), u64 snapshot body length,
 *                     u64 epoch, u32 CRC-32C of the body, u32 CRC-32C of the header's first 36 bytes
 *   body:             records, each u16 type, u16 0, u32 payload length, payload
 *   log:              whatever follows the body: records, each u32 CRC-32C of the rest, u16 type,
 *                     u16 payload length, payload; zeros after the last (a memfd grows in steps)
 *
 * The snapshot's records come in this order, one CORE first and one END last:
 *   CORE    u64 next serial, u32 gen floor, u32 slot capacity, u32 pools, regions, clients, holds
 *   POOL    u32 id, kind, isolation, 0, u64 bytes, regions; string name
 *   USAGE   u32 pool id, uid, u64 bytes              (what the pool charges each uid)
 *   USER    u32 uid, names, PERSIST regions          (uids with either)
 *   CLIENT  u64 serial, u32 uid, gid, pid, refs, u64 bytes; strings name, comm; 16 bytes secret;
 *           u64 its process's start (proc_stat; version 5: a record of 3 or 4 ends at the secret, the
 *           start unknown) (every connection; the reader keeps only those with references)
 *   REGION  u32 slot, gen, u64 offset, size, creator, u32 created, pool id, uid, pid, refs,
 *           u16 flags, u8 state, u8 format, [u64 heap size, chunk size, chunk count]; string name
 *   HOLD    u32 slot, count, u64 serial
 *   END
 * A string is a u16 length and its bytes, no NUL.  Strings and formats make REGION records vary
 * in length; each record says its own, so a reader skips nothing and refuses any byte left over.
 *
 * Accounting is never trusted: the reader recounts every pool's bytes per uid and regions, every
 * uid's names and PERSIST, every holder's references and bytes from the regions and holds, and
 * refuses a state whose USAGE, USER, POOL and CLIENT records disagree (a writer's bug, or damage
 * the checksums missed).  Regions are restored in place: the same slot and gen (so ids stay
 * valid), the same offset (range_reserve); a reader that
 * fails part way unwinds through the ordinary paths (holds released, PERSIST and the restore's
 * own reference dropped) and leaves the core as it was.  Generations: every free slot comes back
 * at the gen floor, which the writer raises to the highest gen any slot had, so no id is reused.
 *
 * A holder comes back as an absent client: a placeholder struct client of its serial, uid and
 * pid, in the core's client list (so Dump shows its holds, limits count it, core_client_remove
 * releases it), owned by the core (core->absent).  A reconnecting client proves it is that
 * serial (the secret) and takes the placeholder's holds over; a grace time releases the rest;
 * regions of isolation = region pools come back with their memfds from the fd store (refused
 * here until then).
 *
 * The log keeps the state current cheaply (keep.c): every change the core makes to what a
 * snapshot holds is one record, appended through a mapping of the memfd before the call that made
 * it returns, so a reply sent after it is covered even if allocd is killed the next instant.  A
 * record sets one key: LOG_REGION a region whole (as its REGION payload; a new one comes with its
 * first hold, so that no record leaves a region nobody references), LOG_HOLD one (slot, serial)
 * count, LOG_CLIENT and LOG_CLIENT_GONE one connection, LOG_SERIAL the next serial, LOG_POOL a
 * pool a reload added (or made at last: a pool keeps its id) as its POOL record, so that a region
 * of it in the log has its pool in the state (version 3 lacked it; this allocd reads 3 too).  References
 * are derived: a region's are its holds' counts plus one for PERSIST, and a region left with none
 * after a record is gone, as it went in the core.  So a record never needs its neighbours to make
 * sense, each carries its own CRC, and a kill half way through one loses that change only (its
 * call had not returned).  Accounting, generations, slot capacity and the CORE counts are derived
 * on replay too (state-log.c): the reader applies the log to an image of the snapshot (pointers to
 * the latest record of each key), then restores that image as a snapshot, with all the checks
 * above.  When the log is over twice the snapshot (and 1 MiB), keep_turn writes a new snapshot
 * into a new memfd with the next epoch (compaction); the fd store may hold both for a moment, and
 * the higher epoch wins.  The ratio weighs a change's cost (a compaction spread over the log that
 * paid for it) against a restore's (the log replayed): docs/PERFORMANCE.md, "Keeping the state",
 * which also weighs the alternative, an in-place table of fixed slots in the memfd.
 *
 * What a kill -9 can lose: nothing a reply was sent for.  A change is in the memfd before its call
 * returns; only a record cut short by the kill itself is dropped, and its call never returned.
 * What it can keep that no client heard of: a change made but not yet answered (a region handed
 * out, its reply still queued; the first regions of a batch refused part way, before they went
 * again): its holder's placeholder holds it until reclaimed or released at the grace time.
 * What the log does not hold: regions still being zeroed (never answered; their memory goes back),
 * waiters (their requests were never answered), and what a failed append left out (keep.c: the
 * next loop turn writes a whole snapshot; if that fails too, keep_turn says so).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core-impl.h"
#include "state.h"

#define MAGIC "ALLOCDST"
#define HEADER_LEN STATE_HEADER_LEN

/* ---- CRC-32C (Castagnoli): every error of 32 bits or fewer in a row is caught ---- */

static uint32_t crc_tab[256];

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n) {
        if (!crc_tab[1])
                for (uint32_t i = 0; i < 256; i++) {
                        uint32_t x = i;
                        for (int k = 0; k < 8; k++)
                                x = x & 1 ? x >> 1 ^ 0x82f63b78u : x >> 1;
                        crc_tab[i] = x;
                }
        while (n--)
                c = crc_tab[(c ^ *p++) & 0xff] ^ c >> 8;
        return c;
}

#if defined(__x86_64__)
/* SSE 4.2's crc32 is this polynomial: 8 bytes a step, so a record costs nanoseconds and 1M regions milliseconds. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n) {
        uint64_t c64 = c, v;

        for (; n >= 8; p += 8, n -= 8) {
                memcpy(&v, p, 8);
                c64 = __builtin_ia32_crc32di(c64, v);
        }
        c = (uint32_t)c64;
        while (n--)
                c = __builtin_ia32_crc32qi(c, *p++);
        return c;
}
#endif

uint32_t state_crc32c(const uint8_t *p, size_t n) {
#if defined(__x86_64__)
        static int hw = -1;

        if (hw < 0)
                hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        if (hw)
                return ~crc_hw(~0u, p, n);
#endif
        return ~crc_soft(~0u, p, n);
}

int state_header(const void *buf, size_t len, uint64_t *epoch, uint64_t *body_len) {
        const uint8_t *b = buf;
        uint32_t v, hlen, crc;

        if (len < HEADER_LEN || memcmp(b, MAGIC, 8) != 0)
                return -EBADMSG;
        memcpy(&v, b + 8, 4);
        memcpy(&hlen, b + 12, 4);
        memcpy(&crc, b + 36, 4);
        if (v < STATE_VERSION_MIN || v > STATE_VERSION) /* before the checksum: an older header is shorter */
                return -EPROTO;
        if (crc != state_crc32c(b, 36) || hlen != HEADER_LEN)
                return -EBADMSG;
        memcpy(body_len, b + 16, 8);
        memcpy(epoch, b + 24, 8);
        return 0;
}

static uint32_t slots_max = STATE_SLOTS_MAX;

uint32_t state_slots_max(void) {
        return slots_max;
}

void state_limit_slots(uint32_t max) {
        slots_max = max < STATE_SLOTS_MAX ? max : STATE_SLOTS_MAX;
}

/* ---- writing ---- */

/* A buffer of the bound's size (state_snapshot_bound): written straight into a memfd's mapping, never grown. */
struct out {
        uint8_t *b;
        size_t len, cap;
        size_t rec; /* the open record's start */
        int err;
};

static void put(struct out *o, const void *v, size_t n) {
        if (o->err)
                return;
        if (o->len + n > o->cap) { /* a bound that was wrong: a bug, but no overrun */
                o->err = -ENOSPC;
                return;
        }
        if (n && v) /* v NULL: room only (reserve) */
                memcpy(o->b + o->len, v, n);
        o->len += n;
}

#define PUT(o, type, v)                                                                                                \
        do {                                                                                                           \
                type v_ = (type)(v);                                                                                   \
                put(o, &v_, sizeof(v_));                                                                               \
        } while (0)

static void begin(struct out *o, uint16_t type) {
        o->rec = o->len;
        PUT(o, uint16_t, type);
        PUT(o, uint16_t, 0);
        PUT(o, uint32_t, 0);
}

static void end(struct out *o) {
        uint32_t n = (uint32_t)(o->len - o->rec - 8);

        if (!o->err)
                memcpy(o->b + o->rec + 4, &n, sizeof(n));
}

static bool written(const struct region *r) {
        return (r->state & R_LIVE) && !(r->state & R_PENDING);
}

/*
 * The pending regions (made, not yet handed out), which the state leaves out: there are few (a
 * worker is zeroing them), so the counts below subtract them by walking this list rather than
 * the whole table once per pool, uid and user.
 */
struct pending {
        uint32_t *slot;
        size_t n;
};

/* With the gen floor: the highest gen any slot had.  One pass over the table, which is 64 MB at 1M regions. */
static int find_pending(const struct core *core, struct pending *pd, uint32_t *floor) {
        const struct regions *rt = &core->regions;
        size_t cap = 0;

        *pd = (struct pending){0};
        *floor = rt->gen_floor;
        for (uint32_t s = 0; s < rt->slots.cap; s++) {
                *floor = rt->tab[s].gen > *floor ? rt->tab[s].gen : *floor;
                if (!(rt->tab[s].state & R_PENDING))
                        continue;
                if (pd->n == cap) {
                        uint32_t *n = reallocarray(pd->slot, cap = cap ? 2 * cap : 16, sizeof(*n));
                        if (!n) {
                                free(pd->slot);
                                return -ENOMEM;
                        }
                        pd->slot = n;
                }
                pd->slot[pd->n++] = s;
        }
        return 0;
}

/* What the core counts, less the regions left out (pending ones): the reader's recount must agree. */
static void put_usage(struct out *o, const struct core *core, const struct pending *pd) {
        const struct region *tab = core->regions.tab;

        for (size_t i = 0; i < core->npools; i++) {
                const struct pool *p = core->pools[i];
                for (size_t u = 0; u < p->nusage; u++) {
                        uint64_t bytes = p->usage[u].bytes;
                        for (size_t k = 0; k < pd->n; k++)
                                if (tab[pd->slot[k]].pool == p->id && tab[pd->slot[k]].uid == p->usage[u].uid)
                                        bytes -= tab[pd->slot[k]].size;
                        if (!bytes)
                                continue;
                        begin(o, REC_USAGE);
                        PUT(o, uint32_t, p->id);
                        PUT(o, uint32_t, p->usage[u].uid);
                        PUT(o, uint64_t, bytes);
                        end(o);
                }
        }
        for (const struct user *u = core->users; u; u = u->next) {
                uint32_t names = u->names, persist = u->persist;
                for (size_t k = 0; k < pd->n; k++) {
                        const struct region *r = &tab[pd->slot[k]];
                        if (r->uid == u->uid) {
                                names -= r->name != 0;
                                persist -= !!(r->state & R_PERSIST);
                        }
                }
                if (!names && !persist)
                        continue;
                begin(o, REC_USER);
                PUT(o, uint32_t, u->uid);
                PUT(o, uint32_t, names);
                PUT(o, uint32_t, persist);
                end(o);
        }
}

/* Room for n more bytes at o->b + o->len, or NULL (o->err set). */
static uint8_t *reserve(struct out *o, size_t n) {
        size_t len = o->len;

        put(o, NULL, n);
        o->len = len;
        return o->err ? NULL : o->b + len;
}

#define W(p, type, v)                                                                                                  \
        do {                                                                                                           \
                type w_ = (type)(v);                                                                                   \
                memcpy(p, &w_, sizeof(w_));                                                                            \
                p += sizeof(w_);                                                                                       \
        } while (0)

static uint8_t *w_str(uint8_t *p, const char *s) {
        size_t n = s ? strlen(s) : 0;

        W(p, uint16_t, n);
        if (n)
                memcpy(p, s, n);
        return p + n;
}

size_t state_region_payload(const struct core *core, uint32_t s, uint8_t *p) {
        const struct region *r = &core->regions.tab[s];
        uint8_t *start = p;

        W(p, uint32_t, s);
        W(p, uint32_t, r->gen);
        W(p, uint64_t, r->offset);
        W(p, uint64_t, r->size);
        W(p, uint64_t, r->creator);
        W(p, uint32_t, r->created);
        W(p, uint32_t, r->pool);
        W(p, uint32_t, r->uid);
        W(p, int32_t, r->pid);
        W(p, uint32_t, r->refs);
        W(p, uint16_t, r->flags);
        W(p, uint8_t, r->state);
        W(p, uint8_t, r->format);
        if (r->format != FMT_RAW) {
                struct region_format f;
                formats_get(&core->regions.formats, s, &f);
                W(p, uint64_t, f.heap_size);
                W(p, uint64_t, f.chunk_size);
                W(p, uint64_t, f.chunk_count);
        }
        p = w_str(p, r->name ? names_text(&core->names, r->name) : NULL);
        return (size_t)(p - start);
}

size_t state_client_payload(const struct client *cl, uint8_t *p) {
        uint8_t *start = p;

        W(p, uint64_t, cl->serial);
        W(p, uint32_t, cl->uid);
        W(p, uint32_t, cl->gid);
        W(p, int32_t, cl->pid);
        W(p, uint32_t, cl->nrefs);
        W(p, uint64_t, cl->bytes);
        p = w_str(p, cl->name);
        p = w_str(p, cl->comm);
        memcpy(p, cl->secret, sizeof(cl->secret));
        p += sizeof(cl->secret);
        W(p, uint64_t, cl->start);
        return (size_t)(p - start);
}

size_t state_pool_payload(const struct pool *pl, uint64_t nregions, uint8_t *p) {
        uint8_t *start = p;

        W(p, uint32_t, pl->id);
        W(p, uint32_t, pl->conf.kind);
        W(p, uint32_t, pl->conf.isolation);
        /* log2 of the quantum, + 1 (0: not said, as by a state written before): a larger one cannot take its regions.
         */
        W(p, uint32_t, (uint32_t)(pl->conf.quantum ? __builtin_ctzll(pl->conf.quantum) + 1 : 0));
        W(p, uint64_t, pl->total);
        W(p, uint64_t, nregions);
        return (size_t)(w_str(p, pl->conf.name) - start);
}

static void put_region(struct out *o, const struct core *core, uint32_t s) {
        uint8_t *p;

        begin(o, REC_REGION);
        if ((p = reserve(o, STATE_REGION_MAX)))
                o->len += state_region_payload(core, s, p);
        end(o);
}

static void put_body(struct out *o, const struct core *core, uint64_t next_serial) {
        const struct regions *rt = &core->regions;
        const struct holds *h = &rt->holds;
        uint32_t nregions, nclients = 0, nholds = 0, floor;
        const struct client *cl;
        struct pending pd;

        if ((o->err = find_pending(core, &pd, &floor)) < 0)
                return;
        nregions = rt->slots.used - (uint32_t)pd.n;
        TAILQ_FOREACH(cl, &core->clients, link) {
                nclients++;
                for (uint32_t i = cl->holds; i != HOLD_NONE; i = h->tab[i].cnext)
                        nholds++;
        }
        begin(o, REC_CORE);
        PUT(o, uint64_t, next_serial);
        PUT(o, uint32_t, floor);
        PUT(o, uint32_t, rt->slots.hi);
        PUT(o, uint32_t, core->npools);
        PUT(o, uint32_t, nregions);
        PUT(o, uint32_t, nclients);
        PUT(o, uint32_t, nholds);
        end(o);
        for (size_t i = 0; i < core->npools; i++) {
                const struct pool *p = core->pools[i];
                uint64_t n = p->nregions;
                for (size_t k = 0; k < pd.n; k++)
                        n -= rt->tab[pd.slot[k]].pool == p->id;
                uint8_t *rec;
                begin(o, REC_POOL);
                if ((rec = reserve(o, STATE_POOL_MAX)))
                        o->len += state_pool_payload(p, n, rec);
                end(o);
        }
        put_usage(o, core, &pd);
        free(pd.slot);
        TAILQ_FOREACH(cl, &core->clients, link) {
                /* Every connection, even one holding nothing yet: the log names it from now on. */
                uint8_t *p;
                begin(o, REC_CLIENT);
                if ((p = reserve(o, STATE_CLIENT_MAX)))
                        o->len += state_client_payload(cl, p);
                end(o);
        }
        for (uint32_t s = 0; s < rt->slots.hi; s++)
                if (written(&rt->tab[s]))
                        put_region(o, core, s);
        /* By region, oldest first: the restore adds each at its list's head, so Dump lists holders as it did. */
        for (uint32_t s = 0; s < rt->slots.hi; s++) {
                uint32_t i = written(&rt->tab[s]) ? rt->tab[s].holds : HOLD_NONE;
                while (i != HOLD_NONE && h->tab[i].rnext != HOLD_NONE)
                        i = h->tab[i].rnext;
                for (; i != HOLD_NONE; i = h->tab[i].rprev) {
                        begin(o, REC_HOLD);
                        PUT(o, uint32_t, s);
                        PUT(o, uint32_t, h->tab[i].count);
                        PUT(o, uint64_t, h->tab[i].cl->serial);
                        end(o);
                }
        }
        begin(o, REC_END);
        end(o);
}

int state_write(const struct core *core, uint64_t next_serial, void **ret_buf, size_t *ret_len) {
        return state_snapshot(core, next_serial, 0, ret_buf, ret_len);
}

size_t state_snapshot_bound(const struct core *core) {
        size_t n = HEADER_LEN + 8 + 32 + 8, users = 0;

        for (size_t i = 0; i < core->npools; i++)
                n += 8 + 32 + 2 + POOL_NAME_MAX_LEN + core->pools[i]->nusage * (8 + 16);
        for (const struct user *u = core->users; u; u = u->next)
                users++;
        return n + users * (8 + 12) + (size_t)core->nclients * (8 + STATE_CLIENT_MAX) +
               (size_t)core->regions.slots.used * (8 + STATE_REGION_MAX) + (size_t)core->regions.holds.slots.used * 24;
}

int state_snapshot(const struct core *core, uint64_t next_serial, uint64_t epoch, void **ret_buf, size_t *ret_len) {
        size_t cap = state_snapshot_bound(core);
        uint8_t *b = malloc(cap);
        int e;

        if (!b)
                return -ENOMEM;
        if ((e = state_snapshot_into(core, next_serial, epoch, b, cap, ret_len)) < 0) {
                free(b);
                return e;
        }
        *ret_buf = b;
        return 0;
}

int state_snapshot_into(const struct core *core, uint64_t next_serial, uint64_t epoch, uint8_t *buf, size_t cap,
                        size_t *ret_len) {
        struct out o = {.b = buf, .cap = cap};
        uint32_t crc;

        put(&o, MAGIC, 8);
        PUT(&o, uint32_t, STATE_VERSION);
        PUT(&o, uint32_t, HEADER_LEN);
        PUT(&o, uint64_t, 0);
        PUT(&o, uint64_t, epoch);
        PUT(&o, uint64_t, 0);
        put_body(&o, core, next_serial);
        if (o.err)
                return o.err;
        uint64_t body = o.len - HEADER_LEN;
        memcpy(o.b + 16, &body, sizeof(body));
        crc = state_crc32c(o.b + HEADER_LEN, body);
        memcpy(o.b + 32, &crc, sizeof(crc));
        crc = state_crc32c(o.b, 36);
        memcpy(o.b + 36, &crc, sizeof(crc));
        *ret_len = o.len;
        return 0;
}

int state_write_memfd(const struct core *core, uint64_t next_serial, int *ret_fd) {
        void *buf;
        size_t len, done = 0;
        int fd, e;

        if ((e = state_write(core, next_serial, &buf, &len)) < 0)
                return e;
        if ((fd = memfd_create("allocd-state", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0) {
                e = -errno;
                free(buf);
                return e;
        }
        while (done < len) {
                ssize_t n = write(fd, (char *)buf + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        e = n < 0 ? -errno : -EIO;
                        free(buf);
                        close(fd);
                        return e;
                }
                done += (size_t)n;
        }
        free(buf);
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0 ||
            lseek(fd, 0, SEEK_SET) < 0) {
                e = -errno;
                close(fd);
                return e;
        }
        *ret_fd = fd;
        return 0;
}
