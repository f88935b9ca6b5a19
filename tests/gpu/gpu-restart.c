/* SPDX-License-Identifier: MIT */
/*
 * GPU test of issue 18: a gpu pool and two pinned pools (backend = vmm and backend = memfd) keep
 * their memory, regions and bytes across a restart of allocd under systemd's fd store (played by
 * tests/sysd.c), while a client process keeps using its device pointers.  Exits 77 without a GPU.
 *
 *   gpu-restart                 the test: allocd under sysd, a client process A
 *   gpu-restart worker SOCKET   a client process (gpu-restart-worker.c): one liballoc-client
 *                               connection, commands on stdin, one answer line each
 *
 * A allocates regions in each pool and writes them (a kernel through dev_ptr; the CPU for pinned),
 * then a thread of A runs kernels over a "busy" region of each pool without a pause while allocd is
 * stopped (SIGTERM, then SIGKILL) and started again with the stored fds: the rounds go on while no
 * allocd runs.  After each restart: the same regions (ids, names, offsets, holders) and used bytes;
 * A's next call reconnects and reclaims its references (the log says so) and every byte is as A
 * wrote it, read through its old pointers; a new process B attaches the names and reads the bytes
 * with its own kernel (the new allocd handed it the memory it adopted).  Then an ALLOC_ZERO region
 * comes back zeroed (allocd zeroes through its own mapping of the imported memory), a free of a
 * region from before the restarts gives back its bytes, and once everyone has gone device memory
 * is free again (cuMemGetInfo).  Last, the gpu and pinned vmm pools taken out of the file across a
 * restart drain: their regions keep their bytes until freed, and the pools go with them (taken_out).
 *
 * sysd.c and harness.c are built into this plain program with tests/checks.h's checks, as for
 * restart-bench: a failed check there prints and exits 1, which meson reports as a failure.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloc/client.h>

#include "gpu-util.h"

#if !HAVE_CUDA || !defined(KERNELS_PATH)
int main(void) {
        printf("skipped: built without the CUDA toolkit (headers and nvcc)\n");
        return EXIT_SKIP;
}
#else

#include "checks.h"
#include "gpu-restart.h"
#include "sysd.h"

#define MIB (1ull << 20)

/* ---- the test ---- */

static struct sysd s;
static int failures;
static size_t npools; /* the pools allocd made */

static void result(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(bool ok, const char *fmt, ...) {
        va_list ap;

        failures += !ok;
        printf("%-4s ", ok ? "ok" : "FAIL");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

/* Sends one command, prints it with the answer (in a static buffer), and counts an answer other than "ok". */
static const char *say(struct gpu_proc *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *say(struct gpu_proc *p, const char *fmt, ...) {
        static char answer[512];
        char cmd[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        gpu_ask(p, cmd, answer, sizeof(answer));
        result(!strncmp(answer, "ok", 2), "%s %-28s %s", p->name, cmd, answer);
        return answer;
}

/* "rounds" or "stop": how many rounds the busy regions' kernels have made so far (0 on an error, which is said). */
static unsigned long long rounds(struct gpu_proc *p, const char *cmd) {
        const char *answer = say(p, "%s", cmd);

        return strncmp(answer, "ok ", 3) ? 0 : strtoull(answer + 3, NULL, 10);
}

/* The rounds once they pass since, or after 10 s; asked quietly (a round is a few kernels: well under that). */
static unsigned long long rounds_past(struct gpu_proc *p, unsigned long long since) {
        unsigned long long n = 0;
        char answer[512];

        for (int i = 0; i < 1000 && n <= since; i++) {
                usleep(i ? 10000 : 0);
                gpu_ask(p, "rounds", answer, sizeof(answer));
                n = strncmp(answer, "ok ", 3) ? 0 : strtoull(answer + 3, NULL, 10);
        }
        return n;
}

static void worker_end(struct gpu_proc *p) {
        int status;

        fprintf(p->in, "quit\n");
        fclose(p->in);
        waitpid(p->pid, &status, 0);
        fclose(p->out);
        result(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s exited: status %#x", p->name, status);
}

/* Every region as allocd lists it (ids, pools, offsets, sizes, names, references, holders), as text. */
static char *dump_text(void) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_dump *d;
        size_t len = 0, cap = 1 << 16;
        char *t = malloc(cap);

        cr_assert(t && alloc_dump(k, NULL, &d) == 0, "alloc_dump: %s", alloc_last_error());
        t[0] = '\0';
        for (size_t i = 0; i < d->nregions; i++) {
                const struct alloc_region_info *r = &d->regions[i];
                len += (size_t)snprintf(t + len, cap - len,
                                        "%" PRIu64 " %s %#" PRIx64 " %" PRIu64 " '%s' %u %u %" PRIu64, r->id, r->pool,
                                        r->addr, r->size, r->name, r->refs, r->flags, r->created);
                for (size_t j = 0; j < r->nholders; j++)
                        len += (size_t)snprintf(t + len, cap - len, " %d:%s", (int)r->holders[j].pid,
                                                r->holders[j].name);
                len += (size_t)snprintf(t + len, cap - len, "\n");
                cr_assert(len < cap - 256, "the dump passes %zu bytes", cap);
        }
        alloc_dump_free(d);
        alloc_disconnect(k);
        return t;
}

struct pool {
        const char *name;
        uint64_t region; /* each region's size */
        bool host;       /* the CPU writes and reads it too */
        bool up;         /* allocd made it */
        unsigned long long used;
        uint64_t gone; /* the offset of its region "gone", dirty and freed before the restarts */
};

/* The offset in an answer to alloc, or UINT64_MAX. */
static uint64_t offset(const char *answer) {
        const char *o = strstr(answer, "offset=");

        return o ? strtoull(o + 7, NULL, 0) : UINT64_MAX;
}

static struct pool pools[] = {
        {.name = "g", .region = 16 * MIB},
        {.name = "pvmm", .region = 4 * MIB, .host = true},
        {.name = "pmem", .region = 4 * MIB, .host = true},
};
#define NPOOLS (sizeof(pools) / sizeof(pools[0]))

#define CONF                                                                                                           \
        "[pool g]\nkind = gpu\ndevice = 0\nsize = 256M\n"                                                              \
        "[pool pvmm]\nkind = pinned\nbackend = vmm\nsize = 32M\n"                                                      \
        "[pool pmem]\nkind = pinned\nbackend = memfd\nsize = 32M\nflags = portable, devicemap\n"

enum { DISCOVER, RECORD, COMPARE };

/*
 * DISCOVER: which pools allocd made (a pinned pool the machine cannot make is said, not failed);
 * RECORD: their used bytes; COMPARE: the used bytes are those recorded.
 */
static void pools_status(int how) {
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_status *st;

        cr_assert(alloc_status(k, &st) == 0, "alloc_status: %s", alloc_last_error());
        for (size_t i = 0; i < NPOOLS; i++) {
                struct pool *p = &pools[i];
                unsigned long long used = ULLONG_MAX;
                for (size_t j = 0; j < st->npools; j++)
                        if (!strcmp(st->pools[j].name, p->name))
                                used = st->pools[j].used;
                if (how == DISCOVER) {
                        p->up = used != ULLONG_MAX;
                        for (size_t j = 0; j < st->nunavailable; j++)
                                if (!strcmp(st->unavailable[j].name, p->name) && p->host)
                                        printf("skip pool %s is not available here: %s\n", p->name,
                                               st->unavailable[j].reason);
                        if (!p->host)
                                result(p->up, "the gpu pool %s is made", p->name);
                        continue;
                }
                if (how == COMPARE && p->up)
                        result(used == p->used, "pool %s: %llu bytes used, as before (%llu)", p->name, used, p->used);
                p->used = used;
        }
        alloc_status_free(st);
        alloc_disconnect(k);
}

/* How often what occurs in allocd's stderr, every start of it (the whole file: slurp reads 16 KiB). */
static int in_log(const char *what) {
        FILE *f = fopen(s.log, "r");
        char line[4096];
        int n = 0;

        while (f && fgets(line, sizeof(line), f))
                n += strstr(line, what) != NULL;
        if (f)
                fclose(f);
        return n;
}

/* How many pool fds the store holds, once it is want or after 5 s (allocd stores them after it made them). */
static size_t stored_pools(size_t want) {
        for (int i = 0; i < 500 && sysd_count(&s, "pool.") != want; i++)
                usleep(10000);
        return sysd_count(&s, "pool.");
}

static size_t free_device_memory(const struct cuda *cu) {
        size_t free = 0, total = 0;

        gpu_check(cu->cuMemGetInfo(&free, &total), "cuMemGetInfo");
        return free;
}

/* The nth restart (1, 2), with sig; before: the regions as dump_text listed them before the first. */
static void restart(struct gpu_proc *a, const char *self, int nth, int sig, const char *before) {
        printf("---- restart with %s\n", sig == SIGTERM ? "SIGTERM" : "SIGKILL");
        say(a, "spin");
        sysd_kill(&s, sig);
        /* No allocd runs now: A's kernels go on through the pointers it has. */
        unsigned long long down = rounds(a, "rounds"), up = rounds_past(a, down);
        result(up > down, "kernels ran while no allocd ran: rounds %llu, then %llu", down, up);
        int r = sysd_spawn(&s);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1: %s", r, sysd_log(&s));
        result(in_log("restored from the fd store (") == nth, "the state was restored from the fd store");
        size_t fds = stored_pools(npools);
        result(fds == npools, "%zu pool fds in the store, one for each of the %zu pools", fds, npools);
        char *after = dump_text();
        result(!strcmp(after, before), "the regions are as they were (ids, offsets, names, holders):\n%s", after);
        free(after);
        pools_status(COMPARE);
        /* A's next call finds the connection lost, makes it again and reclaims its references. */
        say(a, "held");
        char reclaimed[96];
        snprintf(reclaimed, sizeof(reclaimed), "client pid %d uid %u reclaimed connection", (int)a->pid,
                 (unsigned)getuid());
        result(in_log(reclaimed) == nth, "allocd's log: %s (for the %s time)", reclaimed,
               nth == 1 ? "first" : "second");
        for (size_t i = 0; i < NPOOLS; i++) {
                const struct pool *p = &pools[i];
                if (!p->up)
                        continue;
                say(a, "check %s/d0 %zu", p->name, 10 + i);
                say(a, "check %s/d1 %zu", p->name, 20 + i);
                if (p->host) {
                        say(a, "check-host %s/d0 %zu", p->name, 10 + i);
                        say(a, "check-host %s/d1 %zu", p->name, 20 + i);
                }
        }
        /* A new process gets the adopted memory from the new allocd, bytes and all. */
        struct gpu_proc b = gpu_spawn(self, "B", (char *const[]){(char *)self, "worker", s.d.sock, NULL});
        for (size_t i = 0; i < NPOOLS; i++) {
                if (!pools[i].up)
                        continue;
                say(&b, "attach %s/d0", pools[i].name);
                say(&b, "check %s/d0 %zu", pools[i].name, 10 + i);
        }
        worker_end(&b);
        /* allocd learns of B's close when it next reads B's socket: its attachments go then. */
        char *now_dump = dump_text();
        for (int i = 0; i < 500 && strcmp(now_dump, before); i++) {
                usleep(10000);
                free(now_dump);
                now_dump = dump_text();
        }
        result(!strcmp(now_dump, before), "B's attachments went with it");
        free(now_dump);
        pools_status(COMPARE);
        unsigned long long last = rounds(a, "stop");
        result(last > up, "kernels ran after the restart: rounds %llu, then %llu", up, last);
}

/*
 * The gpu pool and the pinned vmm pool taken out of the file across a restart: each is restored draining (no
 * Alloc), its region keeps its bytes for its holder A (its old pointer) and for root's B, and the pool goes,
 * from the store too, with its last region.
 */
static void taken_out(const char *self) {
        size_t left = pools[2].up, out = 0;

        printf("---- the gpu and pinned vmm pools taken out of the file\n");
        sysd_start(&s, CONF);
        struct gpu_proc a = gpu_spawn(self, "A", (char *const[]){(char *)self, "worker", s.d.sock, NULL});
        for (size_t i = 0; i < 2; i++) {
                if (!pools[i].up)
                        continue;
                say(&a, "alloc %s/out %s %" PRIu64, pools[i].name, pools[i].name, pools[i].region);
                say(&a, "fill %s/out %zu", pools[i].name, 40 + i);
                out++;
        }
        sysd_kill(&s, SIGTERM);
        write_file(s.d.conf, "[pool pmem]\nkind = pinned\nbackend = memfd\nsize = 32M\nflags = portable, devicemap\n");
        int r = sysd_spawn(&s);
        cr_assert_eq(r, -1, "allocd exited with %d before READY=1: %s", r, sysd_log(&s));
        size_t fds = stored_pools(left + out);
        result(fds == left + out, "%zu pool fds in the store: the draining ones' too", fds);
        struct alloc_client *k = daemon_connect(&s.d);
        struct alloc_status *st;
        cr_assert(alloc_status(k, &st) == 0, "alloc_status: %s", alloc_last_error());
        for (size_t i = 0; i < 2; i++) {
                const char *why = NULL;
                for (size_t j = 0; j < st->npools; j++)
                        if (!strcmp(st->pools[j].name, pools[i].name))
                                why = st->pools[j].draining;
                if (pools[i].up)
                        result(why && strstr(why, "no longer configured"), "pool %s drains: %s", pools[i].name,
                               why ? why : "not listed");
        }
        alloc_status_free(st);
        alloc_disconnect(k);
        struct gpu_proc b = gpu_spawn(self, "B", (char *const[]){(char *)self, "worker", s.d.sock, NULL});
        for (size_t i = 0; i < 2; i++) {
                if (!pools[i].up)
                        continue;
                say(&a, "check %s/out %zu", pools[i].name, 40 + i);
                if (getuid() == 0) { /* a draining pool's names are root's (0600) */
                        say(&b, "attach %s/out", pools[i].name);
                        say(&b, "check %s/out %zu", pools[i].name, 40 + i);
                }
        }
        worker_end(&b);
        for (size_t i = 0; i < 2; i++)
                if (pools[i].up)
                        say(&a, "free %s/out", pools[i].name);
        fds = stored_pools(left);
        result(fds == left, "the drained pools went with their last regions, from the store too (%zu left)", fds);
        worker_end(&a);
        sysd_end(&s);
}

int main(int argc, char **argv) {
        struct rlimit rl;

        if (argc == 3 && !strcmp(argv[1], "worker"))
                return gpu_restart_worker(argv[2]);
        setvbuf(stdout, NULL, _IOLBF, 0);
        const struct cuda *cu = gpu_setup();
        gpu_print_device();
        /* Pinned memfd pools are locked: as much as this process may, for the allocd it starts. */
        if (setrlimit(RLIMIT_MEMLOCK, &(struct rlimit){RLIM_INFINITY, RLIM_INFINITY}) < 0 &&
            getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_MEMLOCK, &rl);
        }
        size_t free_before = free_device_memory(cu);
        sysd_start(&s, CONF);
        pools_status(DISCOVER);
        for (size_t i = 0; i < NPOOLS; i++)
                npools += pools[i].up;
        size_t fds = stored_pools(npools);
        result(fds == npools, "%zu pool fds in the store, one for each of the %zu pools", fds, npools);
        struct gpu_proc a = gpu_spawn(argv[0], "A", (char *const[]){argv[0], "worker", s.d.sock, NULL});
        for (size_t i = 0; i < NPOOLS; i++) {
                struct pool *p = &pools[i];
                if (!p->up)
                        continue;
                say(&a, "alloc %s/d0 %s %" PRIu64, p->name, p->name, p->region);
                say(&a, "fill %s/d0 %zu", p->name, 10 + i);
                say(&a, "alloc %s/d1 %s %" PRIu64, p->name, p->name, p->region);
                if (p->host)
                        say(&a, "fill-host %s/d1 %zu", p->name, 20 + i);
                else
                        say(&a, "fill %s/d1 %zu", p->name, 20 + i);
                say(&a, "alloc %s/busy %s %" PRIu64, p->name, p->name, p->region);
                /* Dirty memory, free again: where the ALLOC_ZERO region after the restarts is likely to go. */
                p->gone = offset(say(&a, "alloc %s/gone %s %" PRIu64, p->name, p->name, p->region));
                say(&a, "fill %s/gone 99", p->name);
                say(&a, "free %s/gone", p->name);
        }
        pools_status(RECORD);
        char *before = dump_text();
        restart(&a, argv[0], 1, SIGTERM, before);
        restart(&a, argv[0], 2, SIGKILL, before);
        free(before);
        printf("---- after the restarts\n");
        for (size_t i = 0; i < NPOOLS; i++) {
                struct pool *p = &pools[i];
                if (!p->up)
                        continue;
                uint64_t at = offset(say(&a, "alloc %s/zero %s %" PRIu64 " zero", p->name, p->name, p->region));
                printf("     %s/zero lies %s\n", p->name,
                       at == p->gone ? "where the bytes of gone were" : "elsewhere than gone: zeros there are weaker");
                say(&a, "zeros %s/zero", p->name);
                say(&a, "free %s/zero", p->name);
                say(&a, "free %s/d1", p->name);
                p->used -= p->region;
        }
        pools_status(COMPARE);
        worker_end(&a);
        sysd_end(&s);
        /* The store held the last fds of the gpu pool's memory: closed, the memory goes. */
        size_t free_after = 0;
        for (int i = 0; i < 100 && (free_after = free_device_memory(cu)) + 64 * MIB < free_before; i++)
                usleep(50000);
        result(free_after + 64 * MIB >= free_before, "device memory free again: %zu MiB before, %zu MiB after",
               free_before >> 20, free_after >> 20);
        taken_out(argv[0]);
        printf("%s: %d failure%s\n", failures ? "FAIL" : "PASS", failures, failures == 1 ? "" : "s");
        return failures ? 1 : 0;
}
#endif
