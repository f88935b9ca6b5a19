/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_SYSD_H
#define ALLOC_TEST_SYSD_H

/*
 * systemd's part in a restart, played by the test (sysd.c): the listening socket (as allocd.socket),
 * a NOTIFY_SOCKET read by a thread (READY=1, STOPPING=1, FDSTORE=1 with the fds, FDSTOREREMOVE=1),
 * the fd store, and a restart that stops allocd (SIGTERM, or SIGKILL for a crash) and starts a new
 * one with the socket and the stored fds as LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID, as systemd
 * does.  FDSTORE=64 tells allocd the store is there (systemd 254 sets it; allocd.service for 252).
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "harness.h"

#define SYSD_STORE_MAX 64

struct sysd_fd {
        char name[256];
        int fd;
};

struct sysd {
        struct daemon d; /* dir, sock, conf, notify; d.pid is the allocd running, 0 when none */
        char log[160];   /* allocd's stderr, every start appended */
        int listen_fd;
        pthread_t reader;
        bool reading;
        volatile bool quit;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct sysd_fd store[SYSD_STORE_MAX];
        size_t nstore;
        unsigned ready, stopping, dropped; /* READY=1 and STOPPING=1 seen; fds past the store's maximum */
        struct timespec reaped;            /* CLOCK_MONOTONIC when sysd_kill reaped allocd (restart-bench's stop) */
        long fsize;  /* not 0: allocd starts with RLIMIT_FSIZE this low (SIGXFSZ ignored), so its memfds cannot grow */
        long nofile; /* not 0: allocd starts with RLIMIT_NOFILE this low, soft and hard (it cannot raise it) */
};

/* Binds the socket, writes config, starts allocd with an empty store and waits for READY=1. */
void sysd_start(struct sysd *s, const char *config);
/* Stops allocd with sig (SIGTERM waits for STOPPING=1 and a clean exit) and reads what it sent last. */
void sysd_kill(struct sysd *s, int sig);
/* Starts allocd with the socket and the store; -1 once READY=1, else its exit status. */
int sysd_spawn(struct sysd *s);
/* sysd_kill, then sysd_spawn, which must reach READY=1. */
void sysd_restart(struct sysd *s, int sig);
/* The fd stored under name (the last stored), or -1; and how many names begin with prefix. */
int sysd_fd(struct sysd *s, const char *name);
size_t sysd_count(struct sysd *s, const char *prefix);
/* Adds fd to the store under name, as allocd's FDSTORE=1 would (the store takes fd). */
void sysd_put(struct sysd *s, const char *name, int fd);
/* Removes every fd stored under name, as FDSTOREREMOVE=1 (or a full store dropping it) would. */
void sysd_drop(struct sysd *s, const char *name);
/* Replaces every stored state memfd with a copy, cut to half its length or with a byte flipped. */
void sysd_damage_state(struct sysd *s, bool truncate);
/* allocd's stderr so far (slurp's buffer). */
const char *sysd_log(struct sysd *s);
/* Stops allocd (SIGTERM) if it runs, closes the store and removes the directory. */
void sysd_end(struct sysd *s);

#endif
