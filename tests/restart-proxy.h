/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_RESTART_PROXY_H
#define ALLOC_TEST_RESTART_PROXY_H

/*
 * A socket between a client and the allocd that sysd.c runs, packets and their fds passed on as
 * they are, that can restart allocd at one chosen moment of a connection's exchange: so that a
 * test can have allocd die between two requests of a client's reconnection, which no timing can.
 */
#include <pthread.h>
#include <stdbool.h>

#include "sysd.h"

#define PROXY_PAIRS 16

struct proxy {
        struct sysd *s;
        char path[160]; /* where clients connect */
        int lfd;
        int client[PROXY_PAIRS], daemon[PROXY_PAIRS];
        int sent[PROXY_PAIRS], got[PROXY_PAIRS]; /* packets passed on to allocd, and back */
        int npairs;
        pthread_t thread;
        volatile bool quit;
        /*
         * Connection trip_conn (1 for the first accepted), when it has sent trip_after packets (or, with
         * trip_reply, been sent them): its next one that way is not passed on; allocd is killed and
         * started again, and the connection closed.
         */
        volatile int trip_conn, trip_after;
        volatile bool trip_reply;
        volatile bool tripped;
};

/* Listens at s's directory's proxy.sock and passes everything on until proxy_stop. */
void proxy_start(struct proxy *p, struct sysd *s);
/* From now on, connection conn trips after packets that way (the fields above). */
void proxy_trip(struct proxy *p, int conn, bool reply, int after);
void proxy_stop(struct proxy *p);

#endif
