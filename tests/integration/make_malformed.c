/*
 * make_malformed: writes the corpus of malformed artifacts that the "integration;malformed"
 * tests feed to qconform verify, hash, eval and logits.
 *
 *   make_malformed MODELS_DIR OUT_DIR
 *
 * MODELS_DIR is fixtures/models. Every case starts from a real fixture, stories260k (a
 * full-precision LLaMA snapshot) or synth256-autogptq-w4g128 (an AutoGPTQ 4-bit artifact),
 * and breaks exactly one thing, so the first error a reader meets is the one the case is
 * about. The comment above each case function states what is broken and which error qconform
 * must report, and the test of each case matches that message with a regex
 * (tests/integration/CMakeLists.txt).
 *
 * Cut points, shifts and element positions come from a SplitMix64 stream seeded with
 * CORPUS_SEED and the case name, so every run writes the same bytes, and adding a case does
 * not move the others. A case is written to OUT_DIR/<case> (a snapshot folder) or to
 * OUT_DIR/<case>.tar or .zip, replacing whatever an earlier run left there.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "formats/qref_gptq.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"

#include "case_support.h"

#define CORPUS_SEED 0x6d616c666f726d64ull

/* A fixture model: its folder and its mapped, parsed model.safetensors. */
typedef struct source_model {
    char dir[CASE_PATH_SIZE];
    qref_blob file;
    qref_safetensors weights;  /* tensor data points into file */
    uint64_t data_start;       /* 8 + header length: offset of the data buffer in file */
} source_model;

typedef struct corpus {
    const char *out_dir;
    source_model stories;      /* models/stories260k */
    source_model gptq;         /* models/synth256-autogptq-w4g128 */
    uint64_t rng;              /* SplitMix64 state, reseeded for each case */
} corpus;

/* ---- helpers: failures, paths and files ------------------------------------------------- */

static void map_file(const char *path, qref_blob *blob)
{
    qref_error err = {0};
    case_check_status(qref_blob_map_file(path, blob, &err), &err);
}

/* Reads a source file as a NUL-terminated string. */
static char *read_text(const source_model *m, const char *name)
{
    char path[CASE_PATH_SIZE];
    return case_read_file(case_join_path(path, m->dir, name), NULL);
}

/* ---- helpers: the source models --------------------------------------------------------- */

static void source_open(source_model *m, const char *models_dir, const char *name)
{
    case_join_path(m->dir, models_dir, name);
    char path[CASE_PATH_SIZE];
    map_file(case_join_path(path, m->dir, "model.safetensors"), &m->file);
    qref_error err = {0};
    case_check_status(qref_safetensors_parse(path, m->file.data, m->file.size, &m->weights, &err), &err);
    m->data_start = 8 + m->weights.header_size;
}

static void source_close(source_model *m)
{
    qref_safetensors_free(&m->weights);
    qref_blob_free(&m->file);
}

static const qref_tensor *source_tensor(const source_model *m, const char *name)
{
    const qref_tensor *tensor = qref_tensor_set_find(&m->weights.tensors, name);
    if (tensor == NULL)
        case_fail("%s/model.safetensors has no tensor \"%s\"", m->dir, name);
    return tensor;
}

/* Creates the case folder with the source's files other than the weights. */
static void copy_companions(const source_model *m, const char *case_dir)
{
    static const char *const names[] = {"config.json", "quantize_config.json", "tokenizer.model"};
    case_make_dir(case_dir);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char from[CASE_PATH_SIZE], to[CASE_PATH_SIZE];
        if (access(case_join_path(from, m->dir, names[i]), F_OK) == 0)
            case_copy_file(from, case_join_path(to, case_dir, names[i]));
    }
}

static void write_weights(const char *case_dir, const void *data, size_t size)
{
    char path[CASE_PATH_SIZE];
    case_write_file(case_join_path(path, case_dir, "model.safetensors"), data, size);
}

/* Returns a heap copy of the source's model.safetensors, to patch bytes in. */
static uint8_t *weights_copy(const source_model *m)
{
    uint8_t *copy = case_allocate(m->file.size);
    memcpy(copy, m->file.data, m->file.size);
    return copy;
}

/* Returns the address, inside a weights_copy, of element index of the named tensor. */
static uint8_t *element_in_copy(const source_model *m, uint8_t *copy, const char *name, uint64_t index)
{
    const qref_tensor *tensor = source_tensor(m, name);
    if (index >= tensor->numel)
        case_fail("tensor \"%s\" has no element %llu", name, (unsigned long long)index);
    size_t offset = (size_t)(tensor->data - m->file.data);
    return copy + offset + (size_t)index * qref_dtype_size(tensor->dtype);
}

/* ---- helpers: safetensors headers written by hand --------------------------------------- */

/* One tensor of a hand-written header. data_offsets are relative to the data buffer. */
typedef struct header_entry {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[QREF_MAX_DIMS];
    uint64_t begin, end;
} header_entry;

static int compare_entries_by_offset(const void *a, const void *b)
{
    const header_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Returns the source's tensors as header entries in file order, with one spare slot at the end. */
static header_entry *header_entries(const source_model *m, size_t *count)
{
    const qref_tensor_set *set = &m->weights.tensors;
    header_entry *entries = case_allocate((set->count + 1) * sizeof *entries);
    for (size_t i = 0; i < set->count; i++) {
        const qref_tensor *tensor = &set->items[i];
        header_entry *entry = &entries[i];
        entry->name = tensor->name;
        entry->dtype = qref_dtype_name(tensor->dtype);
        entry->ndim = tensor->ndim;
        memcpy(entry->shape, tensor->shape, sizeof entry->shape);
        entry->begin = (uint64_t)(tensor->data - m->file.data) - m->data_start;
        entry->end = entry->begin + tensor->nbytes;
    }
    qsort(entries, set->count, sizeof *entries, compare_entries_by_offset);
    *count = set->count;
    return entries;
}

static header_entry *find_entry(header_entry *entries, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(entries[i].name, name) == 0)
            return &entries[i];
    case_fail("no header entry \"%s\"", name);
}

/*
 * Writes case_dir/model.safetensors: a header listing entries in the order given (with
 * whatever offsets they hold), padded with spaces to a multiple of 8 bytes as the reference
 * serializer does, followed by the source's data buffer unchanged.
 */
static void write_weights_with_header(const source_model *m, const char *case_dir, const header_entry *entries,
                                      size_t count)
{
    char *header = NULL;
    size_t header_length = 0;
    FILE *out = open_memstream(&header, &header_length);
    if (out == NULL)
        case_fail("open_memstream: %s", strerror(errno));
    fputs("{\"__metadata__\":{\"format\":\"pt\"}", out);
    for (size_t i = 0; i < count; i++) {
        const header_entry *e = &entries[i];
        fprintf(out, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e->name, e->dtype);
        for (int d = 0; d < e->ndim; d++)
            fprintf(out, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        fprintf(out, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)e->begin, (unsigned long long)e->end);
    }
    fputc('}', out);
    while (ftell(out) % 8 != 0)
        fputc(' ', out);
    if (fclose(out) != 0)
        case_fail("cannot format a safetensors header");

    size_t data_size = m->file.size - m->data_start;
    size_t size = 8 + header_length + data_size;
    uint8_t *file = case_allocate(size);
    qref_store_u64(file, header_length);
    memcpy(file + 8, header, header_length);
    memcpy(file + 8 + header_length, m->file.data + m->data_start, data_size);
    write_weights(case_dir, file, size);
    free(file);
    free(header);
}

/* ---- helpers: files written with the safetensors writer --------------------------------- */

static char metadata_key[] = "format", metadata_value[] = "pt";
static const qref_safetensors_meta format_metadata = {metadata_key, metadata_value};

/* Returns the source's tensors as writer entries in name order, with their stored bytes. */
static qref_safetensors_entry *writer_entries(const source_model *m, size_t *count)
{
    const qref_tensor_set *set = &m->weights.tensors;
    qref_safetensors_entry *entries = case_allocate((set->count + 1) * sizeof *entries);
    for (size_t i = 0; i < set->count; i++) {
        const qref_tensor *tensor = &set->items[i];
        entries[i] = (qref_safetensors_entry){.name = tensor->name, .dtype = tensor->dtype, .ndim = tensor->ndim,
                                              .data = tensor->data};
        memcpy(entries[i].shape, tensor->shape, sizeof entries[i].shape);
    }
    *count = set->count;
    return entries;
}

static void write_safetensors(const char *path, const qref_safetensors_entry *entries, size_t count)
{
    qref_error err = {0};
    case_check_status(qref_safetensors_write(path, entries, count, &format_metadata, 1, &err), &err);
}

/* Removes the entry of this name from entries[0..*count), keeping the order. */
static void drop_writer_entry(qref_safetensors_entry *entries, size_t *count, const char *name)
{
    for (size_t i = 0; i < *count; i++) {
        if (strcmp(entries[i].name, name) == 0) {
            memmove(&entries[i], &entries[i + 1], (*count - i - 1) * sizeof *entries);
            (*count)--;
            return;
        }
    }
    case_fail("no writer entry \"%s\"", name);
}

/* ---- helpers: sharded snapshots --------------------------------------------------------- */

#define SHARD_1 "model-00001-of-00002.safetensors"
#define SHARD_2 "model-00002-of-00002.safetensors"

/*
 * Writes model.safetensors.index.json for the source's tensors split in name order: the
 * first half in SHARD_1, the rest in second_shard, or left out of weight_map when
 * second_shard is NULL. metadata.total_size is the byte count of the tensors listed.
 */
static void write_index(const source_model *m, const char *case_dir, const char *second_shard)
{
    const qref_tensor_set *set = &m->weights.tensors;
    size_t split = set->count / 2;
    cJSON *root = cJSON_CreateObject();
    cJSON *metadata = cJSON_AddObjectToObject(root, "metadata");
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    uint64_t total = 0;
    for (size_t i = 0; i < set->count; i++) {
        const char *shard = i < split ? SHARD_1 : second_shard;
        if (shard == NULL)
            continue;
        cJSON_AddStringToObject(map, set->items[i].name, shard);
        total += set->items[i].nbytes;
    }
    cJSON_AddNumberToObject(metadata, "total_size", (double)total);
    char *text = cJSON_Print(root);
    if (text == NULL)
        case_fail("cannot format the shard index");
    char path[CASE_PATH_SIZE];
    case_write_text(case_join_path(path, case_dir, "model.safetensors.index.json"), text);
    cJSON_free(text);
    cJSON_Delete(root);
}

/* Writes the first half of the source's tensors (name order) to first_path and the rest to
 * second_path. A NULL path skips that shard. */
static void write_shards(const source_model *m, const char *first_path, const char *second_path)
{
    size_t count;
    qref_safetensors_entry *entries = writer_entries(m, &count);
    size_t split = count / 2;
    if (first_path != NULL)
        write_safetensors(first_path, entries, split);
    if (second_path != NULL)
        write_safetensors(second_path, entries + split, count - split);
    free(entries);
}

/* ---- helpers: archives ------------------------------------------------------------------ */

/* One archive entry: a regular file with data, or a symbolic link when symlink is set. */
typedef struct archive_item {
    const char *name;
    const void *data;
    size_t size;
    const char *symlink;
} archive_item;

/* Writes items with libarchive's writer: pax tar, or zip when zip is true. */
static void write_archive(const char *path, bool zip, const archive_item *items, size_t count)
{
    struct archive *a = archive_write_new();
    if (a == NULL)
        case_fail("archive_write_new failed");
    int r = zip ? archive_write_set_format_zip(a) : archive_write_set_format_pax_restricted(a);
    if (r == ARCHIVE_OK)
        r = archive_write_open_filename(a, path);
    for (size_t i = 0; i < count && r == ARCHIVE_OK; i++) {
        struct archive_entry *entry = archive_entry_new();
        archive_entry_set_pathname(entry, items[i].name);
        archive_entry_set_mtime(entry, 1700000000, 0); /* fixed, so the bytes are the same every run */
        if (items[i].symlink != NULL) {
            archive_entry_set_filetype(entry, AE_IFLNK);
            archive_entry_set_perm(entry, 0777);
            archive_entry_set_symlink(entry, items[i].symlink);
            archive_entry_set_size(entry, 0);
        } else {
            archive_entry_set_filetype(entry, AE_IFREG);
            archive_entry_set_perm(entry, 0644);
            archive_entry_set_size(entry, (la_int64_t)items[i].size);
        }
        r = archive_write_header(a, entry);
        if (r == ARCHIVE_OK && items[i].symlink == NULL &&
            archive_write_data(a, items[i].data, items[i].size) != (la_ssize_t)items[i].size)
            r = ARCHIVE_FATAL;
        archive_entry_free(entry);
    }
    if (r == ARCHIVE_OK)
        r = archive_write_close(a);
    if (r != ARCHIVE_OK)
        case_fail("%s: cannot write the archive: %s", path, archive_error_string(a));
    archive_write_free(a);
}

/* The three files of the stories260k snapshot, mapped, as archive items named prefix + name. */
typedef struct snapshot_items {
    qref_blob blobs[3];
    char names[3][CASE_PATH_SIZE];
    archive_item items[4];     /* the three files and one spare slot for the malformed entry */
} snapshot_items;

static void snapshot_items_init(snapshot_items *s, const source_model *m, const char *prefix)
{
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.model"};
    for (int i = 0; i < 3; i++) {
        char path[CASE_PATH_SIZE];
        map_file(case_join_path(path, m->dir, files[i]), &s->blobs[i]);
        snprintf(s->names[i], CASE_PATH_SIZE, "%s%s", prefix, files[i]);
        s->items[i] = (archive_item){s->names[i], s->blobs[i].data, s->blobs[i].size, NULL};
    }
}

static void snapshot_items_free(snapshot_items *s)
{
    for (int i = 0; i < 3; i++)
        qref_blob_free(&s->blobs[i]);
}

static const char stray_text[] = "written by make_malformed: an archive entry that must never be extracted\n";

/* ---- safetensors cases (stories260k) ---------------------------------------------------- */

/* The file ends inside the 8-byte header length field (1 to 7 bytes kept).
 * Expected: "model.safetensors: file is K bytes, expected at least 8". */
static void case_safetensors_truncated_length(corpus *c, const char *path)
{
    size_t cut = 1 + case_rng_next(&c->rng) % 7;
    copy_companions(&c->stories, path);
    write_weights(path, c->stories.file.data, cut);
    printf("  cut at byte %zu\n", cut);
}

/* The file ends inside the JSON header.
 * Expected: "header length N runs past the end of the file: 8 + N bytes needed, the file has K". */
static void case_safetensors_truncated_header(corpus *c, const char *path)
{
    uint64_t header = c->stories.weights.header_size;
    size_t cut = (size_t)(8 + 1 + case_rng_next(&c->rng) % (header - 1));
    copy_companions(&c->stories, path);
    write_weights(path, c->stories.file.data, cut);
    printf("  cut at byte %zu of the %llu-byte header\n", cut, (unsigned long long)header);
}

/* The file ends inside the data buffer, so the tensor at the cut and all later ones lose bytes.
 * Expected: 'tensor "T": data_offsets [B, E] run past the end of the data buffer of D bytes'. */
static void case_safetensors_truncated_data(corpus *c, const char *path)
{
    const source_model *m = &c->stories;
    size_t data_size = m->file.size - m->data_start;
    size_t cut = (size_t)m->data_start + 1 + (size_t)(case_rng_next(&c->rng) % (data_size - 1));
    copy_companions(m, path);
    write_weights(path, m->file.data, cut);
    printf("  cut at byte %zu of %zu\n", cut, m->file.size);
}

/* The last tensor's data_offsets are moved past the end of the data buffer, keeping its span and
 * the file size. Expected: 'tensor "model.norm.weight": data_offsets [B, E] run past
 * the end of the data buffer of D bytes'. */
static void case_safetensors_offsets_past_end(corpus *c, const char *path)
{
    size_t count;
    header_entry *entries = header_entries(&c->stories, &count);
    header_entry *last = find_entry(entries, count, "model.norm.weight");
    if (last != &entries[count - 1])
        case_fail("model.norm.weight is not the last tensor of stories260k");
    uint64_t shift = 4 * (1 + case_rng_next(&c->rng) % 1024);
    last->begin += shift;
    last->end += shift;
    copy_companions(&c->stories, path);
    write_weights_with_header(&c->stories, path, entries, count);
    printf("  model.norm.weight moved by %llu bytes\n", (unsigned long long)shift);
    free(entries);
}

/* q_proj, stored right after o_proj, starts a few bytes before o_proj ends, so the two share
 * bytes. Expected: 'tensor "model.layers.0.self_attn.q_proj.weight": data_offsets [B, E]
 * overlap tensor "model.layers.0.self_attn.o_proj.weight" [271872, 288256]'. */
static void case_safetensors_overlap(corpus *c, const char *path)
{
    size_t count;
    header_entry *entries = header_entries(&c->stories, &count);
    header_entry *first = find_entry(entries, count, "model.layers.0.self_attn.o_proj.weight");
    header_entry *second = find_entry(entries, count, "model.layers.0.self_attn.q_proj.weight");
    if (second != first + 1)
        case_fail("q_proj does not follow o_proj in stories260k");
    uint64_t smaller = first->end - first->begin < second->end - second->begin ? first->end - first->begin
                                                                                : second->end - second->begin;
    uint64_t shift = 4 * (1 + case_rng_next(&c->rng) % (smaller / 4 - 1)); /* < the size of o_proj */
    second->begin -= shift;
    second->end -= shift;
    copy_companions(&c->stories, path);
    write_weights_with_header(&c->stories, path, entries, count);
    printf("  q_proj moved back by %llu bytes\n", (unsigned long long)shift);
    free(entries);
}

/* The header length field is 2^63.
 * Expected: "header length 9223372036854775808 exceeds the limit of 100000000 bytes". */
static void case_safetensors_header_length_2_63(corpus *c, const char *path)
{
    uint8_t *copy = weights_copy(&c->stories);
    qref_store_u64(copy, 1ull << 63);
    copy_companions(&c->stories, path);
    write_weights(path, copy, c->stories.file.size);
    free(copy);
}

/* The header lists model.norm.weight twice (same entry, same bytes).
 * Expected: 'model.safetensors header: duplicate key "model.norm.weight"'. */
static void case_safetensors_duplicate_key(corpus *c, const char *path)
{
    size_t count;
    header_entry *entries = header_entries(&c->stories, &count);
    entries[count] = *find_entry(entries, count, "model.norm.weight");
    copy_companions(&c->stories, path);
    write_weights_with_header(&c->stories, path, entries, count + 1);
    free(entries);
}

/* One tensor declares dtype "F12", which no safetensors version defines.
 * Expected: 'tensor "model.layers.0.mlp.up_proj.weight": unknown dtype "F12", expected one of ...'. */
static void case_safetensors_unknown_dtype(corpus *c, const char *path)
{
    size_t count;
    header_entry *entries = header_entries(&c->stories, &count);
    find_entry(entries, count, "model.layers.0.mlp.up_proj.weight")->dtype = "F12";
    copy_companions(&c->stories, path);
    write_weights_with_header(&c->stories, path, entries, count);
    free(entries);
}

/* ---- sharded snapshots (stories260k in two shards) -------------------------------------- */

/* Both shard files are present, but weight_map lists only the tensors of the first, so a reader
 * that follows the index alone would leave out the second shard's tensors (model.layers.2
 * onwards, model.norm.weight). Expected: 'shard model-00002-of-00002.safetensors is in the
 * snapshot, but weight_map names none of its tensors'. */
static void case_sharded_index_lacks_shard(corpus *c, const char *path)
{
    char first[CASE_PATH_SIZE], second[CASE_PATH_SIZE];
    copy_companions(&c->stories, path);
    write_shards(&c->stories, case_join_path(first, path, SHARD_1), case_join_path(second, path, SHARD_2));
    write_index(&c->stories, path, NULL);
}

/* weight_map names SHARD_2, which is not in the snapshot.
 * Expected: 'shard model-00002-of-00002.safetensors (named in weight_map for tensor "T") is not
 * in the snapshot'. */
static void case_sharded_index_missing_shard(corpus *c, const char *path)
{
    char first[CASE_PATH_SIZE];
    copy_companions(&c->stories, path);
    write_shards(&c->stories, case_join_path(first, path, SHARD_1), NULL);
    write_index(&c->stories, path, SHARD_2);
}

/* weight_map names "../x.safetensors" for the second half, and that file exists next to the
 * snapshot folder, so a reader that followed the name would load a complete model.
 * Expected: 'weight_map names shard "../x.safetensors" for tensor "T": a shard must be a plain
 * file name'. */
static void case_sharded_index_parent_path(corpus *c, const char *path)
{
    char first[CASE_PATH_SIZE], outside[CASE_PATH_SIZE];
    copy_companions(&c->stories, path);
    write_shards(&c->stories, case_join_path(first, path, SHARD_1),
                 case_join_path(outside, c->out_dir, "x.safetensors"));
    write_index(&c->stories, path, "../x.safetensors");
}

/* ---- GPTQ cases (synth256-autogptq-w4g128: 4-bit, group 128, asymmetric, format v1) ----- */

/* Picks one element of a [rows, cols] tensor from the case's stream. */
static uint64_t pick_element(corpus *c, const qref_tensor *tensor, int64_t *row, int64_t *col)
{
    uint64_t index = case_rng_next(&c->rng) % tensor->numel;
    int64_t cols = tensor->ndim == 2 ? tensor->shape[1] : 1;
    *row = (int64_t)index / cols;
    *col = (int64_t)index % cols;
    return index;
}

/* Stores the f16 value produced by change(old) into one element of a scales tensor. */
static void write_scale_case(corpus *c, const char *path, const char *name, uint16_t (*change)(uint16_t))
{
    int64_t group, column;
    uint64_t index = pick_element(c, source_tensor(&c->gptq, name), &group, &column);
    uint8_t *copy = weights_copy(&c->gptq);
    uint8_t *element = element_in_copy(&c->gptq, copy, name, index);
    uint16_t old = qref_load_u16(element), new = change(old);
    qref_store_u16(element, new);
    copy_companions(&c->gptq, path);
    write_weights(path, copy, c->gptq.file.size);
    printf("  %s[%lld][%lld]: f16 0x%04x -> 0x%04x\n", name, (long long)group, (long long)column, old, new);
    free(copy);
}

static uint16_t f16_nan(uint16_t old)
{
    (void)old;
    return 0x7e00; /* quiet NaN, sign bit clear */
}

static uint16_t f16_zero(uint16_t old)
{
    (void)old;
    return 0x0000;
}

static uint16_t f16_negate(uint16_t old)
{
    return old ^ 0x8000;
}

/* The qweight of q_proj has 64 rows, the row count of 8-bit codes, where the declared 4 bits
 * need 32 (256 input features x 4 bits / 32). Expected: 'tensor "...q_proj.qweight": shape
 * [64, 256], expected [32, 256] (4-bit packing ...); hint: the row count matches 8-bit codes'. */
static void case_gptq_qweight_wrong_shape(corpus *c, const char *path)
{
    const char *name = "model.layers.0.self_attn.q_proj.qweight";
    const qref_tensor *qweight = source_tensor(&c->gptq, name);
    size_t count;
    qref_safetensors_entry *entries = writer_entries(&c->gptq, &count);
    qref_safetensors_entry *entry = NULL;
    for (size_t i = 0; i < count; i++)
        if (strcmp(entries[i].name, name) == 0)
            entry = &entries[i];

    /* 2 x 32 rows of seeded words: what an 8-bit pack of the same linear would store */
    int64_t rows = 2 * qweight->shape[0], cols = qweight->shape[1];
    uint8_t *words = case_allocate((size_t)(rows * cols) * 4);
    for (int64_t i = 0; i < rows * cols; i++)
        qref_store_u32(words + 4 * i, (uint32_t)case_rng_next(&c->rng));
    entry->shape[0] = rows;
    entry->data = words;

    char weights[CASE_PATH_SIZE];
    copy_companions(&c->gptq, path);
    write_safetensors(case_join_path(weights, path, "model.safetensors"), entries, count);
    free(words);
    free(entries);
}

/* One scale of q_proj is NaN.
 * Expected: 'tensor "...q_proj.scales": scale nan at [G][O], expected a finite value > 0'. */
static void case_gptq_scale_nan(corpus *c, const char *path)
{
    write_scale_case(c, path, "model.layers.0.self_attn.q_proj.scales", f16_nan);
}

/* One scale of gate_proj is +0.
 * Expected: 'tensor "...gate_proj.scales": scale 0 at [G][O], expected a finite value > 0'. */
static void case_gptq_scale_zero(corpus *c, const char *path)
{
    write_scale_case(c, path, "model.layers.1.mlp.gate_proj.scales", f16_zero);
}

/* One scale of o_proj has its sign flipped.
 * Expected: 'tensor "...o_proj.scales": scale -S at [G][O], expected a finite value > 0'. */
static void case_gptq_scale_negative(corpus *c, const char *path)
{
    write_scale_case(c, path, "model.layers.1.self_attn.o_proj.scales", f16_negate);
}

/* One 4-bit field of down_proj's qzeros is 15 (all ones), which format v1 decodes to zero
 * point 16: what a writer produces when it stores zero point 0 minus one. Expected: 'v1
 * zero-point underflow at [G][O]: stored field 15 (all ones) decodes to zero point 16, outside
 * 0..15'. */
static void case_gptq_zero_point_underflow(corpus *c, const char *path)
{
    const char *name = "model.layers.0.mlp.down_proj.qzeros";
    const qref_tensor *qzeros = source_tensor(&c->gptq, name);
    int64_t groups = qzeros->shape[0], out_features = qzeros->shape[1] * 32 / 4;
    int64_t group = (int64_t)(case_rng_next(&c->rng) % (uint64_t)groups);
    int64_t column = (int64_t)(case_rng_next(&c->rng) % (uint64_t)out_features);

    /* zero point `column` of row `group` is bits [4 * column, 4 * column + 4) of the row's stream */
    uint8_t *copy = weights_copy(&c->gptq);
    uint8_t *word = element_in_copy(&c->gptq, copy, name, (uint64_t)(group * qzeros->shape[1] + column / 8));
    qref_store_u32(word, qref_load_u32(word) | 0xfu << (4 * (column % 8)));
    copy_companions(&c->gptq, path);
    write_weights(path, copy, c->gptq.file.size);
    printf("  %s: zero point [%lld][%lld] stored as 15\n", name, (long long)group, (long long)column);
    free(copy);
}

/* One g_idx entry of up_proj names group 2 or above, where 256 input features in groups of 128
 * give groups 0 and 1. Expected: 'tensor "...up_proj.g_idx": value V at [I], expected a group in
 * 0..1'. */
static void case_gptq_g_idx_out_of_range(corpus *c, const char *path)
{
    const char *name = "model.layers.1.mlp.up_proj.g_idx";
    int64_t feature, unused;
    uint64_t index = pick_element(c, source_tensor(&c->gptq, name), &feature, &unused);
    uint32_t group = 2 + (uint32_t)(case_rng_next(&c->rng) % 1000);
    uint8_t *copy = weights_copy(&c->gptq);
    qref_store_u32(element_in_copy(&c->gptq, copy, name, index), group);
    copy_companions(&c->gptq, path);
    write_weights(path, copy, c->gptq.file.size);
    printf("  %s[%lld] = %u\n", name, (long long)feature, group);
    free(copy);
}

/* config.json's quantization_config declares 8 bits, quantize_config.json 4.
 * Expected: "quantize_config.json gives bits 4 but config.json: quantization_config gives bits 8". */
static void case_gptq_bits_disagree(corpus *c, const char *path)
{
    char *config = read_text(&c->gptq, "config.json");
    char *changed = case_replace_once(config, "\"bits\": 4", "\"bits\": 8");
    char target[CASE_PATH_SIZE];
    copy_companions(&c->gptq, path);
    write_weights(path, c->gptq.file.data, c->gptq.file.size);
    case_write_text(case_join_path(target, path, "config.json"), changed);
    free(changed);
    free(config);
}

/* down_proj of layer 1 is stored as an F16 weight (its dequantization rounded to f16), without
 * qweight, qzeros, scales and g_idx, while the config declares every linear quantized. Expected:
 * 'linear "model.layers.1.mlp.down_proj" is stored unquantized (model.layers.1.mlp.down_proj.weight,
 * F16 [256, 768]), expected the gptq layout'. */
static void case_gptq_linear_unquantized(corpus *c, const char *path)
{
    const char *module = "model.layers.1.mlp.down_proj";
    const int64_t out_features = 256, in_features = 768;
    char name[4][256];
    const char *roles[4] = {"qweight", "qzeros", "scales", "g_idx"};
    for (int k = 0; k < 4; k++)
        snprintf(name[k], sizeof name[k], "%s.%s", module, roles[k]);

    /* dequantize with the library's GPTQ codec, then round to f16 as the artifact's dtype */
    qref_gptq_config config;
    qref_error err = {0};
    case_check_status(qref_gptq_config_load(c->gptq.dir, &config, &err), &err);
    qref_gptq_linear linear = {
        .prefix = module,
        .qweight = source_tensor(&c->gptq, name[0]),
        .qzeros = source_tensor(&c->gptq, name[1]),
        .scales = source_tensor(&c->gptq, name[2]),
        .g_idx = source_tensor(&c->gptq, name[3]),
        .out_features = out_features,
        .in_features = in_features,
    };
    float *weight = case_allocate((size_t)(out_features * in_features) * sizeof(float));
    case_check_status(qref_gptq_dequantize(&linear, &config, weight, &err), &err);
    uint8_t *half = case_allocate((size_t)(out_features * in_features) * 2);
    for (int64_t i = 0; i < out_features * in_features; i++)
        qref_store_u16(half + 2 * i, qref_f32_to_f16(weight[i]));

    size_t count;
    qref_safetensors_entry *entries = writer_entries(&c->gptq, &count);
    for (int k = 0; k < 4; k++)
        drop_writer_entry(entries, &count, name[k]);
    char weight_name[300];
    snprintf(weight_name, sizeof weight_name, "%s.weight", module);
    entries[count++] = (qref_safetensors_entry){.name = weight_name, .dtype = QREF_DTYPE_F16, .ndim = 2,
                                                .shape = {out_features, in_features}, .data = half};

    char weights[CASE_PATH_SIZE];
    copy_companions(&c->gptq, path);
    write_safetensors(case_join_path(weights, path, "model.safetensors"), entries, count);
    free(entries);
    free(half);
    free(weight);
}

/* ---- structure of a float snapshot (stories260k) ------------------------------------------ */

/* Writes stories260k with its tensors as entries[0..count) and its other files. */
static void write_stories_case(corpus *c, const char *path, const qref_safetensors_entry *entries, size_t count)
{
    char weights[CASE_PATH_SIZE];
    copy_companions(&c->stories, path);
    write_safetensors(case_join_path(weights, path, "model.safetensors"), entries, count);
}

/* Returns the writer entry of this name in entries[0..count). */
static qref_safetensors_entry *writer_entry(qref_safetensors_entry *entries, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(entries[i].name, name) == 0)
            return &entries[i];
    case_fail("no writer entry \"%s\"", name);
}

/* model.norm.weight is not stored.
 * Expected: structure.missing, 'tensor "model.norm.weight" not found (expected shape [64])'. */
static void case_structure_missing(corpus *c, const char *path)
{
    size_t count;
    qref_safetensors_entry *entries = writer_entries(&c->stories, &count);
    drop_writer_entry(entries, &count, "model.norm.weight");
    write_stories_case(c, path, entries, count);
    free(entries);
}

/* model.norm.weight keeps its 64 values but is stored with shape [2, 32].
 * Expected: structure.shape, 'tensor "model.norm.weight": shape [2, 32], expected [64]'. */
static void case_structure_shape(corpus *c, const char *path)
{
    size_t count;
    qref_safetensors_entry *entries = writer_entries(&c->stories, &count);
    qref_safetensors_entry *norm = writer_entry(entries, count, "model.norm.weight");
    norm->ndim = 2;
    norm->shape[0] = 2;
    norm->shape[1] = 32;
    write_stories_case(c, path, entries, count);
    free(entries);
}

/* model.norm.weight's 4-byte values are labelled I32 instead of F32.
 * Expected: structure.dtype, naming the tensor, I32 and the float dtypes expected. */
static void case_structure_dtype(corpus *c, const char *path)
{
    size_t count;
    qref_safetensors_entry *entries = writer_entries(&c->stories, &count);
    writer_entry(entries, count, "model.norm.weight")->dtype = QREF_DTYPE_I32;
    write_stories_case(c, path, entries, count);
    free(entries);
}

/* One element of layer 2's up_proj, drawn from the stream, is NaN.
 * Expected: structure.nonfinite, naming the tensor and the element. */
static void case_structure_nonfinite(corpus *c, const char *path)
{
    const char *name = "model.layers.2.mlp.up_proj.weight";
    const qref_tensor *tensor = source_tensor(&c->stories, name);
    uint8_t *copy = case_allocate(tensor->nbytes);
    memcpy(copy, tensor->data, tensor->nbytes);
    uint64_t index = case_rng_next(&c->rng) % tensor->numel;
    const uint32_t nan_bits = 0x7fc00000u;
    memcpy(copy + 4 * index, &nan_bits, 4);

    size_t count;
    qref_safetensors_entry *entries = writer_entries(&c->stories, &count);
    writer_entry(entries, count, name)->data = copy;
    write_stories_case(c, path, entries, count);
    free(entries);
    free(copy);
}

/* A sixth layer's input_layernorm (a copy of layer 4's) is stored beside the five layers
 * config.json declares.
 * Expected: structure.layers, "num_hidden_layers is 5, but the tensors hold 6 layers". */
static void case_structure_layers(corpus *c, const char *path)
{
    size_t count;
    qref_safetensors_entry *entries = writer_entries(&c->stories, &count);
    qref_safetensors_entry extra = *writer_entry(entries, count, "model.layers.4.input_layernorm.weight");
    extra.name = "model.layers.5.input_layernorm.weight";
    entries[count++] = extra;
    qsort(entries, count, sizeof *entries, case_compare_entries);
    write_stories_case(c, path, entries, count);
    free(entries);
}

/* A rotary inv_freq buffer, which older transformers versions saved, is stored in layer 0.
 * Expected: structure.unexpected (a WARN), naming the tensor. */
static void case_structure_unexpected(corpus *c, const char *path)
{
    float inv_freq[4];
    for (int i = 0; i < 4; i++)
        inv_freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / 8.0f);
    size_t count;
    qref_safetensors_entry *entries = writer_entries(&c->stories, &count);
    entries[count++] = (qref_safetensors_entry){.name = "model.layers.0.self_attn.rotary_emb.inv_freq",
                                                .dtype = QREF_DTYPE_F32, .ndim = 1, .shape = {4}, .data = inv_freq};
    qsort(entries, count, sizeof *entries, case_compare_entries);
    write_stories_case(c, path, entries, count);
    free(entries);
}

/* ---- archives (stories260k's files) ----------------------------------------------------- */

/* A tar with the snapshot's files and an entry named "../x".
 * Expected: 'entry "../x" rejected: the name has a ".." component'. */
static void case_archive_tar_parent_entry(corpus *c, const char *path)
{
    snapshot_items s;
    snapshot_items_init(&s, &c->stories, "");
    s.items[3] = (archive_item){"../x", stray_text, sizeof stray_text - 1, NULL};
    write_archive(path, false, s.items, 4);
    snapshot_items_free(&s);
}

/* The same as a zip.
 * Expected: 'entry "../x" rejected: the name has a ".." component'. */
static void case_archive_zip_parent_entry(corpus *c, const char *path)
{
    snapshot_items s;
    snapshot_items_init(&s, &c->stories, "");
    s.items[3] = (archive_item){"../x", stray_text, sizeof stray_text - 1, NULL};
    write_archive(path, true, s.items, 4);
    snapshot_items_free(&s);
}

/* A tar of a Hugging Face cache snapshot made without dereferencing: tokenizer.model is a
 * symbolic link into the cache's blob folder. Expected: 'entry "tokenizer.model" rejected: it
 * is a symbolic link (to "../../blobs/tokenizer.model")'. */
static void case_archive_tar_symlink(corpus *c, const char *path)
{
    snapshot_items s;
    snapshot_items_init(&s, &c->stories, "");
    s.items[2] = (archive_item){"tokenizer.model", NULL, 0, "../../blobs/tokenizer.model"};
    write_archive(path, false, s.items, 3);
    snapshot_items_free(&s);
}

/* A tar whose entries carry absolute paths, as `tar -P` writes them.
 * Expected: 'entry "/models/stories260k/config.json" rejected: the name is an absolute path'. */
static void case_archive_tar_absolute_path(corpus *c, const char *path)
{
    snapshot_items s;
    snapshot_items_init(&s, &c->stories, "/models/stories260k/");
    write_archive(path, false, s.items, 3);
    snapshot_items_free(&s);
}

/* ---- config.json (stories260k) ---------------------------------------------------------- */

/* The snapshot has weights and a tokenizer but no config.json.
 * Expected: "config.json not found". */
static void case_config_missing(corpus *c, const char *path)
{
    char config[CASE_PATH_SIZE];
    copy_companions(&c->stories, path);
    write_weights(path, c->stories.file.data, c->stories.file.size);
    if (unlink(case_join_path(config, path, "config.json")) != 0)
        case_fail("%s: cannot remove: %s", config, strerror(errno));
}

/* config.json declares model_type "mistral".
 * Expected: 'config.json: model_type "mistral" is not supported, expected "llama"'. */
static void case_config_unknown_model_type(corpus *c, const char *path)
{
    char *config = read_text(&c->stories, "config.json");
    char *changed = case_replace_once(config, "\"model_type\": \"llama\"", "\"model_type\": \"mistral\"");
    char target[CASE_PATH_SIZE];
    copy_companions(&c->stories, path);
    write_weights(path, c->stories.file.data, c->stories.file.size);
    case_write_text(case_join_path(target, path, "config.json"), changed);
    free(changed);
    free(config);
}

/* ---- the table of cases ----------------------------------------------------------------- */

typedef struct malformed_case {
    const char *name;
    const char *suffix;  /* "" for a snapshot folder, else the archive's extension */
    void (*write)(corpus *c, const char *path);
} malformed_case;

static const malformed_case cases[] = {
    {"safetensors_truncated_length", "", case_safetensors_truncated_length},
    {"safetensors_truncated_header", "", case_safetensors_truncated_header},
    {"safetensors_truncated_data", "", case_safetensors_truncated_data},
    {"safetensors_offsets_past_end", "", case_safetensors_offsets_past_end},
    {"safetensors_overlap", "", case_safetensors_overlap},
    {"safetensors_header_length_2_63", "", case_safetensors_header_length_2_63},
    {"safetensors_duplicate_key", "", case_safetensors_duplicate_key},
    {"safetensors_unknown_dtype", "", case_safetensors_unknown_dtype},
    {"sharded_index_lacks_shard", "", case_sharded_index_lacks_shard},
    {"sharded_index_missing_shard", "", case_sharded_index_missing_shard},
    {"sharded_index_parent_path", "", case_sharded_index_parent_path},
    {"gptq_qweight_wrong_shape", "", case_gptq_qweight_wrong_shape},
    {"gptq_scale_nan", "", case_gptq_scale_nan},
    {"gptq_scale_zero", "", case_gptq_scale_zero},
    {"gptq_scale_negative", "", case_gptq_scale_negative},
    {"gptq_zero_point_underflow", "", case_gptq_zero_point_underflow},
    {"gptq_g_idx_out_of_range", "", case_gptq_g_idx_out_of_range},
    {"gptq_bits_disagree", "", case_gptq_bits_disagree},
    {"gptq_linear_unquantized", "", case_gptq_linear_unquantized},
    {"structure_missing", "", case_structure_missing},
    {"structure_shape", "", case_structure_shape},
    {"structure_dtype", "", case_structure_dtype},
    {"structure_nonfinite", "", case_structure_nonfinite},
    {"structure_layers", "", case_structure_layers},
    {"structure_unexpected", "", case_structure_unexpected},
    {"archive_tar_parent_entry", ".tar", case_archive_tar_parent_entry},
    {"archive_zip_parent_entry", ".zip", case_archive_zip_parent_entry},
    {"archive_tar_symlink", ".tar", case_archive_tar_symlink},
    {"archive_tar_absolute_path", ".tar", case_archive_tar_absolute_path},
    {"config_missing", "", case_config_missing},
    {"config_unknown_model_type", "", case_config_unknown_model_type},
};

int main(int argc, char **argv)
{
    case_support_init("make_malformed");
    if (argc != 3) {
        fprintf(stderr, "usage: make_malformed MODELS_DIR OUT_DIR\n");
        return 2;
    }
    corpus c = {.out_dir = argv[2]};
    case_make_dir(c.out_dir);
    source_open(&c.stories, argv[1], "stories260k");
    source_open(&c.gptq, argv[1], "synth256-autogptq-w4g128");

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char file_name[256], path[CASE_PATH_SIZE];
        snprintf(file_name, sizeof file_name, "%s%s", cases[i].name, cases[i].suffix);
        case_join_path(path, c.out_dir, file_name);
        case_remove_tree(path);
        c.rng = CORPUS_SEED ^ case_fnv1a(CASE_FNV1A_BASIS, cases[i].name);
        printf("%s\n", path);
        cases[i].write(&c, path);
    }

    source_close(&c.gptq);
    source_close(&c.stories);
    return 0;
}
