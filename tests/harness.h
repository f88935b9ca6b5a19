/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_HARNESS_H
#define ALLOC_TEST_HARNESS_H

/*
 * A real allocd for one test: its own temporary directory, socket and
 * configuration, started as a child and waited for through a NOTIFY_SOCKET
 * until it says READY=1, so tests never sleep and hope.
 */

#include <stdbool.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <alloc/client.h>

/* 1 when built with AddressSanitizer: its allocator keeps freed memory, and mlock is a no-op. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

struct daemon {
        pid_t pid;
        char dir[64];
        char sock[128];
        char conf[128];
        char notify[128];
        int notify_fd;
};

/*
 * fork() for a test: the child is SIGKILLed when the test process dies (PR_SET_PDEATHSIG), so that a
 * failed assertion or a timeout leaves no allocd or helper behind; it exits 126 if the test died
 * before it could say so.  Every allocd the harness starts is one.
 */
pid_t test_fork(void);
/*
 * In a child of test_fork, again after a change of uid or gid (which clears the death signal); false
 * when it cannot be set or the test has died already (the child should _exit then).
 */
bool die_with_test(void);
/* The allocd the tests start: $ALLOCD_PATH where it is set (a bundle of scripts/gpu-bundle.sh on a GPU
 * host), else the one meson built. */
const char *daemon_path(void);
/* Starts allocd with config (NULL: the built-in pools); fails the test if it does not become ready. */
void daemon_start(struct daemon *d, const char *config);
/* As daemon_start, with extra arguments and environment; returns the exit status if allocd exits before READY=1 (-1
 * when it became ready). */
int daemon_spawn(struct daemon *d, const char *config, char *const extra_env[], const char *stderr_file);
/* How daemon_spawn_opts starts allocd; all zero (or NULL) is daemon_spawn's way. */
struct daemon_opts {
        char *const *env;        /* extra environment, NULL-terminated */
        const char *stderr_file; /* allocd's stderr goes there */
        rlim_t nofile;           /* RLIMIT_NOFILE, soft and hard, set in allocd before it starts; 0: inherited */
        uid_t uid; /* allocd runs as this uid and gid, without capabilities (the test is root); 0: as we are */
};
/* As daemon_spawn, with the options in o (NULL: none). */
int daemon_spawn_opts(struct daemon *d, const char *config, const struct daemon_opts *o);
/* A new allocd on d's socket, configuration and notify socket (the one before has stopped); as daemon_spawn_opts. */
int daemon_respawn(struct daemon *d, const struct daemon_opts *o);
/* SIGTERM, then checks that allocd stopped cleanly with STOPPING=1. */
void daemon_stop(struct daemon *d);
/* Waits up to timeout_ms for a notify datagram containing what; returns true if seen. */
bool daemon_notified(struct daemon *d, const char *what, int timeout_ms);
struct alloc_client *daemon_connect(struct daemon *d);
/* A socket connected to d with nothing said on it (SOCK_SEQPACKET, CLOEXEC): a raw-protocol client's. */
int daemon_raw_connect(const struct daemon *d);
/* Total used bytes of pool, through allocctl's API. */
/* The pool's entry in s; fails the test if there is none. */
const struct alloc_pool_status *pool_status(const struct alloc_status *s, const char *pool);
unsigned long long pool_used(struct alloc_client *c, const char *pool);
/* The requests waiting in pool; pool NULL: on all connections, Attaches of a name included. */
unsigned long long pool_waiters(struct alloc_client *c, const char *pool);
/*
 * Polls status until pool's used bytes (or waiters) equal want, for up to 10 s:
 * a closed connection is released when allocd reads its end, not before
 * close() returns.  Returns the last value seen.
 */
unsigned long long wait_used(struct alloc_client *c, const char *pool, unsigned long long want);
unsigned long long wait_waiters(struct alloc_client *c, const char *pool, unsigned long long want);
/*
 * SIGSTOP to pid, and waits until it has stopped: kill() returns before the signal is taken, and a
 * request sent meanwhile may be read (its timeout counting) before allocd stops, not after SIGCONT.
 */
void freeze(pid_t pid);
/* allocd's resident set (VmRSS) in bytes, from /proc/PID/status; fails the test if it cannot be read. */
unsigned long long daemon_rss(const struct daemon *d);
/* allocd's CPU time so far, user and system, all threads, in seconds (/proc/PID/stat). */
double daemon_cpu_seconds(const struct daemon *d);
void write_file(const char *path, const char *text);
/* The file's first 16 KiB as a string, in a static buffer ("" if it cannot be read). */
const char *slurp(const char *path);
/* allocd --check-config on text written as DIR/allocd.conf; its exit status, and its output in out. */
int check_config(const char *text, char *out, size_t size);

#endif
