/* SPDX-License-Identifier: MIT */
/* The core in-process for test-core and test-core-waiters: one core a test, clients made and freed with it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "core-common.h"
struct core *core;
static uint64_t serial;
static struct client *clients[1024]; /* every client a test made, freed at teardown */

struct limits test_limits(void) {
        return (struct limits){
                .max_connections = 100000,
                .max_connections_per_uid = 100000,
                .max_regions_per_connection = 1u << 24,
                .max_waiters_per_connection = 64,
                .max_waiters_per_uid = 1024,
                .max_names = 1u << 20,
                .max_names_per_uid = 1u << 20,
                .max_persist_per_uid = 1u << 20,
                .max_region_fds_per_uid = 1u << 20,
                .wait_timeout_ms = 1000,
                .hello_timeout_ms = 1000,
        };
}

void setup_with(const struct limits *l) {
        cr_assert_eq(core_new(&core, l), 0);
        core_set_slice(core, UINT64_MAX); /* a run does all it can, whatever the machine's load; tests set less */
        serial = 0;
}

void setup(void) {
        struct limits l = test_limits();
        setup_with(&l);
}

void teardown(void) {
        core_free(core);
        core = NULL;
        for (uint64_t i = 0; i < serial && i < 1024; i++)
                free(clients[i]);
}

void add_fpga(const char *name, uint64_t size) {
        struct span s = {.base = 1ull << 32, .size = size};
        struct pool_conf pc = {.kind = POOL_FPGA,
                               .has_kind = true,
                               .quantum = 4096,
                               .ranges = &s,
                               .nranges = 1,
                               .mode = 0666,
                               .numa_node = -1};
        char err[256];

        snprintf(pc.name, sizeof(pc.name), "%s", name);
        cr_assert_eq(core_pool_add(core, &pc, err, sizeof(err)), 0, "%s", err);
}

void add_host(const char *name, uint64_t size) {
        struct pool_conf pc = {.kind = POOL_HOST, .has_kind = true, .size = size, .mode = 0666, .numa_node = -1};
        char err[256];

        snprintf(pc.name, sizeof(pc.name), "%s", name);
        cr_assert_eq(core_pool_add(core, &pc, err, sizeof(err)), 0, "%s", err);
}

int client_add(uid_t uid, struct client **ret, struct core_result *res) {
        struct client *cl = calloc(1, sizeof(*cl));

        cr_assert(cl);
        cl->serial = ++serial;
        cl->uid = uid;
        cl->pid = 1000 + (pid_t)serial;
        cr_assert_lt(serial, 1024);
        clients[serial - 1] = cl;
        *ret = cl;
        return core_client_add(core, cl, res);
}

struct client *client(uid_t uid) {
        struct client *cl;
        struct core_result res;

        cr_assert_eq(client_add(uid, &cl, &res), E_OK, "%s", res.msg);
        return cl;
}

void bye(struct client *cl) {
        core_client_remove(core, cl);
}

int alloc(struct client *cl, const char *pool, uint64_t size, uint32_t flags, const char *name, uint32_t *slot) {
        struct alloc_request a = {.pool = pool, .size = size, .numa_node = -1, .flags = flags, .name = name};
        struct core_result res;
        uint32_t s = UINT32_MAX;
        int g = core_alloc(core, cl, 0, &a, &s, &res);

        if (slot)
                *slot = s;
        return g == GRANT_NONE ? -res.code : g;
}

uint64_t id_of(uint32_t slot) {
        struct region_info r;
        core_region_info(core, slot, &r);
        return r.id;
}

struct core_stats stats(void) {
        struct core_stats st;
        core_stats(core, &st);
        return st;
}

unsigned drain(int *errors) {
        struct core_done d;
        unsigned n = 0;

        while (core_done_pop(core, &d)) {
                n++;
                if (d.grant == GRANT_NONE && errors)
                        (*errors)++;
        }
        return n;
}
