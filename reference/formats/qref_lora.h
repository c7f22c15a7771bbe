/*
 * PEFT LoRA adapters: adapter_config.json and adapter_model.safetensors as huggingface/peft
 * saves them, checked against a base model and merged into its weights.
 *
 * A LoRA adapter adds a low-rank update to each targeted linear W[out][in]:
 *
 *   W' = W + scaling * B A,   A = lora_A.weight [r, in],  B = lora_B.weight [out, r]
 *   scaling = lora_alpha / r,  or lora_alpha / sqrt(r) with use_rslora
 *
 * (peft src/peft/tuners/lora/layer.py: LoraLayer.update_layer sets scaling, Linear.
 * get_delta_weight returns transpose(B @ A, fan_in_fan_out) * scaling and merge adds it.)
 * Per-module r and lora_alpha come from rank_pattern and alpha_pattern, whose keys match a
 * module name like the regex (.*\.)?(KEY)$ (peft utils/other.py get_pattern_key, first key
 * in file order). target_modules selects modules in one of three ways. A list targets a
 * module whose name equals an entry or ends in "." + entry. A regex string must match the
 * whole module name, and "all-linear" targets every linear but the output layer. Without
 * target_modules, LLaMA gets q_proj and v_proj (peft's
 * TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). exclude_modules and
 * layers_to_transform narrow the targets (peft tuners_utils.py check_target_module_exists).
 *
 * Tensor names (peft utils/save_and_load.py get_peft_model_state_dict): the wrapped model's
 * prefix "base_model.model." then the module, then "lora_A.weight" or "lora_B.weight"; the
 * adapter name "default" that PEFT strips on save may still sit before "weight". Modules in
 * modules_to_save are stored whole, as "<module>.weight" (or with the older
 * ".modules_to_save[.default]" infix), and replace the base tensor.
 *
 * Not merged, and reported by name: DoRA (use_dora, lora_magnitude_vector), LoRA biases
 * (lora_bias, lora_B.bias), embedding LoRA (lora_embedding_A/B), PEFT methods other than
 * LORA, pickled adapter_model.bin. fan_in_fan_out is ignored for nn.Linear targets, as PEFT
 * does (dispatch_default resets it with a warning).
 *
 * NOTE: the update is computed and added in f32 (k ascending); PEFT merging F16 or BF16
 * weights rounds the update to that dtype first, which the f32 forward here does not.
 */
#ifndef QREF_LORA_H
#define QREF_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "formats/qref_codec.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"

/* Finding ids of the adapter checks, terminated by an entry whose id is NULL. */
extern const qref_finding_kind qref_lora_finding_kinds[];

/* What a module of the base model is, for targeting. */
typedef enum qref_lora_module_kind {
    QREF_LORA_MODULE_LINEAR,     /* nn.Linear: can take a LoRA update */
    QREF_LORA_MODULE_OUTPUT,     /* the output linear (lm_head): a linear that all-linear leaves out */
    QREF_LORA_MODULE_EMBEDDING,  /* nn.Embedding */
    QREF_LORA_MODULE_OTHER       /* containers, norms, activations */
} qref_lora_module_kind;

/* One named module of the base model ("model.layers.0.self_attn.q_proj"). */
typedef struct qref_lora_base_module {
    char name[128];
    qref_lora_module_kind kind;
    int64_t rows;                /* out_features (embedding: vocabulary), 0 for OTHER */
    int64_t cols;                /* in_features (embedding: width), 0 for OTHER */
    int layer;                   /* decoder layer index, -1 outside the layers */
} qref_lora_base_module;

/* A LoRA update bound to a base linear. */
typedef struct qref_lora_update {
    char module[128];
    const qref_tensor *a;        /* [r, in] */
    const qref_tensor *b;        /* [out, r] */
    int64_t rank;
    double alpha;
    double scaling;
    int64_t rows, cols;
} qref_lora_update;

/* A whole tensor that replaces the base model's (modules_to_save). */
typedef struct qref_lora_replacement {
    char tensor[160];            /* base tensor name, "lm_head.weight" */
    const qref_tensor *stored;
} qref_lora_replacement;

typedef struct qref_lora_adapter qref_lora_adapter;

/*
 * Opens the adapter folder dir: parses adapter_config.json and adapter_model.safetensors and
 * adds findings for what they state (an unknown peft_type, a variant this version does not
 * merge, malformed keys). Files that cannot be read or parsed are errors; an adapter with
 * findings is returned so that every problem can be reported. Free with qref_lora_free.
 */
qref_status qref_lora_open(const char *dir, qref_lora_adapter **out, qref_findings *findings, qref_error *err);

void qref_lora_free(qref_lora_adapter *adapter);

/*
 * Checks the adapter against the modules of the base model and binds each update and
 * replacement. Every target must exist, shapes and ranks must agree with the base and the
 * config, values must be finite, and no tensor may belong to a module the base lacks.
 * Tensors of untargeted modules are reported and left out. The adapter is usable
 * (qref_lora_usable) when no ERROR finding was added by open or bind.
 */
void qref_lora_bind(qref_lora_adapter *adapter, const qref_lora_base_module *modules, size_t count,
                    qref_findings *findings);

/* True when open and bind found no error, so that updates may be applied. */
bool qref_lora_usable(const qref_lora_adapter *adapter);

/* The update bound to a base linear module, or NULL. */
const qref_lora_update *qref_lora_find_update(const qref_lora_adapter *adapter, const char *module);

/* The replacement of a base tensor ("lm_head.weight"), or NULL. */
const qref_lora_replacement *qref_lora_find_replacement(const qref_lora_adapter *adapter, const char *tensor);

/* Adds scaling * B A to weight[rows][cols] (f32). Rows run in parallel; sums over r in order. */
qref_status qref_lora_apply(const qref_lora_update *update, float *weight, int64_t rows, int64_t cols,
                            qref_error *err);

/* Adds the adapter's settings to out: peft_type, r, lora_alpha, scaling, base model, counts, digest. */
void qref_lora_describe(const qref_lora_adapter *adapter, cJSON *out);

/* SHA-256 (hex) of adapter_config.json followed by adapter_model.safetensors. */
const char *qref_lora_digest(const qref_lora_adapter *adapter);

#endif
