/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_CONFIG_VALUES_H
#define ALLOCD_CONFIG_VALUES_H

/* The configuration's values (config-values.c); parse_size is in config.h. */

#include <stdint.h>
#include <sys/types.h>

#include "duration.h" /* parse_duration_ms */

int parse_uint(const char *s, uint64_t max, uint64_t *ret);
/* 1 or 0; -EINVAL if s is not a boolean. */
int parse_bool(const char *s);
int parse_user(const char *s, uid_t *ret);
int parse_group(const char *s, gid_t *ret);

#endif
