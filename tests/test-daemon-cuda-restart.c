/* SPDX-License-Identifier: MIT */
/*
 * gpu pools across a restart, with the fake driver (tests/fake-cuda.c: device memory is a memfd, mapped
 * in the host's address space, so helper-client reads and writes it through dev_ptr) and systemd's fd
 * store played by sysd.c: a stored gpu pool not configured as it was (taken out, resized, on another
 * device) is restored draining, as a memfd pool is (test-daemon-restart-store.c), and the configured one
 * waits for it.  Part of the daemon-cuda test.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "restart-checks.h"

#if HAVE_CUDA

static char libdir[] = "/tmp/allocd-fakecuda-XXXXXX";

static void fake_teardown(void) {
        char link[160];

        sysd_end(&s);
        snprintf(link, sizeof(link), "%s/libcuda.so.1", libdir);
        unlink(link);
        rmdir(libdir);
}

TestSuite(cuda_restart, .fini = fake_teardown, .timeout = 60);

/* allocd (sysd) with the fake driver and two devices, started with config. */
static void fake_start(const char *config) {
        char link[160];

        cr_assert(mkdtemp(libdir));
        snprintf(link, sizeof(link), "%s/libcuda.so.1", libdir);
        cr_assert_eq(symlink(FAKE_CUDA_PATH, link), 0);
        /* allocd and helper-client inherit them (the test's own dynamic loader read LD_LIBRARY_PATH at its start). */
        setenv("LD_LIBRARY_PATH", libdir, 1);
        setenv("FAKE_CUDA_INIT", "0", 1);
        setenv("FAKE_CUDA_DEVICES", "2", 1);
        sysd_start(&s, config);
}

/* helper-client (with the fake driver) on allocd's socket with args: its exit status; its output in out. */
static int helper(const char *args, char *out, size_t outsize) {
        char cmd[512];

        snprintf(cmd, sizeof(cmd), "%s %s %s 2>&1", HELPER_PATH, s.d.sock, args);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        out[fread(out, 1, outsize - 1, p)] = '\0';
        int status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define GPU_POOL "[pool g]\nkind = gpu\ndevice = 1\nsize = 4M\n"
#define HOST_POOL "[pool h]\nkind = host\nsize = 1M\n"

/*
 * Pool g, a gpu pool of 4M on device 1 (of 2), with a PERSIST region "kept" holding text; allocd stopped with
 * sig and started with conf.  Returns a new connection, once g is listed draining for why, with "kept" attachable
 * and its bytes as written (through the memory of the old allocd: the fd store kept it).
 */
static struct alloc_client *drains_after_restart(int sig, const char *conf, const char *why) {
        struct alloc_status *st;
        char out[512];

        fake_start(GPU_POOL HOST_POOL);
        cr_assert_eq(helper("dev-persist g kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        cr_assert_eq(stored("pool.gpu.4194304.g", 1), 1, "%s", sysd_log(&s));
        /* The helper's hang-up read (and kept) first: a kill before would restore its connection, absent, and its
         * reference to "kept" with it, until allocd saw the helper's process end. */
        struct alloc_client *c = daemon_connect(&s.d);
        size_t clients = 0;
        for (int i = 0; i < 500 && clients != 1; i++) {
                usleep(i ? 10000 : 0);
                cr_assert_eq(alloc_status(c, &st), 0, "%s", alloc_last_error());
                clients = st->nclients;
                alloc_status_free(st);
        }
        cr_assert_eq(clients, 1, "the helper's connection is still there");
        alloc_disconnect(c);
        sysd_kill(&s, sig);
        write_file(s.d.conf, conf);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert_eq(alloc_status(k, &st), 0, "%s", alloc_last_error());
        const struct alloc_pool_status *g = pool_status(st, "g");
        cr_assert(g, "pool g is not listed: %s", sysd_log(&s));
        cr_assert(strstr(g->draining, why), "draining: '%s': %s", g->draining, sysd_log(&s));
        cr_assert_eq(g->regions, 1);
        cr_assert_eq(g->device, 1, "restored on the device its memory is on");
        cr_assert_eq(g->size, 4u << 20);
        alloc_status_free(st);
        cr_assert_eq(helper("dev-expect kept gpu-bytes-kept", out, sizeof(out)), 0, "%s: %s", out, sysd_log(&s));
        cr_assert_eq(helper("alloc g 4096", out, sizeof(out)) != 0, 1, "a draining pool takes no new region");
        return k;
}

/* Pool name as status lists it once want says so (draining: still listed as such), or after 5 s. */
static bool listed(struct alloc_client *k, const char *name, uint64_t size, int device) {
        struct alloc_status *st;
        bool ok = false;

        for (int i = 0; i < 500 && !ok; i++) {
                usleep(i ? 10000 : 0);
                cr_assert_eq(alloc_status(k, &st), 0);
                const struct alloc_pool_status *p = NULL;
                for (size_t j = 0; j < st->npools; j++)
                        if (!strcmp(st->pools[j].name, name))
                                p = &st->pools[j];
                ok = size ? p && p->size == size && p->device == device && !p->draining[0] : !p;
                alloc_status_free(st);
        }
        return ok;
}

/* Taken out of the file: drains, and goes with its last region, from the store too. */
static void removed_pool_drains(int sig) {
        char out[512];
        struct alloc_client *k = drains_after_restart(sig, HOST_POOL, "no longer configured");

        cr_assert(strstr(sysd_log(&s), "ready: 1 pool, 0 not available, 1 draining"), "%s", sysd_log(&s));
        cr_assert_eq(helper("dev-expect-free kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        cr_assert(listed(k, "g", 0, 0), "the drained pool is still listed: %s", sysd_log(&s));
        cr_assert_eq(stored("pool.gpu.", 0), 0, "%s", sysd_log(&s));
        alloc_disconnect(k);
}

Test(cuda_restart, a_removed_gpu_pool_drains) {
        removed_pool_drains(SIGTERM);
}

Test(cuda_restart, a_removed_gpu_pool_drains_after_a_crash) {
        removed_pool_drains(SIGKILL);
}

/* Resized: the configured pool waits for the old one to drain, then is made (and stored) as configured. */
Test(cuda_restart, a_resized_gpu_pool_waits_for_the_old_one) {
        char out[512];
        struct alloc_client *k =
                drains_after_restart(SIGKILL, "[pool g]\nkind = gpu\ndevice = 1\nsize = 8M\n" HOST_POOL,
                                     "another kind, size, quantum or hugepages");

        cr_assert(strstr(sysd_log(&s), "1 pool waiting for a draining namesake (g)"), "%s", sysd_log(&s));
        cr_assert_eq(helper("dev-expect-free kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        cr_assert(listed(k, "g", 8u << 20, 1), "the configured pool was not made once the old one drained: %s",
                  sysd_log(&s));
        cr_assert_eq(helper("alloc g 4096", out, sizeof(out)), 0, "%s", out);
        cr_assert_eq(stored("pool.gpu.8388608.g", 1), 1, "%s", sysd_log(&s));
        cr_assert_eq(stored("pool.gpu.4194304.g", 0), 0, "%s", sysd_log(&s));
        alloc_disconnect(k);
}

/*
 * A larger quantum cannot take the old one's regions: the old pool drains.  It was adopted, and the state's record
 * of its regions, of the smaller quantum, then refused the whole state as damage (every pool's regions lost).
 */
Test(cuda_restart, a_gpu_pool_given_a_larger_quantum_waits_for_the_old_one) {
        char out[512];
        struct alloc_client *k =
                drains_after_restart(SIGKILL, "[pool g]\nkind = gpu\ndevice = 1\nsize = 4M\nquantum = 2M\n" HOST_POOL,
                                     "another kind, size, quantum or hugepages");

        cr_assert_null(strstr(sysd_log(&s), "cannot be restored"), "%s", sysd_log(&s));
        cr_assert_eq(helper("dev-expect-free kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        cr_assert(listed(k, "g", 4u << 20, 1), "the configured pool was not made once the old one drained: %s",
                  sysd_log(&s));
        cr_assert_eq(stored("pool.gpu.4194304q2097152.g", 1), 1, "%s", sysd_log(&s));
        alloc_disconnect(k);
}

/*
 * A gpu pool's stored fd holds memory of the device it was made on.  Configured on another device now
 * (or with the devices renumbered: CUDA_VISIBLE_DEVICES), allocd must not adopt it as that device's
 * memory, which it would report (and clients would map) as on the wrong device: it drains where it is,
 * and the configured one is made on its device once it is empty.
 */
Test(cuda_restart, a_gpu_pool_moved_to_another_device_waits_for_the_old_one) {
        char out[512];
        struct alloc_client *k = drains_after_restart(
                SIGTERM, "[pool g]\nkind = gpu\ndevice = 0\nsize = 4M\n" HOST_POOL, "configured on another device now");

        cr_assert(strstr(sysd_log(&s), "pool g: the fd stored for it holds memory of device 1, not of device 0 as "
                                       "configured; it is not used; it is restored draining where it is"),
                  "%s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), ", 0 not available, 1 draining"), "%s", sysd_log(&s));
        cr_assert_eq(helper("dev-expect-free kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        cr_assert(listed(k, "g", 4u << 20, 0), "the configured pool was not made on device 0: %s", sysd_log(&s));
        cr_assert_eq(helper("alloc g 4096", out, sizeof(out)), 0, "%s", out);
        cr_assert_eq(stored("pool.gpu.4194304.g", 1), 1, "%s", sysd_log(&s));
        alloc_disconnect(k);
}

/*
 * A stored gpu pool that cannot be restored draining (the driver refuses its fd now) loses its regions, and the
 * resized pool that would have waited for it is made at once, not left waiting for a pool that is not there.
 */
Test(cuda_restart, a_pool_waiting_for_one_that_cannot_drain_is_made_at_once) {
        char out[512];

        fake_start(GPU_POOL HOST_POOL);
        cr_assert_eq(helper("dev-persist g kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        sysd_kill(&s, SIGTERM);
        write_file(s.d.conf, "[pool g]\nkind = gpu\ndevice = 1\nsize = 8M\n" HOST_POOL);
        setenv("FAKE_CUDA_FAIL", "cuMemImportFromShareableHandle", 1);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        unsetenv("FAKE_CUDA_FAIL"); /* allocd's; not the helper's */
        cr_assert(strstr(sysd_log(&s), "the stored pool g (gpu, 4194304 bytes) cannot be restored"), "%s",
                  sysd_log(&s));
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert(listed(k, "g", 8u << 20, 1), "the configured pool is not made: %s", sysd_log(&s));
        cr_assert_eq(helper("alloc g 4096", out, sizeof(out)), 0, "%s", out);
        alloc_disconnect(k);
}

/* On the same device, as it was: adopted, not drained, its region as it was. */
Test(cuda_restart, a_stored_gpu_pool_is_adopted_as_it_was) {
        char out[512];

        fake_start(GPU_POOL HOST_POOL);
        cr_assert_eq(helper("dev-persist g kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        sysd_restart(&s, SIGTERM);
        cr_assert(strstr(sysd_log(&s), "pool g: gpu, 4194304 bytes, from the fd store"), "%s", sysd_log(&s));
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert(listed(k, "g", 4u << 20, 1), "%s", sysd_log(&s));
        cr_assert_eq(helper("dev-expect kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        cr_assert_eq(helper("alloc g 4096", out, sizeof(out)), 0, "%s", out);
        alloc_disconnect(k);
}

/*
 * A stored gpu pool nobody configures that cannot be restored draining (the driver refuses its fd now) loses its
 * regions and is gone: not listed as a pool "not available" that no section asks for.
 */
Test(cuda_restart, a_removed_gpu_pool_that_cannot_drain_is_not_listed) {
        char out[512];

        fake_start(GPU_POOL HOST_POOL);
        cr_assert_eq(helper("dev-persist g kept gpu-bytes-kept", out, sizeof(out)), 0, "%s", out);
        sysd_kill(&s, SIGTERM);
        write_file(s.d.conf, HOST_POOL);
        setenv("FAKE_CUDA_FAIL", "cuMemImportFromShareableHandle", 1);
        cr_assert_eq(sysd_spawn(&s), -1, "%s", sysd_log(&s));
        unsetenv("FAKE_CUDA_FAIL");
        cr_assert(strstr(sysd_log(&s), "the stored pool g (gpu, 4194304 bytes) cannot be restored"), "%s",
                  sysd_log(&s));
        struct alloc_client *k = daemon_connect(&s.d);
        cr_assert(listed(k, "g", 0, 0), "pool g is listed: %s", sysd_log(&s));
        cr_assert(strstr(sysd_log(&s), "ready: 1 pool, 0 not available"), "%s", sysd_log(&s));
        cr_assert_eq(stored("pool.gpu.", 0), 0, "%s", sysd_log(&s));
        alloc_disconnect(k);
}

#endif
