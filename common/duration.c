/* SPDX-License-Identifier: MIT */
/* Durations, shared by the configuration (daemon/config.c) and liballoc-client's ALLOCD_TIMEOUT and ALLOCD_SPIN. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"

/* The number s starts with, and where its unit starts; -EINVAL without a number, -ERANGE past 2^64. */
static int number(const char *s, uint64_t *v, char **unit) {
        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        *v = strtoull(s, unit, 10);
        return errno ? -ERANGE : 0;
}

int parse_duration_ms(const char *s, uint32_t *ret) {
        char *end;
        uint64_t v, mul;
        int r = number(s, &v, &end);

        if (r < 0)
                return r;
        if (!*end || !strcmp(end, "s"))
                mul = 1000;
        else if (!strcmp(end, "ms"))
                mul = 1;
        else if (!strcmp(end, "min") || !strcmp(end, "m"))
                mul = 60000;
        else if (!strcmp(end, "h"))
                mul = 3600000;
        else
                return -EINVAL;
        if (v > UINT32_MAX / mul)
                return -ERANGE;
        *ret = (uint32_t)(v * mul);
        return 0;
}

int parse_duration_us(const char *s, uint32_t max_us, uint32_t *ret) {
        char *end;
        uint64_t v, mul;
        int r = number(s, &v, &end);

        if (r < 0)
                return r;
        if (!strcmp(end, "us"))
                mul = 1;
        else if (!strcmp(end, "ms"))
                mul = 1000;
        else if (!strcmp(end, "s"))
                mul = 1000000; /* a duration, if one longer than the spins it is for */
        else if (!*end && v == 0)
                mul = 1;
        else
                return -EINVAL;
        if (v > max_us / mul)
                return -ERANGE;
        *ret = (uint32_t)(v * mul);
        return 0;
}
