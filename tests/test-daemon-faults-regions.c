/* SPDX-License-Identifier: MIT */
/*
 * Regression tests for faults a client could cause in allocd's regions (test-daemon-faults.c has
 * the connections'): a region released while it is being zeroed, the region table after
 * many regions went, and a request the library could not send.  As there, each test starts an
 * allocd with the configuration the fault needs.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faults-common.h"

TestSuite(faults, .fini = teardown, .timeout = 90);

/* ---- regions being zeroed ---- */

static int by_base(const void *a, const void *b) {
        const struct alloc_region_info *x = a, *y = b;
        return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Live regions of pool h do not overlap, and the pool's used bytes are their sum. */
static void check_pool(const char *when) {
        struct alloc_dump *dm;
        uint64_t sum = 0;

        cr_assert_eq(alloc_dump(c, "h", &dm), 0, "%s", alloc_last_error());
        qsort(dm->regions, dm->nregions, sizeof(dm->regions[0]), by_base);
        for (size_t i = 0; i < dm->nregions; i++) {
                sum += dm->regions[i].size;
                if (i > 0)
                        cr_assert_leq(dm->regions[i - 1].addr + dm->regions[i - 1].size, dm->regions[i].addr,
                                      "%s: live regions %llu and %llu overlap", when,
                                      (unsigned long long)dm->regions[i - 1].id, (unsigned long long)dm->regions[i].id);
        }
        alloc_dump_free(dm);
        cr_assert_eq(pool_used(c, "h"), sum, "%s: pool h says %llu bytes used, its live regions add up to %llu", when,
                     pool_used(c, "h"), (unsigned long long)sum);
}

/* The id of the region of pool h that is live now and is not except (0: none yet). */
static uint64_t find_new_region(uint64_t except) {
        struct alloc_dump *dm;
        uint64_t id = 0;

        cr_assert_eq(alloc_dump(c, "h", &dm), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < dm->nregions && !id; i++)
                if (dm->regions[i].id != except)
                        id = dm->regions[i].id;
        alloc_dump_free(dm);
        return id;
}

/*
 * Fault 8: a ZERO region over 1 MiB is zeroed on a worker thread before its
 * Alloc is answered.  A Free (or Detach) of its id, pipelined on the same
 * connection before that answer, released it; the Alloc was then answered
 * with memory back in the pool, and the next Alloc got the same offset.  The
 * region is the connection's only once its Alloc is answered: before that,
 * Free and Detach are NOT_FOUND.  The id is learned from a Dump on another
 * connection while the zeroing runs.
 */
Test(faults, region_released_while_zeroed_is_not_handed_out_twice) {
        enum { ROUNDS = 20, SIZE = 64 << 20 };
        int raced = 0;

        start("[pool h]\nkind = host\nsize = 256M\n", 0, NULL);
        c = daemon_connect(&d);
        int fd = raw_hello("pipeliner");

        for (int i = 0; i < ROUNDS; i++) {
                uint64_t aid = 100 + 2 * (uint64_t)i, fid = aid + 1, id = 0, off = 0;
                bool detach = i % 2, alloc_first, held;
                int ferr = -1;

                send_alloc(fd, aid, "h", SIZE, ALLOCD__FLAG__ZERO);
                for (long end = now_ms() + 10000; !(id = find_new_region(0)) && now_ms() < end;)
                        ;
                cr_assert_neq(id, 0, "round %d: the region never showed in Dump", i);
                send_release(fd, fid, id, detach);

                /* Both answers, in the order allocd sent them. */
                Allocd__Reply *first = recv_reply(fd, 10000, "Alloc or Free"), *second;
                cr_assert_not_null(first, "round %d: allocd closed the connection", i);
                second = recv_reply(fd, 10000, "Alloc or Free");
                cr_assert_not_null(second, "round %d: allocd closed the connection", i);
                alloc_first = first->id == aid;
                Allocd__Reply *ar = alloc_first ? first : second, *fr = alloc_first ? second : first;
                cr_assert_eq(ar->id, aid);
                cr_assert_eq(fr->id, fid);
                cr_assert_eq(ar->error, ALLOCD__ERROR__OK, "round %d: Alloc: error %d: %s", i, ar->error, ar->message);
                cr_assert_eq(ar->body_case, ALLOCD__REPLY__BODY_REGION);
                cr_assert_eq(ar->region->id, id, "round %d: Alloc answered region %llu, Dump showed %llu", i,
                             (unsigned long long)ar->region->id, (unsigned long long)id);
                off = ar->region->offset;
                ferr = fr->error;
                if (!alloc_first) {
                        raced++;
                        cr_expect_eq(ferr, ALLOCD__ERROR__NOT_FOUND,
                                     "round %d: %s of region %llu, still being zeroed, was answered %d (%s) before "
                                     "its Alloc was; want NOT_FOUND",
                                     i, detach ? "Detach" : "Free", (unsigned long long)id, ferr,
                                     fr->message ? fr->message : "OK");
                } else {
                        cr_assert_eq(ferr, ALLOCD__ERROR__OK, "round %d: %s after the Alloc's answer: error %d: %s", i,
                                     detach ? "Detach" : "Free", ferr, fr->message);
                }
                allocd__reply__free_unpacked(first, NULL);
                allocd__reply__free_unpacked(second, NULL);
                held = ferr != ALLOCD__ERROR__OK || !alloc_first; /* what the client was told it holds */

                check_pool("after the answers");
                if (held) {
                        /* The next client must not get the same memory. */
                        struct alloc_region other;
                        cr_assert_eq(alloc_region_new(c, "h", SIZE, NULL, &other), 0, "%s", alloc_last_error());
                        cr_expect(other.addr + other.size <= off || off + SIZE <= other.addr,
                                  "round %d: region %llu at %#llx, which the client holds, was handed out again", i,
                                  (unsigned long long)id, (unsigned long long)off);
                        cr_assert_eq(alloc_region_free(c, other.id), 0, "%s", alloc_last_error());
                        cr_assert_eq(find_new_region(0), id,
                                     "round %d: the client was handed region %llu, and allocd no longer has it", i,
                                     (unsigned long long)id);
                        send_release(fd, fid, id, false);
                        Allocd__Reply *r = recv_reply(fd, 10000, "Free");
                        cr_assert_not_null(r);
                        cr_assert_eq(r->error, ALLOCD__ERROR__OK, "round %d: Free after the Alloc's answer: %s", i,
                                     r->message);
                        allocd__reply__free_unpacked(r, NULL);
                }
                cr_assert_eq(pool_used(c, "h"), 0, "round %d: the pool is not empty", i);
        }
        cr_log_info("zeroing: the release overtook the Alloc's answer in %d of %d rounds", raced, ROUNDS);
        close(fd);
        cr_assert_eq(wait_used(c, "h", 0), 0);
        c = alloc_disconnect(c);
        stop();
}

/*
 * Fault 9: the region table grew with the most regions ever held and never
 * shrank: 262,144 regions left allocd about 114 MB larger after their client
 * had gone.  The table must give the memory back when the regions go.  (The
 * pool's range arena keeps its tags, 56 bytes a region at the most, about
 * 15 MiB here: the margin allows for them.)
 */
Test(faults, region_table_shrinks) {
        enum { NREG = 262144, BATCH = 64 };

        start("[daemon]\nmax_regions_per_connection = 262144\n[pool f]\nkind = fpga\nranges = 0x0+2G\n", 0, NULL);
        c = daemon_connect(&d);
        unsigned long long rss0 = daemon_rss(&d);
        int fd = raw_hello("many regions");

        for (int i = 0; i < NREG; i += BATCH) {
                for (int j = 0; j < BATCH; j++)
                        send_alloc(fd, 1 + (uint64_t)(i + j), "f", 4096, 0);
                for (int j = 0; j < BATCH; j++) {
                        Allocd__Reply *r = recv_reply(fd, 10000, "Alloc");
                        cr_assert_not_null(r, "allocd closed the connection after %d regions", i + j);
                        cr_assert_eq(r->error, ALLOCD__ERROR__OK, "region %d: error %d: %s", i + j, r->error,
                                     r->message);
                        allocd__reply__free_unpacked(r, NULL);
                }
        }
        cr_assert_eq(pool_used(c, "f"), (unsigned long long)NREG * 4096);
        unsigned long long full = daemon_rss(&d);
        close(fd);
        cr_assert_eq(wait_used(c, "f", 0), 0, "the regions were not released within 10 s");

        /* Given a few seconds, in case allocd shrinks the table lazily. */
        unsigned long long rss = daemon_rss(&d);
        for (long end = now_ms() + 3000; rss >= rss0 + 32 * MiB && now_ms() < end; rss = daemon_rss(&d))
                usleep(100000);
        cr_log_info("region table: VmRSS %llu KiB, %llu with %d regions, %llu after", rss0 >> 10, full >> 10, NREG,
                    rss >> 10);
        if (UNDER_ASAN)
                cr_log_info("under ASan, whose allocator keeps what allocd frees resident, its size is not checked");
        else
                cr_expect_lt(rss, rss0 + 32 * MiB,
                             "allocd is %llu MiB larger than before %d regions came and went (%llu MiB with them)",
                             (rss - rss0) / MiB, NREG, (full - rss0) / MiB);
        c = alloc_disconnect(c);
        stop();
}

/*
 * A Dump that lists few of the regions it walks past (another pool's, or another user's) looks at
 * a bounded number of slots and says where to go on (DumpReply.next), rather than walking the
 * whole table in allocd's loop for one page.  Found by review: ~20 ms a Dump at 1M regions.
 */
#define DUMP_FILL 20 /* batches of 1024 in f: more than a Dump looks at (16384 slots) */
#define DUMP_CONFIG "[pool f]\nkind = fpga\nranges = 0x0+1G\n[pool g]\nkind = fpga\nranges = 0x0+1M\n"

/* batches of 1024 regions in f, then one in g: its id. */
static uint64_t fill(struct alloc_client *k, size_t batches) {
        static struct alloc_region rs[ALLOC_BATCH_MAX];
        static uint64_t sizes[ALLOC_BATCH_MAX];

        for (size_t i = 0; i < ALLOC_BATCH_MAX; i++)
                sizes[i] = 4096;
        for (size_t b = 0; b < batches; b++)
                cr_assert_eq(alloc_region_new_batch(k, "f", sizes, ALLOC_BATCH_MAX, NULL, rs), 0, "%s",
                             alloc_last_error());
        cr_assert_eq(alloc_region_new(k, "g", 4096, NULL, rs), 0, "%s", alloc_last_error());
        return rs[0].id;
}

Test(faults, a_dump_that_lists_nothing_stops_looking) {
        uint64_t after = 0;
        int pages = 0;

        start(DUMP_CONFIG, 0, NULL);
        c = daemon_connect(&d);
        cr_assert_eq(alloc_region_free(c, fill(c, DUMP_FILL)), 0);
        int fd = raw_hello("dump");
        for (bool more = true; more;) {
                cr_assert_eq(send_dump(fd, (uint64_t)++pages, after, "g"), 0);
                Allocd__Reply *r = recv_reply(fd, 10000, "Dump");
                cr_assert(r && r->error == ALLOCD__ERROR__OK && r->body_case == ALLOCD__REPLY__BODY_DUMP);
                cr_expect_eq(r->dump->n_regions, 0, "pool g has no regions");
                more = r->dump->more;
                cr_assert_eq(r->dump->has_next, more, "next is set whenever more is");
                if (pages == 1)
                        cr_expect(more && (uint32_t)r->dump->next == 16383,
                                  "the first page looked at 16384 slots (more %d, next %#llx)", more,
                                  (unsigned long long)r->dump->next);
                cr_assert(!more || r->dump->next > after, "next moves on");
                after = r->dump->next;
                allocd__reply__free_unpacked(r, NULL);
        }
        cr_expect_eq(pages, 2, "%d pages for %d slots", pages, DUMP_FILL * ALLOC_BATCH_MAX + 1);
        close(fd);
        c = alloc_disconnect(c);
        stop();
}

static int list_g(const struct alloc_region_info *x, void *data) {
        uint64_t *seen = data;
        cr_expect_str_eq(x->pool, "g");
        seen[++seen[0]] = x->id;
        return seen[0] == 4;
}

/* g's regions lie each past a gap longer than a Dump looks: alloc_dump_each follows next over it. */
Test(faults, alloc_dump_each_goes_past_empty_pages) {
        uint64_t g[3], seen[5] = {0};
        struct alloc_dump *all;

        start(DUMP_CONFIG, 0, NULL);
        c = daemon_connect(&d);
        c2 = daemon_connect(&d);
        g[0] = fill(c, 0);
        g[1] = fill(c, DUMP_FILL);
        g[2] = fill(c2, DUMP_FILL); /* max_regions_per_connection 65536 */
        cr_assert_eq(alloc_dump_each(c, "g", list_g, seen), 0, "%s", alloc_last_error());
        cr_assert_eq(seen[0], 3, "listed %llu of pool g's 3 regions", (unsigned long long)seen[0]);
        cr_expect(seen[1] == g[0] && seen[2] == g[1] && seen[3] == g[2]);
        cr_assert_eq(alloc_dump(c, NULL, &all), 0, "%s", alloc_last_error());
        cr_expect_eq(all->nregions, 2 * DUMP_FILL * ALLOC_BATCH_MAX + 3);
        alloc_dump_free(all);
        c = alloc_disconnect(c);
        c2 = alloc_disconnect(c2);
        stop();
}

/* ---- a request the client could not send ---- */

/*
 * helper-client each-free 3 h with its sendto number when failing with ENOBUFS (#1 is the Hello, #2-#4 the
 * Allocs, #5-#7 the pipelined Frees): its two lines in alloc and freed, and how long it took.
 */
static long send_fails(int when, char *alloc, char *freed, size_t size) {
        char cmd[512];

        snprintf(cmd, sizeof(cmd),
                 /* LeakSanitizer cannot run under ptrace: it would say so and fail the sanitizers' pass. */
                 "ALLOCD_TIMEOUT=20s ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "
                 "timeout 60 strace -f -qq -o /dev/null -e trace=sendto "
                 "-e inject=sendto:error=ENOBUFS:when=%d %s %s each-free 3 h </dev/null 2>&1",
                 when, HELPER_PATH, d.sock);
        long t0 = now_ms();
        FILE *f = popen(cmd, "r");
        cr_assert_not_null(f);
        cr_assert_not_null(fgets(alloc, (int)size, f));
        if (!fgets(freed, (int)size, f))
                *freed = '\0';
        pclose(f);
        return now_ms() - t0;
}

/*
 * A send that fails for a reason other than a hang-up (ENOBUFS, ENOMEM: the kernel short of memory for a moment)
 * sent nothing, as a SEQPACKET send is one packet or none.  The library took the healthy connection for lost: an
 * Alloc read on, for a reason allocd never sent, until its deadline (ALLOCD_TIMEOUT; for ever without one), and
 * every call after it failed, as after a pipelined Free whose send failed; found by injecting the failure with
 * strace.  The call fails at once, saying why, and the connection carries on.  strace makes the failure: without
 * it the test is skipped.
 */
Test(faults, a_request_that_could_not_be_sent_fails_alone_and_at_once) {
        char alloc[512] = "", freed[512] = "";
        int ok = -1, err = -1;

        if (system("strace -V >/dev/null 2>&1") != 0)
                cr_skip_test("strace is not installed (scripts/install-deps.sh installs it)");
        start("[pool h]\nkind = host\nsize = 16M\n", 0, NULL);
        long took = send_fails(2, alloc, freed, sizeof(alloc));
        cr_assert_eq(sscanf(alloc, "%d %d", &ok, &err), 2, "helper-client said: %s", alloc);
        cr_expect_lt(took, 5000, "the failed send took %ld ms to report", took);
        cr_expect_eq(err, ENOBUFS, "helper-client said: %s", alloc);
        cr_expect_eq(ok, 2, "the connection did not carry on after the failed send: %s", alloc);
        cr_expect(strstr(alloc, "not sent"), "the message does not say the request was not sent: %s", alloc);
        cr_expect_eq(sscanf(freed, "%d %d", &ok, &err), 2, "helper-client said: %s", freed);
        cr_expect_eq(ok, 2, "the frees: %s", freed);

        /* The first Free's send fails: the other two go on the same connection. */
        send_fails(5, alloc, freed, sizeof(alloc));
        cr_assert_eq(sscanf(freed, "%d %d", &ok, &err), 2, "helper-client said: %s", freed);
        cr_expect_eq(err, ENOBUFS, "helper-client said: %s", freed);
        cr_expect_eq(ok, 2, "the connection did not carry on after the failed send: %s", freed);
        c = daemon_connect(&d);
        cr_expect_eq(wait_used(c, "h", 0), 0);
}

/* ---- a configuration file that cannot be read ---- */

/*
 * A read of the configuration file that failed (EIO) was taken for its end: allocd, --check-config and SIGHUP
 * went on with the lines read so far, so a reload applied part of the file (its first pools, limits and access
 * rules) and a file read from its start said "configures no pools"; found by injecting read failures into a
 * reload with strace.  /proc/self/mem is a regular file whose first read fails with EIO, as a failing disk's
 * would.  The file is refused, saying why, and nothing of it is used.
 */
Test(faults, a_configuration_file_that_cannot_be_read_is_refused_with_the_reason) {
        char cmd[256], out[512] = "";
        size_t n;

        snprintf(cmd, sizeof(cmd), "%s --check-config --config /proc/self/mem 2>&1", ALLOCD_PATH);
        FILE *f = popen(cmd, "r");
        cr_assert_not_null(f);
        n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        int status = pclose(f);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 78, "--check-config: status %d: %s", status, out);
        cr_expect(strstr(out, "reading it failed: Input/output error"), "--check-config said: %s", out);
}

/* ---- too few file descriptors for the event loop ---- */

/*
 * With RLIMIT_NOFILE too low for libuv's own fds (an eventfd, two pipes, the epoll fd), uv_default_loop
 * returned NULL and allocd crashed with SIGSEGV on it, saying nothing; found by starting allocd under prlimit
 * --nofile=8.  It says what failed and exits 1.
 */
Test(faults, too_few_fds_for_the_event_loop_is_said_not_a_crash) {
        char log[] = "/tmp/allocd-log-XXXXXX";
        int fd = mkstemp(log);

        cr_assert(fd >= 0);
        close(fd);
        int r = daemon_spawn_opts(&d, "[pool h]\nkind = host\nsize = 16M\n",
                                  &(struct daemon_opts){.stderr_file = log, .nofile = 8});
        const char *text = slurp(log);
        daemon_stop(&d); /* its directory */
        unlink(log);
        cr_expect_eq(r, 1, "allocd exited with %d; its log:\n%s", r, text);
        cr_expect(strstr(text, "making the event loop: Too many open files"), "allocd said:\n%s", text);
}

/*
 * A client with no fd left (RLIMIT_NOFILE) for a region's memfd: the kernel dropped the fd and the library said
 * "the connection to allocd is gone (No buffer space available)"; found running a client under prlimit
 * --nofile=4.  It says EMFILE and why.
 */
Test(faults, a_client_out_of_fds_is_told_so) {
        char cmd[512], out[512] = "";

        start("[pool h]\nkind = host\nsize = 16M\n", 0, NULL);
        snprintf(cmd, sizeof(cmd), "prlimit --nofile=4 %s %s each 1 h </dev/null 2>&1", HELPER_PATH, d.sock);
        FILE *f = popen(cmd, "r");
        cr_assert_not_null(f);
        cr_assert_not_null(fgets(out, sizeof(out), f));
        pclose(f);
        cr_expect(!strncmp(out, "0 24 ", 5), "helper-client said: %s", out);
        cr_expect(strstr(out, "RLIMIT_NOFILE"), "helper-client said: %s", out);
}

/*
 * allocd out of fds (isolation = region: one fd a live region, here under RLIMIT_NOFILE = 64): accept failed
 * with a line that said neither how full allocd was nor what to do.  It says the limit, the connections open
 * and the settings to change, once while connections wait, and allocd serves again once fds are freed.
 */
Test(faults, out_of_fds_at_accept_says_the_limit_and_what_to_do) {
        enum { NOFILE = 64, NCONN = 8 };
        static const char *const said[] = {"accept: Too many open files (RLIMIT_NOFILE = 64; connections open: ", NULL};
        static const char *const fix[] = {"raise LimitNOFILE= (allocd.service), or lower max_connections", NULL};
        struct alloc_region r;
        int fds[NCONN], n = 0;
        uint64_t last = 0;

        start("[pool r]\nkind = host\nsize = 1M\nisolation = region\n", NOFILE, NULL);
        c = daemon_connect(&d);
        for (; n < 256 && alloc_region_new(c, "r", 4096, NULL, &r) == 0; n++)
                last = r.id;
        cr_assert_lt(n, NOFILE, "%d regions, each an fd in allocd, did not run it out of fds", n);
        for (int i = 0; i < NCONN; i++) {
                bool ok;
                fds[i] = raw_socket(true, &ok);
        }
        for (int i = 0; i < 500 && !log_count(said); i++)
                usleep(10000);
        /* One fd freed lets one connection in while the others wait: still the same shortage, not said again. */
        cr_assert_eq(alloc_region_free(c, last), 0, "%s", alloc_last_error());
        usleep(300000);
        cr_expect_eq(log_count(said), 1, "no single line with '%s':\n%s", said[0], slurp(log_path));
        cr_expect_eq(log_count(fix), 1, "no single line with '%s':\n%s", fix[0], slurp(log_path));
        for (int i = 0; i < NCONN; i++)
                close(fds[i]);
        c = alloc_disconnect(c);
        close(raw_hello("after"));
        stop();
}
