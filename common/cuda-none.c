/* SPDX-License-Identifier: MIT */
/* cuda_get() for builds without the CUDA toolkit (meson -Dcuda=disabled, or no headers found). */
#include "cuda-loader.h"

const struct cuda *cuda_get(const char **why) {
        if (why)
                *why = "no GPU support: this build of allocd was made without the CUDA toolkit (meson -Dcuda)";
        return NULL;
}
