/*
 * qconform verify: the main job.
 *
 *   qconform verify ARTIFACT [--reference REF] [--suite FILE] [--cell ID] [--data PATH]
 *                   [--windows N] [--report FILE] [--junit FILE] [--cache DIR] [--quiet]
 *                   [--adapter DIR]
 *
 * 1. open the artifact (snapshot folder, .safetensors file or archive) and describe it;
 * 2. check its structure and hash every file and tensor into a SHA-256 manifest;
 * 3. with a reference: compare architectures, per-linear weight error, and for
 *    round-to-nearest artifacts the codes against a fresh reference quantization;
 * 4. evaluate each suite cell on its subject (artifact or reference) and compare the value
 *    with the cell's band;
 * 5. print the table, write the JSON and JUnit reports; the exit code is the overall verdict.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "io/qref_json.h"
#include "eval/qref_kld.h"
#include "model/qref_llama.h"
#include "qc_args.h"
#include "qc_commands.h"
#include "qc_eval.h"
#include "qc_manifest.h"
#include "qc_report.h"
#include "qc_reference.h"
#include "qc_structure.h"
#include "qc_suite.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform verify ARTIFACT [options]\n"
            "\n"
            "Checks a model artifact (a Hugging Face snapshot folder, .safetensors file, or .tar,\n"
            ".tar.gz, .zip archive of one, or a GGUF file; full precision, fake-quantized, GPTQ, AWQ,\n"
            "bitsandbytes or compressed-tensors): structure and findings, SHA-256 manifest,\n"
            "comparison with a reference model, and the cells of a suite with their bands.\n"
            "\n"
            "options:\n"
            "  --reference REF  full-precision snapshot the artifact was made from (default: the\n"
            "                   suite's reference)\n"
            "  --suite FILE     suite file: cells to evaluate and their bands\n"
            "  --cell ID        evaluate only this cell of the suite\n"
            "  --data PATH      WikiText-2 wiki.test.raw or wikitext-2-raw-v1.zip (default: the\n"
            "                   suite's dataset)\n"
            "  --windows N      evaluate at most N perplexity windows per model (overrides the suite)\n"
            "  --report FILE    write the JSON report (\"-\" for stdout)\n"
            "  --junit FILE     write a JUnit XML report\n"
            "  --cache DIR      reuse perplexities computed by earlier runs on the same model files,\n"
            "                   dataset file, protocol, window length and count (DIR is created when\n"
            "                   missing; a cache that cannot be written only costs recomputation)\n"
            "  --quiet          do not print the table\n"
            "  --adapter DIR    PEFT LoRA adapter folder (adapter_config.json and\n"
            "                   adapter_model.safetensors): checked against ARTIFACT and merged into\n"
            "                   its linears (W + scaling * B A) for perplexity, KLD and logits;\n"
            "                   --reference compares the base weights under the adapter\n"
            "\n"
            "Exit codes: 0 no FAIL or ERROR, 1 at least one FAIL, 2 usage error, 3 unreadable or\n"
            "invalid input, 4 internal error.\n");
}

/* A model under evaluation with the perplexities computed on it so far. */
typedef struct verify_subject {
    const char *role; /* "artifact" or "reference" */
    qc_model model;
    bool open;
    char manifest_digest[QREF_SHA256_HEX_SIZE]; /* "" when hashing failed */
    struct {
        size_t windows;
        qref_ppl_protocol protocol;
        int seqlen;
        qref_status status;
        qref_error err;
        qc_ppl_outcome outcome;
    } ppl[8];
    size_t ppl_count;
} verify_subject;

/* The comparison of the artifact with the reference over llama.cpp's chunks, for one setting. */
typedef struct verify_kld {
    int n_ctx;
    size_t chunks;
    qref_status status;
    qref_error err;
    qref_kld_result result;
} verify_kld;

typedef struct verify_context {
    verify_subject artifact;
    verify_subject reference;
    const qc_suite *suite;
    const char *data_path;
    const char *cache_dir;        /* NULL: no perplexity cache */
    qref_ppl_protocol protocol;   /* the suite's; a cell may override it */
    int seqlen;                   /* the suite's; a cell may override it */
    verify_kld kld[4];
    size_t kld_count;
    size_t windows_override;
    bool structure_ok;
    qc_report *report;
} verify_context;

/* ---- metrics ------------------------------------------------------------------------------ */

/*
 * Path of the cache file for a perplexity: the digest of the model's manifest (which covers
 * its tokenizer), the dataset file's bytes, the protocol, the window length and count, and the
 * tool version. Returns false when the key cannot be formed.
 */
static bool ppl_cache_path(const verify_context *ctx, const verify_subject *subject, qref_ppl_protocol protocol,
                           int seqlen, size_t windows, char *path, size_t size)
{
    if (ctx->cache_dir == NULL || subject->manifest_digest[0] == '\0')
        return false;
    qref_blob data = {0};
    qref_error err = {0};
    char data_digest[QREF_SHA256_HEX_SIZE];
    if (qref_blob_map_file(ctx->data_path, &data, &err) != QREF_OK)
        return false;
    int hashed = qref_sha256_buffer_hex(data.data, data.size, data_digest);
    qref_blob_free(&data);
    if (hashed != 0)
        return false;

    char key_text[512], key[QREF_SHA256_HEX_SIZE];
    snprintf(key_text, sizeof key_text, "qconform %s perplexity\nmodel %s\ndata %s\nprotocol %s\nseqlen %d\nwindows %zu\n",
             QCONFORM_VERSION, subject->manifest_digest, data_digest, qref_ppl_protocol_name(protocol), seqlen,
             windows);
    if (qref_sha256_buffer_hex(key_text, strlen(key_text), key) != 0)
        return false;
    snprintf(path, size, "%s/ppl-%s.json", ctx->cache_dir, key);
    return true;
}

/* Reads a cached outcome; returns false when there is none or it cannot be used. */
static bool ppl_cache_read(const char *path, qc_ppl_outcome *outcome)
{
    char *text = NULL;
    size_t length = 0;
    qref_error err = {0};
    if (qref_file_read_all(path, 1u << 20, &text, &length, &err) != QREF_OK)
        return false;
    cJSON *json = NULL;
    bool ok = qref_json_parse(path, text, length, 8, &json, &err) == QREF_OK && qc_ppl_outcome_from_json(json, outcome);
    cJSON_Delete(json);
    free(text);
    return ok;
}

/* Writes an outcome to the cache; a failure only costs a later recomputation, so it is logged. */
static void ppl_cache_write(const char *path, const qc_ppl_outcome *outcome, const char *data_path)
{
    cJSON *json = qc_ppl_outcome_to_json(outcome, data_path);
    char *text = cJSON_Print(json);
    cJSON_Delete(json);
    qref_error err = {0};
    if (text == NULL || qref_file_write_atomic(path, text, strlen(text), &err) != QREF_OK)
        fprintf(stderr, "qconform: warning: cannot write the perplexity cache: %s\n",
                text == NULL ? "out of memory" : err.message);
    free(text);
}

/* Perplexity of a subject over `windows` windows (0 = all), computed once per setting. */
static qref_status subject_ppl(verify_context *ctx, verify_subject *subject, qref_ppl_protocol protocol, int seqlen,
                               size_t windows, const qc_ppl_outcome **out, qref_error *err)
{
    for (size_t i = 0; i < subject->ppl_count; i++) {
        if (subject->ppl[i].windows == windows && subject->ppl[i].protocol == protocol &&
            subject->ppl[i].seqlen == seqlen) {
            *out = &subject->ppl[i].outcome;
            if (subject->ppl[i].status != QREF_OK)
                *err = subject->ppl[i].err;
            return subject->ppl[i].status;
        }
    }
    if (ctx->data_path == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "no WikiText-2 data: pass --data PATH or a suite that "
                              "names a dataset");
    if (subject->ppl_count == sizeof subject->ppl / sizeof subject->ppl[0])
        return qref_error_set(err, QREF_ERR_INTERNAL, "too many distinct perplexity settings in one run");

    size_t slot = subject->ppl_count++;
    subject->ppl[slot].windows = windows;
    subject->ppl[slot].protocol = protocol;
    subject->ppl[slot].seqlen = seqlen;
    char cache_path[QC_PATH_MAX + 96];
    bool cacheable = ppl_cache_path(ctx, subject, protocol, seqlen, windows, cache_path, sizeof cache_path);
    if (cacheable && ppl_cache_read(cache_path, &subject->ppl[slot].outcome)) {
        fprintf(stderr, "qconform: %s perplexity read from the cache %s\n", subject->role, cache_path);
        subject->ppl[slot].status = QREF_OK;
    } else {
        fprintf(stderr, "qconform: evaluating WikiText-2 perplexity of the %s (%s protocol%s)\n", subject->role,
                qref_ppl_protocol_name(protocol), windows ? ", limited windows" : "");
        qc_ppl_request request = {
            .data_path = ctx->data_path,
            .protocol = protocol,
            .seqlen = seqlen,
            .max_windows = windows,
        };
        subject->ppl[slot].status = qc_eval_wikitext_ppl(&subject->model, &request, &subject->ppl[slot].outcome,
                                                         &subject->ppl[slot].err);
        if (cacheable && subject->ppl[slot].status == QREF_OK)
            ppl_cache_write(cache_path, &subject->ppl[slot].outcome, ctx->data_path);
    }

    *out = &subject->ppl[slot].outcome;
    if (subject->ppl[slot].status != QREF_OK)
        *err = subject->ppl[slot].err;
    else {
        cJSON *metric = qc_ppl_outcome_to_json(&subject->ppl[slot].outcome, ctx->data_path);
        cJSON_AddStringToObject(metric, "model", subject->role);
        if (cacheable)
            cJSON_AddStringToObject(metric, "cache", cache_path);
        cJSON *list = cJSON_GetObjectItemCaseSensitive(ctx->report->metrics, "perplexity");
        if (list == NULL)
            list = cJSON_AddArrayToObject(ctx->report->metrics, "perplexity");
        cJSON_AddItemToArray(list, metric);
    }
    return subject->ppl[slot].status;
}

/* SHA-256 of a file as hex into out; false when it cannot be read. */
static bool file_sha256(const char *path, char out[QREF_SHA256_HEX_SIZE])
{
    qref_blob blob = {0};
    qref_error err = {0};
    if (qref_blob_map_file(path, &blob, &err) != QREF_OK)
        return false;
    int failed = qref_sha256_buffer_hex(blob.data, blob.size, out);
    qref_blob_free(&blob);
    return failed == 0;
}

/*
 * Records one input file of the run with its digest under inputs.NAME, or NAME.2, NAME.3, ...
 * when another file already has that name; a file recorded before is not recorded again.
 */
static void record_input_file(cJSON *inputs, const char *name, const char *path)
{
    char key[96];
    snprintf(key, sizeof key, "%s", name);
    for (int n = 2; cJSON_GetObjectItemCaseSensitive(inputs, key) != NULL; n++) {
        const cJSON *recorded = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(inputs, key), "path");
        if (cJSON_IsString(recorded) && strcmp(recorded->valuestring, path) == 0)
            return;
        snprintf(key, sizeof key, "%s.%d", name, n);
    }
    char digest[QREF_SHA256_HEX_SIZE];
    cJSON *input = cJSON_AddObjectToObject(inputs, key);
    cJSON_AddStringToObject(input, "path", path);
    if (file_sha256(path, digest))
        cJSON_AddStringToObject(input, "sha256", digest);
}

typedef struct golden_compare {
    const float *golden; /* [positions][vocab] */
    int vocab;
    double max_error;
} golden_compare;

static qref_status compare_with_golden(void *ctx, size_t window, int position, int count, const float *logits,
                                       qref_error *err)
{
    (void)window;
    (void)err;
    golden_compare *compare = ctx;
    for (size_t i = 0; i < (size_t)count * (size_t)compare->vocab; i++) {
        double expected = qref_load_f32(compare->golden + (size_t)position * compare->vocab + i);
        double error = fabs((double)logits[i] - expected);
        if (!(error <= compare->max_error)) /* NaN propagates as the largest error */
            compare->max_error = isnan(error) ? INFINITY : error;
    }
    return QREF_OK;
}

/*
 * Largest |logit - golden| over the golden file's token sequence. The golden JSON lists
 * "input_ids", "logits_file" (relative to the JSON) and its [positions, vocab] shape.
 */
static qref_status golden_logits_error(const qc_model *model, const char *golden_path, cJSON *inputs, double *out,
                                       qref_error *err)
{
    char *text = NULL;
    size_t length = 0;
    qref_status status = qref_file_read_all(golden_path, 16u << 20, &text, &length, err);
    if (status != QREF_OK)
        return status;
    cJSON *root = NULL;
    status = qref_json_parse(golden_path, text, length, 8, &root, err);
    free(text);
    if (status != QREF_OK)
        return status;

    int32_t *ids = NULL;
    qref_blob logits = {0};
    const cJSON *input_ids = cJSON_GetObjectItemCaseSensitive(root, "input_ids");
    const char *logits_file = NULL;
    size_t count = cJSON_IsArray(input_ids) ? (size_t)cJSON_GetArraySize(input_ids) : 0;
    if (count == 0 || count > (size_t)model->config.max_position_embeddings) {
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: input_ids: expected 1 to %d token ids", golden_path,
                                model->config.max_position_embeddings);
        goto done;
    }
    if ((status = qref_json_get_string(golden_path, root, "logits_file", true, NULL, &logits_file, err)))
        goto done;
    ids = malloc(count * sizeof *ids);
    if (ids == NULL) {
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu ids", golden_path, count);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        int64_t id;
        char label[64];
        snprintf(label, sizeof label, "input_ids[%zu]", i);
        if ((status = qref_json_item_int(golden_path, label, cJSON_GetArrayItem(input_ids, (int)i), 0,
                                         model->config.vocab_size - 1, &id, err)))
            goto done;
        ids[i] = (int32_t)id;
    }

    /* the logits file sits next to the JSON and holds count x vocab little-endian f32 */
    char logits_path[QC_PATH_MAX];
    const char *slash = strrchr(golden_path, '/');
    snprintf(logits_path, sizeof logits_path, "%.*s%s", slash ? (int)(slash - golden_path + 1) : 0, golden_path,
             logits_file);
    if ((status = qref_blob_map_file(logits_path, &logits, err)))
        goto done;
    record_input_file(inputs, "golden", golden_path);
    record_input_file(inputs, "golden_logits", logits_path);
    size_t expected_size = count * (size_t)model->config.vocab_size * sizeof(float);
    if (logits.size != expected_size) {
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: %zu bytes, expected %zu (%zu positions x %d vocab x "
                                "4-byte f32)", logits_path, logits.size, expected_size, count,
                                model->config.vocab_size);
        goto done;
    }
    golden_compare compare = {.golden = (const float *)logits.data, .vocab = model->config.vocab_size};
    status = qref_llama_forward(&model->config, &model->weights, ids, 1, (int)count, NULL, compare_with_golden,
                                &compare, err);
    *out = compare.max_error;

done:
    qref_blob_free(&logits);
    free(ids);
    cJSON_Delete(root);
    return status;
}

/* The protocol, window length and window count a cell evaluates with. */
static void cell_settings(const verify_context *ctx, const qc_suite_cell *cell, qref_ppl_protocol *protocol,
                          int *seqlen, size_t *windows)
{
    *protocol = ctx->protocol;
    if (cell->protocol[0] != '\0')
        qc_eval_parse_protocol(cell->protocol, protocol);
    *seqlen = cell->seqlen ? cell->seqlen : ctx->seqlen;
    *windows = ctx->windows_override ? ctx->windows_override : (cell->windows ? cell->windows : ctx->suite->windows);
}

/*
 * KL divergence of the artifact against the reference over llama.cpp's chunks of n_ctx tokens
 * (the reference's tokenization of the llama.cpp text, BOS at each chunk's start), computed
 * once per setting.
 */
static qref_status artifact_kld(verify_context *ctx, int n_ctx, size_t chunks, const qref_kld_result **out,
                                qref_error *err)
{
    for (size_t i = 0; i < ctx->kld_count; i++) {
        if (ctx->kld[i].n_ctx == n_ctx && ctx->kld[i].chunks == chunks) {
            *out = &ctx->kld[i].result;
            if (ctx->kld[i].status != QREF_OK)
                *err = ctx->kld[i].err;
            return ctx->kld[i].status;
        }
    }
    if (ctx->data_path == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "no WikiText-2 data: pass --data PATH or a suite that "
                              "names a dataset");
    if (ctx->kld_count == sizeof ctx->kld / sizeof ctx->kld[0])
        return qref_error_set(err, QREF_ERR_INTERNAL, "too many distinct KL-divergence settings in one run");

    verify_kld *entry = &ctx->kld[ctx->kld_count++];
    entry->n_ctx = n_ctx;
    entry->chunks = chunks;
    fprintf(stderr, "qconform: evaluating the KL divergence of the artifact from the reference (%d-token chunks)\n",
            n_ctx);
    qc_wikitext_tokens tokens = {0};
    entry->status = qc_eval_wikitext_tokenize(&ctx->reference.model, ctx->data_path, QREF_PPL_PROTOCOL_LLAMACPP,
                                              &tokens, &entry->err);
    if (entry->status == QREF_OK) {
        qref_kld_options options = {.n_ctx = n_ctx, .max_chunks = chunks, .bos_id = tokens.bos_id};
        entry->status = qref_kld_run(&ctx->reference.model.config, &ctx->reference.model.weights,
                                     &ctx->artifact.model.config, &ctx->artifact.model.weights, tokens.ids,
                                     tokens.count, &options, NULL, &entry->result, &entry->err);
    }
    qc_wikitext_tokens_free(&tokens);
    *out = &entry->result;
    if (entry->status != QREF_OK) {
        *err = entry->err;
        return entry->status;
    }

    const qref_kld_stats *stats = &entry->result.stats;
    cJSON *metric = cJSON_CreateObject();
    cJSON_AddStringToObject(metric, "protocol", "llama.cpp KL divergence: reference and artifact on the same chunks");
    cJSON_AddNumberToObject(metric, "n_ctx", n_ctx);
    cJSON_AddNumberToObject(metric, "chunks", (double)entry->result.chunks);
    cJSON_AddNumberToObject(metric, "tokens_scored", (double)entry->result.token_count);
    cJSON_AddStringToObject(metric, "tokens_sha256", entry->result.tokens_sha256);
    cJSON_AddNumberToObject(metric, "kld_mean", stats->kld.value);
    cJSON_AddNumberToObject(metric, "kld_mean_uncertainty", stats->kld.uncertainty);
    cJSON_AddNumberToObject(metric, "ppl_artifact", stats->ppl.value);
    cJSON_AddNumberToObject(metric, "ppl_reference", stats->ppl_base_exact.value);
    cJSON_AddNumberToObject(metric, "ppl_ratio", stats->ppl_ratio_exact.value);
    cJSON_AddNumberToObject(metric, "ppl_ratio_uncertainty", stats->ppl_ratio_exact.uncertainty);
    cJSON_AddNumberToObject(metric, "same_top", stats->same_top.value);
    cJSON *list = cJSON_GetObjectItemCaseSensitive(ctx->report->metrics, "kl_divergence");
    if (list == NULL)
        list = cJSON_AddArrayToObject(ctx->report->metrics, "kl_divergence");
    cJSON_AddItemToArray(list, metric);
    return QREF_OK;
}

static qref_status subject_metric(verify_context *ctx, verify_subject *subject, const qc_suite_cell *cell,
                                  double *value, double *value_stderr, qref_error *err)
{
    *value_stderr = 0.0;
    if (cell->metric == QC_METRIC_LOGITS_MAX_ABS_ERROR)
        return golden_logits_error(&subject->model, cell->golden, ctx->report->inputs, value, err);

    qref_ppl_protocol protocol;
    int seqlen;
    size_t windows;
    cell_settings(ctx, cell, &protocol, &seqlen, &windows);
    if (cell->metric == QC_METRIC_KLD || cell->metric == QC_METRIC_PPL_RATIO) {
        const qref_kld_result *result = NULL;
        qref_status status = artifact_kld(ctx, seqlen ? seqlen : 512, windows, &result, err);
        if (status != QREF_OK)
            return status;
        /* the ratio from the reference's unencoded logits: the 16-bit rows floor rare targets' NLL */
        const qref_estimate *estimate = cell->metric == QC_METRIC_KLD ? &result->stats.kld
                                                                       : &result->stats.ppl_ratio_exact;
        *value = estimate->value;
        *value_stderr = estimate->uncertainty;
        return QREF_OK;
    }

    const qc_ppl_outcome *outcome = NULL;
    qref_status status = subject_ppl(ctx, subject, protocol, seqlen, windows, &outcome, err);
    if (status == QREF_OK) {
        *value = outcome->result.ppl;
        *value_stderr = outcome->result.ppl_stderr;
    }
    return status;
}

/* ---- cells -------------------------------------------------------------------------------- */

/* Describes what the artifact is, in the terms of a cell: method, bits, group size, sym, GGUF file type. */
static void artifact_identity(const qc_model *model, char *method, size_t size, int *bits, int *group, bool *sym,
                              char *quant_type, size_t quant_type_size)
{
    quant_type[0] = '\0';
    *group = -1;
    *sym = false;
    if (model->kind == QC_MODEL_GGUF) {
        snprintf(method, size, "gguf");
        uint32_t file_type = 0;
        qref_error err = {0};
        const char *name = NULL;
        if (qref_gguf_get_u32(model->gguf, "general.file_type", &file_type, &err) == QREF_OK)
            name = qref_gguf_file_type_name(file_type);
        /* without general.file_type (older converters), a file of F32 tensors only is of type F32 */
        bool all_f32 = model->gguf->tensor_count > 0;
        for (size_t i = 0; i < model->gguf->tensor_count; i++)
            all_f32 = all_f32 && model->gguf->tensors[i].type == QREF_GGML_TYPE_F32;
        if (name == NULL && all_f32)
            name = "F32";
        snprintf(quant_type, quant_type_size, "%s", name != NULL ? name : "");
        *bits = 0;
    } else if (model->quantized) {
        snprintf(method, size, "%s", model->gptq.algorithm[0] ? model->gptq.algorithm : "gptq");
        *bits = model->gptq.bits;
        *group = (int)model->gptq.group_size;
        *sym = model->gptq.sym;
    } else if (qc_structure_fakequant(model) != NULL && qc_structure_fakequant(model)->uniform) {
        /* dense weights on a quantization grid: what their values show (sym cannot be inferred) */
        snprintf(method, size, "fake-quant");
        *bits = qc_structure_fakequant(model)->bits;
        *group = (int)qc_structure_fakequant(model)->group_size;
    } else {
        snprintf(method, size, "fp");
        *bits = strcmp(model->config.torch_dtype, "float32") == 0 ? 32 : 16;
    }
}

/* Returns true when the cell describes this artifact; otherwise writes why not into reason. */
static bool cell_matches_artifact(const qc_suite_cell *cell, const qc_model *model, char *reason, size_t size)
{
    char method[QREF_GPTQ_CONFIG_TEXT_MAX], quant_type[32];
    int bits, group;
    bool sym;
    artifact_identity(model, method, sizeof method, &bits, &group, &sym, quant_type, sizeof quant_type);
    if (strcmp(cell->method, method) != 0) {
        snprintf(reason, size, "the cell checks method %s; the artifact is %s", cell->method, method);
        return false;
    }
    if (strcmp(method, "gguf") == 0) {
        if (cell->quant_type[0] == '\0' || strcmp(cell->quant_type, quant_type) == 0)
            return true;
        snprintf(reason, size, "the cell checks GGUF file type %s; the artifact is %s", cell->quant_type,
                 quant_type[0] ? quant_type : "of an unknown file type");
        return false;
    }
    if (strcmp(method, "fp") == 0 || (cell->bits == bits && cell->group_size == group && cell->sym == sym))
        return true;
    if (strcmp(method, "fake-quant") == 0 && cell->bits == bits && cell->group_size == group)
        return true;
    snprintf(reason, size, "the cell checks %s %d-bit group %d %s; the artifact is %s %d-bit group %d %s",
             cell->method, cell->bits, cell->group_size, cell->sym ? "sym" : "asym", method, bits, group,
             sym ? "sym" : "asym");
    return false;
}

static void run_cell(verify_context *ctx, const qc_suite_cell *cell, qc_cell_result *result)
{
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    snprintf(result->id, sizeof result->id, "%s", cell->id);
    snprintf(result->model, sizeof result->model, "%s", ctx->suite->model);
    snprintf(result->method, sizeof result->method, "%s", cell->method);
    snprintf(result->benchmark, sizeof result->benchmark, "%s", cell->benchmark);
    snprintf(result->metric, sizeof result->metric, "%s", qc_metric_name(cell->metric));
    snprintf(result->subject, sizeof result->subject, "%s", cell->subject_reference ? "reference" : "artifact");
    result->bits = cell->bits;
    result->group_size = cell->group_size;
    snprintf(result->quant_type, sizeof result->quant_type, "%s", cell->quant_type);
    if (cell->metric != QC_METRIC_LOGITS_MAX_ABS_ERROR) {
        qref_ppl_protocol protocol;
        int seqlen;
        size_t windows;
        cell_settings(ctx, cell, &protocol, &seqlen, &windows);
        snprintf(result->protocol, sizeof result->protocol, "%s",
                 cell->metric == QC_METRIC_PPL ? qref_ppl_protocol_name(protocol) : "llamacpp");
    }
    result->sym = cell->sym;
    result->band = cell->band;
    result->has_band = true;

    /* which model the cell measures, and whether it applies to this run */
    verify_subject *subject = cell->subject_reference ? &ctx->reference : &ctx->artifact;
    if (!subject->open) {
        result->verdict = QC_VERDICT_SKIP;
        snprintf(result->message, sizeof result->message, "the cell measures the reference model; "
                 "pass --reference or use a suite that names one");
        return;
    }
    if (!cell->subject_reference && !ctx->structure_ok) {
        result->verdict = QC_VERDICT_SKIP;
        snprintf(result->message, sizeof result->message, "the artifact failed its structure checks");
        return;
    }
    char reason[512];
    if (!cell->subject_reference && !cell_matches_artifact(cell, &subject->model, reason, sizeof reason)) {
        result->verdict = QC_VERDICT_SKIP;
        snprintf(result->message, sizeof result->message, "%s", reason);
        return;
    }
    if ((cell->metric == QC_METRIC_KLD || cell->metric == QC_METRIC_PPL_RATIO) && !ctx->reference.open) {
        result->verdict = QC_VERDICT_SKIP;
        snprintf(result->message, sizeof result->message, "%s compares the artifact with the reference model; "
                 "pass --reference", result->metric);
        return;
    }
    if (cell->band.reference_kind == QC_BAND_REFERENCE_MODEL && !ctx->reference.open) {
        result->verdict = QC_VERDICT_SKIP;
        snprintf(result->message, sizeof result->message, "the band is relative to the reference "
                 "model; pass --reference");
        return;
    }

    size_t cell_windows = cell->windows ? cell->windows : ctx->suite->windows;
    if (cell->metric != QC_METRIC_LOGITS_MAX_ABS_ERROR && ctx->windows_override != 0 &&
        ctx->windows_override != cell_windows && cell->band.reference_kind == QC_BAND_REFERENCE_VALUE) {
        char measured_on[32] = "all";
        if (cell_windows != 0)
            snprintf(measured_on, sizeof measured_on, "%zu", cell_windows);
        result->verdict = QC_VERDICT_SKIP;
        snprintf(result->message, sizeof result->message, "the band's reference value was measured on "
                 "%s windows, and --windows %zu would compare another text", measured_on, ctx->windows_override);
        return;
    }

    /* measure the value, and the reference model's value when the band is relative to it */
    qref_error err = {0};
    qref_status status = subject_metric(ctx, subject, cell, &result->value, &result->value_stderr, &err);
    double reference_value = 0.0, reference_stderr = 0.0;
    if (status == QREF_OK && cell->band.reference_kind == QC_BAND_REFERENCE_MODEL)
        status = subject_metric(ctx, &ctx->reference, cell, &reference_value, &reference_stderr, &err);
    if (status != QREF_OK) {
        result->verdict = QC_VERDICT_ERROR;
        result->error_status = status;
        snprintf(result->message, sizeof result->message, "%s", err.message);
        return;
    }
    result->has_value = true;
    if (cell->band.reference_kind == QC_BAND_REFERENCE_MODEL)
        result->band.reference = reference_value;
    result->verdict = qc_band_evaluate(&result->band, result->metric, result->value, result->message,
                                       sizeof result->message);
    clock_gettime(CLOCK_MONOTONIC, &end);
    result->seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) * 1e-9;
}

/* ---- the command -------------------------------------------------------------------------- */

typedef struct verify_options {
    const char *artifact, *reference, *suite, *cell, *data, *windows, *report, *junit, *cache, *adapter;
    bool quiet;
} verify_options;

static int parse_options(int argc, char **argv, verify_options *options)
{
    memset(options, 0, sizeof *options);
    const qc_arg_spec specs[] = {
        {"--reference", QC_ARG_STRING, &options->reference}, {"--suite", QC_ARG_STRING, &options->suite},
        {"--cell", QC_ARG_STRING, &options->cell},           {"--data", QC_ARG_STRING, &options->data},
        {"--windows", QC_ARG_STRING, &options->windows},     {"--report", QC_ARG_STRING, &options->report},
        {"--junit", QC_ARG_STRING, &options->junit},         {"--quiet", QC_ARG_FLAG, &options->quiet},
        {"--cache", QC_ARG_STRING, &options->cache},         {"--adapter", QC_ARG_STRING, &options->adapter},
    };
    qc_args_result args;
    int code;
    if (qc_args_parse_command("verify", argc, argv, specs, sizeof specs / sizeof specs[0], 1, print_usage, &args,
                              &code))
        return args.help ? -1 : code;
    if (args.positional_count != 1)
        return qc_usage_error("verify", "expected one ARTIFACT path");
    options->artifact = args.positional[0];
    if (options->cell != NULL && options->suite == NULL)
        return qc_usage_error("verify", "--cell needs --suite");
    const char *inputs[] = {options->artifact, options->reference, options->suite, options->data, options->adapter};
    const char *outputs[][2] = {{"--report", options->report}, {"--junit", options->junit}};
    for (size_t o = 0; o < 2; o++)
        for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++)
            if ((code = qc_args_check_output("verify", outputs[o][0], outputs[o][1], inputs[k], false)) != 0)
                return code;
    if (options->report != NULL && options->junit != NULL && strcmp(options->report, "-") == 0 &&
        strcmp(options->junit, "-") == 0)
        return qc_usage_error("verify", "--report - and --junit - would both write to stdout; give one of them a "
                              "file");
    return 0;
}

/* Writes the requested reports; a failure to write is reported and turns the exit code to 3. */
static int write_reports(const qc_report *report, const verify_options *options, const char *suite_name)
{
    int code = qc_report_exit_code(report);
    /* the table goes to stderr when a report takes stdout */
    bool report_on_stdout = (options->report != NULL && strcmp(options->report, "-") == 0) ||
                            (options->junit != NULL && strcmp(options->junit, "-") == 0);
    if (!options->quiet)
        qc_report_print_table(report, report_on_stdout ? stderr : stdout);
    qc_report_print_errors(report, stderr);
    qref_error err = {0};
    if (options->report != NULL && qc_report_write_json(report, options->report, &err) != QREF_OK) {
        qc_report_error(&err);
        code = code > QC_EXIT_INPUT ? code : QC_EXIT_INPUT;
    }
    if (options->junit != NULL && qc_report_write_junit(report, suite_name, options->junit, &err) != QREF_OK) {
        qc_report_error(&err);
        code = code > QC_EXIT_INPUT ? code : QC_EXIT_INPUT;
    }
    return code;
}

static void add_input(qc_report *report, const char *role, const char *path, const char *sha256)
{
    cJSON *input = cJSON_AddObjectToObject(report->inputs, role);
    cJSON_AddStringToObject(input, "path", path);
    if (sha256 != NULL)
        cJSON_AddStringToObject(input, "sha256", sha256);
}

/* Opens a subject, recording an ERROR check when it cannot be read. */
static bool open_subject(verify_subject *subject, const char *role, const char *path, qc_report *report)
{
    subject->role = role;
    qref_error err = {0};
    if (qc_model_open(path, &subject->model, &err) != QREF_OK) {
        char id[64];
        snprintf(id, sizeof id, "%s.open", role);
        qc_report_add_error(report, id, &err);
        add_input(report, role, path, NULL);
        return false;
    }
    subject->open = true;

    cJSON *manifest = NULL;
    char digest[QREF_SHA256_HEX_SIZE];
    if (qc_manifest_build_model(&subject->model, &manifest, digest, &err) != QREF_OK) {
        qc_report_add_error(report, "manifest", &err);
        add_input(report, role, path, NULL);
        return true;
    }
    add_input(report, role, path, digest);
    memcpy(subject->manifest_digest, digest, sizeof digest);
    if (strcmp(role, "artifact") == 0) {
        const cJSON *files = cJSON_GetObjectItemCaseSensitive(manifest, "files");
        const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(manifest, "tensors");
        int file_count = cJSON_GetArraySize(files), tensor_count = cJSON_GetArraySize(tensors);
        qc_report_add_check(report, "manifest", QC_VERDICT_PASS, "SHA-256 of %d file%s and %d tensor%s; manifest "
                            "digest %s", file_count, file_count == 1 ? "" : "s", tensor_count,
                            tensor_count == 1 ? "" : "s", digest);
        report->manifest = manifest;
    } else {
        cJSON_Delete(manifest);
    }
    return true;
}

/*
 * Attaches a LoRA adapter to the artifact and records its findings and digest. The manifest
 * digest, which keys the perplexity cache, then covers the adapter too. Returns false when
 * the adapter cannot be merged.
 */
static bool attach_adapter(verify_subject *subject, const char *dir, qc_report *report)
{
    qref_findings findings = {0};
    qref_error err = {0};
    qref_status status = qc_model_attach_adapter(&subject->model, dir, &findings, &err);
    int errors = qc_structure_report_findings(report, &findings);
    if (status != QREF_OK && errors == 0)
        qc_report_add_error(report, "adapter.open", &err);
    qref_findings_free(&findings);
    if (subject->model.adapter == NULL)
        return false;
    add_input(report, "adapter", dir, qref_lora_digest(subject->model.adapter));
    if (subject->manifest_digest[0] != '\0') {
        char text[2 * QREF_SHA256_HEX_SIZE + 16];
        snprintf(text, sizeof text, "%s\nlora %s\n", subject->manifest_digest, qref_lora_digest(subject->model.adapter));
        if (qref_sha256_buffer_hex(text, strlen(text), subject->manifest_digest) != 0)
            subject->manifest_digest[0] = '\0';
    }
    return status == QREF_OK;
}

/* Checks before any work that each report file can be created, so a long run is not lost. */
static bool report_paths_writable(const verify_options *options)
{
    const char *paths[2] = {options->report, options->junit};
    for (int i = 0; i < 2; i++) {
        if (paths[i] == NULL || strcmp(paths[i], "-") == 0)
            continue;
        qref_atomic_file probe;
        qref_error err = {0};
        if (qref_atomic_file_open(&probe, paths[i], &err) != QREF_OK) {
            qc_report_error(&err);
            return false;
        }
        qref_atomic_file_abort(&probe);
    }
    return true;
}

int qc_cmd_verify(int argc, char **argv)
{
    verify_options options;
    int code = parse_options(argc, argv, &options);
    if (code != 0)
        return code < 0 ? QC_EXIT_PASS : code;

    if (!report_paths_writable(&options))
        return QC_EXIT_INPUT;
    if (options.cache != NULL && mkdir(options.cache, 0755) != 0 && errno != EEXIST)
        fprintf(stderr, "qconform: warning: cannot create the cache folder %s: %s\n", options.cache, strerror(errno));

    qc_report report;
    qc_report_init(&report, "verify");
    verify_context ctx = {.report = &report, .protocol = QREF_PPL_PROTOCOL_STUDY, .cache_dir = options.cache};
    qc_suite suite = {0};
    const char *suite_name = "qconform";

    /* suite, reference and data paths */
    qref_error err = {0};
    if (options.suite != NULL) {
        if (qc_suite_load(options.suite, &suite, &err) != QREF_OK) {
            qc_report_add_error(&report, "suite", &err);
            code = write_reports(&report, &options, suite_name);
            qc_report_free(&report);
            return code;
        }
        suite_name = suite.name;
        add_input(&report, "suite", options.suite, suite.sha256);
        if (options.cell != NULL && qc_suite_find_cell(&suite, options.cell) == NULL) {
            qc_suite_free(&suite);
            qc_report_free(&report);
            return qc_usage_error("verify", "suite %s has no cell '%s'", options.suite, options.cell);
        }
        qc_eval_parse_protocol(suite.protocol, &ctx.protocol);
        ctx.seqlen = suite.seqlen;
    }
    ctx.suite = &suite;
    const char *reference_path = options.reference ? options.reference
                                                   : (suite.reference[0] ? suite.reference : NULL);
    ctx.data_path = options.data ? options.data : (suite.wikitext2[0] ? suite.wikitext2 : NULL);
    if (options.windows != NULL) {
        long windows;
        if ((code = qc_args_int("verify", "--windows", options.windows, 1, 1L << 40, &windows)) != 0) {
            qc_suite_free(&suite);
            qc_report_free(&report);
            return code;
        }
        ctx.windows_override = (size_t)windows;
    }

    /* 1-2. artifact: open, describe, structure, manifest */
    if (open_subject(&ctx.artifact, "artifact", options.artifact, &report)) {
        bool adapter_ok = options.adapter == NULL || attach_adapter(&ctx.artifact, options.adapter, &report);
        report.artifact = qc_structure_describe(&ctx.artifact.model);
        ctx.structure_ok = qc_structure_check(&ctx.artifact.model, &report) && adapter_ok;
    }

    /* 3. reference comparisons */
    if (reference_path != NULL && open_subject(&ctx.reference, "reference", reference_path, &report) &&
        ctx.artifact.open && ctx.structure_ok)
        qc_reference_compare(&ctx.artifact.model, &ctx.reference.model, &report);

    /* 4. suite cells */
    if (ctx.data_path != NULL)
        record_input_file(report.inputs, "data", ctx.data_path);
    cJSON_AddStringToObject(report.protocol, "perplexity", qref_ppl_protocol_name(ctx.protocol));
    if (ctx.seqlen > 0)
        cJSON_AddNumberToObject(report.protocol, "seqlen", ctx.seqlen);
    for (size_t i = 0; ctx.artifact.open && i < suite.cell_count; i++) {
        if (options.cell != NULL && strcmp(options.cell, suite.cells[i].id) != 0)
            continue;
        run_cell(&ctx, &suite.cells[i], qc_report_add_cell(&report));
    }

    /* without a suite, report both perplexities when a dataset was given */
    if (options.suite == NULL && ctx.data_path != NULL && ctx.artifact.open && ctx.structure_ok) {
        const qc_ppl_outcome *outcome;
        size_t windows = ctx.windows_override;
        if (subject_ppl(&ctx, &ctx.artifact, ctx.protocol, ctx.seqlen, windows, &outcome, &err) != QREF_OK)
            qc_report_add_error(&report, "artifact.ppl", &err);
        if (ctx.reference.open &&
            subject_ppl(&ctx, &ctx.reference, ctx.protocol, ctx.seqlen, windows, &outcome, &err) != QREF_OK)
            qc_report_add_error(&report, "reference.ppl", &err);
    }

    /* 5. reports */
    code = write_reports(&report, &options, suite_name);
    for (size_t i = 0; i < ctx.kld_count; i++)
        qref_kld_result_free(&ctx.kld[i].result);
    if (ctx.artifact.open)
        qc_model_close(&ctx.artifact.model);
    if (ctx.reference.open)
        qc_model_close(&ctx.reference.model);
    qc_suite_free(&suite);
    qc_report_free(&report);
    return code;
}
