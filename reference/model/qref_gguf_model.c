/*
 * A GGUF LLaMA model; see qref_gguf_model.h.
 *
 * Steps:
 *   1. read the llama.* keys into a qref_llama_config, checking each against the others;
 *   2. map LLaMA-3.1 rope_freqs.weight onto the config's "llama3" RoPE scaling, or reject it;
 *   3. list the tensors the forward reads, with GGUF names, Hugging Face names and shapes;
 *   4. serve them: find the tensor, check its shape, dequantize, put Q/K rows back in Hugging
 *      Face order, check finiteness.
 */
#include "model/qref_gguf_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_ggml.h"
#include "formats/qref_ggml_vec_dot.h"
#include "io/qref_tensor.h"
#include "model/qref_llama.h"

/* ---- 1. configuration ---------------------------------------------------------------------- */

/* Reads a required positive integer key below 2^31. */
static qref_status get_positive(const qref_gguf *g, const char *key, int *out, qref_error *err)
{
    uint32_t value = 0;
    qref_status status = qref_gguf_get_u32(g, key, &value, err);
    if (status != QREF_OK)
        return status;
    if (value == 0 || value > (uint32_t)INT32_MAX)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%s\" is %u, expected 1 to %d", g->display,
                              key, value, INT32_MAX);
    *out = (int)value;
    return QREF_OK;
}

/* Reads an optional positive integer key; fallback when absent. */
static qref_status get_optional_positive(const qref_gguf *g, const char *key, int fallback, int *out,
                                         qref_error *err)
{
    *out = fallback;
    if (qref_gguf_find_kv(g, key) == NULL)
        return QREF_OK;
    return get_positive(g, key, out, err);
}

/* Reads a float key stored as FLOAT32 or FLOAT64. */
static qref_status get_real(const qref_gguf *g, const char *key, bool required, double fallback, double *out,
                            qref_error *err)
{
    *out = fallback;
    if (!required && qref_gguf_find_kv(g, key) == NULL)
        return QREF_OK;
    qref_status status = qref_gguf_get_f64(g, key, out, err);
    if (status == QREF_OK && !(isfinite(*out) && *out > 0.0))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%s\" is %g, expected a finite number > 0",
                              g->display, key, *out);
    return status;
}

static bool string_is(const qref_gguf_string *value, const char *text)
{
    return value->length == strlen(text) && memcmp(value->data, text, value->length) == 0;
}

/* Copies a metadata string for a message: printable ASCII kept, other bytes as '?', cut at 64. */
static void printable(const qref_gguf_string *value, char out[72])
{
    size_t n = value->length < 64 ? (size_t)value->length : 64;
    for (size_t i = 0; i < n; i++) {
        char c = value->data[i];
        out[i] = c >= 0x20 && c < 0x7f ? c : '?';
    }
    strcpy(out + n, value->length > 64 ? "..." : "");
}

/* Rejects the RoPE scaling keys, which this forward does not implement. */
static qref_status check_no_rope_scaling(const qref_gguf *g, qref_error *err)
{
    if (qref_gguf_find_kv(g, "llama.rope.scaling.type") != NULL) {
        qref_gguf_string type;
        qref_status status = qref_gguf_get_string(g, "llama.rope.scaling.type", &type, err);
        if (status != QREF_OK)
            return status;
        if (!string_is(&type, "none")) {
            char name[72];
            printable(&type, name);
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: llama.rope.scaling.type \"%s\" is not supported "
                                  "(expected \"none\" or no key)", g->display, name);
        }
    }
    if (qref_gguf_find_kv(g, "llama.rope.scale_linear") != NULL) {
        double scale;
        qref_status status = qref_gguf_get_f64(g, "llama.rope.scale_linear", &scale, err);
        if (status != QREF_OK)
            return status;
        if (scale != 1.0)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: llama.rope.scale_linear is %g; linear RoPE "
                                  "scaling is not supported (expected 1 or no key)", g->display, scale);
    }
    return QREF_OK;
}

/*
 * LLaMA-3.1 frequency factor of pair k (convert_hf_to_gguf.py LlamaModel.generate_extra_tensors,
 * in float64): 1 for wavelengths below original/high, factor above original/low, and
 * 1 / ((1 - s) / factor + s) with s = (original / wavelength - low) / (high - low) between.
 */
static double llama3_frequency_factor(double theta, int head_dim, int k, double factor, double low, double high,
                                      double original)
{
    double frequency = 1.0 / pow(theta, (double)(2 * k) / (double)head_dim);
    double wavelength = 2.0 * 3.14159265358979323846 / frequency;
    if (wavelength < original / high)
        return 1.0;
    if (wavelength > original / low)
        return factor;
    double smooth = (original / wavelength - low) / (high - low);
    return 1.0 / ((1.0 - smooth) / factor + smooth);
}

/* Step 2: maps rope_freqs.weight onto "llama3" scaling with the published parameters, or rejects it. */
static qref_status map_rope_freqs(const qref_gguf *g, const qref_gguf_tensor *tensor, qref_llama_config *config,
                                  qref_error *err)
{
    const double low = 1.0, high = 4.0, original = 8192.0;
    int half = config->head_dim / 2;
    if (tensor->n_dims != 1 || tensor->ne[0] != half)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"rope_freqs.weight\": ne[0] is %lld with %d "
                              "dimensions, expected one dimension of %d (head_dim / 2)", g->display,
                              (long long)tensor->ne[0], tensor->n_dims, half);
    float *factors = malloc((size_t)half * sizeof *factors);
    if (factors == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", g->display);
    qref_status status = qref_ggml_dequantize_tensor(g, tensor, factors, err);
    double factor = 0.0;
    for (int k = 0; k < half && status == QREF_OK; k++)
        if (factors[k] > factor)
            factor = factors[k];
    for (int k = 0; k < half && status == QREF_OK; k++) {
        double expected = llama3_frequency_factor(config->rope_theta, config->head_dim, k, factor, low, high,
                                                  original);
        if (!(fabs((double)factors[k] - expected) <= 1e-6 * expected))
            status = qref_error_set(err, QREF_ERR_UNSUPPORTED,
                                    "%s: tensor \"rope_freqs.weight\": element %d is %.9g, but LLaMA-3.1 RoPE "
                                    "scaling with factor %g, low_freq_factor 1, high_freq_factor 4 and "
                                    "original_max_position_embeddings 8192 gives %.9g; other frequency factors "
                                    "are not supported", g->display, k, (double)factors[k], factor, expected);
    }
    free(factors);
    if (status != QREF_OK)
        return status;
    if (factor > 1.0) {
        config->rope_scaling = (qref_rope_scaling){
            .type = QREF_ROPE_LLAMA3, .factor = factor, .low_freq_factor = low, .high_freq_factor = high,
            .original_max_position_embeddings = (int)original,
        };
    }
    return QREF_OK;
}

qref_status qref_gguf_llama_config(const qref_gguf *g, qref_llama_config *config, qref_error *err)
{
    memset(config, 0, sizeof *config);
    config->bos_token_id = -1;
    config->eos_token_id = -1;

    /* the architecture */
    qref_gguf_string architecture;
    qref_status status = qref_gguf_get_string(g, "general.architecture", &architecture, err);
    if (status != QREF_OK)
        return status;
    if (!string_is(&architecture, "llama")) {
        char name[72];
        printable(&architecture, name);
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: general.architecture \"%s\" is not supported "
                              "(expected \"llama\")", g->display, name);
    }

    /* one file of a split model holds only some tensors */
    uint32_t split_count = 1;
    qref_error ignored = {0};
    if (qref_gguf_get_u32(g, "split.count", &split_count, &ignored) == QREF_OK && split_count > 1)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: split.count is %u; models split over several GGUF "
                              "files are not supported (merge them with llama-gguf-split --merge)", g->display,
                              split_count);

    /* shapes */
    int key_length = 0, value_length = 0, rope_dims = 0;
    if ((status = get_positive(g, "llama.block_count", &config->num_hidden_layers, err)) ||
        (status = get_positive(g, "llama.embedding_length", &config->hidden_size, err)) ||
        (status = get_positive(g, "llama.feed_forward_length", &config->intermediate_size, err)) ||
        (status = get_positive(g, "llama.attention.head_count", &config->num_attention_heads, err)) ||
        (status = get_optional_positive(g, "llama.attention.head_count_kv", config->num_attention_heads,
                                        &config->num_key_value_heads, err)) ||
        (status = get_positive(g, "llama.context_length", &config->max_position_embeddings, err)))
        return status;
    if (config->hidden_size % config->num_attention_heads != 0 &&
        qref_gguf_find_kv(g, "llama.attention.key_length") == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: llama.embedding_length %d is not a multiple of "
                              "llama.attention.head_count %d, and llama.attention.key_length is missing",
                              g->display, config->hidden_size, config->num_attention_heads);
    if ((status = get_optional_positive(g, "llama.attention.key_length",
                                        config->hidden_size / config->num_attention_heads, &key_length, err)) ||
        (status = get_optional_positive(g, "llama.attention.value_length", key_length, &value_length, err)) ||
        (status = get_optional_positive(g, "llama.rope.dimension_count", key_length, &rope_dims, err)))
        return status;
    config->head_dim = key_length;
    if (value_length != key_length)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: llama.attention.value_length %d differs from "
                              "key_length %d, which the LLaMA forward does not support", g->display, value_length,
                              key_length);
    if (rope_dims != key_length)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: llama.rope.dimension_count is %d, expected the head "
                              "dimension %d (partial rotary embeddings are not supported)", g->display, rope_dims,
                              key_length);
    if (config->num_attention_heads % config->num_key_value_heads != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: llama.attention.head_count %d is not a multiple of "
                              "llama.attention.head_count_kv %d", g->display, config->num_attention_heads,
                              config->num_key_value_heads);

    /* norms and RoPE */
    if ((status = get_real(g, "llama.attention.layer_norm_rms_epsilon", true, 0.0, &config->rms_norm_eps, err)) ||
        (status = get_real(g, "llama.rope.freq_base", false, 10000.0, &config->rope_theta, err)) ||
        (status = check_no_rope_scaling(g, err)))
        return status;

    /* vocabulary and output from the tensors */
    const qref_gguf_tensor *embed = NULL;
    if ((status = qref_gguf_get_tensor(g, "token_embd.weight", &embed, err)) != QREF_OK)
        return status;
    if (embed->n_dims != 2 || embed->ne[0] != config->hidden_size || embed->ne[1] > INT32_MAX)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"token_embd.weight\": ne [%lld, %lld] with %d "
                              "dimensions, expected [%d, n_vocab] (llama.embedding_length, vocabulary size)",
                              g->display, (long long)embed->ne[0], (long long)embed->ne[1], embed->n_dims,
                              config->hidden_size);
    config->vocab_size = (int)embed->ne[1];
    config->tie_word_embeddings = qref_gguf_find_tensor(g, "output.weight") == NULL;
    uint32_t id;
    if (qref_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id, &ignored) == QREF_OK && id < (uint32_t)INT32_MAX)
        config->bos_token_id = (int)id;
    if (qref_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id, &ignored) == QREF_OK && id < (uint32_t)INT32_MAX)
        config->eos_token_id = (int)id;
    snprintf(config->torch_dtype, sizeof config->torch_dtype, "gguf");

    /* LLaMA-3.1 frequency factors */
    const qref_gguf_tensor *rope_freqs = qref_gguf_find_tensor(g, "rope_freqs.weight");
    if (rope_freqs != NULL)
        return map_rope_freqs(g, rope_freqs, config, err);
    return QREF_OK;
}

qref_status qref_gguf_model_init(const qref_gguf *file, qref_gguf_model *model, qref_error *err)
{
    memset(model, 0, sizeof *model);
    qref_status status = qref_gguf_llama_config(file, &model->config, err);
    if (status == QREF_OK)
        model->file = file;
    return status;
}

/* ---- 3. the tensors the forward reads ------------------------------------------------------ */

#define GLOBAL_TENSORS_TIED 2
#define LAYER_TENSORS 9

size_t qref_gguf_llama_tensor_count(const qref_llama_config *config)
{
    return GLOBAL_TENSORS_TIED + (config->tie_word_embeddings ? 0 : 1) +
           (size_t)config->num_hidden_layers * LAYER_TENSORS;
}

/* Per-layer tensors: GGUF suffix, Hugging Face suffix, and which linear (-1 for a norm). */
static const struct {
    const char *gguf, *hf;
    int linear; /* index into qref_llama_linear_names */
} layer_tensors[LAYER_TENSORS] = {
    {"attn_norm", "input_layernorm", -1},
    {"attn_q", "self_attn.q_proj", 0},
    {"attn_k", "self_attn.k_proj", 1},
    {"attn_v", "self_attn.v_proj", 2},
    {"attn_output", "self_attn.o_proj", 3},
    {"ffn_norm", "post_attention_layernorm", -1},
    {"ffn_gate", "mlp.gate_proj", 4},
    {"ffn_up", "mlp.up_proj", 5},
    {"ffn_down", "mlp.down_proj", 6},
};

void qref_gguf_llama_tensor_at(const qref_llama_config *config, size_t index, qref_gguf_llama_tensor *out)
{
    memset(out, 0, sizeof *out);
    size_t globals = GLOBAL_TENSORS_TIED + (config->tie_word_embeddings ? 0 : 1);
    if (index < globals) {
        static const char *const names[3][2] = {
            {"token_embd.weight", "model.embed_tokens.weight"},
            {"output_norm.weight", "model.norm.weight"},
            {"output.weight", "lm_head.weight"},
        };
        snprintf(out->name, sizeof out->name, "%s", names[index][0]);
        snprintf(out->hf_name, sizeof out->hf_name, "%s", names[index][1]);
        out->n_dims = index == 1 ? 1 : 2;
        out->ne[0] = config->hidden_size;
        out->ne[1] = index == 1 ? 1 : config->vocab_size;
        return;
    }
    int layer = (int)((index - globals) / LAYER_TENSORS);
    int k = (int)((index - globals) % LAYER_TENSORS);
    snprintf(out->name, sizeof out->name, "blk.%d.%s.weight", layer, layer_tensors[k].gguf);
    snprintf(out->hf_name, sizeof out->hf_name, "model.layers.%d.%s.weight", layer, layer_tensors[k].hf);
    if (layer_tensors[k].linear < 0) {
        out->n_dims = 1;
        out->ne[0] = config->hidden_size;
        out->ne[1] = 1;
        return;
    }
    int64_t rows, cols;
    qref_llama_linear_shape(config, layer_tensors[k].linear, &rows, &cols);
    out->n_dims = 2;
    out->ne[0] = cols;
    out->ne[1] = rows;
    if (layer_tensors[k].linear == 0)
        out->permuted_heads = config->num_attention_heads;
    else if (layer_tensors[k].linear == 1)
        out->permuted_heads = config->num_key_value_heads;
}

/* Finds the expected tensor for a Hugging Face name, or returns false. */
static bool find_expected(const qref_llama_config *config, const char *hf_name, qref_gguf_llama_tensor *out)
{
    size_t count = qref_gguf_llama_tensor_count(config);
    const char prefix[] = "model.layers.";
    size_t first = 0, last = count;
    if (strncmp(hf_name, prefix, sizeof prefix - 1) == 0) {
        /* only the nine tensors of that layer can match */
        char *end = NULL;
        long layer = strtol(hf_name + sizeof prefix - 1, &end, 10);
        if (end == hf_name + sizeof prefix - 1 || layer < 0 || layer >= config->num_hidden_layers)
            return false;
        first = count - (size_t)(config->num_hidden_layers - layer) * LAYER_TENSORS;
        last = first + LAYER_TENSORS;
    }
    for (size_t i = first; i < last; i++) {
        qref_gguf_llama_tensor_at(config, i, out);
        if (strcmp(out->hf_name, hf_name) == 0)
            return true;
    }
    return false;
}

/* ---- 4. serving the tensors ---------------------------------------------------------------- */

qref_status qref_gguf_model_check_tensor(const qref_gguf_model *model, const qref_gguf_llama_tensor *expected,
                                         qref_error *err)
{
    const qref_gguf *g = model->file;
    const qref_gguf_tensor *tensor = qref_gguf_find_tensor(g, expected->name);
    if (tensor == NULL) {
        if (expected->n_dims == 1)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\" not found (expected ne [%lld], read as "
                                  "%s)", g->display, expected->name, (long long)expected->ne[0], expected->hf_name);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\" not found (expected ne [%lld, %lld], read as "
                              "%s)", g->display, expected->name, (long long)expected->ne[0],
                              (long long)expected->ne[1], expected->hf_name);
    }
    bool shape_ok = tensor->n_dims == expected->n_dims && tensor->ne[0] == expected->ne[0] &&
                    (expected->n_dims == 1 || tensor->ne[1] == expected->ne[1]);
    if (!shape_ok) {
        char found[96] = "[";
        for (int d = 0; d < tensor->n_dims; d++)
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%lld", d ? ", " : "",
                     (long long)tensor->ne[d]);
        strcat(found, "]");
        if (expected->n_dims == 1)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": ne %s, expected [%lld] (the config's "
                                  "hidden size)", g->display, expected->name, found, (long long)expected->ne[0]);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": ne %s, expected [%lld, %lld] (in_features, "
                              "out_features of %s as the config implies)", g->display, expected->name, found,
                              (long long)expected->ne[0], (long long)expected->ne[1], expected->hf_name);
    }
    if (!qref_ggml_type_can_dequantize(tensor->type))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: tensor \"%s\": ggml type %s (%u) has no dequantizer "
                              "here (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, "
                              "Q5_K, Q6_K, IQ4_NL)", g->display, expected->name, qref_ggml_type_name(tensor->type),
                              tensor->type);
    return QREF_OK;
}

qref_status qref_gguf_model_load_tensor(const qref_gguf_model *model, const qref_gguf_llama_tensor *expected,
                                        float *dst, qref_error *err)
{
    qref_status status = qref_gguf_model_check_tensor(model, expected, err);
    if (status != QREF_OK)
        return status;
    const qref_gguf *g = model->file;
    const qref_gguf_tensor *tensor = qref_gguf_find_tensor(g, expected->name);
    size_t cols = (size_t)expected->ne[0], rows = (size_t)expected->ne[1];

    if (expected->permuted_heads == 0) {
        status = qref_ggml_dequantize_tensor(g, tensor, dst, err);
    } else {
        /* dequantize, then GGUF row 2i + s of each head goes to Hugging Face row s * head_dim/2 + i */
        float *interleaved = malloc(rows * cols * sizeof *interleaved);
        if (interleaved == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: tensor \"%s\": cannot allocate %zu floats", g->display,
                                  expected->name, rows * cols);
        status = qref_ggml_dequantize_tensor(g, tensor, interleaved, err);
        size_t head_dim = rows / (size_t)expected->permuted_heads, half = head_dim / 2;
        for (size_t r = 0; r < rows && status == QREF_OK; r++) {
            size_t head = r / head_dim, within = r % head_dim;
            size_t hf_row = head * head_dim + (within % 2) * half + within / 2;
            memcpy(dst + hf_row * cols, interleaved + r * cols, cols * sizeof *dst);
        }
        free(interleaved);
    }
    if (status == QREF_OK && qref_values_check_finite(expected->name, dst, rows * cols, cols, err) != QREF_OK)
        return qref_error_prefix(err, "%s: dequantized %s weights: ", g->display, qref_ggml_type_name(tensor->type));
    return status;
}

static qref_status gguf_model_load(void *ctx, const char *name, int64_t rows, int64_t cols, float *dst,
                                   qref_error *err)
{
    const qref_gguf_model *model = ctx;
    qref_gguf_llama_tensor expected;
    if (!find_expected(&model->config, name, &expected))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: no GGUF tensor corresponds to \"%s\"", model->file->display,
                              name);
    /* a vector is requested as [n, 1], a matrix as [out_features, in_features] = [ne[1], ne[0]] */
    int64_t expected_rows = expected.n_dims == 1 ? expected.ne[0] : expected.ne[1];
    int64_t expected_cols = expected.n_dims == 1 ? 1 : expected.ne[0];
    if (expected_rows != rows || expected_cols != cols)
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: \"%s\" requested as [%lld, %lld], but the config "
                              "implies [%lld, %lld]", model->file->display, name, (long long)rows, (long long)cols,
                              (long long)expected_rows, (long long)expected_cols);
    return qref_gguf_model_load_tensor(model, &expected, dst, err);
}

/* Rounds the input rows of a linear to the vec_dot_type of its stored type, as ggml's CPU backend does. */
static qref_status gguf_model_round_input(void *ctx, const char *name, float *x, int64_t rows, int64_t cols,
                                          qref_error *err)
{
    const qref_gguf_model *model = ctx;
    qref_gguf_llama_tensor expected;
    const qref_gguf_tensor *tensor = NULL;
    if (find_expected(&model->config, name, &expected))
        tensor = qref_gguf_find_tensor(model->file, expected.name);
    if (tensor == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: no GGUF tensor corresponds to \"%s\"", model->file->display,
                              name);
    uint32_t vec_dot_type = qref_ggml_vec_dot_type(tensor->type);
    if (vec_dot_type == QREF_GGML_TYPE_COUNT)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: tensor \"%s\": ggml type %s has no activation "
                              "rounding here", model->file->display, expected.name, qref_ggml_type_name(tensor->type));
    if (vec_dot_type == QREF_GGML_TYPE_F32)
        return QREF_OK;

    /* rows are independent; the first error (by row) is reported */
    qref_status status = QREF_OK;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        qref_error row_err = {0};
        if (qref_ggml_round_activations(vec_dot_type, x + r * cols, cols, &row_err) != QREF_OK) {
#pragma omp critical(gguf_round_input)
            if (status == QREF_OK)
                status = qref_error_set(err, row_err.status, "%s: %s", expected.name, row_err.message);
        }
    }
    return status;
}

void qref_gguf_model_provider(const qref_gguf_model *model, qref_weight_provider *provider)
{
    provider->ctx = (void *)model;
    provider->load = gguf_model_load;
    provider->round_input = gguf_model_round_input;
}

/* ---- file types ---------------------------------------------------------------------------- */

const char *qref_gguf_file_type_name(uint32_t file_type)
{
    /* llama_ftype in llama.cpp include/llama.h; ids 4-6 and 33-35 were removed */
    static const char *const names[] = {
        [0] = "F32",      [1] = "F16",      [2] = "Q4_0",     [3] = "Q4_1",     [7] = "Q8_0",
        [8] = "Q5_0",     [9] = "Q5_1",     [10] = "Q2_K",    [11] = "Q3_K_S",  [12] = "Q3_K_M",
        [13] = "Q3_K_L",  [14] = "Q4_K_S",  [15] = "Q4_K_M",  [16] = "Q5_K_S",  [17] = "Q5_K_M",
        [18] = "Q6_K",    [19] = "IQ2_XXS", [20] = "IQ2_XS",  [21] = "Q2_K_S",  [22] = "IQ3_XS",
        [23] = "IQ3_XXS", [24] = "IQ1_S",   [25] = "IQ4_NL",  [26] = "IQ3_S",   [27] = "IQ3_M",
        [28] = "IQ2_S",   [29] = "IQ2_M",   [30] = "IQ4_XS",  [31] = "IQ1_M",   [32] = "BF16",
        [36] = "TQ1_0",   [37] = "TQ2_0",   [38] = "MXFP4_MOE",
    };
    if (file_type >= sizeof names / sizeof names[0])
        return NULL;
    return names[file_type];
}
