/*
 * The bitsandbytes format (formats/qref_bnb.h): code tables, the quant_state JSON, the config
 * and its skip list, and structure findings on hand-built linears.
 *
 * Anchors: the NF4 table is recomputed here from create_normal_map's recipe (normal quantiles
 * of float32 linspace probabilities, via erfc and Newton's method) and compared with the
 * published literals; the FP4 table is rebuilt from the bit formula of dDequantizeFP4 (sign,
 * two exponent bits, one mantissa bit) and from the constants of dDequantizeFP4Tree; the JSON
 * text follows Python's json.dumps and float repr (values such as repr of float32 0.1,
 * 0.10000000149011612, are Python's).
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "formats/qref_bnb.h"
#include "io/qref_json.h"
#include "quant/qref_nf4.h"

/* ---- code tables -------------------------------------------------------------------------- */

/* Phi^-1(p) by Newton's method on 0.5 * erfc(-x / sqrt 2), from x = 0 (monotone for p >= 0.5). */
static double normal_quantile(double p)
{
    double x = 0.0;
    for (int i = 0; i < 200; i++) {
        double cdf = 0.5 * erfc(-x / sqrt(2.0));
        double pdf = exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846);
        double step = (cdf - p) / pdf;
        x -= step;
        if (fabs(step) < 1e-16 * fmax(1.0, fabs(x)))
            break;
    }
    return x;
}

/* torch.linspace(start, end, steps) in float32, as ATen's CPU kernel computes it. */
static void linspace_f32(float start, float end, int steps, float *out)
{
    float step = (end - start) / (float)(steps - 1);
    for (int k = 0; k < steps; k++)
        out[k] = k < steps / 2 ? start + step * (float)k : end - step * (float)(steps - k - 1);
}

/*
 * create_normal_map(offset=0.9677083): 8 positive quantiles at linspace(offset, 0.5, 9)[:-1],
 * 7 negative ones at linspace(offset, 0.5, 8)[:-1], one 0, as float32, sorted, divided by the
 * maximum. get_4bit_type hard-codes the result; both must agree.
 */
static void test_nf4_table_from_recipe(void **state)
{
    (void)state;
    float positive_p[9], negative_p[8], values[16];
    linspace_f32(0.9677083f, 0.5f, 9, positive_p);
    linspace_f32(0.9677083f, 0.5f, 8, negative_p);
    int count = 0;
    for (int k = 0; k < 7; k++)
        values[count++] = (float)-normal_quantile((double)negative_p[k]);
    values[count++] = 0.0f;
    for (int k = 7; k >= 0; k--)
        values[count++] = (float)normal_quantile((double)positive_p[k]);
    float largest = values[15];

    float table[16];
    qref_bnb_quant_map(QREF_BNB_QUANT_NF4, table);
    for (int c = 0; c < 16; c++) {
        float expected = values[c] / largest;
        if (memcmp(&expected, &table[c], sizeof expected) != 0)
            print_error("NF4 code %d: recipe %.9g, table %.9g\n", c, (double)expected, (double)table[c]);
        assert_memory_equal(&expected, &table[c], sizeof expected);
        assert_true(qref_bnb_code_value(QREF_BNB_QUANT_NF4, (unsigned)c) == table[c]);
    }

    /* the QLoRA paper's appendix lists the same values */
    assert_float_equal(table[1], -0.6961928009986877, 1e-7);
    assert_float_equal(table[8], 0.07958029955625534, 1e-8);
    assert_float_equal(table[14], 0.7229568362236023, 1e-7);
}

/*
 * dDequantizeFP4: bits s e1 e0 m; e = 00 is subnormal (m ? 0.0625 : 0), otherwise the value is
 * (e1 ? 2 : 8) + (e0 ? 0 : 2) times (m ? 1.5 : 1). get_4bit_type divides by the largest, 12.
 * dDequantizeFP4Tree's constants (0.16666667, 0.33333333, 0.66666667, 5.208333333e-03, ...)
 * give the same f32 values, and its code 8 (0 * absmax * -1) is -0.
 */
static void test_fp4_table_from_bits(void **state)
{
    (void)state;
    float table[16];
    qref_bnb_quant_map(QREF_BNB_QUANT_FP4, table);
    for (unsigned c = 0; c < 16; c++) {
        float sign = (c & 8u) ? -1.0f : 1.0f, magnitude;
        if ((c & 6u) == 0)
            magnitude = (c & 1u) ? 0.0625f : 0.0f;
        else
            magnitude = (((c & 4u) ? 2.0f : 8.0f) + ((c & 2u) ? 0.0f : 2.0f)) * ((c & 1u) ? 1.5f : 1.0f);
        float expected = sign * magnitude / 12.0f;
        assert_true(table[c] == expected);
        float decoded = qref_bnb_code_value(QREF_BNB_QUANT_FP4, c);
        assert_true(decoded == expected);
    }
    /* quant_map stores +0 at code 8 (Python's -0 is the integer 0), the kernels decode -0 */
    assert_false(signbit(table[8]));
    assert_true(signbit(qref_bnb_code_value(QREF_BNB_QUANT_FP4, 8)));
    const float tree[8] = {0.00000000f, 5.208333333e-03f, 0.66666667f, 1.00000000f,
                           0.33333333f, 0.50000000f,      0.16666667f, 0.25000000f};
    for (int c = 0; c < 8; c++)
        assert_memory_equal(&tree[c], &table[c], sizeof tree[c]);
}

/*
 * create_dynamic_map(signed=True): 256 sorted values, 0 at index 127, 1 at 255, -0.99296875
 * (= -(0.1 + 63.5 * 0.9 / 64)) at index 0, 0.50078125 at index 219, symmetric about 127, and
 * the smallest magnitude 1e-6 * 0.55 next to zero.
 */
static void test_dynamic_map(void **state)
{
    (void)state;
    float map[256];
    qref_bnb_dynamic_map(map);
    for (int k = 1; k < 256; k++)
        assert_true(map[k - 1] < map[k]);
    assert_true(map[127] == 0.0f);
    assert_true(map[255] == 1.0f);
    assert_float_equal(map[0], -0.99296875, 1e-7);
    assert_float_equal(map[219], 0.50078125, 1e-7);
    assert_float_equal(map[128], 0.55e-6, 1e-12);
    for (int k = 0; k < 255; k++)
        assert_true(map[k] == -map[254 - k]);
}

/* The quantizers' decision trees against nearest rounding at the table midpoints. */
static void test_scalar_quantizers(void **state)
{
    (void)state;
    /* NF4 ties go to the lower code: x equal to the f32 midpoint literal of codes 7 and 8 */
    assert_int_equal(qref_nf4_quantize_value(0.03979014977812767f), 7);
    assert_int_equal(qref_nf4_quantize_value(nextafterf(0.03979014977812767f, 1.0f)), 8);
    assert_int_equal(qref_nf4_quantize_value(NAN), 0);
    assert_int_equal(qref_nf4_quantize_value(-1.0f), 0);
    assert_int_equal(qref_nf4_quantize_value(1.0f), 15);
    /* FP4: the sign comes from x < 0, so -0 and NaN get code 0 */
    assert_int_equal(qref_fp4_quantize_value(-0.0f), 0);
    assert_int_equal(qref_fp4_quantize_value(NAN), 0);
    assert_int_equal(qref_fp4_quantize_value(-0.001f), 8);
    assert_int_equal(qref_fp4_quantize_value(-1.0f), 11);
    assert_int_equal(qref_fp4_quantize_value(0.0859375f), 1);
    /* the dynamic map search: exact entries map to themselves */
    float map[256];
    qref_bnb_dynamic_map(map);
    for (int c = 0; c < 256; c++)
        assert_int_equal(qref_dynamic_quantize_value(map, map[c]), c);
}

/* ---- the quant_state JSON ----------------------------------------------------------------- */

/* The JSON bitsandbytes writes for a double-quantized bf16 weight (json.dumps of as_dict's fields). */
static const char state_text[] = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": "
                                 "[4096, 4096], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", "
                                 "\"nested_offset\": 0.10000000149011612}";

static void test_quant_state_parse_and_format(void **state)
{
    (void)state;
    qref_bnb_quant_state parsed;
    qref_error err = {0};
    assert_int_equal(qref_bnb_quant_state_parse("qs", (const uint8_t *)state_text, strlen(state_text), &parsed, &err),
                     QREF_OK);
    assert_int_equal(parsed.quant_type, QREF_BNB_QUANT_NF4);
    assert_int_equal(parsed.blocksize, 64);
    assert_int_equal(parsed.dtype, QREF_DTYPE_BF16);
    assert_int_equal(parsed.ndim, 2);
    assert_int_equal(parsed.shape[1], 4096);
    assert_true(parsed.nested);
    assert_true(parsed.nested_offset == 0.1f);

    /* formatting reproduces the text byte for byte */
    char *text = NULL;
    size_t length = 0;
    assert_int_equal(qref_bnb_quant_state_format(&parsed, &text, &length, &err), QREF_OK);
    assert_string_equal(text, state_text);
    assert_int_equal(length, strlen(state_text));
    free(text);

    /* Python repr of other f32 offsets: float32(1e-5), 3.0, float32(1e20), and without nesting */
    const struct {
        float offset;
        const char *repr;
    } reprs[] = {{1e-5f, "9.999999747378752e-06"}, {3.0f, "3.0"}, {1e20f, "1.0000000200408773e+20"},
                 {0.015625f, "0.015625"}, {-2.5e-4f, "-0.0002500000118743628"}};
    for (size_t k = 0; k < sizeof reprs / sizeof reprs[0]; k++) {
        parsed.nested_offset = reprs[k].offset;
        assert_int_equal(qref_bnb_quant_state_format(&parsed, &text, &length, &err), QREF_OK);
        char expected[64];
        snprintf(expected, sizeof expected, "\"nested_offset\": %s}", reprs[k].repr);
        assert_non_null(strstr(text, expected));
        free(text);
    }
    parsed.nested = false;
    parsed.quant_type = QREF_BNB_QUANT_FP4;
    parsed.dtype = QREF_DTYPE_F16;
    assert_int_equal(qref_bnb_quant_state_format(&parsed, &text, &length, &err), QREF_OK);
    assert_string_equal(text, "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [4096, "
                              "4096]}");
    free(text);
}

static void test_quant_state_rejects(void **state)
{
    (void)state;
    const struct {
        const char *text;
        const char *phrase;
    } cases[] = {
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [2, 2], \"extra\": 1}",
         "unknown key \"extra\""},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\"}", "shape: found nothing"},
        {"{\"quant_type\": \"int4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [2, 2]}",
         "quant_type: found \"int4\""},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 48, \"dtype\": \"float16\", \"shape\": [2, 2]}",
         "blocksize: found 48, expected a power of two"},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float64\", \"shape\": [2, 2]}",
         "dtype: found \"float64\""},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [2, 0]}", "shape[1]"},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [2, 2], "
         "\"nested_blocksize\": 256}",
         "1 of the keys nested_blocksize"},
        {"{\"quant_type\": \"nf4\", \"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [2]}",
         "duplicate key"},
        {"{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [2, 2]} x", "qs"},
        {"[1, 2]", "expected a JSON object"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        qref_bnb_quant_state parsed;
        qref_error err = {0};
        qref_status status = qref_bnb_quant_state_parse("qs", (const uint8_t *)cases[k].text, strlen(cases[k].text),
                                                        &parsed, &err);
        test_assert_error(status, &err, QREF_ERR_INVALID, cases[k].phrase);
    }
}

/* ---- config ------------------------------------------------------------------------------- */

static void parse_config(const char *text, qref_bnb_config *config, qref_status expected, const char *phrase)
{
    cJSON *root = NULL;
    qref_error err = {0};
    assert_int_equal(qref_json_parse("config", text, strlen(text), 16, &root, &err), QREF_OK);
    qref_status status = qref_bnb_config_parse("quantization_config", root, config, &err);
    if (expected == QREF_OK)
        assert_int_equal(status, QREF_OK);
    else
        test_assert_error(status, &err, expected, phrase);
    cJSON_Delete(root);
}

static void test_config_and_skip_modules(void **state)
{
    (void)state;
    qref_bnb_config config;
    /* a QLoRA config as BitsAndBytesConfig.to_dict writes it */
    parse_config("{\"_load_in_4bit\": true, \"_load_in_8bit\": false, \"bnb_4bit_compute_dtype\": \"bfloat16\", "
                 "\"bnb_4bit_quant_storage\": \"uint8\", \"bnb_4bit_quant_type\": \"nf4\", "
                 "\"bnb_4bit_use_double_quant\": true, \"llm_int8_enable_fp32_cpu_offload\": false, "
                 "\"llm_int8_has_fp16_weight\": false, \"llm_int8_skip_modules\": [\"lm_head\", \"mlp.down_proj\", "
                 "\"model.layers.1.self_attn\"], \"llm_int8_threshold\": 6.0, \"load_in_4bit\": true, "
                 "\"load_in_8bit\": false, \"quant_method\": \"bitsandbytes\"}",
                 &config, QREF_OK, NULL);
    assert_false(config.load_in_8bit);
    assert_int_equal(config.quant_type, QREF_BNB_QUANT_NF4);
    assert_true(config.double_quant);
    assert_int_equal(config.compute_dtype, QREF_DTYPE_BF16);
    assert_int_equal(config.skip_count, 3);

    /* transformers' rule: the last name, the whole name, or an entry followed by "." inside the name */
    assert_false(qref_bnb_config_skips(&config, "model.layers.0.mlp.down_proj")); /* "mlp.down_proj." is not inside */
    assert_true(qref_bnb_config_skips(&config, "model.layers.1.self_attn.q_proj"));
    assert_false(qref_bnb_config_skips(&config, "model.layers.0.self_attn.q_proj"));
    assert_false(qref_bnb_config_skips(&config, "model.layers.1.mlp.up_proj"));
    qref_bnb_config_free(&config);

    parse_config("{\"llm_int8_skip_modules\": [\"down_proj\", \"mlp.\"], \"load_in_8bit\": true}", &config, QREF_OK,
                 NULL);
    assert_true(config.load_in_8bit);
    assert_int_equal(config.quant_type, QREF_BNB_QUANT_FP4); /* BitsAndBytesConfig's default */
    assert_true(qref_bnb_config_skips(&config, "model.layers.0.mlp.down_proj"));
    qref_bnb_config_free(&config);

    parse_config("{\"load_in_4bit\": true, \"load_in_8bit\": true}", &config, QREF_ERR_INVALID,
                 "load_in_4bit and load_in_8bit are both true");
    parse_config("{\"load_in_4bit\": true, \"_load_in_4bit\": false}", &config, QREF_ERR_INVALID,
                 "load_in_4bit is true but _load_in_4bit is false");
    parse_config("{\"bnb_4bit_quant_type\": \"int4\"}", &config, QREF_ERR_INVALID, "bnb_4bit_quant_type: found");
    parse_config("{\"bnb_4bit_compute_dtype\": \"float8\"}", &config, QREF_ERR_INVALID, "bnb_4bit_compute_dtype");
    parse_config("{\"llm_int8_skip_modules\": \"lm_head\"}", &config, QREF_ERR_INVALID, "expected a list");
}

/* ---- structure findings on hand-built linears --------------------------------------------- */

/* A 4 x 64 NF4 linear without double quantization, built with the reference quantizer. */
typedef struct small_linear {
    qref_bnb_packed packed;
    qref_tensor_set set;
    qref_bnb_linear linear;
} small_linear;

static void small_linear_build(small_linear *out, qref_dtype dtype)
{
    float weight[256];
    test_rng rng = {.state = 42};
    for (int k = 0; k < 256; k++)
        weight[k] = test_rng_float(&rng);
    qref_nf4_config config = {.type = QREF_BNB_QUANT_NF4, .blocksize = 64, .double_quant = false};
    qref_nf4_result result;
    qref_error err = {0};
    assert_int_equal(qref_nf4_quantize("w", weight, 256, &config, &result, &err), QREF_OK);
    qref_bnb_4bit_data data = {.state = {.quant_type = QREF_BNB_QUANT_NF4, .blocksize = 64, .dtype = dtype,
                                         .ndim = 2, .shape = {4, 64}},
                               .packed = result.packed, .absmax = result.absmax};
    assert_int_equal(qref_bnb_pack_4bit("m.layers.0.q", &data, &out->packed, &err), QREF_OK);
    qref_nf4_result_free(&result);
    out->set.count = out->packed.count;
    out->set.items = calloc(out->set.count, sizeof(qref_tensor));
    assert_non_null(out->set.items);
    for (size_t k = 0; k < out->set.count; k++)
        out->set.items[k] = out->packed.tensors[k];
    assert_int_equal(qref_tensor_set_sort(&out->set), -1);
    qref_bnb_linear_find(&out->set, "m.layers.0.q", &out->linear);
}

static void small_linear_free(small_linear *linear)
{
    free(linear->set.items);
    qref_bnb_packed_free(&linear->packed);
}

/* Runs the check and asserts exactly one finding, with this id. */
static void expect_one_finding(const qref_bnb_config *config, const qref_bnb_linear *linear, const char *id)
{
    qref_findings findings = {0};
    qref_bnb_check_linear(config, linear, 4, 64, &findings);
    for (size_t k = 0; k < findings.count; k++)
        print_message("finding %s: %s\n", findings.items[k].id, findings.items[k].message);
    assert_int_equal(findings.count, 1);
    assert_string_equal(findings.items[0].id, id);
    qref_findings_free(&findings);
}

static void test_check_findings(void **state)
{
    (void)state;
    qref_bnb_config config = {.quant_type = QREF_BNB_QUANT_NF4, .quant_storage = QREF_DTYPE_U8};
    small_linear small;
    small_linear_build(&small, QREF_DTYPE_BF16);

    /* valid: no finding; bf16 output is the f32 product rounded once to bf16 */
    qref_findings findings = {0};
    qref_bnb_check_linear(&config, &small.linear, 4, 64, &findings);
    assert_int_equal(findings.count, 0);
    float out[256];
    qref_error err = {0};
    assert_int_equal(qref_bnb_dequantize(&small.linear, 4, 64, out, &err), QREF_OK);
    for (int e = 0; e < 256; e++) {
        uint8_t byte = small.linear.weight->data[e / 2];
        float absmax = qref_load_f32(small.linear.absmax->data + 4 * (e / 64));
        float product = qref_bnb_code_value(QREF_BNB_QUANT_NF4, (e & 1) ? byte & 15u : byte >> 4) * absmax;
        assert_true(out[e] == qref_bf16_to_f32(qref_f32_to_bf16(product)));
    }

    /* the config disagrees: quant_type, double quant (a warning each) */
    config.quant_type = QREF_BNB_QUANT_FP4;
    expect_one_finding(&config, &small.linear, "bnb.config.mismatch");
    config.quant_type = QREF_BNB_QUANT_NF4;
    config.load_in_8bit = true;
    expect_one_finding(&config, &small.linear, "bnb.config.mode");
    config.load_in_8bit = false;

    /* a skip list naming the module */
    char skip[1][QREF_BNB_NAME_MAX] = {"q"};
    config.skip_modules = skip;
    config.skip_count = 1;
    qref_bnb_check_linear(&config, &small.linear, 4, 64, &findings);
    assert_true(findings.count >= 1);
    assert_string_equal(findings.items[findings.count - 1].id, "bnb.skip_modules.quantized");
    qref_findings_free(&findings);
    config.skip_count = 0;

    /* a shape the linear does not have */
    qref_bnb_check_linear(&config, &small.linear, 8, 32, &findings);
    assert_int_equal(findings.count, 1);
    assert_string_equal(findings.items[0].id, "bnb.quant_state.mismatch");
    qref_findings_free(&findings);

    /* a corrupted quant_map entry and a negative absmax (the buffers are this test's own) */
    qref_tensor *map = (qref_tensor *)small.linear.quant_map;
    qref_store_f32((uint8_t *)map->data + 4 * 3, 0.5f);
    expect_one_finding(&config, &small.linear, "bnb.quant_map.mismatch");
    qref_store_f32((uint8_t *)map->data + 4 * 3, -0.39491748809814453f);
    qref_store_f32((uint8_t *)small.linear.absmax->data + 4, -1.0f);
    expect_one_finding(&config, &small.linear, "bnb.absmax.invalid");
    small_linear_free(&small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nf4_table_from_recipe),
        cmocka_unit_test(test_fp4_table_from_bits),
        cmocka_unit_test(test_dynamic_map),
        cmocka_unit_test(test_scalar_quantizers),
        cmocka_unit_test(test_quant_state_parse_and_format),
        cmocka_unit_test(test_quant_state_rejects),
        cmocka_unit_test(test_config_and_skip_modules),
        cmocka_unit_test(test_check_findings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
