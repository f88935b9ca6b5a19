/* SPDX-License-Identifier: MIT */
#ifndef TESTS_RECLAIM_SERVER_H
#define TESTS_RECLAIM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "alloc/client.h"
#include "core.h"

struct srv {
        uv_loop_t loop;
        uv_async_t stop;
        pthread_t thread;
        struct core *core;
        char dir[64], path[128];
        void *state; /* written as it stopped */
        size_t len;
        /* Run on connection serial's core record as the state is written: what allocd did but never said. */
        void (*inject)(struct srv *s, struct client *cl);
        uint64_t serial, id; /* the connection, and the region inject works on */
};

/* A server of a fresh core on a new socket (reclaim_grace 60 s). */
void start(struct srv *s);
/* Stops the server as the state is written; the core is gone with it. */
void stop(struct srv *s);
/* A restart that keeps the state: the new core gets what the old one had, placeholders and all. */
void restart(struct srv *s, uint32_t grace_ms);
void finish(struct srv *s);
struct alloc_client *connect_to(struct srv *s);
/* Status as the client sees it: the pool's used bytes and regions, and the serial of its one connection. */
void seen(struct alloc_client *c, uint64_t *used, uint64_t *serial);
/* A server, and a client holding one region of 1 MiB. */
struct alloc_client *holding_one(struct srv *s, struct alloc_region *r);

#endif
