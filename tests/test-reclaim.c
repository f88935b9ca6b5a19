/* SPDX-License-Identifier: MIT */
/*
 * A client reclaims its regions from an allocd restarted with its state (issue 18), against the
 * in-process server of reclaim-server.c: what is checked is the reclaim and the squaring, not the
 * bytes.  The client is the real liballoc-client, reconnecting on its own.  What becomes of a
 * connection no client reclaims (its process watched) is in test-reclaim-watch.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reclaim-server.h"

/* A region granted whose reply never left: the state has it, the client does not. */
static void grant_unheard(struct srv *s, struct client *cl) {
        struct alloc_request a = {.pool = "f", .size = 4096, .numa_node = -1};
        struct core_result res;
        uint32_t slot;

        cr_assert_eq(core_alloc(s->core, cl, 0, &a, &slot, &res), GRANT_REGION, "%s", res.msg);
}

#define N 4500 /* more than a page of Held */

Test(reclaim, a_client_takes_its_regions_back_and_frees_them, .timeout = 60) {
        static struct alloc_region r[N];
        static uint64_t sizes[1024], ids[N];
        struct srv s;
        uint64_t used, serial, used2, serial2;

        setenv("ALLOCD_RECONNECT", "10s", 1);
        start(&s);
        struct alloc_client *c = connect_to(&s);
        for (size_t i = 0; i < 1024; i++)
                sizes[i] = 4096;
        for (size_t i = 0; i < N; i += 1024) {
                size_t n = N - i < 1024 ? N - i : 1024;
                cr_assert_eq(alloc_region_new_batch(c, "f", sizes, n, NULL, &r[i]), 0, "%s", alloc_last_error());
        }
        seen(c, &used, &serial);
        cr_assert_eq(used, (uint64_t)N * 4096);
        s.inject = grant_unheard; /* and one region whose reply was lost */
        s.serial = serial;
        restart(&s, 60000);
        /* The next call reconnects, reclaims, gives the unheard region back, and answers. */
        seen(c, &used2, &serial2);
        cr_assert_eq(serial2, serial);
        cr_assert_eq(used2, used);
        /* The ids it had are its own still: freed without waiting, and allocd agrees. */
        for (size_t i = 0; i < N; i++)
                ids[i] = r[i].id;
        for (size_t i = 0; i < N; i += 1024)
                cr_assert_eq(alloc_region_free_batch(c, &ids[i], N - i < 1024 ? N - i : 1024), 0, "%s",
                             alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        seen(c, &used2, &serial2);
        cr_assert_eq(used2, 0);
        alloc_disconnect(c);
        finish(&s);
}

Test(reclaim, another_connection_cannot_take_them, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = holding_one(&s, &r);

        restart(&s, 60000);
        /* A connection of its own holds nothing of them; the owner's next call finds them. */
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_free_sync(other, r.id), -ENOENT);
        alloc_disconnect(other);
        seen(c, &used, &serial);
        cr_assert_eq(used, 1 << 20);
        cr_assert_eq(alloc_region_free_sync(c, r.id), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        finish(&s);
}

/* A free on its way as allocd stops: done before the state was written, or given back by the squaring. */
Test(reclaim, a_free_in_flight_is_not_lost, .timeout = 60) {
        struct alloc_region r[8];
        struct srv s;
        uint64_t used, serial;

        setenv("ALLOCD_RECONNECT", "10s", 1);
        start(&s);
        struct alloc_client *c = connect_to(&s);
        for (int i = 0; i < 8; i++)
                cr_assert_eq(alloc_region_new(c, "f", 8192, NULL, &r[i]), 0, "%s", alloc_last_error());
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc_region_free(c, r[i].id), 0, "%s", alloc_last_error());
        restart(&s, 60000);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 4 * 8192);
        for (int i = 4; i < 8; i++)
                cr_assert_eq(alloc_region_detach_sync(c, r[i].id), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 0);
        alloc_disconnect(c);
        finish(&s);
}

/* Done by allocd as it stopped, each with its reply lost: a Free, a Detach, an Attach of "w", a Seal. */
static void free_unheard(struct srv *s, struct client *cl) {
        struct core_result res;

        cr_assert_eq(core_free_region(s->core, cl, s->id, &res), 0, "%s", res.msg);
}

static void detach_unheard(struct srv *s, struct client *cl) {
        struct core_result res;

        cr_assert_eq(core_detach(s->core, cl, s->id, &res), 0, "%s", res.msg);
}

static void attach_unheard(struct srv *s, struct client *cl) {
        struct attach_request a = {.name = "w"};
        struct core_result res;
        uint32_t slot;

        cr_assert_eq(core_attach(s->core, cl, 0, &a, &slot, &res), GRANT_REGION, "%s", res.msg);
}

static void seal_unheard(struct srv *s, struct client *cl) {
        struct core_result res;

        cr_assert_eq(core_seal(s->core, cl, s->id, &res), 0, "%s", res.msg);
}

/* A client that allocated "w" with flags, on a server that runs inject on it at the restart. */
static struct alloc_client *made_w(struct srv *s, uint32_t flags, void (*inject)(struct srv *, struct client *)) {
        struct alloc_opts o = {.name = "w", .flags = flags};
        struct alloc_region r;
        uint64_t used;

        setenv("ALLOCD_RECONNECT", "10s", 1);
        start(s);
        struct alloc_client *c = connect_to(s);
        cr_assert_eq(alloc_region_new(c, "f", 4096, &o, &r), 0, "%s", alloc_last_error());
        seen(c, &used, &s->serial);
        s->id = r.id;
        s->inject = inject;
        return c;
}

/*
 * A give-back whose reply the restart lost is not sent again: the connection holds "w" twice (an
 * alloc and an attach), allocd gave one back as it stopped, and the one left stays.
 */
static void give_back_once(bool free_it) {
        struct alloc_region a;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = made_w(&s, 0, free_it ? free_unheard : detach_unheard);

        cr_assert_eq(alloc_region_attach(c, "w", NULL, &a), 0, "%s", alloc_last_error());
        restart(&s, 60000);
        cr_assert_eq(free_it ? alloc_region_free_sync(c, s.id) : alloc_region_detach_sync(c, s.id), 0, "%s",
                     alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 4096, "the reference left was given back too");
        cr_assert_eq(alloc_region_detach_sync(c, s.id), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 0);
        alloc_disconnect(c);
        finish(&s);
}

Test(reclaim, a_free_done_as_allocd_stopped_is_not_sent_again, .timeout = 60) {
        give_back_once(true);
}

Test(reclaim, a_detach_done_as_allocd_stopped_is_not_sent_again, .timeout = 60) {
        give_back_once(false);
}

/* A free_sync that never reached allocd is done by the squaring, once. */
Test(reclaim, a_free_sync_lost_on_the_way_is_done_once, .timeout = 60) {
        struct alloc_region a;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = made_w(&s, 0, NULL);

        cr_assert_eq(alloc_region_attach(c, "w", NULL, &a), 0, "%s", alloc_last_error());
        restart(&s, 60000);
        cr_assert_eq(alloc_region_free_sync(c, s.id), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 4096);
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_attach(other, "w", NULL, &a), -ENOENT, "the Free did not unpublish w");
        alloc_disconnect(other);
        alloc_disconnect(c);
        finish(&s);
}

/* What allocd holds beyond the table, of a PERSIST region the connection made and knows, goes back by Detach. */
static void persist_kept(void (*inject)(struct srv *, struct client *), bool detach) {
        struct alloc_region a;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = made_w(&s, ALLOC_PERSIST, inject);

        restart(&s, 60000);
        if (detach)
                cr_assert_eq(alloc_region_detach(c, s.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 4096);
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_attach(other, "w", NULL, &a), 0, "w was withdrawn: %s", alloc_last_error());
        alloc_disconnect(other);
        alloc_disconnect(c);
        finish(&s);
}

Test(reclaim, a_lost_attach_of_its_own_persist_region_keeps_it_published, .timeout = 60) {
        persist_kept(attach_unheard, false);
}

Test(reclaim, a_lost_pipelined_detach_of_its_own_persist_region_keeps_it_published, .timeout = 60) {
        persist_kept(NULL, true);
}

/* A Seal allocd did as it stopped is done: sent again, "sealed already" is what was asked. */
Test(reclaim, a_seal_done_as_allocd_stopped_succeeds, .timeout = 60) {
        struct alloc_region a;
        struct srv s;
        struct alloc_client *c = made_w(&s, ALLOC_UNSEALED, seal_unheard);

        restart(&s, 60000);
        cr_assert_eq(alloc_region_seal(c, s.id), 0, "%s", alloc_last_error());
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_attach(other, "w", NULL, &a), 0, "%s", alloc_last_error());
        alloc_disconnect(other);
        alloc_disconnect(c);
        finish(&s);
}

/* An operator's disconnect of a connection not reclaimed yet releases its references at once. */
Test(reclaim, a_disconnect_releases_a_placeholder, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        uint64_t used, serial, other_serial;
        uint32_t n = 0;
        struct alloc_client *c = holding_one(&s, &r);

        seen(c, &used, &serial);
        restart(&s, 60000);
        struct alloc_client *other = connect_to(&s);
        /* By pid, a placeholder is nobody's: its process may be gone, and the pid another's now. */
        cr_assert_eq(alloc_drop_client(other, getpid(), 0, &n), -ENOENT, "%s", alloc_last_error());
        /* ... but allocctl status lists it under that pid: the refusal says how to name it. */
        char by_serial[64];
        snprintf(by_serial, sizeof(by_serial), "allocctl disconnect serial:%" PRIu64, serial);
        cr_assert(strstr(alloc_last_error(), by_serial), "%s", alloc_last_error());
        cr_assert_eq(alloc_drop_client(other, 0, serial, &n), 0, "%s", alloc_last_error());
        cr_assert_eq(n, 1);
        seen(other, &used, &other_serial);
        cr_assert_eq(used, 0, "the placeholder's region is still held");
        alloc_disconnect(other);
        cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), -ESTALE, "%s", alloc_last_error());
        alloc_disconnect(c);
        finish(&s);
}
