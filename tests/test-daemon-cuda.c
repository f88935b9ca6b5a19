/* SPDX-License-Identifier: MIT */
/*
 * allocd with a libcuda.so.1 that answers as the test chooses (tests/fake-cuda.c): a driver
 * that fails at cuInit, one that appears to work but can make nothing, and a SIGHUP after the
 * driver changed its answer.  No GPU needed; without the toolkit there is nothing to fake.
 * gpu pools across a restart: test-daemon-cuda-restart.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#if HAVE_CUDA

static struct daemon d;
static struct alloc_client *c;
static char libdir[] = "/tmp/allocd-fakecuda-XXXXXX", init_file[128], log_path[] = "/tmp/allocd-fakecuda-log-XXXXXX";
static char ld_env[160], init_env[160];

static const char config[] = "[pool dev]\nkind = gpu\ndevice = 0\nsize = 64M\n"
                             "[pool quanta]\nkind = gpu\ndevice = 0\nsize = 6M\nquantum = 4M\n"
                             "[pool auto]\nkind = pinned\nsize = 2M\n"
                             "[pool h]\nkind = host\nsize = 1M\n"
                             "[pool one]\nkind = gpu\ndevice = 1\nsize = 2M\n";

/* allocd with the fake driver, whose cuInit answers what init_file says (a CUresult), and extra (or NULL) in its
 * environment. */
static const char *conf_text = config; /* what start_with starts allocd with */

static void start_with(const char *cuinit, char *extra) {
        char link[160];

        cr_assert(mkdtemp(libdir));
        snprintf(link, sizeof(link), "%s/libcuda.so.1", libdir);
        cr_assert_eq(symlink(FAKE_CUDA_PATH, link), 0);
        snprintf(init_file, sizeof(init_file), "%s/cuinit", libdir);
        write_file(init_file, cuinit);
        snprintf(ld_env, sizeof(ld_env), "LD_LIBRARY_PATH=%s", libdir);
        snprintf(init_env, sizeof(init_env), "FAKE_CUDA_INIT_FILE=%s", init_file);
        close(mkstemp(log_path));
        char *env[] = {ld_env, init_env, extra, NULL};
        cr_assert_eq(daemon_spawn(&d, conf_text, env, log_path), -1, "allocd did not start: see %s", log_path);
        c = daemon_connect(&d);
}

static void start(const char *cuinit) {
        start_with(cuinit, NULL);
}

static void teardown(void) {
        char link[160];

        alloc_disconnect(c);
        daemon_stop(&d);
        snprintf(link, sizeof(link), "%s/libcuda.so.1", libdir);
        unlink(link);
        unlink(init_file);
        rmdir(libdir);
        unlink(log_path);
}

static const char *reason(const char *pool) {
        static char buf[512];
        struct alloc_status *s;

        buf[0] = '\0';
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        for (size_t i = 0; i < s->nunavailable; i++)
                if (!strcmp(s->unavailable[i].name, pool))
                        snprintf(buf, sizeof(buf), "%s", s->unavailable[i].reason);
        alloc_status_free(s);
        return buf;
}

static void sighup_and_wait(void) {
        kill(d.pid, SIGHUP);
        for (int i = 0; i < 500 && !strstr(slurp(log_path), "SIGHUP: reload of "); i++)
                usleep(10000);
        cr_assert(strstr(slurp(log_path), "SIGHUP: reload of "), "%s", slurp(log_path));
}

TestSuite(daemon_cuda, .fini = teardown, .timeout = 60);

/* "SIGHUP tries again" is true of the driver too: a failed load is not kept for the life of allocd. */
Test(daemon_cuda, sighup_loads_the_driver_again) {
        start("802");
        cr_expect(strstr(reason("dev"), "CUDA_ERROR_SYSTEM_NOT_READY"), "%s", reason("dev"));
        write_file(init_file, "100");
        sighup_and_wait();
        cr_expect(strstr(reason("dev"), "CUDA_ERROR_NO_DEVICE"), "the reload asked the driver again: %s",
                  reason("dev"));
}

/*
 * A driver whose device says it supports host NUMA allocations but whose cuMemCreate fails (Docker
 * without SYS_NICE, a memory-less NUMA node): backend = auto tries one and falls back to memfd.
 */
Test(daemon_cuda, auto_falls_back_to_memfd_when_the_probe_fails) {
        struct alloc_status *s;
        struct alloc_region r;

        start("0");
        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        const struct alloc_pool_status *au = pool_status(s, "auto");
        cr_expect_str_eq(au->backend, "memfd");
        alloc_status_free(s);
        cr_expect(strstr(slurp(log_path), "backend = auto: memfd, since a trial allocation failed: cuMemCreate (host "
                                          "NUMA node 1): CUDA_ERROR_NOT_SUPPORTED"),
                  "the log says why: %s", slurp(log_path));
        cr_assert_eq(alloc_region_new(c, "auto", 4096, NULL, &r), 0, "%s", alloc_last_error());
        cr_assert_eq(alloc_region_free(c, r.id), 0);
}

/* A gpu pool's size is rounded up to whole quanta where the quantum is larger than the granularity (2 MiB here):
 * 6M with 4M quanta was left at 6M, and the arena then refused its last, half quantum. */
Test(daemon_cuda, a_gpu_pool_is_rounded_up_to_whole_quanta) {
        start("0");
        cr_expect(strstr(slurp(log_path), "pool quanta: size 6291456 rounded up to 8388608, a multiple of the "
                                          "allocation granularity 2097152 and of the quantum"),
                  "%s", slurp(log_path));
}

/* How many of allocd's fds, or of its mappings, are the fake driver's device memory. */
static int device_memory_held(const char *what) {
        char cmd[256];
        int n = -1;

        snprintf(cmd, sizeof(cmd), "%s /proc/%d/%s 2>/dev/null | grep -c fake-cuda-dev",
                 !strcmp(what, "fd") ? "ls -l" : "cat", (int)d.pid, what);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        cr_assert_eq(fscanf(p, "%d", &n), 1);
        pclose(p);
        return n;
}

/* The fake driver makes device memory: a gpu pool is made, and mapped by allocd to zero. */
Test(daemon_cuda, a_gpu_pool_is_made_with_the_fake_driver) {
        start("0");
        cr_expect_str_eq(reason("dev"), "", "the pool is available");
        cr_expect_eq(device_memory_held("fd"), 4, "the pools dev and quanta: the fake's handle and the export each");
        cr_expect_eq(device_memory_held("maps"), 2, "and one mapping each, to zero");
}

/*
 * A driver call that fails while a gpu pool is made leaves the pool unavailable, saying which call
 * failed, and nothing of it behind in allocd: no fd, no mapping, and the next step not taken.
 */
Test(daemon_cuda, each_failing_driver_call_leaves_nothing_behind) {
        static const char *const calls[][2] = {
                {"cuMemGetAllocationGranularity", "cuMemGetAllocationGranularity: CUDA_ERROR_UNKNOWN"},
                {"cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRetain: CUDA_ERROR_UNKNOWN"},
                {"cuMemCreate", "cuMemCreate: CUDA_ERROR_UNKNOWN"},
                {"cuMemExportToShareableHandle", "exporting and mapping the pool: CUDA_ERROR_UNKNOWN"},
                {"cuMemAddressReserve", "exporting and mapping the pool: CUDA_ERROR_UNKNOWN"},
                {"cuMemMap", "exporting and mapping the pool: CUDA_ERROR_UNKNOWN"},
                {"cuMemSetAccess", "exporting and mapping the pool: CUDA_ERROR_UNKNOWN"},
        };
        static char fail[96];

        for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
                snprintf(fail, sizeof(fail), "FAKE_CUDA_FAIL=%s", calls[i][0]);
                start_with("0", fail);
                cr_expect(strstr(reason("dev"), calls[i][1]), "%s: %s", calls[i][0], reason("dev"));
                cr_expect(strstr(slurp(log_path), calls[i][1]), "%s: the log says so: %s", calls[i][0],
                          slurp(log_path));
                cr_expect_eq(device_memory_held("fd"), 0, "%s: no device memory fd left in allocd", calls[i][0]);
                cr_expect_eq(device_memory_held("maps"), 0, "%s: no mapping left in allocd", calls[i][0]);
                teardown();
                snprintf(libdir, sizeof(libdir), "/tmp/allocd-fakecuda-XXXXXX");
                snprintf(log_path, sizeof(log_path), "/tmp/allocd-fakecuda-log-XXXXXX");
                c = NULL;
        }
        start("0"); /* for the suite's teardown */
}

/* helper-client with the fake driver (cuInit 0, and env), on allocd's socket with args; its wait status, its output in
 * out. */
static int helper(const char *env, const char *args, char *out, size_t outsize) {
        char cmd[640];

        snprintf(cmd, sizeof(cmd), "LD_LIBRARY_PATH=%s FAKE_CUDA_INIT=0 %s %s %s %s 2>&1", libdir, env, HELPER_PATH,
                 d.sock, args);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        out[fread(out, 1, outsize - 1, p)] = '\0';
        return pclose(p);
}

/*
 * A child of fork() of a process that used CUDA must not call the driver (it is not fork-safe; the fake
 * aborts): not when it lets go of its copy of the parent's connection, whose pinned pool the parent
 * registered, nor for a pinned memfd pool of its own, which it gets as plain locked shared memory.
 */
Test(daemon_cuda, a_child_of_fork_makes_no_cuda_call) {
        char out[256];

        start("0");
        int status = helper("", "fork auto", out, sizeof(out));
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, out);
        cr_expect(strstr(out, "registered 1 0"), "the parent's region registered, the child's not: %s", out);
}

/* A pinned memfd region whose registration fails in the client: the error names the driver call that failed. */
Test(daemon_cuda, a_failed_registration_names_its_call) {
        static const char *const calls[] = {"cuMemHostRegister", "cuMemHostGetDevicePointer"};
        char env[64], out[512], want[64];

        start("0");
        for (size_t i = 0; i < 2; i++) {
                snprintf(env, sizeof(env), "FAKE_CUDA_FAIL=%s", calls[i]);
                int status = helper(env, "alloc auto 4096", out, sizeof(out));
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) != 0, "%s failed: the region is refused", calls[i]);
                snprintf(want, sizeof(want), "%s: CUDA_ERROR_UNKNOWN", calls[i]);
                cr_expect(strstr(out, want), "the error names %s: %s", calls[i], out);
        }
}

/*
 * A gpu pool on device 1 (of 2), used by a client whose context is device 0's (the helper has none
 * current: the library takes none to import): it maps it for device 1, found by UUID; a client that
 * sees one device only (CUDA_VISIBLE_DEVICES) is told so.
 */
Test(daemon_cuda, a_pool_on_the_second_device) {
        static char two[] = "FAKE_CUDA_DEVICES=2";
        char out[512];

        start_with("0", two);
        cr_expect_str_eq(reason("one"), "", "the pool on device 1 is made");
        int status = helper("FAKE_CUDA_DEVICES=2", "alloc one 4096", out, sizeof(out));
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "mapped: %s", out);
        helper("FAKE_CUDA_DEVICES=1", "alloc one 4096", out, sizeof(out));
        cr_expect(strstr(out, "is not one of the 1 this process can see; check CUDA_VISIBLE_DEVICES"), "%s", out);
}

/* A gpu pool too large to round up to whole granules is refused as such, not rounded up to 0 bytes. */
Test(daemon_cuda, a_gpu_pool_too_large_to_round_up_is_refused) {
        conf_text = "[pool big]\nkind = gpu\ndevice = 0\nsize = 18446744073709547520\n"
                    "[pool h]\nkind = host\nsize = 1M\n";
        start("0");
        cr_expect(!strstr(slurp(log_path), "rounded up to 0"), "%s", slurp(log_path));
        cr_expect(strstr(reason("big"),
                         "size 18446744073709547520 cannot be rounded up to a multiple of the allocation "
                         "granularity 2097152; make the pool smaller"),
                  "%s", reason("big"));
}

/*
 * On a device in EXCLUSIVE_PROCESS mode allocd keeps no mapping of a gpu pool, and zeroes a region by
 * mapping the granules around it: the region's bytes, and not its neighbours' in the same granules.
 */
Test(daemon_cuda, an_exclusive_device_pool_zeroes_just_the_region) {
        static char exclusive[] = "FAKE_CUDA_COMPUTE_MODE=3";
        char out[256], path[64], cmd[256];
        unsigned long long offset;
        const size_t size = 3 << 20;
        int fd = -1;

        start_with("0", exclusive);
        cr_expect(strstr(slurp(log_path), "pool dev: device 0 is in EXCLUSIVE_PROCESS mode"), "%s", slurp(log_path));
        cr_expect_eq(device_memory_held("maps"), 0, "allocd maps no device memory");
        /* The dev pool's memory (64 MiB; quanta's is 8), all 0xff. */
        snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd | awk '/fake-cuda-dev/ {print $9}'", (int)d.pid);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        for (int n; fd < 0 && fscanf(p, "%d", &n) == 1;) {
                snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)d.pid, n);
                fd = open(path, O_RDWR | O_CLOEXEC);
                if (fd >= 0 && lseek(fd, 0, SEEK_END) != 64 << 20)
                        fd = (close(fd), -1);
        }
        pclose(p);
        cr_assert_geq(fd, 0, "the pool's memfd");
        static char ones[64 << 20];
        memset(ones, 0xff, sizeof(ones));
        cr_assert_eq(pwrite(fd, ones, sizeof(ones), 0), (ssize_t)sizeof(ones));

        int status = helper("FAKE_CUDA_COMPUTE_MODE=3", "alloc-zero dev 3145728", out, sizeof(out));
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0 && sscanf(out, "%llu", &offset) == 1, "%s", out);
        cr_assert_eq(pread(fd, ones, size + 2, offset - 1), (ssize_t)(size + 2));
        size_t nonzero = 0;
        for (size_t i = 1; i <= size; i++)
                nonzero += ones[i] != 0;
        cr_expect_eq(nonzero, 0, "the region at %llu is zeroed", offset);
        cr_expect(ones[0] == (char)0xff && ones[size + 1] == (char)0xff, "its neighbours are not");
        close(fd);
}

/*
 * A GPU test run with the fake driver, whose cuInit answers cuinit; its exit status (-1: killed by a signal), and its
 * output in out if not NULL.
 */
static int gpu_test_status(const char *path, const char *cuinit, char *out, size_t outsize) {
        char cmd[640], dir[] = "/tmp/allocd-fakecuda-XXXXXX";

        cr_assert(mkdtemp(dir));
        snprintf(cmd, sizeof(cmd),
                 "ln -s %s %s/libcuda.so.1 && LD_LIBRARY_PATH=%s FAKE_CUDA_INIT=%s %s >%s/out 2>&1; r=$?; "
                 "cat %s/out; rm -r %s; exit $r",
                 FAKE_CUDA_PATH, dir, dir, cuinit, path, dir, dir, dir);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        size_t n = fread(out ? out : cmd, 1, out ? outsize - 1 : sizeof(cmd) - 1, p);
        if (out)
                out[n] = '\0';
        int status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(gpu_tests, skip_only_without_a_gpu_and_fail_on_a_broken_one) {
        cr_expect_eq(gpu_test_status(GPU_KIND_PATH, "100", NULL, 0), 77, "CUDA_ERROR_NO_DEVICE: no GPU, skipped");
        cr_expect_eq(gpu_test_status(GPU_KIND_PATH, "802", NULL, 0), 1,
                     "CUDA_ERROR_SYSTEM_NOT_READY: a broken GPU, failed");
}

/* falloc-bench measures the CPU too: its GPU part is skipped without a GPU, and fails the benchmark on a broken one. */
Test(gpu_tests, falloc_bench_fails_on_a_broken_gpu) {
        char path[sizeof(FALLOC_BENCH_PATH) + 32];

        if (access(FALLOC_BENCH_PATH, X_OK) < 0)
                cr_skip_test("no %s (built with -Dbench=false)", FALLOC_BENCH_PATH);
        snprintf(path, sizeof(path), "%s --seconds 0.01", FALLOC_BENCH_PATH);
        cr_expect_eq(gpu_test_status(path, "100", NULL, 0), 0, "CUDA_ERROR_NO_DEVICE: no GPU, the GPU part skipped");
        cr_expect_eq(gpu_test_status(path, "802", NULL, 0), 1, "CUDA_ERROR_SYSTEM_NOT_READY: a broken GPU, failed");
}

static size_t scratch_folders(void) {
        FILE *p = popen("ls -d /tmp/allocd-gpu-* 2>/dev/null | wc -l", "r");
        size_t n = 0;

        cr_assert(p);
        cr_assert_eq(fscanf(p, "%zu", &n), 1);
        pclose(p);
        return n;
}

/*
 * gpu-share with a driver that initialises and can do nothing: its workers fail at once.  It must
 * get to its summary (not die of SIGPIPE writing to a dead worker) and leave no allocd and no
 * scratch folder behind.
 */
Test(gpu_tests, a_failing_gpu_test_says_so_and_cleans_up) {
        static char out[16384];
        size_t before = scratch_folders();
        int status = gpu_test_status(GPU_SHARE_PATH, "0", out, sizeof(out));

        cr_expect_eq(status, 1, "exit status %d:\n%s", status, out);
        cr_expect(strstr(out, "FAIL: "), "the summary:\n%s", out);
        cr_expect_eq(scratch_folders(), before, "no scratch folder left:\n%s", out);
}

#else
Test(daemon_cuda, built_without_the_toolkit) {
        cr_skip_test("built without the CUDA toolkit: there is no driver interface to fake");
}
#endif
