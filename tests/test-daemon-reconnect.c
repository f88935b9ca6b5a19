/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client carries on when allocd restarts (issue 18; client/reconnect.c).  Here allocd
 * restarts without its state, on the same socket: the client makes its connection again, and
 * its next call works, or, if it held regions, says once that they are gone and why.
 * ALLOCD_RECONNECT=0 keeps the old behaviour, and a bound on the tries is kept.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "sysd.h"

#define CONF "[pool host]\nkind = host\nsize = 4M\n"

/* allocd, killed if the test dies first (a failed assertion leaves no allocd behind). */
static void start(struct daemon *d) {
        int r = daemon_spawn_opts(d, CONF, NULL);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1", r);
}

/* allocd stopped as systemctl stop would, and not started again. */
static void stop_only(struct daemon *d) {
        int status;

        kill(d->pid, SIGTERM);
        cr_assert(daemon_notified(d, "STOPPING=1", 10000), "no STOPPING=1");
        cr_assert_eq(waitpid(d->pid, &status, 0), d->pid);
        d->pid = 0;
}

/* A new allocd on the same socket and configuration, without the state of the one before. */
static void start_again(struct daemon *d) {
        int r = daemon_respawn(d, NULL);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1", r);
}

static void restart(struct daemon *d) {
        stop_only(d);
        start_again(d);
}

static long ms_since(const struct timespec *t0) {
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* c's new region "after" in pool, r, written "shared", is read so by another client of d's. */
static void new_region_is_seen_by_another(struct daemon *d, struct alloc_client *c, const char *pool,
                                          struct alloc_region *r) {
        struct alloc_region seen;

        cr_assert_eq(alloc_region_new(c, pool, 4096, &(struct alloc_opts){.name = "after"}, r), 0, "%s",
                     alloc_last_error());
        memcpy(r->ptr, "shared", 7);
        struct alloc_client *b = daemon_connect(d);
        cr_assert_eq(alloc_region_attach(b, "after", NULL, &seen), 0, "%s", alloc_last_error());
        cr_assert_str_eq(seen.cptr, "shared");
        alloc_disconnect(b);
}

Test(reconnect, a_client_without_regions_carries_on_unaware, .timeout = 60) {
        struct daemon d;
        struct alloc_status *st = NULL;

        start(&d);
        struct alloc_client *c = daemon_connect(&d);
        cr_assert_eq(alloc_status(c, &st), 0, "%s", alloc_last_error());
        alloc_status_free(st);
        restart(&d);
        cr_assert_eq(alloc_status(c, &st), 0, "%s", alloc_last_error());
        alloc_status_free(st);
        struct alloc_region r;
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &r), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        daemon_stop(&d);
}

Test(reconnect, regions_lost_in_a_restart_without_state_are_said_gone_once, .timeout = 60) {
        struct daemon d;
        struct alloc_region old, r;

        start(&d);
        struct alloc_client *c = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &old), 0, "%s", alloc_last_error());
        memcpy(old.ptr, "before", 7);
        restart(&d);
        cr_assert_eq(alloc_region_new(c, "host", 4096, &(struct alloc_opts){.name = "after"}, &r), -ESTALE);
        cr_assert(strstr(alloc_last_error(), "restarted") && strstr(alloc_last_error(), "gone") &&
                          strstr(alloc_last_error(), "not waiting to be reclaimed"),
                  "%s", alloc_last_error());
        /* allocd's words whole, their end too (the library once kept 255 bytes of them), every way a
         * placeholder goes named. */
        cr_assert(strstr(alloc_last_error(), "is gone); the connection carries on as a new one") &&
                          strstr(alloc_last_error(), "allocctl disconnect"),
                  "%s", alloc_last_error());
        /* The memory stays mapped: a pointer the program still has does not fault. */
        cr_assert_str_eq(old.ptr, "before");
        /* It carries on as a new connection, in the new allocd's pool (a new memfd, mapped anew). */
        new_region_is_seen_by_another(&d, c, "host", &r);
        alloc_disconnect(c);
        daemon_stop(&d);
}

/*
 * An isolation = region pool's region after a restart without state gets its own mapping, never a
 * lost region's: the library forgets those (their ids may come again, where the new allocd's drawn
 * start meets the old one's).
 */
Test(reconnect, a_region_after_a_restart_without_state_is_not_a_lost_one_of_the_same_id, .timeout = 60) {
        struct daemon d;
        struct alloc_region old, r;

        daemon_start(&d, "[pool iso]\nkind = host\nsize = 4M\nisolation = region\n");
        struct alloc_client *c = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(c, "iso", 4096, NULL, &old), 0, "%s", alloc_last_error());
        memcpy(old.ptr, "before", 7);
        restart(&d);
        cr_assert_eq(alloc_region_new(c, "iso", 4096, NULL, &r), -ESTALE);
        cr_assert_str_eq(old.ptr, "before"); /* still mapped */
        new_region_is_seen_by_another(&d, c, "iso", &r);
        cr_assert_neq(r.ptr, old.ptr, "region %llu got the mapping of lost region %llu", (unsigned long long)r.id,
                      (unsigned long long)old.id);
        cr_assert_str_eq(old.ptr, "before");
        alloc_disconnect(c);
        daemon_stop(&d);
}

/*
 * A program may keep an id from before a restart without state in another thread or structure.
 * The new allocd draws where its ids start, so the old id names none of its regions: a Free of
 * it is NOT_FOUND, not the loss of a region the connection holds now (both allocds hand out their
 * first region at the same slot).
 */
Test(reconnect, an_id_from_before_a_restart_without_state_names_no_region_after_it, .timeout = 60) {
        struct daemon d;
        struct alloc_region old, r;

        start(&d);
        struct alloc_client *c = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(c, "host", 4096, NULL, &old), 0, "%s", alloc_last_error());
        restart(&d);
        cr_assert_eq(alloc_region_new(c, "host", 8192, NULL, &r), -ESTALE);
        cr_assert_eq(alloc_region_new(c, "host", 8192, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_neq(r.id, old.id, "the new allocd handed out the id of the old one's region again");
        cr_assert_eq(alloc_region_free(c, old.id), -ENOENT, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "host"), 8192);
        alloc_disconnect(c);
        daemon_stop(&d);
}

/* alloc_dump_each's callback: restarts allocd without its state at the first region. */
static int restart_at_first(const struct alloc_region_info *info, void *d) {
        static bool done;

        (void)info;
        if (!done)
                restart(d);
        done = true;
        return 0;
}

/*
 * A dump is pages, each asked after the last id of the one before: a restart without state between
 * two pages would end it early, as if all had been listed (the new allocd has none of the ids, or
 * others).  It fails instead, and says to dump again.
 */
Test(reconnect, a_dump_across_a_restart_without_state_fails_rather_than_ends_early, .timeout = 60) {
        enum { N = 1000 };
        struct daemon d;
        struct alloc_region *rs = calloc(N, sizeof(*rs));
        uint64_t sizes[N];

        for (int i = 0; i < N; i++)
                sizes[i] = 4096;

        start(&d);
        struct alloc_client *maker = daemon_connect(&d), *c = daemon_connect(&d);
        cr_assert_eq(alloc_region_new_batch(maker, "host", sizes, N, NULL, rs), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_dump_each(c, NULL, restart_at_first, &d), -ESTALE, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "during the dump"), "%s", alloc_last_error());
        struct alloc_dump *dump = NULL;
        cr_assert_eq(alloc_dump(c, NULL, &dump), 0, "%s", alloc_last_error());
        cr_assert_eq(dump->nregions, 0);
        alloc_dump_free(dump);
        alloc_disconnect(maker);
        alloc_disconnect(c);
        free(rs);
        daemon_stop(&d);
}

Test(reconnect, allocd_reconnect_0_keeps_the_lost_connection_lost, .timeout = 60) {
        struct daemon d;
        struct alloc_status *st = NULL;

        setenv("ALLOCD_RECONNECT", "0", 1);
        start(&d);
        struct alloc_client *c = daemon_connect(&d);
        restart(&d);
        cr_assert_eq(alloc_status(c, &st), -ECONNRESET);
        cr_assert(strstr(alloc_last_error(), "gone"), "%s", alloc_last_error());
        cr_assert_eq(alloc_status(c, &st), -ECONNRESET);
        alloc_disconnect(c);
        daemon_stop(&d);
}

Test(reconnect, the_tries_end_within_allocd_reconnect, .timeout = 60) {
        struct daemon d;
        struct alloc_status *st = NULL;
        struct timespec t0;

        setenv("ALLOCD_RECONNECT", "500ms", 1);
        start(&d);
        struct alloc_client *c = daemon_connect(&d);
        stop_only(&d);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cr_assert_eq(alloc_status(c, &st), -ECONNRESET);
        cr_assert(strstr(alloc_last_error(), "500 ms") && strstr(alloc_last_error(), "ALLOCD_RECONNECT"), "%s",
                  alloc_last_error());
        /* The last try's error alone: no Hello was said, so no words of allocd's follow it. */
        cr_assert(strstr(alloc_last_error(), "refused; ALLOCD_RECONNECT") ||
                          strstr(alloc_last_error(), "directory; ALLOCD_RECONNECT"),
                  "%s", alloc_last_error());
        long took = ms_since(&t0);
        cr_assert(took >= 250 && took < 5000, "gave up after %ld ms", took);
        /* Given up: the next call says so at once, even with allocd back. */
        start_again(&d);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cr_assert_eq(alloc_status(c, &st), -ECONNRESET);
        cr_assert_lt(ms_since(&t0), 250);
        alloc_disconnect(c);
        daemon_stop(&d);
}

Test(reconnect, a_bad_allocd_reconnect_is_refused_at_connect, .timeout = 60) {
        struct daemon d;
        struct alloc_client *c;

        setenv("ALLOCD_RECONNECT", "often", 1);
        start(&d);
        cr_assert_eq(alloc_connect(&c, d.sock, "test"), -EINVAL);
        cr_assert(strstr(alloc_last_error(), "ALLOCD_RECONNECT=often"), "%s", alloc_last_error());
        daemon_stop(&d);
}

struct waiting {
        struct alloc_client *c;
        int r;
        char err[512];
};

static void *alloc_waiting(void *arg) {
        struct waiting *w = arg;
        struct alloc_region r;
        struct alloc_opts o = {.timeout_ms = 20000};

        w->r = alloc_region_new(w->c, "host", 2 << 20, &o, &r);
        snprintf(w->err, sizeof(w->err), "%s", alloc_last_error());
        return NULL;
}

/* allocd cancels the waits as it stops; each is sent again to the allocd that follows. */
Test(reconnect, a_wait_cut_by_the_restart_is_sent_again, .timeout = 60) {
        struct daemon d;
        struct alloc_region big;
        pthread_t t;

        start(&d);
        struct alloc_client *a = daemon_connect(&d);
        struct waiting w = {.c = daemon_connect(&d)};
        cr_assert_eq(alloc_region_new(a, "host", 3 << 20, NULL, &big), 0, "%s", alloc_last_error());
        pthread_create(&t, NULL, alloc_waiting, &w);
        cr_assert_eq(wait_waiters(a, "host", 1), 1);
        restart(&d);
        pthread_join(t, NULL);
        /* w held nothing: nothing was lost, and the new allocd has room. */
        cr_assert_eq(w.r, 0, "%s", w.err);
        cr_assert_eq(pool_used(w.c, "host"), 2 << 20);
        alloc_disconnect(w.c);
        alloc_disconnect(a);
        daemon_stop(&d);
}

struct looping {
        struct alloc_client *c;
        volatile bool *stop;
        int calls, failed, last;
        char err[512];
};

static void *status_loop(void *arg) {
        struct looping *l = arg;

        while (!*l->stop) {
                struct alloc_status *st = NULL;
                int r = alloc_status(l->c, &st);
                alloc_status_free(st);
                l->calls++;
                if (r < 0) {
                        l->failed++;
                        l->last = r;
                        snprintf(l->err, sizeof(l->err), "%s", alloc_last_error());
                }
        }
        return NULL;
}

/* Threads that share one connection: one of them makes it again, the others wait and carry on. */
Test(reconnect, threads_on_one_connection_carry_on_together, .timeout = 60) {
        struct daemon d;
        volatile bool stop = false;
        struct looping l[4];
        pthread_t t[4];

        start(&d);
        struct alloc_client *c = daemon_connect(&d);
        for (int i = 0; i < 4; i++) {
                l[i] = (struct looping){.c = c, .stop = &stop};
                pthread_create(&t[i], NULL, status_loop, &l[i]);
        }
        usleep(50000);
        restart(&d);
        usleep(50000);
        restart(&d);
        usleep(50000);
        stop = true;
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                cr_expect_eq(l[i].failed, 0, "thread %d: %d of %d calls failed, the last %d: %s", i, l[i].failed,
                             l[i].calls, l[i].last, l[i].err);
        }
        alloc_disconnect(c);
        daemon_stop(&d);
}

/* ---- a restart with the state (systemd's fd store, played by sysd.c): the clients reclaim ---- */

static struct sysd s;

static void end_sysd(void) {
        sysd_end(&s);
}

/* Status through c: the pool's used bytes. */
static uint64_t used_by(struct alloc_client *c) {
        return pool_used(c, "host");
}

Test(reconnect, after_a_restart_with_its_state_a_client_carries_on_with_its_regions, .fini = end_sysd, .timeout = 60) {
        struct alloc_region r[4], seen;
        struct alloc_opts named = {.name = "kept"};

        sysd_start(&s, CONF);
        struct alloc_client *c = daemon_connect(&s.d);
        for (int i = 0; i < 4; i++) {
                cr_assert_eq(alloc_region_new(c, "host", 65536, i ? NULL : &named, &r[i]), 0, "%s", alloc_last_error());
                memset(r[i].ptr, 'a' + i, r[i].size);
        }
        cr_assert_eq(alloc_region_free(c, r[3].id), 0); /* pipelined: maybe in flight as allocd stops */
        sysd_restart(&s, SIGTERM);
        /* The next call reconnects and reclaims; the free in flight is done either way. */
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(used_by(c), 3 * 65536);
        for (int i = 0; i < 3; i++)
                cr_assert_eq(((char *)r[i].ptr)[65535], 'a' + i);
        /* Its old pointer still writes the pool's memory, as another connection sees it. */
        memcpy(r[0].ptr, "after", 6);
        struct alloc_client *b = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(b, "kept", NULL, &seen), 0, "%s", alloc_last_error());
        cr_assert_str_eq(seen.ptr, "after");
        alloc_disconnect(b);
        cr_assert(strstr(sysd_log(&s), "reclaimed connection"), "%s", sysd_log(&s));
        for (int i = 0; i < 3; i++)
                cr_assert_eq(alloc_region_free_sync(c, r[i].id), 0, "%s", alloc_last_error());
        cr_assert_eq(used_by(c), 0);
        alloc_disconnect(c);
}

/*
 * A client that makes no call after a restart reconnects only at its next one, and maps its regions
 * all the while: reclaim_grace passing must not hand their memory to another (its process lives).
 */
Test(reconnect, a_silent_client_keeps_its_regions_past_reclaim_grace, .fini = end_sysd, .timeout = 60) {
        struct alloc_region r, rest;

        sysd_start(&s, "[daemon]\nreclaim_grace = 200ms\n" CONF);
        struct alloc_client *c = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(c, "host", 1 << 20, NULL, &r), 0, "%s", alloc_last_error());
        memset(r.ptr, 'k', r.size);
        sysd_restart(&s, SIGKILL);
        usleep(600 * 1000);
        /* Everything else of the pool, written all over: none of it may be c's. */
        struct alloc_client *other = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(other, "host", 3 << 20, &(struct alloc_opts){.flags = ALLOC_NOWAIT}, &rest), 0,
                     "%s", alloc_last_error());
        memset(rest.ptr, 'x', rest.size);
        struct alloc_region more;
        cr_assert_eq(alloc_region_new(other, "host", 4096, &(struct alloc_opts){.flags = ALLOC_NOWAIT}, &more), -EAGAIN,
                     "c's region went to another after reclaim_grace: %s", sysd_log(&s));
        cr_assert(!strstr(sysd_log(&s), "was not reclaimed"), "%s", sysd_log(&s));
        for (size_t i = 0; i < r.size; i++)
                cr_assert_eq(((char *)r.ptr)[i], 'k', "byte %zu", i);
        alloc_disconnect(other);
        cr_assert_eq(used_by(c), 1 << 20, "its next call reclaims it: %s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "reclaimed connection"), "%s", sysd_log(&s));
        alloc_disconnect(c);
}

Test(reconnect, a_wait_cut_by_a_restart_with_state_is_granted_by_the_next_allocd, .fini = end_sysd, .timeout = 60) {
        struct alloc_region big;
        pthread_t t;

        sysd_start(&s, CONF);
        struct alloc_client *a = daemon_connect(&s.d);
        struct waiting w = {.c = daemon_connect(&s.d)};
        cr_assert_eq(alloc_region_new(a, "host", 3 << 20, NULL, &big), 0, "%s", alloc_last_error());
        pthread_create(&t, NULL, alloc_waiting, &w);
        cr_assert_eq(wait_waiters(a, "host", 1), 1);
        sysd_restart(&s, SIGTERM);
        /* a reclaims its region and frees it: the wait, sent again, fits. */
        cr_assert_eq(wait_waiters(a, "host", 1), 1);
        cr_assert_eq(alloc_region_free_sync(a, big.id), 0, "%s", alloc_last_error());
        pthread_join(t, NULL);
        cr_assert_eq(w.r, 0, "%s", w.err);
        cr_assert_eq(used_by(a), 2 << 20);
        alloc_disconnect(w.c);
        alloc_disconnect(a);
}

/* ---- threads that allocate and free on one connection while allocd restarts with its state ---- */

struct churn {
        struct alloc_client *c;
        volatile bool *stop;
        int id;
        uint64_t held[16];
        int n, bad;
        char err[512];
};

static void *churn_loop(void *arg) {
        struct churn *w = arg;
        unsigned seed = (unsigned)w->id * 7919u;

        while (!*w->stop) {
                int op = rand_r(&seed) % 6, r = 0;
                struct alloc_region reg;
                struct alloc_status *st = NULL;
                if ((op <= 1 && w->n < 16) || w->n == 0) {
                        struct alloc_opts o = {.flags = ALLOC_NOWAIT};
                        r = alloc_region_new(w->c, "host", 4096, &o, &reg);
                        if (r == 0)
                                w->held[w->n++] = reg.id;
                } else if (op == 2) {
                        r = alloc_region_free(w->c, w->held[--w->n]);
                } else if (op == 3) {
                        r = alloc_region_free_sync(w->c, w->held[--w->n]);
                } else if (op == 4) {
                        r = alloc_status(w->c, &st);
                        alloc_status_free(st);
                } else {
                        r = alloc_region_sync(w->c);
                }
                if (r < 0 && r != -EAGAIN) {
                        w->bad++;
                        snprintf(w->err, sizeof(w->err), "op %d: %s", op, alloc_last_error());
                }
        }
        return NULL;
}

/*
 * Each thread's regions stay its own through restarts: a grant read before another thread made the
 * connection again, or a region taken out of the held table as the squaring ran, was a reference
 * the squaring gave back (later -ENOENT for the region the caller held), or one it missed.
 */
Test(reconnect, threads_that_alloc_and_free_through_restarts_lose_no_reference, .fini = end_sysd, .timeout = 120) {
        volatile bool stop = false;
        struct churn w[4];
        pthread_t t[4];

        sysd_start(&s, CONF);
        struct alloc_client *c = daemon_connect(&s.d);
        alloc_set_timeout(c, 2000);
        for (int i = 0; i < 4; i++) {
                w[i] = (struct churn){.c = c, .stop = &stop, .id = i + 1};
                pthread_create(&t[i], NULL, churn_loop, &w[i]);
        }
        for (int k = 0; k < 10; k++) {
                usleep(50000);
                sysd_restart(&s, k % 2 ? SIGKILL : SIGTERM);
        }
        usleep(200000);
        stop = true;
        int total = 0;
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                total += w[i].n;
        }
        for (int i = 0; i < 4; i++)
                cr_expect_eq(w[i].bad, 0, "thread %d: %s", i, w[i].err);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(used_by(c), (uint64_t)total * 4096);
        for (int i = 0; i < 4; i++)
                for (int k = 0; k < w[i].n; k++)
                        cr_assert_eq(alloc_region_free_sync(c, w[i].held[k]), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        cr_assert_eq(used_by(c), 0);
        alloc_disconnect(c);
}
