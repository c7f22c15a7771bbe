/*
 * Perplexity under the study (GPTQ-style) and llama.cpp protocols; see qref_perplexity.h.
 *
 * Steps:
 *   1. cut the stream into windows of seq_len tokens (remainder dropped), keep this shard's;
 *   2. for the llama.cpp protocol, overwrite position 0 of every window with BOS;
 *   3. run the layer-streamed forward and, for each scored position p, add
 *      nll = logsumexp(z_p) - z_p[target_{p+1}] to the window's sum;
 *   4. combine: study = exp(mean of window means), llama.cpp = exp(total NLL / scored tokens).
 */
#include "eval/qref_perplexity.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "model/qref_llama.h"

const char *qref_ppl_protocol_name(qref_ppl_protocol protocol)
{
    return protocol == QREF_PPL_PROTOCOL_LLAMACPP ? "llamacpp" : "study";
}

double qref_nll_from_logits(const float *logits, int vocab, int target)
{
    float max_logit = logits[0];
    for (int i = 1; i < vocab; i++)
        if (logits[i] > max_logit)
            max_logit = logits[i];
    double sum = 0.0;
    for (int i = 0; i < vocab; i++)
        sum += exp((double)logits[i] - (double)max_logit);
    return (double)max_logit + log(sum) - (double)logits[target];
}

typedef struct ppl_sink {
    const int32_t *targets; /* original stream tokens of the evaluated windows, [windows][seq_len] */
    int seq_len;
    int vocab;
    int first_scored;       /* first position whose logits are scored */
    double *window_nll;     /* [windows] sums */
    double *window_nll_sq;  /* [windows] sums of squares */
} ppl_sink;

static qref_status ppl_consume(void *ctx, size_t window, int position, int count, const float *logits,
                               qref_error *err)
{
    (void)err;
    ppl_sink *sink = ctx;
    const int32_t *targets = sink->targets + window * (size_t)sink->seq_len;
    double sum = 0.0, sum_squares = 0.0;
    for (int i = 0; i < count; i++) {
        int p = position + i;
        if (p < sink->first_scored || p >= sink->seq_len - 1)
            continue; /* the last position has no next token */
        double nll = qref_nll_from_logits(logits + (size_t)i * sink->vocab, sink->vocab, targets[p + 1]);
        sum += nll;
        sum_squares += nll * nll;
    }
    sink->window_nll[window] += sum;
    sink->window_nll_sq[window] += sum_squares;
    return QREF_OK;
}

void qref_perplexity_finish(qref_ppl_result *result, qref_ppl_protocol protocol)
{
    result->ppl = NAN;
    result->ppl_stderr = 0.0;
    size_t windows = result->windows;
    if (windows == 0 || result->tokens_scored == 0)
        return;
    bool llamacpp = protocol == QREF_PPL_PROTOCOL_LLAMACPP;
    double mean_nll = llamacpp ? result->nll_sum / (double)result->tokens_scored
                               : result->window_mean_sum / (double)windows;
    result->ppl = exp(mean_nll);
    if (llamacpp && result->tokens_scored > 1) {
        double count = (double)result->tokens_scored;
        double variance = result->nll_sq_sum / count - mean_nll * mean_nll;
        if (variance > 0.0)
            result->ppl_stderr = result->ppl * sqrt(variance / (count - 1.0));
    } else if (!llamacpp && windows > 1) {
        double variance = (result->window_mean_sq_sum - result->window_mean_sum * result->window_mean_sum /
                                                           (double)windows) / (double)(windows - 1);
        if (variance < 0.0)
            variance = 0.0;
        result->ppl_stderr = result->ppl * sqrt(variance / (double)windows);
    }
}

qref_status qref_perplexity_run(const qref_llama_config *config, const qref_weight_provider *weights,
                                const int32_t *tokens, size_t n_tokens, const qref_ppl_options *options,
                                qref_ppl_result *result, qref_error *err)
{
    memset(result, 0, sizeof *result);
    int seq_len = options->seq_len;
    bool llamacpp = options->protocol == QREF_PPL_PROTOCOL_LLAMACPP;
    if (seq_len < 2 || (llamacpp && seq_len < 4))
        return qref_error_set(err, QREF_ERR_INVALID, "perplexity: sequence length %d is too short "
                              "(expected at least %d)", seq_len, llamacpp ? 4 : 2);
    /* llama-perplexity runs a context beyond the training context (with a warning); the study does not */
    if (!llamacpp && seq_len > config->max_position_embeddings)
        return qref_error_set(err, QREF_ERR_INVALID, "perplexity: sequence length %d exceeds the "
                              "model's max_position_embeddings %d", seq_len,
                              config->max_position_embeddings);

    /* 1. windows of this shard */
    size_t total = n_tokens / (size_t)seq_len;
    if (options->max_windows > 0 && options->max_windows < total)
        total = options->max_windows;
    if (total == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "perplexity: %zu tokens make no full window of %d",
                              n_tokens, seq_len);
    size_t shards = options->shard_count > 1 ? options->shard_count : 1;
    if (options->shard_index >= shards)
        return qref_error_set(err, QREF_ERR_INVALID, "perplexity: shard %zu/%zu does not exist",
                              options->shard_index, shards);
    size_t windows = 0;
    for (size_t w = options->shard_index; w < total; w += shards)
        windows++;

    result->windows_total = total;
    result->windows = windows;
    result->tokens = n_tokens;
    if (windows == 0) {
        qref_perplexity_finish(result, options->protocol); /* ppl NaN: this shard has no window */
        return QREF_OK;
    }

    int32_t *targets = malloc(windows * (size_t)seq_len * sizeof(int32_t));
    int32_t *inputs = malloc(windows * (size_t)seq_len * sizeof(int32_t));
    double *window_nll = calloc(windows, sizeof(double));
    double *window_nll_sq = calloc(windows, sizeof(double));
    if (targets == NULL || inputs == NULL || window_nll == NULL || window_nll_sq == NULL) {
        free(targets), free(inputs), free(window_nll), free(window_nll_sq);
        return qref_error_set(err, QREF_ERR_NOMEM, "perplexity: cannot allocate %zu windows", windows);
    }
    size_t k = 0;
    for (size_t w = options->shard_index; w < total; w += shards, k++)
        memcpy(targets + k * (size_t)seq_len, tokens + w * (size_t)seq_len, (size_t)seq_len * sizeof(int32_t));
    memcpy(inputs, targets, windows * (size_t)seq_len * sizeof(int32_t));

    /* 2. llama.cpp writes BOS over the first token of every chunk */
    if (llamacpp && options->bos_id >= 0)
        for (size_t w = 0; w < windows; w++)
            inputs[w * (size_t)seq_len] = options->bos_id;

    /* 3. forward and per-window NLL sums */
    ppl_sink sink = {
        .targets = targets,
        .seq_len = seq_len,
        .vocab = config->vocab_size,
        .first_scored = llamacpp ? seq_len / 2 : 0,
        .window_nll = window_nll,
        .window_nll_sq = window_nll_sq,
    };
    qref_forward_options forward_options = {
        .activation_budget = options->activation_budget,
        .first_scored_position = sink.first_scored,
    };
    qref_status status = qref_llama_forward(config, weights, inputs, windows, seq_len, &forward_options,
                                            ppl_consume, &sink, err);

    /* 4. combine */
    if (status == QREF_OK) {
        size_t scored_per_window = (size_t)(seq_len - 1 - sink.first_scored);
        for (size_t w = 0; w < windows; w++) {
            double mean = window_nll[w] / (double)scored_per_window;
            result->nll_sum += window_nll[w];
            result->nll_sq_sum += window_nll_sq[w];
            result->window_mean_sum += mean;
            result->window_mean_sq_sum += mean * mean;
        }
        result->tokens_scored = windows * scored_per_window;
        qref_perplexity_finish(result, options->protocol);
    }
    free(targets);
    free(inputs);
    free(window_nll);
    free(window_nll_sq);
    return status;
}
