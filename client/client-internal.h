/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_CLIENT_INTERNAL_H
#define ALLOC_CLIENT_INTERNAL_H

/*
 * What the files of liballoc-client tell each other; none of it is exported
 * (liballoc-client.sym).  Each file owns its state:
 *
 *   transport.c  requests and the replies matched to them by id, last_error,
 *                spinning for a reply
 *   pipeline.c   requests no one waits for (pipelined frees and detaches)
 *   connect.c    the socket, Hello, settings, disconnect
 *   pool-map.c   the pools this connection has mapped, by name and by address
 *   region.c     alloc, free, attach, detach, batches
 *   held.c       the regions this connection holds, so that frees need not wait
 *   status.c     alloc_status, alloc_dump
 *
 * Dependencies run one way: region.c and status.c call transport.c, which
 * hands each pool fd that comes with a reply to pool-map.c.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "alloc/client.h"
#include "allocd.pb-c.h"
#include "gpu.h"

/* transport.c */

#define CLIENT_ERROR_MAX 1280 /* alloc_last_error()'s bytes, its NUL included */

/* Why the pool fd that came with a reply could not be mapped; err is 0 where it was, or none came. */
struct map_error {
        int err;
        bool region_mapped; /* the reply's region fd was mapped: its holder drops the mapping (region_table_drop) */
        char msg[256];
};

/* Sets this thread's alloc_last_error() and returns r, so that callers can write `return client_fail(...)`. */
int client_fail(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties alloc_last_error(): each public call starts with it, so the text always belongs to the latest failure. */
void client_clear_error(void);

/*
 * Sends req (its id is set here) and waits for its reply.  On 0 the caller
 * owns *ret (allocd__reply__free_unpacked(*ret, NULL)); map, if not NULL, says
 * whether the pool fd that came with the reply was mapped.  A negative errno
 * value means there is no reply; alloc_last_error() says why.
 */
int client_call(struct alloc_client *c, Allocd__Request *req, Allocd__Reply **ret, struct map_error *map);
/*
 * client_call for a Free, Detach or FreeBatch of the n regions of ids (all it names), and allocd's
 * answer: 0 or a negative errno value.  It takes them out of client_held, all or none (*taken says
 * which), as it lists the request, under the connection's lock, so that a reconnect's squaring sees
 * them either held or given back; refused, or not known to be done (-ETIME, -EINTR, ...), they are
 * put back under that same lock (-ESTALE: nothing is held any more).  Taken ones are never sent
 * again: if the connection is lost on the way, the squaring with allocd gives them back
 * (reconnect.c), once, and this returns 0; an answer read before the loss is the answer still.
 */
/* forsake: ids no caller holds (a grant refused), never put back, so that a reconnect gives them back. */
int client_give_back_sync(struct alloc_client *c, Allocd__Request *req, const uint64_t *ids, size_t n, bool *taken,
                          bool forsake);
/* 0 for an OK reply; else its error as a negative errno value, allocd's message in alloc_last_error(). */
int client_reply_error(const Allocd__Reply *r);
/* What a refusal says: allocd's message, or, where it has none (or ""), the error's name. */
const char *client_reply_words(const Allocd__Reply *r);
/* client_call, then checks that the reply is OK and of kind body (what names the request for the message). */
int client_call_for(struct alloc_client *c, Allocd__Request *req, Allocd__Reply__BodyCase body, const char *what,
                    Allocd__Reply **ret);
/* The connection's table of mapped pools; it lives as long as c. */
struct pool_table *client_pools(struct alloc_client *c);
/* The connection's table of the regions it holds (held.c); it lives as long as c. */
struct held *client_held(struct alloc_client *c);
/*
 * How many times the connection started afresh after allocd restarted without its state: a region
 * id got before a change is no longer this connection's, and a new allocd may give it to another
 * region (a kind keeps its regions' ids, and must not free them by id then).
 */
uint64_t client_afresh(struct alloc_client *c);

/*
 * Sends req (a Free, Detach or a batch of frees of the n regions in ids) without waiting for its
 * reply, taking ids out of client_held as client_give_back_sync does; 1, sending nothing, where
 * the table does not hold them all.  Whoever reads next files the reply, and a refusal puts ids
 * back in the table and is kept for client_sync.  At most PIPE_MAX such requests are in flight:
 * beyond, this waits for the oldest to be answered.
 */
#define PIPE_MAX 64
int client_send_pipelined(struct alloc_client *c, Allocd__Request *req, const uint64_t *ids, size_t n);
/* Waits until every pipelined request on c is answered; the first refusal among them since the last call, or 0. */
int client_sync(struct alloc_client *c);

/* region.c: req a Free (what) or a Detach of id, in f or d. */
void client_give_back_request(Allocd__Request *req, Allocd__Request__BodyCase what, uint64_t id, Allocd__Free *f,
                              Allocd__Detach *d);

/*
 * spare.c (docs/protocol.md, "Spares"): alloc_region_new handed out id of this shape (a Free of it
 * may ask for spares); the shape a Free of id asks *n spares of, or false for none; a spare of this
 * shape into *ret (0), or -ENOENT, with the ids of spares the caller is to give back (another shape,
 * or one that could not be taken) in back[0, *nback); both held (held_add) already.  A full back
 * (-ENOENT) says to ask again, should more than SPARES_AHEAD ever be at hand.
 */
#define SPARES_AHEAD 8               /* spares asked or at hand, at most, per connection */
#define SPARE_BYTES_AHEAD (8u << 20) /* more than two ahead only while they hold at most this much */
void client_spare_set(struct alloc_client *c, bool on);
void client_spare_note(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                       uint64_t id);
bool client_spare_renew(struct alloc_client *c, uint64_t id, char *pool, uint64_t *size, struct alloc_opts *opts,
                        uint32_t *n);
int client_spare_take(struct alloc_client *c, const char *pool, uint64_t size, const struct alloc_opts *opts,
                      struct alloc_region *ret, uint64_t back[SPARES_AHEAD], size_t *nback);
/* region.c: region g of a reply as this process sees it (map: the fd that came with the reply). */
int client_region_out(struct alloc_client *c, const Allocd__Region *g, const struct map_error *map,
                      struct alloc_region *ret);
/*
 * region.c: a RegionBatch's regions, listed or in columns (docs/protocol.md, "Batches"): how many
 * (0 for one in neither form); the one that carries the pool's fd fields; region i, its pool named.
 */
size_t client_batch_size(const Allocd__RegionBatch *b);
const Allocd__Region *client_batch_first(const Allocd__RegionBatch *b);
Allocd__Region client_batch_region(const Allocd__RegionBatch *b, size_t i);

/* held.c: id -> references, under its own lock. */
struct held *held_new(void);
struct held *held_free(struct held *h);
/* One reference more to each of ids (out of memory: not recorded, so frees of it wait for allocd). */
void held_add(struct held *h, const uint64_t *ids, size_t n);
/* Takes one reference to each of ids, all or none: false (nothing taken) if one is not held. */
bool held_take(struct held *h, const uint64_t *ids, size_t n);
/* Ids held. */
size_t held_count(struct held *h);
/*
 * After a reclaim (reconnect.c): allocd says the connection holds counts[i] references to ids[i].
 * The table keeps of each id as many as both sides count, and forgets every id allocd does not
 * list; excess[i] is how many allocd holds beyond that (a grant whose reply was lost, or a give-back
 * that never reached it), for the caller to give back; excess[i] == counts[i] where the table had
 * no entry for ids[i].  -ENOMEM changes nothing.
 */
int held_sync(struct held *h, const uint64_t *ids, const uint32_t *counts, size_t n, uint32_t *excess);

/* pool-map.c */

/* A pool is mapped at a multiple of its largest power of two, within these (alloc/client.h, "ptr"). */
#define MAP_ALIGN_MIN (2ull << 20)
#define MAP_ALIGN_MAX (1ull << 30)
/* CU_MEMHOSTREGISTER_READ_ONLY, by its value in CUDA's ABI. */
#define REGISTER_READ_ONLY 0x08u
/* Where to map size bytes: at a multiple of their largest power of two, MAP_ALIGN_MIN to MAP_ALIGN_MAX. */
uint64_t map_align(uint64_t size);
/*
 * Whether the file fd holds size bytes (*st: its fstat), or -EPROTO with the reason in err: mmap
 * maps past the end of a file, and the pages there fault (SIGBUS) when they are touched.
 */
struct stat;
int fd_holds(int fd, uint64_t size, struct stat *st, char *err, size_t errsize);
/* mmap of fd, shared, at a multiple of align; MAP_FAILED and errno on failure. */
void *mmap_aligned(int fd, uint64_t size, uint64_t align, bool read_only);

/*
 * A pool mapped by this connection.  Every field is fixed from the moment it
 * is in the table until the table is freed (at disconnect), so a pointer to
 * it may be kept and read without a lock for as long as the connection.
 */
struct pool_map {
        char *name;
        enum alloc_kind kind;
        void *base;    /* host, pinned: where the CPU reaches the pool; gpu: NULL */
        uint64_t addr; /* where the pool lies in this process: base, or a gpu pool's CUDA address */
        uint64_t size;
        bool mmapped;       /* base is this table's mmap of the pool fd (else nothing, or CUDA's mapping) */
        bool read_only;     /* this connection may only attach in the pool: mapped for reading only */
        struct gpu_map gpu; /* the pool's registration with CUDA, or its import */
        dev_t dev;          /* mmapped: the file, to know it again after a reconnect */
        ino_t ino;
        bool renewed; /* a reconnect happened since it was mapped: its fd may come again (pool_table_renew) */
};

/*
 * The regions of isolation = region pools this connection holds (region-map.c), each mapped from
 * its own fd.  region_table_map maps the one whose fd came with reply (fd stays the caller's) or,
 * mapped already, counts one more reference; 0, or a negative errno value with the reason in err.
 * region_table_locate fills ret's ptr, cptr and read_only (-EPROTO: not mapped, or larger than its mapping);
 * region_table_drop drops one reference, and unmaps the region at the last (an id not in the table is ignored);
 * region_table_forget forgets every region (allocd restarted without them, and numbers its regions afresh: an id
 * may come again for another region), leaving them mapped, as liballoc-client(3) says, until the table is freed.
 */
struct region_table;
struct region_table *region_table_new(void);
struct region_table *region_table_free(struct region_table *t);
int region_table_map(struct region_table *t, const Allocd__Reply *reply, int fd, char *err, size_t errsize);
int region_table_locate(struct region_table *t, const Allocd__Region *g, struct alloc_region *ret);
void region_table_drop(struct region_table *t, uint64_t id);
void region_table_forget(struct region_table *t);
struct region_table *client_regions(struct alloc_client *c);

/* After a reconnect: allocd sends each pool's fd again, which maps it anew unless it is the same file. */
void pool_table_renew(struct pool_table *t);
/* A table of no pools; NULL when out of memory. */
struct pool_table *pool_table_new(void);
/* Unmaps every pool and frees the table.  Accepts NULL; returns NULL. */
struct pool_table *pool_table_free(struct pool_table *t);

/*
 * Maps the pool whose fd came with reply (a Region reply, or a RegionBatch
 * whose first region names the pool: its pool, size, kind and backing say how) and adds it to t.  fd stays the
 * caller's.  0, or a negative errno value with the reason in err; then t is as it was and nothing of the mapping is
 * left.  -EPROTO if the reply is not one that may carry a pool fd, or the pool is mapped already (allocd sends it
 * once).
 */
int pool_table_map(struct pool_table *t, const Allocd__Reply *reply, int fd, char *err, size_t errsize);

/*
 * Where region g is in this process: ret's ptr, cptr, read_only, dev_ptr,
 * device and registered.  -EPROTO if g's pool is not in t or g does not lie inside it.
 */
int pool_table_locate(struct pool_table *t, const Allocd__Region *g, struct alloc_region *ret);

/*
 * Find by pointer: the mapped pool that contains ptr, and ptr's offset in
 * it, in O(log n) for n pools.  A pool is found at its addr (struct
 * pool_map): host and pinned pools where the CPU reaches them, gpu pools at
 * their CUDA address.  0, or -ENOENT when ptr lies in no pool of t.
 */
int pool_table_find(struct pool_table *t, const void *ptr, const struct pool_map **ret_pool, uint64_t *ret_offset);
/* pool_table_find on the connection's table. */
int pool_map_find(struct alloc_client *c, const void *ptr, const struct pool_map **ret_pool, uint64_t *ret_offset);

#endif
