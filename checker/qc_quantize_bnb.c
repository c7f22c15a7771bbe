/*
 * qconform quantize --format bnb (checker/qc_quantize_bnb.h).
 *
 * Steps: open the reference and reject a quantized one; quantize the seven linears of every
 * layer from their f32 values, recording the reference dtype as the quant_state dtype (what
 * Params4bit quantizes from); build the tensors each linear stores; build the
 * quantization_config BitsAndBytesConfig.to_dict writes (keys sorted, as to_json_string
 * prints them); write the folder with qc_quantize_publish, without quantize_config.json.
 */
#include "qc_quantize_bnb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/qref_bnb.h"
#include "model/qref_llama.h"
#include "qc_model.h"
#include "quant/qref_nf4.h"

bool qc_bnb_method_parse(const char *name, qc_bnb_method *out)
{
    if (strcmp(name, "nf4") == 0)
        *out = QC_BNB_METHOD_NF4;
    else if (strcmp(name, "fp4") == 0)
        *out = QC_BNB_METHOD_FP4;
    else if (strcmp(name, "int8") == 0)
        *out = QC_BNB_METHOD_INT8;
    else
        return false;
    return true;
}

/* Rejects a GGUF or quantized reference and an existing output without force, before any work. */
static qref_status check_inputs(const qc_bnb_request *request, const qc_model *model, qref_error *err)
{
    if (model->kind == QC_MODEL_GGUF)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: a GGUF file cannot be the reference; quantize needs a "
                              "full-precision Hugging Face snapshot", model->path);
    if (model->quantized)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the snapshot is already quantized (its config declares "
                              "%s); quantize needs a full-precision reference snapshot", model->path,
                              model->codec->name);
    struct stat info;
    if (lstat(request->out_dir, &info) == 0 && !request->force)
        return qref_error_set(err, QREF_ERR_INVALID, "output folder %s already exists; pass --force to replace it",
                              request->out_dir);
    return QREF_OK;
}

/* Quantizes one linear's f32 weight[rows][cols] into packed tensors. */
static qref_status quantize_linear(const qc_bnb_request *request, const char *module, qref_dtype dtype,
                                   const float *weight, int64_t rows, int64_t cols, qref_bnb_packed *packed,
                                   qref_error *err)
{
    if (request->method == QC_BNB_METHOD_INT8) {
        size_t count = (size_t)rows * (size_t)cols;
        int8_t *q = malloc(count);
        float *scb = malloc((size_t)rows * sizeof *scb);
        qref_status status = q != NULL && scb != NULL
                                 ? qref_int8_quantize(module, weight, rows, cols, q, scb, err)
                                 : qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu codes", module, count);
        if (status == QREF_OK)
            status = qref_bnb_pack_int8(module, q, scb, rows, cols, packed, err);
        free(q);
        free(scb);
        return status;
    }

    qref_nf4_config config = {.type = request->method == QC_BNB_METHOD_NF4 ? QREF_BNB_QUANT_NF4 : QREF_BNB_QUANT_FP4,
                              .blocksize = request->blocksize, .double_quant = request->double_quant};
    qref_nf4_result result;
    qref_status status = qref_nf4_quantize(module, weight, (size_t)rows * (size_t)cols, &config, &result, err);
    if (status == QREF_OK) {
        qref_bnb_4bit_data data = {
            .state = {.quant_type = config.type, .blocksize = config.blocksize, .dtype = dtype, .ndim = 2,
                      .shape = {rows, cols}, .nested = config.double_quant, .nested_blocksize = 256,
                      .nested_dtype = QREF_DTYPE_F32, .nested_offset = result.offset},
            .packed = result.packed,
            .absmax = result.absmax,
            .absmax_codes = result.absmax_codes,
            .nested_absmax = result.nested_absmax,
            .nested_quant_map = result.nested_map,
        };
        status = qref_bnb_pack_4bit(module, &data, packed, err);
    }
    qref_nf4_result_free(&result);
    return status;
}

/* BitsAndBytesConfig.to_dict for the request, keys in to_json_string's sorted order. */
static cJSON *build_quantization_config(const qc_bnb_request *request)
{
    bool int8 = request->method == QC_BNB_METHOD_INT8;
    cJSON *config = cJSON_CreateObject();
    cJSON_AddBoolToObject(config, "_load_in_4bit", !int8);
    cJSON_AddBoolToObject(config, "_load_in_8bit", int8);
    cJSON_AddStringToObject(config, "bnb_4bit_compute_dtype", "float32");
    cJSON_AddStringToObject(config, "bnb_4bit_quant_storage", "uint8");
    cJSON_AddStringToObject(config, "bnb_4bit_quant_type", request->method == QC_BNB_METHOD_NF4 ? "nf4" : "fp4");
    cJSON_AddBoolToObject(config, "bnb_4bit_use_double_quant", !int8 && request->double_quant);
    cJSON_AddBoolToObject(config, "llm_int8_enable_fp32_cpu_offload", false);
    cJSON_AddBoolToObject(config, "llm_int8_has_fp16_weight", false);
    cJSON_AddNullToObject(config, "llm_int8_skip_modules");
    cJSON_AddNumberToObject(config, "llm_int8_threshold", 6.0);
    cJSON_AddBoolToObject(config, "load_in_4bit", !int8);
    cJSON_AddBoolToObject(config, "load_in_8bit", int8);
    cJSON_AddStringToObject(config, "quant_method", "bitsandbytes");
    return config;
}

/* The packed linears and the tensor views the walk fills. */
typedef struct bnb_walk {
    const qc_bnb_request *request;
    const qc_model *model;
    qref_bnb_packed *packed;
    qref_tensor *tensors;
    size_t tensor_count;
} bnb_walk;

/* Quantizes one linear from the dtype it is stored in, the one Params4bit quantizes from. */
static qref_status quantize_stored_linear(void *ctx, const qc_quantize_linear *linear, bool *stop, qref_error *err)
{
    (void)stop;
    bnb_walk *walk = ctx;
    if (linear->dtype != QREF_DTYPE_F16 && linear->dtype != QREF_DTYPE_BF16 && linear->dtype != QREF_DTYPE_F32)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: tensor \"%s\" is %s; bitsandbytes quantizes F16, BF16 "
                              "and F32 weights", walk->model->path, linear->name, qref_dtype_name(linear->dtype));
    qref_bnb_packed *packed = &walk->packed[linear->index];
    qref_status status = quantize_linear(walk->request, linear->module, linear->dtype, linear->weight, linear->rows,
                                         linear->cols, packed, err);
    for (size_t k = 0; status == QREF_OK && k < packed->count; k++)
        walk->tensors[walk->tensor_count++] = packed->tensors[k];
    return status;
}

qref_status qc_quantize_bnb(const qc_bnb_request *request, qc_quantize_outcome *outcome, qref_error *err)
{
    memset(outcome, 0, sizeof *outcome);
    qc_model model;
    qref_status status = qc_model_open(request->reference, &model, err);
    if (status != QREF_OK)
        return status;
    status = check_inputs(request, &model, err);

    /* quantize: at most six tensors per linear */
    size_t linears = (size_t)model.config.num_hidden_layers * QREF_LLAMA_LINEAR_COUNT;
    qref_bnb_packed *packed = calloc(linears + 1, sizeof *packed);
    qref_tensor *tensors = calloc(6 * linears + 1, sizeof *tensors);
    if (status == QREF_OK && (packed == NULL || tensors == NULL))
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu linears", model.path, linears);
    bnb_walk walk = {.request = request, .model = &model, .packed = packed, .tensors = tensors};
    if (status == QREF_OK)
        status = qc_quantize_each_linear(&model, quantize_stored_linear, &walk, err);

    /* write */
    cJSON *quantization = status == QREF_OK ? build_quantization_config(request) : NULL;
    if (status == QREF_OK) {
        qc_quantize_request folder = {.reference = request->reference, .out_dir = request->out_dir,
                                      .force = request->force};
        status = qc_quantize_publish(&folder, &model, tensors, walk.tensor_count, quantization, false, outcome, err);
    }
    cJSON_Delete(quantization);
    for (size_t k = 0; packed != NULL && k < linears; k++)
        qref_bnb_packed_free(&packed[k]);
    free(packed);
    free(tensors);
    qc_model_close(&model);
    return status;
}
