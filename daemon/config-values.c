/* SPDX-License-Identifier: MIT */
/*
 * The configuration's values: numbers (decimal or 0x hex, never octal), sizes with units,
 * booleans, users and groups by name or number (durations: common/duration.c).  Each returns 0 or a negative errno
 * value and leaves the message to config.c, which knows the file and the line.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config-values.h"
#include "config.h"

/* Decimal, or hex with 0x; never octal, so "010" is ten. */
static int number_base(const char *s) {
        return s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? 16 : 10;
}

/*
 * One rule for a unit: K, M, G, T, P or E in either case, alone or with B or iB after it (either case
 * too: all powers of 1024, as allocd always took "4k" and "4K"), and only after a decimal number: in
 * hex, B and E are digits, so that "0x1E" could not say whether it meant 30 bytes or 1 EiB.
 */
int parse_size(const char *s, uint64_t *ret) {
        static const char units[] = "KMGTPE";
        const char *u;
        char *end;
        uint64_t v;
        int base = number_base(s), shift = 0;

        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, base);
        if (errno)
                return -ERANGE;
        if (*end) {
                if (base != 10 || !(u = strchr(units, toupper((unsigned char)*end))))
                        return -EINVAL;
                shift = 10 * (int)(u - units + 1);
                end++;
                if (*end && strcasecmp(end, "B") != 0 && strcasecmp(end, "iB") != 0)
                        return -EINVAL;
                if (v > (UINT64_MAX >> shift))
                        return -ERANGE;
        }
        *ret = v << shift;
        return 0;
}

int parse_uint(const char *s, uint64_t max, uint64_t *ret) {
        char *end;

        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        uint64_t v = strtoull(s, &end, number_base(s));
        if (*end)
                return -EINVAL;
        if (errno || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int parse_bool(const char *s) {
        if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "on"))
                return 1;
        if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "off"))
                return 0;
        return -EINVAL;
}

int parse_user(const char *s, uid_t *ret) {
        uint64_t v;
        struct passwd pw, *res;
        char buf[4096];

        if (parse_uint(s, UINT32_MAX - 1, &v) == 0) {
                *ret = (uid_t)v;
                return 0;
        }
        if (getpwnam_r(s, &pw, buf, sizeof(buf), &res) != 0 || !res)
                return -ENOENT;
        *ret = pw.pw_uid;
        return 0;
}

int parse_group(const char *s, gid_t *ret) {
        uint64_t v;
        struct group gr, *res;
        char buf[4096];

        if (parse_uint(s, UINT32_MAX - 1, &v) == 0) {
                *ret = (gid_t)v;
                return 0;
        }
        if (getgrnam_r(s, &gr, buf, sizeof(buf), &res) != 0 || !res)
                return -ENOENT;
        *ret = gr.gr_gid;
        return 0;
}

void size_problem(const char *s, int r, char *buf, size_t size) {
        char *end;

        if (!isdigit((unsigned char)*s)) {
                snprintf(buf, size, "not a number");
                return;
        }
        if (r == -ERANGE) {
                snprintf(buf, size, "more than 16E (2^64 bytes)");
                return;
        }
        strtoull(s, &end, number_base(s));
        if (number_base(s) == 16)
                snprintf(buf, size, "'%s' after a 0x number, which is bytes, without a unit", end);
        else
                snprintf(buf, size, "'%s' after the number is not a unit", end);
}

void size_text(uint64_t v, char *buf, size_t size) {
        static const char units[] = "KMGTPE";
        int u = 0;

        while (v && u < 6 && !(v & 1023)) {
                v >>= 10;
                u++;
        }
        if (u)
                snprintf(buf, size, "%llu%c", (unsigned long long)v, units[u - 1]);
        else
                snprintf(buf, size, "%llu", (unsigned long long)v);
}
