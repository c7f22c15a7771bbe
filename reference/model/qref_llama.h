/*
 * LLaMA forward pass in f32, layer-streamed.
 *
 * The model runs a batch of independent token windows one decoder layer at a time: it asks the
 * weight provider for that layer's tensors, applies the layer to every window, and frees the
 * weights before the next layer, so only one layer's weights and the activations between
 * layers are in memory. This is the order GPTQ itself uses, and it lets quantized weights be
 * dequantized on demand.
 *
 * Architecture (Hugging Face LlamaForCausalLM): token embedding; per layer RMSNorm, attention
 * with grouped-query heads and rotary embeddings in the rotate-half layout (with Llama 3.1
 * frequency scaling when the config has it), residual, RMSNorm,
 * SwiGLU MLP, residual; final RMSNorm; output projection (tied to the embedding or separate).
 *
 * Every output element is computed by a fixed sequence of operations whatever the number of
 * OpenMP threads, so results do not depend on the thread count.
 */
#ifndef QREF_LLAMA_H
#define QREF_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "model/qref_config.h"
#include "model/qref_weights.h"

/*
 * Receives the logits of positions [position, position + count) of one window, as
 * logits[count][vocab_size]. The buffer is reused after the call returns.
 */
typedef qref_status (*qref_logits_sink)(void *ctx, size_t window, int position, int count,
                                        const float *logits, qref_error *err);

typedef struct qref_forward_options {
    /* Upper bound on the bytes of activations held for a batch of windows; 0 = 1 GiB. */
    size_t activation_budget;
    /* Positions per call of the sink (bounds the logits buffer); 0 = 64. */
    int logits_chunk;
    /* Only positions >= first_scored_position reach the sink; 0 = all. */
    int first_scored_position;
} qref_forward_options;

/*
 * Runs n_windows windows of seq_len tokens each (tokens[n_windows * seq_len], ids checked
 * against vocab_size) through the model and hands every window's logits to sink.
 */
qref_status qref_llama_forward(const qref_llama_config *config, const qref_weight_provider *weights,
                               const int32_t *tokens, size_t n_windows, int seq_len,
                               const qref_forward_options *options, qref_logits_sink sink,
                               void *sink_ctx, qref_error *err);

/* Largest head_dim the forward accepts (LLaMA uses 64 to 128). */
#define QREF_LLAMA_MAX_HEAD_DIM 1024

/*
 * Rotary inverse frequencies inv_freq[0 .. head_dim/2) in f32, as transformers computes
 * them: theta^(-2i/head_dim), then the config's RoPE scaling (Llama 3.1 "llama3").
 */
void qref_llama_rope_inv_freq(const qref_llama_config *config, float *inv_freq);

/* Formats the Hugging Face name of a per-layer tensor, e.g. "model.layers.3.mlp.up_proj.weight". */
void qref_llama_layer_tensor_name(char *buf, size_t size, int layer, const char *suffix);

/* The seven linear modules of a decoder layer, in Hugging Face registration order. */
#define QREF_LLAMA_LINEAR_COUNT 7
extern const char *const qref_llama_linear_names[QREF_LLAMA_LINEAR_COUNT];

/* Expected [rows, cols] of linear `index` (into qref_llama_linear_names) for this config. */
void qref_llama_linear_shape(const qref_llama_config *config, int index, int64_t *rows, int64_t *cols);

#endif
