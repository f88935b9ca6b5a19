/* SPDX-License-Identifier: MIT */
/*
 * fuzz-request's seed stories of the features added on top of the basics (gen-request-seeds.c runs
 * them): falloc heaps, batches, reclaims, limits, spares, and string fields a client cannot pack.
 */
#include <stdio.h>
#include <string.h>

#include "request-stories.h"
#include "seed-writer.h"
#include "wire.h"

/* falloc heaps: allocd writes them (inline, in a region's memfd, after a worker's ZERO); bad formats. */
void heaps(void) {
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;

        begin(fuzz_header(FUZZ_BIG_P, 1, 2, 3));
        hello(0);
        hello(1);
        a.has_format = a.has_chunk_size = true;
        a.format = ALLOCD__FORMAT__FALLOC_HEAP;
        a.chunk_size = 256;
        alloc_with(0, "h", 65536, 0, "heap", &a);
        attach(1, "heap");
        alloc_with(0, "r", 65536, 0, NULL, &a);
        alloc_with(0, "p", BIG, ALLOCD__FLAG__ZERO, "big-heap", &a);
        attach(1, "big-heap");
        zeroed(0);
        alloc_with(0, "g", 65536, 0, "gpu-heap", &a);
        dump(1, 0, NULL);
        alloc_with(0, "h", 600, 0, NULL, &a); /* no room for a chunk beside the header */
        alloc_with(0, "f", 65536, 0, NULL, &a);
        a.chunk_size = 0;
        alloc_with(0, "h", 65536, 0, NULL, &a);
        a.chunk_size = 1ull << 31;
        alloc_with(0, "h", 65536, 0, NULL, &a);
        a.format = 7;
        alloc_with(0, "h", 65536, 0, NULL, &a);
        a.format = ALLOCD__FORMAT__RAW;
        alloc_with(0, "h", 65536, 0, NULL, &a);
        save("falloc-heaps");
}

/* Batches: all or none, the first region brings the pool's fd, what does not apply to a batch. */
void batches(void) {
        static const uint64_t three[] = {4096, 8192, 65536}, too_much[] = {65536, 131072}, big[] = {BIG};
        static const uint64_t two[] = {ID(0), ID(1)}, twice[] = {ID(2), ID(2)}, unknown[] = {ID(2), ID(99)};
        static const uint64_t four[] = {4096, 4096, 4096, 4096};

        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc_batch(0, "h", three, 3, 0, NULL, false);
        alloc_batch(0, "h", too_much, 2, 0, NULL, false); /* the first fits, the second not: neither stays */
        alloc_batch(0, "h", three, 2, ALLOCD__FLAG__ZERO, NULL, false);
        alloc_batch(0, "h", big, 1, ALLOCD__FLAG__ZERO, NULL, false);
        alloc_batch(0, "h", three, 1, ALLOCD__FLAG__PERSIST, NULL, false);
        alloc_batch(0, "h", three, 1, 0, "named", false);
        alloc_batch(0, "p", three, 3, 0, NULL, false);
        alloc_batch(0, "g", three, 2, 0, NULL, false);
        alloc_batch(0, "f", four, 4, 0, NULL, false);
        free_batch(0, two, 2);
        free_batch(0, twice, 2);
        free_batch(0, unknown, 2);
        alloc_batch(0, "h", three, 2, 0, NULL, true); /* in columns */
        alloc_batch(0, "p", three, 2, 0, NULL, true);
        status(0, 0);
        save("batches");

        /* The pool's fd came with a batch in columns, so the Alloc after it has none (once a false failure). */
        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        alloc_batch(0, "h", three, 3, 0, NULL, true);
        alloc(0, "h", 4096, 0, NULL);
        save("columns-then-alloc");

        begin(fuzz_header(FUZZ_TIGHT, 1, 2, 3));
        hello(0);
        alloc_batch(0, "f", four, 4, 0, NULL, false);
        alloc_batch(0, "f", four, 3, 0, NULL, false);
        free_batch(0, two, 2);
        save("tight-batches");
}

/* A reclaim allocd cannot grant (a fresh core holds no placeholder), then the held list paged. */
void reclaiming(void) {
        Allocd__Hello h = ALLOCD__HELLO__INIT;
        Allocd__Held held = ALLOCD__HELD__INIT;
        uint8_t secret[16] = {1, 2, 3};

        begin(fuzz_header(0, 1, 2, 3));
        h.has_version = true;
        h.version = WIRE_VERSION;
        h.has_reclaim_serial = true;
        h.reclaim_serial = 7;
        h.has_reclaim_secret = true;
        h.reclaim_secret.len = sizeof(secret);
        h.reclaim_secret.data = secret;
        put(0, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
        h.reclaim_secret.len = 3; /* too short: refused as invalid */
        put(0, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
        hello(0);
        alloc(0, "h", 4096, 0, NULL);
        alloc(0, "h", 8192, 0, "kept");
        put(0, 12, ALLOCD__REQUEST__BODY_HELD, &held);
        held.has_after = true;
        held.after = ID(0);
        put(0, 13, ALLOCD__REQUEST__BODY_HELD, &held);
        save("reclaim-refused-then-held");
}

void limits(void) {
        begin(fuzz_header(FUZZ_TIGHT, 1, 1, 2));
        hello(0);
        hello(1);
        for (int i = 0; i < 4; i++)
                alloc(0, "f", 4096, 0, NULL);
        save("tight-regions-and-connections");

        begin(fuzz_header(FUZZ_TIGHT, 1, 2, 3));
        hello(0);
        alloc(0, "f", 4096, 0, "n1");
        alloc(0, "f", 4096, 0, "n2");
        alloc(0, "f", 4096, ALLOCD__FLAG__PERSIST, NULL);
        alloc(0, "f", 4096, ALLOCD__FLAG__PERSIST, NULL);
        save("tight-names-and-persist");

        begin(fuzz_header(FUZZ_TIGHT, 1, 0, 2));
        hello(0);
        hello(1);
        fill_f(0);
        alloc(1, "f", 4096, 0, NULL);
        alloc(1, "f", 4096, 0, NULL);
        tick(60);
        save("tight-waiters");

        /* A connection that never says Hello is closed at its deadline. */
        begin(fuzz_header(FUZZ_TIGHT, 1, 2, 3));
        hello_as(0, WIRE_VERSION, "\x01");
        tick(200);
        status(0, 0);
        save("hello-deadline");
}

/* A Free of region that asks for n spares of shape (pool, size, flags), or of shape *a when given. */
static void renew(int s, uint64_t region, const char *pool, uint64_t size, uint32_t flags, uint32_t n,
                  Allocd__Alloc *a) {
        Allocd__Alloc plain = ALLOCD__ALLOC__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;

        f.has_region = true;
        f.region = region;
        f.renew = alloc_shape(a ? a : &plain, pool, size, flags, a ? a->name : NULL);
        f.has_spares = n != 1;
        f.spares = n;
        put(s, 3, ALLOCD__REQUEST__BODY_FREE, &f);
}

/* Spares (Free.renew): one, two, zeroed, none (waiters first, a bad shape, a refused Free), isolation = region. */
void spares(void) {
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;

        begin(fuzz_header(0, 1, 2, 3));
        hello(0);
        for (int i = 0; i < 5; i++)
                alloc(0, "h", 4096, 0, NULL);                                    /* slots 0-4 */
        renew(0, ID(0), "h", 4096, 0, 1, NULL);                                  /* slot 0 again, generation 2 */
        renew(0, UINT64_C(2) << 32 | 0, "h", 4096, ALLOCD__FLAG__ZERO, 2, NULL); /* slots 0 (3) and 5 */
        renew(0, ID(1), "r", 2 << 20, ALLOCD__FLAG__ZERO, 1, NULL);              /* zeroed off the loop: no spare */
        renew(0, ID(99), "h", 4096, 0, 1, NULL);                                 /* the Free refused: no spare either */
        renew(0, ID(2), "h", 4096, ALLOCD__FLAG__PERSIST | ALLOCD__FLAG__NOFAIL, 3, NULL);
        a.name = "spare";
        renew(0, ID(3), "h", 4096, 0, 1, &a);
        a.name = NULL;
        a.has_count = true;
        a.count = 0;
        renew(0, ID(4), "h", 4096, 0, 2, &a);
        a.has_count = false;
        a.has_format = true;
        a.format = ALLOCD__FORMAT__FALLOC_HEAP;
        renew(0, ID(5), "nope", 4096, 0, 2, &a);
        renew(0, UINT64_C(3) << 32 | 0, "h", 4096, ALLOCD__FLAG__PERSIST, 1, NULL);
        alloc(0, "r", 4096, 0, NULL);                           /* slot 0, generation 4 */
        renew(0, UINT64_C(4) << 32 | 0, "r", 4096, 0, 2, NULL); /* one: each region brings its own memfd */
        status(0, 0);
        dump(0, 0, NULL);
        raw(0, "", 0);
        save("spares");

        /* A waiter for the room: it comes first, and the renew makes no spare. */
        begin_f_full();
        alloc(1, "f", 4096, ALLOCD__FLAG__NOFAIL, NULL);
        renew(0, ID(0), "f", 4096, 0, 2, NULL);
        record(0, FUZZ_TURN);
        renew(0, ID(1), "f", 4096, 0, 2, NULL);
        status(0, 0);
        save("spares-waiters-first");
}

/* Packs a request as put() does, but with each '~' of it a NUL byte and each '^' a 0xff: what protobuf-c cannot pack.
 */
static void put_spoiled(int s, uint64_t id, Allocd__Request__BodyCase body_case, void *body) {
        static uint8_t buf[WIRE_MAX_PACKET];
        size_t n = pack(buf, id, body_case, body);

        for (size_t i = 0; i < n; i++)
                if (buf[i] == '~' || buf[i] == '^')
                        buf[i] = buf[i] == '~' ? 0 : 0xff;
        raw(s, buf, n);
}

/* String fields with a NUL byte or bytes that are not UTF-8 (tests/test-daemon-strings.c): INVALID, nothing done. */
void strings(void) {
        Allocd__Hello h = ALLOCD__HELLO__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Attach at = ALLOCD__ATTACH__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        Allocd__Dump d = ALLOCD__DUMP__INIT;

        begin(fuzz_header(0, 1, 2, 3));
        h.has_version = true;
        h.version = WIRE_VERSION;
        h.client_name = "me~evil";
        put_spoiled(0, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
        hello(0);
        hello(1);
        alloc(1, "h", 4096, 0, "a");
        put_spoiled(0, 2, ALLOCD__REQUEST__BODY_ALLOC, alloc_shape(&a, "h", 4096, 0, "b~c"));
        put_spoiled(0, 3, ALLOCD__REQUEST__BODY_ALLOC, alloc_shape(&a, "h^", 4096, 0, NULL));
        at.name = "a~b";
        put_spoiled(0, 4, ALLOCD__REQUEST__BODY_ATTACH, &at);
        alloc(0, "h", 4096, 0, NULL);
        f.has_region = true;
        f.region = ID(1);
        f.renew = alloc_shape(&a, "h~x", 8192, 0, NULL);
        put_spoiled(0, 5, ALLOCD__REQUEST__BODY_FREE, &f);
        d.pool = "^";
        put_spoiled(0, 6, ALLOCD__REQUEST__BODY_DUMP, &d);
        attach(0, "a");
        save("strings-with-nul");
}
