/* SPDX-License-Identifier: MIT */
/*
 * The seed writer of gen-request-seeds (seed-writer.h): one input in fuzz-request.h's records,
 * built a record at a time, and a Request of each kind packed by protobuf-c.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seed-file.h"
#include "seed-writer.h"
#include "wire.h"

static uint8_t in[1 << 17];
static size_t len;
const char *seed_dir;

void begin(uint8_t header) {
        len = 0;
        in[len++] = header;
}

void save(const char *name) {
        seed_file_write(seed_dir, name, in, len);
}

void record(int s, int kind) {
        in[len++] = (uint8_t)(s * 8 + kind);
}

static size_t last_packet; /* where the last packet's length is */

void raw(int s, const void *data, size_t n) {
        record(s, FUZZ_PACKET);
        last_packet = len;
        in[len++] = (uint8_t)n;
        in[len++] = (uint8_t)(n >> 8);
        memcpy(in + len, data, n);
        len += n;
}

/* The last packet loses its last n bytes. */
void cut(size_t n) {
        size_t packet = (size_t)(in[last_packet] | in[last_packet + 1] << 8) - n;

        in[last_packet] = (uint8_t)packet;
        in[last_packet + 1] = (uint8_t)(packet >> 8);
        len -= n;
}

void tick(int ms) {
        record(0, FUZZ_TICK);
        in[len++] = (uint8_t)ms;
        in[len++] = (uint8_t)(ms >> 8);
}

void zeroed(int failed) {
        record(0, FUZZ_ZEROED);
        in[len++] = (uint8_t) !!failed;
}

size_t pack(uint8_t *buf, uint64_t id, Allocd__Request__BodyCase body_case, void *body) {
        Allocd__Request r = ALLOCD__REQUEST__INIT;

        r.has_id = true;
        r.id = id;
        r.body_case = body_case;
        r.hello = body; /* the oneof's members share one pointer */
        return allocd__request__pack(&r, buf);
}

void put(int s, uint64_t id, Allocd__Request__BodyCase body_case, void *body) {
        static uint8_t buf[WIRE_MAX_PACKET];

        raw(s, buf, pack(buf, id, body_case, body));
}

void hello_as(int s, uint32_t version, const char *name) {
        Allocd__Hello h = ALLOCD__HELLO__INIT;

        h.has_version = version != 0;
        h.version = version;
        h.client_name = (char *)name;
        put(s, 1, ALLOCD__REQUEST__BODY_HELLO, &h);
}

void hello(int s) {
        hello_as(s, WIRE_VERSION, NULL);
}

/* An Alloc of size in pool with flags and name; a, if given, carries the rest. */
Allocd__Alloc *alloc_shape(Allocd__Alloc *a, const char *pool, uint64_t size, uint32_t flags, const char *name) {
        a->pool = (char *)pool;
        a->has_size = true;
        a->size = size;
        a->has_flags = flags != 0;
        a->flags = flags;
        a->name = (char *)name;
        return a;
}

void alloc_with(int s, const char *pool, uint64_t size, uint32_t flags, const char *name, Allocd__Alloc *a) {
        Allocd__Alloc plain = ALLOCD__ALLOC__INIT;

        put(s, 2, ALLOCD__REQUEST__BODY_ALLOC, alloc_shape(a ? a : &plain, pool, size, flags, name));
}

void alloc(int s, const char *pool, uint64_t size, uint32_t flags, const char *name) {
        alloc_with(s, pool, size, flags, name, NULL);
}

void free_region(int s, uint64_t region) {
        Allocd__Free f = ALLOCD__FREE__INIT;

        f.has_region = true;
        f.region = region;
        put(s, 3, ALLOCD__REQUEST__BODY_FREE, &f);
}

void detach(int s, uint64_t region) {
        Allocd__Detach d = ALLOCD__DETACH__INIT;

        d.has_region = true;
        d.region = region;
        put(s, 4, ALLOCD__REQUEST__BODY_DETACH, &d);
}

void attach_within(int s, const char *name, uint32_t timeout_ms) {
        Allocd__Attach a = ALLOCD__ATTACH__INIT;

        a.name = (char *)name;
        a.has_timeout_ms = timeout_ms != 0;
        a.timeout_ms = timeout_ms;
        put(s, 5, ALLOCD__REQUEST__BODY_ATTACH, &a);
}

void attach(int s, const char *name) {
        attach_within(s, name, 0);
}

void cancel(int s, uint64_t request) {
        Allocd__Cancel m = ALLOCD__CANCEL__INIT;

        m.has_request = request != 0;
        m.request = request;
        put(s, 9, ALLOCD__REQUEST__BODY_CANCEL, &m);
}

void goodbye(int s) {
        Allocd__Goodbye m = ALLOCD__GOODBYE__INIT;

        put(s, 9, ALLOCD__REQUEST__BODY_GOODBYE, &m);
}

void seal(int s, uint64_t region) {
        Allocd__Seal m = ALLOCD__SEAL__INIT;

        m.has_region = true;
        m.region = region;
        put(s, 9, ALLOCD__REQUEST__BODY_SEAL, &m);
}

/* An AllocBatch of the n sizes in pool with flags and name (a batch refuses names). */
void alloc_batch(int s, const char *pool, const uint64_t *sizes, size_t n, uint32_t flags, const char *name,
                 bool columns) {
        Allocd__AllocBatch b = ALLOCD__ALLOC_BATCH__INIT;
        Allocd__Alloc a = ALLOCD__ALLOC__INIT;

        a.pool = (char *)pool;
        a.has_flags = flags != 0;
        a.flags = flags;
        a.name = (char *)name;
        b.alloc = &a;
        b.n_sizes = n;
        b.sizes = (uint64_t *)sizes;
        b.has_columns = b.columns = columns;
        put(s, 10, ALLOCD__REQUEST__BODY_ALLOC_BATCH, &b);
}

void free_batch(int s, const uint64_t *ids, size_t n) {
        Allocd__FreeBatch b = ALLOCD__FREE_BATCH__INIT;

        b.n_regions = n;
        b.regions = (uint64_t *)ids;
        put(s, 11, ALLOCD__REQUEST__BODY_FREE_BATCH, &b);
}

void status(int s, uint64_t after) {
        Allocd__Status st = ALLOCD__STATUS__INIT;

        st.has_clients_after = after != 0;
        st.clients_after = after;
        put(s, 6, ALLOCD__REQUEST__BODY_STATUS, &st);
}

void dump(int s, uint64_t after, const char *pool) {
        Allocd__Dump d = ALLOCD__DUMP__INIT;

        d.has_after = after != 0;
        d.after = after;
        d.pool = (char *)pool;
        put(s, 7, ALLOCD__REQUEST__BODY_DUMP, &d);
}

/* Disconnect by pid (serial 0) or by serial. */
void disconnect(int s, int32_t pid, uint64_t serial) {
        Allocd__Disconnect d = ALLOCD__DISCONNECT__INIT;

        d.has_pid = pid != 0;
        d.pid = pid;
        d.has_serial = serial != 0;
        d.serial = serial;
        put(s, 8, ALLOCD__REQUEST__BODY_DISCONNECT, &d);
}

/* f is 0664, owner 1000: the waiting stories run as 1000 and root (uid indices 1 and 0). */
void fill_f(int s) {
        alloc(s, "f", 1 << 20, 0, NULL);
        alloc(s, "f", 64 << 10, 0, NULL);
}

/* Sessions 0 (uid 1000) and 1 (root), and f full of session 0's regions (ID(0), ID(1)). */
void begin_f_full(void) {
        begin(fuzz_header(0, 1, 0, 2));
        hello(0);
        hello(1);
        fill_f(0);
}
