/*
 * GGUF reader: metadata key-value pairs and tensor infos of a GGUF v2 or v3 file.
 *
 * Layout (ggml-org/ggml docs/gguf.md), all little-endian: magic "GGUF", u32 version, u64
 * tensor count, u64 KV count, the KV pairs, the tensor infos, zero padding to the alignment,
 * then the data section. A KV pair is a key string, a u32 value type and the value. A tensor
 * info is a name string, u32 n_dims, u64 ne[n_dims], a u32 ggml type and a u64 offset into
 * the data section. A string is a u64 byte length and the bytes, with no terminator. An array
 * is a u32 element type, a u64 count and the elements. The alignment is the UINT32 value of
 * "general.alignment", or 32 when the key is absent.
 *
 * The parser checks, in the order the bytes are read, every rule that a malformed file has
 * broken in a known reader (the GGUF CVEs of 2024-2026 against ggml, llama-cpp-python and
 * Ollama). All size arithmetic is overflow-checked.
 *   - magic "GGUF"; version 2 or 3. Version 1 (32-bit counts) and byte-swapped big-endian
 *     files are rejected by name.
 *   - tensor and KV counts bounded by the bytes that remain and by QREF_GGUF_MAX_TENSORS and
 *     QREF_GGUF_MAX_KVS.
 *   - string lengths and array counts bounded by the bytes that remain and by fixed caps.
 *   - value types known, arrays not nested, BOOL values 0 or 1.
 *   - keys of 1 to 65535 bytes of printable ASCII, unique.
 *   - "general.alignment" a UINT32 power of two.
 *   - tensor names of 1 to 63 bytes without control bytes, unique. ggml's GGML_MAX_NAME is
 *     64 bytes with the terminating NUL.
 *   - n_dims 1 to 4; every ne >= 1, with a product that fits in int64.
 *   - the ggml type id known and not removed; ne[0] a multiple of the type's block size; the
 *     byte size within 64 bits.
 *   - each offset a multiple of the alignment; each tensor inside the file; no two tensors
 *     overlapping.
 *   - with tokenizer.ggml.tokens: an ARRAY of STRING of tokens up to 1 MiB long; scores and
 *     token_type arrays of the same count; every tokenizer.ggml.*_token_id below the count
 *     (or 4294967295 / -1 for none); token_embd.weight rows and <arch>.vocab_size equal to
 *     the count.
 *   - tensors "blk.N.*" with N below <arch>.block_count.
 *   (<arch> is the value of general.architecture.)
 * Each error names the file, the KV or tensor (index and key or name), the field, its byte
 * offset, the value found and the limit.
 *
 * Unlike ggml, the reader accepts tensors in any order and with gaps between them, because
 * the format only requires aligned offsets. The contiguous field records whether the offsets
 * are the running padded sum that ggml's own reader requires. Tensor types without a
 * dequantizer (IQ2_XXS, ...) parse, and formats/qref_ggml.h reports them when decoding.
 *
 * String values are returned as bytes. Their UTF-8 validity is not checked, so callers that
 * print them must escape them. Nothing is rendered or interpreted: tokenizer.chat_template
 * stays an opaque string.
 */
#ifndef QREF_GGUF_H
#define QREF_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "io/qref_blob.h"
#include "io/qref_ggml_type.h"

#define QREF_GGUF_MAGIC "GGUF"
#define QREF_GGUF_DEFAULT_ALIGNMENT 32u
#define QREF_GGUF_MAX_DIMS 4
/* Maximum tensor name length: ggml stores names in char[GGML_MAX_NAME = 64] with the NUL. */
#define QREF_GGUF_MAX_NAME 63
/* Maximum key length, from docs/gguf.md ("at most 2^16-1/65535 bytes long"). */
#define QREF_GGUF_MAX_KEY 65535u
/* Caps far above what a LLaMA-3-8B file needs (291 tensors, a 128256-token vocabulary). */
#define QREF_GGUF_MAX_TENSORS (1u << 20)
#define QREF_GGUF_MAX_KVS (1u << 20)
#define QREF_GGUF_MAX_STRING (1ull << 30)
#define QREF_GGUF_MAX_ARRAY (1ull << 30)

/* Metadata value types (gguf_metadata_value_type). */
typedef enum qref_gguf_type {
    QREF_GGUF_TYPE_UINT8 = 0,
    QREF_GGUF_TYPE_INT8 = 1,
    QREF_GGUF_TYPE_UINT16 = 2,
    QREF_GGUF_TYPE_INT16 = 3,
    QREF_GGUF_TYPE_UINT32 = 4,
    QREF_GGUF_TYPE_INT32 = 5,
    QREF_GGUF_TYPE_FLOAT32 = 6,
    QREF_GGUF_TYPE_BOOL = 7,
    QREF_GGUF_TYPE_STRING = 8,
    QREF_GGUF_TYPE_ARRAY = 9,
    QREF_GGUF_TYPE_UINT64 = 10,
    QREF_GGUF_TYPE_INT64 = 11,
    QREF_GGUF_TYPE_FLOAT64 = 12,
    QREF_GGUF_TYPE_COUNT = 13
} qref_gguf_type;

/* A string inside the file: length bytes at data, not NUL-terminated. */
typedef struct qref_gguf_string {
    const char *data;
    uint64_t length;
} qref_gguf_string;

/* One metadata pair. */
typedef struct qref_gguf_kv {
    char *key;                /* NUL-terminated copy */
    qref_gguf_type type;      /* QREF_GGUF_TYPE_ARRAY for arrays */
    qref_gguf_type elem_type; /* element type of an array, or equal to type for a scalar */
    uint64_t count;           /* elements of an array, or 1 for a scalar */
    uint64_t value_offset;    /* file offset of the value: a scalar, a string's length, an array's first element */
    uint64_t *string_offsets; /* array of strings: file offset of each element's length field */
} qref_gguf_kv;

/* One tensor info with its place in the file. */
typedef struct qref_gguf_tensor {
    char name[QREF_GGUF_MAX_NAME + 1];
    uint32_t type;                    /* qref_ggml_type id */
    int n_dims;
    int64_t ne[QREF_GGUF_MAX_DIMS];   /* ne[0] varies fastest: a PyTorch [out, in] weight is [in, out]. Unused dims are 1 */
    uint64_t numel;
    uint64_t offset;                  /* from the start of the data section */
    uint64_t nbytes;
    const uint8_t *data;              /* inside the parsed buffer, possibly unaligned */
    uint64_t info_offset;             /* file offset of the tensor info */
} qref_gguf_tensor;

typedef struct qref_gguf {
    char *display;            /* file name used in messages */
    qref_blob blob;           /* the mapping when opened with qref_gguf_open */
    const uint8_t *data;
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;     /* file offset of the data section */
    qref_gguf_kv *kvs;        /* in file order */
    size_t kv_count;
    qref_gguf_tensor *tensors; /* in file order */
    size_t tensor_count;
    bool contiguous;          /* offsets are the running sum of padded sizes, as ggml requires */

    /* Private: open-addressing hash indexes of keys and tensor names (slot = index + 1). */
    uint32_t *kv_slots;
    uint32_t *tensor_slots;
    size_t kv_slot_count;
    size_t tensor_slot_count;
} qref_gguf;

/* A view of an array value, valid while the qref_gguf lives. */
typedef struct qref_gguf_array {
    const qref_gguf *file;
    const qref_gguf_kv *kv;
    qref_gguf_type type; /* element type */
    uint64_t count;
} qref_gguf_array;

/* Maps the file at path and parses it. The mapping lives until qref_gguf_free. */
qref_status qref_gguf_open(const char *path, qref_gguf *out, qref_error *err);

/*
 * Parses a GGUF file in data[0..size), naming it display in errors. The buffer must outlive
 * the result. On failure out is left freed.
 */
qref_status qref_gguf_parse(const char *display, const uint8_t *data, size_t size, qref_gguf *out, qref_error *err);

/* Releases everything, the mapping included, and zeroes g. Safe on a zeroed struct. */
void qref_gguf_free(qref_gguf *g);

/* The name of a value type ("UINT32", "STRING", ...), or "unknown" outside the enum. */
const char *qref_gguf_type_name(uint32_t type);

/* The pair with this key, or NULL. */
const qref_gguf_kv *qref_gguf_find_kv(const qref_gguf *g, const char *key);

/*
 * Typed getters. A missing key or a value of another type is QREF_ERR_INVALID with the key,
 * the type found and the type expected. The integer getters accept any scalar integer type
 * whose value fits, because converters write block_count as UINT32 where docs/gguf.md says
 * UINT64. get_f64 accepts FLOAT32 and FLOAT64, get_f32 only FLOAT32.
 */
qref_status qref_gguf_get_u32(const qref_gguf *g, const char *key, uint32_t *out, qref_error *err);
qref_status qref_gguf_get_i32(const qref_gguf *g, const char *key, int32_t *out, qref_error *err);
qref_status qref_gguf_get_u64(const qref_gguf *g, const char *key, uint64_t *out, qref_error *err);
qref_status qref_gguf_get_i64(const qref_gguf *g, const char *key, int64_t *out, qref_error *err);
qref_status qref_gguf_get_f32(const qref_gguf *g, const char *key, float *out, qref_error *err);
qref_status qref_gguf_get_f64(const qref_gguf *g, const char *key, double *out, qref_error *err);
qref_status qref_gguf_get_bool(const qref_gguf *g, const char *key, bool *out, qref_error *err);
qref_status qref_gguf_get_string(const qref_gguf *g, const char *key, qref_gguf_string *out, qref_error *err);

/*
 * Looks up an array value whose elements have type elem_type (QREF_GGUF_TYPE_COUNT accepts
 * any element type).
 */
qref_status qref_gguf_get_array(const qref_gguf *g, const char *key, qref_gguf_type elem_type,
                                qref_gguf_array *out, qref_error *err);

/* Element i of an array of STRING. */
qref_status qref_gguf_array_get_string(const qref_gguf_array *array, uint64_t i, qref_gguf_string *out,
                                       qref_error *err);

/* Element i of an array of any integer type (a UINT64 above INT64_MAX is an error). */
qref_status qref_gguf_array_get_i64(const qref_gguf_array *array, uint64_t i, int64_t *out, qref_error *err);

/* Element i of an array of FLOAT32. */
qref_status qref_gguf_array_get_f32(const qref_gguf_array *array, uint64_t i, float *out, qref_error *err);

/* The tensor with this name, or NULL. */
const qref_gguf_tensor *qref_gguf_find_tensor(const qref_gguf *g, const char *name);

/* Looks up a tensor. A missing one is QREF_ERR_INVALID naming the file and the tensor. */
qref_status qref_gguf_get_tensor(const qref_gguf *g, const char *name, const qref_gguf_tensor **out,
                                 qref_error *err);

#endif
