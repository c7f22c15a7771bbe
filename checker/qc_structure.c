#include "qc_structure.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_ggml.h"
#include "io/qref_json.h"
#include "model/qref_gguf_model.h"
#include "model/qref_llama.h"
#include "quant/qref_rtn.h"

/* Structure problems are reported one by one up to this count, then summarized. */
#define STRUCTURE_MAX_LISTED 20

typedef struct structure_tally {
    qc_report *report;
    int problems;
    int linears;
    int quantized;
    char **quantized_modules;       /* names of the linears stored in the codec's layout */
    size_t module_count;
} structure_tally;

static void tally_free_modules(structure_tally *tally)
{
    for (size_t i = 0; i < tally->module_count; i++)
        free(tally->quantized_modules[i]);
    free(tally->quantized_modules);
    tally->quantized_modules = NULL;
    tally->module_count = 0;
}

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

/*
 * Records a codec's findings: ERROR as an ERROR check (invalid input, counted as a problem),
 * WARNING as a WARN check, INFO as a PASS check; each check's id is the finding's id.
 */
static void tally_findings(structure_tally *tally, const qref_findings *findings)
{
    for (size_t i = 0; i < findings->count; i++) {
        const qref_finding *finding = &findings->items[i];
        if (finding->severity == QREF_SEVERITY_ERROR) {
            qref_error err = {0};
            qref_error_set(&err, QREF_ERR_INVALID, "%s", finding->message);
            tally_problem(tally, finding->id, &err);
        } else {
            qc_report_add_check(tally->report, finding->id,
                                finding->severity == QREF_SEVERITY_WARNING ? QC_VERDICT_WARN : QC_VERDICT_PASS, "%s",
                                finding->message);
        }
    }
    if (findings->dropped > 0)
        qc_report_add_check(tally->report, "structure.memory", QC_VERDICT_ERROR, "%zu findings were lost for lack "
                            "of memory", findings->dropped)->error_status = QREF_ERR_NOMEM;
}

int qc_structure_report_findings(qc_report *report, const qref_findings *findings)
{
    structure_tally tally = {.report = report};
    tally_findings(&tally, findings);
    return tally.problems;
}

/* Checks one linear: in the codec's layout when the codec says it is stored so, else a float weight. */
static void check_linear(structure_tally *tally, const qc_model *model, const char *module, int64_t rows,
                         int64_t cols)
{
    tally->linears++;
    const qref_tensor_set *tensors = model->tensor_weights.tensors;
    if (model->codec != NULL && model->codec->linear_stored(model->codec_config, tensors, module)) {
        char **grown = realloc(tally->quantized_modules, (tally->module_count + 1) * sizeof *grown);
        char *copy = strdup(module);
        if (grown != NULL)
            tally->quantized_modules = grown;
        if (grown != NULL && copy != NULL)
            grown[tally->module_count++] = copy;
        else
            free(copy);
        tally->quantized++;
        qref_findings findings = {0};
        model->codec->linear_check(model->codec_config, tensors, module, rows, cols, &findings);
        tally_findings(tally, &findings);
        qref_findings_free(&findings);
        return;
    }
    qref_error err = {0};
    char name[512];
    snprintf(name, sizeof name, "%s.weight", module);
    const qref_tensor *dense = qref_tensor_set_find(tensors, name);
    if (model->quantized && dense != NULL) {
        char shape[96];
        qref_tensor_shape_string(dense, shape, sizeof shape);
        qref_error_set(&err, QREF_ERR_INVALID, "%s: linear \"%s\" is stored unquantized (%s, %s %s), expected the %s "
                       "layout because the quantization config declares every linear of every layer quantized",
                       dense->file, module, name, qref_dtype_name(dense->dtype), shape, model->codec->name);
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
/* Returns the number of layers the stored tensors contain: the highest "model.layers.N." index + 1. */
static long stored_layer_count(const qc_model *artifact)
{
    const qref_tensor_set *set = artifact->tensor_weights.tensors;
    long highest = -1;
    for (size_t i = 0; set != NULL && i < set->count; i++) {
        const char *suffix;
        long index = layer_index(set->items[i].name, &suffix);
        if (index > highest)
            highest = index;
    }
    return highest + 1;
}

qref_status qc_structure_require_valid(const qc_model *model, qref_error *err)
{
    qc_report report;
    qc_report_init(&report, "structure");
    qref_status status = QREF_OK;
    if (!qc_structure_check(model, &report)) {
        size_t errors = 0;
        const qc_check *first = NULL;
        for (size_t i = 0; i < report.check_count; i++) {
            const qc_check *check = &report.checks[i];
            if (check->verdict != QC_VERDICT_ERROR && check->verdict != QC_VERDICT_FAIL)
                continue;
            errors++;
            if (first == NULL)
                first = check;
        }
        status = qref_error_set(err, first != NULL && first->error_status != QREF_OK ? first->error_status
                                                                                      : QREF_ERR_INVALID,
                                "%s: %s (%zu structure error%s; qconform inspect lists them)",
                                first != NULL ? first->id : "structure",
                                first != NULL ? first->message : "the structure check failed", errors,
                                errors == 1 ? "" : "s");
    }
    qc_report_free(&report);
    return status;
}

bool qc_structure_layers_consistent(const qc_model *model, char *message, size_t size)
{
    if (model->kind == QC_MODEL_GGUF)
        return true;
    long stored = stored_layer_count(model);
    if (stored == model->config.num_hidden_layers)
        return true;
    snprintf(message, size, "%s: config.json: num_hidden_layers is %d, but the tensors hold %ld layers", model->path,
             model->config.num_hidden_layers, stored);
    return false;
}

static bool check_layer_count(const qc_model *artifact, qc_report *report)
{
    long highest = stored_layer_count(artifact) - 1;
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
        /* any tensor of a linear the codec reads in its own layout (bitsandbytes' weight.absmax, SCB, ...) */
        char module[512];
        size_t module_length = (size_t)(suffix - name) + length;
        if (artifact->codec != NULL && module_length < sizeof module) {
            memcpy(module, name, module_length);
            module[module_length] = '\0';
            if (artifact->codec->linear_stored(artifact->codec_config, artifact->tensor_weights.tensors, module))
                return true;
        }
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
                            "%zu stored tensor%s not read by the LLaMA forward: %s%s", count,
                            count == 1 ? " is" : "s are", listed, count > 5 ? ", ..." : "");
}

/* ---- fake-quantized float snapshots --------------------------------------------------------- */

const qref_fakequant_summary *qc_structure_fakequant(const qc_model *artifact)
{
    qc_fakequant_cache *cache = artifact->fakequant;
    if (cache == NULL)
        return NULL;
    if (cache->computed)
        return &cache->summary;
    cache->computed = true;
    /* a config that claims other layers than are stored is reported by check_layer_count */
    if (stored_layer_count(artifact) != artifact->config.num_hidden_layers)
        return &cache->summary;

    /* the seven linears of every layer, and config.json for what it claims */
    const qref_llama_config *config = &artifact->config;
    size_t count = (size_t)config->num_hidden_layers * QREF_LLAMA_LINEAR_COUNT;
    qref_fakequant_module *modules = calloc(count + 1, sizeof *modules);
    char (*names)[128] = calloc(count + 1, sizeof *names);
    const qref_blob *blob = qref_snapshot_find_file(artifact->snapshot, "config.json");
    if (blob == NULL && artifact->side_files[0].data != NULL)
        blob = &artifact->side_files[0]; /* side_files[0] is the lone file's config.json */
    cJSON *json = NULL;
    qref_error err = {0};
    if (blob != NULL)
        qref_json_parse("config.json", (const char *)blob->data, blob->size, QREF_JSON_MAX_DEPTH, &json, &err);
    if (modules != NULL && names != NULL) {
        size_t n = 0;
        for (int layer = 0; layer < config->num_hidden_layers; layer++) {
            for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT; k++, n++) {
                qref_llama_layer_tensor_name(names[n], sizeof names[n], layer, qref_llama_linear_names[k]);
                modules[n].module = names[n];
                qref_llama_linear_shape(config, k, &modules[n].rows, &modules[n].cols);
            }
        }
        qref_fakequant_analyze_artifact(artifact->tensor_weights.tensors, modules, count, "config.json", json,
                                        &cache->summary, &cache->findings);
    }
    cJSON_Delete(json);
    free(names);
    free(modules);
    return &cache->summary;
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
                            "%zu stored tensor%s not read by the LLaMA forward: %s%s", unexpected,
                            unexpected == 1 ? " is" : "s are", listed, unexpected > 5 ? ", ..." : "");

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

/* Runs the codec's config check with the names of every linear of the model and lm_head. */
static void check_codec_config(const qc_model *artifact, structure_tally *tally)
{
    size_t count = (size_t)artifact->config.num_hidden_layers * QREF_LLAMA_LINEAR_COUNT + 1;
    char (*names)[128] = calloc(count, sizeof *names);
    const char **modules = calloc(count, sizeof *modules);
    qref_findings findings = {0};
    if (names == NULL || modules == NULL) {
        findings.dropped++;
    } else {
        size_t n = 0;
        for (int layer = 0; layer < artifact->config.num_hidden_layers; layer++)
            for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT; k++, n++) {
                qref_llama_layer_tensor_name(names[n], sizeof names[n], layer, qref_llama_linear_names[k]);
                modules[n] = names[n];
            }
        modules[n] = "lm_head"; /* the model always has an lm_head module, tied or not */
        artifact->codec->config_check(artifact->codec_config, modules, count, &findings);
    }
    tally_findings(tally, &findings);
    qref_findings_free(&findings);
    free(modules);
    free(names);
}

bool qc_structure_check(const qc_model *artifact, qc_report *report)
{
    if (artifact->kind == QC_MODEL_GGUF)
        return structure_check_gguf(artifact, report);
    const qref_llama_config *config = &artifact->config;
    structure_tally tally = {.report = report};
    if (!check_layer_count(artifact, report))
        return false;

    /* the quantization config against the model's linears */
    if (artifact->codec != NULL && artifact->codec->config_check != NULL)
        check_codec_config(artifact, &tally);

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
    if (tally.problems > 0) {
        tally_free_modules(&tally);
        return false;
    }
    report_unexpected_tensors(artifact, report);

    /* checks over every quantized linear at once (for example zero-point statistics) */
    if (artifact->codec != NULL && artifact->codec->artifact_check != NULL && tally.quantized > 0) {
        qref_findings findings = {0};
        artifact->codec->artifact_check(artifact->codec_config, artifact->tensor_weights.tensors,
                                        (const char *const *)tally.quantized_modules, tally.module_count, &findings);
        tally_findings(&tally, &findings);
        qref_findings_free(&findings);
    }
    tally_free_modules(&tally);
    if (tally.problems > 0)
        return false;

    /* float linears whose values lie on a quantization grid */
    if (artifact->fakequant != NULL) {
        qc_structure_fakequant(artifact);
        tally_findings(&tally, &artifact->fakequant->findings);
    }

    if (artifact->quantized)
        qc_report_add_check(report, "structure", QC_VERDICT_PASS,
                            "%d of %d linears in %d layers are stored in the %s layout with valid structure; embeddings "
                            "and norms present", tally.quantized, tally.linears, config->num_hidden_layers,
                            artifact->codec->name);
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
        artifact->codec->config_describe(artifact->codec_config, json);
    } else {
        const qref_fakequant_summary *fake = qc_structure_fakequant(artifact);
        cJSON_AddStringToObject(json, "format", "dense");
        cJSON_AddStringToObject(json, "method", fake != NULL && fake->uniform ? "fake-quant" : "fp");
        cJSON_AddStringToObject(json, "torch_dtype", c->torch_dtype);
        if (fake != NULL && fake->uniform) {
            cJSON_AddNumberToObject(json, "bits", fake->bits);
            cJSON_AddNumberToObject(json, "group_size", (double)fake->group_size);
            cJSON_AddNumberToObject(json, "effective_bits", fake->effective_bits);
        }
    }
    if (artifact->adapter != NULL)
        qref_lora_describe(artifact->adapter, cJSON_AddObjectToObject(json, "adapter"));
    return json;
}
