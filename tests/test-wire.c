/* SPDX-License-Identifier: MIT */
/* The unpack budget: what fits the arena costs no malloc, what does not spills, and the cap holds. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "allocd.pb-c.h"
#include "wire.h"

static _Alignas(16) uint8_t arena[4096];

/* An Alloc request whose name is n bytes of 'x'. */
static size_t pack_alloc(uint8_t *buf, size_t size, size_t n) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        char *name = malloc(n + 1);

        memset(name, 'x', n);
        name[n] = '\0';
        a.pool = "host";
        a.has_size = true;
        a.size = 4096;
        a.name = name;
        req.has_id = true;
        req.id = 7;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
        req.alloc = &a;
        cr_assert_leq(allocd__request__get_packed_size(&req), size);
        size_t len = allocd__request__pack(&req, buf);
        free(name);
        return len;
}

static bool in_arena(const void *p) {
        return (const uint8_t *)p >= arena && (const uint8_t *)p < arena + sizeof(arena);
}

Test(wire, a_small_message_is_unpacked_into_the_arena_alone) {
        struct wire_budget b;
        uint8_t buf[256];
        size_t len = pack_alloc(buf, sizeof(buf), 10);

        wire_budget_init(&b, WIRE_UNPACK_BUDGET, arena, sizeof(arena));
        Allocd__Request *req = allocd__request__unpack(&b.allocator, len, buf);
        cr_assert(req);
        cr_assert_eq(b.spilled, 0);
        cr_assert(in_arena(req) && in_arena(req->alloc) && in_arena(req->alloc->name));
        cr_assert_eq((uintptr_t)req->alloc % 16, 0, "arena blocks keep malloc's alignment");
        cr_assert_str_eq(req->alloc->pool, "host");
        cr_assert_eq(strlen(req->alloc->name), 10);
        wire_budget_free(&b, &req->base);
}

Test(wire, what_does_not_fit_the_arena_spills_to_malloc_and_is_freed) {
        struct wire_budget b;
        static uint8_t buf[WIRE_MAX_PACKET];
        size_t len = pack_alloc(buf, sizeof(buf), 3 * sizeof(arena));

        wire_budget_init(&b, WIRE_UNPACK_BUDGET, arena, sizeof(arena));
        Allocd__Request *req = allocd__request__unpack(&b.allocator, len, buf);
        cr_assert(req);
        cr_assert_geq(b.spilled, 1);
        cr_assert(!in_arena(req->alloc->name));
        cr_assert_eq(strlen(req->alloc->name), 3 * sizeof(arena));
        wire_budget_free(&b, &req->base); /* the sanitizer build sees a leak or a bad free here */
}

Test(wire, without_an_arena_everything_is_malloced_and_the_default_allocator_frees_it) {
        struct wire_budget b;
        uint8_t buf[256];
        size_t len = pack_alloc(buf, sizeof(buf), 10);

        wire_budget_init(&b, WIRE_UNPACK_BUDGET, NULL, 0);
        Allocd__Request *req = allocd__request__unpack(&b.allocator, len, buf);
        cr_assert(req);
        cr_assert(!in_arena(req));
        allocd__request__free_unpacked(req, NULL);
}

Test(wire, a_message_over_the_budget_is_refused) {
        struct wire_budget b;
        static uint8_t buf[WIRE_MAX_PACKET];
        size_t len = pack_alloc(buf, sizeof(buf), 1000);

        for (int with_arena = 0; with_arena < 2; with_arena++) {
                wire_budget_init(&b, 512, with_arena ? arena : NULL, with_arena ? sizeof(arena) : 0);
                cr_assert_null(allocd__request__unpack(&b.allocator, len, buf),
                               "a 1000-byte name unpacked within a 512-byte budget");
        }
}
