/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_ALLOCCTL_COMMON_H
#define ALLOC_TEST_ALLOCCTL_COMMON_H

/*
 * What the allocctl tests (test-allocctl*.c) share (allocctl-common.c): an allocd holding a known
 * set of regions, allocctl run against it, and readers of what it printed.
 */
#include <json-c/json.h>
#include <stdint.h>

#include "harness.h"

#define FPGA_A 0x100000000ull
#define FPGA_B 0x180000000ull

extern struct daemon d;
extern struct alloc_client *c, *c2;
extern struct alloc_region big, small, shared, f1, f2, attached;

void setup(void);
void teardown(void);

struct run {
        int status;
        char out[256 * 1024];
        char err[4096];
};

struct run *allocctl(const char *sock, ...);
json_object *run_json(const char *what, ...);
json_object *get(json_object *o, const char *key);
uint64_t get_u64(json_object *o, const char *key);
const char *get_str(json_object *o, const char *key);
double parse_human(const char *s);
void assert_human(const char *text, uint64_t bytes);
int words(char *line, char **w, int max);
char *line_starting(const char *text, const char *key, char *buf, size_t size);
json_object *find(json_object *array, const char *key, uint64_t value);

#endif
