/* SPDX-License-Identifier: MIT */
/* Durations, shared by the configuration (daemon/config.c) and liballoc-client's ALLOCD_TIMEOUT. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"

int parse_duration_ms(const char *s, uint32_t *ret) {
        char *end;
        uint64_t v, mul;

        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno)
                return -ERANGE;
        if (!*end || !strcmp(end, "s"))
                mul = 1000;
        else if (!strcmp(end, "ms"))
                mul = 1;
        else if (!strcmp(end, "min") || !strcmp(end, "m"))
                mul = 60000;
        else
                return -EINVAL;
        if (v > UINT32_MAX / mul)
                return -ERANGE;
        *ret = (uint32_t)(v * mul);
        return 0;
}
