/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_PROTO_H
#define ALLOCD_PROTO_H

/*
 * The protocol layer (docs/ARCHITECTURE.md, "Layers"): a packet in, a reply
 * out.  It decodes and validates a request, calls the core and encodes what
 * the core answered; it sends nothing and keeps no state but the session's.
 * The server owns the socket and acts on what proto_out asks.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "allocd.pb-c.h"
#include "core.h"
#include "wire.h"

/* A pool's fd sent to a connection: which pool it was (pool_info.made), and which fd (proto.c). */
struct fd_sent {
        uint64_t made;
        uint8_t form;
};

/* One connection as the protocol sees it. */
struct session {
        struct client client; /* the core's */
        bool hello;
        struct fd_sent *fd_sent; /* by pool id: which of the pool's fds this connection has (proto.c) */
        bool any_ro;             /* one of them is read-only */
        size_t nfd_sent;
};

struct proto_out {
        uint8_t buf[WIRE_MAX_PACKET];
        size_t len;    /* 0: nothing to send now */
        int fd;        /* -1, or an fd to send beside the reply: a pool's (the core's), or fd_owned */
        bool fd_owned; /* fd is the reply's, closed once sent (or never sent) */
        bool close;    /* close the connection once the reply is out */
        bool goodbye;  /* Goodbye: release the connection (kept so) before the reply goes, then close it */
        /*
         * The PERSIST region this reply hands to the Alloc that made it (0: none).  If the reply never
         * reaches the client (it hung up first), no one knows the id and nothing would ever free it:
         * the server frees it as the client's Free would.
         */
        uint64_t persist_grant;
        uint64_t reclaimed; /* the placeholder this Hello reclaimed (0: none): the server stops watching its process */
        bool zero;          /* start zeroing slot; answer req_id when that is done (proto_zeroed) */
        uint32_t slot;
        uint64_t req_id;
        /*
         * A Cancel of request cancel (0: none), which no waiter is, answered NOT_FOUND: the server ends it
         * if its region is being zeroed, and answers the Cancel (request req_id) OK instead.
         */
        uint64_t cancel;
};

/* The daemon's start, for Status. */
void proto_set_started(uint64_t realtime_s, uint64_t monotonic_ms);
/* The request in buf[0, len); arena is scratch memory for unpacking (WIRE_UNPACK_BUDGET is the limit). */
void proto_request(struct core *core, struct session *s, const uint8_t *buf, size_t len, void *arena, size_t arena_size,
                   struct proto_out *out);
/* A waiter's outcome, for its session. */
void proto_done(struct core *core, struct session *s, const struct core_done *d, struct proto_out *out);
/* Zeroing slot ended with result (s NULL: its connection is gone, nothing is sent). */
void proto_zeroed(struct core *core, struct session *s, uint32_t slot, uint64_t req_id, int result,
                  struct proto_out *out);
/* An error reply. */
void proto_error(struct proto_out *out, uint64_t req_id, int code, const char *msg);
void session_clear(struct session *s);

/* Hello and Disconnect (proto-session.c). */
void proto_hello(struct core *core, struct session *s, struct proto_out *out, uint64_t id, const Allocd__Hello *m);
void proto_disconnect(struct core *core, struct session *s, struct proto_out *out, uint64_t id,
                      const Allocd__Disconnect *m);
/* Status and Dump (proto-status.c). */
void proto_status(struct core *core, const struct session *s, uint64_t id, const Allocd__Status *m,
                  struct proto_out *out);
void proto_dump(struct core *core, const struct session *s, uint64_t id, const Allocd__Dump *m, struct proto_out *out);
/* Held: a page of the regions this connection holds (proto-status.c). */
void proto_held(struct core *core, const struct session *s, uint64_t id, const Allocd__Held *m, struct proto_out *out);
/* Packs reply into out (an INTERNAL error reply if it does not fit). */
void proto_pack(struct proto_out *out, const Allocd__Reply *reply);
/* What region r holds (Region.format and its geometry), on every Region a reply carries. */
void proto_region_format(Allocd__Region *out, const struct region_info *r);

#endif
