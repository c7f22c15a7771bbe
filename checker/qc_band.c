#include "qc_band.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const verdict_names[QC_VERDICT_COUNT] = {
    [QC_VERDICT_PASS] = "PASS",
    [QC_VERDICT_WARN] = "WARN",
    [QC_VERDICT_SKIP] = "SKIP",
    [QC_VERDICT_NOT_SUPPORTED] = "NOT_SUPPORTED",
    [QC_VERDICT_FAIL] = "FAIL",
    [QC_VERDICT_ERROR] = "ERROR",
};

const char *qc_verdict_name(qc_verdict verdict)
{
    return (unsigned)verdict < QC_VERDICT_COUNT ? verdict_names[verdict] : "?";
}

/* Reads a two-number array [lower, upper] with lower <= upper. */
static qref_status parse_limits(const char *display, const char *path, const cJSON *json,
                                const char *key, double *lower, double *upper, qref_error *err)
{
    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(json, key);
    if (!cJSON_IsArray(limits) || cJSON_GetArraySize(limits) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(limits, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(limits, 1)))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.%s: expected [lower, upper] numbers",
                              display, path, key);
    *lower = cJSON_GetArrayItem(limits, 0)->valuedouble;
    *upper = cJSON_GetArrayItem(limits, 1)->valuedouble;
    if (!(*lower <= *upper))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.%s: lower limit %g exceeds upper limit %g",
                              display, path, key, *lower, *upper);
    return QREF_OK;
}

static void copy_string(char *dst, size_t size, const cJSON *item)
{
    dst[0] = '\0';
    if (cJSON_IsString(item))
        snprintf(dst, size, "%s", item->valuestring);
}

qref_status qc_band_parse(const char *display, const char *path, const cJSON *json, qc_band *band,
                          qref_error *err)
{
    memset(band, 0, sizeof *band);
    if (!cJSON_IsObject(json))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: expected a band object", display, path);
    static const char *const allowed[] = {"reference", "source", "relative", "absolute", "warn", "rationale"};
    const cJSON *member;
    cJSON_ArrayForEach(member, json) {
        bool known = false;
        for (size_t i = 0; i < sizeof allowed / sizeof allowed[0] && !known; i++)
            known = strcmp(member->string, allowed[i]) == 0;
        if (!known)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: unknown key \"%s\" (expected reference, source, "
                                  "relative or absolute, warn, rationale)", display, path, member->string);
    }

    /* reference: a number with its source, or "reference-model" */
    const cJSON *reference = cJSON_GetObjectItemCaseSensitive(json, "reference");
    if (cJSON_IsNumber(reference)) {
        band->reference_kind = QC_BAND_REFERENCE_VALUE;
        band->reference = reference->valuedouble;
        copy_string(band->source, sizeof band->source, cJSON_GetObjectItemCaseSensitive(json, "source"));
        if (band->source[0] == '\0')
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.source: a fixed reference value needs "
                                  "its source", display, path);
    } else if (cJSON_IsString(reference) && strcmp(reference->valuestring, "reference-model") == 0) {
        band->reference_kind = QC_BAND_REFERENCE_MODEL;
        band->reference = NAN; /* measured at run time */
        snprintf(band->source, sizeof band->source, "the reference model, evaluated in the same run");
    } else {
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.reference: expected a number or "
                              "\"reference-model\"", display, path);
    }

    /* limits: "relative" or "absolute", optional inner "warn" limits in the same mode */
    bool relative = cJSON_GetObjectItemCaseSensitive(json, "relative") != NULL;
    bool absolute = cJSON_GetObjectItemCaseSensitive(json, "absolute") != NULL;
    if (relative == absolute)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: expected exactly one of \"relative\" and "
                              "\"absolute\" limits", display, path);
    band->mode = relative ? QC_BAND_RELATIVE : QC_BAND_ABSOLUTE;
    qref_status status = parse_limits(display, path, json, relative ? "relative" : "absolute",
                                      &band->lower, &band->upper, err);
    if (status != QREF_OK)
        return status;
    if (cJSON_GetObjectItemCaseSensitive(json, "warn") != NULL) {
        status = parse_limits(display, path, json, "warn", &band->warn_lower, &band->warn_upper, err);
        if (status != QREF_OK)
            return status;
        if (band->warn_lower < band->lower || band->warn_upper > band->upper)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.warn: the warning band [%g, %g] must lie "
                                  "inside the band [%g, %g]", display, path, band->warn_lower,
                                  band->warn_upper, band->lower, band->upper);
        band->has_warn = true;
    }

    copy_string(band->rationale, sizeof band->rationale, cJSON_GetObjectItemCaseSensitive(json, "rationale"));
    if (band->rationale[0] == '\0')
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.rationale: every band states why its "
                              "limits are what they are", display, path);
    return QREF_OK;
}

/* Formats a limit in the band's unit: "+0.10%" for relative bands, "%g" for absolute ones. */
static void format_limit(const qc_band *band, double limit, char *buf, size_t size)
{
    if (band->mode == QC_BAND_RELATIVE)
        snprintf(buf, size, "%+.3g%%", limit * 100.0);
    else
        snprintf(buf, size, "%.6g", limit);
}

qc_verdict qc_band_evaluate(const qc_band *band, const char *metric, double value, char *message,
                            size_t message_size)
{
    char lower[32], upper[32];
    format_limit(band, band->lower, lower, sizeof lower);
    format_limit(band, band->upper, upper, sizeof upper);

    if (!isfinite(value)) {
        snprintf(message, message_size, "%s is %g, expected a finite value", metric, value);
        return QC_VERDICT_FAIL;
    }
    double measured = value;
    char position[96] = "";
    if (band->mode == QC_BAND_RELATIVE) {
        if (!(band->reference > 0.0) || !isfinite(band->reference)) {
            snprintf(message, message_size, "%s reference value %g cannot anchor a relative band",
                     metric, band->reference);
            return QC_VERDICT_ERROR;
        }
        measured = value / band->reference - 1.0;
        snprintf(position, sizeof position, " is %+.3g%% from the reference %.6g", measured * 100.0,
                 band->reference);
    }

    qc_verdict verdict = QC_VERDICT_PASS;
    const char *note = "";
    if (measured < band->lower) {
        verdict = QC_VERDICT_FAIL;
        note = "; below the band: better than plausible or wrong";
    } else if (measured > band->upper) {
        verdict = QC_VERDICT_FAIL;
        note = "; above the band";
    } else if (band->has_warn && (measured < band->warn_lower || measured > band->warn_upper)) {
        verdict = QC_VERDICT_WARN;
        note = "; outside the inner warning band";
    }
    snprintf(message, message_size, "%s %.6g%s; band %s to %s%s", metric, value, position, lower, upper, note);
    return verdict;
}

cJSON *qc_band_to_json(const qc_band *band)
{
    cJSON *json = cJSON_CreateObject();
    if (isfinite(band->reference))
        cJSON_AddNumberToObject(json, "reference", band->reference);
    else
        cJSON_AddNullToObject(json, "reference");
    cJSON_AddStringToObject(json, "reference_kind",
                            band->reference_kind == QC_BAND_REFERENCE_MODEL ? "reference-model" : "value");
    cJSON_AddStringToObject(json, "source", band->source);
    cJSON_AddStringToObject(json, "mode", band->mode == QC_BAND_RELATIVE ? "relative" : "absolute");
    cJSON_AddNumberToObject(json, "lower", band->lower);
    cJSON_AddNumberToObject(json, "upper", band->upper);
    if (band->has_warn) {
        cJSON_AddNumberToObject(json, "warn_lower", band->warn_lower);
        cJSON_AddNumberToObject(json, "warn_upper", band->warn_upper);
    }
    cJSON_AddStringToObject(json, "rationale", band->rationale);
    return json;
}
