/* SPDX-License-Identifier: MIT */
/*
 * Pools made by the CUDA driver's virtual memory management (docs/ARCHITECTURE.md, "CUDA"):
 * gpu pools (location DEVICE) and pinned pools with backend = vmm (location
 * HOST_NUMA, CUDA 12.2 or later).  The daemon creates one allocation per
 * pool with cuMemCreate, exports it as a POSIX fd and hands that fd to each
 * client with its first region; the client imports, reserves, maps and sets
 * access itself.  The memory lives while any fd or mapping of it exists, so
 * clients keep working if the daemon dies.
 *
 * The daemon maps the pool too, with access for one device, only to zero
 * regions (cuMemsetD8 from whatever thread runs the job).  On a device in
 * EXCLUSIVE_PROCESS compute mode a context in allocd would shut every client
 * out of the device: there allocd lets its context go once the pool is made,
 * and takes one only to zero, mapping just the granules it zeroes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core-impl.h"
#include "log.h"
#include "cuda-loader.h"

#if HAVE_CUDA

struct vmm {
        const struct cuda *cu;
        CUdevice dev;
        CUcontext ctx; /* the device's primary context, retained while the pool exists; NULL: exclusive */
        CUmemGenericAllocationHandle handle;
        bool created, reserved, mapped;
        CUdeviceptr va;
        size_t gran;
};

static int cu_fail(const struct pool *p, const struct cuda *cu, CUresult r, const char *what, char *err,
                   size_t errsize) {
        char buf[256];

        cuda_error(cu, r, what, buf, sizeof(buf));
        snprintf(err, errsize, "pool %s: %s", p->conf.name, buf);
        return -EIO;
}

static int attr(const struct vmm *v, CUdevice_attribute a) {
        int value = 0;

        if (v->cu->cuDeviceGetAttribute(&value, a, v->dev) != CUDA_SUCCESS)
                return 0;
        return value;
}

/* The device a pool is made with and checked against: a gpu pool's own, device 0 for host memory. */
static int pool_device(const struct pool *p) {
        return p->conf.kind == POOL_GPU ? p->conf.device : 0;
}

int vmm_host_numa_check(char *why, size_t whysize) {
        const char *no;
        const struct cuda *cu = cuda_get(&no);
        struct vmm v = {.cu = cu};

        if (!cu) {
                snprintf(why, whysize, "%s", no);
                return -ENODEV;
        }
        if (cu->driver_version < 12020) {
                snprintf(why, whysize, "the NVIDIA driver supports CUDA %d.%d; host NUMA allocations need 12.2",
                         cu->driver_version / 1000, cu->driver_version % 1000 / 10);
                return -ENOTSUP;
        }
        if (cu->cuDeviceGet(&v.dev, 0) != CUDA_SUCCESS ||
            !attr(&v, CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) ||
            !attr(&v, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED)) {
                snprintf(why, whysize,
                         "device 0 does not support host NUMA allocations with POSIX fd export "
                         "(CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED)");
                return -ENOTSUP;
        }
        return 0;
}

/*
 * What backend = auto asks: the attributes can say yes where cuMemCreate then fails (a container
 * without SYS_NICE, a NUMA node without memory, an uneven layout: NVIDIA/nccl#2190, #2106), so make
 * one granule on the node, export it and release it, as NCCL does before it trusts host NUMA.
 */
int vmm_host_numa_probe(int numa_node, char *why, size_t whysize) {
        const struct cuda *cu = cuda_get(NULL);
        struct vmm v = {.cu = cu};
        CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                    .requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                                    .location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA};
        CUmemGenericAllocationHandle handle;
        const char *what = "cuDevicePrimaryCtxRetain";
        CUcontext ctx, popped;
        size_t gran = 0;
        int fd = -1, r = vmm_host_numa_check(why, whysize);
        CUresult cr;

        if (r < 0)
                return r;
        cu->cuDeviceGet(&v.dev, 0);
        if ((cr = cu->cuDevicePrimaryCtxRetain(&ctx, v.dev)) != CUDA_SUCCESS)
                goto fail;
        cu->cuCtxPushCurrent(ctx);
        int node = numa_node >= 0 ? numa_node : attr(&v, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID);
        prop.location.id = node < 0 ? 0 : node;
        what = "cuMemGetAllocationGranularity";
        cr = cu->cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
        if (cr == CUDA_SUCCESS && gran == 0)
                cr = CUDA_ERROR_INVALID_VALUE;
        if (cr == CUDA_SUCCESS) {
                what = "cuMemCreate";
                cr = cu->cuMemCreate(&handle, gran, &prop, 0);
        }
        if (cr == CUDA_SUCCESS) {
                what = "cuMemExportToShareableHandle";
                cr = cu->cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
                if (cr == CUDA_SUCCESS)
                        close(fd);
                cu->cuMemRelease(handle);
        }
        cu->cuCtxPopCurrent(&popped);
        cu->cuDevicePrimaryCtxRelease(v.dev);
        if (cr == CUDA_SUCCESS)
                return 0;
fail:;
        char buf[256], name[80];
        snprintf(name, sizeof(name), "%s (host NUMA node %d)", what, prop.location.id);
        cuda_error(cu, cr, name, buf, sizeof(buf));
        snprintf(why, whysize, "a trial allocation failed: %.300s", buf);
        return -ENOTSUP;
}

/* Checks that the device can make and export the pool's memory; fills prop. */
static int vmm_prop(struct pool *p, struct vmm *v, CUmemAllocationProp *prop, char *err, size_t errsize) {
        int ordinal = pool_device(p);
        char why[256];

        if (ordinal >= v->cu->ndevices) {
                snprintf(err, errsize, "pool %s: device = %d, but allocd sees %d CUDA device%s (0-%d)", p->conf.name,
                         ordinal, v->cu->ndevices, v->cu->ndevices == 1 ? "" : "s", v->cu->ndevices - 1);
                return -EINVAL;
        }
        CUresult r = v->cu->cuDeviceGet(&v->dev, ordinal);
        if (r != CUDA_SUCCESS)
                return cu_fail(p, v->cu, r, "cuDeviceGet", err, errsize);
        if (!attr(v, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) ||
            !attr(v, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED)) {
                snprintf(err, errsize,
                         "pool %s: device %d cannot share memory between processes: it lacks virtual memory "
                         "management or POSIX fd export (CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, "
                         "..._HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED); use another device or a pinned pool "
                         "with backend = memfd",
                         p->conf.name, ordinal);
                return -ENOTSUP;
        }
        memset(prop, 0, sizeof(*prop));
        prop->type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop->requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
        if (p->conf.kind == POOL_GPU) {
                prop->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
                prop->location.id = ordinal;
                return 0;
        }
        if (vmm_host_numa_check(why, sizeof(why)) < 0) {
                snprintf(err, errsize, "pool %s: backend = vmm: %s; use backend = memfd or auto", p->conf.name, why);
                return -ENOTSUP;
        }
        prop->location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
        /* Without numa_node, the node nearest the device; 0 where the machine has no NUMA. */
        int node = p->conf.numa_node >= 0 ? p->conf.numa_node : attr(v, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID);
        prop->location.id = node < 0 ? 0 : node;
        return 0;
}

static const char *where(const CUmemLocation *l) {
        return l->type == CU_MEM_LOCATION_TYPE_DEVICE ? "device" : "host NUMA node";
}

/*
 * Whether a gpu pool's allocation adopted from the fd store is on the device configured now: its name says kind
 * and size but not the device (another device = N, or devices renumbered by CUDA_VISIBLE_DEVICES), and memory of
 * another device would be reported, and mapped by clients, as this one's.  Host memory on another NUMA node is
 * still the pool's memory: it is not checked.
 */
static int adopted_in_place(struct pool *p, struct vmm *v, const CUmemAllocationProp *want, char *err, size_t errsize) {
        CUmemAllocationProp had;
        CUresult r;

        if (want->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
                return 0;
        if ((r = v->cu->cuMemGetAllocationPropertiesFromHandle(&had, v->handle)) != CUDA_SUCCESS)
                return cu_fail(p, v->cu, r, "cuMemGetAllocationPropertiesFromHandle (the stored fd)", err, errsize);
        if (had.location.type == want->location.type && had.location.id == want->location.id)
                return 0;
        snprintf(err, errsize,
                 "pool %s: the fd stored for it holds memory of %s %d, not of %s %d as configured; it is "
                 "not used",
                 p->conf.name, where(&had.location), had.location.id, where(&want->location), want->location.id);
        return -EBADF;
}

static void vmm_close(struct pool *p) {
        struct vmm *v = p->priv;

        if (!v)
                return;
        if (v->ctx)
                v->cu->cuCtxPushCurrent(v->ctx);
        if (v->mapped)
                v->cu->cuMemUnmap(v->va, p->conf.size);
        if (v->reserved)
                v->cu->cuMemAddressFree(v->va, p->conf.size);
        if (v->created)
                v->cu->cuMemRelease(v->handle);
        if (v->ctx) {
                CUcontext popped;
                v->cu->cuCtxPopCurrent(&popped);
                v->cu->cuDevicePrimaryCtxRelease(v->dev);
        }
        if (p->fd >= 0)
                close(p->fd);
        p->fd = -1;
        free(v);
        p->priv = NULL;
}

static int vmm_open(struct pool *p, char *err, size_t errsize) {
        const char *why;
        const struct cuda *cu = cuda_get(&why);
        CUmemAllocationProp prop;
        CUmemAccessDesc access = {0};
        CUcontext popped;
        size_t gran = 0;
        CUresult cr;
        int r;

        if (!cu) {
                snprintf(err, errsize, "pool %s: %s", p->conf.name, why);
                return -ENODEV;
        }
        struct vmm *v = calloc(1, sizeof(*v));
        if (!v) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        v->cu = cu;
        p->priv = v;
        if ((r = vmm_prop(p, v, &prop, err, errsize)) < 0)
                goto fail;
        cr = cu->cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
        if (cr != CUDA_SUCCESS || gran == 0) {
                r = cu_fail(p, cu, cr, "cuMemGetAllocationGranularity", err, errsize);
                goto fail;
        }
        v->gran = gran;
        /* Whole quanta too, where the quantum is the larger (both powers of two): the arena takes no part of one. */
        uint64_t unit = p->conf.quantum > gran && p->conf.quantum % gran == 0 ? p->conf.quantum : gran;
        if (p->conf.size % unit && p->conf.size > UINT64_MAX - unit) {
                snprintf(err, errsize,
                         "pool %s: size %" PRIu64 " cannot be rounded up to a multiple of the allocation granularity "
                         "%zu%s; make the pool smaller",
                         p->conf.name, p->conf.size, gran, unit > gran ? " and of the quantum" : "");
                r = -EINVAL;
                goto fail;
        }
        if (p->conf.size % unit) {
                uint64_t size = (p->conf.size / unit + 1) * unit;
                log_info("pool %s: size %" PRIu64 " rounded up to %" PRIu64 ", a multiple of the allocation "
                         "granularity %zu%s",
                         p->conf.name, p->conf.size, size, gran, unit > gran ? " and of the quantum" : "");
                p->conf.size = size;
        }
        if ((cr = cu->cuDevicePrimaryCtxRetain(&v->ctx, v->dev)) != CUDA_SUCCESS) {
                v->ctx = NULL;
                r = cu_fail(p, cu, cr, "cuDevicePrimaryCtxRetain", err, errsize);
                goto fail;
        }
        cu->cuCtxPushCurrent(v->ctx);
        if (p->adopt_fd >= 0) {
                /* The fd store kept the allocation alive across the restart: the same memory, regions and all. */
                p->fd = p->adopt_fd;
                p->adopt_fd = -1;
                cr = cu->cuMemImportFromShareableHandle(&v->handle, (void *)(uintptr_t)p->fd,
                                                        CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
        } else {
                cr = cu->cuMemCreate(&v->handle, p->conf.size, &prop, 0);
        }
        if (cr != CUDA_SUCCESS) {
                cu->cuCtxPopCurrent(&popped);
                r = cu_fail(p, cu, cr, p->fd >= 0 ? "importing the stored fd" : "cuMemCreate", err, errsize);
                if (cr == CUDA_ERROR_OUT_OF_MEMORY)
                        snprintf(err + strlen(err), errsize - strlen(err), "; make the pool smaller");
                goto fail;
        }
        v->created = true;
        if (p->fd >= 0 && (r = adopted_in_place(p, v, &prop, err, errsize)) < 0) {
                cu->cuCtxPopCurrent(&popped);
                goto fail;
        }
        if (p->fd < 0)
                cr = cu->cuMemExportToShareableHandle(&p->fd, v->handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
        if (cr == CUDA_SUCCESS && fcntl(p->fd, F_SETFD, FD_CLOEXEC) < 0)
                cr = CUDA_ERROR_OPERATING_SYSTEM;
        if (cr == CUDA_SUCCESS)
                cr = cu->cuMemAddressReserve(&v->va, p->conf.size, 0, 0, 0);
        if (cr == CUDA_SUCCESS) {
                v->reserved = true;
                cr = cu->cuMemMap(v->va, p->conf.size, 0, v->handle, 0);
        }
        if (cr == CUDA_SUCCESS) {
                v->mapped = true;
                access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
                access.location.id = pool_device(p);
                access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
                cr = cu->cuMemSetAccess(v->va, p->conf.size, &access, 1);
        }
        if (cr == CUDA_SUCCESS && attr(v, CU_DEVICE_ATTRIBUTE_COMPUTE_MODE) == CU_COMPUTEMODE_EXCLUSIVE_PROCESS) {
                /* What was made and exported is checked; the mapping and context go, vmm_zero takes them again. */
                cu->cuMemUnmap(v->va, p->conf.size);
                cu->cuMemAddressFree(v->va, p->conf.size);
                v->mapped = v->reserved = false;
                cu->cuCtxPopCurrent(&popped);
                cu->cuDevicePrimaryCtxRelease(v->dev);
                v->ctx = NULL;
                log_info("pool %s: device %d is in EXCLUSIVE_PROCESS mode: allocd holds no context on it but to "
                         "zero, which fails while a client uses the device",
                         p->conf.name, pool_device(p));
        } else {
                cu->cuCtxPopCurrent(&popped);
        }
        if (cr != CUDA_SUCCESS) {
                r = cu_fail(p, cu, cr, "exporting and mapping the pool", err, errsize);
                goto fail;
        }
        if ((r = pool_add_span(p, 0, p->conf.size, err, errsize)) < 0)
                goto fail;
        if (p->conf.kind == POOL_GPU)
                v->cu->cuDeviceGetUuid((CUuuid *)p->uuid, v->dev);
        return 0;
fail:
        vmm_close(p);
        return r;
}

/* Maps the granules around [offset, offset + size) for the zeroing only: an exclusive device's pool has no mapping. */
static CUresult zero_unmapped(struct pool *p, struct vmm *v, uint64_t offset, uint64_t size) {
        uint64_t lo = offset / v->gran * v->gran, hi = (offset + size + v->gran - 1) / v->gran * v->gran;
        CUmemAccessDesc access = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = pool_device(p)},
                                  .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
        CUdeviceptr va;
        CUresult r = v->cu->cuMemAddressReserve(&va, hi - lo, 0, 0, 0);

        if (r != CUDA_SUCCESS)
                return r;
        if ((r = v->cu->cuMemMap(va, hi - lo, lo, v->handle, 0)) == CUDA_SUCCESS) {
                r = v->cu->cuMemSetAccess(va, hi - lo, &access, 1);
                if (r == CUDA_SUCCESS)
                        r = v->cu->cuMemsetD8(va + (offset - lo), 0, size);
                if (r == CUDA_SUCCESS)
                        r = v->cu->cuCtxSynchronize();
                v->cu->cuMemUnmap(va, hi - lo);
        }
        v->cu->cuMemAddressFree(va, hi - lo);
        return r;
}

static int vmm_zero(struct pool *p, uint64_t offset, uint64_t size) {
        struct vmm *v = p->priv;
        CUcontext ctx = v->ctx, popped;
        CUresult r = CUDA_SUCCESS;

        if (!ctx)
                r = v->cu->cuDevicePrimaryCtxRetain(&ctx, v->dev);
        if (r == CUDA_SUCCESS) {
                v->cu->cuCtxPushCurrent(ctx);
                if (v->mapped) {
                        r = v->cu->cuMemsetD8(v->va + offset, 0, size);
                        if (r == CUDA_SUCCESS)
                                r = v->cu->cuCtxSynchronize();
                } else {
                        r = zero_unmapped(p, v, offset, size);
                }
                v->cu->cuCtxPopCurrent(&popped);
                if (!v->ctx)
                        v->cu->cuDevicePrimaryCtxRelease(v->dev);
        }
        if (r != CUDA_SUCCESS) {
                char buf[256];
                cuda_error(v->cu, r, v->ctx ? "cuMemsetD8" : "cuMemsetD8 (with a context taken to zero)", buf,
                           sizeof(buf));
                log_err("pool %s: zeroing %" PRIu64 " bytes at %#" PRIx64 ": %s", p->conf.name, size, offset, buf);
                return -EIO;
        }
        return 0;
}

#else

int vmm_host_numa_probe(int numa_node, char *why, size_t whysize) {
        (void)numa_node;
        return vmm_host_numa_check(why, whysize);
}

int vmm_host_numa_check(char *why, size_t whysize) {
        const char *no;

        cuda_get(&no);
        snprintf(why, whysize, "%s", no);
        return -ENODEV;
}

static int vmm_open(struct pool *p, char *err, size_t errsize) {
        char why[256];

        vmm_host_numa_check(why, sizeof(why));
        snprintf(err, errsize, "pool %s: %s", p->conf.name, why);
        return -ENODEV;
}

static void vmm_close(struct pool *p) {
        (void)p;
}

static int vmm_zero(struct pool *p, uint64_t offset, uint64_t size) {
        (void)p, (void)offset, (void)size;
        return -ENODEV;
}

#endif

const struct pool_ops pool_vmm_ops = {
        .open = vmm_open,
        .close = vmm_close,
        .zero = vmm_zero,
        .zero_blocks = true,
};
