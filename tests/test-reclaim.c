/* SPDX-License-Identifier: MIT */
/*
 * A client reclaims its regions from an allocd restarted with its state (issue 18): the server
 * runs in this process, on a thread, over a core; a restart writes the core's state while the
 * connections are still open (as the fd store keeps it), stops the server, and serves a new core
 * read from that state on the same socket.  The pool is an fpga pool (ranges, no memory), so
 * that the new core needs no fd of the old one: what is checked is the reclaim, not the bytes.
 * The client is the real liballoc-client, reconnecting on its own.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "alloc/client.h"
#include "proto.h"
#include "server.h"
#include "state.h"
#include "fds.h"

struct srv {
        uv_loop_t loop;
        uv_async_t stop;
        pthread_t thread;
        struct core *core;
        char dir[64], path[128];
        void *state; /* written as it stopped */
        size_t len;
        /* Run on connection serial's core record as the state is written: what allocd did but never said. */
        void (*inject)(struct srv *s, struct client *cl);
        uint64_t serial, id; /* the connection, and the region inject works on */
};

static struct srv *current;

static void changed(void) {
}

/* A region granted whose reply never left: the state has it, the client does not. */
static void grant_unheard(struct srv *s, struct client *cl) {
        struct alloc_request a = {.pool = "f", .size = 4096, .numa_node = -1};
        struct core_result res;
        uint32_t slot;

        cr_assert_eq(core_alloc(s->core, cl, 0, &a, &slot, &res), GRANT_REGION, "%s", res.msg);
}

static void on_stop(uv_async_t *a) {
        struct srv *s = a->data;
        struct client *cl;

        TAILQ_FOREACH(cl, core_clients(s->core), link)
        if (s->inject && cl->serial == s->serial)
                s->inject(s, cl);
        cr_assert_eq(state_write(s->core, 1 << 20, &s->state, &s->len), 0);
        server_stop(true);
        uv_close((uv_handle_t *)a, NULL);
}

static void *run(void *arg) {
        struct srv *s = arg;

        uv_run(&s->loop, UV_RUN_DEFAULT);
        return NULL;
}

/* Serves a fresh core on s->path, or the core a state makes (state, len). */
static void serve(struct srv *s, const void *state, size_t len, uint32_t grace_ms) {
        static struct span span = {.base = 1ull << 32, .size = 64ull << 20};
        struct pool_conf pc = {
                .kind = POOL_FPGA, .has_kind = true, .quantum = 4096, .ranges = &span, .nranges = 1, .mode = 0666};
        struct limits l = {.max_connections = 64,
                           .max_connections_per_uid = 64,
                           .max_regions_per_connection = 1 << 20,
                           .max_waiters_per_connection = 64,
                           .max_waiters_per_uid = 1024,
                           .max_names = 1024,
                           .max_names_per_uid = 1024,
                           .max_persist_per_uid = 1024,
                           .max_region_fds_per_uid = 1024,
                           .wait_timeout_ms = 5000,
                           .hello_timeout_ms = 5000,
                           .reclaim_grace_ms = grace_ms};
        uint64_t serial;
        char err[512];

        pc.numa_node = -1;
        snprintf(pc.name, sizeof(pc.name), "f");
        cr_assert_eq(uv_loop_init(&s->loop), 0);
        cr_assert_eq(core_new(&s->core, &l), 0);
        cr_assert_eq(core_pool_add(s->core, &pc, err, sizeof(err)), 0, "%s", err);
        if (state)
                cr_assert_eq(state_read(s->core, state, len, &serial, err, sizeof(err)), 0, "%s", err);
        server_init(&s->loop, s->core, changed);
        cr_assert_eq(server_listen(s->path, err, sizeof(err)), 0, "%s", err);
        uv_async_init(&s->loop, &s->stop, on_stop);
        s->stop.data = s;
        cr_assert_eq(pthread_create(&s->thread, NULL, run, s), 0);
}

static void start(struct srv *s) {
        *s = (struct srv){0};
        strcpy(s->dir, "/tmp/allocd-reclaim-XXXXXX");
        cr_assert(mkdtemp(s->dir));
        snprintf(s->path, sizeof(s->path), "%s/allocd.sock", s->dir);
        current = s;
        serve(s, NULL, 0, 60000);
}

/* Stops the server as the state is written; the core is gone with it. */
static void stop(struct srv *s) {
        uv_async_send(&s->stop);
        pthread_join(s->thread, NULL);
        uv_loop_close(&s->loop);
        core_free(s->core);
        s->core = NULL;
}

/* A restart that keeps the state: the new core gets what the old one had, placeholders and all. */
static void restart(struct srv *s, uint32_t grace_ms) {
        stop(s);
        serve(s, s->state, s->len, grace_ms);
        free(s->state);
        s->state = NULL;
}

static void finish(struct srv *s) {
        stop(s);
        free(s->state);
        rmdir(s->dir);
}

static struct alloc_client *connect_to(struct srv *s) {
        struct alloc_client *c;

        cr_assert_eq(alloc_connect(&c, s->path, "reclaim"), 0, "%s", alloc_last_error());
        return c;
}

/* Status as the client sees it: the pool's used bytes and regions, and the serial of its one connection. */
static void seen(struct alloc_client *c, uint64_t *used, uint64_t *serial) {
        struct alloc_status *st;

        cr_assert_eq(alloc_status(c, &st), 0, "%s", alloc_last_error());
        *used = st->pools[0].used;
        *serial = st->nclients ? st->clients[0].serial : 0;
        alloc_status_free(st);
}

#define N 4500 /* more than a page of Held */

Test(reclaim, a_client_takes_its_regions_back_and_frees_them, .timeout = 60) {
        static struct alloc_region r[N];
        static uint64_t sizes[1024], ids[N];
        struct srv s;
        uint64_t used, serial, used2, serial2;

        setenv("ALLOCD_RECONNECT", "10s", 1);
        start(&s);
        struct alloc_client *c = connect_to(&s);
        for (size_t i = 0; i < 1024; i++)
                sizes[i] = 4096;
        for (size_t i = 0; i < N; i += 1024) {
                size_t n = N - i < 1024 ? N - i : 1024;
                cr_assert_eq(alloc_region_new_batch(c, "f", sizes, n, NULL, &r[i]), 0, "%s", alloc_last_error());
        }
        seen(c, &used, &serial);
        cr_assert_eq(used, (uint64_t)N * 4096);
        s.inject = grant_unheard; /* and one region whose reply was lost */
        s.serial = serial;
        restart(&s, 60000);
        /* The next call reconnects, reclaims, gives the unheard region back, and answers. */
        seen(c, &used2, &serial2);
        cr_assert_eq(serial2, serial);
        cr_assert_eq(used2, used);
        /* The ids it had are its own still: freed without waiting, and allocd agrees. */
        for (size_t i = 0; i < N; i++)
                ids[i] = r[i].id;
        for (size_t i = 0; i < N; i += 1024)
                cr_assert_eq(alloc_region_free_batch(c, &ids[i], N - i < 1024 ? N - i : 1024), 0, "%s",
                             alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        seen(c, &used2, &serial2);
        cr_assert_eq(used2, 0);
        alloc_disconnect(c);
        finish(&s);
}

/* A server, and a client holding one region of 1 MiB. */
static struct alloc_client *holding_one(struct srv *s, struct alloc_region *r) {
        setenv("ALLOCD_RECONNECT", "10s", 1);
        start(s);
        struct alloc_client *c = connect_to(s);
        cr_assert_eq(alloc_region_new(c, "f", 1 << 20, NULL, r), 0, "%s", alloc_last_error());
        return c;
}

/* The connection's peer as the state records it: inject sets it. */
static pid_t peer_pid;

static void set_pid(struct srv *s, struct client *cl) {
        (void)s;
        cl->pid = peer_pid;
}

/* The one connection's serial, for inject. */
static uint64_t serial_of(struct alloc_client *c) {
        uint64_t used, serial;

        seen(c, &used, &serial);
        return serial;
}

/* The pool's used bytes as a connection of its own sees them: the holder's call would reclaim. */
static uint64_t used_seen(struct srv *s) {
        struct alloc_client *o = connect_to(s);
        uint64_t used, serial;

        seen(o, &used, &serial);
        alloc_disconnect(o);
        return used;
}

/* How another connection sees connection serial: restored (a placeholder) and watched. */
static void restored_seen(struct srv *s, uint64_t serial, bool *restored, bool *watched) {
        struct alloc_client *o = connect_to(s);
        struct alloc_status *st;

        *restored = *watched = false;
        cr_assert_eq(alloc_status(o, &st), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < st->nclients; i++)
                if (st->clients[i].serial == serial) {
                        *restored = st->clients[i].restored;
                        *watched = st->clients[i].watched;
                }
        alloc_status_free(st);
        alloc_disconnect(o);
}

/* Status says which connections are placeholders, and whether allocd watches their processes. */
Test(reclaim, status_lists_restored_connections, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        bool restored, watched;
        struct alloc_client *c = holding_one(&s, &r);
        uint64_t serial = serial_of(c);

        restored_seen(&s, serial, &restored, &watched);
        cr_assert(!restored && !watched, "a live connection");
        restart(&s, 60000);
        restored_seen(&s, serial, &restored, &watched);
        cr_assert(restored && watched, "restored %d, watched %d", restored, watched);
        seen(c, &(uint64_t){0}, &(uint64_t){0}); /* reclaims */
        restored_seen(&s, serial, &restored, &watched);
        cr_assert(!restored && !watched, "reclaimed");
        peer_pid = 0;
        s.inject = set_pid;
        s.serial = serial;
        restart(&s, 60000);
        restored_seen(&s, serial, &restored, &watched);
        cr_assert(restored && !watched, "no pid: restored %d, watched %d", restored, watched);
        alloc_disconnect(c);
        finish(&s);
}

/*
 * Placeholders count with a uid's new connections (not with those that reclaim them): else a user's
 * silent processes would pile them up, restart after restart, past max_connections_per_uid.
 */
Test(reclaim, placeholders_count_against_new_connections, .timeout = 60) {
        static struct alloc_client *more[64];
        struct alloc_region r;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = holding_one(&s, &r);
        int n = 0;

        restart(&s, 60000);
        /* 64 a uid (serve's limits): the placeholder and 63 more. */
        for (; n < 64; n++)
                if (alloc_connect(&more[n], s.path, "more") < 0)
                        break;
        cr_assert_eq(n, 63, "%d new connections beside the placeholder: %s", n, alloc_last_error());
        cr_assert(strstr(alloc_last_error(), "restored by a restart and not reclaimed"), "%s", alloc_last_error());
        /* Its own client still gets in, and takes it back. */
        seen(c, &used, &serial);
        cr_assert_eq(used, 1 << 20, "%s", alloc_last_error());
        for (int i = 0; i < n; i++)
                alloc_disconnect(more[i]);
        alloc_disconnect(c);
        finish(&s);
}

/* A placeholder whose process allocd cannot watch (no pid: a pid namespace it cannot see) waits reclaim_grace. */
Test(reclaim, what_no_one_reclaims_within_the_grace_time_is_released, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = holding_one(&s, &r);

        peer_pid = 0;
        s.inject = set_pid;
        s.serial = serial_of(c);
        restart(&s, 100);
        usleep(400 * 1000);
        cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), -ESTALE);
        cr_assert(strstr(alloc_last_error(), "grace time"), "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 0);
        alloc_disconnect(c);
        finish(&s);
}

/*
 * A client that makes no call reconnects only at its next one, and maps its regions until then:
 * while its process lives they are its own, however long past reclaim_grace.
 */
Test(reclaim, a_live_client_keeps_its_regions_past_the_grace_time, .timeout = 60) {
        struct alloc_region r, big;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = holding_one(&s, &r);

        restart(&s, 100);
        usleep(400 * 1000);
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_new(other, "f", 64 << 20, &(struct alloc_opts){.flags = ALLOC_NOWAIT}, &big), -EAGAIN,
                     "its range went to another: %s", alloc_last_error());
        cr_assert_eq(alloc_region_new(other, "f", 63 << 20, NULL, &big), 0, "%s", alloc_last_error());
        cr_assert_neq(big.addr, r.addr);
        alloc_disconnect(other);
        seen(c, &used, &serial);
        cr_assert_eq(used, 1 << 20, "the holder's call reclaims it");
        cr_assert_eq(alloc_region_free_sync(c, r.id), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        finish(&s);
}

/* A placeholder whose process ended while allocd was down goes at once; one whose process ends later, then. */
Test(reclaim, a_placeholder_goes_with_its_process, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        int status;
        struct alloc_client *c = holding_one(&s, &r);

        cr_assert((peer_pid = fork()) >= 0);
        if (peer_pid == 0)
                _exit(0);
        cr_assert_eq(waitpid(peer_pid, &status, 0), peer_pid);
        s.inject = set_pid;
        s.serial = serial_of(c);
        restart(&s, 60000);
        cr_assert_eq(used_seen(&s), 0, "a placeholder of a process that is gone stayed");
        alloc_disconnect(c);

        c = connect_to(&s);
        cr_assert_eq(alloc_region_new(c, "f", 1 << 20, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert((peer_pid = fork()) >= 0);
        if (peer_pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assertion leaves it no orphan */
                pause();
                _exit(0);
        }
        s.serial = serial_of(c);
        restart(&s, 60000);
        usleep(200 * 1000);
        cr_assert_eq(used_seen(&s), 1 << 20, "released while its process lived");
        kill(peer_pid, SIGKILL);
        cr_assert_eq(waitpid(peer_pid, &status, 0), peer_pid);
        uint64_t used = 1;
        for (int i = 0; i < 500 && used; i++, usleep(10 * 1000))
                used = used_seen(&s);
        cr_assert_eq(used, 0, "still held after its process ended");
        alloc_disconnect(c);
        finish(&s);
}

/* The pidfds open in this process, where the server runs: one a placeholder watched. */
static int pidfds(void) {
        return fds_open((const char *const[]){"anon_inode:[pidfd]", NULL});
}

/* A placeholder that a Disconnect (allocctl disconnect serial:N) released leaves its process unwatched. */
Test(reclaim, a_placeholder_disconnected_is_watched_no_more, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        uint32_t n = 0;
        int status, fds = 1;
        struct alloc_client *c = holding_one(&s, &r);

        cr_assert((peer_pid = fork()) >= 0);
        if (peer_pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assertion leaves it no orphan */
                pause();
                _exit(0);
        }
        s.inject = set_pid;
        s.serial = serial_of(c);
        restart(&s, 60000);
        struct alloc_client *o = connect_to(&s);
        cr_assert_eq(used_seen(&s), 1 << 20);
        cr_assert_eq(pidfds(), 1, "its process is not watched");
        cr_assert_eq(alloc_drop_client(o, 0, s.serial, &n), 0, "%s", alloc_last_error());
        cr_assert_eq(n, 1);
        cr_assert_eq(used_seen(&s), 0);
        for (int i = 0; i < 200 && (fds = pidfds()); i++)
                usleep(10 * 1000);
        cr_assert_eq(fds, 0, "the pidfd of a placeholder released stays open while its process lives");
        kill(peer_pid, SIGKILL);
        cr_assert_eq(waitpid(peer_pid, &status, 0), peer_pid);
        alloc_disconnect(o);
        alloc_disconnect(c);
        finish(&s);
}

Test(reclaim, another_connection_cannot_take_them, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = holding_one(&s, &r);

        restart(&s, 60000);
        /* A connection of its own holds nothing of them; the owner's next call finds them. */
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_free_sync(other, r.id), -ENOENT);
        alloc_disconnect(other);
        seen(c, &used, &serial);
        cr_assert_eq(used, 1 << 20);
        cr_assert_eq(alloc_region_free_sync(c, r.id), 0, "%s", alloc_last_error());
        alloc_disconnect(c);
        finish(&s);
}

/* A free on its way as allocd stops: done before the state was written, or given back by the squaring. */
Test(reclaim, a_free_in_flight_is_not_lost, .timeout = 60) {
        struct alloc_region r[8];
        struct srv s;
        uint64_t used, serial;

        setenv("ALLOCD_RECONNECT", "10s", 1);
        start(&s);
        struct alloc_client *c = connect_to(&s);
        for (int i = 0; i < 8; i++)
                cr_assert_eq(alloc_region_new(c, "f", 8192, NULL, &r[i]), 0, "%s", alloc_last_error());
        for (int i = 0; i < 4; i++)
                cr_assert_eq(alloc_region_free(c, r[i].id), 0, "%s", alloc_last_error());
        restart(&s, 60000);
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 4 * 8192);
        for (int i = 4; i < 8; i++)
                cr_assert_eq(alloc_region_detach_sync(c, r[i].id), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 0);
        alloc_disconnect(c);
        finish(&s);
}

/* Done by allocd as it stopped, each with its reply lost: a Free, a Detach, an Attach of "w", a Seal. */
static void free_unheard(struct srv *s, struct client *cl) {
        struct core_result res;

        cr_assert_eq(core_free_region(s->core, cl, s->id, &res), 0, "%s", res.msg);
}

static void detach_unheard(struct srv *s, struct client *cl) {
        struct core_result res;

        cr_assert_eq(core_detach(s->core, cl, s->id, &res), 0, "%s", res.msg);
}

static void attach_unheard(struct srv *s, struct client *cl) {
        struct attach_request a = {.name = "w"};
        struct core_result res;
        uint32_t slot;

        cr_assert_eq(core_attach(s->core, cl, 0, &a, &slot, &res), GRANT_REGION, "%s", res.msg);
}

static void seal_unheard(struct srv *s, struct client *cl) {
        struct core_result res;

        cr_assert_eq(core_seal(s->core, cl, s->id, &res), 0, "%s", res.msg);
}

/* A client that allocated "w" with flags, on a server that runs inject on it at the restart. */
static struct alloc_client *made_w(struct srv *s, uint32_t flags, void (*inject)(struct srv *, struct client *)) {
        struct alloc_opts o = {.name = "w", .flags = flags};
        struct alloc_region r;
        uint64_t used;

        setenv("ALLOCD_RECONNECT", "10s", 1);
        start(s);
        struct alloc_client *c = connect_to(s);
        cr_assert_eq(alloc_region_new(c, "f", 4096, &o, &r), 0, "%s", alloc_last_error());
        seen(c, &used, &s->serial);
        s->id = r.id;
        s->inject = inject;
        return c;
}

/*
 * A give-back whose reply the restart lost is not sent again: the connection holds "w" twice (an
 * alloc and an attach), allocd gave one back as it stopped, and the one left stays.
 */
static void give_back_once(bool free_it) {
        struct alloc_region a;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = made_w(&s, 0, free_it ? free_unheard : detach_unheard);

        cr_assert_eq(alloc_region_attach(c, "w", NULL, &a), 0, "%s", alloc_last_error());
        restart(&s, 60000);
        cr_assert_eq(free_it ? alloc_region_free_sync(c, s.id) : alloc_region_detach_sync(c, s.id), 0, "%s",
                     alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 4096, "the reference left was given back too");
        cr_assert_eq(alloc_region_detach_sync(c, s.id), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 0);
        alloc_disconnect(c);
        finish(&s);
}

Test(reclaim, a_free_done_as_allocd_stopped_is_not_sent_again, .timeout = 60) {
        give_back_once(true);
}

Test(reclaim, a_detach_done_as_allocd_stopped_is_not_sent_again, .timeout = 60) {
        give_back_once(false);
}

/* A free_sync that never reached allocd is done by the squaring, once. */
Test(reclaim, a_free_sync_lost_on_the_way_is_done_once, .timeout = 60) {
        struct alloc_region a;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = made_w(&s, 0, NULL);

        cr_assert_eq(alloc_region_attach(c, "w", NULL, &a), 0, "%s", alloc_last_error());
        restart(&s, 60000);
        cr_assert_eq(alloc_region_free_sync(c, s.id), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 4096);
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_attach(other, "w", NULL, &a), -ENOENT, "the Free did not unpublish w");
        alloc_disconnect(other);
        alloc_disconnect(c);
        finish(&s);
}

/* What allocd holds beyond the table, of a PERSIST region the connection made and knows, goes back by Detach. */
static void persist_kept(void (*inject)(struct srv *, struct client *), bool detach) {
        struct alloc_region a;
        struct srv s;
        uint64_t used, serial;
        struct alloc_client *c = made_w(&s, ALLOC_PERSIST, inject);

        restart(&s, 60000);
        if (detach)
                cr_assert_eq(alloc_region_detach(c, s.id), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_sync(c), 0, "%s", alloc_last_error());
        seen(c, &used, &serial);
        cr_assert_eq(used, 4096);
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_attach(other, "w", NULL, &a), 0, "w was withdrawn: %s", alloc_last_error());
        alloc_disconnect(other);
        alloc_disconnect(c);
        finish(&s);
}

Test(reclaim, a_lost_attach_of_its_own_persist_region_keeps_it_published, .timeout = 60) {
        persist_kept(attach_unheard, false);
}

Test(reclaim, a_lost_pipelined_detach_of_its_own_persist_region_keeps_it_published, .timeout = 60) {
        persist_kept(NULL, true);
}

/* A Seal allocd did as it stopped is done: sent again, "sealed already" is what was asked. */
Test(reclaim, a_seal_done_as_allocd_stopped_succeeds, .timeout = 60) {
        struct alloc_region a;
        struct srv s;
        struct alloc_client *c = made_w(&s, ALLOC_UNSEALED, seal_unheard);

        restart(&s, 60000);
        cr_assert_eq(alloc_region_seal(c, s.id), 0, "%s", alloc_last_error());
        struct alloc_client *other = connect_to(&s);
        cr_assert_eq(alloc_region_attach(other, "w", NULL, &a), 0, "%s", alloc_last_error());
        alloc_disconnect(other);
        alloc_disconnect(c);
        finish(&s);
}

/* An operator's disconnect of a connection not reclaimed yet releases its references at once. */
Test(reclaim, a_disconnect_releases_a_placeholder, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        uint64_t used, serial, other_serial;
        uint32_t n = 0;
        struct alloc_client *c = holding_one(&s, &r);

        seen(c, &used, &serial);
        restart(&s, 60000);
        struct alloc_client *other = connect_to(&s);
        /* By pid, a placeholder is nobody's: its process may be gone, and the pid another's now. */
        cr_assert_eq(alloc_drop_client(other, getpid(), 0, &n), -ENOENT, "%s", alloc_last_error());
        /* ... but allocctl status lists it under that pid: the refusal says how to name it. */
        char by_serial[64];
        snprintf(by_serial, sizeof(by_serial), "allocctl disconnect serial:%" PRIu64, serial);
        cr_assert(strstr(alloc_last_error(), by_serial), "%s", alloc_last_error());
        cr_assert_eq(alloc_drop_client(other, 0, serial, &n), 0, "%s", alloc_last_error());
        cr_assert_eq(n, 1);
        seen(other, &used, &other_serial);
        cr_assert_eq(used, 0, "the placeholder's region is still held");
        alloc_disconnect(other);
        cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), -ESTALE, "%s", alloc_last_error());
        alloc_disconnect(c);
        finish(&s);
}
