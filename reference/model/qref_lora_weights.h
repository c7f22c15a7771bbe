/*
 * A LoRA adapter (formats/qref_lora.h) on top of another weight provider: each linear the
 * adapter updates is loaded from the base provider and W + scaling * B A is handed out, and
 * each tensor the adapter replaces (modules_to_save) comes from the adapter. The forward
 * therefore runs the merged model one layer at a time, as PEFT's merge_and_unload would
 * leave it.
 */
#ifndef QREF_LORA_WEIGHTS_H
#define QREF_LORA_WEIGHTS_H

#include <stddef.h>

#include "formats/qref_lora.h"
#include "model/qref_config.h"
#include "model/qref_weights.h"

/*
 * The modules of a LLaMA model under the names PEFT matches targets against
 * (LlamaForCausalLM.named_modules(): "model.layers.0.self_attn.q_proj", "lm_head", ...),
 * with the shapes of the linears, the embedding and the norms. The caller frees *out.
 */
qref_status qref_lora_llama_modules(const qref_llama_config *config, qref_lora_base_module **out, size_t *count,
                                    qref_error *err);

typedef struct qref_lora_weights {
    const qref_lora_adapter *adapter;  /* bound and usable */
    qref_weight_provider base;         /* where the base weights come from */
} qref_lora_weights;

/* Fills provider with one that reads through weights (which must outlive it). */
void qref_lora_weights_provider(qref_lora_weights *weights, qref_weight_provider *provider);

#endif
