/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_CLIENT_H
#define ALLOC_CLIENT_H

/*
 * liballoc-client: regions of allocd's pools.
 *
 * A connection is a lease: every region it allocated or attached is
 * released when it disconnects or the process exits, however that happens
 * (regions allocated with ALLOC_PERSIST excepted).  Memory pools are mapped
 * once per connection; a region's ptr stays valid until the region is freed
 * or detached, or the connection is closed.  If allocd dies, calls fail with
 * -ECONNRESET and existing mappings stay valid.
 *
 * Every function returns 0 or a negative errno value; alloc_last_error()
 * then says what was wrong in words (allocd's message where it answered).
 * All functions are thread-safe; threads may share one connection.
 *
 *   -EINVAL      an argument is out of its domain (size 0, alignment or
 *                boundary not a power of two, low >= high, bad name or flags)
 *   -EOVERFLOW   count x size overflows
 *   -ENODEV      no pool of that name
 *   -ENOENT      no region of that id held by this connection; no such name
 *   -EEXIST      the name is already published
 *   -EACCES      the pool's owner/group/mode forbid it
 *   -EDQUOT      the uid's quota in the pool would be exceeded
 *   -EMFILE      a daemon limit (connections, regions, waiters, names)
 *   -EAGAIN      ALLOC_NOWAIT and no room now
 *   -ETIMEDOUT   no room within the timeout
 *   -E2BIG       the request cannot fit even in the empty pool
 *   -ECANCELED   allocd is stopping
 *   -EINTR       a signal ended the wait for allocd's answer
 *                (alloc_set_interrupt); the connection stays usable
 *   -ETIME       allocd did not answer within the connection's timeout
 *                (alloc_set_timeout); the connection stays usable
 *   -ECONNRESET  the connection to allocd is gone
 *   -EPROTO      allocd answered something this library does not understand
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ALLOC_ZERO 0x1u    /* the bytes are zero when the region is handed out */
#define ALLOC_NOWAIT 0x2u  /* fail with -EAGAIN instead of waiting for room */
#define ALLOC_NOFAIL 0x4u  /* wait for room without a time limit */
#define ALLOC_PERSIST 0x8u /* the region outlives this connection until alloc_region_free */
/*
 * Refused with -EINVAL: write-combined memory comes only from cuMemHostAlloc,
 * which cannot be shared between processes.  For memory one process uses,
 * call cuMemHostAlloc(CU_MEMHOSTALLOC_WRITECOMBINED) there.
 */
#define ALLOC_WRITECOMBINED 0x10u
/*
 * With a name: the name is reserved at once, but alloc_region_attach does
 * not hand the region out (it waits, or fails with -EAGAIN) until this
 * connection calls alloc_region_seal, typically once the bytes are written.
 * If the connection frees or detaches it, or ends, before the Seal, the
 * region goes (ALLOC_PERSIST or not) and waiting attaches fail with -ENOENT.
 */
#define ALLOC_UNSEALED 0x20u

#define ALLOC_NAME_MAX 255
#define ALLOC_POOL_NAME_MAX 63

enum alloc_kind { ALLOC_KIND_HOST = 0, ALLOC_KIND_FPGA = 1, ALLOC_KIND_PINNED = 2, ALLOC_KIND_GPU = 3 };

/*
 * What a region holds, as its creator said at allocation: raw bytes, or a falloc heap (falloc(3),
 * alloc/falloc-client.h) of chunk_size chunks, which allocd writes in host and pinned memfd pools
 * before it hands the region out.  Every holder learns it, from the attach and from alloc_dump.
 */
enum alloc_format { ALLOC_FORMAT_RAW = 0, ALLOC_FORMAT_FALLOC = 1 };

/* Constraints of contigmalloc(9), semantics of kcalloc(9).  All zero (or NULL) means none. */
struct alloc_opts {
        uint64_t count;    /* region of count x size bytes, overflow-checked; 0 means 1 */
        uint64_t align;    /* power of two; 0: the pool's quantum */
        uint64_t phase;    /* offset % align == phase */
        uint64_t boundary; /* power of two the region must not cross; 0: none */
        uint64_t low;      /* the region lies inside [low, high) of the pool's offsets or addresses */
        uint64_t high;     /* 0: no upper limit */
        bool on_node;      /* the region must be on numa_node */
        int numa_node;
        uint32_t flags;      /* ALLOC_ZERO | ALLOC_NOWAIT | ALLOC_NOFAIL | ALLOC_PERSIST | ALLOC_UNSEALED */
        uint32_t timeout_ms; /* how long to wait for room; 0: allocd's wait_timeout */
        const char *name;    /* publish the region under this name; NULL: unnamed ("" is -EINVAL) */
        /*
         * What it holds; ALLOC_FORMAT_FALLOC: a heap of chunk_size chunks (1 to FALLOC_CHUNK_MAX,
         * rounded up to 16) in its first size x count bytes.  allocd writes it in host and pinned
         * memfd pools; in gpu and vmm pools the region comes back with formatted_by_allocd false and its
         * creator writes it, so a named one there must be ALLOC_UNSEALED (alloc_falloc_new does all
         * this).  -EINVAL: no such format, no room for the heap, or an fpga pool.
         */
        enum alloc_format format;
        uint64_t chunk_size;
};

/*
 * A region as this process sees it.  The pointers work with the caller's
 * own CUDA calls (cudaMemcpy, kernels, cuMemcpy) in any context: pinned
 * pools are registered PORTABLE by default, and CUDA allocations are mapped
 * for every device this process sees (pinned) or for their own (gpu).
 */
struct alloc_region {
        uint64_t id;
        enum alloc_kind kind;
        /*
         * host, pinned: where the CPU may write it in this process; NULL where this process may only
         * read it (read_only) and for gpu and fpga.  Pools are mapped at a multiple of their largest
         * power of two (2 MiB to 1 GiB), so an align up to that (the pool's size, for a pool under
         * 1 GiB) holds for ptr, and for a gpu or vmm pool's dev_ptr, as it does for the offset.
         */
        void *ptr;
        /*
         * host, pinned: where the CPU may read it, whether or not it may write (the same address as
         * ptr where ptr is set); gpu, fpga: NULL.  A write through it to a read-only region faults
         * (SIGSEGV): the mapping is PROT_READ, of a read-only fd.
         */
        const void *cptr;
        uint64_t addr;    /* fpga: the device address; memory pools: the offset in the pool */
        uint64_t size;    /* as asked, rounded up to the pool's quantum */
        uint64_t dev_ptr; /* pinned (with devicemap, or backend vmm) and gpu: its CUdeviceptr here; else 0 */
        int device;       /* gpu: the CUDA device ordinal in this process (CUDA_VISIBLE_DEVICES applied); else -1 */
        bool registered;  /* pinned, backend memfd: registered with CUDA here; false where this process has no
                           * usable GPU (alloc_cuda_unavailable() says why), and the memory is then plain
                           * locked shared memory */
        /*
         * Whose it is, so that a consumer can check before it trusts the bytes: the pool it lies in,
         * the uid of the connection that allocated it (from the kernel, not from the client), and
         * whether its name is published for attach (false: allocated ALLOC_UNSEALED, not sealed yet).
         */
        char pool[ALLOC_POOL_NAME_MAX + 1];
        uid_t owner;
        bool sealed;
        /*
         * This connection may only attach in the pool, not allocate (its mode): the memory is mapped
         * read-only, from a read-only fd, and ptr is NULL.  Enforced by the kernel for host and
         * pinned memfd pools; for gpu and pinned vmm pools the mapping is read-only too, but a
         * client that speaks the protocol itself could map it writable (docs/configuration.md).
         */
        bool read_only;
        /*
         * What it holds (alloc_opts.format); ALLOC_FORMAT_FALLOC: chunk_count chunks of chunk_size
         * bytes, and formatted_by_allocd says whether allocd wrote the heap (else its creator did).
         */
        enum alloc_format format;
        uint64_t chunk_size, chunk_count;
        bool formatted_by_allocd;
};

/* Where alloc_region_attach looks and what it accepts.  All zero (or NULL) means any. */
struct alloc_attach_opts {
        uint32_t timeout_ms; /* wait up to this long for the name to be published and sealed; 0: not at all */
        const char *pool;    /* the name must be published in this pool */
        bool by_owner;       /* the name must be published by a connection of uid owner */
        uid_t owner;
};

/* A stretch of a pool: offsets [base, base + size) of a memory pool, addresses of an fpga pool. */
struct alloc_span {
        uint64_t base, size;
};

#define ALLOC_REGISTER_PORTABLE 0x1u  /* CU_MEMHOSTREGISTER_PORTABLE */
#define ALLOC_REGISTER_DEVICEMAP 0x2u /* CU_MEMHOSTREGISTER_DEVICEMAP */

/* One uid's use of a pool: what quota_per_uid counts (each region at its size), and how many regions. */
struct alloc_uid_usage {
        uid_t uid;
        uint64_t bytes, regions;
};

struct alloc_pool_status {
        char name[ALLOC_NAME_MAX + 1];
        enum alloc_kind kind;
        uint64_t size, used, free, largest_free, regions, waiters, quantum;
        size_t nspans;
        struct alloc_span *spans; /* what the pool covers, in order; the gaps between them are not the pool's */
        char backend[8];          /* "memfd" or "vmm" (pinned, host, gpu); "" for fpga */
        int device;               /* gpu: the device ordinal as allocd sees it; else -1 */
        uint32_t register_flags;  /* pinned, backend memfd: ALLOC_REGISTER_* */
        bool isolated;            /* isolation = region: each region its own memfd */
        char names[2048];         /* the name patterns it reserves (names =), ", " between them; "" none */
        char draining[256];       /* "" or why it takes no new regions (no longer configured; allocd(8)) */
        /* Access (allocd.conf(5)); has_access false: an allocd too old to say, and these are 0. */
        bool has_access;
        uid_t owner;
        gid_t group;
        uint32_t mode;          /* permission bits: 0660 */
        uint64_t quota_per_uid; /* bytes; 0: no quota */
        /*
         * Uids with live regions in the pool, the most bytes first: a few (allocd keeps its reply to one
         * packet), the caller's own among them if it has any; usage_omitted counts the others.
         * usage_hidden: the caller may neither attach nor allocate here, and is shown its own use alone.
         */
        size_t nusage;
        struct alloc_uid_usage *usage;
        uint64_t usage_omitted;
        bool usage_hidden;
};

/* A configured pool allocd could not make because it cannot use the GPU. */
struct alloc_unavailable_pool {
        char name[ALLOC_NAME_MAX + 1];
        enum alloc_kind kind;
        char reason[256];
};

#define ALLOC_CLIENT_NAME_MAX 63

struct alloc_client_status {
        pid_t pid;
        uid_t uid;
        char name[ALLOC_CLIENT_NAME_MAX + 1]; /* as given to alloc_connect */
        char comm[16];                        /* the process's command name when it connected; "" if unknown */
        uint64_t serial;                      /* the connection's number in allocd, in order of connecting */
        uint64_t regions;                     /* references held */
        uint64_t bytes;                       /* bytes of the regions it allocated and still holds */
        uint64_t waiters;
        /* A connection a restart brought back that its client has not reclaimed yet: held while the process lives
         * (watched), or, where allocd cannot watch it, until reclaim_grace (allocd.conf(5)). */
        bool restored;
        bool watched;
};

struct alloc_status {
        size_t npools;
        struct alloc_pool_status *pools;
        size_t nclients;
        struct alloc_client_status *clients;
        uint64_t clients_omitted; /* clients not listed (they came and went while the list was read) */
        char daemon_version[32];
        uint64_t uptime;  /* seconds since allocd started */
        uint64_t started; /* when, in seconds since the epoch */
        size_t nunavailable;
        struct alloc_unavailable_pool *unavailable;
};

/* A connection holding a reference to a region. */
struct alloc_holder {
        pid_t pid;
        uid_t uid;
        char name[ALLOC_CLIENT_NAME_MAX + 1];
        char comm[16];
};

/* One region as alloc_dump() lists it. */
struct alloc_region_info {
        uint64_t id;
        char pool[ALLOC_NAME_MAX + 1];
        enum alloc_kind kind;
        uint64_t addr; /* the offset in a memory pool, the address in an fpga pool */
        uint64_t size;
        uint32_t flags;                /* as allocated: ALLOC_ZERO, ALLOC_PERSIST, ... */
        char name[ALLOC_NAME_MAX + 1]; /* published name; "" if none */
        uint32_t refs;                 /* holders, plus one while ALLOC_PERSIST holds it */
        uid_t uid;                     /* who allocated it */
        pid_t pid;
        uint64_t created; /* seconds since the epoch */
        size_t nholders;
        struct alloc_holder *holders;
        uint32_t holders_omitted; /* holders past allocd's per-region listing limit */
        enum alloc_format format; /* what it holds; ALLOC_FORMAT_FALLOC: chunk_count chunks of chunk_size */
        uint64_t chunk_size, chunk_count;
};

struct alloc_dump {
        size_t nregions;
        struct alloc_region_info *regions;
};

struct alloc_client;

/*
 * Connects to allocd at socket_path (NULL: $ALLOCD_SOCKET, else the system
 * daemon's /run/allocd/allocd.sock for root or when it exists, else
 * $XDG_RUNTIME_DIR/allocd/allocd.sock, a per-user daemon's).  client_name
 * (NULL: the program's name) shows in allocctl status.  Connecting, and each
 * request after it, time out as alloc_set_timeout says; the timeout is
 * $ALLOCD_TIMEOUT ("500ms", "30s", "2m"; "0": none), else 30 s.
 */
int alloc_connect(struct alloc_client **ret, const char *socket_path, const char *client_name);
/*
 * How long each request on c may wait for allocd's answer before it fails
 * with -ETIME (0: no limit).  An allocation that may wait for room gets its
 * own wait on top (opts->timeout_ms, else allocd's wait_timeout when the
 * connection was made, which the library then asks for explicitly), one with
 * ALLOC_ZERO time for zeroing (1 s per 128 MiB), and one with ALLOC_NOFAIL
 * no limit.  A region allocd grants after its request
 * timed out is given back by the library (on the connection's next call, or
 * when it closes), so no memory is held that the caller never learned of.
 */
int alloc_set_timeout(struct alloc_client *c, uint32_t timeout_ms);
/*
 * How long a call that waits for allocd's answer first polls the socket
 * without sleeping (yielding the CPU between tries), so that an answer that
 * comes within it costs no wake-up: at most 10000 us (-EINVAL beyond); 0
 * never spins.  The default is $ALLOCD_SPIN ("50us", "1ms", "0"), else 50 us:
 * about one round trip to an allocd that is awake (allocd.conf's spin), so a
 * reply that will come at once is caught, while a request that waits for
 * room costs at most that much CPU before it sleeps.
 */
int alloc_set_spin(struct alloc_client *c, uint32_t spin_us);
/*
 * Lets a signal end a call that waits for allocd's answer (an attach waiting
 * for its name, an allocation waiting for room, ALLOC_NOFAIL).  With
 * interrupted set, the thread that reads the socket for the waiting calls
 * polls it, and calls interrupted(data), without the connection's lock,
 * before its first poll (after any spin: alloc_set_spin) and after each
 * wake-up: when a signal handler interrupts the poll (it always does: poll is
 * never restarted, whatever SA_RESTART says, signal(7)), and at least every
 * 50 ms while it waits, since a handler that runs just before poll does not
 * interrupt it.  So interrupted is also called when no signal came: it
 * answers from what the handler recorded (a flag it sets), and a signal that
 * lands anywhere in the wait ends it within about the spin and 50 ms.
 * Nonzero ends the call with -EINTR, abandoning the request as a timed-out
 * one is (a region allocd grants anyway is given back), and, where allocd
 * understands it, a Cancel ends its wait in allocd at once; zero goes on
 * waiting.  A thread that sleeps while another thread of the connection reads
 * is not interrupted.  A lost connection's reconnect, made by such a call,
 * asks the same way between its tries (liballoc-client(3), RECONNECTING):
 * -EINTR, the connection stays lost, and the next call makes it again.  NULL
 * (the default): signals never end a wait, and nothing wakes a waiting thread
 * every 50 ms.
 */
int alloc_set_interrupt(struct alloc_client *c, int (*interrupted)(void *data), void *data);
/*
 * Spares (liballoc-client(3), "SPARES"): on, alloc_region_free of the region the last
 * alloc_region_new handed out (unnamed, ALLOC_FORMAT_RAW, neither ALLOC_PERSIST nor
 * ALLOC_UNSEALED) asks allocd, in the same request, for more of the same shape, and the next
 * alloc_region_new of that shape takes one without a round trip.  At most eight spares per
 * connection, and 8 MiB of them, or two where two hold more; each counts as the connection's
 * region (quota, limits) until taken, and is given back
 * by an alloc_region_new of another shape, by turning spares off, and at alloc_disconnect.  The
 * default is $ALLOCD_SPARE (0 or 1), else off.
 */
int alloc_set_spare(struct alloc_client *c, bool on);
/*
 * Releases the connection's regions and unmaps its pools; the connection's last call (no other
 * thread may be in a call on it).  A free allocd has not confirmed yet is waited for first (one
 * round trip; across a restart, the reconnect that squares it), so that a freed ALLOC_PERSIST
 * region does not outlive an allocd killed before it read the free.  In a child of fork(), frees
 * the child's copy alone.  Accepts NULL; returns NULL.
 */
struct alloc_client *alloc_disconnect(struct alloc_client *c);

/* A region of size bytes (times opts->count) in pool; opts may be NULL. */
int alloc_region_new(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                     struct alloc_region *ret);
/*
 * Frees a region: unpublishes its name, drops PERSIST, drops this
 * connection's reference.  Pipelined: for a region this connection holds
 * (it was handed to it and not given back), the call returns once the
 * request is sent, without waiting for allocd's answer; requests sent after
 * it on the connection see its effect (a free followed by an alloc that
 * needs the room succeeds, unless an allocation already waiting for room
 * takes it first).  What only allocd can refuse (-EACCES: another
 * uid's region, attached) is reported by the next alloc_region_sync.  For an
 * id this connection does not hold (another connection's ALLOC_PERSIST
 * region), the call waits for allocd's answer, as alloc_region_free_sync
 * always does.
 */
int alloc_region_free(struct alloc_client *c, uint64_t id);
/* alloc_region_free, waiting for allocd's answer and returning its error. */
int alloc_region_free_sync(struct alloc_client *c, uint64_t id);
/*
 * Takes a reference to the region published as name; opts may be NULL.  With
 * opts->timeout_ms, waits up to that long for the name to be published and
 * sealed (in arrival order among those waiting; -ETIMEDOUT then); without, -ENOENT
 * at once if there is no such name, -EAGAIN if it is not sealed yet.  A name
 * published in another pool than opts->pool, or by another uid than
 * opts->owner, is -EEXIST at once: someone else holds the name.
 */
int alloc_region_attach(struct alloc_client *c, const char *name, const struct alloc_attach_opts *opts,
                        struct alloc_region *ret);
/* Lets a region allocated with ALLOC_UNSEALED by this connection be attached. */
int alloc_region_seal(struct alloc_client *c, uint64_t id);
/*
 * Drops this connection's reference; the region goes when no reference is
 * left.  Pipelined as alloc_region_free is.
 */
int alloc_region_detach(struct alloc_client *c, uint64_t id);
/* alloc_region_detach, waiting for allocd's answer and returning its error. */
int alloc_region_detach_sync(struct alloc_client *c, uint64_t id);
/*
 * Waits until allocd has answered every pipelined free and detach of c, and
 * returns the first refusal among those answered since the last call (its
 * region and allocd's words in alloc_last_error(), with how many more were
 * refused), or 0.  A refused region is still held, as if never freed.  A
 * program that never calls it never learns of a refusal.
 */
int alloc_region_sync(struct alloc_client *c);

/* Regions one batch may name: a batch's request and reply each fit one packet. */
#define ALLOC_BATCH_MAX 1024
/*
 * n regions of pool in one request, one of sizes[i] bytes (times
 * opts->count) each, with opts's constraints and flags, into ret[0..n):
 * all or none.  A batch does not wait for room: if the n do not fit now
 * (-EAGAIN; -E2BIG where they cannot fit together even in the empty pool), or one is
 * refused (a quota, max_regions_per_connection), none
 * is allocated and alloc_last_error() says which and why.  opts->name,
 * ALLOC_PERSIST, ALLOC_UNSEALED and ALLOC_NOFAIL do not apply to a batch
 * (-EINVAL), nor ALLOC_ZERO where allocd would zero off its loop (regions
 * over 1 MiB, gpu pools), nor a format but ALLOC_FORMAT_RAW.  1 <= n <= ALLOC_BATCH_MAX.
 */
int alloc_region_new_batch(struct alloc_client *c, const char *pool, const uint64_t *sizes, size_t n,
                           const struct alloc_opts *opts, struct alloc_region *ret);
/*
 * Frees n regions in one request, all or none; an id may appear once.
 * Pipelined as alloc_region_free is when this connection holds them all.
 */
int alloc_region_free_batch(struct alloc_client *c, const uint64_t *ids, size_t n);

int alloc_status(struct alloc_client *c, struct alloc_status **ret);
/* Accepts NULL; returns NULL. */
struct alloc_status *alloc_status_free(struct alloc_status *s);

/*
 * Every region this connection's uid may see (its own, and those of pools it
 * may allocate from or attach to; root sees all), in order of id.  pool
 * (NULL: every pool) limits the list to one pool.
 */
int alloc_dump(struct alloc_client *c, const char *pool, struct alloc_dump **ret);
/* Accepts NULL; returns NULL. */
struct alloc_dump *alloc_dump_free(struct alloc_dump *d);
/*
 * alloc_dump without holding the list: calls fn for each region in order of
 * id, one page of allocd's replies at a time, so a dump of a million regions
 * costs neither side more than a page.  region (and its holders) is valid
 * only during the call.  fn returns 0 to go on; anything else ends the walk
 * and is returned.  -ESTALE: allocd restarted without its state after fn saw
 * a region (dump again); -EPROTO: allocd's pages went back.
 */
int alloc_dump_each(struct alloc_client *c, const char *pool,
                    int (*fn)(const struct alloc_region_info *region, void *data), void *data);

/*
 * For operators: closes other connections as if their processes had exited,
 * releasing what they hold: every connection of process pid (serial 0), or
 * the one numbered serial (pid 0; struct alloc_client_status says it).  Root
 * may close any; other users only their own uid's, and then -EACCES, closing
 * none, if one belongs to another uid.  -ENOENT: no such other connection
 * (c itself is never closed).  *ret_connections (may be NULL): how many were
 * closed.  Their library calls fail with -ECONNRESET from then on.
 */
int alloc_drop_client(struct alloc_client *c, pid_t pid, uint64_t serial, uint32_t *ret_connections);

/* What the last failed call in this thread did wrong, in words; "" if none. */
const char *alloc_last_error(void);

/*
 * NULL if this process can use CUDA; else why not, in words ("no GPU:
 * libcuda.so.1 cannot be loaded ...").  Pinned regions are then not
 * registered and gpu pools cannot be mapped.  Loads the driver on first use.
 */
const char *alloc_cuda_unavailable(void);

#ifdef __cplusplus
}
#endif

#endif
