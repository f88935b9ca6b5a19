/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client against a fake allocd (fake-allocd.c) that answers batches
 * and spares as a real allocd never would: columns of different lengths, no
 * common region, more regions than asked.  The client refuses what it cannot
 * read, gives back what it was granted and did not take, and stays usable.
 * Its regions are in an fpga pool, which has no fd to map, so the fake needs
 * no memory.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "alloc/client.h"
#include "allocd.pb-c.h"
#include "fake-allocd.h"
#include "wire.h"

/* How the fake answers an AllocBatch. */
enum form { COLUMNS, LISTED, SHORT_OFFSETS, NO_COMMON, ONE_MORE, LISTED_NO_POOL };

static struct {
        enum form form;
        uint64_t next;   /* the next Alloc's id */
        uint32_t spares; /* a Free's spares, in the same form: ids 100, 101, ... */
        struct fake_allocd server;
        pthread_mutex_t lock;
        uint64_t freed[64]; /* every id a Free or FreeBatch named */
        size_t nfreed;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void region(Allocd__Region *g, uint64_t id, uint64_t size) {
        allocd__region__init(g);
        g->has_id = g->has_kind = g->has_offset = g->has_size = g->has_sealed = true;
        g->id = id;
        g->pool = "f";
        g->kind = ALLOCD__POOL_KIND__FPGA;
        g->offset = id << 20;
        g->size = size;
        g->sealed = true;
}

static void freed(const uint64_t *ids, size_t n) {
        pthread_mutex_lock(&fake.lock);
        for (size_t i = 0; i < n && fake.nfreed < 64; i++)
                fake.freed[fake.nfreed++] = ids[i];
        pthread_mutex_unlock(&fake.lock);
}

static bool was_freed(uint64_t id) {
        bool yes = false;

        pthread_mutex_lock(&fake.lock);
        for (size_t i = 0; i < fake.nfreed; i++)
                yes |= fake.freed[i] == id;
        pthread_mutex_unlock(&fake.lock);
        return yes;
}

/* Regions 100 + i of sizes, in the fake's form; n is at most 64. */
static void batch(Allocd__RegionBatch *b, const uint64_t *sizes, size_t n, enum form form) {
        static Allocd__Region common, list[65], *ptrs[65];
        static uint64_t ids[65], offsets[65], lens[65];

        n += form == ONE_MORE;
        for (size_t i = 0; i < n; i++) {
                region(&list[i], 100 + i, sizes[i < n - 1 || form != ONE_MORE ? i : 0]);
                ptrs[i] = &list[i];
                ids[i] = list[i].id;
                offsets[i] = list[i].offset;
                lens[i] = list[i].size;
                if (i > 0 || form == LISTED_NO_POOL)
                        list[i].pool = NULL;
        }
        if (form == LISTED || form == LISTED_NO_POOL) {
                b->n_regions = n;
                b->regions = ptrs;
                return;
        }
        common = list[0];
        common.pool = "f";
        common.has_id = common.has_offset = common.has_size = false;
        b->common = form == NO_COMMON ? NULL : &common;
        b->n_ids = b->n_offsets = b->n_sizes = n;
        b->n_offsets -= form == SHORT_OFFSETS;
        b->ids = ids;
        b->offsets = offsets;
        b->sizes = lens;
}

/* Answers by the fake's rules; what the reply points to is static: the fake packs it after. */
static int answer(const Allocd__Request *q, Allocd__Reply *r, int *fd, void *arg) {
        static Allocd__HelloReply h;
        static Allocd__RegionBatch b;
        static Allocd__Region g;
        uint64_t sizes[64];

        (void)fd;
        (void)arg;
        r->has_error = true;
        if (q->body_case == ALLOCD__REQUEST__BODY_HELLO) {
                allocd__hello_reply__init(&h);
                h.has_version = h.has_max_packet = h.has_max_batch = h.has_renew = h.has_spares_max = true;
                h.version = WIRE_VERSION;
                h.max_packet = WIRE_MAX_PACKET;
                h.max_batch = WIRE_MAX_BATCH;
                h.renew = true;
                h.spares_max = 4;
                r->body_case = ALLOCD__REPLY__BODY_HELLO;
                r->hello = &h;
        } else if (q->body_case == ALLOCD__REQUEST__BODY_ALLOC) {
                region(&g, fake.next++, q->alloc->size);
                r->body_case = ALLOCD__REPLY__BODY_REGION;
                r->region = &g;
        } else if (q->body_case == ALLOCD__REQUEST__BODY_ALLOC_BATCH) {
                allocd__region_batch__init(&b);
                batch(&b, q->alloc_batch->sizes, q->alloc_batch->n_sizes, fake.form);
                r->body_case = ALLOCD__REPLY__BODY_BATCH;
                r->batch = &b;
        } else if (q->body_case == ALLOCD__REQUEST__BODY_FREE) {
                freed(&q->free->region, 1);
                for (uint32_t i = 0; q->free->renew && i < fake.spares; i++)
                        sizes[i] = q->free->renew->size;
                if (q->free->renew && fake.spares) {
                        allocd__region_batch__init(&b);
                        batch(&b, sizes, fake.spares, fake.form);
                        r->body_case = ALLOCD__REPLY__BODY_BATCH;
                        r->batch = &b;
                }
        } else if (q->body_case == ALLOCD__REQUEST__BODY_FREE_BATCH) {
                freed(q->free_batch->regions, q->free_batch->n_regions);
        }
        return 0;
}

static struct alloc_client *start(enum form form, uint32_t spares) {
        struct alloc_client *c = NULL;

        fake.form = form;
        fake.spares = spares;
        fake.next = 1;
        fake_allocd_start(&fake.server, answer, NULL);
        cr_assert_eq(alloc_connect(&c, fake.server.path, "fake"), 0, "%s", alloc_last_error());
        return c;
}

static void stop(struct alloc_client *c) {
        alloc_disconnect(c);
        fake_allocd_stop(&fake.server);
}

TestSuite(fake, .timeout = 30);

Test(fake, a_batch_in_either_form_is_read) {
        uint64_t sizes[3] = {4096, 8192, 4096};
        struct alloc_region r[3];

        for (enum form form = COLUMNS; form <= LISTED; form++) {
                struct alloc_client *c = start(form, 0);
                cr_assert_eq(alloc_region_new_batch(c, "f", sizes, 3, NULL, r), 0, "%s", alloc_last_error());
                for (int i = 0; i < 3; i++) {
                        cr_expect_eq(r[i].id, (uint64_t)(100 + i));
                        cr_expect_eq(r[i].addr, (uint64_t)(100 + i) << 20);
                        cr_expect_eq(r[i].size, sizes[i]);
                        cr_expect_str_eq(r[i].pool, "f");
                }
                stop(c);
        }
}

Test(fake, a_batch_it_cannot_read_is_refused) {
        static const enum form forms[] = {SHORT_OFFSETS, NO_COMMON, ONE_MORE, LISTED_NO_POOL};
        uint64_t sizes[3] = {4096, 8192, 4096};
        struct alloc_region r[3], one;

        for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
                struct alloc_client *c = start(forms[k], 0);
                cr_expect_eq(alloc_region_new_batch(c, "f", sizes, 3, NULL, r), -EPROTO, "form %d: %s", forms[k],
                             alloc_last_error());
                cr_expect(strstr(alloc_last_error(), "answered a batch of 3 regions with something else"), "%s",
                          alloc_last_error());
                cr_expect_eq(alloc_region_new(c, "f", 4096, NULL, &one), 0, "%s", alloc_last_error());
                stop(c);
        }
}

/* Spares in columns, as many as asked or fewer, are taken as listed ones are. */
Test(fake, spares_in_columns_are_taken) {
        struct alloc_client *c = start(COLUMNS, 2);
        struct alloc_region r;

        cr_assert_eq(alloc_set_spare(c, true), 0);
        cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_expect_eq(r.id, 100, "the first spare");
        stop(c);
}

/* More spares than asked are none of them kept: each goes back, listed or in columns. */
Test(fake, spares_beyond_the_ask_go_back) {
        struct alloc_region r;

        for (enum form form = COLUMNS; form <= LISTED; form++) {
                struct alloc_client *c = start(form, 5); /* the free asks for 4: spares_max */
                cr_assert_eq(alloc_set_spare(c, true), 0);
                cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_free(c, r.id), 0, "%s", alloc_last_error());
                /* It reads the Free's reply, gives the spares back, then allocates: the fake reads in order. */
                cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
                cr_expect_eq(r.id, 2, "no spare was kept");
                for (uint64_t id = 100; id < 105; id++)
                        cr_expect(was_freed(id), "form %d: spare %llu was not given back", form,
                                  (unsigned long long)id);
                stop(c);
                fake.nfreed = 0;
        }
}

/*
 * An allocd from before a Cancel ended a zeroing (4725a34 and older): an abandoned Alloc being
 * zeroed is answered NOT_FOUND to the disconnect's Cancel, and granted (a PERSIST region) once the
 * zeroing is done.  What the fake read, in order: the grant's Free must come before the Goodbye,
 * after which allocd reads nothing (the region would stay for good).
 */
static struct {
        Allocd__Request__BodyCase seen[16];
        size_t n;
        uint64_t alloc; /* the Alloc's request id */
        Allocd__Reply late;
        Allocd__Region region;
} zeroing;

static int answer_zeroing(const Allocd__Request *q, Allocd__Reply *r, int *fd, void *arg) {
        static Allocd__HelloReply h;

        (void)fd;
        (void)arg;
        pthread_mutex_lock(&fake.lock);
        if (zeroing.n < 16)
                zeroing.seen[zeroing.n++] = q->body_case;
        pthread_mutex_unlock(&fake.lock);
        if (fake_hello(q, r)) {
                h = *r->hello;
                h.has_cancel = h.cancel = h.has_goodbye = h.goodbye = true;
                r->hello = &h;
                return 0;
        }
        switch (q->body_case) {
        case ALLOCD__REQUEST__BODY_ALLOC:
                zeroing.alloc = q->id;
                return FAKE_SILENT; /* zeroing: the client times out */
        case ALLOCD__REQUEST__BODY_CANCEL:
                r->has_error = true;
                r->error = ALLOCD__ERROR__NOT_FOUND;
                allocd__reply__init(&zeroing.late);
                zeroing.late.has_id = true;
                zeroing.late.id = zeroing.alloc;
                region(&zeroing.region, 9, 4096);
                zeroing.late.body_case = ALLOCD__REPLY__BODY_REGION;
                zeroing.late.region = &zeroing.region;
                fake.server.then = &zeroing.late;
                fake.server.then_ms = 300; /* the zeroing ends */
                return FAKE_THEN;
        default:
                return 0;
        }
}

Test(fake, a_persist_grant_zeroed_past_a_not_found_cancel_goes_back_before_the_goodbye) {
        struct alloc_opts o = {.flags = ALLOC_PERSIST | ALLOC_NOWAIT};
        struct alloc_region out;
        struct alloc_client *c;

        memset(&zeroing, 0, sizeof(zeroing));
        fake_allocd_start(&fake.server, answer_zeroing, NULL);
        cr_assert_eq(alloc_connect(&c, fake.server.path, NULL), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_set_timeout(c, 100), 0);
        cr_assert_eq(alloc_region_new(c, "f", 4096, &o, &out), -ETIME, "%s", alloc_last_error());
        cr_assert_eq(alloc_set_timeout(c, 5000), 0);
        alloc_disconnect(c);
        fake_allocd_stop(&fake.server);
        size_t fr = 0, bye = 0;
        for (size_t i = 0; i < zeroing.n; i++) {
                if (zeroing.seen[i] == ALLOCD__REQUEST__BODY_FREE && !fr)
                        fr = i + 1;
                if (zeroing.seen[i] == ALLOCD__REQUEST__BODY_GOODBYE && !bye)
                        bye = i + 1;
        }
        cr_assert(fr && bye, "no Free (%zu) or no Goodbye (%zu)", fr, bye);
        cr_assert_lt(fr, bye, "the grant's Free came after the Goodbye: allocd never reads it");
}
