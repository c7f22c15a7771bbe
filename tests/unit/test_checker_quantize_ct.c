/*
 * The compressed-tensors writer of `qconform quantize` (checker/qc_quantize_ct.h) on the
 * fixture models, read back through the snapshot reader and the compressed-tensors codec.
 *
 * Expected linear weights are computed here from the reference weights with the formula of
 * compressed-tensors' calculate_qparams and _quantize in f32 (the fixtures store F32), then
 * W = (q - zp) * scale, written out again below rather than taken from qref_ct_quantize.
 * Every other tensor must be the reference's bytes, and the artifact must pass the codec's
 * structure checks without a finding.
 */
#define _XOPEN_SOURCE 700 /* strdup, lstat */

#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/qref_llama.h"
#include "qc_model.h"
#include "qc_quantize_ct.h"

/*
 * The fake-quantized weight of compressed-tensors' min-max quantization in f32: per row
 * (channel) or per group of G columns, lo = min(x, 0), hi = max(x, 0); symmetric scale
 * max(|lo|, |hi|) / ((2^b - 1) / 2), asymmetric (hi - lo) / (2^b - 1) and
 * zp = round(clamp(-2^(b-1) - lo / scale)); q = round(clamp(x / scale + zp)).
 */
static void expected_weight(const float *weight, int64_t rows, int64_t cols, int bits, long group_size, bool sym,
                            float *out)
{
    const int64_t G = group_size == -1 ? cols : group_size;
    const float q_min = -(float)(1 << (bits - 1)), q_max = (float)((1 << (bits - 1)) - 1);
    for (int64_t o = 0; o < rows; o++)
        for (int64_t start = 0; start < cols; start += G) {
            const float *x = weight + o * cols + start;
            float lo = 0.0f, hi = 0.0f;
            for (int64_t i = 0; i < G; i++) {
                lo = fminf(lo, x[i]);
                hi = fmaxf(hi, x[i]);
            }
            float scale = sym ? fmaxf(-lo, hi) / ((q_max - q_min) / 2.0f) : (hi - lo) / (q_max - q_min);
            scale = fmaxf(scale, 0x1p-23f);
            float zp = sym ? 0.0f : nearbyintf(fminf(fmaxf(q_min - lo / scale, q_min), q_max));
            for (int64_t i = 0; i < G; i++) {
                float q = nearbyintf(fminf(fmaxf(x[i] / scale + zp, q_min), q_max));
                out[o * cols + start + i] = (float)((int)q - (int)zp) * scale; /* int8 codes: no -0 */
            }
        }
}

/* Quantizes fixture into name with these options and checks the artifact against the reference. */
static void check_round_trip(const char *fixture, const char *name, int bits, long group_size, bool sym)
{
    char *out = test_scratch_path(name);
    qc_ct_request request = {.reference = test_fixture_path(fixture), .out_dir = out, .bits = bits,
                             .group_size = group_size, .sym = sym};
    qc_quantize_outcome outcome;
    qref_error err = {0};
    qref_status status = qc_quantize_ct(&request, &outcome, &err);
    if (status != QREF_OK)
        fail_msg("%s", err.message);

    qc_model reference, artifact;
    assert_int_equal(qc_model_open(test_fixture_path(fixture), &reference, &err), QREF_OK);
    assert_int_equal(qc_model_open(out, &artifact, &err), QREF_OK);
    assert_true(artifact.quantized);
    assert_string_equal(artifact.codec->name, "compressed-tensors");
    assert_int_equal(outcome.linears, reference.config.num_hidden_layers * QREF_LLAMA_LINEAR_COUNT);
    assert_null(qref_snapshot_find_file(artifact.snapshot, "quantize_config.json"));

    /* every linear: structure without findings, weights equal to the formula's */
    const qref_tensor_set *tensors = artifact.tensor_weights.tensors;
    for (int layer = 0; layer < reference.config.num_hidden_layers; layer++)
        for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT; k++) {
            char module[256], weight_name[300];
            qref_llama_layer_tensor_name(module, sizeof module, layer, qref_llama_linear_names[k]);
            snprintf(weight_name, sizeof weight_name, "%s.weight", module);
            int64_t rows, cols;
            qref_llama_linear_shape(&reference.config, k, &rows, &cols);
            assert_true(artifact.codec->linear_stored(artifact.codec_config, tensors, module));
            qref_findings findings = {0};
            artifact.codec->linear_check(artifact.codec_config, tensors, module, rows, cols, &findings);
            for (size_t f = 0; f < findings.count; f++)
                print_error("%s: %s\n", findings.items[f].id, findings.items[f].message);
            assert_int_equal(findings.count, 0);
            qref_findings_free(&findings);

            size_t count = (size_t)(rows * cols);
            float *ref = malloc(count * sizeof *ref), *got = malloc(count * sizeof *got);
            float *want = malloc(count * sizeof *want);
            assert_int_equal(qref_weights_load(&reference.weights, weight_name, rows, cols, ref, &err), QREF_OK);
            assert_int_equal(qref_weights_load(&artifact.weights, weight_name, rows, cols, got, &err), QREF_OK);
            expected_weight(ref, rows, cols, bits, group_size, sym, want);
            for (size_t i = 0; i < count; i++)
                if (memcmp(&got[i], &want[i], sizeof got[i]) != 0)
                    fail_msg("%s [%zu][%zu]: %.9g, expected %.9g", module, i / (size_t)cols, i % (size_t)cols,
                             (double)got[i], (double)want[i]);
            free(ref);
            free(got);
            free(want);
        }

    /* every other tensor: the reference's bytes */
    const qref_tensor_set *original = qref_snapshot_tensors(reference.snapshot);
    for (size_t t = 0; t < original->count; t++) {
        const qref_tensor *source = &original->items[t];
        const qref_tensor *copy = qref_tensor_set_find(tensors, source->name);
        bool linear = strstr(source->name, "_proj.weight") != NULL;
        if (linear) {
            assert_null(copy);
            continue;
        }
        assert_non_null(copy);
        assert_int_equal(copy->nbytes, source->nbytes);
        assert_memory_equal(copy->data, source->data, (size_t)source->nbytes);
    }

    /* the whole artifact: no schema problem, targets all matched */
    const char *modules[1] = {"model.layers.0.mlp.up_proj"};
    qref_findings findings = {0};
    artifact.codec->artifact_check(artifact.codec_config, tensors, modules, 1, &findings);
    assert_int_equal(findings.count, 0);
    qref_findings_free(&findings);

    qc_model_close(&artifact);
    qc_model_close(&reference);
    free(out);
}

static void test_synth256_w4g128_asym(void **state)
{
    (void)state;
    check_round_trip("models/synth256", "ct-synth256-w4g128", 4, 128, false);
}

static void test_synth256_w8_channel_sym(void **state)
{
    (void)state;
    check_round_trip("models/synth256", "ct-synth256-w8", 8, -1, true);
}

/* stories260k: 172 input features of down_proj leave 4 codes in the last word of every row */
static void test_stories260k_w4_channel_asym(void **state)
{
    (void)state;
    check_round_trip("models/stories260k", "ct-stories260k-w4", 4, -1, false);
}

static void test_stories260k_w8g4_sym(void **state)
{
    (void)state;
    check_round_trip("models/stories260k", "ct-stories260k-w8g4", 8, 4, true);
}

static void test_rejects_bad_requests(void **state)
{
    (void)state;
    char *out = test_scratch_path("ct-rejected");
    qc_ct_request request = {.reference = test_fixture_path("models/stories260k"), .out_dir = out, .bits = 3,
                             .group_size = -1, .sym = true};
    qc_quantize_outcome outcome;
    qref_error err = {0};
    test_assert_error(qc_quantize_ct(&request, &outcome, &err), &err, QREF_ERR_INVALID, "bits 3, expected 4 or 8");
    request.bits = 4;
    request.group_size = 8;
    test_assert_error(qc_quantize_ct(&request, &outcome, &err), &err, QREF_ERR_INVALID,
                      "group size 8 does not divide its input width 172");
    struct stat info;
    assert_int_not_equal(lstat(out, &info), 0);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synth256_w4g128_asym),
        cmocka_unit_test(test_synth256_w8_channel_sym),
        cmocka_unit_test(test_stories260k_w4_channel_asym),
        cmocka_unit_test(test_stories260k_w8g4_sym),
        cmocka_unit_test(test_rejects_bad_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
