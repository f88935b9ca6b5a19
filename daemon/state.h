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

/* allocd(8), RESTART, tells operators both numbers (what an upgrade and a downgrade keep). */
#define STATE_VERSION 5
/* The oldest version this allocd reads: 3 is 4 without LOG_POOL, 4 is 5 without a process's start in CLIENT. */
#define STATE_VERSION_MIN 3
#define STATE_HEADER_LEN 40

/* Records of a snapshot (state.c's theory comment has their payloads). */
enum { REC_CORE = 1, REC_POOL, REC_USAGE, REC_USER, REC_CLIENT, REC_REGION, REC_HOLD, REC_END };

/*
 * Records of the log after a snapshot: u32 CRC-32C of the rest, u16 type, u16 payload length, payload.
 *   LOG_REGION       u64 holder serial (0: an update, else the region is new, with one hold of it), REGION payload
 *   LOG_HOLD         HOLD payload (count 0: the hold is gone)
 *   LOG_CLIENT       CLIENT payload (a connection seen, or its name or secret changed)
 *   LOG_CLIENT_GONE  u64 serial
 *   LOG_SERIAL       u64 next serial
 *   LOG_POOL         POOL payload (a pool a reload added or made at last: in place of any of its id)
 */
enum { LOG_REGION = 16, LOG_HOLD, LOG_CLIENT, LOG_CLIENT_GONE, LOG_SERIAL, LOG_POOL };
#define LOG_HEADER_LEN 8

/* The most region slots a state may have (a 1 GiB table): a reader refuses more rather than try. */
#define STATE_SLOTS_MAX (1u << 24)
/* STATE_SLOTS_MAX, unless a fuzzer lowered it (state_limit_slots): its inputs should not each ask for a 1 GiB table. */
uint32_t state_slots_max(void);
void state_limit_slots(uint32_t max);

/* The longest REGION and CLIENT payloads: a tag and the longest names. */
#define STATE_REGION_MAX (56 + 24 + 2 + NAME_MAX_LEN)
#define STATE_CLIENT_MAX (32 + 2 + CLIENT_NAME_MAX_LEN + 2 + 15 + CLIENT_SECRET_LEN + 8)
#define STATE_POOL_MAX (32 + 2 + POOL_NAME_MAX_LEN)

/* What a restore read, for its log line. */
struct state_info {
        uint32_t version;
        uint64_t epoch;
        uint64_t records;   /* log records applied after the snapshot */
        uint64_t log_bytes; /* their bytes: the log's end, after the snapshot */
        uint64_t torn;      /* bytes dropped after the last whole record (a write cut short, or damage), up to 64 KiB */
        bool same_pools;    /* the state's pools are the core's, id for id: a keep may go on appending to it */
        /*
         * Pools of the state that held regions but could not take them back (not configured, not
         * available, configured otherwise, or not of the stored memory): their regions are lost, the
         * rest restored.  lost: "NAME: N regions (WHY)" for each, one a line ("..." when cut short).
         */
        uint32_t lost_pools;
        uint64_t lost_regions;
        char lost[1024];
};

/*
 * The whole state, into a buffer of its own (*ret_buf, the caller's to free) of *ret_len bytes.
 * next_serial: the server's next connection serial, kept so that serials are never reused.
 * Regions being zeroed (not yet handed out) are left out: their Alloc was never answered.
 */
int state_write(const struct core *core, uint64_t next_serial, void **ret_buf, size_t *ret_len);
/* The same, with the epoch the header keeps (keep.c raises it at each new memfd). */
int state_snapshot(const struct core *core, uint64_t next_serial, uint64_t epoch, void **ret_buf, size_t *ret_len);
/* At most how many bytes a snapshot of core takes now; and a snapshot into buf of cap (at least that) bytes. */
size_t state_snapshot_bound(const struct core *core);
int state_snapshot_into(const struct core *core, uint64_t next_serial, uint64_t epoch, uint8_t *buf, size_t cap,
                        size_t *ret_len);
/*
 * slot's REGION payload, cl's CLIENT payload, p's POOL payload (nregions: its regions, as the
 * record says) at out (room for STATE_REGION_MAX, STATE_CLIENT_MAX, STATE_POOL_MAX); their lengths.
 */
size_t state_region_payload(const struct core *core, uint32_t slot, uint8_t *out);
size_t state_client_payload(const struct client *cl, uint8_t *out);
size_t state_pool_payload(const struct pool *p, uint64_t nregions, uint8_t *out);
/* The same, into a new sealed memfd (O_CLOEXEC), read from offset 0. */
int state_write_memfd(const struct core *core, uint64_t next_serial, int *ret_fd);
/*
 * Restores buf into core, which has its pools configured and holds no region, name or client yet.
 * Each holder comes back as an absent client (placeholder) of its serial, owned by the core, that
 * holds its references until it is reclaimed or released.  A pool with regions that is not configured,
 * not available or not as it was loses its regions only (state_info.lost says which): the rest is
 * restored; but one that serves the memory it was made from in the fd store refuses the state
 * (state_adopted_memory).  On error: -EBADMSG (corrupt, truncated, inconsistent), -ENOENT (a region's
 * memfd is not in the fd store, isolation = region, where region_fds.has is not set), -EPROTO (another version), -EBUSY
 * (core not fresh) or -ENOMEM; a message in err, and the core as it was.
 */
int state_read(struct core *core, const void *buf, size_t len, uint64_t *next_serial, char *err, size_t errsize);
/*
 * The snapshot, then each log record after it in order, up to the first that is cut short or
 * whose CRC fails (a write killed half way: dropped, and counted in info->torn).  A whole record
 * that contradicts the state (a hold of a region that is not there) is -EBADMSG, as damage in the
 * snapshot is.  Holders without references are not restored.  info may be NULL.
 */
int state_read_info(struct core *core, const void *buf, size_t len, uint64_t *next_serial, struct state_info *info,
                    char *err, size_t errsize);
/* The same, from a memfd (or any file) read from offset 0. */
int state_read_fd(struct core *core, int fd, uint64_t *next_serial, char *err, size_t errsize);
int state_read_fd_info(struct core *core, int fd, uint64_t *next_serial, struct state_info *info, char *err,
                       size_t errsize);
/* state-log.c: buf's body rebuilt with its log applied (state-read.c reads it as a snapshot's). */
struct state_rebuilt {
        uint8_t *body; /* the caller's to free; NULL: no log record applied, read the snapshot as it is */
        size_t len;
};
int state_log_apply(const uint8_t *body, size_t body_len, const uint8_t *log, size_t log_len, struct state_rebuilt *out,
                    struct state_info *info, char *err, size_t errsize);

/* CRC-32C (Castagnoli) of n bytes, as the header keeps it for the header and for the body. */
uint32_t state_crc32c(const uint8_t *p, size_t n);
/* The header's epoch, after checking it: -EBADMSG (not a state, or damaged) or -EPROTO (another version). */
int state_header(const void *buf, size_t len, uint64_t *epoch, uint64_t *body_len);

#endif
