/* SPDX-License-Identifier: MIT */
/* fpga pools: a device's logical address space.  No memory, no fd: a region is an address. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core-impl.h"
#include "log.h"

static int fpga_open(struct pool *p, char *err, size_t errsize) {
        for (size_t i = 0; i < p->conf.nranges; i++) {
                int r = pool_add_span(p, p->conf.ranges[i].base, p->conf.ranges[i].size, err, errsize);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void fpga_close(struct pool *p) {
        (void)p;
}

const struct pool_ops pool_fpga_ops = {
        .open = fpga_open,
        .close = fpga_close,
        .zero = NULL,
};
