/* SPDX-License-Identifier: MIT */
/*
 * A libcuda.so.1 that is no GPU, for the tests that need the driver to answer a chosen way
 * (linked as libcuda.so.1 in a temporary directory on LD_LIBRARY_PATH).  cuInit answers the
 * number in the file FAKE_CUDA_INIT_FILE names (read at each call, so a test can change its mind
 * between allocd's start and a SIGHUP), else FAKE_CUDA_INIT, else 0.  After a successful cuInit
 * the driver says 12.8 and devices with every attribute 1 (host NUMA allocations and all), whose
 * primary context can be retained and pushed, and host memory registered (its device address is the host's).
 * FAKE_CUDA_DEVICES says how many devices (1 by default).  Device memory is a memfd named for its device,
 * which cuMemCreate makes, exports and imports, and cuMemMap maps into the host address space (so that
 * cuMemsetD8 is a memset); host NUMA allocations, kernels and the rest answer CUDA_ERROR_NOT_SUPPORTED.
 * FAKE_CUDA_COMPUTE_MODE is the devices' compute mode (3: EXCLUSIVE_PROCESS).
 * FAKE_CUDA_FAIL names one entry point that answers CUDA_ERROR_UNKNOWN instead (an injected failure).
 *
 * The real driver is not fork-safe: in a child of fork() of a process that initialised it, what any call does is
 * undefined (it may fail, hang or crash).  Here every call there but cuGetErrorName/String aborts, so that a test sees
 * the call.
 */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
        not_forked("cuDriverGetVersion");
        *v = 12080;
        return CUDA_SUCCESS;
}

static int ndevices(void) {
        const char *v = getenv("FAKE_CUDA_DEVICES");
        return v && atoi(v) > 0 ? atoi(v) : 1;
}

static CUresult device_count(int *n) {
        not_forked("cuDeviceGetCount");
        *n = ndevices();
        return CUDA_SUCCESS;
}

static CUresult device_get(CUdevice *d, int ordinal) {
        not_forked("cuDeviceGet");
        *d = ordinal;
        return ordinal >= 0 && ordinal < ndevices() ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

static CUresult device_attribute(int *v, CUdevice_attribute a, CUdevice d) {
        const char *mode = getenv("FAKE_CUDA_COMPUTE_MODE");

        (void)d;
        not_forked("cuDeviceGetAttribute");
        *v = a == CU_DEVICE_ATTRIBUTE_COMPUTE_MODE && mode ? atoi(mode) : 1;
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
        not_forked("cuMemGetAllocationGranularity");
        *g = 2 << 20;
        return CUDA_SUCCESS;
}

/* Device memory: a memfd named for its device; a handle points to one of these. */
struct alloc {
        int fd, device;
        size_t size;
};

static CUresult new_alloc(CUmemGenericAllocationHandle *h, int fd, int device) {
        struct alloc *a = malloc(sizeof(*a));
        struct stat st;

        if (!a || fstat(fd, &st) < 0) {
                free(a);
                close(fd);
                return CUDA_ERROR_OUT_OF_MEMORY;
        }
        *a = (struct alloc){.fd = fd, .device = device, .size = (size_t)st.st_size};
        *h = (CUmemGenericAllocationHandle)(uintptr_t)a;
        return CUDA_SUCCESS;
}

static CUresult mem_create(CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
                           unsigned long long flags) {
        char name[32];
        int fd;

        (void)flags;
        not_forked("cuMemCreate");
        if (prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
                return CUDA_ERROR_NOT_SUPPORTED;
        if (prop->location.id < 0 || prop->location.id >= ndevices())
                return CUDA_ERROR_INVALID_DEVICE;
        snprintf(name, sizeof(name), "fake-cuda-dev%d", prop->location.id);
        if ((fd = memfd_create(name, MFD_CLOEXEC)) < 0 || ftruncate(fd, (off_t)size) < 0) {
                if (fd >= 0)
                        close(fd);
                return CUDA_ERROR_OUT_OF_MEMORY;
        }
        return new_alloc(h, fd, prop->location.id);
}

static CUresult mem_release(CUmemGenericAllocationHandle h) {
        struct alloc *a = (struct alloc *)(uintptr_t)h;

        not_forked("cuMemRelease");
        close(a->fd);
        free(a);
        return CUDA_SUCCESS;
}

static CUresult mem_export(void *out, CUmemGenericAllocationHandle h, CUmemAllocationHandleType t,
                           unsigned long long flags) {
        struct alloc *a = (struct alloc *)(uintptr_t)h;
        int fd;

        (void)t, (void)flags;
        not_forked("cuMemExportToShareableHandle");
        if ((fd = dup(a->fd)) < 0) /* as the driver's: without FD_CLOEXEC */
                return CUDA_ERROR_OPERATING_SYSTEM;
        *(int *)out = fd;
        return CUDA_SUCCESS;
}

static CUresult mem_import(CUmemGenericAllocationHandle *h, void *os, CUmemAllocationHandleType t) {
        char path[64], target[128] = "";
        int fd = (int)(uintptr_t)os, device;

        (void)t;
        not_forked("cuMemImportFromShareableHandle");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (readlink(path, target, sizeof(target) - 1) < 0 || sscanf(target, "/memfd:fake-cuda-dev%d", &device) != 1)
                return CUDA_ERROR_INVALID_VALUE;
        if ((fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
                return CUDA_ERROR_OPERATING_SYSTEM;
        return new_alloc(h, fd, device);
}

static CUresult mem_properties(CUmemAllocationProp *prop, CUmemGenericAllocationHandle h) {
        const struct alloc *a = (const struct alloc *)(uintptr_t)h;

        not_forked("cuMemGetAllocationPropertiesFromHandle");
        *prop = (CUmemAllocationProp){.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                      .requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                                      .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = a->device}};
        return CUDA_SUCCESS;
}

static CUresult address_reserve(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr, unsigned long long flags) {
        size_t span = size + (align > 4096 ? align : 0);
        char *m = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        uintptr_t at;

        (void)addr, (void)flags;
        not_forked("cuMemAddressReserve");
        if (m == MAP_FAILED)
                return CUDA_ERROR_OUT_OF_MEMORY;
        at = align > 4096 ? ((uintptr_t)m + align - 1) / align * align : (uintptr_t)m;
        if (at > (uintptr_t)m)
                munmap(m, at - (uintptr_t)m);
        if ((uintptr_t)m + span > at + size)
                munmap((char *)at + size, (uintptr_t)m + span - (at + size));
        *p = (CUdeviceptr)at;
        return CUDA_SUCCESS;
}

static CUresult address_free(CUdeviceptr p, size_t size) {
        not_forked("cuMemAddressFree");
        return munmap((void *)(uintptr_t)p, size) == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult mem_map(CUdeviceptr p, size_t size, size_t offset, CUmemGenericAllocationHandle h,
                        unsigned long long flags) {
        const struct alloc *a = (const struct alloc *)(uintptr_t)h;

        (void)flags;
        not_forked("cuMemMap");
        if (offset > a->size || size > a->size - offset)
                return CUDA_ERROR_INVALID_VALUE;
        return mmap((void *)(uintptr_t)p, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, a->fd, (off_t)offset) ==
                               MAP_FAILED
                       ? CUDA_ERROR_INVALID_VALUE
                       : CUDA_SUCCESS;
}

static CUresult mem_unmap(CUdeviceptr p, size_t size) {
        not_forked("cuMemUnmap");
        return mmap((void *)(uintptr_t)p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
                    0) == MAP_FAILED
                       ? CUDA_ERROR_INVALID_VALUE
                       : CUDA_SUCCESS;
}

static CUresult set_access(CUdeviceptr p, size_t size, const CUmemAccessDesc *desc, size_t count) {
        (void)p, (void)size;
        not_forked("cuMemSetAccess");
        for (size_t i = 0; i < count; i++)
                if (desc[i].location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
                    (desc[i].location.id < 0 || desc[i].location.id >= ndevices()))
                        return CUDA_ERROR_INVALID_DEVICE;
        return CUDA_SUCCESS;
}

static CUresult memset_d8(CUdeviceptr p, unsigned char v, size_t n) {
        not_forked("cuMemsetD8");
        memset((void *)(uintptr_t)p, v, n);
        return CUDA_SUCCESS;
}

static CUresult device_uuid(CUuuid *u, CUdevice d) {
        not_forked("cuDeviceGetUuid");
        memset(u, 0, sizeof(*u));
        u->bytes[0] = (char)(d + 1);
        return CUDA_SUCCESS;
}

static CUresult injected(void) {
        not_forked("a failing CUDA call");
        return CUDA_ERROR_UNKNOWN;
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
                {"cuMemCreate", (void *)mem_create},
                {"cuMemRelease", (void *)mem_release},
                {"cuMemExportToShareableHandle", (void *)mem_export},
                {"cuMemImportFromShareableHandle", (void *)mem_import},
                {"cuMemGetAllocationPropertiesFromHandle", (void *)mem_properties},
                {"cuMemAddressReserve", (void *)address_reserve},
                {"cuMemAddressFree", (void *)address_free},
                {"cuMemMap", (void *)mem_map},
                {"cuMemUnmap", (void *)mem_unmap},
                {"cuMemSetAccess", (void *)set_access},
                {"cuMemsetD8", (void *)memset_d8},
                {"cuCtxSynchronize", (void *)ok},
                {"cuDeviceGetUuid", (void *)device_uuid},
        };

        (void)version, (void)flags;
        if (status)
                *status = CU_GET_PROC_ADDRESS_SUCCESS;
        *pfn = (void *)not_supported;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (!strcmp(symbol, table[i].name))
                        *pfn = table[i].fn;
        const char *fail = getenv("FAKE_CUDA_FAIL");
        if (fail && !strcmp(symbol, fail))
                *pfn = (void *)injected;
        return CUDA_SUCCESS;
}
