/*
 * Hugging Face snapshots: gather the files, then find and cross-check the weights.
 *
 * Step 1 collects the snapshot's files (a folder's top-level regular files, one .safetensors
 * file, or an archive's top-level files). Step 2 picks the weights as transformers'
 * from_pretrained does: model.safetensors when present, else the shards named by
 * model.safetensors.index.json (huggingface_hub writes that index: {"metadata":
 * {"total_size": ...}, "weight_map": {tensor: shard}}). Step 3 merges the tensors of all
 * weight files into one set sorted by name.
 */
#include "io/qref_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/qref_checked.h"
#include "io/qref_json.h"
#include "io/qref_safetensors.h"

#define SINGLE_WEIGHTS_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"
/* Nesting allowed in an index file; its metadata object may hold nested values. */
#define INDEX_MAX_DEPTH 16

struct qref_snapshot {
    char *path;
    qref_snapshot_file *files; /* sorted by name */
    size_t file_count;
    qref_safetensors *weights; /* parsed weight files, each owning its tensors' file names */
    size_t weight_count;
    qref_tensor_set tensors;   /* merged, sorted by name; names owned, data in the blobs */
    qref_archive_info archive; /* what the archive reader found; zero for a folder or file */
};

typedef enum snapshot_kind {
    SNAPSHOT_KIND_FOLDER,
    SNAPSHOT_KIND_SAFETENSORS,
    SNAPSHOT_KIND_ARCHIVE,
} snapshot_kind;

/* Matched without ASCII case; keep in step with the list in io/qref_snapshot.h. */
static const char *const archive_suffixes[] = {
    ".tar", ".tar.gz", ".tgz", ".zip", ".tar.xz", ".txz", ".tar.zst", ".tzst",
};

/* True when s ends with suffix, compared without ASCII case. */
static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static char *join_path(const char *folder, const char *separator, const char *name)
{
    size_t n = strlen(folder) + strlen(separator) + strlen(name) + 1;
    char *joined = malloc(n);
    if (joined != NULL)
        snprintf(joined, n, "%s%s%s", folder, separator, name);
    return joined;
}

/* ---- Accessors ------------------------------------------------------------------------- */

const char *qref_snapshot_path(const qref_snapshot *snapshot)
{
    return snapshot->path;
}

size_t qref_snapshot_file_count(const qref_snapshot *snapshot)
{
    return snapshot->file_count;
}

const qref_snapshot_file *qref_snapshot_file_at(const qref_snapshot *snapshot, size_t index)
{
    return index < snapshot->file_count ? &snapshot->files[index] : NULL;
}

const qref_blob *qref_snapshot_find_file(const qref_snapshot *snapshot, const char *name)
{
    size_t low = 0, high = snapshot->file_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int order = strcmp(snapshot->files[mid].name, name);
        if (order == 0)
            return &snapshot->files[mid].blob;
        if (order < 0)
            low = mid + 1;
        else
            high = mid;
    }
    return NULL;
}

const qref_tensor_set *qref_snapshot_tensors(const qref_snapshot *snapshot)
{
    return &snapshot->tensors;
}

void qref_snapshot_free(qref_snapshot *snapshot)
{
    if (snapshot == NULL)
        return;
    qref_tensor_set_free(&snapshot->tensors);
    for (size_t i = 0; i < snapshot->weight_count; i++)
        qref_safetensors_free(&snapshot->weights[i]);
    free(snapshot->weights);
    for (size_t i = 0; i < snapshot->file_count; i++) {
        free(snapshot->files[i].name);
        qref_blob_free(&snapshot->files[i].blob);
    }
    free(snapshot->files);
    free(snapshot->path);
    free(snapshot);
}

/* ---- Step 1: files --------------------------------------------------------------------- */

static int compare_files(const void *a, const void *b)
{
    return strcmp(((const qref_snapshot_file *)a)->name, ((const qref_snapshot_file *)b)->name);
}

static qref_status add_file(qref_snapshot *snapshot, size_t *capacity, const char *name, qref_blob *blob,
                            qref_error *err)
{
    if (snapshot->file_count == *capacity) {
        size_t grown_capacity = *capacity ? *capacity * 2 : 16;
        qref_snapshot_file *grown = realloc(snapshot->files, grown_capacity * sizeof *grown);
        if (grown == NULL) {
            qref_blob_free(blob);
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
        }
        snapshot->files = grown;
        *capacity = grown_capacity;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        qref_blob_free(blob);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
    }
    snapshot->files[snapshot->file_count++] = (qref_snapshot_file){copy, *blob};
    return QREF_OK;
}

/* Names a file type other than a regular file or folder, for messages. */
static const char *file_type_name(mode_t mode)
{
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    return "not a regular file";
}

/* True for the names a snapshot's own files have: *.json, *.safetensors and *.model. */
static bool snapshot_file_name(const char *name)
{
    return has_suffix(name, ".json") || has_suffix(name, ".safetensors") || has_suffix(name, ".model");
}

/*
 * Maps the regular files directly in the folder. Symbolic links to regular files are
 * followed, as the Hugging Face cache links snapshot files to its blob store; subfolders and
 * other file types are skipped, except that a snapshot file name (*.json, *.safetensors,
 * *.model) on a device, FIFO or socket is an error.
 */
static qref_status read_folder(qref_snapshot *snapshot, size_t max_files, qref_error *err)
{
    DIR *dir = opendir(snapshot->path);
    if (dir == NULL)
        return qref_error_set(err, QREF_ERR_IO, "%s: cannot open the folder: %s", snapshot->path, strerror(errno));
    size_t capacity = 0;
    qref_status status = QREF_OK;
    struct dirent *dirent;
    while (status == QREF_OK && (errno = 0, dirent = readdir(dir)) != NULL) {
        const char *name = dirent->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        char *full = join_path(snapshot->path, "/", name);
        if (full == NULL) {
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
            break;
        }
        struct stat st;
        if (stat(full, &st) != 0) {
            status = qref_error_set(err, QREF_ERR_IO, "%s: cannot stat (a dangling symbolic link?): %s", full,
                                    strerror(errno));
        } else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && snapshot_file_name(name)) {
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: %s, expected a regular file", full,
                                    file_type_name(st.st_mode));
        } else if (S_ISREG(st.st_mode)) {
            if (snapshot->file_count >= max_files) {
                status = qref_error_set(err, QREF_ERR_INVALID, "%s: the folder holds more than %zu files",
                                        snapshot->path, max_files);
            } else {
                qref_blob blob;
                status = qref_blob_map_file(full, &blob, err);
                if (status == QREF_OK)
                    status = add_file(snapshot, &capacity, name, &blob, err);
            }
        }
        free(full);
    }
    if (status == QREF_OK && errno != 0)
        status = qref_error_set(err, QREF_ERR_IO, "%s: cannot list the folder: %s", snapshot->path, strerror(errno));
    closedir(dir);
    return status;
}

static qref_status read_single_file(qref_snapshot *snapshot, qref_error *err)
{
    qref_blob blob;
    qref_status status = qref_blob_map_file(snapshot->path, &blob, err);
    if (status != QREF_OK)
        return status;
    const char *slash = strrchr(snapshot->path, '/');
    size_t capacity = 0;
    return add_file(snapshot, &capacity, slash != NULL ? slash + 1 : snapshot->path, &blob, err);
}

static qref_status read_archive(qref_snapshot *snapshot, const qref_archive_limits *limits, qref_error *err)
{
    qref_archive_file *files;
    size_t count;
    qref_status status =
        qref_archive_read_files_info(snapshot->path, limits, &files, &count, &snapshot->archive, err);
    if (status != QREF_OK)
        return status;
    /* qref_archive_file and qref_snapshot_file hold the same fields; move each one over. */
    snapshot->files = calloc(count ? count : 1, sizeof *snapshot->files);
    if (snapshot->files == NULL) {
        qref_archive_files_free(files, count);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
    }
    for (size_t i = 0; i < count; i++)
        snapshot->files[i] = (qref_snapshot_file){files[i].name, files[i].blob};
    snapshot->file_count = count;
    free(files);
    return QREF_OK;
}

/* ---- Step 2: weights ------------------------------------------------------------------- */

static qref_status merge_tensors(qref_snapshot *snapshot, qref_error *err);

/* Parses the named snapshot file as safetensors into the next slot of snapshot->weights. */
static qref_status parse_weight_file(qref_snapshot *snapshot, snapshot_kind kind, const char *name,
                                     qref_error *err)
{
    const qref_blob *blob = qref_snapshot_find_file(snapshot, name);
    if (blob == NULL)
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: %s vanished", snapshot->path, name);
    char *display = kind == SNAPSHOT_KIND_SAFETENSORS ? strdup(snapshot->path)
                    : kind == SNAPSHOT_KIND_ARCHIVE  ? join_path(snapshot->path, ":", name)
                                                     : join_path(snapshot->path, "/", name);
    if (display == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
    qref_status status =
        qref_safetensors_parse(display, blob->data, blob->size, &snapshot->weights[snapshot->weight_count], err);
    free(display);
    if (status == QREF_OK)
        snapshot->weight_count++;
    return status;
}

/* One weight_map entry; both strings point into the index's cJSON tree. */
typedef struct weight_map_entry {
    const char *tensor;
    const char *shard;
    bool found;
} weight_map_entry;

typedef struct shard_index {
    char *display;
    cJSON *root;
    weight_map_entry *entries; /* sorted by tensor name */
    size_t entry_count;
    const char **shards;       /* distinct shard names, sorted */
    size_t shard_count;
    bool has_total_size;
    int64_t total_size;
} shard_index;

static void shard_index_free(shard_index *index)
{
    free(index->entries);
    free(index->shards);
    cJSON_Delete(index->root);
    free(index->display);
}

static int compare_map_entries(const void *a, const void *b)
{
    return strcmp(((const weight_map_entry *)a)->tensor, ((const weight_map_entry *)b)->tensor);
}

static int compare_string_pointers(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns why a shard name is unsafe or malformed, or NULL when it is a plain file name. */
static const char *shard_name_problem(const char *name)
{
    if (name[0] == '\0')
        return "it is empty";
    if (strstr(name, "..") != NULL || strchr(name, '/') != NULL || strchr(name, '\\') != NULL)
        return "a shard must be a plain file name in the snapshot folder, without \"/\", \"\\\" or \"..\"";
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return "it contains a control character";
    }
    return NULL;
}

/* Parses model.safetensors.index.json into index (strict JSON, safe shard names). */
static qref_status parse_index(const qref_snapshot *snapshot, snapshot_kind kind, shard_index *index,
                               qref_error *err)
{
    const qref_blob *blob = qref_snapshot_find_file(snapshot, INDEX_NAME);
    index->display = join_path(snapshot->path, kind == SNAPSHOT_KIND_ARCHIVE ? ":" : "/", INDEX_NAME);
    if (index->display == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
    const char *display = index->display;
    qref_status status =
        qref_json_parse(display, (const char *)blob->data, blob->size, INDEX_MAX_DEPTH, &index->root, err);
    if (status != QREF_OK)
        return status;
    if (!cJSON_IsObject(index->root))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the index is %s, expected a JSON object", display,
                              qref_json_type_name(index->root));

    /* metadata.total_size, when present, is checked against the shards later. */
    const cJSON *metadata = cJSON_GetObjectItemCaseSensitive(index->root, "metadata");
    if (metadata != NULL && !cJSON_IsObject(metadata))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: \"metadata\" is %s, expected an object", display,
                              qref_json_type_name(metadata));
    if (metadata != NULL && cJSON_GetObjectItemCaseSensitive(metadata, "total_size") != NULL) {
        index->has_total_size = true;
        status = qref_json_get_int(display, metadata, "total_size", true, 0, 0, INT64_MAX, &index->total_size, err);
        if (status != QREF_OK)
            return status;
    }

    const cJSON *map = cJSON_GetObjectItemCaseSensitive(index->root, "weight_map");
    if (map == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: missing required key \"weight_map\"", display);
    if (!cJSON_IsObject(map))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: \"weight_map\" is %s, expected an object", display,
                              qref_json_type_name(map));
    size_t count = (size_t)cJSON_GetArraySize(map);
    index->entries = calloc(count ? count : 1, sizeof *index->entries);
    index->shards = calloc(count ? count : 1, sizeof *index->shards);
    if (index->entries == NULL || index->shards == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);

    for (const cJSON *item = map->child; item != NULL; item = item->next) {
        char found[96];
        if (!cJSON_IsString(item))
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: weight_map entry for tensor \"%.200s\": found %s, expected a shard file name",
                                  display, item->string, qref_json_describe(item, found, sizeof found));
        const char *problem = shard_name_problem(item->valuestring);
        if (problem != NULL)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: weight_map names shard \"%.200s\" for tensor \"%.200s\": %s", display,
                                  item->valuestring, item->string, problem);
        index->entries[index->entry_count++] = (weight_map_entry){item->string, item->valuestring, false};
        index->shards[index->shard_count++] = item->valuestring;
    }
    if (index->entry_count == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: weight_map is empty, expected at least one tensor", display);

    /* Sort the entries for lookups and reduce the shard list to distinct names. */
    qsort(index->entries, index->entry_count, sizeof *index->entries, compare_map_entries);
    qsort(index->shards, index->shard_count, sizeof *index->shards, compare_string_pointers);
    size_t distinct = 0;
    for (size_t i = 0; i < index->shard_count; i++) {
        if (distinct == 0 || strcmp(index->shards[distinct - 1], index->shards[i]) != 0)
            index->shards[distinct++] = index->shards[i];
    }
    index->shard_count = distinct;
    return QREF_OK;
}

static weight_map_entry *find_map_entry(shard_index *index, const char *tensor)
{
    weight_map_entry key = {tensor, NULL, false};
    return bsearch(&key, index->entries, index->entry_count, sizeof key, compare_map_entries);
}

/* Returns the first tensor that weight_map assigns to shard, for messages. */
static const char *first_tensor_of_shard(const shard_index *index, const char *shard)
{
    for (size_t i = 0; i < index->entry_count; i++) {
        if (strcmp(index->entries[i].shard, shard) == 0)
            return index->entries[i].tensor;
    }
    return "?";
}

/* Checks that weight_map and the shard headers describe the same tensors, each exactly once. */
static qref_status check_index_against_shards(const qref_snapshot *snapshot, shard_index *index, qref_error *err)
{
    const char *display = index->display;
    uint64_t total = 0;
    for (size_t s = 0; s < snapshot->weight_count; s++) {
        const qref_safetensors *shard = &snapshot->weights[s];
        const char *shard_name = index->shards[s];
        for (size_t t = 0; t < shard->tensors.count; t++) {
            const qref_tensor *tensor = &shard->tensors.items[t];
            weight_map_entry *entry = find_map_entry(index, tensor->name);
            if (entry == NULL)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: tensor \"%.200s\" stored in shard %s is missing from weight_map", display,
                                      tensor->name, shard_name);
            if (strcmp(entry->shard, shard_name) != 0)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: weight_map puts tensor \"%.200s\" in shard %s, but it is stored in shard %s",
                                      display, tensor->name, entry->shard, shard_name);
            entry->found = true;
            total += tensor->nbytes; /* cannot overflow: each shard's spans tile its own file */
        }
    }
    for (size_t i = 0; i < index->entry_count; i++) {
        if (!index->entries[i].found)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: weight_map puts tensor \"%.200s\" in shard %s, but that shard has no such tensor",
                                  display, index->entries[i].tensor, index->entries[i].shard);
    }
    if (index->has_total_size && (uint64_t)index->total_size != total)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: metadata.total_size is %" PRId64 ", but the shards' tensors hold %" PRIu64 " bytes",
                              display, index->total_size, total);
    return QREF_OK;
}

/* True for names of the form PREFIX-NNNNN-of-NNNNN.safetensors, as huggingface_hub names shards. */
static bool is_shard_file_name(const char *name)
{
    static const char pattern[] = "-00000-of-00000.safetensors";
    size_t n = strlen(name), m = sizeof pattern - 1;
    if (n <= m)
        return false;
    const char *tail = name + n - m;
    for (size_t i = 0; i < m; i++) {
        bool digit = pattern[i] == '0';
        if (digit ? (tail[i] < '0' || tail[i] > '9') : tail[i] != pattern[i])
            return false;
    }
    return true;
}

/* Rejects a shard file of the snapshot that weight_map does not name, since its tensors would be
 * silently left out of the model. */
static qref_status check_unlisted_shards(const qref_snapshot *snapshot, const shard_index *index, qref_error *err)
{
    for (size_t i = 0; i < snapshot->file_count; i++) {
        const char *name = snapshot->files[i].name;
        if (!is_shard_file_name(name))
            continue;
        if (bsearch(&name, index->shards, index->shard_count, sizeof *index->shards, compare_string_pointers) == NULL)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: shard %s is in the snapshot, but weight_map names none of its tensors "
                                  "(expected every shard file to be listed)",
                                  index->display, name);
    }
    return QREF_OK;
}

static qref_status load_sharded_weights(qref_snapshot *snapshot, snapshot_kind kind, qref_error *err)
{
    shard_index index = {0};
    qref_status status = parse_index(snapshot, kind, &index, err);
    if (status == QREF_OK)
        status = check_unlisted_shards(snapshot, &index, err);
    if (status == QREF_OK) {
        snapshot->weights = calloc(index.shard_count, sizeof *snapshot->weights);
        if (snapshot->weights == NULL)
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
    }

    /* Every shard that weight_map names must exist and parse; weights[s] is shards[s]. */
    for (size_t s = 0; s < index.shard_count && status == QREF_OK; s++) {
        if (qref_snapshot_find_file(snapshot, index.shards[s]) == NULL) {
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: shard %s (named in weight_map for tensor \"%.200s\") is not in the snapshot",
                                    index.display, index.shards[s], first_tensor_of_shard(&index, index.shards[s]));
            break;
        }
        status = parse_weight_file(snapshot, kind, index.shards[s], err);
    }
    /* A tensor stored in two shards is reported as such before weight_map is compared. */
    if (status == QREF_OK)
        status = merge_tensors(snapshot, err);
    if (status == QREF_OK)
        status = check_index_against_shards(snapshot, &index, err);
    shard_index_free(&index);
    return status;
}

/* Reports that no weight file was found, naming the archive's top-level folders when they are the likely cause. */
static qref_status report_missing_weights(const qref_snapshot *snapshot, snapshot_kind kind, qref_error *err)
{
    const qref_archive_info *archive = &snapshot->archive;
    if (kind == SNAPSHOT_KIND_ARCHIVE && !archive->top_folder_stripped && archive->top_folder_count >= 2)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: no weights at the top level of the archive, which contains %zu top-level folders "
                              "(\"%s\", \"%s\"%s); a snapshot archive must contain one snapshot, either at its "
                              "top level or in a single top-level folder",
                              snapshot->path, archive->top_folder_count, archive->top_folders[0],
                              archive->top_folders[1], archive->top_folder_count > 2 ? ", ..." : "");
    if (kind == SNAPSHOT_KIND_ARCHIVE && !archive->top_folder_stripped && archive->top_folder_count == 1)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: no weights: neither %s nor %s is at the top level of the archive; the files in "
                              "its top-level folder \"%s\" are not read, because the archive has top-level files "
                              "too (expected one snapshot, either at the top level or in a single folder)",
                              snapshot->path, SINGLE_WEIGHTS_NAME, INDEX_NAME, archive->top_folders[0]);
    return qref_error_set(err, QREF_ERR_INVALID, "%s: no weights: neither %s nor %s is in the snapshot",
                          snapshot->path, SINGLE_WEIGHTS_NAME, INDEX_NAME);
}

static qref_status load_weights(qref_snapshot *snapshot, snapshot_kind kind, qref_error *err)
{
    if (kind == SNAPSHOT_KIND_SAFETENSORS) {
        snapshot->weights = calloc(1, sizeof *snapshot->weights);
        if (snapshot->weights == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
        qref_status status = parse_weight_file(snapshot, kind, snapshot->files[0].name, err);
        return status == QREF_OK ? merge_tensors(snapshot, err) : status;
    }
    /* NOTE: as in transformers, model.safetensors wins when an index is present too; the index is then not read. */
    if (qref_snapshot_find_file(snapshot, SINGLE_WEIGHTS_NAME) != NULL) {
        snapshot->weights = calloc(1, sizeof *snapshot->weights);
        if (snapshot->weights == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
        qref_status status = parse_weight_file(snapshot, kind, SINGLE_WEIGHTS_NAME, err);
        return status == QREF_OK ? merge_tensors(snapshot, err) : status;
    }
    if (qref_snapshot_find_file(snapshot, INDEX_NAME) != NULL)
        return load_sharded_weights(snapshot, kind, err);
    if (qref_snapshot_find_file(snapshot, "pytorch_model.bin") != NULL ||
        qref_snapshot_find_file(snapshot, "pytorch_model.bin.index.json") != NULL)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: the weights are a pickle checkpoint (pytorch_model.bin), which is not read; "
                              "convert it to safetensors",
                              snapshot->path);
    return report_missing_weights(snapshot, kind, err);
}

/* ---- Step 3: one tensor set ------------------------------------------------------------ */

static qref_status merge_tensors(qref_snapshot *snapshot, qref_error *err)
{
    size_t total = 0;
    for (size_t s = 0; s < snapshot->weight_count; s++)
        total += snapshot->weights[s].tensors.count;
    if (total == 0)
        return QREF_OK;
    snapshot->tensors.items = calloc(total, sizeof *snapshot->tensors.items);
    if (snapshot->tensors.items == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu tensors", snapshot->path, total);
    for (size_t s = 0; s < snapshot->weight_count; s++) {
        const qref_tensor_set *set = &snapshot->weights[s].tensors;
        for (size_t t = 0; t < set->count; t++) {
            qref_tensor *copy = &snapshot->tensors.items[snapshot->tensors.count];
            *copy = set->items[t];
            copy->name = strdup(set->items[t].name);
            if (copy->name == NULL)
                return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", snapshot->path);
            snapshot->tensors.count++;
        }
    }
    long duplicate = qref_tensor_set_sort(&snapshot->tensors);
    if (duplicate >= 0) {
        const qref_tensor *a = &snapshot->tensors.items[duplicate - 1];
        const qref_tensor *b = &snapshot->tensors.items[duplicate];
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%.200s\" is stored twice, in %s and in %s",
                              snapshot->path, b->name, a->file, b->file);
    }
    return QREF_OK;
}

/* ---- Opening --------------------------------------------------------------------------- */

static qref_status classify_path(const char *path, snapshot_kind *kind, qref_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return qref_error_set(err, QREF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        *kind = SNAPSHOT_KIND_FOLDER;
        return QREF_OK;
    }
    if (!S_ISREG(st.st_mode))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: not a folder or a regular file", path);
    if (has_suffix(path, ".safetensors")) {
        *kind = SNAPSHOT_KIND_SAFETENSORS;
        return QREF_OK;
    }
    for (size_t i = 0; i < sizeof archive_suffixes / sizeof archive_suffixes[0]; i++) {
        if (has_suffix(path, archive_suffixes[i])) {
            *kind = SNAPSHOT_KIND_ARCHIVE;
            return QREF_OK;
        }
    }
    return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                          "%s: expected a snapshot folder, a .safetensors file or an archive (.tar, .tar.gz, .tgz, "
                          ".zip, .tar.xz, .txz, .tar.zst or .tzst, in any letter case)",
                          path);
}

qref_status qref_snapshot_open_with_limits(const char *path, const qref_archive_limits *limits,
                                           qref_snapshot **out, qref_error *err)
{
    *out = NULL;
    qref_archive_limits defaults;
    if (limits == NULL) {
        qref_archive_limits_init(&defaults);
        limits = &defaults;
    }
    snapshot_kind kind;
    qref_status status = classify_path(path, &kind, err);
    if (status != QREF_OK)
        return status;

    qref_snapshot *snapshot = calloc(1, sizeof *snapshot);
    if (snapshot == NULL || (snapshot->path = strdup(path)) == NULL) {
        free(snapshot);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    }

    /* Step 1: the files, sorted by name. */
    if (kind == SNAPSHOT_KIND_FOLDER)
        status = read_folder(snapshot, limits->max_entries, err);
    else if (kind == SNAPSHOT_KIND_SAFETENSORS)
        status = read_single_file(snapshot, err);
    else
        status = read_archive(snapshot, limits, err);
    if (status == QREF_OK && snapshot->file_count > 1)
        qsort(snapshot->files, snapshot->file_count, sizeof *snapshot->files, compare_files);

    /* Steps 2-3: the weights, merged into one tensor set. */
    if (status == QREF_OK)
        status = load_weights(snapshot, kind, err);
    if (status != QREF_OK) {
        qref_snapshot_free(snapshot);
        return status;
    }
    *out = snapshot;
    return QREF_OK;
}

qref_status qref_snapshot_open(const char *path, qref_snapshot **out, qref_error *err)
{
    return qref_snapshot_open_with_limits(path, NULL, out, err);
}
