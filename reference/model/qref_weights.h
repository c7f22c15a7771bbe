/*
 * Weight providers: where the forward pass gets its f32 weights from.
 *
 * The forward asks for one tensor at a time by its Hugging Face name
 * ("model.layers.3.mlp.down_proj.weight") and expected shape, right before it needs it, so a
 * provider may dequantize, convert or transform weights on demand and only one layer's
 * weights are in memory at once.
 */
#ifndef QREF_WEIGHTS_H
#define QREF_WEIGHTS_H

#include <stdint.h>

#include "core/qref_error.h"

typedef struct qref_weight_provider {
    void *ctx;
    /* Fills dst[rows * cols] with tensor `name` as f32, row-major; cols is 1 for vectors. */
    qref_status (*load)(void *ctx, const char *name, int64_t rows, int64_t cols, float *dst,
                        qref_error *err);
    /*
     * Optional, NULL for none. Rounds x[rows][cols], the input rows of the linear `name`, in
     * place to what the weights' own runtime multiplies them as (ggml converts activations
     * to the weight type's vec_dot_type, formats/qref_ggml_vec_dot.h). The forward calls it
     * on a copy of the activations right before each product with that weight.
     */
    qref_status (*round_input)(void *ctx, const char *name, float *x, int64_t rows, int64_t cols,
                               qref_error *err);
} qref_weight_provider;

/* Calls provider->load; a convenience for code that holds a provider by pointer. */
static inline qref_status qref_weights_load(const qref_weight_provider *provider, const char *name,
                                            int64_t rows, int64_t cols, float *dst, qref_error *err)
{
    return provider->load(provider->ctx, name, rows, cols, dst, err);
}

#endif
