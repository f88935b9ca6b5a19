/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_TEST_GPU_RESTART_H
#define ALLOC_TEST_GPU_RESTART_H

/* gpu-restart's client process on allocd's socket sock (gpu-restart-worker.c); its exit status. */
int gpu_restart_worker(const char *sock);

#endif
