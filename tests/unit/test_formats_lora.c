/*
 * PEFT LoRA adapters (formats/qref_lora.h): config and tensor names, binding to base modules,
 * and the merge W' = W + scaling * B A.
 *
 * Adapters are written here as PEFT saves them (adapter_config.json, adapter_model.safetensors
 * with "base_model.model." keys). Expected merged weights are derived by hand in the comment
 * of each case from the formulas of peft's LoraLayer.update_layer (scaling) and
 * Linear.get_delta_weight (B @ A times scaling).
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/qref_dtype.h"
#include "formats/qref_lora.h"
#include "io/qref_safetensors.h"

/* ---- helpers -------------------------------------------------------------------------------- */

typedef struct test_tensor {
    const char *name;
    qref_dtype dtype;
    int64_t rows, cols;
    const float *values; /* rows x cols, written as F32 */
} test_tensor;

/* Writes an adapter folder test_tmp_path(name) with config text and F32 tensors. */
static const char *write_adapter(const char *name, const char *config, const test_tensor *tensors, size_t count)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_tmp_path(name));
    mkdir(dir, 0755);
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    test_write_file(path, config, strlen(config));
    qref_safetensors_entry entries[16];
    assert_true(count <= 16);
    for (size_t i = 0; i < count; i++) {
        entries[i] = (qref_safetensors_entry){.name = tensors[i].name, .dtype = QREF_DTYPE_F32, .ndim = 2,
                                              .shape = {tensors[i].rows, tensors[i].cols}, .data = tensors[i].values};
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    qref_error err = {0};
    assert_int_equal(qref_safetensors_write(path, entries, count, NULL, 0, &err), QREF_OK);
    return dir;
}

/* One base linear "model.layers.0.self_attn.q_proj" of shape [2, 3] and the layer around it. */
static const qref_lora_base_module tiny_modules[] = {
    {"model.layers.0", QREF_LORA_MODULE_OTHER, 0, 0, 0},
    {"model.layers.0.self_attn", QREF_LORA_MODULE_OTHER, 0, 0, 0},
    {"model.layers.0.self_attn.q_proj", QREF_LORA_MODULE_LINEAR, 2, 3, 0},
    {"model.layers.0.self_attn.v_proj", QREF_LORA_MODULE_LINEAR, 2, 3, 0},
    {"model.embed_tokens", QREF_LORA_MODULE_EMBEDDING, 5, 3, -1},
    {"lm_head", QREF_LORA_MODULE_OUTPUT, 5, 3, -1},
};
#define TINY_COUNT (sizeof tiny_modules / sizeof tiny_modules[0])

static size_t count_id(const qref_findings *findings, const char *id)
{
    size_t count = 0;
    for (size_t i = 0; i < findings->count; i++)
        count += strcmp(findings->items[i].id, id) == 0;
    return count;
}

/* Opens and binds an adapter to the tiny modules; the findings go to findings. */
static qref_lora_adapter *open_bound(const char *dir, qref_findings *findings)
{
    qref_lora_adapter *adapter = NULL;
    qref_error err = {0};
    assert_int_equal(qref_lora_open(dir, &adapter, findings, &err), QREF_OK);
    qref_lora_bind(adapter, tiny_modules, TINY_COUNT, findings);
    return adapter;
}

/* A = [[1, 0, -1], [0, 1, 1]] (r = 2, in = 3); B = [[1, 2], [-1, 0]] (out = 2, r = 2). */
static const float tiny_a[] = {1, 0, -1, 0, 1, 1};
static const float tiny_b[] = {1, 2, -1, 0};

static void merge_tiny(const qref_lora_adapter *adapter, float weight[6])
{
    const float base[] = {1, 2, 3, 4, 5, 6};
    memcpy(weight, base, sizeof base);
    const qref_lora_update *update = qref_lora_find_update(adapter, "model.layers.0.self_attn.q_proj");
    assert_non_null(update);
    qref_error err = {0};
    assert_int_equal(qref_lora_apply(update, weight, 2, 3, &err), QREF_OK);
}

/* ---- merges --------------------------------------------------------------------------------- */

/*
 * W = [[1, 2, 3], [4, 5, 6]], lora_alpha 1, r 2: scaling = 1 / 2.
 * B A: row 0 = 1 * [1, 0, -1] + 2 * [0, 1, 1] = [1, 2, 1]; row 1 = -1 * [1, 0, -1] = [-1, 0, 1].
 * W' = W + 0.5 B A = [[1.5, 3, 3.5], [3.5, 5, 6.5]] (every value exact in f32).
 */
static void test_merge_tiny_by_hand(void **state)
{
    (void)state;
    const test_tensor tensors[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", QREF_DTYPE_F32, 2, 3, tiny_a},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
    };
    const char *dir = write_adapter("lora-tiny", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 1, "
                                    "\"target_modules\": [\"q_proj\"], \"bias\": \"none\"}", tensors, 2);
    qref_findings findings = {0};
    qref_lora_adapter *adapter = open_bound(dir, &findings);
    assert_true(qref_lora_usable(adapter));
    assert_int_equal(count_id(&findings, "lora.adapter"), 1);
    assert_int_equal(findings.count, 1);
    float weight[6];
    merge_tiny(adapter, weight);
    const float expected[] = {1.5f, 3.0f, 3.5f, 3.5f, 5.0f, 6.5f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(weight[i], expected[i], 0.0);
    assert_null(qref_lora_find_update(adapter, "model.layers.0.self_attn.v_proj"));
    qref_lora_free(adapter);
    qref_findings_free(&findings);
}

/*
 * The same adapter with use_rslora: scaling = lora_alpha / sqrt(r) = 1 / sqrt(2) = 0.70710677
 * (f32). W' = W + 0.70710677 B A = [[1.7071068, 3.4142135, 3.7071068],
 * [3.2928932, 5, 6.7071068]]. The keys carry the adapter name "default" of older PEFT files.
 */
static void test_merge_rslora_default_infix(void **state)
{
    (void)state;
    const test_tensor tensors[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", QREF_DTYPE_F32, 2, 3, tiny_a},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
    };
    const char *dir = write_adapter("lora-rslora", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 1.0, "
                                    "\"use_rslora\": true, \"target_modules\": [\"q_proj\"]}", tensors, 2);
    qref_findings findings = {0};
    qref_lora_adapter *adapter = open_bound(dir, &findings);
    assert_true(qref_lora_usable(adapter));
    float weight[6];
    merge_tiny(adapter, weight);
    const double s = 1.0 / sqrt(2.0);
    const double expected[] = {1 + s, 2 + 2 * s, 3 + s, 4 - s, 5, 6 + s};
    for (int i = 0; i < 6; i++)
        assert_float_equal(weight[i], expected[i], 1e-6);
    qref_lora_free(adapter);
    qref_findings_free(&findings);
}

/*
 * rank_pattern and alpha_pattern override r and lora_alpha per module: r is 8 but
 * rank_pattern gives q_proj rank 2, and alpha_pattern "layers.0.self_attn.q_proj" gives alpha
 * 4, so scaling = 4 / 2 = 2: W' = W + 2 B A = [[3, 6, 5], [2, 5, 8]].
 */
static void test_merge_rank_and_alpha_patterns(void **state)
{
    (void)state;
    const test_tensor tensors[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", QREF_DTYPE_F32, 2, 3, tiny_a},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
    };
    const char *dir = write_adapter("lora-patterns", "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, "
                                    "\"target_modules\": [\"q_proj\"], \"rank_pattern\": {\"q_proj\": 2}, "
                                    "\"alpha_pattern\": {\"layers.0.self_attn.q_proj\": 4}}", tensors, 2);
    qref_findings findings = {0};
    qref_lora_adapter *adapter = open_bound(dir, &findings);
    assert_true(qref_lora_usable(adapter));
    float weight[6];
    merge_tiny(adapter, weight);
    const float expected[] = {3, 6, 5, 2, 5, 8};
    for (int i = 0; i < 6; i++)
        assert_float_equal(weight[i], expected[i], 0.0);
    qref_lora_free(adapter);
    qref_findings_free(&findings);
}

/* ---- targets -------------------------------------------------------------------------------- */

/* A regex target must match the whole module name (re.fullmatch). */
static void test_targets_regex_full_match(void **state)
{
    (void)state;
    const test_tensor tensors[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", QREF_DTYPE_F32, 2, 3, tiny_a},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
    };
    const char *dir = write_adapter("lora-regex", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 2, "
                                    "\"target_modules\": \"model\\\\.layers\\\\.\\\\d+\\\\.self_attn\\\\.q_proj\"}",
                                    tensors, 2);
    qref_findings findings = {0};
    qref_lora_adapter *adapter = open_bound(dir, &findings);
    assert_true(qref_lora_usable(adapter));
    assert_non_null(qref_lora_find_update(adapter, "model.layers.0.self_attn.q_proj"));
    qref_lora_free(adapter);
    qref_findings_free(&findings);

    /* "q_proj" alone matches no whole name */
    dir = write_adapter("lora-regex-partial", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 2, "
                        "\"target_modules\": \"q_pro.\"}", tensors, 2);
    adapter = open_bound(dir, &findings);
    assert_false(qref_lora_usable(adapter));
    assert_int_equal(count_id(&findings, "lora.target_missing"), 1);
    assert_int_equal(count_id(&findings, "lora.stray"), 1);
    qref_lora_free(adapter);
    qref_findings_free(&findings);
}

/* all-linear leaves lm_head out; null target_modules means LLaMA's q_proj and v_proj. */
static void test_targets_all_linear_and_default(void **state)
{
    (void)state;
    const test_tensor tensors[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", QREF_DTYPE_F32, 2, 3, tiny_a},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
        {"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", QREF_DTYPE_F32, 2, 3, tiny_a},
        {"base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
    };
    const char *configs[] = {
        "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 2, \"target_modules\": \"all-linear\"}",
        "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 2, \"target_modules\": null}",
    };
    for (int c = 0; c < 2; c++) {
        const char *dir = write_adapter(c == 0 ? "lora-all-linear" : "lora-default-targets", configs[c], tensors, 4);
        qref_findings findings = {0};
        qref_lora_adapter *adapter = open_bound(dir, &findings);
        assert_true(qref_lora_usable(adapter));
        assert_non_null(qref_lora_find_update(adapter, "model.layers.0.self_attn.q_proj"));
        assert_non_null(qref_lora_find_update(adapter, "model.layers.0.self_attn.v_proj"));
        assert_null(qref_lora_find_update(adapter, "lm_head"));
        qref_lora_free(adapter);
        qref_findings_free(&findings);
    }
}

/* ---- findings ------------------------------------------------------------------------------- */

/* Each config below gives its finding id once. */
static void test_findings_config_cases(void **state)
{
    (void)state;
    const test_tensor tensors[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", QREF_DTYPE_F32, 2, 3, tiny_a},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
    };
    const struct {
        const char *config;
        const char *id;
        bool usable;
    } cases[] = {
        {"{\"peft_type\": \"IA3\", \"r\": 2, \"target_modules\": [\"q_proj\"]}", "lora.peft_type", false},
        {"{\"peft_type\": \"LORA\", \"r\": \"two\", \"target_modules\": [\"q_proj\"]}", "lora.config", false},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"use_dora\": true, \"target_modules\": [\"q_proj\"]}",
         "lora.unsupported", false},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": [\"q_proj\", \"embed_tokens\"]}", "lora.unsupported",
         false},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"]}", "lora.rank", false},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": [\"q_proj\", \"v_proj\"]}", "lora.tensor_missing",
         false},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": [\"q_proj\", \"c_attn\"]}", "lora.target_unused",
         true},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"fan_in_fan_out\": true, \"target_modules\": [\"q_proj\"]}",
         "lora.fan_in_fan_out", true},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": \"(\"}", "lora.config", false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *dir = write_adapter("lora-finding", cases[c].config, tensors, 2);
        qref_findings findings = {0};
        qref_lora_adapter *adapter = open_bound(dir, &findings);
        print_message("case %zu: %s\n", c, cases[c].id);
        assert_true(count_id(&findings, cases[c].id) >= 1);
        assert_int_equal(qref_lora_usable(adapter), cases[c].usable);
        qref_lora_free(adapter);
        qref_findings_free(&findings);
    }
}

/* A lora_A whose input width is not the base's, and one module the base lacks. */
static void test_findings_shape_and_unknown_module(void **state)
{
    (void)state;
    const float wide[8] = {0};
    const test_tensor tensors[] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", QREF_DTYPE_F32, 2, 4, wide},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
        {"base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", QREF_DTYPE_F32, 2, 3, tiny_a},
        {"base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight", QREF_DTYPE_F32, 2, 2, tiny_b},
    };
    const char *dir = write_adapter("lora-shape", "{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": "
                                    "[\"q_proj\"]}", tensors, 4);
    qref_findings findings = {0};
    qref_lora_adapter *adapter = open_bound(dir, &findings);
    assert_false(qref_lora_usable(adapter));
    assert_int_equal(count_id(&findings, "lora.shape"), 1);
    assert_int_equal(count_id(&findings, "lora.module_unknown"), 1);
    qref_lora_free(adapter);
    qref_findings_free(&findings);
}

/* Files that cannot be read are errors, not findings; a lone adapter_model.bin is named. */
static void test_open_missing_and_pickled(void **state)
{
    (void)state;
    const char *dir = test_tmp_path("lora-pickled");
    mkdir(dir, 0755);
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    test_write_file(path, "{\"peft_type\": \"LORA\"}", 21);
    snprintf(path, sizeof path, "%s/adapter_model.bin", dir);
    test_write_file(path, "PK", 2);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    remove(path);
    qref_lora_adapter *adapter = NULL;
    qref_findings findings = {0};
    qref_error err = {0};
    test_assert_error(qref_lora_open(dir, &adapter, &findings, &err), &err, QREF_ERR_UNSUPPORTED,
                      "pickled adapter_model.bin");
    assert_null(adapter);
    test_assert_error(qref_lora_open(test_tmp_path("lora-no-such-folder"), &adapter, &findings, &err), &err,
                      QREF_ERR_IO, "adapter_config.json");
    qref_findings_free(&findings);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_tiny_by_hand),
        cmocka_unit_test(test_merge_rslora_default_infix),
        cmocka_unit_test(test_merge_rank_and_alpha_patterns),
        cmocka_unit_test(test_targets_regex_full_match),
        cmocka_unit_test(test_targets_all_linear_and_default),
        cmocka_unit_test(test_findings_config_cases),
        cmocka_unit_test(test_findings_shape_and_unknown_module),
        cmocka_unit_test(test_open_missing_and_pickled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
