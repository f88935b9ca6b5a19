/* SPDX-License-Identifier: MIT */
/*
 * The CUDA driver loader (cuda-loader.h).  Library code: it never logs, it says
 * why in a string the caller may print.
 */
#include "cuda-loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
        /* The error's name is wanted before cuInit, whose failure it names; neither needs cuInit. */
        get_proc("cuGetErrorName", (void **)&cu->cuGetErrorName, 6000, CU_GET_PROC_ADDRESS_DEFAULT, &st);
        get_proc("cuGetErrorString", (void **)&cu->cuGetErrorString, 6000, CU_GET_PROC_ADDRESS_DEFAULT, &st);
        r = get_proc("cuInit", (void **)&init, 2000, CU_GET_PROC_ADDRESS_DEFAULT, &st);
        if (r == CUDA_SUCCESS && !init)
                r = CUDA_ERROR_NOT_FOUND;
        if (r == CUDA_SUCCESS)
                r = init(0);
        if (no_gpu(r, soname, why, whysize) < 0)
                return -ENODEV;
        if (r != CUDA_SUCCESS) {
                /* A driver that is there and fails (e.g. CUDA_ERROR_SYSTEM_NOT_READY: the fabric manager is not
                 * running) is a broken GPU, not a machine without one. */
                cuda_error(cu, r, "CUDA cannot be used: cuInit", why, whysize);
                return -EIO;
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
                return -EIO;
        }
        r = cu->cuDeviceGetCount(&cu->ndevices);
        if (r == CUDA_SUCCESS && cu->ndevices == 0)
                r = CUDA_ERROR_NO_DEVICE;
        if (no_gpu(r, soname, why, whysize) < 0)
                return -ENODEV;
        if (r != CUDA_SUCCESS) {
                cuda_error(cu, r, "CUDA cannot be used: cuDeviceGetCount", why, whysize);
                return -EIO;
        }
        return 0;
}

/*
 * The process's driver.  A failed load is kept (every caller gets the same
 * answer and the same words) until cuda_retry(): the driver may be installed
 * or its module loaded after allocd started, and SIGHUP is the operator's way
 * to say so.  Once loaded, the driver stays for the life of the process.
 * Reasons are kept, one of each, and never freed, so a pointer handed out
 * stays valid whatever a later retry says, and the same words are the same
 * pointer.
 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct cuda driver;
static const struct cuda *_Atomic loaded;
static atomic_bool tried, retry;
static int load_err;
static const char *load_why;
static pid_t loaded_by; /* the process whose cuInit succeeded: the driver is not fork-safe */
static struct reason {
        struct reason *next;
        char text[];
} * reasons;

static void load(void) {
        static char why[512];
        static struct cuda attempt;
        struct reason *k;
        int r = cuda_open(&attempt, "libcuda.so.1", why, sizeof(why));

        if (r == 0) {
                driver = attempt;
                loaded_by = getpid();
                atomic_store(&loaded, &driver);
                return;
        }
        load_err = r;
        for (k = reasons; k && strcmp(k->text, why); k = k->next)
                ;
        if (!k && (k = malloc(sizeof(*k) + strlen(why) + 1))) {
                strcpy(k->text, why);
                k->next = reasons;
                reasons = k;
        }
        load_why = k ? k->text : "CUDA cannot be used: out of memory for the reason why";
}

int cuda_load(const struct cuda **cu, const char **why) {
        const struct cuda *l = atomic_load(&loaded);
        int r;

        if (!l) {
                pthread_mutex_lock(&lock);
                if (!(l = atomic_load(&loaded)) && (!atomic_load(&tried) || atomic_exchange(&retry, false))) {
                        load();
                        atomic_store(&tried, true);
                        l = atomic_load(&loaded);
                }
                r = l ? 0 : load_err;
                if (why)
                        *why = l ? NULL : load_why;
                pthread_mutex_unlock(&lock);
        } else if (getpid() != loaded_by) {
                /* A child of fork() (without exec) of a process that initialised the driver: any call may fail,
                 * hang or crash there, so none is made; its pinned memfd pools are plain locked memory. */
                l = NULL;
                r = -EIO;
                if (why)
                        *why = "CUDA cannot be used in a child of fork() of a process that initialised it; exec a "
                               "program to use CUDA in a new process";
        } else {
                r = 0;
                if (why)
                        *why = NULL;
        }
        if (cu)
                *cu = l;
        return r;
}

const struct cuda *cuda_get(const char **why) {
        const struct cuda *cu;

        cuda_load(&cu, why);
        return cu;
}

void cuda_retry(void) {
        if (!atomic_load(&loaded))
                atomic_store(&retry, true);
}
