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
#include "keep.h"
#include "state-util.h"
#include "state.h"

Test(state, a_round_trip_restores_everything_in_place) {
        struct core *a = state_busy(), *b = state_core(true);
        char err[512], *before = state_dump(a), *after;
        uint64_t serial = 0;
        int fd;

        cr_assert_eq(state_write_memfd(a, 77, &fd), 0);
        cr_assert_eq(state_read_fd(b, fd, &serial, err, sizeof(err)), 0, "%s", err);
        close(fd);
        cr_assert_eq(serial, 77);
        after = state_dump(b);
        cr_assert_str_eq(after, before);
        /* The pool's memory, as the fd store would hand it over: the heaps allocd wrote are in it. */
        memcpy(b->pools[1]->map, a->pools[1]->map, b->pools[1]->total);
        state_check(b);
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
        state_drop_absent(b);
        state_check(b);
        cr_assert_eq(b->nclients, 0);
        free(before);
        free(after);
        state_gone(a);
        core_free(b);
}

/* One core for every refused state: each must leave it exactly as it was. */
static void refused(struct core *b, const char *before, const uint8_t *buf, size_t len, const char *what, size_t at) {
        char err[512], *after;
        uint64_t serial = 0;

        cr_assert_lt(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s %zu was accepted", what, at);
        cr_assert_neq(err[0], '\0');
        after = state_dump(b);
        cr_assert_str_eq(after, before, "%s %zu changed the core", what, at);
        cr_assert_eq(b->nclients, 0);
        free(after);
}

Test(state, every_cut_and_every_damaged_byte_is_refused) {
        struct core *a = state_core(true);
        void *buf;
        size_t len;

        state_connect(a, 0, 1000);
        state_connect(a, 1, 1001);
        for (int k = 0; k < 6; k++)
                state_alloc(a, k % 2, k == 4 ? "b" : "a", 4096, k == 2 ? F_PERSIST : 0, k == 3 ? "x" : NULL,
                            k == 4 ? FMT_FALLOC : 0);
        struct core *b = state_core(true);
        char *before = state_dump(b);
        cr_assert_eq(state_write(a, 5, &buf, &len), 0);
        for (size_t n = 0; n < len; n++)
                refused(b, before, buf, n, "a cut at", n);
        for (size_t i = 0; i < len; i++) {
                uint8_t *p = buf;
                p[i] ^= 0x5a;
                refused(b, before, buf, len, "a damaged byte at", i);
                p[i] ^= 0x5a;
        }
        state_check(b);
        free(before);
        free(buf);
        core_free(b);
        core_client_remove(a, &state_cls[0]); /* gone() would remove state_cls[2] too, which this core never had */
        core_client_remove(a, &state_cls[1]);
        core_free(a);
}

/* A region still being zeroed was never handed out: the state leaves it out, and its counts with it. */
Test(state, a_region_being_zeroed_is_left_out) {
        struct core *a = state_core(true), *b = state_core(true);
        struct alloc_request z = {
                .pool = "b", .size = 2 << 20, .numa_node = -1, .flags = F_ZERO | F_PERSIST, .name = "zeroing"};
        struct core_result res;
        char err[512];
        uint64_t serial;
        uint32_t s;
        void *buf;
        size_t len;

        state_connect(a, 0, 1000);
        state_alloc(a, 0, "b", 4096, F_PERSIST, "kept", FMT_RAW);
        cr_assert_eq(core_alloc(a, &state_cls[0], 0, &z, &s, &res), GRANT_ZEROING, "%s", res.msg);
        cr_assert_eq(state_write(a, 100, &buf, &len), 0);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s", err);
        cr_assert_geq(names_find(&b->names, "kept"), 0);
        cr_assert_lt(names_find(&b->names, "zeroing"), 0);
        cr_assert_eq(b->regions.slots.used, 1);
        state_check(b);
        free(buf);
        state_drop_absent(b);
        core_free(b);
        core_zero_done(a, &state_cls[0], s, 0, &res);
        core_client_remove(a, &state_cls[0]);
        core_free(a);
}

/* A state whose checksums are right but whose records lie: each lie refused, nothing read past the table. */
Test(state, a_checksummed_lie_is_refused) {
        struct core *a = state_core(true), *b = state_core(true);
        char err[512];
        uint64_t serial;
        uint8_t *buf;
        size_t len, at = STATE_HEADER_LEN;

        state_connect(a, 0, 1000);
        state_alloc(a, 0, "b", 4096, F_PERSIST, "kept", FMT_RAW);
        cr_assert_eq(state_write(a, 100, (void **)&buf, &len), 0);
        for (uint16_t type; memcpy(&type, buf + at, 2), type != 7 /* REC_HOLD */;) {
                uint32_t n;
                memcpy(&n, buf + at + 4, 4);
                at += 8 + n;
                cr_assert_lt(at, len, "no HOLD record");
        }
        uint32_t slot = 1u << 28;
        memcpy(buf + at + 8, &slot, 4);
        state_checksum_again(buf, len);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), -EBADMSG);
        cr_assert(strstr(err, "hold of slot 268435456"), "%s", err);
        cr_assert_eq(b->regions.slots.used, 0);
        cr_assert_eq(b->nclients, 0);
        free(buf);
        core_free(b);
        core_client_remove(a, &state_cls[0]);
        core_free(a);
}

/* The same for a falloc heap's geometry: a chunk count its size and chunk size do not give is refused. */
Test(state, a_checksummed_heap_geometry_lie_is_refused) {
        struct core *a = state_core(true), *b = state_core(true);
        const uint64_t heap[2] = {4096, 256}; /* heap_size, chunk_size; chunk_count follows */
        char err[512];
        uint64_t serial, count;
        uint8_t *buf, *at;
        size_t len;

        state_connect(a, 0, 1000);
        state_alloc(a, 0, "b", 4096, F_PERSIST, "heap", FMT_FALLOC);
        cr_assert_eq(state_write(a, 100, (void **)&buf, &len), 0);
        cr_assert_not_null(at = memmem(buf, len, heap, sizeof(heap)), "no heap record");
        memcpy(&count, at + sizeof(heap), 8);
        count++;
        memcpy(at + sizeof(heap), &count, 8);
        state_checksum_again(buf, len);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), -EBADMSG);
        cr_assert(strstr(err, "malformed"), "%s", err);
        cr_assert_eq(b->regions.slots.used, 0);
        free(buf);
        core_free(b);
        core_client_remove(a, &state_cls[0]);
        core_free(a);
}

/* state_busy()'s state, each client with a secret of its own, read into a fresh core. */
static struct core *restored(void) {
        struct core *a = state_busy(), *b = state_core(true);
        char err[512];
        uint64_t serial;
        void *buf;
        size_t len;

        for (int i = 0; i < 3; i++)
                memset(state_cls[i].secret, 0xa0 + i, sizeof(state_cls[i].secret));
        cr_assert_eq(state_write(a, 77, &buf, &len), 0);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s", err);
        free(buf);
        memcpy(b->pools[1]->map, a->pools[1]->map, b->pools[1]->total); /* the fd store's part: the same memory */
        state_gone(a);
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
        char *before = state_dump(b), *after;
        struct client n = {
                .serial = 500, .uid = 1000, .pid = 100}; /* state_cls[0]'s uid and pid: the dump reads the same */
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
        after = state_dump(b);
        cr_assert_str_eq(after, before);
        state_check(b);
        /* Its own again: it frees what it made, and the list stays in serial order for Status. */
        cr_assert_eq(TAILQ_FIRST(core_clients(b)), &n);
        uint32_t s = b->regions.holds.tab[n.holds].slot;
        cr_assert_eq(core_detach(b, &n, region_id(&b->regions, s), &res), E_OK, "%s", res.msg);
        state_check(b);
        core_client_remove(b, &n);
        free(before);
        free(after);
        core_free(b);
}

/* Placeholders are no connections: a uid at its limit before the restart gets in again to reclaim. */
/* The kept state (keep.c) follows a reclaim: the placeholder's record becomes the connection's, its holds stay. */
Test(state, a_reclaim_is_kept) {
        struct core *b = restored(), *c = state_core(true);
        struct client n = {.serial = 500, .uid = 1000, .pid = 4242};
        struct core_result res;
        struct keep *k;
        uint64_t serial;
        char err[512];

        cr_assert_eq(keep_new(&k, b, 1000, 1), 0);
        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN), E_OK);
        char *want = state_dump(b);
        cr_assert_eq(state_read_fd(c, keep_fd(k), &serial, err, sizeof(err)), 0, "%s", err);
        char *got = state_dump(c);
        cr_assert_str_eq(got, want);
        cr_assert_eq(c->nabsent, 3);
        for (size_t i = 0; i < c->nabsent; i++)
                if (c->absent[i]->serial == 10)
                        cr_assert_eq(c->absent[i]->pid, 4242);
        free(want);
        free(got);
        state_drop_absent(c);
        core_free(c);
        core_client_remove(b, &n);
        keep_free(k);
        core_free(b);
}

Test(state, placeholders_do_not_count_against_connection_limits) {
        struct core *b = restored();
        struct limits l = state_limits();
        struct client n = {.serial = 500, .uid = 1000, .pid = 100}, m = {.serial = 501, .uid = 1000, .pid = 102};
        struct core_result res;

        l.max_connections = 2;
        l.max_connections_per_uid = 1; /* uid 1000 had two connections: state_cls[0] and state_cls[2] */
        core_set_limits(b, &l);
        cr_assert_eq(core_client_add(b, &n, &res), E_OK, "%s", res.msg);
        cr_assert_eq(core_client_add(b, &m, &res), E_LIMIT); /* n is a connection */
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN), E_OK);
        core_client_remove(b, &n);
        core_free(b);
}

/* A connection that says a plain Hello, as allocd takes it; removed again where refused. */
static int plain_hello(struct core *b, struct client *cl) {
        struct core_result res;
        int r = core_client_add(b, cl, &res);

        if (r == E_OK && (r = core_client_admit(b, cl, &res)) != E_OK)
                core_client_remove(b, cl);
        return r;
}

/*
 * A uid's connections let in past max_connections_per_uid on its placeholders' room can only
 * reclaim them: they do not count against max_connections for another uid's Hello.  Else a user
 * with silent processes across a restart held its share twice over (its placeholders, and as many
 * connections that never say Hello) and could leave no room for anyone else.
 */
Test(state, connections_past_a_uids_share_do_not_crowd_others_out) {
        struct core *b = restored(); /* placeholders: uid 1000 two (state_cls[0], [2]), uid 1001 one */
        struct limits l = state_limits();
        struct client m1 = {.serial = 500, .uid = 1000, .pid = 100}, m2 = {.serial = 501, .uid = 1000, .pid = 100};
        struct client v1 = {.serial = 502, .uid = 1002, .pid = 102}, v2 = {.serial = 503, .uid = 1002, .pid = 102};
        struct absent_info info;
        struct core_result res;

        l.max_connections = 4;
        l.max_connections_per_uid = 2;
        core_set_limits(b, &l);
        /* uid 1000 is at its share with its placeholders: two more get in, to reclaim them. */
        cr_assert_eq(core_client_add(b, &m1, &res), E_OK, "%s", res.msg);
        cr_assert_eq(core_client_add(b, &m2, &res), E_OK, "%s", res.msg);
        cr_assert_eq(core_client_admit(b, &m1, &res), E_LIMIT, "a plain Hello past the uid's share");
        /* Three of the four are taken (the placeholders): uid 1002 has room for one, and only one. */
        cr_assert_eq(plain_hello(b, &v1), E_OK);
        cr_assert_eq(plain_hello(b, &v2), E_LIMIT);
        /* A reclaim takes its placeholder's place: still no room for another plain Hello. */
        cr_assert_eq(reclaim(b, &m1, 10, 0xa0, CLIENT_SECRET_LEN), E_OK);
        cr_assert_eq(plain_hello(b, &v2), E_LIMIT);
        core_client_remove(b, &v1);
        /* Its other placeholder gone before m2's Hello, m2 is a connection of the uid's share: it counts. */
        cr_assert(core_absent_release_serial(b, 12, &info));
        cr_assert_eq(core_client_admit(b, &m2, &res), E_OK, "%s", res.msg);
        cr_assert_eq(plain_hello(b, &v1), E_OK);
        cr_assert_eq(plain_hello(b, &v2), E_LIMIT, "five connections, a placeholder among them");
        core_client_remove(b, &v1);
        core_client_remove(b, &m1);
        core_client_remove(b, &m2);
        state_drop_absent(b);
        core_free(b);
}

Test(state, a_wrong_secret_uid_or_serial_is_refused_changing_nothing) {
        struct core *b = restored();
        char *before = state_dump(b), *after;
        struct client n = {.serial = 500, .uid = 1000, .pid = 100}, m = {.serial = 501, .uid = 1001, .pid = 101};
        struct core_result res;

        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(core_client_add(b, &m, &res), E_OK);
        cr_assert_eq(reclaim(b, &n, 10, 0xa1, CLIENT_SECRET_LEN), E_DENIED); /* state_cls[1]'s secret */
        cr_assert_eq(reclaim(b, &m, 10, 0xa0, CLIENT_SECRET_LEN), E_DENIED); /* the secret, another uid */
        cr_assert_eq(reclaim(b, &n, 99, 0xa0, CLIENT_SECRET_LEN), E_NOT_FOUND);
        cr_assert_eq(reclaim(b, &n, 10, 0xa0, CLIENT_SECRET_LEN - 1), E_INVALID);
        cr_assert_eq(core_client_reclaim(b, &n, 12, (const uint8_t[16]){0}, 16, &res), E_DENIED);
        cr_assert_eq(n.serial, 500);
        cr_assert_eq(n.nrefs + m.nrefs, 0);
        cr_assert_eq(core_nabsent(b), 3);
        core_client_remove(b, &n);
        core_client_remove(b, &m);
        after = state_dump(b);
        cr_assert_str_eq(after, before);
        state_check(b);
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
        state_check(b);
        for (uint32_t s = 0; core_region_next(b, &s); s++) /* what is left is PERSIST, held by no one */
                cr_assert(b->regions.tab[s].state & R_PERSIST);
        core_free(b);
}

Test(state, held_lists_a_connections_regions_a_page_at_a_time) {
        struct core *c = state_core(false);
        struct held_page *page = malloc(sizeof(*page));
        struct core_result res;
        uint64_t after = 0, seen = 0, last = 0;
        uint32_t first;

        state_connect(c, 0, 1000);
        state_connect(c, 1, 1000);
        first = state_alloc(c, 0, "a", 4096, 0, "twice", FMT_RAW);
        for (int k = 0; k < HELD_PAGE + 500; k++)
                state_alloc(c, k % 7 ? 0 : 1, "a", 4096, 0, NULL, FMT_RAW);
        struct attach_request at = {.name = "twice"};
        uint32_t s;
        cr_assert_eq(core_attach(c, &state_cls[0], 0, &at, &s, &res), GRANT_REGION);
        do {
                cr_assert_eq(core_client_held(c, &state_cls[0], after, page, &res), E_OK);
                for (size_t i = 0; i < page->n; i++) {
                        cr_assert_gt((uint32_t)page->ids[i] + 1, (uint32_t)last + (seen ? 1 : 0));
                        cr_assert_neq(region_hold_of(c, (uint32_t)page->ids[i], &state_cls[0]), HOLD_NONE);
                        cr_assert_eq(page->counts[i], (uint32_t)page->ids[i] == first ? 2 : 1);
                        last = page->ids[i];
                        seen++;
                }
                after = page->n ? page->ids[page->n - 1] : 0;
        } while (page->more);
        cr_assert_eq(seen + 1, state_cls[0].nrefs);
        free(page);
        core_client_remove(c, &state_cls[0]);
        core_client_remove(c, &state_cls[1]);
        core_free(c);
}

/*
 * A slot free in the state (its region freed before the restart) comes back above every gen the
 * state had, whatever the new core's seed: the ids the previous allocd gave stay its regions'.
 */
Test(state, a_free_slot_comes_back_above_every_gen_of_the_state) {
        struct core *a = state_core(false), *b = state_core(false);
        struct client n = {.serial = 77, .uid = 1000, .pid = 7};
        struct alloc_request r = {.pool = "a", .size = 4096, .numa_node = -1};
        struct core_result res;
        char err[512];
        uint64_t serial;
        uint32_t s;
        size_t len;
        void *buf;

        core_seed_ids(a, 1000);
        core_seed_ids(b, 1000); /* allocd seeds at random: as likely this as any */
        state_connect(a, 0, 1000);
        state_alloc(a, 0, "a", 4096, 0, NULL, FMT_RAW);
        uint32_t freed = state_alloc(a, 0, "a", 4096, 0, NULL, FMT_RAW);
        state_alloc(a, 0, "a", 4096, 0, NULL, FMT_RAW);
        uint64_t old = region_id(&a->regions, freed);
        cr_assert_eq(core_free_region(a, &state_cls[0], old, &res), E_OK, "%s", res.msg);
        cr_assert_eq(state_write(a, 100, &buf, &len), 0);
        cr_assert_eq(state_read(b, buf, len, &serial, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(core_client_add(b, &n, &res), E_OK);
        cr_assert_eq(core_alloc(b, &n, 0, &r, &s, &res), GRANT_REGION, "%s", res.msg);
        cr_assert_eq(s, freed);
        cr_assert_gt(b->regions.tab[s].gen, (uint32_t)(old >> 32), "id %#llx of the previous allocd handed out again",
                     (unsigned long long)region_id(&b->regions, s));
        core_client_remove(b, &n);
        state_drop_absent(b);
        core_free(b);
        core_client_remove(a, &state_cls[0]);
        core_free(a);
        free(buf);
}
