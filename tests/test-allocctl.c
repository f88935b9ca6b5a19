/* SPDX-License-Identifier: MIT */
/*
 * allocctl against a real allocd holding a known set of regions: each command
 * in text and JSON, compared field by field with what the test created, the
 * SVG map parsed as XML, and the exit codes.  The commands that change allocd
 * are in test-allocctl-actions.c; allocctl-common.c is what both share.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <json-c/json.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allocctl-common.h"
#include "allocd.pb-c.h"
#include "fake-allocd.h"
#include "wire.h"
#include "version.h"

TestSuite(allocctl, .init = setup, .fini = teardown, .timeout = 60);

Test(allocctl, status_json_matches_the_pools) {
        json_object *o = run_json("status", NULL), *pools = get(o, "pools");
        struct alloc_status *s;

        cr_assert_eq(alloc_status(c, &s), 0);
        cr_assert_str_eq(get_str(o, "version"), ALLOCD_VERSION);
        cr_assert_leq(get_u64(o, "uptime"), 60);
        cr_assert_eq(json_object_array_length(pools), 2);
        json_object *h = json_object_array_get_idx(pools, 0), *f = json_object_array_get_idx(pools, 1);
        cr_assert_str_eq(get_str(h, "name"), "h");
        cr_assert_str_eq(get_str(h, "kind"), "host");
        cr_assert_eq(get_u64(h, "size"), 16 << 20);
        cr_assert_eq(get_u64(h, "used"), (4 << 20) + (1 << 20) + 4096);
        cr_assert_eq(get_u64(h, "free"), (16 << 20) - get_u64(h, "used"));
        cr_assert_eq(get_u64(h, "largest_free"), s->pools[0].largest_free);
        cr_assert_eq(get_u64(h, "regions"), 3);
        cr_assert_eq(get_u64(h, "waiters"), 0);
        cr_assert_float_eq(json_object_get_double(get(h, "fragmentation")),
                           1.0 - (double)s->pools[0].largest_free / (double)s->pools[0].free, 1e-9);
        cr_assert_str_eq(get_str(h, "backend"), "memfd");
        json_object *none = (json_object *)1;
        cr_assert(json_object_object_get_ex(f, "backend", &none) && none == NULL, "fpga pools have backend null");
        cr_assert_eq(json_object_array_length(get(o, "unavailable")), 0);
        cr_assert_str_eq(get_str(f, "kind"), "fpga");
        cr_assert_eq(get_u64(f, "size"), (256 << 20) + (1ull << 30));
        cr_assert_eq(get_u64(f, "used"), (64 << 20) + (300 << 20));
        cr_assert_eq(get_u64(f, "regions"), 2);
        json_object *spans = get(f, "spans");
        cr_assert_eq(json_object_array_length(spans), 2);
        /* In the order configured; allocctl map sorts them. */
        cr_assert_eq(get_u64(json_object_array_get_idx(spans, 0), "base"), FPGA_B);
        cr_assert_eq(get_u64(json_object_array_get_idx(spans, 1), "size"), 1ull << 30);
        json_object *me = find(get(o, "clients"), "pid", (uint64_t)getpid());
        cr_assert_not_null(me);
        alloc_status_free(s);
        json_object_put(o);
}

Test(allocctl, status_text_matches_the_pools) {
        struct run *r = allocctl(d.sock, "status", (char *)NULL);
        char line[512], *w[16];

        cr_assert_eq(r->status, 0, "%s", r->err);
        cr_assert(!strncmp(r->out, "allocd " ALLOCD_VERSION ", up ", strlen("allocd " ALLOCD_VERSION ", up ")), "%s",
                  r->out);
        cr_assert(strstr(r->out, ", 3 clients\n"), "%s", r->out); /* two testers and allocctl itself */
        cr_assert_not_null(line_starting(r->out, "h", line, sizeof(line)), "%s", r->out);
        cr_assert_eq(words(line, w, 16), 10);
        cr_assert_str_eq(w[1], "host");
        cr_assert_str_eq(w[2], "memfd");
        assert_human(w[3], 16 << 20);
        assert_human(w[4], (4 << 20) + (1 << 20) + 4096);
        assert_human(w[5], (16 << 20) - (5 << 20) - 4096);
        cr_assert_str_eq(w[8], "3");
        cr_assert_str_eq(w[9], "0");
        cr_assert_not_null(line_starting(r->out, "f", line, sizeof(line)));
        cr_assert_eq(words(line, w, 16), 10);
        cr_assert_str_eq(w[1], "fpga");
        cr_assert_str_eq(w[2], "-");
        assert_human(w[4], 364 << 20);
        cr_assert_str_eq(w[8], "2");
}

Test(allocctl, dump_json_lists_every_region_with_its_holders) {
        json_object *a = run_json("dump", NULL);

        cr_assert_eq(json_object_array_length(a), 5);
        json_object *x = find(a, "id", shared.id);
        cr_assert_not_null(x);
        cr_assert_str_eq(get_str(x, "pool"), "h");
        cr_assert_eq(get_u64(x, "addr"), shared.addr);
        cr_assert_eq(get_u64(x, "size"), 4 << 20);
        cr_assert_str_eq(get_str(x, "name"), "frame buffer");
        cr_assert_eq(get_u64(x, "refs"), 3); /* two holders and PERSIST */
        json_object *flags = get(x, "flags");
        cr_assert_eq(json_object_array_length(flags), 2);
        cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(flags, 0)), "zero");
        cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(flags, 1)), "persist");
        json_object *holders = get(x, "holders");
        cr_assert_eq(json_object_array_length(holders), 2);
        for (int i = 0; i < 2; i++) {
                json_object *h = json_object_array_get_idx(holders, i);
                cr_assert_eq(get_u64(h, "pid"), (uint64_t)getpid());
                cr_assert_eq(get_u64(h, "uid"), getuid());
                cr_assert_str_eq(get_str(h, "comm"), "test-allocctl");
        }
        x = find(a, "id", f2.id);
        cr_assert_not_null(x);
        cr_assert_str_eq(get_str(x, "kind"), "fpga");
        cr_assert_eq(get_u64(x, "addr"), f2.addr);
        cr_assert_eq(get_u64(x, "size"), 300 << 20);
        cr_assert(json_object_is_type(get(x, "name"), json_type_null));
        cr_assert_eq(json_object_array_length(get(x, "flags")), 0);
        cr_assert_str_eq(get_str(json_object_array_get_idx(get(x, "holders"), 0), "name"), "tester two");
        json_object_put(a);

        a = run_json("dump", "f", NULL);
        cr_assert_eq(json_object_array_length(a), 2);
        cr_assert_not_null(find(a, "id", f1.id));
        json_object_put(a);
}

Test(allocctl, dump_text_has_one_row_per_region) {
        struct run *r = allocctl(d.sock, "dump", (char *)NULL);
        char line[1024], id[32], addr[128], *w[16];

        cr_assert_eq(r->status, 0, "%s", r->err);
        cr_assert(strstr(r->out, "SIZE FORMAT "), "%s", r->out);
        snprintf(id, sizeof(id), "%llu", (unsigned long long)shared.id);
        cr_assert_not_null(line_starting(r->out, id, line, sizeof(line)), "%s", r->out);
        /* ID POOL ADDR SIZE FORMAT FLAGS REFS AGE HOLDERS NAME (the name may hold blanks: last) */
        cr_assert_eq(words(line, w, 16), 11);
        cr_assert_str_eq(w[1], "h");
        /* The row lines up under the header: ids are up to 20 digits (a random generation << 32 | slot). */
        cr_assert_eq(w[1] - line, strstr(r->out, "POOL") - r->out, "%s", r->out);
        cr_assert_eq(strtoull(w[2], NULL, 0), shared.addr);
        cr_assert_str_eq(w[3], "4MiB");
        cr_assert_str_eq(w[4], "raw");
        cr_assert_str_eq(w[5], "zero,persist");
        cr_assert_str_eq(w[6], "3");
        snprintf(addr, sizeof(addr), "%d/%u/test-allocctl,%d/%u/test-allocctl", (int)getpid(), (unsigned)getuid(),
                 (int)getpid(), (unsigned)getuid());
        cr_assert_str_eq(w[8], addr);
        cr_assert_str_eq(w[9], "frame");
        cr_assert_str_eq(w[10], "buffer");
        snprintf(id, sizeof(id), "%llu", (unsigned long long)f1.id);
        cr_assert_not_null(line_starting(r->out, id, line, sizeof(line)));
        cr_assert_eq(words(line, w, 16), 10);
        cr_assert_str_eq(w[1], "f");
        cr_assert_eq(strtoull(w[2], NULL, 16), f1.addr);
        cr_assert_str_eq(w[3], "64MiB");
        cr_assert_str_eq(w[4], "raw");
        cr_assert_str_eq(w[5], "-");
        cr_assert_str_eq(w[9], "-");
}

/* A falloc heap's region says so, with its geometry, in both forms. */
Test(allocctl, dump_shows_a_heaps_format) {
        struct alloc_opts o = {.format = ALLOC_FORMAT_FALLOC, .chunk_size = 256, .name = "heap"};
        struct alloc_region heap;
        char line[1024], id[32], *w[16];

        cr_assert_eq(alloc_region_new(c, "h", 1 << 20, &o, &heap), 0, "%s", alloc_last_error());
        struct run *r = allocctl(d.sock, "dump", (char *)NULL);
        cr_assert_eq(r->status, 0, "%s", r->err);
        snprintf(id, sizeof(id), "%llu", (unsigned long long)heap.id);
        cr_assert_not_null(line_starting(r->out, id, line, sizeof(line)), "%s", r->out);
        cr_assert_eq(words(line, w, 16), 10);
        cr_assert_str_eq(w[4], "falloc:256x4091", "1 MiB holds 4091 chunks of 256 bytes: %s", line);
        cr_assert_str_eq(w[9], "heap");
        json_object *a = run_json("dump", "h", NULL), *x = find(a, "id", heap.id);
        cr_assert_not_null(x);
        cr_assert_str_eq(get_str(x, "format"), "falloc");
        cr_assert_eq(get_u64(x, "chunk_size"), 256);
        cr_assert_eq(get_u64(x, "chunk_count"), 4091);
        x = find(a, "id", shared.id);
        cr_assert_str_eq(get_str(x, "format"), "raw");
        cr_assert(json_object_is_type(get(x, "chunk_size"), json_type_null));
        json_object_put(a);
}

Test(allocctl, clients_in_text_and_json) {
        json_object *a = run_json("clients", NULL);
        int seen = 0;

        cr_assert_eq(json_object_array_length(a), 3);
        for (size_t i = 0; i < 3; i++) {
                json_object *k = json_object_array_get_idx(a, i);
                const char *name = get_str(k, "name");
                if (!strcmp(name, "tester one")) {
                        seen |= 1;
                        cr_assert_eq(get_u64(k, "regions"), 3);
                        cr_assert_eq(get_u64(k, "bytes"), (4 << 20) + (1 << 20) + (64 << 20));
                } else if (!strcmp(name, "tester two")) {
                        seen |= 2;
                        cr_assert_eq(get_u64(k, "regions"), 3);
                        cr_assert_eq(get_u64(k, "bytes"), 4096 + (300 << 20)); /* the attached region is not its */
                } else {
                        cr_assert_str_eq(name, "allocctl");
                        continue;
                }
                cr_assert_eq(get_u64(k, "pid"), (uint64_t)getpid());
                cr_assert_gt(get_u64(k, "serial"), 0);
                cr_assert_str_eq(get_str(k, "comm"), "test-allocctl");
                cr_assert_eq(get_u64(k, "waiters"), 0);
                cr_assert(!json_object_get_boolean(get(k, "restored")) && !json_object_get_boolean(get(k, "watched")));
        }
        cr_assert_eq(seen, 3);
        json_object_put(a);

        struct run *r = allocctl(d.sock, "clients", (char *)NULL);
        cr_assert_eq(r->status, 0);
        char *p = strstr(r->out, "tester two"), *w[16];
        cr_assert_not_null(p);
        char *start = p;
        while (start > r->out && start[-1] != '\n')
                start--;
        char line[256];
        snprintf(line, sizeof(line), "%.*s", (int)(p - start), start);
        cr_assert_eq(words(line, w, 16), 8);
        cr_assert_gt(atoi(w[0]), 0, "the serial");
        cr_assert_eq(atoi(w[1]), getpid());
        cr_assert_str_eq(w[3], "test-allocctl");
        cr_assert_str_eq(w[4], "3");
        assert_human(w[5], 4096 + (300 << 20));
        cr_assert_str_eq(w[7], "connected");
}

/* The segments allocctl map reports for pool f: spans sorted, the gap reserved, f1 and f2 used. */
Test(allocctl, map_segments_picture_and_svg) {
        char svg[200];
        snprintf(svg, sizeof(svg), "%s/f.svg", d.dir);
        json_object *o = run_json("map", "f", "--width=60", "--rows=5", NULL), *segs = get(o, "segments");
        size_t n = json_object_array_length(segs);
        uint64_t at = FPGA_A, used = 0;

        cr_assert_eq(get_u64(o, "start"), FPGA_A);
        cr_assert_eq(get_u64(o, "extent"), FPGA_B + (256 << 20) - FPGA_A);
        /* Contiguous, in order, covering everything; types where they must be. */
        for (size_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(segs, i);
                const char *type = get_str(s, "type");
                uint64_t base = get_u64(s, "base"), size = get_u64(s, "size");
                cr_assert_eq(base, at, "segment %zu starts at %#llx, not %#llx", i, (unsigned long long)base,
                             (unsigned long long)at);
                bool in_gap = base >= FPGA_A + (1ull << 30) && base < FPGA_B;
                cr_assert_eq(!strcmp(type, "reserved"), in_gap, "segment %zu at %#llx is %s", i,
                             (unsigned long long)base, type);
                if (!strcmp(type, "used")) {
                        uint64_t id = get_u64(s, "region");
                        cr_assert(id == f1.id || id == f2.id);
                        cr_assert_eq(base, id == f1.id ? f1.addr : f2.addr);
                        used += size;
                }
                at += size;
        }
        cr_assert_eq(at, FPGA_B + (256 << 20));
        cr_assert_eq(used, (64 << 20) + (300 << 20));
        json_object *pic = get(o, "picture");
        cr_assert_eq(json_object_array_length(pic), 5);
        size_t cols = get_u64(o, "columns");
        cr_assert_leq(cols, 60);
        for (size_t r = 0; r < 5; r++)
                cr_assert_eq(strlen(json_object_get_string(json_object_array_get_idx(pic, r))), cols);
        json_object_put(o);

        /* The text picture: 5 rows as wide as asked, the gap reserved ('x'), some cells used. */
        struct run *r = allocctl(d.sock, "map", "f", "--width", "60", "--rows", "5", "--svg", svg, (char *)NULL);
        cr_assert_eq(r->status, 0, "%s", r->err);
        int rows = 0;
        for (char *p = r->out; (p = strstr(p, " |")); p++) {
                char *e = strchr(p + 2, '|');
                cr_assert_not_null(e);
                cr_assert_eq((size_t)(e - p - 2), cols);
                rows++;
        }
        cr_assert_eq(rows, 5);
        cr_assert(strchr(r->out, '#') && strstr(r->out, "xxx"), "%s", r->out);
        cr_assert(strstr(r->out, "largest free range: 0x"), "%s", r->out);

        /* The SVG parses and has one shape per segment. */
        xmlDocPtr doc = xmlReadFile(svg, NULL, XML_PARSE_NONET);
        cr_assert_not_null(doc, "%s does not parse as XML", svg);
        xmlXPathContextPtr x = xmlXPathNewContext(doc);
        xmlXPathRegisterNs(x, BAD_CAST "s", BAD_CAST "http://www.w3.org/2000/svg");
        xmlXPathObjectPtr shapes = xmlXPathEvalExpression(BAD_CAST "//s:g[@id='segments']/*", x);
        cr_assert_not_null(shapes);
        cr_assert_eq((size_t)xmlXPathNodeSetGetLength(shapes->nodesetval), n);
        xmlXPathObjectPtr used_shapes =
                xmlXPathEvalExpression(BAD_CAST "//s:g[@id='segments']/s:path[@class='used']", x);
        cr_assert_eq(xmlXPathNodeSetGetLength(used_shapes->nodesetval), 2);
        xmlXPathFreeObject(used_shapes);
        xmlXPathFreeObject(shapes);
        xmlXPathFreeContext(x);
        xmlFreeDoc(doc);
}

Test(allocctl, map_of_a_full_pool_and_of_an_unknown_one) {
        struct alloc_region rest;
        struct alloc_opts nowait = {.flags = ALLOC_NOWAIT};
        cr_assert_eq(alloc_region_new(c, "h", (16 << 20) - (5 << 20) - 4096, &nowait, &rest), 0);
        struct run *r = allocctl(d.sock, "map", "h", "--width", "40", "--rows", "2", (char *)NULL);
        cr_assert_eq(r->status, 0, "%s", r->err);
        cr_assert(strstr(r->out, "largest free range: none"), "%s", r->out);
        for (char *p = r->out; (p = strstr(p, " |")); p++)
                for (p += 2; *p != '|'; p++)
                        cr_assert_eq(*p, '#', "a full pool shows cells not used: %s", r->out);

        r = allocctl(d.sock, "map", "nosuch", (char *)NULL);
        cr_assert_eq(r->status, 1);
        cr_assert(strstr(r->err, "no pool named 'nosuch'"), "%s", r->err);
        r = allocctl(d.sock, "dump", "nosuch", (char *)NULL);
        cr_assert_eq(r->status, 1);
        cr_assert(strstr(r->err, "'nosuch'"), "%s", r->err);
}

Test(allocctl, exit_codes_and_help) {
        struct run *r = allocctl("/nonexistent/allocd.sock", "status", (char *)NULL);
        cr_assert_eq(r->status, 3);
        cr_assert(strstr(r->err, "allocd is not running at /nonexistent/allocd.sock: start it with `systemctl start "
                                 "allocd` or pass --socket"),
                  "%s", r->err);
        /* Options may follow the command, --socket included (docs/cli.md). */
        r = allocctl(NULL, "status", "--socket", "/nonexistent/allocd.sock", (char *)NULL);
        cr_assert_eq(r->status, 3, "%s", r->err);
        r = allocctl(NULL, "status", "--socket=/nonexistent/allocd.sock", (char *)NULL);
        cr_assert_eq(r->status, 3, "%s", r->err);
        r = allocctl(NULL, "status", "--socket", (char *)NULL);
        cr_assert_eq(r->status, 2, "%s", r->err);
        r = allocctl(d.sock, "frobnicate", (char *)NULL);
        cr_assert_eq(r->status, 2);
        cr_assert(strstr(r->err, "unknown command 'frobnicate'"), "%s", r->err);
        cr_assert(strstr(r->err, "status, dump, clients, free, wait, disconnect, map and metrics"), "%s", r->err);
        r = allocctl(d.sock, "status", "--bogus", (char *)NULL);
        cr_assert_eq(r->status, 2);
        r = allocctl(d.sock, "status", "extra", (char *)NULL);
        cr_assert_eq(r->status, 2);
        /* The word that is wrong, not only the usage to compare it with. */
        cr_assert(strstr(r->err, "allocctl status: unexpected argument 'extra'"), "%s", r->err);
        cr_assert(strstr(r->err, "[--json] status\n"), "%s", r->err);
        r = allocctl(d.sock, "free", (char *)NULL);
        cr_assert_eq(r->status, 2);
        cr_assert(strstr(r->err, "allocctl free: missing ID"), "%s", r->err);
        r = allocctl(d.sock, "wait", (char *)NULL);
        cr_assert(strstr(r->err, "allocctl wait: missing NAME\n"), "%s", r->err);
        r = allocctl(d.sock, "map", (char *)NULL);
        cr_assert_eq(r->status, 2);
        r = allocctl(d.sock, "map", "f", "--width", "abc", (char *)NULL);
        cr_assert_eq(r->status, 2);
        cr_assert(strstr(r->err, "--width abc"), "%s", r->err);
        r = allocctl(d.sock, "map", "f", "--svg", (char *)NULL);
        cr_assert_eq(r->status, 2);
        /* Usage errors are found before connecting: no daemon needed. */
        r = allocctl("/nonexistent/allocd.sock", "map", (char *)NULL);
        cr_assert_eq(r->status, 2);
        r = allocctl(NULL, "--version", (char *)NULL);
        cr_assert_eq(r->status, 0);
        cr_assert_str_eq(r->out, "allocctl " ALLOCD_VERSION "\n");
        r = allocctl(NULL, "dump", "--help", (char *)NULL);
        cr_assert_eq(r->status, 0);
        cr_assert(strstr(r->out, "usage: allocctl [--socket PATH] [--json] dump [POOL]"), "%s", r->out);
        r = allocctl(NULL, "--help", (char *)NULL);
        cr_assert_eq(r->status, 0);
        cr_assert(strstr(r->out, "exit status: 0 ok, 1 the request failed, 2 usage error, 3 allocd unreachable"));
}

/* allocctl's exit status with stdout on /dev/full; what it said on stderr in err. */
static int to_full_disk(char *err, size_t size, const char *what, const char *arg) {
        int p[2], status;
        ssize_t n;

        cr_assert_eq(pipe(p), 0);
        pid_t pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
                if (full < 0 || dup2(full, 1) < 0 || dup2(p[1], 2) < 0)
                        _exit(127);
                execl(ALLOCCTL_PATH, "allocctl", "--socket", d.sock, what, arg, (char *)NULL);
                _exit(127);
        }
        close(p[1]);
        n = read(p[0], err, size - 1);
        err[n > 0 ? n : 0] = '\0';
        close(p[0]);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status));
        return WEXITSTATUS(status);
}

/* Output that could not be written (a full disk) is a failure: a script must not take it for the answer. */
Test(allocctl, output_that_cannot_be_written_fails) {
        const char *cmds[][2] = {
                {"status", NULL}, {"dump", NULL}, {"clients", NULL}, {"--json", "dump"}, {"--help", NULL}};
        char err[1024];

        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                int status = to_full_disk(err, sizeof(err), cmds[i][0], cmds[i][1]);
                cr_assert_eq(status, 1, "allocctl %s %s > /dev/full: exit %d, %s", cmds[i][0],
                             cmds[i][1] ? cmds[i][1] : "", status, err);
                cr_assert(strstr(err, "allocctl: could not write the output: No space left on device"), "%s", err);
        }
}

/* A region held by more connections than its HOLDERS column fits lists what fits and counts the rest as +N. */
Test(allocctl, dump_text_counts_every_holder) {
        enum { MORE = 24 };
        struct alloc_client *k[MORE];
        struct alloc_region r;
        char id[32], line[2048], *w[16];

        for (int i = 0; i < MORE; i++) {
                cr_assert_eq(alloc_connect(&k[i], d.sock, "holder"), 0);
                cr_assert_eq(alloc_region_attach(k[i], "frame buffer", NULL, &r), 0);
        }
        struct run *x = allocctl(d.sock, "dump", "h", (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        snprintf(id, sizeof(id), "%llu", (unsigned long long)shared.id);
        cr_assert_not_null(line_starting(x->out, id, line, sizeof(line)), "%s", x->out);
        cr_assert_eq(words(line, w, 16), 11);
        /* w[8]: pid/uid/command,...,+N: c, c2 and the MORE holders. */
        unsigned listed = 0, omitted = 0;
        char *save = NULL;
        for (char *h = strtok_r(w[8], ",", &save); h; h = strtok_r(NULL, ",", &save)) {
                if (*h == '+') {
                        omitted = (unsigned)atoi(h + 1);
                        cr_assert_null(strtok_r(NULL, ",", &save), "+N comes last: %s", line);
                        break;
                }
                unsigned pid, uid;
                char comm[32];
                cr_assert_eq(sscanf(h, "%u/%u/%31s", &pid, &uid, comm), 3, "a holder cut short: '%s' in %s", h, line);
                cr_assert_str_eq(comm, "test-allocctl", "a holder cut short: '%s' in %s", h, line);
                listed++;
        }
        cr_assert_gt(omitted, 0, "%s", line);
        cr_assert_eq(listed + omitted, 2 + MORE, "%u listed, %u omitted: %s", listed, omitted, line);
        for (int i = 0; i < MORE; i++)
                alloc_disconnect(k[i]);
}

/*
 * --socket '' (a script's unset variable) is a usage error: connect() took the empty path as the
 * abstract address of all zero bytes, which any user may bind and answer as allocd.
 */
Test(allocctl, an_empty_socket_path_is_refused) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX}; /* sun_path all zero: what connect() got for "" */
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        cr_assert_geq(s, 0);
        cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
        cr_assert_eq(listen(s, 4), 0);
        setenv("ALLOCD_TIMEOUT", "300ms", 1);
        struct run *r = allocctl("", "status", (char *)NULL);
        unsetenv("ALLOCD_TIMEOUT");
        int k = accept(s, NULL, NULL);
        cr_assert_lt(k, 0, "allocctl --socket '' connected to the abstract address");
        close(s);
        cr_assert_eq(r->status, 2, "%s", r->err);
        cr_assert(strstr(r->err, "the socket path is empty"), "%s", r->err);
}

/* "--" ends the options: a region or pool may be named "-x", and a script must be able to say so. */
Test(allocctl, words_after_a_double_dash_are_not_options) {
        struct alloc_region r;
        char want[64];

        cr_assert_eq(alloc_region_new(c, "h", 4096, &(struct alloc_opts){.name = "-dash"}, &r), 0, "%s",
                     alloc_last_error());
        struct run *x = allocctl(d.sock, "wait", "--", "-dash", "0", (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        snprintf(want, sizeof(want), "-dash: region %llu, host", (unsigned long long)r.id);
        cr_assert(strstr(x->out, want), "%s", x->out);
        x = allocctl(d.sock, "--json", "wait", "--", "-dash", (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        x = allocctl(d.sock, "wait", "-dash", "0", (char *)NULL);
        cr_assert_eq(x->status, 2, "before \"--\" it is an option: %s", x->err);
        x = allocctl(d.sock, "dump", "--", "-nosuch", (char *)NULL);
        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert(strstr(x->err, "'-nosuch'"), "%s", x->err);
        x = allocctl(d.sock, "map", "--width", "40", "--", "-nosuch", (char *)NULL);
        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert(strstr(x->err, "no pool named '-nosuch'"), "%s", x->err);
        x = allocctl(d.sock, "map", "--", "h", "--width", "40", (char *)NULL);
        cr_assert_eq(x->status, 2, "after \"--\", --width is a word: %s", x->err);
}

/*
 * allocd refusing allocctl's connection (its uid has max_connections_per_uid) is allocd's answer,
 * exit 1, not exit 3 ("not running": a script would restart a healthy allocd).
 */
Test(allocctl, a_refused_connection_is_not_an_unreachable_allocd) {
        enum { MAX = 300 };
        struct alloc_client *k[MAX];
        int n = 0, r;

        while (n < MAX && (r = alloc_connect(&k[n], d.sock, "hog")) == 0)
                n++;
        cr_assert_eq(r, -EMFILE, "after %d connections: %s", n, alloc_last_error());
        struct run *x = allocctl(d.sock, "status", (char *)NULL);
        for (int i = 0; i < n; i++)
                alloc_disconnect(k[i]);
        cr_assert_eq(x->status, 1, "%s", x->err);
        cr_assert(strstr(x->err, "refused the connection: uid"), "%s", x->err);
        cr_assert(strstr(x->err, "max_connections_per_uid"), "%s", x->err);
}

/* The longest names, each byte escaped (a backslash prints as two), are shown whole, not cut at 80 or 510 bytes. */
Test(allocctl, long_escaped_names_are_shown_whole) {
        char client[ALLOC_CLIENT_NAME_MAX + 1], region[ALLOC_NAME_MAX + 1], want[2 * ALLOC_NAME_MAX + 2];
        struct alloc_client *k;
        struct alloc_region r;

        memset(client, '\\', sizeof(client) - 1);
        client[sizeof(client) - 1] = '\0';
        memset(region, '\\', sizeof(region) - 1);
        region[sizeof(region) - 1] = '\0';
        cr_assert_eq(alloc_connect(&k, d.sock, client), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(k, "h", 4096, &(struct alloc_opts){.name = region}, &r), 0, "%s",
                     alloc_last_error());
        memset(want, '\\', 2 * ALLOC_CLIENT_NAME_MAX);
        strcpy(want + 2 * ALLOC_CLIENT_NAME_MAX, "\n");
        struct run *x = allocctl(d.sock, "clients", (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        char *at = strstr(x->out, " \\");
        cr_assert(at && !strncmp(at + 1, want, strlen(want)), "the client's name cut short: %s", x->out);
        memset(want, '\\', 2 * ALLOC_NAME_MAX);
        strcpy(want + 2 * ALLOC_NAME_MAX, "\n");
        x = allocctl(d.sock, "dump", "h", (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        at = strstr(x->out, " \\");
        cr_assert(at && !strncmp(at + 1, want, strlen(want)), "the region's name cut short: %s", x->out);
        alloc_disconnect(k);
}

/* Error messages quote what was asked: a terminal escape in it is shown as \xNN, not sent raw to the terminal. */
Test(allocctl, errors_escape_what_they_quote) {
        const char *cmds[] = {"dump", "map"};

        for (size_t i = 0; i < 2; i++) {
                struct run *x = allocctl(d.sock, cmds[i], "\x1b]0;pwned\x07", (char *)NULL);
                cr_assert_eq(x->status, 1, "%s", x->err);
                cr_assert_null(strchr(x->err, '\x1b'), "allocctl %s sent an escape to the terminal: %s", cmds[i],
                               x->err);
                cr_assert(strstr(x->err, "'\\x1b]0;pwned\\x07'"), "%s", x->err);
        }
}

/* A fake allocd whose own words (its version, a pool's backend and draining reason, a pool it could not make) carry
 * terminal escapes. */
static int hostile_words(const Allocd__Request *q, Allocd__Reply *r, int *fd, void *arg) {
        static Allocd__StatusReply st;
        static Allocd__PoolStatus p;
        static Allocd__UnavailablePool u;
        static Allocd__PoolStatus *ps[] = {&p};
        static Allocd__UnavailablePool *us[] = {&u};

        (void)fd;
        (void)arg;
        if (fake_hello(q, r))
                return 0;
        if (q->body_case == ALLOCD__REQUEST__BODY_STATUS) {
                allocd__status_reply__init(&st);
                allocd__pool_status__init(&p);
                allocd__unavailable_pool__init(&u);
                p.name = "p";
                p.has_kind = true;
                p.kind = ALLOCD__POOL_KIND__HOST;
                p.backend = "\033[2J";
                p.draining = "\033]0;owned\007";
                u.name = "g";
                u.reason = "\033[31mred";
                st.daemon_version = "\033[1mbold";
                st.n_pools = st.n_unavailable = 1;
                st.pools = ps;
                st.unavailable = us;
                r->body_case = ALLOCD__REPLY__BODY_STATUS;
                r->status = &st;
        }
        return 0;
}

/* The socket may be anyone's (--socket, ALLOCD_SOCKET): what allocd says is escaped as names are. */
Test(allocctl, allocds_own_words_reach_no_terminal_raw) {
        struct fake_allocd f;

        fake_allocd_start(&f, hostile_words, NULL);
        struct run *r = allocctl(f.path, "status", NULL);
        fake_allocd_stop(&f);
        cr_assert_eq(r->status, 0, "%s", r->err);
        cr_assert_null(strchr(r->out, '\033'), "%s", r->out);
        cr_assert(strstr(r->out, "\\x1b[1mbold") && strstr(r->out, "\\x1b[31mred") && strstr(r->out, "\\x1b]0;owned"),
                  "%s", r->out);
}
