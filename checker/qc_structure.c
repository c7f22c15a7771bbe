#include "qc_structure.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_ggml.h"
#include "model/qref_gguf_model.h"
#include "model/qref_llama.h"
#include "quant/qref_rtn.h"

/* Structure problems are reported one by one up to this count, then summarized. */
#define STRUCTURE_MAX_LISTED 20

static const qref_tensor *find_tensor(const qc_model *model, const char *module, const char *suffix)
{
    char name[512];
    snprintf(name, sizeof name, "%s.%s", module, suffix);
    return qref_tensor_set_find(model->tensor_weights.tensors, name);
}

static qref_gptq_linear gptq_linear_of(const qc_model *model, const char *module, int64_t rows, int64_t cols)
{
    qref_gptq_linear linear = {
        .prefix = module,
        .qweight = find_tensor(model, module, "qweight"),
        .qzeros = find_tensor(model, module, "qzeros"),
        .scales = find_tensor(model, module, "scales"),
        .g_idx = find_tensor(model, module, "g_idx"),
        .out_features = rows,
        .in_features = cols,
    };
    return linear;
}

typedef struct structure_tally {
    qc_report *report;
    int problems;
    int linears;
    int quantized;
} structure_tally;

/* Records one problem as an ERROR check (invalid input), listing at most STRUCTURE_MAX_LISTED. */
static void tally_problem(structure_tally *tally, const char *id, const qref_error *err)
{
    tally->problems++;
    if (tally->problems <= STRUCTURE_MAX_LISTED)
        qc_report_add_error(tally->report, id, err);
}

/* Checks a float tensor's presence, dtype and shape ([rows] when cols == 1). */
static void check_dense(structure_tally *tally, const qc_model *model, const char *name, int64_t rows,
                        int64_t cols)
{
    qref_error err = {0};
    const qref_tensor *tensor = qref_tensor_set_find(model->tensor_weights.tensors, name);
    if (tensor == NULL) {
        qref_error_set(&err, QREF_ERR_INVALID, "tensor \"%s\" not found (expected shape [%lld%s%lld]%s)", name,
                       (long long)rows, cols > 1 ? ", " : "", cols > 1 ? (long long)cols : 0LL,
                       cols > 1 ? "" : "");
        if (cols == 1)
            qref_error_set(&err, QREF_ERR_INVALID, "tensor \"%s\" not found (expected shape [%lld])", name,
                           (long long)rows);
        tally_problem(tally, "structure.missing", &err);
        return;
    }
    char shape[96];
    qref_tensor_shape_string(tensor, shape, sizeof shape);
    bool shape_ok = cols == 1 ? (tensor->ndim == 1 && tensor->shape[0] == rows)
                              : (tensor->ndim == 2 && tensor->shape[0] == rows && tensor->shape[1] == cols);
    if (!shape_ok) {
        if (cols == 1)
            qref_error_set(&err, QREF_ERR_INVALID, "%s: tensor \"%s\": shape %s, expected [%lld]", tensor->file,
                           name, shape, (long long)rows);
        else
            qref_error_set(&err, QREF_ERR_INVALID, "%s: tensor \"%s\": shape %s, expected [%lld, %lld]",
                           tensor->file, name, shape, (long long)rows, (long long)cols);
        tally_problem(tally, "structure.shape", &err);
    } else if (!qref_dtype_is_float(tensor->dtype)) {
        qref_error_set(&err, QREF_ERR_INVALID, "%s: tensor \"%s\": dtype %s, expected F32, F16 or BF16",
                       tensor->file, name, qref_dtype_name(tensor->dtype));
        tally_problem(tally, "structure.dtype", &err);
    } else if (qref_tensor_check_finite(tensor, &err) != QREF_OK) {
        tally_problem(tally, "structure.nonfinite", &err);
    }
}

/* Checks one linear: a GPTQ linear when its qweight is stored, else a float weight. */
static void check_linear(structure_tally *tally, const qc_model *model, const char *module, int64_t rows,
                         int64_t cols)
{
    tally->linears++;
    qref_error err = {0};
    if (find_tensor(model, module, "qweight") != NULL) {
        tally->quantized++;
        if (!model->quantized) {
            qref_error_set(&err, QREF_ERR_INVALID, "tensor \"%s.qweight\" is stored but no GPTQ quantization "
                           "config was found (quantize_config.json or config.json quantization_config)", module);
            tally_problem(tally, "structure.config", &err);
            return;
        }
        qref_gptq_linear linear = gptq_linear_of(model, module, rows, cols);
        if (qref_gptq_check_linear(&linear, &model->gptq, &err) != QREF_OK)
            tally_problem(tally, "structure.gptq", &err);
        return;
    }
    char name[512];
    snprintf(name, sizeof name, "%s.weight", module);
    const qref_tensor *dense = qref_tensor_set_find(model->tensor_weights.tensors, name);
    if (model->quantized && dense != NULL) {
        char shape[96];
        qref_tensor_shape_string(dense, shape, sizeof shape);
        qref_error_set(&err, QREF_ERR_INVALID, "%s: linear \"%s\" is stored unquantized (%s, %s %s), expected "
                       "qweight, qzeros, scales and g_idx because the quantization config (%s) declares every "
                       "linear of every layer quantized", dense->file, module, name, qref_dtype_name(dense->dtype),
                       shape, model->gptq.source);
        tally_problem(tally, "structure.unquantized", &err);
        return;
    }
    check_dense(tally, model, name, rows, cols);
}

/* Returns the layer index N of a tensor named "model.layers.N.<suffix>", or -1. */
static long layer_index(const char *name, const char **suffix)
{
    const char prefix[] = "model.layers.";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0)
        return -1;
    const char *digits = name + sizeof prefix - 1;
    char *end = NULL;
    long index = strtol(digits, &end, 10);
    if (end == digits || *end != '.' || index < 0 || digits[0] == '-' || digits[0] == '+')
        return -1;
    *suffix = end + 1;
    return index;
}

/*
 * Checks that the tensors hold exactly num_hidden_layers layers before anything walks the
 * layers, so a config that claims far more layers than are stored fails at once.
 */
static bool check_layer_count(const qc_model *artifact, qc_report *report)
{
    const qref_tensor_set *set = artifact->tensor_weights.tensors;
    long highest = -1;
    for (size_t i = 0; i < set->count; i++) {
        const char *suffix;
        long index = layer_index(set->items[i].name, &suffix);
        if (index > highest)
            highest = index;
    }
    if (highest + 1 == artifact->config.num_hidden_layers)
        return true;
    qc_check *check = qc_report_add_check(report, "structure.layers", QC_VERDICT_ERROR,
                                          "config.json: num_hidden_layers is %d, but the tensors hold %ld layers "
                                          "(model.layers.0 to model.layers.%ld)",
                                          artifact->config.num_hidden_layers, highest + 1, highest);
    check->error_status = QREF_ERR_INVALID;
    return false;
}

/* True for a tensor name the LLaMA forward reads, in dense or GPTQ form. */
static bool tensor_expected(const qc_model *artifact, const char *name)
{
    if (strcmp(name, "model.embed_tokens.weight") == 0 || strcmp(name, "model.norm.weight") == 0 ||
        (strcmp(name, "lm_head.weight") == 0 && !artifact->config.tie_word_embeddings))
        return true;
    const char *suffix;
    if (layer_index(name, &suffix) < 0)
        return false;
    if (strcmp(suffix, "input_layernorm.weight") == 0 || strcmp(suffix, "post_attention_layernorm.weight") == 0)
        return true;
    static const char *const parts[] = {"weight", "qweight", "qzeros", "scales", "g_idx"};
    for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT; k++) {
        size_t length = strlen(qref_llama_linear_names[k]);
        if (strncmp(suffix, qref_llama_linear_names[k], length) != 0 || suffix[length] != '.')
            continue;
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++)
            if (strcmp(suffix + length + 1, parts[p]) == 0)
                return true;
    }
    return false;
}

/* Reports tensors the model never reads (a WARN: they change no result, but hint at a mix-up). */
static void report_unexpected_tensors(const qc_model *artifact, qc_report *report)
{
    const qref_tensor_set *set = artifact->tensor_weights.tensors;
    char listed[512] = "";
    size_t used = 0, count = 0;
    for (size_t i = 0; i < set->count; i++) {
        if (tensor_expected(artifact, set->items[i].name))
            continue;
        if (count < 5 && used < sizeof listed)
            used += (size_t)snprintf(listed + used, sizeof listed - used, "%s\"%s\"", count ? ", " : "",
                                     set->items[i].name);
        count++;
    }
    if (count > 0)
        qc_report_add_check(report, "structure.unexpected", QC_VERDICT_WARN,
                            "%zu stored tensors are not read by the LLaMA forward: %s%s", count, listed,
                            count > 5 ? ", ..." : "");
}

/* ---- GGUF models ------------------------------------------------------------------------- */

/* Highest "blk.N." layer index among the file's tensors, or -1. */
static long gguf_highest_layer(const qref_gguf *gguf)
{
    long highest = -1;
    for (size_t i = 0; i < gguf->tensor_count; i++) {
        const char *name = gguf->tensors[i].name;
        if (strncmp(name, "blk.", 4) != 0)
            continue;
        char *end = NULL;
        long index = strtol(name + 4, &end, 10);
        if (end != name + 4 && *end == '.' && index > highest)
            highest = index;
    }
    return highest;
}

/* True for a tensor the LLaMA forward reads (or rope_freqs.weight, which the config carries). */
static bool gguf_tensor_expected(const qref_llama_config *config, const char *name)
{
    if (strcmp(name, "rope_freqs.weight") == 0)
        return true;
    size_t count = qref_gguf_llama_tensor_count(config);
    for (size_t i = 0; i < count; i++) {
        qref_gguf_llama_tensor expected;
        qref_gguf_llama_tensor_at(config, i, &expected);
        if (strcmp(expected.name, name) == 0)
            return true;
    }
    return false;
}

/* Checks the tokenizer metadata against the model: vocabulary size and special ids. */
static void gguf_check_tokenizer(const qc_model *artifact, qc_report *report)
{
    const qref_tokenizer *tokenizer = artifact->tokenizer;
    if (tokenizer == NULL) {
        qc_report_add_check(report, "structure.tokenizer", QC_VERDICT_WARN, "%s; text benchmarks cannot run",
                            artifact->tokenizer_unsupported != NULL ? artifact->tokenizer_unsupported
                                                                    : "the file has no tokenizer.ggml.model metadata");
        return;
    }
    int32_t vocab = qref_tokenizer_vocab_size(tokenizer);
    int32_t bos = qref_tokenizer_bos_id(tokenizer), eos = qref_tokenizer_eos_id(tokenizer);
    if (vocab != artifact->config.vocab_size) {
        qc_check *check = qc_report_add_check(report, "structure.tokenizer", QC_VERDICT_ERROR,
                                              "%s: tokenizer.ggml.tokens has %d entries, but token_embd.weight has %d "
                                              "rows", artifact->path, vocab, artifact->config.vocab_size);
        check->error_status = QREF_ERR_INVALID;
        return;
    }
    if (qref_tokenizer_adds_bos(tokenizer) && bos < 0) {
        qc_check *check = qc_report_add_check(report, "structure.tokenizer", QC_VERDICT_ERROR,
                                              "%s: tokenizer.ggml.add_bos_token is true, but there is no BOS token "
                                              "(tokenizer.ggml.bos_token_id)", artifact->path);
        check->error_status = QREF_ERR_INVALID;
        return;
    }
    qc_report_add_check(report, "structure.tokenizer", QC_VERDICT_PASS,
                        "%s tokenizer: %d tokens, as many as token_embd.weight rows; BOS %d%s, EOS %d",
                        qref_tokenizer_kind_name(qref_tokenizer_kind_of(tokenizer)), vocab, bos,
                        qref_tokenizer_adds_bos(tokenizer) ? " (added)" : " (not added)", eos);
}

/* Counts the ggml types of the file's tensors into "Q4_K x 96, F32 x 41" (most frequent first). */
static void gguf_type_mix(const qref_gguf *gguf, char *out, size_t size, cJSON *json)
{
    size_t counts[QREF_GGML_TYPE_COUNT] = {0};
    for (size_t i = 0; i < gguf->tensor_count; i++)
        if (gguf->tensors[i].type < QREF_GGML_TYPE_COUNT)
            counts[gguf->tensors[i].type]++;
    out[0] = '\0';
    size_t used = 0;
    for (;;) {
        size_t best = 0;
        uint32_t best_type = QREF_GGML_TYPE_COUNT;
        for (uint32_t t = 0; t < QREF_GGML_TYPE_COUNT; t++)
            if (counts[t] > best) {
                best = counts[t];
                best_type = t;
            }
        if (best_type == QREF_GGML_TYPE_COUNT)
            break;
        if (json != NULL)
            cJSON_AddNumberToObject(json, qref_ggml_type_name(best_type), (double)best);
        if (used < size)
            used += (size_t)snprintf(out + used, size - used, "%s%s x %zu", used ? ", " : "",
                                     qref_ggml_type_name(best_type), best);
        counts[best_type] = 0;
    }
}

/* Structure checks of a GGUF model: the tensors the llama.* metadata implies, their types and values. */
static bool structure_check_gguf(const qc_model *artifact, qc_report *report)
{
    const qref_llama_config *config = &artifact->config;
    const qref_gguf_model *model = &artifact->gguf_model;
    structure_tally tally = {.report = report};

    /* layers: the reader rejects blk.N at or above block_count, so only too few can remain */
    long highest = gguf_highest_layer(artifact->gguf);
    if (highest + 1 != config->num_hidden_layers) {
        qc_check *check = qc_report_add_check(report, "structure.layers", QC_VERDICT_ERROR,
                                              "%s: llama.block_count is %d, but the tensors hold %ld layers "
                                              "(blk.0 to blk.%ld)", artifact->path, config->num_hidden_layers,
                                              highest + 1, highest);
        check->error_status = QREF_ERR_INVALID;
        return false;
    }

    /* every tensor: present, shaped as the config implies, dequantizable, finite */
    size_t count = qref_gguf_llama_tensor_count(config);
    for (size_t i = 0; i < count; i++) {
        qref_gguf_llama_tensor expected;
        qref_gguf_llama_tensor_at(config, i, &expected);
        tally.linears += expected.n_dims == 2;
        qref_error err = {0};
        qref_status status = qref_gguf_model_check_tensor(model, &expected, &err);
        if (status != QREF_OK) {
            const char *id = qref_gguf_find_tensor(artifact->gguf, expected.name) == NULL ? "structure.missing"
                           : status == QREF_ERR_UNSUPPORTED                              ? "structure.type"
                                                                                         : "structure.shape";
            tally_problem(&tally, id, &err);
            continue;
        }
        size_t floats = (size_t)(expected.ne[0] * expected.ne[1]);
        float *values = malloc(floats * sizeof *values);
        if (values == NULL) {
            qref_error_set(&err, QREF_ERR_NOMEM, "%s: cannot allocate %zu floats", expected.name, floats);
            tally_problem(&tally, "structure.memory", &err);
            continue;
        }
        if (qref_gguf_model_load_tensor(model, &expected, values, &err) != QREF_OK)
            tally_problem(&tally, err.status == QREF_ERR_INVALID ? "structure.nonfinite" : "structure.type", &err);
        free(values);
    }
    if (tally.problems > STRUCTURE_MAX_LISTED)
        qc_report_add_check(report, "structure.more", QC_VERDICT_ERROR, "%d further structure problems not listed",
                            tally.problems - STRUCTURE_MAX_LISTED)->error_status = QREF_ERR_INVALID;
    gguf_check_tokenizer(artifact, report);
    if (tally.problems > 0)
        return false;

    /* tensors the forward never reads */
    char listed[512] = "";
    size_t used = 0, unexpected = 0;
    for (size_t i = 0; i < artifact->gguf->tensor_count; i++) {
        const char *name = artifact->gguf->tensors[i].name;
        if (gguf_tensor_expected(config, name))
            continue;
        if (unexpected < 5 && used < sizeof listed)
            used += (size_t)snprintf(listed + used, sizeof listed - used, "%s\"%s\"", unexpected ? ", " : "", name);
        unexpected++;
    }
    if (unexpected > 0)
        qc_report_add_check(report, "structure.unexpected", QC_VERDICT_WARN,
                            "%zu stored tensors are not read by the LLaMA forward: %s%s", unexpected, listed,
                            unexpected > 5 ? ", ..." : "");

    char mix[512];
    gguf_type_mix(artifact->gguf, mix, sizeof mix, NULL);
    qc_report_add_check(report, "structure", QC_VERDICT_PASS,
                        "GGUF: %zu tensors (%d linears in %d layers, embeddings, norms) present with the shapes the "
                        "llama.* metadata implies; every type is dequantizable and every weight finite; types %s",
                        count, tally.linears, config->num_hidden_layers, mix);
    return true;
}

/* Describes a GGUF model's quantization: format "gguf", the file type and the type mix. */
static void describe_gguf(const qc_model *artifact, cJSON *json)
{
    uint32_t file_type = 0;
    qref_error err = {0};
    bool has_file_type = qref_gguf_get_u32(artifact->gguf, "general.file_type", &file_type, &err) == QREF_OK;
    const char *name = has_file_type ? qref_gguf_file_type_name(file_type) : NULL;
    cJSON_AddStringToObject(json, "format", "gguf");
    if (name != NULL)
        cJSON_AddStringToObject(json, "method", name);
    else
        cJSON_AddStringToObject(json, "method", has_file_type ? "unknown file type" : "no general.file_type");
    if (has_file_type)
        cJSON_AddNumberToObject(json, "file_type", file_type);
    else
        cJSON_AddNullToObject(json, "file_type");
    cJSON_AddNumberToObject(json, "gguf_version", artifact->gguf->version);
    char mix[512];
    gguf_type_mix(artifact->gguf, mix, sizeof mix, cJSON_AddObjectToObject(json, "tensor_types"));
    cJSON_AddStringToObject(json, "type_mix", mix);
    if (artifact->tokenizer != NULL)
        cJSON_AddStringToObject(json, "tokenizer", qref_tokenizer_kind_name(qref_tokenizer_kind_of(artifact->tokenizer)));
}

bool qc_structure_check(const qc_model *artifact, qc_report *report)
{
    if (artifact->kind == QC_MODEL_GGUF)
        return structure_check_gguf(artifact, report);
    const qref_llama_config *config = &artifact->config;
    structure_tally tally = {.report = report};
    if (!check_layer_count(artifact, report))
        return false;

    check_dense(&tally, artifact, "model.embed_tokens.weight", config->vocab_size, config->hidden_size);
    check_dense(&tally, artifact, "model.norm.weight", config->hidden_size, 1);
    if (!config->tie_word_embeddings)
        check_dense(&tally, artifact, "lm_head.weight", config->vocab_size, config->hidden_size);

    for (int layer = 0; layer < config->num_hidden_layers; layer++) {
        char name[256];
        qref_llama_layer_tensor_name(name, sizeof name, layer, "input_layernorm.weight");
        check_dense(&tally, artifact, name, config->hidden_size, 1);
        qref_llama_layer_tensor_name(name, sizeof name, layer, "post_attention_layernorm.weight");
        check_dense(&tally, artifact, name, config->hidden_size, 1);
        for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT; k++) {
            int64_t rows, cols;
            qref_llama_linear_shape(config, k, &rows, &cols);
            qref_llama_layer_tensor_name(name, sizeof name, layer, qref_llama_linear_names[k]);
            check_linear(&tally, artifact, name, rows, cols);
        }
    }

    if (tally.problems > STRUCTURE_MAX_LISTED)
        qc_report_add_check(report, "structure.more", QC_VERDICT_ERROR, "%d further structure problems not listed",
                            tally.problems - STRUCTURE_MAX_LISTED)->error_status = QREF_ERR_INVALID;
    if (tally.problems > 0)
        return false;
    report_unexpected_tensors(artifact, report);

    if (artifact->quantized)
        qc_report_add_check(report, "structure", QC_VERDICT_PASS,
                            "%d linears in %d layers are GPTQ %d-bit, group size %ld, %s, format %s: shapes, "
                            "zero points, finite positive scales and g_idx are valid; embeddings and norms present",
                            tally.linears, config->num_hidden_layers, artifact->gptq.bits,
                            artifact->gptq.group_size, artifact->gptq.sym ? "symmetric" : "asymmetric",
                            qref_gptq_format_name(artifact->gptq.format));
    else
        qc_report_add_check(report, "structure", QC_VERDICT_PASS,
                            "%d float linears in %d layers, embeddings and norms present with the shapes config.json "
                            "implies", tally.linears, config->num_hidden_layers);
    return true;
}

cJSON *qc_structure_describe(const qc_model *artifact)
{
    const qref_llama_config *c = &artifact->config;
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "family", "llama");
    cJSON_AddNumberToObject(json, "layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(json, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(json, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(json, "attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(json, "key_value_heads", c->num_key_value_heads);
    cJSON_AddNumberToObject(json, "vocab_size", c->vocab_size);
    if (artifact->kind == QC_MODEL_GGUF) {
        describe_gguf(artifact, json);
    } else if (artifact->quantized) {
        const qref_gptq_config *q = &artifact->gptq;
        cJSON_AddStringToObject(json, "format", "gptq");
        cJSON_AddStringToObject(json, "method", q->algorithm[0] ? q->algorithm : "gptq");
        cJSON_AddNumberToObject(json, "bits", q->bits);
        cJSON_AddNumberToObject(json, "group_size", (double)q->group_size);
        cJSON_AddBoolToObject(json, "sym", q->sym);
        cJSON_AddBoolToObject(json, "desc_act", q->desc_act);
        cJSON_AddStringToObject(json, "checkpoint_format", qref_gptq_format_name(q->format));
        cJSON_AddStringToObject(json, "quantizer", q->quantizer);
        cJSON_AddStringToObject(json, "config_source", q->source);
    } else {
        cJSON_AddStringToObject(json, "format", "dense");
        cJSON_AddStringToObject(json, "method", "fp");
        cJSON_AddStringToObject(json, "torch_dtype", c->torch_dtype);
    }
    return json;
}

/* ---- comparison with the reference ------------------------------------------------------ */

static bool configs_match(const qref_llama_config *a, const qref_llama_config *b, char *message, size_t size)
{
    const struct {
        const char *key;
        int artifact, reference;
    } fields[] = {
        {"vocab_size", a->vocab_size, b->vocab_size},
        {"hidden_size", a->hidden_size, b->hidden_size},
        {"intermediate_size", a->intermediate_size, b->intermediate_size},
        {"num_hidden_layers", a->num_hidden_layers, b->num_hidden_layers},
        {"num_attention_heads", a->num_attention_heads, b->num_attention_heads},
        {"num_key_value_heads", a->num_key_value_heads, b->num_key_value_heads},
        {"head_dim", a->head_dim, b->head_dim},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].artifact != fields[i].reference) {
            snprintf(message, size, "config.json: %s is %d in the artifact, expected %d as in the reference",
                     fields[i].key, fields[i].artifact, fields[i].reference);
            return false;
        }
    }
    return true;
}

/* Compares the artifact's RTN codes of one linear with a fresh quantization of the reference weight. */
static qref_status compare_rtn_codes(const qc_model *artifact, const char *module, const float *reference_weight,
                                     int64_t rows, int64_t cols, char *mismatch, size_t size, qref_error *err)
{
    mismatch[0] = '\0';
    qref_gptq_linear linear = gptq_linear_of(artifact, module, rows, cols);
    qref_gptq_codes codes = {0};
    qref_status status = qref_gptq_unpack(&linear, &artifact->gptq, &codes, err);
    if (status != QREF_OK)
        return status;
    qref_rtn_config rtn = {.bits = artifact->gptq.bits, .group_size = artifact->gptq.group_size,
                           .sym = artifact->gptq.sym};
    qref_rtn_result fresh = {0};
    status = qref_rtn_quantize(module, reference_weight, (size_t)rows, (size_t)cols, &rtn, &fresh, err);
    if (status == QREF_OK && (fresh.groups != (size_t)codes.groups || codes.g_idx != NULL)) {
        for (int64_t i = 0; codes.g_idx != NULL && i < cols; i++)
            if (codes.g_idx[i] != i / codes.group_size) {
                snprintf(mismatch, size, "%s: g_idx[%lld] is %d, expected %lld for round-to-nearest groups",
                         module, (long long)i, codes.g_idx[i], (long long)(i / codes.group_size));
                break;
            }
        if (mismatch[0] == '\0' && fresh.groups != (size_t)codes.groups)
            snprintf(mismatch, size, "%s: %lld groups per row, expected %zu", module, (long long)codes.groups,
                     fresh.groups);
    }
    for (int64_t o = 0; status == QREF_OK && mismatch[0] == '\0' && o < rows; o++) {
        for (size_t g = 0; g < fresh.groups && mismatch[0] == '\0'; g++) {
            size_t k = (size_t)o * fresh.groups + g;
            float stored = codes.scales[k];
            float expected = qref_f16_to_f32(qref_f32_to_f16(fresh.scales[k]));
            if (codes.scale_dtype == QREF_DTYPE_F32)
                expected = fresh.scales[k];
            if (codes.zeros[k] != fresh.zeros[k])
                snprintf(mismatch, size, "%s: zero point [%lld][%zu] is %u, expected %u", module, (long long)o, g,
                         codes.zeros[k], fresh.zeros[k]);
            else if (memcmp(&stored, &expected, sizeof stored) != 0)
                snprintf(mismatch, size, "%s: scale [%lld][%zu] is %.9g, expected %.9g", module, (long long)o, g,
                         stored, expected);
        }
        for (int64_t i = 0; mismatch[0] == '\0' && i < cols; i++) {
            size_t k = (size_t)o * (size_t)cols + (size_t)i;
            if (codes.codes[k] != fresh.codes[k])
                snprintf(mismatch, size, "%s: code [%lld][%lld] is %u, expected %u", module, (long long)o,
                         (long long)i, codes.codes[k], fresh.codes[k]);
        }
    }
    qref_rtn_result_free(&fresh);
    qref_gptq_codes_free(&codes);
    return status;
}

/*
 * Largest relative Frobenius error ||W' - W|| / ||W|| accepted for one linear of a b-bit
 * artifact. Min-max b-bit quantization of a row or group with range R leaves a uniform error
 * of RMS R / ((2^b - 1) sqrt(12)); for 4096 Gaussian weights R is about 8.2 sigma, giving
 * 2.37 / (2^b - 1) of the weights' RMS. The limit is three times that, because outlier
 * channels widen R and GPTQ trades weight error for output error, capped at 1.0, the error of
 * setting every weight to zero. A 16- or 32-bit artifact may differ by bf16 rounding
 * (2^-9 relative per weight) and is held to 0.01.
 */
static double weight_error_limit(int bits)
{
    if (bits >= 16)
        return 0.01;
    double limit = 3.0 * 2.37 / (double)((1 << bits) - 1);
    return limit < 1.0 ? limit : 1.0;
}

/*
 * Largest relative Frobenius error accepted for one linear stored as a ggml type. ggml scales
 * blocks of 32 values (16 or 32 inside the 256-value K-quant super-blocks), and the largest
 * magnitude among 32 Gaussian weights is about 2.2 sigma, so a block's range is about 4.4
 * sigma. A b-bit uniform code over that range leaves an error of RMS 4.4 / ((2^b - 1) sqrt(12))
 * = 1.27 / (2^b - 1) of the weights' RMS. As for GPTQ the limit is three times that, capped at
 * 1.0. IQ4_NL's 16 non-uniform levels count as 4 bits. F32, F16 and BF16 are held to 0.01, the
 * limit of 16-bit artifacts above.
 */
static double ggml_weight_error_limit(uint32_t type)
{
    int bits;
    switch (type) {
    case QREF_GGML_TYPE_Q2_K: bits = 2; break;
    case QREF_GGML_TYPE_Q3_K: bits = 3; break;
    case QREF_GGML_TYPE_Q4_0: case QREF_GGML_TYPE_Q4_1: case QREF_GGML_TYPE_Q4_K: case QREF_GGML_TYPE_IQ4_NL:
        bits = 4;
        break;
    case QREF_GGML_TYPE_Q5_0: case QREF_GGML_TYPE_Q5_1: case QREF_GGML_TYPE_Q5_K: bits = 5; break;
    case QREF_GGML_TYPE_Q6_K: bits = 6; break;
    case QREF_GGML_TYPE_Q8_0: bits = 8; break;
    default: return 0.01;
    }
    double limit = 3.0 * 1.27 / (double)((1 << bits) - 1);
    return limit < 1.0 ? limit : 1.0;
}

/* GGUF names of the seven linears, in the order of qref_llama_linear_names. */
static const char *const gguf_linear_names[QREF_LLAMA_LINEAR_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};

bool qc_structure_compare_reference(const qc_model *artifact, const qc_model *reference, qc_report *report)
{
    char message[QREF_ERROR_MESSAGE_MAX];
    if (!configs_match(&artifact->config, &reference->config, message, sizeof message)) {
        qc_report_add_check(report, "reference.config", QC_VERDICT_FAIL,
                            "%s; the artifact was not made from this reference", message);
        return false;
    }
    qc_report_add_check(report, "reference.config", QC_VERDICT_PASS,
                        "artifact and reference configs describe the same architecture");

    const qref_llama_config *config = &artifact->config;
    bool rtn = artifact->quantized && strcmp(artifact->gptq.algorithm, "rtn") == 0;
    cJSON *layers = cJSON_CreateArray();
    char rtn_mismatch[QREF_ERROR_MESSAGE_MAX] = "";
    qref_error err = {0};
    qref_status status = QREF_OK;
    bool gguf = artifact->kind == QC_MODEL_GGUF;
    int bits = artifact->quantized ? artifact->gptq.bits : 16;
    double worst_error = 0.0, worst_limit = weight_error_limit(bits), worst_ratio = 0.0;
    char worst_linear[256] = "", worst_type[16] = "";

    for (int layer = 0; layer < config->num_hidden_layers && status == QREF_OK; layer++) {
        for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT && status == QREF_OK; k++) {
            int64_t rows, cols;
            qref_llama_linear_shape(config, k, &rows, &cols);
            char module[256], name[300];
            qref_llama_layer_tensor_name(module, sizeof module, layer, qref_llama_linear_names[k]);
            snprintf(name, sizeof name, "%s.weight", module);
            size_t count = (size_t)(rows * cols);
            float *ref = malloc(count * sizeof(float));
            float *art = malloc(count * sizeof(float));
            if (ref == NULL || art == NULL)
                status = qref_error_set(&err, QREF_ERR_NOMEM, "%s: cannot allocate %zu floats", module, count);
            if (status == QREF_OK)
                status = qref_weights_load(&reference->weights, name, rows, cols, ref, &err);
            if (status == QREF_OK)
                status = qref_weights_load(&artifact->weights, name, rows, cols, art, &err);

            /* a GGUF linear's limit follows its stored type */
            double limit = weight_error_limit(bits);
            const char *type_name = NULL;
            if (gguf) {
                char gguf_name[64];
                snprintf(gguf_name, sizeof gguf_name, "blk.%d.%s.weight", layer, gguf_linear_names[k]);
                const qref_gguf_tensor *tensor = qref_gguf_find_tensor(artifact->gguf, gguf_name);
                if (tensor != NULL) {
                    limit = ggml_weight_error_limit(tensor->type);
                    type_name = qref_ggml_type_name(tensor->type);
                }
            }

            /* relative Frobenius error ||W' - W|| / ||W|| and SQNR = 10 log10(||W||^2 / ||W' - W||^2) */
            if (status == QREF_OK) {
                double signal = 0.0, noise = 0.0;
                for (size_t i = 0; i < count; i++) {
                    double d = (double)art[i] - (double)ref[i];
                    signal += (double)ref[i] * ref[i];
                    noise += d * d;
                }
                double relative = signal > 0.0 ? sqrt(noise / signal) : (noise > 0.0 ? INFINITY : 0.0);
                cJSON *item = cJSON_CreateObject();
                cJSON_AddStringToObject(item, "linear", module);
                if (type_name != NULL)
                    cJSON_AddStringToObject(item, "ggml_type", type_name);
                cJSON_AddNumberToObject(item, "relative_frobenius_error", relative);
                cJSON_AddNumberToObject(item, "limit", limit);
                if (noise > 0.0)
                    cJSON_AddNumberToObject(item, "sqnr_db", 10.0 * log10(signal / noise));
                else
                    cJSON_AddNullToObject(item, "sqnr_db");
                cJSON_AddItemToArray(layers, item);
                /* the worst linear is the one closest to (or furthest past) its own limit */
                double ratio = isnan(relative) ? INFINITY : relative / limit;
                if (!(ratio <= worst_ratio) || worst_linear[0] == '\0') {
                    worst_ratio = ratio;
                    worst_error = isnan(relative) ? INFINITY : relative;
                    worst_limit = limit;
                    snprintf(worst_linear, sizeof worst_linear, "%s", module);
                    snprintf(worst_type, sizeof worst_type, "%s", type_name != NULL ? type_name : "");
                }
            }
            if (status == QREF_OK && rtn && rtn_mismatch[0] == '\0' && artifact->quantized)
                status = compare_rtn_codes(artifact, module, ref, rows, cols, rtn_mismatch, sizeof rtn_mismatch,
                                           &err);
            free(ref);
            free(art);
        }
    }
    cJSON_AddItemToObject(report->metrics, "weight_error", layers);
    if (status != QREF_OK) {
        qc_report_add_error(report, "reference.weights", &err);
        return false;
    }
    if (gguf) {
        if (!(worst_error <= worst_limit)) {
            qc_report_add_check(report, "reference.weights", QC_VERDICT_FAIL,
                                "%s (%s): relative Frobenius error %.4g against the reference exceeds %.3g, the "
                                "limit for %s weights; the artifact was not made from this reference, or its "
                                "weights are damaged (per-linear values in metrics.weight_error)",
                                worst_linear, worst_type, worst_error, worst_limit, worst_type);
            return false;
        }
        qc_report_add_check(report, "reference.weights", QC_VERDICT_PASS,
                            "every linear is within the relative Frobenius error limit of its ggml type against "
                            "the reference; closest to its limit: %s (%s) with %.4g of %.3g (per-linear values in "
                            "metrics.weight_error)", worst_linear, worst_type, worst_error, worst_limit);
        return true;
    }
    if (!(worst_error <= worst_limit)) {
        qc_report_add_check(report, "reference.weights", QC_VERDICT_FAIL,
                            "%s: relative Frobenius error %.4g against the reference exceeds %.3g, the limit for "
                            "%d-bit weights; the artifact was not made from this reference, or its weights are "
                            "damaged (per-linear values in metrics.weight_error)",
                            worst_linear, worst_error, worst_limit, bits);
        return false;
    }
    qc_report_add_check(report, "reference.weights", QC_VERDICT_PASS,
                        "every linear is within the %d-bit limit of %.3g relative Frobenius error against the "
                        "reference; worst %.4g in %s (per-linear values in metrics.weight_error)",
                        bits, worst_limit, worst_error, worst_linear);
    if (rtn) {
        if (rtn_mismatch[0] != '\0') {
            qc_report_add_check(report, "rtn.codes", QC_VERDICT_FAIL,
                                "the artifact declares round-to-nearest codes but they differ from a fresh "
                                "reference quantization: %s", rtn_mismatch);
            return false;
        }
        qc_report_add_check(report, "rtn.codes", QC_VERDICT_PASS,
                            "codes, zero points and scales of every linear equal a fresh round-to-nearest "
                            "quantization of the reference (%d-bit, group size %ld, %s)",
                            artifact->gptq.bits, artifact->gptq.group_size,
                            artifact->gptq.sym ? "symmetric" : "asymmetric");
    }
    return true;
}
