/* SPDX-License-Identifier: MIT */
/*
 * A pool whose section a reload takes out drains (docs/configuration.md, "Reloading"): it takes no
 * new region, and the Allocs waiting for room in it are answered so; the regions held live on, with
 * their bytes, and its names reserve nothing; it goes with its last region, from systemd's fd store too (played by
 * sysd.c), or at once when it holds none, with a store or without.  Put back as it was, it serves again; put back
 * changed, the new pool waits for the old one to empty.  A restart meanwhile keeps it draining.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "restart-checks.h"

TestSuite(reload_drain, .fini = teardown, .timeout = 120);

#define POOL_A "[pool a]\nkind = host\nsize = 4M\n"
#define POOL_B "[pool b]\nkind = host\nsize = 4M\n"
#define DRAIN_WHY "taken out of the configuration at a reload"

/* How many times text is in the file at path (all of it, not slurp's 16 KiB). */
static int occurrences(const char *path, const char *text) {
        FILE *f = fopen(path, "r");
        char *b = NULL;
        size_t n = 0;
        int count = 0;

        if (f && getdelim(&b, &n, '\0', f) >= 0)
                for (const char *at = b; (at = strstr(at, text)); at++)
                        count++;
        if (f)
                fclose(f);
        free(b);
        return count;
}

/* conf becomes the file, then a SIGHUP to pid; returns once allocd, logging to log, said it read it. */
static void reload_as(pid_t pid, const char *conf_path, const char *log, const char *conf) {
        int before = occurrences(log, "SIGHUP: reloaded ");

        write_file(conf_path, conf);
        kill(pid, SIGHUP);
        for (int i = 0; i < 1000 && occurrences(log, "SIGHUP: reloaded ") == before; i++)
                usleep(10000);
        cr_assert_gt(occurrences(log, "SIGHUP: reloaded "), before, "no reload: %s", slurp(log));
}

static void reload(const char *conf) {
        reload_as(s.d.pid, s.d.conf, s.log, conf);
}

/* Pool name's status (a copy of its draining reason in why, "" when not draining); false: not listed. */
static bool listed(struct alloc_client *k, const char *name, char *why, size_t size, uint64_t *regions) {
        struct alloc_status *st;
        bool found = false;

        cr_assert_eq(alloc_status(k, &st), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < st->npools; i++) {
                if (strcmp(st->pools[i].name, name))
                        continue;
                found = true;
                snprintf(why, size, "%s", st->pools[i].draining);
                if (regions)
                        *regions = st->pools[i].regions;
        }
        alloc_status_free(st);
        return found;
}

/* Whether pool name is still listed after up to 5 s: a drained pool goes at the end of the turn that emptied it. */
static bool still_listed(struct alloc_client *k, const char *name) {
        char why[256];

        for (int i = 0; i < 500; i++, usleep(10000))
                if (!listed(k, name, why, sizeof(why), NULL))
                        return false;
        return true;
}

/* `allocctl status`, in a static buffer. */
static const char *allocctl_status(void) {
        static char out[8192];
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "%s --socket %s status", ALLOCCTL_PATH, s.d.sock);
        FILE *f = popen(cmd, "r");
        cr_assert(f);
        size_t n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        cr_assert_eq(pclose(f), 0, "%s", out);
        return out;
}

/* An Alloc in pool name is refused, saying it drains and why. */
static void refuses(struct alloc_client *k, const char *name, const char *why) {
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(k, name, 4096, NULL, &r), -ENODEV, "pool %s took a new region", name);
        cr_assert(strstr(alloc_last_error(), "takes no new regions") && strstr(alloc_last_error(), why), "%s",
                  alloc_last_error());
}

/* A region in b held (PERSIST, named "kept", seed 7), b taken out: it drains, and what b held is as it was. */
Test(reload_drain, a_removed_pool_drains_and_goes_with_its_last_region) {
        char why[256];
        uint64_t regions = 0;
        struct alloc_region r, other;

        sysd_start(&s, POOL_A POOL_B "names = res/*\n");
        cr_assert_eq(stored("pool.host.4194304.b", 1), 1);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "b", 8192, &(struct alloc_opts){.name = "kept", .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        pattern(r.ptr, r.size, 7);
        cr_assert_eq(alloc_region_new(k, "a", 4096, &(struct alloc_opts){.name = "res/1"}, &other), -EACCES,
                     "b reserves res/*");
        reload(POOL_A);
        /* What the file no longer reserves is free. */
        cr_assert_eq(alloc_region_new(k, "a", 4096, &(struct alloc_opts){.name = "res/1"}, &other), 0, "%s",
                     alloc_last_error());
        cr_assert(strstr(sysd_log(&s), "1 pool draining (b)"), "%s", sysd_log(&s));
        refuses(k, "b", DRAIN_WHY);
        cr_assert(listed(k, "b", why, sizeof(why), &regions));
        cr_assert(strstr(why, DRAIN_WHY), "draining: '%s'", why);
        cr_assert_eq(regions, 1);
        const char *out = allocctl_status();
        cr_assert(strstr(out, "b: draining, takes no new regions: " DRAIN_WHY), "%s", out);
        cr_assert_not(strstr(out, "b: reserves the names"), "a draining pool reserves nothing: %s", out);
        /* Its regions live on: read, and attached by another connection. */
        cr_assert(pattern_ok(r.ptr, r.size, 7));
        struct alloc_client *k2 = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k2, "kept", NULL, &other), 0, "%s", alloc_last_error());
        cr_assert(pattern_ok(other.ptr, other.size, 7));
        cr_assert_eq(alloc_region_new(k, "a", 4096, NULL, &(struct alloc_region){0}), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_detach(k2, other.id), 0, "%s", alloc_last_error());
        alloc_disconnect(k2);
        cr_assert(listed(k, "b", why, sizeof(why), NULL), "b went while it held a region");
        cr_assert_eq(stored("pool.host.4194304.b", 1), 1);
        /* The last region goes: so does the pool, from the store too. */
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        cr_assert_not(still_listed(k, "b"), "the drained pool is still listed: %s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "pool b: its last region went; the draining pool is dropped"), "%s",
                  sysd_log(&s));
        cr_assert_eq(stored("pool.host.4194304.b", 0), 0, "still in the store");
        cr_assert_eq(alloc_region_new(k, "b", 4096, NULL, &r), -ENODEV);
        cr_assert(strstr(alloc_last_error(), "no pool named 'b'"), "%s", alloc_last_error());
        alloc_disconnect(k);
}

/* Without a store too: an empty pool goes at once, one with a region at its hang-up; STATUS= says so. */
Test(reload_drain, without_a_store_empty_pools_go_at_once_and_the_rest_with_their_last_region) {
        struct daemon d;
        char log[128], why[256];
        struct alloc_region r;

        snprintf(log, sizeof(log), "/tmp/allocd-drain-%d.log", (int)getpid());
        cr_assert_eq(daemon_spawn(&d, POOL_A POOL_B "[pool c]\nkind = host\nsize = 1M\n", NULL, log), -1, "%s",
                     slurp(log));
        struct alloc_client *k = daemon_connect(&d), *holder = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(holder, "b", 4096, NULL, &r), 0, "%s", alloc_last_error());
        reload_as(d.pid, d.conf, log, POOL_A);
        cr_assert(strstr(slurp(log), "1 pool draining (b), 1 pool removed (c)"), "%s", slurp(log));
        cr_assert(strstr(slurp(log), "pool c: it holds no region; the draining pool is dropped"), "%s", slurp(log));
        cr_assert(daemon_notified(&d, "1 pool draining (b), 1 pool removed (c)", 5000), "STATUS= says what drains");
        cr_assert_not(listed(k, "c", why, sizeof(why), NULL), "the empty pool is still listed");
        cr_assert(listed(k, "b", why, sizeof(why), NULL) && strstr(why, DRAIN_WHY), "%s", why);
        alloc_disconnect(holder); /* its hang-up takes b's last region */
        cr_assert_not(still_listed(k, "b"), "the drained pool is still listed: %s", slurp(log));
        cr_assert(strstr(slurp(log), "pool b: its last region went; the draining pool is dropped"), "%s", slurp(log));
        alloc_disconnect(k);
        daemon_stop(&d);
        unlink(log);
}

/* Put back as it was (its access rules may change), the pool serves again; put back changed, it drains on. */
Test(reload_drain, a_pool_put_back_serves_again) {
        char why[256];
        struct alloc_region r, more;

        sysd_start(&s, POOL_A POOL_B);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "b", 8192, NULL, &r), 0, "%s", alloc_last_error());
        pattern(r.ptr, r.size, 3);
        reload(POOL_A);
        refuses(k, "b", DRAIN_WHY);
        reload(POOL_A "[pool b]\nkind = host\nsize = 8M\n");
        cr_assert(strstr(sysd_log(&s), "SIGHUP: pool b is configured again, with another size"), "%s", sysd_log(&s));
        refuses(k, "b", "configured again at a reload with another size");
        reload(POOL_A POOL_B "quota_per_uid = 16K\n");
        cr_assert(strstr(sysd_log(&s), "1 pool serving again (b)"), "%s", sysd_log(&s));
        cr_assert(listed(k, "b", why, sizeof(why), NULL));
        cr_assert_str_eq(why, "", "still draining");
        cr_assert_eq(alloc_region_new(k, "b", 4096, NULL, &more), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(k, "b", 8192, NULL, &more), -EDQUOT, "the section's new quota applies");
        cr_assert(pattern_ok(r.ptr, r.size, 3));
        cr_assert_eq(pool_used(k, "b"), 12288);
        cr_assert_eq(stored("pool.host.4194304.b", 1), 1);
        /* Taken out again and put back changed: the new pool is made once the old one's regions went. */
        reload(POOL_A);
        reload(POOL_A "[pool b]\nkind = host\nsize = 8M\n");
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(k, more.id), 0, "%s", alloc_last_error());
        uint64_t size = 0;
        for (int i = 0; i < 500 && size != 8u << 20; i++, usleep(10000)) {
                struct alloc_status *st;
                cr_assert_eq(alloc_status(k, &st), 0);
                for (size_t j = 0; j < st->npools; j++)
                        if (!strcmp(st->pools[j].name, "b"))
                                size = st->pools[j].size;
                alloc_status_free(st);
        }
        cr_assert_eq(size, 8u << 20, "the pool the file describes was not made: %s", sysd_log(&s));
        cr_assert_eq(alloc_region_new(k, "b", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(stored("pool.host.8388608.b", 1), 1);
        cr_assert_eq(stored("pool.host.4194304.b", 0), 0);
        alloc_disconnect(k);
}

/* A restart while a pool a reload drained holds a region: it comes back draining, with the region and its bytes. */
Test(reload_drain, a_restart_keeps_it_draining) {
        char why[256];
        uint64_t regions = 0;
        struct alloc_region r;

        sysd_start(&s, POOL_A POOL_B);
        keep_one("b", "kept", 11);
        reload(POOL_A);
        sysd_restart(&s, SIGTERM);
        all_restored();
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert(listed(k, "b", why, sizeof(why), &regions), "%s", sysd_log(&s));
        cr_assert(*why && regions == 1, "draining '%s', %llu regions", why, (unsigned long long)regions);
        refuses(k, "b", "no longer configured");
        /* Its regions are as writable as before: the pool only takes no new one. */
        cr_assert(strstr(sysd_log(&s), "1 draining (kept from before the restart, taking no new regions)"), "%s",
                  sysd_log(&s));
        there("kept", 11);
        cr_assert_eq(alloc_region_attach(k, "kept", NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        cr_assert_not(still_listed(k, "b"), "%s", sysd_log(&s));
        cr_assert_eq(stored("pool.host.4194304.b", 0), 0);
        alloc_disconnect(k);
}

struct waiter {
        pthread_t thread;
        uint32_t flags;
        int result;
        char error[512];
        atomic_bool done;
};

static void *wait_thread(void *arg) {
        struct waiter *w = arg;
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;

        w->result = alloc_region_new(k, "b", 4096, &(struct alloc_opts){.flags = w->flags, .timeout_ms = 60000}, &r);
        snprintf(w->error, sizeof(w->error), "%s", alloc_last_error());
        atomic_store(&w->done, true);
        alloc_disconnect(k);
        return NULL;
}

/* Allocs waiting for room in a pool that starts draining are answered at once, not at their timeout. */
Test(reload_drain, its_waiters_are_answered) {
        struct waiter w[2] = {{.flags = 0}, {.flags = ALLOC_NOFAIL}};
        struct alloc_region full;

        sysd_start(&s, POOL_A "[pool b]\nkind = host\nsize = 64K\n");
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "b", 64 << 10, NULL, &full), 0, "%s", alloc_last_error());
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(pthread_create(&w[i].thread, NULL, wait_thread, &w[i]), 0);
                cr_assert_eq(wait_waiters(k, "b", (unsigned)i + 1), (unsigned)i + 1, "the request did not queue");
        }
        reload(POOL_A);
        for (int i = 0; i < 500 && !(atomic_load(&w[0].done) && atomic_load(&w[1].done)); i++)
                usleep(10000);
        for (int i = 0; i < 2; i++) {
                cr_assert(atomic_load(&w[i].done), "waiter %d still waits", i);
                pthread_join(w[i].thread, NULL);
                cr_assert_eq(w[i].result, -ENODEV, "waiter %d: %d %s", i, w[i].result, w[i].error);
                cr_assert(strstr(w[i].error, "takes no new regions: " DRAIN_WHY), "%s", w[i].error);
        }
        alloc_disconnect(k);
}

/* Put back changed, then taken out again: no pool waits for it now, and its reason and the reload say so. */
Test(reload_drain, taken_out_again_after_a_changed_put_back) {
        char why[256];
        struct alloc_region r;

        sysd_start(&s, POOL_A POOL_B);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "b", 8192, NULL, &r), 0, "%s", alloc_last_error());
        reload(POOL_A);
        reload(POOL_A "[pool b]\nkind = host\nsize = 8M\n");
        refuses(k, "b", "configured again at a reload with another size");
        cr_assert(strstr(sysd_log(&s), "reloaded ") && occurrences(s.log, "1 pool waiting for a draining namesake (b)"),
                  "the reload says 'no changes': %s", sysd_log(&s));
        int before = occurrences(s.log, "1 pool draining (b)");
        reload(POOL_A);
        cr_assert_gt(occurrences(s.log, "1 pool draining (b)"), before, "the reload says nothing of b: %s",
                     sysd_log(&s));
        refuses(k, "b", DRAIN_WHY);
        cr_assert(listed(k, "b", why, sizeof(why), NULL));
        cr_assert_str_eq(why, DRAIN_WHY "; it goes with its last region");
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        cr_assert_not(still_listed(k, "b"), "%s", sysd_log(&s));
        alloc_disconnect(k);
}

/*
 * A pool that went and was made anew under its name is other memory: a connection that had mapped
 * the old one must be sent the new one's fd, or it reads and writes the old memory, which the
 * region's other holders do not see.
 */
Test(reload_drain, a_pool_made_anew_is_mapped_anew) {
        char why[256];
        struct alloc_region r, mine, theirs;

        sysd_start(&s, POOL_A POOL_B);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "b", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(k), 0, "%s", alloc_last_error());
        reload(POOL_A); /* b holds nothing: it goes at once */
        cr_assert_not(still_listed(k, "b"), "%s", sysd_log(&s));
        reload(POOL_A POOL_B);
        for (int i = 0; i < 500 && !listed(k, "b", why, sizeof(why), NULL); i++)
                usleep(10000);
        cr_assert_eq(alloc_region_new(k, "b", 8192, &(struct alloc_opts){.name = "anew"}, &mine), 0, "%s",
                     alloc_last_error());
        pattern(mine.ptr, mine.size, 5);
        struct alloc_client *k2 = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k2, "anew", NULL, &theirs), 0, "%s", alloc_last_error());
        cr_assert(pattern_ok(theirs.ptr, theirs.size, 5), "another connection does not see what was written");
        pattern(theirs.ptr, theirs.size, 6);
        cr_assert(pattern_ok(mine.ptr, mine.size, 6), "the writer does not see what another connection wrote");
        alloc_disconnect(k2);
        alloc_disconnect(k);
}

/*
 * A section put back changed keeps its names = while the pool it describes waits for the draining
 * one to empty: nobody publishes them elsewhere meanwhile.  Taken out again, they are free.
 */
Test(reload_drain, a_changed_put_back_holds_its_names) {
        struct alloc_region r, other;

        sysd_start(&s, POOL_A POOL_B "names = res/*\n");
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "b", 8192, NULL, &r), 0, "%s", alloc_last_error());
        reload(POOL_A);
        reload(POOL_A "[pool b]\nkind = host\nsize = 8M\nnames = res/*\n");
        refuses(k, "b", "configured again at a reload with another size");
        cr_assert_eq(alloc_region_new(k, "a", 4096, &(struct alloc_opts){.name = "res/1"}, &other), -EACCES,
                     "a name the waiting section reserves was published in another pool");
        cr_assert(strstr(alloc_last_error(), "reserved for pool b, which is made anew"), "%s", alloc_last_error());
        cr_assert(strstr(allocctl_status(), "b: reserves the names res/*"), "%s", allocctl_status());
        reload(POOL_A);
        cr_assert_eq(alloc_region_new(k, "a", 4096, &(struct alloc_opts){.name = "res/1"}, &other), 0, "%s",
                     alloc_last_error());
        cr_assert_not(strstr(allocctl_status(), "reserves the names"), "%s", allocctl_status());
        alloc_disconnect(k);
}

/* The kind pool name is listed as unavailable with (-1: not listed so). */
static int unavailable_kind(struct alloc_client *k, const char *name) {
        struct alloc_status *st;
        int kind = -1;

        cr_assert_eq(alloc_status(k, &st), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < st->nunavailable; i++)
                if (!strcmp(st->unavailable[i].name, name))
                        kind = (int)st->unavailable[i].kind;
        alloc_status_free(st);
        return kind;
}

/*
 * Put back as a pool that cannot be made here (a gpu pool, without a GPU): once the draining one
 * goes, the placeholder left in its place is the new section's, its kind and its names, not the
 * drained pool's.  (No GPU, as test-daemon-pinned assumes.)
 */
Test(reload_drain, a_put_back_that_cannot_be_made_is_the_new_section) {
        struct alloc_region r, other;
        int kind = -1;

        sysd_start(&s, POOL_A POOL_B);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "b", 8192, NULL, &r), 0, "%s", alloc_last_error());
        reload(POOL_A);
        reload(POOL_A "[pool b]\nkind = gpu\ndevice = 0\nsize = 4M\nnames = res/*\n");
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        for (int i = 0; i < 500 && (kind = unavailable_kind(k, "b")) < 0; i++)
                usleep(10000);
        cr_assert_eq(kind, ALLOC_KIND_GPU, "b is listed as kind %d, not gpu: %s", kind, allocctl_status());
        cr_assert_eq(alloc_region_new(k, "a", 4096, &(struct alloc_opts){.name = "res/1"}, &other), -EACCES,
                     "a name the new section reserves was published in another pool");
        cr_assert(strstr(alloc_last_error(), "reserved for pool b"), "%s", alloc_last_error());
        alloc_disconnect(k);
}
