/* SPDX-License-Identifier: MIT */
/*
 * A restored connection no client has reclaimed (a placeholder), against the in-process server of
 * reclaim-server.c: kept while its process lives, released when it ends, by reclaim_grace only
 * where the process cannot be watched; listed as such by Status; counted against new connections.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fds.h"
#include "proc.h"
#include "reclaim-server.h"

/* The connection's peer as the state records it: inject sets it. */
static pid_t peer_pid;

static void set_pid(struct srv *s, struct client *cl) {
        (void)s;
        cl->pid = peer_pid;
        cl->start = proc_stat(peer_pid, NULL, 0);
}

/* A child that waits until it is killed, or its parent (the test) ends. */
static pid_t paused_child(void) {
        pid_t pid = fork();

        cr_assert(pid >= 0);
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assertion leaves it no orphan */
                pause();
                _exit(0);
        }
        return pid;
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
        peer_pid = paused_child();
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

/* As if the connection's pid were another process's now: the state says its process started at another time. */
static void pid_reused(struct srv *s, struct client *cl) {
        (void)s;
        cr_assert_eq(cl->start, proc_stat(getpid(), NULL, 0), "the connection does not know when its process started");
        cr_assert_neq(cl->start, 0);
        cl->start--;
}

/* A pid another process took while allocd was down keeps no placeholder: the start it records tells them apart. */
Test(reclaim, a_pid_another_process_took_keeps_no_placeholder, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        struct alloc_client *c = holding_one(&s, &r);

        s.inject = pid_reused;
        s.serial = serial_of(c);
        restart(&s, 60000);
        cr_assert_eq(used_seen(&s), 0, "the placeholder stayed for the process that has its pid now");
        alloc_disconnect(c);
        finish(&s);
}

/* As a state of format 4 wrote the connection: the peer's pid, no start. */
static void set_pid_no_start(struct srv *s, struct client *cl) {
        (void)s;
        cl->pid = peer_pid;
        cl->start = 0;
}

/* The placeholder knows its process's start now; then, as if that pid were this process's now. */
static void learned_then_reused(struct srv *s, struct client *cl) {
        (void)s;
        cr_assert_eq(cl->start, proc_stat(peer_pid, NULL, 0), "the placeholder did not learn when its process started");
        cl->pid = getpid();
}

/*
 * A placeholder restored from a state without starts (an upgrade from format 4) trusts its pid at that
 * restart, and keeps the start of the process it watches: at the next restart a pid another process took
 * keeps no placeholder.
 */
Test(reclaim, a_placeholder_of_an_older_state_learns_its_process_start, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        bool restored, watched = false;
        int status;
        struct alloc_client *c = holding_one(&s, &r);

        peer_pid = paused_child();
        s.inject = set_pid_no_start;
        s.serial = serial_of(c);
        restart(&s, 60000);
        for (int i = 0; i < 500 && !watched; i++, usleep(10 * 1000))
                restored_seen(&s, s.serial, &restored, &watched);
        cr_assert(restored && watched, "the placeholder of a live process is not watched");
        s.inject = learned_then_reused;
        restart(&s, 60000);
        cr_assert_eq(used_seen(&s), 0, "the placeholder stayed for the process that has its pid now");
        kill(peer_pid, SIGKILL);
        cr_assert_eq(waitpid(peer_pid, &status, 0), peer_pid);
        alloc_disconnect(c);
        finish(&s);
}

/* /proc/PID/stat parsed for a name with spaces and parentheses (a process names itself), and a pid gone. */
Test(reclaim, a_process_start_and_name_are_read_whatever_its_name) {
        int ready[2], status;
        char comm[16], c;

        cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
        cr_assert((peer_pid = fork()) >= 0);
        if (peer_pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                prctl(PR_SET_NAME, ") 1 2 (x) ", 0, 0, 0);
                if (write(ready[1], "", 1) == 1)
                        pause();
                _exit(0);
        }
        cr_assert_eq(read(ready[0], &c, 1), 1);
        uint64_t start = proc_stat(peer_pid, comm, sizeof(comm)), mine = proc_stat(getpid(), NULL, 0);
        cr_assert_str_eq(comm, ") 1 2 (x) ");
        cr_assert(start >= mine && mine > 0, "its start %llu, before its parent's %llu", (unsigned long long)start,
                  (unsigned long long)mine);
        kill(peer_pid, SIGKILL);
        cr_assert_eq(waitpid(peer_pid, &status, 0), peer_pid);
        cr_assert_eq(proc_stat(peer_pid, comm, sizeof(comm)), 0, "a process gone has no start");
        cr_assert_str_eq(comm, "");
        close(ready[0]);
        close(ready[1]);
}

/* The pidfds open in this process, where the server runs: one a placeholder watched. */
static int pidfds(void) {
        return fds_open((const char *const[]){"anon_inode:[pidfd]", NULL});
}

/* A placeholder its client reclaimed leaves its process unwatched. */
Test(reclaim, a_reclaimed_placeholder_is_watched_no_more, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        uint64_t used, serial;
        int fds = 1;
        struct alloc_client *c = holding_one(&s, &r);

        restart(&s, 60000);
        cr_assert_eq(used_seen(&s), 1 << 20);
        cr_assert_eq(pidfds(), 1, "its process is not watched");
        seen(c, &used, &serial); /* reclaims */
        for (int i = 0; i < 200 && (fds = pidfds()); i++)
                usleep(10 * 1000);
        cr_assert_eq(fds, 0, "the pidfd of a placeholder reclaimed stays open");
        alloc_disconnect(c);
        finish(&s);
}

/* A placeholder that a Disconnect (allocctl disconnect serial:N) released leaves its process unwatched. */
Test(reclaim, a_placeholder_disconnected_is_watched_no_more, .timeout = 60) {
        struct alloc_region r;
        struct srv s;
        uint32_t n = 0;
        int status, fds = 1;
        struct alloc_client *c = holding_one(&s, &r);

        peer_pid = paused_child();
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
