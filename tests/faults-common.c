/* SPDX-License-Identifier: MIT */
/*
 * What the fault tests (test-daemon-faults*.c) share: the allocd each test starts with the
 * configuration its fault needs (killed by teardown when a test fails half-way), and requests sent
 * on raw sockets, for what liballoc-client would not do: pipeline, never read, never say Hello.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faults-common.h"
#include "wire.h"

struct daemon d;
struct alloc_client *c, *c2; /* a test's clients, disconnected by teardown if it fails */
static bool live;            /* d was spawned and not yet cleaned up */
char log_path[160];
char helper[200];

long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start_opts(const char *config, struct daemon_opts o);

/* allocd with config and the extra environment env (NULL-terminated, or NULL); its stderr goes to log_path. */
void start(const char *config, rlim_t nofile, char *const *env) {
        start_opts(config, (struct daemon_opts){.env = env, .nofile = nofile});
}

void start_as(const char *config, rlim_t nofile, uid_t uid) {
        start_opts(config, (struct daemon_opts){.nofile = nofile, .uid = uid});
}

static void start_opts(const char *config, struct daemon_opts o) {
        if (!*log_path) {
                char tmp[] = "/tmp/allocd-log-XXXXXX";
                int fd = mkstemp(tmp);
                cr_assert(fd >= 0);
                close(fd);
                snprintf(log_path, sizeof(log_path), "%s", tmp);
        }
        o.stderr_file = log_path;
        int r = daemon_spawn_opts(&d, config, &o);
        live = true;
        snprintf(helper, sizeof(helper), "%s/helper-client", d.dir);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1; its log:\n%s", r, slurp(log_path));
}

/* Stops allocd (checking that it stops cleanly, unless it is already reaped: pid 0) and removes its files. */
void stop(void) {
        unlink(helper);
        daemon_stop(&d);
        live = false;
}

/* After a failed assertion: allocd may be stuck in the very fault under test. */
void teardown(void) {
        c = alloc_disconnect(c);
        c2 = alloc_disconnect(c2);
        if (live) {
                if (d.pid > 0) {
                        kill(d.pid, SIGKILL);
                        waitpid(d.pid, NULL, 0);
                        d.pid = 0;
                }
                stop();
        }
        if (*log_path)
                unlink(log_path);
}

unsigned long log_count(const char *const *what) {
        char line[2048];
        unsigned long n = 0;
        FILE *f = fopen(log_path, "r");

        while (f && fgets(line, sizeof(line), f)) {
                bool hit = false;
                for (size_t i = 0; what[i] && !hit; i++)
                        hit = strstr(line, what[i]) != NULL;
                n += hit;
        }
        if (f)
                fclose(f);
        return n;
}

/* ---- raw sockets ---- */

int raw_socket(bool nonblock, bool *connected) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

        cr_assert(fd >= 0, "socket: %s", strerror(errno));
        strcpy(sa.sun_path, d.sock);
        *connected = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        return fd;
}

int raw_connect(void) {
        bool ok;
        int fd = raw_socket(false, &ok);
        cr_assert(ok, "connect: %s", strerror(errno));
        return fd;
}

/* Sends req; returns 0 or a negative errno value (-EAGAIN with MSG_DONTWAIT). */
static int send_req(int fd, Allocd__Request *req, uint64_t id, int flags) {
        uint8_t buf[WIRE_MAX_PACKET];

        req->has_id = true;
        req->id = id;
        return wire_send(fd, buf, allocd__request__pack(req, buf), NULL, 0, flags | MSG_NOSIGNAL);
}

/*
 * The next reply within timeout_ms, or NULL when allocd closed the connection.  A pool fd that comes with it is
 * closed.  Fails the test when nothing comes.
 */
Allocd__Reply *recv_reply(int fd, int timeout_ms, const char *what) {
        static uint8_t buf[WIRE_MAX_PACKET];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int fds[WIRE_MAX_FDS];
        size_t nfds = WIRE_MAX_FDS;

        cr_assert_eq(poll(&p, 1, timeout_ms), 1, "%s: allocd neither answered nor closed within %d ms", what,
                     timeout_ms);
        ssize_t n = wire_recv(fd, buf, sizeof(buf), fds, &nfds, 0);
        for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
        if (n == 0 || n == -ECONNRESET)
                return NULL;
        cr_assert_gt(n, 0, "%s: recv: %s", what, strerror((int)-n));
        Allocd__Reply *r = allocd__reply__unpack(NULL, (size_t)n, buf);
        cr_assert_not_null(r, "%s: allocd sent a reply that does not decode", what);
        return r;
}

int send_hello(int fd, const char *name) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Hello h = ALLOCD__HELLO__INIT;

        h.has_version = true;
        h.version = WIRE_VERSION;
        h.client_name = (char *)name;
        req.body_case = ALLOCD__REQUEST__BODY_HELLO;
        req.hello = &h;
        return send_req(fd, &req, 1, 0);
}

/* A raw connection that has said Hello, within 10 s. */
int raw_hello(const char *name) {
        int fd = raw_connect();

        cr_assert_eq(send_hello(fd, name), 0);
        Allocd__Reply *r = recv_reply(fd, 10000, "Hello");
        cr_assert_not_null(r, "allocd closed a new connection instead of answering its Hello");
        cr_assert_eq(r->error, ALLOCD__ERROR__OK, "Hello: error %d: %s", r->error, r->message);
        allocd__reply__free_unpacked(r, NULL);
        return fd;
}

int send_status(int fd, uint64_t id, int flags) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Status st = ALLOCD__STATUS__INIT;

        req.body_case = ALLOCD__REQUEST__BODY_STATUS;
        req.status = &st;
        return send_req(fd, &req, id, flags);
}

int send_dump(int fd, uint64_t id, uint64_t after, const char *pool) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Dump dm = ALLOCD__DUMP__INIT;

        dm.has_after = true, dm.after = after, dm.pool = (char *)pool;
        req.body_case = ALLOCD__REQUEST__BODY_DUMP, req.dump = &dm;
        return send_req(fd, &req, id, 0);
}

void send_alloc(int fd, uint64_t id, const char *pool, uint64_t size, uint32_t flags) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;

        a.pool = (char *)pool;
        a.has_size = true;
        a.size = size;
        a.has_flags = flags != 0;
        a.flags = flags;
        req.body_case = ALLOCD__REQUEST__BODY_ALLOC;
        req.alloc = &a;
        cr_assert_eq(send_req(fd, &req, id, 0), 0);
}

/* Free, or Detach, of region on fd. */
void send_release(int fd, uint64_t id, uint64_t region, bool detach) {
        Allocd__Request req = ALLOCD__REQUEST__INIT;
        Allocd__Free f = ALLOCD__FREE__INIT;
        Allocd__Detach dt = ALLOCD__DETACH__INIT;

        f.has_region = dt.has_region = true;
        f.region = dt.region = region;
        if (detach) {
                req.body_case = ALLOCD__REQUEST__BODY_DETACH;
                req.detach = &dt;
        } else {
                req.body_case = ALLOCD__REQUEST__BODY_FREE;
                req.free = &f;
        }
        cr_assert_eq(send_req(fd, &req, id, 0), 0);
}

/* Waits up to timeout_ms for allocd to close fd, reading (at most two) replies it sends first; true if it did. */
bool closed_by_allocd(int fd, int timeout_ms) {
        for (int i = 0; i < 3; i++) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, timeout_ms) != 1)
                        return false;
                Allocd__Reply *r = recv_reply(fd, 0, "closing");
                if (!r)
                        return true;
                cr_log_info("before closing, allocd sent error %d: %s", r->error, r->message ? r->message : "");
                allocd__reply__free_unpacked(r, NULL);
        }
        return false;
}

int send_attaches(int fd, uint64_t first, const char *name, int n, int ms) {
        int sent = 0;

        for (long end = now_ms() + ms; sent < n && now_ms() < end;) {
                Allocd__Request req = ALLOCD__REQUEST__INIT;
                Allocd__Attach at = ALLOCD__ATTACH__INIT;
                at.name = (char *)name;
                req.body_case = ALLOCD__REQUEST__BODY_ATTACH;
                req.attach = &at;
                int e = send_req(fd, &req, first + (uint64_t)sent, MSG_DONTWAIT);
                if (e == -EAGAIN) {
                        usleep(1000);
                        continue;
                }
                if (e == -ECONNRESET || e == -EPIPE)
                        break; /* allocd closed it: what the caller checks */
                cr_assert_eq(e, 0, "send: %s", strerror(-e));
                sent++;
        }
        return sent;
}
