/* SPDX-License-Identifier: MIT */
/*
 * Writes fuzz-request's seed corpus: real Requests packed by protobuf-c, in
 * fuzz-request.h's records, one file a story: every request type, good and
 * bad, the hostile inputs of tests/test-daemon-hostile.c, waiters, zeroing,
 * falloc heaps, spares (request-stories.c), hang-ups and limits.  The fuzzer grows its own corpus from these; the
 * committed one changes only when this program does:
 *
 *   build-fuzz/fuzz/gen-request-seeds fuzz/corpus/request
 *
 * Region ids are known in advance because each input starts from a fresh
 * core: the n-th slot handed out (lowest free first) has id 1 << 32 | n.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request-stories.h"
#include "seed-writer.h"
#include "wire.h"

/* ---- the stories ---- */

static void basics(void) {
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        save("hello");

        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc(0, "h", 4096, 0, NULL);
        status(0, 0);
        dump(0, 0, NULL);
        free_region(0, ID(0));
        save("alloc-free");

        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        a.has_align = a.has_boundary = true;
        a.align = 1 << 16;
        a.boundary = 1 << 20;
        begin(fuzz_header(0, 0, 2, 3));
        hello(0);
        alloc(0, "h", 8192, 0, "in-h");
        alloc(0, "p", 65536, 0, NULL);
        alloc_with(0, "f", 4096, 0, NULL, &a);
        alloc(0, "g", 4096, 0, NULL);
        alloc(0, "nope", 4096, 0, NULL);
        status(0, 0);
        dump(0, 0, "f");
        save("every-pool");

        begin(fuzz_header(0, 1, 2, 3));
        raw(0, "", 0);
        hello(0);
        status(0, 0);
        save("hangup-first");

        /* Sessions are numbered 1, 2, 3 as they open, pids 101, 102, 103; session 0 is root. */
        begin(fuzz_header(0, 0, 1, 1));
        hello(0);
        hello(1);
        alloc(1, "h", 4096, ALLOCD__FLAG__PERSIST, "kept");
        hello(2);
        alloc(2, "h", 8192, 0, NULL);
        disconnect(1, 101, 0); /* root's: denied */
        disconnect(1, 0, 3);   /* its own uid's */
        disconnect(0, 102, 0); /* root may */
        disconnect(0, 0, 0);   /* neither */
        disconnect(0, 101, 1); /* both */
        disconnect(0, 101, 0); /* itself: not found */
        status(0, 0);
        save("disconnect");

        /* Waiting attaches: a name sealed later, one abandoned, one that times out. */
        begin(fuzz_header(0, 0, 1, 1));
        hello(0);
        hello(1);
        hello(2);
        attach_within(1, "later", 1000);
        attach_within(2, "later", 1000);
        alloc(0, "h", 4096, ALLOCD__FLAG__UNSEALED, "later");
        attach(1, "later");
        seal(1, ID(0));
        seal(0, ID(0));
        seal(0, ID(0));
        attach_within(1, "half", 1000);
        alloc(2, "h", 8192, ALLOCD__FLAG__UNSEALED | ALLOCD__FLAG__PERSIST, "half");
        raw(2, "", 0);
        attach_within(1, "never", 50);
        tick(100);
        alloc(0, "h", 4096, ALLOCD__FLAG__UNSEALED, NULL);
        status(0, 0);
        save("seal-and-wait");

        /* Isolation: a region pool's regions (read-only for those who may only attach), reserved names, attach by pool
         * and owner. */
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        hello(1);
        alloc(0, "r", 4096, 0, "iso");
        alloc(0, "r", 1 << 20, ALLOCD__FLAG__ZERO, NULL);
        alloc(1, "r", 2 << 20, ALLOCD__FLAG__ZERO, NULL);
        attach(1, "iso");
        attach(1, "iso");
        detach(1, ID(0));
        alloc(1, "h", 4096, 0, "res/x");
        alloc(1, "p", 4096, 0, "res/y");
        Allocd__Attach at = ALLOCD__ATTACH__INIT;
        at.name = "iso";
        at.pool = "h";
        put(1, 7, ALLOCD__REQUEST__BODY_ATTACH, &at);
        at.pool = "r";
        at.has_owner = true;
        at.owner = 1000;
        put(1, 8, ALLOCD__REQUEST__BODY_ATTACH, &at);
        at.pool = "nope";
        put(1, 9, ALLOCD__REQUEST__BODY_ATTACH, &at);
        alloc(0, "h", 4096, 0, "bad\xc2\x85name");
        free_region(0, ID(0));
        status(0, 0);
        save("isolation");
}

/* test-daemon-hostile.c's cases. */
static void hostile(void) {
        static const char junk[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01 not protobuf";
        static const uint8_t unknown[] = {0x08, 0x05, 0xd8, 0x06, 0x01}; /* id 5, field 107 = 1 */
        static char name[40000];
        static uint8_t spam[64000];

        begin(fuzz_header(0, 1, 2, 3));
        raw(0, junk, sizeof(junk));
        hello(0);
        raw(0, junk, sizeof(junk));
        save("garbage-before-and-after-hello");

        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc(0, "h", 4096, 0, "a name long enough to cut in the middle");
        cut(10);
        save("truncated-message");

        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        raw(0, unknown, sizeof(unknown));
        status(0, 0);
        save("unknown-request");

        begin(fuzz_header(0, 1, 2, 3));
        status(0, 0);
        hello_as(1, 99, NULL);
        hello_as(2, 0, NULL);
        save("before-hello-and-wrong-version");

        begin(fuzz_header(0, 1, 1, 3));
        hello(0);
        alloc(0, "h", 8192, 0, NULL);
        hello(1);
        uint64_t ids[] = {0, 1, ID(0), ID(0) ^ (UINT64_C(1) << 32), UINT64_MAX};
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                free_region(1, ids[i]);
                detach(1, ids[i]);
        }
        save("regions-not-held");

        memset(name, 'n', sizeof(name) - 1);
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc(0, name, 4096, 0, NULL);
        save("oversized-pool-name");
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc(0, "h", 4096, 0, name);
        save("oversized-region-name");
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        attach(0, name);
        save("oversized-attach");

        /* 32,000 two-byte unknown fields: the unpack budget refuses them. */
        for (size_t i = 0; i < sizeof(spam); i += 2) {
                spam[i] = 13 << 3;
                spam[i + 1] = 0x01;
        }
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        raw(0, spam, sizeof(spam));
        save("unpacking-is-budgeted");

        begin(fuzz_header(0, 1, 2, 3));
        hello_as(0, WIRE_VERSION, "bad\nname");
        hello_as(0, WIRE_VERSION, "job-1");
        hello(0);
        save("hello-names-and-twice");
}

static void bad_allocs(void) {
        Allocd__Alloc a;

        begin(fuzz_header(0, 0, 2, 3));
        hello(0);
        alloc(0, "f", 4096, ALLOCD__FLAG__NOWAIT | ALLOCD__FLAG__NOFAIL, NULL);
        alloc(0, "p", 4096, ALLOCD__FLAG__WRITECOMBINED, NULL);
        alloc(0, "h", 4096, 0x100, NULL);
        alloc(0, "h", 0, 0, NULL);
        alloc(0, "f", 4096, ALLOCD__FLAG__ZERO, NULL);
        alloc(0, "f", 4u << 20, 0, NULL);
        alloc(0, "f", UINT64_MAX, 0, NULL);
        alloc(0, "", 4096, 0, NULL);
        alloc(0, "h", 4096, 0, "bad\x7f");
        allocd__alloc__init(&a);
        a.has_count = true;
        alloc_with(0, "h", 4096, 0, NULL, &a);
        a.count = UINT64_C(1) << 63;
        alloc_with(0, "h", 4, 0, NULL, &a);
        allocd__alloc__init(&a);
        a.has_align = a.has_phase = true;
        a.align = 3;
        alloc_with(0, "f", 4096, 0, NULL, &a);
        a.align = 8192;
        a.phase = 1;
        alloc_with(0, "f", 4096, 0, NULL, &a);
        allocd__alloc__init(&a);
        a.has_boundary = true;
        a.boundary = 4096;
        alloc_with(0, "f", 8192, 0, NULL, &a);
        allocd__alloc__init(&a);
        a.has_low = a.has_high = true;
        a.low = 2ull << 32;
        a.high = 1ull << 32;
        alloc_with(0, "f", 4096, 0, NULL, &a);
        allocd__alloc__init(&a);
        a.has_numa_node = true;
        a.numa_node = 2;
        alloc_with(0, "h", 4096, 0, NULL, &a);
        save("bad-allocs");

        /* h's quota is 192 KiB a uid. */
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc(0, "h", 128 << 10, 0, NULL);
        alloc(0, "h", 128 << 10, 0, NULL);
        alloc(0, "h", 256 << 10, 0, NULL);
        save("quota");

        /* uid 65534: p is 0660 (denied), f 0664 (attach only). */
        begin(fuzz_header(0, 3, 1, 0));
        hello(0);
        alloc(0, "p", 4096, 0, NULL);
        alloc(0, "f", 4096, 0, NULL);
        hello(1);
        alloc(1, "f", 4096, 0, "fa");
        attach(0, "fa");
        detach(0, ID(0));
        free_region(0, ID(0));
        save("denied");
}

static void sharing(void) {
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        hello(1);
        alloc(0, "f", 4096, 0, "shared");
        alloc(1, "f", 4096, 0, "shared");
        attach(1, "shared");
        attach(1, "shared");
        attach(1, "missing");
        attach(1, "");
        free_region(1, ID(0));
        detach(1, ID(0));
        dump(1, 0, NULL);
        free_region(0, ID(0));
        detach(1, ID(0));
        save("share");

        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc(0, "h", 4096, ALLOCD__FLAG__PERSIST, "keep");
        alloc(0, "h", 4096, ALLOCD__FLAG__PERSIST, NULL);
        raw(0, "", 0);
        hello(0);
        attach(0, "keep");
        free_region(0, ID(0));
        dump(0, 0, NULL);
        save("persist");

        begin(fuzz_header(0, 0, 1, 2));
        hello(0);
        for (int i = 0; i < 20; i++)
                alloc(0, "f", 4096, 0, i % 3 ? NULL : "named");
        dump(0, 0, NULL);
        dump(0, ID(10), NULL);
        dump(0, UINT32_MAX, NULL);
        dump(0, 0, "f");
        dump(0, 0, "nope");
        dump(0, 0, "bad\n");
        hello(1);
        hello(2);
        status(0, 0);
        status(0, 2);
        status(0, UINT64_MAX);
        save("dump-and-status");
}

static void waiting(void) {
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;

        begin_f_full();
        alloc(1, "f", 4096, ALLOCD__FLAG__NOFAIL, NULL);
        alloc(1, "f", 1 << 20, 0, NULL);
        free_region(0, ID(1));
        record(0, FUZZ_TURN);
        free_region(0, ID(0));
        record(0, FUZZ_TURN);
        save("wait-granted");

        begin_f_full();
        alloc(1, "f", 4096, ALLOCD__FLAG__NOWAIT, NULL);
        a.has_timeout_ms = true;
        a.timeout_ms = 10;
        alloc_with(1, "f", 4096, 0, NULL, &a);
        alloc(1, "f", 4096, 0, "late");
        tick(20);
        tick(40000); /* past the default wait_timeout, 30 s */
        save("wait-timeout");

        begin(fuzz_header(0, 1, 0, 0));
        hello(0);
        hello(1);
        hello(2);
        fill_f(0);
        alloc(1, "f", 4096, ALLOCD__FLAG__NOFAIL, NULL);
        alloc(2, "f", 8192, 0, NULL);
        raw(1, "", 0);
        record(0, FUZZ_STOP);
        save("stop-with-waiters");

        /* A waiter whose name is taken while it waits is refused when it is tried. */
        begin_f_full();
        alloc(1, "f", 4096, 0, "race");
        alloc(0, "h", 4096, 0, "race");
        free_region(0, ID(0));
        record(0, FUZZ_TURN);
        save("wait-name-taken");
}

/* Cancels: of a waiting Attach (id 5) and then of it answered, of unknown ids, another's; of a waiting Alloc. */
static void cancelling(void) {
        begin(fuzz_header(0, 1, 0, 2));
        hello(0);
        hello(1);
        attach_within(0, "later", 1000);
        cancel(1, 5); /* another connection's request: not found */
        cancel(0, 99);
        cancel(0, 0);
        cancel(0, 5); /* the waiting Attach: cancelled */
        record(0, FUZZ_TURN);
        cancel(0, 5); /* answered already */
        alloc(1, "h", 4096, 0, "later");
        status(0, 0);
        save("cancel-attach");

        begin_f_full();
        alloc(1, "f", 4096, ALLOCD__FLAG__NOFAIL, NULL);
        free_region(0, ID(1));
        cancel(1, 2); /* room came first, the grant not yet answered: not found once the turn ran */
        alloc(1, "f", 1 << 20, 0, NULL);
        cancel(1, 2); /* waiting: cancelled */
        free_region(0, ID(0));
        record(0, FUZZ_TURN);
        save("cancel-alloc");
}

/*
 * Goodbyes: before Hello; twice (the second comes on a new connection: before its Hello); from a
 * connection holding another's named region, with a wait for a name and a PERSIST region of its own;
 * with an Alloc waiting for room; while its region is being zeroed.
 */
static void leaving(void) {
        begin(fuzz_header(0, 1, 2, 0));
        goodbye(2);
        hello(0);
        hello(1);
        alloc(0, "h", 4096, 0, "shared");
        alloc(1, "h", 8192, ALLOCD__FLAG__PERSIST, "kept");
        attach(1, "shared");
        attach_within(1, "later", 1000);
        goodbye(1);
        goodbye(1);
        attach(0, "kept");
        free_region(0, ID(1));
        status(0, 0);
        save("goodbye-holding");

        begin_f_full();
        alloc(1, "f", 4096, ALLOCD__FLAG__NOFAIL, NULL);
        goodbye(1);
        free_region(0, ID(0));
        record(0, FUZZ_TURN);
        save("goodbye-waiting");

        begin(fuzz_header(FUZZ_BIG_P, 1, 2, 3));
        hello(0);
        alloc(0, "p", BIG, ALLOCD__FLAG__ZERO | ALLOCD__FLAG__PERSIST, "z");
        goodbye(0);
        zeroed(0);
        hello(1);
        attach(1, "z");
        save("goodbye-zeroing");
}

static void zeroing(void) {
        for (int failed = 0; failed < 2; failed++) {
                begin(fuzz_header(FUZZ_BIG_P, 1, 2, 3));
                hello(0);
                alloc(0, "p", BIG, ALLOCD__FLAG__ZERO, "z");
                hello(1);
                attach(1, "z");
                free_region(0, ID(0));
                zeroed(failed);
                free_region(0, ID(0));
                save(failed ? "zero-failed" : "zero-big");
        }

        begin(fuzz_header(FUZZ_BIG_P, 1, 2, 3));
        hello(0);
        alloc(0, "p", BIG, ALLOCD__FLAG__ZERO | ALLOCD__FLAG__PERSIST, NULL);
        raw(0, "", 0);
        zeroed(0);
        save("zero-after-hangup");

        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc(0, "h", 65536, ALLOCD__FLAG__ZERO, NULL);
        alloc(0, "p", 65536, ALLOCD__FLAG__ZERO, NULL);
        save("zero-inline");

        begin(fuzz_header(FUZZ_BIG_P, 1, 2, 3));
        hello(0);
        hello(1);
        alloc(0, "p", 65536, 0, NULL);
        alloc(1, "p", BIG, ALLOCD__FLAG__ZERO | ALLOCD__FLAG__NOFAIL, NULL);
        free_region(0, ID(0));
        record(0, FUZZ_TURN);
        zeroed(0);
        save("zero-waiter");
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: gen-request-seeds DIR\n");
                return 2;
        }
        seed_dir = argv[1];
        basics();
        hostile();
        bad_allocs();
        sharing();
        waiting();
        zeroing();
        heaps();
        limits();
        batches();
        reclaiming();
        spares();
        strings();
        cancelling();
        leaving();
        return 0;
}
