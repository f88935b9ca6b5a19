/* SPDX-License-Identifier: MIT */
/*
 * An allocd server in the test's process, for test-reclaim and test-reclaim-watch: on a thread,
 * over a core; a restart writes the core's state while the connections are still open (as the fd
 * store keeps it), stops the server, and serves a new core read from that state on the same
 * socket.  The pool is an fpga pool "f" (ranges, no memory), so that the new core needs no fd of
 * the old one.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "reclaim-server.h"
#include "server.h"
#include "state.h"

static void changed(void) {
}

static void on_stop(uv_async_t *a) {
        struct srv *s = a->data;
        struct client *cl;

        TAILQ_FOREACH(cl, core_clients(s->core), link)
        if (s->inject && cl->serial == s->serial)
                s->inject(s, cl);
        cr_assert_eq(state_write(s->core, 1 << 20, &s->state, &s->len), 0);
        server_stop(true);
        uv_close((uv_handle_t *)a, NULL);
}

static void *run(void *arg) {
        struct srv *s = arg;

        uv_run(&s->loop, UV_RUN_DEFAULT);
        return NULL;
}

/* Serves a fresh core on s->path, or the core a state makes (state, len). */
static void serve(struct srv *s, const void *state, size_t len, uint32_t grace_ms) {
        static struct span span = {.base = 1ull << 32, .size = 64ull << 20};
        struct pool_conf pc = {
                .kind = POOL_FPGA, .has_kind = true, .quantum = 4096, .ranges = &span, .nranges = 1, .mode = 0666};
        struct limits l = {.max_connections = 64,
                           .max_connections_per_uid = 64,
                           .max_regions_per_connection = 1 << 20,
                           .max_waiters_per_connection = 64,
                           .max_waiters_per_uid = 1024,
                           .max_names = 1024,
                           .max_names_per_uid = 1024,
                           .max_persist_per_uid = 1024,
                           .max_region_fds_per_uid = 1024,
                           .wait_timeout_ms = 5000,
                           .hello_timeout_ms = 5000,
                           .reclaim_grace_ms = grace_ms};
        uint64_t serial;
        char err[512];

        pc.numa_node = -1;
        snprintf(pc.name, sizeof(pc.name), "f");
        cr_assert_eq(uv_loop_init(&s->loop), 0);
        cr_assert_eq(core_new(&s->core, &l), 0);
        cr_assert_eq(core_pool_add(s->core, &pc, err, sizeof(err)), 0, "%s", err);
        if (state)
                cr_assert_eq(state_read(s->core, state, len, &serial, err, sizeof(err)), 0, "%s", err);
        server_init(&s->loop, s->core, changed);
        cr_assert_eq(server_listen(s->path, err, sizeof(err)), 0, "%s", err);
        uv_async_init(&s->loop, &s->stop, on_stop);
        s->stop.data = s;
        cr_assert_eq(pthread_create(&s->thread, NULL, run, s), 0);
}

void start(struct srv *s) {
        *s = (struct srv){0};
        strcpy(s->dir, "/tmp/allocd-reclaim-XXXXXX");
        cr_assert(mkdtemp(s->dir));
        snprintf(s->path, sizeof(s->path), "%s/allocd.sock", s->dir);
        serve(s, NULL, 0, 60000);
}

/* Stops the server as the state is written; the core is gone with it. */
void stop(struct srv *s) {
        uv_async_send(&s->stop);
        pthread_join(s->thread, NULL);
        uv_loop_close(&s->loop);
        core_free(s->core);
        s->core = NULL;
}

/* A restart that keeps the state: the new core gets what the old one had, placeholders and all. */
void restart(struct srv *s, uint32_t grace_ms) {
        stop(s);
        serve(s, s->state, s->len, grace_ms);
        free(s->state);
        s->state = NULL;
}

void finish(struct srv *s) {
        stop(s);
        free(s->state);
        rmdir(s->dir);
}

struct alloc_client *connect_to(struct srv *s) {
        struct alloc_client *c;

        cr_assert_eq(alloc_connect(&c, s->path, "reclaim"), 0, "%s", alloc_last_error());
        return c;
}

/* Status as the client sees it: the pool's used bytes and regions, and the serial of its one connection. */
void seen(struct alloc_client *c, uint64_t *used, uint64_t *serial) {
        struct alloc_status *st;

        cr_assert_eq(alloc_status(c, &st), 0, "%s", alloc_last_error());
        *used = st->pools[0].used;
        *serial = st->nclients ? st->clients[0].serial : 0;
        alloc_status_free(st);
}

/* A server, and a client holding one region of 1 MiB. */
struct alloc_client *holding_one(struct srv *s, struct alloc_region *r) {
        setenv("ALLOCD_RECONNECT", "10s", 1);
        start(s);
        struct alloc_client *c = connect_to(s);
        cr_assert_eq(alloc_region_new(c, "f", 1 << 20, NULL, r), 0, "%s", alloc_last_error());
        return c;
}
