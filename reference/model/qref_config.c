/*
 * LLaMA config.json parser.
 *
 * Keys and defaults follow transformers' LlamaConfig (configuration_llama.py). A setting that
 * changes the forward pass in a way the reference forward does not implement is rejected as
 * not supported rather than ignored. These are another model_type, an activation other than
 * SiLU, biases in attention or MLP, and RoPE scaling types other than Llama 3.1's "llama3".
 */
#include "model/qref_config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "io/qref_json.h"

/* Nesting allowed in config.json: quantization_config and similar blocks nest a few levels. */
#define CONFIG_MAX_DEPTH 16

/* Reads a required positive int key. */
static qref_status get_positive(const char *display, const cJSON *root, const char *key, int *out,
                                qref_error *err)
{
    int64_t value;
    qref_status status = qref_json_get_int(display, root, key, true, 0, 1, INT32_MAX, &value, err);
    if (status == QREF_OK)
        *out = (int)value;
    return status;
}

/* Reads an optional positive int key. null counts as absent, as transformers treats None. */
static qref_status get_optional_positive(const char *display, const cJSON *root, const char *key, int fallback,
                                         int *out, qref_error *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (item == NULL || cJSON_IsNull(item)) {
        *out = fallback;
        return QREF_OK;
    }
    return get_positive(display, root, key, out, err);
}

/* Reads a token id that may be absent, null, an int, or a list of ints (first one wins). */
static qref_status get_token_id(const char *display, const cJSON *root, const char *key, int vocab_size,
                                int *out, qref_error *err)
{
    *out = -1;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (item == NULL || cJSON_IsNull(item))
        return QREF_OK;
    char label[64];
    int64_t value;
    if (cJSON_IsArray(item)) {
        int count = cJSON_GetArraySize(item);
        if (count == 0)
            return QREF_OK;
        int index = 0;
        for (const cJSON *element = item->child; element != NULL; element = element->next, index++) {
            snprintf(label, sizeof label, "key \"%s\"[%d]", key, index);
            qref_status status = qref_json_item_int(display, label, element, 0, vocab_size - 1, &value, err);
            if (status != QREF_OK)
                return status;
            if (index == 0)
                *out = (int)value;
        }
        return QREF_OK;
    }
    snprintf(label, sizeof label, "key \"%s\"", key);
    qref_status status = qref_json_item_int(display, label, item, 0, vocab_size - 1, &value, err);
    if (status == QREF_OK)
        *out = (int)value;
    return status;
}

/* Reads an optional positive finite number. */
static qref_status get_positive_double(const char *display, const cJSON *root, const char *key, double fallback,
                                       double *out, qref_error *err)
{
    qref_status status = qref_json_get_double(display, root, key, false, fallback, out, err);
    if (status != QREF_OK)
        return status;
    if (!(*out > 0.0))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: key \"%s\": found %g, expected a positive number", display,
                              key, *out);
    return QREF_OK;
}

/* Rejects features the reference forward does not implement. */
static qref_status check_supported(const char *display, const cJSON *root, qref_error *err)
{
    const char *model_type;
    qref_status status = qref_json_get_string(display, root, "model_type", true, NULL, &model_type, err);
    if (status != QREF_OK)
        return status;
    if (strcmp(model_type, "llama") != 0)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: model_type \"%.100s\" is not supported, expected \"llama\"",
                              display, model_type);

    const char *activation;
    status = qref_json_get_string(display, root, "hidden_act", false, "silu", &activation, err);
    if (status != QREF_OK)
        return status;
    if (strcmp(activation, "silu") != 0)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: hidden_act \"%.100s\" is not supported, expected \"silu\"",
                              display, activation);

    static const char *const bias_keys[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < 2; i++) {
        bool bias;
        status = qref_json_get_bool(display, root, bias_keys[i], false, false, &bias, err);
        if (status != QREF_OK)
            return status;
        if (bias)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s true is not supported, expected false", display,
                                  bias_keys[i]);
    }

    return QREF_OK;
}

/* Reads one positive number of a RoPE scaling object, naming the object in errors. */
static qref_status get_scaling_number(const char *display, const char *object_name, const cJSON *object,
                                      const char *key, double *out, qref_error *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (item == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.%s is missing; rope type \"llama3\" needs factor, "
                              "low_freq_factor, high_freq_factor and original_max_position_embeddings",
                              display, object_name, key);
    char found[96];
    if (!cJSON_IsNumber(item))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.%s is %s, expected a positive number", display,
                              object_name, key, qref_json_describe(item, found, sizeof found));
    if (!(item->valuedouble > 0.0) || !isfinite(item->valuedouble))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.%s is %g, expected a positive number", display,
                              object_name, key, item->valuedouble);
    *out = item->valuedouble;
    return QREF_OK;
}

/*
 * Reads one RoPE description: rope_scaling (transformers 4: "rope_type", legacy "type") or
 * rope_parameters (transformers 5, which may also hold rope_theta and the original context).
 * null or absent means plain RoPE.
 */
static qref_status parse_rope_object(const char *display, const char *object_name, const cJSON *object,
                                     qref_rope_scaling *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    out->type = QREF_ROPE_DEFAULT;
    if (object == NULL || cJSON_IsNull(object))
        return QREF_OK;
    if (!cJSON_IsObject(object))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is %s, expected an object or null", display,
                              object_name, qref_json_type_name(object));
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(object, "rope_type");
    if (type == NULL)
        type = cJSON_GetObjectItemCaseSensitive(object, "type");
    char found[96];
    if (type != NULL && !cJSON_IsString(type))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.rope_type is %s, expected a string", display,
                              object_name, qref_json_describe(type, found, sizeof found));
    const char *name = type != NULL ? type->valuestring : "default";
    if (strcmp(name, "default") == 0)
        return QREF_OK;
    if (strcmp(name, "llama3") != 0)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s: rope type \"%.100s\" is not supported (supported: "
                              "\"default\", \"llama3\")", display, object_name, name);

    out->type = QREF_ROPE_LLAMA3;
    double original = 0.0;
    qref_status status = get_scaling_number(display, object_name, object, "factor", &out->factor, err);
    if (status == QREF_OK)
        status = get_scaling_number(display, object_name, object, "low_freq_factor", &out->low_freq_factor, err);
    if (status == QREF_OK)
        status = get_scaling_number(display, object_name, object, "high_freq_factor", &out->high_freq_factor, err);
    if (status == QREF_OK)
        status = get_scaling_number(display, object_name, object, "original_max_position_embeddings", &original,
                                    err);
    if (status != QREF_OK)
        return status;
    if (original != floor(original) || original > 1e9)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.original_max_position_embeddings is %g, expected a "
                              "positive integer", display, object_name, original);
    out->original_max_position_embeddings = (int)original;
    if (!(out->low_freq_factor < out->high_freq_factor))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: low_freq_factor %g must be below high_freq_factor %g",
                              display, object_name, out->low_freq_factor, out->high_freq_factor);
    return QREF_OK;
}

/* Reads rope_scaling and rope_parameters; when both describe scaling they must agree. */
static qref_status parse_rope(const char *display, const cJSON *root, qref_llama_config *config, qref_error *err)
{
    qref_rope_scaling scaling, parameters;
    qref_status status = parse_rope_object(display, "rope_scaling", cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"),
                                           &scaling, err);
    if (status == QREF_OK)
        status = parse_rope_object(display, "rope_parameters",
                                   cJSON_GetObjectItemCaseSensitive(root, "rope_parameters"), &parameters, err);
    if (status != QREF_OK)
        return status;
    if (scaling.type != QREF_ROPE_DEFAULT && parameters.type != QREF_ROPE_DEFAULT &&
        memcmp(&scaling, &parameters, sizeof scaling) != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: rope_scaling and rope_parameters describe different RoPE "
                              "scaling (factor %g and %g)", display, scaling.factor, parameters.factor);
    config->rope_scaling = scaling.type != QREF_ROPE_DEFAULT ? scaling : parameters;
    return QREF_OK;
}

/* Reads the shape keys and checks that the attention heads divide evenly. */
static qref_status parse_shapes(const char *display, const cJSON *root, qref_llama_config *config, qref_error *err)
{
    qref_status status = get_positive(display, root, "vocab_size", &config->vocab_size, err);
    if (status == QREF_OK)
        status = get_positive(display, root, "hidden_size", &config->hidden_size, err);
    if (status == QREF_OK)
        status = get_positive(display, root, "intermediate_size", &config->intermediate_size, err);
    if (status == QREF_OK)
        status = get_positive(display, root, "num_hidden_layers", &config->num_hidden_layers, err);
    if (status == QREF_OK)
        status = get_positive(display, root, "num_attention_heads", &config->num_attention_heads, err);
    if (status == QREF_OK)
        status = get_optional_positive(display, root, "num_key_value_heads", config->num_attention_heads,
                                       &config->num_key_value_heads, err);
    if (status != QREF_OK)
        return status;

    /* Grouped-query attention: each KV head serves heads / kv_heads query heads. */
    if (config->num_attention_heads % config->num_key_value_heads != 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", display,
                              config->num_attention_heads, config->num_key_value_heads);

    /* head_dim defaults to hidden_size / heads, which then must divide exactly. */
    const cJSON *head_dim = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (head_dim == NULL || cJSON_IsNull(head_dim)) {
        if (config->hidden_size % config->num_attention_heads != 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: hidden_size %d is not a multiple of num_attention_heads %d, and head_dim is "
                                  "not given",
                                  display, config->hidden_size, config->num_attention_heads);
        config->head_dim = config->hidden_size / config->num_attention_heads;
    } else {
        status = get_positive(display, root, "head_dim", &config->head_dim, err);
        if (status != QREF_OK)
            return status;
    }
    return get_optional_positive(display, root, "max_position_embeddings", 2048, &config->max_position_embeddings,
                                 err);
}

/* Reads the scalar settings: norm epsilon, RoPE base, tied embeddings, token ids, dtype. */
static qref_status parse_settings(const char *display, const cJSON *root, qref_llama_config *config,
                                  qref_error *err)
{
    qref_status status = get_positive_double(display, root, "rms_norm_eps", 1e-6, &config->rms_norm_eps, err);
    if (status != QREF_OK)
        return status;

    /* rope_theta sits at the top level, or inside rope_parameters (transformers 5). */
    const cJSON *parameters = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *theta_holder = root;
    if (cJSON_IsObject(parameters) && cJSON_GetObjectItemCaseSensitive(parameters, "rope_theta") != NULL)
        theta_holder = parameters;
    status = get_positive_double(display, theta_holder, "rope_theta", 10000.0, &config->rope_theta, err);
    if (status != QREF_OK)
        return status;
    if (theta_holder != root && cJSON_GetObjectItemCaseSensitive(root, "rope_theta") != NULL) {
        double top_theta;
        status = get_positive_double(display, root, "rope_theta", 10000.0, &top_theta, err);
        if (status != QREF_OK)
            return status;
        if (top_theta != config->rope_theta)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: rope_theta %g differs from rope_parameters.rope_theta %g", display, top_theta,
                                  config->rope_theta);
    }

    status = qref_json_get_bool(display, root, "tie_word_embeddings", false, false, &config->tie_word_embeddings, err);
    if (status == QREF_OK)
        status = get_token_id(display, root, "bos_token_id", config->vocab_size, &config->bos_token_id, err);
    if (status == QREF_OK)
        status = get_token_id(display, root, "eos_token_id", config->vocab_size, &config->eos_token_id, err);
    if (status != QREF_OK)
        return status;

    /* torch_dtype, renamed dtype in newer transformers, may be absent or null. */
    const char *key = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype") != NULL ? "torch_dtype" : "dtype";
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    config->torch_dtype[0] = '\0';
    if (item == NULL || cJSON_IsNull(item))
        return QREF_OK;
    const char *dtype;
    status = qref_json_get_string(display, root, key, true, NULL, &dtype, err);
    if (status != QREF_OK)
        return status;
    if (strlen(dtype) >= sizeof config->torch_dtype)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s \"%.60s\" is longer than %zu characters", display, key,
                              dtype, sizeof config->torch_dtype - 1);
    snprintf(config->torch_dtype, sizeof config->torch_dtype, "%s", dtype);
    return QREF_OK;
}

qref_status qref_llama_config_parse(const char *display, const char *json, size_t length,
                                    qref_llama_config *config, qref_error *err)
{
    memset(config, 0, sizeof *config);
    cJSON *root = NULL;
    qref_status status = qref_json_parse(display, json, length, CONFIG_MAX_DEPTH, &root, err);
    if (status != QREF_OK)
        return status;
    if (!cJSON_IsObject(root))
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: config is %s, expected a JSON object", display,
                                qref_json_type_name(root));
    if (status == QREF_OK)
        status = check_supported(display, root, err);
    if (status == QREF_OK)
        status = parse_shapes(display, root, config, err);
    if (status == QREF_OK)
        status = parse_settings(display, root, config, err);
    if (status == QREF_OK)
        status = parse_rope(display, root, config, err);
    cJSON_Delete(root);
    if (status != QREF_OK)
        memset(config, 0, sizeof *config);
    return status;
}
