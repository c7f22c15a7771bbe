#include "model/qref_lora_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/qref_llama.h"
#include "model/qref_tensor_weights.h"

/* Appends one module; the array was sized for every module of the model. */
static void module_add(qref_lora_base_module *modules, size_t *count, const char *name, qref_lora_module_kind kind,
                       int64_t rows, int64_t cols, int layer)
{
    qref_lora_base_module *module = &modules[(*count)++];
    snprintf(module->name, sizeof module->name, "%s", name);
    module->kind = kind;
    module->rows = rows;
    module->cols = cols;
    module->layer = layer;
}

qref_status qref_lora_llama_modules(const qref_llama_config *config, qref_lora_base_module **out, size_t *count,
                                    qref_error *err)
{
    /* per layer: the layer, self_attn, mlp, act_fn, two norms and seven linears */
    size_t capacity = 8 + (size_t)config->num_hidden_layers * (6 + QREF_LLAMA_LINEAR_COUNT);
    qref_lora_base_module *modules = calloc(capacity, sizeof *modules);
    if (modules == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "cannot allocate %zu module names", capacity);
    size_t n = 0;
    const int64_t hidden = config->hidden_size, vocab = config->vocab_size;
    module_add(modules, &n, "model", QREF_LORA_MODULE_OTHER, 0, 0, -1);
    module_add(modules, &n, "model.embed_tokens", QREF_LORA_MODULE_EMBEDDING, vocab, hidden, -1);
    module_add(modules, &n, "model.layers", QREF_LORA_MODULE_OTHER, 0, 0, -1);
    for (int layer = 0; layer < config->num_hidden_layers; layer++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d", layer);
        module_add(modules, &n, name, QREF_LORA_MODULE_OTHER, 0, 0, layer);
        snprintf(name, sizeof name, "model.layers.%d.self_attn", layer);
        module_add(modules, &n, name, QREF_LORA_MODULE_OTHER, 0, 0, layer);
        snprintf(name, sizeof name, "model.layers.%d.mlp", layer);
        module_add(modules, &n, name, QREF_LORA_MODULE_OTHER, 0, 0, layer);
        snprintf(name, sizeof name, "model.layers.%d.mlp.act_fn", layer);
        module_add(modules, &n, name, QREF_LORA_MODULE_OTHER, 0, 0, layer);
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm", layer);
        module_add(modules, &n, name, QREF_LORA_MODULE_OTHER, hidden, 1, layer);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm", layer);
        module_add(modules, &n, name, QREF_LORA_MODULE_OTHER, hidden, 1, layer);
        for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
            int64_t rows, cols;
            qref_llama_linear_shape(config, index, &rows, &cols);
            qref_llama_layer_tensor_name(name, sizeof name, layer, qref_llama_linear_names[index]);
            module_add(modules, &n, name, QREF_LORA_MODULE_LINEAR, rows, cols, layer);
        }
    }
    module_add(modules, &n, "model.norm", QREF_LORA_MODULE_OTHER, hidden, 1, -1);
    module_add(modules, &n, "model.rotary_emb", QREF_LORA_MODULE_OTHER, 0, 0, -1);
    module_add(modules, &n, "lm_head", QREF_LORA_MODULE_OUTPUT, vocab, hidden, -1);
    *out = modules;
    *count = n;
    return QREF_OK;
}

static qref_status lora_weights_load(void *ctx, const char *name, int64_t rows, int64_t cols, float *dst,
                                     qref_error *err)
{
    const qref_lora_weights *weights = ctx;

    /* a whole tensor from modules_to_save */
    const qref_lora_replacement *replacement = qref_lora_find_replacement(weights->adapter, name);
    if (replacement != NULL)
        return qref_tensor_load_f32(replacement->stored, rows, cols, dst, err);

    /* the base weight, then W + scaling * B A for an updated linear "<module>.weight" */
    qref_status status = weights->base.load(weights->base.ctx, name, rows, cols, dst, err);
    size_t length = strlen(name);
    const char suffix[] = ".weight";
    if (status != QREF_OK || cols <= 1 || length <= sizeof suffix - 1 || length >= 256 ||
        strcmp(name + length - (sizeof suffix - 1), suffix) != 0)
        return status;
    char module[256];
    memcpy(module, name, length - (sizeof suffix - 1));
    module[length - (sizeof suffix - 1)] = '\0';
    const qref_lora_update *update = qref_lora_find_update(weights->adapter, module);
    if (update == NULL)
        return QREF_OK;
    status = qref_lora_apply(update, dst, rows, cols, err);
    if (status == QREF_OK && qref_values_check_finite(name, dst, (size_t)(rows * cols), (size_t)cols, err) != QREF_OK)
        return qref_error_prefix(err, "weights merged with the LoRA adapter: ");
    return status;
}

static qref_status lora_weights_round_input(void *ctx, const char *name, float *x, int64_t rows, int64_t cols,
                                            qref_error *err)
{
    const qref_lora_weights *weights = ctx;
    return weights->base.round_input(weights->base.ctx, name, x, rows, cols, err);
}

void qref_lora_weights_provider(qref_lora_weights *weights, qref_weight_provider *provider)
{
    provider->ctx = weights;
    provider->load = lora_weights_load;
    provider->round_input = weights->base.round_input != NULL ? lora_weights_round_input : NULL;
}
