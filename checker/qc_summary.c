/*
 * Markdown summaries of verify reports, with an SVG plot of each metric against bits.
 *
 * `qconform report summary REPORT.json... --markdown FILE [--svg-prefix PREFIX]` reads the JSON
 * reports of many verify runs (for example one per suite cell from ctest), and writes one
 * Markdown file: per benchmark and metric, a table with a row per method variant (method,
 * group size, sym) and a column per bit width, each cell the value and its verdict; then every
 * cell's band and message. With --svg-prefix, each (benchmark, metric) also gets an SVG plot of
 * the value against bits, one line per method variant, on a log scale when the values span
 * more than a factor of ten.
 */
#include "qc_summary.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/qref_blob.h"
#include "io/qref_json.h"

#define SUMMARY_MAX_FILE_BYTES (64u << 20)

typedef struct summary_cell {
    char id[128];
    char method[64];      /* method with its variant, e.g. "rtn g4" */
    char benchmark[48];      /* with the protocol, e.g. "wikitext2 (llamacpp)" */
    char metric[32];
    int bits;
    bool has_value;
    double value;
    bool has_reference;   /* the band's reference is the reference model measured in the same run */
    double reference;
    char verdict[16];
    char message[512];
    char source[256];     /* the report it came from */
} summary_cell;

typedef struct summary {
    summary_cell *cells;
    size_t count;
} summary;

static const char *json_string(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : "";
}

/* Adds the cells of one report that have a verdict other than SKIP. */
static qref_status summary_add_report(summary *sum, const char *path, qref_error *err)
{
    char *text = NULL;
    size_t length = 0;
    cJSON *root = NULL;
    qref_status status = qref_file_read_all(path, SUMMARY_MAX_FILE_BYTES, &text, &length, err);
    if (status == QREF_OK)
        status = qref_json_parse(path, text, length, 32, &root, err);
    free(text);
    if (status != QREF_OK)
        return status;
    if (strcmp(json_string(root, "schema"), "qconform-report/1") != 0) {
        cJSON_Delete(root);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: schema: expected \"qconform-report/1\" (a qconform verify "
                              "--report file)", path);
    }
    const cJSON *cell;
    cJSON_ArrayForEach(cell, cJSON_GetObjectItemCaseSensitive(root, "cells")) {
        if (strcmp(json_string(cell, "verdict"), "SKIP") == 0)
            continue;
        summary_cell *grown = realloc(sum->cells, (sum->count + 1) * sizeof *grown);
        if (grown == NULL) {
            cJSON_Delete(root);
            return qref_error_set(err, QREF_ERR_NOMEM, "out of memory while reading %s", path);
        }
        sum->cells = grown;
        summary_cell *out = &sum->cells[sum->count++];
        memset(out, 0, sizeof *out);
        const cJSON *group = cJSON_GetObjectItemCaseSensitive(cell, "group_size");
        const cJSON *bits = cJSON_GetObjectItemCaseSensitive(cell, "bits");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(cell, "value");
        const cJSON *sym = cJSON_GetObjectItemCaseSensitive(cell, "sym");
        snprintf(out->id, sizeof out->id, "%s", json_string(cell, "id"));
        const char *quant_type = json_string(cell, "quant_type");
        if (quant_type[0] != '\0')
            snprintf(out->method, sizeof out->method, "%s %s", json_string(cell, "method"), quant_type);
        else if (cJSON_IsNumber(group) && group->valuedouble > 0)
            snprintf(out->method, sizeof out->method, "%s g%.0f%s", json_string(cell, "method"), group->valuedouble,
                     cJSON_IsTrue(sym) ? " sym" : "");
        else
            snprintf(out->method, sizeof out->method, "%s%s", json_string(cell, "method"),
                     cJSON_IsTrue(sym) ? " sym" : "");
        const char *protocol = json_string(cell, "protocol");
        if (protocol[0] != '\0')
            snprintf(out->benchmark, sizeof out->benchmark, "%s (%s)", json_string(cell, "benchmark"), protocol);
        else
            snprintf(out->benchmark, sizeof out->benchmark, "%s", json_string(cell, "benchmark"));
        snprintf(out->metric, sizeof out->metric, "%s", json_string(cell, "metric"));
        out->bits = cJSON_IsNumber(bits) ? bits->valueint : 0;
        out->has_value = cJSON_IsNumber(value);
        out->value = out->has_value ? value->valuedouble : NAN;
        const cJSON *band = cJSON_GetObjectItemCaseSensitive(cell, "band");
        const cJSON *reference = cJSON_GetObjectItemCaseSensitive(band, "reference");
        out->has_reference = strcmp(json_string(band, "reference_kind"), "reference-model") == 0 &&
                             cJSON_IsNumber(reference) && reference->valuedouble != 0.0;
        out->reference = out->has_reference ? reference->valuedouble : NAN;
        snprintf(out->verdict, sizeof out->verdict, "%s", json_string(cell, "verdict"));
        snprintf(out->message, sizeof out->message, "%s", json_string(cell, "message"));
        snprintf(out->source, sizeof out->source, "%s", path);
    }
    cJSON_Delete(root);
    return QREF_OK;
}

/* ---- text helpers ------------------------------------------------------------------------- */

typedef struct text {
    char *data;
    size_t length, capacity;
    bool failed;
} text;

static void text_printf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    if (n < 0 || t->length + (size_t)n + 1 > t->capacity) {
        size_t capacity = t->capacity ? t->capacity : 4096;
        while (n >= 0 && t->length + (size_t)n + 1 > capacity)
            capacity *= 2;
        char *grown = n < 0 ? NULL : realloc(t->data, capacity);
        if (grown == NULL) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->capacity = capacity;
    }
    va_start(args, fmt);
    vsnprintf(t->data + t->length, t->capacity - t->length, fmt, args);
    va_end(args);
    t->length += (size_t)n;
}

/* Markdown table cells must not contain '|' or line breaks. */
static void text_markdown_cell(text *t, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '|')
            text_printf(t, "\\|");
        else if (*p == '\n' || *p == '\r')
            text_printf(t, " ");
        else
            text_printf(t, "%c", *p);
    }
}

/* ---- grouping ------------------------------------------------------------------------------ */

static bool seen_before(const summary *sum, size_t index, bool (*same)(const summary_cell *, const summary_cell *))
{
    for (size_t j = 0; j < index; j++)
        if (same(&sum->cells[j], &sum->cells[index]))
            return true;
    return false;
}

static bool same_panel(const summary_cell *a, const summary_cell *b)
{
    return strcmp(a->benchmark, b->benchmark) == 0 && strcmp(a->metric, b->metric) == 0;
}

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The distinct bit widths of one panel, sorted; returns how many. */
static size_t panel_bits(const summary *sum, const summary_cell *panel, int *bits, size_t max)
{
    size_t count = 0;
    for (size_t i = 0; i < sum->count; i++) {
        if (!same_panel(&sum->cells[i], panel))
            continue;
        bool known = false;
        for (size_t k = 0; k < count; k++)
            known = known || bits[k] == sum->cells[i].bits;
        if (!known && count < max)
            bits[count++] = sum->cells[i].bits;
    }
    qsort(bits, count, sizeof *bits, compare_ints);
    return count;
}

/* ---- SVG ---------------------------------------------------------------------------------- */

static const char *const line_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                                          "#e377c2", "#17becf"};

/* Writes one panel's plot: value against bits, one line per method variant. */
static qref_status write_panel_svg(const summary *sum, const summary_cell *panel, const char *path, qref_error *err)
{
    int bits[32];
    size_t bit_count = panel_bits(sum, panel, bits, 32);
    double low = INFINITY, high = -INFINITY;
    for (size_t i = 0; i < sum->count; i++) {
        const summary_cell *c = &sum->cells[i];
        if (same_panel(c, panel) && c->has_value && isfinite(c->value)) {
            low = fmin(low, c->value);
            high = fmax(high, c->value);
        }
    }
    bool log_scale = low > 0.0 && high / low > 10.0;
    if (!(low <= high)) { /* no finite value: an empty frame */
        low = 0.0;
        high = 1.0;
    }
    if (high == low)
        high = low + 1.0;
    double y_low = log_scale ? log10(low) : low, y_high = log_scale ? log10(high) : high;

    const double width = 640, height = 400, left = 70, right = 170, top = 40, bottom = 50;
    text svg = {0};
    text_printf(&svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                      "font-family=\"sans-serif\" font-size=\"12\">\n", width, height);
    text_printf(&svg, "<text x=\"%.0f\" y=\"24\" font-size=\"14\">%s %s against bits%s</text>\n", left,
                panel->benchmark, panel->metric, log_scale ? " (log scale)" : "");
    text_printf(&svg, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n",
                left, top, width - left - right, height - top - bottom);
    for (size_t k = 0; k < bit_count; k++) {
        double x = left + (bit_count == 1 ? 0.5 : (double)k / (double)(bit_count - 1)) * (width - left - right);
        text_printf(&svg, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n", x, height - bottom + 18,
                    bits[k]);
    }
    text_printf(&svg, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">bits</text>\n",
                left + (width - left - right) / 2, height - 10);
    text_printf(&svg, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.4g</text>\n", left - 6, top + 4, high);
    text_printf(&svg, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.4g</text>\n", left - 6, height - bottom, low);

    size_t line = 0;
    for (size_t i = 0; i < sum->count; i++) {
        const summary_cell *c = &sum->cells[i];
        if (!same_panel(c, panel))
            continue;
        bool first_of_method = true;
        for (size_t j = 0; j < i && first_of_method; j++)
            first_of_method = !(same_panel(&sum->cells[j], panel) && strcmp(sum->cells[j].method, c->method) == 0);
        if (!first_of_method)
            continue;
        const char *color = line_colors[line % (sizeof line_colors / sizeof line_colors[0])];
        double xs[32], ys[32];
        size_t points = 0;
        text_printf(&svg, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (size_t k = 0; k < bit_count; k++) {
            for (size_t j = 0; j < sum->count; j++) {
                const summary_cell *p = &sum->cells[j];
                if (!same_panel(p, panel) || strcmp(p->method, c->method) != 0 || p->bits != bits[k] ||
                    !p->has_value || !isfinite(p->value) || (log_scale && p->value <= 0.0))
                    continue;
                double value = log_scale ? log10(p->value) : p->value;
                double x = left + (bit_count == 1 ? 0.5 : (double)k / (double)(bit_count - 1)) * (width - left - right);
                double y = top + (1.0 - (value - y_low) / (y_high - y_low)) * (height - top - bottom);
                text_printf(&svg, "%.1f,%.1f ", x, y);
                xs[points] = x;
                ys[points++] = y;
                break;
            }
        }
        text_printf(&svg, "\"/>\n");
        /* markers, so a method measured at one bit width still shows */
        for (size_t k = 0; k < points; k++)
            text_printf(&svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", xs[k], ys[k], color);
        text_printf(&svg, "<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">", width - right + 10, top + 16.0 * (double)line,
                    color);
        for (const char *p = c->method; *p; p++) {
            if (*p == '<')
                text_printf(&svg, "&lt;");
            else if (*p == '&')
                text_printf(&svg, "&amp;");
            else
                text_printf(&svg, "%c", *p);
        }
        text_printf(&svg, "</text>\n");
        line++;
    }
    text_printf(&svg, "</svg>\n");
    if (svg.failed) {
        free(svg.data);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    }
    qref_status status = qref_file_write_atomic(path, svg.data, svg.length, err);
    free(svg.data);
    return status;
}

/* ---- Markdown ----------------------------------------------------------------------------- */

/*
 * Writes the link from the Markdown file to an SVG file: the SVG path relative to the Markdown
 * file's folder when it lies in it (or both are relative to the working folder), else the
 * SVG's absolute path.
 */
static void svg_link(const char *svg_path, const char *markdown_path, char *out, size_t size)
{
    const char *slash = strrchr(markdown_path, '/');
    size_t folder = slash != NULL ? (size_t)(slash - markdown_path) + 1 : 0;
    if (folder == 0 && svg_path[0] != '/') {
        snprintf(out, size, "%s", svg_path);
        return;
    }
    if (folder > 0 && strncmp(svg_path, markdown_path, folder) == 0) {
        snprintf(out, size, "%s", svg_path + folder);
        return;
    }
    char cwd[4096];
    int used = 0;
    if (svg_path[0] != '/' && getcwd(cwd, sizeof cwd) != NULL)
        used = snprintf(out, size, "%s/", cwd);
    if (used >= 0 && (size_t)used < size)
        snprintf(out + used, size - (size_t)used, "%s", svg_path);
}

/* Fails when the folder that the SVG prefix names does not exist. */
static qref_status check_svg_folder(const char *svg_prefix, qref_error *err)
{
    const char *slash = strrchr(svg_prefix, '/');
    if (slash == NULL || slash == svg_prefix)
        return QREF_OK;
    char folder[4096];
    snprintf(folder, sizeof folder, "%.*s", (int)(slash - svg_prefix), svg_prefix);
    struct stat info;
    if (stat(folder, &info) != 0 || !S_ISDIR(info.st_mode))
        return qref_error_set(err, QREF_ERR_INVALID, "--svg-prefix %s: folder %s does not exist, expected an existing "
                              "folder for the SVG files", svg_prefix, folder);
    return QREF_OK;
}

qref_status qc_summary_write(const char *const *reports, size_t report_count, const char *markdown_path,
                             const char *svg_prefix, qref_error *err)
{
    summary sum = {0};
    qref_status status = svg_prefix != NULL ? check_svg_folder(svg_prefix, err) : QREF_OK;
    for (size_t r = 0; r < report_count && status == QREF_OK; r++)
        status = summary_add_report(&sum, reports[r], err);

    text md = {0};
    text_printf(&md, "# qconform summary\n\n%zu evaluated cell%s from %zu report%s. A percentage after a value is "
                     "its change from the reference model measured on the same text in the same run; values "
                     "without one may come from other windows.\n", sum.count, sum.count == 1 ? "" : "s",
                report_count, report_count == 1 ? "" : "s");
    for (size_t i = 0; status == QREF_OK && i < sum.count; i++) {
        const summary_cell *panel = &sum.cells[i];
        if (seen_before(&sum, i, same_panel))
            continue;
        int bits[32];
        size_t bit_count = panel_bits(&sum, panel, bits, 32);
        text_printf(&md, "\n## %s: %s\n\n| method |", panel->benchmark, panel->metric);
        for (size_t k = 0; k < bit_count; k++)
            text_printf(&md, " %d bits |", bits[k]);
        text_printf(&md, "\n|---|");
        for (size_t k = 0; k < bit_count; k++)
            text_printf(&md, "---|");
        text_printf(&md, "\n");

        /* one row per method variant */
        for (size_t j = 0; j < sum.count; j++) {
            const summary_cell *row = &sum.cells[j];
            bool first = same_panel(row, panel);
            for (size_t q = 0; q < j && first; q++)
                first = !(same_panel(&sum.cells[q], panel) && strcmp(sum.cells[q].method, row->method) == 0);
            if (!first)
                continue;
            text_printf(&md, "| ");
            text_markdown_cell(&md, row->method);
            text_printf(&md, " |");
            for (size_t k = 0; k < bit_count; k++) {
                const summary_cell *hit = NULL;
                for (size_t q = 0; q < sum.count && hit == NULL; q++)
                    if (same_panel(&sum.cells[q], panel) && strcmp(sum.cells[q].method, row->method) == 0 &&
                        sum.cells[q].bits == bits[k])
                        hit = &sum.cells[q];
                if (hit == NULL)
                    text_printf(&md, " |");
                else if (hit->has_value && hit->has_reference)
                    text_printf(&md, " %.5g (%+.2f%%) %s |", hit->value,
                                100.0 * (hit->value - hit->reference) / fabs(hit->reference), hit->verdict);
                else if (hit->has_value)
                    text_printf(&md, " %.5g %s |", hit->value, hit->verdict);
                else
                    text_printf(&md, " %s |", hit->verdict);
            }
            text_printf(&md, "\n");
        }

        if (svg_prefix != NULL) {
            char svg_path[4096], svg_name[4096];
            char panel_name[96];
            snprintf(panel_name, sizeof panel_name, "%s-%s", panel->benchmark, panel->metric);
            for (char *p = panel_name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                    *p = '-';
            snprintf(svg_path, sizeof svg_path, "%s%s.svg", svg_prefix, panel_name);
            svg_link(svg_path, markdown_path, svg_name, sizeof svg_name);
            status = write_panel_svg(&sum, panel, svg_path, err);
            /* CommonMark needs <...> around a link destination with spaces or parentheses */
            bool bracket = strpbrk(svg_name, " ()") != NULL;
            text_printf(&md, "\n![%s %s against bits](%s%s%s)\n", panel->benchmark, panel->metric, bracket ? "<" : "",
                        svg_name, bracket ? ">" : "");
        }
    }

    text_printf(&md, "\n## Cells\n\n| cell | method | bits | benchmark | metric | verdict | detail |\n"
                     "|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sum.count; i++) {
        const summary_cell *c = &sum.cells[i];
        text_printf(&md, "| ");
        text_markdown_cell(&md, c->id);
        text_printf(&md, " | ");
        text_markdown_cell(&md, c->method);
        text_printf(&md, " | %d | %s | %s | %s | ", c->bits, c->benchmark, c->metric, c->verdict);
        text_markdown_cell(&md, c->message);
        text_printf(&md, " |\n");
    }
    if (status == QREF_OK && md.failed)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", markdown_path);
    if (status == QREF_OK)
        status = qref_file_write_atomic(markdown_path, md.data, md.length, err);
    free(md.data);
    free(sum.cells);
    return status;
}
