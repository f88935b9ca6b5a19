/* SPDX-License-Identifier: MIT */
/*
 * The core's state kept current in a memfd (keep.h; the format is in state.c's theory comment):
 * a snapshot, then an append log written through a shared mapping of the memfd.  A record is
 * built in place at the log's end and its CRC written with it, so keeping a change costs a memcpy
 * of some 30-100 bytes and a hardware CRC, no system call; the memfd's pages are the page cache's,
 * so what is written there survives a kill -9 the next instant.  The file grows in steps (twice
 * the mapping, by ftruncate and mremap), and its zeros mark the log's end for the reader.
 *
 * An append that cannot grow the file leaves the log as it was and marks the keep broken: no
 * record may follow a missing one.  The next keep_turn then writes a new snapshot (which holds
 * the change), and says so if it cannot.  When the log outgrows the snapshot and log_min,
 * keep_turn writes a new snapshot into a new memfd, one epoch up (compaction).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core-impl.h"
#include "keep.h"
#include "state.h"

#define LOG_MIN_DEFAULT (1u << 20)
#define STEP_MIN (64u << 10)
#define AHEAD (1u << 20) /* log pages made ready at a time */
/*
 * Compaction when the log is this many times the snapshot: a compaction costs about 2.5 ns a byte of
 * snapshot (docs/PERFORMANCE.md), so each byte of log pays 2.5 / LOG_RATIO ns for it; a restore
 * replays up to LOG_RATIO times the snapshot's bytes of log.
 */
#define LOG_RATIO 2

struct keep {
        struct core *core;
        int fd, old_fd;
        uint8_t *map;
        size_t map_len;  /* the memfd's size */
        size_t snap_len; /* header and snapshot */
        size_t end;      /* where the next record goes */
        size_t ready;    /* pages below are in place: no fault to take */
        size_t log_min;
        uint64_t epoch, next_serial;
        int broken; /* an append failed: 0, or its errno value */
};

static size_t pages(size_t n) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);

        return (n + page - 1) / page * page;
}

/*
 * Pages of [from, to) in place, in one call: a page fault for each, as a memfd's new pages are first
 * written, costs more than the records written to it (several microseconds in a VM, each 4 KiB).
 * An older kernel without MADV_POPULATE_WRITE takes the faults instead.
 */
static void populate(uint8_t *map, size_t from, size_t to) {
        if (to > from)
                (void)madvise(map + from, to - from, MADV_POPULATE_WRITE);
}

/*
 * A new memfd of a snapshot of core, written straight into its mapping (no copy: at 1M regions the
 * snapshot is some 90 MB), then cut to the snapshot and room for a log of about its size.  A
 * compaction expects a snapshot about the size of the last one, and makes its pages ready first.
 */
static int open_snapshot(struct keep *k, uint64_t epoch, int *fd, uint8_t **map, size_t *map_len, size_t *len) {
        size_t bound = pages(state_snapshot_bound(k->core)), want;
        void *m, *nm;
        int e;

        if ((*fd = memfd_create("allocd-state", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0)
                return -errno;
        if (ftruncate(*fd, (off_t)bound) < 0 ||
            (m = mmap(NULL, bound, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0)) == MAP_FAILED) {
                e = -errno;
                close(*fd);
                return e;
        }
        if (k->snap_len)
                populate(m, 0,
                         pages(k->snap_len + k->snap_len / 8) < bound ? pages(k->snap_len + k->snap_len / 8) : bound);
        if ((e = state_snapshot_into(k->core, k->next_serial, epoch, m, bound, len)) < 0) {
                munmap(m, bound);
                close(*fd);
                return e;
        }
        want = pages(*len + (*len > STEP_MIN ? *len : STEP_MIN));
        /* Never shrunk once sealed: a successor reads whatever the store hands it, and a shrink could only lose
         * records. */
        if (ftruncate(*fd, (off_t)want) < 0 || (nm = mremap(m, bound, want, MREMAP_MAYMOVE)) == MAP_FAILED) {
                e = -errno;
                munmap(m, bound);
                close(*fd);
                return e;
        }
        if (fcntl(*fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
                e = -errno;
                munmap(nm, want);
                close(*fd);
                return e;
        }
        *map = nm;
        *map_len = want;
        return 0;
}

int keep_new(struct keep **ret, struct core *core, uint64_t next_serial, uint64_t epoch) {
        struct keep *k = calloc(1, sizeof(*k));
        int e;

        if (!k)
                return -ENOMEM;
        *k = (struct keep){
                .core = core, .old_fd = -1, .log_min = LOG_MIN_DEFAULT, .epoch = epoch, .next_serial = next_serial};
        if ((e = open_snapshot(k, k->epoch, &k->fd, &k->map, &k->map_len, &k->snap_len)) < 0) {
                free(k);
                return e;
        }
        k->end = k->snap_len;
        k->ready = pages(k->snap_len);
        core->keep = k;
        *ret = k;
        return 0;
}

int keep_adopt(struct keep **ret, struct core *core, int fd, const struct state_info *info, uint64_t next_serial) {
        struct keep *k;
        struct stat sb;
        uint64_t epoch, body, end;
        void *m;

        if (info->version != STATE_VERSION || !info->same_pools || info->torn)
                return -EXDEV;
        if (fstat(fd, &sb) < 0)
                return -errno;
        if ((m = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
                return -errno;
        /* What was restored is what is there: the same header, and the log's end inside the file. */
        if (state_header(m, (size_t)sb.st_size, &epoch, &body) < 0 || epoch != info->epoch ||
            __builtin_add_overflow(body, info->log_bytes + STATE_HEADER_LEN, &end) || end > (uint64_t)sb.st_size ||
            !(k = calloc(1, sizeof(*k)))) {
                munmap(m, (size_t)sb.st_size);
                return -EXDEV;
        }
        *k = (struct keep){.core = core,
                           .fd = fd,
                           .old_fd = -1,
                           .map = m,
                           .map_len = (size_t)sb.st_size,
                           .snap_len = STATE_HEADER_LEN + (size_t)body,
                           .end = (size_t)end,
                           .log_min = LOG_MIN_DEFAULT,
                           .epoch = epoch,
                           .next_serial = next_serial};
        k->ready = pages(k->end) < k->map_len ? pages(k->end) : k->map_len;
        core->keep = k;
        *ret = k;
        return 0;
}

void keep_free(struct keep *k) {
        if (!k)
                return;
        if (k->core->keep == k)
                k->core->keep = NULL;
        if (k->old_fd >= 0)
                close(k->old_fd);
        munmap(k->map, k->map_len);
        close(k->fd);
        free(k);
}

int keep_fd(const struct keep *k) {
        return k->fd;
}

void keep_set_log_min(struct keep *k, size_t bytes) {
        k->log_min = bytes;
}

size_t keep_log_bytes(const struct keep *k) {
        return k->end - k->snap_len;
}

/* Room for a record of up to n payload bytes at the log's end, or NULL (the keep is broken). */
static uint8_t *room(struct keep *k, size_t n) {
        size_t len;
        void *m;

        if (k->broken)
                return NULL;
        if (k->end + LOG_HEADER_LEN + n <= k->ready)
                return k->map + k->end;
        if (k->end + LOG_HEADER_LEN + n <= k->map_len) {
                size_t to = k->ready + AHEAD < k->map_len ? k->ready + AHEAD : k->map_len;
                populate(k->map, k->ready, to);
                k->ready = to;
                return k->map + k->end;
        }
        len = k->map_len * 2;
        if (ftruncate(k->fd, (off_t)len) < 0 || (m = mremap(k->map, k->map_len, len, MREMAP_MAYMOVE)) == MAP_FAILED) {
                k->broken = errno ? -errno : -ENOMEM;
                return NULL;
        }
        k->map = m;
        k->map_len = len;
        return room(k, n);
}

/* The record at p (its payload written) is whole: its header, its CRC, and the log's end moves past it. */
static void commit(struct keep *k, uint8_t *p, uint16_t type, size_t n) {
        uint16_t len = (uint16_t)n;
        uint32_t crc;

        memcpy(p + 4, &type, 2);
        memcpy(p + 6, &len, 2);
        crc = state_crc32c(p + 4, 4 + n);
        memcpy(p, &crc, 4);
        k->end += LOG_HEADER_LEN + n;
}

void keep_region(struct keep *k, const struct core *core, uint32_t slot, uint64_t holder) {
        uint8_t *p = room(k, 8 + STATE_REGION_MAX);

        if (!p)
                return;
        memcpy(p + LOG_HEADER_LEN, &holder, 8);
        commit(k, p, LOG_REGION, 8 + state_region_payload(core, slot, p + LOG_HEADER_LEN + 8));
}

void keep_hold(struct keep *k, uint32_t slot, uint64_t serial, uint32_t count) {
        uint8_t *p = room(k, 16);

        if (!p)
                return;
        memcpy(p + LOG_HEADER_LEN, &slot, 4);
        memcpy(p + LOG_HEADER_LEN + 4, &count, 4);
        memcpy(p + LOG_HEADER_LEN + 8, &serial, 8);
        commit(k, p, LOG_HOLD, 16);
}

void keep_client(struct keep *k, const struct client *cl) {
        uint8_t *p = room(k, STATE_CLIENT_MAX);

        if (p)
                commit(k, p, LOG_CLIENT, state_client_payload(cl, p + LOG_HEADER_LEN));
}

void keep_pool(struct keep *k, const struct pool *p) {
        uint8_t *r = room(k, STATE_POOL_MAX);

        if (r)
                commit(k, r, LOG_POOL, state_pool_payload(p, p->nregions, r + LOG_HEADER_LEN));
}

static void keep_u64(struct keep *k, uint16_t type, uint64_t v) {
        uint8_t *p = room(k, 8);

        if (!p)
                return;
        memcpy(p + LOG_HEADER_LEN, &v, 8);
        commit(k, p, type, 8);
}

void keep_client_gone(struct keep *k, uint64_t serial) {
        keep_u64(k, LOG_CLIENT_GONE, serial);
}

/* A new snapshot in a new memfd, one epoch up; the old one is closed at the next turn. */
static int compact(struct keep *k) {
        size_t map_len, len;
        uint8_t *map;
        int fd, e;

        if ((e = open_snapshot(k, k->epoch + 1, &fd, &map, &map_len, &len)) < 0)
                return e;
        munmap(k->map, k->map_len);
        k->old_fd = k->fd;
        k->fd = fd;
        k->map = map;
        k->map_len = map_len;
        k->snap_len = k->end = len;
        k->ready = pages(len);
        k->epoch++;
        k->broken = 0;
        return 1;
}

int keep_turn(struct keep *k, uint64_t next_serial, char *err, size_t errsize) {
        size_t log = k->end - k->snap_len;
        int e;

        if (k->old_fd >= 0)
                close(k->old_fd);
        k->old_fd = -1;
        if (next_serial != k->next_serial) {
                k->next_serial = next_serial;
                keep_u64(k, LOG_SERIAL, next_serial);
        }
        if (!k->broken && (log <= LOG_RATIO * k->snap_len || log <= k->log_min))
                return 0;
        if ((e = compact(k)) >= 0 || !k->broken)
                return e >= 0 ? e : 0; /* a compaction that failed is tried again next turn; the log still holds */
        snprintf(err, errsize,
                 "the state in the fd store is behind: appending to it failed (%s), and so did writing it anew (%s); "
                 "a restart now loses what changed since",
                 strerror(-k->broken), strerror(-e));
        return e;
}

int keep_epoch_fd(int fd, uint64_t *epoch) {
        uint8_t h[STATE_HEADER_LEN];
        uint64_t body;
        ssize_t n;

        while ((n = pread(fd, h, sizeof(h), 0)) < 0 && errno == EINTR)
                ;
        if (n < 0)
                return -errno;
        return state_header(h, (size_t)n, epoch, &body);
}
