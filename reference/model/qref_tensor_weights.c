#include "model/qref_tensor_weights.h"


#include <stdbool.h>
#include <stdio.h>
#include <string.h>

qref_status qref_tensor_load_f32(const qref_tensor *tensor, int64_t rows, int64_t cols, float *dst,
                                 qref_error *err)
{
    char shape[96];
    qref_tensor_shape_string(tensor, shape, sizeof shape);
    bool vector = cols == 1;
    bool shape_ok = vector ? (tensor->ndim == 1 && tensor->shape[0] == rows)
                           : (tensor->ndim == 2 && tensor->shape[0] == rows && tensor->shape[1] == cols);
    if (!shape_ok) {
        if (vector)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": shape %s, expected [%lld]",
                                  tensor->file, tensor->name, shape, (long long)rows);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": shape %s, expected [%lld, %lld]",
                              tensor->file, tensor->name, shape, (long long)rows, (long long)cols);
    }
    if (!qref_dtype_is_float(tensor->dtype))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": dtype %s, expected a float "
                              "dtype (F32, F16, BF16, F64)", tensor->file, tensor->name,
                              qref_dtype_name(tensor->dtype));
    qref_status status = qref_convert_to_f32(tensor->dtype, tensor->data, (size_t)(rows * cols), dst, err);
    if (status == QREF_OK && qref_values_check_finite(tensor->name, dst, (size_t)(rows * cols), (size_t)cols, err))
        return qref_error_prefix(err, "%s: ", tensor->file);
    return status;
}

/* Dequantizes linear `module` with the snapshot's codec and checks the result is finite. */
static qref_status load_quantized_linear(const qref_tensor_weights *weights, const char *module, int64_t rows,
                                         int64_t cols, float *dst, qref_error *err)
{
    qref_status status = weights->codec->linear_dequantize(weights->codec_config, weights->tensors, module, rows, cols,
                                                           dst, err);
    /* formats that compute scale x code in f16 can overflow to inf */
    if (status == QREF_OK && qref_values_check_finite(module, dst, (size_t)(rows * cols), (size_t)cols, err))
        return qref_error_prefix(err, "dequantized %s weights: ", weights->codec->name);
    return status;
}

static qref_status tensor_weights_load(void *ctx, const char *name, int64_t rows, int64_t cols,
                                       float *dst, qref_error *err)
{
    const qref_tensor_weights *weights = ctx;

    /* a linear ("<module>.weight", a matrix) that the codec says is stored in its layout */
    size_t length = strlen(name);
    const char suffix[] = ".weight";
    if (weights->codec != NULL && cols > 1 && length > sizeof suffix - 1 && length < 512 &&
        strcmp(name + length - (sizeof suffix - 1), suffix) == 0) {
        char module[512];
        memcpy(module, name, length - (sizeof suffix - 1));
        module[length - (sizeof suffix - 1)] = '\0';
        if (weights->codec->linear_stored(weights->codec_config, weights->tensors, module))
            return load_quantized_linear(weights, module, rows, cols, dst, err);
    }

    const qref_tensor *tensor = qref_tensor_set_find(weights->tensors, name);
    if (tensor != NULL)
        return qref_tensor_load_f32(tensor, rows, cols, dst, err);
    if (cols == 1)
        return qref_error_set(err, QREF_ERR_INVALID, "tensor \"%s\" not found (expected shape [%lld])",
                              name, (long long)rows);
    return qref_error_set(err, QREF_ERR_INVALID, "tensor \"%s\" not found (expected shape [%lld, %lld])",
                          name, (long long)rows, (long long)cols);
}

void qref_tensor_weights_provider(qref_tensor_weights *weights, qref_weight_provider *provider)
{
    provider->ctx = weights;
    provider->load = tensor_weights_load;
    provider->round_input = NULL;
}
