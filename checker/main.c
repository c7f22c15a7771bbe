/*
 * qconform: conformance checker for quantized LLaMA checkpoints.
 *
 * Dispatches to one subcommand; see `qconform help`. Exit codes: 0 no FAIL or ERROR,
 * 1 at least one FAIL, 2 usage error, 3 unreadable or invalid input, 4 internal error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "qc_commands.h"

typedef struct qc_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} qc_command;

static const qc_command commands[] = {
    {"verify", qc_cmd_verify, "check an artifact's structure, hashes and suite cells against their bands"},
    {"eval", qc_cmd_eval, "compute a model's perplexity on WikiText-2"},
    {"compare", qc_cmd_compare, "KL divergence and top-token agreement against a reference model"},
    {"logits", qc_cmd_logits, "write a model's f32 logits for one token sequence"},
    {"hash", qc_cmd_hash, "print the SHA-256 manifest of a snapshot's files and tensors"},
    {"inspect", qc_cmd_inspect, "describe an artifact: model, quantization, tensors and findings"},
    {"report", qc_cmd_report, "merge shard runs (report merge) or summarize reports (report summary)"},
    {"quantize", qc_cmd_quantize, "write a GPTQ, AWQ, bitsandbytes, compressed-tensors or fake-quantized artifact"},
    {"tokenize", qc_cmd_tokenize, "encode text with a tokenizer.json or tokenizer.model and print the ids"},
    {"version", NULL, "print the version"},
};

static void print_help(FILE *out)
{
    fprintf(out, "usage: qconform COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun `qconform COMMAND --help` for the options of a command.\n"
                 "Exit codes: 0 pass, 1 at least one FAIL, 2 usage error, 3 invalid input, "
                 "4 internal error.\n");
}

qc_exit qc_exit_from_status(qref_status status)
{
    switch (status) {
    case QREF_OK: return QC_EXIT_PASS;
    case QREF_ERR_INVALID:
    case QREF_ERR_IO:
    case QREF_ERR_UNSUPPORTED: return QC_EXIT_INPUT;
    case QREF_ERR_NOMEM:
    case QREF_ERR_INTERNAL: return QC_EXIT_INTERNAL;
    }
    return QC_EXIT_INTERNAL;
}

qc_exit qc_report_error(const qref_error *err)
{
    fprintf(stderr, "qconform: error: %s\n", err->message);
    return qc_exit_from_status(err->status);
}

qc_exit qc_usage_error(const char *command, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "qconform %s: usage error: ", command);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\nRun `qconform %s --help` for its options.\n", command);
    return QC_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return QC_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        print_help(stdout);
        return QC_EXIT_PASS;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("qconform %s\n", QCONFORM_VERSION);
        return QC_EXIT_PASS;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (commands[i].run != NULL && strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "qconform: unknown command '%s'\n\n", name);
    print_help(stderr);
    return QC_EXIT_USAGE;
}
