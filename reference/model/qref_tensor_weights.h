/*
 * A weight provider over a set of stored tensors (a snapshot's safetensors files).
 *
 * A requested tensor stored in a float dtype is converted to f32 after its shape is checked.
 * A linear layer that the snapshot's codec says is stored in its quantized layout (GPTQ
 * "qweight", "qzeros", "scales", "g_idx", ...) is dequantized with the codec. Every weight
 * handed out is checked to be finite.
 */
#ifndef QREF_TENSOR_WEIGHTS_H
#define QREF_TENSOR_WEIGHTS_H

#include "formats/qref_codec.h"
#include "io/qref_tensor.h"
#include "model/qref_weights.h"

typedef struct qref_tensor_weights {
    const qref_tensor_set *tensors;
    const qref_codec *codec;     /* the codec of the quantized linears, or NULL for a float snapshot */
    const void *codec_config;    /* its parsed config */
} qref_tensor_weights;

/* Fills provider with a provider that reads from weights (which must outlive it). */
void qref_tensor_weights_provider(qref_tensor_weights *weights, qref_weight_provider *provider);

/* Converts a stored float tensor to f32 after checking it has rows x cols elements and shape. */
qref_status qref_tensor_load_f32(const qref_tensor *tensor, int64_t rows, int64_t cols, float *dst,
                                 qref_error *err);

#endif
