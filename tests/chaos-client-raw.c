/* SPDX-License-Identifier: MIT */
/*
 * A chaos worker's raw connections (see chaos-client.c): the protocol spoken without
 * liballoc-client, to pipeline bursts and hang up at any point, or to say nothing at all.
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <unistd.h>

#include "allocd.pb-c.h"
#include "chaos-client.h"
#include "wire.h"

static int raw_connect(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                fd = -1;
        }
        return fd;
}

/* A raw connection that says nothing: allocd closes it at hello_timeout, or this thread does, or death. */
void op_nohello(struct thr *t) {
        int i = (int)below(&t->rng, NNOHELLO);

        if (t->nohello[i] >= 0)
                close(t->nohello[i]);
        t->nohello[i] = raw_connect();
        count(OP_NOHELLO, t->nohello[i] >= 0 ? 0 : -errno);
}

static bool raw_send(int fd, Allocd__Request *req) {
        uint8_t buf[1024];
        size_t n = allocd__request__get_packed_size(req);

        if (n > sizeof(buf))
                return false;
        allocd__request__pack(req, buf);
        return wire_send(fd, buf, n, NULL, 0, 0) == 0;
}

/* One reply within ms, counted; false at the end of the stream, on a timeout or on garbage. */
static bool raw_reply(int fd, int ms) {
        static __thread uint8_t buf[WIRE_MAX_PACKET];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int fds[WIRE_MAX_FDS];
        size_t nfds = WIRE_MAX_FDS;

        if (poll(&p, 1, ms) != 1)
                return false;
        ssize_t n = wire_recv(fd, buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT);
        if (n <= 0)
                return false;
        for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
        Allocd__Reply *r = allocd__reply__unpack(NULL, (size_t)n, buf);
        if (!r) {
                violation("allocd sent %zd bytes that do not decode as a Reply", n);
                return false;
        }
        count(OP_BURST, r->has_error ? -wire_error_errno(r->error) : 0);
        allocd__reply__free_unpacked(r, NULL);
        return true;
}

/*
 * Hello and up to 24 requests pipelined on a raw connection without reading,
 * then: read every reply, read some, hang up at once, or shut the sending side
 * and read to the end.  Replies that wait for memory come out of order.
 */
void op_burst(struct thr *t) {
        struct rng *r = &t->rng;
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello hello = ALLOCD__HELLO__INIT;
        int fd = raw_connect(), k = 2 + (int)below(r, 23), sent = 0;
        char name[32];

        if (fd < 0) {
                count(OP_BURST, -errno);
                return;
        }
        hello.has_version = true;
        hello.version = WIRE_VERSION;
        hello.client_name = "chaos-burst";
        req.has_id = true;
        req.id = 1;
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &hello;
        if (!raw_send(fd, &req))
                goto out;
        sent++;
        for (int i = 0; i < k; i++) {
                Allocd__Request q = ALLOCD__REQUEST__INIT;
                Allocd__Alloc a = ALLOCD__ALLOC__INIT;
                Allocd__Attach at = ALLOCD__ATTACH__INIT;
                Allocd__Free f = ALLOCD__FREE__INIT;
                Allocd__Detach de = ALLOCD__DETACH__INIT;
                Allocd__Status st = ALLOCD__STATUS__INIT;
                Allocd__Dump du = ALLOCD__DUMP__INIT;
                uint64_t x = below(r, 100);
                int pool = pick_pool(r);

                q.has_id = true;
                q.id = (uint64_t)i + 2;
                if (x < 70) {
                        q.body_case = ALLOCD__REQUEST__BODY_ALLOC;
                        q.alloc = &a;
                        a.pool = (char *)pool_names[pool];
                        a.has_size = true;
                        a.size = pick_size(r, pool);
                        a.has_flags = true;
                        a.flags = chance(r, 40) ? ALLOC_NOWAIT : chance(r, 10) ? ALLOC_NOFAIL : 0;
                        if (is_host(pool) && chance(r, 30))
                                a.flags |= ALLOC_ZERO;
                        a.has_timeout_ms = !(a.flags & (ALLOC_NOWAIT | ALLOC_NOFAIL));
                        a.timeout_ms = 1 + (uint32_t)below(r, 100);
                        if (chance(r, 15)) {
                                name_of(r, name, sizeof(name));
                                a.name = name;
                                if (!calm && chance(r, 20))
                                        a.flags |= ALLOC_PERSIST;
                        }
                } else if (x < 80) {
                        q.body_case = ALLOCD__REQUEST__BODY_ATTACH;
                        q.attach = &at;
                        name_of(r, name, sizeof(name));
                        at.name = name;
                } else if (x < 85) {
                        q.body_case = ALLOCD__REQUEST__BODY_FREE;
                        q.free = &f;
                        f.has_region = true;
                        f.region = next(r); /* nobody's: NOT_FOUND */
                } else if (x < 90) {
                        q.body_case = ALLOCD__REQUEST__BODY_DETACH;
                        q.detach = &de;
                        de.has_region = true;
                        de.region = next(r);
                } else if (x < 95) {
                        q.body_case = ALLOCD__REQUEST__BODY_STATUS;
                        q.status = &st;
                } else {
                        q.body_case = ALLOCD__REQUEST__BODY_DUMP;
                        q.dump = &du;
                }
                if (!raw_send(fd, &q))
                        break; /* refused (a limit), or allocd closed it */
                sent++;
        }
        switch (below(r, 4)) {
        case 0: /* every reply, as long as they come */
                while (sent-- > 0 && raw_reply(fd, 300))
                        ;
                break;
        case 1: /* some */
                for (int i = (int)below(r, (uint64_t)sent + 1); i > 0 && raw_reply(fd, 100); i--)
                        ;
                break;
        case 2: /* none: hang up with the requests in flight */
                break;
        default: /* no more requests; allocd closes when it reads that */
                shutdown(fd, SHUT_WR);
                while (raw_reply(fd, 300))
                        ;
                break;
        }
out:
        close(fd);
}
