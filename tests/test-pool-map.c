/* SPDX-License-Identifier: MIT */
/*
 * liballoc-client's table of mapped pools (client/pool-map.c), linked from
 * the static library since none of it is exported:
 *
 *   pool_table  the table alone, fed replies made here with memfds: find by
 *               pointer against a brute-force scan, every failed mapping
 *               leaves nothing behind, a host-only process never loads CUDA;
 *   pool_map    a real allocd: every byte of real regions is found in its
 *               pool at its offset.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-internal.h"
#include "harness.h"

#define TOOLKIT_STUB "/usr/local/cuda/lib64/stubs/libcuda.so"
#define PAGE 4096u

/* A Region reply that brings the fd of pool name, as allocd sends the first region of a pool. */
struct fake_reply {
        Allocd__Reply reply;
        Allocd__Region region;
};

static const Allocd__Reply *fake_reply(struct fake_reply *f, const char *name, Allocd__PoolKind kind, uint64_t size) {
        f->reply = (Allocd__Reply)ALLOCD__REPLY__INIT;
        f->region = (Allocd__Region)ALLOCD__REGION__INIT;
        f->region.pool = (char *)name;
        f->region.has_kind = true;
        f->region.kind = kind;
        f->region.has_pool_size = true;
        f->region.pool_size = size;
        f->region.has_pool_fd = true;
        f->region.pool_fd = true;
        f->reply.body_case = ALLOCD__REPLY__BODY_REGION;
        f->reply.region = &f->region;
        return &f->reply;
}

/* Sealed against resizing, as allocd's are: the client maps no other. */
static int memfd(const char *name, uint64_t size) {
        int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

        cr_assert_geq(fd, 0);
        cr_assert_eq(ftruncate(fd, (off_t)size), 0);
        cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        return fd;
}

/* Maps a host pool of size bytes into t as the reading thread would; returns where it lies. */
static char *map_host(struct pool_table *t, const char *name, uint64_t size) {
        struct fake_reply f;
        struct alloc_region where = {0};
        Allocd__Region whole = ALLOCD__REGION__INIT;
        char err[256];
        int fd = memfd(name, size);

        cr_assert_eq(pool_table_map(t, fake_reply(&f, name, ALLOCD__POOL_KIND__HOST, size), fd, err, sizeof(err)), 0,
                     "%s", err);
        close(fd);
        whole.pool = (char *)name;
        whole.size = size;
        cr_assert_eq(pool_table_locate(t, &whole, &where), 0);
        cr_assert_not_null(where.ptr);
        return where.ptr;
}

/* How many of this process's mappings are of the memfd named name. */
static int mappings_of(const char *name) {
        char line[512], want[128];
        FILE *f = fopen("/proc/self/maps", "re");
        int n = 0;

        cr_assert_not_null(f);
        snprintf(want, sizeof(want), "/memfd:%s ", name);
        while (fgets(line, sizeof(line), f))
                n += strstr(line, want) != NULL;
        fclose(f);
        return n;
}

TestSuite(pool_table, .timeout = 60);

Test(pool_table, find_by_pointer_agrees_with_a_scan) {
        enum { N = 48 };
        struct pool_table *t = pool_table_new();
        char *base[N], name[N][16];
        uint64_t size[N];
        void *hole[N] = {0};
        uintptr_t lo = UINTPTR_MAX, hi = 0;

        cr_assert_not_null(t);
        for (int i = 0; i < N; i++) {
                snprintf(name[i], sizeof(name[i]), "p%d", i);
                size[i] = (uint64_t)(1 + i % 5) * PAGE + (i % 7 == 0 ? 1 : 0); /* not always whole pages */
                base[i] = map_host(t, name[i], size[i]);
                /* Unmapped gaps between some pools, and adjacent pools elsewhere. */
                if (i % 3 == 0)
                        cr_assert_neq(hole[i] = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                                      MAP_FAILED);
                lo = (uintptr_t)base[i] < lo ? (uintptr_t)base[i] : lo;
                hi = (uintptr_t)base[i] + size[i] > hi ? (uintptr_t)base[i] + size[i] : hi;
        }
        /* Each pool's first and last byte, and the bytes just outside it. */
        for (int i = 0; i < N; i++) {
                const struct pool_map *m;
                uint64_t off;
                cr_assert_eq(pool_table_find(t, base[i], &m, &off), 0);
                cr_assert_str_eq(m->name, name[i]);
                cr_assert_eq(off, 0);
                cr_assert_eq(m->base, base[i]);
                cr_assert_eq(m->size, size[i]);
                cr_assert_eq(m->kind, ALLOC_KIND_HOST);
                cr_assert_eq(pool_table_find(t, base[i] + size[i] - 1, &m, &off), 0);
                cr_assert_str_eq(m->name, name[i]);
                cr_assert_eq(off, size[i] - 1);
                if (pool_table_find(t, base[i] + size[i], &m, &off) == 0)
                        cr_assert_str_neq(m->name, name[i]);
                if (pool_table_find(t, base[i] - 1, &m, &off) == 0)
                        cr_assert_str_neq(m->name, name[i]);
        }
        /* Random pointers in and around the pools, against a scan of every pool. */
        srand(1);
        for (int k = 0; k < 100000; k++) {
                uint64_t bits = (uint64_t)rand() << 31 | (uint64_t)rand();
                uintptr_t p = lo - 2 * PAGE + (uintptr_t)(bits % (hi - lo + 4 * PAGE));
                int want = -1;
                for (int i = 0; i < N; i++)
                        if (p >= (uintptr_t)base[i] && p - (uintptr_t)base[i] < size[i])
                                want = i;
                const struct pool_map *m = NULL;
                uint64_t off = UINT64_MAX;
                int r = pool_table_find(t, (void *)p, &m, &off);
                if (want < 0) {
                        cr_assert_eq(r, -ENOENT, "%#lx is in no pool, found in %s", (unsigned long)p,
                                     m ? m->name : "?");
                } else {
                        cr_assert_eq(r, 0, "%#lx is in %s", (unsigned long)p, name[want]);
                        cr_assert_str_eq(m->name, name[want]);
                        cr_assert_eq(off, p - (uintptr_t)base[want]);
                }
        }
        cr_assert_eq(pool_table_find(t, NULL, NULL, NULL), -ENOENT);
        cr_assert_eq(pool_table_find(t, (void *)UINTPTR_MAX, NULL, NULL), -ENOENT);
        cr_assert_null(pool_table_free(t));
        for (int i = 0; i < N; i++) {
                cr_assert_eq(mappings_of(name[i]), 0, "freeing the table unmaps %s", name[i]);
                if (hole[i])
                        munmap(hole[i], PAGE);
        }
}

Test(pool_table, empty_table_finds_nothing) {
        struct pool_table *t = pool_table_new();
        int x = 0;

        cr_assert_eq(pool_table_find(t, &x, NULL, NULL), -ENOENT);
        cr_assert_null(pool_table_free(t));
        cr_assert_null(pool_table_free(NULL));
        cr_assert_eq(pool_map_find(NULL, &x, NULL, NULL), -EINVAL);
}

/*
 * A second fd for a pool mapped already: allocd made the pool anew (it drained away and its section
 * came back) and sends the new memory, which is mapped in its place; the old mapping stays, for
 * pointers into it, but is no longer found.  The same memory sent again is the mapping there is.
 */
Test(pool_table, a_second_fd_of_a_pool_maps_the_new_memory) {
        struct pool_table *t = pool_table_new();
        struct fake_reply f;
        struct alloc_region where = {0};
        Allocd__Region whole = ALLOCD__REGION__INIT;
        char err[256];
        char *first = map_host(t, "pm-dup", PAGE);
        int fd = memfd("pm-dup-again", 2 * PAGE);
        const struct pool_map *m;

        cr_assert_eq(
                pool_table_map(t, fake_reply(&f, "pm-dup", ALLOCD__POOL_KIND__HOST, 2 * PAGE), fd, err, sizeof(err)), 0,
                "%s", err);
        cr_assert_eq(mappings_of("pm-dup-again"), 1, "the new memory is not mapped");
        cr_assert_eq(mappings_of("pm-dup"), 1, "the old mapping went: pointers into it would fault");
        first[0] = 1; /* still there */
        cr_assert_eq(pool_table_find(t, first, &m, NULL), -ENOENT, "the old mapping is still found");
        whole.pool = "pm-dup";
        whole.size = 2 * PAGE;
        cr_assert_eq(pool_table_locate(t, &whole, &where), 0, "a region of the new pool is not located");
        cr_assert_eq(pool_table_find(t, where.cptr, &m, NULL), 0);
        cr_assert_eq(m->size, 2 * PAGE);
        /* The same memory again: nothing new is mapped. */
        cr_assert_eq(
                pool_table_map(t, fake_reply(&f, "pm-dup", ALLOCD__POOL_KIND__HOST, 2 * PAGE), fd, err, sizeof(err)), 0,
                "%s", err);
        cr_assert_eq(mappings_of("pm-dup-again"), 1, "the same memory was mapped twice");
        close(fd);
        pool_table_free(t);
}

Test(pool_table, failed_mappings_leave_nothing) {
        struct pool_table *t = pool_table_new();
        struct fake_reply f;
        const Allocd__Reply *reply;
        char err[256];
        int fd = memfd("pm-fail", PAGE), sv[2];

        /* Replies that cannot bring a pool fd. */
        reply = fake_reply(&f, "pm-fail", ALLOCD__POOL_KIND__HOST, 0);
        cr_assert_eq(pool_table_map(t, reply, fd, err, sizeof(err)), -EPROTO);
        reply = fake_reply(&f, "pm-fail", ALLOCD__POOL_KIND__HOST, PAGE);
        f.region.pool_fd = false;
        cr_assert_eq(pool_table_map(t, reply, fd, err, sizeof(err)), -EPROTO);
        reply = fake_reply(&f, NULL, ALLOCD__POOL_KIND__HOST, PAGE);
        cr_assert_eq(pool_table_map(t, reply, fd, err, sizeof(err)), -EPROTO);
        reply = fake_reply(&f, "pm-fail", ALLOCD__POOL_KIND__HOST, PAGE);
        f.reply.body_case = ALLOCD__REPLY__BODY_HELLO;
        cr_assert_eq(pool_table_map(t, reply, fd, err, sizeof(err)), -EPROTO);
        /* A gpu pool must name its device. */
        reply = fake_reply(&f, "pm-fail", ALLOCD__POOL_KIND__GPU, PAGE);
        f.region.has_backing = true;
        f.region.backing = ALLOCD__BACKING__CUDA_VMM;
        cr_assert_eq(pool_table_map(t, reply, fd, err, sizeof(err)), -EPROTO);
        /* An fd that is no memory holds none of the pool: refused before mmap, with its size. */
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        reply = fake_reply(&f, "pm-fail", ALLOCD__POOL_KIND__HOST, PAGE);
        cr_assert_eq(pool_table_map(t, reply, sv[0], err, sizeof(err)), -EPROTO);
        cr_assert_str_eq(err, "allocd sent an fd of 0 bytes for 4096 bytes");
        close(sv[0]);
        close(sv[1]);
        /*
         * CUDA memory that cannot be imported: without a GPU CUDA cannot be
         * used here (-ENODEV), with one a memfd is no CUDA handle (-EIO).
         * Either way nothing of it stays mapped, and nothing leaks (ASan).
         */
        reply = fake_reply(&f, "pm-fail", ALLOCD__POOL_KIND__PINNED, PAGE);
        f.region.has_backing = true;
        f.region.backing = ALLOCD__BACKING__CUDA_VMM;
        int r = pool_table_map(t, reply, fd, err, sizeof(err));
        cr_assert(r == -ENODEV || r == -EIO, "%d: %s", r, err);
        cr_assert_eq(mappings_of("pm-fail"), 0);
        /* The table is still empty and usable: the same pool maps now. */
        reply = fake_reply(&f, "pm-fail", ALLOCD__POOL_KIND__HOST, PAGE);
        cr_assert_eq(pool_table_map(t, reply, fd, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(mappings_of("pm-fail"), 1);
        close(fd);
        pool_table_free(t);
        cr_assert_eq(mappings_of("pm-fail"), 0);
}

/*
 * Run in a process started with a libcuda.so.1 that loads (the toolkit's
 * stub): mapping and unmapping a host pool must not load it, which
 * alloc_cuda_unavailable() then does, to show the check can see a load.
 */
static void host_pool_child(void) {
        struct pool_table *t = pool_table_new();

        map_host(t, "pm-host-only", PAGE);
        pool_table_free(t);
        cr_assert_null(dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD), "a host pool loaded the CUDA driver");
        cr_assert_not_null(alloc_cuda_unavailable(), "the stub is no driver");
        cr_assert_not_null(dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD), "the check cannot see a load");
}

Test(pool_table, host_pool_leaves_cuda_alone) {
        char dir[] = "/tmp/pool-map-cuda-XXXXXX", link[128];
        int status;
        pid_t pid;

        if (getenv("POOL_MAP_CHILD")) {
                host_pool_child();
                return;
        }
        if (access(TOOLKIT_STUB, R_OK) < 0)
                cr_skip_test("no CUDA toolkit stub (%s) to stand for the driver", TOOLKIT_STUB);
        cr_assert_not_null(mkdtemp(dir));
        snprintf(link, sizeof(link), "%s/libcuda.so.1", dir);
        cr_assert_eq(symlink(TOOLKIT_STUB, link), 0);
        /* The loader reads LD_LIBRARY_PATH when a process starts: this test again, in a new one. */
        pid = test_fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                char *argv[] = {"test-pool-map", "--filter", "pool_table/host_pool_leaves_cuda_alone", NULL};
                /* Without BXFI_MAP, criterion's note to its own sandboxed workers: the new process is no worker. */
                if (unsetenv("BXFI_MAP") == 0 && setenv("LD_LIBRARY_PATH", dir, 1) == 0 &&
                    setenv("POOL_MAP_CHILD", "1", 1) == 0)
                        execv("/proc/self/exe", argv);
                _exit(127);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        unlink(link);
        rmdir(dir);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %#x): see above", status);
}

static const char *conf = "[pool a]\n"
                          "kind = host\n"
                          "size = 1M\n"
                          "[pool b]\n"
                          "kind = host\n"
                          "size = 3M\n"
                          "[pool f]\n"
                          "kind = fpga\n"
                          "ranges = 0x100000000+1G\n"
                          "quantum = 4K\n";

static struct daemon d;
static struct alloc_client *c;

static void setup(void) {
        daemon_start(&d, conf);
        c = daemon_connect(&d);
}

static void teardown(void) {
        alloc_disconnect(c);
        daemon_stop(&d);
}

TestSuite(pool_map, .init = setup, .fini = teardown, .timeout = 60);

Test(pool_map, finds_every_region_in_its_pool) {
        static const char *pools[] = {"a", "b", "a", "b", "b", "a"};
        struct alloc_region r[6];
        const struct pool_map *m;
        uint64_t off;
        int x = 0;

        cr_assert_eq(pool_map_find(c, &x, &m, &off), -ENOENT, "nothing is mapped before the first region");
        for (int i = 0; i < 6; i++)
                cr_assert_eq(alloc_region_new(c, pools[i], 8192 * (i + 1), NULL, &r[i]), 0, "%s", alloc_last_error());
        for (int i = 0; i < 6; i++) {
                for (uint64_t k = 0; k < r[i].size; k += 4095) {
                        cr_assert_eq(pool_map_find(c, (char *)r[i].ptr + k, &m, &off), 0);
                        cr_assert_str_eq(m->name, pools[i]);
                        cr_assert_eq(off, r[i].addr + k);
                        cr_assert_eq((char *)m->base + off, (char *)r[i].ptr + k);
                }
                cr_assert_eq(pool_map_find(c, (char *)r[i].ptr + r[i].size - 1, &m, &off), 0);
                cr_assert_eq(off, r[i].addr + r[i].size - 1);
        }
        /* The whole pool is mapped, not only its regions; and nothing past it. */
        cr_assert_eq(pool_map_find(c, r[1].ptr, &m, NULL), 0);
        cr_assert_eq(m->size, 3 << 20);
        cr_assert_eq(pool_map_find(c, (char *)m->base + m->size - 1, NULL, &off), 0);
        cr_assert_eq(off, m->size - 1);
        const struct pool_map *b = m;
        if (pool_map_find(c, (char *)b->base + b->size, &m, NULL) == 0)
                cr_assert_neq(m, b);
        cr_assert_eq(pool_map_find(c, &x, &m, &off), -ENOENT, "the stack is in no pool");
        /* A freed region's pool stays mapped until disconnect. */
        for (int i = 0; i < 6; i++)
                cr_assert_eq(alloc_region_free(c, r[i].id), 0);
        cr_assert_eq(pool_map_find(c, r[0].ptr, &m, &off), 0);
        cr_assert_eq(off, r[0].addr);
}

Test(pool_map, fpga_regions_map_nothing) {
        struct alloc_region r;
        int x = 0;

        cr_assert_eq(alloc_region_new(c, "f", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_null(r.ptr);
        cr_assert_eq(pool_map_find(c, (void *)(uintptr_t)r.addr, NULL, NULL), -ENOENT);
        cr_assert_eq(pool_map_find(c, &x, NULL, NULL), -ENOENT);
}
