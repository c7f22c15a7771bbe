/*
 * Round-to-nearest (RTN) weight quantization with the quantizer of the GPTQ repository
 * (IST-DASLab/gptq quant.py, Quantizer.find_params and quantize; the same code is
 * auto_gptq/quantization/quantizer.py in AutoGPTQ), in float32.
 *
 * A weight W[rows][cols] is stored as in PyTorch's nn.Linear: rows = out_features,
 * cols = in_features, row-major. Each row is quantized on its own (per-channel), or in groups
 * of G consecutive columns. For each row or group slice x:
 *
 *   xmin = min(min(x), 0)            xmax = max(max(x), 0)       zero is always in range
 *   sym: xmax = max(|xmin|, xmax), and xmin = -xmax when xmin < 0
 *   xmin == xmax == 0: xmin = -1, xmax = +1
 *   scale = (xmax - xmin) / maxq     maxq = 2^bits - 1
 *   zero  = round(-xmin / scale)     asym
 *   zero  = (maxq + 1) / 2           sym (8 for 4 bits), whatever the data
 *   q     = clamp(round(x / scale) + zero, 0, maxq)
 *   x_hat = scale * (q - zero)
 *
 * round() is round-half-to-even (torch.round). Every step is one IEEE float32 operation in
 * the order above, so the codes, scales and fake-quantized weights equal PyTorch float32
 * CPU results bit for bit.
 *
 * Known limits: the optional MSE grid search of find_params (mse=True) is not implemented
 * (every GPTQ configuration of the LLaMA-3 quantization study leaves it off), and the
 * ternary mode (trits) is not implemented.
 * TODO: the mse=True grid search (80 shrink steps of the range, norm 2.4) of find_params.
 */
#ifndef QREF_RTN_H
#define QREF_RTN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"

#define QREF_RTN_MIN_BITS 2
#define QREF_RTN_MAX_BITS 8

typedef struct qref_rtn_config {
    int bits;       /* 2..8 */
    long group_size; /* columns per group; 0 or -1 means one group per row (per-channel) */
    bool sym;
} qref_rtn_config;

/* Scale and zero point of one row or group, as find_params computes them. */
typedef struct qref_rtn_params {
    float scale;
    float zero; /* an integer value in [0, maxq], kept in float as the original keeps it */
} qref_rtn_params;

/* Output of qref_rtn_quantize; every array is row-major and owned by the result. */
typedef struct qref_rtn_result {
    size_t rows;
    size_t cols;
    size_t groups;      /* groups per row: cols / group_size, or 1 per-channel */
    size_t group_size;  /* columns per group (cols when per-channel) */
    int bits;
    bool sym;
    uint8_t *codes;     /* [rows][cols], each in [0, 2^bits - 1] */
    float *scales;      /* [rows][groups] */
    uint8_t *zeros;     /* [rows][groups] */
    float *dequant;     /* [rows][cols], scale * (q - zero) */
} qref_rtn_result;

/*
 * Computes scale and zero point of count values (one row or group slice) with find_params.
 * name and row name the slice in errors. Fails on a non-finite value, or when the scale
 * overflows or underflows float32 (a range beyond float32, or smaller than about 1e-44).
 */
qref_status qref_rtn_find_params(const char *name, size_t row, const float *values, size_t count,
                                 int bits, bool sym, qref_rtn_params *out, qref_error *err);

/* Returns clamp(round(x / scale) + zero, 0, maxq), the code of one value. */
uint8_t qref_rtn_quantize_value(float x, qref_rtn_params params, int bits);

/* Returns scale * (code - zero), the fake-quantized value of one code. */
float qref_rtn_dequantize_code(uint8_t code, qref_rtn_params params);

/*
 * Quantizes weight[rows][cols] and fills out (which the caller frees with
 * qref_rtn_result_free, also after a failure). name (the tensor name) appears in errors.
 * The group size must divide cols. Rows run in parallel with OpenMP; the result does not
 * depend on the thread count, and a failure reports the lowest failing row.
 */
qref_status qref_rtn_quantize(const char *name, const float *weight, size_t rows, size_t cols,
                              const qref_rtn_config *config, qref_rtn_result *out, qref_error *err);

void qref_rtn_result_free(qref_rtn_result *result);

#endif
