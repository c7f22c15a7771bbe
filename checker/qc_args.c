#include "qc_args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
