/* SPDX-License-Identifier: MIT */
/*
 * String fields whose bytes protobuf-c would cut or pass on as they are: a NUL byte (protobuf-c
 * makes "a\0b" the C string "a") or bytes that are not UTF-8.  liballoc-client cannot send
 * either, so these talk raw protocol.  Each refusal is INVALID naming the field, changes nothing
 * (no region, no name, no reference, no client name), and leaves the connection usable.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "allocd.pb-c.h"
#include "harness.h"
#include "text.h"
#include "wire.h"

static struct daemon d;
static struct alloc_client *c;

static void setup(void) {
        daemon_start(&d, "[pool h]\nkind = host\nsize = 1M\n");
        c = daemon_connect(&d);
}

static void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(strings, .init = setup, .fini = teardown, .timeout = 60);

/* A varint at *p, below end; false if it runs past end. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
        *v = 0;
        for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
                uint8_t b = *(*p)++;
                *v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80))
                        return true;
        }
        return false;
}

/*
 * Makes each '~' of the string fields in the packed message [p, end) a NUL byte and each '^' a
 * 0xff, walking the fields by desc so that an id or a length that happens to hold 0x7e or 0x5e
 * is left alone.
 */
static void mark_strings(uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *desc) {
        while (p < end) {
                const uint8_t *q = p;
                uint64_t key, v;

                cr_assert(read_varint(&q, end, &key));
                switch (key & 7) {
                case 0:
                        cr_assert(read_varint(&q, end, &v));
                        break;
                case 1:
                        q += 8;
                        break;
                case 5:
                        q += 4;
                        break;
                case 2: {
                        cr_assert(read_varint(&q, end, &v));
                        cr_assert_leq(v, (uint64_t)(end - q));
                        uint8_t *s = p + (q - p);
                        const ProtobufCFieldDescriptor *f =
                                protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
                        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE)
                                mark_strings(s, s + v, f->descriptor);
                        else if (f && f->type == PROTOBUF_C_TYPE_STRING)
                                for (uint64_t i = 0; i < v; i++)
                                        if (s[i] == '~' || s[i] == '^')
                                                s[i] = s[i] == '~' ? 0 : 0xff;
                        q += v;
                        break;
                }
                default:
                        cr_assert_fail("wire type %u in a packed request", (unsigned)(key & 7));
                }
                p += q - p;
        }
}

/*
 * Packs req and sends it with each '~' of its strings made a NUL byte and each '^' a 0xff: the
 * packet a client that builds its own bytes sends.  protobuf-c packs C strings, so it cannot.
 */
static void send_raw(int fd, const Allocd__Request *req) {
        uint8_t buf[4096];
        size_t n = allocd__request__get_packed_size(req);

        cr_assert_leq(n, sizeof(buf));
        allocd__request__pack(req, buf);
        mark_strings(buf, buf + n, &allocd__request__descriptor);
        cr_assert_eq(wire_send(fd, buf, n, NULL, 0, 0), 0);
}

static void send_body(int fd, uint64_t id, Allocd__Request__BodyCase body_case, void *body) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;

        req.has_id = id != 0;
        req.id = id;
        req.body_case = body_case;
        req.hello = body; /* the oneof's members share one pointer */
        send_raw(fd, &req);
}

/* The next reply; the connection must still be open. */
static Allocd__Reply *next_reply(int fd) {
        static uint8_t buf[WIRE_MAX_PACKET];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int fds[WIRE_MAX_FDS];
        size_t nfds = WIRE_MAX_FDS;

        cr_assert_eq(poll(&p, 1, 10000), 1, "allocd neither answered nor closed");
        ssize_t n = wire_recv(fd, buf, sizeof(buf), fds, &nfds, 0);
        while (nfds > 0)
                close(fds[--nfds]);
        cr_assert_gt(n, 0, "allocd closed the connection");
        Allocd__Reply *r = allocd__reply__unpack(NULL, (size_t)n, buf);
        cr_assert_not_null(r, "allocd sent a reply that does not decode");
        return r;
}

/* The next reply is err for request id; with message (unless NULL) its words. */
static void expect_reply(int fd, uint64_t id, Allocd__Error err, const char *message) {
        Allocd__Reply *r = next_reply(fd);

        cr_expect_eq(r->error, err, "error %d (%s), want %d", r->error, r->message ? r->message : "", err);
        cr_expect_eq(r->id, id);
        if (message)
                cr_expect_str_eq(r->message ? r->message : "", message);
        allocd__reply__free_unpacked(r, NULL);
}

static void send_hello(int fd, const char *name) {
        Allocd__Hello h = ALLOCD__HELLO__INIT;

        h.has_version = true;
        h.version = WIRE_VERSION;
        h.client_name = (char *)name;
        send_body(fd, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
}

static int hello(void) {
        int fd = daemon_raw_connect(&d);

        send_hello(fd, NULL);
        expect_reply(fd, 1, ALLOCD__ERROR__OK, NULL);
        return fd;
}

static void send_alloc(int fd, uint64_t id, const char *pool, const char *name) {
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;

        a.pool = (char *)pool;
        a.has_size = true;
        a.size = 4096;
        a.name = (char *)name;
        send_body(fd, id, ALLOCD__REQUEST__BODY_ALLOC, &a);
}

/* Regions this raw connection holds a reference to. */
static size_t held(int fd) {
        Allocd__Held h = ALLOCD__HELD__INIT;

        send_body(fd, 99, ALLOCD__REQUEST__BODY_HELD, &h);
        Allocd__Reply *r = next_reply(fd);
        cr_assert_eq(r->error, ALLOCD__ERROR__OK, "%s", r->message ? r->message : "");
        size_t n = r->body_case == ALLOCD__REPLY__BODY_HELD ? r->held->n_regions : 0;
        allocd__reply__free_unpacked(r, NULL);
        return n;
}

Test(strings, an_alloc_named_with_a_nul_is_invalid_and_publishes_nothing) {
        struct alloc_region r;
        int fd = hello();

        send_alloc(fd, 5, "h", "a~b");
        expect_reply(fd, 5, ALLOCD__ERROR__INVALID, "Alloc.name: a string field holds a NUL byte");
        cr_expect_eq(pool_used(c, "h"), 0, "the refused Alloc took memory");
        cr_expect_eq(alloc_region_attach(c, "a", NULL, &r), -ENOENT, "the name was published cut at its NUL");
        cr_expect_eq(held(fd), 0);

        send_alloc(fd, 6, "h", "a"); /* the connection still serves */
        expect_reply(fd, 6, ALLOCD__ERROR__OK, NULL);
        cr_expect_eq(pool_used(c, "h"), 4096);
        close(fd);
}

Test(strings, an_attach_named_with_a_nul_is_invalid_and_attaches_nothing) {
        struct alloc_opts o = {.name = "a"};
        struct alloc_region r;
        Allocd__Attach at = ALLOCD__ATTACH__INIT;
        int fd = hello();

        cr_assert_eq(alloc_region_new(c, "h", 4096, &o, &r), 0, "%s", alloc_last_error());
        at.name = "a~b"; /* cut at its NUL, it is the name just published */
        send_body(fd, 5, ALLOCD__REQUEST__BODY_ATTACH, &at);
        expect_reply(fd, 5, ALLOCD__ERROR__INVALID, "Attach.name: a string field holds a NUL byte");
        cr_expect_eq(held(fd), 0, "the refused Attach took a reference");

        at.name = "a";
        send_body(fd, 6, ALLOCD__REQUEST__BODY_ATTACH, &at);
        expect_reply(fd, 6, ALLOCD__ERROR__OK, NULL);
        cr_expect_eq(held(fd), 1);
        close(fd);
}

/* Free.renew.pool, two messages down: the Free is refused whole, the region is not freed. */
Test(strings, a_nul_deep_in_a_request_refuses_all_of_it) {
        Allocd__Free f = ALLOCD__FREE__INIT;
        Allocd__Alloc renew = ALLOCD__ALLOC__INIT;
        int fd = hello();

        send_alloc(fd, 5, "h", NULL);
        Allocd__Reply *rep = next_reply(fd);
        cr_assert_eq(rep->error, ALLOCD__ERROR__OK);
        cr_assert_eq(rep->body_case, ALLOCD__REPLY__BODY_REGION);
        f.has_region = true;
        f.region = rep->region->id;
        allocd__reply__free_unpacked(rep, NULL);
        renew.pool = "h~x";
        renew.has_size = true;
        renew.size = 8192;
        f.renew = &renew;
        send_body(fd, 6, ALLOCD__REQUEST__BODY_FREE, &f);
        expect_reply(fd, 6, ALLOCD__ERROR__INVALID, "Free.renew.pool: a string field holds a NUL byte");
        cr_expect_eq(held(fd), 1, "the region was freed");
        cr_expect_eq(pool_used(c, "h"), 4096);
        close(fd);
}

Test(strings, a_hello_whose_name_has_a_nul_is_invalid_and_may_be_said_again) {
        struct alloc_status *s;
        int fd = daemon_raw_connect(&d);

        send_hello(fd, "me~evil");
        expect_reply(fd, 1, ALLOCD__ERROR__INVALID, "Hello.client_name: a string field holds a NUL byte");
        send_hello(fd, "plain");
        expect_reply(fd, 1, ALLOCD__ERROR__OK, NULL);
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < s->nclients; i++)
                cr_expect_str_neq(s->clients[i].name, "me", "the refused Hello named the connection");
        alloc_status_free(s);
        close(fd);
}

Test(strings, a_string_that_is_not_utf8_is_invalid) {
        Allocd__Dump dump = ALLOCD__DUMP__INIT;
        int fd = hello();

        send_alloc(fd, 5, "h^", NULL);
        expect_reply(fd, 5, ALLOCD__ERROR__INVALID, "Alloc.pool: a string field is not UTF-8");
        dump.pool = "^";
        send_body(fd, 6, ALLOCD__REQUEST__BODY_DUMP, &dump);
        expect_reply(fd, 6, ALLOCD__ERROR__INVALID, "Dump.pool: a string field is not UTF-8");
        cr_expect_eq(pool_used(c, "h"), 0);
        cr_expect_eq(held(fd), 0);
        close(fd);
}

/*
 * A client name too long for liballoc-client's copy, of characters of several bytes: the copy
 * must not end mid-character, or allocd says "not UTF-8" of a name that was; it says how long one may be.
 */
Test(strings, a_long_client_name_is_cut_between_characters) {
        char name[301] = "";
        struct alloc_client *k = NULL;

        for (int i = 0; i < 75; i++)
                strcat(name, "\xf0\x9f\x98\x80"); /* U+1F600, 4 bytes: 300 in all, cut at 255 = 63 x 4 + 3 */
        cr_assert_eq(alloc_connect(&k, d.sock, name), -EINVAL, "a 300-byte client name was taken");
        cr_assert(strstr(alloc_last_error(), "1-63 bytes"), "%s", alloc_last_error());
        cr_assert_not(strstr(alloc_last_error(), "not UTF-8"), "%s", alloc_last_error());
}

/* Whether the whole of s is UTF-8. */
static bool utf8(const char *s) {
        uint32_t cp;

        for (size_t i = 0, n = strlen(s); i < n;) {
                int k = text_next(s + i, n - i, &cp);
                if (k < 0)
                        return false;
                i += (size_t)k;
        }
        return true;
}

/* The next reply is NO_POOL, and its message, which quotes the pool's name cut to fit, is UTF-8. */
static void expect_no_pool_in_utf8(int fd, uint64_t id) {
        Allocd__Reply *r = next_reply(fd);

        cr_expect_eq(r->error, ALLOCD__ERROR__NO_POOL, "error %d (%s)", r->error, r->message ? r->message : "");
        cr_expect_eq(r->id, id);
        cr_expect(r->message && utf8(r->message), "the reply's message is not UTF-8: %s", r->message);
        allocd__reply__free_unpacked(r, NULL);
}

/* A reply quoting a long name the request gave cuts it between characters: its message stays UTF-8. */
Test(strings, a_reply_quoting_a_long_pool_name_cuts_it_between_characters) {
        Allocd__Dump dump = ALLOCD__DUMP__INIT;
        Allocd__Attach at = ALLOCD__ATTACH__INIT;
        char pool[1024] = "a";
        int fd = hello();

        for (int i = 0; i < 200; i++)
                strcat(pool, "\xf0\x9f\x98\x80"); /* one byte, then 4-byte characters: a cut at 64 or 255 splits one */
        dump.pool = pool;
        send_body(fd, 2, ALLOCD__REQUEST__BODY_DUMP, &dump);
        expect_no_pool_in_utf8(fd, 2);
        send_alloc(fd, 3, pool, NULL);
        expect_no_pool_in_utf8(fd, 3);
        at.name = "x";
        at.pool = pool;
        send_body(fd, 4, ALLOCD__REQUEST__BODY_ATTACH, &at);
        expect_no_pool_in_utf8(fd, 4);
        close(fd);
}

/* The next reply is NO_POOL quoting the pool's name with its control characters escaped. */
static void expect_no_pool_escaped(int fd, uint64_t id, const char *shown) {
        Allocd__Reply *r = next_reply(fd);

        cr_expect_eq(r->error, ALLOCD__ERROR__NO_POOL, "error %d (%s)", r->error, r->message ? r->message : "");
        cr_expect_eq(r->id, id);
        cr_expect(r->message && strstr(r->message, shown), "%s", r->message);
        cr_expect(r->message && !strchr(r->message, '\x1b'), "the reply's message holds an escape: %s", r->message);
        allocd__reply__free_unpacked(r, NULL);
}

/*
 * A pool name with control characters (a terminal's escape sequences) is quoted back escaped, as
 * allocctl shows names: a message a program prints as it is cannot drive the terminal.
 */
Test(strings, a_reply_quoting_a_pool_name_escapes_its_control_characters) {
        Allocd__Dump dump = ALLOCD__DUMP__INIT;
        Allocd__Attach at = ALLOCD__ATTACH__INIT;
        char pool[] = "a\x1b]0;owned\x07\x1b[2Jb", shown[] = "'a\\x1b]0;owned\\x07\\x1b[2Jb'";
        int fd = hello();

        dump.pool = pool;
        send_body(fd, 2, ALLOCD__REQUEST__BODY_DUMP, &dump);
        expect_no_pool_escaped(fd, 2, shown);
        send_alloc(fd, 3, pool, NULL);
        expect_no_pool_escaped(fd, 3, shown);
        at.name = "x";
        at.pool = pool;
        send_body(fd, 4, ALLOCD__REQUEST__BODY_ATTACH, &at);
        expect_no_pool_escaped(fd, 4, shown);
        close(fd);
}

/* The program's name, the client name when none is given, is made one allocd takes: cut to 63 bytes, UTF-8. */
Test(strings, the_default_client_name_is_one_allocd_takes) {
        char *was = program_invocation_short_name, longer[80], *names[] = {longer, "a\xff\xfe\x1b[31mb", ""};
        const char *want[] = {NULL, "a???[31mb", NULL};
        struct alloc_client *k = NULL;

        memset(longer, 'p', 79);
        longer[79] = '\0';
        for (size_t i = 0; i < 3; i++) {
                program_invocation_short_name = names[i];
                int r = alloc_connect(&k, d.sock, NULL);
                program_invocation_short_name = was;
                cr_assert_eq(r, 0, "a program named '%s' cannot connect: %s", names[i], alloc_last_error());
                struct alloc_status *s;
                bool found = false;
                cr_assert_eq(alloc_status(k, &s), 0, "%s", alloc_last_error());
                for (size_t j = 0; j < s->nclients; j++)
                        found |= want[i] ? !strcmp(s->clients[j].name, want[i])
                                         : i == 0 && strlen(s->clients[j].name) == 63 && s->clients[j].name[0] == 'p';
                cr_expect(found || i == 2, "program %zu's name not shown as wanted", i);
                alloc_status_free(s);
                alloc_disconnect(k);
        }
        cr_assert_eq(alloc_connect(&k, d.sock, ""), -EINVAL, "an empty name given was taken");
}
