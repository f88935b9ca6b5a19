/* SPDX-License-Identifier: MIT */
/*
 * The core's state as bytes, for a successor allocd (issue 18).
 *
 * Format, version 2 (host byte order: a state never leaves the machine that wrote it):
 *
 *   header, 32 bytes: "ALLOCDST", u32 version, u32 header length (32), u64 body length,
 *                     u32 CRC-32C of the body, u32 CRC-32C of the header's first 28 bytes
 *   body:             records, each u16 type, u16 0, u32 payload length, payload
 *
 * Records come in this order, one CORE first and one END last:
 *   CORE    u64 next serial, u32 gen floor, u32 slot capacity, u32 pools, regions, clients, holds
 *   POOL    u32 id, kind, isolation, 0, u64 bytes, regions; string name
 *   USAGE   u32 pool id, uid, u64 bytes              (what the pool charges each uid)
 *   USER    u32 uid, names, PERSIST regions          (uids with either)
 *   CLIENT  u64 serial, u32 uid, gid, pid, refs, u64 bytes; strings name, comm; 16 bytes secret
 *           (every holder)
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
 * valid), the same offset (range_alloc in the window [offset, offset + size)); a reader that
 * fails part way unwinds through the ordinary paths (holds released, PERSIST and the restore's
 * own reference dropped) and leaves the core as it was.  Generations: every free slot comes back
 * at the gen floor, which the writer raises to the highest gen any slot had, so no id is reused.
 *
 * A holder comes back as an absent client: a placeholder struct client of its serial, uid and
 * pid, in the core's client list (so Dump shows its holds, limits count it, core_client_remove
 * releases it), owned by the core (core->absent).  The next steps (not here): a reconnecting
 * client proves it is that serial (a secret from Hello, a new field of CLIENT) and takes the
 * placeholder's holds over; a grace time releases the placeholders left; regions of isolation =
 * region pools come back with their memfds from the fd store (refused here until then).
 *
 * Step 2, keeping the state current cheaply: the records above are also the entries of an append
 * log.  The memfd holds a snapshot (this format) followed by batches, each a header with its own
 * length and CRC and records that change one key each (REGION and HOLD by slot and serial, with a
 * count of 0 or a REGION_GONE record to delete, USER and USAGE by uid), written once per loop turn
 * for the requests that turn answered; a reader applies the snapshot, then each batch whose CRC
 * holds, stopping at the first that does not (a crash mid-write loses that turn only).  When the
 * log outgrows the snapshot, a new snapshot is written to a new memfd and swapped in the fd store.
 * The alternative, an in-place table of fixed 64-byte REGION slots in the memfd (names and tags
 * apart), rewrites one slot per change with no compaction but needs per-slot checksums; issue 18
 * asks for both measured.
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

enum { REC_CORE = 1, REC_POOL, REC_USAGE, REC_USER, REC_CLIENT, REC_REGION, REC_HOLD, REC_END };

#define MAGIC "ALLOCDST"
#define HEADER_LEN 32

/* ---- CRC-32C (Castagnoli): every error of 32 bits or fewer in a row is caught ---- */

static uint32_t crc_tab[256];

uint32_t state_crc32c(const uint8_t *p, size_t n) {
        uint32_t c = ~0u;

        if (!crc_tab[1])
                for (uint32_t i = 0; i < 256; i++) {
                        uint32_t x = i;
                        for (int k = 0; k < 8; k++)
                                x = x & 1 ? x >> 1 ^ 0x82f63b78u : x >> 1;
                        crc_tab[i] = x;
                }
        while (n--)
                c = crc_tab[(c ^ *p++) & 0xff] ^ c >> 8;
        return ~c;
}

/* ---- writing ---- */

struct out {
        uint8_t *b;
        size_t len, cap;
        size_t rec; /* the open record's start */
        int err;
};

static void put(struct out *o, const void *v, size_t n) {
        if (o->err)
                return;
        if (o->len + n > o->cap) {
                size_t cap = o->cap ? o->cap * 2 : 4096;
                while (cap < o->len + n)
                        cap *= 2;
                uint8_t *b = realloc(o->b, cap);
                if (!b) {
                        o->err = -ENOMEM;
                        return;
                }
                o->b = b;
                o->cap = cap;
        }
        if (n)
                memcpy(o->b + o->len, v, n);
        o->len += n;
}

#define PUT(o, type, v)                                                                                                \
        do {                                                                                                           \
                type v_ = (type)(v);                                                                                   \
                put(o, &v_, sizeof(v_));                                                                               \
        } while (0)

static void put_str(struct out *o, const char *s) {
        size_t n = s ? strlen(s) : 0;

        PUT(o, uint16_t, n);
        put(o, s, n);
}

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

static int find_pending(const struct core *core, struct pending *pd) {
        const struct regions *rt = &core->regions;
        size_t cap = 0;

        *pd = (struct pending){0};
        for (uint32_t s = 0; s < rt->slots.hi; s++) {
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

static void put_region(struct out *o, const struct core *core, uint32_t s) {
        const struct region *r = &core->regions.tab[s];

        begin(o, REC_REGION);
        PUT(o, uint32_t, s);
        PUT(o, uint32_t, r->gen);
        PUT(o, uint64_t, r->offset);
        PUT(o, uint64_t, r->size);
        PUT(o, uint64_t, r->creator);
        PUT(o, uint32_t, r->created);
        PUT(o, uint32_t, r->pool);
        PUT(o, uint32_t, r->uid);
        PUT(o, int32_t, r->pid);
        PUT(o, uint32_t, r->refs);
        PUT(o, uint16_t, r->flags);
        PUT(o, uint8_t, r->state);
        PUT(o, uint8_t, r->format);
        if (r->format != FMT_RAW) {
                struct region_format f;
                formats_get(&core->regions.formats, s, &f);
                PUT(o, uint64_t, f.heap_size);
                PUT(o, uint64_t, f.chunk_size);
                PUT(o, uint64_t, f.chunk_count);
        }
        put_str(o, r->name ? names_text(&core->names, r->name) : NULL);
        end(o);
}

static void put_body(struct out *o, const struct core *core, uint64_t next_serial) {
        const struct regions *rt = &core->regions;
        const struct holds *h = &rt->holds;
        uint32_t nregions = 0, nclients = 0, nholds = 0, floor = rt->gen_floor;
        const struct client *cl;
        struct pending pd;

        if ((o->err = find_pending(core, &pd)) < 0)
                return;

        for (uint32_t s = 0; s < rt->slots.cap; s++)
                floor = rt->tab[s].gen > floor ? rt->tab[s].gen : floor;
        for (uint32_t s = 0; s < rt->slots.hi; s++)
                nregions += written(&rt->tab[s]);
        TAILQ_FOREACH(cl, &core->clients, link) {
                nclients += cl->holds != HOLD_NONE;
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
                begin(o, REC_POOL);
                PUT(o, uint32_t, p->id);
                PUT(o, uint32_t, p->conf.kind);
                PUT(o, uint32_t, p->conf.isolation);
                PUT(o, uint32_t, 0);
                PUT(o, uint64_t, p->total);
                PUT(o, uint64_t, n);
                put_str(o, p->conf.name);
                end(o);
        }
        put_usage(o, core, &pd);
        free(pd.slot);
        TAILQ_FOREACH(cl, &core->clients, link) {
                if (cl->holds == HOLD_NONE)
                        continue;
                begin(o, REC_CLIENT);
                PUT(o, uint64_t, cl->serial);
                PUT(o, uint32_t, cl->uid);
                PUT(o, uint32_t, cl->gid);
                PUT(o, int32_t, cl->pid);
                PUT(o, uint32_t, cl->nrefs);
                PUT(o, uint64_t, cl->bytes);
                put_str(o, cl->name);
                put_str(o, cl->comm);
                put(o, cl->secret, sizeof(cl->secret));
                end(o);
        }
        for (uint32_t s = 0; s < rt->slots.hi; s++)
                if (written(&rt->tab[s]))
                        put_region(o, core, s);
        TAILQ_FOREACH(cl, &core->clients, link) {
                for (uint32_t i = cl->holds; i != HOLD_NONE; i = h->tab[i].cnext) {
                        begin(o, REC_HOLD);
                        PUT(o, uint32_t, h->tab[i].slot);
                        PUT(o, uint32_t, h->tab[i].count);
                        PUT(o, uint64_t, cl->serial);
                        end(o);
                }
        }
        begin(o, REC_END);
        end(o);
}

int state_write(const struct core *core, uint64_t next_serial, void **ret_buf, size_t *ret_len) {
        struct out o = {0};
        uint32_t crc;

        put(&o, MAGIC, 8);
        PUT(&o, uint32_t, STATE_VERSION);
        PUT(&o, uint32_t, HEADER_LEN);
        PUT(&o, uint64_t, 0);
        PUT(&o, uint64_t, 0);
        put_body(&o, core, next_serial);
        if (o.err) {
                free(o.b);
                return o.err;
        }
        uint64_t body = o.len - HEADER_LEN;
        memcpy(o.b + 16, &body, sizeof(body));
        crc = state_crc32c(o.b + HEADER_LEN, body);
        memcpy(o.b + 24, &crc, sizeof(crc));
        crc = state_crc32c(o.b, 28);
        memcpy(o.b + 28, &crc, sizeof(crc));
        *ret_buf = o.b;
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
