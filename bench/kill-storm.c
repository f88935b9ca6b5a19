/* SPDX-License-Identifier: MIT */
/*
 * kill-storm: allocd SIGKILLed at random moments while client processes of several uids allocate,
 * name, attach, write, free and disconnect in three pools, restarted as systemd restarts it (tests/
 * sysd.c plays systemd: the socket, the fd store, LISTEN_FDS).  It checks what allocd promises
 * (allocd(8), RESTART; liballoc-client(3), RECONNECTING): every call of a reconnecting client
 * carries on (no -ESTALE, no -ECONNRESET, no call past its timeout), every region a client holds
 * keeps its bytes, every name attaches to its bytes, and once every client is gone nothing is left
 * (no region, no placeholder, no byte used, no region fd in the store) and allocd's fds and
 * resident memory are as a fresh restart's.  Not a test: it takes random timings, and tens of
 * seconds; it exits 1 on a finding.
 *   kill-storm [--seconds S] [--workers N] [--seed N] [--min-ms MS] [--max-ms MS] [--term-every N]
 *              [--early-every N] [--reload 0|1] [--sigstop-ms MS]
 * --term-every N: every Nth stop is a SIGTERM.  --early-every N: every Nth start is killed again
 * within 0-20 ms of its exec (restoring, or just READY).  --reload 1: before a kill, one time in two,
 * a SIGHUP that adds, resizes or takes out the pool "extra", which the clients use too.
 * --sigstop-ms MS: half way, allocd is SIGSTOPped for MS, then SIGCONTed (clients' timeout: 5 s).
 */
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include "bench-util.h"
#include "kill-storm.h"

#define USAGE                                                                                                          \
        "usage: kill-storm [--seconds S (1-3600)] [--workers N (1-15)] [--seed N] [--min-ms MS] [--max-ms MS] "        \
        "[--term-every N] [--early-every N] [--reload 0|1] [--sigstop-ms MS]"

static const char *const users[] = {"alice", "bob", "mallory"};

#define CONF                                                                                                           \
        "[daemon]\nreclaim_grace = 20s\nlog_level = info\n"                                                            \
        "[pool host]\nkind = host\nsize = 64M\nmode = 0666\nquota_per_uid = 24M\n"                                     \
        "[pool other]\nkind = host\nsize = 16M\nmode = 0666\n"                                                         \
        "[pool iso]\nkind = host\nsize = 16M\nisolation = region\nmode = 0666\n"

struct shared *sh;
struct sysd s;
/* allocd's fds, what each is, into out (for a report when the counts differ). */
static void list_fds(pid_t pid, char *out, size_t len) {
        char path[64], target[256];
        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        DIR *d = opendir(path);
        out[0] = '\0';
        if (!d)
                return;
        for (struct dirent *e; (e = readdir(d));) {
                char p[320];
                if (e->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
                ssize_t n = readlink(p, target, sizeof(target) - 1);
                target[n > 0 ? n : 0] = '\0';
                snprintf(out + strlen(out), len - strlen(out), " %s=%s", e->d_name, target);
        }
        closedir(d);
}

static unsigned count_fds(pid_t pid) {
        char path[64];
        unsigned n = 0;
        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        DIR *d = opendir(path);
        if (!d)
                return 0;
        for (struct dirent *e; (e = readdir(d));)
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

/* The PERSIST regions whose makers disconnected: attached and freed, as their owner would. */
static unsigned free_leftovers(struct alloc_client *k) {
        unsigned n = 0;
        for (unsigned i = 0; i < NAMES; i++) {
                struct name_ent *ne = &sh->names[i];
                struct alloc_region r;
                if (atomic_load(&ne->state) != 1 || !ne->persist)
                        continue;
                int e = alloc_region_attach(k, ne->name, NULL, &r);
                if (e < 0) {
                        fprintf(stderr, "kill-storm: PERSIST %s: attach: %d %s\n", ne->name, e, alloc_last_error());
                        continue;
                }
                if (pattern_bad(r.cptr, r.size, ne->seed) >= 0) {
                        sh->w[MAXW - 1].mismatches++;
                        problem(&sh->w[MAXW - 1], "PERSIST %s lost its bytes", ne->name);
                }
                sh->w[MAXW - 1].checked_regions++;
                sh->w[MAXW - 1].checked_bytes += r.size;
                if (alloc_region_free(k, r.id) == 0)
                        n++;
        }
        return n;
}

/* Used bytes of every pool, regions of the dump, connections: once all are as wanted or 30 s passed. */
static bool settled(struct alloc_client *k, uint64_t *used, size_t *regions, size_t *conns) {
        for (int i = 0; i < 300; i++) {
                struct alloc_status *st;
                struct alloc_dump *dp;
                if (alloc_status(k, &st) < 0 || alloc_dump(k, NULL, &dp) < 0)
                        return false;
                *used = 0;
                for (size_t p = 0; p < st->npools; p++)
                        *used += st->pools[p].used;
                *conns = st->nclients;
                *regions = dp->nregions;
                alloc_status_free(st);
                alloc_dump_free(dp);
                if (!*used && !*regions && *conns == 1)
                        return true;
                usleep(100000);
        }
        return false;
}

/* Where a process that does not answer is: its state, and each thread's kernel stack and wchan. */
static void show_stuck(pid_t pid) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "grep State /proc/%d/status; for t in /proc/%d/task/*; do echo \"$t: $(cat $t/wchan)\"; cat $t/stack; "
                 "done; gdb -p %d -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^#|^Thread' | head -60",
                 (int)pid, (int)pid, (int)pid);
        if (system(cmd) != 0)
                fprintf(stderr, "kill-storm: could not look at pid %d\n", (int)pid);
}

/* Says when a step of the storm took more than a second: which, and how long. */
static void slow(const char *what, long t0) {
        long ms = now_ms() - t0;
        if (ms > 1000)
                fprintf(stderr, "kill-storm: %s took %ld ms\n", what, ms);
}

static _Atomic int term_done;
static pid_t term_pid;

/* A SIGTERM not obeyed within 10 s: where allocd is, then SIGKILL (sysd_kill waits for it to exit). */
static void *term_watch(void *arg) {
        (void)arg;
        for (int i = 0; i < 1000 && !atomic_load(&term_done); i++)
                usleep(10000);
        if (!atomic_load(&term_done)) {
                fprintf(stderr, "kill-storm: allocd %d did not stop within 10 s of SIGTERM\n", (int)term_pid);
                show_stuck(term_pid);
                kill(term_pid, SIGKILL);
        }
        return NULL;
}

static int early_us;

/* Kills the allocd sysd_spawn is starting early_us after it forked, before it is READY (or just after). */
static void *early_killer(void *arg) {
        (void)arg;
        pid_t pid;
        while (!(pid = __atomic_load_n(&s.d.pid, __ATOMIC_ACQUIRE)))
                usleep(50);
        usleep((useconds_t)early_us);
        kill(pid, SIGKILL);
        return NULL;
}

static const char *reload_conf(int which) {
        static char text[1024];
        static const char *const extra[] = {"", "[pool extra]\nkind = host\nsize = 8M\nmode = 0666\n",
                                            "[pool extra]\nkind = host\nsize = 16M\nmode = 0666\n"};
        snprintf(text, sizeof(text), "%s%s", CONF, extra[which]);
        return text;
}

int main(int argc, char **argv) {
        int nworkers = 6, min_ms = 50, max_ms = 500, term_every = 0, early_every = 0, reload = 0, seed = 1;
        int sigstop_ms = 0;
        double seconds = 30;

        const struct {
                const char *name;
                int *v, min, max;
        } num[] = {{"--workers", &nworkers, 1, MAXW - 1},
                   {"--seed", &seed, 0, 1 << 30},
                   {"--min-ms", &min_ms, 1, 60000},
                   {"--max-ms", &max_ms, 1, 60000},
                   {"--term-every", &term_every, 0, 1000},
                   {"--early-every", &early_every, 0, 1000},
                   {"--reload", &reload, 0, 1},
                   {"--sigstop-ms", &sigstop_ms, 0, 600000}};
        for (int i = 1; i < argc; i += 2) {
                size_t k = 0;
                if (i + 1 >= argc) {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
                if (!strcmp(argv[i], "--seconds")) {
                        if (!bench_arg_seconds(USAGE, argv[i + 1], 1, 3600, &seconds))
                                return 2;
                        continue;
                }
                while (k < sizeof(num) / sizeof(num[0]) && strcmp(argv[i], num[k].name))
                        k++;
                uint64_t v;
                if (k == sizeof(num) / sizeof(num[0])) {
                        fprintf(stderr, "%s\n", USAGE);
                        return 2;
                }
                if (!parse_u64(argv[i + 1], (uint64_t)num[k].min, (uint64_t)num[k].max, &v)) {
                        char want[64];
                        snprintf(want, sizeof(want), "a whole number from %d to %d", num[k].min, num[k].max);
                        return bad_arg(USAGE, num[k].name, argv[i + 1], want);
                }
                *num[k].v = (int)v;
        }
        if (min_ms > max_ms) {
                fprintf(stderr, "kill-storm: --min-ms %d is above --max-ms %d\n%s\n", min_ms, max_ms, USAGE);
                return 2;
        }
        srand((unsigned)seed);
        sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED)
                return 1;
        sysd_start(&s, CONF);
        sysd_restart(&s, SIGKILL); /* the baseline: a start that restored an empty state */
        usleep(300000);
        unsigned base_fds = count_fds(s.d.pid);
        static char base_list[4096], end_list[4096], again_list[4096];
        list_fds(s.d.pid, base_list, sizeof(base_list));
        unsigned long long base_rss = daemon_rss(&s.d);
        size_t base_store = s.nstore;

        pid_t pids[MAXW];
        for (int w = 0; w < nworkers; w++) {
                struct passwd *pw = getuid() == 0 ? getpwnam(users[w % 3]) : NULL;
                pids[w] = test_fork();
                if (pids[w] == 0)
                        worker_main(w, pw ? pw->pw_uid : getuid(), pw ? pw->pw_gid : getgid());
        }
        atomic_store(&sh->reloads, reload);
        unsigned kills = 0, terms = 0, failed_starts = 0, early = 0, hups = 0;
        long restart_max = 0, start = now_ms(), end = start + (long)(seconds * 1000);
        bool froze = false;
        while (now_ms() < end) {
                usleep((useconds_t)(min_ms + rand() % (max_ms - min_ms + 1)) * 1000);
                if (sigstop_ms && !froze && now_ms() > start + (long)(seconds * 500)) {
                        froze = true;
                        atomic_store(&sh->frozen, 1);
                        kill(s.d.pid, SIGSTOP);
                        usleep((useconds_t)sigstop_ms * 1000);
                        kill(s.d.pid, SIGCONT);
                        usleep((CALL_TIMEOUT_MS + 1000) * 1000); /* calls sent while it slept may still time out */
                        atomic_store(&sh->frozen, 0);
                }
                if (reload && rand() % 2) {
                        write_file(s.d.conf, reload_conf(rand() % 3));
                        kill(s.d.pid, SIGHUP);
                        fprintf(stderr, "kill-storm: [%ld] SIGHUP %d\n", now_ms() - start, (int)s.d.pid);
                        hups++;
                        usleep((useconds_t)(rand() % 30000));
                }
                bool term = term_every && (kills + terms + 1) % (unsigned)term_every == 0;
                long t0 = now_ms();
                fprintf(stderr, "kill-storm: [%ld] %s %d\n", t0 - start, term ? "SIGTERM" : "SIGKILL", (int)s.d.pid);
                pthread_t watch;
                if (term) {
                        term_pid = s.d.pid;
                        atomic_store(&term_done, 0);
                        pthread_create(&watch, NULL, term_watch, NULL);
                }
                sysd_kill(&s, term ? SIGTERM : SIGKILL);
                if (term) {
                        atomic_store(&term_done, 1);
                        pthread_join(watch, NULL);
                }
                slow(term ? "a stop by SIGTERM" : "a kill", t0);
                kills += !term;
                terms += term;
                int r;
                while (early_every && rand() % early_every == 0) {
                        pthread_t th;
                        early_us = rand() % 20000;
                        __atomic_store_n(&s.d.pid, 0, __ATOMIC_RELEASE);
                        pthread_create(&th, NULL, early_killer, NULL);
                        r = sysd_spawn(&s);
                        pthread_join(th, NULL);
                        if (r == -1) /* READY=1 before the kill: reap it */
                                sysd_kill(&s, SIGKILL);
                        early++;
                }
                r = sysd_spawn(&s);
                if (r != -1) {
                        failed_starts++;
                        fprintf(stderr, "kill-storm: allocd exited %d before READY=1:\n%s\n", r, sysd_log(&s));
                        break;
                }
                if (now_ms() - t0 > restart_max)
                        restart_max = now_ms() - t0;
        }
        /* The last allocd lives on: the workers check, free what they hold and go. */
        atomic_store(&sh->stop, 1);
        int failed_workers = 0;
        for (int w = 0; w < nworkers; w++) {
                int status = 0;
                long t0 = now_ms();
                while (waitpid(pids[w], &status, WNOHANG) == 0 && now_ms() - t0 < 60000)
                        usleep(10000);
                if (now_ms() - t0 >= 60000) {
                        problem(&sh->w[w], "worker %d did not end within 60 s of the stop", w);
                        kill(pids[w], SIGKILL);
                        waitpid(pids[w], &status, 0);
                }
                if (!WIFEXITED(status) || WEXITSTATUS(status))
                        failed_workers++;
        }
        struct alloc_client *k;
        if (alloc_connect(&k, s.d.sock, "kill-storm") < 0) {
                fprintf(stderr, "kill-storm: the last allocd (pid %d) does not answer: %s\n", (int)s.d.pid,
                        alloc_last_error());
                show_stuck(s.d.pid);
                return 1;
        }
        unsigned leftovers = free_leftovers(k);
        uint64_t used = 0;
        size_t regions = 0, conns = 0;
        bool clean = settled(k, &used, &regions, &conns);
        if (!clean) {
                struct alloc_dump *dp;
                if (alloc_dump(k, NULL, &dp) == 0) {
                        for (size_t i = 0; i < dp->nregions && i < 20; i++) {
                                fprintf(stderr,
                                        "kill-storm: left: %#llx %s %llu bytes flags %#x refs %u name '%s' uid %u\n",
                                        (unsigned long long)dp->regions[i].id, dp->regions[i].pool,
                                        (unsigned long long)dp->regions[i].size, dp->regions[i].flags,
                                        dp->regions[i].refs, dp->regions[i].name, dp->regions[i].uid);
                                for (unsigned j = 0; j < NAMES && dp->regions[i].name[0]; j++)
                                        if (!strcmp(sh->names[j].name, dp->regions[i].name))
                                                fprintf(stderr,
                                                        "kill-storm:   in the table: state %d id %#llx persist %d "
                                                        "freed rc %d, attached by its maker too %d\n",
                                                        atomic_load(&sh->names[j].state),
                                                        (unsigned long long)sh->names[j].id, sh->names[j].persist,
                                                        sh->names[j].freed_rc, sh->names[j].self_attached);
                        }
                        alloc_dump_free(dp);
                }
        }
        alloc_disconnect(k);
        if (reload) { /* back to the pools of the start, so that the fds compare: "extra" drains, empty */
                write_file(s.d.conf, CONF);
                kill(s.d.pid, SIGHUP);
        }
        usleep(300000);
        unsigned end_fds = count_fds(s.d.pid);
        list_fds(s.d.pid, end_list, sizeof(end_list));
        unsigned long long end_rss = daemon_rss(&s.d);
        size_t end_store = s.nstore;
        sysd_restart(&s, SIGKILL);
        usleep(300000); /* its notifications' sockets closed */
        unsigned again_fds = count_fds(s.d.pid);
        list_fds(s.d.pid, again_list, sizeof(again_list));
        if (again_fds != base_fds || end_fds != base_fds)
                printf("fds at the start:%s\nat the end:%s\nafter one more restart:%s\n", base_list, end_list,
                       again_list);
        unsigned long long again_rss = daemon_rss(&s.d);

        struct wstat t = {0};
        for (int w = 0; w < MAXW; w++) {
                struct wstat *x = &sh->w[w];
                t.ops += x->ops, t.allocs += x->allocs, t.attaches += x->attaches, t.frees += x->frees;
                t.detaches += x->detaches, t.disconnects += x->disconnects, t.checked_regions += x->checked_regions;
                t.checked_bytes += x->checked_bytes, t.mismatches += x->mismatches, t.unexpected += x->unexpected;
                t.expected_errs += x->expected_errs, t.hung += x->hung;
                for (int e = 0; e < 160; e++)
                        t.by_errno[e] += x->by_errno[e];
                if (x->max_call_ms > t.max_call_ms)
                        t.max_call_ms = x->max_call_ms;
        }
        printf("kills %u (and %u of a starting allocd), SIGTERMs %u, SIGHUPs %u, failed starts %u, longest restart %ld "
               "ms\n",
               kills, early, terms, hups, failed_starts, restart_max);
        printf("calls %llu (allocs %llu, attaches %llu, frees %llu, detaches %llu, disconnects %llu), longest %llu "
               "ms\n",
               (unsigned long long)t.ops, (unsigned long long)t.allocs, (unsigned long long)t.attaches,
               (unsigned long long)t.frees, (unsigned long long)t.detaches, (unsigned long long)t.disconnects,
               (unsigned long long)t.max_call_ms);
        printf("checked %llu regions, %llu bytes; mismatches %llu; unexpected errors %llu (allowed %llu); hung %llu; "
               "failed workers %d\n",
               (unsigned long long)t.checked_regions, (unsigned long long)t.checked_bytes,
               (unsigned long long)t.mismatches, (unsigned long long)t.unexpected, (unsigned long long)t.expected_errs,
               (unsigned long long)t.hung, failed_workers);
        printf("allowed errors:");
        for (int e = 0; e < 160; e++)
                if (t.by_errno[e])
                        printf(" %s %llu,", strerrorname_np(e) ? strerrorname_np(e) : "?",
                               (unsigned long long)t.by_errno[e]);
        printf("\n");
        printf("end: PERSIST leftovers freed %u; settled %s: used %llu bytes, %zu regions, %zu connections\n",
               leftovers, clean ? "yes" : "NO", (unsigned long long)used, regions, conns);
        printf("allocd fds %u -> %u (after one more restart %u); RSS %llu -> %llu KiB (%llu); store %zu -> %zu fds\n",
               base_fds, end_fds, again_fds, base_rss >> 10, end_rss >> 10, again_rss >> 10, base_store, end_store);
        /* allocd's log, for what it said of its restores: kept, and its errors shown. */
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "cp %s /tmp/kill-storm.log; grep -v 'restored from the fd store' %s | grep -i -E "
                 "'error|lost|cannot|warn' | sort | uniq -c | sort -rn | head -20",
                 s.log, s.log);
        if (system(cmd) != 0)
                printf("(nothing in allocd's log)\n");
        bool bad = t.mismatches || t.unexpected || t.hung || failed_workers || failed_starts || !clean ||
                   again_fds > base_fds || end_fds > base_fds || end_store != base_store;
        sysd_end(&s);
        return bad ? 1 : 0;
}
