/* SPDX-License-Identifier: MIT */
/*
 * allocd's socket: one in use is not stolen, nor another allocd's at stop, nor another program's; a
 * stale one is taken over by one allocd of several started at once; paths it cannot use say why.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

Test(socket, a_socket_in_use_is_not_stolen, .timeout = 60) {
        struct daemon a, b;
        char log[] = "/tmp/allocd-conf-log-XXXXXX";
        close(mkstemp(log));

        daemon_start(&a, NULL);
        pid_t pid = test_fork();
        if (pid == 0) {
                freopen(log, "w", stderr);
                execl(ALLOCD_PATH, "allocd", "--socket", a.sock, "--no-config", (char *)NULL);
                _exit(127);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        cr_assert(strstr(slurp(log), "another allocd is already listening"), "%s", slurp(log));
        /* Found before its pools were made: it once reserved all their memory first. */
        cr_assert_null(strstr(slurp(log), "pool host:"), "%s", slurp(log));
        struct alloc_client *c = daemon_connect(&a);
        alloc_disconnect(c);
        daemon_stop(&a);
        (void)b;
        unlink(log);
}

/*
 * allocd removes its socket file when it stops, and only its own: another allocd may have bound the path
 * since (the file was removed, or renamed over, while the first one ran).  It once removed whatever
 * socket was there, and the other allocd, still running, could no longer be reached.
 */
Test(socket, stopping_leaves_another_allocds_socket, .timeout = 60) {
        struct daemon a, b;
        int status;

        daemon_start(&a, NULL);
        daemon_start(&b, NULL);
        cr_assert_eq(rename(b.sock, a.sock), 0, "%s", strerror(errno));
        kill(a.pid, SIGTERM);
        cr_assert_eq(waitpid(a.pid, &status, 0), a.pid);
        a.pid = 0;
        struct alloc_client *c;
        cr_assert_eq(alloc_connect(&c, a.sock, "test"), 0, "the other allocd's socket went: %s", alloc_last_error());
        alloc_disconnect(c);
        daemon_stop(&b);
        daemon_stop(&a);
}

/* SIGTERMs that keep coming while allocd stops (an impatient operator): it still stops cleanly, status 0. */
Test(socket, signals_during_the_stop_do_not_end_it_early, .timeout = 60) {
        struct daemon a;
        int status = 0;
        pid_t p = 0;

        daemon_start(&a, NULL);
        for (int i = 0; i < 20000 && (p = waitpid(a.pid, &status, WNOHANG)) == 0; i++) {
                kill(a.pid, i % 3 == 1 ? SIGINT : i % 3 == 2 ? SIGHUP : SIGTERM);
                usleep(100);
        }
        cr_assert_eq(p, a.pid, "allocd did not stop");
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "allocd did not exit cleanly: %#x%s", status,
                  WIFSIGNALED(status) ? " (killed by a signal)" : "");
        a.pid = 0;
        daemon_stop(&a);
}

/*
 * allocds started at once beside a stale socket file: one serves, the others refuse.  Each once found the
 * file dead and removed it, a later one the socket an earlier one had just bound, and two ran, one of them
 * unreachable (about one round in eight).
 */
Test(socket, allocds_started_at_once_on_a_stale_socket_leave_one, .timeout = 120) {
        enum { ROUNDS = 30, N = 6 };
        char dir[] = "/tmp/allocd-race-XXXXXX", sock[64], conf[64];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        cr_assert_not_null(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/allocd.sock", dir);
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        write_file(conf, "[pool f]\nkind = fpga\nranges = 0x0+1M\n");
        strcpy(sa.sun_path, sock);
        for (int round = 0; round < ROUNDS; round++) {
                pid_t pid[N];
                int status, exited = 0, alive = 0;
                /* What a crash leaves: a socket file nothing listens on. */
                int stale = socket(AF_UNIX, SOCK_SEQPACKET, 0);
                unlink(sock);
                cr_assert_eq(bind(stale, (struct sockaddr *)&sa, sizeof(sa)), 0);
                close(stale);
                for (int i = 0; i < N; i++) {
                        pid[i] = test_fork();
                        cr_assert_geq(pid[i], 0);
                        if (pid[i] == 0) {
                                freopen("/dev/null", "w", stderr);
                                execl(ALLOCD_PATH, "allocd", "--socket", sock, "--config", conf, (char *)NULL);
                                _exit(127);
                        }
                }
                /* Up to 10 s: on a loaded machine the ones that refuse may be slow to, not two serving. */
                for (int t = 0; t < 1000 && exited < N - 1; t++) {
                        usleep(10000);
                        for (int i = 0; i < N; i++)
                                if (pid[i] > 0 && waitpid(pid[i], &status, WNOHANG) == pid[i])
                                        pid[i] = -1, exited++; /* reaped: its pid is no longer ours to signal */
                }
                usleep(100000); /* a second survivor has long been listening by now */
                for (int i = 0; i < N; i++) {
                        if (pid[i] < 0 || waitpid(pid[i], &status, WNOHANG) == pid[i])
                                continue;
                        alive++;
                        kill(pid[i], SIGTERM);
                        waitpid(pid[i], &status, 0);
                }
                cr_assert_eq(alive, 1, "round %d: %d allocds run on one socket", round, alive);
        }
        unlink(sock);
        unlink(conf);
        rmdir(dir);
}

/* Runs allocd (as nobody, or as we are) with --socket sock and --config conf; its exit status, stderr in log. */
static int allocd_as(bool nobody, const char *sock, const char *conf, const char *log) {
        int status;
        pid_t pid = test_fork();

        if (pid == 0) {
                freopen(log, "w", stderr);
                if (nobody && (setgid(65534) < 0 || setuid(65534) < 0 || !die_with_test()))
                        _exit(126);
                execl(ALLOCD_PATH, "allocd", "--socket", sock, "--config", conf, (char *)NULL);
                _exit(127);
        }
        for (int t = 0; t < 500 && waitpid(pid, &status, WNOHANG) == 0; t++)
                usleep(10000);
        if (kill(pid, SIGKILL) == 0)
                waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * A socket file allocd may not remove (another user's, in a sticky directory) or may not connect to was
 * refused as "Address already in use", which reads as another allocd; a live socket of another type (a stream
 * server's) was taken for stale and removed.  Only a socket that refuses the connection is stale.
 */
Test(socket, a_socket_that_cannot_be_taken_over_is_left_and_says_why, .timeout = 60) {
        char dir[] = "/tmp/allocd-sticky-XXXXXX", sock[64], conf[64], log[64];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        if (getuid() != 0)
                cr_skip_test("needs root, to run allocd as nobody beside root's socket");
        cr_assert_not_null(mkdtemp(dir));
        chmod(dir, 01777);
        snprintf(sock, sizeof(sock), "%s/allocd.sock", dir);
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        snprintf(log, sizeof(log), "%s/log", dir);
        write_file(conf, "[pool f]\nkind = fpga\nranges = 0x0+1M\n");
        chmod(conf, 0644);
        strcpy(sa.sun_path, sock);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        chmod(sock, 0666); /* stale: anyone may try it, and nothing listens */
        cr_expect_eq(allocd_as(true, sock, conf, log), 1);
        cr_expect(strstr(slurp(log), "a socket file nothing listens on (left by a crash?), and removing it failed"),
                  "%s", slurp(log));
        unlink(sock);

        fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(listen(fd, 4), 0);
        chmod(sock, 0700); /* live, but nobody may connect */
        cr_expect_eq(allocd_as(true, sock, conf, log), 1);
        cr_expect(strstr(slurp(log), "whether anything listens on it cannot be told (Permission denied)"), "%s",
                  slurp(log));
        cr_expect_null(strstr(slurp(log), "pool f:"), "found before the pools were made: %s", slurp(log));
        close(fd);
        unlink(sock);

        /* Another program's live stream socket refuses a SEQPACKET connect: it was taken for stale, and removed. */
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(listen(fd, 4), 0);
        cr_expect_eq(allocd_as(false, sock, conf, log), 1);
        cr_expect(strstr(slurp(log), "whether anything listens on it cannot be told (Protocol wrong type"), "%s",
                  slurp(log));
        cr_expect_null(strstr(slurp(log), "pool f:"), "found before the pools were made: %s", slurp(log));
        struct stat st;
        cr_expect(stat(sock, &st) == 0, "the other program's socket is still there");
        close(fd);
        unlink(sock);

        /* A listener that accepts nothing, its backlog full: allocd's probe once waited on it for ever. */
        fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(listen(fd, 0), 0);
        int queued[4];
        for (int i = 0; i < 4; i++) {
                queued[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
                connect(queued[i], (struct sockaddr *)&sa, sizeof(sa));
        }
        cr_expect_eq(allocd_as(false, sock, conf, log), 1, "allocd waited on a full backlog");
        cr_expect(strstr(slurp(log), "another allocd is already listening"), "%s", slurp(log));
        for (int i = 0; i < 4; i++)
                close(queued[i]);
        close(fd);
        unlink(sock);
        unlink(conf);
        unlink(log);
        rmdir(dir);
}

/* A file that is not a socket is never removed to make room for one. */
Test(socket, socket_path_that_is_a_file_is_left_alone, .timeout = 60) {
        char log[] = "/tmp/allocd-conf-log-XXXXXX", file[] = "/tmp/allocd-not-a-socket-XXXXXX";
        int status, fd = mkstemp(file);

        close(mkstemp(log));
        cr_assert_eq(write(fd, "hi\n", 3), 3);
        close(fd);
        pid_t pid = test_fork();
        if (pid == 0) {
                freopen(log, "w", stderr);
                execl(ALLOCD_PATH, "allocd", "--socket", file, "--no-config", (char *)NULL);
                _exit(127);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        cr_assert(strstr(slurp(log), "is not a socket"), "%s", slurp(log));
        cr_assert_null(strstr(slurp(log), "pool host:"), "found before the pools were made: %s", slurp(log));
        cr_assert_str_eq(slurp(file), "hi\n");
        unlink(file);
        unlink(log);
}

/* A default socket path too long for sun_path was blamed on an unset XDG_RUNTIME_DIR, even for root. */
Test(socket, a_default_socket_path_too_long_says_so, .timeout = 60) {
        char log[] = "/tmp/allocd-conf-log-XXXXXX", env[256];
        int status;

        close(mkstemp(log));
        snprintf(env, sizeof(env), "ALLOCD_SOCKET=/tmp/%0150d.sock", 0);
        pid_t pid = test_fork();
        if (pid == 0) {
                freopen(log, "w", stderr);
                putenv(env);
                execl(ALLOCD_PATH, "allocd", "--no-config", (char *)NULL);
                _exit(127);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%#x", status);
        cr_expect(strstr(slurp(log), "is longer than 107 bytes; choose a shorter one with --socket PATH"), "%s",
                  slurp(log));
        unlink(log);
}

/*
 * The socket directory's lock (two allocds started at once) is one anyone who may read the directory can
 * take: allocd waited for it for ever, and never served.  It waits a while, then goes on without.
 */
Test(socket, a_socket_directory_locked_by_another_does_not_stop_the_start, .timeout = 60) {
        char dir[] = "/tmp/allocd-lock-XXXXXX", sock[64], conf[64];
        struct alloc_client *c = NULL;
        int status;

        cr_assert_not_null(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/allocd.sock", dir);
        snprintf(conf, sizeof(conf), "%s/allocd.conf", dir);
        write_file(conf, "[pool f]\nkind = fpga\nranges = 0x0+1M\n");
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_eq(flock(dfd, LOCK_EX), 0);
        pid_t pid = test_fork();
        if (pid == 0) {
                freopen("/dev/null", "w", stderr);
                execl(ALLOCD_PATH, "allocd", "--socket", sock, "--config", conf, (char *)NULL);
                _exit(127);
        }
        for (int t = 0; t < 1000 && alloc_connect(&c, sock, "test") < 0; t++)
                usleep(10000);
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
        close(dfd);
        cr_assert_not_null(c, "allocd did not serve while its socket directory was locked");
        alloc_disconnect(c);
        unlink(sock);
        unlink(conf);
        rmdir(dir);
}

/* Runs allocd --no-config --socket SOCK as uid (when not -1) and returns its exit status; its stderr is in log. */
static int start_fails(const char *sock, uid_t uid, const char *log) {
        int status;
        pid_t pid = test_fork();

        if (pid == 0) {
                freopen(log, "w", stderr);
                if (uid != (uid_t)-1 && (setgid(uid) < 0 || setuid(uid) < 0 || !die_with_test()))
                        _exit(126);
                execl(ALLOCD_PATH, "allocd", "--socket", sock, "--no-config", (char *)NULL);
                _exit(127);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        return status;
}

/* A socket path allocd could not make said only "No such file or directory" or "Permission denied". */
Test(socket, a_socket_path_that_cannot_be_made_says_what_to_do, .timeout = 60) {
        char log[] = "/tmp/allocd-conf-log-XXXXXX", dir[] = "/tmp/allocd-nodir-XXXXXX", sock[128];

        close(mkstemp(log));
        cr_assert(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/missing/sub/allocd.sock", dir);
        int status = start_fails(sock, -1, log);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%#x", status);
        cr_expect(strstr(slurp(log), "sub for the socket: No such file or directory; allocd creates only the "
                                     "socket's own directory: create its parent, or choose another --socket"),
                  "%s", slurp(log));
        if (geteuid() == 0) { /* a directory nobody may write to (mkdtemp's is 0700) */
                snprintf(sock, sizeof(sock), "%s/allocd.sock", dir);
                status = start_fails(sock, 65534, log);
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%#x", status);
                cr_expect(strstr(slurp(log), "allocd.sock: Permission denied; choose another --socket, or run allocd "
                                             "as a user who may write there"),
                          "%s", slurp(log));
                snprintf(sock, sizeof(sock), "%s/new/allocd.sock", dir);
                status = start_fails(sock, 65534, log);
                cr_expect(strstr(slurp(log), "new for the socket: Permission denied; choose another --socket, or run "
                                             "allocd as a user who may create it"),
                          "%s", slurp(log));
        }
        rmdir(dir);
        unlink(log);
}

/*
 * The harness's allocd goes with the test process, however that ends (a failed assertion, a
 * timeout): here a process that started one and exits without stopping it.  This test adopts the
 * orphan (a subreaper), so that it can wait for it and, where it lives on, stop it.
 */
Test(socket, an_allocd_the_test_left_running_goes_with_it, .timeout = 60) {
        struct daemon d;
        int fds[2], status = 0;
        pid_t got = 0;

        cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
        pid_t test = fork(); /* plain: it stands for a test process, and the allocd must go with it */
        cr_assert_geq(test, 0);
        if (test == 0) {
                daemon_start(&d, NULL);
                _exit(write(fds[1], &d, sizeof(d)) == sizeof(d) ? 0 : 1);
        }
        close(fds[1]);
        cr_assert_eq(read(fds[0], &d, sizeof(d)), (ssize_t)sizeof(d));
        close(fds[0]);
        cr_assert_eq(waitpid(test, &status, 0), test);
        for (int i = 0; i < 500 && got == 0; i++) {
                got = waitpid(d.pid, &status, WNOHANG);
                if (got == 0)
                        usleep(10000);
        }
        if (got == 0) { /* still running: stopped here, lest it outlive this test too */
                kill(d.pid, SIGKILL);
                waitpid(d.pid, &status, 0);
        }
        d.pid = 0;
        d.notify_fd = -1; /* the other process's */
        daemon_stop(&d);
        cr_assert(got > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "allocd outlived the process that started it (%#x)", status);
}
