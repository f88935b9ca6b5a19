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

/* allocd's whole stderr (slurp stops at 16 KiB); the caller frees it. */
static inline char *whole_log(void) {
        FILE *f = fopen(s.log, "r");
        char *b = NULL;
        size_t n = 0;

        cr_assert(f);
        cr_assert_geq(getdelim(&b, &n, '\0', f), 0);
        fclose(f);
        return b;
}

/* Every start so far restored its state: none was refused, so none started with fresh pools. */
static inline void all_restored(void) {
        char *log = whole_log();

        cr_assert(!strstr(log, "cannot be restored") && !strstr(log, "is not a state this allocd can read"), "%s", log);
        free(log);
}

/*
 * Detaches id and disconnects, once allocd has answered: a kill right after a disconnect that
 * allocd has not read yet keeps the connection's holds in the state, for its reconnection.
 */
static inline void let_go(struct alloc_client *k, uint64_t id) {
        struct alloc_status *st;

        cr_assert_eq(id ? alloc_region_detach(k, id) : 0, 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_status(k, &st), 0, "%s", alloc_last_error());
        alloc_status_free(st);
        alloc_disconnect(k);
}

/* A PERSIST region of 8 KiB named name in pool, its bytes seed's; its id. */
static inline uint64_t keep_one(const char *pool, const char *name, unsigned seed) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(k, pool, 8192, &(struct alloc_opts){.name = name, .flags = ALLOC_PERSIST}, &r), 0,
                     "%s in %s: %s", name, pool, alloc_last_error());
        pattern(r.ptr, r.size, seed);
        let_go(k, r.id);
        return r.id;
}

static inline void there(const char *name, unsigned seed) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_attach(k, name, NULL, &r), 0, "%s: %s", name, alloc_last_error());
        cr_assert(pattern_ok(r.ptr, r.size, seed), "%s lost its bytes", name);
        let_go(k, r.id);
}

/* A restart by sig that restores everything as it was. */
static inline void same_after(int sig) {
        char *before = dump(NULL);

        sysd_restart(&s, sig);
        char *after = dump(NULL);
        cr_assert_str_eq(after, before, "%s", sysd_log(&s));
        all_restored();
        free(before);
        free(after);
}

/* The configuration becomes conf, then a restart by sig (allocd must reach READY=1). */
static inline void restart_with(const char *conf, int sig) {
        sysd_kill(&s, sig);
        write_file(s.d.conf, conf);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        all_restored();
}

/* Which state name the store holds (0 or 1), once it holds one. */
static inline int state_name(void) {
        cr_assert_eq(stored("state.", 1), 1, "%s", sysd_log(&s));
        return sysd_count(&s, "state.1") == 1;
}

#endif
