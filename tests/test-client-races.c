/* SPDX-License-Identifier: MIT */
/*
 * Races between a call and a reconnect (client/reconnect.c), against a fake allocd (fake-allocd.c)
 * that dies when a test says so and then answers the reclaim and its squaring (Held).  A thread
 * that loses the CPU at the wrong moment is played by this file's own pthread_mutex_unlock and
 * pthread_cond_wait, which liballoc-client's calls reach before libc's (the executable's
 * definitions come first): armed for one thread, they hold it there while another thread has the
 * connection made again.  Only this test has them; the library is as shipped.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "alloc/client.h"
#include "allocd.pb-c.h"
#include "fake-allocd.h"

#define REGION (1ull << 32 | 5) /* the one region the fake grants */

/* ---- the held thread ---- */

static int (*real_unlock)(pthread_mutex_t *);
static int (*real_wait)(pthread_cond_t *, pthread_mutex_t *);
static int (*real_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);

/* A sanitizer whose runtime is linked into the executable (clang's) intercepts some of these: its are the next. */
extern int __interceptor_pthread_mutex_unlock(pthread_mutex_t *) __attribute__((weak));
extern int __interceptor_pthread_cond_wait(pthread_cond_t *, pthread_mutex_t *) __attribute__((weak));
extern int __interceptor_pthread_cond_timedwait(pthread_cond_t *, pthread_mutex_t *, const struct timespec *)
        __attribute__((weak));
extern ssize_t __interceptor_recvmsg(int, struct msghdr *, int) __attribute__((weak));

__attribute__((constructor)) static void find_real(void) {
        real_unlock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_unlock");
        real_wait = (int (*)(pthread_cond_t *, pthread_mutex_t *))dlvsym(RTLD_NEXT, "pthread_cond_wait", "GLIBC_2.3.2");
        real_timedwait = (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))dlvsym(
                RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
        real_recvmsg = (ssize_t(*)(int, struct msghdr *, int))dlsym(RTLD_NEXT, "recvmsg");
        if (__interceptor_pthread_mutex_unlock)
                real_unlock = __interceptor_pthread_mutex_unlock;
        if (__interceptor_pthread_cond_wait)
                real_wait = __interceptor_pthread_cond_wait;
        if (__interceptor_pthread_cond_timedwait)
                real_timedwait = __interceptor_pthread_cond_timedwait;
        if (__interceptor_recvmsg)
                real_recvmsg = __interceptor_recvmsg;
}

/*
 * What the held thread does, and where: at the unlock of lock once its failure says words (the
 * end of a call), or at its first wake-up in a wait for a reply another thread reads.
 */
enum hold { HOLD_NONE, HOLD_UNLOCK, HOLD_WAKEUP };
static struct {
        _Atomic enum hold armed;
        pthread_t thread;
        pthread_mutex_t *lock; /* HOLD_UNLOCK: the connection's, learnt (learning) */
        _Atomic bool learning;
        const char *words;
        atomic_bool asleep, held;
        void (*meanwhile)(void);  /* HOLD_UNLOCK: run on another thread while this one is held */
        atomic_bool go;           /* HOLD_WAKEUP: let it go on */
        _Atomic pthread_t reader; /* HOLD_WAKEUP: the thread that reads for it, and whether it does */
        atomic_bool reading;
} hold;

static void *run_meanwhile(void *arg) {
        (void)arg;
        hold.meanwhile();
        return NULL;
}

int pthread_mutex_unlock(pthread_mutex_t *m) {
        int r = real_unlock(m);
        pthread_t t;

        if (atomic_load(&hold.armed) != HOLD_UNLOCK || !pthread_equal(pthread_self(), hold.thread))
                return r;
        if (atomic_load(&hold.learning)) {
                hold.lock = m;
                return r;
        }
        if (m == hold.lock && strstr(alloc_last_error(), hold.words)) {
                atomic_store(&hold.armed, HOLD_NONE);
                atomic_store(&hold.held, true);
                if (pthread_create(&t, NULL, run_meanwhile, NULL) == 0)
                        pthread_join(t, NULL);
        }
        return r;
}

/* The held thread, woken, loses the race for the lock until the test lets it go. */
static void held_at_wakeup(pthread_mutex_t *m) {
        atomic_store(&hold.armed, HOLD_NONE);
        atomic_store(&hold.held, true);
        real_unlock(m);
        while (!atomic_load(&hold.go))
                usleep(1000);
        pthread_mutex_lock(m);
}

int pthread_cond_wait(pthread_cond_t *cv, pthread_mutex_t *m) {
        bool mine = atomic_load(&hold.armed) == HOLD_WAKEUP && pthread_equal(pthread_self(), hold.thread);
        int r;

        if (mine)
                atomic_store(&hold.asleep, true);
        r = real_wait(cv, m);
        if (mine)
                held_at_wakeup(m);
        return r;
}

int pthread_cond_timedwait(pthread_cond_t *cv, pthread_mutex_t *m, const struct timespec *t) {
        bool mine = atomic_load(&hold.armed) == HOLD_WAKEUP && pthread_equal(pthread_self(), hold.thread);
        int r;

        if (mine)
                atomic_store(&hold.asleep, true);
        r = real_timedwait(cv, m, t);
        if (mine)
                held_at_wakeup(m);
        return r;
}

/* The reading thread is in recvmsg, the connection's reader (c->reading) until a packet comes. */
ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
        if (pthread_equal(pthread_self(), atomic_load(&hold.reader)))
                atomic_store(&hold.reading, true);
        return real_recvmsg(fd, msg, flags);
}

/* ---- the fake allocd ---- */

enum seal_answer { SEAL_HANGUP_FIRST, SEAL_SILENT_FIRST };
enum free_answer { FREE_SILENT, FREE_DENIED_THEN_HANGUP };

static struct {
        enum seal_answer seal;
        enum free_answer free;
        bool alloc_unknown_kind; /* an Alloc is granted a region of a kind the library does not know */
        bool alloc_hangup;       /* every Alloc brings allocd down (it hangs up) */
        atomic_int allocs;
        atomic_int hellos, seals, frees, detaches;
        atomic_int given_later; /* Frees and Detaches on a connection made again */
} fake;

/* The fpga region REGION: a kind the client locates nowhere, so that no pool fd is wanted. */
static void region(Allocd__Reply *reply) {
        static Allocd__Region g;

        allocd__region__init(&g);
        g.has_id = g.has_size = g.has_kind = true;
        g.id = REGION;
        g.pool = "fpga";
        g.size = 4096;
        g.kind = ALLOCD__POOL_KIND__FPGA;
        reply->body_case = ALLOCD__REPLY__BODY_REGION;
        reply->region = &g;
}

/* The reclaimed connection holds REGION, which it made. */
static void held(Allocd__Reply *reply) {
        static Allocd__HeldReply h;
        static uint64_t id = REGION;
        static uint32_t count = 1;
        static protobuf_c_boolean created = true;

        allocd__held_reply__init(&h);
        h.n_regions = h.n_counts = h.n_created = 1;
        h.regions = &id;
        h.counts = &count;
        h.created = &created;
        reply->body_case = ALLOCD__REPLY__BODY_HELD;
        reply->held = &h;
}

/* The first Free is refused once the thread that sent it sleeps (another reads), and allocd dies. */
static int refuse_free(Allocd__Reply *reply) {
        for (int i = 0; i < 10000 && !atomic_load(&hold.asleep); i++)
                usleep(1000);
        reply->has_error = true;
        reply->error = ALLOCD__ERROR__DENIED;
        reply->message = "not yours to free";
        return FAKE_REPLY_HANGUP;
}

static int answer(const Allocd__Request *req, Allocd__Reply *reply, int *fd, void *arg) {
        bool later = atomic_load(&fake.hellos) > 1;

        (void)fd;
        (void)arg;
        switch (req->body_case) {
        case ALLOCD__REQUEST__BODY_HELLO:
                atomic_fetch_add(&fake.hellos, 1);
                fake_hello_reclaimable(req, reply);
                return 0;
        case ALLOCD__REQUEST__BODY_ALLOC:
                atomic_fetch_add(&fake.allocs, 1);
                if (fake.alloc_hangup)
                        return FAKE_HANGUP;
                region(reply);
                if (fake.alloc_unknown_kind)
                        reply->region->kind = 99;
                return 0;
        case ALLOCD__REQUEST__BODY_HELD:
                held(reply);
                return 0;
        case ALLOCD__REQUEST__BODY_SEAL:
                if (atomic_fetch_add(&fake.seals, 1) == 0)
                        return fake.seal == SEAL_HANGUP_FIRST ? FAKE_HANGUP : FAKE_SILENT;
                return 0;
        case ALLOCD__REQUEST__BODY_FREE:
        case ALLOCD__REQUEST__BODY_DETACH:
                atomic_fetch_add(req->body_case == ALLOCD__REQUEST__BODY_FREE ? &fake.frees : &fake.detaches, 1);
                if (later) {
                        atomic_fetch_add(&fake.given_later, 1);
                        return 0;
                }
                if (req->body_case == ALLOCD__REQUEST__BODY_FREE && fake.free == FREE_DENIED_THEN_HANGUP)
                        return refuse_free(reply);
                return FAKE_SILENT;
        default:
                return 0;
        }
}

static void setup(void) {
        setenv("ALLOCD_RECONNECT", "10s", 1);
        memset(&fake, 0, sizeof(fake));
}

TestSuite(races, .init = setup, .timeout = 30);

static struct alloc_client *c;

/* A connection to f that holds REGION. */
static void connect_holding(struct fake_allocd *f) {
        struct alloc_region out;

        fake_allocd_start(f, answer, NULL);
        cr_assert_eq(alloc_connect(&c, f->path, NULL), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(c, "fpga", 4096, NULL, &out), 0, "%s", alloc_last_error());
        cr_assert_eq(out.id, REGION);
}

/* allocd dies under a Seal; the Seal is sent again on the connection made again. */
static void seal_across_a_restart(void) {
        cr_assert_eq(alloc_region_seal(c, 7), 0, "%s", alloc_last_error());
}

/*
 * A Detach that timed out is not known to be done: the region is held still, and put back in the
 * table before the lock is let go.  Put back after, a reconnect in between found it neither held nor
 * in flight, took it for an Alloc whose reply was lost, and freed it: a region its owner meant to keep.
 */
Test(races, a_detach_that_timed_out_is_not_freed_by_a_reconnect) {
        struct fake_allocd f;

        fake.seal = SEAL_HANGUP_FIRST;
        connect_holding(&f);
        hold.thread = pthread_self();
        hold.words = "did not answer within";
        hold.meanwhile = seal_across_a_restart;
        atomic_store(&hold.learning, true);
        atomic_store(&hold.armed, HOLD_UNLOCK);
        cr_assert_eq(alloc_set_spin(c, 50), 0); /* locks the connection's lock alone: learnt */
        atomic_store(&hold.learning, false);
        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        cr_assert_eq(alloc_region_detach_sync(c, REGION), -ETIME, "%s", alloc_last_error());
        cr_assert(atomic_load(&hold.held), "the call was not held at its end");
        cr_assert_eq(atomic_load(&fake.hellos), 2, "no reconnect");
        cr_assert_eq(atomic_load(&fake.given_later), 0, "the reconnect gave the region back (%d Frees, %d Detaches)",
                     atomic_load(&fake.frees), atomic_load(&fake.detaches) - 1);
        alloc_disconnect(c);
        fake_allocd_stop(&f);
}

/*
 * A grant the caller cannot take (a region of a kind this library does not know) goes back, with a
 * Free since an Alloc made it (a Detach would leave a PERSIST region to no one); one that times out
 * leaves the region out of the held table.  Put back under the lock and taken out after it, a
 * reconnect in between found it held, kept it, and allocd held it until the disconnect.
 */
Test(races, a_refused_grant_whose_give_back_timed_out_is_given_back_by_a_reconnect) {
        struct fake_allocd f;
        struct alloc_region out;

        fake.seal = SEAL_HANGUP_FIRST;
        fake.alloc_unknown_kind = true;
        fake_allocd_start(&f, answer, NULL);
        cr_assert_eq(alloc_connect(&c, f.path, NULL), 0, "%s", alloc_last_error());
        hold.thread = pthread_self();
        hold.words = "did not answer within";
        hold.meanwhile = seal_across_a_restart;
        atomic_store(&hold.learning, true);
        atomic_store(&hold.armed, HOLD_UNLOCK);
        cr_assert_eq(alloc_set_spin(c, 50), 0); /* locks the connection's lock alone: learnt */
        atomic_store(&hold.learning, false);
        cr_assert_eq(alloc_set_timeout(c, 200), 0);
        cr_assert_eq(alloc_region_new(c, "fpga", 4096, NULL, &out), -EPROTO, "%s", alloc_last_error());
        cr_assert(atomic_load(&hold.held), "the give-back was not held at its end");
        cr_assert_eq(atomic_load(&fake.hellos), 2, "no reconnect");
        cr_assert_eq(atomic_load(&fake.given_later), 1,
                     "the reconnect did not give the region back (%d Frees, %d Detaches in all)",
                     atomic_load(&fake.frees), atomic_load(&fake.detaches));
        cr_assert_eq(atomic_load(&fake.detaches), 0, "an Alloc's grant went back by a Detach");
        alloc_disconnect(c);
        fake_allocd_stop(&f);
}

static void *seal_thread(void *arg) {
        atomic_store(&hold.reader, pthread_self());
        *(int *)arg = alloc_region_seal(c, 7);
        return NULL;
}

struct free_call {
        pthread_t thread;
        int r;
        char words[256];
};

static void *free_thread(void *arg) {
        struct free_call *k = arg;

        hold.thread = pthread_self();
        atomic_store(&hold.armed, HOLD_WAKEUP);
        k->r = alloc_region_free_sync(c, REGION);
        snprintf(k->words, sizeof(k->words), "%s", alloc_last_error());
        return NULL;
}

/*
 * A synchronous Free that allocd refused, the refusal read by another thread just before allocd
 * died: the reconnect that thread makes must not count the Free as in flight (its squaring would
 * give the region back), and the caller, woken after it, gets the refusal, not 0.
 */
Test(races, a_refused_free_read_before_a_reconnect_is_reported) {
        struct fake_allocd f;
        struct free_call k = {0};
        pthread_t sealer;
        int sealed = -1;

        fake.seal = SEAL_SILENT_FIRST;
        fake.free = FREE_DENIED_THEN_HANGUP;
        connect_holding(&f);
        cr_assert_eq(alloc_set_timeout(c, 0), 0);
        cr_assert_eq(alloc_set_spin(c, 0), 0);
        /* The sealer reads the socket, its Seal unanswered, when the Free goes. */
        cr_assert_eq(pthread_create(&sealer, NULL, seal_thread, &sealed), 0);
        for (int i = 0; i < 10000 && !atomic_load(&hold.reading); i++)
                usleep(1000);
        cr_assert_eq(pthread_create(&k.thread, NULL, free_thread, &k), 0);
        pthread_join(sealer, NULL);
        cr_assert_eq(sealed, 0, "the Seal across the restart failed");
        /* Woken by the refusal's filing, the Free's caller may not have the lock back yet: it gets there. */
        for (int i = 0; i < 10000 && !atomic_load(&hold.held); i++)
                usleep(1000);
        cr_assert(atomic_load(&hold.held), "the Free's caller read its own reply: the race was not played");
        atomic_store(&hold.go, true);
        pthread_join(k.thread, NULL);
        cr_assert_eq(k.r, -EACCES, "the refused Free returned %d (%s)", k.r, k.words);
        cr_assert(strstr(k.words, "not yours to free"), "%s", k.words);
        cr_assert_eq(atomic_load(&fake.given_later), 0, "the reconnect gave the region back");
        /* Still held, as both sides say: a Free goes without waiting. */
        cr_assert_eq(alloc_region_free(c, REGION), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        fake_allocd_stop(&f);
}

/*
 * An Alloc that brings allocd down each time it is read (a bug allocd has) is sent again after a
 * loss, but not for ever: three times, then the call fails, and the connection, made again, serves.
 */
Test(races, a_request_that_brings_allocd_down_is_sent_again_three_times) {
        struct fake_allocd f;
        struct alloc_region out;

        connect_holding(&f);
        fake.alloc_hangup = true;
        atomic_store(&fake.allocs, 0);
        cr_assert_eq(alloc_region_new(c, "fpga", 4096, NULL, &out), -ECONNRESET, "%s", alloc_last_error());
        cr_assert_eq(atomic_load(&fake.allocs), 4, "sent %d times", atomic_load(&fake.allocs));
        fake.alloc_hangup = false;
        cr_assert_eq(alloc_region_new(c, "fpga", 4096, NULL, &out), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        fake_allocd_stop(&f);
}

static atomic_bool signalled;

static void on_alarm(int sig) {
        (void)sig;
        atomic_store(&signalled, true);
}

static int interrupted(void *data) {
        (void)data;
        return atomic_exchange(&signalled, false);
}

/*
 * alloc_set_interrupt ends a reconnect that waits between tries for allocd to come back, as it ends
 * a wait for a reply: the call fails with -EINTR at once, not after ALLOCD_RECONNECT; the connection
 * stays lost, not given up, and the next call makes it again.
 */
Test(races, an_interrupt_ends_a_reconnect_and_the_next_call_makes_it) {
        struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART: as test-client-interrupt has it */
        struct itimerval soon = {.it_value = {.tv_usec = 300 * 1000}};
        struct fake_allocd f;
        struct timespec t0, t1;
        char away[sizeof(f.path) + 8];
        int r;

        fake.seal = SEAL_HANGUP_FIRST;
        connect_holding(&f);
        cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
        cr_assert_eq(alloc_set_interrupt(c, interrupted, NULL), 0);
        /* allocd is gone, and its socket with it, until the test puts it back. */
        snprintf(away, sizeof(away), "%s.away", f.path);
        cr_assert_eq(rename(f.path, away), 0);
        cr_assert_eq(setitimer(ITIMER_REAL, &soon, NULL), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = alloc_region_seal(c, 7);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        cr_assert_eq(r, -EINTR, "%d: %s", r, alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "interrupted by a signal"), "%s", alloc_last_error());
        cr_assert_lt(t1.tv_sec - t0.tv_sec, 3, "the interrupt ended the reconnect after %ld s",
                     (long)(t1.tv_sec - t0.tv_sec));
        cr_assert_eq(atomic_load(&fake.hellos), 1);
        cr_assert_eq(rename(away, f.path), 0);
        cr_assert_eq(alloc_region_seal(c, 7), 0, "%s", alloc_last_error());
        cr_assert_eq(atomic_load(&fake.hellos), 2, "no reconnect");
        cr_assert_eq(atomic_load(&fake.given_later), 0, "the reconnect gave the region back");
        alloc_disconnect(c);
        fake_allocd_stop(&f);
}

/* What stands at the fake's path while it is away: a socket whose queue of connections is full. */
static struct {
        pthread_t caller;
        const char *path, *away;
        int listener, queued;
} jam;

/* A signal to the caller, blocked in its reconnect's connect, then the fake back in its place. */
static void *unjam(void *arg) {
        (void)arg;
        usleep(300 * 1000);
        pthread_kill(jam.caller, SIGALRM);
        usleep(700 * 1000);
        close(jam.queued);
        close(jam.listener);
        unlink(jam.path);
        cr_assert_eq(rename(jam.away, jam.path), 0);
        return NULL;
}

/*
 * A signal that cuts a reconnect's connect short (allocd's queue of connections full: connect waits,
 * and SO_SNDTIMEO has it fail EINTR, SA_RESTART or not) is a try that failed, as it was: without
 * alloc_set_interrupt nothing asks to stop, and the reconnect goes on.  Taken for an interrupted
 * wait for a Hello's answer, it ended the call with -EINTR, the lost socket closed and none kept.
 */
Test(races, a_signal_in_a_reconnects_connect_does_not_end_a_call_that_is_not_interruptible) {
        struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        struct fake_allocd f;
        char away[sizeof(f.path) + 8];
        pthread_t t;
        int r;

        fake.seal = SEAL_HANGUP_FIRST;
        connect_holding(&f);
        cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
        snprintf(away, sizeof(away), "%s.away", f.path);
        cr_assert_eq(rename(f.path, away), 0);
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", f.path);
        jam.listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(jam.listener, (struct sockaddr *)&un, sizeof(un)), 0);
        cr_assert_eq(listen(jam.listener, 0), 0);
        jam.queued = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        cr_assert_eq(connect(jam.queued, (struct sockaddr *)&un, sizeof(un)), 0); /* the queue is full now */
        jam.caller = pthread_self();
        jam.path = f.path;
        jam.away = away;
        cr_assert_eq(pthread_create(&t, NULL, unjam, NULL), 0);
        r = alloc_region_seal(c, 7);
        pthread_join(t, NULL);
        cr_assert_eq(r, 0, "%d: %s", r, alloc_last_error());
        cr_assert_eq(atomic_load(&fake.hellos), 2, "no reconnect");
        alloc_disconnect(c);
        fake_allocd_stop(&f);
}
