/* SPDX-License-Identifier: MIT */
#include "bench-util.h"

#include <errno.h>
#include <math.h>
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

int bad_arg(const char *usage, const char *option, const char *value, const char *want) {
        fprintf(stderr, "%s: %s '%s': expected %s\n%s\n", program_invocation_short_name, option, value, want, usage);
        return 2;
}

bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || v < min || v > max)
                return false;
        *ret = v;
        return true;
}

bool bench_arg_seconds(const char *usage, const char *value, double min, double max, double *ret) {
        char want[80];
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v) || v < min || v > max || !(v > 0)) {
                snprintf(want, sizeof(want), "a number of seconds from %g to %g", min, max);
                bad_arg(usage, "--seconds", value, want);
                return false;
        }
        *ret = v;
        return true;
}

static int allowed_cpus(cpu_set_t *set) {
        CPU_ZERO(set);
        return sched_getaffinity(0, sizeof(*set), set) < 0 ? -errno : 0;
}

bool bench_arg_cpu(const char *usage, const char *value, int *ret) {
        cpu_set_t set;
        uint64_t cpu;
        char want[512] = "a CPU this process may run on: ";
        size_t n = strlen(want);
        const char *sep = "";

        if (allowed_cpus(&set) < 0) {
                snprintf(want, sizeof(want), "a CPU number, but which CPUs are allowed is unknown: %s",
                         strerror(errno));
                bad_arg(usage, "--cpu", value, want);
                return false;
        }
        if (parse_u64(value, 0, CPU_SETSIZE - 1, &cpu) && CPU_ISSET(cpu, &set)) {
                *ret = (int)cpu;
                return true;
        }
        /* The allowed CPUs as ranges, "0-3,8". */
        for (int i = 0; i < CPU_SETSIZE && n < sizeof(want) - 24; i++) {
                if (!CPU_ISSET(i, &set) || (i > 0 && CPU_ISSET(i - 1, &set)))
                        continue;
                int j = i;
                while (j + 1 < CPU_SETSIZE && CPU_ISSET(j + 1, &set))
                        j++;
                n += snprintf(want + n, sizeof(want) - n, j > i ? "%s%d-%d" : "%s%d", sep, i, j);
                sep = ",";
        }
        bad_arg(usage, "--cpu", value, want);
        return false;
}

int bench_cpu_next(int cpu) {
        cpu_set_t set;

        if (allowed_cpus(&set) < 0)
                return -1;
        for (int k = 1; k <= CPU_SETSIZE; k++) {
                int i = (cpu + k + CPU_SETSIZE) % CPU_SETSIZE;
                if (i != cpu && CPU_ISSET(i, &set))
                        return i;
        }
        return -1;
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
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
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
