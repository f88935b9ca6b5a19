/* SPDX-License-Identifier: MIT */
/*
 * allocd: arguments, configuration, systemd integration, signals.
 *
 * Start-up order: configuration, pools (every byte reserved), socket (ours or
 * systemd's), then READY=1, so a client that connects finds every pool up.
 * Another allocd answering at our path is found before the pools are made.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "core.h"
#include "limits-apply.h"
#include "listen.h"
#include "log.h"
#include "proto.h"
#include "reload.h"
#include "restart-deferred.h"
#include "restart.h"
#include "server.h"
#include "standby.h"
#include "wire.h"
#include "version.h"

/* ALLOCD_CONFIG (read without --config) and ALLOCD_EXAMPLE_CONFIG come from daemon/meson.build. */
#define BUILTIN_POOLS "the built-in pools host (256 MiB) and fpga0"

/* sysexits' EX_CONFIG: the unit's RestartPreventExitStatus= stops restarting on a broken file. */
#define EXIT_CONFIG 78

static uv_loop_t *loop;
static struct core *core;
static bool stopping;

static const char *config_path;
static int cli_log_level = -1;
static uv_signal_t sig_term, sig_int, sig_hup;
static uv_timer_t watchdog_timer, status_timer, leave_timer;
static bool status_dirty, notify;

static void usage(FILE *f) {
        fprintf(f, "usage: allocd [--config FILE | --no-config] [--socket PATH] [--log-level LEVEL] [--check-config] "
                   "[--version] [--help]\n"
                   "\n"
                   "Owns memory pools and hands out regions of them over a Unix socket; runs in the foreground.\n"
                   "\n"
                   "  -c, --config FILE      pools and limits (allocd.conf(5)); default " ALLOCD_CONFIG "\n"
                   "                         when it exists, else a 256 MiB host pool 'host' and a 4 GiB fpga\n"
                   "                         address space 'fpga0'; an example: " ALLOCD_EXAMPLE_CONFIG "\n"
                   "      --no-config        serve those built-in pools even when " ALLOCD_CONFIG " exists\n"
                   "  -s, --socket PATH      where to listen; default $ALLOCD_SOCKET, else /run/allocd/allocd.sock\n"
                   "                         for root, else $XDG_RUNTIME_DIR/allocd/allocd.sock\n"
                   "  -l, --log-level LEVEL  error, warning, notice, info (default) or debug\n"
                   "      --check-config     read the configuration, say whether it is valid, and exit (0, or 78\n"
                   "                         for an invalid file, as when allocd starts with one)\n"
                   "  -V, --version          print the version and exit\n"
                   "  -h, --help             print this help and exit\n");
}

static void status_changed(void) {
        status_dirty = true;
        server_changed();
}

static void send_status(void) {
        uint64_t used = 0, total = 0, nreg = 0;
        size_t up = 0, down = 0;
        char names[128] = "";

        for (size_t i = 0; i < core_npools(core); i++) {
                struct pool_info p;
                core_pool_info(core_pool_at(core, i), &p);
                if (!p.available) {
                        if (*p.reason != '\0') {
                                down++;
                                reload_list_add(names, sizeof(names), p.name);
                        }
                        continue;
                }
                struct range_stats st;
                core_pool_stats(core_pool_at(core, i), &st);
                used += st.in_use;
                total += st.total;
                nreg += p.regions;
                up++;
        }
        sd_notifyf(0, "STATUS=%zu %s, %" PRIu64 " %s, %" PRIu64 " of %" PRIu64 " bytes in use, %u %s%s%s%s%s%s", up,
                   plural(up, "pool", "pools"), nreg, plural(nreg, "region", "regions"), used, total, server_nconns(),
                   plural(server_nconns(), "client", "clients"), down ? "; not available: " : "", names,
                   down ? " (allocctl status says why)" : "", *reload_summary() ? "; " : "", reload_summary());
        status_dirty = false;
}

static void status_tick(uv_timer_t *t) {
        (void)t;
        if (status_dirty)
                send_status();
}

static void watchdog_tick(uv_timer_t *t) {
        (void)t;
        sd_notify(0, "WATCHDOG=1");
}

static void leave(uv_timer_t *t) {
        (void)t;
        uv_stop(loop);
}

static void stop(void) {
        if (stopping)
                return;
        stopping = true;
        log_info("stopping");
        sd_notify(0, "STOPPING=1");
        bool kept = restart_stop(core, server_next_serial());
        if (kept)
                core_abandon(core);
        core_stopping(core);
        reload_stop();
        server_stop(kept);
        /*
         * A pool being made (fallocate, mlock of gigabytes) or a large region being zeroed can take
         * longer than systemd waits: the loop is left once the handles closed now are closed (next
         * turn), without waiting for them.
         */
        if (reload_busy() || server_jobs()) {
                uv_timer_init(loop, &leave_timer);
                uv_timer_start(&leave_timer, leave, 0, 0);
        }
        /*
         * The signal handles stay open, ignored (on_signal) and no longer keeping the loop: closing
         * them gives each signal back its default action, and a second SIGTERM (an impatient
         * operator, a script's kill in a loop) between that and a signal(SIG_IGN) ended allocd by the
         * signal, mid-stop and without its status 0.  The stop under way is what they asked for;
         * SIGKILL still ends it.  uv_loop_close then leaves the loop as it is, which exit ends.
         */
        uv_unref((uv_handle_t *)&sig_term);
        uv_unref((uv_handle_t *)&sig_int);
        uv_unref((uv_handle_t *)&sig_hup);
        uv_close((uv_handle_t *)&watchdog_timer, NULL);
        uv_close((uv_handle_t *)&status_timer, NULL);
}

/* What serves, what is listed but not made, and what a restart kept for its regions' holders (no new region). */
static void log_ready(void) {
        size_t serving = 0, unavailable = 0, draining = 0;

        for (size_t i = 0; i < core_npools(core); i++) {
                struct pool_info pi;
                core_pool_info(core_pool_at(core, i), &pi);
                if (pi.draining)
                        draining++;
                else if (pi.available)
                        serving++;
                else if (*pi.reason) /* none: gone (retired, or taken out), as STATUS= counts it */
                        unavailable++;
        }
        char draining_part[128] = "", waiting_part[160] = "", waiting_names[96];
        size_t waiting = deferred_list(waiting_names, sizeof(waiting_names));
        if (draining)
                snprintf(draining_part, sizeof(draining_part),
                         ", %zu draining (kept from before the restart, taking no new regions)", draining);
        if (waiting)
                snprintf(waiting_part, sizeof(waiting_part), ", %zu %s waiting for a draining namesake (%s)", waiting,
                         plural(waiting, "pool", "pools"), waiting_names);
        log_info("ready: %zu %s, %zu not available%s%s", serving, plural(serving, "pool", "pools"), unavailable,
                 draining_part, waiting_part);
}

static void keep_tick(void) {
        restart_turn(core, server_next_serial());
}

static void on_signal(uv_signal_t *h, int sig) {
        (void)h;
        if (stopping)
                return;
        if (sig == SIGHUP)
                reload_run();
        else
                stop();
}

/*
 * A pool the machine cannot make now (no GPU, memory, huge pages, mlock) is a state of the machine,
 * not a mistake in the file: it is listed unavailable with the reason, the others are served, and
 * SIGHUP tries it again.  Only running out of memory for the placeholder itself stops start-up.
 * Returns 1 when the pool was made, 0 when it is listed as not available.
 */
static int add_pool(const struct pool_conf *pc, int fd) {
        struct pool_info p;
        struct range_stats st;
        char err[512];
        int r = core_pool_add_fd(core, pc, fd, err, sizeof(err));
        struct pool *pool = core_pool_find(core, pc->name);

        if (fd >= 0 && restart_pool_refused(pc, r)) {
                logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pool = pc->name},
                     "%s; it is restored draining where it is, and pool %s is made as configured once its regions "
                     "are freed",
                     err, pc->name);
                return 1; /* that one serves in its place meanwhile */
        }
        if (!pool) {
                log_err("%s", err);
                return r;
        }
        core_pool_info(pool, &p);
        if (r == -ENODEV) {
                log_warn("pool %s (%s) is left out: allocd cannot use the GPU; SIGHUP tries again", p.name,
                         pool_kind_name(p.kind));
        } else if (r < 0 && config_path) {
                /* The machine refused it, but the operator's way in is the section that asked for it. */
                logx(LOG_LEVEL_ERR, &(struct log_ctx){.pool = p.name},
                     "%s:%d: %s; pool %s is left out (allocctl status lists it as not available), SIGHUP tries "
                     "again",
                     config_path, pc->line, err, p.name);
        } else if (r < 0) {
                logx(LOG_LEVEL_ERR, &(struct log_ctx){.pool = p.name},
                     "%s; built-in pool %s is left out (allocctl status lists it as not available); give --config "
                     "to choose others",
                     err, p.name);
        } else {
                core_pool_stats(pool, &st);
                logx(LOG_LEVEL_INFO, &(struct log_ctx){.pool = p.name}, "pool %s: %s%s%s, %" PRIu64 " bytes%s", p.name,
                     pool_kind_name(p.kind), p.kind == POOL_PINNED ? ", backend " : "",
                     p.kind == POOL_PINNED ? p.backend : "", st.total, fd >= 0 ? ", from the fd store" : "");
        }
        return r == 0;
}

/*
 * Where region ids start (core_seed_ids): at random, below 2^31 so that a slot still takes 2^31
 * allocations before its generation wraps.  Uniqueness is all it is for, so without entropy yet
 * (early boot) the clock will do.
 */
static uint32_t first_generation(void) {
        struct timespec ts;
        uint32_t v;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v)) {
                clock_gettime(CLOCK_REALTIME, &ts);
                v = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec * 2654435761u;
        }
        return v & 0x7fffffffu;
}

/*
 * A core with conf's pools, made from the fd store's where it has them as configured
 * (restart.h).  Returns the pools made, or a negative errno (logged).
 */
static int make_core(const struct config *conf) {
        int made = 0, r;

        if (core_new(&core, &conf->limits) < 0) {
                log_err("out of memory");
                return -ENOMEM;
        }
        core_seed_ids(core, first_generation());
        for (size_t i = 0; i < conf->npools; i++) {
                struct pool_conf pc = conf->pools[i];
                int fd = restart_pool_fd(&pc);
                if (fd < 0 && restart_pool_deferred(&pc)) {
                        logx(LOG_LEVEL_NOTICE, &(struct log_ctx){.pool = pc.name},
                             "pool %s: the fd store holds a pool of that name of another kind, size, quantum or "
                             "hugepages; it is made once that one's regions are freed",
                             pc.name);
                        made++; /* that one serves in its place meanwhile */
                        continue;
                }
                /*
                 * Making a pool reserves, zeroes or locks all of it (a pinned pool of hundreds of GiB takes
                 * minutes), before READY=1: systemd's TimeoutStartSec= (90 s) would kill allocd in the middle,
                 * and Restart= start it again for ever.  Room for each pool, bounded still: 90 s and 1 s for
                 * each 256 MiB.
                 */
                sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%" PRIu64, (90 + pc.size / (256u << 20)) * 1000000);
                if ((r = add_pool(&pc, fd)) < 0) {
                        core_free(core);
                        core = NULL;
                        return r;
                }
                made += r;
        }
        return made;
}

/* The socket's path: path, else the default one in def; NULL where there is none (logged). */
static const char *socket_path_of(const char *path, char *def, size_t size) {
        int r;

        if (path)
                return path;
        if ((r = wire_default_socket(def, size, false)) == -ENAMETOOLONG) {
                log_err("the socket path $ALLOCD_SOCKET or $XDG_RUNTIME_DIR makes is longer than %zu bytes; "
                        "choose a shorter one with --socket PATH",
                        size - 1);
                return NULL;
        }
        if (r < 0) {
                log_err("no socket path: not root and XDG_RUNTIME_DIR is unset; use --socket PATH or "
                        "$ALLOCD_SOCKET");
                return NULL;
        }
        return def;
}

/* Whether path (or the default) cannot be ours: another allocd answers there, or there is no path (logged). */
static bool socket_taken(const char *path) {
        char def[108], err[512];

        if (!(path = socket_path_of(path, def, sizeof(def))))
                return true;
        if (listen_in_use(path, err, sizeof(err)) < 0) {
                log_err("%s", err);
                return true;
        }
        return false;
}

/* sock: the socket systemd passed (restart_collect), or -1. */
static int open_socket(const char *path, int sock) {
        char def[108], err[512];
        int r;

        if (sock >= 0) {
                if (sd_is_socket_unix(sock, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
                        log_err("the socket systemd passed is not a listening SOCK_SEQPACKET Unix socket; use "
                                "ListenSequentialPacket= in allocd.socket");
                        close(sock);
                        return -EINVAL;
                }
                if ((r = server_adopt(sock)) < 0) {
                        log_err("the socket systemd passed: %s", strerror(-r));
                        return r;
                }
                log_info("listening on the socket systemd passed");
                return 0;
        }
        if (!(path = socket_path_of(path, def, sizeof(def))))
                return -EINVAL;
        if ((r = server_listen(path, err, sizeof(err))) < 0) {
                log_err("%s", err);
                return r;
        }
        log_info("listening on %s", path);
        return 0;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'},
                {"socket", required_argument, NULL, 's'},
                {"log-level", required_argument, NULL, 'l'},
                {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},
                {"check-config", no_argument, NULL, 'C'},
                {"no-config", no_argument, NULL, 'N'},
                {0},
        };
        bool check_only = false, no_config = false;
        uint64_t next_serial;
        const char *socket_path = NULL;
        struct config conf;
        char err[512];
        int c, r, sock, made;
        uint64_t wd_usec;

        /*
         * A SIGHUP before the loop's handler is in place ended allocd: it waits, blocked, for the
         * handler, which then takes it as any (a reload once ready).  The other signals whoever started
         * allocd blocked (the mask goes across exec; systemd resets it, a script may not) are let
         * through, or a SIGTERM would never reach the loop.
         */
        sigset_t hup;
        sigemptyset(&hup);
        sigaddset(&hup, SIGHUP);
        sigprocmask(SIG_SETMASK, &hup, NULL);

        argv[0] = (char *)"allocd"; /* getopt's messages start with it: the name, not the path run */
        while ((c = getopt_long(argc, argv, "c:s:l:Vh", opts, NULL)) != -1) {
                /* An empty --socket would listen on an abstract address no client names, unseen. */
                if ((c == 'c' || c == 's') && !*optarg) {
                        fprintf(stderr, "allocd: --%s '': give the %s\n", c == 'c' ? "config" : "socket",
                                c == 'c' ? "configuration file's path" : "socket's path");
                        return 2;
                }
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 's':
                        socket_path = optarg;
                        break;
                case 'l':
                        if ((cli_log_level = log_level_parse(optarg)) < 0) {
                                fprintf(stderr, "allocd: --log-level %s: use error, warning, notice, info or debug\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'V':
                        printf("allocd %s (protocol %d)\n", ALLOCD_VERSION, WIRE_VERSION);
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'C':
                        check_only = true;
                        break;
                case 'N':
                        no_config = true;
                        break;
                default:
                        fprintf(stderr, "allocd: try 'allocd --help'\n");
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "allocd: unexpected argument '%s'; try 'allocd --help'\n", argv[optind]);
                return 2;
        }
        if (config_path && no_config) {
                fprintf(stderr, "allocd: --config and --no-config: choose one\n");
                return 2;
        }
        /*
         * Only a missing default file means the built-in pools: one that exists but cannot be read or
         * parsed is an error, as an explicit --config is, rather than pools nobody configured.
         */
        if (!config_path && !no_config && (access(ALLOCD_CONFIG, F_OK) == 0 || errno != ENOENT))
                config_path = ALLOCD_CONFIG;
        log_init();
        if (config_path)
                r = config_load(&conf, config_path, err, sizeof(err));
        else
                r = config_default(&conf);
        /* Not --check-config: systemd's LISTEN_PID is the service's main process, never ExecReload's. */
        if (r < 0 && config_path && !check_only && standby_wanted())
                return standby_run(config_path, err);
        if (r < 0) {
                log_err("%s", config_path ? err : "out of memory");
                return config_path ? EXIT_CONFIG : 1;
        }
        if (check_only) {
                if (config_path)
                        printf("%s: valid, %zu %s\n", config_path, conf.npools, plural(conf.npools, "pool", "pools"));
                else
                        printf("%s: allocd would serve %s\n", no_config ? "--no-config" : "no " ALLOCD_CONFIG,
                               BUILTIN_POOLS);
                config_clear(&conf);
                return 0;
        }
        log_set_level(cli_log_level >= 0 ? cli_log_level : conf.log_level);
        /* Before an install (./dev.sh run) neither the manual page nor the example is there: the tree has both. */
        if (!config_path && !no_config && access(ALLOCD_EXAMPLE_CONFIG, F_OK) == 0)
                logx(LOG_LEVEL_NOTICE, NULL, "no %s; serving %s; see allocd.conf(5) and %s", ALLOCD_CONFIG,
                     BUILTIN_POOLS, ALLOCD_EXAMPLE_CONFIG);
        else if (!config_path && !no_config)
                logx(LOG_LEVEL_NOTICE, NULL,
                     "no %s; serving %s; the example configuration and allocd.conf(5) are not installed: in "
                     "allocd's source tree they are allocd.conf (--config allocd.conf) and man/allocd.conf.5.scd "
                     "(and docs/configuration.md)",
                     ALLOCD_CONFIG, BUILTIN_POOLS);
        /*
         * Before anything opens an fd: LISTEN_FDS counting more fds than are open would otherwise name
         * allocd's own (its event loop's), taken for passed ones and closed.
         */
        if (restart_collect(&sock) < 0) {
                config_clear(&conf);
                return 1;
        }
        /*
         * Its eventfd, pipes and epoll fd: a RLIMIT_NOFILE that low leaves no room for them (uv_default_loop is
         * NULL then).  Making the pools can take seconds (fallocate, mlock): a SIGHUP meanwhile (a reload, a
         * closed terminal) killed allocd; it is served once the loop runs.
         */
        errno = 0;
        if (!(loop = uv_default_loop()) || (errno = -uv_signal_init(loop, &sig_hup)) ||
            (errno = -uv_signal_start(&sig_hup, on_signal, SIGHUP))) {
                log_err("making the event loop: %s; raise LimitNOFILE= (RLIMIT_NOFILE) if it is that low",
                        strerror(errno ? errno : ENOMEM));
                config_clear(&conf);
                return 1;
        }
        sigprocmask(SIG_UNBLOCK, &hup, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* Before the pools: a second allocd once reserved (and locked) them all, to find the socket taken. */
        if (sock < 0 && socket_taken(socket_path)) {
                config_clear(&conf);
                return 1;
        }
        if ((made = make_core(&conf)) < 0) {
                config_clear(&conf);
                return 1;
        }
        /* What a state that cannot be read held is lost: fresh pools, which no old client maps. */
        if (restart_restore(core, &next_serial) < 0) {
                core_free(core);
                restart_discard();
                if ((made = make_core(&conf)) < 0) {
                        config_clear(&conf);
                        return 1;
                }
        }
        /* Serves all the same: allocctl status says why, and a reload that can make them needs no restart. */
        if (conf.npools == 1 && !made)
                log_err("the pool could not be made: allocd serves none until a reload makes it (allocctl status "
                        "says why)");
        else if (conf.npools && !made)
                log_err("not one of the %zu pools could be made: allocd serves none until a reload makes some "
                        "(allocctl status says why)",
                        conf.npools);
        reload_init(loop, core,
                    config_path ? config_path
                    : no_config ? NULL
                                : ALLOCD_CONFIG,
                    !config_path, cli_log_level, status_changed);
        limits_apply(core, &conf);
        config_clear(&conf);
        server_init(loop, core, status_changed);
        server_set_next_serial(next_serial);
        if (open_socket(socket_path, sock) < 0) {
                core_free(core);
                return 1;
        }
        restart_begin(core, next_serial);
        server_on_turn(keep_tick);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        proto_set_started((uint64_t)time(NULL), (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);

        uv_signal_init(loop, &sig_term);
        uv_signal_init(loop, &sig_int);
        uv_signal_start(&sig_term, on_signal, SIGTERM);
        uv_signal_start(&sig_int, on_signal, SIGINT);
        uv_timer_init(loop, &watchdog_timer);
        uv_timer_init(loop, &status_timer);
        if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec >= 2000)
                uv_timer_start(&watchdog_timer, watchdog_tick, 0, wd_usec / 2000);
        notify = getenv("NOTIFY_SOCKET") != NULL;
        if (notify)
                uv_timer_start(&status_timer, status_tick, 1000, 1000);
        send_status();
        sd_notify(0, "READY=1");
        log_ready();

        uv_run(loop, UV_RUN_DEFAULT);

        if (reload_busy() || server_jobs()) {
                /*
                 * Their threads still use pools and memory that core_free would take away, and
                 * libuv's destructor would join them: _exit leaves them to the kernel.
                 */
                log_info("stopped, without waiting for %u pool(s) being made and %u region(s) being zeroed",
                         reload_busy(), server_jobs());
                fflush(NULL);
                _exit(0);
        }
        core_free(core);
        uv_loop_close(loop);
        log_info("stopped");
        return 0;
}
