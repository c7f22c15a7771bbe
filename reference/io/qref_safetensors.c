/*
 * safetensors reader and writer.
 *
 * The reader follows SafeTensors::read_metadata and Metadata::validate of the reference Rust
 * implementation (huggingface/safetensors, safetensors/src/tensor.rs): bounded header length,
 * a JSON header, entries sorted by data_offsets, contiguous from byte 0 to the end of the
 * file, each span equal to numel x dtype size. Each rule gets its own message, so that a gap
 * and an overlap, or a truncated file and trailing bytes, read differently.
 *
 * The writer lays the header out as the reference serializer does: compact JSON, keys in the
 * order dtype, shape, data_offsets, and spaces up to a multiple of 8 so the data starts
 * 8-aligned. It streams the tensors into a temporary file that is renamed into place.
 */
#include "io/qref_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/qref_checked.h"
#include "io/qref_blob.h"
#include "io/qref_json.h"

/* Nesting of a header: the root object, a tensor object, its shape array. */
#define HEADER_MAX_DEPTH 3

/* dtype names that newer safetensors releases define but qref_dtype does not implement. */
static const char *const unsupported_dtypes[] = {
    "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64",
};

/* One header entry before the data pointers are set. */
typedef struct entry_span {
    size_t index; /* into tensors.items */
    uint64_t begin;
    uint64_t end;
} entry_span;

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy != NULL)
        memcpy(copy, s, n);
    return copy;
}

void qref_safetensors_free(qref_safetensors *st)
{
    if (st == NULL)
        return;
    qref_tensor_set_free(&st->tensors);
    for (size_t i = 0; i < st->metadata_count; i++) {
        free(st->metadata[i].key);
        free(st->metadata[i].value);
    }
    free(st->metadata);
    free(st->display);
    memset(st, 0, sizeof *st);
}

/* ---- Reader: one header entry ------------------------------------------------------------ */

static qref_status parse_metadata(const char *display, const cJSON *item, qref_safetensors *out, qref_error *err)
{
    if (!cJSON_IsObject(item))
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: \"__metadata__\" is %s, expected an object mapping strings to strings", display,
                              qref_json_type_name(item));
    size_t count = 0;
    for (const cJSON *child = item->child; child != NULL; child = child->next)
        count++;
    if (count == 0)
        return QREF_OK;
    out->metadata = calloc(count, sizeof *out->metadata);
    if (out->metadata == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu metadata entries", display, count);

    for (const cJSON *child = item->child; child != NULL; child = child->next) {
        if (!cJSON_IsString(child)) {
            char found[96];
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: \"__metadata__\" key \"%.200s\": found %s, expected a string", display,
                                  child->string, qref_json_describe(child, found, sizeof found));
        }
        qref_safetensors_meta *meta = &out->metadata[out->metadata_count];
        meta->key = copy_string(child->string);
        meta->value = copy_string(child->valuestring);
        out->metadata_count++;
        if (meta->key == NULL || meta->value == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for metadata", display);
    }
    return QREF_OK;
}

static qref_status parse_dtype(const char *display, const char *name, const cJSON *item, qref_dtype *dtype,
                               qref_error *err)
{
    char found[96];
    if (!cJSON_IsString(item))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%.200s\": dtype: found %s, expected a string",
                              display, name, qref_json_describe(item, found, sizeof found));
    if (qref_dtype_parse(item->valuestring, dtype) == 0)
        return QREF_OK;
    for (size_t i = 0; i < sizeof unsupported_dtypes / sizeof unsupported_dtypes[0]; i++) {
        if (strcmp(item->valuestring, unsupported_dtypes[i]) == 0)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                                  "%s: tensor \"%.200s\": dtype %s is defined by safetensors but not supported "
                                  "by this version",
                                  display, name, unsupported_dtypes[i]);
    }
    return qref_error_set(err, QREF_ERR_INVALID,
                          "%s: tensor \"%.200s\": unknown dtype \"%.64s\", expected one of BOOL, U8, I8, F8_E4M3, F8_E5M2, "
                          "I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64",
                          display, name, item->valuestring);
}

static qref_status parse_shape(const char *display, const char *name, const cJSON *item, qref_tensor *tensor,
                               qref_error *err)
{
    if (!cJSON_IsArray(item))
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor \"%.200s\": shape is %s, expected an array of non-negative integers",
                              display, name, qref_json_type_name(item));
    int ndim = cJSON_GetArraySize(item);
    if (ndim > QREF_MAX_DIMS)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor \"%.200s\": shape has %d dimensions, the maximum is %d", display, name,
                              ndim, QREF_MAX_DIMS);
    tensor->ndim = ndim;
    int i = 0;
    for (const cJSON *dim = item->child; dim != NULL; dim = dim->next, i++) {
        char label[256];
        snprintf(label, sizeof label, "tensor \"%.200s\": shape[%d]", name, i);
        qref_status status = qref_json_item_int(display, label, dim, 0, INT64_MAX, &tensor->shape[i], err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

static qref_status parse_offsets(const char *display, const char *name, const cJSON *item, entry_span *span,
                                 qref_error *err)
{
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor \"%.200s\": data_offsets is %s of %d elements, expected an array of "
                              "exactly two integers [begin, end]",
                              display, name, qref_json_type_name(item),
                              cJSON_IsArray(item) ? cJSON_GetArraySize(item) : 0);
    int64_t bounds[2];
    char label[256];
    snprintf(label, sizeof label, "tensor \"%.200s\": data_offsets[0]", name);
    qref_status status = qref_json_item_int(display, label, item->child, 0, INT64_MAX, &bounds[0], err);
    if (status != QREF_OK)
        return status;
    snprintf(label, sizeof label, "tensor \"%.200s\": data_offsets[1]", name);
    status = qref_json_item_int(display, label, item->child->next, 0, INT64_MAX, &bounds[1], err);
    if (status != QREF_OK)
        return status;
    if (bounds[0] > bounds[1])
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor \"%.200s\": data_offsets [%" PRId64 ", %" PRId64 "] has begin after end",
                              display, name, bounds[0], bounds[1]);
    span->begin = (uint64_t)bounds[0];
    span->end = (uint64_t)bounds[1];
    return QREF_OK;
}

/* Parses one tensor entry {dtype, shape, data_offsets} into tensor and span. */
static qref_status parse_tensor_entry(const char *display, const cJSON *item, qref_tensor *tensor,
                                      entry_span *span, qref_error *err)
{
    const char *name = item->string;
    size_t name_length = strlen(name);
    if (name_length == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: a tensor has an empty name", display);
    if (name_length > QREF_SAFETENSORS_MAX_NAME)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor name \"%.64s...\" is %zu bytes long, the limit is %d bytes", display, name,
                              name_length, QREF_SAFETENSORS_MAX_NAME);
    if (!cJSON_IsObject(item))
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor \"%.200s\" is %s, expected an object with dtype, shape and data_offsets",
                              display, name, qref_json_type_name(item));

    /* Exactly the three keys; the JSON layer has already rejected repeats. */
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *child = item->child; child != NULL; child = child->next) {
        if (strcmp(child->string, "dtype") == 0)
            dtype = child;
        else if (strcmp(child->string, "shape") == 0)
            shape = child;
        else if (strcmp(child->string, "data_offsets") == 0)
            offsets = child;
        else
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: tensor \"%.200s\": unexpected key \"%.100s\", expected only dtype, shape "
                                  "and data_offsets",
                                  display, name, child->string);
    }
    const char *missing = NULL;
    if (offsets == NULL)
        missing = "data_offsets";
    if (shape == NULL)
        missing = "shape";
    if (dtype == NULL)
        missing = "dtype";
    if (missing != NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%.200s\": missing key \"%s\"", display, name,
                              missing);

    tensor->name = copy_string(name);
    if (tensor->name == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for tensor names", display);
    qref_status status = parse_dtype(display, name, dtype, &tensor->dtype, err);
    if (status == QREF_OK)
        status = parse_shape(display, name, shape, tensor, err);
    if (status == QREF_OK)
        status = parse_offsets(display, name, offsets, span, err);
    if (status != QREF_OK)
        return status;

    /* numel = prod(shape) and nbytes = numel x dtype size, both checked for 64-bit overflow. */
    uint64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < tensor->ndim && !overflow; i++)
        overflow = !qref_mul_u64(numel, (uint64_t)tensor->shape[i], &numel);
    uint64_t nbytes = 0;
    if (!overflow)
        overflow = !qref_mul_u64(numel, qref_dtype_size(tensor->dtype), &nbytes);
    char shape_text[256];
    qref_tensor_shape_string(tensor, shape_text, sizeof shape_text);
    if (overflow)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor \"%.200s\": the byte size of shape %s with dtype %s overflows 64 bits",
                              display, name, shape_text, qref_dtype_name(tensor->dtype));
    if (span->end - span->begin != nbytes)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor \"%.200s\": data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                              " bytes, but shape %s with dtype %s needs %" PRIu64 " bytes",
                              display, name, span->begin, span->end, span->end - span->begin, shape_text,
                              qref_dtype_name(tensor->dtype), nbytes);
    tensor->numel = numel;
    tensor->nbytes = nbytes;
    return QREF_OK;
}

/* ---- Reader: layout of the data buffer --------------------------------------------------- */

static int compare_spans(const void *a, const void *b)
{
    const entry_span *sa = a;
    const entry_span *sb = b;
    if (sa->begin != sb->begin)
        return sa->begin < sb->begin ? -1 : 1;
    if (sa->end != sb->end)
        return sa->end < sb->end ? -1 : 1;
    return 0;
}

/*
 * Checks that the spans, sorted by (begin, end), tile [0, data_size) exactly: the first
 * begins at 0, each begins where the previous ended, the last ends at data_size.
 */
static qref_status check_layout(const char *display, const qref_tensor *items, entry_span *spans, size_t count,
                                uint64_t data_size, qref_error *err)
{
    if (count > 1)
        qsort(spans, count, sizeof *spans, compare_spans);
    uint64_t covered = 0;
    const char *previous = NULL;
    uint64_t previous_begin = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = items[spans[i].index].name;
        if (spans[i].end > data_size)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: tensor \"%.200s\": data_offsets [%" PRIu64 ", %" PRIu64
                                  "] run past the end of the data buffer of %" PRIu64
                                  " bytes (file truncated, or offsets past the end)",
                                  display, name, spans[i].begin, spans[i].end, data_size);
        if (spans[i].begin < covered)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: tensor \"%.200s\": data_offsets [%" PRIu64 ", %" PRIu64
                                  "] overlap tensor \"%.200s\" [%" PRIu64 ", %" PRIu64
                                  "]; each byte must belong to one tensor",
                                  display, name, spans[i].begin, spans[i].end, previous, previous_begin, covered);
        if (spans[i].begin > covered) {
            if (previous == NULL)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: gap in the data buffer: bytes [0, %" PRIu64
                                      ") belong to no tensor; the first tensor \"%.200s\" begins at %" PRIu64,
                                      display, spans[i].begin, name, spans[i].begin);
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: gap in the data buffer: bytes [%" PRIu64 ", %" PRIu64
                                  ") between tensor \"%.200s\" and tensor \"%.200s\" belong to no tensor",
                                  display, covered, spans[i].begin, previous, name);
        }
        covered = spans[i].end;
        previous = name;
        previous_begin = spans[i].begin;
    }
    if (covered != data_size)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %" PRIu64 " trailing bytes after the last tensor: the data buffer holds %" PRIu64
                              " bytes, the tensors cover %" PRIu64,
                              display, data_size - covered, data_size, covered);
    return QREF_OK;
}

/* ---- Reader ------------------------------------------------------------------------------ */

/* Steps 1-2: the 8-byte length N and the bounds of the header. */
static qref_status read_header_length(const char *display, size_t size, const uint8_t *data, uint64_t *length,
                                      qref_error *err)
{
    if (size < 8)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: file is %zu bytes, expected at least 8 (the header length field)", display, size);
    uint64_t n = qref_load_u64(data);
    if (n > QREF_SAFETENSORS_MAX_HEADER)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: header length %" PRIu64 " exceeds the limit of %llu bytes", display, n,
                              QREF_SAFETENSORS_MAX_HEADER);
    uint64_t header_end;
    if (!qref_add_u64(8, n, &header_end) || header_end > size)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: header length %" PRIu64 " runs past the end of the file: 8 + %" PRIu64
                              " bytes needed, the file has %zu (file truncated?)",
                              display, n, n, size);
    *length = n;
    return QREF_OK;
}

qref_status qref_safetensors_parse(const char *display, const uint8_t *data, size_t size,
                                   qref_safetensors *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    out->display = copy_string(display);
    if (out->display == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);

    /* Steps 1-2: header length. */
    uint64_t header_length = 0;
    qref_status status = read_header_length(display, size, data, &header_length, err);
    if (status != QREF_OK) {
        qref_safetensors_free(out);
        return status;
    }
    out->header_size = header_length;

    /* Step 3: the header is strict JSON (UTF-8, no repeated keys, whitespace around allowed). */
    char header_display[512];
    snprintf(header_display, sizeof header_display, "%s header", display);
    cJSON *root = NULL;
    status = qref_json_parse(header_display, (const char *)data + 8, (size_t)header_length, HEADER_MAX_DEPTH, &root,
                             err);
    if (status != QREF_OK) {
        qref_safetensors_free(out);
        return status;
    }
    if (!cJSON_IsObject(root)) {
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: the header is %s, expected a JSON object", display,
                                qref_json_type_name(root));
        cJSON_Delete(root);
        qref_safetensors_free(out);
        return status;
    }

    /* Step 4: "__metadata__" and the tensor entries. */
    size_t tensor_count = 0;
    for (const cJSON *child = root->child; child != NULL; child = child->next)
        tensor_count += strcmp(child->string, "__metadata__") != 0;
    entry_span *spans = NULL;
    if (tensor_count > 0) {
        out->tensors.items = calloc(tensor_count, sizeof *out->tensors.items);
        spans = calloc(tensor_count, sizeof *spans);
        if (out->tensors.items == NULL || spans == NULL)
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu tensors", display, tensor_count);
    }
    for (const cJSON *child = root->child; child != NULL && status == QREF_OK; child = child->next) {
        if (strcmp(child->string, "__metadata__") == 0) {
            status = parse_metadata(display, child, out, err);
            continue;
        }
        size_t index = out->tensors.count++;
        out->tensors.items[index].file = out->display;
        spans[index].index = index;
        status = parse_tensor_entry(display, child, &out->tensors.items[index], &spans[index], err);
    }
    cJSON_Delete(root);

    /* Step 5: the spans tile the data buffer exactly. */
    uint64_t data_start = 8 + header_length;
    uint64_t data_size = (uint64_t)size - data_start;
    if (status == QREF_OK)
        status = check_layout(display, out->tensors.items, spans, tensor_count, data_size, err);
    if (status == QREF_OK) {
        for (size_t i = 0; i < tensor_count; i++)
            out->tensors.items[spans[i].index].data = data + data_start + spans[i].begin;
    }
    free(spans);
    if (status != QREF_OK) {
        qref_safetensors_free(out);
        return status;
    }

    /* Step 6: sort by name for lookups. Names are unique because JSON keys are. */
    qref_tensor_set_sort(&out->tensors);
    return QREF_OK;
}

/* ---- Writer ------------------------------------------------------------------------------ */

typedef struct text_buffer {
    char *data;
    size_t length;
    size_t capacity;
    bool failed;
} text_buffer;

static void text_append(text_buffer *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->length + n + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (b->length + n + 1 > capacity)
            capacity *= 2;
        char *grown = realloc(b->data, capacity);
        if (grown == NULL) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, s, n);
    b->length += n;
    b->data[b->length] = '\0';
}

static void text_append_str(text_buffer *b, const char *s)
{
    text_append(b, s, strlen(s));
}

/* Appends s as a JSON string: quotes, backslashes and control bytes escaped, UTF-8 kept. */
static void text_append_json_string(text_buffer *b, const char *s)
{
    text_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char escape[8];
        switch (*p) {
        case '"': text_append(b, "\\\"", 2); break;
        case '\\': text_append(b, "\\\\", 2); break;
        case '\n': text_append(b, "\\n", 2); break;
        case '\r': text_append(b, "\\r", 2); break;
        case '\t': text_append(b, "\\t", 2); break;
        case '\b': text_append(b, "\\b", 2); break;
        case '\f': text_append(b, "\\f", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(escape, sizeof escape, "\\u%04x", *p);
                text_append(b, escape, 6);
            } else {
                text_append(b, (const char *)p, 1);
            }
        }
    }
    text_append(b, "\"", 1);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns a name that appears twice in names[0..count), or NULL. Sorts a copy of the array. */
static const char *find_duplicate(const char **names, size_t count)
{
    if (count < 2)
        return NULL;
    qsort(names, count, sizeof *names, compare_strings);
    for (size_t i = 1; i < count; i++) {
        if (strcmp(names[i - 1], names[i]) == 0)
            return names[i];
    }
    return NULL;
}

/* Validates the entries and computes each one's byte size into sizes[]. */
static qref_status check_write_entries(const char *path, const qref_safetensors_entry *entries, size_t count,
                                       const qref_safetensors_meta *metadata, size_t meta_count, uint64_t *sizes,
                                       qref_error *err)
{
    for (size_t i = 0; i < count; i++) {
        const qref_safetensors_entry *e = &entries[i];
        size_t name_length = e->name != NULL ? strlen(e->name) : 0;
        if (name_length == 0 || name_length > QREF_SAFETENSORS_MAX_NAME)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor %zu: name of %zu bytes, expected 1 to %d bytes",
                                  path, i, name_length, QREF_SAFETENSORS_MAX_NAME);
        if (strcmp(e->name, "__metadata__") == 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: tensor %zu: \"__metadata__\" is reserved for the metadata map", path, i);
        if (!qref_json_utf8_valid(e->name, name_length))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor %zu: name is not valid UTF-8", path, i);
        if ((unsigned)e->dtype >= QREF_DTYPE_COUNT)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%.200s\": dtype %d is not a qref_dtype",
                                  path, e->name, (int)e->dtype);
        if (e->ndim < 0 || e->ndim > QREF_MAX_DIMS)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%.200s\": %d dimensions, expected 0 to %d",
                                  path, e->name, e->ndim, QREF_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0 || !qref_mul_u64(numel, (uint64_t)e->shape[d], &numel))
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: tensor \"%.200s\": shape[%d] = %lld is negative or overflows the size",
                                      path, e->name, d, (long long)e->shape[d]);
        }
        if (!qref_mul_u64(numel, qref_dtype_size(e->dtype), &sizes[i]) || sizes[i] > SIZE_MAX)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%.200s\": byte size overflows", path, e->name);
        if (sizes[i] > 0 && e->data == NULL)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%.200s\": data is NULL for %" PRIu64 " bytes",
                                  path, e->name, sizes[i]);
    }
    for (size_t i = 0; i < meta_count; i++) {
        const qref_safetensors_meta *m = &metadata[i];
        if (m->key == NULL || m->value == NULL || !qref_json_utf8_valid(m->key, strlen(m->key)) ||
            !qref_json_utf8_valid(m->value, strlen(m->value)))
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: metadata entry %zu: key and value must be non-NULL UTF-8 strings", path, i);
    }

    /* Names and metadata keys must be unique, as the reader rejects repeated JSON keys. */
    size_t most = count > meta_count ? count : meta_count;
    const char **names = malloc((most ? most : 1) * sizeof *names);
    if (names == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < count; i++)
        names[i] = entries[i].name;
    const char *duplicate = find_duplicate(names, count);
    if (duplicate != NULL) {
        qref_error_set(err, QREF_ERR_INVALID, "%s: tensor name \"%.200s\" is given twice", path, duplicate);
        free(names);
        return QREF_ERR_INVALID;
    }
    for (size_t i = 0; i < meta_count; i++)
        names[i] = metadata[i].key;
    duplicate = find_duplicate(names, meta_count);
    if (duplicate != NULL) {
        qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" is given twice", path, duplicate);
        free(names);
        return QREF_ERR_INVALID;
    }
    free(names);
    return QREF_OK;
}

/* Builds the padded header text for entries laid out back to back in the given order. */
static qref_status build_header(const char *path, const qref_safetensors_entry *entries, size_t count,
                                const qref_safetensors_meta *metadata, size_t meta_count, const uint64_t *sizes,
                                text_buffer *header, qref_error *err)
{
    text_append_str(header, "{");
    bool first = true;
    if (meta_count > 0) {
        text_append_str(header, "\"__metadata__\":{");
        for (size_t i = 0; i < meta_count; i++) {
            if (i > 0)
                text_append_str(header, ",");
            text_append_json_string(header, metadata[i].key);
            text_append_str(header, ":");
            text_append_json_string(header, metadata[i].value);
        }
        text_append_str(header, "}");
        first = false;
    }

    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        const qref_safetensors_entry *e = &entries[i];
        char number[48];
        if (!first)
            text_append_str(header, ",");
        first = false;
        text_append_json_string(header, e->name);
        text_append_str(header, ":{\"dtype\":");
        text_append_json_string(header, qref_dtype_name(e->dtype));
        text_append_str(header, ",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(number, sizeof number, "%s%lld", d > 0 ? "," : "", (long long)e->shape[d]);
            text_append_str(header, number);
        }
        uint64_t end;
        if (!qref_add_u64(offset, sizes[i], &end) || end > INT64_MAX)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: the tensors' total size overflows", path);
        snprintf(number, sizeof number, "%" PRIu64 ",%" PRIu64, offset, end);
        text_append_str(header, "],\"data_offsets\":[");
        text_append_str(header, number);
        text_append_str(header, "]}");
        offset = end;
    }
    text_append_str(header, "}");

    /* Pad with spaces so that 8 + N, the start of the data, is a multiple of 8. */
    while (!header->failed && header->length % 8 != 0)
        text_append_str(header, " ");
    if (header->failed)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for the header", path);
    if (header->length > QREF_SAFETENSORS_MAX_HEADER)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: header of %zu bytes exceeds the limit of %llu bytes",
                              path, header->length, QREF_SAFETENSORS_MAX_HEADER);
    return QREF_OK;
}

qref_status qref_safetensors_write(const char *path, const qref_safetensors_entry *entries,
                                   size_t count, const qref_safetensors_meta *metadata,
                                   size_t meta_count, qref_error *err)
{
    /* Step 1: validate the entries and lay them out back to back. */
    uint64_t *sizes = calloc(count ? count : 1, sizeof *sizes);
    if (sizes == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    text_buffer header = {0};
    qref_status status = check_write_entries(path, entries, count, metadata, meta_count, sizes, err);
    if (status == QREF_OK)
        status = build_header(path, entries, count, metadata, meta_count, sizes, &header, err);
    if (status != QREF_OK) {
        free(sizes);
        free(header.data);
        return status;
    }

    /* Step 2: stream length, header and data into a temporary file next to path, then rename. */
    qref_atomic_file file;
    status = qref_atomic_file_open(&file, path, err);
    if (status == QREF_OK) {
        uint8_t length_field[8];
        qref_store_u64(length_field, (uint64_t)header.length);
        qref_atomic_file_write(&file, length_field, sizeof length_field);
        qref_atomic_file_write(&file, header.data, header.length);
        for (size_t i = 0; i < count; i++)
            qref_atomic_file_write(&file, entries[i].data, (size_t)sizes[i]);
        status = qref_atomic_file_commit(&file, err);
    }
    free(sizes);
    free(header.data);
    return status;
}
