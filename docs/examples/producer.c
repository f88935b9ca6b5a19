/* SPDX-License-Identifier: MIT */
/*
 * producer: reserves a name for a region, writes a message into it, seals it
 * (only then can a consumer attach it), and waits for a consumer to answer in
 * the same memory.
 *
 *   producer [NAME]          (default name: example-frame)
 *
 * The region is a lease of this connection: when the producer exits,
 * however it exits, allocd takes the memory back once the consumer has let
 * go of it too.
 */
#include <alloc/client.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"

int main(int argc, char **argv) {
        const char *name = argc > 1 ? argv[1] : "example-frame";
        struct alloc_opts opts = {.flags = ALLOC_ZERO | ALLOC_UNSEALED, .name = name};
        struct alloc_client *c;
        struct alloc_region r;

        if (alloc_connect(&c, NULL, "producer") < 0 ||
            alloc_region_new(c, "host", sizeof(struct frame), &opts, &r) < 0) {
                fprintf(stderr, "producer: %s\n", alloc_last_error());
                return 1;
        }
        struct frame *f = r.ptr;
        snprintf(f->text, sizeof(f->text), "hello from the producer, region %llu", (unsigned long long)r.id);
        atomic_store(&f->state, 1);
        /* Consumers waiting for the name get it now, with the message in it. */
        if (alloc_region_seal(c, r.id) < 0) {
                fprintf(stderr, "producer: %s\n", alloc_last_error());
                return 1;
        }
        printf("producer: published '%s' (%llu bytes at offset %#llx); waiting for a consumer\n", name,
               (unsigned long long)r.size, (unsigned long long)r.addr);
        fflush(stdout);

        if (!frame_wait(f, 2)) {
                fprintf(stderr, "producer: no consumer answered within 30 s\n");
                alloc_disconnect(c);
                return 1;
        }
        printf("producer: the consumer answered: %s\n", f->text);
        alloc_disconnect(c);
        return 0;
}
