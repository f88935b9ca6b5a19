/* SPDX-License-Identifier: MIT */
/*
 * A restart whose configuration file is invalid (a typo made before `systemctl restart`, or a file an
 * older allocd accepted and this one refuses, at an upgrade).  Exiting with 78 leaves allocd.service
 * failed (RestartPreventExitStatus=78), and systemd empties the fd store of a failed service: every
 * region, name and byte would be lost while clients still map them.  So allocd stays up instead,
 * serving nobody, until it is stopped; the restart after the fix finds the store as it was.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "conn.h"
#include "fdstore.h"
#include "log.h"
#include "standby.h"

bool standby_wanted(void) {
        char **names = NULL;
        bool state = false;
        int n = sd_listen_fds_with_names(0, &names); /* LISTEN_PID is this process's, or none */

        for (int i = 0; i < n && names; i++)
                state = state || !strcmp(names[i], "state.0") || !strcmp(names[i], "state.1");
        for (int i = 0; n > 0 && names && names[i]; i++)
                free(names[i]);
        free(names);
        return state && fdstore_enabled(NULL);
}

/*
 * A client is told why, as a refused connection is (an unsolicited reply, id 0), and closed: its
 * library says allocd's words rather than "Connection reset", and keeps trying to reconnect.
 */
static void turn_away(int lfd, const char *why) {
        char msg[512];
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (c < 0)
                return;
        snprintf(msg, sizeof(msg),
                 "allocd serves nobody: its configuration file is invalid (%s); it keeps every region, and serves "
                 "them again once an operator fixes the file and runs systemctl restart allocd",
                 why);
        accept_refuse_now(c, E_INTERNAL, msg);
        close(c);
}

/* SIGHUP: whether the file is right now, said in the log and STATUS=. */
static void recheck(const char *path) {
        struct config conf;
        char err[512];

        if (config_load(&conf, path, err, sizeof(err)) < 0) {
                log_err("SIGHUP: %s; still serving nobody", err);
                return;
        }
        config_clear(&conf);
        log_info("SIGHUP: %s is valid now: systemctl restart allocd serves it, and restores the regions kept in "
                 "the fd store",
                 path);
        sd_notify(0, "STATUS=the configuration is valid now: systemctl restart allocd to serve (nothing is served "
                     "until then)");
}

int standby_run(const char *path, const char *why) {
        int n = sd_listen_fds(0), lfd = -1, sfd;
        uint64_t wd_usec = 0;
        sigset_t set;

        for (int fd = SD_LISTEN_FDS_START; n > 0 && fd < SD_LISTEN_FDS_START + n; fd++)
                if (sd_is_socket(fd, AF_UNIX, SOCK_SEQPACKET, 1) > 0)
                        lfd = fd;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 || (sfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
                log_err("%s (and no signalfd: %s)", why, strerror(errno));
                return 78;
        }
        log_err("%s; allocd was restarted with its state in systemd's fd store, which systemd would empty if it "
                "exited now, losing every region its clients hold: it stays up serving nobody instead. Fix the "
                "file, then systemctl restart allocd",
                why);
        sd_notifyf(0,
                   "READY=1\nSTATUS=the configuration is invalid (%s): serving nobody, keeping the regions in the fd "
                   "store; fix it, then systemctl restart allocd",
                   why);
        if (sd_watchdog_enabled(0, &wd_usec) <= 0)
                wd_usec = 0;
        for (;;) {
                struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
                int r = poll(p, lfd >= 0 ? 2 : 1, wd_usec >= 2000 ? (int)(wd_usec / 2000) : -1);
                struct signalfd_siginfo si;

                if (wd_usec)
                        sd_notify(0, "WATCHDOG=1");
                if (r < 0 && errno != EINTR)
                        break;
                /* A client told at once rather than left waiting for a Hello's answer. */
                if (r > 0 && lfd >= 0 && (p[1].revents & POLLIN))
                        turn_away(lfd, why);
                if (r <= 0 || !(p[0].revents & POLLIN) || read(sfd, &si, sizeof(si)) != sizeof(si))
                        continue;
                if (si.ssi_signo != SIGHUP)
                        break;
                recheck(path);
        }
        sd_notify(0, "STOPPING=1");
        log_info("stopped without serving; the fd store is as the last allocd left it");
        return 0;
}
