/* SPDX-License-Identifier: MIT */
/*
 * What systemd's fd store holds across allocd's restarts and reloads (issue 18), systemd played by
 * sysd.c as in test-daemon-restart.c: a pool taken out of the configuration is kept read-only until
 * its regions go, a resized one waits for the old one, a reload's pools are stored, isolation =
 * region memfds come and go with their regions up to the store's size, what nobody claims is
 * removed, a state that cannot be kept leaves the store; without a store, a stop says what it loses.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "restart-checks.h"

TestSuite(restart, .fini = teardown, .timeout = 120);

/*
 * A PERSIST region named name in pool, with a pattern (seed 9), and no client; then a restart (SIGTERM)
 * with conf as the configuration.  Returns a new connection.
 */
static struct alloc_client *persist_then_restart(const char *pool, const char *name, const char *conf) {
        struct alloc_region r;
        struct alloc_client *k = daemon_connect(&s.d);

        cr_assert_eq(alloc_region_new(k, pool, 8192, &(struct alloc_opts){.name = name, .flags = ALLOC_PERSIST}, &r), 0,
                     "%s", alloc_last_error());
        pattern(r.ptr, r.size, 9);
        alloc_disconnect(k);
        sysd_kill(&s, SIGTERM);
        write_file(s.d.conf, conf);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        return daemon_connect(&s.d);
}

/* The size of the pool named name as status lists it once it is want, or after 5 s; 0: not listed. */
static uint64_t listed_size(struct alloc_client *k, const char *name, uint64_t want) {
        struct alloc_status *st;
        uint64_t size = UINT64_MAX;

        for (int i = 0; i < 500 && size != want; i++) {
                usleep(i ? 10000 : 0); /* a drained pool goes at the end of the loop turn that freed its last region */
                cr_assert_eq(alloc_status(k, &st), 0);
                size = 0;
                for (size_t j = 0; j < st->npools; j++)
                        if (!strcmp(st->pools[j].name, name))
                                size = st->pools[j].size;
                alloc_status_free(st);
        }
        return size;
}

Test(restart, removed_pool_drains) {
        struct alloc_region r;
        struct alloc_status *st;

        sysd_start(&s, CONF);
        struct alloc_client *k = persist_then_restart("other", "kept", "[pool host]\nkind = host\nsize = 64M\n");
        /* Not counted as "not available": it serves its regions' holders. */
        cr_assert(strstr(sysd_log(&s), "ready: 1 pool, 0 not available, 1 draining"), "%s", sysd_log(&s));
        cr_assert_eq(alloc_status(k, &st), 0);
        const struct alloc_pool_status *p = pool_status(st, "other");
        cr_assert(strstr(p->draining, "no longer configured"), "draining: '%s'", p->draining);
        cr_assert_eq(p->regions, 1);
        alloc_status_free(st);
        cr_assert_lt(alloc_region_new(k, "other", 4096, NULL, &(struct alloc_region){0}), 0);
        cr_assert(strstr(alloc_last_error(), "takes no new regions"), "%s", alloc_last_error());
        cr_assert_eq(alloc_region_attach(k, "kept", NULL, &r), 0, "%s", alloc_last_error());
        cr_assert(pattern_ok(r.ptr, r.size, 9));
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        /* Its last region gone, the pool goes, from the store too. */
        cr_assert_eq(listed_size(k, "other", 0), 0, "the drained pool is still listed");
        cr_assert_eq(stored("pool.host.16777216.other", 0), 0);
        alloc_disconnect(k);
}

/* Taken out holding no region: it goes at once, and the ready line counts it neither serving nor "not available". */
Test(restart, an_empty_removed_pool_is_not_counted_not_available) {
        sysd_start(&s, CONF);
        struct alloc_client *k = persist_then_restart("host", "kept", "[pool host]\nkind = host\nsize = 64M\n");
        cr_assert_eq(listed_size(k, "other", 0), 0, "the empty pool is still listed");
        cr_assert_eq(stored("pool.host.16777216.other", 0), 0);
        cr_assert(strstr(sysd_log(&s), "ready: 1 pool, 0 not available\n"), "%s", sysd_log(&s));
        alloc_disconnect(k);
}

Test(restart, without_a_store_a_stop_says_what_it_loses) {
        struct daemon d;
        char log[128];
        struct alloc_region r;

        snprintf(log, sizeof(log), "/tmp/allocd-restart-%d.log", (int)getpid());
        cr_assert_eq(daemon_spawn(&d, CONF, NULL, log), -1);
        struct alloc_client *k = daemon_connect(&d);
        cr_assert_eq(alloc_region_new(k, "host", 4096, NULL, &r), 0);
        daemon_stop(&d);
        alloc_disconnect(k);
        cr_assert(strstr(slurp(log), "1 region held by 1 client: they are lost"), "%s", slurp(log));
        unlink(log);
}

/*
 * isolation = region: each region's own memfd is stored as region-ID, restored with the state, removed when freed;
 * restored, they count against their uid's max_region_fds_per_uid again.
 */
Test(restart, region_pools_keep_their_memfds) {
        struct alloc_region r[4], x;
        char name[32];

        sysd_start(&s,
                   "[daemon]\nmax_region_fds_per_uid = 4\n[pool iso]\nkind = host\nsize = 16M\nisolation = region\n");
        struct alloc_client *k = daemon_connect(&s.d);
        for (int i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "iso/%d", i);
                cr_assert_eq(alloc_region_new(k, "iso", 8192u << i, &(struct alloc_opts){.name = name}, &r[i]), 0, "%s",
                             alloc_last_error());
                pattern(r[i].ptr, r[i].size, 50u + (unsigned)i);
        }
        cr_assert_eq(alloc_region_free(k, r[3].id), 0);
        pool_used(k, "iso");
        char *before = dump(NULL);
        cr_assert_eq(stored("region-", 3), 3, "a freed region's memfd is still stored");
        sysd_restart(&s, SIGKILL);
        char *after = dump(NULL);
        cr_assert_str_eq(after, before);
        struct alloc_client *n = daemon_connect(&s.d);
        for (int i = 0; i < 3; i++) {
                struct alloc_region a;
                snprintf(name, sizeof(name), "iso/%d", i);
                cr_assert_eq(alloc_region_attach(n, name, NULL, &a), 0, "%s: %s", name, alloc_last_error());
                cr_assert(pattern_ok(a.ptr, a.size, 50u + (unsigned)i), "%s: bytes changed", name);
        }
        cr_assert_eq(stored("region-", 3), 3);
        cr_assert_eq(alloc_region_new(n, "iso", 4096, NULL, &x), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(n, "iso", 4096, NULL, &r[3]), -EMFILE, "the restored three and one more");
        cr_assert(strstr(alloc_last_error(), "max_region_fds_per_uid"), "%s", alloc_last_error());
        alloc_disconnect(n);
        pool_used(k, "iso"); /* k reconnects and reclaims its regions, which its hang-up then releases */
        alloc_disconnect(k);
        cr_assert_eq(wait_used(k = daemon_connect(&s.d), "iso", 0), 0);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc_region_new(k, "iso", 4096, NULL, &r[i]), 0, "none is counted once gone: %s",
                             alloc_last_error());
        alloc_disconnect(k);
        free(before);
        free(after);
}

/* A pool a reload adds is stored too. */
Test(restart, reloaded_pools_are_stored) {
        sysd_start(&s, "[pool host]\nkind = host\nsize = 4M\n");
        write_file(s.d.conf, "[pool host]\nkind = host\nsize = 4M\n[pool extra]\nkind = host\nsize = 8M\n");
        kill(s.d.pid, SIGHUP);
        cr_assert_eq(stored("pool.host.8388608.extra", 1), 1, "%s", sysd_log(&s));
}

/* A region in a pool a reload added comes through a restart (by kill: the snapshot from before the reload and its log).
 */
Test(restart, a_reloaded_pools_regions_survive) {
        const char *two = "[pool host]\nkind = host\nsize = 4M\n[pool extra]\nkind = host\nsize = 8M\n";
        struct alloc_region r;

        sysd_start(&s, "[pool host]\nkind = host\nsize = 4M\n");
        write_file(s.d.conf, two);
        kill(s.d.pid, SIGHUP);
        cr_assert_eq(stored("pool.host.8388608.extra", 1), 1, "%s", sysd_log(&s));
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "extra", 8192, &(struct alloc_opts){.name = "x", .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        pattern(r.ptr, r.size, 5);
        alloc_disconnect(k);
        sysd_kill(&s, SIGKILL);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "x", NULL, &r), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        cr_assert(pattern_ok(r.ptr, r.size, 5));
        alloc_disconnect(k);
}

/*
 * Pool p of 4M with a PERSIST region "old", restarted as conf says: p drains, of 4M still, and "old" is
 * attached in *r with what was written to it.  A new connection.
 */
static struct alloc_client *drains_after_restart(const char *conf, struct alloc_region *r) {
        struct alloc_status *st;

        sysd_start(&s, "[pool p]\nkind = host\nsize = 4M\n");
        struct alloc_client *k = persist_then_restart("p", "old", conf);
        cr_assert_eq(alloc_status(k, &st), 0);
        const char *why = pool_status(st, "p")->draining;
        cr_assert(why && strstr(why, "another kind, size, quantum or hugepages"), "%s: %s", why, sysd_log(&s));
        cr_assert_eq(pool_status(st, "p")->size, 4u << 20);
        alloc_status_free(st);
        cr_assert_eq(alloc_region_attach(k, "old", NULL, r), 0, "%s", alloc_last_error());
        cr_assert(pattern_ok(r->ptr, r->size, 9));
        return k;
}

/* A pool resized across a restart: the old one drains its regions, then the new one is made. */
Test(restart, resized_pool_waits_for_the_old_one) {
        struct alloc_region r;
        struct alloc_client *k = drains_after_restart("[pool p]\nkind = host\nsize = 8M\n", &r);

        cr_assert(strstr(sysd_log(&s), ", 0 not available, 1 draining (kept from before the restart, taking no new "
                                       "regions), 1 pool waiting for a draining namesake (p)\n"),
                  "%s", sysd_log(&s));
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        uint64_t size = listed_size(k, "p", 8u << 20);
        cr_assert_eq(size, 8u << 20, "the configured pool was not made once the old one drained: %s", sysd_log(&s));
        cr_assert_eq(alloc_region_new(k, "p", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(stored("pool.host.8388608.p", 1), 1);
        cr_assert_eq(stored("pool.host.4194304.p", 0), 0);
        alloc_disconnect(k);
}

/*
 * The pool made once its draining namesake empties is made as a reload's new pool is, on the thread pool:
 * a Status sent as soon as the Free that emptied the old one is answered is served while the new one (1 GiB,
 * about a second here) is still being made, which it does not list yet, and an Alloc in it is told there
 * is no such pool, as during a reload; a SIGHUP meanwhile is read once it is made.  Then it is listed, stored and
 * takes regions.
 */
Test(restart, a_waiting_pool_is_made_off_the_loop) {
        struct alloc_region r;
        struct alloc_client *k = drains_after_restart("[pool p]\nkind = host\nsize = 1G\n", &r);

        cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error());
        /* The first Status answers (0: not listed); the old code answered it once the pool was made. */
        cr_assert_eq(listed_size(k, "p", 0), 0, "Status waited for the pool being made: %s", sysd_log(&s));
        cr_assert_lt(alloc_region_new(k, "p", 4096, NULL, &r), 0);
        cr_assert(strstr(alloc_last_error(), "no pool named 'p'"), "%s", alloc_last_error());
        kill(s.d.pid, SIGHUP); /* read once the pool is made, not as if p were to be made again */
        cr_assert_eq(listed_size(k, "p", 1u << 30), 1u << 30, "%s", sysd_log(&s));
        cr_assert_eq(stored("pool.host.1073741824.p", 1), 1, "%s", sysd_log(&s));
        for (int i = 0; i < 500 && !strstr(sysd_log(&s), "SIGHUP: reloaded"); i++)
                usleep(10000);
        const char *made = strstr(sysd_log(&s), "pool p: made as configured");
        cr_assert(made && strstr(made, "SIGHUP: reloaded"), "%s", sysd_log(&s));
        cr_assert_null(strstr(sysd_log(&s), "cannot add pool p"), "%s", sysd_log(&s));
        cr_assert_eq(alloc_region_new(k, "p", 4096, NULL, &r), 0, "%s", alloc_last_error());
        alloc_disconnect(k);
}

/* Whether uid nobody may attach name (0) or why not (a negative errno). */
static int nobody_attaches(const char *name) {
        pid_t pid = test_fork();
        int status;

        cr_assert_geq(pid, 0);
        if (pid == 0) {
                struct alloc_client *n;
                struct alloc_region r;
                int e = setgid(65534) < 0 || setuid(65534) < 0 || !die_with_test()
                                ? -EPERM
                                : alloc_connect(&n, s.d.sock, "nobody");
                if (e == 0)
                        e = alloc_region_attach(n, name, NULL, &r);
                _exit(-e);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? -WEXITSTATUS(status) : -EINTR;
}

/*
 * A draining pool's regions are root's to attach (its access rules went with its section): a reload
 * that opens the section to all is the waiting pool's, not the draining one's, and no change that
 * waits for a restart.
 */
Test(restart, a_reload_leaves_a_draining_pools_access_alone) {
        struct alloc_region r;
        struct alloc_client *k = drains_after_restart("[pool p]\nkind = host\nsize = 8M\n", &r);

        if (geteuid() != 0) {
                alloc_disconnect(k);
                cr_skip_test("needs root, to attach as nobody");
        }
        cr_assert_eq(nobody_attaches("old"), -EACCES);
        write_file(s.d.conf, "[pool p]\nkind = host\nsize = 8M\nmode = 0666\n");
        kill(s.d.pid, SIGHUP);
        for (int i = 0; i < 500 && !strstr(sysd_log(&s), "SIGHUP: reloaded"); i++)
                usleep(10000);
        cr_assert_eq(nobody_attaches("old"), -EACCES, "%s", sysd_log(&s));
        cr_assert_null(strstr(sysd_log(&s), "change only on restart"), "%s", sysd_log(&s));
        alloc_disconnect(k);
}

/* What nobody claims is removed from the store and said: an fd of no known kind, a pool with no region, a region. */
Test(restart, unclaimed_fds_are_removed) {
        sysd_start(&s, "[pool host]\nkind = host\nsize = 4M\n");
        sysd_kill(&s, SIGTERM);
        sysd_put(&s, "junk", memfd_create("junk", MFD_CLOEXEC));
        sysd_put(&s, "region-77", memfd_create("stale", MFD_CLOEXEC));
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        const char *log = sysd_log(&s);
        cr_assert(strstr(log, "the fd store held junk, which nothing restored uses; removed from the store"), "%s",
                  log);
        cr_assert(strstr(log, "held 1 region memfds that no restored region claims"), "%s", log);
        cr_assert_eq(stored("junk", 0), 0);
        cr_assert_eq(stored("region-", 0), 0);
        cr_assert_eq(stored("pool.host.4194304.host", 1), 1);
}

/*
 * A pool whose memory is not in the store (never stored, or dropped): its regions cannot be restored in fresh memory,
 * and are lost; the other pools' are restored.
 */
Test(restart, a_pool_missing_from_the_store_is_not_restored_into_fresh_memory) {
        struct alloc_region r;

        sysd_start(&s, CONF);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "other", 8192, &(struct alloc_opts){.name = "p", .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        pattern(r.ptr, r.size, 3);
        alloc_disconnect(k);
        keep_one("host", "h", 4);
        sysd_kill(&s, SIGTERM);
        sysd_drop(&s, "pool.host.16777216.other");
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        const char *log = sysd_log(&s);
        cr_assert(strstr(log, "pool other: 1 region (its memory is not in the fd store"), "%s", log);
        all_restored();
        k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "p", NULL, &r), -ENOENT, "restored into fresh memory");
        alloc_disconnect(k);
        there("h", 4);
}

/*
 * isolation = region: a region's memfd missing from the store (systemd dropped it) costs its pool's
 * regions, and only theirs: the other pools' are restored with their bytes and names, and the lost
 * pool's other memfds leave the store.  Its next regions are kept across a restart again.
 */
Test(restart, a_region_memfd_missing_from_the_store_loses_only_its_pool) {
        char name[64];

        sysd_start(&s, CONF);
        keep_one("host", "h", 4);
        keep_one("other", "o", 5);
        keep_one("iso", "i1", 6);
        uint64_t gone = keep_one("iso", "i2", 7);
        sysd_kill(&s, SIGTERM);
        snprintf(name, sizeof(name), "region-%llu", (unsigned long long)gone);
        cr_assert_geq(sysd_fd(&s, name), 0, "%s is not stored", name);
        sysd_drop(&s, name);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        const char *log = sysd_log(&s);
        cr_assert(strstr(log, "pool iso: 2 regions (its region memfds are not all in the fd store (1 missing)"), "%s",
                  log);
        cr_assert(strstr(log, "held 1 region memfds that no restored region claims"), "%s", log);
        all_restored();
        there("h", 4);
        there("o", 5);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "i1", NULL, &(struct alloc_region){0}), -ENOENT, "i1 was restored");
        alloc_disconnect(k);
        cr_assert_eq(stored("region-", 0), 0, "a lost region's memfd is still stored");
        keep_one("iso", "i3", 8);
        cr_assert_eq(stored("region-", 1), 1);
        same_after(SIGTERM);
        there("i3", 8);
        there("h", 4);
}

/*
 * isolation = region: the store (FDSTORE=64) keeps two states and at most 62 region memfds (such a
 * pool has no fd of its own); the next Alloc is refused, so that no stored state names a memfd systemd dropped.  A
 * restore that failed (a memfd not the region's: damage, refused whole) counts none of the memfds it had taken.
 */
Test(restart, region_memfds_stop_where_the_store_is_full) {
        static struct alloc_region r[63];
        char name[64];

        sysd_start(&s, "[pool iso]\nkind = host\nsize = 16M\nisolation = region\n");
        struct alloc_client *k = daemon_connect(&s.d);
        for (int i = 0; i < 2; i++)
                cr_assert_eq(alloc_region_new(k, "iso", 4096, &(struct alloc_opts){.flags = ALLOC_PERSIST}, &r[i]), 0,
                             "%s", alloc_last_error());
        alloc_disconnect(k);
        sysd_kill(&s, SIGTERM);
        snprintf(name, sizeof(name), "region-%llu", (unsigned long long)r[1].id);
        cr_assert_geq(sysd_fd(&s, name), 0, "%s is not stored", name);
        sysd_drop(&s, name);
        sysd_put(&s, name, memfd_create("not-the-region", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "its memfd is not of its size"), "%s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "cannot be restored"), "%s", sysd_log(&s));
        k = daemon_connect(&s.d);
        for (int i = 0; i < 62; i++)
                cr_assert_eq(alloc_region_new(k, "iso", 4096, NULL, &r[i]), 0, "region %d: %s", i, alloc_last_error());
        int e = alloc_region_new(k, "iso", 4096, NULL, &r[62]);
        cr_assert_eq(e, -EMFILE, "%d %s", e, alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "the store is full (FileDescriptorStoreMax=)"), "%s", alloc_last_error());
        pool_used(k, "iso");
        cr_assert_eq(stored("region-", 62), 62);
        cr_assert_eq(stored("state.", 1), 1);
        char *before = dump(NULL);
        sysd_restart(&s, SIGKILL);
        char *after = dump(NULL);
        cr_assert_str_eq(after, before);
        cr_assert_eq(s.dropped, 0, "the store dropped %u fds", s.dropped);
        alloc_disconnect(k);
        free(before);
        free(after);
}

/* A state that cannot be kept leaves the store: a stale one would be restored as if current. */
Test(restart, a_state_that_cannot_be_kept_leaves_the_store) {
        struct alloc_region r;

        sysd_start(&s, "[pool host]\nkind = host\nsize = 4M\n");
        struct alloc_client *k = persist_then_restart("host", "p", "[pool host]\nkind = host\nsize = 4M\n");
        alloc_disconnect(k);
        sysd_kill(&s, SIGTERM);
        s.fsize = 32 << 10; /* the restored state is read and appended to; it cannot grow, nor a new one be written */
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        k = daemon_connect(&s.d);
        for (int i = 0; i < 20000 && !strstr(sysd_log(&s), "error: cannot keep the state"); i++) {
                cr_assert_eq(alloc_region_new(k, "host", 4096, NULL, &r), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error());
        }
        alloc_disconnect(k);
        cr_assert(strstr(sysd_log(&s), "error: cannot keep the state for a restart"), "%s", sysd_log(&s));
        cr_assert_eq(stored("state.", 0), 0, "the restored state is still stored");
        sysd_kill(&s, SIGKILL);
        s.fsize = 0;
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "p", NULL, &r), -ENOENT, "a region of the stale state is there");
        alloc_disconnect(k);
}

/* The same when keeping fails while allocd runs: its memfd cannot grow for the log, nor a new one be made. */
Test(restart, a_state_that_stops_being_kept_leaves_the_store) {
        struct alloc_region r;

        sysd_start(&s, "[pool host]\nkind = host\nsize = 64M\n");
        sysd_kill(&s, SIGTERM);
        s.fsize = 1l << 30; /* SIGXFSZ ignored; lowered below */
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        cr_assert_eq(stored("state.", 1), 1);
        cr_assert_eq(prlimit(s.d.pid, RLIMIT_FSIZE, &(struct rlimit){32 << 10, 32 << 10}, NULL), 0);
        struct alloc_client *k = daemon_connect(&s.d);
        for (int i = 0; i < 4000 && !strstr(sysd_log(&s), "cannot keep the state"); i++) {
                cr_assert_eq(alloc_region_new(k, "host", 4096, NULL, &r), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error());
        }
        cr_assert(strstr(sysd_log(&s), "error: cannot keep the state for a restart any longer"), "%s", sysd_log(&s));
        cr_assert_eq(stored("state.", 0), 0, "the stale state is still stored");
        alloc_disconnect(k);
}

/*
 * systemd cannot take the state a compaction made (its notify socket gone a while): the one it held
 * before is behind and must not be restored as if current; once it can, the current one is stored.
 */
Test(restart, a_state_systemd_could_not_take_is_stored_when_it_can) {
        char away[160];
        struct alloc_region r;

        sysd_start(&s, "[pool host]\nkind = host\nsize = 4M\n");
        struct alloc_client *k = persist_then_restart("host", "p", "[pool host]\nkind = host\nsize = 4M\n");
        snprintf(away, sizeof(away), "%s.away", s.d.notify);
        cr_assert_eq(rename(s.d.notify, away), 0);
        for (int i = 0; i < 40000 && !strstr(sysd_log(&s), "cannot store the state"); i++) {
                cr_assert_eq(alloc_region_new(k, "host", 4096, NULL, &r), 0, "%s", alloc_last_error());
                cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error());
        }
        cr_assert(strstr(sysd_log(&s), "error: cannot store the state"), "no compaction: %s", sysd_log(&s));
        cr_assert_eq(alloc_region_attach(k, "p", NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error()); /* in the new memfd only */
        cr_assert_eq(rename(away, s.d.notify), 0);
        cr_assert_eq(alloc_region_new(k, "host", 4096, NULL, &r), 0, "%s", alloc_last_error()); /* a loop turn */
        for (int i = 0; i < 500 && !strstr(sysd_log(&s), "stored in systemd's fd store again"); i++)
                usleep(10000);
        cr_assert(strstr(sysd_log(&s), "stored in systemd's fd store again"), "%s", sysd_log(&s));
        alloc_disconnect(k);
        sysd_kill(&s, SIGKILL);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "p", NULL, &r), -ENOENT, "a freed region of a stale state is back");
        alloc_disconnect(k);
}

/*
 * The grace time counts from when allocd serves, not from its start: a pool made before the restore
 * (1 GiB reserved here, about a second on a small machine) does not eat it.
 */
Test(restart, the_grace_time_starts_when_allocd_serves) {
        struct alloc_region r;
        const char *conf = "[daemon]\nreclaim_grace = 300ms\n[pool host]\nkind = host\nsize = 4M\n";

        sysd_start(&s, conf);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "host", 8192, NULL, &r), 0, "%s", alloc_last_error());
        sysd_kill(&s, SIGTERM);
        write_file(s.d.conf, "[daemon]\nreclaim_grace = 300ms\n[pool big]\nkind = host\nsize = 1G\n[pool host]\nkind = "
                             "host\nsize = 4M\n");
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        /* The next call reconnects and reclaims, within the grace time. */
        cr_assert_eq(pool_used(k, "host"), 8192, "%s", sysd_log(&s));
        cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error());
        alloc_disconnect(k);
}

/*
 * A stored pool fd that cannot be used (damaged here; a failed mlock or a GPU not there yet at start does the
 * same) leaves its pool unavailable, and a reload makes it of fresh memory: the store must hold that memory
 * then, not the old fd, or the next restart adopts the old fd again, and the regions made since are lost or
 * restored into memory that is not theirs.
 */
Test(restart, a_pool_made_by_a_reload_after_its_stored_fd_failed_is_stored) {
        const char *conf = "[pool host]\nkind = host\nsize = 4M\n[pool extra]\nkind = host\nsize = 8M\n";
        struct alloc_region r;
        int fd = memfd_create("bad", MFD_CLOEXEC), e = -1;

        cr_assert(fd >= 0 && ftruncate(fd, 4096) == 0);
        sysd_start(&s, conf);
        sysd_kill(&s, SIGTERM);
        sysd_drop(&s, "pool.host.8388608.extra");
        sysd_put(&s, "pool.host.8388608.extra", fd);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "pool extra: the fd stored for it is not a sealed memfd"), "%s", sysd_log(&s));
        cr_assert_eq(stored("pool.host.8388608.extra", 0), 0, "the fd that was not used is still stored");
        kill(s.d.pid, SIGHUP);
        struct alloc_client *k = daemon_connect(&s.d);
        for (int i = 0; i < 500 && e; i++) {
                usleep(i ? 10000 : 0); /* until the reload made it */
                e = alloc_region_new(k, "extra", 8192, &(struct alloc_opts){.name = "x", .flags = ALLOC_PERSIST}, &r);
        }
        cr_assert_eq(e, 0, "%s", alloc_last_error());
        pattern(r.ptr, r.size, 6);
        alloc_disconnect(k);
        sysd_restart(&s, SIGKILL);
        k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "x", NULL, &r), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        cr_assert(pattern_ok(r.ptr, r.size, 6));
        alloc_disconnect(k);
}

/*
 * A pool resized across a restart waits for the old one to drain (resized_pool_waits_for_the_old_one); a SIGHUP
 * meanwhile that changes its section, or takes it out of the file, is what is made, or not, once it drained.
 */
static struct alloc_client *drained_after_reload(const char *reloaded) {
        struct alloc_region r;

        sysd_start(&s, "[pool p]\nkind = host\nsize = 4M\n");
        struct alloc_client *k = persist_then_restart(
                "p", "old", "[pool p]\nkind = host\nsize = 8M\n[pool q]\nkind = host\nsize = 4M\n");
        write_file(s.d.conf, reloaded);
        kill(s.d.pid, SIGHUP);
        for (int i = 0; i < 500 && !strstr(sysd_log(&s), "SIGHUP: reloaded"); i++)
                usleep(10000);
        cr_assert_eq(alloc_region_attach(k, "old", NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        for (int i = 0; i < 500 && !strstr(sysd_log(&s), "the draining pool is dropped"); i++)
                usleep(10000);
        cr_assert(strstr(sysd_log(&s), "the draining pool is dropped"), "%s", sysd_log(&s));
        return k;
}

Test(restart, a_waiting_pool_is_made_as_a_reload_configured_it) {
        struct alloc_client *k =
                drained_after_reload("[pool p]\nkind = host\nsize = 12M\n[pool q]\nkind = host\nsize = "
                                     "4M\n");
        cr_assert_eq(listed_size(k, "p", 12u << 20), 12u << 20, "%s", sysd_log(&s));
        alloc_disconnect(k);
}

Test(restart, a_waiting_pool_a_reload_took_out_is_not_made) {
        struct alloc_client *k = drained_after_reload("[pool q]\nkind = host\nsize = 4M\n");
        cr_assert_eq(listed_size(k, "p", 0), 0, "%s", sysd_log(&s));
        alloc_disconnect(k);
}

/* A pool that waits for its draining namesake keeps its whole section: an fpga pool's ranges too. */
Test(restart, a_waiting_fpga_pool_keeps_its_ranges) {
        struct alloc_region r;

        sysd_start(&s, "[pool p]\nkind = host\nsize = 4M\n");
        struct alloc_client *k =
                persist_then_restart("p", "old", "[pool p]\nkind = fpga\nranges = 0x100000000+8M, 0x200000000+4M\n");
        cr_assert_eq(alloc_region_attach(k, "old", NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(listed_size(k, "p", 12u << 20), 12u << 20, "%s", sysd_log(&s));
        alloc_disconnect(k);
}

/*
 * hugepages is the pool's backing, which SIGHUP leaves for a restart: across one, the old memory (of other
 * pages) drains, as for another size, rather than being adopted for a pool it no longer is.
 */
Test(restart, a_pool_given_hugepages_drains_its_old_memory) {
        struct alloc_region r;
        struct alloc_client *k = drains_after_restart("[pool p]\nkind = host\nsize = 4M\nhugepages = 2M\n", &r);

        alloc_disconnect(k);
}

/*
 * quantum waits for a restart too: one made larger cannot hold the old regions (their offsets and sizes are
 * of the old one), so the old pool drains as for another size, and no other pool's regions are lost; one made
 * smaller holds them, and its pool is adopted.
 */
Test(restart, a_pool_given_a_larger_quantum_drains_its_old_memory) {
        struct alloc_region r;
        struct alloc_client *k = drains_after_restart("[pool p]\nkind = host\nsize = 4M\nquantum = 64K\n", &r);

        cr_assert_eq(alloc_region_free(k, r.id), 0, "%s", alloc_last_error());
        cr_assert_eq(stored("pool.host.4194304q65536.p", 1), 1, "%s", sysd_log(&s));
        cr_assert_eq(stored("pool.host.4194304.p", 0), 0);
        cr_assert_eq(alloc_region_new(k, "p", 8192, &(struct alloc_opts){.name = "new", .flags = ALLOC_PERSIST}, &r), 0,
                     "%s", alloc_last_error());
        cr_assert_eq(r.size, 64u << 10);
        alloc_disconnect(k);
        sysd_kill(&s, SIGTERM);
        write_file(s.d.conf, "[pool p]\nkind = host\nsize = 4M\nquantum = 16K\n");
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "ready: 1 pool, 0 not available\n"), "%s", sysd_log(&s));
        /* Under its quantum now: a region of 16K made next would not fit a pool of 64K again. */
        cr_assert_eq(stored("pool.host.4194304q16384.p", 1), 1, "%s", sysd_log(&s));
        cr_assert_eq(stored("pool.host.4194304q65536.p", 0), 0);
        k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "new", NULL, &r), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        alloc_disconnect(k);
}
