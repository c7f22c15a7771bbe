/*
 * qconform eval: perplexity of one model on WikiText-2.
 *
 *   qconform eval MODEL --task wikitext2 --data PATH [--protocol study|llamacpp]
 *                 [--seqlen N | --ctx N] [--windows N | --chunks N] [--shard I/N] [--adapter DIR] [--json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "qc_args.h"
#include "qc_commands.h"
#include "qc_structure.h"
#include "qc_eval.h"
#include "qc_manifest.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform eval MODEL --task wikitext2 --data PATH [options]\n"
            "\n"
            "Computes the perplexity of MODEL (a Hugging Face snapshot folder, .safetensors file or\n"
            "archive in any format inspect reads, or a GGUF file) on the WikiText-2 test split.\n"
            "\n"
            "options:\n"
            "  --task NAME        benchmark: wikitext2\n"
            "  --data PATH        wiki.test.raw, or the canonical wikitext-2-raw-v1.zip\n"
            "  --protocol NAME    study (default): rows joined with \"\\n\\n\", one BOS, mean of window\n"
            "                     means; llamacpp: llama-perplexity's chunks with the second half scored\n"
            "  --seqlen N         window length in tokens (default: min(2048, max_position_embeddings)\n"
            "                     for study, 512 for llamacpp)\n"
            "  --windows N        evaluate only the first N windows\n"
            "  --ctx N            llama-perplexity's name for --seqlen (implies --protocol llamacpp)\n"
            "  --chunks N         llama-perplexity's name for --windows (implies --protocol llamacpp)\n"
            "  --shard I/N        evaluate windows w with w %% N == I (0-based), for splitting a run\n"
            "  --adapter DIR      PEFT LoRA adapter folder merged into MODEL's linears\n"
            "  --json             print a JSON object instead of one line\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 invalid input, 4 internal error.\n");
}

/* Parses "I/N" with 0 <= I < N. */
static int parse_shard(const char *value, size_t *index, size_t *count)
{
    unsigned long i, n;
    char extra;
    if (sscanf(value, "%lu/%lu%c", &i, &n, &extra) != 2 || n == 0 || i >= n)
        return qc_usage_error("eval", "option --shard: '%s' is not I/N with 0 <= I < N", value);
    *index = i;
    *count = n;
    return 0;
}

int qc_cmd_eval(int argc, char **argv)
{
    const char *task = NULL, *data = NULL, *protocol_name = NULL, *seqlen_text = NULL, *windows_text = NULL,
               *shard_text = NULL, *ctx_text = NULL, *chunks_text = NULL, *adapter = NULL;
    bool json = false;
    const qc_arg_spec specs[] = {
        {"--task", QC_ARG_STRING, &task},       {"--data", QC_ARG_STRING, &data},
        {"--protocol", QC_ARG_STRING, &protocol_name}, {"--seqlen", QC_ARG_STRING, &seqlen_text},
        {"--windows", QC_ARG_STRING, &windows_text}, {"--shard", QC_ARG_STRING, &shard_text},
        {"--ctx", QC_ARG_STRING, &ctx_text},    {"--chunks", QC_ARG_STRING, &chunks_text},
        {"--json", QC_ARG_FLAG, &json},         {"--adapter", QC_ARG_STRING, &adapter},
    };
    qc_args_result args;
    int code;
    if (qc_args_parse_command("eval", argc, argv, specs, sizeof specs / sizeof specs[0], 1, print_usage, &args, &code))
        return code;

    /* options */
    if (args.positional_count != 1)
        return qc_usage_error("eval", "expected one MODEL path");
    if (task == NULL || strcmp(task, "wikitext2") != 0)
        return qc_usage_error("eval", task == NULL ? "missing --task wikitext2" : "unknown task '%s' "
                              "(supported: wikitext2)", task);
    if (data == NULL)
        return qc_usage_error("eval", "missing --data PATH");
    qc_ppl_request request = {.data_path = data};
    if (protocol_name != NULL && qc_eval_parse_protocol(protocol_name, &request.protocol) != 0)
        return qc_usage_error("eval", "unknown protocol '%s' (supported: study, llamacpp)", protocol_name);

    /* --ctx and --chunks are llama-perplexity's names for --seqlen and --windows */
    if (ctx_text != NULL && seqlen_text != NULL)
        return qc_usage_error("eval", "--ctx and --seqlen set the same window length; pass one of them");
    if (chunks_text != NULL && windows_text != NULL)
        return qc_usage_error("eval", "--chunks and --windows set the same window count; pass one of them");
    if (ctx_text != NULL || chunks_text != NULL) {
        if (protocol_name != NULL && request.protocol != QREF_PPL_PROTOCOL_LLAMACPP)
            return qc_usage_error("eval", "%s is an option of the llamacpp protocol, not of '%s'; use %s with the "
                                  "study protocol", ctx_text != NULL ? "--ctx" : "--chunks", protocol_name,
                                  ctx_text != NULL ? "--seqlen" : "--windows");
        request.protocol = QREF_PPL_PROTOCOL_LLAMACPP;
    }
    const char *seqlen_option = ctx_text != NULL ? "--ctx" : "--seqlen";
    const char *windows_option = chunks_text != NULL ? "--chunks" : "--windows";
    if (ctx_text != NULL)
        seqlen_text = ctx_text;
    if (chunks_text != NULL)
        windows_text = chunks_text;
    long number;
    if (seqlen_text != NULL) {
        if ((code = qc_args_int("eval", seqlen_option, seqlen_text, 2, 1 << 20, &number)) != 0)
            return code;
        request.seqlen = (int)number;
    }
    if (windows_text != NULL) {
        if ((code = qc_args_int("eval", windows_option, windows_text, 1, 1L << 40, &number)) != 0)
            return code;
        request.max_windows = (size_t)number;
    }
    if (shard_text != NULL && (code = parse_shard(shard_text, &request.shard_index, &request.shard_count)) != 0)
        return code;

    /* evaluate */
    qref_error err = {0};
    qc_model model;
    if (qc_model_open(args.positional[0], &model, &err) != QREF_OK)
        return qc_report_error(&err);
    qc_ppl_outcome outcome;
    qref_status status = qc_structure_require_valid(&model, &err);
    if (status == QREF_OK && adapter != NULL)
        status = qc_model_use_adapter(&model, adapter, &err);
    if (status == QREF_OK)
        status = qc_eval_wikitext_ppl(&model, &request, &outcome, &err);
    /* the JSON names the model by its manifest digest, as verify's reports do */
    char model_digest[QREF_SHA256_HEX_SIZE] = "";
    cJSON *manifest = NULL;
    if (status == QREF_OK && json)
        status = qc_manifest_build_model(&model, &manifest, model_digest, &err);
    cJSON_Delete(manifest);
    char adapter_digest[QREF_SHA256_HEX_SIZE] = "";
    if (model.adapter != NULL)
        snprintf(adapter_digest, sizeof adapter_digest, "%s", qref_lora_digest(model.adapter));
    qc_model_close(&model);
    if (status != QREF_OK)
        return qc_report_error(&err);

    /* print */
    if (json) {
        cJSON *root = qc_ppl_outcome_to_json(&outcome, data);
        cJSON_AddStringToObject(root, "schema", "qconform-eval/1");
        cJSON_AddStringToObject(root, "model", args.positional[0]);
        cJSON_AddStringToObject(root, "model_sha256", model_digest);
        if (adapter != NULL) {
            cJSON_AddStringToObject(root, "adapter", adapter);
            cJSON_AddStringToObject(root, "adapter_sha256", adapter_digest);
        }
        cJSON_AddNumberToObject(root, "threads", omp_get_max_threads());
        if (request.shard_count > 1) {
            char shard[64];
            snprintf(shard, sizeof shard, "%zu/%zu", request.shard_index, request.shard_count);
            cJSON_AddStringToObject(root, "shard", shard);
        }
        char *text = cJSON_Print(root);
        cJSON_Delete(root);
        if (text == NULL)
            return QC_EXIT_INTERNAL;
        printf("%s\n", text);
        free(text);
    } else {
        /* windows of the whole text, whatever --windows and --shard keep of them */
        const qref_ppl_result *r = &outcome.result;
        size_t available = r->tokens / (size_t)outcome.seqlen;
        char shard[64] = "";
        if (request.shard_count > 1)
            snprintf(shard, sizeof shard, ", shard %zu/%zu", request.shard_index, request.shard_count);
        if (r->windows == 0)
            printf("wikitext2: no windows in this shard (%s protocol, seqlen %d, %zu windows selected of %zu%s, "
                   "%zu tokens)\n", qref_ppl_protocol_name(outcome.protocol), outcome.seqlen, r->windows_total,
                   available, shard, r->tokens);
        else
            printf("wikitext2 ppl %.6f (%s protocol, seqlen %d, %zu of %zu windows%s, %zu tokens)\n", r->ppl,
                   qref_ppl_protocol_name(outcome.protocol), outcome.seqlen, r->windows, available, shard,
                   r->tokens);
    }
    return QC_EXIT_PASS;
}
