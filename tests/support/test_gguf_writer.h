/*
 * A small GGUF v3 writer for tests: metadata pairs, tensors and the file layout of
 * ggml-org/ggml docs/gguf.md (little-endian; alignment 32; tensor data in the order added, each
 * at the next multiple of 32). Header-only, so unit tests and the integration tools that build
 * malformed models share it without another library. Allocation failures abort the test
 * program, which is what a test wants.
 */
#ifndef QCONFORM_TEST_GGUF_WRITER_H
#define QCONFORM_TEST_GGUF_WRITER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_gguf.h"

typedef struct test_gguf_bytes {
    uint8_t *data;
    size_t size, capacity;
} test_gguf_bytes;

typedef struct test_gguf_writer {
    test_gguf_bytes kvs, infos, tensor_data;
    uint64_t kv_count, tensor_count;
} test_gguf_writer;

static inline void test_gguf_put(test_gguf_bytes *b, const void *bytes, size_t n)
{
    if (b->size + n > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (capacity < b->size + n)
            capacity *= 2;
        b->data = realloc(b->data, capacity);
        if (b->data == NULL) {
            fprintf(stderr, "test_gguf_writer: out of memory\n");
            abort();
        }
        b->capacity = capacity;
    }
    if (n > 0)
        memcpy(b->data + b->size, bytes, n);
    b->size += n;
}

static inline void test_gguf_put_u32(test_gguf_bytes *b, uint32_t v)
{
    uint8_t bytes[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    test_gguf_put(b, bytes, 4);
}

static inline void test_gguf_put_u64(test_gguf_bytes *b, uint64_t v)
{
    test_gguf_put_u32(b, (uint32_t)v);
    test_gguf_put_u32(b, (uint32_t)(v >> 32));
}

static inline void test_gguf_put_string(test_gguf_bytes *b, const char *s, size_t n)
{
    test_gguf_put_u64(b, n);
    test_gguf_put(b, s, n);
}

/* Starts a metadata pair: key and value type. */
static inline void test_gguf_key(test_gguf_writer *w, const char *key, uint32_t type)
{
    test_gguf_put_string(&w->kvs, key, strlen(key));
    test_gguf_put_u32(&w->kvs, type);
    w->kv_count++;
}

static inline void test_gguf_kv_u32(test_gguf_writer *w, const char *key, uint32_t value)
{
    test_gguf_key(w, key, QREF_GGUF_TYPE_UINT32);
    test_gguf_put_u32(&w->kvs, value);
}

static inline void test_gguf_kv_f32(test_gguf_writer *w, const char *key, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, 4);
    test_gguf_key(w, key, QREF_GGUF_TYPE_FLOAT32);
    test_gguf_put_u32(&w->kvs, bits);
}

static inline void test_gguf_kv_bool(test_gguf_writer *w, const char *key, bool value)
{
    uint8_t byte = value ? 1 : 0;
    test_gguf_key(w, key, QREF_GGUF_TYPE_BOOL);
    test_gguf_put(&w->kvs, &byte, 1);
}

static inline void test_gguf_kv_string(test_gguf_writer *w, const char *key, const char *value)
{
    test_gguf_key(w, key, QREF_GGUF_TYPE_STRING);
    test_gguf_put_string(&w->kvs, value, strlen(value));
}

static inline void test_gguf_kv_strings(test_gguf_writer *w, const char *key, const char *const *values, size_t n)
{
    test_gguf_key(w, key, QREF_GGUF_TYPE_ARRAY);
    test_gguf_put_u32(&w->kvs, QREF_GGUF_TYPE_STRING);
    test_gguf_put_u64(&w->kvs, n);
    for (size_t i = 0; i < n; i++)
        test_gguf_put_string(&w->kvs, values[i], strlen(values[i]));
}

static inline void test_gguf_kv_f32s(test_gguf_writer *w, const char *key, const float *values, size_t n)
{
    test_gguf_key(w, key, QREF_GGUF_TYPE_ARRAY);
    test_gguf_put_u32(&w->kvs, QREF_GGUF_TYPE_FLOAT32);
    test_gguf_put_u64(&w->kvs, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], 4);
        test_gguf_put_u32(&w->kvs, bits);
    }
}

static inline void test_gguf_kv_i32s(test_gguf_writer *w, const char *key, const int32_t *values, size_t n)
{
    test_gguf_key(w, key, QREF_GGUF_TYPE_ARRAY);
    test_gguf_put_u32(&w->kvs, QREF_GGUF_TYPE_INT32);
    test_gguf_put_u64(&w->kvs, n);
    for (size_t i = 0; i < n; i++)
        test_gguf_put_u32(&w->kvs, (uint32_t)values[i]);
}

/* Bytes of one scalar of a value type; 0 for STRING and ARRAY. */
static inline uint64_t test_gguf_scalar_size(uint32_t type)
{
    static const uint8_t sizes[QREF_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < QREF_GGUF_TYPE_COUNT ? sizes[type] : 0;
}

/* Copies pair kv of a parsed file as stored (key, type and value bytes). */
static inline void test_gguf_copy_kv(test_gguf_writer *w, const qref_gguf *g, const qref_gguf_kv *kv)
{
    uint64_t begin = kv->value_offset, end;
    if (kv->type == QREF_GGUF_TYPE_STRING) {
        uint64_t length;
        memcpy(&length, g->data + begin, 8);
        end = begin + 8 + length;
    } else if (kv->type != QREF_GGUF_TYPE_ARRAY) {
        end = begin + test_gguf_scalar_size(kv->type);
    } else if (kv->elem_type == QREF_GGUF_TYPE_STRING) {
        begin = kv->value_offset - 12;
        end = kv->value_offset;
        if (kv->count > 0) {
            uint64_t last = kv->string_offsets[kv->count - 1], length;
            memcpy(&length, g->data + last, 8);
            end = last + 8 + length;
        }
    } else {
        begin = kv->value_offset - 12;
        end = kv->value_offset + kv->count * test_gguf_scalar_size(kv->elem_type);
    }
    test_gguf_key(w, kv->key, kv->type);
    test_gguf_put(&w->kvs, g->data + begin, (size_t)(end - begin));
}

/* Adds a tensor with n_dims dimensions ne[] of ggml type `type` and its nbytes of data. */
static inline void test_gguf_tensor(test_gguf_writer *w, const char *name, int n_dims, const int64_t *ne,
                                    uint32_t type, const void *data, size_t nbytes)
{
    while (w->tensor_data.size % QREF_GGUF_DEFAULT_ALIGNMENT != 0) {
        uint8_t zero = 0;
        test_gguf_put(&w->tensor_data, &zero, 1);
    }
    test_gguf_put_string(&w->infos, name, strlen(name));
    test_gguf_put_u32(&w->infos, (uint32_t)n_dims);
    for (int d = 0; d < n_dims; d++)
        test_gguf_put_u64(&w->infos, (uint64_t)ne[d]);
    test_gguf_put_u32(&w->infos, type);
    test_gguf_put_u64(&w->infos, w->tensor_data.size);
    test_gguf_put(&w->tensor_data, data, nbytes);
    w->tensor_count++;
}

/* Returns the whole file in a heap buffer of *size bytes and frees the writer's buffers. */
static inline uint8_t *test_gguf_finish(test_gguf_writer *w, size_t *size)
{
    test_gguf_bytes file = {0};
    test_gguf_put(&file, QREF_GGUF_MAGIC, 4);
    test_gguf_put_u32(&file, 3);
    test_gguf_put_u64(&file, w->tensor_count);
    test_gguf_put_u64(&file, w->kv_count);
    test_gguf_put(&file, w->kvs.data, w->kvs.size);
    test_gguf_put(&file, w->infos.data, w->infos.size);
    while (file.size % QREF_GGUF_DEFAULT_ALIGNMENT != 0) {
        uint8_t zero = 0;
        test_gguf_put(&file, &zero, 1);
    }
    test_gguf_put(&file, w->tensor_data.data, w->tensor_data.size);
    free(w->kvs.data);
    free(w->infos.data);
    free(w->tensor_data.data);
    memset(w, 0, sizeof *w);
    *size = file.size;
    return file.data;
}

#endif
