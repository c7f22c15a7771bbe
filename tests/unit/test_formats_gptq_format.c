/*
 * The v1/v2 off-by-one (qref_gptq_format_check): reading a checkpoint in the wrong
 * zero-point format moves every weight by one scale step, and the zero-point statistics
 * over an artifact's linears must tell the two formats apart.
 *
 * Inputs: the real AutoGPTQ artifact fixtures/models/synth256-autogptq-w4g128 (format v1,
 * written by AutoGPTQ, so its label is known independently of this code), and RTN codes of
 * every linear of the synth256 and stories260k float fixtures packed here as v1 and as v2.
 * Each is checked under its own label (no finding) and under the other one (a
 * gptq.format_mismatch ERROR naming the label to use). Mixed or scarce evidence gives a
 * WARNING.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_gptq.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"
#include "quant/qref_rtn.h"

/* Linears of a float fixture: the seven projections of every layer, as f32 [out][in]. */
typedef struct float_model {
    qref_blob blob;
    qref_safetensors file;
    size_t count;
    const qref_tensor *weights[64];
} float_model;

static void float_model_open(float_model *model, const char *relative)
{
    qref_error err = {0};
    memset(model, 0, sizeof *model);
    assert_int_equal(qref_blob_map_file(test_fixture_path(relative), &model->blob, &err), QREF_OK);
    assert_int_equal(qref_safetensors_parse(relative, model->blob.data, model->blob.size, &model->file, &err),
                     QREF_OK);
    for (size_t i = 0; i < model->file.tensors.count; i++) {
        const qref_tensor *tensor = &model->file.tensors.items[i];
        size_t length = strlen(tensor->name);
        if (length > 12 && strcmp(tensor->name + length - 12, "_proj.weight") == 0) {
            assert_true(model->count < 64);
            assert_int_equal(tensor->dtype, QREF_DTYPE_F32);
            model->weights[model->count++] = tensor;
        }
    }
    assert_true(model->count >= 7);
}

static void float_model_close(float_model *model)
{
    qref_safetensors_free(&model->file);
    qref_blob_free(&model->blob);
}

/* RTN codes of every linear of a model, packed in one format. */
typedef struct packed_model {
    size_t count;
    qref_gptq_packed linears[64];
    int64_t out[64], in[64];
} packed_model;

static void packed_model_build(packed_model *packed, const float_model *model, int bits, long group_size, bool sym,
                               qref_gptq_format format)
{
    memset(packed, 0, sizeof *packed);
    for (size_t k = 0; k < model->count; k++) {
        const qref_tensor *tensor = model->weights[k];
        int64_t out = tensor->shape[0], in = tensor->shape[1];
        float *weight = malloc((size_t)(out * in) * sizeof *weight);
        assert_non_null(weight);
        for (int64_t i = 0; i < out * in; i++)
            weight[i] = qref_load_f32(tensor->data + 4 * i);
        qref_rtn_config config = {.bits = bits, .group_size = group_size, .sym = sym};
        qref_rtn_result rtn;
        qref_error err = {0};
        assert_int_equal(qref_rtn_quantize(tensor->name, weight, (size_t)out, (size_t)in, &config, &rtn, &err),
                         QREF_OK);
        qref_gptq_codes codes = {.bits = bits, .out_features = out, .in_features = in,
                                 .group_size = (int64_t)rtn.group_size, .groups = (int64_t)rtn.groups,
                                 .scale_dtype = QREF_DTYPE_F16, .codes = rtn.codes, .zeros = rtn.zeros,
                                 .scales = rtn.scales, .g_idx = NULL};
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(tensor->name) - 7), tensor->name);
        assert_int_equal(qref_gptq_pack(prefix, &codes, format, &packed->linears[k], &err), QREF_OK);
        packed->out[k] = out;
        packed->in[k] = in;
        qref_rtn_result_free(&rtn);
        free(weight);
    }
    packed->count = model->count;
}

static void packed_model_free(packed_model *packed)
{
    for (size_t k = 0; k < packed->count; k++)
        qref_gptq_packed_free(&packed->linears[k]);
}

static qref_gptq_config config_for(int bits, long group_size, bool sym, qref_gptq_format format)
{
    qref_gptq_config config;
    qref_gptq_config_init(&config);
    config.bits = bits;
    config.group_size = group_size;
    config.sym = sym;
    config.format = format;
    config.declared = QREF_GPTQ_KEY_BITS | QREF_GPTQ_KEY_GROUP_SIZE | QREF_GPTQ_KEY_SYM | QREF_GPTQ_KEY_DESC_ACT |
                      QREF_GPTQ_KEY_FORMAT;
    return config;
}

/* Runs the statistics over the first count linears of packed (each in the format its own
 * entry of formats gives, or all in config's when formats is NULL) and the decision. */
static void check_packed(const packed_model *packed, size_t count, const qref_gptq_config *config,
                         qref_gptq_format_stats *stats, qref_findings *findings)
{
    qref_gptq_format_stats_init(stats, config);
    for (size_t k = 0; k < count; k++) {
        const qref_gptq_packed *p = &packed->linears[k];
        qref_gptq_linear linear = {.prefix = p->qweight.name, .qweight = &p->qweight, .qzeros = &p->qzeros,
                                   .scales = &p->scales, .g_idx = &p->g_idx, .out_features = packed->out[k],
                                   .in_features = packed->in[k]};
        qref_error err = {0};
        assert_int_equal(qref_gptq_format_stats_add(stats, &linear, config, &err), QREF_OK);
    }
    qref_gptq_format_check(stats, findings);
}

/* Asserts no finding, or one gptq.format_mismatch of severity naming the label to use. */
static void expect_format(const qref_findings *findings, bool mismatch, qref_severity severity, const char *label)
{
    if (!mismatch) {
        if (findings->count > 0)
            fail_msg("unexpected %s: %s", findings->items[0].id, findings->items[0].message);
        return;
    }
    assert_int_equal(findings->count, 1);
    assert_string_equal(findings->items[0].id, "gptq.format_mismatch");
    assert_int_equal(findings->items[0].severity, severity);
    char hint[64];
    snprintf(hint, sizeof hint, "re-label checkpoint_format as \"%s\"", label);
    if (strstr(findings->items[0].message, hint) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", findings->items[0].message, hint);
}

/* Both statistics in steps, per linear averaged. */
static double code_offset(const qref_gptq_format_stats *stats)
{
    return stats->code_offset_sum / (double)stats->linears;
}

static double zero_offset(const qref_gptq_format_stats *stats)
{
    return stats->zero_offset_sum / (double)stats->linears;
}

/* ---- the real AutoGPTQ v1 artifact ---------------------------------------------------------- */

static void test_gptq_format_autogptq_fixture(void **state)
{
    (void)state;
    qref_error err = {0};
    qref_gptq_config config;
    assert_int_equal(qref_gptq_config_load(test_fixture_path("models/synth256-autogptq-w4g128"), &config, &err),
                     QREF_OK);
    assert_int_equal(config.format, QREF_GPTQ_FORMAT_V1);
    qref_blob blob;
    qref_safetensors file;
    assert_int_equal(qref_blob_map_file(test_fixture_path("models/synth256-autogptq-w4g128/model.safetensors"),
                                        &blob, &err),
                     QREF_OK);
    assert_int_equal(qref_safetensors_parse("model.safetensors", blob.data, blob.size, &file, &err), QREF_OK);

    for (int label = QREF_GPTQ_FORMAT_V1; label <= QREF_GPTQ_FORMAT_V2; label++) {
        config.format = (qref_gptq_format)label;
        qref_gptq_format_stats stats;
        qref_gptq_format_stats_init(&stats, &config);
        for (size_t i = 0; i < file.tensors.count; i++) {
            const qref_tensor *qweight = &file.tensors.items[i];
            size_t length = strlen(qweight->name);
            if (length < 8 || strcmp(qweight->name + length - 8, ".qweight") != 0)
                continue;
            char prefix[256], name[300];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(length - 8), qweight->name);
            snprintf(name, sizeof name, "%s.qzeros", prefix);
            const qref_tensor *qzeros = qref_tensor_set_find(&file.tensors, name);
            snprintf(name, sizeof name, "%s.scales", prefix);
            const qref_tensor *scales = qref_tensor_set_find(&file.tensors, name);
            snprintf(name, sizeof name, "%s.g_idx", prefix);
            const qref_tensor *g_idx = qref_tensor_set_find(&file.tensors, name);
            qref_gptq_linear linear = {.prefix = prefix, .qweight = qweight, .qzeros = qzeros, .scales = scales,
                                       .g_idx = g_idx, .out_features = qweight->shape[1],
                                       .in_features = g_idx->shape[0]};
            assert_int_equal(qref_gptq_format_stats_add(&stats, &linear, &config, &err), QREF_OK);
        }
        assert_int_equal(stats.linears, 14);
        qref_findings findings = {0};
        qref_gptq_format_check(&stats, &findings);
        if (label == QREF_GPTQ_FORMAT_V1) {
            /* Measured: code offset 0.001, zero offset 0.01 steps. */
            assert_true(fabs(code_offset(&stats)) < 0.05);
            assert_true(fabs(zero_offset(&stats)) < 0.15);
            expect_format(&findings, false, QREF_SEVERITY_INFO, NULL);
        } else {
            /* Measured: code offset 1.001 (standard error 0.002), zero offset -0.99 steps. */
            assert_true(fabs(code_offset(&stats) - 1.0) < 0.05);
            assert_true(fabs(zero_offset(&stats) + 1.0) < 0.15);
            expect_format(&findings, true, QREF_SEVERITY_ERROR, "gptq");
            assert_non_null(strstr(findings.items[0].message, "read as checkpoint_format gptq_v2"));
            assert_non_null(strstr(findings.items[0].message, "over 14 linears"));
        }
        qref_findings_free(&findings);
    }
    qref_safetensors_free(&file);
    qref_blob_free(&blob);
}

/* ---- RTN artifacts of the float fixtures, written as v1 and v2 -------------------------------- */

/*
 * Asymmetric RTN of synth256 (4 bits in groups of 128, 8 bits per row) and stories260k (2, 3
 * and 4 bits per row), settings where no zero point is 0 so that v1 can store them: each
 * written as v1 and v2 and read under both labels. (synth256 at 2 bits has zero points of 0,
 * which only v2 stores.)
 */
static void test_gptq_format_rtn_relabelled(void **state)
{
    (void)state;
    static const struct {
        const char *model;
        int bits;
        long group_size;
    } cases[] = {
        {"models/synth256/model.safetensors", 4, 128},
        {"models/stories260k/model.safetensors", 4, -1},
        {"models/stories260k/model.safetensors", 2, -1},
        {"models/stories260k/model.safetensors", 3, -1},
        {"models/synth256/model.safetensors", 8, -1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float_model model;
        float_model_open(&model, cases[c].model);
        for (int written = QREF_GPTQ_FORMAT_V1; written <= QREF_GPTQ_FORMAT_V2; written++) {
            packed_model packed;
            packed_model_build(&packed, &model, cases[c].bits, cases[c].group_size, false,
                               (qref_gptq_format)written);
            for (int label = QREF_GPTQ_FORMAT_V1; label <= QREF_GPTQ_FORMAT_V2; label++) {
                qref_gptq_config config =
                    config_for(cases[c].bits, cases[c].group_size, false, (qref_gptq_format)label);
                qref_gptq_format_stats stats;
                qref_findings findings = {0};
                check_packed(&packed, packed.count, &config, &stats, &findings);
                bool mismatch = label != written;
                expect_format(&findings, mismatch, QREF_SEVERITY_ERROR, qref_gptq_format_name((qref_gptq_format)written));
                qref_findings_free(&findings);
            }
            packed_model_free(&packed);
        }
        float_model_close(&model);
    }
}

/* Symmetric files: every zero point 2^(b-1) is stored as 7 (v1) or 8 (v2) at 4 bits, an
 * exact fingerprint. */
static void test_gptq_format_sym_fingerprint(void **state)
{
    (void)state;
    float_model model;
    float_model_open(&model, "models/synth256/model.safetensors");
    for (int written = QREF_GPTQ_FORMAT_V1; written <= QREF_GPTQ_FORMAT_V2; written++) {
        packed_model packed;
        packed_model_build(&packed, &model, 4, 128, true, (qref_gptq_format)written);
        for (int label = QREF_GPTQ_FORMAT_V1; label <= QREF_GPTQ_FORMAT_V2; label++) {
            qref_gptq_config config = config_for(4, 128, true, (qref_gptq_format)label);
            qref_gptq_format_stats stats;
            qref_findings findings = {0};
            check_packed(&packed, packed.count, &config, &stats, &findings);
            bool mismatch = label != written;
            expect_format(&findings, mismatch, QREF_SEVERITY_ERROR, qref_gptq_format_name((qref_gptq_format)written));
            if (mismatch)
                assert_non_null(strstr(findings.items[0].message,
                                       label == QREF_GPTQ_FORMAT_V2 ? "read as 7 in checkpoint_format gptq_v2"
                                                                    : "read as 9 in checkpoint_format gptq"));
            qref_findings_free(&findings);

            /* The same files declared asymmetric: the code offset still decides. */
            config.sym = false;
            check_packed(&packed, packed.count, &config, &stats, &findings);
            expect_format(&findings, mismatch, QREF_SEVERITY_ERROR, qref_gptq_format_name((qref_gptq_format)written));
            qref_findings_free(&findings);
        }
        packed_model_free(&packed);
    }
    float_model_close(&model);
}

/*
 * Weak evidence gives a WARNING:
 *   - 8 of synth256's 14 linears in v1 and 6 in v2, all labelled gptq_v2: the code offset is
 *     about 8/14 = 0.57, but the linears disagree (standard error about 0.14, so 0.57 is
 *     within five of them);
 *   - one v1 linear labelled gptq_v2: a single linear gives no spread between linears;
 *   - stories260k at 8 bits in groups of 4 labelled correctly (gptq_v2) stays silent, though
 *     its code offsets scatter by several steps per linear.
 */
static void test_gptq_format_weak_evidence(void **state)
{
    (void)state;
    float_model model;
    float_model_open(&model, "models/synth256/model.safetensors");
    assert_int_equal(model.count, 14);
    packed_model v1, v2;
    packed_model_build(&v1, &model, 4, 128, false, QREF_GPTQ_FORMAT_V1);
    packed_model_build(&v2, &model, 4, 128, false, QREF_GPTQ_FORMAT_V2);

    packed_model mixed = v2;
    for (size_t k = 0; k < 8; k++)
        mixed.linears[k * 14 / 8] = v1.linears[k * 14 / 8];
    qref_gptq_config config = config_for(4, 128, false, QREF_GPTQ_FORMAT_V2);
    qref_gptq_format_stats stats;
    qref_findings findings = {0};
    check_packed(&mixed, mixed.count, &config, &stats, &findings);
    assert_true(code_offset(&stats) > 0.5 && code_offset(&stats) < 0.65);
    expect_format(&findings, true, QREF_SEVERITY_WARNING, "gptq");
    assert_non_null(strstr(findings.items[0].message, "weak evidence"));
    qref_findings_free(&findings);

    check_packed(&v1, 1, &config, &stats, &findings);
    assert_true(fabs(code_offset(&stats) - 1.0) < 0.1);
    expect_format(&findings, true, QREF_SEVERITY_WARNING, "gptq");
    assert_non_null(strstr(findings.items[0].message, "over 1 linears"));
    qref_findings_free(&findings);
    packed_model_free(&v1);
    packed_model_free(&v2);
    float_model_close(&model);

    float_model_open(&model, "models/stories260k/model.safetensors");
    packed_model eight;
    packed_model_build(&eight, &model, 8, 4, false, QREF_GPTQ_FORMAT_V2);
    config = config_for(8, 4, false, QREF_GPTQ_FORMAT_V2);
    check_packed(&eight, eight.count, &config, &stats, &findings);
    expect_format(&findings, false, QREF_SEVERITY_INFO, NULL);
    qref_findings_free(&findings);
    packed_model_free(&eight);
    float_model_close(&model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gptq_format_autogptq_fixture),
        cmocka_unit_test(test_gptq_format_rtn_relabelled),
        cmocka_unit_test(test_gptq_format_sym_fingerprint),
        cmocka_unit_test(test_gptq_format_weak_evidence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
