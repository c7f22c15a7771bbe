/*
 * The bitsandbytes codec (4-bit NF4/FP4 and LLM.int8 linears as transformers saves them,
 * formats/qref_bnb.h) behind the codec interface.
 *
 * Every linear with a weight counts as stored in this codec's layout, the unquantized ones
 * included: transformers keeps the modules of llm_int8_skip_modules as plain nn.Linear, so
 * whether a float weight is allowed depends on that list, and the check reports a float linear
 * the list does not name (bnb.skip_modules.unlisted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_bnb.h"
#include "formats/qref_codec.h"

static const char *const bnb_quant_methods[] = {"bitsandbytes", NULL};

static qref_status bnb_config_parse(const qref_codec_input *input, void **config, qref_error *err)
{
    const cJSON *object = cJSON_GetObjectItemCaseSensitive(input->config, "quantization_config");
    char display[160];
    snprintf(display, sizeof display, "%s: quantization_config", input->config_display);
    if (object == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: no quantization_config object, expected the one "
                              "transformers writes for bitsandbytes", input->config_display);
    qref_bnb_config *parsed = malloc(sizeof *parsed);
    if (parsed == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for the bitsandbytes config");
    qref_status status = qref_bnb_config_parse(display, object, parsed, err);
    if (status != QREF_OK) {
        free(parsed);
        return status;
    }
    *config = parsed;
    return QREF_OK;
}

static void bnb_config_free(void *config)
{
    if (config != NULL)
        qref_bnb_config_free(config);
    free(config);
}

static void bnb_config_describe(const void *config, cJSON *out)
{
    const qref_bnb_config *c = config;
    cJSON_AddStringToObject(out, "format", "bitsandbytes");
    cJSON_AddStringToObject(out, "method", c->load_in_8bit ? "llm.int8" : qref_bnb_quant_type_name(c->quant_type));
    cJSON_AddNumberToObject(out, "bits", c->load_in_8bit ? 8 : 4);
    if (!c->load_in_8bit) {
        cJSON_AddBoolToObject(out, "double_quant", c->double_quant);
        cJSON_AddStringToObject(out, "compute_dtype", qref_dtype_name(c->compute_dtype));
        cJSON_AddStringToObject(out, "quant_storage", qref_dtype_name(c->quant_storage));
    } else {
        cJSON_AddNumberToObject(out, "group_size", -1);
        cJSON_AddNumberToObject(out, "int8_threshold", c->int8_threshold);
    }
    cJSON *skip = cJSON_AddArrayToObject(out, "skip_modules");
    for (size_t k = 0; skip != NULL && k < c->skip_count; k++)
        cJSON_AddItemToArray(skip, cJSON_CreateString(c->skip_modules[k]));
}

static bool bnb_linear_stored(const void *config, const qref_tensor_set *tensors, const char *module)
{
    (void)config;
    qref_bnb_linear linear;
    qref_bnb_linear_find(tensors, module, &linear);
    return qref_bnb_linear_layout(&linear) != QREF_BNB_LAYOUT_NONE;
}

static qref_status bnb_linear_dequantize(const void *config, const qref_tensor_set *tensors, const char *module,
                                         int64_t rows, int64_t cols, float *weight, qref_error *err)
{
    (void)config;
    qref_bnb_linear linear;
    qref_bnb_linear_find(tensors, module, &linear);
    return qref_bnb_dequantize(&linear, rows, cols, weight, err);
}

static void bnb_linear_check(const void *config, const qref_tensor_set *tensors, const char *module, int64_t rows,
                             int64_t cols, qref_findings *findings)
{
    qref_bnb_linear linear;
    qref_bnb_linear_find(tensors, module, &linear);
    qref_bnb_check_linear(config, &linear, rows, cols, findings);
}

static void bnb_linear_describe(const void *config, const qref_tensor_set *tensors, const char *module,
                                qref_linear_info *info)
{
    (void)config;
    qref_bnb_linear linear;
    qref_bnb_linear_find(tensors, module, &linear);
    qref_error err = {0};
    qref_bnb_quant_state state;
    switch (qref_bnb_linear_layout(&linear)) {
    case QREF_BNB_LAYOUT_4BIT:
        info->bits = 4;
        if (qref_bnb_state_load(&linear, &state, &err) == QREF_OK) {
            snprintf(info->codec, sizeof info->codec, "bnb-%s%s", qref_bnb_quant_type_name(state.quant_type),
                     state.nested ? "-dq" : "");
            info->group_size = state.blocksize;
        } else {
            snprintf(info->codec, sizeof info->codec, "bnb-4bit");
        }
        break;
    case QREF_BNB_LAYOUT_INT8:
        snprintf(info->codec, sizeof info->codec, "bnb-int8");
        info->bits = 8;
        info->group_size = -1;
        break;
    case QREF_BNB_LAYOUT_DENSE:
        snprintf(info->codec, sizeof info->codec, "%s", qref_dtype_name(linear.weight->dtype));
        info->bits = (int)(8 * qref_dtype_size(linear.weight->dtype));
        info->group_size = 0;
        break;
    case QREF_BNB_LAYOUT_NONE:
        break;
    }
}

const qref_codec qref_bnb_codec = {
    .name = "bitsandbytes",
    .quant_methods = bnb_quant_methods,
    .finding_kinds = qref_bnb_finding_kinds,
    .config_parse = bnb_config_parse,
    .config_free = bnb_config_free,
    .config_describe = bnb_config_describe,
    .linear_stored = bnb_linear_stored,
    .linear_dequantize = bnb_linear_dequantize,
    .linear_check = bnb_linear_check,
    .linear_describe = bnb_linear_describe,
    .artifact_check = NULL,
};
