/*
 * Read-only byte spans: a whole file mapped with mmap, or a buffer in memory (an archive
 * entry, a generated file). Readers take a blob and never copy it whole.
 */
#ifndef QREF_BLOB_H
#define QREF_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"

typedef struct qref_blob {
    const uint8_t *data;
    size_t size;
    void *mapping;      /* munmap target when the blob maps a file, else NULL */
    size_t mapping_size;
    void *owned;        /* free() target when the blob owns a heap buffer, else NULL */
} qref_blob;

/* Maps the regular file at path read-only. An empty file gives a blob of size 0. */
qref_status qref_blob_map_file(const char *path, qref_blob *blob, qref_error *err);

/* Wraps a heap buffer; the blob takes ownership and frees it. */
void qref_blob_adopt(qref_blob *blob, void *buffer, size_t size);

/* Releases the mapping or buffer and zeroes the blob. Safe on a zeroed blob. */
void qref_blob_free(qref_blob *blob);

/* Reads a whole file into a NUL-terminated heap buffer no larger than max_size bytes. */
qref_status qref_file_read_all(const char *path, size_t max_size, char **out, size_t *out_size,
                               qref_error *err);

/*
 * A file written atomically: bytes go to a temporary file next to path, which is flushed and
 * renamed over path by qref_atomic_file_commit, so readers never see a partial file.
 */
typedef struct qref_atomic_file {
    int fd;
    char *path;
    char *temp_path;
    int write_errno; /* 0 while every write succeeded */
} qref_atomic_file;

/*
 * Creates the temporary file for path. A symbolic link is followed (its target is replaced);
 * an existing path that is not a regular file is refused.
 */
qref_status qref_atomic_file_open(qref_atomic_file *file, const char *path, qref_error *err);

/* Appends size bytes; a failure is remembered and reported by qref_atomic_file_commit. */
void qref_atomic_file_write(qref_atomic_file *file, const void *data, size_t size);

/* Flushes and renames the file over its path; on any failure removes the temporary file. */
qref_status qref_atomic_file_commit(qref_atomic_file *file, qref_error *err);

/* Removes the temporary file without touching path. */
void qref_atomic_file_abort(qref_atomic_file *file);

/* Writes size bytes to path atomically (see qref_atomic_file). */
qref_status qref_file_write_atomic(const char *path, const void *data, size_t size, qref_error *err);

#endif
