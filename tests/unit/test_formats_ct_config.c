/*
 * The compressed-tensors quantization_config (formats/qref_ct.h): QuantizationArgs defaults,
 * inference and validation, schemes and presets, formats and statuses, target matching and
 * its priority, and the config the quantize command writes.
 *
 * Cases marked "library test" restate a test of compressed-tensors itself, with the outcome
 * that test asserts. They come from tests/test_quantization/test_quant_args.py (test_defaults,
 * test_infer_strategy and test_actorder in neuralmagic/compressed-tensors; test_group,
 * test_invalid, test_enums, test_block_structure_* in vllm-project/compressed-tensors),
 * tests/test_quantization/test_quant_config.py (test_load_scheme_from_preset), and
 * tests/test_quantization/lifecycle/test_apply.py (test_expand_targets_with_llama_stories,
 * test_apply_quantization_status) of neuralmagic/compressed-tensors. A ValueError or
 * ValidationError there is a schema problem (finding) here.
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "formats/qref_ct.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* Parses text (a quantization_config object); returns the status and fills config. */
static qref_status parse(const char *text, qref_ct_config *config, qref_error *err)
{
    cJSON *json = cJSON_Parse(text);
    assert_non_null(json);
    qref_status status = qref_ct_config_parse("config.json: quantization_config", json, config, err);
    cJSON_Delete(json);
    return status;
}

/* A config whose only group has these weights args, in format int-quantized. */
static qref_status parse_weights(const char *weights, qref_ct_config *config)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", \"quantization_status\": "
             "\"compressed\", \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": %s}}}",
             weights);
    qref_error err = {0};
    qref_status status = parse(text, config, &err);
    if (status != QREF_OK)
        print_message("error: %s\n", err.message);
    return status;
}

/* Asserts that config has exactly one problem, with this id and phrase. */
static void assert_one_problem(const qref_ct_config *config, const char *id, const char *phrase)
{
    for (size_t k = 0; k < config->problem_count; k++)
        print_message("problem %s: %s\n", config->problems[k].id, config->problems[k].message);
    assert_int_equal(config->problem_count, 1);
    assert_string_equal(config->problems[0].id, id);
    assert_non_null(strstr(config->problems[0].message, phrase));
}

/* Asserts that the weights args parse with a single problem of this id. */
static void assert_weights_problem(const char *weights, const char *id, const char *phrase)
{
    qref_ct_config config;
    assert_int_equal(parse_weights(weights, &config), QREF_OK);
    assert_one_problem(&config, id, phrase);
    assert_false(config.schemes[0].valid);
    qref_ct_config_free(&config);
}

/* ---- QuantizationArgs --------------------------------------------------------------------- */

/* library test test_defaults and test_infer_strategy: 8-bit int symmetric tensor; group_size
 * 128 infers group, -1 infers channel */
static void test_args_defaults_and_inference(void **state)
{
    (void)state;
    static const struct {
        const char *weights;
        qref_ct_strategy strategy;
        long group_size;
    } cases[] = {
        {"{}", QREF_CT_STRATEGY_TENSOR, 0},
        {"{\"group_size\": 128}", QREF_CT_STRATEGY_GROUP, 128},
        {"{\"group_size\": -1}", QREF_CT_STRATEGY_CHANNEL, -1},
        {"{\"group_size\": null, \"strategy\": null}", QREF_CT_STRATEGY_TENSOR, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qref_ct_config config;
        assert_int_equal(parse_weights(cases[c].weights, &config), QREF_OK);
        assert_int_equal(config.problem_count, 0);
        const qref_ct_args *w = &config.schemes[0].weights;
        assert_int_equal(w->num_bits, 8);
        assert_false(w->type_float);
        assert_true(w->symmetric);
        assert_false(w->dynamic);
        assert_int_equal(w->strategy, cases[c].strategy);
        assert_int_equal(w->group_size, cases[c].group_size);
        assert_true(config.schemes[0].valid);
        assert_int_equal(config.schemes[0].format, QREF_CT_FORMAT_INT_QUANTIZED);
        qref_ct_config_free(&config);
    }
}

/* library test test_group: group with -1 or without group_size, tensor with 128 */
static void test_args_group_size(void **state)
{
    (void)state;
    assert_weights_problem("{\"strategy\": \"group\", \"group_size\": -1}", "ct.schema.group_size",
                           "strategy \"group\" with group_size -1, expected a positive group_size");
    assert_weights_problem("{\"strategy\": \"group\"}", "ct.schema.group_size",
                           "strategy \"group\" with group_size missing");
    assert_weights_problem("{\"strategy\": \"tensor\", \"group_size\": 128}", "ct.schema.group_size",
                           "group_size 128 with strategy \"tensor\"");
    assert_weights_problem("{\"strategy\": \"channel\", \"group_size\": -2}", "ct.schema.group_size",
                           "group_size: found -2");

    qref_ct_config config;
    assert_int_equal(parse_weights("{\"group_size\": 128, \"strategy\": \"group\", \"num_bits\": 4}", &config), QREF_OK);
    assert_int_equal(config.problem_count, 0);
    assert_int_equal(config.schemes[0].weights.group_size, 128);
    qref_ct_config_free(&config);
}

/* library test test_invalid and test_enums: unknown type and strategy; case-insensitive names */
static void test_args_enums(void **state)
{
    (void)state;
    assert_weights_problem("{\"type\": \"invalid\"}", "ct.schema.invalid",
                           "type: found \"invalid\" (a string), expected \"int\" or \"float\"");
    assert_weights_problem("{\"strategy\": \"invalid\"}", "ct.schema.strategy",
                           "strategy: found \"invalid\" (a string), expected one of");
    assert_weights_problem("{\"num_bits\": \"4\"}", "ct.schema.invalid", "num_bits: found");

    qref_ct_config config;
    assert_int_equal(parse_weights("{\"type\": \"InT\", \"strategy\": \"GROUP\", \"actorder\": \"weight\", "
                                   "\"group_size\": 1}", &config), QREF_OK);
    assert_int_equal(config.problem_count, 0);
    assert_int_equal(config.schemes[0].weights.strategy, QREF_CT_STRATEGY_GROUP);
    assert_false(config.schemes[0].weights.actorder_group);
    qref_ct_config_free(&config);
}

/* library test test_actorder: group ordering needs a group strategy; true means "group" */
static void test_args_actorder(void **state)
{
    (void)state;
    assert_weights_problem("{\"actorder\": \"group\"}", "ct.schema.invalid",
                           "actorder \"group\" with strategy \"tensor\"");
    assert_weights_problem("{\"strategy\": \"tensor\", \"actorder\": \"group\"}", "ct.schema.invalid",
                           "actorder \"group\"");
    assert_weights_problem("{\"group_size\": -1, \"actorder\": \"group\"}", "ct.schema.invalid",
                           "with strategy \"channel\"");
    assert_weights_problem("{\"strategy\": \"group\", \"group_size\": 1, \"actorder\": \"sideways\"}",
                           "ct.schema.invalid", "actorder: found \"sideways\"");

    static const char *const grouped[] = {
        "{\"strategy\": \"group\", \"group_size\": 128, \"actorder\": \"group\"}",
        "{\"strategy\": \"group\", \"group_size\": 128, \"actorder\": \"dynamic\"}",
        "{\"strategy\": \"group\", \"group_size\": 1, \"actorder\": true}",
    };
    for (size_t c = 0; c < 3; c++) {
        qref_ct_config config;
        assert_int_equal(parse_weights(grouped[c], &config), QREF_OK);
        assert_int_equal(config.problem_count, 0);
        assert_true(config.schemes[0].weights.actorder_group);
        qref_ct_config_free(&config);
    }
}

/* validate_model_after: static token, extra keys, block_structure (library test
 * test_block_structure_requires_positive_dimensions and the "2x4" string of test_block) */
static void test_args_other_rules(void **state)
{
    (void)state;
    assert_weights_problem("{\"num_bits\": 4, \"bogus\": 1}", "ct.schema.invalid",
                           "unknown key \"bogus\" (QuantizationArgs forbids extra keys");
    assert_weights_problem("{\"num_bits\": 0}", "ct.schema.bits", "num_bits: found 0, expected at least 1");

    qref_ct_config config;
    qref_error err = {0};
    const char *base = "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                       "\"quantization_status\": \"compressed\", \"config_groups\": {\"group_0\": {\"targets\": "
                       "[\"Linear\"], \"weights\": {\"num_bits\": 8}, \"input_activations\": %s}}, "
                       "\"kv_cache_scheme\": %s}";
    char text[1024];

    snprintf(text, sizeof text, base, "{\"strategy\": \"token\"}", "null");
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "strategy \"token\" with dynamic false");
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, base, "{\"strategy\": \"channel\"}", "null");
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.strategy", "is not supported for activation quantization");
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, base, "{\"strategy\": \"token\", \"dynamic\": true}",
             "{\"num_bits\": 8, \"strategy\": \"block\", \"block_structure\": \"2x4\"}");
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_int_equal(config.problem_count, 0);
    assert_true(config.has_kv_cache);
    assert_true(config.schemes[0].has_input_activations);
    assert_true(config.schemes[0].input_activations.dynamic);
    qref_ct_config_free(&config);

    static const char *const bad_blocks[] = {"\"2x4x8\"", "[2, 4, 8]", "\"2xfoo\"", "[0, 4]", "[4, -1]", "\"4x0\""};
    for (size_t c = 0; c < sizeof bad_blocks / sizeof bad_blocks[0]; c++) {
        char kv[128];
        snprintf(kv, sizeof kv, "{\"strategy\": \"block\", \"block_structure\": %s}", bad_blocks[c]);
        snprintf(text, sizeof text, base, "null", kv);
        assert_int_equal(parse(text, &config, &err), QREF_OK);
        assert_one_problem(&config, "ct.schema.invalid", "block_structure: found");
        assert_false(config.has_kv_cache);
        qref_ct_config_free(&config);
    }

    snprintf(text, sizeof text, base, "null", "{\"strategy\": \"tensor\", \"block_structure\": [2, 4]}");
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "strategy \"tensor\" with block_structure");
    qref_ct_config_free(&config);
}

/* ---- schemes, presets, formats ------------------------------------------------------------ */

/* library test test_load_scheme_from_preset: a group named after a preset lists its targets */
static void test_presets(void **state)
{
    (void)state;
    qref_ct_config config;
    qref_error err = {0};
    const char *text = "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", "
                       "\"quantization_status\": \"compressed\", \"config_groups\": {\"W4A16\": [\"Linear\"]}}";
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_int_equal(config.problem_count, 0);
    const qref_ct_scheme *scheme = &config.schemes[0];
    assert_true(scheme->has_weights);
    assert_int_equal(scheme->weights.num_bits, 4);
    assert_int_equal(scheme->weights.strategy, QREF_CT_STRATEGY_GROUP);
    assert_int_equal(scheme->weights.group_size, 128);
    assert_true(scheme->weights.symmetric);
    assert_int_equal(scheme->target_count, 1);
    assert_string_equal(scheme->targets[0], "Linear");
    qref_ct_config_free(&config);

    text = "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", \"quantization_status\": "
           "\"compressed\", \"config_groups\": {\"W8A8\": [\"Linear\"]}}";
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_int_equal(config.problem_count, 0);
    assert_int_equal(config.schemes[0].weights.strategy, QREF_CT_STRATEGY_CHANNEL);
    assert_true(config.schemes[0].has_input_activations);
    assert_int_equal(config.schemes[0].input_activations.strategy, QREF_CT_STRATEGY_TOKEN);
    assert_true(config.schemes[0].input_activations.dynamic);
    qref_ct_config_free(&config);

    text = "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", \"quantization_status\": "
           "\"compressed\", \"config_groups\": {\"W8A16\": [\"Linear\"]}}";
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED,
                      "names the preset scheme W8A16, which this version does not read");
    qref_ct_config_free(&config);

    text = "{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", \"quantization_status\": "
           "\"compressed\", \"config_groups\": {\"FP8\": [\"Linear\"]}}";
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED, "\"float-quantized\"");
    qref_ct_config_free(&config);

    text = "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", \"quantization_status\": "
           "\"compressed\", \"config_groups\": {\"W3A7\": [\"Linear\"]}}";
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "must name a preset scheme");
    qref_ct_config_free(&config);
}

/* The format: supported, not supported, unknown, missing, and mixed-precision. */
static void test_formats(void **state)
{
    (void)state;
    qref_ct_config config;
    qref_error err = {0};
    const char *group = "\"config_groups\": {\"g\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 4, "
                        "\"strategy\": \"channel\"}%s}}";
    char groups[256], text[1024];
    snprintf(groups, sizeof groups, group, "");

    static const char *const unsupported[] = {"float-quantized", "dense", "sparse-bitmask", "marlin-24",
                                              "nvfp4-pack-quantized", "fakequant"};
    for (size_t c = 0; c < sizeof unsupported / sizeof unsupported[0]; c++) {
        snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"%s\", "
                 "\"quantization_status\": \"compressed\", %s}", unsupported[c], groups);
        test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED, "this version does not read");
        qref_ct_config_free(&config);
    }

    snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"packed\", "
             "\"quantization_status\": \"compressed\", %s}", groups);
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "format: found \"packed\" (a string)");
    assert_false(config.schemes[0].valid);
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"quantization_status\": "
             "\"compressed\", %s}", groups);
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED, "reads as \"fakequant\"");
    qref_ct_config_free(&config);

    /* mixed-precision: each group's own format; a group without one is a problem */
    snprintf(groups, sizeof groups, group, ", \"format\": \"pack-quantized\"");
    snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"mixed-precision\", "
             "\"quantization_status\": \"compressed\", %s}", groups);
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_int_equal(config.problem_count, 0);
    assert_int_equal(config.format, QREF_CT_FORMAT_MIXED_PRECISION);
    assert_int_equal(config.schemes[0].format, QREF_CT_FORMAT_PACK_QUANTIZED);
    qref_ct_config_free(&config);

    snprintf(groups, sizeof groups, group, "");
    snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"mixed-precision\", "
             "\"quantization_status\": \"compressed\", %s}", groups);
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "declares no format, expected one");
    qref_ct_config_free(&config);

    snprintf(groups, sizeof groups, group, ", \"format\": \"mixed-precision\"");
    snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", "
             "\"quantization_status\": \"compressed\", %s}", groups);
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "mixed-precision is a model-level format");
    qref_ct_config_free(&config);
}

/* Bits per format, float and block weights, weight strategies meant for activations. */
static void test_weight_rules(void **state)
{
    (void)state;
    qref_ct_config config;
    qref_error err = {0};
    const char *base = "{\"quant_method\": \"compressed-tensors\", \"format\": \"%s\", \"quantization_status\": "
                       "\"compressed\", \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": %s}}}";
    char text[1024];

    snprintf(text, sizeof text, base, "pack-quantized", "{\"num_bits\": 2, \"strategy\": \"channel\"}");
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.bits", "num_bits 2 with format \"pack-quantized\", expected 4 or 8");
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, base, "int-quantized", "{\"num_bits\": 2, \"strategy\": \"channel\"}");
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_int_equal(config.problem_count, 0);
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, base, "int-quantized", "{\"num_bits\": 16}");
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED, "num_bits 16 is stored as I16");
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, base, "int-quantized", "{\"num_bits\": 8, \"type\": \"float\"}");
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED, "type \"float\"");
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, base, "int-quantized", "{\"strategy\": \"block\", \"block_structure\": [128, 128]}");
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED, "strategy \"block\"");
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, base, "int-quantized", "{\"strategy\": \"token\", \"dynamic\": true}");
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_true(config.problem_count >= 1);
    assert_string_equal(config.problems[0].id, "ct.schema.strategy");
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, base, "int-quantized", "{\"strategy\": \"tensor\", \"dynamic\": true}");
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "weights: dynamic true, expected false");
    qref_ct_config_free(&config);
}

/* quant_method, status, sparsity and transform configs, config_groups and scheme keys. */
static void test_top_level(void **state)
{
    (void)state;
    qref_ct_config config;
    qref_error err = {0};
    const char *groups = "\"config_groups\": {\"g\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 8}}}";
    char text[1024];

    snprintf(text, sizeof text, "{\"quant_method\": \"gptq\", \"format\": \"int-quantized\", %s}", groups);
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_INVALID,
                      "quant_method: found \"gptq\" (a string), expected \"compressed-tensors\"");
    qref_ct_config_free(&config);

    static const struct {
        const char *status;
        const char *phrase;
    } statuses[] = {
        {"", "found nothing (compressed-tensors then assumes \"initialized\")"},
        {", \"quantization_status\": \"frozen\"", "found \"frozen\", expected \"compressed\": loaders"},
        {", \"quantization_status\": \"packed\"", "found \"packed\" (a string), expected \"compressed\" (one of"},
    };
    for (size_t c = 0; c < 3; c++) {
        snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\"%s, %s}",
                 statuses[c].status, groups);
        assert_int_equal(parse(text, &config, &err), QREF_OK);
        assert_one_problem(&config, "ct.schema.status", statuses[c].phrase);
        assert_true(config.schemes[0].valid);
        qref_ct_config_free(&config);
    }

    snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
             "\"quantization_status\": \"compressed\", \"sparsity_config\": {}, \"transform_config\": null, "
             "\"version\": \"0.12.2\", %s}", groups);
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_int_equal(config.problem_count, 0);
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
             "\"quantization_status\": \"compressed\", \"sparsity_config\": {\"format\": \"sparse-24-bitmask\"}, %s}",
             groups);
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED, "sparsity_config is declared");
    qref_ct_config_free(&config);

    snprintf(text, sizeof text, "{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
             "\"quantization_status\": \"compressed\", \"transform_config\": {\"config_groups\": {}}, %s}", groups);
    test_assert_error(parse(text, &config, &err), &err, QREF_ERR_UNSUPPORTED, "transform_config is declared");
    qref_ct_config_free(&config);

    assert_int_equal(parse("{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                           "\"quantization_status\": \"compressed\"}", &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "config_groups: found nothing (the key is required)");
    qref_ct_config_free(&config);

    assert_int_equal(parse("{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                           "\"quantization_status\": \"compressed\", \"config_groups\": {\"g\": {\"targets\": "
                           "[\"Linear\"], \"weight\": {}}}}", &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "unknown key \"weight\" (QuantizationScheme forbids");
    qref_ct_config_free(&config);

    assert_int_equal(parse("{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                           "\"quantization_status\": \"compressed\", \"config_groups\": {\"g\": {\"weights\": {}}}}",
                           &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "targets: found nothing (the key is required)");
    qref_ct_config_free(&config);

    assert_int_equal(parse("{\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
                           "\"quantization_status\": \"compressed\", \"ignore\": [\"re:(\"], \"config_groups\": "
                           "{\"g\": {\"targets\": [\"Linear\"], \"weights\": {}}}}", &config, &err), QREF_OK);
    assert_one_problem(&config, "ct.schema.invalid", "\"re:(\" is not a valid regular expression");
    qref_ct_config_free(&config);
}

/* ---- matching ----------------------------------------------------------------------------- */

static const char *const projections[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                          "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                          "mlp.down_proj"};

/* The linears of a 6-layer LLaMA (the llama_stories model of the library test) and lm_head. */
typedef struct module_list {
    char names[6 * 7 + 1][64];
    const char *pointers[6 * 7 + 1];
    size_t count;
} module_list;

static void module_list_init(module_list *list)
{
    list->count = 0;
    for (int layer = 0; layer < 6; layer++)
        for (int k = 0; k < 7; k++) {
            snprintf(list->names[list->count], 64, "model.layers.%d.%s", layer, projections[k]);
            list->pointers[list->count] = list->names[list->count];
            list->count++;
        }
    snprintf(list->names[list->count], 64, "lm_head");
    list->pointers[list->count] = list->names[list->count];
    list->count++;
}

/* A config with one group of targets and an ignore list (JSON arrays). */
static void parse_targets(const char *targets, const char *ignore, qref_ct_config *config)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", \"quantization_status\": "
             "\"compressed\", \"ignore\": %s, \"config_groups\": {\"group_0\": {\"targets\": %s, \"weights\": "
             "{\"num_bits\": 4, \"strategy\": \"channel\"}}}}", ignore, targets);
    qref_error err = {0};
    assert_int_equal(parse(text, config, &err), QREF_OK);
    assert_int_equal(config->problem_count, 0);
}

/* library test test_expand_targets_with_llama_stories: the q_proj layers each case quantizes */
static void test_matching_library_cases(void **state)
{
    (void)state;
    static const struct {
        const char *targets;
        const char *ignore;
        unsigned layers; /* bit l: model.layers.l.self_attn.q_proj is quantized */
    } cases[] = {
        {"[\"re:model.layers.[01].self_attn.q_proj\"]", "[\"re:model.layers.1.self_attn.q_proj\"]", 0x01},
        {"[\"re:model.layers.[01].self_attn.q_proj\"]", "[]", 0x03},
        {"[\"re:model.layers.[0-2].self_attn.q_proj\"]", "[\"re:model.layers.1.self_attn.q_proj\"]", 0x05},
        {"[\"model.layers.0.self_attn.q_proj\"]", "[\"model.layers.0.self_attn.q_proj\"]", 0x00},
        {"[\"re:model.layers.*.self_attn.q_proj\"]", "[\"re:model.layers.[01].self_attn.q_proj\"]", 0x3C},
    };
    module_list modules;
    module_list_init(&modules);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qref_ct_config config;
        parse_targets(cases[c].targets, cases[c].ignore, &config);
        for (size_t m = 0; m < modules.count; m++) {
            qref_ct_resolution resolution = qref_ct_config_resolve(&config, modules.pointers[m]);
            int layer = -1;
            bool q_proj = sscanf(modules.pointers[m], "model.layers.%d.", &layer) == 1 &&
                          strstr(modules.pointers[m], "q_proj") != NULL;
            bool expected = q_proj && (cases[c].layers >> layer & 1u);
            if ((resolution.scheme != NULL) != expected)
                fail_msg("case %zu: %s resolved to %s, expected %s", c, modules.pointers[m],
                         resolution.scheme != NULL ? "quantized" : "float", expected ? "quantized" : "float");
        }
        qref_ct_config_free(&config);
    }
}

/* Python's re.match anchors at the start only; class names match every linear. */
static void test_matching_rules(void **state)
{
    (void)state;
    qref_ct_config config;
    parse_targets("[\"re:.*proj\", \"Linear\"]", "[]", &config);
    const void *regex = config.schemes[0].target_regexes[0];
    assert_non_null(regex);
    assert_null(config.schemes[0].target_regexes[1]);
    assert_true(qref_ct_target_matches("re:.*proj", regex, "model.layers.0.mlp.up_proj", true));
    assert_true(qref_ct_target_matches("re:.*proj", regex, "model.layers.0.mlp.up_proj_extra", true));
    assert_false(qref_ct_target_matches("re:.*proj", regex, "lm_head", true));
    assert_true(qref_ct_target_matches("Linear", NULL, "lm_head", true));
    assert_true(qref_ct_target_matches("Module", NULL, "lm_head", true));
    assert_false(qref_ct_target_matches("Linear", NULL, "model.embed_tokens", false));
    assert_false(qref_ct_target_matches("Embedding", NULL, "lm_head", true));
    qref_ct_config_free(&config);

    parse_targets("[\"re:mlp\"]", "[]", &config);
    assert_false(qref_ct_target_matches("re:mlp", config.schemes[0].target_regexes[0], "model.layers.0.mlp.up_proj",
                                        true));
    qref_ct_config_free(&config);
}

/*
 * Priority of apply.py's match_targets: an exact name before a regex before a class name,
 * and a target string listed by two groups belongs to the later one (target_to_scheme).
 */
static void test_matching_priority(void **state)
{
    (void)state;
    qref_ct_config config;
    qref_error err = {0};
    const char *text =
        "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", \"quantization_status\": "
        "\"compressed\", \"ignore\": [\"lm_head\"], \"config_groups\": {"
        "\"by_class\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 4, \"strategy\": \"channel\"}},"
        "\"by_regex\": {\"targets\": [\"re:.*down_proj\"], \"weights\": {\"num_bits\": 8, \"strategy\": \"channel\"}},"
        "\"by_name\": {\"targets\": [\"model.layers.0.mlp.down_proj\"], \"weights\": {\"num_bits\": 8, "
        "\"strategy\": \"tensor\"}}}}";
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    assert_int_equal(config.problem_count, 0);

    qref_ct_resolution r = qref_ct_config_resolve(&config, "model.layers.0.mlp.down_proj");
    assert_string_equal(r.scheme->name, "by_name");
    assert_int_equal(r.matching_groups, 3);
    r = qref_ct_config_resolve(&config, "model.layers.1.mlp.down_proj");
    assert_string_equal(r.scheme->name, "by_regex");
    assert_string_equal(r.other->name, "by_class");
    r = qref_ct_config_resolve(&config, "model.layers.1.mlp.up_proj");
    assert_string_equal(r.scheme->name, "by_class");
    assert_int_equal(r.matching_groups, 1);
    r = qref_ct_config_resolve(&config, "lm_head");
    assert_true(r.ignored);
    assert_null(r.scheme);

    module_list modules;
    module_list_init(&modules);
    qref_findings findings = {0};
    qref_ct_config_check_targets(&config, modules.pointers, modules.count, &findings);
    for (size_t k = 0; k < findings.count; k++)
        print_message("finding %s: %s\n", findings.items[k].id, findings.items[k].message);
    assert_int_equal(findings.count, 3);
    for (size_t k = 0; k < 3; k++) {
        assert_string_equal(findings.items[k].id, "ct.targets.overlap");
        assert_int_equal(findings.items[k].severity, QREF_SEVERITY_WARNING);
    }
    assert_non_null(strstr(findings.items[0].message, "config_groups.by_class and config_groups.by_regex both "
                                                      "target 6 linear layers"));
    assert_non_null(strstr(findings.items[0].message, "compressed-tensors applies by_name to "
                                                      "\"model.layers.0.mlp.down_proj\""));
    assert_non_null(strstr(findings.items[2].message, "by_regex and config_groups.by_name both target 1 linear"));
    qref_findings_free(&findings);
    qref_ct_config_free(&config);

    text = "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", \"quantization_status\": "
           "\"compressed\", \"config_groups\": {"
           "\"first\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 4, \"strategy\": \"channel\"}},"
           "\"second\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 8, \"strategy\": \"channel\"}}}}";
    assert_int_equal(parse(text, &config, &err), QREF_OK);
    r = qref_ct_config_resolve(&config, "model.layers.3.self_attn.k_proj");
    assert_string_equal(r.scheme->name, "second");
    qref_ct_config_free(&config);
}

/* library test test_apply_quantization_status: an ignore entry matching nothing is reported,
 * "re:.*gate" is not; a target matching no linear is reported too */
static void test_matching_unmatched(void **state)
{
    (void)state;
    module_list modules;
    module_list_init(&modules);
    static const struct {
        const char *targets;
        const char *ignore;
        size_t warnings;
        const char *phrase;
    } cases[] = {
        {"[\"Linear\"]", "[\"lm_head\", \"re:.*gate\"]", 0, NULL},
        {"[\"Linear\"]", "[\"lm_head\", \"re:.*foobarbaz\"]", 1, "ignore: \"re:.*foobarbaz\" matches none of the 43"},
        {"[\"Linear\", \"Conv2d\"]", "[]", 1, "config_groups.group_0.targets: \"Conv2d\" matches none"},
    };
    for (size_t c = 0; c < 3; c++) {
        qref_ct_config config;
        parse_targets(cases[c].targets, cases[c].ignore, &config);
        qref_findings findings = {0};
        qref_ct_config_check_targets(&config, modules.pointers, modules.count, &findings);
        assert_int_equal(findings.count, cases[c].warnings);
        if (cases[c].warnings > 0) {
            assert_string_equal(findings.items[0].id, "ct.targets.unmatched");
            assert_non_null(strstr(findings.items[0].message, cases[c].phrase));
        }
        qref_findings_free(&findings);
        qref_ct_config_free(&config);
    }
}

/* ---- the written config ------------------------------------------------------------------- */

static void test_config_to_json_round_trip(void **state)
{
    (void)state;
    const qref_ct_args written[] = {
        {.num_bits = 4, .symmetric = true, .strategy = QREF_CT_STRATEGY_GROUP, .group_size = 128},
        {.num_bits = 8, .symmetric = false, .strategy = QREF_CT_STRATEGY_CHANNEL},
        {.num_bits = 4, .symmetric = false, .strategy = QREF_CT_STRATEGY_TENSOR},
    };
    const char *const ignore[] = {"lm_head"};
    for (size_t c = 0; c < 3; c++) {
        cJSON *json = NULL;
        qref_error err = {0};
        assert_int_equal(qref_ct_config_to_json(&written[c], QREF_CT_FORMAT_PACK_QUANTIZED, ignore, 1, &json, &err),
                         QREF_OK);
        qref_ct_config config;
        assert_int_equal(qref_ct_config_parse("written", json, &config, &err), QREF_OK);
        cJSON_Delete(json);
        assert_int_equal(config.problem_count, 0);
        assert_int_equal(config.scheme_count, 1);
        const qref_ct_scheme *scheme = &config.schemes[0];
        assert_true(scheme->valid);
        assert_int_equal(scheme->format, QREF_CT_FORMAT_PACK_QUANTIZED);
        assert_int_equal(scheme->weights.num_bits, written[c].num_bits);
        assert_int_equal(scheme->weights.strategy, written[c].strategy);
        assert_int_equal(scheme->weights.symmetric, written[c].symmetric);
        assert_int_equal(scheme->weights.group_size, written[c].group_size);
        assert_string_equal(config.status, "compressed");
        assert_int_equal(config.ignore_count, 1);
        assert_string_equal(config.ignore[0], "lm_head");
        qref_ct_config_free(&config);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_defaults_and_inference),
        cmocka_unit_test(test_args_group_size),
        cmocka_unit_test(test_args_enums),
        cmocka_unit_test(test_args_actorder),
        cmocka_unit_test(test_args_other_rules),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_weight_rules),
        cmocka_unit_test(test_top_level),
        cmocka_unit_test(test_matching_library_cases),
        cmocka_unit_test(test_matching_rules),
        cmocka_unit_test(test_matching_priority),
        cmocka_unit_test(test_matching_unmatched),
        cmocka_unit_test(test_config_to_json_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
