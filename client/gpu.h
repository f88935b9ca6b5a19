/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_CLIENT_GPU_H
#define ALLOC_CLIENT_GPU_H

/*
 * What liballoc-client does with CUDA for pinned and gpu pools (gpu.c):
 * register a mapped memfd with cuMemHostRegister, or import, map and open
 * a cuMemCreate allocation.  Once per pool per connection.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gpu_map {
        bool registered; /* pinned memfd: registered with CUDA in this process */
        bool vmm;        /* mapped with cuMemMap (va), not mmap */
        int device;      /* gpu: the device's ordinal in this process; else -1 */
        int ctx_device;  /* whose primary context is retained (memfd, where the caller had none current); -1: none */
        void *reg_ctx;   /* memfd: the CUcontext the pieces are registered in (the caller's or ctx_device's) */
        uint64_t va;     /* vmm: where the pool is mapped (host and device address alike) */
        uint64_t size;   /* what was registered or mapped */
        size_t npieces;  /* memfd: registered in pieces of at most GPU_PIECE bytes */
        uint64_t *piece_dev; /* memfd with DEVICEMAP: each piece's device address */
};

/* Registers [base, base + size) with cuMemHostRegister(flags); without a usable GPU, leaves it unregistered. */
int gpu_register(struct gpu_map *g, void *base, uint64_t size, uint32_t flags, char *err, size_t errsize);
/*
 * Imports the CUDA fd of a vmm pool and maps it at an address aligned to align; uuid names a gpu
 * pool's device, NULL for host memory; read_only maps it for reading only.
 */
int gpu_import(struct gpu_map *g, int fd, uint64_t size, uint64_t align, const uint8_t *uuid, bool read_only, char *err,
               size_t errsize);
/* The device address of offset..offset+size in a registered pool; 0 where there is none. */
uint64_t gpu_dev_ptr(const struct gpu_map *g, uint64_t offset, uint64_t size);
/* Copies n bytes from host to the memory of a gpu pool at dev on device ordinal (to_device), or back. */
int gpu_copy(int device, uint64_t dev, void *host, size_t n, bool to_device, char *err, size_t errsize);
/*
 * Undoes gpu_register or gpu_import (the caller munmaps a memfd mapping) and
 * resets g to a map of nothing.  Accepts a zeroed map, and one whose gpu_register or gpu_import
 * failed (they clean up after themselves); calls into CUDA only for a map
 * that used it, so a host-only process never loads the driver here.
 */
void gpu_release(struct gpu_map *g, void *base);

#endif
