/*
 * The GPTQ codec (AutoGPTQ tensor layout, formats/qref_gptq.h) behind the codec interface:
 * per-linear findings from qref_gptq_check_findings, and for the whole artifact the
 * zero-point statistics that tell checkpoint format v1 from v2 (qref_gptq_format_check).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_codec.h"
#include "formats/qref_gptq.h"

static const char *const gptq_quant_methods[] = {"gptq", NULL};

static const qref_finding_kind gptq_finding_kinds[] = {
    {"gptq.missing", QREF_SEVERITY_ERROR,
     "a tensor of a GPTQ linear (qzeros, scales, or g_idx under desc_act) is absent"},
    {"gptq.dtype", QREF_SEVERITY_ERROR,
     "a tensor's dtype differs from the one the format and pack_dtype imply (I32 words, F16/BF16/F32 scales, "
     "I32 g_idx)"},
    {"gptq.shape", QREF_SEVERITY_ERROR,
     "a tensor's shape or byte size disagrees with the declared bits, group size, pack_dtype and features"},
    {"gptq.bits_mismatch", QREF_SEVERITY_ERROR,
     "qweight rows or qzeros columns match another bit width than the config declares"},
    {"gptq.group_size_mismatch", QREF_SEVERITY_ERROR,
     "scales or qzeros rows match another group size than the config declares"},
    {"gptq.padding", QREF_SEVERITY_ERROR,
     "bits after the last code of a qweight column or the last zero point of a qzeros row are not zero"},
    {"gptq.g_idx.out_of_range", QREF_SEVERITY_ERROR, "a g_idx entry names a group outside 0..groups-1"},
    {"gptq.g_idx.group_size", QREF_SEVERITY_ERROR,
     "a group of g_idx holds more or fewer input features than the group size"},
    {"gptq.desc_act_mismatch", QREF_SEVERITY_WARNING,
     "g_idx is an act-order permutation while the config declares desc_act false or static_groups, or is "
     "i / group size while the config declares desc_act without static_groups"},
    {"gptq.zero_point.v1_underflow", QREF_SEVERITY_ERROR,
     "a format v1 zero-point field is all ones with every higher bit of its word set: a zero point of 0 "
     "stored minus one (AutoGPTQ's pack())"},
    {"gptq.zero_point.out_of_range", QREF_SEVERITY_ERROR,
     "a format v1 zero-point field is all ones (zero point 2^b) without the underflow trace"},
    {"gptq.sym_mismatch", QREF_SEVERITY_ERROR, "the config declares sym but zero points differ from 2^(b-1)"},
    {"gptq.scale.non_finite", QREF_SEVERITY_ERROR, "a scale is NaN or infinite"},
    {"gptq.scale.zero", QREF_SEVERITY_ERROR, "a scale is zero"},
    {"gptq.scale.negative", QREF_SEVERITY_ERROR, "a scale is negative"},
    {"gptq.format_mismatch", QREF_SEVERITY_ERROR,
     "zero-point statistics show checkpoint format v1 labelled gptq_v2 or the reverse, which shifts every "
     "weight by one step (ERROR when the evidence is clear, WARNING when weak)"},
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
    cJSON_AddStringToObject(out, "pack_dtype", qref_gptq_pack_dtype_name(q->pack_bits));
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
    if (qref_gptq_check_findings(&linear, config, findings, &err) != QREF_OK && findings->dropped == 0)
        findings->dropped++;
}

/*
 * Reads the features of a linear that passed the structure check: out from qweight's
 * columns, and in from g_idx or, without g_idx, from qweight's rows. The rows give in
 * exactly when in * bits is a multiple of the word width, as in every file AutoGPTQ and
 * GPTQModel write, and this codec's padded layout always stores g_idx.
 */
static bool linear_features(const qref_gptq_config *config, const qref_tensor_set *tensors, const char *module,
                            int64_t *rows, int64_t *cols)
{
    const qref_tensor *qweight = find_part(tensors, module, "qweight");
    const qref_tensor *g_idx = find_part(tensors, module, "g_idx");
    if (qweight == NULL || qweight->ndim != 2)
        return false;
    *rows = qweight->shape[1];
    *cols = g_idx != NULL ? g_idx->shape[0] : qweight->shape[0] * config->pack_bits / config->bits;
    return true;
}

static void gptq_artifact_check(const void *config, const qref_tensor_set *tensors, const char *const *modules,
                                size_t module_count, qref_findings *findings)
{
    const qref_gptq_config *q = config;
    qref_gptq_format_stats stats;
    qref_gptq_format_stats_init(&stats, q);
    for (size_t m = 0; m < module_count; m++) {
        int64_t rows, cols;
        if (!linear_features(q, tensors, modules[m], &rows, &cols))
            continue;
        qref_gptq_linear linear = linear_of(tensors, modules[m], rows, cols);
        qref_error err = {0};
        /* A linear the structure check rejected adds no statistics (its findings stand). */
        if (qref_gptq_format_stats_add(&stats, &linear, q, &err) == QREF_ERR_NOMEM)
            findings->dropped++;
    }
    qref_gptq_format_check(&stats, findings);
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
    .artifact_check = gptq_artifact_check,
};
