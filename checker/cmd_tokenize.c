/*
 * qconform tokenize: encodes text with a tokenizer and prints the ids. The tokenizer is a
 * byte-level BPE tokenizer.json (LLaMA-3), Meta's tiktoken tokenizer.model or a SentencePiece
 * tokenizer.model (LLaMA-1/2), or a folder with one of them (model/qref_tokenizer.h).
 *
 *   qconform tokenize --tokenizer PATH (--text T | --file F) [--no-bos]
 *
 * The ids go to stdout on one line, separated by single spaces. BOS comes first unless
 * --no-bos is given. Special tokens written in the text of a BPE tokenizer become their ids.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_blob.h"
#include "model/qref_tokenizer.h"
#include "qc_args.h"
#include "qc_commands.h"

/* Largest --file accepted: the encoder works on the whole text in memory. */
#define TOKENIZE_MAX_FILE_BYTES ((size_t)512 << 20)

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform tokenize --tokenizer PATH (--text TEXT | --file FILE) [--no-bos]\n"
            "\n"
            "Encodes text with a tokenizer and prints the ids on one line, separated by spaces.\n"
            "\n"
            "options:\n"
            "  --tokenizer PATH  a tokenizer.json (byte-level BPE), a tokenizer.model (tiktoken or\n"
            "                    SentencePiece, recognized by content), a GGUF file (its vocabulary,\n"
            "                    tokenized as llama.cpp does), or a folder with tokenizer files;\n"
            "                    a folder's tokenizer.json is used when this program supports it\n"
            "  --text TEXT       the text to encode\n"
            "  --file FILE       encode the bytes of FILE as they are (no newline is removed)\n"
            "  --no-bos          do not put the BOS id first\n"
            "  --help            print this help\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 unreadable or invalid input.\n");
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
    qref_tokenizer *loaded = NULL;
    qref_status status = qref_tokenizer_load_path(tokenizer, &loaded, &err);
    if (status != QREF_OK)
        return qc_report_error(&err);
    if (qref_tokenizer_skipped(loaded) != NULL)
        fprintf(stderr, "qconform: note: using %s, because %s\n", qref_tokenizer_file_name(loaded),
                qref_tokenizer_skipped(loaded));

    char *file_text = NULL;
    size_t length = 0;
    if (file != NULL) {
        status = qref_file_read_all(file, TOKENIZE_MAX_FILE_BYTES, &file_text, &length, &err);
        if (status != QREF_OK) {
            qref_tokenizer_free(loaded);
            return qc_report_error(&err);
        }
        text = file_text;
    } else {
        length = strlen(text);
    }

    /* Step 3: encode and print. */
    int32_t *ids = NULL;
    size_t count = 0;
    status = qref_tokenizer_encode(loaded, text, length, add_bos, &ids, &count, &err);
    free(file_text);
    qref_tokenizer_free(loaded);
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
