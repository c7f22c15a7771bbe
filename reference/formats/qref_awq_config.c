/*
 * AWQ quantization configs: config.json's quantization_config as transformers reads it
 * (AwqConfig: quant_method, bits, group_size, zero_point, version, backend,
 * modules_to_not_convert) and AutoAWQ's older quant_config.json (AwqConfig.to_dict in
 * awq/models/_config.py: zero_point, q_group_size, w_bit, version, modules_to_not_convert).
 * Keys are matched exactly, as both projects do; keys neither project reads for the layout
 * (exllama_config, do_fuse, fuse_max_seq_len, modules_to_fuse) are ignored.
 */
#include "formats/qref_awq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/qref_json.h"

/* Largest bit width accepted when parsing; anything but 4 is reported by the linear check. */
#define AWQ_CONFIG_MAX_BITS 32

void qref_awq_config_init(qref_awq_config *config)
{
    memset(config, 0, sizeof *config);
    config->bits = QREF_AWQ_BITS;
    config->group_size = 128;
    config->zero_point = true;
    config->layout = QREF_AWQ_LAYOUT_GEMM;
    snprintf(config->version, sizeof config->version, "gemm");
}

static void free_modules(qref_awq_config *config)
{
    for (size_t k = 0; k < config->not_convert_count; k++)
        free(config->modules_to_not_convert[k]);
    free(config->modules_to_not_convert);
    config->modules_to_not_convert = NULL;
    config->not_convert_count = 0;
}

void qref_awq_config_free(qref_awq_config *config)
{
    if (config == NULL)
        return;
    free_modules(config);
    qref_awq_config_init(config);
}

int64_t qref_awq_group_size(const qref_awq_config *config, int64_t in_features)
{
    return config->group_size == -1 ? in_features : config->group_size;
}

bool qref_awq_module_not_converted(const qref_awq_config *config, const char *module)
{
    for (size_t k = 0; k < config->not_convert_count; k++)
        if (strstr(module, config->modules_to_not_convert[k]) != NULL)
            return true;
    return false;
}

/* ---- one object --------------------------------------------------------------------------- */

/* Returns the member under either spelling; both present with different values fail. */
static qref_status find_member(const char *display, const cJSON *object, const char *key, const char *synonym,
                               const cJSON **out, qref_error *err)
{
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(object, key);
    const cJSON *second = synonym != NULL ? cJSON_GetObjectItemCaseSensitive(object, synonym) : NULL;
    if (first != NULL && cJSON_IsNull(first))
        first = NULL;
    if (second != NULL && cJSON_IsNull(second))
        second = NULL;
    if (first != NULL && second != NULL && !cJSON_Compare(first, second, true)) {
        char a[96], b[96];
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: keys \"%s\" (%s) and \"%s\" (%s) name the same setting with different values, "
                              "expected equal values",
                              display, key, qref_json_describe(first, a, sizeof a), synonym,
                              qref_json_describe(second, b, sizeof b));
    }
    *out = first != NULL ? first : second;
    return QREF_OK;
}

/* Maps a version to its layout; gemv_fast and marlin are named as not supported. */
static qref_status parse_version(const char *display, const char *key, const char *value, qref_awq_config *out,
                                 qref_error *err)
{
    char lower[sizeof out->version];
    size_t length = strlen(value);
    if (length >= sizeof lower)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s \"%.40s\" is unknown, expected \"gemm\" or \"gemv\"",
                              display, key, value);
    for (size_t k = 0; k <= length; k++)
        lower[k] = (char)(value[k] >= 'A' && value[k] <= 'Z' ? value[k] - 'A' + 'a' : value[k]);

    if (strcmp(lower, "gemm") == 0 || strcmp(lower, "exllama") == 0 || strcmp(lower, "ipex") == 0) {
        /* exllama and ipex are load-time kernels whose modules take GEMM's tensors */
        out->layout = QREF_AWQ_LAYOUT_GEMM;
    } else if (strcmp(lower, "gemv") == 0) {
        out->layout = QREF_AWQ_LAYOUT_GEMV;
    } else if (strcmp(lower, "gemv_fast") == 0 || strcmp(lower, "marlin") == 0) {
        /* TODO: read the GEMV_fast (int16 interleaved, pre-scaled zeros) and Marlin layouts. */
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: %s \"%s\" is the AWQ %s layout, which this version does not read (it reads "
                              "\"gemm\", \"gemv\", and \"exllama\" and \"ipex\", which store GEMM's tensors)",
                              display, key, value, strcmp(lower, "marlin") == 0 ? "Marlin" : "GEMV_fast");
    } else {
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s \"%s\" is unknown, expected \"gemm\", \"gemv\", \"exllama\", \"ipex\", "
                              "\"gemv_fast\" or \"marlin\"",
                              display, key, value);
    }
    memcpy(out->version, lower, length + 1);
    out->declared |= QREF_AWQ_KEY_VERSION;
    return QREF_OK;
}

/* Copies modules_to_not_convert (an array of strings) into out. */
static qref_status parse_modules(const char *display, const cJSON *item, qref_awq_config *out, qref_error *err)
{
    if (!cJSON_IsArray(item)) {
        char found[96];
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is %s, expected null or an array of module names",
                              display, item->string, qref_json_describe(item, found, sizeof found));
    }
    size_t count = (size_t)cJSON_GetArraySize(item);
    free_modules(out);
    out->modules_to_not_convert = calloc(count + 1, sizeof *out->modules_to_not_convert);
    if (out->modules_to_not_convert == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu module names", display, count);
    size_t index = 0;
    for (const cJSON *entry = item->child; entry != NULL; entry = entry->next, index++) {
        if (!cJSON_IsString(entry)) {
            char found[96];
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s[%zu] is %s, expected a module name (a string)",
                                  display, item->string, index, qref_json_describe(entry, found, sizeof found));
        }
        out->modules_to_not_convert[index] = strdup(entry->valuestring);
        if (out->modules_to_not_convert[index] == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot copy module names", display);
        out->not_convert_count = index + 1;
    }
    out->declared |= QREF_AWQ_KEY_MODULES_TO_NOT_CONVERT;
    return QREF_OK;
}

/* Checks quant_method (when present) and transformers' backend. */
static qref_status parse_method(const char *display, const cJSON *object, qref_error *err)
{
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(object, "quant_method");
    if (method != NULL && !cJSON_IsNull(method)) {
        if (!cJSON_IsString(method)) {
            char found[96];
            return qref_error_set(err, QREF_ERR_INVALID, "%s: quant_method is %s, expected \"awq\"", display,
                                  qref_json_describe(method, found, sizeof found));
        }
        if (strcasecmp(method->valuestring, "awq") != 0)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: quant_method \"%.64s\", expected \"awq\"", display,
                                  method->valuestring);
    }
    const char *backend = NULL;
    qref_status status = qref_json_get_string(display, object, "backend", false, NULL, &backend, err);
    if (status != QREF_OK || backend == NULL || strcasecmp(backend, "autoawq") == 0)
        return status;
    if (strcasecmp(backend, "llm-awq") == 0)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: backend \"llm-awq\" loads llm-awq's WQLinear, whose packing differs from "
                              "AutoAWQ's GEMM and GEMV layouts and is not read by this version; expected backend "
                              "\"autoawq\"",
                              display);
    return qref_error_set(err, QREF_ERR_INVALID, "%s: backend \"%.64s\" is unknown, expected \"autoawq\" or "
                          "\"llm-awq\"", display, backend);
}

qref_status qref_awq_config_parse(const char *display, const cJSON *object, qref_awq_config *out, qref_error *err)
{
    qref_awq_config_init(out);
    if (!cJSON_IsObject(object))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the quantization config is %s, expected an object", display,
                              qref_json_type_name(object));
    snprintf(out->source, sizeof out->source, "%s", display);
    qref_status status = parse_method(display, object, err);

    /* bits / w_bit: parsed in a wide range; the linear check reports widths other than 4 */
    const cJSON *item = NULL;
    if (status == QREF_OK)
        status = find_member(display, object, "bits", "w_bit", &item, err);
    if (status == QREF_OK && item != NULL) {
        int64_t bits = 0;
        status = qref_json_item_int(display, item->string, item, 1, AWQ_CONFIG_MAX_BITS, &bits, err);
        out->bits = (int)bits;
        out->declared |= QREF_AWQ_KEY_BITS;
    }

    /* group_size / q_group_size: -1 or a positive count */
    if (status == QREF_OK)
        status = find_member(display, object, "group_size", "q_group_size", &item, err);
    if (status == QREF_OK && item != NULL) {
        status = qref_json_item_int(display, item->string, item, -1, (int64_t)1 << 30, &out->group_size, err);
        if (status == QREF_OK && out->group_size == 0)
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: %s is 0, expected -1 or a positive group size",
                                    display, item->string);
        out->declared |= QREF_AWQ_KEY_GROUP_SIZE;
    }

    /* zero_point */
    if (status == QREF_OK)
        status = find_member(display, object, "zero_point", NULL, &item, err);
    if (status == QREF_OK && item != NULL) {
        status = qref_json_get_bool(display, object, "zero_point", true, true, &out->zero_point, err);
        out->declared |= QREF_AWQ_KEY_ZERO_POINT;
    }

    /* version */
    if (status == QREF_OK)
        status = find_member(display, object, "version", NULL, &item, err);
    if (status == QREF_OK && item != NULL) {
        const char *version = NULL;
        status = qref_json_get_string(display, object, "version", true, NULL, &version, err);
        if (status == QREF_OK)
            status = parse_version(display, "version", version, out, err);
    }

    /* modules_to_not_convert: null means none */
    if (status == QREF_OK)
        status = find_member(display, object, "modules_to_not_convert", NULL, &item, err);
    if (status == QREF_OK && item != NULL)
        status = parse_modules(display, item, out, err);

    if (status != QREF_OK)
        qref_awq_config_free(out);
    return status;
}

/* ---- two files ---------------------------------------------------------------------------- */

/* Formats the module list as ["a", "b"] for messages. */
static void modules_text(const qref_awq_config *config, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (size_t k = 0; k < config->not_convert_count && used < size; k++)
        used += (size_t)snprintf(buf + used, size - used, "%s\"%s\"", k ? ", " : "", config->modules_to_not_convert[k]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

static bool modules_equal(const qref_awq_config *a, const qref_awq_config *b)
{
    if (a->not_convert_count != b->not_convert_count)
        return false;
    for (size_t k = 0; k < a->not_convert_count; k++)
        if (strcmp(a->modules_to_not_convert[k], b->modules_to_not_convert[k]) != 0)
            return false;
    return true;
}

/* Fails when a key both configs declare has different values. */
static qref_status compare_configs(const qref_awq_config *config, const qref_awq_config *quant, qref_error *err)
{
    const unsigned both = config->declared & quant->declared;
    char a[256], b[256];
    const char *key = NULL;
    if ((both & QREF_AWQ_KEY_BITS) && config->bits != quant->bits) {
        key = "bits";
        snprintf(a, sizeof a, "%d", config->bits);
        snprintf(b, sizeof b, "%d", quant->bits);
    } else if ((both & QREF_AWQ_KEY_GROUP_SIZE) && config->group_size != quant->group_size) {
        key = "group_size";
        snprintf(a, sizeof a, "%lld", (long long)config->group_size);
        snprintf(b, sizeof b, "%lld", (long long)quant->group_size);
    } else if ((both & QREF_AWQ_KEY_ZERO_POINT) && config->zero_point != quant->zero_point) {
        key = "zero_point";
        snprintf(a, sizeof a, "%s", config->zero_point ? "true" : "false");
        snprintf(b, sizeof b, "%s", quant->zero_point ? "true" : "false");
    } else if ((both & QREF_AWQ_KEY_VERSION) && strcmp(config->version, quant->version) != 0) {
        key = "version";
        snprintf(a, sizeof a, "\"%s\"", config->version);
        snprintf(b, sizeof b, "\"%s\"", quant->version);
    } else if ((both & QREF_AWQ_KEY_MODULES_TO_NOT_CONVERT) && !modules_equal(config, quant)) {
        key = "modules_to_not_convert";
        modules_text(config, a, sizeof a);
        modules_text(quant, b, sizeof b);
    }
    if (key == NULL)
        return QREF_OK;
    return qref_error_set(err, QREF_ERR_INVALID,
                          "%s gives %s %s but %s gives %s; expected the two to agree (transformers reads the first, "
                          "older AutoAWQ the second)",
                          config->source, key, a, quant->source, b);
}

/* Takes from quant the keys config does not declare (config keeps its own). */
static void merge_undeclared(qref_awq_config *config, qref_awq_config *quant)
{
    const unsigned missing = quant->declared & ~config->declared;
    if (missing & QREF_AWQ_KEY_BITS)
        config->bits = quant->bits;
    if (missing & QREF_AWQ_KEY_GROUP_SIZE)
        config->group_size = quant->group_size;
    if (missing & QREF_AWQ_KEY_ZERO_POINT)
        config->zero_point = quant->zero_point;
    if (missing & QREF_AWQ_KEY_VERSION) {
        config->layout = quant->layout;
        memcpy(config->version, quant->version, sizeof config->version);
    }
    if (missing & QREF_AWQ_KEY_MODULES_TO_NOT_CONVERT) {
        free_modules(config);
        config->modules_to_not_convert = quant->modules_to_not_convert;
        config->not_convert_count = quant->not_convert_count;
        quant->modules_to_not_convert = NULL;
        quant->not_convert_count = 0;
    }
    config->declared |= quant->declared;
}

/* Parses text into a JSON tree; *root stays NULL when text is NULL. */
static qref_status parse_text(const char *display, const char *text, size_t length, cJSON **root, qref_error *err)
{
    *root = NULL;
    if (text == NULL)
        return QREF_OK;
    return qref_json_parse(display, text, length, QREF_JSON_MAX_DEPTH, root, err);
}

qref_status qref_awq_config_resolve(const char *quant_display, const char *quant_text, size_t quant_length,
                                    const char *config_display, const char *config_text, size_t config_length,
                                    qref_awq_config *out, qref_error *err)
{
    qref_awq_config_init(out);
    quant_display = quant_display != NULL ? quant_display : "quant_config.json";
    config_display = config_display != NULL ? config_display : "config.json";

    /* Step 1: both files, as JSON. */
    cJSON *quant_root = NULL, *config_root = NULL;
    qref_status status = parse_text(quant_display, quant_text, quant_length, &quant_root, err);
    if (status == QREF_OK)
        status = parse_text(config_display, config_text, config_length, &config_root, err);
    const cJSON *quantization = cJSON_GetObjectItemCaseSensitive(config_root, "quantization_config");
    if (quantization != NULL && cJSON_IsNull(quantization))
        quantization = NULL;
    if (status == QREF_OK && quantization == NULL && quant_root == NULL)
        status = qref_error_set(err, QREF_ERR_INVALID, "no AWQ config found: %s has no quantization_config and "
                                "there is no %s", config_display, quant_display);

    /* Step 2: each object on its own. */
    qref_awq_config from_config, from_quant;
    qref_awq_config_init(&from_config);
    qref_awq_config_init(&from_quant);
    char display[QREF_AWQ_CONFIG_TEXT_MAX];
    snprintf(display, sizeof display, "%s: quantization_config", config_display);
    if (status == QREF_OK && quantization != NULL)
        status = qref_awq_config_parse(display, quantization, &from_config, err);
    if (status == QREF_OK && quant_root != NULL)
        status = qref_awq_config_parse(quant_display, quant_root, &from_quant, err);

    /* Step 3: keys both declare must agree; the rest is merged. */
    if (status == QREF_OK && quantization != NULL && quant_root != NULL) {
        status = compare_configs(&from_config, &from_quant, err);
        if (status == QREF_OK) {
            merge_undeclared(&from_config, &from_quant);
            snprintf(from_config.source, sizeof from_config.source, "%.60s + %.60s", display, quant_display);
        }
    }
    if (status == QREF_OK) {
        if (quantization != NULL) {
            *out = from_config;
            qref_awq_config_free(&from_quant);
        } else {
            *out = from_quant;
        }
    } else {
        qref_awq_config_free(&from_config);
        qref_awq_config_free(&from_quant);
    }
    cJSON_Delete(quant_root);
    cJSON_Delete(config_root);
    return status;
}

/* ---- writer ------------------------------------------------------------------------------- */

qref_status qref_awq_config_to_json(const qref_awq_config *config, cJSON **out, qref_error *err)
{
    *out = NULL;
    if (config->bits != QREF_AWQ_BITS)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "quantization config: bits %d, expected 4", config->bits);
    if (config->group_size != -1 && config->group_size <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "quantization config: group_size %lld, expected -1 or > 0",
                              (long long)config->group_size);

    /* Keys in the order of AutoAWQ's AwqConfig.to_transformers_dict. */
    cJSON *object = cJSON_CreateObject();
    bool ok = object != NULL && cJSON_AddStringToObject(object, "quant_method", "awq") != NULL &&
              cJSON_AddBoolToObject(object, "zero_point", config->zero_point) != NULL &&
              cJSON_AddNumberToObject(object, "group_size", (double)config->group_size) != NULL &&
              cJSON_AddNumberToObject(object, "bits", config->bits) != NULL &&
              cJSON_AddStringToObject(object, "version", config->version) != NULL;
    if (ok && config->not_convert_count == 0) {
        ok = cJSON_AddNullToObject(object, "modules_to_not_convert") != NULL;
    } else if (ok) {
        cJSON *list = cJSON_AddArrayToObject(object, "modules_to_not_convert");
        ok = list != NULL;
        for (size_t k = 0; ok && k < config->not_convert_count; k++) {
            cJSON *name = cJSON_CreateString(config->modules_to_not_convert[k]);
            ok = name != NULL && cJSON_AddItemToArray(list, name);
        }
    }
    if (!ok) {
        cJSON_Delete(object);
        return qref_error_set(err, QREF_ERR_NOMEM, "quantization config: cannot allocate the JSON object");
    }
    *out = object;
    return QREF_OK;
}
