/*
 * Writes one malformed GPTQ artifact per finding id of the GPTQ codec, for `qconform verify`.
 *
 *   make_gptq_cases MODELS_DIR BASE_DIR OUT_DIR
 *
 * MODELS_DIR is fixtures/models, whose synth256-autogptq-w4g128 is a real AutoGPTQ artifact
 * (4-bit, group 128, asymmetric, format v1). BASE_DIR contains the artifacts that
 * `qconform quantize` wrote in tests/integration/gptq.cmake (their names give the options).
 * Each case copies one of them into OUT_DIR/<case> with one change: a tensor dropped,
 * retyped, reshaped or edited at a position drawn from a SplitMix64 stream seeded with a
 * fixed constant and the case's number, or a setting of both quantization configs
 * (quantize_config.json and config.json's quantization_config) changed. The comment of each
 * case says which finding verify must report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"

#include "case_support.h"

#define CASES_SEED 0x67707471636173ull

/* An artifact folder: its mapped model.safetensors and its two config texts. */
typedef struct artifact {
    char dir[CASE_PATH_SIZE];
    qref_blob file;
    qref_safetensors weights;
    char *config;          /* config.json */
    char *quantize_config; /* quantize_config.json */
} artifact;

/* One case being written: the source's tensor list with owned replacement buffers, and the
 * two configs as JSON trees. */
typedef struct case_writer {
    const artifact *source;
    qref_safetensors_entry *entries;
    size_t count;
    void *owned[32];
    size_t owned_count;
    cJSON *config;
    cJSON *quantize_config;
    uint64_t rng;  /* SplitMix64 state */
} case_writer;

static void artifact_open(artifact *a, const char *dir)
{
    snprintf(a->dir, sizeof a->dir, "%s", dir);
    char path[CASE_PATH_SIZE];
    qref_error err = {0};
    case_check_status(qref_blob_map_file(case_join_path(path, a->dir, "model.safetensors"), &a->file, &err), &err);
    case_check_status(qref_safetensors_parse(path, a->file.data, a->file.size, &a->weights, &err), &err);
    a->config = case_read_file(case_join_path(path, a->dir, "config.json"), NULL);
    a->quantize_config = case_read_file(case_join_path(path, a->dir, "quantize_config.json"), NULL);
}

static void artifact_close(artifact *a)
{
    qref_safetensors_free(&a->weights);
    qref_blob_free(&a->file);
    free(a->config);
    free(a->quantize_config);
}

/* ---- editing one case ---------------------------------------------------------------------- */

static void case_begin(case_writer *w, const artifact *source, unsigned number)
{
    memset(w, 0, sizeof *w);
    w->source = source;
    const qref_tensor_set *set = &source->weights.tensors;
    w->entries = case_allocate((set->count + 1) * sizeof *w->entries);
    for (size_t i = 0; i < set->count; i++) {
        const qref_tensor *tensor = &set->items[i];
        w->entries[i] = (qref_safetensors_entry){.name = tensor->name, .dtype = tensor->dtype,
                                                 .ndim = tensor->ndim, .data = tensor->data};
        memcpy(w->entries[i].shape, tensor->shape, sizeof w->entries[i].shape);
    }
    w->count = set->count;
    w->config = cJSON_Parse(source->config);
    w->quantize_config = cJSON_Parse(source->quantize_config);
    if (w->config == NULL || w->quantize_config == NULL ||
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(w->config, "quantization_config")))
        case_fail("%s: config.json or quantize_config.json is not a GPTQ config", source->dir);
    w->rng = CASES_SEED + number;
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

static const qref_tensor *source_tensor(const case_writer *w, const char *name)
{
    const qref_tensor *tensor = qref_tensor_set_find(&w->source->weights.tensors, name);
    if (tensor == NULL)
        case_fail("%s/model.safetensors has no tensor \"%s\"", w->source->dir, name);
    return tensor;
}

/* Sets key to value (parsed JSON text) in quantize_config.json and in config.json's
 * quantization_config, replacing the key where it exists. */
static void set_config(case_writer *w, const char *key, const char *value)
{
    cJSON *targets[2] = {w->quantize_config, cJSON_GetObjectItemCaseSensitive(w->config, "quantization_config")};
    for (int k = 0; k < 2; k++) {
        cJSON *item = cJSON_Parse(value);
        if (item == NULL)
            case_fail("invalid JSON value %s", value);
        if (cJSON_GetObjectItemCaseSensitive(targets[k], key) != NULL)
            cJSON_ReplaceItemInObjectCaseSensitive(targets[k], key, item);
        else
            cJSON_AddItemToObject(targets[k], key, item);
    }
}

static void write_json(const char *path, const cJSON *object)
{
    char *text = cJSON_Print(object);
    if (text == NULL)
        case_fail("cannot print %s", path);
    size_t length = strlen(text);
    char *line = case_allocate(length + 2);
    memcpy(line, text, length);
    line[length] = '\n';
    case_write_file(path, line, length + 1);
    free(line);
    cJSON_free(text);
}

/* Writes OUT_DIR/name: model.safetensors, both configs and the source's tokenizer.model. */
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
    write_json(case_join_path(path, dir, "config.json"), w->config);
    write_json(case_join_path(path, dir, "quantize_config.json"), w->quantize_config);
    case_copy_file(case_join_path(from, w->source->dir, "tokenizer.model"),
                   case_join_path(path, dir, "tokenizer.model"));
    printf("wrote %s\n", dir);

    for (size_t k = 0; k < w->owned_count; k++)
        free(w->owned[k]);
    free(w->entries);
    cJSON_Delete(w->config);
    cJSON_Delete(w->quantize_config);
    memset(w, 0, sizeof *w);
}

/* ---- tensor edits -------------------------------------------------------------------------- */

/* Picks element [row][col] of a 1-D or 2-D tensor from the case's stream; returns its index. */
static uint64_t pick(case_writer *w, const qref_tensor *tensor, int64_t *row, int64_t *col)
{
    uint64_t index = case_rng_next(&w->rng) % tensor->numel;
    int64_t cols = tensor->ndim == 2 ? tensor->shape[1] : 1;
    *row = (int64_t)index / cols;
    *col = (int64_t)index % cols;
    return index;
}

/* Stores the f16 value bits at a drawn element of a scales tensor. */
static void store_scale(case_writer *w, const char *name, uint16_t bits, int negate)
{
    int64_t group, column;
    uint64_t index = pick(w, source_tensor(w, name), &group, &column);
    uint8_t *scales = own_entry(w, name);
    uint16_t old = qref_load_u16(scales + 2 * index);
    qref_store_u16(scales + 2 * index, negate ? (uint16_t)(old ^ 0x8000) : bits);
    printf("  %s[%lld][%lld]: f16 0x%04x -> 0x%04x\n", name, (long long)group, (long long)column, old,
           qref_load_u16(scales + 2 * index));
}

/*
 * Changes one 4-bit zero-point field of a qzeros tensor with int32 words: output column of
 * row group sits in word column / 8 at bits 4 * (column % 8). Returns that word's address.
 */
static uint8_t *zero_word(case_writer *w, const char *name, int64_t *group, int64_t *column, int avoid_top_field)
{
    const qref_tensor *qzeros = source_tensor(w, name);
    int64_t outputs = qzeros->shape[1] * 8;
    *group = (int64_t)(case_rng_next(&w->rng) % (uint64_t)qzeros->shape[0]);
    *column = (int64_t)(case_rng_next(&w->rng) % (uint64_t)(avoid_top_field ? outputs / 8 * 7 : outputs));
    if (avoid_top_field)
        *column = *column / 7 * 8 + *column % 7; /* fields 0..6 of a word */
    uint8_t *copy = own_entry(w, name);
    return copy + 4 * (size_t)(*group * qzeros->shape[1] + *column / 8);
}

/* Subtracts one from every 4-bit zero point of an int32 qzeros tensor: the v1 encoding of a
 * v2 tensor (every zero point must be at least 1). */
static void encode_v1(case_writer *w, const char *name)
{
    const qref_tensor *qzeros = source_tensor(w, name);
    uint8_t *copy = own_entry(w, name);
    for (uint64_t k = 0; k < qzeros->numel; k++) {
        uint32_t word = qref_load_u32(copy + 4 * k), encoded = 0;
        for (int field = 0; field < 8; field++) {
            uint32_t zero = word >> (4 * field) & 15u;
            if (zero == 0)
                case_fail("%s: zero point 0 has no v1 encoding", name);
            encoded |= (zero - 1) << (4 * field);
        }
        qref_store_u32(copy + 4 * k, encoded);
    }
}

/* The 14 linears of a 2-layer LLaMA, "model.layers.L.<proj>". */
static const char *linear_name(char *buf, size_t size, int index)
{
    static const char *const projections[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    snprintf(buf, size, "model.layers.%d.%s", index / 7, projections[index % 7]);
    return buf;
}

int main(int argc, char **argv)
{
    case_support_init("make_gptq_cases");
    if (argc != 4) {
        fprintf(stderr, "usage: make_gptq_cases MODELS_DIR BASE_DIR OUT_DIR\n");
        return 2;
    }
    const char *models = argv[1], *base = argv[2], *out = argv[3];
    case_make_dir(out);
    char dir[CASE_PATH_SIZE];
    artifact autogptq, w4_v1, w4_v2, w4_sym, w8, w4_g32, act, stories_v1, stories_v2;
    artifact_open(&autogptq, case_join_path(dir, models, "synth256-autogptq-w4g128"));
    artifact_open(&w4_v1, case_join_path(dir, base, "synth256-w4g128-v1"));
    artifact_open(&w4_v2, case_join_path(dir, base, "synth256-w4g128-v2"));
    artifact_open(&w4_sym, case_join_path(dir, base, "synth256-w4g128-sym-v1"));
    artifact_open(&w8, case_join_path(dir, base, "synth256-w8g128"));
    artifact_open(&w4_g32, case_join_path(dir, base, "synth256-w4g32"));
    artifact_open(&act, case_join_path(dir, base, "synth256-w4g128-act"));
    artifact_open(&stories_v1, case_join_path(dir, base, "stories260k-w4-v1"));
    artifact_open(&stories_v2, case_join_path(dir, base, "stories260k-w4-v2"));
    case_writer w;

    /* gptq.missing: layer 1 k_proj has no qzeros. */
    case_begin(&w, &autogptq, 1);
    drop_entry(&w, "model.layers.1.self_attn.k_proj.qzeros");
    case_write(&w, out, "gptq_missing");

    /* gptq.dtype: layer 0 gate_proj's scales bytes labelled I16. */
    case_begin(&w, &autogptq, 2);
    find_entry(&w, "model.layers.0.mlp.gate_proj.scales")->dtype = QREF_DTYPE_I16;
    case_write(&w, out, "gptq_dtype");

    /* gptq.shape: layer 1 up_proj's g_idx loses its last entry: [255] for 256 input features. */
    case_begin(&w, &autogptq, 3);
    find_entry(&w, "model.layers.1.mlp.up_proj.g_idx")->shape[0] = 255;
    case_write(&w, out, "gptq_shape");

    /* gptq.bits_mismatch: an 8-bit artifact whose configs declare 4 bits; every qweight has
     * the 64 rows of 8-bit codes (256 inputs) where 4 bits need 32. */
    case_begin(&w, &w8, 4);
    set_config(&w, "bits", "4");
    case_write(&w, out, "gptq_bits_mismatch");

    /* gptq.group_size_mismatch: a group-32 artifact whose configs declare group_size 128; its
     * scales have 256 / 32 = 8 rows where 128 needs 2. */
    case_begin(&w, &w4_g32, 5);
    set_config(&w, "group_size", "128");
    case_write(&w, out, "gptq_group_size_mismatch");

    /* gptq.sym_mismatch: an asymmetric artifact whose configs declare sym true. */
    case_begin(&w, &w4_v1, 6);
    set_config(&w, "sym", "true");
    case_write(&w, out, "gptq_sym_mismatch");

    /* gptq.desc_act_mismatch (WARNING): an act-order artifact whose configs declare desc_act
     * false, and a plain one whose configs declare desc_act true. */
    case_begin(&w, &act, 7);
    set_config(&w, "desc_act", "false");
    case_write(&w, out, "gptq_desc_act_false");
    case_begin(&w, &w4_v1, 7);
    set_config(&w, "desc_act", "true");
    case_write(&w, out, "gptq_desc_act_true");

    /* gptq.g_idx.out_of_range: one drawn entry of layer 0 o_proj's g_idx names group 2 or
     * above, where 256 inputs in groups of 128 give groups 0 and 1. */
    case_begin(&w, &autogptq, 8);
    {
        const char *name = "model.layers.0.self_attn.o_proj.g_idx";
        int64_t feature, unused;
        uint64_t index = pick(&w, source_tensor(&w, name), &feature, &unused);
        uint32_t group = 2 + (uint32_t)(case_rng_next(&w.rng) % 1000);
        qref_store_u32(own_entry(&w, name) + 4 * index, group);
        printf("  %s[%lld] = %u\n", name, (long long)feature, group);
    }
    case_write(&w, out, "gptq_g_idx_out_of_range");

    /* gptq.g_idx.group_size: in the act-order artifact, one drawn entry of layer 1 v_proj's
     * g_idx moves its feature to the other group, so one group contains 129 features. */
    case_begin(&w, &act, 9);
    {
        const char *name = "model.layers.1.self_attn.v_proj.g_idx";
        int64_t feature, unused;
        uint64_t index = pick(&w, source_tensor(&w, name), &feature, &unused);
        uint8_t *g_idx = own_entry(&w, name);
        uint32_t group = qref_load_u32(g_idx + 4 * index);
        qref_store_u32(g_idx + 4 * index, 1 - group);
        printf("  %s[%lld]: %u -> %u\n", name, (long long)feature, group, 1 - group);
    }
    case_write(&w, out, "gptq_g_idx_group_size");

    /* gptq.zero_point.out_of_range: one drawn field (not the top one of its word) of layer 1
     * gate_proj's qzeros set to 15, which v1 decodes to 16; the word's higher fields stay
     * below 15, so this is not AutoGPTQ's underflow trace. */
    case_begin(&w, &autogptq, 10);
    {
        int64_t group, column;
        uint8_t *word = zero_word(&w, "model.layers.1.mlp.gate_proj.qzeros", &group, &column, 1);
        qref_store_u32(word, qref_load_u32(word) | 15u << (4 * (column % 8)));
        printf("  qzeros zero point [%lld][%lld] stored as 15\n", (long long)group, (long long)column);
    }
    case_write(&w, out, "gptq_zero_point_out_of_range");

    /* gptq.zero_point.v1_underflow: what AutoGPTQ's pack() writes for a zero point of 0 in v1:
     * -1 as an unsigned word shifted to the field, ORed in, which sets the field and every
     * higher bit of the word (layer 0 v_proj, drawn field). */
    case_begin(&w, &autogptq, 11);
    {
        int64_t group, column;
        uint8_t *word = zero_word(&w, "model.layers.0.self_attn.v_proj.qzeros", &group, &column, 0);
        qref_store_u32(word, qref_load_u32(word) | 0xffffffffu << (4 * (column % 8)));
        printf("  qzeros zero point [%lld][%lld] stored as 0 - 1\n", (long long)group, (long long)column);
    }
    case_write(&w, out, "gptq_zero_point_v1_underflow");

    /* gptq.scale.non_finite, gptq.scale.zero, gptq.scale.negative: one drawn scale of a
     * linear set to +infinity, to -0, or negated. */
    case_begin(&w, &autogptq, 12);
    store_scale(&w, "model.layers.1.self_attn.q_proj.scales", 0x7c00, 0);
    case_write(&w, out, "gptq_scale_non_finite");
    case_begin(&w, &autogptq, 13);
    store_scale(&w, "model.layers.0.mlp.down_proj.scales", 0x8000, 0);
    case_write(&w, out, "gptq_scale_zero");
    case_begin(&w, &autogptq, 14);
    store_scale(&w, "model.layers.1.mlp.down_proj.scales", 0, 1);
    case_write(&w, out, "gptq_scale_negative");

    /* gptq.padding: stories260k's down_proj has 172 inputs, 688 bits of 4-bit codes in 22
     * int32 words per column, so bits 16..31 of row 21 are padding; one drawn bit of them is
     * set in a drawn column of layer 2. */
    case_begin(&w, &stories_v2, 15);
    {
        const char *name = "model.layers.2.mlp.down_proj.qweight";
        const qref_tensor *qweight = source_tensor(&w, name);
        if (qweight->shape[0] != 22)
            case_fail("%s: %lld rows, expected 22", name, (long long)qweight->shape[0]);
        int64_t column = (int64_t)(case_rng_next(&w.rng) % (uint64_t)qweight->shape[1]);
        unsigned bit = 16 + (unsigned)(case_rng_next(&w.rng) % 16);
        uint8_t *word = own_entry(&w, name) + 4 * (size_t)(21 * qweight->shape[1] + column);
        qref_store_u32(word, qref_load_u32(word) | 1u << bit);
        printf("  %s[21][%lld]: bit %u set\n", name, (long long)column, bit);
    }
    case_write(&w, out, "gptq_padding");

    /* dequant.fp16_overflow: one drawn scale of layer 0 q_proj set to 40000 (f16 0x78e2); the
     * codes of its group lie several steps from the zero point, so 40000 * (q - z) leaves the
     * f16 range. */
    case_begin(&w, &autogptq, 16);
    store_scale(&w, "model.layers.0.self_attn.q_proj.scales", 0x78e2, 0);
    case_write(&w, out, "dequant_fp16_overflow");

    /* gptq.format_mismatch (ERROR): artifacts labelled with the other checkpoint format: the
     * AutoGPTQ v1 fixture as gptq_v2, the RTN v1 and v2 artifacts of synth256 and stories260k
     * as the other format, and the symmetric v1 artifact as gptq_v2 (every zero point 7). */
    case_begin(&w, &autogptq, 17);
    set_config(&w, "checkpoint_format", "\"gptq_v2\"");
    case_write(&w, out, "gptq_format_autogptq_as_v2");
    case_begin(&w, &w4_v2, 17);
    set_config(&w, "checkpoint_format", "\"gptq\"");
    case_write(&w, out, "gptq_format_synth256_v2_as_v1");
    case_begin(&w, &w4_v1, 17);
    set_config(&w, "checkpoint_format", "\"gptq_v2\"");
    case_write(&w, out, "gptq_format_synth256_v1_as_v2");
    case_begin(&w, &stories_v1, 17);
    set_config(&w, "checkpoint_format", "\"gptq_v2\"");
    case_write(&w, out, "gptq_format_stories260k_v1_as_v2");
    case_begin(&w, &stories_v2, 17);
    set_config(&w, "checkpoint_format", "\"gptq\"");
    case_write(&w, out, "gptq_format_stories260k_v2_as_v1");
    case_begin(&w, &w4_sym, 17);
    set_config(&w, "checkpoint_format", "\"gptq_v2\"");
    case_write(&w, out, "gptq_format_sym_v1_as_v2");

    /* gptq.format_mismatch (WARNING): in the v2 artifact of synth256, 8 of the 14 linears,
     * drawn, get the v1 encoding (every zero point minus one) while the label stays gptq_v2.
     * The code offset is then about 8/14 steps, with the linears split between 0 and 1. */
    case_begin(&w, &w4_v2, 18);
    {
        int order[14];
        for (int k = 0; k < 14; k++)
            order[k] = k;
        for (int k = 13; k > 0; k--) {
            int j = (int)(case_rng_next(&w.rng) % (uint64_t)(k + 1)), t = order[k];
            order[k] = order[j];
            order[j] = t;
        }
        for (int k = 0; k < 8; k++) {
            char module[128], name[160];
            snprintf(name, sizeof name, "%s.qzeros", linear_name(module, sizeof module, order[k]));
            encode_v1(&w, name);
            printf("  %s: v1 encoding\n", name);
        }
    }
    case_write(&w, out, "gptq_format_mixed");

    /* rtn.codes (FAIL with --reference): one 4-bit code of a round-to-nearest artifact, at a
     * drawn word and field, moved one step (q + 1 mod 16), in a plain and an act-order
     * artifact. The structure stays valid and the weight error moves by one step of one group,
     * so only the comparison with a fresh quantization detects it. */
    const struct {
        artifact *source;
        const char *name, *qweight;
    } code_cases[] = {
        {&w4_v1, "rtn_codes_plain", "model.layers.1.self_attn.o_proj.qweight"},
        {&act, "rtn_codes_act_order", "model.layers.0.mlp.up_proj.qweight"},
    };
    for (unsigned k = 0; k < 2; k++) {
        case_begin(&w, code_cases[k].source, 19 + k);
        int64_t row, column;
        uint64_t index = pick(&w, source_tensor(&w, code_cases[k].qweight), &row, &column);
        unsigned field = (unsigned)(case_rng_next(&w.rng) % 8);
        uint8_t *word = own_entry(&w, code_cases[k].qweight) + 4 * index;
        uint32_t value = qref_load_u32(word), code = value >> (4 * field) & 0xfu;
        value = (value & ~(0xfu << (4 * field))) | ((code + 1) & 0xfu) << (4 * field);
        qref_store_u32(word, value);
        printf("  %s[%lld][%lld] field %u: code %u -> %u\n", code_cases[k].qweight, (long long)row,
               (long long)column, field, code, (code + 1) & 0xfu);
        case_write(&w, out, code_cases[k].name);
    }

    artifact *all[] = {&autogptq, &w4_v1, &w4_v2, &w4_sym, &w8, &w4_g32, &act, &stories_v1, &stories_v2};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        artifact_close(all[k]);
    return 0;
}
