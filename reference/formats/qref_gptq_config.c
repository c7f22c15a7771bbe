/*
 * GPTQ quantization configs: quantize_config.json and config.json's quantization_config as
 * AutoGPTQ (auto_gptq/quantization/config.py, BaseQuantizeConfig.from_quant_config and
 * to_dict), optimum and GPTQModel (gptqmodel/quantization/config.py, QuantizeConfig) write
 * them, and the writer for the object AutoGPTQ saves.
 *
 * Readers lower-case every key and map synonyms before use. A key whose value is null counts
 * as absent, because GPTQModel and transformers write null for unset fields. bits is the
 * exception: AutoGPTQ keeps a null bits and rejects it, so it is an error here too.
 */
#include "formats/qref_gptq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "io/qref_blob.h"
#include "io/qref_json.h"

/* Config files are a few hundred bytes, so anything larger is not a config. */
#define GPTQ_CONFIG_MAX_BYTES (16u << 20)
#define GPTQ_CONFIG_MAX_DEPTH 64

typedef enum config_field {
    FIELD_BITS,
    FIELD_GROUP_SIZE,
    FIELD_SYM,
    FIELD_ZERO_POINT,
    FIELD_DESC_ACT,
    FIELD_STATIC_GROUPS,
    FIELD_TRUE_SEQUENTIAL,
    FIELD_DAMP_PERCENT,
    FIELD_FORMAT,
    FIELD_QUANT_METHOD,
    FIELD_PACK_DTYPE,
    FIELD_IS_MARLIN_FORMAT,
    FIELD_DYNAMIC,
    FIELD_LM_HEAD,
    FIELD_META,
    FIELD_COUNT
} config_field;

/* Lower-case key spellings and the field each one sets (QUANT_CONFIG_ARG_SYNONYMS in both
 * AutoGPTQ and GPTQModel, plus GPTQModel's negated zero_point and the act_order key that some
 * GPTQModel versions write for desc_act). */
static const struct {
    const char *key;
    config_field field;
} config_keys[] = {
    {"bits", FIELD_BITS},
    {"w_bit", FIELD_BITS},
    {"wbits", FIELD_BITS},
    {"group_size", FIELD_GROUP_SIZE},
    {"q_group_size", FIELD_GROUP_SIZE},
    {"sym", FIELD_SYM},
    {"zero_point", FIELD_ZERO_POINT},
    {"desc_act", FIELD_DESC_ACT},
    {"act_order", FIELD_DESC_ACT},
    {"static_groups", FIELD_STATIC_GROUPS},
    {"true_sequential", FIELD_TRUE_SEQUENTIAL},
    {"damp_percent", FIELD_DAMP_PERCENT},
    {"checkpoint_format", FIELD_FORMAT},
    {"format", FIELD_FORMAT},
    {"version", FIELD_FORMAT},
    {"quant_method", FIELD_QUANT_METHOD},
    {"method", FIELD_QUANT_METHOD},
    {"pack_dtype", FIELD_PACK_DTYPE},
    {"is_marlin_format", FIELD_IS_MARLIN_FORMAT},
    {"dynamic", FIELD_DYNAMIC},
    {"lm_head", FIELD_LM_HEAD},
    {"meta", FIELD_META},
};

/* Formats and methods that are real but not the AutoGPTQ int32 layout this codec reads. */
static const char *const repacked_formats[] = {"marlin", "bitblas", "ipex", "qqq", "exl2", "gguf"};
static const char *const awq_formats[] = {"gemm", "gemv", "gemv_fast", "llm-awq"};

void qref_gptq_config_init(qref_gptq_config *config)
{
    memset(config, 0, sizeof *config);
    config->bits = 4;
    config->group_size = -1;
    config->sym = true;
    config->desc_act = false;
    config->static_groups = false;
    config->true_sequential = true;
    config->lm_head = false;
    config->damp_percent = 0.01;
    config->format = QREF_GPTQ_FORMAT_V1;
    config->pack_bits = 32;
}

const char *qref_gptq_format_name(qref_gptq_format format)
{
    return format == QREF_GPTQ_FORMAT_V2 ? "gptq_v2" : "gptq";
}

const char *qref_gptq_pack_dtype_name(int pack_bits)
{
    switch (pack_bits) {
    case 8: return "int8";
    case 16: return "int16";
    case 32: return "int32";
    case 64: return "int64";
    default: return NULL;
    }
}

bool qref_gptq_pack_dtype_parse(const char *name, int *pack_bits)
{
    static const int widths[] = {8, 16, 32, 64};
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
        if (strcasecmp(name, qref_gptq_pack_dtype_name(widths[k])) == 0) {
            *pack_bits = widths[k];
            return true;
        }
    }
    return false;
}

static bool name_in(const char *value, const char *const *names, size_t count)
{
    for (size_t k = 0; k < count; k++) {
        if (strcasecmp(value, names[k]) == 0)
            return true;
    }
    return false;
}

/* Finds the field of one key, case-insensitively, or returns FIELD_COUNT for other keys. */
static config_field field_of_key(const char *key)
{
    for (size_t k = 0; k < sizeof config_keys / sizeof config_keys[0]; k++) {
        if (strcasecmp(key, config_keys[k].key) == 0)
            return config_keys[k].field;
    }
    return FIELD_COUNT;
}

/* Short printable form of a JSON value for messages. */
static void json_value_text(const cJSON *item, char *buf, size_t size)
{
    char *text = cJSON_PrintUnformatted(item);
    snprintf(buf, size, "%s", text != NULL ? text : "?");
    cJSON_free(text);
}

/* Collects each field's member with its exact key. Two spellings of one field must agree. */
static qref_status collect_fields(const char *display, const cJSON *object, const cJSON *items[FIELD_COUNT],
                                  qref_error *err)
{
    memset(items, 0, sizeof(items[0]) * FIELD_COUNT);
    for (const cJSON *child = object->child; child != NULL; child = child->next) {
        config_field field = field_of_key(child->string);
        /* AutoGPTQ copies a null bits into its config and then rejects it */
        if (field == FIELD_BITS && cJSON_IsNull(child))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is null, expected 2, 3, 4 or 8", display,
                                  child->string);
        if (field == FIELD_COUNT || cJSON_IsNull(child))
            continue;
        if (items[field] != NULL && !cJSON_Compare(items[field], child, true)) {
            char first[128], second[128];
            json_value_text(items[field], first, sizeof first);
            json_value_text(child, second, sizeof second);
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: keys \"%s\" (%s) and \"%s\" (%s) name the same setting with different "
                                  "values, expected equal values",
                                  display, items[field]->string, first, child->string, second);
        }
        if (items[field] == NULL)
            items[field] = child;
    }
    return QREF_OK;
}


/* Parses a format value ("gptq" is v1, "gptq_v2" is v2) and names repacked and AWQ layouts. */
static qref_status parse_format_value(const char *display, const char *key, const char *value,
                                      qref_gptq_config *out, qref_error *err)
{
    if (strcasecmp(value, "gptq") == 0) {
        out->format = QREF_GPTQ_FORMAT_V1;
    } else if (strcasecmp(value, "gptq_v2") == 0) {
        out->format = QREF_GPTQ_FORMAT_V2;
    } else if (name_in(value, repacked_formats, sizeof repacked_formats / sizeof repacked_formats[0])) {
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: %s \"%s\" is a repacked GPTQ layout, which is not supported; expected "
                              "\"gptq\" or \"gptq_v2\"",
                              display, key, value);
    } else if (name_in(value, awq_formats, sizeof awq_formats / sizeof awq_formats[0])) {
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: %s \"%s\" is an AWQ layout, not GPTQ; expected \"gptq\" or \"gptq_v2\"", display,
                              key, value);
    } else {
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s \"%s\" is unknown, expected \"gptq\" or \"gptq_v2\"",
                              display, key, value);
    }
    out->declared |= QREF_GPTQ_KEY_FORMAT;
    return QREF_OK;
}

/* Accepts quant_method "gptq". "marlin" and "bitblas" (used there by some hub models) name
 * repacked layouts, and every other method is not GPTQ. */
static qref_status parse_quant_method(const char *display, const char *key, const char *value, qref_error *err)
{
    if (strcasecmp(value, "gptq") == 0)
        return QREF_OK;
    if (name_in(value, repacked_formats, sizeof repacked_formats / sizeof repacked_formats[0]))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: %s \"%s\" is a repacked GPTQ layout, which is not supported; expected \"gptq\"",
                              display, key, value);
    return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                          "%s: %s \"%s\" is not GPTQ, expected \"gptq\" (other methods have their own readers)",
                          display, key, value);
}

/* Reads a boolean member when present and marks it declared. */
static qref_status read_bool(const char *display, const cJSON *parent, const cJSON *item, bool *value,
                             unsigned *declared, unsigned key_bit, qref_error *err)
{
    if (item == NULL)
        return QREF_OK;
    qref_status status = qref_json_get_bool(display, parent, item->string, true, false, value, err);
    if (status == QREF_OK)
        *declared |= key_bit;
    return status;
}

/* Joins meta.quantizer (a string, or GPTQModel's list of "name:version" strings) with ",". */
static qref_status read_quantizer(const char *display, const cJSON *item, char *buf, size_t size, qref_error *err)
{
    buf[0] = '\0';
    if (cJSON_IsString(item)) {
        snprintf(buf, size, "%s", item->valuestring);
        return QREF_OK;
    }
    if (!cJSON_IsArray(item))
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: quantizer is not a string or a list of strings, expected e.g. "
                              "[\"gptqmodel:1.0.0\"]",
                              display);
    size_t used = 0;
    for (const cJSON *entry = item->child; entry != NULL; entry = entry->next) {
        if (!cJSON_IsString(entry))
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: quantizer holds a value that is not a string, expected strings", display);
        int written = snprintf(buf + used, size - used, "%s%s", used > 0 ? "," : "", entry->valuestring);
        if (written < 0 || (size_t)written >= size - used)
            break;
        used += (size_t)written;
    }
    return QREF_OK;
}

/*
 * Reads GPTQModel's meta object: provenance (quantizer, algorithm) and the algorithm-only
 * settings GPTQModel stores there. A setting present both at the top and in meta must agree.
 */
static qref_status parse_meta(const char *display, const cJSON *meta, const cJSON *items[FIELD_COUNT],
                              qref_gptq_config *out, qref_error *err)
{
    char meta_display[QREF_GPTQ_CONFIG_TEXT_MAX + 16];
    snprintf(meta_display, sizeof meta_display, "%s: meta", display);
    if (!cJSON_IsObject(meta))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: not an object, expected an object", meta_display);

    const cJSON *quantizer = cJSON_GetObjectItemCaseSensitive(meta, "quantizer");
    if (quantizer != NULL && !cJSON_IsNull(quantizer)) {
        qref_status status = read_quantizer(meta_display, quantizer, out->quantizer, sizeof out->quantizer, err);
        if (status != QREF_OK)
            return status;
    }
    qref_status status = QREF_OK;
    const cJSON *algorithm = cJSON_GetObjectItemCaseSensitive(meta, "algorithm");
    if (algorithm != NULL && !cJSON_IsNull(algorithm)) {
        const char *text = NULL;
        status = qref_json_get_string(meta_display, meta, "algorithm", true, NULL, &text, err);
        if (status != QREF_OK)
            return status;
        snprintf(out->algorithm, sizeof out->algorithm, "%s", text);
    }

    static const config_field meta_fields[] = {FIELD_STATIC_GROUPS, FIELD_TRUE_SEQUENTIAL, FIELD_DAMP_PERCENT};
    for (size_t k = 0; k < sizeof meta_fields / sizeof meta_fields[0]; k++) {
        const char *key = meta_fields[k] == FIELD_STATIC_GROUPS     ? "static_groups"
                          : meta_fields[k] == FIELD_TRUE_SEQUENTIAL ? "true_sequential"
                                                                    : "damp_percent";
        const cJSON *inner = cJSON_GetObjectItemCaseSensitive(meta, key);
        if (inner == NULL || cJSON_IsNull(inner))
            continue;
        const cJSON *top = items[meta_fields[k]];
        if (top != NULL && !cJSON_Compare(top, inner, true)) {
            char first[128], second[128];
            json_value_text(top, first, sizeof first);
            json_value_text(inner, second, sizeof second);
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: \"%s\" is %s but meta.%s is %s, expected equal values", display,
                                  top->string, first, key, second);
        }
        if (top != NULL)
            continue;
        if (meta_fields[k] == FIELD_STATIC_GROUPS)
            status = read_bool(meta_display, meta, inner, &out->static_groups, &out->declared,
                               QREF_GPTQ_KEY_STATIC_GROUPS, err);
        else if (meta_fields[k] == FIELD_TRUE_SEQUENTIAL)
            status = read_bool(meta_display, meta, inner, &out->true_sequential, &out->declared,
                               QREF_GPTQ_KEY_TRUE_SEQUENTIAL, err);
        else
            status = qref_json_get_double(meta_display, meta, key, true, 0.0, &out->damp_percent, err);
        if (status != QREF_OK)
            return status;
        if (meta_fields[k] == FIELD_DAMP_PERCENT)
            out->declared |= QREF_GPTQ_KEY_DAMP_PERCENT;
    }
    return QREF_OK;
}

/* Reads the method, format and container keys, which decide whether this codec applies. */
static qref_status parse_layout_keys(const char *display, const cJSON *object, const cJSON *items[FIELD_COUNT],
                                     qref_gptq_config *out, qref_error *err)
{
    const char *value = NULL;
    qref_status status;
    if (items[FIELD_QUANT_METHOD] != NULL) {
        const char *key = items[FIELD_QUANT_METHOD]->string;
        status = qref_json_get_string(display, object, key, true, NULL, &value, err);
        if (status == QREF_OK)
            status = parse_quant_method(display, key, value, err);
        if (status != QREF_OK)
            return status;
    }

    bool marlin = false;
    unsigned ignored = 0;
    status = read_bool(display, object, items[FIELD_IS_MARLIN_FORMAT], &marlin, &ignored, 0, err);
    if (status != QREF_OK)
        return status;
    if (marlin)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: is_marlin_format is true: Marlin-repacked GPTQ is not supported, expected the "
                              "AutoGPTQ layout",
                              display);

    if (items[FIELD_FORMAT] != NULL) {
        const char *key = items[FIELD_FORMAT]->string;
        status = qref_json_get_string(display, object, key, true, NULL, &value, err);
        if (status == QREF_OK)
            status = parse_format_value(display, key, value, out, err);
        if (status != QREF_OK)
            return status;
    }

    /* GPTQModel writes str(torch dtype) without the "torch." prefix: "int32", "int16", ... */
    if (items[FIELD_PACK_DTYPE] != NULL) {
        status = qref_json_get_string(display, object, items[FIELD_PACK_DTYPE]->string, true, NULL, &value, err);
        if (status != QREF_OK)
            return status;
        if (!qref_gptq_pack_dtype_parse(value, &out->pack_bits))
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: pack_dtype \"%s\" is unknown, expected \"int8\", \"int16\", \"int32\" or "
                                  "\"int64\"",
                                  display, value);
        out->declared |= QREF_GPTQ_KEY_PACK_DTYPE;
    }

    const cJSON *dynamic = items[FIELD_DYNAMIC];
    if (dynamic != NULL) {
        if (!cJSON_IsObject(dynamic))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: dynamic is not an object, expected an object or null",
                                  display);
        if (dynamic->child != NULL)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                                  "%s: dynamic holds per-module overrides (first \"%s\"), which are not "
                                  "supported; expected null or {}",
                                  display, dynamic->child->string);
    }
    return QREF_OK;
}

/* Reads bits, group size, symmetry, act-order and the algorithm-only settings. */
static qref_status parse_quant_keys(const char *display, const cJSON *object, const cJSON *items[FIELD_COUNT],
                                    qref_gptq_config *out, qref_error *err)
{
    int64_t number;
    qref_status status;
    if (items[FIELD_BITS] != NULL) {
        /* every value other than the four widths gets the same message, whatever its type */
        const cJSON *bits = items[FIELD_BITS];
        double value = cJSON_IsNumber(bits) ? bits->valuedouble : 0.0;
        if (!cJSON_IsNumber(bits) || (value != 2 && value != 3 && value != 4 && value != 8)) {
            char found[96];
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is %s, expected 2, 3, 4 or 8", display, bits->string,
                                  qref_json_describe(bits, found, sizeof found));
        }
        out->bits = (int)value;
        out->declared |= QREF_GPTQ_KEY_BITS;
    }

    if (items[FIELD_GROUP_SIZE] != NULL) {
        status = qref_json_get_int(display, object, items[FIELD_GROUP_SIZE]->string, true, -1, -1, 1 << 30,
                                   &number, err);
        if (status != QREF_OK)
            return status;
        if (number == 0)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is 0, expected -1 (one group) or a positive size",
                                  display, items[FIELD_GROUP_SIZE]->string);
        out->group_size = (long)number;
        out->declared |= QREF_GPTQ_KEY_GROUP_SIZE;
    }

    status = read_bool(display, object, items[FIELD_SYM], &out->sym, &out->declared, QREF_GPTQ_KEY_SYM, err);
    if (status != QREF_OK)
        return status;
    if (items[FIELD_ZERO_POINT] != NULL) {
        bool zero_point = false;
        unsigned ignored = 0;
        status = read_bool(display, object, items[FIELD_ZERO_POINT], &zero_point, &ignored, 0, err);
        if (status != QREF_OK)
            return status;
        if ((out->declared & QREF_GPTQ_KEY_SYM) && out->sym == zero_point)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: sym is %s but zero_point is %s, expected zero_point = not sym", display,
                                  out->sym ? "true" : "false", zero_point ? "true" : "false");
        out->sym = !zero_point;
        out->declared |= QREF_GPTQ_KEY_SYM;
    }

    status = read_bool(display, object, items[FIELD_DESC_ACT], &out->desc_act, &out->declared,
                       QREF_GPTQ_KEY_DESC_ACT, err);
    if (status == QREF_OK)
        status = read_bool(display, object, items[FIELD_STATIC_GROUPS], &out->static_groups, &out->declared,
                           QREF_GPTQ_KEY_STATIC_GROUPS, err);
    if (status == QREF_OK)
        status = read_bool(display, object, items[FIELD_TRUE_SEQUENTIAL], &out->true_sequential, &out->declared,
                           QREF_GPTQ_KEY_TRUE_SEQUENTIAL, err);
    if (status == QREF_OK)
        status = read_bool(display, object, items[FIELD_LM_HEAD], &out->lm_head, &out->declared,
                           QREF_GPTQ_KEY_LM_HEAD, err);
    if (status != QREF_OK)
        return status;

    if (items[FIELD_DAMP_PERCENT] != NULL) {
        status = qref_json_get_double(display, object, items[FIELD_DAMP_PERCENT]->string, true, 0.01,
                                      &out->damp_percent, err);
        if (status != QREF_OK)
            return status;
        out->declared |= QREF_GPTQ_KEY_DAMP_PERCENT;
    }
    if (items[FIELD_META] != NULL) {
        status = parse_meta(display, items[FIELD_META], items, out, err);
        if (status != QREF_OK)
            return status;
    }
    if (!(out->damp_percent > 0.0 && out->damp_percent < 1.0))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: damp_percent is %g, expected a value in (0, 1)", display,
                              out->damp_percent);
    return QREF_OK;
}

qref_status qref_gptq_config_parse(const char *display, const cJSON *object, qref_gptq_config *out,
                                   qref_error *err)
{
    qref_gptq_config_init(out);
    if (!cJSON_IsObject(object))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: not a JSON object, expected a quantization config object",
                              display);

    const cJSON *items[FIELD_COUNT];
    qref_status status = collect_fields(display, object, items, err);
    if (status == QREF_OK)
        status = parse_layout_keys(display, object, items, out, err);
    if (status == QREF_OK)
        status = parse_quant_keys(display, object, items, out, err);
    if (status != QREF_OK)
        return status;

    /* GPTQModel's 3-bit packing (pack_original, dequantize_weight) assumes 32-bit words. */
    if (out->bits == 3 && out->pack_bits != 32)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: bits 3 with pack_dtype \"%s\" is not supported, expected pack_dtype \"int32\" "
                              "(GPTQModel packs 3-bit codes only in 32-bit words)",
                              display, qref_gptq_pack_dtype_name(out->pack_bits));
    snprintf(out->source, sizeof out->source, "%s", display);
    return QREF_OK;
}

/* ---- two files: quantize_config.json and config.json ------------------------------------ */

/* Fails when both files declare a setting with different values. format and pack_dtype are
 * compared even when undeclared, because a reader of either file alone would decode the
 * tensors by them. */
static qref_status compare_configs(const qref_gptq_config *first, const qref_gptq_config *second,
                                   qref_error *err)
{
    const unsigned both = first->declared & second->declared;
    char a[64], b[64];
    const char *key = NULL;
    if ((both & QREF_GPTQ_KEY_BITS) && first->bits != second->bits) {
        key = "bits";
        snprintf(a, sizeof a, "%d", first->bits);
        snprintf(b, sizeof b, "%d", second->bits);
    } else if ((both & QREF_GPTQ_KEY_GROUP_SIZE) && first->group_size != second->group_size) {
        key = "group_size";
        snprintf(a, sizeof a, "%ld", first->group_size);
        snprintf(b, sizeof b, "%ld", second->group_size);
    } else if ((both & QREF_GPTQ_KEY_SYM) && first->sym != second->sym) {
        key = "sym";
        snprintf(a, sizeof a, "%s", first->sym ? "true" : "false");
        snprintf(b, sizeof b, "%s", second->sym ? "true" : "false");
    } else if ((both & QREF_GPTQ_KEY_DESC_ACT) && first->desc_act != second->desc_act) {
        key = "desc_act";
        snprintf(a, sizeof a, "%s", first->desc_act ? "true" : "false");
        snprintf(b, sizeof b, "%s", second->desc_act ? "true" : "false");
    } else if ((both & QREF_GPTQ_KEY_STATIC_GROUPS) && first->static_groups != second->static_groups) {
        key = "static_groups";
        snprintf(a, sizeof a, "%s", first->static_groups ? "true" : "false");
        snprintf(b, sizeof b, "%s", second->static_groups ? "true" : "false");
    } else if ((both & QREF_GPTQ_KEY_TRUE_SEQUENTIAL) && first->true_sequential != second->true_sequential) {
        key = "true_sequential";
        snprintf(a, sizeof a, "%s", first->true_sequential ? "true" : "false");
        snprintf(b, sizeof b, "%s", second->true_sequential ? "true" : "false");
    } else if ((both & QREF_GPTQ_KEY_DAMP_PERCENT) && first->damp_percent != second->damp_percent) {
        key = "damp_percent";
        snprintf(a, sizeof a, "%.17g", first->damp_percent);
        snprintf(b, sizeof b, "%.17g", second->damp_percent);
    } else if ((both & QREF_GPTQ_KEY_LM_HEAD) && first->lm_head != second->lm_head) {
        key = "lm_head";
        snprintf(a, sizeof a, "%s", first->lm_head ? "true" : "false");
        snprintf(b, sizeof b, "%s", second->lm_head ? "true" : "false");
    } else if (first->pack_bits != second->pack_bits) {
        key = "pack_dtype";
        snprintf(a, sizeof a, "%s%s", qref_gptq_pack_dtype_name(first->pack_bits),
                 (first->declared & QREF_GPTQ_KEY_PACK_DTYPE) ? "" : " (the default)");
        snprintf(b, sizeof b, "%s%s", qref_gptq_pack_dtype_name(second->pack_bits),
                 (second->declared & QREF_GPTQ_KEY_PACK_DTYPE) ? "" : " (the default)");
    } else if (first->format != second->format) {
        key = "format";
        snprintf(a, sizeof a, "%s%s", qref_gptq_format_name(first->format),
                 (first->declared & QREF_GPTQ_KEY_FORMAT) ? "" : " (the default)");
        snprintf(b, sizeof b, "%s%s", qref_gptq_format_name(second->format),
                 (second->declared & QREF_GPTQ_KEY_FORMAT) ? "" : " (the default)");
    }
    if (key == NULL)
        return QREF_OK;
    return qref_error_set(err, QREF_ERR_INVALID, "%s gives %s %s but %s gives %s %s; expected the two to agree",
                          first->source, key, a, second->source, key, b);
}

/* Takes from second every setting that first leaves undeclared. */
static void merge_undeclared(qref_gptq_config *first, const qref_gptq_config *second)
{
    const unsigned missing = second->declared & ~first->declared;
    if (missing & QREF_GPTQ_KEY_BITS)
        first->bits = second->bits;
    if (missing & QREF_GPTQ_KEY_GROUP_SIZE)
        first->group_size = second->group_size;
    if (missing & QREF_GPTQ_KEY_SYM)
        first->sym = second->sym;
    if (missing & QREF_GPTQ_KEY_DESC_ACT)
        first->desc_act = second->desc_act;
    if (missing & QREF_GPTQ_KEY_STATIC_GROUPS)
        first->static_groups = second->static_groups;
    if (missing & QREF_GPTQ_KEY_TRUE_SEQUENTIAL)
        first->true_sequential = second->true_sequential;
    if (missing & QREF_GPTQ_KEY_DAMP_PERCENT)
        first->damp_percent = second->damp_percent;
    if (missing & QREF_GPTQ_KEY_LM_HEAD)
        first->lm_head = second->lm_head;
    if (missing & QREF_GPTQ_KEY_FORMAT)
        first->format = second->format;
    if (missing & QREF_GPTQ_KEY_PACK_DTYPE)
        first->pack_bits = second->pack_bits;
    if (first->algorithm[0] == '\0')
        memcpy(first->algorithm, second->algorithm, sizeof first->algorithm);
    if (first->quantizer[0] == '\0')
        memcpy(first->quantizer, second->quantizer, sizeof first->quantizer);
    first->declared |= second->declared;
}

qref_status qref_gptq_config_resolve(const char *quantize_display, const char *quantize_text,
                                     size_t quantize_length, const char *config_display,
                                     const char *config_text, size_t config_length,
                                     qref_gptq_config *out, qref_error *err)
{
    qref_gptq_config_init(out);
    qref_gptq_config from_quantize, from_config;
    qref_gptq_config_init(&from_quantize);
    qref_gptq_config_init(&from_config);
    bool have_quantize = false, have_config = false;
    cJSON *root = NULL;
    qref_status status;

    /* Step 1: quantize_config.json, the file AutoGPTQ and GPTQModel read first. */
    if (quantize_text != NULL) {
        status = qref_json_parse(quantize_display, quantize_text, quantize_length, GPTQ_CONFIG_MAX_DEPTH, &root, err);
        if (status == QREF_OK)
            status = qref_gptq_config_parse(quantize_display, root, &from_quantize, err);
        cJSON_Delete(root);
        root = NULL;
        if (status != QREF_OK)
            return status;
        have_quantize = true;
    }

    /* Step 2: config.json's quantization_config, which transformers reads. */
    if (config_text != NULL) {
        status = qref_json_parse(config_display, config_text, config_length, GPTQ_CONFIG_MAX_DEPTH, &root, err);
        if (status != QREF_OK)
            return status;
        const cJSON *section = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "quantization_config")
                                                    : NULL;
        if (section != NULL && !cJSON_IsNull(section)) {
            char display[QREF_GPTQ_CONFIG_TEXT_MAX];
            snprintf(display, sizeof display, "%s: quantization_config", config_display);
            status = qref_gptq_config_parse(display, section, &from_config, err);
            have_config = status == QREF_OK;
        }
        cJSON_Delete(root);
        if (status != QREF_OK)
            return status;
    }

    /* Step 3: one source, or both in agreement. */
    if (!have_quantize && !have_config)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "no GPTQ quantization config: %s is absent and %s has no quantization_config; "
                              "expected one of them",
                              quantize_display != NULL ? quantize_display : "quantize_config.json",
                              config_display != NULL ? config_display : "config.json");
    if (have_quantize && have_config) {
        status = compare_configs(&from_quantize, &from_config, err);
        if (status != QREF_OK)
            return status;
        merge_undeclared(&from_quantize, &from_config);
        snprintf(from_quantize.source, sizeof from_quantize.source, "%s + %s", quantize_display, config_display);
    }
    *out = have_quantize ? from_quantize : from_config;
    return QREF_OK;
}

/* Reads dir/name into *text, or leaves it NULL when the file does not exist. */
static qref_status read_optional(const char *dir, const char *name, char **text, size_t *length, qref_error *err)
{
    char path[4096];
    *text = NULL;
    *length = 0;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return qref_error_set(err, QREF_ERR_INVALID, "%s/%s: path is longer than %zu bytes", dir, name, sizeof path);
    if (access(path, F_OK) != 0)
        return QREF_OK;
    return qref_file_read_all(path, GPTQ_CONFIG_MAX_BYTES, text, length, err);
}

qref_status qref_gptq_config_load(const char *dir, qref_gptq_config *out, qref_error *err)
{
    char *quantize_text = NULL, *config_text = NULL;
    size_t quantize_length = 0, config_length = 0;
    const char *quantize_name = "quantize_config.json";

    qref_status status = read_optional(dir, quantize_name, &quantize_text, &quantize_length, err);
    if (status == QREF_OK && quantize_text == NULL) {
        quantize_name = "quant_config.json";
        status = read_optional(dir, quantize_name, &quantize_text, &quantize_length, err);
    }
    if (status == QREF_OK)
        status = read_optional(dir, "config.json", &config_text, &config_length, err);
    if (status == QREF_OK)
        status = qref_gptq_config_resolve(quantize_text != NULL ? quantize_name : "quantize_config.json",
                                          quantize_text, quantize_length, "config.json", config_text,
                                          config_length, out, err);
    free(quantize_text);
    free(config_text);
    return status;
}

/* ---- writer ----------------------------------------------------------------------------- */

/* Adds meta {"quantizer": [...], "algorithm": ...}, splitting the quantizer entries at ",". */
static bool add_meta(cJSON *object, const qref_gptq_config *config)
{
    if (config->quantizer[0] == '\0' && config->algorithm[0] == '\0')
        return true;
    cJSON *meta = cJSON_AddObjectToObject(object, "meta");
    if (meta == NULL)
        return false;
    if (config->quantizer[0] != '\0') {
        cJSON *list = cJSON_AddArrayToObject(meta, "quantizer");
        if (list == NULL)
            return false;
        char entries[QREF_GPTQ_CONFIG_TEXT_MAX];
        memcpy(entries, config->quantizer, sizeof entries);
        char *save = NULL;
        for (char *entry = strtok_r(entries, ",", &save); entry != NULL; entry = strtok_r(NULL, ",", &save)) {
            cJSON *value = cJSON_CreateString(entry);
            if (value == NULL || !cJSON_AddItemToArray(list, value))
                return false;
        }
    }
    if (config->algorithm[0] != '\0' && cJSON_AddStringToObject(meta, "algorithm", config->algorithm) == NULL)
        return false;
    return true;
}

static cJSON *add_string_or_null(cJSON *object, const char *key, const char *value)
{
    return value != NULL ? cJSON_AddStringToObject(object, key, value) : cJSON_AddNullToObject(object, key);
}

qref_status qref_gptq_config_to_json(const qref_gptq_config *config, const char *model_name_or_path,
                                     const char *model_file_base_name, cJSON **out, qref_error *err)
{
    *out = NULL;
    if (config->bits != 2 && config->bits != 3 && config->bits != 4 && config->bits != 8)
        return qref_error_set(err, QREF_ERR_INVALID, "quantization config: bits %d, expected 2, 3, 4 or 8",
                              config->bits);
    if (config->group_size != -1 && config->group_size <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "quantization config: group_size %ld, expected -1 or > 0",
                              config->group_size);
    if (!(config->damp_percent > 0.0 && config->damp_percent < 1.0))
        return qref_error_set(err, QREF_ERR_INVALID, "quantization config: damp_percent %g, expected a value in (0, 1)",
                              config->damp_percent);
    const char *pack_dtype = qref_gptq_pack_dtype_name(config->pack_bits);
    if (pack_dtype == NULL || (config->bits == 3 && config->pack_bits != 32))
        return qref_error_set(err, QREF_ERR_INVALID, "quantization config: %d-bit words for %d-bit codes, expected "
                              "8, 16, 32 or 64 (32 for 3-bit codes)", config->pack_bits, config->bits);

    /* Keys in the order of AutoGPTQ's BaseQuantizeConfig.to_dict, then GPTQModel's pack_dtype
     * (only for words other than AutoGPTQ's int32) and meta. */
    cJSON *object = cJSON_CreateObject();
    bool ok = object != NULL && cJSON_AddNumberToObject(object, "bits", config->bits) != NULL &&
              cJSON_AddNumberToObject(object, "group_size", (double)config->group_size) != NULL &&
              cJSON_AddNumberToObject(object, "damp_percent", config->damp_percent) != NULL &&
              cJSON_AddBoolToObject(object, "desc_act", config->desc_act) != NULL &&
              cJSON_AddBoolToObject(object, "static_groups", config->static_groups) != NULL &&
              cJSON_AddBoolToObject(object, "sym", config->sym) != NULL &&
              cJSON_AddBoolToObject(object, "true_sequential", config->true_sequential) != NULL &&
              add_string_or_null(object, "model_name_or_path", model_name_or_path) != NULL &&
              add_string_or_null(object, "model_file_base_name", model_file_base_name) != NULL &&
              cJSON_AddStringToObject(object, "quant_method", "gptq") != NULL &&
              cJSON_AddStringToObject(object, "checkpoint_format", qref_gptq_format_name(config->format)) != NULL &&
              (config->pack_bits == 32 || cJSON_AddStringToObject(object, "pack_dtype", pack_dtype) != NULL) &&
              add_meta(object, config);
    if (!ok) {
        cJSON_Delete(object);
        return qref_error_set(err, QREF_ERR_NOMEM, "quantization config: cannot allocate the JSON object");
    }
    *out = object;
    return QREF_OK;
}
