/*
 * LLaMA config.json parsing: the fixtures' configs (expected values read from the files
 * themselves), transformers' LlamaConfig defaults for absent keys, and each rejected case
 * with its status and message.
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/qref_config.h"

static qref_status parse_text(const char *text, qref_llama_config *config, qref_error *err)
{
    return qref_llama_config_parse("config.json", text, strlen(text), config, err);
}

static void parse_fixture(const char *relative, qref_llama_config *config)
{
    size_t size;
    char *text = test_read_file(test_fixture_path(relative), &size);
    qref_error err = {0};
    qref_status status = qref_llama_config_parse(relative, text, size, config, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    free(text);
}

static void config_stories260k_fixture(void **state)
{
    (void)state;
    qref_llama_config c;
    parse_fixture("models/stories260k/config.json", &c);
    assert_int_equal(c.vocab_size, 512);
    assert_int_equal(c.hidden_size, 64);
    assert_int_equal(c.intermediate_size, 172);
    assert_int_equal(c.num_hidden_layers, 5);
    assert_int_equal(c.num_attention_heads, 8);
    assert_int_equal(c.num_key_value_heads, 4);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.max_position_embeddings, 512);
    assert_true(c.rms_norm_eps == 1e-5);
    assert_true(c.rope_theta == 10000.0);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.bos_token_id, 1);
    assert_int_equal(c.eos_token_id, 2);
    assert_string_equal(c.torch_dtype, "float32");
}

static void config_synth256_fixtures(void **state)
{
    (void)state;
    qref_llama_config c;
    parse_fixture("models/synth256/config.json", &c);
    assert_int_equal(c.hidden_size, 256);
    assert_int_equal(c.intermediate_size, 768);
    assert_int_equal(c.num_hidden_layers, 2);
    assert_int_equal(c.num_attention_heads, 4);
    assert_int_equal(c.num_key_value_heads, 2);
    assert_int_equal(c.head_dim, 64);
    assert_string_equal(c.torch_dtype, "float32");

    /* The GPTQ artifact's config also contains quantization_config, which this parser ignores. */
    parse_fixture("models/synth256-autogptq-w4g128/config.json", &c);
    assert_int_equal(c.hidden_size, 256);
    assert_int_equal(c.num_key_value_heads, 2);
    assert_string_equal(c.torch_dtype, "float16");
}

/* Defaults of transformers' LlamaConfig for every optional key. */
static void config_defaults_for_absent_keys(void **state)
{
    (void)state;
    qref_llama_config c;
    qref_error err = {0};
    const char *text = "{\"model_type\": \"llama\", \"vocab_size\": 32000, \"hidden_size\": 4096,"
                       " \"intermediate_size\": 11008, \"num_hidden_layers\": 32, \"num_attention_heads\": 32}";
    assert_int_equal(parse_text(text, &c, &err), QREF_OK);
    assert_int_equal(c.num_key_value_heads, 32);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_false(c.tie_word_embeddings);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.eos_token_id, -1);
    assert_string_equal(c.torch_dtype, "");
}

/* A LLaMA-3-8B config (8 KV heads, a list of EOS ids, rope_theta 500000, newer "dtype" key). */
static void config_llama3_shape(void **state)
{
    (void)state;
    qref_llama_config c;
    qref_error err = {0};
    const char *text = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 128256,"
                       " \"hidden_size\": 4096, \"intermediate_size\": 14336, \"num_hidden_layers\": 32,"
                       " \"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"max_position_embeddings\": 8192,"
                       " \"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, \"rope_scaling\": null,"
                       " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009], \"dtype\": \"bfloat16\","
                       " \"head_dim\": null}";
    assert_int_equal(parse_text(text, &c, &err), QREF_OK);
    assert_int_equal(c.num_key_value_heads, 8);
    assert_int_equal(c.head_dim, 128);
    assert_true(c.rope_theta == 500000.0);
    assert_int_equal(c.bos_token_id, 128000);
    assert_int_equal(c.eos_token_id, 128001);
    assert_string_equal(c.torch_dtype, "bfloat16");
}

/* An explicit head_dim need not equal hidden_size / heads: transformers derives it only when absent. */
static void config_explicit_head_dim(void **state)
{
    (void)state;
    qref_llama_config c;
    qref_error err = {0};
    const char *text = "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 100, \"intermediate_size\": 300,"
                       " \"num_hidden_layers\": 1, \"num_attention_heads\": 3, \"num_key_value_heads\": 1,"
                       " \"head_dim\": 64}";
    assert_int_equal(parse_text(text, &c, &err), QREF_OK);
    assert_int_equal(c.head_dim, 64);
}

/* transformers 5 form: rope_theta inside rope_parameters with the default rope type. */
static void config_rope_parameters(void **state)
{
    (void)state;
    qref_llama_config c;
    qref_error err = {0};
    const char *base = "{\"model_type\": \"llama\", \"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": 64,"
                       " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, %s}";
    char text[512];
    snprintf(text, sizeof text, base, "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 250000.0}");
    assert_int_equal(parse_text(text, &c, &err), QREF_OK);
    assert_true(c.rope_theta == 250000.0);

    snprintf(text, sizeof text, base,
             "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, \"factor\": 4.0}");
    test_assert_error(parse_text(text, &c, &err), &err, QREF_ERR_UNSUPPORTED,
                      "rope_parameters: rope type \"yarn\" is not supported");

    snprintf(text, sizeof text, base, "\"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_theta\": 20000.0}");
    test_assert_error(parse_text(text, &c, &err), &err, QREF_ERR_INVALID, "rope_theta 10000 differs");
}

/* Llama 3.1 RoPE scaling in both shapes: transformers 4's rope_scaling and 5's rope_parameters. */
static void config_llama3_rope_scaling(void **state)
{
    (void)state;
    qref_llama_config c;
    qref_error err = {0};
    const char *base = "{\"model_type\": \"llama\", \"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": 64,"
                       " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, %s}";
    const char *forms[] = {
        "\"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0,"
        " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}",
        "\"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
        " \"original_max_position_embeddings\": 8192, \"type\": \"llama3\"}, \"rope_theta\": 500000.0",
        "\"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0,"
        " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char text[768];
        snprintf(text, sizeof text, base, forms[i]);
        assert_int_equal(parse_text(text, &c, &err), QREF_OK);
        assert_int_equal(c.rope_scaling.type, QREF_ROPE_LLAMA3);
        assert_true(c.rope_scaling.factor == 8.0);
        assert_true(c.rope_scaling.low_freq_factor == 1.0);
        assert_true(c.rope_scaling.high_freq_factor == 4.0);
        assert_int_equal(c.rope_scaling.original_max_position_embeddings, 8192);
        assert_true(c.rope_theta == 500000.0);
    }
}

static void config_rejected_cases(void **state)
{
    (void)state;
    const char *base = "{\"model_type\": %s, \"vocab_size\": %s, \"hidden_size\": %s, \"intermediate_size\": 172,"
                       " \"num_hidden_layers\": 5, \"num_attention_heads\": %s %s}";
    const struct {
        const char *model_type, *vocab, *hidden, *heads, *extra;
        qref_status status;
        const char *phrase;
    } cases[] = {
        {"\"mistral\"", "512", "64", "8", "", QREF_ERR_UNSUPPORTED, "model_type \"mistral\" is not supported"},
        {"null", "512", "64", "8", "", QREF_ERR_INVALID, "key \"model_type\": found null, expected a string"},
        {"\"llama\"", "512", "64", "8",
         ", \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
         " \"rope_type\": \"llama3\"}",
         QREF_ERR_INVALID, "rope_scaling.original_max_position_embeddings is missing"},
        {"\"llama\"", "512", "64", "8",
         ", \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0,"
         " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}",
         QREF_ERR_INVALID, "low_freq_factor 4 must be below high_freq_factor 1"},
        {"\"llama\"", "512", "64", "8",
         ", \"rope_scaling\": {\"factor\": -8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
         " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}",
         QREF_ERR_INVALID, "rope_scaling.factor is -8, expected a positive number"},
        {"\"llama\"", "512", "64", "8",
         ", \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
         " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
         " \"rope_parameters\": {\"factor\": 4.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
         " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}",
         QREF_ERR_INVALID, "rope_scaling and rope_parameters describe different RoPE scaling"},
        {"\"llama\"", "512", "64", "8", ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}",
         QREF_ERR_UNSUPPORTED, "rope type \"linear\""},
        {"\"llama\"", "512", "64", "8", ", \"rope_scaling\": 2", QREF_ERR_INVALID,
         "rope_scaling is a number, expected an object or null"},
        {"\"llama\"", "512", "64", "8", ", \"hidden_act\": \"gelu\"", QREF_ERR_UNSUPPORTED,
         "hidden_act \"gelu\" is not supported"},
        {"\"llama\"", "512", "64", "8", ", \"attention_bias\": true", QREF_ERR_UNSUPPORTED,
         "attention_bias true is not supported"},
        {"\"llama\"", "512", "64", "8", ", \"mlp_bias\": true", QREF_ERR_UNSUPPORTED, "mlp_bias true"},
        {"\"llama\"", "512", "64", "8", ", \"num_key_value_heads\": 3", QREF_ERR_INVALID,
         "num_attention_heads 8 is not a multiple of num_key_value_heads 3"},
        {"\"llama\"", "512", "60", "8", "", QREF_ERR_INVALID,
         "hidden_size 60 is not a multiple of num_attention_heads 8, and head_dim is not given"},
        {"\"llama\"", "512", "0", "8", "", QREF_ERR_INVALID,
         "key \"hidden_size\": found 0 (a number), expected an integer in [1, 2147483647]"},
        {"\"llama\"", "512", "\"64\"", "8", "", QREF_ERR_INVALID, "key \"hidden_size\": found \"64\" (a string)"},
        {"\"llama\"", "512", "64.5", "8", "", QREF_ERR_INVALID, "found 64.5 (a number)"},
        {"\"llama\"", "4294967296", "64", "8", "", QREF_ERR_INVALID, "key \"vocab_size\": found 4294967296"},
        {"\"llama\"", "512", "64", "-8", "", QREF_ERR_INVALID, "key \"num_attention_heads\": found -8"},
        {"\"llama\"", "512", "64", "8", ", \"head_dim\": 0", QREF_ERR_INVALID, "key \"head_dim\": found 0"},
        {"\"llama\"", "512", "64", "8", ", \"rms_norm_eps\": -1e-5", QREF_ERR_INVALID,
         "key \"rms_norm_eps\": found -1e-05, expected a positive number"},
        {"\"llama\"", "512", "64", "8", ", \"tie_word_embeddings\": 1", QREF_ERR_INVALID,
         "key \"tie_word_embeddings\": found 1 (a number), expected true or false"},
        {"\"llama\"", "512", "64", "8", ", \"bos_token_id\": 512", QREF_ERR_INVALID,
         "key \"bos_token_id\": found 512 (a number), expected an integer in [0, 511]"},
        {"\"llama\"", "512", "64", "8", ", \"eos_token_id\": [2, \"x\"]", QREF_ERR_INVALID,
         "key \"eos_token_id\"[1]: found \"x\" (a string)"},
        {"\"llama\"", "512", "64", "8", ", \"torch_dtype\": \"a_very_long_dtype_name\"", QREF_ERR_INVALID,
         "is longer than 15 characters"},
        {"\"llama\"", "512", "64", "8", ", \"hidden_size\": 64", QREF_ERR_INVALID, "duplicate key \"hidden_size\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, base, cases[i].model_type, cases[i].vocab, cases[i].hidden, cases[i].heads,
                 cases[i].extra);
        qref_llama_config c;
        qref_error err = {0};
        test_assert_error(parse_text(text, &c, &err), &err, cases[i].status, cases[i].phrase);
        assert_int_equal(c.hidden_size, 0); /* a failed parse leaves the config zeroed */
    }
}

static void config_missing_required_keys(void **state)
{
    (void)state;
    static const char *const keys[] = {"model_type", "vocab_size", "hidden_size", "intermediate_size",
                                       "num_hidden_layers", "num_attention_heads"};
    for (size_t skip = 0; skip < sizeof keys / sizeof keys[0]; skip++) {
        char text[512] = "{";
        static const char *const values[] = {"\"llama\"", "512", "64", "172", "5", "8"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            if (k == skip)
                continue;
            snprintf(text + strlen(text), sizeof text - strlen(text), "%s\"%s\": %s", strlen(text) > 1 ? ", " : "",
                     keys[k], values[k]);
        }
        strcat(text, "}");
        char phrase[96];
        snprintf(phrase, sizeof phrase, "missing required key \"%s\"", keys[skip]);
        qref_llama_config c;
        qref_error err = {0};
        test_assert_error(parse_text(text, &c, &err), &err, QREF_ERR_INVALID, phrase);
    }

    qref_llama_config c;
    qref_error err = {0};
    test_assert_error(parse_text("[1]", &c, &err), &err, QREF_ERR_INVALID, "config is an array, expected a JSON object");
    test_assert_error(parse_text("{\"model_type\": \"llama\",}", &c, &err), &err, QREF_ERR_INVALID, "invalid JSON");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_stories260k_fixture),
        cmocka_unit_test(config_synth256_fixtures),
        cmocka_unit_test(config_defaults_for_absent_keys),
        cmocka_unit_test(config_llama3_shape),
        cmocka_unit_test(config_explicit_head_dim),
        cmocka_unit_test(config_rope_parameters),
        cmocka_unit_test(config_llama3_rope_scaling),
        cmocka_unit_test(config_rejected_cases),
        cmocka_unit_test(config_missing_required_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
