/*
 * bitsandbytes' reference quantizers (quant/qref_nf4.h) and their round trip through the
 * bitsandbytes format (formats/qref_bnb.h).
 *
 * Anchors: the hand-worked blocks below derive each code from the intervals between the
 * midpoints of the published NF4 and FP4 tables (get_4bit_type in bitsandbytes/functional.py,
 * the QLoRA paper's appendix for NF4), with the packing order of the format (element 2i in the
 * high nibble). The double-quantization example derives its codes from create_dynamic_map's
 * construction (index 128 + 63 + k holds 0.1 + (k + 0.5) * 0.9 / 64 for k = 0..63). The round
 * trips check properties that do not use the quantizer's own code path: every code is the
 * table entry nearest to w / absmax, absmax is the block's max |w|, and the dequantized
 * weights equal the format's formula evaluated in this test.
 */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_bnb.h"
#include "quant/qref_nf4.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static uint8_t nibble(const uint8_t *packed, size_t e)
{
    return (e & 1u) ? packed[e / 2] & 15u : packed[e / 2] >> 4;
}

static float round_to(qref_dtype dtype, float value)
{
    if (dtype == QREF_DTYPE_F16)
        return qref_f16_to_f32(qref_f32_to_f16(value));
    if (dtype == QREF_DTYPE_BF16)
        return qref_bf16_to_f32(qref_f32_to_bf16(value));
    return value;
}

static bool same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* A tensor set over the packed tensors of one linear (views, sorted by name). */
static qref_tensor_set set_of(const qref_bnb_packed *packed)
{
    qref_tensor_set set = {.items = calloc(packed->count, sizeof(qref_tensor)), .count = packed->count};
    assert_non_null(set.items);
    for (size_t k = 0; k < packed->count; k++)
        set.items[k] = packed->tensors[k];
    assert_int_equal(qref_tensor_set_sort(&set), -1);
    return set;
}

/* ---- hand-worked 4-bit blocks ------------------------------------------------------------- */

/*
 * One NF4 block of 64 values. Probe value P[c] is chosen so that x = P[c] / 0.8 lies well inside
 * code c's interval, whose ends are the midpoints of adjacent NF4 values (for example code 11,
 * 0.33791524, lies between (0.24611230 + 0.33791524) / 2 = 0.29201377 and (0.33791524 +
 * 0.44070983) / 2 = 0.38931254, and P = 0.3 gives x = 0.375):
 *   c :  0     1     2     3     4     5     6     7     8    9    10   11   12   13   14   15
 *   P : -0.8  -0.56 -0.4  -0.32 -0.24 -0.16 -0.08  0.01  0.05 0.12 0.2  0.3  0.36 0.44 0.65 0.76
 *   x : -1    -0.7  -0.5  -0.4  -0.3  -0.2  -0.1   .0125 .0625 .15 0.25 .375 0.45 0.55 .8125 0.95
 * Element k holds P[(7k) mod 16], so the codes run 0, 7, 14, 5, 12, 3, 10, 1, 8, 15, 6, 13, 4,
 * 11, 2, 9 and repeat every 16 elements; absmax = max |P| = 0.8. Byte i = code(2i) << 4 |
 * code(2i + 1): 0x07, 0xE5, 0xC3, 0xA1, 0x8F, 0x6D, 0x4B, 0x29, four times.
 */
static void test_nf4_worked_block(void **state)
{
    (void)state;
    const float probe[16] = {-0.8f, -0.56f, -0.4f, -0.32f, -0.24f, -0.16f, -0.08f, 0.01f,
                             0.05f, 0.12f,  0.2f,  0.3f,   0.36f,  0.44f,  0.65f,  0.76f};
    const uint8_t bytes[8] = {0x07, 0xE5, 0xC3, 0xA1, 0x8F, 0x6D, 0x4B, 0x29};
    /* published NF4 values of the codes, QLoRA appendix / get_4bit_type */
    const float nf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                           -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                           0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                           0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                           0.7229568362236023f, 1.0f};
    float weight[64];
    for (int k = 0; k < 64; k++)
        weight[k] = probe[(7 * k) % 16];

    qref_nf4_config config = {.type = QREF_BNB_QUANT_NF4, .blocksize = 64, .double_quant = false};
    qref_nf4_result result;
    qref_error err = {0};
    assert_int_equal(qref_nf4_quantize("block", weight, 64, &config, &result, &err), QREF_OK);
    assert_int_equal(result.blocks, 1);
    assert_true(same_bits(result.absmax[0], 0.8f));
    for (int i = 0; i < 32; i++)
        assert_int_equal(result.packed[i], bytes[i % 8]);

    /* dequantized in f32: NF4[c] * 0.8, e.g. code 11 gives 0.27033219 (0.3 before quantization) */
    float out[64];
    qref_bnb_dequantize_codes(QREF_BNB_QUANT_NF4, QREF_DTYPE_F32, result.packed, 64, result.absmax, 64, out);
    for (int k = 0; k < 64; k++)
        assert_true(same_bits(out[k], nf4[(7 * k) % 16] * 0.8f));
    assert_float_equal(out[13], 0.270332, 1e-6); /* element 13 has code 11: 0.33791524 * 0.8 */
    qref_nf4_result_free(&result);
}

/*
 * One FP4 block of 64 values with absmax 2 (so x = P / 2 exactly). FP4 magnitudes by code bits
 * (get_4bit_type: raw [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12) sorted: code 0 (0), 1 (0.0052),
 * 6 (0.1667), 7 (0.25), 4 (0.3333), 5 (0.5), 2 (0.6667), 3 (1); bit 8 is the sign. Probes:
 *   code : 0     1    2    3    4    5    6    7    8      9     10    11    12    13    14    15
 *   P    : 0.002 0.1  1.4  2.0  0.7  1.0  0.3  0.5  -0.002 -0.1  -1.4  -2.0  -0.7  -1.0  -0.3  -0.5
 *   |x|  : .001  .05  0.7  1    .35  0.5  .15  .25  (same)
 * e.g. |x| = 0.35 lies between (0.25 + 0.3333) / 2 = 0.2917 and (0.3333 + 0.5) / 2 = 0.4167,
 * so code 4; |x| = 0.001 is below (0 + 0.0052) / 2 = 0.0026, so 0, and with the sign 8.
 * Element k holds P[(5k + 3) mod 16]: codes 3, 8, 13, 2, 7, 12, 1, 6, 11, 0, 5, 10, 15, 4, 9, 14,
 * bytes 0x38, 0xD2, 0x7C, 0x16, 0xB0, 0x5A, 0xF4, 0x9E, four times.
 */
static void test_fp4_worked_block(void **state)
{
    (void)state;
    const float probe[16] = {0.002f,  0.1f,  1.4f,  2.0f,  0.7f,  1.0f,  0.3f,  0.5f,
                             -0.002f, -0.1f, -1.4f, -2.0f, -0.7f, -1.0f, -0.3f, -0.5f};
    const uint8_t bytes[8] = {0x38, 0xD2, 0x7C, 0x16, 0xB0, 0x5A, 0xF4, 0x9E};
    const float raw[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
    float weight[64];
    for (int k = 0; k < 64; k++)
        weight[k] = probe[(5 * k + 3) % 16];

    qref_nf4_config config = {.type = QREF_BNB_QUANT_FP4, .blocksize = 64, .double_quant = false};
    qref_nf4_result result;
    qref_error err = {0};
    assert_int_equal(qref_nf4_quantize("block", weight, 64, &config, &result, &err), QREF_OK);
    assert_true(same_bits(result.absmax[0], 2.0f));
    for (int i = 0; i < 32; i++)
        assert_int_equal(result.packed[i], bytes[i % 8]);

    /* dequantized: sign * raw / 12 * 2; code 8 (a negative value below the first midpoint) gives -0 */
    float out[64];
    qref_bnb_dequantize_codes(QREF_BNB_QUANT_FP4, QREF_DTYPE_F32, result.packed, 64, result.absmax, 64, out);
    for (int k = 0; k < 64; k++) {
        int code = (5 * k + 3) % 16;
        float magnitude = raw[code & 7] / 12.0f * 2.0f;
        assert_true(same_bits(out[k], (code & 8) ? -magnitude : magnitude));
    }
    assert_true(signbit(out[1]) && out[1] == 0.0f); /* element 1 has code 8 */
    qref_nf4_result_free(&result);
}

/*
 * Three values [0.5, -0.25, 1.0] form one partial block: absmax 1, codes 12 (0.5 lies between
 * 0.38931 and 0.50166), 4 (-0.25 between -0.33968 and -0.23461) and 15; the kernel loads a 0
 * for the missing fourth value, whose code is 7. Bytes 0xC4, 0xF7. An all-zero block has
 * absmax 0 and x = 0 * inf = NaN, which both trees send to code 0: NF4 bytes 0x00 that
 * dequantize to -1 * 0 = -0, FP4 bytes 0x00 that dequantize to +0.
 */
static void test_4bit_partial_and_zero_blocks(void **state)
{
    (void)state;
    const float three[3] = {0.5f, -0.25f, 1.0f};
    qref_nf4_config config = {.type = QREF_BNB_QUANT_NF4, .blocksize = 64, .double_quant = false};
    qref_nf4_result result;
    qref_error err = {0};
    assert_int_equal(qref_nf4_quantize("three", three, 3, &config, &result, &err), QREF_OK);
    assert_int_equal(result.blocks, 1);
    assert_int_equal(result.packed[0], 0xC4);
    assert_int_equal(result.packed[1], 0xF7);
    qref_nf4_result_free(&result);

    float zeros[64] = {0};
    for (int type = 0; type < 2; type++) {
        config.type = type == 0 ? QREF_BNB_QUANT_NF4 : QREF_BNB_QUANT_FP4;
        assert_int_equal(qref_nf4_quantize("zeros", zeros, 64, &config, &result, &err), QREF_OK);
        assert_true(result.absmax[0] == 0.0f);
        for (int i = 0; i < 32; i++)
            assert_int_equal(result.packed[i], 0x00);
        float out[64];
        qref_bnb_dequantize_codes(config.type, QREF_DTYPE_F32, result.packed, 64, result.absmax, 64, out);
        assert_true(out[0] == 0.0f);
        assert_int_equal(signbit(out[0]) != 0, type == 0);
        qref_nf4_result_free(&result);
    }
}

/* ---- double quantization ------------------------------------------------------------------ */

/*
 * Four blocks whose absmax are [0.8, 0.5, 0.6, 0.9] (each block is zero but for one value):
 *   offset = mean = 0.7, a = absmax - offset = [0.1, -0.2, -0.1, 0.2], one nested block of the
 *   four values with m = max |a| = 0.2, and x = a / m = [0.5, -1, -0.5, 1].
 * The dynamic map's top level (index 191 + k, k = 0..63) holds 0.1 + (k + 0.5) * 0.9 / 64:
 * k = 28 gives 0.50078125 (index 219) and k = 27 gives 0.48671875, so 0.5 maps to 219; the map
 * is symmetric about index 127, so -0.5 maps to 254 - 219 = 35; -1 maps to index 0
 * (-0.99296875, the most negative entry) and 1 to index 255 (1.0). Decoded:
 *   [0.50078125 * 0.2 + 0.7, -0.99296875 * 0.2 + 0.7, -0.50078125 * 0.2 + 0.7, 0.2 + 0.7]
 *   = [0.80015625, 0.50140625, 0.59984375, 0.9].
 */
static void test_double_quant_worked_example(void **state)
{
    (void)state;
    const float maxima[4] = {0.8f, 0.5f, 0.6f, 0.9f};
    float weight[256] = {0};
    for (int b = 0; b < 4; b++)
        weight[64 * b + 5] = b % 2 ? -maxima[b] : maxima[b];

    qref_nf4_config config = {.type = QREF_BNB_QUANT_NF4, .blocksize = 64, .double_quant = true};
    qref_nf4_result result;
    qref_error err = {0};
    assert_int_equal(qref_nf4_quantize("dq", weight, 256, &config, &result, &err), QREF_OK);
    assert_int_equal(result.blocks, 4);
    assert_int_equal(result.nested_blocks, 1);
    assert_float_equal(result.offset, 0.7, 1e-7);
    assert_float_equal(result.nested_absmax[0], 0.2, 1e-7);
    const uint8_t codes[4] = {219, 0, 35, 255};
    const double decoded[4] = {0.80015625, 0.50140625, 0.59984375, 0.9};
    for (int b = 0; b < 4; b++) {
        assert_int_equal(result.absmax_codes[b], codes[b]);
        float value = result.nested_map[codes[b]] * result.nested_absmax[0] + result.offset;
        assert_float_equal(value, decoded[b], 1e-6);
    }
    qref_nf4_result_free(&result);
}

/* ---- LLM.int8 ----------------------------------------------------------------------------- */

/*
 * Row [0.5, -1.0, 0.25, 0.1]: in f16 0.1 becomes 0.0999755859375 (f16 keeps 11 significant
 * bits); absmax 1, scale 127. Products 63.5, -127, 31.75, 12.6968994; rounding half to even
 * gives 64 (63.5 is a tie), -127, 32, 13. Dequantized: (q * 1) * f32(1/127).
 * A zero row stores SCB 0 and codes 0.
 */
static void test_int8_worked_rows(void **state)
{
    (void)state;
    const float weight[8] = {0.5f, -1.0f, 0.25f, 0.1f, 0.0f, 0.0f, 0.0f, 0.0f};
    int8_t q[8];
    float scb[2];
    qref_error err = {0};
    assert_int_equal(qref_int8_quantize("rows", weight, 2, 4, q, scb, &err), QREF_OK);
    const int8_t expected[8] = {64, -127, 32, 13, 0, 0, 0, 0};
    for (int k = 0; k < 8; k++)
        assert_int_equal(q[k], expected[k]);
    assert_true(scb[0] == 1.0f);
    assert_true(scb[1] == 0.0f);

    float out[8];
    qref_bnb_dequantize_int8(q, scb, 2, 4, out);
    const float reciprocal = 7.874015718698502e-3f;
    assert_true(same_bits(out[0], 64.0f * reciprocal));
    assert_true(same_bits(out[1], -127.0f * reciprocal));
    assert_float_equal(out[1], -1.0, 1e-7);
    assert_true(out[4] == 0.0f);

    /* f16 overflow and non-finite values are rejected */
    const float huge[2] = {70000.0f, 1.0f};
    test_assert_error(qref_int8_quantize("huge", huge, 1, 2, q, scb, &err), &err, QREF_ERR_INVALID,
                      "not finite in f16");
}

/* ---- round trips through the format ------------------------------------------------------- */

/* Index of the table entry nearest to x, and the distance to it. */
static double nearest_distance(const float *table, int count, float x)
{
    double best = INFINITY;
    for (int c = 0; c < count; c++)
        best = fmin(best, fabs((double)x - (double)table[c]));
    return best;
}

/*
 * Quantizes a seeded 40 x 512 matrix (320 blocks of 64, so two nested blocks of 256 and 64)
 * with an all-zero block and an outlier, packs it, reads it back through the format and checks:
 * stored codes equal the quantizer's, each code is nearest to w / absmax in the table (within
 * 1e-6 for the f32 thresholds), absmax is the block's max |w|, nested codes are nearest in the
 * dynamic map, the dequantized weights equal dtype(code value * decoded absmax) bit for bit,
 * and the structure check finds nothing but, with double quantization, possibly a scale of
 * the all-zero block decoded a hair below zero (bnb.absmax.decoded_negative): that block's
 * a = -offset is rounded in a nested block whose scale the outlier sets.
 */
static void round_trip_4bit(qref_bnb_quant_type type, bool double_quant, qref_dtype dtype, uint64_t seed)
{
    const int64_t rows = 40, cols = 512;
    const size_t n = (size_t)(rows * cols), blocks = n / 64;
    float *weight = malloc(n * sizeof *weight);
    assert_non_null(weight);
    test_rng rng = {.state = seed};
    for (size_t e = 0; e < n; e++)
        weight[e] = round_to(dtype, 0.05f * test_rng_float(&rng));
    memset(weight + 64 * 7, 0, 64 * sizeof *weight);
    weight[1000] = round_to(dtype, 3.0f);

    qref_nf4_config config = {.type = type, .blocksize = 64, .double_quant = double_quant};
    qref_nf4_result result;
    qref_error err = {0};
    assert_int_equal(qref_nf4_quantize("linear", weight, n, &config, &result, &err), QREF_OK);

    /* codes and scales against their definitions */
    float table[16];
    qref_bnb_quant_map(type, table);
    for (size_t b = 0; b < blocks; b++) {
        float largest = 0.0f;
        for (size_t e = 64 * b; e < 64 * b + 64; e++)
            largest = fmaxf(largest, fabsf(weight[e]));
        assert_true(same_bits(result.absmax[b], largest));
        if (largest == 0.0f)
            continue;
        float reciprocal = 1.0f / largest;
        for (size_t e = 64 * b; e < 64 * b + 64; e++) {
            float x = weight[e] * reciprocal;
            double own = fabs((double)x - (double)table[nibble(result.packed, e)]);
            assert_true(own <= nearest_distance(table, 16, x) + 1e-6);
        }
    }
    if (double_quant) {
        assert_int_equal(result.nested_blocks, 2);
        for (size_t k = 0; k < blocks; k++) {
            float m = result.nested_absmax[k / 256];
            float x = (result.absmax[k] - result.offset) * (1.0f / m);
            double own = fabs((double)x - (double)result.nested_map[result.absmax_codes[k]]);
            assert_true(own <= nearest_distance(result.nested_map, 256, x) + 1e-7);
        }
    }

    /* pack, find, check and dequantize through the format */
    qref_bnb_4bit_data data = {
        .state = {.quant_type = type, .blocksize = 64, .dtype = dtype, .ndim = 2, .shape = {rows, cols},
                  .nested = double_quant, .nested_blocksize = 256, .nested_dtype = QREF_DTYPE_F32,
                  .nested_offset = result.offset},
        .packed = result.packed, .absmax = result.absmax, .absmax_codes = result.absmax_codes,
        .nested_absmax = result.nested_absmax, .nested_quant_map = result.nested_map,
    };
    const char *module = "model.layers.0.mlp.up_proj";
    qref_bnb_packed packed;
    assert_int_equal(qref_bnb_pack_4bit(module, &data, &packed, &err), QREF_OK);
    assert_int_equal(packed.count, double_quant ? 6 : 4);
    qref_tensor_set set = set_of(&packed);
    qref_bnb_linear linear;
    qref_bnb_linear_find(&set, module, &linear);
    assert_int_equal(qref_bnb_linear_layout(&linear), QREF_BNB_LAYOUT_4BIT);
    for (size_t i = 0; i < (n + 1) / 2; i++)
        assert_int_equal(linear.weight->data[i], result.packed[i]);

    qref_bnb_config bnb = {.quant_type = type, .double_quant = double_quant, .quant_storage = QREF_DTYPE_U8};
    qref_findings findings = {0};
    qref_bnb_check_linear(&bnb, &linear, rows, cols, &findings);
    for (size_t k = 0; k < findings.count; k++) {
        /* the all-zero block 7 is centered at -offset, and its nested code may decode a hair below zero */
        bool zero_block = double_quant && strcmp(findings.items[k].id, "bnb.absmax.decoded_negative") == 0 &&
                          strstr(findings.items[k].message, "the first at block 7:") != NULL;
        if (!zero_block)
            print_error("unexpected finding %s: %s\n", findings.items[k].id, findings.items[k].message);
        assert_true(zero_block);
    }
    qref_findings_free(&findings);

    float *out = malloc(n * sizeof *out);
    assert_non_null(out);
    assert_int_equal(qref_bnb_dequantize(&linear, rows, cols, out, &err), QREF_OK);
    for (size_t e = 0; e < n; e++) {
        size_t b = e / 64;
        float scale = double_quant
                          ? result.nested_map[result.absmax_codes[b]] * result.nested_absmax[b / 256] + result.offset
                          : result.absmax[b];
        unsigned code = nibble(result.packed, e);
        float value = type == QREF_BNB_QUANT_FP4 && code == 8 ? -0.0f : table[code];
        assert_true(same_bits(out[e], round_to(dtype, value * scale)));
    }

    free(out);
    free(set.items);
    qref_bnb_packed_free(&packed);
    qref_nf4_result_free(&result);
    free(weight);
}

static void test_4bit_round_trips(void **state)
{
    (void)state;
    const qref_dtype dtypes[3] = {QREF_DTYPE_F32, QREF_DTYPE_BF16, QREF_DTYPE_F16};
    uint64_t seed = 0x6e6634;
    for (int type = 0; type < 2; type++)
        for (int dq = 0; dq < 2; dq++)
            for (int d = 0; d < 3; d++)
                round_trip_4bit(type == 0 ? QREF_BNB_QUANT_NF4 : QREF_BNB_QUANT_FP4, dq == 1, dtypes[d], seed++);
}

/*
 * LLM.int8 round trip on a seeded 48 x 96 matrix with one zero row: each code is w16 * 127 /
 * SCB rounded to the nearest integer (within 0.5, ties to even), SCB is the row's max |w16|,
 * the stored tensors dequantize to (q * SCB) * f32(1/127), and the check reports only the zero
 * row (bnb.scb.zero).
 */
static void test_int8_round_trip(void **state)
{
    (void)state;
    const int64_t rows = 48, cols = 96;
    const size_t n = (size_t)(rows * cols);
    float *weight = malloc(n * sizeof *weight), *out = malloc(n * sizeof *out);
    int8_t *q = malloc(n);
    float scb[48];
    assert_true(weight != NULL && out != NULL && q != NULL);
    test_rng rng = {.state = 0x696e7438};
    for (size_t e = 0; e < n; e++)
        weight[e] = 0.2f * test_rng_float(&rng);
    memset(weight + 5 * cols, 0, (size_t)cols * sizeof *weight);

    qref_error err = {0};
    assert_int_equal(qref_int8_quantize("linear", weight, rows, cols, q, scb, &err), QREF_OK);
    for (int64_t o = 0; o < rows; o++) {
        float largest = 0.0f;
        for (int64_t i = 0; i < cols; i++)
            largest = fmaxf(largest, fabsf(qref_f16_to_f32(qref_f32_to_f16(weight[o * cols + i]))));
        assert_true(same_bits(scb[o], largest));
        for (int64_t i = 0; largest > 0.0f && i < cols; i++) {
            float product = qref_f16_to_f32(qref_f32_to_f16(weight[o * cols + i])) * (127.0f / largest);
            double gap = fabs((double)product - (double)q[o * cols + i]);
            assert_true(gap <= 0.5);
            if (gap == 0.5)
                assert_int_equal(q[o * cols + i] % 2, 0);
        }
    }

    const char *module = "model.layers.1.self_attn.o_proj";
    qref_bnb_packed packed;
    assert_int_equal(qref_bnb_pack_int8(module, q, scb, rows, cols, &packed, &err), QREF_OK);
    qref_tensor_set set = set_of(&packed);
    qref_bnb_linear linear;
    qref_bnb_linear_find(&set, module, &linear);
    assert_int_equal(qref_bnb_linear_layout(&linear), QREF_BNB_LAYOUT_INT8);
    assert_int_equal(qref_bnb_dequantize(&linear, rows, cols, out, &err), QREF_OK);
    for (size_t e = 0; e < n; e++)
        assert_true(same_bits(out[e], ((float)q[e] * scb[e / (size_t)cols]) * 7.874015718698502e-3f));

    qref_bnb_config bnb = {.load_in_8bit = true, .quant_storage = QREF_DTYPE_U8};
    qref_findings findings = {0};
    qref_bnb_check_linear(&bnb, &linear, rows, cols, &findings);
    assert_int_equal(findings.count, 1);
    assert_string_equal(findings.items[0].id, "bnb.scb.zero");
    qref_findings_free(&findings);

    free(set.items);
    qref_bnb_packed_free(&packed);
    free(weight);
    free(out);
    free(q);
}

static void test_quantizer_rejects_bad_input(void **state)
{
    (void)state;
    float weight[64] = {0};
    qref_nf4_result result;
    qref_error err = {0};
    qref_nf4_config config = {.type = QREF_BNB_QUANT_NF4, .blocksize = 48, .double_quant = false};
    test_assert_error(qref_nf4_quantize("w", weight, 64, &config, &result, &err), &err, QREF_ERR_INVALID,
                      "blocksize 48, expected a power of two");
    qref_nf4_result_free(&result);
    config.blocksize = 64;
    weight[9] = NAN;
    test_assert_error(qref_nf4_quantize("w", weight, 64, &config, &result, &err), &err, QREF_ERR_INVALID,
                      "value nan at [9]");
    qref_nf4_result_free(&result);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nf4_worked_block),
        cmocka_unit_test(test_fp4_worked_block),
        cmocka_unit_test(test_4bit_partial_and_zero_blocks),
        cmocka_unit_test(test_double_quant_worked_example),
        cmocka_unit_test(test_int8_worked_rows),
        cmocka_unit_test(test_4bit_round_trips),
        cmocka_unit_test(test_int8_round_trip),
        cmocka_unit_test(test_quantizer_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
