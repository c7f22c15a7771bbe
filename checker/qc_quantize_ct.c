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

/* The packed linears and the tensor views the walk fills. */
typedef struct ct_walk {
    const qc_model *model;
    qref_ct_args args;
    qref_ct_packed *packed;
    qref_tensor *tensors;
    size_t tensor_count;
} ct_walk;

/* Quantizes one linear in the dtype the reference stores it in, as the observer works, and packs it. */
static qref_status quantize_linear(void *ctx, const qc_quantize_linear *linear, bool *stop, qref_error *err)
{
    (void)stop;
    ct_walk *walk = ctx;
    if (linear->dtype != QREF_DTYPE_F16 && linear->dtype != QREF_DTYPE_BF16 && linear->dtype != QREF_DTYPE_F32)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: tensor \"%s\" is %s; compressed-tensors quantizes F16, "
                              "BF16 and F32 weights", walk->model->path, linear->name, qref_dtype_name(linear->dtype));
    qref_ct_codes codes = {0};
    qref_ct_packed *packed = &walk->packed[linear->index];
    qref_status status = qref_ct_quantize(linear->name, linear->weight, linear->rows, linear->cols, &walk->args,
                                          linear->dtype, &codes, err);
    if (status == QREF_OK)
        status = qref_ct_pack(linear->module, &codes, QREF_CT_FORMAT_PACK_QUANTIZED, packed, err);
    qref_ct_codes_free(&codes);
    for (size_t k = 0; status == QREF_OK && k < packed->count; k++)
        walk->tensors[walk->tensor_count++] = packed->tensors[k];
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
    if (status == QREF_OK && (packed == NULL || tensors == NULL))
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu linears", model.path, linears);
    ct_walk walk = {.model = &model, .args = request_args(request), .packed = packed, .tensors = tensors};
    if (status == QREF_OK)
        status = qc_quantize_each_linear(&model, quantize_linear, &walk, err);

    /* write */
    cJSON *quantization = NULL;
    const char *const ignore[] = {"lm_head"};
    if (status == QREF_OK)
        status = qref_ct_config_to_json(&walk.args, QREF_CT_FORMAT_PACK_QUANTIZED, ignore, 1, &quantization, err);
    if (status == QREF_OK) {
        qc_quantize_request folder = {.reference = request->reference, .out_dir = request->out_dir,
                                      .force = request->force};
        status = qc_quantize_publish(&folder, &model, tensors, walk.tensor_count, quantization, false, outcome, err);
    }
    cJSON_Delete(quantization);
    for (size_t k = 0; packed != NULL && k < linears; k++)
        qref_ct_packed_free(&packed[k]);
    free(packed);
    free(tensors);
    qc_model_close(&model);
    return status;
}
