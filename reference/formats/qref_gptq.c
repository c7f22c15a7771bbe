/*
 * GPTQ tensors in the AutoGPTQ layout: unpacking, dequantization and packing of one linear
 * layer. The layout and its sources are described in qref_gptq.h, the bit-stream helpers in
 * qref_gptq_internal.h, the structure check in qref_gptq_check.c and the config code in
 * qref_gptq_config.c.
 *
 * AutoGPTQ's pack() builds exactly the little-endian bit stream of qref_gptq_internal.h: for
 * 2, 4 and 8 bits word r holds elements r*32/b .. r*32/b + 32/b - 1, and for 3 bits its
 * explicit table puts element 10 at bits 30-31 of w0 plus bit 0 of w1, and element 21 at bit
 * 31 of w1 plus bits 0-1 of w2, which are bits 30-32 and 63-65 of the stream. GPTQModel's
 * pack_original does the same with W / b fields per W-bit word. A stream whose length in * b
 * (or out * b) is not a multiple of W ends in one partly used word whose remaining high bits
 * are padding and must be zero.
 */
#include "formats/qref_gptq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"
#include "formats/qref_gptq_internal.h"

const char *qref_gptq_prefix_name(const char *prefix)
{
    return prefix != NULL && prefix[0] != '\0' ? prefix : "linear";
}

const char *qref_gptq_tensor_label(const qref_tensor *tensor, const char *prefix, const char *role, char *buf,
                                   size_t size)
{
    if (tensor != NULL && tensor->name != NULL) {
        if (tensor->file != NULL)
            snprintf(buf, size, "%s: tensor \"%s\"", tensor->file, tensor->name);
        else
            snprintf(buf, size, "tensor \"%s\"", tensor->name);
    } else {
        snprintf(buf, size, "tensor \"%s.%s\"", qref_gptq_prefix_name(prefix), role);
    }
    return buf;
}

qref_status qref_gptq_layout_init(const char *prefix, int bits, int word_bits, int64_t in_features,
                                  int64_t out_features, int64_t group_size, qref_gptq_layout *layout,
                                  qref_error *err)
{
    const char *name = qref_gptq_prefix_name(prefix);
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: bits %d is not supported, expected 2, 3, 4 or 8 (the AutoGPTQ layout)", name,
                              bits);
    if (qref_gptq_pack_dtype_name(word_bits) == NULL)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %d-bit words are not supported, expected 8, 16, 32 "
                              "or 64 (pack_dtype int8, int16, int32 or int64)", name, word_bits);
    if (bits == 3 && word_bits != 32)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: 3-bit codes in %s words are not supported, expected int32 (GPTQModel packs "
                              "3-bit codes only in 32-bit words)",
                              name, qref_gptq_pack_dtype_name(word_bits));
    if (in_features <= 0 || in_features > QREF_GPTQ_MAX_FEATURES || out_features <= 0 ||
        out_features > QREF_GPTQ_MAX_FEATURES)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: features in %lld, out %lld, expected each in 1..%lld", name,
                              (long long)in_features, (long long)out_features, (long long)QREF_GPTQ_MAX_FEATURES);
    if (group_size <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: group size %lld, expected a positive number or -1",
                              name, (long long)group_size);

    layout->bits = bits;
    layout->mask = (1u << bits) - 1u;
    layout->word_bits = word_bits;
    layout->word_bytes = word_bits / 8;
    switch (word_bits) {
    case 8: layout->word_dtype = QREF_DTYPE_I8; break;
    case 16: layout->word_dtype = QREF_DTYPE_I16; break;
    case 32: layout->word_dtype = QREF_DTYPE_I32; break;
    default: layout->word_dtype = QREF_DTYPE_I64; break;
    }
    layout->in_features = in_features;
    layout->out_features = out_features;
    layout->group_size = group_size > in_features ? in_features : group_size;
    layout->groups = (in_features + layout->group_size - 1) / layout->group_size;
    layout->qweight_rows = (in_features * bits + word_bits - 1) / word_bits;
    layout->qzeros_cols = (out_features * bits + word_bits - 1) / word_bits;
    return QREF_OK;
}

float qref_gptq_scale_load(qref_dtype dtype, const uint8_t *data, uint64_t index)
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
    qref_gptq_layout layout;
    status = qref_gptq_layout_init(linear->prefix, config->bits, config->pack_bits, linear->in_features,
                                   linear->out_features, qref_gptq_group_size(config, linear->in_features), &layout,
                                   err);
    if (status != QREF_OK)
        return status;

    /* Step 1: allocate [out][in] codes, [out][groups] zeros and scales, [in] g_idx. */
    const int64_t in = layout.in_features, out_features = layout.out_features, groups = layout.groups;
    uint64_t count;
    if (!qref_mul_u64((uint64_t)in, (uint64_t)out_features, &count) || count > SIZE_MAX / sizeof(float))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: %lld x %lld weights are too many",
                              qref_gptq_prefix_name(linear->prefix), (long long)out_features, (long long)in);
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
                              qref_gptq_prefix_name(linear->prefix));
    }

    /* Step 2: g_idx, derived as i / G when the file has none. */
    for (int64_t i = 0; i < in; i++)
        out->g_idx[i] = linear->g_idx != NULL ? (int32_t)qref_load_u32(linear->g_idx->data + 4 * i)
                                              : (int32_t)(i / layout.group_size);

    /* Step 3: zero points (v1 adds the 1 back) and scales, transposed to [out][groups]. */
    const bool v1 = config->format == QREF_GPTQ_FORMAT_V1;
    const int word_bytes = layout.word_bytes;
    for (int64_t g = 0; g < groups; g++) {
        const uint8_t *row = linear->qzeros->data + (size_t)g * (size_t)layout.qzeros_cols * word_bytes;
        for (int64_t o = 0; o < out_features; o++) {
            unsigned field = qref_gptq_field_get(row, (size_t)word_bytes, (uint64_t)o, layout.bits, word_bytes);
            out->zeros[o * groups + g] = (uint8_t)(v1 ? field + 1 : field);
            out->scales[o * groups + g] =
                qref_gptq_scale_load(linear->scales->dtype, linear->scales->data, (uint64_t)(g * out_features + o));
        }
    }

    /* Step 4: codes. Column o of qweight is one bit stream of in codes, with words out apart. */
    const uint8_t *qweight = linear->qweight->data;
    const size_t step = (size_t)out_features * (size_t)word_bytes;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out_features; o++) {
        uint8_t *dst = out->codes + o * in;
        for (int64_t i = 0; i < in; i++)
            dst[i] = (uint8_t)qref_gptq_field_get(qweight + o * word_bytes, step, (uint64_t)i, layout.bits,
                                                  word_bytes);
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

/* ---- act-order column order --------------------------------------------------------------- */

typedef struct column_key {
    double norm;
    int32_t index;
} column_key;

static int compare_column_keys(const void *a, const void *b)
{
    const column_key *x = a, *y = b;
    if (x->norm != y->norm)
        return x->norm > y->norm ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

qref_status qref_gptq_order_by_column_norm(const float *weight, int64_t rows, int64_t cols, int32_t *perm,
                                           qref_error *err)
{
    column_key *keys = calloc((size_t)(cols > 0 ? cols : 1), sizeof *keys);
    if (keys == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "cannot allocate %lld column norms", (long long)cols);
    for (int64_t i = 0; i < cols; i++)
        keys[i].index = (int32_t)i;
    for (int64_t o = 0; o < rows; o++)
        for (int64_t i = 0; i < cols; i++)
            keys[i].norm += (double)weight[o * cols + i] * (double)weight[o * cols + i];
    qsort(keys, (size_t)cols, sizeof *keys, compare_column_keys);
    for (int64_t k = 0; k < cols; k++)
        perm[k] = keys[k].index;
    free(keys);
    return QREF_OK;
}

void qref_gptq_g_idx_from_order(const int32_t *perm, int64_t cols, int64_t group_size, int32_t *g_idx)
{
    for (int64_t k = 0; k < cols; k++)
        g_idx[perm[k]] = (int32_t)(k / group_size);
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
    const char *base = qref_gptq_prefix_name(prefix);
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
static qref_status pack_check_values(const char *name, const qref_gptq_codes *codes, const qref_gptq_layout *layout,
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
    return qref_gptq_pack_words(prefix, codes, format, 32, out, err);
}

qref_status qref_gptq_pack_words(const char *prefix, const qref_gptq_codes *codes, qref_gptq_format format,
                                 int pack_bits, qref_gptq_packed *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    const char *name = qref_gptq_prefix_name(prefix);

    /* Step 1: layout and values that the format can store. */
    qref_gptq_layout layout;
    qref_status status = qref_gptq_layout_init(prefix, codes->bits, pack_bits, codes->in_features,
                                               codes->out_features, codes->group_size, &layout, err);
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
    status = packed_tensor_init(&out->qweight, &out->buffers[0], prefix, "qweight", layout.word_dtype, 2,
                                layout.qweight_rows, out_features, err);
    if (status == QREF_OK)
        status = packed_tensor_init(&out->qzeros, &out->buffers[1], prefix, "qzeros", layout.word_dtype, 2, groups,
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
    const int word_bytes = layout.word_bytes;
    const size_t step = (size_t)out_features * (size_t)word_bytes;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out_features; o++) {
        for (int64_t i = 0; i < in; i++)
            qref_gptq_field_put(qweight + o * word_bytes, step, (uint64_t)i, layout.bits, word_bytes,
                                codes->codes[o * in + i]);
    }

    /* Step 4: qzeros rows (v1 stores zero - 1) and scales rounded to f16, both [groups][out]. */
    for (int64_t g = 0; g < groups; g++) {
        uint8_t *row = out->buffers[1] + (size_t)g * (size_t)layout.qzeros_cols * (size_t)word_bytes;
        for (int64_t o = 0; o < out_features; o++) {
            unsigned zero = codes->zeros[o * groups + g];
            qref_gptq_field_put(row, (size_t)word_bytes, (uint64_t)o, layout.bits, word_bytes,
                                format == QREF_GPTQ_FORMAT_V1 ? zero - 1 : zero);
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
