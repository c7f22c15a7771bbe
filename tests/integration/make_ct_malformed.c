/*
 * make_ct_malformed: writes the compressed-tensors artifacts that the "integration;ct" tests
 * feed to qconform verify, one per finding id of the compressed-tensors codec, plus valid
 * variants of the layouts the quantize command does not write.
 *
 *   make_ct_malformed SYNTH_BASE STORIES_BASE SYNTH_REFERENCE OUT_DIR
 *
 * SYNTH_BASE and STORIES_BASE are artifacts written by `qconform quantize --format
 * compressed-tensors` (4-bit pack-quantized, asymmetric: synth256 with group 128, stories260k
 * per channel); SYNTH_REFERENCE is fixtures/models/synth256. Every case starts from one of
 * them and changes exactly one thing (the comment of each case names it and the finding
 * verify must report), so the finding is the only one. The linear, element or value a case
 * changes comes from a SplitMix64 stream seeded with CORPUS_SEED and the case name, so every
 * run writes the same bytes. A case is written to OUT_DIR/<case>, replacing an earlier one.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "formats/qref_ct.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"

#include "case_support.h"

#define CORPUS_SEED 0x63742d6d616c66ull

/* ---- an artifact in memory ---------------------------------------------------------------- */

typedef struct stored_tensor {
    char *name;
    qref_dtype dtype;
    int ndim;
    int64_t shape[QREF_MAX_DIMS];
    uint8_t *data;
    size_t nbytes;
} stored_tensor;

typedef struct artifact {
    char dir[CASE_PATH_SIZE];       /* where it was read from (tokenizer.model is copied from there) */
    cJSON *config;             /* config.json */
    stored_tensor *tensors;
    size_t count;
} artifact;

static void artifact_load(artifact *a, const char *dir)
{
    memset(a, 0, sizeof *a);
    snprintf(a->dir, sizeof a->dir, "%s", dir);
    char path[CASE_PATH_SIZE];
    char *text = case_read_file(case_join_path(path, dir, "config.json"), NULL);
    a->config = cJSON_Parse(text);
    free(text);
    if (a->config == NULL)
        case_fail("%s: not JSON", path);

    qref_blob blob;
    qref_error err = {0};
    case_check_status(qref_blob_map_file(case_join_path(path, dir, "model.safetensors"), &blob, &err), &err);
    qref_safetensors st;
    case_check_status(qref_safetensors_parse(path, blob.data, blob.size, &st, &err), &err);
    a->tensors = case_allocate((st.tensors.count + 64) * sizeof *a->tensors);
    for (size_t k = 0; k < st.tensors.count; k++) {
        const qref_tensor *source = &st.tensors.items[k];
        stored_tensor *t = &a->tensors[a->count++];
        t->name = strdup(source->name);
        t->dtype = source->dtype;
        t->ndim = source->ndim;
        memcpy(t->shape, source->shape, sizeof t->shape);
        t->nbytes = (size_t)source->nbytes;
        t->data = case_allocate(t->nbytes);
        memcpy(t->data, source->data, t->nbytes);
    }
    qref_safetensors_free(&st);
    qref_blob_free(&blob);
}

static void artifact_free(artifact *a)
{
    for (size_t k = 0; k < a->count; k++) {
        free(a->tensors[k].name);
        free(a->tensors[k].data);
    }
    free(a->tensors);
    cJSON_Delete(a->config);
    memset(a, 0, sizeof *a);
}

static stored_tensor *find(artifact *a, const char *name)
{
    for (size_t k = 0; k < a->count; k++)
        if (strcmp(a->tensors[k].name, name) == 0)
            return &a->tensors[k];
    case_fail("%s: no tensor \"%s\"", a->dir, name);
}

static void drop(artifact *a, const char *name)
{
    stored_tensor *t = find(a, name);
    free(t->name);
    free(t->data);
    *t = a->tensors[--a->count];
}

/* Adds a tensor of the given shape with a copy of data (zeros when data is NULL). */
static stored_tensor *add(artifact *a, const char *name, qref_dtype dtype, int ndim, int64_t d0, int64_t d1,
                          const void *data)
{
    stored_tensor *t = &a->tensors[a->count++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 0;
    t->nbytes = (size_t)(d0 * (ndim == 2 ? d1 : 1)) * qref_dtype_size(dtype);
    t->data = case_allocate(t->nbytes);
    if (data != NULL)
        memcpy(t->data, data, t->nbytes);
    return t;
}

/* Writes OUT_DIR/<name>: config.json, model.safetensors and the base's tokenizer.model. */
static void artifact_write(const artifact *a, const char *out_dir, const char *name)
{
    char dir[CASE_PATH_SIZE], path[CASE_PATH_SIZE];
    case_join_path(dir, out_dir, name);
    case_remove_tree(dir);
    case_make_dir(dir);

    char *text = cJSON_Print(a->config);
    if (text == NULL)
        case_fail("cannot print config.json");
    case_write_text(case_join_path(path, dir, "config.json"), text);
    free(text);

    qref_safetensors_entry *entries = case_allocate(a->count * sizeof *entries);
    for (size_t k = 0; k < a->count; k++) {
        entries[k].name = a->tensors[k].name;
        entries[k].dtype = a->tensors[k].dtype;
        entries[k].ndim = a->tensors[k].ndim;
        memcpy(entries[k].shape, a->tensors[k].shape, sizeof entries[k].shape);
        entries[k].data = a->tensors[k].data;
    }
    qsort(entries, a->count, sizeof *entries, case_compare_entries);
    char key[] = "format", value[] = "pt";
    const qref_safetensors_meta meta = {key, value};
    qref_error err = {0};
    case_check_status(
        qref_safetensors_write(case_join_path(path, dir, "model.safetensors"), entries, a->count, &meta, 1, &err),
        &err);
    free(entries);

    char from[CASE_PATH_SIZE];
    case_copy_file(case_join_path(from, a->dir, "tokenizer.model"), case_join_path(path, dir, "tokenizer.model"));
}

/* ---- config edits ------------------------------------------------------------------------- */

static cJSON *quantization(artifact *a)
{
    cJSON *q = cJSON_GetObjectItemCaseSensitive(a->config, "quantization_config");
    if (q == NULL)
        case_fail("%s: config.json has no quantization_config", a->dir);
    return q;
}

static cJSON *group0(artifact *a)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(quantization(a), "config_groups"),
                                            "group_0");
}

static cJSON *weights_args(artifact *a)
{
    return cJSON_GetObjectItemCaseSensitive(group0(a), "weights");
}

static void set_item(cJSON *object, const char *key, cJSON *value)
{
    if (cJSON_GetObjectItemCaseSensitive(object, key) != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(object, key, value);
    else
        cJSON_AddItemToObject(object, key, value);
}

/* ---- the linears -------------------------------------------------------------------------- */

static const char *const projections[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                          "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                          "mlp.down_proj"};

/* Number of layers of the artifact (num_hidden_layers). */
static int layer_count(artifact *a)
{
    return cJSON_GetObjectItemCaseSensitive(a->config, "num_hidden_layers")->valueint;
}

/* Picks a linear from the case's stream into module. */
static void pick_linear(artifact *a, uint64_t *rng, char *module, size_t size)
{
    int layer = (int)(case_rng_next(rng) % (uint64_t)layer_count(a));
    int k = (int)(case_rng_next(rng) % 7);
    snprintf(module, size, "model.layers.%d.%s", layer, projections[k]);
}

static stored_tensor *part(artifact *a, const char *module, const char *role)
{
    char name[320];
    snprintf(name, sizeof name, "%s.%s", module, role);
    return find(a, name);
}

/* Rewrites every pack-quantized linear as int-quantized: I8 weight and I8 zero points. */
static void convert_to_int_quantized(artifact *a)
{
    for (int layer = 0; layer < layer_count(a); layer++)
        for (int k = 0; k < 7; k++) {
            char module[256], name[320];
            snprintf(module, sizeof module, "model.layers.%d.%s", layer, projections[k]);
            stored_tensor *packed = part(a, module, "weight_packed");
            stored_tensor *shape = part(a, module, "weight_shape");
            int64_t out = (int64_t)qref_load_u64(shape->data), in = (int64_t)qref_load_u64(shape->data + 8);
            int bits = 4;
            uint32_t *words = case_allocate(packed->nbytes);
            for (size_t w = 0; w < packed->nbytes / 4; w++)
                words[w] = qref_load_u32(packed->data + 4 * w);
            int8_t *codes = case_allocate((size_t)(out * in));
            qref_ct_unpack_rows(words, (size_t)out, (size_t)in, bits, codes);
            free(words);
            snprintf(name, sizeof name, "%s.weight", module);
            add(a, name, QREF_DTYPE_I8, 2, out, in, codes);
            free(codes);

            stored_tensor *zp = part(a, module, "weight_zero_point");
            int64_t groups = zp->shape[1];
            words = case_allocate(zp->nbytes);
            for (size_t w = 0; w < zp->nbytes / 4; w++)
                words[w] = qref_load_u32(zp->data + 4 * w);
            int8_t *zeros = case_allocate((size_t)(out * groups));
            qref_ct_unpack_columns(words, (size_t)out, (size_t)groups, bits, zeros);
            free(words);
            drop(a, zp->name);
            snprintf(name, sizeof name, "%s.weight_zero_point", module);
            add(a, name, QREF_DTYPE_I8, 2, out, groups, zeros);
            free(zeros);

            snprintf(name, sizeof name, "%s.weight_packed", module);
            drop(a, name);
            snprintf(name, sizeof name, "%s.weight_shape", module);
            drop(a, name);
        }
    set_item(quantization(a), "format", cJSON_CreateString("int-quantized"));
    set_item(group0(a), "format", cJSON_CreateString("int-quantized"));
}

/* Adds weight_g_idx = i / G to every linear and declares actorder "group". */
static void add_g_idx(artifact *a)
{
    long group_size = cJSON_GetObjectItemCaseSensitive(weights_args(a), "group_size")->valueint;
    for (int layer = 0; layer < layer_count(a); layer++)
        for (int k = 0; k < 7; k++) {
            char module[256], name[320];
            snprintf(module, sizeof module, "model.layers.%d.%s", layer, projections[k]);
            int64_t in = (int64_t)qref_load_u64(part(a, module, "weight_shape")->data + 8);
            snprintf(name, sizeof name, "%s.weight_g_idx", module);
            stored_tensor *g_idx = add(a, name, QREF_DTYPE_I32, 1, in, 0, NULL);
            for (int64_t i = 0; i < in; i++)
                qref_store_u32(g_idx->data + 4 * i, (uint32_t)(i / group_size));
        }
    set_item(weights_args(a), "actorder", cJSON_CreateString("group"));
}

/* Declares static 8-bit tensor input activations and adds input_scale 0.02 to every linear. */
static void add_static_inputs(artifact *a)
{
    cJSON *input = cJSON_Parse("{\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, \"strategy\": \"tensor\", "
                               "\"dynamic\": false, \"observer\": \"minmax\"}");
    set_item(group0(a), "input_activations", input);
    for (int layer = 0; layer < layer_count(a); layer++)
        for (int k = 0; k < 7; k++) {
            char name[320];
            snprintf(name, sizeof name, "model.layers.%d.%s.input_scale", layer, projections[k]);
            stored_tensor *scale = add(a, name, QREF_DTYPE_F32, 1, 1, 0, NULL);
            qref_store_f32(scale->data, 0.02f);
        }
}

/* ---- the cases ---------------------------------------------------------------------------- */

typedef struct corpus {
    const char *synth_base;
    const char *stories_base;
    const char *reference;
    const char *out_dir;
} corpus;

/* Loads the synth256 base (or stories260k's), runs edit, writes the case. */
static void write_case(const corpus *c, const char *name, bool stories, void (*edit)(artifact *, uint64_t *))
{
    artifact a;
    artifact_load(&a, stories ? c->stories_base : c->synth_base);
    uint64_t rng = CORPUS_SEED ^ case_fnv1a(CASE_FNV1A_BASIS, name);
    edit(&a, &rng);
    artifact_write(&a, c->out_dir, name);
    artifact_free(&a);
}

/* valid: int-quantized (I8 weights and zero points), no finding */
static void edit_valid_int_quantized(artifact *a, uint64_t *rng)
{
    (void)rng;
    convert_to_int_quantized(a);
}

/* valid: weight_g_idx with actorder "group", no finding */
static void edit_valid_g_idx(artifact *a, uint64_t *rng)
{
    (void)rng;
    add_g_idx(a);
}

/* INFO ct.activations.not_emulated: static input activations with valid input_scale */
static void edit_activations_not_emulated(artifact *a, uint64_t *rng)
{
    (void)rng;
    add_static_inputs(a);
}

/* ct.schema.invalid: an extra key in the weights args, which QuantizationArgs forbids */
static void edit_schema_invalid(artifact *a, uint64_t *rng)
{
    (void)rng;
    cJSON_AddNumberToObject(weights_args(a), "bogus", 1);
}

/* ct.schema.strategy: a strategy compressed-tensors does not know */
static void edit_schema_strategy(artifact *a, uint64_t *rng)
{
    (void)rng;
    set_item(weights_args(a), "strategy", cJSON_CreateString("rowwise"));
}

/* ct.schema.group_size: strategy "group" with group_size null */
static void edit_schema_group_size(artifact *a, uint64_t *rng)
{
    (void)rng;
    set_item(weights_args(a), "group_size", cJSON_CreateNull());
}

/* ct.schema.bits: num_bits 3 with pack-quantized */
static void edit_schema_bits(artifact *a, uint64_t *rng)
{
    (void)rng;
    set_item(weights_args(a), "num_bits", cJSON_CreateNumber(3));
}

/* ct.schema.status: quantization_status "frozen" with compressed tensors */
static void edit_schema_status(artifact *a, uint64_t *rng)
{
    (void)rng;
    set_item(quantization(a), "quantization_status", cJSON_CreateString("frozen"));
}

/* WARNING ct.targets.unmatched: a second target that matches no linear */
static void edit_targets_unmatched(artifact *a, uint64_t *rng)
{
    (void)rng;
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(group0(a), "targets"),
                         cJSON_CreateString("re:.*vision_tower.*"));
}

/* ERROR ct.schema.invalid: a target regex PCRE2 rejects (an unclosed group) beside "Linear" */
static void edit_target_regex_invalid(artifact *a, uint64_t *rng)
{
    (void)rng;
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(group0(a), "targets"), cJSON_CreateString("re:("));
}

/* WARNING ct.targets.overlap: a second group with the same args targeting a picked projection */
static void edit_targets_overlap(artifact *a, uint64_t *rng)
{
    const char *projection = projections[case_rng_next(rng) % 7];
    cJSON *group = cJSON_Duplicate(group0(a), true);
    cJSON *targets = cJSON_CreateArray();
    char target[128];
    snprintf(target, sizeof target, "re:.*%s$", strchr(projection, '.') + 1);
    cJSON_AddItemToArray(targets, cJSON_CreateString(target));
    cJSON_ReplaceItemInObjectCaseSensitive(group, "targets", targets);
    cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(quantization(a), "config_groups"), "group_1", group);
}

/* ct.ignored.quantized: a picked linear is added to ignore but stays quantized */
static void edit_ignored_quantized(artifact *a, uint64_t *rng)
{
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(quantization(a), "ignore"), cJSON_CreateString(module));
}

/* ct.tensor.missing: a picked linear without weight_scale */
static void edit_tensor_missing(artifact *a, uint64_t *rng)
{
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    drop(a, part(a, module, "weight_scale")->name);
}

/* ct.tensor.shape: a picked linear's weight_scale stored as [groups, out] (its transpose's shape) */
static void edit_tensor_shape(artifact *a, uint64_t *rng)
{
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    stored_tensor *scale = part(a, module, "weight_scale");
    int64_t rows = scale->shape[0];
    scale->shape[0] = scale->shape[1];
    scale->shape[1] = rows;
}

/* ct.tensor.dtype: a picked linear's weight_packed labelled U32 */
static void edit_tensor_dtype(artifact *a, uint64_t *rng)
{
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    part(a, module, "weight_packed")->dtype = QREF_DTYPE_U32;
}

/* ct.weight_shape.value: a picked linear's weight_shape contains out_features + 1 */
static void edit_weight_shape_value(artifact *a, uint64_t *rng)
{
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    stored_tensor *shape = part(a, module, "weight_shape");
    qref_store_u64(shape->data, qref_load_u64(shape->data) + 1);
}

/* ct.zero_point.unexpected: the args declared symmetric, zero points still stored */
static void edit_zero_point_unexpected(artifact *a, uint64_t *rng)
{
    (void)rng;
    set_item(weights_args(a), "symmetric", cJSON_CreateTrue());
}

/* ct.zero_point.missing: a picked linear without weight_zero_point */
static void edit_zero_point_missing(artifact *a, uint64_t *rng)
{
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    drop(a, part(a, module, "weight_zero_point")->name);
}

/* ct.zero_point.range: int-quantized, one I8 zero point of a picked linear set to 9 */
static void edit_zero_point_range(artifact *a, uint64_t *rng)
{
    convert_to_int_quantized(a);
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    stored_tensor *zp = part(a, module, "weight_zero_point");
    zp->data[case_rng_next(rng) % zp->nbytes] = 9;
}

/* ct.codes.range: int-quantized, one I8 code of a picked linear set to -9 */
static void edit_codes_range(artifact *a, uint64_t *rng)
{
    convert_to_int_quantized(a);
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    stored_tensor *weight = part(a, module, "weight");
    weight->data[case_rng_next(rng) % weight->nbytes] = (uint8_t)(int8_t)-9;
}

/* ct.padding (stories260k): a bit after the last of down_proj's 172 codes in a picked row */
static void edit_padding(artifact *a, uint64_t *rng)
{
    char module[256];
    snprintf(module, sizeof module, "model.layers.%d.mlp.down_proj",
             (int)(case_rng_next(rng) % (uint64_t)layer_count(a)));
    stored_tensor *packed = part(a, module, "weight_packed");
    int64_t row = (int64_t)(case_rng_next(rng) % (uint64_t)packed->shape[0]);
    uint8_t *word = packed->data + 4 * (size_t)(row * packed->shape[1] + packed->shape[1] - 1);
    qref_store_u32(word, qref_load_u32(word) | (1u << (16 + case_rng_next(rng) % 16)));
}

/* ct.scale.invalid: one weight_scale of a picked linear set to value */
static void edit_scale(artifact *a, uint64_t *rng, float value)
{
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    stored_tensor *scale = part(a, module, "weight_scale");
    qref_store_f32(scale->data + 4 * (case_rng_next(rng) % (scale->nbytes / 4)), value);
}

static void edit_scale_nan(artifact *a, uint64_t *rng)
{
    edit_scale(a, rng, NAN);
}

static void edit_scale_zero(artifact *a, uint64_t *rng)
{
    edit_scale(a, rng, 0.0f);
}

static void edit_scale_negative(artifact *a, uint64_t *rng)
{
    edit_scale(a, rng, -0.0078125f);
}

/* ct.g_idx.invalid: weight_g_idx with one value of a picked linear out of range */
static void edit_g_idx_invalid(artifact *a, uint64_t *rng)
{
    add_g_idx(a);
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    stored_tensor *g_idx = part(a, module, "weight_g_idx");
    qref_store_u32(g_idx->data + 4 * (case_rng_next(rng) % (g_idx->nbytes / 4)), 99);
}

/* ct.input_scale.missing: static input activations, a picked linear without input_scale */
static void edit_input_scale_missing(artifact *a, uint64_t *rng)
{
    add_static_inputs(a);
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    drop(a, part(a, module, "input_scale")->name);
}

/* ct.input_scale.invalid: static input activations, a picked linear's input_scale negative */
static void edit_input_scale_invalid(artifact *a, uint64_t *rng)
{
    add_static_inputs(a);
    char module[256];
    pick_linear(a, rng, module, sizeof module);
    qref_store_f32(part(a, module, "input_scale")->data, -0.02f);
}

/* ct.targeted.float needs the reference: a picked linear's packed tensors become its F32 weight. */
static void write_targeted_float(const corpus *c)
{
    const char *name = "ct_targeted_float";
    artifact a;
    artifact_load(&a, c->synth_base);
    uint64_t rng = CORPUS_SEED ^ case_fnv1a(CASE_FNV1A_BASIS, name);
    char module[256], path[CASE_PATH_SIZE], weight_name[320];
    pick_linear(&a, &rng, module, sizeof module);
    static const char *const roles[] = {"weight_packed", "weight_shape", "weight_scale", "weight_zero_point"};
    for (size_t r = 0; r < 4; r++)
        drop(&a, part(&a, module, roles[r])->name);

    qref_blob blob;
    qref_safetensors st;
    qref_error err = {0};
    case_check_status(qref_blob_map_file(case_join_path(path, c->reference, "model.safetensors"), &blob, &err), &err);
    case_check_status(qref_safetensors_parse(path, blob.data, blob.size, &st, &err), &err);
    snprintf(weight_name, sizeof weight_name, "%s.weight", module);
    const qref_tensor *dense = qref_tensor_set_find(&st.tensors, weight_name);
    if (dense == NULL)
        case_fail("%s has no \"%s\"", path, weight_name);
    add(&a, weight_name, dense->dtype, 2, dense->shape[0], dense->shape[1], dense->data);
    qref_safetensors_free(&st);
    qref_blob_free(&blob);
    artifact_write(&a, c->out_dir, name);
    artifact_free(&a);
}

int main(int argc, char **argv)
{
    case_support_init("make_ct_malformed");
    if (argc != 5)
        case_fail("usage: make_ct_malformed SYNTH_BASE STORIES_BASE SYNTH_REFERENCE OUT_DIR");
    corpus c = {.synth_base = argv[1], .stories_base = argv[2], .reference = argv[3], .out_dir = argv[4]};
    case_make_dir(c.out_dir);

    static const struct {
        const char *name;
        bool stories;
        void (*edit)(artifact *, uint64_t *);
    } cases[] = {
        {"ct_valid_int_quantized", false, edit_valid_int_quantized},
        {"ct_valid_g_idx", false, edit_valid_g_idx},
        {"ct_activations_not_emulated", false, edit_activations_not_emulated},
        {"ct_schema_invalid", false, edit_schema_invalid},
        {"ct_schema_strategy", false, edit_schema_strategy},
        {"ct_schema_group_size", false, edit_schema_group_size},
        {"ct_schema_bits", false, edit_schema_bits},
        {"ct_schema_status", false, edit_schema_status},
        {"ct_targets_unmatched", false, edit_targets_unmatched},
        {"ct_target_regex_invalid", false, edit_target_regex_invalid},
        {"ct_targets_overlap", false, edit_targets_overlap},
        {"ct_ignored_quantized", false, edit_ignored_quantized},
        {"ct_tensor_missing", false, edit_tensor_missing},
        {"ct_tensor_shape", false, edit_tensor_shape},
        {"ct_tensor_dtype", false, edit_tensor_dtype},
        {"ct_weight_shape_value", false, edit_weight_shape_value},
        {"ct_zero_point_unexpected", false, edit_zero_point_unexpected},
        {"ct_zero_point_missing", false, edit_zero_point_missing},
        {"ct_zero_point_range", false, edit_zero_point_range},
        {"ct_codes_range", false, edit_codes_range},
        {"ct_padding", true, edit_padding},
        {"ct_scale_nan", false, edit_scale_nan},
        {"ct_scale_zero", false, edit_scale_zero},
        {"ct_scale_negative", false, edit_scale_negative},
        {"ct_g_idx_invalid", false, edit_g_idx_invalid},
        {"ct_input_scale_missing", false, edit_input_scale_missing},
        {"ct_input_scale_invalid", false, edit_input_scale_invalid},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        write_case(&c, cases[k].name, cases[k].stories, cases[k].edit);
    write_targeted_float(&c);
    return 0;
}
