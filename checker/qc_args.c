#define _XOPEN_SOURCE 700 /* realpath */
#include "qc_args.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qc_commands.h"

/* True when arg is name or name=VALUE. */
static bool arg_matches(const char *arg, const char *name)
{
    size_t length = strlen(name);
    return strncmp(arg, name, length) == 0 && (arg[length] == '\0' || arg[length] == '=');
}

int qc_args_parse(const char *command, int argc, char **argv, const qc_arg_spec *specs, size_t spec_count,
                  size_t max_positional, qc_args_result *result)
{
    memset(result, 0, sizeof *result);
    if (max_positional > sizeof result->positional / sizeof result->positional[0])
        max_positional = sizeof result->positional / sizeof result->positional[0];

    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            result->help = true;
            return 0;
        }
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (result->positional_count == max_positional)
                return qc_usage_error(command, "unexpected argument '%s'", arg);
            result->positional[result->positional_count++] = arg;
            continue;
        }

        const qc_arg_spec *spec = NULL;
        for (size_t k = 0; k < spec_count && spec == NULL; k++)
            if (arg_matches(arg, specs[k].name))
                spec = &specs[k];
        if (spec == NULL)
            return qc_usage_error(command, "unknown option '%s'", arg);

        if (spec->kind == QC_ARG_FLAG) {
            if (strchr(arg, '=') != NULL)
                return qc_usage_error(command, "option %s takes no value", spec->name);
            *(bool *)spec->target = true;
            continue;
        }
        const char *value = NULL;
        if (arg[strlen(spec->name)] == '=')
            value = arg + strlen(spec->name) + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        if (value == NULL)
            return qc_usage_error(command, "option %s needs a value", spec->name);
        const char **target = spec->target;
        if (*target != NULL)
            return qc_usage_error(command, "option %s is given twice", spec->name);
        *target = value;
    }
    return 0;
}

bool qc_args_parse_command(const char *command, int argc, char **argv, const qc_arg_spec *specs,
                           size_t spec_count, size_t max_positional, void (*print_usage)(FILE *out),
                           qc_args_result *result, int *exit_code)
{
    *exit_code = qc_args_parse(command, argc, argv, specs, spec_count, max_positional, result);
    if (*exit_code != 0)
        return true;
    if (result->help) {
        print_usage(stdout);
        *exit_code = QC_EXIT_PASS;
        return true;
    }
    return false;
}

int qc_args_int(const char *command, const char *name, const char *value, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long parsed = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || parsed < min || parsed > max)
        return qc_usage_error(command, "option %s: '%s' is not an integer from %ld to %ld", name, value, min,
                              max);
    *out = parsed;
    return 0;
}

bool qc_path_resolve(const char *path, char *out)
{
    char prefix[PATH_MAX], head[PATH_MAX];
    if (snprintf(prefix, sizeof prefix, "%s", path) >= (int)sizeof prefix)
        return false;
    size_t length = strlen(prefix);
    while (length > 1 && prefix[length - 1] == '/')
        prefix[--length] = '\0';

    /* Step 1: cut trailing components off until the rest exists: prefix[0..split) */
    size_t split = length;
    for (;;) {
        memcpy(head, prefix, split);
        head[split] = '\0';
        const char *candidate = head;
        if (split == 0)
            candidate = prefix[0] == '/' ? "/" : ".";
        if (realpath(candidate, out) != NULL)
            break;
        if (split == 0)
            return false;
        size_t k = split;
        while (k > 0 && prefix[k - 1] != '/')
            k--;
        split = k > 0 ? k - 1 : 0;
    }

    /* Step 2: append what did not exist */
    if (split == length)
        return true;
    const char *tail = prefix + split;
    if (*tail == '/')
        tail++;
    size_t used = strlen(out);
    int written = snprintf(out + used, PATH_MAX - used, "%s%s", strcmp(out, "/") == 0 ? "" : "/", tail);
    return written >= 0 && (size_t)written < PATH_MAX - used;
}

bool qc_path_within(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (strcmp(b, "/") == 0)
        return true;
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

int qc_args_check_output(const char *command, const char *option, const char *output, const char *input,
                         bool contains_check)
{
    char out_path[PATH_MAX], in_path[PATH_MAX];
    if (output == NULL || input == NULL || strcmp(output, "-") == 0 || !qc_path_resolve(output, out_path) ||
        !qc_path_resolve(input, in_path))
        return 0;
    struct stat info;
    bool exists = stat(out_path, &info) == 0;
    if (strcmp(out_path, in_path) == 0)
        return qc_usage_error(command, "option %s: %s is the input %s itself; write to another path", option, output,
                              input);
    if (exists && !S_ISDIR(info.st_mode) && qc_path_within(out_path, in_path))
        return qc_usage_error(command, "option %s: %s is a file of the input %s and would be overwritten; write to "
                              "another path", option, output, input);
    if (contains_check && qc_path_within(in_path, out_path))
        return qc_usage_error(command, "option %s: %s contains the input %s, which replacing it would delete; write "
                              "to another path", option, output, input);
    if (contains_check && qc_path_within(out_path, in_path))
        return qc_usage_error(command, "option %s: %s lies inside the input %s; write to another path", option,
                              output, input);
    return 0;
}
