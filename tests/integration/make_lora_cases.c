/*
 * make_lora_cases: writes the PEFT LoRA adapters that the "integration;lora" tests run through
 * qconform verify, logits and eval against fixtures/models/synth256.
 *
 *   make_lora_cases MODELS_DIR OUT_DIR
 *
 * Adapters are written as peft's save_pretrained writes them: adapter_config.json and
 * adapter_model.safetensors with "base_model.model.<module>.lora_A.weight" [r, in] and
 * "...lora_B.weight" [out, r] keys. Random matrices come from a SplitMix64 stream seeded with
 * CASES_SEED and the case name, so every run writes the same bytes.
 *
 * Known-answer cases (the merge is exact in f32, so the logits must match bit for bit):
 *   zero-v         r 128, lora_alpha 128 (scaling 1) on layer 0's v_proj, A = W_v [128, 256]
 *                  and B = -I [128, 128]: B A = -W_v exactly (each sum has one nonzero term),
 *                  so W_v + 1 * (-W_v) = 0 and the merged model is base-zero-v;
 *   zero-v-rslora  the same with use_rslora and lora_alpha = sqrt(128): scaling
 *                  sqrt(128) / sqrt(128) rounds to 1 in f32, the same merged model;
 *   zero-b         every linear (all-linear), r 4, random A, B = 0: the base model itself;
 *   base-zero-v    synth256 with layer 0's v_proj weights set to zero (a model, not an adapter).
 * One adapter per finding id follows. The comment above each case names what it breaks.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"

#include "case_support.h"

#define CASES_SEED 0x6c6f72612d636173ull
#define V_ROWS 128   /* synth256's v_proj: 2 KV heads x head_dim 64 */
#define HIDDEN 256

/* The SplitMix64 state of a case: FNV-1a of its name, starting from CASES_SEED. */
static uint64_t rng_for(const char *name)
{
    return case_fnv1a(CASES_SEED, name);
}

/* Uniform in [-0.05, 0.05), small like trained LoRA matrices. */
static float rng_weight(uint64_t *rng)
{
    return (float)((double)(case_rng_next(rng) >> 11) * 0x1p-53 - 0.5) * 0.1f;
}

/* ---- files ---------------------------------------------------------------------------------- */

typedef struct case_tensor {
    char name[200];
    qref_dtype dtype;
    int ndim;
    int64_t shape[2];
    void *data;
} case_tensor;

typedef struct adapter_case {
    char dir[CASE_PATH_SIZE];
    case_tensor tensors[64];
    size_t count;
} adapter_case;

static void case_begin(adapter_case *c, const char *out_dir, const char *name)
{
    memset(c, 0, sizeof *c);
    case_join_path(c->dir, out_dir, name);
    case_make_dir(c->dir);
    char path[CASE_PATH_SIZE];
    case_join_path(path, c->dir, "adapter_model.bin");
    unlink(path);
}

/* Adds an F32 matrix [rows, cols] (the case owns the values). */
static float *case_matrix(adapter_case *c, const char *name, int64_t rows, int64_t cols)
{
    if (c->count == sizeof c->tensors / sizeof c->tensors[0])
        case_fail("too many tensors in %s", c->dir);
    case_tensor *t = &c->tensors[c->count++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = QREF_DTYPE_F32;
    t->ndim = 2;
    t->shape[0] = rows;
    t->shape[1] = cols;
    size_t count = (size_t)(rows * cols);
    t->data = case_allocate(count * sizeof(float));
    return t->data;
}

/* Adds lora_A [r, cols] and lora_B [rows, r] of a module, random from rng, B scaled by b_scale. */
static void case_pair(adapter_case *c, uint64_t *rng, const char *module, int64_t r, int64_t rows, int64_t cols,
                      float b_scale)
{
    char name[200];
    snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", module);
    float *a = case_matrix(c, name, r, cols);
    for (int64_t i = 0; i < r * cols; i++)
        a[i] = rng_weight(rng);
    snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", module);
    float *b = case_matrix(c, name, rows, r);
    for (int64_t i = 0; i < rows * r; i++)
        b[i] = rng_weight(rng) * b_scale;
}

static void case_finish(adapter_case *c, const char *config)
{
    char path[CASE_PATH_SIZE];
    case_write_text(case_join_path(path, c->dir, "adapter_config.json"), config);
    qref_safetensors_entry entries[64];
    for (size_t i = 0; i < c->count; i++) {
        entries[i] = (qref_safetensors_entry){.name = c->tensors[i].name, .dtype = c->tensors[i].dtype,
                                              .ndim = c->tensors[i].ndim, .data = c->tensors[i].data};
        entries[i].shape[0] = c->tensors[i].shape[0];
        entries[i].shape[1] = c->tensors[i].shape[1];
    }
    case_join_path(path, c->dir, "adapter_model.safetensors");
    const qref_safetensors_meta metadata[] = {{"format", "pt"}};
    qref_error err = {0};
    case_check_status(qref_safetensors_write(path, entries, c->count, metadata, 1, &err), &err);
    for (size_t i = 0; i < c->count; i++)
        free(c->tensors[i].data);
}

/* A PEFT adapter_config.json with the given members after peft_type. */
static void config_text(char *out, size_t size, const char *peft_type, const char *members)
{
    snprintf(out, size,
             "{\n  \"base_model_name_or_path\": \"synth256\",\n  \"bias\": \"none\",\n  \"inference_mode\": true,\n"
             "  \"lora_dropout\": 0.0,\n  \"peft_type\": \"%s\",\n  \"task_type\": \"CAUSAL_LM\",\n%s\n}\n",
             peft_type, members);
}

/* ---- the base model ------------------------------------------------------------------------- */

typedef struct base_model {
    qref_blob file;
    qref_safetensors weights;
    char dir[CASE_PATH_SIZE];
} base_model;

static const qref_tensor *base_tensor(const base_model *base, const char *name)
{
    const qref_tensor *tensor = qref_tensor_set_find(&base->weights.tensors, name);
    if (tensor == NULL)
        case_fail("%s: no tensor %s", base->dir, name);
    return tensor;
}

/* synth256 with layer 0's v_proj weights set to zero: what zero-v merges into. */
static void write_base_zero_v(const base_model *base, const char *out_dir)
{
    char dir[CASE_PATH_SIZE], path[CASE_PATH_SIZE], from[CASE_PATH_SIZE];
    case_join_path(dir, out_dir, "base-zero-v");
    case_make_dir(dir);
    const qref_tensor_set *set = &base->weights.tensors;
    qref_safetensors_entry *entries = case_allocate(set->count * sizeof *entries);
    void *zeros = NULL;
    for (size_t i = 0; i < set->count; i++) {
        const qref_tensor *t = &set->items[i];
        entries[i] = (qref_safetensors_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(entries[i].shape, t->shape, sizeof entries[i].shape);
        if (strcmp(t->name, "model.layers.0.self_attn.v_proj.weight") == 0) {
            zeros = case_allocate(t->nbytes);
            entries[i].data = zeros;
        }
    }
    if (zeros == NULL)
        case_fail("%s: no layer 0 v_proj", base->dir);
    case_join_path(path, dir, "model.safetensors");
    qref_error err = {0};
    case_check_status(qref_safetensors_write(path, entries, set->count, NULL, 0, &err), &err);
    case_copy_file(case_join_path(from, base->dir, "config.json"), case_join_path(path, dir, "config.json"));
    case_copy_file(case_join_path(from, base->dir, "tokenizer.model"), case_join_path(path, dir, "tokenizer.model"));
    free(zeros);
    free(entries);
}

/* ---- known-answer adapters ------------------------------------------------------------------ */

/* A = W_v of layer 0 [128, 256] in f32, B = -I [128, 128]: B A = -W_v exactly. */
static void write_zero_v(const base_model *base, const char *out_dir, const char *name, const char *members)
{
    adapter_case c;
    case_begin(&c, out_dir, name);
    const qref_tensor *v = base_tensor(base, "model.layers.0.self_attn.v_proj.weight");
    float *a = case_matrix(&c, "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", V_ROWS, HIDDEN);
    qref_error err = {0};
    if (v->shape[0] != V_ROWS || v->shape[1] != HIDDEN ||
        qref_convert_to_f32(v->dtype, v->data, (size_t)(V_ROWS * HIDDEN), a, &err) != QREF_OK)
        case_fail("%s: layer 0 v_proj is not an F32 [128, 256] matrix", base->dir);
    float *b = case_matrix(&c, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", V_ROWS, V_ROWS);
    for (int i = 0; i < V_ROWS; i++)
        b[i * V_ROWS + i] = -1.0f;
    char config[2048];
    config_text(config, sizeof config, "LORA", members);
    case_finish(&c, config);
}

/* Every linear of both layers with random A and B = 0: the merge leaves the base unchanged. */
static void write_zero_b(const char *out_dir)
{
    static const char *const linears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    static const int64_t shapes[][2] = {{256, 256}, {128, 256}, {128, 256}, {256, 256},
                                        {768, 256}, {768, 256}, {256, 768}};
    adapter_case c;
    case_begin(&c, out_dir, "zero-b");
    uint64_t rng = rng_for("zero-b");
    for (int layer = 0; layer < 2; layer++) {
        for (int k = 0; k < 7; k++) {
            char module[128];
            snprintf(module, sizeof module, "model.layers.%d.%s", layer, linears[k]);
            case_pair(&c, &rng, module, 4, shapes[k][0], shapes[k][1], 0.0f);
        }
    }
    char config[2048];
    config_text(config, sizeof config, "LORA", "  \"r\": 4,\n  \"lora_alpha\": 8,\n  \"target_modules\": \"all-linear\"");
    case_finish(&c, config);
}

/* ---- one adapter per finding id ------------------------------------------------------------- */

/* q_proj of both layers, r 8 (the valid core most malformed cases start from). */
static void add_q_proj(adapter_case *c, uint64_t *rng, int64_t r)
{
    case_pair(c, rng, "model.layers.0.self_attn.q_proj", r, 256, 256, 1.0f);
    case_pair(c, rng, "model.layers.1.self_attn.q_proj", r, 256, 256, 1.0f);
}

static const char q_members[] = "  \"r\": 8,\n  \"lora_alpha\": 16,\n  \"target_modules\": [\"q_proj\"]";

/* A case whose only defect is in adapter_config.json: members replace q_members. */
static void write_config_case(const char *out_dir, const char *name, const char *peft_type, const char *members)
{
    adapter_case c;
    case_begin(&c, out_dir, name);
    uint64_t rng = rng_for(name);
    add_q_proj(&c, &rng, 8);
    char config[2048];
    config_text(config, sizeof config, peft_type, members);
    case_finish(&c, config);
}

static void write_finding_cases(const char *out_dir)
{
    adapter_case c;
    char config[2048];

    /* valid: q_proj of both layers, r 8, alpha 16 (lora.adapter, INFO) */
    write_config_case(out_dir, "valid", "LORA", q_members);

    /* lora.config: r is a string */
    write_config_case(out_dir, "bad-config", "LORA", "  \"r\": \"eight\",\n  \"lora_alpha\": 16,\n"
                      "  \"target_modules\": [\"q_proj\"]");

    /* lora.peft_type: another PEFT method */
    write_config_case(out_dir, "bad-peft-type", "PREFIX_TUNING", q_members);

    /* lora.unsupported: a DoRA adapter (use_dora and a magnitude vector per module) */
    case_begin(&c, out_dir, "dora");
    uint64_t rng = rng_for("dora");
    add_q_proj(&c, &rng, 8);
    float *magnitude = case_matrix(&c, "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", 1, 256);
    for (int i = 0; i < 256; i++)
        magnitude[i] = 1.0f;
    config_text(config, sizeof config, "LORA", "  \"r\": 8,\n  \"lora_alpha\": 16,\n  \"use_dora\": true,\n"
                "  \"target_modules\": [\"q_proj\"]");
    case_finish(&c, config);

    /* lora.target_missing: target_modules names a GPT-NeoX module the LLaMA base lacks */
    write_config_case(out_dir, "target-missing", "LORA", "  \"r\": 8,\n  \"lora_alpha\": 16,\n"
                      "  \"target_modules\": [\"query_key_value\"]");

    /* lora.target_unused (WARNING): one entry matches, one names nothing in LLaMA */
    write_config_case(out_dir, "target-unused", "LORA", "  \"r\": 8,\n  \"lora_alpha\": 16,\n"
                      "  \"target_modules\": [\"q_proj\", \"c_attn\"]");

    /* lora.tensor_missing: layer 1's q_proj has lora_A but no lora_B */
    case_begin(&c, out_dir, "tensor-missing");
    rng = rng_for("tensor-missing");
    add_q_proj(&c, &rng, 8);
    c.count--;
    free(c.tensors[c.count].data);
    config_text(config, sizeof config, "LORA", q_members);
    case_finish(&c, config);

    /* lora.module_unknown: tensors for layer 5, which the 2-layer base does not have */
    case_begin(&c, out_dir, "module-unknown");
    rng = rng_for("module-unknown");
    add_q_proj(&c, &rng, 8);
    case_pair(&c, &rng, "model.layers.5.self_attn.q_proj", 8, 256, 256, 1.0f);
    config_text(config, sizeof config, "LORA", q_members);
    case_finish(&c, config);

    /* lora.stray (WARNING): an up_proj pair that target_modules does not select */
    case_begin(&c, out_dir, "stray");
    rng = rng_for("stray");
    add_q_proj(&c, &rng, 8);
    case_pair(&c, &rng, "model.layers.0.mlp.up_proj", 8, 768, 256, 1.0f);
    config_text(config, sizeof config, "LORA", q_members);
    case_finish(&c, config);

    /* lora.shape: layer 0's lora_A is [8, 255], one input short of q_proj's 256 */
    case_begin(&c, out_dir, "shape");
    rng = rng_for("shape");
    case_pair(&c, &rng, "model.layers.0.self_attn.q_proj", 8, 256, 255, 1.0f);
    case_pair(&c, &rng, "model.layers.1.self_attn.q_proj", 8, 256, 256, 1.0f);
    config_text(config, sizeof config, "LORA", q_members);
    case_finish(&c, config);

    /* lora.rank: the tensors have rank 8, adapter_config.json sets r 4 */
    write_config_case(out_dir, "rank", "LORA", "  \"r\": 4,\n  \"lora_alpha\": 16,\n  \"target_modules\": [\"q_proj\"]");

    /* lora.dtype: layer 0's lora_A is stored as I32 */
    case_begin(&c, out_dir, "dtype");
    rng = rng_for("dtype");
    add_q_proj(&c, &rng, 8);
    c.tensors[0].dtype = QREF_DTYPE_I32;
    config_text(config, sizeof config, "LORA", q_members);
    case_finish(&c, config);

    /* lora.nonfinite: a NaN at a seeded position of layer 1's lora_B */
    case_begin(&c, out_dir, "nonfinite");
    rng = rng_for("nonfinite");
    add_q_proj(&c, &rng, 8);
    ((float *)c.tensors[3].data)[case_rng_next(&rng) % (256 * 8)] = NAN;
    config_text(config, sizeof config, "LORA", q_members);
    case_finish(&c, config);

    /* lora.fan_in_fan_out (WARNING): set for nn.Linear targets, which PEFT resets */
    write_config_case(out_dir, "fan-in-fan-out", "LORA", "  \"r\": 8,\n  \"lora_alpha\": 16,\n"
                      "  \"fan_in_fan_out\": true,\n  \"target_modules\": [\"q_proj\"]");

    /* a pickled adapter_model.bin in place of adapter_model.safetensors */
    case_begin(&c, out_dir, "pickled");
    config_text(config, sizeof config, "LORA", q_members);
    char path[CASE_PATH_SIZE];
    case_write_text(case_join_path(path, c.dir, "adapter_config.json"), config);
    unlink(case_join_path(path, c.dir, "adapter_model.safetensors"));
    case_write_text(case_join_path(path, c.dir, "adapter_model.bin"),
                    "PK\003\004 a zip archive as torch.save writes it");
}

int main(int argc, char **argv)
{
    case_support_init("make_lora_cases");
    if (argc != 3)
        case_fail("usage: make_lora_cases MODELS_DIR OUT_DIR");
    base_model base = {0};
    case_join_path(base.dir, argv[1], "synth256");
    char path[CASE_PATH_SIZE];
    case_join_path(path, base.dir, "model.safetensors");
    qref_error err = {0};
    case_check_status(qref_blob_map_file(path, &base.file, &err), &err);
    case_check_status(qref_safetensors_parse(path, base.file.data, base.file.size, &base.weights, &err), &err);
    case_make_dir(argv[2]);

    write_base_zero_v(&base, argv[2]);
    write_zero_v(&base, argv[2], "zero-v", "  \"r\": 128,\n  \"lora_alpha\": 128,\n"
                 "  \"target_modules\": [\"model.layers.0.self_attn.v_proj\"]");
    write_zero_v(&base, argv[2], "zero-v-rslora", "  \"r\": 128,\n  \"lora_alpha\": 11.313708498984761,\n"
                 "  \"use_rslora\": true,\n  \"target_modules\": [\"model.layers.0.self_attn.v_proj\"]");
    write_zero_b(argv[2]);
    write_finding_cases(argv[2]);

    qref_safetensors_free(&base.weights);
    qref_blob_free(&base.file);
    return 0;
}
