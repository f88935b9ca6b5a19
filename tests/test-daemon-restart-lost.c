/* SPDX-License-Identifier: MIT */
/*
 * A restart whose state holds regions of a pool that cannot take them back (taken out of the
 * configuration, or configured with another kind or isolation): only that pool's regions are lost.
 * The rest comes back as it was (bytes, names, PERSIST, holders that reclaim), the log says which
 * pool lost what, a holder of both sees the lost one gone, and the lost memfds leave the store.
 * Systemd is played by sysd.c, as in test-daemon-restart.c; both ways of reading a state are
 * covered: a snapshot alone, and a snapshot with changes logged after it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restart-checks.h"

TestSuite(lost, .fini = teardown, .timeout = 120);

#define HOST "[pool host]\nkind = host\nsize = 64M\n"
#define FPGA "[pool f]\nkind = fpga\nranges = 0x100000000+64M\n"
#define ISO "[pool iso]\nkind = host\nsize = 16M\nisolation = region\n"
/* Another pool: the state's pools are not the configuration's, so the start writes a new snapshot. */
#define EXTRA "[pool extra]\nkind = host\nsize = 4M\n"

/* How many changes after its snapshot the last start restored, as allocd's log says. */
static unsigned long long changes_restored(void) {
        const char *log = sysd_log(&s), *last = NULL, *c;
        unsigned long long n;

        for (const char *p = log; (p = strstr(p, "restored from the fd store (")); p++)
                last = p;
        cr_assert(last && (c = strstr(last, ", epoch ")) && sscanf(c, ", epoch %*u, %llu changes", &n) == 1, "%s", log);
        return n;
}

/* A PERSIST region of 4 KiB named name in pool (no memory to write: fpga), nobody holding it. */
static void persist_one(const char *pool, const char *name) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(k, pool, 4096, &(struct alloc_opts){.name = name, .flags = ALLOC_PERSIST}, &r), 0,
                     "%s in %s: %s", name, pool, alloc_last_error());
        let_go(k, r.id);
}

struct held {
        struct alloc_client *k; /* holds both, across the restart */
        struct alloc_region kept, lost;
};

/*
 * The host pool: "h/named" held by h->k (its bytes seed 1), "h/persist" held by nobody (seed 2); pool
 * lost_pool: "l/named" held by h->k, "l/persist" held by nobody.
 */
static void populate(struct held *h, const char *lost_pool) {
        h->k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(h->k, "host", 8192, &(struct alloc_opts){.name = "h/named"}, &h->kept), 0, "%s",
                     alloc_last_error());
        pattern(h->kept.ptr, h->kept.size, 1);
        keep_one("host", "h/persist", 2);
        cr_assert_eq(alloc_region_new(h->k, lost_pool, 8192, &(struct alloc_opts){.name = "l/named"}, &h->lost), 0,
                     "%s", alloc_last_error());
        if (h->lost.ptr)
                pattern(h->lost.ptr, h->lost.size, 3);
        persist_one(lost_pool, "l/persist");
        pool_used(h->k, "host"); /* a round trip: every change is kept by now */
}

/*
 * After the restart that lost pool lost_pool (nlost regions, for why): the host pool is whole, the
 * lost pool's regions are gone, and h->k, reconnected, keeps the one and sees the other gone.
 */
static void only_lost_pool_lost(struct held *h, const char *lost_pool, unsigned nlost, const char *why) {
        char want[256];
        struct alloc_region r;

        all_restored(); /* no start refused its whole state */
        cr_assert(strstr(sysd_log(&s), "restored from the fd store"), "%s", sysd_log(&s));
        snprintf(want, sizeof(want), "pool %s: %u region%s (%s", lost_pool, nlost, nlost == 1 ? "" : "s", why);
        cr_assert(strstr(sysd_log(&s), want), "no '%s' in the log:\n%s", want, sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "told they are gone when they reconnect"), "%s", sysd_log(&s));

        /* The holder reconnects (its next call): the kept region is its still, the lost one is not. */
        cr_assert_eq(pool_used(h->k, "host"), 16384);
        cr_assert(pattern_ok(h->kept.ptr, h->kept.size, 1), "the kept region lost its bytes");
        pattern(h->kept.ptr, h->kept.size, 4); /* still shared with allocd's pool: an attacher sees it */
        there("h/named", 4);
        there("h/persist", 2);
        cr_assert_lt(alloc_region_attach(h->k, "l/named", NULL, &r), 0, "a lost region's name is found");
        cr_assert_lt(alloc_region_attach(h->k, "l/persist", NULL, &r), 0, "a lost PERSIST region's name is found");
        /* The library forgot the lost region when it squared its table: allocd does not know the id either. */
        cr_assert_eq(alloc_region_detach_sync(h->k, h->lost.id), -ENOENT, "%s", alloc_last_error());
        if (h->lost.ptr) /* its mapping stays, so old pointers do not fault; it is no longer shared */
                cr_assert(pattern_ok(h->lost.ptr, h->lost.size, 3));
        cr_assert_eq(alloc_region_free_sync(h->k, h->kept.id), 0, "%s", alloc_last_error());
        alloc_disconnect(h->k);
        /* The names of the lost regions can be taken again, and the restored state goes on. */
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "host", 4096, &(struct alloc_opts){.name = "l/named"}, &r), 0, "%s",
                     alloc_last_error());
        cr_assert_neq(r.id, h->lost.id, "a lost region's id was handed out again");
        let_go(k, r.id);
}

/* Restart (sig) with conf, which must reach READY=1. */
static void restart_as(const char *conf, int sig) {
        sysd_kill(&s, sig);
        write_file(s.d.conf, conf);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
}

/* A snapshot alone: a first restart (another pool added) writes one of everything, the second reads it. */
static void removed(int sig) {
        struct held h;

        sysd_start(&s, HOST FPGA);
        populate(&h, "f");
        restart_as(HOST FPGA EXTRA, sig); /* h.k does not reconnect yet: its placeholder is in the snapshot */
        restart_as(HOST EXTRA, sig);
        cr_assert_eq(changes_restored(), 0, "not a snapshot alone:\n%s", sysd_log(&s));
        only_lost_pool_lost(&h, "f", 2, "not configured");
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_status *st;
        cr_assert_eq(alloc_status(k, &st), 0);
        for (size_t i = 0; i < st->npools; i++)
                cr_assert_str_neq(st->pools[i].name, "f", "the lost pool is listed");
        alloc_status_free(st);
        alloc_disconnect(k);
}

Test(lost, a_removed_fpga_pool_loses_only_its_regions_term) {
        removed(SIGTERM);
}

Test(lost, a_removed_fpga_pool_loses_only_its_regions_kill) {
        removed(SIGKILL);
}

/* The log: changes after the snapshot touch the pool that is lost (a region made, one freed, a hold added). */
Test(lost, a_removed_pool_in_the_log_loses_only_its_regions) {
        struct held h;
        struct alloc_region r;

        sysd_start(&s, HOST FPGA);
        populate(&h, "f");
        restart_as(HOST FPGA EXTRA, SIGTERM); /* a snapshot of all that */
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "f", 4096, &(struct alloc_opts){.name = "l/new", .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        let_go(k, 0);
        k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "l/persist", NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free_sync(k, r.id), 0, "%s", alloc_last_error()); /* PERSIST and all */
        cr_assert_eq(alloc_region_attach(k, "l/named", NULL, &r), 0, "%s", alloc_last_error());
        pool_used(k, "host");
        restart_as(HOST EXTRA, SIGKILL); /* k is gone, but its holds are kept for its reconnection */
        cr_assert_gt(changes_restored(), 0, "no change after the snapshot:\n%s", sysd_log(&s));
        only_lost_pool_lost(&h, "f", 2, "not configured");
        alloc_disconnect(k);
}

/*
 * An isolation = region pool one of whose region memfds the store lost (systemd dropped it): that
 * pool's regions are lost, with its other memfd, taken by nothing and removed from the store; the
 * host pool's are restored, held and bytes and all.  The other way to lose such a pool's regions
 * was once to lose every region of the state.
 */
Test(lost, a_region_memfd_missing_from_the_store_loses_only_its_pool) {
        struct held h;
        char name[64];

        sysd_start(&s, HOST ISO);
        populate(&h, "iso");
        cr_assert_eq(stored("region-", 2), 2, "the regions' memfds were not stored");
        sysd_kill(&s, SIGKILL); /* h.k's placeholder holds both */
        snprintf(name, sizeof(name), "region-%llu", (unsigned long long)h.lost.id);
        cr_assert_geq(sysd_fd(&s, name), 0, "%s is not stored", name);
        sysd_drop(&s, name);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        cr_assert_eq(stored("region-", 0), 0, "the lost pool's other memfd is still stored");
        only_lost_pool_lost(&h, "iso", 2, "its region memfds are not all in the fd store (1 missing)");
}

/*
 * Pools configured otherwise: f an fpga pool made a host pool, iso an isolation = region pool made
 * isolation = pool.  Each loses its regions; the lost memfds of iso's leave the store.
 */
Test(lost, changed_pools_lose_only_their_regions) {
        struct held h, i;

        sysd_start(&s, HOST FPGA ISO);
        populate(&h, "f");
        i.k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(i.k, "iso", 8192, &(struct alloc_opts){.name = "iso/held"}, &i.lost), 0, "%s",
                     alloc_last_error());
        pattern(i.lost.ptr, i.lost.size, 5);
        pool_used(i.k, "iso");
        cr_assert_eq(stored("region-", 1), 1, "the region's memfd was not stored");
        restart_as(HOST "[pool f]\nkind = host\nsize = 64M\n[pool iso]\nkind = host\nsize = 16M\n", SIGTERM);
        cr_assert(strstr(sysd_log(&s), "pool iso: 1 region (configured otherwise"), "%s", sysd_log(&s));
        cr_assert_eq(stored("region-", 0), 0, "the lost region's memfd is still stored");
        only_lost_pool_lost(&h, "f", 2, "configured otherwise");
        /*
         * i.k held only the lost region: allocd kept no placeholder for it, so its reconnection is a new
         * connection, and its first call says its regions are gone, once.
         */
        struct alloc_status *st;
        cr_assert_eq(alloc_status(i.k, &st), -ESTALE, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "regions are gone"), "%s", alloc_last_error());
        cr_assert_eq(alloc_status(i.k, &st), 0, "%s", alloc_last_error());
        alloc_status_free(st);
        cr_assert_eq(alloc_region_detach_sync(i.k, i.lost.id), -ENOENT, "%s", alloc_last_error());
        cr_assert(pattern_ok(i.lost.ptr, i.lost.size, 5), "a lost region's mapping changed");
        alloc_disconnect(i.k);
        /* A restart with nothing lost after all that: what was restored was kept whole. */
        char *before = dump(NULL);
        restart_as(HOST "[pool f]\nkind = host\nsize = 64M\n[pool iso]\nkind = host\nsize = 16M\n", SIGKILL);
        char *after = dump(NULL);
        cr_assert_str_eq(after, before);
        free(before);
        free(after);
}

/*
 * A pool a reload adds while the store is full (62 region memfds and the two states, FDSTORE=64) is
 * not stored: its regions are lost at a restart, and only they, as the error said when it was made.
 */
Test(lost, a_pool_the_full_store_left_out_loses_only_its_regions) {
        static struct alloc_region r[62];
        struct alloc_client *k;
        char *log;
        int e = -1;

        sysd_start(&s, ISO);
        k = daemon_connect(&s.d);
        for (int i = 0; i < 62; i++)
                cr_assert_eq(alloc_region_new(k, "iso", 4096, NULL, &r[i]), 0, "region %d: %s", i, alloc_last_error());
        pattern(r[0].ptr, r[0].size, 7);
        pool_used(k, "iso");
        cr_assert_eq(stored("region-", 62), 62);
        write_file(s.d.conf, ISO HOST);
        kill(s.d.pid, SIGHUP);
        for (int i = 0; i < 500 && e < 0; i++) { /* the reload makes the pool off the loop */
                usleep(i ? 10000 : 0);
                struct alloc_client *h = daemon_connect(&s.d);
                struct alloc_region p;
                if ((e = alloc_region_new(h, "host", 8192, &(struct alloc_opts){.name = "late", .flags = ALLOC_PERSIST},
                                          &p)) == 0)
                        pattern(p.ptr, p.size, 8);
                let_go(h, 0);
        }
        cr_assert_eq(e, 0, "%s", alloc_last_error());
        log = whole_log();
        cr_assert(strstr(log, "pool host: systemd's fd store is full"), "%s", log);
        cr_assert(strstr(log, "a restart loses its regions") && !strstr(log, "a restart loses every region"),
                  "the error does not say what a restart loses:\n%s", log);
        free(log);
        char *before = dump("iso");
        sysd_restart(&s, SIGTERM);
        cr_assert(strstr(sysd_log(&s), "pool host: 1 region (its memory is not in the fd store"), "%s", sysd_log(&s));
        all_restored();
        char *after = dump("iso");
        cr_assert_str_eq(after, before);
        cr_assert_eq(pool_used(k, "iso"), 62 * 4096, "%s", alloc_last_error()); /* reclaimed */
        cr_assert(pattern_ok(r[0].ptr, r[0].size, 7));
        free(before);
        free(after);
        alloc_disconnect(k);
}

/*
 * An fpga pool given a larger quantum: its regions (of the old one) are lost, and only they.  One that
 * went from a smaller quantum back to the larger one too: the state kept in between says the smaller.
 */
Test(lost, a_pool_given_a_larger_quantum_loses_only_its_regions) {
#define FPGA_Q(q) "[pool f]\nkind = fpga\nranges = 0x100000000+64M\nquantum = " q "\n"
        sysd_start(&s, HOST FPGA_Q("64K"));
        keep_one("host", "h", 1);
        persist_one("f", "f/a");
        restart_as(HOST FPGA_Q("4K"), SIGTERM);
        all_restored();
        persist_one("f", "f/b"); /* 4 KiB, after f/a's 64 */
        restart_as(HOST FPGA_Q("64K"), SIGKILL);
        cr_assert(strstr(sysd_log(&s), "pool f: 2 regions (configured otherwise"), "%s", sysd_log(&s));
        all_restored();
        there("h", 1);
        persist_one("f", "f/a"); /* its name is free again */
#undef FPGA_Q
}

/*
 * An fpga pool whose ranges moved, its total kept: its POOL record is as configured, but its regions
 * lie outside its spans now.  They are lost, and only they (not the whole state, as the restore
 * refusing the first of them made it); the pool, at its new place, serves again.
 */
#define FPGA_MOVED "[pool f]\nkind = fpga\nranges = 0x200000000+64M\n"
#define MOVED_WHY "configured otherwise: its ranges no longer hold the region at 0x100000000+"

static void moved_on(void) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(k, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_geq(r.addr, 0x200000000ull, "address %#llx", (unsigned long long)r.addr);
        let_go(k, r.id);
}

Test(lost, a_pool_whose_ranges_moved_loses_only_its_regions) {
        struct held h;

        sysd_start(&s, HOST FPGA);
        populate(&h, "f");
        restart_as(HOST FPGA_MOVED, SIGTERM);
        only_lost_pool_lost(&h, "f", 2, MOVED_WHY);
        moved_on();
}

/* The same read from a snapshot and the changes logged after it (the body rebuilt from the log). */
Test(lost, a_pool_whose_ranges_moved_in_the_log_loses_only_its_regions) {
        struct held h;
        struct alloc_region r;

        sysd_start(&s, HOST FPGA);
        populate(&h, "f");
        restart_as(HOST FPGA EXTRA, SIGTERM); /* a snapshot of all that */
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "f", 4096, &(struct alloc_opts){.name = "l/new", .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        let_go(k, 0);
        restart_as(HOST FPGA_MOVED EXTRA, SIGKILL);
        cr_assert_gt(changes_restored(), 0, "no change after the snapshot:\n%s", sysd_log(&s));
        only_lost_pool_lost(&h, "f", 3, MOVED_WHY);
        moved_on();
}
