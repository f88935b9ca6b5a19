/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "ids.h"

static int cmp_id(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

uint64_t ids_first_duplicate(const uint64_t *ids, size_t n, uint64_t *scratch) {
        memcpy(scratch, ids, n * sizeof(*ids));
        qsort(scratch, n, sizeof(*scratch), cmp_id);
        for (size_t i = 1; i < n; i++)
                if (scratch[i] == scratch[i - 1])
                        return scratch[i];
        return 0;
}
