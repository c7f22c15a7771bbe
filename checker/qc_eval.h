/*
 * Benchmark evaluation shared by `eval` and `verify`: WikiText-2 perplexity of a model under
 * the study's or llama.cpp's protocol, with the settings and input digests a report records.
 */
#ifndef QC_EVAL_H
#define QC_EVAL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "core/qref_sha256.h"
#include "eval/qref_perplexity.h"
#include "qc_model.h"

typedef struct qc_ppl_request {
    const char *data_path;        /* wiki.test.raw or wikitext-2-raw-v1.zip */
    qref_ppl_protocol protocol;
    int seqlen;                   /* 0 = the protocol's default for the model */
    size_t max_windows;           /* 0 = all */
    size_t shard_index, shard_count;
} qc_ppl_request;

typedef struct qc_ppl_outcome {
    qref_ppl_result result;
    qref_ppl_protocol protocol;
    int seqlen;
    int context_length;                            /* the model's max_position_embeddings; 0 = not recorded */
    size_t rows;                                   /* dataset rows (4358 for the test split) */
    char dataset_sha256[QREF_SHA256_HEX_SIZE];     /* of the file as given */
    char raw_sha256[QREF_SHA256_HEX_SIZE];         /* of wiki.test.raw */
    char tokenizer_sha256[QREF_SHA256_HEX_SIZE];   /* of the tokenizer file (json or model) */
    double seconds;
} qc_ppl_outcome;

/* The default window length: min(2048, max_position_embeddings) for the study, 512 for llama.cpp. */
int qc_eval_default_seqlen(const qref_llama_config *config, qref_ppl_protocol protocol);

/* Tokenizes the dataset with the model's tokenizer and computes its perplexity. */
qref_status qc_eval_wikitext_ppl(const qc_model *model, const qc_ppl_request *request, qc_ppl_outcome *out,
                                 qref_error *err);

/*
 * The outcome as a JSON object: ppl, tokens, windows, seqlen, protocol, dataset digest, ...
 * ppl and ppl_stderr are null when no window was evaluated (an empty shard).
 */
cJSON *qc_ppl_outcome_to_json(const qc_ppl_outcome *outcome, const char *data_path);

/* Reads back an object written by qc_ppl_outcome_to_json; returns false when a field is missing. */
bool qc_ppl_outcome_from_json(const cJSON *json, qc_ppl_outcome *outcome);

/* Parses "study" or "llamacpp". Returns 0, or -1 when the name is unknown. */
int qc_eval_parse_protocol(const char *name, qref_ppl_protocol *out);

/* A WikiText-2 split tokenized with a model's tokenizer, BOS first, and its input digests. */
typedef struct qc_wikitext_tokens {
    int32_t *ids;
    size_t count;
    int32_t bos_id;                                /* the BOS id written first, or -1 when none was */
    size_t rows;                                   /* dataset rows (4358 for the test split) */
    char dataset_sha256[QREF_SHA256_HEX_SIZE];     /* of the file as given */
    char raw_sha256[QREF_SHA256_HEX_SIZE];         /* of wiki.test.raw */
    char tokenizer_sha256[QREF_SHA256_HEX_SIZE];   /* of the tokenizer file (json or model) */
} qc_wikitext_tokens;

/*
 * Tokenizes the test split's text for protocol (llamacpp: the file minus one trailing newline).
 * BOS comes first, except under llamacpp for a tokenizer whose vocabulary does not add BOS
 * (qref_tokenizer_adds_bos), as llama-perplexity tokenizes.
 */
qref_status qc_eval_wikitext_tokenize(const qc_model *model, const char *data_path, qref_ppl_protocol protocol,
                                      qc_wikitext_tokens *out, qref_error *err);

void qc_wikitext_tokens_free(qc_wikitext_tokens *tokens);

/*
 * The BOS id of the model's tokenizer (-1 when its vocabulary does not add BOS), else
 * config.json's bos_token_id (-1 when neither has one).
 */
int32_t qc_eval_bos_id(const qc_model *model);

#endif
