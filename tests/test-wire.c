/* SPDX-License-Identifier: MIT */
/* The unpack budget (what fits the arena costs no malloc, what does not spills, and the cap holds), and
 * wire_check_text. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "allocd.pb-c.h"
#include "text.h"
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

/*
 * wire_check_text: string fields with a NUL byte or bytes that are not UTF-8, wherever they are in
 * the message, and packets that are not messages.  The packets are written by hand, as a hostile
 * client would, since protobuf-c packs a C string and so can never send a NUL.
 */
struct pkt {
        uint8_t b[512];
        size_t n;
};

static void put_varint(struct pkt *p, uint64_t v) {
        do {
                cr_assert_lt(p->n, sizeof(p->b));
                p->b[p->n++] = (uint8_t)(v & 0x7f) | (v > 0x7f ? 0x80 : 0);
                v >>= 7;
        } while (v);
}

/* Field num, length-delimited, holding data[0, n). */
static void put_bytes(struct pkt *p, unsigned num, const void *data, size_t n) {
        put_varint(p, (uint64_t)num << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
        put_varint(p, n);
        cr_assert_leq(p->n + n, sizeof(p->b));
        memcpy(p->b + p->n, data, n);
        p->n += n;
}

static void put_uint(struct pkt *p, unsigned num, uint64_t v) {
        put_varint(p, (uint64_t)num << 3 | PROTOBUF_C_WIRE_TYPE_VARINT);
        put_varint(p, v);
}

/* A Request {id 9, body field num = inner}. */
static struct pkt request(unsigned num, const struct pkt *inner) {
        struct pkt p = {.n = 0};

        put_uint(&p, 1, 9);
        put_bytes(&p, num, inner->b, inner->n);
        return p;
}

/* An Alloc {pool "host", size 4096, name[0, n)}. */
static struct pkt alloc_named(const char *name, size_t n) {
        struct pkt a = {.n = 0};

        put_bytes(&a, 1, "host", 4);
        put_uint(&a, 2, 4096);
        put_bytes(&a, 12, name, n);
        return a;
}

static void expect_bad(const struct pkt *p, const ProtobufCMessageDescriptor *d, const char *where, int why) {
        struct wire_bad_text bad = {0};
        char got[128];

        cr_assert_eq(wire_check_text(d, p->b, p->n, &bad), -EILSEQ, "%s passed", where);
        wire_bad_text_where(&bad, got, sizeof(got));
        cr_expect_str_eq(got, where);
        cr_expect_eq(bad.why, why, "%s: %s", where, wire_bad_text_why(&bad));
}

Test(wire, protobuf_c_cuts_a_string_at_its_nul_which_is_why_the_walk_exists) {
        struct pkt a = alloc_named("a\0evil", 6), p = request(3, &a);
        Allocd__Request *req = allocd__request__unpack(NULL, p.n, p.b);

        cr_assert(req, "protobuf-c refused the packet itself");
        cr_expect_str_eq(req->alloc->name, "a");
        allocd__request__free_unpacked(req, NULL);
}

Test(wire, a_nul_in_a_string_field_is_found_at_any_depth) {
        struct pkt a = alloc_named("a\0b", 3), p = request(3, &a);
        struct pkt hello = {.n = 0}, att = {.n = 0}, free_ = {.n = 0}, reply = {.n = 0};

        expect_bad(&a, &allocd__alloc__descriptor, "Alloc.name", WIRE_TEXT_NUL); /* top level */
        expect_bad(&p, &allocd__request__descriptor, "Alloc.name", WIRE_TEXT_NUL);

        put_uint(&hello, 1, 1);
        put_bytes(&hello, 2, "me\0", 3);
        p = request(2, &hello);
        expect_bad(&p, &allocd__request__descriptor, "Hello.client_name", WIRE_TEXT_NUL);

        put_bytes(&att, 1, "\0", 1);
        p = request(5, &att);
        expect_bad(&p, &allocd__request__descriptor, "Attach.name", WIRE_TEXT_NUL);

        /* Request.free.renew.pool: three deep. */
        a = (struct pkt){.n = 0};
        put_bytes(&a, 1, "ho\0st", 5);
        put_uint(&free_, 1, 5);
        put_bytes(&free_, 3, a.b, a.n);
        p = request(4, &free_);
        expect_bad(&p, &allocd__request__descriptor, "Free.renew.pool", WIRE_TEXT_NUL);

        /* A top-level string, and a repeated one: Reply.message, then StatusReply.pools.flags' second. */
        put_bytes(&reply, 3, "x\0", 2);
        expect_bad(&reply, &allocd__reply__descriptor, "Reply.message", WIRE_TEXT_NUL);
        struct pkt pool = {.n = 0}, status = {.n = 0};
        put_bytes(&pool, 1, "host", 4);
        put_bytes(&pool, 13, "portable", 8);
        put_bytes(&pool, 13, "dev\0icemap", 10);
        put_bytes(&status, 1, pool.b, pool.n);
        reply = (struct pkt){.n = 0};
        put_uint(&reply, 1, 1);
        put_bytes(&reply, 6, status.b, status.n);
        expect_bad(&reply, &allocd__reply__descriptor, "StatusReply.pools.flags", WIRE_TEXT_NUL);
}

Test(wire, a_string_sent_twice_is_checked_each_time) {
        struct pkt a = alloc_named("a\0b", 3);

        put_bytes(&a, 12, "fine", 4); /* protobuf-c keeps the last: the first would pass unseen */
        expect_bad(&a, &allocd__alloc__descriptor, "Alloc.name", WIRE_TEXT_NUL);
}

Test(wire, a_string_that_is_not_utf8_is_found_and_utf8_passes) {
        static const char *const bad[] = {"\xff", "a\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "cut\xe2\x82"};
        struct wire_bad_text w;

        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                struct pkt a = alloc_named(bad[i], strlen(bad[i])), p = request(3, &a);
                expect_bad(&p, &allocd__request__descriptor, "Alloc.name", WIRE_TEXT_NOT_UTF8);
        }
        const char *ok = "naïve € ✓ 名前 \x1b (controls are the field's own rule)";
        struct pkt a = alloc_named(ok, strlen(ok)), p = request(3, &a);
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, p.b, p.n, &w), 0);
}

Test(wire, bytes_fields_and_unknown_fields_may_hold_anything) {
        struct pkt hello = {.n = 0}, p;
        struct wire_bad_text w;

        put_uint(&hello, 1, 1);
        put_uint(&hello, 6, 3);
        put_bytes(&hello, 7, "\0\xff\0\0", 4); /* reclaim_secret: bytes */
        put_bytes(&hello, 99, "\0\xff", 2);    /* unknown to this allocd */
        p = request(2, &hello);
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, p.b, p.n, &w), 0);

        /* What protobuf-c packs from real requests passes. */
        uint8_t buf[256];
        size_t len = pack_alloc(buf, sizeof(buf), 40);
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, buf, len, &w), 0);
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, buf, 0, &w), 0, "the empty Request");
}

Test(wire, a_truncated_packet_is_not_a_message) {
        struct pkt a = alloc_named("abcdef", 6), p = request(3, &a);
        struct wire_bad_text w;

        /* Every cut: the walk reads nothing past it (the sanitizer build checks), and cut mid-field it refuses. */
        for (size_t n = 0; n < p.n; n++) {
                uint8_t *copy = malloc(n ? n : 1);
                memcpy(copy, p.b, n);
                int r = wire_check_text(&allocd__request__descriptor, copy, n, &w);
                cr_expect(r == 0 || r == -EBADMSG, "cut at %zu: %d", n, r);
                if (n > 2) /* past Request.id: inside the Alloc, whose length says more than is there */
                        cr_expect_eq(r, -EBADMSG, "cut at %zu", n);
                free(copy);
        }
}

Test(wire, overlong_lengths_and_varints_and_groups_are_not_a_message) {
        struct wire_bad_text w;
        struct pkt p = {.n = 0};

        put_varint(&p, 3 << 3 | 2); /* Request.alloc, 2^63 bytes long */
        put_varint(&p, UINT64_C(1) << 63);
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, p.b, p.n, &w), -EBADMSG);

        p = (struct pkt){.n = 0};
        put_varint(&p, 3 << 3 | 2); /* one byte longer than what follows */
        put_varint(&p, 3);
        p.b[p.n++] = 0x10, p.b[p.n++] = 1;
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, p.b, p.n, &w), -EBADMSG);

        p = (struct pkt){.n = 0};
        put_varint(&p, 1 << 3 | 0); /* Request.id, a varint of 11 bytes */
        for (int i = 0; i < 10; i++)
                p.b[p.n++] = 0x80;
        p.b[p.n++] = 1;
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, p.b, p.n, &w), -EBADMSG);

        for (unsigned wt = 3; wt <= 7; wt++) {
                if (wt == PROTOBUF_C_WIRE_TYPE_32BIT)
                        continue;
                p = (struct pkt){.n = 0};
                put_varint(&p, 1 << 3 | wt);
                p.b[p.n++] = 0;
                cr_expect_eq(wire_check_text(&allocd__request__descriptor, p.b, p.n, &w), -EBADMSG, "wire type %u", wt);
        }

        /* fixed64 and fixed32 that run past the end */
        p = (struct pkt){.n = 0};
        put_varint(&p, 10 << 3 | 1); /* Request.seal as a fixed64: skipped by its wire type */
        p.b[p.n++] = 0;
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, p.b, p.n, &w), -EBADMSG);
        p.b[0] = 10 << 3 | 5;
        cr_expect_eq(wire_check_text(&allocd__request__descriptor, p.b, p.n, &w), -EBADMSG);
}

/* text_cut: a copy cut to fit ends between characters, whatever their length, and an uncut one is whole. */
Test(wire, text_cut_ends_between_characters) {
        const char *chars[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
        char s[64];

        for (size_t c = 0; c < 4; c++) {
                size_t len = strlen(chars[c]);
                s[0] = '\0';
                for (int i = 0; i < 10; i++)
                        strcat(s, chars[c]);
                for (size_t max = 0; max <= strlen(s) + 2; max++) {
                        size_t want = max >= strlen(s) ? strlen(s) : max / len * len;
                        cr_assert_eq(text_cut(s, max), want, "%zu-byte characters, max %zu", len, max);
                }
        }
        /* Not UTF-8 (a run of continuation bytes): cut where asked. */
        cr_assert_eq(text_cut("\x80\x80\x80\x80\x80\x80", 5), 5);
        cr_assert_eq(text_cut("ab\x80\x80\x80\x80", 4), 4);
}
