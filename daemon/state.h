/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_STATE_H
#define ALLOCD_STATE_H

/*
 * The core's state written out and read back (state.c): what a successor
 * allocd needs to carry on with the same pools, regions, names and holders.
 */

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#define STATE_VERSION 2

/*
 * The whole state, into a buffer of its own (*ret_buf, the caller's to free) of *ret_len bytes.
 * next_serial: the server's next connection serial, kept so that serials are never reused.
 * Regions being zeroed (not yet handed out) are left out: their Alloc was never answered.
 */
int state_write(const struct core *core, uint64_t next_serial, void **ret_buf, size_t *ret_len);
/* The same, into a new sealed memfd (O_CLOEXEC), read from offset 0. */
int state_write_memfd(const struct core *core, uint64_t next_serial, int *ret_fd);
/*
 * Restores buf into core, which has its pools configured and holds no region, name or client yet.
 * Each holder comes back as an absent client (placeholder) of its serial, owned by the core, that
 * holds its references until it is reclaimed or released.  On error: -EBADMSG (corrupt, truncated,
 * inconsistent), -ENOENT (a pool with regions is not configured, or not as it was), -EPROTO (another
 * version), -EBUSY (core not fresh) or -ENOMEM; a message in err, and the core as it was.
 */
int state_read(struct core *core, const void *buf, size_t len, uint64_t *next_serial, char *err, size_t errsize);
/* The same, from a memfd (or any file) read from offset 0. */
int state_read_fd(struct core *core, int fd, uint64_t *next_serial, char *err, size_t errsize);

/* CRC-32C (Castagnoli) of n bytes, as the header keeps it for the header and for the body. */
uint32_t state_crc32c(const uint8_t *p, size_t n);

#endif
