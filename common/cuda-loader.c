/* SPDX-License-Identifier: MIT */
/*
 * The CUDA driver loader (cuda-loader.h).  Library code: it never logs, it says
 * why in a string the caller may print.
 */
#include "cuda-loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char *status_name(CUdriverProcAddressQueryResult st) {
        switch (st) {
        case CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND:
                return "not found";
        case CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT:
                return "newer than this driver";
        default:
                return "unavailable";
        }
}

void cuda_error(const struct cuda *cu, CUresult r, const char *what, char *buf, size_t size) {
        const char *name = NULL, *text = NULL;

        if (cu && cu->cuGetErrorName)
                cu->cuGetErrorName(r, &name);
        if (cu && cu->cuGetErrorString)
                cu->cuGetErrorString(r, &text);
        if (name)
                snprintf(buf, size, "%s: %s (%s)", what, name, text ? text : "no description");
        else
                snprintf(buf, size, "%s: CUDA error %d", what, (int)r);
}

/* The answers that mean "this machine has no GPU", in the words an operator needs. */
static int no_gpu(CUresult r, const char *soname, char *why, size_t whysize) {
        if (r == CUDA_ERROR_STUB_LIBRARY)
                snprintf(why, whysize,
                         "no GPU: %s is the CUDA toolkit's stub library, not a driver (CUDA_ERROR_STUB_LIBRARY); "
                         "install the NVIDIA driver or take the stubs directory out of the library path",
                         soname);
        else if (r == CUDA_ERROR_NO_DEVICE)
                snprintf(why, whysize, "no GPU: the NVIDIA driver finds no CUDA device (CUDA_ERROR_NO_DEVICE)");
        else
                return 0;
        return -ENODEV;
}

int cuda_open(struct cuda *cu, const char *soname, char *why, size_t whysize) {
        PFN_cuGetProcAddress_v12000 get_proc;
        PFN_cuInit_v2000 init = NULL;
        CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SUCCESS;
        CUresult r;
        void *lib;

        memset(cu, 0, sizeof(*cu));
        /* Kept open for the life of the process: the driver cannot be unloaded safely. */
        lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
                snprintf(why, whysize, "no GPU: %s cannot be loaded (%s); the NVIDIA driver provides it", soname,
                         dlerror());
                return -ENODEV;
        }
        get_proc = (PFN_cuGetProcAddress_v12000)dlsym(lib, "cuGetProcAddress_v2");
        if (!get_proc) {
                snprintf(why, whysize,
                         "the NVIDIA driver's %s is older than CUDA 12.0 (it has no cuGetProcAddress_v2); upgrade "
                         "the driver",
                         soname);
                return -ENOSYS;
        }
        r = get_proc("cuInit", (void **)&init, 2000, CU_GET_PROC_ADDRESS_DEFAULT, &st);
        if (r == CUDA_SUCCESS && init)
                r = init(0);
        if (no_gpu(r, soname, why, whysize) < 0)
                return -ENODEV;
        if (r != CUDA_SUCCESS || !init) {
                snprintf(why, whysize, "CUDA cannot be used: cuInit failed with CUDA error %d", (int)r);
                return -ENODEV;
        }
#define CUDA_LOAD(name, version)                                                                                       \
        r = get_proc(#name, (void **)&cu->name, version, CU_GET_PROC_ADDRESS_DEFAULT, &st);                            \
        if (r != CUDA_SUCCESS || !cu->name) {                                                                          \
                snprintf(why, whysize, "the NVIDIA driver lacks %s (CUDA %d.%d API: %s); upgrade the driver", #name,   \
                         version / 1000, version % 1000 / 10, status_name(st));                                        \
                return -ENOSYS;                                                                                        \
        }
        CUDA_FUNCS(CUDA_LOAD)
#undef CUDA_LOAD
        if ((r = cu->cuDriverGetVersion(&cu->driver_version)) != CUDA_SUCCESS) {
                cuda_error(cu, r, "CUDA cannot be used: cuDriverGetVersion", why, whysize);
                return -ENODEV;
        }
        r = cu->cuDeviceGetCount(&cu->ndevices);
        if (r == CUDA_SUCCESS && cu->ndevices == 0)
                r = CUDA_ERROR_NO_DEVICE;
        if (no_gpu(r, soname, why, whysize) < 0)
                return -ENODEV;
        if (r != CUDA_SUCCESS) {
                cuda_error(cu, r, "CUDA cannot be used: cuDeviceGetCount", why, whysize);
                return -ENODEV;
        }
        return 0;
}

static struct cuda driver;
static const struct cuda *loaded;
static char load_why[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
        if (cuda_open(&driver, "libcuda.so.1", load_why, sizeof(load_why)) == 0)
                loaded = &driver;
}

const struct cuda *cuda_get(const char **why) {
        pthread_once(&once, load);
        if (why)
                *why = loaded ? NULL : load_why;
        return loaded;
}
