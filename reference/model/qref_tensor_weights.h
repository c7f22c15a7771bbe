/*
 * A weight provider over a set of stored tensors (a snapshot's safetensors files).
 *
 * A requested tensor stored in a float dtype is converted to f32 after its shape is checked.
 * A linear layer's ".weight" that is absent but stored quantized (GPTQ "qweight", "qzeros",
 * "scales", "g_idx") is dequantized with the snapshot's quantization config. Every weight
 * handed out is checked to be finite.
 */
#ifndef QREF_TENSOR_WEIGHTS_H
#define QREF_TENSOR_WEIGHTS_H

#include "io/qref_tensor.h"
#include "model/qref_weights.h"

struct qref_gptq_config;

typedef struct qref_tensor_weights {
    const qref_tensor_set *tensors;
    const struct qref_gptq_config *gptq; /* NULL when no linear is GPTQ-quantized */
} qref_tensor_weights;

/* Fills provider with a provider that reads from weights (which must outlive it). */
void qref_tensor_weights_provider(qref_tensor_weights *weights, qref_weight_provider *provider);

/* Converts a stored float tensor to f32 after checking it has rows x cols elements and shape. */
qref_status qref_tensor_load_f32(const qref_tensor *tensor, int64_t rows, int64_t cols, float *dst,
                                 qref_error *err);

#endif
