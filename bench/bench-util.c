/* SPDX-License-Identifier: MIT */
#include "bench-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

double min_seconds = 0.3;

double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void die(const char *what, int r) {
        if (r)
                fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(-r));
        else
                fprintf(stderr, "%s: %s failed\n", program_invocation_short_name, what);
        exit(1);
}

int bench_pin(pid_t pid, int cpu) {
        cpu_set_t set;

        CPU_ZERO(&set);
        for (int i = 0; i < CPU_SETSIZE; i++)
                if (cpu < 0 || i == cpu)
                        CPU_SET(i, &set);
        return sched_setaffinity(pid, sizeof(set), &set) < 0 ? -errno : 0;
}

static int cmp_double(const void *x, const void *y) {
        double a = *(const double *)x, b = *(const double *)y;
        return (a > b) - (a < b);
}

double median(double *v, int n) {
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        return v[n / 2];
}

double time_trial(steps_fn fn, void *subject, unsigned batch, uint64_t *next, uint64_t *total) {
        uint64_t n = 0;
        double t0 = now(), t;
        do {
                fn(subject, *next + n, batch);
                n += batch;
                t = now() - t0;
        } while (t < min_seconds / TRIALS || n < 3);
        *next += n;
        *total += n;
        return t * 1e9 / (double)n;
}

void bench_touch(volatile char *p, uint64_t size) {
        p[0] = 1;
        p[size - 1] = 1;
}

int bench_map_cycle(int fd, uint64_t size) {
        if (fd < 0)
                return -1;
        void *p = ftruncate(fd, (off_t)size) < 0 ? MAP_FAILED
                                                 : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
        }
        bench_touch(p, size);
        munmap(p, size);
        close(fd);
        return 0;
}
