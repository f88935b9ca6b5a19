/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_REPLY_H
#define FUZZ_REPLY_H

/*
 * fuzz-reply's input (fuzz/fuzz-reply.c): what the client does, then what its allocd answers.
 *
 *   byte 0        n, the number of op bytes that follow (at most REPLY_OPS_MAX are run)
 *   n op bytes    each: the low 4 bits an enum reply_op, the high 4 bits its argument
 *   packets       each: [u16 length, little-endian][u8 flags][length bytes], to the end
 *
 * The client connects (its Hello is the first request), runs the ops in order and disconnects.
 * The fake allocd reads each request and answers it with the next packet, whose Reply.id (a
 * varint field 1 added at the end: protobuf keeps the last) is the request's unless PKT_KEEP_ID.
 * Quiet Frees, Detaches and FreeBatches take a packet too, which is PKT_SILENT where allocd would
 * accept them (it answers them only to refuse).  When the packets run out it hangs up, so every
 * later call fails at once.  Request ids are 1 (Hello), 2, ... in the order the client sends.
 */

#include <stdint.h>

#define REPLY_OPS_MAX 48
#define PKT_PAGES 0x0f  /* with PKT_FD: a memfd of this many 4 KiB pages rides along (SCM_RIGHTS) */
#define PKT_SILENT 0x10 /* read a request and answer nothing (the client times out, unless it was quiet) */
/*
 * Sent once the next request is read, before its answer, with the id of the request before it: a
 * reply that comes after its request timed out, a second reply, an unsolicited one (PKT_KEEP_ID).
 */
#define PKT_EXTRA 0x20
#define PKT_FD 0x40                         /* attach the memfd */
#define PKT_KEEP_ID 0x80                    /* send the id as written */
#define PKT_HANGUP (PKT_SILENT | PKT_EXTRA) /* both: the fake allocd closes the connection here */

enum reply_op {
        OP_ALLOC,       /* alloc_region_new: pool (arg & 3), 4 KiB x (1 + (arg >> 2 & 1)); arg 8: NOWAIT, else 1 ms */
        OP_ALLOC_NAMED, /* alloc_region_new in "h" named "n": arg 1 UNSEALED, 2 PERSIST, 4 FALLOC */
        OP_BATCH,       /* alloc_region_new_batch: pool (arg >> 2), 1 + (arg & 3) regions of 4 KiB */
        OP_ATTACH,      /* alloc_region_attach "n", arg 1: in pool "h", arg 2: by owner */
        OP_SEAL,        /* alloc_region_seal of a region it has (arg picks) */
        OP_FREE,        /* alloc_region_free of one (arg picks) */
        OP_DETACH,      /* alloc_region_detach of one */
        OP_GIVE_SYNC,   /* alloc_region_free_sync (arg & 8: detach_sync) of one */
        OP_FREE_BATCH,  /* alloc_region_free_batch of the first 1 + arg it has */
        OP_SYNC,        /* alloc_region_sync */
        OP_STATUS,      /* alloc_status */
        OP_DUMP,        /* alloc_dump (arg & 1: of pool "h") */
        OP_DUMP_EACH,   /* alloc_dump_each, its callback stopping at region arg (0: never) */
        OP_SPARE,       /* alloc_set_spare(arg & 1) */
        OP_DROP,        /* alloc_drop_client of serial 1 + arg (arg 15: pid 1) */
        OP_FREE_ID,     /* alloc_region_free_sync of an id it never had (arg << 32 | 7) */
};

#endif
