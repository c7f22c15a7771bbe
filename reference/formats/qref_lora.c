/*
 * PEFT LoRA adapters (see qref_lora.h for the formulas, names and their sources).
 *
 * Steps: read adapter_config.json into settings, reporting unknown or unsupported ones;
 * read adapter_model.safetensors and sort each tensor into lora_A / lora_B of a module, a
 * whole replacement tensor, a variant not merged, or a stray; bind against the base model's
 * modules, checking targets, shapes, ranks and values; merge on load.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "formats/qref_lora.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "core/qref_sha256.h"
#include "io/qref_json.h"

const qref_finding_kind qref_lora_finding_kinds[] = {
    {"lora.adapter", QREF_SEVERITY_INFO, "a LoRA adapter's rank, alpha, scaling and the modules it updates"},
    {"lora.config", QREF_SEVERITY_ERROR, "an adapter_config.json member has a type or value PEFT does not accept"},
    {"lora.peft_type", QREF_SEVERITY_ERROR, "adapter_config.json's peft_type is not LORA"},
    {"lora.unsupported", QREF_SEVERITY_ERROR,
     "a LoRA variant this version does not merge: DoRA, LoRA biases, embedding LoRA, a non-linear target, "
     "a pickled adapter_model.bin"},
    {"lora.target_missing", QREF_SEVERITY_ERROR, "target_modules matches no module of the base model"},
    {"lora.target_unused", QREF_SEVERITY_WARNING, "a target_modules entry matches no module of the base model"},
    {"lora.tensor_missing", QREF_SEVERITY_ERROR, "a targeted module has no lora_A or no lora_B weight"},
    {"lora.module_unknown", QREF_SEVERITY_ERROR, "the adapter stores tensors of a module the base model does not have"},
    {"lora.stray", QREF_SEVERITY_WARNING,
     "adapter tensors that PEFT would not load (an untargeted module or an unknown name), left out of the merge"},
    {"lora.shape", QREF_SEVERITY_ERROR, "a lora_A, lora_B or replacement tensor's shape disagrees with the base module"},
    {"lora.rank", QREF_SEVERITY_ERROR, "a module's stored rank differs between lora_A and lora_B or from r / rank_pattern"},
    {"lora.dtype", QREF_SEVERITY_ERROR, "an adapter tensor is not stored as F32, F16 or BF16"},
    {"lora.nonfinite", QREF_SEVERITY_ERROR, "an adapter tensor holds NaN or infinity"},
    {"lora.fan_in_fan_out", QREF_SEVERITY_WARNING,
     "fan_in_fan_out is true for nn.Linear targets, which PEFT resets to false"},
    {NULL, QREF_SEVERITY_INFO, NULL},
};

#define LORA_PREFIX "base_model.model."

/* A rank_pattern or alpha_pattern entry: its key, the compiled (.*\.)?(KEY)$ and its value. */
typedef struct lora_pattern {
    const char *key;
    pcre2_code *regex;
    double value;
} lora_pattern;

/* The lora_A and lora_B tensors stored for one module. */
typedef struct lora_module_tensors {
    char module[128];
    const qref_tensor *a, *b;
} lora_module_tensors;

typedef enum lora_targets {
    LORA_TARGETS_LIST,
    LORA_TARGETS_REGEX,
    LORA_TARGETS_ALL_LINEAR
} lora_targets;

struct qref_lora_adapter {
    char config_path[4200];
    char weights_path[4200];
    qref_blob config_blob, weights_blob;
    qref_safetensors weights;
    bool weights_parsed;
    cJSON *config;

    /* settings */
    char peft_type[64];
    int64_t r;
    bool r_invalid; /* r in adapter_config.json is not a positive integer (reported) */
    double alpha;
    bool use_rslora;
    lora_targets target_kind;
    const cJSON *target_list;     /* array of strings (list targets) */
    cJSON *default_targets;       /* LLaMA's default list when target_modules is null */
    pcre2_code *target_regex;
    const char *target_text;      /* the regex or "all-linear" */
    const cJSON *exclude_list;
    pcre2_code *exclude_regex;
    const cJSON *modules_to_save; /* array of strings or NULL */
    int64_t *layers;              /* layers_to_transform, NULL for every layer */
    size_t layer_count;
    lora_pattern *rank_patterns, *alpha_patterns;
    size_t rank_pattern_count, alpha_pattern_count;

    /* tensors sorted by what they are */
    lora_module_tensors *modules;
    size_t module_count;
    qref_lora_replacement *candidates; /* replacement tensors by module name, before binding */
    size_t candidate_count;

    /* bound */
    qref_lora_update *updates;
    size_t update_count;
    qref_lora_replacement *replacements;
    size_t replacement_count;
    size_t errors;
    char digest[QREF_SHA256_HEX_SIZE];
};

/* ---- findings ------------------------------------------------------------------------------- */

__attribute__((format(printf, 5, 6)))
static void adapter_finding(qref_lora_adapter *adapter, qref_findings *findings, const char *id, const char *tensor,
                            const char *fmt, ...)
{
    const qref_finding_kind *kind = NULL;
    for (size_t i = 0; qref_lora_finding_kinds[i].id != NULL; i++)
        if (strcmp(qref_lora_finding_kinds[i].id, id) == 0)
            kind = &qref_lora_finding_kinds[i];
    qref_severity severity = kind != NULL ? kind->severity : QREF_SEVERITY_ERROR;
    if (severity == QREF_SEVERITY_ERROR)
        adapter->errors++;
    char message[QREF_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    qref_findings_add(findings, id, severity, tensor, "%s", message);
}

/* ---- regular expressions -------------------------------------------------------------------- */

/* Compiles a Python-style pattern with PCRE2; NULL (and the reason in reason) when it is invalid. */
static pcre2_code *regex_compile(const char *pattern, char *reason, size_t size)
{
    int code;
    PCRE2_SIZE offset;
    pcre2_code *regex = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &code, &offset, NULL);
    if (regex == NULL) {
        PCRE2_UCHAR text[160];
        pcre2_get_error_message(code, text, sizeof text);
        snprintf(reason, size, "%s at offset %zu", (const char *)text, (size_t)offset);
    }
    return regex;
}

/* True when regex matches subject from its start; to its end too when whole (re.fullmatch). */
static bool regex_matches(const pcre2_code *regex, const char *subject, bool whole)
{
    pcre2_match_data *match = pcre2_match_data_create_from_pattern(regex, NULL);
    if (match == NULL)
        return false;
    uint32_t options = PCRE2_ANCHORED | (whole ? PCRE2_ENDANCHORED : 0);
    int result = pcre2_match(regex, (PCRE2_SPTR)subject, strlen(subject), 0, options, match, NULL);
    pcre2_match_data_free(match);
    return result >= 0;
}

/* ---- adapter_config.json -------------------------------------------------------------------- */

/* Known PEFT methods (peft utils/peft_types.py PeftType) other than LORA. */
static const char *const other_peft_types[] = {
    "PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADALORA", "BOFT", "ADAPTION_PROMPT",
    "IA3", "LOHA", "LOKR", "OFT", "POLY", "LN_TUNING", "VERA", "FOURIERFT", "XLORA", "HRA", "VBLORA", "CPT", "BONE",
    NULL,
};

/* Reads a list of strings or NULL; reports lora.config for anything else. */
static bool read_string_list(qref_lora_adapter *adapter, qref_findings *findings, const char *key,
                             const cJSON **out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(adapter->config, key);
    *out = NULL;
    if (item == NULL || cJSON_IsNull(item))
        return true;
    bool ok = cJSON_IsArray(item);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, item) ok = ok && cJSON_IsString(entry);
    if (!ok) {
        char found[96];
        adapter_finding(adapter, findings, "lora.config", "", "%s: %s is %s, expected a list of module names or null",
                        adapter->config_path, key, qref_json_describe(item, found, sizeof found));
        return false;
    }
    *out = item;
    return true;
}

/* Reads rank_pattern or alpha_pattern: an object of module keys to numbers. */
static void read_patterns(qref_lora_adapter *adapter, qref_findings *findings, const char *key, bool integer,
                          lora_pattern **out, size_t *count)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(adapter->config, key);
    *out = NULL;
    *count = 0;
    if (item == NULL || cJSON_IsNull(item))
        return;
    if (!cJSON_IsObject(item)) {
        char found[96];
        adapter_finding(adapter, findings, "lora.config", "", "%s: %s is %s, expected an object of module names to "
                        "numbers", adapter->config_path, key, qref_json_describe(item, found, sizeof found));
        return;
    }
    size_t size = (size_t)cJSON_GetArraySize(item);
    *out = calloc(size + 1, sizeof **out);
    if (*out == NULL)
        return;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, item) {
        double value = cJSON_IsNumber(entry) ? entry->valuedouble : NAN;
        if (!isfinite(value) || value <= 0.0 || (integer && value != floor(value))) {
            char found[96];
            adapter_finding(adapter, findings, "lora.config", "", "%s: %s[\"%s\"] is %s, expected a positive %s",
                            adapter->config_path, key, entry->string, qref_json_describe(entry, found, sizeof found),
                            integer ? "integer" : "number");
            continue;
        }
        /* peft get_pattern_key: re.match(rf"(.*\.)?({key})$", module) */
        size_t length = strlen(entry->string) + 16;
        char *pattern = malloc(length);
        if (pattern == NULL)
            continue;
        snprintf(pattern, length, "(.*\\.)?(%s)$", entry->string);
        char reason[200];
        pcre2_code *regex = regex_compile(pattern, reason, sizeof reason);
        free(pattern);
        if (regex == NULL) {
            adapter_finding(adapter, findings, "lora.config", "", "%s: %s key \"%s\" is not a valid regular "
                            "expression: %s", adapter->config_path, key, entry->string, reason);
            continue;
        }
        (*out)[*count].key = entry->string;
        (*out)[*count].regex = regex;
        (*out)[(*count)++].value = value;
    }
}

/* The first pattern whose key matches module, or NULL. */
static const lora_pattern *pattern_find(const lora_pattern *patterns, size_t count, const char *module)
{
    for (size_t i = 0; i < count; i++)
        if (regex_matches(patterns[i].regex, module, false))
            return &patterns[i];
    return NULL;
}

/* Reads target_modules: a list, a regex string, "all-linear", or null for LLaMA's default. */
static void read_targets(qref_lora_adapter *adapter, qref_findings *findings)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(adapter->config, "target_modules");
    adapter->target_kind = LORA_TARGETS_LIST;
    if (item == NULL || cJSON_IsNull(item)) {
        /* peft TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["llama"] */
        adapter->default_targets = cJSON_Parse("[\"q_proj\", \"v_proj\"]");
        adapter->target_list = adapter->default_targets;
        return;
    }
    if (cJSON_IsString(item) && strcmp(item->valuestring, "all-linear") == 0) {
        adapter->target_kind = LORA_TARGETS_ALL_LINEAR;
        adapter->target_text = item->valuestring;
        return;
    }
    if (cJSON_IsString(item)) {
        char reason[200];
        adapter->target_kind = LORA_TARGETS_REGEX;
        adapter->target_text = item->valuestring;
        adapter->target_regex = regex_compile(item->valuestring, reason, sizeof reason);
        if (adapter->target_regex == NULL)
            adapter_finding(adapter, findings, "lora.config", "", "%s: target_modules \"%.80s\" is not a valid regular "
                            "expression: %s", adapter->config_path, item->valuestring, reason);
        return;
    }
    if (read_string_list(adapter, findings, "target_modules", &adapter->target_list) &&
        cJSON_GetArraySize(adapter->target_list) == 0)
        adapter_finding(adapter, findings, "lora.config", "", "%s: target_modules is an empty list, expected module "
                        "names", adapter->config_path);
}

/* Reads layers_to_transform: an integer or a list of integers. */
static void read_layers(qref_lora_adapter *adapter, qref_findings *findings)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(adapter->config, "layers_to_transform");
    if (item == NULL || cJSON_IsNull(item))
        return;
    size_t count = cJSON_IsArray(item) ? (size_t)cJSON_GetArraySize(item) : 1;
    adapter->layers = calloc(count + 1, sizeof *adapter->layers);
    if (adapter->layers == NULL)
        return;
    const cJSON *entry = cJSON_IsArray(item) ? item->child : item;
    for (size_t i = 0; i < count && entry != NULL; i++, entry = entry->next) {
        int64_t layer;
        qref_error err = {0};
        if (qref_json_item_int(adapter->config_path, "layers_to_transform", entry, 0, 1 << 20, &layer, &err) != QREF_OK) {
            adapter_finding(adapter, findings, "lora.config", "", "%s", err.message);
            continue;
        }
        adapter->layers[adapter->layer_count++] = layer;
    }
}

/* Reads the settings; findings for values PEFT would reject and variants not merged. */
static void read_config(qref_lora_adapter *adapter, qref_findings *findings)
{
    const cJSON *config = adapter->config;
    char found[96];

    /* peft_type: only LORA */
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(config, "peft_type");
    if (!cJSON_IsString(type)) {
        adapter_finding(adapter, findings, "lora.peft_type", "", "%s: peft_type is %s, expected \"LORA\"",
                        adapter->config_path, type ? qref_json_describe(type, found, sizeof found) : "missing");
    } else {
        snprintf(adapter->peft_type, sizeof adapter->peft_type, "%s", type->valuestring);
        bool known = false;
        for (size_t i = 0; other_peft_types[i] != NULL; i++)
            known = known || strcmp(type->valuestring, other_peft_types[i]) == 0;
        if (strcmp(type->valuestring, "LORA") != 0)
            adapter_finding(adapter, findings, "lora.peft_type", "", "%s: peft_type \"%.40s\" is %s, expected \"LORA\"",
                            adapter->config_path, type->valuestring,
                            known ? "a PEFT method this version does not merge" : "not a known PEFT method");
    }

    /* r and lora_alpha (LoraConfig defaults 8 and 8) */
    adapter->r = 8;
    adapter->alpha = 8.0;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(config, "r");
    if (r != NULL) {
        if (cJSON_IsNumber(r) && r->valuedouble >= 1 && r->valuedouble <= 1 << 20 && r->valuedouble == floor(r->valuedouble))
            adapter->r = (int64_t)r->valuedouble;
        else {
            adapter->r_invalid = true;
            adapter_finding(adapter, findings, "lora.config", "", "%s: r is %s, expected a positive integer",
                            adapter->config_path, qref_json_describe(r, found, sizeof found));
        }
    }
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(config, "lora_alpha");
    if (alpha != NULL) {
        if (cJSON_IsNumber(alpha) && isfinite(alpha->valuedouble))
            adapter->alpha = alpha->valuedouble;
        else
            adapter_finding(adapter, findings, "lora.config", "", "%s: lora_alpha is %s, expected a number",
                            adapter->config_path, qref_json_describe(alpha, found, sizeof found));
    }

    /* booleans; DoRA and LoRA biases are not merged */
    static const char *const flags[] = {"use_rslora", "use_dora", "fan_in_fan_out", "lora_bias"};
    bool values[4] = {false, false, false, false};
    for (int i = 0; i < 4; i++) {
        const cJSON *flag = cJSON_GetObjectItemCaseSensitive(config, flags[i]);
        if (flag == NULL || cJSON_IsNull(flag))
            continue;
        if (cJSON_IsBool(flag))
            values[i] = cJSON_IsTrue(flag);
        else
            adapter_finding(adapter, findings, "lora.config", "", "%s: %s is %s, expected true or false",
                            adapter->config_path, flags[i], qref_json_describe(flag, found, sizeof found));
    }
    adapter->use_rslora = values[0];
    if (values[1])
        adapter_finding(adapter, findings, "lora.unsupported", "", "%s: use_dora is true: DoRA adapters (a magnitude "
                        "vector per output) are not supported", adapter->config_path);
    if (values[2])
        adapter_finding(adapter, findings, "lora.fan_in_fan_out", "", "%s: fan_in_fan_out is true, but LLaMA's "
                        "linears are nn.Linear, for which PEFT resets it to false; the update is merged as B A",
                        adapter->config_path);
    if (values[3])
        adapter_finding(adapter, findings, "lora.unsupported", "", "%s: lora_bias is true: LoRA biases are not "
                        "supported (LLaMA's linears have no bias to merge them into)", adapter->config_path);

    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(config, "bias");
    if (bias != NULL && !(cJSON_IsString(bias) && (strcmp(bias->valuestring, "none") == 0 ||
                                                   strcmp(bias->valuestring, "all") == 0 ||
                                                   strcmp(bias->valuestring, "lora_only") == 0)))
        adapter_finding(adapter, findings, "lora.config", "", "%s: bias is %s, expected \"none\", \"all\" or "
                        "\"lora_only\"", adapter->config_path, qref_json_describe(bias, found, sizeof found));

    /* which modules */
    read_targets(adapter, findings);
    const cJSON *exclude = cJSON_GetObjectItemCaseSensitive(config, "exclude_modules");
    if (cJSON_IsString(exclude)) {
        char reason[200];
        adapter->exclude_regex = regex_compile(exclude->valuestring, reason, sizeof reason);
        if (adapter->exclude_regex == NULL)
            adapter_finding(adapter, findings, "lora.config", "", "%s: exclude_modules \"%.80s\" is not a valid "
                            "regular expression: %s", adapter->config_path, exclude->valuestring, reason);
    } else {
        read_string_list(adapter, findings, "exclude_modules", &adapter->exclude_list);
    }
    read_string_list(adapter, findings, "modules_to_save", &adapter->modules_to_save);
    read_layers(adapter, findings);
    read_patterns(adapter, findings, "rank_pattern", true, &adapter->rank_patterns, &adapter->rank_pattern_count);
    read_patterns(adapter, findings, "alpha_pattern", false, &adapter->alpha_patterns, &adapter->alpha_pattern_count);
}

/* ---- adapter_model.safetensors -------------------------------------------------------------- */

static bool has_suffix(const char *name, size_t length, const char *suffix, size_t *module_length)
{
    size_t suffix_length = strlen(suffix);
    if (length <= suffix_length || strcmp(name + length - suffix_length, suffix) != 0)
        return false;
    *module_length = length - suffix_length;
    return true;
}

/* True when module is named in modules_to_save, as itself or as its last dotted part(s). */
static bool in_modules_to_save(const qref_lora_adapter *adapter, const char *module)
{
    const cJSON *entry;
    size_t length = strlen(module);
    cJSON_ArrayForEach(entry, adapter->modules_to_save) {
        size_t entry_length = strlen(entry->valuestring);
        if (strcmp(module, entry->valuestring) == 0 ||
            (length > entry_length && module[length - entry_length - 1] == '.' &&
             strcmp(module + length - entry_length, entry->valuestring) == 0))
            return true;
    }
    return false;
}

static lora_module_tensors *module_tensors(qref_lora_adapter *adapter, const char *module, size_t length)
{
    for (size_t i = 0; i < adapter->module_count; i++)
        if (strlen(adapter->modules[i].module) == length && strncmp(adapter->modules[i].module, module, length) == 0)
            return &adapter->modules[i];
    lora_module_tensors *entry = &adapter->modules[adapter->module_count++];
    snprintf(entry->module, sizeof entry->module, "%.*s", (int)length, module);
    return entry;
}

/* Sorts every stored tensor into lora_A/lora_B of a module, a replacement, a variant or a stray. */
static void sort_tensors(qref_lora_adapter *adapter, qref_findings *findings)
{
    const qref_tensor_set *set = &adapter->weights.tensors;
    adapter->modules = calloc(set->count + 1, sizeof *adapter->modules);
    adapter->candidates = calloc(set->count + 1, sizeof *adapter->candidates);
    if (adapter->modules == NULL || adapter->candidates == NULL)
        return;
    static const char *const unsupported[][2] = {
        {".lora_magnitude_vector", "a DoRA magnitude vector"},
        {".lora_magnitude_vector.weight", "a DoRA magnitude vector"},
        {".lora_magnitude_vector.default", "a DoRA magnitude vector"},
        {".lora_magnitude_vector.default.weight", "a DoRA magnitude vector"},
        {".lora_B.bias", "a LoRA bias"},
        {".lora_B.default.bias", "a LoRA bias"},
        {".lora_embedding_A", "an embedding LoRA matrix"},
        {".lora_embedding_B", "an embedding LoRA matrix"},
        {".lora_embedding_A.default", "an embedding LoRA matrix"},
        {".lora_embedding_B.default", "an embedding LoRA matrix"},
    };
    size_t strays = 0;
    char first_stray[160] = "";
    for (size_t i = 0; i < set->count; i++) {
        const qref_tensor *tensor = &set->items[i];
        size_t prefix = sizeof LORA_PREFIX - 1;
        if (strncmp(tensor->name, LORA_PREFIX, prefix) != 0) {
            if (strays++ == 0)
                snprintf(first_stray, sizeof first_stray, "%s", tensor->name);
            continue;
        }
        const char *name = tensor->name + prefix;
        size_t length = strlen(name), module_length;

        /* lora_A and lora_B, with or without the adapter name "default" */
        if (has_suffix(name, length, ".lora_A.weight", &module_length) ||
            has_suffix(name, length, ".lora_A.default.weight", &module_length)) {
            module_tensors(adapter, name, module_length)->a = tensor;
            continue;
        }
        if (has_suffix(name, length, ".lora_B.weight", &module_length) ||
            has_suffix(name, length, ".lora_B.default.weight", &module_length)) {
            module_tensors(adapter, name, module_length)->b = tensor;
            continue;
        }
        bool variant = false;
        for (size_t k = 0; k < sizeof unsupported / sizeof unsupported[0] && !variant; k++) {
            if (has_suffix(name, length, unsupported[k][0], &module_length)) {
                adapter_finding(adapter, findings, "lora.unsupported", tensor->name, "%s: tensor \"%s\" is %s, which "
                                "this version does not merge", adapter->weights_path, tensor->name, unsupported[k][1]);
                variant = true;
            }
        }
        if (variant)
            continue;

        /* whole tensors of modules_to_save */
        if (has_suffix(name, length, ".modules_to_save.weight", &module_length) ||
            has_suffix(name, length, ".modules_to_save.default.weight", &module_length) ||
            (has_suffix(name, length, ".weight", &module_length) && adapter->modules_to_save != NULL)) {
            char module[128];
            snprintf(module, sizeof module, "%.*s", (int)module_length, name);
            if (in_modules_to_save(adapter, module)) {
                qref_lora_replacement *candidate = &adapter->candidates[adapter->candidate_count++];
                snprintf(candidate->tensor, sizeof candidate->tensor, "%s.weight", module);
                candidate->stored = tensor;
                continue;
            }
        }
        if (strays++ == 0)
            snprintf(first_stray, sizeof first_stray, "%s", tensor->name);
    }
    if (strays > 0)
        adapter_finding(adapter, findings, "lora.stray", first_stray, "%s: %zu tensors are neither lora_A, lora_B nor a "
                        "modules_to_save weight under \"" LORA_PREFIX "\" (first: \"%s\"); PEFT does not load them "
                        "and they are left out", adapter->weights_path, strays, first_stray);
}

/* ---- open ----------------------------------------------------------------------------------- */

qref_status qref_lora_open(const char *dir, qref_lora_adapter **out, qref_findings *findings, qref_error *err)
{
    *out = NULL;
    qref_lora_adapter *adapter = calloc(1, sizeof *adapter);
    if (adapter == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", dir);
    snprintf(adapter->config_path, sizeof adapter->config_path, "%s/adapter_config.json", dir);
    snprintf(adapter->weights_path, sizeof adapter->weights_path, "%s/adapter_model.safetensors", dir);

    /* Step 1: the two files; a pickled adapter_model.bin alone is reported by name */
    qref_status status = qref_blob_map_file(adapter->config_path, &adapter->config_blob, err);
    if (status == QREF_OK)
        status = qref_json_parse(adapter->config_path, (const char *)adapter->config_blob.data,
                                 adapter->config_blob.size, QREF_JSON_MAX_DEPTH, &adapter->config, err);
    if (status == QREF_OK && !cJSON_IsObject(adapter->config))
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: the top level is %s, expected an object",
                                adapter->config_path, qref_json_type_name(adapter->config));
    if (status == QREF_OK) {
        status = qref_blob_map_file(adapter->weights_path, &adapter->weights_blob, err);
        char bin_path[4200];
        snprintf(bin_path, sizeof bin_path, "%s/adapter_model.bin", dir);
        qref_blob bin = {0};
        qref_error ignored = {0};
        if (status != QREF_OK && qref_blob_map_file(bin_path, &bin, &ignored) == QREF_OK) {
            qref_blob_free(&bin);
            status = qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: the adapter weights are a pickled "
                                    "adapter_model.bin, which is not read (it can run code); expected "
                                    "adapter_model.safetensors", dir);
        }
    }
    if (status == QREF_OK)
        status = qref_safetensors_parse(adapter->weights_path, adapter->weights_blob.data, adapter->weights_blob.size,
                                        &adapter->weights, err);
    if (status != QREF_OK) {
        qref_lora_free(adapter);
        return status;
    }
    adapter->weights_parsed = true;

    /* Step 2: the digest of both files, for reports and caches */
    qref_sha256 *sha = qref_sha256_init();
    if (sha == NULL) {
        qref_lora_free(adapter);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot start a SHA-256 digest", dir);
    }
    uint8_t digest[QREF_SHA256_SIZE];
    qref_sha256_update(sha, adapter->config_blob.data, adapter->config_blob.size);
    qref_sha256_update(sha, adapter->weights_blob.data, adapter->weights_blob.size);
    qref_sha256_final(sha, digest);
    qref_sha256_hex(digest, adapter->digest);

    /* Step 3: settings and tensors */
    read_config(adapter, findings);
    sort_tensors(adapter, findings);
    *out = adapter;
    return QREF_OK;
}

void qref_lora_free(qref_lora_adapter *adapter)
{
    if (adapter == NULL)
        return;
    pcre2_code_free(adapter->target_regex);
    pcre2_code_free(adapter->exclude_regex);
    for (size_t i = 0; i < adapter->rank_pattern_count; i++)
        pcre2_code_free(adapter->rank_patterns[i].regex);
    for (size_t i = 0; i < adapter->alpha_pattern_count; i++)
        pcre2_code_free(adapter->alpha_patterns[i].regex);
    free(adapter->rank_patterns);
    free(adapter->alpha_patterns);
    free(adapter->layers);
    free(adapter->modules);
    free(adapter->candidates);
    free(adapter->updates);
    free(adapter->replacements);
    cJSON_Delete(adapter->default_targets);
    if (adapter->weights_parsed)
        qref_safetensors_free(&adapter->weights);
    cJSON_Delete(adapter->config);
    qref_blob_free(&adapter->config_blob);
    qref_blob_free(&adapter->weights_blob);
    free(adapter);
}

/* ---- bind ----------------------------------------------------------------------------------- */

/* True when name equals entry or ends in "." + entry (peft's list matching). */
static bool name_matches_entry(const char *name, const char *entry, bool *exact)
{
    size_t length = strlen(name), entry_length = strlen(entry);
    *exact = strcmp(name, entry) == 0;
    return *exact || (length > entry_length && name[length - entry_length - 1] == '.' &&
                      strcmp(name + length - entry_length, entry) == 0);
}

static bool layer_selected(const qref_lora_adapter *adapter, int layer)
{
    for (size_t i = 0; i < adapter->layer_count; i++)
        if (adapter->layers[i] == layer)
            return true;
    return false;
}

/*
 * Whether module is targeted (peft check_target_module_exists): exclude_modules first, never a
 * modules_to_save module, then target_modules; layers_to_transform applies to list entries
 * matched as a suffix. used[i] records which list entries matched.
 */
static bool module_targeted(const qref_lora_adapter *adapter, const qref_lora_base_module *module, bool *used)
{
    bool exact;
    if (adapter->exclude_regex != NULL && regex_matches(adapter->exclude_regex, module->name, true))
        return false;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, adapter->exclude_list) if (name_matches_entry(module->name, entry->valuestring, &exact))
        return false;
    if (adapter->modules_to_save != NULL && in_modules_to_save(adapter, module->name))
        return false;

    switch (adapter->target_kind) {
    case LORA_TARGETS_ALL_LINEAR:
        return module->kind == QREF_LORA_MODULE_LINEAR;
    case LORA_TARGETS_REGEX:
        return adapter->target_regex != NULL && regex_matches(adapter->target_regex, module->name, true);
    case LORA_TARGETS_LIST:
        break;
    }
    bool targeted = false;
    int index = 0;
    cJSON_ArrayForEach(entry, adapter->target_list) {
        if (name_matches_entry(module->name, entry->valuestring, &exact) &&
            (exact || adapter->layers == NULL || layer_selected(adapter, module->layer))) {
            targeted = true;
            if (used != NULL)
                used[index] = true;
        }
        index++;
    }
    return targeted;
}

static const qref_lora_base_module *base_find(const qref_lora_base_module *modules, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(modules[i].name, name) == 0)
            return &modules[i];
    return NULL;
}

/* Checks a lora_A or lora_B tensor's dtype, rank and values; false after a finding. */
static bool check_matrix(qref_lora_adapter *adapter, qref_findings *findings, const qref_tensor *tensor,
                         int64_t rows, int64_t cols, const char *expected)
{
    char shape[96];
    qref_tensor_shape_string(tensor, shape, sizeof shape);
    if (tensor->dtype != QREF_DTYPE_F32 && tensor->dtype != QREF_DTYPE_F16 && tensor->dtype != QREF_DTYPE_BF16) {
        adapter_finding(adapter, findings, "lora.dtype", tensor->name, "%s: tensor \"%s\": dtype %s, expected F32, "
                        "F16 or BF16", adapter->weights_path, tensor->name, qref_dtype_name(tensor->dtype));
        return false;
    }
    if (tensor->ndim != 2 || tensor->shape[0] != rows || tensor->shape[1] != cols) {
        adapter_finding(adapter, findings, "lora.shape", tensor->name, "%s: tensor \"%s\": shape %s, expected "
                        "[%lld, %lld] (%s)", adapter->weights_path, tensor->name, shape, (long long)rows,
                        (long long)cols, expected);
        return false;
    }
    qref_error err = {0};
    if (qref_tensor_check_finite(tensor, &err) != QREF_OK) {
        /* the message names the file (tensor->file) already */
        adapter_finding(adapter, findings, "lora.nonfinite", tensor->name, "%s", err.message);
        return false;
    }
    return true;
}

/* Checks and binds the lora_A / lora_B pair of a targeted base linear. */
static void bind_update(qref_lora_adapter *adapter, qref_findings *findings, const qref_lora_base_module *base,
                        const lora_module_tensors *pair)
{
    if (pair == NULL || pair->a == NULL || pair->b == NULL) {
        adapter_finding(adapter, findings, "lora.tensor_missing", base->name, "%s: module %s is targeted, but the "
                        "adapter has no tensor \"" LORA_PREFIX "%s.%s.weight\"", adapter->weights_path, base->name,
                        base->name, pair == NULL || pair->a == NULL ? "lora_A" : "lora_B");
        return;
    }

    /* the rank: r, or the first rank_pattern key that matches the module */
    const lora_pattern *rank_entry = pattern_find(adapter->rank_patterns, adapter->rank_pattern_count, base->name);
    const lora_pattern *alpha_entry = pattern_find(adapter->alpha_patterns, adapter->alpha_pattern_count, base->name);
    int64_t rank = rank_entry != NULL ? (int64_t)rank_entry->value : adapter->r;
    double alpha = alpha_entry != NULL ? alpha_entry->value : adapter->alpha;
    int64_t stored_rank = pair->a->ndim == 2 ? pair->a->shape[0] : -1;
    if (pair->a->ndim == 2 && pair->b->ndim == 2 && pair->a->shape[0] != pair->b->shape[1]) {
        adapter_finding(adapter, findings, "lora.rank", base->name, "%s: module %s: lora_A has rank %lld (rows) but "
                        "lora_B has rank %lld (columns); they must agree", adapter->weights_path, base->name,
                        (long long)pair->a->shape[0], (long long)pair->b->shape[1]);
        return;
    }
    if (rank_entry == NULL && adapter->r_invalid)
        return; /* lora.config already reports r, so no rank can be checked against it */
    if (pair->a->ndim == 2 && stored_rank != rank) {
        char source[160];
        if (rank_entry != NULL)
            snprintf(source, sizeof source, "rank_pattern[\"%.100s\"]", rank_entry->key);
        else
            snprintf(source, sizeof source, "r");
        adapter_finding(adapter, findings, "lora.rank", base->name, "%s: module %s stores rank %lld, but %s in "
                        "adapter_config.json is %lld", adapter->weights_path, base->name, (long long)stored_rank,
                        source, (long long)rank);
        return;
    }
    if (!check_matrix(adapter, findings, pair->a, rank, base->cols, "[r, in_features]") ||
        !check_matrix(adapter, findings, pair->b, base->rows, rank, "[out_features, r]"))
        return;

    qref_lora_update *update = &adapter->updates[adapter->update_count++];
    snprintf(update->module, sizeof update->module, "%s", base->name);
    update->a = pair->a;
    update->b = pair->b;
    update->rank = rank;
    update->alpha = alpha;
    update->scaling = adapter->use_rslora ? alpha / sqrt((double)rank) : alpha / (double)rank;
    update->rows = base->rows;
    update->cols = base->cols;
}

/* Checks and binds a modules_to_save tensor against the base tensor it replaces. */
static void bind_replacement(qref_lora_adapter *adapter, qref_findings *findings, const qref_lora_base_module *modules,
                             size_t count, const qref_lora_replacement *candidate)
{
    char module[160];
    snprintf(module, sizeof module, "%s", candidate->tensor);
    module[strlen(module) - strlen(".weight")] = '\0';
    const qref_lora_base_module *base = base_find(modules, count, module);
    const qref_tensor *tensor = candidate->stored;
    if (base == NULL) {
        adapter_finding(adapter, findings, "lora.module_unknown", tensor->name, "%s: tensor \"%s\" replaces module %s, "
                        "which the base model does not have", adapter->weights_path, tensor->name, module);
        return;
    }
    bool vector = base->cols == 1;
    char shape[96];
    qref_tensor_shape_string(tensor, shape, sizeof shape);
    if (base->rows <= 0 || (vector ? (tensor->ndim != 1 || tensor->shape[0] != base->rows)
                                   : (tensor->ndim != 2 || tensor->shape[0] != base->rows ||
                                      tensor->shape[1] != base->cols))) {
        adapter_finding(adapter, findings, "lora.shape", tensor->name, "%s: tensor \"%s\": shape %s, expected the "
                        "base tensor %s's shape [%lld%s%lld]", adapter->weights_path, tensor->name, shape,
                        candidate->tensor, (long long)base->rows, vector ? "" : ", ", vector ? 0LL : (long long)base->cols);
        return;
    }
    if (!qref_dtype_is_float(tensor->dtype)) {
        adapter_finding(adapter, findings, "lora.dtype", tensor->name, "%s: tensor \"%s\": dtype %s, expected a float "
                        "dtype", adapter->weights_path, tensor->name, qref_dtype_name(tensor->dtype));
        return;
    }
    qref_error err = {0};
    if (qref_tensor_check_finite(tensor, &err) != QREF_OK) {
        adapter_finding(adapter, findings, "lora.nonfinite", tensor->name, "%s: %s", adapter->weights_path,
                        err.message);
        return;
    }
    adapter->replacements[adapter->replacement_count++] = *candidate;
}

void qref_lora_bind(qref_lora_adapter *adapter, const qref_lora_base_module *modules, size_t count,
                    qref_findings *findings)
{
    free(adapter->updates);
    free(adapter->replacements);
    adapter->update_count = adapter->replacement_count = 0;
    adapter->updates = calloc(count + 1, sizeof *adapter->updates);
    adapter->replacements = calloc(adapter->candidate_count + 1, sizeof *adapter->replacements);
    size_t entries = adapter->target_list != NULL ? (size_t)cJSON_GetArraySize(adapter->target_list) : 0;
    bool *used = calloc(entries + 1, sizeof *used);
    if (adapter->updates == NULL || adapter->replacements == NULL || used == NULL) {
        free(used);
        adapter_finding(adapter, findings, "lora.config", "", "out of memory binding %zu modules", count);
        return;
    }

    /* Step 1: targeted modules get their update; a target that cannot take one is reported */
    size_t targeted = 0;
    for (size_t i = 0; i < count; i++) {
        const qref_lora_base_module *base = &modules[i];
        if (!module_targeted(adapter, base, used))
            continue;
        targeted++;
        if (base->kind != QREF_LORA_MODULE_LINEAR && base->kind != QREF_LORA_MODULE_OUTPUT) {
            adapter_finding(adapter, findings, "lora.unsupported", base->name, "%s: target_modules selects %s, %s, "
                            "which this version cannot merge a LoRA update into (only linears)", adapter->config_path,
                            base->name, base->kind == QREF_LORA_MODULE_EMBEDDING ? "an embedding" : "not a linear");
            continue;
        }
        const lora_module_tensors *pair = NULL;
        for (size_t k = 0; k < adapter->module_count && pair == NULL; k++)
            if (strcmp(adapter->modules[k].module, base->name) == 0)
                pair = &adapter->modules[k];
        bind_update(adapter, findings, base, pair);
    }

    /* Step 2: target entries that match nothing */
    if (targeted == 0) {
        char listed[256] = "all-linear";
        if (adapter->target_kind == LORA_TARGETS_REGEX)
            snprintf(listed, sizeof listed, "\"%.200s\"", adapter->target_text);
        if (adapter->target_kind == LORA_TARGETS_LIST) {
            char *printed = cJSON_PrintUnformatted(adapter->target_list);
            snprintf(listed, sizeof listed, "%.200s", printed != NULL ? printed : "[]");
            free(printed);
        }
        adapter_finding(adapter, findings, "lora.target_missing", "", "%s: target_modules %s matches no module of the "
                        "base model (its linears are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj "
                        "and lm_head); is this the adapter's base model?", adapter->config_path, listed);
    }
    int index = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, adapter->target_list) {
        if (targeted > 0 && !used[index])
            adapter_finding(adapter, findings, "lora.target_unused", "", "%s: target_modules entry \"%.80s\" matches "
                            "no module of the base model", adapter->config_path, entry->valuestring);
        index++;
    }
    free(used);

    /* Step 3: stored pairs of modules the base lacks, or does not target */
    for (size_t k = 0; k < adapter->module_count; k++) {
        const char *module = adapter->modules[k].module;
        const qref_lora_base_module *base = base_find(modules, count, module);
        const qref_tensor *any = adapter->modules[k].a != NULL ? adapter->modules[k].a : adapter->modules[k].b;
        if (base == NULL)
            adapter_finding(adapter, findings, "lora.module_unknown", any->name, "%s: tensor \"%s\" belongs to module %s, "
                            "which the base model does not have", adapter->weights_path, any->name, module);
        else if (!module_targeted(adapter, base, NULL))
            adapter_finding(adapter, findings, "lora.stray", any->name, "%s: tensor \"%s\" belongs to module %s, which "
                            "target_modules does not select; PEFT does not load it and it is left out",
                            adapter->weights_path, any->name, module);
    }

    /* Step 4: modules_to_save tensors */
    for (size_t k = 0; k < adapter->candidate_count; k++)
        bind_replacement(adapter, findings, modules, count, &adapter->candidates[k]);

    /* Step 5: what will be merged */
    if (adapter->errors == 0) {
        double scaling = adapter->use_rslora ? adapter->alpha / sqrt((double)adapter->r)
                                             : adapter->alpha / (double)adapter->r;
        qref_findings_add(findings, "lora.adapter", QREF_SEVERITY_INFO, "", "LoRA adapter: r %lld, lora_alpha %g, "
                          "scaling %g (lora_alpha / %s), %zu linear%s updated, %zu tensor%s replaced; %zu rank_pattern "
                          "and %zu alpha_pattern entries", (long long)adapter->r, adapter->alpha, scaling,
                          adapter->use_rslora ? "sqrt(r), rsLoRA" : "r", adapter->update_count,
                          adapter->update_count == 1 ? "" : "s", adapter->replacement_count,
                          adapter->replacement_count == 1 ? "" : "s", adapter->rank_pattern_count,
                          adapter->alpha_pattern_count);
    }
}

bool qref_lora_usable(const qref_lora_adapter *adapter)
{
    return adapter != NULL && adapter->errors == 0;
}

const qref_lora_update *qref_lora_find_update(const qref_lora_adapter *adapter, const char *module)
{
    for (size_t i = 0; i < adapter->update_count; i++)
        if (strcmp(adapter->updates[i].module, module) == 0)
            return &adapter->updates[i];
    return NULL;
}

const qref_lora_replacement *qref_lora_find_replacement(const qref_lora_adapter *adapter, const char *tensor)
{
    for (size_t i = 0; i < adapter->replacement_count; i++)
        if (strcmp(adapter->replacements[i].tensor, tensor) == 0)
            return &adapter->replacements[i];
    return NULL;
}

/* ---- merge ---------------------------------------------------------------------------------- */

qref_status qref_lora_apply(const qref_lora_update *update, float *weight, int64_t rows, int64_t cols,
                            qref_error *err)
{
    if (rows != update->rows || cols != update->cols)
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: LoRA update is [%lld, %lld], the weight [%lld, %lld]",
                              update->module, (long long)update->rows, (long long)update->cols, (long long)rows,
                              (long long)cols);
    const int64_t rank = update->rank;
    float *a = malloc((size_t)(rank * cols) * sizeof *a);
    float *b = malloc((size_t)(rows * rank) * sizeof *b);
    qref_status status = a != NULL && b != NULL ? QREF_OK
                                                : qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the LoRA "
                                                                 "matrices", update->module);
    if (status == QREF_OK)
        status = qref_convert_to_f32(update->a->dtype, update->a->data, (size_t)(rank * cols), a, err);
    if (status == QREF_OK)
        status = qref_convert_to_f32(update->b->dtype, update->b->data, (size_t)(rows * rank), b, err);
    if (status != QREF_OK) {
        free(a);
        free(b);
        return status;
    }

    /* W[o][i] += scaling * sum_k B[o][k] A[k][i]: the f32 product (k ascending), then scaled, then added */
    const float scaling = (float)update->scaling;
    bool out_of_memory = false;
#pragma omp parallel
    {
        float *sum = malloc((size_t)cols * sizeof *sum);
        if (sum == NULL) {
#pragma omp atomic write
            out_of_memory = true;
        }
#pragma omp for schedule(static)
        for (int64_t o = 0; o < rows; o++) {
            if (sum == NULL)
                continue;
            memset(sum, 0, (size_t)cols * sizeof *sum);
            for (int64_t k = 0; k < rank; k++) {
                const float coefficient = b[o * rank + k];
                const float *row = a + k * cols;
                for (int64_t i = 0; i < cols; i++)
                    sum[i] += coefficient * row[i];
            }
            float *target = weight + o * cols;
            for (int64_t i = 0; i < cols; i++)
                target[i] += sum[i] * scaling;
        }
        free(sum);
    }
    free(a);
    free(b);
    if (out_of_memory)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate a row of %lld floats", update->module,
                              (long long)cols);
    return QREF_OK;
}

/* ---- reports -------------------------------------------------------------------------------- */

void qref_lora_describe(const qref_lora_adapter *adapter, cJSON *out)
{
    cJSON_AddStringToObject(out, "peft_type", adapter->peft_type);
    cJSON_AddNumberToObject(out, "r", (double)adapter->r);
    cJSON_AddNumberToObject(out, "lora_alpha", adapter->alpha);
    cJSON_AddBoolToObject(out, "use_rslora", adapter->use_rslora);
    cJSON_AddNumberToObject(out, "scaling", adapter->use_rslora ? adapter->alpha / sqrt((double)adapter->r)
                                                                : adapter->alpha / (double)adapter->r);
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(adapter->config, "base_model_name_or_path");
    if (cJSON_IsString(base))
        cJSON_AddStringToObject(out, "base_model_name_or_path", base->valuestring);
    cJSON_AddNumberToObject(out, "linears_updated", (double)adapter->update_count);
    cJSON_AddNumberToObject(out, "tensors_replaced", (double)adapter->replacement_count);
    cJSON_AddStringToObject(out, "sha256", adapter->digest);
}

const char *qref_lora_digest(const qref_lora_adapter *adapter)
{
    return adapter->digest;
}
