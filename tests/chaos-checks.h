/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_CHAOS_CHECKS_H
#define ALLOC_TEST_CHAOS_CHECKS_H

/*
 * What test-daemon-chaos.c checks once the workers are gone (chaos-checks.c): allocd as /proc sees
 * it, what it holds and lists, the workers' counts, and the summary; and what the test shares with them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "chaos.h"
#include "harness.h"

/* test-daemon-chaos.c */
extern struct daemon d;
extern struct alloc_client *c;
extern struct chaos_stats *stats;
extern unsigned nworkers;
extern unsigned kills, early_kills, stops, odd_exits;
extern long chaos_start, chaos_end; /* ms */
extern char first_odd_exit[128];

long now_ms(void);
void sleep_ms(long ms);
void drain_notify(void);
void progress(void);

/* chaos-checks.c */
struct mem {
        long rss, anon, shmem; /* kB */
};

extern int fds_started;
extern struct mem mem_started;
extern bool summarised;

int fd_count(pid_t pid);
struct mem mem_of(pid_t pid);
void quiesce(const char *when);
int settled_fds(int want);
void expect_empty(const char *when);
void check_leftovers(struct alloc_dump *dm);
unsigned free_leftovers(const struct alloc_dump *dm, char *why, size_t whysize);
void check_workers(const char *when);
void summary(const char *tail);

#endif
