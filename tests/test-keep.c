/* SPDX-License-Identifier: MIT */
/*
 * The state kept as the core changes (daemon/keep.c, the log in state.c's theory comment): random
 * operations with a keep on, and after every few the memfd copied and read into a fresh core,
 * which must show what the live one does; every cut of the last records gives the state at a
 * record's edge; every damaged byte drops the tail from its record on; a record that contradicts
 * the state is refused; compactions happen in the middle of it all.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core-check.h"
#include "core-impl.h"
#include "keep.h"
#include "state-util.h"
#include "state.h"

#define NCL CHECK_CLIENTS_MAX

/* The live side: a core with a keep, its connections, its zeroing jobs. */
struct world {
        struct core *core;
        struct keep *keep;
        struct client cl[NCL];
        bool on[NCL];
        uint32_t jobs[16], job_cl[16], njobs;
        uint64_t serial, rng;
        unsigned names;
};

static struct core *memory; /* whose pools' memory a restored core gets */

static uint64_t rnd(struct world *w, uint64_t n) {
        w->rng ^= w->rng << 13;
        w->rng ^= w->rng >> 7;
        w->rng ^= w->rng << 17;
        return w->rng % n;
}

static void world_new(struct world *w, uint64_t seed, size_t log_min) {
        *w = (struct world){.core = state_core(true), .serial = 1, .rng = seed * 0x9e3779b97f4a7c15ull | 1};
        cr_assert_eq(keep_new(&w->keep, w->core, w->serial, 1), 0);
        memory = w->core;
        keep_set_log_min(w->keep, log_min);
}

static void world_free(struct world *w) {
        struct core_result res;

        for (uint32_t j = 0; j < w->njobs; j++)
                core_zero_done(w->core, &w->cl[w->job_cl[j]], w->jobs[j], 0, &res);
        for (int i = 0; i < NCL; i++)
                if (w->on[i])
                        core_client_remove(w->core, &w->cl[i]);
        keep_free(w->keep);
        core_free(w->core);
}

/* The memfd as the fd store would hand it to a successor. */
static uint8_t *copy_state(struct world *w, size_t *len) {
        struct stat sb;
        int fd = keep_fd(w->keep);

        cr_assert_eq(fstat(fd, &sb), 0);
        uint8_t *b = malloc((size_t)sb.st_size);
        cr_assert_eq(pread(fd, b, (size_t)sb.st_size, 0), sb.st_size);
        *len = (size_t)sb.st_size;
        return b;
}

/* Where the log ends in the memfd now. */
static size_t log_end(struct world *w) {
        uint8_t h[STATE_HEADER_LEN];
        uint64_t body;

        cr_assert_eq(pread(keep_fd(w->keep), h, sizeof(h), 0), (ssize_t)sizeof(h));
        memcpy(&body, h + 16, 8);
        return STATE_HEADER_LEN + body + keep_log_bytes(w->keep);
}

/*
 * The bytes of c's regions in pool b, from memory's pool: the heaps allocd wrote, which are all the
 * check reads of a pool.  A copy of the whole 16 MiB pool at each of the thousands of reads (each
 * into a fresh memfd, every page faulted in) took most of this file's time, which came to 547 s of
 * meson's 600 under a loaded CI.
 */
static void copy_regions(struct core *c) {
        for (uint32_t slot = 0; slot < c->regions.slots.hi; slot++) {
                const struct region *r = &c->regions.tab[slot];
                if (r->state && r->pool == 1 && r->fd < 0)
                        memcpy((char *)c->pools[1]->map + r->offset, (const char *)memory->pools[1]->map + r->offset,
                               r->size);
        }
}

/*
 * buf read into a fresh core: its dump, or NULL when refused (the core then left as it was).  The
 * pools' memory is the live core's, as the fd store would hand it over: the heaps allocd wrote.
 */
static char *restored(const uint8_t *buf, size_t len, struct state_info *info, int *ret, bool check) {
        struct core *c = state_core(true);
        char err[512], *empty = state_dump(c), *d = NULL;
        uint64_t serial;
        struct state_info si;
        int e = state_read_info(c, buf, len, &serial, &si, err, sizeof(err));

        if (e == 0) {
                d = state_dump(c);
                if (check && c->nabsent <= CHECK_CLIENTS_MAX) {
                        copy_regions(c);
                        state_check(c);
                }
                if (info)
                        *info = si;
        } else {
                char *after = state_dump(c);
                cr_assert_neq(err[0], '\0');
                cr_assert_str_eq(after, empty, "a refused state changed the core: %s", err);
                free(after);
        }
        if (ret)
                *ret = e;
        else
                cr_assert_eq(e, 0, "%s", err);
        free(empty);
        state_drop_absent(c);
        core_free(c);
        return d;
}

static int pick_client(struct world *w) {
        int i = (int)rnd(w, NCL);

        for (int k = 0; k < NCL; k++, i = (i + 1) % NCL)
                if (w->on[i])
                        return i;
        return -1;
}

/* A live region's id (or a stale one now and then), found from a random slot. */
static uint64_t pick_region(struct world *w, uint32_t *slot) {
        uint32_t s = (uint32_t)rnd(w, w->core->regions.slots.hi + 1);

        if (!core_region_next(w->core, &s)) {
                s = 0;
                if (!core_region_next(w->core, &s))
                        return 1;
        }
        *slot = s;
        return region_id(&w->core->regions, s) + (rnd(w, 20) == 0 ? 1ull << 32 : 0);
}

static void op_alloc(struct world *w, int i) {
        char name[32] = "";
        bool b = rnd(w, 2), zeroing = b && rnd(w, 12) == 0 && w->njobs < 16;
        uint32_t flags = rnd(w, 4) == 0 ? F_PERSIST : 0, slot;
        struct core_result res;

        if (rnd(w, 3) == 0 || (flags & F_PERSIST))
                snprintf(name, sizeof(name), "n%u", w->names++);
        if (*name && rnd(w, 4) == 0)
                flags |= F_UNSEALED;
        struct alloc_request a = {.pool = b ? "b" : "a",
                                  .size = zeroing ? 2u << 20 : 4096 * (1 + rnd(w, 8)),
                                  .numa_node = -1,
                                  .flags = flags | (zeroing ? F_ZERO | F_NOWAIT : F_NOWAIT),
                                  .name = name,
                                  .format = b && !zeroing && rnd(w, 6) == 0 ? FMT_FALLOC : FMT_RAW,
                                  .chunk_size = 256};
        if (core_alloc(w->core, &w->cl[i], 0, &a, &slot, &res) == GRANT_ZEROING) {
                w->job_cl[w->njobs] = (uint32_t)i;
                w->jobs[w->njobs++] = slot;
        }
}

static void op_batch(struct world *w, int i) {
        uint64_t sizes[8], ids[8];
        uint32_t slots[8];
        size_t n = 1 + rnd(w, 8), k = 0;
        struct core_result res;
        const struct holds *h = &w->core->regions.holds;

        for (size_t j = 0; j < n; j++)
                sizes[j] = 4096 * (1 + rnd(w, 4));
        struct alloc_request a = {.pool = rnd(w, 2) ? "a" : "b", .numa_node = -1, .flags = F_NOWAIT};
        if (rnd(w, 2)) {
                core_alloc_batch(w->core, &w->cl[i], &a, sizes, n, slots, &res);
                return;
        }
        for (uint32_t x = w->cl[i].holds; x != HOLD_NONE && k < n; x = h->tab[x].cnext)
                ids[k++] = region_id(&w->core->regions, h->tab[x].slot);
        core_free_batch(w->core, &w->cl[i], ids, k, &res);
}

/* One random operation of the core, as requests and the server make them. */
static void step(struct world *w) {
        struct core_result res;
        uint32_t slot = 0, s;
        int i = pick_client(w), what = (int)rnd(w, 20);

        if (i < 0 || what == 0) { /* a connection comes or goes */
                int j = (int)rnd(w, NCL);
                if (!w->on[j]) {
                        w->cl[j] =
                                (struct client){.serial = w->serial++, .uid = 1000 + (uid_t)rnd(w, 3), .pid = 100 + j};
                        rnd(w, 2) ? (void)snprintf(w->cl[j].name, sizeof(w->cl[j].name), "c%d", j) : (void)0;
                        memset(w->cl[j].secret, 'a' + j, sizeof(w->cl[j].secret));
                        cr_assert_eq(core_client_add(w->core, &w->cl[j], &res), E_OK);
                        w->on[j] = true;
                        return;
                }
                for (uint32_t k = 0; k < w->njobs; k++) /* the server ends its jobs first */
                        if (w->job_cl[k] == (uint32_t)j) {
                                core_zero_done(w->core, NULL, w->jobs[k], 0, &res);
                                w->jobs[k] = w->jobs[--w->njobs];
                                w->job_cl[k--] = w->job_cl[w->njobs];
                                w->cl[j].npending--;
                        }
                core_client_remove(w->core, &w->cl[j]);
                w->on[j] = false;
                return;
        }
        uint64_t id = pick_region(w, &slot);
        struct region_info r;
        switch (what) {
        case 1 ... 6:
                op_alloc(w, i);
                break;
        case 7 ... 9:
                core_free_region(w->core, &w->cl[i], id, &res);
                break;
        case 10 ... 11:
                core_detach(w->core, &w->cl[i], id, &res);
                break;
        case 12 ... 14:
                if (id == 1)
                        break;
                core_region_info(w->core, slot, &r);
                if (r.name)
                        core_attach(w->core, &w->cl[i], 0, &(struct attach_request){.name = r.name}, &s, &res);
                break;
        case 15:
                core_seal(w->core, &w->cl[i], id, &res);
                break;
        case 16 ... 17:
                op_batch(w, i);
                break;
        case 18:
                core_client_set_name(w->core, &w->cl[i], rnd(w, 2) ? "renamed" : "");
                break;
        default:
                if (w->njobs) { /* a zeroing job ends: the region is handed out */
                        uint32_t k = (uint32_t)rnd(w, w->njobs);
                        core_zero_done(w->core, &w->cl[w->job_cl[k]], w->jobs[k], 0, &res);
                        w->jobs[k] = w->jobs[--w->njobs];
                        w->job_cl[k] = w->job_cl[w->njobs];
                }
        }
}

/* The live core, less its pending regions' part: what a successor must show. */
static char *live(struct world *w) {
        return state_dump(w->core);
}

/* w's memfd, read into a fresh core, shows what w's core does (after operation n of seed). */
static void same_as_live(struct world *w, uint64_t seed, int n) {
        size_t len;
        uint8_t *buf = copy_state(w, &len);
        char *want = live(w), *got = restored(buf, len, NULL, NULL, true);

        cr_assert_str_eq(got, want, "seed %llu, after operation %d", (unsigned long long)seed, n);
        free(want);
        free(got);
        free(buf);
}

Test(keep, every_kth_change_restores_to_the_live_core) {
        for (uint64_t seed = 1; seed <= 4; seed++) {
                struct world w;
                uint64_t epoch0 = 0, epoch;
                int compactions = 0;

                world_new(&w, seed, 4096 * seed);
                cr_assert_eq(keep_epoch_fd(keep_fd(w.keep), &epoch0), 0);
                for (int n = 0; n < 3000; n++) {
                        char err[256];
                        step(&w);
                        int t = keep_turn(w.keep, w.serial, err, sizeof(err));
                        cr_assert_geq(t, 0, "%s", err);
                        compactions += t;
                        if (n % 7 || w.njobs)
                                continue;
                        same_as_live(&w, seed, n);
                }
                cr_assert_eq(keep_epoch_fd(keep_fd(w.keep), &epoch), 0);
                cr_assert_eq(epoch, epoch0 + (uint64_t)compactions);
                cr_assert_gt(compactions, 0, "the log never outgrew its snapshot: compaction is not tested");
                world_free(&w);
        }
}

/* Record edges in [from, to) of the log in buf: each record's end. */
static size_t edges(const uint8_t *buf, size_t from, size_t to, size_t *end, size_t max) {
        size_t n = 0;
        uint16_t len;

        for (size_t at = from; at < to && n < max; at = end[n++]) {
                memcpy(&len, buf + at + 6, 2);
                end[n] = at + LOG_HEADER_LEN + len;
        }
        return n;
}

Test(keep, a_cut_or_a_damaged_byte_gives_the_state_at_a_record_edge) {
        struct world w;
        int checked = 0;

        world_new(&w, 99, 1u << 30); /* compactions only when asked */
        for (int n = 0; n < 400; n++) {
                if (n == 200) { /* half way, a compaction: the cuts go on in the new memfd's log */
                        char err[256];
                        keep_set_log_min(w.keep, 0);
                        cr_assert_eq(keep_turn(w.keep, w.serial, err, sizeof(err)), 1, "no compaction: %s", err);
                        cr_assert_eq(keep_log_bytes(w.keep), 0);
                        keep_set_log_min(w.keep, 1u << 30);
                }
                size_t from = log_end(&w), end[16], len, k;
                step(&w);
                if (n % 10 || w.njobs || log_end(&w) == from)
                        continue;
                uint8_t *buf = copy_state(&w, &len);
                size_t nrec = edges(buf, from, log_end(&w), end, 16);
                /* The state at each edge: before the operation, after each of its records. */
                char *at[17];
                at[0] = restored(buf, from, NULL, NULL, true);
                for (k = 0; k < nrec; k++)
                        at[k + 1] = restored(buf, end[k], NULL, NULL, true);
                char *want = live(&w);
                cr_assert_str_eq(at[nrec], want, "after operation %d", n);
                for (size_t c = from, r = 0; c < end[nrec - 1]; c++) {
                        struct state_info si;
                        if (c == end[r])
                                r++;
                        char *got = restored(buf, c, &si, NULL, false);
                        cr_assert_str_eq(got, at[r], "operation %d: a cut at byte %zu", n, c);
                        cr_assert(si.torn == c - (r ? end[r - 1] : from) || si.torn == 0, "torn %llu",
                                  (unsigned long long)si.torn); /* 0: the bytes cut so far are zeros */
                        free(got);
                        /*
                         * One byte damaged, the whole memfd given: the tail from that record on is dropped when
                         * nothing whole follows it, as a kill leaves it; a whole record after it (but where the
                         * damage is in the length, which says where the next one is) is damage: refused.
                         */
                        int e = 0;
                        size_t off = c - (r ? end[r - 1] : from);
                        buf[c] ^= 0x21;
                        got = restored(buf, len, &si, &e, false);
                        buf[c] ^= 0x21;
                        if (r + 1 < nrec && off != 6 && off != 7)
                                cr_assert_eq(e, -EBADMSG, "operation %d: byte %zu damaged, a whole record after it", n,
                                             c);
                        else if (e == 0)
                                cr_assert_str_eq(got, at[r], "operation %d: byte %zu damaged", n, c);
                        cr_assert(e == 0 ? si.torn > 0 : r + 1 < nrec, "operation %d: byte %zu damaged: %d", n, c, e);
                        free(got);
                        checked++;
                }
                for (k = 0; k <= nrec; k++)
                        free(at[k]);
                free(want);
                free(buf);
        }
        cr_assert_gt(checked, 500, "%d", checked);
        world_free(&w);
}

/* A record whose CRC holds but that contradicts the state: refused, the core as it was. */
/* A log record of type with payload (n bytes) written at at of buf (len bytes, a copy of the memfd). */
static void put_record(uint8_t *buf, size_t len, size_t at, uint16_t type, const void *payload, uint16_t n) {
        cr_assert_leq(at + LOG_HEADER_LEN + n, len);
        memcpy(buf + at + 4, &type, 2);
        memcpy(buf + at + 6, &n, 2);
        memcpy(buf + at + 8, payload, n);
        uint32_t crc = state_crc32c(buf + at + 4, 4 + (size_t)n);
        memcpy(buf + at, &crc, 4);
}

static void lie(struct world *w, uint16_t type, const void *payload, uint16_t n, const char *what) {
        size_t len, at = log_end(w);
        uint8_t *buf = copy_state(w, &len);
        int e;

        put_record(buf, len, at, type, payload, n);
        cr_assert_null(restored(buf, len, NULL, &e, false), "%s was accepted", what);
        cr_assert_eq(e, -EBADMSG, "%s", what);
        free(buf);
}

Test(keep, a_record_that_contradicts_the_state_is_refused) {
        struct world w;
        struct core_result res;
        uint32_t slot;

        world_new(&w, 7, 1u << 30);
        w.cl[0] = (struct client){.serial = w.serial++, .uid = 1000, .pid = 1};
        cr_assert_eq(core_client_add(w.core, &w.cl[0], &res), E_OK);
        w.on[0] = true;
        struct alloc_request a = {.pool = "a", .size = 4096, .numa_node = -1};
        cr_assert_eq(core_alloc(w.core, &w.cl[0], 0, &a, &slot, &res), GRANT_REGION);
        uint8_t p[8 + STATE_REGION_MAX];
        uint64_t none = 0, serial = w.cl[0].serial;
        struct lie_hold {
                uint32_t slot, count;
                uint64_t serial;
        } h = {slot + 1, 0, serial};
        lie(&w, LOG_HOLD, &h, 16, "a hold dropped that is not there");
        h = (struct lie_hold){slot, 1, 999};
        lie(&w, LOG_HOLD, &h, 16, "a hold by a connection never seen");
        lie(&w, LOG_CLIENT_GONE, &serial, 8, "a connection gone while it holds a region");
        memcpy(p, &serial, 8);
        size_t n = state_region_payload(w.core, slot, p + 8);
        lie(&w, LOG_REGION, p, (uint16_t)(8 + n), "a region made where one is");
        uint32_t other = slot + 1;
        memcpy(p, &none, 8);
        memcpy(p + 8, &other, 4);
        lie(&w, LOG_REGION, p, (uint16_t)(8 + n), "a region changed that is not there");
        other = slot;
        memcpy(p + 8, &other, 4);
        p[8 + 8 + 2] ^= 0x10; /* its offset, 1 MiB on: free room, so only the check of its place refuses it */
        lie(&w, LOG_REGION, p, (uint16_t)(8 + n), "a region moved");
        lie(&w, 77, p, 8, "a record of no known type");
        world_free(&w);
}

/* The process start of connection serial as a fresh core restores it from buf. */
static uint64_t start_restored(const uint8_t *buf, size_t len, uint64_t serial) {
        struct core *c = state_core(true);
        uint64_t next, start = UINT64_MAX;
        char err[512];

        cr_assert_eq(state_read(c, buf, len, &next, err, sizeof(err)), 0, "%s", err);
        for (size_t i = 0; i < c->nabsent; i++)
                if (c->absent[i]->serial == serial)
                        start = c->absent[i]->start;
        state_drop_absent(c);
        core_free(c);
        return start;
}

/*
 * A connection's record keeps when its process started (grace.c tells a reused pid by it); one that
 * ends at its secret, as written before state version 5, reads as a start unknown (0).
 */
Test(keep, a_connection_keeps_its_process_start) {
        struct world w;
        struct core_result res;
        uint32_t slot;
        uint8_t p[STATE_CLIENT_MAX];
        size_t len, at, n;

        world_new(&w, 11, 1u << 30);
        w.cl[0] = (struct client){.serial = w.serial++, .uid = 1000, .pid = 1, .start = 123456789};
        cr_assert_eq(core_client_add(w.core, &w.cl[0], &res), E_OK);
        w.on[0] = true;
        struct alloc_request a = {.pool = "a", .size = 4096, .numa_node = -1};
        cr_assert_eq(core_alloc(w.core, &w.cl[0], 0, &a, &slot, &res), GRANT_REGION);
        at = log_end(&w);
        uint8_t *buf = copy_state(&w, &len);
        cr_assert_eq(start_restored(buf, len, w.cl[0].serial), 123456789);
        n = state_client_payload(&w.cl[0], p);
        put_record(buf, len, at, LOG_CLIENT, p, (uint16_t)(n - sizeof(uint64_t)));
        cr_assert_eq(start_restored(buf, len, w.cl[0].serial), 0, "a record without a start");
        put_record(buf, len, at, LOG_CLIENT, p, (uint16_t)(n - 1));
        int e;
        cr_assert_null(restored(buf, len, NULL, &e, false), "a start cut short was accepted");
        free(buf);
        world_free(&w);
}

Test(keep, the_epoch_is_read_from_a_checked_header) {
        struct world w;
        uint64_t epoch;
        char err[256];
        int fd;

        world_new(&w, 3, 0);
        cr_assert_eq(keep_epoch_fd(keep_fd(w.keep), &epoch), 0);
        cr_assert_eq(epoch, 1);
        w.cl[0] = (struct client){.serial = w.serial++, .uid = 1000, .pid = 1};
        struct core_result res;
        cr_assert_eq(core_client_add(w.core, &w.cl[0], &res), E_OK);
        w.on[0] = true;
        for (int k = 0; k < 40; k++) /* the log outgrows LOG_RATIO (2) snapshots */
                op_alloc(&w, 0);
        fd = keep_fd(w.keep);
        cr_assert_eq(keep_turn(w.keep, w.serial, err, sizeof(err)), 1, "the log outgrew the snapshot");
        cr_assert_neq(keep_fd(w.keep), fd);
        cr_assert_eq(keep_epoch_fd(fd, &epoch), 0, "the old memfd stays open until the next turn");
        cr_assert_eq(epoch, 1);
        cr_assert_eq(keep_epoch_fd(keep_fd(w.keep), &epoch), 0);
        cr_assert_eq(epoch, 2);
        cr_assert_eq(keep_log_bytes(w.keep), 0);
        /* A damaged header: not a state. */
        uint8_t junk[STATE_HEADER_LEN];
        memset(junk, 0, sizeof(junk));
        memcpy(junk, "ALLOCDST\3", 9);
        int m = memfd_create("junk", MFD_CLOEXEC);
        cr_assert_eq(write(m, junk, sizeof(junk)), (ssize_t)sizeof(junk));
        cr_assert_eq(keep_epoch_fd(m, &epoch), -EBADMSG);
        close(m);
        world_free(&w);
}

/* fd's bytes in a new memfd, as a successor's store hands over the one its predecessor wrote. */
static int memfd_copy(int fd) {
        struct stat sb;
        int m = memfd_create("copy", MFD_CLOEXEC);

        cr_assert_eq(fstat(fd, &sb), 0);
        uint8_t *b = malloc((size_t)sb.st_size);
        cr_assert_eq(pread(fd, b, (size_t)sb.st_size, 0), sb.st_size);
        cr_assert_eq(write(m, b, (size_t)sb.st_size), sb.st_size);
        free(b);
        return m;
}

/*
 * A successor appends to the memfd it restored (keep_adopt): its own changes, and compactions,
 * come through the next restore as if it had written a snapshot of its own.  A log that ends in a
 * torn record, or a core whose pools are not the state's, is not appended to.
 */
Test(keep, a_successor_goes_on_in_the_state_it_restored) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
                struct world w, v;
                struct state_info info;
                char err[512];
                uint64_t serial;

                world_new(&w, seed, 4096);
                for (int n = 0; n < 400; n++)
                        step(&w);
                int fd = memfd_copy(keep_fd(w.keep));
                v = (struct world){.core = state_core(true), .serial = 1000, .rng = seed};
                cr_assert_eq(state_read_fd_info(v.core, fd, &serial, &info, err, sizeof(err)), 0, "%s", err);
                cr_assert(info.same_pools);
                cr_assert_eq(keep_adopt(&v.keep, v.core, fd, &info, v.serial), 0);
                /* Its pools' memory is the predecessor's (the heaps allocd wrote), as the store hands it over. */
                memcpy(v.core->pools[1]->map, w.core->pools[1]->map, w.core->pools[1]->total);
                memory = v.core;
                keep_set_log_min(v.keep, 4096);
                for (int n = 0; n < 600; n++) {
                        step(&v);
                        cr_assert_geq(keep_turn(v.keep, v.serial, err, sizeof(err)), 0, "%s", err);
                        if (n % 50 || v.njobs)
                                continue;
                        same_as_live(&v, seed, n);
                }
                state_drop_absent(v.core);
                world_free(&v);
                world_free(&w);
        }
}

Test(keep, a_torn_log_or_other_pools_get_a_new_snapshot) {
        struct world w;
        struct state_info info;
        struct keep *k;
        char err[512];
        uint64_t serial;

        world_new(&w, 5, SIZE_MAX);
        for (int n = 0; n < 200; n++)
                step(&w);
        int fd = memfd_copy(keep_fd(w.keep));
        size_t end = log_end(&w);
        cr_assert_eq(pwrite(fd, "\x01", 1, (off_t)end + 5), 1); /* a record cut short */
        struct core *c = state_core(true);
        cr_assert_eq(state_read_fd_info(c, fd, &serial, &info, err, sizeof(err)), 0, "%s", err);
        cr_assert_gt(info.torn, 0);
        cr_assert_eq(keep_adopt(&k, c, fd, &info, serial), -EXDEV);
        state_drop_absent(c);
        core_free(c);
        /* Pool b of the state is not configured now: its pools are not the core's. */
        close(fd);
        fd = memfd_copy(keep_fd(w.keep));
        c = state_core(false);
        if (state_read_fd_info(c, fd, &serial, &info, err, sizeof(err)) == 0) {
                cr_assert_not(info.same_pools);
                cr_assert_eq(keep_adopt(&k, c, fd, &info, serial), -EXDEV);
        }
        state_drop_absent(c);
        core_free(c);
        close(fd);
        world_free(&w);
}
