/* SPDX-License-Identifier: MIT */
/*
 * Why the string fields of a packet are read before protobuf-c's C strings are trusted: protobuf-c
 * (1.4.1, Debian 12's) copies a string field into a NUL-terminated C string and drops its length,
 * and checks nothing of its bytes.  A name sent as "a\0evil" reaches the daemon as "a", so a check
 * on the C string passes a name the client never sent and the request does something else than
 * it asked; and bytes that are not UTF-8 would reach replies and logs.  Only the packed bytes
 * still say what was sent, so this walks them as the message's descriptor describes them: every
 * string field, at any depth, once each time it occurs (repeated or sent twice), the same for
 * every message of allocd.proto, present or future, with no list of fields to keep up to date.
 *
 * It reads what protobuf-c has already accepted in the daemon, but as a parser of its own it
 * trusts nothing: every length is checked against what is left, and the depth is bounded.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "text.h"
#include "wire.h"

/* A varint at *p (at most 10 bytes, before end) in *v; false if it runs past end or past 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
        uint64_t x = 0;

        for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
                uint8_t b = *(*p)++;
                x |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *v = x;
                        return true;
                }
        }
        return false;
}

static int check_text(const uint8_t *s, size_t n) {
        uint32_t cp;

        if (memchr(s, '\0', n))
                return WIRE_TEXT_NUL;
        for (size_t i = 0; i < n;) {
                if (s[i] < 0x80) {
                        i++;
                        continue;
                }
                int k = text_next((const char *)s + i, n - i, &cp);
                if (k < 0)
                        return WIRE_TEXT_NOT_UTF8;
                i += (size_t)k;
        }
        return WIRE_TEXT_OK;
}

static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end, unsigned depth,
                 struct wire_bad_text *bad) {
        if (depth >= WIRE_CHECK_DEPTH_MAX)
                return -ELOOP;
        while (p < end) {
                uint64_t key, len;

                if (!read_varint(&p, end, &key))
                        return -EBADMSG;
                switch (key & 7) {
                case PROTOBUF_C_WIRE_TYPE_VARINT:
                        if (!read_varint(&p, end, &len))
                                return -EBADMSG;
                        continue;
                case PROTOBUF_C_WIRE_TYPE_64BIT:
                        if (end - p < 8)
                                return -EBADMSG;
                        p += 8;
                        continue;
                case PROTOBUF_C_WIRE_TYPE_32BIT:
                        if (end - p < 4)
                                return -EBADMSG;
                        p += 4;
                        continue;
                case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
                        break;
                default: /* groups (3, 4), which protobuf-c refuses too, and 6, 7 */
                        return -EBADMSG;
                }
                if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p))
                        return -EBADMSG;
                /* An unknown number (or one past uint32) is an unknown field: protobuf-c keeps its bytes, unread. */
                const ProtobufCFieldDescriptor *f =
                        key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
                                               : NULL;
                if (f && f->type == PROTOBUF_C_TYPE_STRING) {
                        int why = check_text(p, (size_t)len);
                        if (why != WIRE_TEXT_OK) {
                                bad->message = desc;
                                bad->field = f;
                                bad->why = why;
                                bad->depth = depth;
                                return -EILSEQ;
                        }
                } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                        bad->path[depth] = f;
                        int r = check(f->descriptor, p, p + len, depth + 1, bad);
                        if (r < 0)
                                return r;
                }
                p += len;
        }
        return 0;
}

int wire_check_text(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len, struct wire_bad_text *bad) {
        *bad = (struct wire_bad_text){0};
        return check(desc, buf, buf + len, 0, bad);
}

void wire_bad_text_where(const struct wire_bad_text *bad, char *buf, size_t size) {
        const ProtobufCMessageDescriptor *top = bad->depth ? bad->path[0]->descriptor : bad->message;
        size_t n = (size_t)snprintf(buf, size, "%s", top->short_name);

        for (unsigned i = 1; i < bad->depth && n < size; i++)
                n += (size_t)snprintf(buf + n, size - n, ".%s", bad->path[i]->name);
        if (n < size)
                snprintf(buf + n, size - n, ".%s", bad->field->name);
}

const char *wire_bad_text_why(const struct wire_bad_text *bad) {
        return bad->why == WIRE_TEXT_NUL ? "a string field holds a NUL byte" : "a string field is not UTF-8";
}
