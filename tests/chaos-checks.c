/* SPDX-License-Identifier: MIT */
/*
 * What test-daemon-chaos.c checks once the workers are gone, and how it reports: allocd as /proc
 * sees it (fds, memory), what allocd holds and lists (settled, empty, only PERSIST regions left),
 * the outcomes the workers counted, and the summary lines.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos-checks.h"

static const char *const op_names[NOPS] = {
        [OP_CONNECT] = "connect", [OP_ALLOC] = "alloc",      [OP_ALLOC_NAMED] = "alloc-named",
        [OP_PERSIST] = "persist", [OP_WAIT] = "wait",        [OP_INVALID] = "invalid",
        [OP_FREE] = "free",       [OP_FREE_STALE] = "stale", [OP_DETACH] = "detach",
        [OP_ATTACH] = "attach",   [OP_TOUCH] = "touch",      [OP_STATUS] = "status",
        [OP_DUMP] = "dump",       [OP_BURST] = "burst",      [OP_NOHELLO] = "nohello",
        [OP_BATCH] = "batch",
};
static const char *const res_names[NRES] = {
        [RES_OK] = "OK",
        [RES_EINVAL] = "EINVAL",
        [RES_EOVERFLOW] = "EOVERFLOW",
        [RES_ENODEV] = "ENODEV",
        [RES_ENOENT] = "ENOENT",
        [RES_EEXIST] = "EEXIST",
        [RES_EACCES] = "EACCES",
        [RES_EDQUOT] = "EDQUOT",
        [RES_EMFILE] = "EMFILE",
        [RES_EAGAIN] = "EAGAIN",
        [RES_ETIMEDOUT] = "ETIMEDOUT",
        [RES_E2BIG] = "E2BIG",
        [RES_ECANCELED] = "ECANCELED",
        [RES_ECONNRESET] = "ECONNRESET",
        [RES_EPROTO] = "EPROTO",
        [RES_EIO] = "EIO",
        [RES_OTHER] = "other",
};

/* ---- allocd as /proc sees it ---- */

int fd_count(pid_t pid) {
        char path[64];
        struct dirent *e;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        DIR *dir = opendir(path);
        cr_assert_not_null(dir, "%s: %s", path, strerror(errno));
        while ((e = readdir(dir)))
                n += e->d_name[0] != '.';
        closedir(dir);
        return n;
}

static long status_field(const char *text, const char *key) {
        const char *p = strstr(text, key);
        return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* allocd just after it started with one client, before the warm-up: for the summary. */
int fds_started;
struct mem mem_started;

struct mem mem_of(pid_t pid) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        const char *s = slurp(path);
        struct mem m = {status_field(s, "VmRSS:"), status_field(s, "RssAnon:"), status_field(s, "RssShmem:")};
        cr_assert(m.rss > 0, "no VmRSS in %s", path);
        return m;
}

/* ---- allocd's state ---- */

/* Regions that are not a PERSIST region left alone: held, or in flight (being zeroed for a client that died). */
static size_t unsettled_regions(void) {
        struct alloc_dump *dm;
        size_t n = 0;

        cr_assert_eq(alloc_dump(c, NULL, &dm), 0, "allocd does not answer: %s", alloc_last_error());
        for (size_t i = 0; i < dm->nregions; i++)
                n += !(dm->regions[i].flags & ALLOC_PERSIST) || dm->regions[i].refs != 1 || dm->regions[i].nholders;
        alloc_dump_free(dm);
        return n;
}

/*
 * Every worker's connection is gone from allocd, nothing waits, and what was
 * in flight has landed: a ZERO region whose client died while allocd's thread
 * pool zeroed it goes when the zeroing ends.  Waits up to a minute; what is
 * still not settled then is for the checks to report.
 */
void quiesce(const char *when) {
        long end = now_ms() + 60000;

        progress();
        for (;;) {
                struct alloc_status *s;
                cr_assert_eq(alloc_status(c, &s), 0, "%s: allocd does not answer: %s", when, alloc_last_error());
                unsigned long long waiters = 0;
                size_t clients = s->nclients + s->clients_omitted;
                for (size_t i = 0; i < s->npools; i++)
                        waiters += s->pools[i].waiters;
                alloc_status_free(s);
                if (clients == 1 && waiters == 0)
                        break;
                cr_assert(now_ms() < end, "%s: allocd still lists %zu clients and %llu waiters a minute later", when,
                          clients, waiters);
                drain_notify();
                sleep_ms(10);
        }
        while (unsettled_regions() && now_ms() < end) {
                drain_notify();
                sleep_ms(10);
        }
}

/* allocd's fd count once it stops moving (want < 0), or once it is want; at most 30 s.  Returns the last count. */
int settled_fds(int want) {
        long end = now_ms() + 30000;
        int last = fd_count(d.pid);

        for (;;) {
                drain_notify();
                sleep_ms(50);
                int n = fd_count(d.pid);
                if ((want < 0 && n == last) || n == want || now_ms() > end)
                        return n;
                last = n;
        }
}

static const char *const pools[] = {CHAOS_POOL_HOST, CHAOS_POOL_SMALL, CHAOS_POOL_FPGA};
#define NPOOLS (sizeof(pools) / sizeof(pools[0]))

/* Every pool is empty. */
void expect_empty(const char *when) {
        struct alloc_status *s;
        struct alloc_dump *dm;

        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < NPOOLS; i++) {
                const struct alloc_pool_status *p = pool_status(s, pools[i]);
                cr_expect(p->used == 0 && p->regions == 0, "%s: pool %s has %llu bytes in %llu regions in use", when,
                          pools[i], (unsigned long long)p->used, (unsigned long long)p->regions);
        }
        alloc_status_free(s);
        cr_assert_eq(alloc_dump(c, NULL, &dm), 0, "%s", alloc_last_error());
        cr_expect_eq(dm->nregions, 0, "%s: Dump lists %zu regions", when, dm->nregions);
        alloc_dump_free(dm);
}

static int by_pool_and_addr(const void *a, const void *b) {
        const struct alloc_region_info *x = a, *y = b;
        int r = strcmp(x->pool, y->pool);
        return r ? r : x->addr < y->addr ? -1 : x->addr > y->addr;
}

/*
 * What the chaos left: only PERSIST regions nobody holds, whose bytes are each
 * pool's used bytes, without overlaps; and every name of the set either
 * attaches to the region Dump lists under it, or is free to take.
 */
void check_leftovers(struct alloc_dump *dm) {
        struct alloc_status *s;
        unsigned long long bytes[NPOOLS] = {0}, count[NPOOLS] = {0};
        unsigned plain = 0, held = 0, overlaps = 0;
        char first_plain[256] = "", first_held[256] = "", first_overlap[128] = "";

        qsort(dm->regions, dm->nregions, sizeof(*dm->regions), by_pool_and_addr);
        for (size_t i = 0; i < dm->nregions; i++) {
                const struct alloc_region_info *x = &dm->regions[i], *prev = i ? &dm->regions[i - 1] : NULL;
                if (!(x->flags & ALLOC_PERSIST) && !plain++)
                        snprintf(
                                first_plain, sizeof(first_plain),
                                "%#llx (pool %.16s, %llu bytes, name '%.32s', flags %#x, %u refs, %zu holders, pid %d)",
                                (unsigned long long)x->id, x->pool, (unsigned long long)x->size, x->name, x->flags,
                                x->refs, x->nholders, (int)x->pid);
                else if ((x->flags & ALLOC_PERSIST) && (x->nholders || x->refs != 1) && !held++)
                        snprintf(first_held, sizeof(first_held), "%#llx (pool %.16s, %zu holders, %u refs)",
                                 (unsigned long long)x->id, x->pool, x->nholders, x->refs);
                if (prev && !strcmp(prev->pool, x->pool) && prev->addr + prev->size > x->addr && !overlaps++)
                        snprintf(first_overlap, sizeof(first_overlap), "%#llx and %#llx of pool %.16s",
                                 (unsigned long long)prev->id, (unsigned long long)x->id, x->pool);
                for (size_t p = 0; p < NPOOLS; p++)
                        if (!strcmp(x->pool, pools[p]) && (x->flags & ALLOC_PERSIST))
                                bytes[p] += x->size, count[p]++;
        }
        cr_expect_eq(plain, 0, "%u regions without PERSIST outlived every client; the first: %s", plain, first_plain);
        cr_expect_eq(held, 0, "%u PERSIST regions are still held with no client left; the first: %s", held, first_held);
        cr_expect_eq(overlaps, 0, "%u regions overlap the one before them; the first: %s", overlaps, first_overlap);
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        for (size_t p = 0; p < NPOOLS; p++) {
                const struct alloc_pool_status *ps = pool_status(s, pools[p]);
                cr_expect(ps->used == bytes[p] && ps->regions == count[p],
                          "pool %s: %llu bytes in %llu regions in use, but the PERSIST regions alive are %llu bytes in "
                          "%llu",
                          pools[p], (unsigned long long)ps->used, (unsigned long long)ps->regions, bytes[p], count[p]);
        }
        alloc_status_free(s);

        for (int n = 0; n < CHAOS_NNAMES; n++) {
                char name[32];
                struct alloc_region r;
                const struct alloc_region_info *listed = NULL;

                snprintf(name, sizeof(name), CHAOS_NAME_FMT, n);
                for (size_t i = 0; i < dm->nregions; i++)
                        if (!strcmp(dm->regions[i].name, name))
                                listed = &dm->regions[i];
                int e = alloc_region_attach(c, name, NULL, &r);
                if (listed) {
                        cr_expect_eq(e, 0, "'%s' is listed on region %#llx but does not attach: %s", name,
                                     (unsigned long long)listed->id, alloc_last_error());
                        cr_expect(e || r.id == listed->id, "'%s' attaches region %#llx, Dump lists it on %#llx", name,
                                  (unsigned long long)r.id, (unsigned long long)listed->id);
                } else {
                        cr_expect_eq(e, -ENOENT, "'%s' is on no region Dump lists, yet Attach answers %s (%s)", name,
                                     e ? strerror(-e) : "with region", alloc_last_error());
                }
                if (e == 0)
                        cr_expect_eq(alloc_region_detach(c, r.id), 0, "%s", alloc_last_error());
        }
}

/*
 * Frees every region left, as root; returns how many it could not free.
 * docs/protocol.md: Free is for the region's owner (its uid, the pool's owner,
 * or root), and drops "this connection's reference": a named region is
 * attached first; an unnamed one is freed by its id alone.
 */
unsigned free_leftovers(const struct alloc_dump *dm, char *why, size_t whysize) {
        unsigned failed = 0;

        for (size_t i = 0; i < dm->nregions; i++) {
                const struct alloc_region_info *x = &dm->regions[i];
                struct alloc_region r;
                int e;

                if (*x->name && alloc_region_attach(c, x->name, NULL, &r) == 0 && r.id != x->id)
                        alloc_region_detach(c, r.id);
                e = alloc_region_free(c, x->id);
                if (e < 0 && !failed++)
                        snprintf(why, whysize,
                                 "root cannot free region %#llx (pool %.16s, %llu bytes, %.32s, flags %#x, created by "
                                 "pid %d, which is gone, held by nobody): %s (%.200s)",
                                 (unsigned long long)x->id, x->pool, (unsigned long long)x->size,
                                 *x->name ? x->name : "unnamed", x->flags, (int)x->pid, strerror(-e),
                                 alloc_last_error());
        }
        return failed;
}

/* Outcomes allocd must never give a well-behaved client, counted by the workers. */
static unsigned long long unexpected(char *what, size_t size) {
        unsigned long long total = 0;
        size_t n = 0;

        *what = '\0';
        for (int op = 0; op < NOPS; op++) {
                for (int res = 0; res < NRES; res++) {
                        bool odd = res == RES_EPROTO || res == RES_EIO || res == RES_ECANCELED || res == RES_EACCES;
                        /* A raw connect may fail; a connect may be refused or stopped past its Hello deadline. */
                        if ((res == RES_ECONNRESET || res == RES_OTHER) && op != OP_CONNECT && op != OP_BURST &&
                            op != OP_NOHELLO)
                                odd = true;
                        if (!odd || !stats->n[op][res])
                                continue;
                        total += stats->n[op][res];
                        if (n < size)
                                n += (size_t)snprintf(what + n, size - n, " %s:%s=%llu", op_names[op], res_names[res],
                                                      (unsigned long long)stats->n[op][res]);
                }
        }
        return total;
}

void check_workers(const char *when) {
        char what[512];
        unsigned long long odd = unexpected(what, sizeof(what));

        cr_expect_eq(stats->violations, 0, "%s: workers saw %llu broken promises; the first: %s", when,
                     (unsigned long long)stats->violations, stats->first_violation);
        cr_expect_eq(odd, 0, "%s: %llu outcomes allocd should never give:%s", when, odd, what);
        cr_expect_eq(odd_exits, 0, "%s: %u workers ended other than by SIGKILL; the first: %s", when, odd_exits,
                     first_odd_exit);
}

bool summarised;

/* One line for a CI log (kills, operations by kind, outcomes by code, allocd's fds and memory), then a table. */
void summary(const char *tail) {
        unsigned long long per_res[NRES] = {0}, total = 0;
        char line[4096];
        size_t n = 0;

        summarised = true;
        n += (size_t)snprintf(line + n, sizeof(line) - n,
                              "chaos: %u kills (%u while starting), %u stops, %u workers, %.1f s; ops", kills,
                              early_kills, stops, nworkers,
                              (double)((chaos_end ? chaos_end : now_ms()) - chaos_start) / 1000.0);
        for (int op = 0; op < NOPS; op++) {
                unsigned long long sum = 0;
                for (int res = 0; res < NRES; res++)
                        sum += stats->n[op][res], per_res[res] += stats->n[op][res];
                total += sum;
                n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%llu", op_names[op], sum);
        }
        n += (size_t)snprintf(line + n, sizeof(line) - n, " (total %llu); outcomes", total);
        for (int res = 0; res < NRES; res++)
                if (per_res[res])
                        n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%llu", res_names[res], per_res[res]);
        snprintf(line + n, sizeof(line) - n, "%s", tail);
        printf("%s\n", line);
        /* By kind and outcome, for whoever reads a failure. */
        for (int op = 0; op < NOPS; op++) {
                n = (size_t)snprintf(line, sizeof(line), "chaos:   %-12s", op_names[op]);
                for (int res = 0; res < NRES; res++)
                        if (stats->n[op][res])
                                n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%llu", res_names[res],
                                                      (unsigned long long)stats->n[op][res]);
                printf("%s\n", line);
        }
        fflush(stdout);
}
