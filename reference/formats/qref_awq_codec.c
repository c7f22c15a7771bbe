/*
 * The AWQ codec (AutoAWQ GEMM and GEMV layouts, formats/qref_awq.h) behind the codec
 * interface.
 *
 * A linear is stored in this codec's layout when it has a "<module>.qweight" tensor. The codec
 * also claims a linear stored as a float "<module>.weight", so that it can distinguish two
 * cases. A module that the config's modules_to_not_convert names is float by design
 * (awq.not_converted). Any other float linear is an error (awq.unquantized). Both are read as
 * float, so the forward can run.
 * NOTE: verify's structure summary counts such float linears among those "stored in the awq
 * layout", because it counts every linear the codec claims.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_awq.h"
#include "formats/qref_codec.h"

static const char *const awq_quant_methods[] = {"awq", NULL};

static const qref_finding_kind awq_finding_kinds[] = {
    {"awq.tensor.missing", QREF_SEVERITY_ERROR,
     "an AWQ linear lacks scales, or qzeros while zero_point is true"},
    {"awq.dtype", QREF_SEVERITY_ERROR, "qweight or qzeros is not I32, or scales is not F16"},
    {"awq.shape", QREF_SEVERITY_ERROR,
     "an AWQ tensor's shape differs from the declared layout's for the linear's features"},
    {"awq.bits", QREF_SEVERITY_ERROR,
     "the config declares a width other than 4 bits, or qweight holds codes of another width"},
    {"awq.group_size", QREF_SEVERITY_ERROR,
     "the declared group size does not divide in_features, the layout does not implement it, or the "
     "scales were packed with another group size"},
    {"awq.layout.mismatch", QREF_SEVERITY_ERROR,
     "the tensors have the GEMV shapes while the config declares GEMM, or the reverse"},
    {"awq.scales.invalid", QREF_SEVERITY_ERROR, "a scale is NaN, infinite, zero or negative"},
    {"awq.zero_point.not_symmetric", QREF_SEVERITY_ERROR,
     "the config declares zero_point false but a stored zero point is not 8"},
    {"awq.qzeros.missing", QREF_SEVERITY_WARNING,
     "zero_point is false and qzeros is absent; AutoAWQ's loaders would use zero points 0"},
    {"awq.scales.padding", QREF_SEVERITY_WARNING,
     "a GEMV scales column after the last group is not zero, as AutoAWQ writes it"},
    {"awq.qzeros.padding", QREF_SEVERITY_WARNING,
     "a GEMV qzeros field after the last group is not zero, as AutoAWQ writes it"},
    {"awq.not_converted", QREF_SEVERITY_INFO,
     "a linear the config lists in modules_to_not_convert is stored in float and read as float"},
    {"awq.not_converted.packed", QREF_SEVERITY_ERROR,
     "a linear the config lists in modules_to_not_convert is stored packed, which transformers would "
     "load as a float nn.Linear without a weight"},
    {"awq.unquantized", QREF_SEVERITY_ERROR,
     "a linear is stored in float although modules_to_not_convert does not list it"},
    {NULL, QREF_SEVERITY_INFO, NULL},
};

static qref_status awq_config_parse(const qref_codec_input *input, void **config, qref_error *err)
{
    qref_awq_config *parsed = malloc(sizeof *parsed);
    if (parsed == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for the AWQ config");
    qref_status status = qref_awq_config_resolve(input->quantize_display, input->quantize_text,
                                                 input->quantize_length, input->config_display, input->config_text,
                                                 input->config_length, parsed, err);
    if (status != QREF_OK) {
        free(parsed);
        return status;
    }
    *config = parsed;
    return QREF_OK;
}

static void awq_config_free(void *config)
{
    qref_awq_config_free(config);
    free(config);
}

static void awq_config_describe(const void *config, cJSON *out)
{
    const qref_awq_config *q = config;
    cJSON_AddStringToObject(out, "format", "awq");
    cJSON_AddStringToObject(out, "method", "awq");
    cJSON_AddNumberToObject(out, "bits", q->bits);
    cJSON_AddNumberToObject(out, "group_size", (double)q->group_size);
    cJSON_AddBoolToObject(out, "zero_point", q->zero_point);
    cJSON_AddStringToObject(out, "version", q->version);
    cJSON_AddStringToObject(out, "layout", qref_awq_layout_name(q->layout));
    cJSON *modules = cJSON_AddArrayToObject(out, "modules_to_not_convert");
    for (size_t k = 0; modules != NULL && k < q->not_convert_count; k++)
        cJSON_AddItemToArray(modules, cJSON_CreateString(q->modules_to_not_convert[k]));
    cJSON_AddStringToObject(out, "config_source", q->source);
}

static const qref_tensor *find_part(const qref_tensor_set *tensors, const char *module, const char *part)
{
    char name[512];
    int n = snprintf(name, sizeof name, "%s.%s", module, part);
    if (n < 0 || (size_t)n >= sizeof name)
        return NULL;
    return qref_tensor_set_find(tensors, name);
}

static qref_awq_linear linear_of(const qref_tensor_set *tensors, const char *module, int64_t rows, int64_t cols)
{
    qref_awq_linear linear = {
        .prefix = module,
        .qweight = find_part(tensors, module, "qweight"),
        .qzeros = find_part(tensors, module, "qzeros"),
        .scales = find_part(tensors, module, "scales"),
        .out_features = rows,
        .in_features = cols,
    };
    return linear;
}

/* The float weight of a linear that has no qweight, or NULL. */
static const qref_tensor *float_weight(const qref_tensor_set *tensors, const char *module)
{
    if (find_part(tensors, module, "qweight") != NULL)
        return NULL;
    return find_part(tensors, module, "weight");
}

static bool awq_linear_stored(const void *config, const qref_tensor_set *tensors, const char *module)
{
    (void)config;
    return find_part(tensors, module, "qweight") != NULL || find_part(tensors, module, "weight") != NULL;
}

/* Converts a float linear ("<module>.weight") to f32 after checking its dtype and shape. */
static qref_status load_float_linear(const qref_tensor *tensor, int64_t rows, int64_t cols, float *weight,
                                     qref_error *err)
{
    char shape[96];
    qref_tensor_shape_string(tensor, shape, sizeof shape);
    if (tensor->ndim != 2 || tensor->shape[0] != rows || tensor->shape[1] != cols)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": shape %s, expected [%lld, %lld]",
                              tensor->file, tensor->name, shape, (long long)rows, (long long)cols);
    if (!qref_dtype_is_float(tensor->dtype))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": dtype %s, expected F32, F16 or BF16",
                              tensor->file, tensor->name, qref_dtype_name(tensor->dtype));
    return qref_convert_to_f32(tensor->dtype, tensor->data, (size_t)(rows * cols), weight, err);
}

static qref_status awq_linear_dequantize(const void *config, const qref_tensor_set *tensors, const char *module,
                                         int64_t rows, int64_t cols, float *weight, qref_error *err)
{
    const qref_tensor *dense = float_weight(tensors, module);
    if (dense != NULL)
        return load_float_linear(dense, rows, cols, weight, err);
    qref_awq_linear linear = linear_of(tensors, module, rows, cols);
    return qref_awq_dequantize(&linear, config, weight, err);
}

/* Checks a float linear: listed (INFO) or not (ERROR), then its shape, dtype and values. */
static void check_float_linear(const qref_awq_config *config, const qref_tensor *dense, const char *module,
                               int64_t rows, int64_t cols, qref_findings *findings)
{
    char shape[96];
    qref_tensor_shape_string(dense, shape, sizeof shape);
    if (qref_awq_module_not_converted(config, module))
        qref_findings_add(findings, "awq.not_converted", QREF_SEVERITY_INFO, module,
                          "%s: linear \"%s\" is stored in float (%s %s) and read as float, as %s lists it in "
                          "modules_to_not_convert",
                          dense->file, module, qref_dtype_name(dense->dtype), shape, config->source);
    else
        qref_findings_add(findings, "awq.unquantized", QREF_SEVERITY_ERROR, module,
                          "%s: linear \"%s\" is stored unquantized (%s %s), expected the AWQ %s layout (qweight, "
                          "qzeros, scales) because %s does not list it in modules_to_not_convert",
                          dense->file, module, qref_dtype_name(dense->dtype), shape,
                          qref_awq_layout_name(config->layout), config->source);

    qref_error err = {0};
    if (dense->ndim != 2 || dense->shape[0] != rows || dense->shape[1] != cols)
        qref_findings_add(findings, "structure.shape", QREF_SEVERITY_ERROR, dense->name,
                          "%s: tensor \"%s\": shape %s, expected [%lld, %lld]", dense->file, dense->name, shape,
                          (long long)rows, (long long)cols);
    else if (!qref_dtype_is_float(dense->dtype))
        qref_findings_add(findings, "structure.dtype", QREF_SEVERITY_ERROR, dense->name,
                          "%s: tensor \"%s\": dtype %s, expected F32, F16 or BF16", dense->file, dense->name,
                          qref_dtype_name(dense->dtype));
    else if (qref_tensor_check_finite(dense, &err) != QREF_OK)
        qref_findings_add_error(findings, "structure.nonfinite", dense->name, &err);
}

static void awq_linear_check(const void *config, const qref_tensor_set *tensors, const char *module, int64_t rows,
                             int64_t cols, qref_findings *findings)
{
    const qref_awq_config *q = config;
    const qref_tensor *dense = float_weight(tensors, module);
    if (dense != NULL) {
        check_float_linear(q, dense, module, rows, cols, findings);
        return;
    }
    if (qref_awq_module_not_converted(q, module)) {
        const qref_tensor *qweight = find_part(tensors, module, "qweight");
        qref_findings_add(findings, "awq.not_converted.packed", QREF_SEVERITY_ERROR, module,
                          "%s: linear \"%s\" is stored packed (%s), but %s lists it in modules_to_not_convert, so "
                          "transformers creates a float nn.Linear for it and expects \"%s.weight\"",
                          qweight->file, module, qweight->name, q->source, module);
        return;
    }
    qref_awq_linear linear = linear_of(tensors, module, rows, cols);
    qref_awq_check_linear(&linear, q, findings);
}

static void awq_linear_describe(const void *config, const qref_tensor_set *tensors, const char *module,
                                qref_linear_info *info)
{
    const qref_awq_config *q = config;
    const qref_tensor *dense = float_weight(tensors, module);
    if (dense != NULL) {
        /* a float linear: its dtype, and its width as the bits per stored value */
        snprintf(info->codec, sizeof info->codec, "%s", qref_dtype_name(dense->dtype));
        info->bits = (int)(8 * qref_dtype_size(dense->dtype));
        info->group_size = 0;
        return;
    }
    snprintf(info->codec, sizeof info->codec, "awq-%s", qref_awq_layout_name(q->layout));
    info->bits = q->bits;
    info->group_size = q->group_size;
}

const qref_codec qref_awq_codec = {
    .name = "awq",
    .quant_methods = awq_quant_methods,
    .finding_kinds = awq_finding_kinds,
    .config_parse = awq_config_parse,
    .config_free = awq_config_free,
    .config_describe = awq_config_describe,
    .linear_stored = awq_linear_stored,
    .linear_dequantize = awq_linear_dequantize,
    .linear_check = awq_linear_check,
    .linear_describe = awq_linear_describe,
    .artifact_check = NULL,
};
