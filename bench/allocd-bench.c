/* SPDX-License-Identifier: MIT */
/*
 * allocd-bench: what a round trip through allocd costs, against the floor any
 * SOCK_SEQPACKET daemon has, a bare echo server measured in the same run.
 *
 *   latency     one client: alloc+free pairs through liballoc-client (two
 *               round trips each) against echo round trips of a 64-byte packet,
 *               both with client and server pinned to one CPU, then unpinned
 *   throughput  1, 4 and 16 client processes, unpinned, each looping for the
 *               measurement time; requests per second summed
 *
 * The echo server is event-driven like allocd (epoll over non-blocking
 * sockets), so the ratio is the cost of allocd's work, not of its structure.
 * Each figure is the median of TRIALS trials, allocd and echo interleaved.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <alloc/client.h>
#include <json-c/json.h>

#define TRIALS 5
#define ECHO_BYTES 64

enum server { ALLOCD, ECHO };

static double seconds = 0.5;
static char dir[64];

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
        fprintf(stderr, "allocd-bench: %s: %s\n", what, errno ? strerror(errno) : "failed");
        exit(1);
}

static void pin(int cpu) {
        cpu_set_t set;
        if (cpu < 0)
                return;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) < 0)
                die("sched_setaffinity");
}

static void unpin(void) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int i = 0; i < CPU_SETSIZE; i++)
                CPU_SET(i, &set);
        sched_setaffinity(0, sizeof(set), &set);
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
        pid_t pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                pin(cpu);
                if (s == ALLOCD) {
                        execl(ALLOCD_PATH, "allocd", "--socket", path, "--config", conf, "--log-level", "warning",
                              (char *)NULL);
                        die("exec allocd");
                }
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                strcpy(sa.sun_path, path);
                if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0)
                        die("echo server");
                echo_serve(lfd);
                _exit(0);
        }
        /* Ready when it answers. */
        for (int i = 0; i < 2000; i++) {
                struct alloc_client *c;
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                strcpy(sa.sun_path, path);
                if (s == ALLOCD && alloc_connect(&c, path, "bench-probe") == 0) {
                        alloc_disconnect(c);
                        return pid;
                }
                int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                bool up = s == ECHO && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
                close(fd);
                if (up)
                        return pid;
                usleep(5000);
        }
        errno = 0;
        die(s == ALLOCD ? "allocd did not start" : "echo server did not start");
        return -1;
}

/* One client's loop until deadline; returns round trips done. */
static uint64_t run_client(enum server s, const char *path, double deadline) {
        uint64_t n = 0;

        if (s == ALLOCD) {
                struct alloc_client *c;
                struct alloc_region r;
                if (alloc_connect(&c, path, "bench") < 0)
                        die(alloc_last_error());
                while (now() < deadline) {
                        for (int i = 0; i < 64; i++) {
                                if (alloc_region_new(c, "bench", 4096, NULL, &r) < 0 ||
                                    alloc_region_free(c, r.id) < 0) {
                                        errno = 0;
                                        die(alloc_last_error());
                                }
                        }
                        n += 128;
                }
                alloc_disconnect(c);
                return n;
        }
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char buf[ECHO_BYTES] = {1};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        strcpy(sa.sun_path, path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                die("connect echo");
        while (now() < deadline) {
                for (int i = 0; i < 128; i++)
                        if (send(fd, buf, sizeof(buf), 0) != sizeof(buf) || recv(fd, buf, sizeof(buf), 0) <= 0)
                                die("echo");
                n += 128;
        }
        close(fd);
        return n;
}

/* Round trips per second of nclients processes (nclients 0: this process, pinned to cpu). */
static double measure(enum server s, int cpu, int nclients) {
        char path[128];
        sock_path(path, sizeof(path), s, cpu);
        if (nclients == 0) {
                pin(cpu);
                run_client(s, path, now() + 0.05); /* warm: connection, pool mapping, caches */
                double t0 = now();
                uint64_t n = run_client(s, path, t0 + seconds);
                double rate = n / (now() - t0);
                unpin();
                return rate;
        }
        int go[2], done[2];
        if (pipe(go) < 0 || pipe(done) < 0)
                die("pipe");
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
        if (write(go[1], start, (size_t)nclients) != nclients)
                die("start");
        uint64_t total = 0, n;
        for (int i = 0; i < nclients; i++) {
                if (read(done[0], &n, sizeof(n)) != sizeof(n))
                        die("a client failed");
                total += n;
        }
        double rate = total / (now() - t0);
        close(go[1]);
        close(done[0]);
        for (int i = 0; i < nclients; i++)
                waitpid(kids[i], NULL, 0);
        return rate;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Median of TRIALS interleaved trials: rates of allocd and echo. */
static void pair(int cpu, int nclients, double *allocd, double *echo) {
        double a[TRIALS], e[TRIALS];
        for (int t = 0; t < TRIALS; t++) {
                a[t] = measure(ALLOCD, cpu, nclients);
                e[t] = measure(ECHO, cpu, nclients);
        }
        qsort(a, TRIALS, sizeof(double), cmp);
        qsort(e, TRIALS, sizeof(double), cmp);
        *allocd = a[TRIALS / 2];
        *echo = e[TRIALS / 2];
}

int main(int argc, char **argv) {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"cpu", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
        bool json = false;
        int cpu = 0, o;
        char *end;

        while ((o = getopt_long(argc, argv, "js:c:h", opts, NULL)) != -1) {
                switch (o) {
                case 'j':
                        json = true;
                        break;
                case 's':
                        seconds = strtod(optarg, &end);
                        if (*end || !(seconds >= 0.05 && seconds <= 60)) {
                                fprintf(stderr, "allocd-bench: --seconds %s: a number from 0.05 to 60\n", optarg);
                                return 2;
                        }
                        break;
                case 'c':
                        cpu = (int)strtol(optarg, &end, 10);
                        if (*end || cpu < 0 || cpu >= CPU_SETSIZE) {
                                fprintf(stderr, "allocd-bench: --cpu %s: a CPU number\n", optarg);
                                return 2;
                        }
                        break;
                default:
                        fprintf(stderr, "usage: allocd-bench [--json] [--seconds S] [--cpu N]\n");
                        return o == 'h' ? 0 : 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        strcpy(dir, "/tmp/allocd-bench-XXXXXX");
        if (!mkdtemp(dir))
                die("mkdtemp");
        char conf[128];
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        FILE *f = fopen(conf, "w");
        fputs("[pool bench]\nkind = host\nsize = 64M\n", f);
        fclose(f);

        pid_t servers[4] = {start_server(ALLOCD, cpu), start_server(ECHO, cpu), start_server(ALLOCD, -1),
                            start_server(ECHO, -1)};
        struct {
                const char *what;
                int cpu, clients;
                double allocd, echo;
        } rows[] = {
                {.what = "round trip, pinned to one CPU", .cpu = cpu, .clients = 0},
                {.what = "round trip, unpinned", .cpu = -1, .clients = 0},
                {.what = "throughput, 1 client", .cpu = -1, .clients = 1},
                {.what = "throughput, 4 clients", .cpu = -1, .clients = 4},
                {.what = "throughput, 16 clients", .cpu = -1, .clients = 16},
        };
        size_t nrows = sizeof(rows) / sizeof(rows[0]);
        for (size_t i = 0; i < nrows; i++)
                pair(rows[i].cpu, rows[i].clients, &rows[i].allocd, &rows[i].echo);
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
                printf("allocd-bench: %d trials x %.2f s, median; allocd request = one alloc or one free\n\n"
                       "%-32s %14s %14s %8s %s\n",
                       TRIALS, seconds, "", "allocd", "echo", "ratio", "target");
        bool all = true;
        for (size_t i = 0; i < nrows; i++) {
                bool lat = rows[i].clients == 0;
                /* latency: ns per round trip, ratio allocd/echo (lower is better); throughput: ratio allocd/echo. */
                double a = lat ? 1e9 / rows[i].allocd : rows[i].allocd;
                double e = lat ? 1e9 / rows[i].echo : rows[i].echo;
                double ratio = a / e;
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
