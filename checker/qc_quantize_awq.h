/*
 * The AWQ writer of `qconform quantize`: quantizes every linear of a full-precision LLaMA
 * snapshot with AWQ's pseudo quantizer (quant/qref_awq_rtn.h, the RTN baseline of the AWQ
 * repositories: no activation-aware scaling) and writes an AutoAWQ artifact in the GEMM or
 * GEMV layout (formats/qref_awq.h), with config.json's quantization_config as AutoAWQ's
 * AwqConfig.to_transformers_dict writes it. Embeddings, norms and lm_head are copied from
 * the reference as AutoAWQ leaves them.
 */
#ifndef QC_QUANTIZE_AWQ_H
#define QC_QUANTIZE_AWQ_H

#include <stdbool.h>

#include "formats/qref_awq.h"
#include "qc_quantize.h"

typedef struct qc_awq_request {
    const char *reference;   /* full-precision snapshot: folder, .safetensors file or archive */
    const char *out_dir;     /* artifact folder to create */
    bool force;              /* replace an existing out_dir once the new folder is complete */
    qref_awq_layout layout;  /* GEMM or GEMV */
    long group_size;         /* input features per group, or -1 for one group per row */
    bool zero_point;         /* false: symmetric codes, stored with zero points 8 */
} qc_awq_request;

/*
 * Quantizes request->reference and writes the artifact folder. Fails before writing on a
 * quantized or GGUF reference, on widths the layout cannot hold, and on an existing out_dir
 * without force. GEMM needs out_features to be a multiple of 8. GEMV needs in_features to be
 * a multiple of 8 and a group size of 32, 64 or at least 128. Both need a group size that
 * divides every in_features. Also fails on the quantizer's errors.
 */
qref_status qc_quantize_awq(const qc_awq_request *request, qc_quantize_outcome *outcome, qref_error *err);

#endif
