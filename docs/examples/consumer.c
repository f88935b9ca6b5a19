/* SPDX-License-Identifier: MIT */
/*
 * consumer: waits for a name to be published, attaches to the region, reads
 * the producer's message and answers in the same memory.
 *
 *   consumer [NAME]          (default name: example-frame)
 *
 * It may start before the producer: until the name appears, attaching fails
 * with -ENOENT and the consumer tries again.
 */
#include <alloc/client.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "frame.h"

int main(int argc, char **argv) {
        const char *name = argc > 1 ? argv[1] : "example-frame";
        struct alloc_client *c;
        struct alloc_region r;
        int err = -ENOENT;

        if (alloc_connect(&c, NULL, "consumer") < 0) {
                fprintf(stderr, "consumer: %s\n", alloc_last_error());
                return 1;
        }
        /* Poll for the name: 10 ms apart, for up to 30 s. */
        for (int i = 0; i < 3000 && (err = alloc_region_attach(c, name, 0, &r)) == -ENOENT; i++)
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        if (err < 0) {
                fprintf(stderr, "consumer: attaching to '%s': %s\n", name, alloc_last_error());
                alloc_disconnect(c);
                return 1;
        }
        struct frame *f = r.ptr;
        /* The name is published before the producer has written; it may also die before it does. */
        if (!frame_wait(f, 1)) {
                fprintf(stderr, "consumer: the producer wrote nothing within 30 s\n");
                alloc_disconnect(c);
                return 1;
        }
        printf("consumer: read '%s'\n", f->text);
        snprintf(f->text, sizeof(f->text), "thanks, from the consumer");
        atomic_store(&f->state, 2);
        alloc_region_detach(c, r.id);
        alloc_disconnect(c);
        return 0;
}
