/*
 * Tensor descriptors shared by every reader: a name, a dtype, a shape and a pointer to the
 * little-endian, row-major bytes inside a mapped file or archive entry.
 */
#ifndef QREF_TENSOR_H
#define QREF_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/qref_dtype.h"

#define QREF_MAX_DIMS 8

typedef struct qref_tensor {
    char *name;
    qref_dtype dtype;
    int ndim;
    int64_t shape[QREF_MAX_DIMS];
    uint64_t numel;
    uint64_t nbytes;
    const uint8_t *data; /* may be unaligned: load through memcpy (qref_load_*) */
    const char *file;    /* display name of the file that holds the tensor */
} qref_tensor;

/* A set of tensors sorted by name. */
typedef struct qref_tensor_set {
    qref_tensor *items;
    size_t count;
} qref_tensor_set;

/* Returns the tensor with this exact name, or NULL. */
const qref_tensor *qref_tensor_set_find(const qref_tensor_set *set, const char *name);

/* Sorts set->items by name; returns the index of the first duplicate name, or -1 when unique. */
long qref_tensor_set_sort(qref_tensor_set *set);

/* Frees the names and the item array. */
void qref_tensor_set_free(qref_tensor_set *set);

/*
 * Checks that every element of a float tensor (F8, F16, BF16, F32, F64) is finite; fails
 * naming the tensor, the first bad element's index and its value. Other dtypes pass.
 */
qref_status qref_tensor_check_finite(const qref_tensor *tensor, qref_error *err);

/*
 * Checks that values[0..count) of tensor `name` (dense f32, shape cols wide) are finite;
 * fails naming the first bad element as [row][col] and its value.
 */
qref_status qref_values_check_finite(const char *name, const float *values, size_t count, size_t cols,
                                     qref_error *err);

/* Formats a shape as "[4096, 1024]" into buf; returns buf. */
char *qref_tensor_shape_string(const qref_tensor *tensor, char *buf, size_t size);

#endif
