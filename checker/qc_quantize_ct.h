/*
 * The compressed-tensors writer of `qconform quantize`. It quantizes every linear of a
 * full-precision LLaMA snapshot with compressed-tensors' own min-max convention
 * (qref_ct_quantize in formats/qref_ct.h, which also lists where it differs from the GPTQ
 * repository's RTN). It writes the pack-quantized checkpoint llm-compressor saves for
 * weight-only integer schemes: weight_packed, weight_shape, weight_scale (in the reference's
 * dtype) and, when asymmetric, weight_zero_point per linear, with one config group that
 * targets "Linear" and ignores lm_head. Embeddings, norms and lm_head stay as the reference
 * stores them.
 */
#ifndef QC_QUANTIZE_CT_H
#define QC_QUANTIZE_CT_H

#include <stdbool.h>

#include "qc_quantize.h"

typedef struct qc_ct_request {
    const char *reference;  /* full-precision snapshot: folder, .safetensors file or archive */
    const char *out_dir;    /* artifact folder to create */
    bool force;             /* replace an existing out_dir once the new folder is complete */
    int bits;               /* 4 or 8 */
    long group_size;        /* input features per group (strategy "group"), or -1 for "channel" */
    bool sym;
} qc_ct_request;

/*
 * Quantizes request->reference and writes the artifact folder. Fails before writing in these
 * cases: a quantized or GGUF reference, bits other than 4 and 8, a group size that does not
 * divide a linear's input width, a weight dtype other than F32, F16 and BF16. An existing
 * out_dir without force fails too.
 */
qref_status qc_quantize_ct(const qc_ct_request *request, qc_quantize_outcome *outcome, qref_error *err);

#endif
