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
#include <unistd.h>

#include "core-impl.h"
#include "keep.h"
#include "state.h"

#define LOG_MIN_DEFAULT (1u << 20)
#define STEP_MIN (64u << 10)

struct keep {
        struct core *core;
        int fd, old_fd;
        uint8_t *map;
        size_t map_len;  /* the memfd's size */
        size_t snap_len; /* header and snapshot */
        size_t end;      /* where the next record goes */
        size_t log_min;
        uint64_t epoch, next_serial;
        int broken; /* an append failed: 0, or its errno value */
};

/* A new memfd of a snapshot of core, mapped with room for a log of about its size. */
static int open_snapshot(struct keep *k, uint64_t epoch, int *fd, uint8_t **map, size_t *map_len, size_t *len) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        void *buf, *m;
        int e;

        if ((e = state_snapshot(k->core, k->next_serial, epoch, &buf, len)) < 0)
                return e;
        *map_len = (*len + (*len > STEP_MIN ? *len : STEP_MIN) + page - 1) / page * page;
        if ((*fd = memfd_create("allocd-state", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0) {
                e = -errno;
                goto out;
        }
        /* Never shrunk: a successor reads whatever the store hands it, and a shrink could only lose records. */
        if (ftruncate(*fd, (off_t)*map_len) < 0 || fcntl(*fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0 ||
            (m = mmap(NULL, *map_len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0)) == MAP_FAILED) {
                e = -errno;
                close(*fd);
                goto out;
        }
        memcpy(m, buf, *len);
        *map = m;
out:
        free(buf);
        return e;
}

int keep_new(struct keep **ret, struct core *core, uint64_t next_serial) {
        struct keep *k = calloc(1, sizeof(*k));
        int e;

        if (!k)
                return -ENOMEM;
        *k = (struct keep){
                .core = core, .old_fd = -1, .log_min = LOG_MIN_DEFAULT, .epoch = 1, .next_serial = next_serial};
        if ((e = open_snapshot(k, k->epoch, &k->fd, &k->map, &k->map_len, &k->snap_len)) < 0) {
                free(k);
                return e;
        }
        k->end = k->snap_len;
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
        if (k->end + LOG_HEADER_LEN + n <= k->map_len)
                return k->map + k->end;
        len = k->map_len * 2;
        if (ftruncate(k->fd, (off_t)len) < 0 || (m = mremap(k->map, k->map_len, len, MREMAP_MAYMOVE)) == MAP_FAILED) {
                k->broken = errno ? -errno : -ENOMEM;
                return NULL;
        }
        k->map = m;
        k->map_len = len;
        return k->map + k->end;
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
        if (!k->broken && (log <= k->snap_len || log <= k->log_min))
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
