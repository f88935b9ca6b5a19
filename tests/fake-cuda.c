/* SPDX-License-Identifier: MIT */
/*
 * A libcuda.so.1 that is no GPU, for the tests that need the driver to answer a chosen way
 * (linked as libcuda.so.1 in a temporary directory on LD_LIBRARY_PATH).  cuInit answers the
 * number in the file FAKE_CUDA_INIT_FILE names (read at each call, so a test can change its mind
 * between allocd's start and a SIGHUP), else FAKE_CUDA_INIT, else 0.  After a successful cuInit
 * the driver says 12.8 and one device with every attribute 1 (host NUMA allocations and all), whose
 * primary context can be retained and pushed, and host memory registered (its device address is the host's);
 * every other call (cuMemCreate first) answers CUDA_ERROR_NOT_SUPPORTED, so that nothing can be made with it.
 *
 * The real driver is not fork-safe: in a child of fork() of a process that initialised it, what any call does is
 * undefined (it may fail, hang or crash).  Here every call there aborts, so that a test sees the call.
 */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static int chosen(const char *file_var, const char *var) {
        const char *path = getenv(file_var), *v = getenv(var);
        FILE *f = path ? fopen(path, "re") : NULL;
        int n = 0;

        if (f) {
                if (fscanf(f, "%d", &n) != 1)
                        n = 0;
                fclose(f);
                return n;
        }
        return v ? atoi(v) : 0;
}

static pid_t init_pid;

/* Aborts in a child of fork() of the process whose cuInit succeeded. */
static void not_forked(const char *call) {
        if (init_pid && getpid() != init_pid) {
                fprintf(stderr, "fake libcuda: %s called in a child of fork() of process %d, which initialised CUDA\n",
                        call, (int)init_pid);
                abort();
        }
}

static CUresult fake_init(unsigned flags) {
        CUresult r = (CUresult)chosen("FAKE_CUDA_INIT_FILE", "FAKE_CUDA_INIT");

        (void)flags;
        not_forked("cuInit");
        if (r == CUDA_SUCCESS && !init_pid)
                init_pid = getpid();
        return r;
}

static CUresult error_name(CUresult r, const char **s) {
        switch (r) {
        case CUDA_SUCCESS:
                *s = "CUDA_SUCCESS";
                break;
        case CUDA_ERROR_NO_DEVICE:
                *s = "CUDA_ERROR_NO_DEVICE";
                break;
        case CUDA_ERROR_NOT_SUPPORTED:
                *s = "CUDA_ERROR_NOT_SUPPORTED";
                break;
        case CUDA_ERROR_SYSTEM_NOT_READY:
                *s = "CUDA_ERROR_SYSTEM_NOT_READY";
                break;
        default:
                *s = "CUDA_ERROR_UNKNOWN";
        }
        return CUDA_SUCCESS;
}

static CUresult error_string(CUresult r, const char **s) {
        (void)r;
        *s = "the fake driver's error";
        return CUDA_SUCCESS;
}

static CUresult driver_version(int *v) {
        *v = 12080;
        return CUDA_SUCCESS;
}

static CUresult device_count(int *n) {
        not_forked("cuDeviceGetCount");
        *n = 1;
        return CUDA_SUCCESS;
}

static CUresult device_get(CUdevice *d, int ordinal) {
        not_forked("cuDeviceGet");
        *d = ordinal;
        return ordinal == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

static CUresult device_attribute(int *v, CUdevice_attribute a, CUdevice d) {
        (void)a, (void)d;
        *v = 1;
        return CUDA_SUCCESS;
}

static CUresult ctx_retain(CUcontext *ctx, CUdevice d) {
        static int primary;
        (void)d;
        not_forked("cuDevicePrimaryCtxRetain");
        *ctx = (CUcontext)&primary;
        return CUDA_SUCCESS;
}

/* Release, push, pop, unregister: nothing to keep. */
static CUresult ok(void) {
        not_forked("a context or registration call");
        return CUDA_SUCCESS;
}

/* No context is current: the caller's library pushes its own. */
static CUresult ctx_current(CUcontext *ctx) {
        not_forked("cuCtxGetCurrent");
        *ctx = NULL;
        return CUDA_SUCCESS;
}

static CUresult host_register(void *p, size_t size, unsigned flags) {
        (void)p, (void)size, (void)flags;
        not_forked("cuMemHostRegister");
        return CUDA_SUCCESS;
}

static CUresult host_device_pointer(CUdeviceptr *d, void *p, unsigned flags) {
        (void)flags;
        not_forked("cuMemHostGetDevicePointer");
        *d = (CUdeviceptr)(uintptr_t)p;
        return CUDA_SUCCESS;
}

static CUresult granularity(size_t *g, const CUmemAllocationProp *prop, CUmemAllocationGranularity_flags f) {
        (void)prop, (void)f;
        *g = 2 << 20;
        return CUDA_SUCCESS;
}

/* Called through pointers of every other type: the caller's arguments are ignored, as the ABI allows. */
static CUresult not_supported(void) {
        not_forked("a CUDA call");
        return CUDA_ERROR_NOT_SUPPORTED;
}

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, cuuint64_t flags,
                                    CUdriverProcAddressQueryResult *status) {
        static const struct {
                const char *name;
                void *fn;
        } table[] = {
                {"cuInit", (void *)fake_init},
                {"cuGetErrorName", (void *)error_name},
                {"cuGetErrorString", (void *)error_string},
                {"cuDriverGetVersion", (void *)driver_version},
                {"cuDeviceGetCount", (void *)device_count},
                {"cuDeviceGet", (void *)device_get},
                {"cuDeviceGetAttribute", (void *)device_attribute},
                {"cuDevicePrimaryCtxRetain", (void *)ctx_retain},
                {"cuDevicePrimaryCtxRelease", (void *)ok},
                {"cuCtxPushCurrent", (void *)ok},
                {"cuCtxPopCurrent", (void *)ok},
                {"cuCtxGetCurrent", (void *)ctx_current},
                {"cuMemHostRegister", (void *)host_register},
                {"cuMemHostUnregister", (void *)ok},
                {"cuMemHostGetDevicePointer", (void *)host_device_pointer},
                {"cuMemGetAllocationGranularity", (void *)granularity},
        };

        (void)version, (void)flags;
        if (status)
                *status = CU_GET_PROC_ADDRESS_SUCCESS;
        *pfn = (void *)not_supported;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (!strcmp(symbol, table[i].name))
                        *pfn = table[i].fn;
        return CUDA_SUCCESS;
}
