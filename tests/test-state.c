/* SPDX-License-Identifier: MIT */
/*
 * The core's state written out and read back into a fresh core (daemon/state.c): the same regions,
 * ids, names, tags, holders and counts; every cut and every damaged byte refused, changing nothing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core-check.h"
#include "core-impl.h"
#include "state.h"

static struct limits limits(void) {
        return (struct limits){.max_connections = 1000,
                               .max_connections_per_uid = 1000,
                               .max_regions_per_connection = 1u << 20,
                               .max_waiters_per_connection = 64,
                               .max_names = 1u << 20,
                               .max_names_per_uid = 1u << 20,
                               .max_persist_per_uid = 1u << 20,
                               .wait_timeout_ms = 1000,
                               .hello_timeout_ms = 1000};
}

static struct core *fresh(bool with_b) {
        static struct span s = {.base = 1ull << 32, .size = 64ull << 20};
        struct pool_conf pc = {.kind = POOL_FPGA,
                               .has_kind = true,
                               .quantum = 4096,
                               .ranges = &s,
                               .nranges = 1,
                               .mode = 0666,
                               .numa_node = -1};
        struct limits l = limits();
        struct core *c;
        char err[256];

        cr_assert_eq(core_new(&c, &l), 0);
        snprintf(pc.name, sizeof(pc.name), "a");
        cr_assert_eq(core_pool_add(c, &pc, err, sizeof(err)), 0, "%s", err);
        if (with_b) { /* memory: falloc heaps go here */
                struct pool_conf hc = {
                        .kind = POOL_HOST, .has_kind = true, .size = 16ull << 20, .mode = 0666, .numa_node = -1};
                snprintf(hc.name, sizeof(hc.name), "b");
                cr_assert_eq(core_pool_add(c, &hc, err, sizeof(err)), 0, "%s", err);
        }
        return c;
}

static struct client cls[4];

static void connect(struct core *c, int i, uid_t uid) {
        struct core_result res;

        cls[i] = (struct client){.serial = 10 + (uint64_t)i, .uid = uid, .pid = 100 + i};
        snprintf(cls[i].name, sizeof(cls[i].name), "client%d", i);
        cr_assert_eq(core_client_add(c, &cls[i], &res), E_OK, "%s", res.msg);
}

static uint32_t alloc(struct core *c, int i, const char *pool, uint64_t size, uint32_t flags, const char *name,
                      uint32_t format) {
        struct alloc_request a = {.pool = pool,
                                  .size = size,
                                  .numa_node = -1,
                                  .flags = flags,
                                  .name = name,
                                  .format = format,
                                  .chunk_size = format ? 256 : 0};
        struct core_result res;
        uint32_t slot;

        cr_assert_eq(core_alloc(c, &cls[i], 0, &a, &slot, &res), GRANT_REGION, "%s", res.msg);
        if (flags & F_UNSEALED)
                cr_assert_eq(core_seal(c, &cls[i], region_id(&c->regions, slot), &res), E_OK, "%s", res.msg);
        return slot;
}

/* A core with many regions: named, PERSIST, tagged, shared, freed ones between, several uids. */
static struct core *busy(void) {
        struct core *c = fresh(true);
        struct core_result res;
        uint32_t s;

        connect(c, 0, 1000);
        connect(c, 1, 1001);
        connect(c, 2, 1000);
        for (int k = 0; k < 300; k++) {
                char name[32];
                snprintf(name, sizeof(name), "r%d", k);
                s = alloc(c, k % 3, k % 2 ? "a" : "b", 4096 * (1 + k % 7), k % 5 == 0 ? F_PERSIST : 0,
                          k % 4 == 0 ? name : NULL, k % 22 == 0 ? FMT_FALLOC : FMT_RAW);
                if (k % 3 == 0) {
                        struct attach_request at = {.name = name};
                        if (k % 4 == 0)
                                cr_assert_eq(core_attach(c, &cls[1], 0, &at, &s, &res), GRANT_REGION, "%s", res.msg);
                }
                if (k % 9 == 4) /* freed: a gap in the slots, a hole in the arena, a gen bumped */
                        cr_assert_eq(core_free_region(c, &cls[k % 3], region_id(&c->regions, s), &res), E_OK, "%s",
                                     res.msg);
        }
        connect(c, 3, 1002);
        s = alloc(c, 3, "a", 8192, F_PERSIST, "orphan", FMT_RAW);
        core_client_remove(c, &cls[3]); /* a PERSIST region nobody holds */
        return c;
}

static void gone(struct core *c) {
        for (int i = 0; i < 3; i++)
                core_client_remove(c, &cls[i]);
        core_free(c);
}

/* What Dump would show: every region's info and holders, every pool's figures. */
static bool holder(const struct client *cl, uint32_t count, void *data) {
        FILE *f = data;
        fprintf(f, " holder %llu uid %u pid %d x%u", (unsigned long long)cl->serial, cl->uid, cl->pid, count);
        return true;
}

static char *dump(struct core *c) {
        char *text;
        size_t len;
        FILE *f = open_memstream(&text, &len);
        struct core_stats st;

        core_stats(c, &st);
        fprintf(f, "regions %llu names %llu holds %llu used %llu formats %llu\n", (unsigned long long)st.regions,
                (unsigned long long)st.names, (unsigned long long)st.holds, (unsigned long long)st.used,
                (unsigned long long)st.formats);
        for (size_t i = 0; i < core_npools(c); i++) {
                struct range_stats rs;
                struct pool_info pi;
                core_pool_info(core_pool_at(c, i), &pi);
                core_pool_stats(core_pool_at(c, i), &rs);
                fprintf(f, "pool %s regions %llu in_use %llu free_segs %llu\n", pi.name, (unsigned long long)pi.regions,
                        (unsigned long long)rs.in_use, (unsigned long long)rs.free_segments);
        }
        for (uint32_t s = 0; core_region_next(c, &s); s++) {
                struct region_info r;
                core_region_info(c, s, &r);
                fprintf(f,
                        "%#llx %s %#llx+%llu flags %u refs %u uid %u pid %d creator %llu created %llu name %s "
                        "persist %d fmt %u %llu %llu %llu",
                        (unsigned long long)r.id, core_pool_name(r.pool), (unsigned long long)r.offset,
                        (unsigned long long)r.size, r.flags, r.refs, r.uid, r.pid, (unsigned long long)r.creator,
                        (unsigned long long)r.created, r.name ? r.name : "-", r.persist, r.fmt.format,
                        (unsigned long long)r.fmt.heap_size, (unsigned long long)r.fmt.chunk_size,
                        (unsigned long long)r.fmt.chunk_count);
                core_region_holders(c, s, holder, f);
                fputc('\n', f);
        }
        fclose(f);
        return text;
}

/* core_check's view: the absent clients. */
static void check(struct core *c) {
        struct core_view v = {0};
        int i = 0;
        struct client *cl;

        TAILQ_FOREACH(cl, core_clients(c), link) {
                cr_assert_lt(i, CHECK_CLIENTS_MAX);
                v.clients[i++] = cl;
        }
        core_check(c, &v, true);
}

Test(state, a_round_trip_restores_everything_in_place) {
        struct core *a = busy(), *b = fresh(true);
        char err[512], *before = dump(a), *after;
        uint64_t serial = 0;
        int fd;

        cr_assert_eq(state_write_memfd(a, 77, &fd), 0);
        cr_assert_eq(state_read_fd(b, fd, &serial, err, sizeof(err)), 0, "%s", err);
        close(fd);
        cr_assert_eq(serial, 77);
        after = dump(b);
        cr_assert_str_eq(after, before);
        /* The pool's memory, as the fd store would hand it over: the heaps allocd wrote are in it. */
        memcpy(b->pools[1]->map, a->pools[1]->map, b->pools[1]->total);
        check(b);
        /* An id freed before is not handed out again; a new region takes the lowest free slot. */
        struct client n = {.serial = 77, .uid = 1000, .pid = 7};
        struct core_result res;
        struct alloc_request r = {.pool = "a", .size = 4096, .numa_node = -1};
        uint32_t s;
        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(core_alloc(b, &n, 0, &r, &s, &res), GRANT_REGION, "%s", res.msg);
        cr_assert_gt(b->regions.tab[s].gen, a->regions.tab[s].gen);
        /* Names are found; an absent holder's release frees what only it held. */
        cr_assert_geq(names_find(&b->names, "r8"), 0);
        core_client_remove(b, &n);
        while (b->nabsent) {
                struct client *k = b->absent[--b->nabsent]; /* the core's until taken off its list */
                core_client_remove(b, k);
                free(k);
        }
        check(b);
        cr_assert_eq(b->nclients, 0);
        free(before);
        free(after);
        gone(a);
        core_free(b);
}

/* One core for every refused state: each must leave it exactly as it was. */
static void refused(struct core *b, const char *before, const uint8_t *buf, size_t len, const char *what, size_t at) {
        char err[512], *after;
        uint64_t serial = 0;

        cr_assert_lt(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s %zu was accepted", what, at);
        cr_assert_neq(err[0], '\0');
        after = dump(b);
        cr_assert_str_eq(after, before, "%s %zu changed the core", what, at);
        cr_assert_eq(b->nclients, 0);
        free(after);
}

Test(state, every_cut_and_every_damaged_byte_is_refused) {
        struct core *a = fresh(true);
        void *buf;
        size_t len;

        connect(a, 0, 1000);
        connect(a, 1, 1001);
        for (int k = 0; k < 6; k++)
                alloc(a, k % 2, k == 4 ? "b" : "a", 4096, k == 2 ? F_PERSIST : 0, k == 3 ? "x" : NULL,
                      k == 4 ? FMT_FALLOC : 0);
        struct core *b = fresh(true);
        char *before = dump(b);
        cr_assert_eq(state_write(a, 5, &buf, &len), 0);
        for (size_t n = 0; n < len; n++)
                refused(b, before, buf, n, "a cut at", n);
        for (size_t i = 0; i < len; i++) {
                uint8_t *p = buf;
                p[i] ^= 0x5a;
                refused(b, before, buf, len, "a damaged byte at", i);
                p[i] ^= 0x5a;
        }
        check(b);
        free(before);
        free(buf);
        core_free(b);
        core_client_remove(a, &cls[0]); /* gone() would remove cls[2] too, which this core never had */
        core_client_remove(a, &cls[1]);
        core_free(a);
}

/* A region still being zeroed was never handed out: the state leaves it out, and its counts with it. */
Test(state, a_region_being_zeroed_is_left_out) {
        struct core *a = fresh(true), *b = fresh(true);
        struct alloc_request z = {
                .pool = "b", .size = 2 << 20, .numa_node = -1, .flags = F_ZERO | F_PERSIST, .name = "zeroing"};
        struct core_result res;
        char err[512];
        uint64_t serial;
        uint32_t s;
        void *buf;
        size_t len;

        connect(a, 0, 1000);
        alloc(a, 0, "b", 4096, F_PERSIST, "kept", FMT_RAW);
        cr_assert_eq(core_alloc(a, &cls[0], 0, &z, &s, &res), GRANT_ZEROING, "%s", res.msg);
        cr_assert_eq(state_write(a, 100, &buf, &len), 0);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s", err);
        cr_assert_geq(names_find(&b->names, "kept"), 0);
        cr_assert_lt(names_find(&b->names, "zeroing"), 0);
        cr_assert_eq(b->regions.slots.used, 1);
        check(b);
        free(buf);
        while (b->nabsent) {
                struct client *k = b->absent[--b->nabsent];
                core_client_remove(b, k);
                free(k);
        }
        core_free(b);
        core_zero_done(a, &cls[0], s, 0, &res);
        core_client_remove(a, &cls[0]);
        core_free(a);
}

/* A state whose checksums are right but whose records lie: each lie refused, nothing read past the table. */
Test(state, a_checksummed_lie_is_refused) {
        struct core *a = fresh(true), *b = fresh(true);
        char err[512];
        uint64_t serial;
        uint8_t *buf;
        size_t len, at = 32;

        connect(a, 0, 1000);
        alloc(a, 0, "b", 4096, F_PERSIST, "kept", FMT_RAW);
        cr_assert_eq(state_write(a, 100, (void **)&buf, &len), 0);
        for (uint16_t type; memcpy(&type, buf + at, 2), type != 7 /* REC_HOLD */;) {
                uint32_t n;
                memcpy(&n, buf + at + 4, 4);
                at += 8 + n;
                cr_assert_lt(at, len, "no HOLD record");
        }
        uint32_t slot = 1u << 28, crc;
        memcpy(buf + at + 8, &slot, 4);
        crc = state_crc32c(buf + 32, len - 32);
        memcpy(buf + 24, &crc, 4);
        crc = state_crc32c(buf, 28);
        memcpy(buf + 28, &crc, 4);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), -EBADMSG);
        cr_assert(strstr(err, "hold of slot 268435456"), "%s", err);
        cr_assert_eq(b->regions.slots.used, 0);
        cr_assert_eq(b->nclients, 0);
        free(buf);
        core_free(b);
        core_client_remove(a, &cls[0]);
        core_free(a);
}

Test(state, a_pool_missing_or_changed_is_reported) {
        struct core *a = busy(), *b = fresh(false);
        char err[512];
        uint64_t serial;
        void *buf;
        size_t len;

        cr_assert_eq(state_write(a, 5, &buf, &len), 0);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), -ENOENT);
        cr_assert(strstr(err, "pool b") && strstr(err, "not configured"), "%s", err);
        cr_assert_eq(b->regions.slots.used, 0);
        free(buf);
        core_free(b);
        gone(a);
}

/* ---- reclaim (daemon/reclaim.c): a connection of the restored state comes back ---- */

/* busy()'s state, each client with a secret of its own, read into a fresh core. */
static struct core *restored(void) {
        struct core *a = busy(), *b = fresh(true);
        char err[512];
        uint64_t serial;
        void *buf;
        size_t len;

        for (int i = 0; i < 3; i++)
                memset(cls[i].secret, 0xa0 + i, sizeof(cls[i].secret));
        cr_assert_eq(state_write(a, 77, &buf, &len), 0);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s", err);
        free(buf);
        memcpy(b->pools[1]->map, a->pools[1]->map, b->pools[1]->total); /* the fd store's part: the same memory */
        gone(a);
        return b;
}

static int reclaim(struct core *b, struct client *n, uint64_t serial, uint8_t fill, size_t len) {
        uint8_t secret[CLIENT_SECRET_LEN + 1];
        struct core_result res;

        memset(secret, fill, sizeof(secret));
        return core_client_reclaim(b, n, serial, secret, len, &res);
}

Test(state, a_reclaim_takes_the_holds_and_the_serial_over) {
        struct core *b = restored();
        char *before = dump(b), *after;
        struct client n = {.serial = 500, .uid = 1000, .pid = 100}; /* cls[0]'s uid and pid: the dump reads the same */
        struct core_result res;
        uint32_t refs = 0;

        for (size_t i = 0; i < b->nabsent; i++)
                if (b->absent[i]->serial == 10)
                        refs = b->absent[i]->nrefs;
        cr_assert_gt(refs, 0);
        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN), E_OK);
        cr_assert_eq(n.serial, 10);
        cr_assert_eq(n.nrefs, refs);
        cr_assert_eq(n.secret[0], 0xa0);
        cr_assert_eq(core_nabsent(b), 2);
        after = dump(b);
        cr_assert_str_eq(after, before);
        check(b);
        /* Its own again: it frees what it made, and the list stays in serial order for Status. */
        cr_assert_eq(TAILQ_FIRST(core_clients(b)), &n);
        uint32_t s = b->regions.holds.tab[n.holds].slot;
        cr_assert_eq(core_detach(b, &n, region_id(&b->regions, s), &res), E_OK, "%s", res.msg);
        check(b);
        core_client_remove(b, &n);
        free(before);
        free(after);
        core_free(b);
}

/* Placeholders are no connections: a uid at its limit before the restart gets in again to reclaim. */
Test(state, placeholders_do_not_count_against_connection_limits) {
        struct core *b = restored();
        struct limits l = limits();
        struct client n = {.serial = 500, .uid = 1000, .pid = 100}, m = {.serial = 501, .uid = 1000, .pid = 102};
        struct core_result res;

        l.max_connections = 2;
        l.max_connections_per_uid = 1; /* uid 1000 had two connections: cls[0] and cls[2] */
        core_set_limits(b, &l);
        cr_assert_eq(core_client_add(b, &n, &res), E_OK, "%s", res.msg);
        cr_assert_eq(core_client_add(b, &m, &res), E_LIMIT); /* n is a connection */
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN), E_OK);
        core_client_remove(b, &n);
        core_free(b);
}

Test(state, a_wrong_secret_uid_or_serial_is_refused_changing_nothing) {
        struct core *b = restored();
        char *before = dump(b), *after;
        struct client n = {.serial = 500, .uid = 1000, .pid = 100}, m = {.serial = 501, .uid = 1001, .pid = 101};
        struct core_result res;

        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(core_client_add(b, &m, &res), E_OK);
        cr_assert_eq(reclaim(b, &n, 10, 0xa1, CLIENT_SECRET_LEN), E_DENIED); /* cls[1]'s secret */
        cr_assert_eq(reclaim(b, &m, 10, 0xa0, CLIENT_SECRET_LEN), E_DENIED); /* the secret, another uid */
        cr_assert_eq(reclaim(b, &n, 99, 0xa0, CLIENT_SECRET_LEN), E_NOT_FOUND);
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN - 1), E_INVALID);
        cr_assert_eq(core_client_reclaim(b, &n, 12, (const uint8_t[16]){0}, 16, &res), E_DENIED);
        cr_assert_eq(n.serial, 500);
        cr_assert_eq(n.nrefs + m.nrefs, 0);
        cr_assert_eq(core_nabsent(b), 3);
        core_client_remove(b, &n);
        core_client_remove(b, &m);
        after = dump(b);
        cr_assert_str_eq(after, before);
        check(b);
        free(before);
        free(after);
        core_free(b);
}

Test(state, the_grace_time_releases_what_no_one_reclaimed) {
        struct core *b = restored();
        struct absent_info info;
        struct core_stats st;
        uint64_t refs = 0;
        int n = 0;

        while (core_absent_release(b, &info)) {
                cr_assert(info.serial >= 10 && info.serial <= 12, "%llu", (unsigned long long)info.serial);
                char want[16];
                snprintf(want, sizeof(want), "client%d", (int)(info.serial - 10));
                cr_assert_str_eq(info.name, want);
                refs += info.refs;
                n++;
        }
        cr_assert_eq(n, 3);
        cr_assert_gt(refs, 0);
        cr_assert_eq(b->nclients, 0);
        core_stats(b, &st);
        cr_assert_eq(st.holds, 0);
        check(b);
        for (uint32_t s = 0; core_region_next(b, &s); s++) /* what is left is PERSIST, held by no one */
                cr_assert(b->regions.tab[s].state & R_PERSIST);
        core_free(b);
}

Test(state, held_lists_a_connections_regions_a_page_at_a_time) {
        struct core *c = fresh(false);
        struct held_page *page = malloc(sizeof(*page));
        struct core_result res;
        uint64_t after = 0, seen = 0, last = 0;
        uint32_t first;

        connect(c, 0, 1000);
        connect(c, 1, 1000);
        first = alloc(c, 0, "a", 4096, 0, "twice", FMT_RAW);
        for (int k = 0; k < HELD_PAGE + 500; k++)
                alloc(c, k % 7 ? 0 : 1, "a", 4096, 0, NULL, FMT_RAW);
        struct attach_request at = {.name = "twice"};
        uint32_t s;
        cr_assert_eq(core_attach(c, &cls[0], 0, &at, &s, &res), GRANT_REGION);
        do {
                cr_assert_eq(core_client_held(c, &cls[0], after, page, &res), E_OK);
                for (size_t i = 0; i < page->n; i++) {
                        cr_assert_gt((uint32_t)page->ids[i] + 1, (uint32_t)last + (seen ? 1 : 0));
                        cr_assert_neq(region_hold_of(c, (uint32_t)page->ids[i], &cls[0]), HOLD_NONE);
                        cr_assert_eq(page->counts[i], (uint32_t)page->ids[i] == first ? 2 : 1);
                        last = page->ids[i];
                        seen++;
                }
                after = page->n ? page->ids[page->n - 1] : 0;
        } while (page->more);
        cr_assert_eq(seen + 1, cls[0].nrefs);
        free(page);
        core_client_remove(c, &cls[0]);
        core_client_remove(c, &cls[1]);
        core_free(c);
}
