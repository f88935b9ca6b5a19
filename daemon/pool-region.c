/* SPDX-License-Identifier: MIT */
/*
 * host pools with isolation = region: each region is a memfd of its own,
 * made when the region is allocated, so that a holder is handed exactly the
 * bytes it holds (docs/configuration.md, "Who can touch which bytes").  The
 * pool is an address space the range allocator places regions in, for
 * quotas, alignment and the figures of allocctl; no memory backs the pool
 * itself, and a region's memory is allocated when it is made, so that a
 * machine out of memory answers the Alloc rather than killing a client
 * with SIGBUS later.  A new memfd reads as zeros: ZERO costs nothing here.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core-impl.h"

static int region_pool_open(struct pool *p, char *err, size_t errsize) {
        return pool_add_span(p, 0, p->conf.size, err, errsize);
}

static void region_pool_close(struct pool *p) {
        (void)p;
}

static int region_pool_zero(struct pool *p, uint64_t offset, uint64_t size) {
        (void)p, (void)offset, (void)size;
        return 0;
}

const struct pool_ops pool_region_ops = {
        .open = region_pool_open,
        .close = region_pool_close,
        .zero = region_pool_zero,
};

int pool_region_new(const struct pool *p, uint64_t size, int *ret) {
        int fd, r;

        if ((r = host_memfd(&p->conf, size, &fd)) < 0)
                return r;
        if ((r = host_seal(fd)) < 0) {
                close(fd);
                return r;
        }
        *ret = fd;
        return 0;
}

int pool_region_fill(int fd, uint64_t size) {
        return fallocate(fd, 0, 0, (off_t)size) < 0 ? -errno : 0;
}

void pool_region_drop(int fd, uint64_t size) {
        /*
         * Closing allocd's fd frees nothing while a holder still maps the memfd or keeps its fd (a fork,
         * a program that keeps fds): that memory, charged to allocd, would outlive the region's place in
         * the pool, and free and Alloc again would take more without end.  Its pages go now; the holder
         * reads zeros, and what it writes there is its own memory.
         */
        if (size)
                (void)fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size);
        close(fd);
}

int pool_region_restore(struct core *core, const struct pool *p, uint32_t slot) {
        struct region *r = &core->regions.tab[slot];
        int want = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, seals, fd;
        struct user *u;
        struct stat st;

        if (p->conf.isolation != ISOLATION_REGION)
                return 0;
        fd = core->region_fds.stored ? core->region_fds.stored(core->region_fds.data, region_id(&core->regions, slot))
                                     : -1;
        if (fd < 0)
                return -ENOENT;
        /* Its holders map it whole: it must be the memfd this region was made with, as it was sealed. */
        if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != r->size || (seals = fcntl(fd, F_GET_SEALS)) < 0 ||
            (seals & want) != want) {
                close(fd);
                return -EBADF;
        }
        /* Counted against its creator's uid (max_region_fds_per_uid) as when it was made. */
        if (!(u = user_get(core, r->uid))) {
                close(fd);
                return -ENOMEM;
        }
        u->fds++;
        r->fd = fd;
        return 0;
}
