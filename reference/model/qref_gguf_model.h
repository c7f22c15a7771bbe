/*
 * A LLaMA model stored as GGUF: its configuration from the llama.* metadata and a weight
 * provider that serves the Hugging Face tensor names of model/qref_llama.h from the GGUF
 * tensors, so the Hugging Face-layout forward computes what llama.cpp computes.
 *
 * Configuration (keys of convert_hf_to_gguf.py and llama.cpp src/llama-model.cpp,
 * LLM_ARCH_LLAMA):
 *   general.architecture                 must be "llama"; other architectures are not supported
 *   llama.block_count                    num_hidden_layers
 *   llama.embedding_length               hidden_size
 *   llama.feed_forward_length            intermediate_size
 *   llama.attention.head_count           num_attention_heads
 *   llama.attention.head_count_kv        num_key_value_heads (default: head_count)
 *   llama.attention.key_length           head_dim (default: embedding_length / head_count);
 *                                        value_length and rope.dimension_count must equal it
 *   llama.attention.layer_norm_rms_epsilon  rms_norm_eps
 *   llama.rope.freq_base                 rope_theta (default 10000, as llama.cpp)
 *   llama.context_length                 max_position_embeddings
 *   token_embd.weight rows               vocab_size
 *   output.weight absent                 tie_word_embeddings
 *   rope_freqs.weight                    LLaMA-3.1 frequency factors: accepted only when every
 *                                        factor equals the "llama3" RoPE scaling of transformers
 *                                        with low_freq_factor 1, high_freq_factor 4 and
 *                                        original_max_position_embeddings 8192 (the values of
 *                                        every published LLaMA-3.1, 3.2 and 3.3 model), and
 *                                        factor the largest element; the config then carries
 *                                        that scaling
 * RoPE scaling keys (llama.rope.scaling.type other than "none", rope.scale_linear other than 1)
 * and models split over several files (split.count above 1) are not supported.
 *
 * Tensors (gguf-py constants.py TENSOR_NAMES). GGUF stores a PyTorch [out, in] matrix with
 * ne = [in, out]: ne[0], the row length, is in_features.
 *   model.embed_tokens.weight                   token_embd.weight
 *   model.norm.weight                           output_norm.weight
 *   lm_head.weight                              output.weight
 *   model.layers.N.input_layernorm.weight       blk.N.attn_norm.weight
 *   model.layers.N.self_attn.{q,k,v,o}_proj     blk.N.attn_{q,k,v,output}.weight
 *   model.layers.N.post_attention_layernorm     blk.N.ffn_norm.weight
 *   model.layers.N.mlp.{gate,up,down}_proj      blk.N.ffn_{gate,up,down}.weight
 *
 * llama.cpp's RoPE for LLaMA rotates adjacent pairs (2i, 2i+1) of each head, while the Hugging
 * Face layout rotates (i, i + head_dim/2). GGUF files therefore store the rows of attn_q and
 * attn_k in the interleaved order: convert_hf_to_gguf.py permutes them (LlamaModel.permute),
 * and convert-llama2c-to-ggml copies llama2.c's weights, which are in Meta's interleaved order
 * already. Within each head of head_dim rows, GGUF row 2i + s is Hugging Face row
 * s * head_dim/2 + i. The provider undoes this, so both RoPE conventions give the same result.
 *
 * Weights are dequantized with formats/qref_ggml.h (bit-identical to ggml's scalar
 * dequantize_row_* functions) and checked to be finite. The provider also rounds each linear's
 * input to the weight type's vec_dot_type (formats/qref_ggml_vec_dot.h), as ggml's CPU backend
 * does, so quantized files give llama.cpp's results rather than those of f32 activations.
 * NOTE: attention itself stays in f32. llama.cpp's default F16 KV cache and F16 attention
 * products are not reproduced; on the stories260k fixtures this leaves llama-perplexity's values
 * about 5e-5 relative away (measured with the F32 file, whose linears need no rounding).
 */
#ifndef QREF_GGUF_MODEL_H
#define QREF_GGUF_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "io/qref_gguf.h"
#include "model/qref_config.h"
#include "model/qref_weights.h"

/* A GGUF LLaMA model; the parsed file must outlive it. */
typedef struct qref_gguf_model {
    const qref_gguf *file;
    qref_llama_config config;
} qref_gguf_model;

/* One tensor the LLaMA forward reads, with the shape the config implies. */
typedef struct qref_gguf_llama_tensor {
    char name[QREF_GGUF_MAX_NAME + 1]; /* GGUF name, e.g. "blk.3.attn_q.weight" */
    char hf_name[96];                  /* Hugging Face name, e.g. "model.layers.3.self_attn.q_proj.weight" */
    int n_dims;                        /* 1 for norms, 2 for matrices */
    int64_t ne[2];                     /* expected ne[0] (row length) and ne[1] (rows; 1 for a vector) */
    int permuted_heads;                /* attn_q, attn_k: heads whose rows are interleaved; else 0 */
} qref_gguf_llama_tensor;

/*
 * Reads the configuration from the metadata (see above). QREF_ERR_UNSUPPORTED for another
 * architecture, RoPE scaling or partial rotary embedding; QREF_ERR_INVALID for a missing or
 * inconsistent key, naming it with the value found and the value expected.
 */
qref_status qref_gguf_llama_config(const qref_gguf *file, qref_llama_config *config, qref_error *err);

/* Reads the configuration into model->config and keeps file. */
qref_status qref_gguf_model_init(const qref_gguf *file, qref_gguf_model *model, qref_error *err);

/* Fills provider with a provider that reads from model (which must outlive it). */
void qref_gguf_model_provider(const qref_gguf_model *model, qref_weight_provider *provider);

/* Number of tensors the forward reads: 2 (3 with output.weight) + 9 per layer. */
size_t qref_gguf_llama_tensor_count(const qref_llama_config *config);

/*
 * The index-th tensor the forward reads, in the order token_embd, output_norm, output (unless
 * tied), then per layer attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate,
 * ffn_up, ffn_down.
 */
void qref_gguf_llama_tensor_at(const qref_llama_config *config, size_t index, qref_gguf_llama_tensor *out);

/*
 * Checks that an expected tensor is stored with its shape and a type that
 * qref_ggml_dequantize_row decodes. A missing tensor or a wrong shape is QREF_ERR_INVALID, a
 * type without a dequantizer QREF_ERR_UNSUPPORTED; each message names the tensor.
 */
qref_status qref_gguf_model_check_tensor(const qref_gguf_model *model, const qref_gguf_llama_tensor *expected,
                                         qref_error *err);

/*
 * Dequantizes an expected tensor into dst (ne[0] * ne[1] floats) in Hugging Face row order,
 * undoing the interleaved Q/K rows, and checks every value is finite.
 */
qref_status qref_gguf_model_load_tensor(const qref_gguf_model *model, const qref_gguf_llama_tensor *expected,
                                        float *dst, qref_error *err);

/*
 * The name llama.cpp's quantizer gives general.file_type (llama_ftype, gguf-py LlamaFileType):
 * "F32", "F16", "Q4_K_M", ...; NULL for an unknown value.
 */
const char *qref_gguf_file_type_name(uint32_t file_type);

#endif
