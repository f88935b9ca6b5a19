/* SPDX-License-Identifier: MIT */
/*
 * chaos-client SOCKET STATS SEED calm|wild PARENT: one worker of test-daemon-chaos.
 *
 * Runs random requests against allocd until it is killed: three threads on
 * one liballoc-client connection (so their requests are pipelined on one
 * socket), two of them doing random operations and one allocations that wait.
 * Beside it: second connections, raw connections that pipeline a burst of
 * requests and hang up before, during or after the replies, and raw
 * connections that never say Hello.  "calm" leaves out PERSIST (the warm-up
 * round, which must leave nothing behind).
 *
 * Every outcome is counted in STATS (tests/chaos.h).  What allocd promises
 * and this worker can see is checked, and a broken promise is a violation:
 * a region that is not where its constraints say, bytes of an unnamed region
 * that changed under its only holder (a region handed out twice), a ZERO
 * region that is not zero, a refused request answered with another code than
 * documented, a Free of a region this connection holds that fails, a stale id
 * that frees something, a Status whose numbers do not add up.
 *
 * Here: main, the threads and randomness; the operations are in
 * chaos-client-ops.c and chaos-client-raw.c, the counting and the checks in
 * chaos-client-check.c (chaos-client.h ties them).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "chaos-client.h"

const char *const pool_names[NPOOLS] = {CHAOS_POOL_HOST, CHAOS_POOL_SMALL, CHAOS_POOL_FPGA};

const char *sock_path;
struct chaos_stats *stats;
bool calm;

bool is_host(int pool) {
        return pool != P_FPGA;
}

uint64_t pool_end(int pool) {
        return pool == P_HOST ? CHAOS_HOST_SIZE : CHAOS_SMALL_SIZE;
}

/* ---- randomness ---- */

uint64_t next(struct rng *r) {
        uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

uint64_t below(struct rng *r, uint64_t n) {
        return n ? next(r) % n : 0;
}

bool chance(struct rng *r, unsigned pct) {
        return below(r, 100) < pct;
}

/* A size from lo to hi bytes, spread evenly over the powers of two between them, in whole pages. */
uint64_t size_between(struct rng *r, uint64_t lo, uint64_t hi) {
        unsigned a = 63 - (unsigned)__builtin_clzll(lo), b = 63 - (unsigned)__builtin_clzll(hi);
        unsigned e = a + (unsigned)below(r, b - a + 1);
        uint64_t v = (1ull << e) + below(r, 1ull << e);

        v = v < lo ? lo : v > hi ? hi : v;
        /* Not always whole pages: allocd rounds up to its quantum. */
        return chance(r, 70) ? (v + PAGE - 1) / PAGE * PAGE : v;
}

void name_of(struct rng *r, char *buf, size_t size) {
        snprintf(buf, size, CHAOS_NAME_FMT, (int)below(r, CHAOS_NNAMES));
}

void pause_ms(uint64_t ms) {
        struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
}

/* ---- threads ---- */

static void thr_init(struct thr *t, struct alloc_client *c, uint64_t seed) {
        *t = (struct thr){.c = c, .rng = {seed}};
        for (int i = 0; i < NNOHELLO; i++)
                t->nohello[i] = -1;
}

static void *ops_main(void *arg) {
        struct thr *t = arg;
        struct rng *r = &t->rng;

        for (;;) {
                uint64_t x = below(r, 1000);
                if (x < 280)
                        op_alloc(t, A_PLAIN);
                else if (x < 370)
                        op_alloc(t, A_NAMED);
                else if (x < 380 && !calm)
                        op_alloc(t, A_PERSIST);
                else if (x < 530 && t->nh)
                        release(t, (int)below(r, (uint64_t)t->nh), false);
                else if (x < 600 && t->nh)
                        release(t, (int)below(r, (uint64_t)t->nh), true);
                else if (x < 700)
                        op_attach(t);
                else if (x < 800)
                        op_touch(t);
                else if (x < 830)
                        op_stale(t);
                else if (x < 860)
                        op_invalid(t);
                else if (x < 880)
                        op_status(t);
                else if (x < 900)
                        op_dump(t);
                else if (x < 920)
                        op_second(t);
                else if (x < 945)
                        op_burst(t);
                else if (x < 948)
                        op_nohello(t);
                else if (x < 975)
                        pause_ms(below(r, 3));
                else if (x < 978)
                        op_batch(t);
        }
        return NULL;
}

/* Allocations big enough to wait: with a timeout, or NOFAIL until they fit or the process dies. */
static void *waiter_main(void *arg) {
        struct thr *t = arg;
        struct rng *r = &t->rng;

        for (;;) {
                struct alloc_opts o = {0};
                struct alloc_region reg;
                uint64_t x = below(r, 100);
                int pool = x < 70 ? P_HOST : x < 85 ? P_SMALL : P_FPGA;
                uint64_t size = pool == P_HOST    ? size_between(r, 512 << 10, 6 << 20)
                                : pool == P_SMALL ? size_between(r, 256 << 10, 1 << 20)
                                                  : size_between(r, 8 << 20, 40 << 20);

                x = below(r, 100);
                if (x < 20)
                        o.flags |= ALLOC_NOFAIL; /* and now and then a timeout, which NOFAIL overrides */
                if (x < 10 || (x >= 20 && x < 90))
                        o.timeout_ms = 5 + (uint32_t)below(r, 400);
                if (is_host(pool) && chance(r, 50))
                        o.flags |= ALLOC_ZERO;
                int e = alloc_region_new(t->c, pool_names[pool], size, &o, &reg);
                count(OP_WAIT, e);
                lost(e);
                if (e == -ETIMEDOUT && (o.flags & ALLOC_NOFAIL))
                        violation("a NOFAIL request (timeout_ms %u) for %llu bytes of pool %s timed out: %s",
                                  o.timeout_ms, (unsigned long long)size, pool_names[pool], alloc_last_error());
                if (e < 0)
                        continue;
                check_placement(&reg, pool, size, &o);
                struct held h = {.id = reg.id, .addr = reg.addr, .size = reg.size, .ptr = reg.ptr, .pool = pool};
                if ((o.flags & ALLOC_ZERO) && reg.ptr)
                        check_zero(&h);
                keep(t, &reg, pool, true, false);
                pause_ms(below(r, 20));
                release(t, 0, chance(r, 20));
        }
        return NULL;
}

int main(int argc, char **argv) {
        struct alloc_client *c;
        struct thr t[3];
        pthread_t th[3];
        uint64_t seed;
        int fd, e;

        if (argc != 6)
                return 100;
        /* A test that fails half-way leaves no worker behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != (pid_t)strtol(argv[5], NULL, 10))
                return 0;
        sock_path = argv[1];
        seed = strtoull(argv[3], NULL, 0);
        calm = !strcmp(argv[4], "calm");
        fd = open(argv[2], O_RDWR | O_CLOEXEC);
        stats = fd < 0 ? MAP_FAILED : mmap(NULL, sizeof(*stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (stats == MAP_FAILED)
                return 101;
        close(fd);
        signal(SIGPIPE, SIG_IGN);
        struct rng r = {seed};
        /* Over a connection limit, or stopped past hello_timeout while connecting: try again. */
        while ((e = alloc_connect(&c, sock_path, "chaos")) < 0) {
                count(OP_CONNECT, e);
                pause_ms(1 + below(&r, 5));
        }
        count(OP_CONNECT, 0);
        for (int i = 0; i < 3; i++) {
                thr_init(&t[i], c, next(&r));
                if (pthread_create(&th[i], NULL, i == 2 ? waiter_main : ops_main, &t[i]) != 0)
                        return 102;
        }
        pthread_join(th[0], NULL); /* never: the test kills this process */
        return 0;
}
