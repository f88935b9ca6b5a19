/* SPDX-License-Identifier: MIT */
#include "wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "allocd.pb-c.h"

static void close_fds(const int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
}

ssize_t wire_recv(int sock, void *buf, size_t size, int *fds, size_t *nfds, int flags) {
        /* Room for one more fd than accepted, so "too many" shows as extra fds, not only MSG_CTRUNC. */
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * (WIRE_MAX_FDS + 1))];
        } control;
        struct iovec iov = {.iov_base = buf, .iov_len = size};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        size_t max = *nfds, got = 0;
        int extra[WIRE_MAX_FDS + 1];
        size_t nextra = 0;
        bool too_many = false;
        ssize_t n;

        /*
         * A caller that takes no fds gets no control buffer: the kernel then
         * closes whatever fds came and says so with MSG_CTRUNC, and the
         * common packet skips the cmsg work on both sides of the syscall.
         */
        if (max > 0) {
                msg.msg_control = control.buf;
                msg.msg_controllen = sizeof(control.buf);
        }
        *nfds = 0;
        do
                n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;

        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
                        if (got < max)
                                fds[got++] = fd;
                        else if (nextra < WIRE_MAX_FDS + 1)
                                extra[nextra++] = fd, too_many = true;
                        else
                                close(fd), too_many = true;
                }
        }
        close_fds(extra, nextra);
        if (msg.msg_flags & MSG_CTRUNC)
                too_many = true;
        if (too_many || (msg.msg_flags & MSG_TRUNC)) {
                close_fds(fds, got);
                return (msg.msg_flags & MSG_TRUNC) ? -EMSGSIZE : -ENOBUFS;
        }
        *nfds = got;
        return n;
}

int wire_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
        } control;
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;

        if (nfds > WIRE_MAX_FDS || len > WIRE_MAX_PACKET)
                return -EMSGSIZE;
        if (nfds > 0) {
                memset(&control, 0, sizeof(control));
                msg.msg_control = control.buf;
                msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        }
        /* send() when there are no fds: it spares the kernel copying in a msghdr and an iovec. */
        do
                n = nfds > 0 ? sendmsg(sock, &msg, flags | MSG_NOSIGNAL) : send(sock, buf, len, flags | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return (size_t)n == len ? 0 : -EMSGSIZE;
}

static void *budget_alloc(void *data, size_t size) {
        struct wire_budget *b = data;
        size_t need = (size + 15) & ~(size_t)15; /* malloc's alignment, for any member type */

        if (size > b->left)
                return NULL;
        b->left -= size;
        if (b->arena && size > 0 && need >= size && need <= b->arena_size - b->arena_used) {
                void *p = b->arena + b->arena_used;
                b->arena_used += need;
                return p;
        }
        b->spilled++;
        return malloc(size);
}

static void budget_free(void *data, void *p) {
        struct wire_budget *b = data;

        if (!b->arena || (uint8_t *)p < b->arena || (uint8_t *)p >= b->arena + b->arena_size)
                free(p);
}

void wire_budget_init(struct wire_budget *b, size_t bytes, void *arena, size_t arena_size) {
        *b = (struct wire_budget){
                .allocator = {.alloc = budget_alloc, .free = budget_free, .allocator_data = b},
                .left = bytes,
                .arena = arena,
                .arena_size = arena ? arena_size : 0,
        };
}

void wire_budget_free(struct wire_budget *b, ProtobufCMessage *m) {
        /* Walking the message only to free nothing is a measurable part of a small request. */
        if (m && b->spilled)
                protobuf_c_message_free_unpacked(m, &b->allocator);
}

static const struct {
        const char *name;
        int err;
} errors[] = {
        [ALLOCD__ERROR__OK] = {"OK", 0},
        [ALLOCD__ERROR__PROTOCOL] = {"PROTOCOL", EPROTO},
        [ALLOCD__ERROR__VERSION] = {"VERSION", EPROTONOSUPPORT},
        [ALLOCD__ERROR__INVALID] = {"INVALID", EINVAL},
        [ALLOCD__ERROR__OVERFLOW] = {"OVERFLOW", EOVERFLOW},
        [ALLOCD__ERROR__NO_POOL] = {"NO_POOL", ENODEV},
        [ALLOCD__ERROR__NOT_FOUND] = {"NOT_FOUND", ENOENT},
        [ALLOCD__ERROR__EXISTS] = {"EXISTS", EEXIST},
        [ALLOCD__ERROR__DENIED] = {"DENIED", EACCES},
        [ALLOCD__ERROR__QUOTA] = {"QUOTA", EDQUOT},
        [ALLOCD__ERROR__LIMIT] = {"LIMIT", EMFILE},
        [ALLOCD__ERROR__WOULD_BLOCK] = {"WOULD_BLOCK", EAGAIN},
        [ALLOCD__ERROR__TIMEOUT] = {"TIMEOUT", ETIMEDOUT},
        [ALLOCD__ERROR__NEVER_FITS] = {"NEVER_FITS", E2BIG},
        [ALLOCD__ERROR__CANCELLED] = {"CANCELLED", ECANCELED},
        [ALLOCD__ERROR__INTERNAL] = {"INTERNAL", EIO},
        [ALLOCD__ERROR__DISCONNECTED] = {"DISCONNECTED", ECONNRESET},
};

int wire_error_errno(int code) {
        if (code < 0 || (size_t)code >= sizeof(errors) / sizeof(errors[0]))
                return EPROTO;
        return errors[code].err;
}

const char *wire_error_name(int code) {
        if (code < 0 || (size_t)code >= sizeof(errors) / sizeof(errors[0]))
                return "UNKNOWN";
        return errors[code].name;
}

/*
 * secure_getenv: in a setuid or setgid program that links the client library
 * the environment belongs to whoever ran it, and a socket it named would be
 * connected to with the program's privileges; there only the fixed paths count.
 */
int wire_default_socket(char *buf, size_t size, bool connecting) {
        const char *env = secure_getenv("ALLOCD_SOCKET"), *xdg;
        int n;

        if (env && *env)
                n = snprintf(buf, size, "%s", env);
        else if (geteuid() == 0 || (connecting && access(WIRE_SYSTEM_SOCKET, F_OK) == 0))
                n = snprintf(buf, size, "%s", WIRE_SYSTEM_SOCKET);
        else if ((xdg = secure_getenv("XDG_RUNTIME_DIR")) && *xdg)
                n = snprintf(buf, size, "%s/allocd/allocd.sock", xdg);
        else
                return -ENOENT;
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}
