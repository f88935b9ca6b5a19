/* SPDX-License-Identifier: MIT */
/*
 * allocd under load across restarts, systemd played by sysd.c: kill -9 storms with compactions
 * between and a kill right after one, and reloads and restarts in a random order, while loader
 * processes allocate and free throughout.  Each start must restore (never start fresh), the
 * PERSIST regions made between rounds keep their bytes, and the loaders carry on.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "restart-checks.h"

TestSuite(storm, .fini = teardown, .timeout = 240);

#define STORM_CONF                                                                                                     \
        "[pool host]\nkind = host\nsize = 64M\n[pool other]\nkind = host\nsize = 16M\n[pool iso]\nkind = host\nsize "  \
        "= 16M\nisolation = region\n"

/*
 * Allocates and frees in pool until killed: batches of 8, every fourth region named (after its
 * loader and count) and PERSIST every eighth one, freed with the batch.  It carries on across
 * every restart (liballoc-client reconnects and reclaims): an error ends it with a status.
 */
static void loader(const char *pool, int who, bool come_and_go) {
        struct alloc_client *k;
        struct alloc_region r[8];
        char name[64];

        if (alloc_connect(&k, s.d.sock, "storm") < 0)
                _exit(1);
        for (unsigned n = 0;; n++) {
                snprintf(name, sizeof(name), "storm%d/%u", who, n);
                struct alloc_opts o = {.name = n % 4 ? NULL : name, .flags = n % 8 ? 0 : ALLOC_PERSIST};
                r[n % 8].id = 0;
                int e = alloc_region_new(k, pool, 4096, &o, &r[n % 8]);
                if (e < 0 && !come_and_go) {
                        fprintf(stderr, "loader %d: %d %s\n", who, e, alloc_last_error());
                        _exit(2);
                }
                if (!r[n % 8].id) /* a pool that comes and goes: not there, or draining */
                        usleep(2000);
                if (n % 8 == 7)
                        for (int i = 0; i < 8; i++)
                                if (r[i].id && (e = alloc_region_free(k, r[i].id)) < 0) {
                                        fprintf(stderr, "loader %d: free: %d %s\n", who, e, alloc_last_error());
                                        _exit(3);
                                }
        }
}

/*
 * come_and_go: the pool is not always there to take an Alloc.  The loader dies with the test: a
 * failed assertion leaves none behind (one in a pool that comes and goes ignores every error).
 */
static pid_t start_loader(const char *pool, int who, bool come_and_go) {
        pid_t pid = test_fork();

        cr_assert(pid >= 0);
        if (pid == 0)
                loader(pool, who, come_and_go);
        return pid;
}

static void signal_all(const pid_t *pids, int n, int sig) {
        for (int i = 0; i < n; i++)
                cr_assert_eq(kill(pids[i], sig), 0);
}

static void loaders_alive(const pid_t *pids, int n, int round) {
        for (int i = 0; i < n; i++) {
                int status = 0;
                cr_assert_eq(waitpid(pids[i], &status, WNOHANG), 0, "loader %d stopped at round %d: %#x: %s", i, round,
                             status, sysd_log(&s));
        }
}

/*
 * The loaders are killed; once allocd has let their connections go (what they held goes with
 * them, what they made PERSIST stays), a kill and a restart must bring back every keepN of the
 * rounds, and one more must change nothing.
 */
static void storm_end(const pid_t *pids, int n, int rounds) {
        char name[32];

        signal_all(pids, n, SIGKILL);
        for (int i = 0; i < n; i++)
                waitpid(pids[i], &(int){0}, 0);
        struct alloc_client *k = daemon_connect(&s.d);
        /*
         * A loader killed before it reclaimed after the last restart leaves a placeholder until allocd
         * sees its process end (a pidfd poll, a loop turn away): it goes at once by its serial (a pid
         * names live connections only).
         */
        struct alloc_status *left;
        cr_assert_eq(alloc_status(k, &left), 0);
        for (size_t j = 0; j < left->nclients; j++)
                for (int i = 0; i < n; i++)
                        if (left->clients[j].pid == pids[i])
                                alloc_drop_client(k, 0, left->clients[j].serial, NULL);
        alloc_status_free(left);
        size_t conns = 0;
        for (int i = 0; i < 500 && conns != 1; i++) {
                struct alloc_status *st;
                usleep(i ? 10000 : 0);
                cr_assert_eq(alloc_status(k, &st), 0);
                conns = st->nclients;
                alloc_status_free(st);
        }
        cr_assert_eq(conns, 1, "%zu connections", conns);
        alloc_disconnect(k);
        sysd_restart(&s, SIGKILL);
        all_restored();
        for (int round = 0; round < rounds; round++) {
                snprintf(name, sizeof(name), "keep%d", round);
                there(name, 100u + (unsigned)round);
        }
        same_after(SIGKILL);
}

/*
 * Kill -9 storms: the loaders run, allocd is killed (right after a compaction, or at a random
 * moment) and restarted, again and again, so that a state is adopted, appended to, compacted and
 * adopted again.  Every other round the loaders are stopped first and the dump must be the same
 * after the restart.  The PERSIST regions made between rounds keep their bytes throughout.
 */
Test(storm, kill_storm_under_load) {
        enum { ROUNDS = 16, LOADERS = 3 };
        pid_t pids[LOADERS];
        unsigned compacted = 0;
        char name[32];

        sysd_start(&s, STORM_CONF);
        pids[0] = start_loader("other", 0, false);
        pids[1] = start_loader("host", 1, false);
        pids[2] = start_loader("iso", 2, false);
        srand(7);
        for (int round = 0; round < ROUNDS; round++) {
                snprintf(name, sizeof(name), "keep%d", round);
                keep_one(round % 2 ? "host" : "iso", name, 100u + (unsigned)round);
                if (round % 2) {
                        /* Right after a compaction: the state's name changes (up to 10 s of load). */
                        int was = state_name();
                        for (int i = 0; i < 10000 && sysd_count(&s, was ? "state.0" : "state.1") == 0; i++)
                                usleep(1000);
                        compacted += sysd_count(&s, was ? "state.0" : "state.1") == 1;
                        sysd_restart(&s, round % 4 == 3 ? SIGTERM : SIGKILL); /* a stop under load too */
                        all_restored();
                } else {
                        usleep(50000 + (useconds_t)(rand() % 200000));
                        signal_all(pids, LOADERS, SIGSTOP);
                        usleep(20000); /* what they had sent is answered, and kept */
                        same_after(round % 4 ? SIGKILL : SIGTERM);
                        signal_all(pids, LOADERS, SIGCONT);
                }
                loaders_alive(pids, LOADERS, round);
        }
        cr_assert_geq(compacted, 2, "only %u compactions in the storm", compacted);
        storm_end(pids, LOADERS, ROUNDS);
}

/*
 * Reloads and restarts in a random order while loaders run, one in a pool that a reload adds, takes
 * out, or resizes (so at a restart it drains, and the pool configured is made when it has): each
 * start must restore the state it finds, whatever the log says of pools.
 */
Test(storm, reloads_and_restarts_under_load) {
        static const char *const extra[] = {"", "[pool extra]\nkind = host\nsize = 8M\n",
                                            "[pool extra]\nkind = host\nsize = 16M\n"};
        enum { ROUNDS = 24, LOADERS = 2 };
        char conf[512], name[32];
        pid_t pids[LOADERS];

        sysd_start(&s, STORM_CONF);
        pids[0] = start_loader("other", 0, false);
        pids[1] = start_loader("extra", 1, true);
        srand(11);
        for (int round = 0; round < ROUNDS; round++) {
                snprintf(conf, sizeof(conf), "%s%s", STORM_CONF, extra[rand() % 3]);
                snprintf(name, sizeof(name), "keep%d", round);
                keep_one("host", name, 100u + (unsigned)round);
                switch (rand() % 3) {
                case 0:
                        write_file(s.d.conf, conf);
                        kill(s.d.pid, SIGHUP);
                        usleep((useconds_t)(rand() % 100000));
                        break;
                default:
                        usleep((useconds_t)(rand() % 100000));
                        restart_with(conf, rand() % 3 ? SIGKILL : SIGTERM);
                }
                loaders_alive(pids, LOADERS, round);
        }
        storm_end(pids, LOADERS, ROUNDS);
}
