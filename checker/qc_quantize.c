/*
 * qconform quantize: RTN quantization of a full-precision snapshot into a GPTQ artifact.
 *
 * Steps: open the reference and reject a quantized one; check the group size against every
 * linear's input width and the output folder against --force; quantize the seven linears of
 * every layer with qref_rtn_quantize and pack them with qref_gptq_pack_words (g_idx = i / G,
 * or act-order's permuted g_idx under --desc-act);
 * create missing parent folders of the output; write model.safetensors, config.json,
 * quantize_config.json and the tokenizer files into a fresh temporary folder next to the
 * output; rename it into place.
 *
 * Checkpoint format auto writes v1 ("gptq", what AutoGPTQ and most readers expect) until a
 * zero point of 0 appears, which v1 cannot store because it stores zero - 1. The whole
 * artifact is then quantized again as gptq_v2, so one artifact never mixes formats.
 */
#define _GNU_SOURCE /* renameat2 and RENAME_NOREPLACE */

#include "qc_quantize.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/qref_blob.h"
#include "io/qref_json.h"
#include "io/qref_safetensors.h"
#include "model/qref_llama.h"
#include "qc_model.h"
#include "quant/qref_rtn.h"

/* Files of the reference copied unchanged into the artifact when present. */
static const char *const copied_files[] = {
    "tokenizer.model",         "tokenizer.json",          "tokenizer_config.json",
    "special_tokens_map.json", "generation_config.json",  "LICENSE",
};

bool qc_checkpoint_choice_parse(const char *name, qc_checkpoint_choice *out)
{
    if (strcmp(name, "auto") == 0)
        *out = QC_CHECKPOINT_AUTO;
    else if (strcmp(name, "gptq") == 0)
        *out = QC_CHECKPOINT_V1;
    else if (strcmp(name, "gptq_v2") == 0)
        *out = QC_CHECKPOINT_V2;
    else
        return false;
    return true;
}

/* ---- checks before anything is written ----------------------------------------------------- */

qref_status qc_quantize_check_group_size(const qref_llama_config *config, long group_size, qref_error *err)
{
    if (group_size == -1)
        return QREF_OK;
    if (group_size <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "group size %ld, expected a positive number or -1", group_size);

    /* The distinct input widths, for the message. */
    int64_t widths[QREF_LLAMA_LINEAR_COUNT];
    int width_count = 0;
    for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
        int64_t rows, cols;
        qref_llama_linear_shape(config, index, &rows, &cols);
        bool seen = false;
        for (int k = 0; k < width_count; k++)
            seen = seen || widths[k] == cols;
        if (!seen)
            widths[width_count++] = cols;
    }
    char listed[160] = "";
    for (int k = 0; k < width_count; k++) {
        const char *separator = ", ";
        if (k == 0)
            separator = "";
        else if (k + 1 == width_count)
            separator = " and ";
        size_t used = strlen(listed);
        snprintf(listed + used, sizeof listed - used, "%s%lld", separator, (long long)widths[k]);
    }

    for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
        int64_t rows, cols;
        qref_llama_linear_shape(config, index, &rows, &cols);
        if (cols % group_size != 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "model.layers.0.%s: group size %ld does not divide its input width %lld (the same "
                                  "in every layer); choose a group size that divides %s, or -1 for one group per "
                                  "row",
                                  qref_llama_linear_names[index], group_size, (long long)cols, listed);
    }
    return QREF_OK;
}

/* Rejects a reference that declares a quantization config or stores packed tensors. */
static qref_status check_full_precision(const qc_model *model, qref_error *err)
{
    if (model->kind == QC_MODEL_GGUF)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: a GGUF file cannot be the reference; quantize needs a "
                              "full-precision Hugging Face snapshot", model->path);
    if (model->quantized)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: the snapshot is already quantized (its quantization config in %s is %d-bit GPTQ, "
                              "checkpoint_format %s); quantize needs a full-precision reference snapshot",
                              model->path, model->gptq.source, model->gptq.bits,
                              qref_gptq_format_name(model->gptq.format));
    const qref_tensor_set *tensors = qref_snapshot_tensors(model->snapshot);
    for (size_t k = 0; k < tensors->count; k++) {
        const char *name = tensors->items[k].name;
        size_t length = strlen(name);
        if ((length > 8 && strcmp(name + length - 8, ".qweight") == 0) ||
            (length > 7 && strcmp(name + length - 7, ".qzeros") == 0))
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: tensor \"%s\" is a packed quantized tensor, so the snapshot is already "
                                  "quantized; quantize needs a full-precision reference snapshot",
                                  model->path, name);
    }
    return QREF_OK;
}

/* ---- paths ------------------------------------------------------------------------------- */

/* The output folder split into its parent folder and its last name, both owned. */
typedef struct out_path {
    char *parent;
    char *base;
} out_path;

static void out_path_free(out_path *path)
{
    free(path->parent);
    free(path->base);
    memset(path, 0, sizeof *path);
}

static qref_status out_path_split(const char *dir, out_path *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    size_t length = strlen(dir);
    while (length > 1 && dir[length - 1] == '/')
        length--;
    size_t start = length;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    size_t base_length = length - start;
    if (base_length == 0 || (base_length == 1 && dir[start] == '.') ||
        (base_length == 2 && dir[start] == '.' && dir[start + 1] == '.'))
        return qref_error_set(err, QREF_ERR_INVALID,
                              "output folder \"%s\" has no folder name of its own, expected a path such as "
                              "out/model-w4", dir);

    out->base = strndup(dir + start, base_length);
    if (start == 0)
        out->parent = strdup(".");
    else
        out->parent = strndup(dir, start > 1 ? start - 1 : 1);
    if (out->base == NULL || out->parent == NULL) {
        out_path_free(out);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", dir);
    }
    return QREF_OK;
}

/* Formats "<folder>/<name>" into a heap string, or returns NULL when out of memory. */
static char *path_join(const char *folder, const char *name)
{
    size_t size = strlen(folder) + strlen(name) + 2;
    char *path = malloc(size);
    if (path != NULL)
        snprintf(path, size, "%s/%s", folder, name);
    return path;
}

static int remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk)
{
    (void)info;
    (void)type;
    (void)walk;
    return remove(path);
}

/* Deletes a folder tree without following symbolic links; returns 0 or -1 with errno. */
static int remove_tree(const char *path)
{
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Folders that make_parent_folders created, deepest last, to delete again on failure. */
typedef struct created_folders {
    char *paths[64];
    int count;
} created_folders;

/* Creates the missing folders of path, as mkdir -p does; another process may create them at
 * the same time. */
static qref_status make_parent_folders(const char *path, created_folders *created, qref_error *err)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    size_t length = strlen(copy);
    for (size_t k = 1; k <= length; k++) {
        if (copy[k] != '/' && copy[k] != '\0')
            continue;
        char saved = copy[k];
        copy[k] = '\0';
        if (mkdir(copy, 0755) == 0) {
            if (created->count < (int)(sizeof created->paths / sizeof created->paths[0]))
                created->paths[created->count++] = strdup(copy);
        } else if (errno != EEXIST) {
            int error = errno;
            qref_error_set(err, QREF_ERR_IO, "%s: cannot create the output's parent folder: %s", copy,
                           strerror(error));
            free(copy);
            return QREF_ERR_IO;
        }
        copy[k] = saved;
    }
    free(copy);
    return QREF_OK;
}

/* Frees the list, and first deletes the folders in it (deepest first, when empty) if remove_them. */
static void created_folders_free(created_folders *created, bool remove_them)
{
    for (int k = created->count - 1; k >= 0; k--) {
        if (remove_them && created->paths[k] != NULL)
            rmdir(created->paths[k]);
        free(created->paths[k]);
    }
    created->count = 0;
}

/*
 * Creates "<parent>/.<base>.<kind>-XXXXXX" with mkdtemp; *out is the owned path.
 * NOTE: the added 12 bytes make this fail for an output folder name of more than 243 bytes.
 */
static qref_status make_sibling_folder(const out_path *path, const char *kind, char **out, qref_error *err)
{
    size_t size = strlen(path->parent) + strlen(path->base) + strlen(kind) + 12;
    char *folder = malloc(size);
    if (folder == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path->base);
    snprintf(folder, size, "%s/.%s.%s-XXXXXX", path->parent, path->base, kind);
    if (mkdtemp(folder) == NULL) {
        int saved = errno;
        qref_error_set(err, QREF_ERR_IO, "%s: cannot create a temporary folder: %s", folder, strerror(saved));
        free(folder);
        return QREF_ERR_IO;
    }
    *out = folder;
    return QREF_OK;
}

/* ---- quantization ------------------------------------------------------------------------ */

/* Packed linears of all layers, [layer * QREF_LLAMA_LINEAR_COUNT + index]. */
typedef struct packed_model {
    qref_gptq_packed *linears;
    size_t count;
} packed_model;

static void packed_model_free(packed_model *packed)
{
    for (size_t k = 0; k < packed->count; k++)
        qref_gptq_packed_free(&packed->linears[k]);
    free(packed->linears);
    memset(packed, 0, sizeof *packed);
}

/* Returns the first zero point of 0 as (row, group), or false when there is none. */
static bool find_zero_point_zero(const qref_rtn_result *rtn, size_t *row, size_t *group)
{
    for (size_t k = 0; k < rtn->rows * rtn->groups; k++) {
        if (rtn->zeros[k] == 0) {
            *row = k / rtn->groups;
            *group = k % rtn->groups;
            return true;
        }
    }
    return false;
}

/*
 * Puts the columns of weight[rows][cols] in act-order's order for quantize --desc-act, the
 * descending column norms (qref_gptq_order_by_column_norm): RTN has no Hessian, so this
 * gives act-order's layout, not its accuracy. *order (owned) is the column of each position.
 */
static qref_status order_columns(float *weight, int64_t rows, int64_t cols, int32_t **order, qref_error *err)
{
    *order = malloc((size_t)cols * sizeof **order);
    float *row = malloc((size_t)cols * sizeof *row);
    qref_status status = QREF_OK;
    if (*order == NULL || row == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "cannot allocate the column order of %lld columns",
                                (long long)cols);
    if (status == QREF_OK)
        status = qref_gptq_order_by_column_norm(weight, rows, cols, *order, err);
    for (int64_t o = 0; status == QREF_OK && o < rows; o++) {
        memcpy(row, weight + o * cols, (size_t)cols * sizeof *row);
        for (int64_t k = 0; k < cols; k++)
            weight[o * cols + k] = row[(*order)[k]];
    }
    free(row);
    if (status != QREF_OK) {
        free(*order);
        *order = NULL;
    }
    return status;
}

/* Moves codes quantized in column order back to the original columns and sets codes->g_idx
 * to *g_idx (owned): g_idx[order[k]] = k / G. */
static qref_status restore_column_order(qref_gptq_codes *codes, const int32_t *order, int32_t **g_idx,
                                        qref_error *err)
{
    const int64_t cols = codes->in_features;
    *g_idx = malloc((size_t)cols * sizeof **g_idx);
    uint8_t *row = malloc((size_t)cols);
    if (*g_idx == NULL || row == NULL) {
        free(row);
        return qref_error_set(err, QREF_ERR_NOMEM, "cannot allocate the group index of %lld columns", (long long)cols);
    }
    for (int64_t o = 0; o < codes->out_features; o++) {
        memcpy(row, codes->codes + o * cols, (size_t)cols);
        for (int64_t k = 0; k < cols; k++)
            codes->codes[o * cols + order[k]] = row[k];
    }
    qref_gptq_g_idx_from_order(order, cols, codes->group_size, *g_idx);
    codes->g_idx = *g_idx;
    free(row);
    return QREF_OK;
}

/* Quantizes and packs one linear into *packed. In v1 a zero point of 0 sets *blocked with
 * its location in blocked_at and packs nothing. */
static qref_status quantize_linear(const qc_quantize_request *request, qref_gptq_format format,
                                   const qc_quantize_linear *linear, qref_gptq_packed *packed, bool *blocked,
                                   char *blocked_at, size_t blocked_size, qref_error *err)
{
    const char *prefix = linear->module, *name = linear->name;
    float *weight = linear->weight;
    const int64_t rows = linear->rows, cols = linear->cols;

    /* Step 1: f32 weights [rows = out_features][cols = in_features], in act-order's column
     * order when requested, then RTN codes. */
    qref_status status = QREF_OK;
    int32_t *order = NULL;
    if (request->desc_act && !request->static_groups) {
        status = order_columns(weight, rows, cols, &order, err);
        if (status != QREF_OK)
            return status;
    }
    qref_rtn_config rtn_config = {.bits = request->bits, .group_size = request->group_size, .sym = request->sym};
    qref_rtn_result rtn;
    status = qref_rtn_quantize(name, weight, (size_t)rows, (size_t)cols, &rtn_config, &rtn, err);
    if (status != QREF_OK) {
        qref_rtn_result_free(&rtn);
        free(order);
        return status;
    }

    /* Step 2: v1 stores zero - 1, so a zero point of 0 stops this format. */
    size_t zero_row, zero_group;
    if (format == QREF_GPTQ_FORMAT_V1 && find_zero_point_zero(&rtn, &zero_row, &zero_group)) {
        snprintf(blocked_at, blocked_size, "%s has zero point 0 at output %zu, group %zu", prefix, zero_row,
                 zero_group);
        *blocked = true;
        qref_rtn_result_free(&rtn);
        free(order);
        return QREF_OK;
    }

    /* Step 3: the AutoGPTQ tensors in the requested words; g_idx = i / G, or under act-order
     * the codes back in the original column order with g_idx[order[k]] = k / G. */
    qref_gptq_codes codes = {.bits = rtn.bits, .out_features = rows, .in_features = cols,
                             .group_size = (int64_t)rtn.group_size, .groups = (int64_t)rtn.groups,
                             .scale_dtype = QREF_DTYPE_F16, .codes = rtn.codes, .zeros = rtn.zeros,
                             .scales = rtn.scales, .g_idx = NULL};
    int32_t *g_idx = NULL;
    if (order != NULL)
        status = restore_column_order(&codes, order, &g_idx, err);
    if (status == QREF_OK)
        status = qref_gptq_pack_words(prefix, &codes, format, request->pack_bits != 0 ? request->pack_bits : 32,
                                      packed, err);
    qref_rtn_result_free(&rtn);
    free(order);
    free(g_idx);
    return status;
}

qref_status qc_quantize_each_linear(const qc_model *model, qc_quantize_linear_fn fn, void *ctx, qref_error *err)
{
    size_t max_weights = 0;
    for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
        int64_t rows, cols;
        qref_llama_linear_shape(&model->config, index, &rows, &cols);
        if ((size_t)(rows * cols) > max_weights)
            max_weights = (size_t)(rows * cols);
    }
    float *weight = malloc(max_weights * sizeof *weight);
    if (weight == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu weights", model->path, max_weights);

    const qref_tensor_set *stored = model->tensor_weights.tensors;
    qref_status status = QREF_OK;
    bool stop = false;
    size_t n = 0;
    for (int layer = 0; layer < model->config.num_hidden_layers && status == QREF_OK && !stop; layer++) {
        for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT && status == QREF_OK && !stop; index++, n++) {
            char module[256], name[300];
            qref_llama_layer_tensor_name(module, sizeof module, layer, qref_llama_linear_names[index]);
            snprintf(name, sizeof name, "%s.weight", module);
            const qref_tensor *tensor = stored != NULL ? qref_tensor_set_find(stored, name) : NULL;
            qc_quantize_linear linear = {.index = n, .module = module, .name = name, .weight = weight,
                                         .dtype = tensor != NULL ? tensor->dtype : QREF_DTYPE_F32};
            qref_llama_linear_shape(&model->config, index, &linear.rows, &linear.cols);
            status = qref_weights_load(&model->weights, name, linear.rows, linear.cols, weight, err);
            if (status == QREF_OK)
                status = fn(ctx, &linear, &stop, err);
        }
    }
    free(weight);
    return status;
}

/* What the GPTQ writer's callback needs and fills. */
typedef struct gptq_walk {
    const qc_quantize_request *request;
    qref_gptq_format format;
    packed_model *packed;
    bool *blocked;
    char *blocked_at;
    size_t blocked_size;
} gptq_walk;

static qref_status quantize_gptq_linear(void *ctx, const qc_quantize_linear *linear, bool *stop, qref_error *err)
{
    gptq_walk *walk = ctx;
    qref_status status = quantize_linear(walk->request, walk->format, linear,
                                         &walk->packed->linears[walk->packed->count], walk->blocked, walk->blocked_at,
                                         walk->blocked_size, err);
    walk->packed->count++;
    *stop = *walk->blocked;
    return status;
}

/* Quantizes every linear of every layer in format. Stops early with *blocked set when v1
 * meets a zero point of 0. */
static qref_status quantize_model(const qc_model *model, const qc_quantize_request *request, qref_gptq_format format,
                                  packed_model *packed, bool *blocked, char *blocked_at, size_t blocked_size,
                                  qref_error *err)
{
    *blocked = false;
    packed->count = 0;
    packed->linears = calloc((size_t)model->config.num_hidden_layers * QREF_LLAMA_LINEAR_COUNT + 1,
                             sizeof *packed->linears);
    if (packed->linears == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %d layers of packed linears", model->path,
                              model->config.num_hidden_layers);
    gptq_walk walk = {.request = request, .format = format, .packed = packed, .blocked = blocked,
                      .blocked_at = blocked_at, .blocked_size = blocked_size};
    return qc_quantize_each_linear(model, quantize_gptq_linear, &walk, err);
}

/* ---- artifact files ---------------------------------------------------------------------- */

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const qref_safetensors_entry *)a)->name, ((const qref_safetensors_entry *)b)->name);
}

static void entry_from_tensor(qref_safetensors_entry *entry, const qref_tensor *tensor)
{
    entry->name = tensor->name;
    entry->dtype = tensor->dtype;
    entry->ndim = tensor->ndim;
    memcpy(entry->shape, tensor->shape, sizeof entry->shape);
    entry->data = tensor->data;
}

/* Writes model.safetensors: the packed linears and every other reference tensor, by name. */
static qref_status write_weights(const char *folder, const qc_model *model, const packed_model *packed,
                                 qref_error *err)
{
    const qref_tensor_set *tensors = qref_snapshot_tensors(model->snapshot);

    /* Step 1: mark the reference tensors that the packed linears replace. */
    bool *replaced = calloc(tensors->count + 1, sizeof *replaced);
    qref_safetensors_entry *entries = calloc(tensors->count + 4 * packed->count + 1, sizeof *entries);
    if (replaced == NULL || entries == NULL) {
        free(replaced);
        free(entries);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu tensor entries", folder,
                              tensors->count + 4 * packed->count);
    }
    for (int layer = 0; layer < model->config.num_hidden_layers; layer++) {
        for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT; index++) {
            char name[300], suffix[64];
            snprintf(suffix, sizeof suffix, "%s.weight", qref_llama_linear_names[index]);
            qref_llama_layer_tensor_name(name, sizeof name, layer, suffix);
            const qref_tensor *tensor = qref_tensor_set_find(tensors, name);
            if (tensor != NULL)
                replaced[tensor - tensors->items] = true;
        }
    }

    /* Step 2: entries in name order, so the file layout does not depend on the reference's. */
    size_t count = 0;
    for (size_t k = 0; k < tensors->count; k++) {
        if (!replaced[k])
            entry_from_tensor(&entries[count++], &tensors->items[k]);
    }
    for (size_t k = 0; k < packed->count; k++) {
        entry_from_tensor(&entries[count++], &packed->linears[k].qweight);
        entry_from_tensor(&entries[count++], &packed->linears[k].qzeros);
        entry_from_tensor(&entries[count++], &packed->linears[k].scales);
        entry_from_tensor(&entries[count++], &packed->linears[k].g_idx);
    }
    qsort(entries, count, sizeof *entries, compare_entries);

    /* Step 3: the file, with the metadata transformers writes ({"format": "pt"}). */
    char *path = path_join(folder, "model.safetensors");
    qref_status status;
    if (path == NULL) {
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", folder);
    } else {
        const qref_safetensors_meta metadata[] = {{"format", "pt"}};
        status = qref_safetensors_write(path, entries, count, metadata, 1, err);
    }
    free(path);
    free(entries);
    free(replaced);
    return status;
}

/*
 * Prints a cJSON object with two-space indentation and ": " after keys, like the config
 * files of Hugging Face, indented by indent spaces after every line break. cJSON's own
 * formatted output uses tabs only as layout (a tab inside a string is escaped as \t), so each
 * tab is rewritten. The caller frees the result.
 */
static char *print_json(const cJSON *object, int indent)
{
    char *printed = cJSON_Print(object);
    if (printed == NULL)
        return NULL;
    size_t length = strlen(printed), lines = 1, tabs = 0;
    for (size_t k = 0; k < length; k++) {
        lines += printed[k] == '\n';
        tabs += printed[k] == '\t';
    }
    char *out = malloc(length + tabs + lines * (size_t)indent + 1);
    if (out == NULL) {
        free(printed);
        return NULL;
    }
    size_t n = 0;
    for (size_t k = 0; k < length; k++) {
        char c = printed[k];
        if (c == '\t' && k > 0 && printed[k - 1] == ':') {
            out[n++] = ' ';
        } else if (c == '\t') {
            out[n++] = ' ';
            out[n++] = ' ';
        } else {
            out[n++] = c;
            for (int s = 0; c == '\n' && s < indent; s++)
                out[n++] = ' ';
        }
    }
    out[n] = '\0';
    free(printed);
    return out;
}

/* Writes text to "<folder>/<name>" atomically. */
static qref_status write_text(const char *folder, const char *name, const char *text, qref_error *err)
{
    char *path = path_join(folder, name);
    if (path == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", folder);
    qref_status status = qref_file_write_atomic(path, text, strlen(text), err);
    free(path);
    return status;
}

/*
 * Writes config.json (the reference's text with "quantization_config" inserted before its
 * closing brace, so every other byte of it is kept) and quantize_config.json.
 */
static qref_status write_configs(const char *folder, const qc_model *model, const cJSON *quantization,
                                 qref_error *err)
{
    const qref_blob *blob = qref_snapshot_find_file(model->snapshot, "config.json");
    cJSON *config = NULL;
    qref_status status = qref_json_parse("config.json", (const char *)blob->data, blob->size, QREF_JSON_MAX_DEPTH,
                                         &config, err);
    if (status != QREF_OK)
        return status;
    bool has_members = config != NULL && cJSON_IsObject(config) && config->child != NULL;
    bool is_object = cJSON_IsObject(config);
    cJSON_Delete(config);
    if (!is_object)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: config.json is not a JSON object", model->path);

    /* Step 1: the text before the closing brace, without trailing whitespace. */
    size_t end = blob->size;
    while (end > 0 && blob->data[end - 1] != '}')
        end--;
    size_t keep = end - 1;
    while (keep > 0 && (blob->data[keep - 1] == ' ' || blob->data[keep - 1] == '\n' || blob->data[keep - 1] == '\r' ||
                        blob->data[keep - 1] == '\t'))
        keep--;

    /* Step 2: config.json and quantize_config.json. */
    char *member = print_json(quantization, 2);
    char *standalone = print_json(quantization, 0);
    size_t size = keep + (member != NULL ? strlen(member) : 0) + 64;
    char *text = malloc(size);
    if (member == NULL || standalone == NULL || text == NULL) {
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot format the quantization config", folder);
    } else {
        memcpy(text, blob->data, keep);
        snprintf(text + keep, size - keep, "%s\n  \"quantization_config\": %s\n}\n", has_members ? "," : "", member);
        status = write_text(folder, "config.json", text, err);
        if (status == QREF_OK) {
            size_t standalone_length = strlen(standalone);
            char *line = realloc(standalone, standalone_length + 2);
            if (line == NULL) {
                status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", folder);
            } else {
                standalone = line;
                memcpy(standalone + standalone_length, "\n", 2);
                status = write_text(folder, "quantize_config.json", standalone, err);
            }
        }
    }
    free(text);
    free(member);
    free(standalone);
    return status;
}

/* Builds the quantization_config object: AutoGPTQ's keys plus GPTQModel's meta. */
static qref_status build_quantization_config(const qc_quantize_request *request, qref_gptq_format format,
                                             cJSON **out, qref_error *err)
{
    qref_gptq_config config;
    qref_gptq_config_init(&config);
    config.bits = request->bits;
    config.group_size = request->group_size;
    config.sym = request->sym;
    config.desc_act = request->desc_act;
    config.static_groups = request->desc_act && request->static_groups;
    config.format = format;
    config.pack_bits = request->pack_bits != 0 ? request->pack_bits : 32;
    /* Act-order groups change the codes, so they are not plain RTN's (static groups keep them);
     * verify --reference re-quantizes rtn_act_order in the same column order. */
    snprintf(config.algorithm, sizeof config.algorithm, "%s",
             request->desc_act && !request->static_groups ? "rtn_act_order" : "rtn");
    snprintf(config.quantizer, sizeof config.quantizer, "%s", request->quantizer != NULL ? request->quantizer : "qconform");
    /* AutoGPTQ's from_quantized finds the weights as <model_file_base_name>.safetensors. */
    return qref_gptq_config_to_json(&config, NULL, "model", out, err);
}

/* Copies the tokenizer, generation config and licence files the reference has. */
static qref_status copy_reference_files(const char *folder, const qc_model *model, qref_error *err)
{
    for (size_t k = 0; k < sizeof copied_files / sizeof copied_files[0]; k++) {
        const qref_blob *blob = qref_snapshot_find_file(model->snapshot, copied_files[k]);
        if (blob == NULL)
            continue;
        char *path = path_join(folder, copied_files[k]);
        if (path == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", folder);
        qref_status status = qref_file_write_atomic(path, blob->data, blob->size, err);
        free(path);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* Writes every file of the artifact into folder. */
static qref_status write_artifact(const char *folder, const qc_model *model, const qc_quantize_request *request,
                                  const packed_model *packed, qref_gptq_format format, qref_error *err)
{
    qref_status status = write_weights(folder, model, packed, err);
    if (status != QREF_OK)
        return status;
    cJSON *quantization = NULL;
    status = build_quantization_config(request, format, &quantization, err);
    if (status == QREF_OK)
        status = write_configs(folder, model, quantization, err);
    cJSON_Delete(quantization);
    if (status != QREF_OK)
        return status;
    return copy_reference_files(folder, model, err);
}

/* ---- publishing -------------------------------------------------------------------------- */

static qref_status error_exists(const char *dir, qref_error *err)
{
    return qref_error_set(err, QREF_ERR_INVALID, "output folder %s already exists; pass --force to replace it",
                          dir);
}

/* Renames folder to dir, failing when dir exists. */
static qref_status publish_new(const char *folder, const char *dir, qref_error *err)
{
    if (renameat2(AT_FDCWD, folder, AT_FDCWD, dir, RENAME_NOREPLACE) == 0)
        return QREF_OK;
    int saved = errno;
    if (saved == EEXIST)
        return error_exists(dir, err);
    if (saved == EINVAL || saved == ENOSYS) {
        /* The file system has no RENAME_NOREPLACE: check, then rename (not atomic). */
        struct stat info;
        if (lstat(dir, &info) == 0)
            return error_exists(dir, err);
        if (rename(folder, dir) == 0)
            return QREF_OK;
        saved = errno;
    }
    return qref_error_set(err, QREF_ERR_IO, "cannot rename %s to %s: %s", folder, dir, strerror(saved));
}

/* Moves an existing dir aside, renames folder to dir, then deletes the old folder. */
static qref_status publish_replacing(const char *folder, const char *dir, const out_path *path,
                                     qc_quantize_outcome *outcome, qref_error *err)
{
    struct stat info;
    if (lstat(dir, &info) != 0 && errno == ENOENT)
        return publish_new(folder, dir, err);

    char *aside_folder = NULL;
    qref_status status = make_sibling_folder(path, "old", &aside_folder, err);
    if (status != QREF_OK)
        return status;
    char *aside = path_join(aside_folder, "previous");
    if (aside == NULL) {
        rmdir(aside_folder);
        free(aside_folder);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", dir);
    }

    if (rename(dir, aside) != 0) {
        status = qref_error_set(err, QREF_ERR_IO, "cannot move the existing %s aside to %s: %s", dir, aside,
                                strerror(errno));
        rmdir(aside_folder);
    } else if (rename(folder, dir) != 0) {
        status = qref_error_set(err, QREF_ERR_IO, "cannot rename %s to %s: %s", folder, dir, strerror(errno));
        if (rename(aside, dir) == 0)
            rmdir(aside_folder);
        else
            qref_error_prefix(err, "the previous %s is now %s: ", dir, aside);
    } else if (remove_tree(aside_folder) != 0) {
        snprintf(outcome->cleanup_note, sizeof outcome->cleanup_note,
                 "the previous %s was moved to %s but could not be deleted: %s", dir, aside, strerror(errno));
    }
    free(aside);
    free(aside_folder);
    return status;
}

/* ---- the command ------------------------------------------------------------------------- */

qref_status qc_quantize_gptq(const qc_quantize_request *request, qc_quantize_outcome *outcome, qref_error *err)
{
    memset(outcome, 0, sizeof *outcome);
    if (request->bits != 2 && request->bits != 3 && request->bits != 4 && request->bits != 8)
        return qref_error_set(err, QREF_ERR_INVALID, "bits %d, expected 2, 3, 4 or 8", request->bits);

    /* Step 1: the reference, its widths and the output folder, before anything is written. */
    out_path path;
    qref_status status = out_path_split(request->out_dir, &path, err);
    if (status != QREF_OK)
        return status;
    qc_model model;
    status = qc_model_open(request->reference, &model, err);
    if (status != QREF_OK) {
        out_path_free(&path);
        return status;
    }
    status = check_full_precision(&model, err);
    if (status == QREF_OK)
        status = qc_quantize_check_group_size(&model.config, request->group_size, err);
    struct stat info;
    if (status == QREF_OK && lstat(request->out_dir, &info) == 0) {
        if (!S_ISDIR(info.st_mode))
            status = qref_error_set(err, QREF_ERR_INVALID, "output path %s exists and is not a folder; --force "
                                    "replaces only an existing output folder", request->out_dir);
        else if (!request->force)
            status = error_exists(request->out_dir, err);
    }

    /* Step 2: quantize, as v1 first under auto, and again as v2 when v1 meets a zero point 0. */
    qref_gptq_format format = request->checkpoint == QC_CHECKPOINT_V2 ? QREF_GPTQ_FORMAT_V2 : QREF_GPTQ_FORMAT_V1;
    packed_model packed = {0};
    bool blocked = false;
    char blocked_at[512] = "";
    if (status == QREF_OK)
        status = quantize_model(&model, request, format, &packed, &blocked, blocked_at, sizeof blocked_at, err);
    if (status == QREF_OK && blocked && request->checkpoint == QC_CHECKPOINT_V1) {
        status = qref_error_set(err, QREF_ERR_INVALID,
                                "%s, which checkpoint_format gptq (v1) cannot store because it stores zero - 1 "
                                "(AutoGPTQ's pack() would corrupt the word); use --checkpoint-format gptq_v2 or "
                                "auto, or --sym",
                                blocked_at);
    } else if (status == QREF_OK && blocked) {
        packed_model_free(&packed);
        format = QREF_GPTQ_FORMAT_V2;
        outcome->format_switched = true;
        snprintf(outcome->switch_reason, sizeof outcome->switch_reason,
                 "%s, which checkpoint_format gptq (v1) cannot store because it stores zero - 1", blocked_at);
        status = quantize_model(&model, request, format, &packed, &blocked, blocked_at, sizeof blocked_at, err);
    }

    /* Step 3: every file into a fresh temporary folder, then rename it into place. */
    char *folder = NULL;
    created_folders created = {0};
    if (status == QREF_OK)
        status = make_parent_folders(path.parent, &created, err);
    if (status == QREF_OK)
        status = make_sibling_folder(&path, "tmp", &folder, err);
    if (status == QREF_OK && chmod(folder, 0755) != 0)
        status = qref_error_set(err, QREF_ERR_IO, "%s: cannot set permissions: %s", folder, strerror(errno));
    if (status == QREF_OK)
        status = write_artifact(folder, &model, request, &packed, format, err);
    const int layers = model.config.num_hidden_layers;
    packed_model_free(&packed);
    qc_model_close(&model);
    if (status == QREF_OK) {
        status = request->force ? publish_replacing(folder, request->out_dir, &path, outcome, err)
                                : publish_new(folder, request->out_dir, err);
    }
    if (status != QREF_OK && folder != NULL)
        remove_tree(folder);
    created_folders_free(&created, status != QREF_OK);

    if (status == QREF_OK) {
        outcome->layers = layers;
        outcome->linears = outcome->layers * QREF_LLAMA_LINEAR_COUNT;
        outcome->format = format;
    }
    free(folder);
    out_path_free(&path);
    return status;
}

/* ---- artifacts of other formats ---------------------------------------------------------- */

qref_status qc_quantize_publish(const qc_quantize_request *request, const qc_model *model,
                                const qref_tensor *linear_tensors, size_t linear_count, const cJSON *quantization,
                                bool write_quantize_config, qc_quantize_outcome *outcome, qref_error *err)
{
    memset(outcome, 0, sizeof *outcome);
    out_path path;
    qref_status status = out_path_split(request->out_dir, &path, err);
    if (status != QREF_OK)
        return status;
    struct stat info;
    if (lstat(request->out_dir, &info) == 0) {
        if (!S_ISDIR(info.st_mode))
            status = qref_error_set(err, QREF_ERR_INVALID, "output path %s exists and is not a folder; --force "
                                    "replaces only an existing output folder", request->out_dir);
        else if (!request->force)
            status = error_exists(request->out_dir, err);
    }

    /* model.safetensors: the reference tensors less every linear's .weight, plus linear_tensors */
    const qref_tensor_set *tensors = qref_snapshot_tensors(model->snapshot);
    qref_safetensors_entry *entries = calloc(tensors->count + linear_count + 1, sizeof *entries);
    if (status == QREF_OK && entries == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu tensor entries", request->out_dir,
                                tensors->count + linear_count);
    size_t count = 0;
    for (size_t k = 0; status == QREF_OK && k < tensors->count; k++) {
        bool replaced = false;
        for (int layer = 0; layer < model->config.num_hidden_layers && !replaced; layer++) {
            for (int index = 0; index < QREF_LLAMA_LINEAR_COUNT && !replaced; index++) {
                char name[300], suffix[64];
                snprintf(suffix, sizeof suffix, "%s.weight", qref_llama_linear_names[index]);
                qref_llama_layer_tensor_name(name, sizeof name, layer, suffix);
                replaced = strcmp(name, tensors->items[k].name) == 0;
            }
        }
        if (!replaced)
            entry_from_tensor(&entries[count++], &tensors->items[k]);
    }
    for (size_t k = 0; status == QREF_OK && k < linear_count; k++)
        entry_from_tensor(&entries[count++], &linear_tensors[k]);
    if (status == QREF_OK)
        qsort(entries, count, sizeof *entries, compare_entries);

    /* every file into a fresh temporary folder, then rename it into place */
    char *folder = NULL, *weights_path = NULL;
    created_folders created = {0};
    if (status == QREF_OK)
        status = make_parent_folders(path.parent, &created, err);
    if (status == QREF_OK)
        status = make_sibling_folder(&path, "tmp", &folder, err);
    if (status == QREF_OK && chmod(folder, 0755) != 0)
        status = qref_error_set(err, QREF_ERR_IO, "%s: cannot set permissions: %s", folder, strerror(errno));
    if (status == QREF_OK && (weights_path = path_join(folder, "model.safetensors")) == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", folder);
    if (status == QREF_OK) {
        const qref_safetensors_meta metadata[] = {{"format", "pt"}};
        status = qref_safetensors_write(weights_path, entries, count, metadata, 1, err);
    }
    if (status == QREF_OK)
        status = write_configs(folder, model, quantization, err);
    if (status == QREF_OK && !write_quantize_config) {
        char *standalone = path_join(folder, "quantize_config.json");
        if (standalone == NULL || remove(standalone) != 0)
            status = qref_error_set(err, QREF_ERR_IO, "%s: cannot remove quantize_config.json", folder);
        free(standalone);
    }
    if (status == QREF_OK)
        status = copy_reference_files(folder, model, err);
    if (status == QREF_OK)
        status = request->force ? publish_replacing(folder, request->out_dir, &path, outcome, err)
                                : publish_new(folder, request->out_dir, err);
    if (status != QREF_OK && folder != NULL)
        remove_tree(folder);
    created_folders_free(&created, status != QREF_OK);
    if (status == QREF_OK) {
        outcome->layers = model->config.num_hidden_layers;
        outcome->linears = outcome->layers * QREF_LLAMA_LINEAR_COUNT;
    }
    free(weights_path);
    free(folder);
    free(entries);
    out_path_free(&path);
    return status;
}

/*
 * Writes a full-precision snapshot folder (fake-quantized weights need no quantization
 * config) with the folder handling of qc_quantize_publish.
 */
qref_status qc_quantize_publish_snapshot(const qc_quantize_request *request, const qc_model *model,
                                         const qref_tensor *tensors, size_t tensor_count, const cJSON *config,
                                         qc_quantize_outcome *outcome, qref_error *err)
{
    memset(outcome, 0, sizeof *outcome);
    out_path path;
    qref_status status = out_path_split(request->out_dir, &path, err);
    if (status != QREF_OK)
        return status;
    struct stat info;
    if (lstat(request->out_dir, &info) == 0) {
        if (!S_ISDIR(info.st_mode))
            status = qref_error_set(err, QREF_ERR_INVALID, "output path %s exists and is not a folder; --force "
                                    "replaces only an existing output folder", request->out_dir);
        else if (!request->force)
            status = error_exists(request->out_dir, err);
    }

    /* model.safetensors holds exactly the given tensors, in name order */
    qref_safetensors_entry *entries = calloc(tensor_count + 1, sizeof *entries);
    if (status == QREF_OK && entries == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu tensor entries", request->out_dir,
                                tensor_count);
    for (size_t k = 0; status == QREF_OK && k < tensor_count; k++)
        entry_from_tensor(&entries[k], &tensors[k]);
    if (status == QREF_OK)
        qsort(entries, tensor_count, sizeof *entries, compare_entries);
    char *text = status == QREF_OK ? print_json(config, 0) : NULL;
    if (status == QREF_OK && text == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot format config.json", request->out_dir);

    /* every file into a fresh temporary folder, then rename it into place */
    char *folder = NULL, *weights_path = NULL, *config_text = NULL;
    created_folders created = {0};
    if (status == QREF_OK)
        status = make_parent_folders(path.parent, &created, err);
    if (status == QREF_OK)
        status = make_sibling_folder(&path, "tmp", &folder, err);
    if (status == QREF_OK && chmod(folder, 0755) != 0)
        status = qref_error_set(err, QREF_ERR_IO, "%s: cannot set permissions: %s", folder, strerror(errno));
    if (status == QREF_OK && (weights_path = path_join(folder, "model.safetensors")) == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", folder);
    if (status == QREF_OK) {
        const qref_safetensors_meta metadata[] = {{"format", "pt"}};
        status = qref_safetensors_write(weights_path, entries, tensor_count, metadata, 1, err);
    }
    if (status == QREF_OK && (config_text = malloc(strlen(text) + 2)) == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", folder);
    if (status == QREF_OK) {
        snprintf(config_text, strlen(text) + 2, "%s\n", text);
        status = write_text(folder, "config.json", config_text, err);
    }
    if (status == QREF_OK)
        status = copy_reference_files(folder, model, err);
    if (status == QREF_OK)
        status = request->force ? publish_replacing(folder, request->out_dir, &path, outcome, err)
                                : publish_new(folder, request->out_dir, err);
    if (status != QREF_OK && folder != NULL)
        remove_tree(folder);
    created_folders_free(&created, status != QREF_OK);
    if (status == QREF_OK) {
        outcome->layers = model->config.num_hidden_layers;
        outcome->linears = outcome->layers * QREF_LLAMA_LINEAR_COUNT;
    }
    free(config_text);
    free(text);
    free(weights_path);
    free(folder);
    free(entries);
    out_path_free(&path);
    return status;
}
