/* SPDX-License-Identifier: MIT */
/*
 * soak's client processes (soak.h): a long connection that allocates, names, seals, attaches,
 * frees and detaches in mixed sizes, and between its calls the churn a long-running allocd sees:
 * short connections that say Goodbye, waits that time out, waits cancelled by a signal's flag
 * (Cancel), and children SIGKILLed while they hold regions or wait.  Not a check of answers (the
 * tests and kill-storm do that): errors are counted by errno, for the report.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "soak.h"

#define HELD 16

static const char *const pools[] = {"host", "other", "iso", "extra"};

struct worker {
        struct soak_shared *sh;
        struct soak_count *c;
        int w;
        unsigned rng, made, victims;
        struct alloc_client *k;
        struct alloc_region h[HELD];
        bool mine[HELD], persist[HELD];
        int n;
        uint64_t left[HELD]; /* PERSIST regions the last long connection left: the next frees them, as a job's rerun */
        int nleft;
        long cancel_at;
};

static unsigned rnd(struct worker *x) {
        x->rng = x->rng * 1103515245u + 12345u;
        return x->rng >> 8;
}

static long ms_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * What a soak's calls fail with by design: a freed or never-made name, no room now or in time, a
 * wait cancelled, a quota, a pool a reload took out, allocd restarting.  Anything else is a bug in
 * the library, allocd or this worker, and is kept whole (odd) so that it can be chased.
 */
static bool expected(int err) {
        switch (err) {
        case ENOENT:
        case EAGAIN:
        case ETIMEDOUT:
        case ECANCELED:
        case EINTR:
        case EDQUOT:
        case ENODEV:
        case ECONNREFUSED:
                return true;
        default:
                return false;
        }
}

/* An unexpected error, with the call and its arguments (fmt) and the library's words, for the report. */
static void odd(struct worker *x, int e, const char *fmt, va_list ap) {
        unsigned i = atomic_fetch_add(&x->sh->nodd, 1);
        char what[256], when[32];
        struct timespec ts;
        struct tm tm;

        if (i >= SOAK_ODD)
                return;
        /* Wall-clock time, to find the moment in allocd's log and among the soak's restarts and reloads. */
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof(when), "%H:%M:%S", &tm);
        vsnprintf(what, sizeof(what), fmt, ap);
        snprintf(x->sh->odd[i], sizeof(x->sh->odd[i]), "%s.%03ld worker %d pid %d: %s: %s: %s", when,
                 ts.tv_nsec / 1000000, x->w, (int)getpid(), what, strerrorname_np(-e) ? strerrorname_np(-e) : "?",
                 alloc_last_error());
}

/* Counts a call (what fmt says it was) and its error, which this call may also fail with; true when it worked. */
__attribute__((format(printf, 4, 5))) static bool done_or(struct worker *x, int e, int also, const char *fmt, ...) {
        x->c->ops++;
        if (e >= 0)
                return true;
        x->c->by_errno[-e < SOAK_ERRNO ? -e : 0]++;
        if (-e != also && !expected(-e)) {
                va_list ap;
                va_start(ap, fmt);
                odd(x, e, fmt, ap);
                va_end(ap);
        }
        return false;
}

#define done(x, e, ...) done_or(x, e, 0, __VA_ARGS__)

static struct alloc_client *connect_to(struct worker *x, const char *name) {
        struct alloc_client *k;
        for (int i = 0; i < 300; i++) {
                /* An allocd stopping for a restart closes a connection whose first Hello it has not answered. */
                if (done_or(x, alloc_connect(&k, x->sh->sock, name), ECONNRESET, "alloc_connect(%s, \"%s\")",
                            x->sh->sock, name))
                        return k;
                usleep(100000); /* allocd restarting: the socket queues, but a refusal may come */
        }
        return NULL;
}

/* Sizes from a page to 2 MiB, most small: what a mixed workload asks for. */
static uint64_t some_size(struct worker *x) {
        unsigned r = rnd(x) % 100;
        if (r < 60)
                return 4096u * (1 + rnd(x) % 8);
        if (r < 90)
                return 65536u * (1 + rnd(x) % 8);
        return (1u << 20) * (1 + rnd(x) % 2);
}

/*
 * The slot is taken before it is written: another worker may read it in between, so a name goes in
 * with one store (a string copied byte by byte was read empty there, and its Attach of "" refused
 * EINVAL), and a slot not written yet reads 0.
 */
static void publish(struct worker *x, unsigned number) {
        unsigned slot = atomic_fetch_add(&x->sh->nnames, 1) % SOAK_NAMES;
        atomic_store(&x->sh->names[slot], (uint64_t)(x->w + 1) << 32 | number);
}

/* One region on k: named (unsealed, then sealed and published) one time in three, PERSIST rarely. */
static int alloc_one(struct worker *x, struct alloc_client *k, struct alloc_region *r, bool *persisted) {
        char name[40];
        bool named = rnd(x) % 3 == 0, persist = persisted && named && rnd(x) % 8 == 0;
        const char *pool = pools[rnd(x) % 4];
        unsigned number = x->made++;

        snprintf(name, sizeof(name), "w%d/%u", x->w, number);
        struct alloc_opts o = {.flags = ALLOC_NOWAIT | (rnd(x) % 2 ? ALLOC_ZERO : 0) | (persist ? ALLOC_PERSIST : 0) |
                                        (named ? ALLOC_UNSEALED : 0),
                               .name = named ? name : NULL};
        uint64_t size = some_size(x);
        x->c->allocs++;
        int e = alloc_region_new(k, pool, size, &o, r);
        /* Each iso region's memfd goes to the fd store for a restart (tests/sysd.c keeps 64): many workers fill it. */
        if (!done_or(x, e, strcmp(pool, "iso") ? 0 : EMFILE, "alloc_region_new(\"%s\", %llu, flags %#x, name %s)", pool,
                     (unsigned long long)size, (unsigned)o.flags, o.name ? o.name : "NULL"))
                return e;
        memset(r->ptr, x->w + 1, r->size < 4096 ? r->size : 4096);
        if (persisted)
                *persisted = persist;
        if (named) {
                x->c->seals++;
                if (done(x, alloc_region_seal(k, r->id), "alloc_region_seal(%#llx, named %s, pool %s)",
                         (unsigned long long)r->id, name, pool))
                        publish(x, number);
        }
        return 0;
}

static int attach_some(struct worker *x, struct alloc_client *k, struct alloc_region *r) {
        unsigned nn = atomic_load(&x->sh->nnames);
        char name[40];

        if (!nn)
                return -ENOENT;
        /* One of the last 64 published: most older ones are freed by now. */
        unsigned back = rnd(x) % (nn < 64 ? nn : 64);
        uint64_t v = atomic_load(&x->sh->names[(nn - 1 - back) % SOAK_NAMES]);
        if (!v)
                return -ENOENT; /* taken by a worker that has not written it yet: nothing published there */
        snprintf(name, sizeof(name), "w%u/%u", (unsigned)(v >> 32) - 1, (unsigned)v);
        x->c->attaches++;
        int e = alloc_region_attach(k, name, NULL, r);
        /* A name in "extra" after a restart that found it resized or gone: a drained pool's access rules went with its
         * section, and only root attaches there (configuration.md). */
        done_or(x, e, EACCES, "alloc_region_attach(\"%s\", no wait) (published %u, %u back)", name, nn, back);
        return e;
}

static void drop(struct worker *x, int i) {
        int e;
        if (x->mine[i]) {
                x->c->frees++;
                e = alloc_region_free(x->k, x->h[i].id);
        } else {
                x->c->detaches++;
                e = alloc_region_detach(x->k, x->h[i].id);
        }
        done(x, e, "alloc_region_%s(%#llx) (persist %d)", x->mine[i] ? "free" : "detach",
             (unsigned long long)x->h[i].id, x->persist[i]);
        x->h[i] = x->h[x->n - 1];
        x->mine[i] = x->mine[x->n - 1];
        x->persist[i] = x->persist[x->n - 1];
        x->n--;
}

/* The long connection ends: tidily (a Goodbye after frees) or with what it holds (allocd takes it back). */
static void end_long(struct worker *x, bool tidy) {
        while (tidy && x->n)
                drop(x, 0);
        for (int i = 0; i < x->n; i++)
                if (x->mine[i] && x->persist[i])
                        x->left[x->nleft++] = x->h[i].id;
        x->n = 0;
        alloc_disconnect(x->k);
        x->c->goodbyes++;
        x->k = NULL;
}

/* A wait in allocd that ends by its timeout: an attach of a name nobody makes, or room in "tight". */
static void wait_out(struct worker *x) {
        struct alloc_region r;
        char name[40] = "";
        unsigned ms = 10 + rnd(x) % 40;
        int e;

        x->c->timeouts++;
        if (rnd(x) % 2) {
                snprintf(name, sizeof(name), "nobody/%u", rnd(x) % 64);
                e = alloc_region_attach(x->k, name, &(struct alloc_attach_opts){.timeout_ms = ms}, &r);
        } else {
                struct alloc_opts o = {.timeout_ms = ms};
                e = alloc_region_new(x->k, "tight", 3u << 20, &o, &r);
        }
        if (done(x, e, "%s(\"%s\", timeout %u ms)", name[0] ? "alloc_region_attach" : "alloc_region_new",
                 name[0] ? name : "tight", ms))
                alloc_region_free(x->k, r.id); /* the room was there (the attach cannot work) */
}

static int cancel_now(void *data) {
        struct worker *x = data;
        return ms_now() >= x->cancel_at;
}

/* A wait ended by the interrupt callback, as a signal's flag would: -EINTR, and a Cancel to allocd. */
static void cancel_wait(struct worker *x) {
        struct alloc_region r;
        char name[40];

        x->c->cancels++;
        x->cancel_at = ms_now() + 5 + rnd(x) % 30;
        alloc_set_interrupt(x->k, cancel_now, x);
        snprintf(name, sizeof(name), "never/%u", rnd(x) % 64);
        int e = alloc_region_attach(x->k, name, &(struct alloc_attach_opts){.timeout_ms = 10000}, &r);
        alloc_set_interrupt(x->k, NULL, NULL);
        done(x, e, "alloc_region_attach(\"%s\", timeout 10000 ms, interrupted)", name);
}

/* A connection of a few calls, ended by a Goodbye (alloc_disconnect) with or without its frees. */
static void short_conn(struct worker *x) {
        struct alloc_client *k = connect_to(x, "soak-short");
        struct alloc_region r[3];
        int n = 0;

        if (!k)
                return;
        x->c->shorts++;
        for (unsigned i = rnd(x) % 4; i > 0; i--)
                if (alloc_one(x, k, &r[n], NULL) == 0)
                        n++;
        if (rnd(x) % 2 && n < 3 && attach_some(x, k, &r[n]) == 0)
                alloc_region_detach(k, r[n].id);
        if (rnd(x) % 2)
                for (int i = 0; i < n; i++)
                        done(x, alloc_region_free(k, r[i].id), "alloc_region_free(%#llx) (short connection)",
                             (unsigned long long)r[i].id);
        alloc_disconnect(k);
        x->c->goodbyes++;
}

/* A connection with spares on and a batch: spares left outstanding at its Goodbye one time in two. */
static void spare_batch_conn(struct worker *x) {
        struct alloc_client *k = connect_to(x, "soak-spare");
        struct alloc_region r[8];
        uint64_t sizes[8], ids[8];
        size_t n = 1 + rnd(x) % 8;

        if (!k)
                return;
        x->c->shorts++;
        alloc_set_spare(k, true);
        for (unsigned i = 0; i < 3 + rnd(x) % 6; i++) {
                x->c->allocs++;
                if (done(x,
                         alloc_region_new(k, "host", 4096u << (i % 2), &(struct alloc_opts){.flags = ALLOC_NOWAIT},
                                          &r[0]),
                         "alloc_region_new(\"host\", %u, NOWAIT) (spares on)", 4096u << (i % 2))) {
                        x->c->frees++;
                        done(x, alloc_region_free(k, r[0].id), "alloc_region_free(%#llx) (spares on)",
                             (unsigned long long)r[0].id);
                }
        }
        for (size_t i = 0; i < n; i++)
                sizes[i] = 4096u * (1 + rnd(x) % 4);
        x->c->allocs++;
        if (done(x, alloc_region_new_batch(k, "other", sizes, n, &(struct alloc_opts){.flags = ALLOC_NOWAIT}, r),
                 "alloc_region_new_batch(\"other\", %zu regions, NOWAIT) (spares on)", n) &&
            rnd(x) % 2) {
                for (size_t i = 0; i < n; i++)
                        ids[i] = r[i].id;
                x->c->frees++;
                done(x, alloc_region_free_batch(k, ids, n), "alloc_region_free_batch(%zu ids from %#llx) (spares on)",
                     n, (unsigned long long)ids[0]);
        }
        if (rnd(x) % 2)
                alloc_set_spare(k, false);
        alloc_disconnect(k);
        x->c->goodbyes++;
}

/* A connection that never says Hello: closed at once, or after bytes that are no request. */
static void raw_conn(struct worker *x) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return;
        x->c->shorts++;
        if (strlen(x->sh->sock) >= sizeof(sa.sun_path)) {
                close(fd);
                return;
        }
        memcpy(sa.sun_path, x->sh->sock, strlen(x->sh->sock) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && rnd(x) % 2) {
                char junk[64];
                for (size_t i = 0; i < sizeof(junk); i++)
                        junk[i] = (char)rnd(x);
                if (send(fd, junk, 1 + rnd(x) % sizeof(junk), MSG_NOSIGNAL) < 0)
                        x->c->by_errno[0]++;
                usleep(rnd(x) % 2000);
        }
        close(fd);
}

/* A child that allocates, attaches, then waits in allocd (or not), SIGKILLed in the middle. */
static void killed_child(struct worker *x) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return;
        unsigned r0 = rnd(x);
        x->victims++;
        pid_t pid = test_fork(); /* dies with this worker; not fork + die_with_test, which expects the soak's pid */
        if (pid == 0) {
                struct alloc_region r[4];
                struct alloc_client *k;
                close(p[0]);
                x->rng ^= r0;
                x->made = 1u << 31 | x->victims << 3; /* names of its own: none its parent or another child makes */
                if (alloc_connect(&k, x->sh->sock, "soak-victim") < 0)
                        _exit(0);
                for (int i = 0; i < 3; i++)
                        alloc_one(x, k, &r[i], NULL);
                attach_some(x, k, &r[3]);
                if (write(p[1], "r", 1) < 0)
                        _exit(0);
                if (r0 % 2)
                        alloc_region_attach(k, "never/victim", &(struct alloc_attach_opts){.timeout_ms = 10000}, &r[3]);
                pause();
                _exit(0);
        }
        close(p[1]);
        if (pid < 0) {
                close(p[0]);
                return;
        }
        char b = 0;
        bool ready = read(p[0], &b, 1) == 1;
        close(p[0]);
        usleep(rnd(x) % 20000);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        x->c->killed += ready; /* only a child that got as far as its regions */
}

_Noreturn void soak_worker(struct soak_shared *sh, int w, uid_t uid, gid_t gid) {
        struct worker x = {.sh = sh, .c = &sh->w[w], .w = w, .rng = 0x9e3779b9u * (unsigned)(w + 1)};

        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0 || !die_with_test())
                _exit(4);
        while (!atomic_load(&sh->stop)) {
                if (!x.k) {
                        x.c->reconnects++;
                        if (!(x.k = connect_to(&x, "soak-long")))
                                _exit(3);
                        alloc_set_timeout(x.k, 5000);
                        for (; x.nleft > 0; x.nleft--) {
                                x.c->frees++;
                                done(&x, alloc_region_free_sync(x.k, x.left[x.nleft - 1]),
                                     "alloc_region_free_sync(%#llx) (PERSIST, left by the last long connection)",
                                     (unsigned long long)x.left[x.nleft - 1]);
                        }
                }
                unsigned op = rnd(&x) % 1000;
                if (op < 300 && x.n < HELD) {
                        if (alloc_one(&x, x.k, &x.h[x.n], &x.persist[x.n]) == 0)
                                x.mine[x.n++] = true;
                } else if (op < 500 && x.n) {
                        drop(&x, (int)(rnd(&x) % (unsigned)x.n));
                } else if (op < 600 && x.n < HELD) {
                        if (attach_some(&x, x.k, &x.h[x.n]) == 0) {
                                x.persist[x.n] = false;
                                x.mine[x.n++] = false;
                        }
                } else if (op < 650) {
                        wait_out(&x);
                } else if (op < 680) {
                        cancel_wait(&x);
                } else if (op < 740) {
                        short_conn(&x);
                } else if (op < 770) {
                        spare_batch_conn(&x);
                } else if (op < 800) {
                        raw_conn(&x);
                } else if (op < 815) {
                        killed_child(&x);
                } else if (op < 825) {
                        end_long(&x, op < 820);
                } else {
                        usleep(1000 + rnd(&x) % 4000); /* idle: not every client is busy */
                }
        }
        if (x.k)
                end_long(&x, true);
        _exit(0);
}
