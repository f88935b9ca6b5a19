/* SPDX-License-Identifier: MIT */
/*
 * The listening socket.  A path we bind is ours to clean up, but only the
 * socket file we made there: a slip of the finger (--socket allocd.conf)
 * must not delete a file, nor a stop remove another allocd's socket.  A socket file
 * left by a crash is taken over only when nothing answers on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"

#define LOCK_WAIT_MS 2000 /* the longest a start waits for the socket directory's lock */

/* The socket file listen_open made: another allocd may bind the path later, and its file is not ours. */
static dev_t bound_dev;
static ino_t bound_ino;

void listen_remove(const char *path) {
        struct stat st;

        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == bound_dev && st.st_ino == bound_ino)
                unlink(path);
}

int listen_adopt(int fd) {
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

/*
 * Connects to sa without waiting: 0 where something answers, or has its backlog full (a blocking probe
 * would wait for it for ever); else the errno (a stale socket file left by a crash refuses).
 */
static int probe(const struct sockaddr_un *sa) {
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e;

        e = fd < 0 ? errno : connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 0 : errno;
        if (fd >= 0)
                close(fd);
        return e == EAGAIN ? 0 : e;
}

/*
 * What is at sa: 0 where nothing is, or a socket file nothing listens on (left by a crash: 1), else a
 * negative errno value and why in err: a live daemon answers; a file that is not a socket; or a socket
 * we may not connect to (another user's), which cannot be told apart and is left.
 */
static int classify(const struct sockaddr_un *sa, char *err, size_t errsize) {
        int e = probe(sa);
        struct stat st;

        if (e == 0) {
                snprintf(err, errsize, "another allocd is already listening on %s; stop it or use --socket",
                         sa->sun_path);
                return -EADDRINUSE;
        }
        if (lstat(sa->sun_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
                snprintf(err, errsize, "%s exists and is not a socket; remove it or choose another --socket",
                         sa->sun_path);
                return -EEXIST;
        }
        if (e != ECONNREFUSED && e != ENOENT) {
                snprintf(err, errsize,
                         "%s is in use, and whether anything listens on it cannot be told (%s); stop what does, or "
                         "choose another --socket",
                         sa->sun_path, strerror(e));
                return -EADDRINUSE;
        }
        return e == ECONNREFUSED;
}

int listen_in_use(const char *path, char *err, size_t errsize) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;

        /* Nothing there we may see (a path too long, a directory missing or closed): listen_open says why. */
        if (strlen(path) >= sizeof(sa.sun_path) || lstat(path, &st) < 0)
                return 0;
        strcpy(sa.sun_path, path);
        int r = classify(&sa, err, errsize);
        return r < 0 ? r : 0;
}

/* EADDRINUSE at path: a stale socket file is taken over; anything else classify says is refused. */
static int take_over(const struct sockaddr_un *sa, char *err, size_t errsize) {
        int e = classify(sa, err, errsize);

        if (e < 0)
                return e;
        if (unlink(sa->sun_path) < 0 && errno != ENOENT) {
                e = errno;
                snprintf(err, errsize,
                         "%s is a socket file nothing listens on (left by a crash?), and removing it failed (%s); "
                         "remove it or choose another --socket",
                         sa->sun_path, strerror(e));
                return -e;
        }
        return 0;
}

/* Binds fd at sa, taking over a stale socket file, and listens. */
static int bind_listen(int fd, const struct sockaddr_un *sa, char *err, size_t errsize) {
        int r = bind(fd, (const struct sockaddr *)sa, sizeof(*sa));

        if (r < 0 && errno == EADDRINUSE) {
                if ((r = take_over(sa, err, errsize)) < 0)
                        return r;
                r = bind(fd, (const struct sockaddr *)sa, sizeof(*sa));
        }
        if (r < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                snprintf(err, errsize, "listening on %s: %s; choose another --socket%s", sa->sun_path, strerror(-r),
                         r == -EACCES ? ", or run allocd as a user who may write there" : "");
                return r;
        }
        return 0;
}

int listen_open(const char *path, char *err, size_t errsize) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char dir[sizeof(sa.sun_path)];
        const char *parent;
        struct stat st;
        int fd, dfd, r;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                snprintf(err, errsize, "socket path %s is longer than %zu bytes; choose a shorter --socket", path,
                         sizeof(sa.sun_path) - 1);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        strcpy(dir, path);
        parent = dirname(dir); /* "." for a bare name: not in dir */
        /* The parent of a default path is ours to create: /run/allocd, or $XDG_RUNTIME_DIR/allocd. */
        if (mkdir(parent, geteuid() == 0 ? 0755 : 0700) < 0 && errno != EEXIST) {
                r = -errno;
                snprintf(err, errsize, "creating %s for the socket: %s; %s", parent, strerror(errno),
                         r == -ENOENT ? "allocd creates only the socket's own directory: create its parent, or "
                                        "choose another --socket"
                                      : "choose another --socket, or run allocd as a user who may create it");
                return r;
        }
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errsize, "socket: %s", strerror(errno));
                return r;
        }
        /*
         * Two allocds started at once beside a stale socket file would each find it dead and remove it, the
         * second the first's by then live one, and both run, one unreachable: one at a time, under a lock on
         * the directory (without one where it cannot be read, as before).  Anyone who may read the directory
         * may hold that lock, for ever: past LOCK_WAIT_MS (an allocd holds it for a bind) allocd goes on without.
         */
        dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (int t = 0; dfd >= 0 && flock(dfd, LOCK_EX | LOCK_NB) < 0 && t < LOCK_WAIT_MS; t++)
                usleep(1000);
        r = bind_listen(fd, &sa, err, errsize);
        if (dfd >= 0)
                close(dfd);
        if (r < 0) {
                close(fd);
                return r;
        }
        /* Who may do what is each pool's mode; anyone may connect and ask for status. */
        chmod(path, 0666);
        if (lstat(path, &st) == 0) {
                bound_dev = st.st_dev;
                bound_ino = st.st_ino;
        }
        return fd;
}
