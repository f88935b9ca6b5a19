/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_FDSTORE_H
#define ALLOCD_FDSTORE_H

/*
 * systemd's file descriptor store (fdstore.c; docs/ARCHITECTURE.md, "Across a restart"): fds
 * allocd gives systemd to keep under a name, and the fds systemd passes back at start.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/*
 * Whether there is a store to put fds in: $NOTIFY_SOCKET, and $FDSTORE (the unit's
 * FileDescriptorStoreMax=, which systemd 254 and later set themselves and allocd.service sets for
 * 252) above 0.  *max: that number, or 0.
 */
bool fdstore_enabled(unsigned *max);
/* systemd's fdname_is_valid: 1-255 printable ASCII characters, no ':'. */
bool fdstore_name_valid(const char *name);
/* FDSTORE=1 with FDNAME=name; -EINVAL for a name systemd would refuse, or sd_notify's error. */
int fdstore_put(int fd, const char *name);
/* FDSTOREREMOVE=1 with FDNAME=name: systemd closes its copies of every fd stored under name. */
int fdstore_remove(const char *name);

/* An fd systemd passed at start (LISTEN_FDS), with its name; fd -1 once taken. */
struct passed_fd {
        int fd;
        char name[256];
};
/* The fds systemd passed, each made O_CLOEXEC, the environment unset; *ret the caller's (passed_free). */
int fdstore_passed(struct passed_fd **ret, size_t *n);
/* Closes the fds not taken and frees the array. */
void fdstore_passed_free(struct passed_fd *fds, size_t n);
/*
 * A permutation of fds' indexes sorted by name in *ret (the caller frees it), so that a start with
 * many region memfds finds each in O(log n) (fdstore_passed_find), not by comparing every name.
 */
int fdstore_passed_sort(const struct passed_fd *fds, size_t n, size_t **ret);
/* fds' first index of an fd not yet taken named name, or -1; order from fdstore_passed_sort, or NULL (a scan). */
ssize_t fdstore_passed_find(const struct passed_fd *fds, const size_t *order, size_t n, const char *name);

/*
 * A pool's fd is stored as "pool.KIND.SIZE.NAME" (':' in NAME as '%', which no pool name has), so
 * that a successor knows what it was before it maps it: the kind ("pinned-vmm" for a pinned pool
 * made by CUDA: its fd is not a memfd), the size as configured, and "qQUANTUM" after the size where
 * the quantum is not the page size (the offsets and sizes of its regions are of it).
 */
struct stored_pool {
        enum pool_kind kind;
        bool vmm;
        uint64_t size;    /* as configured */
        uint64_t quantum; /* 0: the page size */
        char name[POOL_NAME_MAX_LEN + 1];
};
void fdstore_pool_name(char *buf, size_t size, const struct stored_pool *sp);
/* The reverse; false when name is not a pool's. */
bool fdstore_pool_parse(const char *name, struct stored_pool *sp);
/*
 * Whether the stored fd of sp is the pool pc asks for: of its kind, size and backend, of a quantum
 * its regions are whole multiples of (no larger: the stored one drains where it is not); and, a
 * memfd, of its pages (hugepages, which the name does not say: a memfd's block size is its page
 * size; fd -1: not checked).  A gpu pool's device is not in the name: pool-vmm.c checks it.
 */
bool fdstore_pool_matches(const struct pool_conf *pc, const struct stored_pool *sp, int fd);
/* An isolation = region memfd is stored as "region-ID". */
void fdstore_region_name(char *buf, size_t size, uint64_t id);

#endif
