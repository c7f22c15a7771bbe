/*
 * qconform report: joins results of several runs.
 *
 *   qconform report merge EVAL.json... [--json]
 *   qconform report summary REPORT.json... --markdown FILE [--svg-prefix PREFIX]
 *
 * merge joins the perplexity runs of shards into the whole run's result.
 * Each input is the JSON of `qconform eval --json`, for the same model (manifest digest),
 * tokenizer, dataset, protocol, window length and window selection, and the shards I/N of
 * their --shard options must cover 0..N-1 exactly once. The NLL sums and counts of the shards
 * add up to the whole run's, so the merged perplexity is the one a single run computes, up to
 * the order of the floating-point additions.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_blob.h"
#include "io/qref_json.h"
#include "qc_commands.h"
#include "qc_eval.h"
#include "qc_summary.h"

#define MERGE_MAX_FILE_BYTES (16u << 20)

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform report merge EVAL.json... [--json]\n"
            "       qconform report summary REPORT.json... --markdown FILE [--svg-prefix PREFIX]\n"
            "\n"
            "merge: joins the JSON outputs of `qconform eval --json --shard I/N` runs into the whole\n"
            "run's perplexity. The runs must share the model, tokenizer, dataset, protocol, window\n"
            "length and window selection, and their shards must cover 0..N-1 exactly once.\n"
            "  --json   print the merged result as JSON (the eval schema) instead of one line\n"
            "\n"
            "summary: writes a Markdown summary of `qconform verify --report` files: per benchmark and\n"
            "metric, a table of methods against bits, then every evaluated cell.\n"
            "  --markdown FILE      the Markdown file to write\n"
            "  --svg-prefix PREFIX  also write one SVG plot of each metric against bits to\n"
            "                       PREFIX<benchmark>-<metric>.svg, linked from the Markdown;\n"
            "                       characters other than a-z, 0-9, - and _ in the name become -\n"
            "                       (wikitext2 (study) and ppl give wikitext2--study--ppl.svg);\n"
            "                       PREFIX's folder must exist\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 invalid input, 4 internal error.\n");
}

/* qconform report summary: options, then the Markdown and SVG files. */
static int run_summary(int argc, char **argv)
{
    const char *markdown = NULL, *svg_prefix = NULL;
    const char *paths[256];
    size_t count = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0 || strcmp(argv[i], "--svg-prefix") == 0) {
            if (i + 1 >= argc)
                return qc_usage_error("report summary", "option %s needs a value", argv[i]);
            *(strcmp(argv[i], "--markdown") == 0 ? &markdown : &svg_prefix) = argv[i + 1];
            i++;
            continue;
        }
        if (argv[i][0] == '-')
            return qc_usage_error("report summary", "unknown option '%s'", argv[i]);
        if (count == sizeof paths / sizeof paths[0])
            return qc_usage_error("report summary", "at most %zu reports", sizeof paths / sizeof paths[0]);
        paths[count++] = argv[i];
    }
    if (count == 0 || markdown == NULL)
        return qc_usage_error("report summary", "expected REPORT.json files and --markdown FILE");
    qref_error err = {0};
    if (qc_summary_write(paths, count, markdown, svg_prefix, &err) != QREF_OK)
        return qc_report_error(&err);
    printf("wrote %s from %zu report%s\n", markdown, count, count == 1 ? "" : "s");
    return QC_EXIT_PASS;
}

/* The fields every shard must share, as strings for comparison and messages. */
static const char *const shared_keys[] = {"model_sha256", "tokenizer_sha256", "protocol", "seqlen", "windows",
                                          "tokens", "task"};

/* Formats a member as text (its JSON form) into buf. */
static void member_text(const cJSON *root, const char *key, char *buf, size_t size)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    char *text = item != NULL ? cJSON_PrintUnformatted(item) : NULL;
    snprintf(buf, size, "%s", text != NULL ? text : "(absent)");
    free(text);
}

static bool read_number(const cJSON *root, const char *key, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(item))
        return false;
    *out = item->valuedouble;
    return true;
}

/* Parses "I/N" from a run's "shard" member; a run without one is shard 0/1. */
static qref_status read_shard(const char *path, const cJSON *root, unsigned long *index, unsigned long *count,
                              qref_error *err)
{
    const cJSON *shard = cJSON_GetObjectItemCaseSensitive(root, "shard");
    *index = 0;
    *count = 1;
    if (shard == NULL)
        return QREF_OK;
    char extra;
    if (!cJSON_IsString(shard) || sscanf(shard->valuestring, "%lu/%lu%c", index, count, &extra) != 2 || *count == 0 ||
        *index >= *count)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: shard: expected \"I/N\" with 0 <= I < N", path);
    return QREF_OK;
}

static qref_status merge_files(int count, const char *const *paths, cJSON **merged, qref_error *err)
{
    cJSON *first = NULL;
    bool *seen = NULL;
    unsigned long shard_count = 0;
    qref_ppl_result sums = {0};
    qref_ppl_protocol protocol = QREF_PPL_PROTOCOL_STUDY;
    qref_status status = QREF_OK;

    for (int f = 0; f < count && status == QREF_OK; f++) {
        char *text = NULL;
        size_t length = 0;
        cJSON *root = NULL;
        status = qref_file_read_all(paths[f], MERGE_MAX_FILE_BYTES, &text, &length, err);
        if (status == QREF_OK)
            status = qref_json_parse(paths[f], text, length, 16, &root, err);
        free(text);
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
        if (status == QREF_OK && (!cJSON_IsString(schema) || strcmp(schema->valuestring, "qconform-eval/1") != 0))
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: schema: expected \"qconform-eval/1\" (the output of "
                                    "qconform eval --json)", paths[f]);

        /* 1. the shard and the settings it must share with the first file */
        unsigned long index = 0, n = 0;
        if (status == QREF_OK)
            status = read_shard(paths[f], root, &index, &n, err);
        if (status == QREF_OK && f == 0) {
            shard_count = n;
            seen = calloc(n, sizeof *seen);
            if (seen == NULL)
                status = qref_error_set(err, QREF_ERR_NOMEM, "cannot track %lu shards", n);
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "protocol");
            if (status == QREF_OK && (!cJSON_IsString(name) || qc_eval_parse_protocol(name->valuestring, &protocol)))
                status = qref_error_set(err, QREF_ERR_INVALID, "%s: protocol: expected \"study\" or \"llamacpp\"",
                                        paths[f]);
        }
        if (status == QREF_OK && n != shard_count)
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: shard %lu/%lu, expected a shard of %lu like %s",
                                    paths[f], index, n, shard_count, paths[0]);
        if (status == QREF_OK && seen[index])
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: shard %lu/%lu is given twice", paths[f], index, n);
        for (size_t k = 0; status == QREF_OK && f > 0 && k < sizeof shared_keys / sizeof shared_keys[0]; k++) {
            char found[160], expected[160];
            member_text(root, shared_keys[k], found, sizeof found);
            member_text(first, shared_keys[k], expected, sizeof expected);
            if (strcmp(found, expected) != 0)
                status = qref_error_set(err, QREF_ERR_INVALID, "%s: %s is %s, expected %s as in %s", paths[f],
                                        shared_keys[k], found, expected, paths[0]);
        }
        if (status == QREF_OK) {
            char found[160], expected[160];
            member_text(cJSON_GetObjectItemCaseSensitive(root, "dataset"), "raw_sha256", found, sizeof found);
            member_text(first != NULL ? cJSON_GetObjectItemCaseSensitive(first, "dataset") : NULL, "raw_sha256",
                        expected, sizeof expected);
            if (f > 0 && strcmp(found, expected) != 0)
                status = qref_error_set(err, QREF_ERR_INVALID, "%s: dataset.raw_sha256 is %s, expected %s as in %s",
                                        paths[f], found, expected, paths[0]);
        }

        /* 2. add the shard's sums */
        double windows = 0, scored = 0, nll = 0, nll_sq = 0, mean = 0, mean_sq = 0;
        if (status == QREF_OK &&
            !(read_number(root, "windows_evaluated", &windows) && read_number(root, "tokens_scored", &scored) &&
              read_number(root, "nll_sum", &nll) && read_number(root, "nll_sq_sum", &nll_sq) &&
              read_number(root, "window_mean_nll_sum", &mean) && read_number(root, "window_mean_nll_sq_sum", &mean_sq)))
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: missing windows_evaluated, tokens_scored or an NLL "
                                    "sum; expected the JSON of qconform eval --json", paths[f]);
        if (status == QREF_OK) {
            seen[index] = true;
            sums.windows += (size_t)windows;
            sums.tokens_scored += (size_t)scored;
            sums.nll_sum += nll;
            sums.nll_sq_sum += nll_sq;
            sums.window_mean_sum += mean;
            sums.window_mean_sq_sum += mean_sq;
        }
        if (f == 0 && status == QREF_OK)
            first = root; /* kept: the merged result starts from it */
        else
            cJSON_Delete(root);
    }

    /* 3. every shard present, then the whole run's perplexity */
    for (unsigned long i = 0; status == QREF_OK && i < shard_count; i++)
        if (!seen[i])
            status = qref_error_set(err, QREF_ERR_INVALID, "shard %lu/%lu is missing from the files given", i,
                                    shard_count);
    free(seen);
    if (status != QREF_OK) {
        cJSON_Delete(first);
        return status;
    }
    qref_perplexity_finish(&sums, protocol);
    cJSON_DeleteItemFromObjectCaseSensitive(first, "shard");
    static const char *const replaced[] = {"ppl", "ppl_stderr", "windows_evaluated", "tokens_scored", "nll_sum",
                                           "nll_sq_sum", "window_mean_nll_sum", "window_mean_nll_sq_sum", "seconds"};
    for (size_t k = 0; k < sizeof replaced / sizeof replaced[0]; k++)
        cJSON_DeleteItemFromObjectCaseSensitive(first, replaced[k]);
    cJSON_AddNumberToObject(first, "ppl", sums.ppl);
    cJSON_AddNumberToObject(first, "ppl_stderr", sums.ppl_stderr);
    cJSON_AddNumberToObject(first, "windows_evaluated", (double)sums.windows);
    cJSON_AddNumberToObject(first, "tokens_scored", (double)sums.tokens_scored);
    cJSON_AddNumberToObject(first, "nll_sum", sums.nll_sum);
    cJSON_AddNumberToObject(first, "nll_sq_sum", sums.nll_sq_sum);
    cJSON_AddNumberToObject(first, "window_mean_nll_sum", sums.window_mean_sum);
    cJSON_AddNumberToObject(first, "window_mean_nll_sq_sum", sums.window_mean_sq_sum);
    cJSON *sources = cJSON_AddArrayToObject(first, "merged_from");
    for (int f = 0; f < count; f++)
        cJSON_AddItemToArray(sources, cJSON_CreateString(paths[f]));
    *merged = first;
    return QREF_OK;
}

int qc_cmd_report(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return QC_EXIT_PASS;
        }
    }
    if (argc >= 2 && strcmp(argv[1], "summary") == 0)
        return run_summary(argc, argv);
    if (argc < 2 || strcmp(argv[1], "merge") != 0)
        return qc_usage_error("report", "expected the subcommand merge or summary");
    bool json = false;
    const char *paths[64];
    int count = 0;

    /* --json and up to 64 files, in any order */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return QC_EXIT_PASS;
        }
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        }
        if (argv[i][0] == '-')
            return qc_usage_error("report merge", "unknown option '%s'", argv[i]);
        if (count == (int)(sizeof paths / sizeof paths[0]))
            return qc_usage_error("report merge", "at most %zu files", sizeof paths / sizeof paths[0]);
        paths[count++] = argv[i];
    }
    if (count == 0)
        return qc_usage_error("report merge", "expected at least one EVAL.json");

    qref_error err = {0};
    cJSON *merged = NULL;
    if (merge_files(count, paths, &merged, &err) != QREF_OK)
        return qc_report_error(&err);
    if (json) {
        char *text = cJSON_Print(merged);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        const cJSON *ppl = cJSON_GetObjectItemCaseSensitive(merged, "ppl");
        printf("wikitext2 ppl %.6f +/- %.6f from %d shard file%s\n", ppl->valuedouble,
               cJSON_GetObjectItemCaseSensitive(merged, "ppl_stderr")->valuedouble, count, count == 1 ? "" : "s");
    }
    cJSON_Delete(merged);
    return QC_EXIT_PASS;
}
