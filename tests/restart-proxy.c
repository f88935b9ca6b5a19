/* SPDX-License-Identifier: MIT */
/* A proxy that can restart allocd in the middle of an exchange (restart-proxy.h). */
#include "restart-proxy.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "wire.h"

static int unix_socket(const char *path, bool listening) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd < 0 || (listening ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0
                                 : connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

static void pair_close(struct proxy *p, int i) {
        if (p->client[i] >= 0)
                close(p->client[i]);
        if (p->daemon[i] >= 0)
                close(p->daemon[i]);
        p->client[i] = p->daemon[i] = -1;
}

/* One packet from fd i of pair k (from the client when to_daemon) on to the other side. */
static void pass(struct proxy *p, int k, bool to_daemon) {
        static char buf[WIRE_MAX_PACKET];
        int fds[WIRE_MAX_FDS];
        size_t nfds = WIRE_MAX_FDS;
        ssize_t n = wire_recv(to_daemon ? p->client[k] : p->daemon[k], buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT);

        if (n == -EAGAIN)
                return;
        int *count = to_daemon ? &p->sent[k] : &p->got[k];

        if (n > 0 && to_daemon != p->trip_reply && k + 1 == p->trip_conn && *count == p->trip_after && !p->tripped) {
                p->tripped = true;
                sysd_kill(p->s, SIGKILL);
                cr_assert_eq(sysd_spawn(p->s), -1, "%s", sysd_log(p->s));
                n = 0;
        }
        if (n > 0 && wire_send(to_daemon ? p->daemon[k] : p->client[k], buf, (size_t)n, fds, nfds, 0) < 0)
                n = 0;
        for (size_t i = 0; n > 0 && i < nfds; i++)
                close(fds[i]);
        if (n <= 0)
                pair_close(p, k);
        else
                (*count)++;
}

static void *run(void *arg) {
        struct proxy *p = arg;

        while (!p->quit) {
                struct pollfd pf[1 + 2 * PROXY_PAIRS] = {{.fd = p->lfd, .events = POLLIN}};
                for (int k = 0; k < p->npairs; k++) {
                        pf[1 + 2 * k] = (struct pollfd){.fd = p->client[k], .events = POLLIN};
                        pf[2 + 2 * k] = (struct pollfd){.fd = p->daemon[k], .events = POLLIN};
                }
                if (poll(pf, 1 + 2 * (nfds_t)p->npairs, 50) <= 0)
                        continue;
                if ((pf[0].revents & POLLIN) && p->npairs < PROXY_PAIRS) {
                        int k = p->npairs++, c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
                        p->client[k] = c;
                        p->daemon[k] = c >= 0 ? unix_socket(p->s->d.sock, false) : -1;
                        p->sent[k] = p->got[k] = 0;
                        if (p->daemon[k] < 0)
                                pair_close(p, k);
                }
                for (int k = 0; k < p->npairs; k++) {
                        if (pf[1 + 2 * k].revents && p->client[k] >= 0)
                                pass(p, k, true);
                        if (pf[2 + 2 * k].revents && p->daemon[k] >= 0)
                                pass(p, k, false);
                }
        }
        return NULL;
}

void proxy_start(struct proxy *p, struct sysd *s) {
        *p = (struct proxy){.s = s, .trip_conn = -1};
        snprintf(p->path, sizeof(p->path), "%s/proxy.sock", s->d.dir);
        cr_assert((p->lfd = unix_socket(p->path, true)) >= 0, "%s: %s", p->path, strerror(errno));
        cr_assert_eq(pthread_create(&p->thread, NULL, run, p), 0);
}

void proxy_trip(struct proxy *p, int conn, bool reply, int after) {
        p->trip_reply = reply;
        p->trip_after = after;
        p->trip_conn = conn; /* last: the proxy's thread reads it first */
}

void proxy_stop(struct proxy *p) {
        p->quit = true;
        pthread_join(p->thread, NULL);
        for (int k = 0; k < p->npairs; k++)
                pair_close(p, k);
        close(p->lfd);
        unlink(p->path);
}
