/*
 * compressed-tensors tensors of one linear: packing, structure check, unpacking,
 * dequantization, the library's min-max quantizer, and writing a quantized linear. The layout
 * and its sources are described in qref_ct.h, the config code is in qref_ct_config.c.
 */
#include "formats/qref_ct.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"

/* float32 eps (torch.finfo(torch.float32).eps): the smallest scale calculate_qparams keeps. */
#define CT_SCALE_MIN 0x1p-23f

/* ---- packing ------------------------------------------------------------------------------ */

int qref_ct_pack_factor(int bits)
{
    return 32 / bits;
}

void qref_ct_pack_rows(const int8_t *values, size_t rows, size_t cols, int bits, uint32_t *out)
{
    const size_t per_word = (size_t)qref_ct_pack_factor(bits), words = (cols + per_word - 1) / per_word;
    const unsigned offset = 1u << (bits - 1), mask = (1u << bits) - 1u;
    for (size_t r = 0; r < rows; r++) {
        for (size_t w = 0; w < words; w++) {
            uint32_t word = 0;
            for (size_t j = 0; j < per_word && w * per_word + j < cols; j++) {
                unsigned field = (unsigned)(values[r * cols + w * per_word + j] + (int)offset) & mask;
                word |= (uint32_t)field << (bits * j);
            }
            out[r * words + w] = word;
        }
    }
}

void qref_ct_pack_columns(const int8_t *values, size_t rows, size_t cols, int bits, uint32_t *out)
{
    const size_t per_word = (size_t)qref_ct_pack_factor(bits), words = (rows + per_word - 1) / per_word;
    const unsigned offset = 1u << (bits - 1), mask = (1u << bits) - 1u;
    for (size_t w = 0; w < words; w++) {
        for (size_t c = 0; c < cols; c++) {
            uint32_t word = 0;
            for (size_t j = 0; j < per_word && w * per_word + j < rows; j++) {
                unsigned field = (unsigned)(values[(w * per_word + j) * cols + c] + (int)offset) & mask;
                word |= (uint32_t)field << (bits * j);
            }
            out[w * cols + c] = word;
        }
    }
}

void qref_ct_unpack_rows(const uint32_t *words, size_t rows, size_t cols, int bits, int8_t *values)
{
    const size_t per_word = (size_t)qref_ct_pack_factor(bits), count = (cols + per_word - 1) / per_word;
    const unsigned offset = 1u << (bits - 1), mask = (1u << bits) - 1u;
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < cols; i++) {
            unsigned field = (words[r * count + i / per_word] >> (bits * (i % per_word))) & mask;
            values[r * cols + i] = (int8_t)((int)field - (int)offset);
        }
}

void qref_ct_unpack_columns(const uint32_t *words, size_t rows, size_t cols, int bits, int8_t *values)
{
    const size_t per_word = (size_t)qref_ct_pack_factor(bits);
    const unsigned offset = 1u << (bits - 1), mask = (1u << bits) - 1u;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            unsigned field = (words[(r / per_word) * cols + c] >> (bits * (r % per_word))) & mask;
            values[r * cols + c] = (int8_t)((int)field - (int)offset);
        }
}

/* ---- tensor lookup ------------------------------------------------------------------------ */

static const qref_tensor *find_part(const qref_tensor_set *tensors, const char *module, const char *part)
{
    char name[512];
    int n = snprintf(name, sizeof name, "%s.%s", module, part);
    if (n < 0 || (size_t)n >= sizeof name)
        return NULL;
    return qref_tensor_set_find(tensors, name);
}

qref_ct_linear qref_ct_linear_find(const qref_tensor_set *tensors, const char *module, int64_t out_features,
                                   int64_t in_features)
{
    qref_ct_linear linear = {
        .prefix = module,
        .weight = find_part(tensors, module, "weight"),
        .weight_packed = find_part(tensors, module, "weight_packed"),
        .weight_shape = find_part(tensors, module, "weight_shape"),
        .weight_scale = find_part(tensors, module, "weight_scale"),
        .weight_zero_point = find_part(tensors, module, "weight_zero_point"),
        .weight_g_idx = find_part(tensors, module, "weight_g_idx"),
        .input_scale = find_part(tensors, module, "input_scale"),
        .input_zero_point = find_part(tensors, module, "input_zero_point"),
        .out_features = out_features,
        .in_features = in_features,
    };
    return linear;
}

bool qref_ct_linear_is_quantized(const qref_ct_linear *linear)
{
    return linear->weight_packed != NULL || linear->weight_scale != NULL || linear->weight_zero_point != NULL ||
           linear->weight_shape != NULL || linear->weight_g_idx != NULL ||
           (linear->weight != NULL && !qref_dtype_is_float(linear->weight->dtype));
}

/* ---- structure check ---------------------------------------------------------------------- */

/* Shape facts of one quantized linear, from its scheme. */
typedef struct ct_layout {
    const char *module;
    qref_ct_format format;
    bool packed;               /* pack-quantized */
    int bits;
    int per_word;              /* codes per int32 word (packed) */
    int q_min, q_max;
    qref_ct_strategy strategy;
    int64_t out, in;
    int64_t group_size;        /* group: G; channel and tensor: in */
    int64_t groups;            /* scale columns: in / G for group, else 1 */
    bool symmetric;
    bool zp_packed;            /* asymmetric pack-quantized channel or group: I32 packed along out */
} ct_layout;

static void layout_init(const qref_ct_linear *linear, const qref_ct_scheme *scheme, ct_layout *layout)
{
    const qref_ct_args *w = &scheme->weights;
    memset(layout, 0, sizeof *layout);
    layout->module = linear->prefix != NULL ? linear->prefix : "linear";
    layout->format = scheme->format;
    layout->packed = scheme->format == QREF_CT_FORMAT_PACK_QUANTIZED;
    layout->bits = w->num_bits;
    layout->per_word = qref_ct_pack_factor(w->num_bits);
    layout->q_min = -(1 << (w->num_bits - 1));
    layout->q_max = (1 << (w->num_bits - 1)) - 1;
    layout->strategy = w->strategy;
    layout->out = linear->out_features;
    layout->in = linear->in_features;
    layout->group_size = w->strategy == QREF_CT_STRATEGY_GROUP ? w->group_size : linear->in_features;
    layout->groups = w->strategy == QREF_CT_STRATEGY_GROUP && w->group_size > 0 ? linear->in_features / w->group_size
                                                                                   : 1;
    layout->symmetric = w->symmetric;
    layout->zp_packed = layout->packed && (w->strategy == QREF_CT_STRATEGY_CHANNEL ||
                                           w->strategy == QREF_CT_STRATEGY_GROUP);
}

/* 'FILE: tensor "NAME"' for messages. */
static const char *label(const qref_tensor *tensor, char *buf, size_t size)
{
    if (tensor->file != NULL)
        snprintf(buf, size, "%s: tensor \"%s\"", tensor->file, tensor->name);
    else
        snprintf(buf, size, "tensor \"%s\"", tensor->name);
    return buf;
}

/* "<module>.<role>" into buf. */
static const char *part_name(const ct_layout *layout, const char *role, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%s", layout->module, role);
    return buf;
}

/* Reports a missing tensor of the layout; why names the args that need it. */
static void report_missing(qref_findings *findings, const char *id, const ct_layout *layout, const char *role,
                           const char *why)
{
    char name[320];
    part_name(layout, role, name, sizeof name);
    qref_findings_add(findings, id, QREF_SEVERITY_ERROR, name, "tensor \"%s\" not found, expected it because %s",
                      name, why);
}

/* Checks a tensor's shape against expected[0..ndim); returns false after reporting. */
static bool check_shape(qref_findings *findings, const qref_tensor *tensor, int ndim, const int64_t *expected,
                        const char *why)
{
    bool same = tensor->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = tensor->shape[d] == expected[d];
    if (same)
        return true;
    char where[400], found[96], wanted[96] = "[";
    qref_tensor_shape_string(tensor, found, sizeof found);
    for (int d = 0; d < ndim; d++) {
        size_t used = strlen(wanted);
        snprintf(wanted + used, sizeof wanted - used, "%s%lld", d ? ", " : "", (long long)expected[d]);
    }
    strncat(wanted, "]", sizeof wanted - strlen(wanted) - 1);
    qref_findings_add(findings, "ct.tensor.shape", QREF_SEVERITY_ERROR, tensor->name, "%s: shape %s, expected %s (%s)",
                      label(tensor, where, sizeof where), found, wanted, why);
    return false;
}

/* Checks a tensor's dtype against a list; returns false after reporting. */
static bool check_dtype(qref_findings *findings, const qref_tensor *tensor, const qref_dtype *allowed, size_t count,
                        const char *expected)
{
    for (size_t k = 0; k < count; k++)
        if (tensor->dtype == allowed[k])
            return true;
    char where[400];
    qref_findings_add(findings, "ct.tensor.dtype", QREF_SEVERITY_ERROR, tensor->name, "%s: dtype %s, expected %s",
                      label(tensor, where, sizeof where), qref_dtype_name(tensor->dtype), expected);
    return false;
}

static const qref_dtype scale_dtypes[] = {QREF_DTYPE_F16, QREF_DTYPE_BF16, QREF_DTYPE_F32};
static const qref_dtype i8_dtype[] = {QREF_DTYPE_I8};
static const qref_dtype i32_dtype[] = {QREF_DTYPE_I32};
static const qref_dtype shape_dtypes[] = {QREF_DTYPE_I64, QREF_DTYPE_I32};

/* Loads element index of a float tensor (F16, BF16 or F32). */
static float load_float(const qref_tensor *tensor, uint64_t index)
{
    switch (tensor->dtype) {
    case QREF_DTYPE_F16: return qref_f16_to_f32(qref_load_u16(tensor->data + 2 * index));
    case QREF_DTYPE_BF16: return qref_bf16_to_f32(qref_load_u16(tensor->data + 2 * index));
    default: return qref_load_f32(tensor->data + 4 * index);
    }
}

/* Checks a scale tensor's shape for the strategy: [1] for tensor (or a 0-dim scalar), else [out, groups]. */
static bool check_scale_shape(qref_findings *findings, const qref_tensor *tensor, const ct_layout *layout,
                              const char *why)
{
    if (layout->strategy == QREF_CT_STRATEGY_TENSOR) {
        const int64_t one[1] = {1};
        if (tensor->ndim == 0)
            return true;
        return check_shape(findings, tensor, 1, one, why);
    }
    const int64_t expected[2] = {layout->out, layout->groups};
    return check_shape(findings, tensor, 2, expected, why);
}

/* Step 1 of the check: the weight tensor of the format, its dtype and shape. */
static bool check_weight_tensors(const qref_ct_linear *linear, const qref_ct_scheme *scheme, const ct_layout *layout,
                                 bool *stored_float, qref_findings *findings)
{
    char why[256], where[400], shape[96];
    const qref_tensor *dense = linear->weight;
    const bool float_weight = dense != NULL && qref_dtype_is_float(dense->dtype);
    if (float_weight && (layout->packed ? linear->weight_packed == NULL : linear->weight_scale == NULL)) {
        qref_tensor_shape_string(dense, shape, sizeof shape);
        qref_findings_add(findings, "ct.targeted.float", QREF_SEVERITY_ERROR, layout->module,
                          "%s: linear \"%s\" is stored in float (%s %s), expected the %s tensors because "
                          "config_groups.%s targets it and no ignore entry matches it", label(dense, where, sizeof where),
                          layout->module, qref_dtype_name(dense->dtype), shape, qref_ct_format_name(layout->format),
                          scheme->name);
        *stored_float = true;
        return false;
    }

    if (!layout->packed) {
        if (dense == NULL) {
            snprintf(why, sizeof why, "config_groups.%s stores %s weights", scheme->name,
                     qref_ct_format_name(layout->format));
            report_missing(findings, "ct.tensor.missing", layout, "weight", why);
            return false;
        }
        const int64_t expected[2] = {layout->out, layout->in};
        snprintf(why, sizeof why, "%s codes of %lld output by %lld input features",
                 qref_ct_format_name(layout->format), (long long)layout->out, (long long)layout->in);
        bool ok = check_dtype(findings, dense, i8_dtype, 1, "I8 (the signed codes of int-quantized and "
                              "naive-quantized weights; float weights with scales are the unconverted "
                              "\"fakequant\" layout)");
        return check_shape(findings, dense, 2, expected, why) && ok;
    }

    const qref_tensor *packed = linear->weight_packed;
    if (packed == NULL) {
        snprintf(why, sizeof why, "config_groups.%s stores pack-quantized weights", scheme->name);
        report_missing(findings, "ct.tensor.missing", layout, "weight_packed", why);
        return false;
    }
    const int64_t expected[2] = {layout->out, (layout->in + layout->per_word - 1) / layout->per_word};
    snprintf(why, sizeof why, "%d-bit codes of %lld input features, %d per int32 word, for %lld output features",
             layout->bits, (long long)layout->in, layout->per_word, (long long)layout->out);
    bool ok = check_dtype(findings, packed, i32_dtype, 1, "I32");
    ok = check_shape(findings, packed, 2, expected, why) && ok;
    if (linear->weight_shape == NULL) {
        report_missing(findings, "ct.tensor.missing", layout, "weight_shape",
                       "pack-quantized linears store their unpacked shape");
        return false;
    }
    const int64_t two[1] = {2};
    ok = check_dtype(findings, linear->weight_shape, shape_dtypes, 2, "I64 or I32") && ok;
    return check_shape(findings, linear->weight_shape, 1, two, "(out_features, in_features)") && ok;
}

/* Step 2: weight_scale, zero points, g_idx and input_scale: presence, dtypes, shapes. */
static bool check_parameter_tensors(const qref_ct_linear *linear, const qref_ct_scheme *scheme,
                                    const ct_layout *layout, qref_findings *findings)
{
    char why[256];
    bool ok = true;
    const char *strategy = qref_ct_strategy_name(layout->strategy);

    /* weight_scale */
    if (linear->weight_scale == NULL) {
        snprintf(why, sizeof why, "config_groups.%s quantizes the weights", scheme->name);
        report_missing(findings, "ct.tensor.missing", layout, "weight_scale", why);
        ok = false;
    } else {
        snprintf(why, sizeof why, "one scale per %s", layout->strategy == QREF_CT_STRATEGY_GROUP ? "output row and group"
                                                     : layout->strategy == QREF_CT_STRATEGY_CHANNEL ? "output row"
                                                                                                     : "tensor");
        ok = check_dtype(findings, linear->weight_scale, scale_dtypes, 3, "F16, BF16 or F32 (the model dtype)") && ok;
        ok = check_scale_shape(findings, linear->weight_scale, layout, why) && ok;
    }

    /* weight_zero_point: none for symmetric args; for asymmetric I8 like the scale, or packed */
    const qref_tensor *zp = linear->weight_zero_point;
    if (layout->symmetric && zp != NULL) {
        char where[400];
        qref_findings_add(findings, "ct.zero_point.unexpected", QREF_SEVERITY_ERROR, zp->name,
                          "%s: a zero point is stored, expected none because config_groups.%s.weights is "
                          "symmetric (compressed-tensors stores no zero point for symmetric args)",
                          label(zp, where, sizeof where), scheme->name);
        ok = false;
    } else if (!layout->symmetric && zp == NULL) {
        char name[320];
        part_name(layout, "weight_zero_point", name, sizeof name);
        qref_findings_add(findings, "ct.zero_point.missing", QREF_SEVERITY_ERROR, name,
                          "tensor \"%s\" not found, expected it because config_groups.%s.weights is asymmetric "
                          "(symmetric false)", name, scheme->name);
        ok = false;
    } else if (zp != NULL && layout->zp_packed) {
        const int64_t expected[2] = {(layout->out + layout->per_word - 1) / layout->per_word, layout->groups};
        snprintf(why, sizeof why, "%d-bit zero points of %lld output features packed %d per int32 word, for %lld "
                 "%s", layout->bits, (long long)layout->out, layout->per_word, (long long)layout->groups,
                 layout->strategy == QREF_CT_STRATEGY_GROUP ? "groups" : "channel column");
        ok = check_dtype(findings, zp, i32_dtype, 1, "I32 (pack-quantized packs channel and group zero points)") && ok;
        ok = check_shape(findings, zp, 2, expected, why) && ok;
    } else if (zp != NULL) {
        snprintf(why, sizeof why, "the shape of weight_scale for strategy \"%s\"", strategy);
        ok = check_dtype(findings, zp, i8_dtype, 1, "I8") && ok;
        ok = check_scale_shape(findings, zp, layout, why) && ok;
    }

    /* weight_g_idx: required with actorder "group", read by the group strategy only */
    const qref_tensor *g_idx = linear->weight_g_idx;
    if (scheme->weights.actorder_group && g_idx == NULL) {
        snprintf(why, sizeof why, "config_groups.%s.weights has actorder \"group\"", scheme->name);
        report_missing(findings, "ct.tensor.missing", layout, "weight_g_idx", why);
        ok = false;
    } else if (g_idx != NULL && layout->strategy == QREF_CT_STRATEGY_GROUP) {
        const int64_t expected[1] = {layout->in};
        ok = check_dtype(findings, g_idx, i32_dtype, 1, "I32") && ok;
        ok = check_shape(findings, g_idx, 1, expected, "the group of each input feature") && ok;
    }

    /* input_scale: static activation quantization stores it */
    const qref_ct_args *input = &scheme->input_activations;
    if (scheme->has_input_activations && !input->dynamic) {
        if (linear->input_scale == NULL) {
            char name[320];
            part_name(layout, "input_scale", name, sizeof name);
            qref_findings_add(findings, "ct.input_scale.missing", QREF_SEVERITY_ERROR, name,
                              "tensor \"%s\" not found, expected it because config_groups.%s.input_activations is "
                              "static (dynamic false, strategy \"%s\")", name, scheme->name,
                              qref_ct_strategy_name(input->strategy));
            ok = false;
        } else {
            ok = check_dtype(findings, linear->input_scale, scale_dtypes, 3, "F16, BF16 or F32") && ok;
            const qref_tensor *scale = linear->input_scale;
            if (input->strategy == QREF_CT_STRATEGY_TENSOR && scale->ndim != 0) {
                const int64_t one[1] = {1};
                ok = check_shape(findings, scale, 1, one, "one scale for the static tensor strategy") && ok;
            }
        }
        if (!input->symmetric && linear->input_zero_point == NULL) {
            char name[320];
            part_name(layout, "input_zero_point", name, sizeof name);
            qref_findings_add(findings, "ct.zero_point.missing", QREF_SEVERITY_ERROR, name,
                              "tensor \"%s\" not found, expected it because config_groups.%s.input_activations is "
                              "static and asymmetric", name, scheme->name);
            ok = false;
        }
    }
    return ok;
}

/* Checks that a float tensor contains finite values > 0; reports the first one that is not. */
static void check_positive(qref_findings *findings, const qref_tensor *tensor, const char *id, int64_t cols)
{
    for (uint64_t k = 0; k < tensor->numel; k++) {
        float value = load_float(tensor, k);
        if (isfinite(value) && value > 0.0f)
            continue;
        char where[400], index[64];
        if (tensor->ndim == 2)
            snprintf(index, sizeof index, "[%llu][%llu]", (unsigned long long)(k / (uint64_t)cols),
                     (unsigned long long)(k % (uint64_t)cols));
        else
            snprintf(index, sizeof index, "[%llu]", (unsigned long long)k);
        qref_findings_add(findings, id, QREF_SEVERITY_ERROR, tensor->name, "%s: scale %g at %s, expected a finite "
                          "value > 0", label(tensor, where, sizeof where), (double)value, index);
        return;
    }
}

/* Checks that the bits of the last word of each packed row after code `used` are zero. */
static bool check_row_padding(qref_findings *findings, const qref_tensor *tensor, int64_t rows, int64_t words,
                              int64_t codes, int bits, const char *what)
{
    const int per_word = qref_ct_pack_factor(bits);
    const int used = (int)(codes - (words - 1) * per_word);
    if (used * bits >= 32)
        return true;
    const uint32_t mask = ~((1u << (used * bits)) - 1u);
    for (int64_t r = 0; r < rows; r++) {
        uint32_t word = qref_load_u32(tensor->data + 4 * (size_t)(r * words + words - 1));
        if ((word & mask) == 0)
            continue;
        char where[400];
        qref_findings_add(findings, "ct.padding", QREF_SEVERITY_ERROR, tensor->name,
                          "%s: word [%lld][%lld] is 0x%08x, expected zero bits above bit %d, the padding after the "
                          "last of %lld %s", label(tensor, where, sizeof where), (long long)r, (long long)(words - 1),
                          word, used * bits - 1, (long long)codes, what);
        return false;
    }
    return true;
}

/* Step 3: the contents, once every dtype and shape is right. */
static void check_contents(const qref_ct_linear *linear, const qref_ct_scheme *scheme, const ct_layout *layout,
                           qref_findings *findings)
{
    char where[400];

    /* weight_shape contains (out, in) */
    if (layout->packed) {
        const qref_tensor *shape = linear->weight_shape;
        int64_t values[2];
        for (int d = 0; d < 2; d++)
            values[d] = shape->dtype == QREF_DTYPE_I64 ? (int64_t)qref_load_u64(shape->data + 8 * d)
                                                       : (int64_t)(int32_t)qref_load_u32(shape->data + 4 * d);
        if (values[0] != layout->out || values[1] != layout->in)
            qref_findings_add(findings, "ct.weight_shape.value", QREF_SEVERITY_ERROR, shape->name,
                              "%s: contains [%lld, %lld], expected [%lld, %lld] (out_features, in_features of %s)",
                              label(shape, where, sizeof where), (long long)values[0], (long long)values[1],
                              (long long)layout->out, (long long)layout->in, layout->module);
    }

    /* codes inside the b-bit range (pack-quantized fields always are), zero padding bits */
    if (!layout->packed && layout->bits < 8) {
        const qref_tensor *weight = linear->weight;
        for (uint64_t k = 0; k < weight->numel; k++) {
            int code = (int8_t)weight->data[k];
            if (code >= layout->q_min && code <= layout->q_max)
                continue;
            qref_findings_add(findings, "ct.codes.range", QREF_SEVERITY_ERROR, weight->name,
                              "%s: code %d at [%llu][%llu], expected %d..%d for %d-bit weights",
                              label(weight, where, sizeof where), code, (unsigned long long)(k / (uint64_t)layout->in),
                              (unsigned long long)(k % (uint64_t)layout->in), layout->q_min, layout->q_max, layout->bits);
            break;
        }
    }
    if (layout->packed)
        check_row_padding(findings, linear->weight_packed, layout->out, linear->weight_packed->shape[1], layout->in,
                          layout->bits, "codes of the row");

    /* scales, zero points */
    check_positive(findings, linear->weight_scale, "ct.scale.invalid", layout->groups);
    const qref_tensor *zp = linear->weight_zero_point;
    if (zp != NULL && !layout->symmetric && layout->zp_packed) {
        /* the rows of the last packed word past out_features are padding */
        const int64_t words = zp->shape[0];
        const int used = (int)(layout->out - (words - 1) * layout->per_word);
        if (used * layout->bits < 32) {
            const uint32_t mask = ~((1u << (used * layout->bits)) - 1u);
            for (int64_t c = 0; c < layout->groups; c++) {
                uint32_t word = qref_load_u32(zp->data + 4 * (size_t)((words - 1) * layout->groups + c));
                if ((word & mask) == 0)
                    continue;
                qref_findings_add(findings, "ct.padding", QREF_SEVERITY_ERROR, zp->name,
                                  "%s: word [%lld][%lld] is 0x%08x, expected zero bits above bit %d, the padding "
                                  "after the last of %lld output features", label(zp, where, sizeof where),
                                  (long long)(words - 1), (long long)c, word, used * layout->bits - 1,
                                  (long long)layout->out);
                break;
            }
        }
    } else if (zp != NULL && !layout->symmetric) {
        for (uint64_t k = 0; k < zp->numel; k++) {
            int value = (int8_t)zp->data[k];
            if (value >= layout->q_min && value <= layout->q_max)
                continue;
            qref_findings_add(findings, "ct.zero_point.range", QREF_SEVERITY_ERROR, zp->name,
                              "%s: zero point %d at element %llu, expected %d..%d for %d-bit weights",
                              label(zp, where, sizeof where), value, (unsigned long long)k, layout->q_min,
                              layout->q_max, layout->bits);
            break;
        }
    }

    /* g_idx: every group index in range, each group G features, as the grouped reshape needs */
    const qref_tensor *g_idx = linear->weight_g_idx;
    if (g_idx != NULL && layout->strategy == QREF_CT_STRATEGY_GROUP) {
        int64_t *counts = calloc((size_t)layout->groups, sizeof *counts);
        for (int64_t i = 0; counts != NULL && i < layout->in; i++) {
            int32_t group = (int32_t)qref_load_u32(g_idx->data + 4 * (size_t)i);
            if (group < 0 || group >= layout->groups) {
                qref_findings_add(findings, "ct.g_idx.invalid", QREF_SEVERITY_ERROR, g_idx->name,
                                  "%s: value %d at [%lld], expected a group in 0..%lld",
                                  label(g_idx, where, sizeof where), group, (long long)i, (long long)layout->groups - 1);
                free(counts);
                counts = NULL;
                break;
            }
            counts[group]++;
        }
        for (int64_t g = 0; counts != NULL && g < layout->groups; g++) {
            if (counts[g] == layout->group_size)
                continue;
            qref_findings_add(findings, "ct.g_idx.invalid", QREF_SEVERITY_ERROR, g_idx->name,
                              "%s: group %lld holds %lld input features, expected group_size %lld",
                              label(g_idx, where, sizeof where), (long long)g, (long long)counts[g],
                              (long long)layout->group_size);
            break;
        }
        free(counts);
    }

    /* input_scale */
    if (scheme->has_input_activations && !scheme->input_activations.dynamic && linear->input_scale != NULL)
        check_positive(findings, linear->input_scale, "ct.input_scale.invalid", 1);
}

void qref_ct_check_linear(const qref_ct_linear *linear, const qref_ct_scheme *scheme, qref_findings *findings)
{
    ct_layout layout;
    layout_init(linear, scheme, &layout);

    /* the group size must divide in: the grouped reshape of _process_quantization needs it */
    if (layout.strategy == QREF_CT_STRATEGY_GROUP && layout.in % layout.group_size != 0) {
        qref_findings_add(findings, "ct.schema.group_size", QREF_SEVERITY_ERROR, layout.module,
                          "linear \"%s\": config_groups.%s.weights.group_size %lld does not divide its %lld input "
                          "features, expected a divisor", layout.module, scheme->name, (long long)layout.group_size,
                          (long long)layout.in);
        return;
    }
    bool stored_float = false;
    bool weights_ok = check_weight_tensors(linear, scheme, &layout, &stored_float, findings);
    if (stored_float)
        return; /* a float linear has no quantization parameters to check */
    bool parameters_ok = check_parameter_tensors(linear, scheme, &layout, findings);
    if (weights_ok && parameters_ok)
        check_contents(linear, scheme, &layout, findings);
}

/* ---- unpack and dequantize ---------------------------------------------------------------- */

void qref_ct_codes_free(qref_ct_codes *codes)
{
    if (codes == NULL)
        return;
    free(codes->codes);
    free(codes->scales);
    free(codes->zeros);
    free(codes->g_idx);
    memset(codes, 0, sizeof *codes);
}

/* Allocates codes [out][in], scales [out][groups], and zeros when asymmetric. */
static qref_status codes_allocate(qref_ct_codes *codes, bool with_zeros, bool with_g_idx, const char *name,
                                  qref_error *err)
{
    uint64_t count, params;
    if (!qref_mul_u64((uint64_t)codes->out_features, (uint64_t)codes->in_features, &count) ||
        !qref_mul_u64((uint64_t)codes->out_features, (uint64_t)codes->groups, &params) ||
        count > SIZE_MAX / sizeof(float) || params > SIZE_MAX / sizeof(float))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: %lld x %lld weights are too many", name,
                              (long long)codes->out_features, (long long)codes->in_features);
    codes->codes = malloc(count ? (size_t)count : 1);
    codes->scales = malloc(params ? (size_t)params * sizeof(float) : 1);
    codes->zeros = NULL;
    codes->g_idx = NULL;
    if (with_zeros)
        codes->zeros = malloc(params ? (size_t)params : 1);
    if (with_g_idx)
        codes->g_idx = malloc((size_t)codes->in_features * sizeof(int32_t) + 1);
    if (codes->codes == NULL || codes->scales == NULL || (with_zeros && codes->zeros == NULL) ||
        (with_g_idx && codes->g_idx == NULL))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the unpacked codes", name);
    return QREF_OK;
}

qref_status qref_ct_unpack(const qref_ct_linear *linear, const qref_ct_scheme *scheme, qref_ct_codes *out,
                           qref_error *err)
{
    memset(out, 0, sizeof *out);
    ct_layout layout;
    layout_init(linear, scheme, &layout);

    /* Step 1: the structure check; its first error is the failure. */
    qref_findings findings = {0};
    qref_ct_check_linear(linear, scheme, &findings);
    for (size_t k = 0; k < findings.count; k++) {
        if (findings.items[k].severity != QREF_SEVERITY_ERROR)
            continue;
        qref_error_set(err, QREF_ERR_INVALID, "%s", findings.items[k].message);
        qref_findings_free(&findings);
        return QREF_ERR_INVALID;
    }
    bool lost = findings.dropped > 0;
    qref_findings_free(&findings);
    if (lost)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory while checking the linear", layout.module);

    /* Step 2: buffers. */
    out->bits = layout.bits;
    out->out_features = layout.out;
    out->in_features = layout.in;
    out->strategy = layout.strategy;
    out->group_size = layout.group_size;
    out->groups = layout.groups;
    out->scale_dtype = linear->weight_scale->dtype;
    const bool use_g_idx = linear->weight_g_idx != NULL && layout.strategy == QREF_CT_STRATEGY_GROUP;
    qref_status status = codes_allocate(out, linear->weight_zero_point != NULL, use_g_idx, layout.module, err);
    if (status != QREF_OK) {
        qref_ct_codes_free(out);
        return status;
    }

    /* Step 3: codes, from the I8 weight or the packed words. */
    const size_t rows = (size_t)layout.out, cols = (size_t)layout.in;
    if (layout.packed) {
        const size_t words = (size_t)linear->weight_packed->shape[1];
        uint32_t *buffer = malloc(rows * words * sizeof *buffer + 1);
        if (buffer == NULL) {
            qref_ct_codes_free(out);
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the packed words", layout.module);
        }
        for (size_t k = 0; k < rows * words; k++)
            buffer[k] = qref_load_u32(linear->weight_packed->data + 4 * k);
        qref_ct_unpack_rows(buffer, rows, cols, layout.bits, out->codes);
        free(buffer);
    } else {
        memcpy(out->codes, linear->weight->data, rows * cols);
    }

    /* Step 4: scales and zero points, broadcast to [out][groups] (tensor: one value). */
    const qref_tensor *scale = linear->weight_scale, *zp = linear->weight_zero_point;
    int8_t *zero_values = NULL;
    if (zp != NULL && layout.zp_packed) {
        const size_t words = (size_t)zp->shape[0] * (size_t)layout.groups;
        uint32_t *buffer = malloc(words * sizeof *buffer + 1);
        zero_values = malloc(rows * (size_t)layout.groups + 1);
        if (buffer == NULL || zero_values == NULL) {
            free(buffer);
            free(zero_values);
            qref_ct_codes_free(out);
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the zero points", layout.module);
        }
        for (size_t k = 0; k < words; k++)
            buffer[k] = qref_load_u32(zp->data + 4 * k);
        qref_ct_unpack_columns(buffer, rows, (size_t)layout.groups, layout.bits, zero_values);
        free(buffer);
    }
    for (int64_t o = 0; o < layout.out; o++) {
        for (int64_t g = 0; g < layout.groups; g++) {
            uint64_t index = layout.strategy == QREF_CT_STRATEGY_TENSOR ? 0 : (uint64_t)(o * layout.groups + g);
            out->scales[o * layout.groups + g] = load_float(scale, index);
            if (out->zeros != NULL)
                out->zeros[o * layout.groups + g] = zero_values != NULL ? zero_values[index]
                                                                        : (int8_t)zp->data[index];
        }
    }
    free(zero_values);

    /* Step 5: g_idx, read by the group strategy only. */
    for (int64_t i = 0; use_g_idx && i < layout.in; i++)
        out->g_idx[i] = (int32_t)qref_load_u32(linear->weight_g_idx->data + 4 * (size_t)i);
    return QREF_OK;
}

void qref_ct_codes_dequantize(const qref_ct_codes *codes, float *weight)
{
    const int64_t in = codes->in_features, groups = codes->groups;
    const qref_dtype dtype = codes->scale_dtype;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < codes->out_features; o++) {
        for (int64_t i = 0; i < in; i++) {
            int64_t g = 0;
            if (codes->strategy == QREF_CT_STRATEGY_GROUP)
                g = codes->g_idx != NULL ? codes->g_idx[i] : i / codes->group_size;
            int64_t k = o * groups + g;
            int difference = (int)codes->codes[o * in + i] - (codes->zeros != NULL ? (int)codes->zeros[k] : 0);

            /* |difference| <= 255 and an f16 or bf16 scale have at most 8 + 11 significant bits,
             * so the f32 product is exact and one rounding gives PyTorch's f16/bf16 product. */
            float product = (float)difference * codes->scales[k];
            if (dtype == QREF_DTYPE_F16)
                product = qref_f16_to_f32(qref_f32_to_f16(product));
            else if (dtype == QREF_DTYPE_BF16)
                product = qref_bf16_to_f32(qref_f32_to_bf16(product));
            weight[o * in + i] = product;
        }
    }
}

/* ---- quantize ----------------------------------------------------------------------------- */

/* Rounds an f32 result to the arithmetic dtype (one PyTorch operation in f16 or bf16). */
static float round_to(qref_dtype dtype, float value)
{
    if (dtype == QREF_DTYPE_F16)
        return qref_f16_to_f32(qref_f32_to_f16(value));
    if (dtype == QREF_DTYPE_BF16)
        return qref_bf16_to_f32(qref_f32_to_bf16(value));
    return value;
}

static float clamp_float(float value, float lo, float hi)
{
    return value < lo ? lo : (value > hi ? hi : value);
}

/*
 * calculate_qparams for one slice: columns first .. first + count - 1 of `rows` rows that are
 * row_stride floats apart. Fails on a non-finite value.
 */
static qref_status slice_params(const char *name, const float *weight, int64_t rows, int64_t row_stride,
                                int64_t first, int64_t count, const ct_layout *layout, qref_dtype dtype, float *scale,
                                int8_t *zero, qref_error *err)
{
    float lo = 0.0f, hi = 0.0f;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = first; i < first + count; i++) {
            float x = weight[r * row_stride + i];
            if (!isfinite(x))
                return qref_error_set(err, QREF_ERR_INVALID, "%s: weight %g at [%lld][%lld], expected a finite "
                                      "value", name, (double)x, (long long)r, (long long)i);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
    }
    const float range = (float)(layout->q_max - layout->q_min); /* 2^b - 1, exact */
    float s;
    if (layout->symmetric) {
        float absmax = fabsf(lo) > fabsf(hi) ? fabsf(lo) : fabsf(hi);
        s = round_to(dtype, absmax / (range / 2.0f));
    } else {
        s = round_to(dtype, round_to(dtype, hi - lo) / range);
    }
    s = s < CT_SCALE_MIN ? CT_SCALE_MIN : s;
    *scale = s;
    if (layout->symmetric) {
        *zero = 0;
    } else {
        float z = round_to(dtype, (float)layout->q_min - round_to(dtype, lo / s));
        z = clamp_float(z, (float)layout->q_min, (float)layout->q_max);
        *zero = (int8_t)nearbyintf(z);
    }
    return QREF_OK;
}

qref_status qref_ct_quantize(const char *name, const float *weight, int64_t out_features, int64_t in_features,
                             const qref_ct_args *args, qref_dtype dtype, qref_ct_codes *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    if (args->num_bits < 1 || args->num_bits > 8)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %d bits, expected 1..8", name, args->num_bits);
    if (dtype != QREF_DTYPE_F32 && dtype != QREF_DTYPE_F16 && dtype != QREF_DTYPE_BF16)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: weights dtype %s, expected F32, F16 or BF16", name,
                              qref_dtype_name(dtype));
    if (args->strategy != QREF_CT_STRATEGY_TENSOR && args->strategy != QREF_CT_STRATEGY_CHANNEL &&
        args->strategy != QREF_CT_STRATEGY_GROUP)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: strategy \"%s\", expected tensor, channel or group", name,
                              qref_ct_strategy_name(args->strategy));
    if (args->strategy == QREF_CT_STRATEGY_GROUP && (args->group_size <= 0 || in_features % args->group_size != 0))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: group size %ld does not divide %lld input features", name,
                              args->group_size, (long long)in_features);

    /* Step 1: the layout and the buffers. */
    qref_ct_scheme scheme = {.weights = *args, .format = QREF_CT_FORMAT_INT_QUANTIZED};
    qref_ct_linear linear = {.prefix = name, .out_features = out_features, .in_features = in_features};
    ct_layout layout;
    layout_init(&linear, &scheme, &layout);
    out->bits = args->num_bits;
    out->out_features = out_features;
    out->in_features = in_features;
    out->strategy = args->strategy;
    out->group_size = layout.group_size;
    out->groups = layout.groups;
    out->scale_dtype = dtype;
    qref_status status = codes_allocate(out, !args->symmetric, false, name, err);
    if (status != QREF_OK)
        return status;

    /* Step 2: scale and zero point of each slice (the whole tensor, a row, or a row's group). */
    const int64_t groups = layout.groups, G = layout.group_size;
    if (args->strategy == QREF_CT_STRATEGY_TENSOR) {
        float scale = 0.0f;
        int8_t zero = 0;
        status = slice_params(name, weight, out_features, in_features, 0, in_features, &layout, dtype, &scale, &zero,
                              err);
        for (int64_t o = 0; status == QREF_OK && o < out_features; o++) {
            out->scales[o] = scale;
            if (out->zeros != NULL)
                out->zeros[o] = zero;
        }
    } else {
        for (int64_t o = 0; status == QREF_OK && o < out_features; o++)
            for (int64_t g = 0; status == QREF_OK && g < groups; g++) {
                int8_t zero = 0;
                status = slice_params(name, weight + o * in_features, 1, in_features, g * G, G, &layout, dtype,
                                      &out->scales[o * groups + g], &zero, err);
                if (out->zeros != NULL)
                    out->zeros[o * groups + g] = zero;
            }
    }
    if (status != QREF_OK)
        return status;

    /* Step 3: q = round(clamp(x / scale + zp, q_min, q_max)), each operation in the dtype. */
    const float q_min = (float)layout.q_min, q_max = (float)layout.q_max;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out_features; o++) {
        for (int64_t i = 0; i < in_features; i++) {
            int64_t k = o * groups + i / G;
            float t = round_to(dtype, weight[o * in_features + i] / out->scales[k]);
            if (out->zeros != NULL)
                t = round_to(dtype, t + (float)out->zeros[k]);
            out->codes[o * in_features + i] = (int8_t)nearbyintf(clamp_float(t, q_min, q_max));
        }
    }
    return QREF_OK;
}

/* ---- pack --------------------------------------------------------------------------------- */

void qref_ct_packed_free(qref_ct_packed *packed)
{
    if (packed == NULL)
        return;
    for (size_t k = 0; k < 4; k++) {
        free(packed->buffers[k]);
        free(packed->names[k]);
    }
    memset(packed, 0, sizeof *packed);
}

/* Adds a zeroed tensor "<prefix>.<role>" of the given shape to packed; returns its buffer. */
static uint8_t *packed_add(qref_ct_packed *packed, const char *prefix, const char *role, qref_dtype dtype, int ndim,
                           int64_t rows, int64_t cols)
{
    size_t k = packed->count;
    size_t name_size = strlen(prefix) + strlen(role) + 2;
    uint64_t numel = (uint64_t)rows * (uint64_t)(ndim == 2 ? cols : 1);
    packed->names[k] = malloc(name_size);
    packed->buffers[k] = calloc(numel ? (size_t)numel : 1, qref_dtype_size(dtype));
    if (packed->names[k] == NULL || packed->buffers[k] == NULL)
        return NULL;
    snprintf(packed->names[k], name_size, "%s.%s", prefix, role);
    qref_tensor *tensor = &packed->tensors[k];
    memset(tensor, 0, sizeof *tensor);
    tensor->name = packed->names[k];
    tensor->dtype = dtype;
    tensor->ndim = ndim;
    tensor->shape[0] = rows;
    tensor->shape[1] = ndim == 2 ? cols : 0;
    tensor->numel = numel;
    tensor->nbytes = numel * qref_dtype_size(dtype);
    tensor->data = packed->buffers[k];
    packed->count++;
    return packed->buffers[k];
}

/* Stores a scale in dtype; false when the value is not finite and positive or dtype cannot hold it exactly. */
static bool store_scale(uint8_t *data, uint64_t index, qref_dtype dtype, float value)
{
    if (!isfinite(value) || !(value > 0.0f))
        return false;
    if (dtype == QREF_DTYPE_F16) {
        uint16_t bits = qref_f32_to_f16(value);
        qref_store_u16(data + 2 * index, bits);
        return qref_f16_to_f32(bits) == value;
    }
    if (dtype == QREF_DTYPE_BF16) {
        uint16_t bits = qref_f32_to_bf16(value);
        qref_store_u16(data + 2 * index, bits);
        return qref_bf16_to_f32(bits) == value;
    }
    qref_store_f32(data + 4 * index, value);
    return true;
}

qref_status qref_ct_pack(const char *prefix, const qref_ct_codes *codes, qref_ct_format format,
                         qref_ct_packed *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    const int bits = codes->bits;
    const int64_t rows = codes->out_features, cols = codes->in_features, groups = codes->groups;
    const bool packed = format == QREF_CT_FORMAT_PACK_QUANTIZED;

    /* Step 1: what the format can store. */
    if (format != QREF_CT_FORMAT_INT_QUANTIZED && format != QREF_CT_FORMAT_NAIVE_QUANTIZED && !packed)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: format \"%s\", expected int-quantized, naive-quantized or "
                              "pack-quantized", prefix, qref_ct_format_name(format));
    if (bits < 1 || bits > 8 || (packed && bits != 4 && bits != 8))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %d bits, expected %s", prefix, bits,
                              packed ? "4 or 8 for pack-quantized" : "1..8");
    if (codes->g_idx != NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: codes with g_idx, expected groups in column order (this "
                              "writer stores no weight_g_idx)", prefix);
    if (codes->scale_dtype != QREF_DTYPE_F16 && codes->scale_dtype != QREF_DTYPE_BF16 &&
        codes->scale_dtype != QREF_DTYPE_F32)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: scale dtype %s, expected F16, BF16 or F32", prefix,
                              qref_dtype_name(codes->scale_dtype));
    const int q_min = -(1 << (bits - 1)), q_max = (1 << (bits - 1)) - 1;
    for (int64_t k = 0; k < rows * cols; k++)
        if (codes->codes[k] < q_min || codes->codes[k] > q_max)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: code %d at [%lld][%lld], expected %d..%d", prefix,
                                  codes->codes[k], (long long)(k / cols), (long long)(k % cols), q_min, q_max);
    for (int64_t k = 0; codes->zeros != NULL && k < rows * groups; k++)
        if (codes->zeros[k] < q_min || codes->zeros[k] > q_max)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: zero point %d at [%lld][%lld], expected %d..%d",
                                  prefix, codes->zeros[k], (long long)(k / groups), (long long)(k % groups), q_min,
                                  q_max);
    const bool tensor = codes->strategy == QREF_CT_STRATEGY_TENSOR;
    for (int64_t k = 1; tensor && k < rows; k++)
        if (codes->scales[k] != codes->scales[0] || (codes->zeros != NULL && codes->zeros[k] != codes->zeros[0]))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: row %lld has its own scale or zero point, expected one "
                                  "for the tensor strategy", prefix, (long long)k);

    /* Step 2: the codes, as the I8 weight or packed along in with weight_shape. */
    uint8_t *data;
    if (packed) {
        const int64_t words = (cols + qref_ct_pack_factor(bits) - 1) / qref_ct_pack_factor(bits);
        data = packed_add(out, prefix, "weight_packed", QREF_DTYPE_I32, 2, rows, words);
        uint32_t *buffer = malloc((size_t)(rows * words) * sizeof *buffer + 1);
        if (data == NULL || buffer == NULL) {
            free(buffer);
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the packed weights", prefix);
        }
        qref_ct_pack_rows(codes->codes, (size_t)rows, (size_t)cols, bits, buffer);
        for (int64_t k = 0; k < rows * words; k++)
            qref_store_u32(data + 4 * k, buffer[k]);
        free(buffer);
    } else {
        data = packed_add(out, prefix, "weight", QREF_DTYPE_I8, 2, rows, cols);
        if (data == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the weights", prefix);
        memcpy(data, codes->codes, (size_t)(rows * cols));
    }

    /* Step 3: weight_scale, [1] / [out, 1] / [out, groups]. */
    data = tensor ? packed_add(out, prefix, "weight_scale", codes->scale_dtype, 1, 1, 0)
                  : packed_add(out, prefix, "weight_scale", codes->scale_dtype, 2, rows, groups);
    if (data == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the scales", prefix);
    for (int64_t k = 0; k < (tensor ? 1 : rows * groups); k++)
        if (!store_scale(data, (uint64_t)k, codes->scale_dtype, codes->scales[k]))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: scale %.9g at [%lld][%lld], expected a finite value > 0 "
                                  "that %s holds exactly", prefix, (double)codes->scales[k], (long long)(k / groups),
                                  (long long)(k % groups), qref_dtype_name(codes->scale_dtype));

    /* Step 4: weight_shape (pack-quantized), then asymmetric zero points. */
    if (packed) {
        data = packed_add(out, prefix, "weight_shape", QREF_DTYPE_I64, 1, 2, 0);
        if (data == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate weight_shape", prefix);
        qref_store_u64(data, (uint64_t)rows);
        qref_store_u64(data + 8, (uint64_t)cols);
    }
    if (codes->zeros != NULL && packed && !tensor) {
        const int64_t words = (rows + qref_ct_pack_factor(bits) - 1) / qref_ct_pack_factor(bits);
        data = packed_add(out, prefix, "weight_zero_point", QREF_DTYPE_I32, 2, words, groups);
        uint32_t *buffer = malloc((size_t)(words * groups) * sizeof *buffer + 1);
        if (data == NULL || buffer == NULL) {
            free(buffer);
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the zero points", prefix);
        }
        qref_ct_pack_columns(codes->zeros, (size_t)rows, (size_t)groups, bits, buffer);
        for (int64_t k = 0; k < words * groups; k++)
            qref_store_u32(data + 4 * k, buffer[k]);
        free(buffer);
    } else if (codes->zeros != NULL) {
        data = tensor ? packed_add(out, prefix, "weight_zero_point", QREF_DTYPE_I8, 1, 1, 0)
                      : packed_add(out, prefix, "weight_zero_point", QREF_DTYPE_I8, 2, rows, groups);
        if (data == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the zero points", prefix);
        memcpy(data, codes->zeros, (size_t)(tensor ? 1 : rows * groups));
    }
    return QREF_OK;
}
