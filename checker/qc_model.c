#include "qc_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/qref_json.h"

/* Files a lone .safetensors file reads from its folder, in the order of qc_model.side_files. */
static const char *const side_file_names[QC_MODEL_SIDE_FILE_COUNT] = {
    "config.json",    "quantize_config.json",  "quant_config.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
};

/* A config or tokenizer file of the model: from the snapshot, else from the lone file's folder. */
static const qref_blob *model_find_file(const qc_model *model, const char *name)
{
    const qref_blob *blob = qref_snapshot_find_file(model->snapshot, name);
    if (blob != NULL)
        return blob;
    for (int i = 0; i < QC_MODEL_SIDE_FILE_COUNT; i++)
        if (strcmp(side_file_names[i], name) == 0 && model->side_files[i].data != NULL)
            return &model->side_files[i];
    return NULL;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * Maps the config and tokenizer files that sit beside a lone .safetensors file and that the
 * snapshot (which holds only the weights file) lacks.
 */
static qref_status map_side_files(qc_model *model, qref_error *err)
{
    struct stat st;
    if (!has_suffix(model->path, ".safetensors") || stat(model->path, &st) != 0 || !S_ISREG(st.st_mode))
        return QREF_OK;
    const char *slash = strrchr(model->path, '/');
    int folder_length = slash == NULL ? 1 : (slash == model->path ? 1 : (int)(slash - model->path));
    const char *folder = slash == NULL ? "." : model->path;
    for (int i = 0; i < QC_MODEL_SIDE_FILE_COUNT; i++) {
        char path[4096];
        int n = snprintf(path, sizeof path, "%.*s/%s", folder_length, folder, side_file_names[i]);
        if (n < 0 || (size_t)n >= sizeof path)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: path too long", model->path);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        qref_status status = qref_blob_map_file(path, &model->side_files[i], err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/*
 * Picks the quantization codec the snapshot declares (quantize_config.json, quant_config.json
 * or config.json's quantization_config) and parses its config.
 */
static qref_status model_read_quantization(qc_model *model, const qref_blob *config_json, qref_error *err)
{
    const qref_blob *quantize_json = model_find_file(model, "quantize_config.json");
    const char *quantize_name = "quantize_config.json";
    if (quantize_json == NULL) {
        quantize_json = model_find_file(model, "quant_config.json");
        quantize_name = "quant_config.json";
    }
    cJSON *config = NULL;
    qref_status status = qref_json_parse("config.json", (const char *)config_json->data, config_json->size,
                                         QREF_JSON_MAX_DEPTH, &config, err);
    if (status != QREF_OK)
        return status;
    qref_codec_input input = {
        .config_display = "config.json",
        .config = config,
        .config_text = (const char *)config_json->data,
        .config_length = config_json->size,
        .quantize_display = quantize_json != NULL ? quantize_name : NULL,
        .quantize_text = quantize_json != NULL ? (const char *)quantize_json->data : NULL,
        .quantize_length = quantize_json != NULL ? quantize_json->size : 0,
        .tensors = qref_snapshot_tensors(model->snapshot),
    };
    status = qref_codec_detect(&input, &model->codec, &model->codec_config, err);
    cJSON_Delete(config);
    if (status != QREF_OK || model->codec == NULL)
        return status;
    model->quantized = true;
    if (strcmp(model->codec->name, "gptq") == 0)
        model->gptq = *(const qref_gptq_config *)model->codec_config;
    return QREF_OK;
}

/* Keeps a tokenizer that is not supported as a reason for qc_model_require_tokenizer. */
static qref_status keep_unsupported_tokenizer(qc_model *model, qref_status status, qref_error *err)
{
    if (status != QREF_ERR_UNSUPPORTED)
        return status;
    /* only commands that encode text need the tokenizer */
    model->tokenizer_unsupported = strdup(err->message);
    qref_error_clear(err);
    if (model->tokenizer_unsupported == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory");
    return QREF_OK;
}

bool qc_model_is_gguf_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return false;
    char magic[4] = {0};
    size_t n = fread(magic, 1, sizeof magic, file);
    fclose(file);
    return n == sizeof magic && memcmp(magic, QREF_GGUF_MAGIC, sizeof magic) == 0;
}

static qref_status open_gguf(const char *path, qc_model *model, qref_error *err)
{
    model->kind = QC_MODEL_GGUF;
    model->gguf = calloc(1, sizeof *model->gguf);
    if (model->gguf == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    qref_status status = qref_gguf_open(path, model->gguf, err);
    if (status != QREF_OK) {
        free(model->gguf);
        model->gguf = NULL;
        return status;
    }
    status = qref_gguf_model_init(model->gguf, &model->gguf_model, err);
    if (status != QREF_OK)
        return status;
    model->config = model->gguf_model.config;
    status = keep_unsupported_tokenizer(model, qref_tokenizer_load_gguf(model->gguf, path, &model->tokenizer, err),
                                        err);
    if (status != QREF_OK)
        return status;
    qref_gguf_model_provider(&model->gguf_model, &model->weights);
    return QREF_OK;
}

static qref_status open_snapshot(const char *path, qc_model *model, qref_error *err)
{
    model->kind = QC_MODEL_SNAPSHOT;
    qref_status status = qref_snapshot_open(path, &model->snapshot, err);
    if (status == QREF_OK && qref_snapshot_find_file(model->snapshot, "config.json") == NULL)
        status = map_side_files(model, err);
    if (status != QREF_OK)
        return status;

    const qref_blob *config_json = model_find_file(model, "config.json");
    if (config_json == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: config.json not found (a Hugging Face snapshot needs one; "
                              "for a single .safetensors file it must sit in the same folder)", path);
    status = qref_llama_config_parse("config.json", (const char *)config_json->data, config_json->size,
                                     &model->config, err);
    if (status == QREF_OK)
        status = model_read_quantization(model, config_json, err);
    if (status != QREF_OK)
        return qref_error_prefix(err, "%s: ", path);

    qref_tokenizer_files files = {
        .tokenizer_json = model_find_file(model, "tokenizer.json"),
        .tokenizer_config_json = model_find_file(model, "tokenizer_config.json"),
        .tokenizer_model = model_find_file(model, "tokenizer.model"),
    };
    status = keep_unsupported_tokenizer(model, qref_tokenizer_load_snapshot_files(&files, &model->tokenizer, err),
                                        err);
    if (status != QREF_OK)
        return qref_error_prefix(err, "%s: ", path);

    if (model->codec == NULL && (model->fakequant = calloc(1, sizeof *model->fakequant)) == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    model->tensor_weights.tensors = qref_snapshot_tensors(model->snapshot);
    model->tensor_weights.codec = model->codec;
    model->tensor_weights.codec_config = model->codec_config;
    qref_tensor_weights_provider(&model->tensor_weights, &model->weights);
    return QREF_OK;
}

qref_status qc_model_open(const char *path, qc_model *model, qref_error *err)
{
    memset(model, 0, sizeof *model);
    model->path = path;
    qref_status status = qc_model_is_gguf_file(path) ? open_gguf(path, model, err) : open_snapshot(path, model, err);
    if (status != QREF_OK)
        qc_model_close(model);
    return status;
}

qref_status qc_model_require_tokenizer(const qc_model *model, qref_error *err)
{
    if (model->tokenizer != NULL)
        return QREF_OK;
    if (model->tokenizer_unsupported != NULL)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s", model->path, model->tokenizer_unsupported);
    if (model->kind == QC_MODEL_GGUF)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: no tokenizer.ggml.model metadata; pass token ids instead "
                              "of text", model->path);
    return qref_error_set(err, QREF_ERR_INVALID, "%s: tokenizer.json and tokenizer.model not found; pass token ids "
                          "instead of text, or use a snapshot with a tokenizer", model->path);
}

qref_status qc_model_attach_adapter(qc_model *model, const char *dir, qref_findings *findings, qref_error *err)
{
    size_t first = findings->count, errors_before = qref_findings_count(findings, QREF_SEVERITY_ERROR);
    qref_lora_adapter *adapter = NULL;
    qref_status status = qref_lora_open(dir, &adapter, findings, err);
    if (status != QREF_OK)
        return status;
    qref_lora_base_module *modules = NULL;
    size_t count = 0;
    status = qref_lora_llama_modules(&model->config, &modules, &count, err);
    if (status != QREF_OK) {
        qref_lora_free(adapter);
        return status;
    }
    qref_lora_bind(adapter, modules, count, findings);
    free(modules);
    model->adapter = adapter;
    if (!qref_lora_usable(adapter)) {
        size_t errors = qref_findings_count(findings, QREF_SEVERITY_ERROR) - errors_before;
        for (size_t i = first; i < findings->count; i++) {
            const qref_finding *finding = &findings->items[i];
            if (finding->severity != QREF_SEVERITY_ERROR)
                continue;
            bool unsupported = strcmp(finding->id, "lora.unsupported") == 0 || strcmp(finding->id, "lora.peft_type") == 0;
            return qref_error_set(err, unsupported ? QREF_ERR_UNSUPPORTED : QREF_ERR_INVALID, "%s (%s; the LoRA "
                                  "adapter has %zu error%s)", finding->message, finding->id, errors, errors == 1 ? "" : "s");
        }
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the LoRA adapter cannot be merged", dir);
    }
    model->lora_weights.adapter = adapter;
    model->lora_weights.base = model->weights;
    qref_lora_weights_provider(&model->lora_weights, &model->weights);
    return QREF_OK;
}

qref_status qc_model_use_adapter(qc_model *model, const char *dir, qref_error *err)
{
    qref_findings findings = {0};
    qref_status status = qc_model_attach_adapter(model, dir, &findings, err);
    for (size_t i = 0; i < findings.count; i++)
        if (findings.items[i].severity == QREF_SEVERITY_WARNING)
            fprintf(stderr, "qconform: warning: %s: %s\n", findings.items[i].id, findings.items[i].message);
    qref_findings_free(&findings);
    return status;
}

void qc_model_close(qc_model *model)
{
    qref_lora_free(model->adapter);
    if (model->fakequant != NULL)
        qref_findings_free(&model->fakequant->findings);
    free(model->fakequant);
    if (model->codec != NULL && model->codec_config != NULL)
        model->codec->config_free(model->codec_config);
    qref_tokenizer_free(model->tokenizer);
    free(model->tokenizer_unsupported);
    qref_snapshot_free(model->snapshot);
    if (model->gguf != NULL) {
        qref_gguf_free(model->gguf);
        free(model->gguf);
    }
    for (int i = 0; i < QC_MODEL_SIDE_FILE_COUNT; i++)
        qref_blob_free(&model->side_files[i]);
    memset(model, 0, sizeof *model);
}
