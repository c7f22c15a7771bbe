/*
 * AWQ tensors in the AutoAWQ GEMM and GEMV layouts (formats/qref_awq.h): words and tensors
 * worked by hand, the f16 rounding of GEMM dequantization, round trips through AWQ's pseudo
 * quantizer for both layouts, zero_point true and false and group sizes 32, 64, 128 and -1,
 * AutoAWQ's own recomputation of the codes, and one malformed linear per structure finding.
 *
 * No small public AWQ artifact exists to compare with, so every expected word below is
 * derived by hand from AutoAWQ's code, as the comments show: from_linear in
 * awq/modules/linear/gemm.py and gemv.py (order_map), and unpack_awq / reverse_awq_order /
 * dequantize_gemm in awq/utils/packing_utils.py.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_awq.h"
#include "quant/qref_awq_rtn.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static uint32_t word_at(const qref_tensor *tensor, size_t index)
{
    return qref_load_u32(tensor->data + 4 * index);
}

static void config_for(qref_awq_config *config, qref_awq_layout layout, int64_t group_size, bool zero_point)
{
    qref_awq_config_init(config);
    config->layout = layout;
    snprintf(config->version, sizeof config->version, "%s", qref_awq_layout_name(layout));
    config->group_size = group_size;
    config->zero_point = zero_point;
    config->declared = QREF_AWQ_KEY_BITS | QREF_AWQ_KEY_GROUP_SIZE | QREF_AWQ_KEY_ZERO_POINT | QREF_AWQ_KEY_VERSION;
    snprintf(config->source, sizeof config->source, "test config");
}

static qref_awq_linear linear_of(const qref_awq_packed *packed, int64_t out, int64_t in)
{
    qref_awq_linear linear = {.prefix = "layer", .qweight = &packed->qweight, .qzeros = &packed->qzeros,
                              .scales = &packed->scales, .out_features = out, .in_features = in};
    return linear;
}

/* Returns how many findings carry id. */
static size_t count_id(const qref_findings *findings, const char *id)
{
    size_t count = 0;
    for (size_t k = 0; k < findings->count; k++)
        count += strcmp(findings->items[k].id, id) == 0;
    return count;
}

/* Prints the findings, for a failing assertion. */
static void print_findings(const qref_findings *findings)
{
    for (size_t k = 0; k < findings->count; k++)
        print_message("finding %s: %s\n", findings->items[k].id, findings->items[k].message);
}

/* ---- words -------------------------------------------------------------------------------- */

/*
 * GEMM word of codes 0..7 in columns 0..7. from_linear's order_map is [0, 2, 4, 6, 1, 3, 5, 7]:
 * field s (bits 4s..4s+3) takes column order_map[s], so the fields 0..7 hold 0, 2, 4, 6, 1, 3,
 * 5, 7. Written from field 7 down to field 0 as hex digits: 7 5 3 1 6 4 2 0 = 0x75316420.
 */
static void gemm_word_codes_0_to_7(void **state)
{
    (void)state;
    const uint8_t values[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(qref_awq_gemm_word_pack(values), 0x75316420u);

    uint8_t back[8];
    qref_awq_gemm_word_unpack(0x75316420u, back);
    assert_memory_equal(back, values, 8);
}

/*
 * Codes 15, 14, ..., 8 in columns 0..7: fields 0..7 take columns 0, 2, 4, 6, 1, 3, 5, 7, whose
 * codes are 15, 13, 11, 9, 14, 12, 10, 8. Field 7 down to 0: 8 A C E 9 B D F = 0x8ACE9BDF, a
 * negative int32, which unpack_awq shifts arithmetically before masking with 15.
 */
static void gemm_word_high_codes(void **state)
{
    (void)state;
    const uint8_t values[8] = {15, 14, 13, 12, 11, 10, 9, 8};
    assert_int_equal(qref_awq_gemm_word_pack(values), 0x8ACE9BDFu);

    uint8_t back[8];
    qref_awq_gemm_word_unpack(0x8ACE9BDFu, back);
    assert_memory_equal(back, values, 8);
}

/*
 * Reading a GEMM word with reverse_awq_order: column j comes from field
 * AWQ_REVERSE_ORDER[j] = [0, 4, 1, 5, 2, 6, 3, 7][j]. Word 0x12345678 has fields 0..7 =
 * 8, 7, 6, 5, 4, 3, 2, 1, so columns 0..7 read fields 0, 4, 1, 5, 2, 6, 3, 7 = 8, 4, 7, 3, 6,
 * 2, 5, 1.
 */
static void gemm_word_reverse_order(void **state)
{
    (void)state;
    uint8_t values[8];
    qref_awq_gemm_word_unpack(0x12345678u, values);
    const uint8_t expected[8] = {8, 4, 7, 3, 6, 2, 5, 1};
    assert_memory_equal(values, expected, 8);
}

/* GEMV's order_map is [0, 1, ..., 7]: field k holds value k, so 0..7 is 0x76543210. */
static void gemv_word_natural_order(void **state)
{
    (void)state;
    const uint8_t values[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(qref_awq_gemv_word_pack(values), 0x76543210u);
    const uint8_t high[8] = {8, 9, 10, 11, 12, 13, 14, 15};
    assert_int_equal(qref_awq_gemv_word_pack(high), 0xFEDCBA98u);

    uint8_t back[8];
    qref_awq_gemv_word_unpack(0xFEDCBA98u, back);
    assert_memory_equal(back, high, 8);
}

/*
 * calculate_zeros_width(in, G) = ceil(ceil((in / G) / 8) / m) * m, m = 1 (G >= 128), 2 (64),
 * 4 (32): 4096/128 = 32 groups -> 4 words; 4096/64 = 64 -> 8 -> 8; 4096/32 = 128 -> 16 -> 16;
 * 256/128 = 2 -> 1; 256/64 = 4 -> 1 -> 2; 256/32 = 8 -> 1 -> 4; 768/32 = 24 -> 3 -> 4;
 * 768/256 = 3 -> 1. G = 96 and G = 16 raise NotImplementedError there (-1 here).
 */
static void gemv_zeros_width_table(void **state)
{
    (void)state;
    assert_int_equal(qref_awq_gemv_zeros_width(4096, 128), 4);
    assert_int_equal(qref_awq_gemv_zeros_width(4096, 64), 8);
    assert_int_equal(qref_awq_gemv_zeros_width(4096, 32), 16);
    assert_int_equal(qref_awq_gemv_zeros_width(256, 128), 1);
    assert_int_equal(qref_awq_gemv_zeros_width(256, 64), 2);
    assert_int_equal(qref_awq_gemv_zeros_width(256, 32), 4);
    assert_int_equal(qref_awq_gemv_zeros_width(768, 32), 4);
    assert_int_equal(qref_awq_gemv_zeros_width(768, 256), 1);
    assert_int_equal(qref_awq_gemv_zeros_width(768, 96), -1);
    assert_int_equal(qref_awq_gemv_zeros_width(768, 16), -1);
}

/* ---- tensors worked by hand --------------------------------------------------------------- */

/* Codes of a small linear, owned by the struct. */
typedef struct hand_linear {
    qref_awq_codes codes;
    uint8_t code_data[16 * 64];
    uint8_t zero_data[16 * 4];
    uint16_t scale_data[16 * 4];
} hand_linear;

static void hand_linear_init(hand_linear *layer, int64_t out, int64_t in, int64_t group_size)
{
    memset(layer, 0, sizeof *layer);
    layer->codes.bits = 4;
    layer->codes.out_features = out;
    layer->codes.in_features = in;
    layer->codes.group_size = group_size;
    layer->codes.groups = in / group_size;
    layer->codes.codes = layer->code_data;
    layer->codes.zeros = layer->zero_data;
    layer->codes.scales = layer->scale_data;
}

/*
 * GEMM, out = 16, in = 2, one group: code[o][i] = (o + 8 i) % 16, zero[o] = 15 - o, scale[o]
 * = f16(o + 1). qweight is [in, out / 8] = [2, 2]:
 *   row i = 0: columns 0..7 have codes 0..7 -> 0x75316420 (see gemm_word_codes_0_to_7);
 *              columns 8..15 have codes 8..15 -> fields take columns 8, 10, 12, 14, 9, 11,
 *              13, 15 = codes 8, 10, 12, 14, 9, 11, 13, 15 -> 0xFDB9ECA8;
 *   row i = 1: columns 0..7 have codes 8..15 -> 0xFDB9ECA8; columns 8..15 have 0..7 ->
 *              0x75316420.
 * qzeros is [1, 2]: columns 0..7 have zeros 15..8 -> 0x8ACE9BDF (gemm_word_high_codes);
 * columns 8..15 have zeros 7..0 -> fields hold 7, 5, 3, 1, 6, 4, 2, 0 -> 0x02461357.
 * scales is [1, 16] of f16 1.0 .. 16.0 (0x3C00, 0x4000, ...).
 */
static void gemm_tensors_by_hand(void **state)
{
    (void)state;
    hand_linear layer;
    hand_linear_init(&layer, 16, 2, 2);
    for (int o = 0; o < 16; o++) {
        for (int i = 0; i < 2; i++)
            layer.code_data[o * 2 + i] = (uint8_t)((o + 8 * i) % 16);
        layer.zero_data[o] = (uint8_t)(15 - o);
        layer.scale_data[o] = qref_f32_to_f16((float)(o + 1));
    }

    qref_awq_packed packed;
    qref_error err = {0};
    assert_int_equal(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMM, &packed, &err), QREF_OK);
    assert_int_equal(packed.qweight.shape[0], 2);
    assert_int_equal(packed.qweight.shape[1], 2);
    assert_int_equal(word_at(&packed.qweight, 0), 0x75316420u);
    assert_int_equal(word_at(&packed.qweight, 1), 0xFDB9ECA8u);
    assert_int_equal(word_at(&packed.qweight, 2), 0xFDB9ECA8u);
    assert_int_equal(word_at(&packed.qweight, 3), 0x75316420u);
    assert_int_equal(packed.qzeros.shape[0], 1);
    assert_int_equal(packed.qzeros.shape[1], 2);
    assert_int_equal(word_at(&packed.qzeros, 0), 0x8ACE9BDFu);
    assert_int_equal(word_at(&packed.qzeros, 1), 0x02461357u);
    assert_int_equal(packed.scales.shape[0], 1);
    assert_int_equal(packed.scales.shape[1], 16);
    assert_int_equal(qref_load_u16(packed.scales.data), 0x3C00);
    assert_int_equal(qref_load_u16(packed.scales.data + 2 * 15), 0x4C00); /* 16.0 */

    /* dequantize_gemm: W[o][i] = (q - z) * s; W[3][1] = (11 - 12) * 4 = -4, W[12][0] = (12 - 3) * 13 = 117 */
    qref_awq_config config;
    config_for(&config, QREF_AWQ_LAYOUT_GEMM, -1, true);
    qref_awq_linear linear = linear_of(&packed, 16, 2);
    float weight[32];
    assert_int_equal(qref_awq_dequantize(&linear, &config, weight, &err), QREF_OK);
    assert_true(weight[3 * 2 + 1] == -4.0f);
    assert_true(weight[12 * 2 + 0] == 117.0f);

    qref_awq_codes unpacked;
    assert_int_equal(qref_awq_unpack(&linear, &config, &unpacked, &err), QREF_OK);
    assert_memory_equal(unpacked.codes, layer.code_data, 32);
    assert_memory_equal(unpacked.zeros, layer.zero_data, 16);
    assert_memory_equal(unpacked.scales, layer.scale_data, 32);
    qref_awq_codes_free(&unpacked);
    qref_awq_packed_free(&packed);
}

/*
 * GEMV, out = 2, in = 64, group size 32 (2 groups): code[o][i] = (i + o) % 16, zeros 3 and
 * 12 in row 0, 12 and 3 in row 1, scales 0.5 and 2 in row 0, 2 and 0.5 in row 1.
 * qweight is [out, in / 8] = [2, 8] in natural order:
 *   row 0: inputs 8k..8k+7 have codes 0..7 (k even) -> 0x76543210, 8..15 (k odd) -> 0xFEDCBA98;
 *   row 1: codes 1..8 -> fields 1, 2, ..., 8 -> 0x87654321; codes 9..15, 0 -> 0x0FEDCBA9.
 * qzeros is [out, calculate_zeros_width(64, 32)] = [2, 4]: word 0 of row 0 holds field 0 = 3,
 * field 1 = 12 -> 0x000000C3; row 1 -> 0x0000003C; words 1..3 are zero padding.
 * scales is [2, 4 * 8] = [2, 32]: columns 0 and 1 are the groups, columns 2..31 zero.
 */
static void gemv_tensors_by_hand(void **state)
{
    (void)state;
    hand_linear layer;
    hand_linear_init(&layer, 2, 64, 32);
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < 64; i++)
            layer.code_data[o * 64 + i] = (uint8_t)((i + o) % 16);
    layer.zero_data[0] = 3, layer.zero_data[1] = 12, layer.zero_data[2] = 12, layer.zero_data[3] = 3;
    layer.scale_data[0] = 0x3800, layer.scale_data[1] = 0x4000; /* 0.5, 2.0 */
    layer.scale_data[2] = 0x4000, layer.scale_data[3] = 0x3800;

    qref_awq_packed packed;
    qref_error err = {0};
    assert_int_equal(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMV, &packed, &err), QREF_OK);
    assert_int_equal(packed.qweight.shape[0], 2);
    assert_int_equal(packed.qweight.shape[1], 8);
    for (int k = 0; k < 8; k++) {
        assert_int_equal(word_at(&packed.qweight, (size_t)k), k % 2 == 0 ? 0x76543210u : 0xFEDCBA98u);
        assert_int_equal(word_at(&packed.qweight, (size_t)(8 + k)), k % 2 == 0 ? 0x87654321u : 0x0FEDCBA9u);
    }
    assert_int_equal(packed.qzeros.shape[0], 2);
    assert_int_equal(packed.qzeros.shape[1], 4);
    const uint32_t zeros[8] = {0x000000C3u, 0, 0, 0, 0x0000003Cu, 0, 0, 0};
    for (size_t k = 0; k < 8; k++)
        assert_int_equal(word_at(&packed.qzeros, k), zeros[k]);
    assert_int_equal(packed.scales.shape[0], 2);
    assert_int_equal(packed.scales.shape[1], 32);
    assert_int_equal(qref_load_u16(packed.scales.data + 2 * 0), 0x3800);
    assert_int_equal(qref_load_u16(packed.scales.data + 2 * 1), 0x4000);
    for (int c = 2; c < 32; c++)
        assert_int_equal(qref_load_u16(packed.scales.data + 2 * c), 0);
    assert_int_equal(qref_load_u16(packed.scales.data + 2 * 32), 0x4000);

    /* W[0][5] = (5 - 3) * 0.5 = 1; W[0][40] = (8 - 12) * 2 = -8; W[1][63] = (0 - 3) * 0.5 = -1.5 */
    qref_awq_config config;
    config_for(&config, QREF_AWQ_LAYOUT_GEMV, 32, true);
    qref_awq_linear linear = linear_of(&packed, 2, 64);
    float weight[128];
    assert_int_equal(qref_awq_dequantize(&linear, &config, weight, &err), QREF_OK);
    assert_true(weight[5] == 1.0f);
    assert_true(weight[40] == -8.0f);
    assert_true(weight[64 + 63] == -1.5f);
    qref_awq_packed_free(&packed);
}

/*
 * f16 rounding of GEMM dequantization. Scale f16 0x3C01 = 1 + 2^-10 = 1.0009765625 and
 * q - z = 3 give the exact product 3.0029296875. f16 values in [2, 4) are 2^-9 apart, and
 * 3.0029296875 / 2^-9 = 1537.5, a tie, so dequantize_gemm's f16 product rounds to the even
 * 1538 * 2^-9 = 3.00390625. The GEMV kernel computes in f32 and keeps 3.0029296875.
 */
static void dequantize_rounding_by_layout(void **state)
{
    (void)state;
    uint8_t code = 11, zero = 8;
    uint16_t scale = 0x3C01;
    qref_awq_codes codes = {.bits = 4, .out_features = 1, .in_features = 1, .group_size = 1, .groups = 1,
                            .codes = &code, .zeros = &zero, .scales = &scale};
    float weight = 0.0f;
    qref_awq_codes_dequantize(&codes, QREF_AWQ_LAYOUT_GEMM, &weight);
    assert_true(weight == 3.00390625f);
    qref_awq_codes_dequantize(&codes, QREF_AWQ_LAYOUT_GEMV, &weight);
    assert_true(weight == 3.0029296875f);
}

/*
 * Overflow: scale f16 0x7000 = 8192 and q - z = 15 - 0 give 122880 > 65504, which f16 cannot
 * hold, so dequantize_gemm would produce infinity: dequant.fp16_overflow, and dequantize
 * fails. 8192 * 7 = 57344 fits, so a linear whose codes stay below 8 is fine.
 */
static void gemm_fp16_overflow(void **state)
{
    (void)state;
    hand_linear layer;
    hand_linear_init(&layer, 8, 2, 2);
    for (int o = 0; o < 8; o++)
        layer.scale_data[o] = 0x7000;
    layer.code_data[5 * 2 + 1] = 7;

    qref_awq_packed packed;
    qref_error err = {0};
    assert_int_equal(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMM, &packed, &err), QREF_OK);
    qref_awq_config config;
    config_for(&config, QREF_AWQ_LAYOUT_GEMM, -1, true);
    qref_awq_linear linear = linear_of(&packed, 8, 2);
    qref_findings findings = {0};
    qref_awq_check_linear(&linear, &config, &findings);
    assert_int_equal(findings.count, 0);
    qref_findings_free(&findings);

    /* code 15 with zero 0 in row 3 overflows */
    qref_awq_packed_free(&packed);
    layer.code_data[3 * 2 + 0] = 15;
    assert_int_equal(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMM, &packed, &err), QREF_OK);
    linear = linear_of(&packed, 8, 2);
    qref_awq_check_linear(&linear, &config, &findings);
    print_findings(&findings);
    assert_int_equal(count_id(&findings, "dequant.fp16_overflow"), 1);
    assert_non_null(strstr(findings.items[0].message, "weight [3][0] = scale 8192 x (q - z) 15"));
    qref_findings_free(&findings);

    float weight[16];
    test_assert_error(qref_awq_dequantize(&linear, &config, weight, &err), &err, QREF_ERR_INVALID,
                      "overflows f16");
    qref_awq_codes unpacked;
    assert_int_equal(qref_awq_unpack(&linear, &config, &unpacked, &err), QREF_OK);
    qref_awq_codes_free(&unpacked);
    qref_awq_packed_free(&packed);
}

/* ---- round trips -------------------------------------------------------------------------- */

/* A seeded random weight [out][in] with one large-magnitude input channel, like synth256. */
static float *random_weight(uint64_t seed, int64_t out, int64_t in)
{
    test_rng rng = {seed};
    float *weight = malloc((size_t)(out * in) * sizeof *weight);
    assert_non_null(weight);
    for (int64_t k = 0; k < out * in; k++)
        weight[k] = 0.05f * test_rng_float(&rng);
    for (int64_t o = 0; o < out; o++)
        weight[o * in + 7] *= 40.0f;
    /* a row of only positive values, whose zero point clamps to 0 */
    for (int64_t i = 0; i < in; i++)
        weight[i] = 0.01f + fabsf(weight[i]);
    return weight;
}

/*
 * Quantizes, packs, unpacks and dequantizes one seeded matrix, and checks: the unpacked codes,
 * zero points and scales equal the quantizer's; GEMM's dequantized weights equal the
 * quantizer's f16 w_hat bit for bit; GEMV's are the exact products, which round to w_hat;
 * and AutoAWQ's from_linear recomputation round((w_hat + z * s) / s) in f16 returns every
 * stored code.
 */
static void round_trip(qref_awq_layout layout, long group_size, bool zero_point, uint64_t seed)
{
    const int64_t out = 48, in = 256;
    float *weight = random_weight(seed, out, in);
    qref_awq_rtn_config rtn_config = {.bits = 4, .group_size = group_size, .zero_point = zero_point};
    qref_awq_rtn_result rtn;
    qref_error err = {0};
    assert_int_equal(qref_awq_rtn_quantize("layer", weight, (size_t)out, (size_t)in, &rtn_config, &rtn, &err),
                     QREF_OK);

    qref_awq_codes codes = {.bits = 4, .out_features = out, .in_features = in,
                            .group_size = (int64_t)rtn.group_size, .groups = (int64_t)rtn.groups,
                            .codes = rtn.codes, .zeros = rtn.zeros, .scales = rtn.scales};
    qref_awq_packed packed;
    assert_int_equal(qref_awq_pack("layer", &codes, layout, &packed, &err), QREF_OK);

    qref_awq_config config;
    config_for(&config, layout, group_size, zero_point);
    qref_awq_linear linear = linear_of(&packed, out, in);
    qref_findings findings = {0};
    qref_awq_check_linear(&linear, &config, &findings);
    print_findings(&findings);
    assert_int_equal(findings.count, 0);
    qref_findings_free(&findings);

    qref_awq_codes unpacked;
    assert_int_equal(qref_awq_unpack(&linear, &config, &unpacked, &err), QREF_OK);
    assert_memory_equal(unpacked.codes, rtn.codes, (size_t)(out * in));
    assert_memory_equal(unpacked.zeros, rtn.zeros, (size_t)out * rtn.groups);
    assert_memory_equal(unpacked.scales, rtn.scales, (size_t)out * rtn.groups * sizeof(uint16_t));

    float *dequant = malloc((size_t)(out * in) * sizeof *dequant);
    assert_non_null(dequant);
    assert_int_equal(qref_awq_dequantize(&linear, &config, dequant, &err), QREF_OK);
    /* == compares values, so the quantizer's -0.0 (round(-0.3) in the symmetric branch) equals
     * the +0.0 that (q - z) * s gives for the stored code */
    for (int64_t k = 0; k < out * in; k++) {
        float w_hat = qref_f16_to_f32(rtn.dequant[k]);
        if (layout == QREF_AWQ_LAYOUT_GEMM)
            assert_true(dequant[k] == w_hat);
        else
            assert_true(qref_f16_to_f32(qref_f32_to_f16(dequant[k])) == w_hat);
    }

    /* from_linear: intweight = round((W_hat + f16(z * s)) / s), every operation in f16 */
    for (int64_t o = 0; o < out; o++) {
        for (int64_t i = 0; i < in; i++) {
            size_t g = (size_t)i / rtn.group_size;
            float s = qref_f16_to_f32(rtn.scales[(size_t)o * rtn.groups + g]);
            float z = (float)rtn.zeros[(size_t)o * rtn.groups + g];
            float scale_zero = qref_f16_to_f32(qref_f32_to_f16(z * s));
            float sum = qref_f16_to_f32(qref_f32_to_f16(qref_f16_to_f32(rtn.dequant[o * in + i]) + scale_zero));
            float quotient = qref_f16_to_f32(qref_f32_to_f16(sum / s));
            assert_int_equal((int)nearbyintf(quotient), rtn.codes[o * in + i]);
        }
    }

    free(dequant);
    qref_awq_codes_free(&unpacked);
    qref_awq_packed_free(&packed);
    qref_awq_rtn_result_free(&rtn);
    free(weight);
}

static void round_trip_gemm(void **state)
{
    (void)state;
    const long groups[] = {32, 64, 128, -1};
    for (size_t k = 0; k < 4; k++) {
        round_trip(QREF_AWQ_LAYOUT_GEMM, groups[k], true, 100 + k);
        round_trip(QREF_AWQ_LAYOUT_GEMM, groups[k], false, 200 + k);
    }
}

static void round_trip_gemv(void **state)
{
    (void)state;
    const long groups[] = {32, 64, 128, -1};
    for (size_t k = 0; k < 4; k++) {
        round_trip(QREF_AWQ_LAYOUT_GEMV, groups[k], true, 300 + k);
        round_trip(QREF_AWQ_LAYOUT_GEMV, groups[k], false, 400 + k);
    }
}

/* Packing rejects what the layouts cannot hold. */
static void pack_rejects(void **state)
{
    (void)state;
    hand_linear layer;
    qref_awq_packed packed;
    qref_error err = {0};

    hand_linear_init(&layer, 12, 2, 2);
    test_assert_error(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMM, &packed, &err), &err,
                      QREF_ERR_INVALID, "out_features 12 is not a multiple of 8");
    qref_awq_packed_free(&packed);

    hand_linear_init(&layer, 8, 12, 12);
    for (int k = 0; k < 8; k++)
        layer.scale_data[k] = 0x3C00;
    test_assert_error(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMV, &packed, &err), &err,
                      QREF_ERR_INVALID, "in_features 12 is not a multiple of 8");
    qref_awq_packed_free(&packed);

    hand_linear_init(&layer, 8, 48, 16);
    for (int k = 0; k < 24; k++)
        layer.scale_data[k] = 0x3C00;
    test_assert_error(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMV, &packed, &err), &err,
                      QREF_ERR_UNSUPPORTED, "group size 16 is not implemented by the GEMV layout");
    qref_awq_packed_free(&packed);

    hand_linear_init(&layer, 8, 2, 2);
    for (int k = 0; k < 8; k++)
        layer.scale_data[k] = 0x3C00;
    layer.code_data[3] = 16;
    test_assert_error(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMM, &packed, &err), &err,
                      QREF_ERR_INVALID, "code 16 at [1][1], expected 0..15");
    qref_awq_packed_free(&packed);

    layer.code_data[3] = 0;
    layer.scale_data[6] = 0x8000; /* -0.0 */
    test_assert_error(qref_awq_pack("layer", &layer.codes, QREF_AWQ_LAYOUT_GEMM, &packed, &err), &err,
                      QREF_ERR_INVALID, "scale -0 at [6][0], expected a finite value > 0");
    qref_awq_packed_free(&packed);
}

/* ---- structure findings ------------------------------------------------------------------- */

/* A packed GEMM or GEMV linear of out = 16, in = 256 with writable copies of its tensors. */
typedef struct malformed_linear {
    qref_awq_packed packed;
    qref_awq_config config;
    qref_awq_linear linear;
    qref_findings findings;
} malformed_linear;

static void malformed_init(malformed_linear *m, qref_awq_layout layout, int64_t group_size, bool zero_point)
{
    memset(m, 0, sizeof *m);
    const int64_t out = 16, in = 256;
    float *weight = random_weight(7, out, in);
    qref_awq_rtn_config rtn_config = {.bits = 4, .group_size = group_size, .zero_point = zero_point};
    qref_awq_rtn_result rtn;
    qref_error err = {0};
    assert_int_equal(qref_awq_rtn_quantize("layer", weight, (size_t)out, (size_t)in, &rtn_config, &rtn, &err),
                     QREF_OK);
    qref_awq_codes codes = {.bits = 4, .out_features = out, .in_features = in,
                            .group_size = (int64_t)rtn.group_size, .groups = (int64_t)rtn.groups,
                            .codes = rtn.codes, .zeros = rtn.zeros, .scales = rtn.scales};
    assert_int_equal(qref_awq_pack("layer", &codes, layout, &m->packed, &err), QREF_OK);
    qref_awq_rtn_result_free(&rtn);
    free(weight);
    config_for(&m->config, layout, group_size, zero_point);
    m->linear = linear_of(&m->packed, out, in);
}

/* Runs the check and asserts exactly one finding, with this id and a message containing phrase. */
static void expect_finding(malformed_linear *m, const char *id, const char *phrase)
{
    qref_findings_free(&m->findings);
    qref_awq_check_linear(&m->linear, &m->config, &m->findings);
    print_findings(&m->findings);
    assert_int_equal(m->findings.count, 1);
    assert_string_equal(m->findings.items[0].id, id);
    if (strstr(m->findings.items[0].message, phrase) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", m->findings.items[0].message, phrase);
}

static void malformed_free(malformed_linear *m)
{
    qref_findings_free(&m->findings);
    qref_awq_packed_free(&m->packed);
}

static void finding_tensor_missing(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, true);
    m.linear.qzeros = NULL;
    expect_finding(&m, "awq.tensor.missing", "tensor \"layer.qzeros\": missing, expected an I32 tensor");
    malformed_free(&m);
}

static void finding_qzeros_missing_symmetric(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, false);
    m.linear.qzeros = NULL;
    expect_finding(&m, "awq.qzeros.missing", "zero points are read as 8");
    assert_int_equal(m.findings.items[0].severity, QREF_SEVERITY_WARNING);

    /* read with zero points 8: the same weights as with the stored qzeros */
    float with[16 * 256], without[16 * 256];
    qref_error err = {0};
    assert_int_equal(qref_awq_dequantize(&m.linear, &m.config, without, &err), QREF_OK);
    m.linear.qzeros = &m.packed.qzeros;
    assert_int_equal(qref_awq_dequantize(&m.linear, &m.config, with, &err), QREF_OK);
    assert_memory_equal(with, without, sizeof with);
    malformed_free(&m);
}

static void finding_dtype(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, true);
    m.packed.scales.dtype = QREF_DTYPE_BF16;
    expect_finding(&m, "awq.dtype", "tensor \"layer.scales\": dtype BF16, expected F16");
    malformed_free(&m);
}

static void finding_bits_declared(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, true);
    m.config.bits = 8;
    expect_finding(&m, "awq.bits", "declares bits 8, but AutoAWQ's GEMM and GEMV layouts hold only 4-bit codes");
    malformed_free(&m);
}

/* A qweight of [256, 4] is the GEMM packing of 16 outputs as 8-bit codes (4 per int32). */
static void finding_bits_stored(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, true);
    m.packed.qweight.shape[1] = 4; /* only the shape is read before the finding */
    expect_finding(&m, "awq.bits", "shape [256, 4] is the packing of 8-bit codes (4 per int32)");
    malformed_free(&m);
}

/* scales [4, 16] and qzeros [4, 2] are group size 64 while the config declares 128. */
static void finding_group_size_stored(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 64, true);
    m.config.group_size = 128;
    expect_finding(&m, "awq.group_size", "have the gemm shapes of group size 64, but the config (test config) "
                   "declares group size 128");
    malformed_free(&m);
}

static void finding_group_size_not_dividing(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, true);
    m.config.group_size = 96;
    expect_finding(&m, "awq.group_size", "group size 96 does not divide in_features 256");
    malformed_free(&m);
}

static void finding_group_size_gemv(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMV, 128, true);
    m.config.group_size = 16;
    expect_finding(&m, "awq.group_size", "group size 16 is not implemented by the GEMV layout");
    malformed_free(&m);
}

/* The GEMV tensors (qweight [16, 32], qzeros [16, 1], scales [16, 8]) declared GEMM. */
static void finding_layout_gemv_as_gemm(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMV, 128, true);
    m.config.layout = QREF_AWQ_LAYOUT_GEMM;
    snprintf(m.config.version, sizeof m.config.version, "gemm");
    expect_finding(&m, "awq.layout.mismatch", "the tensors have the gemv shapes (qweight [16, 32], scales [16, 8]), "
                   "but the config (test config) declares version \"gemm\"");
    malformed_free(&m);
}

static void finding_layout_gemm_as_gemv(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, true);
    m.config.layout = QREF_AWQ_LAYOUT_GEMV;
    snprintf(m.config.version, sizeof m.config.version, "gemv");
    expect_finding(&m, "awq.layout.mismatch", "the tensors have the gemm shapes (qweight [256, 2], scales [2, 16])");
    malformed_free(&m);
}

static void finding_shape(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, true);
    m.linear.out_features = 24; /* a linear whose tensors are too narrow for its features */
    expect_finding(&m, "awq.shape", "tensor \"layer.qweight\": shape [256, 2], expected [256, 3]");
    malformed_free(&m);
}

static void finding_scales_invalid(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMM, 128, true);
    uint8_t *scales = m.packed.buffers[2];
    qref_store_u16(scales + 2 * (1 * 16 + 5), 0x7e00); /* NaN at [1][5] */
    qref_store_u16(scales + 2 * (0 * 16 + 9), 0xbc00); /* -1 at [0][9] */
    expect_finding(&m, "awq.scales.invalid",
                   "scale nan (f16 0x7e00) at [1][5], expected a finite value > 0 (2 of 32 scales are not)");
    malformed_free(&m);
}

static void finding_zero_point_not_symmetric(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMV, 64, false);
    /* row 3, word 0: field 1 (group 1) becomes 9 */
    uint8_t *word = m.packed.buffers[1] + 4 * (3 * 2 + 0);
    qref_store_u32(word, (qref_load_u32(word) & ~0xf0u) | 0x90u);
    expect_finding(&m, "awq.zero_point.not_symmetric", "zero point 9 at [3][1], expected 8");
    malformed_free(&m);
}

static void finding_gemv_padding(void **state)
{
    (void)state;
    malformed_linear m;
    malformed_init(&m, QREF_AWQ_LAYOUT_GEMV, 64, true);
    /* qzeros [16, 2]: 4 groups use fields 0..3 of word 0; field 6 of word 1 is padding */
    uint8_t *word = m.packed.buffers[1] + 4 * (2 * 2 + 1);
    qref_store_u32(word, 0x05000000u);
    expect_finding(&m, "awq.qzeros.padding", "row 2, field 14 (word 1, bits 24..27) holds 5, expected 0");
    assert_int_equal(m.findings.items[0].severity, QREF_SEVERITY_WARNING);
    qref_store_u32(word, 0);

    /* scales [16, 16]: columns 4..15 are padding */
    qref_store_u16(m.packed.buffers[2] + 2 * (7 * 16 + 11), 0x3C00);
    expect_finding(&m, "awq.scales.padding", "padding column [7][11] holds 1 (f16 0x3c00), expected 0");
    assert_int_equal(m.findings.items[0].severity, QREF_SEVERITY_WARNING);
    malformed_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gemm_word_codes_0_to_7),
        cmocka_unit_test(gemm_word_high_codes),
        cmocka_unit_test(gemm_word_reverse_order),
        cmocka_unit_test(gemv_word_natural_order),
        cmocka_unit_test(gemv_zeros_width_table),
        cmocka_unit_test(gemm_tensors_by_hand),
        cmocka_unit_test(gemv_tensors_by_hand),
        cmocka_unit_test(dequantize_rounding_by_layout),
        cmocka_unit_test(gemm_fp16_overflow),
        cmocka_unit_test(round_trip_gemm),
        cmocka_unit_test(round_trip_gemv),
        cmocka_unit_test(pack_rejects),
        cmocka_unit_test(finding_tensor_missing),
        cmocka_unit_test(finding_qzeros_missing_symmetric),
        cmocka_unit_test(finding_dtype),
        cmocka_unit_test(finding_bits_declared),
        cmocka_unit_test(finding_bits_stored),
        cmocka_unit_test(finding_group_size_stored),
        cmocka_unit_test(finding_group_size_not_dividing),
        cmocka_unit_test(finding_group_size_gemv),
        cmocka_unit_test(finding_layout_gemv_as_gemm),
        cmocka_unit_test(finding_layout_gemm_as_gemv),
        cmocka_unit_test(finding_shape),
        cmocka_unit_test(finding_scales_invalid),
        cmocka_unit_test(finding_zero_point_not_symmetric),
        cmocka_unit_test(finding_gemv_padding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
