/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* Writes len bytes of buf as dir/name, or exits saying why: the seed generators' one way to write a seed. */
void seed_file_write(const char *dir, const char *name, const void *buf, size_t len);
