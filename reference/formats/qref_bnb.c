/*
 * bitsandbytes checkpoints: code tables, the quantization config, the quant_state JSON,
 * dequantization and the writer (formats/qref_bnb.h). The structure checks are in
 * qref_bnb_check.c.
 */
#include "formats/qref_bnb.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"
#include "io/qref_json.h"

/* ---- code tables -------------------------------------------------------------------------- */

/* get_4bit_type("nf4") in bitsandbytes/functional.py, as f32. */
static const float nf4_table[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

/* FP4 magnitudes of codes 0..7 before the division by 12 (get_4bit_type("fp4")). */
static const float fp4_raw[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};

const char *qref_bnb_quant_type_name(qref_bnb_quant_type type)
{
    return type == QREF_BNB_QUANT_NF4 ? "nf4" : "fp4";
}

void qref_bnb_quant_map(qref_bnb_quant_type type, float map[16])
{
    if (type == QREF_BNB_QUANT_NF4) {
        memcpy(map, nf4_table, sizeof nf4_table);
        return;
    }
    for (int k = 0; k < 8; k++) {
        map[k] = fp4_raw[k] / 12.0f;
        map[k + 8] = k == 0 ? 0.0f : -fp4_raw[k] / 12.0f;
    }
}

float qref_bnb_code_value(qref_bnb_quant_type type, unsigned code)
{
    code &= 15u;
    if (type == QREF_BNB_QUANT_NF4)
        return nf4_table[code];
    float magnitude = fp4_raw[code & 7u] / 12.0f;
    return (code & 8u) ? -magnitude : magnitude;
}

static int compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void qref_bnb_dynamic_map(float map[256])
{
    size_t count = 0;
    for (int i = 0; i < 7; i++) {
        /* torch.linspace(0.1, 1, steps) in f32: the first half counts up from start, the rest down from end */
        int steps = (1 << i) + 1;
        const float start = 0.1f, end = 1.0f;
        float step = (end - start) / (float)(steps - 1);
        int halfway = steps / 2;
        float boundaries[65];
        for (int k = 0; k < steps; k++)
            boundaries[k] = k < halfway ? start + step * (float)k : end - step * (float)(steps - k - 1);

        /* midpoints, scaled by 10^(i - 6): Python's double 10 ** (i - 6) meets an f32 tensor as f32 */
        float scale = (float)pow(10.0, (double)(i - 6));
        for (int k = 0; k + 1 < steps; k++) {
            float mean = (boundaries[k] + boundaries[k + 1]) / 2.0f;
            float value = i == 6 ? mean : scale * mean;
            map[count++] = value;
            map[count++] = -value;
        }
    }
    map[count++] = 0.0f;
    map[count++] = 1.0f;
    qsort(map, count, sizeof map[0], compare_floats);
}

/* ---- torch dtype names -------------------------------------------------------------------- */

static const struct {
    const char *name;
    qref_dtype dtype;
} torch_dtypes[] = {
    {"float16", QREF_DTYPE_F16}, {"bfloat16", QREF_DTYPE_BF16}, {"float32", QREF_DTYPE_F32},
    {"float64", QREF_DTYPE_F64}, {"uint8", QREF_DTYPE_U8},      {"int8", QREF_DTYPE_I8},
    {"int16", QREF_DTYPE_I16},   {"int32", QREF_DTYPE_I32},     {"int64", QREF_DTYPE_I64},
    {"half", QREF_DTYPE_F16},    {"float", QREF_DTYPE_F32},
};

static bool torch_dtype_parse(const char *name, qref_dtype *out)
{
    for (size_t k = 0; k < sizeof torch_dtypes / sizeof torch_dtypes[0]; k++) {
        if (strcmp(name, torch_dtypes[k].name) == 0) {
            *out = torch_dtypes[k].dtype;
            return true;
        }
    }
    return false;
}

static const char *torch_dtype_name(qref_dtype dtype)
{
    for (size_t k = 0; k < sizeof torch_dtypes / sizeof torch_dtypes[0]; k++)
        if (torch_dtypes[k].dtype == dtype)
            return torch_dtypes[k].name;
    return "?";
}

/* ---- config ------------------------------------------------------------------------------- */

/* The member key of object, or NULL when it is absent or null (transformers writes null for unset keys). */
static const cJSON *member(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNull(item) ? NULL : item;
}

/* Reads a boolean from key or, when absent, from the private "_" + key BitsAndBytesConfig keeps. */
static qref_status read_flag(const char *display, const cJSON *object, const char *key, bool *out, qref_error *err)
{
    char private_key[64];
    snprintf(private_key, sizeof private_key, "_%s", key);
    const cJSON *public_item = member(object, key), *private_item = member(object, private_key);
    char found[96];
    const cJSON *items[2] = {public_item, private_item};
    const char *names[2] = {key, private_key};
    for (int k = 0; k < 2; k++) {
        if (items[k] != NULL && !cJSON_IsBool(items[k]))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: found %s, expected true or false", display, names[k],
                                  qref_json_describe(items[k], found, sizeof found));
    }
    if (public_item != NULL && private_item != NULL && cJSON_IsTrue(public_item) != cJSON_IsTrue(private_item))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is %s but %s is %s, expected equal values", display, key,
                              cJSON_IsTrue(public_item) ? "true" : "false", private_key,
                              cJSON_IsTrue(private_item) ? "true" : "false");
    const cJSON *item = public_item != NULL ? public_item : private_item;
    *out = item != NULL && cJSON_IsTrue(item);
    return QREF_OK;
}

/* Reads a torch dtype name ("bfloat16", or "torch.bfloat16") when the key is present. */
static qref_status read_dtype(const char *display, const cJSON *object, const char *key, qref_dtype *out,
                              qref_error *err)
{
    const cJSON *item = member(object, key);
    if (item == NULL)
        return QREF_OK;
    char found[96];
    const char *name = cJSON_IsString(item) ? item->valuestring : NULL;
    if (name != NULL && strncmp(name, "torch.", 6) == 0)
        name += 6;
    if (name == NULL || !torch_dtype_parse(name, out))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: found %s, expected a torch dtype name such as "
                              "\"float16\", \"bfloat16\", \"float32\" or \"uint8\"",
                              display, key, qref_json_describe(item, found, sizeof found));
    return QREF_OK;
}

static qref_status read_skip_modules(const char *display, const cJSON *object, qref_bnb_config *out, qref_error *err)
{
    const cJSON *list = member(object, "llm_int8_skip_modules");
    if (list == NULL)
        return QREF_OK;
    char found[96];
    if (!cJSON_IsArray(list))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: llm_int8_skip_modules: found %s, expected a list of module "
                              "names or null", display, qref_json_describe(list, found, sizeof found));
    int count = cJSON_GetArraySize(list);
    if (count > QREF_BNB_SKIP_MAX)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: llm_int8_skip_modules has %d entries, expected at most %d",
                              display, count, QREF_BNB_SKIP_MAX);
    out->skip_modules = calloc(count > 0 ? (size_t)count : 1, sizeof *out->skip_modules);
    if (out->skip_modules == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for llm_int8_skip_modules", display);
    int index = 0;
    for (const cJSON *entry = list->child; entry != NULL; entry = entry->next, index++) {
        if (!cJSON_IsString(entry) || entry->valuestring[0] == '\0' ||
            strlen(entry->valuestring) >= QREF_BNB_NAME_MAX)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: llm_int8_skip_modules[%d]: found %s, expected a module "
                                  "name of 1 to %d bytes", display, index,
                                  qref_json_describe(entry, found, sizeof found), QREF_BNB_NAME_MAX - 1);
        snprintf(out->skip_modules[out->skip_count++], QREF_BNB_NAME_MAX, "%s", entry->valuestring);
    }
    return QREF_OK;
}

qref_status qref_bnb_config_parse(const char *display, const cJSON *object, qref_bnb_config *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    out->quant_type = QREF_BNB_QUANT_FP4;
    out->compute_dtype = QREF_DTYPE_F32;
    out->quant_storage = QREF_DTYPE_U8;
    out->int8_threshold = 6.0;
    if (!cJSON_IsObject(object))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: not a JSON object", display);

    /* mode: transformers reads a bitsandbytes config as 8-bit when load_in_8bit is set, else as 4-bit */
    bool in_4bit = false, in_8bit = false;
    qref_status status = read_flag(display, object, "load_in_4bit", &in_4bit, err);
    if (status == QREF_OK)
        status = read_flag(display, object, "load_in_8bit", &in_8bit, err);
    if (status == QREF_OK && in_4bit && in_8bit)
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: load_in_4bit and load_in_8bit are both true, expected at "
                                "most one (BitsAndBytesConfig rejects both)", display);
    out->load_in_8bit = in_8bit;

    /* 4-bit settings */
    const cJSON *item = member(object, "bnb_4bit_quant_type");
    char found[96];
    out->quant_type_set = item != NULL;
    if (status == QREF_OK && item != NULL) {
        if (cJSON_IsString(item) && strcmp(item->valuestring, "nf4") == 0)
            out->quant_type = QREF_BNB_QUANT_NF4;
        else if (cJSON_IsString(item) && strcmp(item->valuestring, "fp4") == 0)
            out->quant_type = QREF_BNB_QUANT_FP4;
        else
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: bnb_4bit_quant_type: found %s, expected \"nf4\" or "
                                    "\"fp4\"", display, qref_json_describe(item, found, sizeof found));
    }
    item = member(object, "bnb_4bit_use_double_quant");
    if (status == QREF_OK && item != NULL) {
        if (cJSON_IsBool(item))
            out->double_quant = cJSON_IsTrue(item);
        else
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: bnb_4bit_use_double_quant: found %s, expected true "
                                    "or false", display, qref_json_describe(item, found, sizeof found));
    }
    if (status == QREF_OK)
        status = read_dtype(display, object, "bnb_4bit_compute_dtype", &out->compute_dtype, err);
    if (status == QREF_OK)
        status = read_dtype(display, object, "bnb_4bit_quant_storage", &out->quant_storage, err);

    /* LLM.int8 settings */
    item = member(object, "llm_int8_threshold");
    if (status == QREF_OK && item != NULL) {
        if (cJSON_IsNumber(item) && isfinite(item->valuedouble))
            out->int8_threshold = item->valuedouble;
        else
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: llm_int8_threshold: found %s, expected a number",
                                    display, qref_json_describe(item, found, sizeof found));
    }
    if (status == QREF_OK)
        status = read_skip_modules(display, object, out, err);
    if (status != QREF_OK)
        qref_bnb_config_free(out);
    return status;
}

void qref_bnb_config_free(qref_bnb_config *config)
{
    free(config->skip_modules);
    config->skip_modules = NULL;
    config->skip_count = 0;
}

/* NOTE: this is the rule of transformers 4.x; other versions may match skip entries differently. */
bool qref_bnb_config_skips(const qref_bnb_config *config, const char *module)
{
    const char *last = strrchr(module, '.');
    last = last != NULL ? last + 1 : module;
    for (size_t k = 0; k < config->skip_count; k++) {
        const char *key = config->skip_modules[k];
        if (strcmp(key, last) == 0 || strcmp(key, module) == 0)
            return true;
        /* key + "." occurring anywhere in the module name */
        size_t length = strlen(key);
        for (const char *at = strstr(module, key); at != NULL; at = strstr(at + 1, key))
            if (at[length] == '.')
                return true;
    }
    return false;
}

/* ---- the quant_state JSON ----------------------------------------------------------------- */

/* Keys QuantState.from_dict accepts in the JSON (valid_qs_keys less the tensor keys). */
static const char *const state_keys[] = {
    "quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset",
};

static bool blocksize_valid(int64_t blocksize)
{
    return blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0;
}

static qref_status state_blocksize(const char *display, const cJSON *root, const char *key, int64_t *out,
                                   qref_error *err)
{
    qref_status status = qref_json_get_int(display, root, key, true, 0, 1, INT64_MAX, out, err);
    if (status == QREF_OK && !blocksize_valid(*out))
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: %s: found %" PRId64 ", expected a power of two in [32, "
                                "4096] (the block sizes bitsandbytes quantizes with)", display, key, *out);
    return status;
}

static qref_status state_dtype(const char *display, const cJSON *root, const char *key, bool only_float32,
                               qref_dtype *out, qref_error *err)
{
    const char *name = NULL;
    qref_status status = qref_json_get_string(display, root, key, true, NULL, &name, err);
    if (status != QREF_OK)
        return status;
    qref_dtype dtype;
    bool known = torch_dtype_parse(name, &dtype);
    bool accepted = known && (only_float32 ? dtype == QREF_DTYPE_F32
                                           : dtype == QREF_DTYPE_F16 || dtype == QREF_DTYPE_BF16 ||
                                                 dtype == QREF_DTYPE_F32);
    if (!accepted)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: found \"%.64s\", expected %s", display, key, name,
                              only_float32 ? "\"float32\"" : "\"float16\", \"bfloat16\" or \"float32\" (the dtypes "
                                                             "dequantize_4bit writes)");
    *out = dtype;
    return QREF_OK;
}

static qref_status state_read(const char *display, const cJSON *root, qref_bnb_quant_state *out, qref_error *err)
{
    if (!cJSON_IsObject(root))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: found %s, expected a JSON object", display,
                              qref_json_type_name(root));
    for (const cJSON *child = root->child; child != NULL; child = child->next) {
        bool known = false;
        for (size_t k = 0; k < sizeof state_keys / sizeof state_keys[0]; k++)
            known = known || strcmp(child->string, state_keys[k]) == 0;
        if (!known)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: unknown key \"%.64s\", expected only quant_type, "
                                  "blocksize, dtype, shape and the nested_ keys", display, child->string);
    }

    /* quant_type, blocksize, dtype */
    const char *type = NULL;
    qref_status status = qref_json_get_string(display, root, "quant_type", true, NULL, &type, err);
    if (status != QREF_OK)
        return status;
    if (strcmp(type, "nf4") == 0)
        out->quant_type = QREF_BNB_QUANT_NF4;
    else if (strcmp(type, "fp4") == 0)
        out->quant_type = QREF_BNB_QUANT_FP4;
    else
        return qref_error_set(err, QREF_ERR_INVALID, "%s: quant_type: found \"%.64s\", expected \"nf4\" or \"fp4\"",
                              display, type);
    status = state_blocksize(display, root, "blocksize", &out->blocksize, err);
    if (status == QREF_OK)
        status = state_dtype(display, root, "dtype", false, &out->dtype, err);
    if (status != QREF_OK)
        return status;

    /* shape: a list of positive integers */
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(root, "shape");
    int ndim = cJSON_GetArraySize(shape);
    if (!cJSON_IsArray(shape) || ndim < 1 || ndim > QREF_MAX_DIMS)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: shape: found %s, expected a list of 1 to %d integers",
                              display, shape == NULL ? "nothing" : qref_json_type_name(shape), QREF_MAX_DIMS);
    out->ndim = 0;
    for (const cJSON *dim = shape->child; dim != NULL; dim = dim->next) {
        char label[32];
        snprintf(label, sizeof label, "shape[%d]", out->ndim);
        status = qref_json_item_int(display, label, dim, 1, INT64_C(1) << 40, &out->shape[out->ndim++], err);
        if (status != QREF_OK)
            return status;
    }

    /* the nested keys come together */
    int nested = (cJSON_GetObjectItemCaseSensitive(root, "nested_blocksize") != NULL) +
                 (cJSON_GetObjectItemCaseSensitive(root, "nested_dtype") != NULL) +
                 (cJSON_GetObjectItemCaseSensitive(root, "nested_offset") != NULL);
    if (nested != 0 && nested != 3)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %d of the keys nested_blocksize, nested_dtype and "
                              "nested_offset are present, expected all three (double quantization) or none", display,
                              nested);
    out->nested = nested == 3;
    if (!out->nested)
        return QREF_OK;
    status = state_blocksize(display, root, "nested_blocksize", &out->nested_blocksize, err);
    if (status == QREF_OK)
        status = state_dtype(display, root, "nested_dtype", true, &out->nested_dtype, err);
    double offset = 0.0;
    if (status == QREF_OK)
        status = qref_json_get_double(display, root, "nested_offset", true, 0.0, &offset, err);
    if (status == QREF_OK && !(isfinite(offset) && fabs(offset) <= 3.0e38))
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: nested_offset: found %g, expected a finite f32 value",
                                display, offset);
    out->nested_offset = (float)offset;
    return status;
}

qref_status qref_bnb_quant_state_parse(const char *display, const uint8_t *text, size_t length,
                                       qref_bnb_quant_state *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = NULL;
    qref_status status = qref_json_parse(display, (const char *)text, length, 4, &root, err);
    if (status == QREF_OK)
        status = state_read(display, root, out, err);
    cJSON_Delete(root);
    return status;
}

/*
 * Formats a finite double as Python's repr does: the shortest digit string that reads back
 * as the same double, in fixed notation when the decimal exponent is in [-4, 16) (with ".0"
 * for whole numbers), otherwise as d.ddde+XX.
 */
static void format_python_float(double value, char *buf, size_t size)
{
    if (value == 0.0) {
        snprintf(buf, size, "%s", signbit(value) ? "-0.0" : "0.0");
        return;
    }
    char scientific[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(scientific, sizeof scientific, "%.*e", precision - 1, value);
        if (strtod(scientific, NULL) == value)
            break;
    }

    /* split "-d.ddde-XX" into sign, digits and exponent */
    const char *p = scientific;
    bool negative = *p == '-';
    p += negative;
    char digits[24];
    size_t count = 0;
    for (; *p != 'e'; p++)
        if (*p != '.')
            digits[count++] = *p;
    digits[count] = '\0';
    int exponent = atoi(p + 1);

    size_t used = (size_t)snprintf(buf, size, "%s", negative ? "-" : "");
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            used += (size_t)snprintf(buf + used, size - used, "0.");
            for (int k = 0; k < -exponent - 1; k++)
                used += (size_t)snprintf(buf + used, size - used, "0");
            snprintf(buf + used, size - used, "%s", digits);
            return;
        }
        size_t whole = (size_t)exponent + 1;
        for (size_t k = 0; k < whole; k++)
            used += (size_t)snprintf(buf + used, size - used, "%c", k < count ? digits[k] : '0');
        snprintf(buf + used, size - used, ".%s", count > whole ? digits + whole : "0");
        return;
    }
    used += (size_t)snprintf(buf + used, size - used, "%c", digits[0]);
    if (count > 1)
        used += (size_t)snprintf(buf + used, size - used, ".%s", digits + 1);
    snprintf(buf + used, size - used, "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
}

qref_status qref_bnb_quant_state_format(const qref_bnb_quant_state *state, char **text, size_t *length,
                                        qref_error *err)
{
    *text = NULL;
    *length = 0;
    if (state->nested && !isfinite(state->nested_offset))
        return qref_error_set(err, QREF_ERR_INVALID, "quant_state: nested_offset %g is not finite",
                              (double)state->nested_offset);
    size_t size = 512 + (size_t)state->ndim * 24;
    char *out = malloc(size);
    if (out == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for the quant_state JSON");
    size_t used = (size_t)snprintf(out, size, "{\"quant_type\": \"%s\", \"blocksize\": %" PRId64 ", \"dtype\": \"%s\", "
                                   "\"shape\": [", qref_bnb_quant_type_name(state->quant_type), state->blocksize,
                                   torch_dtype_name(state->dtype));
    for (int d = 0; d < state->ndim; d++)
        used += (size_t)snprintf(out + used, size - used, "%s%" PRId64, d ? ", " : "", state->shape[d]);
    used += (size_t)snprintf(out + used, size - used, "]");
    if (state->nested) {
        /* as_dict stores offset.item(): the f32 offset as a Python float */
        char offset[40];
        format_python_float((double)state->nested_offset, offset, sizeof offset);
        used += (size_t)snprintf(out + used, size - used, ", \"nested_blocksize\": %" PRId64 ", \"nested_dtype\": "
                                 "\"%s\", \"nested_offset\": %s", state->nested_blocksize,
                                 torch_dtype_name(state->nested_dtype), offset);
    }
    used += (size_t)snprintf(out + used, size - used, "}");
    *text = out;
    *length = used;
    return QREF_OK;
}

/* ---- finding a linear's tensors ----------------------------------------------------------- */

static const qref_tensor *find_part(const qref_tensor_set *tensors, const char *module, const char *part)
{
    char name[600];
    int n = snprintf(name, sizeof name, "%s.%s", module, part);
    if (n < 0 || (size_t)n >= sizeof name)
        return NULL;
    return qref_tensor_set_find(tensors, name);
}

void qref_bnb_linear_find(const qref_tensor_set *tensors, const char *module, qref_bnb_linear *out)
{
    memset(out, 0, sizeof *out);
    out->module = module;
    out->weight = find_part(tensors, module, "weight");
    out->absmax = find_part(tensors, module, "weight.absmax");
    out->quant_map = find_part(tensors, module, "weight.quant_map");
    out->nested_absmax = find_part(tensors, module, "weight.nested_absmax");
    out->nested_quant_map = find_part(tensors, module, "weight.nested_quant_map");
    const qref_tensor *nf4 = find_part(tensors, module, "weight.quant_state.bitsandbytes__nf4");
    const qref_tensor *fp4 = find_part(tensors, module, "weight.quant_state.bitsandbytes__fp4");
    out->quant_state_count = (nf4 != NULL) + (fp4 != NULL);
    out->quant_state = nf4 != NULL ? nf4 : fp4;
    out->state_suffix = nf4 != NULL ? QREF_BNB_QUANT_NF4 : QREF_BNB_QUANT_FP4;
    out->scb = find_part(tensors, module, "SCB");
    out->weight_format = find_part(tensors, module, "weight_format");
}

qref_bnb_layout qref_bnb_linear_layout(const qref_bnb_linear *linear)
{
    if (linear->quant_state_count > 0 || linear->absmax != NULL || linear->quant_map != NULL)
        return QREF_BNB_LAYOUT_4BIT;
    if (linear->scb != NULL || linear->weight_format != NULL)
        return QREF_BNB_LAYOUT_INT8;
    return linear->weight != NULL ? QREF_BNB_LAYOUT_DENSE : QREF_BNB_LAYOUT_NONE;
}

/* ---- dequantization ----------------------------------------------------------------------- */

/* Rounds an f32 value once to dtype (F16, BF16 or F32), as storing into a tensor of that dtype does. */
static float round_to_dtype(qref_dtype dtype, float value)
{
    if (dtype == QREF_DTYPE_F16)
        return qref_f16_to_f32(qref_f32_to_f16(value));
    if (dtype == QREF_DTYPE_BF16)
        return qref_bf16_to_f32(qref_f32_to_bf16(value));
    return value;
}

void qref_bnb_dequantize_codes(qref_bnb_quant_type type, qref_dtype dtype, const uint8_t *packed, size_t n,
                               const float *absmax, int64_t blocksize, float *weight)
{
    float table[16];
    for (unsigned c = 0; c < 16; c++)
        table[c] = qref_bnb_code_value(type, c);
    for (size_t e = 0; e < n; e++) {
        uint8_t byte = packed[e / 2];
        unsigned code = (e & 1u) ? byte & 15u : byte >> 4;
        weight[e] = round_to_dtype(dtype, table[code] * absmax[e / (size_t)blocksize]);
    }
}

void qref_bnb_dequantize_int8(const int8_t *q, const float *scb, int64_t rows, int64_t cols, float *weight)
{
    const float reciprocal = 7.874015718698502e-3f; /* int8_vectorwise_dequant's 1/127 */
    for (int64_t o = 0; o < rows; o++)
        for (int64_t i = 0; i < cols; i++) {
            size_t k = (size_t)o * (size_t)cols + (size_t)i;
            float product = (float)q[k] * scb[o];
            weight[k] = product * reciprocal;
        }
}

/* Fails unless tensor has this dtype and shape (ndim entries). */
static qref_status expect_tensor(const char *module, const char *part, const qref_tensor *tensor, qref_dtype dtype,
                                 int ndim, const int64_t *shape, qref_error *err)
{
    char expected[96] = "[", found[96];
    for (int d = 0; d < ndim; d++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s%" PRId64, d ? ", " : "", shape[d]);
    }
    strncat(expected, "]", sizeof expected - strlen(expected) - 1);
    if (tensor == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "linear \"%s\": tensor \"%s.%s\" is missing, expected %s %s",
                              module, module, part, qref_dtype_name(dtype), expected);
    bool same = tensor->dtype == dtype && tensor->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = tensor->shape[d] == shape[d];
    if (!same)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": %s %s, expected %s %s", tensor->file,
                              tensor->name, qref_dtype_name(tensor->dtype),
                              qref_tensor_shape_string(tensor, found, sizeof found), qref_dtype_name(dtype), expected);
    return QREF_OK;
}

qref_status qref_bnb_state_load(const qref_bnb_linear *linear, qref_bnb_quant_state *state, qref_error *err)
{
    if (linear->quant_state_count == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "linear \"%s\": tensor \"%s.weight.quant_state.bitsandbytes__nf4\" "
                              "(or __fp4) is missing, expected exactly one quant_state tensor (QuantState.from_dict)",
                              linear->module, linear->module);
    if (linear->quant_state_count > 1)
        return qref_error_set(err, QREF_ERR_INVALID, "linear \"%s\": both bitsandbytes__nf4 and bitsandbytes__fp4 "
                              "quant_state tensors are stored, expected exactly one (QuantState.from_dict)",
                              linear->module);
    const qref_tensor *tensor = linear->quant_state;
    char shape[96];
    if (tensor->dtype != QREF_DTYPE_U8 || tensor->ndim != 1)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": %s %s, expected a U8 vector of JSON bytes",
                              tensor->file, tensor->name, qref_dtype_name(tensor->dtype),
                              qref_tensor_shape_string(tensor, shape, sizeof shape));
    char display[700];
    snprintf(display, sizeof display, "%s: tensor \"%s\"", tensor->file, tensor->name);
    return qref_bnb_quant_state_parse(display, tensor->data, (size_t)tensor->nbytes, state, err);
}

qref_status qref_bnb_state_match(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, int64_t rows,
                                 int64_t cols, qref_error *err)
{
    const qref_tensor *tensor = linear->quant_state;
    if (state->ndim != 2 || state->shape[0] != rows || state->shape[1] != cols) {
        char found[200] = "[";
        for (int d = 0; d < state->ndim; d++) {
            size_t used = strlen(found);
            snprintf(found + used, sizeof found - used, "%s%" PRId64, d ? ", " : "", state->shape[d]);
        }
        strncat(found, "]", sizeof found - strlen(found) - 1);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": shape %s, expected [%" PRId64 ", %" PRId64
                              "] (out_features, in_features of the linear)", tensor->file, tensor->name, found, rows,
                              cols);
    }
    if (state->quant_type != linear->state_suffix)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": quant_type \"%s\", expected \"%s\" as the "
                              "tensor name's bitsandbytes__ suffix says", tensor->file, tensor->name,
                              qref_bnb_quant_type_name(state->quant_type), qref_bnb_quant_type_name(linear->state_suffix));
    return QREF_OK;
}

qref_status qref_bnb_weight_match(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, qref_error *err)
{
    uint64_t n = (uint64_t)state->shape[0] * (uint64_t)state->shape[1];
    const qref_tensor *weight = linear->weight;
    if (weight == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "linear \"%s\": tensor \"%s.weight\" is missing, expected U8 "
                              "[%" PRIu64 ", 1] packed codes", linear->module, linear->module, (n + 1) / 2);
    /* TODO: no test reads a packed weight stored in a bnb_4bit_quant_storage other than uint8. */
    size_t itemsize = qref_dtype_size(weight->dtype);
    uint64_t count = (n + 1) / (2 * itemsize);
    char found[96];
    if (weight->ndim != 2 || weight->shape[1] != 1 || (uint64_t)weight->shape[0] != count ||
        weight->nbytes < (n + 1) / 2)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": %s %s, expected %s [%" PRIu64 ", 1]: %" PRIu64
                              " bytes of packed codes for the quant_state shape [%" PRId64 ", %" PRId64 "]",
                              weight->file, weight->name, qref_dtype_name(weight->dtype),
                              qref_tensor_shape_string(weight, found, sizeof found), qref_dtype_name(weight->dtype),
                              count, (n + 1) / 2, state->shape[0], state->shape[1]);
    return QREF_OK;
}

qref_status qref_bnb_scales_match(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, qref_error *err)
{
    uint64_t n = (uint64_t)state->shape[0] * (uint64_t)state->shape[1];
    int64_t blocks = (int64_t)((n + (uint64_t)state->blocksize - 1) / (uint64_t)state->blocksize);
    int64_t sixteen = 16;
    qref_status status = expect_tensor(linear->module, "weight.quant_map", linear->quant_map, QREF_DTYPE_F32, 1,
                                       &sixteen, err);
    if (status != QREF_OK)
        return status;
    if (!state->nested)
        return expect_tensor(linear->module, "weight.absmax", linear->absmax, QREF_DTYPE_F32, 1, &blocks, err);
    int64_t nested_blocks = (blocks + state->nested_blocksize - 1) / state->nested_blocksize, map = 256;
    status = expect_tensor(linear->module, "weight.absmax", linear->absmax, QREF_DTYPE_U8, 1, &blocks, err);
    if (status == QREF_OK)
        status = expect_tensor(linear->module, "weight.nested_absmax", linear->nested_absmax, QREF_DTYPE_F32, 1,
                               &nested_blocks, err);
    if (status == QREF_OK)
        status = expect_tensor(linear->module, "weight.nested_quant_map", linear->nested_quant_map, QREF_DTYPE_F32, 1,
                               &map, err);
    return status;
}

qref_status qref_bnb_absmax_decode(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, float *absmax,
                                   size_t blocks, qref_error *err)
{
    qref_status status = qref_bnb_scales_match(linear, state, err);
    if (status != QREF_OK)
        return status;
    if (!state->nested) {
        for (size_t k = 0; k < blocks; k++)
            absmax[k] = qref_load_f32(linear->absmax->data + 4 * k);
        return QREF_OK;
    }
    float map[256];
    for (size_t c = 0; c < 256; c++)
        map[c] = qref_load_f32(linear->nested_quant_map->data + 4 * c);
    for (size_t k = 0; k < blocks; k++) {
        float scale = qref_load_f32(linear->nested_absmax->data + 4 * (k / (size_t)state->nested_blocksize));
        float value = map[linear->absmax->data[k]] * scale;
        absmax[k] = value + state->nested_offset;
    }
    return QREF_OK;
}

static qref_status dequantize_4bit(const qref_bnb_linear *linear, int64_t rows, int64_t cols, float *weight,
                                   qref_error *err)
{
    qref_bnb_quant_state state;
    qref_status status = qref_bnb_state_load(linear, &state, err);
    if (status == QREF_OK)
        status = qref_bnb_state_match(linear, &state, rows, cols, err);
    if (status == QREF_OK)
        status = qref_bnb_weight_match(linear, &state, err);
    if (status != QREF_OK)
        return status;
    size_t n = (size_t)rows * (size_t)cols;
    size_t blocks = (n + (size_t)state.blocksize - 1) / (size_t)state.blocksize;
    float *absmax = malloc(blocks * sizeof *absmax);
    if (absmax == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "linear \"%s\": cannot allocate %zu block scales", linear->module,
                              blocks);
    status = qref_bnb_absmax_decode(linear, &state, absmax, blocks, err);
    if (status == QREF_OK)
        qref_bnb_dequantize_codes(state.quant_type, state.dtype, linear->weight->data, n, absmax, state.blocksize,
                                  weight);
    free(absmax);
    return status;
}

qref_status qref_bnb_int8_match(const qref_bnb_linear *linear, int64_t rows, int64_t cols, qref_error *err)
{
    int64_t shape[2] = {rows, cols};
    qref_status status = expect_tensor(linear->module, "weight", linear->weight, QREF_DTYPE_I8, 2, shape, err);
    if (status != QREF_OK || linear->weight_format == NULL)
        return status;
    const qref_tensor *format = linear->weight_format;
    char found[96];
    if (format->dtype != QREF_DTYPE_U8 || format->numel != 1 || format->ndim > 1)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": %s %s, expected a U8 scalar", format->file,
                              format->name, qref_dtype_name(format->dtype),
                              qref_tensor_shape_string(format, found, sizeof found));
    if (format->data[0] != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": value %u (%s), expected 0 (\"row\"); the "
                              "current loader rejects the col32/col_turing/col_ampere layouts", format->file,
                              format->name, format->data[0],
                              format->data[0] == 1 ? "col32" : format->data[0] == 2 ? "col_turing"
                                                             : format->data[0] == 3 ? "col_ampere" : "unknown");
    return QREF_OK;
}

qref_status qref_bnb_scb_match(const qref_bnb_linear *linear, int64_t rows, qref_error *err)
{
    return expect_tensor(linear->module, "SCB", linear->scb, QREF_DTYPE_F32, 1, &rows, err);
}

static qref_status dequantize_int8(const qref_bnb_linear *linear, int64_t rows, int64_t cols, float *weight,
                                   qref_error *err)
{
    qref_status status = qref_bnb_int8_match(linear, rows, cols, err);
    if (status == QREF_OK)
        status = qref_bnb_scb_match(linear, rows, err);
    if (status != QREF_OK)
        return status;
    float *scb = malloc((size_t)rows * sizeof *scb);
    if (scb == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "linear \"%s\": cannot allocate %" PRId64 " row scales",
                              linear->module, rows);
    for (int64_t o = 0; o < rows; o++)
        scb[o] = qref_load_f32(linear->scb->data + 4 * (size_t)o);
    /* int8 data needs no alignment or byte order */
    qref_bnb_dequantize_int8((const int8_t *)linear->weight->data, scb, rows, cols, weight);
    free(scb);
    return QREF_OK;
}

static qref_status dequantize_dense(const qref_bnb_linear *linear, int64_t rows, int64_t cols, float *weight,
                                    qref_error *err)
{
    const qref_tensor *tensor = linear->weight;
    char found[96];
    if (tensor == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "linear \"%s\": tensor \"%s.weight\" is missing", linear->module,
                              linear->module);
    if (!qref_dtype_is_float(tensor->dtype) || tensor->ndim != 2 || tensor->shape[0] != rows ||
        tensor->shape[1] != cols)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": %s %s, expected a float tensor [%" PRId64
                              ", %" PRId64 "]", tensor->file, tensor->name, qref_dtype_name(tensor->dtype),
                              qref_tensor_shape_string(tensor, found, sizeof found), rows, cols);
    return qref_convert_to_f32(tensor->dtype, tensor->data, (size_t)(rows * cols), weight, err);
}

qref_status qref_bnb_dequantize(const qref_bnb_linear *linear, int64_t rows, int64_t cols, float *weight,
                                qref_error *err)
{
    switch (qref_bnb_linear_layout(linear)) {
    case QREF_BNB_LAYOUT_4BIT: return dequantize_4bit(linear, rows, cols, weight, err);
    case QREF_BNB_LAYOUT_INT8: return dequantize_int8(linear, rows, cols, weight, err);
    case QREF_BNB_LAYOUT_DENSE: return dequantize_dense(linear, rows, cols, weight, err);
    case QREF_BNB_LAYOUT_NONE: break;
    }
    return qref_error_set(err, QREF_ERR_INVALID, "linear \"%s\": no tensor \"%s.weight\" is stored", linear->module,
                          linear->module);
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Adds one tensor to out over a copy of bytes; shape has ndim entries. */
static qref_status packed_add(qref_bnb_packed *out, const char *module, const char *part, qref_dtype dtype, int ndim,
                              const int64_t *shape, const void *bytes, size_t size, qref_error *err)
{
    qref_tensor *tensor = &out->tensors[out->count];
    size_t name_size = strlen(module) + strlen(part) + 2;
    tensor->name = malloc(name_size);
    uint8_t *buffer = malloc(size > 0 ? size : 1);
    if (tensor->name == NULL || buffer == NULL) {
        free(tensor->name);
        free(buffer);
        tensor->name = NULL;
        return qref_error_set(err, QREF_ERR_NOMEM, "%s.%s: out of memory", module, part);
    }
    snprintf(tensor->name, name_size, "%s.%s", module, part);
    memcpy(buffer, bytes, size);
    tensor->dtype = dtype;
    tensor->ndim = ndim;
    tensor->numel = 1;
    for (int d = 0; d < ndim; d++) {
        tensor->shape[d] = shape[d];
        tensor->numel *= (uint64_t)shape[d];
    }
    tensor->nbytes = size;
    tensor->data = buffer;
    tensor->file = "";
    out->buffers[out->count++] = buffer;
    return QREF_OK;
}

/* Copies count f32 values into little-endian bytes and adds them as a 1-D F32 tensor. */
static qref_status packed_add_f32(qref_bnb_packed *out, const char *module, const char *part, const float *values,
                                  size_t count, qref_error *err)
{
    uint8_t *bytes = malloc(4 * (count > 0 ? count : 1));
    if (bytes == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s.%s: out of memory", module, part);
    for (size_t k = 0; k < count; k++)
        qref_store_f32(bytes + 4 * k, values[k]);
    int64_t shape = (int64_t)count;
    qref_status status = packed_add(out, module, part, QREF_DTYPE_F32, 1, &shape, bytes, 4 * count, err);
    free(bytes);
    return status;
}

qref_status qref_bnb_pack_4bit(const char *module, const qref_bnb_4bit_data *data, qref_bnb_packed *out,
                               qref_error *err)
{
    memset(out, 0, sizeof *out);
    const qref_bnb_quant_state *state = &data->state;
    if (state->ndim != 2 || state->shape[0] < 1 || state->shape[1] < 1 || !blocksize_valid(state->blocksize) ||
        (state->nested && !blocksize_valid(state->nested_blocksize)))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: cannot pack a quant_state with %d dimensions, blocksize "
                              "%" PRId64 ", expected a matrix and blocksizes that are powers of two in [32, 4096]",
                              module, state->ndim, state->blocksize);
    size_t n = (size_t)state->shape[0] * (size_t)state->shape[1];
    size_t blocks = (n + (size_t)state->blocksize - 1) / (size_t)state->blocksize;

    /* weight: U8 [(n + 1) / 2, 1] */
    int64_t weight_shape[2] = {(int64_t)((n + 1) / 2), 1};
    qref_status status = packed_add(out, module, "weight", QREF_DTYPE_U8, 2, weight_shape, data->packed, (n + 1) / 2,
                                    err);

    /* absmax and quant_map, then the nested pair (as_dict's order) */
    if (status == QREF_OK && !state->nested)
        status = packed_add_f32(out, module, "weight.absmax", data->absmax, blocks, err);
    if (status == QREF_OK && state->nested) {
        int64_t shape = (int64_t)blocks;
        status = packed_add(out, module, "weight.absmax", QREF_DTYPE_U8, 1, &shape, data->absmax_codes, blocks, err);
    }
    float map[16];
    qref_bnb_quant_map(state->quant_type, map);
    if (status == QREF_OK)
        status = packed_add_f32(out, module, "weight.quant_map", map, 16, err);
    if (status == QREF_OK && state->nested) {
        size_t nested_blocks = (blocks + (size_t)state->nested_blocksize - 1) / (size_t)state->nested_blocksize;
        status = packed_add_f32(out, module, "weight.nested_absmax", data->nested_absmax, nested_blocks, err);
        if (status == QREF_OK)
            status = packed_add_f32(out, module, "weight.nested_quant_map", data->nested_quant_map, 256, err);
    }

    /* the JSON of the non-tensor fields */
    char *text = NULL;
    size_t length = 0;
    if (status == QREF_OK)
        status = qref_bnb_quant_state_format(state, &text, &length, err);
    if (status == QREF_OK) {
        char part[64];
        snprintf(part, sizeof part, "weight.quant_state.bitsandbytes__%s", qref_bnb_quant_type_name(state->quant_type));
        int64_t shape = (int64_t)length;
        status = packed_add(out, module, part, QREF_DTYPE_U8, 1, &shape, text, length, err);
    }
    free(text);
    return status;
}

qref_status qref_bnb_pack_int8(const char *module, const int8_t *q, const float *scb, int64_t rows, int64_t cols,
                               qref_bnb_packed *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    int64_t shape[2] = {rows, cols};
    qref_status status = packed_add(out, module, "weight", QREF_DTYPE_I8, 2, shape, q, (size_t)(rows * cols), err);
    if (status == QREF_OK)
        status = packed_add_f32(out, module, "SCB", scb, (size_t)rows, err);
    uint8_t row_format = 0; /* LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING["row"] */
    if (status == QREF_OK)
        status = packed_add(out, module, "weight_format", QREF_DTYPE_U8, 0, NULL, &row_format, 1, err);
    return status;
}

void qref_bnb_packed_free(qref_bnb_packed *packed)
{
    for (size_t k = 0; k < packed->count; k++) {
        free(packed->tensors[k].name);
        free(packed->buffers[k]);
    }
    memset(packed, 0, sizeof *packed);
}
