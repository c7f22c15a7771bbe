/*
 * KL divergence of a quantized model against a reference model, with llama.cpp's
 * `llama-perplexity --kl-divergence` statistics (ggml-org/llama.cpp
 * tools/perplexity/perplexity.cpp: kl_divergence, process_logits, log_softmax).
 *
 * Protocol: the token stream (BOS first) is cut into chunks of n_ctx tokens, the remainder
 * dropped. Both models run every chunk with its first token replaced by BOS. The logits at
 * positions n_ctx/2 .. n_ctx-2 predict tokens n_ctx/2+1 .. n_ctx-1, so n_ctx - 1 - n_ctx/2
 * tokens per chunk are scored (255 for n_ctx = 512).
 *
 * Per scored token with target t, reference ("base") distribution p and quantized
 * distribution q, llama.cpp accumulates:
 *   nll       = -log q_t and nll_base = -log p_t, their squares and their product;
 *   kld       = sum over the entries i with log p_i > -16 of p_i * (log p_i - log q_i);
 *   same top  = argmax q == argmax p, the first index winning ties in both;
 *   delta p   = q_t - p_t, its square and fourth power.
 * llama.cpp always reads the base from its 16-bit file (qref_kld_logits.h), so its log p_i are
 * the decoded codes. qref_kld_token_from_row does the same. qref_kld_token_from_logits uses
 * the exact f32 log-softmax of the base logits instead, so identical logits give a KLD of
 * exactly 0. Both keep llama.cpp's f32 operation order.
 *
 * Final statistics (llama.cpp prints them only for 100 tokens or more; they are computed here
 * for any count >= 1): for a per-token value x over n tokens, mean = sum x / n and
 * uncertainty = sqrt((sum x^2 / n - mean^2) / (n - 1)), set to 0 when n <= 10 or the
 * variance is not positive. Cov(a, b) = (sum ab / n - mean a * mean b) / (n - 1), 0 when n < 10.
 *   PPL(Q) = exp(mean nll) +- PPL(Q) * unc(nll), PPL(base) likewise;
 *   Cor(ln PPL(Q), ln PPL(base)) = Cov(nll, nll_base) / (unc(nll) * unc(nll_base));
 *   ln ratio = mean nll - mean nll_base +- sqrt(unc^2 + unc_base^2 - 2 Cov);
 *   ratio = exp(ln ratio) +- ratio * unc(ln ratio);
 *   PPL(Q) - PPL(base) +- sqrt(unc_Q^2 + unc_base^2 - 2 PPL(Q) PPL(base) Cov);
 *   KLD mean +- uncertainty; delta p mean +- uncertainty;
 *   RMS delta p = sqrt(mean dp^2) +- unc(dp^2) / (2 RMS), with unc(dp^2) from the sums of
 *   dp^2 and dp^4; same top p = k / n +- sqrt(p (1 - p) / (n - 1)).
 * Percentiles of the per-token KLD and delta p (as f32) by linear interpolation on the sorted
 * values at position f * (n - 1) in f32; the median is the middle value, or the f32 mean of
 * the two middle values for even n.
 *
 * Determinism: per-token values are stored by token index and every sum runs in token order,
 * so results do not depend on the thread count (llama.cpp merges per-thread partial sums in
 * whatever order its threads finish, so its last digits can vary from run to run).
 */
#ifndef QREF_KLD_H
#define QREF_KLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "eval/qref_kld_logits.h"
#include "model/qref_config.h"
#include "model/qref_weights.h"

/* llama.cpp's cutoff: base entries with log-probability <= -16 are left out of the KL sum. */
#define QREF_KLD_LOG_PROB_CUTOFF (-16.0f)

/* The values of one scored token. */
typedef struct qref_kld_token {
    double kld;        /* KL(base || quantized) over the entries above the cutoff */
    float nll;         /* -log q_t */
    float nll_base;    /* -log p_t */
    float p_diff;      /* q_t - p_t */
    int32_t same_top;  /* 1 when the two argmaxes agree */
    /*
     * -log p_t from the reference's own logits before the 16-bit encoding, or NaN when only a
     * base logits file was read. The encoding floors log-probabilities at about 16 nats below
     * the top one, so nll_base (as llama.cpp reports it) understates rare targets.
     */
    double nll_base_exact;
} qref_kld_token;

/* Computes a token from the quantized logits and the reference logits (exact base). */
void qref_kld_token_from_logits(int n_vocab, const float *base_logits, const float *logits, int target,
                                qref_kld_token *out);

/* Computes a token from the quantized logits and an encoded base row, as llama.cpp does. */
void qref_kld_token_from_row(int n_vocab, const uint8_t *base_row, const float *logits, int target,
                             qref_kld_token *out);

/* llama.cpp's accumulators (kl_divergence_result), summed in token order. */
typedef struct qref_kld_sums {
    double sum_nll, sum_nll2;
    double sum_nll_base, sum_nll_base2;
    double sum_nll_nll_base;
    double sum_kld, sum_kld2;
    double sum_p_diff, sum_p_diff2, sum_p_diff4;
    float max_p_diff;  /* max |delta p| */
    size_t n_same_top;
    size_t count;
    double sum_nll_base_exact, sum_nll_base_exact2, sum_nll_nll_base_exact;
    size_t count_exact; /* tokens with a finite nll_base_exact */
} qref_kld_sums;

/* Adds one token to the sums with llama.cpp's conversions (f32 products, double sums). */
void qref_kld_sums_add(qref_kld_sums *sums, const qref_kld_token *token);

/* A value and its uncertainty (one standard error). */
typedef struct qref_estimate {
    double value;
    double uncertainty;
} qref_estimate;

/* The percentiles llama.cpp prints, highest first. */
typedef enum qref_kld_rank {
    QREF_KLD_RANK_MAX,
    QREF_KLD_RANK_P99_9,
    QREF_KLD_RANK_P99,
    QREF_KLD_RANK_P95,
    QREF_KLD_RANK_P90,
    QREF_KLD_RANK_P75,     /* printed for delta p only */
    QREF_KLD_RANK_MEDIAN,
    QREF_KLD_RANK_P25,     /* printed for delta p only */
    QREF_KLD_RANK_P10,
    QREF_KLD_RANK_P5,
    QREF_KLD_RANK_P1,
    QREF_KLD_RANK_P0_1,
    QREF_KLD_RANK_MIN,
    QREF_KLD_RANK_COUNT
} qref_kld_rank;

/* Fraction of a rank (1 for the maximum, 0.5 for the median, 0 for the minimum). */
float qref_kld_rank_fraction(qref_kld_rank rank);
/* Name of a rank for reports: "max", "99.9%", ..., "median", ..., "min". */
const char *qref_kld_rank_name(qref_kld_rank rank);

typedef struct qref_kld_stats {
    qref_kld_sums sums;
    qref_estimate ppl;            /* PPL(Q) */
    qref_estimate ppl_base;       /* PPL(base) */
    qref_estimate log_ppl;        /* mean nll */
    qref_estimate log_ppl_base;   /* mean nll_base */
    double log_ppl_cov;           /* Cov(nll, nll_base) of the means, as defined above */
    double log_ppl_cor;           /* NaN when an uncertainty is 0 */
    qref_estimate log_ppl_ratio;  /* ln(PPL(Q)/PPL(base)) */
    qref_estimate ppl_ratio;      /* PPL(Q)/PPL(base) */
    qref_estimate ppl_diff;       /* PPL(Q) - PPL(base) */
    qref_estimate kld;            /* mean KLD */
    qref_estimate p_diff;         /* mean delta p (a fraction, not %) */
    qref_estimate p_diff_rms;     /* RMS delta p */
    qref_estimate same_top;       /* fraction of tokens whose argmaxes agree */
    /*
     * PPL(base) and PPL(Q)/PPL(base) from the exact reference NLLs, with the same
     * uncertainty rules; has_exact is false when a token lacks an exact NLL (file runs).
     */
    bool has_exact;
    qref_estimate ppl_base_exact;
    qref_estimate ppl_ratio_exact;
    bool have_percentiles;        /* set by qref_kld_summarize */
    float kld_rank[QREF_KLD_RANK_COUNT];
    float p_diff_rank[QREF_KLD_RANK_COUNT];
} qref_kld_stats;

/* Fills every statistic of stats that follows from sums (not the percentiles). */
void qref_kld_stats_from_sums(const qref_kld_sums *sums, qref_kld_stats *stats);

/* Sums count tokens in order and computes every statistic, percentiles included. */
qref_status qref_kld_summarize(const qref_kld_token *tokens, size_t count, qref_kld_stats *stats,
                               qref_error *err);

/* llama.cpp's percentile of sorted[0..n), n >= 1, for fraction f: see the file comment. */
float qref_kld_percentile(const float *sorted, size_t n, float fraction);

/* llama.cpp's median of sorted[0..n), n >= 1. */
float qref_kld_median(const float *sorted, size_t n);

/* ---- runs over token chunks -------------------------------------------------------------- */

typedef struct qref_kld_options {
    int n_ctx;                  /* chunk length; llama.cpp's default is 512 */
    size_t max_chunks;          /* 0 = every full chunk */
    int32_t bos_id;             /* written at position 0 of every chunk; -1 = keep the token */
    size_t activation_budget;   /* bytes per forward batch; 0 = the forward's default */
    size_t base_budget;         /* bytes of encoded base rows held at once; 0 = 1 GiB */
} qref_kld_options;

typedef struct qref_kld_result {
    int n_ctx;
    int n_vocab;
    size_t chunks_available;    /* full chunks in the stream (file: n_chunk) */
    size_t chunks;              /* chunks evaluated */
    int scored_per_chunk;
    qref_kld_token *tokens;     /* [chunks * scored_per_chunk], chunk-major */
    size_t token_count;
    char tokens_sha256[QREF_SHA256_HEX_SIZE]; /* of the chunks' tokens as int32 little-endian */
    char base_sha256[QREF_SHA256_HEX_SIZE];   /* of the base logits file (all of its chunks) */
    qref_kld_stats stats;
} qref_kld_result;

/*
 * Runs the reference and the quantized model over the chunks of tokens[0..n_tokens) and
 * fills result. Needs at least 2 * n_ctx tokens (as llama-perplexity does) and equal
 * vocabulary sizes. The reference's scored logits are encoded into 16-bit rows, the bytes of
 * a base logits file, and the KLD is computed from those rows, so a later run from the saved
 * file gives identical numbers. With save_path the file is written atomically (nothing is
 * left at save_path on failure); without it result->base_sha256 is still the SHA-256 the file
 * would have. Chunks are processed in groups whose rows fit in options->base_budget: each
 * group runs the reference, then the quantized model.
 */
qref_status qref_kld_run(const qref_llama_config *base_config, const qref_weight_provider *base_weights,
                         const qref_llama_config *config, const qref_weight_provider *weights,
                         const int32_t *tokens, size_t n_tokens, const qref_kld_options *options,
                         const char *save_path, qref_kld_result *result, qref_error *err);

/* Stores the chunk count qref_kld_run evaluates for n_tokens; fails when n_ctx < 3 or n_tokens < 2 * n_ctx. */
qref_status qref_kld_chunk_count(size_t n_tokens, const qref_kld_options *options, size_t *chunks,
                                 qref_error *err);

/*
 * Runs the quantized model over the chunks stored in a base logits file (its tokens and its
 * n_ctx; options->n_ctx is ignored, options->max_chunks caps the chunks) and fills result.
 */
qref_status qref_kld_run_file(const qref_kld_logits_file *base, const qref_llama_config *config,
                              const qref_weight_provider *weights, const qref_kld_options *options,
                              qref_kld_result *result, qref_error *err);

void qref_kld_result_free(qref_kld_result *result);

#endif
