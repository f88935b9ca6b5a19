/* SPDX-License-Identifier: MIT */
/*
 * allocctl metrics: what allocctl status shows, in the Prometheus text exposition format 0.0.4,
 * for node_exporter's textfile collector or any scraper (docs/cli.md, "metrics").  One Status
 * request, one family at a time, each with its HELP and TYPE; every family is a gauge.
 */
#include "allocctl.h"

#include <inttypes.h>
#include <stddef.h>
#include <pwd.h>
#include <string.h>

/*
 * s as a label value: valid UTF-8, with the format's three escapes (backslash, double quote,
 * newline).  Whatever else a hostile socket sends (a byte that is not UTF-8, another control
 * character) becomes U+FFFD, so that the file a collector reads, and a terminal that shows it,
 * holds no control character: allocd's own names never have one (docs/protocol.md, "Names").
 */
static void label_value(const char *s) {
        size_t n = strlen(s);

        putchar('"');
        while (n) {
                uint32_t cp;
                int len = text_next(s, n, &cp);
                if (len < 0) {
                        fputs("\xef\xbf\xbd", stdout);
                        len = 1;
                } else if (cp == '\\' || cp == '"') {
                        printf("\\%c", (char)cp);
                } else if (cp == '\n') {
                        fputs("\\n", stdout);
                } else if (text_is_control(cp)) {
                        fputs("\xef\xbf\xbd", stdout);
                } else {
                        fwrite(s, 1, (size_t)len, stdout);
                }
                s += len;
                n -= (size_t)len;
        }
        putchar('"');
}

static void family(const char *name, const char *help) {
        printf("# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

static void pool_labels(const char *name, enum alloc_kind kind) {
        fputs("{pool=", stdout);
        label_value(name);
        printf(",kind=\"%s\"}", kind_name(kind));
}

/* One sample per available pool: the figure at offset off of its struct alloc_pool_status. */
static void pool_family(const struct alloc_status *s, const char *name, const char *help, size_t off) {
        family(name, help);
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                uint64_t v;
                memcpy(&v, (const char *)p + off, sizeof(v));
                fputs(name, stdout);
                pool_labels(p->name, p->kind);
                printf(" %" PRIu64 "\n", v);
        }
}

static void uid_family(const struct alloc_status *s, const char *name, const char *help, bool bytes) {
        family(name, help);
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                for (size_t j = 0; j < p->nusage; j++) {
                        const struct alloc_uid_usage *u = &p->usage[j];
                        const struct passwd *pw = getpwuid(u->uid);
                        printf("%s{pool=", name);
                        label_value(p->name);
                        printf(",uid=\"%u\",user=", (unsigned)u->uid);
                        label_value(pw ? pw->pw_name : "");
                        printf("} %" PRIu64 "\n", bytes ? u->bytes : u->regions);
                }
        }
}

static void metrics_print(const struct alloc_status *s) {
        family("allocd_info", "allocd's version, as a label; always 1");
        fputs("allocd_info{version=", stdout);
        label_value(s->daemon_version);
        puts("} 1");
        family("allocd_start_time_seconds", "When allocd started, in seconds since the epoch");
        printf("allocd_start_time_seconds %" PRIu64 "\n", s->started);
        family("allocd_uptime_seconds", "Seconds since allocd started");
        printf("allocd_uptime_seconds %" PRIu64 "\n", s->uptime);
        family("allocd_clients", "Connections to allocd, this allocctl's included");
        printf("allocd_clients %zu\n", s->nclients);

        family("allocd_pool_available", "1: the pool serves; 0: configured, but allocd could not make it");
        for (size_t i = 0; i < s->npools; i++) {
                fputs("allocd_pool_available", stdout);
                pool_labels(s->pools[i].name, s->pools[i].kind);
                puts(" 1");
        }
        for (size_t i = 0; i < s->nunavailable; i++) {
                fputs("allocd_pool_available", stdout);
                pool_labels(s->unavailable[i].name, s->unavailable[i].kind);
                puts(" 0");
        }
        family("allocd_pool_draining", "1: the pool takes no new regions (no longer configured as it was)");
        for (size_t i = 0; i < s->npools; i++) {
                fputs("allocd_pool_draining", stdout);
                pool_labels(s->pools[i].name, s->pools[i].kind);
                printf(" %d\n", *s->pools[i].draining ? 1 : 0);
        }
        pool_family(s, "allocd_pool_size_bytes", "What the pool covers, in bytes",
                    offsetof(struct alloc_pool_status, size));
        pool_family(s, "allocd_pool_used_bytes", "Bytes of the pool in regions",
                    offsetof(struct alloc_pool_status, used));
        pool_family(s, "allocd_pool_free_bytes", "Bytes of the pool in no region",
                    offsetof(struct alloc_pool_status, free));
        pool_family(s, "allocd_pool_largest_free_bytes", "The largest free range of the pool, in bytes",
                    offsetof(struct alloc_pool_status, largest_free));
        pool_family(s, "allocd_pool_regions", "Regions in the pool", offsetof(struct alloc_pool_status, regions));
        pool_family(s, "allocd_pool_waiters", "Requests waiting for room in the pool",
                    offsetof(struct alloc_pool_status, waiters));

        family("allocd_pool_quota_per_uid_bytes", "The most bytes one uid may have in the pool; only where set");
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                if (!p->has_access || !p->quota_per_uid)
                        continue;
                fputs("allocd_pool_quota_per_uid_bytes", stdout);
                pool_labels(p->name, p->kind);
                printf(" %" PRIu64 "\n", p->quota_per_uid);
        }
        uid_family(s, "allocd_pool_uid_used_bytes", "Bytes of a uid's regions in the pool, as the quota counts them",
                   true);
        uid_family(s, "allocd_pool_uid_regions", "A uid's regions in the pool", false);
        family("allocd_pool_uids_omitted", "Uids with regions in the pool that allocd did not list");
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                if (!p->has_access)
                        continue;
                fputs("allocd_pool_uids_omitted", stdout);
                pool_labels(p->name, p->kind);
                printf(" %" PRIu64 "\n", p->usage_omitted);
        }
        family("allocd_pool_uids_hidden", "1: this uid may not see other uids' use of the pool, only its own");
        for (size_t i = 0; i < s->npools; i++) {
                const struct alloc_pool_status *p = &s->pools[i];
                if (!p->has_access)
                        continue;
                fputs("allocd_pool_uids_hidden", stdout);
                pool_labels(p->name, p->kind);
                printf(" %d\n", p->usage_hidden ? 1 : 0);
        }
}

static void up(int v) {
        family("allocd_up", "1: allocd answered; 0: it could not be reached or did not answer");
        printf("allocd_up %d\n", v);
}

/* --json has no meaning here: a usage error, before allocd is asked. */
int metrics_words(struct ctl *ctl, int argc, char **argv) {
        (void)argc;
        (void)argv;
        if (!ctl->json)
                return EXIT_OK;
        fprintf(stderr, "allocctl: metrics: prints the Prometheus text format; --json does not apply\n");
        return EXIT_USAGE;
}

/*
 * Runs connected or not (ctl->client NULL: allocd could not be reached, and stderr said why):
 * either way the document is whole and the exit status 0, allocd_up 0 saying that allocd did not
 * answer.  A textfile collector's `allocctl metrics > f.$$ && mv f.$$ f` then replaces the last
 * figures with that 0, which an alert sees, rather than leave them to be read as current.
 */
int cmd_metrics(struct ctl *ctl, int argc, char **argv) {
        struct alloc_status *s = NULL;
        int r;

        (void)argc;
        (void)argv;
        if (ctl->client && (r = alloc_status(ctl->client, &s)) < 0)
                request_failed("metrics", r);
        up(s != NULL);
        if (s)
                metrics_print(s);
        alloc_status_free(s);
        return EXIT_OK;
}
