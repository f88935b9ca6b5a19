/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_H
#define ALLOCD_H

/*
 * The daemon's shared declarations.  One thread runs the libuv loop; the
 * only work done elsewhere is zero-filling large regions (uv_queue_work),
 * and the region it fills holds an extra reference meanwhile.  So nothing
 * here is locked.  (Zeroing a gpu or pinned vmm region runs cuMemsetD8 there,
 * with the pool's context pushed on that thread.)
 *
 *   main.c      arguments, signals, systemd, configuration reload
 *   config.c    the INI file
 *   log.c       stderr, or the journal with fields when systemd started us
 *   server.c    listening socket, connections, packets in and out
 *   dispatch.c  one handler per request type
 *   region.c    the region table, holds (leases), names, accounting
 *   waitq.c     allocations waiting for memory
 *   pool.c      the pool interface, access control; pool-host.c (host, pinned memfd),
 *               pool-vmm.c (gpu, pinned vmm), pool-fpga.c
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <uv.h>

#include "alloc/range.h"
#include "allocd.pb-c.h"
#include "wire.h"

#define NAME_MAX_LEN 255           /* region and pool names */
#define CLIENT_NAME_MAX_LEN 63     /* Hello.client_name */
#define MAX_GROUPS 64              /* supplementary groups kept per connection */
#define ZERO_INLINE_MAX (1u << 20) /* larger ZERO regions are filled off the loop thread */

/* ---- configuration (config.c) ---- */

enum pool_kind {
        POOL_HOST = ALLOCD__POOL_KIND__HOST,
        POOL_FPGA = ALLOCD__POOL_KIND__FPGA,
        POOL_PINNED = ALLOCD__POOL_KIND__PINNED,
        POOL_GPU = ALLOCD__POOL_KIND__GPU,
};

/* How a pinned pool is made (a gpu pool is always BACKEND_VMM). */
enum pool_backend { BACKEND_AUTO, BACKEND_MEMFD, BACKEND_VMM };

/* cuMemHostRegister's flags, by the values of CUDA's ABI (config.c needs no CUDA headers). */
#define REGISTER_PORTABLE 0x01u
#define REGISTER_DEVICEMAP 0x02u

struct span {
        uint64_t base, size;
};

struct pool_conf {
        char name[NAME_MAX_LEN + 1];
        enum pool_kind kind;
        bool has_kind;
        uint64_t size;       /* host */
        uint64_t quantum;    /* 0: the kind's default */
        uint64_t hugepage;   /* host: 0, 2 MiB or 1 GiB */
        bool lock;           /* host: mlock */
        int numa_node;       /* host: -1 none */
        struct span *ranges; /* fpga */
        size_t nranges;
        uid_t owner;
        gid_t group;
        mode_t mode;
        uint64_t quota_per_uid; /* 0: none */
        enum pool_backend backend;
        uint32_t register_flags; /* pinned: REGISTER_* */
        int device;              /* gpu: the device ordinal, as allocd sees it */
        uint32_t keys;           /* the keys the section set, one bit each (config.c) */
        int line;                /* where the section starts */
};

struct limits {
        uint32_t max_connections;
        uint32_t max_regions_per_connection;
        uint32_t max_waiters_per_connection;
        uint32_t max_names;
        uint32_t wait_timeout_ms; /* for requests that give none */
};

struct config {
        struct limits limits;
        int log_level;
        struct pool_conf *pools;
        size_t npools;
};

/* Fills *conf; on error returns a negative errno value and a "file:line: what" message in err. */
int config_load(struct config *conf, const char *path, char *err, size_t errsize);
/* The built-in configuration used when no file is given. */
int config_default(struct config *conf);
void config_clear(struct config *conf);
int parse_size(const char *s, uint64_t *ret);
const char *pool_kind_name(enum pool_kind k);

/* ---- logging (log.c) ---- */

enum { LOG_LEVEL_ERR = 3, LOG_LEVEL_WARNING = 4, LOG_LEVEL_NOTICE = 5, LOG_LEVEL_INFO = 6, LOG_LEVEL_DEBUG = 7 };

struct log_ctx {
        const char *pool;
        uint64_t region;
        pid_t pid;
};

extern int log_level;
void log_init(void);
int log_level_parse(const char *s);
void logx(int level, const struct log_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define log_err(...) logx(LOG_LEVEL_ERR, NULL, __VA_ARGS__)
#define log_warn(...) logx(LOG_LEVEL_WARNING, NULL, __VA_ARGS__)
#define log_info(...) logx(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_debug(...) logx(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)

/* ---- pools (pool.c, pool-host.c, pool-fpga.c) ---- */

struct waiter;
TAILQ_HEAD(waiter_list, waiter);

struct uid_usage {
        uid_t uid;
        uint64_t bytes;
};

struct pool {
        struct pool_conf conf; /* as running: a vmm pool's size is rounded up to the granularity */
        uint64_t size_asked;   /* the size as configured, so SIGHUP sees a change only if the file's changed */
        const struct pool_ops *ops;
        uint32_t index;
        struct range_arena *arena;
        struct range_arena *empty; /* the same spans, never allocated: "could this ever fit?" */
        uint64_t total;
        int fd;           /* host, pinned memfd: the memfd; vmm: the exported CUDA fd; -1 for fpga */
        void *map;        /* memfd: the daemon's own mapping, for ZERO */
        void *priv;       /* the kind's own state (pool-vmm.c) */
        uint8_t uuid[16]; /* gpu: the device's CUuuid, so clients find it whatever their ordinals */
        uint64_t nregions;
        struct waiter_list waiters;
        uint64_t nwaiters;
        struct uid_usage *usage;
        size_t nusage;
};

struct pool_ops {
        uint64_t default_quantum;
        /* Creates the backing; on error a message in err. */
        int (*open)(struct pool *p, char *err, size_t errsize);
        void (*close)(struct pool *p);
        /* Sets bytes to zero; NULL where the pool holds no memory. May run off the loop thread. */
        int (*zero)(struct pool *p, uint64_t offset, uint64_t size);
        /* zero waits for a device: never on the loop thread, whatever the size. */
        bool zero_blocks;
};

extern const struct pool_ops pool_host_ops, pool_fpga_ops, pool_vmm_ops;

/* 0 if pinned pools can use backend = vmm here; else why not, and -ENODEV when there is no GPU. */
int vmm_host_numa_check(char *why, size_t whysize);
/* "memfd", "vmm", or NULL for pools without memory. */
const char *pool_backend_name(const struct pool *p);

/* A configured pool that could not be made because allocd cannot use the GPU. */
struct unavailable {
        char name[NAME_MAX_LEN + 1];
        enum pool_kind kind;
        char reason[256];
};
extern struct unavailable *unavailable;
extern size_t nunavailable;
const struct unavailable *pool_unavailable(const char *name);
/* Drops name from the unavailable pools (it was made, or is no longer configured). */
void pool_forget_unavailable(const char *name);

extern struct pool **pools;
extern size_t npools;

int pool_create(const struct pool_conf *conf, char *err, size_t errsize);
struct pool *pool_find(const char *name);
/* Adds [base, base + size) to the pool's arenas (at open); on error a message in err. */
int pool_add_span(struct pool *p, uint64_t base, uint64_t size, char *err, size_t errsize);
void pools_destroy(void);

enum { ACCESS_ATTACH = 4, ACCESS_ALLOC = 2 };
struct conn;
bool pool_may(const struct pool *p, const struct conn *c, int what);
uint64_t pool_usage(const struct pool *p, uid_t uid);
int pool_charge(struct pool *p, uid_t uid, int64_t bytes);

/* ---- regions (region.c) ---- */

/* Plain data, so the table can be written out and read back (DESIGN §10). */
struct region {
        uint32_t gen; /* bumped each time the slot is used, so ids are not reused */
        bool live;
        uint32_t pool; /* index into pools */
        uint64_t offset, size;
        uint32_t flags;
        uint32_t refs; /* holds + 1 for PERSIST + 1 while being zeroed */
        uid_t uid;
        pid_t pid;
        uint64_t conn; /* serial of the creating connection */
        uint64_t created;
        bool persist;   /* the daemon's own reference is held */
        bool published; /* name is in the namespace */
        bool zeroing;   /* a worker is filling it; not yet handed out */
        char name[NAME_MAX_LEN + 1];
};

struct hold {
        struct conn *conn;
        uint32_t slot;
        LIST_ENTRY(hold) by_conn;
        struct hold *next_in_region;
};
LIST_HEAD(hold_list, hold);

extern struct region *regions;
extern uint32_t nslots;
extern uint64_t nnames;

uint64_t region_id(uint32_t slot);
/* The slot of a live region id, or -ENOENT. */
int region_slot(uint64_t id);
/* Creates a region with one hold by c. */
int region_new(struct pool *p, struct conn *c, uint64_t offset, uint64_t size, uint32_t flags, const char *name,
               uint32_t *ret_slot);
int region_hold(uint32_t slot, struct conn *c);
struct hold *region_find_hold(uint32_t slot, const struct conn *c);
/* Drops one reference; the region goes back to its pool when none are left. */
void region_unref(uint32_t slot);
void region_drop_hold(struct hold *h);
void region_unpublish(uint32_t slot);
int region_by_name(const char *name);
/*
 * The region as the protocol describes it.  Alloc and Attach replies carry
 * only where it is (full false): encoding the bookkeeping that only Dump
 * shows is a measurable part of a round trip.
 */
void region_fill(Allocd__Region *out, uint32_t slot, bool full);
/* The first of the region's holds, each linked by next_in_region. */
const struct hold *region_holders(uint32_t slot);
void regions_destroy(void);

/* ---- waiting allocations (waitq.c) ---- */

struct alloc_args {
        struct pool *pool;
        uint64_t size;
        struct range_req req;
        uint32_t flags;
        char name[NAME_MAX_LEN + 1];
};

struct waiter {
        struct conn *conn;
        uint64_t id;
        struct alloc_args args;
        uv_timer_t timer;
        TAILQ_ENTRY(waiter) by_pool, by_conn;
};

int waitq_add(struct conn *c, uint64_t id, const struct alloc_args *a, uint32_t timeout_ms);
/* Grants, in arrival order, every waiter of p whose request now fits. */
void waitq_wake(struct pool *p);
/* Answers with error and removes the waiter. */
void waitq_cancel(struct waiter *w, int error, const char *msg);

/* ---- connections (server.c) ---- */

struct packet;
STAILQ_HEAD(packet_list, packet);

struct conn {
        uv_poll_t poll;
        int fd;
        uint64_t serial;
        pid_t pid;
        uid_t uid;
        gid_t gid;
        gid_t groups[MAX_GROUPS];
        int ngroups;
        char name[CLIENT_NAME_MAX_LEN + 1];
        char comm[16]; /* /proc/PID/comm when it connected; "" if unreadable */
        bool hello;
        bool closing; /* close once the loop is back in control */
        bool refused; /* over max_connections: answered LIMIT to its first request, then closed */
        bool *pool_fd_sent;
        size_t npool_fd_sent;
        struct hold_list holds;
        uint32_t nholds;
        struct waiter_list waiters;
        uint32_t nwaiters;
        uint32_t busy; /* zero-fill jobs that will answer on this connection */
        struct packet_list out;
        uint32_t nout;
        TAILQ_ENTRY(conn) link;
};
TAILQ_HEAD(conn_list, conn);

extern struct conn_list conns;
extern uint32_t nconns;
extern struct limits limits;
extern uv_loop_t *loop;

int server_listen(const char *path, char *err, size_t errsize);
int server_adopt(int fd);
void server_stop(void);
/* Queues a reply; fds (at most one) are duplicated, the caller keeps its own. */
void conn_send(struct conn *c, const Allocd__Reply *reply, const int *fds, size_t nfds);
void conn_reply_error(struct conn *c, uint64_t id, int error, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Marks c to be closed; safe inside any handler. */
void conn_kill(struct conn *c);
void conn_unbusy(struct conn *c);

/* ---- requests (dispatch.c) ---- */

void dispatch(struct conn *c, const Allocd__Request *req);
/* Allocates a; on success replies to c (now or after zeroing) and returns 0; else an allocd error code. */
int alloc_try(struct conn *c, uint64_t id, const struct alloc_args *a, char *msg, size_t msgsize);

/* ---- the daemon (main.c) ---- */

extern bool stopping;
extern uint64_t started_realtime; /* seconds since the epoch */
extern uint64_t started_hrtime;   /* uv_hrtime() at start */
void status_changed(void);

#endif
