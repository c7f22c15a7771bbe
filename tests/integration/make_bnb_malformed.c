/*
 * make_bnb_malformed: writes one malformed bitsandbytes artifact per finding id of the
 * bitsandbytes codec, for the "integration;bnb" tests to run through qconform verify.
 *
 *   make_bnb_malformed NF4_DQ_DIR FP4_DIR INT8_DIR OUT_DIR
 *
 * The three inputs are artifacts `qconform quantize` wrote from fixtures/models/synth256
 * (--method nf4 --double-quant, --method fp4, --method int8). Each case copies one of them and
 * breaks exactly one thing, named in the comment of its entry in the case table; tests/
 * integration/bnb.cmake matches the finding id, the verdict and the message of each. Element
 * positions come from a SplitMix64 stream seeded with CORPUS_SEED and the case name, so every
 * run writes the same bytes.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "formats/qref_bnb.h"
#include "io/qref_blob.h"
#include "io/qref_json.h"
#include "io/qref_safetensors.h"

#include "case_support.h"

#define CORPUS_SEED 0x626e625f6d616cull

/* The SplitMix64 state of a case: from CORPUS_SEED, each byte of the name XORed into the next output. */
static uint64_t rng_seed(const char *name)
{
    uint64_t state = CORPUS_SEED;
    for (const char *p = name; *p != '\0'; p++)
        state = case_rng_next(&state) ^ (uint8_t)*p;
    return state;
}

/* ---- an artifact in memory ---------------------------------------------------------------- */

/* One tensor to write: a copy of the stored bytes that a case may change. */
typedef struct tensor_copy {
    char name[QREF_SAFETENSORS_MAX_NAME];
    qref_dtype dtype;
    int ndim;
    int64_t shape[QREF_MAX_DIMS];
    uint8_t *data;
    size_t size;
    bool dropped;
} tensor_copy;

typedef struct artifact {
    char dir[CASE_PATH_SIZE];
    cJSON *config;               /* config.json */
    tensor_copy *tensors;
    size_t count;
} artifact;

static void artifact_load(const char *dir, artifact *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->dir, sizeof out->dir, "%s", dir);
    char path[CASE_PATH_SIZE];
    qref_blob blob;
    qref_error err = {0};
    case_check_status(qref_blob_map_file(case_join_path(path, dir, "config.json"), &blob, &err), &err);
    case_check_status(
        qref_json_parse(path, (const char *)blob.data, blob.size, QREF_JSON_MAX_DEPTH, &out->config, &err), &err);
    qref_blob_free(&blob);

    case_check_status(qref_blob_map_file(case_join_path(path, dir, "model.safetensors"), &blob, &err), &err);
    qref_safetensors st;
    case_check_status(qref_safetensors_parse(path, blob.data, blob.size, &st, &err), &err);
    out->count = st.tensors.count;
    out->tensors = case_allocate((out->count + 16) * sizeof *out->tensors);
    for (size_t k = 0; k < out->count; k++) {
        const qref_tensor *t = &st.tensors.items[k];
        tensor_copy *c = &out->tensors[k];
        snprintf(c->name, sizeof c->name, "%s", t->name);
        c->dtype = t->dtype;
        c->ndim = t->ndim;
        memcpy(c->shape, t->shape, sizeof c->shape);
        c->size = (size_t)t->nbytes;
        c->data = case_allocate(c->size);
        memcpy(c->data, t->data, c->size);
    }
    qref_safetensors_free(&st);
    qref_blob_free(&blob);
}

static void artifact_free(artifact *a)
{
    for (size_t k = 0; k < a->count; k++)
        free(a->tensors[k].data);
    free(a->tensors);
    cJSON_Delete(a->config);
    memset(a, 0, sizeof *a);
}

static tensor_copy *find(artifact *a, const char *name)
{
    for (size_t k = 0; k < a->count; k++)
        if (!a->tensors[k].dropped && strcmp(a->tensors[k].name, name) == 0)
            return &a->tensors[k];
    case_fail("%s: no tensor \"%s\"", a->dir, name);
}

/* Replaces a tensor's bytes (and its shape, for a 1-D U8 or 2-D tensor). */
static void set_bytes(tensor_copy *t, const void *bytes, size_t size)
{
    free(t->data);
    t->data = case_allocate(size);
    memcpy(t->data, bytes, size);
    t->size = size;
}

/* Writes the artifact to OUT_DIR/<name>: config.json, model.safetensors, the tokenizer. */
static void artifact_write(const artifact *a, const char *out_dir, const char *name)
{
    char dir[CASE_PATH_SIZE], path[CASE_PATH_SIZE];
    case_make_dir(case_join_path(dir, out_dir, name));

    char *text = cJSON_Print(a->config);
    if (text == NULL)
        case_fail("cannot print config.json");
    case_write_text(case_join_path(path, dir, "config.json"), text);
    free(text);

    qref_safetensors_entry *entries = case_allocate((a->count + 1) * sizeof *entries);
    size_t count = 0;
    for (size_t k = 0; k < a->count; k++) {
        const tensor_copy *t = &a->tensors[k];
        if (t->dropped)
            continue;
        entries[count].name = t->name;
        entries[count].dtype = t->dtype;
        entries[count].ndim = t->ndim;
        memcpy(entries[count].shape, t->shape, sizeof t->shape);
        entries[count].data = t->data;
        count++;
    }
    qsort(entries, count, sizeof *entries, case_compare_entries);
    qref_error err = {0};
    const qref_safetensors_meta metadata[] = {{"format", "pt"}};
    case_check_status(
        qref_safetensors_write(case_join_path(path, dir, "model.safetensors"), entries, count, metadata, 1, &err),
        &err);
    free(entries);

    /* the tokenizer, when the source has one, comes along unchanged */
    char from[CASE_PATH_SIZE];
    if (access(case_join_path(from, a->dir, "tokenizer.model"), F_OK) == 0)
        case_copy_file(from, case_join_path(path, dir, "tokenizer.model"));
}

static cJSON *quantization(artifact *a)
{
    cJSON *object = cJSON_GetObjectItemCaseSensitive(a->config, "quantization_config");
    if (!cJSON_IsObject(object))
        case_fail("%s: config.json has no quantization_config", a->dir);
    return object;
}

static void replace_member(cJSON *object, const char *key, cJSON *value)
{
    if (cJSON_GetObjectItemCaseSensitive(object, key) != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(object, key, value);
    else
        cJSON_AddItemToObject(object, key, value);
}

/* ---- the cases ---------------------------------------------------------------------------- */

typedef enum base_kind { BASE_NF4_DQ, BASE_FP4, BASE_INT8 } base_kind;

#define Q_PROJ "model.layers.0.self_attn.q_proj"

/* bnb.quant_state.malformed: q_proj's quant_state JSON gains the key "bogus", which from_dict rejects. */
static void case_quant_state_malformed(artifact *a, uint64_t *rng)
{
    (void)rng;
    tensor_copy *t = find(a, Q_PROJ ".weight.quant_state.bitsandbytes__nf4");
    char text[1024];
    if (t->size < 2 || t->size > 900)
        case_fail("unexpected quant_state length %zu", t->size);
    memcpy(text, t->data, t->size - 1); /* without the closing brace */
    snprintf(text + t->size - 1, sizeof text - (t->size - 1), ", \"bogus\": 1}");
    set_bytes(t, text, strlen(text));
    t->shape[0] = (int64_t)strlen(text);
}

/* bnb.quant_state.mismatch: k_proj's JSON shape [128, 256] becomes [256, 128] (same element count). */
static void case_quant_state_mismatch(artifact *a, uint64_t *rng)
{
    (void)rng;
    tensor_copy *t = find(a, "model.layers.0.self_attn.k_proj.weight.quant_state.bitsandbytes__nf4");
    char text[1024];
    snprintf(text, sizeof text, "%.*s", (int)t->size, (const char *)t->data);
    char *shape = strstr(text, "[128, 256]");
    if (shape == NULL)
        case_fail("k_proj quant_state has no shape [128, 256]: %s", text);
    memcpy(shape, "[256, 128]", 10);
    set_bytes(t, text, strlen(text));
}

/* bnb.weight.size: gate_proj's packed weight loses its last 32 bytes. */
static void case_weight_size(artifact *a, uint64_t *rng)
{
    (void)rng;
    tensor_copy *t = find(a, "model.layers.1.mlp.gate_proj.weight");
    t->shape[0] -= 32;
    t->size -= 32;
}

/* bnb.absmax.invalid (FP4 base, F32 scales): one absmax entry of up_proj, at a seeded block, is NaN. */
static void case_absmax_invalid(artifact *a, uint64_t *rng)
{
    tensor_copy *t = find(a, "model.layers.0.mlp.up_proj.weight.absmax");
    size_t block = (size_t)(case_rng_next(rng) % (uint64_t)t->shape[0]);
    qref_store_f32(t->data + 4 * block, NAN);
}

/* bnb.absmax.decoded_negative (warning): v_proj's nested_offset becomes -0.5, below every decoded scale. */
static void case_absmax_decoded_negative(artifact *a, uint64_t *rng)
{
    (void)rng;
    tensor_copy *t = find(a, "model.layers.1.self_attn.v_proj.weight.quant_state.bitsandbytes__nf4");
    char text[1024];
    snprintf(text, sizeof text, "%.*s", (int)t->size, (const char *)t->data);
    char *offset = strstr(text, "\"nested_offset\": ");
    if (offset == NULL)
        case_fail("v_proj quant_state has no nested_offset: %s", text);
    snprintf(offset, sizeof text - (size_t)(offset - text), "\"nested_offset\": -0.5}");
    set_bytes(t, text, strlen(text));
    t->shape[0] = (int64_t)strlen(text);
}

/* bnb.quant_map.mismatch: up_proj (declared nf4) stores the FP4 table as its quant_map. */
static void case_quant_map_mismatch(artifact *a, uint64_t *rng)
{
    (void)rng;
    tensor_copy *t = find(a, "model.layers.1.mlp.up_proj.weight.quant_map");
    float map[16];
    qref_bnb_quant_map(QREF_BNB_QUANT_FP4, map);
    for (int c = 0; c < 16; c++)
        qref_store_f32(t->data + 4 * c, map[c]);
}

/* bnb.nested.invalid: one seeded entry (1..254) of down_proj's nested_quant_map is moved by 0.01. */
static void case_nested_invalid(artifact *a, uint64_t *rng)
{
    tensor_copy *t = find(a, "model.layers.0.mlp.down_proj.weight.nested_quant_map");
    size_t entry = 1 + (size_t)(case_rng_next(rng) % 254);
    qref_store_f32(t->data + 4 * entry, qref_load_f32(t->data + 4 * entry) + 0.01f);
}

/* bnb.int8.invalid: o_proj's weight_format is 2 (col_turing), a layout the current loader rejects. */
static void case_int8_invalid(artifact *a, uint64_t *rng)
{
    (void)rng;
    find(a, "model.layers.0.self_attn.o_proj.weight_format")->data[0] = 2;
}

/* bnb.scb.invalid: one seeded row scale of k_proj's SCB is -1. */
static void case_scb_invalid(artifact *a, uint64_t *rng)
{
    tensor_copy *t = find(a, "model.layers.1.self_attn.k_proj.SCB");
    qref_store_f32(t->data + 4 * (case_rng_next(rng) % (uint64_t)t->shape[0]), -1.0f);
}

/* bnb.scb.zero (warning): one seeded row scale of up_proj's SCB is 0. */
static void case_scb_zero(artifact *a, uint64_t *rng)
{
    tensor_copy *t = find(a, "model.layers.0.mlp.up_proj.SCB");
    qref_store_f32(t->data + 4 * (case_rng_next(rng) % (uint64_t)t->shape[0]), 0.0f);
}

/*
 * bnb.skip_modules.unlisted: layer 1's o_proj is stored as its dequantized F32 weight, without
 * an llm_int8_skip_modules entry.
 */
static void case_skip_unlisted(artifact *a, uint64_t *rng)
{
    (void)rng;
    const char *module = "model.layers.1.self_attn.o_proj";
    qref_tensor views[6];
    qref_tensor_set set = {.items = views, .count = 0};
    for (size_t k = 0; k < a->count; k++) {
        tensor_copy *t = &a->tensors[k];
        if (strncmp(t->name, module, strlen(module)) != 0 || t->name[strlen(module)] != '.')
            continue;
        if (set.count == 6)
            case_fail("more than six tensors under %s", module);
        qref_tensor *v = &views[set.count++];
        memset(v, 0, sizeof *v);
        v->name = t->name;
        v->dtype = t->dtype;
        v->ndim = t->ndim;
        memcpy(v->shape, t->shape, sizeof v->shape);
        v->numel = 1;
        for (int d = 0; d < t->ndim; d++)
            v->numel *= (uint64_t)t->shape[d];
        v->nbytes = t->size;
        v->data = t->data;
        v->file = "model.safetensors";
    }
    qref_tensor_set_sort(&set);
    qref_bnb_linear linear;
    qref_bnb_linear_find(&set, module, &linear);
    float *weight = case_allocate(256 * 256 * sizeof *weight);
    uint8_t *bytes = case_allocate(256 * 256 * 4);
    qref_error err = {0};
    case_check_status(qref_bnb_dequantize(&linear, 256, 256, weight, &err), &err);
    for (size_t k = 0; k < 256 * 256; k++)
        qref_store_f32(bytes + 4 * k, weight[k]);

    for (size_t k = 0; k < a->count; k++)
        if (strncmp(a->tensors[k].name, module, strlen(module)) == 0 && a->tensors[k].name[strlen(module)] == '.')
            a->tensors[k].dropped = true;
    tensor_copy *dense = &a->tensors[a->count++];
    memset(dense, 0, sizeof *dense);
    snprintf(dense->name, sizeof dense->name, "%s.weight", module);
    dense->dtype = QREF_DTYPE_F32;
    dense->ndim = 2;
    dense->shape[0] = 256;
    dense->shape[1] = 256;
    dense->data = bytes;
    dense->size = 256 * 256 * 4;
    free(weight);
}

/* bnb.skip_modules.quantized: llm_int8_skip_modules lists "o_proj", which both layers store quantized. */
static void case_skip_quantized(artifact *a, uint64_t *rng)
{
    (void)rng;
    cJSON *list = cJSON_CreateArray();
    cJSON_AddItemToArray(list, cJSON_CreateString("o_proj"));
    replace_member(quantization(a), "llm_int8_skip_modules", list);
}

/* bnb.config.mismatch (warning): bnb_4bit_quant_type declares fp4 while every quant_state has nf4. */
static void case_config_mismatch(artifact *a, uint64_t *rng)
{
    (void)rng;
    replace_member(quantization(a), "bnb_4bit_quant_type", cJSON_CreateString("fp4"));
}

/* bnb.config.mode: the config declares load_in_8bit over the 4-bit tensors. */
static void case_config_mode(artifact *a, uint64_t *rng)
{
    (void)rng;
    cJSON *config = quantization(a);
    replace_member(config, "load_in_4bit", cJSON_CreateFalse());
    replace_member(config, "_load_in_4bit", cJSON_CreateFalse());
    replace_member(config, "load_in_8bit", cJSON_CreateTrue());
    replace_member(config, "_load_in_8bit", cJSON_CreateTrue());
}

static const struct {
    const char *name;
    base_kind base;
    void (*apply)(artifact *a, uint64_t *rng);
} cases[] = {
    {"bnb_quant_state_malformed", BASE_NF4_DQ, case_quant_state_malformed},
    {"bnb_quant_state_mismatch", BASE_NF4_DQ, case_quant_state_mismatch},
    {"bnb_weight_size", BASE_NF4_DQ, case_weight_size},
    {"bnb_absmax_invalid", BASE_FP4, case_absmax_invalid},
    {"bnb_absmax_decoded_negative", BASE_NF4_DQ, case_absmax_decoded_negative},
    {"bnb_quant_map_mismatch", BASE_NF4_DQ, case_quant_map_mismatch},
    {"bnb_nested_invalid", BASE_NF4_DQ, case_nested_invalid},
    {"bnb_int8_invalid", BASE_INT8, case_int8_invalid},
    {"bnb_scb_invalid", BASE_INT8, case_scb_invalid},
    {"bnb_scb_zero", BASE_INT8, case_scb_zero},
    {"bnb_skip_modules_unlisted", BASE_NF4_DQ, case_skip_unlisted},
    {"bnb_skip_modules_quantized", BASE_NF4_DQ, case_skip_quantized},
    {"bnb_config_mismatch", BASE_NF4_DQ, case_config_mismatch},
    {"bnb_config_mode", BASE_NF4_DQ, case_config_mode},
};

int main(int argc, char **argv)
{
    case_support_init("make_bnb_malformed");
    if (argc != 5) {
        fprintf(stderr, "usage: make_bnb_malformed NF4_DQ_DIR FP4_DIR INT8_DIR OUT_DIR\n");
        return 2;
    }
    case_make_dir(argv[4]);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        artifact a;
        artifact_load(argv[1 + cases[k].base], &a);
        uint64_t rng = rng_seed(cases[k].name);
        cases[k].apply(&a, &rng);
        artifact_write(&a, argv[4], cases[k].name);
        artifact_free(&a);
    }
    return 0;
}
