/*
 * qconform logits: the f32 next-token logits of a model for one token sequence.
 *
 *   qconform logits MODEL (--ids 1,2,3 | --text T [--no-bos]) [--adapter DIR] --out FILE
 *
 * FILE receives positions x vocab little-endian f32 values, row i holding the logits after
 * reading tokens 0..i, written atomically.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "model/qref_llama.h"
#include "qc_args.h"
#include "qc_commands.h"
#include "qc_structure.h"
#include "qc_model.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform logits MODEL (--ids LIST | --text TEXT [--no-bos]) [--adapter DIR] --out FILE\n"
            "\n"
            "Runs MODEL (a snapshot folder, .safetensors file or archive in any format inspect\n"
            "reads, or a GGUF file) on one token sequence and writes its logits as little-endian f32,\n"
            "row-major [positions][vocab].\n"
            "\n"
            "options:\n"
            "  --ids LIST    comma-separated token ids, e.g. 1,403,407\n"
            "  --text TEXT   text to encode with the model's tokenizer (BOS first)\n"
            "  --no-bos      with --text, do not put the BOS id first\n"
            "  --adapter DIR PEFT LoRA adapter folder merged into MODEL's linears\n"
            "  --out FILE    output file\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 invalid input, 4 internal error.\n");
}

/* Parses "1,2,3" into a fresh array; returns the usage exit code on malformed input. */
static int parse_ids(const char *list, int32_t **ids, size_t *count)
{
    size_t capacity = 1;
    for (const char *p = list; *p; p++)
        capacity += *p == ',';
    *ids = malloc(capacity * sizeof **ids);
    if (*ids == NULL)
        return QC_EXIT_INTERNAL;
    *count = 0;
    const char *p = list;
    while (1) {
        char *end = NULL;
        errno = 0;
        long value = strtol(p, &end, 10);
        if (end == p || errno != 0 || value < 0 || value > INT32_MAX || (*end != ',' && *end != '\0')) {
            free(*ids);
            *ids = NULL;
            return qc_usage_error("logits", "option --ids: '%s' is not a comma-separated list of "
                                  "non-negative token ids", list);
        }
        (*ids)[(*count)++] = (int32_t)value;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

typedef struct logits_buffer {
    float *values; /* [positions][vocab] */
    int vocab;
} logits_buffer;

static qref_status store_logits(void *ctx, size_t window, int position, int count, const float *logits,
                                qref_error *err)
{
    (void)window;
    (void)err;
    logits_buffer *buffer = ctx;
    memcpy(buffer->values + (size_t)position * buffer->vocab, logits,
           (size_t)count * (size_t)buffer->vocab * sizeof(float));
    return QREF_OK;
}

int qc_cmd_logits(int argc, char **argv)
{
    const char *ids_text = NULL, *text = NULL, *out_path = NULL, *adapter = NULL;
    bool no_bos = false;
    const qc_arg_spec specs[] = {
        {"--ids", QC_ARG_STRING, &ids_text},
        {"--text", QC_ARG_STRING, &text},
        {"--out", QC_ARG_STRING, &out_path},
        {"--no-bos", QC_ARG_FLAG, &no_bos},
        {"--adapter", QC_ARG_STRING, &adapter},
    };
    qc_args_result args;
    int code;
    if (qc_args_parse_command("logits", argc, argv, specs, sizeof specs / sizeof specs[0], 1, print_usage, &args, &code))
        return code;
    if (args.positional_count != 1)
        return qc_usage_error("logits", "expected one MODEL path");
    if ((ids_text == NULL) == (text == NULL))
        return qc_usage_error("logits", "give exactly one of --ids and --text");
    if (out_path == NULL)
        return qc_usage_error("logits", "missing --out FILE");
    if ((code = qc_args_check_output("logits", "--out", out_path, args.positional[0], false)) != 0)
        return code;
    if (no_bos && text == NULL)
        return qc_usage_error("logits", "--no-bos applies to --text only");

    int32_t *ids = NULL;
    size_t count = 0;
    if (ids_text != NULL && (code = parse_ids(ids_text, &ids, &count)) != 0)
        return code;

    qref_error err = {0};
    qc_model model;
    if (qc_model_open(args.positional[0], &model, &err) != QREF_OK) {
        free(ids);
        return qc_report_error(&err);
    }
    qref_status status = qc_structure_require_valid(&model, &err);
    if (status == QREF_OK && adapter != NULL)
        status = qc_model_use_adapter(&model, adapter, &err);
    if (status == QREF_OK && text != NULL) {
        status = qc_model_require_tokenizer(&model, &err);
        if (status == QREF_OK)
            status = qref_tokenizer_encode(model.tokenizer, text, strlen(text), !no_bos, &ids, &count, &err);
    }
    if (status == QREF_OK && (count == 0 || count > (size_t)model.config.max_position_embeddings))
        status = qref_error_set(&err, QREF_ERR_INVALID, "%zu tokens; expected 1 to max_position_embeddings "
                                "(%d)", count, model.config.max_position_embeddings);

    /* forward one window, then write [count][vocab] f32 little-endian */
    logits_buffer buffer = {.vocab = model.config.vocab_size};
    size_t values = count * (size_t)buffer.vocab;
    if (status == QREF_OK) {
        buffer.values = malloc(values * sizeof(float));
        if (buffer.values == NULL)
            status = qref_error_set(&err, QREF_ERR_NOMEM, "cannot allocate %zu logits", values);
    }
    if (status == QREF_OK)
        status = qref_llama_forward(&model.config, &model.weights, ids, 1, (int)count, NULL, store_logits,
                                    &buffer, &err);
    if (status == QREF_OK) {
        for (size_t i = 0; i < values; i++)
            qref_store_f32(&buffer.values[i], buffer.values[i]);
        status = qref_file_write_atomic(out_path, buffer.values, values * sizeof(float), &err);
    }
    if (status == QREF_OK)
        printf("wrote %zu x %d logits to %s\n", count, buffer.vocab, out_path);

    free(buffer.values);
    free(ids);
    qc_model_close(&model);
    return status == QREF_OK ? QC_EXIT_PASS : qc_report_error(&err);
}
