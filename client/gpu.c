/* SPDX-License-Identifier: MIT */
/*
 * CUDA in liballoc-client.  No call here makes a context it does not need:
 * importing, mapping and setting access to a vmm pool need none, and a
 * primary context retained on a device the program does not use costs that
 * device's memory and, in EXCLUSIVE_PROCESS mode, shuts every other process
 * out of it.  cuMemHostRegister needs one: the caller's current context when
 * there is one (so a registration without PORTABLE serves the context the
 * program uses; the CUDA runtime's is the current device's primary context),
 * else device 0's primary context, pushed and popped so that the caller's
 * thread is left as it was.
 */
#include "gpu.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/client.h"
#include "cuda-loader.h"

/* cuMemHostRegister takes at most this much at once (docs/ARCHITECTURE.md, "CUDA"). */
#define GPU_PIECE (64ull << 30)

#if HAVE_CUDA

static int cu_fail(const struct cuda *cu, CUresult r, const char *what, char *err, size_t errsize) {
        cuda_error(cu, r, what, err, errsize);
        return r == CUDA_ERROR_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

/* Pushes device ordinal's primary context, retained for g (released by gpu_release, or by the caller). */
static int enter(const struct cuda *cu, struct gpu_map *g, int ordinal, char *err, size_t errsize) {
        CUdevice dev;
        CUcontext ctx;
        CUresult r;

        if ((r = cu->cuDeviceGet(&dev, ordinal)) != CUDA_SUCCESS)
                return cu_fail(cu, r, "cuDeviceGet", err, errsize);
        if ((r = cu->cuDevicePrimaryCtxRetain(&ctx, dev)) != CUDA_SUCCESS)
                return cu_fail(cu, r, "cuDevicePrimaryCtxRetain", err, errsize);
        g->ctx_device = ordinal;
        g->reg_ctx = ctx;
        cu->cuCtxPushCurrent(ctx);
        return 0;
}

static void leave(const struct cuda *cu) {
        CUcontext popped;

        cu->cuCtxPopCurrent(&popped);
}

int gpu_register(struct gpu_map *g, void *base, uint64_t size, uint32_t flags, char *err, size_t errsize) {
        const struct cuda *cu = cuda_get(NULL);
        CUresult r = CUDA_SUCCESS;
        CUcontext cur = NULL;
        const char *what = "cuMemHostRegister";
        size_t i, n = (size_t)((size + GPU_PIECE - 1) / GPU_PIECE);
        int e;

        *g = (struct gpu_map){.device = -1, .ctx_device = -1};
        if (!cu)
                return 0; /* the pool is still locked shared memory; alloc_cuda_unavailable() says why */
        if (flags & CU_MEMHOSTREGISTER_DEVICEMAP) {
                g->piece_dev = calloc(n, sizeof(*g->piece_dev));
                if (!g->piece_dev) {
                        snprintf(err, errsize, "out of memory");
                        return -ENOMEM;
                }
        }
        if (cu->cuCtxGetCurrent(&cur) == CUDA_SUCCESS && cur)
                g->reg_ctx = cur;
        else if ((e = enter(cu, g, 0, err, errsize)) < 0) {
                gpu_release(g, base);
                return e;
        }
        for (i = 0; i < n && r == CUDA_SUCCESS; i++) {
                char *p = (char *)base + i * GPU_PIECE;
                size_t len = (size_t)(i + 1 < n ? GPU_PIECE : size - i * GPU_PIECE);
                what = "cuMemHostRegister";
                r = cu->cuMemHostRegister(p, len, flags);
                if (r == CUDA_SUCCESS)
                        g->npieces++;
                if (r == CUDA_SUCCESS && g->piece_dev) {
                        what = "cuMemHostGetDevicePointer";
                        r = cu->cuMemHostGetDevicePointer((CUdeviceptr *)&g->piece_dev[i], p, 0);
                }
        }
        if (g->ctx_device >= 0)
                leave(cu);
        g->registered = true;
        g->size = size;
        if (r != CUDA_SUCCESS) {
                e = cu_fail(cu, r, what, err, errsize);
                gpu_release(g, base);
                return e;
        }
        return 0;
}

/* This process's ordinal of the device with uuid; -ENODEV with a message if it does not see it. */
static int find_device(const struct cuda *cu, const uint8_t *uuid, char *err, size_t errsize) {
        for (int i = 0; i < cu->ndevices; i++) {
                CUdevice dev;
                CUuuid u;
                if (cu->cuDeviceGet(&dev, i) == CUDA_SUCCESS && cu->cuDeviceGetUuid(&u, dev) == CUDA_SUCCESS &&
                    !memcmp(u.bytes, uuid, sizeof(u.bytes)))
                        return i;
        }
        char hex[33];
        for (int i = 0; i < 16; i++)
                snprintf(hex + 2 * i, 3, "%02x", uuid[i]);
        snprintf(err, errsize,
                 "the pool's GPU (UUID %s) is not one of the %d this process can see; check CUDA_VISIBLE_DEVICES", hex,
                 cu->ndevices);
        return -ENODEV;
}

int gpu_import(struct gpu_map *g, int fd, uint64_t size, uint64_t align, const uint8_t *uuid, bool read_only, char *err,
               size_t errsize) {
        const char *why;
        const struct cuda *cu = cuda_get(&why);
        CUmemGenericAllocationHandle handle;
        const CUmemAccess_flags prot = read_only ? CU_MEM_ACCESS_FLAGS_PROT_READ : CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
        CUmemAccessDesc access[65];
        size_t naccess = 0;
        CUresult r;
        int e;

        *g = (struct gpu_map){.device = -1, .ctx_device = -1, .vmm = true};
        if (!cu) {
                snprintf(err, errsize, "this pool is CUDA memory and this process cannot use CUDA: %s", why);
                return -ENODEV;
        }
        if (uuid && (g->device = find_device(cu, uuid, err, errsize)) < 0)
                return -ENODEV;
        r = cu->cuMemImportFromShareableHandle(&handle, (void *)(uintptr_t)fd,
                                               CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
        if (r != CUDA_SUCCESS)
                return cu_fail(cu, r, "cuMemImportFromShareableHandle", err, errsize);
        r = cu->cuMemAddressReserve((CUdeviceptr *)&g->va, size, align, 0, 0);
        if (r == CUDA_SUCCESS) {
                g->size = size;
                r = cu->cuMemMap(g->va, size, 0, handle, 0);
                if (r != CUDA_SUCCESS)
                        g->size = 0, cu->cuMemAddressFree(g->va, size);
        }
        /* The mapping keeps the memory; the handle is not needed once mapped. */
        cu->cuMemRelease(handle);
        if (r == CUDA_SUCCESS) {
                if (uuid) {
                        access[naccess++] = (CUmemAccessDesc){
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = g->device}, .flags = prot};
                } else {
                        /* Host memory: the CPU, and every device this process sees. */
                        access[naccess++] =
                                (CUmemAccessDesc){.location = {.type = CU_MEM_LOCATION_TYPE_HOST_NUMA}, .flags = prot};
                        for (int i = 0; i < cu->ndevices && naccess < sizeof(access) / sizeof(access[0]); i++)
                                access[naccess++] = (CUmemAccessDesc){
                                        .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = i}, .flags = prot};
                }
                r = cu->cuMemSetAccess(g->va, size, access, naccess);
        }
        if (r != CUDA_SUCCESS) {
                e = cu_fail(cu, r, "mapping the pool (cuMemAddressReserve, cuMemMap, cuMemSetAccess)", err, errsize);
                gpu_release(g, NULL);
                return e;
        }
        return 0;
}

uint64_t gpu_dev_ptr(const struct gpu_map *g, uint64_t offset, uint64_t size) {
        if (g->vmm)
                return g->va + offset;
        if (!g->piece_dev || size == 0)
                return 0;
        uint64_t first = offset / GPU_PIECE, last = (offset + size - 1) / GPU_PIECE;
        /* Pieces are registered apart; a region across two needs them adjacent on the device too. */
        for (uint64_t i = first; i < last; i++)
                if (g->piece_dev[i + 1] != g->piece_dev[i] + GPU_PIECE)
                        return 0;
        return g->piece_dev[first] + offset % GPU_PIECE;
}

void gpu_release(struct gpu_map *g, void *base) {
        const struct cuda *cu;
        CUdevice dev;

        /*
         * Only a map that used CUDA calls it: asking cuda_get() otherwise would load and initialise the driver in a
         * process that never used CUDA (every host-only client, at disconnect).  The pieces are unregistered in the
         * context they were registered in: the primary context g still holds, or the caller's, which a push finds
         * gone if the program destroyed it (and its registrations with it).
         */
        if ((g->npieces || (g->vmm && g->size) || g->ctx_device >= 0) && (cu = cuda_get(NULL))) {
                if (g->npieces && cu->cuCtxPushCurrent(g->reg_ctx) == CUDA_SUCCESS) {
                        for (size_t i = 0; i < g->npieces; i++)
                                cu->cuMemHostUnregister((char *)base + i * GPU_PIECE);
                        leave(cu);
                }
                if (g->vmm && g->size) {
                        cu->cuMemUnmap(g->va, g->size);
                        cu->cuMemAddressFree(g->va, g->size);
                }
                if (g->ctx_device >= 0 && cu->cuDeviceGet(&dev, g->ctx_device) == CUDA_SUCCESS)
                        cu->cuDevicePrimaryCtxRelease(dev); /* enter's retain */
        }
        free(g->piece_dev);
        *g = (struct gpu_map){.device = -1, .ctx_device = -1};
}

int gpu_copy(int device, uint64_t dev, void *host, size_t n, bool to_device, char *err, size_t errsize) {
        const char *why;
        const struct cuda *cu = cuda_get(&why);
        struct gpu_map tmp = {.ctx_device = -1};
        CUresult r;
        CUdevice d;
        int e;

        if (!cu) {
                snprintf(err, errsize, "%s", why);
                return -ENODEV;
        }
        if ((e = enter(cu, &tmp, device, err, errsize)) < 0)
                return e;
        r = to_device ? cu->cuMemcpyHtoD(dev, host, n) : cu->cuMemcpyDtoH(host, dev, n);
        leave(cu);
        if (cu->cuDeviceGet(&d, device) == CUDA_SUCCESS)
                cu->cuDevicePrimaryCtxRelease(d); /* enter's retain */
        return r == CUDA_SUCCESS ? 0 : cu_fail(cu, r, to_device ? "cuMemcpyHtoD" : "cuMemcpyDtoH", err, errsize);
}

#else

int gpu_copy(int device, uint64_t dev, void *host, size_t n, bool to_device, char *err, size_t errsize) {
        (void)device, (void)dev, (void)host, (void)n, (void)to_device;
        snprintf(err, errsize, "built without the CUDA toolkit");
        return -ENODEV;
}

int gpu_register(struct gpu_map *g, void *base, uint64_t size, uint32_t flags, char *err, size_t errsize) {
        (void)base, (void)size, (void)flags, (void)err, (void)errsize;
        *g = (struct gpu_map){.device = -1, .ctx_device = -1};
        return 0;
}

int gpu_import(struct gpu_map *g, int fd, uint64_t size, uint64_t align, const uint8_t *uuid, bool read_only, char *err,
               size_t errsize) {
        const char *why;

        (void)fd, (void)size, (void)align, (void)uuid, (void)read_only;
        *g = (struct gpu_map){.device = -1, .ctx_device = -1};
        cuda_get(&why);
        snprintf(err, errsize, "this pool is CUDA memory and this process cannot use CUDA: %s", why);
        return -ENODEV;
}

uint64_t gpu_dev_ptr(const struct gpu_map *g, uint64_t offset, uint64_t size) {
        (void)g, (void)offset, (void)size;
        return 0;
}

void gpu_release(struct gpu_map *g, void *base) {
        (void)base;
        *g = (struct gpu_map){.device = -1, .ctx_device = -1};
}

#endif

/* The public word on what this file can do in this process; loads the driver on first use, as documented. */
const char *alloc_cuda_unavailable(void) {
        const char *why;

        return cuda_get(&why) ? NULL : why;
}
