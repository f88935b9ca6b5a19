/* SPDX-License-Identifier: MIT */
/*
 * A fake allocd for the client tests (test-client-fake, -hostile, -revive, -races): a thread of the test
 * on a SOCK_SEQPACKET socket in a temporary directory of its own.  It accepts one connection and
 * answers each Request it reads with the Reply a callback fills in, until the client hangs up.
 * What it answers is the test's; the socket, the thread and the packets are this file's.
 * An answer may hang up instead (FAKE_HANGUP): the fake then serves the connection made next.
 */
#ifndef FAKE_ALLOCD_H
#define FAKE_ALLOCD_H

#include <pthread.h>
#include <stdbool.h>

#include "allocd.pb-c.h"

/*
 * What answer returns, besides 0 (send reply): send an empty packet (allocd never does); or close
 * the connection without a word, as an allocd that dies does, and serve the next one the client
 * makes (a client that does not reconnect then leaves fake_allocd_stop waiting).
 */
#define FAKE_EMPTY 1
#define FAKE_HANGUP 2
/* Or send the reply again and again, with ever new ids no request had, until the client hangs up. */
#define FAKE_FLOOD 3
/* Or send nothing (an allocd that is slow, or stopped); or send the reply, then hang up as FAKE_HANGUP does. */
#define FAKE_SILENT 4
#define FAKE_REPLY_HANGUP 5
/* Or send the reply, then, then_ms later, the reply f->then (an answer to an earlier request, say). */
#define FAKE_THEN 6

/*
 * Fills reply for req.  reply comes as an OK with the request's id; what it points to must outlive
 * the call (the thread packs it after): static storage, or arg's.  *fd (-1) may be set to an fd to
 * send beside the reply, which the fake then closes.  Returns 0 or one of the FAKE_ values above.
 */
typedef int (*fake_answer_fn)(const Allocd__Request *req, Allocd__Reply *reply, int *fd, void *arg);

struct fake_allocd {
        char dir[64], path[108]; /* path: the socket to connect to */
        int listener;
        pthread_t thread;
        fake_answer_fn answer;
        void *arg;
        Allocd__Reply *then; /* FAKE_THEN's second reply, set by answer */
        unsigned then_ms;
};

/* Answers req as allocd answers a plain Hello (this protocol version, its packet size); false: req is no Hello. */
bool fake_hello(const Allocd__Request *req, Allocd__Reply *reply);
/* fake_hello with the serial and secret a reconnect's Hello names to reclaim the connection (asserts req is a Hello).
 */
void fake_hello_reclaimable(const Allocd__Request *req, Allocd__Reply *reply);

/* Listens at a new f->path and serves its first connection with answer(..., arg); asserts on failure. */
void fake_allocd_start(struct fake_allocd *f, fake_answer_fn answer, void *arg);

/* Waits for the client to hang up (disconnect it first), then removes the socket and its directory. */
void fake_allocd_stop(struct fake_allocd *f);

#endif
