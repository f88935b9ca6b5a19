/* SPDX-License-Identifier: MIT */
/*
 * What the allocctl tests share: allocd with a known set of regions (big, small, shared and
 * attached in host pool h; f1 and f2 in fpga pool f), allocctl run against it with its output and
 * exit status, and readers of what it printed (JSON fields, sizes with units, words of a line).
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allocctl-common.h"

struct daemon d;
struct alloc_client *c, *c2;
struct alloc_region big, small, shared, f1, f2, attached;

void setup(void) {
        daemon_start(&d, "[pool h]\nkind = host\nsize = 16M\n"
                         "[pool f]\nkind = fpga\nranges = 0x180000000+256M, 0x100000000+1G\n");
        cr_assert_eq(alloc_connect(&c, d.sock, "tester one"), 0);
        cr_assert_eq(alloc_connect(&c2, d.sock, "tester two"), 0);
        struct alloc_opts named = {.name = "frame buffer", .flags = ALLOC_ZERO | ALLOC_PERSIST};
        struct alloc_opts aligned = {.align = 1 << 20};
        cr_assert_eq(alloc_region_new(c, "h", 4 << 20, &named, &shared), 0);
        cr_assert_eq(alloc_region_new(c, "h", 1 << 20, NULL, &big), 0);
        cr_assert_eq(alloc_region_new(c2, "h", 4096, NULL, &small), 0);
        cr_assert_eq(alloc_region_new(c, "f", 64 << 20, &aligned, &f1), 0);
        cr_assert_eq(alloc_region_new(c2, "f", 300 << 20, &aligned, &f2), 0);
        cr_assert_eq(alloc_region_attach(c2, "frame buffer", NULL, &attached), 0);
}

void teardown(void) {
        alloc_disconnect(c);
        alloc_disconnect(c2);
        daemon_stop(&d);
}

static void read_all(int fd, char *buf, size_t size) {
        size_t n = 0;
        ssize_t k;
        while (n + 1 < size && (k = read(fd, buf + n, size - 1 - n)) > 0)
                n += (size_t)k;
        buf[n] = '\0';
}

/* Runs allocctl with args (NULL-terminated), socket first unless sock is NULL; LC_ALL=C for ASCII maps. */
struct run *allocctl(const char *sock, ...) {
        static struct run r;
        const char *argv[32] = {"allocctl"};
        int n = 1, out[2], err[2];
        va_list ap;

        if (sock) {
                argv[n++] = "--socket";
                argv[n++] = sock;
        }
        va_start(ap, sock);
        while (n < 31 && (argv[n] = va_arg(ap, const char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        cr_assert(pipe(out) == 0 && pipe(err) == 0);
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                dup2(out[1], 1);
                dup2(err[1], 2);
                setenv("LC_ALL", "C", 1);
                unsetenv("ALLOCD_SOCKET");
                execv(ALLOCCTL_PATH, (char **)argv);
                _exit(127);
        }
        close(out[1]);
        close(err[1]);
        /* stderr is small; read stdout first, then stderr. */
        read_all(out[0], r.out, sizeof(r.out));
        read_all(err[0], r.err, sizeof(r.err));
        close(out[0]);
        close(err[0]);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status));
        r.status = WEXITSTATUS(status);
        return &r;
}

json_object *run_json(const char *what, ...) {
        struct run *r;
        va_list ap;
        const char *a[4] = {0};

        va_start(ap, what);
        for (int i = 0; i < 3 && (a[i] = va_arg(ap, const char *)); i++)
                ;
        va_end(ap);
        r = allocctl(d.sock, "--json", what, a[0], a[1], a[2], (char *)NULL);
        cr_assert_eq(r->status, 0, "allocctl %s: %s", what, r->err);
        json_object *o = json_tokener_parse(r->out);
        cr_assert_not_null(o, "allocctl --json %s printed no JSON: %s", what, r->out);
        return o;
}

json_object *get(json_object *o, const char *key) {
        json_object *v;
        cr_assert(json_object_object_get_ex(o, key, &v), "no key '%s' in %s", key, json_object_to_json_string(o));
        return v;
}

uint64_t get_u64(json_object *o, const char *key) {
        return json_object_get_uint64(get(o, key));
}

const char *get_str(json_object *o, const char *key) {
        return json_object_get_string(get(o, key));
}

/* "1.5MiB" back into bytes. */
double parse_human(const char *s) {
        static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        char *end;
        double v = strtod(s, &end);
        for (int i = 0; i < 5; i++)
                if (!strcmp(end, units[i]))
                        return v * (double)(1ull << (10 * i));
        cr_assert_fail("'%s' is not a size with a unit", s);
        return 0;
}

void assert_human(const char *text, uint64_t bytes) {
        double v = parse_human(text);
        cr_assert(v >= bytes * 0.95 && v <= bytes * 1.05 + 1, "'%s' is not about %llu bytes", text,
                  (unsigned long long)bytes);
}

/* The words of line, split on blanks, at most max. */
int words(char *line, char **w, int max) {
        int n = 0;
        for (char *save = NULL, *t = strtok_r(line, " \t", &save); t && n < max; t = strtok_r(NULL, " \t", &save))
                w[n++] = t;
        return n;
}

/* The line of text whose first word is key; copied into buf. */
char *line_starting(const char *text, const char *key, char *buf, size_t size) {
        for (const char *p = text; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                if (len < size && !strncmp(p, key, strlen(key)) && (p[strlen(key)] == ' ')) {
                        memcpy(buf, p, len);
                        buf[len] = '\0';
                        return buf;
                }
                p = nl ? nl + 1 : NULL;
        }
        return NULL;
}

json_object *find(json_object *array, const char *key, uint64_t value) {
        for (size_t i = 0; i < json_object_array_length(array); i++) {
                json_object *x = json_object_array_get_idx(array, i);
                if (get_u64(x, key) == value)
                        return x;
        }
        return NULL;
}
