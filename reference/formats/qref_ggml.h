/*
 * ggml block formats: reference dequantizers for the tensor types of GGUF files.
 *
 * Each supported type is decoded as llama.cpp's scalar dequantize_row_* in
 * ggml/src/ggml-quants.c does (ggml-org/ggml and ggml-org/llama.cpp, 2025-2026), with the same
 * f32 operations in the same order, so that under -ffp-contract=off the output is bit-identical
 * to ggml's. Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K and IQ4_NL. The type table (names, block sizes, bytes per block) is in
 * io/qref_ggml_type.h, included here.
 */
#ifndef QREF_GGML_H
#define QREF_GGML_H

#include <stdbool.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "io/qref_ggml_type.h"
#include "io/qref_gguf.h"

/* True when qref_ggml_dequantize_row decodes this type. */
bool qref_ggml_type_can_dequantize(uint32_t type);

/*
 * Dequantizes n elements of a ggml type from src (n / block_size blocks, which may be
 * unaligned) into dst. An unknown or removed type id, or an n that is negative or not a
 * multiple of the block size, is QREF_ERR_INVALID. A valid type without a dequantizer here
 * (IQ2_XXS, TQ1_0, MXFP4, ...) is QREF_ERR_UNSUPPORTED naming the type. The caller
 * guarantees that src contains qref_ggml_row_bytes(type, n) bytes.
 */
qref_status qref_ggml_dequantize_row(uint32_t type, const void *src, int64_t n, float *dst, qref_error *err);

/*
 * Dequantizes all numel elements of a tensor of a parsed GGUF file into dst (ggml stores the
 * rows back to back, so the tensor is one long row). Errors name the file and the tensor.
 */
qref_status qref_ggml_dequantize_tensor(const qref_gguf *file, const qref_gguf_tensor *tensor, float *dst,
                                        qref_error *err);

#endif
