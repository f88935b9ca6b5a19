/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seed-file.h"

void seed_file_write(const char *dir, const char *name, const void *buf, size_t len) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (!(f = fopen(path, "we")) || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
                fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, path, strerror(errno));
                exit(1);
        }
}
