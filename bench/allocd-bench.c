/* SPDX-License-Identifier: MIT */
/*
 * allocd-bench: what a round trip through allocd costs, against the floor any
 * SOCK_SEQPACKET daemon has, a bare echo server measured in the same run.
 *
 *   latency     one client: alloc+free pairs through liballoc-client (two
 *               round trips each: the free answered, ALLOCD_QUIET=0) against
 *               echo round trips of a 64-byte packet,
 *               both with client and server pinned to one CPU, then unpinned
 *   throughput  1, 4 and 16 client processes, unpinned, each looping for the
 *               measurement time; requests per second summed
 *
 * The echo server is event-driven like allocd (epoll over non-blocking
 * sockets), and neither it, allocd nor their clients spin (spin = 0,
 * ALLOCD_SPIN=0), so the ratio is the cost of allocd's work, not of its
 * structure.
 *
 * These VMs change speed within tens of milliseconds (echo round trips
 * averaged over 60 ms range from 4.7 to 7.1 us from one 60 ms to the next),
 * so latency is measured in slices: one client holds both connections and
 * alternates a SLICE-request burst to allocd with one of echoes, and the
 * figure is the median over the slices of each burst pair's ratio, both
 * halves of which ran under the same conditions.  Throughput needs separate
 * processes: there each figure is the median of TRIALS trials, allocd and
 * echo interleaved.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <alloc/client.h>
#include <json-c/json.h>

#include "bench-allocd.h"
#include "bench-util.h"

#define TRIALS 5
#define SLICE 128 /* requests per latency burst: about 1 ms */
#define ECHO_BYTES 64

enum server { ALLOCD, ECHO };

static double seconds = 0.5;
static char dir[64];

/* Pins this process to cpu; cpu < 0: leaves it where it is. */
static void pin(int cpu) {
        int r;
        if (cpu >= 0 && (r = bench_pin(0, cpu)) < 0)
                die("sched_setaffinity", r);
}

static void sock_path(char *buf, size_t n, enum server s, int cpu) {
        snprintf(buf, n, "%s/%s%d.sock", dir, s == ALLOCD ? "allocd" : "echo", cpu + 1);
}

static void echo_serve(int lfd) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[64];
        char buf[4096];

        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        for (;;) {
                int n = epoll_wait(ep, evs, 64, -1);
                for (int i = 0; i < n; i++) {
                        int fd = evs[i].data.fd;
                        if (fd == lfd) {
                                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                                if (c >= 0) {
                                        ev = (struct epoll_event){.events = EPOLLIN, .data.fd = c};
                                        epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                                }
                                continue;
                        }
                        for (;;) {
                                ssize_t k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                                if (k > 0) {
                                        send(fd, buf, (size_t)k, MSG_NOSIGNAL | MSG_DONTWAIT);
                                        continue;
                                }
                                if (k == 0 || errno != EAGAIN)
                                        close(fd);
                                break;
                        }
                }
        }
}

static pid_t start_server(enum server s, int cpu) {
        char path[128], conf[128];
        sock_path(path, sizeof(path), s, cpu);
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        if (s == ALLOCD) {
                const char *what;
                pid_t pid = bench_allocd_spawn(ALLOCD_PATH, conf, path, cpu, &what);
                if (pid < 0)
                        die(what, -errno);
                return pid;
        }
        pid_t parent = getpid(), pid = fork();
        if (pid < 0)
                die("fork", -errno);
        if (pid == 0) {
                /* It goes with the benchmark, however that ends. */
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(1);
                pin(cpu);
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                strcpy(sa.sun_path, path);
                if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0)
                        die("echo server", -errno);
                echo_serve(lfd);
                _exit(0);
        }
        /* Ready when it answers. */
        for (int i = 0; i < 2000; i++) {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                strcpy(sa.sun_path, path);
                int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                bool up = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
                close(fd);
                if (up)
                        return pid;
                usleep(5000);
        }
        die("starting the echo server", 0);
}

static void allocd_burst(struct alloc_client *c, int requests) {
        struct alloc_region r;
        int e;

        for (int i = 0; i < requests; i += 2)
                if ((e = alloc_region_new(c, "bench", 4096, NULL, &r)) < 0 || (e = alloc_region_free(c, r.id)) < 0)
                        die(alloc_last_error(), e);
}

static void echo_burst(int fd, int requests) {
        char buf[ECHO_BYTES] = {1};

        for (int i = 0; i < requests; i++)
                if (send(fd, buf, sizeof(buf), 0) != sizeof(buf) || recv(fd, buf, sizeof(buf), 0) <= 0)
                        die("echo", -errno);
}

static struct alloc_client *allocd_open(const char *path) {
        struct alloc_client *c;
        int e = alloc_connect(&c, path, "bench");

        if (e < 0)
                die(alloc_last_error(), e);
        return c;
}

static int echo_open(const char *path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        strcpy(sa.sun_path, path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                die("connect echo", -errno);
        return fd;
}

/* One client's loop until deadline; returns round trips done. */
static uint64_t run_client(enum server s, const char *path, double deadline) {
        struct alloc_client *c = s == ALLOCD ? allocd_open(path) : NULL;
        int fd = s == ECHO ? echo_open(path) : -1;
        uint64_t n = 0;

        for (; now() < deadline; n += SLICE) {
                if (c)
                        allocd_burst(c, SLICE);
                else
                        echo_burst(fd, SLICE);
        }
        alloc_disconnect(c);
        if (fd >= 0)
                close(fd);
        return n;
}

/*
 * Latency on cpu (-1: unpinned): ns per request of allocd and of the echo
 * server (each the median over the slices), and the median of the slices'
 * ratios.  The order inside a pair alternates, so neither side always runs
 * first after the other.
 */
static void latency(int cpu, double *allocd_ns, double *echo_ns, double *ratio) {
        char apath[128], epath[128];
        size_t max = 200000, n = 0;
        double *a = calloc(max, sizeof(*a)), *e = calloc(max, sizeof(*e)), *r = calloc(max, sizeof(*r));

        if (!a || !e || !r)
                die("calloc", -errno);
        sock_path(apath, sizeof(apath), ALLOCD, cpu);
        sock_path(epath, sizeof(epath), ECHO, cpu);
        pin(cpu);
        struct alloc_client *c = allocd_open(apath);
        int fd = echo_open(epath);
        allocd_burst(c, 8 * SLICE); /* warm: pool mapping, caches */
        echo_burst(fd, 8 * SLICE);
        for (double deadline = now() + TRIALS * seconds; n < max && now() < deadline; n++) {
                for (int k = 0; k < 2; k++) {
                        double t0 = now();
                        if ((k + n) % 2 == 0) {
                                allocd_burst(c, SLICE);
                                a[n] = (now() - t0) * 1e9 / SLICE;
                        } else {
                                echo_burst(fd, SLICE);
                                e[n] = (now() - t0) * 1e9 / SLICE;
                        }
                }
                r[n] = a[n] / e[n];
        }
        alloc_disconnect(c);
        close(fd);
        bench_pin(0, -1); /* every CPU */
        *allocd_ns = median(a, (int)n);
        *echo_ns = median(e, (int)n);
        *ratio = median(r, (int)n);
        free(a);
        free(e);
        free(r);
}

/* Round trips per second of nclients processes. */
static double measure(enum server s, int nclients) {
        char path[128];
        sock_path(path, sizeof(path), s, -1);
        int go[2], done[2];
        if (pipe(go) < 0 || pipe(done) < 0)
                die("pipe", -errno);
        pid_t kids[64];
        for (int i = 0; i < nclients; i++) {
                if ((kids[i] = fork()) == 0) {
                        char x;
                        close(go[1]);
                        if (read(go[0], &x, 1) != 1)
                                _exit(1);
                        uint64_t n = run_client(s, path, now() + seconds);
                        if (write(done[1], &n, sizeof(n)) != sizeof(n))
                                _exit(1);
                        _exit(0);
                }
        }
        close(go[0]);
        close(done[1]);
        usleep(20000); /* every child is started and blocked on the pipe */
        double t0 = now();
        char start[64] = {0};
        /* The bound is known to the caller, not to gcc's -Wstringop-overflow once now() is not inlined. */
        if (nclients < 1 || nclients > (int)sizeof(start) || write(go[1], start, (size_t)nclients) != nclients)
                die("start", -errno);
        uint64_t total = 0, n;
        for (int i = 0; i < nclients; i++) {
                if (read(done[0], &n, sizeof(n)) != sizeof(n))
                        die("a client failed", -errno);
                total += n;
        }
        double rate = total / (now() - t0);
        close(go[1]);
        close(done[0]);
        for (int i = 0; i < nclients; i++)
                waitpid(kids[i], NULL, 0);
        return rate;
}

/* Median of TRIALS interleaved trials: rates of allocd and echo. */
static void throughput(int nclients, double *allocd, double *echo) {
        double a[TRIALS], e[TRIALS];
        for (int t = 0; t < TRIALS; t++) {
                a[t] = measure(ALLOCD, nclients);
                e[t] = measure(ECHO, nclients);
        }
        *allocd = median(a, TRIALS);
        *echo = median(e, TRIALS);
}

#define USAGE "usage: allocd-bench [--json] [--seconds S] [--cpu N]"

int main(int argc, char **argv) {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"cpu", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
        bool json = false;
        int cpu = 0, o;

        while ((o = getopt_long(argc, argv, "js:c:h", opts, NULL)) != -1) {
                switch (o) {
                case 'j':
                        json = true;
                        break;
                case 's':
                        if (!bench_arg_seconds(USAGE, optarg, 0.05, 60, &seconds))
                                return 2;
                        break;
                case 'c':
                        if (!bench_arg_cpu(USAGE, optarg, &cpu))
                                return 2;
                        break;
                default:
                        fprintf(o == 'h' ? stdout : stderr, "%s\n", USAGE);
                        return o == 'h' ? 0 : 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        /*
         * Both sides as the echo server and its client are: every free answered, so that each request
         * is a round trip (a quiet free is a send alone: docs/protocol.md, "Quiet frees"), and no
         * spinning, so that neither side stays awake while the other sleeps (staying awake is
         * region-bench's "no spin" column; here it would make the ratio measure the wake-ups of
         * the echo side's sleeping vCPUs, up to 70 us a round trip unpinned on an idle VM).
         */
        setenv("ALLOCD_QUIET", "0", 1);
        setenv("ALLOCD_SPIN", "0", 1);
        strcpy(dir, "/tmp/allocd-bench-XXXXXX");
        if (!bench_mkdtemp(dir))
                die("mkdtemp", -errno);
        char conf[128];
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        FILE *f = fopen(conf, "we");
        if (!f || fputs("[daemon]\nspin = 0\n[pool bench]\nkind = host\nsize = 64M\n", f) < 0 || fclose(f) != 0)
                die(conf, -errno);

        pid_t servers[4] = {start_server(ALLOCD, cpu), start_server(ECHO, cpu), start_server(ALLOCD, -1),
                            start_server(ECHO, -1)};
        struct {
                const char *what;
                int cpu, clients;
                double allocd, echo, ratio; /* latency: ns per request; throughput: per second */
        } rows[] = {
                {.what = "round trip, pinned to one CPU", .cpu = cpu, .clients = 0},
                {.what = "round trip, unpinned", .cpu = -1, .clients = 0},
                {.what = "throughput, 1 client", .cpu = -1, .clients = 1},
                {.what = "throughput, 4 clients", .cpu = -1, .clients = 4},
                {.what = "throughput, 16 clients", .cpu = -1, .clients = 16},
        };
        size_t nrows = sizeof(rows) / sizeof(rows[0]);
        for (size_t i = 0; i < nrows; i++) {
                if (rows[i].clients == 0)
                        latency(rows[i].cpu, &rows[i].allocd, &rows[i].echo, &rows[i].ratio);
                else
                        throughput(rows[i].clients, &rows[i].allocd, &rows[i].echo);
        }
        for (int i = 0; i < 4; i++) {
                kill(servers[i], SIGTERM);
                waitpid(servers[i], NULL, 0);
        }
        unlink(conf);
        char p[128];
        for (int s = 0; s < 2; s++)
                for (int k = -1; k <= cpu; k += cpu + 1) {
                        sock_path(p, sizeof(p), (enum server)s, k);
                        unlink(p);
                }
        rmdir(dir);

        json_object *root = json_object_new_object(), *arr = json_object_new_array();
        if (!json)
                printf("allocd-bench: allocd request = one alloc or one free; latency: %.2f s of %d-request slices, "
                       "allocd and echo alternating, medians; throughput: median of %d trials x %.2f s\n\n"
                       "%-32s %14s %14s %8s %s\n",
                       TRIALS * seconds, SLICE, TRIALS, seconds, "", "allocd", "echo", "ratio", "target");
        bool all = true;
        for (size_t i = 0; i < nrows; i++) {
                bool lat = rows[i].clients == 0;
                /* latency: the median of the slices' ratios (lower is better); throughput: allocd/echo. */
                double a = rows[i].allocd, e = rows[i].echo;
                double ratio = lat ? rows[i].ratio : a / e;
                bool met = lat ? ratio <= 1.3 : ratio >= 0.7;
                all &= met;
                if (!json)
                        printf("%-32s %11.0f %s %11.0f %s %8.2f %s %s\n", rows[i].what, a, lat ? "ns " : "/s ", e,
                               lat ? "ns " : "/s ", ratio, lat ? "<= 1.30" : ">= 0.70", met ? "met" : "MISSED");
                json_object *o2 = json_object_new_object();
                json_object_object_add(o2, "what", json_object_new_string(rows[i].what));
                json_object_object_add(o2, "cpu", json_object_new_int(rows[i].cpu));
                json_object_object_add(o2, "clients", json_object_new_int(rows[i].clients));
                json_object_object_add(o2, lat ? "allocd_ns" : "allocd_per_s", json_object_new_double(a));
                json_object_object_add(o2, lat ? "echo_ns" : "echo_per_s", json_object_new_double(e));
                json_object_object_add(o2, "ratio", json_object_new_double(ratio));
                json_object_object_add(o2, "target_met", json_object_new_boolean(met));
                json_object_array_add(arr, o2);
        }
        json_object_object_add(root, "results", arr);
        json_object_object_add(root, "all_targets_met", json_object_new_boolean(all));
        if (json)
                puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
        json_object_put(root);
        return 0;
}
