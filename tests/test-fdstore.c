/* SPDX-License-Identifier: MIT */
/*
 * Finding a passed fd by name (fdstore_passed_sort, fdstore_passed_find): a start with thousands
 * of region memfds looks each up in O(log n); the answers must be the scan's.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "fdstore.h"

/* What fdstore_passed_find answers, the slow way: the first fd not yet taken of that name. */
static ssize_t scan(const struct passed_fd *fds, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (fds[i].fd >= 0 && !strcmp(fds[i].name, name))
                        return (ssize_t)i;
        return -1;
}

Test(fdstore, a_passed_fd_is_found_by_name_as_a_scan_finds_it) {
        enum { N = 3000 };
        struct passed_fd *fds = calloc(N, sizeof(*fds));
        size_t *order = NULL;
        char name[64];

        cr_assert(fds);
        srand(7);
        for (size_t i = 0; i < N; i++) {
                /* Region names, some twice (a store may hold two of a name), pools and the states. */
                uint64_t id = (uint64_t)(rand() % 2000) << 32 | (uint64_t)(rand() % 4);
                if (i % 100 == 0)
                        snprintf(fds[i].name, sizeof(fds[i].name), "state.%zu", i % 2);
                else
                        fdstore_region_name(fds[i].name, sizeof(fds[i].name), id);
                fds[i].fd = rand() % 5 ? 100 + (int)i : -1; /* some taken already */
        }
        cr_assert_eq(fdstore_passed_sort(fds, N, &order), 0);
        for (int k = 0; k < 20000; k++) {
                uint64_t id = (uint64_t)(rand() % 2100) << 32 | (uint64_t)(rand() % 4);
                fdstore_region_name(name, sizeof(name), id);
                ssize_t want = scan(fds, N, name), got = fdstore_passed_find(fds, order, N, name);
                /* Of two untaken fds of one name, the first passed, as the scan finds it. */
                cr_assert_eq(got, want, "%s: %zd, the scan %zd", name, got, want);
                if (got >= 0) {
                        cr_assert_str_eq(fds[got].name, name);
                        cr_assert_geq(fds[got].fd, 0);
                        if (k % 3 == 0)
                                fds[got].fd = -1; /* taken: the next lookup of that name finds another or none */
                }
                cr_assert_eq(fdstore_passed_find(fds, NULL, N, name), scan(fds, N, name), "without an order");
        }
        cr_assert_eq(fdstore_passed_find(fds, order, N, "state.1"), scan(fds, N, "state.1"));
        free(order);
        cr_assert_eq(fdstore_passed_sort(fds, 0, &order), 0, "none passed");
        cr_assert_eq(fdstore_passed_find(fds, order, 0, "x"), -1);
        free(order);
        free(fds);
}
