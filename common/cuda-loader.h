/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_CUDA_LOADER_H
#define ALLOC_CUDA_LOADER_H

/*
 * The CUDA driver, loaded at run time and never linked (docs/ARCHITECTURE.md, "CUDA"):
 * dlopen("libcuda.so.1"), then cuGetProcAddress_v2 for every entry point,
 * each asked for at the API version of the PFN_* typedef it is stored as.
 * A machine with the toolkit and no GPU is a normal case, not an error:
 * cuda_get() then returns NULL and says why in words, the same words every
 * time, so the caller reports it once.
 *
 * Built without the toolkit (HAVE_CUDA 0) only cuda_get() exists, and it
 * says so.
 */

#include <stddef.h>

#if HAVE_CUDA
#include <cuda.h>
#include <cudaTypedefs.h>

#define CUDA_FUNCS(X)                                                                                                  \
        X(cuGetErrorName, 6000)                                                                                        \
        X(cuGetErrorString, 6000)                                                                                      \
        X(cuDriverGetVersion, 2020)                                                                                    \
        X(cuDeviceGetCount, 2000)                                                                                      \
        X(cuDeviceGet, 2000)                                                                                           \
        X(cuDeviceGetAttribute, 2000)                                                                                  \
        X(cuDeviceGetUuid, 11040)                                                                                      \
        X(cuDeviceGetName, 2000)                                                                                       \
        X(cuDevicePrimaryCtxRetain, 7000)                                                                              \
        X(cuDevicePrimaryCtxRelease, 11000)                                                                            \
        X(cuCtxPushCurrent, 4000)                                                                                      \
        X(cuCtxPopCurrent, 4000)                                                                                       \
        X(cuCtxGetCurrent, 4000)                                                                                       \
        X(cuCtxSynchronize, 2000)                                                                                      \
        X(cuCtxSetLimit, 3010)                                                                                         \
        X(cuMemHostRegister, 6050)                                                                                     \
        X(cuMemHostUnregister, 4000)                                                                                   \
        X(cuMemHostGetDevicePointer, 3020)                                                                             \
        X(cuMemHostAlloc, 2020)                                                                                        \
        X(cuMemFreeHost, 2000)                                                                                         \
        X(cuMemAlloc, 3020)                                                                                            \
        X(cuMemFree, 3020)                                                                                             \
        X(cuMemsetD8, 3020)                                                                                            \
        X(cuMemcpyHtoD, 3020)                                                                                          \
        X(cuMemcpyDtoH, 3020)                                                                                          \
        X(cuMemGetAllocationGranularity, 10020)                                                                        \
        X(cuMemCreate, 10020)                                                                                          \
        X(cuMemRelease, 10020)                                                                                         \
        X(cuMemExportToShareableHandle, 10020)                                                                         \
        X(cuMemImportFromShareableHandle, 10020)                                                                       \
        X(cuMemGetAllocationPropertiesFromHandle, 10020)                                                               \
        X(cuMemAddressReserve, 10020)                                                                                  \
        X(cuMemAddressFree, 10020)                                                                                     \
        X(cuMemMap, 10020)                                                                                             \
        X(cuMemUnmap, 10020)                                                                                           \
        X(cuMemSetAccess, 10020)                                                                                       \
        X(cuModuleLoadData, 2000)                                                                                      \
        X(cuModuleUnload, 2000)                                                                                        \
        X(cuModuleGetFunction, 2000)                                                                                   \
        X(cuLaunchKernel, 4000)                                                                                        \
        X(cuMemGetInfo, 3020)

struct cuda {
#define CUDA_FIELD(name, version) PFN_##name##_v##version name;
        CUDA_FUNCS(CUDA_FIELD)
#undef CUDA_FIELD
        int driver_version; /* e.g. 12040 for 12.4 */
        int ndevices;
};

/*
 * Loads the driver from soname into *cu and initialises it.  0, or a
 * negative errno value with the reason in why: -ENODEV for "no GPU" (no
 * library, the toolkit's stub, no device), -ENOSYS for a driver too old (or
 * a library that is no driver), -EIO for a driver that is there and fails
 * (cuInit's error, e.g. CUDA_ERROR_SYSTEM_NOT_READY: a broken GPU).
 * For tests; everything else calls cuda_get().
 */
int cuda_open(struct cuda *cu, const char *soname, char *why, size_t whysize);

/* "what: CUDA_ERROR_NAME (the driver's text)". */
void cuda_error(const struct cuda *cu, CUresult r, const char *what, char *buf, size_t size);
#else
struct cuda;
#endif

/*
 * The driver, loaded on first use; NULL where it cannot be used, and then
 * *why (if not NULL) says why.  A failure is the answer until cuda_retry();
 * the reason's pointer stays valid for the life of the process.  In a child
 * of fork() of the process that loaded it, NULL (-EIO): the driver is not
 * fork-safe.
 */
const struct cuda *cuda_get(const char **why);

/*
 * cuda_get() with cuda_open()'s errno: 0 (*cu the driver), -ENODEV (no GPU:
 * no library, the stub, no device), -ENOSYS (too old), -EIO (a broken GPU).
 * What a test skips for is -ENODEV alone.
 */
int cuda_load(const struct cuda **cu, const char **why);

/*
 * Makes the next cuda_get() load the driver again if it could not so far
 * (allocd's SIGHUP).  A driver whose cuInit failed in this process may
 * answer the same again; a library or device that appeared meanwhile is
 * found.
 */
void cuda_retry(void);

#endif
