/*
 * compressed-tensors checkpoints (llm-compressor, vLLM): the quantization_config schema, the
 * int-quantized, naive-quantized and pack-quantized tensor layouts of one linear layer, the
 * dequantization compressed-tensors performs, and the library's own min-max quantizer.
 *
 * Sources (neuralmagic/compressed-tensors, now vllm-project/compressed-tensors, read in their
 * 2025 releases): quantization/quant_config.py (QuantizationConfig), quant_scheme.py
 * (QuantizationScheme and the preset schemes), quant_args.py (QuantizationArgs and its
 * validators), config/base.py (CompressionFormat), utils/match.py (target matching),
 * quantization/lifecycle/apply.py (which group a module gets), lifecycle/initialize.py (scale
 * and zero-point shapes), lifecycle/forward.py (quantize and dequantize), utils/helpers.py
 * (calculate_qparams, calculate_range), and compressors/quantized_compressors/
 * {base.py,naive_quantized.py,pack_quantized.py}.
 *
 * The config. config.json's quantization_config contains quant_method "compressed-tensors",
 * format, quantization_status, ignore, kv_cache_scheme and config_groups: name -> scheme
 * {targets, weights, input_activations, output_activations, format}, or name -> list of
 * targets when the name is a preset ("W4A16"). A target is a module name, a class name
 * ("Linear") or "re:" and a Python regular expression that must match at the start of the
 * module name (re.match). A module governed by several targets gets the group of the most
 * specific one: exact names first, then regexes, then class names, each kind in sorted
 * order. A module that matches an ignore entry stays in float.
 *
 * Tensors of a linear with out = out_features, in = in_features, b bits, G = group size:
 *
 *   int-quantized, naive-quantized (same tensors):
 *     weight             I8   [out, in]            signed codes in [-2^(b-1), 2^(b-1) - 1]
 *   pack-quantized (b = 4 or 8, P = 32 / b codes per word):
 *     weight_packed      I32  [out, ceil(in / P)]  code + 2^(b-1) packed along in, LSB first
 *     weight_shape       I64 or I32 [2]            (out, in)
 *   both:
 *     weight_scale       F16, BF16 or F32 (the model dtype): [1] tensor, [out, 1] channel,
 *                        [out, in / G] group
 *     weight_zero_point  only for asymmetric args: I8 with weight_scale's shape; in
 *                        pack-quantized with channel or group strategy I32
 *                        [ceil(out / P), groups] packed along out like the codes
 *     weight_g_idx       I32 [in], group of each input feature (actorder "group")
 *     input_scale        [1], static (not dynamic) activation quantization only
 *
 * Packing (pack_to_int32): word k of a row contains codes k*P .. k*P + P - 1. Code j of the
 * word sits in bits [b*j, b*j + b), stored as code + 2^(b-1) (8 for 4 bits). The bits after
 * the last code of a row are zero.
 *
 * Dequantization (_dequantize in forward.py): W[o][i] = (q - zp) * scale with q, zp and scale
 * of i's group, where q and zp are first converted to the scale dtype, so the difference is
 * exact and the product is rounded once to the scale dtype (f16, bf16 or f32). A missing zero
 * point is 0.
 *
 * Quantization (calculate_qparams and _quantize, as the memoryless min-max observer applies
 * them to a weight). Per tensor, row or group, with q_min = -2^(b-1), q_max = 2^(b-1) - 1:
 *
 *   lo = min(min(x), 0)                    hi = max(max(x), 0)
 *   symmetric:  scale = max(|lo|, |hi|) / ((q_max - q_min) / 2),   zp = 0
 *   asymmetric: scale = (hi - lo) / (q_max - q_min)
 *               zp = round(clamp(q_min - lo / scale, q_min, q_max))
 *   scale = max(scale, 2^-23)              (float32 eps)
 *   q = round(clamp(x / scale + zp, q_min, q_max))
 *
 * round is half to even (torch.round). Every step is one operation in the weights' dtype.
 * Compared with the GPTQ repository's round-to-nearest (quant/qref_rtn.h):
 * - symmetric: the same scale and codes shifted by 2^(b-1) whenever the slice has a negative
 *   value; for a slice without negatives GPTQ keeps lo = 0 and uses hi / (2^b - 1), half of
 *   this scale, and clips the upper half of its codes;
 * - asymmetric: the same scale, and zp = GPTQ's zero - 2^(b-1) except where a float rounding
 *   of q_min - lo / scale moves it across a half; codes round x / scale + zp, where GPTQ rounds
 *   x / scale and then adds its zero, so an exact tie with an odd zp rounds the other way;
 * - an all-zero slice gets scale 2^-23 here and 2 / (2^b - 1) in GPTQ.
 *
 * Known limits: float formats (float-quantized, nvfp4/mxfp4-pack-quantized), sparsity and
 * transform configs, block and tensor_group weight strategies and type "float" weights are
 * reported as not supported. Activation and KV-cache quantization are parsed and checked but
 * not emulated by the reference forward.
 */
#ifndef QREF_CT_H
#define QREF_CT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "core/qref_error.h"
#include "formats/qref_codec.h"
#include "io/qref_tensor.h"

/* ---- config ------------------------------------------------------------------------------- */

typedef enum qref_ct_format {
    QREF_CT_FORMAT_UNSET,           /* not declared at this level */
    QREF_CT_FORMAT_INT_QUANTIZED,   /* "int-quantized" */
    QREF_CT_FORMAT_NAIVE_QUANTIZED, /* "naive-quantized": the same tensors as int-quantized */
    QREF_CT_FORMAT_PACK_QUANTIZED,  /* "pack-quantized" */
    QREF_CT_FORMAT_MIXED_PRECISION  /* "mixed-precision", top level only: each group names its own */
} qref_ct_format;

typedef enum qref_ct_strategy {
    QREF_CT_STRATEGY_TENSOR,
    QREF_CT_STRATEGY_CHANNEL,
    QREF_CT_STRATEGY_GROUP,
    QREF_CT_STRATEGY_BLOCK,
    QREF_CT_STRATEGY_TOKEN,
    QREF_CT_STRATEGY_TENSOR_GROUP,
    QREF_CT_STRATEGY_ATTN_HEAD
} qref_ct_strategy;

/* QuantizationArgs, after compressed-tensors' defaults and strategy inference. */
typedef struct qref_ct_args {
    int num_bits;              /* default 8 */
    bool type_float;           /* type "float"; false for "int" */
    bool symmetric;            /* default true */
    qref_ct_strategy strategy; /* inferred from group_size when absent: none -> tensor, > 0 -> group, -1 -> channel */
    long group_size;           /* as declared; 0 when absent or null */
    bool dynamic;              /* dynamic true or "local": no stored scale */
    bool actorder_group;       /* actorder "group" (alias "dynamic", or true): weight_g_idx is stored */
} qref_ct_args;

/* One entry of config_groups. */
typedef struct qref_ct_scheme {
    char *name;                /* the config_groups key */
    char **targets;
    void **target_regexes;     /* compiled "re:" targets (pcre2_code), NULL for other targets */
    size_t target_count;
    bool has_weights;
    bool has_input_activations;
    bool has_output_activations;
    qref_ct_args weights;
    qref_ct_args input_activations;
    qref_ct_format format;     /* the group's own format, else the top-level one */
    bool valid;                /* false when a schema problem makes its layout unknown */
} qref_ct_scheme;

/* A schema violation found while parsing, reported as a finding by the codec. */
typedef struct qref_ct_problem {
    const char *id;            /* "ct.schema.strategy", ... (a static string) */
    char message[QREF_ERROR_MESSAGE_MAX];
} qref_ct_problem;

#define QREF_CT_STATUS_MAX 32

typedef struct qref_ct_config {
    char display[128];         /* "config.json: quantization_config", for messages */
    qref_ct_scheme *schemes;
    size_t scheme_count;
    char **ignore;
    void **ignore_regexes;     /* as target_regexes */
    size_t ignore_count;
    qref_ct_format format;     /* top-level format */
    bool format_declared;      /* the top-level format key is present and not null */
    char status[QREF_CT_STATUS_MAX]; /* quantization_status as declared, "" when absent */
    bool has_kv_cache;
    qref_ct_args kv_cache;
    qref_ct_problem *problems;
    size_t problem_count;
} qref_ct_config;

/* "int-quantized", ...; "unset" for QREF_CT_FORMAT_UNSET. */
const char *qref_ct_format_name(qref_ct_format format);
const char *qref_ct_strategy_name(qref_ct_strategy strategy);

/*
 * Parses config.json's quantization_config object. display names it in messages. Schema
 * violations (unknown keys or strategies, a group strategy without group_size, bits that
 * pack-quantized cannot store, a quantization_status other than "compressed", an invalid
 * regex, ...) do not fail the parse: they are stored in out->problems and the scheme they
 * concern is marked invalid. Fails with QREF_ERR_UNSUPPORTED on what this version does not
 * read (float formats and weights, sparsity and transform configs, block and tensor_group
 * weights, presets whose meaning changed between releases), and with QREF_ERR_INVALID when
 * object is not a compressed-tensors config. Free out with qref_ct_config_free, also after
 * a failure.
 */
qref_status qref_ct_config_parse(const char *display, const cJSON *object, qref_ct_config *out, qref_error *err);

void qref_ct_config_free(qref_ct_config *config);

/*
 * True when target matches a module named module. A "re:" target matches by its compiled
 * regex, and never when regex is NULL. Other targets match the exact name, or the class names
 * of a LLaMA linear ("Linear", "Module") when is_linear.
 */
bool qref_ct_target_matches(const char *target, const void *regex, const char *module, bool is_linear);

/* How compressed-tensors treats one linear module. */
typedef struct qref_ct_resolution {
    bool ignored;                 /* an ignore entry matches it */
    const qref_ct_scheme *scheme; /* the group quantizing it; NULL when ignored or matched by no target */
    size_t matching_groups;       /* groups with a target that matches it (ignore aside) */
    const qref_ct_scheme *other;  /* a second matching group, when matching_groups > 1 */
} qref_ct_resolution;

/* Resolves a linear module name against the targets and the ignore list. */
qref_ct_resolution qref_ct_config_resolve(const qref_ct_config *config, const char *module);

/*
 * Reports targets and ignore entries that match none of the linear modules (WARNING
 * "ct.targets.unmatched"), and pairs of groups that both match a module (WARNING
 * "ct.targets.overlap", naming the group compressed-tensors applies).
 */
void qref_ct_config_check_targets(const qref_ct_config *config, const char *const *modules, size_t module_count,
                                  qref_findings *findings);

/*
 * Builds the quantization_config llm-compressor writes for one group of weight-only
 * quantization targeting "Linear" with format, quantization_status "compressed" and the
 * given ignore list. weights->strategy must be tensor, channel or group. The caller frees
 * *out with cJSON_Delete.
 */
qref_status qref_ct_config_to_json(const qref_ct_args *weights, qref_ct_format format, const char *const *ignore,
                                   size_t ignore_count, cJSON **out, qref_error *err);

/* ---- packing ------------------------------------------------------------------------------ */

/* Codes per 32-bit word: 32 / bits. */
int qref_ct_pack_factor(int bits);

/*
 * pack_to_int32 with packed_dim 1: values[rows][cols] (signed b-bit codes) into
 * out[rows][ceil(cols / P)] words, code + 2^(b-1) at bits [b*j, b*j + b) of its word, unused
 * high bits zero. bits is 1..8 and every value must be in range (the caller checks).
 */
void qref_ct_pack_rows(const int8_t *values, size_t rows, size_t cols, int bits, uint32_t *out);

/* pack_to_int32 with packed_dim 0: values[rows][cols] into out[ceil(rows / P)][cols]. */
void qref_ct_pack_columns(const int8_t *values, size_t rows, size_t cols, int bits, uint32_t *out);

/* unpack_from_int32, packed_dim 1: words[rows][ceil(cols / P)] into values[rows][cols]. */
void qref_ct_unpack_rows(const uint32_t *words, size_t rows, size_t cols, int bits, int8_t *values);

/* unpack_from_int32, packed_dim 0: words[ceil(rows / P)][cols] into values[rows][cols]. */
void qref_ct_unpack_columns(const uint32_t *words, size_t rows, size_t cols, int bits, int8_t *values);

/* ---- one linear --------------------------------------------------------------------------- */

/* The tensors of one linear, as views (NULL when absent; data may be unaligned). */
typedef struct qref_ct_linear {
    const char *prefix;            /* module name, e.g. "model.layers.0.mlp.up_proj" */
    const qref_tensor *weight;     /* I8 codes (int-quantized) or float weights */
    const qref_tensor *weight_packed;
    const qref_tensor *weight_shape;
    const qref_tensor *weight_scale;
    const qref_tensor *weight_zero_point;
    const qref_tensor *weight_g_idx;
    const qref_tensor *input_scale;
    const qref_tensor *input_zero_point;
    int64_t out_features;
    int64_t in_features;
} qref_ct_linear;

/* Looks up "<module>.weight", "<module>.weight_packed", ... in tensors. */
qref_ct_linear qref_ct_linear_find(const qref_tensor_set *tensors, const char *module, int64_t out_features,
                                   int64_t in_features);

/* True when the linear stores any tensor of a quantized layout (weight_packed, weight_scale,
 * zero points, weight_shape, weight_g_idx, or an integer weight). */
bool qref_ct_linear_is_quantized(const qref_ct_linear *linear);

/*
 * Checks a linear that scheme quantizes (scheme->valid, with weights) against the layout of
 * scheme->format, adding findings: ct.targeted.float, ct.tensor.missing, ct.tensor.shape,
 * ct.tensor.dtype, ct.schema.group_size (a group size that does not divide in),
 * ct.weight_shape.value, ct.zero_point.missing, ct.zero_point.unexpected,
 * ct.zero_point.range, ct.codes.range, ct.padding, ct.scale.invalid, ct.g_idx.invalid,
 * ct.input_scale.missing and ct.input_scale.invalid. Tensor contents are checked only when
 * every dtype and shape is right.
 */
void qref_ct_check_linear(const qref_ct_linear *linear, const qref_ct_scheme *scheme, qref_findings *findings);

/* Codes and quantization parameters of one linear, in PyTorch's weight layout. */
typedef struct qref_ct_codes {
    int bits;
    int64_t out_features;
    int64_t in_features;
    qref_ct_strategy strategy; /* tensor, channel or group */
    int64_t group_size;        /* input features per group: in for channel, in for tensor */
    int64_t groups;            /* scale columns: 1 for tensor and channel, in / G for group */
    qref_dtype scale_dtype;    /* F16, BF16 or F32 */
    int8_t *codes;             /* [out][in], signed */
    float *scales;             /* [out][groups], the stored values (tensor: every row the same) */
    int8_t *zeros;             /* [out][groups], signed; NULL for symmetric */
    int32_t *g_idx;            /* [in], or NULL for i / group_size */
} qref_ct_codes;

void qref_ct_codes_free(qref_ct_codes *codes);

/*
 * Checks the linear with qref_ct_check_linear, failing with the first ERROR finding's
 * message, then decodes codes, scales, zero points and g_idx into out (free it with
 * qref_ct_codes_free, also after a failure).
 */
qref_status qref_ct_unpack(const qref_ct_linear *linear, const qref_ct_scheme *scheme, qref_ct_codes *out,
                           qref_error *err);

/*
 * Computes weight[out][in] = (q - zp) * scale as compressed-tensors' _dequantize does: the
 * f32 product of the exact difference (|q - zp| <= 255) and the scale is exact for f16 and
 * bf16 scales, so rounding it once to the scale dtype gives PyTorch's result; f32 scales give
 * the f32 product.
 */
void qref_ct_codes_dequantize(const qref_ct_codes *codes, float *weight);

/*
 * Quantizes weight[out][in] with compressed-tensors' min-max convention (see the top of this
 * file) into out. args gives bits (1..8), symmetric, strategy (tensor, channel or group) and
 * group_size, which must divide in. dtype is the weights' dtype (F32, F16 or BF16): every
 * arithmetic step is rounded to it, and the scales are stored in it. name appears in errors.
 * Fails on a non-finite weight. Free out with qref_ct_codes_free, also after a failure.
 */
qref_status qref_ct_quantize(const char *name, const float *weight, int64_t out_features, int64_t in_features,
                             const qref_ct_args *args, qref_dtype dtype, qref_ct_codes *out, qref_error *err);

/* The stored tensors of one linear: views named "<prefix>.<role>" over owned buffers. */
typedef struct qref_ct_packed {
    qref_tensor tensors[4];    /* weight or weight_packed, weight_scale, then weight_shape and/or weight_zero_point */
    uint8_t *buffers[4];
    char *names[4];
    size_t count;
} qref_ct_packed;

void qref_ct_packed_free(qref_ct_packed *packed);

/*
 * Writes codes in format (int-quantized, naive-quantized or pack-quantized; pack needs 4 or
 * 8 bits) as compressed-tensors' compressors do: the I8 weight or the I32 weight_packed with
 * weight_shape (I64), weight_scale in codes->scale_dtype with the shape of the strategy, and
 * for asymmetric codes the zero points (packed along out for pack-quantized channel and group
 * strategies, I8 otherwise). Fails on codes or zero points out of range, on scales that are
 * not finite and positive, and on g_idx (not written). Free out with qref_ct_packed_free,
 * also after a failure.
 */
qref_status qref_ct_pack(const char *prefix, const qref_ct_codes *codes, qref_ct_format format,
                         qref_ct_packed *out, qref_error *err);

#endif
