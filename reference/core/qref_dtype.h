/*
 * Element types of stored tensors and the conversions the reference code needs.
 *
 * Conversions to f32 are exact (every f16, bf16 and f8 value is representable in f32);
 * conversions from f32 round to nearest, ties to even, as PyTorch's .half() and
 * .bfloat16() do. Source buffers may be unaligned (mmapped files), so every load goes
 * through memcpy.
 */
#ifndef QREF_DTYPE_H
#define QREF_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"

typedef enum qref_dtype {
    QREF_DTYPE_BOOL,
    QREF_DTYPE_U8,
    QREF_DTYPE_I8,
    QREF_DTYPE_F8_E4M3,
    QREF_DTYPE_F8_E5M2,
    QREF_DTYPE_I16,
    QREF_DTYPE_U16,
    QREF_DTYPE_F16,
    QREF_DTYPE_BF16,
    QREF_DTYPE_I32,
    QREF_DTYPE_U32,
    QREF_DTYPE_F32,
    QREF_DTYPE_F64,
    QREF_DTYPE_I64,
    QREF_DTYPE_U64,
    QREF_DTYPE_COUNT
} qref_dtype;

/* Size of one element in bytes. */
size_t qref_dtype_size(qref_dtype dtype);

/* The safetensors spelling ("F32", "BF16", ...). */
const char *qref_dtype_name(qref_dtype dtype);

/* Parses a safetensors dtype string; returns 0 on success, -1 when the name is unknown. */
int qref_dtype_parse(const char *name, qref_dtype *out);

/* Nonzero for F8, F16, BF16, F32 and F64. */
int qref_dtype_is_float(qref_dtype dtype);

float qref_f16_to_f32(uint16_t h);
float qref_bf16_to_f32(uint16_t b);
uint16_t qref_f32_to_f16(float f);
uint16_t qref_f32_to_bf16(float f);
float qref_f8_e4m3_to_f32(uint8_t v);
float qref_f8_e5m2_to_f32(uint8_t v);

/* Reads little-endian scalars from a possibly unaligned address. */
uint16_t qref_load_u16(const void *p);
uint32_t qref_load_u32(const void *p);
uint64_t qref_load_u64(const void *p);
float qref_load_f32(const void *p);
void qref_store_u16(void *p, uint16_t v);
void qref_store_u32(void *p, uint32_t v);
void qref_store_u64(void *p, uint64_t v);
void qref_store_f32(void *p, float v);

/*
 * Converts count elements of a float dtype (F8, F16, BF16, F32, F64) at src to f32 at dst.
 * Integer dtypes are converted by value. Returns QREF_OK, or QREF_ERR_UNSUPPORTED for BOOL.
 */
qref_status qref_convert_to_f32(qref_dtype dtype, const void *src, size_t count, float *dst,
                                qref_error *err);

#endif
