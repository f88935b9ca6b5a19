/* SPDX-License-Identifier: MIT */
#ifndef ALLOCD_PY_DLPACK_H
#define ALLOCD_PY_DLPACK_H

/*
 * The few DLPack declarations the binding needs, from the DLPack 1.0 specification
 * (https://dmlc.github.io/dlpack/latest/c_api.html, include/dlpack/dlpack.h of
 * https://github.com/dmlc/dlpack, tag v1.0), whose ABI is stable: DLTensor and DLManagedTensor are
 * unchanged since 0.5, DLManagedTensorVersioned is new in 1.0.  Debian 12's libdlpack-dev is 0.6,
 * which lacks the versioned struct and its read-only flag, so they are declared here rather than
 * taken from it.
 */
#include <stdint.h>

#define DLPACK_MAJOR_VERSION 1
#define DLPACK_MINOR_VERSION 0

typedef struct {
        uint32_t major;
        uint32_t minor;
} DLPackVersion;

typedef enum {
        kDLCPU = 1,
        kDLCUDA = 2,
        kDLCUDAHost = 3,
} DLDeviceType;

typedef struct {
        DLDeviceType device_type;
        int32_t device_id;
} DLDevice;

typedef enum {
        kDLInt = 0,
        kDLUInt = 1,
        kDLFloat = 2,
        kDLBfloat = 4,
        kDLComplex = 5,
        kDLBool = 6,
} DLDataTypeCode;

typedef struct {
        uint8_t code;
        uint8_t bits;
        uint16_t lanes;
} DLDataType;

typedef struct {
        void *data;
        DLDevice device;
        int32_t ndim;
        DLDataType dtype;
        int64_t *shape;
        int64_t *strides; /* in elements */
        uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
        DLTensor dl_tensor;
        void *manager_ctx;
        void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

#define DLPACK_FLAG_BITMASK_READ_ONLY (UINT64_C(1) << 0)

typedef struct DLManagedTensorVersioned {
        DLPackVersion version;
        void *manager_ctx;
        void (*deleter)(struct DLManagedTensorVersioned *self);
        uint64_t flags;
        DLTensor dl_tensor;
} DLManagedTensorVersioned;

#endif
