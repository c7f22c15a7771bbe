/*
 * A model opened for evaluation: its LLaMA config, quantization config (when the snapshot is a
 * GPTQ artifact), the weight provider the forward reads from, and its tokenizer when it has one.
 *
 * Two kinds of input:
 *   - a Hugging Face snapshot: a folder, an archive, or a single .safetensors file. A lone
 *     .safetensors file reads config.json, the quantization config and the tokenizer files
 *     (tokenizer.json, tokenizer_config.json, tokenizer.model) from the folder it sits in;
 *   - a GGUF file (recognized by its "GGUF" magic): config from the llama.* metadata, weights
 *     dequantized from its tensors, tokenizer from tokenizer.ggml.* (model/qref_gguf_model.h,
 *     model/qref_tokenizer.h).
 * TODO: a GGUF file inside an archive is not read; the archive is opened as a snapshot and
 * fails for lack of safetensors weights.
 */
#ifndef QC_MODEL_H
#define QC_MODEL_H

#include <stdbool.h>

#include "core/qref_error.h"
#include "formats/qref_codec.h"
#include "formats/qref_fakequant.h"
#include "formats/qref_gptq.h"
#include "formats/qref_lora.h"
#include "io/qref_blob.h"
#include "io/qref_gguf.h"
#include "io/qref_snapshot.h"
#include "model/qref_config.h"
#include "model/qref_gguf_model.h"
#include "model/qref_lora_weights.h"
#include "model/qref_tensor_weights.h"
#include "model/qref_tokenizer.h"

typedef enum qc_model_kind {
    QC_MODEL_SNAPSHOT = 0,        /* Hugging Face snapshot: folder, archive or .safetensors file */
    QC_MODEL_GGUF                 /* one GGUF file */
} qc_model_kind;

/* The fake-quantization analysis of a float snapshot's linears (qc_structure.h), filled on first use. */
typedef struct qc_fakequant_cache {
    bool computed;
    qref_fakequant_summary summary;
    qref_findings findings;
} qc_fakequant_cache;

/* The files a lone .safetensors file takes from its folder. */
enum { QC_MODEL_SIDE_FILE_COUNT = 6 };

typedef struct qc_model {
    const char *path;
    qc_model_kind kind;
    qref_snapshot *snapshot;      /* QC_MODEL_SNAPSHOT only */
    qref_gguf *gguf;              /* QC_MODEL_GGUF only: the parsed file */
    qref_gguf_model gguf_model;   /* QC_MODEL_GGUF only */
    qref_llama_config config;
    bool quantized;               /* a quantization config was found (codec not NULL) */
    const qref_codec *codec;      /* the codec of its quantized linears, or NULL */
    void *codec_config;           /* that codec's parsed config */
    qref_gptq_config gptq;        /* a copy of the config when the codec is GPTQ */
    qref_tensor_weights tensor_weights;
    qref_weight_provider weights;
    qref_tokenizer *tokenizer;    /* NULL when the model has no tokenizer */
    char *tokenizer_unsupported;  /* why its tokenizer cannot be read (a layout not implemented), or NULL */
    /* config and tokenizer files beside a lone .safetensors file (blob.data NULL when absent) */
    qref_blob side_files[QC_MODEL_SIDE_FILE_COUNT];
    qc_fakequant_cache *fakequant; /* float snapshots only, else NULL */
    qref_lora_adapter *adapter;    /* attached by qc_model_attach_adapter, else NULL */
    qref_lora_weights lora_weights; /* the provider that merges it; weights reads through it */
} qc_model;

/*
 * Opens a snapshot (folder, .safetensors file or archive) or a GGUF file and reads its configs
 * and tokenizer. A tokenizer of a layout this program does not implement fails only
 * qc_model_require_tokenizer.
 */
qref_status qc_model_open(const char *path, qc_model *model, qref_error *err);

/* Checks that the model has a tokenizer; fails naming the model, and the reason when it
 * has one that it cannot read. */
qref_status qc_model_require_tokenizer(const qc_model *model, qref_error *err);

/*
 * Attaches the PEFT LoRA adapter in folder dir (adapter_config.json and
 * adapter_model.safetensors): checks it against the model, adding lora.* findings, and, when
 * no finding is an error, makes weights hand out the merged linears. Fails when the files
 * cannot be read, or with the first error finding's message (QREF_ERR_UNSUPPORTED for a
 * variant not merged, else QREF_ERR_INVALID).
 */
qref_status qc_model_attach_adapter(qc_model *model, const char *dir, qref_findings *findings, qref_error *err);

/* Attaches an adapter as qc_model_attach_adapter does, printing its WARNING findings to stderr. */
qref_status qc_model_use_adapter(qc_model *model, const char *dir, qref_error *err);

void qc_model_close(qc_model *model);

/* True when path is a regular file that starts with the GGUF magic "GGUF". */
bool qc_model_is_gguf_file(const char *path);

#endif
