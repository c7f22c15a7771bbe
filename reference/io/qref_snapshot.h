/*
 * A Hugging Face model snapshot opened read-only from a folder, a single .safetensors file,
 * or a .tar / .tar.gz / .tgz / .zip archive of a snapshot folder.
 *
 * Folder files are mapped with mmap. Archive entries are read in place through libarchive
 * into memory (never extracted to disk), accepting only regular files with safe names
 * (no absolute paths, no "..", no backslashes, no duplicates) within size and count limits.
 * An archive whose entries all sit in one top-level folder is read as that folder.
 *
 * Weights come from model.safetensors, or from the shards named by
 * model.safetensors.index.json, whose weight_map must agree exactly with the shard headers.
 */
#ifndef QREF_SNAPSHOT_H
#define QREF_SNAPSHOT_H

#include <stddef.h>

#include "core/qref_error.h"
#include "io/qref_blob.h"
#include "io/qref_tensor.h"

typedef struct qref_snapshot qref_snapshot;

typedef struct qref_snapshot_file {
    char *name;     /* relative name inside the snapshot, e.g. "config.json" */
    qref_blob blob;
} qref_snapshot_file;

/* Limits applied while reading an archive; qref_snapshot_open uses the defaults below. */
#define QREF_ARCHIVE_MAX_ENTRIES 10000
#define QREF_ARCHIVE_MAX_NAME 4096

qref_status qref_snapshot_open(const char *path, qref_snapshot **out, qref_error *err);
void qref_snapshot_free(qref_snapshot *snapshot);

/* The path given to qref_snapshot_open. */
const char *qref_snapshot_path(const qref_snapshot *snapshot);

/* Files in name order; each folder or archive file is listed, weights included. */
size_t qref_snapshot_file_count(const qref_snapshot *snapshot);
const qref_snapshot_file *qref_snapshot_file_at(const qref_snapshot *snapshot, size_t index);

/* The file with this relative name, or NULL. */
const qref_blob *qref_snapshot_find_file(const qref_snapshot *snapshot, const char *name);

/* All tensors of the model's safetensors files, merged and sorted by name. */
const qref_tensor_set *qref_snapshot_tensors(const qref_snapshot *snapshot);

#endif
