/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_CHAOS_CLIENT_H
#define ALLOC_TEST_CHAOS_CLIENT_H

/*
 * What the parts of one chaos worker share: chaos-client.c (main, its threads, randomness),
 * chaos-client-ops.c (the operations on liballoc-client connections), chaos-client-raw.c (raw
 * connections) and chaos-client-check.c (counting outcomes, and checking what allocd promises).
 */
#include <stdbool.h>
#include <stdint.h>

#include <alloc/client.h>

#include "chaos.h"

#define MAXHELD 4  /* regions a thread holds at once */
#define NSTALE 16  /* ids a thread freed, kept to ask for again */
#define NNOHELLO 1 /* silent raw connections a thread keeps */
#define PAGE 4096u /* the host pools' quantum */

enum { P_HOST, P_SMALL, P_FPGA, NPOOLS };
extern const char *const pool_names[NPOOLS];

extern const char *sock_path;
extern struct chaos_stats *stats;
extern bool calm;

bool is_host(int pool);
uint64_t pool_end(int pool);

struct rng {
        uint64_t s;
};

uint64_t next(struct rng *r);
uint64_t below(struct rng *r, uint64_t n);
bool chance(struct rng *r, unsigned pct);
uint64_t size_between(struct rng *r, uint64_t lo, uint64_t hi);
void name_of(struct rng *r, char *buf, size_t size);
void pause_ms(uint64_t ms);

/* ---- regions this thread holds ---- */

struct held {
        uint64_t id, addr, size, tag;
        void *ptr;
        int pool;
        bool own;     /* allocated unnamed by this thread: nobody else can write it, so its bytes are checked */
        bool persist; /* own and PERSIST: always Freed (detached, nobody could ever free it: see the test) */
};

struct thr {
        struct alloc_client *c;
        struct rng rng;
        struct held h[MAXHELD];
        int nh;
        uint64_t stale[NSTALE];
        int nstale;
        int nohello[NNOHELLO];
        struct alloc_client *second;
};

/* chaos-client-check.c */
void count(enum chaos_op op, int e);
void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void lost(int e);
void write_tags(const struct held *h);
void check_tags(const struct held *h, const char *when);
void check_zero(const struct held *h);
void check_placement(const struct alloc_region *r, int pool, uint64_t want, const struct alloc_opts *o);

/* chaos-client-ops.c */
enum alloc_kind_op { A_PLAIN, A_NAMED, A_PERSIST };
void release(struct thr *t, int i, bool detach);
void keep(struct thr *t, const struct alloc_region *r, int pool, bool own, bool persist);
int pick_pool(struct rng *r);
uint64_t pick_size(struct rng *r, int pool);
void op_alloc(struct thr *t, enum alloc_kind_op kind);
void op_attach(struct thr *t);
void op_touch(struct thr *t);
void op_stale(struct thr *t);
void op_batch(struct thr *t);
void op_invalid(struct thr *t);
void op_status(struct thr *t);
void op_dump(struct thr *t);
void op_second(struct thr *t);

/* chaos-client-raw.c */
void op_nohello(struct thr *t);
void op_burst(struct thr *t);

#endif
