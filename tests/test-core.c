/* SPDX-License-Identifier: MIT */
/*
 * The daemon's core in-process, without a socket: the costs the restructure
 * removed are counted here (hold records, table bytes), not timed, and each
 * test is the regression test of one fault the old core had.  Waiters are in
 * test-core-waiters.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core-common.h"

TestSuite(core, .init = setup, .fini = teardown, .timeout = 120);

/* Fault 5: a connection's many references to one region are one record, dropped in one step. */
Test(core, duplicate_holds_are_one_record) {
        enum { N = 65536 };
        struct client *owner = client(1), *a = client(2), *b = client(3);
        struct core_result res;
        uint32_t slot, s;

        add_fpga("f", 64 * K);
        cr_assert_eq(alloc(owner, "f", 4 * K, 0, "shared", &slot), GRANT_REGION);
        for (int i = 0; i < N; i++) {
                cr_assert_eq(core_attach(core, a, 0, &(struct attach_request){.name = "shared"}, &s, &res),
                             GRANT_REGION, "%s", res.msg);
                cr_assert_eq(core_attach(core, b, 0, &(struct attach_request){.name = "shared"}, &s, &res),
                             GRANT_REGION, "%s", res.msg);
        }
        cr_assert_eq(stats().holds, 3);
        cr_assert_eq(a->nrefs, N);
        struct region_info r;
        core_region_info(core, slot, &r);
        cr_assert_eq(r.refs, 2 * N + 1);
        cr_assert_eq(core_detach(core, a, r.id, &res), E_OK);
        cr_assert_eq(a->nrefs, N - 1);
        bye(a);
        core_region_info(core, slot, &r);
        cr_assert_eq(r.refs, N + 1);
        cr_assert_eq(stats().holds, 2);
        bye(owner);
        bye(b);
        cr_assert_eq(stats().regions, 0);
        cr_assert_eq(stats().used, 0);
}

/* Fault 8: a region being zeroed is not its creator's yet: a Free of its id does not free it. */
Test(core, a_region_being_zeroed_cannot_be_freed) {
        struct client *a = client(1), *b = client(2);
        struct core_result res;
        struct zero_job job;
        uint32_t slot;

        add_host("h", 16 << 20);
        cr_assert_eq(alloc(a, "h", 4 << 20, F_ZERO, "z", &slot), GRANT_ZEROING);
        cr_assert_eq(core_free_region(core, a, id_of(slot), &res), E_NOT_FOUND);
        cr_assert_eq(core_detach(core, a, id_of(slot), &res), E_NOT_FOUND);
        cr_assert_eq(core_attach(core, b, 0, &(struct attach_request){.name = "z"}, &slot, &res), GRANT_NONE);
        cr_assert_eq(res.code, E_WOULD_BLOCK);
        cr_assert_eq(stats().used, 4 << 20);
        core_zero_job(core, slot, &job);
        cr_assert_eq(core_zero_run(&job), 0);
        cr_assert_eq(core_zero_done(core, a, slot, 0, &res), GRANT_REGION);
        cr_assert_eq(core_free_region(core, a, id_of(slot), &res), E_OK);
        cr_assert_eq(stats().used, 0);
        bye(b);
        bye(a);
}

/* Nor sealed: a Seal of its id is NOT_FOUND, as a Free is, until it has been handed out. */
Test(core, a_region_being_zeroed_cannot_be_sealed) {
        struct client *a = client(1);
        struct core_result res;
        struct zero_job job;
        uint32_t slot;

        add_host("h", 16 << 20);
        cr_assert_eq(alloc(a, "h", 4 << 20, F_ZERO | F_UNSEALED, "u", &slot), GRANT_ZEROING);
        cr_assert_eq(core_seal(core, a, id_of(slot), &res), E_NOT_FOUND);
        core_zero_job(core, slot, &job);
        cr_assert_eq(core_zero_run(&job), 0);
        cr_assert_eq(core_zero_done(core, a, slot, 0, &res), GRANT_REGION);
        cr_assert_eq(core_seal(core, a, id_of(slot), &res), E_OK);
        bye(a);
}

/* A client that goes while its region is zeroed: the region goes back when the worker is done. */
Test(core, a_region_zeroed_for_a_client_that_left_goes_back) {
        struct client *a = client(1);
        struct core_result res;
        uint32_t slot;

        add_host("h", 16 << 20);
        cr_assert_eq(alloc(a, "h", 4 << 20, F_ZERO | F_PERSIST, NULL, &slot), GRANT_ZEROING);
        bye(a);
        cr_assert_eq(stats().used, 4 << 20);
        cr_assert_eq(core_zero_done(core, NULL, slot, 0, &res), GRANT_NONE);
        cr_assert_eq(stats().used, 0, "PERSIST included: nothing was handed out");
        cr_assert_eq(stats().regions, 0);
}

/* Fault 9: the region table, holds and names shrink when regions go. */
Test(core, tables_shrink_when_regions_go) {
        enum { N = 262144 };
        struct client *a = client(1);
        size_t before, peak;
        char name[32];

        add_fpga("f", (uint64_t)N * 4 * K);
        before = stats().table_bytes;
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "n%d", i);
                cr_assert_eq(alloc(a, "f", 4 * K, 0, i % 4 ? NULL : name, NULL), GRANT_REGION);
        }
        peak = stats().table_bytes;
        cr_assert_geq(peak, (size_t)N * 64);
        bye(a);
        cr_assert_eq(stats().regions, 0);
        cr_assert_eq(stats().names, 0);
        cr_assert_leq(stats().table_bytes, before + 16384,
                      /* the tables' smallest sizes */ "%zu bytes left of a %zu-byte peak (%zu at start)",
                      stats().table_bytes, peak, before);
}

/* Ids stay unique when the table shrinks and grows again. */
Test(core, ids_are_never_reused) {
        enum { N = 5000 };
        uint64_t *ids = calloc(2 * N, sizeof(*ids));
        struct client *a;
        uint32_t slot;

        add_fpga("f", N * 4 * K);
        for (int round = 0; round < 2; round++) {
                a = client(1);
                for (int i = 0; i < N; i++) {
                        cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &slot), GRANT_REGION);
                        ids[round * N + i] = id_of(slot);
                }
                bye(a);
        }
        for (int i = 0; i < N; i++)
                for (int j = N; j < 2 * N; j++)
                        cr_assert_neq(ids[i], ids[j]);
        free(ids);
}

/* Fault 7: one uid cannot take every connection, name or PERSIST region. */
Test(core, per_uid_limits) {
        struct limits l = test_limits();
        struct client *bob[3], *alice;
        struct core_result res;

        teardown();
        l.max_connections_per_uid = 2;
        l.max_names_per_uid = 2;
        l.max_persist_per_uid = 1;
        setup_with(&l);
        add_fpga("f", 64 * K);
        bob[0] = client(1001);
        bob[1] = client(1001);
        cr_assert_eq(client_add(1001, &bob[2], &res), E_LIMIT);
        cr_assert(strstr(res.msg, "max_connections_per_uid"), "%s", res.msg);
        alice = client(1002);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, 0, "b1", NULL), GRANT_REGION);
        cr_assert_eq(alloc(bob[1], "f", 4 * K, 0, "b2", NULL), GRANT_REGION);
        cr_assert_eq(alloc(bob[1], "f", 4 * K, 0, "b3", NULL), -E_LIMIT);
        cr_assert_eq(alloc(alice, "f", 4 * K, 0, "a1", NULL), GRANT_REGION);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, F_PERSIST, NULL, NULL), GRANT_REGION);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, F_PERSIST, NULL, NULL), -E_LIMIT);
        cr_assert_eq(alloc(alice, "f", 4 * K, F_PERSIST, NULL, NULL), GRANT_REGION);
        /* Names go with their regions, and the count with them. */
        bye(bob[1]);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, 0, "b4", NULL), GRANT_REGION);
        bye(bob[0]);
        bye(alice);
        cr_assert_eq(stats().regions, 2, "the PERSIST regions stay");
}

/*
 * A connection that said Goodbye is released at once but stays open until its client reads the
 * replies before the OK: it counts against both connection limits until the server closes it.
 */
Test(core, a_goodbye_counts_against_the_connection_limits_until_the_close) {
        struct limits l = test_limits();
        struct client *bob[3], *alice[2];
        struct core_result res;

        teardown();
        l.max_connections_per_uid = 2;
        l.max_connections = 3;
        setup_with(&l);
        add_fpga("f", 64 * K);
        bob[0] = client(1001);
        bob[1] = client(1001);
        cr_assert_eq(alloc(bob[0], "f", 4 * K, 0, NULL, NULL), GRANT_REGION);
        core_client_bye(core, bob[0]);
        cr_assert_eq(stats().regions, 0, "the Goodbye released nothing");
        cr_assert_eq(client_add(1001, &bob[2], &res), E_LIMIT, "bob's third connection was let in");
        cr_assert(strstr(res.msg, "(1 of them said Goodbye"), "%s", res.msg);
        alice[0] = client(1002);
        cr_assert_eq(client_add(1002, &alice[1], &res), E_LIMIT, "a fourth connection was let in");
        cr_assert(strstr(res.msg, "max_connections ="), "%s", res.msg);
        core_client_gone(core, 1001);
        core_client_gone(core, 1001); /* a stray second one (no Goodbye left to end) makes no room */
        alice[1] = client(1002);
        cr_assert_eq(client_add(1001, &bob[2], &res), E_LIMIT, "room counted twice");
        bye(alice[1]);
        bob[2] = client(1001);
}

/* A refused request changes nothing. */
Test(core, refused_requests_change_nothing) {
        struct client *a = client(1);
        struct core_stats before;

        add_fpga("f", 64 * K);
        cr_assert_eq(alloc(a, "f", 4 * K, 0, "taken", NULL), GRANT_REGION);
        before = stats();
        cr_assert_eq(alloc(a, "f", 4 * K, 0, "taken", NULL), -E_EXISTS);
        cr_assert_eq(alloc(a, "f", 0, 0, NULL, NULL), -E_INVALID);
        cr_assert_eq(alloc(a, "f", 4 * K, F_ZERO, NULL, NULL), -E_INVALID);
        cr_assert_eq(alloc(a, "f", 4 * K, F_NOWAIT | F_NOFAIL, NULL, NULL), -E_INVALID);
        cr_assert_eq(alloc(a, "f", 128 * K, 0, NULL, NULL), -E_NEVER_FITS);
        cr_assert_eq(alloc(a, "nope", 4 * K, 0, NULL, NULL), -E_NO_POOL);
        cr_assert_eq(alloc(a, "f", 4 * K, 0, "bad\n", NULL), -E_INVALID);
        struct core_stats after = stats();
        cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
        bye(a);
}

/* A PERSIST region whose creator is gone is freed by its uid, the pool's owner or root, not others. */
Test(core, an_orphaned_persist_region_is_freed_by_its_owner) {
        struct client *a = client(1001), *other, *owner;
        struct core_result res;
        uint32_t slot;
        uint64_t id;

        add_fpga("f", 64 * K);
        cr_assert_eq(alloc(a, "f", 4 * K, F_PERSIST, "kept", &slot), GRANT_REGION);
        id = id_of(slot);
        bye(a);
        other = client(1002);
        cr_assert_eq(core_free_region(core, other, id, &res), E_DENIED);
        owner = client(1001);
        cr_assert_eq(core_free_region(core, owner, id, &res), E_OK, "%s", res.msg);
        cr_assert_eq(stats().regions, 0);
        cr_assert_eq(stats().names, 0);
        cr_assert_eq(core_free_region(core, owner, id, &res), E_NOT_FOUND);
        bye(other);
        bye(owner);
}

/* The last Free of a table's top region shrinks the table: nothing may read its slot after that. */
Test(core, freeing_the_top_region_reads_nothing_after_the_table_shrinks) {
        enum { N = 60000 };
        static uint32_t slots[N];
        struct client *a = client(1);
        struct core_result res;

        add_fpga("f", N * 4 * K);
        for (int i = 0; i < N; i++)
                cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &slots[i]), GRANT_REGION);
        for (int i = 1; i < N - 1; i++)
                cr_assert_eq(core_free_region(core, a, id_of(slots[i]), &res), E_OK);
        cr_assert_eq(core_free_region(core, a, id_of(slots[N - 1]), &res), E_OK);
        cr_assert_eq(stats().regions, 1);
        cr_assert_eq(stats().used, 4 * K);
        bye(a);
}

/* Room a free made goes to the waiter, not to the next request that asks before the loop turns. */
Test(core, freed_room_goes_to_waiters_before_newcomers) {
        struct client *a = client(1), *w = client(2);
        struct core_result res;
        struct core_done d;
        uint32_t slot;

        add_fpga("f", 4 * K);
        cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &slot), GRANT_REGION);
        cr_assert_eq(alloc(w, "f", 4 * K, F_NOFAIL, NULL, NULL), GRANT_WAITING);
        cr_assert_eq(core_free_region(core, a, id_of(slot), &res), E_OK);
        /* The server runs the core's pending work before it serves the next request. */
        cr_assert(core_pending(core));
        core_run(core);
        cr_assert_eq(alloc(a, "f", 4 * K, F_NOWAIT, NULL, NULL), -E_WOULD_BLOCK);
        cr_assert(core_done_pop(core, &d));
        cr_assert_eq(d.client, w);
        cr_assert_eq(d.grant, GRANT_REGION);
        bye(w);
        bye(a);
}

/* One hold left high in a large hold table does not pin the table's peak size. */
Test(core, the_hold_table_shrinks_around_a_survivor) {
        enum { N = 65536 };
        struct client *a = client(1), *b = client(2);
        struct core_result res;
        uint32_t s;
        char name[32];
        size_t before = stats().table_bytes;

        add_fpga("f", N * 4 * K);
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "n%d", i);
                cr_assert_eq(alloc(a, "f", 4 * K, F_PERSIST, i == N / 2 - 1 ? name : NULL, NULL), GRANT_REGION);
        }
        snprintf(name, sizeof(name), "n%d", N / 2 - 1);
        cr_assert_eq(core_attach(core, b, 0, &(struct attach_request){.name = name}, &s, &res), GRANT_REGION, "%s",
                     res.msg);
        bye(a);
        cr_assert_eq(stats().holds, 1);
        /* The PERSIST regions stay: the region table is full, the hold table must not be. */
        cr_assert_leq(stats().table_bytes, before + (size_t)N * 64 + (size_t)N / 8 + 65536, "%zu bytes",
                      stats().table_bytes);
        bye(b);
}

/* A quota counts what a region takes: its size rounded up to the pool's quantum. */
Test(core, quota_counts_the_rounded_size) {
        struct pool_conf pc = {.kind = POOL_FPGA,
                               .has_kind = true,
                               .quantum = 64 * K,
                               .mode = 0666,
                               .numa_node = -1,
                               .quota_per_uid = 100 * K};
        struct span sp = {.base = 0, .size = 1024 * K};
        struct client *a;
        char err[256];

        snprintf(pc.name, sizeof(pc.name), "q");
        pc.ranges = &sp;
        pc.nranges = 1;
        cr_assert_eq(core_pool_add(core, &pc, err, sizeof(err)), 0, "%s", err);
        a = client(1000);
        cr_assert_eq(alloc(a, "q", 1, 0, NULL, NULL), GRANT_REGION);
        cr_assert_eq(alloc(a, "q", 1, 0, NULL, NULL), -E_QUOTA, "two 1-byte regions take 128 KiB of a 100 KiB quota");
        cr_assert_eq(stats().used, 64 * K);
        bye(a);
}

/* A pool's bytes-per-uid records (its quota's) go with the uid's last byte: they do not pile up with every uid that
 * ever allocated. */
Test(core, usage_records_go_with_the_last_byte) {
        enum { N = 1000 };
        uint32_t slot;

        add_fpga("f", 64 * K);
        for (uid_t uid = 1; uid <= N; uid++) {
                struct client *a = client(10000 + uid);
                cr_assert_eq(alloc(a, "f", 4 * K, 0, NULL, &slot), GRANT_REGION);
                bye(a);
        }
        cr_assert_eq(stats().used, 0);
        cr_assert_eq(stats().usage, 0, "%llu per-uid usage records left with nothing in use, after %d uids",
                     (unsigned long long)stats().usage, N);
}

/* A falloc heap's tag: a side entry while the region lives; its header written inline, or by the zeroing job. */
Test(core, a_large_heap_is_written_off_the_loop_thread) {
        struct client *a = client(1);
        struct alloc_request heap = {.pool = "h", .numa_node = -1, .format = FMT_FALLOC, .chunk_size = 16};
        struct core_result res;
        struct region_info r;
        struct zero_job job;
        uint32_t small, large;

        add_host("h", 80 << 20);
        heap.size = 64 * K;
        cr_assert_eq(core_alloc(core, a, 0, &heap, &small, &res), GRANT_REGION, "%s", res.msg);
        heap.size = 72 << 20; /* its bitmap passes ZERO_INLINE_MAX */
        cr_assert_eq(core_alloc(core, a, 0, &heap, &large, &res), GRANT_ZEROING, "%s", res.msg);
        core_region_info(core, large, &r);
        cr_assert(r.pending && r.formatted && r.fmt.format == FMT_FALLOC && r.fmt.chunk_size == 16);
        cr_assert_eq(stats().formats, 2);
        core_zero_job(core, large, &job);
        cr_assert(!job.zero && job.fmt.format == FMT_FALLOC && job.fmt.chunk_count == r.fmt.chunk_count);
        cr_assert_eq(core_zero_run(&job), 0);
        cr_assert_eq(core_zero_done(core, a, large, 0, &res), GRANT_REGION);
        heap.chunk_size = 0;
        struct core_stats before = stats();
        cr_assert_eq(core_alloc(core, a, 0, &heap, &small, &res), GRANT_NONE);
        cr_assert_eq(res.code, E_INVALID);
        struct core_stats after = stats();
        cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0, "a refusal changes nothing");
        bye(a);
        cr_assert_eq(stats().formats, 0, "the tags went with their regions");
}
