/*
 * The quantize writer (checker/qc_quantize.h) on the fixture models, read back through the
 * snapshot reader and the GPTQ codec.
 *
 * Expected linear weights come from qref_rtn_quantize on the reference weights, turned into
 * what the GPTQ format defines: scale rounded to f16, then f16(scale * (q - z)) rounded once,
 * as AutoGPTQ's qlinear_cuda_old forward computes it. Every other tensor must be the
 * reference's bytes. The failure cases check that nothing is left behind: no output folder
 * and no temporary sibling.
 */
#define _XOPEN_SOURCE 700 /* strdup, lstat */

#include "test_support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "model/qref_llama.h"
#include "qc_model.h"
#include "qc_quantize.h"
#include "quant/qref_rtn.h"

#define STORIES "models/stories260k"
#define SYNTH "models/synth256"

/* ---- helpers ----------------------------------------------------------------------------- */

static bool path_exists(const char *path)
{
    struct stat info;
    return lstat(path, &info) == 0;
}

/* Counts the entries of the scratch folder named ".<base>." followed by anything. */
static int count_siblings(const char *base)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, ".%s.", base);
    DIR *dir = opendir(test_tmp_path(""));
    assert_non_null(dir);
    int count = 0;
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir))
        count += strncmp(entry->d_name, prefix, strlen(prefix)) == 0;
    closedir(dir);
    return count;
}

static qc_quantize_request request_for(const char *reference, const char *out_dir, int bits, long group_size,
                                       bool sym, qc_checkpoint_choice checkpoint)
{
    qc_quantize_request request = {.reference = reference, .out_dir = out_dir, .bits = bits,
                                   .group_size = group_size, .sym = sym, .checkpoint = checkpoint,
                                   .force = false, .quantizer = "qconform:test"};
    return request;
}

/* Expected dense weight of one linear: RTN codes with f16 scales, product rounded to f16. */
static void expected_weight(const qref_rtn_result *rtn, float *dense)
{
    for (size_t o = 0; o < rtn->rows; o++) {
        for (size_t i = 0; i < rtn->cols; i++) {
            size_t g = o * rtn->groups + i / rtn->group_size;
            float scale = qref_f16_to_f32(qref_f32_to_f16(rtn->scales[g]));
            int offset = (int)rtn->codes[o * rtn->cols + i] - (int)rtn->zeros[g];
            dense[o * rtn->cols + i] = qref_f16_to_f32(qref_f32_to_f16(scale * (float)offset));
        }
    }
}

/* True when RTN with this config gives some linear of the reference a zero point of 0. */
static bool reference_has_zero_point_zero(const char *reference, int bits, long group_size, bool sym)
{
    qc_model model;
    qref_error err = {0};
    assert_int_equal(qc_model_open(reference, &model, &err), QREF_OK);
    bool found = false;
    for (int layer = 0; layer < model.config.num_hidden_layers && !found; layer++) {
        for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT && !found; index++) {
            int64_t rows, cols;
            qref_llama_linear_shape(&model.config, index, &rows, &cols);
            char name[256], suffix[64];
            snprintf(suffix, sizeof suffix, "%s.weight", qref_llama_linear_names[index]);
            qref_llama_layer_tensor_name(name, sizeof name, layer, suffix);
            float *weight = malloc((size_t)(rows * cols) * sizeof *weight);
            assert_non_null(weight);
            assert_int_equal(qref_weights_load(&model.weights, name, rows, cols, weight, &err), QREF_OK);
            qref_rtn_config config = {.bits = bits, .group_size = group_size, .sym = sym};
            qref_rtn_result rtn;
            assert_int_equal(qref_rtn_quantize(name, weight, (size_t)rows, (size_t)cols, &config, &rtn, &err),
                             QREF_OK);
            for (size_t k = 0; k < rtn.rows * rtn.groups; k++)
                found = found || rtn.zeros[k] == 0;
            qref_rtn_result_free(&rtn);
            free(weight);
        }
    }
    qc_model_close(&model);
    return found;
}

/* ---- reading an artifact back ------------------------------------------------------------ */

/* Compares every linear of the artifact with RTN on the reference, bit for bit. */
static void check_linears(qc_model *reference, qc_model *artifact, int bits, long group_size, bool sym)
{
    const qref_tensor_set *stored = qref_snapshot_tensors(artifact->snapshot);
    qref_error err = {0};
    for (int layer = 0; layer < reference->config.num_hidden_layers; layer++) {
        for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
            int64_t rows, cols;
            qref_llama_linear_shape(&reference->config, index, &rows, &cols);
            char prefix[256], name[300];
            qref_llama_layer_tensor_name(prefix, sizeof prefix, layer, qref_llama_linear_names[index]);
            snprintf(name, sizeof name, "%s.weight", prefix);
            size_t count = (size_t)(rows * cols);
            float *weight = malloc(count * sizeof *weight);
            float *expected = malloc(count * sizeof *expected);
            float *read = malloc(count * sizeof *read);
            assert_non_null(weight);
            assert_non_null(expected);
            assert_non_null(read);

            /* Expected: RTN of the reference weight in the GPTQ format's arithmetic. */
            assert_int_equal(qref_weights_load(&reference->weights, name, rows, cols, weight, &err), QREF_OK);
            qref_rtn_config config = {.bits = bits, .group_size = group_size, .sym = sym};
            qref_rtn_result rtn;
            assert_int_equal(qref_rtn_quantize(name, weight, (size_t)rows, (size_t)cols, &config, &rtn, &err),
                             QREF_OK);
            expected_weight(&rtn, expected);
            qref_rtn_result_free(&rtn);

            /* Read: the artifact stores the packed tensors, not the weight. */
            assert_null(qref_tensor_set_find(stored, name));
            char qweight_name[320];
            snprintf(qweight_name, sizeof qweight_name, "%s.qweight", prefix);
            const qref_tensor *qweight = qref_tensor_set_find(stored, qweight_name);
            assert_non_null(qweight);
            assert_int_equal(qweight->shape[0], (cols * bits + 31) / 32);
            assert_int_equal(qweight->shape[1], rows);
            assert_int_equal(qref_weights_load(&artifact->weights, name, rows, cols, read, &err), QREF_OK);
            assert_memory_equal(read, expected, count * sizeof *read);
            free(weight);
            free(expected);
            free(read);
        }
    }
}

/* Compares every tensor of the reference that is not a linear weight with the artifact's bytes. */
static void check_other_tensors(qc_model *reference, qc_model *artifact)
{
    const qref_tensor_set *original = qref_snapshot_tensors(reference->snapshot);
    const qref_tensor_set *stored = qref_snapshot_tensors(artifact->snapshot);
    size_t linears = (size_t)reference->config.num_hidden_layers * QREF_LLAMA_LINEAR_COUNT;
    size_t others = 0;
    for (size_t k = 0; k < original->count; k++) {
        const qref_tensor *tensor = &original->items[k];
        bool linear = false;
        for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
            char suffix[64];
            snprintf(suffix, sizeof suffix, ".%s.weight", qref_llama_linear_names[index]);
            size_t length = strlen(tensor->name), suffix_length = strlen(suffix);
            linear = linear || (length > suffix_length && strcmp(tensor->name + length - suffix_length, suffix) == 0);
        }
        if (linear)
            continue;
        others++;
        const qref_tensor *copy = qref_tensor_set_find(stored, tensor->name);
        assert_non_null(copy);
        assert_int_equal(copy->dtype, tensor->dtype);
        assert_int_equal(copy->ndim, tensor->ndim);
        assert_memory_equal(copy->shape, tensor->shape, sizeof tensor->shape);
        assert_int_equal(copy->nbytes, tensor->nbytes);
        assert_memory_equal(copy->data, tensor->data, tensor->nbytes);
    }
    assert_int_equal(others + linears, original->count);
    assert_int_equal(stored->count, others + 4 * linears);
}

/* Checks the config files: REF's config.json text kept, and the quantization config declared. */
static void check_configs(const char *reference_dir, const char *out_dir, const qc_model *artifact, int bits,
                          long group_size, bool sym, qref_gptq_format format)
{
    assert_true(artifact->quantized);
    assert_int_equal(artifact->gptq.bits, bits);
    assert_int_equal(artifact->gptq.group_size, group_size);
    assert_int_equal(artifact->gptq.sym, sym);
    assert_int_equal(artifact->gptq.format, format);
    assert_false(artifact->gptq.desc_act);
    assert_string_equal(artifact->gptq.algorithm, "rtn");
    assert_string_equal(artifact->gptq.quantizer, "qconform:test");

    /* config.json begins with the reference's text up to its last member. */
    char path[1024];
    size_t reference_size, artifact_size;
    snprintf(path, sizeof path, "%s/config.json", reference_dir);
    char *original = test_read_file(path, &reference_size);
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    char *written = test_read_file(path, &artifact_size);
    char *brace = strrchr(original, '}');
    assert_non_null(brace);
    size_t keep = (size_t)(brace - original);
    while (keep > 0 && (original[keep - 1] == '\n' || original[keep - 1] == ' '))
        keep--;
    assert_true(artifact_size > keep);
    assert_memory_equal(written, original, keep);
    assert_non_null(strstr(written + keep, "\"quantization_config\": {"));
    free(original);
    free(written);

    /* quantize_config.json exists and names the same format; the tokenizer is a byte copy. */
    snprintf(path, sizeof path, "%s/quantize_config.json", out_dir);
    char *quantize = test_read_file(path, &artifact_size);
    assert_non_null(strstr(quantize, format == QREF_GPTQ_FORMAT_V2 ? "\"checkpoint_format\": \"gptq_v2\""
                                                                   : "\"checkpoint_format\": \"gptq\""));
    free(quantize);
    snprintf(path, sizeof path, "%s/tokenizer.model", reference_dir);
    char *tokenizer = test_read_file(path, &reference_size);
    snprintf(path, sizeof path, "%s/tokenizer.model", out_dir);
    char *copied = test_read_file(path, &artifact_size);
    assert_int_equal(artifact_size, reference_size);
    assert_memory_equal(copied, tokenizer, reference_size);
    free(tokenizer);
    free(copied);
}

/* Quantizes reference with auto format into a scratch folder and checks the whole artifact.
 * Returns the format written. */
static qref_gptq_format quantize_and_check(const char *fixture, const char *name, int bits, long group_size,
                                           bool sym)
{
    char *reference = strdup(test_fixture_path(fixture));
    char *out_dir = test_scratch_path(name);
    assert_non_null(reference);
    qc_quantize_request request = request_for(reference, out_dir, bits, group_size, sym, QC_CHECKPOINT_AUTO);
    qc_quantize_outcome outcome;
    qref_error err = {0};
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_OK);
    assert_int_equal(count_siblings(name), 0);

    /* auto writes v2 exactly when RTN gives some zero point 0. */
    bool needs_v2 = reference_has_zero_point_zero(reference, bits, group_size, sym);
    qref_gptq_format expected_format = needs_v2 ? QREF_GPTQ_FORMAT_V2 : QREF_GPTQ_FORMAT_V1;
    assert_int_equal(outcome.format, expected_format);
    assert_int_equal(outcome.format_switched, needs_v2);
    if (needs_v2)
        assert_non_null(strstr(outcome.switch_reason, "zero point 0"));

    qc_model original, artifact;
    assert_int_equal(qc_model_open(reference, &original, &err), QREF_OK);
    assert_int_equal(qc_model_open(out_dir, &artifact, &err), QREF_OK);
    assert_int_equal(outcome.layers, original.config.num_hidden_layers);
    assert_int_equal(outcome.linears, original.config.num_hidden_layers * QREF_LLAMA_LINEAR_COUNT);
    check_configs(reference, out_dir, &artifact, bits, group_size, sym, expected_format);
    check_linears(&original, &artifact, bits, group_size, sym);
    check_other_tensors(&original, &artifact);
    qc_model_close(&artifact);
    qc_model_close(&original);
    free(reference);
    free(out_dir);
    return expected_format;
}

/* ---- artifacts --------------------------------------------------------------------------- */

/*
 * stories260k (hidden 64, FFN 172) at 8, 4, 3 and 2 bits, per-channel and group 4,
 * asymmetric, plus one symmetric case. 172 * b is not a multiple of 32 at 2 and 3 bits, and
 * 172 is not a multiple of 32 at any width, so down_proj's qweight and up/gate_proj's qzeros
 * are padded. Both checkpoint formats must occur across the cases.
 */
static void test_quantize_stories260k(void **state)
{
    (void)state;
    static const int widths[] = {8, 4, 3, 2};
    static const long group_sizes[] = {-1, 4};
    int v1 = 0, v2 = 0;
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        for (size_t g = 0; g < sizeof group_sizes / sizeof group_sizes[0]; g++) {
            char name[64];
            snprintf(name, sizeof name, "quantize-stories-w%dg%ld", widths[w], group_sizes[g]);
            qref_gptq_format format = quantize_and_check(STORIES, name, widths[w], group_sizes[g], false);
            v1 += format == QREF_GPTQ_FORMAT_V1;
            v2 += format == QREF_GPTQ_FORMAT_V2;
        }
    }
    assert_int_equal(quantize_and_check(STORIES, "quantize-stories-w3g4-sym", 3, 4, true), QREF_GPTQ_FORMAT_V1);
    assert_true(v1 > 0);
    assert_true(v2 > 0);
}

/* synth256 at 4 bits, group 128: every width is a multiple of 32, so qweight has exactly
 * AutoGPTQ's in // 32 * 4 rows and no padding. */
static void test_quantize_synth256_w4g128(void **state)
{
    (void)state;
    quantize_and_check(SYNTH, "quantize-synth-w4g128", 4, 128, false);

    qc_model artifact;
    qref_error err = {0};
    assert_int_equal(qc_model_open(test_tmp_path("quantize-synth-w4g128"), &artifact, &err), QREF_OK);
    const qref_tensor *qweight =
        qref_tensor_set_find(qref_snapshot_tensors(artifact.snapshot), "model.layers.1.mlp.down_proj.qweight");
    assert_non_null(qweight);
    assert_int_equal(artifact.config.intermediate_size % 32, 0);
    assert_int_equal(qweight->shape[0], artifact.config.intermediate_size / 32 * 4);
    const qref_tensor *qzeros =
        qref_tensor_set_find(qref_snapshot_tensors(artifact.snapshot), "model.layers.1.mlp.down_proj.qzeros");
    assert_non_null(qzeros);
    assert_int_equal(qzeros->shape[0], artifact.config.intermediate_size / 128);
    assert_int_equal(qzeros->shape[1], artifact.config.hidden_size / 32 * 4);
    qc_model_close(&artifact);
}

/* ---- failures leave nothing behind ------------------------------------------------------- */

/* Group 8 does not divide down_proj's input width 172. */
static void test_quantize_group_not_dividing(void **state)
{
    (void)state;
    char *out_dir = test_scratch_path("quantize-g8");
    qc_quantize_request request = request_for(test_fixture_path(STORIES), out_dir, 4, 8, false, QC_CHECKPOINT_AUTO);
    qc_quantize_outcome outcome;
    qref_error err = {0};
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "model.layers.0.mlp.down_proj"));
    assert_non_null(strstr(err.message, "group size 8 does not divide its input width 172"));
    assert_false(path_exists(out_dir));
    assert_int_equal(count_siblings("quantize-g8"), 0);
    free(out_dir);
}

static void test_quantize_check_group_size(void **state)
{
    (void)state;
    qc_model model;
    qref_error err = {0};
    assert_int_equal(qc_model_open(test_fixture_path(STORIES), &model, &err), QREF_OK);
    assert_int_equal(qc_quantize_check_group_size(&model.config, -1, &err), QREF_OK);
    assert_int_equal(qc_quantize_check_group_size(&model.config, 4, &err), QREF_OK);
    assert_int_equal(qc_quantize_check_group_size(&model.config, 172, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "self_attn.q_proj: group size 172 does not divide its input width 64"));
    assert_non_null(strstr(err.message, "divides 64 and 172"));
    assert_int_equal(qc_quantize_check_group_size(&model.config, 0, &err), QREF_ERR_INVALID);
    qc_model_close(&model);
}

/* An existing folder is kept as it is without force, and replaced with it. */
static void test_quantize_existing_folder(void **state)
{
    (void)state;
    char *out_dir = test_scratch_path("quantize-existing");
    assert_int_equal(mkdir(out_dir, 0755), 0);
    char marker[1024];
    snprintf(marker, sizeof marker, "%s/marker", out_dir);
    test_write_file(marker, "keep", 4);

    qc_quantize_request request = request_for(test_fixture_path(STORIES), out_dir, 4, -1, false, QC_CHECKPOINT_AUTO);
    qc_quantize_outcome outcome;
    qref_error err = {0};
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "already exists; pass --force to replace it"));
    size_t size;
    char *text = test_read_file(marker, &size);
    assert_int_equal(size, 4);
    assert_memory_equal(text, "keep", 4);
    free(text);
    char weights[1024];
    snprintf(weights, sizeof weights, "%s/model.safetensors", out_dir);
    assert_false(path_exists(weights));
    assert_int_equal(count_siblings("quantize-existing"), 0);

    request.force = true;
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_OK);
    assert_false(path_exists(marker));
    assert_true(path_exists(weights));
    assert_int_equal(count_siblings("quantize-existing"), 0);
    free(out_dir);
}

static void test_quantize_rejects_quantized_reference(void **state)
{
    (void)state;
    char *out_dir = test_scratch_path("quantize-requantize");
    qc_quantize_request request = request_for(test_fixture_path("models/synth256-autogptq-w4g128"), out_dir, 4, 128,
                                              false, QC_CHECKPOINT_AUTO);
    qc_quantize_outcome outcome;
    qref_error err = {0};
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "already quantized"));
    assert_non_null(strstr(err.message, "4-bit GPTQ"));
    assert_false(path_exists(out_dir));
    assert_int_equal(count_siblings("quantize-requantize"), 0);
    free(out_dir);
}

/* Explicit gptq (v1) cannot store the zero points 0 that group 4 gives stories260k. */
static void test_quantize_v1_zero_point_zero(void **state)
{
    (void)state;
    char *reference = strdup(test_fixture_path(STORIES));
    assert_non_null(reference);
    assert_true(reference_has_zero_point_zero(reference, 4, 4, false));
    char *out_dir = test_scratch_path("quantize-v1-zero");
    qc_quantize_request request = request_for(reference, out_dir, 4, 4, false, QC_CHECKPOINT_V1);
    qc_quantize_outcome outcome;
    qref_error err = {0};
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "has zero point 0 at output"));
    assert_non_null(strstr(err.message, "use --checkpoint-format gptq_v2"));
    assert_false(path_exists(out_dir));
    assert_int_equal(count_siblings("quantize-v1-zero"), 0);

    /* Explicit gptq_v2 writes it. */
    request.checkpoint = QC_CHECKPOINT_V2;
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_OK);
    assert_int_equal(outcome.format, QREF_GPTQ_FORMAT_V2);
    assert_false(outcome.format_switched);
    free(out_dir);
    free(reference);
}

/* Missing parent folders are created, as mkdir -p does. */
static void test_quantize_creates_parents(void **state)
{
    (void)state;
    char *parent = test_scratch_path("quantize-parents");
    char out_dir[1024];
    snprintf(out_dir, sizeof out_dir, "%s/a/b/artifact", parent);
    qc_quantize_request request = request_for(test_fixture_path(STORIES), out_dir, 8, -1, true, QC_CHECKPOINT_AUTO);
    qc_quantize_outcome outcome;
    qref_error err = {0};
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_OK);
    char weights[1100];
    snprintf(weights, sizeof weights, "%s/model.safetensors", out_dir);
    assert_true(path_exists(weights));
    free(parent);
}

/*
 * A failure after the parent folders were created removes them again. The temporary folder
 * ".<name>.tmp-XXXXXX" of a 250-byte name exceeds the 255-byte name limit of Linux file
 * systems, so mkdtemp fails after the parents exist.
 */
static void test_quantize_failure_removes_parents(void **state)
{
    (void)state;
    char *parent = test_scratch_path("quantize-parents-removed");
    char name[251];
    memset(name, 'a', 250);
    name[250] = '\0';
    char out_dir[1400];
    snprintf(out_dir, sizeof out_dir, "%s/inner/%s", parent, name);
    qc_quantize_request request = request_for(test_fixture_path(STORIES), out_dir, 8, -1, true, QC_CHECKPOINT_AUTO);
    qc_quantize_outcome outcome;
    qref_error err = {0};
    assert_int_equal(qc_quantize_gptq(&request, &outcome, &err), QREF_ERR_IO);
    assert_non_null(strstr(err.message, "cannot create a temporary folder"));
    assert_false(path_exists(parent));
    free(parent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_stories260k),
        cmocka_unit_test(test_quantize_synth256_w4g128),
        cmocka_unit_test(test_quantize_group_not_dividing),
        cmocka_unit_test(test_quantize_check_group_size),
        cmocka_unit_test(test_quantize_existing_folder),
        cmocka_unit_test(test_quantize_rejects_quantized_reference),
        cmocka_unit_test(test_quantize_v1_zero_point_zero),
        cmocka_unit_test(test_quantize_creates_parents),
        cmocka_unit_test(test_quantize_failure_removes_parents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
