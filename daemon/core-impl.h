/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_CORE_IMPL_H
#define ALLOCD_CORE_IMPL_H

/*
 * Inside the core: each piece of state has one owner, the file named beside
 * it, and only that file changes it (docs/ARCHITECTURE.md, "Who owns what").
 */

#include "core.h"
#include "slots.h"

#define HOLD_NONE UINT32_MAX
/* What an Alloc in a draining pool is told: its name, why it drains. */
#define POOL_DRAINING_FMT "pool %s takes no new regions: %s; its regions can still be attached, detached and freed"

struct keep;

/* What an Attach asks of the region it finds: its pool, its creator's uid. */
struct attach_want {
        /* By id: a reload that makes a pool at last replaces the placeholder a waiter found, and keeps its id. */
        bool by_pool;
        uint32_t pool;
        bool by_owner;
        uid_t owner;
};

/* An Alloc once checked: what every try of it needs. */
struct alloc_args {
        struct pool *pool;
        uint64_t size;
        struct range_req req;
        uint32_t flags;
        uint32_t timeout_ms; /* 0: the daemon's wait_timeout */
        const char *name;    /* "" unnamed; the request's until it waits, then the waiter's own copy */
        struct region_format fmt;
};

/* ---- pools (pool.c; the backings in pool-host.c, pool-vmm.c, pool-fpga.c) ---- */

/*
 * What came back to a pool while it had waiters: ranges, each numbered by waitq's count of them (all
 * pools'), so that a waiter refused room is tried again against what came back since, not the whole
 * arena (waitq.c).  An entry may cover several ranges and what lies between them: then its number
 * is the latest's.
 */
#define FREED_LOG 16
struct freed {
        uint64_t seq, offset, end;
};

struct pool {
        struct pool_conf conf; /* as running: a vmm pool's size is rounded up to the granularity */
        uint64_t size_asked;   /* the size as configured, so SIGHUP sees a change only if the file's changed */
        uint32_t id;           /* its place in core->pools, for its life: pools are never removed */
        uint64_t made;         /* which pool adopted, of all: one made anew under a drained pool's id is another */
        bool available;        /* false: configured, but not made (no GPU for it, or the machine refused it) */
        char reason[256];      /* !available: why, for Status and for requests naming the pool */
        bool gone;             /* !available, and no longer configured: hidden, its id kept */
        char draining[256];    /* not "": takes no Alloc, why (unconfigured: by a reload, or restored so) */
        bool reload_drained;   /* draining since a reload: its conf is still the configured one */
        char held_names[NAME_PATTERNS_MAX + 1]; /* draining: the names = of the namesake that waits for it */
        int adopt_fd;    /* open: make the backing from this stored fd (fdstore.h) and take it; -1: new */
        bool from_store; /* its memory is the stored fd's (adopt_fd was open): a state's regions may be restored in it
                          */
        const struct pool_ops *ops;
        struct range_arena *arena;
        struct range_arena *empty; /* the same spans, never allocated: "could this ever fit?" */
        uint64_t total;
        int fd;           /* host, pinned memfd: the memfd; vmm: the exported CUDA fd; -1 for fpga */
        int ro_fd;        /* host, pinned memfd: a read-only open of it, for holders that may only attach */
        void *map;        /* memfd: the daemon's own mapping, for ZERO */
        void *priv;       /* the kind's own state (pool-vmm.c) */
        uint8_t uuid[16]; /* gpu: the device's CUuuid, so clients find it whatever their ordinals */
        uint64_t nregions;
        struct uid_usage *usage;
        size_t nusage;
        /* waitq.c's */
        struct waiter_list waiters;
        uint64_t nwaiters;
        bool ready; /* on the ready list: a region came back since its waiters were last tried */
        TAILQ_ENTRY(pool) ready_link;
        struct waiter *resume; /* ready: where a pass that ran out of its slice goes on; NULL: from the oldest */
        bool again;            /* a region came back during that pass: another from the oldest follows */
        struct freed freed[FREED_LOG]; /* every range that came back since the pool last had no waiter */
        uint32_t nfreed;
};
TAILQ_HEAD(pool_list, pool);

struct pool_ops {
        /* Creates the backing; on error a message in err. */
        int (*open)(struct pool *p, char *err, size_t errsize);
        void (*close)(struct pool *p);
        /* Sets bytes to zero; NULL where the pool holds no memory. May run off the loop thread. */
        int (*zero)(struct pool *p, uint64_t offset, uint64_t size);
        /* zero waits for a device: never on the loop thread, whatever the size. */
        bool zero_blocks;
};

extern const struct pool_ops pool_host_ops, pool_fpga_ops, pool_vmm_ops, pool_region_ops;

/* pool-host.c: a memfd of conf's pages, mode 0600 (reopening it takes allocd's uid), size bytes long. */
int host_memfd(const struct pool_conf *conf, uint64_t size, int *ret);
/* Seals fd's size, and its seals. */
int host_seal(int fd);
/* A read-only open of the file fd is (a new fd, or a negative errno value). */
int host_reopen_ro(int fd);
/* pool-region.c: a region's own memfd, sealed; then its memory (fallocate), which may run off the loop thread. */
int pool_region_new(const struct pool *p, uint64_t size, int *ret);
int pool_region_fill(int fd, uint64_t size);
/* A dead region's memfd: its size bytes go back to the machine, whoever still maps them (0: none); fd is closed. */
void pool_region_drop(int fd, uint64_t size);
/* A restored region of an isolation = region pool gets its memfd back (region_fds.stored); -ENOENT, -EBADF. */
int pool_region_restore(struct core *core, const struct pool *p, uint32_t slot);

/* 0 if pinned pools can use backend = vmm here; else why not, and -ENODEV when there is no GPU. */
int vmm_host_numa_check(char *why, size_t whysize);
/* vmm_host_numa_check, then one granule made on numa_node (-1: device 0's nearest), exported and released. */
int vmm_host_numa_probe(int numa_node, char *why, size_t whysize);
/* Adds [base, base + size) to the pool's arenas (at open); on error a message in err. */
int pool_add_span(struct pool *p, uint64_t base, uint64_t size, char *err, size_t errsize);
void pool_destroy(struct pool *p);
uint64_t pool_usage(const struct pool *p, uid_t uid);
void pool_count_region(struct pool *p, int delta);
/* One region of uid's, bytes long, made (bytes > 0) or gone (bytes < 0): its bytes and its count. */
int pool_charge(struct pool *p, uid_t uid, int64_t bytes);

/* ---- regions and holds (region.c, hold.c) ---- */

enum {
        R_LIVE = 1,
        R_PERSIST = 2, /* the daemon's own reference is held */
        R_PENDING = 4, /* made, not yet handed out (a worker may be zeroing it): no client holds it */
};

/* Plain data, 64 bytes: 1,000,000 regions cost 64 MB here (docs/ARCHITECTURE.md, "Scale"). */
struct region {
        uint64_t offset, size;
        uint64_t creator; /* serial of the creating connection */
        uint32_t created; /* seconds since the epoch (unsigned: until 2106) */
        int32_t fd;       /* isolation = region: the region's own memfd; else -1 */
        uint32_t gen;     /* bumped each time the slot is used, so ids are not reused */
        uint32_t pool;    /* pool id */
        uint32_t refs;    /* holds' counts + 1 for PERSIST + 1 until handed out */
        uid_t uid;
        pid_t pid;
        uint32_t name;  /* names.c's id, 0: unnamed */
        uint32_t holds; /* the first hold, or HOLD_NONE */
        uint16_t flags;
        uint8_t state;
        uint8_t format; /* FMT_*; the rest of the tag is in formats.c's table (not raw bytes: rare) */
};
_Static_assert(sizeof(struct region) == 64, "a region is 64 bytes (docs/ARCHITECTURE.md, \"Scale\")");

/* One client's references to one region: found in O(1) by (client, region), however many. */
struct hold {
        struct client *cl;
        uint32_t slot;
        uint32_t count : 31;
        uint32_t hashed : 1;   /* in the hash: every hold but a region's head is */
        uint32_t rprev, rnext; /* the region's holds */
        uint32_t cprev, cnext; /* the client's holds */
};

struct holds {
        struct hold *tab;
        struct slots slots;
        uint32_t *hash; /* hold index + 1; 0 empty; linear probing */
        uint32_t hash_cap, hash_used;
};

/* The tags of the regions that are not raw bytes, by slot (formats.c). */
struct formats {
        void *tree; /* tsearch(3) of struct format_entry, by slot */
        uint64_t count;
};

struct regions {
        struct region *tab;
        struct slots slots;
        uint32_t gen_floor; /* every gen a slot dropped by shrinking had is at most this */
        struct holds holds;
        struct formats formats;
};

int regions_init(struct regions *rt);
void regions_clear(struct regions *rt);
uint64_t region_id(const struct regions *rt, uint32_t slot);
int region_slot(const struct regions *rt, uint64_t id);
/*
 * A new region (fd: its own memfd, or -1; fmt: what it will hold), pending: no holder yet, one
 * reference until handed out or discarded (+1 if PERSIST).
 */
int region_new(struct core *core, struct pool *p, const struct client *cl, uint64_t offset, uint64_t size,
               uint32_t flags, int fd, const struct region_format *fmt, uint32_t *ret);
/* Adds one reference of cl; -EOVERFLOW when the region has UINT32_MAX already. */
int region_hold(struct core *core, uint32_t slot, struct client *cl);
/* cl's hold on slot, or HOLD_NONE.  The index is good until a hold is removed. */
uint32_t region_hold_of(const struct core *core, uint32_t slot, const struct client *cl);
/* Drops one reference of a hold; the region dies when it has none left. */
void region_drop_one(struct core *core, uint32_t hold);
/* A pending region becomes cl's: one hold, and the pending reference goes.  -ENOMEM changes nothing. */
int region_hand_out(struct core *core, uint32_t slot, struct client *cl);
/* A pending region that cannot be handed out goes back, name, PERSIST and all. */
void region_discard(struct core *core, uint32_t slot);
/* Drops the daemon's PERSIST reference. */
void region_unpersist(struct core *core, uint32_t slot);
/* Drops every reference cl holds, in O(its holds). */
void region_release_client(struct core *core, struct client *cl);
/* The index in core->absent of the placeholder of serial, or SIZE_MAX (reclaim.c). */
size_t absent_index(const struct core *core, uint64_t serial);
/* Placeholders of uid (reclaim.c): counted in its conns, but no connections. */
uint32_t absent_of_uid(const struct core *core, uid_t uid);
/* If cl is a placeholder (cl->absent), its references are released and it is freed. */
bool absent_release(struct core *core, struct client *cl);
/* to (a new connection of from's serial, holding nothing) takes every hold of from over (reclaim.c). */
void region_take_over(struct core *core, struct client *from, struct client *to);
/* Takes an UNSEALED region's name and PERSIST away (its waiters are told); its holds stay. */
void region_abort_unsealed(struct core *core, uint32_t slot);
/* Takes slot's name away (if it has one). */
void region_unpublish(struct core *core, uint32_t slot);
/* Publishes slot under name, charged to its creator's uid. */
int region_publish(struct core *core, uint32_t slot, const char *name);

/* Slots taken only to reach a restored region's own, given back once every region is in place. */
struct slot_fill {
        uint32_t *slots;
        uint32_t n, cap;
};
/*
 * state.c's restore: rec at slot (above every slot restored before it), in p, at its own offset and
 * gen, with one extra reference until region_restore_done; holds added with their counts.
 */
int region_restore(struct core *core, struct pool *p, uint32_t slot, const struct region *rec,
                   const struct region_format *fmt, const char *name, struct slot_fill *fill);
int region_restore_hold(struct core *core, uint32_t slot, struct client *cl, uint32_t count);
void region_restore_done(struct core *core, uint32_t slot);
void region_restore_fill(struct core *core, const struct slot_fill *fill);

int holds_init(struct holds *h);
void holds_clear(struct holds *h);
/* cl's hold on slot, whose first hold is head; HOLD_NONE if it has none. */
uint32_t hold_find(const struct holds *h, uint32_t head, const struct client *cl, uint32_t slot);
int hold_add(struct holds *h, struct region *r, struct client *cl, uint32_t slot, uint32_t *ret);
void hold_remove(struct holds *h, struct region *regions, uint32_t i);

/* ---- formats (formats.c): the side table region.c keeps, and the heaps allocd writes ---- */

void formats_clear(struct formats *f);
/* Records slot's tag; -ENOMEM changes nothing. */
int formats_add(struct formats *f, uint32_t slot, const struct region_format *fmt);
/* slot's tag; slot has one. */
void formats_get(const struct formats *f, uint32_t slot, struct region_format *fmt);
void formats_remove(struct formats *f, uint32_t slot);
/* Whether allocd writes the heaps of p's regions itself: it reaches their memory (p->map, or a region's memfd). */
bool format_by_allocd(const struct pool *p);
/* Bytes format_write writes: the heap's header and bitmap. */
uint64_t format_bytes(const struct region_format *fmt);
/*
 * Writes the heap fmt says at the start of a region of p (offset, size; fd: its own memfd, or -1),
 * through allocd's mapping of the pool or a mapping of the memfd; may run off the loop thread.
 */
int format_write(const struct pool *p, int fd, uint64_t offset, uint64_t size, const struct region_format *fmt);

/* ---- names (names.c) ---- */

struct name {
        char *text;
        uint32_t slot; /* the region */
};

struct names {
        void *tree;       /* tsearch(3) of name ids, ordered by their text */
        struct name *tab; /* by id; [0] is never a name */
        struct slots ids;
        uint64_t count;
};

int names_init(struct names *n);
void names_clear(struct names *n);
/* The region published as name, or -ENOENT. */
int names_find(const struct names *n, const char *name);
/* Publishes name for slot: its id in *ret_id; -EEXIST when the name is published already. */
int names_add(struct names *n, const char *name, uint32_t slot, uint32_t *ret_id);
void names_remove(struct names *n, uint32_t id);
const char *names_text(const struct names *n, uint32_t id);

/* ---- per-uid counts (core.c) ---- */

struct user {
        uid_t uid;
        uint32_t conns, names, persist;
        uint32_t leaving; /* its connections that said Goodbye and are still open (core_client_bye) */
        uint32_t waiters; /* its connections' requests waiting (for room, or for a name) */
        uint32_t fds;     /* live regions with a memfd of their own (isolation = region) it created */
        struct user *next;
};

/* ---- waiters (waitq.c) ---- */

struct waiter {
        struct client *cl;
        uint64_t req_id;
        struct alloc_args args;  /* an Attach's: only args.name */
        struct namewait *nw;     /* an Attach's wait for a name; NULL: an Alloc's wait for room */
        struct attach_want want; /* an Attach's */
        uint64_t deadline;       /* UINT64_MAX: NOFAIL */
        uint64_t refused;        /* an Alloc's: waitq's freed seq when the arena last had no room for it */
        uint32_t heap;           /* index in the deadline heap, or UINT32_MAX */
        /* by_pool: the pool's list, or the name's (nw) */
        TAILQ_ENTRY(waiter) by_pool, by_client;
        /* once done */
        struct core_done done;
        STAILQ_ENTRY(waiter) done_link;
        char name[]; /* args.name's copy */
};

/* The Attaches waiting for one name, in arrival order. */
struct namewait {
        char *name;
        TAILQ_HEAD(, waiter) waiters;
        bool queued, gone; /* on the ready list; gone: its unsealed region went before the Seal */
        STAILQ_ENTRY(namewait) ready_link;
};

struct waitq {
        struct pool_list ready;
        struct waiter **heap; /* by deadline */
        uint32_t nheap, heap_cap;
        STAILQ_HEAD(, waiter) done;
        uint64_t nwaiters, tries, slices;    /* slices: passes core_run broke off for the next turn */
        uint64_t slice_ns;                   /* how long core_run tries waiters before it lets the loop turn */
        uint64_t freed_seq;                  /* ranges that came back to any pool (struct freed) */
        uint64_t skips;                      /* tries spared: nothing that came back could hold the waiter */
        bool yielded;                        /* the last core_run broke off a pass */
        void *names;                         /* tsearch(3) of struct namewait, by name */
        STAILQ_HEAD(, namewait) ready_names; /* to be tried in the next core_run */
};

void waitq_init(struct waitq *q);
void waitq_clear(struct waitq *q);
int waitq_add(struct core *core, struct client *cl, uint64_t req_id, const struct alloc_args *a);
/* [offset, offset + size) of p came back: its waiters are retried in the next core_run. */
void waitq_pool_freed(struct core *core, struct pool *p, uint64_t offset, uint64_t size);
/* Ends each Alloc waiting for room in draining p with what a new Alloc in it is told (core_pool_drain). */
void waitq_pool_refuse(struct core *core, struct pool *p);
/* p, which has no waiters, leaves the ready list (before it goes: core_pool_adopt). */
void waitq_pool_unready(struct core *core, struct pool *p);
/* Removes cl's waiters without an outcome (its connection is gone). */
void waitq_drop_client(struct core *core, struct client *cl);
/* An Attach of name that waits up to timeout_ms. */
int waitq_add_attach(struct core *core, struct client *cl, uint64_t req_id, const char *name,
                     const struct attach_want *want, uint32_t timeout_ms);
/* name may be attachable now (published, sealed, zeroed): its waiters try in the next core_run. */
void waitq_name_ready(struct core *core, const char *name);
/* name's unsealed region went before its Seal: its waiters are told so in the next core_run. */
void waitq_name_gone(struct core *core, const char *name);
/* E_OK if the pool's access rules and the names' reservations, which a reload may change, allow a's Alloc to cl. */
int alloc_allowed(const struct core *core, const struct client *cl, const struct alloc_args *a,
                  struct core_result *res);
/* One try of an Attach, as the request does it and as a waiter is retried (requests.c). */
int attach_try(struct core *core, struct client *cl, const char *name, const struct attach_want *want, uint32_t *slot,
               struct core_result *res);

/* ---- the core (core.c) ---- */

struct core {
        struct limits limits;
        uint64_t pools_made; /* pools adopted so far (pool.made) */
        uint64_t now;
        struct pool **pools;
        size_t npools;
        struct regions regions;
        struct names names;
        struct waitq waitq;
        struct user *users;
        struct client_list clients;
        uint32_t nclients;
        uint32_t npast;    /* clients with past set: room for a reclaim, not counted for another's Hello */
        uint32_t nleaving; /* connections that said Goodbye, out of the list and still open (core_client_bye) */
        bool evicting;     /* a Disconnect marked connections the server has not closed yet */
        bool abandoned;    /* core_abandon: nothing is released one by one any more */
        bool closing;      /* core_free: regions end with allocd, not freed; who maps one keeps its bytes */
        /* state.c: placeholders for the connections a restored state names, the core's to free */
        struct client **absent;
        size_t nabsent;
        struct region_fds region_fds; /* core_set_region_fds */
        struct keep *keep; /* keep.c: the state kept in a memfd, or NULL (tests, fuzzers, allocd without systemd) */
};

/*
 * Keeping the state (keep.c, state.c's theory comment): each change to what a state holds is
 * appended to the kept memfd before the call that made it returns.  The core calls these at each
 * change point; without a keep each is one test of a pointer.  Regions still pending (made, not
 * yet handed out) are not kept: their Alloc was never answered.
 */
void keep_region(struct keep *k, const struct core *core, uint32_t slot, uint64_t holder);
void keep_hold(struct keep *k, uint32_t slot, uint64_t serial, uint32_t count);
void keep_client(struct keep *k, const struct client *cl);
void keep_client_gone(struct keep *k, uint64_t serial);
void keep_pool(struct keep *k, const struct pool *p);

/* p joined the core after the snapshot (a reload): a region of it in the log needs its POOL record. */
static inline void kept_pool(const struct core *core, const struct pool *p) {
        if (core->keep)
                keep_pool(core->keep, p);
}

/* slot's fields changed (PERSIST, a seal, its name), or, holder != NULL, it was handed out to holder. */
static inline void kept_region(const struct core *core, uint32_t slot, const struct client *holder) {
        if (core->keep && !(core->regions.tab[slot].state & R_PENDING))
                keep_region(core->keep, core, slot, holder ? holder->serial : 0);
}

/* serial's hold on slot has count references now (0: it has none).  A reclaim moving holds calls this for both. */
static inline void kept_hold(const struct core *core, uint32_t slot, uint64_t serial, uint32_t count) {
        if (core->keep && !(core->regions.tab[slot].state & R_PENDING))
                keep_hold(core->keep, slot, serial, count);
}

/* cl connected, or its name or secret changed; or it went (after its holds did). */
static inline void kept_client(const struct core *core, const struct client *cl) {
        if (core->keep)
                keep_client(core->keep, cl);
}

static inline void kept_client_gone(const struct core *core, uint64_t serial) {
        if (core->keep)
                keep_client_gone(core->keep, serial);
}

/* An Alloc's arguments checked (pool, access, size, flags, name, the whole quota) into *a; E_OK or an error. */
int check_alloc(struct core *core, const struct client *cl, const struct alloc_request *m, struct alloc_args *a,
                struct core_result *res);
/* Whether cl may Free id now; E_OK or why not.  Changes nothing. */
int check_free(const struct core *core, const struct client *cl, uint64_t id, struct core_result *res);
/* What alloc_try checks before it looks for room (access, name, limits, quota); E_OK or why not. */
int alloc_check(const struct core *core, const struct client *cl, const struct alloc_args *a, struct core_result *res);
/* One try of an allocation, as Alloc does it and as a waiter is retried; quiet: no message on E_WOULD_BLOCK. */
int alloc_try(struct core *core, struct client *cl, const struct alloc_args *a, bool quiet, uint32_t *slot,
              struct core_result *res);
/* Whether alloc_finish would hand slot to a worker (GRANT_ZEROING) rather than finish it now. */
bool alloc_defers(const struct core *core, uint32_t slot);
/*
 * A new region's work (its memory, ZERO, its heap; core_zero_job): GRANT_REGION (done inline),
 * GRANT_ZEROING (for a worker) or GRANT_NONE.
 */
int alloc_finish(struct core *core, struct client *cl, uint32_t slot, struct core_result *res);
/* Says why a region's work failed; the caller discards the region. */
void prep_failed(struct core_result *res, const struct zero_job *job, int result);
/* The uid's counts: found, found or made (NULL: out of memory), and freed once all are zero. */
struct user *user_find(const struct core *core, uid_t uid);
struct user *user_get(struct core *core, uid_t uid);
/* Adds to the names, PERSIST regions and region memfds counted against uid, which has a record already. */
void user_count(struct core *core, uid_t uid, int names, int persist, int fds);
void user_put(struct core *core, struct user *u);
/* Takes cl, which holds and waits for nothing, off the client list and its uid's count; nothing is kept. */
void client_leave(struct core *core, struct client *cl);
/* Registers cl under its uid's record u, whatever the limits (core_client_add checked them, or a restore). */
void client_enter(struct core *core, struct client *cl, struct user *u);
/* cl, let in past its uid's share (client.past), is one of the share now: it counts for others' Hellos. */
void client_unpast(struct core *core, struct client *cl);
int ok_result(struct core_result *res);
/* Why the range allocator refused a, in words. */
int explain(int r, const struct pool *p, const struct alloc_args *a, struct core_result *res);
/* Whether a can never fit, not even in its empty pool: then res says so (NEVER_FITS), as explain does. */
bool alloc_never_fits(const struct alloc_args *a, struct core_result *res);
int fail(struct core_result *res, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
