/* SPDX-License-Identifier: MIT */
/*
 * Access control and limits.  Other uids are real: a child sets its uid and
 * gid to nobody/nogroup and execs helper-client, and allocd learns who it is
 * from SO_PEERCRED alone.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define NOBODY 65534

static struct daemon d;
static struct alloc_client *c;
static char log_path[160];

static const char *conf = "[daemon]\n"
                          "max_connections = 6\n"
                          "max_regions_per_connection = 3\n"
                          "max_names = 2\n"
                          "[pool open]\nkind = host\nsize = 1M\nmode = 0666\n"
                          "[pool private]\nkind = host\nsize = 1M\nmode = 0600\n"
                          "[pool alloconly]\nkind = host\nsize = 1M\nmode = 0662\n"
                          "[pool attachonly]\nkind = fpga\nranges = 0x0+1M\nmode = 0664\n"
                          "[pool grp]\nkind = host\nsize = 1M\nmode = 0060\ngroup = 65534\n"
                          "[pool quota]\nkind = host\nsize = 1M\nmode = 0666\nquota_per_uid = 64K\n";

static void setup(void) {
        char tmp[] = "/tmp/allocd-log-XXXXXX";
        int fd = mkstemp(tmp);
        close(fd);
        snprintf(log_path, sizeof(log_path), "%s", tmp);
        int r = daemon_spawn(&d, conf, NULL, log_path);
        cr_assert_eq(r, -1, "allocd exited with %d", r);
        c = daemon_connect(&d);
}

static void teardown(void) {
        alloc_disconnect(c);
        char helper[200];
        snprintf(helper, sizeof(helper), "%s/helper-client", d.dir);
        unlink(helper);
        daemon_stop(&d);
        unlink(log_path);
}

TestSuite(daemon_access, .init = setup, .fini = teardown, .timeout = 60);

/* Runs helper-client on sock ("-": the default) as nobody:nogroup; returns its exit code (0 or an errno value). */
static int as_nobody_on(const char *sock, const char *op, const char *arg, const char *size) {
        char helper[200], cmd[512];
        snprintf(helper, sizeof(helper), "%s/helper-client", d.dir);
        if (access(helper, X_OK) < 0) {
                snprintf(cmd, sizeof(cmd), "install -m 0755 '%s' '%s'", HELPER_PATH, helper);
                cr_assert_eq(system(cmd), 0, "%s", cmd);
        }
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test())
                        _exit(101);
                execl(helper, "helper-client", sock, op, arg, size, (char *)NULL);
                _exit(102);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status));
        cr_assert_lt(WEXITSTATUS(status), 100, "helper failed to run: %d", WEXITSTATUS(status));
        return WEXITSTATUS(status);
}

static int as_nobody(const char *op, const char *arg, const char *size) {
        return as_nobody_on(d.sock, op, arg, size);
}

static bool log_has(const char *what) {
        char line[2048];
        bool found = false;
        FILE *f = fopen(log_path, "r");
        while (f && !found && fgets(line, sizeof(line), f))
                found = strstr(line, what) != NULL;
        if (f)
                fclose(f);
        return found;
}

Test(daemon_access, mode_decides_who_may_allocate) {
        cr_assert_eq(as_nobody("alloc", "open", "4096"), 0);
        cr_assert_eq(as_nobody("alloc", "private", "4096"), EACCES);
        cr_assert_eq(as_nobody("alloc", "alloconly", "4096"), 0);
        cr_assert_eq(as_nobody("alloc", "attachonly", "4096"), EACCES);
        cr_assert_eq(as_nobody("alloc", "grp", "4096"), 0, "nogroup is the pool's group");
        cr_assert(log_has("denied: client pid"), "the daemon logs denials");
        struct alloc_region r;
        cr_assert_eq(alloc_region_new(c, "private", 4096, NULL, &r), 0, "root may");
        cr_assert_eq(pool_used(c, "private"), 4096, "the denied request took nothing");
}

Test(daemon_access, mode_decides_who_may_attach) {
        struct alloc_region a, b;
        struct alloc_opts oa = {.name = "in-alloconly"}, ob = {.name = "in-attachonly"};

        cr_assert_eq(alloc_region_new(c, "alloconly", 4096, &oa, &a), 0);
        cr_assert_eq(alloc_region_new(c, "attachonly", 4096, &ob, &b), 0);
        cr_assert_eq(as_nobody("attach", "in-alloconly", NULL), EACCES);
        cr_assert_eq(as_nobody("attach", "in-attachonly", NULL), 0);
}

/*
 * Only allocd knows that nobody may not free root's region (it may detach it): the free is
 * pipelined, returns 0, and the refusal comes from alloc_region_sync (helper-client attach-free).
 */
Test(daemon_access, a_pipelined_free_reports_what_only_allocd_knows) {
        struct alloc_region r;
        struct alloc_opts o = {.name = "roots"};

        cr_assert_eq(alloc_region_new(c, "open", 4096, &o, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(as_nobody("attach-free", "roots", NULL), EACCES);
        /* Refused: the region, and its name, are still there. */
        struct alloc_region again;
        cr_assert_eq(alloc_region_attach(c, "roots", NULL, &again), 0, "%s", alloc_last_error());
}

Test(daemon_access, quota_per_uid) {
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "quota", 48 << 10, NULL, &r), 0);
        cr_assert_eq(alloc_region_new(c, "quota", 32 << 10, NULL, &r), -EDQUOT);
        cr_assert_str_not_empty(alloc_last_error());
        cr_assert_eq(alloc_region_new(c, "quota", 128 << 10, NULL, &r), -EDQUOT, "more than the whole quota");
        cr_assert_eq(as_nobody("alloc", "quota", "49152"), 0, "quotas are per uid");
        cr_assert_eq(alloc_region_new(c, "quota", 16 << 10, NULL, &r), 0, "up to the quota exactly");
        cr_assert_eq(pool_used(c, "quota"), 64 << 10);
}

Test(daemon_access, regions_and_names_per_limits) {
        struct alloc_region r;
        struct alloc_opts n1 = {.name = "n1"}, n2 = {.name = "n2"}, n3 = {.name = "n3"};

        cr_assert_eq(alloc_region_new(c, "open", 4096, &n1, &r), 0);
        cr_assert_eq(alloc_region_new(c, "open", 4096, &n2, &r), 0);
        cr_assert_eq(alloc_region_new(c, "open", 4096, &n3, &r), -EMFILE, "max_names = 2");
        cr_assert_eq(alloc_region_new(c, "open", 4096, NULL, &r), 0);
        cr_assert_eq(alloc_region_new(c, "open", 4096, NULL, &r), -EMFILE, "max_regions_per_connection = 3");
        cr_assert_eq(alloc_region_attach(c, "n1", NULL, &r), -EMFILE, "attach counts too");
        cr_assert_eq(pool_used(c, "open"), 3 * 4096);
}

Test(daemon_access, connections_are_limited) {
        struct alloc_client *k[5] = {0}, *extra;

        for (int i = 0; i < 5; i++)
                k[i] = daemon_connect(&d); /* with c: max_connections = 6 */
        cr_assert_eq(alloc_connect(&extra, d.sock, "one too many"), -EMFILE);
        cr_assert(strstr(alloc_last_error(), "max_connections"), "message: %s", alloc_last_error());
        /* allocd's words alone: "(Too many open files)" after them would blame this process's fds. */
        cr_assert_not(strstr(alloc_last_error(), strerror(EMFILE)), "message: %s", alloc_last_error());
        alloc_disconnect(k[0]);
        cr_assert_eq(wait_used(c, "open", 0), 0);
        struct alloc_status *s;
        for (int tries = 0; tries < 1000; tries++) {
                cr_assert_eq(alloc_status(c, &s), 0);
                size_t n = s->nclients;
                alloc_status_free(s);
                if (n == 5)
                        break;
                usleep(2000);
        }
        cr_assert_eq(alloc_connect(&extra, d.sock, "fits again"), 0, "%s", alloc_last_error());
        alloc_disconnect(extra);
        for (int i = 1; i < 5; i++)
                alloc_disconnect(k[i]);
}

/*
 * One system socket for every user: a client that names none finds /run/allocd/allocd.sock when
 * it exists, whoever runs it, before the per-user path.  The system path is a link to this test's
 * daemon, made only where no allocd is installed.
 */
Test(daemon_access, every_user_finds_the_system_socket) {
        if (access("/run/allocd", F_OK) == 0) {
                teardown(); /* a skipped test's .fini does not run: its allocd would be left running */
                cr_skip_test("/run/allocd exists (an installed allocd): not touching it");
        }
        cr_assert_eq(mkdir("/run/allocd", 0755), 0, "%s", strerror(errno));
        int r = symlink(d.sock, "/run/allocd/allocd.sock");
        unsetenv("ALLOCD_SOCKET");
        setenv("XDG_RUNTIME_DIR", d.dir, 1); /* a per-user path that has no daemon */
        int e = r == 0 ? as_nobody_on("-", "alloc", "open", "4096") : -1;
        unlink("/run/allocd/allocd.sock");
        rmdir("/run/allocd");
        cr_assert_eq(r, 0, "symlink: %s", strerror(errno));
        cr_assert_eq(e, 0, "nobody's client did not reach the system socket: %d", e);
}

/* In a child as uid (its gid the same number): a PERSIST region of size bytes in pool, which outlives the child. */
static void persist_as(uid_t uid, const char *pool, uint64_t size) {
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                struct alloc_client *k;
                struct alloc_region r;
                struct alloc_opts o = {.flags = ALLOC_PERSIST};
                int e;
                if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0 || !die_with_test())
                        _exit(101);
                /* The previous child's connection may not be closed in allocd yet: max_connections = 6. */
                for (int tries = 0; (e = alloc_connect(&k, d.sock, "persist")) == -EMFILE && tries < 1000; tries++)
                        usleep(2000);
                _exit(e < 0 ? 102 : alloc_region_new(k, pool, size, &o, &r) < 0 ? 103 : 0);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "uid %u: %d", (unsigned)uid, status);
}

static const struct alloc_pool_status *pool_of(const struct alloc_status *s, const char *name) {
        for (size_t i = 0; i < s->npools; i++)
                if (!strcmp(s->pools[i].name, name))
                        return &s->pools[i];
        cr_assert_fail("no pool %s", name);
        return NULL;
}

/* Exits 0 if nobody's Status shows private's rules but not root's use there, and quota's use whole. */
static int nobodys_status(void) {
        struct alloc_client *k;
        struct alloc_status *s;

        if (alloc_connect(&k, d.sock, "nobody") < 0 || alloc_status(k, &s) < 0)
                return 1;
        const struct alloc_pool_status *p = pool_of(s, "private"), *q = pool_of(s, "quota");
        if (!p->has_access || p->mode != 0600 || p->owner != 0)
                return 2;
        if (p->nusage || !p->usage_hidden || p->usage_omitted)
                return 3; /* nobody may neither attach nor allocate in private: root's use is not shown */
        if (q->usage_hidden || q->nusage != 2 || q->usage[0].uid != NOBODY || q->usage[1].uid != 0)
                return 4;
        alloc_status_free(s);
        alloc_disconnect(k);
        return 0;
}

/* Status says each pool's rules to anyone, as ls -l does, and its use per uid to whom Dump shows the regions. */
Test(daemon_access, status_shows_rules_and_use_per_uid) {
        struct alloc_region r;
        struct alloc_status *s;

        cr_assert_eq(alloc_region_new(c, "quota", 8 << 10, NULL, &r), 0);
        cr_assert_eq(alloc_region_new(c, "quota", 4 << 10, NULL, &r), 0);
        cr_assert_eq(alloc_region_new(c, "private", 4 << 10, NULL, &r), 0);
        persist_as(NOBODY, "quota", 16 << 10);
        cr_assert_eq(alloc_status(c, &s), 0);
        const struct alloc_pool_status *q = pool_of(s, "quota"), *g = pool_of(s, "grp");
        cr_assert(q->has_access);
        cr_assert_eq(q->owner, 0, "allocd's uid: the default owner");
        cr_assert_eq(q->mode, 0666);
        cr_assert_eq(q->quota_per_uid, 64 << 10);
        cr_assert_eq(q->nusage, 2);
        cr_assert_eq(q->usage[0].uid, NOBODY, "the most bytes first");
        cr_assert_eq(q->usage[0].bytes, 16 << 10);
        cr_assert_eq(q->usage[0].regions, 1);
        cr_assert_eq(q->usage[1].uid, 0);
        cr_assert_eq(q->usage[1].bytes, 12 << 10);
        cr_assert_eq(q->usage[1].regions, 2);
        cr_assert_eq(q->usage_omitted, 0);
        cr_assert_not(q->usage_hidden);
        cr_assert_eq(g->group, NOBODY);
        cr_assert_eq(g->mode, 0060);
        cr_assert_eq(g->quota_per_uid, 0);
        alloc_status_free(s);

        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0 || !die_with_test())
                        _exit(101);
                _exit(nobodys_status());
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nobody's status: check %d failed",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/*
 * Many uids in a pool: a Status lists the biggest (32 a pool, at most), counts the rest, and
 * shows the asker its own wherever it ranks.  The uids are numbers only: no account is made.
 */
#define MANY 36
#define FIRST_UID 70000u
Test(daemon_access, status_lists_the_biggest_users_and_the_askers_own) {
        struct alloc_status *s;

        for (unsigned i = 0; i < MANY; i++)
                persist_as(FIRST_UID + i, "open", i == MANY - 1 ? 4096 : 8192);
        cr_assert_eq(alloc_status(c, &s), 0);
        const struct alloc_pool_status *o = pool_of(s, "open");
        cr_assert_eq(o->nusage, 32);
        cr_assert_eq(o->usage_omitted, MANY - 32);
        for (unsigned i = 0; i < 32; i++) /* ties in bytes: the lower uid first */
                cr_assert_eq(o->usage[i].uid, FIRST_UID + i, "%u: %u", i, (unsigned)o->usage[i].uid);
        alloc_status_free(s);

        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                struct alloc_client *k;
                uid_t last = FIRST_UID + MANY - 1;
                if (setgroups(0, NULL) < 0 || setgid(last) < 0 || setuid(last) < 0 || !die_with_test())
                        _exit(101);
                if (alloc_connect(&k, d.sock, "last") < 0 || alloc_status(k, &s) < 0)
                        _exit(102);
                o = pool_of(s, "open");
                if (o->nusage != 32 || o->usage_omitted != MANY - 32 || o->usage[30].uid != FIRST_UID + 30)
                        _exit(103);
                _exit(o->usage[31].uid == last && o->usage[31].bytes == 4096 && o->usage[31].regions == 1 ? 0 : 104);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the last uid's status: check %d failed",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}
