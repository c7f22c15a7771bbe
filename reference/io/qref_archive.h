/*
 * Reads the top-level files of a .tar, .tar.gz / .tgz or .zip archive into memory through
 * libarchive, never writing anything to disk.
 *
 * Only the tar and zip formats and the gzip, xz and zstd filters are enabled, and a filter
 * only when libarchive has it built in, because libarchive otherwise runs an external
 * program. Every entry must be a regular file or a directory with a safe name: relative, no
 * ".." component, no backslash, no control character, no drive letter, within the name
 * limits, valid UTF-8, and unique (also when compared without ASCII case). Symbolic links,
 * hard links, devices, FIFOs, sockets and sparse files are rejected, and so is the whole
 * archive with them.
 *
 * The entry count and the bytes decompressed are capped: per entry, over the whole archive, and
 * as a ratio to the archive file's size. An entry's declared size (when its header has one) is
 * checked against every byte cap before any buffer is allocated for it. While an entry is read,
 * its buffer grows in bounded steps up to one byte past the remaining cap, and the bytes
 * actually produced are checked after each block. So an archive bomb stops at the cap, and no
 * buffer is larger than the cap plus one byte. Every limit breach is QREF_ERR_INVALID.
 *
 * When every entry sits under one top-level folder, that folder is stripped, so "snap/a.json"
 * reads as "a.json". Files in deeper folders are checked but not kept, as a snapshot folder
 * ignores its subfolders.
 */
#ifndef QREF_ARCHIVE_H
#define QREF_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "io/qref_blob.h"

/* Default limits (qref_archive_limits_init). Archive files are held in memory, hence the byte caps. */
#define QREF_ARCHIVE_MAX_ENTRIES 10000
#define QREF_ARCHIVE_MAX_NAME 4096
#define QREF_ARCHIVE_MAX_ENTRY_BYTES (64ull << 30)
#define QREF_ARCHIVE_MAX_TOTAL_BYTES (64ull << 30)
/*
 * Safetensors and GGUF weights compress by little more than 1.1:1, and deflate cannot exceed
 * about 1032:1, so 200:1 rejects archive bombs long before a real model would be refused.
 */
#define QREF_ARCHIVE_MAX_RATIO 200
#define QREF_ARCHIVE_RATIO_FLOOR_BYTES (64ull << 20)

typedef struct qref_archive_limits {
    size_t max_entries;         /* entries of every type, directories included */
    size_t max_name_length;     /* bytes of one entry name; each component is limited to 255 */
    uint64_t max_entry_bytes;   /* bytes decompressed from one entry */
    uint64_t max_total_bytes;   /* bytes decompressed over all entries, kept or skipped */
    uint64_t max_ratio;         /* bytes decompressed per byte of archive file ... */
    uint64_t ratio_floor_bytes; /* ... checked once more than this many bytes came out */
} qref_archive_limits;

/*
 * Fills limits with the defaults: 10,000 entries, 4096-byte names, 64 GiB per entry and in all,
 * 200:1 above 64 MiB.
 */
void qref_archive_limits_init(qref_archive_limits *limits);

typedef struct qref_archive_file {
    char *name; /* relative name after stripping a common top-level folder */
    qref_blob blob;
} qref_archive_file;

/* What one read measured and found besides the files, for messages and tests. */
typedef struct qref_archive_info {
    uint64_t bytes_produced;  /* bytes decompressed, plus the declared sizes of skipped entries */
    uint64_t largest_buffer;  /* capacity of the largest entry buffer allocated, in bytes */
    size_t top_folder_count;  /* distinct folders at the archive's top level */
    char top_folders[2][256]; /* the first two of them in name order, "" when absent */
    bool top_folder_stripped; /* the files were read from the one top-level folder */
} qref_archive_info;

/*
 * Reads the archive at path. On success *files holds *count files sorted by name, which the
 * caller releases with qref_archive_files_free. limits may be NULL for the defaults.
 */
qref_status qref_archive_read_files(const char *path, const qref_archive_limits *limits,
                                    qref_archive_file **files, size_t *count, qref_error *err);

/*
 * As qref_archive_read_files, and fills info (which may be NULL). The byte counts are filled on
 * failure too; the folders only on success.
 */
qref_status qref_archive_read_files_info(const char *path, const qref_archive_limits *limits,
                                         qref_archive_file **files, size_t *count,
                                         qref_archive_info *info, qref_error *err);

void qref_archive_files_free(qref_archive_file *files, size_t count);

#endif
