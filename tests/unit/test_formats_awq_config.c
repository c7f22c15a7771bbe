/*
 * AWQ quantization configs (formats/qref_awq.h): transformers' quantization_config keys,
 * AutoAWQ's quant_config.json keys, the versions read, named as not supported or unknown,
 * the two files resolved together, the writer, modules_to_not_convert matching, and the
 * codec detection of AutoAWQ's quant_config.json, which names no quant_method.
 *
 * The config texts follow AutoAWQ's AwqConfig.to_transformers_dict and to_dict
 * (awq/models/_config.py) and transformers' AwqConfig.
 */
#include "test_support.h"

#include <string.h>

#include "formats/qref_awq.h"
#include "formats/qref_codec.h"
#include "io/qref_json.h"

static qref_status parse_text(const char *text, qref_awq_config *config, qref_error *err)
{
    cJSON *root = NULL;
    qref_status status = qref_json_parse("quantization_config", text, strlen(text), QREF_JSON_MAX_DEPTH, &root, err);
    if (status == QREF_OK)
        status = qref_awq_config_parse("quantization_config", root, config, err);
    cJSON_Delete(root);
    return status;
}

static void transformers_keys(void **state)
{
    (void)state;
    qref_awq_config config;
    qref_error err = {0};
    assert_int_equal(parse_text("{\"quant_method\": \"awq\", \"zero_point\": true, \"group_size\": 64, \"bits\": 4, "
                                "\"version\": \"gemv\", \"modules_to_not_convert\": [\"vision_tower\", \"lm_head\"]}",
                                &config, &err),
                     QREF_OK);
    assert_int_equal(config.bits, 4);
    assert_int_equal(config.group_size, 64);
    assert_true(config.zero_point);
    assert_int_equal(config.layout, QREF_AWQ_LAYOUT_GEMV);
    assert_string_equal(config.version, "gemv");
    assert_int_equal(config.not_convert_count, 2);
    assert_string_equal(config.modules_to_not_convert[1], "lm_head");
    assert_true(qref_awq_module_not_converted(&config, "model.vision_tower.blocks.0.fc1"));
    assert_false(qref_awq_module_not_converted(&config, "model.layers.0.mlp.up_proj"));
    qref_awq_config_free(&config);
}

/* AutoAWQ's quant_config.json: w_bit, q_group_size and an upper-case version. */
static void autoawq_keys(void **state)
{
    (void)state;
    qref_awq_config config;
    qref_error err = {0};
    assert_int_equal(parse_text("{\"zero_point\": false, \"q_group_size\": 32, \"w_bit\": 4, \"version\": \"GEMM\", "
                                "\"modules_to_not_convert\": null}",
                                &config, &err),
                     QREF_OK);
    assert_int_equal(config.group_size, 32);
    assert_false(config.zero_point);
    assert_int_equal(config.layout, QREF_AWQ_LAYOUT_GEMM);
    assert_string_equal(config.version, "gemm");
    assert_int_equal(config.not_convert_count, 0);
    qref_awq_config_free(&config);
}

/* Keys left out keep the defaults 4 bits, group 128, zero_point true, gemm. */
static void defaults(void **state)
{
    (void)state;
    qref_awq_config config;
    qref_error err = {0};
    assert_int_equal(parse_text("{\"quant_method\": \"AWQ\"}", &config, &err), QREF_OK);
    assert_int_equal(config.bits, 4);
    assert_int_equal(config.group_size, 128);
    assert_true(config.zero_point);
    assert_int_equal(config.layout, QREF_AWQ_LAYOUT_GEMM);
    assert_int_equal(config.declared, 0);
    qref_awq_config_free(&config);
}

/* exllama and ipex store GEMM's tensors (WQLinear_Exllama and WQLinear_IPEX register them). */
static void versions_read_as_gemm(void **state)
{
    (void)state;
    const char *texts[] = {"{\"version\": \"exllama\"}", "{\"version\": \"ipex\"}", "{\"version\": \"GEMM\"}"};
    for (size_t k = 0; k < 3; k++) {
        qref_awq_config config;
        qref_error err = {0};
        assert_int_equal(parse_text(texts[k], &config, &err), QREF_OK);
        assert_int_equal(config.layout, QREF_AWQ_LAYOUT_GEMM);
        qref_awq_config_free(&config);
    }
}

static void versions_rejected(void **state)
{
    (void)state;
    qref_awq_config config;
    qref_error err = {0};
    test_assert_error(parse_text("{\"version\": \"gemv_fast\"}", &config, &err), &err, QREF_ERR_UNSUPPORTED,
                      "version \"gemv_fast\" is the AWQ GEMV_fast layout, which this version does not read");
    test_assert_error(parse_text("{\"version\": \"marlin\"}", &config, &err), &err, QREF_ERR_UNSUPPORTED,
                      "version \"marlin\" is the AWQ Marlin layout");
    test_assert_error(parse_text("{\"version\": \"gemm2\"}", &config, &err), &err, QREF_ERR_INVALID,
                      "version \"gemm2\" is unknown, expected \"gemm\", \"gemv\"");
    test_assert_error(parse_text("{\"backend\": \"llm-awq\"}", &config, &err), &err, QREF_ERR_UNSUPPORTED,
                      "backend \"llm-awq\" loads llm-awq's WQLinear");
    test_assert_error(parse_text("{\"quant_method\": \"gptq\"}", &config, &err), &err, QREF_ERR_INVALID,
                      "quant_method \"gptq\", expected \"awq\"");
}

static void values_rejected(void **state)
{
    (void)state;
    qref_awq_config config;
    qref_error err = {0};
    test_assert_error(parse_text("{\"bits\": 4, \"w_bit\": 8}", &config, &err), &err, QREF_ERR_INVALID,
                      "keys \"bits\" (4 (a number)) and \"w_bit\" (8 (a number)) name the same setting");
    test_assert_error(parse_text("{\"group_size\": 0}", &config, &err), &err, QREF_ERR_INVALID,
                      "group_size is 0, expected -1 or a positive group size");
    test_assert_error(parse_text("{\"group_size\": 128.5}", &config, &err), &err, QREF_ERR_INVALID, "group_size");
    test_assert_error(parse_text("{\"zero_point\": \"yes\"}", &config, &err), &err, QREF_ERR_INVALID, "zero_point");
    test_assert_error(parse_text("{\"modules_to_not_convert\": \"lm_head\"}", &config, &err), &err, QREF_ERR_INVALID,
                      "modules_to_not_convert is \"lm_head\" (a string), expected null or an array");
    test_assert_error(parse_text("{\"modules_to_not_convert\": [\"a\", 3]}", &config, &err), &err, QREF_ERR_INVALID,
                      "modules_to_not_convert[1] is 3 (a number), expected a module name");
}

/* A bits value other than 4 parses; the linear check reports it (awq.bits). */
static void other_bits_parse(void **state)
{
    (void)state;
    qref_awq_config config;
    qref_error err = {0};
    assert_int_equal(parse_text("{\"bits\": 8}", &config, &err), QREF_OK);
    assert_int_equal(config.bits, 8);
    qref_awq_config_free(&config);
}

static const char config_json[] =
    "{\"model_type\": \"llama\", \"quantization_config\": {\"quant_method\": \"awq\", \"zero_point\": true, "
    "\"group_size\": 128, \"bits\": 4, \"version\": \"gemm\", \"modules_to_not_convert\": null}}";

static void resolve_both_files(void **state)
{
    (void)state;
    qref_awq_config config;
    qref_error err = {0};

    /* agreeing keys; quant_config.json adds modules_to_not_convert, which config.json leaves null */
    const char *quant = "{\"zero_point\": true, \"q_group_size\": 128, \"w_bit\": 4, \"version\": \"GEMM\", "
                        "\"modules_to_not_convert\": [\"mlp.down_proj\"]}";
    assert_int_equal(qref_awq_config_resolve("quant_config.json", quant, strlen(quant), "config.json", config_json,
                                             strlen(config_json), &config, &err),
                     QREF_OK);
    assert_int_equal(config.group_size, 128);
    assert_int_equal(config.not_convert_count, 1);
    assert_string_equal(config.source, "config.json: quantization_config + quant_config.json");
    qref_awq_config_free(&config);

    /* disagreeing group size */
    const char *other = "{\"q_group_size\": 64, \"version\": \"GEMM\"}";
    test_assert_error(qref_awq_config_resolve("quant_config.json", other, strlen(other), "config.json", config_json,
                                              strlen(config_json), &config, &err),
                      &err, QREF_ERR_INVALID,
                      "config.json: quantization_config gives group_size 128 but quant_config.json gives 64");

    /* only quant_config.json */
    const char *plain = "{\"model_type\": \"llama\"}";
    assert_int_equal(qref_awq_config_resolve("quant_config.json", quant, strlen(quant), "config.json", plain,
                                             strlen(plain), &config, &err),
                     QREF_OK);
    assert_string_equal(config.source, "quant_config.json");
    qref_awq_config_free(&config);

    /* neither */
    test_assert_error(qref_awq_config_resolve("quant_config.json", NULL, 0, "config.json", plain, strlen(plain),
                                              &config, &err),
                      &err, QREF_ERR_INVALID, "no AWQ config found");
}

/* The writer emits to_transformers_dict's keys, and they parse back to the same config. */
static void writer_round_trip(void **state)
{
    (void)state;
    qref_awq_config config;
    qref_awq_config_init(&config);
    config.group_size = 64;
    config.zero_point = false;
    config.layout = QREF_AWQ_LAYOUT_GEMV;
    strcpy(config.version, "gemv");
    cJSON *json = NULL;
    qref_error err = {0};
    assert_int_equal(qref_awq_config_to_json(&config, &json, &err), QREF_OK);
    char *text = cJSON_PrintUnformatted(json);
    assert_string_equal(text, "{\"quant_method\":\"awq\",\"zero_point\":false,\"group_size\":64,\"bits\":4,"
                              "\"version\":\"gemv\",\"modules_to_not_convert\":null}");
    qref_awq_config back;
    assert_int_equal(parse_text(text, &back, &err), QREF_OK);
    assert_int_equal(back.group_size, 64);
    assert_false(back.zero_point);
    assert_int_equal(back.layout, QREF_AWQ_LAYOUT_GEMV);
    qref_awq_config_free(&back);
    cJSON_free(text);
    cJSON_Delete(json);
}

/* AutoAWQ's quant_config.json alone (no quant_method) selects the AWQ codec by its version. */
static void detect_autoawq_quant_config(void **state)
{
    (void)state;
    const char *config = "{\"model_type\": \"llama\"}";
    const char *quant = "{\"zero_point\": true, \"q_group_size\": 128, \"w_bit\": 4, \"version\": \"GEMM\"}";
    cJSON *root = NULL;
    qref_error err = {0};
    assert_int_equal(qref_json_parse("config.json", config, strlen(config), QREF_JSON_MAX_DEPTH, &root, &err),
                     QREF_OK);
    qref_tensor_set empty = {0};
    qref_codec_input input = {.config_display = "config.json", .config = root, .config_text = config,
                              .config_length = strlen(config), .quantize_display = "quant_config.json",
                              .quantize_text = quant, .quantize_length = strlen(quant), .tensors = &empty};
    const qref_codec *codec = NULL;
    void *parsed = NULL;
    assert_int_equal(qref_codec_detect(&input, &codec, &parsed, &err), QREF_OK);
    assert_non_null(codec);
    assert_string_equal(codec->name, "awq");
    assert_int_equal(((const qref_awq_config *)parsed)->group_size, 128);
    codec->config_free(parsed);
    cJSON_Delete(root);
}

/* Every id the AWQ codec lists is in the catalog with a meaning. */
static void finding_catalog(void **state)
{
    (void)state;
    const char *ids[] = {"awq.tensor.missing", "awq.dtype", "awq.shape", "awq.bits", "awq.group_size",
                         "awq.layout.mismatch", "awq.scales.invalid", "awq.zero_point.not_symmetric",
                         "awq.qzeros.missing", "awq.scales.padding", "awq.qzeros.padding", "awq.not_converted",
                         "awq.not_converted.packed", "awq.unquantized", "dequant.fp16_overflow"};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
        const qref_finding_kind *kind = qref_finding_kind_find(ids[k]);
        if (kind == NULL)
            fail_msg("finding id %s is not in the catalog", ids[k]);
        assert_non_null(kind->meaning);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transformers_keys),
        cmocka_unit_test(autoawq_keys),
        cmocka_unit_test(defaults),
        cmocka_unit_test(versions_read_as_gemm),
        cmocka_unit_test(versions_rejected),
        cmocka_unit_test(values_rejected),
        cmocka_unit_test(other_bits_parse),
        cmocka_unit_test(resolve_both_files),
        cmocka_unit_test(writer_round_trip),
        cmocka_unit_test(detect_autoawq_quant_config),
        cmocka_unit_test(finding_catalog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
