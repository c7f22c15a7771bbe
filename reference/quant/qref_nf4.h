/*
 * bitsandbytes' reference quantizers: blockwise absmax 4-bit quantization (NF4 or FP4, the
 * QLoRA base-model quantization), double quantization of the block scales, and LLM.int8's
 * row-wise absmax int8 quantization.
 *
 * Sources: bitsandbytes-foundation/bitsandbytes, the CUDA kernel kQuantizeBlockwise with
 * dQuantizeNF4, dQuantizeFP4 and dQuantize (csrc/cuda/blockwise_quantization.cu),
 * functional.quantize_4bit (double quantization: offset = absmax.mean(), then
 * quantize_blockwise(absmax - offset, blocksize=256) with the signed dynamic map),
 * Int8Params._quantize and the PyTorch int8_vectorwise_quant (backends/default/ops.py).
 * QLoRA (arXiv 2305.14314) quantizes its base model with NF4, blocksize 64 and double
 * quantization.
 *
 * 4-bit, per block of blocksize consecutive values of the row-major weight:
 *   absmax = max |w| (f32); x = w * (1.0f / absmax) (f32, a multiply by the reciprocal);
 *   code = the NF4 or FP4 decision tree of the kernel (strict > against f32 thresholds, the
 *   midpoints of adjacent code values, so a tie goes to the lower code). An all-zero block has
 *   absmax 0 and x = 0 * inf = NaN, which the trees send to code 0 (NF4 -1, FP4 +0).
 *   Packing: element 2i in the high nibble of byte i; an odd count pads with the code of 0.
 * Double quantization: offset = mean(absmax) (computed here in double, in index order, then
 *   rounded to f32; torch's GPU mean may differ in the last bit, and readers use the stored
 *   offset either way); a = absmax - offset (f32); per 256 values m = max |a| and
 *   code = dQuantize(dynamic map, a * (1.0f / m)), the kernel's binary search.
 * LLM.int8, per row: the weight is first rounded to f16 (Int8Params._quantize); SCB = max |w16|
 *   (f32); q = round-half-even(w16 * (127.0f / SCB)) (f32). A zero row stores SCB 0 and codes 0.
 *   The CUDA kernel divides with __fdividef, which may flip a code whose product lies within
 *   an ulp of a half-integer; this follows the PyTorch backend.
 *
 * Inputs are f32 values of the original weights (bf16 and f16 convert exactly), so the codes
 * are those bitsandbytes computes from the original dtype.
 */
#ifndef QREF_NF4_H
#define QREF_NF4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "formats/qref_bnb.h"

/* dQuantizeNF4: the NF4 code of a scaled value x (NaN gives 0). */
uint8_t qref_nf4_quantize_value(float x);

/* dQuantizeFP4: sign bit 8 for x < 0, magnitude code from |x| (NaN and -0 give 0). */
uint8_t qref_fp4_quantize_value(float x);

/* dQuantize<0>: the code of x in a sorted 256-entry map by the kernel's binary search. */
uint8_t qref_dynamic_quantize_value(const float map[256], float x);

typedef struct qref_nf4_config {
    qref_bnb_quant_type type;
    int64_t blocksize;        /* a power of two in [32, 4096]; bitsandbytes' default is 64 */
    bool double_quant;        /* compress_statistics: scales to 8 bits in blocks of 256 */
} qref_nf4_config;

typedef struct qref_nf4_result {
    size_t n;                 /* values quantized */
    size_t blocks;            /* ceil(n / blocksize) */
    uint8_t *packed;          /* [(n + 1) / 2], high nibble first */
    float *absmax;            /* [blocks], the f32 block scales before double quantization */
    /* double quantization only */
    uint8_t *absmax_codes;    /* [blocks] */
    size_t nested_blocks;     /* ceil(blocks / 256) */
    float *nested_absmax;     /* [nested_blocks] */
    float nested_map[256];    /* qref_bnb_dynamic_map */
    float offset;             /* mean of absmax */
} qref_nf4_result;

/*
 * Quantizes weight[0..n) (row-major) blockwise. name labels errors. Fails on a non-finite
 * value, a blocksize outside [32, 4096] or not a power of two, and out of memory. Free out with
 * qref_nf4_result_free, also after a failure.
 */
qref_status qref_nf4_quantize(const char *name, const float *weight, size_t n, const qref_nf4_config *config,
                              qref_nf4_result *out, qref_error *err);

void qref_nf4_result_free(qref_nf4_result *result);

/*
 * LLM.int8 row-wise quantization of weight[rows][cols] into q[rows][cols] and scb[rows].
 * Fails on a non-finite value or one that overflows f16 (|w| > 65504).
 */
qref_status qref_int8_quantize(const char *name, const float *weight, int64_t rows, int64_t cols, int8_t *q,
                               float *scb, qref_error *err);

#endif
