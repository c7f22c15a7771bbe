/*
 * Command-line options of the subcommands: "--name VALUE", "--name=VALUE" and "--flag",
 * declared in a table, with positional arguments collected in order.
 */
#ifndef QC_ARGS_H
#define QC_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum qc_arg_kind {
    QC_ARG_FLAG,   /* target is bool *, set to true */
    QC_ARG_STRING  /* target is const char **, set to the value */
} qc_arg_kind;

typedef struct qc_arg_spec {
    const char *name; /* with the dashes: "--seqlen" */
    qc_arg_kind kind;
    void *target;
} qc_arg_spec;

typedef struct qc_args_result {
    const char *positional[8];
    size_t positional_count;
    bool help;
} qc_args_result;

/*
 * Parses argv[1..argc) (argv[0] is the command name). Returns 0, or the usage exit code 2
 * after printing what is wrong. "--help" and "-h" set result->help and stop parsing.
 */
int qc_args_parse(const char *command, int argc, char **argv, const qc_arg_spec *specs, size_t spec_count,
                  size_t max_positional, qc_args_result *result);

/*
 * Parses a subcommand's arguments with qc_args_parse. Returns true when the command is done:
 * after --help, with its usage printed to stdout and *exit_code 0, or after a usage error, with
 * *exit_code 2. Returns false when the command should go on.
 */
bool qc_args_parse_command(const char *command, int argc, char **argv, const qc_arg_spec *specs,
                           size_t spec_count, size_t max_positional, void (*print_usage)(FILE *out),
                           qc_args_result *result, int *exit_code);

/*
 * Parses value as a decimal integer in [min, max] for option name. Returns 0, or the usage
 * exit code 2 after printing what is wrong.
 */
int qc_args_int(const char *command, const char *name, const char *value, long min, long max, long *out);

/*
 * Writes path as an absolute path into out (PATH_MAX bytes), with symbolic links resolved in
 * its longest existing prefix, so a path that does not exist yet is resolved as far as it
 * exists. Returns false when no prefix can be resolved.
 */
bool qc_path_resolve(const char *path, char *out);

/* True when the resolved paths a and b are equal or a lies inside folder b. */
bool qc_path_within(const char *a, const char *b);

/*
 * Checks that output, a file or folder a command writes, is neither the input path, nor an
 * existing file inside it, nor (with contains_check) a folder that contains it. Prints a usage
 * error naming option and returns its exit code, or returns 0.
 */
int qc_args_check_output(const char *command, const char *option, const char *output, const char *input,
                         bool contains_check);

#endif
