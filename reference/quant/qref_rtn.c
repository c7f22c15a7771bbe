/*
 * Round-to-nearest quantization with the GPTQ repository's quantizer (see qref_rtn.h for
 * the formulas and their source). The steps below keep the original's float32 operation
 * order: the scale is (xmax - xmin) / maxq, and codes divide by the scale (x / scale), never
 * multiply by a reciprocal, because x * (1 / scale) rounds differently for some inputs.
 */
#include "quant/qref_rtn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"

static int rtn_maxq(int bits)
{
    return (1 << bits) - 1;
}

qref_status qref_rtn_find_params(const char *name, size_t row, const float *values, size_t count,
                                 int bits, bool sym, qref_rtn_params *out, qref_error *err)
{
    if (bits < QREF_RTN_MIN_BITS || bits > QREF_RTN_MAX_BITS)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: bits %d is out of range, expected 2..8",
                              name, bits);
    if (count == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: row %zu: empty slice, expected at least one value",
                              name, row);
    const int maxq = rtn_maxq(bits);

    /* Step 1: range with zero forced in: xmin = min(min(x), 0), xmax = max(max(x), 0). */
    float xmin = 0.0f;
    float xmax = 0.0f;
    for (size_t j = 0; j < count; j++) {
        float v = values[j];
        if (!isfinite(v))
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: row %zu: value %g at slice offset %zu is not finite, expected a finite weight",
                                  name, row, (double)v, j);
        if (v < xmin)
            xmin = v;
        if (v > xmax)
            xmax = v;
    }

    /* Step 2 (sym): a range symmetric around zero, but a row without negatives keeps xmin = 0. */
    if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0.0f)
            xmin = -xmax;
    }

    /* Step 3: an all-zero slice gets the range [-1, 1], so its scale is never zero. */
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }

    /* Step 4: scale = (xmax - xmin) / maxq, two float32 operations. */
    float scale = (xmax - xmin) / (float)maxq;
    if (!isfinite(scale) || scale == 0.0f)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: row %zu: range [%g, %g] gives scale %g, expected a finite nonzero float32 scale",
                              name, row, (double)xmin, (double)xmax, (double)scale);

    /* Step 5: the zero point. sym uses (maxq + 1) / 2 whatever the data. */
    float zero = sym ? (float)((maxq + 1) / 2) : nearbyintf(-xmin / scale);
    if (!(zero >= 0.0f && zero <= (float)maxq))
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: row %zu: zero point %g outside [0, %d]",
                              name, row, (double)zero, maxq);

    out->scale = scale;
    out->zero = zero;
    return QREF_OK;
}

uint8_t qref_rtn_quantize_value(float x, qref_rtn_params params, int bits)
{
    const float maxq = (float)rtn_maxq(bits);
    float q = nearbyintf(x / params.scale) + params.zero;
    if (q < 0.0f)
        q = 0.0f;
    if (q > maxq)
        q = maxq;
    return (uint8_t)q;
}

float qref_rtn_dequantize_code(uint8_t code, qref_rtn_params params)
{
    return params.scale * ((float)code - params.zero);
}

/* Quantizes one row: every group's parameters, codes and fake-quantized values. */
static qref_status rtn_quantize_row(const char *name, const float *weight, size_t row,
                                    qref_rtn_result *result, qref_error *err)
{
    const size_t cols = result->cols;
    const size_t group_size = result->group_size;
    for (size_t g = 0; g < result->groups; g++) {
        const size_t first = row * cols + g * group_size;
        qref_rtn_params params;
        qref_status status = qref_rtn_find_params(name, row, weight + first, group_size, result->bits,
                                                  result->sym, &params, err);
        if (status != QREF_OK)
            return status;

        result->scales[row * result->groups + g] = params.scale;
        result->zeros[row * result->groups + g] = (uint8_t)params.zero;
        for (size_t j = 0; j < group_size; j++) {
            uint8_t code = qref_rtn_quantize_value(weight[first + j], params, result->bits);
            result->codes[first + j] = code;
            result->dequant[first + j] = qref_rtn_dequantize_code(code, params);
        }
    }
    return QREF_OK;
}

qref_status qref_rtn_quantize(const char *name, const float *weight, size_t rows, size_t cols,
                              const qref_rtn_config *config, qref_rtn_result *out, qref_error *err)
{
    memset(out, 0, sizeof *out);

    /* Step 1: validate the configuration against the tensor's shape. */
    if (config->bits < QREF_RTN_MIN_BITS || config->bits > QREF_RTN_MAX_BITS)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: bits %d is out of range, expected 2..8",
                              name, config->bits);
    if (rows == 0 || cols == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: shape [%zu, %zu] is empty, expected a nonempty weight",
                              name, rows, cols);
    size_t group_size = cols;
    if (config->group_size != 0 && config->group_size != -1) {
        if (config->group_size < 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: group size %ld is invalid, expected a positive number, or -1 or 0 for one group per row",
                                  name, config->group_size);
        group_size = (size_t)config->group_size;
        if (cols % group_size != 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: group size %zu does not divide the row width %zu, expected a divisor of %zu",
                                  name, group_size, cols, cols);
    }
    uint64_t count;
    if (!qref_mul_u64(rows, cols, &count) || count > SIZE_MAX / sizeof(float))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: shape [%zu, %zu] is too large", name, rows, cols);

    /* Step 2: allocate [rows][cols] codes and values, [rows][groups] scales and zeros. */
    out->rows = rows;
    out->cols = cols;
    out->group_size = group_size;
    out->groups = cols / group_size;
    out->bits = config->bits;
    out->sym = config->sym;
    out->codes = malloc((size_t)count);
    out->dequant = malloc((size_t)count * sizeof(float));
    out->scales = malloc(rows * out->groups * sizeof(float));
    out->zeros = malloc(rows * out->groups);
    if (out->codes == NULL || out->dequant == NULL || out->scales == NULL || out->zeros == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the RTN result for shape [%zu, %zu]",
                              name, rows, cols);

    /* Step 3: rows in parallel. Rows are independent, so the thread count changes nothing.
     * A min reduction finds the lowest failing row, whose error is then rebuilt serially. */
    long first_failed = (long)rows;
#pragma omp parallel for schedule(static) reduction(min : first_failed)
    for (long row = 0; row < (long)rows; row++) {
        if (rtn_quantize_row(name, weight, (size_t)row, out, NULL) != QREF_OK && row < first_failed)
            first_failed = row;
    }
    if (first_failed < (long)rows)
        return rtn_quantize_row(name, weight, (size_t)first_failed, out, err);
    return QREF_OK;
}

void qref_rtn_result_free(qref_rtn_result *result)
{
    if (result == NULL)
        return;
    free(result->codes);
    free(result->scales);
    free(result->zeros);
    free(result->dequant);
    memset(result, 0, sizeof *result);
}
