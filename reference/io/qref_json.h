/*
 * Strict JSON for untrusted headers and configs, on top of cJSON: the text must be one JSON
 * value followed only by whitespace, no object may repeat a key (cJSON itself keeps both),
 * and nesting is bounded. Typed getters report the file, the JSON path, the value found and
 * the value expected.
 *
 * Strict means RFC 8259 exactly: before cJSON builds the tree, a scanner checks the grammar
 * and rejects what cJSON 1.7.15 would let through: leading zeros ("01"), "1.", numbers that
 * overflow a double, raw control characters in strings, invalid UTF-8, unpaired surrogate
 * escapes, a byte order mark. It also rejects "\u0000", which C strings cannot hold.
 *
 * cJSON stores every number as a double, which is exact only up to 2^53. So each number node
 * of a tree from qref_json_parse keeps its source literal in valuestring (freed by
 * cJSON_Delete), and the integer getters parse that literal: 64-bit values come out exact,
 * and "1.0" or "1e3" is not an integer.
 */
#ifndef QREF_JSON_H
#define QREF_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/qref_error.h"

/* Deepest nesting qref_json_parse accepts, the limit cJSON 1.7.15 is built with. */
#define QREF_JSON_MAX_DEPTH 1000

/*
 * Parses text[0..length) strictly; display names the file in errors. max_depth bounds the
 * nesting of arrays and objects (a flat object is depth 1) and must be in
 * [1, QREF_JSON_MAX_DEPTH]. Caller frees with cJSON_Delete.
 */
qref_status qref_json_parse(const char *display, const char *text, size_t length, int max_depth,
                            cJSON **out, qref_error *err);

/*
 * Typed member getters. Each returns QREF_OK and stores the value; when the key is absent it
 * stores fallback and returns QREF_OK if required is false, else an error. A present member
 * of the wrong type or out of range is always an error, null included.
 */
qref_status qref_json_get_int(const char *display, const cJSON *object, const char *key, bool required,
                              int64_t fallback, int64_t min, int64_t max, int64_t *out, qref_error *err);
qref_status qref_json_get_double(const char *display, const cJSON *object, const char *key,
                                 bool required, double fallback, double *out, qref_error *err);
qref_status qref_json_get_bool(const char *display, const cJSON *object, const char *key, bool required,
                               bool fallback, bool *out, qref_error *err);
/* Stores a pointer into the cJSON tree (or fallback); valid while the tree lives. */
qref_status qref_json_get_string(const char *display, const cJSON *object, const char *key,
                                 bool required, const char *fallback, const char **out, qref_error *err);

/*
 * Reads one value (an array element, a member found by the caller) as an integer in
 * [min, max]. label names it in errors, for example: tensor "w": shape[1].
 */
qref_status qref_json_item_int(const char *display, const char *label, const cJSON *item,
                               int64_t min, int64_t max, int64_t *out, qref_error *err);

/*
 * Writes a short description of item for messages: "\"abc\" (a string)", "12 (a number)",
 * "true (a boolean)", "null", "an array", "an object". Long strings are cut short.
 */
char *qref_json_describe(const cJSON *item, char *buf, size_t size);

/* Name of the JSON type of item: "an object", "an array", "a string", "a number", ... */
const char *qref_json_type_name(const cJSON *item);

/* True when bytes[0..length) is well-formed UTF-8 (no overlong forms, surrogates or > U+10FFFF). */
bool qref_json_utf8_valid(const void *bytes, size_t length);

#endif
