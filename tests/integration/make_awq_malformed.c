/*
 * Writes one malformed AWQ artifact per finding id of the AWQ codec, for `qconform verify`.
 *
 *   make_awq_malformed BASE_DIR REFERENCE_DIR OUT_DIR
 *
 * BASE_DIR holds three artifacts that `qconform quantize` wrote from synth256 (REFERENCE_DIR):
 * gemm (--format awq-gemm, group 128), gemv (--format awq-gemv, group 128) and gemm-sym
 * (--format awq-gemm --sym, group 128). Each case copies one of them into OUT_DIR/<case>
 * with one change: a tensor dropped, retyped, reshaped or edited at a position drawn from a
 * SplitMix64 stream seeded with a fixed constant and the case's number, or config.json
 * edited. The comment of each case says which finding verify must report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"

#include "case_support.h"

#define CORPUS_SEED 0x617771636f727075ull

/* An artifact: its folder, its mapped model.safetensors and its config.json text. */
typedef struct artifact {
    char dir[CASE_PATH_SIZE];
    qref_blob file;
    qref_safetensors weights;
    char *config;
} artifact;

/* One case being written: a copy of the source's tensor list, with owned replacement buffers. */
typedef struct case_writer {
    const artifact *source;
    qref_safetensors_entry *entries;
    size_t count;
    void *owned[8];
    size_t owned_count;
    char *config;
    uint64_t rng;  /* SplitMix64 state */
} case_writer;

static void artifact_open(artifact *a, const char *base_dir, const char *name)
{
    case_join_path(a->dir, base_dir, name);
    char path[CASE_PATH_SIZE];
    qref_error err = {0};
    case_check_status(qref_blob_map_file(case_join_path(path, a->dir, "model.safetensors"), &a->file, &err), &err);
    case_check_status(qref_safetensors_parse(path, a->file.data, a->file.size, &a->weights, &err), &err);
    a->config = case_read_file(case_join_path(path, a->dir, "config.json"), NULL);
}

static void artifact_close(artifact *a)
{
    qref_safetensors_free(&a->weights);
    qref_blob_free(&a->file);
    free(a->config);
}

/* ---- cases -------------------------------------------------------------------------------- */

static void case_begin(case_writer *w, const artifact *source, unsigned number)
{
    memset(w, 0, sizeof *w);
    w->source = source;
    const qref_tensor_set *set = &source->weights.tensors;
    w->entries = case_allocate((set->count + 2) * sizeof *w->entries);
    for (size_t i = 0; i < set->count; i++) {
        const qref_tensor *tensor = &set->items[i];
        w->entries[i] = (qref_safetensors_entry){.name = tensor->name, .dtype = tensor->dtype,
                                                 .ndim = tensor->ndim, .data = tensor->data};
        memcpy(w->entries[i].shape, tensor->shape, sizeof w->entries[i].shape);
    }
    w->count = set->count;
    w->config = case_allocate(strlen(source->config) + 1);
    strcpy(w->config, source->config);
    w->rng = CORPUS_SEED + number;
}

static qref_safetensors_entry *find_entry(case_writer *w, const char *name)
{
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return &w->entries[i];
    case_fail("%s/model.safetensors has no tensor \"%s\"", w->source->dir, name);
}

static void drop_entry(case_writer *w, const char *name)
{
    qref_safetensors_entry *entry = find_entry(w, name);
    size_t index = (size_t)(entry - w->entries);
    memmove(entry, entry + 1, (w->count - index - 1) * sizeof *entry);
    w->count--;
}

/* Gives the entry a writable copy of its bytes and returns it. */
static uint8_t *own_entry(case_writer *w, const char *name)
{
    qref_safetensors_entry *entry = find_entry(w, name);
    const qref_tensor *tensor = qref_tensor_set_find(&w->source->weights.tensors, name);
    uint8_t *copy = case_allocate((size_t)tensor->nbytes);
    memcpy(copy, tensor->data, (size_t)tensor->nbytes);
    if (w->owned_count == sizeof w->owned / sizeof w->owned[0])
        case_fail("too many changed tensors in one case");
    w->owned[w->owned_count++] = copy;
    entry->data = copy;
    return copy;
}

static void edit_config(case_writer *w, const char *from, const char *to)
{
    char *edited = case_replace_once(w->config, from, to);
    free(w->config);
    w->config = edited;
}

/* Writes OUT_DIR/name: model.safetensors, config.json and the source's tokenizer.model. */
static void case_write(case_writer *w, const char *out_dir, const char *name)
{
    char dir[CASE_PATH_SIZE], path[CASE_PATH_SIZE], from[CASE_PATH_SIZE];
    case_join_path(dir, out_dir, name);
    case_make_dir(dir);
    qsort(w->entries, w->count, sizeof *w->entries, case_compare_entries);
    char key[] = "format", value[] = "pt";
    const qref_safetensors_meta metadata = {key, value};
    qref_error err = {0};
    case_check_status(qref_safetensors_write(case_join_path(path, dir, "model.safetensors"), w->entries, w->count,
                                             &metadata, 1, &err),
                      &err);
    case_write_text(case_join_path(path, dir, "config.json"), w->config);
    case_copy_file(case_join_path(from, w->source->dir, "tokenizer.model"),
                   case_join_path(path, dir, "tokenizer.model"));

    for (size_t k = 0; k < w->owned_count; k++)
        free(w->owned[k]);
    free(w->entries);
    free(w->config);
    memset(w, 0, sizeof *w);
}

/* Adds the reference's float weight of module, as an unquantized linear, and drops its packed tensors. */
static void store_float_linear(case_writer *w, const artifact *reference, const char *module)
{
    char name[256];
    const char *parts[] = {"qweight", "qzeros", "scales"};
    for (size_t k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "%s.%s", module, parts[k]);
        drop_entry(w, name);
    }
    snprintf(name, sizeof name, "%s.weight", module);
    const qref_tensor *tensor = qref_tensor_set_find(&reference->weights.tensors, name);
    if (tensor == NULL)
        case_fail("%s/model.safetensors has no tensor \"%s\"", reference->dir, name);
    qref_safetensors_entry *entry = &w->entries[w->count++];
    *entry = (qref_safetensors_entry){.name = tensor->name, .dtype = tensor->dtype, .ndim = tensor->ndim,
                                      .data = tensor->data};
    memcpy(entry->shape, tensor->shape, sizeof entry->shape);
}

int main(int argc, char **argv)
{
    case_support_init("make_awq_malformed");
    if (argc != 4) {
        fprintf(stderr, "usage: make_awq_malformed BASE_DIR REFERENCE_DIR OUT_DIR\n");
        return 2;
    }
    const char *out_dir = argv[3];
    case_make_dir(out_dir);
    artifact gemm, gemv, sym, reference;
    artifact_open(&gemm, argv[1], "gemm");
    artifact_open(&gemv, argv[1], "gemv");
    artifact_open(&sym, argv[1], "gemm-sym");
    artifact_open(&reference, argv[2], ".");
    case_writer w;

    /* awq.tensor.missing: layer 1 down_proj has no scales */
    case_begin(&w, &gemm, 1);
    drop_entry(&w, "model.layers.1.mlp.down_proj.scales");
    case_write(&w, out_dir, "awq_tensor_missing");

    /* awq.dtype: layer 0 k_proj's qzeros stored as U32 (same bytes) */
    case_begin(&w, &gemm, 2);
    find_entry(&w, "model.layers.0.self_attn.k_proj.qzeros")->dtype = QREF_DTYPE_U32;
    case_write(&w, out_dir, "awq_dtype");

    /* awq.shape: layer 0 o_proj's qweight loses its last row ([255, 32] for [256, 32]) */
    case_begin(&w, &gemm, 3);
    find_entry(&w, "model.layers.0.self_attn.o_proj.qweight")->shape[0] = 255;
    case_write(&w, out_dir, "awq_shape");

    /* awq.bits: config.json declares 8 bits */
    case_begin(&w, &gemm, 4);
    edit_config(&w, "\"bits\": 4", "\"bits\": 8");
    case_write(&w, out_dir, "awq_bits");

    /* awq.group_size: config.json declares group size 64 for tensors packed with 128 */
    case_begin(&w, &gemm, 5);
    edit_config(&w, "\"group_size\": 128", "\"group_size\": 64");
    case_write(&w, out_dir, "awq_group_size");

    /* awq.layout.mismatch: GEMV tensors under version "gemm" */
    case_begin(&w, &gemv, 6);
    edit_config(&w, "\"version\": \"gemv\"", "\"version\": \"gemm\"");
    case_write(&w, out_dir, "awq_layout_mismatch");

    /* awq.scales.invalid: one scale of layer 1 gate_proj becomes -0.0, a drawn position of [2, 768] */
    case_begin(&w, &gemm, 7);
    uint8_t *scales = own_entry(&w, "model.layers.1.mlp.gate_proj.scales");
    qref_store_u16(scales + 2 * (case_rng_next(&w.rng) % (2 * 768)), 0x8000);
    case_write(&w, out_dir, "awq_scales_invalid");

    /* awq.zero_point.not_symmetric: zero_point false, one drawn field of layer 0 up_proj's qzeros [2, 96] is 9 */
    case_begin(&w, &sym, 8);
    uint8_t *qzeros = own_entry(&w, "model.layers.0.mlp.up_proj.qzeros");
    uint64_t field = case_rng_next(&w.rng) % (2 * 96 * 8);
    uint8_t *word = qzeros + 4 * (field / 8);
    unsigned shift = 4 * (unsigned)(field % 8);
    qref_store_u32(word, (qref_load_u32(word) & ~(0xfu << shift)) | (9u << shift));
    case_write(&w, out_dir, "awq_zero_point_not_symmetric");

    /* awq.qzeros.missing (warning): zero_point false, layer 1 v_proj has no qzeros */
    case_begin(&w, &sym, 9);
    drop_entry(&w, "model.layers.1.self_attn.v_proj.qzeros");
    case_write(&w, out_dir, "awq_qzeros_missing");

    /* awq.scales.padding (warning): GEMV down_proj scales [256, 8] use columns 0..5 of 8 (768 / 128 = 6
     * groups); a drawn row's column 7 becomes 1.0 */
    case_begin(&w, &gemv, 10);
    scales = own_entry(&w, "model.layers.0.mlp.down_proj.scales");
    qref_store_u16(scales + 2 * ((case_rng_next(&w.rng) % 256) * 8 + 7), 0x3C00);
    case_write(&w, out_dir, "awq_scales_padding");

    /* awq.qzeros.padding (warning): GEMV q_proj qzeros [256, 1] use fields 0..1 (2 groups); field 5 of a
     * drawn row becomes 3 */
    case_begin(&w, &gemv, 11);
    qzeros = own_entry(&w, "model.layers.1.self_attn.q_proj.qzeros");
    word = qzeros + 4 * (case_rng_next(&w.rng) % 256);
    qref_store_u32(word, qref_load_u32(word) | (3u << 20));
    case_write(&w, out_dir, "awq_qzeros_padding");

    /* dequant.fp16_overflow: a drawn scale of layer 0 q_proj [2, 256] becomes 65504, the largest f16, so
     * any |q - z| >= 2 in its group overflows */
    case_begin(&w, &gemm, 12);
    scales = own_entry(&w, "model.layers.0.self_attn.q_proj.scales");
    qref_store_u16(scales + 2 * (case_rng_next(&w.rng) % (2 * 256)), 0x7BFF);
    case_write(&w, out_dir, "awq_fp16_overflow");

    /* awq.not_converted (info): layer 1 down_proj stored in float and listed in modules_to_not_convert */
    case_begin(&w, &gemm, 13);
    store_float_linear(&w, &reference, "model.layers.1.mlp.down_proj");
    edit_config(&w, "\"modules_to_not_convert\": null", "\"modules_to_not_convert\": [\"layers.1.mlp.down_proj\"]");
    case_write(&w, out_dir, "awq_not_converted");

    /* awq.not_converted.packed: modules_to_not_convert lists layer 0 q_proj, which is stored packed */
    case_begin(&w, &gemm, 14);
    edit_config(&w, "\"modules_to_not_convert\": null", "\"modules_to_not_convert\": [\"layers.0.self_attn.q_proj\"]");
    case_write(&w, out_dir, "awq_not_converted_packed");

    /* awq.unquantized: layer 0 gate_proj stored in float without being listed */
    case_begin(&w, &gemm, 15);
    store_float_linear(&w, &reference, "model.layers.0.mlp.gate_proj");
    case_write(&w, out_dir, "awq_unquantized");

    artifact_close(&gemm);
    artifact_close(&gemv);
    artifact_close(&sym);
    artifact_close(&reference);
    return 0;
}
