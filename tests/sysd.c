/* SPDX-License-Identifier: MIT */
/*
 * systemd's part in a restart (sysd.h).  What it copies of systemd 252: the store keeps fds in the
 * order they were stored, a name may be stored more than once (FDSTOREREMOVE removes them all),
 * fds past FileDescriptorStoreMax= are dropped without a word, and the next start gets the socket
 * first, then the store.  The notify socket is read by a thread because allocd blocks on a full
 * one, as it would with a real systemd that stopped reading.
 */
#include "sysd.h"

#include "checks.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void store_remove(struct sysd *s, const char *name) {
        for (size_t i = 0; i < s->nstore;) {
                if (strcmp(s->store[i].name, name)) {
                        i++;
                        continue;
                }
                close(s->store[i].fd);
                memmove(&s->store[i], &s->store[i + 1], (s->nstore - i - 1) * sizeof(s->store[0]));
                s->nstore--;
        }
}

/* One datagram, as PID 1 reads it; false when there was none. */
static bool read_one(struct sysd *s, int flags) {
        char buf[4096], ctl[CMSG_SPACE(16 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
        struct iovec iov = {buf, sizeof(buf) - 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
        int fds[16], nfds = 0;
        ssize_t n = recvmsg(s->d.notify_fd, &mh, flags | MSG_CMSG_CLOEXEC);

        if (n < 0)
                return false;
        buf[n] = '\0';
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) && nfds < 16; i++)
                                memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        const char *fn = strstr(buf, "FDNAME=");
        char name[256] = "stored";
        if (fn)
                sscanf(fn + 7, "%255[^\n]", name);
        pthread_mutex_lock(&s->mu);
        if (strstr(buf, "READY=1"))
                s->ready++;
        if (strstr(buf, "STOPPING=1"))
                s->stopping++;
        if (strstr(buf, "FDSTOREREMOVE=1"))
                store_remove(s, name);
        for (int i = 0; i < nfds; i++) {
                if (strstr(buf, "FDSTORE=1") && s->nstore < SYSD_STORE_MAX) {
                        snprintf(s->store[s->nstore].name, sizeof(s->store[0].name), "%s", name);
                        s->store[s->nstore++].fd = fds[i];
                } else {
                        s->dropped += !!strstr(buf, "FDSTORE=1");
                        close(fds[i]);
                }
        }
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return true;
}

static void *reader(void *arg) {
        struct sysd *s = arg;

        while (!s->quit) {
                struct pollfd p = {.fd = s->d.notify_fd, .events = POLLIN};
                if (poll(&p, 1, 50) > 0)
                        read_one(s, MSG_DONTWAIT);
        }
        return NULL;
}

static void reader_stop(struct sysd *s) {
        if (!s->reading)
                return;
        s->quit = true;
        pthread_join(s->reader, NULL);
        s->reading = false;
        while (read_one(s, MSG_DONTWAIT))
                ;
}

static long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sysd_start(struct sysd *s, const char *config) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        memset(s, 0, sizeof(*s));
        strcpy(s->d.dir, "/tmp/allocd-test-XXXXXX");
        cr_assert(mkdtemp(s->d.dir));
        chmod(s->d.dir, 0755);
        snprintf(s->d.sock, sizeof(s->d.sock), "%s/allocd.sock", s->d.dir);
        snprintf(s->d.conf, sizeof(s->d.conf), "%s/allocd.conf", s->d.dir);
        snprintf(s->d.notify, sizeof(s->d.notify), "%s/notify", s->d.dir);
        snprintf(s->log, sizeof(s->log), "%s/allocd.log", s->d.dir);
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        s->d.notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        strcpy(sa.sun_path, s->d.notify);
        cr_assert(bind(s->d.notify_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        setsockopt(s->d.notify_fd, SOL_SOCKET, SO_PASSCRED, &(int){1}, sizeof(int));
        s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        strcpy(sa.sun_path, s->d.sock);
        cr_assert(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        chmod(s->d.sock, 0666);
        cr_assert(listen(s->listen_fd, 128) == 0);
        write_file(s->d.conf, config);
        int r = sysd_spawn(s);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1: %s", r, sysd_log(s));
}

int sysd_spawn(struct sysd *s) {
        char names[SYSD_STORE_MAX * 260 + 32] = "allocd.socket", nfds[32], fdstore[] = "FDSTORE=64", notify[160];
        int n = (int)s->nstore + 1, high[SYSD_STORE_MAX + 1];
        unsigned ready = s->ready;

        for (size_t i = 0; i < s->nstore; i++)
                snprintf(names + strlen(names), sizeof(names) - strlen(names), ":%s", s->store[i].name);
        snprintf(nfds, sizeof(nfds), "LISTEN_FDS=%d", n);
        snprintf(notify, sizeof(notify), "NOTIFY_SOCKET=%s", s->d.notify);
        s->d.pid = fork();
        cr_assert(s->d.pid >= 0);
        if (s->d.pid == 0) {
                char pid[32], fdnames[sizeof(names) + 16];
                /* Above every fd that is to be passed, then down to 3.. in order, as systemd hands them. */
                for (int i = 0; i < n; i++)
                        high[i] = fcntl(i ? s->store[i - 1].fd : s->listen_fd, F_DUPFD_CLOEXEC, 3 + n + 100);
                for (int i = 0; i < n; i++)
                        if (high[i] < 0 || dup2(high[i], 3 + i) < 0)
                                _exit(125);
                snprintf(pid, sizeof(pid), "LISTEN_PID=%d", (int)getpid());
                snprintf(fdnames, sizeof(fdnames), "LISTEN_FDNAMES=%s", names);
                putenv(pid);
                putenv(nfds);
                putenv(fdnames);
                putenv(fdstore);
                putenv(notify);
                if (s->fsize) {
                        signal(SIGXFSZ, SIG_IGN);
                        setrlimit(RLIMIT_FSIZE, &(struct rlimit){(rlim_t)s->fsize, (rlim_t)s->fsize});
                }
                /* A test that fails leaves no allocd behind. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                dup2(fd, 2);
                /* Last: the dups above need fds past 100, and the test's own fds (closed at exec) may be many. */
                if (s->nofile)
                        setrlimit(RLIMIT_NOFILE, &(struct rlimit){(rlim_t)s->nofile, (rlim_t)s->nofile});
                execl(daemon_path(), "allocd", "--config", s->d.conf, (char *)NULL);
                _exit(127);
        }
        s->quit = false;
        cr_assert_eq(pthread_create(&s->reader, NULL, reader, s), 0);
        s->reading = true;
        long end = now_ms() + 20000;
        for (;;) {
                int status;
                pthread_mutex_lock(&s->mu);
                bool up = s->ready > ready;
                if (!up) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += 100000000;
                        ts.tv_sec += ts.tv_nsec / 1000000000;
                        ts.tv_nsec %= 1000000000;
                        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
                        up = s->ready > ready;
                }
                pthread_mutex_unlock(&s->mu);
                if (up)
                        return -1;
                if (waitpid(s->d.pid, &status, WNOHANG) == s->d.pid) {
                        s->d.pid = 0;
                        reader_stop(s);
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                }
                cr_assert(now_ms() < end, "allocd did not become ready within 20 s: %s", sysd_log(s));
        }
}

void sysd_kill(struct sysd *s, int sig) {
        int status;

        if (s->d.pid <= 0)
                return;
        kill(s->d.pid, sig);
        cr_assert_eq(waitpid(s->d.pid, &status, 0), s->d.pid);
        clock_gettime(CLOCK_MONOTONIC, &s->reaped);
        if (sig == SIGTERM)
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "allocd did not exit cleanly: %#x: %s", status,
                          sysd_log(s));
        s->d.pid = 0;
        reader_stop(s);
        if (sig == SIGTERM)
                cr_expect(s->stopping > 0, "no STOPPING=1");
}

void sysd_restart(struct sysd *s, int sig) {
        sysd_kill(s, sig);
        int r = sysd_spawn(s);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1: %s", r, sysd_log(s));
}

int sysd_fd(struct sysd *s, const char *name) {
        int fd = -1;

        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->nstore; i++)
                if (!strcmp(s->store[i].name, name))
                        fd = s->store[i].fd;
        pthread_mutex_unlock(&s->mu);
        return fd;
}

size_t sysd_count(struct sysd *s, const char *prefix) {
        size_t n = 0;

        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->nstore; i++)
                n += !strncmp(s->store[i].name, prefix, strlen(prefix));
        pthread_mutex_unlock(&s->mu);
        return n;
}

void sysd_put(struct sysd *s, const char *name, int fd) {
        pthread_mutex_lock(&s->mu);
        cr_assert_lt(s->nstore, SYSD_STORE_MAX);
        snprintf(s->store[s->nstore].name, sizeof(s->store[0].name), "%s", name);
        s->store[s->nstore++].fd = fd;
        pthread_mutex_unlock(&s->mu);
}

void sysd_drop(struct sysd *s, const char *name) {
        pthread_mutex_lock(&s->mu);
        store_remove(s, name);
        pthread_mutex_unlock(&s->mu);
}

void sysd_damage_state(struct sysd *s, bool truncate) {
        size_t damaged = 0;

        cr_assert(!s->reading, "damage the store while allocd is stopped");
        for (size_t i = 0; i < s->nstore; i++) {
                struct stat st;
                if (strncmp(s->store[i].name, "state.", 6))
                        continue;
                cr_assert(fstat(s->store[i].fd, &st) == 0 && st.st_size > 64);
                char *b = malloc((size_t)st.st_size);
                cr_assert(pread(s->store[i].fd, b, (size_t)st.st_size, 0) == st.st_size);
                /* The snapshot (the header says how long: state.c), not the log after it: a log cut
                 * short or damaged at its end is a torn tail, which the reader drops and says so. */
                uint32_t hlen;
                uint64_t body;
                memcpy(&hlen, b + 12, sizeof(hlen));
                memcpy(&body, b + 16, sizeof(body));
                cr_assert(hlen + body <= (uint64_t)st.st_size && body > 16);
                size_t len = truncate ? hlen + body / 2 : (size_t)st.st_size;
                if (!truncate)
                        b[hlen + body - 9] ^= 0x40; /* in the snapshot's last record before END */
                int fd = memfd_create("damaged-state", MFD_CLOEXEC);
                cr_assert(fd >= 0 && write(fd, b, len) == (ssize_t)len);
                free(b);
                close(s->store[i].fd);
                s->store[i].fd = fd;
                damaged++;
        }
        cr_assert(damaged > 0, "no state in the store");
}

const char *sysd_log(struct sysd *s) {
        return slurp(s->log);
}

void sysd_end(struct sysd *s) {
        if (!s->d.dir[0])
                return; /* never started */
        sysd_kill(s, SIGTERM);
        for (size_t i = 0; i < s->nstore; i++)
                close(s->store[i].fd);
        s->nstore = 0;
        close(s->listen_fd);
        close(s->d.notify_fd);
        unlink(s->d.notify);
        unlink(s->d.sock);
        unlink(s->d.conf);
        unlink(s->log);
        rmdir(s->d.dir);
}
