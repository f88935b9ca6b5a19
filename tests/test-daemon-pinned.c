/* SPDX-License-Identifier: MIT */
/*
 * pinned and gpu pools on a machine where allocd cannot use CUDA (CI's
 * case, and made so here whatever the machine has): pinned pools with the
 * memfd backend still work as locked shared memory, pools that need the GPU
 * in allocd are left out and say why, and nothing else changes.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define TOOLKIT_STUB "/usr/local/cuda/lib64/stubs/libcuda.so"
/* What allocd's reason names: the library it tried, or that it was built without CUDA. */
#if HAVE_CUDA
#define LOADER_WORDS "libcuda.so.1"
#else
#define LOADER_WORDS "without the CUDA toolkit"
#endif

static struct daemon d;
static struct alloc_client *c;
static char libdir[] = "/tmp/allocd-nocuda-XXXXXX", ld_env[128], log_path[] = "/tmp/allocd-pinned-log-XXXXXX";

static const char config[] = "[pool pin]\nkind = pinned\nsize = 4M\nbackend = memfd\nflags = portable\n"
                             "[pool auto]\nkind = pinned\nsize = 2M\n"
                             "[pool dev]\nkind = gpu\ndevice = 0\nsize = 64M\n"
                             "[pool numa]\nkind = pinned\nbackend = vmm\nsize = 2M\n"
                             "[pool h]\nkind = host\nsize = 1M\n";

/*
 * allocd's libcuda.so.1 is the toolkit's stub where there is one (the driver
 * says CUDA_ERROR_STUB_LIBRARY), else libc (no cuGetProcAddress_v2).
 */
static void setup(void) {
        char link[128];
        Dl_info info;
        const char *target = TOOLKIT_STUB;

        cr_assert(mkdtemp(libdir));
        if (access(TOOLKIT_STUB, R_OK) < 0) {
                /* Not printf: a sanitizer's interceptor would answer for it. */
                cr_assert(dladdr((void *)&gnu_get_libc_version, &info) && info.dli_fname);
                target = info.dli_fname;
        }
        snprintf(link, sizeof(link), "%s/libcuda.so.1", libdir);
        cr_assert_eq(symlink(target, link), 0);
        snprintf(ld_env, sizeof(ld_env), "LD_LIBRARY_PATH=%s", libdir);
        close(mkstemp(log_path));
        char *env[] = {ld_env, NULL};
        cr_assert_eq(daemon_spawn(&d, config, env, log_path), -1, "allocd did not start: see %s", log_path);
        c = daemon_connect(&d);
}

static void teardown(void) {
        char link[128];

        alloc_disconnect(c);
        daemon_stop(&d);
        snprintf(link, sizeof(link), "%s/libcuda.so.1", libdir);
        unlink(link);
        rmdir(libdir);
        unlink(log_path);
}

TestSuite(daemon_pinned, .init = setup, .fini = teardown, .timeout = 60);

static const struct alloc_pool_status *find_pool(const struct alloc_status *s, const char *name) {
        for (size_t i = 0; i < s->npools; i++)
                if (!strcmp(s->pools[i].name, name))
                        return &s->pools[i];
        return NULL;
}

Test(daemon_pinned, status_reports_backends_flags_and_the_pools_left_out) {
        struct alloc_status *s;

        cr_assert_eq(alloc_status(c, &s), 0, "%s", alloc_last_error());
        const struct alloc_pool_status *pin = find_pool(s, "pin"), *au = find_pool(s, "auto");
        cr_assert(pin && au);
        cr_expect_eq(pin->kind, ALLOC_KIND_PINNED);
        cr_expect_str_eq(pin->backend, "memfd");
        cr_expect_eq(pin->register_flags, ALLOC_REGISTER_PORTABLE);
        cr_expect_eq(pin->size, 4u << 20);
        cr_expect_str_eq(au->backend, "memfd", "backend = auto without a GPU is memfd");
        cr_expect_eq(au->register_flags, ALLOC_REGISTER_PORTABLE | ALLOC_REGISTER_DEVICEMAP, "the default flags");
        cr_expect_str_eq(find_pool(s, "h")->backend, "memfd");
        cr_expect(!find_pool(s, "dev") && !find_pool(s, "numa"));
        cr_assert_eq(s->nunavailable, 2);
        for (size_t i = 0; i < 2; i++) {
                const struct alloc_unavailable_pool *u = &s->unavailable[i];
                cr_expect(!strcmp(u->name, "dev") ? u->kind == ALLOC_KIND_GPU
                                                  : !strcmp(u->name, "numa") && u->kind == ALLOC_KIND_PINNED,
                          "%s", u->name);
                cr_expect(strstr(u->reason, LOADER_WORDS), "the loader's own words: %s", u->reason);
        }
        alloc_status_free(s);
        const char *log = slurp(log_path);
        cr_expect(strstr(log, "pool dev") && strstr(log, "left out"), "allocd says so:\n%s", log);
        cr_expect(strstr(log, "pool pin: pinned, backend memfd"), "%s", log);
}

Test(daemon_pinned, allocctl_status_shows_backends_and_pools_left_out) {
        char cmd[256], out[8192];

        snprintf(cmd, sizeof(cmd), "%s --socket %s status", ALLOCCTL_PATH, d.sock);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        cr_assert_eq(pclose(p), 0, "%s", out);
        cr_expect(strstr(out, "\npin              pinned memfd "), "%s", out);
        cr_expect(strstr(out, "\ndev              gpu    not available: "), "%s", out);
        cr_expect(strstr(out, "\nnuma             pinned not available: "), "%s", out);
}

Test(daemon_pinned, a_pool_left_out_answers_with_the_reason) {
        struct alloc_region r;

        cr_assert_eq(alloc_region_new(c, "dev", 4096, NULL, &r), -ENODEV);
        cr_expect(strstr(alloc_last_error(), "pool dev (gpu) is configured but not available") &&
                          strstr(alloc_last_error(), LOADER_WORDS),
                  "%s", alloc_last_error());
        cr_assert_eq(alloc_region_new(c, "numa", 4096, NULL, &r), -ENODEV);
        cr_expect_eq(wait_used(c, "h", 0), 0);
}

Test(daemon_pinned, pinned_memfd_regions_are_locked_shared_memory) {
        struct alloc_region r;
        struct alloc_opts o = {.flags = ALLOC_ZERO, .name = "pinned/frame"};
        char path[64], line[256];

        cr_assert_eq(alloc_region_new(c, "pin", 64 << 10, &o, &r), 0, "%s", alloc_last_error());
        cr_expect_eq(r.kind, ALLOC_KIND_PINNED);
        cr_assert(r.ptr);
        cr_expect_eq(r.device, -1);
        /* This process may have a GPU even where allocd was kept from its own. */
        cr_expect_eq(r.registered, alloc_cuda_unavailable() == NULL, "%s", alloc_cuda_unavailable());
        if (!r.registered)
                cr_expect_eq(r.dev_ptr, 0);
        for (size_t i = 0; i < r.size; i++)
                cr_assert_eq(((unsigned char *)r.ptr)[i], 0, "ZERO byte %zu", i);
        strcpy(r.ptr, "from the pinned pool");

        /* Another process (fork+exec: never fork once CUDA may be loaded) maps it and reads it. */
        pid_t pid = test_fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                execl(HELPER_PATH, "helper-client", d.sock, "expect", "pinned/frame", "from the pinned pool", NULL);
                _exit(127);
        }
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other process read it (status %#x)", status);

        /* allocd holds both pinned pools locked (AddressSanitizer makes mlock a no-op: not there). */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_WORKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_WORKS 0
#endif
#endif
#ifndef MLOCK_WORKS
#define MLOCK_WORKS 1
#endif
        snprintf(path, sizeof(path), "/proc/%d/status", (int)d.pid);
        FILE *f = fopen(path, "r");
        unsigned long long lck = 0;
        cr_assert(f);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmLck: %llu kB", &lck) == 1)
                        break;
        fclose(f);
        if (MLOCK_WORKS)
                cr_expect_geq(lck, 6144ull, "VmLck %llu kB, want the 4 MiB and 2 MiB pools", lck);
        cr_assert_eq(alloc_region_free(c, r.id), 0);
        cr_expect_eq(wait_used(c, "pin", 0), 0);
}

Test(daemon_pinned, writecombined_is_refused_with_the_reason) {
        struct alloc_region r;
        struct alloc_opts o = {.flags = ALLOC_WRITECOMBINED};

        cr_assert_eq(alloc_region_new(c, "pin", 4096, &o, &r), -EINVAL);
        cr_expect(strstr(alloc_last_error(), "cannot be shared between processes") &&
                          strstr(alloc_last_error(), "cuMemHostAlloc"),
                  "%s", alloc_last_error());
        cr_expect_eq(pool_used(c, "pin"), 0, "nothing was allocated");
}

Test(daemon_pinned, sighup_tries_the_pools_left_out_again) {
        struct alloc_status *s;

        kill(d.pid, SIGHUP);
        /* A request after the signal is answered after the reload (one thread, in order)... eventually. */
        for (int i = 0; i < 200 && !strstr(slurp(log_path), "SIGHUP: reload of "); i++)
                usleep(10000);
        cr_assert(strstr(slurp(log_path), ": pool dev is not available: ") &&
                          strstr(slurp(log_path), " done: 2 pools failed (dev: "),
                  "%s", slurp(log_path));
        cr_expect(!strstr(slurp(log_path), "change only on restart"), "the same file is no change: %s",
                  slurp(log_path));
        cr_assert_eq(alloc_status(c, &s), 0);
        cr_expect_eq(s->nunavailable, 2);
        cr_expect_eq(s->npools, 3);
        alloc_status_free(s);
}

Test(daemon_pinned, a_pool_taken_out_of_the_file_is_no_longer_listed_as_unavailable) {
        struct alloc_status *s;

        write_file(d.conf, "[pool pin]\nkind = pinned\nsize = 4M\nbackend = memfd\nflags = portable\n"
                           "[pool auto]\nkind = pinned\nsize = 2M\n"
                           "[pool numa]\nkind = pinned\nbackend = vmm\nsize = 2M\n"
                           "[pool h]\nkind = host\nsize = 1M\n");
        kill(d.pid, SIGHUP);
        for (int i = 0; i < 200 && !strstr(slurp(log_path), "SIGHUP: reload of "); i++)
                usleep(10000);
        cr_assert_eq(alloc_status(c, &s), 0);
        cr_assert_eq(s->nunavailable, 1, "dev went with the file; numa stays");
        cr_expect_str_eq(s->unavailable[0].name, "numa");
        alloc_status_free(s);
        struct alloc_region r;
        cr_expect_eq(alloc_region_new(c, "dev", 4096, NULL, &r), -ENODEV);
        cr_expect(strstr(alloc_last_error(), "no pool named 'dev'"), "%s", alloc_last_error());
}

/*
 * The advice when a pinned pool cannot be locked: lock = no is refused for pinned pools, so it must not be
 * offered.  allocd runs as nobody (root's mlock ignores the limit) with 64 KiB of RLIMIT_MEMLOCK, from a copy in
 * the test's folder, since nobody may not reach the build tree (a checkout under /root).
 */
Test(pinned_lock, the_advice_is_what_a_pinned_pool_allows) {
        char dir[] = "/tmp/allocd-pinlock-XXXXXX", cmd[1536], out[4096];

        if (geteuid() != 0)
                cr_skip_test("needs root, to run allocd as nobody");
        cr_assert(mkdtemp(dir));
        cr_assert_eq(chmod(dir, 0777), 0);
        snprintf(cmd, sizeof(cmd), "%s/c.conf", dir);
        write_file(cmd, "[pool p]\nkind = pinned\nbackend = memfd\nsize = 4M\n");
        cr_assert_eq(chmod(cmd, 0644), 0);
        snprintf(cmd, sizeof(cmd),
                 "cp %s %s/allocd && chmod 755 %s/allocd && ulimit -l 64 && timeout -s INT 2 setpriv --reuid=nobody "
                 "--regid=nogroup --clear-groups %s/allocd --config %s/c.conf --socket %s/s 2>&1; rm -r %s",
                 ALLOCD_PATH, dir, dir, dir, dir, dir, dir);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        pclose(p);
        cr_expect(strstr(out, "pool p: a pinned pool needs 4M of locked memory but RLIMIT_MEMLOCK is 64K"), "%s", out);
        cr_expect(strstr(out, "or make the pool smaller") && !strstr(out, "lock = no"), "%s", out);
}
