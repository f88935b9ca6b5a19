/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_DURATION_H
#define ALLOC_DURATION_H

#include <stdint.h>

/*
 * A duration as allocd.conf and ALLOCD_TIMEOUT write it: "500ms", "30s", "2m" or "2min"; a bare
 * number is seconds.  0, -EINVAL for anything else, -ERANGE past UINT32_MAX milliseconds.
 */
int parse_duration_ms(const char *s, uint32_t *ret);

/*
 * A short duration in microseconds, as allocd.conf's spin and ALLOCD_SPIN write it: "50us", "2ms"
 * or "0"; anything but 0 needs its unit (seconds are one too, "1s" is -ERANGE where max_us is
 * below a second).  0, -EINVAL for anything else, -ERANGE past max_us.
 */
int parse_duration_us(const char *s, uint32_t max_us, uint32_t *ret);

/* The longest a side of a connection spins for the other (alloc_set_spin, allocd.conf's spin). */
#define SPIN_MAX_US 10000

#endif
