/* SPDX-License-Identifier: MIT */
/* A fake allocd that answers by a test's callback (fake-allocd.h). */
#include "fake-allocd.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "wire.h"

/* One connection, answered until the client hangs up or sends what is no Request; whether an answer hung up. */
static bool serve_one(struct fake_allocd *f, int conn) {
        uint8_t buf[WIRE_MAX_PACKET];
        ssize_t n;

        while ((n = wire_recv(conn, buf, sizeof(buf), NULL, &(size_t){0}, 0)) > 0) {
                Allocd__Request *req = allocd__request__unpack(NULL, (size_t)n, buf);
                Allocd__Reply reply = ALLOCD__REPLY__INIT;
                int fd = -1, r;
                if (!req)
                        break;
                reply.has_id = true;
                reply.id = req->id;
                r = f->answer(req, &reply, &fd, f->arg);
                allocd__request__free_unpacked(req, NULL);
                if (r == FAKE_HANGUP || r == FAKE_SILENT) {
                        if (fd >= 0)
                                close(fd);
                        if (r == FAKE_SILENT)
                                continue;
                        return true;
                }
                /* The client may have given up on the call and gone: then the reply goes nowhere. */
                wire_send(conn, buf, r == FAKE_EMPTY ? 0 : allocd__reply__pack(&reply, buf), &fd, fd >= 0,
                          MSG_NOSIGNAL);
                while (r == FAKE_FLOOD) {
                        reply.id += 1000;
                        if (wire_send(conn, buf, allocd__reply__pack(&reply, buf), NULL, 0, MSG_NOSIGNAL) < 0)
                                break;
                }
                if (fd >= 0)
                        close(fd);
                if (r == FAKE_THEN && f->then) {
                        usleep(f->then_ms * 1000);
                        wire_send(conn, buf, allocd__reply__pack(f->then, buf), NULL, 0, MSG_NOSIGNAL);
                }
                if (r == FAKE_REPLY_HANGUP)
                        return true;
        }
        return false;
}

/* The first connection, and each one made after an answer hung up. */
static void *serve(void *arg) {
        struct fake_allocd *f = arg;
        bool again;

        do {
                int conn = accept4(f->listener, NULL, NULL, SOCK_CLOEXEC);
                cr_assert_geq(conn, 0);
                again = serve_one(f, conn);
                close(conn);
        } while (again);
        return NULL;
}

void fake_allocd_start(struct fake_allocd *f, fake_answer_fn answer, void *arg) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        f->answer = answer;
        f->arg = arg;
        snprintf(f->dir, sizeof(f->dir), "/tmp/fake-allocd.XXXXXX");
        cr_assert_not_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/allocd.sock", f->dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        f->listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        cr_assert_geq(f->listener, 0);
        cr_assert_eq(bind(f->listener, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(listen(f->listener, 1), 0);
        cr_assert_eq(pthread_create(&f->thread, NULL, serve, f), 0);
}

bool fake_hello(const Allocd__Request *req, Allocd__Reply *reply) {
        static Allocd__HelloReply h = ALLOCD__HELLO_REPLY__INIT;

        if (req->body_case != ALLOCD__REQUEST__BODY_HELLO)
                return false;
        h.has_version = h.has_max_packet = true;
        h.version = WIRE_VERSION;
        h.max_packet = WIRE_MAX_PACKET;
        reply->body_case = ALLOCD__REPLY__BODY_HELLO;
        reply->hello = &h;
        return true;
}

void fake_hello_reclaimable(const Allocd__Request *req, Allocd__Reply *reply) {
        static Allocd__HelloReply h;
        static uint8_t secret[32] = {1, 2, 3};

        cr_assert(fake_hello(req, reply));
        h = *reply->hello;
        h.has_serial = h.has_secret = true;
        h.serial = 1;
        h.secret.data = secret;
        h.secret.len = sizeof(secret);
        reply->hello = &h;
}

void fake_allocd_stop(struct fake_allocd *f) {
        pthread_join(f->thread, NULL);
        close(f->listener);
        unlink(f->path);
        rmdir(f->dir);
}
