/* SPDX-License-Identifier: MIT */
/* cuda_get() and cuda_load() for builds without the CUDA toolkit (meson -Dcuda=disabled, or no headers found). */
#include "cuda-loader.h"

#include <errno.h>

int cuda_load(const struct cuda **cu, const char **why) {
        if (cu)
                *cu = NULL;
        if (why)
                *why = "no GPU support: this build of allocd was made without the CUDA toolkit (meson -Dcuda)";
        return -ENODEV;
}

const struct cuda *cuda_get(const char **why) {
        const struct cuda *cu;

        cuda_load(&cu, why);
        return cu;
}

void cuda_retry(void) {
}
