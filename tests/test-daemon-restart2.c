/* SPDX-License-Identifier: MIT */
/*
 * allocd across restarts that go on appending to the state they restored (keep_adopt, issue 18),
 * systemd played by sysd.c: pools a reload adds or makes at last, in every order, then kills; a
 * pool resized or taken out after the adoption; an older format's state.  Each restart must restore
 * (never start fresh) and `allocctl dump` must read the same after it.  The storms under load are
 * test-daemon-storm.c's.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "restart-checks.h"

TestSuite(restart2, .fini = teardown, .timeout = 240);

static void drop(const char *name) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_attach(k, name, NULL, &r), 0, "%s: %s", name, alloc_last_error());
        cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s: %s", name, alloc_last_error());
        let_go(k, 0);
}

static void not_there(const char *name) {
        struct alloc_client *k = daemon_connect(&s.d);

        cr_assert_eq(alloc_region_attach(k, name, NULL, &(struct alloc_region){0}), -ENOENT, "%s is back", name);
        alloc_disconnect(k);
}

/* Two restarts by kill, then every region in names is there with its bytes (seeds 1, 2, ... in order). */
static void two_kills_keep(const char *const *names) {
        same_after(SIGKILL);
        same_after(SIGKILL);
        for (unsigned i = 0; names[i]; i++)
                there(names[i], i + 1);
}

/* SIGHUP with conf; waits for the pool whose store name is stored to be stored. */
static void reload(const char *conf, const char *stored_name) {
        write_file(s.d.conf, conf);
        kill(s.d.pid, SIGHUP);
        cr_assert_eq(stored(stored_name, 1), 1, "%s is not stored: %s", stored_name, sysd_log(&s));
}

#define POOL_A "[pool a]\nkind = host\nsize = 4M\n"
#define BIG_NOT_MADE "[pool big]\nkind = host\nsize = 64T\n"
#define BIG "[pool big]\nkind = host\nsize = 2M\n"
#define POOL_C "[pool c]\nkind = host\nsize = 2M\n"

/*
 * A pool a reload adds (c) and one it makes at last (big, which keeps its id), each with a region,
 * in either order, with restarts by kill between: each restart appends to the state it restored.
 */
static void added_and_made(bool big_first, int sig) {
        sysd_start(&s, POOL_A BIG_NOT_MADE);
        keep_one("a", "a1", 1);
        same_after(sig);
        if (big_first) {
                reload(POOL_A BIG, "pool.host.2097152.big");
                keep_one("big", "b1", 2);
                same_after(sig);
                reload(POOL_A BIG POOL_C, "pool.host.2097152.c");
                keep_one("c", "c1", 3);
        } else {
                reload(POOL_A BIG_NOT_MADE POOL_C, "pool.host.2097152.c");
                keep_one("c", "c1", 3);
                same_after(sig);
                reload(POOL_A BIG POOL_C, "pool.host.2097152.big");
                keep_one("big", "b1", 2);
        }
        same_after(sig);
        drop("a1");
        keep_one("big", "b2", 4);
        same_after(sig);
        same_after(SIGTERM);
        not_there("a1");
        there("b1", 2);
        there("b2", 4);
        there("c1", 3);
        cr_assert_eq(stored("state.", 1), 1);
}

Test(restart2, added_then_made_at_last_by_kill) {
        added_and_made(false, SIGKILL);
}

Test(restart2, made_at_last_then_added_by_kill) {
        added_and_made(true, SIGKILL);
}

Test(restart2, added_then_made_at_last_by_term) {
        added_and_made(false, SIGTERM);
}

/* Both in one reload, and the region in the pool made at last before any restart. */
Test(restart2, added_and_made_in_one_reload) {
        sysd_start(&s, POOL_A BIG_NOT_MADE);
        keep_one("a", "a1", 1);
        reload(POOL_A BIG POOL_C, "pool.host.2097152.big");
        cr_assert_eq(stored("pool.host.2097152.c", 1), 1);
        keep_one("big", "b1", 2);
        keep_one("c", "c1", 3);
        two_kills_keep((const char *[]){"a1", "b1", "c1", NULL});
}

/* Status lists pool as size bytes, within 5 s (a drained pool is replaced at the end of a loop turn). */
static void listed_as(const char *pool, uint64_t size) {
        struct alloc_client *k = daemon_connect(&s.d);
        uint64_t now = 0;

        for (int i = 0; i < 500 && now != size; i++) {
                struct alloc_status *st;
                usleep(i ? 10000 : 0);
                cr_assert_eq(alloc_status(k, &st), 0);
                now = 0;
                for (size_t j = 0; j < st->npools; j++)
                        if (!strcmp(st->pools[j].name, pool))
                                now = st->pools[j].size;
                alloc_status_free(st);
        }
        alloc_disconnect(k);
        cr_assert_eq(now, size, "pool %s is %llu bytes: %s", pool, (unsigned long long)now, sysd_log(&s));
}

/*
 * A pool resized across a restart: the new one, made when the old drains, keeps its regions through
 * kills.  Last in the file, the old one keeps its id and the state is appended to; first, it is not.
 */
static void resized(bool last) {
        const char *p4 = "[pool p]\nkind = host\nsize = 4M\n", *p8 = "[pool p]\nkind = host\nsize = 8M\n",
                   *q = "[pool q]\nkind = host\nsize = 4M\n";
        char before[256], after[256];

        snprintf(before, sizeof(before), "%s%s", last ? q : p4, last ? p4 : q);
        snprintf(after, sizeof(after), "%s%s", last ? q : p8, last ? p8 : q);
        sysd_start(&s, before);
        keep_one("p", "old", 1);
        keep_one("q", "q1", 2);
        int was = state_name();
        restart_with(after, SIGKILL);
        cr_assert_eq(state_name() == was, last, "the state was %s", last ? "written anew" : "appended to");
        there("old", 1);
        drop("old");
        listed_as("p", 8u << 20);
        cr_assert_eq(stored("pool.host.8388608.p", 1), 1, "%s", sysd_log(&s));
        keep_one("p", "new", 3);
        same_after(SIGKILL);
        there("new", 3);
        there("q1", 2);
        cr_assert_eq(stored("pool.host.4194304.p", 0), 0);
        same_after(SIGKILL);
        same_after(SIGTERM);
        there("new", 3);
        there("q1", 2);
}

Test(restart2, resized_first_after_a_restart) {
        resized(false);
}

Test(restart2, resized_last_after_adoption) {
        resized(true);
}

/* Pools p and q with a region each (p1, q1), then a restart by kill with conf. */
static void p1_q1_then(const char *conf) {
        sysd_start(&s, "[pool p]\nkind = host\nsize = 4M\n[pool q]\nkind = host\nsize = 4M\n");
        keep_one("p", "p1", 1);
        keep_one("q", "q1", 2);
        restart_with(conf, SIGKILL);
}

/* A pool taken out of the configuration across an adopting restart drains; the others keep theirs through kills. */
Test(restart2, removed_after_adoption) {
        p1_q1_then("[pool p]\nkind = host\nsize = 4M\n");
        keep_one("p", "p2", 3);
        same_after(SIGKILL);
        drop("q1");
        cr_assert_eq(stored("pool.host.4194304.q", 0), 0, "the drained pool is still stored");
        keep_one("p", "p3", 4);
        same_after(SIGKILL);
        /* Configured again: made anew, in place of the drained one's id. */
        reload("[pool p]\nkind = host\nsize = 4M\n[pool q]\nkind = host\nsize = 4M\n", "pool.host.4194304.q");
        keep_one("q", "q2", 5);
        same_after(SIGKILL);
        same_after(SIGKILL);
        there("p1", 1);
        there("p2", 3);
        there("p3", 4);
        there("q2", 5);
        not_there("q1");
}

/* Pools in another order: ids differ, so the state is written anew, and the regions follow their pools' names. */
Test(restart2, pools_in_another_order) {
        p1_q1_then("[pool q]\nkind = host\nsize = 4M\n[pool p]\nkind = host\nsize = 4M\n");
        keep_one("p", "p2", 3);
        keep_one("q", "q2", 4);
        two_kills_keep((const char *[]){"p1", "q1", "p2", "q2", NULL});
}

static uint32_t crc32c(const uint8_t *p, size_t n) {
        uint32_t c = ~0u;

        while (n--) {
                c ^= *p++;
                for (int k = 0; k < 8; k++)
                        c = c >> 1 ^ (0x82f63b78u & -(c & 1));
        }
        return ~c;
}

/*
 * A state of format 3 (4 without LOG_POOL), snapshot and log: read, and kept from then on in a new
 * state of format 4 rather than appended to (a 3 with a 4's record in it would be neither).
 */
Test(restart2, a_version_3_state_is_read_and_replaced) {
        sysd_start(&s, POOL_A);
        keep_one("a", "a1", 1);
        sysd_kill(&s, SIGKILL);
        int was = state_name(), fd = sysd_fd(&s, was ? "state.1" : "state.0");
        uint8_t h[40];
        uint32_t v = 3, crc;
        cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
        memcpy(h + 8, &v, 4);
        crc = crc32c(h, 36);
        memcpy(h + 36, &crc, 4);
        cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
        char *before = NULL;
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        all_restored();
        there("a1", 1);
        cr_assert_eq(stored(was ? "state.0" : "state.1", 1), 1, "the version 3 state was appended to: %s",
                     sysd_log(&s));
        cr_assert_eq(stored(was ? "state.1" : "state.0", 0), 0);
        keep_one("a", "a2", 2);
        before = dump(NULL);
        free(before);
        same_after(SIGKILL);
        there("a1", 1);
        there("a2", 2);
}

/* A process of its own holding size bytes of pool on its connection, until it is killed. */
static pid_t holder(const char *pool, uint64_t size) {
        int ready[2];
        char c;

        cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                struct alloc_client *k;
                struct alloc_region r;
                close(ready[0]);
                if (alloc_connect(&k, s.d.sock, "holder") < 0 || alloc_region_new(k, pool, size, NULL, &r) < 0 ||
                    alloc_region_sync(k) < 0 || write(ready[1], "r", 1) != 1)
                        _exit(1);
                for (;;)
                        pause();
        }
        close(ready[1]);
        cr_assert_eq(read(ready[0], &c, 1), 1, "the holder failed");
        close(ready[0]);
        return pid;
}

/*
 * A connection's holds restored, then released when its process ends without it reconnecting, in a
 * state that was appended to: the next restart does not bring them back; a reconnection after a
 * second restart reclaims what it holds again, however long after reclaim_grace, for its process lives.
 */
Test(restart2, release_after_adoption) {
        const char *conf = "[daemon]\nreclaim_grace = 300ms\n" POOL_A;
        struct alloc_region q;
        int status;

        sysd_start(&s, conf);
        keep_one("a", "a1", 1);
        pid_t gone = holder("a", 8192);
        struct alloc_client *back = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(back, "a", 16384, NULL, &q), 0, "%s", alloc_last_error());
        pattern(q.ptr, q.size, 9);
        pool_used(back, "a");
        sysd_restart(&s, SIGKILL);
        all_restored();
        /* back reclaims with its next call; gone's goes when its process ends. */
        cr_assert_eq(pool_used(back, "a"), 8192 + 8192 + 16384, "%s", sysd_log(&s));
        usleep(500 * 1000);
        cr_assert_eq(pool_used(back, "a"), 8192 + 8192 + 16384, "released while its process lived: %s", sysd_log(&s));
        kill(gone, SIGKILL);
        cr_assert_eq(waitpid(gone, &status, 0), gone);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(wait_used(k, "a", 8192 + 16384), 8192 + 16384, "%s", sysd_log(&s));
        alloc_disconnect(k);
        cr_assert(strstr(sysd_log(&s), "was not reclaimed before its process ended: released its 1 reference"), "%s",
                  sysd_log(&s));
        /* From here back's placeholder must outlive two restarts it does not reconnect in. */
        same_after(SIGKILL);
        usleep(500 * 1000);
        same_after(SIGKILL);
        cr_assert_eq(pool_used(back, "a"), 8192 + 16384, "%s", sysd_log(&s));
        cr_assert(pattern_ok(q.ptr, q.size, 9));
        cr_assert_eq(alloc_region_free_sync(back, q.id), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(back, "a"), 8192, "the released region is back: %s", sysd_log(&s));
        alloc_disconnect(back);
        there("a1", 1);
}

/*
 * A placeholder whose process ended while allocd was down is released at the start, before the
 * state restored is adopted (restart_begin): that release is kept like any other.  It was not: the
 * next restart brought the placeholder back with a hold on a range another region had since taken.
 */
Test(restart2, a_placeholder_released_at_the_start_stays_released) {
        struct alloc_region q;
        int status;

        sysd_start(&s, POOL_A);
        pid_t gone = holder("a", 2 << 20);
        sysd_kill(&s, SIGKILL);
        kill(gone, SIGKILL);
        cr_assert_eq(waitpid(gone, &status, 0), gone);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(pool_used(k, "a"), 0, "%s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "its process ended while allocd was down"), "%s", sysd_log(&s));
        /* Its range, and all the rest, to another. */
        cr_assert_eq(alloc_region_new(k, "a", 4 << 20, NULL, &q), 0, "%s", alloc_last_error());
        pattern(q.ptr, q.size, 5);
        cr_assert_eq(alloc_region_sync(k), 0, "%s", alloc_last_error());
        same_after(SIGKILL);
        char *log = whole_log(), *once = strstr(log, "its process ended while allocd was down");
        cr_assert(once && !strstr(once + 1, "its process ended while allocd was down"), "released again: %s", log);
        free(log);
        cr_assert_eq(pool_used(k, "a"), 4 << 20, "%s", sysd_log(&s));
        cr_assert(pattern_ok(q.ptr, q.size, 5));
        cr_assert_eq(alloc_region_free_sync(k, q.id), 0, "%s", alloc_last_error());
        alloc_disconnect(k);
}

/*
 * The pool made in place of a drained namesake (a resize across a restart) is stored at once, as
 * it is made: the first Alloc in it may come before the end of the next loop turn, and a kill
 * between its reply and that store left a state with a region in a pool whose memory the store
 * lacks, which the next start refused whole: every region lost.
 */
Test(restart2, a_pool_made_when_its_namesake_drains_is_stored_at_once) {
        sysd_start(&s, "[pool p]\nkind = host\nsize = 4M\n[pool q]\nkind = host\nsize = 4M\n");
        keep_one("p", "old", 1);
        keep_one("q", "q1", 2);
        restart_with("[pool p]\nkind = host\nsize = 8M\n[pool q]\nkind = host\nsize = 4M\n", SIGKILL);
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;
        cr_assert_eq(alloc_region_attach(k, "old", NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error());
        /* Nothing asked of allocd from now on: what it stores, it stores by itself. */
        cr_assert_eq(stored("pool.host.8388608.p", 1), 1, "the new pool is not stored: %s", sysd_log(&s));
        alloc_disconnect(k);
        keep_one("p", "new", 3);
        sysd_restart(&s, SIGKILL);
        all_restored();
        there("new", 3);
        there("q1", 2);
}

/* A stop, or a kill, while a reload is still making a pool: the state kept is whole, and the next start makes it. */
static void stop_while_a_pool_is_made(int sig) {
        sysd_start(&s, POOL_A);
        keep_one("a", "a1", 1);
        write_file(s.d.conf, POOL_A "[pool slow]\nkind = host\nsize = 1G\nlock = yes\n");
        kill(s.d.pid, SIGHUP);
        usleep(20000);
        same_after(sig);
        there("a1", 1);
        keep_one("slow", "s1", 2);
        same_after(SIGKILL);
        there("s1", 2);
        there("a1", 1);
}

Test(restart2, a_stop_while_a_pool_is_made) {
        stop_while_a_pool_is_made(SIGTERM);
}

Test(restart2, a_kill_while_a_pool_is_made) {
        stop_while_a_pool_is_made(SIGKILL);
}

/* The epoch in the header of the state stored as name (0: none stored). */
static uint64_t stored_epoch(const char *name) {
        uint8_t h[40];
        uint64_t epoch = 0;

        for (size_t i = 0; i < s.nstore; i++)
                if (!strcmp(s.store[i].name, name) && pread(s.store[i].fd, h, sizeof(h), 0) == (ssize_t)sizeof(h))
                        memcpy(&epoch, h + 24, 8);
        return epoch;
}

/*
 * A restart that cannot append to the state it restored (a pool more now: the ids differ) writes a
 * new one above the restored epoch, so that the old one could never win, were its removal lost.
 */
Test(restart2, a_new_state_after_a_restore_has_a_higher_epoch) {
        sysd_start(&s, "[pool host]\nkind = host\nsize = 4M\n");
        keep_one("host", "e", 3);
        cr_assert_eq(stored("state.0", 1), 1);
        uint64_t before = stored_epoch("state.0");
        restart_with("[pool host]\nkind = host\nsize = 4M\n[pool more]\nkind = host\nsize = 4M\n", SIGTERM);
        cr_assert_eq(stored("state.1", 1), 1, "no new state: %s", sysd_log(&s));
        cr_assert_gt(stored_epoch("state.1"), before, "the new state's epoch %llu is not above the restored %llu",
                     (unsigned long long)stored_epoch("state.1"), (unsigned long long)before);
        there("e", 3);
}

/*
 * A placeholder whose process cannot be watched (no pidfd: allocd out of fds) is said in the log, with
 * what becomes of it: its regions go at reclaim_grace although its process lives, and the line saying
 * so then would otherwise be the operator's first word of it.
 */
Test(restart2, a_process_that_cannot_be_watched_is_said) {
        enum { N = 40 };
        struct alloc_client *c[N];
        struct alloc_region r;

        sysd_start(&s, "[daemon]\nreclaim_grace = 10min\n" POOL_A);
        /* No allocd follows the last kill: their disconnects would try to say goodbye to one for a minute. */
        setenv("ALLOCD_RECONNECT", "0", 1);
        for (int i = 0; i < N; i++) {
                c[i] = daemon_connect(&s.d);
                cr_assert_eq(alloc_region_new(c[i], "a", 4096, NULL, &r), 0, "%s", alloc_last_error());
        }
        unsetenv("ALLOCD_RECONNECT");
        /* Room for allocd's own fds and some pidfds, not for all N. */
        s.nofile = 40;
        sysd_kill(&s, SIGKILL);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        char *log = NULL;
        for (int i = 0; i < 200 && (!log || !strstr(log, "cannot be watched")); i++) {
                free(log);
                usleep(10 * 1000);
                log = whole_log();
        }
        cr_assert(strstr(log, "its process cannot be watched (pidfd_open: Too many open files); its regions go at "
                              "reclaim_grace = 600000ms after the restart unless it reconnects first"),
                  "%s", log);
        free(log);
        /* It cannot open the notify socket to say STOPPING=1 either: no clean stop to wait for. */
        sysd_kill(&s, SIGKILL);
        for (int i = 0; i < N; i++)
                alloc_disconnect(c[i]);
}
