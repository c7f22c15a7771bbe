/*
 * Structural checks of a model artifact.
 *
 * Every tensor the LLaMA forward needs is present with the shape the config implies; each
 * linear is a finite float weight or is stored in the layout of the artifact's codec, whose
 * own checks (formats/qref_codec.h) report findings with stable ids; a snapshot that declares a
 * quantization has every linear of every layer quantized; the layer count matches the config;
 * tensors the forward never reads are reported. GGUF files get the same checks on their tensor
 * names and types.
 */
#ifndef QC_STRUCTURE_H
#define QC_STRUCTURE_H

#include <stdbool.h>

#include "qc_model.h"
#include "qc_report.h"

/* Adds structure checks to report; returns true when no check failed or errored. */
bool qc_structure_check(const qc_model *artifact, qc_report *report);

/*
 * Describes the artifact's architecture and quantization as a JSON object. A float snapshot
 * whose linears are all fake-quantized alike gets method "fake-quant" with bits, group_size
 * and effective_bits; an attached LoRA adapter is described under "adapter".
 */
cJSON *qc_structure_describe(const qc_model *artifact);

/*
 * Runs qc_structure_check on its own report and fails with the first ERROR check's message
 * (id and message) when any check failed or errored, so commands that only run a model
 * (eval, logits, compare) refuse what verify rejects.
 */
qref_status qc_structure_require_valid(const qc_model *model, qref_error *err);

/*
 * Checks that a snapshot stores exactly the config's num_hidden_layers layers. Otherwise
 * writes why into message and returns false. GGUF models always pass, because the GGUF
 * structure check counts their blk.N layers.
 */
bool qc_structure_layers_consistent(const qc_model *model, char *message, size_t size);

/*
 * Returns the fake-quantization analysis of a float snapshot's linears
 * (formats/qref_fakequant.h), computed on the first call and kept in the model. Returns NULL
 * for GGUF and quantized models.
 */
const qref_fakequant_summary *qc_structure_fakequant(const qc_model *artifact);

/*
 * Records findings as checks, as the structure checks do: ERROR as an ERROR check, WARNING as
 * WARN, INFO as PASS. Returns the number of ERROR findings.
 */
int qc_structure_report_findings(qc_report *report, const qref_findings *findings);

#endif
