/*
 * qconform tokenize: encodes text with a SentencePiece BPE tokenizer.model and prints the ids.
 *
 *   qconform tokenize --tokenizer PATH (--text T | --file F) [--no-bos]
 *
 * The ids go to stdout on one line, separated by single spaces. BOS comes first unless
 * --no-bos is given, as Hugging Face's LlamaTokenizer adds it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/qref_blob.h"
#include "model/qref_spm.h"
#include "qc_args.h"
#include "qc_commands.h"

/* Largest --file accepted: the encoder works on the whole text in memory. */
#define TOKENIZE_MAX_FILE_BYTES ((size_t)512 << 20)

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform tokenize --tokenizer PATH (--text TEXT | --file FILE) [--no-bos]\n"
            "\n"
            "Encodes text with a SentencePiece BPE tokenizer and prints the ids on one line,\n"
            "separated by spaces.\n"
            "\n"
            "options:\n"
            "  --tokenizer PATH  a tokenizer.model file, or a folder that contains one\n"
            "  --text TEXT       the text to encode\n"
            "  --file FILE       encode the bytes of FILE as they are (no newline is removed)\n"
            "  --no-bos          do not put the BOS id first\n"
            "  --help            print this help\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 unreadable or invalid input.\n");
}

/* Resolves PATH to a tokenizer.model file: the file itself, or PATH/tokenizer.model. */
static char *resolve_tokenizer_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t length = strlen(path) + sizeof "/tokenizer.model";
        char *joined = malloc(length);
        if (joined != NULL)
            snprintf(joined, length, "%s/tokenizer.model", path);
        return joined;
    }
    return strdup(path);
}

/* Writes ids as decimal numbers separated by spaces and a final newline; returns false on error. */
static bool print_ids(const int32_t *ids, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (fprintf(stdout, i == 0 ? "%d" : " %d", ids[i]) < 0)
            return false;
    }
    return fputc('\n', stdout) != EOF && fflush(stdout) == 0;
}

int qc_cmd_tokenize(int argc, char **argv)
{
    const char *tokenizer = NULL, *text = NULL, *file = NULL;
    bool add_bos = true;

    /* Step 1: options. */
    bool no_bos = false;
    const qc_arg_spec specs[] = {
        {"--tokenizer", QC_ARG_STRING, &tokenizer},
        {"--text", QC_ARG_STRING, &text},
        {"--file", QC_ARG_STRING, &file},
        {"--no-bos", QC_ARG_FLAG, &no_bos},
    };
    qc_args_result args;
    int code;
    if (qc_args_parse_command("tokenize", argc, argv, specs, sizeof specs / sizeof specs[0], 0, print_usage, &args,
                              &code))
        return code;
    add_bos = !no_bos;
    if (tokenizer == NULL)
        return qc_usage_error("tokenize", "missing --tokenizer PATH");
    if ((text == NULL) == (file == NULL))
        return qc_usage_error("tokenize", "give exactly one of --text and --file");

    /* Step 2: the tokenizer and the input bytes. */
    qref_error err = {0};
    char *model_path = resolve_tokenizer_path(tokenizer);
    if (model_path == NULL) {
        qref_error_set(&err, QREF_ERR_NOMEM, "out of memory");
        return qc_report_error(&err);
    }
    qref_spm *spm = NULL;
    qref_status status = qref_spm_load_file(model_path, &spm, &err);
    free(model_path);
    if (status != QREF_OK)
        return qc_report_error(&err);

    char *file_text = NULL;
    size_t length = 0;
    if (file != NULL) {
        status = qref_file_read_all(file, TOKENIZE_MAX_FILE_BYTES, &file_text, &length, &err);
        if (status != QREF_OK) {
            qref_spm_free(spm);
            return qc_report_error(&err);
        }
        text = file_text;
    } else {
        length = strlen(text);
    }

    /* Step 3: encode and print. */
    int32_t *ids = NULL;
    size_t count = 0;
    status = qref_spm_encode(spm, text, length, add_bos, &ids, &count, &err);
    free(file_text);
    qref_spm_free(spm);
    if (status != QREF_OK)
        return qc_report_error(&err);
    bool printed = print_ids(ids, count);
    free(ids);
    if (!printed) {
        qref_error_set(&err, QREF_ERR_INTERNAL, "writing the ids to standard output failed: %s",
                       strerror(errno));
        return qc_report_error(&err);
    }
    return QC_EXIT_PASS;
}
