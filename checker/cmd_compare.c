/*
 * qconform compare: KL divergence, top-token agreement and perplexity ratio of a quantized
 * model against its reference, with llama.cpp's `llama-perplexity --kl-divergence` protocol
 * and statistics.
 *
 *   qconform compare QUANT --reference REF --task wikitext2 --data PATH [--ctx N] [--chunks N]
 *                    [--save-base-logits FILE] [--json]
 *   qconform compare QUANT --base-logits FILE [--task wikitext2] [--ctx N] [--chunks N] [--json]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "eval/qref_kld.h"
#include "qc_args.h"
#include "qc_commands.h"
#include "qc_structure.h"
#include "qc_eval.h"
#include "qc_manifest.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform compare QUANT --reference REF --task wikitext2 --data PATH [options]\n"
            "       qconform compare QUANT --base-logits FILE [options]\n"
            "\n"
            "Compares QUANT with its full-precision reference REF (each a Hugging Face snapshot\n"
            "folder, .safetensors file or archive) as llama.cpp's llama-perplexity --kl-divergence\n"
            "does: the WikiText-2 test file (minus one trailing newline) is tokenized with REF's\n"
            "tokenizer, BOS first, cut into chunks of --ctx tokens with BOS written over each chunk's\n"
            "first token, and the second half of every chunk is scored. Prints the KL divergence of\n"
            "QUANT from REF, the change in the probability of the correct token, how often the top\n"
            "tokens agree, and both perplexities with their ratio, each with its uncertainty.\n"
            "\n"
            "options:\n"
            "  --reference REF          the full-precision model\n"
            "  --task NAME              benchmark: wikitext2\n"
            "  --data PATH              wiki.test.raw, or the canonical wikitext-2-raw-v1.zip\n"
            "  --ctx N                  chunk length in tokens (default 512; with --base-logits, the\n"
            "                           file's, and N must equal it)\n"
            "  --chunks N               evaluate only the first N chunks\n"
            "  --save-base-logits FILE  also write REF's log-probabilities in llama.cpp's\n"
            "                           --kl-divergence-base format\n"
            "  --base-logits FILE       read REF's log-probabilities and the tokens from FILE (written\n"
            "                           by --save-base-logits or by llama-perplexity\n"
            "                           --kl-divergence-base) in place of --reference and --data\n"
            "  --json                   print a JSON object instead of the llama.cpp-style summary\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 invalid input, 4 internal error.\n");
}

typedef struct compare_inputs {
    const char *quant_path;
    const char *reference_path;
    const char *task;
    const char *data_path;
    const char *base_path;        /* --base-logits */
    const char *save_path;        /* --save-base-logits */
    qc_wikitext_tokens dataset;   /* live runs only */
    size_t stream_tokens;         /* tokens of the stream the chunks come from */
    int32_t bos_id;
    bool want_manifests;          /* compute the models' manifest digests (for --json) */
    char quant_manifest[QREF_SHA256_HEX_SIZE];
    char reference_manifest[QREF_SHA256_HEX_SIZE];
} compare_inputs;

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) * 1e-9;
}

/* ---- runs -------------------------------------------------------------------------------- */

/* Stores the digest of a model's manifest (every file and tensor, as `qconform hash` lists them). */
static qref_status model_manifest_digest(const qc_model *model, char digest[QREF_SHA256_HEX_SIZE], qref_error *err)
{
    cJSON *manifest = NULL;
    qref_status status = qc_manifest_build_model(model, &manifest, digest, err);
    cJSON_Delete(manifest);
    if (status != QREF_OK)
        return qref_error_prefix(err, "%s: ", model->path);
    return QREF_OK;
}

/* Tokenizes the dataset with the reference's tokenizer and runs both models. */
static qref_status compare_live(compare_inputs *in, const qc_model *quant, const qref_kld_options *options,
                                qref_kld_result *result, qref_error *err)
{
    qc_model reference;
    qref_status status = qc_model_open(in->reference_path, &reference, err);
    if (status != QREF_OK)
        return status;
    status = qc_structure_require_valid(&reference, err);
    if (status == QREF_OK)
        status = qc_eval_wikitext_tokenize(&reference, in->data_path, QREF_PPL_PROTOCOL_LLAMACPP, &in->dataset, err);
    if (status == QREF_OK) {
        in->stream_tokens = in->dataset.count;
        in->bos_id = in->dataset.bos_id;
        qref_kld_options run_options = *options;
        run_options.bos_id = in->bos_id;
        status = qref_kld_run(&reference.config, &reference.weights, &quant->config, &quant->weights,
                              in->dataset.ids, in->dataset.count, &run_options, in->save_path, result, err);
    }
    if (status == QREF_OK && in->want_manifests) {
        status = model_manifest_digest(&reference, in->reference_manifest, err);
        if (status != QREF_OK)
            qref_kld_result_free(result);
    }
    qc_model_close(&reference);
    return status;
}

/* Reads the base log-probabilities and tokens from a file and runs the quantized model. */
static qref_status compare_from_file(compare_inputs *in, const qc_model *quant, int requested_ctx,
                                     const qref_kld_options *options, qref_kld_result *result, qref_error *err)
{
    qref_kld_logits_file base;
    qref_status status = qref_kld_logits_open(in->base_path, quant->config.vocab_size, &base, err);
    if (status != QREF_OK)
        return status;
    if (requested_ctx > 0 && requested_ctx != base.n_ctx) {
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: the base logits were computed with n_ctx %d, but "
                                "--ctx %d was given; omit --ctx or pass --ctx %d", in->base_path, base.n_ctx,
                                requested_ctx, base.n_ctx);
    } else {
        in->stream_tokens = (size_t)base.n_chunk * (size_t)base.n_ctx;
        in->bos_id = qc_eval_bos_id(quant);
        qref_kld_options run_options = *options;
        run_options.bos_id = in->bos_id;
        status = qref_kld_run_file(&base, &quant->config, &quant->weights, &run_options, result, err);
    }
    qref_kld_logits_close(&base);
    return status;
}

/* ---- the llama.cpp-style summary --------------------------------------------------------- */

/* llama.cpp's labels of the ranks, in qref_kld_rank order. */
static const char *const rank_labels[QREF_KLD_RANK_COUNT] = {
    "Maximum", "99.9%  ", "99.0%  ", "95.0%  ", "90.0%  ", "75.0%  ", "Median ",
    "25.0%  ", "10.0%  ", " 5.0%  ", " 1.0%  ", " 0.1%  ", "Minimum",
};

/* Prints the running statistics after each chunk, as llama.cpp does while it runs. */
static void print_chunk_table(const qref_kld_result *result)
{
    printf("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
           "Δp RMS            Same top p\n");
    qref_kld_sums sums = {0};
    for (size_t c = 0; c < result->chunks; c++) {
        for (int i = 0; i < result->scored_per_chunk; i++)
            qref_kld_sums_add(&sums, &result->tokens[c * (size_t)result->scored_per_chunk + (size_t)i]);
        qref_kld_stats s;
        qref_kld_stats_from_sums(&sums, &s);
        printf("%4zu", c + 1);
        printf("    %9.4lf ± %9.4lf", s.ppl.value, s.ppl.uncertainty);
        printf("    %10.5lf ± %10.5lf", s.log_ppl_ratio.value, s.log_ppl_ratio.uncertainty);
        printf("    %10.5lf ± %10.5lf", s.kld.value, s.kld.uncertainty);
        printf("    %6.3lf ± %6.3lf %%", 100.0 * s.p_diff_rms.value, 100.0 * s.p_diff_rms.uncertainty);
        printf("    %6.3lf ± %6.3lf %%\n", 100.0 * s.same_top.value, 100.0 * s.same_top.uncertainty);
    }
}

static void print_summary(const compare_inputs *in, const qref_kld_result *result)
{
    const qref_kld_stats *s = &result->stats;
    printf("compare: %s against %s, n_ctx %d, %zu of %zu chunks, %zu scored tokens\n\n", in->quant_path,
           in->base_path != NULL ? in->base_path : in->reference_path, result->n_ctx, result->chunks,
           result->chunks_available, result->token_count);
    print_chunk_table(result);
    printf("\n");
    if (result->token_count < 100)
        printf("note: fewer than 100 scored tokens; llama.cpp prints no statistics below 100\n\n");

    printf("====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %10.6lf ± %10.6lf\n", s->ppl.value, s->ppl.uncertainty);
    printf("Mean PPL(base)                : %10.6lf ± %10.6lf\n", s->ppl_base.value, s->ppl_base.uncertainty);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * s->log_ppl_cor);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6lf ± %10.6lf\n", s->log_ppl_ratio.value,
           s->log_ppl_ratio.uncertainty);
    printf("Mean PPL(Q)/PPL(base)         : %10.6lf ± %10.6lf\n", s->ppl_ratio.value, s->ppl_ratio.uncertainty);
    printf("Mean PPL(Q)-PPL(base)         : %10.6lf ± %10.6lf\n", s->ppl_diff.value, s->ppl_diff.uncertainty);
    if (s->has_exact) {
        /* llama.cpp's base values come from 16-bit rows that floor log-probabilities 16 nats below the top */
        printf("PPL(base), unencoded logits   : %10.6lf ± %10.6lf\n", s->ppl_base_exact.value,
               s->ppl_base_exact.uncertainty);
        printf("PPL(Q)/PPL(base), unencoded   : %10.6lf ± %10.6lf\n", s->ppl_ratio_exact.value,
               s->ppl_ratio_exact.uncertainty);
    }
    printf("\n");

    printf("====== KL divergence statistics ======\n");
    printf("Mean    KLD: %10.6lf ± %10.6lf\n", s->kld.value, s->kld.uncertainty);
    for (int r = 0; r < QREF_KLD_RANK_COUNT; r++)
        if (r != QREF_KLD_RANK_P75 && r != QREF_KLD_RANK_P25)
            printf("%s KLD: %10.6f\n", rank_labels[r], (double)s->kld_rank[r]);
    printf("\n");

    printf("====== Token probability statistics ======\n");
    printf("Mean    Δp: %6.3lf ± %5.3lf %%\n", 100.0 * s->p_diff.value, 100.0 * s->p_diff.uncertainty);
    for (int r = 0; r < QREF_KLD_RANK_COUNT; r++)
        printf("%s Δp: %6.3lf%%\n", rank_labels[r], 100.0 * s->p_diff_rank[r]);
    printf("RMS Δp    : %6.3lf ± %5.3lf %%\n", 100.0 * s->p_diff_rms.value, 100.0 * s->p_diff_rms.uncertainty);
    printf("Same top p: %6.3lf ± %5.3lf %%\n", 100.0 * s->same_top.value, 100.0 * s->same_top.uncertainty);
}

/* ---- JSON -------------------------------------------------------------------------------- */

/* Adds a number, or null when it is not finite (JSON has no NaN). */
static void json_add_number(cJSON *object, const char *key, double value)
{
    if (isfinite(value))
        cJSON_AddNumberToObject(object, key, value);
    else
        cJSON_AddNullToObject(object, key);
}

static void json_add_estimate(cJSON *object, const char *key, qref_estimate estimate)
{
    cJSON *item = cJSON_AddObjectToObject(object, key);
    json_add_number(item, "value", estimate.value);
    json_add_number(item, "uncertainty", estimate.uncertainty);
}

static void json_add_ranks(cJSON *object, const float ranks[QREF_KLD_RANK_COUNT], bool quartiles)
{
    cJSON *percentiles = cJSON_AddObjectToObject(object, "percentiles");
    for (int r = 0; r < QREF_KLD_RANK_COUNT; r++)
        if (quartiles || (r != QREF_KLD_RANK_P75 && r != QREF_KLD_RANK_P25))
            json_add_number(percentiles, qref_kld_rank_name((qref_kld_rank)r), ranks[r]);
}

static void json_add_sums(cJSON *object, const qref_kld_sums *sums)
{
    cJSON *item = cJSON_AddObjectToObject(object, "sums");
    json_add_number(item, "nll", sums->sum_nll);
    json_add_number(item, "nll2", sums->sum_nll2);
    json_add_number(item, "nll_base", sums->sum_nll_base);
    json_add_number(item, "nll_base2", sums->sum_nll_base2);
    json_add_number(item, "nll_nll_base", sums->sum_nll_nll_base);
    json_add_number(item, "kld", sums->sum_kld);
    json_add_number(item, "kld2", sums->sum_kld2);
    json_add_number(item, "p_diff", sums->sum_p_diff);
    json_add_number(item, "p_diff2", sums->sum_p_diff2);
    json_add_number(item, "p_diff4", sums->sum_p_diff4);
    json_add_number(item, "max_abs_p_diff", sums->max_p_diff);
    cJSON_AddNumberToObject(item, "same_top", (double)sums->n_same_top);
    cJSON_AddNumberToObject(item, "count", (double)sums->count);
}

static void json_add_string_or_null(cJSON *object, const char *key, const char *value)
{
    if (value != NULL)
        cJSON_AddStringToObject(object, key, value);
    else
        cJSON_AddNullToObject(object, key);
}

static cJSON *result_to_json(const compare_inputs *in, const qref_kld_result *result, double seconds)
{
    const qref_kld_stats *s = &result->stats;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "qconform-compare/1");
    cJSON_AddStringToObject(root, "version", QCONFORM_VERSION);
    json_add_string_or_null(root, "task", in->task);
    cJSON_AddStringToObject(root, "protocol", "llamacpp-kl-divergence");
    cJSON_AddStringToObject(root, "protocol_description",
                            "llama.cpp llama-perplexity --kl-divergence: chunks of n_ctx tokens, BOS at position "
                            "0 of every chunk, logits n_ctx/2 .. n_ctx-2 scored against the reference's "
                            "log-probabilities decoded from 16-bit codes (--kl-divergence-base format), KL "
                            "summed over entries with base log-probability > -16");
    cJSON *quantized = cJSON_AddObjectToObject(root, "quantized");
    cJSON_AddStringToObject(quantized, "path", in->quant_path);
    cJSON_AddStringToObject(quantized, "manifest_sha256", in->quant_manifest);
    if (in->reference_path != NULL) {
        cJSON *reference = cJSON_AddObjectToObject(root, "reference");
        cJSON_AddStringToObject(reference, "path", in->reference_path);
        cJSON_AddStringToObject(reference, "manifest_sha256", in->reference_manifest);
    } else {
        cJSON_AddNullToObject(root, "reference");
    }

    /* inputs and their digests */
    cJSON *base = cJSON_AddObjectToObject(root, "base_logits");
    cJSON_AddStringToObject(base, "source", in->base_path != NULL ? "file" : "reference model");
    json_add_string_or_null(base, "path", in->base_path != NULL ? in->base_path : in->save_path);
    cJSON_AddBoolToObject(base, "saved", in->save_path != NULL);
    cJSON_AddStringToObject(base, "sha256", result->base_sha256);
    if (in->base_path == NULL) {
        cJSON *dataset = cJSON_AddObjectToObject(root, "dataset");
        cJSON_AddStringToObject(dataset, "path", in->data_path);
        cJSON_AddStringToObject(dataset, "sha256", in->dataset.dataset_sha256);
        cJSON_AddStringToObject(dataset, "raw_sha256", in->dataset.raw_sha256);
        cJSON_AddNumberToObject(dataset, "rows", (double)in->dataset.rows);
        cJSON_AddStringToObject(root, "tokenizer_sha256", in->dataset.tokenizer_sha256);
    }

    /* the token positions used */
    cJSON_AddNumberToObject(root, "tokens", (double)in->stream_tokens);
    cJSON_AddStringToObject(root, "tokens_sha256", result->tokens_sha256);
    cJSON_AddNumberToObject(root, "bos_id", in->bos_id);
    cJSON_AddNumberToObject(root, "n_ctx", result->n_ctx);
    cJSON_AddNumberToObject(root, "n_vocab", result->n_vocab);
    cJSON_AddNumberToObject(root, "chunks", (double)result->chunks);
    cJSON_AddNumberToObject(root, "chunks_available", (double)result->chunks_available);
    cJSON *positions = cJSON_AddObjectToObject(root, "positions");
    cJSON_AddStringToObject(positions, "chunk_tokens", "[c * n_ctx, (c + 1) * n_ctx) for chunk c = 0 .. chunks-1");
    cJSON_AddNumberToObject(positions, "bos_position", 0);
    cJSON_AddNumberToObject(positions, "first_scored_logit", result->n_ctx / 2);
    cJSON_AddNumberToObject(positions, "last_scored_logit", result->n_ctx - 2);
    cJSON_AddNumberToObject(positions, "first_predicted_token", result->n_ctx / 2 + 1);
    cJSON_AddNumberToObject(positions, "last_predicted_token", result->n_ctx - 1);
    cJSON_AddNumberToObject(positions, "scored_per_chunk", result->scored_per_chunk);
    cJSON_AddNumberToObject(root, "tokens_scored", (double)result->token_count);

    /* statistics: fractions, not percentages */
    cJSON *ppl = cJSON_AddObjectToObject(root, "ppl");
    json_add_estimate(ppl, "quantized", s->ppl);
    json_add_estimate(ppl, "base", s->ppl_base);
    json_add_estimate(ppl, "ln_ratio", s->log_ppl_ratio);
    json_add_estimate(ppl, "ratio", s->ppl_ratio);
    json_add_estimate(ppl, "difference", s->ppl_diff);
    json_add_number(ppl, "ln_covariance", s->log_ppl_cov);
    json_add_number(ppl, "ln_correlation", s->log_ppl_cor);
    /* base and ratio from the reference's logits before the 16-bit encoding (live runs only) */
    if (s->has_exact) {
        json_add_estimate(ppl, "base_exact", s->ppl_base_exact);
        json_add_estimate(ppl, "ratio_exact", s->ppl_ratio_exact);
    }
    cJSON *kld = cJSON_AddObjectToObject(root, "kld");
    json_add_estimate(kld, "mean", s->kld);
    json_add_ranks(kld, s->kld_rank, false);
    cJSON *p_diff = cJSON_AddObjectToObject(root, "delta_p");
    json_add_estimate(p_diff, "mean", s->p_diff);
    json_add_estimate(p_diff, "rms", s->p_diff_rms);
    json_add_number(p_diff, "max_abs", s->sums.max_p_diff);
    json_add_ranks(p_diff, s->p_diff_rank, true);
    json_add_estimate(root, "same_top_p", s->same_top);
    json_add_sums(root, &s->sums);

    cJSON_AddNumberToObject(root, "threads", omp_get_max_threads());
    cJSON_AddNumberToObject(root, "seconds", seconds);
    return root;
}

/* ---- command ----------------------------------------------------------------------------- */

int qc_cmd_compare(int argc, char **argv)
{
    compare_inputs in = {0};
    const char *ctx_text = NULL, *chunks_text = NULL;
    bool json = false;
    const qc_arg_spec specs[] = {
        {"--reference", QC_ARG_STRING, &in.reference_path},
        {"--task", QC_ARG_STRING, &in.task},
        {"--data", QC_ARG_STRING, &in.data_path},
        {"--ctx", QC_ARG_STRING, &ctx_text},
        {"--chunks", QC_ARG_STRING, &chunks_text},
        {"--save-base-logits", QC_ARG_STRING, &in.save_path},
        {"--base-logits", QC_ARG_STRING, &in.base_path},
        {"--json", QC_ARG_FLAG, &json},
    };
    qc_args_result args;
    int code;
    if (qc_args_parse_command("compare", argc, argv, specs, sizeof specs / sizeof specs[0], 1, print_usage, &args,
                              &code))
        return code;

    /* options */
    if (args.positional_count != 1)
        return qc_usage_error("compare", "expected one QUANT path");
    in.quant_path = args.positional[0];
    const char *inputs[] = {in.quant_path, in.reference_path, in.data_path, in.base_path};
    for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++)
        if ((code = qc_args_check_output("compare", "--save-base-logits", in.save_path, inputs[k], false)) != 0)
            return code;
    if (in.task != NULL && strcmp(in.task, "wikitext2") != 0)
        return qc_usage_error("compare", "unknown task '%s' (supported: wikitext2)", in.task);
    if (in.base_path != NULL) {
        if (in.reference_path != NULL || in.data_path != NULL)
            return qc_usage_error("compare", "--base-logits replaces --reference and --data: the reference's "
                                  "log-probabilities and the tokens come from the file");
        if (in.save_path != NULL)
            return qc_usage_error("compare", "--save-base-logits cannot be combined with --base-logits, because "
                                  "the saved log-probabilities come from --reference");
    } else {
        if (in.reference_path == NULL)
            return qc_usage_error("compare", "missing --reference REF (or --base-logits FILE)");
        if (in.task == NULL)
            return qc_usage_error("compare", "missing --task wikitext2");
        if (in.data_path == NULL)
            return qc_usage_error("compare", "missing --data PATH");
    }
    long number;
    int requested_ctx = 0;
    if (ctx_text != NULL) {
        if ((code = qc_args_int("compare", "--ctx", ctx_text, 4, 1 << 20, &number)) != 0)
            return code;
        requested_ctx = (int)number;
    }
    qref_kld_options options = {.n_ctx = requested_ctx > 0 ? requested_ctx : 512, .bos_id = -1};
    if (chunks_text != NULL) {
        if ((code = qc_args_int("compare", "--chunks", chunks_text, 1, 1L << 40, &number)) != 0)
            return code;
        options.max_chunks = (size_t)number;
    }

    /* run */
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    qref_error err = {0};
    qc_model quant;
    if (qc_model_open(in.quant_path, &quant, &err) != QREF_OK)
        return qc_report_error(&err);
    if (qc_structure_require_valid(&quant, &err) != QREF_OK) {
        qc_model_close(&quant);
        return qc_report_error(&err);
    }
    qref_kld_result result;
    in.want_manifests = json;
    qref_status status = in.base_path != NULL
                             ? compare_from_file(&in, &quant, requested_ctx, &options, &result, &err)
                             : compare_live(&in, &quant, &options, &result, &err);
    if (status == QREF_OK && json) {
        status = model_manifest_digest(&quant, in.quant_manifest, &err);
        if (status != QREF_OK)
            qref_kld_result_free(&result);
    }
    qc_model_close(&quant);
    if (status != QREF_OK) {
        qc_wikitext_tokens_free(&in.dataset);
        return qc_report_error(&err);
    }
    double seconds = seconds_since(&start);

    /* print */
    int exit_code = QC_EXIT_PASS;
    if (json) {
        cJSON *root = result_to_json(&in, &result, seconds);
        char *text = cJSON_Print(root);
        cJSON_Delete(root);
        if (text == NULL) {
            exit_code = QC_EXIT_INTERNAL;
        } else {
            printf("%s\n", text);
            free(text);
        }
    } else {
        print_summary(&in, &result);
    }
    qref_kld_result_free(&result);
    qc_wikitext_tokens_free(&in.dataset);
    return exit_code;
}
