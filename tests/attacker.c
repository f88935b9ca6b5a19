/* SPDX-License-Identifier: MIT */
/*
 * An attacker for the isolation tests (issue 14): it speaks the protocol
 * itself, as a hostile program would rather than through liballoc-client,
 * attaches NAME (and ALLOCs in POOL if asked) and then does to the fd allocd
 * hands it everything the kernel lets it: map it writable, write through
 * it, punch a hole, reopen it read-write through /proc, make a read-only
 * mapping writable, read past the region.
 *
 *   attacker SOCKET NAME [MODE]
 *
 * It prints one line, "key=value" words:
 *   fd=N size=BYTES ro=0|1 pool_fd=0|1 region_fd=0|1 offset=N rsize=N
 *   map_rw=OK|ERRNO write=OK|ERRNO punch=OK|ERRNO reopen_rw=OK|ERRNO
 *   mprotect=OK|ERRNO read=TEXT (the region's first bytes, up to a NUL or 15)
 * and exits 0, or 2 when the Attach failed (its message on stderr), 3 for
 * anything else.  Nothing it does is undone: a write that works stays.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "allocd.pb-c.h"
#include "wire.h"

static const char *res(int r) {
        return r == 0 ? "OK" : strerrorname_np(r);
}

static Allocd__Reply *call(int s, Allocd__Request *req, int *fd) {
        static uint8_t buf[WIRE_MAX_PACKET];
        int fds[WIRE_MAX_FDS];
        size_t nfds = WIRE_MAX_FDS, n = allocd__request__get_packed_size(req);

        allocd__request__pack(req, buf);
        if (wire_send(s, buf, n, NULL, 0, 0) < 0)
                return NULL;
        ssize_t k = wire_recv(s, buf, sizeof(buf), fds, &nfds, 0);
        if (k <= 0)
                return NULL;
        *fd = nfds ? fds[0] : -1;
        return allocd__reply__unpack(NULL, (size_t)k, buf);
}

int main(int argc, char **argv) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello hello = ALLOCD__HELLO__INIT;
        Allocd__Attach at = ALLOCD__ATTACH__INIT;
        Allocd__Reply *r;
        struct stat st;
        char path[64], text[16] = "";
        int s, fd = -1;

        if (argc < 3)
                return 3;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
        s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return 3;
        hello.has_version = true;
        hello.version = WIRE_VERSION;
        req.has_id = true;
        req.id = 1;
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &hello;
        if (!(r = call(s, &req, &fd)) || r->error != ALLOCD__ERROR__OK)
                return 3;
        allocd__reply__free_unpacked(r, NULL);
        at.name = argv[2];
        req.id = 2;
        req.body_case = ALLOCD__REQUEST__BODY_ATTACH;
        req.attach = &at;
        if (!(r = call(s, &req, &fd)) || !r->region) {
                fprintf(stderr, "attacker: %s\n", r && r->message ? r->message : "no reply");
                return 2;
        }
        const Allocd__Region *g = r->region;
        if (fd < 0 || fstat(fd, &st) < 0)
                return 3;
        printf("fd=%d size=%lld ro=%d pool_fd=%d region_fd=%d offset=%llu rsize=%llu", fd, (long long)st.st_size,
               g->read_only, g->pool_fd, g->region_fd, (unsigned long long)g->offset, (unsigned long long)g->size);
        uint64_t off = g->region_fd ? 0 : g->offset;

        void *w = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        printf(" map_rw=%s", res(w == MAP_FAILED ? errno : 0));
        printf(" write=%s", res(pwrite(fd, "X", 1, (off_t)off) == 1 ? 0 : errno));
        printf(" punch=%s",
               res(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, 4096) == 0 ? 0 : errno));
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        int again = open(path, O_RDWR | O_CLOEXEC);
        printf(" reopen_rw=%s", res(again >= 0 ? 0 : errno));
        char *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
                printf(" mprotect=%s", res(mprotect(m, (size_t)st.st_size, PROT_READ | PROT_WRITE) == 0 ? 0 : errno));
                memcpy(text, m + off, sizeof(text) - 1);
                for (char *t = text; *t; t++)
                        if (*t < '!' || *t > '~')
                                *t = '.';
        }
        printf(" read=%s\n", *text ? text : "-");
        allocd__reply__free_unpacked(r, NULL);
        return 0;
}
