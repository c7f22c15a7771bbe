/*
 * Snapshots: folders (with Hugging Face cache symlinks), single files, sharded weights with
 * model.safetensors.index.json, and archives built here with libarchive's writer.
 *
 * The stories260k fixture folder is the reference: every other way of packing it (tar, tar.gz,
 * zip, shards) must give the same files and the same tensor bytes. Each malformed snapshot or
 * archive checks the exact status and the rule named in the message.
 */
#include "test_support.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/qref_json.h"
#include "io/qref_safetensors.h"
#include "io/qref_snapshot.h"

#define STORIES "models/stories260k"

static const char *const stories_files[] = {"LICENSE", "config.json", "model.safetensors", "tokenizer.model"};
#define STORIES_FILE_COUNT (sizeof stories_files / sizeof stories_files[0])

static qref_snapshot *open_ok(const char *path)
{
    qref_snapshot *snapshot = NULL;
    qref_error err = {0};
    qref_status status = qref_snapshot_open(path, &snapshot, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    assert_non_null(snapshot);
    return snapshot;
}

static void assert_open_fails(const char *path, qref_status expected, const char *phrase)
{
    qref_snapshot *snapshot = NULL;
    qref_error err = {0};
    test_assert_error(qref_snapshot_open(path, &snapshot, &err), &err, expected, phrase);
    assert_null(snapshot);
}

/* Asserts that two tensor sets hold the same names, dtypes, shapes and bytes. */
static void assert_same_tensors(const qref_tensor_set *a, const qref_tensor_set *b)
{
    assert_int_equal(a->count, b->count);
    for (size_t i = 0; i < a->count; i++) {
        const qref_tensor *x = &a->items[i];
        const qref_tensor *y = &b->items[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->ndim, y->ndim);
        for (int d = 0; d < x->ndim; d++)
            assert_int_equal(x->shape[d], y->shape[d]);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
}

/* Asserts that snapshot has exactly the stories260k files, byte for byte. */
static void assert_stories_files(const qref_snapshot *snapshot, const qref_snapshot *folder)
{
    assert_int_equal(qref_snapshot_file_count(snapshot), STORIES_FILE_COUNT);
    for (size_t i = 0; i < STORIES_FILE_COUNT; i++) {
        const qref_snapshot_file *file = qref_snapshot_file_at(snapshot, i);
        assert_string_equal(file->name, stories_files[i]);
        const qref_blob *reference = qref_snapshot_find_file(folder, stories_files[i]);
        assert_non_null(reference);
        assert_int_equal(file->blob.size, reference->size);
        assert_memory_equal(file->blob.data, reference->data, reference->size);
    }
}

static void make_folder(const char *name)
{
    char command[4200];
    snprintf(command, sizeof command, "rm -rf '%s'", test_tmp_path(name));
    assert_int_equal(system(command), 0);
    assert_int_equal(mkdir(test_tmp_path(name), 0755), 0);
}

static char *tmp_file_path(const char *folder, const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_tmp_path(folder), name);
    return path;
}

/* ---- Folders and single files ------------------------------------------------------------ */

static void snapshot_folder_stories260k(void **state)
{
    (void)state;
    qref_snapshot *snapshot = open_ok(test_fixture_path(STORIES));
    assert_stories_files(snapshot, snapshot);
    assert_string_equal(qref_snapshot_path(snapshot), test_fixture_path(STORIES));
    assert_null(qref_snapshot_find_file(snapshot, "missing.json"));
    assert_null(qref_snapshot_file_at(snapshot, STORIES_FILE_COUNT));

    /* 5 layers x 9 tensors, the embedding and the final norm; lm_head is tied. */
    const qref_tensor_set *tensors = qref_snapshot_tensors(snapshot);
    assert_int_equal(tensors->count, 47);
    for (size_t i = 1; i < tensors->count; i++)
        assert_true(strcmp(tensors->items[i - 1].name, tensors->items[i].name) < 0);
    const qref_tensor *embed = qref_tensor_set_find(tensors, "model.embed_tokens.weight");
    assert_non_null(embed);
    assert_int_equal(embed->shape[0], 512);
    assert_int_equal(embed->shape[1], 64);
    assert_non_null(strstr(embed->file, "stories260k/model.safetensors"));
    qref_snapshot_free(snapshot);
}

static void snapshot_single_safetensors_file(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    qref_snapshot *single = open_ok(test_fixture_path(STORIES "/model.safetensors"));
    assert_int_equal(qref_snapshot_file_count(single), 1);
    assert_string_equal(qref_snapshot_file_at(single, 0)->name, "model.safetensors");
    assert_same_tensors(qref_snapshot_tensors(single), qref_snapshot_tensors(folder));
    qref_snapshot_free(single);
    qref_snapshot_free(folder);
}

/* The Hugging Face cache: snapshot files are symlinks into a blob store; subfolders are ignored. */
static void snapshot_folder_follows_symlinks(void **state)
{
    (void)state;
    make_folder("hf_cache");
    for (size_t i = 0; i < STORIES_FILE_COUNT; i++) {
        char target[4096];
        snprintf(target, sizeof target, "%s/%s", test_fixture_path(STORIES), stories_files[i]);
        assert_int_equal(symlink(target, tmp_file_path("hf_cache", stories_files[i])), 0);
    }
    assert_int_equal(mkdir(tmp_file_path("hf_cache", "original"), 0755), 0);
    test_write_file(tmp_file_path("hf_cache", "original/params.json"), "{}", 2);

    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    qref_snapshot *linked = open_ok(test_tmp_path("hf_cache"));
    assert_stories_files(linked, folder);
    assert_same_tensors(qref_snapshot_tensors(linked), qref_snapshot_tensors(folder));
    qref_snapshot_free(linked);
    qref_snapshot_free(folder);

    /* A dangling link (an interrupted download) is an error, not a silently missing file. */
    assert_int_equal(symlink("/nonexistent/blob", tmp_file_path("hf_cache", "tokenizer.json")), 0);
    assert_open_fails(test_tmp_path("hf_cache"), QREF_ERR_IO, "dangling symbolic link");
}

static void snapshot_without_weights(void **state)
{
    (void)state;
    make_folder("no_weights");
    test_write_file(tmp_file_path("no_weights", "config.json"), "{}", 2);
    assert_open_fails(test_tmp_path("no_weights"), QREF_ERR_INVALID,
                      "no weights: neither model.safetensors nor model.safetensors.index.json is in the snapshot");
    test_write_file(tmp_file_path("no_weights", "pytorch_model.bin"), "PK", 2);
    assert_open_fails(test_tmp_path("no_weights"), QREF_ERR_UNSUPPORTED, "pickle checkpoint");
    assert_open_fails(test_tmp_path("does_not_exist"), QREF_ERR_IO, "cannot open");
    test_write_file(tmp_file_path("no_weights", "notes.txt"), "x", 1);
    assert_open_fails(tmp_file_path("no_weights", "notes.txt"), QREF_ERR_UNSUPPORTED,
                      "expected a snapshot folder, a .safetensors file or an archive");
}

/* A snapshot file name on a device or a FIFO is an error that names the file type. */
static void snapshot_rejects_special_files(void **state)
{
    (void)state;
    make_folder("special_files");
    test_write_file(tmp_file_path("special_files", "config.json"), "{}", 2);
    assert_int_equal(symlink("/dev/zero", tmp_file_path("special_files", "model.safetensors")), 0);
    assert_open_fails(test_tmp_path("special_files"), QREF_ERR_INVALID,
                      "model.safetensors: a character device, expected a regular file");
    assert_int_equal(unlink(tmp_file_path("special_files", "model.safetensors")), 0);
    assert_int_equal(mkfifo(tmp_file_path("special_files", "model.safetensors"), 0600), 0);
    assert_open_fails(test_tmp_path("special_files"), QREF_ERR_INVALID,
                      "model.safetensors: a FIFO, expected a regular file");
}

/* ---- Shards -------------------------------------------------------------------------------- */

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

/* Writes tensors [begin, end) of set into folder/name with the safetensors writer. */
static void write_shard(const char *folder, const char *name, const qref_tensor_set *set, size_t begin, size_t end,
                        const qref_tensor *extra)
{
    size_t count = end - begin + (extra != NULL);
    qref_safetensors_entry *entries = calloc(count, sizeof *entries);
    assert_non_null(entries);
    for (size_t i = 0; i < count; i++) {
        const qref_tensor *t = i < end - begin ? &set->items[begin + i] : extra;
        entries[i].name = t->name;
        entries[i].dtype = t->dtype;
        entries[i].ndim = t->ndim;
        memcpy(entries[i].shape, t->shape, sizeof entries[i].shape);
        entries[i].data = t->data;
    }
    qref_safetensors_meta meta = {"format", "pt"};
    qref_error err = {0};
    assert_int_equal(qref_safetensors_write(tmp_file_path(folder, name), entries, count, &meta, 1, &err), QREF_OK);
    free(entries);
}

/* Builds the index huggingface_hub would write for a split at tensor `split`. */
static cJSON *build_index(const qref_tensor_set *set, size_t split)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *metadata = cJSON_AddObjectToObject(root, "metadata");
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    uint64_t total = 0;
    for (size_t i = 0; i < set->count; i++) {
        cJSON_AddStringToObject(map, set->items[i].name, i < split ? SHARD1 : SHARD2);
        total += set->items[i].nbytes;
    }
    cJSON_AddNumberToObject(metadata, "total_size", (double)total);
    return root;
}

static void write_index(const char *folder, cJSON *index)
{
    char *text = cJSON_Print(index);
    test_write_file(tmp_file_path(folder, "model.safetensors.index.json"), text, strlen(text));
    cJSON_free(text);
    cJSON_Delete(index);
}

/* A two-shard copy of stories260k in folder; extra (if any) is also stored in shard 2. */
static void make_sharded(const char *folder, const qref_tensor_set *set, const qref_tensor *extra)
{
    make_folder(folder);
    size_t split = set->count / 2;
    write_shard(folder, SHARD1, set, 0, split, NULL);
    write_shard(folder, SHARD2, set, split, set->count, extra);
    char target[4096];
    snprintf(target, sizeof target, "%s/config.json", test_fixture_path(STORIES));
    assert_int_equal(symlink(target, tmp_file_path(folder, "config.json")), 0);
}

static void snapshot_sharded_matches_folder(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    const qref_tensor_set *set = qref_snapshot_tensors(folder);
    make_sharded("sharded", set, NULL);
    write_index("sharded", build_index(set, set->count / 2));

    qref_snapshot *sharded = open_ok(test_tmp_path("sharded"));
    assert_int_equal(qref_snapshot_file_count(sharded), 4);
    assert_same_tensors(qref_snapshot_tensors(sharded), set);
    const qref_tensor *first = &qref_snapshot_tensors(sharded)->items[0];
    assert_non_null(strstr(first->file, SHARD1));
    const qref_tensor *last = &qref_snapshot_tensors(sharded)->items[set->count - 1];
    assert_non_null(strstr(last->file, SHARD2));
    qref_snapshot_free(sharded);
    qref_snapshot_free(folder);
}

static void snapshot_shard_index_mismatches(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    const qref_tensor_set *set = qref_snapshot_tensors(folder);
    size_t split = set->count / 2;
    const char *first = set->items[0].name;
    const char *last = set->items[set->count - 1].name;
    make_sharded("bad_shards", set, NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s", test_tmp_path("bad_shards"));
    char phrase[512];

    /* A tensor of shard 1 missing from weight_map. */
    cJSON *index = build_index(set, split);
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItem(index, "weight_map"), first);
    write_index("bad_shards", index);
    snprintf(phrase, sizeof phrase, "tensor \"%s\" stored in shard " SHARD1 " is missing from weight_map", first);
    assert_open_fails(path, QREF_ERR_INVALID, phrase);

    /* weight_map names a shard file the snapshot lacks. */
    index = build_index(set, split);
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItem(index, "weight_map"), last,
                                           cJSON_CreateString("model-00003-of-00003.safetensors"));
    write_index("bad_shards", index);
    assert_open_fails(path, QREF_ERR_INVALID, "shard model-00003-of-00003.safetensors (named in weight_map for tensor");

    /* A shard name that walks out of the folder. */
    index = build_index(set, split);
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItem(index, "weight_map"), last,
                                           cJSON_CreateString("../x.safetensors"));
    write_index("bad_shards", index);
    assert_open_fails(path, QREF_ERR_INVALID, "weight_map names shard \"../x.safetensors\"");
    assert_open_fails(path, QREF_ERR_INVALID, "must be a plain file name");

    /* weight_map and the shard headers disagree on where a tensor is. */
    index = build_index(set, split);
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItem(index, "weight_map"), first, cJSON_CreateString(SHARD2));
    write_index("bad_shards", index);
    snprintf(phrase, sizeof phrase,
             "weight_map puts tensor \"%s\" in shard " SHARD2 ", but it is stored in shard " SHARD1, first);
    assert_open_fails(path, QREF_ERR_INVALID, phrase);

    /* weight_map lists a tensor that no shard has. */
    index = build_index(set, split);
    cJSON_AddStringToObject(cJSON_GetObjectItem(index, "weight_map"), "lm_head.weight", SHARD2);
    write_index("bad_shards", index);
    assert_open_fails(path, QREF_ERR_INVALID,
                      "weight_map puts tensor \"lm_head.weight\" in shard " SHARD2 ", but that shard has no such tensor");

    /* metadata.total_size that is not the sum of the tensor sizes. */
    index = build_index(set, split);
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItem(index, "metadata"), "total_size",
                                           cJSON_CreateNumber(1040132));
    write_index("bad_shards", index);
    assert_open_fails(path, QREF_ERR_INVALID, "metadata.total_size is 1040132, but the shards' tensors hold 1040128 bytes");

    /* A repeated key in the index. */
    const char *duplicate = "{\"weight_map\": {\"a\": \"" SHARD1 "\", \"a\": \"" SHARD2 "\"}}";
    test_write_file(tmp_file_path("bad_shards", "model.safetensors.index.json"), duplicate, strlen(duplicate));
    assert_open_fails(path, QREF_ERR_INVALID, "duplicate key \"a\" at $.weight_map.a");

    /* An index without weight_map. */
    test_write_file(tmp_file_path("bad_shards", "model.safetensors.index.json"), "{\"metadata\": {}}", 16);
    assert_open_fails(path, QREF_ERR_INVALID, "missing required key \"weight_map\"");
    qref_snapshot_free(folder);
}

/* The same tensor in two shards is reported as such, whatever weight_map contains. */
static void snapshot_tensor_in_two_shards(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    const qref_tensor_set *set = qref_snapshot_tensors(folder);
    make_sharded("twice", set, &set->items[0]);
    write_index("twice", build_index(set, set->count / 2));
    char phrase[512];
    snprintf(phrase, sizeof phrase, "tensor \"%s\" is stored twice", set->items[0].name);
    assert_open_fails(test_tmp_path("twice"), QREF_ERR_INVALID, phrase);
    qref_snapshot_free(folder);
}

/* ---- Archives -------------------------------------------------------------------------------- */

typedef enum archive_kind { ARCHIVE_TAR, ARCHIVE_TAR_GZ, ARCHIVE_ZIP } archive_kind;

typedef struct member {
    const char *name;
    unsigned type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR; 0 for a hard link */
    const void *data;
    size_t size;
    const char *link; /* symlink or hard link target */
} member;

static void write_archive(const char *path, archive_kind kind, const member *members, size_t count)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    if (kind == ARCHIVE_ZIP) {
        assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    } else {
        /* GNU tar keeps names as raw bytes, so names that are not UTF-8 can be written too. */
        assert_int_equal(archive_write_set_format_gnutar(a), ARCHIVE_OK);
        if (kind == ARCHIVE_TAR_GZ)
            assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    }
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < count; i++) {
        struct archive_entry *entry = archive_entry_new();
        archive_entry_set_pathname(entry, members[i].name);
        archive_entry_set_perm(entry, members[i].type == AE_IFDIR ? 0755 : 0644);
        if (members[i].type == 0) {
            archive_entry_set_filetype(entry, AE_IFREG);
            archive_entry_set_hardlink(entry, members[i].link);
        } else {
            archive_entry_set_filetype(entry, members[i].type);
        }
        if (members[i].type == AE_IFLNK)
            archive_entry_set_symlink(entry, members[i].link);
        if (members[i].type == AE_IFREG)
            archive_entry_set_size(entry, (la_int64_t)members[i].size);
        int result = archive_write_header(a, entry);
        if (result != ARCHIVE_OK)
            print_error("archive_write_header(%s): %s\n", members[i].name, archive_error_string(a));
        assert_int_equal(result, ARCHIVE_OK);
        if (members[i].type == AE_IFREG && members[i].size > 0)
            assert_int_equal(archive_write_data(a, members[i].data, members[i].size), (la_ssize_t)members[i].size);
        archive_entry_free(entry);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* The stories260k files as archive members named prefix + file name. */
static size_t stories_members(const qref_snapshot *folder, const char *prefix, member *members, char names[][256])
{
    size_t count = 0;
    for (size_t i = 0; i < STORIES_FILE_COUNT; i++) {
        const qref_blob *blob = qref_snapshot_find_file(folder, stories_files[i]);
        snprintf(names[i], 256, "%s%s", prefix, stories_files[i]);
        members[count++] = (member){names[i], AE_IFREG, blob->data, blob->size, NULL};
    }
    return count;
}

static void snapshot_archives_match_folder(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    char names[STORIES_FILE_COUNT + 4][256];
    member members[STORIES_FILE_COUNT + 4];

    /* .tar with a top-level folder and its directory entry, as `tar -cf x.tar stories260k` writes. */
    members[0] = (member){"stories260k/", AE_IFDIR, NULL, 0, NULL};
    size_t count = 1 + stories_members(folder, "stories260k/", members + 1, names);
    write_archive(test_tmp_path("stories260k.tar"), ARCHIVE_TAR, members, count);

    /* .tar.gz with "./" names, as `tar -czf x.tar.gz -C stories260k .` writes. */
    members[0] = (member){"./", AE_IFDIR, NULL, 0, NULL};
    count = 1 + stories_members(folder, "./", members + 1, names);
    write_archive(test_tmp_path("stories260k.tar.gz"), ARCHIVE_TAR_GZ, members, count);

    /* .zip with a top-level folder, no directory entries, and a subfolder file that is not kept. */
    count = stories_members(folder, "snapshot/", members, names);
    members[count++] = (member){"snapshot/original/params.json", AE_IFREG, "{}", 2, NULL};
    write_archive(test_tmp_path("stories260k.zip"), ARCHIVE_ZIP, members, count);

    static const char *const archives[] = {"stories260k.tar", "stories260k.tar.gz", "stories260k.zip"};
    for (size_t i = 0; i < 3; i++) {
        qref_snapshot *packed = open_ok(test_tmp_path(archives[i]));
        assert_stories_files(packed, folder);
        assert_same_tensors(qref_snapshot_tensors(packed), qref_snapshot_tensors(folder));
        const qref_tensor *t = &qref_snapshot_tensors(packed)->items[0];
        assert_non_null(strstr(t->file, ":model.safetensors"));
        qref_snapshot_free(packed);
    }
    qref_snapshot_free(folder);
}

/* Only one common folder is stripped: with a top-level file beside it, the folder's files are not kept. */
static void snapshot_archive_mixed_levels(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    const qref_blob *weights = qref_snapshot_find_file(folder, "model.safetensors");
    member members[] = {
        {"config.json", AE_IFREG, "{}", 2, NULL},
        {"snap/model.safetensors", AE_IFREG, weights->data, weights->size, NULL},
    };
    write_archive(test_tmp_path("mixed.tar"), ARCHIVE_TAR, members, 2);
    assert_open_fails(test_tmp_path("mixed.tar"), QREF_ERR_INVALID, "no weights");
    assert_open_fails(test_tmp_path("mixed.tar"), QREF_ERR_INVALID,
                      "the files in its top-level folder \"snap\" are not read, because the archive has top-level "
                      "files too");
    qref_snapshot_free(folder);
}

/* Two snapshots side by side: the message names two of the folders and expects one snapshot. */
static void snapshot_archive_several_folders(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    char names[3 * STORIES_FILE_COUNT][256];
    member members[3 * STORIES_FILE_COUNT + 1];
    size_t count = stories_members(folder, "b/", members, names);
    count += stories_members(folder, "a/", members + count, names + count);
    count += stories_members(folder, "c/", members + count, names + count);

    write_archive(test_tmp_path("two_snapshots.zip"), ARCHIVE_ZIP, members, 2 * STORIES_FILE_COUNT);
    char phrase[8192];
    snprintf(phrase, sizeof phrase,
             "%s: no weights at the top level of the archive, which contains 2 top-level folders (\"a\", "
             "\"b\"); a snapshot archive must contain one snapshot",
             test_tmp_path("two_snapshots.zip"));
    assert_open_fails(test_tmp_path("two_snapshots.zip"), QREF_ERR_INVALID, phrase);

    /* Three folders and a top-level file: the first two in name order, and a mark for more. */
    members[count++] = (member){"README.md", AE_IFREG, "# two\n", 6, NULL};
    write_archive(test_tmp_path("three_snapshots.tar"), ARCHIVE_TAR, members, count);
    assert_open_fails(test_tmp_path("three_snapshots.tar"), QREF_ERR_INVALID,
                      "contains 3 top-level folders (\"a\", \"b\", ...); a snapshot archive must contain one "
                      "snapshot");

    /* The folders an archive reader reports, beside its files. */
    qref_archive_file *files = NULL;
    size_t file_count = 0;
    qref_archive_info info;
    qref_error err = {0};
    assert_int_equal(qref_archive_read_files_info(test_tmp_path("three_snapshots.tar"), NULL, &files, &file_count,
                                                  &info, &err),
                     QREF_OK);
    assert_int_equal(file_count, 1);
    assert_string_equal(files[0].name, "README.md");
    assert_int_equal(info.top_folder_count, 3);
    assert_string_equal(info.top_folders[0], "a");
    assert_string_equal(info.top_folders[1], "b");
    assert_false(info.top_folder_stripped);
    qref_archive_files_free(files, file_count);
    qref_snapshot_free(folder);
}

/* Asserts that no file "x" appeared in the current folder, its parent, or the scratch folder's parent. */
static void assert_nothing_extracted(void)
{
    struct stat st;
    assert_int_not_equal(stat("../x", &st), 0);
    assert_int_not_equal(stat(test_tmp_path("../x"), &st), 0);
    assert_int_not_equal(stat("x", &st), 0);
}

static void snapshot_archive_rejects_unsafe_names(void **state)
{
    (void)state;
    /*
     * libarchive 3.6.2's zip reader returns a backslash in an entry name as "/" (seen with a zip
     * made by its own writer on Unix), so in a zip "..\x" arrives as "../x" and meets the ".." rule.
     */
    const struct {
        const char *name;
        const char *tar_rule;
        const char *zip_rule;
    } cases[] = {
        {"../x", "the name has a \"..\" component", NULL},
        {"snap/../../x", "the name has a \"..\" component", NULL},
        {"/tmp/x", "the name is an absolute path", NULL},
        {"..\\x", "the name contains a backslash", "the name has a \"..\" component"},
        {"snap/a\001b", "the name contains the control character 0x01", NULL},
        {"C:/x", "the name starts with a drive letter", NULL},
        {"snap/bad\xff.json", "the name is not valid UTF-8", NULL},
    };
    static const archive_kind kinds[] = {ARCHIVE_TAR, ARCHIVE_ZIP};
    static const char *const suffixes[] = {".tar", ".zip"};
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char file_name[64];
            snprintf(file_name, sizeof file_name, "unsafe_%zu%s", i, suffixes[k]);
            char path[4096];
            snprintf(path, sizeof path, "%s", test_tmp_path(file_name));
            member members[] = {
                {"snap/config.json", AE_IFREG, "{}", 2, NULL},
                {cases[i].name, AE_IFREG, "payload", 7, NULL},
            };
            write_archive(path, kinds[k], members, 2);
            char phrase[4200];
            snprintf(phrase, sizeof phrase, "%s: entry \"", path);
            assert_open_fails(path, QREF_ERR_INVALID, phrase);
            const char *rule = k == 1 && cases[i].zip_rule != NULL ? cases[i].zip_rule : cases[i].tar_rule;
            assert_open_fails(path, QREF_ERR_INVALID, rule);
            assert_open_fails(path, QREF_ERR_INVALID, "nothing was extracted");
        }
    }
    /* The full message for the classic case names archive, entry and rule together. */
    char phrase[4200];
    snprintf(phrase, sizeof phrase, "%s: entry \"../x\" rejected: the name has a \"..\" component",
             test_tmp_path("unsafe_0.tar"));
    assert_open_fails(test_tmp_path("unsafe_0.tar"), QREF_ERR_INVALID, phrase);
    assert_nothing_extracted();
}

static void snapshot_archive_rejects_links_and_devices(void **state)
{
    (void)state;
    const struct {
        member entry;
        const char *rule;
        bool tar_only;
    } cases[] = {
        {{"snap/model.safetensors", AE_IFLNK, NULL, 0, "/etc/passwd"}, "it is a symbolic link (to \"/etc/passwd\")", false},
        {{"snap/tokenizer.model", 0, NULL, 0, "snap/config.json"}, "it is a hard link (to \"snap/config.json\")", true},
        {{"snap/dev", AE_IFCHR, NULL, 0, NULL}, "it is a device node", true},
        {{"snap/fifo", AE_IFIFO, NULL, 0, NULL}, "it is a FIFO", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int zip = 0; zip <= 1; zip++) {
            if (zip && cases[i].tar_only)
                continue;
            char file_name[64];
            snprintf(file_name, sizeof file_name, "link_%zu%s", i, zip ? ".zip" : ".tar");
            member members[] = {{"snap/config.json", AE_IFREG, "{}", 2, NULL}, cases[i].entry};
            write_archive(test_tmp_path(file_name), zip ? ARCHIVE_ZIP : ARCHIVE_TAR, members, 2);
            assert_open_fails(test_tmp_path(file_name), QREF_ERR_INVALID, cases[i].rule);
        }
    }
}

static void snapshot_archive_rejects_duplicates(void **state)
{
    (void)state;
    member same[] = {
        {"snap/config.json", AE_IFREG, "{}", 2, NULL},
        {"snap/config.json", AE_IFREG, "{\"a\":1}", 7, NULL},
    };
    write_archive(test_tmp_path("duplicate.tar"), ARCHIVE_TAR, same, 2);
    assert_open_fails(test_tmp_path("duplicate.tar"), QREF_ERR_INVALID,
                      "entry \"snap/config.json\" rejected: another entry has the same name");

    member cased[] = {
        {"snap/config.json", AE_IFREG, "{}", 2, NULL},
        {"snap/Config.json", AE_IFREG, "{}", 2, NULL},
    };
    write_archive(test_tmp_path("case.zip"), ARCHIVE_ZIP, cased, 2);
    assert_open_fails(test_tmp_path("case.zip"), QREF_ERR_INVALID, "only in letter case");

    /* "./a" and "a" name the same file. */
    member dotted[] = {
        {"./config.json", AE_IFREG, "{}", 2, NULL},
        {"config.json", AE_IFREG, "{}", 2, NULL},
    };
    write_archive(test_tmp_path("dotted.tar"), ARCHIVE_TAR, dotted, 2);
    assert_open_fails(test_tmp_path("dotted.tar"), QREF_ERR_INVALID, "another entry has the same name");

    /* A 256-byte name component. */
    char long_name[300] = "snap/";
    memset(long_name + 5, 'a', 256);
    long_name[261] = '\0';
    member longer[] = {{long_name, AE_IFREG, "{}", 2, NULL}};
    write_archive(test_tmp_path("long.tar"), ARCHIVE_TAR, longer, 1);
    assert_open_fails(test_tmp_path("long.tar"), QREF_ERR_INVALID, "a name component is 256 bytes long, the limit is 255");
}

static void snapshot_archive_limits(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    char names[STORIES_FILE_COUNT][256];
    member members[STORIES_FILE_COUNT];
    size_t count = stories_members(folder, "", members, names);
    write_archive(test_tmp_path("limits.tar"), ARCHIVE_TAR, members, count);

    qref_archive_limits limits;
    qref_archive_limits_init(&limits);
    assert_int_equal(limits.max_entries, QREF_ARCHIVE_MAX_ENTRIES);
    qref_snapshot *snapshot = NULL;
    qref_error err = {0};

    limits.max_entries = 3;
    test_assert_error(qref_snapshot_open_with_limits(test_tmp_path("limits.tar"), &limits, &snapshot, &err), &err,
                 QREF_ERR_INVALID, "the archive holds more than 3 entries");
    /* The same cap applies to the files of a folder; the fixture folder has 4. */
    test_assert_error(qref_snapshot_open_with_limits(test_fixture_path(STORIES), &limits, &snapshot, &err), &err,
                 QREF_ERR_INVALID, "the folder holds more than 3 files");

    qref_archive_limits_init(&limits);
    limits.max_total_bytes = 100000; /* the fixture's weights alone are 1,044,992 bytes */
    test_assert_error(qref_snapshot_open_with_limits(test_tmp_path("limits.tar"), &limits, &snapshot, &err), &err,
                 QREF_ERR_INVALID, "decompresses to more than the limit of 100000 bytes");

    qref_archive_limits_init(&limits);
    limits.max_name_length = 10;
    test_assert_error(qref_snapshot_open_with_limits(test_tmp_path("limits.tar"), &limits, &snapshot, &err), &err,
                 QREF_ERR_INVALID, "entry \"config.json\" rejected: the name is 11 bytes long, the limit is 10");

    /* A 4 MiB run of zeros gzips to a few KiB, far past a 20:1 ratio limit. */
    size_t zeros_size = 4u << 20;
    char *zeros = calloc(1, zeros_size);
    member bomb[] = {{"zeros.bin", AE_IFREG, zeros, zeros_size, NULL}};
    write_archive(test_tmp_path("bomb.tar.gz"), ARCHIVE_TAR_GZ, bomb, 1);
    free(zeros);
    qref_archive_limits_init(&limits);
    limits.max_ratio = 20;
    limits.ratio_floor_bytes = 1u << 20;
    test_assert_error(qref_snapshot_open_with_limits(test_tmp_path("bomb.tar.gz"), &limits, &snapshot, &err), &err,
                 QREF_ERR_INVALID, "break the compression ratio limit of 20:1");
    assert_null(snapshot);
    qref_snapshot_free(folder);
}

/* ---- Archive bombs ----------------------------------------------------------------------- */

/* 64 MiB of zeros, the payload of the bombs below; deflate and gzip shrink it about 1000 times. */
#define BOMB_BYTES ((size_t)64 << 20)
#define BOMB_ENTRY "snap/model.safetensors"

static void write_bomb(const char *path, archive_kind kind)
{
    char *zeros = calloc(1, BOMB_BYTES);
    assert_non_null(zeros);
    member bomb[] = {{BOMB_ENTRY, AE_IFREG, zeros, BOMB_BYTES, NULL}};
    write_archive(path, kind, bomb, 1);
    free(zeros);
}

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store_le32(unsigned char *p, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(value >> (8 * i));
}

/*
 * Rewrites the uncompressed size of the one entry of a zip that libarchive wrote (no comment, no
 * zip64 fields) in the central directory, the local header and the data descriptor. Every header
 * then declares `declared` bytes, while the data still inflates to BOMB_BYTES. Offsets are
 * those of the PKWARE APPNOTE: end of central directory record 22 bytes from the end, central
 * directory offset at +16; in the central directory header the compressed size is at +20, the
 * uncompressed size at +24 and the local header offset at +42; in the local header the
 * uncompressed size is at +22 and the name and extra lengths at +26 and +28; in the data
 * descriptor (flag bit 3) the uncompressed size is at +12.
 */
static void lie_about_zip_size(const char *path, uint32_t declared)
{
    size_t size;
    unsigned char *zip = (unsigned char *)test_read_file(path, &size);
    assert_true(size > 22);
    unsigned char *end = zip + size - 22;
    assert_memory_equal(end, "PK\x05\x06", 4);
    unsigned char *central = zip + load_le32(end + 16);
    assert_memory_equal(central, "PK\x01\x02", 4);
    unsigned char *local = zip + load_le32(central + 42);
    assert_memory_equal(local, "PK\x03\x04", 4);
    assert_int_equal(load_le32(central + 24), BOMB_BYTES);
    store_le32(central + 24, declared);
    store_le32(local + 22, declared);
    if (local[6] & 0x08) {
        size_t name_length = (size_t)local[26] | (size_t)local[27] << 8;
        size_t extra_length = (size_t)local[28] | (size_t)local[29] << 8;
        unsigned char *descriptor = local + 30 + name_length + extra_length + load_le32(central + 20);
        assert_memory_equal(descriptor, "PK\x07\x08", 4);
        store_le32(descriptor + 12, declared);
    }
    test_write_file(path, zip, size);
    free(zip);
}

/* Opens path with limits through both readers, asserting status, phrase and what the archive reader did. */
static void assert_bomb_rejected(const char *path, const qref_archive_limits *limits, const char *phrase,
                                 qref_archive_info *info)
{
    qref_snapshot *snapshot = NULL;
    qref_error err = {0};
    test_assert_error(qref_snapshot_open_with_limits(path, limits, &snapshot, &err), &err, QREF_ERR_INVALID, phrase);
    assert_null(snapshot);

    qref_archive_file *files = NULL;
    size_t count = 0;
    test_assert_error(qref_archive_read_files_info(path, limits, &files, &count, info, &err), &err, QREF_ERR_INVALID,
                      phrase);
    assert_null(files);
    assert_int_equal(count, 0);
}

/* An honest header declares the bomb's size: each cap rejects it before a byte is decompressed or allocated. */
static void snapshot_archive_bomb_declared(void **state)
{
    (void)state;
    static const archive_kind kinds[] = {ARCHIVE_ZIP, ARCHIVE_TAR_GZ};
    static const char *const files[] = {"declared_bomb.zip", "declared_bomb.tar.gz"};
    for (size_t k = 0; k < 2; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s", test_tmp_path(files[k]));
        write_bomb(path, kinds[k]);
        qref_archive_limits limits;
        qref_archive_info info;
        char phrase[8192];

        /* The ratio: 64 MiB from an archive of about 64 KiB is about 1000:1, far past 20:1. */
        qref_archive_limits_init(&limits);
        limits.max_ratio = 20;
        limits.ratio_floor_bytes = 1u << 20;
        snprintf(phrase, sizeof phrase, "%s: entry \"" BOMB_ENTRY "\": 67108864 bytes declared through this entry, ",
                 path);
        assert_bomb_rejected(path, &limits, phrase, &info);
        assert_bomb_rejected(path, &limits, "break the compression ratio limit of 20:1 (archive bomb?); the entry "
                             "was not read", &info);
        assert_int_equal(info.bytes_produced, 0);
        assert_int_equal(info.largest_buffer, 0);

        /* One entry's size. */
        qref_archive_limits_init(&limits);
        limits.max_entry_bytes = 1u << 20;
        snprintf(phrase, sizeof phrase,
                 "%s: entry \"" BOMB_ENTRY "\" declares 67108864 bytes, more than the limit of 1048576 bytes for "
                 "one entry; the entry was not read",
                 path);
        assert_bomb_rejected(path, &limits, phrase, &info);
        assert_int_equal(info.bytes_produced, 0);
        assert_int_equal(info.largest_buffer, 0);

        /* The whole archive's size. */
        qref_archive_limits_init(&limits);
        limits.max_total_bytes = 1u << 20;
        assert_bomb_rejected(path, &limits,
                             "the archive decompresses to more than the limit of 1048576 bytes (67108864 bytes "
                             "declared through this entry); the entry was not read",
                             &info);
        assert_int_equal(info.bytes_produced, 0);
        assert_int_equal(info.largest_buffer, 0);
    }
}

/*
 * A zip whose headers declare 4096 bytes for the 64 MiB of zeros. Reading must stop one byte past
 * the cap, with no buffer larger than the cap plus one byte. bytes_produced shows that the reader
 * decompressed about 1 MiB of the 64 MiB, so the error comes at once.
 */
static void snapshot_archive_bomb_lying_header(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s", test_tmp_path("lying_bomb.zip"));
    write_bomb(path, ARCHIVE_ZIP);
    lie_about_zip_size(path, 4096);
    size_t archive_size;
    free(test_read_file(path, &archive_size));
    qref_archive_limits limits;
    qref_archive_info info;
    char phrase[8192];

    /* One entry's size: 1 MiB + 1 bytes come out, then the reader stops. */
    qref_archive_limits_init(&limits);
    limits.max_entry_bytes = 1u << 20;
    snprintf(phrase, sizeof phrase,
             "%s: entry \"" BOMB_ENTRY "\" decompressed to 1048577 bytes, more than the limit of 1048576 bytes for "
             "one entry; reading stopped there",
             path);
    assert_bomb_rejected(path, &limits, phrase, &info);
    assert_int_equal(info.bytes_produced, (1u << 20) + 1);
    assert_true(info.largest_buffer <= (1u << 20) + 1);
    assert_true(info.largest_buffer > 4096); /* the buffer grew past the declared size */

    /* The whole archive's size. */
    qref_archive_limits_init(&limits);
    limits.max_total_bytes = 2u << 20;
    assert_bomb_rejected(path, &limits,
                         "the archive decompresses to more than the limit of 2097152 bytes (2097153 bytes "
                         "decompressed through this entry); reading stopped there",
                         &info);
    assert_int_equal(info.bytes_produced, (2u << 20) + 1);
    assert_true(info.largest_buffer <= (2u << 20) + 1);

    /*
     * The ratio: the check fails once the total passes the floor and total / archive size reaches
     * 20, so the largest total allowed is max(floor, 20 * size - 1), and reading stops one byte on.
     */
    qref_archive_limits_init(&limits);
    limits.max_ratio = 20;
    limits.ratio_floor_bytes = 1u << 20;
    uint64_t allowed = 20 * (uint64_t)archive_size - 1;
    if (allowed < limits.ratio_floor_bytes)
        allowed = limits.ratio_floor_bytes;
    snprintf(phrase, sizeof phrase, "%s: entry \"" BOMB_ENTRY "\": %llu bytes decompressed through this entry", path,
             (unsigned long long)(allowed + 1));
    assert_bomb_rejected(path, &limits, phrase, &info);
    assert_bomb_rejected(path, &limits, "break the compression ratio limit of 20:1 (archive bomb?); reading stopped "
                         "there", &info);
    assert_int_equal(info.bytes_produced, allowed + 1);
    assert_true(info.largest_buffer <= allowed + 1);
}

/* Archive suffixes match in any letter case. */
static void snapshot_archive_suffix_case(void **state)
{
    (void)state;
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    char names[STORIES_FILE_COUNT][256];
    member members[STORIES_FILE_COUNT];
    size_t count = stories_members(folder, "snap/", members, names);
    static const struct {
        const char *file;
        archive_kind kind;
    } cases[] = {
        {"UPPER.ZIP", ARCHIVE_ZIP},
        {"UPPER.TGZ", ARCHIVE_TAR_GZ},
        {"UPPER.TAR.GZ", ARCHIVE_TAR_GZ},
        {"Mixed.Tar", ARCHIVE_TAR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_archive(test_tmp_path(cases[i].file), cases[i].kind, members, count);
        qref_snapshot *packed = open_ok(test_tmp_path(cases[i].file));
        assert_stories_files(packed, folder);
        assert_same_tensors(qref_snapshot_tensors(packed), qref_snapshot_tensors(folder));
        qref_snapshot_free(packed);
    }
    qref_snapshot_free(folder);
}

static void snapshot_archive_not_an_archive(void **state)
{
    (void)state;
    test_rng rng = {42};
    uint8_t noise[4096];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t)test_rng_next(&rng);
    test_write_file(test_tmp_path("noise.tar"), noise, sizeof noise);
    assert_open_fails(test_tmp_path("noise.tar"), QREF_ERR_INVALID, "noise.tar: not a readable tar or zip archive");

    /* A truncated .tar.gz: the gzip stream ends early. */
    qref_snapshot *folder = open_ok(test_fixture_path(STORIES));
    char names[STORIES_FILE_COUNT][256];
    member members[STORIES_FILE_COUNT];
    size_t count = stories_members(folder, "", members, names);
    write_archive(test_tmp_path("whole.tar.gz"), ARCHIVE_TAR_GZ, members, count);
    size_t size;
    char *whole = test_read_file(test_tmp_path("whole.tar.gz"), &size);
    test_write_file(test_tmp_path("cut.tar.gz"), whole, size / 2);
    free(whole);
    assert_open_fails(test_tmp_path("cut.tar.gz"), QREF_ERR_INVALID, "cut.tar.gz: entry");
    qref_snapshot_free(folder);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snapshot_folder_stories260k),
        cmocka_unit_test(snapshot_single_safetensors_file),
        cmocka_unit_test(snapshot_folder_follows_symlinks),
        cmocka_unit_test(snapshot_without_weights),
        cmocka_unit_test(snapshot_rejects_special_files),
        cmocka_unit_test(snapshot_sharded_matches_folder),
        cmocka_unit_test(snapshot_shard_index_mismatches),
        cmocka_unit_test(snapshot_tensor_in_two_shards),
        cmocka_unit_test(snapshot_archives_match_folder),
        cmocka_unit_test(snapshot_archive_mixed_levels),
        cmocka_unit_test(snapshot_archive_several_folders),
        cmocka_unit_test(snapshot_archive_rejects_unsafe_names),
        cmocka_unit_test(snapshot_archive_rejects_links_and_devices),
        cmocka_unit_test(snapshot_archive_rejects_duplicates),
        cmocka_unit_test(snapshot_archive_limits),
        cmocka_unit_test(snapshot_archive_bomb_declared),
        cmocka_unit_test(snapshot_archive_bomb_lying_header),
        cmocka_unit_test(snapshot_archive_suffix_case),
        cmocka_unit_test(snapshot_archive_not_an_archive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
