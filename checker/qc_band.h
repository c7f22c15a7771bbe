/*
 * Verdicts and tolerance bands.
 *
 * A band is data from a suite file: the metric it limits, the reference value and where it
 * comes from (a published table cell, an independent golden run, or the reference model
 * evaluated in the same run), relative or absolute limits, an optional inner warning band,
 * and a one-line rationale. A value outside the limits is a FAIL, on either side: a 2-bit
 * model that scores as well as the full-precision one is as suspicious as one that collapses.
 */
#ifndef QC_BAND_H
#define QC_BAND_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "core/qref_error.h"

typedef enum qc_verdict {
    QC_VERDICT_PASS,
    QC_VERDICT_WARN,          /* inside the band but outside its inner warning band */
    QC_VERDICT_SKIP,          /* not evaluated; the reason says why */
    QC_VERDICT_NOT_SUPPORTED, /* the input is of a kind this version does not check */
    QC_VERDICT_FAIL,
    QC_VERDICT_ERROR,         /* the input could not be read, or an internal error */
    QC_VERDICT_COUNT
} qc_verdict;

const char *qc_verdict_name(qc_verdict verdict);

typedef enum qc_band_reference {
    QC_BAND_REFERENCE_VALUE,  /* a fixed number from the suite (published or golden) */
    QC_BAND_REFERENCE_MODEL   /* the reference model's value measured in the same run */
} qc_band_reference;

typedef enum qc_band_mode {
    QC_BAND_RELATIVE, /* limits on value / reference - 1 */
    QC_BAND_ABSOLUTE  /* limits on the value itself */
} qc_band_mode;

typedef struct qc_band {
    qc_band_reference reference_kind;
    double reference;          /* QC_BAND_REFERENCE_VALUE: the value; else filled in at run time */
    char source[512];          /* where the reference value comes from */
    qc_band_mode mode;
    double lower, upper;       /* failure limits, in the mode's unit */
    bool has_warn;
    double warn_lower, warn_upper;
    char rationale[512];
} qc_band;

/* Parses a suite cell's "band" object; display and path name it in errors. */
qref_status qc_band_parse(const char *display, const char *path, const cJSON *json, qc_band *band,
                          qref_error *err);

/*
 * Compares value with the band (whose reference must be known) and writes a one-line
 * explanation ("ppl 123.0 is +0.5% from the reference 122.4; band -0.1% to +0.1%").
 */
qc_verdict qc_band_evaluate(const qc_band *band, const char *metric, double value, char *message,
                            size_t message_size);

/* Writes the band as a JSON object (limits, reference and its source, rationale). */
cJSON *qc_band_to_json(const qc_band *band);

#endif
