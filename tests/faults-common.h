/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_FAULTS_COMMON_H
#define ALLOC_TEST_FAULTS_COMMON_H

/* What the fault tests (test-daemon-faults*.c) share (faults-common.c): each test's allocd, and raw sockets to it. */
#include <stdbool.h>
#include <stdint.h>

#include "allocd.pb-c.h"
#include "harness.h"

#define NOBODY 65534
#define MiB (1ull << 20)

extern struct daemon d;
extern struct alloc_client *c, *c2;
extern char log_path[160]; /* allocd's stderr */
extern char helper[200];   /* helper-client, copied where nobody can run it */

long now_ms(void);
void start(const char *config, rlim_t nofile, char *const *env);
/* As start, allocd as uid (0: as we are) and without capabilities. */
void start_as(const char *config, rlim_t nofile, uid_t uid);
void stop(void);
void teardown(void);
/* Lines of allocd's log that contain any of what (NULL-terminated); the log may be far larger than slurp reads. */
unsigned long log_count(const char *const *what);

int raw_socket(bool nonblock, bool *connected);
int raw_connect(void);
Allocd__Reply *recv_reply(int fd, int timeout_ms, const char *what);
int send_hello(int fd, const char *name);
int raw_hello(const char *name);
int send_status(int fd, uint64_t id, int flags);
int send_dump(int fd, uint64_t id, uint64_t after, const char *pool);
void send_alloc(int fd, uint64_t id, const char *pool, uint64_t size, uint32_t flags);
void send_release(int fd, uint64_t id, uint64_t region, bool detach);
/* Up to n Attaches of name on fd, ids from first, for at most ms while its socket is full, until allocd closes it;
 * returns how many went. */
int send_attaches(int fd, uint64_t first, const char *name, int n, int ms);
bool closed_by_allocd(int fd, int timeout_ms);

#endif
