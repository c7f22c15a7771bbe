/*
 * Strict JSON for untrusted headers and configs, on top of cJSON: the text must be one JSON
 * value followed only by whitespace, no object may repeat a key (cJSON itself keeps both),
 * and nesting is bounded. Typed getters report the file, the JSON path, the value found and
 * the value expected.
 */
#ifndef QREF_JSON_H
#define QREF_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/qref_error.h"

/* Parses text[0..length) strictly; display names the file in errors. Caller frees with cJSON_Delete. */
qref_status qref_json_parse(const char *display, const char *text, size_t length, int max_depth,
                            cJSON **out, qref_error *err);

/*
 * Typed member getters. Each returns QREF_OK and stores the value; when the key is absent it
 * stores fallback and returns QREF_OK if required is false, else an error. A present member
 * of the wrong type or out of range is always an error.
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

#endif
