/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_CONFIG_PARSE_H
#define ALLOCD_CONFIG_PARSE_H

/*
 * What config.c (the file, its lines and sections) and config-pool.c (a pool's keys and the checks
 * on a whole pool) share while one file is read.  Nothing here outlives config_load.
 */

#include <ini.h>
#include <stdbool.h>
#include <stdio.h>

#include "config.h"

enum pool_key_id {
        KEY_KIND,
        KEY_SIZE,
        KEY_QUANTUM,
        KEY_HUGEPAGES,
        KEY_LOCK,
        KEY_NUMA_NODE,
        KEY_RANGES,
        KEY_OWNER,
        KEY_GROUP,
        KEY_MODE,
        KEY_QUOTA,
        KEY_BACKEND,
        KEY_FLAGS,
        KEY_DEVICE,
        KEY_ISOLATION,
        KEY_NAMES,
        NPOOL_KEYS
};

/* A value as the file wrote it and its line: messages quote the file, not a number re-printed. */
struct written {
        int line;
        char *text;
};

/* Beside each struct pool_conf: where its keys and ranges were written. */
struct pool_src {
        struct written key[NPOOL_KEYS]; /* the last line of each key */
        struct written *ranges;         /* pool_conf.ranges as written, and the window being read */
        size_t nranges;
};

struct parse {
        struct config *conf;
        struct pool_src *src; /* one for each of conf->pools */
        const char *path;
        FILE *f;
        int line;         /* the line the reader handed out last */
        int read_err;     /* errno of a read of the file that failed: the file is not all there */
        int section_line; /* the last [section] header */
        int sections;     /* headers read so far */
        int current;      /* the header the handler saw last */
        char *err;
        size_t errsize;
        bool failed;
        /* The last header between its brackets, whole: libinih's own copy keeps 49 characters. */
        char header[INI_MAX_LINE];
        bool pool_header; /* that header is a [pool NAME] */
        /* keys seen in the current section, to refuse repeats */
        char seen[32][32]; /* longer than any key */
        int seen_line[32];
        int nseen;
        int daemon_line; /* where [daemon] started, 0 before it */
};

/* Sets "FILE:LINE: what" once (the first problem wins) and returns 0, libinih's "stop". */
int conf_fail_at(struct parse *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* fail_at the line the reader handed out last. */
int conf_fail(struct parse *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* config-pool.c */
void pool_conf_defaults(struct pool_conf *pc);
bool pool_key_is_list(const char *key);
int pool_key(struct parse *ps, size_t pool, const char *key, const char *value);
int check_pool(struct parse *ps, size_t pool);
void pool_src_clear(struct pool_src *src);

#endif
