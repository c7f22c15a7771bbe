/*
 * Round-to-nearest weight quantization with AWQ's pseudo quantizer, the function AWQ applies
 * after its activation-aware scaling and that its RTN baseline uses alone:
 * pseudo_quantize_tensor in mit-han-lab/llm-awq awq/quantize/quantizer.py and in AutoAWQ
 * awq/quantize/quantizer.py (AwqQuantizer.pseudo_quantize_tensor). AutoAWQ casts each linear
 * to f16 before quantizing it (_apply_quant: linear_layer.half()), so every step runs in f16.
 *
 * A weight W[rows][cols] (PyTorch's nn.Linear layout: rows = out_features, cols =
 * in_features) is cut into groups of G consecutive columns of one row. With w the f16 weights
 * of one group and b bits:
 *
 *   zero_point true (asymmetric, codes 0 .. 2^b - 1):
 *     max_int = 2^b - 1
 *     scale = clamp_min(max(w) - min(w), 1e-5) / max_int      zero is NOT forced into range
 *     zero  = clamp(-round(min(w) / scale), 0, max_int)
 *     q     = clamp(round(w / scale) + zero, 0, max_int)
 *     w_hat = (q - zero) * scale
 *   zero_point false (symmetric, signed codes -2^(b-1) .. 2^(b-1) - 1):
 *     scale = clamp_min(max(|w|), 1e-5) / (2^(b-1) - 1)
 *     q     = clamp(round(w / scale), -2^(b-1), 2^(b-1) - 1)
 *     w_hat = q * scale
 *
 * Every operation is one PyTorch f16 operation, computed in f32 and rounded to f16
 * (round-half-to-even), as PyTorch evaluates f16 tensors on CPU and GPU. f32 represents each
 * product of two f16 values exactly, and its sums and quotients round to the same f16 value
 * that a direct rounding gives, because f32 has at least 2 * 11 + 2 significant bits. The
 * clamp bound 1e-5 acts as its f16 value 1.0013580322265625e-5: no f16 value lies between
 * the two, so clamping in f32 and storing in f16 gives the same result as clamping in f16.
 * round() is round-half-to-even (torch.round). Because zeros are
 * clamped to [0, max_int], a group of only positive (or only negative) values gets zero 0
 * (or max_int) and its top (or bottom) values clip.
 *
 * Stored form: codes in 0 .. 2^b - 1 with a zero point per group, so both branches dequantize
 * as (q - zero) * scale. The symmetric branch stores q + 2^(b-1) with zero 2^(b-1) (AutoAWQ
 * itself writes no packed file for it; see formats/qref_awq.h).
 *
 * Known limits: group_size -1 (one group per row) is accepted; llm-awq's own default is
 * 128. The symmetric branch of llm-awq raises (it references an undefined variable); this
 * follows AutoAWQ's working version of it.
 */
#ifndef QREF_AWQ_RTN_H
#define QREF_AWQ_RTN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"

#define QREF_AWQ_RTN_MIN_BITS 2
#define QREF_AWQ_RTN_MAX_BITS 8

typedef struct qref_awq_rtn_config {
    int bits;         /* 2..8; the AWQ packed layouts hold 4 */
    long group_size;  /* columns per group; -1 means one group per row */
    bool zero_point;  /* true: asymmetric; false: symmetric */
} qref_awq_rtn_config;

/* Output of qref_awq_rtn_quantize; every array is row-major and owned by the result. */
typedef struct qref_awq_rtn_result {
    size_t rows;
    size_t cols;
    size_t groups;       /* groups per row */
    size_t group_size;   /* columns per group */
    int bits;
    bool zero_point;
    uint8_t *codes;      /* [rows][cols], 0 .. 2^bits - 1 (symmetric: signed code + 2^(bits-1)) */
    uint8_t *zeros;      /* [rows][groups] (symmetric: 2^(bits-1)) */
    uint16_t *scales;    /* [rows][groups], f16 bits */
    uint16_t *dequant;   /* [rows][cols], f16 bits of w_hat, the fake-quantized weight */
} qref_awq_rtn_result;

/*
 * Quantizes weight[rows][cols] (f32; rounded to f16 first, as AutoAWQ's .half() does) and
 * fills out, which the caller frees with qref_awq_rtn_result_free, also after a failure.
 * The group size must divide cols. Fails naming the row and column on a weight that is not
 * finite or becomes infinite in f16, and on a group whose scale is not finite. Rows run in
 * parallel with OpenMP; the result does not depend on the thread count, and a failure reports
 * the lowest failing row.
 */
qref_status qref_awq_rtn_quantize(const char *name, const float *weight, size_t rows, size_t cols,
                                  const qref_awq_rtn_config *config, qref_awq_rtn_result *out, qref_error *err);

void qref_awq_rtn_result_free(qref_awq_rtn_result *result);

#endif
