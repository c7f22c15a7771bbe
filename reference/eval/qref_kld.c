/*
 * KL divergence against a reference with llama.cpp's statistics; see qref_kld.h for the
 * protocol, the per-token values and the formulas.
 *
 * Steps of a run:
 *   1. cut the stream into chunks of n_ctx tokens and write BOS over each chunk's first token;
 *   2. run the reference and encode each scored logit row into a 16-bit base row
 *      (qref_kld_row_encode), appending it to the base logits file or its digest;
 *   3. run the quantized model and compute each scored token from its logits and the base
 *      row (qref_kld_token_from_row), stored by token index;
 *   4. sum the tokens in index order and derive the statistics and percentiles.
 * Steps 2 and 3 alternate over groups of chunks, so only one group's base rows are held at a
 * time. A run from a saved file skips step 2 and reads the rows from the file.
 */
#include "eval/qref_kld.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "model/qref_llama.h"

/* ---- one scored token -------------------------------------------------------------------- */

/* First index of the maximum logit and the log-softmax normalizer max + log(sum exp(z - max)). */
static void logits_normalizer(int n_vocab, const float *logits, int *argmax, float *normalizer)
{
    float max_logit = logits[0];
    int imax = 0;
    for (int i = 1; i < n_vocab; i++) {
        if (logits[i] > max_logit) {
            max_logit = logits[i];
            imax = i;
        }
    }
    double sum_exp = 0.0;
    for (int i = 0; i < n_vocab; i++)
        sum_exp += expf(logits[i] - max_logit);
    const float log_sum_exp = (float)log(sum_exp);
    *argmax = imax;
    *normalizer = max_logit + log_sum_exp;
}

void qref_kld_token_from_row(int n_vocab, const uint8_t *base_row, const float *logits, int target,
                             qref_kld_token *out)
{
    /* 1. quantized model: log q_i = z_i - (M + lse), nll = (M + lse) - z_t */
    int imax;
    float normalizer;
    logits_normalizer(n_vocab, logits, &imax, &normalizer);
    const float nll = normalizer - logits[target];

    /* 2. base: log p_i = scale * code_i + min_log_prob */
    float scale, min_log_prob;
    qref_kld_row_params(base_row, &scale, &min_log_prob);
    const uint8_t *codes = base_row + 8;
    const float nll_base = -(scale * (float)qref_load_u16(codes + 2 * (size_t)target) + min_log_prob);

    /* 3. KL sum over the base entries above the cutoff, each term in f32 as llama.cpp has it */
    double sum = 0.0;
    int imax_base = -1;
    float max_log_prob_base = 0.0f;
    for (int i = 0; i < n_vocab; i++) {
        const float log_p_base = scale * (float)qref_load_u16(codes + 2 * (size_t)i) + min_log_prob;
        if (i == 0 || log_p_base > max_log_prob_base) {
            max_log_prob_base = log_p_base;
            imax_base = i;
        }
        if (log_p_base > QREF_KLD_LOG_PROB_CUTOFF) {
            const float p_base = expf(log_p_base);
            const float term = p_base * (log_p_base - logits[i] + normalizer);
            sum += term;
        }
    }

    /* 4. probability of the target under each model */
    const float p_base = expf(-nll_base);
    const float p = expf(-nll);
    out->kld = sum;
    out->nll = nll;
    out->nll_base = nll_base;
    out->nll_base_exact = NAN; /* the caller that has the reference logits sets it */
    out->p_diff = p - p_base;
    out->same_top = imax == imax_base;
}

void qref_kld_token_from_logits(int n_vocab, const float *base_logits, const float *logits, int target,
                                qref_kld_token *out)
{
    /* 1. both log-softmax normalizers, the same f32 operations for both models */
    int imax, imax_base;
    float normalizer, normalizer_base;
    logits_normalizer(n_vocab, logits, &imax, &normalizer);
    logits_normalizer(n_vocab, base_logits, &imax_base, &normalizer_base);
    const float nll = normalizer - logits[target];
    const float nll_base = normalizer_base - base_logits[target];

    /* 2. KL sum: p_i (log p_i - log q_i), exactly 0 per term when the logits are equal */
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) {
        const float log_p_base = base_logits[i] - normalizer_base;
        if (log_p_base > QREF_KLD_LOG_PROB_CUTOFF) {
            const float log_q = logits[i] - normalizer;
            const float term = expf(log_p_base) * (log_p_base - log_q);
            sum += term;
        }
    }

    const float p_base = expf(-nll_base);
    const float p = expf(-nll);
    out->kld = sum;
    out->nll = nll;
    out->nll_base = nll_base;
    out->nll_base_exact = nll_base;
    out->p_diff = p - p_base;
    out->same_top = imax == imax_base;
}

/* ---- sums and statistics ----------------------------------------------------------------- */

void qref_kld_sums_add(qref_kld_sums *sums, const qref_kld_token *token)
{
    /* llama.cpp squares and multiplies the f32 values in f32 and adds the products in double */
    const float nll2 = token->nll * token->nll;
    const float nll_base2 = token->nll_base * token->nll_base;
    const float nll_nll_base = token->nll * token->nll_base;
    sums->sum_nll += token->nll;
    sums->sum_nll2 += nll2;
    sums->sum_nll_base += token->nll_base;
    sums->sum_nll_base2 += nll_base2;
    sums->sum_nll_nll_base += nll_nll_base;
    sums->sum_kld += token->kld;
    sums->sum_kld2 += token->kld * token->kld;
    sums->count++;
    sums->n_same_top += token->same_top ? 1 : 0;

    const float p_diff_squared = token->p_diff * token->p_diff;
    const double p_diff2 = p_diff_squared;
    sums->sum_p_diff += token->p_diff;
    sums->sum_p_diff2 += p_diff2;
    sums->sum_p_diff4 += p_diff2 * p_diff2;
    const float magnitude = fabsf(token->p_diff);
    if (magnitude > sums->max_p_diff)
        sums->max_p_diff = magnitude;

    if (isfinite(token->nll_base_exact)) {
        sums->sum_nll_base_exact += token->nll_base_exact;
        sums->sum_nll_base_exact2 += token->nll_base_exact * token->nll_base_exact;
        sums->sum_nll_nll_base_exact += (double)token->nll * token->nll_base_exact;
        sums->count_exact++;
    }
}

/* llama.cpp's mean_and_uncertainty: the standard error is 0 for 10 values or fewer. */
static qref_estimate mean_and_uncertainty(double sum, double sum2, size_t count)
{
    qref_estimate e = {0.0, 0.0};
    if (count < 1)
        return e;
    e.value = sum / (double)count;
    double variance = sum2 / (double)count - e.value * e.value;
    e.uncertainty = variance > 0.0 && count > 10 ? sqrt(variance / (double)(count - 1)) : 0.0;
    return e;
}

/* llama.cpp's covariance of the means: 0 for fewer than 10 values. */
static double covariance(double sum_a, double sum_b, double sum_ab, size_t count)
{
    if (count < 10)
        return 0.0;
    double cov = sum_ab / (double)count - (sum_a / (double)count) * (sum_b / (double)count);
    return cov / (double)(count - 1);
}

/* sqrt of a combined variance. NOTE: llama.cpp prints nan when rounding makes it negative
 * (identical models); it is clamped to 0 here. */
static double sqrt_clamped(double variance)
{
    return variance > 0.0 ? sqrt(variance) : 0.0;
}

void qref_kld_stats_from_sums(const qref_kld_sums *sums, qref_kld_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    stats->sums = *sums;
    size_t n = sums->count;

    /* perplexities and their ratio, with the covariance of the two mean NLLs */
    stats->log_ppl = mean_and_uncertainty(sums->sum_nll, sums->sum_nll2, n);
    stats->log_ppl_base = mean_and_uncertainty(sums->sum_nll_base, sums->sum_nll_base2, n);
    stats->ppl.value = exp(stats->log_ppl.value);
    stats->ppl.uncertainty = stats->ppl.value * stats->log_ppl.uncertainty;
    stats->ppl_base.value = exp(stats->log_ppl_base.value);
    stats->ppl_base.uncertainty = stats->ppl_base.value * stats->log_ppl_base.uncertainty;
    double cov = covariance(sums->sum_nll, sums->sum_nll_base, sums->sum_nll_nll_base, n);
    stats->log_ppl_cov = cov;
    double denominator = stats->log_ppl.uncertainty * stats->log_ppl_base.uncertainty;
    stats->log_ppl_cor = denominator > 0.0 ? cov / denominator : NAN;

    double u = stats->log_ppl.uncertainty, u_base = stats->log_ppl_base.uncertainty;
    stats->log_ppl_ratio.value = stats->log_ppl.value - stats->log_ppl_base.value;
    stats->log_ppl_ratio.uncertainty = sqrt_clamped(u * u + u_base * u_base - 2.0 * cov);
    stats->ppl_ratio.value = exp(stats->log_ppl_ratio.value);
    stats->ppl_ratio.uncertainty = stats->ppl_ratio.value * stats->log_ppl_ratio.uncertainty;
    if (n > 0 && sums->count_exact == n) {
        qref_estimate log_base = mean_and_uncertainty(sums->sum_nll_base_exact, sums->sum_nll_base_exact2, n);
        double cov_exact = covariance(sums->sum_nll, sums->sum_nll_base_exact, sums->sum_nll_nll_base_exact, n);
        stats->has_exact = true;
        stats->ppl_base_exact.value = exp(log_base.value);
        stats->ppl_base_exact.uncertainty = stats->ppl_base_exact.value * log_base.uncertainty;
        double log_ratio = stats->log_ppl.value - log_base.value;
        stats->ppl_ratio_exact.value = exp(log_ratio);
        stats->ppl_ratio_exact.uncertainty =
            stats->ppl_ratio_exact.value *
            sqrt_clamped(u * u + log_base.uncertainty * log_base.uncertainty - 2.0 * cov_exact);
    }
    double ppl_cov = stats->ppl.value * stats->ppl_base.value * cov;
    double pu = stats->ppl.uncertainty, pu_base = stats->ppl_base.uncertainty;
    stats->ppl_diff.value = stats->ppl.value - stats->ppl_base.value;
    stats->ppl_diff.uncertainty = sqrt_clamped(pu * pu + pu_base * pu_base - 2.0 * ppl_cov);

    /* KL divergence and token probabilities */
    stats->kld = mean_and_uncertainty(sums->sum_kld, sums->sum_kld2, n);
    stats->p_diff = mean_and_uncertainty(sums->sum_p_diff, sums->sum_p_diff2, n);
    qref_estimate mse = mean_and_uncertainty(sums->sum_p_diff2, sums->sum_p_diff4, n);
    stats->p_diff_rms.value = sqrt(mse.value);
    /* NOTE: llama.cpp divides by the RMS even when it is 0 (nan); the uncertainty is 0 here. */
    stats->p_diff_rms.uncertainty = stats->p_diff_rms.value > 0.0 ? 0.5 / stats->p_diff_rms.value * mse.uncertainty
                                                                   : 0.0;
    if (n > 0) {
        double p = (double)sums->n_same_top / (double)n;
        stats->same_top.value = p;
        stats->same_top.uncertainty = n > 1 ? sqrt(p * (1.0 - p) / (double)(n - 1)) : 0.0;
    }
}

static const float rank_fractions[QREF_KLD_RANK_COUNT] = {
    1.0f, 0.999f, 0.990f, 0.950f, 0.900f, 0.750f, 0.5f, 0.250f, 0.100f, 0.050f, 0.010f, 0.001f, 0.0f,
};
static const char *const rank_names[QREF_KLD_RANK_COUNT] = {
    "max", "99.9%", "99%", "95%", "90%", "75%", "median", "25%", "10%", "5%", "1%", "0.1%", "min",
};

float qref_kld_rank_fraction(qref_kld_rank rank)
{
    return rank_fractions[rank];
}

const char *qref_kld_rank_name(qref_kld_rank rank)
{
    return rank_names[rank];
}

float qref_kld_percentile(const float *sorted, size_t n, float fraction)
{
    if (fraction <= 0.0f)
        return sorted[0];
    if (fraction >= 1.0f)
        return sorted[n - 1];
    float position = fraction * (float)(n - 1);
    size_t below = (size_t)position;
    if (below > n - 1) /* only when n - 1 is not exact in f32 */
        below = n - 1;
    position -= (float)below;
    size_t above = below + 1 < n - 1 ? below + 1 : n - 1;
    return (1.0f - position) * sorted[below] + position * sorted[above];
}

float qref_kld_median(const float *sorted, size_t n)
{
    if (n % 2 == 0)
        return 0.5f * (sorted[n / 2] + sorted[n / 2 - 1]);
    return sorted[n / 2];
}

static int compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void ranks_from_sorted(const float *sorted, size_t n, float out[QREF_KLD_RANK_COUNT])
{
    for (int r = 0; r < QREF_KLD_RANK_COUNT; r++)
        out[r] = r == QREF_KLD_RANK_MEDIAN ? qref_kld_median(sorted, n)
                                           : qref_kld_percentile(sorted, n, rank_fractions[r]);
}

qref_status qref_kld_summarize(const qref_kld_token *tokens, size_t count, qref_kld_stats *stats,
                               qref_error *err)
{
    memset(stats, 0, sizeof *stats);
    if (count == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "kl divergence: no scored tokens, expected at least one");

    /* 1. sums in token order; every value must be finite to be sorted */
    qref_kld_sums sums = {0};
    for (size_t i = 0; i < count; i++) {
        const qref_kld_token *t = &tokens[i];
        if (!isfinite(t->kld) || !isfinite(t->nll) || !isfinite(t->nll_base) || !isfinite(t->p_diff))
            return qref_error_set(err, QREF_ERR_INVALID, "kl divergence: scored token %zu has kld %g, nll %g, "
                                  "nll_base %g, delta p %g, expected finite values", i, t->kld, (double)t->nll,
                                  (double)t->nll_base, (double)t->p_diff);
        qref_kld_sums_add(&sums, t);
    }
    qref_kld_stats_from_sums(&sums, stats);

    /* 2. percentiles of the f32 per-token KLD and delta p */
    float *values = malloc(count * sizeof(float));
    if (values == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "kl divergence: cannot allocate %zu values", count);
    for (size_t i = 0; i < count; i++)
        values[i] = (float)tokens[i].kld;
    qsort(values, count, sizeof(float), compare_floats);
    ranks_from_sorted(values, count, stats->kld_rank);
    for (size_t i = 0; i < count; i++)
        values[i] = tokens[i].p_diff;
    qsort(values, count, sizeof(float), compare_floats);
    ranks_from_sorted(values, count, stats->p_diff_rank);
    free(values);
    stats->have_percentiles = true;
    return QREF_OK;
}

/* ---- runs over chunks -------------------------------------------------------------------- */

/* Where the forward's logits of one group of chunks go. */
typedef struct kld_sink {
    const int32_t *targets;  /* original tokens of the group's chunks, [chunks][n_ctx] */
    uint8_t *rows;           /* the group's base rows, [chunks][scored] (read-only for the quantized pass) */
    qref_kld_token *out;     /* the group's tokens, [chunks][scored] */
    size_t first_chunk;      /* index of the group's first chunk in the run, for messages */
    int n_ctx;
    int vocab;
    int first;               /* first scored logit position, n_ctx / 2 */
    int scored;
    size_t row_bytes;
    double *base_nll_exact;  /* the group's exact reference NLLs, [chunks][scored]; NULL for file runs */
} kld_sink;

/* Reference pass: encodes every scored logit row of the group into its base row. */
static qref_status kld_encode_sink(void *ctx, size_t window, int position, int count, const float *logits,
                                   qref_error *err)
{
    kld_sink *sink = ctx;
    const int32_t *targets = sink->targets + window * (size_t)sink->n_ctx;
    int end = position + count < sink->n_ctx - 1 ? position + count : sink->n_ctx - 1;
#pragma omp parallel for schedule(static)
    for (int p = position; p < end; p++) {
        if (p < sink->first)
            continue;
        size_t index = window * (size_t)sink->scored + (size_t)(p - sink->first);
        sink->base_nll_exact[index] = qref_kld_row_encode(sink->vocab, logits + (size_t)(p - position) * sink->vocab,
                                                          targets[p + 1], sink->rows + index * sink->row_bytes);
    }
    for (int p = position > sink->first ? position : sink->first; p < end; p++) {
        const uint8_t *row = sink->rows + (window * (size_t)sink->scored + (size_t)(p - sink->first)) * sink->row_bytes;
        float scale, min_log_prob;
        qref_kld_row_params(row, &scale, &min_log_prob);
        if (!isfinite(scale) || !isfinite(min_log_prob))
            return qref_error_set(err, QREF_ERR_INVALID, "non-finite logits at chunk %zu, position %d, "
                                  "expected finite values", sink->first_chunk + window, p);
    }
    return QREF_OK;
}

/* Quantized pass: computes every scored token from its logits and its base row. */
static qref_status kld_token_sink(void *ctx, size_t window, int position, int count, const float *logits,
                                  qref_error *err)
{
    kld_sink *sink = ctx;
    const int32_t *targets = sink->targets + window * (size_t)sink->n_ctx;
    int end = position + count < sink->n_ctx - 1 ? position + count : sink->n_ctx - 1;
#pragma omp parallel for schedule(static)
    for (int p = position; p < end; p++) {
        if (p < sink->first)
            continue;
        size_t index = window * (size_t)sink->scored + (size_t)(p - sink->first);
        qref_kld_token_from_row(sink->vocab, sink->rows + index * sink->row_bytes,
                                logits + (size_t)(p - position) * sink->vocab, targets[p + 1], &sink->out[index]);
        sink->out[index].nll_base_exact = sink->base_nll_exact != NULL ? sink->base_nll_exact[index] : NAN;
    }
    for (int p = position > sink->first ? position : sink->first; p < end; p++) {
        const qref_kld_token *t = &sink->out[window * (size_t)sink->scored + (size_t)(p - sink->first)];
        if (!isfinite(t->kld) || !isfinite(t->nll))
            return qref_error_set(err, QREF_ERR_INVALID, "non-finite logits at chunk %zu, position %d "
                                  "(KLD %g, NLL %g), expected finite values",
                                  sink->first_chunk + window, p, t->kld, (double)t->nll);
    }
    return QREF_OK;
}

/* Copies chunks [first, first + count) of stream and writes BOS over each chunk's first token. */
static void chunks_prepare_inputs(const int32_t *stream, size_t first, size_t count, int n_ctx, int32_t bos_id,
                                  int32_t *inputs)
{
    memcpy(inputs, stream + first * (size_t)n_ctx, count * (size_t)n_ctx * sizeof(int32_t));
    if (bos_id >= 0)
        for (size_t c = 0; c < count; c++)
            inputs[c * (size_t)n_ctx] = bos_id;
}

static qref_status tokens_digest(const int32_t *tokens, size_t count, char hex[QREF_SHA256_HEX_SIZE],
                                 qref_error *err)
{
    qref_sha256 *digest = qref_sha256_init();
    if (digest == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "kl divergence: cannot start a SHA-256 digest");
    uint8_t block[4096];
    for (size_t t = 0; t < count;) {
        size_t n = count - t < sizeof block / 4 ? count - t : sizeof block / 4;
        for (size_t k = 0; k < n; k++)
            qref_store_u32(block + 4 * k, (uint32_t)tokens[t + k]);
        qref_sha256_update(digest, block, 4 * n);
        t += n;
    }
    uint8_t bytes[QREF_SHA256_SIZE];
    qref_sha256_final(digest, bytes);
    qref_sha256_hex(bytes, hex);
    return QREF_OK;
}

/* Allocates result->tokens and sets the sizes. */
static qref_status result_init(qref_kld_result *result, int n_ctx, int n_vocab, size_t available, size_t chunks,
                               qref_error *err)
{
    result->n_ctx = n_ctx;
    result->n_vocab = n_vocab;
    result->chunks_available = available;
    result->chunks = chunks;
    result->scored_per_chunk = qref_kld_scored_per_chunk(n_ctx);
    result->token_count = chunks * (size_t)result->scored_per_chunk;
    result->tokens = calloc(result->token_count, sizeof(qref_kld_token));
    if (result->tokens == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "kl divergence: cannot allocate %zu scored tokens",
                              result->token_count);
    return QREF_OK;
}

qref_status qref_kld_chunk_count(size_t n_tokens, const qref_kld_options *options, size_t *chunks,
                                 qref_error *err)
{
    *chunks = 0;
    int n_ctx = options->n_ctx;
    if (n_ctx < 3)
        return qref_error_set(err, QREF_ERR_INVALID, "kl divergence: context %d is too short, expected at "
                              "least 3 (a chunk scores n_ctx - 1 - n_ctx/2 tokens)", n_ctx);
    if (n_tokens < 2 * (size_t)n_ctx)
        return qref_error_set(err, QREF_ERR_INVALID, "kl divergence: %zu tokens, expected at least %zu "
                              "(2 * n_ctx, as llama-perplexity requires)", n_tokens, 2 * (size_t)n_ctx);
    *chunks = n_tokens / (size_t)n_ctx;
    if (options->max_chunks > 0 && options->max_chunks < *chunks)
        *chunks = options->max_chunks;
    return QREF_OK;
}

qref_status qref_kld_run(const qref_llama_config *base_config, const qref_weight_provider *base_weights,
                         const qref_llama_config *config, const qref_weight_provider *weights,
                         const int32_t *tokens, size_t n_tokens, const qref_kld_options *options,
                         const char *save_path, qref_kld_result *result, qref_error *err)
{
    memset(result, 0, sizeof *result);
    int n_ctx = options->n_ctx;
    int vocab = config->vocab_size;
    if (base_config->vocab_size != vocab)
        return qref_error_set(err, QREF_ERR_INVALID, "kl divergence: the reference has vocab_size %d, the "
                              "quantized model %d, expected equal vocabularies", base_config->vocab_size, vocab);
    size_t chunks;
    qref_status status = qref_kld_chunk_count(n_tokens, options, &chunks, err);
    /* as llama-perplexity, a context beyond a model's training context runs (RoPE extends) */
    if (status == QREF_OK)
        status = result_init(result, n_ctx, vocab, n_tokens / (size_t)n_ctx, chunks, err);
    if (status == QREF_OK)
        status = tokens_digest(tokens, chunks * (size_t)n_ctx, result->tokens_sha256, err);
    if (status != QREF_OK) {
        qref_kld_result_free(result);
        return status;
    }

    /* 1. groups of chunks whose base rows fit the budget */
    int scored = result->scored_per_chunk;
    size_t row_bytes = qref_kld_row_bytes(vocab);
    size_t chunk_bytes = (size_t)scored * row_bytes;
    size_t budget = options->base_budget > 0 ? options->base_budget : (size_t)1 << 30;
    size_t group = budget / chunk_bytes;
    if (group < 1)
        group = 1;
    if (group > chunks)
        group = chunks;
    int32_t *inputs = malloc(group * (size_t)n_ctx * sizeof(int32_t));
    uint8_t *rows = malloc(group * chunk_bytes);
    double *base_nll_exact = malloc(group * (size_t)scored * sizeof(double));
    qref_kld_logits_writer writer;
    if (inputs == NULL || rows == NULL || base_nll_exact == NULL) {
        status = qref_error_set(err, QREF_ERR_NOMEM, "kl divergence: cannot allocate %zu chunks of base rows "
                                "(%zu bytes)", group, group * chunk_bytes);
        memset(&writer, 0, sizeof writer);
        writer.file.fd = -1;
        goto done;
    }
    status = qref_kld_logits_writer_open(&writer, save_path, n_ctx, vocab, (int)chunks, tokens, err);
    if (status != QREF_OK)
        goto done;

    qref_forward_options forward_options = {
        .activation_budget = options->activation_budget,
        .first_scored_position = n_ctx / 2,
    };
    for (size_t first = 0; first < chunks && status == QREF_OK; first += group) {
        size_t count = chunks - first < group ? chunks - first : group;
        kld_sink sink = {
            .targets = tokens + first * (size_t)n_ctx,
            .rows = rows,
            .out = result->tokens + first * (size_t)scored,
            .first_chunk = first,
            .n_ctx = n_ctx,
            .vocab = vocab,
            .first = n_ctx / 2,
            .scored = scored,
            .row_bytes = row_bytes,
            .base_nll_exact = base_nll_exact,
        };
        chunks_prepare_inputs(tokens, first, count, n_ctx, options->bos_id, inputs);

        /* 2. reference: base rows of this group */
        status = qref_llama_forward(base_config, base_weights, inputs, count, n_ctx, &forward_options,
                                    kld_encode_sink, &sink, err);
        if (status != QREF_OK) {
            qref_error_prefix(err, "reference model: ");
            break;
        }
        status = qref_kld_logits_writer_append(&writer, rows, count * (size_t)scored, err);
        if (status != QREF_OK)
            break;

        /* 3. quantized model: tokens of this group */
        status = qref_llama_forward(config, weights, inputs, count, n_ctx, &forward_options, kld_token_sink,
                                    &sink, err);
        if (status != QREF_OK)
            qref_error_prefix(err, "quantized model: ");
    }

    /* 4. statistics, then the file is committed */
    if (status == QREF_OK)
        status = qref_kld_summarize(result->tokens, result->token_count, &result->stats, err);
    if (status == QREF_OK) {
        status = qref_kld_logits_writer_commit(&writer, err);
        if (status == QREF_OK)
            memcpy(result->base_sha256, writer.sha256, sizeof result->base_sha256);
    }

done:
    if (status != QREF_OK) {
        qref_kld_logits_writer_abort(&writer);
        qref_kld_result_free(result);
    }
    free(inputs);
    free(rows);
    free(base_nll_exact);
    return status;
}

qref_status qref_kld_run_file(const qref_kld_logits_file *base, const qref_llama_config *config,
                              const qref_weight_provider *weights, const qref_kld_options *options,
                              qref_kld_result *result, qref_error *err)
{
    memset(result, 0, sizeof *result);
    int n_ctx = base->n_ctx;
    if (config->vocab_size != base->n_vocab)
        return qref_error_set(err, QREF_ERR_INVALID, "kl divergence: the base logits have n_vocab %d, the "
                              "quantized model vocab_size %d, expected equal vocabularies", base->n_vocab,
                              config->vocab_size);
    size_t chunks = (size_t)base->n_chunk;
    if (options->max_chunks > 0 && options->max_chunks < chunks)
        chunks = options->max_chunks;
    qref_status status = result_init(result, n_ctx, base->n_vocab, (size_t)base->n_chunk, chunks, err);
    if (status == QREF_OK)
        status = tokens_digest(base->tokens, chunks * (size_t)n_ctx, result->tokens_sha256, err);
    if (status != QREF_OK) {
        qref_kld_result_free(result);
        return status;
    }
    memcpy(result->base_sha256, base->sha256, sizeof result->base_sha256);

    /* 1. every chunk at once: the forward batches windows by its activation budget */
    int32_t *inputs = malloc(chunks * (size_t)n_ctx * sizeof(int32_t));
    if (inputs == NULL) {
        qref_kld_result_free(result);
        return qref_error_set(err, QREF_ERR_NOMEM, "kl divergence: cannot allocate %zu chunks of %d tokens",
                              chunks, n_ctx);
    }
    chunks_prepare_inputs(base->tokens, 0, chunks, n_ctx, options->bos_id, inputs);

    /* 2. quantized model against the stored rows */
    kld_sink sink = {
        .targets = base->tokens,
        .rows = (uint8_t *)base->rows, /* only read by kld_token_sink */
        .out = result->tokens,
        .first_chunk = 0,
        .n_ctx = n_ctx,
        .vocab = base->n_vocab,
        .first = n_ctx / 2,
        .scored = base->scored_per_chunk,
        .row_bytes = base->row_bytes,
    };
    qref_forward_options forward_options = {
        .activation_budget = options->activation_budget,
        .first_scored_position = n_ctx / 2,
    };
    status = qref_llama_forward(config, weights, inputs, chunks, n_ctx, &forward_options, kld_token_sink, &sink,
                                err);
    free(inputs);
    if (status != QREF_OK)
        qref_error_prefix(err, "quantized model: ");

    /* 3. statistics */
    if (status == QREF_OK)
        status = qref_kld_summarize(result->tokens, result->token_count, &result->stats, err);
    if (status != QREF_OK)
        qref_kld_result_free(result);
    return status;
}

void qref_kld_result_free(qref_kld_result *result)
{
    free(result->tokens);
    memset(result, 0, sizeof *result);
}
