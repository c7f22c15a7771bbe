/*
 * The GPTQ codec (AutoGPTQ tensor layout, formats/qref_gptq.h) behind the codec interface.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_codec.h"
#include "formats/qref_gptq.h"

static const char *const gptq_quant_methods[] = {"gptq", NULL};

static const qref_finding_kind gptq_finding_kinds[] = {
    {"gptq.invalid", QREF_SEVERITY_ERROR,
     "a GPTQ linear's tensors disagree with the config or with each other: shapes, dtypes, bits, group "
     "size, zero points, scales or g_idx"},
    {NULL, QREF_SEVERITY_INFO, NULL},
};

static qref_status gptq_config_parse(const qref_codec_input *input, void **config, qref_error *err)
{
    qref_gptq_config *parsed = malloc(sizeof *parsed);
    if (parsed == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for the GPTQ config");
    qref_status status = qref_gptq_config_resolve(input->quantize_display, input->quantize_text,
                                                  input->quantize_length, input->config_display, input->config_text,
                                                  input->config_length, parsed, err);
    if (status != QREF_OK) {
        free(parsed);
        return status;
    }
    *config = parsed;
    return QREF_OK;
}

static void gptq_config_free(void *config)
{
    free(config);
}

static void gptq_config_describe(const void *config, cJSON *out)
{
    const qref_gptq_config *q = config;
    cJSON_AddStringToObject(out, "format", "gptq");
    cJSON_AddStringToObject(out, "method", q->algorithm[0] ? q->algorithm : "gptq");
    cJSON_AddNumberToObject(out, "bits", q->bits);
    cJSON_AddNumberToObject(out, "group_size", (double)q->group_size);
    cJSON_AddBoolToObject(out, "sym", q->sym);
    cJSON_AddBoolToObject(out, "desc_act", q->desc_act);
    cJSON_AddBoolToObject(out, "static_groups", q->static_groups);
    cJSON_AddStringToObject(out, "checkpoint_format", qref_gptq_format_name(q->format));
    cJSON_AddStringToObject(out, "quantizer", q->quantizer);
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

static qref_gptq_linear linear_of(const qref_tensor_set *tensors, const char *module, int64_t rows, int64_t cols)
{
    qref_gptq_linear linear = {
        .prefix = module,
        .qweight = find_part(tensors, module, "qweight"),
        .qzeros = find_part(tensors, module, "qzeros"),
        .scales = find_part(tensors, module, "scales"),
        .g_idx = find_part(tensors, module, "g_idx"),
        .out_features = rows,
        .in_features = cols,
    };
    return linear;
}

static bool gptq_linear_stored(const void *config, const qref_tensor_set *tensors, const char *module)
{
    (void)config;
    return find_part(tensors, module, "qweight") != NULL;
}

static qref_status gptq_linear_dequantize(const void *config, const qref_tensor_set *tensors, const char *module,
                                          int64_t rows, int64_t cols, float *weight, qref_error *err)
{
    qref_gptq_linear linear = linear_of(tensors, module, rows, cols);
    return qref_gptq_dequantize(&linear, config, weight, err);
}

static void gptq_linear_check(const void *config, const qref_tensor_set *tensors, const char *module, int64_t rows,
                              int64_t cols, qref_findings *findings)
{
    qref_gptq_linear linear = linear_of(tensors, module, rows, cols);
    qref_error err = {0};
    if (qref_gptq_check_linear(&linear, config, &err) != QREF_OK)
        qref_findings_add_error(findings, "gptq.invalid", module, &err);
}

static void gptq_linear_describe(const void *config, const qref_tensor_set *tensors, const char *module,
                                 qref_linear_info *info)
{
    (void)tensors;
    (void)module;
    const qref_gptq_config *q = config;
    snprintf(info->codec, sizeof info->codec, "gptq");
    info->bits = q->bits;
    info->group_size = q->group_size;
}

const qref_codec qref_gptq_codec = {
    .name = "gptq",
    .quant_methods = gptq_quant_methods,
    .finding_kinds = gptq_finding_kinds,
    .config_parse = gptq_config_parse,
    .config_free = gptq_config_free,
    .config_describe = gptq_config_describe,
    .linear_stored = gptq_linear_stored,
    .linear_dequantize = gptq_linear_dequantize,
    .linear_check = gptq_linear_check,
    .linear_describe = gptq_linear_describe,
    .artifact_check = NULL,
};
