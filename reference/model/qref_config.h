/*
 * LLaMA model configuration from a Hugging Face config.json (LlamaConfig keys).
 *
 * Absent keys take transformers' LlamaConfig defaults where one exists (num_key_value_heads =
 * num_attention_heads, head_dim = hidden_size / num_attention_heads, rms_norm_eps = 1e-6,
 * rope_theta = 10000, tie_word_embeddings = false). Shape keys are required. RoPE scaling of
 * type "llama3" is read from rope_scaling or from transformers 5's rope_parameters. A
 * model_type other than "llama", an activation other than "silu", attention/MLP biases, or
 * another RoPE scaling type are rejected as not supported rather than guessed.
 */
#ifndef QREF_CONFIG_H
#define QREF_CONFIG_H

#include <stdbool.h>

#include "core/qref_error.h"

typedef enum qref_rope_type {
    QREF_ROPE_DEFAULT, /* plain RoPE: inv_freq[i] = theta^(-2i/head_dim) */
    QREF_ROPE_LLAMA3   /* LLaMA-3.1 frequency scaling (transformers _compute_llama3_parameters) */
} qref_rope_type;

typedef struct qref_rope_scaling {
    qref_rope_type type;
    double factor;
    double low_freq_factor;
    double high_freq_factor;
    int original_max_position_embeddings;
} qref_rope_scaling;

typedef struct qref_llama_config {
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;
    int head_dim;
    int max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    qref_rope_scaling rope_scaling;
    bool tie_word_embeddings;
    int bos_token_id; /* -1 when absent */
    int eos_token_id; /* first id when the config lists several; -1 when absent */
    char torch_dtype[16];
} qref_llama_config;

/* Parses config.json text; display names the file in errors. */
qref_status qref_llama_config_parse(const char *display, const char *json, size_t length,
                                    qref_llama_config *config, qref_error *err);

#endif
