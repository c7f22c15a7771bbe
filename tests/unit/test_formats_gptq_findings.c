/*
 * Findings of the GPTQ structure check (qref_gptq_check_findings): one malformed linear per
 * finding id, each asserting the id, the severity, the tensor and the message (value found,
 * value expected, count); several problems of one linear reported together; and a seeded
 * mutation run in which no malformed input may crash the check or the reader.
 *
 * Every case starts from a valid 4-bit, group 128, asymmetric v1 linear (RTN codes of seeded
 * weights, 64 outputs by 256 inputs) and changes one thing, so the expected values follow
 * from the layout arithmetic in the comments.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_gptq.h"
#include "quant/qref_rtn.h"

enum { MAL_OUT = 64, MAL_IN = 256 };

typedef struct malformed_fixture {
    qref_rtn_result rtn;
    qref_gptq_packed packed;
    uint8_t *qweight, *qzeros, *scales, *g_idx; /* modifiable copies */
    qref_tensor qweight_view, qzeros_view, scales_view, g_idx_view;
    qref_gptq_linear linear;
    qref_gptq_config config;
    qref_findings findings;
} malformed_fixture;

static void fill_weights(float *weight, size_t count, uint64_t seed)
{
    test_rng rng = {seed};
    for (size_t k = 0; k < count; k++)
        weight[k] = 0.02f * test_rng_float(&rng);
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

/* Copies a packed tensor into a buffer that starts at an odd address (loads must not need
 * alignment) and points view at it. */
static uint8_t *copy_tensor(const qref_tensor *source, qref_tensor *view)
{
    uint8_t *buffer = malloc(source->nbytes + 1);
    assert_non_null(buffer);
    memcpy(buffer + 1, source->data, source->nbytes);
    *view = *source;
    view->data = buffer + 1;
    return buffer;
}

static int malformed_setup(void **state)
{
    malformed_fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    static float weight[MAL_OUT * MAL_IN];
    fill_weights(weight, MAL_OUT * MAL_IN, 11);
    qref_rtn_config rtn_config = {.bits = 4, .group_size = 128, .sym = false};
    qref_error err = {0};
    assert_int_equal(qref_rtn_quantize("w", weight, MAL_OUT, MAL_IN, &rtn_config, &f->rtn, &err), QREF_OK);
    qref_gptq_codes codes = {.bits = 4, .out_features = MAL_OUT, .in_features = MAL_IN, .group_size = 128,
                             .groups = 2, .scale_dtype = QREF_DTYPE_F16, .codes = f->rtn.codes,
                             .zeros = f->rtn.zeros, .scales = f->rtn.scales, .g_idx = NULL};
    assert_int_equal(qref_gptq_pack("mlp.up_proj", &codes, QREF_GPTQ_FORMAT_V1, &f->packed, &err), QREF_OK);

    f->qweight = copy_tensor(&f->packed.qweight, &f->qweight_view);
    f->qzeros = copy_tensor(&f->packed.qzeros, &f->qzeros_view);
    f->scales = copy_tensor(&f->packed.scales, &f->scales_view);
    f->g_idx = copy_tensor(&f->packed.g_idx, &f->g_idx_view);
    f->linear = (qref_gptq_linear){.prefix = "mlp.up_proj", .qweight = &f->qweight_view,
                                   .qzeros = &f->qzeros_view, .scales = &f->scales_view,
                                   .g_idx = &f->g_idx_view, .out_features = MAL_OUT, .in_features = MAL_IN};
    config_for(&f->config, 4, 128, false, QREF_GPTQ_FORMAT_V1);

    /* The unchanged linear raises no finding. */
    assert_int_equal(qref_gptq_check_findings(&f->linear, &f->config, &f->findings, &err), QREF_OK);
    assert_int_equal(f->findings.count, 0);
    *state = f;
    return 0;
}

static int malformed_teardown(void **state)
{
    malformed_fixture *f = *state;
    free(f->qweight);
    free(f->qzeros);
    free(f->scales);
    free(f->g_idx);
    qref_findings_free(&f->findings);
    qref_gptq_packed_free(&f->packed);
    qref_rtn_result_free(&f->rtn);
    free(f);
    return 0;
}

/* Byte address of element index of a modifiable copy (the view starts one byte in). */
static uint8_t *at(uint8_t *copy, size_t index, size_t size)
{
    return copy + 1 + index * size;
}

/* Runs the check and returns the finding with this id, failing when it is absent. */
static const qref_finding *expect_finding(malformed_fixture *f, const char *id, qref_severity severity,
                                          const char *tensor, const char *first, const char *second)
{
    qref_error err = {0};
    qref_findings_free(&f->findings);
    assert_int_equal(qref_gptq_check_findings(&f->linear, &f->config, &f->findings, &err), QREF_OK);
    const qref_finding *found = NULL;
    for (size_t i = 0; i < f->findings.count; i++) {
        if (strcmp(f->findings.items[i].id, id) == 0)
            found = &f->findings.items[i];
    }
    if (found == NULL) {
        for (size_t i = 0; i < f->findings.count; i++)
            fprintf(stderr, "found %s: %s\n", f->findings.items[i].id, f->findings.items[i].message);
        fail_msg("no finding %s", id);
    }
    assert_non_null(qref_finding_kind_find(id));
    assert_int_equal(found->severity, severity);
    assert_string_equal(found->tensor, tensor);
    if (strstr(found->message, first) == NULL || (second != NULL && strstr(found->message, second) == NULL))
        fail_msg("%s: message \"%s\" lacks \"%s\" or \"%s\"", id, found->message, first, second ? second : "");

    /* ERROR findings make the reader fail with the same message; WARNING ones do not. */
    float *dense = malloc(MAL_OUT * MAL_IN * sizeof(float));
    assert_non_null(dense);
    qref_status status = qref_gptq_dequantize(&f->linear, &f->config, dense, &err);
    if (severity == QREF_SEVERITY_ERROR) {
        assert_int_equal(status, QREF_ERR_INVALID);
    } else {
        assert_int_equal(status, QREF_OK);
    }
    free(dense);
    return found;
}

/* ---- one case per finding id ---------------------------------------------------------------- */

static void test_gptq_finding_missing(void **state)
{
    malformed_fixture *f = *state;
    f->linear.scales = NULL;
    expect_finding(f, "gptq.missing", QREF_SEVERITY_ERROR, "mlp.up_proj.scales", "mlp.up_proj.scales\": missing",
                   "dtype F16");

    /* Without g_idx the groups are i / G, which act-order cannot express. */
    f->linear.scales = &f->scales_view;
    f->linear.g_idx = NULL;
    f->config.desc_act = true;
    expect_finding(f, "gptq.missing", QREF_SEVERITY_ERROR, "mlp.up_proj.g_idx", "mlp.up_proj.g_idx\": missing",
                   "desc_act true without static_groups");
}

static void test_gptq_finding_dtype(void **state)
{
    malformed_fixture *f = *state;
    f->qzeros_view.dtype = QREF_DTYPE_F32;
    expect_finding(f, "gptq.dtype", QREF_SEVERITY_ERROR, "mlp.up_proj.qzeros", "qzeros\": dtype F32",
                   "expected I32 (pack_dtype int32)");

    /* The same bytes as I16 words are GPTQModel's pack_dtype int16. */
    f->qzeros_view.dtype = QREF_DTYPE_I32;
    f->qweight_view.dtype = QREF_DTYPE_I16;
    expect_finding(f, "gptq.dtype", QREF_SEVERITY_ERROR, "mlp.up_proj.qweight", "dtype I16, expected I32",
                   "I16 words are what pack_dtype \"int16\" stores, but the config declares pack_dtype \"int32\"");

    f->qweight_view.dtype = QREF_DTYPE_I32;
    f->scales_view.dtype = QREF_DTYPE_I16;
    expect_finding(f, "gptq.dtype", QREF_SEVERITY_ERROR, "mlp.up_proj.scales", "dtype I16", "F16 (or BF16, F32)");
}

static void test_gptq_finding_shape(void **state)
{
    malformed_fixture *f = *state;
    /* scales [2, 32]: the group count is right but the columns are not the 64 outputs. */
    f->scales_view.shape[1] = 32;
    f->scales_view.numel = 64;
    f->scales_view.nbytes = 128;
    expect_finding(f, "gptq.shape", QREF_SEVERITY_ERROR, "mlp.up_proj.scales", "shape [2, 32], expected [2, 64]",
                   "2 groups by 64 output features");

    /* The shape matches but the byte count does not. */
    f->scales_view.shape[1] = 64;
    f->scales_view.nbytes = 200;
    expect_finding(f, "gptq.shape", QREF_SEVERITY_ERROR, "mlp.up_proj.scales", "holds 200 bytes, expected 256",
                   NULL);

    f->scales_view.nbytes = 256;
    f->g_idx_view.shape[0] = 255;
    expect_finding(f, "gptq.shape", QREF_SEVERITY_ERROR, "mlp.up_proj.g_idx", "shape [255], expected [256]",
                   "one group index per input feature");
}

/* 8-bit codes of 256 inputs need 256 * 8 / 32 = 64 qweight rows and 64 * 8 / 32 = 16
 * qzeros columns; the config declares 4 bits (32 rows, 8 columns). */
static void test_gptq_finding_bits_mismatch(void **state)
{
    malformed_fixture *f = *state;
    uint8_t *big = calloc(64 * MAL_OUT, 4);
    assert_non_null(big);
    f->qweight_view.shape[0] = 64;
    f->qweight_view.numel = 64 * MAL_OUT;
    f->qweight_view.nbytes = 64 * MAL_OUT * 4;
    f->qweight_view.data = big;
    expect_finding(f, "gptq.bits_mismatch", QREF_SEVERITY_ERROR, "mlp.up_proj.qweight",
                   "shape [64, 64], expected [32, 64] (4-bit packing of 256 input features by 64 output features)",
                   "hint: the row count matches 8-bit codes but the config declares 4 bits");

    f->qweight_view = f->packed.qweight;
    f->qzeros_view.shape[1] = 16;
    f->qzeros_view.numel = 32;
    f->qzeros_view.nbytes = 128;
    f->qzeros_view.data = big;
    expect_finding(f, "gptq.bits_mismatch", QREF_SEVERITY_ERROR, "mlp.up_proj.qzeros", "shape [2, 16], expected [2, 8]",
                   "the column count matches 8-bit zero points but the config declares 4 bits");
    free(big);
}

/* Group size 64 gives ceil(256 / 64) = 4 rows of scales and qzeros; the config declares 128 (2). */
static void test_gptq_finding_group_size_mismatch(void **state)
{
    malformed_fixture *f = *state;
    uint8_t *rows4 = calloc(4 * MAL_OUT, 2);
    assert_non_null(rows4);
    f->scales_view.shape[0] = 4;
    f->scales_view.numel = 4 * MAL_OUT;
    f->scales_view.nbytes = 4 * MAL_OUT * 2;
    f->scales_view.data = rows4;
    expect_finding(f, "gptq.group_size_mismatch", QREF_SEVERITY_ERROR, "mlp.up_proj.scales",
                   "shape [4, 64], expected [2, 64]",
                   "4 rows are the groups of group_size 64, but the config declares group_size 128");

    /* One row is group_size -1. */
    f->scales_view = f->packed.scales;
    f->qzeros_view.shape[0] = 1;
    f->qzeros_view.numel = 8;
    f->qzeros_view.nbytes = 32;
    expect_finding(f, "gptq.group_size_mismatch", QREF_SEVERITY_ERROR, "mlp.up_proj.qzeros",
                   "shape [1, 8], expected [2, 8]", "groups of group_size -1 (one group)");
    free(rows4);
}

/*
 * Padding: 36 outputs of 4 bits are 144 bits, so each qzeros row has ceil(144 / 32) = 5
 * words and bits 16..31 of the last are padding; 70 inputs are 280 bits in 9 words, bits
 * 24..31 of each column's last word padding. Setting bit 20 of qzeros[0][4] and bit 31 of
 * qweight[8][3] makes one finding for each tensor.
 */
static void test_gptq_finding_padding(void **state)
{
    (void)state;
    enum { OUT = 36, IN = 70 };
    float weight[OUT * IN];
    fill_weights(weight, OUT * IN, 23);
    qref_rtn_config rtn_config = {.bits = 4, .group_size = -1, .sym = false};
    qref_rtn_result rtn;
    qref_error err = {0};
    assert_int_equal(qref_rtn_quantize("w", weight, OUT, IN, &rtn_config, &rtn, &err), QREF_OK);
    qref_gptq_codes codes = {.bits = 4, .out_features = OUT, .in_features = IN, .group_size = IN, .groups = 1,
                             .scale_dtype = QREF_DTYPE_F16, .codes = rtn.codes, .zeros = rtn.zeros,
                             .scales = rtn.scales, .g_idx = NULL};
    qref_gptq_packed packed;
    assert_int_equal(qref_gptq_pack_words("attn.o_proj", &codes, QREF_GPTQ_FORMAT_V2, 32, &packed, &err), QREF_OK);
    assert_int_equal(packed.qzeros.shape[1], 5);
    assert_int_equal(packed.qweight.shape[0], 9);
    uint8_t *qzeros = packed.buffers[1], *qweight = packed.buffers[0];
    qref_store_u32(qzeros + 4 * 4, qref_load_u32(qzeros + 4 * 4) | 1u << 20);
    qref_store_u32(qweight + 4 * (8 * OUT + 3), qref_load_u32(qweight + 4 * (8 * OUT + 3)) | 1u << 31);

    qref_gptq_config config;
    config_for(&config, 4, -1, false, QREF_GPTQ_FORMAT_V2);
    qref_gptq_linear linear = {.prefix = "attn.o_proj", .qweight = &packed.qweight, .qzeros = &packed.qzeros,
                               .scales = &packed.scales, .g_idx = &packed.g_idx, .out_features = OUT,
                               .in_features = IN};
    qref_findings findings = {0};
    assert_int_equal(qref_gptq_check_findings(&linear, &config, &findings, &err), QREF_OK);
    assert_int_equal(findings.count, 2);
    assert_string_equal(findings.items[0].id, "gptq.padding");
    assert_string_equal(findings.items[0].tensor, "attn.o_proj.qweight");
    assert_non_null(strstr(findings.items[0].message, "word [8][3]"));
    assert_non_null(strstr(findings.items[0].message, "bits 24..31 follow the last of 70 4-bit codes"));
    assert_non_null(strstr(findings.items[0].message, "padding bits 0x80000000 are set); 1 of 36 columns"));
    assert_string_equal(findings.items[1].id, "gptq.padding");
    assert_string_equal(findings.items[1].tensor, "attn.o_proj.qzeros");
    assert_non_null(strstr(findings.items[1].message, "word [0][4]"));
    assert_non_null(strstr(findings.items[1].message, "bits 16..31 follow the last of 36 4-bit zero points"));
    assert_non_null(strstr(findings.items[1].message, "padding bits 0x00100000 are set); 1 of 1 rows"));
    qref_findings_free(&findings);
    qref_gptq_packed_free(&packed);
    qref_rtn_result_free(&rtn);
}

static void test_gptq_finding_g_idx_out_of_range(void **state)
{
    malformed_fixture *f = *state;
    qref_store_u32(at(f->g_idx, 5, 4), 99);
    qref_store_u32(at(f->g_idx, 9, 4), (uint32_t)-1);
    expect_finding(f, "gptq.g_idx.out_of_range", QREF_SEVERITY_ERROR, "mlp.up_proj.g_idx",
                   "value 99 at [5], expected a group in 0..1", "2 of 256 entries are out of range");
}

/* g_idx[130] = 0 though feature 130 is in group 130 / 128 = 1: group 0 then contains 129
 * features and group 1 contains 127. */
static void test_gptq_finding_g_idx_group_size(void **state)
{
    malformed_fixture *f = *state;
    qref_store_u32(at(f->g_idx, 130, 4), 0);
    expect_finding(f, "gptq.g_idx.group_size", QREF_SEVERITY_ERROR, "mlp.up_proj.g_idx",
                   "group 0 holds 129 input features, expected 128 (group size 128)", "2 of 2 groups");

    /* The same with act-order declared: only the sizes count there, and they are wrong. */
    f->config.desc_act = true;
    expect_finding(f, "gptq.g_idx.group_size", QREF_SEVERITY_ERROR, "mlp.up_proj.g_idx", "group 0 holds 129", NULL);
}

static void test_gptq_finding_desc_act_mismatch(void **state)
{
    malformed_fixture *f = *state;
    /* Swapping the groups of features 3 and 200 keeps both groups at 128 features. */
    qref_store_u32(at(f->g_idx, 3, 4), 1);
    qref_store_u32(at(f->g_idx, 200, 4), 0);
    expect_finding(f, "gptq.desc_act_mismatch", QREF_SEVERITY_WARNING, "mlp.up_proj.g_idx",
                   "value 1 at [3], expected 0 = 3 / group size 128 because the config declares desc_act false",
                   "ExLlama, Marlin");

    /* The original i / G order under act-order without static groups is suspicious too. */
    qref_store_u32(at(f->g_idx, 3, 4), 0);
    qref_store_u32(at(f->g_idx, 200, 4), 1);
    f->config.desc_act = true;
    expect_finding(f, "gptq.desc_act_mismatch", QREF_SEVERITY_WARNING, "mlp.up_proj.g_idx",
                   "every value is i / group size 128 (monotone)", "desc_act true without static_groups");

    /* With static groups the i / G order is the expected one. */
    f->config.static_groups = true;
    qref_error err = {0};
    qref_findings_free(&f->findings);
    assert_int_equal(qref_gptq_check_findings(&f->linear, &f->config, &f->findings, &err), QREF_OK);
    assert_int_equal(f->findings.count, 0);
}

/*
 * qzeros row 1, word 1 contains outputs 8..15. ORing 0xffffff00 sets fields 2..7 (outputs
 * 10..15) to all ones with every higher bit set: AutoGPTQ's trace of storing zero point 0 of
 * output 10 as -1 << 8. The first affected zero point is [1][10]; six are affected.
 */
static void test_gptq_finding_v1_underflow(void **state)
{
    malformed_fixture *f = *state;
    uint8_t *word = at(f->qzeros, 1 * (MAL_OUT / 8) + 1, 4);
    qref_store_u32(word, qref_load_u32(word) | 0xffffff00u);
    expect_finding(f, "gptq.zero_point.v1_underflow", QREF_SEVERITY_ERROR, "mlp.up_proj.qzeros",
                   "v1 zero-point underflow at [1][10]: stored field 15 (all ones) decodes to zero point 16, outside "
                   "0..15",
                   "6 of 128 zero points are affected");
}

/* Field 1 of qzeros[0][0] (output 1) all ones, with field 7 (bits 28-31) cleared so the
 * higher bits are not all ones: a zero point of 16 that no pack() underflow explains. */
static void test_gptq_finding_zero_point_out_of_range(void **state)
{
    malformed_fixture *f = *state;
    uint8_t *word = at(f->qzeros, 0, 4);
    qref_store_u32(word, (qref_load_u32(word) | 0x000000f0u) & 0x0fffffffu);
    const qref_finding *finding = expect_finding(f, "gptq.zero_point.out_of_range", QREF_SEVERITY_ERROR,
                                                 "mlp.up_proj.qzeros",
                                                 "zero point 16 at [0][1] (stored field 15, all ones, format gptq) "
                                                 "is outside 0..15",
                                                 "not AutoGPTQ's underflow trace");
    assert_non_null(strstr(finding->message, "expected a stored field in 0..14"));

    /* As gptq_v2 the same field is the valid zero point 15. */
    f->config.format = QREF_GPTQ_FORMAT_V2;
    qref_error err = {0};
    qref_findings_free(&f->findings);
    assert_int_equal(qref_gptq_check_findings(&f->linear, &f->config, &f->findings, &err), QREF_OK);
    for (size_t i = 0; i < f->findings.count; i++)
        assert_null(strstr(f->findings.items[i].id, "zero_point"));
}

/* sym declared, but the asymmetric zero points differ from 2^(b-1) = 8. */
static void test_gptq_finding_sym_mismatch(void **state)
{
    malformed_fixture *f = *state;
    f->config.sym = true;
    expect_finding(f, "gptq.sym_mismatch", QREF_SEVERITY_ERROR, "mlp.up_proj.qzeros", "expected 8 for sym=true",
                   "zero points differ");
}

static void test_gptq_finding_scales(void **state)
{
    malformed_fixture *f = *state;
    qref_store_u16(at(f->scales, 1 * MAL_OUT + 3, 2), 0x7e00);  /* NaN */
    qref_store_u16(at(f->scales, 1 * MAL_OUT + 4, 2), 0x7c00);  /* +infinity */
    qref_store_u16(at(f->scales, 17, 2), 0x0000);               /* +0 */
    qref_store_u16(at(f->scales, 18, 2), 0x8000);               /* -0 */
    qref_store_u16(at(f->scales, 1 * MAL_OUT + 63, 2), 0xb800); /* -0.5 */
    expect_finding(f, "gptq.scale.non_finite", QREF_SEVERITY_ERROR, "mlp.up_proj.scales",
                   "scale nan at [1][3], expected a finite value > 0", "2 of 128 scales are not finite");
    expect_finding(f, "gptq.scale.zero", QREF_SEVERITY_ERROR, "mlp.up_proj.scales",
                   "scale 0 at [0][17], expected a finite value > 0", "2 of 128 scales are zero");
    expect_finding(f, "gptq.scale.negative", QREF_SEVERITY_ERROR, "mlp.up_proj.scales",
                   "scale -0.5 at [1][63], expected a finite value > 0", "1 of 128 scales are negative");
}

/*
 * Scale [0][5] = 40000 (f16 0x78e2 is exactly 40000). Output 5 of group 0 has codes
 * 0..15 around its zero point, so every code two or more steps away gives |w| >= 80000,
 * beyond 65504, which f16 rounds to infinity.
 */
static void test_gptq_finding_fp16_overflow(void **state)
{
    malformed_fixture *f = *state;
    assert_int_equal(qref_f32_to_f16(40000.0f), 0x78e2);
    qref_store_u16(at(f->scales, 5, 2), 0x78e2);
    const qref_finding *finding = expect_finding(f, "dequant.fp16_overflow", QREF_SEVERITY_ERROR, "mlp.up_proj.scales",
                                                 "dequantized weight [5][", "expected |w| <= 65504");
    assert_non_null(strstr(finding->message, "= scale 40000 * (code "));
    assert_non_null(strstr(finding->message, " is inf in F16"));

    /* Scale 4000: even 15 steps give 60000, inside the range, so nothing overflows. */
    qref_store_u16(at(f->scales, 5, 2), qref_f32_to_f16(60000.0f / 15.0f));
    qref_error err = {0};
    qref_findings_free(&f->findings);
    assert_int_equal(qref_gptq_check_findings(&f->linear, &f->config, &f->findings, &err), QREF_OK);
    assert_int_equal(f->findings.count, 0);

    /* BF16 scales make the product bf16, whose range 40000 * 15 stays inside. */
    uint8_t bf16[2 * 2 * MAL_OUT];
    for (int k = 0; k < 2 * MAL_OUT; k++)
        qref_store_u16(bf16 + 2 * k, qref_f32_to_bf16(qref_f16_to_f32(qref_load_u16(at(f->scales, (size_t)k, 2)))));
    qref_store_u16(bf16 + 2 * 5, qref_f32_to_bf16(40000.0f));
    f->scales_view.dtype = QREF_DTYPE_BF16;
    f->scales_view.data = bf16;
    qref_findings_free(&f->findings);
    assert_int_equal(qref_gptq_check_findings(&f->linear, &f->config, &f->findings, &err), QREF_OK);
    assert_int_equal(f->findings.count, 0);
}

/* ---- several problems, and malformed inputs that must not crash ----------------------------- */

/* A NaN scale, an out-of-range group index and a v1 underflow: three findings, in check order. */
static void test_gptq_findings_all_reported(void **state)
{
    malformed_fixture *f = *state;
    qref_store_u16(at(f->scales, 7, 2), 0x7e00);
    qref_store_u32(at(f->g_idx, 11, 4), 2);
    qref_store_u32(at(f->qzeros, 3, 4), qref_load_u32(at(f->qzeros, 3, 4)) | 0xf0000000u);
    qref_error err = {0};
    assert_int_equal(qref_gptq_check_findings(&f->linear, &f->config, &f->findings, &err), QREF_OK);
    assert_int_equal(f->findings.count, 3);
    assert_string_equal(f->findings.items[0].id, "gptq.g_idx.out_of_range");
    assert_string_equal(f->findings.items[1].id, "gptq.zero_point.v1_underflow");
    assert_string_equal(f->findings.items[2].id, "gptq.scale.non_finite");

    /* The reader reports the first of them. */
    assert_int_equal(qref_gptq_check_linear(&f->linear, &f->config, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "value 2 at [11], expected a group in 0..1"));
}

/* Returns a new buffer of size bytes of seeded random content (at least one byte). */
static uint8_t *random_bytes(test_rng *rng, size_t size)
{
    uint8_t *buffer = malloc(size > 0 ? size : 1);
    assert_non_null(buffer);
    for (size_t k = 0; k < size; k++)
        buffer[k] = (uint8_t)test_rng_next(rng);
    return buffer;
}

/* Gives view, in two of three calls, a random dtype, shape, byte count or content near the
 * original, and always a buffer of exactly its byte size (so AddressSanitizer catches any
 * read past it). */
static uint8_t *mutate_tensor(test_rng *rng, qref_tensor *view, const qref_tensor *source)
{
    static const qref_dtype dtypes[] = {QREF_DTYPE_I8, QREF_DTYPE_I16, QREF_DTYPE_I32, QREF_DTYPE_I64,
                                        QREF_DTYPE_F16, QREF_DTYPE_BF16, QREF_DTYPE_F32, QREF_DTYPE_U8};
    *view = *source;
    uint64_t choice = test_rng_next(rng) % 9; /* 6..8 keep the tensor as it is */
    if (choice == 0)
        view->dtype = dtypes[test_rng_next(rng) % 8];
    if (choice == 1 || choice == 2) {
        int dim = (int)(test_rng_next(rng) % (uint64_t)view->ndim);
        int64_t delta[] = {-1, 1, 0, 7};
        int64_t changed = choice == 1 ? view->shape[dim] * 2 : view->shape[dim] + delta[test_rng_next(rng) % 4];
        view->shape[dim] = changed > 0 ? changed : 0;
    }
    if (choice == 3)
        view->ndim = view->ndim == 1 ? 2 : 1;
    view->numel = 1;
    for (int d = 0; d < view->ndim; d++)
        view->numel *= (uint64_t)view->shape[d];
    view->nbytes = view->numel * qref_dtype_size(view->dtype);
    if (choice == 4 && view->nbytes > 0)
        view->nbytes = test_rng_next(rng) % view->nbytes; /* a byte count that disagrees with the shape */
    uint8_t *buffer = random_bytes(rng, (size_t)view->nbytes);
    if (choice != 5 || test_rng_next(rng) % 2 == 0)
        memcpy(buffer, source->data, (size_t)(view->nbytes < source->nbytes ? view->nbytes : source->nbytes));
    view->data = buffer;
    return buffer;
}

/*
 * 3000 seeded mutants: tensors of the linear get a random dtype, shape, byte count or
 * content, and half of the configs random bits, group size, words, format, sym and
 * act-order flags.
 * The check, the reader and the format statistics must return (findings or an error) and
 * never read out of bounds; a linear the check accepts must dequantize.
 */
static void test_gptq_findings_mutants_never_crash(void **state)
{
    malformed_fixture *f = *state;
    test_rng rng = {20240611};
    const qref_tensor *sources[4] = {&f->packed.qweight, &f->packed.qzeros, &f->packed.scales, &f->packed.g_idx};
    static const int bits[] = {2, 3, 4, 8};
    static const long group_sizes[] = {-1, 32, 64, 128, 100, 0, 512};
    static const int words[] = {8, 16, 32, 64, 24};
    float *dense = malloc(2 * MAL_OUT * 2 * MAL_IN * sizeof(float));
    assert_non_null(dense);
    size_t accepted = 0, findings_seen = 0;
    for (int round = 0; round < 3000; round++) {
        qref_tensor views[4];
        uint8_t *buffers[4];
        for (int k = 0; k < 4; k++)
            buffers[k] = mutate_tensor(&rng, &views[k], sources[k]);
        qref_gptq_linear linear = {.prefix = "m", .qweight = &views[0], .qzeros = &views[1], .scales = &views[2],
                                   .g_idx = test_rng_next(&rng) % 8 == 0 ? NULL : &views[3],
                                   .out_features = MAL_OUT, .in_features = MAL_IN};
        if (test_rng_next(&rng) % 8 == 0)
            linear.in_features = (int64_t)(test_rng_next(&rng) % (2 * MAL_IN));
        qref_gptq_config config = f->config;
        if (test_rng_next(&rng) % 2 == 0) {
            config_for(&config, bits[test_rng_next(&rng) % 4], group_sizes[test_rng_next(&rng) % 7],
                       test_rng_next(&rng) % 2, (qref_gptq_format)(test_rng_next(&rng) % 2));
            config.pack_bits = words[test_rng_next(&rng) % 5];
            config.desc_act = test_rng_next(&rng) % 2;
            config.static_groups = test_rng_next(&rng) % 4 == 0;
        }

        qref_findings findings = {0};
        qref_error err = {0};
        qref_gptq_check_findings(&linear, &config, &findings, &err);
        findings_seen += findings.count;
        bool has_error = qref_findings_count(&findings, QREF_SEVERITY_ERROR) > 0;
        qref_status status = qref_gptq_dequantize(&linear, &config, dense, &err);
        assert_int_equal(status == QREF_OK, !has_error);
        if (status == QREF_OK) {
            accepted++;
            qref_gptq_format_stats stats;
            qref_gptq_format_stats_init(&stats, &config);
            assert_int_equal(qref_gptq_format_stats_add(&stats, &linear, &config, &err), QREF_OK);
            qref_gptq_format_check(&stats, &findings);
        }
        qref_findings_free(&findings);
        for (int k = 0; k < 4; k++)
            free(buffers[k]);
    }
    /* The run exercised both outcomes. */
    assert_true(accepted > 0);
    assert_true(findings_seen > 1000);
    free(dense);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gptq_finding_missing, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_dtype, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_shape, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_bits_mismatch, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_group_size_mismatch, malformed_setup, malformed_teardown),
        cmocka_unit_test(test_gptq_finding_padding),
        cmocka_unit_test_setup_teardown(test_gptq_finding_g_idx_out_of_range, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_g_idx_group_size, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_desc_act_mismatch, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_v1_underflow, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_zero_point_out_of_range, malformed_setup,
                                        malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_sym_mismatch, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_scales, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_finding_fp16_overflow, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_findings_all_reported, malformed_setup, malformed_teardown),
        cmocka_unit_test_setup_teardown(test_gptq_findings_mutants_never_crash, malformed_setup,
                                        malformed_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
