/*
 * GPTQ quantization configs (formats/qref_gptq.h): the key sets AutoGPTQ, optimum and
 * GPTQModel write, synonyms, unsupported layouts, the two-file lookup and the writer.
 *
 * The config texts are shaped like the to_dict() outputs of AutoGPTQ's BaseQuantizeConfig,
 * optimum's GPTQQuantizer and GPTQModel's QuantizeConfig. The expected values are the ones
 * written in each text.
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_gptq.h"
#include "io/qref_json.h"

static qref_status parse_text(const char *text, qref_gptq_config *config, qref_error *err)
{
    return qref_gptq_config_resolve("quantize_config.json", text, strlen(text), "config.json", NULL, 0, config,
                                    err);
}

static void expect_parse_error(const char *text, qref_status status, const char *first, const char *second)
{
    qref_gptq_config config;
    qref_error err = {0};
    assert_int_equal(parse_text(text, &config, &err), status);
    assert_non_null(strstr(err.message, first));
    if (second != NULL)
        assert_non_null(strstr(err.message, second));
}

/* The fixture's quantize_config.json, written by AutoGPTQ (no checkpoint_format key). */
static void test_gptq_config_autogptq(void **state)
{
    (void)state;
    size_t length;
    char *text = test_read_file(test_fixture_path("models/synth256-autogptq-w4g128/quantize_config.json"), &length);
    qref_gptq_config config;
    qref_error err = {0};
    assert_int_equal(qref_gptq_config_resolve("quantize_config.json", text, length, "config.json", NULL, 0, &config,
                                              &err),
                     QREF_OK);
    assert_int_equal(config.bits, 4);
    assert_int_equal(config.group_size, 128);
    assert_false(config.sym);
    assert_false(config.desc_act);
    assert_false(config.static_groups);
    assert_false(config.true_sequential);
    assert_float_equal(config.damp_percent, 0.01, 0.0);
    assert_int_equal(config.format, QREF_GPTQ_FORMAT_V1);
    assert_false(config.declared & QREF_GPTQ_KEY_FORMAT);
    assert_true(config.declared & QREF_GPTQ_KEY_DESC_ACT);
    assert_string_equal(config.source, "quantize_config.json");
    free(text);
}

/* optimum writes "format" (not checkpoint_format) and extra keys such as dataset. */
static void test_gptq_config_optimum(void **state)
{
    (void)state;
    const char *text = "{\"bits\": 3, \"dataset\": \"c4\", \"group_size\": 64, \"damp_percent\": 0.1,"
                       " \"desc_act\": true, \"act_group_aware\": false, \"sym\": true, \"true_sequential\": true,"
                       " \"quant_method\": \"gptq\", \"modules_in_block_to_quantize\": null,"
                       " \"format\": \"gptq\", \"meta\": null}";
    qref_gptq_config config;
    qref_error err = {0};
    assert_int_equal(parse_text(text, &config, &err), QREF_OK);
    assert_int_equal(config.bits, 3);
    assert_int_equal(config.group_size, 64);
    assert_true(config.sym);
    assert_true(config.desc_act);
    assert_float_equal(config.damp_percent, 0.1, 0.0);
    assert_int_equal(config.format, QREF_GPTQ_FORMAT_V1);
    assert_true(config.declared & QREF_GPTQ_KEY_FORMAT);
}

/* GPTQModel: checkpoint_format gptq_v2, pack_dtype, and algorithm settings inside meta. */
static void test_gptq_config_gptqmodel(void **state)
{
    (void)state;
    const char *text = "{\"bits\": 4, \"dynamic\": null, \"group_size\": 128, \"desc_act\": false, \"sym\": false,"
                       " \"lm_head\": false, \"quant_method\": \"gptq\", \"checkpoint_format\": \"gptq_v2\","
                       " \"pack_dtype\": \"int32\", \"meta\": {\"quantizer\": [\"gptqmodel:2.2.0\"],"
                       " \"uri\": \"https://github.com/modelcloud/gptqmodel\", \"damp_percent\": 0.05,"
                       " \"damp_auto_increment\": 0.01, \"static_groups\": true, \"true_sequential\": true,"
                       " \"mse\": 0.0}}";
    qref_gptq_config config;
    qref_error err = {0};
    assert_int_equal(parse_text(text, &config, &err), QREF_OK);
    assert_int_equal(config.format, QREF_GPTQ_FORMAT_V2);
    assert_false(config.sym);
    assert_true(config.static_groups);
    assert_float_equal(config.damp_percent, 0.05, 0.0);
    assert_string_equal(config.quantizer, "gptqmodel:2.2.0");
    assert_true(config.declared & QREF_GPTQ_KEY_STATIC_GROUPS);
    assert_int_equal(config.pack_bits, 32);
    assert_true(config.declared & QREF_GPTQ_KEY_PACK_DTYPE);

    /* GPTQModel's other containers: pack_dtype is str(torch dtype) without "torch.". */
    const char *names[] = {"int8", "int16", "int64", "INT16"};
    const int widths[] = {8, 16, 64, 16};
    for (size_t k = 0; k < 4; k++) {
        char words[256];
        snprintf(words, sizeof words, "{\"bits\": 4, \"format\": \"gptq\", \"checkpoint_format\": \"gptq\", "
                 "\"pack_dtype\": \"%s\", \"act_order\": true}", names[k]);
        assert_int_equal(parse_text(words, &config, &err), QREF_OK);
        assert_int_equal(config.pack_bits, widths[k]);
        assert_true(config.desc_act);
        assert_true(config.declared & QREF_GPTQ_KEY_DESC_ACT);
    }

    /* meta and the top level must agree where both set a value. */
    expect_parse_error("{\"bits\": 4, \"damp_percent\": 0.01, \"meta\": {\"damp_percent\": 0.05}}",
                       QREF_ERR_INVALID, "\"damp_percent\" is 0.01 but meta.damp_percent is 0.05", NULL);
}

/* Synonyms (w_bit, q_group_size, zero_point), case-insensitive keys, and defaults. */
static void test_gptq_config_synonyms_and_defaults(void **state)
{
    (void)state;
    qref_gptq_config config;
    qref_error err = {0};
    assert_int_equal(parse_text("{\"w_bit\": 8, \"q_group_size\": 32, \"zero_point\": true}", &config, &err),
                     QREF_OK);
    assert_int_equal(config.bits, 8);
    assert_int_equal(config.group_size, 32);
    assert_false(config.sym);

    assert_int_equal(parse_text("{\"BITS\": 2, \"Group_Size\": -1, \"Checkpoint_Format\": \"GPTQ_V2\"}", &config,
                                &err),
                     QREF_OK);
    assert_int_equal(config.bits, 2);
    assert_int_equal(config.group_size, -1);
    assert_int_equal(config.format, QREF_GPTQ_FORMAT_V2);

    /* Undeclared keys keep AutoGPTQ's defaults: sym true, format gptq (v1). */
    assert_int_equal(parse_text("{\"bits\": 4, \"group_size\": 128}", &config, &err), QREF_OK);
    assert_true(config.sym);
    assert_false(config.declared & QREF_GPTQ_KEY_SYM);
    assert_int_equal(config.format, QREF_GPTQ_FORMAT_V1);
    assert_true(config.true_sequential);

    expect_parse_error("{\"format\": \"gptq\", \"checkpoint_format\": \"gptq_v2\"}", QREF_ERR_INVALID,
                       "keys \"format\" (\"gptq\") and \"checkpoint_format\" (\"gptq_v2\")", "different values");
    expect_parse_error("{\"sym\": true, \"zero_point\": true}", QREF_ERR_INVALID, "sym is true but zero_point is true",
                       NULL);
}

/* Repacked layouts and other methods are named and reported as not supported. */
static void test_gptq_config_unsupported(void **state)
{
    (void)state;
    expect_parse_error("{\"bits\": 4, \"quant_method\": \"gptq\", \"checkpoint_format\": \"marlin\"}",
                       QREF_ERR_UNSUPPORTED, "checkpoint_format \"marlin\" is a repacked GPTQ layout", NULL);
    expect_parse_error("{\"bits\": 4, \"is_marlin_format\": true}", QREF_ERR_UNSUPPORTED, "Marlin", NULL);
    expect_parse_error("{\"bits\": 4, \"quant_method\": \"bitblas\"}", QREF_ERR_UNSUPPORTED,
                       "quant_method \"bitblas\" is a repacked GPTQ layout", NULL);
    expect_parse_error("{\"bits\": 4, \"quant_method\": \"awq\", \"version\": \"gemm\"}", QREF_ERR_UNSUPPORTED,
                       "quant_method \"awq\" is not GPTQ", NULL);
    expect_parse_error("{\"bits\": 4, \"format\": \"gemm\"}", QREF_ERR_UNSUPPORTED, "an AWQ layout", NULL);
    expect_parse_error("{\"bits\": 3, \"pack_dtype\": \"int16\"}", QREF_ERR_UNSUPPORTED,
                       "bits 3 with pack_dtype \"int16\" is not supported", "expected pack_dtype \"int32\"");
    expect_parse_error("{\"bits\": 4, \"dynamic\": {\"-:model.layers.0.*\": {}}}", QREF_ERR_UNSUPPORTED,
                       "per-module overrides", "-:model.layers.0.*");
}

/* Invalid values: each names the key, the value found and the value expected. */
static void test_gptq_config_invalid(void **state)
{
    (void)state;
    expect_parse_error("{\"bits\": 5}", QREF_ERR_INVALID, "bits is 5", "expected 2, 3, 4 or 8");
    expect_parse_error("{\"bits\": -1}", QREF_ERR_INVALID, "bits is -1", "expected 2, 3, 4 or 8");
    expect_parse_error("{\"bits\": 1e10}", QREF_ERR_INVALID, "bits is 1e10", "expected 2, 3, 4 or 8");
    expect_parse_error("{\"bits\": 4.5}", QREF_ERR_INVALID, "bits is 4.5", "expected 2, 3, 4 or 8");
    expect_parse_error("{\"bits\": 4, \"group_size\": 0}", QREF_ERR_INVALID, "group_size is 0", "-1");
    expect_parse_error("{\"bits\": \"4\"}", QREF_ERR_INVALID, "bits", NULL);
    /* AutoGPTQ's BaseQuantizeConfig keeps a null bits and its __post_init__ rejects it */
    expect_parse_error("{\"bits\": null, \"group_size\": 128}", QREF_ERR_INVALID, "bits is null",
                       "expected 2, 3, 4 or 8");
    expect_parse_error("{\"bits\": 4, \"pack_dtype\": \"float\"}", QREF_ERR_INVALID, "pack_dtype \"float\" is unknown",
                       "expected \"int8\", \"int16\", \"int32\" or \"int64\"");
    expect_parse_error("{\"bits\": 4, \"pack_dtype\": \"uint32\"}", QREF_ERR_INVALID, "pack_dtype \"uint32\" is unknown",
                       NULL);
    expect_parse_error("{\"bits\": 4, \"checkpoint_format\": \"gptq_v3\"}", QREF_ERR_INVALID,
                       "checkpoint_format \"gptq_v3\" is unknown", NULL);
    expect_parse_error("{\"bits\": 4, \"damp_percent\": 1.5}", QREF_ERR_INVALID, "damp_percent is 1.5", "(0, 1)");
    expect_parse_error("[4]", QREF_ERR_INVALID, "not a JSON object", NULL);
}

static const char *config_json_with(const char *section, char *buf, size_t size)
{
    snprintf(buf, size, "{\"model_type\": \"llama\", \"hidden_size\": 256, \"quantization_config\": %s}", section);
    return buf;
}

/* quantize_config.json first, then config.json; disagreements name both values. */
static void test_gptq_config_two_files(void **state)
{
    (void)state;
    char config_text[512];
    qref_gptq_config config;
    qref_error err = {0};

    const char *quantize = "{\"bits\": 4, \"group_size\": 128, \"desc_act\": false}";
    config_json_with("{\"bits\": 4, \"group_size\": 128, \"sym\": false, \"quant_method\": \"gptq\"}", config_text,
                     sizeof config_text);
    assert_int_equal(qref_gptq_config_resolve("quantize_config.json", quantize, strlen(quantize), "config.json",
                                              config_text, strlen(config_text), &config, &err),
                     QREF_OK);
    /* sym only in config.json: taken from there. */
    assert_false(config.sym);
    assert_true(config.declared & QREF_GPTQ_KEY_SYM);
    assert_string_equal(config.source, "quantize_config.json + config.json");

    /* Only config.json. */
    assert_int_equal(qref_gptq_config_resolve("quantize_config.json", NULL, 0, "config.json", config_text,
                                              strlen(config_text), &config, &err),
                     QREF_OK);
    assert_string_equal(config.source, "config.json: quantization_config");

    config_json_with("{\"bits\": 8, \"group_size\": 128}", config_text, sizeof config_text);
    assert_int_equal(qref_gptq_config_resolve("quantize_config.json", quantize, strlen(quantize), "config.json",
                                              config_text, strlen(config_text), &config, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "quantize_config.json gives bits 4"));
    assert_non_null(strstr(err.message, "config.json: quantization_config gives bits 8"));

    /* A format named in one file and implied by the other's silence still disagrees. */
    config_json_with("{\"bits\": 4, \"checkpoint_format\": \"gptq_v2\"}", config_text, sizeof config_text);
    assert_int_equal(qref_gptq_config_resolve("quantize_config.json", quantize, strlen(quantize), "config.json",
                                              config_text, strlen(config_text), &config, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "format gptq (the default)"));
    assert_non_null(strstr(err.message, "format gptq_v2"));

    /* pack_dtype, like the format, is compared even where one file leaves it to the default. */
    config_json_with("{\"bits\": 4, \"pack_dtype\": \"int16\"}", config_text, sizeof config_text);
    assert_int_equal(qref_gptq_config_resolve("quantize_config.json", quantize, strlen(quantize), "config.json",
                                              config_text, strlen(config_text), &config, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "pack_dtype int32 (the default)"));
    assert_non_null(strstr(err.message, "pack_dtype int16"));

    /* Neither file has a config. */
    const char *plain = "{\"model_type\": \"llama\"}";
    assert_int_equal(qref_gptq_config_resolve("quantize_config.json", NULL, 0, "config.json", plain, strlen(plain),
                                              &config, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "no GPTQ quantization config"));

    /* The fixture snapshot: both files, equal. */
    assert_int_equal(qref_gptq_config_load(test_fixture_path("models/synth256-autogptq-w4g128"), &config, &err),
                     QREF_OK);
    assert_int_equal(config.group_size, 128);
    assert_string_equal(config.source, "quantize_config.json + config.json");
}

/*
 * The writer emits AutoGPTQ's BaseQuantizeConfig.to_dict keys in that order, then
 * GPTQModel's pack_dtype (for words other than int32) and meta with the tool and the
 * algorithm. Reading the text back gives the config.
 */
static void test_gptq_config_writer(void **state)
{
    (void)state;
    qref_gptq_config config;
    qref_gptq_config_init(&config);
    config.bits = 4;
    config.group_size = 128;
    config.sym = false;
    config.desc_act = false;
    snprintf(config.quantizer, sizeof config.quantizer, "qconform:0.1.0");
    snprintf(config.algorithm, sizeof config.algorithm, "rtn");

    cJSON *object = NULL;
    qref_error err = {0};
    assert_int_equal(qref_gptq_config_to_json(&config, NULL, "model", &object, &err), QREF_OK);
    char *text = cJSON_PrintUnformatted(object);
    assert_string_equal(text, "{\"bits\":4,\"group_size\":128,\"damp_percent\":0.01,\"desc_act\":false,"
                              "\"static_groups\":false,\"sym\":false,\"true_sequential\":true,"
                              "\"model_name_or_path\":null,\"model_file_base_name\":\"model\","
                              "\"quant_method\":\"gptq\",\"checkpoint_format\":\"gptq\","
                              "\"meta\":{\"quantizer\":[\"qconform:0.1.0\"],\"algorithm\":\"rtn\"}}");

    qref_gptq_config back;
    assert_int_equal(parse_text(text, &back, &err), QREF_OK);
    assert_int_equal(back.bits, 4);
    assert_int_equal(back.group_size, 128);
    assert_false(back.sym);
    assert_int_equal(back.format, QREF_GPTQ_FORMAT_V1);
    assert_string_equal(back.algorithm, "rtn");
    assert_string_equal(back.quantizer, "qconform:0.1.0");
    cJSON_free(text);
    cJSON_Delete(object);

    /* Other words add GPTQModel's pack_dtype after checkpoint_format, and read back. */
    config.pack_bits = 16;
    config.format = QREF_GPTQ_FORMAT_V2;
    assert_int_equal(qref_gptq_config_to_json(&config, NULL, "model", &object, &err), QREF_OK);
    text = cJSON_PrintUnformatted(object);
    assert_non_null(strstr(text, "\"checkpoint_format\":\"gptq_v2\",\"pack_dtype\":\"int16\",\"meta\""));
    assert_int_equal(parse_text(text, &back, &err), QREF_OK);
    assert_int_equal(back.pack_bits, 16);
    assert_int_equal(back.format, QREF_GPTQ_FORMAT_V2);
    cJSON_free(text);
    cJSON_Delete(object);

    config.bits = 3;
    assert_int_equal(qref_gptq_config_to_json(&config, NULL, NULL, &object, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "16-bit words for 3-bit codes"));
    assert_null(object);
    config.bits = 6;
    assert_int_equal(qref_gptq_config_to_json(&config, NULL, NULL, &object, &err), QREF_ERR_INVALID);
    assert_null(object);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gptq_config_autogptq),
        cmocka_unit_test(test_gptq_config_optimum),
        cmocka_unit_test(test_gptq_config_gptqmodel),
        cmocka_unit_test(test_gptq_config_synonyms_and_defaults),
        cmocka_unit_test(test_gptq_config_unsupported),
        cmocka_unit_test(test_gptq_config_invalid),
        cmocka_unit_test(test_gptq_config_two_files),
        cmocka_unit_test(test_gptq_config_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
