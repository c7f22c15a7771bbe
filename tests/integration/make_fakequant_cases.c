/*
 * make_fakequant_cases: writes the fake-quantized snapshots that the fakequant.partial and
 * fakequant.mixed findings describe, for the "integration;fakequant" tests.
 *
 *   make_fakequant_cases BASE OTHER REF OUT_DIR
 *
 * BASE and OTHER are F16 fake-quantized snapshots of REF written by `qconform quantize
 * --format fake` with different bits or group sizes. Each case copies BASE (config.json,
 * tokenizer.model and every tensor) and replaces the weight of one linear, drawn by SplitMix64
 * from CASES_SEED among the 14 linears of synth256's two layers:
 *
 *   partial   the linear from REF, rounded to F16: full precision, on no grid
 *   mixed     the linear from OTHER: on OTHER's grid
 *
 * The replaced linear is printed, one "case module" line per case.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"
#include "model/qref_llama.h"

#include "case_support.h"

#define CASES_SEED 0x66616b6571756e74ull
#define LAYERS 2

/* A snapshot's model.safetensors, mapped and parsed. */
typedef struct loaded {
    qref_blob blob;
    qref_safetensors weights;
} loaded;

static void load(const char *dir, loaded *out)
{
    char path[CASE_PATH_SIZE];
    qref_error err = {0};
    case_check_status(qref_blob_map_file(case_join_path(path, dir, "model.safetensors"), &out->blob, &err), &err);
    case_check_status(qref_safetensors_parse(path, out->blob.data, out->blob.size, &out->weights, &err), &err);
}

static const qref_tensor *require(const loaded *model, const char *name)
{
    const qref_tensor *tensor = qref_tensor_set_find(&model->weights.tensors, name);
    if (tensor == NULL)
        case_fail("%s: no tensor %s", model->weights.display, name);
    return tensor;
}

/* Copies the file name from the folder src to the folder dst, when src has it. */
static void copy_if_present(const char *src, const char *dst, const char *name)
{
    char from[CASE_PATH_SIZE], to[CASE_PATH_SIZE];
    if (access(case_join_path(from, src, name), F_OK) == 0)
        case_copy_file(from, case_join_path(to, dst, name));
}

/* Writes OUT_DIR/name: BASE with the tensor `weight` replaced by replacement (F16 values). */
static void write_case(const char *base_dir, const loaded *base, const char *out_dir, const char *name,
                       const char *weight, const uint8_t *replacement)
{
    char dir[CASE_PATH_SIZE], path[CASE_PATH_SIZE];
    case_make_dir(case_join_path(dir, out_dir, name));
    copy_if_present(base_dir, dir, "config.json");
    copy_if_present(base_dir, dir, "tokenizer.model");

    size_t count = base->weights.tensors.count;
    qref_safetensors_entry *entries = case_allocate(count * sizeof *entries);
    for (size_t i = 0; i < count; i++) {
        const qref_tensor *tensor = &base->weights.tensors.items[i];
        entries[i] = (qref_safetensors_entry){.name = tensor->name, .dtype = tensor->dtype, .ndim = tensor->ndim,
                                              .data = tensor->data};
        memcpy(entries[i].shape, tensor->shape, sizeof entries[i].shape);
        if (strcmp(tensor->name, weight) == 0)
            entries[i].data = replacement;
    }
    qref_error err = {0};
    const qref_safetensors_meta metadata[] = {{"format", "pt"}};
    case_check_status(
        qref_safetensors_write(case_join_path(path, dir, "model.safetensors"), entries, count, metadata, 1, &err),
        &err);
    free(entries);
    printf("%s %.*s\n", name, (int)(strlen(weight) - strlen(".weight")), weight);
}

/* Writes the weight name of a linear drawn from the stream (index 0 .. LAYERS * 7 - 1) into name. */
static void draw_linear(uint64_t *state, char *name, size_t size)
{
    int n = (int)(case_rng_next(state) % (LAYERS * QREF_LLAMA_LINEAR_COUNT));
    char module[256];
    qref_llama_layer_tensor_name(module, sizeof module, n / QREF_LLAMA_LINEAR_COUNT,
                                 qref_llama_linear_names[n % QREF_LLAMA_LINEAR_COUNT]);
    snprintf(name, size, "%s.weight", module);
}

int main(int argc, char **argv)
{
    case_support_init("make_fakequant_cases");
    if (argc != 5)
        case_fail("usage: make_fakequant_cases BASE OTHER REF OUT_DIR");
    const char *base_dir = argv[1], *out = argv[4];
    case_make_dir(out);
    loaded base, other, ref;
    load(base_dir, &base);
    load(argv[2], &other);
    load(argv[3], &ref);
    uint64_t state = CASES_SEED;

    /* partial: REF's F32 weight rounded to F16 */
    char weight[300];
    draw_linear(&state, weight, sizeof weight);
    const qref_tensor *base_weight = require(&base, weight), *ref_weight = require(&ref, weight);
    if (base_weight->dtype != QREF_DTYPE_F16 || ref_weight->dtype != QREF_DTYPE_F32 ||
        base_weight->numel != ref_weight->numel)
        case_fail("%s: expected an F16 fake-quantized BASE and an F32 REF of equal shape", weight);
    uint8_t *halves = case_allocate(base_weight->nbytes);
    for (uint64_t i = 0; i < ref_weight->numel; i++)
        qref_store_u16(halves + 2 * i, qref_f32_to_f16(qref_load_f32(ref_weight->data + 4 * i)));
    write_case(base_dir, &base, out, "partial", weight, halves);
    free(halves);

    /* mixed: OTHER's weight of another drawn linear */
    draw_linear(&state, weight, sizeof weight);
    const qref_tensor *other_weight = require(&other, weight);
    if (other_weight->dtype != QREF_DTYPE_F16 || other_weight->nbytes != require(&base, weight)->nbytes)
        case_fail("%s: expected an F16 OTHER of BASE's shape", weight);
    write_case(base_dir, &base, out, "mixed", weight, other_weight->data);

    qref_safetensors_free(&base.weights);
    qref_safetensors_free(&other.weights);
    qref_safetensors_free(&ref.weights);
    qref_blob_free(&base.blob);
    qref_blob_free(&other.blob);
    qref_blob_free(&ref.blob);
    return 0;
}
