/* SPDX-License-Identifier: MIT */
/*
 * The pair of functions a CUDA framework's pluggable allocator loads
 * (PyTorch's CUDAPluggableAllocator: alloc(size, device, stream) and
 * free(ptr, size, device, stream)).  They take no kind and no connection,
 * so each device gets its own, made at its first allocation and kept for
 * the life of the process (the lease gives everything back when it ends).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "client-internal.h"
#include "kind-internal.h"

#define CUDA_DEVICES_MAX 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct alloc_memkind *) kinds[CUDA_DEVICES_MAX];

/* The pool for device: $ALLOCD_KIND_POOL_<device>, else $ALLOCD_KIND_POOL, else "gpu". */
static const char *pool_for(int device) {
        char var[32];
        const char *p;

        snprintf(var, sizeof(var), "ALLOCD_KIND_POOL_%d", device);
        if ((p = getenv(var)) && *p)
                return p;
        if ((p = getenv("ALLOCD_KIND_POOL")) && *p)
                return p;
        return "gpu";
}

static struct alloc_memkind *kind_for(int device) {
        struct alloc_memkind *k;
        struct alloc_client *c = NULL;
        const char *pool = pool_for(device);
        char name[32];
        int e;

        pthread_mutex_lock(&lock);
        k = atomic_load(&kinds[device]);
        if (k)
                goto out;
        snprintf(name, sizeof(name), "cuda-kind-%d", device);
        e = alloc_connect(&c, NULL, name);
        if (e == 0)
                e = alloc_kind_create(c, pool, NULL, &k);
        if (e == 0 && k->device_ordinal >= 0 && k->device_ordinal != device) {
                client_fail(-EINVAL, "pool %s is on CUDA device %d, not %d; set ALLOCD_KIND_POOL_%d", pool,
                            k->device_ordinal, device, device);
                e = -EINVAL;
        }
        if (e < 0) {
                /* The reason stays in alloc_last_error(); the next call tries again. */
                char why[CLIENT_ERROR_MAX];
                snprintf(why, sizeof(why), "%s", alloc_last_error());
                k = NULL;
                alloc_disconnect(c); /* destroys the kind too */
                client_fail(e, "%s", why);
                goto out;
        }
        atomic_store(&kinds[device], k);
out:
        pthread_mutex_unlock(&lock);
        return k;
}

void *alloc_kind_cuda_malloc(size_t size, int device, void *stream) {
        struct alloc_memkind *k;

        (void)stream;
        if (device < 0 || device >= CUDA_DEVICES_MAX) {
                client_fail(-EINVAL, "CUDA device %d is out of 0..%d", device, CUDA_DEVICES_MAX - 1);
                return NULL;
        }
        k = atomic_load(&kinds[device]);
        if (!k && !(k = kind_for(device)))
                return NULL;
        return alloc_kind_malloc(k, size);
}

void alloc_kind_cuda_free(void *ptr, size_t size, int device, void *stream) {
        struct alloc_memkind *k = alloc_kind_detect(ptr);

        (void)size, (void)device, (void)stream;
        /* Never free(3): a pointer that is no kind's here is no host heap's either. */
        if (k)
                alloc_kind_free(k, ptr);
}
