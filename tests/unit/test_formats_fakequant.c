/*
 * Fake-quantization detection (formats/qref_fakequant.h).
 *
 * The fake-quantized matrices are made here from synth256's real weights with the RTN
 * reference quantizer (quant/qref_rtn.h, the GPTQ repository's quantizer) and rounded to F16
 * or BF16, so the expected bits and group size of each case are the quantizer's settings, not
 * values this detector produced. Hand-worked vectors state their arithmetic next to them.
 */
#include "test_support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_fakequant.h"
#include "io/qref_snapshot.h"
#include "quant/qref_rtn.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* A dense matrix stored in a dtype, wrapped as a tensor for the analysis. */
typedef struct stored_matrix {
    qref_tensor tensor;
    uint8_t *bytes;
} stored_matrix;

static void stored_matrix_init(stored_matrix *m, const char *name, const float *values, int64_t rows, int64_t cols,
                               qref_dtype dtype)
{
    memset(m, 0, sizeof *m);
    size_t count = (size_t)(rows * cols);
    m->bytes = malloc(count * qref_dtype_size(dtype));
    assert_non_null(m->bytes);
    for (size_t i = 0; i < count; i++) {
        if (dtype == QREF_DTYPE_F16)
            qref_store_u16(m->bytes + 2 * i, qref_f32_to_f16(values[i]));
        else if (dtype == QREF_DTYPE_BF16)
            qref_store_u16(m->bytes + 2 * i, qref_f32_to_bf16(values[i]));
        else
            qref_store_f32(m->bytes + 4 * i, values[i]);
    }
    m->tensor.name = strdup(name);
    m->tensor.dtype = dtype;
    m->tensor.ndim = 2;
    m->tensor.shape[0] = rows;
    m->tensor.shape[1] = cols;
    m->tensor.numel = count;
    m->tensor.nbytes = count * qref_dtype_size(dtype);
    m->tensor.data = m->bytes;
    m->tensor.file = "test.safetensors";
}

static void stored_matrix_free(stored_matrix *m)
{
    free(m->tensor.name);
    free(m->bytes);
}

/* RTN fake-quantization of weight[rows][cols] (the quantizer's dequantized f32 values). */
static float *rtn_fake(const float *weight, int64_t rows, int64_t cols, int bits, long group, bool sym)
{
    qref_rtn_config config = {.bits = bits, .group_size = group, .sym = sym};
    qref_rtn_result result;
    qref_error err = {0};
    assert_int_equal(qref_rtn_quantize("w", weight, (size_t)rows, (size_t)cols, &config, &result, &err), QREF_OK);
    float *values = malloc((size_t)(rows * cols) * sizeof *values);
    assert_non_null(values);
    memcpy(values, result.dequant, (size_t)(rows * cols) * sizeof *values);
    qref_rtn_result_free(&result);
    return values;
}

static qref_fakequant_linear analyze(const float *values, int64_t rows, int64_t cols, qref_dtype dtype)
{
    stored_matrix m;
    stored_matrix_init(&m, "layer.weight", values, rows, cols, dtype);
    qref_fakequant_linear linear;
    qref_error err = {0};
    assert_int_equal(qref_fakequant_analyze_linear(&m.tensor, rows, cols, &linear, &err), QREF_OK);
    stored_matrix_free(&m);
    return linear;
}

/* synth256's f32 weight of a linear; the caller frees it. */
static float *synth256_weight(const char *name, int64_t rows, int64_t cols)
{
    qref_snapshot *snapshot = NULL;
    qref_error err = {0};
    assert_int_equal(qref_snapshot_open(test_fixture_path("models/synth256"), &snapshot, &err), QREF_OK);
    const qref_tensor *tensor = qref_tensor_set_find(qref_snapshot_tensors(snapshot), name);
    assert_non_null(tensor);
    assert_int_equal(tensor->shape[0], rows);
    assert_int_equal(tensor->shape[1], cols);
    float *weight = malloc((size_t)(rows * cols) * sizeof *weight);
    assert_non_null(weight);
    assert_int_equal(qref_convert_to_f32(tensor->dtype, tensor->data, (size_t)(rows * cols), weight, &err), QREF_OK);
    qref_snapshot_free(snapshot);
    return weight;
}

static int group_levels(const float *values, size_t count, qref_dtype dtype)
{
    float scratch[1024];
    assert_true(count <= 1024);
    return qref_fakequant_group_levels(values, count, dtype, scratch);
}

/* ---- hand-worked groups --------------------------------------------------------------------- */

/*
 * [1.0, -0.5, 0.25, 0.0] in F32: sorted -0.5, 0, 0.25, 1.0; the smallest gap 0.25 divides
 * every offset from -0.5 (0.5, 0.75, 1.5 = 2, 3, 6 steps), so the grid -0.5 + 0.25 k,
 * k = 0..6, has 7 levels (3 bits); no coarser step fits 0.25 = 3 steps from -0.5 and 1 from 0.
 */
static void test_group_worked_quarter_steps(void **state)
{
    (void)state;
    const float values[] = {1.0f, -0.5f, 0.25f, 0.0f};
    assert_int_equal(group_levels(values, 4, QREF_DTYPE_F32), 7);
}

/* [3, 0, 1, 3, 0]: distinct 0, 1, 3; step 1 gives levels 0..3, 4 levels. */
static void test_group_worked_repeated_values(void **state)
{
    (void)state;
    const float values[] = {3.0f, 0.0f, 1.0f, 3.0f, 0.0f};
    assert_int_equal(group_levels(values, 5, QREF_DTYPE_F32), 4);
}

/*
 * [0, 1, phi] with phi = 1.6180339887 (golden ratio): a grid with step 1/q contains them only if
 * phi * q is within tolerance of an integer. phi's best rational approximations are Fibonacci
 * ratios, and the best with q <= 255 / phi (so at most 256 levels) is 233 / 144, off by
 * 1 / (144^2 * sqrt(5)) = 2.2e-5, far above the f32 tolerance of about 1e-7: no grid.
 */
static void test_group_worked_golden_ratio_has_no_grid(void **state)
{
    (void)state;
    const float values[] = {0.0f, 1.0f, 1.6180339887f};
    assert_int_equal(group_levels(values, 3, QREF_DTYPE_F32), 0);
}

/* A row of one constant is one level; of two values, two levels (1 bit), whatever the values. */
static void test_group_constant_and_two_values(void **state)
{
    (void)state;
    float constant[128], two[128];
    for (int i = 0; i < 128; i++) {
        constant[i] = 0.123f;
        two[i] = (i % 3) ? -0.7071f : 3.14159f;
    }
    assert_int_equal(group_levels(constant, 128, QREF_DTYPE_F16), 1);
    assert_int_equal(group_levels(two, 128, QREF_DTYPE_F16), 2);
}

/* NaN or infinity lies on no grid. */
static void test_group_nonfinite_values(void **state)
{
    (void)state;
    float values[] = {0.0f, 0.5f, 1.0f, NAN};
    assert_int_equal(group_levels(values, 4, QREF_DTYPE_F32), 0);
    values[3] = INFINITY;
    assert_int_equal(group_levels(values, 4, QREF_DTYPE_F32), 0);
}

/*
 * Subnormal scales: F16 subnormals are multiples of 2^-24 (6.0e-8). A 4-bit grid with scale
 * 3 * 2^-24 and zero point 7 has values 3 * 2^-24 * (q - 7), q = 0..15, all exact F16
 * subnormals: 16 levels. A scale of 2^-26 (below the subnormal spacing) collapses levels in
 * F16: s * (q - 7) rounds to the nearest multiple of 2^-24, giving -2, -1, 0, 1, 2 times 2^-24
 * (q - 7 from -7 to 8 divided by 4 and rounded to even), five levels.
 */
static void test_group_subnormal_scales(void **state)
{
    (void)state;
    float exact[16], collapsed[16];
    for (int q = 0; q < 16; q++) {
        exact[q] = qref_f16_to_f32(qref_f32_to_f16(3.0f * 0x1p-24f * (float)(q - 7)));
        collapsed[q] = qref_f16_to_f32(qref_f32_to_f16(0x1p-26f * (float)(q - 7)));
    }
    assert_int_equal(group_levels(exact, 16, QREF_DTYPE_F16), 16);
    assert_int_equal(group_levels(collapsed, 16, QREF_DTYPE_F16), 5);
}

/*
 * BF16 keeps 8 significant bits, so integers from 256 up are stored to the nearest even
 * number: the 8-bit grid 256 + q, q = 0..255, collides in pairs (257 -> 256 and 259 -> 260 by
 * ties to even), and 511 rounds up to 512. The 129 distinct stored values 256, 258, ..., 512
 * lie exactly on the grid of step 2, 129 levels, which still needs 8 bits.
 */
static void test_group_bf16_collisions(void **state)
{
    (void)state;
    float values[256];
    for (int q = 0; q < 256; q++)
        values[q] = qref_bf16_to_f32(qref_f32_to_bf16(256.0f + (float)q));
    int distinct = 1;
    for (int q = 1; q < 256; q++)
        distinct += values[q] != values[q - 1];
    assert_int_equal(distinct, 129);
    assert_float_equal(values[255], 512.0, 0.0);
    assert_int_equal(group_levels(values, 256, QREF_DTYPE_BF16), 129);
}

/* ---- synth256 linears ----------------------------------------------------------------------- */

/*
 * Every bit width and group size of the matrix below, in F16 and BF16: the detected bits and
 * group size equal the quantizer's. The effective bits are bits + 32 / group.
 */
static void check_detects(const float *weight, int64_t rows, int64_t cols, qref_dtype dtype, bool sym)
{
    const int bit_widths[] = {2, 3, 4, 8};
    const long groups[] = {32, 64, 128, -1};
    for (size_t b = 0; b < 4; b++) {
        for (size_t g = 0; g < 4; g++) {
            float *fake = rtn_fake(weight, rows, cols, bit_widths[b], groups[g], sym);
            qref_fakequant_linear linear = analyze(fake, rows, cols, dtype);
            print_message("%s %s %d-bit group %ld: detected %s%d-bit group %lld (%d levels)\n",
                          qref_dtype_name(dtype), sym ? "sym" : "asym", bit_widths[b], groups[g],
                          linear.quantized ? "" : "not quantized, ", linear.bits, (long long)linear.group_size,
                          linear.levels);
            assert_true(linear.quantized);
            assert_int_equal(linear.bits, bit_widths[b]);
            assert_int_equal(linear.group_size, groups[g]);
            double inputs = groups[g] == -1 ? (double)cols : (double)groups[g];
            assert_float_equal(linear.effective_bits, bit_widths[b] + 32.0 / inputs, 1e-12);
            free(fake);
        }
    }
}

static void test_linear_detects_synth256_up_proj(void **state)
{
    (void)state;
    float *weight = synth256_weight("model.layers.0.mlp.up_proj.weight", 768, 256);
    check_detects(weight, 768, 256, QREF_DTYPE_F16, false);
    check_detects(weight, 768, 256, QREF_DTYPE_BF16, false);
    check_detects(weight, 768, 256, QREF_DTYPE_F16, true);
    free(weight);
}

static void test_linear_detects_synth256_down_proj(void **state)
{
    (void)state;
    float *weight = synth256_weight("model.layers.1.mlp.down_proj.weight", 256, 768);
    check_detects(weight, 256, 768, QREF_DTYPE_F16, false);
    check_detects(weight, 256, 768, QREF_DTYPE_BF16, false);
    free(weight);
}

/* The full-precision weights, in F32 and rounded to F16 and BF16, are not fake-quantized. */
static void test_linear_float_originals_not_detected(void **state)
{
    (void)state;
    const char *names[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"};
    const int64_t shapes[][2] = {{256, 256}, {256, 768}};
    const qref_dtype dtypes[] = {QREF_DTYPE_F32, QREF_DTYPE_F16, QREF_DTYPE_BF16};
    for (size_t n = 0; n < 2; n++) {
        float *weight = synth256_weight(names[n], shapes[n][0], shapes[n][1]);
        for (size_t d = 0; d < 3; d++) {
            qref_fakequant_linear linear = analyze(weight, shapes[n][0], shapes[n][1], dtypes[d]);
            assert_false(linear.quantized);
        }
        free(weight);
    }
}

/*
 * A 4-bit group-128 matrix whose row 5 is a constant and row 9 has two values is still
 * 4-bit groups of 128: those rows fit any grid and the others set the bit width.
 */
static void test_linear_constant_and_two_value_rows(void **state)
{
    (void)state;
    float *weight = synth256_weight("model.layers.0.mlp.gate_proj.weight", 768, 256);
    float *fake = rtn_fake(weight, 768, 256, 4, 128, false);
    for (int j = 0; j < 256; j++) {
        fake[5 * 256 + j] = 0.0421f;
        fake[9 * 256 + j] = (j & 1) ? 0.5f : -0.3f;
    }
    qref_fakequant_linear linear = analyze(fake, 768, 256, QREF_DTYPE_F16);
    assert_true(linear.quantized);
    assert_int_equal(linear.bits, 4);
    assert_int_equal(linear.group_size, 128);
    free(fake);
    free(weight);
}

/* One float row in a fake-quantized matrix makes the linear not fake-quantized. */
static void test_linear_one_float_row(void **state)
{
    (void)state;
    float *weight = synth256_weight("model.layers.0.mlp.gate_proj.weight", 768, 256);
    float *fake = rtn_fake(weight, 768, 256, 4, 128, false);
    memcpy(fake + 700 * 256, weight + 700 * 256, 256 * sizeof *fake);
    qref_fakequant_linear linear = analyze(fake, 768, 256, QREF_DTYPE_F16);
    assert_false(linear.quantized);
    free(fake);
    free(weight);
}

/* A weight of the wrong shape or dtype is an error, not a verdict. */
static void test_linear_rejects_shape_and_dtype(void **state)
{
    (void)state;
    float values[64] = {0};
    stored_matrix m;
    stored_matrix_init(&m, "x.weight", values, 8, 8, QREF_DTYPE_F32);
    qref_fakequant_linear linear;
    qref_error err = {0};
    test_assert_error(qref_fakequant_analyze_linear(&m.tensor, 8, 16, &linear, &err), &err, QREF_ERR_INVALID,
                      "shape [8, 8], expected [8, 16]");
    m.tensor.dtype = QREF_DTYPE_I32;
    test_assert_error(qref_fakequant_analyze_linear(&m.tensor, 8, 8, &linear, &err), &err, QREF_ERR_UNSUPPORTED,
                      "dtype I32");
    stored_matrix_free(&m);
}

/* ---- claims and artifacts ------------------------------------------------------------------- */

static int claimed_bits_of(const char *json)
{
    cJSON *config = cJSON_Parse(json);
    assert_non_null(config);
    qref_fakequant_claim claim;
    qref_fakequant_claim_read(config, &claim);
    cJSON_Delete(config);
    return claim.bits;
}

static void test_claim_names(void **state)
{
    (void)state;
    assert_int_equal(claimed_bits_of("{\"_name_or_path\": \"meta-llama/Meta-Llama-3-8B\"}"), 0);
    assert_int_equal(claimed_bits_of("{\"_name_or_path\": \"org/llama-3-8b-w4a16\"}"), 4);
    assert_int_equal(claimed_bits_of("{\"_name_or_path\": \"llama3-8b-4bit-gptq\"}"), 4);
    assert_int_equal(claimed_bits_of("{\"_name_or_path\": \"Llama-3-8B-INT8\"}"), 8);
    assert_int_equal(claimed_bits_of("{\"_name_or_path\": \"model_w3_g128\"}"), 3);
    assert_int_equal(claimed_bits_of("{\"_name_or_path\": \"awq-2-bit\"}"), 2);
    assert_int_equal(claimed_bits_of("{\"_name_or_path\": \"w16-model\"}"), 0);
    assert_int_equal(claimed_bits_of("{\"_name_or_path\": \"llama-3-8b-w4\", "
                                     "\"qconform\": {\"fake_quant\": {\"bits\": 3, \"group_size\": 64}}}"), 3);
    assert_int_equal(claimed_bits_of("{}"), 0);
}

/* Three linears: two 4-bit groups of 128 and one given per case; the findings it produces. */
static void run_artifact(const float *third, const char *config_json, qref_fakequant_summary *summary,
                         qref_findings *findings)
{
    float *weight = synth256_weight("model.layers.0.mlp.up_proj.weight", 768, 256);
    float *fake = rtn_fake(weight, 768, 256, 4, 128, false);
    stored_matrix matrices[3];
    stored_matrix_init(&matrices[0], "a.weight", fake, 768, 256, QREF_DTYPE_F16);
    stored_matrix_init(&matrices[1], "b.weight", fake, 768, 256, QREF_DTYPE_F16);
    stored_matrix_init(&matrices[2], "c.weight", third != NULL ? third : fake, 768, 256, QREF_DTYPE_F16);
    qref_tensor items[3] = {matrices[0].tensor, matrices[1].tensor, matrices[2].tensor};
    qref_tensor_set set = {.items = items, .count = 3};
    const qref_fakequant_module modules[] = {{"a", 768, 256}, {"b", 768, 256}, {"c", 768, 256}};
    cJSON *config = cJSON_Parse(config_json);
    qref_fakequant_analyze_artifact(&set, modules, 3, "config.json", config, summary, findings);
    cJSON_Delete(config);
    for (int i = 0; i < 3; i++)
        stored_matrix_free(&matrices[i]);
    free(fake);
    free(weight);
}

static size_t count_id(const qref_findings *findings, const char *id)
{
    size_t count = 0;
    for (size_t i = 0; i < findings->count; i++)
        count += strcmp(findings->items[i].id, id) == 0;
    return count;
}

static void test_artifact_uniform(void **state)
{
    (void)state;
    qref_fakequant_summary summary;
    qref_findings findings = {0};
    run_artifact(NULL, "{\"_name_or_path\": \"x-w4a16\"}", &summary, &findings);
    assert_true(summary.uniform);
    assert_int_equal(summary.bits, 4);
    assert_int_equal(summary.group_size, 128);
    assert_float_equal(summary.effective_bits, 4.25, 1e-12);
    assert_int_equal(count_id(&findings, "fakequant.linear"), 3);
    assert_int_equal(findings.count, 3);
    assert_non_null(strstr(findings.items[0].message, "linear a: 4-bit groups of 128, 4.25 effective bits"));
    qref_findings_free(&findings);
}

static void test_artifact_mixed_partial_claim(void **state)
{
    (void)state;
    float *weight = synth256_weight("model.layers.0.mlp.up_proj.weight", 768, 256);
    float *eight = rtn_fake(weight, 768, 256, 8, 128, false);
    qref_fakequant_summary summary;
    qref_findings findings = {0};

    /* an 8-bit linear among 4-bit ones, and a name claiming 4 bits */
    run_artifact(eight, "{\"_name_or_path\": \"x-4bit\"}", &summary, &findings);
    assert_false(summary.uniform);
    assert_int_equal(count_id(&findings, "fakequant.mixed"), 1);
    assert_int_equal(count_id(&findings, "fakequant.partial"), 0);
    qref_findings_free(&findings);

    /* a full-precision linear among them */
    run_artifact(weight, "{}", &summary, &findings);
    assert_int_equal(summary.quantized, 2);
    assert_int_equal(count_id(&findings, "fakequant.partial"), 1);
    qref_findings_free(&findings);

    /* uniform 4-bit values, a config that claims 3 bits */
    run_artifact(NULL, "{\"qconform\": {\"fake_quant\": {\"bits\": 3, \"group_size\": 128}}}", &summary, &findings);
    assert_int_equal(count_id(&findings, "fakequant.claim"), 1);
    assert_non_null(strstr(findings.items[findings.count - 1].message, "claims 3-bit weights"));
    qref_findings_free(&findings);
    free(eight);
    free(weight);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_worked_quarter_steps),
        cmocka_unit_test(test_group_worked_repeated_values),
        cmocka_unit_test(test_group_worked_golden_ratio_has_no_grid),
        cmocka_unit_test(test_group_constant_and_two_values),
        cmocka_unit_test(test_group_nonfinite_values),
        cmocka_unit_test(test_group_subnormal_scales),
        cmocka_unit_test(test_group_bf16_collisions),
        cmocka_unit_test(test_linear_detects_synth256_up_proj),
        cmocka_unit_test(test_linear_detects_synth256_down_proj),
        cmocka_unit_test(test_linear_float_originals_not_detected),
        cmocka_unit_test(test_linear_constant_and_two_value_rows),
        cmocka_unit_test(test_linear_one_float_row),
        cmocka_unit_test(test_linear_rejects_shape_and_dtype),
        cmocka_unit_test(test_claim_names),
        cmocka_unit_test(test_artifact_uniform),
        cmocka_unit_test(test_artifact_mixed_partial_claim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
