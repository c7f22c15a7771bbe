/*
 * GPTQ checkpoints in the AutoGPTQ tensor layout: packing, unpacking, dequantization,
 * structure checks and the quantization config, for one linear layer at a time.
 *
 * Source: AutoGPTQ auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py (QuantLinear buffers,
 * pack(), and the unpacking in forward()), auto_gptq/quantization/config.py, and GPTQModel
 * gptqmodel/quantization/config.py for the v2 format and its config keys.
 *
 * Tensors of a linear with in = in_features, out = out_features, b bits, G = group size
 * (G = in when group_size is -1), groups = ceil(in / G) and W-bit container words (the
 * config's pack_dtype: int32 unless GPTQModel's pack_dtype names int8, int16 or int64):
 *
 *   qweight  I<W> [ceil(in * b / W), out]      codes packed along in
 *   qzeros   I<W> [groups, ceil(out * b / W)]  zero points packed along out
 *   scales   F16 [groups, out]                 (BF16 and F32 are read too)
 *   g_idx    I32 [in]                          group of each input feature
 *
 * Packing: the words of one qweight column (or of one qzeros row) form a little-endian bit
 * stream, and element k occupies bits [b*k, b*k + b) of it. For b = 2, 4, 8 every field sits
 * inside one word. For b = 3 in int32 words, elements 10 and 21 of every 32 straddle two
 * words, which is exactly AutoGPTQ's 3-bit table. Words are unsigned values stored in the
 * signed container. GPTQModel (gptqmodel/nn_modules/qlinear/__init__.py, pack_original and
 * dequantize_weight, read at commit 00f3d5e) packs b = 2, 4, 8 into W-bit words as
 * W / b fields per word, the same stream; it has no 3-bit layout for words other than int32
 * (its 3-bit code assumes 32-bit words), so this codec rejects that combination.
 *
 * Widths that are not a multiple of W: AutoGPTQ (qlinear_cuda_old.py) and GPTQModel
 * (_register_gptq_buffers, same file) size the buffers as in // W * b rows and
 * out // W * b columns. These have room for every code only when in and out are multiples
 * of W. GPTQModel's pack_block rejects other widths ("in_features must be divisible by 32"),
 * its older pack_original drops the codes after the last whole run of W, and its
 * auto-padding (the ExllamaV2V kernel; commented out in TorchQuantLinear) pads in to a
 * multiple of G and out to a multiple of 32 only in memory, after loading. So neither
 * project defines an on-disk layout for such widths. This codec stores them by extending the
 * same bit stream to ceil(in * b / W) words per qweight column and ceil(out * b / W) words
 * per qzeros row, with every bit after the last element zero. When in * b and out * b are
 * multiples of W there are no padding bits, and for in and out multiples of 32 with int32
 * words the tensors are AutoGPTQ's byte for byte. Readers require the padding bits to be
 * zero.
 * NOTE: AutoGPTQ and GPTQModel expect in // W * b qweight rows, so they cannot load a
 * linear whose in or out is not a multiple of W from this layout.
 *
 * Zero points: format v1 ("gptq", the default when a config names none) stores zero - 1, and
 * readers add 1; v2 ("gptq_v2", GPTQModel) stores the zero as is. In v1 a stored field of all
 * ones would decode to 2^b, outside the code range. AutoGPTQ's pack() produces it from a zero
 * point of 0: it stores -1 as an unsigned word and ORs it in, which sets that field and
 * every higher bit of the word ("v1 zero-point underflow"); a field of all ones without that
 * trace is reported as a zero point out of range. Both are errors.
 *
 * Group index: without act-order, and with act-order plus static groups, g_idx[i] = i / G.
 * With act-order (desc_act) alone, GPTQ quantizes the columns in a permuted order and forms
 * the groups in that order, so g_idx[i] = (position of column i in that order) / G: not
 * monotone, but every group still holds G features (the last one in - (groups - 1) * G).
 *
 * Dequantization: W[o][i] = scales[g][o] * (q(i, o) - z(g, o)) with g = g_idx[i].
 *
 * Known limits: per-module overrides (GPTQModel "dynamic") and repacked layouts (Marlin,
 * BitBLAS, EXL2) are reported as not supported.
 */
#ifndef QREF_GPTQ_H
#define QREF_GPTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "core/qref_error.h"
#include "formats/qref_codec.h"
#include "io/qref_tensor.h"

typedef enum qref_gptq_format {
    QREF_GPTQ_FORMAT_V1, /* "gptq": zero points stored minus one */
    QREF_GPTQ_FORMAT_V2  /* "gptq_v2": zero points stored as is */
} qref_gptq_format;

/* Keys a config file declared, as bits of qref_gptq_config.declared. */
typedef enum qref_gptq_key {
    QREF_GPTQ_KEY_BITS = 1u << 0,
    QREF_GPTQ_KEY_GROUP_SIZE = 1u << 1,
    QREF_GPTQ_KEY_SYM = 1u << 2,
    QREF_GPTQ_KEY_DESC_ACT = 1u << 3,
    QREF_GPTQ_KEY_STATIC_GROUPS = 1u << 4,
    QREF_GPTQ_KEY_TRUE_SEQUENTIAL = 1u << 5,
    QREF_GPTQ_KEY_DAMP_PERCENT = 1u << 6,
    QREF_GPTQ_KEY_FORMAT = 1u << 7,
    QREF_GPTQ_KEY_LM_HEAD = 1u << 8,
    QREF_GPTQ_KEY_PACK_DTYPE = 1u << 9
} qref_gptq_key;

#define QREF_GPTQ_CONFIG_TEXT_MAX 128

/*
 * A GPTQ quantization config. Keys a file leaves out keep AutoGPTQ's defaults: bits 4,
 * group_size -1, sym true, static_groups false, true_sequential true, damp_percent 0.01,
 * format v1 and int32 words. desc_act defaults to false, but the structure check treats an
 * undeclared desc_act as possibly true, because AutoGPTQ and GPTQModel default it
 * differently.
 */
typedef struct qref_gptq_config {
    int bits;
    long group_size; /* as declared: -1 means one group over all input features */
    bool sym;
    bool desc_act;
    bool static_groups;
    bool true_sequential;
    bool lm_head;    /* GPTQModel: lm_head is quantized too */
    double damp_percent;
    qref_gptq_format format;
    int pack_bits;   /* container word width W: 32, or GPTQModel's pack_dtype int8/int16/int64 */
    unsigned declared;                          /* qref_gptq_key bits */
    char algorithm[QREF_GPTQ_CONFIG_TEXT_MAX];  /* meta.algorithm, e.g. "rtn"; empty if absent */
    char quantizer[QREF_GPTQ_CONFIG_TEXT_MAX];  /* meta.quantizer entries joined by ","; empty if absent */
    char source[QREF_GPTQ_CONFIG_TEXT_MAX];     /* file(s) the values came from */
} qref_gptq_config;

/* Sets AutoGPTQ's defaults, nothing declared. */
void qref_gptq_config_init(qref_gptq_config *config);

/* "gptq" or "gptq_v2". */
const char *qref_gptq_format_name(qref_gptq_format format);

/* GPTQModel's pack_dtype name of a word width ("int8", "int16", "int32", "int64"), or NULL. */
const char *qref_gptq_pack_dtype_name(int pack_bits);

/* Parses a pack_dtype name into its word width; returns false for any other name. */
bool qref_gptq_pack_dtype_parse(const char *name, int *pack_bits);

/*
 * Parses one quantization config object (quantize_config.json, or config.json's
 * quantization_config). Keys are matched case-insensitively with the synonyms AutoGPTQ and
 * GPTQModel accept (w_bit/wbits = bits, q_group_size = group_size, checkpoint_format =
 * format = version, method = quant_method, zero_point = not sym, act_order = desc_act,
 * GPTQModel's meta.* for damp_percent, static_groups, true_sequential, and pack_dtype).
 * Marlin, BitBLAS, AWQ and other methods or formats, and 3-bit codes in words other than
 * int32, return QREF_ERR_UNSUPPORTED naming them. display names the object in errors.
 */
qref_status qref_gptq_config_parse(const char *display, const cJSON *object, qref_gptq_config *out,
                                   qref_error *err);

/*
 * Resolves the config from the texts of quantize_config.json and config.json (either may be
 * NULL when the file is absent), in AutoGPTQ's lookup order: quantize_config.json first,
 * then config.json's quantization_config. When both declare a key with different values (or
 * imply different formats) it fails, naming both values; keys only config.json declares are
 * taken from it.
 */
qref_status qref_gptq_config_resolve(const char *quantize_display, const char *quantize_text,
                                     size_t quantize_length, const char *config_display,
                                     const char *config_text, size_t config_length,
                                     qref_gptq_config *out, qref_error *err);

/*
 * Reads quantize_config.json (or quant_config.json when it is absent) and config.json from
 * the folder dir and resolves them with qref_gptq_config_resolve.
 */
qref_status qref_gptq_config_load(const char *dir, qref_gptq_config *out, qref_error *err);

/*
 * Builds the quantization_config object AutoGPTQ writes (BaseQuantizeConfig.to_dict: bits,
 * group_size, damp_percent, desc_act, static_groups, sym, true_sequential,
 * model_name_or_path, model_file_base_name, quant_method "gptq", checkpoint_format), plus
 * GPTQModel's "pack_dtype" when the words are not int32 and its provenance object "meta":
 * {"quantizer": [config->quantizer], "algorithm": config->algorithm} when those strings are
 * set. NULL names are written as null.
 * The caller frees *out with cJSON_Delete.
 */
qref_status qref_gptq_config_to_json(const qref_gptq_config *config, const char *model_name_or_path,
                                     const char *model_file_base_name, cJSON **out, qref_error *err);

/* Returns the input features per group: group_size, or in_features when group_size is -1. */
int64_t qref_gptq_group_size(const qref_gptq_config *config, int64_t in_features);

/* The four tensors of one linear, as views (data may be unaligned). */
typedef struct qref_gptq_linear {
    const char *prefix;          /* module name for messages, e.g. "model.layers.0.mlp.up_proj" */
    const qref_tensor *qweight;
    const qref_tensor *qzeros;
    const qref_tensor *scales;
    const qref_tensor *g_idx;    /* NULL in GPTQ-for-LLaMa era files: g_idx[i] = i / G */
    int64_t out_features;
    int64_t in_features;
} qref_gptq_linear;

/*
 * Checks one linear against its expected features and the config. It adds one finding per
 * kind of problem found (all of them, not only the first), each naming the tensor, the
 * first index, the value found, the value expected and how many elements are affected.
 * The kinds: missing tensors, dtypes, shapes (naming another bit width or group size when
 * the stored shape matches one), padding bits, g_idx range and group sizes, g_idx against
 * desc_act and static_groups (a WARNING), v1 underflow and out-of-range zero points, sym
 * zero points, scales that are not finite and positive, and dequantized weights beyond the
 * f16 range (with F16 scales, which make the product f16).
 * It reads only what the stored shapes allow, so it never reads out of bounds. Zero points
 * that all equal the other format's symmetric fingerprint are left to
 * qref_gptq_format_check. Returns QREF_ERR_NOMEM when a counter array cannot be allocated
 * (the findings so far are kept), else QREF_OK.
 */
qref_status qref_gptq_check_findings(const qref_gptq_linear *linear, const qref_gptq_config *config,
                                     qref_findings *findings, qref_error *err);

/*
 * Runs qref_gptq_check_findings and returns its first ERROR finding as QREF_ERR_INVALID
 * with the finding's message; WARNING findings do not fail.
 */
qref_status qref_gptq_check_linear(const qref_gptq_linear *linear, const qref_gptq_config *config,
                                   qref_error *err);

/*
 * Zero-point statistics over the linears of one artifact, for telling format v1 from v2.
 * Reading a file in the wrong format moves every zero point by one step and every weight by
 * one scale. Two statistics see it, each measured per linear (in steps):
 *   zero offset: mean decoded zero point - (2^b - 1) / 2. Asymmetric zero points of real
 *     weights, round(-min / scale), cluster near the middle of the code range, so this is
 *     about 0 in the right format, -1 for v1 read as v2 and +1 for v2 read as v1.
 *   code offset: mean over groups of (mean code of the group - decoded zero point), which is
 *     the group's mean weight divided by its scale. It is about 0 for weights centred near
 *     zero, +1 for v1 read as v2 and -1 for v2 read as v1. Its spread is far smaller than that of
 *     the zero offset (one linear's group means average many weights).
 * Sums are kept per linear so that qref_gptq_format_check can use the spread between
 * linears as the standard error.
 */
typedef struct qref_gptq_format_stats {
    int bits;
    qref_gptq_format format;    /* format the zero points were decoded with */
    size_t linears;
    uint64_t zero_points;       /* zero points read */
    uint64_t at_sym_zero[3];    /* zero points equal to 2^(b-1) - 1, 2^(b-1), 2^(b-1) + 1 */
    double zero_offset_sum;     /* sum over linears of the linear's zero offset */
    double zero_offset_sumsq;
    double code_offset_sum;     /* sum over linears of the linear's code offset */
    double code_offset_sumsq;
} qref_gptq_format_stats;

void qref_gptq_format_stats_init(qref_gptq_format_stats *stats, const qref_gptq_config *config);

/*
 * Adds one linear to stats. The linear must pass qref_gptq_check_linear; the code offset
 * reads at most QREF_GPTQ_FORMAT_ROWS evenly spaced output rows, so the cost per linear is
 * bounded. Returns QREF_ERR_NOMEM when the group sums cannot be allocated.
 */
#define QREF_GPTQ_FORMAT_ROWS 256
qref_status qref_gptq_format_stats_add(qref_gptq_format_stats *stats, const qref_gptq_linear *linear,
                                       const qref_gptq_config *config, qref_error *err);

/*
 * Decides whether the zero points contradict the declared format and adds a
 * "gptq.format_mismatch" finding when they do:
 *   - symmetric fingerprint: every zero point of the artifact equals 2^(b-1) - 1 under v2
 *     (the stored v1 encoding of 2^(b-1)) or 2^(b-1) + 1 under v1: ERROR;
 *   - otherwise the code offset e, signed so that +1 means "one step towards the other
 *     format", with its standard error s over linears: ERROR when 0.5 <= e <= 1.5,
 *     e >= QREF_GPTQ_FORMAT_CLEAR_SIGMAS * s, at least two linears, and the zero offset points
 *     the same way; WARNING when e >= 0.5 or the signed zero offset is >= 0.5 otherwise.
 * The rule assumes each group's weights are centred near zero, which holds for the linears
 * of LLaMA-style models. On the fixtures the right format gives |code offset| <= 0.08 and
 * |zero offset| <= 0.15, and a wrong one gives about 1 (the AutoGPTQ fixture read as v2:
 * code offset 1.001 with standard error 0.002); 8-bit codes in groups of a few weights give
 * a standard error near 0.4 on stories260k, which makes the evidence weak (a WARNING).
 */
#define QREF_GPTQ_FORMAT_CLEAR_SIGMAS 5.0
void qref_gptq_format_check(const qref_gptq_format_stats *stats, qref_findings *findings);

/*
 * Orders the input features of weight[rows][cols] for an act-order layout without
 * calibration data: by descending squared L2 norm of the column (summed in double, in row
 * order), ties by ascending index; perm[k] is the column at position k. GPTQ's act-order
 * (fasterquant in auto_gptq/quantization/gptq.py) sorts by the Hessian diagonal, the summed
 * squared activations of each input feature, which needs calibration data. Round-to-nearest
 * has none, so this proxy reproduces act-order's layout (a permuted g_idx), not its accuracy.
 * Fails only when the sort keys cannot be allocated.
 */
qref_status qref_gptq_order_by_column_norm(const float *weight, int64_t rows, int64_t cols, int32_t *perm,
                                           qref_error *err);

/* Sets g_idx[perm[k]] = k / group_size: the groups act-order forms in the order perm. */
void qref_gptq_g_idx_from_order(const int32_t *perm, int64_t cols, int64_t group_size, int32_t *g_idx);

/* Codes and quantization parameters of one linear, in the layout of PyTorch's weight. */
typedef struct qref_gptq_codes {
    int bits;
    int64_t out_features;
    int64_t in_features;
    int64_t group_size;
    int64_t groups;          /* ceil(in_features / group_size) */
    qref_dtype scale_dtype;  /* dtype the scales are stored in (F16 for AutoGPTQ) */
    uint8_t *codes;          /* [out][in] */
    uint8_t *zeros;          /* [out][groups], zero points as used (v1 stored field + 1) */
    float *scales;           /* [out][groups], exactly the stored scale values */
    int32_t *g_idx;          /* [in], or NULL for g_idx[i] = i / group_size */
} qref_gptq_codes;

/* Frees the arrays of codes that qref_gptq_unpack allocated. */
void qref_gptq_codes_free(qref_gptq_codes *codes);

/* Runs qref_gptq_check_linear, then decodes codes, zeros, scales and g_idx into out. */
qref_status qref_gptq_unpack(const qref_gptq_linear *linear, const qref_gptq_config *config,
                             qref_gptq_codes *out, qref_error *err);

/*
 * Computes weight[out][in] = scale * (q - z) from decoded codes, as AutoGPTQ's
 * qlinear_cuda_old forward does: the product of an integer tensor and the stored scales has
 * the scales' dtype, so with F16 scales each weight is the exact product rounded once to
 * f16 (round-half-to-even), then widened to f32 (an overflow gives infinity, as in f16).
 * The same holds for BF16 scales; F32 scales give the f32 product.
 */
void qref_gptq_codes_dequantize(const qref_gptq_codes *codes, float *weight);

/*
 * Checks, unpacks and dequantizes one linear into weight[out_features][in_features]. With
 * F16 scales the check rejects weights beyond the f16 range (dequant.fp16_overflow),
 * because the product of codes and scales is then computed in f16.
 */
qref_status qref_gptq_dequantize(const qref_gptq_linear *linear, const qref_gptq_config *config,
                                 float *weight, qref_error *err);

/* Packed tensors of one linear: views named "<prefix>.qweight" etc. over owned buffers. */
typedef struct qref_gptq_packed {
    qref_tensor qweight;
    qref_tensor qzeros;
    qref_tensor scales;
    qref_tensor g_idx;
    uint8_t *buffers[4];     /* qweight, qzeros, scales, g_idx bytes, little-endian */
} qref_gptq_packed;

/*
 * Packs codes (codes->g_idx may be NULL for i / G) into the four AutoGPTQ tensors with F16
 * scales and int32 words; qref_gptq_pack_words takes the word width (8, 16, 32 or 64 bits,
 * GPTQModel's pack_dtype; 3-bit codes need 32). The stored codes are codes->codes as given: AutoGPTQ's pack() recomputes them as
 * round((W_hat + z * s) / f16(s)) from the f16 fake-quantized weight W_hat, which returns the
 * same codes for b <= 8 because the two f16 roundings move that quotient away from q by at
 * most 2 * 255 * 2^-11 (about 0.25), less than the 0.5 that would change the rounding.
 * Fails on a code or zero point above 2^b - 1, a scale that is not finite and positive or
 * that f16 cannot hold, a g_idx out of range, and widths the packing cannot hold. In v1 it
 * also fails on a zero point of 0, which would underflow, so such data needs v2. prefix
 * names the tensors. Free out with qref_gptq_packed_free, also after a failure.
 */
qref_status qref_gptq_pack(const char *prefix, const qref_gptq_codes *codes, qref_gptq_format format,
                           qref_gptq_packed *out, qref_error *err);
qref_status qref_gptq_pack_words(const char *prefix, const qref_gptq_codes *codes, qref_gptq_format format,
                                 int pack_bits, qref_gptq_packed *out, qref_error *err);

void qref_gptq_packed_free(qref_gptq_packed *packed);

#endif
