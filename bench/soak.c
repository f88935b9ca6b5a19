/* SPDX-License-Identifier: MIT */
/*
 * soak: allocd as the long-running daemon it is meant to be, under churn (soak-worker.c: clients of
 * alice, bob and mallory allocating, naming, attaching, waiting out, cancelling, saying Goodbye and
 * SIGKILLed), with allocctl's commands, SIGHUP reloads that add, resize and take out a pool, and
 * restarts that keep the state (tests/sysd.c plays systemd).  Every --sample seconds it samples
 * what could grow: allocd's resident and anonymous memory, its fds, the state memfd's size, the
 * fd store, regions, connections, waiters and its log's bytes; then once every client is gone,
 * and once more after a restart.  It prints the table, and a JSON array with --json FILE.
 * Not a test: it takes minutes; it exits 1 when allocd did not settle, or its fds or state grew, or
 * a call failed with an errno the soak does not cause (each printed with its call and arguments).
 *   soak [--seconds S] [--workers N] [--sample S] [--restart-every S] [--reload-every S]
 *        [--json FILE] [--log FILE]
 * $ALLOCD_PATH runs another allocd (an ASan build's, whose LeakSanitizer report the last SIGTERM
 * leaves in --log FILE, allocd's stderr kept).
 */
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "soak.h"
#include "sysd.h"

#define USAGE                                                                                                          \
        "usage: soak [--seconds S (1-86400)] [--workers N (1-16)] [--sample S (1-3600)] [--restart-every S] "          \
        "[--reload-every S] [--json FILE] [--log FILE]"

#define CONF                                                                                                           \
        "[daemon]\nreclaim_grace = 5s\n"                                                                               \
        "[pool host]\nkind = host\nsize = 64M\nmode = 0666\nquota_per_uid = 24M\n"                                     \
        "[pool other]\nkind = host\nsize = 16M\nmode = 0666\n"                                                         \
        "[pool iso]\nkind = host\nsize = 16M\nisolation = region\nmode = 0666\n"                                       \
        "[pool tight]\nkind = host\nsize = 4M\nmode = 0666\n"

static const char *const users[] = {"alice", "bob", "mallory"};
static struct sysd s;
static const char *log_copy;

struct sample {
        char when[16];
        double t;
        int pid;
        unsigned long long rss, anon, data; /* KiB */
        unsigned fds, memfds;
        unsigned long long state; /* bytes of the state memfds allocd holds */
        size_t store, regions, conns, waiters;
        unsigned long long used, log, ops;
        size_t uids;                         /* per-uid usage records over all pools */
        unsigned mbad;                       /* metrics below 0 or over 1e18: a wrapped counter */
        double m_regions, m_used, m_clients; /* what allocctl metrics said, a moment later */
};

/* A line of /proc/PID/status ("VmRSS:"), in KiB. */
static unsigned long long status_kib(pid_t pid, const char *key) {
        char path[64], line[256];
        unsigned long long v = 0;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (!strncmp(line, key, strlen(key)))
                        sscanf(line + strlen(key), "%llu", &v);
        fclose(f);
        return v;
}

/* allocd's fds, and the state memfds among them with their sizes. */
static void fds_of(pid_t pid, struct sample *sm) {
        char path[64], p[320], target[256];
        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        DIR *d = opendir(path);
        if (!d)
                return;
        for (struct dirent *e; (e = readdir(d));) {
                struct stat st;
                if (e->d_name[0] == '.')
                        continue;
                sm->fds++;
                snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
                ssize_t n = readlink(p, target, sizeof(target) - 1);
                target[n > 0 ? n : 0] = '\0';
                if (strstr(target, "memfd:allocd-state") && stat(p, &st) == 0) {
                        sm->memfds++;
                        sm->state += (unsigned long long)st.st_size;
                }
        }
        closedir(d);
}

static unsigned long long ops_total(struct soak_shared *sh) {
        unsigned long long n = 0;
        for (int w = 0; w < SOAK_MAXW; w++)
                n += sh->w[w].ops;
        return n;
}

/* allocctl metrics, read as Prometheus text: the sums to compare with Status, and any value that wrapped. */
static void metrics(struct sample *sm) {
        char cmd[512], line[1024];
        snprintf(cmd, sizeof(cmd), "%s --socket %s metrics 2>/dev/null", ALLOCCTL_PATH, s.d.sock);
        FILE *f = popen(cmd, "re");
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                char *v = strrchr(line, ' ');
                if (line[0] == '#' || !v)
                        continue;
                double x = strtod(v + 1, NULL);
                sm->mbad += x < 0 || x >= 1e18;
                if (!strncmp(line, "allocd_pool_regions{", 20))
                        sm->m_regions += x;
                else if (!strncmp(line, "allocd_pool_used_bytes{", 23))
                        sm->m_used += x;
                else if (!strncmp(line, "allocd_clients ", 15))
                        sm->m_clients += x;
        }
        pclose(f);
}

static void take(struct sample *sm, const char *when, double t0, struct soak_shared *sh) {
        struct alloc_client *k;
        struct stat st;

        memset(sm, 0, sizeof(*sm));
        snprintf(sm->when, sizeof(sm->when), "%s", when);
        sm->t = now() - t0;
        sm->pid = s.d.pid;
        sm->rss = status_kib(s.d.pid, "VmRSS:");
        sm->anon = status_kib(s.d.pid, "RssAnon:");
        sm->data = status_kib(s.d.pid, "VmData:");
        fds_of(s.d.pid, sm);
        sm->store = s.nstore;
        sm->log = stat(s.log, &st) == 0 ? (unsigned long long)st.st_size : 0;
        sm->ops = ops_total(sh);
        if (alloc_connect(&k, s.d.sock, "soak-sampler") < 0)
                return;
        struct alloc_status *stt;
        if (alloc_status(k, &stt) == 0) {
                for (size_t i = 0; i < stt->npools; i++) {
                        sm->regions += stt->pools[i].regions;
                        sm->used += stt->pools[i].used;
                        sm->uids += stt->pools[i].nusage + stt->pools[i].usage_omitted;
                }
                for (size_t i = 0; i < stt->nclients; i++)
                        sm->waiters += stt->clients[i].waiters; /* attaches waiting for a name too */
                sm->conns = stt->nclients - 1;                  /* not the sampler's */
                alloc_status_free(stt);
        }
        alloc_disconnect(k);
        metrics(sm);
}

static void print_sample(const struct sample *sm) {
        printf("%-9s %7.0f %7d %8llu %8llu %9llu %5u %3u %10llu %5zu %7zu %5zu %5zu %4zu %10llu %10llu %10llu %4u\n",
               sm->when, sm->t, sm->pid, sm->rss, sm->anon, sm->data, sm->fds, sm->memfds, sm->state, sm->store,
               sm->regions, sm->conns, sm->waiters, sm->uids, sm->used, sm->log, sm->ops, sm->mbad);
        fflush(stdout);
}

static void json_sample(FILE *f, const struct sample *sm, bool first) {
        fprintf(f,
                "%s\n  {\"when\": \"%s\", \"t\": %.1f, \"pid\": %d, \"rss_kib\": %llu, \"anon_kib\": %llu, "
                "\"data_kib\": %llu, \"fds\": %u, \"state_memfds\": %u, \"state_bytes\": %llu, \"store_fds\": %zu, "
                "\"regions\": %zu, \"connections\": %zu, \"waiters\": %zu, \"used_bytes\": %llu, \"log_bytes\": %llu, "
                "\"client_calls\": %llu, \"uid_records\": %zu, \"metrics_wrapped\": %u}",
                first ? "" : ",", sm->when, sm->t, sm->pid, sm->rss, sm->anon, sm->data, sm->fds, sm->memfds, sm->state,
                sm->store, sm->regions, sm->conns, sm->waiters, sm->used, sm->log, sm->ops, sm->uids, sm->mbad);
}

static void allocctl_all(void) {
        static const char *const cmds[] = {"status", "--json status", "dump", "clients", "metrics"};
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                char cmd[512];
                snprintf(cmd, sizeof(cmd), "%s --socket %s %s >/dev/null 2>&1", ALLOCCTL_PATH, s.d.sock, cmds[i]);
                if (system(cmd) != 0)
                        fprintf(stderr, "soak: allocctl %s failed\n", cmds[i]);
        }
}

static const char *reload_conf(unsigned which) {
        static char text[1024];
        static const char *const extra[] = {"", "[pool extra]\nkind = host\nsize = 8M\nmode = 0666\n",
                                            "[pool extra]\nkind = host\nsize = 16M\nmode = 0666\n"};
        snprintf(text, sizeof(text), "%s%s", CONF, extra[which % 3]);
        return text;
}

/* The PERSIST regions their makers left: attached and freed, as their owner would; the rest settles. */
static bool settle(struct alloc_client *k) {
        for (int i = 0; i < 300; i++) {
                struct alloc_dump *dp;
                struct alloc_status *st;
                if (alloc_dump(k, NULL, &dp) < 0)
                        return false;
                for (size_t j = 0; j < dp->nregions; j++) {
                        struct alloc_region r;
                        if ((dp->regions[j].flags & ALLOC_PERSIST) && dp->regions[j].name[0] &&
                            alloc_region_attach(k, dp->regions[j].name, NULL, &r) == 0)
                                alloc_region_free(k, r.id);
                }
                size_t n = dp->nregions;
                alloc_dump_free(dp);
                if (alloc_status(k, &st) < 0)
                        return false;
                size_t conns = st->nclients;
                alloc_status_free(st);
                if (!n && conns == 1)
                        return true;
                usleep(100000);
        }
        return false;
}

static void keep_log(void) {
        char cmd[512];
        if (!log_copy || !s.log[0])
                return;
        snprintf(cmd, sizeof(cmd), "cp %s %s", s.log, log_copy);
        if (system(cmd) != 0)
                fprintf(stderr, "soak: could not keep allocd's log\n");
}

int main(int argc, char **argv) {
        double seconds = 60, sample_s = 30, restart_s = 0, reload_s = 0;
        int nworkers = 6;
        const char *json = NULL;

        for (int i = 1; i < argc; i += 2) {
                uint64_t v;
                if (i + 1 >= argc) {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
                const char *o = argv[i], *a = argv[i + 1];
                if (!strcmp(o, "--seconds")) {
                        if (!bench_arg_seconds(USAGE, a, 1, 86400, &seconds))
                                return 2;
                } else if (!strcmp(o, "--sample")) {
                        if (!bench_arg_seconds(USAGE, a, 1, 3600, &sample_s))
                                return 2;
                } else if (!strcmp(o, "--restart-every")) {
                        if (!bench_arg_seconds(USAGE, a, 0, 86400, &restart_s))
                                return 2;
                } else if (!strcmp(o, "--reload-every")) {
                        if (!bench_arg_seconds(USAGE, a, 0, 86400, &reload_s))
                                return 2;
                } else if (!strcmp(o, "--workers")) {
                        if (!parse_u64(a, 1, SOAK_MAXW, &v))
                                return bad_arg(USAGE, o, a, "a whole number from 1 to 16");
                        nworkers = (int)v;
                } else if (!strcmp(o, "--json")) {
                        json = a;
                } else if (!strcmp(o, "--log")) {
                        log_copy = a;
                } else {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
        }
        struct soak_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED)
                return 1;
        atexit(keep_log); /* a check of sysd.c that fails exits: allocd's log is kept all the same */
        sysd_start(&s, CONF);
        snprintf(sh->sock, sizeof(sh->sock), "%s", s.d.sock);

        static struct sample smp[4096];
        size_t ns = 0;
        double t0 = now();
        printf("%-9s %7s %7s %8s %8s %9s %5s %3s %10s %5s %7s %5s %5s %4s %10s %10s %10s %4s\n", "when", "t_s", "pid",
               "rss_KiB", "anon_KiB", "data_KiB", "fds", "mfd", "state_B", "store", "regions", "conns", "wait", "uids",
               "used_B", "log_B", "calls", "mbad");
        take(&smp[ns], "start", t0, sh);
        print_sample(&smp[ns++]);

        pid_t pids[SOAK_MAXW];
        for (int w = 0; w < nworkers; w++) {
                struct passwd *pw = getuid() == 0 ? getpwnam(users[w % 3]) : NULL;
                if ((pids[w] = test_fork()) == 0)
                        soak_worker(sh, w, pw ? pw->pw_uid : getuid(), pw ? pw->pw_gid : getgid());
        }
        double next_sample = sample_s, next_ctl = 10, next_restart = restart_s, next_reload = reload_s;
        unsigned restarts = 0, reloads = 0;
        while (now() - t0 < seconds && ns < 4090) {
                double t = now() - t0;
                usleep(100000);
                if (t >= next_sample) {
                        take(&smp[ns], "load", t0, sh);
                        print_sample(&smp[ns++]);
                        next_sample += sample_s;
                }
                if (t >= next_ctl) {
                        allocctl_all();
                        next_ctl += 10;
                }
                if (reload_s > 0 && t >= next_reload) {
                        write_file(s.d.conf, reload_conf(++reloads));
                        kill(s.d.pid, SIGHUP);
                        next_reload += reload_s;
                }
                if (restart_s > 0 && t >= next_restart) {
                        sysd_restart(&s, ++restarts % 2 ? SIGTERM : SIGKILL);
                        next_restart += restart_s;
                }
        }
        atomic_store(&sh->stop, 1);
        for (int w = 0; w < nworkers; w++)
                waitpid(pids[w], NULL, 0);
        write_file(s.d.conf, CONF); /* back to the pools of the start: "extra" drains, empty, and goes */
        kill(s.d.pid, SIGHUP);
        struct alloc_client *k;
        bool clean = false;
        if (alloc_connect(&k, s.d.sock, "soak") == 0) {
                clean = settle(k);
                alloc_disconnect(k);
        }
        usleep(500000);
        take(&smp[ns], "end", t0, sh);
        print_sample(&smp[ns++]);
        sleep(10); /* past reclaim_grace, a compaction's turn, allocd's idle */
        take(&smp[ns], "idle", t0, sh);
        print_sample(&smp[ns++]);
        sysd_restart(&s, SIGTERM);
        usleep(500000);
        take(&smp[ns], "restarted", t0, sh);
        print_sample(&smp[ns++]);

        struct soak_count c = {0};
        for (int w = 0; w < SOAK_MAXW; w++) {
                const struct soak_count *x = &sh->w[w];
                c.ops += x->ops, c.allocs += x->allocs, c.frees += x->frees, c.attaches += x->attaches;
                c.detaches += x->detaches, c.seals += x->seals, c.timeouts += x->timeouts, c.cancels += x->cancels;
                c.goodbyes += x->goodbyes, c.shorts += x->shorts, c.killed += x->killed;
                c.reconnects += x->reconnects;
                for (int e = 0; e < SOAK_ERRNO; e++)
                        c.by_errno[e] += x->by_errno[e];
        }
        printf("calls %llu: allocs %llu, frees %llu, attaches %llu, detaches %llu, seals %llu, waits timed out %llu, "
               "cancelled %llu, goodbyes %llu, short connections %llu, clients SIGKILLed %llu, long connections %llu; "
               "restarts %u, reloads %u\nerrors:",
               (unsigned long long)c.ops, (unsigned long long)c.allocs, (unsigned long long)c.frees,
               (unsigned long long)c.attaches, (unsigned long long)c.detaches, (unsigned long long)c.seals,
               (unsigned long long)c.timeouts, (unsigned long long)c.cancels, (unsigned long long)c.goodbyes,
               (unsigned long long)c.shorts, (unsigned long long)c.killed, (unsigned long long)c.reconnects, restarts,
               reloads);
        for (int e = 0; e < SOAK_ERRNO; e++)
                if (c.by_errno[e])
                        printf(" %s %llu", strerrorname_np(e) ? strerrorname_np(e) : "?",
                               (unsigned long long)c.by_errno[e]);
        printf("\n");
        unsigned nodd = atomic_load(&sh->nodd);
        if (nodd)
                printf("unexpected errors %u (the first %u):\n", nodd, nodd < SOAK_ODD ? nodd : SOAK_ODD);
        for (unsigned i = 0; i < nodd && i < SOAK_ODD; i++)
                printf("  %s\n", sh->odd[i]);
        if (json) {
                FILE *f = fopen(json, "we");
                if (f) {
                        fprintf(f, "[");
                        for (size_t i = 0; i < ns; i++)
                                json_sample(f, &smp[i], i == 0);
                        fprintf(f, "\n]\n");
                        fclose(f);
                }
        }
        const struct sample *st = &smp[0], *end = &smp[ns - 2], *again = &smp[ns - 1];
        /* Quiet at the end: metrics must say what Status said (allocctl's own connection counted there). */
        bool magree = end->m_regions == (double)end->regions && end->m_used == (double)end->used &&
                      end->m_clients == (double)end->conns + 1;
        unsigned mbad = 0;
        for (size_t i = 0; i < ns; i++)
                mbad += smp[i].mbad;
        printf("metrics at the end: regions %.0f, used %.0f, clients %.0f (status: %zu, %llu, %zu + allocctl): %s; "
               "wrapped or negative values in all samples: %u\n",
               end->m_regions, end->m_used, end->m_clients, end->regions, end->used, end->conns,
               magree ? "agree" : "DISAGREE", mbad);
        bool bad = !clean || end->fds > st->fds || again->fds > st->fds || end->regions || end->conns || end->waiters ||
                   end->uids || end->store > st->store || !magree || mbad || nodd;
        printf("settled %s; fds %u -> %u (restarted %u); store %zu -> %zu; state %llu -> %llu bytes\n",
               clean ? "yes" : "NO", st->fds, end->fds, again->fds, st->store, end->store, st->state, end->state);
        sysd_kill(&s, SIGTERM); /* an ASan allocd's LeakSanitizer speaks now: its log is kept first (atexit) */
        keep_log();
        log_copy = NULL;
        sysd_end(&s);
        return bad ? 1 : 0;
}
