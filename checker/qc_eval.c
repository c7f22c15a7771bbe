#include "qc_eval.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/qref_dataset.h"

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) * 1e-9;
}

int qc_eval_default_seqlen(const qref_llama_config *config, qref_ppl_protocol protocol)
{
    if (protocol == QREF_PPL_PROTOCOL_LLAMACPP)
        return 512;
    return config->max_position_embeddings < 2048 ? config->max_position_embeddings : 2048;
}

int qc_eval_parse_protocol(const char *name, qref_ppl_protocol *out)
{
    if (strcmp(name, "study") == 0)
        *out = QREF_PPL_PROTOCOL_STUDY;
    else if (strcmp(name, "llamacpp") == 0)
        *out = QREF_PPL_PROTOCOL_LLAMACPP;
    else
        return -1;
    return 0;
}

qref_status qc_eval_wikitext_ppl(const qc_model *model, const qc_ppl_request *request, qc_ppl_outcome *out,
                                 qref_error *err)
{
    memset(out, 0, sizeof *out);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    /* 1. one token stream: the study tokenizes the joined rows, llama.cpp the file */
    qc_wikitext_tokens tokens;
    qref_status status = qc_eval_wikitext_tokenize(model, request->data_path, request->protocol, &tokens, err);
    if (status != QREF_OK)
        return status;
    out->rows = tokens.rows;
    memcpy(out->dataset_sha256, tokens.dataset_sha256, sizeof out->dataset_sha256);
    memcpy(out->raw_sha256, tokens.raw_sha256, sizeof out->raw_sha256);
    memcpy(out->tokenizer_sha256, tokens.tokenizer_sha256, sizeof out->tokenizer_sha256);

    /* 2. perplexity */
    out->protocol = request->protocol;
    out->seqlen = request->seqlen > 0 ? request->seqlen : qc_eval_default_seqlen(&model->config, request->protocol);
    out->context_length = model->config.max_position_embeddings;
    if (request->protocol == QREF_PPL_PROTOCOL_LLAMACPP && out->seqlen > out->context_length)
        fprintf(stderr, "qconform: note: %s: context %d exceeds the model's training context %d; llama.cpp runs "
                "it the same way, with a warning\n", model->path, out->seqlen, out->context_length);
    qref_ppl_options options = {
        .protocol = request->protocol,
        .seq_len = out->seqlen,
        .max_windows = request->max_windows,
        .bos_id = tokens.bos_id,
        .shard_index = request->shard_index,
        .shard_count = request->shard_count,
    };
    status = qref_perplexity_run(&model->config, &model->weights, tokens.ids, tokens.count, &options, &out->result,
                                 err);
    qc_wikitext_tokens_free(&tokens);
    if (status != QREF_OK)
        return qref_error_prefix(err, "%s: ", model->path);
    out->seconds = seconds_since(&start);
    return QREF_OK;
}

cJSON *qc_ppl_outcome_to_json(const qc_ppl_outcome *outcome, const char *data_path)
{
    const qref_ppl_result *r = &outcome->result;
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "task", "wikitext2");
    cJSON_AddStringToObject(json, "protocol", qref_ppl_protocol_name(outcome->protocol));
    cJSON_AddStringToObject(json, "protocol_description",
                            outcome->protocol == QREF_PPL_PROTOCOL_LLAMACPP
                                ? "llama.cpp llama-perplexity: file minus one trailing newline, BOS at "
                                  "position 0 of every chunk, logits n_ctx/2 .. n_ctx-2 scored, "
                                  "exp(total NLL / scored tokens)"
                                : "study (GPTQ-style): Hugging Face WikiText rows joined with \"\\n\\n\", "
                                  "one BOS, non-overlapping windows, remainder dropped, exp(mean of "
                                  "per-window mean NLL)");
    cJSON_AddNumberToObject(json, "seqlen", outcome->seqlen);
    if (outcome->context_length > 0)
        cJSON_AddNumberToObject(json, "model_context_length", outcome->context_length);
    /* an empty shard has no perplexity */
    if (r->windows > 0) {
        cJSON_AddNumberToObject(json, "ppl", r->ppl);
        cJSON_AddNumberToObject(json, "ppl_stderr", r->ppl_stderr);
    } else {
        cJSON_AddNullToObject(json, "ppl");
        cJSON_AddNullToObject(json, "ppl_stderr");
    }
    cJSON_AddNumberToObject(json, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(json, "windows", (double)r->windows_total);
    cJSON_AddNumberToObject(json, "windows_available", (double)(r->tokens / (size_t)outcome->seqlen));
    cJSON_AddNumberToObject(json, "windows_evaluated", (double)r->windows);
    cJSON_AddNumberToObject(json, "tokens_scored", (double)r->tokens_scored);
    cJSON_AddNumberToObject(json, "nll_sum", r->nll_sum);
    cJSON_AddNumberToObject(json, "nll_sq_sum", r->nll_sq_sum);
    cJSON_AddNumberToObject(json, "window_mean_nll_sum", r->window_mean_sum);
    cJSON_AddNumberToObject(json, "window_mean_nll_sq_sum", r->window_mean_sq_sum);
    cJSON *dataset = cJSON_AddObjectToObject(json, "dataset");
    cJSON_AddStringToObject(dataset, "path", data_path);
    cJSON_AddStringToObject(dataset, "sha256", outcome->dataset_sha256);
    cJSON_AddStringToObject(dataset, "raw_sha256", outcome->raw_sha256);
    cJSON_AddNumberToObject(dataset, "rows", (double)outcome->rows);
    cJSON_AddStringToObject(json, "tokenizer_sha256", outcome->tokenizer_sha256);
    cJSON_AddNumberToObject(json, "seconds", outcome->seconds);
    return json;
}

/* Copies a 64-digit hex string member into out; returns false when absent or malformed. */
static bool read_digest(const cJSON *object, const char *key, char out[QREF_SHA256_HEX_SIZE])
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsString(item) || strlen(item->valuestring) != QREF_SHA256_HEX_SIZE - 1)
        return false;
    memcpy(out, item->valuestring, QREF_SHA256_HEX_SIZE);
    return true;
}

static bool read_number(const cJSON *object, const char *key, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsNumber(item))
        return false;
    *out = item->valuedouble;
    return true;
}

bool qc_ppl_outcome_from_json(const cJSON *json, qc_ppl_outcome *outcome)
{
    memset(outcome, 0, sizeof *outcome);
    qref_ppl_result *r = &outcome->result;
    double seqlen, tokens, windows, evaluated, scored, rows, context_length = 0.0;
    const cJSON *protocol = cJSON_GetObjectItemCaseSensitive(json, "protocol");
    const cJSON *dataset = cJSON_GetObjectItemCaseSensitive(json, "dataset");
    /* an empty shard stores null for ppl and ppl_stderr */
    bool empty = cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(json, "ppl")) &&
                 cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(json, "ppl_stderr"));
    if (!cJSON_IsString(protocol) || qc_eval_parse_protocol(protocol->valuestring, &outcome->protocol) != 0 ||
        !cJSON_IsObject(dataset) || !read_number(json, "seqlen", &seqlen) ||
        (!empty && (!read_number(json, "ppl", &r->ppl) || !read_number(json, "ppl_stderr", &r->ppl_stderr))) ||
        !read_number(json, "tokens", &tokens) ||
        !read_number(json, "windows", &windows) || !read_number(json, "windows_evaluated", &evaluated) ||
        !read_number(json, "tokens_scored", &scored) || !read_number(json, "nll_sum", &r->nll_sum) ||
        !read_number(json, "window_mean_nll_sum", &r->window_mean_sum) || !read_number(dataset, "rows", &rows) ||
        !read_digest(dataset, "sha256", outcome->dataset_sha256) ||
        !read_digest(dataset, "raw_sha256", outcome->raw_sha256) ||
        !read_digest(json, "tokenizer_sha256", outcome->tokenizer_sha256))
        return false;
    if (empty && evaluated != 0.0)
        return false;
    read_number(json, "seconds", &outcome->seconds);
    read_number(json, "nll_sq_sum", &r->nll_sq_sum);
    read_number(json, "window_mean_nll_sq_sum", &r->window_mean_sq_sum);
    read_number(json, "model_context_length", &context_length);
    outcome->context_length = (int)context_length;
    outcome->seqlen = (int)seqlen;
    r->tokens = (size_t)tokens;
    r->windows_total = (size_t)windows;
    r->windows = (size_t)evaluated;
    r->tokens_scored = (size_t)scored;
    outcome->rows = (size_t)rows;
    return true;
}

qref_status qc_eval_wikitext_tokenize(const qc_model *model, const char *data_path, qref_ppl_protocol protocol,
                                      qc_wikitext_tokens *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    qref_status status = qc_model_require_tokenizer(model, err);
    if (status != QREF_OK)
        return status;
    qref_wikitext wikitext;
    status = qref_wikitext_load_file(data_path, QREF_WIKITEXT_TEST, &wikitext, err);
    if (status != QREF_OK)
        return status;
    out->rows = wikitext.row_count;
    memcpy(out->dataset_sha256, wikitext.input_sha256, sizeof out->dataset_sha256);
    memcpy(out->raw_sha256, wikitext.raw_sha256, sizeof out->raw_sha256);
    memcpy(out->tokenizer_sha256, qref_tokenizer_sha256(model->tokenizer), sizeof out->tokenizer_sha256);

    /* llama.cpp adds BOS (and writes it over every chunk start) only when the vocabulary sets add_bos_token */
    bool llamacpp = protocol == QREF_PPL_PROTOCOL_LLAMACPP;
    bool add_bos = !llamacpp || qref_tokenizer_adds_bos(model->tokenizer);
    const char *text = llamacpp ? wikitext.llamacpp_text : wikitext.study_text;
    size_t text_size = llamacpp ? wikitext.llamacpp_size : wikitext.study_size;
    status = qref_tokenizer_encode(model->tokenizer, text, text_size, add_bos, &out->ids, &out->count, err);
    qref_wikitext_free(&wikitext);
    if (status != QREF_OK)
        return qref_error_prefix(err, "%s: ", data_path);
    out->bos_id = add_bos ? qref_tokenizer_bos_id(model->tokenizer) : -1;
    return QREF_OK;
}

void qc_wikitext_tokens_free(qc_wikitext_tokens *tokens)
{
    free(tokens->ids);
    memset(tokens, 0, sizeof *tokens);
}

int32_t qc_eval_bos_id(const qc_model *model)
{
    if (model->tokenizer != NULL)
        return qref_tokenizer_adds_bos(model->tokenizer) ? qref_tokenizer_bos_id(model->tokenizer) : -1;
    return model->config.bos_token_id;
}
