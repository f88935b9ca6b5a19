/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_CONFIG_VALUES_H
#define ALLOCD_CONFIG_VALUES_H

/* The configuration's values (config-values.c); parse_size is in config.h. */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "duration.h" /* parse_duration_ms */

/* What is wrong with s, which parse_size refused with r: "not a number", "'Q' after the number is not a unit". */
void size_problem(const char *s, int r, char *buf, size_t size);
/* "4K", "3M", "12345": v in the largest unit that divides it. */
void size_text(uint64_t v, char *buf, size_t size);
/* -EINVAL: not a number; -ERANGE: above max. */
int parse_uint(const char *s, uint64_t max, uint64_t *ret);
/* 1 or 0; -EINVAL if s is not a boolean. */
int parse_bool(const char *s);
int parse_user(const char *s, uid_t *ret);
int parse_group(const char *s, gid_t *ret);

#endif
