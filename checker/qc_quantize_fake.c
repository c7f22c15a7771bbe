/*
 * qconform quantize --format fake (checker/qc_quantize_fake.h).
 *
 * Steps: open the reference and reject a quantized one; check the bits, the group size and
 * the output folder; convert every stored tensor, replacing each linear's weight by its RTN
 * fake quantization rounded to the dtype; build config.json; write the folder with
 * qc_quantize_publish_snapshot.
 */
#include "qc_quantize_fake.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/qref_json.h"
#include "model/qref_llama.h"
#include "qc_model.h"
#include "quant/qref_rtn.h"

bool qc_fake_dtype_parse(const char *name, qref_dtype *out)
{
    if (strcmp(name, "f16") == 0 || strcmp(name, "float16") == 0)
        *out = QREF_DTYPE_F16;
    else if (strcmp(name, "bf16") == 0 || strcmp(name, "bfloat16") == 0)
        *out = QREF_DTYPE_BF16;
    else
        return false;
    return true;
}

static const char *torch_dtype_name(qref_dtype dtype)
{
    return dtype == QREF_DTYPE_BF16 ? "bfloat16" : "float16";
}

/* Rejects a GGUF or quantized reference, invalid settings and an existing output without force. */
static qref_status check_inputs(const qc_fake_request *request, const qc_model *model, qref_error *err)
{
    if (model->kind == QC_MODEL_GGUF)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: a GGUF file cannot be the reference; quantize needs a "
                              "full-precision Hugging Face snapshot", model->path);
    if (model->quantized)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the snapshot is already quantized (its config declares "
                              "%s); quantize needs a full-precision reference snapshot", model->path,
                              model->codec->name);
    if (request->bits < QREF_RTN_MIN_BITS || request->bits > QREF_RTN_MAX_BITS)
        return qref_error_set(err, QREF_ERR_INVALID, "bits %d, expected %d to %d", request->bits, QREF_RTN_MIN_BITS,
                              QREF_RTN_MAX_BITS);
    if (request->dtype != QREF_DTYPE_F16 && request->dtype != QREF_DTYPE_BF16)
        return qref_error_set(err, QREF_ERR_INVALID, "dtype %s, expected F16 or BF16", qref_dtype_name(request->dtype));
    qref_status status = qc_quantize_check_group_size(&model->config, request->group_size, err);
    if (status != QREF_OK)
        return status;
    struct stat info;
    if (lstat(request->out_dir, &info) == 0 && !request->force)
        return qref_error_set(err, QREF_ERR_INVALID, "output folder %s already exists; pass --force to replace it",
                              request->out_dir);
    return QREF_OK;
}

/* Rounds values[0..count) to dtype into bytes; fails naming the first value the dtype cannot hold. */
static qref_status store_values(const char *name, const float *values, size_t count, qref_dtype dtype, uint8_t *bytes,
                                qref_error *err)
{
    for (size_t i = 0; i < count; i++) {
        uint16_t stored = dtype == QREF_DTYPE_BF16 ? qref_f32_to_bf16(values[i]) : qref_f32_to_f16(values[i]);
        float back = dtype == QREF_DTYPE_BF16 ? qref_bf16_to_f32(stored) : qref_f16_to_f32(stored);
        if (!isfinite(back))
            return qref_error_set(err, QREF_ERR_INVALID, "tensor \"%s\": value %g at index %zu is outside the %s range",
                                  name, (double)values[i], i, qref_dtype_name(dtype));
        qref_store_u16(bytes + 2 * i, stored);
    }
    return QREF_OK;
}

/* True when name is the weight of one of the seven linears of a layer. */
static bool is_linear_weight(const qc_model *model, const char *name, int64_t *rows, int64_t *cols)
{
    for (int layer = 0; layer < model->config.num_hidden_layers; layer++) {
        for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
            char expected[300], suffix[64];
            snprintf(suffix, sizeof suffix, "%s.weight", qref_llama_linear_names[index]);
            qref_llama_layer_tensor_name(expected, sizeof expected, layer, suffix);
            if (strcmp(expected, name) == 0) {
                qref_llama_linear_shape(&model->config, index, rows, cols);
                return true;
            }
        }
    }
    return false;
}

/*
 * Converts one stored tensor into out (owning out->data's buffer through *buffer): a linear's
 * weight becomes its RTN fake quantization, another float tensor is rounded to the dtype, and
 * any other tensor is kept as it is.
 */
static qref_status convert_tensor(const qc_fake_request *request, const qc_model *model, const qref_tensor *tensor,
                                  qref_tensor *out, uint8_t **buffer, qref_error *err)
{
    *out = *tensor;
    *buffer = NULL;
    if (!qref_dtype_is_float(tensor->dtype))
        return QREF_OK;

    size_t count = (size_t)tensor->numel;
    float *values = malloc((count ? count : 1) * sizeof *values);
    *buffer = malloc((count ? count : 1) * 2);
    if (values == NULL || *buffer == NULL) {
        free(values);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu values", tensor->name, count);
    }

    int64_t rows, cols;
    qref_status status;
    if (is_linear_weight(model, tensor->name, &rows, &cols)) {
        /* W[out][in] in f32, then RTN codes and their dequantized values scale * (q - zero) */
        status = qref_weights_load(&model->weights, tensor->name, rows, cols, values, err);
        qref_rtn_config config = {.bits = request->bits, .group_size = request->group_size, .sym = request->sym};
        qref_rtn_result rtn;
        memset(&rtn, 0, sizeof rtn);
        if (status == QREF_OK)
            status = qref_rtn_quantize(tensor->name, values, (size_t)rows, (size_t)cols, &config, &rtn, err);
        if (status == QREF_OK)
            memcpy(values, rtn.dequant, count * sizeof *values);
        qref_rtn_result_free(&rtn);
    } else {
        status = qref_convert_to_f32(tensor->dtype, tensor->data, count, values, err);
    }
    if (status == QREF_OK)
        status = store_values(tensor->name, values, count, request->dtype, *buffer, err);
    free(values);
    out->dtype = request->dtype;
    out->nbytes = count * 2;
    out->data = *buffer;
    return status;
}

/* The reference's config.json with torch_dtype set and the qconform member added. */
static qref_status build_config(const qc_fake_request *request, const qc_model *model, cJSON **out, qref_error *err)
{
    const qref_blob *blob = qref_snapshot_find_file(model->snapshot, "config.json");
    if (blob == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: config.json not found", model->path);
    cJSON *config = NULL;
    qref_status status = qref_json_parse("config.json", (const char *)blob->data, blob->size, QREF_JSON_MAX_DEPTH,
                                         &config, err);
    if (status != QREF_OK)
        return status;
    cJSON_DeleteItemFromObjectCaseSensitive(config, "torch_dtype");
    cJSON_AddStringToObject(config, "torch_dtype", torch_dtype_name(request->dtype));
    cJSON_DeleteItemFromObjectCaseSensitive(config, "qconform");
    cJSON *record = cJSON_AddObjectToObject(cJSON_AddObjectToObject(config, "qconform"), "fake_quant");
    cJSON_AddStringToObject(record, "method", "rtn");
    cJSON_AddNumberToObject(record, "bits", request->bits);
    cJSON_AddNumberToObject(record, "group_size", (double)request->group_size);
    cJSON_AddBoolToObject(record, "sym", request->sym);
    cJSON_AddStringToObject(record, "dtype", torch_dtype_name(request->dtype));
    cJSON_AddStringToObject(record, "quantizer", request->quantizer != NULL ? request->quantizer : "qconform");
    *out = config;
    return QREF_OK;
}

qref_status qc_quantize_fake(const qc_fake_request *request, qc_quantize_outcome *outcome, qref_error *err)
{
    memset(outcome, 0, sizeof *outcome);
    qc_model model;
    qref_status status = qc_model_open(request->reference, &model, err);
    if (status != QREF_OK)
        return status;
    status = check_inputs(request, &model, err);

    /* every stored tensor, converted */
    const qref_tensor_set *stored = qref_snapshot_tensors(model.snapshot);
    qref_tensor *tensors = calloc(stored->count + 1, sizeof *tensors);
    uint8_t **buffers = calloc(stored->count + 1, sizeof *buffers);
    if (status == QREF_OK && (tensors == NULL || buffers == NULL))
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu tensors", model.path, stored->count);
    for (size_t k = 0; status == QREF_OK && k < stored->count; k++)
        status = convert_tensor(request, &model, &stored->items[k], &tensors[k], &buffers[k], err);

    /* write */
    cJSON *config = NULL;
    if (status == QREF_OK)
        status = build_config(request, &model, &config, err);
    if (status == QREF_OK) {
        qc_quantize_request folder = {.reference = request->reference, .out_dir = request->out_dir,
                                      .force = request->force};
        status = qc_quantize_publish_snapshot(&folder, &model, tensors, stored->count, config, outcome, err);
    }
    cJSON_Delete(config);
    for (size_t k = 0; buffers != NULL && k < stored->count; k++)
        free(buffers[k]);
    free(buffers);
    free(tensors);
    qc_model_close(&model);
    return status;
}
