/* SPDX-License-Identifier: MIT */
#ifndef ALLOCCTL_H
#define ALLOCCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "alloc/client.h"
#include "text.h"

/* Exit codes, documented in allocctl(1) and docs/cli.md. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

struct ctl {
        struct alloc_client *client;
        bool json;
        /* A command's words, as its words() read them: free's id, disconnect's pid or serial, wait's DURATION. */
        uint64_t id;
        bool serial;
        uint32_t ms;
};

/* Room for text_escape() of the char array a, whatever its bytes: each may become \xNN. */
#define ESCAPED_SIZE(a) (4 * (sizeof(a) - 1) + 1)

/* "256MiB", "1.5GiB", "0B": a byte count for people; buf of at least 16 bytes. */
const char *fmt_size(uint64_t bytes, char *buf, size_t size);
const char *kind_name(enum alloc_kind k);
/* Text from allocd as a JSON string: whatever bytes a client put in it, valid UTF-8. */
json_object *json_text(const char *s);
json_object *json_u64(uint64_t v);
/* "45s", "3m05s", "2h10m", "4d03h": an age for people. */
const char *fmt_age(uint64_t seconds, char *buf, size_t size);
/* Prints o to stdout and drops it. */
void json_print(json_object *o);
/* Reports the request that failed with r; EXIT_FAILED, or EXIT_UNREACHABLE if allocd did not answer. */
int request_failed(const char *what, int r);

/* allocctl map (map.c): its options, checked before connecting, then the command. */
int map_args(int argc, char **argv);
int cmd_map(struct ctl *ctl, int argc, char **argv);
/* allocctl-dump.c */
int cmd_dump(struct ctl *ctl, int argc, char **argv);
/* allocctl-status.c */
int cmd_status(struct ctl *ctl, int argc, char **argv);
int pool_column(const struct alloc_status *s, int min);
int cmd_clients(struct ctl *ctl, int argc, char **argv);
/* allocctl-metrics.c: metrics_words refuses --json; cmd_metrics runs with ctl->client NULL too (allocd_up 0). */
int metrics_words(struct ctl *ctl, int argc, char **argv);
int cmd_metrics(struct ctl *ctl, int argc, char **argv);

#endif
