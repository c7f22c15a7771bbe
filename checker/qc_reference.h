/*
 * Comparison of an artifact with the reference model it claims to come from: the configs
 * describe the same architecture; per linear, the relative Frobenius error and SQNR of the
 * dequantized weights stay within a limit for the artifact's bit width (or GGUF type); and for
 * an artifact whose config records round-to-nearest codes, those codes, zero points and scales
 * equal a fresh quantization of the reference.
 */
#ifndef QC_REFERENCE_H
#define QC_REFERENCE_H

#include <stdbool.h>

#include "qc_model.h"
#include "qc_report.h"

/* Adds the comparisons to report and per-linear weight errors to report->metrics; true when none failed. */
bool qc_reference_compare(const qc_model *artifact, const qc_model *reference, qc_report *report);

#endif
