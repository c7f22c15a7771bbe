/*
 * qconform quantize --format compressed-tensors: min-max quantization of a full-precision
 * snapshot into a pack-quantized compressed-tensors artifact.
 *
 * Steps: open the reference, and reject a quantized one, bits other than 4 and 8, and a group
 * size that does not divide every linear's input width. Quantize the seven linears of every
 * layer with qref_ct_quantize in the dtype the reference stores them in, and pack them with
 * qref_ct_pack. Write the folder with qc_quantize_publish: config.json gains the
 * quantization_config, and no quantize_config.json is written because llm-compressor writes
 * none.
 */
#include "qc_quantize_ct.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/qref_ct.h"
#include "model/qref_llama.h"
#include "qc_model.h"

/* Rejects a GGUF or quantized reference, bad bits or group size, an existing output without force. */
static qref_status check_inputs(const qc_ct_request *request, const qc_model *model, qref_error *err)
{
    if (model->kind == QC_MODEL_GGUF)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: a GGUF file cannot be the reference; quantize needs a "
                              "full-precision Hugging Face snapshot", model->path);
    if (model->quantized)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the snapshot is already quantized (its config declares "
                              "%s); quantize needs a full-precision reference snapshot", model->path,
                              model->codec->name);
    if (request->bits != 4 && request->bits != 8)
        return qref_error_set(err, QREF_ERR_INVALID, "bits %d, expected 4 or 8 (the widths pack-quantized stores)",
                              request->bits);
    qref_status status = qc_quantize_check_group_size(&model->config, request->group_size, err);
    if (status != QREF_OK)
        return status;
    struct stat info;
    if (lstat(request->out_dir, &info) == 0 && !request->force)
        return qref_error_set(err, QREF_ERR_INVALID, "output folder %s already exists; pass --force to replace it",
                              request->out_dir);
    return QREF_OK;
}

/* The weight args of the request: group G, or channel for -1. */
static qref_ct_args request_args(const qc_ct_request *request)
{
    qref_ct_args args = {.num_bits = request->bits, .symmetric = request->sym};
    if (request->group_size == -1) {
        args.strategy = QREF_CT_STRATEGY_CHANNEL;
    } else {
        args.strategy = QREF_CT_STRATEGY_GROUP;
        args.group_size = request->group_size;
    }
    return args;
}

/* Quantizes every linear of every layer; tensors receives views of the packed tensors. */
static qref_status quantize_model(const qc_ct_request *request, const qc_model *model, qref_ct_packed *packed,
                                  qref_tensor *tensors, size_t *tensor_count, qref_error *err)
{
    size_t max_weights = 0;
    for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
        int64_t rows, cols;
        qref_llama_linear_shape(&model->config, index, &rows, &cols);
        if ((size_t)(rows * cols) > max_weights)
            max_weights = (size_t)(rows * cols);
    }
    float *weight = malloc(max_weights * sizeof *weight);
    if (weight == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu weights", model->path, max_weights);

    const qref_ct_args args = request_args(request);
    const qref_tensor_set *stored = qref_snapshot_tensors(model->snapshot);
    qref_status status = QREF_OK;
    size_t linear = 0;
    *tensor_count = 0;
    for (int layer = 0; layer < model->config.num_hidden_layers && status == QREF_OK; layer++) {
        for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT && status == QREF_OK; index++, linear++) {
            char module[256], name[300];
            qref_llama_layer_tensor_name(module, sizeof module, layer, qref_llama_linear_names[index]);
            snprintf(name, sizeof name, "%s.weight", module);
            int64_t rows, cols;
            qref_llama_linear_shape(&model->config, index, &rows, &cols);

            /* the observer and the scales work in the dtype the weight is stored in */
            const qref_tensor *tensor = qref_tensor_set_find(stored, name);
            qref_dtype dtype = tensor != NULL ? tensor->dtype : QREF_DTYPE_F32;
            if (dtype != QREF_DTYPE_F16 && dtype != QREF_DTYPE_BF16 && dtype != QREF_DTYPE_F32)
                status = qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: tensor \"%s\" is %s; compressed-tensors "
                                        "quantizes F16, BF16 and F32 weights", model->path, name,
                                        qref_dtype_name(dtype));
            qref_ct_codes codes = {0};
            if (status == QREF_OK)
                status = qref_weights_load(&model->weights, name, rows, cols, weight, err);
            if (status == QREF_OK)
                status = qref_ct_quantize(name, weight, rows, cols, &args, dtype, &codes, err);
            if (status == QREF_OK)
                status = qref_ct_pack(module, &codes, QREF_CT_FORMAT_PACK_QUANTIZED, &packed[linear], err);
            qref_ct_codes_free(&codes);
            for (size_t k = 0; status == QREF_OK && k < packed[linear].count; k++)
                tensors[(*tensor_count)++] = packed[linear].tensors[k];
        }
    }
    free(weight);
    return status;
}

qref_status qc_quantize_ct(const qc_ct_request *request, qc_quantize_outcome *outcome, qref_error *err)
{
    memset(outcome, 0, sizeof *outcome);
    qc_model model;
    qref_status status = qc_model_open(request->reference, &model, err);
    if (status != QREF_OK)
        return status;
    status = check_inputs(request, &model, err);

    /* quantize: at most four tensors per linear */
    size_t linears = (size_t)model.config.num_hidden_layers * QREF_LLAMA_LINEAR_COUNT;
    qref_ct_packed *packed = calloc(linears + 1, sizeof *packed);
    qref_tensor *tensors = calloc(4 * linears + 1, sizeof *tensors);
    size_t tensor_count = 0;
    if (status == QREF_OK && (packed == NULL || tensors == NULL))
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu linears", model.path, linears);
    if (status == QREF_OK)
        status = quantize_model(request, &model, packed, tensors, &tensor_count, err);

    /* write */
    cJSON *quantization = NULL;
    const qref_ct_args args = request_args(request);
    const char *const ignore[] = {"lm_head"};
    if (status == QREF_OK)
        status = qref_ct_config_to_json(&args, QREF_CT_FORMAT_PACK_QUANTIZED, ignore, 1, &quantization, err);
    if (status == QREF_OK) {
        qc_quantize_request folder = {.reference = request->reference, .out_dir = request->out_dir,
                                      .force = request->force};
        status = qc_quantize_publish(&folder, &model, tensors, tensor_count, quantization, false, outcome, err);
    }
    cJSON_Delete(quantization);
    for (size_t k = 0; packed != NULL && k < linears; k++)
        qref_ct_packed_free(&packed[k]);
    free(packed);
    free(tensors);
    qc_model_close(&model);
    return status;
}
