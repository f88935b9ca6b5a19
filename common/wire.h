/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_WIRE_H
#define ALLOC_WIRE_H

/*
 * The framing both sides share (docs/protocol.md): one protobuf message per
 * SOCK_SEQPACKET packet, the packet's file descriptors beside it as
 * SCM_RIGHTS.  A packet's bytes and its fds arrive together or not at all, so
 * there is nothing to reassemble and no fd can drift onto another message.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#define WIRE_VERSION 1
#define WIRE_MAX_PACKET 65536                    /* bytes of one message */
#define WIRE_MAX_FDS 4                           /* fds one packet may carry; more are closed */
#define WIRE_UNPACK_BUDGET (4 * WIRE_MAX_PACKET) /* heap bytes one unpacked message may use */
/*
 * Regions one AllocBatch or FreeBatch names.  A RegionBatch of this many fits a packet: a region
 * other than the first takes at most 38 bytes (id, kind, offset, size and its framing), and the
 * first, with the pool's name and fd fields, under 400.
 */
#define WIRE_MAX_BATCH 1024

/*
 * Receives one packet into buf.  Returns its length, 0 at end of stream, or a
 * negative errno value: -EMSGSIZE when the packet was longer than size,
 * -ENOBUFS when it carried more fds than *nfds (in both cases every fd that
 * arrived is closed).  On success *nfds is the number of fds stored in fds,
 * each O_CLOEXEC and owned by the caller.
 */
ssize_t wire_recv(int sock, void *buf, size_t size, int *fds, size_t *nfds, int flags);

/* Sends one packet with nfds fds beside it; returns 0 or a negative errno value. */
int wire_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags);

/*
 * A ProtobufCAllocator that refuses to hand out more than a fixed number of
 * bytes, so a hostile packet cannot make the unpacker allocate without bound.
 * Given an arena it carves from that first and mallocs only what does not
 * fit: a message that fits whole costs no malloc and no free at all.
 */
struct wire_budget {
        ProtobufCAllocator allocator;
        size_t left;
        uint8_t *arena;
        size_t arena_size, arena_used;
        size_t spilled; /* blocks that came from malloc */
};

/* arena may be NULL (size 0): everything is malloc'ed, and may be freed with the default allocator. */
void wire_budget_init(struct wire_budget *b, size_t bytes, void *arena, size_t arena_size);

/* Frees a message unpacked with b; the arena itself is the caller's and is simply reused. */
void wire_budget_free(struct wire_budget *b, ProtobufCMessage *m);

/*
 * protobuf-c hands a string field over as a C string without its length and checks none of its
 * bytes: "a\0evil" unpacks as "a" (common/wire-check.c says why that matters).  wire_check_text
 * reads the packed message in buf[0, len) as desc describes it and finds the first string field,
 * at any depth, that holds a NUL byte or is not UTF-8 (RFC 3629, as text_next reads it).  Returns
 * 0 when there is none; -EILSEQ when there is, with *bad saying which; -EBADMSG when the bytes are
 * not a protobuf message, -ELOOP when messages nest deeper than any of allocd.proto's.
 */
enum { WIRE_TEXT_OK, WIRE_TEXT_NUL, WIRE_TEXT_NOT_UTF8 };
#define WIRE_CHECK_DEPTH_MAX 16 /* deeper than any message of allocd.proto nests (Request, Free, Alloc: 3) */
struct wire_bad_text {
        const ProtobufCMessageDescriptor *message; /* the message the field is in (short_name: "Alloc") */
        const ProtobufCFieldDescriptor *field;     /* the field (name: "name") */
        int why;                                   /* WIRE_TEXT_NUL or WIRE_TEXT_NOT_UTF8 */
        const ProtobufCFieldDescriptor *path[WIRE_CHECK_DEPTH_MAX]; /* the message fields it is in, outermost first */
        unsigned depth;                                             /* how many */
};
int wire_check_text(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len, struct wire_bad_text *bad);
/* What is wrong with it, in words: "a string field holds a NUL byte". */
const char *wire_bad_text_why(const struct wire_bad_text *bad);
/*
 * Where, in buf: the message a request's body is, then the fields down to the string
 * ("Free.renew.pool" in a Request; "Alloc.name" in a Request or an Alloc).
 */
void wire_bad_text_where(const struct wire_bad_text *bad, char *buf, size_t size);

/* errno value for an allocd.Error code, and the code's name ("DENIED"). */
int wire_error_errno(int code);
const char *wire_error_name(int code);

/*
 * The socket allocd listens on when none is given: $ALLOCD_SOCKET, else
 * /run/allocd/allocd.sock for root, else $XDG_RUNTIME_DIR/allocd/allocd.sock.
 * A client (connecting true) looks for the system daemon first: after
 * $ALLOCD_SOCKET comes /run/allocd/allocd.sock whenever it exists, whoever
 * runs the client; the per-user path is for per-user daemons.  Both
 * variables are read with secure_getenv(3): a setuid or setgid process
 * ignores them.  Returns 0, -ENOENT when none applies (not root, no system
 * socket and no XDG_RUNTIME_DIR), or -ENAMETOOLONG.
 */
#define WIRE_SYSTEM_SOCKET "/run/allocd/allocd.sock"
int wire_default_socket(char *buf, size_t size, bool connecting);

#endif
