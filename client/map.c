/* SPDX-License-Identifier: MIT */
/*
 * allocctl map: a picture of one pool.
 *
 * The pool is cut into segments, in address order: each region is a used
 * segment, the room between regions inside the pool's spans is free, and the
 * address space between spans (an fpga pool's ranges need not touch) is
 * reserved.  The terminal picture divides [first span, end of last span) into
 * rows x columns equal cells and shades each by what its bytes are; the SVG
 * draws each segment as one path (several rectangles where it wraps a row),
 * so a bug report keeps every region, however small, with its id and name
 * in a tooltip.
 */
#include "allocctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <langinfo.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

enum seg_type { SEG_USED, SEG_FREE, SEG_RESERVED };

/* What the picture needs of a region: 32 bytes and its name, where a dump's copy is some 600. */
struct mapped {
        uint64_t id, addr, size;
        char *name; /* NULL: none */
};

struct regions {
        struct mapped *v;
        size_t n, cap;
        bool oom;
};

struct segment {
        enum seg_type type;
        uint64_t base, size;
        const struct mapped *region; /* SEG_USED */
};

struct cell {
        uint64_t used, reserved, largest, bytes;
};

enum shade { SHADE_USED, SHADE_PARTLY, SHADE_FREE, SHADE_LARGEST, SHADE_RESERVED, NSHADES };

static const char *shade_utf8[NSHADES] = {"\u2588", "\u2592", "\u00b7", "\u2591", "\u2573"};
static const char *shade_ascii[NSHADES] = {"#", "+", ".", "_", "x"};
static const char *shade_name[NSHADES] = {"used", "partly used", "free", "largest free range", "reserved"};
static const char *seg_name[] = {"used", "free", "reserved"};

/* Bounds on the picture, whatever the terminal or the options say: at most 1000 x 1000 cells. */
enum { MIN_WIDTH = 20, MAX_WIDTH = 1000, MAX_ROWS = 1000 };

static struct {
        const char *svg;
        unsigned width, rows;
} opt = {.rows = 8};

static int cmp_span(const void *a, const void *b) {
        const struct alloc_span *x = a, *y = b;
        return x->base < y->base ? -1 : x->base > y->base;
}

static int cmp_region(const void *a, const void *b) {
        const struct mapped *x = a, *y = b;
        return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int push(struct segment **v, size_t *n, size_t *cap, struct segment s) {
        if (s.size == 0)
                return 0;
        if (*n == *cap) {
                size_t c = *cap ? 2 * *cap : 64;
                struct segment *p = realloc(*v, c * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                *v = p;
                *cap = c;
        }
        (*v)[(*n)++] = s;
        return 0;
}

/* alloc_dump_each's callback: the pool's regions, kept as the picture needs them. */
static int collect(const struct alloc_region_info *x, void *data) {
        struct regions *d = data;
        struct mapped m = {x->id, x->addr, x->size, NULL};

        if (d->n == d->cap) {
                size_t c = d->cap ? 2 * d->cap : 64;
                struct mapped *v = realloc(d->v, c * sizeof(*v));
                if (v) {
                        d->v = v;
                        d->cap = c;
                }
        }
        if (d->n == d->cap || (*x->name && !(m.name = strdup(x->name)))) {
                d->oom = true;
                return -ENOMEM;
        }
        d->v[d->n++] = m;
        return 0;
}

static void regions_free(struct regions *d) {
        for (size_t i = 0; i < d->n; i++)
                free(d->v[i].name);
        free(d->v);
}

/* The pool's segments in order; spans and regions are sorted in place. */
static int segments(struct alloc_pool_status *p, struct regions *d, struct segment **ret, size_t *nret) {
        struct segment *v = NULL;
        size_t n = 0, cap = 0, k = 0;
        int r = 0;

        if (p->nspans) /* qsort must not see NULL, even for nothing */
                qsort(p->spans, p->nspans, sizeof(*p->spans), cmp_span);
        if (d->n)
                qsort(d->v, d->n, sizeof(*d->v), cmp_region);
        for (size_t i = 0; i < p->nspans && r == 0; i++) {
                uint64_t at = p->spans[i].base, end = at + p->spans[i].size;
                if (i > 0) {
                        uint64_t prev = p->spans[i - 1].base + p->spans[i - 1].size;
                        r = push(&v, &n, &cap, (struct segment){SEG_RESERVED, prev, at - prev, NULL});
                }
                for (; k < d->n && d->v[k].addr < end && r == 0; k++) {
                        const struct mapped *x = &d->v[k];
                        if (x->addr < at) /* a snapshot race or overlap: draw what is left */
                                continue;
                        r = push(&v, &n, &cap, (struct segment){SEG_FREE, at, x->addr - at, NULL});
                        uint64_t size = x->size < end - x->addr ? x->size : end - x->addr;
                        if (r == 0)
                                r = push(&v, &n, &cap, (struct segment){SEG_USED, x->addr, size, x});
                        at = x->addr + size;
                }
                if (r == 0)
                        r = push(&v, &n, &cap, (struct segment){SEG_FREE, at, end - at, NULL});
        }
        if (r < 0) {
                free(v);
                return r;
        }
        *ret = v;
        *nret = n;
        return 0;
}

/* The first largest free segment, or -1. */
static ssize_t largest_free(const struct segment *s, size_t n) {
        ssize_t best = -1;
        for (size_t i = 0; i < n; i++)
                if (s[i].type == SEG_FREE && (best < 0 || s[i].size > s[best].size))
                        best = (ssize_t)i;
        return best;
}

typedef unsigned __int128 u128;

/* Byte counts per cell: ncells equal cells over [start, start + extent). */
static void fill_cells(struct cell *cells, size_t ncells, uint64_t start, u128 extent, const struct segment *s,
                       size_t n, ssize_t big) {
        for (size_t i = 0; i < ncells; i++)
                cells[i].bytes = (uint64_t)(extent * (i + 1) / ncells - extent * i / ncells);
        for (size_t i = 0; i < n; i++) {
                u128 a = s[i].base - start, b = a + s[i].size;
                size_t c0 = (size_t)(a * ncells / extent), c1 = (size_t)((b * ncells - 1) / extent);
                for (size_t c = c0; c <= c1 && c < ncells; c++) {
                        u128 lo = extent * c / ncells, hi = extent * (c + 1) / ncells;
                        u128 x = (a > lo ? a : lo), y = (b < hi ? b : hi);
                        uint64_t bytes = y > x ? (uint64_t)(y - x) : 0;
                        if (s[i].type == SEG_USED)
                                cells[c].used += bytes;
                        else if (s[i].type == SEG_RESERVED)
                                cells[c].reserved += bytes;
                        else if ((ssize_t)i == big)
                                cells[c].largest += bytes;
                }
        }
}

static enum shade shade_of(const struct cell *c) {
        uint64_t in_pool = c->bytes - c->reserved;

        if (c->used)
                return c->used == in_pool ? SHADE_USED : SHADE_PARTLY;
        if (in_pool == 0)
                return SHADE_RESERVED;
        return c->largest == in_pool ? SHADE_LARGEST : SHADE_FREE;
}

static unsigned terminal_width(void) {
        struct winsize ws;
        const char *env = getenv("COLUMNS");
        unsigned w = 80;

        if (opt.width)
                return opt.width;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= MIN_WIDTH)
                w = ws.ws_col;
        else if (env && atoi(env) >= MIN_WIDTH)
                w = (unsigned)atoi(env);
        return w < MAX_WIDTH ? w : MAX_WIDTH;
}

static void xml_text(FILE *f, const char *s) {
        for (; *s; s++) {
                switch (*s) {
                case '<':
                        fputs("&lt;", f);
                        break;
                case '>':
                        fputs("&gt;", f);
                        break;
                case '&':
                        fputs("&amp;", f);
                        break;
                case '"':
                        fputs("&quot;", f);
                        break;
                default:
                        /* Control characters are not allowed in XML 1.0; names cannot hold them, comms might. */
                        fputc((unsigned char)*s < 0x20 ? '?' : *s, f);
                }
        }
}

enum { SVG_W = 1000, SVG_ROW_H = 24, SVG_GAP = 8, SVG_LEFT = 150, SVG_TOP = 40 };

static void svg_segment(FILE *f, const struct segment *s, bool largest, uint64_t start, u128 extent, unsigned rows) {
        double total = (double)rows * SVG_W;
        double a = (double)(s->base - start) / (double)extent * total;
        double b = (double)(s->base - start + s->size) / (double)extent * total;
        char size[16];

        if (b - a < 0.5) /* every segment stays visible */
                b = a + 0.5;
        fprintf(f, "  <path class=\"%s%s\" d=\"", seg_name[s->type], largest ? " largest" : "");
        for (unsigned r = (unsigned)(a / SVG_W); r < rows && r * (double)SVG_W < b; r++) {
                double x0 = a > r * (double)SVG_W ? a - r * SVG_W : 0,
                       x1 = b < (r + 1) * (double)SVG_W ? b - r * SVG_W : SVG_W;
                fprintf(f, "M%.3f %u h%.3f v%u h%.3f z ", SVG_LEFT + x0, SVG_TOP + r * (SVG_ROW_H + SVG_GAP), x1 - x0,
                        SVG_ROW_H, x0 - x1);
        }
        fprintf(f, "\"><title>%s%s 0x%" PRIx64 " +%s", seg_name[s->type], largest ? " (largest free range)" : "",
                s->base, fmt_size(s->size, size, sizeof(size)));
        if (s->region) {
                fprintf(f, " region %" PRIu64, s->region->id);
                if (s->region->name) {
                        fputs(" '", f);
                        xml_text(f, s->region->name);
                        fputc('\'', f);
                }
        }
        fputs("</title></path>\n", f);
}

/* Writes the picture to f, opened on path, and closes it. */
static int write_svg(FILE *f, const char *path, const struct alloc_pool_status *p, const struct segment *s, size_t n,
                     ssize_t big, uint64_t start, u128 extent, unsigned rows) {
        unsigned height = SVG_TOP + rows * (SVG_ROW_H + SVG_GAP) + 40;
        char size[16];

        fprintf(f,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" "
                "font-family=\"monospace\" font-size=\"12\">\n"
                "<style>.used{fill:#c0392b}.free{fill:#e8f5e9}.reserved{fill:#bdbdbd}"
                ".largest{fill:#66bb6a;stroke:#1b5e20;stroke-width:1}</style>\n"
                "<text x=\"10\" y=\"20\">",
                SVG_LEFT + SVG_W + 10, height, SVG_LEFT + SVG_W + 10, height);
        xml_text(f, p->name);
        fprintf(f, ": %s, %s in %zu span%s, %zu segments</text>\n", kind_name(p->kind),
                fmt_size(p->size, size, sizeof(size)), p->nspans, p->nspans == 1 ? "" : "s", n);
        for (unsigned r = 0; r < rows; r++)
                fprintf(f, "<text x=\"10\" y=\"%u\">0x%" PRIx64 "</text>\n", SVG_TOP + r * (SVG_ROW_H + SVG_GAP) + 16,
                        start + (uint64_t)(extent * r / rows));
        fputs("<g id=\"segments\">\n", f);
        for (size_t i = 0; i < n; i++)
                svg_segment(f, &s[i], (ssize_t)i == big, start, extent, rows);
        fputs("</g>\n<g id=\"legend\">\n", f);
        static const char *legend[][2] = {{"used", "used"},
                                          {"free", "free"},
                                          {"free largest", "largest free range"},
                                          {"reserved", "reserved (not part of the pool)"}};
        for (unsigned i = 0; i < 4; i++) {
                unsigned x = 10 + i * 220, y = height - 28;
                fprintf(f,
                        "  <rect class=\"%s\" x=\"%u\" y=\"%u\" width=\"14\" height=\"14\"/>"
                        "<text x=\"%u\" y=\"%u\">%s</text>\n",
                        legend[i][0], x, y, x + 20, y + 12, legend[i][1]);
        }
        fputs("</g>\n</svg>\n", f);
        if (ferror(f) | (fclose(f) != 0)) {
                fprintf(stderr, "allocctl: map: writing %s failed: %s\n", path, strerror(errno));
                return EXIT_FAILED;
        }
        return EXIT_OK;
}

static json_object *map_json(const struct alloc_pool_status *p, const struct segment *s, size_t n, ssize_t big,
                             uint64_t start, u128 extent, char **lines, unsigned rows, unsigned cols,
                             uint64_t unshown) {
        json_object *o = json_object_new_object(), *segs = json_object_new_array(), *pic = json_object_new_array();

        json_object_object_add(o, "pool", json_text(p->name));
        json_object_object_add(o, "kind", json_text(kind_name(p->kind)));
        json_object_object_add(o, "start", json_object_new_uint64(start));
        json_object_object_add(o, "extent", json_object_new_uint64((uint64_t)(extent - (extent > UINT64_MAX))));
        json_object_object_add(o, "rows", json_object_new_uint64(rows));
        json_object_object_add(o, "columns", json_object_new_uint64(cols));
        for (unsigned r = 0; r < rows; r++)
                json_object_array_add(pic, json_text(lines[r]));
        json_object_object_add(o, "picture", pic);
        for (size_t i = 0; i < n; i++) {
                json_object *x = json_object_new_object();
                json_object_object_add(x, "type", json_text(seg_name[s[i].type]));
                json_object_object_add(x, "base", json_object_new_uint64(s[i].base));
                json_object_object_add(x, "size", json_object_new_uint64(s[i].size));
                if (s[i].region) {
                        json_object_object_add(x, "region", json_object_new_uint64(s[i].region->id));
                        if (s[i].region->name)
                                json_object_object_add(x, "name", json_text(s[i].region->name));
                }
                json_object_array_add(segs, x);
        }
        json_object_object_add(o, "segments", segs);
        if (big >= 0) {
                json_object *x = json_object_new_object();
                json_object_object_add(x, "base", json_object_new_uint64(s[big].base));
                json_object_object_add(x, "size", json_object_new_uint64(s[big].size));
                json_object_object_add(o, "largest_free", x);
        } else {
                json_object_object_add(o, "largest_free", NULL);
        }
        json_object_object_add(o, "unshown_used", json_object_new_uint64(unshown));
        return o;
}

/* Options after "map POOL"; EXIT_OK or EXIT_USAGE. */
int map_args(int argc, char **argv) {
        static const struct option opts[] = {
                {"svg", required_argument, NULL, 'S'},
                {"width", required_argument, NULL, 'w'},
                {"rows", required_argument, NULL, 'r'},
                {0},
        };
        char *end, **v = calloc((size_t)argc + 2, sizeof(*v));
        int o, npos = 0;

        if (!v)
                return EXIT_FAILED;
        v[0] = "allocctl map";
        memcpy(v + 1, argv, (size_t)argc * sizeof(*v));
        optind = 0;
        opterr = 0;
        while ((o = getopt_long(argc + 1, v, "-:", opts, NULL)) != -1) {
                long x;
                switch (o) {
                case 1:
                        if (npos++ == 0)
                                argv[0] = optarg; /* POOL */
                        break;
                case 'S':
                        opt.svg = optarg;
                        break;
                case 'w':
                case 'r':
                        errno = 0;
                        x = strtol(optarg, &end, 10);
                        if (errno || *end || end == optarg ||
                            (o == 'w' ? x < MIN_WIDTH || x > MAX_WIDTH : x < 1 || x > MAX_ROWS)) {
                                fprintf(stderr, "allocctl: map: --%s %s: expected a number from %d to %d\n",
                                        o == 'w' ? "width" : "rows", optarg, o == 'w' ? MIN_WIDTH : 1,
                                        o == 'w' ? MAX_WIDTH : MAX_ROWS);
                                free(v);
                                return EXIT_USAGE;
                        }
                        *(o == 'w' ? &opt.width : &opt.rows) = (unsigned)x;
                        break;
                default:
                        fprintf(stderr, "allocctl: map: %s '%s'; try 'allocctl map --help'\n",
                                o == ':' ? "missing value for" : "unknown option", v[optind - 1]);
                        free(v);
                        return EXIT_USAGE;
                }
        }
        for (int i = optind; i < argc + 1; i++) /* the words after "--" */
                if (npos++ == 0)
                        argv[0] = v[i];
        free(v);
        if (npos != 1) {
                fprintf(stderr, "usage: allocctl map POOL [--svg FILE] [--width N] [--rows N]\n");
                return EXIT_USAGE;
        }
        return EXIT_OK;
}

int cmd_map(struct ctl *ctl, int argc, char **argv) {
        struct alloc_status *st = NULL;
        struct regions d = {0};
        struct alloc_pool_status *p = NULL;
        struct segment *s = NULL;
        struct cell *cells = NULL;
        char **lines = NULL;
        FILE *svg = NULL;
        size_t n = 0;
        int err, rc = EXIT_FAILED;
        (void)argc;

        if ((err = alloc_status(ctl->client, &st)) < 0)
                return request_failed("map", err);
        for (size_t i = 0; i < st->npools; i++)
                if (!strcmp(st->pools[i].name, argv[0]))
                        p = &st->pools[i];
        if (!p) {
                char name[ESCAPED_SIZE(st->pools->name)];
                /* allocctl dump's words, which are allocd's (its request names the pool). */
                fprintf(stderr, "allocctl: map: " TEXT_NO_POOL_FMT "\n",
                        text_escape(argv[0], false, name, sizeof(name)));
                goto out;
        }
        if (p->nspans == 0) {
                fprintf(stderr, "allocctl: map: allocd did not say what pool '%s' covers (an older allocd?)\n",
                        p->name);
                goto out;
        }
        if ((err = alloc_dump_each(ctl->client, p->name, collect, &d)) < 0 && d.oom) {
                fprintf(stderr, "allocctl: map: out of memory for %zu regions\n", d.n);
                goto out;
        }
        if (err < 0) {
                rc = request_failed("map", err);
                goto out;
        }
        /*
         * Dump lists only the regions this uid may see; status counts every region of the pool.  Root
         * sees every region: a difference there is only a region made or freed between the two requests.
         */
        uint64_t shown = 0, unshown;
        for (size_t i = 0; i < d.n; i++)
                shown += d.v[i].size;
        unshown = geteuid() != 0 && p->used > shown ? p->used - shown : 0;
        if (segments(p, &d, &s, &n) < 0) {
                fprintf(stderr, "allocctl: map: out of memory\n");
                goto out;
        }

        bool utf8 = setlocale(LC_CTYPE, "") && !strcmp(nl_langinfo(CODESET), "UTF-8");
        const char **shade = utf8 ? shade_utf8 : shade_ascii;
        uint64_t start = p->spans[0].base;
        u128 extent = (u128)p->spans[p->nspans - 1].base + p->spans[p->nspans - 1].size - start;
        unsigned label = (unsigned)snprintf(NULL, 0, "0x%" PRIx64, start + (uint64_t)(extent - 1)) + 1;
        unsigned width = terminal_width(), cols = width > label + 12 ? width - label - 2 : 10, rows = opt.rows;
        size_t ncells = (size_t)cols * rows;
        ssize_t big = largest_free(s, n);
        char size[16], size2[16];

        cells = calloc(ncells, sizeof(*cells));
        lines = calloc(rows, sizeof(*lines));
        if (!cells || !lines) {
                fprintf(stderr, "allocctl: map: out of memory\n");
                goto out;
        }
        if (extent < ncells) /* fewer bytes than cells: one cell per byte */
                ncells = (size_t)extent, rows = (unsigned)((ncells + cols - 1) / cols);
        fill_cells(cells, ncells, start, extent, s, n, big);
        for (unsigned r = 0; r < rows; r++) {
                size_t len = 0, cap = (size_t)cols * 4 + 1;
                if (!(lines[r] = malloc(cap))) {
                        fprintf(stderr, "allocctl: map: out of memory\n");
                        goto out;
                }
                for (size_t c = (size_t)r * cols; c < ncells && c < (size_t)(r + 1) * cols; c++)
                        len += (size_t)snprintf(lines[r] + len, cap - len, "%s", shade[shade_of(&cells[c])]);
                lines[r][len] = '\0';
        }
        /* Before anything is printed: a path that cannot be written fails the command with nothing on stdout. */
        if (opt.svg && !(svg = fopen(opt.svg, "we"))) {
                fprintf(stderr, "allocctl: map: --svg %s: %s; give a file in a directory you may write\n", opt.svg,
                        strerror(errno));
                goto out;
        }
        if (ctl->json) {
                json_print(map_json(p, s, n, big, start, extent, lines, rows, cols, unshown));
        } else {
                printf("%s: %s, %s in %zu span%s; one cell = %s\n", p->name, kind_name(p->kind),
                       fmt_size(p->size, size, sizeof(size)), p->nspans, p->nspans == 1 ? "" : "s",
                       fmt_size((uint64_t)((extent + ncells - 1) / ncells), size2, sizeof(size2)));
                for (unsigned r = 0; r < rows; r++) {
                        char at[24];
                        snprintf(at, sizeof(at), "0x%" PRIx64, start + (uint64_t)(extent * r * cols / ncells));
                        printf("%*s |%s|\n", (int)label - 1, at, lines[r]);
                }
                for (int i = 0; i < NSHADES; i++)
                        printf("%s%s %s", i ? "  " : "", shade[i], shade_name[i]);
                putchar('\n');
                if (big >= 0)
                        printf("largest free range: 0x%" PRIx64 " +%s\n", s[big].base,
                               fmt_size(s[big].size, size, sizeof(size)));
                else
                        printf("largest free range: none, the pool is full\n");
                if (unshown)
                        printf("%s more is in use than the regions drawn: regions this uid may not see (another "
                               "uid's, in a pool it may not use), drawn as free\n",
                               fmt_size(unshown, size, sizeof(size)));
        }
        rc = svg ? write_svg(svg, opt.svg, p, s, n, big, start, extent, rows) : EXIT_OK;
        svg = NULL;
out:
        if (svg)
                fclose(svg);
        for (unsigned r = 0; lines && r < rows; r++)
                free(lines[r]);
        free(lines);
        free(cells);
        free(s);
        regions_free(&d);
        alloc_status_free(st);
        return rc;
}
