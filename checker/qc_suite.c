#include "qc_suite.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_blob.h"
#include "io/qref_json.h"

#define SUITE_MAX_BYTES (16u << 20)

const char *qc_metric_name(qc_metric metric)
{
    switch (metric) {
    case QC_METRIC_PPL: return "ppl";
    case QC_METRIC_LOGITS_MAX_ABS_ERROR: return "logits_max_abs_error";
    case QC_METRIC_KLD: return "kld";
    case QC_METRIC_PPL_RATIO: return "ppl_ratio";
    }
    return "?";
}

/* Rejects a member not in allowed, so a misspelled key is an error rather than ignored. */
static qref_status check_keys(const char *display, const char *path, const cJSON *object, const char *const *allowed,
                              size_t count, qref_error *err)
{
    const cJSON *member;
    cJSON_ArrayForEach(member, object) {
        bool known = false;
        for (size_t i = 0; i < count && !known; i++)
            known = strcmp(member->string, allowed[i]) == 0;
        if (!known)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: unknown key \"%s\" (expected one of the keys in "
                                  "suites/README.md)", display, path, member->string);
    }
    return QREF_OK;
}

#define CHECK_KEYS(display, path, object, ...)                                                                    \
    check_keys(display, path, object, (const char *const[]){__VA_ARGS__},                                         \
               sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *), err)

/* Joins a path from the suite file with the suite's folder unless it is absolute. */
static qref_status resolve_path(const char *suite_path, const char *relative, char *out, size_t size,
                                qref_error *err)
{
    int n;
    if (relative[0] == '/') {
        n = snprintf(out, size, "%s", relative);
    } else {
        const char *slash = strrchr(suite_path, '/');
        int folder_length = slash != NULL ? (int)(slash - suite_path) : 1;
        const char *folder = slash != NULL ? suite_path : ".";
        n = snprintf(out, size, "%.*s/%s", folder_length, folder, relative);
    }
    if (n < 0 || (size_t)n >= size)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: path \"%s\" is longer than %zu bytes", suite_path,
                              relative, size - 1);
    return QREF_OK;
}

static qref_status get_optional_path(const char *display, const cJSON *object, const char *key,
                                     char *out, size_t size, qref_error *err)
{
    const char *value = NULL;
    out[0] = '\0';
    qref_status status = qref_json_get_string(display, object, key, false, NULL, &value, err);
    if (status != QREF_OK || value == NULL)
        return status;
    return resolve_path(display, value, out, size, err);
}

static qref_status copy_string_member(const char *display, const cJSON *object, const char *key,
                                      bool required, const char *fallback, char *out, size_t size,
                                      qref_error *err)
{
    const char *value = NULL;
    qref_status status = qref_json_get_string(display, object, key, required, fallback, &value, err);
    if (status != QREF_OK)
        return status;
    if (strlen(value) >= size)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: \"%s\": value \"%.40s...\" is longer than %zu "
                              "bytes", display, key, value, size - 1);
    snprintf(out, size, "%s", value);
    return QREF_OK;
}

static qref_status parse_cell(const char *display, const cJSON *json, size_t index, qc_suite_cell *cell,
                              qref_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "cells[%zu]", index);
    if (!cJSON_IsObject(json))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: expected an object", display, path);

    qref_status status;
    int64_t number;
    bool flag;
    const char *text;
    if ((status = CHECK_KEYS(display, path, json, "id", "subject", "method", "bits", "group_size", "sym", "benchmark",
                             "metric", "golden", "windows", "artifact", "band", "tags", "description", "protocol",
                             "seqlen", "quant_type")))
        return status;
    if ((status = copy_string_member(display, json, "id", true, NULL, cell->id, sizeof cell->id, err)) ||
        (status = copy_string_member(display, json, "method", true, NULL, cell->method, sizeof cell->method,
                                     err)) ||
        (status = copy_string_member(display, json, "benchmark", true, NULL, cell->benchmark,
                                     sizeof cell->benchmark, err)))
        return qref_error_prefix(err, "%s: ", path);

    if ((status = qref_json_get_int(display, json, "bits", true, 0, 1, 32, &number, err)))
        return qref_error_prefix(err, "%s: ", path);
    cell->bits = (int)number;
    if ((status = qref_json_get_int(display, json, "group_size", false, -1, -1, 1 << 20, &number, err)))
        return qref_error_prefix(err, "%s: ", path);
    if (number == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.group_size: 0, expected -1 (per-channel) or a "
                              "positive group size", display, path);
    cell->group_size = (int)number;
    if ((status = qref_json_get_bool(display, json, "sym", false, false, &flag, err)))
        return qref_error_prefix(err, "%s: ", path);
    cell->sym = flag;

    if ((status = qref_json_get_string(display, json, "subject", false, "artifact", &text, err)))
        return qref_error_prefix(err, "%s: ", path);
    if (strcmp(text, "reference") != 0 && strcmp(text, "artifact") != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.subject: \"%s\", expected \"reference\" or "
                              "\"artifact\"", display, path, text);
    cell->subject_reference = strcmp(text, "reference") == 0;

    if ((status = qref_json_get_string(display, json, "metric", true, NULL, &text, err)))
        return qref_error_prefix(err, "%s: ", path);
    if (strcmp(text, "ppl") == 0) {
        cell->metric = QC_METRIC_PPL;
        if (strcmp(cell->benchmark, "wikitext2") != 0)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s.benchmark: \"%s\" is not supported for "
                                  "metric ppl (supported: wikitext2)", display, path, cell->benchmark);
    } else if (strcmp(text, "logits_max_abs_error") == 0) {
        cell->metric = QC_METRIC_LOGITS_MAX_ABS_ERROR;
        if (strcmp(cell->benchmark, "golden-logits") != 0)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s.benchmark: \"%s\" is not supported for metric "
                                  "logits_max_abs_error (supported: golden-logits)", display, path, cell->benchmark);
        if ((status = get_optional_path(display, json, "golden", cell->golden, sizeof cell->golden, err)))
            return status;
        if (cell->golden[0] == '\0')
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.golden: metric logits_max_abs_error needs "
                                  "a golden logits file", display, path);
    } else if (strcmp(text, "kld") == 0 || strcmp(text, "ppl_ratio") == 0) {
        cell->metric = strcmp(text, "kld") == 0 ? QC_METRIC_KLD : QC_METRIC_PPL_RATIO;
        if (strcmp(cell->benchmark, "wikitext2") != 0)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s.benchmark: \"%s\" is not supported for metric "
                                  "%s (supported: wikitext2)", display, path, cell->benchmark, text);
        if (cell->subject_reference)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.subject: metric %s compares the artifact with the "
                                  "reference, so the subject must be \"artifact\"", display, path, text);
    } else {
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s.metric: \"%s\" is not supported (supported: "
                              "ppl, ppl_ratio, kld, logits_max_abs_error)", display, path, text);
    }

    /* per-cell protocol overrides */
    if ((status = copy_string_member(display, json, "protocol", false, "", cell->protocol, sizeof cell->protocol,
                                     err)))
        return qref_error_prefix(err, "%s: ", path);
    if (cell->protocol[0] != '\0' && strcmp(cell->protocol, "study") != 0 && strcmp(cell->protocol, "llamacpp") != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.protocol: \"%s\", expected \"study\" or \"llamacpp\"",
                              display, path, cell->protocol);
    if ((status = qref_json_get_int(display, json, "seqlen", false, 0, 0, 1 << 20, &number, err)))
        return qref_error_prefix(err, "%s: ", path);
    cell->seqlen = (int)number;
    if ((status = copy_string_member(display, json, "quant_type", false, "", cell->quant_type,
                                     sizeof cell->quant_type, err)))
        return qref_error_prefix(err, "%s: ", path);

    if ((status = get_optional_path(display, json, "artifact", cell->artifact, sizeof cell->artifact, err)))
        return status;
    if ((status = qref_json_get_int(display, json, "windows", false, 0, 0, INT64_MAX, &number, err)))
        return qref_error_prefix(err, "%s: ", path);
    cell->windows = (size_t)number;

    char band_path[96];
    snprintf(band_path, sizeof band_path, "%s.band", path);
    return qc_band_parse(display, band_path, cJSON_GetObjectItemCaseSensitive(json, "band"), &cell->band, err);
}

static qref_status parse_suite(const char *display, const cJSON *root, qc_suite *suite, qref_error *err)
{
    qref_status status;
    const char *schema = NULL;
    if ((status = qref_json_get_string(display, root, "schema", true, NULL, &schema, err)))
        return status;
    if (strcmp(schema, QC_SUITE_SCHEMA) == 0 &&
        (status = CHECK_KEYS(display, "$", root, "schema", "name", "description", "model", "reference", "datasets",
                             "perplexity", "cells")))
        return status;
    if (strcmp(schema, QC_SUITE_SCHEMA) != 0)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: schema: \"%s\", expected \"%s\"", display, schema,
                              QC_SUITE_SCHEMA);
    if ((status = copy_string_member(display, root, "name", true, NULL, suite->name, sizeof suite->name, err)) ||
        (status = copy_string_member(display, root, "model", true, NULL, suite->model, sizeof suite->model,
                                     err)) ||
        (status = get_optional_path(display, root, "reference", suite->reference, sizeof suite->reference, err)))
        return status;

    const cJSON *datasets = cJSON_GetObjectItemCaseSensitive(root, "datasets");
    if (datasets != NULL && !cJSON_IsObject(datasets))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: datasets: expected an object", display);
    if (datasets != NULL &&
        ((status = CHECK_KEYS(display, "datasets", datasets, "wikitext2")) ||
         (status = get_optional_path(display, datasets, "wikitext2", suite->wikitext2, sizeof suite->wikitext2,
                                     err))))
        return status;

    const cJSON *protocol = cJSON_GetObjectItemCaseSensitive(root, "perplexity");
    snprintf(suite->protocol, sizeof suite->protocol, "study");
    if (protocol != NULL) {
        int64_t seqlen;
        if (!cJSON_IsObject(protocol))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: perplexity: expected an object", display);
        if ((status = CHECK_KEYS(display, "perplexity", protocol, "protocol", "seqlen", "windows")))
            return status;
        if ((status = copy_string_member(display, protocol, "protocol", false, "study", suite->protocol,
                                         sizeof suite->protocol, err)))
            return status;
        if (strcmp(suite->protocol, "study") != 0 && strcmp(suite->protocol, "llamacpp") != 0)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: perplexity.protocol: \"%s\", expected \"study\" "
                                  "or \"llamacpp\"", display, suite->protocol);
        if ((status = qref_json_get_int(display, protocol, "seqlen", false, 0, 0, 1 << 20, &seqlen, err)))
            return status;
        suite->seqlen = (int)seqlen;
        int64_t windows;
        if ((status = qref_json_get_int(display, protocol, "windows", false, 0, 0, INT64_MAX, &windows, err)))
            return status;
        suite->windows = (size_t)windows;
    }

    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(root, "cells");
    if (!cJSON_IsArray(cells) || cJSON_GetArraySize(cells) == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: cells: expected a non-empty array", display);
    size_t count = (size_t)cJSON_GetArraySize(cells);
    suite->cells = calloc(count, sizeof *suite->cells);
    if (suite->cells == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %zu cells", display, count);
    suite->cell_count = count;
    for (size_t i = 0; i < count; i++) {
        if ((status = parse_cell(display, cJSON_GetArrayItem(cells, (int)i), i, &suite->cells[i], err)))
            return status;
        for (size_t j = 0; j < i; j++)
            if (strcmp(suite->cells[j].id, suite->cells[i].id) == 0)
                return qref_error_set(err, QREF_ERR_INVALID, "%s: cells[%zu].id: \"%s\" repeats cells[%zu]",
                                      display, i, suite->cells[i].id, j);
    }
    return QREF_OK;
}

qref_status qc_suite_load(const char *path, qc_suite *suite, qref_error *err)
{
    memset(suite, 0, sizeof *suite);
    if (strlen(path) >= sizeof suite->path)
        return qref_error_set(err, QREF_ERR_INVALID, "suite path is longer than %zu bytes", sizeof suite->path - 1);
    snprintf(suite->path, sizeof suite->path, "%s", path);

    char *text = NULL;
    size_t length = 0;
    qref_status status = qref_file_read_all(path, SUITE_MAX_BYTES, &text, &length, err);
    if (status != QREF_OK)
        return status;
    if (qref_sha256_buffer_hex(text, length, suite->sha256) != 0) {
        free(text);
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: SHA-256 failed", path);
    }
    cJSON *root = NULL;
    status = qref_json_parse(path, text, length, 8, &root, err);
    free(text);
    if (status == QREF_OK)
        status = parse_suite(path, root, suite, err);
    cJSON_Delete(root);
    if (status != QREF_OK)
        qc_suite_free(suite);
    return status;
}

void qc_suite_free(qc_suite *suite)
{
    free(suite->cells);
    suite->cells = NULL;
    suite->cell_count = 0;
}

const qc_suite_cell *qc_suite_find_cell(const qc_suite *suite, const char *id)
{
    for (size_t i = 0; i < suite->cell_count; i++)
        if (strcmp(suite->cells[i].id, id) == 0)
            return &suite->cells[i];
    return NULL;
}
