/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_RESTART_CHECKS_H
#define ALLOC_TEST_RESTART_CHECKS_H

/*
 * What the restart tests (test-daemon-restart*.c) share: the allocd they run with systemd played
 * by sysd.c (s, stopped at each test's end), its dump, its store, and the bytes written to regions.
 * Included once, by a test file, after criterion and sysd.h.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sysd.h"

/* The pools of test-daemon-restart.c and test-daemon-restart-store.c. */
#define CONF                                                                                                           \
        "[pool host]\nkind = host\nsize = 64M\n[pool other]\nkind = host\nsize = 16M\n[pool iso]\nkind = host\nsize "  \
        "= "                                                                                                           \
        "16M\nisolation = region\n"

static struct sysd s;

static inline void teardown(void) {
        sysd_end(&s);
}

/* `allocctl --json dump [POOL]`, without the "age" fields, which move with the clock. */
static inline char *dump(const char *pool) {
        char cmd[512], *out = malloc(1 << 20);
        size_t n = 0, k;

        snprintf(cmd, sizeof(cmd), "%s --socket %s --json dump %s", ALLOCCTL_PATH, s.d.sock, pool ? pool : "");
        FILE *f = popen(cmd, "r");
        cr_assert(f && out);
        while ((k = fread(out + n, 1, (1 << 20) - 1 - n, f)) > 0)
                n += k;
        out[n] = '\0';
        cr_assert_eq(pclose(f), 0, "%s failed: %s", cmd, out);
        for (char *a; (a = strstr(out, "\"age\": "));) {
                char *e = a + 7;
                while (*e >= '0' && *e <= '9')
                        e++;
                memmove(a, e, strlen(e) + 1);
        }
        return out;
}

/*
 * How many names in the store begin with prefix, once it holds want of them or 5 s passed: allocd's
 * FDSTORE and FDSTOREREMOVE come after the reply that caused them, and a swap of the state is two.
 */
static inline size_t stored(const char *prefix, size_t want) {
        for (int i = 0; i < 500 && sysd_count(&s, prefix) != want; i++)
                usleep(10000);
        return sysd_count(&s, prefix);
}

static inline void pattern(void *p, uint64_t size, unsigned seed) {
        uint32_t *w = p;
        for (uint64_t i = 0; i < size / 4; i++)
                w[i] = seed * 2654435761u + (uint32_t)i;
}

static inline bool pattern_ok(const void *p, uint64_t size, unsigned seed) {
        const uint32_t *w = p;
        for (uint64_t i = 0; i < size / 4; i++)
                if (w[i] != seed * 2654435761u + (uint32_t)i)
                        return false;
        return true;
}

#endif
