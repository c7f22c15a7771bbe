/*
 * qconform quantize --format awq-gemm|awq-gemv (checker/qc_quantize_awq.h).
 *
 * Steps: open the reference and reject a quantized one, and check every linear's widths
 * against the layout before any work. Then quantize the seven linears of every layer with
 * AWQ's f16 pseudo quantizer and pack them (qweight, qzeros, scales), build the
 * quantization_config, and write the folder with qc_quantize_publish. The folder has no
 * quantize_config.json, because AutoAWQ writes the config into config.json only.
 */
#include "qc_quantize_awq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/qref_llama.h"
#include "qc_model.h"
#include "quant/qref_awq_rtn.h"

/* Rejects a GGUF or quantized reference, widths the layout cannot hold, and an existing output. */
static qref_status check_inputs(const qc_awq_request *request, const qc_model *model, qref_error *err)
{
    if (model->kind == QC_MODEL_GGUF)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: a GGUF file cannot be the reference; quantize needs a "
                              "full-precision Hugging Face snapshot", model->path);
    if (model->quantized)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the snapshot is already quantized (its config declares "
                              "%s); quantize needs a full-precision reference snapshot", model->path,
                              model->codec->name);

    qref_status status = qc_quantize_check_group_size(&model->config, request->group_size, err);
    for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT && status == QREF_OK; index++) {
        int64_t rows, cols;
        qref_llama_linear_shape(&model->config, index, &rows, &cols);
        int64_t group_size = request->group_size == -1 ? cols : request->group_size;
        const char *linear = qref_llama_linear_names[index];
        if (request->layout == QREF_AWQ_LAYOUT_GEMM && rows % QREF_AWQ_PACK != 0)
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "model.layers.0.%s: out_features %lld is not a multiple of 8, which the AWQ "
                                    "GEMM layout packs into each int32 (WQLinear_GEMM asserts it)",
                                    linear, (long long)rows);
        else if (request->layout == QREF_AWQ_LAYOUT_GEMV && cols % QREF_AWQ_PACK != 0)
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "model.layers.0.%s: in_features %lld is not a multiple of 8, which the AWQ "
                                    "GEMV layout packs into each int32",
                                    linear, (long long)cols);
        else if (request->layout == QREF_AWQ_LAYOUT_GEMV && qref_awq_gemv_zeros_width(cols, group_size) < 0)
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "model.layers.0.%s: group size %lld is not implemented by the AWQ GEMV layout, "
                                    "expected 32, 64 or at least 128 (AutoAWQ's calculate_zeros_width)",
                                    linear, (long long)group_size);
    }
    if (status != QREF_OK)
        return status;

    struct stat info;
    if (lstat(request->out_dir, &info) == 0 && !request->force)
        return qref_error_set(err, QREF_ERR_INVALID, "output folder %s already exists; pass --force to replace it",
                              request->out_dir);
    return QREF_OK;
}

/* Quantizes one linear's f32 weight[rows][cols] and packs it. */
static qref_status quantize_linear(const qc_awq_request *request, const char *module, const float *weight,
                                   int64_t rows, int64_t cols, qref_awq_packed *packed, qref_error *err)
{
    qref_awq_rtn_config config = {.bits = QREF_AWQ_BITS, .group_size = request->group_size,
                                  .zero_point = request->zero_point};
    qref_awq_rtn_result result;
    qref_status status = qref_awq_rtn_quantize(module, weight, (size_t)rows, (size_t)cols, &config, &result, err);
    if (status == QREF_OK) {
        qref_awq_codes codes = {.bits = QREF_AWQ_BITS, .out_features = rows, .in_features = cols,
                                .group_size = (int64_t)result.group_size, .groups = (int64_t)result.groups,
                                .codes = result.codes, .zeros = result.zeros, .scales = result.scales};
        status = qref_awq_pack(module, &codes, request->layout, packed, err);
    }
    qref_awq_rtn_result_free(&result);
    return status;
}

/* The packed linears and the tensor views the walk fills. */
typedef struct awq_walk {
    const qc_awq_request *request;
    qref_awq_packed *packed;
    qref_tensor *tensors;
    size_t tensor_count;
} awq_walk;

/* Quantizes one linear and appends views of its qweight, qzeros and scales. */
static qref_status quantize_walked_linear(void *ctx, const qc_quantize_linear *linear, bool *stop, qref_error *err)
{
    (void)stop;
    awq_walk *walk = ctx;
    qref_awq_packed *packed = &walk->packed[linear->index];
    qref_status status = quantize_linear(walk->request, linear->module, linear->weight, linear->rows, linear->cols,
                                         packed, err);
    if (status == QREF_OK) {
        walk->tensors[walk->tensor_count++] = packed->qweight;
        walk->tensors[walk->tensor_count++] = packed->qzeros;
        walk->tensors[walk->tensor_count++] = packed->scales;
    }
    return status;
}

qref_status qc_quantize_awq(const qc_awq_request *request, qc_quantize_outcome *outcome, qref_error *err)
{
    memset(outcome, 0, sizeof *outcome);
    qc_model model;
    qref_status status = qc_model_open(request->reference, &model, err);
    if (status != QREF_OK)
        return status;
    status = check_inputs(request, &model, err);

    /* quantize: three tensors per linear */
    size_t linears = (size_t)model.config.num_hidden_layers * QREF_LLAMA_LINEAR_COUNT;
    qref_awq_packed *packed = calloc(linears + 1, sizeof *packed);
    qref_tensor *tensors = calloc(3 * linears + 1, sizeof *tensors);
    if (status == QREF_OK && (packed == NULL || tensors == NULL))
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu linears", model.path, linears);
    awq_walk walk = {.request = request, .packed = packed, .tensors = tensors};
    if (status == QREF_OK)
        status = qc_quantize_each_linear(&model, quantize_walked_linear, &walk, err);

    /* the quantization_config AutoAWQ writes into config.json */
    cJSON *quantization = NULL;
    if (status == QREF_OK) {
        qref_awq_config config;
        qref_awq_config_init(&config);
        config.group_size = request->group_size;
        config.zero_point = request->zero_point;
        config.layout = request->layout;
        snprintf(config.version, sizeof config.version, "%s", qref_awq_layout_name(request->layout));
        status = qref_awq_config_to_json(&config, &quantization, err);
    }

    /* write */
    if (status == QREF_OK) {
        qc_quantize_request folder = {.reference = request->reference, .out_dir = request->out_dir,
                                      .force = request->force};
        status = qc_quantize_publish(&folder, &model, tensors, walk.tensor_count, quantization, false, outcome, err);
    }
    cJSON_Delete(quantization);
    for (size_t k = 0; packed != NULL && k < linears; k++)
        qref_awq_packed_free(&packed[k]);
    free(packed);
    free(tensors);
    qc_model_close(&model);
    return status;
}
