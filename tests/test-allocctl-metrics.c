/* SPDX-License-Identifier: MIT */
/*
 * allocctl metrics: its output parses as the Prometheus text format 0.0.4, read by a strict
 * checker here (Debian 12 packages no parser for C, and prometheus-client is no dependency), and
 * says what allocd holds: the common pools and regions, then f draining and h with a quota after
 * a reload; allocd_up 0 alone when nothing answers; label values escaped, from a fake allocd.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "allocctl-common.h"
#include "allocd.pb-c.h"
#include "fake-allocd.h"
#include "text.h"
#include "wire.h"
#include "version.h"

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 60);

/* ---- a strict reader of the text format ---- */

#define MAX_SAMPLES 256

/* A sample: its metric name, its labels decoded as name=value joined by ',' (in order), its value. */
struct sample {
        char name[128], labels[1024];
        double value;
};

struct exposition {
        size_t n;
        struct sample s[MAX_SAMPLES];
};

static bool name_char(char ch, bool first, bool colon) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || (colon && ch == ':') ||
               (!first && ch >= '0' && ch <= '9');
}

/* The length of the metric (colon true) or label name at p; 0 if there is none. */
static size_t name_len(const char *p, bool colon) {
        size_t n = 0;
        while (name_char(p[n], n == 0, colon))
                n++;
        return n;
}

/* Says why in err; false. */
__attribute__((format(printf, 3, 4))) static bool bad(char *err, size_t size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
        return false;
}

#define BAD(...) return bad(err, errsize, __VA_ARGS__)

/* The labels at *pp, after '{', up to and past '}', decoded into out. */
static bool read_labels(const char **pp, char *out, size_t size, char *err, size_t errsize) {
        const char *p = *pp;
        size_t o = 0;
        char seen[16][64];
        int nseen = 0;

        *out = '\0';
        while (*p != '}') {
                size_t n = name_len(p, false);
                if (!n || n >= 64 || !strncmp(p, "__", 2))
                        BAD("a bad label name at '%.20s'", p);
                for (int i = 0; i < nseen; i++)
                        if (strlen(seen[i]) == n && !strncmp(seen[i], p, n))
                                BAD("label %.*s twice", (int)n, p);
                if (nseen == 16)
                        BAD("too many labels");
                snprintf(seen[nseen++], 64, "%.*s", (int)n, p);
                o += (size_t)snprintf(out + o, size - o, "%s%.*s=", o ? "," : "", (int)n, p);
                p += n;
                if (p[0] != '=' || p[1] != '"')
                        BAD("no =\" after label %s", seen[nseen - 1]);
                for (p += 2; *p != '"'; p++) {
                        char ch = *p;
                        if (ch == '\n' || ch == '\0')
                                BAD("an unterminated label value");
                        if (ch == '\\') {
                                ch = *++p == 'n' ? '\n' : *p;
                                if (*p != 'n' && *p != '\\' && *p != '"')
                                        BAD("an escape the format does not have: \\%c", *p);
                        }
                        if (o + 1 < size)
                                out[o++] = ch, out[o] = '\0';
                }
                p++;
                if (*p == ',' && p[1] != '}')
                        p++;
                else if (*p != '}')
                        BAD("no , or } after a label value: '%.20s'", p);
        }
        *pp = p + 1;
        return true;
}

/*
 * Whether text is a whole exposition as allocctl must write it: UTF-8 without control characters
 * but newlines, ending in one; each family a HELP and a TYPE (gauge, its name no _total), then its
 * samples only (none is allowed: a pool quota where no pool has one), one family at a time, never
 * again; no label set twice; values numbers.
 */
static bool parse_exposition(const char *text, struct exposition *x, char *err, size_t errsize) {
        char family[128] = "", done[64][128];
        size_t ndone = 0, len = strlen(text), family_start = 0;
        bool help = false, type = false;

        x->n = 0;
        for (size_t i = 0; i < len;) {
                uint32_t cp;
                int k = text_next(text + i, len - i, &cp);
                if (k < 0 || (cp != '\n' && text_is_control(cp)))
                        BAD("a byte that is not UTF-8, or a control character, at %zu", i);
                i += (size_t)k;
        }
        if (!len || text[len - 1] != '\n')
                BAD("the text does not end with a newline");
        for (const char *line = text; *line;) {
                const char *nl = strchr(line, '\n'), *p = line;
                char l[2048];
                snprintf(l, sizeof(l), "%.*s", (int)(nl - line), line);
                if (!strncmp(p, "# HELP ", 7) || !strncmp(p, "# TYPE ", 7)) {
                        bool is_help = p[2] == 'H';
                        size_t n = name_len(p + 7, true);
                        if (!n || n >= sizeof(family) || p[7 + n] != ' ')
                                BAD("a bad metric name in '%s'", l);
                        if (strlen(family) != n || strncmp(family, p + 7, n)) {
                                if (*family && (!help || !type))
                                        BAD("family %s has no %s", family, help ? "TYPE" : "HELP");
                                if (*family)
                                        snprintf(done[ndone++], sizeof(done[0]), "%s", family);
                                snprintf(family, sizeof(family), "%.*s", (int)n, p + 7);
                                for (size_t j = 0; j < ndone; j++)
                                        if (!strcmp(done[j], family))
                                                BAD("family %s comes twice", family);
                                help = type = false;
                                family_start = x->n;
                        }
                        if (x->n != family_start)
                                BAD("'%s' after the family's samples", l);
                        if (is_help ? help : type)
                                BAD("a second %s for %s", is_help ? "HELP" : "TYPE", family);
                        p += 8 + n;
                        if (is_help) {
                                help = true;
                                for (; p < nl; p++)
                                        if (*p == '\\' && (++p == nl || (*p != '\\' && *p != 'n')))
                                                BAD("a bad escape in '%s'", l);
                        } else {
                                type = true;
                                if ((size_t)(nl - p) != 5 || strncmp(p, "gauge", 5))
                                        BAD("'%s': allocctl's metrics are gauges", l);
                                if (n > 6 && !strncmp(family + n - 6, "_total", 6))
                                        BAD("gauge %s ends in _total", family);
                        }
                } else {
                        struct sample *s = &x->s[x->n];
                        size_t n = name_len(p, true);
                        if (*p == '#' || nl == p)
                                BAD("'%s': a comment or blank line allocctl has no reason to write", l);
                        if (!n || n >= sizeof(s->name))
                                BAD("'%s': no metric name", l);
                        snprintf(s->name, sizeof(s->name), "%.*s", (int)n, p);
                        if (strcmp(s->name, family) || !help || !type)
                                BAD("'%s' is not in the family its HELP and TYPE began (%s)", l, family);
                        p += n;
                        s->labels[0] = '\0';
                        if (*p == '{') {
                                p++;
                                if (!read_labels(&p, s->labels, sizeof(s->labels), err, errsize))
                                        return false;
                        }
                        char *end;
                        if (*p++ != ' ')
                                BAD("'%s': no blank before the value", l);
                        s->value = strtod(p, &end);
                        if (end == p || end != nl || isnan(s->value))
                                BAD("'%s': the value is not a number (or a timestamp follows)", l);
                        for (size_t j = family_start; j < x->n; j++)
                                if (!strcmp(x->s[j].labels, s->labels))
                                        BAD("'%s': the same labels twice in %s", l, family);
                        if (++x->n == MAX_SAMPLES)
                                BAD("too many samples");
                }
                line = nl + 1;
        }
        if (*family && (!help || !type))
                BAD("the last family %s is incomplete", family);
        return true;
}

/* The value of the sample name{labels}, labels decoded as name=value,...; NAN where there is none. */
static double value(const struct exposition *x, const char *name, const char *labels) {
        for (size_t i = 0; i < x->n; i++)
                if (!strcmp(x->s[i].name, name) && !strcmp(x->s[i].labels, labels))
                        return x->s[i].value;
        return NAN;
}

static size_t count(const struct exposition *x, const char *name) {
        size_t n = 0;
        for (size_t i = 0; i < x->n; i++)
                n += !strcmp(x->s[i].name, name);
        return n;
}

#define ASSERT_VALUE(x, name, labels, want)                                                                            \
        do {                                                                                                           \
                double v_ = value(x, name, labels);                                                                    \
                cr_assert(v_ == (double)(want), "%s{%s} is %g, not %g", name, labels, v_, (double)(want));             \
        } while (0)

/* allocctl metrics against sock, exit 0, parsed into x. */
static const char *metrics(const char *sock, struct exposition *x) {
        char err[512];
        struct run *r = allocctl(sock, "metrics", (char *)NULL);

        cr_assert_eq(r->status, 0, "allocctl metrics: %s", r->err);
        cr_assert(parse_exposition(r->out, x, err, sizeof(err)), "not the exposition format: %s\n%s", err, r->out);
        return r->out;
}

/* ---- the checker itself ---- */

Test(metrics, the_checker_refuses_what_the_format_does_not_allow) {
        static const char *bad[] = {
                "a 1\n",                                                    /* no HELP or TYPE */
                "# HELP a x\n# TYPE a gauge\na 1",                          /* no newline at the end */
                "# HELP a x\n# TYPE a gauge\na{p=\"\\t\"} 1\n",             /* an escape it does not have */
                "# HELP a x\n# TYPE a gauge\na{p=\"x\",p=\"y\"} 1\n",       /* a label twice */
                "# HELP a x\n# TYPE a gauge\na{p=\"x\"} 1\na{p=\"x\"} 2\n", /* a label set twice */
                "# HELP a x\n# TYPE a gauge\na{p=\"a\nb\"} 1\n",            /* a raw newline */
                "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n", /* a family split */
                "# HELP a x\n# TYPE a gauge\na one\n",                                     /* not a number */
                "# HELP a_total x\n# TYPE a_total gauge\na_total 1\n", /* a gauge named as a counter */
                "# HELP a x\n# TYPE a gauge\na{p=\"\x1b\"} 1\n",       /* a control character */
        };
        static const char good[] = "# HELP a x \\\\ \\n\n# TYPE a gauge\na{p=\"q\\\"\\\\\\n\",k=\"\"} 1.5e3\n"
                                   "# HELP b_bytes y\n# TYPE b_bytes gauge\nb_bytes 0\n";
        struct exposition *x = malloc(sizeof(*x));
        char err[256];

        cr_assert(parse_exposition(good, x, err, sizeof(err)), "%s", err);
        ASSERT_VALUE(x, "a", "p=q\"\\\n,k=", 1500);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert_not(parse_exposition(bad[i], x, err, sizeof(err)), "accepted: %s", bad[i]);
        free(x);
}

/* ---- allocctl metrics ---- */

Test(metrics, says_what_allocd_holds) {
        struct exposition *x = malloc(sizeof(*x));
        const struct passwd *pw = getpwuid(getuid());
        struct alloc_status *s;
        char labels[512], version[64];
        time_t before = time(NULL);

        cr_assert_not_null(pw);
        metrics(d.sock, x);
        ASSERT_VALUE(x, "allocd_up", "", 1);
        snprintf(version, sizeof(version), "version=%s", ALLOCD_VERSION);
        ASSERT_VALUE(x, "allocd_info", version, 1);
        cr_assert_leq(value(x, "allocd_uptime_seconds", ""), 60);
        cr_assert(fabs(value(x, "allocd_start_time_seconds", "") - (double)before) <= 60);
        ASSERT_VALUE(x, "allocd_clients", "", 3); /* c, c2 and allocctl itself */
        ASSERT_VALUE(x, "allocd_pool_available", "pool=h,kind=host", 1);
        ASSERT_VALUE(x, "allocd_pool_available", "pool=f,kind=fpga", 1);
        ASSERT_VALUE(x, "allocd_pool_draining", "pool=f,kind=fpga", 0);
        ASSERT_VALUE(x, "allocd_pool_size_bytes", "pool=h,kind=host", 16 << 20);
        ASSERT_VALUE(x, "allocd_pool_size_bytes", "pool=f,kind=fpga", (1 << 30) + (256 << 20));
        ASSERT_VALUE(x, "allocd_pool_regions", "pool=h,kind=host", 3);
        ASSERT_VALUE(x, "allocd_pool_regions", "pool=f,kind=fpga", 2);
        ASSERT_VALUE(x, "allocd_pool_waiters", "pool=h,kind=host", 0);
        ASSERT_VALUE(x, "allocd_pool_used_bytes", "pool=f,kind=fpga", (64 << 20) + (300 << 20));
        /* The rest as allocd says them to the library: rounded to the pool's quantum, as it places them. */
        cr_assert_eq(alloc_status(c, &s), 0);
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                snprintf(labels, sizeof(labels), "pool=%s,kind=%s", p->name, i == 0 ? "host" : "fpga");
                ASSERT_VALUE(x, "allocd_pool_used_bytes", labels, p->used);
                ASSERT_VALUE(x, "allocd_pool_free_bytes", labels, p->free);
                ASSERT_VALUE(x, "allocd_pool_largest_free_bytes", labels, p->largest_free);
                ASSERT_VALUE(x, "allocd_pool_uids_omitted", labels, 0);
                ASSERT_VALUE(x, "allocd_pool_uids_hidden", labels, 0);
        }
        alloc_status_free(s);
        snprintf(labels, sizeof(labels), "pool=h,uid=%u,user=%s", (unsigned)getuid(), pw->pw_name);
        ASSERT_VALUE(x, "allocd_pool_uid_used_bytes", labels, (4 << 20) + (1 << 20) + 4096);
        ASSERT_VALUE(x, "allocd_pool_uid_regions", labels, 3);
        cr_assert_eq(count(x, "allocd_pool_quota_per_uid_bytes"), 0, "no pool has a quota");
        cr_assert_eq(count(x, "allocd_pool_available"), 2);

        /* f goes from the configuration while it holds regions (it drains); h gets a quota. */
        write_file(d.conf, "[pool h]\nkind = host\nsize = 16M\nquota_per_uid = 8M\n");
        kill(d.pid, SIGHUP);
        cr_assert(daemon_notified(&d, "draining (f)", 5000), "f does not drain");
        metrics(d.sock, x);
        ASSERT_VALUE(x, "allocd_pool_draining", "pool=f,kind=fpga", 1);
        ASSERT_VALUE(x, "allocd_pool_draining", "pool=h,kind=host", 0);
        ASSERT_VALUE(x, "allocd_pool_regions", "pool=f,kind=fpga", 2);
        ASSERT_VALUE(x, "allocd_pool_quota_per_uid_bytes", "pool=h,kind=host", 8 << 20);
        cr_assert_eq(count(x, "allocd_pool_quota_per_uid_bytes"), 1, "f's rules went with its section");
        free(x);
}

Test(metrics, nothing_answering_is_allocd_up_0_alone_and_exit_0) {
        struct exposition *x = malloc(sizeof(*x));
        char path[256];

        snprintf(path, sizeof(path), "%s/nobody.sock", d.dir);
        const char *out = metrics(path, x);
        cr_assert_eq(x->n, 1, "%s", out);
        ASSERT_VALUE(x, "allocd_up", "", 0);
        cr_assert(strstr(allocctl(path, "metrics", (char *)NULL)->err, "not running"), "stderr says why");
        free(x);
}

Test(metrics, json_is_a_usage_error) {
        struct run *r = allocctl(d.sock, "--json", "metrics", (char *)NULL);
        cr_assert_eq(r->status, 2, "%s", r->err);
        cr_assert(strstr(r->err, "--json does not apply"), "%s", r->err);
        cr_assert_str_empty(r->out);
        r = allocctl(d.sock, "metrics", "extra", (char *)NULL);
        cr_assert_eq(r->status, 2, "%s", r->err);
        r = allocctl(d.sock, "metrics", "--help", (char *)NULL);
        cr_assert_eq(r->status, 0, "%s", r->err);
        cr_assert(strstr(r->out, "usage: allocctl [--socket PATH] metrics\n"), "its usage offers no --json: %s",
                  r->out);
}

/* A fake allocd with a pool whose name needs every escape, a version with a control character,
 * a pool it could not make, and use it shows only in part. */
static int odd_names(const Allocd__Request *q, Allocd__Reply *r, int *fd, void *arg) {
        static Allocd__StatusReply st;
        static Allocd__PoolStatus p;
        static Allocd__UnavailablePool u;
        static Allocd__UidUsage use;
        static Allocd__PoolStatus *ps[] = {&p};
        static Allocd__UnavailablePool *us[] = {&u};
        static Allocd__UidUsage *up[] = {&use};

        (void)fd;
        (void)arg;
        if (fake_hello(q, r))
                return 0;
        if (q->body_case == ALLOCD__REQUEST__BODY_STATUS) {
                allocd__status_reply__init(&st);
                allocd__pool_status__init(&p);
                allocd__unavailable_pool__init(&u);
                allocd__uid_usage__init(&use);
                p.name = "a\"b\\c\nd";
                p.has_kind = p.has_size = p.has_used = true;
                p.kind = ALLOCD__POOL_KIND__HOST;
                p.size = 1 << 20;
                p.used = 4096;
                p.draining = "no longer configured";
                p.has_owner = p.has_group = p.has_mode = p.has_quota_per_uid = true;
                p.mode = 0660;
                p.quota_per_uid = 1 << 19;
                use.has_uid = use.has_bytes = use.has_regions = true;
                use.uid = 4000000;
                use.bytes = 4096;
                use.regions = 1;
                p.n_usage = 1;
                p.usage = up;
                p.has_usage_omitted = true;
                p.usage_omitted = 7;
                u.name = "g";
                u.has_kind = true;
                u.kind = ALLOCD__POOL_KIND__GPU;
                u.reason = "no GPU";
                st.daemon_version = "1.0\033[1m";
                st.n_pools = st.n_unavailable = 1;
                st.pools = ps;
                st.unavailable = us;
                r->body_case = ALLOCD__REPLY__BODY_STATUS;
                r->status = &st;
        }
        return 0;
}

Test(metrics, label_values_are_escaped_and_unavailable_pools_have_no_figures) {
        struct exposition *x = malloc(sizeof(*x));
        struct fake_allocd fk;
        static const char *pool = "pool=a\"b\\c\nd,kind=host";

        fake_allocd_start(&fk, odd_names, NULL);
        const char *out = metrics(fk.path, x);
        fake_allocd_stop(&fk);
        cr_assert(strstr(out, "{pool=\"a\\\"b\\\\c\\nd\",kind=\"host\"}"), "%s", out);
        ASSERT_VALUE(x, "allocd_info", "version=1.0\xef\xbf\xbd[1m", 1);
        ASSERT_VALUE(x, "allocd_pool_available", pool, 1);
        ASSERT_VALUE(x, "allocd_pool_available", "pool=g,kind=gpu", 0);
        ASSERT_VALUE(x, "allocd_pool_draining", pool, 1);
        ASSERT_VALUE(x, "allocd_pool_size_bytes", pool, 1 << 20);
        ASSERT_VALUE(x, "allocd_pool_used_bytes", pool, 4096);
        ASSERT_VALUE(x, "allocd_pool_quota_per_uid_bytes", pool, 1 << 19);
        ASSERT_VALUE(x, "allocd_pool_uids_omitted", pool, 7);
        ASSERT_VALUE(x, "allocd_pool_uid_used_bytes", "pool=a\"b\\c\nd,uid=4000000,user=", 4096);
        ASSERT_VALUE(x, "allocd_pool_uid_regions", "pool=a\"b\\c\nd,uid=4000000,user=", 1);
        cr_assert_eq(count(x, "allocd_pool_size_bytes"), 1, "no figures for g: %s", out);
        cr_assert_eq(count(x, "allocd_pool_draining"), 1, "%s", out);
        free(x);
}
