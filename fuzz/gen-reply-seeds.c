/* SPDX-License-Identifier: MIT */
/*
 * Writes fuzz-reply's seed corpus: the client's calls and, for each request, the Reply allocd sends
 * (the fields daemon/proto.c and proto-session.c fill, packed by protobuf-c), in fuzz-reply.h's
 * format, one file a story: Hello, regions of each pool kind with their pool's fd, an isolation =
 * region pool's own fd, batches listed and in columns, attach, status and dump with their pages,
 * errors, spares, a reply that comes after its request timed out, and an operator's Disconnect.
 *
 *   build-fuzz/fuzz/gen-reply-seeds fuzz/corpus/reply
 *
 * The ids are left to the fuzzer, which gives each reply its request's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocd.pb-c.h"
#include "fuzz-reply.h"
#include "seed-file.h"
#include "wire.h"

#define ID(slot) (UINT64_C(1) << 32 | (slot))
#define POOL_PAGES 8 /* the pools' memfds: 32 KiB */

static const char *seed_dir;
static uint8_t buf[1 << 17];
static size_t len;

static void begin(const uint8_t *ops, size_t n) {
        buf[0] = (uint8_t)n;
        if (n)
                memcpy(buf + 1, ops, n);
        len = 1 + n;
}
#define BEGIN(...)                                                                                                     \
        do {                                                                                                           \
                static const uint8_t ops_[] = {__VA_ARGS__};                                                           \
                begin(ops_, sizeof(ops_));                                                                             \
        } while (0)
#define NONE() begin(NULL, 0)
#define OP(op, arg) ((uint8_t)((op) | (arg) << 4))

static void save(const char *name) {
        seed_file_write(seed_dir, name, buf, len);
}

/* One packet: r packed, with flags (PKT_*). */
static void pkt(uint8_t flags, const Allocd__Reply *r) {
        size_t n = r ? allocd__reply__get_packed_size(r) : 0;

        buf[len] = (uint8_t)n;
        buf[len + 1] = (uint8_t)(n >> 8);
        buf[len + 2] = flags;
        if (r)
                allocd__reply__pack(r, buf + len + 3);
        len += 3 + n;
}

static void silent(void) {
        pkt(PKT_SILENT, NULL);
}

static void ok_body(uint8_t flags, Allocd__Reply__BodyCase body, void *msg) {
        Allocd__Reply r = ALLOCD__REPLY__INIT;

        r.has_error = true;
        r.error = ALLOCD__ERROR__OK;
        r.body_case = body;
        r.region = msg; /* a union: any body */
        pkt(flags, &r);
}

static void ok(void) {
        ok_body(0, ALLOCD__REPLY__BODY__NOT_SET, NULL);
}

/* A Reply of error e (OK too) with a message and no body. */
static void said(uint8_t flags, Allocd__Error e, const char *message) {
        Allocd__Reply r = ALLOCD__REPLY__INIT;

        r.has_error = true;
        r.error = e;
        r.message = (char *)message;
        pkt(flags, &r);
}

static void error(Allocd__Error e, const char *message) {
        said(0, e, message);
}

static void hello_with(bool renew) {
        static uint8_t secret[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        Allocd__HelloReply h = ALLOCD__HELLO_REPLY__INIT;

        h.has_version = h.has_max_packet = h.has_max_regions = h.has_max_waiters = true;
        h.has_wait_timeout_ms = h.has_max_batch = h.has_quiet = h.has_renew = h.has_spares_max = true;
        h.has_serial = h.has_secret = true;
        h.version = WIRE_VERSION;
        h.daemon_version = "0.1.0";
        h.max_packet = WIRE_MAX_PACKET;
        h.max_regions = 4096;
        h.max_waiters = 64;
        h.wait_timeout_ms = 10000;
        h.max_batch = WIRE_MAX_BATCH;
        h.quiet = true;
        h.renew = renew;
        h.spares_max = 4;
        h.serial = 1;
        h.secret.data = secret;
        h.secret.len = sizeof(secret);
        ok_body(0, ALLOCD__REPLY__BODY_HELLO, &h);
}

static void hello(void) {
        hello_with(true);
}

/* A Region as allocd fills it; with_fd: the pool's fd fields (the first region of the pool here). */
static void region_init(Allocd__Region *g, const char *pool, Allocd__PoolKind kind, uint64_t slot, uint64_t offset,
                        uint64_t size, bool with_fd) {
        allocd__region__init(g);
        g->has_id = g->has_kind = g->has_offset = g->has_size = g->has_uid = g->has_sealed = true;
        g->id = ID(slot);
        g->pool = (char *)pool;
        g->kind = kind;
        g->offset = offset;
        g->size = size;
        g->uid = 1000;
        g->sealed = true;
        g->has_format = true;
        g->format = ALLOCD__FORMAT__RAW;
        if (kind != ALLOCD__POOL_KIND__FPGA) {
                g->has_read_only = true;
                g->read_only = false;
        }
        if (!with_fd)
                return;
        g->has_pool_fd = g->pool_fd = true;
        g->has_pool_size = true;
        g->pool_size = POOL_PAGES * 4096;
        g->has_backing = true;
        g->backing = ALLOCD__BACKING__MEMFD;
        if (kind == ALLOCD__POOL_KIND__PINNED) {
                g->has_register_flags = true;
                g->register_flags = 1; /* CU_MEMHOSTREGISTER_PORTABLE */
        }
}

static void region(const char *pool, uint64_t slot, uint64_t offset, uint64_t size, bool with_fd) {
        Allocd__Region g;

        region_init(&g, pool, ALLOCD__POOL_KIND__HOST, slot, offset, size, with_fd);
        ok_body(with_fd ? PKT_FD | POOL_PAGES : 0, ALLOCD__REPLY__BODY_REGION, &g);
}

/* A batch of n regions of 4 KiB from slot first on, listed or in columns; with_fd as region_init. */
static void batch(size_t n, uint64_t first, bool columns, bool with_fd, uint8_t flags) {
        Allocd__RegionBatch b = ALLOCD__REGION_BATCH__INIT;
        Allocd__Region gs[8], *list[8], common;
        uint64_t ids[8], offsets[8], sizes[8];

        if (columns) {
                region_init(&common, "h", ALLOCD__POOL_KIND__HOST, 0, 0, 0, with_fd);
                common.has_id = common.has_offset = common.has_size = false;
                for (size_t i = 0; i < n; i++) {
                        ids[i] = ID(first + i);
                        offsets[i] = (first + i) * 4096;
                        sizes[i] = 4096;
                }
                b.common = &common;
                b.n_ids = b.n_offsets = b.n_sizes = n;
                b.ids = ids;
                b.offsets = offsets;
                b.sizes = sizes;
        } else {
                for (size_t i = 0; i < n; i++) {
                        region_init(&gs[i], i ? NULL : "h", ALLOCD__POOL_KIND__HOST, first + i, (first + i) * 4096,
                                    4096, with_fd && !i);
                        list[i] = &gs[i];
                }
                b.n_regions = n;
                b.regions = list;
        }
        ok_body(flags | (with_fd ? PKT_FD | POOL_PAGES : 0), ALLOCD__REPLY__BODY_BATCH, &b);
}

static void status_reply(uint64_t omitted, uint64_t first_serial, size_t nclients, bool pools) {
        Allocd__StatusReply s = ALLOCD__STATUS_REPLY__INIT;
        Allocd__PoolStatus h = ALLOCD__POOL_STATUS__INIT, f = ALLOCD__POOL_STATUS__INIT, *ps[] = {&h, &f};
        Allocd__Span sp = ALLOCD__SPAN__INIT, fs[2] = {ALLOCD__SPAN__INIT, ALLOCD__SPAN__INIT}, *hspans[] = {&sp},
                     *fspans[] = {&fs[0], &fs[1]};
        Allocd__ClientStatus cs[3], *csp[3];
        Allocd__UnavailablePool u = ALLOCD__UNAVAILABLE_POOL__INIT, *up[] = {&u};
        char *flags[] = {"portable", "devicemap"};
        Allocd__UidUsage us[2] = {ALLOCD__UID_USAGE__INIT, ALLOCD__UID_USAGE__INIT}, *usp[] = {&us[0], &us[1]};

        h.name = "h";
        h.has_kind = h.has_size = h.has_used = h.has_free = h.has_largest_free = h.has_regions = true;
        h.has_waiters = h.has_quantum = true;
        h.size = 32768;
        h.used = 4096;
        h.free = h.largest_free = 28672;
        h.regions = 1;
        h.quantum = 4096;
        sp.has_address = sp.has_size = true;
        sp.size = 32768;
        h.n_spans = 1;
        h.spans = hspans;
        h.backend = "memfd";
        h.isolation = "pool";
        h.names = "res/*";
        h.n_flags = 2;
        h.flags = flags;
        h.has_owner = h.has_group = h.has_mode = h.has_quota_per_uid = h.has_usage_omitted = true;
        h.owner = h.group = 1000;
        h.mode = 0660;
        h.quota_per_uid = 16384;
        for (int i = 0; i < 2; i++) {
                us[i].has_uid = us[i].has_bytes = us[i].has_regions = true;
                us[i].uid = 1000 + (uint32_t)i;
                us[i].bytes = 4096;
                us[i].regions = 1;
        }
        h.n_usage = 2;
        h.usage = usp;
        h.usage_omitted = 1;
        f.name = "f";
        f.has_kind = true;
        f.kind = ALLOCD__POOL_KIND__FPGA;
        for (int i = 0; i < 2; i++) {
                fs[i].has_address = fs[i].has_size = true;
                fs[i].address = (uint64_t)(i + 1) << 32;
                fs[i].size = 1 << 20;
        }
        f.n_spans = 2;
        f.spans = fspans;
        f.draining = "restored from the fd store";
        for (size_t i = 0; i < nclients; i++) {
                allocd__client_status__init(&cs[i]);
                cs[i].has_pid = cs[i].has_uid = cs[i].has_regions = cs[i].has_bytes = cs[i].has_serial = true;
                cs[i].pid = 100 + (int)i;
                cs[i].uid = 1000;
                cs[i].name = "fuzz";
                cs[i].comm = "fuzz-reply";
                cs[i].regions = 1;
                cs[i].bytes = 4096;
                cs[i].serial = first_serial + i;
                csp[i] = &cs[i];
        }
        u.name = "g";
        u.has_kind = true;
        u.kind = ALLOCD__POOL_KIND__GPU;
        u.reason = "no GPU: libcuda.so.1 cannot be loaded";
        if (pools) {
                s.n_pools = 2;
                s.pools = ps;
                s.n_unavailable = 1;
                s.unavailable = up;
                s.daemon_version = "0.1.0";
                s.has_uptime = s.has_started = true;
                s.uptime = 5;
                s.started = 1700000000;
        }
        s.n_clients = nclients;
        s.clients = csp;
        s.has_clients_omitted = omitted != 0;
        s.clients_omitted = omitted;
        ok_body(0, ALLOCD__REPLY__BODY_STATUS, &s);
}

/* next: DumpReply.next (0: unset, as an allocd before it leaves it). */
static void dump_reply(uint64_t first, size_t n, bool more, uint64_t next) {
        Allocd__DumpReply d = ALLOCD__DUMP_REPLY__INIT;
        Allocd__Region gs[4], *list[4];
        Allocd__Holder h = ALLOCD__HOLDER__INIT, *hs[] = {&h};

        h.has_pid = h.has_uid = true;
        h.pid = 100;
        h.uid = 1000;
        h.name = "fuzz";
        h.comm = "fuzz-reply";
        for (size_t i = 0; i < n; i++) {
                region_init(&gs[i], "h", ALLOCD__POOL_KIND__HOST, first + i, (first + i) * 4096, 4096, false);
                gs[i].name = i == 0 ? "n" : NULL;
                gs[i].has_refs = gs[i].has_pid = gs[i].has_created = true;
                gs[i].refs = 1;
                gs[i].pid = 100;
                gs[i].created = 1700000000;
                gs[i].n_holders = 1;
                gs[i].holders = hs;
                list[i] = &gs[i];
        }
        d.n_regions = n;
        d.regions = list;
        d.has_more = more;
        d.more = more;
        d.has_next = next != 0;
        d.next = next;
        ok_body(0, ALLOCD__REPLY__BODY_DUMP, &d);
}

/* ---- the stories ---- */

static void basics(void) {
        NONE();
        hello();
        save("hello");

        NONE();
        error(ALLOCD__ERROR__VERSION, "protocol version 1 is not supported: this allocd speaks 2");
        save("hello-refused");

        BEGIN(OP(OP_ALLOC, 8), OP(OP_ALLOC, 8), OP(OP_FREE, 0), OP(OP_DETACH, 0), OP(OP_SYNC, 0));
        hello();
        region("h", 0, 0, 4096, true);
        region("h", 1, 4096, 4096, false);
        silent(); /* quiet Free */
        silent(); /* quiet Detach */
        ok();     /* Sync */
        save("alloc-free");

        BEGIN(OP(OP_ALLOC, 0), OP(OP_FREE, 0), OP(OP_SYNC, 0));
        hello();
        region("h", 0, 0, 4096, true);
        error(ALLOCD__ERROR__DENIED, "region 4294967296 belongs to uid 0; only its owner may free it");
        ok();
        save("quiet-refused");

        BEGIN(OP(OP_ALLOC, 1), OP(OP_ALLOC, 0), OP(OP_ALLOC, 3));
        hello();
        {
                Allocd__Region g;
                uint8_t uuid[16] = {0xde, 0xad};
                region_init(&g, "p", ALLOCD__POOL_KIND__PINNED, 0, 0, 4096, true);
                ok_body(PKT_FD | POOL_PAGES, ALLOCD__REPLY__BODY_REGION, &g);
                region("h", 1, 0, 4096, true);
                region_init(&g, "g", ALLOCD__POOL_KIND__GPU, 2, 0, 4096, true);
                g.backing = ALLOCD__BACKING__CUDA_VMM;
                g.has_device_uuid = true;
                g.device_uuid.data = uuid;
                g.device_uuid.len = 16;
                ok_body(PKT_FD | POOL_PAGES, ALLOCD__REPLY__BODY_REGION, &g);
        }
        save("every-kind");

        BEGIN(OP(OP_ALLOC, 2), OP(OP_ATTACH, 0), OP(OP_DETACH, 1), OP(OP_FREE, 0), OP(OP_SYNC, 0));
        hello();
        {
                Allocd__Region g;
                region_init(&g, "r", ALLOCD__POOL_KIND__HOST, 0, 8192, 4096, false);
                g.has_region_fd = g.region_fd = true;
                g.has_pool_size = true;
                g.pool_size = 4096;
                g.has_backing = true;
                ok_body(PKT_FD | 1, ALLOCD__REPLY__BODY_REGION, &g);
                g.name = "n";
                ok_body(PKT_FD | 1, ALLOCD__REPLY__BODY_REGION, &g);
        }
        silent();
        silent();
        ok();
        save("isolated");

        BEGIN(OP(OP_ATTACH, 3), OP(OP_GIVE_SYNC, 8));
        hello();
        {
                Allocd__Region g;
                region_init(&g, "h", ALLOCD__POOL_KIND__HOST, 5, 8192, 4096, true);
                g.name = "n";
                g.read_only = true;
                g.uid = 0;
                ok_body(PKT_FD | POOL_PAGES, ALLOCD__REPLY__BODY_REGION, &g);
        }
        ok();
        save("attach-read-only");

        BEGIN(OP(OP_ALLOC_NAMED, 5), OP(OP_SEAL, 0), OP(OP_ALLOC_NAMED, 2), OP(OP_GIVE_SYNC, 0));
        hello();
        {
                Allocd__Region g;
                region_init(&g, "h", ALLOCD__POOL_KIND__HOST, 0, 0, 8192, true);
                g.name = "n";
                g.sealed = false;
                g.format = ALLOCD__FORMAT__FALLOC_HEAP;
                g.has_chunk_size = g.has_chunk_count = g.has_formatted_by_allocd = true;
                g.chunk_size = 64;
                g.chunk_count = 100;
                g.formatted_by_allocd = true;
                ok_body(PKT_FD | POOL_PAGES, ALLOCD__REPLY__BODY_REGION, &g);
        }
        ok();
        error(ALLOCD__ERROR__EXISTS, "the name n is published already (region 4294967296, uid 1000)");
        ok();
        save("named");
}

static void batches(void) {
        BEGIN(OP(OP_BATCH, 2), OP(OP_BATCH, 1), OP(OP_FREE_BATCH, 4), OP(OP_SYNC, 0));
        hello();
        batch(3, 0, true, true, 0);
        batch(2, 3, true, false, 0);
        silent();
        ok();
        save("batch-columns");

        BEGIN(OP(OP_BATCH, 3), OP(OP_FREE_BATCH, 1), OP(OP_SYNC, 0));
        hello();
        batch(4, 0, false, true, 0);
        silent();
        ok();
        save("batch-listed");

        BEGIN(OP(OP_BATCH, 3));
        hello();
        error(ALLOCD__ERROR__WOULD_BLOCK, "the 4 regions do not fit in pool h now (largest free 8192 bytes)");
        save("batch-refused");
}

static void lists(void) {
        BEGIN(OP(OP_STATUS, 0), OP(OP_DUMP, 0), OP(OP_DUMP, 1), OP(OP_DUMP_EACH, 2));
        hello();
        status_reply(0, 1, 2, true);
        dump_reply(0, 3, false, 0);
        dump_reply(0, 1, false, 0);
        dump_reply(0, 3, false, 0);
        save("status-dump");

        BEGIN(OP(OP_STATUS, 0), OP(OP_DUMP, 0));
        hello();
        status_reply(2, 1, 3, true);
        status_reply(0, 4, 2, false);
        dump_reply(0, 4, true, 0);
        dump_reply(4, 2, false, 0);
        save("pages");

        /* Pages that list nothing, allocd having stopped looking, then one that goes back. */
        BEGIN(OP(OP_DUMP, 0), OP(OP_DUMP_EACH, 0));
        hello();
        dump_reply(0, 0, true, 16383);
        dump_reply(16384, 2, true, 40000);
        dump_reply(0, 0, false, 0);
        dump_reply(0, 0, true, 16383);
        dump_reply(5, 1, true, 100);
        save("dump-next");

        BEGIN(OP(OP_DROP, 1), OP(OP_DROP, 15), OP(OP_FREE_ID, 1), OP(OP_SEAL, 3));
        hello();
        {
                Allocd__DisconnectReply d = ALLOCD__DISCONNECT_REPLY__INIT;
                d.has_connections = d.has_references = true;
                d.connections = 1;
                d.references = 3;
                ok_body(0, ALLOCD__REPLY__BODY_DISCONNECT, &d);
        }
        error(ALLOCD__ERROR__DENIED, "connection 2 belongs to uid 0");
        error(ALLOCD__ERROR__NOT_FOUND, "no region 4294967303 held by this connection");
        error(ALLOCD__ERROR__INVALID, "region 12884901889 is sealed already");
        save("drop-errors");
}

static void spares(void) {
        /* A Free with renew is always answered: 4 spares listed each time, and the allocs take them. */
        BEGIN(OP(OP_SPARE, 1), OP(OP_ALLOC, 8), OP(OP_FREE, 0), OP(OP_ALLOC, 8), OP(OP_FREE, 0), OP(OP_ALLOC, 8),
              OP(OP_ALLOC, 9), OP(OP_SPARE, 0), OP(OP_SYNC, 0));
        hello();
        region("h", 0, 0, 4096, true);
        batch(4, 1, false, false, 0);
        batch(4, 5, false, false, 0);
        silent(); /* an alloc of another shape: the 6 spares at hand go back in a quiet FreeBatch */
        {
                Allocd__Region g;
                region_init(&g, "p", ALLOCD__POOL_KIND__PINNED, 9, 0, 4096, true);
                ok_body(PKT_FD | POOL_PAGES, ALLOCD__REPLY__BODY_REGION, &g);
        }
        ok();
        save("spares");

        BEGIN(OP(OP_SPARE, 1), OP(OP_ALLOC, 8), OP(OP_FREE, 0), OP(OP_ALLOC, 8));
        hello();
        region("h", 0, 0, 4096, true);
        said(0, ALLOCD__ERROR__OK, "no spare: pool h is full");
        region("h", 1, 0, 4096, false);
        save("spares-none");

        BEGIN(OP(OP_SPARE, 1), OP(OP_ALLOC, 8), OP(OP_FREE, 0), OP(OP_ALLOC, 8));
        hello();
        region("h", 0, 0, 4096, true);
        region("h", 1, 0, 4096, false); /* one spare, as a Region */
        save("spare-one");
}

static void late(void) {
        /* The Alloc times out; its grant comes with the next request, and goes back in a Free the reader sends. */
        BEGIN(OP(OP_ALLOC, 8), OP(OP_STATUS, 0));
        hello();
        silent();
        {
                Allocd__Region g;
                region_init(&g, "h", ALLOCD__POOL_KIND__HOST, 0, 0, 4096, true);
                ok_body(PKT_EXTRA | PKT_FD | POOL_PAGES, ALLOCD__REPLY__BODY_REGION, &g);
        }
        status_reply(0, 1, 1, true);
        ok(); /* the Free */
        save("late-grant");

        BEGIN(OP(OP_BATCH, 1), OP(OP_STATUS, 0));
        hello();
        silent();
        batch(2, 0, true, true, PKT_EXTRA);
        status_reply(0, 1, 1, true);
        ok(); /* the FreeBatch */
        save("late-batch");

        BEGIN(OP(OP_ALLOC, 8), OP(OP_ALLOC, 8));
        hello();
        region("h", 0, 0, 4096, true);
        said(PKT_EXTRA | PKT_KEEP_ID, ALLOCD__ERROR__DISCONNECTED,
             "an operator closed this connection (allocctl drop)");
        save("disconnected");

        BEGIN(OP(OP_ALLOC, 8), OP(OP_STATUS, 0));
        hello();
        pkt(PKT_HANGUP, NULL);
        save("hangup");
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: gen-reply-seeds DIR\n");
                return 2;
        }
        seed_dir = argv[1];
        basics();
        batches();
        lists();
        spares();
        late();
        return 0;
}
