/*
 * A Hugging Face model snapshot opened read-only from a folder, a single .safetensors file,
 * or an archive of a snapshot. An archive is recognized by its name, which must end in .tar,
 * .tar.gz, .tgz, .zip, .tar.xz, .txz, .tar.zst or .tzst (any letter case, so .ZIP and .TAR.GZ
 * too). Its content decides how it is read: tar or zip, uncompressed or compressed with gzip,
 * xz or zstd, the last two only when libarchive has those decoders built in.
 *
 * A folder's top-level regular files are mapped with mmap. Symbolic links to files are
 * followed, as the Hugging Face cache uses them, and subfolders are ignored. Archive entries
 * are read in place through libarchive into memory and never extracted to disk (see
 * io/qref_archive.h for the rules on entry types, names and sizes). An archive whose entries
 * all sit in one top-level folder is read as that folder. An archive contains one snapshot.
 * When the weights are missing from its top level and it contains several top-level folders,
 * the error names two of them.
 *
 * Weights come from model.safetensors, or from the shards named by
 * model.safetensors.index.json, whose weight_map must agree exactly with the shard headers.
 * Every named shard must exist, every shard tensor must be listed once and in the right
 * shard, no tensor may be stored twice, and metadata.total_size (when present) must equal
 * the sum of the tensor sizes. A file named like a shard (PREFIX-NNNNN-of-NNNNN.safetensors)
 * that weight_map does not name is rejected too, because its tensors would be left out.
 */
#ifndef QREF_SNAPSHOT_H
#define QREF_SNAPSHOT_H

#include <stddef.h>

#include "core/qref_error.h"
#include "io/qref_archive.h"
#include "io/qref_blob.h"
#include "io/qref_tensor.h"

typedef struct qref_snapshot qref_snapshot;

typedef struct qref_snapshot_file {
    char *name;     /* relative name inside the snapshot, e.g. "config.json" */
    qref_blob blob;
} qref_snapshot_file;

/*
 * Limits applied while reading an archive, and the entry cap to a folder's files:
 * qref_snapshot_open uses the defaults of qref_archive_limits_init (QREF_ARCHIVE_MAX_ENTRIES,
 * QREF_ARCHIVE_MAX_NAME, ... in io/qref_archive.h).
 */
qref_status qref_snapshot_open(const char *path, qref_snapshot **out, qref_error *err);

/* As qref_snapshot_open with explicit limits; NULL means the defaults. */
qref_status qref_snapshot_open_with_limits(const char *path, const qref_archive_limits *limits,
                                           qref_snapshot **out, qref_error *err);
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
