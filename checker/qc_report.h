/*
 * Run reports: structural checks, the SHA-256 manifest and suite cells with their verdicts,
 * written as JSON (schema "qconform-report/1"), JUnit XML and a terminal table.
 *
 * The overall verdict and exit code follow from the entries: any ERROR gives 3 (invalid
 * input) or 4 (internal error), else any FAIL gives 1, else 0.
 */
#ifndef QC_REPORT_H
#define QC_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "core/qref_error.h"
#include "qc_band.h"

#define QC_REPORT_SCHEMA "qconform-report/1"

/* One structural check or conformance finding. */
typedef struct qc_check {
    char id[64];
    qc_verdict verdict;
    qref_status error_status; /* for ERROR: the library status that caused it */
    char message[QREF_ERROR_MESSAGE_MAX];
} qc_check;

/* One suite cell: model x method x bits x benchmark, with its metric and band. */
typedef struct qc_cell_result {
    char id[128];
    char model[64];
    char method[32];
    int bits;
    int group_size;            /* -1 = per-channel */
    bool sym;
    char benchmark[32];
    char metric[32];
    char subject[16];          /* "artifact" or "reference" */
    char quant_type[32];       /* GGUF file type the cell checks, "" for none */
    char protocol[16];         /* perplexity protocol of ppl, kld and ppl_ratio cells, "" otherwise */
    bool has_value;
    double value;
    double value_stderr;
    bool has_band;
    qc_band band;
    qc_verdict verdict;
    qref_status error_status;
    char message[QREF_ERROR_MESSAGE_MAX];
    double seconds;
} qc_cell_result;

typedef struct qc_report {
    char command[16];
    char started[32];          /* UTC, ISO 8601 */
    int threads;
    cJSON *inputs;             /* {"artifact": {"path", "sha256"}, ...} */
    cJSON *protocol;           /* evaluation settings */
    cJSON *artifact;           /* what the artifact declares (format, bits, ...) */
    cJSON *manifest;           /* {"files": [...], "tensors": [...]} */
    cJSON *metrics;            /* measured values not tied to a cell (perplexities, ...) */
    qc_check *checks;
    size_t check_count;
    qc_cell_result *cells;
    size_t cell_count;
} qc_report;

/* Starts an empty report for a command, stamping the time and the OpenMP thread count. */
void qc_report_init(qc_report *report, const char *command);
void qc_report_free(qc_report *report);

/* Appends a check; message is printf-style. Returns the appended entry. */
qc_check *qc_report_add_check(qc_report *report, const char *id, qc_verdict verdict, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends an ERROR check carrying err's status and message. */
qc_check *qc_report_add_error(qc_report *report, const char *id, const qref_error *err);

/* Appends a zeroed cell (verdict SKIP) and returns it for the caller to fill. */
qc_cell_result *qc_report_add_cell(qc_report *report);

qc_verdict qc_report_overall(const qc_report *report);
int qc_report_exit_code(const qc_report *report);

/* Writes the JSON report to path ("-" = stdout), atomically for files. */
qref_status qc_report_write_json(const qc_report *report, const char *path, qref_error *err);

/* Writes JUnit XML: one testsuite, one testcase per check and per cell. */
qref_status qc_report_write_junit(const qc_report *report, const char *suite_name, const char *path,
                                  qref_error *err);

/* Prints every ERROR check and cell as "qconform: error: ID: MESSAGE" lines. */
void qc_report_print_errors(const qc_report *report, FILE *out);

/* Prints the human-readable table of checks and cells and the overall verdict. */
void qc_report_print_table(const qc_report *report, FILE *out);

#endif
