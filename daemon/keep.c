/* SPDX-License-Identifier: MIT */
/*
 * STUB of the state keeping (keep.h): a whole snapshot in a new memfd every turn.  The append log
 * (state.c's theory comment, "Step 2") replaces it; only the contract in keep.h stays.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "keep.h"
#include "state.h"

struct keep {
        struct core *core;
        int fd, old_fd;
        uint64_t epoch;
};

int keep_new(struct keep **ret, struct core *core, uint64_t next_serial) {
        struct keep *k = calloc(1, sizeof(*k));
        int r;

        if (!k)
                return -ENOMEM;
        k->core = core;
        k->old_fd = -1;
        if ((r = state_write_memfd(core, next_serial, &k->fd)) < 0) {
                free(k);
                return r;
        }
        *ret = k;
        return 0;
}

void keep_free(struct keep *k) {
        if (!k)
                return;
        if (k->old_fd >= 0)
                close(k->old_fd);
        close(k->fd);
        free(k);
}

int keep_fd(const struct keep *k) {
        return k->fd;
}

int keep_turn(struct keep *k, uint64_t next_serial, char *err, size_t errsize) {
        int fd, r;

        (void)err;
        (void)errsize;
        if (k->old_fd >= 0)
                close(k->old_fd);
        k->old_fd = -1;
        if ((r = state_write_memfd(k->core, next_serial, &fd)) < 0)
                return r;
        k->old_fd = k->fd;
        k->fd = fd;
        k->epoch++;
        return 1;
}

int keep_epoch_fd(int fd, uint64_t *epoch) {
        (void)fd;
        *epoch = 0; /* the stub's snapshots carry no epoch */
        return 0;
}
