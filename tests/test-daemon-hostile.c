/* SPDX-License-Identifier: MIT */
/*
 * Hostile input on a raw socket.  Each case checks the answer (an error reply,
 * a closed connection, or both), then that allocd still serves and that its
 * state is what it was.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "allocd.pb-c.h"
#include "harness.h"
#include "wire.h"

static struct daemon d;
static struct alloc_client *c;
static struct alloc_region held;

static void setup(void) {
        daemon_start(&d, "[pool h]\nkind = host\nsize = 1M\n[pool f]\nkind = fpga\nranges = 0x0+1M\n");
        c = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(c, "h", 8192, NULL, &held), 0);
}

/* The daemon still answers, and holds exactly what it held before the attack. */
static void teardown(void) {
        struct alloc_region r;
        cr_expect_eq(pool_used(c, "h"), 8192);
        cr_expect_eq(pool_used(c, "f"), 0);
        cr_expect_eq(alloc_region_new(c, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_expect_eq(alloc_region_free(c, r.id), 0);
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(hostile, .init = setup, .fini = teardown, .timeout = 60);

static void send_request(int fd, Allocd__Request *req, const int *fds, size_t nfds) {
        uint8_t buf[WIRE_MAX_PACKET];
        size_t n = allocd__request__pack(req, buf);
        cr_assert_eq(wire_send(fd, buf, n, fds, nfds, 0), 0);
}

/* A request of id with body (of the oneof's case body_case). */
static void send_body(int fd, uint64_t id, Allocd__Request__BodyCase body_case, void *body) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;

        req.has_id = true;
        req.id = id;
        req.body_case = body_case;
        req.hello = body; /* the oneof's members share one pointer */
        send_request(fd, &req, NULL, 0);
}

/* The next reply, or NULL when allocd closed the connection. */
static Allocd__Reply *next_reply(int fd) {
        static uint8_t buf[WIRE_MAX_PACKET];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int fds[WIRE_MAX_FDS];
        size_t nfds = WIRE_MAX_FDS;

        cr_assert_eq(poll(&p, 1, 10000), 1, "allocd neither answered nor closed");
        ssize_t n = wire_recv(fd, buf, sizeof(buf), fds, &nfds, 0);
        while (nfds > 0)
                close(fds[--nfds]); /* a pool's, with a memory region */
        if (n <= 0)
                return NULL;
        Allocd__Reply *r = allocd__reply__unpack(NULL, (size_t)n, buf);
        cr_assert_not_null(r, "allocd sent a reply that does not decode");
        return r;
}

static void expect_error(int fd, Allocd__Error err) {
        Allocd__Reply *r = next_reply(fd);
        cr_assert_not_null(r, "closed without an error reply");
        cr_expect_eq(r->error, err, "error %d (%s), want %d", r->error, r->message, err);
        if (err != ALLOCD__ERROR__OK)
                cr_expect(r->message && *r->message, "the error has no message");
        allocd__reply__free_unpacked(r, NULL);
}

static void expect_closed(int fd) {
        Allocd__Reply *r = next_reply(fd);
        cr_expect_null(r, "the connection stayed open");
        if (r)
                allocd__reply__free_unpacked(r, NULL);
        close(fd);
}

static void send_hello(int fd, uint32_t version) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello h = ALLOCD__HELLO__INIT;

        h.has_version = true;
        h.version = version;
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &h;
        send_request(fd, &req, NULL, 0);
}

static int hello(void) {
        int fd = daemon_raw_connect(&d);

        send_hello(fd, WIRE_VERSION);
        expect_error(fd, ALLOCD__ERROR__OK);
        return fd;
}

static void send_status(int fd, const int *fds, size_t nfds) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Status st = ALLOCD__STATUS__INIT;
        req.has_id = true;
        req.id = 7;
        req.body_case = ALLOCD__REQUEST__BODY_STATUS;
        req.status = &st;
        send_request(fd, &req, fds, nfds);
}

Test(hostile, garbage_before_and_after_hello) {
        static const char junk[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01 not protobuf";
        int fd = daemon_raw_connect(&d);
        cr_assert_eq(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        expect_closed(fd);

        fd = hello();
        cr_assert_eq(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        expect_closed(fd);
}

Test(hostile, truncated_message) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        uint8_t buf[256];
        int fd = hello();

        a.pool = "h";
        a.has_size = true;
        a.size = 4096;
        a.name = "a name long enough to cut in the middle";
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
        req.alloc = &a;
        size_t n = allocd__request__pack(&req, buf);
        cr_assert_eq(send(fd, buf, n - 10, 0), (ssize_t)(n - 10));
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        expect_closed(fd);
}

Test(hostile, unknown_request_keeps_the_connection) {
        static const uint8_t unknown[] = {0x08, 0x05, 0xd8, 0x06, 0x01}; /* id 5, field 107 = 1 */
        int fd = hello();
        cr_assert_eq(send(fd, unknown, sizeof(unknown), 0), (ssize_t)sizeof(unknown));
        Allocd__Reply *r = next_reply(fd);
        cr_assert_not_null(r);
        cr_expect_eq(r->error, ALLOCD__ERROR__INVALID);
        cr_expect_eq(r->id, 5, "the id is echoed");
        allocd__reply__free_unpacked(r, NULL);
        send_status(fd, NULL, 0);
        expect_error(fd, ALLOCD__ERROR__OK);
        close(fd);
}

/*
 * A packet of 0 bytes is an empty Request (protobuf packs one so), not a hang-up, though recv
 * returns 0 for both: allocd took it for a hang-up, closed the connection and released its regions.
 */
Test(hostile, an_empty_packet_is_an_empty_request) {
        int fd = hello();
        cr_assert_eq(send(fd, "", 0, 0), 0);
        expect_error(fd, ALLOCD__ERROR__INVALID);
        send_status(fd, NULL, 0);
        expect_error(fd, ALLOCD__ERROR__OK);
        close(fd);

        fd = daemon_raw_connect(&d); /* before Hello, as anything but Hello */
        cr_assert_eq(send(fd, "", 0, 0), 0);
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        expect_closed(fd);
}

Test(hostile, packet_over_the_limit) {
        size_t n = WIRE_MAX_PACKET + 4096;
        char *big = calloc(1, n);
        int fd = hello();
        cr_assert_eq(send(fd, big, n, 0), (ssize_t)n);
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        expect_closed(fd);
        free(big);
}

Test(hostile, unexpected_fds_are_closed) {
        int fd = hello(), p[2], many[10];
        char x;

        cr_assert_eq(pipe(p), 0);
        send_status(fd, &p[1], 1);
        close(p[1]);
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        cr_assert_eq(read(p[0], &x, 1), 0, "allocd kept the write end of the pipe");
        close(p[0]);

        /* More fds than any packet may carry. */
        cr_assert_eq(pipe(p), 0);
        for (int i = 0; i < 10; i++)
                many[i] = p[1];
        uint8_t buf[64];
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Status st = ALLOCD__STATUS__INIT;
        req.body_case = ALLOCD__REQUEST__BODY_STATUS;
        req.status = &st;
        size_t n = allocd__request__pack(&req, buf);
        union {
                struct cmsghdr h;
                char b[CMSG_SPACE(sizeof(many))];
        } ctl = {0};
        struct iovec iov = {buf, n};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(many));
        memcpy(CMSG_DATA(cm), many, sizeof(many));
        cr_assert_eq(sendmsg(fd, &m, 0), (ssize_t)n);
        close(p[1]);
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        cr_assert_eq(read(p[0], &x, 1), 0, "allocd kept some of the ten fds");
        close(p[0]);

        send_status(fd, NULL, 0);
        expect_error(fd, ALLOCD__ERROR__OK);
        close(fd);
}

Test(hostile, request_before_hello_and_wrong_version) {
        int fd = daemon_raw_connect(&d);
        send_status(fd, NULL, 0);
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        expect_closed(fd);

        fd = daemon_raw_connect(&d);
        send_hello(fd, 99);
        expect_error(fd, ALLOCD__ERROR__VERSION);
        expect_closed(fd);
}

/* PROTOCOL ends the connection, a second Hello included (it was answered and left open). */
Test(hostile, a_second_hello_ends_the_connection) {
        int fd = hello();

        send_hello(fd, WIRE_VERSION);
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        expect_closed(fd);
}

Test(hostile, regions_not_held) {
        int fd = hello();
        uint64_t ids[] = {0, 1, held.id, held.id ^ (1ull << 32), UINT64_MAX};
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                Allocd__Request req = ALLOCD__REQUEST__INIT;
                Allocd__Free f = ALLOCD__FREE__INIT;
                Allocd__Detach dt = ALLOCD__DETACH__INIT;
                f.has_region = dt.has_region = true;
                f.region = dt.region = ids[i];
                req.body_case = ALLOCD__REQUEST__BODY_FREE;
                req.free = &f;
                send_request(fd, &req, NULL, 0);
                expect_error(fd, ALLOCD__ERROR__NOT_FOUND);
                req.body_case = ALLOCD__REQUEST__BODY_DETACH;
                req.detach = &dt;
                send_request(fd, &req, NULL, 0);
                expect_error(fd, ALLOCD__ERROR__NOT_FOUND);
        }
        close(fd);
}

Test(hostile, oversized_fields) {
        static char name[40000];
        memset(name, 'n', sizeof(name) - 1);
        int fd = hello();
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        a.pool = name;
        a.has_size = true;
        a.size = 4096;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
        req.alloc = &a;
        send_request(fd, &req, NULL, 0);
        expect_error(fd, ALLOCD__ERROR__NO_POOL);
        a.pool = "h";
        a.name = name;
        send_request(fd, &req, NULL, 0);
        expect_error(fd, ALLOCD__ERROR__INVALID);
        Allocd__Attach at = ALLOCD__ATTACH__INIT;
        at.name = name;
        req.body_case = ALLOCD__REQUEST__BODY_ATTACH;
        req.attach = &at;
        send_request(fd, &req, NULL, 0);
        expect_error(fd, ALLOCD__ERROR__INVALID);
        close(fd);
}

Test(hostile, unpacking_is_budgeted) {
        /* 32,000 two-byte unknown fields: protobuf-c would keep each one; the budget refuses. */
        static uint8_t spam[64000];
        for (size_t i = 0; i < sizeof(spam); i += 2) {
                spam[i] = 15 << 3; /* field 15 (not in Request), varint */
                spam[i + 1] = 0x01;
        }
        int fd = hello();
        cr_assert_eq(send(fd, spam, sizeof(spam), 0), (ssize_t)sizeof(spam));
        expect_error(fd, ALLOCD__ERROR__PROTOCOL);
        expect_closed(fd);
}

/*
 * A raw connection past Hello (its reply offers quiet frees and spares; *spares_max, if not NULL, their
 * limit, 0 if unset) and a 4 KiB region of the fpga pool f allocated with *a, request 2 (an fpga
 * pool's region comes without an fd, which next_reply does not take), whose Free is *f: the socket.
 */
static int fpga_region(Allocd__Alloc *a, Allocd__Free *f, uint32_t *spares_max) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Reply *r;
        int fd = daemon_raw_connect(&d);

        send_hello(fd, WIRE_VERSION);
        r = next_reply(fd);
        cr_assert(r && r->body_case == ALLOCD__REPLY__BODY_HELLO && r->hello->quiet && r->hello->renew,
                  "Hello does not offer quiet frees and spares");
        if (spares_max)
                *spares_max = r->hello->has_spares_max ? r->hello->spares_max : 0;
        allocd__reply__free_unpacked(r, NULL);
        a->pool = "f";
        a->has_size = true;
        a->size = 4096;
        req.has_id = true;
        req.id = 2;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
        req.alloc = a;
        send_request(fd, &req, NULL, 0);
        r = next_reply(fd);
        cr_assert(r && r->id == 2 && r->body_case == ALLOCD__REPLY__BODY_REGION, "no region");
        f->has_region = true;
        f->region = r->region->id;
        allocd__reply__free_unpacked(r, NULL);
        return fd;
}

/* Not hostile, but said on a raw socket: a quiet Free is answered only when refused, and Sync answers after it. */
Test(hostile, a_quiet_free_is_answered_only_when_refused) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        Allocd__Sync sync = ALLOCD__SYNC__INIT;
        int fd = fpga_region(&a, &f, NULL);
        Allocd__Reply *r;

        f.has_quiet = f.quiet = true;
        req.has_id = true;
        req.body_case = ALLOCD__REQUEST__BODY_FREE;
        req.free = &f;
        for (req.id = 3; req.id <= 4; req.id++) /* the second frees it again: refused */
                send_request(fd, &req, NULL, 0);
        req.body_case = ALLOCD__REQUEST__BODY_SYNC;
        req.sync = &sync;
        send_request(fd, &req, NULL, 0);
        r = next_reply(fd);
        cr_assert(r && r->id == 4, "the first reply is to request %llu, not the refused Free (4)",
                  r ? (unsigned long long)r->id : 0ull);
        cr_expect_eq(r->error, ALLOCD__ERROR__NOT_FOUND);
        allocd__reply__free_unpacked(r, NULL);
        r = next_reply(fd);
        cr_assert(r && r->id == 5 && r->error == ALLOCD__ERROR__OK, "Sync is not answered OK after the refusal");
        allocd__reply__free_unpacked(r, NULL);
        close(fd);
}

Test(hostile, a_free_asks_for_up_to_spares_max_spares) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        uint32_t spares_max;
        int fd = fpga_region(&a, &f, &spares_max);
        Allocd__Reply *r;

        cr_expect_eq(spares_max, 4);
        f.has_spares = true;
        f.spares = 4;
        f.renew = &a;
        req.has_id = true;
        req.id = 3;
        req.body_case = ALLOCD__REQUEST__BODY_FREE;
        req.free = &f;
        send_request(fd, &req, NULL, 0);
        r = next_reply(fd);
        cr_assert(r && r->id == 3 && r->error == ALLOCD__ERROR__OK && r->body_case == ALLOCD__REPLY__BODY_BATCH &&
                          r->batch->n_regions == 4 && !r->message,
                  "four spares were asked: %s", r && r->message ? r->message : "no batch");
        f.region = r->batch->regions[3]->id;
        allocd__reply__free_unpacked(r, NULL);
        /* One more than spares_max: the Free stands, with no spare, and says why. */
        f.spares = 5;
        req.id = 4;
        send_request(fd, &req, NULL, 0);
        r = next_reply(fd);
        cr_assert(r && r->id == 4 && r->error == ALLOCD__ERROR__OK && r->body_case == ALLOCD__REPLY__BODY__NOT_SET);
        cr_expect(r->message && strstr(r->message, "spares is 1 to 4, not 5"), "%s", r->message);
        allocd__reply__free_unpacked(r, NULL);
        cr_assert_eq(pool_used(c, "f"), 3 * 4096, "the Free of a spare was done");
        close(fd);
        cr_assert_eq(wait_used(c, "f", 0), 0, "the other three went with the connection");
}

/* The same batch's regions listed (old clients) and in columns (AllocBatch.columns): same pool, sizes, no overlap. */
Test(hostile, a_batch_is_answered_listed_or_in_columns) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__AllocBatch b = ALLOCD__ALLOC_BATCH__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        uint64_t sizes[] = {4096, 8192, 4096}, offsets[6], lens[6], ids[6];
        int fd = hello();

        a.pool = "h";
        b.alloc = &a;
        b.n_sizes = 3;
        b.sizes = sizes;
        req.has_id = true;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC_BATCH;
        req.alloc_batch = &b;
        for (int k = 0; k < 2; k++) {
                b.has_columns = b.columns = k == 1;
                req.id = 10 + k;
                send_request(fd, &req, NULL, 0);
                Allocd__Reply *r = next_reply(fd);
                cr_assert(r && r->error == ALLOCD__ERROR__OK && r->body_case == ALLOCD__REPLY__BODY_BATCH, "%s",
                          r && r->message ? r->message : "no batch");
                const Allocd__RegionBatch *g = r->batch;
                if (k == 0) {
                        cr_assert(g->n_regions == 3 && !g->common && !g->n_ids && !g->n_offsets && !g->n_sizes);
                        cr_expect(g->regions[0]->pool && !strcmp(g->regions[0]->pool, "h") && g->regions[0]->pool_fd);
                        for (int i = 0; i < 3; i++) {
                                cr_expect_eq(!g->regions[i]->pool, i > 0, "only the first names the pool");
                                ids[i] = g->regions[i]->id;
                                offsets[i] = g->regions[i]->offset;
                                lens[i] = g->regions[i]->size;
                        }
                } else {
                        cr_assert(!g->n_regions && g->common && g->n_ids == 3 && g->n_offsets == 3 && g->n_sizes == 3,
                                  "columns were asked for");
                        cr_expect(g->common->pool && !strcmp(g->common->pool, "h") && !g->common->has_id &&
                                  !g->common->has_offset && !g->common->has_size && g->common->sealed);
                        for (int i = 0; i < 3; i++) {
                                ids[3 + i] = g->ids[i];
                                offsets[3 + i] = g->offsets[i];
                                lens[3 + i] = g->sizes[i];
                        }
                }
                allocd__reply__free_unpacked(r, NULL);
        }
        for (int i = 0; i < 6; i++) {
                cr_expect_eq(lens[i], sizes[i % 3]);
                for (int j = 0; j < i; j++)
                        cr_expect(ids[i] != ids[j] &&
                                          (offsets[i] >= offsets[j] + lens[j] || offsets[j] >= offsets[i] + lens[i]),
                                  "regions %d and %d are one, or overlap", i, j);
        }
        cr_assert_eq(pool_used(c, "h"), 8192 + 2 * 16384);
        close(fd);
        cr_assert_eq(wait_used(c, "h", 8192), 8192, "the batches went with the connection");
}

/*
 * A Hello refused for its reclaim changes nothing, its client_name included: the client may say a
 * plain Hello next (docs/protocol.md), and that one's name, or none, is the connection's.  Found by
 * review: the name was set before the reclaim was tried, and stayed (Status showed it, the kept
 * state recorded it).
 */
Test(hostile, a_refused_reclaim_leaves_the_name_alone) {
        int fd = daemon_raw_connect(&d);
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello h = ALLOCD__HELLO__INIT;
        uint8_t secret[16] = {0};
        struct alloc_status *s;
        uint64_t serial;

        h.has_version = h.has_reclaim_serial = h.has_reclaim_secret = true;
        h.version = WIRE_VERSION;
        h.client_name = "not-reclaimed";
        h.reclaim_serial = 12345;
        h.reclaim_secret.data = secret;
        h.reclaim_secret.len = sizeof(secret);
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &h;
        send_request(fd, &req, NULL, 0);
        expect_error(fd, ALLOCD__ERROR__NOT_FOUND);
        send_hello(fd, WIRE_VERSION);
        Allocd__Reply *r = next_reply(fd);
        cr_assert(r && r->error == ALLOCD__ERROR__OK && r->body_case == ALLOCD__REPLY__BODY_HELLO);
        serial = r->hello->serial;
        allocd__reply__free_unpacked(r, NULL);
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        bool found = false;
        for (size_t i = 0; i < s->nclients; i++) {
                if (s->clients[i].serial != serial)
                        continue;
                found = true;
                cr_expect_str_empty(s->clients[i].name, "the refused Hello named the connection '%s'",
                                    s->clients[i].name);
        }
        alloc_status_free(s);
        cr_expect(found, "connection %llu is not listed", (unsigned long long)serial);
        close(fd);
}

/* Sends an Alloc of 4 KiB PERSIST in pool f that waits up to 10 s. */
static void send_persist_alloc(int fd, uint64_t id) {
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;

        a.pool = "f";
        a.has_size = a.has_flags = a.has_timeout_ms = true;
        a.size = 4096;
        a.flags = ALLOCD__FLAG__PERSIST;
        a.timeout_ms = 10000;
        send_body(fd, id, ALLOCD__REQUEST__BODY_ALLOC, &a);
}

/*
 * Two PERSIST Allocs wait; room comes, both are granted in one turn, and the first grant's reply
 * finds the client gone (it stopped reading: EPIPE), which closes the connection.  Neither grant
 * reached it, so no one knows either id: both PERSIST regions go, not only the one being sent.
 * Found by review: the second, still on the core's list of outcomes, lost its hold but kept
 * PERSIST, and stayed in the pool for the daemon's life.
 */
Test(hostile, persist_grants_that_never_reach_a_gone_client_go) {
        int fd = hello();
        struct alloc_region all;

        cr_assert_eq(alloc_region_new(c, "f", 1 << 20, NULL, &all), 0, "%s", alloc_last_error());
        send_persist_alloc(fd, 1);
        send_persist_alloc(fd, 2);
        cr_assert_eq(wait_waiters(c, "f", 2), 2);
        cr_assert_eq(shutdown(fd, SHUT_RD), 0); /* allocd's next send to it fails with EPIPE */
        cr_assert_eq(alloc_region_free_sync(c, all.id), 0, "%s", alloc_last_error());
        cr_expect_eq(wait_used(c, "f", 0), 0, "a PERSIST region granted to the gone client stayed");
        cr_expect_eq(wait_waiters(c, "f", 0), 0);
        close(fd);
}

static void send_cancel(int fd, uint64_t id, uint64_t request) {
        Allocd__Cancel m = ALLOCD__CANCEL__INIT;

        m.has_request = true;
        m.request = request;
        send_body(fd, id, ALLOCD__REQUEST__BODY_CANCEL, &m);
}

/* A Cancel of a request that is not waiting (unknown, answered, another connection's) is NOT_FOUND and changes nothing.
 */
Test(hostile, a_cancel_ends_only_a_waiting_request_of_its_own) {
        Allocd__Attach at = ALLOCD__ATTACH__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        int fd = fpga_region(&a, &f, NULL), other = hello();
        Allocd__Reply *r;

        at.name = "never";
        at.has_timeout_ms = true;
        at.timeout_ms = 60000;
        send_body(fd, 10, ALLOCD__REQUEST__BODY_ATTACH, &at);
        send_cancel(fd, 11, 99); /* unknown */
        expect_error(fd, ALLOCD__ERROR__NOT_FOUND);
        send_cancel(fd, 12, 2); /* the Alloc, answered */
        expect_error(fd, ALLOCD__ERROR__NOT_FOUND);
        send_cancel(other, 3, 10); /* another connection's */
        expect_error(other, ALLOCD__ERROR__NOT_FOUND);
        cr_assert_eq(pool_used(c, "f"), 4096, "the answered Alloc's region went");
        send_cancel(fd, 13, 10); /* still waiting: cancelled, and answered so after the Cancel's OK */
        expect_error(fd, ALLOCD__ERROR__OK);
        r = next_reply(fd);
        cr_assert(r && r->id == 10 && r->error == ALLOCD__ERROR__CANCELLED && strstr(r->message, "cancelled"),
                  "the Attach was not answered CANCELLED");
        allocd__reply__free_unpacked(r, NULL);
        send_cancel(fd, 14, 10); /* answered now */
        expect_error(fd, ALLOCD__ERROR__NOT_FOUND);
        close(other);
        close(fd);
}

/* A Status page after the first (clients_after) lists clients only: the pools came whole in the first. */
Test(hostile, a_later_status_page_lists_no_pools) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Status st = ALLOCD__STATUS__INIT;
        int fd = hello();

        req.body_case = ALLOCD__REQUEST__BODY_STATUS;
        req.status = &st;
        for (int page = 0; page < 2; page++) {
                st.has_clients_after = page > 0;
                send_request(fd, &req, NULL, 0);
                Allocd__Reply *r = next_reply(fd);
                cr_assert(r && r->body_case == ALLOCD__REPLY__BODY_STATUS);
                cr_expect_eq(r->status->n_pools, page ? 0u : 2u, "page %d lists %zu pools", page, r->status->n_pools);
                cr_expect_gt(r->status->n_clients, 0, "page %d lists no client", page);
                allocd__reply__free_unpacked(r, NULL);
        }
        close(fd);
}
