/* SPDX-License-Identifier: MIT */
/*
 * consumer: waits for a name to be published and sealed, attaches to the
 * region, reads the producer's message and answers in the same memory.
 *
 *   consumer [NAME]          (default name: example-frame)
 *
 * It may start before the producer: allocd holds its attach until the
 * producer seals the region (or fails it with -ENOENT if the producer goes
 * first), for up to 30 s.
 */
#include <alloc/client.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"

int main(int argc, char **argv) {
        const char *name = argc > 1 ? argv[1] : "example-frame";
        struct alloc_client *c;
        struct alloc_region r;

        if (alloc_connect(&c, NULL, "consumer") < 0) {
                fprintf(stderr, "consumer: %s\n", alloc_last_error());
                return 1;
        }
        if (alloc_region_attach(c, name, &(struct alloc_attach_opts){.timeout_ms = 30000}, &r) < 0) {
                fprintf(stderr, "consumer: attaching to '%s': %s\n", name, alloc_last_error());
                alloc_disconnect(c);
                return 1;
        }
        /* Sealed: the producer wrote before it let anyone in.  It answers, so it needs to write. */
        if (!r.ptr) {
                fprintf(stderr, "consumer: '%s' is read-only for this user (pool %s); it cannot answer\n", name,
                        r.pool);
                alloc_region_detach(c, r.id);
                alloc_disconnect(c);
                return 1;
        }
        struct frame *f = r.ptr;
        printf("consumer: read '%s'\n", f->text);
        snprintf(f->text, sizeof(f->text), "thanks, from the consumer");
        atomic_store(&f->state, 2);
        alloc_region_detach(c, r.id);
        alloc_disconnect(c);
        return 0;
}
