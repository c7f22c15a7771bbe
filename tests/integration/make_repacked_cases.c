/*
 * make_repacked_cases: writes one snapshot per repacked layout that qconform recognizes only to
 * refuse it by name (reference/formats/qref_codec.c, detect_repacked), for the
 * "integration;repacked" tests of verify and inspect.
 *
 *   make_repacked_cases MODELS_DIR OUT_DIR
 *
 * Each snapshot is synth256's config.json, with the quantization_config its tool writes, and a
 * model.safetensors holding layer 0's q_proj ([out 256, in 256]) in the layout's tensors with
 * the shapes the tool's module registers. The codes are SplitMix64 bytes from CASES_SEED:
 * the reader must stop at the names and the config, before any value matters.
 *
 * The cases, with the tensors of the tool named first:
 *
 *   gptq-marlin        AutoGPTQ qlinear_marlin: B I32 [in/16, out*16/8], s F16 [in/G, out]
 *   awq-marlin         AutoAWQ WQLinear_Marlin: qweight I32 [in/16, out*16/8], scales
 *                      F16 [in/G, out], no qzeros (workspace is not persistent)
 *   awq-gemv-fast      AutoAWQ gemv_fast / llm-awq WQLinear: qweight I16 [out/4, in/4*4],
 *                      scales and scaled_zeros F16 [Zw*8, out]
 *   awq-gemv-fast-qzeros  the same with the older name qzeros for the float zeros
 *   exl2               ExLlamaV2: q_weight, q_invperm, q_scale, q_scale_max, q_groups
 *   gptqmodel-dynamic  AutoGPTQ tensors and a GPTQModel config whose "dynamic" overrides a module
 *   gptq-planar        GPTQModel checkpoint_format "gptq_p", bits 5
 *   gptq-6bit          GPTQ bits 6 (GPTQModel stores 5-7 bits only planar) without a format key
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"

#include "case_support.h"

#define CASES_SEED 0x72657061636b6564ull
#define IN 256
#define OUT 256
#define GROUP 128

typedef struct case_tensor {
    const char *part;   /* appended to "model.layers.0.self_attn.q_proj." */
    qref_dtype dtype;
    int64_t rows, cols;
} case_tensor;

/* Writes OUT_DIR/name: config.json with quantization (a JSON object text) and the tensors. */
static void write_case(const char *models_dir, const char *out_dir, const char *name, const char *quantization,
                       const case_tensor *tensors, size_t count)
{
    char dir[CASE_PATH_SIZE], path[CASE_PATH_SIZE];
    case_make_dir(case_join_path(dir, out_dir, name));

    /* config.json: synth256's with the quantization_config */
    char synth256[CASE_PATH_SIZE];
    case_join_path(path, case_join_path(synth256, models_dir, "synth256"), "config.json");
    char *text = case_read_file(path, NULL);
    cJSON *config = cJSON_Parse(text);
    cJSON *quantization_config = quantization != NULL ? cJSON_Parse(quantization) : NULL;
    if (config == NULL || (quantization != NULL && quantization_config == NULL))
        case_fail("%s: cannot build config.json", name);
    if (quantization_config != NULL)
        cJSON_AddItemToObject(config, "quantization_config", quantization_config);
    char *printed = cJSON_Print(config);
    if (printed == NULL)
        case_fail("%s: cannot print config.json", name);
    case_write_text(case_join_path(path, dir, "config.json"), printed);
    free(printed);
    cJSON_Delete(config);
    free(text);

    /* model.safetensors: layer 0's q_proj in the layout's tensors, seeded bytes */
    uint64_t state = case_fnv1a(CASES_SEED, name);
    qref_safetensors_entry entries[8];
    char names[8][160];
    void *buffers[8];
    for (size_t i = 0; i < count; i++) {
        size_t bytes = (size_t)(tensors[i].rows * tensors[i].cols) * qref_dtype_size(tensors[i].dtype);
        uint8_t *data = case_allocate(bytes);
        for (size_t b = 0; b < bytes; b++)
            data[b] = (uint8_t)case_rng_next(&state);
        if (tensors[i].dtype == QREF_DTYPE_F16) /* finite halves: 0x3c00 +- a small mantissa */
            for (size_t b = 0; b + 1 < bytes; b += 2)
                qref_store_u16(data + b, (uint16_t)(0x2000u | (qref_load_u16(data + b) & 0x03ffu)));
        snprintf(names[i], sizeof names[i], "model.layers.0.self_attn.q_proj.%s", tensors[i].part);
        entries[i] = (qref_safetensors_entry){.name = names[i], .dtype = tensors[i].dtype, .ndim = 2,
                                              .shape = {tensors[i].rows, tensors[i].cols}, .data = data};
        buffers[i] = data;
    }
    case_join_path(path, dir, "model.safetensors");
    const qref_safetensors_meta metadata[] = {{"format", "pt"}};
    qref_error err = {0};
    case_check_status(qref_safetensors_write(path, entries, count, metadata, 1, &err), &err);
    for (size_t i = 0; i < count; i++)
        free(buffers[i]);
}

int main(int argc, char **argv)
{
    case_support_init("make_repacked_cases");
    if (argc != 3)
        case_fail("usage: make_repacked_cases MODELS_DIR OUT_DIR");
    const char *models = argv[1], *out = argv[2];
    case_make_dir(out);

    /* AutoGPTQ's AutoGPTQ int32 tensors, which the GPTQModel cases keep */
    const case_tensor gptq[] = {
        {"qweight", QREF_DTYPE_I32, IN * 4 / 32, OUT},
        {"qzeros", QREF_DTYPE_I32, IN / GROUP, OUT * 4 / 32},
        {"scales", QREF_DTYPE_F16, IN / GROUP, OUT},
        {"g_idx", QREF_DTYPE_I32, 1, IN},
    };
    const case_tensor gptq_marlin[] = {
        {"B", QREF_DTYPE_I32, IN / 16, OUT * 16 / 8},
        {"s", QREF_DTYPE_F16, IN / GROUP, OUT},
    };
    const case_tensor awq_marlin[] = {
        {"qweight", QREF_DTYPE_I32, IN / 16, OUT * 16 / 8},
        {"scales", QREF_DTYPE_F16, IN / GROUP, OUT},
    };
    /* calculate_zeros_width(256, 128) = 8 after rounding 2 groups up to a multiple of 8 */
    const case_tensor gemv_fast[] = {
        {"qweight", QREF_DTYPE_I16, OUT / 4, IN / 4 * 4},
        {"scales", QREF_DTYPE_F16, 8 * 8, OUT},
        {"scaled_zeros", QREF_DTYPE_F16, 8 * 8, OUT},
    };
    const case_tensor gemv_fast_qzeros[] = {
        {"qweight", QREF_DTYPE_I16, OUT / 4, IN / 4 * 4},
        {"qzeros", QREF_DTYPE_F16, 8 * 8, OUT},
        {"scales", QREF_DTYPE_F16, 8 * 8, OUT},
    };
    const case_tensor exl2[] = {
        {"q_weight", QREF_DTYPE_I32, IN * 4 / 32, OUT},
        {"q_invperm", QREF_DTYPE_I16, 1, IN},
        {"q_scale", QREF_DTYPE_I32, IN / 32 * 4 / 32, OUT},
        {"q_scale_max", QREF_DTYPE_F16, 1, IN / 32},
        {"q_groups", QREF_DTYPE_I16, 1, 2 * (IN / 32)},
    };

    write_case(models, out, "gptq-marlin",
               "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, \"desc_act\": false, \"sym\": true, "
               "\"checkpoint_format\": \"marlin\"}", gptq_marlin, 2);
    write_case(models, out, "awq-marlin",
               "{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, \"zero_point\": false, "
               "\"version\": \"marlin\"}", awq_marlin, 2);
    write_case(models, out, "awq-gemv-fast",
               "{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, \"zero_point\": true, "
               "\"version\": \"gemv_fast\"}", gemv_fast, 3);
    write_case(models, out, "awq-gemv-fast-qzeros",
               "{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, \"zero_point\": true, "
               "\"version\": \"gemv_fast\"}", gemv_fast_qzeros, 3);
    write_case(models, out, "exl2", NULL, exl2, 5);
    write_case(models, out, "gptqmodel-dynamic",
               "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, \"desc_act\": false, \"sym\": true, "
               "\"checkpoint_format\": \"gptq\", \"dynamic\": {\"-:.*down_proj\": {}, "
               "\"+:.*q_proj\": {\"bits\": 8, \"group_size\": 64}}}", gptq, 4);
    write_case(models, out, "gptq-planar",
               "{\"quant_method\": \"gptq\", \"bits\": 5, \"group_size\": 128, \"desc_act\": false, \"sym\": true, "
               "\"checkpoint_format\": \"gptq_p\"}", gptq, 4);
    write_case(models, out, "gptq-6bit",
               "{\"quant_method\": \"gptq\", \"bits\": 6, \"group_size\": 128, \"desc_act\": false, \"sym\": true}",
               gptq, 4);
    return 0;
}
