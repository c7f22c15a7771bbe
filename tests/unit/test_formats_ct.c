/*
 * Tests of the compressed-tensors tensors (formats/qref_ct.h).
 *
 * - Packed words worked by hand, and the library's own pack_to_int32 vectors.
 * - W8A8 rows dequantized by hand in f16 and bf16.
 * - Round trips of every format, bit width, strategy and symmetry on seeded random matrices.
 * - The GPTQ repository's RTN (quant/qref_rtn.h) as an independent check of the quantizer.
 * - One malformed linear per finding of qref_ct_check_linear.
 *
 * The config schema is tested in test_formats_ct_config.c.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "formats/qref_ct.h"
#include "quant/qref_rtn.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* Parses a quantization_config text that must have no schema problem. */
static void parse_config(const char *text, qref_ct_config *config)
{
    cJSON *json = cJSON_Parse(text);
    assert_non_null(json);
    qref_error err = {0};
    qref_status status = qref_ct_config_parse("test", json, config, &err);
    cJSON_Delete(json);
    if (status != QREF_OK)
        fail_msg("%s", err.message);
    for (size_t k = 0; k < config->problem_count; k++)
        print_error("unexpected problem: %s\n", config->problems[k].message);
    assert_int_equal(config->problem_count, 0);
}

/* A one-group config for weights args in format. */
static void config_for(qref_ct_config *config, const char *format, int bits, const char *strategy, long group_size,
                       bool symmetric, const char *input_activations)
{
    char group[64] = "null";
    if (group_size != 0)
        snprintf(group, sizeof group, "%ld", group_size);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"quant_method\": \"compressed-tensors\", \"format\": \"%s\", \"quantization_status\": \"compressed\","
             " \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": %d, \"type\":"
             " \"int\", \"symmetric\": %s, \"strategy\": \"%s\", \"group_size\": %s}, \"input_activations\": %s}}}",
             format, bits, symmetric ? "true" : "false", strategy, group, input_activations);
    parse_config(text, config);
}

/* Runs the structure check and asserts exactly one finding, with this id. */
static void assert_single_finding(const qref_ct_linear *linear, const qref_ct_scheme *scheme, const char *id,
                                  const char *phrase)
{
    qref_findings findings = {0};
    qref_ct_check_linear(linear, scheme, &findings);
    for (size_t k = 0; k < findings.count; k++)
        print_message("finding %s: %s\n", findings.items[k].id, findings.items[k].message);
    assert_int_equal(findings.count, 1);
    assert_string_equal(findings.items[0].id, id);
    assert_non_null(strstr(findings.items[0].message, phrase));
    assert_int_equal(qref_findings_count(&findings, QREF_SEVERITY_ERROR), 1);
    qref_findings_free(&findings);
}

/* ---- packing by hand ---------------------------------------------------------------------- */

/*
 * Eight 4-bit codes packed into one int32 (pack_to_int32): each code gets +8, then code j
 * goes to bits [4j, 4j + 4):
 *
 *   code     1   -2    7   -8    0    3   -5    6
 *   +8       9    6   15    0    8   11    3   14
 *   nibble   0    1    2    3    4    5    6    7
 *
 * Nibbles 7..0 read as hex from the top: E 3 B 8 0 F 6 9 = 0xE3B80F69, which as int32 is
 * 0xE3B80F69 - 2^32 = -474476695.
 */
static void test_pack_4bit_by_hand(void **state)
{
    (void)state;
    const int8_t codes[8] = {1, -2, 7, -8, 0, 3, -5, 6};
    uint32_t word = 0;
    qref_ct_pack_rows(codes, 1, 8, 4, &word);
    assert_int_equal(word, 0xE3B80F69u);
    assert_int_equal((int32_t)word, -474476695);

    int8_t back[8];
    qref_ct_unpack_rows(&word, 1, 8, 4, back);
    assert_memory_equal(back, codes, sizeof codes);
}

/*
 * A row of 3 codes leaves nibbles 3..7 of its word as zero padding: 1, 2, 3 -> 9, 10, 11 ->
 * 0x00000BA9. 8-bit codes take bytes: 1, -2, 127, -128 -> 129, 126, 255, 0 -> 0x00FF7E81.
 */
static void test_pack_padding_and_8bit(void **state)
{
    (void)state;
    const int8_t three[3] = {1, 2, 3};
    uint32_t word = 0xFFFFFFFFu;
    qref_ct_pack_rows(three, 1, 3, 4, &word);
    assert_int_equal(word, 0x00000BA9u);

    const int8_t bytes[4] = {1, -2, 127, -128};
    qref_ct_pack_rows(bytes, 1, 4, 8, &word);
    assert_int_equal(word, 0x00FF7E81u);
    int8_t back[4];
    qref_ct_unpack_rows(&word, 1, 4, 8, back);
    assert_memory_equal(back, bytes, sizeof bytes);
}

/*
 * The expected words of compressed-tensors' own test (vllm-project/compressed-tensors
 * tests/test_compressors/quantized_compressors/test_pack_quant.py, test_pack_to_int32), an
 * anchor independent of this code: 4-bit [1, 2, 3, 4] -> 52137 (0x0000CBA9), [-8 .. -1] ->
 * 1985229328 (0x76543210), 8-bit [1, 2, 3, 4] -> -2071756159 (0x84838281), [-128, -127,
 * -126, -125] -> 50462976 (0x03020100), and rows of two words.
 */
static void test_pack_library_vectors(void **state)
{
    (void)state;
    static const struct {
        int bits;
        size_t rows, cols;
        int8_t values[32];
        int32_t words[4];
    } cases[] = {
        {4, 1, 1, {1}, {9}},
        {8, 1, 1, {1}, {129}},
        {4, 1, 4, {1, 2, 3, 4}, {52137}},
        {4, 1, 8, {-8, -7, -6, -5, -4, -3, -2, -1}, {1985229328}},
        {8, 1, 4, {1, 2, 3, 4}, {-2071756159}},
        {8, 1, 4, {-128, -127, -126, -125}, {50462976}},
        {4, 1, 12, {-8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4}, {1985229328, 52137}},
        {4, 2, 16, {-8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, -8, -8, -8, -8,
                    1, 2, 3, 4, -8, -8, -8, -8, -8, -7, -6, -5, -4, -3, -2, -1},
         {1985229328, 52137, 52137, 1985229328}},
        {8, 2, 4, {1, 2, 3, 4, -128, -127, -126, -125}, {-2071756159, 50462976}},
        {8, 2, 8, {1, 2, 3, 4, -128, -127, -126, -125, -128, -127, -126, -125, 1, 2, 3, 4},
         {-2071756159, 50462976, 50462976, -2071756159}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint32_t words[4] = {0};
        size_t per_row = (cases[c].cols + (size_t)qref_ct_pack_factor(cases[c].bits) - 1) /
                         (size_t)qref_ct_pack_factor(cases[c].bits);
        qref_ct_pack_rows(cases[c].values, cases[c].rows, cases[c].cols, cases[c].bits, words);
        for (size_t k = 0; k < cases[c].rows * per_row; k++)
            assert_int_equal((int32_t)words[k], cases[c].words[k]);
        int8_t back[32];
        qref_ct_unpack_rows(words, cases[c].rows, cases[c].cols, cases[c].bits, back);
        assert_memory_equal(back, cases[c].values, cases[c].rows * cases[c].cols);
    }
}

/*
 * Zero points are packed along out (pack_to_int32 with packed_dim 0): with 10 output rows
 * and 8 codes per word, column c's rows 0..7 fill word [0][c] and rows 8, 9 fill the low
 * nibbles of word [1][c]:
 *   column 0: -8 -7 -6 -5 -4 -3 -2 -1 | 0 7  -> +8: 0..7 -> 0x76543210 | 8, 15 -> 0x000000F8
 *   column 1:  1  2  3  4  5  6  7 -8 | -1 -2 -> +8: 9 A B C D E F 0 -> 0x0FEDCBA9 | 7, 6 -> 0x67
 */
static void test_pack_zero_points_by_hand(void **state)
{
    (void)state;
    const int8_t zeros[10][2] = {{-8, 1}, {-7, 2}, {-6, 3}, {-5, 4}, {-4, 5}, {-3, 6}, {-2, 7}, {-1, -8},
                                 {0, -1}, {7, -2}};
    uint32_t words[2][2];
    qref_ct_pack_columns(&zeros[0][0], 10, 2, 4, &words[0][0]);
    assert_int_equal(words[0][0], 0x76543210u);
    assert_int_equal(words[0][1], 0x0FEDCBA9u);
    assert_int_equal(words[1][0], 0x000000F8u);
    assert_int_equal(words[1][1], 0x00000067u);
    int8_t back[10][2];
    qref_ct_unpack_columns(&words[0][0], 10, 2, 4, &back[0][0]);
    assert_memory_equal(back, zeros, sizeof zeros);
}

/* ---- dequantization by hand --------------------------------------------------------------- */

/*
 * One W8A8 row (int-quantized, channel strategy, symmetric) with the f16 scale nearest 0.1,
 * 0x2E66 = 1638.4 rounded to 1638 * 2^-14 = 0.0999755859375. _dequantize converts the codes to
 * f16 and multiplies in f16, so each product is rounded once to f16:
 *   -128 * s = -12.796875 = -1638 * 2^-7, exact in f16 (ulp 2^-7 in [8, 16))
 *     -1 * s = -0.0999755859375, 0 -> 0, 1 * s = 0.0999755859375
 *    127 * s = 12.6968994140625 = 1625.203125 * 2^-7 -> 1625 * 2^-7 = 12.6953125
 * With the bf16 scale nearest 0.1, 0x3DCD = 0.10009765625, bf16 has ulp 2^-4 in [8, 16):
 *   -128 * s = -12.8125 = -205 * 2^-4 exact; 127 * s = 12.71240234375 = 203.398 * 2^-4 -> 12.6875
 */
static void test_w8a8_row_by_hand(void **state)
{
    (void)state;
    qref_ct_config config;
    config_for(&config, "int-quantized", 8, "channel", 0, true,
               "{\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, \"strategy\": \"token\", \"dynamic\": true}");
    const int8_t codes[5] = {-128, -1, 0, 1, 127};
    uint8_t scale_f16[2], scale_bf16[2];
    qref_store_u16(scale_f16, 0x2E66);
    qref_store_u16(scale_bf16, 0x3DCD);
    const float expected_f16[5] = {-12.796875f, -0.0999755859375f, 0.0f, 0.0999755859375f, 12.6953125f};
    const float expected_bf16[5] = {-12.8125f, -0.10009765625f, 0.0f, 0.10009765625f, 12.6875f};

    for (int pass = 0; pass < 2; pass++) {
        qref_tensor weight = test_tensor_view("l.weight", QREF_DTYPE_I8, 2, 1, 5, codes);
        qref_tensor scale = test_tensor_view("l.weight_scale", pass == 0 ? QREF_DTYPE_F16 : QREF_DTYPE_BF16, 2, 1, 1,
                                      pass == 0 ? scale_f16 : scale_bf16);
        qref_ct_linear linear = {.prefix = "l", .weight = &weight, .weight_scale = &scale, .out_features = 1,
                                 .in_features = 5};
        qref_ct_codes unpacked;
        qref_error err = {0};
        assert_int_equal(qref_ct_unpack(&linear, &config.schemes[0], &unpacked, &err), QREF_OK);
        float out[5];
        qref_ct_codes_dequantize(&unpacked, out);
        const float *expected = pass == 0 ? expected_f16 : expected_bf16;
        for (int i = 0; i < 5; i++)
            assert_true(out[i] == expected[i]);
        qref_ct_codes_free(&unpacked);
    }
    qref_ct_config_free(&config);
}

/*
 * pack-quantized, 4 bits, group 4, asymmetric, f32 scales, 2 x 8 weights:
 *   row 0 codes -8 -3  0  7 |  1  2 -1  5   zp -2 | 3    scale 0.5 | 0.25
 *   row 1 codes  7  6  5  4 | -8 -7 -6 -5   zp  0 | -8   scale 2.0 | 0.125
 * Words (+8, nibble j = code j): row 0 -> 0 5 8 F 9 A 7 D -> 0xD7A9F850, row 1 -> F E D C 0 1 2 3
 * -> 0x3210CDEF. Zero points packed along out: group 0 rows (-2, 0) -> 6, 8 -> 0x86, group 1
 * (3, -8) -> 11, 0 -> 0x0B. W = (q - zp) * scale:
 *   row 0: (-8+2)*0.5 = -3, -0.5, 1, 4.5 | (1-3)*0.25 = -0.5, -0.25, -1, 0.5
 *   row 1: 14, 12, 10, 8 | (-8+8)*0.125 = 0, 0.125, 0.25, 0.375
 */
static void test_pack_asym_group_by_hand(void **state)
{
    (void)state;
    qref_ct_config config;
    config_for(&config, "pack-quantized", 4, "group", 4, false, "null");
    uint8_t packed[16], zero_points[8], scales[16], shape[16];
    const uint32_t words[4] = {0xD7A9F850u, 0x3210CDEFu, 0x86u, 0x0Bu};
    const float scale_values[4] = {0.5f, 0.25f, 2.0f, 0.125f};
    for (int k = 0; k < 2; k++) {
        qref_store_u32(packed + 4 * k, words[k]);
        qref_store_u32(zero_points + 4 * k, words[2 + k]);
    }
    for (int k = 0; k < 4; k++)
        qref_store_f32(scales + 4 * k, scale_values[k]);
    qref_store_u64(shape, 2);
    qref_store_u64(shape + 8, 8);
    qref_tensor t_packed = test_tensor_view("l.weight_packed", QREF_DTYPE_I32, 2, 2, 1, packed);
    qref_tensor t_zero = test_tensor_view("l.weight_zero_point", QREF_DTYPE_I32, 2, 1, 2, zero_points);
    qref_tensor t_scale = test_tensor_view("l.weight_scale", QREF_DTYPE_F32, 2, 2, 2, scales);
    qref_tensor t_shape = test_tensor_view("l.weight_shape", QREF_DTYPE_I64, 1, 2, 0, shape);
    qref_ct_linear linear = {.prefix = "l", .weight_packed = &t_packed, .weight_zero_point = &t_zero,
                             .weight_scale = &t_scale, .weight_shape = &t_shape, .out_features = 2, .in_features = 8};
    qref_ct_codes codes;
    qref_error err = {0};
    assert_int_equal(qref_ct_unpack(&linear, &config.schemes[0], &codes, &err), QREF_OK);
    const int8_t expected_codes[16] = {-8, -3, 0, 7, 1, 2, -1, 5, 7, 6, 5, 4, -8, -7, -6, -5};
    const int8_t expected_zeros[4] = {-2, 3, 0, -8};
    assert_memory_equal(codes.codes, expected_codes, 16);
    assert_memory_equal(codes.zeros, expected_zeros, 4);
    float weight[16];
    qref_ct_codes_dequantize(&codes, weight);
    const float expected[16] = {-3, -0.5f, 1, 4.5f, -0.5f, -0.25f, -1, 0.5f, 14, 12, 10, 8, 0, 0.125f, 0.25f, 0.375f};
    for (int k = 0; k < 16; k++)
        assert_true(weight[k] == expected[k]);

    /* and the writer produces the same words from these codes */
    qref_ct_packed out;
    assert_int_equal(qref_ct_pack("l", &codes, QREF_CT_FORMAT_PACK_QUANTIZED, &out, &err), QREF_OK);
    assert_int_equal(out.count, 4);
    assert_string_equal(out.tensors[0].name, "l.weight_packed");
    assert_memory_equal(out.tensors[0].data, packed, 8);
    assert_string_equal(out.tensors[3].name, "l.weight_zero_point");
    assert_memory_equal(out.tensors[3].data, zero_points, 8);
    qref_ct_packed_free(&out);
    qref_ct_codes_free(&codes);
    qref_ct_config_free(&config);
}

/* ---- the quantizer ------------------------------------------------------------------------ */

/*
 * The symmetric scale in bf16 arithmetic: a row with absmax 1 gets 1 / 7.5 = 0.13333,
 * which bf16 rounds to 137 * 2^-10 = 0.1337890625 (0.13333 * 2^10 = 136.53), where f32 keeps
 * 0.13333334f. Codes round(x / s) in bf16: 1 / 0.1337890625 = 7.474 -> bf16 7.46875 -> 7;
 * -0.5 / s = -3.737 -> -3.734375 -> -4; 0.25 / s = 1.8686 -> 1.8671875 -> 2.
 * Asymmetric, the row [0.75, -0.25]: lo = -0.25, hi = 0.75, scale = 1 / 15 = 0.0666667 ->
 * bf16 137 * 2^-11 = 0.06689453125, zp = round(-8 - (-0.25 / s)) = round(-8 + 3.737) with
 * -0.25 / s = -3.7372 -> bf16 -3.734375 (ulp 2^-6), -8 + 3.734375 = -4.265625 = -136.5 * 2^-5,
 * a tie that bf16 rounds to the even -136 * 2^-5 = -4.25, and round(-4.25) = -4.
 */
static void test_quantize_bf16_arithmetic(void **state)
{
    (void)state;
    const float row[4] = {1.0f, -0.5f, 0.25f, 0.0f};
    qref_ct_args args = {.num_bits = 4, .symmetric = true, .strategy = QREF_CT_STRATEGY_CHANNEL};
    qref_ct_codes codes;
    qref_error err = {0};
    assert_int_equal(qref_ct_quantize("row", row, 1, 4, &args, QREF_DTYPE_BF16, &codes, &err), QREF_OK);
    assert_true(codes.scales[0] == 0.1337890625f);
    const int8_t expected[4] = {7, -4, 2, 0};
    assert_memory_equal(codes.codes, expected, 4);
    qref_ct_codes_free(&codes);

    assert_int_equal(qref_ct_quantize("row", row, 1, 4, &args, QREF_DTYPE_F32, &codes, &err), QREF_OK);
    assert_true(codes.scales[0] == 1.0f / 7.5f);
    qref_ct_codes_free(&codes);

    const float asym_row[2] = {0.75f, -0.25f};
    args.symmetric = false;
    assert_int_equal(qref_ct_quantize("row", asym_row, 1, 2, &args, QREF_DTYPE_BF16, &codes, &err), QREF_OK);
    assert_true(codes.scales[0] == 0.06689453125f);
    assert_int_equal(codes.zeros[0], -4);
    qref_ct_codes_free(&codes);
}

/* An all-zero slice keeps the float32 eps scale (calculate_qparams' clamp) and codes 0. */
static void test_quantize_zero_row(void **state)
{
    (void)state;
    const float row[4] = {0};
    qref_ct_args args = {.num_bits = 8, .symmetric = false, .strategy = QREF_CT_STRATEGY_TENSOR};
    qref_ct_codes codes;
    qref_error err = {0};
    assert_int_equal(qref_ct_quantize("row", row, 1, 4, &args, QREF_DTYPE_F32, &codes, &err), QREF_OK);
    assert_true(codes.scales[0] == 0x1p-23f);
    assert_int_equal(codes.zeros[0], -128);
    for (int i = 0; i < 4; i++)
        assert_int_equal(codes.codes[i], -128);
    qref_ct_codes_free(&codes);

    const float bad[2] = {1.0f, NAN};
    test_assert_error(qref_ct_quantize("bad", bad, 1, 2, &args, QREF_DTYPE_F32, &codes, &err), &err,
                      QREF_ERR_INVALID, "bad: weight nan at [0][1], expected a finite value");
    qref_ct_codes_free(&codes);
}

/*
 * The symmetric quantizer against the GPTQ repository's RTN (an independent implementation):
 * GPTQ's symmetric scale (xmax - xmin) / 15 with xmin = -xmax is 2 * absmax / 15, the same f32
 * quotient as absmax / 7.5, and its codes are these + 8, for every row that has a negative
 * value (GPTQ keeps xmin = 0 for a row without one).
 */
static void test_quantize_matches_gptq_rtn_sym(void **state)
{
    (void)state;
    enum { OUT = 24, IN = 64 };
    float *weight = malloc(OUT * IN * sizeof *weight);
    test_rng rng = {0x63742d72746eull};
    for (int k = 0; k < OUT * IN; k++)
        weight[k] = test_rng_float(&rng) * (1.0f + (float)(k / IN));
    for (int i = 0; i < IN; i++)
        weight[5 * IN + i] = fabsf(weight[5 * IN + i]); /* a row without negatives */

    qref_ct_args args = {.num_bits = 4, .symmetric = true, .strategy = QREF_CT_STRATEGY_CHANNEL};
    qref_ct_codes codes;
    qref_error err = {0};
    assert_int_equal(qref_ct_quantize("w", weight, OUT, IN, &args, QREF_DTYPE_F32, &codes, &err), QREF_OK);
    qref_rtn_config rtn_config = {.bits = 4, .group_size = -1, .sym = true};
    qref_rtn_result rtn;
    assert_int_equal(qref_rtn_quantize("w", weight, OUT, IN, &rtn_config, &rtn, &err), QREF_OK);
    size_t compared = 0;
    for (int o = 0; o < OUT; o++) {
        if (o == 5) {
            assert_true(rtn.scales[o] != codes.scales[o]); /* hi / 15 against hi / 7.5 */
            continue;
        }
        assert_true(rtn.scales[o] == codes.scales[o]);
        for (int i = 0; i < IN; i++, compared++)
            assert_int_equal((int)rtn.codes[o * IN + i], codes.codes[o * IN + i] + 8);
    }
    assert_int_equal(compared, (OUT - 1) * IN);
    qref_rtn_result_free(&rtn);
    qref_ct_codes_free(&codes);
    free(weight);
}

/*
 * Asymmetric: the same scale as GPTQ's (hi - lo) / 15, and zp = GPTQ's zero - 8 (-8 - lo/s
 * versus -lo/s). Codes agree except where x / s lands exactly on a half and zp is odd,
 * because compressed-tensors rounds x / s + zp and GPTQ rounds x / s. Random data has no such
 * ties, so every code agrees.
 */
static void test_quantize_matches_gptq_rtn_asym(void **state)
{
    (void)state;
    enum { OUT = 16, IN = 128 };
    float *weight = malloc(OUT * IN * sizeof *weight);
    test_rng rng = {0x6173796d6d6574ull};
    for (int k = 0; k < OUT * IN; k++)
        weight[k] = test_rng_float(&rng) + 0.25f * (float)(k % 3);
    qref_ct_args args = {.num_bits = 4, .symmetric = false, .strategy = QREF_CT_STRATEGY_GROUP, .group_size = 32};
    qref_ct_codes codes;
    qref_error err = {0};
    assert_int_equal(qref_ct_quantize("w", weight, OUT, IN, &args, QREF_DTYPE_F32, &codes, &err), QREF_OK);
    qref_rtn_config rtn_config = {.bits = 4, .group_size = 32, .sym = false};
    qref_rtn_result rtn;
    assert_int_equal(qref_rtn_quantize("w", weight, OUT, IN, &rtn_config, &rtn, &err), QREF_OK);
    for (int k = 0; k < OUT * 4; k++) {
        assert_true(rtn.scales[k] == codes.scales[k]);
        assert_int_equal((int)rtn.zeros[k], codes.zeros[k] + 8);
    }
    for (int k = 0; k < OUT * IN; k++)
        assert_int_equal((int)rtn.codes[k], codes.codes[k] + 8);
    qref_rtn_result_free(&rtn);
    qref_ct_codes_free(&codes);
    free(weight);
}

/* ---- round trips -------------------------------------------------------------------------- */

/* The quantizer's formula written out again for f32 (calculate_qparams, _quantize). */
static void reference_codes(const float *weight, int64_t out, int64_t in, const qref_ct_args *args, int8_t *codes,
                            float *scales, int8_t *zeros)
{
    const int64_t G = args->strategy == QREF_CT_STRATEGY_GROUP ? args->group_size : in;
    const int64_t groups = in / G;
    const float q_min = -(float)(1 << (args->num_bits - 1)), q_max = (float)((1 << (args->num_bits - 1)) - 1);
    for (int64_t o = 0; o < out; o++) {
        for (int64_t g = 0; g < groups; g++) {
            float lo = 0, hi = 0;
            int64_t first_row = args->strategy == QREF_CT_STRATEGY_TENSOR ? 0 : o;
            int64_t last_row = args->strategy == QREF_CT_STRATEGY_TENSOR ? out - 1 : o;
            for (int64_t r = first_row; r <= last_row; r++)
                for (int64_t i = g * G; i < (g + 1) * G; i++) {
                    lo = fminf(lo, weight[r * in + i]);
                    hi = fmaxf(hi, weight[r * in + i]);
                }
            float s, z = 0;
            if (args->symmetric) {
                s = fmaxf(fabsf(lo), fabsf(hi)) / ((q_max - q_min) / 2);
            } else {
                s = (hi - lo) / (q_max - q_min);
            }
            s = fmaxf(s, 0x1p-23f);
            if (!args->symmetric)
                z = nearbyintf(fminf(fmaxf(q_min - lo / s, q_min), q_max));
            scales[o * groups + g] = s;
            zeros[o * groups + g] = (int8_t)z;
            for (int64_t i = g * G; i < (g + 1) * G; i++)
                codes[o * in + i] = (int8_t)nearbyintf(fminf(fmaxf(weight[o * in + i] / s + z, q_min), q_max));
        }
    }
}

/* Quantizes, packs, checks, unpacks and dequantizes one configuration, asserting every step. */
static void round_trip(const char *format_name, qref_ct_format format, int bits, qref_ct_strategy strategy,
                       long group_size, bool symmetric, int64_t out, int64_t in, uint64_t seed)
{
    float *weight = malloc((size_t)(out * in) * sizeof *weight);
    test_rng rng = {seed};
    for (int64_t k = 0; k < out * in; k++)
        weight[k] = test_rng_float(&rng) * (0.5f + (float)(k % 7) / 7.0f) + (symmetric ? 0.0f : 0.3f);
    qref_ct_args args = {.num_bits = bits, .symmetric = symmetric, .strategy = strategy, .group_size = group_size};

    /* quantize, and compare with the formula written out */
    qref_ct_codes codes;
    qref_error err = {0};
    assert_int_equal(qref_ct_quantize("m", weight, out, in, &args, QREF_DTYPE_F32, &codes, &err), QREF_OK);
    int8_t *expected_codes = malloc((size_t)(out * in));
    float *expected_scales = malloc((size_t)(out * codes.groups) * sizeof(float));
    int8_t *expected_zeros = malloc((size_t)(out * codes.groups));
    reference_codes(weight, out, in, &args, expected_codes, expected_scales, expected_zeros);
    assert_memory_equal(codes.codes, expected_codes, (size_t)(out * in));
    assert_memory_equal(codes.scales, expected_scales, (size_t)(out * codes.groups) * sizeof(float));
    if (!symmetric)
        assert_memory_equal(codes.zeros, expected_zeros, (size_t)(out * codes.groups));

    /* pack, then read back through the structure check */
    qref_ct_packed packed;
    assert_int_equal(qref_ct_pack("m", &codes, format, &packed, &err), QREF_OK);
    qref_tensor_set set = {.items = packed.tensors, .count = packed.count};
    assert_int_equal(qref_tensor_set_sort(&set), -1);
    qref_ct_linear linear = qref_ct_linear_find(&set, "m", out, in);
    char config_strategy[16];
    snprintf(config_strategy, sizeof config_strategy, "%s", qref_ct_strategy_name(strategy));
    qref_ct_config config;
    config_for(&config, format_name, bits, config_strategy, strategy == QREF_CT_STRATEGY_GROUP ? group_size : 0,
               symmetric, "null");
    qref_findings findings = {0};
    qref_ct_check_linear(&linear, &config.schemes[0], &findings);
    for (size_t k = 0; k < findings.count; k++)
        print_error("finding %s: %s\n", findings.items[k].id, findings.items[k].message);
    assert_int_equal(findings.count, 0);
    qref_findings_free(&findings);

    qref_ct_codes back;
    assert_int_equal(qref_ct_unpack(&linear, &config.schemes[0], &back, &err), QREF_OK);
    assert_memory_equal(back.codes, codes.codes, (size_t)(out * in));
    assert_memory_equal(back.scales, codes.scales, (size_t)(out * codes.groups) * sizeof(float));
    assert_true((back.zeros == NULL) == symmetric);
    if (!symmetric)
        assert_memory_equal(back.zeros, codes.zeros, (size_t)(out * codes.groups));

    /* dequantize: (q - zp) * s in f32 */
    float *dense = malloc((size_t)(out * in) * sizeof *dense);
    qref_ct_codes_dequantize(&back, dense);
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            int64_t g = o * codes.groups + (strategy == QREF_CT_STRATEGY_GROUP ? i / group_size : 0);
            float expected = (float)(expected_codes[o * in + i] - (symmetric ? 0 : expected_zeros[g])) *
                             expected_scales[g];
            assert_true(dense[o * in + i] == expected);
        }

    free(dense);
    qref_ct_codes_free(&back);
    qref_ct_config_free(&config);
    qref_ct_packed_free(&packed);
    qref_ct_codes_free(&codes);
    free(expected_codes);
    free(expected_scales);
    free(expected_zeros);
    free(weight);
}

/* Every format, bit width, strategy and symmetry. 13 output rows leave a partly used zero-point
 * word (8 or 4 rows per word), and 100 input features a partly used code word. */
static void test_round_trips(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        qref_ct_format format;
        int bits;
    } formats[] = {
        {"pack-quantized", QREF_CT_FORMAT_PACK_QUANTIZED, 4}, {"pack-quantized", QREF_CT_FORMAT_PACK_QUANTIZED, 8},
        {"int-quantized", QREF_CT_FORMAT_INT_QUANTIZED, 8},   {"int-quantized", QREF_CT_FORMAT_INT_QUANTIZED, 4},
        {"naive-quantized", QREF_CT_FORMAT_NAIVE_QUANTIZED, 8}, {"int-quantized", QREF_CT_FORMAT_INT_QUANTIZED, 3},
    };
    static const qref_ct_strategy strategies[] = {QREF_CT_STRATEGY_TENSOR, QREF_CT_STRATEGY_CHANNEL,
                                                  QREF_CT_STRATEGY_GROUP};
    uint64_t seed = 0x726f756e64ull;
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++)
        for (size_t s = 0; s < 3; s++)
            for (int sym = 0; sym < 2; sym++) {
                bool group = strategies[s] == QREF_CT_STRATEGY_GROUP;
                round_trip(formats[f].name, formats[f].format, formats[f].bits, strategies[s], group ? 32 : 0,
                           sym == 1, 13, group ? 96 : 100, seed++);
            }
}

/* ---- findings ----------------------------------------------------------------------------- */

/* A valid pack-quantized 4-bit group-4 asymmetric 9 x 12 linear whose tensors the cases alter. */
typedef struct fixture {
    qref_ct_config config;
    qref_ct_codes codes;
    qref_ct_packed packed;
    qref_tensor tensors[4];
    uint8_t copies[4][2048];
    qref_ct_linear linear;
} fixture;

static void fixture_init(fixture *fx, const char *format, bool symmetric)
{
    memset(fx, 0, sizeof *fx);
    float weight[9 * 12];
    test_rng rng = {0x66696e64ull};
    for (int k = 0; k < 9 * 12; k++)
        weight[k] = test_rng_float(&rng);
    qref_ct_args args = {.num_bits = 4, .symmetric = symmetric, .strategy = QREF_CT_STRATEGY_GROUP, .group_size = 4};
    qref_error err = {0};
    assert_int_equal(qref_ct_quantize("m", weight, 9, 12, &args, QREF_DTYPE_F16, &fx->codes, &err), QREF_OK);
    qref_ct_format f = strcmp(format, "pack-quantized") == 0 ? QREF_CT_FORMAT_PACK_QUANTIZED
                                                             : QREF_CT_FORMAT_INT_QUANTIZED;
    assert_int_equal(qref_ct_pack("m", &fx->codes, f, &fx->packed, &err), QREF_OK);
    for (size_t k = 0; k < fx->packed.count; k++) {
        assert_true(fx->packed.tensors[k].nbytes <= sizeof fx->copies[k]);
        memcpy(fx->copies[k], fx->packed.tensors[k].data, fx->packed.tensors[k].nbytes);
        fx->tensors[k] = fx->packed.tensors[k];
        fx->tensors[k].data = fx->copies[k];
    }
    qref_tensor_set set = {.items = fx->tensors, .count = fx->packed.count};
    fx->linear = qref_ct_linear_find(&set, "m", 9, 12);
    config_for(&fx->config, format, 4, "group", 4, symmetric, "null");
}

static void fixture_free(fixture *fx)
{
    qref_ct_config_free(&fx->config);
    qref_ct_codes_free(&fx->codes);
    qref_ct_packed_free(&fx->packed);
}

/* The tensor of the fixture named "m.<role>", writable. */
static qref_tensor *fixture_tensor(fixture *fx, const char *role)
{
    char name[64];
    snprintf(name, sizeof name, "m.%s", role);
    for (size_t k = 0; k < fx->packed.count; k++)
        if (strcmp(fx->tensors[k].name, name) == 0)
            return &fx->tensors[k];
    fail_msg("no tensor %s", name);
    return NULL;
}

static void test_findings_valid_fixtures(void **state)
{
    (void)state;
    static const char *const formats[] = {"pack-quantized", "int-quantized"};
    for (int f = 0; f < 2; f++)
        for (int sym = 0; sym < 2; sym++) {
            fixture fx;
            fixture_init(&fx, formats[f], sym == 1);
            qref_findings findings = {0};
            qref_ct_check_linear(&fx.linear, &fx.config.schemes[0], &findings);
            assert_int_equal(findings.count, 0);
            qref_findings_free(&findings);
            fixture_free(&fx);
        }
}

static void test_findings_tensors(void **state)
{
    (void)state;
    fixture fx;
    qref_ct_linear linear;

    /* missing weight_scale */
    fixture_init(&fx, "pack-quantized", false);
    linear = fx.linear;
    linear.weight_scale = NULL;
    assert_single_finding(&linear, &fx.config.schemes[0], "ct.tensor.missing",
                          "tensor \"m.weight_scale\" not found");

    /* weight_packed with one word too many per row */
    fixture_tensor(&fx, "weight_packed")->shape[1] = 1;
    fixture_tensor(&fx, "weight_packed")->shape[0] = 18;
    assert_single_finding(&fx.linear, &fx.config.schemes[0], "ct.tensor.shape",
                          "shape [18, 1], expected [9, 2]");
    fixture_free(&fx);

    /* weight_scale stored as I32 */
    fixture_init(&fx, "pack-quantized", false);
    fixture_tensor(&fx, "weight_scale")->dtype = QREF_DTYPE_I16;
    assert_single_finding(&fx.linear, &fx.config.schemes[0], "ct.tensor.dtype",
                          "dtype I16, expected F16, BF16 or F32");
    fixture_free(&fx);

    /* weight_shape content */
    fixture_init(&fx, "pack-quantized", false);
    qref_store_u64(fx.copies[2], 12);
    assert_string_equal(fx.tensors[2].name, "m.weight_shape");
    assert_single_finding(&fx.linear, &fx.config.schemes[0], "ct.weight_shape.value",
                          "contains [12, 12], expected [9, 12]");
    fixture_free(&fx);

    /* a float weight where the group quantizes */
    fixture_init(&fx, "pack-quantized", false);
    float dense[9 * 12] = {0};
    qref_tensor weight = test_tensor_view("m.weight", QREF_DTYPE_F32, 2, 9, 12, dense);
    linear = (qref_ct_linear){.prefix = "m", .weight = &weight, .out_features = 9, .in_features = 12};
    assert_single_finding(&linear, &fx.config.schemes[0], "ct.targeted.float", "is stored in float (F32 [9, 12])");
    fixture_free(&fx);
}

static void test_findings_zero_points(void **state)
{
    (void)state;
    fixture fx;

    /* asymmetric without zero points */
    fixture_init(&fx, "pack-quantized", false);
    qref_ct_linear linear = fx.linear;
    linear.weight_zero_point = NULL;
    assert_single_finding(&linear, &fx.config.schemes[0], "ct.zero_point.missing", "is asymmetric");
    fixture_free(&fx);

    /* symmetric with a zero point */
    fixture_init(&fx, "int-quantized", true);
    int8_t zeros[9 * 3] = {0};
    qref_tensor zp = test_tensor_view("m.weight_zero_point", QREF_DTYPE_I8, 2, 9, 3, zeros);
    linear = fx.linear;
    linear.weight_zero_point = &zp;
    assert_single_finding(&linear, &fx.config.schemes[0], "ct.zero_point.unexpected", "expected none");
    fixture_free(&fx);

    /* an I8 zero point outside -8..7 */
    fixture_init(&fx, "int-quantized", false);
    fx.copies[2][4] = 9;
    assert_string_equal(fx.tensors[2].name, "m.weight_zero_point");
    assert_single_finding(&fx.linear, &fx.config.schemes[0], "ct.zero_point.range",
                          "zero point 9 at element 4, expected -8..7");
    fixture_free(&fx);

    /* padding bits of the packed zero points (9 rows: the second word contains one) */
    fixture_init(&fx, "pack-quantized", false);
    qref_tensor *packed_zp = fixture_tensor(&fx, "weight_zero_point");
    uint8_t *data = (uint8_t *)packed_zp->data;
    qref_store_u32(data + 4 * 3 + 0, qref_load_u32(data + 4 * 3) | 0x10u); /* word [1][0], row 9 */
    assert_single_finding(&fx.linear, &fx.config.schemes[0], "ct.padding",
                          "expected zero bits above bit 3, the padding after the last of 9 output features");
    fixture_free(&fx);
}

static void test_findings_values(void **state)
{
    (void)state;
    fixture fx;

    /* I8 codes outside the 4-bit range */
    fixture_init(&fx, "int-quantized", true);
    fx.copies[0][13] = (uint8_t)(int8_t)-9;
    assert_single_finding(&fx.linear, &fx.config.schemes[0], "ct.codes.range",
                          "code -9 at [1][1], expected -8..7 for 4-bit weights");
    fixture_free(&fx);

    /* a padding bit after the 12 codes of a row (two words, the second contains four codes) */
    fixture_init(&fx, "pack-quantized", true);
    uint8_t *words = fx.copies[0];
    qref_store_u32(words + 4 * 3, qref_load_u32(words + 4 * 3) | 0x00100000u);
    assert_single_finding(&fx.linear, &fx.config.schemes[0], "ct.padding", "word [1][1]");
    fixture_free(&fx);

    /* scales: NaN, zero, negative */
    const uint16_t bad[3] = {0x7E00, 0x0000, 0xBC00};
    const char *const phrases[3] = {"scale nan at [2][1]", "scale 0 at [2][1]", "scale -1 at [2][1]"};
    for (int k = 0; k < 3; k++) {
        fixture_init(&fx, "pack-quantized", false);
        qref_store_u16(fx.copies[1] + 2 * (2 * 3 + 1), bad[k]);
        assert_single_finding(&fx.linear, &fx.config.schemes[0], "ct.scale.invalid", phrases[k]);
        fixture_free(&fx);
    }
}

static void test_findings_group_index_and_inputs(void **state)
{
    (void)state;
    fixture fx;

    /* g_idx: a group out of range, then a group holding five features */
    fixture_init(&fx, "pack-quantized", false);
    int32_t g_idx[12];
    for (int i = 0; i < 12; i++)
        g_idx[i] = i / 4;
    qref_tensor t_g_idx = test_tensor_view("m.weight_g_idx", QREF_DTYPE_I32, 1, 12, 0, g_idx);
    qref_ct_linear linear = fx.linear;
    linear.weight_g_idx = &t_g_idx;
    qref_findings findings = {0};
    qref_ct_check_linear(&linear, &fx.config.schemes[0], &findings);
    assert_int_equal(findings.count, 0);
    qref_findings_free(&findings);
    g_idx[5] = 3;
    assert_single_finding(&linear, &fx.config.schemes[0], "ct.g_idx.invalid", "value 3 at [5], expected a group in 0..2");
    g_idx[5] = 2;
    assert_single_finding(&linear, &fx.config.schemes[0], "ct.g_idx.invalid",
                          "group 1 holds 3 input features, expected group_size 4");
    fixture_free(&fx);

    /* static input activations: input_scale missing, then zero */
    qref_ct_config config;
    config_for(&config, "int-quantized", 4, "group", 4, true,
               "{\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, \"strategy\": \"tensor\", \"dynamic\": false}");
    fixture_init(&fx, "int-quantized", true);
    assert_single_finding(&fx.linear, &config.schemes[0], "ct.input_scale.missing", "is static");
    float zero = 0.0f;
    qref_tensor input_scale = test_tensor_view("m.input_scale", QREF_DTYPE_F32, 1, 1, 0, &zero);
    linear = fx.linear;
    linear.input_scale = &input_scale;
    assert_single_finding(&linear, &config.schemes[0], "ct.input_scale.invalid", "scale 0 at [0]");
    zero = 0.5f;
    qref_ct_check_linear(&linear, &config.schemes[0], &findings);
    assert_int_equal(findings.count, 0);
    qref_findings_free(&findings);
    fixture_free(&fx);
    qref_ct_config_free(&config);

    /* a group size that does not divide in (12 features, group 8) */
    config_for(&config, "pack-quantized", 4, "group", 8, false, "null");
    fixture_init(&fx, "pack-quantized", false);
    assert_single_finding(&fx.linear, &config.schemes[0], "ct.schema.group_size",
                          "group_size 8 does not divide its 12 input features");
    fixture_free(&fx);
    qref_ct_config_free(&config);
}

/* unpack fails with the first error finding's message */
static void test_unpack_reports_first_error(void **state)
{
    (void)state;
    fixture fx;
    fixture_init(&fx, "pack-quantized", false);
    qref_ct_linear linear = fx.linear;
    linear.weight_shape = NULL;
    qref_ct_codes codes;
    qref_error err = {0};
    test_assert_error(qref_ct_unpack(&linear, &fx.config.schemes[0], &codes, &err), &err, QREF_ERR_INVALID,
                      "tensor \"m.weight_shape\" not found");
    qref_ct_codes_free(&codes);
    fixture_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_4bit_by_hand),
        cmocka_unit_test(test_pack_padding_and_8bit),
        cmocka_unit_test(test_pack_library_vectors),
        cmocka_unit_test(test_pack_zero_points_by_hand),
        cmocka_unit_test(test_w8a8_row_by_hand),
        cmocka_unit_test(test_pack_asym_group_by_hand),
        cmocka_unit_test(test_quantize_bf16_arithmetic),
        cmocka_unit_test(test_quantize_zero_row),
        cmocka_unit_test(test_quantize_matches_gptq_rtn_sym),
        cmocka_unit_test(test_quantize_matches_gptq_rtn_asym),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_findings_valid_fixtures),
        cmocka_unit_test(test_findings_tensors),
        cmocka_unit_test(test_findings_zero_points),
        cmocka_unit_test(test_findings_values),
        cmocka_unit_test(test_findings_group_index_and_inputs),
        cmocka_unit_test(test_unpack_reports_first_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
