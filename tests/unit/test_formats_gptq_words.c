/*
 * GPTQ packing in GPTQModel's pack_dtype words (int8, int16, int32, int64) and the act-order
 * group index, against vectors worked by hand.
 *
 * Expected words follow GPTQModel's pack_original (gptqmodel/nn_modules/qlinear/__init__.py,
 * read at commit 00f3d5e): for b = 2, 4, 8 and W-bit words, row r of qweight contains inputs
 * r * W/b .. r * W/b + W/b - 1 with input r * W/b + j at bits [b*j, b*j + b), and qzeros
 * packs outputs the same way; words are stored little-endian in signed containers. The
 * act-order g_idx follows fasterquant in AutoGPTQ's auto_gptq/quantization/gptq.py: the
 * groups are formed in the permuted order and g_idx[i] is the position of column i in that
 * order divided by the group size.
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_gptq.h"

static void config_for(qref_gptq_config *config, int bits, long group_size, qref_gptq_format format, int pack_bits)
{
    qref_gptq_config_init(config);
    config->bits = bits;
    config->group_size = group_size;
    config->sym = false;
    config->format = format;
    config->pack_bits = pack_bits;
    config->declared = QREF_GPTQ_KEY_BITS | QREF_GPTQ_KEY_GROUP_SIZE | QREF_GPTQ_KEY_SYM | QREF_GPTQ_KEY_DESC_ACT |
                       QREF_GPTQ_KEY_FORMAT | QREF_GPTQ_KEY_PACK_DTYPE;
}

/* Reads word index of a packed tensor as an unsigned value of its width. */
static uint64_t word_at(const qref_tensor *tensor, size_t index)
{
    size_t size = qref_dtype_size(tensor->dtype);
    uint64_t value = 0;
    for (size_t k = 0; k < size; k++)
        value |= (uint64_t)tensor->data[index * size + k] << (8 * k);
    return value;
}

static qref_gptq_linear linear_of(const qref_gptq_packed *packed, int64_t out, int64_t in)
{
    qref_gptq_linear linear = {.prefix = "layer", .qweight = &packed->qweight, .qzeros = &packed->qzeros,
                               .scales = &packed->scales, .g_idx = &packed->g_idx, .out_features = out,
                               .in_features = in};
    return linear;
}

/* Unpacks packed with config and compares with codes; the check must raise no finding. */
static void expect_unpacked(const qref_gptq_packed *packed, const qref_gptq_config *config,
                            const qref_gptq_codes *codes)
{
    qref_gptq_linear linear = linear_of(packed, codes->out_features, codes->in_features);
    qref_findings findings = {0};
    qref_error err = {0};
    assert_int_equal(qref_gptq_check_findings(&linear, config, &findings, &err), QREF_OK);
    assert_int_equal(findings.count, 0);
    qref_findings_free(&findings);
    qref_gptq_codes unpacked;
    assert_int_equal(qref_gptq_unpack(&linear, config, &unpacked, &err), QREF_OK);
    assert_memory_equal(unpacked.codes, codes->codes, (size_t)(codes->out_features * codes->in_features));
    assert_memory_equal(unpacked.zeros, codes->zeros, (size_t)(codes->out_features * codes->groups));
    qref_gptq_codes_free(&unpacked);
}

/*
 * 4-bit, in = 16, out = 16, one group. code[o][i] = (i + o) % 16 and zero[o] = o % 15 + 1,
 * so v1 stores the fields 0, 1, ..., 14, 0 and v2 the fields 1, 2, ..., 15, 1.
 *
 * qweight column o is the nibble stream o, o + 1, ..., (o + 15) % 16 (input 0 first):
 *   int64, 16 * 4 / 64 = 1 row:  o = 0: 0xfedcba9876543210   o = 1: 0x0fedcba987654321
 *                                o = 15: 0xedcba9876543210f
 *   int32, 2 rows:               o = 0: 0x76543210, 0xfedcba98
 *                                o = 15: 0x6543210f, 0xedcba987
 *   int16, 4 rows:               o = 0: 0x3210, 0x7654, 0xba98, 0xfedc
 *                                o = 15: 0x210f, 0x6543, 0xa987, 0xedcb
 *   int8, 8 rows:                o = 0: 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe
 *                                o = 15: 0x0f, 0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed
 * qzeros, one row of 16 fields, field k at bits [4k, 4k + 4) of the stream:
 *   v1 (0, 1, ..., 14, 0):  int64 0x0edcba9876543210; int32 0x76543210, 0x0edcba98;
 *                           int16 0x3210, 0x7654, 0xba98, 0x0edc; int8 0x10, 0x32, ..., 0xdc, 0x0e
 *   v2 (1, 2, ..., 15, 1):  int64 0x1fedcba987654321; int32 0x87654321, 0x1fedcba9;
 *                           int16 0x4321, 0x8765, 0xcba9, 0x1fed; int8 0x21, 0x43, ..., 0xed, 0x1f
 */
static void test_gptq_words_4bit_vector(void **state)
{
    (void)state;
    enum { OUT = 16, IN = 16 };
    uint8_t code_data[OUT * IN], zero_data[OUT];
    float scale_data[OUT];
    for (int o = 0; o < OUT; o++) {
        zero_data[o] = (uint8_t)(o % 15 + 1);
        scale_data[o] = 0.5f;
        for (int i = 0; i < IN; i++)
            code_data[o * IN + i] = (uint8_t)((i + o) % 16);
    }
    qref_gptq_codes codes = {.bits = 4, .out_features = OUT, .in_features = IN, .group_size = IN, .groups = 1,
                             .scale_dtype = QREF_DTYPE_F16, .codes = code_data, .zeros = zero_data,
                             .scales = scale_data, .g_idx = NULL};

    static const struct {
        int bits;
        qref_dtype dtype;
        int rows;
        uint64_t column0[8], column15[8], v1_zeros[8], v2_zeros[8];
    } cases[] = {
        {64, QREF_DTYPE_I64, 1, {0xfedcba9876543210u}, {0xedcba9876543210fu}, {0x0edcba9876543210u},
         {0x1fedcba987654321u}},
        {32, QREF_DTYPE_I32, 2, {0x76543210, 0xfedcba98}, {0x6543210f, 0xedcba987}, {0x76543210, 0x0edcba98},
         {0x87654321, 0x1fedcba9}},
        {16, QREF_DTYPE_I16, 4, {0x3210, 0x7654, 0xba98, 0xfedc}, {0x210f, 0x6543, 0xa987, 0xedcb},
         {0x3210, 0x7654, 0xba98, 0x0edc}, {0x4321, 0x8765, 0xcba9, 0x1fed}},
        {8, QREF_DTYPE_I8, 8, {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe},
         {0x0f, 0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed}, {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0x0e},
         {0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x1f}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int format = QREF_GPTQ_FORMAT_V1; format <= QREF_GPTQ_FORMAT_V2; format++) {
            qref_gptq_packed packed;
            qref_error err = {0};
            assert_int_equal(qref_gptq_pack_words("layer", &codes, (qref_gptq_format)format, cases[c].bits, &packed,
                                                  &err),
                             QREF_OK);
            assert_int_equal(packed.qweight.dtype, cases[c].dtype);
            assert_int_equal(packed.qzeros.dtype, cases[c].dtype);
            assert_int_equal(packed.qweight.shape[0], cases[c].rows);
            assert_int_equal(packed.qweight.shape[1], OUT);
            assert_int_equal(packed.qzeros.shape[0], 1);
            assert_int_equal(packed.qzeros.shape[1], cases[c].rows);
            const uint64_t *zeros = format == QREF_GPTQ_FORMAT_V1 ? cases[c].v1_zeros : cases[c].v2_zeros;
            for (int r = 0; r < cases[c].rows; r++) {
                /* qweight[r][o] is word r * OUT + o. */
                assert_int_equal(word_at(&packed.qweight, (size_t)r * OUT + 0), cases[c].column0[r]);
                assert_int_equal(word_at(&packed.qweight, (size_t)r * OUT + 15), cases[c].column15[r]);
                assert_int_equal(word_at(&packed.qzeros, (size_t)r), zeros[r]);
            }
            /* column 1 of int64: 0x0fedcba987654321 */
            if (cases[c].bits == 64)
                assert_int_equal(word_at(&packed.qweight, 1), 0x0fedcba987654321u);

            qref_gptq_config config;
            config_for(&config, 4, -1, (qref_gptq_format)format, cases[c].bits);
            expect_unpacked(&packed, &config, &codes);
            qref_gptq_packed_free(&packed);
        }
    }
}

/*
 * 2-bit codes in int8 and 8-bit codes in int16, one output, sym zero 2^(b-1), v2:
 *   2-bit, in = 8, codes 0,1,2,3,3,2,1,0: byte 0 = 0 | 1 << 2 | 2 << 4 | 3 << 6 = 0xe4,
 *     byte 1 = 3 | 2 << 2 | 1 << 4 | 0 << 6 = 0x1b; the zero 2 = 0b10 fills 2 bits of a
 *     1-byte row, bits 2..7 padding: 0x02.
 *   8-bit, in = 4, codes 0x12, 0x34, 0x56, 0x78: words 0x3412, 0x7856; zero 128 in a 16-bit
 *     word, bits 8..15 padding: 0x0080.
 */
static void test_gptq_words_2bit_and_8bit_vectors(void **state)
{
    (void)state;
    uint8_t codes2[8] = {0, 1, 2, 3, 3, 2, 1, 0}, zero2 = 2;
    uint8_t codes8[4] = {0x12, 0x34, 0x56, 0x78}, zero8 = 128;
    float scale = 0.25f;
    qref_gptq_codes two = {.bits = 2, .out_features = 1, .in_features = 8, .group_size = 8, .groups = 1,
                           .scale_dtype = QREF_DTYPE_F16, .codes = codes2, .zeros = &zero2, .scales = &scale};
    qref_gptq_codes eight = {.bits = 8, .out_features = 1, .in_features = 4, .group_size = 4, .groups = 1,
                             .scale_dtype = QREF_DTYPE_F16, .codes = codes8, .zeros = &zero8, .scales = &scale};
    qref_gptq_packed packed;
    qref_error err = {0};
    qref_gptq_config config;

    assert_int_equal(qref_gptq_pack_words("layer", &two, QREF_GPTQ_FORMAT_V2, 8, &packed, &err), QREF_OK);
    assert_int_equal(packed.qweight.shape[0], 2);
    assert_int_equal(word_at(&packed.qweight, 0), 0xe4);
    assert_int_equal(word_at(&packed.qweight, 1), 0x1b);
    assert_int_equal(word_at(&packed.qzeros, 0), 0x02);
    config_for(&config, 2, -1, QREF_GPTQ_FORMAT_V2, 8);
    expect_unpacked(&packed, &config, &two);
    qref_gptq_packed_free(&packed);

    assert_int_equal(qref_gptq_pack_words("layer", &eight, QREF_GPTQ_FORMAT_V2, 16, &packed, &err), QREF_OK);
    assert_int_equal(packed.qweight.shape[0], 2);
    assert_int_equal(word_at(&packed.qweight, 0), 0x3412);
    assert_int_equal(word_at(&packed.qweight, 1), 0x7856);
    assert_int_equal(word_at(&packed.qzeros, 0), 0x0080);
    config_for(&config, 8, -1, QREF_GPTQ_FORMAT_V2, 16);
    expect_unpacked(&packed, &config, &eight);
    qref_gptq_packed_free(&packed);

    /* 3-bit codes exist only in int32 words. */
    uint8_t codes3[32] = {0}, zero3 = 4;
    qref_gptq_codes three = {.bits = 3, .out_features = 1, .in_features = 32, .group_size = 32, .groups = 1,
                             .scale_dtype = QREF_DTYPE_F16, .codes = codes3, .zeros = &zero3, .scales = &scale};
    assert_int_equal(qref_gptq_pack_words("layer", &three, QREF_GPTQ_FORMAT_V2, 16, &packed, &err),
                     QREF_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "3-bit codes in int16 words are not supported"));
    qref_gptq_packed_free(&packed);
    assert_int_equal(qref_gptq_pack_words("layer", &three, QREF_GPTQ_FORMAT_V2, 24, &packed, &err),
                     QREF_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "24-bit words are not supported"));
    qref_gptq_packed_free(&packed);
}

/*
 * Act-order, in = 8, G = 4, out = 2. Suppose the columns are quantized in the order
 * perm = [5, 2, 7, 0, 1, 6, 3, 4] (perm[k] is the column at position k). Positions 0..3
 * form group 0 = {5, 2, 7, 0} and positions 4..7 group 1 = {1, 6, 3, 4}, so
 *   g_idx = [pos(0)/4, ..., pos(7)/4] = [3/4, 4/4, 1/4, 6/4, 7/4, 0/4, 5/4, 2/4]
 *         = [0, 1, 0, 1, 1, 0, 1, 0].
 * With code[o][i] = i + o, zeros z[g][o] = 2 + g and scales s[g][o] = 0.5 / (g + 1):
 *   W[0][3] (group 1): 0.25 * (3 - 3) = 0        W[0][5] (group 0): 0.5 * (5 - 2) = 1.5
 *   W[1][4] (group 1): 0.25 * (5 - 3) = 0.5      W[1][0] (group 0): 0.5 * (1 - 2) = -0.5
 */
static void test_gptq_words_act_order_vector(void **state)
{
    (void)state;
    const int32_t perm[8] = {5, 2, 7, 0, 1, 6, 3, 4};
    int32_t g_idx[8];
    qref_gptq_g_idx_from_order(perm, 8, 4, g_idx);
    const int32_t expected_g_idx[8] = {0, 1, 0, 1, 1, 0, 1, 0};
    assert_memory_equal(g_idx, expected_g_idx, sizeof g_idx);

    uint8_t code_data[2 * 8], zero_data[2 * 2];
    float scale_data[2 * 2];
    for (int o = 0; o < 2; o++) {
        for (int i = 0; i < 8; i++)
            code_data[o * 8 + i] = (uint8_t)(i + o);
        for (int g = 0; g < 2; g++) {
            zero_data[o * 2 + g] = (uint8_t)(2 + g);
            scale_data[o * 2 + g] = 0.5f / (float)(g + 1);
        }
    }
    qref_gptq_codes codes = {.bits = 4, .out_features = 2, .in_features = 8, .group_size = 4, .groups = 2,
                             .scale_dtype = QREF_DTYPE_F16, .codes = code_data, .zeros = zero_data,
                             .scales = scale_data, .g_idx = g_idx};
    qref_gptq_packed packed;
    qref_error err = {0};
    assert_int_equal(qref_gptq_pack_words("layer", &codes, QREF_GPTQ_FORMAT_V2, 16, &packed, &err), QREF_OK);
    for (int i = 0; i < 8; i++)
        assert_int_equal((int32_t)qref_load_u32(packed.g_idx.data + 4 * i), expected_g_idx[i]);

    qref_gptq_config config;
    config_for(&config, 4, 4, QREF_GPTQ_FORMAT_V2, 16);
    config.desc_act = true;
    expect_unpacked(&packed, &config, &codes);
    float dense[16];
    qref_gptq_linear linear = linear_of(&packed, 2, 8);
    assert_int_equal(qref_gptq_dequantize(&linear, &config, dense, &err), QREF_OK);
    assert_true(dense[0 * 8 + 3] == 0.0f);
    assert_true(dense[0 * 8 + 5] == 1.5f);
    assert_true(dense[1 * 8 + 4] == 0.5f);
    assert_true(dense[1 * 8 + 0] == -0.5f);
    qref_gptq_packed_free(&packed);
}

/*
 * The act-order proxy of quantize --desc-act: columns by descending squared norm, ties by
 * index. weight [2][5] = [[1, -3, 0, 2, 2], [0, 1, 0, -2, 2]] has column norms
 * 1, 10, 0, 8, 8, so the order is [1, 3, 4, 0, 2] (3 before 4 on the tie of 8).
 */
static void test_gptq_words_column_norm_order(void **state)
{
    (void)state;
    const float weight[10] = {1, -3, 0, 2, 2, 0, 1, 0, -2, 2};
    int32_t perm[5];
    qref_error err = {0};
    assert_int_equal(qref_gptq_order_by_column_norm(weight, 2, 5, perm, &err), QREF_OK);
    const int32_t expected[5] = {1, 3, 4, 0, 2};
    assert_memory_equal(perm, expected, sizeof perm);

    /* With groups of 2: positions 0-1 -> group 0, 2-3 -> group 1, 4 -> group 2. */
    int32_t g_idx[5];
    qref_gptq_g_idx_from_order(perm, 5, 2, g_idx);
    const int32_t expected_g_idx[5] = {1, 0, 2, 0, 1};
    assert_memory_equal(g_idx, expected_g_idx, sizeof g_idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gptq_words_4bit_vector),
        cmocka_unit_test(test_gptq_words_2bit_and_8bit_vectors),
        cmocka_unit_test(test_gptq_words_act_order_vector),
        cmocka_unit_test(test_gptq_words_column_norm_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
