/*
 * AWQ's pseudo quantizer in f16 (see qref_awq_rtn.h for the formulas and their source).
 * Each PyTorch f16 operation is mirrored as one f32 operation followed by f16_round(), so
 * the codes, scales, zero points and fake-quantized weights equal PyTorch's f16 results bit
 * for bit. Division is a real division (w / scale), never a product with a reciprocal.
 */
#include "quant/qref_awq_rtn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"
#include "core/qref_dtype.h"

/* Rounds x to the nearest f16 value (ties to even) and returns it as f32. */
static float f16_round(float x)
{
    return qref_f16_to_f32(qref_f32_to_f16(x));
}

static float clampf(float x, float low, float high)
{
    return x < low ? low : (x > high ? high : x);
}

/* Quantizes one group of count f16 values (as f32) into codes, f16 w_hat, scale and zero. */
static qref_status quantize_group(const char *name, size_t row, size_t first_col, const float *w, size_t count,
                                  const qref_awq_rtn_config *config, uint8_t *codes, uint16_t *dequant,
                                  uint16_t *scale_out, uint8_t *zero_out, qref_error *err)
{
    const float clamp_min = f16_round(1e-5f);
    float scale, zero = 0.0f, min_int, max_int;

    /* Step 1: the group's scale (and zero point) from its range; zero is not forced in. */
    if (config->zero_point) {
        float low = w[0], high = w[0];
        for (size_t j = 1; j < count; j++) {
            low = fminf(low, w[j]);
            high = fmaxf(high, w[j]);
        }
        min_int = 0.0f;
        max_int = (float)((1 << config->bits) - 1);
        float range = f16_round(high - low);
        if (range < clamp_min)
            range = clamp_min;
        scale = f16_round(range / max_int);
        if (isfinite(scale))
            zero = clampf(-nearbyintf(f16_round(low / scale)), min_int, max_int);
    } else {
        float magnitude = 0.0f;
        for (size_t j = 0; j < count; j++)
            magnitude = fmaxf(magnitude, fabsf(w[j]));
        if (magnitude < clamp_min)
            magnitude = clamp_min;
        min_int = -(float)(1 << (config->bits - 1));
        max_int = (float)((1 << (config->bits - 1)) - 1);
        scale = f16_round(magnitude / max_int);
    }
    if (!isfinite(scale))
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: row %zu, columns %zu..%zu: the range of the group gives scale %g in f16, expected "
                              "a finite scale (a range wider than 65504)",
                              name, row, first_col, first_col + count - 1, (double)scale);

    /* Step 2: codes q = clamp(round(w / scale) [+ zero]) and w_hat = (q - zero) * scale. */
    const int offset = config->zero_point ? 0 : 1 << (config->bits - 1);
    for (size_t j = 0; j < count; j++) {
        float rounded = nearbyintf(f16_round(w[j] / scale));
        float q = config->zero_point ? clampf(f16_round(rounded + zero), min_int, max_int)
                                     : clampf(rounded, min_int, max_int);
        float w_hat = f16_round(f16_round(q - zero) * scale);
        codes[j] = (uint8_t)((int)q + offset);
        dequant[j] = qref_f32_to_f16(w_hat);
    }
    *scale_out = qref_f32_to_f16(scale);
    *zero_out = (uint8_t)((int)zero + offset);
    return QREF_OK;
}

/* Quantizes one row, group by group; w16 is scratch for one group. */
static qref_status quantize_row(const char *name, const float *weight, size_t row, qref_awq_rtn_result *result,
                                const qref_awq_rtn_config *config, float *w16, qref_error *err)
{
    const size_t cols = result->cols, group_size = result->group_size;
    for (size_t g = 0; g < result->groups; g++) {
        const size_t first = row * cols + g * group_size;

        /* Step 0: the weights as f16 (AutoAWQ's linear_layer.half()). */
        for (size_t j = 0; j < group_size; j++) {
            float value = weight[first + j];
            w16[j] = f16_round(value);
            if (!isfinite(w16[j]))
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: weight [%zu][%zu] = %g is %s, expected a finite value within the f16 range "
                                      "(|w| < 65520)",
                                      name, row, g * group_size + j, (double)value,
                                      isfinite(value) ? "infinite in f16" : "not finite");
        }
        qref_status status = quantize_group(name, row, g * group_size, w16, group_size, config, result->codes + first,
                                            result->dequant + first, &result->scales[row * result->groups + g],
                                            &result->zeros[row * result->groups + g], err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

qref_status qref_awq_rtn_quantize(const char *name, const float *weight, size_t rows, size_t cols,
                                  const qref_awq_rtn_config *config, qref_awq_rtn_result *out, qref_error *err)
{
    memset(out, 0, sizeof *out);

    /* Step 1: validate the configuration against the tensor's shape. */
    if (config->bits < QREF_AWQ_RTN_MIN_BITS || config->bits > QREF_AWQ_RTN_MAX_BITS)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: bits %d is out of range, expected %d..%d", name,
                              config->bits, QREF_AWQ_RTN_MIN_BITS, QREF_AWQ_RTN_MAX_BITS);
    if (rows == 0 || cols == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: shape [%zu, %zu] is empty, expected a nonempty weight",
                              name, rows, cols);
    size_t group_size = cols;
    if (config->group_size != -1) {
        if (config->group_size <= 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: group size %ld is invalid, expected a positive number or -1 for one group per "
                                  "row", name, config->group_size);
        group_size = (size_t)config->group_size;
        if (cols % group_size != 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: group size %zu does not divide the row width %zu, expected a divisor of %zu",
                                  name, group_size, cols, cols);
    }
    uint64_t count;
    if (!qref_mul_u64(rows, cols, &count) || count > SIZE_MAX / sizeof(float))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: shape [%zu, %zu] is too large", name, rows, cols);

    /* Step 2: allocate [rows][cols] codes and w_hat, [rows][groups] scales and zeros. */
    out->rows = rows;
    out->cols = cols;
    out->group_size = group_size;
    out->groups = cols / group_size;
    out->bits = config->bits;
    out->zero_point = config->zero_point;
    out->codes = malloc((size_t)count);
    out->dequant = malloc((size_t)count * sizeof *out->dequant);
    out->scales = malloc(rows * out->groups * sizeof *out->scales);
    out->zeros = malloc(rows * out->groups);
    if (out->codes == NULL || out->dequant == NULL || out->scales == NULL || out->zeros == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the AWQ RTN result for shape [%zu, %zu]",
                              name, rows, cols);

    /* Step 3: rows in parallel; rows are independent, so the thread count changes nothing. A
     * min reduction finds the lowest failing row, whose error is then rebuilt serially. */
    long first_failed = (long)rows;
    bool no_memory = false;
#pragma omp parallel reduction(min : first_failed) reduction(|| : no_memory)
    {
        float *w16 = malloc(group_size * sizeof *w16);
        no_memory = w16 == NULL;
#pragma omp for schedule(static)
        for (long row = 0; row < (long)rows; row++) {
            if (w16 != NULL && quantize_row(name, weight, (size_t)row, out, config, w16, NULL) != QREF_OK &&
                row < first_failed)
                first_failed = row;
        }
        free(w16);
    }
    if (no_memory)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate a group of %zu values", name, group_size);
    if (first_failed < (long)rows) {
        float *w16 = malloc(group_size * sizeof *w16);
        if (w16 == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate a group of %zu values", name, group_size);
        qref_status status = quantize_row(name, weight, (size_t)first_failed, out, config, w16, err);
        free(w16);
        return status;
    }
    return QREF_OK;
}

void qref_awq_rtn_result_free(qref_awq_rtn_result *result)
{
    if (result == NULL)
        return;
    free(result->codes);
    free(result->zeros);
    free(result->scales);
    free(result->dequant);
    memset(result, 0, sizeof *result);
}
