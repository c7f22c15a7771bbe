/*
 * The compressed-tensors codec (formats/qref_ct.h) behind the codec interface.
 *
 * Every LLaMA linear ("model.layers.N.<proj>" and "lm_head") that stores a weight or
 * weight_packed tensor counts as stored in this layout, quantized or not. In a
 * compressed-tensors checkpoint the config decides which linears stay in float (the ignore
 * list, and modules no group targets), so the codec checks and loads both kinds. It reports a
 * linear stored in the other kind than the config gives it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_codec.h"
#include "formats/qref_ct.h"
#include "io/qref_json.h"

static const char *const ct_quant_methods[] = {"compressed-tensors", NULL};

static const qref_finding_kind ct_finding_kinds[] = {
    {"ct.schema.invalid", QREF_SEVERITY_ERROR,
     "the quantization_config breaks the compressed-tensors schema: an unknown key, a value of the wrong type, "
     "arguments the library rejects together, an invalid regex"},
    {"ct.schema.strategy", QREF_SEVERITY_ERROR,
     "a strategy that compressed-tensors does not know, or does not allow for weights or activations"},
    {"ct.schema.group_size", QREF_SEVERITY_ERROR,
     "group_size missing or not positive for strategy group, given for another strategy, or not dividing a "
     "linear's input features"},
    {"ct.schema.bits", QREF_SEVERITY_ERROR, "num_bits below 1, or other than 4 and 8 for format pack-quantized"},
    {"ct.schema.status", QREF_SEVERITY_ERROR,
     "quantization_status is not \"compressed\", so loaders do not read the stored layout as compressed"},
    {"ct.targets.unmatched", QREF_SEVERITY_WARNING, "a target or ignore entry matches none of the linear layers"},
    {"ct.targets.overlap", QREF_SEVERITY_WARNING,
     "two config groups target the same linear; loaders that rank targets differently may apply different "
     "schemes"},
    {"ct.ignored.quantized", QREF_SEVERITY_ERROR,
     "a linear the config keeps in float (ignored, or targeted by no group) is stored quantized"},
    {"ct.targeted.float", QREF_SEVERITY_ERROR, "a linear a config group quantizes is stored in float"},
    {"ct.tensor.missing", QREF_SEVERITY_ERROR,
     "a tensor the layout needs (weight, weight_packed, weight_shape, weight_scale, weight_g_idx) is absent"},
    {"ct.tensor.shape", QREF_SEVERITY_ERROR, "a tensor's shape differs from the one the args and features imply"},
    {"ct.tensor.dtype", QREF_SEVERITY_ERROR, "a tensor's dtype differs from the one the format stores"},
    {"ct.weight_shape.value", QREF_SEVERITY_ERROR, "weight_shape differs from (out_features, in_features)"},
    {"ct.zero_point.unexpected", QREF_SEVERITY_ERROR, "a zero point is stored for symmetric args"},
    {"ct.zero_point.missing", QREF_SEVERITY_ERROR, "asymmetric args without their stored zero point"},
    {"ct.zero_point.range", QREF_SEVERITY_ERROR, "an I8 zero point outside the signed b-bit range"},
    {"ct.codes.range", QREF_SEVERITY_ERROR, "an I8 code outside the signed b-bit range of the declared bits"},
    {"ct.padding", QREF_SEVERITY_ERROR, "nonzero padding bits after the last packed code or zero point"},
    {"ct.scale.invalid", QREF_SEVERITY_ERROR, "a weight scale that is NaN, infinite, zero or negative"},
    {"ct.g_idx.invalid", QREF_SEVERITY_ERROR,
     "weight_g_idx names a group out of range, or a group does not hold group_size features"},
    {"ct.input_scale.missing", QREF_SEVERITY_ERROR, "static activation quantization without its input_scale"},
    {"ct.input_scale.invalid", QREF_SEVERITY_ERROR, "an input_scale that is NaN, infinite, zero or negative"},
    {"ct.activations.not_emulated", QREF_SEVERITY_INFO,
     "activation or KV-cache quantization is declared; the reference forward keeps activations in float"},
    {NULL, QREF_SEVERITY_INFO, NULL},
};

/* ---- config ------------------------------------------------------------------------------- */

static qref_status ct_config_parse(const qref_codec_input *input, void **config, qref_error *err)
{
    /* compressed-tensors keeps its config in config.json; a quantize_config.json that names the
     * method is read the same way */
    const cJSON *object = cJSON_GetObjectItemCaseSensitive(input->config, "quantization_config");
    char display[160];
    snprintf(display, sizeof display, "%s: quantization_config", input->config_display);
    cJSON *quantize_root = NULL;
    if (object == NULL && input->quantize_text != NULL) {
        qref_status status = qref_json_parse(input->quantize_display, input->quantize_text, input->quantize_length,
                                             QREF_JSON_MAX_DEPTH, &quantize_root, err);
        if (status != QREF_OK)
            return status;
        object = quantize_root;
        snprintf(display, sizeof display, "%s", input->quantize_display);
    }
    qref_ct_config *parsed = calloc(1, sizeof *parsed);
    if (parsed == NULL) {
        cJSON_Delete(quantize_root);
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for the compressed-tensors config");
    }
    qref_status status = qref_ct_config_parse(display, object, parsed, err);
    cJSON_Delete(quantize_root);
    if (status != QREF_OK) {
        qref_ct_config_free(parsed);
        free(parsed);
        return status;
    }
    *config = parsed;
    return QREF_OK;
}

static void ct_config_free(void *config)
{
    qref_ct_config_free(config);
    free(config);
}

/* "4-bit group 128 asym" style summary of args. */
static void describe_args(const qref_ct_args *args, char *buf, size_t size)
{
    char group[32] = "";
    if (args->strategy == QREF_CT_STRATEGY_GROUP || args->strategy == QREF_CT_STRATEGY_TENSOR_GROUP)
        snprintf(group, sizeof group, " %ld", args->group_size);
    snprintf(buf, size, "%d-bit %s %s%s %s%s", args->num_bits, args->type_float ? "float" : "int",
             qref_ct_strategy_name(args->strategy), group, args->symmetric ? "sym" : "asym",
             args->dynamic ? " dynamic" : "");
}

static void ct_config_describe(const void *config, cJSON *out)
{
    const qref_ct_config *c = config;
    cJSON_AddStringToObject(out, "format", "compressed-tensors");
    cJSON_AddStringToObject(out, "method", "compressed-tensors");
    cJSON_AddStringToObject(out, "compression_format", qref_ct_format_name(c->format));
    cJSON_AddStringToObject(out, "quantization_status", c->status);

    /* bits, group size and symmetry of the first group with weights, as other codecs report them */
    for (size_t s = 0; s < c->scheme_count; s++) {
        const qref_ct_scheme *scheme = &c->schemes[s];
        if (!scheme->has_weights)
            continue;
        cJSON_AddNumberToObject(out, "bits", scheme->weights.num_bits);
        cJSON_AddNumberToObject(out, "group_size", scheme->weights.strategy == QREF_CT_STRATEGY_GROUP
                                                       ? (double)scheme->weights.group_size
                                                       : -1.0);
        cJSON_AddBoolToObject(out, "sym", scheme->weights.symmetric);
        break;
    }
    cJSON *groups = cJSON_AddArrayToObject(out, "groups");
    for (size_t s = 0; s < c->scheme_count; s++) {
        const qref_ct_scheme *scheme = &c->schemes[s];
        cJSON *group = cJSON_CreateObject();
        cJSON_AddStringToObject(group, "name", scheme->name);
        cJSON_AddStringToObject(group, "format", qref_ct_format_name(scheme->format));
        cJSON *targets = cJSON_AddArrayToObject(group, "targets");
        for (size_t t = 0; t < scheme->target_count; t++)
            cJSON_AddItemToArray(targets, cJSON_CreateString(scheme->targets[t]));
        char text[96];
        if (scheme->has_weights) {
            describe_args(&scheme->weights, text, sizeof text);
            cJSON_AddStringToObject(group, "weights", text);
        } else {
            cJSON_AddNullToObject(group, "weights");
        }
        if (scheme->has_input_activations) {
            describe_args(&scheme->input_activations, text, sizeof text);
            cJSON_AddStringToObject(group, "input_activations", text);
        } else {
            cJSON_AddNullToObject(group, "input_activations");
        }
        cJSON_AddBoolToObject(group, "valid", scheme->valid);
        cJSON_AddItemToArray(groups, group);
    }
    cJSON *ignore = cJSON_AddArrayToObject(out, "ignore");
    for (size_t k = 0; k < c->ignore_count; k++)
        cJSON_AddItemToArray(ignore, cJSON_CreateString(c->ignore[k]));
    if (c->has_kv_cache) {
        char text[96];
        describe_args(&c->kv_cache, text, sizeof text);
        cJSON_AddStringToObject(out, "kv_cache_scheme", text);
    } else {
        cJSON_AddNullToObject(out, "kv_cache_scheme");
    }
}

/* ---- linears ------------------------------------------------------------------------------ */

static const char *const layer_linears[] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

/* True for "lm_head" and "model.layers.N.<projection>", the linears of a LLaMA model. */
static bool is_linear_module(const char *module)
{
    if (strcmp(module, "lm_head") == 0)
        return true;
    const char prefix[] = "model.layers.";
    if (strncmp(module, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *p = module + sizeof prefix - 1;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p++ != '.')
        return false;
    for (size_t k = 0; k < sizeof layer_linears / sizeof layer_linears[0]; k++)
        if (strcmp(p, layer_linears[k]) == 0)
            return true;
    return false;
}

static bool ct_linear_stored(const void *config, const qref_tensor_set *tensors, const char *module)
{
    (void)config;
    if (!is_linear_module(module))
        return false;
    qref_ct_linear linear = qref_ct_linear_find(tensors, module, 0, 0);
    return linear.weight != NULL || linear.weight_packed != NULL;
}

/* The reason a linear stays in float, for messages. */
static const char *float_reason(const qref_ct_resolution *resolution)
{
    if (resolution->ignored)
        return "an ignore entry matches it";
    if (resolution->scheme != NULL)
        return "its config group quantizes no weights";
    return "no config group targets it";
}

/* The first schema problem, for the message of a linear under an invalid group. */
static const char *first_problem(const qref_ct_config *config)
{
    return config->problem_count > 0 ? config->problems[0].message : "the group is invalid";
}

static qref_status ct_linear_dequantize(const void *config, const qref_tensor_set *tensors, const char *module,
                                        int64_t rows, int64_t cols, float *weight, qref_error *err)
{
    const qref_ct_config *c = config;
    qref_ct_resolution resolution = qref_ct_config_resolve(c, module);
    qref_ct_linear linear = qref_ct_linear_find(tensors, module, rows, cols);

    /* a linear the config keeps in float */
    if (resolution.scheme == NULL || !resolution.scheme->has_weights) {
        if (qref_ct_linear_is_quantized(&linear))
            return qref_error_set(err, QREF_ERR_INVALID, "linear \"%s\" is stored quantized, but %s, so "
                                  "compressed-tensors loads it as a float weight", module, float_reason(&resolution));
        const qref_tensor *dense = linear.weight;
        if (dense == NULL)
            return qref_error_set(err, QREF_ERR_INVALID, "tensor \"%s.weight\" not found (expected shape [%lld, "
                                  "%lld])", module, (long long)rows, (long long)cols);
        char shape[96];
        qref_tensor_shape_string(dense, shape, sizeof shape);
        if (dense->ndim != 2 || dense->shape[0] != rows || dense->shape[1] != cols)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": shape %s, expected [%lld, %lld]",
                                  dense->file, dense->name, shape, (long long)rows, (long long)cols);
        return qref_convert_to_f32(dense->dtype, dense->data, (size_t)(rows * cols), weight, err);
    }
    if (!resolution.scheme->valid)
        return qref_error_set(err, QREF_ERR_INVALID, "linear \"%s\": config_groups.%s cannot be read: %s", module,
                              resolution.scheme->name, first_problem(c));

    /* a quantized linear */
    qref_ct_codes codes;
    qref_status status = qref_ct_unpack(&linear, resolution.scheme, &codes, err);
    if (status == QREF_OK)
        qref_ct_codes_dequantize(&codes, weight);
    qref_ct_codes_free(&codes);
    return status;
}

/* Checks a linear the config keeps in float: not quantized, a float [rows, cols] weight. */
static void check_float_linear(const qref_ct_linear *linear, const qref_ct_resolution *resolution,
                               qref_findings *findings)
{
    const char *module = linear->prefix;
    if (qref_ct_linear_is_quantized(linear)) {
        const qref_tensor *evidence = linear->weight_packed != NULL ? linear->weight_packed
                                    : linear->weight_scale != NULL  ? linear->weight_scale
                                                                    : linear->weight;
        char shape[96] = "?";
        if (evidence != NULL)
            qref_tensor_shape_string(evidence, shape, sizeof shape);
        qref_findings_add(findings, "ct.ignored.quantized", QREF_SEVERITY_ERROR, module,
                          "%s: linear \"%s\" is stored quantized (tensor \"%s\", %s %s), expected a float weight "
                          "because %s", evidence != NULL && evidence->file != NULL ? evidence->file : "artifact",
                          module, evidence != NULL ? evidence->name : "?",
                          evidence != NULL ? qref_dtype_name(evidence->dtype) : "?", shape, float_reason(resolution));
        return;
    }
    const qref_tensor *dense = linear->weight;
    char shape[96];
    qref_tensor_shape_string(dense, shape, sizeof shape);
    if (dense->ndim != 2 || dense->shape[0] != linear->out_features || dense->shape[1] != linear->in_features) {
        qref_findings_add(findings, "ct.tensor.shape", QREF_SEVERITY_ERROR, dense->name,
                          "%s: tensor \"%s\": shape %s, expected [%lld, %lld]", dense->file, dense->name, shape,
                          (long long)linear->out_features, (long long)linear->in_features);
        return;
    }
    qref_error err = {0};
    if (qref_tensor_check_finite(dense, &err) != QREF_OK)
        qref_findings_add_error(findings, "structure.nonfinite", dense->name, &err);
}

static void ct_linear_check(const void *config, const qref_tensor_set *tensors, const char *module, int64_t rows,
                            int64_t cols, qref_findings *findings)
{
    const qref_ct_config *c = config;
    qref_ct_resolution resolution = qref_ct_config_resolve(c, module);
    qref_ct_linear linear = qref_ct_linear_find(tensors, module, rows, cols);
    /* under a config with schema problems (config_check reports them), a linear's group is unknown */
    if (c->problem_count > 0 && (resolution.scheme == NULL || !resolution.scheme->valid))
        return;
    if (resolution.scheme == NULL || !resolution.scheme->has_weights) {
        check_float_linear(&linear, &resolution, findings);
        return;
    }
    qref_ct_check_linear(&linear, resolution.scheme, findings);
}

static void ct_linear_describe(const void *config, const qref_tensor_set *tensors, const char *module,
                               qref_linear_info *info)
{
    const qref_ct_config *c = config;
    qref_ct_resolution resolution = qref_ct_config_resolve(c, module);
    qref_ct_linear linear = qref_ct_linear_find(tensors, module, 0, 0);
    if (resolution.scheme == NULL || !resolution.scheme->has_weights) {
        const qref_tensor *dense = linear.weight;
        snprintf(info->codec, sizeof info->codec, "%s", dense != NULL ? qref_dtype_name(dense->dtype) : "?");
        info->bits = dense != NULL ? (int)qref_dtype_size(dense->dtype) * 8 : 0;
        info->group_size = 0;
        return;
    }
    const qref_ct_args *w = &resolution.scheme->weights;
    const char *format = resolution.scheme->format == QREF_CT_FORMAT_PACK_QUANTIZED    ? "ct-pack"
                       : resolution.scheme->format == QREF_CT_FORMAT_NAIVE_QUANTIZED ? "ct-naive"
                                                                                       : "ct-int";
    snprintf(info->codec, sizeof info->codec, "%s", format);
    info->bits = w->num_bits;
    info->group_size = w->strategy == QREF_CT_STRATEGY_GROUP     ? w->group_size
                     : w->strategy == QREF_CT_STRATEGY_CHANNEL ? -1
                                                                 : 0;
}

/* ---- the whole artifact ------------------------------------------------------------------- */

/* Reports the schema problems found while parsing, then targets and ignore entries against the linears. */
static void ct_config_check(const void *config, const char *const *modules, size_t module_count,
                            qref_findings *findings)
{
    const qref_ct_config *c = config;
    for (size_t k = 0; k < c->problem_count; k++)
        qref_findings_add(findings, c->problems[k].id, QREF_SEVERITY_ERROR, "", "%s", c->problems[k].message);
    qref_ct_config_check_targets(c, modules, module_count, findings);
}

static void ct_artifact_check(const void *config, const qref_tensor_set *tensors, const char *const *modules,
                              size_t module_count, qref_findings *findings)
{
    (void)tensors;
    (void)modules;
    (void)module_count;
    const qref_ct_config *c = config;

    /* quantization the reference forward does not emulate. */
    for (size_t s = 0; s < c->scheme_count; s++) {
        const qref_ct_scheme *scheme = &c->schemes[s];
        if (!scheme->has_input_activations && !scheme->has_output_activations)
            continue;
        char text[96] = "output activations";
        if (scheme->has_input_activations)
            describe_args(&scheme->input_activations, text, sizeof text);
        qref_findings_add(findings, "ct.activations.not_emulated", QREF_SEVERITY_INFO, "",
                          "config_groups.%s quantizes %s activations (%s); evaluation keeps activations in float, "
                          "so its results cover the weight quantization only", scheme->name,
                          scheme->has_input_activations ? "input" : "output", text);
    }
    if (c->has_kv_cache) {
        char text[96];
        describe_args(&c->kv_cache, text, sizeof text);
        qref_findings_add(findings, "ct.activations.not_emulated", QREF_SEVERITY_INFO, "",
                          "kv_cache_scheme quantizes the KV cache (%s); evaluation keeps the KV cache in float",
                          text);
    }
}

const qref_codec qref_ct_codec = {
    .name = "compressed-tensors",
    .quant_methods = ct_quant_methods,
    .finding_kinds = ct_finding_kinds,
    .config_parse = ct_config_parse,
    .config_free = ct_config_free,
    .config_describe = ct_config_describe,
    .linear_stored = ct_linear_stored,
    .linear_dequantize = ct_linear_dequantize,
    .linear_check = ct_linear_check,
    .linear_describe = ct_linear_describe,
    .config_check = ct_config_check,
    .artifact_check = ct_artifact_check,
};
