/*
 * compressed-tensors quantization_config: parsing with the library's validation rules, the
 * preset schemes, target matching and the config the quantize command writes. The layout and
 * its sources are described in qref_ct.h.
 *
 * Validation follows QuantizationArgs.validate_model_after and QuantizationScheme's
 * validator as of the 2025 releases: a missing strategy is inferred from group_size (none ->
 * tensor, > 0 -> group, -1 -> channel); "group" and "tensor_group" need group_size > 0, and a
 * positive group_size needs one of them; "token" needs dynamic; "block" and block_structure
 * come together; actorder "group" needs a group strategy; dynamic quantization allows only
 * the token, tensor, tensor_group and group strategies; input activations allow only token,
 * tensor, group, tensor_group and attn_head; extra keys in a scheme or its args are
 * forbidden. Violations become problems (findings), so an artifact with a broken schema is
 * reported rather than refused unread.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "formats/qref_ct.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/qref_json.h"

/* ---- names -------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    qref_ct_format format;
} format_names[] = {
    {"int-quantized", QREF_CT_FORMAT_INT_QUANTIZED},
    {"naive-quantized", QREF_CT_FORMAT_NAIVE_QUANTIZED},
    {"pack-quantized", QREF_CT_FORMAT_PACK_QUANTIZED},
    {"mixed-precision", QREF_CT_FORMAT_MIXED_PRECISION},
};

/* CompressionFormat values (config/base.py) this version does not read, and the
 * DEFAULT_QUANTIZATION_FORMAT of quant_config.py. */
static const char *const unsupported_formats[] = {
    "dense", "sparse-bitmask", "sparse-24-bitmask", "float-quantized", "marlin-24", "nvfp4-pack-quantized",
    "mxfp4-pack-quantized", "fakequant", NULL,
};

static const char *const strategy_names[] = {
    [QREF_CT_STRATEGY_TENSOR] = "tensor",
    [QREF_CT_STRATEGY_CHANNEL] = "channel",
    [QREF_CT_STRATEGY_GROUP] = "group",
    [QREF_CT_STRATEGY_BLOCK] = "block",
    [QREF_CT_STRATEGY_TOKEN] = "token",
    [QREF_CT_STRATEGY_TENSOR_GROUP] = "tensor_group",
    [QREF_CT_STRATEGY_ATTN_HEAD] = "attn_head",
};

/* QuantizationStatus values (quant_config.py). */
static const char *const status_names[] = {"initialized", "calibration", "frozen", "compressed", "decompressed", NULL};

const char *qref_ct_format_name(qref_ct_format format)
{
    for (size_t k = 0; k < sizeof format_names / sizeof format_names[0]; k++)
        if (format_names[k].format == format)
            return format_names[k].name;
    return "unset";
}

const char *qref_ct_strategy_name(qref_ct_strategy strategy)
{
    if ((size_t)strategy < sizeof strategy_names / sizeof strategy_names[0])
        return strategy_names[strategy];
    return "?";
}

/* ---- problems ----------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static qref_status add_problem(qref_ct_config *config, const char *id, const char *fmt, ...)
{
    qref_ct_problem *grown = realloc(config->problems, (config->problem_count + 1) * sizeof *grown);
    if (grown == NULL)
        return QREF_ERR_NOMEM;
    config->problems = grown;
    qref_ct_problem *problem = &grown[config->problem_count++];
    problem->id = id;
    va_list args;
    va_start(args, fmt);
    vsnprintf(problem->message, sizeof problem->message, fmt, args);
    va_end(args);
    return QREF_OK;
}

static char *copy_string(const char *text)
{
    size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy != NULL)
        memcpy(copy, text, length + 1);
    return copy;
}

/* ---- QuantizationArgs --------------------------------------------------------------------- */

/* Keys of QuantizationArgs (quant_args.py); any other key is an extra key, which it forbids. */
static const char *const args_keys[] = {
    "num_bits", "type", "symmetric", "group_size", "strategy", "block_structure", "dynamic",
    "actorder", "observer", "observer_kwargs", "scale_dtype", "zp_dtype", NULL,
};

static bool key_known(const char *const *keys, const char *key)
{
    for (size_t k = 0; keys[k] != NULL; k++)
        if (strcmp(keys[k], key) == 0)
            return true;
    return false;
}

/* Outcome of parsing one QuantizationArgs object. */
typedef struct args_parse {
    qref_ct_args args;
    bool valid;              /* no problem found */
    bool has_block_structure;
} args_parse;

/* Records a problem about args at path and marks them invalid; returns false when out of memory. */
__attribute__((format(printf, 4, 5)))
static bool args_problem(qref_ct_config *config, args_parse *parse, const char *id, const char *fmt, ...)
{
    parse->valid = false;
    char message[QREF_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    return add_problem(config, id, "%s", message) == QREF_OK;
}

/* Parses a block_structure value: [rows, cols] or the legacy "RxC" string. */
static bool block_structure_valid(const cJSON *item)
{
    if (cJSON_IsNull(item))
        return true;
    long rows = 0, cols = 0;
    if (cJSON_IsString(item)) {
        char extra;
        if (sscanf(item->valuestring, "%ldx%ld%c", &rows, &cols, &extra) != 2)
            return false;
    } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2) {
        int64_t values[2];
        for (int k = 0; k < 2; k++)
            if (qref_json_item_int("", "", cJSON_GetArrayItem(item, k), 1, INT64_MAX, &values[k], NULL) != QREF_OK)
                return false;
        rows = (long)values[0];
        cols = (long)values[1];
    } else {
        return false;
    }
    return rows > 0 && cols > 0;
}

/*
 * Parses one QuantizationArgs object at path ("config_groups.group_0.weights") with the
 * defaults and validators of quant_args.py. Returns QREF_ERR_NOMEM only; every schema
 * violation is a problem and leaves parse->valid false.
 */
static qref_status args_parse_object(qref_ct_config *config, const char *path, const cJSON *object,
                                     args_parse *parse)
{
    memset(parse, 0, sizeof *parse);
    parse->valid = true;
    qref_ct_args *args = &parse->args;
    args->num_bits = 8;
    args->symmetric = true;
    char found[96];
    const char *display = config->display;
#define PROBLEM(id, ...)                                                                                            \
    do {                                                                                                            \
        if (!args_problem(config, parse, id, __VA_ARGS__))                                                          \
            return QREF_ERR_NOMEM;                                                                                  \
    } while (0)

    if (!cJSON_IsObject(object)) {
        PROBLEM("ct.schema.invalid", "%s: %s: found %s, expected a QuantizationArgs object or null", display, path,
                qref_json_describe(object, found, sizeof found));
        return QREF_OK;
    }
    for (const cJSON *member = object->child; member != NULL; member = member->next)
        if (!key_known(args_keys, member->string))
            PROBLEM("ct.schema.invalid", "%s: %s: unknown key \"%.64s\" (QuantizationArgs forbids extra keys; "
                    "expected one of num_bits, type, symmetric, group_size, strategy, block_structure, dynamic, "
                    "actorder, observer, observer_kwargs, scale_dtype, zp_dtype)", display, path, member->string);

    /* num_bits, type, symmetric */
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, "num_bits");
    int64_t value;
    if (item != NULL) {
        if (qref_json_item_int("", "", item, INT32_MIN, INT32_MAX, &value, NULL) != QREF_OK)
            PROBLEM("ct.schema.invalid", "%s: %s.num_bits: found %s, expected an integer", display, path,
                    qref_json_describe(item, found, sizeof found));
        else if (value < 1)
            PROBLEM("ct.schema.bits", "%s: %s.num_bits: found %lld, expected at least 1", display, path,
                    (long long)value);
        else
            args->num_bits = (int)value;
    }
    item = cJSON_GetObjectItemCaseSensitive(object, "type");
    if (item != NULL) {
        if (cJSON_IsString(item) && strcasecmp(item->valuestring, "int") == 0)
            args->type_float = false;
        else if (cJSON_IsString(item) && strcasecmp(item->valuestring, "float") == 0)
            args->type_float = true;
        else
            PROBLEM("ct.schema.invalid", "%s: %s.type: found %s, expected \"int\" or \"float\"", display, path,
                    qref_json_describe(item, found, sizeof found));
    }
    item = cJSON_GetObjectItemCaseSensitive(object, "symmetric");
    if (item != NULL) {
        if (cJSON_IsBool(item))
            args->symmetric = cJSON_IsTrue(item);
        else
            PROBLEM("ct.schema.invalid", "%s: %s.symmetric: found %s, expected true or false", display, path,
                    qref_json_describe(item, found, sizeof found));
    }

    /* group_size and strategy */
    bool group_size_declared = false;
    item = cJSON_GetObjectItemCaseSensitive(object, "group_size");
    if (item != NULL && !cJSON_IsNull(item)) {
        if (qref_json_item_int("", "", item, INT32_MIN, INT32_MAX, &value, NULL) != QREF_OK)
            PROBLEM("ct.schema.invalid", "%s: %s.group_size: found %s, expected an integer or null", display, path,
                    qref_json_describe(item, found, sizeof found));
        else if (value < -1)
            PROBLEM("ct.schema.group_size", "%s: %s.group_size: found %lld, expected a positive group size for "
                    "strategy \"group\" or -1 for \"channel\"", display, path, (long long)value);
        else {
            args->group_size = (long)value;
            group_size_declared = true;
        }
    }
    bool strategy_declared = false;
    item = cJSON_GetObjectItemCaseSensitive(object, "strategy");
    if (item != NULL && !cJSON_IsNull(item)) {
        bool known = false;
        for (size_t k = 0; cJSON_IsString(item) && k < sizeof strategy_names / sizeof strategy_names[0]; k++)
            if (strcasecmp(item->valuestring, strategy_names[k]) == 0) {
                args->strategy = (qref_ct_strategy)k;
                known = true;
            }
        if (!known)
            PROBLEM("ct.schema.strategy", "%s: %s.strategy: found %s, expected one of \"tensor\", \"channel\", "
                    "\"group\", \"block\", \"token\", \"tensor_group\", \"attn_head\"", display, path,
                    qref_json_describe(item, found, sizeof found));
        strategy_declared = known;
    }
    if (!strategy_declared && parse->valid) {
        if (!group_size_declared || args->group_size == 0)
            args->strategy = QREF_CT_STRATEGY_TENSOR;
        else if (args->group_size > 0)
            args->strategy = QREF_CT_STRATEGY_GROUP;
        else
            args->strategy = QREF_CT_STRATEGY_CHANNEL;
    }

    /* dynamic, actorder, block_structure, and the free-form keys */
    bool dynamic_local = false;
    item = cJSON_GetObjectItemCaseSensitive(object, "dynamic");
    if (item != NULL) {
        if (cJSON_IsBool(item))
            args->dynamic = cJSON_IsTrue(item);
        else if (cJSON_IsString(item) && strcasecmp(item->valuestring, "local") == 0)
            args->dynamic = dynamic_local = true;
        else
            PROBLEM("ct.schema.invalid", "%s: %s.dynamic: found %s, expected true, false or \"local\"", display, path,
                    qref_json_describe(item, found, sizeof found));
    }
    item = cJSON_GetObjectItemCaseSensitive(object, "actorder");
    if (item != NULL && !cJSON_IsNull(item)) {
        if (cJSON_IsBool(item))
            args->actorder_group = cJSON_IsTrue(item);
        else if (cJSON_IsString(item) && (strcasecmp(item->valuestring, "group") == 0 ||
                                          strcasecmp(item->valuestring, "dynamic") == 0))
            args->actorder_group = true;
        else if (!(cJSON_IsString(item) && (strcasecmp(item->valuestring, "weight") == 0 ||
                                            strcasecmp(item->valuestring, "static") == 0)))
            PROBLEM("ct.schema.invalid", "%s: %s.actorder: found %s, expected \"group\", \"weight\" (or their "
                    "aliases \"dynamic\", \"static\"), a boolean or null", display, path,
                    qref_json_describe(item, found, sizeof found));
    }
    item = cJSON_GetObjectItemCaseSensitive(object, "block_structure");
    if (item != NULL && !cJSON_IsNull(item)) {
        parse->has_block_structure = true;
        if (!block_structure_valid(item))
            PROBLEM("ct.schema.invalid", "%s: %s.block_structure: found %s, expected [rows, cols] of positive "
                    "integers", display, path, qref_json_describe(item, found, sizeof found));
    }
    static const char *const string_keys[] = {"observer", "scale_dtype", "zp_dtype"};
    for (size_t k = 0; k < sizeof string_keys / sizeof string_keys[0]; k++) {
        item = cJSON_GetObjectItemCaseSensitive(object, string_keys[k]);
        if (item != NULL && !cJSON_IsNull(item) && !cJSON_IsString(item))
            PROBLEM("ct.schema.invalid", "%s: %s.%s: found %s, expected a string or null", display, path,
                    string_keys[k], qref_json_describe(item, found, sizeof found));
    }
    item = cJSON_GetObjectItemCaseSensitive(object, "observer_kwargs");
    if (item != NULL && !cJSON_IsObject(item))
        PROBLEM("ct.schema.invalid", "%s: %s.observer_kwargs: found %s, expected an object", display, path,
                qref_json_describe(item, found, sizeof found));
    if (!parse->valid)
        return QREF_OK;

    /* validate_model_after */
    const qref_ct_strategy strategy = args->strategy;
    const char *name = strategy_names[strategy];
    bool grouped = strategy == QREF_CT_STRATEGY_GROUP || strategy == QREF_CT_STRATEGY_TENSOR_GROUP;
    if (strategy == QREF_CT_STRATEGY_TOKEN && !args->dynamic)
        PROBLEM("ct.schema.invalid", "%s: %s: strategy \"token\" with dynamic false, expected dynamic true "
                "(static token quantization is not possible)", display, path);
    const char *declared_size = "missing";
    if (group_size_declared)
        declared_size = args->group_size == -1 ? "-1" : "0";
    if (grouped && args->group_size <= 0)
        PROBLEM("ct.schema.group_size", "%s: %s: strategy \"%s\" with group_size %s, expected a positive group_size",
                display, path, name, declared_size);
    if (args->group_size > 0 && !grouped)
        PROBLEM("ct.schema.group_size", "%s: %s: group_size %ld with strategy \"%s\", expected strategy \"group\" "
                "(a group size needs the group strategy)", display, path, args->group_size, name);
    if ((strategy == QREF_CT_STRATEGY_BLOCK) != parse->has_block_structure)
        PROBLEM("ct.schema.invalid", "%s: %s: strategy \"%s\" %s block_structure, expected strategy \"block\" and "
                "block_structure together", display, path, name, parse->has_block_structure ? "with" : "without");
    if (args->actorder_group && !grouped)
        PROBLEM("ct.schema.invalid", "%s: %s: actorder \"group\" with strategy \"%s\", expected strategy \"group\" "
                "or \"tensor_group\"", display, path, name);
    if (args->dynamic && strategy != QREF_CT_STRATEGY_TOKEN && strategy != QREF_CT_STRATEGY_TENSOR &&
        strategy != QREF_CT_STRATEGY_TENSOR_GROUP && strategy != QREF_CT_STRATEGY_GROUP)
        PROBLEM("ct.schema.invalid", "%s: %s: dynamic quantization with strategy \"%s\", expected \"token\", "
                "\"tensor\", \"tensor_group\" or \"group\"", display, path, name);
    if (dynamic_local && strategy != QREF_CT_STRATEGY_TENSOR_GROUP)
        PROBLEM("ct.schema.invalid", "%s: %s: dynamic \"local\" with strategy \"%s\", expected \"tensor_group\"",
                display, path, name);
#undef PROBLEM
    return QREF_OK;
}

/* ---- schemes and presets ------------------------------------------------------------------ */

/* Preset schemes (quant_scheme.py PRESET_SCHEMES) whose meaning is the same in every 2024-2025
 * release. */
typedef struct preset_scheme {
    const char *name;
    bool has_weights;
    qref_ct_args weights;
    bool has_input;
    qref_ct_args input;
} preset_scheme;

static const preset_scheme presets[] = {
    {"UNQUANTIZED", false, {0}, false, {0}},
    {"W4A16", true, {4, false, true, QREF_CT_STRATEGY_GROUP, 128, false, false}, false, {0}},
    {"W4A16_ASYM", true, {4, false, false, QREF_CT_STRATEGY_GROUP, 128, false, false}, false, {0}},
    {"W8A8", true, {8, false, true, QREF_CT_STRATEGY_CHANNEL, 0, false, false}, true,
     {8, false, true, QREF_CT_STRATEGY_TOKEN, 0, true, false}},
    {"INT8", true, {8, false, true, QREF_CT_STRATEGY_CHANNEL, 0, false, false}, true,
     {8, false, true, QREF_CT_STRATEGY_TOKEN, 0, true, false}},
    {"W4A8", true, {4, false, true, QREF_CT_STRATEGY_GROUP, 128, false, false}, true,
     {8, false, true, QREF_CT_STRATEGY_TOKEN, 0, true, false}},
};

/* Presets this version does not read, and why. */
static const struct {
    const char *name;
    const char *reason;
} unsupported_presets[] = {
    {"W8A16", "its weights are per-channel in neuralmagic releases and group 128 in later vllm-project "
              "releases, so the stored layout depends on the compressed-tensors version; declare the scheme "
              "in full"},
    {"W4AFP8", "its activations are float"},
    {"FP8", "its weights are float"},
    {"FP8_DYNAMIC", "its weights are float"},
    {"FP8_BLOCK", "its weights are float"},
    {"NVFP4", "its weights are float"},
    {"NVFP4A16", "its weights are float"},
    {"NVFP4_46", "its weights are float"},
    {"NVFP4A16_46", "its weights are float"},
    {"MXFP4", "its weights are float"},
    {"MXFP4A16", "its weights are float"},
    {"MXFP8", "its weights are float"},
    {"MXFP8A16", "its weights are float"},
};

static const char *const scheme_keys[] = {
    "targets", "weights", "input_activations", "output_activations", "format", NULL,
};

/*
 * Parses a format name into *out with *known true; a name outside CompressionFormat leaves
 * *known false. A CompressionFormat this version does not read is QREF_ERR_UNSUPPORTED.
 */
static qref_status format_parse(const char *display, const char *path, const char *name, qref_ct_format *out,
                                bool *known, qref_error *err)
{
    *known = false;
    for (size_t k = 0; k < sizeof format_names / sizeof format_names[0]; k++)
        if (strcmp(name, format_names[k].name) == 0) {
            *out = format_names[k].format;
            *known = true;
            return QREF_OK;
        }
    for (size_t k = 0; unsupported_formats[k] != NULL; k++)
        if (strcmp(name, unsupported_formats[k]) == 0)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s \"%s\" is a compressed-tensors format this "
                                  "version does not read; it reads int-quantized, naive-quantized and "
                                  "pack-quantized (and mixed-precision of those)", display, path, name);
    return QREF_OK;
}

/* Stores the targets array of a scheme; a problem when it is not a list of strings. */
static qref_status scheme_set_targets(qref_ct_config *config, qref_ct_scheme *scheme, const char *path,
                                      const cJSON *targets)
{
    char found[96];
    if (!cJSON_IsArray(targets)) {
        scheme->valid = false;
        return add_problem(config, "ct.schema.invalid", "%s: %s.targets: found %s, expected a list of module "
                           "names, class names or \"re:\" patterns", config->display, path,
                           targets == NULL ? "nothing (the key is required)"
                                           : qref_json_describe(targets, found, sizeof found));
    }
    size_t count = (size_t)cJSON_GetArraySize(targets);
    scheme->targets = calloc(count + 1, sizeof *scheme->targets);
    scheme->target_regexes = calloc(count + 1, sizeof *scheme->target_regexes);
    if (scheme->targets == NULL || scheme->target_regexes == NULL)
        return QREF_ERR_NOMEM;
    for (const cJSON *item = targets->child; item != NULL; item = item->next) {
        if (!cJSON_IsString(item)) {
            scheme->valid = false;
            if (add_problem(config, "ct.schema.invalid", "%s: %s.targets: found %s, expected strings",
                            config->display, path, qref_json_describe(item, found, sizeof found)) != QREF_OK)
                return QREF_ERR_NOMEM;
            continue;
        }
        char *copy = copy_string(item->valuestring);
        if (copy == NULL)
            return QREF_ERR_NOMEM;
        scheme->targets[scheme->target_count++] = copy;
    }
    return QREF_OK;
}

/* Fills a scheme from a preset name and its list of targets. */
static qref_status scheme_from_preset(qref_ct_config *config, qref_ct_scheme *scheme, const char *path,
                                      const cJSON *targets, qref_error *err)
{
    for (size_t k = 0; k < sizeof unsupported_presets / sizeof unsupported_presets[0]; k++)
        if (strcasecmp(scheme->name, unsupported_presets[k].name) == 0)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s names the preset scheme %s, which this "
                                  "version does not read: %s", config->display, path, unsupported_presets[k].name,
                                  unsupported_presets[k].reason);
    const preset_scheme *preset = NULL;
    for (size_t k = 0; k < sizeof presets / sizeof presets[0]; k++)
        if (strcasecmp(scheme->name, presets[k].name) == 0)
            preset = &presets[k];
    if (preset == NULL) {
        scheme->valid = false;
        qref_status status = add_problem(config, "ct.schema.invalid", "%s: %s is a list of targets, so \"%s\" must "
                                         "name a preset scheme, expected one of W4A16, W4A16_ASYM, W8A8, INT8, "
                                         "W4A8, UNQUANTIZED", config->display, path, scheme->name);
        return status == QREF_OK ? scheme_set_targets(config, scheme, path, targets) : QREF_ERR_NOMEM;
    }
    scheme->has_weights = preset->has_weights;
    scheme->weights = preset->weights;
    scheme->has_input_activations = preset->has_input;
    scheme->input_activations = preset->input;
    return scheme_set_targets(config, scheme, path, targets);
}

/* Parses one scheme object (QuantizationScheme). */
static qref_status scheme_from_object(qref_ct_config *config, qref_ct_scheme *scheme, const char *path,
                                      const cJSON *object, qref_error *err)
{
    char found[96];
    for (const cJSON *member = object->child; member != NULL; member = member->next)
        if (!key_known(scheme_keys, member->string)) {
            scheme->valid = false;
            if (add_problem(config, "ct.schema.invalid", "%s: %s: unknown key \"%.64s\" (QuantizationScheme "
                            "forbids extra keys; expected targets, weights, input_activations, "
                            "output_activations, format)", config->display, path, member->string) != QREF_OK)
                return QREF_ERR_NOMEM;
        }
    qref_status status = scheme_set_targets(config, scheme, path,
                                            cJSON_GetObjectItemCaseSensitive(object, "targets"));
    if (status != QREF_OK)
        return status;

    /* weights, input_activations, output_activations */
    static const char *const roles[] = {"weights", "input_activations", "output_activations"};
    for (int r = 0; r < 3; r++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, roles[r]);
        if (item == NULL || cJSON_IsNull(item))
            continue;
        char args_path[320];
        snprintf(args_path, sizeof args_path, "%s.%s", path, roles[r]);
        args_parse parse;
        status = args_parse_object(config, args_path, item, &parse);
        if (status != QREF_OK)
            return status;
        scheme->valid = scheme->valid && parse.valid;
        if (r == 0) {
            scheme->has_weights = true;
            scheme->weights = parse.args;
        } else if (r == 1) {
            scheme->has_input_activations = true;
            scheme->input_activations = parse.args;
        } else {
            scheme->has_output_activations = true;
        }
        if (r > 0 && parse.valid && parse.args.actorder_group) {
            scheme->valid = false;
            if (add_problem(config, "ct.schema.invalid", "%s: %s.actorder: found \"group\", expected null "
                            "(activation ordering applies to weights only)", config->display, args_path) != QREF_OK)
                return QREF_ERR_NOMEM;
        }
    }

    /* format */
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(object, "format");
    if (format != NULL && !cJSON_IsNull(format)) {
        bool known = false;
        char format_path[320];
        snprintf(format_path, sizeof format_path, "%s.format", path);
        if (cJSON_IsString(format)) {
            status = format_parse(config->display, format_path, format->valuestring, &scheme->format, &known, err);
            if (status != QREF_OK)
                return status;
        }
        if (!known || scheme->format == QREF_CT_FORMAT_MIXED_PRECISION) {
            scheme->valid = false;
            scheme->format = QREF_CT_FORMAT_UNSET;
            if (add_problem(config, "ct.schema.invalid", "%s: %s: found %s, expected \"int-quantized\", "
                            "\"naive-quantized\" or \"pack-quantized\" (mixed-precision is a model-level format)",
                            config->display, format_path, qref_json_describe(format, found, sizeof found)) != QREF_OK)
                return QREF_ERR_NOMEM;
        }
    }
    return QREF_OK;
}

/*
 * Checks a scheme's args against what this version reads and against its format. Float or
 * block weights are not supported (an error). Weight strategies other than tensor, channel and
 * group, activation strategies the library rejects, dynamic weights, and bits the format
 * cannot store are problems.
 */
static qref_status scheme_validate(qref_ct_config *config, qref_ct_scheme *scheme, const char *path,
                                   qref_error *err)
{
    const char *display = config->display;
    if (scheme->has_weights && scheme->valid) {
        const qref_ct_args *w = &scheme->weights;
        const char *strategy = strategy_names[w->strategy];
        if (w->type_float)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s.weights: type \"float\" (%d-bit float "
                                  "weights) is not read by this version, which reads integer weights", display,
                                  path, w->num_bits);
        if (w->strategy == QREF_CT_STRATEGY_BLOCK || w->strategy == QREF_CT_STRATEGY_TENSOR_GROUP)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s.weights: strategy \"%s\" is not read by this "
                                  "version, which reads tensor, channel and group weights", display, path, strategy);
        if (w->strategy != QREF_CT_STRATEGY_TENSOR && w->strategy != QREF_CT_STRATEGY_CHANNEL &&
            w->strategy != QREF_CT_STRATEGY_GROUP) {
            scheme->valid = false;
            if (add_problem(config, "ct.schema.strategy", "%s: %s.weights: strategy \"%s\" is an activation "
                            "strategy, expected \"tensor\", \"channel\" or \"group\" for weights", display, path,
                            strategy) != QREF_OK)
                return QREF_ERR_NOMEM;
        }
        if (w->dynamic) {
            scheme->valid = false;
            if (add_problem(config, "ct.schema.invalid", "%s: %s.weights: dynamic true, expected false (a "
                            "compressed checkpoint stores weight_scale, which dynamic quantization computes at run "
                            "time instead)", display, path) != QREF_OK)
                return QREF_ERR_NOMEM;
        }
    }
    if (scheme->has_input_activations && scheme->valid) {
        qref_ct_strategy s = scheme->input_activations.strategy;
        if (s != QREF_CT_STRATEGY_TOKEN && s != QREF_CT_STRATEGY_TENSOR && s != QREF_CT_STRATEGY_GROUP &&
            s != QREF_CT_STRATEGY_TENSOR_GROUP && s != QREF_CT_STRATEGY_ATTN_HEAD) {
            scheme->valid = false;
            if (add_problem(config, "ct.schema.strategy", "%s: %s.input_activations: strategy \"%s\" is not "
                            "supported for activation quantization, expected \"token\", \"tensor\", \"group\", "
                            "\"tensor_group\" or \"attn_head\"", display, path, strategy_names[s]) != QREF_OK)
                return QREF_ERR_NOMEM;
        }
    }

    /* the effective format: the group's own, else the top-level one */
    if (scheme->format == QREF_CT_FORMAT_UNSET && scheme->valid) {
        if (config->format == QREF_CT_FORMAT_MIXED_PRECISION) {
            scheme->valid = false;
            return add_problem(config, "ct.schema.invalid", "%s: %s declares no format, expected one because the "
                               "top-level format is \"mixed-precision\"", display, path) == QREF_OK ? QREF_OK
                                                                                                   : QREF_ERR_NOMEM;
        }
        if (config->format == QREF_CT_FORMAT_UNSET && !config->format_declared)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s declares no format and neither does the "
                                  "config, which compressed-tensors reads as \"fakequant\" (float weights with "
                                  "their scales); this version reads int-quantized, naive-quantized and "
                                  "pack-quantized", display, path);
        scheme->format = config->format;
        if (scheme->format == QREF_CT_FORMAT_UNSET) {
            scheme->valid = false; /* the top-level format is invalid, a problem already */
            return QREF_OK;
        }
    }
    if (scheme->has_weights && scheme->valid) {
        int bits = scheme->weights.num_bits;
        if (scheme->format == QREF_CT_FORMAT_PACK_QUANTIZED && bits != 4 && bits != 8) {
            scheme->valid = false;
            return add_problem(config, "ct.schema.bits", "%s: %s.weights: num_bits %d with format "
                               "\"pack-quantized\", expected 4 or 8 (the bit widths compressed-tensors packs)",
                               display, path, bits) == QREF_OK ? QREF_OK : QREF_ERR_NOMEM;
        }
        if (bits > 8)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s.weights: num_bits %d is stored as I16 or I32 "
                                  "codes, which this version does not read (it reads up to 8 bits)", display, path,
                                  bits);
    }
    return QREF_OK;
}

/* ---- regexes ------------------------------------------------------------------------------ */

/*
 * Compiles the pattern of a "re:" entry so that it matches at the start of the subject only,
 * as Python's re.match does. A pattern PCRE2 rejects is a problem and stays NULL.
 */
static qref_status compile_entry(qref_ct_config *config, const char *path, const char *entry, void **out)
{
    *out = NULL;
    if (strncmp(entry, "re:", 3) != 0)
        return QREF_OK;
    int code;
    PCRE2_SIZE offset;
    pcre2_code *regex = pcre2_compile((PCRE2_SPTR)(entry + 3), PCRE2_ZERO_TERMINATED,
                                      PCRE2_ANCHORED | PCRE2_UTF | PCRE2_UCP, &code, &offset, NULL);
    if (regex == NULL) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(code, message, sizeof message);
        return add_problem(config, "ct.schema.invalid", "%s: %s: \"%.200s\" is not a valid regular expression "
                           "(%s at offset %zu)", config->display, path, entry, (const char *)message,
                           (size_t)offset) == QREF_OK ? QREF_OK : QREF_ERR_NOMEM;
    }
    *out = regex;
    return QREF_OK;
}

bool qref_ct_target_matches(const char *target, const void *regex, const char *module, bool is_linear)
{
    if (strncmp(target, "re:", 3) == 0) {
        if (regex == NULL)
            return false;
        pcre2_match_data *match = pcre2_match_data_create(1, NULL);
        if (match == NULL)
            return false;
        int rc = pcre2_match((const pcre2_code *)regex, (PCRE2_SPTR)module, strlen(module), 0, 0, match, NULL);
        pcre2_match_data_free(match);
        return rc >= 0;
    }
    if (strcmp(target, module) == 0)
        return true;
    /* _match_class: a class name in the module's MRO; torch.nn.Linear's are Linear and Module. */
    return is_linear && (strcmp(target, "Linear") == 0 || strcmp(target, "Module") == 0);
}

/* ---- the whole config --------------------------------------------------------------------- */

void qref_ct_config_free(qref_ct_config *config)
{
    if (config == NULL)
        return;
    for (size_t s = 0; s < config->scheme_count; s++) {
        qref_ct_scheme *scheme = &config->schemes[s];
        for (size_t t = 0; t < scheme->target_count; t++) {
            free(scheme->targets[t]);
            pcre2_code_free((pcre2_code *)scheme->target_regexes[t]);
        }
        free(scheme->targets);
        free(scheme->target_regexes);
        free(scheme->name);
    }
    free(config->schemes);
    for (size_t k = 0; k < config->ignore_count; k++) {
        free(config->ignore[k]);
        pcre2_code_free((pcre2_code *)config->ignore_regexes[k]);
    }
    free(config->ignore);
    free(config->ignore_regexes);
    free(config->problems);
    memset(config, 0, sizeof *config);
}

/* True when a config's sparsity_config or transform_config is present and not empty. */
static bool section_declared(const cJSON *item)
{
    return item != NULL && !cJSON_IsNull(item) && !(cJSON_IsObject(item) && item->child == NULL);
}

/* Parses format, quantization_status and ignore, the keys outside config_groups. */
static qref_status parse_top_level(const cJSON *object, qref_ct_config *out, qref_error *err)
{
    char found[96];
    const char *display = out->display;

    /* format */
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(object, "format");
    out->format_declared = format != NULL && !cJSON_IsNull(format);
    if (out->format_declared) {
        bool known = false;
        if (cJSON_IsString(format)) {
            qref_status status = format_parse(display, "format", format->valuestring, &out->format, &known, err);
            if (status != QREF_OK)
                return status;
        }
        if (!known && add_problem(out, "ct.schema.invalid", "%s: format: found %s, expected \"int-quantized\", "
                                  "\"naive-quantized\", \"pack-quantized\" or \"mixed-precision\"", display,
                                  qref_json_describe(format, found, sizeof found)) != QREF_OK)
            return QREF_ERR_NOMEM;
    }

    /* quantization_status: the tensors are stored compressed only in status "compressed" */
    const cJSON *status_item = cJSON_GetObjectItemCaseSensitive(object, "quantization_status");
    bool known_status = false;
    if (cJSON_IsString(status_item)) {
        snprintf(out->status, sizeof out->status, "%.31s", status_item->valuestring);
        for (size_t k = 0; status_names[k] != NULL; k++)
            known_status = known_status || strcmp(status_item->valuestring, status_names[k]) == 0;
    }
    if (!known_status) {
        if (add_problem(out, "ct.schema.status", "%s: quantization_status: found %s, expected \"compressed\" (one of "
                        "initialized, calibration, frozen, compressed, decompressed)", display,
                        status_item == NULL ? "nothing (compressed-tensors then assumes \"initialized\")"
                                            : qref_json_describe(status_item, found, sizeof found)) != QREF_OK)
            return QREF_ERR_NOMEM;
    } else if (strcmp(out->status, "compressed") != 0) {
        if (add_problem(out, "ct.schema.status", "%s: quantization_status: found \"%s\", expected \"compressed\": "
                        "loaders decompress the weights only in that status, so a quantized layout in any other "
                        "status is not read as one", display, out->status) != QREF_OK)
            return QREF_ERR_NOMEM;
    }

    /* ignore */
    const cJSON *ignore = cJSON_GetObjectItemCaseSensitive(object, "ignore");
    if (ignore != NULL && !cJSON_IsNull(ignore)) {
        if (!cJSON_IsArray(ignore))
            return add_problem(out, "ct.schema.invalid", "%s: ignore: found %s, expected a list of module names, "
                               "class names or \"re:\" patterns", display,
                               qref_json_describe(ignore, found, sizeof found)) == QREF_OK ? QREF_OK : QREF_ERR_NOMEM;
        size_t count = (size_t)cJSON_GetArraySize(ignore);
        out->ignore = calloc(count + 1, sizeof *out->ignore);
        out->ignore_regexes = calloc(count + 1, sizeof *out->ignore_regexes);
        if (out->ignore == NULL || out->ignore_regexes == NULL)
            return QREF_ERR_NOMEM;
        for (const cJSON *item = ignore->child; item != NULL; item = item->next) {
            if (!cJSON_IsString(item)) {
                if (add_problem(out, "ct.schema.invalid", "%s: ignore: found %s, expected strings", display,
                                qref_json_describe(item, found, sizeof found)) != QREF_OK)
                    return QREF_ERR_NOMEM;
                continue;
            }
            size_t k = out->ignore_count;
            out->ignore[k] = copy_string(item->valuestring);
            if (out->ignore[k] == NULL)
                return QREF_ERR_NOMEM;
            out->ignore_count++;
            qref_status status = compile_entry(out, "ignore", out->ignore[k], &out->ignore_regexes[k]);
            if (status != QREF_OK)
                return status;
        }
    }
    return QREF_OK;
}

/* Parses config_groups into out->schemes. */
static qref_status parse_groups(const cJSON *object, qref_ct_config *out, qref_error *err)
{
    char found[96];
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(object, "config_groups");
    if (!cJSON_IsObject(groups))
        return add_problem(out, "ct.schema.invalid", "%s: config_groups: found %s, expected an object of group name "
                           "-> scheme", out->display,
                           groups == NULL ? "nothing (the key is required)"
                                          : qref_json_describe(groups, found, sizeof found)) == QREF_OK
                   ? QREF_OK
                   : QREF_ERR_NOMEM;
    size_t count = (size_t)cJSON_GetArraySize(groups);
    out->schemes = calloc(count + 1, sizeof *out->schemes);
    if (out->schemes == NULL)
        return QREF_ERR_NOMEM;
    for (const cJSON *group = groups->child; group != NULL; group = group->next) {
        qref_ct_scheme *scheme = &out->schemes[out->scheme_count++];
        scheme->valid = true;
        scheme->name = copy_string(group->string);
        if (scheme->name == NULL)
            return QREF_ERR_NOMEM;
        char path[256];
        snprintf(path, sizeof path, "config_groups.%.200s", group->string);

        qref_status status;
        if (cJSON_IsArray(group)) {
            status = scheme_from_preset(out, scheme, path, group, err);
        } else if (cJSON_IsObject(group)) {
            status = scheme_from_object(out, scheme, path, group, err);
        } else {
            scheme->valid = false;
            status = add_problem(out, "ct.schema.invalid", "%s: %s: found %s, expected a scheme object or a list of "
                                 "targets for a preset name", out->display, path,
                                 qref_json_describe(group, found, sizeof found));
        }
        if (status == QREF_OK)
            status = scheme_validate(out, scheme, path, err);
        for (size_t t = 0; status == QREF_OK && t < scheme->target_count; t++) {
            char target_path[300];
            snprintf(target_path, sizeof target_path, "%s.targets", path);
            status = compile_entry(out, target_path, scheme->targets[t], &scheme->target_regexes[t]);
        }
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

qref_status qref_ct_config_parse(const char *display, const cJSON *object, qref_ct_config *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->display, sizeof out->display, "%s", display);
    char found[96];

    /* Step 1: what makes this a compressed-tensors config this version reads. */
    if (!cJSON_IsObject(object))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: found %s, expected an object", display,
                              qref_json_describe(object, found, sizeof found));
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(object, "quant_method");
    if (!cJSON_IsString(method) || strcasecmp(method->valuestring, "compressed-tensors") != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: quant_method: found %s, expected \"compressed-tensors\"",
                              display, qref_json_describe(method, found, sizeof found));
    if (section_declared(cJSON_GetObjectItemCaseSensitive(object, "sparsity_config")))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: sparsity_config is declared; sparse compression is "
                              "not read by this version", display);
    if (section_declared(cJSON_GetObjectItemCaseSensitive(object, "transform_config")))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: transform_config is declared; the stored weights are "
                              "rotated by transforms this version does not apply", display);

    /* Step 2: format, status, ignore, groups, kv_cache_scheme. */
    qref_status status = parse_top_level(object, out, err);
    if (status == QREF_OK)
        status = parse_groups(object, out, err);
    const cJSON *kv_cache = cJSON_GetObjectItemCaseSensitive(object, "kv_cache_scheme");
    if (status == QREF_OK && kv_cache != NULL && !cJSON_IsNull(kv_cache)) {
        args_parse parse;
        status = args_parse_object(out, "kv_cache_scheme", kv_cache, &parse);
        out->has_kv_cache = parse.valid;
        out->kv_cache = parse.args;
    }

    if (status == QREF_ERR_NOMEM)
        qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory while parsing", display);
    return status;
}

/* ---- resolution --------------------------------------------------------------------------- */

/* Match priority of apply.py's match_targets: exact name 0, regex 1, class name 2; -1 none. */
static int match_rank(const char *target, const void *regex, const char *module)
{
    if (strncmp(target, "re:", 3) == 0)
        return qref_ct_target_matches(target, regex, module, true) ? 1 : -1;
    if (strcmp(target, module) == 0)
        return 0;
    return qref_ct_target_matches(target, NULL, module, true) ? 2 : -1;
}

/* True when a later group lists the same target string, which then owns it (target_to_scheme). */
static bool target_overridden(const qref_ct_config *config, size_t s, const char *target)
{
    for (size_t later = s + 1; later < config->scheme_count; later++)
        for (size_t t = 0; t < config->schemes[later].target_count; t++)
            if (strcmp(config->schemes[later].targets[t], target) == 0)
                return true;
    return false;
}

qref_ct_resolution qref_ct_config_resolve(const qref_ct_config *config, const char *module)
{
    qref_ct_resolution result = {0};
    for (size_t k = 0; k < config->ignore_count; k++)
        result.ignored = result.ignored ||
                         qref_ct_target_matches(config->ignore[k], config->ignore_regexes[k], module, true);

    /* the best (rank, target string) over every target, as match_targets sorts them */
    const char *best_target = NULL;
    int best_rank = 3;
    const qref_ct_scheme *first = NULL, *second = NULL;
    for (size_t s = 0; s < config->scheme_count; s++) {
        const qref_ct_scheme *scheme = &config->schemes[s];
        bool matched = false;
        for (size_t t = 0; t < scheme->target_count; t++) {
            int rank = match_rank(scheme->targets[t], scheme->target_regexes[t], module);
            if (rank < 0)
                continue;
            matched = true;
            if (target_overridden(config, s, scheme->targets[t]))
                continue;
            if (rank < best_rank || (rank == best_rank && strcmp(scheme->targets[t], best_target) < 0)) {
                best_rank = rank;
                best_target = scheme->targets[t];
                result.scheme = scheme;
            }
        }
        if (!matched)
            continue;
        result.matching_groups++;
        if (first == NULL)
            first = scheme;
        else if (second == NULL)
            second = scheme;
    }
    if (result.matching_groups > 1)
        result.other = first != result.scheme ? first : second;
    if (result.ignored)
        result.scheme = NULL;
    return result;
}

/* Appends "<first>" or ", ..." listings into a bounded buffer. */
static void list_append(char *buf, size_t size, size_t *count, const char *item)
{
    size_t used = strlen(buf);
    if (*count < 3 && used < size)
        snprintf(buf + used, size - used, "%s\"%s\"", *count ? ", " : "", item);
    else if (*count == 3 && used < size)
        snprintf(buf + used, size - used, ", ...");
    (*count)++;
}

void qref_ct_config_check_targets(const qref_ct_config *config, const char *const *modules, size_t module_count,
                                  qref_findings *findings)
{
    /* targets and ignore entries that match no linear */
    for (size_t s = 0; s < config->scheme_count; s++) {
        const qref_ct_scheme *scheme = &config->schemes[s];
        for (size_t t = 0; t < scheme->target_count; t++) {
            bool matched = false;
            for (size_t m = 0; m < module_count && !matched; m++)
                matched = qref_ct_target_matches(scheme->targets[t], scheme->target_regexes[t], modules[m], true);
            if (!matched)
                qref_findings_add(findings, "ct.targets.unmatched", QREF_SEVERITY_WARNING, "",
                                  "%s: config_groups.%s.targets: \"%s\" matches none of the %zu linear layers (for "
                                  "example \"%s\"), so the group quantizes nothing through it", config->display,
                                  scheme->name, scheme->targets[t], module_count,
                                  module_count > 0 ? modules[0] : "none");
        }
    }
    for (size_t k = 0; k < config->ignore_count; k++) {
        bool matched = false;
        for (size_t m = 0; m < module_count && !matched; m++)
            matched = qref_ct_target_matches(config->ignore[k], config->ignore_regexes[k], modules[m], true);
        if (!matched)
            qref_findings_add(findings, "ct.targets.unmatched", QREF_SEVERITY_WARNING, "",
                              "%s: ignore: \"%s\" matches none of the %zu linear layers, so it keeps nothing in "
                              "float", config->display, config->ignore[k], module_count);
    }

    /* pairs of groups that both match a module, with the modules they share */
    for (size_t a = 0; a < config->scheme_count; a++) {
        for (size_t b = a + 1; b < config->scheme_count; b++) {
            char listed[512] = "";
            size_t shared = 0;
            const char *example = NULL;
            for (size_t m = 0; m < module_count; m++) {
                bool match_a = false, match_b = false;
                const qref_ct_scheme *sa = &config->schemes[a], *sb = &config->schemes[b];
                for (size_t t = 0; t < sa->target_count && !match_a; t++)
                    match_a = qref_ct_target_matches(sa->targets[t], sa->target_regexes[t], modules[m], true);
                for (size_t t = 0; t < sb->target_count && !match_b; t++)
                    match_b = qref_ct_target_matches(sb->targets[t], sb->target_regexes[t], modules[m], true);
                if (!match_a || !match_b)
                    continue;
                if (example == NULL)
                    example = modules[m];
                list_append(listed, sizeof listed, &shared, modules[m]);
            }
            if (shared == 0)
                continue;

            /* the group compressed-tensors gives the first shared module, ignore list aside */
            qref_ct_config unignored = *config;
            unignored.ignore_count = 0;
            const qref_ct_scheme *applied = qref_ct_config_resolve(&unignored, example).scheme;
            qref_findings_add(findings, "ct.targets.overlap", QREF_SEVERITY_WARNING, "",
                              "%s: config_groups.%s and config_groups.%s both target %zu linear layers (%s); "
                              "compressed-tensors applies %s to \"%s\" (the most specific target wins: exact "
                              "name, then regex, then class name), loaders that rank targets otherwise may not",
                              config->display, config->schemes[a].name, config->schemes[b].name, shared, listed,
                              applied != NULL ? applied->name : "neither group", example);
        }
    }
}

/* ---- the config the quantize command writes ---------------------------------------------- */

qref_status qref_ct_config_to_json(const qref_ct_args *weights, qref_ct_format format, const char *const *ignore,
                                   size_t ignore_count, cJSON **out, qref_error *err)
{
    *out = NULL;
    if (weights->strategy != QREF_CT_STRATEGY_TENSOR && weights->strategy != QREF_CT_STRATEGY_CHANNEL &&
        weights->strategy != QREF_CT_STRATEGY_GROUP)
        return qref_error_set(err, QREF_ERR_INVALID, "strategy \"%s\", expected tensor, channel or group",
                              strategy_names[weights->strategy]);
    if (format != QREF_CT_FORMAT_INT_QUANTIZED && format != QREF_CT_FORMAT_NAIVE_QUANTIZED &&
        format != QREF_CT_FORMAT_PACK_QUANTIZED)
        return qref_error_set(err, QREF_ERR_INVALID, "format \"%s\", expected int-quantized, naive-quantized or "
                              "pack-quantized", qref_ct_format_name(format));

    /* Keys in sorted order, as transformers writes config.json (json.dumps with sort_keys). */
    cJSON *root = cJSON_CreateObject();
    cJSON *groups = cJSON_AddObjectToObject(root, "config_groups");
    cJSON *group = cJSON_AddObjectToObject(groups, "group_0");
    cJSON_AddStringToObject(group, "format", qref_ct_format_name(format));
    cJSON_AddNullToObject(group, "input_activations");
    cJSON_AddNullToObject(group, "output_activations");
    cJSON *targets = cJSON_AddArrayToObject(group, "targets");
    cJSON_AddItemToArray(targets, cJSON_CreateString("Linear"));
    cJSON *args = cJSON_AddObjectToObject(group, "weights");
    cJSON_AddNullToObject(args, "actorder");
    cJSON_AddNullToObject(args, "block_structure");
    cJSON_AddBoolToObject(args, "dynamic", false);
    if (weights->strategy == QREF_CT_STRATEGY_GROUP)
        cJSON_AddNumberToObject(args, "group_size", (double)weights->group_size);
    else
        cJSON_AddNullToObject(args, "group_size");
    cJSON_AddNumberToObject(args, "num_bits", weights->num_bits);
    cJSON_AddStringToObject(args, "observer", "minmax");
    cJSON_AddObjectToObject(args, "observer_kwargs");
    cJSON_AddStringToObject(args, "strategy", strategy_names[weights->strategy]);
    cJSON_AddBoolToObject(args, "symmetric", weights->symmetric);
    cJSON_AddStringToObject(args, "type", "int");
    cJSON_AddStringToObject(root, "format", qref_ct_format_name(format));
    cJSON_AddNullToObject(root, "global_compression_ratio");
    cJSON *ignored = cJSON_AddArrayToObject(root, "ignore");
    for (size_t k = 0; k < ignore_count && ignored != NULL; k++)
        cJSON_AddItemToArray(ignored, cJSON_CreateString(ignore[k]));
    cJSON_AddNullToObject(root, "kv_cache_scheme");
    cJSON_AddStringToObject(root, "quant_method", "compressed-tensors");
    cJSON_AddStringToObject(root, "quantization_status", "compressed");

    /* cJSON's adders return NULL on a failed allocation; a complete tree has every key. */
    if (cJSON_GetObjectItemCaseSensitive(root, "quantization_status") == NULL || targets == NULL || args == NULL ||
        cJSON_GetObjectItemCaseSensitive(args, "type") == NULL) {
        cJSON_Delete(root);
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for the quantization config");
    }
    *out = root;
    return QREF_OK;
}
