/* SPDX-License-Identifier: MIT */
/* fpga pools: a device's logical address space.  No memory, no fd: a region is an address. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "allocd.h"

static int fpga_open(struct pool *p, char *err, size_t errsize) {
        for (size_t i = 0; i < p->conf.nranges; i++) {
                const struct span *s = &p->conf.ranges[i];
                int r = range_add(p->arena, s->base, s->size);
                if (r == 0)
                        r = range_add(p->empty, s->base, s->size);
                if (r == -EEXIST) {
                        snprintf(err, errsize, "pool %s: range %#" PRIx64 "+%#" PRIx64 " overlaps another range",
                                 p->conf.name, s->base, s->size);
                        return r;
                }
                if (r < 0) {
                        snprintf(err, errsize, "pool %s: range %#" PRIx64 "+%#" PRIx64 ": %s", p->conf.name, s->base,
                                 s->size, strerror(-r));
                        return r;
                }
        }
        return 0;
}

static void fpga_close(struct pool *p) {
        (void)p;
}

const struct pool_ops pool_fpga_ops = {
        .default_quantum = 4096,
        .open = fpga_open,
        .close = fpga_close,
        .zero = NULL,
};
