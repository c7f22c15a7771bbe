/*
 * The activation rounding of ggml's CPU matrix product.
 *
 * ggml computes y = W x for a weight W of type T by first converting the activations x to T's
 * vec_dot_type and then taking dot products of the two encoded rows (type_traits_cpu in
 * ggml/src/ggml-cpu/ggml-cpu.c, ggml-org/llama.cpp 2025): F32 weights keep f32 activations,
 * F16 and BF16 weights round them to F16 or BF16, Q4_0, Q5_0, Q8_0 and IQ4_NL quantize them
 * to Q8_0 blocks of 32, Q4_1 and Q5_1 to Q8_1 blocks of 32, and the K-quants Q2_K..Q6_K to
 * Q8_K blocks of 256. The dot products of the encoded rows equal the dot products of the
 * dequantized weights with the decoded activations, up to f32 summation order. A forward pass
 * that rounds each linear's input as here and multiplies by the dequantized weight therefore
 * computes what ggml's CPU backend computes, to float rounding.
 *
 * The quantizers follow ggml's reference versions in ggml/src/ggml-quants.c:
 *   - Q8_0 / Q8_1 (quantize_row_q8_0_ref, quantize_row_q8_1_ref): per block of 32,
 *     d = max|x| / 127, q = roundf(x / d) (ties away from zero), decoded as f16(d) * q;
 *   - Q8_K (quantize_row_q8_K_ref): per block of 256, with m the element of largest magnitude,
 *     s = -127 / m, q = nearest-even(s * x), decoded as (1 / s) * q in f32.
 * NOTE: ggml's x86 and ARM versions of quantize_row_q8_0 round ties to even and compute
 * 1 / d as 127 / max|x|, so a value exactly halfway between two levels can decode one level
 * apart from this reference (a difference of one part in 254 of the block's range, rare).
 */
#ifndef QREF_GGML_VEC_DOT_H
#define QREF_GGML_VEC_DOT_H

#include <stdint.h>

#include "core/qref_error.h"
#include "io/qref_ggml_type.h"

/*
 * The vec_dot_type of a weight type: F32 for F32, F16 for F16, BF16 for BF16, Q8_0, Q8_1 or
 * Q8_K for the quantized types formats/qref_ggml.h decodes. QREF_GGML_TYPE_COUNT for any
 * other type.
 */
uint32_t qref_ggml_vec_dot_type(uint32_t weight_type);

/*
 * Rounds n activations in place to the values the vec_dot_type encodes (F32: unchanged). n
 * must be a multiple of the block size (32 for Q8_0 and Q8_1, 256 for Q8_K); otherwise, or
 * for another type, QREF_ERR_INVALID.
 */
qref_status qref_ggml_round_activations(uint32_t vec_dot_type, float *x, int64_t n, qref_error *err);

#endif
