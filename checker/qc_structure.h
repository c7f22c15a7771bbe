/*
 * Structural checks of a model artifact and its comparison with a reference model.
 *
 * Structure: every tensor the LLaMA forward needs is present with the shape the config
 * implies; each linear is either a float weight or a complete GPTQ linear whose shapes, bits,
 * zero points, scales and g_idx are valid (qref_gptq_check_linear); a snapshot that declares
 * GPTQ quantization has every linear of every layer quantized.
 *
 * Against a reference: the configs describe the same architecture; per linear, the relative
 * Frobenius error and SQNR of the dequantized weights; and for an artifact whose config
 * records round-to-nearest codes, those codes, zero points and scales must equal a fresh
 * reference quantization exactly.
 */
#ifndef QC_STRUCTURE_H
#define QC_STRUCTURE_H

#include <stdbool.h>

#include "qc_model.h"
#include "qc_report.h"

/* Adds structure checks to report; returns true when no check failed or errored. */
bool qc_structure_check(const qc_model *artifact, qc_report *report);

/* Adds the reference comparisons to report and per-layer weight errors to report->metrics. */
bool qc_structure_compare_reference(const qc_model *artifact, const qc_model *reference, qc_report *report);

/* Describes the artifact's architecture and quantization as a JSON object. */
cJSON *qc_structure_describe(const qc_model *artifact);

#endif
