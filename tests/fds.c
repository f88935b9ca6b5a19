/* SPDX-License-Identifier: MIT */
/* The fds a test has open, by what they are: what a reconnect, a refused reply or a watch could leak. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fds.h"

int fds_open(const char *const *prefixes) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        cr_assert_not_null(d);
        while ((e = readdir(d))) {
                char link[300], to[256];
                ssize_t k;
                snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
                if ((k = readlink(link, to, sizeof(to) - 1)) <= 0)
                        continue;
                to[k] = '\0';
                for (const char *const *p = prefixes; *p; p++)
                        if (!strncmp(to, *p, strlen(*p))) {
                                n++;
                                break;
                        }
        }
        closedir(d);
        return n;
}
