/*
 * Perplexity of a causal language model over a token stream, under two protocols.
 *
 * STUDY (GPTQ, OmniQuant, AWQ and the LLaMA-3 quantization study, arXiv 2404.14047): the
 * stream (one BOS at its start) is cut into non-overlapping windows of seq_len tokens, the
 * remainder dropped. In each window the logits at positions 0..L-2 predict tokens 1..L-1 and
 * their mean negative log-likelihood is m_k; PPL = exp(mean over windows of m_k).
 *
 * LLAMACPP (llama.cpp llama-perplexity): chunks of seq_len tokens, remainder dropped, the
 * first token of every chunk replaced by BOS for the forward pass, and only the second half
 * scored: logits at positions L/2 .. L-2 predict tokens L/2+1 .. L-1.
 * PPL = exp(sum of NLL / number of scored tokens). As llama.cpp, it accepts a seq_len above
 * the model's max_position_embeddings (the study protocol rejects one).
 *
 * Per-window sums are kept in double, so results from shards of windows merge exactly.
 */
#ifndef QREF_PERPLEXITY_H
#define QREF_PERPLEXITY_H

#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "model/qref_config.h"
#include "model/qref_weights.h"

typedef enum qref_ppl_protocol {
    QREF_PPL_PROTOCOL_STUDY,
    QREF_PPL_PROTOCOL_LLAMACPP
} qref_ppl_protocol;

typedef struct qref_ppl_options {
    qref_ppl_protocol protocol;
    int seq_len;
    size_t max_windows;      /* 0 = every full window */
    int bos_id;              /* LLAMACPP: id written at position 0 of every chunk; -1 = keep */
    size_t shard_index;      /* evaluate windows w with w % shard_count == shard_index */
    size_t shard_count;      /* 0 or 1 = no sharding */
    size_t activation_budget; /* bytes; 0 = the forward's default */
} qref_ppl_options;

typedef struct qref_ppl_result {
    size_t windows_total;    /* full windows in the stream (after max_windows) */
    size_t windows;          /* windows evaluated by this run (this shard) */
    size_t tokens;           /* tokens in the stream */
    size_t tokens_scored;    /* predicted tokens summed over evaluated windows */
    double nll_sum;          /* sum of NLL over all scored tokens */
    double nll_sq_sum;       /* sum of squared NLL over all scored tokens */
    double window_mean_sum;  /* sum over windows of the per-window mean NLL */
    double window_mean_sq_sum; /* sum over windows of the squared per-window mean NLL */
    double ppl;              /* the protocol's perplexity over the evaluated windows */
    /*
     * Uncertainty of ppl. STUDY: ppl x the standard error of the window means (delta method).
     * LLAMACPP: ppl x sqrt(var(token NLL) / (scored tokens - 1)), llama-perplexity's "+/-".
     */
    double ppl_stderr;
} qref_ppl_result;

/* Returns the protocol's name ("study", "llamacpp"). */
const char *qref_ppl_protocol_name(qref_ppl_protocol protocol);

qref_status qref_perplexity_run(const qref_llama_config *config, const qref_weight_provider *weights,
                                const int32_t *tokens, size_t n_tokens, const qref_ppl_options *options,
                                qref_ppl_result *result, qref_error *err);

/*
 * Computes ppl and ppl_stderr from the sums and counts of result (windows, tokens_scored and
 * the NLL sums), as qref_perplexity_run does; sums of shards added together give the whole
 * run's values. ppl is NaN when no window was evaluated.
 */
void qref_perplexity_finish(qref_ppl_result *result, qref_ppl_protocol protocol);

/* Negative log-likelihood of `target` under softmax(logits[0..vocab)), computed in double. */
double qref_nll_from_logits(const float *logits, int vocab, int target);

#endif
