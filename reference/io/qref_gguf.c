/*
 * GGUF reader.
 *
 * The parser walks the file once, front to back, with a cursor that never reads past the
 * buffer, because every field read first checks the bytes remaining. The steps follow the file:
 * header, KV pairs, the alignment, tensor infos, the data section, and the layout of the
 * tensors in it. Each check runs as soon as its bytes are read, so the first broken field is
 * the one reported. Steps 1 to 5 follow gguf_init_from_file_impl in ggml/src/gguf.cpp
 * (ggml-org/ggml), with the extra checks of the header comment in io/qref_gguf.h. Step 6
 * checks what llama.cpp's model loader relies on later: the vocabulary and layer indexes.
 *
 * Nothing is copied from the file except keys (NUL-terminated for lookups) and tensor names;
 * values are read in place through unaligned little-endian loads.
 */
#include "io/qref_gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"
#include "core/qref_dtype.h"

/* Smallest possible records, used to bound the counts. A KV is a key length (8), a key of at
 * least one byte, a value type (4) and a value of at least one byte. A tensor info is a name
 * length (8), a name of at least one byte, n_dims (4), one dimension (8), a type (4) and an
 * offset (8). */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_INFO_BYTES 33u

static const struct {
    const char *name;
    uint32_t size; /* bytes of one value, or 0 for STRING and ARRAY */
} value_types[QREF_GGUF_TYPE_COUNT] = {
    [QREF_GGUF_TYPE_UINT8] = {"UINT8", 1},     [QREF_GGUF_TYPE_INT8] = {"INT8", 1},
    [QREF_GGUF_TYPE_UINT16] = {"UINT16", 2},   [QREF_GGUF_TYPE_INT16] = {"INT16", 2},
    [QREF_GGUF_TYPE_UINT32] = {"UINT32", 4},   [QREF_GGUF_TYPE_INT32] = {"INT32", 4},
    [QREF_GGUF_TYPE_FLOAT32] = {"FLOAT32", 4}, [QREF_GGUF_TYPE_BOOL] = {"BOOL", 1},
    [QREF_GGUF_TYPE_STRING] = {"STRING", 0},   [QREF_GGUF_TYPE_ARRAY] = {"ARRAY", 0},
    [QREF_GGUF_TYPE_UINT64] = {"UINT64", 8},   [QREF_GGUF_TYPE_INT64] = {"INT64", 8},
    [QREF_GGUF_TYPE_FLOAT64] = {"FLOAT64", 8},
};

const char *qref_gguf_type_name(uint32_t type)
{
    return type < QREF_GGUF_TYPE_COUNT ? value_types[type].name : "unknown";
}

/* ---- Cursor ------------------------------------------------------------------------------ */

typedef struct cursor {
    const char *display;
    const uint8_t *data;
    uint64_t size;
    uint64_t pos;
} cursor;

static uint64_t remaining(const cursor *c)
{
    return c->size - c->pos;
}

/* Claims n bytes of the field `what` (described for errors) and advances past them. */
static qref_status take(cursor *c, uint64_t n, const char *what, const uint8_t **out, qref_error *err)
{
    *out = NULL;
    if (n > remaining(c))
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s at byte %" PRIu64 " needs %" PRIu64 " bytes, but the file ends at byte %" PRIu64
                              " (%" PRIu64 " bytes remain; file truncated?)",
                              c->display, what, c->pos, n, c->size, remaining(c));
    *out = c->data + c->pos;
    c->pos += n;
    return QREF_OK;
}

static qref_status take_u32(cursor *c, const char *what, uint32_t *out, qref_error *err)
{
    const uint8_t *p = NULL;
    qref_status status = take(c, 4, what, &p, err);
    if (status == QREF_OK)
        *out = qref_load_u32(p);
    return status;
}

static qref_status take_u64(cursor *c, const char *what, uint64_t *out, qref_error *err)
{
    const uint8_t *p = NULL;
    qref_status status = take(c, 8, what, &p, err);
    if (status == QREF_OK)
        *out = qref_load_u64(p);
    return status;
}

/*
 * Reads a GGUF string: a u64 length no larger than max_length and the bytes remaining, then
 * the bytes. `what` names the string in errors ("KV 3 key").
 */
static qref_status take_string(cursor *c, const char *what, uint64_t max_length, qref_gguf_string *out,
                               qref_error *err)
{
    char field[448];
    snprintf(field, sizeof field, "%s length", what);
    uint64_t length_offset = c->pos;
    uint64_t length;
    qref_status status = take_u64(c, field, &length, err);
    if (status != QREF_OK)
        return status;
    if (length > max_length)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s at byte %" PRIu64 " is %" PRIu64 ", above the limit of %" PRIu64 " bytes",
                              c->display, field, length_offset, length, max_length);
    if (length > remaining(c))
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s at byte %" PRIu64 " is %" PRIu64 ", but only %" PRIu64
                              " bytes remain in the file (truncated, or a corrupt length)",
                              c->display, field, length_offset, length, remaining(c));
    const uint8_t *bytes;
    status = take(c, length, what, &bytes, err);
    out->data = (const char *)bytes;
    out->length = length;
    return status;
}

/* ---- Hash index of names ----------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static qref_status slots_init(size_t count, uint32_t **slots, size_t *slot_count)
{
    size_t n = 16;
    while (n < 2 * count)
        n *= 2;
    *slots = calloc(n, sizeof **slots);
    *slot_count = n;
    return *slots != NULL ? QREF_OK : QREF_ERR_NOMEM;
}

/*
 * Finds the slot of a name: the slot that stores an index whose name equals it, or the empty
 * slot where it belongs. name_of(i) returns the NUL-terminated name of entry i.
 */
typedef const char *(*name_of_fn)(const void *entries, uint32_t index);

static size_t slots_find(const uint32_t *slots, size_t slot_count, const void *entries, name_of_fn name_of,
                         const char *name, size_t length)
{
    size_t mask = slot_count - 1;
    size_t i = (size_t)hash_bytes(name, length) & mask;
    while (slots[i] != 0) {
        const char *other = name_of(entries, slots[i] - 1);
        if (strlen(other) == length && memcmp(other, name, length) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static const char *kv_name(const void *entries, uint32_t index)
{
    return ((const qref_gguf_kv *)entries)[index].key;
}

static const char *tensor_name(const void *entries, uint32_t index)
{
    return ((const qref_gguf_tensor *)entries)[index].name;
}

/* ---- Integer values ---------------------------------------------------------------------- */

/*
 * Reads a value of any integer type at p: unsigned types into *u (with *is_unsigned set),
 * signed types into *s. Returns false for a type that is not an integer type.
 */
static bool load_integer(qref_gguf_type type, const uint8_t *p, bool *is_unsigned, uint64_t *u, int64_t *s)
{
    *is_unsigned = true;
    switch (type) {
    case QREF_GGUF_TYPE_UINT8: *u = p[0]; return true;
    case QREF_GGUF_TYPE_UINT16: *u = qref_load_u16(p); return true;
    case QREF_GGUF_TYPE_UINT32: *u = qref_load_u32(p); return true;
    case QREF_GGUF_TYPE_UINT64: *u = qref_load_u64(p); return true;
    default: break;
    }
    *is_unsigned = false;
    switch (type) {
    case QREF_GGUF_TYPE_INT8: *s = (int8_t)p[0]; return true;
    case QREF_GGUF_TYPE_INT16: *s = (int16_t)qref_load_u16(p); return true;
    case QREF_GGUF_TYPE_INT32: *s = (int32_t)qref_load_u32(p); return true;
    case QREF_GGUF_TYPE_INT64: *s = (int64_t)qref_load_u64(p); return true;
    default: return false;
    }
}

/* ---- Step 1: header ---------------------------------------------------------------------- */

static qref_status read_header(cursor *c, qref_gguf *g, uint64_t *n_tensors, uint64_t *n_kv, qref_error *err)
{
    const uint8_t *magic = NULL;
    qref_status status = take(c, 4, "magic", &magic, err);
    if (status != QREF_OK)
        return status;
    if (memcmp(magic, QREF_GGUF_MAGIC, 4) != 0) {
        char shown[5];
        for (int i = 0; i < 4; i++)
            shown[i] = magic[i] >= 0x20 && magic[i] < 0x7f ? (char)magic[i] : '?';
        shown[4] = '\0';
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: magic at byte 0 is %02x %02x %02x %02x (\"%s\"), expected 47 47 55 46 (\"GGUF\"); "
                              "not a GGUF file",
                              c->display, magic[0], magic[1], magic[2], magic[3], shown);
    }

    /* Versions 2 and 3 share the layout. Version 1 used 32-bit counts and lengths. */
    status = take_u32(c, "version", &g->version, err);
    if (status != QREF_OK)
        return status;
    if (g->version == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: version at byte 4 is 0, expected 2 or 3", c->display);
    /* TODO: big-endian v3 files (recognized by the byte-swapped version) need byte-swapped loads. */
    if ((g->version & 0xFFFFu) == 0)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: version at byte 4 is %" PRIu32 " (0x%08" PRIx32
                              "), a byte-swapped version: big-endian GGUF files are not supported",
                              c->display, g->version, g->version);
    if (g->version == 1)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: version at byte 4 is 1: GGUF v1 is not supported (it stores 32-bit counts and "
                              "lengths); convert the model again with a current llama.cpp to get v3",
                              c->display);
    if (g->version > 3)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: version at byte 4 is %" PRIu32 ", newer than the supported versions 2 and 3",
                              c->display, g->version);

    /* Counts: each record has a minimum size, so the bytes left bound how many can follow. */
    status = take_u64(c, "tensor count", n_tensors, err);
    if (status != QREF_OK)
        return status;
    status = take_u64(c, "KV count", n_kv, err);
    if (status != QREF_OK)
        return status;
    uint64_t left = remaining(c);
    uint64_t fit = left / MIN_TENSOR_INFO_BYTES;
    if (*n_tensors > QREF_GGUF_MAX_TENSORS || *n_tensors > fit)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor count at byte 8 is %" PRIu64 ", above the limit of %" PRIu64
                              ": the %" PRIu64 " bytes after the header hold at most %" PRIu64
                              " tensor infos of %u bytes or more (file truncated?), and the cap is %u",
                              c->display, *n_tensors, fit < QREF_GGUF_MAX_TENSORS ? fit : QREF_GGUF_MAX_TENSORS, left,
                              fit, MIN_TENSOR_INFO_BYTES, QREF_GGUF_MAX_TENSORS);
    left -= *n_tensors * MIN_TENSOR_INFO_BYTES; /* no underflow: n_tensors <= fit */
    fit = left / MIN_KV_BYTES;
    if (*n_kv > QREF_GGUF_MAX_KVS || *n_kv > fit)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: KV count at byte 16 is %" PRIu64 ", above the limit of %" PRIu64
                              ": the %" PRIu64 " bytes after the header and the minimal tensor infos hold at most %"
                              PRIu64 " KVs of %u bytes or more (file truncated?), and the cap is %u",
                              c->display, *n_kv, fit < QREF_GGUF_MAX_KVS ? fit : QREF_GGUF_MAX_KVS, left, fit,
                              MIN_KV_BYTES, QREF_GGUF_MAX_KVS);
    return QREF_OK;
}

/* ---- Step 2: KV pairs -------------------------------------------------------------------- */

/* A key is non-empty printable ASCII (docs/gguf.md: "It must be a valid ASCII string"). */
static qref_status check_key(const cursor *c, const char *where, uint64_t key_offset, qref_gguf_string key,
                             qref_error *err)
{
    if (key.length == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s key at byte %" PRIu64 " is empty", c->display, where,
                              key_offset);
    for (uint64_t i = 0; i < key.length; i++) {
        uint8_t byte = (uint8_t)key.data[i];
        if (byte < 0x20 || byte > 0x7e)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s key at byte %" PRIu64 " has byte 0x%02x at position %" PRIu64
                                  ", expected printable ASCII (GGUF keys are ASCII)",
                                  c->display, where, key_offset, byte, i);
    }
    return QREF_OK;
}

/* A value type read at type_offset must be one of the 13 defined ids. */
static qref_status check_value_type(const cursor *c, const char *where, const char *field, uint64_t type_offset,
                                    uint32_t type, qref_error *err)
{
    if (type >= QREF_GGUF_TYPE_COUNT)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s %s at byte %" PRIu64 " is %" PRIu32
                              ", expected a GGUF value type 0 to 12 (UINT8 ... FLOAT64)",
                              c->display, where, field, type_offset, type);
    return QREF_OK;
}

/* Reads the elements of an array (or one scalar when kv->type is not ARRAY). */
static qref_status read_values(cursor *c, const char *where, qref_gguf_kv *kv, qref_error *err)
{
    uint32_t size = value_types[kv->elem_type].size;

    /* Each string carries its own length, so an array of them gets an index of offsets. */
    if (kv->elem_type == QREF_GGUF_TYPE_STRING) {
        if (kv->type == QREF_GGUF_TYPE_ARRAY && kv->count > 0) {
            kv->string_offsets = malloc((size_t)kv->count * sizeof *kv->string_offsets);
            if (kv->string_offsets == NULL)
                return qref_error_set(err, QREF_ERR_NOMEM, "%s: %s: out of memory for %" PRIu64 " string offsets",
                                      c->display, where, kv->count);
        }
        for (uint64_t i = 0; i < kv->count; i++) {
            char what[400];
            if (kv->type == QREF_GGUF_TYPE_ARRAY) {
                snprintf(what, sizeof what, "%s element %" PRIu64 " string", where, i);
                kv->string_offsets[i] = c->pos;
            } else {
                snprintf(what, sizeof what, "%s string", where);
            }
            qref_gguf_string s;
            qref_status status = take_string(c, what, QREF_GGUF_MAX_STRING, &s, err);
            if (status != QREF_OK)
                return status;
        }
        return QREF_OK;
    }

    /* Fixed-size values: count x size bytes (an array count is already bounded by the bytes left). */
    uint64_t bytes;
    char what[340];
    snprintf(what, sizeof what, "%s %s", where, kv->type == QREF_GGUF_TYPE_ARRAY ? "array elements" : "value");
    if (!qref_mul_u64(kv->count, size, &bytes))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: %" PRIu64 " elements of %" PRIu32 " bytes overflow 64 bits",
                              c->display, what, kv->count, size);
    const uint8_t *values = NULL;
    qref_status status = take(c, bytes, what, &values, err);
    if (status != QREF_OK)
        return status;

    /* docs/gguf.md: a BOOL is 0 or 1, "Anything else is invalid". */
    if (kv->elem_type == QREF_GGUF_TYPE_BOOL) {
        for (uint64_t i = 0; i < kv->count; i++) {
            if (values[i] > 1)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: %s: BOOL value at byte %" PRIu64 " is %u, expected 0 or 1", c->display,
                                      where, kv->value_offset + i, values[i]);
        }
    }
    return QREF_OK;
}

/* Reads KV pair i: key, value type, and the value (an array's element type and count first). */
static qref_status read_kv(cursor *c, qref_gguf *g, size_t index, qref_error *err)
{
    qref_gguf_kv *kv = &g->kvs[index];
    char where[320];
    snprintf(where, sizeof where, "KV %zu", index);

    /* Key: bounded, ASCII, unique. */
    uint64_t key_offset = c->pos;
    qref_gguf_string key;
    char what[340];
    snprintf(what, sizeof what, "%s key", where);
    qref_status status = take_string(c, what, QREF_GGUF_MAX_KEY, &key, err);
    if (status == QREF_OK)
        status = check_key(c, where, key_offset, key, err);
    if (status != QREF_OK)
        return status;
    kv->key = malloc((size_t)key.length + 1);
    if (kv->key == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: %s: out of memory for the key", c->display, where);
    memcpy(kv->key, key.data, (size_t)key.length);
    kv->key[key.length] = '\0';
    g->kv_count = index + 1;

    size_t slot = slots_find(g->kv_slots, g->kv_slot_count, g->kvs, kv_name, kv->key, (size_t)key.length);
    if (g->kv_slots[slot] != 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s key \"%.200s\" at byte %" PRIu64 " duplicates KV %" PRIu32
                              "; keys must be unique",
                              c->display, where, kv->key, key_offset, g->kv_slots[slot] - 1);
    g->kv_slots[slot] = (uint32_t)index + 1;
    snprintf(where, sizeof where, "KV %zu \"%.200s\"", index, kv->key);

    /* Value type. An array adds its element type (never ARRAY) and its count. */
    uint64_t type_offset = c->pos;
    uint32_t type;
    snprintf(what, sizeof what, "%s value type", where);
    status = take_u32(c, what, &type, err);
    if (status == QREF_OK)
        status = check_value_type(c, where, "value type", type_offset, type, err);
    if (status != QREF_OK)
        return status;
    kv->type = (qref_gguf_type)type;
    kv->elem_type = kv->type;
    kv->count = 1;

    if (kv->type == QREF_GGUF_TYPE_ARRAY) {
        uint64_t elem_offset = c->pos;
        uint32_t elem_type;
        snprintf(what, sizeof what, "%s array element type", where);
        status = take_u32(c, what, &elem_type, err);
        if (status == QREF_OK)
            status = check_value_type(c, where, "array element type", elem_offset, elem_type, err);
        if (status != QREF_OK)
            return status;
        if (elem_type == QREF_GGUF_TYPE_ARRAY)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s array element type at byte %" PRIu64
                                  " is ARRAY: nested arrays are not supported (no published model writes them)",
                                  c->display, where, elem_offset);
        kv->elem_type = (qref_gguf_type)elem_type;

        uint64_t count_offset = c->pos;
        snprintf(what, sizeof what, "%s array count", where);
        status = take_u64(c, what, &kv->count, err);
        if (status != QREF_OK)
            return status;
        /* A string element takes at least its 8-byte length. */
        uint32_t min_size = kv->elem_type == QREF_GGUF_TYPE_STRING ? 8 : value_types[kv->elem_type].size;
        uint64_t fit = remaining(c) / min_size;
        if (kv->count > QREF_GGUF_MAX_ARRAY || kv->count > fit)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s array count at byte %" PRIu64 " is %" PRIu64 ", above the limit of %" PRIu64
                                  ": the %" PRIu64 " bytes remaining hold at most %" PRIu64 " %s elements of %" PRIu32
                                  " bytes or more (file truncated?), and the cap is %llu",
                                  c->display, where, count_offset, kv->count, fit < QREF_GGUF_MAX_ARRAY ? fit :
                                  (uint64_t)QREF_GGUF_MAX_ARRAY, remaining(c), fit, value_types[kv->elem_type].name, min_size,
                                  QREF_GGUF_MAX_ARRAY);
    }
    kv->value_offset = c->pos;
    return read_values(c, where, kv, err);
}

/* After the KVs: general.alignment, when present, is a UINT32 power of two. */
static qref_status read_alignment(const cursor *c, qref_gguf *g, qref_error *err)
{
    g->alignment = QREF_GGUF_DEFAULT_ALIGNMENT;
    const qref_gguf_kv *kv = qref_gguf_find_kv(g, "general.alignment");
    if (kv == NULL)
        return QREF_OK;
    if (kv->type != QREF_GGUF_TYPE_UINT32)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: KV \"general.alignment\" at byte %" PRIu64 " has type %s%s%s, expected UINT32",
                              c->display, kv->value_offset, qref_gguf_type_name(kv->type),
                              kv->type == QREF_GGUF_TYPE_ARRAY ? " of " : "",
                              kv->type == QREF_GGUF_TYPE_ARRAY ? qref_gguf_type_name(kv->elem_type) : "");
    uint32_t alignment = qref_load_u32(c->data + kv->value_offset);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: KV \"general.alignment\" at byte %" PRIu64 " is %" PRIu32
                              ", expected a non-zero power of two",
                              c->display, kv->value_offset, alignment);
    g->alignment = alignment;
    return QREF_OK;
}

/* ---- Step 3: tensor infos ---------------------------------------------------------------- */

static qref_status read_tensor_name(cursor *c, qref_gguf *g, size_t index, qref_error *err)
{
    qref_gguf_tensor *t = &g->tensors[index];
    char what[96];
    snprintf(what, sizeof what, "tensor %zu name", index);
    uint64_t name_offset = c->pos;
    qref_gguf_string name;
    qref_status status = take_string(c, what, QREF_GGUF_MAX_NAME, &name, err);
    if (status != QREF_OK)
        return status;
    if (name.length == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s at byte %" PRIu64 " is empty, expected 1 to %d bytes",
                              c->display, what, name_offset, QREF_GGUF_MAX_NAME);
    for (uint64_t i = 0; i < name.length; i++) {
        uint8_t byte = (uint8_t)name.data[i];
        if (byte < 0x20 || byte == 0x7f)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s at byte %" PRIu64 " has control byte 0x%02x at position %" PRIu64
                                  ", expected a name without control characters",
                                  c->display, what, name_offset, byte, i);
    }
    memcpy(t->name, name.data, (size_t)name.length);
    t->name[name.length] = '\0';
    g->tensor_count = index + 1;

    size_t slot = slots_find(g->tensor_slots, g->tensor_slot_count, g->tensors, tensor_name, t->name,
                             (size_t)name.length);
    if (g->tensor_slots[slot] != 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor %zu name \"%s\" at byte %" PRIu64 " duplicates tensor %" PRIu32
                              "; tensor names must be unique",
                              c->display, index, t->name, name_offset, g->tensor_slots[slot] - 1);
    g->tensor_slots[slot] = (uint32_t)index + 1;
    return QREF_OK;
}

/* n_dims, then each ne[j] >= 1, with a product that fits in int64. */
static qref_status read_tensor_shape(cursor *c, qref_gguf_tensor *t, const char *where, qref_error *err)
{
    char what[160];
    uint64_t dims_offset = c->pos;
    uint32_t n_dims;
    snprintf(what, sizeof what, "%s n_dims", where);
    qref_status status = take_u32(c, what, &n_dims, err);
    if (status != QREF_OK)
        return status;
    if (n_dims < 1 || n_dims > QREF_GGUF_MAX_DIMS)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s at byte %" PRIu64 " is %" PRIu32 ", expected 1 to %d",
                              c->display, what, dims_offset, n_dims, QREF_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;

    uint64_t numel = 1;
    for (int j = 0; j < QREF_GGUF_MAX_DIMS; j++) {
        t->ne[j] = 1;
        if (j >= t->n_dims)
            continue;
        uint64_t ne_offset = c->pos;
        uint64_t ne;
        snprintf(what, sizeof what, "%s ne[%d]", where, j);
        status = take_u64(c, what, &ne, err);
        if (status != QREF_OK)
            return status;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s at byte %" PRIu64 " is %" PRIu64 ", expected 1 to %" PRId64, c->display,
                                  what, ne_offset, ne, INT64_MAX);
        if (!qref_mul_u64(numel, ne, &numel) || numel > (uint64_t)INT64_MAX)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s at byte %" PRIu64 " is %" PRIu64
                                  ": the element count of the dimensions so far exceeds %" PRId64,
                                  c->display, what, ne_offset, ne, INT64_MAX);
        t->ne[j] = (int64_t)ne;
    }
    t->numel = numel;
    return QREF_OK;
}

/* The ggml type: a known id, not removed; ne[0] a multiple of its block; a byte size that fits. */
static qref_status read_tensor_type(cursor *c, qref_gguf_tensor *t, const char *where, qref_error *err)
{
    char what[160];
    uint64_t type_offset = c->pos;
    snprintf(what, sizeof what, "%s type", where);
    qref_status status = take_u32(c, what, &t->type, err);
    if (status != QREF_OK)
        return status;
    if (t->type >= QREF_GGML_TYPE_COUNT)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s at byte %" PRIu64 " is %" PRIu32 ", an unknown ggml type (expected below %d)",
                              c->display, what, type_offset, t->type, QREF_GGML_TYPE_COUNT);
    const qref_ggml_type_traits *traits = qref_ggml_type_traits_get(t->type);
    if (traits->block_size == 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s at byte %" PRIu64 " is %" PRIu32 " (%s), a type that ggml removed",
                              c->display, what, type_offset, t->type, traits->name);
    if (t->ne[0] % traits->block_size != 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s: ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRIu32,
                              c->display, where, t->ne[0], traits->name, traits->block_size);

    /* ne[0] is a multiple of the block size, so numel is too: bytes = numel / block * type size. */
    if (!qref_mul_u64(t->numel / traits->block_size, traits->type_size, &t->nbytes))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: %" PRIu64 " elements of %s take more than 2^64 bytes",
                              c->display, where, t->numel, traits->name);
    return QREF_OK;
}

static qref_status read_tensor_info(cursor *c, qref_gguf *g, size_t index, qref_error *err)
{
    qref_gguf_tensor *t = &g->tensors[index];
    t->info_offset = c->pos;
    qref_status status = read_tensor_name(c, g, index, err);
    if (status != QREF_OK)
        return status;

    char where[128];
    snprintf(where, sizeof where, "tensor %zu \"%s\"", index, t->name);
    status = read_tensor_shape(c, t, where, err);
    if (status == QREF_OK)
        status = read_tensor_type(c, t, where, err);
    if (status != QREF_OK)
        return status;

    /* Offset from the start of the data section, a multiple of the alignment. */
    char what[160];
    uint64_t offset_offset = c->pos;
    snprintf(what, sizeof what, "%s offset", where);
    status = take_u64(c, what, &t->offset, err);
    if (status != QREF_OK)
        return status;
    if (t->offset % g->alignment != 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s at byte %" PRIu64 " is %" PRIu64 ", not a multiple of the alignment %" PRIu32,
                              c->display, what, offset_offset, t->offset, g->alignment);
    return QREF_OK;
}

/* ---- Steps 4-5: data section and tensor layout ------------------------------------------- */

/* A tensor's data offset with its index, for sorting by offset. */
typedef struct tensor_span {
    uint64_t offset;
    uint32_t index;
} tensor_span;

static int compare_spans(const void *a, const void *b)
{
    const tensor_span *sa = a;
    const tensor_span *sb = b;
    if (sa->offset != sb->offset)
        return sa->offset < sb->offset ? -1 : 1;
    return sa->index < sb->index ? -1 : sa->index > sb->index;
}

static qref_status check_layout(const cursor *c, qref_gguf *g, qref_error *err)
{
    /* Each tensor lies inside the file: data_offset + offset + nbytes <= size. */
    uint64_t running = 0;
    g->contiguous = true;
    for (size_t i = 0; i < g->tensor_count; i++) {
        qref_gguf_tensor *t = &g->tensors[i];
        uint64_t begin, end;
        if (!qref_add_u64(g->data_offset, t->offset, &begin) || !qref_add_u64(begin, t->nbytes, &end) ||
            end > g->size)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: tensor %zu \"%s\": offset %" PRIu64 " + %" PRIu64
                                  " bytes from the data section at byte %" PRIu64
                                  " runs past the end of the file at byte %" PRIu64 " (truncated, or a bad offset)",
                                  c->display, i, t->name, t->offset, t->nbytes, g->data_offset, g->size);
        t->data = c->data + begin;

        /* ggml's reader wants offset == the sum of the preceding padded sizes. */
        if (t->offset != running)
            g->contiguous = false;
        uint64_t padded = t->nbytes + (g->alignment - t->nbytes % g->alignment) % g->alignment;
        if (!qref_add_u64(running, padded, &running))
            g->contiguous = false;
    }

    /* No two tensors share a byte: sorted by offset, each ends before the next begins. */
    if (g->tensor_count < 2)
        return QREF_OK;
    tensor_span *spans = malloc(g->tensor_count * sizeof *spans);
    if (spans == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu tensors", c->display, g->tensor_count);
    for (size_t i = 0; i < g->tensor_count; i++) {
        spans[i].offset = g->tensors[i].offset;
        spans[i].index = (uint32_t)i;
    }
    qsort(spans, g->tensor_count, sizeof *spans, compare_spans);

    qref_status status = QREF_OK;
    for (size_t i = 1; i < g->tensor_count && status == QREF_OK; i++) {
        const qref_gguf_tensor *previous = &g->tensors[spans[i - 1].index];
        const qref_gguf_tensor *t = &g->tensors[spans[i].index];
        uint64_t previous_end = previous->offset + previous->nbytes; /* no overflow: checked above */
        if (t->offset < previous_end)
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: tensor %" PRIu32 " \"%s\" at data offset %" PRIu64
                                    " overlaps tensor %" PRIu32 " \"%s\", which spans [%" PRIu64 ", %" PRIu64 ")",
                                    c->display, spans[i].index, t->name, t->offset, spans[i - 1].index,
                                    previous->name, previous->offset, previous_end);
    }
    free(spans);
    return status;
}

/* ---- Step 6: references between KVs and tensors ------------------------------------------ */

/* Longest token string accepted: llama.cpp's token-to-piece copy overflowed on a token longer
 * than INT32_MAX (CVE-2025-49847); real vocabularies stay below a few hundred bytes. */
#define MAX_TOKEN_BYTES (1u << 20)

/*
 * Checks an optional tokenizer array against the token count: it must be an ARRAY of
 * elem_type with n_vocab elements.
 */
static qref_status check_token_array(const qref_gguf *g, const char *key, qref_gguf_type elem_type,
                                     uint64_t n_vocab, qref_error *err)
{
    const qref_gguf_kv *kv = qref_gguf_find_kv(g, key);
    if (kv == NULL)
        return QREF_OK;
    qref_gguf_array array;
    qref_status status = qref_gguf_get_array(g, key, elem_type, &array, err);
    if (status != QREF_OK)
        return status;
    if (array.count != n_vocab)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: KV \"%s\" has %" PRIu64 " elements, but tokenizer.ggml.tokens has %" PRIu64
                              " tokens",
                              g->display, key, array.count, n_vocab);
    return QREF_OK;
}

/*
 * Every tokenizer.ggml.*_token_id is an integer below the token count, or the "no token"
 * value that converters write as UINT32 4294967295 or INT32 -1. An id past the table was an
 * out-of-bounds read in llama.cpp (GHSA-g4cc-763q-h9h6).
 */
static qref_status check_special_ids(const qref_gguf *g, uint64_t n_vocab, qref_error *err)
{
    static const char prefix[] = "tokenizer.ggml.";
    static const char suffix[] = "_token_id";
    for (size_t i = 0; i < g->kv_count; i++) {
        const qref_gguf_kv *kv = &g->kvs[i];
        size_t length = strlen(kv->key);
        if (length < sizeof prefix - 1 + sizeof suffix - 1 || strncmp(kv->key, prefix, sizeof prefix - 1) != 0 ||
            strcmp(kv->key + length - (sizeof suffix - 1), suffix) != 0)
            continue;
        bool is_unsigned;
        uint64_t u = 0;
        int64_t s = 0;
        if (kv->type == QREF_GGUF_TYPE_ARRAY ||
            !load_integer(kv->type, g->data + kv->value_offset, &is_unsigned, &u, &s))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: KV \"%s\" has type %s, expected an integer token id",
                                  g->display, kv->key, qref_gguf_type_name(kv->type));
        bool none = is_unsigned ? (kv->type == QREF_GGUF_TYPE_UINT32 && u == UINT32_MAX) : s == -1;
        bool in_range = is_unsigned ? u < n_vocab : s >= 0 && (uint64_t)s < n_vocab;
        if (!none && !in_range) {
            char found[32];
            if (is_unsigned)
                snprintf(found, sizeof found, "%" PRIu64, u);
            else
                snprintf(found, sizeof found, "%" PRId64, s);
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: KV \"%s\" at byte %" PRIu64 " is %s, but the vocabulary has %" PRIu64
                                  " tokens (expected an id below %" PRIu64 ", or 4294967295 / -1 for none)",
                                  g->display, kv->key, kv->value_offset, found, n_vocab, n_vocab);
        }
    }
    return QREF_OK;
}

/* The vocabulary: token strings bounded, the parallel arrays and the ids consistent with it,
 * and as many tokens as the embedding has rows and <arch>.vocab_size says. */
static qref_status check_vocabulary(const qref_gguf *g, const char *arch, qref_error *err)
{
    if (qref_gguf_find_kv(g, "tokenizer.ggml.tokens") == NULL)
        return QREF_OK;
    qref_gguf_array tokens;
    qref_status status = qref_gguf_get_array(g, "tokenizer.ggml.tokens", QREF_GGUF_TYPE_STRING, &tokens, err);
    if (status != QREF_OK)
        return status;
    for (uint64_t i = 0; i < tokens.count; i++) {
        uint64_t length = qref_load_u64(g->data + tokens.kv->string_offsets[i]);
        if (length > MAX_TOKEN_BYTES)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: KV \"tokenizer.ggml.tokens\" element %" PRIu64 " at byte %" PRIu64 " is %" PRIu64
                                  " bytes long, above the limit of %u bytes for a token",
                                  g->display, i, tokens.kv->string_offsets[i], length, MAX_TOKEN_BYTES);
    }

    status = check_token_array(g, "tokenizer.ggml.scores", QREF_GGUF_TYPE_FLOAT32, tokens.count, err);
    if (status == QREF_OK)
        status = check_token_array(g, "tokenizer.ggml.token_type", QREF_GGUF_TYPE_INT32, tokens.count, err);
    if (status == QREF_OK)
        status = check_special_ids(g, tokens.count, err);
    if (status != QREF_OK)
        return status;

    const qref_gguf_tensor *embd = qref_gguf_find_tensor(g, "token_embd.weight");
    if (embd != NULL && (uint64_t)embd->ne[1] != tokens.count)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: tensor \"token_embd.weight\" has %" PRId64 " rows (ne[1]), but "
                              "tokenizer.ggml.tokens has %" PRIu64 " tokens",
                              g->display, embd->ne[1], tokens.count);
    if (arch != NULL) {
        char key[128];
        snprintf(key, sizeof key, "%s.vocab_size", arch);
        uint64_t vocab_size;
        if (qref_gguf_find_kv(g, key) != NULL) {
            status = qref_gguf_get_u64(g, key, &vocab_size, err);
            if (status != QREF_OK)
                return status;
            if (vocab_size != tokens.count)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: KV \"%s\" is %" PRIu64 ", but tokenizer.ggml.tokens has %" PRIu64 " tokens",
                                      g->display, key, vocab_size, tokens.count);
        }
    }
    return QREF_OK;
}

/*
 * Layer tensors "blk.N.*" have N below <arch>.block_count: readers index per-layer tables by
 * N. Layers may be missing (an adapter file covers some), so only the bound is checked.
 */
static qref_status check_block_indexes(const qref_gguf *g, const char *arch, qref_error *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (qref_gguf_find_kv(g, key) == NULL)
        return QREF_OK;
    uint64_t block_count;
    qref_status status = qref_gguf_get_u64(g, key, &block_count, err);
    if (status != QREF_OK)
        return status;
    for (size_t i = 0; i < g->tensor_count; i++) {
        const char *name = g->tensors[i].name;
        if (strncmp(name, "blk.", 4) != 0 || name[4] < '0' || name[4] > '9')
            continue;
        uint64_t layer = 0;
        const char *p = name + 4;
        while (*p >= '0' && *p <= '9' && layer <= block_count)
            layer = layer * 10 + (uint64_t)(*p++ - '0');
        if (layer >= block_count)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: tensor %zu \"%s\" belongs to layer %s%" PRIu64 ", but KV \"%s\" is %" PRIu64,
                                  g->display, i, name, *p >= '0' && *p <= '9' ? "above " : "", layer, key,
                                  block_count);
    }
    return QREF_OK;
}

/* Step 6 checks the vocabulary, and the layer indexes against <arch>.block_count, where
 * arch is general.architecture.
 * TODO: hyper-parameter arithmetic (head counts dividing the embedding length, every layer
 * present) is not checked here; it belongs to the model loader, which knows the architecture. */
static qref_status check_references(const qref_gguf *g, qref_error *err)
{
    char arch[64];
    const char *arch_name = NULL;
    const qref_gguf_kv *kv = qref_gguf_find_kv(g, "general.architecture");
    if (kv != NULL && kv->type == QREF_GGUF_TYPE_STRING) {
        /* docs/gguf.md: "All lowercase ASCII, with only [a-z0-9]+ characters allowed". Other
         * names are kept by the file but select no architecture keys here. */
        qref_gguf_string name = {(const char *)g->data + kv->value_offset + 8, qref_load_u64(g->data + kv->value_offset)};
        bool plain = name.length > 0 && name.length < sizeof arch;
        for (uint64_t i = 0; plain && i < name.length; i++)
            plain = (name.data[i] >= 'a' && name.data[i] <= 'z') || (name.data[i] >= '0' && name.data[i] <= '9');
        if (plain) {
            memcpy(arch, name.data, (size_t)name.length);
            arch[name.length] = '\0';
            arch_name = arch;
        }
    }
    qref_status status = check_vocabulary(g, arch_name, err);
    if (status == QREF_OK && arch_name != NULL)
        status = check_block_indexes(g, arch_name, err);
    return status;
}

/* ---- Parse ------------------------------------------------------------------------------- */

qref_status qref_gguf_parse(const char *display, const uint8_t *data, size_t size, qref_gguf *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    out->display = malloc(strlen(display) + 1);
    if (out->display == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    strcpy(out->display, display);
    out->data = data;
    out->size = size;
    cursor c = {out->display, data, size, 0};

    /* Step 1: magic, version and counts. */
    uint64_t n_tensors = 0, n_kv = 0;
    qref_status status = read_header(&c, out, &n_tensors, &n_kv, err);

    /* Step 2: KV pairs, then the alignment they set. Counts are bounded, so the arrays are too. */
    if (status == QREF_OK) {
        out->kvs = calloc(n_kv > 0 ? (size_t)n_kv : 1, sizeof *out->kvs);
        out->tensors = calloc(n_tensors > 0 ? (size_t)n_tensors : 1, sizeof *out->tensors);
        if (out->kvs == NULL || out->tensors == NULL ||
            slots_init((size_t)n_kv, &out->kv_slots, &out->kv_slot_count) != QREF_OK ||
            slots_init((size_t)n_tensors, &out->tensor_slots, &out->tensor_slot_count) != QREF_OK)
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %" PRIu64 " KVs and %" PRIu64
                                    " tensors", display, n_kv, n_tensors);
    }
    for (uint64_t i = 0; i < n_kv && status == QREF_OK; i++)
        status = read_kv(&c, out, (size_t)i, err);
    if (status == QREF_OK)
        status = read_alignment(&c, out, err);

    /* Step 3: tensor infos. */
    for (uint64_t i = 0; i < n_tensors && status == QREF_OK; i++)
        status = read_tensor_info(&c, out, (size_t)i, err);

    /* Step 4: the data section starts at the next multiple of the alignment. ggml pads only
     * when there are tensors, so a vocabulary-only file may end right after its KVs. */
    if (status == QREF_OK) {
        uint64_t padding = n_tensors > 0 ? (out->alignment - c.pos % out->alignment) % out->alignment : 0;
        if (padding > remaining(&c))
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: padding of %" PRIu64 " bytes after the tensor infos at byte %" PRIu64
                                    " runs past the end of the file at byte %" PRIu64 " (file truncated?)",
                                    display, padding, c.pos, c.size);
        else
            out->data_offset = c.pos + padding;
    }

    /* Step 5: every tensor inside the file, none overlapping. */
    if (status == QREF_OK)
        status = check_layout(&c, out, err);

    /* Step 6: the vocabulary and the layer indexes agree with the tensors and counts. */
    if (status == QREF_OK)
        status = check_references(out, err);

    if (status != QREF_OK)
        qref_gguf_free(out);
    return status;
}

qref_status qref_gguf_open(const char *path, qref_gguf *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    qref_blob blob;
    qref_status status = qref_blob_map_file(path, &blob, err);
    if (status != QREF_OK)
        return status;
    status = qref_gguf_parse(path, blob.data, blob.size, out, err);
    if (status != QREF_OK) {
        qref_blob_free(&blob);
        return status;
    }
    out->blob = blob;
    return QREF_OK;
}

void qref_gguf_free(qref_gguf *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->kv_count; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].string_offsets);
    }
    free(g->kvs);
    free(g->tensors);
    free(g->kv_slots);
    free(g->tensor_slots);
    free(g->display);
    qref_blob_free(&g->blob);
    memset(g, 0, sizeof *g);
}

/* ---- Lookups ----------------------------------------------------------------------------- */

const qref_gguf_kv *qref_gguf_find_kv(const qref_gguf *g, const char *key)
{
    if (g->kv_slots == NULL)
        return NULL;
    size_t slot = slots_find(g->kv_slots, g->kv_slot_count, g->kvs, kv_name, key, strlen(key));
    return g->kv_slots[slot] != 0 ? &g->kvs[g->kv_slots[slot] - 1] : NULL;
}

const qref_gguf_tensor *qref_gguf_find_tensor(const qref_gguf *g, const char *name)
{
    if (g->tensor_slots == NULL)
        return NULL;
    size_t slot = slots_find(g->tensor_slots, g->tensor_slot_count, g->tensors, tensor_name, name, strlen(name));
    return g->tensor_slots[slot] != 0 ? &g->tensors[g->tensor_slots[slot] - 1] : NULL;
}

qref_status qref_gguf_get_tensor(const qref_gguf *g, const char *name, const qref_gguf_tensor **out,
                                 qref_error *err)
{
    *out = qref_gguf_find_tensor(g, name);
    if (*out == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%.200s\" is missing", g->display, name);
    return QREF_OK;
}

/* ---- Typed getters ----------------------------------------------------------------------- */

/* Describes a value's type for messages: "UINT32", "ARRAY of STRING". */
static const char *describe_type(const qref_gguf_kv *kv, char *buf, size_t size)
{
    if (kv->type == QREF_GGUF_TYPE_ARRAY)
        snprintf(buf, size, "ARRAY of %" PRIu64 " %s", kv->count, qref_gguf_type_name(kv->elem_type));
    else
        snprintf(buf, size, "%s", qref_gguf_type_name(kv->type));
    return buf;
}

static qref_status find_scalar(const qref_gguf *g, const char *key, const char *expected, const qref_gguf_kv **out,
                               qref_error *err)
{
    *out = qref_gguf_find_kv(g, key);
    if (*out == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" is missing, expected %s", g->display,
                              key, expected);
    if ((*out)->type == QREF_GGUF_TYPE_ARRAY) {
        char found[64];
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" is %s, expected %s", g->display,
                              key, describe_type(*out, found, sizeof found), expected);
    }
    return QREF_OK;
}


/*
 * Reads an integer value of any integer type and checks its range: for want_unsigned the
 * result goes to *u_out and must be <= max_unsigned, otherwise to *s_out within
 * [min_signed, max_signed].
 */
static qref_status get_integer(const qref_gguf *g, const char *key, const char *expected, bool want_unsigned,
                               uint64_t max_unsigned, int64_t min_signed, int64_t max_signed, uint64_t *u_out,
                               int64_t *s_out, qref_error *err)
{
    const qref_gguf_kv *kv;
    qref_status status = find_scalar(g, key, expected, &kv, err);
    if (status != QREF_OK)
        return status;
    bool is_unsigned;
    uint64_t u = 0;
    int64_t s = 0;
    if (!load_integer(kv->type, g->data + kv->value_offset, &is_unsigned, &u, &s))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" has type %s, expected %s",
                              g->display, key, qref_gguf_type_name(kv->type), expected);
    char found[32];
    if (is_unsigned)
        snprintf(found, sizeof found, "%" PRIu64, u);
    else
        snprintf(found, sizeof found, "%" PRId64, s);

    bool fits;
    if (want_unsigned) {
        fits = is_unsigned ? u <= max_unsigned : s >= 0 && (uint64_t)s <= max_unsigned;
        *u_out = is_unsigned ? u : (uint64_t)s;
    } else {
        fits = is_unsigned ? u <= (uint64_t)max_signed : s >= min_signed && s <= max_signed;
        *s_out = is_unsigned ? (int64_t)u : s;
    }
    if (!fits)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" (%s) is %s, which does not fit in %s",
                              g->display, key, qref_gguf_type_name(kv->type), found, expected);
    return QREF_OK;
}

qref_status qref_gguf_get_u32(const qref_gguf *g, const char *key, uint32_t *out, qref_error *err)
{
    uint64_t u = 0;
    qref_status status = get_integer(g, key, "UINT32", true, UINT32_MAX, 0, 0, &u, NULL, err);
    if (status == QREF_OK)
        *out = (uint32_t)u;
    return status;
}

qref_status qref_gguf_get_u64(const qref_gguf *g, const char *key, uint64_t *out, qref_error *err)
{
    return get_integer(g, key, "UINT64", true, UINT64_MAX, 0, 0, out, NULL, err);
}

qref_status qref_gguf_get_i32(const qref_gguf *g, const char *key, int32_t *out, qref_error *err)
{
    int64_t s = 0;
    qref_status status = get_integer(g, key, "INT32", false, 0, INT32_MIN, INT32_MAX, NULL, &s, err);
    if (status == QREF_OK)
        *out = (int32_t)s;
    return status;
}

qref_status qref_gguf_get_i64(const qref_gguf *g, const char *key, int64_t *out, qref_error *err)
{
    return get_integer(g, key, "INT64", false, 0, INT64_MIN, INT64_MAX, NULL, out, err);
}

static qref_status get_typed(const qref_gguf *g, const char *key, qref_gguf_type type, const qref_gguf_kv **out,
                             qref_error *err)
{
    qref_status status = find_scalar(g, key, qref_gguf_type_name(type), out, err);
    if (status != QREF_OK)
        return status;
    if ((*out)->type != type)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" has type %s, expected %s",
                              g->display, key, qref_gguf_type_name((*out)->type), qref_gguf_type_name(type));
    return QREF_OK;
}

qref_status qref_gguf_get_f32(const qref_gguf *g, const char *key, float *out, qref_error *err)
{
    const qref_gguf_kv *kv;
    qref_status status = get_typed(g, key, QREF_GGUF_TYPE_FLOAT32, &kv, err);
    if (status == QREF_OK)
        *out = qref_load_f32(g->data + kv->value_offset);
    return status;
}

qref_status qref_gguf_get_f64(const qref_gguf *g, const char *key, double *out, qref_error *err)
{
    const qref_gguf_kv *kv;
    qref_status status = find_scalar(g, key, "FLOAT32 or FLOAT64", &kv, err);
    if (status != QREF_OK)
        return status;
    const uint8_t *p = g->data + kv->value_offset;
    if (kv->type == QREF_GGUF_TYPE_FLOAT32) {
        *out = qref_load_f32(p);
    } else if (kv->type == QREF_GGUF_TYPE_FLOAT64) {
        uint64_t bits = qref_load_u64(p);
        memcpy(out, &bits, sizeof *out);
    } else {
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" has type %s, expected FLOAT32 or "
                              "FLOAT64", g->display, key, qref_gguf_type_name(kv->type));
    }
    return QREF_OK;
}

qref_status qref_gguf_get_bool(const qref_gguf *g, const char *key, bool *out, qref_error *err)
{
    const qref_gguf_kv *kv;
    qref_status status = get_typed(g, key, QREF_GGUF_TYPE_BOOL, &kv, err);
    if (status == QREF_OK)
        *out = g->data[kv->value_offset] != 0;
    return status;
}

static qref_gguf_string load_string(const qref_gguf *g, uint64_t offset)
{
    qref_gguf_string s = {(const char *)g->data + offset + 8, qref_load_u64(g->data + offset)};
    return s;
}

qref_status qref_gguf_get_string(const qref_gguf *g, const char *key, qref_gguf_string *out, qref_error *err)
{
    const qref_gguf_kv *kv;
    qref_status status = get_typed(g, key, QREF_GGUF_TYPE_STRING, &kv, err);
    if (status == QREF_OK)
        *out = load_string(g, kv->value_offset);
    return status;
}

/* ---- Arrays ------------------------------------------------------------------------------ */

qref_status qref_gguf_get_array(const qref_gguf *g, const char *key, qref_gguf_type elem_type,
                                qref_gguf_array *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    const qref_gguf_kv *kv = qref_gguf_find_kv(g, key);
    const char *expected = elem_type == QREF_GGUF_TYPE_COUNT ? "an ARRAY" : qref_gguf_type_name(elem_type);
    if (kv == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" is missing, expected an ARRAY%s%s",
                              g->display, key, elem_type == QREF_GGUF_TYPE_COUNT ? "" : " of ",
                              elem_type == QREF_GGUF_TYPE_COUNT ? "" : expected);
    if (kv->type != QREF_GGUF_TYPE_ARRAY ||
        (elem_type != QREF_GGUF_TYPE_COUNT && kv->elem_type != elem_type)) {
        char found[64];
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" is %s, expected an ARRAY%s%s",
                              g->display, key, describe_type(kv, found, sizeof found),
                              elem_type == QREF_GGUF_TYPE_COUNT ? "" : " of ",
                              elem_type == QREF_GGUF_TYPE_COUNT ? "" : expected);
    }
    out->file = g;
    out->kv = kv;
    out->type = kv->elem_type;
    out->count = kv->count;
    return QREF_OK;
}

static qref_status check_element(const qref_gguf_array *array, uint64_t i, const char *expected, bool type_ok,
                                 qref_error *err)
{
    const char *display = array->file != NULL ? array->file->display : "GGUF";
    const char *key = array->kv != NULL ? array->kv->key : "(no array)";
    if (array->kv == NULL || i >= array->count)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\": element %" PRIu64
                              " is out of range (the array has %" PRIu64 " elements)",
                              display, key, i, array->count);
    if (!type_ok)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%.200s\" is an ARRAY of %s, expected %s",
                              display, key, qref_gguf_type_name(array->type), expected);
    return QREF_OK;
}

qref_status qref_gguf_array_get_string(const qref_gguf_array *array, uint64_t i, qref_gguf_string *out,
                                       qref_error *err)
{
    qref_status status = check_element(array, i, "an ARRAY of STRING", array->type == QREF_GGUF_TYPE_STRING, err);
    if (status == QREF_OK)
        *out = load_string(array->file, array->kv->string_offsets[i]);
    return status;
}

qref_status qref_gguf_array_get_i64(const qref_gguf_array *array, uint64_t i, int64_t *out, qref_error *err)
{
    bool is_integer;
    uint64_t u = 0;
    int64_t s = 0;
    switch (array->type) {
    case QREF_GGUF_TYPE_UINT8: case QREF_GGUF_TYPE_INT8: case QREF_GGUF_TYPE_UINT16: case QREF_GGUF_TYPE_INT16:
    case QREF_GGUF_TYPE_UINT32: case QREF_GGUF_TYPE_INT32: case QREF_GGUF_TYPE_UINT64: case QREF_GGUF_TYPE_INT64:
        is_integer = true;
        break;
    default:
        is_integer = false;
        break;
    }
    qref_status status = check_element(array, i, "an ARRAY of an integer type", is_integer, err);
    if (status != QREF_OK)
        return status;
    const uint8_t *p = array->file->data + array->kv->value_offset + i * value_types[array->type].size;
    bool is_unsigned;
    load_integer(array->type, p, &is_unsigned, &u, &s);
    if (is_unsigned && u > (uint64_t)INT64_MAX)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: metadata key \"%.200s\": element %" PRIu64 " is %" PRIu64 ", above INT64_MAX",
                              array->file->display, array->kv->key, i, u);
    *out = is_unsigned ? (int64_t)u : s;
    return QREF_OK;
}

qref_status qref_gguf_array_get_f32(const qref_gguf_array *array, uint64_t i, float *out, qref_error *err)
{
    qref_status status = check_element(array, i, "an ARRAY of FLOAT32", array->type == QREF_GGUF_TYPE_FLOAT32, err);
    if (status == QREF_OK)
        *out = qref_load_f32(array->file->data + array->kv->value_offset + 4 * i);
    return status;
}
