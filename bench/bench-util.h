/* SPDX-License-Identifier: MIT */
#ifndef BENCH_BENCH_UTIL_H
#define BENCH_BENCH_UTIL_H

/* What the benchmarks share: the clock, trials and their median, and their options' parsing. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TRIALS 5

extern double min_seconds; /* per measurement, split over TRIALS */

/* Runs steps first .. first + count - 1 of a workload on its subject. */
typedef void (*steps_fn)(void *subject, uint64_t first, unsigned count);

/* One of the targets, checked against what a run measured. */
struct target {
        const char *what;
        double value, limit;
        bool at_most; /* value <= limit, else value >= limit */
};

/* Says what failed (with strerror(-r) when r is an errno value, else "failed") and exits 1. */
_Noreturn void die(const char *what, int r);
/*
 * Command-line options, strict alike in every benchmark: usage is the benchmark's usage line.
 * bad_arg says "PROG: OPTION 'VALUE': expected WANT", then usage, and returns 2 (the exit status of
 * a usage error); the parsers say so through bad_arg and return false, and change *ret only when
 * they return true.
 */
int bad_arg(const char *usage, const char *option, const char *value, const char *want);
/* A whole decimal number in [min, max], or false (saying nothing). */
bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
/* --seconds S: a number from min (above 0) to max. */
bool bench_arg_seconds(const char *usage, const char *value, double min, double max, double *ret);
/* --cpu N: a CPU this process may run on (sched_getaffinity); the message lists those. */
bool bench_arg_cpu(const char *usage, const char *value, int *ret);
/* The first CPU after cpu (-1: the first of all), wrapping around, that this process may run on; -1 if none but cpu. */
int bench_cpu_next(int cpu);
/* CLOCK_MONOTONIC, in seconds. */
double now(void);
/* Sorts v[0 .. n-1] (n > 0); the middle value, or the mean of the two middle ones when n is even. */
double median(double *v, int n);
/* Pins pid (0: this process) to cpu, or lets it run on every CPU when cpu < 0; 0 or -errno. */
int bench_pin(pid_t pid, int cpu);
/*
 * One trial: batches of steps until its share of min_seconds has passed (and
 * at least 3 steps ran); returns ns per step and adds the steps to *total.
 * *next is the first step to run, and moves past the ones that ran.
 */
double time_trial(steps_fn fn, void *subject, unsigned batch, uint64_t *next, uint64_t *total);

/* Writes the first and last of size bytes at p, so that a mapping's first and last page are faulted in. */
void bench_touch(volatile char *p, uint64_t size);
/*
 * A region made by hand, the baseline of the region benchmarks: sizes fd (a memfd or shm object;
 * < 0, its creation failed) to size, maps it, touches it, unmaps it and closes it; 0, or -1 with
 * errno set.
 */
int bench_map_cycle(int fd, uint64_t size);

#endif
