/* SPDX-License-Identifier: MIT */
#include "harness.h"

#include "checks.h"
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "w");
        cr_assert(f, "cannot write %s", path);
        fputs(text, f);
        fclose(f);
}

const char *slurp(const char *path) {
        static char buf[16384];
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

        buf[n] = '\0';
        if (f)
                fclose(f);
        return buf;
}

static long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool daemon_notified(struct daemon *d, const char *what, int timeout_ms) {
        long end = now_ms() + timeout_ms;
        char buf[4096];

        for (;;) {
                long left = end - now_ms();
                struct pollfd p = {.fd = d->notify_fd, .events = POLLIN};
                if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                        return false;
                ssize_t n = recv(d->notify_fd, buf, sizeof(buf) - 1, 0);
                if (n <= 0)
                        continue;
                buf[n] = '\0';
                if (strstr(buf, what))
                        return true;
        }
}

const char *daemon_path(void) {
        const char *env = getenv("ALLOCD_PATH");

        return env && *env ? env : ALLOCD_PATH;
}

int daemon_spawn(struct daemon *d, const char *config, char *const extra_env[], const char *stderr_file) {
        return daemon_spawn_opts(d, config, &(struct daemon_opts){.env = extra_env, .stderr_file = stderr_file});
}

int daemon_spawn_opts(struct daemon *d, const char *config, const struct daemon_opts *o) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        memset(d, 0, sizeof(*d));
        strcpy(d->dir, "/tmp/allocd-test-XXXXXX");
        cr_assert(mkdtemp(d->dir));
        chmod(d->dir, 0755); /* tests connect as other uids too */
        snprintf(d->sock, sizeof(d->sock), "%s/allocd.sock", d->dir);
        snprintf(d->conf, sizeof(d->conf), "%s/allocd.conf", d->dir);
        snprintf(d->notify, sizeof(d->notify), "%s/notify", d->dir);
        d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        strcpy(sa.sun_path, d->notify);
        cr_assert(bind(d->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        if (config)
                write_file(d->conf, config);
        /* allocd makes its socket in the directory and sends to the notify socket. */
        if (o && o->uid)
                cr_assert(chown(d->dir, o->uid, o->uid) == 0 && chown(d->notify, o->uid, o->uid) == 0,
                          "chown: %s (running allocd as another uid needs root)", strerror(errno));

        return daemon_respawn(d, o);
}

static pid_t forked_by; /* the process that called test_fork last */

bool die_with_test(void) {
        /* The test may have died before the call: then nothing would kill us.  (The first process of a pid
         * namespace the test made sees its parent as pid 0.) */
        return prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() == (getpid() == 1 ? 0 : forked_by);
}

pid_t test_fork(void) {
        forked_by = getpid();
        pid_t pid = fork();
        if (pid == 0 && !die_with_test())
                _exit(126);
        return pid;
}

int daemon_respawn(struct daemon *d, const struct daemon_opts *o) {
        static const struct daemon_opts none;
        bool config = access(d->conf, F_OK) == 0; /* daemon_spawn_opts wrote it if it was given one */

        if (!o)
                o = &none;
        d->pid = test_fork();
        cr_assert(d->pid >= 0);
        if (d->pid == 0) {
                char env[200];
                snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", d->notify);
                putenv(env);
                for (int i = 0; o->env && o->env[i]; i++)
                        putenv(o->env[i]);
                if (o->stderr_file) {
                        int fd = open(o->stderr_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                        dup2(fd, 2);
                }
                if (o->nofile && setrlimit(RLIMIT_NOFILE, &(struct rlimit){o->nofile, o->nofile}) < 0)
                        _exit(126);
                /* From root to another uid: the capabilities go too (no SECBIT_KEEP_CAPS), and the death signal. */
                if (o->uid && (setgroups(0, NULL) < 0 || setgid(o->uid) < 0 || setuid(o->uid) < 0 || !die_with_test()))
                        _exit(126);
                if (config)
                        execl(daemon_path(), "allocd", "--socket", d->sock, "--config", d->conf, (char *)NULL);
                else
                        /* --no-config: never a file this machine may have at allocd's default path. */
                        execl(daemon_path(), "allocd", "--socket", d->sock, "--no-config", (char *)NULL);
                _exit(127);
        }
        long end = now_ms() + 20000;
        while (now_ms() < end) {
                int status;
                if (daemon_notified(d, "READY=1", 100))
                        return -1;
                if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
                        d->pid = 0;
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                }
        }
        cr_assert_fail("allocd did not become ready within 20 s");
        return -1;
}

unsigned long long daemon_rss(const struct daemon *d) {
        char path[64], line[256];
        unsigned long long kb = 0;
        bool found = false;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
        FILE *f = fopen(path, "r");
        cr_assert(f, "cannot read %s", path);
        while (!found && fgets(line, sizeof(line), f))
                found = sscanf(line, "VmRSS: %llu kB", &kb) == 1;
        fclose(f);
        cr_assert(found, "no VmRSS in %s", path);
        return kb << 10;
}

/*
 * /proc/PID/stat from the field after the command name (the state), which may itself hold spaces and
 * parentheses; NULL when the process is gone.
 */
static const char *proc_stat_fields(pid_t pid, char *buf, size_t size) {
        char path[64];
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        n = fread(buf, 1, size - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p + 2 : NULL;
}

double daemon_cpu_seconds(const struct daemon *d) {
        char buf[1024];
        unsigned long long utime, stime;
        const char *p = proc_stat_fields(d->pid, buf, sizeof(buf));

        /* Fields 14 and 15: user and system time. */
        cr_assert(p && sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) == 2,
                  "cannot parse /proc/%d/stat: %s", (int)d->pid, buf);
        return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

void daemon_start(struct daemon *d, const char *config) {
        int r = daemon_spawn(d, config, NULL, NULL);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1", r);
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void)st;
        (void)ftw;
        (type == FTW_DP ? rmdir : unlink)(path);
        return 0;
}

void daemon_stop(struct daemon *d) {
        int status;

        if (d->pid > 0) {
                kill(d->pid, SIGTERM);
                cr_expect(daemon_notified(d, "STOPPING=1", 10000), "no STOPPING=1");
                cr_assert_eq(waitpid(d->pid, &status, 0), d->pid);
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "allocd did not exit cleanly: %#x", status);
        }
        close(d->notify_fd);
        /* The whole scratch directory: tests put helpers' copies (run as other uids) and outputs there too. */
        nftw(d->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

struct alloc_client *daemon_connect(struct daemon *d) {
        struct alloc_client *c;
        int r = alloc_connect(&c, d->sock, "test");
        cr_assert_eq(r, 0, "alloc_connect: %s", alloc_last_error());
        return c;
}

int daemon_raw_connect(const struct daemon *d) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        cr_assert(fd >= 0, "socket: %s", strerror(errno));
        cr_assert_lt(strlen(d->sock), sizeof(sa.sun_path));
        memcpy(sa.sun_path, d->sock, strlen(d->sock) + 1);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", d->sock, strerror(errno));
        return fd;
}

const struct alloc_pool_status *pool_status(const struct alloc_status *s, const char *pool) {
        for (size_t i = 0; i < s->npools; i++)
                if (!strcmp(s->pools[i].name, pool))
                        return &s->pools[i];
        cr_assert_fail("no pool %s in status", pool);
        return NULL;
}

unsigned long long pool_used(struct alloc_client *c, const char *pool) {
        struct alloc_status *s;
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        unsigned long long v = pool_status(s, pool)->used;
        alloc_status_free(s);
        return v;
}

unsigned long long pool_waiters(struct alloc_client *c, const char *pool) {
        struct alloc_status *s;
        unsigned long long v = 0;

        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        if (pool)
                v = pool_status(s, pool)->waiters;
        else /* an Attach waits for a name, in no pool: each connection counts its own */
                for (size_t i = 0; i < s->nclients; i++)
                        v += s->clients[i].waiters;
        alloc_status_free(s);
        return v;
}

static unsigned long long wait_for(unsigned long long (*get)(struct alloc_client *, const char *),
                                   struct alloc_client *c, const char *pool, unsigned long long want) {
        long end = now_ms() + 10000;
        unsigned long long v;

        while ((v = get(c, pool)) != want && now_ms() < end)
                usleep(2000);
        return v;
}

unsigned long long wait_used(struct alloc_client *c, const char *pool, unsigned long long want) {
        return wait_for(pool_used, c, pool, want);
}

unsigned long long wait_waiters(struct alloc_client *c, const char *pool, unsigned long long want) {
        return wait_for(pool_waiters, c, pool, want);
}

void freeze(pid_t pid) {
        char stat[512];
        long end = now_ms() + 10000;

        cr_assert_eq(kill(pid, SIGSTOP), 0);
        for (;;) {
                const char *state = proc_stat_fields(pid, stat, sizeof(stat));
                if (state && (*state == 'T' || *state == 't'))
                        return;
                cr_assert_lt(now_ms(), end, "pid %d did not stop within 10 s of SIGSTOP: %s", (int)pid,
                             state ? stat : "gone");
                usleep(1000);
        }
}

/* allocd --check-config on text written as DIR/allocd.conf; its exit status, and its output in out. */
int check_config(const char *text, char *out, size_t size) {
        char dir[] = "/tmp/allocd-check-XXXXXX", conf[64], log[64];
        int status;

        cr_assert(mkdtemp(dir));
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        snprintf(log, sizeof(log), "%s/log", dir);
        write_file(conf, text);
        pid_t pid = test_fork();
        if (pid == 0) {
                freopen(log, "w", stdout);
                freopen(log, "a", stderr);
                execl(daemon_path(), "allocd", "--check-config", "--config", conf, (char *)NULL);
                _exit(127);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        snprintf(out, size, "%s", slurp(log));
        unlink(log);
        unlink(conf);
        rmdir(dir);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
