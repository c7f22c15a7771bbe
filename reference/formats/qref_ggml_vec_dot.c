/*
 * ggml's activation rounding before a matrix product; see qref_ggml_vec_dot.h.
 */
#include "formats/qref_ggml_vec_dot.h"

#include <math.h>

#include "core/qref_dtype.h"

uint32_t qref_ggml_vec_dot_type(uint32_t weight_type)
{
    switch (weight_type) {
    case QREF_GGML_TYPE_F32: return QREF_GGML_TYPE_F32;
    case QREF_GGML_TYPE_F16: return QREF_GGML_TYPE_F16;
    case QREF_GGML_TYPE_BF16: return QREF_GGML_TYPE_BF16;
    case QREF_GGML_TYPE_Q4_0:
    case QREF_GGML_TYPE_Q5_0:
    case QREF_GGML_TYPE_Q8_0:
    case QREF_GGML_TYPE_IQ4_NL: return QREF_GGML_TYPE_Q8_0;
    case QREF_GGML_TYPE_Q4_1:
    case QREF_GGML_TYPE_Q5_1: return QREF_GGML_TYPE_Q8_1;
    case QREF_GGML_TYPE_Q2_K:
    case QREF_GGML_TYPE_Q3_K:
    case QREF_GGML_TYPE_Q4_K:
    case QREF_GGML_TYPE_Q5_K:
    case QREF_GGML_TYPE_Q6_K: return QREF_GGML_TYPE_Q8_K;
    default: return QREF_GGML_TYPE_COUNT;
    }
}

/* Q8_0 and Q8_1 values of one block of 32: f16(d) * roundf(x / d) with d = max|x| / 127. */
static void round_block_q8_0(float *x)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    float stored_d = qref_f16_to_f32(qref_f32_to_f16(d));
    for (int j = 0; j < 32; j++)
        x[j] = stored_d * roundf(x[j] * id); /* ggml's reference rounds ties away from zero */
}

/* Q8_K values of one block of 256: (1 / s) * nearest-even(s * x) with s = -127 / (the largest-magnitude x). */
static void round_block_q8_k(float *x)
{
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < 256; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    if (amax == 0.0f) {
        for (int j = 0; j < 256; j++)
            x[j] = 0.0f;
        return;
    }
    float iscale = -127.0f / max;
    float d = 1.0f / iscale;
    for (int j = 0; j < 256; j++) {
        float q = nearbyintf(iscale * x[j]);
        x[j] = d * (q < 127.0f ? q : 127.0f);
    }
}

qref_status qref_ggml_round_activations(uint32_t vec_dot_type, float *x, int64_t n, qref_error *err)
{
    int64_t block = vec_dot_type == QREF_GGML_TYPE_Q8_K ? 256
                  : (vec_dot_type == QREF_GGML_TYPE_Q8_0 || vec_dot_type == QREF_GGML_TYPE_Q8_1) ? 32 : 1;
    if (n < 0 || n % block != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "activations: %lld values do not fill blocks of %lld for %s",
                              (long long)n, (long long)block, qref_ggml_type_name(vec_dot_type));
    switch (vec_dot_type) {
    case QREF_GGML_TYPE_F32:
        return QREF_OK;
    case QREF_GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            x[i] = qref_f16_to_f32(qref_f32_to_f16(x[i]));
        return QREF_OK;
    case QREF_GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            x[i] = qref_bf16_to_f32(qref_f32_to_bf16(x[i]));
        return QREF_OK;
    case QREF_GGML_TYPE_Q8_0:
    case QREF_GGML_TYPE_Q8_1:
        for (int64_t i = 0; i < n; i += 32)
            round_block_q8_0(x + i);
        return QREF_OK;
    case QREF_GGML_TYPE_Q8_K:
        for (int64_t i = 0; i < n; i += 256)
            round_block_q8_k(x + i);
        return QREF_OK;
    default:
        return qref_error_set(err, QREF_ERR_INVALID, "activations: %s is not a vec_dot_type (expected F32, F16, "
                              "BF16, Q8_0, Q8_1 or Q8_K)", qref_ggml_type_name(vec_dot_type));
    }
}
