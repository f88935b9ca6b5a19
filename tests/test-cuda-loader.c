/* SPDX-License-Identifier: MIT */
/* The CUDA loader on machines without a usable driver: each way "no GPU" happens, and the words it says. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cuda-loader.h"

#define TOOLKIT_STUB "/usr/local/cuda/lib64/stubs/libcuda.so"

Test(cuda_loader, cuda_get_answers_the_same_each_time) {
        const char *why1, *why2;
        const struct cuda *a = cuda_get(&why1), *b = cuda_get(&why2);

        cr_assert_eq(a, b);
        cr_assert_eq(why1, why2, "the reason is made once and kept");
        if (!a) {
                cr_assert(why1 && *why1);
                cr_log_info("this machine: %s", why1);
        } else {
                cr_assert(!why1);
        }
#if HAVE_CUDA
        if (a) {
                cr_assert_geq(a->driver_version, 12000);
                cr_assert_geq(a->ndevices, 1);
                cr_assert(a->cuMemCreate && a->cuMemHostRegister && a->cuLaunchKernel);
        }
#else
        cr_assert(!a);
        cr_assert(strstr(why1, "without the CUDA toolkit"), "%s", why1);
#endif
}

#if HAVE_CUDA
Test(cuda_loader, no_library_is_no_gpu) {
        struct cuda cu;
        char why[512];

        cr_assert_eq(cuda_open(&cu, "libcuda-that-is-not-here.so.1", why, sizeof(why)), -ENODEV);
        cr_assert(strstr(why, "no GPU: libcuda-that-is-not-here.so.1 cannot be loaded"), "%s", why);
        cr_assert(strstr(why, "NVIDIA driver"), "says what provides it: %s", why);
}

Test(cuda_loader, a_library_without_cuGetProcAddress_v2_is_a_driver_too_old) {
        struct cuda cu;
        char why[512];

        /* libc: a real shared library that is no CUDA driver at all. */
        cr_assert_eq(cuda_open(&cu, "libc.so.6", why, sizeof(why)), -ENOSYS, "%s", why);
        cr_assert(strstr(why, "older than CUDA 12.0") && strstr(why, "upgrade"), "%s", why);
}

Test(cuda_loader, the_toolkit_stub_is_no_gpu) {
        struct cuda cu;
        char why[512];

        if (access(TOOLKIT_STUB, R_OK) < 0)
                cr_skip_test("no CUDA toolkit stub at " TOOLKIT_STUB);
        cr_assert_eq(cuda_open(&cu, TOOLKIT_STUB, why, sizeof(why)), -ENODEV);
        cr_assert(strstr(why, "no GPU") && strstr(why, "CUDA_ERROR_STUB_LIBRARY"), "%s", why);
        cr_assert(strstr(why, "install the NVIDIA driver"), "says what to do: %s", why);
}
#endif

#if HAVE_CUDA
/* A driver that is there and fails is a broken GPU (-EIO), not "no GPU": the GPU tests fail on it, not skip. */
Test(cuda_loader, a_driver_whose_cuInit_fails_is_a_broken_gpu) {
        struct cuda cu;
        char why[512];

        setenv("FAKE_CUDA_INIT", "802", 1);
        cr_assert_eq(cuda_open(&cu, FAKE_CUDA_PATH, why, sizeof(why)), -EIO, "%s", why);
        cr_expect(!strstr(why, "no GPU"), "%s", why);
        cr_expect(strstr(why, "cuInit") && strstr(why, "CUDA_ERROR_SYSTEM_NOT_READY"), "names the error: %s", why);
}

Test(cuda_loader, cuInit_saying_no_device_is_no_gpu) {
        struct cuda cu;
        char why[512];

        setenv("FAKE_CUDA_INIT", "100", 1);
        cr_assert_eq(cuda_open(&cu, FAKE_CUDA_PATH, why, sizeof(why)), -ENODEV, "%s", why);
        cr_expect(strstr(why, "no GPU") && strstr(why, "CUDA_ERROR_NO_DEVICE"), "%s", why);
}

Test(cuda_loader, a_driver_that_initialises_is_loaded) {
        struct cuda cu;
        char why[512];

        setenv("FAKE_CUDA_INIT", "0", 1);
        cr_assert_eq(cuda_open(&cu, FAKE_CUDA_PATH, why, sizeof(why)), 0, "%s", why);
        cr_expect_eq(cu.driver_version, 12080);
        cr_expect_eq(cu.ndevices, 1);
}
#endif

/* cuda_load's errno is cuda_get's answer: what a GPU test skips for (-ENODEV) and what it fails on. */
Test(cuda_loader, cuda_load_agrees_with_cuda_get) {
        const struct cuda *a, *b;
        const char *why1, *why2;
        int r = cuda_load(&a, &why1);

        b = cuda_get(&why2);
        cr_assert_eq(a, b);
        cr_assert_eq(why1, why2);
        cr_assert_eq(r == 0, a != NULL);
        cr_assert(r == 0 || r == -ENODEV || r == -ENOSYS || r == -EIO, "%d", r);
}
