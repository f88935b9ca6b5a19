/* SPDX-License-Identifier: MIT */
/*
 * What the last reload did (reload.c), in words: the journal's, and STATUS='s part (reload_summary).
 * Also the comma-separated lists those words are made of (reload_list_add), which others use too.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "reload-report.h"
#include "reload.h"

/*
 * What the last reload did.  Its new pools are made after reload_run returns, so it is counted as
 * they come: said in the journal when the file is read and again once the last pool is made, and
 * in STATUS= (reload_summary) all along, the pools still being made as pending.
 */
static struct {
        char when[16];     /* local time, HH:MM:SS; "": no reload yet */
        char refused[512]; /* why the file was refused; "": it was not */
        unsigned added, failed, rules, restart_only, draining, removed, back, waiting;
        char limits[768]; /* the limits that changed, "key old -> new" each */
        char level[40];   /* "log level old -> new", or "" */
        char added_names[96], failed_names[96];
        char draining_names[96], removed_names[96], back_names[96]; /* taken out: held regions, or none; put back */
        char waiting_names[96]; /* put back changed: made once the draining pool empties */
        char failed_why[1024];  /* "name: reason", one a failed pool, for the journal */
} last;
static char summary[320];

void reload_list_add(char *buf, size_t size, const char *item) {
        size_t n = strlen(buf);

        if (n >= 3 && !strcmp(buf + n - 3, "..."))
                return;
        if (n + 2 + strlen(item) + 5 <= size)
                snprintf(buf + n, size - n, "%s%s", n ? ", " : "", item);
        else if (n + 5 <= size)
                snprintf(buf + n, size - n, "%s...", n ? ", " : "");
}

/* Appends a part to a list of parts. */
static void part(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void part(char *buf, size_t size, const char *fmt, ...) {
        char item[1200]; /* the longest part: a count and failed_why */
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(item, sizeof(item), fmt, ap);
        va_end(ap);
        reload_list_add(buf, size, item);
}

void report_describe(char *buf, size_t size, bool full, unsigned npending, const char *pending) {
        buf[0] = '\0';
        if (*last.refused) {
                snprintf(buf, size, "refused (%s)", last.refused);
                return;
        }
        if (last.added)
                part(buf, size, "%u %s added (%s)", last.added, plural(last.added, "pool", "pools"), last.added_names);
        if (npending)
                part(buf, size, "%u %s pending (%s)", npending, plural(npending, "pool", "pools"), pending);
        if (last.failed)
                part(buf, size, "%u %s failed (%s)", last.failed, plural(last.failed, "pool", "pools"),
                     full ? last.failed_why : last.failed_names);
        if (last.draining)
                part(buf, size, "%u %s draining (%s)", last.draining, plural(last.draining, "pool", "pools"),
                     last.draining_names);
        if (last.removed)
                part(buf, size, "%u %s removed (%s)", last.removed, plural(last.removed, "pool", "pools"),
                     last.removed_names);
        if (last.back)
                part(buf, size, "%u %s serving again (%s)", last.back, plural(last.back, "pool", "pools"),
                     last.back_names);
        if (last.waiting)
                part(buf, size, "%u %s waiting for a draining namesake (%s)", last.waiting,
                     plural(last.waiting, "pool", "pools"), last.waiting_names);
        if (!full)
                return;
        if (*last.limits)
                part(buf, size, "limits changed (%s)", last.limits);
        if (*last.level)
                part(buf, size, "%s", last.level);
        if (last.rules)
                part(buf, size, "%u %s access rules changed", last.rules, plural(last.rules, "pool's", "pools'"));
        if (last.restart_only)
                part(buf, size, "%u %s other changes wait for a restart", last.restart_only,
                     plural(last.restart_only, "pool's", "pools'"));
}

void report_summarize(const char *what) {
        snprintf(summary, sizeof(summary), "last reload %s: %s", last.when, *what ? what : "applied");
}

void report_begin(const char *refused) {
        time_t now = time(NULL);
        struct tm tm;

        memset(&last, 0, sizeof(last));
        if (!localtime_r(&now, &tm) || !strftime(last.when, sizeof(last.when), "%H:%M:%S", &tm))
                snprintf(last.when, sizeof(last.when), "?");
        if (refused)
                snprintf(last.refused, sizeof(last.refused), "%s", refused);
}

void report_pool(enum reload_said what, const char *name, const char *why) {
        const struct {
                unsigned *n;
                char *names;
                size_t size;
        } said[] = {
                [SAID_ADDED] = {&last.added, last.added_names, sizeof(last.added_names)},
                [SAID_FAILED] = {&last.failed, last.failed_names, sizeof(last.failed_names)},
                [SAID_DRAINING] = {&last.draining, last.draining_names, sizeof(last.draining_names)},
                [SAID_REMOVED] = {&last.removed, last.removed_names, sizeof(last.removed_names)},
                [SAID_BACK] = {&last.back, last.back_names, sizeof(last.back_names)},
                [SAID_WAITING] = {&last.waiting, last.waiting_names, sizeof(last.waiting_names)},
                [SAID_RULES] = {&last.rules, NULL, 0},
                [SAID_RESTART_ONLY] = {&last.restart_only, NULL, 0},
        };
        char item[NAME_MAX_LEN + 520];

        (*said[what].n)++;
        if (said[what].names)
                reload_list_add(said[what].names, said[what].size, name);
        if (what != SAID_FAILED)
                return;
        snprintf(item, sizeof(item), "%s: %s", name, why);
        reload_list_add(last.failed_why, sizeof(last.failed_why), item);
}

void report_limits(const struct limits *was, const struct limits *now) {
        for (size_t i = 0; i < nlimit_keys; i++) {
                uint32_t a = *(const uint32_t *)((const char *)was + limit_keys[i].off);
                uint32_t b = *(const uint32_t *)((const char *)now + limit_keys[i].off);
                char item[96];
                if (a == b)
                        continue;
                snprintf(item, sizeof(item), "%s %u%s -> %u%s", limit_keys[i].key, a, limit_keys[i].unit, b,
                         limit_keys[i].unit);
                reload_list_add(last.limits, sizeof(last.limits), item);
        }
}

void report_level(int was, int level) {
        snprintf(last.level, sizeof(last.level), "log level %s -> %s", log_level_name(was), log_level_name(level));
}

const char *report_when(void) {
        return last.when;
}

const char *reload_summary(void) {
        return summary;
}
