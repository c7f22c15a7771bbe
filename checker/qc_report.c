#include "qc_report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "io/qref_blob.h"
#include "qc_commands.h"

void qc_report_init(qc_report *report, const char *command)
{
    memset(report, 0, sizeof *report);
    snprintf(report->command, sizeof report->command, "%s", command);
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(report->started, sizeof report->started, "%Y-%m-%dT%H:%M:%SZ", &utc);
    report->threads = omp_get_max_threads();
    report->inputs = cJSON_CreateObject();
    report->protocol = cJSON_CreateObject();
    report->metrics = cJSON_CreateObject();
}

void qc_report_free(qc_report *report)
{
    cJSON_Delete(report->inputs);
    cJSON_Delete(report->protocol);
    cJSON_Delete(report->artifact);
    cJSON_Delete(report->manifest);
    cJSON_Delete(report->metrics);
    free(report->checks);
    free(report->cells);
    memset(report, 0, sizeof *report);
}

/* Grows an array by one zeroed element; aborts the process only when memory is exhausted. */
static void *append_zeroed(void *array, size_t *count, size_t element_size)
{
    void *grown = realloc(array, (*count + 1) * element_size);
    if (grown == NULL) {
        fprintf(stderr, "qconform: out of memory while recording a report entry\n");
        exit(QC_EXIT_INTERNAL);
    }
    memset((char *)grown + *count * element_size, 0, element_size);
    (*count)++;
    return grown;
}

qc_check *qc_report_add_check(qc_report *report, const char *id, qc_verdict verdict, const char *fmt, ...)
{
    report->checks = append_zeroed(report->checks, &report->check_count, sizeof *report->checks);
    qc_check *check = &report->checks[report->check_count - 1];
    snprintf(check->id, sizeof check->id, "%s", id);
    check->verdict = verdict;
    check->error_status = verdict == QC_VERDICT_ERROR ? QREF_ERR_INTERNAL : QREF_OK;
    va_list args;
    va_start(args, fmt);
    vsnprintf(check->message, sizeof check->message, fmt, args);
    va_end(args);
    return check;
}

qc_check *qc_report_add_error(qc_report *report, const char *id, const qref_error *err)
{
    qc_check *check = qc_report_add_check(report, id, QC_VERDICT_ERROR, "%s", err->message);
    check->error_status = err->status;
    return check;
}

qc_cell_result *qc_report_add_cell(qc_report *report)
{
    report->cells = append_zeroed(report->cells, &report->cell_count, sizeof *report->cells);
    qc_cell_result *cell = &report->cells[report->cell_count - 1];
    cell->verdict = QC_VERDICT_SKIP;
    cell->group_size = -1;
    return cell;
}

/* The worst verdict wins: ERROR over FAIL over WARN over the rest. */
static int verdict_rank(qc_verdict verdict)
{
    switch (verdict) {
    case QC_VERDICT_ERROR: return 4;
    case QC_VERDICT_FAIL: return 3;
    case QC_VERDICT_WARN: return 2;
    case QC_VERDICT_PASS: return 1;
    default: return 0;
    }
}

qc_verdict qc_report_overall(const qc_report *report)
{
    qc_verdict overall = QC_VERDICT_SKIP;
    for (size_t i = 0; i < report->check_count; i++)
        if (verdict_rank(report->checks[i].verdict) > verdict_rank(overall))
            overall = report->checks[i].verdict;
    for (size_t i = 0; i < report->cell_count; i++)
        if (verdict_rank(report->cells[i].verdict) > verdict_rank(overall))
            overall = report->cells[i].verdict;
    return overall;
}

int qc_report_exit_code(const qc_report *report)
{
    bool any_fail = false;
    int error_code = 0;
    for (size_t i = 0; i < report->check_count; i++) {
        const qc_check *check = &report->checks[i];
        if (check->verdict == QC_VERDICT_FAIL)
            any_fail = true;
        if (check->verdict == QC_VERDICT_ERROR) {
            int code = qc_exit_from_status(check->error_status);
            error_code = code > error_code ? code : error_code;
        }
    }
    for (size_t i = 0; i < report->cell_count; i++) {
        const qc_cell_result *cell = &report->cells[i];
        if (cell->verdict == QC_VERDICT_FAIL)
            any_fail = true;
        if (cell->verdict == QC_VERDICT_ERROR) {
            int code = qc_exit_from_status(cell->error_status);
            error_code = code > error_code ? code : error_code;
        }
    }
    if (error_code != 0)
        return error_code;
    return any_fail ? QC_EXIT_FAIL : QC_EXIT_PASS;
}

/* ---- JSON ------------------------------------------------------------------------------- */

static void add_number_or_null(cJSON *object, const char *key, bool present, double value)
{
    if (present && isfinite(value))
        cJSON_AddNumberToObject(object, key, value);
    else
        cJSON_AddNullToObject(object, key);
}

static cJSON *report_to_json(const qc_report *report)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", QC_REPORT_SCHEMA);
    cJSON *tool = cJSON_AddObjectToObject(root, "tool");
    cJSON_AddStringToObject(tool, "name", "qconform");
    cJSON_AddStringToObject(tool, "version", QCONFORM_VERSION);
    cJSON_AddStringToObject(root, "command", report->command);
    cJSON_AddStringToObject(root, "started", report->started);
    cJSON_AddNumberToObject(root, "threads", report->threads);
    cJSON_AddItemToObject(root, "inputs", cJSON_Duplicate(report->inputs, true));
    cJSON_AddItemToObject(root, "protocol", cJSON_Duplicate(report->protocol, true));
    if (report->artifact != NULL)
        cJSON_AddItemToObject(root, "artifact", cJSON_Duplicate(report->artifact, true));

    cJSON *checks = cJSON_AddArrayToObject(root, "checks");
    for (size_t i = 0; i < report->check_count; i++) {
        const qc_check *check = &report->checks[i];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", check->id);
        cJSON_AddStringToObject(item, "verdict", qc_verdict_name(check->verdict));
        cJSON_AddStringToObject(item, "message", check->message);
        cJSON_AddItemToArray(checks, item);
    }

    cJSON *cells = cJSON_AddArrayToObject(root, "cells");
    for (size_t i = 0; i < report->cell_count; i++) {
        const qc_cell_result *cell = &report->cells[i];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", cell->id);
        cJSON_AddStringToObject(item, "model", cell->model);
        cJSON_AddStringToObject(item, "method", cell->method);
        cJSON_AddNumberToObject(item, "bits", cell->bits);
        cJSON_AddNumberToObject(item, "group_size", cell->group_size);
        cJSON_AddBoolToObject(item, "sym", cell->sym);
        cJSON_AddStringToObject(item, "benchmark", cell->benchmark);
        cJSON_AddStringToObject(item, "metric", cell->metric);
        cJSON_AddStringToObject(item, "subject", cell->subject);
        if (cell->quant_type[0] != '\0')
            cJSON_AddStringToObject(item, "quant_type", cell->quant_type);
        if (cell->protocol[0] != '\0')
            cJSON_AddStringToObject(item, "protocol", cell->protocol);
        add_number_or_null(item, "value", cell->has_value, cell->value);
        add_number_or_null(item, "stderr", cell->has_value && cell->value_stderr > 0, cell->value_stderr);
        if (cell->has_band)
            cJSON_AddItemToObject(item, "band", qc_band_to_json(&cell->band));
        cJSON_AddStringToObject(item, "verdict", qc_verdict_name(cell->verdict));
        cJSON_AddStringToObject(item, "message", cell->message);
        cJSON_AddNumberToObject(item, "seconds", cell->seconds);
        cJSON_AddItemToArray(cells, item);
    }

    cJSON_AddItemToObject(root, "metrics", cJSON_Duplicate(report->metrics, true));
    if (report->manifest != NULL)
        cJSON_AddItemToObject(root, "manifest", cJSON_Duplicate(report->manifest, true));

    int counts[QC_VERDICT_COUNT] = {0};
    for (size_t i = 0; i < report->check_count; i++)
        counts[report->checks[i].verdict]++;
    for (size_t i = 0; i < report->cell_count; i++)
        counts[report->cells[i].verdict]++;
    cJSON *summary = cJSON_AddObjectToObject(root, "summary");
    for (int v = 0; v < QC_VERDICT_COUNT; v++)
        cJSON_AddNumberToObject(summary, qc_verdict_name((qc_verdict)v), counts[v]);
    cJSON_AddStringToObject(root, "verdict", qc_verdict_name(qc_report_overall(report)));
    cJSON_AddNumberToObject(root, "exit_code", qc_report_exit_code(report));
    return root;
}

/* Writes text to path, or to stdout when path is "-". */
static qref_status write_text(const char *path, const char *text, qref_error *err)
{
    if (strcmp(path, "-") == 0) {
        fputs(text, stdout);
        fflush(stdout);
        return QREF_OK;
    }
    return qref_file_write_atomic(path, text, strlen(text), err);
}

qref_status qc_report_write_json(const qc_report *report, const char *path, qref_error *err)
{
    cJSON *root = report_to_json(report);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (text == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot format the JSON report", path);
    size_t length = strlen(text);
    char *with_newline = realloc(text, length + 2);
    if (with_newline == NULL) {
        free(text);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot format the JSON report", path);
    }
    memcpy(with_newline + length, "\n", 2);
    qref_status status = write_text(path, with_newline, err);
    free(with_newline);
    return status;
}

/* ---- JUnit XML -------------------------------------------------------------------------- */

typedef struct text_buffer {
    char *data;
    size_t length, capacity;
    bool failed;
} text_buffer;

static void text_append(text_buffer *buf, const char *text, size_t length)
{
    if (buf->failed)
        return;
    if (buf->length + length + 1 > buf->capacity) {
        size_t capacity = buf->capacity ? buf->capacity : 4096;
        while (buf->length + length + 1 > capacity)
            capacity *= 2;
        char *grown = realloc(buf->data, capacity);
        if (grown == NULL) {
            buf->failed = true;
            return;
        }
        buf->data = grown;
        buf->capacity = capacity;
    }
    memcpy(buf->data + buf->length, text, length);
    buf->length += length;
    buf->data[buf->length] = '\0';
}

static void text_printf(text_buffer *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text_buffer *buf, const char *fmt, ...)
{
    char line[4096];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    if (n > 0)
        text_append(buf, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Appends text with XML's five special characters escaped and control characters dropped. */
static void text_append_xml(text_buffer *buf, const char *text)
{
    for (const char *p = text; *p; p++) {
        switch (*p) {
        case '&': text_append(buf, "&amp;", 5); break;
        case '<': text_append(buf, "&lt;", 4); break;
        case '>': text_append(buf, "&gt;", 4); break;
        case '"': text_append(buf, "&quot;", 6); break;
        case '\'': text_append(buf, "&apos;", 6); break;
        default:
            if ((unsigned char)*p >= 0x20 || *p == '\n' || *p == '\t')
                text_append(buf, p, 1);
        }
    }
}

static void junit_testcase(text_buffer *buf, const char *classname, const char *name, qc_verdict verdict,
                           const char *message, double seconds)
{
    text_append(buf, "    <testcase classname=\"", 25);
    text_append_xml(buf, classname);
    text_append(buf, "\" name=\"", 8);
    text_append_xml(buf, name);
    text_printf(buf, "\" time=\"%.3f\">\n", seconds);
    const char *element = NULL;
    switch (verdict) {
    case QC_VERDICT_FAIL: element = "failure"; break;
    case QC_VERDICT_ERROR: element = "error"; break;
    case QC_VERDICT_SKIP:
    case QC_VERDICT_NOT_SUPPORTED: element = "skipped"; break;
    default: break;
    }
    if (element != NULL) {
        text_printf(buf, "      <%s type=\"%s\" message=\"", element, qc_verdict_name(verdict));
        text_append_xml(buf, message);
        text_printf(buf, "\"/>\n");
    }
    text_append(buf, "      <system-out>", 18);
    text_printf(buf, "%s: ", qc_verdict_name(verdict));
    text_append_xml(buf, message);
    text_append(buf, "</system-out>\n    </testcase>\n", 30);
}

qref_status qc_report_write_junit(const qc_report *report, const char *suite_name, const char *path,
                                  qref_error *err)
{
    int failures = 0, errors = 0, skipped = 0;
    double total_seconds = 0.0;
    for (size_t i = 0; i < report->check_count; i++) {
        qc_verdict v = report->checks[i].verdict;
        failures += v == QC_VERDICT_FAIL;
        errors += v == QC_VERDICT_ERROR;
        skipped += v == QC_VERDICT_SKIP || v == QC_VERDICT_NOT_SUPPORTED;
    }
    for (size_t i = 0; i < report->cell_count; i++) {
        qc_verdict v = report->cells[i].verdict;
        failures += v == QC_VERDICT_FAIL;
        errors += v == QC_VERDICT_ERROR;
        skipped += v == QC_VERDICT_SKIP || v == QC_VERDICT_NOT_SUPPORTED;
        total_seconds += report->cells[i].seconds;
    }

    text_buffer buf = {0};
    text_printf(&buf, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"");
    text_append_xml(&buf, suite_name);
    text_printf(&buf, "\" tests=\"%zu\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" time=\"%.3f\" "
                      "timestamp=\"%s\">\n",
                report->check_count + report->cell_count, failures, errors, skipped, total_seconds,
                report->started);
    for (size_t i = 0; i < report->check_count; i++)
        junit_testcase(&buf, "checks", report->checks[i].id, report->checks[i].verdict,
                       report->checks[i].message, 0.0);
    for (size_t i = 0; i < report->cell_count; i++)
        junit_testcase(&buf, suite_name, report->cells[i].id, report->cells[i].verdict,
                       report->cells[i].message, report->cells[i].seconds);
    text_printf(&buf, "  </testsuite>\n</testsuites>\n");

    if (buf.failed) {
        free(buf.data);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot format the JUnit report", path);
    }
    qref_status status = write_text(path, buf.data, err);
    free(buf.data);
    return status;
}

/* ---- terminal table --------------------------------------------------------------------- */

void qc_report_print_errors(const qc_report *report, FILE *out)
{
    for (size_t i = 0; i < report->check_count; i++)
        if (report->checks[i].verdict == QC_VERDICT_ERROR)
            fprintf(out, "qconform: error: %s: %s\n", report->checks[i].id, report->checks[i].message);
    for (size_t i = 0; i < report->cell_count; i++)
        if (report->cells[i].verdict == QC_VERDICT_ERROR)
            fprintf(out, "qconform: error: %s: %s\n", report->cells[i].id, report->cells[i].message);
}

void qc_report_print_table(const qc_report *report, FILE *out)
{
    fprintf(out, "%-30s %-8s %-12s %-13s %-20s %-11s %s\n", "CHECK / CELL", "VERDICT", "METHOD", "BENCHMARK",
            "METRIC", "VALUE", "DETAIL");
    for (size_t i = 0; i < report->check_count; i++) {
        const qc_check *check = &report->checks[i];
        fprintf(out, "%-30s %-8s %-12s %-13s %-20s %-11s %s\n", check->id, qc_verdict_name(check->verdict),
                "-", "-", "-", "-", check->message);
    }
    for (size_t i = 0; i < report->cell_count; i++) {
        const qc_cell_result *cell = &report->cells[i];
        char method[48], value[32];
        if (cell->bits > 0 && cell->bits < 16 && cell->group_size > 0)
            snprintf(method, sizeof method, "%s w%dg%d", cell->method, cell->bits, cell->group_size);
        else if (cell->bits > 0 && cell->bits < 16)
            snprintf(method, sizeof method, "%s w%d", cell->method, cell->bits);
        else
            snprintf(method, sizeof method, "%s", cell->method);
        if (cell->has_value)
            snprintf(value, sizeof value, "%.6g", cell->value);
        else
            snprintf(value, sizeof value, "-");
        fprintf(out, "%-30s %-8s %-12s %-13s %-20s %-11s %s\n", cell->id, qc_verdict_name(cell->verdict),
                method, cell->benchmark, cell->metric, value, cell->message);
    }

    int counts[QC_VERDICT_COUNT] = {0};
    for (size_t i = 0; i < report->check_count; i++)
        counts[report->checks[i].verdict]++;
    for (size_t i = 0; i < report->cell_count; i++)
        counts[report->cells[i].verdict]++;
    fprintf(out, "overall: %s (", qc_verdict_name(qc_report_overall(report)));
    bool first = true;
    for (int v = 0; v < QC_VERDICT_COUNT; v++) {
        if (counts[v] == 0)
            continue;
        fprintf(out, "%s%d %s", first ? "" : ", ", counts[v], qc_verdict_name((qc_verdict)v));
        first = false;
    }
    fprintf(out, ")\n");
}
