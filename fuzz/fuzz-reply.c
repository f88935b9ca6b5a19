/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client's side of the protocol: whatever its allocd sends (a bug, a version skew, a
 * hostile process at $ALLOCD_SOCKET), a call fails with an error and words for it, and nothing
 * crashes, leaks, or hands out a pointer that does not reach its bytes.  fuzz-reply.h gives the
 * input's format: the calls the client makes, and the packets a fake allocd answers them with.
 *
 * The fake allocd is a thread on a SOCK_SEQPACKET socket in a private directory (made once); each
 * input gets a connection of its own and a thread that serves it, and ends with alloc_disconnect
 * and the thread joined.  Calls time out after 5 ms (ALLOCD_TIMEOUT), so a request left unanswered
 * costs that much (at most SILENT_MAX an input); reconnecting is off (ALLOCD_RECONNECT=0).
 *
 * Oracles, besides the sanitizers and the leak check: every failed call returns a negative errno
 * value and says why (alloc_last_error); every region handed out reaches its bytes (its first and
 * last are read through cptr and written through ptr, so a mapping shorter than the region, or
 * past the end of its file, faults here); and once the connection is gone this process has the
 * fds it had before the input.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "alloc/client.h"
#include "allocd.pb-c.h"
#include "fuzz-reply.h"
#include "wire.h"

#define SILENT_MAX 1
#define HELD_MAX 64
#define PAGE 4096

static char dir[64], path[108];
static int listener = -1;
static bool trace; /* FUZZ_TRACE=1: each call and its outcome, and each packet, on stderr */

/* ---- the fake allocd ---- */

struct server {
        const uint8_t *data; /* the packets */
        size_t size;
        int conn;
};

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fprintf(stderr, "fuzz-reply: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        abort();
}

/* The next request's id, and whether it asks for no answer (quiet); false when the client hung up. */
static bool next_request(int conn, uint64_t *id, bool *quiet) {
        static __thread uint8_t buf[WIRE_MAX_PACKET];
        struct pollfd pfd = {.fd = conn, .events = POLLIN};
        Allocd__Request *req;
        ssize_t n;

        /* Far longer than any call waits: only a client that went wrong is given up on. */
        if (poll(&pfd, 1, 5000) != 1 || (n = recv(conn, buf, sizeof(buf), 0)) <= 0)
                return false;
        if (!(req = allocd__request__unpack(NULL, (size_t)n, buf)))
                fail("the client sent a request protobuf-c cannot decode");
        *id = req->id;
        *quiet = (req->body_case == ALLOCD__REQUEST__BODY_FREE && req->free->quiet) ||
                 (req->body_case == ALLOCD__REQUEST__BODY_DETACH && req->detach->quiet) ||
                 (req->body_case == ALLOCD__REQUEST__BODY_FREE_BATCH && req->free_batch->quiet);
        allocd__request__free_unpacked(req, NULL);
        return true;
}

/* Sends bytes with the id appended (a varint field 1: the last occurrence wins) and a memfd of pages pages. */
static void answer(int conn, const uint8_t *bytes, size_t len, uint8_t flags, uint64_t id) {
        static __thread uint8_t buf[WIRE_MAX_PACKET + 16];
        int fd = -1;

        memcpy(buf, bytes, len);
        if (!(flags & PKT_KEEP_ID)) {
                buf[len++] = 0x08;
                do {
                        buf[len++] = (uint8_t)(id | (id >= 0x80 ? 0x80 : 0));
                        id >>= 7;
                } while (id);
        }
        if (flags & PKT_FD) {
                /* Sealed as allocd's are, so that the replies that fit are mapped. */
                fd = memfd_create("fuzz-reply", MFD_CLOEXEC | MFD_ALLOW_SEALING);
                if (fd < 0 || ftruncate(fd, (off_t)(flags & PKT_PAGES) * PAGE) < 0 ||
                    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                        fail("memfd: %s", strerror(errno));
        }
        /* The client may be gone (it gave up on a call): then the rest goes nowhere. */
        wire_send(conn, buf, len, &fd, fd >= 0, MSG_NOSIGNAL);
        if (fd >= 0)
                close(fd);
}

static void *serve(void *arg) {
        struct server *s = arg;
        const uint8_t *p = s->data, *end = s->data + s->size;
        uint64_t id = 0, before = 0; /* the request to answer, and the one answered (or not) before it */
        int silent = 0;
        bool have = false, quiet = false;
        struct pollfd pfd = {.fd = listener, .events = POLLIN};

        if (poll(&pfd, 1, 5000) != 1 || (s->conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) < 0)
                fail("no connection to accept: %s", strerror(errno));
        while (end - p >= 3) {
                size_t len = (size_t)(p[0] | p[1] << 8);
                uint8_t flags = p[2];
                p += 3;
                if (len > (size_t)(end - p))
                        len = (size_t)(end - p);
                if ((flags & PKT_HANGUP) == PKT_HANGUP)
                        break;
                /* Read first, also for an extra packet: a reply to a request that timed out comes after the next. */
                if (!have && !(have = next_request(s->conn, &id, &quiet)))
                        break;
                if (trace)
                        fprintf(stderr, "allocd: request %llu%s, packet of %zu bytes, flags 0x%02x\n",
                                (unsigned long long)id, quiet ? " (quiet)" : "", len, flags);
                if (flags & PKT_EXTRA) {
                        answer(s->conn, p, len, flags, before);
                } else {
                        /* A quiet request costs no wait unanswered; another one costs the client its timeout. */
                        if (!(flags & PKT_SILENT) || (!quiet && ++silent > SILENT_MAX))
                                answer(s->conn, p, len, flags, id);
                        before = id;
                        have = false;
                }
                p += len;
        }
        close(s->conn);
        return NULL;
}

/* ---- the client ---- */

struct run {
        struct alloc_client *c;
        uint64_t ids[HELD_MAX]; /* the regions it was handed and still has */
        size_t n;
};

/* A failed call: a negative errno value, and words for it. */
static void check_failure(int r, const char *call) {
        if (r >= 0 || r < -4095)
                fail("%s returned %d, not 0 or a negative errno value", call, r);
        if (!*alloc_last_error())
                fail("%s failed (%s) without a word in alloc_last_error()", call, strerror(-r));
}

static void check_region(const struct alloc_region *g) {
        if (g->ptr && (g->ptr != g->cptr || g->read_only))
                fail("region %llu: ptr %p, cptr %p, read_only %d", (unsigned long long)g->id, g->ptr, g->cptr,
                     g->read_only);
        if (g->cptr && g->size) {
                /* A mapping shorter than the region, or past its file's end, faults here. */
                volatile const uint8_t *b = g->cptr;
                (void)b[0];
                (void)b[g->size - 1];
        }
        if (g->ptr && g->size) {
                volatile uint8_t *b = g->ptr;
                b[0] = 1;
                b[g->size - 1] = 1;
        }
}

static void got(struct run *t, const struct alloc_region *g) {
        check_region(g);
        if (t->n < HELD_MAX)
                t->ids[t->n++] = g->id;
}

static uint64_t pick(struct run *t, unsigned arg, bool forget) {
        uint64_t id;
        size_t i;

        if (!t->n)
                return (uint64_t)arg << 32 | 1;
        i = arg % t->n;
        id = t->ids[i];
        if (forget)
                t->ids[i] = t->ids[--t->n];
        return id;
}

static int stop_at(const struct alloc_region_info *x, void *data) {
        unsigned *left = data;

        (void)x;
        return *left && --*left == 0 ? 1 : 0;
}

static const char *const pools[] = {"h", "p", "r", "g"};

static void op(struct run *t, uint8_t byte) {
        struct alloc_opts o = {.timeout_ms = 1};
        struct alloc_region g, gs[4];
        unsigned arg = byte >> 4;
        int r = 0;
        const char *call = "";

        switch ((enum reply_op)(byte & 15)) {
        case OP_ALLOC:
                if (arg & 8)
                        o.flags = ALLOC_NOWAIT;
                call = "alloc_region_new";
                if ((r = alloc_region_new(t->c, pools[arg & 3], PAGE * (1 + ((arg >> 2) & 1)), &o, &g)) == 0)
                        got(t, &g);
                break;
        case OP_ALLOC_NAMED:
                o.name = "n";
                o.flags = (arg & 1 ? ALLOC_UNSEALED : 0) | (arg & 2 ? ALLOC_PERSIST : 0);
                if (arg & 4) {
                        o.format = ALLOC_FORMAT_FALLOC;
                        o.chunk_size = 64;
                }
                call = "alloc_region_new (named)";
                if ((r = alloc_region_new(t->c, "h", PAGE, &o, &g)) == 0)
                        got(t, &g);
                break;
        case OP_BATCH: {
                uint64_t sizes[4] = {PAGE, PAGE, 2 * PAGE, PAGE};
                size_t n = 1 + (arg & 3);
                call = "alloc_region_new_batch";
                if ((r = alloc_region_new_batch(t->c, pools[arg >> 2], sizes, n, NULL, gs)) == 0)
                        for (size_t i = 0; i < n; i++)
                                got(t, &gs[i]);
                break;
        }
        case OP_ATTACH: {
                struct alloc_attach_opts a = {.pool = arg & 1 ? "h" : NULL, .by_owner = arg & 2, .owner = 1000};
                call = "alloc_region_attach";
                if ((r = alloc_region_attach(t->c, "n", &a, &g)) == 0)
                        got(t, &g);
                break;
        }
        case OP_SEAL:
                call = "alloc_region_seal";
                r = alloc_region_seal(t->c, pick(t, arg, false));
                break;
        case OP_FREE:
                call = "alloc_region_free";
                r = alloc_region_free(t->c, pick(t, arg, true));
                break;
        case OP_DETACH:
                call = "alloc_region_detach";
                r = alloc_region_detach(t->c, pick(t, arg, true));
                break;
        case OP_GIVE_SYNC:
                call = arg & 8 ? "alloc_region_detach_sync" : "alloc_region_free_sync";
                r = arg & 8 ? alloc_region_detach_sync(t->c, pick(t, arg, true))
                            : alloc_region_free_sync(t->c, pick(t, arg, true));
                break;
        case OP_FREE_BATCH: {
                size_t n = 1 + arg < t->n ? 1 + arg : t->n;
                if (!n)
                        return;
                call = "alloc_region_free_batch";
                r = alloc_region_free_batch(t->c, t->ids, n);
                memmove(t->ids, t->ids + n, (t->n - n) * sizeof(*t->ids));
                t->n -= n;
                break;
        }
        case OP_SYNC:
                call = "alloc_region_sync";
                r = alloc_region_sync(t->c);
                break;
        case OP_STATUS: {
                struct alloc_status *s;
                call = "alloc_status";
                if ((r = alloc_status(t->c, &s)) == 0) {
                        for (size_t i = 0; i < s->npools; i++)
                                if (s->pools[i].nspans && !s->pools[i].spans)
                                        fail("pool %zu: %zu spans and none listed", i, s->pools[i].nspans);
                        alloc_status_free(s);
                }
                break;
        }
        case OP_DUMP: {
                struct alloc_dump *d;
                call = "alloc_dump";
                if ((r = alloc_dump(t->c, arg & 1 ? "h" : NULL, &d)) == 0)
                        alloc_dump_free(d);
                break;
        }
        case OP_DUMP_EACH:
                call = "alloc_dump_each";
                r = alloc_dump_each(t->c, NULL, stop_at, &arg);
                if (r == 1)
                        r = 0; /* the callback's own */
                break;
        case OP_SPARE:
                call = "alloc_set_spare";
                r = alloc_set_spare(t->c, arg & 1);
                break;
        case OP_DROP: {
                uint32_t n;
                call = "alloc_drop_client";
                r = arg == 15 ? alloc_drop_client(t->c, 1, 0, &n) : alloc_drop_client(t->c, 0, 1 + arg, &n);
                break;
        }
        case OP_FREE_ID:
                call = "alloc_region_free_sync (an id never had)";
                r = alloc_region_free_sync(t->c, (uint64_t)arg << 32 | 7);
                break;
        }
        if (trace)
                fprintf(stderr, "client: %s: %d %s\n", call, r, r < 0 ? alloc_last_error() : "");
        if (r < 0)
                check_failure(r, call);
}

/* ---- the harness ---- */

/*
 * The sockets and memfds open in this process (what the client may leak: libFuzzer's symbolizer
 * opens pipes as it goes); show: each on stderr.
 */
static int count_fds(bool show) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        if (!d)
                fail("/proc/self/fd: %s", strerror(errno));
        while ((e = readdir(d))) {
                char link[300], to[256];
                ssize_t k;
                snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
                if ((k = readlink(link, to, sizeof(to) - 1)) <= 0)
                        continue;
                to[k] = '\0';
                if (strncmp(to, "socket:", 7) && strncmp(to, "/memfd:", 7))
                        continue;
                n++;
                if (show)
                        fprintf(stderr, "fd %s: %s\n", e->d_name, to);
        }
        closedir(d);
        return n;
}

static void cleanup(void) {
        unlink(path);
        rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        (void)argc;
        (void)argv;
        snprintf(dir, sizeof(dir), "/tmp/fuzz-reply.XXXXXX");
        if (!mkdtemp(dir))
                fail("mkdtemp: %s", strerror(errno));
        snprintf(path, sizeof(path), "%s/allocd.sock", dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listener, 4) < 0)
                fail("listening at %s: %s", path, strerror(errno));
        atexit(cleanup);
        trace = getenv("FUZZ_TRACE") && !strcmp(getenv("FUZZ_TRACE"), "1");
        /* A lost connection stays lost: a reconnect would wait for a second accept nobody makes. */
        setenv("ALLOCD_RECONNECT", "0", 1);
        setenv("ALLOCD_TIMEOUT", "5ms", 1);
        setenv("ALLOCD_SPIN", "50us", 1);
        unsetenv("ALLOCD_SPARE");
        unsetenv("ALLOCD_QUIET");
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int fds_before = -1;
        struct server s;
        struct run t = {0};
        pthread_t th;
        size_t nops;
        int r;

        if (size < 1)
                return 0;
        nops = data[0];
        if (nops > size - 1)
                nops = size - 1;
        s = (struct server){.data = data + 1 + nops, .size = size - 1 - nops};
        if (fds_before < 0)
                fds_before = count_fds(false);
        if (pthread_create(&th, NULL, serve, &s) != 0)
                fail("pthread_create");
        r = alloc_connect(&t.c, path, "fuzz");
        if (trace)
                fprintf(stderr, "client: alloc_connect: %d %s\n", r, r < 0 ? alloc_last_error() : "");
        if (r < 0) {
                check_failure(r, "alloc_connect");
        } else {
                for (size_t i = 0; i < nops && i < REPLY_OPS_MAX; i++)
                        op(&t, data[1 + i]);
        }
        t.c = alloc_disconnect(t.c);
        pthread_join(th, NULL);
        if ((r = count_fds(false)) != fds_before && count_fds(true))
                fail("%d sockets and memfds open after the input, %d before it", r, fds_before);
        return 0;
}
