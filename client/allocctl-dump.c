/* SPDX-License-Identifier: MIT */
/*
 * allocctl dump: every region allocd lets the caller see, a row or a JSON object each, read a
 * page at a time (alloc_dump_each) so that allocctl holds one page however many there are.
 */
#include "allocctl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *fmt_flags(uint32_t flags, char *buf, size_t size) {
        static const struct {
                uint32_t bit;
                const char *name;
        } names[] = {
                {ALLOC_ZERO, "zero"},       {ALLOC_NOWAIT, "nowait"},     {ALLOC_NOFAIL, "nofail"},
                {ALLOC_PERSIST, "persist"}, {ALLOC_UNSEALED, "unsealed"},
        };
        size_t n = 0;

        *buf = '\0';
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (flags & names[i].bit)
                        n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%s", n ? "," : "", names[i].name);
        if (!*buf)
                snprintf(buf, size, "-");
        return buf;
}

static const char *format_name(enum alloc_format f) {
        return f == ALLOC_FORMAT_RAW ? "raw" : f == ALLOC_FORMAT_FALLOC ? "falloc" : "?";
}

/* What a region holds: "raw", or "falloc:SIZExCOUNT" (a heap of COUNT chunks of SIZE bytes). */
static const char *fmt_format(const struct alloc_region_info *r, char *buf, size_t size) {
        if (r->format == ALLOC_FORMAT_FALLOC)
                snprintf(buf, size, "falloc:%" PRIu64 "x%" PRIu64, r->chunk_size, r->chunk_count);
        else
                snprintf(buf, size, "%s", format_name(r->format));
        return buf;
}

static json_object *flags_json(uint32_t flags) {
        char buf[64], *save = NULL;
        json_object *a = json_object_new_array();

        fmt_flags(flags, buf, sizeof(buf));
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, "-") != 0)
                        json_object_array_add(a, json_text(t));
        return a;
}

static json_object *region_json(const struct alloc_region_info *r, uint64_t now) {
        json_object *o = json_object_new_object(), *holders = json_object_new_array();

        json_object_object_add(o, "id", json_u64(r->id));
        json_object_object_add(o, "pool", json_text(r->pool));
        json_object_object_add(o, "kind", json_text(kind_name(r->kind)));
        json_object_object_add(o, "addr", json_u64(r->addr));
        json_object_object_add(o, "size", json_u64(r->size));
        json_object_object_add(o, "flags", flags_json(r->flags));
        json_object_object_add(o, "format", json_text(format_name(r->format)));
        json_object_object_add(o, "chunk_size", r->format == ALLOC_FORMAT_FALLOC ? json_u64(r->chunk_size) : NULL);
        json_object_object_add(o, "chunk_count", r->format == ALLOC_FORMAT_FALLOC ? json_u64(r->chunk_count) : NULL);
        json_object_object_add(o, "name", *r->name ? json_text(r->name) : NULL);
        json_object_object_add(o, "refs", json_u64(r->refs));
        json_object_object_add(o, "uid", json_u64(r->uid));
        json_object_object_add(o, "pid", json_object_new_int(r->pid));
        json_object_object_add(o, "created", json_u64(r->created));
        json_object_object_add(o, "age", json_u64(now > r->created ? now - r->created : 0));
        for (size_t j = 0; j < r->nholders; j++) {
                json_object *h = json_object_new_object();
                json_object_object_add(h, "pid", json_object_new_int(r->holders[j].pid));
                json_object_object_add(h, "uid", json_u64(r->holders[j].uid));
                json_object_object_add(h, "comm", json_text(r->holders[j].comm));
                json_object_object_add(h, "name", json_text(r->holders[j].name));
                json_object_array_add(holders, h);
        }
        json_object_object_add(o, "holders", holders);
        json_object_object_add(o, "holders_omitted", json_u64(r->holders_omitted));
        return o;
}

/*
 * Holders as pid/uid/command, as many as fit in buf, and the rest as +N: a holder cut off the
 * column would read as none.  ",+4294967296" is at most 12 bytes.
 */
static const char *fmt_holders(const struct alloc_region_info *r, char *buf, size_t size) {
        size_t n = 0, j;
        uint64_t rest;

        for (j = 0; j < r->nholders; j++) {
                char comm[ESCAPED_SIZE(r->holders->comm)], one[128];
                int len = snprintf(one, sizeof(one), "%s%d/%u/%s", j ? "," : "", (int)r->holders[j].pid,
                                   (unsigned)r->holders[j].uid,
                                   text_escape(r->holders[j].comm, true, comm, sizeof(comm)));
                bool last = j + 1 == r->nholders && !r->holders_omitted;
                if (n + (size_t)len + (last ? 0 : 12) >= size)
                        break;
                memcpy(buf + n, one, (size_t)len);
                n += (size_t)len;
        }
        buf[n] = '\0';
        if ((rest = (uint64_t)(r->nholders - j) + r->holders_omitted))
                snprintf(buf + n, size - n, "%s+%" PRIu64, n ? "," : "", rest);
        if (!*buf)
                snprintf(buf, size, "-");
        return buf;
}

static void region_row(const struct alloc_region_info *r, uint64_t now, int w) {
        char size[16], flags[64], format[64], age[32], holders[256], name[ESCAPED_SIZE(r->name)],
                pool[ESCAPED_SIZE(r->pool)];

        printf("%-20" PRIu64 " %-*s %#18" PRIx64 " %10s %-16s %-14s %4u %8s %-24s %s\n", r->id, w,
               text_escape(r->pool, true, pool, sizeof(pool)), r->addr, fmt_size(r->size, size, sizeof(size)),
               fmt_format(r, format, sizeof(format)), fmt_flags(r->flags, flags, sizeof(flags)), r->refs,
               fmt_age(now > r->created ? now - r->created : 0, age, sizeof(age)),
               fmt_holders(r, holders, sizeof(holders)), text_escape(r->name, false, name, sizeof(name)));
}

struct dump_out {
        bool json;
        uint64_t now;
        size_t n;
        int pool_w;
};

static void dump_start(const struct dump_out *o) {
        if (o->json)
                printf("[");
        else
                printf("%-20s %-*s %18s %10s %-16s %-14s %4s %8s %-24s %s\n", "ID", o->pool_w, "POOL", "ADDR", "SIZE",
                       "FORMAT", "FLAGS", "REFS", "AGE", "HOLDERS", "NAME");
}

/* One region as it arrives: a dump of a million regions is never held whole. */
static int dump_one(const struct alloc_region_info *r, void *data) {
        struct dump_out *o = data;

        if (o->n == 0)
                dump_start(o);
        if (o->json) {
                json_object *x = region_json(r, o->now);
                printf("%s%s", o->n ? ",\n" : "",
                       json_object_to_json_string_ext(x, JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(x);
        } else {
                region_row(r, o->now, o->pool_w);
        }
        o->n++;
        return 0;
}

int cmd_dump(struct ctl *ctl, int argc, char **argv) {
        const char *pool = argc > 0 ? argv[0] : NULL;
        struct dump_out o = {.json = ctl->json, .now = (uint64_t)time(NULL), .pool_w = 12};
        struct alloc_status *s;
        int r;

        /* The pools' names, for the width of their column: rows are printed as they arrive. */
        if (!o.json && alloc_status(ctl->client, &s) == 0) {
                o.pool_w = pool_column(s, o.pool_w);
                alloc_status_free(s);
        }

        /* Nothing is printed before the first page arrives, and a walk cut short is not closed: a
         * failed dump never reads as a complete one. */
        r = alloc_dump_each(ctl->client, pool, dump_one, &o);
        if (r < 0) {
                fflush(stdout);
                return request_failed("dump", r);
        }
        if (o.n == 0)
                dump_start(&o);
        if (o.json)
                printf("]\n");
        return EXIT_OK;
}

/* ---- free ---- */

/* ID: a region's id, in decimal digits only. */
