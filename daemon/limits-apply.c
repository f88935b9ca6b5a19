/* SPDX-License-Identifier: MIT */
/*
 * The limits every configuration is applied with, start-up's and each reload's (reload.c): allocd.conf's,
 * with max_connections kept to what RLIMIT_NOFILE, raised to its hard limit, fits.
 */
#include <stdint.h>
#include <sys/resource.h>

#include "grace.h"
#include "limits-apply.h"
#include "log.h"
#include "server.h"

/*
 * Raises the soft NOFILE limit to the hard one and keeps max_connections to
 * what fits beside the pools' fds and a margin (journal, CUDA, zero jobs),
 * so that running out of fds is a limit clients are told about, not a
 * failing accept().
 */
static void fit_nofile(const struct core *core, struct limits *l) {
        struct rlimit rl;
        /* About 14 fds are the daemon's own (stdio, epoll, signals, the thread pool, the socket, the
         * journal), 2 each pool (its fd, and one a queued reply may be sending), 10 to spare. */
        uint64_t reserve = 24 + 2 * core_npools(core), fit, flight;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        getrlimit(RLIMIT_NOFILE, &rl);
        }
        /*
         * 16: refused ones, told why.  Two a connection: its socket, and after a restart the pidfd of
         * its process while it is a placeholder (grace.c), which new connections count with
         * (core_client_admit), so connections and pidfds are at most max_connections each.
         */
        fit = rl.rlim_cur > reserve + 16 ? (rl.rlim_cur - reserve - 16) / 2 : 1;
        fit = fit ? fit : 1;
        /*
         * The kernel refuses a user without CAP_SYS_RESOURCE more fds in flight (sent, not yet read)
         * than its RLIMIT_NOFILE, and each connection may have FDS_IN_FLIGHT (server.h); 16 spare
         * for the fds allocd gives systemd's fd store.
         */
        flight = rl.rlim_cur > 16 + FDS_IN_FLIGHT ? (rl.rlim_cur - 16) / FDS_IN_FLIGHT : 1;
        if (flight < fit)
                fit = flight;
        if (rl.rlim_cur != RLIM_INFINITY && l->max_connections > fit) {
                log_warn("max_connections = %u does not fit in %llu file descriptors (LimitNOFILE=: two "
                         "for each connection, its socket and after a restart its process's pidfd, and %d in "
                         "flight to each); serving at most %llu connections",
                         l->max_connections, (unsigned long long)rl.rlim_cur, FDS_IN_FLIGHT, (unsigned long long)fit);
                l->max_connections = (uint32_t)fit;
        }
}

void limits_apply(struct core *core, const struct config *conf) {
        struct limits l = conf->limits;

        fit_nofile(core, &l);
        core_set_limits(core, &l);
        server_limits_changed();
        grace_arm();
}
