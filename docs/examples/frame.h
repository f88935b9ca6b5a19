/* SPDX-License-Identifier: MIT */
/* What producer and consumer put in the region they share. */
#ifndef EXAMPLE_FRAME_H
#define EXAMPLE_FRAME_H

#include <stdatomic.h>
#include <time.h>

struct frame {
        _Atomic int state; /* 0 empty, 1 written by the producer, 2 answered by the consumer */
        char text[256];
};

/* Waits up to 30 s for f->state to become want; returns whether it did. */
static inline int frame_wait(struct frame *f, int want) {
        for (int i = 0; i < 3000; i++) {
                if (atomic_load(&f->state) == want)
                        return 1;
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }
        return atomic_load(&f->state) == want;
}

#endif
