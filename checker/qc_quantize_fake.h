/*
 * The fake-quantized writer of `qconform quantize --format fake`: quantizes every linear of a
 * full-precision LLaMA snapshot with the RTN reference quantizer (quant/qref_rtn.h) and
 * stores the dequantized values scale * (q - zero) as dense F16 or BF16 weights, the way the
 * LLaMA-3 quantization study released its models. Every other float tensor is converted to
 * the same dtype; config.json is the reference's with torch_dtype set to that dtype and a
 * "qconform" member recording what was done ({"fake_quant": {"method": "rtn", "bits",
 * "group_size", "sym", "dtype", "quantizer"}}), and no quantization_config.
 */
#ifndef QC_QUANTIZE_FAKE_H
#define QC_QUANTIZE_FAKE_H

#include <stdbool.h>

#include "core/qref_dtype.h"
#include "qc_quantize.h"

typedef struct qc_fake_request {
    const char *reference;  /* full-precision snapshot: folder, .safetensors file or archive */
    const char *out_dir;    /* snapshot folder to create */
    bool force;             /* replace an existing out_dir once the new folder is complete */
    int bits;               /* 2..8 */
    long group_size;        /* input features per group, or -1 for one group per row */
    bool sym;
    qref_dtype dtype;       /* QREF_DTYPE_F16 or QREF_DTYPE_BF16 */
    const char *quantizer;  /* recorded in the qconform member, e.g. "qconform:0.1.0" */
} qc_fake_request;

/* Converts "f16"/"float16" or "bf16"/"bfloat16" to a dtype; returns false for any other name. */
bool qc_fake_dtype_parse(const char *name, qref_dtype *out);

/*
 * Quantizes request->reference and writes the snapshot folder. Fails before writing on a
 * quantized or GGUF reference, bits outside 2..8, a group size that does not divide a
 * linear's input width, or an existing out_dir without force; fails when a value overflows
 * the dtype.
 */
qref_status qc_quantize_fake(const qc_fake_request *request, qc_quantize_outcome *outcome, qref_error *err);

#endif
