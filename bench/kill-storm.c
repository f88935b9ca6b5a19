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
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <grp.h>

#include "sysd.h"

#define MAXW 16
#define NAMES (1 << 17)
#define HELD 24
#define CALL_TIMEOUT_MS 5000
/* A call may wait out a restart (up to 20 s to READY) and its own timeout: past this it hung. */
#define HUNG_MS 25000

static const char *const pools[] = {"host", "other", "iso", "extra"};
static const char *const users[] = {"alice", "bob", "mallory"};

#define CONF                                                                                                           \
        "[daemon]\nreclaim_grace = 20s\nlog_level = info\n"                                                            \
        "[pool host]\nkind = host\nsize = 64M\nmode = 0666\nquota_per_uid = 24M\n"                                     \
        "[pool other]\nkind = host\nsize = 16M\nmode = 0666\n"                                                         \
        "[pool iso]\nkind = host\nsize = 16M\nisolation = region\nmode = 0666\n"

struct name_ent {
        char name[40];
        unsigned seed;
        uint64_t size;
        bool persist;
        uint64_t id;
        int freed_rc;      /* what the maker's free returned */
        _Atomic int state; /* 0 free, 1 published and sealed, 2 freed by its maker */
};

struct wstat {
        uint64_t ops, allocs, attaches, frees, detaches, disconnects, checked_regions, checked_bytes;
        uint64_t mismatches, unexpected, expected_errs, hung, max_call_ms;
        uint64_t by_errno[160]; /* the allowed errors, by errno */
        char first_problem[256];
};

struct shared {
        _Atomic int stop;
        _Atomic int frozen;  /* allocd is SIGSTOPped (or was, within its timeout): -ETIME is expected */
        _Atomic int reloads; /* a reload storm: the pool "extra" comes and goes */
        _Atomic unsigned nnames;
        struct wstat w[MAXW];
        struct name_ent names[NAMES];
};

static struct shared *sh;
static struct sysd s;

static long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pattern(void *p, uint64_t size, unsigned seed) {
        uint32_t *w = p;
        for (uint64_t i = 0; i < size / 4; i++)
                w[i] = seed * 2654435761u + (uint32_t)i;
}

/* The index of the first word that is not the pattern's, or -1. */
static long pattern_bad(const void *p, uint64_t size, unsigned seed) {
        const uint32_t *w = p;
        for (uint64_t i = 0; i < size / 4; i++)
                if (w[i] != seed * 2654435761u + (uint32_t)i)
                        return (long)i;
        return -1;
}

static void problem(struct wstat *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct wstat *st, const char *fmt, ...) {
        va_list ap;
        char msg[256];

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "kill-storm: %s\n", msg);
        if (!st->first_problem[0])
                snprintf(st->first_problem, sizeof(st->first_problem), "%s", msg);
}

struct held {
        struct alloc_region r;
        unsigned seed;
        bool mine, unknown; /* unknown: its seed is not known (attached as the table wrapped) */
        int name;           /* index in sh->names, or -1 */
};

struct worker {
        int w;
        struct wstat *st;
        struct alloc_client *k;
        struct held h[HELD];
        int n;
        unsigned rng, made;
        long call_start;
};

static unsigned rnd(struct worker *x) {
        x->rng = x->rng * 1103515245u + 12345u;
        return x->rng >> 8;
}

static void call_begin(struct worker *x) {
        x->call_start = now_ms();
}

/* After each call: its time, and whether its error is one the storm allows. */
static bool call_end(struct worker *x, int e, const char *what, bool allowed) {
        long ms = now_ms() - x->call_start;

        x->st->ops++;
        if ((uint64_t)ms > x->st->max_call_ms)
                x->st->max_call_ms = (uint64_t)ms;
        if (ms > HUNG_MS) {
                x->st->hung++;
                problem(x->st, "worker %d: %s took %ld ms", x->w, what, ms);
        }
        if (e >= 0)
                return true;
        if (e == -ETIME && atomic_load(&sh->frozen))
                allowed = true;
        if (allowed) {
                x->st->expected_errs++;
                x->st->by_errno[-e < 160 ? -e : 0]++;
                return false;
        }
        x->st->unexpected++;
        problem(x->st, "worker %d: %s: %d (%s) %s", x->w, what, e, strerror(-e), alloc_last_error());
        return false;
}

static void check(struct worker *x, struct held *h) {
        if (h->unknown)
                return;
        long bad = pattern_bad(h->r.cptr, h->r.size, h->seed);

        x->st->checked_regions++;
        x->st->checked_bytes += h->r.size;
        if (bad >= 0) {
                x->st->mismatches++;
                problem(x->st, "worker %d: region %#llx (%s, %llu bytes, %s, name %s) lost its bytes at word %ld", x->w,
                        (unsigned long long)h->r.id, h->r.pool, (unsigned long long)h->r.size,
                        h->mine ? "made here" : "attached", h->name >= 0 ? sh->names[h->name].name : "-", bad);
        }
}

static void drop(struct worker *x, int i) {
        struct held *h = &x->h[i];
        int e;

        check(x, h);
        if (h->mine && h->name >= 0)
                atomic_store(&sh->names[h->name].state, 2); /* before the free: an attach now finds it or not */
        call_begin(x);
        if (h->mine) {
                e = alloc_region_free(x->k, h->r.id);
                x->st->frees++;
        } else {
                e = alloc_region_detach(x->k, h->r.id);
                x->st->detaches++;
        }
        call_end(x, e, h->mine ? "free" : "detach", false);
        if (h->mine && h->name >= 0)
                sh->names[h->name].freed_rc = e;
        x->h[i] = x->h[--x->n];
}

static void do_alloc(struct worker *x) {
        struct held *h = &x->h[x->n];
        const char *pool = pools[rnd(x) % (atomic_load(&sh->reloads) ? 4 : 3)];
        uint64_t size = 4096u * (1 + rnd(x) % 32);
        bool named = rnd(x) % 3 == 0, persist = named && rnd(x) % 4 == 0, zero = rnd(x) % 2;
        char name[40];
        int slot = -1;

        snprintf(name, sizeof(name), "w%d/%u", x->w, x->made++);
        struct alloc_opts o = {.flags = ALLOC_NOWAIT | (zero ? ALLOC_ZERO : 0) | (persist ? ALLOC_PERSIST : 0) |
                                        (named ? ALLOC_UNSEALED : 0),
                               .name = named ? name : NULL};
        call_begin(x);
        int e = alloc_region_new(x->k, pool, size, &o, &h->r);
        x->st->allocs++;
        /* -EMFILE: the fd store is full of region memfds ("the store is full"); extra: not there, or draining. */
        bool extra = !strcmp(pool, "extra");
        if (!call_end(x, e, "alloc",
                      e == -EAGAIN || e == -EDQUOT || (e == -EMFILE && !strcmp(pool, "iso")) ||
                              (extra && (e == -ENODEV || e == -EBUSY || e == -ENOSPC || e == -E2BIG))))
                return;
        h->seed = (unsigned)x->w << 24 | x->made;
        h->mine = true;
        h->unknown = false;
        h->name = -1;
        if (zero) {
                const unsigned char *p = h->r.cptr;
                for (uint64_t j = 0; j < h->r.size; j++)
                        if (p[j]) {
                                x->st->mismatches++;
                                problem(x->st, "worker %d: ZERO region %#llx of %s not zero at %llu", x->w,
                                        (unsigned long long)h->r.id, pool, (unsigned long long)j);
                                break;
                        }
        }
        pattern(h->r.ptr, h->r.size, h->seed);
        x->n++;
        if (!named)
                return;
        call_begin(x);
        e = alloc_region_seal(x->k, h->r.id);
        if (!call_end(x, e, "seal", false))
                return;
        slot = (int)(atomic_fetch_add(&sh->nnames, 1) % NAMES);
        struct name_ent *ne = &sh->names[slot];
        if (atomic_load(&ne->state) == 1) {
                /* The table wrapped over a live name: this one is not tracked (a PERSIST one is a leftover). */
                problem(x->st, "worker %d: the name table is full: raise NAMES", x->w);
                x->st->unexpected++;
                return;
        }
        snprintf(ne->name, sizeof(ne->name), "%s", name);
        ne->seed = h->seed;
        ne->size = h->r.size;
        ne->persist = persist;
        ne->id = h->r.id;
        atomic_store(&ne->state, 1);
        h->name = slot;
}

static void do_attach(struct worker *x) {
        unsigned nn = atomic_load(&sh->nnames);
        if (!nn)
                return;
        int slot = (int)(rnd(x) % (nn < NAMES ? nn : NAMES));
        struct name_ent *ne = &sh->names[slot];
        if (atomic_load(&ne->state) != 1)
                return;
        char name[40];
        unsigned seed = ne->seed;
        snprintf(name, sizeof(name), "%s", ne->name);
        struct held *h = &x->h[x->n];
        call_begin(x);
        int e = alloc_region_attach(x->k, name, NULL, &h->r);
        x->st->attaches++;
        /*
         * Gone since (its maker freed it, or disconnected): -ENOENT.  In "extra" restored draining (a
         * restart after a reload took it out or resized it): -EACCES, its access rules gone with its
         * section (allocd(8), RESTART).
         */
        if (!call_end(x, e, "attach", e == -ENOENT || (e == -EACCES && atomic_load(&sh->reloads))))
                return;
        h->seed = seed;
        h->mine = false;
        h->name = slot;
        x->n++;
        /* The slot taken over by another name meanwhile (the table wrapped): not this region's seed. */
        h->unknown = strcmp(ne->name, name) || ne->seed != seed;
        check(x, h);
}

static void connect_worker(struct worker *x) {
        int e;
        for (int i = 0; (e = alloc_connect(&x->k, s.d.sock, "kill-storm")) < 0; i++) {
                if (i > 100) {
                        problem(x->st, "worker %d: connect: %d %s", x->w, e, alloc_last_error());
                        _exit(3);
                }
                usleep(100000);
        }
        alloc_set_timeout(x->k, CALL_TIMEOUT_MS);
}

/*
 * tidy: frees and detaches all first; else the lease lets go of what the connection holds, and
 * what it made PERSIST stays, its name in the table, for the end to free.
 */
static void disconnect_worker(struct worker *x, bool tidy) {
        while (tidy && x->n)
                drop(x, (int)(rnd(x) % (unsigned)x->n));
        for (int i = 0; i < x->n; i++)
                check(x, &x->h[i]);
        x->n = 0;
        alloc_disconnect(x->k);
        x->st->disconnects++;
        x->k = NULL;
}

static _Noreturn void worker_main(int w, uid_t uid, gid_t gid) {
        struct worker x = {.w = w, .st = &sh->w[w], .rng = 0x9e3779b9u * (unsigned)(w + 1)};

        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0 || !die_with_test())
                _exit(4);
        connect_worker(&x);
        while (!atomic_load(&sh->stop)) {
                unsigned op = rnd(&x) % 100;
                if (op < 35 && x.n < HELD)
                        do_alloc(&x);
                else if (op < 55 && x.n < HELD)
                        do_attach(&x);
                else if (op < 80 && x.n)
                        drop(&x, (int)(rnd(&x) % (unsigned)x.n));
                else if (op < 98) {
                        for (int i = 0; i < x.n; i++)
                                check(&x, &x.h[i]);
                } else {
                        disconnect_worker(&x, op == 98);
                        connect_worker(&x);
                }
        }
        disconnect_worker(&x, true);
        _exit(x.st->mismatches || x.st->unexpected || x.st->hung ? 1 : 0);
}

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
        int seconds = 30, nworkers = 6, min_ms = 50, max_ms = 500, term_every = 0, early_every = 0, reload = 0;
        int sigstop_ms = 0;
        unsigned seed = 1;

        for (int i = 1; i + 1 < argc; i += 2) {
                int v = atoi(argv[i + 1]);
                if (!strcmp(argv[i], "--seconds"))
                        seconds = v;
                else if (!strcmp(argv[i], "--workers"))
                        nworkers = v < MAXW - 1 ? v : MAXW - 1;
                else if (!strcmp(argv[i], "--seed"))
                        seed = (unsigned)v;
                else if (!strcmp(argv[i], "--min-ms"))
                        min_ms = v;
                else if (!strcmp(argv[i], "--max-ms"))
                        max_ms = v;
                else if (!strcmp(argv[i], "--term-every"))
                        term_every = v;
                else if (!strcmp(argv[i], "--early-every"))
                        early_every = v;
                else if (!strcmp(argv[i], "--reload"))
                        reload = v;
                else if (!strcmp(argv[i], "--sigstop-ms"))
                        sigstop_ms = v;
                else {
                        fprintf(stderr, "usage: kill-storm [--seconds S] [--workers N] [--seed N] [--min-ms MS] "
                                        "[--max-ms MS] [--term-every N]\n"
                                        "  [--early-every N] [--reload 0|1] [--sigstop-ms MS]\n");
                        return 2;
                }
        }
        srand(seed);
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
        long restart_max = 0, start = now_ms(), end = start + seconds * 1000L;
        bool froze = false;
        while (now_ms() < end) {
                usleep((useconds_t)(min_ms + rand() % (max_ms - min_ms + 1)) * 1000);
                if (sigstop_ms && !froze && now_ms() > start + seconds * 500L) {
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
                        hups++;
                        usleep((useconds_t)(rand() % 30000));
                }
                bool term = term_every && (kills + terms + 1) % (unsigned)term_every == 0;
                long t0 = now_ms();
                sysd_kill(&s, term ? SIGTERM : SIGKILL);
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
        struct alloc_client *k = daemon_connect(&s.d);
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
                                                        "freed rc %d\n",
                                                        atomic_load(&sh->names[j].state),
                                                        (unsigned long long)sh->names[j].id, sh->names[j].persist,
                                                        sh->names[j].freed_rc);
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
