/*
 * KL divergence against a reference (llama.cpp --kl-divergence semantics): per-token values
 * on hand-derived logit vectors, the statistics formulas on token lists with closed-form
 * results, llama.cpp's percentiles, the 16-bit base row codec and its error bound, the base
 * logits file (round trip and one rejected file per failure kind), and whole runs of the
 * synth256 fixture against itself.
 */
#include "test_support.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <omp.h>

#include "core/qref_dtype.h"
#include "core/qref_sha256.h"
#include "eval/qref_kld.h"
#include "eval/qref_kld_logits.h"
#include "io/qref_snapshot.h"
#include "model/qref_tensor_weights.h"

/* f32 results of O(1) quantities: a few ulp of each operand, far below every effect tested. */
#define F32_TOLERANCE 2e-6

/* Fails unless |got - expected| <= tolerance, in double (cmocka's float assertion rounds to f32). */
#define assert_close(got, expected, tolerance) \
    check_close((double)(got), (double)(expected), (tolerance), #got, __FILE__, __LINE__)

static void check_close(double got, double expected, double tolerance, const char *expression, const char *file,
                        int line)
{
    if (!(fabs(got - expected) <= tolerance)) {
        print_error("%s = %.17g, expected %.17g within %g\n", expression, got, expected, tolerance);
        _fail(file, line);
    }
}

/* Exact log-softmax of logits[i], in double. */
static double exact_log_prob(const float *logits, int n, int i)
{
    double max = logits[0];
    for (int k = 1; k < n; k++)
        max = logits[k] > max ? logits[k] : max;
    double sum = 0.0;
    for (int k = 0; k < n; k++)
        sum += exp((double)logits[k] - max);
    return (double)logits[i] - max - log(sum);
}

/* KL(p || q) in double over the entries with log p > -16 (all entries when cutoff is false). */
static double exact_kld(const float *base, const float *quant, int n, bool cutoff)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        double log_p = exact_log_prob(base, n, i);
        if (cutoff && log_p <= -16.0)
            continue;
        sum += exp(log_p) * (log_p - exact_log_prob(quant, n, i));
    }
    return sum;
}

/* ---- one token --------------------------------------------------------------------------- */

/*
 * Base logits (0, ln 3) give p = (1/4, 3/4); quantized logits (0, 0) give q = (1/2, 1/2).
 * Target 1:
 *   KL = 1/4 ln(1/4 / 1/2) + 3/4 ln(3/4 / 1/2) = -ln(2)/4 + 3/4 ln(3/2) = 0.1308120359
 *   nll = -ln(1/2) = 0.6931471806, nll_base = -ln(3/4) = 0.2876820725
 *   delta p = 1/2 - 3/4 = -0.25
 *   argmax q = 0 (a tie: the first index wins), argmax p = 1, so not the same top token.
 */
static void token_hand_computed(void **state)
{
    (void)state;
    const float base[2] = {0.0f, (float)log(3.0)};
    const float quant[2] = {0.0f, 0.0f};
    qref_kld_token t;
    qref_kld_token_from_logits(2, base, quant, 1, &t);
    assert_close(t.kld, 0.1308120359, F32_TOLERANCE);
    assert_close(t.nll, 0.6931471806, F32_TOLERANCE);
    assert_close(t.nll_base, 0.2876820725, F32_TOLERANCE);
    assert_close(t.p_diff, -0.25, F32_TOLERANCE);
    assert_int_equal(t.same_top, 0);

    /* the same through a 16-bit base row: both codes are exact here (0 and 65535), so only
     * f32 rounding separates the results */
    uint8_t row[2 * (2 + 4)];
    assert_int_equal(qref_kld_row_bytes(2), sizeof row);
    qref_kld_row_encode(2, base, 1, row);
    assert_int_equal(qref_load_u16(row + 8), 0);
    assert_int_equal(qref_load_u16(row + 10), 65535);
    qref_kld_token r;
    qref_kld_token_from_row(2, row, quant, 1, &r);
    assert_close(r.kld, 0.1308120359, 1e-5);
    assert_close(r.nll, 0.6931471806, F32_TOLERANCE);
    assert_close(r.nll_base, 0.2876820725, 1e-5);
    assert_close(r.p_diff, -0.25, 1e-5);
    assert_int_equal(r.same_top, 0);

    /* swapping the roles: p = (1/2, 1/2) against q = (1/4, 3/4), target 0:
     * KL = 1/2 ln 2 + 1/2 ln(2/3) = 0.1438410362, delta p = 1/4 - 1/2, argmax p = 0 (tie) != 1 */
    qref_kld_token_from_logits(2, quant, base, 0, &t);
    assert_close(t.kld, 0.1438410362, F32_TOLERANCE);
    assert_close(t.p_diff, -0.25, F32_TOLERANCE);
    assert_int_equal(t.same_top, 0);
}

/*
 * llama.cpp leaves base entries with log p <= -16 out of the KL sum. Base logits: two at 0
 * and 1000 at -17.5, so each low entry has log p = -17.5 - ln(2 + 1000 e^-17.5) = -18.19;
 * quantized logits all 0 (q = 1/1002). The expected value is the definition restricted to
 * log p > -16, evaluated in double; the low entries would add about
 * 1000 * 1.25e-8 * (-18.19 + ln 1002) = -1.4e-4.
 */
static void token_cutoff_at_minus_16(void **state)
{
    (void)state;
    enum { N = 1002 };
    static float base[N], quant[N];
    for (int i = 0; i < N; i++) {
        base[i] = i < 2 ? 0.0f : -17.5f;
        quant[i] = 0.0f;
    }
    double expected = exact_kld(base, quant, N, true);
    double full = exact_kld(base, quant, N, false);
    assert_true(expected - full > 1e-4); /* the cutoff is visible at this size */

    qref_kld_token t;
    qref_kld_token_from_logits(N, base, quant, 0, &t);
    assert_close(t.kld, expected, 1e-5);

    /* 16-bit row: zmin = max(-17.5, 0 - 16) = -16, the low entries get code 0 and decode to
     * min_log_prob = -16 - lse < -16, so they are left out too */
    static uint8_t row[2 * (N + 4)];
    qref_kld_row_encode(N, base, 0, row);
    float scale, min_log_prob;
    qref_kld_row_params(row, &scale, &min_log_prob);
    assert_true(min_log_prob < -16.0f);
    qref_kld_token_from_row(N, row, quant, 0, &t);
    assert_close(t.kld, expected, 1e-5);
}

/* Identical logits through the exact path: every KL term is exactly 0. */
static void token_identical_exact_zero(void **state)
{
    (void)state;
    enum { N = 257, TOKENS = 300 };
    test_rng rng = {42};
    static float logits[N];
    static qref_kld_token tokens[TOKENS];
    for (int k = 0; k < TOKENS; k++) {
        for (int i = 0; i < N; i++)
            logits[i] = 8.0f * test_rng_float(&rng);
        qref_kld_token_from_logits(N, logits, logits, k % N, &tokens[k]);
        assert_true(tokens[k].kld == 0.0);
        assert_true(tokens[k].p_diff == 0.0f);
        assert_true(tokens[k].nll == tokens[k].nll_base);
        assert_int_equal(tokens[k].same_top, 1);
    }
    qref_kld_stats stats;
    qref_error err = {0};
    assert_int_equal(qref_kld_summarize(tokens, TOKENS, &stats, &err), QREF_OK);
    assert_true(stats.kld.value == 0.0);
    assert_true(stats.kld_rank[QREF_KLD_RANK_MAX] == 0.0f);
    assert_true(stats.same_top.value == 1.0);
    assert_true(stats.same_top.uncertainty == 0.0);
    assert_true(stats.log_ppl_ratio.value == 0.0);
    assert_true(stats.ppl_ratio.value == 1.0);
    assert_true(stats.ppl_diff.value == 0.0);
    assert_true(stats.p_diff_rms.value == 0.0);
}

/*
 * Identical logits through a 16-bit base row: each decoded log p~_i differs from log p_i by
 * d_i with |d_i| <= step/2, so KL = sum p~_i d_i is at most step/2 * sum p~_i in magnitude,
 * below one step.
 */
static void token_identical_row_within_step(void **state)
{
    (void)state;
    enum { N = 1000, TOKENS = 50 };
    test_rng rng = {7};
    static float logits[N];
    static uint8_t row[2 * (N + 4)];
    for (int k = 0; k < TOKENS; k++) {
        for (int i = 0; i < N; i++)
            logits[i] = 12.0f * test_rng_float(&rng);
        qref_kld_row_encode(N, logits, k, row);
        float scale, min_log_prob;
        qref_kld_row_params(row, &scale, &min_log_prob);
        qref_kld_token t;
        qref_kld_token_from_row(N, row, logits, k, &t);
        assert_true(fabs(t.kld) <= scale);
        assert_int_equal(t.same_top, 1);
        float max = logits[0];
        for (int i = 1; i < N; i++)
            max = fmaxf(max, logits[i]);
        if (logits[k] > max - 16.0f) /* the target has a code, so its decoded log p is within a step */
            assert_true(fabsf(t.nll - t.nll_base) <= scale);
    }
}

/* ---- statistics -------------------------------------------------------------------------- */

/*
 * 20 tokens, i = 0..19, with values exact in f32:
 *   nll_base = 1 + (i % 2), nll = nll_base + 0.25, kld = 2 (i % 2), delta p = 0.5 or -0.25,
 *   same top for i < 15.
 * Derivations (n = 20, unc(x) = sqrt((mean x^2 - mean^2) / 19)):
 *   mean nll_base = 1.5, var = 2.5 - 2.25 = 0.25; mean nll = 1.75, var = 0.25;
 *   Cov = (mean(nll nll_base) - 1.75 * 1.5) / 19 = (2.875 - 2.625) / 19 = 0.25 / 19, so the
 *   correlation is 1 and ln ratio = 0.25 with uncertainty sqrt(2 * 0.25/19 - 2 * 0.25/19) = 0;
 *   PPL(Q) - PPL(base) has uncertainty sqrt(0.25/19) * (e^1.75 - e^1.5);
 *   KLD mean 1, var = 2 - 1 = 1; delta p mean 0.125, var = 0.15625 - 0.015625 = 0.140625;
 *   RMS delta p = sqrt(0.15625), mean dp^4 = 0.033203125, var(dp^2) = 0.0087890625,
 *   unc(RMS) = 0.5 / RMS * sqrt(0.0087890625 / 19); same top 0.75 +- sqrt(0.75 * 0.25 / 19).
 */
static void stats_closed_form(void **state)
{
    (void)state;
    qref_kld_token tokens[20];
    for (int i = 0; i < 20; i++) {
        tokens[i].nll_base = 1.0f + (float)(i % 2);
        tokens[i].nll = tokens[i].nll_base + 0.25f;
        tokens[i].kld = 2.0 * (i % 2);
        tokens[i].p_diff = i % 2 ? -0.25f : 0.5f;
        tokens[i].same_top = i < 15;
    }
    qref_kld_stats s;
    qref_error err = {0};
    assert_int_equal(qref_kld_summarize(tokens, 20, &s, &err), QREF_OK);
    double c = sqrt(0.25 / 19.0);
    assert_close(s.log_ppl.value, 1.75, 1e-12);
    assert_close(s.log_ppl.uncertainty, c, 1e-12);
    assert_close(s.ppl.value, exp(1.75), 1e-12);
    assert_close(s.ppl.uncertainty, exp(1.75) * c, 1e-12);
    assert_close(s.ppl_base.value, exp(1.5), 1e-12);
    assert_close(s.ppl_base.uncertainty, exp(1.5) * c, 1e-12);
    assert_close(s.log_ppl_cov, 0.25 / 19.0, 1e-12);
    assert_close(s.log_ppl_cor, 1.0, 1e-9);
    assert_close(s.log_ppl_ratio.value, 0.25, 1e-12);
    assert_close(s.log_ppl_ratio.uncertainty, 0.0, 1e-6);
    assert_close(s.ppl_ratio.value, exp(0.25), 1e-12);
    assert_close(s.ppl_diff.value, exp(1.75) - exp(1.5), 1e-12);
    assert_close(s.ppl_diff.uncertainty, c * (exp(1.75) - exp(1.5)), 1e-9);
    assert_close(s.kld.value, 1.0, 1e-12);
    assert_close(s.kld.uncertainty, sqrt(1.0 / 19.0), 1e-12);
    assert_close(s.p_diff.value, 0.125, 1e-12);
    assert_close(s.p_diff.uncertainty, sqrt(0.140625 / 19.0), 1e-12);
    assert_close(s.p_diff_rms.value, sqrt(0.15625), 1e-12);
    assert_close(s.p_diff_rms.uncertainty, 0.5 / sqrt(0.15625) * sqrt(0.0087890625 / 19.0), 1e-12);
    assert_close(s.same_top.value, 0.75, 1e-12);
    assert_close(s.same_top.uncertainty, sqrt(0.75 * 0.25 / 19.0), 1e-12);
    assert_true(s.sums.max_p_diff == 0.5f);
    assert_int_equal(s.sums.n_same_top, 15);
    assert_int_equal(s.sums.count, 20);

    /* percentiles of kld (ten 0s, ten 2s) and delta p (ten -0.25s, ten 0.5s) */
    assert_true(s.kld_rank[QREF_KLD_RANK_MAX] == 2.0f);
    assert_true(s.kld_rank[QREF_KLD_RANK_MIN] == 0.0f);
    assert_true(s.kld_rank[QREF_KLD_RANK_MEDIAN] == 1.0f); /* (0 + 2) / 2 */
    assert_true(s.p_diff_rank[QREF_KLD_RANK_MEDIAN] == 0.125f);
    assert_true(s.p_diff_rank[QREF_KLD_RANK_P90] == 0.5f);
    assert_true(s.p_diff_rank[QREF_KLD_RANK_P10] == -0.25f);
}

/* llama.cpp reports no uncertainty from 10 values or fewer (mean_and_uncertainty). */
static void stats_few_tokens_no_uncertainty(void **state)
{
    (void)state;
    qref_kld_token tokens[10];
    for (int i = 0; i < 10; i++)
        tokens[i] = (qref_kld_token){
            .kld = i, .nll = 1.0f + 0.1f * (float)i, .nll_base = 1.0f, .p_diff = 0.01f * (float)i, .same_top = 1};
    qref_kld_stats s;
    qref_error err = {0};
    assert_int_equal(qref_kld_summarize(tokens, 10, &s, &err), QREF_OK);
    assert_close(s.kld.value, 4.5, 1e-12);
    assert_true(s.kld.uncertainty == 0.0);
    assert_true(s.log_ppl.uncertainty == 0.0);
    assert_true(s.log_ppl_cov == 0.0);
    assert_true(isnan(s.log_ppl_cor));
}

static void stats_reject_bad_tokens(void **state)
{
    (void)state;
    qref_kld_stats s;
    qref_error err = {0};
    test_assert_error(qref_kld_summarize(NULL, 0, &s, &err), &err, QREF_ERR_INVALID, "no scored tokens");
    qref_kld_token tokens[3];
    memset(tokens, 0, sizeof tokens);
    tokens[1].kld = NAN;
    test_assert_error(qref_kld_summarize(tokens, 3, &s, &err), &err, QREF_ERR_INVALID, "scored token 1 has kld nan");
}

/*
 * llama.cpp's percentile: linear interpolation at f * (n - 1) on the sorted values. On
 * 0, 10, ..., 100 (n = 11) that is 100 f; the median of an odd list is its middle value and of
 * an even list the mean of the two middle values.
 */
static void percentiles_known_list(void **state)
{
    (void)state;
    float values[11];
    for (int i = 0; i < 11; i++)
        values[i] = 10.0f * (float)i;
    assert_close(qref_kld_percentile(values, 11, 0.999f), 99.9, 1e-4);
    assert_close(qref_kld_percentile(values, 11, 0.99f), 99.0, 1e-4);
    assert_close(qref_kld_percentile(values, 11, 0.95f), 95.0, 1e-4);
    assert_close(qref_kld_percentile(values, 11, 0.90f), 90.0, 1e-4);
    assert_close(qref_kld_percentile(values, 11, 0.25f), 25.0, 1e-4);
    assert_close(qref_kld_percentile(values, 11, 0.05f), 5.0, 1e-4);
    assert_close(qref_kld_percentile(values, 11, 0.001f), 0.1, 1e-4);
    assert_true(qref_kld_percentile(values, 11, 1.0f) == 100.0f);
    assert_true(qref_kld_percentile(values, 11, 0.0f) == 0.0f);
    assert_true(qref_kld_median(values, 11) == 50.0f);

    const float even[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    assert_true(qref_kld_median(even, 4) == 2.5f);
    assert_close(qref_kld_percentile(even, 4, 0.5f), 2.5, 1e-6);
    assert_close(qref_kld_percentile(even, 4, 0.9f), 3.7, 1e-6); /* 0.9 * 3 = 2.7 */

    const float single[1] = {7.0f};
    assert_true(qref_kld_percentile(single, 1, 0.5f) == 7.0f);
    assert_true(qref_kld_median(single, 1) == 7.0f);

    /* the summary sorts the per-token values first */
    qref_kld_token tokens[11];
    for (int i = 0; i < 11; i++)
        tokens[i] = (qref_kld_token){.kld = 10.0 * ((i * 7) % 11), .nll = 1.0f, .nll_base = 1.0f, .p_diff = 0.0f,
                                     .same_top = 1};
    qref_kld_stats s;
    qref_error err = {0};
    assert_int_equal(qref_kld_summarize(tokens, 11, &s, &err), QREF_OK);
    assert_true(s.kld_rank[QREF_KLD_RANK_MAX] == 100.0f);
    assert_close(s.kld_rank[QREF_KLD_RANK_P99_9], 99.9, 1e-4);
    assert_close(s.kld_rank[QREF_KLD_RANK_P90], 90.0, 1e-4);
    assert_true(s.kld_rank[QREF_KLD_RANK_MEDIAN] == 50.0f);
    assert_close(s.kld_rank[QREF_KLD_RANK_P1], 1.0, 1e-4);
    assert_true(s.kld_rank[QREF_KLD_RANK_MIN] == 0.0f);
    assert_string_equal(qref_kld_rank_name(QREF_KLD_RANK_P99_9), "99.9%");
    assert_true(qref_kld_rank_fraction(QREF_KLD_RANK_P0_1) == 0.001f);
}

/* ---- 16-bit rows ------------------------------------------------------------------------- */

/*
 * Round trip of a random row with an odd vocabulary: every entry above zmin decodes within
 * half a quantization step, plus ROW_F32_SLACK for the f32 arithmetic of encoding and decoding
 * (a few ulp of values up to 50 in magnitude, ulp(50) = 3.8e-6); entries at or below zmin decode
 * to min_log_prob, which is at least their exact value.
 */
#define ROW_F32_SLACK 2e-5

static void row_round_trip_within_half_step(void **state)
{
    (void)state;
    enum { N = 1001 };
    test_rng rng = {1234};
    static float logits[N], decoded[N];
    static uint8_t row[2 * (N + 1 + 4) + 2]; /* one spare word to catch an overrun */
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < N; i++)
            logits[i] = 20.0f * test_rng_float(&rng) - 10.0f;
        memset(row, 0xAB, sizeof row);
        assert_int_equal(qref_kld_row_bytes(N), 2 * (N + 1 + 4));
        double nll = qref_kld_row_encode(N, logits, trial, row);
        assert_close(nll, -exact_log_prob(logits, N, trial), 1e-5);
        assert_int_equal(qref_load_u16(row + 8 + 2 * N), 0);             /* pad code */
        assert_int_equal(qref_load_u16(row + qref_kld_row_bytes(N)), 0xABAB); /* untouched */

        float max = logits[0], min = logits[0];
        for (int i = 1; i < N; i++) {
            max = fmaxf(max, logits[i]);
            min = fminf(min, logits[i]);
        }
        float zmin = fmaxf(min, max - 16.0f);
        float scale, min_log_prob;
        qref_kld_row_params(row, &scale, &min_log_prob);
        assert_close(scale, (max - zmin) / 65535.0, 1e-9);
        qref_kld_row_decode(N, row, decoded);
        double worst = 0.0;
        for (int i = 0; i < N; i++) {
            double exact = exact_log_prob(logits, N, i);
            if (logits[i] > zmin) {
                worst = fmax(worst, fabs(decoded[i] - exact));
            } else {
                assert_true(decoded[i] == min_log_prob);
                assert_true(decoded[i] >= exact - ROW_F32_SLACK);
            }
        }
        assert_true(worst <= 0.5 * scale + ROW_F32_SLACK);
    }
}

/* Equal logits: scale 0, every code 0, and every entry decodes to -ln n. */
static void row_equal_logits(void **state)
{
    (void)state;
    const float logits[5] = {1.5f, 1.5f, 1.5f, 1.5f, 1.5f};
    uint8_t row[2 * (6 + 4)];
    assert_int_equal(qref_kld_row_bytes(5), sizeof row);
    memset(row, 0xFF, sizeof row);
    qref_kld_row_encode(5, logits, 2, row);
    float scale, min_log_prob;
    qref_kld_row_params(row, &scale, &min_log_prob);
    assert_true(scale == 0.0f);
    assert_close(min_log_prob, -log(5.0), F32_TOLERANCE);
    for (int i = 0; i < 6; i++)
        assert_int_equal(qref_load_u16(row + 8 + 2 * i), 0);
    float decoded[5];
    qref_kld_row_decode(5, row, decoded);
    for (int i = 0; i < 5; i++)
        assert_close(decoded[i], -log(5.0), F32_TOLERANCE);
}

/* ---- base logits files ------------------------------------------------------------------- */

enum { FILE_CTX = 8, FILE_VOCAB = 5, FILE_CHUNKS = 2, FILE_SCORED = 3 /* 8 - 1 - 8/2 */ };
/* 20 header bytes + 2*8 tokens of 4 bytes + 2*3 rows of 2*(6 + 4) bytes */
#define FILE_SIZE (20 + 64 + 120)

/* Writes a valid file to path from seeded logits; returns the encoded rows. */
static uint8_t *write_sample_file(const char *path, int32_t tokens[FILE_CHUNKS * FILE_CTX], char sha[QREF_SHA256_HEX_SIZE])
{
    test_rng rng = {99};
    for (int t = 0; t < FILE_CHUNKS * FILE_CTX; t++)
        tokens[t] = (int32_t)(test_rng_next(&rng) % FILE_VOCAB);
    size_t row_bytes = qref_kld_row_bytes(FILE_VOCAB);
    uint8_t *rows = malloc(FILE_CHUNKS * FILE_SCORED * row_bytes);
    for (int r = 0; r < FILE_CHUNKS * FILE_SCORED; r++) {
        float logits[FILE_VOCAB];
        for (int i = 0; i < FILE_VOCAB; i++)
            logits[i] = 4.0f * test_rng_float(&rng);
        qref_kld_row_encode(FILE_VOCAB, logits, r % FILE_VOCAB, rows + r * row_bytes);
    }
    qref_kld_logits_writer writer;
    qref_error err = {0};
    assert_int_equal(qref_kld_logits_writer_open(&writer, path, FILE_CTX, FILE_VOCAB, FILE_CHUNKS, tokens, &err),
                     QREF_OK);
    assert_int_equal(qref_kld_logits_writer_append(&writer, rows, FILE_SCORED, &err), QREF_OK);
    assert_int_equal(qref_kld_logits_writer_append(&writer, rows + FILE_SCORED * row_bytes, FILE_SCORED, &err),
                     QREF_OK);
    assert_int_equal(qref_kld_logits_writer_commit(&writer, &err), QREF_OK);
    memcpy(sha, writer.sha256, QREF_SHA256_HEX_SIZE);
    return rows;
}

static void file_round_trip(void **state)
{
    (void)state;
    const char *path = test_tmp_path("kld_round_trip.bin");
    int32_t tokens[FILE_CHUNKS * FILE_CTX];
    char sha[QREF_SHA256_HEX_SIZE];
    uint8_t *rows = write_sample_file(path, tokens, sha);

    size_t size;
    char *bytes = test_read_file(path, &size);
    assert_int_equal(size, FILE_SIZE);
    assert_memory_equal(bytes, "_logits_", 8);
    assert_int_equal(qref_load_u32(bytes + 8), FILE_CTX);
    assert_int_equal(qref_load_u32(bytes + 12), FILE_VOCAB);
    assert_int_equal(qref_load_u32(bytes + 16), FILE_CHUNKS);
    char file_sha[QREF_SHA256_HEX_SIZE];
    assert_int_equal(qref_sha256_buffer_hex(bytes, size, file_sha), 0);
    assert_string_equal(file_sha, sha);

    qref_kld_logits_file file;
    qref_error err = {0};
    assert_int_equal(qref_kld_logits_open(path, FILE_VOCAB, &file, &err), QREF_OK);
    assert_int_equal(file.n_ctx, FILE_CTX);
    assert_int_equal(file.n_vocab, FILE_VOCAB);
    assert_int_equal(file.n_chunk, FILE_CHUNKS);
    assert_int_equal(file.scored_per_chunk, FILE_SCORED);
    assert_memory_equal(file.tokens, tokens, sizeof tokens);
    assert_memory_equal(qref_kld_logits_row(&file, 0, 0), rows, FILE_CHUNKS * FILE_SCORED * file.row_bytes);
    assert_memory_equal(qref_kld_logits_row(&file, 1, 2), rows + 5 * file.row_bytes, file.row_bytes);
    assert_string_equal(file.sha256, sha);
    qref_kld_logits_close(&file);

    /* a writer without a path computes the same digest and writes nothing */
    qref_kld_logits_writer digest_only;
    assert_int_equal(qref_kld_logits_writer_open(&digest_only, NULL, FILE_CTX, FILE_VOCAB, FILE_CHUNKS, tokens, &err),
                     QREF_OK);
    assert_int_equal(qref_kld_logits_writer_append(&digest_only, rows, FILE_CHUNKS * FILE_SCORED, &err), QREF_OK);
    assert_int_equal(qref_kld_logits_writer_commit(&digest_only, &err), QREF_OK);
    assert_string_equal(digest_only.sha256, sha);
    free(bytes);
    free(rows);
}

/* A writer that did not receive every row leaves no file behind. */
static void file_writer_incomplete(void **state)
{
    (void)state;
    const char *path = test_tmp_path("kld_incomplete.bin");
    unlink(path);
    int32_t tokens[FILE_CHUNKS * FILE_CTX] = {0};
    uint8_t rows[FILE_SCORED * 2 * (6 + 4)] = {0};
    qref_kld_logits_writer writer;
    qref_error err = {0};
    assert_int_equal(qref_kld_logits_writer_open(&writer, path, FILE_CTX, FILE_VOCAB, FILE_CHUNKS, tokens, &err),
                     QREF_OK);
    assert_int_equal(qref_kld_logits_writer_append(&writer, rows, FILE_SCORED, &err), QREF_OK);
    test_assert_error(qref_kld_logits_writer_commit(&writer, &err), &err, QREF_ERR_INTERNAL,
                      "3 rows written, expected 6");
    assert_int_equal(access(path, F_OK), -1);
}

/* One malformed file: the sample file with one change, and the error it must give. */
typedef struct malformed_case {
    const char *name;
    size_t offset;        /* byte to overwrite, or SIZE_MAX for none */
    uint32_t value;       /* 32-bit little-endian value stored at offset */
    long size_change;     /* bytes removed (< 0) or appended (> 0) */
    int expected_vocab;
    qref_status status;
    const char *phrase;
} malformed_case;

static void file_rejects_malformed(void **state)
{
    (void)state;
    const char *path = test_tmp_path("kld_malformed_source.bin");
    int32_t tokens[FILE_CHUNKS * FILE_CTX];
    char sha[QREF_SHA256_HEX_SIZE];
    free(write_sample_file(path, tokens, sha));
    size_t size;
    char *good = test_read_file(path, &size);
    assert_int_equal(size, FILE_SIZE);
    uint32_t nan_bits = 0x7fc00000u, inf_bits = 0x7f800000u, one_bits = 0x3f800000u;
    size_t first_row = 20 + 64;
    size_t row_bytes = qref_kld_row_bytes(FILE_VOCAB);

    const malformed_case cases[] = {
        {"bad magic", 0, 0x6f6c5f5fu /* "__lo" */, 0, FILE_VOCAB, QREF_ERR_INVALID, "magic \"__loits_\" at offset 0, expected \"_logits_\""},
        {"short header", SIZE_MAX, 0, -(long)(FILE_SIZE - 12), FILE_VOCAB, QREF_ERR_INVALID,
         "file is 12 bytes, expected at least 20"},
        {"truncated", SIZE_MAX, 0, -1, FILE_VOCAB, QREF_ERR_INVALID, "file is 203 bytes, expected 204"},
        {"trailing bytes", SIZE_MAX, 0, 4, FILE_VOCAB, QREF_ERR_INVALID, "file is 208 bytes, expected 204"},
        {"vocab mismatch", SIZE_MAX, 0, 0, 6, QREF_ERR_INVALID, "n_vocab 5, expected 6"},
        {"n_ctx too small", 8, 2, 0, FILE_VOCAB, QREF_ERR_INVALID, "n_ctx 2, expected at least 3"},
        {"n_ctx negative", 8, 0xffffffffu, 0, FILE_VOCAB, QREF_ERR_INVALID, "n_ctx 4294967295"},
        {"n_vocab zero", 12, 0, 0, 0, QREF_ERR_INVALID, "n_vocab 0, expected a positive vocabulary size"},
        {"no chunks", 16, 0, 0, FILE_VOCAB, QREF_ERR_INVALID, "n_chunk 0, expected at least one chunk"},
        {"chunk count overflow", 16, 0x7fffffffu, 0, FILE_VOCAB, QREF_ERR_INVALID,
         "file is 204 bytes, expected 197568495544"},
        {"token out of range", 20 + 4 * 11, 5, 0, FILE_VOCAB, QREF_ERR_INVALID,
         "token 5 at chunk 1, position 3 (byte offset 64), expected an id in [0, 5)"},
        {"token negative", 20, 0xffffffffu, 0, FILE_VOCAB, QREF_ERR_INVALID, "token -1 at chunk 0, position 0"},
        {"NaN scale", first_row + 4 * row_bytes, nan_bits, 0, FILE_VOCAB, QREF_ERR_INVALID,
         "chunk 1, logit position 5 (byte offset 164): scale nan, expected a finite value >= 0"},
        {"infinite scale", first_row, inf_bits, 0, FILE_VOCAB, QREF_ERR_INVALID, "scale inf"},
        {"negative scale", first_row, 0xbf800000u, 0, FILE_VOCAB, QREF_ERR_INVALID, "scale -1"},
        {"positive min_log_prob", first_row + 4, one_bits, 0, FILE_VOCAB, QREF_ERR_INVALID,
         "min_log_prob 1, expected a finite log-probability <= 0"},
        {"NaN min_log_prob", first_row + row_bytes + 4, nan_bits, 0, FILE_VOCAB, QREF_ERR_INVALID,
         "chunk 0, logit position 5 (byte offset 108): min_log_prob nan"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const malformed_case *m = &cases[c];
        size_t bad_size = (size_t)((long)size + m->size_change);
        uint8_t *bad = calloc(size + 8, 1);
        memcpy(bad, good, size);
        if (m->offset != SIZE_MAX)
            qref_store_u32(bad + m->offset, m->value);
        qref_kld_logits_file file;
        qref_error err = {0};
        print_message("case: %s\n", m->name);
        test_assert_error(qref_kld_logits_parse("base.bin", bad, bad_size, m->expected_vocab, &file, &err), &err,
                          m->status, m->phrase);
        assert_non_null(strstr(err.message, "base.bin: "));
        assert_null(file.tokens);
        free(bad);
    }

    qref_kld_logits_file file;
    qref_error err = {0};
    test_assert_error(qref_kld_logits_open(test_tmp_path("kld_missing.bin"), FILE_VOCAB, &file, &err), &err,
                      QREF_ERR_IO, "kld_missing.bin");
    free(good);
}

/* ---- runs of synth256 against itself ----------------------------------------------------- */

typedef struct synth_model {
    qref_snapshot *snapshot;
    qref_llama_config config;
    qref_tensor_weights tensor_weights;
    qref_weight_provider weights;
} synth_model;

static void synth_open(synth_model *model)
{
    qref_error err = {0};
    assert_int_equal(qref_snapshot_open(test_fixture_path("models/synth256"), &model->snapshot, &err), QREF_OK);
    const qref_blob *config = qref_snapshot_find_file(model->snapshot, "config.json");
    assert_non_null(config);
    assert_int_equal(qref_llama_config_parse("config.json", (const char *)config->data, config->size,
                                             &model->config, &err),
                     QREF_OK);
    model->tensor_weights.tensors = qref_snapshot_tensors(model->snapshot);
    model->tensor_weights.codec = NULL;
    model->tensor_weights.codec_config = NULL;
    qref_tensor_weights_provider(&model->tensor_weights, &model->weights);
}

/*
 * A run computes the KLD from the same 16-bit rows it saves, so the saved file gives identical
 * per-token values, and the values do not depend on the thread count. Against itself the model
 * agrees on every top token and each token's KLD stays within one quantization step.
 */
static void run_live_equals_file_and_threads(void **state)
{
    (void)state;
    synth_model model;
    synth_open(&model);
    enum { CTX = 64, TOKENS = 3 * CTX + 10 };
    int32_t tokens[TOKENS];
    test_rng rng = {5};
    for (int t = 0; t < TOKENS; t++)
        tokens[t] = (int32_t)(test_rng_next(&rng) % (uint64_t)model.config.vocab_size);
    tokens[0] = 1;
    const char *path = test_tmp_path("kld_synth256.bin");
    qref_kld_options options = {.n_ctx = CTX, .bos_id = 1, .base_budget = 1};  /* one chunk per group */
    qref_error err = {0};

    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    qref_kld_result single_thread;
    assert_int_equal(qref_kld_run(&model.config, &model.weights, &model.config, &model.weights, tokens, TOKENS,
                                  &options, path, &single_thread, &err),
                     QREF_OK);
    omp_set_num_threads(threads > 1 ? threads : 3);
    qref_kld_result all_threads;
    options.base_budget = 0;
    assert_int_equal(qref_kld_run(&model.config, &model.weights, &model.config, &model.weights, tokens, TOKENS,
                                  &options, NULL, &all_threads, &err),
                     QREF_OK);
    omp_set_num_threads(threads);

    assert_int_equal(single_thread.chunks, 3);
    assert_int_equal(single_thread.chunks_available, 3);
    assert_int_equal(single_thread.scored_per_chunk, CTX - 1 - CTX / 2);
    assert_int_equal(single_thread.token_count, 3 * (CTX - 1 - CTX / 2));
    assert_int_equal(all_threads.token_count, single_thread.token_count);
    assert_memory_equal(all_threads.tokens, single_thread.tokens, single_thread.token_count * sizeof(qref_kld_token));
    assert_string_equal(all_threads.base_sha256, single_thread.base_sha256);
    assert_string_equal(all_threads.tokens_sha256, single_thread.tokens_sha256);

    qref_kld_logits_file file;
    assert_int_equal(qref_kld_logits_open(path, model.config.vocab_size, &file, &err), QREF_OK);
    assert_int_equal(file.n_chunk, 3);
    assert_memory_equal(file.tokens, tokens, 3 * CTX * sizeof(int32_t));
    assert_string_equal(file.sha256, single_thread.base_sha256);
    qref_kld_result from_file;
    assert_int_equal(qref_kld_run_file(&file, &model.config, &model.weights, &options, &from_file, &err), QREF_OK);
    /* a file run has the same per-token values, except that the exact reference NLL is unknown */
    for (size_t i = 0; i < single_thread.token_count; i++) {
        qref_kld_token expected = single_thread.tokens[i];
        assert_true(isfinite(expected.nll_base_exact));
        assert_true(isnan(from_file.tokens[i].nll_base_exact));
        expected.nll_base_exact = from_file.tokens[i].nll_base_exact;
        assert_memory_equal(&from_file.tokens[i], &expected, sizeof expected);
    }
    assert_true(single_thread.stats.has_exact);
    assert_false(from_file.stats.has_exact);
    assert_string_equal(from_file.tokens_sha256, single_thread.tokens_sha256);
    assert_string_equal(from_file.base_sha256, single_thread.base_sha256);
    assert_true(from_file.stats.kld.value == single_thread.stats.kld.value);

    for (size_t i = 0; i < single_thread.token_count; i++) {
        size_t chunk = i / (size_t)single_thread.scored_per_chunk;
        int index = (int)(i % (size_t)single_thread.scored_per_chunk);
        float scale, min_log_prob;
        qref_kld_row_params(qref_kld_logits_row(&file, chunk, index), &scale, &min_log_prob);
        assert_true(fabs(single_thread.tokens[i].kld) <= scale);
        assert_int_equal(single_thread.tokens[i].same_top, 1);
    }
    assert_true(single_thread.stats.same_top.value == 1.0);

    /* --chunks caps the chunks read from the file */
    qref_kld_options two = options;
    two.max_chunks = 2;
    qref_kld_result capped;
    assert_int_equal(qref_kld_run_file(&file, &model.config, &model.weights, &two, &capped, &err), QREF_OK);
    assert_int_equal(capped.chunks, 2);
    assert_memory_equal(capped.tokens, from_file.tokens, capped.token_count * sizeof(qref_kld_token));

    qref_kld_result_free(&capped);
    qref_kld_result_free(&from_file);
    qref_kld_logits_close(&file);
    qref_kld_result_free(&single_thread);
    qref_kld_result_free(&all_threads);
    qref_snapshot_free(model.snapshot);
}

static void run_rejects_bad_inputs(void **state)
{
    (void)state;
    synth_model model;
    synth_open(&model);
    int32_t tokens[200] = {0};
    qref_kld_result result;
    qref_error err = {0};

    qref_kld_options options = {.n_ctx = 128, .bos_id = 1};
    test_assert_error(qref_kld_run(&model.config, &model.weights, &model.config, &model.weights, tokens, 200,
                                   &options, NULL, &result, &err),
                      &err, QREF_ERR_INVALID, "200 tokens, expected at least 256 (2 * n_ctx");

    qref_llama_config other = model.config;
    other.vocab_size = 1000;
    options.n_ctx = 64;
    test_assert_error(qref_kld_run(&other, &model.weights, &model.config, &model.weights, tokens, 200, &options,
                                   NULL, &result, &err),
                      &err, QREF_ERR_INVALID, "the reference has vocab_size 1000, the quantized model 512");

    /* a file whose vocabulary is not the model's */
    const char *path = test_tmp_path("kld_vocab5.bin");
    int32_t file_tokens[FILE_CHUNKS * FILE_CTX];
    char sha[QREF_SHA256_HEX_SIZE];
    free(write_sample_file(path, file_tokens, sha));
    qref_kld_logits_file file;
    assert_int_equal(qref_kld_logits_open(path, 0, &file, &err), QREF_OK);
    test_assert_error(qref_kld_run_file(&file, &model.config, &model.weights, &options, &result, &err), &err,
                      QREF_ERR_INVALID, "the base logits have n_vocab 5, the quantized model vocab_size 512");
    qref_kld_logits_close(&file);
    qref_snapshot_free(model.snapshot);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_hand_computed),
        cmocka_unit_test(token_cutoff_at_minus_16),
        cmocka_unit_test(token_identical_exact_zero),
        cmocka_unit_test(token_identical_row_within_step),
        cmocka_unit_test(stats_closed_form),
        cmocka_unit_test(stats_few_tokens_no_uncertainty),
        cmocka_unit_test(stats_reject_bad_tokens),
        cmocka_unit_test(percentiles_known_list),
        cmocka_unit_test(row_round_trip_within_half_step),
        cmocka_unit_test(row_equal_logits),
        cmocka_unit_test(file_round_trip),
        cmocka_unit_test(file_writer_incomplete),
        cmocka_unit_test(file_rejects_malformed),
        cmocka_unit_test(run_live_equals_file_and_threads),
        cmocka_unit_test(run_rejects_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
