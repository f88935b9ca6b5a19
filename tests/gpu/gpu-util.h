/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_GPU_UTIL_H
#define ALLOC_GPU_UTIL_H

/*
 * For the GPU tests and benchmarks: plain programs (not criterion) that exit
 * 77 where there is no GPU, so meson reports them skipped.  They reach CUDA
 * only through the driver loader, as the daemon and library do.
 */

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "cuda-loader.h"

#define EXIT_SKIP 77

/*
 * A file a GPU test or benchmark needs (allocd, a fatbin): $var if it is set, else the file of
 * the same name beside this executable (a bundle of scripts/gpu-bundle.sh, run from any folder),
 * else built, the path meson compiled in.  GPU_PATH(ALLOCD_PATH) looks up $ALLOCD_PATH first.  var NULL:
 * no variable.  gpu_start_allocd looks its allocd_path up as GPU_PATH(ALLOCD_PATH) does, and
 * gpu_load_module a path it cannot read beside the executable.
 */
const char *gpu_path(const char *var, const char *built);
#define GPU_PATH(macro) gpu_path(#macro, macro)

#if HAVE_CUDA
/* The same pattern as kernels.cu, for checks on the host. */
static inline uint32_t gpu_pattern(uint32_t seed, uint64_t i) {
        return seed * 2654435761u ^ (uint32_t)i ^ (uint32_t)(i >> 32);
}

/*
 * The driver with device 0's primary context current, SIGPIPE ignored; exits 77 (saying why) where there is no GPU
 * (no library, the toolkit's stub, no device), 1 where the driver is there and fails.
 */
const struct cuda *gpu_setup(void);
/* Prints device 0's name and the driver's CUDA version (after gpu_setup). */
void gpu_print_device(void);
/* Exits 1 with what and the driver's words unless r is CUDA_SUCCESS. */
void gpu_check(CUresult r, const char *what);
/* Loads a fatbin (or cubin) from path into the current context; exits 1 if it cannot. */
CUmodule gpu_load_module(const char *path);
/* A falloc heap of size bytes in the current device's memory, formatted (only its header and bitmap are copied). */
CUdeviceptr gpu_falloc_heap(uint64_t size, uint64_t chunk_size);
/* Writes the falloc header and bitmap of a heap of size bytes at dptr (memory of the current device). */
void gpu_falloc_format(CUdeviceptr dptr, uint64_t size, uint64_t chunk_size);
/* A worker process: commands go to in, one answer line each comes from out. */
struct gpu_proc {
        pid_t pid;
        FILE *in, *out;
        const char *name;
};
/* Sends cmd (one line) to p and reads its answer into answer, without the newline; "error: the worker died" at EOF. */
void gpu_ask(struct gpu_proc *p, const char *cmd, char *answer, size_t size);
/* fork+exec of self with argv, its stdin and stdout the pipes of the returned worker. */
struct gpu_proc gpu_spawn(const char *self, const char *name, char *const argv[]);
/*
 * Starts allocd with config text on a fresh socket (written to sock); returns its pid once it accepts.
 * Every allocd started is stopped (SIGTERM) and its folder removed at exit, if not before.
 */
pid_t gpu_start_allocd(const char *allocd_path, const char *config, char *sock, size_t socksize);
/* Sends allocd sig, reaps it and removes its folder; its wait status (-1: not one this process started). */
int gpu_stop_allocd(pid_t pid, int sig);
#endif

#endif
