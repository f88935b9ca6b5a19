/* SPDX-License-Identifier: MIT */
/*
 * host pools: one memfd per pool, sized, sealed and fully allocated at start,
 * so a full tmpfs or hugetlb pool fails here with a message rather than as
 * SIGBUS in a client later.  Clients map the whole fd once; a region is an
 * offset.  The daemon keeps its own mapping to zero regions and to hold the
 * mlock and the NUMA policy.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/memfd.h>
#include <linux/mempolicy.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core-impl.h"
#include "log.h"

/* v in the file's units (K, M, G, ...: 1024s), exact: how a pool's size is written. */
static void fmt_size(char *buf, size_t size, uint64_t v) {
        static const char units[] = "KMGTPE";
        int u = -1;

        while (v >= 1024 && v % 1024 == 0 && u < 5)
                v /= 1024, u++;
        if (u < 0)
                snprintf(buf, size, "%" PRIu64, v);
        else
                snprintf(buf, size, "%" PRIu64 "%c", v, units[u]);
}

/* v to a tenth of the largest of those units it has one of: the machine's figures (23.5G, not 24683620K). */
static void fmt_about(char *buf, size_t size, uint64_t v) {
        static const char units[] = "KMGTPE";
        int u = -1;

        while (u < 5 && v >> (10 * (u + 2)))
                u++;
        if (u < 0 || v % (1ull << (10 * (u + 1))) == 0) {
                fmt_size(buf, size, v);
                return;
        }
        double x = (double)v / (double)(1ull << (10 * (u + 1)));
        if (x >= 1023.95 && u < 5) /* a tenth short of the next unit: 1.0G, not 1024.0M */
                x /= 1024, u++;
        snprintf(buf, size, "%.1f%c", x, units[u]);
}

static int bind_node(struct pool *p, char *err, size_t errsize) {
        char path[64];
        unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
        int node = p->conf.numa_node;

        snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", node);
        if (access(path, F_OK) < 0) {
                snprintf(err, errsize, "pool %s: numa_node = %d, but this machine has no NUMA node %d (%s)",
                         p->conf.name, node, node, path);
                return -EINVAL;
        }
        mask[node / (8 * sizeof(unsigned long))] |= 1ul << (node % (8 * sizeof(unsigned long)));
        /* A shared mapping's policy is the memfd's: the pages fallocate places below follow it. */
        if (syscall(SYS_mbind, p->map, p->conf.size, MPOL_BIND, mask, 1024, 0) < 0) {
                int r = -errno;
                snprintf(err, errsize, "pool %s: binding to NUMA node %d: %s", p->conf.name, node, strerror(errno));
                return r;
        }
        return 0;
}

static int lock_pool(struct pool *p, char *err, size_t errsize) {
        /* A pinned pool is always locked (lock = no is refused there): the way out is a smaller pool. */
        const char *instead = p->conf.kind == POOL_PINNED ? "or make the pool smaller" : "or set lock = no";
        const char *what = p->conf.kind == POOL_PINNED ? "a pinned pool" : "lock = yes";
        struct rlimit rl;
        char need[32], have[32];

        if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < p->conf.size &&
            geteuid() != 0) {
                fmt_size(need, sizeof(need), p->conf.size);
                fmt_size(have, sizeof(have), rl.rlim_cur);
                snprintf(err, errsize,
                         "pool %s: %s needs %s of locked memory but RLIMIT_MEMLOCK is %s; raise it "
                         "(LimitMEMLOCK=infinity in allocd.service, or ulimit -l) %s",
                         p->conf.name, what, need, have, instead);
                return -ENOMEM;
        }
        if (mlock(p->map, p->conf.size) < 0) {
                int r = -errno;
                fmt_size(need, sizeof(need), p->conf.size);
                snprintf(err, errsize, "pool %s: mlock of %s failed: %s; raise RLIMIT_MEMLOCK (LimitMEMLOCK=) %s",
                         p->conf.name, need, strerror(errno), instead);
                return r;
        }
        return 0;
}

int host_memfd(const struct pool_conf *conf, uint64_t size, int *ret) {
        char name[NAME_MAX_LEN + 16];
        unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
        int fd;

        if (conf->hugepage)
                flags |= MFD_HUGETLB | (conf->hugepage == (2u << 20) ? MFD_HUGE_2MB : MFD_HUGE_1GB);
        snprintf(name, sizeof(name), "allocd:%s", conf->name);
        fd = memfd_create(name, flags);
        if (fd < 0)
                return -errno;
        /*
         * A memfd is made mode 0777, and any process that holds an fd of it may open it again through
         * /proc/self/fd, with the rights the mode gives: a holder of a read-only fd would reopen it
         * read-write.  Only allocd's uid may.
         */
        if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)size) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret = fd;
        return 0;
}

int host_seal(int fd) {
        /* Clients hold this fd too: none of them may shrink it under the others or change the seals. */
        return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0 ? -errno : 0;
}

int host_reopen_ro(int fd) {
        char path[64];
        int r;

        /* A new open file description, read-only: through it no one can write, pwrite or punch a hole. */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        r = open(path, O_RDONLY | O_CLOEXEC);
        return r < 0 ? -errno : r;
}

/* A memfd from the fd store: the pool it was (the name said so) only if it is still sized and sealed as made. */
static int host_adopt(struct pool *p, char *err, size_t errsize) {
        struct stat st;
        int seals, want = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

        p->fd = p->adopt_fd;
        p->adopt_fd = -1;
        if (fstat(p->fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != p->conf.size ||
            (seals = fcntl(p->fd, F_GET_SEALS)) < 0 || (seals & want) != want) {
                snprintf(err, errsize,
                         "pool %s: the fd stored for it is not a sealed memfd of %" PRIu64 " bytes; it is not used",
                         p->conf.name, p->conf.size);
                return -EBADF;
        }
        return 0;
}

/* MemAvailable + SwapFree in bytes: what a fallocate may take without the OOM killer; UINT64_MAX if unknown. */
static uint64_t mem_available(void) {
        FILE *f = fopen("/proc/meminfo", "re");
        uint64_t avail = UINT64_MAX, swap = 0, kb;
        char line[128];

        if (!f)
                return UINT64_MAX;
        while (fgets(line, sizeof(line), f)) {
                if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &kb) == 1)
                        avail = kb << 10;
                else if (sscanf(line, "SwapFree: %" SCNu64 " kB", &kb) == 1)
                        swap = kb << 10;
        }
        fclose(f);
        return avail == UINT64_MAX ? avail : avail + swap;
}

/* What an operator does about a pool whose huge pages the kernel cannot give. */
#define HUGE_WHAT_TO_DO "; reserve huge pages (sysctl vm.nr_hugepages, or hugepages= at boot) or set hugepages = no"
#define HUGE_NOT_ENOUGH " (not enough free huge pages: see HugePages_Free in /proc/meminfo)" HUGE_WHAT_TO_DO

static int host_open(struct pool *p, char *err, size_t errsize) {
        bool adopt = p->adopt_fd >= 0;
        char sz[32];
        int r;

        fmt_size(sz, sizeof(sz), p->conf.size);
        if (adopt && (r = host_adopt(p, err, errsize)) < 0)
                goto fail;
        /* fallocate would take memory until the kernel kills something: refuse what cannot fit. */
        struct sysinfo si;
        if (!adopt && !p->conf.hugepage && sysinfo(&si) == 0 && p->conf.size / si.mem_unit > si.totalram) {
                char ram[32];
                fmt_about(ram, sizeof(ram), (uint64_t)si.totalram * si.mem_unit);
                snprintf(err, errsize, "pool %s: size %s is more than this machine's memory (%s); make it smaller",
                         p->conf.name, sz, ram);
                return -ENOMEM;
        }
        /* Nor what fits the machine but not beside what its other pools and programs hold now. */
        uint64_t avail = adopt || p->conf.hugepage ? UINT64_MAX : mem_available();
        if (p->conf.size > avail) {
                char free_now[32];
                fmt_about(free_now, sizeof(free_now), avail);
                snprintf(err, errsize,
                         "pool %s: size %s is more than the memory available now (%s: MemAvailable + SwapFree in "
                         "/proc/meminfo; other pools and programs hold the rest); make it smaller or free memory",
                         p->conf.name, sz, free_now);
                return -ENOMEM;
        }
        if (!adopt && (r = host_memfd(&p->conf, p->conf.size, &p->fd)) < 0) {
                snprintf(err, errsize, "pool %s: making a memfd of %s: %s%s", p->conf.name, sz, strerror(-r),
                         p->conf.hugepage
                                 ? " (are huge pages of that size configured? see /proc/meminfo)" HUGE_WHAT_TO_DO
                                 : "");
                return r;
        }
        p->map = mmap(NULL, p->conf.size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
        if (p->map == MAP_FAILED) {
                r = -errno;
                p->map = NULL;
                snprintf(err, errsize, "pool %s: mapping %s: %s%s", p->conf.name, sz, strerror(errno),
                         p->conf.hugepage ? HUGE_NOT_ENOUGH : "");
                goto fail;
        }
        if (p->conf.numa_node >= 0 && (r = bind_node(p, err, errsize)) < 0)
                goto fail;
        /* A stored memfd was reserved and sealed by the allocd that made it; its pages hold regions. */
        if (!adopt && fallocate(p->fd, 0, 0, (off_t)p->conf.size) < 0) {
                r = -errno;
                snprintf(err, errsize, "pool %s: reserving %s: %s%s", p->conf.name, sz, strerror(errno),
                         errno == ENOSPC ? p->conf.hugepage ? HUGE_NOT_ENOUGH
                                                            : " (not enough memory for the pool: make it smaller)"
                                         : "");
                goto fail;
        }
        if (p->conf.lock && (r = lock_pool(p, err, errsize)) < 0)
                goto fail;
        if ((!adopt && (r = host_seal(p->fd)) < 0) || (r = p->ro_fd = host_reopen_ro(p->fd)) < 0) {
                snprintf(err, errsize, "pool %s: sealing and reopening read-only: %s", p->conf.name, strerror(-r));
                goto fail;
        }
        if ((r = pool_add_span(p, 0, p->conf.size, err, errsize)) < 0)
                goto fail;
        return 0;
fail:
        if (p->map)
                munmap(p->map, p->conf.size);
        p->map = NULL;
        if (p->fd >= 0)
                close(p->fd);
        p->fd = -1;
        return r;
}

static void host_close(struct pool *p) {
        if (p->map)
                munmap(p->map, p->conf.size);
        if (p->fd >= 0)
                close(p->fd);
        if (p->ro_fd >= 0)
                close(p->ro_fd);
}

static int host_zero(struct pool *p, uint64_t offset, uint64_t size) {
        memset((char *)p->map + offset, 0, size);
        return 0;
}

const struct pool_ops pool_host_ops = {
        .open = host_open,
        .close = host_close,
        .zero = host_zero,
};
