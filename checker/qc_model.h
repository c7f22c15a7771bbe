/*
 * A model opened for evaluation: its snapshot, LLaMA config, quantization config (when the
 * snapshot is a GPTQ artifact), the weight provider the forward reads from, and its tokenizer
 * (tokenizer.json or tokenizer.model, see model/qref_tokenizer.h) when the snapshot has one.
 */
#ifndef QC_MODEL_H
#define QC_MODEL_H

#include <stdbool.h>

#include "core/qref_error.h"
#include "formats/qref_gptq.h"
#include "io/qref_snapshot.h"
#include "model/qref_config.h"
#include "model/qref_tensor_weights.h"
#include "model/qref_tokenizer.h"

typedef struct qc_model {
    const char *path;
    qref_snapshot *snapshot;
    qref_llama_config config;
    bool quantized;               /* a GPTQ quantization config was found */
    qref_gptq_config gptq;
    qref_tensor_weights tensor_weights;
    qref_weight_provider weights;
    qref_tokenizer *tokenizer;    /* NULL when the snapshot has no tokenizer.json or tokenizer.model */
    char *tokenizer_unsupported;  /* why its tokenizer cannot be read (a layout not implemented), or NULL */
} qc_model;

/*
 * Opens a snapshot (folder, .safetensors file or archive) and reads its configs and tokenizer.
 * A tokenizer of a layout this program does not implement fails only qc_model_require_tokenizer.
 */
qref_status qc_model_open(const char *path, qc_model *model, qref_error *err);

/* Checks that the model has a tokenizer; fails naming the snapshot, and the reason when it
 * has one that it cannot read. */
qref_status qc_model_require_tokenizer(const qc_model *model, qref_error *err);

void qc_model_close(qc_model *model);

#endif
