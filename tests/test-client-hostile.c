/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client against an allocd that answers wrongly (a bug, a version skew, a hostile
 * process at $ALLOCD_SOCKET): a fake allocd (fake-allocd.c) answers each request with a canned
 * Reply, the fd it is given beside it.  Each case was found by fuzz/fuzz-reply.c: the call
 * fails with -EPROTO and words for it, no fd is left behind, and no pointer handed out faults.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc/client.h"
#include "allocd.pb-c.h"
#include "fake-allocd.h"
#include "wire.h"
#include "fds.h"

#define CANNED_MAX 4

/*
 * One answer: reply (its id set to the request's; NULL: an empty packet, which allocd never sends),
 * with a memfd of fd_size bytes beside it if fd_size >= 0, sealed against resizing as allocd's are
 * unless unsealed.
 */
struct canned {
        Allocd__Reply *reply;
        long fd_size;
        bool unsealed;
};

struct fake {
        struct fake_allocd server;
        struct canned answers[CANNED_MAX];
        size_t n, next;
        size_t given; /* regions the client gave back (Free, Detach, FreeBatch) */
};

/* Each request gets the next canned answer, then OK to everything (the client gives back what it could not take). */
static int answer_canned(const Allocd__Request *req, Allocd__Reply *reply, int *fd, void *arg) {
        struct fake *f = arg;
        struct canned *a = f->next < f->n ? &f->answers[f->next++] : NULL;
        uint64_t id = req->id;

        if (req->body_case == ALLOCD__REQUEST__BODY_FREE_BATCH)
                f->given += req->free_batch->n_regions;
        f->given += req->body_case == ALLOCD__REQUEST__BODY_FREE || req->body_case == ALLOCD__REQUEST__BODY_DETACH;

        if (!a)
                return 0;
        if (a->fd_size >= 0) {
                *fd = memfd_create("fake-allocd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
                cr_assert_eq(ftruncate(*fd, a->fd_size), 0);
                if (!a->unsealed)
                        cr_assert_eq(fcntl(*fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        }
        if (!a->reply)
                return FAKE_EMPTY;
        *reply = *a->reply;
        reply->has_id = true;
        reply->id = id;
        return 0;
}

static void answer(struct fake *f, Allocd__Reply *r, long fd_size) {
        f->answers[f->n++] = (struct canned){r, fd_size, false};
}

static Allocd__HelloReply hello_body = ALLOCD__HELLO_REPLY__INIT;
static Allocd__Reply hello = ALLOCD__REPLY__INIT;

static void add_hello(struct fake *f) {
        hello_body.has_version = true;
        hello_body.version = WIRE_VERSION;
        hello.body_case = ALLOCD__REPLY__BODY_HELLO;
        hello.hello = &hello_body;
        answer(f, &hello, -1);
}

/* A Region reply of 4 KiB at offset 0 of pool "host", its fd fields set for a pool of pool_size bytes. */
static void region_reply(Allocd__Reply *r, Allocd__Region *g, uint64_t id, uint64_t pool_size) {
        allocd__reply__init(r);
        allocd__region__init(g);
        r->body_case = ALLOCD__REPLY__BODY_REGION;
        r->region = g;
        g->has_id = g->has_size = g->has_pool_fd = g->pool_fd = g->has_pool_size = true;
        g->id = id;
        g->pool = "host";
        g->size = 4096;
        g->pool_size = pool_size;
}

/* Sockets and memfds open in this process: what a refused reply could leak. */
static int count_fds(void) {
        return fds_open((const char *const[]){"socket:", "/memfd:", NULL});
}

static void setup(void) {
        /* A connection allocd broke stays broken: the fake serves one. */
        setenv("ALLOCD_RECONNECT", "0", 1);
}

TestSuite(hostile, .init = setup, .timeout = 30);

/* Region r of an isolation = region pool, size bytes, with its own fd. */
static void isolated(Allocd__Reply *r, Allocd__Region *g, uint64_t size) {
        region_reply(r, g, 1ull << 32, size);
        g->size = size;
        g->pool_fd = false;
        g->has_region_fd = g->region_fd = true;
}

/* f started, with its canned answers, and a client connected to it. */
static struct alloc_client *connect_fake(struct fake *f) {
        struct alloc_client *c;

        fake_allocd_start(&f->server, answer_canned, f);
        cr_assert_eq(alloc_connect(&c, f->server.path, NULL), 0, "%s", alloc_last_error());
        return c;
}

/* Connects to f and has alloc_region_new refused with -EPROTO, alloc_last_error() saying words. */
static void region_refused(struct fake *f, const char *words) {
        struct alloc_client *c;
        struct alloc_region out;

        c = connect_fake(f);
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &out), -EPROTO, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), words), "%s", alloc_last_error());
        alloc_disconnect(c);
        fake_allocd_stop(&f->server);
}

/* A pool fd shorter than the pool it stands for: mapped whole, its end would fault (SIGBUS). */
Test(hostile, pool_fd_shorter_than_the_pool) {
        struct fake f = {0};
        Allocd__Reply r;
        Allocd__Region g;

        add_hello(&f);
        region_reply(&r, &g, 1ull << 32, 1 << 20);
        answer(&f, &r, 4096);
        region_refused(&f, "an fd of 4096 bytes for 1048576 bytes");
}

/* An fd of the right size that its sender could shrink, of a pool or of a region of its own: refused and closed. */
static void unsealed_refused(bool own) {
        struct fake f = {0};
        Allocd__Reply r;
        Allocd__Region g;
        int before = count_fds();

        add_hello(&f);
        if (own)
                isolated(&r, &g, 4096);
        else
                region_reply(&r, &g, 1ull << 32, 1 << 20);
        answer(&f, &r, own ? 4096 : 1 << 20);
        f.answers[f.n - 1].unsealed = true;
        region_refused(&f, "not sealed against shrinking");
        cr_assert_eq(count_fds(), before);
}

/*
 * A pool fd of the right size that its sender could shrink: the client maps it whole, and a page
 * past the new end would then fault (SIGBUS) in the client, whenever the sender liked.
 */
Test(hostile, pool_fd_not_sealed_against_shrinking) {
        unsealed_refused(false);
}

/* The same for an isolation = region region's own fd. */
Test(hostile, region_fd_not_sealed_against_shrinking) {
        unsealed_refused(true);
}

/* A pool kind this library does not know: it cannot be mapped, nor handed out as an enum alloc_kind. */
Test(hostile, region_of_an_unknown_kind) {
        struct fake f = {0};
        Allocd__Reply r;
        Allocd__Region g;

        add_hello(&f);
        region_reply(&r, &g, 1ull << 32, 1 << 20);
        g.kind = (Allocd__PoolKind)7;
        g.has_kind = true;
        answer(&f, &r, 1 << 20);
        region_refused(&f, "a region of pool kind 7");
}

/* An isolation = region region's own fd, likewise. */
Test(hostile, region_fd_shorter_than_the_region) {
        struct fake f = {0};
        Allocd__Reply r;
        Allocd__Region g;

        add_hello(&f);
        isolated(&r, &g, 4096);
        answer(&f, &r, 0);
        region_refused(&f, "an fd of 0 bytes for 4096 bytes");
}

/* A second reference to an isolation = region region that says it is larger than its mapping. */
Test(hostile, region_grown_past_its_mapping) {
        struct fake f = {0};
        Allocd__Reply r1, r2;
        Allocd__Region g1, g2;
        struct alloc_client *c;
        struct alloc_region out;
        struct alloc_attach_opts now = {0};

        add_hello(&f);
        isolated(&r1, &g1, 4096);
        answer(&f, &r1, 4096);
        isolated(&r2, &g2, 1 << 20);
        answer(&f, &r2, 1 << 20);
        c = connect_fake(&f);
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &out), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_attach(c, "grown", &now, &out), -EPROTO, "%s", alloc_last_error());
        alloc_disconnect(c);
        fake_allocd_stop(&f.server);
}

/* An empty packet with an fd beside it: the connection ends, and the fd is closed. */
Test(hostile, empty_packet_with_an_fd) {
        struct fake f = {0};
        struct alloc_client *c;
        struct alloc_region out;
        int before = count_fds();

        add_hello(&f);
        answer(&f, NULL, 4096);
        c = connect_fake(&f);
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &out), -ECONNRESET, "%s", alloc_last_error());
        alloc_disconnect(c);
        fake_allocd_stop(&f.server);
        cr_assert_eq(count_fds(), before);
}

/* A refusal with an empty message still says what was refused. */
Test(hostile, refusal_without_words) {
        struct fake f = {0};
        Allocd__Reply r = ALLOCD__REPLY__INIT;
        struct alloc_client *c;
        uint32_t n;

        add_hello(&f);
        r.has_error = true;
        r.error = ALLOCD__ERROR__DENIED;
        r.message = "";
        answer(&f, &r, -1);
        c = connect_fake(&f);
        cr_assert_eq(alloc_drop_client(c, 0, 7, &n), -EACCES, "%s", alloc_last_error());
        cr_assert_str_eq(alloc_last_error(), "DENIED");
        alloc_disconnect(c);
        fake_allocd_stop(&f.server);
}

/*
 * Status pages that never end: each lists one client past the last and says more are left out.  allocd lists
 * each connection once, so its pages end; these would have alloc_status ask for ever, its list growing, each
 * page answered well within the timeout.
 */
static int answer_status_for_ever(const Allocd__Request *req, Allocd__Reply *reply, int *fd, void *arg) {
        static Allocd__StatusReply s = ALLOCD__STATUS_REPLY__INIT;
        static Allocd__ClientStatus k = ALLOCD__CLIENT_STATUS__INIT, *ks[1] = {&k};

        (void)fd;
        (void)arg;
        if (fake_hello(req, reply))
                return 0;
        if (req->body_case == ALLOCD__REQUEST__BODY_STATUS) {
                k.has_serial = true;
                k.serial = req->status->clients_after + 1;
                s.n_clients = 1;
                s.clients = ks;
                s.has_clients_omitted = true;
                s.clients_omitted = 1;
                reply->body_case = ALLOCD__REPLY__BODY_STATUS;
                reply->status = &s;
                usleep(1000);
        }
        return 0;
}

Test(hostile, status_pages_that_never_end) {
        struct fake_allocd f;
        struct alloc_client *c;
        struct alloc_status *s;

        fake_allocd_start(&f, answer_status_for_ever, NULL);
        cr_assert_eq(alloc_connect(&c, f.path, NULL), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        cr_assert_eq(alloc_status(c, &s), -ETIME, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "pages"), "%s", alloc_last_error());
        alloc_disconnect(c);
        fake_allocd_stop(&f);
}

/* Dump pages that never end: each lists one region past the last and says there are more. */
static int answer_dump_for_ever(const Allocd__Request *req, Allocd__Reply *reply, int *fd, void *arg) {
        static Allocd__DumpReply d = ALLOCD__DUMP_REPLY__INIT;
        static Allocd__Region r = ALLOCD__REGION__INIT, *rs[1] = {&r};

        (void)fd;
        (void)arg;
        if (fake_hello(req, reply))
                return 0;
        if (req->body_case == ALLOCD__REQUEST__BODY_DUMP) {
                r.has_id = r.has_size = true;
                r.id = req->dump->after + 1;
                r.size = 4096;
                d.n_regions = 1;
                d.regions = rs;
                d.has_more = d.has_next = true;
                d.more = true;
                d.next = r.id;
                reply->body_case = ALLOCD__REPLY__BODY_DUMP;
                reply->dump = &d;
                usleep(1000);
        }
        return 0;
}

Test(hostile, dump_pages_that_never_end) {
        struct fake_allocd f;
        struct alloc_client *c;
        struct alloc_dump *d;

        fake_allocd_start(&f, answer_dump_for_ever, NULL);
        cr_assert_eq(alloc_connect(&c, f.path, NULL), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        cr_assert_eq(alloc_dump(c, NULL, &d), -ETIME, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "Dump went on past the timeout"), "%s", alloc_last_error());
        alloc_disconnect(c);
        fake_allocd_stop(&f);
}

/*
 * A batch reply with more regions than asked: the call fails, and every region it granted goes back at
 * once (they were held until the disconnect); the pool fd that came with it is closed.  The pool stays
 * mapped, as any pool the connection was sent: allocd sends its fd once.
 */
Test(hostile, batch_reply_with_more_regions_than_asked) {
        struct fake f = {0};
        Allocd__Reply r;
        Allocd__Region g[3], *gs[3] = {&g[0], &g[1], &g[2]};
        Allocd__RegionBatch b = ALLOCD__REGION_BATCH__INIT;
        struct alloc_client *c;
        struct alloc_region out[1];
        uint64_t size = 4096;
        int before = count_fds();

        add_hello(&f);
        region_reply(&r, &g[0], 1ull << 32, 1 << 20);
        for (int i = 1; i < 3; i++) {
                allocd__region__init(&g[i]);
                g[i].has_id = g[i].has_size = g[i].has_offset = true;
                g[i].id = (1ull << 32) + (uint64_t)i;
                g[i].offset = 4096 * (uint64_t)i;
                g[i].size = 4096;
        }
        b.n_regions = 3;
        b.regions = gs;
        r.body_case = ALLOCD__REPLY__BODY_BATCH;
        r.batch = &b;
        answer(&f, &r, 1 << 20);
        c = connect_fake(&f);
        cr_assert_eq(alloc_region_new_batch(c, "host", &size, 1, NULL, out), -EPROTO, "%s", alloc_last_error());
        cr_assert_eq(f.given, 3, "%zu of the 3 regions given back", f.given);
        cr_assert(strstr(alloc_last_error(), "a batch of 1 regions with something else (3 regions)"), "%s",
                  alloc_last_error());
        /* The fake's listener and the two ends of the connection: no memfd. */
        cr_assert_eq(count_fds(), before + 3, "%d fds", count_fds() - before);
        alloc_disconnect(c);
        fake_allocd_stop(&f.server);
        cr_assert_eq(count_fds(), before);
}
