/*
 * safetensors reader and writer.
 *
 * Layout (huggingface/safetensors README, "Format"): an 8-byte little-endian header length N,
 * N bytes of UTF-8 JSON mapping tensor names to {dtype, shape, data_offsets} plus an optional
 * "__metadata__" string map, then the data buffer. The reader accepts a file only when every
 * rule of the reference Rust reader holds: N <= 100,000,000 and 8 + N <= file size, no
 * duplicate keys, offsets sorted by begin start at 0 and are contiguous, each span equals
 * numel x dtype size (computed with overflow checks), and the last span ends at end of file.
 */
#ifndef QREF_SAFETENSORS_H
#define QREF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "io/qref_tensor.h"

#define QREF_SAFETENSORS_MAX_HEADER 100000000ull

typedef struct qref_safetensors_meta {
    char *key;
    char *value;
} qref_safetensors_meta;

typedef struct qref_safetensors {
    qref_tensor_set tensors;      /* data pointers point into the parsed buffer */
    qref_safetensors_meta *metadata;
    size_t metadata_count;
    uint64_t header_size;
} qref_safetensors;

/*
 * Parses and validates a safetensors file held in data[0..size). display names the file in
 * errors, and each tensor's file field points to an internal copy of it. The buffer must
 * outlive the result.
 */
qref_status qref_safetensors_parse(const char *display, const uint8_t *data, size_t size,
                                   qref_safetensors *out, qref_error *err);

void qref_safetensors_free(qref_safetensors *st);

/* One tensor to write: data holds nbytes = numel x dtype size bytes, little-endian. */
typedef struct qref_safetensors_entry {
    const char *name;
    qref_dtype dtype;
    int ndim;
    int64_t shape[QREF_MAX_DIMS];
    const void *data;
} qref_safetensors_entry;

/*
 * Writes a safetensors file atomically (temporary file, then rename). Tensors are laid out
 * in the order given; the header is padded with spaces to a multiple of 8 bytes.
 * metadata is an array of meta_count {key, value} pairs, written as "__metadata__".
 */
qref_status qref_safetensors_write(const char *path, const qref_safetensors_entry *entries,
                                   size_t count, const qref_safetensors_meta *metadata,
                                   size_t meta_count, qref_error *err);

#endif
