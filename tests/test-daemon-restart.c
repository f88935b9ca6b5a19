/* SPDX-License-Identifier: MIT */
/*
 * allocd across a restart with systemd's fd store (issue 18), systemd played by sysd.c: SIGTERM and
 * SIGKILL under load lose no region, name or byte, and `allocctl dump` reads the same after; a
 * damaged or truncated state is said and gives fresh pools, a damaged header or another version is
 * an error; an invalid file at a restart keeps allocd up, serving nobody, so the store stays.
 * test-daemon-restart-store.c has what the store holds across reloads and restarts (pools, region memfds) and what
 * leaves it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "restart-checks.h"

#define NCLIENTS 3
#define NREGIONS 16

TestSuite(restart, .fini = teardown, .timeout = 120);

/* The client processes: each holds its connection and regions until told to check them, or to go. */
struct clients {
        pid_t pid[NCLIENTS];
        int cmd[NCLIENTS];
};

/*
 * Client i allocates NREGIONS regions, writes a pattern, names every other one "cI/J", and attaches
 * the names of client i - 1; then waits.  Told 'c' (after a restart), it checks its regions' bytes
 * through the pointers it had before: its mappings outlive the allocd that made them.
 */
static void client_proc(int i, int cmd, int ready) {
        struct alloc_client *k;
        struct alloc_region r[NREGIONS], a;
        char name[32], c;

        if (alloc_connect(&k, s.d.sock, "restart-client") < 0)
                _exit(10);
        for (int j = 0; j < NREGIONS; j++) {
                snprintf(name, sizeof(name), "c%d/%d", i, j);
                struct alloc_opts o = {.name = j % 2 ? NULL : name};
                if (alloc_region_new(k, j % 3 ? "host" : "other", 4096u << (j % 4), &o, &r[j]) < 0)
                        _exit(11);
                pattern(r[j].ptr, r[j].size, (unsigned)(i * 100 + j));
        }
        for (int j = 0; i > 0 && j < NREGIONS; j += 2) {
                snprintf(name, sizeof(name), "c%d/%d", i - 1, j);
                if (alloc_region_attach(k, name, NULL, &a) < 0)
                        _exit(12);
        }
        /* A round trip: allocd has answered, and kept, everything above. */
        struct alloc_status *st;
        if (alloc_status(k, &st) < 0 || write(ready, "r", 1) != 1)
                _exit(13);
        alloc_status_free(st);
        if (read(cmd, &c, 1) != 1)
                _exit(0);
        for (int j = 0; j < NREGIONS; j++)
                if (!pattern_ok(r[j].ptr, r[j].size, (unsigned)(i * 100 + j)))
                        _exit(20 + j);
        _exit(0);
}

/* Starts the client processes one after the other; one PERSIST region "orphan" outlives its client. */
static void populate(struct clients *cs) {
        struct alloc_region r;
        char c;

        for (int i = 0; i < NCLIENTS; i++) {
                int cmd[2], ready[2];
                cr_assert(pipe2(cmd, O_CLOEXEC) == 0 && pipe2(ready, O_CLOEXEC) == 0);
                cs->pid[i] = test_fork();
                cr_assert(cs->pid[i] >= 0);
                if (cs->pid[i] == 0) {
                        /* The clients before it must see their pipe's end when the test closes it. */
                        for (int j = 0; j < i; j++)
                                close(cs->cmd[j]);
                        close(cmd[1]);
                        close(ready[0]);
                        client_proc(i, cmd[0], ready[1]);
                }
                close(cmd[0]);
                close(ready[1]);
                cs->cmd[i] = cmd[1];
                cr_assert_eq(read(ready[0], &c, 1), 1, "client %d failed", i);
                close(ready[0]);
        }
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "host", 1 << 20,
                                      &(struct alloc_opts){.name = "orphan", .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        pattern(r.ptr, r.size, 7);
        alloc_disconnect(k);
}

/* check: each client checks its bytes first; else it just goes. */
static void clients_end(struct clients *cs, bool check) {
        for (int i = 0; i < NCLIENTS; i++) {
                int status;
                if (check)
                        cr_assert_eq(write(cs->cmd[i], "c", 1), 1);
                close(cs->cmd[i]);
                cr_assert_eq(waitpid(cs->pid[i], &status, 0), cs->pid[i]);
                cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client %d: %#x", i, status);
        }
}

/* A new client finds every name with its bytes. */
static void check_names(void) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;
        char name[32];

        for (int i = 0; i < NCLIENTS; i++)
                for (int j = 0; j < NREGIONS; j += 2) {
                        snprintf(name, sizeof(name), "c%d/%d", i, j);
                        cr_assert_eq(alloc_region_attach(k, name, NULL, &r), 0, "%s after the restart: %s", name,
                                     alloc_last_error());
                        cr_assert(pattern_ok(r.ptr, r.size, (unsigned)(i * 100 + j)), "%s: bytes changed", name);
                        alloc_region_detach(k, r.id);
                }
        cr_assert_eq(alloc_region_attach(k, "orphan", NULL, &r), 0, "the PERSIST region: %s", alloc_last_error());
        cr_assert(pattern_ok(r.ptr, r.size, 7));
        alloc_region_detach(k, r.id);
        alloc_disconnect(k);
}

static void restart_keeps_everything(int sig) {
        struct clients c;

        sysd_start(&s, CONF);
        cr_assert_eq(sysd_count(&s, "pool.host.67108864.host"), 1, "the pool's fd was not stored");
        cr_assert_eq(stored("state.", 1), 1);
        populate(&c);
        struct alloc_client *k = daemon_connect(&s.d);
        unsigned long long used = pool_used(k, "host"); /* a round trip: every change is kept by now */
        alloc_disconnect(k);
        char *before = dump(NULL);
        sysd_restart(&s, sig);
        cr_assert(strstr(sysd_log(&s), "restored from the fd store"), "%s", sysd_log(&s));
        /* The connections a stop closes keep their references in the kept state: the log says so. */
        cr_assert(sig != SIGTERM || strstr(sysd_log(&s), "references kept in the fd store for its reconnection"), "%s",
                  sysd_log(&s));
        /* allocd cannot tell a restart from `systemctl stop`, which empties the store: the stop line says both. */
        cr_assert(sig != SIGTERM || strstr(sysd_log(&s), "clients: they are kept in systemd's fd store: "
                                                         "a restart (systemctl restart, a crash) restores them; "
                                                         "systemctl stop empties the store and they are lost"),
                  "%s", sysd_log(&s));
        char *after = dump(NULL);
        cr_assert_str_eq(after, before);
        check_names();
        clients_end(&c, true);
        /* Their processes ended: what they held goes with them (if they did not reconnect, their
         * placeholders with their processes); the PERSIST orphan stays. */
        k = daemon_connect(&s.d);
        unsigned long long left = used;
        for (int i = 0; i < 500 && left != 1 << 20; i++, usleep(10 * 1000))
                left = pool_used(k, "host");
        cr_assert_eq(left, 1 << 20, "%s", sysd_log(&s));
        alloc_disconnect(k);
        cr_assert_eq(stored("state.", 1), 1, "the old state was not removed from the store");
        free(before);
        free(after);
}

Test(restart, sigterm_loses_nothing) {
        restart_keeps_everything(SIGTERM);
}

Test(restart, sigkill_loses_nothing) {
        restart_keeps_everything(SIGKILL);
}

/*
 * A restart with an invalid file (a typo, or one an older allocd accepted): allocd exited 78, the unit
 * failed and systemd emptied the store, every region lost while its clients mapped it.  It stays up
 * serving nobody instead, and the restart after the fix restores everything.
 */
Test(restart, an_invalid_file_at_a_restart_keeps_the_store) {
        struct clients c;
        struct alloc_client *k;

        sysd_start(&s, CONF);
        populate(&c);
        char *before = dump(NULL);
        write_file(s.d.conf, "[pool host]\nkind = nonsense\n");
        sysd_kill(&s, SIGTERM);
        int r = sysd_spawn(&s);
        cr_assert_eq(r, -1, "allocd exited %d with an invalid file at a restart: %s", r, sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "allocd.conf:2: kind = nonsense") &&
                          strstr(sysd_log(&s), "it stays up serving nobody instead"),
                  "%s", sysd_log(&s));
        cr_assert_lt(alloc_connect(&k, s.d.sock, "early"), 0, "a client was served with the invalid file");
        /* It is told why, not "Connection reset". */
        cr_assert(strstr(alloc_last_error(), "its configuration file is invalid (") &&
                          strstr(alloc_last_error(), "allocd.conf:2: kind = nonsense"),
                  "%s", alloc_last_error());
        write_file(s.d.conf, CONF);
        sysd_restart(&s, SIGTERM);
        cr_assert(strstr(sysd_log(&s), "restored from the fd store"), "%s", sysd_log(&s));
        char *after = dump(NULL);
        cr_assert_str_eq(after, before);
        check_names();
        clients_end(&c, true);
        free(before);
        free(after);
}

/* A PERSIST region named name of pool host, its bytes pattern seed. */
static void persist(const char *name, unsigned seed) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(k, "host", 8192, &(struct alloc_opts){.name = name, .flags = ALLOC_PERSIST}, &r),
                     0, "%s", alloc_last_error());
        pattern(r.ptr, r.size, seed);
        alloc_disconnect(k);
}

static void still_there(const char *name, unsigned seed) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_region r;

        cr_assert_eq(alloc_region_attach(k, name, NULL, &r), 0, "%s: %s", alloc_last_error(), sysd_log(&s));
        cr_assert(pattern_ok(r.ptr, r.size, seed), "%s lost its bytes", name);
        alloc_disconnect(k);
}

/*
 * A restart goes on appending to the state it restored (no new snapshot): the store keeps it under
 * its name, and what changes after the restart comes through the next one.
 */
Test(restart, the_restored_state_goes_on) {
        sysd_start(&s, CONF);
        cr_assert_eq(stored("state.0", 1), 1);
        persist("one", 1);
        sysd_restart(&s, SIGKILL);
        persist("two", 2);
        cr_assert_eq(stored("state.0", 1), 1, "the state restored left the store: %s", sysd_log(&s));
        cr_assert_eq(sysd_count(&s, "state.1"), 0, "a new state was stored: %s", sysd_log(&s));
        sysd_restart(&s, SIGTERM);
        still_there("one", 1);
        still_there("two", 2);
        cr_assert_eq(stored("state.0", 1), 1);
        cr_assert_eq(sysd_count(&s, "state.1"), 0);
}

/* Allocates and frees in pool other until killed, counting its allocations in *done (shared). */
static void load(volatile unsigned *done) {
        struct alloc_client *k;
        struct alloc_region r[8];

        if (alloc_connect(&k, s.d.sock, "load") < 0)
                _exit(1);
        for (unsigned n = 0;; n++, (*done)++) {
                if (alloc_region_new(k, "other", 4096, NULL, &r[n % 8]) < 0)
                        _exit(2); /* it carries on across a restart: never */
                if (n % 8 == 7)
                        for (int i = 0; i < 8; i++)
                                alloc_region_free(k, r[i].id);
        }
}

Test(restart, sigkill_under_load) {
        struct clients c;

        sysd_start(&s, CONF);
        populate(&c);
        char *before = dump("host");
        volatile unsigned *done = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        cr_assert(done != MAP_FAILED);
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0)
                load(done);
        usleep(100000);
        sysd_restart(&s, SIGKILL);
        /* The load carries on across the restart (liballoc-client reconnects and reclaims); it ends here. */
        unsigned at = *done;
        for (int i = 0; i < 500 && *done < at + 100; i++)
                usleep(10000);
        int status = 0;
        cr_assert_eq(waitpid(pid, &status, WNOHANG), 0, "the load stopped at the restart: %#x", status);
        cr_assert_geq(*done, at + 100, "the load did not carry on after the restart");
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        char *after = dump("host");
        cr_assert_str_eq(after, before);
        check_names();
        /* What the load had in other is whatever the state last kept: consistent, and freed with its holder. */
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "other", 4096, NULL, &(struct alloc_region){0}), 0, "%s", alloc_last_error());
        alloc_disconnect(k);
        clients_end(&c, true);
        free(before);
        free(after);
}

static void damaged(bool truncate, const char *why) {
        struct clients c;
        struct alloc_region r;

        sysd_start(&s, CONF);
        populate(&c);
        /* It disconnects while no allocd runs: its Goodbye would wait for the next (sysd.c starts none for it). */
        setenv("ALLOCD_RECONNECT", "0", 1);
        struct alloc_client *k = daemon_connect(&s.d);
        unsetenv("ALLOCD_RECONNECT");
        cr_assert_eq(alloc_region_new(k, "iso", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(stored("region-", 1), 1);
        sysd_kill(&s, SIGTERM);
        alloc_disconnect(k);
        sysd_damage_state(&s, truncate);
        int e = sysd_spawn(&s);
        cr_assert_eq(e, -1, "allocd did not start with a damaged state (%d): %s", e, sysd_log(&s));
        const char *log = sysd_log(&s);
        cr_assert(strstr(log, "cannot be restored") && strstr(log, "is lost") && strstr(log, why), "%s", log);
        k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_attach(k, "c0/0", NULL, &r), -ENOENT, "a region of the lost state is there");
        cr_assert_eq(pool_used(k, "host"), 0);
        /* Fresh pools, stored again under their names; the damaged state is gone from the store. */
        cr_assert_eq(stored("pool.host.67108864.host", 1), 1);
        cr_assert_eq(stored("state.", 1), 1);
        cr_assert_eq(stored("region-", 0), 0, "the lost regions' memfds are still stored");
        /* Fresh memory, not the old pool's: an old client still maps that, and it held others' bytes. */
        cr_assert_eq(alloc_region_new(k, "host", 1 << 20, NULL, &r), 0);
        for (size_t i = 0; i < r.size; i++)
                cr_assert_eq(((const unsigned char *)r.ptr)[i], 0, "byte %zu of a new pool is not 0", i);
        alloc_disconnect(k);
        clients_end(&c, false);
}

Test(restart, damaged_state_starts_fresh) {
        damaged(false, "damaged");
}

Test(restart, truncated_state_starts_fresh) {
        damaged(true, "cut short");
}

/* A state whose header is damaged, or of another version, is an error that names it, not a quiet fresh start. */
static void refused_state(off_t at) {
        sysd_start(&s, CONF);
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k, "host", 8192, &(struct alloc_opts){.name = "p", .flags = ALLOC_PERSIST},
                                      &(struct alloc_region){0}),
                     0, "%s", alloc_last_error());
        alloc_disconnect(k);
        sysd_kill(&s, SIGTERM);
        const char *name = sysd_fd(&s, "state.0") >= 0 ? "state.0" : "state.1";
        unsigned char b;
        cr_assert_eq(pread(sysd_fd(&s, name), &b, 1, at), 1);
        b ^= 0x5a;
        cr_assert_eq(pwrite(sysd_fd(&s, name), &b, 1, at), 1);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        char want[128];
        snprintf(want, sizeof(want), "error: the fd store holds %s, which is not a state this allocd can read", name);
        cr_assert(strstr(sysd_log(&s), want), "%s", sysd_log(&s));
}

Test(restart, a_damaged_header_is_an_error) {
        refused_state(0);
        cr_assert(strstr(sysd_log(&s), "its header is damaged"), "%s", sysd_log(&s));
}

Test(restart, another_version_is_an_error) {
        refused_state(8);
        cr_assert(strstr(sysd_log(&s), "another version of the format"), "%s", sysd_log(&s));
}

/*
 * A byte of the state's log damaged (a record broken with whole ones after it: no kill leaves that) refuses the
 * state as a damaged snapshot does.  Read as a torn tail, the changes before it alone were restored into the stored
 * memory: the regions allocated after the snapshot were handed out again while their holders still wrote them.
 */
Test(restart, damage_in_the_log_starts_fresh) {
        struct alloc_region r[3], n;

        sysd_start(&s, CONF);
        struct alloc_client *k = daemon_connect(&s.d);
        for (unsigned i = 0; i < 3; i++) {
                cr_assert_eq(alloc_region_new(k, "host", 8192, &(struct alloc_opts){.flags = ALLOC_PERSIST}, &r[i]), 0,
                             "%s", alloc_last_error());
                pattern(r[i].ptr, r[i].size, 20u + i);
        }
        sysd_kill(&s, SIGKILL);
        int fd = sysd_fd(&s, sysd_fd(&s, "state.0") >= 0 ? "state.0" : "state.1");
        uint32_t hlen;
        uint64_t body;
        unsigned char b;
        cr_assert(pread(fd, &hlen, 4, 12) == 4 && pread(fd, &body, 8, 16) == 8);
        off_t at = (off_t)(hlen + body) + 10; /* the first record's payload (its header is 8 bytes) */
        cr_assert(pread(fd, &b, 1, at) == 1);
        b ^= 0x40;
        cr_assert(pwrite(fd, &b, 1, at) == 1);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        const char *log = sysd_log(&s);
        cr_assert(strstr(log, "cannot be restored") && strstr(log, "the state's log is damaged"), "%s", log);
        struct alloc_client *k2 = daemon_connect(&s.d);
        cr_assert_eq(alloc_region_new(k2, "host", 3 * 8192, NULL, &n), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < n.size; i++)
                cr_assert_eq(((const unsigned char *)n.ptr)[i], 0, "byte %zu is the old client's: a region it holds",
                             i);
        for (unsigned i = 0; i < 3; i++)
                cr_assert(pattern_ok(r[i].ptr, r[i].size, 20u + i), "the old client's bytes were written over");
        alloc_disconnect(k2);
        alloc_disconnect(k);
}
