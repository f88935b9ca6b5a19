/* SPDX-License-Identifier: MIT */
/*
 * Who can touch which bytes (issue 14), tried as an attacker would: another
 * uid (nobody) that speaks the protocol itself (tests/attacker.c) and does to
 * the fd allocd hands it whatever the kernel allows; names squatted across
 * pools and uids; text that is not text.  Each attack must be refused or
 * harmless, and the bytes of the region's owner must be as it left them.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "text.h"

#define NOBODY 65534

static struct daemon d;
static struct alloc_client *c;

static const char *conf = "[pool shared]\nkind = host\nsize = 4M\nmode = 0664\n"
                          "[pool iso]\nkind = host\nsize = 4M\nmode = 0664\nisolation = region\n"
                          "[pool isorw]\nkind = host\nsize = 4M\nmode = 0666\nisolation = region\n"
                          "[pool jobs]\nkind = host\nsize = 1M\nmode = 0666\nnames = job42/*, exact\n"
                          "[pool bobs]\nkind = host\nsize = 1M\nmode = 0666\n";

static void setup(void) {
        daemon_start(&d, conf);
        c = daemon_connect(&d);
}

static void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(isolation, .init = setup, .fini = teardown, .timeout = 60);

/* Copies prog into the daemon's directory, where nobody can reach it. */
static void install(const char *prog, char *path, size_t size) {
        char cmd[512];

        snprintf(path, size, "%s/%s", d.dir, strrchr(prog, '/') + 1);
        if (access(path, X_OK) < 0) {
                snprintf(cmd, sizeof(cmd), "install -m 0755 '%s' '%s'", prog, path);
                cr_assert_eq(system(cmd), 0, "%s", cmd);
        }
}

/* Runs argv as nobody:nogroup, its stdout into out; returns its wait status. */
static int run_as_nobody(char *const argv[], char *out, size_t size) {
        int pfd[2], status;
        size_t n = 0;
        ssize_t k;

        cr_assert_eq(pipe(pfd), 0);
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                dup2(pfd[1], 1);
                if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test())
                        _exit(101);
                execv(argv[0], argv);
                _exit(102);
        }
        close(pfd[1]);
        while (n + 1 < size && (k = read(pfd[0], out + n, size - 1 - n)) > 0)
                n += (size_t)k;
        out[n] = '\0';
        close(pfd[0]);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        return status;
}

/* The attacker's report on NAME: one line of key=value words. */
static void attack(const char *name, char *out, size_t size) {
        char prog[256];

        install(ATTACKER_PATH, prog, sizeof(prog));
        int status = run_as_nobody((char *const[]){prog, d.sock, (char *)name, NULL}, out, size);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "attacker: status %#x: %s", status, out);
}

static void expect_word(const char *report, const char *word) {
        char w[80];

        snprintf(w, sizeof(w), " %s ", word);
        char line[1024];
        snprintf(line, sizeof(line), " %s ", report);
        *strchrnul(line, '\n') = ' ';
        cr_expect(strstr(line, w), "'%s' is not in: %s", word, report);
}

/* What a holder that may only attach could do with its fd: read "top secret", and nothing else. */
static void expect_read_only(const char *out) {
        static const char *const words[] = {"ro=1",           "map_rw=EACCES",    "write=EBADF",
                                            "punch=EBADF",    "reopen_rw=EACCES", "mprotect=EACCES",
                                            "read=top.secret"};

        for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++)
                expect_word(out, words[i]);
}

static void named(const char *pool, const char *name, const char *text, struct alloc_region *r) {
        struct alloc_opts o = {.name = name};

        cr_assert_eq(alloc_region_new(c, pool, 4096, &o, r), 0, "%s", alloc_last_error());
        cr_assert_not_null(r->ptr);
        strcpy(r->ptr, text);
}

/* Mode 0664: nobody may attach, not allocate.  Its fd is read-only: no write, no hole, no way back to write. */
Test(isolation, attach_only_gets_a_read_only_fd) {
        struct alloc_region secret, other;
        char out[1024];

        named("shared", "secret", "top secret", &secret);
        cr_assert_eq(alloc_region_new(c, "shared", 4096, NULL, &other), 0);
        strcpy(other.ptr, "not shared");
        attack("secret", out, sizeof(out));
        expect_word(out, "pool_fd=1");
        expect_read_only(out);
        /* isolation = pool: the fd is the whole pool's, which the docs say; reading it is the stated choice. */
        expect_word(out, "size=4194304");
        cr_assert_str_eq(secret.ptr, "top secret", "the owner's bytes are as it left them");
        cr_assert_str_eq(other.ptr, "not shared");
}

/* isolation = region: the attacker's fd is its region's alone, and read-only too. */
Test(isolation, region_isolation_hands_out_one_region) {
        struct alloc_region secret, other;
        char out[1024];

        named("iso", "secret", "top secret", &secret);
        cr_assert_eq(alloc_region_new(c, "iso", 4096, NULL, &other), 0);
        strcpy(other.ptr, "not shared");
        attack("secret", out, sizeof(out));
        expect_word(out, "size=4096");
        expect_word(out, "region_fd=1");
        expect_word(out, "pool_fd=0");
        expect_read_only(out);
        cr_assert_str_eq(secret.ptr, "top secret");
        cr_assert_str_eq(other.ptr, "not shared");
}

/* One who may allocate gets a writable fd, still of its one region only. */
Test(isolation, region_isolation_writable_holder_sees_its_region_only) {
        struct alloc_region shared, other;
        char out[1024];

        named("isorw", "rw", "writable", &shared);
        cr_assert_eq(alloc_region_new(c, "isorw", 8192, NULL, &other), 0);
        strcpy(other.ptr, "not shared");
        attack("rw", out, sizeof(out));
        expect_word(out, "ro=0");
        expect_word(out, "size=4096");
        expect_word(out, "write=OK");
        expect_word(out, "punch=OK");
        cr_assert_eq(((char *)shared.ptr)[0], 0, "a holder that may write may punch a hole too: in its region only");
        cr_assert_str_eq(other.ptr, "not shared");
}

/* Through liballoc-client: ptr is NULL for a read-only region, and a write through cptr faults. */
Test(isolation, library_maps_read_only) {
        struct alloc_region mine, r;
        char prog[256], out[256];

        named("shared", "ro", "read me", &mine);
        install(HELPER_PATH, prog, sizeof(prog));
        int status = run_as_nobody((char *const[]){prog, d.sock, "expect", "ro", "read me", NULL}, out, sizeof(out));
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper reads it: %#x", status);
        status = run_as_nobody((char *const[]){prog, d.sock, "scribble", "ro", NULL}, out, sizeof(out));
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "a write faults: status %#x", status);
        cr_assert_str_eq(mine.ptr, "read me");
        /* Its owner (root here) may allocate: it attaches writable. */
        cr_assert_eq(alloc_region_attach(c, "ro", NULL, &r), 0);
        cr_assert_not(r.read_only);
        cr_assert_eq(r.ptr, r.cptr);
}

/* isolation = region in this process: attaches share one mapping, and the last reference unmaps it. */
Test(isolation, region_mapping_lives_as_long_as_a_reference) {
        struct alloc_region a, b, x;

        named("iso", "twice", "hello", &a);
        cr_assert_eq(alloc_region_attach(c, "twice", NULL, &b), 0);
        cr_assert_eq(b.ptr, a.ptr, "one mapping for every reference of this process");
        cr_assert_eq(alloc_region_detach(c, b.id), 0);
        cr_assert_str_eq(a.ptr, "hello", "still mapped: the Alloc's reference is held");
        cr_assert_eq(alloc_region_new(c, "iso", 2 << 20, &(struct alloc_opts){.flags = ALLOC_ZERO}, &x), 0);
        cr_assert_eq(((char *)x.ptr)[(2 << 20) - 1], 0, "a large region comes zeroed (its memory taken off the loop)");
        cr_assert_eq(alloc_region_free(c, a.id), 0);
        pid_t pid = test_fork();
        if (pid == 0) {
                signal(SIGSEGV, SIG_DFL); /* the kernel's fault, not a sanitizer's report */
                (void)*(volatile char *)a.ptr;
                _exit(0);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "freed: unmapped here (status %#x)", status);
        cr_assert_eq(pool_used(c, "iso"), 2 << 20);
}

/*
 * A freed region's memory goes back though a process still maps it (a fork of its holder, a program
 * that keeps the fd): else one that frees and allocates again, keeping each, takes memory without end.
 */
Test(isolation, freed_region_memory_goes_back_while_mapped) {
        enum { SIZE = 64 << 10 };
        unsigned char vec[SIZE / 4096];
        struct alloc_region a;
        int go[2], status;

        cr_assert_eq(alloc_region_new(c, "isorw", SIZE, NULL, &a), 0, "%s", alloc_last_error());
        memset(a.ptr, 'x', SIZE);
        cr_assert_eq(pipe(go), 0);
        pid_t pid = test_fork();
        if (pid == 0) {
                char b;
                int n = 0;

                close(go[1]);
                if (read(go[0], &b, 1) != 0 || mincore(a.ptr, SIZE, vec) < 0)
                        _exit(100);
                for (size_t i = 0; i < sizeof(vec); i++)
                        n += vec[i] & 1;
                _exit(n + (n == 0 && ((char *)a.ptr)[SIZE - 1] != 0 ? 50 : 0));
        }
        close(go[0]);
        cr_assert_eq(alloc_region_free(c, a.id), 0);
        cr_assert_eq(pool_used(c, "isorw"), 0, "the Free is served (a Free may be quiet)");
        close(go[1]);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status), "status %#x", status);
        cr_assert_eq(WEXITSTATUS(status), 0, "pages of the freed region still resident (or not zeros): %d",
                     WEXITSTATUS(status));
}

/* allocd's stop is no region's death: a client still running keeps its bytes, as with isolation = pool. */
Test(isolation, a_region_outlives_allocd_in_its_holder) {
        struct daemon other;
        struct alloc_region a;

        daemon_start(&other, "[pool iso]\nkind = host\nsize = 1M\nisolation = region\n");
        struct alloc_client *k = daemon_connect(&other);
        cr_assert_eq(alloc_region_new(k, "iso", 4096, NULL, &a), 0, "%s", alloc_last_error());
        strcpy(a.ptr, "still here");
        daemon_stop(&other);
        cr_assert_str_eq(a.ptr, "still here");
        alloc_disconnect(k);
}

/* A region says whose it is. */
Test(isolation, region_says_whose_it_is) {
        struct alloc_region r;

        named("shared", "n", "x", &r);
        cr_assert(!r.read_only, "root may allocate: the pool's fd came read-write");
        cr_assert_eq(r.owner, geteuid());
        cr_assert_str_eq(r.pool, "shared");
        cr_assert(r.sealed);
}

/* names = job42/...: only pool jobs may publish those names, whoever asks. */
Test(isolation, reserved_names_stay_in_their_pool) {
        struct alloc_region r;
        struct alloc_opts o = {.name = "job42/input"};

        cr_assert_eq(alloc_region_new(c, "bobs", 4096, &o, &r), -EACCES, "squatting in another pool");
        /* The pattern that reserves it, and where to allocate it instead: no "(its names = ...)" to decode. */
        cr_assert(strstr(alloc_last_error(), "the name 'job42/input' is reserved for pool jobs (its names = job42/*); "
                                             "allocate it in pool jobs (if its mode lets you), or pick a name no "
                                             "pool's names covers"),
                  "%s", alloc_last_error());
        o.name = "exact";
        cr_assert_eq(alloc_region_new(c, "bobs", 4096, &o, &r), -EACCES);
        cr_assert(strstr(alloc_last_error(), "(its names = exact)"), "%s", alloc_last_error());
        o.name = "job42/input";
        cr_assert_eq(alloc_region_new(c, "jobs", 4096, &o, &r), 0, "%s", alloc_last_error());
        o.name = "job43/input";
        cr_assert_eq(alloc_region_new(c, "bobs", 4096, &o, &r), 0, "names no pool reserves go anywhere");
}

/* A long refusal (a name of 255 bytes, a pattern as long as a line allows, pool names of 63) reaches the client whole.
 */
Test(isolation, a_refusal_quoting_long_names_is_not_cut) {
        char pool[64], other[64], pattern[256], name[256], config[1024];
        struct daemon big;
        struct alloc_region r;

        memset(pool, 'p', 63);
        pool[63] = '\0';
        memset(other, 'q', 63);
        other[63] = '\0';
        memset(pattern, 'n', 180); /* a config line is at most 197 characters */
        strcpy(pattern + 180, "*");
        memset(name, 'n', 255);
        name[255] = '\0';
        snprintf(config, sizeof(config),
                 "[pool %s]\nkind = host\nsize = 1M\nnames = %s\n[pool %s]\nkind = host\nsize = 1M\n", pool, pattern,
                 other);
        daemon_start(&big, config);
        struct alloc_client *k = daemon_connect(&big);
        struct alloc_opts o = {.name = name};
        cr_assert_eq(alloc_region_new(k, other, 4096, &o, &r), -EACCES, "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), pattern), "%s", alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "or pick a name no pool's names covers"), "cut: %s", alloc_last_error());
        alloc_disconnect(k);
        daemon_stop(&big);
}

/* Bob publishes first; alice's consumer, asking for her pool or her uid, is told, not fooled. */
Test(isolation, attach_checks_pool_and_owner) {
        char prog[256], line[128];
        int in[2], outp[2];
        struct alloc_region r;

        install(HELPER_PATH, prog, sizeof(prog));
        cr_assert_eq(pipe(in), 0);
        cr_assert_eq(pipe(outp), 0);
        pid_t pid = test_fork();
        if (pid == 0) {
                dup2(in[0], 0);
                dup2(outp[1], 1);
                close(in[1]);
                if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test())
                        _exit(101);
                execl(prog, "helper-client", d.sock, "names", "1", "bobs", (char *)NULL);
                _exit(102);
        }
        close(in[0]);
        close(outp[1]);
        cr_assert_gt(read(outp[0], line, sizeof(line) - 1), 0);
        cr_assert_eq(atoi(line), 1, "bob published helper-0: %s", line);
        struct alloc_attach_opts mine = {.by_owner = true, .owner = geteuid()};
        cr_assert_eq(alloc_region_attach(c, "helper-0", &mine, &r), -EEXIST);
        cr_assert(strstr(alloc_last_error(), "by uid 65534"), "%s", alloc_last_error());
        struct alloc_attach_opts jobs = {.pool = "jobs", .timeout_ms = 5000};
        cr_assert_eq(alloc_region_attach(c, "helper-0", &jobs, &r), -EEXIST, "at once, not after the wait");
        cr_assert_eq(alloc_region_attach(c, "helper-0", &(struct alloc_attach_opts){.pool = "nope"}, &r), -ENODEV);
        cr_assert_eq(alloc_region_attach(c, "helper-0", NULL, &r), 0);
        cr_assert_eq(r.owner, NOBODY, "the region says whose it is");
        cr_assert_str_eq(r.pool, "bobs");
        struct alloc_attach_opts bob = {.by_owner = true, .owner = NOBODY, .pool = "bobs"};
        cr_assert_eq(alloc_region_attach(c, "helper-0", &bob, &r), 0, "%s", alloc_last_error());
        close(in[1]);
        close(outp[0]);
        waitpid(pid, NULL, 0);
}

/* Names and client names are UTF-8 without control characters. */
Test(isolation, text_is_text) {
        static const char *const bad[] = {
                "\xff",
                "a\xc0\xaf",
                "\xed\xa0\x80",
                "x\xc2\x85y",
                "\x1b[31mred",
                "a\xe2\x80\xae"
                "b",
                "a\xe2\x81\xa6"
                "b",
                "tab\there",
                "\xf4\x90\x80\x80",
                "cut\xe2\x82",
        };
        struct alloc_region r;
        struct alloc_client *k;

        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                struct alloc_opts o = {.name = bad[i]};
                cr_expect_eq(alloc_region_new(c, "bobs", 4096, &o, &r), -EINVAL, "name %zu", i);
                cr_expect_eq(alloc_region_attach(c, bad[i], NULL, &r), -EINVAL, "attach %zu", i);
                cr_expect_eq(alloc_connect(&k, d.sock, bad[i]), -EINVAL, "client name %zu", i);
        }
        struct alloc_opts ok = {.name = "naïve € ✓ 名前"};
        cr_assert_eq(alloc_region_new(c, "bobs", 4096, &ok, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(pool_used(c, "bobs"), 4096, "the refused names took nothing");
}

/* Whatever a client calls itself or its process, allocctl prints text, and --json is valid UTF-8 JSON. */
Test(isolation, allocctl_escapes_what_clients_wrote) {
        char cmd[512], out[65536];
        struct alloc_client *k;
        struct alloc_region r;

        prctl(PR_SET_NAME, "\x1b]0;pwn\x07\xc2\x9b\xff", 0, 0, 0);
        cr_assert_eq(alloc_connect(&k, d.sock, "naïve"), 0);
        cr_assert_eq(alloc_region_new(k, "bobs", 4096, &(struct alloc_opts){.name = "名前"}, &r), 0);
        const char *cmds[] = {"clients", "dump", "--json clients", "--json dump"};
        for (size_t i = 0; i < 4; i++) {
                snprintf(cmd, sizeof(cmd), "%s --socket %s %s", ALLOCCTL_PATH, d.sock, cmds[i]);
                FILE *f = popen(cmd, "r");
                size_t n = fread(out, 1, sizeof(out) - 1, f);
                out[n] = '\0';
                cr_assert_eq(pclose(f), 0, "%s", cmd);
                for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
                        if (*line)
                                cr_expect(text_valid(line, sizeof(out)), "%s: a line that is not text: %s", cmd, line);
        }
        snprintf(cmd, sizeof(cmd), "%s --socket %s --json dump", ALLOCCTL_PATH, d.sock);
        FILE *f = popen(cmd, "r");
        size_t n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        pclose(f);
        json_object *o = json_tokener_parse(out);
        cr_assert_not_null(o, "allocctl --json dump parses");
        cr_assert(strstr(out, "名前"), "text that is text is shown as it is");
        json_object_put(o);
        alloc_disconnect(k);
}
