/* SPDX-License-Identifier: MIT */
/*
 * Sharing without polling: an Attach that waits for its name, and UNSEALED
 * regions that no one attaches before their creator's Seal.  Each waiting
 * attach runs on a thread of its own connection; the test's main thread
 * plays the producer.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct daemon d;

static void setup(void) {
        daemon_start(&d, "[daemon]\nmax_waiters_per_connection = 2\n[pool host]\nkind = host\nsize = 4M\n");
}

static void teardown(void) {
        daemon_stop(&d);
}

TestSuite(seal, .init = setup, .fini = teardown, .timeout = 60);

struct waiting {
        pthread_t thread;
        struct alloc_client *c;
        const char *name;
        uint32_t timeout_ms;
        int result;
        char error[512];
        struct alloc_region r;
        char first[16]; /* the region's first bytes, as the waiter saw them once attached */
};

static void *wait_thread(void *arg) {
        struct waiting *w = arg;

        w->result = alloc_region_attach(w->c, w->name, &(struct alloc_attach_opts){.timeout_ms = w->timeout_ms}, &w->r);
        snprintf(w->error, sizeof(w->error), "%s", alloc_last_error());
        if (w->result == 0)
                memcpy(w->first, w->r.ptr, sizeof(w->first));
        return NULL;
}

/* Waits until allocd lists n requests waiting, over all connections. */
static void wait_for_waiters(struct alloc_client *watch, uint64_t n) {
        for (int i = 0; i < 2000; i++) {
                struct alloc_status *s;
                uint64_t waiting = 0;
                cr_assert_eq(alloc_status(watch, &s), 0);
                for (size_t k = 0; k < s->nclients; k++)
                        waiting += s->clients[k].waiters;
                alloc_status_free(s);
                if (waiting >= n)
                        return;
                usleep(1000);
        }
        cr_assert_fail("allocd never had %llu requests waiting", (unsigned long long)n);
}

/* Starts an attach of name on c (NULL: a new connection), on a thread. */
static void start_thread(struct waiting *w, struct alloc_client *c, const char *name, uint32_t timeout_ms) {
        *w = (struct waiting){.c = c ? c : daemon_connect(&d), .name = name, .timeout_ms = timeout_ms};
        cr_assert_eq(pthread_create(&w->thread, NULL, wait_thread, w), 0);
}

/* Starts an attach of name on a new connection, and returns once allocd has it waiting. */
static void start_waiting(struct waiting *w, struct alloc_client *watch, const char *name, uint32_t timeout_ms) {
        start_thread(w, NULL, name, timeout_ms);
        wait_for_waiters(watch, 1);
}

static void end_waiting(struct waiting *w) {
        pthread_join(w->thread, NULL);
        alloc_disconnect(w->c);
}

Test(seal, an_attach_waits_for_the_name) {
        struct alloc_client *c = daemon_connect(&d);
        struct waiting w;
        struct alloc_region r;

        start_waiting(&w, c, "later", 10000);
        cr_assert_eq(alloc_region_new(c, "host", 4096, &(struct alloc_opts){.name = "later", .flags = ALLOC_ZERO}, &r),
                     0);
        end_waiting(&w);
        cr_assert_eq(w.result, 0, "%s", w.error);
        cr_assert_eq(w.r.id, r.id);
        alloc_disconnect(c);
}

Test(seal, nothing_attaches_before_the_seal) {
        struct alloc_client *c = daemon_connect(&d), *other = daemon_connect(&d);
        struct alloc_opts o = {.name = "frame", .flags = ALLOC_UNSEALED};
        struct alloc_region r, x;
        struct waiting w;

        cr_assert_eq(alloc_region_new(c, "host", 4096, &o, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_attach(other, "frame", NULL, &x), -EAGAIN);
        cr_assert(strstr(alloc_last_error(), "not sealed yet"), "%s", alloc_last_error());
        start_waiting(&w, c, "frame", 10000);
        memcpy(r.ptr, "written first", 14);
        cr_assert_eq(alloc_region_seal(other, r.id), -EACCES, "only its creator seals it");
        cr_assert_eq(alloc_region_seal(c, r.id), 0, "%s", alloc_last_error());
        end_waiting(&w);
        cr_assert_eq(w.result, 0, "%s", w.error);
        cr_assert_str_eq(w.first, "written first", "the waiter sees what was written before the seal");
        cr_assert_eq(alloc_region_seal(c, r.id), -EINVAL, "sealed already");
        cr_assert_eq(alloc_region_attach(other, "frame", NULL, &x), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        alloc_disconnect(other);
}

/* The creator goes before the seal: nothing is left, PERSIST or not, and the waiter is told. */
Test(seal, the_creator_going_before_the_seal_leaves_nothing) {
        struct alloc_client *c = daemon_connect(&d), *watch = daemon_connect(&d);
        struct alloc_opts o = {.name = "half", .flags = ALLOC_UNSEALED | ALLOC_PERSIST};
        struct alloc_region r;
        struct waiting w;

        cr_assert_eq(alloc_region_new(c, "host", 1 << 20, &o, &r), 0);
        start_waiting(&w, watch, "half", 10000);
        alloc_disconnect(c);
        end_waiting(&w);
        cr_assert_eq(w.result, -ENOENT, "%d %s", w.result, w.error);
        cr_assert(strstr(w.error, "went before its creator sealed it"), "%s", w.error);
        cr_assert_eq(wait_used(watch, "host", 0), 0, "the PERSIST region went too");
        cr_assert_eq(alloc_region_attach(watch, "half", NULL, &r), -ENOENT);
        alloc_disconnect(watch);
}

/* Free and detach by the creator before the seal abort it the same way. */
Test(seal, free_or_detach_before_the_seal_aborts) {
        struct alloc_client *c = daemon_connect(&d);
        struct alloc_opts o = {.name = "gone", .flags = ALLOC_UNSEALED | ALLOC_PERSIST};
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "host", 4096, &o, &r), 0);
        cr_assert_eq(alloc_region_detach(c, r.id), 0);
        cr_assert_eq(pool_used(c, "host"), 0);
        cr_assert_eq(alloc_region_new(c, "host", 4096, &o, &r), 0, "the name is free again: %s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_assert_eq(pool_used(c, "host"), 0);
        alloc_disconnect(c);
}

Test(seal, waits_end_and_are_limited) {
        struct alloc_client *c = daemon_connect(&d);
        struct alloc_region r;
        struct waiting w[2];

        cr_assert_eq(alloc_region_attach(c, "never", &(struct alloc_attach_opts){.timeout_ms = 300}, &r), -ETIMEDOUT);
        cr_assert(strstr(alloc_last_error(), "no region was published and sealed as 'never'"), "%s",
                  alloc_last_error());
        cr_assert_eq(alloc_region_new(c, "host", 4096, &(struct alloc_opts){.flags = ALLOC_UNSEALED}, &r), -EINVAL,
                     "UNSEALED needs a name");
        /* "" is not a name (the wire cannot tell it from none): refused, not an unnamed region. */
        cr_assert_eq(alloc_region_new(c, "host", 4096, &(struct alloc_opts){.name = ""}, &r), -EINVAL);
        cr_assert(strstr(alloc_last_error(), "NULL for none"), "%s", alloc_last_error());
        /* Two waiters, then max_waiters_per_connection = 2 refuses a third on the same connection. */
        start_waiting(&w[0], c, "many", 10000);
        start_thread(&w[1], w[0].c, "many", 10000);
        wait_for_waiters(c, 2);
        cr_assert_eq(alloc_region_attach(w[0].c, "many", &(struct alloc_attach_opts){.timeout_ms = 10000}, &r),
                     -EMFILE);
        cr_assert_eq(alloc_region_new(c, "host", 4096, &(struct alloc_opts){.name = "many"}, &r), 0);
        pthread_join(w[1].thread, NULL);
        end_waiting(&w[0]);
        cr_assert_eq(w[0].result, 0, "%s", w[0].error);
        cr_assert_eq(w[1].result, 0, "%s", w[1].error);
        alloc_disconnect(c);
}

/*
 * Another connection of the creator's uid frees an UNSEALED PERSIST region (an owner may, holding it
 * or not): its name goes, the creator keeps its reference, and its Seal then has no name to wake.
 * Found by review: the Seal queued the name of name id 0, and with any Attach waiting allocd crashed.
 */
Test(seal, a_seal_after_the_name_went_elsewhere) {
        struct alloc_client *c = daemon_connect(&d), *other = daemon_connect(&d);
        struct alloc_opts o = {.name = "taken-away", .flags = ALLOC_UNSEALED | ALLOC_PERSIST};
        struct alloc_region r, x;
        struct waiting w;

        cr_assert_eq(alloc_region_new(c, "host", 4096, &o, &r), 0, "%s", alloc_last_error());
        start_waiting(&w, other, "someone-else", 10000);
        cr_assert_eq(alloc_region_free_sync(other, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_attach(other, "taken-away", NULL, &x), -ENOENT, "the name went with the Free");
        cr_assert_eq(alloc_region_seal(c, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(c, "host", 4096, &(struct alloc_opts){.name = "someone-else"}, &x), 0, "%s",
                     alloc_last_error());
        end_waiting(&w);
        cr_assert_eq(w.result, 0, "%s", w.error);
        cr_assert_eq(pool_used(other, "host"), 8192, "the creator still holds the sealed region");
        alloc_disconnect(c);
        cr_assert_eq(wait_used(other, "host", 0), 0);
        alloc_disconnect(other);
}
