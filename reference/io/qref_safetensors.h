/*
 * safetensors reader and writer.
 *
 * Layout (huggingface/safetensors README, "Format"): an 8-byte little-endian header length N,
 * N bytes of UTF-8 JSON mapping tensor names to {dtype, shape, data_offsets} plus an optional
 * "__metadata__" string map, then the data buffer. The reader accepts a file only when every
 * rule of the reference Rust reader holds: N <= 100,000,000 and 8 + N <= file size, no
 * duplicate keys, offsets sorted by begin start at 0 and are contiguous, each span equals
 * numel x dtype size (computed with overflow checks), and the last span ends at end of file.
 * On top of those it requires what the format's JSON schema states: a header that is a JSON
 * object, a flat string-to-string "__metadata__", exactly the keys dtype, shape and
 * data_offsets per tensor, at most 8 dimensions, and names of 1 to 1024 bytes.
 *
 * Status: QREF_ERR_UNSUPPORTED for dtypes the format defines but qref_dtype lacks (F4,
 * F6_E2M3, F6_E3M2, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, C64); QREF_ERR_INVALID for every
 * other violation.
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
    char *display;                /* owned copy of the display name; each tensor's file field */
} qref_safetensors;

/* Longest tensor name the reader and writer accept, in bytes. */
#define QREF_SAFETENSORS_MAX_NAME 1024

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
