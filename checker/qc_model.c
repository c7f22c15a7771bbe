#include "qc_model.h"

#include <stdlib.h>
#include <string.h>

#include "io/qref_json.h"

/* Reads the quantization config when config.json declares one or quantize_config.json exists. */
static qref_status model_read_quantization(qc_model *model, const qref_blob *config_json, qref_error *err)
{
    const qref_blob *quantize_json = qref_snapshot_find_file(model->snapshot, "quantize_config.json");
    const char *quantize_name = "quantize_config.json";
    if (quantize_json == NULL) {
        quantize_json = qref_snapshot_find_file(model->snapshot, "quant_config.json");
        quantize_name = "quant_config.json";
    }
    cJSON *config = NULL;
    qref_status status = qref_json_parse("config.json", (const char *)config_json->data, config_json->size,
                                         QREF_JSON_MAX_DEPTH, &config, err);
    if (status != QREF_OK)
        return status;
    bool config_declares = cJSON_GetObjectItemCaseSensitive(config, "quantization_config") != NULL;
    cJSON_Delete(config);
    if (quantize_json == NULL && !config_declares)
        return QREF_OK;

    status = qref_gptq_config_resolve(
        quantize_name, quantize_json ? (const char *)quantize_json->data : NULL,
        quantize_json ? quantize_json->size : 0, "config.json", (const char *)config_json->data,
        config_json->size, &model->gptq, err);
    if (status != QREF_OK)
        return status;
    model->quantized = true;
    return QREF_OK;
}

qref_status qc_model_open(const char *path, qc_model *model, qref_error *err)
{
    memset(model, 0, sizeof *model);
    model->path = path;
    qref_status status = qref_snapshot_open(path, &model->snapshot, err);
    if (status != QREF_OK)
        return status;

    const qref_blob *config_json = qref_snapshot_find_file(model->snapshot, "config.json");
    if (config_json == NULL) {
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: config.json not found (a Hugging Face snapshot "
                                "needs one)", path);
        goto fail;
    }
    status = qref_llama_config_parse("config.json", (const char *)config_json->data, config_json->size,
                                     &model->config, err);
    if (status == QREF_OK)
        status = model_read_quantization(model, config_json, err);
    if (status != QREF_OK) {
        qref_error_prefix(err, "%s: ", path);
        goto fail;
    }

    status = qref_tokenizer_load_snapshot(model->snapshot, &model->tokenizer, err);
    if (status == QREF_ERR_UNSUPPORTED) {
        /* only commands that encode text need the tokenizer */
        model->tokenizer_unsupported = strdup(err->message);
        qref_error_clear(err);
        status = QREF_OK;
        if (model->tokenizer_unsupported == NULL)
            status = qref_error_set(err, QREF_ERR_NOMEM, "out of memory");
    }
    if (status != QREF_OK) {
        qref_error_prefix(err, "%s: ", path);
        goto fail;
    }

    model->tensor_weights.tensors = qref_snapshot_tensors(model->snapshot);
    model->tensor_weights.gptq = model->quantized ? &model->gptq : NULL;
    qref_tensor_weights_provider(&model->tensor_weights, &model->weights);
    return QREF_OK;

fail:
    qc_model_close(model);
    return status;
}

qref_status qc_model_require_tokenizer(const qc_model *model, qref_error *err)
{
    if (model->tokenizer != NULL)
        return QREF_OK;
    if (model->tokenizer_unsupported != NULL)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s", model->path, model->tokenizer_unsupported);
    return qref_error_set(err, QREF_ERR_INVALID, "%s: tokenizer.json and tokenizer.model not found; pass token ids "
                          "instead of text, or use a snapshot with a tokenizer", model->path);
}

void qc_model_close(qc_model *model)
{
    qref_tokenizer_free(model->tokenizer);
    free(model->tokenizer_unsupported);
    qref_snapshot_free(model->snapshot);
    memset(model, 0, sizeof *model);
}
