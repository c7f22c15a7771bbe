/*
 * Quantized-checkpoint codecs behind one interface, and the conformance findings they report.
 *
 * A codec reads one family of quantized layouts stored in safetensors (GPTQ, AWQ,
 * bitsandbytes, compressed-tensors, ...): it parses the quantization config, says whether a
 * linear layer is stored in its layout, dequantizes a linear to dense f32 weights W[out][in],
 * checks a linear's structure, and describes it. qref_codec_detect picks the codec a snapshot's
 * config names, and recognizes repacked layouts (Marlin, EXL2, ...) by their tensor names so
 * they are reported as not supported rather than misread.
 *
 * Findings carry a stable id (listed with its meaning in qref_findings_catalog), a severity
 * and a message naming the tensor, the value found and the value expected. ERROR findings
 * make an artifact invalid; WARNING findings are suspicious but readable; INFO findings
 * describe.
 */
#ifndef QREF_CODEC_H
#define QREF_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/qref_error.h"
#include "io/qref_tensor.h"

/* ---- findings ----------------------------------------------------------------------------- */

typedef enum qref_severity {
    QREF_SEVERITY_INFO,
    QREF_SEVERITY_WARNING,
    QREF_SEVERITY_ERROR
} qref_severity;

#define QREF_FINDING_ID_MAX 64

typedef struct qref_finding {
    char id[QREF_FINDING_ID_MAX]; /* stable id from qref_findings_catalog */
    qref_severity severity;
    char tensor[256];             /* tensor or module it concerns; "" for the whole artifact */
    char message[QREF_ERROR_MESSAGE_MAX];
} qref_finding;

typedef struct qref_findings {
    qref_finding *items;
    size_t count;
    size_t capacity;
    size_t dropped;               /* findings not stored because memory ran out */
} qref_findings;

/* Appends a finding; id must be in the catalog. A failed allocation is counted in dropped. */
void qref_findings_add(qref_findings *findings, const char *id, qref_severity severity, const char *tensor,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Appends a finding from an error value: ERROR severity, err's message. */
void qref_findings_add_error(qref_findings *findings, const char *id, const char *tensor, const qref_error *err);

void qref_findings_free(qref_findings *findings);

/* Number of findings of at least the given severity. */
size_t qref_findings_count(const qref_findings *findings, qref_severity at_least);

const char *qref_severity_name(qref_severity severity);

/* One entry of a catalog of finding ids. */
typedef struct qref_finding_kind {
    const char *id;
    qref_severity severity;
    const char *meaning;
} qref_finding_kind;

/* Findings any codec may report ("layer.unquantized", ...), terminated by an entry whose id is NULL. */
extern const qref_finding_kind qref_findings_common[];

/* The catalog entry of an id, from the common list or a codec's own list; NULL when unknown. */
const qref_finding_kind *qref_finding_kind_find(const char *id);

/* ---- codecs ------------------------------------------------------------------------------- */

/* What a codec reads its config from. */
typedef struct qref_codec_input {
    const char *config_display;        /* "config.json" */
    const cJSON *config;               /* config.json's root object */
    const char *config_text;           /* config.json's text */
    size_t config_length;
    const char *quantize_display;      /* "quantize_config.json" or "quant_config.json"; NULL when absent */
    const char *quantize_text;         /* its text */
    size_t quantize_length;
    const qref_tensor_set *tensors;    /* the stored tensors */
} qref_codec_input;

/* How one linear is stored, for the per-tensor table of `inspect`. */
typedef struct qref_linear_info {
    char codec[32];        /* "gptq", "awq-gemm", "nf4", ... */
    int bits;              /* bits per stored code; 0 when not applicable */
    int64_t group_size;    /* input features per scale; -1 = one per output row; 0 = not applicable */
} qref_linear_info;

typedef struct qref_codec {
    const char *name;      /* "gptq", "awq", "bitsandbytes", "compressed-tensors" */
    /* quant_method values of a quantization config that select this codec, NULL-terminated */
    const char *const *quant_methods;
    /* the finding ids this codec reports, terminated by an entry whose id is NULL */
    const qref_finding_kind *finding_kinds;

    /* Parses the quantization config into a new object freed by config_free. */
    qref_status (*config_parse)(const qref_codec_input *input, void **config, qref_error *err);
    void (*config_free)(void *config);
    /* Adds what the config declares (method, bits, group_size, format version, ...) to out. */
    void (*config_describe)(const void *config, cJSON *out);

    /* True when `module` ("model.layers.0.mlp.up_proj") is stored in this codec's layout. */
    bool (*linear_stored)(const void *config, const qref_tensor_set *tensors, const char *module);
    /* Dequantizes a stored linear into weight[rows = out_features][cols = in_features]. */
    qref_status (*linear_dequantize)(const void *config, const qref_tensor_set *tensors, const char *module,
                                     int64_t rows, int64_t cols, float *weight, qref_error *err);
    /* Checks a stored linear against its expected features and the config, adding findings. */
    void (*linear_check)(const void *config, const qref_tensor_set *tensors, const char *module, int64_t rows,
                         int64_t cols, qref_findings *findings);
    void (*linear_describe)(const void *config, const qref_tensor_set *tensors, const char *module,
                            qref_linear_info *info);
    /*
     * Reports problems of the config against the model before any linear is checked; modules
     * lists every linear of the model ("model.layers.0.self_attn.q_proj", ..., "lm_head").
     * May be NULL.
     */
    void (*config_check)(const void *config, const char *const *modules, size_t module_count,
                         qref_findings *findings);
    /*
     * Checks that need every linear at once (for example statistics over all zero points);
     * modules lists the linears stored in this codec's layout. May be NULL.
     */
    void (*artifact_check)(const void *config, const qref_tensor_set *tensors, const char *const *modules,
                           size_t module_count, qref_findings *findings);
} qref_codec;

/* The codecs this version reads, terminated by NULL. */
extern const qref_codec *const qref_codecs[];

/*
 * Picks the codec of a snapshot: from quantize_config.json / quant_config.json or config.json's
 * quantization_config (quant_method), and parses its config. Stores NULL when the snapshot
 * declares no quantization and no tensor of a known quantized layout is stored. A declared
 * method or a repacked layout this version does not read (Marlin, EXL2, FP8, ...) is
 * QREF_ERR_UNSUPPORTED naming it; quantized tensors without a config are QREF_ERR_INVALID.
 */
qref_status qref_codec_detect(const qref_codec_input *input, const qref_codec **codec, void **config,
                              qref_error *err);

#endif
