/* SPDX-License-Identifier: MIT */
/*
 * allocctl status's access lines and per-uid use, in text and JSON (the pools and clients are
 * test-allocctl.c's).  Root sees every uid's use; nobody, a real other uid (a child that setuids),
 * may neither attach nor allocate in h or f (mode 0660, allocd's), and sees their rules but not
 * root's use.  What allocd leaves out to keep its reply one packet, and ids with no name here,
 * come from a fake allocd.
 */
#include <criterion/criterion.h>
#include <grp.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allocctl-common.h"
#include "allocd.pb-c.h"
#include "fake-allocd.h"
#include "wire.h"

TestSuite(allocctl, .init = setup, .fini = teardown, .timeout = 60);

static json_object *pool_named(json_object *status, const char *name) {
        json_object *pools = get(status, "pools");
        for (size_t i = 0; i < json_object_array_length(pools); i++)
                if (!strcmp(get_str(json_object_array_get_idx(pools, i), "name"), name))
                        return json_object_array_get_idx(pools, i);
        cr_assert_fail("no pool %s", name);
        return NULL;
}

static bool has_line(const char *text, const char *line) {
        size_t n = strlen(line);
        for (const char *p = text; (p = strstr(p, line)); p++)
                if ((p == text || p[-1] == '\n') && p[n] == '\n')
                        return true;
        return false;
}

Test(allocctl, status_shows_each_pools_access_and_use_per_uid) {
        const struct passwd *pw = getpwuid(getuid());
        const struct group *gr = getgrgid(getgid());
        char want[256];

        cr_assert(pw && gr, "the test's uid and gid have names");
        /* allocd runs as the test does: its uid and gid are the pools' default owner and group. */
        json_object *o = run_json("status", NULL), *h = pool_named(o, "h"), *f = pool_named(o, "f");
        cr_assert_eq(get_u64(h, "owner"), getuid());
        cr_assert_str_eq(get_str(h, "owner_name"), pw->pw_name);
        cr_assert_eq(get_u64(h, "group"), getgid());
        cr_assert_str_eq(get_str(h, "group_name"), gr->gr_name);
        cr_assert_str_eq(get_str(h, "mode"), "0660");
        cr_assert_eq(get_u64(h, "quota_per_uid"), 0);
        cr_assert_eq(get_u64(h, "usage_omitted"), 0);
        cr_assert_not(json_object_get_boolean(get(h, "usage_hidden")));
        json_object *u = get(h, "usage");
        cr_assert_eq(json_object_array_length(u), 1, "%s", json_object_to_json_string(u));
        json_object *me = json_object_array_get_idx(u, 0);
        cr_assert_eq(get_u64(me, "uid"), getuid());
        cr_assert_str_eq(get_str(me, "user"), pw->pw_name);
        /* shared, big and small: c made two, c2 one, both as this uid; attached is shared's again. */
        cr_assert_eq(get_u64(me, "bytes"), (4 << 20) + (1 << 20) + 4096);
        cr_assert_eq(get_u64(me, "regions"), 3);
        me = json_object_array_get_idx(get(f, "usage"), 0);
        cr_assert_eq(get_u64(me, "bytes"), (64 << 20) + (300 << 20));
        cr_assert_eq(get_u64(me, "regions"), 2);
        json_object_put(o);

        struct run *r = allocctl(d.sock, "status", (char *)NULL);
        cr_assert_eq(r->status, 0, "%s", r->err);
        snprintf(want, sizeof(want), "h: access owner %s, group %s, mode 0660; no quota", pw->pw_name, gr->gr_name);
        cr_assert(has_line(r->out, want), "no '%s' in:\n%s", want, r->out);
        snprintf(want, sizeof(want), "h: used by %s: 5.0MiB in 3 regions", pw->pw_name);
        cr_assert(has_line(r->out, want), "no '%s' in:\n%s", want, r->out);
        snprintf(want, sizeof(want), "f: used by %s: 364MiB in 2 regions", pw->pw_name);
        cr_assert(has_line(r->out, want), "no '%s' in:\n%s", want, r->out);
        cr_assert_null(strstr(r->out, "not shown"), "%s", r->out);
}

/* Exits 0 if nobody's allocctl status shows h's rules, and its use hidden, in text and JSON; else which check failed.
 */
static int nobodys_view(void) {
        struct run *r = allocctl(d.sock, "status", (char *)NULL);
        if (r->status != 0 || !has_line(r->out, "h: access owner root, group root, mode 0660; no quota"))
                return 1;
        if (strstr(r->out, "h: used by") || strstr(r->out, "f: used by"))
                return 2; /* root's use, in pools nobody may not even attach */
        if (!has_line(r->out, "h: other uids' use not shown: you may neither attach nor allocate here"))
                return 3;
        r = allocctl(d.sock, "--json", "status", (char *)NULL);
        json_object *o = json_tokener_parse(r->out), *h, *v;
        if (!o || !json_object_object_get_ex(o, "pools", &v) || !(h = json_object_array_get_idx(v, 0)))
                return 4;
        if (!json_object_object_get_ex(h, "usage_hidden", &v) || !json_object_get_boolean(v))
                return 5;
        if (!json_object_object_get_ex(h, "usage", &v) || json_object_array_length(v) != 0)
                return 6;
        if (!json_object_object_get_ex(h, "owner", &v) || json_object_get_uint64(v) != 0)
                return 7;
        return 0;
}

Test(allocctl, another_uid_sees_the_rules_but_not_others_use) {
        if (geteuid() != 0) {
                teardown(); /* a skipped test's .fini does not run: its allocd would be left running */
                cr_skip_test("needs root to act as another uid");
        }
        pid_t pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0 || !die_with_test())
                        _exit(100);
                _exit(nobodys_view());
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nobody's view: check %d failed",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* A fake allocd's pool p: owner and group with no name here, 8 uids listed and 3 left out, the last one *arg
 * where arg is set (allocd lists the caller's own uid last when it ranks lower); pool old: an older allocd's,
 * that says nothing of access. */
#define NOBODY_HERE 4000000u
static int many_users(const Allocd__Request *q, Allocd__Reply *r, int *fd, void *arg) {
        static Allocd__StatusReply st;
        static Allocd__PoolStatus p, old;
        static Allocd__PoolStatus *ps[] = {&p, &old};
        static Allocd__UidUsage u[8];
        static Allocd__UidUsage *up[8];

        (void)fd;
        if (fake_hello(q, r))
                return 0;
        if (q->body_case == ALLOCD__REQUEST__BODY_STATUS) {
                allocd__status_reply__init(&st);
                allocd__pool_status__init(&p);
                allocd__pool_status__init(&old);
                p.name = "p";
                old.name = "old";
                p.has_kind = old.has_kind = true;
                p.kind = old.kind = ALLOCD__POOL_KIND__HOST;
                p.has_owner = p.has_group = p.has_mode = p.has_quota_per_uid = true;
                p.owner = NOBODY_HERE;
                p.group = NOBODY_HERE + 1;
                p.mode = 0640;
                p.quota_per_uid = 1u << 30;
                for (unsigned i = 0; i < 8; i++) {
                        allocd__uid_usage__init(&u[i]);
                        u[i].has_uid = u[i].has_bytes = u[i].has_regions = true;
                        u[i].uid = NOBODY_HERE + i;
                        u[i].bytes = (512u << 20) >> i;
                        u[i].regions = 8 - i;
                        up[i] = &u[i];
                }
                if (arg)
                        u[7].uid = *(const uid_t *)arg;
                p.n_usage = 8;
                p.usage = up;
                p.has_usage_omitted = true;
                p.usage_omitted = 3;
                st.n_pools = 2;
                st.pools = ps;
                r->body_case = ALLOCD__REPLY__BODY_STATUS;
                r->status = &st;
        }
        return 0;
}

Test(allocctl, a_few_uids_then_how_many_more_and_numbers_for_unknown_ids) {
        struct fake_allocd fk;

        fake_allocd_start(&fk, many_users, NULL);
        struct run *r = allocctl(fk.path, "status", NULL);
        fake_allocd_stop(&fk); /* a fake serves one connection: another for --json */
        cr_assert_eq(r->status, 0, "%s", r->err);
        cr_assert(has_line(r->out, "p: access owner 4000000, group 4000001, mode 0640; quota 1GiB per uid"), "%s",
                  r->out);
        cr_assert(has_line(r->out, "p: used by 4000000: 512MiB in 8 regions, 50% of the quota"), "%s", r->out);
        cr_assert(has_line(r->out, "p: used by 4000004: 32MiB in 4 regions, 3% of the quota"), "%s", r->out);
        cr_assert_null(strstr(r->out, "p: used by 4000005"), "five uids, then a count: %s", r->out);
        cr_assert(has_line(r->out, "p: and 6 more uids (allocctl dump p lists every region)"), "%s", r->out);
        cr_assert_null(strstr(r->out, "old:"), "an allocd that says nothing of access: %s", r->out);
        fake_allocd_start(&fk, many_users, NULL);
        r = allocctl(fk.path, "--json", "status", NULL);
        fake_allocd_stop(&fk);
        cr_assert_eq(r->status, 0, "%s", r->err);
        json_object *o = json_tokener_parse(r->out), *p = pool_named(o, "p"), *v;
        cr_assert_eq(get_u64(p, "owner"), NOBODY_HERE);
        cr_assert_null(get(p, "owner_name"));
        cr_assert_null(get(p, "group_name"));
        cr_assert_str_eq(get_str(p, "mode"), "0640");
        cr_assert_eq(json_object_array_length(get(p, "usage")), 8, "--json has all allocd sent");
        cr_assert_null(get(json_object_array_get_idx(get(p, "usage"), 7), "user"));
        cr_assert_eq(get_u64(p, "usage_omitted"), 3);
        cr_assert_not(json_object_object_get_ex(pool_named(o, "old"), "owner", &v), "no access keys made up");
        json_object_put(o);
}

Test(allocctl, the_callers_own_use_shows_whatever_it_ranks) {
        struct fake_allocd fk;
        uid_t me = geteuid();
        char want[256], who[64];
        const struct passwd *pw = getpwuid(me);

        snprintf(who, sizeof(who), "%s", pw ? pw->pw_name : "");
        if (!pw)
                snprintf(who, sizeof(who), "%u", (unsigned)me);
        fake_allocd_start(&fk, many_users, &me);
        struct run *r = allocctl(fk.path, "status", NULL);
        fake_allocd_stop(&fk);
        cr_assert_eq(r->status, 0, "%s", r->err);
        cr_assert(has_line(r->out, "p: used by 4000004: 32MiB in 4 regions, 3% of the quota"), "%s", r->out);
        cr_assert_null(strstr(r->out, "p: used by 4000005"), "%s", r->out);
        snprintf(want, sizeof(want), "p: used by %s: 4MiB in 1 region, under 1%% of the quota", who);
        cr_assert(has_line(r->out, want), "allocd sent this uid's own use, ranked 8th: %s", r->out);
        cr_assert(has_line(r->out, "p: and 5 more uids (allocctl dump p lists every region)"), "%s", r->out);
}

/* The column after a pool's name starts where its heading does, however long the longest name is. */
Test(allocctl, the_pool_column_is_as_wide_as_the_longest_name) {
        static const char long_name[] = "a-pool-whose-name-is-as-long-as-allocd-takes-sixty-three-chars9";
        struct daemon other;
        char conf[256];

        cr_assert_eq(strlen(long_name), 63);
        snprintf(conf, sizeof(conf), "[pool %s]\nkind = host\nsize = 1M\n[pool s]\nkind = fpga\nranges = 0x1000+64K\n",
                 long_name);
        daemon_start(&other, conf);
        struct run *r = allocctl(other.sock, "status", (char *)NULL);
        cr_assert_eq(r->status, 0, "%s", r->err);
        const char *head = strstr(r->out, "\nPOOL"), *row_long = strstr(r->out, long_name),
                   *row_s = strstr(r->out, "\ns ");
        cr_assert(head && row_long && row_s, "%s", r->out);
        head++, row_s++;
        cr_assert_eq(strstr(head, "KIND") - head, strstr(row_long, "host") - row_long, "%s", r->out);
        cr_assert_eq(strstr(head, "KIND") - head, strstr(row_s, "fpga") - row_s, "%s", r->out);

        /* So is dump's, whose rows are printed as they arrive. */
        struct alloc_client *oc = daemon_connect(&other);
        struct alloc_region reg;
        cr_assert_eq(alloc_region_new(oc, long_name, 4096, NULL, &reg), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(oc, "s", 4096, NULL, &reg), 0, "%s", alloc_last_error());
        r = allocctl(other.sock, "dump", (char *)NULL);
        cr_assert_eq(r->status, 0, "%s", r->err);
        head = r->out, row_long = strstr(r->out, long_name), row_s = strstr(r->out, " s ");
        cr_assert(row_long && row_s, "%s", r->out);
        row_long = (const char *)memrchr(r->out, '\n', (size_t)(row_long - r->out)) + 1;
        row_s = (const char *)memrchr(r->out, '\n', (size_t)(row_s - r->out)) + 1;
        cr_assert_eq(strstr(head, "FORMAT") - head, strstr(row_long, "raw") - row_long, "%s", r->out);
        cr_assert_eq(strstr(head, "FORMAT") - head, strstr(row_s, "raw") - row_s, "%s", r->out);
        alloc_disconnect(oc);
        daemon_stop(&other);
}

/* A size just under a unit is the larger unit's: "1.0GiB", not "1024.0MiB" (%.1f rounds up to 1024). */
Test(allocctl, a_size_just_under_a_unit_shows_in_the_larger_unit) {
        struct passwd *pw = getpwuid(getuid());
        struct alloc_region r;
        char want[256];

        cr_assert_not_null(pw);
        /* f1 and f2 hold 364 MiB of f: this makes it 1 GiB less 4 KiB. */
        cr_assert_eq(alloc_region_new(c, "f", (660 << 20) - 4096, NULL, &r), 0, "%s", alloc_last_error());
        struct run *x = allocctl(d.sock, "status", (char *)NULL);
        cr_assert_eq(x->status, 0, "%s", x->err);
        snprintf(want, sizeof(want), "f: used by %s: 1.0GiB in 3 regions", pw->pw_name);
        cr_assert(has_line(x->out, want), "no '%s' in:\n%s", want, x->out);
        cr_assert_null(strstr(x->out, "1024.0"), "%s", x->out);
}
