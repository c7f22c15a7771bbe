/*
 * The writer behind `qconform quantize`: quantizes every linear of a full-precision LLaMA
 * snapshot with the reference RTN quantizer and writes a GPTQ artifact folder (AutoGPTQ
 * tensor layout, formats/qref_gptq.h) that a GPTQ reader can load as a snapshot.
 *
 * The artifact contains model.safetensors (the packed linears plus every other tensor of the
 * reference copied unchanged), config.json (the reference's, with a quantization_config
 * object added), quantize_config.json (the same object) and the reference's tokenizer,
 * generation config and licence files as they are. Everything is written into a temporary
 * folder next to the output folder, which is renamed into place only when complete.
 */
#ifndef QC_QUANTIZE_H
#define QC_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "core/qref_error.h"
#include "formats/qref_gptq.h"
#include "model/qref_config.h"
#include "qc_model.h"

/* The checkpoint format requested on the command line. */
typedef enum qc_checkpoint_choice {
    QC_CHECKPOINT_AUTO, /* gptq (v1) unless some zero point is 0, then gptq_v2 */
    QC_CHECKPOINT_V1,   /* gptq: fails on a zero point of 0 */
    QC_CHECKPOINT_V2    /* gptq_v2 */
} qc_checkpoint_choice;

typedef struct qc_quantize_request {
    const char *reference;  /* full-precision snapshot: folder, .safetensors file or archive */
    const char *out_dir;    /* artifact folder to create */
    int bits;               /* 2, 3, 4 or 8 */
    long group_size;        /* input features per group, or -1 for one group per row */
    bool sym;
    qc_checkpoint_choice checkpoint;
    bool desc_act;          /* act-order layout: groups formed in descending column-norm order */
    bool static_groups;     /* with desc_act: groups over the original column order (g_idx = i / G) */
    int pack_bits;          /* GPTQModel pack_dtype word width 8, 16, 32 or 64; 0 means 32 */
    bool force;             /* replace an existing out_dir once the new folder is complete */
    const char *quantizer;  /* meta.quantizer entry of the config, e.g. "qconform:0.1.0" */
} qc_quantize_request;

typedef struct qc_quantize_outcome {
    int layers;
    int linears;                     /* quantized linears in all layers */
    qref_gptq_format format;         /* checkpoint format written */
    bool format_switched;            /* auto wrote gptq_v2 because v1 cannot store a zero point */
    char switch_reason[QREF_ERROR_MESSAGE_MAX]; /* which zero point, when format_switched */
    char cleanup_note[QREF_ERROR_MESSAGE_MAX];  /* set when --force could not delete the old folder */
} qc_quantize_outcome;

/* Converts "auto", "gptq" or "gptq_v2" to a choice; returns false for any other name. */
bool qc_checkpoint_choice_parse(const char *name, qc_checkpoint_choice *out);

/*
 * Checks that group_size (-1 for one group per row) divides the input width of every linear
 * of a model with this config. The error names the first linear whose width it does not divide.
 */
qref_status qc_quantize_check_group_size(const qref_llama_config *config, long group_size, qref_error *err);

/* One linear of a model as qc_quantize_each_linear hands it to a format's quantizer. */
typedef struct qc_quantize_linear {
    size_t index;        /* 0-based over every layer's seven linears, in layer order */
    const char *module;  /* "model.layers.N.self_attn.q_proj" */
    const char *name;    /* module + ".weight" */
    qref_dtype dtype;    /* the dtype the reference stores the weight in */
    float *weight;       /* [rows][cols] in f32; the callback may overwrite it */
    int64_t rows;        /* out_features */
    int64_t cols;        /* in_features */
} qc_quantize_linear;

/* Quantizes one linear; setting *stop ends the walk early without an error. */
typedef qref_status (*qc_quantize_linear_fn)(void *ctx, const qc_quantize_linear *linear, bool *stop,
                                             qref_error *err);

/*
 * Loads every linear of every layer of model in f32, one at a time into one buffer, and calls
 * fn on it. Stops at the first error or when fn sets *stop.
 */
qref_status qc_quantize_each_linear(const qc_model *model, qc_quantize_linear_fn fn, void *ctx, qref_error *err);

/*
 * Quantizes request->reference with RTN and writes the GPTQ artifact to request->out_dir,
 * creating its missing parent folders. With desc_act (and no static_groups) the groups of
 * each linear follow qref_gptq_order_by_column_norm, a deterministic proxy for act-order's
 * Hessian order because RTN has no calibration data, and the config names the algorithm
 * "rtn_act_order"; with static_groups the codes equal plain RTN's and g_idx is i / G.
 * Fails before writing anything on a quantized
 * reference, a group size that does not divide a linear's input width, or an existing
 * out_dir without request->force. On any failure the temporary folder and the parent folders
 * it created are removed, and out_dir is left as it was.
 */
qref_status qc_quantize_gptq(const qc_quantize_request *request, qc_quantize_outcome *outcome, qref_error *err);

/*
 * Writes an artifact of another format from quantized linears, with the same folder handling
 * as qc_quantize_gptq (request->out_dir, request->force; the other request fields are not
 * read): model.safetensors holds every tensor of model (an opened full-precision reference)
 * except the linears' ".weight" tensors, plus linear_tensors; config.json is the reference's
 * with quantization inserted as "quantization_config", and quantize_config.json holds the same
 * object when write_quantize_config is set. Fills outcome's layer and linear counts.
 */
qref_status qc_quantize_publish(const qc_quantize_request *request, const qc_model *model,
                                const qref_tensor *linear_tensors, size_t linear_count, const cJSON *quantization,
                                bool write_quantize_config, qc_quantize_outcome *outcome, qref_error *err);

/*
 * Writes a snapshot folder that declares no quantization, with the folder handling of
 * qc_quantize_publish: model.safetensors holds exactly tensors (in name order), config.json
 * is config printed with two-space indentation as Hugging Face writes it, and the
 * reference's tokenizer, generation config and licence files are copied. Fills outcome's
 * layer and linear counts.
 */
qref_status qc_quantize_publish_snapshot(const qc_quantize_request *request, const qc_model *model,
                                         const qref_tensor *tensors, size_t tensor_count, const cJSON *config,
                                         qc_quantize_outcome *outcome, qref_error *err);

#endif
