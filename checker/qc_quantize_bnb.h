/*
 * The bitsandbytes writer of `qconform quantize`: quantizes every linear of a full-precision
 * LLaMA snapshot with bitsandbytes' reference quantizer (quant/qref_nf4.h) and writes the
 * tensors and quantization_config that transformers saves for a bitsandbytes model
 * (formats/qref_bnb.h): 4-bit NF4 or FP4 with or without double quantization, or LLM.int8.
 * Embeddings, norms and lm_head stay as the reference stores them, as transformers keeps them.
 */
#ifndef QC_QUANTIZE_BNB_H
#define QC_QUANTIZE_BNB_H

#include <stdbool.h>
#include <stdint.h>

#include "qc_quantize.h"

typedef enum qc_bnb_method {
    QC_BNB_METHOD_NF4,
    QC_BNB_METHOD_FP4,
    QC_BNB_METHOD_INT8
} qc_bnb_method;

typedef struct qc_bnb_request {
    const char *reference;   /* full-precision snapshot: folder, .safetensors file or archive */
    const char *out_dir;     /* artifact folder to create */
    bool force;              /* replace an existing out_dir once the new folder is complete */
    qc_bnb_method method;
    bool double_quant;       /* 4-bit only: block scales to 8 bits in blocks of 256 */
    int64_t blocksize;       /* 4-bit only: values per block scale, a power of two in [32, 4096] */
} qc_bnb_request;

/* Converts "nf4", "fp4" or "int8" to a method; returns false for any other name. */
bool qc_bnb_method_parse(const char *name, qc_bnb_method *out);

/*
 * Quantizes request->reference and writes the artifact folder. Fails before writing on a
 * quantized or GGUF reference, a weight dtype bitsandbytes does not quantize (other than F16,
 * BF16, F32), an existing out_dir without force, and on the quantizer's errors.
 */
qref_status qc_quantize_bnb(const qc_bnb_request *request, qc_quantize_outcome *outcome, qref_error *err);

#endif
