/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_CORE_H
#define ALLOCD_CORE_H

/*
 * allocd's core (docs/ARCHITECTURE.md): pools, regions, names, leases, wait
 * queues and accounting.  It knows neither libuv nor protobuf, sends nothing
 * and logs only what an operator must see; every call returns a typed error
 * with a message.  Work that a change makes possible (a free that lets a
 * waiter fit) is not done inside the change: the pool is marked ready and
 * core_run(), called once per loop turn, retries its waiters and puts the
 * outcomes on a list that the server drains (core_done_pop).
 *
 * One thread owns a core.  The only work done elsewhere is zeroing a region
 * (core_zero_run), on memory no one else can reach until core_zero_done.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "alloc/range.h"
#include "config.h"

#define MAX_GROUPS 64              /* supplementary groups kept per client */
#define ZERO_INLINE_MAX (1u << 20) /* larger ZERO regions are filled off the loop thread */
#define CORE_MSG_MAX 1024          /* a refusal quoting a 255-byte name, a pattern and two pool names */
#define CLIENT_SECRET_LEN 16       /* bytes of getrandom() a connection is given to reclaim its holds after a restart */

/* The protocol's Error codes, by value (proto.c checks that they agree). */
enum core_err {
        E_OK = 0,
        E_PROTOCOL = 1,
        E_VERSION = 2,
        E_INVALID = 3,
        E_OVERFLOW = 4,
        E_NO_POOL = 5,
        E_NOT_FOUND = 6,
        E_EXISTS = 7,
        E_DENIED = 8,
        E_QUOTA = 9,
        E_LIMIT = 10,
        E_WOULD_BLOCK = 11,
        E_TIMEOUT = 12,
        E_NEVER_FITS = 13,
        E_CANCELLED = 14,
        E_INTERNAL = 15,
        E_DISCONNECTED = 16,
};

/* Alloc flags, by the protocol's values. */
enum {
        F_ZERO = 1,
        F_NOWAIT = 2,
        F_NOFAIL = 4,
        F_PERSIST = 8,
        F_WRITECOMBINED = 16,
        F_UNSEALED = 32,
};
#define F_KNOWN (F_ZERO | F_NOWAIT | F_NOFAIL | F_PERSIST | F_UNSEALED)

/* What a region holds, by the protocol's Format values. */
enum { FMT_RAW = 0, FMT_FALLOC = 1 };

/* A region's format tag: FMT_RAW, or a falloc heap of heap_size bytes at its start, and its geometry. */
struct region_format {
        uint8_t format;
        uint64_t heap_size, chunk_size, chunk_count;
};

/* What a call did; msg is set whenever code is not E_OK. */
struct core_result {
        int code;
        char msg[CORE_MSG_MAX];
};

/*
 * E_NO_POOL in res, quoting the name a client gave: its control characters escaped (\xNN, as
 * allocctl shows names), so that a program printing the message raw sends no terminal escape.
 */
int core_no_pool(struct core_result *res, const char *name);

struct core;
struct pool;
struct user;
struct waiter;
TAILQ_HEAD(waiter_list, waiter);

/*
 * One connection as the core sees it: who it is and what it holds.  The
 * server embeds it in its connection; the core owns every field after
 * core_client_add.
 */
struct client {
        uint64_t serial; /* unique for the daemon's life; regions name their creator by it */
        pid_t pid;
        uint64_t start; /* its process's start (proc_stat) when it connected: with pid, names that process; 0 unknown */
        uid_t uid;
        gid_t gid;
        gid_t groups[MAX_GROUPS];
        int ngroups;
        char name[CLIENT_NAME_MAX_LEN + 1];
        char comm[16];                     /* its name in /proc/PID/stat when it connected; "" if unreadable */
        uint8_t secret[CLIENT_SECRET_LEN]; /* from Hello: proves a reconnecting client is this one (state.c) */
        uint32_t holds;                    /* first of its holds (region.c), or HOLD_NONE */
        uint32_t nrefs;                    /* references held, duplicates counted (max_regions_per_connection) */
        uint32_t npending;                 /* regions being zeroed for it, not yet handed out */
        uint64_t bytes;                    /* bytes of the regions it created and still holds */
        struct waiter_list waiters;
        uint32_t nwaiters;
        struct user *user;
        bool evicted; /* a Disconnect marked it; the server closes it (core_evictions) */
        bool absent;  /* a placeholder of a restored state, until reclaimed or released (reclaim.c) */
        bool watched; /* a placeholder whose process the server watches (core_absent_watched) */
        bool past;    /* let in past its uid's max_connections_per_uid on its placeholders' room (core_client_add) */
        TAILQ_ENTRY(client) link;
};
TAILQ_HEAD(client_list, client);

/* ---- the core ---- */

int core_new(struct core **ret, const struct limits *limits);
/*
 * Region ids start above generation floor (0 in a new core).  allocd draws it at random at start, so
 * that the ids a client kept from an allocd that restarted without its state (its reconnect started
 * afresh) are unlikely to name a region of this one; a restored state raises it to its own floor.
 */
void core_seed_ids(struct core *core, uint32_t floor);
/* Drops every client's holds without replies, destroys regions and pools. NULL is fine. */
void core_free(struct core *core);
/*
 * From now on the core is only to be freed: its state went to a successor (a stop that kept it in
 * the fd store), so removing a client forgets what it holds instead of releasing each reference
 * (at 1M regions that release was a quarter of a second of every restart), and core_free frees
 * the tables whole.  Only core_client_remove and core_free may follow.
 */
void core_abandon(struct core *core);
/*
 * allocd stops: the regions its connections' closes release end with it rather than being freed,
 * so an isolation = region region's memory is not taken from a holder that still runs and maps it.
 */
void core_stopping(struct core *core);
void core_set_limits(struct core *core, const struct limits *limits);
const struct limits *core_limits(const struct core *core);
/* Monotonic milliseconds; the server sets it each loop turn (tests and fuzzers set their own). */
void core_set_now(struct core *core, uint64_t now_ms);
uint64_t core_now(const struct core *core);

/* ---- clients ---- */

/* Registers cl (filled by the caller up to comm); E_LIMIT when its uid has max_connections_per_uid. */
int core_client_add(struct core *core, struct client *cl, struct core_result *res);
/*
 * cl (added) says a plain Hello: a new connection, not one reclaiming a placeholder.  Counted with the
 * placeholders (of its uid, and of all), which core_client_add leaves out so that their clients can
 * get in to reclaim them: E_LIMIT where that passes max_connections_per_uid or max_connections, so
 * that restarts cannot pile placeholders up while their processes live.
 */
int core_client_admit(struct core *core, struct client *cl, struct core_result *res);
/* Cancels its waiters without answering them and drops every reference it holds. */
void core_client_remove(struct core *core, struct client *cl);
/*
 * As core_client_remove, for a connection that said Goodbye and stays open until its client reads
 * the replies queued before the OK: its uid's and allocd's connection limits count it until
 * core_client_gone (else connections that said Goodbye and read nothing piled up past
 * max_connections, each an fd of allocd's, until accept failed for everyone).
 */
void core_client_bye(struct core *core, struct client *cl);
/* A connection of uid that core_client_bye released is closed. */
void core_client_gone(struct core *core, uid_t uid);
/* The name it gave in Hello (checked by the caller). */
void core_client_set_name(struct core *core, struct client *cl, const char *name);
/* cl's fields changed (its secret): what the core keeps for a successor is brought up to date. */
void core_client_update(struct core *core, const struct client *cl);
const struct client_list *core_clients(const struct core *core);
/*
 * Disconnect: marks every connection of pid (serial 0), or the one numbered
 * serial (pid 0), to be closed, all or none: E_DENIED unless by is root or
 * of their uid (by pid, a user's targets are its own connections of the
 * process: E_DENIED only if it has none there); by itself is never marked.  *count and *refs: the
 * connections marked and the references they hold.  The server closes them
 * (core_evictions) once the reply is out, so no state changes here but the mark.
 */
int core_client_evict(struct core *core, const struct client *by, uint64_t serial, pid_t pid, uint32_t *count,
                      uint64_t *refs, struct core_result *res);
/* Whether connections were marked since the last call; the server then closes each with evicted set. */
bool core_evictions(struct core *core);
uint32_t core_nclients(const struct core *core);

/* ---- connections that carry on across a restart (reclaim.c) ---- */

/*
 * cl (added, nothing held yet: in its Hello) proves it is connection serial of the allocd that wrote
 * the restored state: the absent placeholder of that serial must be of cl's uid and have secret
 * (len bytes).  cl then takes the placeholder's serial, secret and every reference, and the
 * placeholder goes.  E_NOT_FOUND: no placeholder of that serial (no state, or reclaim_grace
 * passed); E_DENIED: another uid or a wrong secret; E_INVALID: a secret of the wrong length, or cl
 * holds something.  Nothing changes on error.
 */
int core_client_reclaim(struct core *core, struct client *cl, uint64_t serial, const uint8_t *secret, size_t len,
                        struct core_result *res);
/* Placeholders not reclaimed yet. */
size_t core_nabsent(const struct core *core);
/* What a placeholder held when it was released, for the log. */
struct absent_info {
        uint64_t serial;
        uid_t uid;
        pid_t pid;
        char name[CLIENT_NAME_MAX_LEN + 1];
        uint32_t refs;
        uint64_t bytes;
};
/* Releases one placeholder left that is not watched (reclaim_grace passed) as its hang-up would have; false: none. */
bool core_absent_release(struct core *core, struct absent_info *info);
/* Releases the placeholder of serial (its process ended); false when there is none (reclaimed, released). */
bool core_absent_release_serial(struct core *core, uint64_t serial, struct absent_info *info);
/* Whether serial is a placeholder still (not reclaimed, not released). */
bool core_absent_has(const struct core *core, uint64_t serial);
/* Placeholder i (below core_nabsent): its serial, its client's pid and start; true if it is not watched yet. */
bool core_absent_at(const struct core *core, size_t i, uint64_t *serial, pid_t *pid, uint64_t *start);
/*
 * The server watches the process of placeholder serial, which started at start: its end releases it,
 * reclaim_grace does not.  A placeholder whose start was unknown (an older state) takes start, kept.
 */
void core_absent_watched(struct core *core, uint64_t serial, uint64_t start);
/* A page of the regions a connection holds: ids in the order of their slot (an id's low 32 bits), each count. */
#define HELD_PAGE 4000
struct held_page {
        uint64_t ids[HELD_PAGE];
        uint32_t counts[HELD_PAGE];
        int created[HELD_PAGE]; /* this connection made it (0 or 1, as protobuf-c's booleans are) */
        size_t n;
        bool more; /* ask again with after = ids[n - 1] */
};
/* The regions cl holds whose slot is above after's (after 0: from the first); E_INTERNAL out of memory. */
int core_client_held(const struct core *core, const struct client *cl, uint64_t after, struct held_page *page,
                     struct core_result *res);

/* ---- requests: each validates first and changes nothing on error ---- */

struct alloc_request {
        const char *pool;
        uint64_t size, count; /* count 0: 1; count x size is checked for overflow */
        struct range_req req;
        int numa_node; /* -1: any */
        uint32_t flags;
        uint32_t timeout_ms; /* 0: the daemon's wait_timeout */
        const char *name;    /* NULL or "": unnamed */
        uint32_t format;     /* FMT_*, as asked */
        uint64_t chunk_size; /* FMT_FALLOC: as asked; 0: not given */
};

/* What an Alloc, Attach or a granted waiter produced. */
enum grant {
        GRANT_NONE,    /* an error: see the result */
        GRANT_REGION,  /* *slot is the client's now */
        GRANT_ZEROING, /* *slot is to be zeroed (core_zero_run) before it is the client's */
        GRANT_WAITING, /* queued: the outcome comes from core_done_pop */
};

/* Returns an enum grant; req_id comes back with a waiter's outcome. */
int core_alloc(struct core *core, struct client *cl, uint64_t req_id, const struct alloc_request *m, uint32_t *slot,
               struct core_result *res);
int core_free_region(struct core *core, struct client *cl, uint64_t id, struct core_result *res);
int core_detach(struct core *core, struct client *cl, uint64_t id, struct core_result *res);
/*
 * Attach: a reference to the region published as name (GRANT_REGION, *slot), or, with timeout_ms,
 * a wait for the name to be published, sealed and zeroed (GRANT_WAITING: the outcome comes from
 * core_done_pop, in arrival order among the name's waiters); GRANT_NONE on error.  A name
 * published in another pool, or by another uid, than the request asks is E_EXISTS at once: the
 * name is someone else's, and waiting would not change that.
 */
struct attach_request {
        const char *name;
        uint32_t timeout_ms;
        const char *pool; /* NULL or "": any; else the name must be published in this pool */
        bool by_owner;    /* the name must be published by a connection of uid owner */
        uid_t owner;
};
int core_attach(struct core *core, struct client *cl, uint64_t req_id, const struct attach_request *m, uint32_t *slot,
                struct core_result *res);
/*
 * Batches (batch.c): n regions of m's pool, constraints and flags, sizes[i] bytes each (m's size
 * unset, count 0 or 1), into slots[0, n), all or none, each handed out to cl (never waiting,
 * never a worker's zeroing); and Free of each of ids[0, n), all or none, each id at most once.
 * A refused alloc batch leaves no region, reference or range behind, but may leave tables grown.
 */
#define CORE_BATCH_MAX 1024
int core_alloc_batch(struct core *core, struct client *cl, const struct alloc_request *m, const uint64_t *sizes,
                     size_t n, uint32_t *slots, struct core_result *res);
int core_free_batch(struct core *core, struct client *cl, const uint64_t *ids, size_t n, struct core_result *res);
/*
 * A spare (a Free's renew, docs/protocol.md "Spares"): m allocated for cl as core_alloc would, but
 * never waiting and never for a name, a format, PERSIST or UNSEALED, and not while any request waits
 * for room in the pool (they come first), nor where the region would be zeroed off the loop thread.
 * GRANT_REGION, or GRANT_NONE with why in res (whose code is then E_OK or the alloc's refusal).
 */
#define SPARES_MAX 4 /* spares one Free may ask for */
int core_spare(struct core *core, struct client *cl, const struct alloc_request *m, uint32_t *slot,
               struct core_result *res);
/* Seal: the UNSEALED region id, allocated by this connection, may be attached from now on. */
int core_seal(struct core *core, struct client *cl, uint64_t id, struct core_result *res);

/*
 * Zeroing off the loop thread, and what comes with it: the memory of a region's own memfd, and
 * the header of a falloc heap allocd writes.  What to do to slot, read on the loop thread before
 * the job starts.
 */
struct zero_job {
        struct pool *pool;
        uint64_t offset, size;
        int fd;                   /* isolation = region: the region's memfd, to fill with memory; else -1 */
        bool zero;                /* set the bytes to zero (a memfd of its own reads as zeros already) */
        struct region_format fmt; /* FMT_FALLOC: write the heap's header and bitmap, after the rest */
};
void core_zero_job(const struct core *core, uint32_t slot, struct zero_job *job);
/* Runs on a worker thread. */
int core_zero_run(const struct zero_job *job);
/*
 * Back on the loop thread: the region becomes cl's (cl NULL: its client is
 * gone, the region is dropped).  Returns GRANT_REGION or GRANT_NONE (result
 * failed, or is -ECANCELED: the client cancelled the request meanwhile, and
 * the answer is E_CANCELLED; the region is gone, nothing was allocated).
 */
int core_zero_done(struct core *core, struct client *cl, uint32_t slot, int result, struct core_result *res);

/* ---- deferred work ---- */

/*
 * Expires waiters past their deadline and retries those of pools that became ready; once per loop
 * turn.  Retrying stops after a slice of time (core_set_slice) and goes on in the next call, so that
 * waiters that are costly to try (constrained requests in a fragmented pool) never hold up the loop.
 */
void core_run(struct core *core);
/* True when core_run has work (a pool became ready, or an outcome waits to be taken). */
bool core_pending(const struct core *core);
/* The last core_run stopped at the end of its slice: call it again in the next loop turn, not at once. */
bool core_yielded(const struct core *core);
/* How long a core_run retries waiters at most (0.5 ms by default; at least one try a call). */
void core_set_slice(struct core *core, uint64_t ns);
/* The earliest waiter deadline, or UINT64_MAX. */
uint64_t core_next_deadline(const struct core *core);

/* A finished waiter: granted (grant, slot) or failed (res). */
struct core_done {
        struct client *client;
        uint64_t req_id;
        bool attach; /* an Attach's wait, not an Alloc's */
        int grant;
        uint32_t slot;
        struct core_result res;
};
/* The next finished waiter, or NULL; d is the caller's to fill. */
bool core_done_pop(struct core *core, struct core_done *d);
/* Ends every waiter with E_CANCELLED (the daemon stops); their outcomes go on the done list. */
void core_cancel_waiters(struct core *core, const char *why);
/*
 * A Cancel: cl's request req_id, if it waits, ends with E_CANCELLED (its outcome on the done list)
 * and this is E_OK; else E_NOT_FOUND (answered already, or never a waiting request of cl's), and
 * nothing changes.
 */
int core_cancel(struct core *core, struct client *cl, uint64_t req_id, struct core_result *res);

/* ---- pools ---- */

/*
 * Makes a pool from conf; on error a message.  A pool whose backing cannot be made (-ENODEV: it
 * needs a GPU allocd cannot use; else what the machine refused: memory, huge pages, mlock) is
 * added all the same, unavailable, with the reason, and the error is returned: core_pool_find
 * finds it unless the error came before it existed (-ENOMEM).
 */
int core_pool_add(struct core *core, const struct pool_conf *conf, char *err, size_t errsize);
/*
 * core_pool_add in two steps, so that the slow one (fallocate, mlock, cuMemCreate) can run off the
 * loop thread: core_pool_make touches no core state; a backing that cannot be made gives an
 * unavailable placeholder in *ret with the error (*ret NULL: out of memory before).
 * core_pool_adopt adds the result on the core's thread (in place of, and with the id of, an
 * unavailable or retired pool of its name: its configuration is the one shown from then on); on
 * error the pool is still the caller's, to core_pool_discard.
 */
int core_pool_make(const struct pool_conf *conf, struct pool **ret, char *err, size_t errsize);
int core_pool_adopt(struct core *core, struct pool *p, char *err, size_t errsize);
void core_pool_discard(struct pool *p);
/*
 * core_pool_add from fd, a pool's fd from systemd's fd store (fdstore.h) that the caller found to
 * be of conf's kind and size: the same memory, mapped, locked and checked again (a memfd's size and
 * seals).  fd is taken, closed on error; the pool is then unavailable with the reason, as above.
 */
int core_pool_add_fd(struct core *core, const struct pool_conf *conf, int fd, char *err, size_t errsize);
/*
 * The pool takes no Alloc from now on (why says so), and the Allocs waiting for room in it are
 * answered so rather than left to their timeout; Attach, Detach and Free work as before.
 * reload: a reload took its section out, and the pool runs as it was configured, so that the
 * section put back can serve it again (core_pool_undrain).
 */
void core_pool_drain(struct core *core, struct pool *p, const char *why, bool reload);
/* A pool that a reload drained serves again (its section is back); false, nothing done, for any other. */
bool core_pool_undrain(struct pool *p);
/*
 * Draining p holds names (patterns as pool_conf.names has them) for the configured pool of its name
 * that is made when p's last region goes, so that nobody publishes them elsewhere meanwhile, and goes
 * on holding them once retired until that pool is adopted in its place; "" holds none.  Nothing for
 * a pool that neither drains nor went.
 */
void core_pool_hold_names(struct pool *p, const char *names);
/*
 * A draining pool whose last region went: its backing is closed and it is hidden as core_pool_forget
 * hides a pool, its id kept (and its held names, core_pool_hold_names).  False (nothing done) when p
 * is not draining or still holds a region.
 */
bool core_pool_retire(struct pool *p);
struct pool *core_pool_find(const struct core *core, const char *name);
size_t core_npools(const struct core *core);
/* The i-th pool (i < core_npools), available or not. */
struct pool *core_pool_at(const struct core *core, size_t i);

/* What Status and Dump show of a pool. */
struct pool_info {
        const char *name;
        enum pool_kind kind;
        uint32_t id;
        uint64_t made; /* another pool under the same id (made anew) has another: its fd is other memory */
        bool available;
        const char *reason;  /* !available: why */
        const char *backend; /* "memfd", "vmm", or NULL */
        int fd;              /* -1: no memory to map (or, isolation = region, no pool-wide memory) */
        int ro_fd;           /* a read-only open of fd, or -1 where the backing has none (CUDA VMM) */
        uint64_t size;       /* the mapping's size */
        uint64_t regions, waiters;
        uint64_t size_asked; /* as configured (a vmm pool's size is rounded up) */
        const struct pool_conf *conf;
        const uint8_t *uuid;  /* gpu: 16 bytes */
        const char *draining; /* NULL, or why the pool takes no Alloc (core_pool_drain) */
        bool reload_drained;  /* draining, by a reload: core_pool_undrain applies */
        const char *names;    /* the patterns it reserves now (pool_conf.names' form): conf's, or held ones */
};
void core_pool_info(const struct pool *p, struct pool_info *info);
/* A new fd of the file fd is (a region's memfd): the same open file, or, read_only, a read-only open of it. */
int core_fd_open(int fd, bool read_only);
/* Its arena's figures (not in pool_info: the reply to every Alloc reads that). */
void core_pool_stats(const struct pool *p, struct range_stats *st);
const char *core_pool_name(const struct pool *p);
enum pool_kind core_pool_kind(const struct pool *p);
enum { ACCESS_ATTACH = 4, ACCESS_ALLOC = 2 };
bool core_pool_may(const struct pool *p, const struct client *cl, int what);
/* A uid's use of a pool: the bytes and the count of the live regions it made there (quota_per_uid counts these). */
struct uid_usage {
        uid_t uid;
        uint64_t bytes;
        uint64_t regions;
};
/*
 * At most n of p's users into top, the most bytes first (then the lower uid), with mine's in
 * the last place if it uses p and would not be listed; only_mine: mine's alone.  Returns how many
 * it put there; *users is how many uids use p.
 */
size_t core_pool_users(const struct pool *p, uid_t mine, bool only_mine, struct uid_usage *top, size_t n,
                       size_t *users);
/* Whether p's names = reserves name. */
bool core_pool_reserves(const struct pool *p, const char *name);
/* The first of p's names = patterns that matches name, in buf (for messages); NULL when none does. */
const char *core_pool_reserving(const struct pool *p, const char *name, char *buf, size_t size);
/* SIGHUP: access rules and quota of a running pool. */
void core_pool_update(struct pool *p, const struct pool_conf *conf);
/*
 * isolation = region across a restart (restart-store.c keeps each region's memfd in systemd's fd store):
 * made(data, id, fd) when a region with a memfd of its own is made, gone(data, id) when it goes, and
 * stored(data, id), while a state is restored, the memfd kept for region id (the core takes it), or
 * -1; has(data, id), while a state is restored, whether that memfd is there, without taking it:
 * a pool with a region whose memfd is not is lost before any region is restored, its other
 * memfds left untaken (state_info.lost).  Any of them NULL: not called (stored set, has NULL: a
 * missing memfd refuses the whole state).  With stored set, a state is read from an fd store:
 * the regions of a pool (isolation = pool) whose memory was not made from its stored fd
 * (core_pool_add_fd) are lost.
 */
struct region_fds {
        void (*made)(void *data, uint64_t id, int fd);
        void (*gone)(void *data, uint64_t id);
        int (*stored)(void *data, uint64_t id);
        bool (*has)(void *data, uint64_t id);
        bool (*room)(void *data); /* false: no more region memfds can be kept, and Alloc refuses them */
        void *data;
};
void core_set_region_fds(struct core *core, const struct region_fds *fds);
/* Forgets an unavailable pool taken out of the configuration. */
void core_pool_forget(struct core *core, const char *name);

/* ---- regions, for Status and Dump ---- */

struct region_info {
        uint64_t id;
        const struct pool *pool;
        uint64_t offset, size;
        uint32_t flags, refs;
        uid_t uid;
        pid_t pid;
        uint64_t creator; /* serial of the creating connection */
        uint64_t created; /* seconds since the epoch */
        int fd;           /* isolation = region: the region's memfd (the core's); else -1 */
        const char *name; /* NULL: unnamed */
        bool pending;     /* not yet handed out (being zeroed) */
        bool persist;     /* the daemon still holds its PERSIST reference */
        struct region_format fmt;
        bool formatted; /* FMT_FALLOC: allocd wrote the heap (else its creator does, before its Seal) */
};
void core_region_info(const struct core *core, uint32_t slot, struct region_info *info);
/* The first live slot at or after *slot; false when there is none. */
bool core_region_next(const struct core *core, uint32_t *slot);
/*
 * As core_region_next, looking no further than end (exclusive), so that a caller pages through
 * the table in bounded steps; when there is none before end, *slot is end if the table goes on
 * past it, UINT32_MAX if it does not.
 */
bool core_region_next_before(const struct core *core, uint32_t *slot, uint32_t end);
/* Calls fn for each client holding slot, with its count of references; stops when fn returns false. */
void core_region_holders(const struct core *core, uint32_t slot,
                         bool (*fn)(const struct client *cl, uint32_t count, void *data), void *data);

/* Totals for STATUS= and benchmarks. */
struct core_stats {
        uint64_t regions, names, holds, waiters, used, total;
        uint64_t formats;   /* regions that are not raw bytes (formats.c's entries) */
        uint64_t tries;     /* waiters tried against a pool since start */
        uint64_t skips;     /* of those, tries the ranges that came back since the waiter's last answered */
        uint64_t slices;    /* passes over a pool's waiters core_run broke off for the next turn */
        uint64_t usage;     /* the pools' per-uid byte counts (pool.c): one for each uid with bytes in a pool */
        size_t table_bytes; /* memory of the region table, holds and names */
};
void core_stats(const struct core *core, struct core_stats *st);

#endif
