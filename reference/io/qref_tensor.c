#include "io/qref_tensor.h"

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
