/*
 * Markdown summaries (with SVG plots of each metric against bits) of many verify reports; see
 * qc_summary.c.
 */
#ifndef QC_SUMMARY_H
#define QC_SUMMARY_H

#include <stddef.h>

#include "core/qref_error.h"

/*
 * Reads the JSON reports and writes the Markdown summary to markdown_path; with svg_prefix, also
 * one SVG plot per benchmark and metric at "<svg_prefix><benchmark>-<metric>.svg".
 */
qref_status qc_summary_write(const char *const *reports, size_t report_count, const char *markdown_path,
                             const char *svg_prefix, qref_error *err);

#endif
