#include "io/qref_tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare_tensor_names(const void *a, const void *b)
{
    const qref_tensor *ta = a;
    const qref_tensor *tb = b;
    return strcmp(ta->name, tb->name);
}

const qref_tensor *qref_tensor_set_find(const qref_tensor_set *set, const char *name)
{
    size_t low = 0, high = set->count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int order = strcmp(set->items[mid].name, name);
        if (order == 0)
            return &set->items[mid];
        if (order < 0)
            low = mid + 1;
        else
            high = mid;
    }
    return NULL;
}

long qref_tensor_set_sort(qref_tensor_set *set)
{
    if (set->count > 1)
        qsort(set->items, set->count, sizeof set->items[0], compare_tensor_names);
    for (size_t i = 1; i < set->count; i++) {
        if (strcmp(set->items[i - 1].name, set->items[i].name) == 0)
            return (long)i;
    }
    return -1;
}

void qref_tensor_set_free(qref_tensor_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->items[i].name);
    free(set->items);
    set->items = NULL;
    set->count = 0;
}

char *qref_tensor_shape_string(const qref_tensor *tensor, char *buf, size_t size)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < tensor->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "",
                                 (long long)tensor->shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

qref_status qref_values_check_finite(const char *name, const float *values, size_t count, size_t cols,
                                     qref_error *err)
{
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(values[i])) {
            if (cols > 1)
                return qref_error_set(err, QREF_ERR_INVALID, "tensor \"%s\": element [%zu][%zu] is %g, expected a "
                                      "finite weight", name, i / cols, i % cols, values[i]);
            return qref_error_set(err, QREF_ERR_INVALID, "tensor \"%s\": element [%zu] is %g, expected a finite "
                                  "weight", name, i, values[i]);
        }
    }
    return QREF_OK;
}

qref_status qref_tensor_check_finite(const qref_tensor *tensor, qref_error *err)
{
    if (!qref_dtype_is_float(tensor->dtype))
        return QREF_OK;
    size_t element = qref_dtype_size(tensor->dtype);
    size_t cols = tensor->ndim >= 2 ? (size_t)tensor->shape[tensor->ndim - 1] : 1;
    float chunk[1024];
    for (uint64_t start = 0; start < tensor->numel; start += 1024) {
        size_t count = tensor->numel - start < 1024 ? (size_t)(tensor->numel - start) : 1024;
        qref_status status = qref_convert_to_f32(tensor->dtype, tensor->data + start * element, count, chunk, err);
        if (status != QREF_OK)
            return status;
        for (size_t i = 0; i < count; i++) {
            if (isfinite(chunk[i]))
                continue;
            uint64_t index = start + i;
            if (cols > 1)
                return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": element [%llu][%llu] is %g, "
                                      "expected a finite value", tensor->file, tensor->name,
                                      (unsigned long long)(index / cols), (unsigned long long)(index % cols), chunk[i]);
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": element [%llu] is %g, expected a "
                                  "finite value", tensor->file, tensor->name, (unsigned long long)index, chunk[i]);
        }
    }
    return QREF_OK;
}
