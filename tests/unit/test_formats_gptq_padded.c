/*
 * GPTQ linears whose widths do not fill whole 32-bit words (formats/qref_gptq.h): the bit
 * stream of a qweight column or qzeros row ends in a partly used word whose high bits are
 * zero padding. Hand-worked packing vectors at 4, 3 and 2 bits with in = out = 12, round
 * trips through the RTN quantizer on stories260k-like widths (64 and 172), and one malformed
 * case per padding check.
 *
 * Expected words come from the arithmetic in the comments: element k of a stream occupies
 * bits [b*k, b*k + b), the rule of AutoGPTQ's pack() in qlinear_cuda_old.py, continued past
 * the last whole word.
 */
#include "test_support.h"

#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_gptq.h"
#include "quant/qref_rtn.h"

enum { HAND_WIDTH = 12 };

/* A 12 x 12 linear with one group and constant scale. */
typedef struct hand_layer {
    qref_gptq_codes codes;
    uint8_t code_data[HAND_WIDTH * HAND_WIDTH];
    uint8_t zero_data[HAND_WIDTH];
    float scale_data[HAND_WIDTH];
} hand_layer;

/* Fills code[o][i] = (i + o) % 2^bits, scale 0.5 and the given zero points. */
static void hand_layer_init(hand_layer *layer, int bits, const uint8_t *zeros)
{
    memset(layer, 0, sizeof *layer);
    layer->codes = (qref_gptq_codes){.bits = bits, .out_features = HAND_WIDTH, .in_features = HAND_WIDTH,
                                     .group_size = HAND_WIDTH, .groups = 1, .scale_dtype = QREF_DTYPE_F16,
                                     .codes = layer->code_data, .zeros = layer->zero_data,
                                     .scales = layer->scale_data, .g_idx = NULL};
    for (int o = 0; o < HAND_WIDTH; o++) {
        layer->zero_data[o] = zeros[o];
        layer->scale_data[o] = 0.5f;
        for (int i = 0; i < HAND_WIDTH; i++)
            layer->code_data[o * HAND_WIDTH + i] = (uint8_t)((i + o) % (1 << bits));
    }
}

static void config_for(qref_gptq_config *config, int bits, long group_size, bool sym, qref_gptq_format format)
{
    qref_gptq_config_init(config);
    config->bits = bits;
    config->group_size = group_size;
    config->sym = sym;
    config->desc_act = false;
    config->format = format;
    config->declared = QREF_GPTQ_KEY_BITS | QREF_GPTQ_KEY_GROUP_SIZE | QREF_GPTQ_KEY_SYM |
                       QREF_GPTQ_KEY_DESC_ACT | QREF_GPTQ_KEY_FORMAT;
}

static qref_gptq_linear linear_of(const qref_gptq_packed *packed, int64_t out, int64_t in)
{
    qref_gptq_linear linear = {.prefix = "layer", .qweight = &packed->qweight, .qzeros = &packed->qzeros,
                               .scales = &packed->scales, .g_idx = &packed->g_idx, .out_features = out,
                               .in_features = in};
    return linear;
}

/*
 * Packs layer in format, compares qweight (rows x 12 words, row-major) and qzeros (one row)
 * with the expected words, then checks and unpacks it back to the same codes and zeros.
 */
static void pack_and_compare(const hand_layer *layer, qref_gptq_format format, bool sym, const uint32_t *qweight,
                             int64_t qweight_rows, const uint32_t *qzeros, int64_t qzeros_cols)
{
    qref_gptq_packed packed;
    qref_error err = {0};
    assert_int_equal(qref_gptq_pack("layer", &layer->codes, format, &packed, &err), QREF_OK);
    assert_int_equal(packed.qweight.shape[0], qweight_rows);
    assert_int_equal(packed.qweight.shape[1], HAND_WIDTH);
    assert_int_equal(packed.qzeros.shape[0], 1);
    assert_int_equal(packed.qzeros.shape[1], qzeros_cols);
    for (int64_t k = 0; k < qweight_rows * HAND_WIDTH; k++)
        assert_int_equal(qref_load_u32(packed.qweight.data + 4 * k), qweight[k]);
    for (int64_t k = 0; k < qzeros_cols; k++)
        assert_int_equal(qref_load_u32(packed.qzeros.data + 4 * k), qzeros[k]);

    qref_gptq_config config;
    config_for(&config, layer->codes.bits, -1, sym, format);
    qref_gptq_linear linear = linear_of(&packed, HAND_WIDTH, HAND_WIDTH);
    qref_gptq_codes unpacked;
    assert_int_equal(qref_gptq_unpack(&linear, &config, &unpacked, &err), QREF_OK);
    assert_memory_equal(unpacked.codes, layer->code_data, sizeof layer->code_data);
    assert_memory_equal(unpacked.zeros, layer->zero_data, sizeof layer->zero_data);
    qref_gptq_codes_free(&unpacked);
    qref_gptq_packed_free(&packed);
}

/* ---- hand-worked packing vectors --------------------------------------------------------- */

/*
 * 4-bit, in = out = 12: 12 * 4 = 48 bits, so ceil(48 / 32) = 2 qweight rows and 2 qzeros
 * columns; bits 16..31 of the second word are padding.
 * Column o contains codes (o + i) % 16 as nibbles, i = 0..11:
 *   o = 0:  w0 = nibbles 0..7              = 0x76543210,  w1 = nibbles 8,9,a,b = 0x0000ba98
 *   o = 5:  w0 = nibbles 5..c              = 0xcba98765,  w1 = nibbles d,e,f,0 = 0x00000fed
 *   o = 9:  w0 = nibbles 9,a,..,f,0        = 0x0fedcba9,  w1 = nibbles 1,2,3,4 = 0x00004321
 *   o = 11: w0 = nibbles b,..,f,0,1,2      = 0x210fedcb,  w1 = nibbles 3,4,5,6 = 0x00006543
 * Zero point of output o is o + 1: v2 stores o + 1 = 1..12 (0x87654321, then 9,a,b,c =
 * 0x0000cba9), v1 stores o = 0..11 (0x76543210, then 8,9,a,b = 0x0000ba98).
 */
static void test_gptq_padded_4bit_vector(void **state)
{
    (void)state;
    uint8_t zeros[HAND_WIDTH];
    for (int o = 0; o < HAND_WIDTH; o++)
        zeros[o] = (uint8_t)(o + 1);
    hand_layer layer;
    hand_layer_init(&layer, 4, zeros);
    const uint32_t qweight[2 * HAND_WIDTH] = {
        0x76543210, 0x87654321, 0x98765432, 0xa9876543, 0xba987654, 0xcba98765,
        0xdcba9876, 0xedcba987, 0xfedcba98, 0x0fedcba9, 0x10fedcba, 0x210fedcb,
        0x0000ba98, 0x0000cba9, 0x0000dcba, 0x0000edcb, 0x0000fedc, 0x00000fed,
        0x000010fe, 0x0000210f, 0x00003210, 0x00004321, 0x00005432, 0x00006543,
    };
    const uint32_t v1_zeros[2] = {0x76543210, 0x0000ba98};
    const uint32_t v2_zeros[2] = {0x87654321, 0x0000cba9};
    pack_and_compare(&layer, QREF_GPTQ_FORMAT_V1, false, qweight, 2, v1_zeros, 2);
    pack_and_compare(&layer, QREF_GPTQ_FORMAT_V2, false, qweight, 2, v2_zeros, 2);
}

/*
 * 3-bit, in = out = 12: 36 bits, so 2 qweight rows and 2 qzeros columns. w0 contains codes 0..9
 * at bits 3e and the low two bits of code 10 at bits 30-31; w1 contains bit 2 of code 10 at bit
 * 0 and code 11 at bits 1-3; bits 4..31 of w1 are padding. Column o contains (o + i) % 8.
 *   o = 0: codes 0,1,..,7,0,1, code 10 = 2, code 11 = 3
 *     w0 = 1<<3 + 2<<6 + 3<<9 + 4<<12 + 5<<15 + 6<<18 + 7<<21 + 1<<27 + (2 & 3)<<30
 *        = 0x8 + 0x80 + 0x600 + 0x4000 + 0x28000 + 0x180000 + 0xe00000 + 0x8000000
 *          + 0x80000000 = 0x88fac688
 *     w1 = (2 >> 2) + 3<<1 = 0x00000006
 *   o = 1: codes 1,2,..,7,0,1,2, code 10 = 3, code 11 = 4
 *     w0 = 1 + 2<<3 + 3<<6 + 4<<9 + 5<<12 + 6<<15 + 7<<18 + 1<<24 + 2<<27 + (3 & 3)<<30
 *        = 0x1 + 0x10 + 0xc0 + 0x800 + 0x5000 + 0x30000 + 0x1c0000 + 0x1000000
 *          + 0x10000000 + 0xc0000000 = 0xd11f58d1
 *     w1 = (3 >> 2) + 4<<1 = 0x00000008
 *   o = 5: code 10 = 15 % 8 = 7 and code 11 = 0, so w1 = (7 >> 2) + 0 = 0x00000001
 * The codes repeat with period 8 in o, so columns 8..11 equal columns 0..3.
 * Zero points are 4 (sym). v1 stores 3 = 0b011 in 12 fields: w0 = 0xdb6db6db (fields 0..9 and
 * the low bits 0b11 of field 10), w1 = (3 >> 2) + 3<<1 = 0x00000006. v2 stores 0b100:
 * w0 = 0x24924924 (the low bits of field 10 are 0b00), w1 = (4 >> 2) + 4<<1 = 0x00000009.
 */
static void test_gptq_padded_3bit_vector(void **state)
{
    (void)state;
    uint8_t zeros[HAND_WIDTH];
    memset(zeros, 4, sizeof zeros);
    hand_layer layer;
    hand_layer_init(&layer, 3, zeros);
    const uint32_t qweight[2 * HAND_WIDTH] = {
        0x88fac688, 0xd11f58d1, 0x1a23eb1a, 0x63447d63, 0xac688fac, 0xf58d11f5,
        0x3eb1a23e, 0x47d63447, 0x88fac688, 0xd11f58d1, 0x1a23eb1a, 0x63447d63,
        0x00000006, 0x00000008, 0x0000000b, 0x0000000d, 0x0000000f, 0x00000001,
        0x00000002, 0x00000004, 0x00000006, 0x00000008, 0x0000000b, 0x0000000d,
    };
    const uint32_t v1_zeros[2] = {0xdb6db6db, 0x00000006};
    const uint32_t v2_zeros[2] = {0x24924924, 0x00000009};
    pack_and_compare(&layer, QREF_GPTQ_FORMAT_V1, true, qweight, 2, v1_zeros, 2);
    pack_and_compare(&layer, QREF_GPTQ_FORMAT_V2, true, qweight, 2, v2_zeros, 2);
}

/*
 * 2-bit, in = out = 12: 24 bits, so 1 qweight row and 1 qzeros column, bits 24..31 padding.
 * Column o contains (o + i) % 4, so each byte is 4 fields with period 4 and the top byte is 0:
 *   o % 4 = 0: fields 0,1,2,3 = 0b11_10_01_00 = 0xe4 -> 0x00e4e4e4
 *   o % 4 = 1: fields 1,2,3,0 = 0b00_11_10_01 = 0x39 -> 0x00393939
 *   o % 4 = 2: fields 2,3,0,1 = 0b01_00_11_10 = 0x4e -> 0x004e4e4e
 *   o % 4 = 3: fields 3,0,1,2 = 0b10_01_00_11 = 0x93 -> 0x00939393
 * Zero points are 2 (sym): v1 stores 0b01 in 12 fields = 0x00555555, v2 0b10 = 0x00aaaaaa.
 */
static void test_gptq_padded_2bit_vector(void **state)
{
    (void)state;
    uint8_t zeros[HAND_WIDTH];
    memset(zeros, 2, sizeof zeros);
    hand_layer layer;
    hand_layer_init(&layer, 2, zeros);
    const uint32_t by_phase[4] = {0x00e4e4e4, 0x00393939, 0x004e4e4e, 0x00939393};
    uint32_t qweight[HAND_WIDTH];
    for (int o = 0; o < HAND_WIDTH; o++)
        qweight[o] = by_phase[o % 4];
    const uint32_t v1_zeros[1] = {0x00555555};
    const uint32_t v2_zeros[1] = {0x00aaaaaa};
    pack_and_compare(&layer, QREF_GPTQ_FORMAT_V1, true, qweight, 1, v1_zeros, 1);
    pack_and_compare(&layer, QREF_GPTQ_FORMAT_V2, true, qweight, 1, v2_zeros, 1);
}

/* ---- round trips through RTN ------------------------------------------------------------- */

static void fill_weights(float *weight, size_t count, uint64_t seed)
{
    test_rng rng = {seed};
    for (size_t k = 0; k < count; k++)
        weight[k] = 0.02f * test_rng_float(&rng);
}

static bool has_zero_point_zero(const qref_rtn_result *rtn)
{
    for (size_t k = 0; k < rtn->rows * rtn->groups; k++) {
        if (rtn->zeros[k] == 0)
            return true;
    }
    return false;
}

/* Checks one RTN result through pack, check, unpack and dequantize. */
static void roundtrip_one(const qref_rtn_result *rtn, long group_size, bool sym, qref_gptq_format format,
                          float *dense)
{
    const int64_t out = (int64_t)rtn->rows, in = (int64_t)rtn->cols;
    qref_gptq_codes codes = {.bits = rtn->bits, .out_features = out, .in_features = in,
                             .group_size = (int64_t)rtn->group_size, .groups = (int64_t)rtn->groups,
                             .scale_dtype = QREF_DTYPE_F16, .codes = rtn->codes, .zeros = rtn->zeros,
                             .scales = rtn->scales, .g_idx = NULL};
    qref_gptq_packed packed;
    qref_error err = {0};
    assert_int_equal(qref_gptq_pack("layer", &codes, format, &packed, &err), QREF_OK);
    assert_int_equal(packed.qweight.shape[0], (in * rtn->bits + 31) / 32);
    assert_int_equal(packed.qzeros.shape[1], (out * rtn->bits + 31) / 32);

    qref_gptq_config config;
    config_for(&config, rtn->bits, group_size, sym, format);
    qref_gptq_linear linear = linear_of(&packed, out, in);
    qref_gptq_codes unpacked;
    assert_int_equal(qref_gptq_unpack(&linear, &config, &unpacked, &err), QREF_OK);
    assert_memory_equal(unpacked.codes, rtn->codes, (size_t)(out * in));
    assert_memory_equal(unpacked.zeros, rtn->zeros, rtn->rows * rtn->groups);
    qref_gptq_codes_free(&unpacked);

    /* The dense weight is f16(f16(scale) * (q - z)), as AutoGPTQ's forward computes it. */
    assert_int_equal(qref_gptq_dequantize(&linear, &config, dense, &err), QREF_OK);
    for (int64_t o = 0; o < out; o++) {
        for (int64_t i = 0; i < in; i++) {
            size_t g = (size_t)o * rtn->groups + (size_t)i / rtn->group_size;
            float scale = qref_f16_to_f32(qref_f32_to_f16(rtn->scales[g]));
            int offset = (int)rtn->codes[o * in + i] - (int)rtn->zeros[g];
            float expected = qref_f16_to_f32(qref_f32_to_f16(scale * (float)offset));
            assert_true(dense[o * in + i] == expected);
        }
    }
    qref_gptq_packed_free(&packed);
}

/*
 * Every width, sym and asym, per-channel and group 4, v1 and v2, on shapes whose in and out
 * are not multiples of 32: [12, 12], [20, 44], stories260k's up_proj [172, 64] and its
 * down_proj [64, 172]. v1 is used only when no zero point is 0 (pack rejects it otherwise,
 * which is asserted too).
 */
static void test_gptq_padded_roundtrip(void **state)
{
    (void)state;
    static const int64_t shapes[][2] = {{12, 12}, {20, 44}, {172, 64}, {64, 172}};
    static const int widths[] = {2, 3, 4, 8};
    static const long group_sizes[] = {-1, 4};
    float *weight = malloc(172 * 64 * sizeof(float));
    float *dense = malloc(172 * 64 * sizeof(float));
    assert_non_null(weight);
    assert_non_null(dense);

    int v1_rejections = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t out = shapes[s][0], in = shapes[s][1];
        fill_weights(weight, (size_t)(out * in), 1000 + s);
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
            for (int sym = 0; sym <= 1; sym++) {
                for (size_t gs = 0; gs < sizeof group_sizes / sizeof group_sizes[0]; gs++) {
                    qref_rtn_config rtn_config = {.bits = widths[w], .group_size = group_sizes[gs], .sym = sym};
                    qref_rtn_result rtn;
                    qref_error err = {0};
                    assert_int_equal(qref_rtn_quantize("w", weight, (size_t)out, (size_t)in, &rtn_config, &rtn,
                                                       &err),
                                     QREF_OK);
                    roundtrip_one(&rtn, group_sizes[gs], sym, QREF_GPTQ_FORMAT_V2, dense);
                    if (!has_zero_point_zero(&rtn)) {
                        roundtrip_one(&rtn, group_sizes[gs], sym, QREF_GPTQ_FORMAT_V1, dense);
                    } else {
                        qref_gptq_codes codes = {.bits = rtn.bits, .out_features = out, .in_features = in,
                                                 .group_size = (int64_t)rtn.group_size,
                                                 .groups = (int64_t)rtn.groups, .scale_dtype = QREF_DTYPE_F16,
                                                 .codes = rtn.codes, .zeros = rtn.zeros, .scales = rtn.scales};
                        qref_gptq_packed packed;
                        assert_int_equal(qref_gptq_pack("layer", &codes, QREF_GPTQ_FORMAT_V1, &packed, &err),
                                         QREF_ERR_INVALID);
                        assert_non_null(strstr(err.message, "zero point 0"));
                        qref_gptq_packed_free(&packed);
                        v1_rejections++;
                    }
                    qref_rtn_result_free(&rtn);
                }
            }
        }
    }
    /* Group 4 on these weights gives all-positive groups, so both branches ran. */
    assert_true(v1_rejections > 0);
    free(weight);
    free(dense);
}

/* ---- malformed padding ------------------------------------------------------------------- */

/* A 4-bit, per-channel, v2 packing of the hand layer, with writable copies of its tensors. */
typedef struct padded_fixture {
    hand_layer layer;
    qref_gptq_packed packed;
    uint8_t qweight[2 * HAND_WIDTH * 4];
    uint8_t qzeros[2 * 4];
    qref_tensor qweight_view, qzeros_view;
    qref_gptq_linear linear;
    qref_gptq_config config;
} padded_fixture;

static void padded_fixture_init(padded_fixture *f)
{
    uint8_t zeros[HAND_WIDTH];
    for (int o = 0; o < HAND_WIDTH; o++)
        zeros[o] = (uint8_t)(o + 1);
    hand_layer_init(&f->layer, 4, zeros);
    qref_error err = {0};
    assert_int_equal(qref_gptq_pack("mlp.down_proj", &f->layer.codes, QREF_GPTQ_FORMAT_V2, &f->packed, &err),
                     QREF_OK);
    assert_int_equal(f->packed.qweight.nbytes, sizeof f->qweight);
    assert_int_equal(f->packed.qzeros.nbytes, sizeof f->qzeros);
    memcpy(f->qweight, f->packed.qweight.data, sizeof f->qweight);
    memcpy(f->qzeros, f->packed.qzeros.data, sizeof f->qzeros);
    f->qweight_view = f->packed.qweight;
    f->qweight_view.data = f->qweight;
    f->qzeros_view = f->packed.qzeros;
    f->qzeros_view.data = f->qzeros;
    f->linear = linear_of(&f->packed, HAND_WIDTH, HAND_WIDTH);
    f->linear.prefix = "mlp.down_proj";
    f->linear.qweight = &f->qweight_view;
    f->linear.qzeros = &f->qzeros_view;
    config_for(&f->config, 4, -1, false, QREF_GPTQ_FORMAT_V2);
    assert_int_equal(qref_gptq_check_linear(&f->linear, &f->config, &err), QREF_OK);
}

/* Bit 16 of qweight[1][5] (word 1 * 12 + 5, value 0x00000fed) is the first padding bit. */
static void test_gptq_padded_qweight_bits_set(void **state)
{
    (void)state;
    padded_fixture f;
    padded_fixture_init(&f);
    uint8_t *word = f.qweight + 4 * (1 * HAND_WIDTH + 5);
    qref_store_u32(word, qref_load_u32(word) | 0x00010000u);
    qref_error err = {0};
    assert_int_equal(qref_gptq_check_linear(&f.linear, &f.config, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "tensor \"mlp.down_proj.qweight\""));
    assert_non_null(strstr(err.message, "word [1][5] is 0x00010fed"));
    assert_non_null(strstr(err.message, "bits 16..31 follow the last of 12 4-bit codes"));
    float dense[HAND_WIDTH * HAND_WIDTH];
    assert_int_equal(qref_gptq_dequantize(&f.linear, &f.config, dense, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "must be zero"));
    qref_gptq_packed_free(&f.packed);
}

/* Bit 31 of qzeros[0][1] (value 0x0000cba9) is padding after zero point 11. */
static void test_gptq_padded_qzeros_bits_set(void **state)
{
    (void)state;
    padded_fixture f;
    padded_fixture_init(&f);
    qref_store_u32(f.qzeros + 4, qref_load_u32(f.qzeros + 4) | 0x80000000u);
    qref_error err = {0};
    assert_int_equal(qref_gptq_check_linear(&f.linear, &f.config, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "tensor \"mlp.down_proj.qzeros\""));
    assert_non_null(strstr(err.message, "word [0][1] is 0x8000cba9"));
    assert_non_null(strstr(err.message, "last of 12 4-bit zero points"));
    assert_non_null(strstr(err.message, "padding bits 0x80000000"));
    qref_gptq_packed_free(&f.packed);
}

/*
 * A one-row qweight for 12 inputs at 4 bits: the check expects the padded ceil(12 * 4 / 32) =
 * 2 rows, and one row is what 12 inputs at 2 bits (24 bits) would need.
 */
static void test_gptq_padded_short_qweight(void **state)
{
    (void)state;
    padded_fixture f;
    padded_fixture_init(&f);
    f.qweight_view.shape[0] = 1;
    f.qweight_view.numel = HAND_WIDTH;
    f.qweight_view.nbytes = 4 * HAND_WIDTH;
    qref_error err = {0};
    assert_int_equal(qref_gptq_check_linear(&f.linear, &f.config, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "shape [1, 12], expected [2, 12]"));
    assert_non_null(strstr(err.message, "hint: the row count matches 2-bit codes"));
    qref_gptq_packed_free(&f.packed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gptq_padded_4bit_vector),
        cmocka_unit_test(test_gptq_padded_3bit_vector),
        cmocka_unit_test(test_gptq_padded_2bit_vector),
        cmocka_unit_test(test_gptq_padded_roundtrip),
        cmocka_unit_test(test_gptq_padded_qweight_bits_set),
        cmocka_unit_test(test_gptq_padded_qzeros_bits_set),
        cmocka_unit_test(test_gptq_padded_short_qweight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
