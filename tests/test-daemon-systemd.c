/* SPDX-License-Identifier: MIT */
/*
 * allocd under systemd's protocols without systemd as PID 1: the listening
 * socket comes from systemd-socket-activate (LISTEN_FDS), and READY=1,
 * WATCHDOG=1 and STOPPING=1 arrive on a datagram socket this test bound as
 * NOTIFY_SOCKET.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static const char *activate(void) {
        static const char *paths[] = {"/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate"};
        for (size_t i = 0; i < 2; i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return NULL;
}

Test(systemd, socket_activation_and_notify, .timeout = 60) {
        const char *sa = activate();
        if (!sa)
                cr_skip_test("systemd-socket-activate is not installed (package systemd)");

        struct daemon d = {0};
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        strcpy(d.dir, "/tmp/allocd-sd-XXXXXX");
        cr_assert(mkdtemp(d.dir));
        snprintf(d.sock, sizeof(d.sock), "%s/activated.sock", d.dir);
        snprintf(d.notify, sizeof(d.notify), "%s/notify", d.dir);
        d.notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        strcpy(addr.sun_path, d.notify);
        cr_assert_eq(bind(d.notify_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);

        d.pid = test_fork();
        if (d.pid == 0) {
                char notify[200];
                snprintf(notify, sizeof(notify), "NOTIFY_SOCKET=%s", d.notify);
                /* No --socket: the listening socket must be the one systemd-socket-activate passes. */
                unsetenv("ALLOCD_SOCKET");
                setenv("XDG_RUNTIME_DIR", "/nonexistent", 1);
                execl(sa, sa, "--seqpacket", "-l", d.sock, "-E", notify, "-E", "WATCHDOG_USEC=200000", ALLOCD_PATH,
                      "--no-config", (char *)NULL);
                _exit(127);
        }
        /* systemd-socket-activate starts allocd when the first client connects, as systemd would. */
        struct alloc_client *c;
        struct alloc_region r;
        /* The file appears at bind(), before listen(): a connect in between is refused, so retry that. */
        int e = -ECONNREFUSED;
        for (int i = 0; i < 2000 && (e == -ECONNREFUSED || e == -ENOENT); i++)
                if ((e = alloc_connect(&c, d.sock, "activated")) < 0)
                        usleep(5000);
        if (e < 0)
                kill(d.pid, SIGKILL); /* else it holds the test's output open, and the run hangs */
        cr_assert_eq(e, 0, "%s", alloc_last_error());
        /* Making a large pool can take longer than TimeoutStartSec=. */
        bool extended = daemon_notified(&d, "EXTEND_TIMEOUT_USEC=91000000", 20000);
        if (!extended)
                kill(d.pid, SIGKILL); /* as above */
        cr_assert(extended, "no EXTEND_TIMEOUT_USEC= before the pools are made");
        cr_assert(daemon_notified(&d, "READY=1", 20000), "no READY=1 on NOTIFY_SOCKET");
        cr_assert_eq(alloc_region_new(c, "host", 1 << 20, NULL, &r), 0, "%s", alloc_last_error());
        memset(r.ptr, 1, r.size);
        cr_assert(daemon_notified(&d, "WATCHDOG=1", 5000), "no WATCHDOG=1 with WATCHDOG_USEC set");
        alloc_disconnect(c);

        kill(d.pid, SIGTERM);
        cr_assert(daemon_notified(&d, "STOPPING=1", 10000));
        int status;
        cr_assert_eq(waitpid(d.pid, &status, 0), d.pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
        struct stat st;
        cr_assert_eq(stat(d.sock, &st), 0, "allocd must not remove a socket systemd owns");
        unlink(d.sock);
        close(d.notify_fd);
        unlink(d.notify);
        rmdir(d.dir);
}

Test(systemd, a_passed_socket_of_the_wrong_type_is_refused, .timeout = 60) {
        const char *sa = activate();
        if (!sa)
                cr_skip_test("systemd-socket-activate is not installed (package systemd)");
        char dir[] = "/tmp/allocd-sd-XXXXXX", sock[128], log[160];
        cr_assert(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/stream.sock", dir);
        snprintf(log, sizeof(log), "%s/log", dir);
        pid_t pid = test_fork();
        if (pid == 0) {
                freopen(log, "w", stderr);
                /* A stream socket, as a unit with ListenStream= would pass; --accept=no, so it execs at once. */
                execl(sa, sa, "-l", sock, ALLOCD_PATH, "--no-config", (char *)NULL);
                _exit(127);
        }
        /* systemd-socket-activate waits for a connection before it starts allocd. */
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        strcpy(addr.sun_path, sock);
        int fd = -1;
        for (int i = 0; i < 2000; i++) {
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
                        break;
                close(fd);
                fd = -1;
                usleep(5000);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x", status);
        char buf[1024] = {0};
        FILE *f = fopen(log, "r");
        fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        cr_assert(strstr(buf, "ListenSequentialPacket="), "the error says what to fix: %s", buf);
        if (fd >= 0)
                close(fd);
        unlink(log);
        unlink(sock);
        rmdir(dir);
}

/*
 * allocd started as systemd would with LISTEN_FDS=nfds, LISTEN_FDNAMES=names (unless NULL) and fd 3 a
 * listening SOCK_SEQPACKET socket: its exit status, or -1 when it still runs after 10 s (then killed).
 * Its stderr is in log.
 */
static int start_passed(const char *dir, const char *nfds, const char *names, char *log, size_t logsize) {
        char sock[128], own[128];
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(sock, sizeof(sock), "%s/passed.sock", dir);
        snprintf(own, sizeof(own), "%s/own.sock", dir);
        snprintf(log, logsize, "%s/log", dir);
        strcpy(addr.sun_path, sock);
        cr_assert_eq(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
        cr_assert_eq(listen(lfd, 16), 0);
        pid_t pid = test_fork();
        if (pid == 0) {
                char p[32];
                freopen(log, "w", stderr);
                if (lfd == 3) /* dup2 would leave it O_CLOEXEC */
                        fcntl(3, F_SETFD, 0);
                else
                        dup2(lfd, 3); /* without O_CLOEXEC */
                for (int fd = 4; fd < 64; fd++)
                        close(fd);
                snprintf(p, sizeof(p), "%d", (int)getpid());
                setenv("LISTEN_PID", p, 1);
                setenv("LISTEN_FDS", nfds, 1);
                if (names)
                        setenv("LISTEN_FDNAMES", names, 1);
                execl(ALLOCD_PATH, ALLOCD_PATH, "--no-config", "--socket", own, (char *)NULL);
                _exit(127);
        }
        close(lfd);
        int status = 0;
        for (int i = 0; i < 1000 && waitpid(pid, &status, WNOHANG) == 0; i++)
                usleep(10000);
        if (waitpid(pid, &status, WNOHANG) == 0) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                status = -1;
        } else
                status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        unlink(sock);
        unlink(own);
        return status;
}

static void log_has(const char *log, const char *what) {
        cr_assert(strstr(slurp(log), what), "the log says \"%s\": %s", what, slurp(log));
}

/*
 * LISTEN_FDS counting fds that are not open: allocd took the fds it had opened itself by then (its
 * event loop's) for passed ones and closed them, and hung.
 */
Test(systemd, listen_fds_naming_fds_not_open_is_refused, .timeout = 60) {
        char dir[] = "/tmp/allocd-sd-XXXXXX", log[160];
        cr_assert(mkdtemp(dir));
        cr_assert_eq(start_passed(dir, "3", NULL, log, sizeof(log)), 1, "allocd exits 1, at once");
        log_has(log, "LISTEN_FDS=3");
        log_has(log, "not open");
        unlink(log);
        rmdir(dir);
}

Test(systemd, listen_fdnames_of_another_count_is_refused, .timeout = 60) {
        char dir[] = "/tmp/allocd-sd-XXXXXX", log[160];
        cr_assert(mkdtemp(dir));
        cr_assert_eq(start_passed(dir, "1", "a:b", log, sizeof(log)), 1, "allocd exits 1, at once");
        log_has(log, "LISTEN_FDNAMES=a:b");
        unlink(log);
        rmdir(dir);
}
