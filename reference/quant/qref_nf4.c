/*
 * bitsandbytes' blockwise 4-bit quantization with optional double quantization, and
 * LLM.int8's row-wise quantization (quant/qref_nf4.h has the arithmetic and its sources).
 */
#include "quant/qref_nf4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"

/* ---- scalar quantizers -------------------------------------------------------------------- */

/*
 * dQuantizeNF4's thresholds, the midpoints of adjacent NF4 values as the kernel's f32 literals.
 * Its decision tree compares x > threshold at every node, so the code it returns is the number
 * of thresholds strictly below x; a NaN compares false everywhere and gets 0.
 */
static const float nf4_thresholds[15] = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
};

/* dQuantizeFP4's thresholds on |x|, ascending, and the magnitude code of each interval. */
static const float fp4_thresholds[7] = {
    0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f, 0.4166667f, 0.583333f, 0.8333333f,
};
static const uint8_t fp4_magnitude_codes[8] = {0, 1, 6, 7, 4, 5, 2, 3};

uint8_t qref_nf4_quantize_value(float x)
{
    uint8_t code = 0;
    for (int k = 0; k < 15; k++)
        code += x > nf4_thresholds[k];
    return code;
}

uint8_t qref_fp4_quantize_value(float x)
{
    uint8_t sign = x < 0.0f ? 8 : 0;
    float magnitude = fabsf(x);
    int rank = 0;
    for (int k = 0; k < 7; k++)
        rank += magnitude > fp4_thresholds[k];
    return (uint8_t)(sign + fp4_magnitude_codes[rank]);
}

uint8_t qref_dynamic_quantize_value(const float map[256], float x)
{
    /* seven halving steps from the middle entry, remembering the last entries passed on each side */
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f;
    float value = map[pivot];
    for (int step = 64; step > 0; step >>= 1) {
        if (x > value) {
            lower_pivot = pivot;
            lower = value;
            pivot += step;
        } else {
            upper_pivot = pivot;
            upper = value;
            pivot -= step;
        }
        value = map[pivot];
    }
    if (upper_pivot == 255)
        upper = map[upper_pivot];
    if (lower_pivot == 0)
        lower = map[lower_pivot];

    /* then the nearer neighbour by the midpoint, as the kernel computes it */
    if (x > value) {
        float midpoint = (upper + value) * 0.5f;
        return (uint8_t)(x > midpoint ? upper_pivot : pivot);
    }
    float midpoint = (lower + value) * 0.5f;
    return (uint8_t)(x < midpoint ? lower_pivot : pivot);
}

/* ---- 4-bit blockwise ---------------------------------------------------------------------- */

void qref_nf4_result_free(qref_nf4_result *result)
{
    free(result->packed);
    free(result->absmax);
    free(result->absmax_codes);
    free(result->nested_absmax);
    memset(result, 0, sizeof *result);
}

/* Quantizes absmax[0..blocks) - offset to 8-bit codes in blocks of 256 (quantize_blockwise's kernel). */
static void quantize_scales(qref_nf4_result *out)
{
    /* offset = mean(absmax), then a = absmax - offset in f32 */
    double sum = 0.0;
    for (size_t k = 0; k < out->blocks; k++)
        sum += (double)out->absmax[k];
    out->offset = (float)(sum / (double)out->blocks);
    qref_bnb_dynamic_map(out->nested_map);

    for (size_t b = 0; b < out->nested_blocks; b++) {
        size_t begin = b * 256, end = begin + 256 < out->blocks ? begin + 256 : out->blocks;
        float centered[256];
        float largest = 0.0f;
        for (size_t k = begin; k < end; k++) {
            centered[k - begin] = out->absmax[k] - out->offset;
            largest = fmaxf(largest, fabsf(centered[k - begin]));
        }
        out->nested_absmax[b] = largest;
        float reciprocal = 1.0f / largest;
        for (size_t k = begin; k < end; k++)
            out->absmax_codes[k] = qref_dynamic_quantize_value(out->nested_map, centered[k - begin] * reciprocal);
    }
}

qref_status qref_nf4_quantize(const char *name, const float *weight, size_t n, const qref_nf4_config *config,
                              qref_nf4_result *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    int64_t blocksize = config->blocksize;
    if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: blocksize %lld, expected a power of two in [32, 4096]",
                              name, (long long)blocksize);
    if (n == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: no values to quantize", name);
    for (size_t e = 0; e < n; e++)
        if (!isfinite(weight[e]))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: value %g at [%zu], expected a finite weight", name,
                                  (double)weight[e], e);

    /* Step 1: buffers */
    out->n = n;
    out->blocks = (n + (size_t)blocksize - 1) / (size_t)blocksize;
    out->packed = calloc((n + 1) / 2, 1);
    out->absmax = malloc(out->blocks * sizeof *out->absmax);
    if (config->double_quant) {
        out->nested_blocks = (out->blocks + 255) / 256;
        out->absmax_codes = malloc(out->blocks);
        out->nested_absmax = malloc(out->nested_blocks * sizeof *out->nested_absmax);
    }
    if (out->packed == NULL || out->absmax == NULL ||
        (config->double_quant && (out->absmax_codes == NULL || out->nested_absmax == NULL)))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the codes of %zu values", name, n);

    /* Step 2: per block, absmax, the reciprocal, and the codes (the kernel pads a partial block with 0) */
    for (size_t b = 0; b < out->blocks; b++) {
        size_t begin = b * (size_t)blocksize, end = begin + (size_t)blocksize;
        size_t stop = end < n ? end : n;
        float largest = 0.0f;
        for (size_t e = begin; e < stop; e++)
            largest = fmaxf(largest, fabsf(weight[e]));
        out->absmax[b] = largest;
        float reciprocal = 1.0f / largest;
        size_t padded_stop = stop + ((stop - begin) & 1u);
        for (size_t e = begin; e < padded_stop; e++) {
            float x = (e < n ? weight[e] : 0.0f) * reciprocal;
            uint8_t code = config->type == QREF_BNB_QUANT_NF4 ? qref_nf4_quantize_value(x) : qref_fp4_quantize_value(x);
            out->packed[e / 2] |= (uint8_t)((e & 1u) ? code : code << 4);
        }
    }

    /* Step 3: double quantization of the block scales */
    if (config->double_quant)
        quantize_scales(out);
    return QREF_OK;
}

/* ---- LLM.int8 ----------------------------------------------------------------------------- */

qref_status qref_int8_quantize(const char *name, const float *weight, int64_t rows, int64_t cols, int8_t *q,
                               float *scb, qref_error *err)
{
    for (int64_t o = 0; o < rows; o++) {
        const float *row = weight + (size_t)o * (size_t)cols;

        /* the row in f16, and its absmax */
        float largest = 0.0f;
        for (int64_t i = 0; i < cols; i++) {
            float half = qref_f16_to_f32(qref_f32_to_f16(row[i]));
            if (!isfinite(half))
                return qref_error_set(err, QREF_ERR_INVALID, "%s: value %g at [%lld][%lld] is not finite in f16, "
                                      "expected |w| <= 65504 (LLM.int8 quantizes the f16 weight)", name,
                                      (double)row[i], (long long)o, (long long)i);
            largest = fmaxf(largest, fabsf(half));
        }
        scb[o] = largest;

        /* codes: round-half-even(w16 * (127 / absmax)) */
        float scale = 127.0f / largest;
        for (int64_t i = 0; i < cols; i++) {
            float half = qref_f16_to_f32(qref_f32_to_f16(row[i]));
            float code = largest > 0.0f ? nearbyintf(half * scale) : 0.0f;
            q[(size_t)o * (size_t)cols + (size_t)i] = (int8_t)code;
        }
    }
    return QREF_OK;
}
