/*
 * GPTQ tensors in the AutoGPTQ layout: structure check, unpacking, dequantization and
 * packing of one linear layer. The layout and its sources are described in qref_gptq.h, and
 * the config code is in qref_gptq_config.c.
 *
 * Every packed field is read and written through one rule: the words of a qweight column,
 * or of a qzeros row, form a little-endian bit stream and element k occupies bits
 * [b*k, b*k + b). AutoGPTQ's pack() builds exactly that stream: for 2, 4 and 8 bits word r
 * holds elements r*32/b .. r*32/b + 32/b - 1, and for 3 bits its explicit table puts
 * element 10 at bits 30-31 of w0 plus bit 0 of w1, and element 21 at bit 31 of w1 plus bits
 * 0-1 of w2, which are bits 30-32 and 63-65 of the stream. A stream whose length in * b (or
 * out * b) is not a multiple of 32 ends in one partly used word whose remaining high bits are
 * padding and must be zero.
 */
#include "formats/qref_gptq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"

/* Shape facts of one linear, derived from bits, features and the group size. */
typedef struct gptq_layout {
    int bits;
    unsigned mask;           /* 2^bits - 1 */
    int64_t in_features;
    int64_t out_features;
    int64_t group_size;
    int64_t groups;          /* ceil(in / group_size) */
    int64_t qweight_rows;    /* ceil(in * bits / 32) */
    int64_t qzeros_cols;     /* ceil(out * bits / 32) */
} gptq_layout;

/* Largest feature count accepted, so that every index fits in int32 as g_idx requires. */
#define GPTQ_MAX_FEATURES ((int64_t)1 << 30)

static const char *prefix_or_default(const char *prefix)
{
    return prefix != NULL && prefix[0] != '\0' ? prefix : "linear";
}

/* Formats 'FILE: tensor "NAME"' for messages. A tensor without a name is called prefix.role. */
static const char *tensor_label(const qref_tensor *tensor, const char *prefix, const char *role, char *buf,
                                size_t size)
{
    if (tensor != NULL && tensor->name != NULL) {
        if (tensor->file != NULL)
            snprintf(buf, size, "%s: tensor \"%s\"", tensor->file, tensor->name);
        else
            snprintf(buf, size, "tensor \"%s\"", tensor->name);
    } else {
        snprintf(buf, size, "tensor \"%s.%s\"", prefix_or_default(prefix), role);
    }
    return buf;
}

static qref_status layout_init(const char *prefix, int bits, int64_t in_features, int64_t out_features,
                               int64_t group_size, gptq_layout *layout, qref_error *err)
{
    const char *name = prefix_or_default(prefix);
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: bits %d is not supported, expected 2, 3, 4 or 8 (the AutoGPTQ layout)", name,
                              bits);
    if (in_features <= 0 || in_features > GPTQ_MAX_FEATURES || out_features <= 0 ||
        out_features > GPTQ_MAX_FEATURES)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: features in %lld, out %lld, expected each in 1..%lld", name,
                              (long long)in_features, (long long)out_features, (long long)GPTQ_MAX_FEATURES);
    if (group_size <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: group size %lld, expected a positive number or -1",
                              name, (long long)group_size);

    layout->bits = bits;
    layout->mask = (1u << bits) - 1u;
    layout->in_features = in_features;
    layout->out_features = out_features;
    layout->group_size = group_size > in_features ? in_features : group_size;
    layout->groups = (in_features + layout->group_size - 1) / layout->group_size;
    layout->qweight_rows = (in_features * bits + 31) / 32;
    layout->qzeros_cols = (out_features * bits + 31) / 32;
    return QREF_OK;
}

/* Reads element index of the bit stream whose n-th word sits at base + n * step bytes. */
static unsigned field_get(const uint8_t *base, size_t step, uint64_t index, int bits)
{
    uint64_t bit = (uint64_t)bits * index;
    uint64_t word = bit / 32;
    unsigned shift = (unsigned)(bit % 32);
    uint64_t value = qref_load_u32(base + word * step) >> shift;
    if (shift + (unsigned)bits > 32)
        value |= (uint64_t)qref_load_u32(base + (word + 1) * step) << (32 - shift);
    return (unsigned)(value & ((1u << bits) - 1u));
}

/* ORs value into element index of the same kind of bit stream (the words start zeroed). */
static void field_put(uint8_t *base, size_t step, uint64_t index, int bits, unsigned value)
{
    uint64_t bit = (uint64_t)bits * index;
    uint64_t word = bit / 32;
    unsigned shift = (unsigned)(bit % 32);
    uint8_t *low = base + word * step;
    qref_store_u32(low, qref_load_u32(low) | (uint32_t)((uint64_t)value << shift));
    if (shift + (unsigned)bits > 32) {
        uint8_t *high = base + (word + 1) * step;
        qref_store_u32(high, qref_load_u32(high) | (uint32_t)(value >> (32 - shift)));
    }
}

static float load_scale(qref_dtype dtype, const uint8_t *data, uint64_t index)
{
    switch (dtype) {
    case QREF_DTYPE_F16: return qref_f16_to_f32(qref_load_u16(data + 2 * index));
    case QREF_DTYPE_BF16: return qref_bf16_to_f32(qref_load_u16(data + 2 * index));
    default: return qref_load_f32(data + 4 * index);
    }
}

int64_t qref_gptq_group_size(const qref_gptq_config *config, int64_t in_features)
{
    return config->group_size == -1 ? in_features : (int64_t)config->group_size;
}

/* ---- structure check -------------------------------------------------------------------- */

/* Checks presence, dtype, shape and byte size of one tensor. why explains the expected
 * shape, and a shape error ends with hint unless it is NULL. */
static qref_status check_tensor(const qref_tensor *tensor, const char *prefix, const char *role,
                                qref_dtype dtype, int64_t rows, int64_t cols, int ndim, const char *why,
                                const char *hint, qref_error *err)
{
    char label[512];
    tensor_label(tensor, prefix, role, label, sizeof label);
    if (tensor == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: missing, expected a tensor of dtype %s", label,
                              qref_dtype_name(dtype));
    if (tensor->dtype != dtype)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: dtype %s, expected %s", label,
                              qref_dtype_name(tensor->dtype), qref_dtype_name(dtype));

    char found[256];
    qref_tensor_shape_string(tensor, found, sizeof found);
    bool shape_ok = tensor->ndim == ndim && tensor->shape[0] == rows && (ndim == 1 || tensor->shape[1] == cols);
    if (!shape_ok) {
        char expected[64];
        if (ndim == 1)
            snprintf(expected, sizeof expected, "[%lld]", (long long)rows);
        else
            snprintf(expected, sizeof expected, "[%lld, %lld]", (long long)rows, (long long)cols);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: shape %s, expected %s (%s)%s%s", label, found, expected,
                              why, hint != NULL ? "; hint: " : "", hint != NULL ? hint : "");
    }
    uint64_t numel = (uint64_t)rows * (uint64_t)(ndim == 1 ? 1 : cols);
    if (tensor->data == NULL || tensor->nbytes != numel * qref_dtype_size(dtype))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: holds %llu bytes, expected %llu for shape %s", label,
                              (unsigned long long)tensor->nbytes,
                              (unsigned long long)(numel * qref_dtype_size(dtype)), found);
    return QREF_OK;
}

/* qweight: a wrong row count often means the declared bits differ from the stored ones. */
static qref_status check_qweight(const qref_gptq_linear *linear, const gptq_layout *layout, qref_error *err)
{
    char why[256];
    snprintf(why, sizeof why, "%d-bit packing of %lld input features by %lld output features", layout->bits,
             (long long)layout->in_features, (long long)layout->out_features);

    /* Name the other width only when exactly one of them gives the stored row count. */
    char hint[160];
    const char *hint_text = NULL;
    const qref_tensor *qweight = linear->qweight;
    if (qweight != NULL && qweight->ndim == 2 && qweight->shape[1] == layout->out_features) {
        static const int candidates[] = {2, 3, 4, 8};
        int matches = 0, stored_bits = 0;
        for (size_t k = 0; k < sizeof candidates / sizeof candidates[0]; k++) {
            int64_t rows = (layout->in_features * candidates[k] + 31) / 32;
            if (candidates[k] != layout->bits && rows == qweight->shape[0]) {
                matches++;
                stored_bits = candidates[k];
            }
        }
        if (matches == 1) {
            snprintf(hint, sizeof hint, "the row count matches %d-bit codes but the config declares %d bits",
                     stored_bits, layout->bits);
            hint_text = hint;
        }
    }
    return check_tensor(qweight, linear->prefix, "qweight", QREF_DTYPE_I32, layout->qweight_rows,
                        layout->out_features, 2, why, hint_text, err);
}

/*
 * Checks that the bits after the last of count elements of each bit stream are zero. There
 * are stream_count streams, stream_step bytes apart, each of words words that lie word_step
 * bytes apart. Padding is shorter than one word, so it lies in the last word only.
 */
static qref_status check_padding(const qref_tensor *tensor, const char *prefix, const char *role, int bits,
                                 int64_t count, int64_t words, int64_t stream_count, size_t stream_step,
                                 size_t word_step, bool by_column, qref_error *err)
{
    const uint64_t used = (uint64_t)count * (uint64_t)bits - (uint64_t)(words - 1) * 32u;
    if (used == 32)
        return QREF_OK;
    const uint32_t padding_mask = ~(uint32_t)0 << used;
    for (int64_t s = 0; s < stream_count; s++) {
        const uint8_t *last = tensor->data + (size_t)s * stream_step + (size_t)(words - 1) * word_step;
        uint32_t word = qref_load_u32(last);
        if ((word & padding_mask) != 0) {
            char label[512];
            tensor_label(tensor, prefix, role, label, sizeof label);
            int64_t row = by_column ? words - 1 : s;
            int64_t col = by_column ? s : words - 1;
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: word [%lld][%lld] is 0x%08x, but its bits %u..31 follow the last of %lld "
                                  "%d-bit %s and must be zero (padding bits 0x%08x are set)",
                                  label, (long long)row, (long long)col, word, (unsigned)used, (long long)count,
                                  bits, by_column ? "codes" : "zero points", word & padding_mask);
        }
    }
    return QREF_OK;
}

static qref_status check_g_idx(const qref_gptq_linear *linear, const qref_gptq_config *config,
                               const gptq_layout *layout, qref_error *err)
{
    if (linear->g_idx == NULL)
        return QREF_OK;
    char label[512];
    tensor_label(linear->g_idx, linear->prefix, "g_idx", label, sizeof label);

    /* Without act-order, and with act-order plus static groups, feature i is in group i / G.
     * With act-order alone the groups follow the permuted order, so only their sizes are fixed. */
    bool act_order = config->desc_act || !(config->declared & QREF_GPTQ_KEY_DESC_ACT);
    bool monotone = !act_order || config->static_groups;
    int64_t *counts = NULL;
    if (!monotone) {
        counts = calloc((size_t)layout->groups, sizeof *counts);
        if (counts == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %lld group counters", label,
                                  (long long)layout->groups);
    }

    qref_status status = QREF_OK;
    for (int64_t i = 0; i < layout->in_features && status == QREF_OK; i++) {
        int32_t group = (int32_t)qref_load_u32(linear->g_idx->data + 4 * i);
        if (group < 0 || group >= layout->groups) {
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: value %d at [%lld], expected a group in 0..%lld",
                                    label, group, (long long)i, (long long)layout->groups - 1);
        } else if (monotone && group != i / layout->group_size) {
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: value %d at [%lld], expected %lld = %lld / group size %lld%s", label,
                                    group, (long long)i, (long long)(i / layout->group_size), (long long)i,
                                    (long long)layout->group_size,
                                    config->desc_act ? " (static_groups keeps the original order)"
                                                     : " (desc_act is false)");
        } else if (!monotone) {
            counts[group]++;
        }
    }

    for (int64_t g = 0; !monotone && g < layout->groups && status == QREF_OK; g++) {
        int64_t expected = g + 1 < layout->groups ? layout->group_size
                                                  : layout->in_features - g * layout->group_size;
        if (counts[g] != expected)
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: group %lld holds %lld input features, expected %lld (group size %lld)",
                                    label, (long long)g, (long long)counts[g], (long long)expected,
                                    (long long)layout->group_size);
    }
    free(counts);
    return status;
}

static qref_status check_qzeros_values(const qref_gptq_linear *linear, const qref_gptq_config *config,
                                       const gptq_layout *layout, qref_error *err)
{
    char label[512];
    tensor_label(linear->qzeros, linear->prefix, "qzeros", label, sizeof label);
    const bool v1 = config->format == QREF_GPTQ_FORMAT_V1;
    const unsigned sym_zero = 1u << (layout->bits - 1);
    const size_t row_bytes = (size_t)layout->qzeros_cols * 4;

    for (int64_t g = 0; g < layout->groups; g++) {
        const uint8_t *row = linear->qzeros->data + (size_t)g * row_bytes;
        for (int64_t o = 0; o < layout->out_features; o++) {
            unsigned field = field_get(row, 4, (uint64_t)o, layout->bits);
            if (v1 && field == layout->mask)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: v1 zero-point underflow at [%lld][%lld]: stored field %u (all ones) "
                                      "decodes to zero point %u, outside 0..%u; the writer stored zero point 0 "
                                      "minus one, and AutoGPTQ's pack() then also sets the higher fields of that "
                                      "word to ones. Hint: such data needs format gptq_v2",
                                      label, (long long)g, (long long)o, field, field + 1, layout->mask);
            unsigned zero = v1 ? field + 1 : field;
            if (config->sym && zero != sym_zero) {
                const char *hint = "";
                if (!v1 && field == sym_zero - 1)
                    hint = "; the stored field equals the v1 encoding, so the checkpoint may be v1 read as gptq_v2";
                else if (v1 && field == sym_zero)
                    hint = "; the stored field equals the v2 encoding, so the checkpoint may be gptq_v2 read as v1";
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: zero point %u at [%lld][%lld] (stored field %u, format %s), expected "
                                      "%u for sym=true%s",
                                      label, zero, (long long)g, (long long)o, field,
                                      qref_gptq_format_name(config->format), sym_zero, hint);
            }
        }
    }
    return QREF_OK;
}

static qref_status check_scale_values(const qref_gptq_linear *linear, const gptq_layout *layout, qref_error *err)
{
    char label[512];
    tensor_label(linear->scales, linear->prefix, "scales", label, sizeof label);
    for (int64_t g = 0; g < layout->groups; g++) {
        for (int64_t o = 0; o < layout->out_features; o++) {
            float scale = load_scale(linear->scales->dtype, linear->scales->data,
                                     (uint64_t)(g * layout->out_features + o));
            if (!isfinite(scale) || !(scale > 0.0f))
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: scale %g at [%lld][%lld], expected a finite value > 0", label,
                                      (double)scale, (long long)g, (long long)o);
        }
    }
    return QREF_OK;
}

qref_status qref_gptq_check_linear(const qref_gptq_linear *linear, const qref_gptq_config *config,
                                   qref_error *err)
{
    /* Step 1: the shape facts implied by the config and the expected features. */
    gptq_layout layout;
    if (config->group_size != -1 && config->group_size <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: group_size %ld, expected -1 or a positive number",
                              prefix_or_default(linear->prefix), config->group_size);
    qref_status status = layout_init(linear->prefix, config->bits, linear->in_features, linear->out_features,
                                     qref_gptq_group_size(config, linear->in_features), &layout, err);
    if (status != QREF_OK)
        return status;

    /* Step 2: dtypes and shapes of the four tensors. */
    status = check_qweight(linear, &layout, err);
    if (status != QREF_OK)
        return status;

    char why[256];
    snprintf(why, sizeof why, "%lld groups by %d-bit zero points of %lld output features",
             (long long)layout.groups, layout.bits, (long long)layout.out_features);
    status = check_tensor(linear->qzeros, linear->prefix, "qzeros", QREF_DTYPE_I32, layout.groups,
                          layout.qzeros_cols, 2, why, NULL, err);
    if (status != QREF_OK)
        return status;

    const qref_tensor *scales = linear->scales;
    qref_dtype scale_dtype = QREF_DTYPE_F16;
    if (scales != NULL && (scales->dtype == QREF_DTYPE_BF16 || scales->dtype == QREF_DTYPE_F32))
        scale_dtype = scales->dtype;
    snprintf(why, sizeof why, "%lld groups by %lld output features", (long long)layout.groups,
             (long long)layout.out_features);
    status = check_tensor(scales, linear->prefix, "scales", scale_dtype, layout.groups, layout.out_features, 2,
                          why, NULL, err);
    if (status != QREF_OK)
        return status;

    if (linear->g_idx != NULL) {
        status = check_tensor(linear->g_idx, linear->prefix, "g_idx", QREF_DTYPE_I32, layout.in_features, 0, 1,
                              "one group index per input feature", NULL, err);
        if (status != QREF_OK)
            return status;
    }

    /* Step 3: padding bits after the last code of each qweight column and the last zero
     * point of each qzeros row. */
    status = check_padding(linear->qweight, linear->prefix, "qweight", layout.bits, layout.in_features,
                           layout.qweight_rows, layout.out_features, 4, (size_t)layout.out_features * 4, true, err);
    if (status != QREF_OK)
        return status;
    status = check_padding(linear->qzeros, linear->prefix, "qzeros", layout.bits, layout.out_features,
                           layout.qzeros_cols, layout.groups, (size_t)layout.qzeros_cols * 4, 4, false, err);
    if (status != QREF_OK)
        return status;

    /* Step 4: values: group indices, zero points, scales. */
    status = check_g_idx(linear, config, &layout, err);
    if (status != QREF_OK)
        return status;
    status = check_qzeros_values(linear, config, &layout, err);
    if (status != QREF_OK)
        return status;
    return check_scale_values(linear, &layout, err);
}

/* ---- unpack and dequantize -------------------------------------------------------------- */

void qref_gptq_codes_free(qref_gptq_codes *codes)
{
    if (codes == NULL)
        return;
    free(codes->codes);
    free(codes->zeros);
    free(codes->scales);
    free(codes->g_idx);
    memset(codes, 0, sizeof *codes);
}

qref_status qref_gptq_unpack(const qref_gptq_linear *linear, const qref_gptq_config *config,
                             qref_gptq_codes *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    qref_status status = qref_gptq_check_linear(linear, config, err);
    if (status != QREF_OK)
        return status;
    gptq_layout layout;
    status = layout_init(linear->prefix, config->bits, linear->in_features, linear->out_features,
                         qref_gptq_group_size(config, linear->in_features), &layout, err);
    if (status != QREF_OK)
        return status;

    /* Step 1: allocate [out][in] codes, [out][groups] zeros and scales, [in] g_idx. */
    const int64_t in = layout.in_features, out_features = layout.out_features, groups = layout.groups;
    uint64_t count;
    if (!qref_mul_u64((uint64_t)in, (uint64_t)out_features, &count) || count > SIZE_MAX / sizeof(float))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: %lld x %lld weights are too many",
                              prefix_or_default(linear->prefix), (long long)out_features, (long long)in);
    out->bits = layout.bits;
    out->in_features = in;
    out->out_features = out_features;
    out->group_size = layout.group_size;
    out->groups = groups;
    out->scale_dtype = linear->scales->dtype;
    out->codes = malloc((size_t)count);
    out->zeros = malloc((size_t)(out_features * groups));
    out->scales = malloc((size_t)(out_features * groups) * sizeof(float));
    out->g_idx = malloc((size_t)in * sizeof(int32_t));
    if (out->codes == NULL || out->zeros == NULL || out->scales == NULL || out->g_idx == NULL) {
        qref_gptq_codes_free(out);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the unpacked codes",
                              prefix_or_default(linear->prefix));
    }

    /* Step 2: g_idx, derived as i / G when the file has none. */
    for (int64_t i = 0; i < in; i++)
        out->g_idx[i] = linear->g_idx != NULL ? (int32_t)qref_load_u32(linear->g_idx->data + 4 * i)
                                              : (int32_t)(i / layout.group_size);

    /* Step 3: zero points (v1 adds the 1 back) and scales, transposed to [out][groups]. */
    const bool v1 = config->format == QREF_GPTQ_FORMAT_V1;
    for (int64_t g = 0; g < groups; g++) {
        const uint8_t *row = linear->qzeros->data + (size_t)g * (size_t)layout.qzeros_cols * 4;
        for (int64_t o = 0; o < out_features; o++) {
            unsigned field = field_get(row, 4, (uint64_t)o, layout.bits);
            out->zeros[o * groups + g] = (uint8_t)(v1 ? field + 1 : field);
            out->scales[o * groups + g] =
                load_scale(linear->scales->dtype, linear->scales->data, (uint64_t)(g * out_features + o));
        }
    }

    /* Step 4: codes. Column o of qweight is one bit stream of in codes, with words out apart. */
    const uint8_t *qweight = linear->qweight->data;
    const size_t step = (size_t)out_features * 4;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out_features; o++) {
        uint8_t *dst = out->codes + o * in;
        for (int64_t i = 0; i < in; i++)
            dst[i] = (uint8_t)field_get(qweight + o * 4, step, (uint64_t)i, layout.bits);
    }
    return QREF_OK;
}

void qref_gptq_codes_dequantize(const qref_gptq_codes *codes, float *weight)
{
    const int64_t in = codes->in_features, groups = codes->groups;
    const qref_dtype dtype = codes->scale_dtype;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < codes->out_features; o++) {
        for (int64_t i = 0; i < in; i++) {
            int64_t g = codes->g_idx != NULL ? codes->g_idx[i] : i / codes->group_size;
            float scale = codes->scales[o * groups + g];
            int offset = (int)codes->codes[o * in + i] - (int)codes->zeros[o * groups + g];

            /* The f32 product is exact (an f16 or bf16 scale times |offset| <= 255 needs at
             * most 20 significant bits), so rounding it once to the scale dtype gives the
             * f16/bf16 product PyTorch computes. */
            float product = scale * (float)offset;
            if (dtype == QREF_DTYPE_F16)
                product = qref_f16_to_f32(qref_f32_to_f16(product));
            else if (dtype == QREF_DTYPE_BF16)
                product = qref_bf16_to_f32(qref_f32_to_bf16(product));
            weight[o * in + i] = product;
        }
    }
}

qref_status qref_gptq_dequantize(const qref_gptq_linear *linear, const qref_gptq_config *config,
                                 float *weight, qref_error *err)
{
    qref_gptq_codes codes;
    qref_status status = qref_gptq_unpack(linear, config, &codes, err);
    if (status != QREF_OK)
        return status;
    qref_gptq_codes_dequantize(&codes, weight);
    qref_gptq_codes_free(&codes);
    return QREF_OK;
}

/* ---- pack ------------------------------------------------------------------------------- */

void qref_gptq_packed_free(qref_gptq_packed *packed)
{
    if (packed == NULL)
        return;
    free(packed->qweight.name);
    free(packed->qzeros.name);
    free(packed->scales.name);
    free(packed->g_idx.name);
    for (int k = 0; k < 4; k++)
        free(packed->buffers[k]);
    memset(packed, 0, sizeof *packed);
}

/* Allocates a zeroed 1-D or 2-D tensor named "<prefix>.<role>" and its buffer. */
static qref_status packed_tensor_init(qref_tensor *tensor, uint8_t **buffer, const char *prefix, const char *role,
                                      qref_dtype dtype, int ndim, int64_t rows, int64_t cols, qref_error *err)
{
    const char *base = prefix_or_default(prefix);
    size_t name_size = strlen(base) + strlen(role) + 2;
    tensor->name = malloc(name_size);
    uint64_t numel = (uint64_t)rows * (uint64_t)(ndim == 1 ? 1 : cols);
    *buffer = calloc(numel == 0 ? 1 : (size_t)numel, qref_dtype_size(dtype));
    if (tensor->name == NULL || *buffer == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s.%s: cannot allocate %llu elements", base, role,
                              (unsigned long long)numel);
    snprintf(tensor->name, name_size, "%s.%s", base, role);
    tensor->dtype = dtype;
    tensor->ndim = ndim;
    tensor->shape[0] = rows;
    tensor->shape[1] = ndim == 1 ? 0 : cols;
    tensor->numel = numel;
    tensor->nbytes = numel * qref_dtype_size(dtype);
    tensor->data = *buffer;
    tensor->file = NULL;
    return QREF_OK;
}

/* Checks what pack() cannot store: codes and zeros out of range, v1 zero 0, bad scales, g_idx. */
static qref_status pack_check_values(const char *name, const qref_gptq_codes *codes, const gptq_layout *layout,
                                     qref_gptq_format format, qref_error *err)
{
    const int64_t in = layout->in_features, groups = layout->groups;
    for (int64_t o = 0; o < layout->out_features; o++) {
        for (int64_t i = 0; i < in; i++) {
            unsigned code = codes->codes[o * in + i];
            if (code > layout->mask)
                return qref_error_set(err, QREF_ERR_INVALID, "%s: code %u at [%lld][%lld], expected 0..%u", name,
                                      code, (long long)o, (long long)i, layout->mask);
        }
        for (int64_t g = 0; g < groups; g++) {
            unsigned zero = codes->zeros[o * groups + g];
            float scale = codes->scales[o * groups + g];
            float stored = qref_f16_to_f32(qref_f32_to_f16(scale));
            if (zero > layout->mask)
                return qref_error_set(err, QREF_ERR_INVALID, "%s: zero point %u at [%lld][%lld], expected 0..%u",
                                      name, zero, (long long)o, (long long)g, layout->mask);
            if (format == QREF_GPTQ_FORMAT_V1 && zero == 0)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: zero point 0 at [%lld][%lld] cannot be stored in format gptq (v1), "
                                      "which stores zero - 1 and would underflow; expected 1..%u, or format "
                                      "gptq_v2",
                                      name, (long long)o, (long long)g, layout->mask);
            if (!isfinite(scale) || !(scale > 0.0f) || !isfinite(stored) || !(stored > 0.0f))
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: scale %g at [%lld][%lld] is f16 %g, expected a finite value > 0 that "
                                      "f16 can hold",
                                      name, (double)scale, (long long)o, (long long)g, (double)stored);
        }
    }
    for (int64_t i = 0; codes->g_idx != NULL && i < in; i++) {
        if (codes->g_idx[i] < 0 || codes->g_idx[i] >= groups)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: g_idx %d at [%lld], expected 0..%lld", name,
                                  codes->g_idx[i], (long long)i, (long long)groups - 1);
    }
    return QREF_OK;
}

qref_status qref_gptq_pack(const char *prefix, const qref_gptq_codes *codes, qref_gptq_format format,
                           qref_gptq_packed *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    const char *name = prefix_or_default(prefix);

    /* Step 1: layout and values that the format can store. */
    gptq_layout layout;
    qref_status status = layout_init(prefix, codes->bits, codes->in_features, codes->out_features,
                                     codes->group_size, &layout, err);
    if (status != QREF_OK)
        return status;
    if (codes->groups != layout.groups)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %lld groups, expected ceil(%lld / %lld) = %lld", name,
                              (long long)codes->groups, (long long)layout.in_features,
                              (long long)layout.group_size, (long long)layout.groups);
    uint64_t count;
    if (!qref_mul_u64((uint64_t)layout.in_features, (uint64_t)layout.out_features, &count) ||
        count > SIZE_MAX / sizeof(float))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: too many weights", name);
    status = pack_check_values(name, codes, &layout, format, err);
    if (status != QREF_OK)
        return status;

    /* Step 2: the four tensors, zeroed. */
    const int64_t in = layout.in_features, out_features = layout.out_features, groups = layout.groups;
    status = packed_tensor_init(&out->qweight, &out->buffers[0], prefix, "qweight", QREF_DTYPE_I32, 2,
                                layout.qweight_rows, out_features, err);
    if (status == QREF_OK)
        status = packed_tensor_init(&out->qzeros, &out->buffers[1], prefix, "qzeros", QREF_DTYPE_I32, 2, groups,
                                    layout.qzeros_cols, err);
    if (status == QREF_OK)
        status = packed_tensor_init(&out->scales, &out->buffers[2], prefix, "scales", QREF_DTYPE_F16, 2, groups,
                                    out_features, err);
    if (status == QREF_OK)
        status = packed_tensor_init(&out->g_idx, &out->buffers[3], prefix, "g_idx", QREF_DTYPE_I32, 1, in, 0,
                                    err);
    if (status != QREF_OK)
        return status;

    /* Step 3: qweight, whose column o is the bit stream of codes[o][0..in). */
    uint8_t *qweight = out->buffers[0];
    const size_t step = (size_t)out_features * 4;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out_features; o++) {
        for (int64_t i = 0; i < in; i++)
            field_put(qweight + o * 4, step, (uint64_t)i, layout.bits, codes->codes[o * in + i]);
    }

    /* Step 4: qzeros rows (v1 stores zero - 1) and scales rounded to f16, both [groups][out]. */
    for (int64_t g = 0; g < groups; g++) {
        uint8_t *row = out->buffers[1] + (size_t)g * (size_t)layout.qzeros_cols * 4;
        for (int64_t o = 0; o < out_features; o++) {
            unsigned zero = codes->zeros[o * groups + g];
            field_put(row, 4, (uint64_t)o, layout.bits, format == QREF_GPTQ_FORMAT_V1 ? zero - 1 : zero);
            qref_store_u16(out->buffers[2] + 2 * (size_t)(g * out_features + o),
                           qref_f32_to_f16(codes->scales[o * groups + g]));
        }
    }

    /* Step 5: g_idx, i / G when the codes carry none. */
    for (int64_t i = 0; i < in; i++) {
        int32_t group = codes->g_idx != NULL ? codes->g_idx[i] : (int32_t)(i / layout.group_size);
        qref_store_u32(out->buffers[3] + 4 * (size_t)i, (uint32_t)group);
    }
    return QREF_OK;
}
