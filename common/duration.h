/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_DURATION_H
#define ALLOC_DURATION_H

#include <stdint.h>

/*
 * A duration as allocd.conf and ALLOCD_TIMEOUT write it: "500ms", "30s", "2m" or "2min"; a bare
 * number is seconds.  0, -EINVAL for anything else, -ERANGE past UINT32_MAX milliseconds.
 */
int parse_duration_ms(const char *s, uint32_t *ret);

#endif
