/*
 * AWQ checkpoints in the AutoAWQ tensor layouts GEMM and GEMV: the quantization config,
 * packing, unpacking, dequantization and structure checks of one linear layer.
 *
 * Sources: AutoAWQ (casper-hansen/AutoAWQ) awq/modules/linear/gemm.py (WQLinear_GEMM),
 * gemv.py (WQLinear_GEMV, calculate_zeros_width), exllama.py and gemm_ipex.py (the same
 * tensors as GEMM), awq/utils/packing_utils.py (unpack_awq, reverse_awq_order,
 * dequantize_gemm), awq/models/_config.py (AwqConfig.to_dict and to_transformers_dict),
 * awq/utils/module.py (exclude_layers_to_not_quantize); llm-awq (mit-han-lab/llm-awq)
 * awq/kernels/csrc/quantization/gemv_cuda.cu (the GEMV kernel's dequantization); and
 * transformers' AwqConfig (utils/quantization_config.py: versions gemm, gemv, exllama, ipex).
 *
 * Tensors of a linear with in = in_features, out = out_features, b = 4 bits, G = group size
 * (G = in when group_size is -1) and groups = in / G:
 *
 *   GEMM (also version "exllama" and "ipex", whose loaders repack these tensors in memory):
 *     qweight  I32 [in, out / 8]        codes packed along out, interleaved
 *     qzeros   I32 [groups, out / 8]    zero points packed along out, interleaved
 *     scales   F16 [groups, out]
 *   GEMV:
 *     qweight  I32 [out, in / 8]        codes packed along in, natural order
 *     qzeros   I32 [out, Zw]            zero points packed along the groups, natural order
 *     scales   F16 [out, Zw * 8]        columns groups .. Zw * 8 - 1 are zero padding
 *   where Zw = calculate_zeros_width(in, G) = ceil(ceil(groups / 8) / m) * m with m = 1 for
 *   G >= 128, 2 for G = 64 and 4 for G = 32 (other group sizes raise NotImplementedError).
 *
 * Word order. A word holds eight 4-bit fields; field s occupies bits [4s, 4s + 4). GEMV puts
 * element k of a run of eight in field k. GEMM interleaves: from_linear puts column
 * 8c + AWQ_ORDER[s] into field s with AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7], so column 8c + j
 * is read from field AWQ_REVERSE_ORDER[j] = [0, 4, 1, 5, 2, 6, 3, 7][j]. Codes 0..7 of
 * columns 0..7 are the GEMM word 0x75316420 and the GEMV word 0x76543210. Words are uint32
 * reinterpreted as int32.
 *
 * Zero points are stored as they are (no minus one as in GPTQ v1). Every 4-bit field holds a
 * value in 0..15, so a stored zero point is always inside the code range; the checks are
 * instead that zero_point false stores 2^(b-1) = 8 everywhere, and that GEMV padding fields
 * are zero.
 *
 * zero_point false: AutoAWQ's pseudo_quantize_tensor then returns signed codes in -8..7 and no
 * zero points, and WQLinear_GEMM/GEMV.from_linear assert that zero points exist, so AutoAWQ
 * writes no such GEMM or GEMV checkpoint. This library stores the symmetric codes as code + 8
 * with every zero point 8, which the GEMM and GEMV loaders (they always read qzeros)
 * dequantize to the same weights. A file without qzeros is read with zero points 8.
 *
 * Dequantization, W[o][i] with g = i / G, q the code and z the zero point:
 *   GEMM: dequantize_gemm computes (q - z) as int8 and multiplies by the F16 scales, so each
 *         weight is the exact product s * (q - z) rounded once to f16 (round-half-to-even)
 *         and can overflow to infinity for scales above 65504 / 15.
 *   GEMV: AutoAWQ has no Python dequantization for GEMV. The GEMV kernel (gemv_cuda.cu, as
 *         read in llm-awq) computes scale * (float(q) - float(z)) in f32, which is exact, and
 *         never rounds the weight to f16. This library returns that exact f32 product.
 *
 * Known limits: only 4-bit codes (AutoAWQ's only width; its GEMM and GEMV classes raise
 * NotImplementedError otherwise). Versions "gemv_fast" and "marlin" and transformers' backend
 * "llm-awq" are different layouts, reported as not supported. Bias tensors are not read
 * (LLaMA linears have none).
 */
#ifndef QREF_AWQ_H
#define QREF_AWQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/qref_error.h"
#include "formats/qref_codec.h"
#include "io/qref_tensor.h"

/* The one code width AutoAWQ's GEMM and GEMV layouts implement. */
#define QREF_AWQ_BITS 4

/* Fields per int32 word. */
#define QREF_AWQ_PACK 8

typedef enum qref_awq_layout {
    QREF_AWQ_LAYOUT_GEMM, /* version "gemm", "exllama" or "ipex" */
    QREF_AWQ_LAYOUT_GEMV  /* version "gemv" */
} qref_awq_layout;

/* "gemm" or "gemv". */
const char *qref_awq_layout_name(qref_awq_layout layout);

/* ---- config ------------------------------------------------------------------------------- */

#define QREF_AWQ_CONFIG_TEXT_MAX 128

/* Keys a config declared, as bits of qref_awq_config.declared. */
typedef enum qref_awq_key {
    QREF_AWQ_KEY_BITS = 1u << 0,
    QREF_AWQ_KEY_GROUP_SIZE = 1u << 1,
    QREF_AWQ_KEY_ZERO_POINT = 1u << 2,
    QREF_AWQ_KEY_VERSION = 1u << 3,
    QREF_AWQ_KEY_MODULES_TO_NOT_CONVERT = 1u << 4
} qref_awq_key;

/*
 * An AWQ quantization config. Keys a file leaves out keep AutoAWQ's and transformers'
 * defaults: bits 4, group_size 128, zero_point true, version "gemm", no modules left
 * unconverted.
 */
typedef struct qref_awq_config {
    int bits;                        /* as declared; the layouts hold only 4 */
    int64_t group_size;              /* as declared: -1 means one group over all input features */
    bool zero_point;
    qref_awq_layout layout;
    char version[16];                /* as declared, lower case: "gemm", "gemv", "exllama", "ipex" */
    char **modules_to_not_convert;   /* name fragments; a module containing one stays float */
    size_t not_convert_count;
    unsigned declared;               /* qref_awq_key bits of the keys the file(s) gave */
    char source[QREF_AWQ_CONFIG_TEXT_MAX]; /* file(s) the values came from */
} qref_awq_config;

/* Sets the defaults, with no modules left unconverted. */
void qref_awq_config_init(qref_awq_config *config);

/* Frees modules_to_not_convert and sets the defaults again. */
void qref_awq_config_free(qref_awq_config *config);

/*
 * Parses one AWQ config object: config.json's quantization_config (transformers' keys bits,
 * group_size, zero_point, version, modules_to_not_convert, backend) or AutoAWQ's
 * quant_config.json (w_bit, q_group_size, zero_point, version). Both spellings are accepted;
 * an object that gives both with different values fails. quant_method, when present, must
 * be "awq". Versions "gemv_fast" and "marlin" and backend "llm-awq" return
 * QREF_ERR_UNSUPPORTED naming them. display names the object in errors. On success the
 * caller frees out with qref_awq_config_free.
 */
qref_status qref_awq_config_parse(const char *display, const cJSON *object, qref_awq_config *out,
                                  qref_error *err);

/*
 * Resolves the config from config.json's quantization_config and an AutoAWQ
 * quant_config.json (either text may be NULL when absent). transformers reads only
 * config.json and old AutoAWQ only quant_config.json, so a key that both declare must have
 * the same value in both. A key that only one of them declares is taken from it.
 */
qref_status qref_awq_config_resolve(const char *quant_display, const char *quant_text, size_t quant_length,
                                    const char *config_display, const char *config_text, size_t config_length,
                                    qref_awq_config *out, qref_error *err);

/*
 * Builds the quantization_config object AutoAWQ writes into config.json
 * (AwqConfig.to_transformers_dict): quant_method "awq", zero_point, group_size, bits, version
 * and modules_to_not_convert (null when empty). The caller frees *out with cJSON_Delete.
 */
qref_status qref_awq_config_to_json(const qref_awq_config *config, cJSON **out, qref_error *err);

/*
 * True when module ("model.layers.0.mlp.down_proj") contains one of the config's
 * modules_to_not_convert entries, the substring test transformers' replace_with_awq_linear
 * applies to the full module name.
 */
bool qref_awq_module_not_converted(const qref_awq_config *config, const char *module);

/* Returns the input features per group: group_size, or in_features when group_size is -1. */
int64_t qref_awq_group_size(const qref_awq_config *config, int64_t in_features);

/*
 * Returns GEMV's qzeros width Zw for in_features and group size G (calculate_zeros_width),
 * or -1 for a group size it does not implement (G < 128 other than 32 and 64).
 */
int64_t qref_awq_gemv_zeros_width(int64_t in_features, int64_t group_size);

/* ---- words -------------------------------------------------------------------------------- */

/* Packs the 4-bit values of columns 8c .. 8c + 7 into a GEMM word (fields in AWQ_ORDER). */
uint32_t qref_awq_gemm_word_pack(const uint8_t values[QREF_AWQ_PACK]);

/* Reads a GEMM word back into the values of columns 8c .. 8c + 7. */
void qref_awq_gemm_word_unpack(uint32_t word, uint8_t values[QREF_AWQ_PACK]);

/* Packs eight 4-bit values in natural order (value k in field k), as GEMV does. */
uint32_t qref_awq_gemv_word_pack(const uint8_t values[QREF_AWQ_PACK]);

/* Reads a GEMV word back into eight values in natural order. */
void qref_awq_gemv_word_unpack(uint32_t word, uint8_t values[QREF_AWQ_PACK]);

/* ---- linears ------------------------------------------------------------------------------ */

/* The tensors of one linear, as views (data may be unaligned). */
typedef struct qref_awq_linear {
    const char *prefix;          /* module name for messages, e.g. "model.layers.0.mlp.up_proj" */
    const qref_tensor *qweight;
    const qref_tensor *qzeros;   /* may be NULL with zero_point false */
    const qref_tensor *scales;
    int64_t out_features;
    int64_t in_features;
} qref_awq_linear;

/*
 * Checks one linear against its expected features and the config, adding findings (ids as
 * in the AWQ codec's catalog): awq.tensor.missing, awq.dtype, awq.bits and awq.group_size
 * (the declared values against the shapes), awq.layout.mismatch (a GEMV file declared GEMM
 * or the reverse, recognized by the shapes), awq.shape (other shape errors),
 * awq.scales.invalid (not finite and positive), awq.zero_point.not_symmetric (zero_point
 * false with a zero point other than 8), awq.qzeros.missing (zero_point false without
 * qzeros), awq.scales.padding and awq.qzeros.padding (nonzero GEMV padding), and
 * dequant.fp16_overflow (a GEMM weight whose f16 product overflows). A problem with the
 * config or the shapes stops the checks of values; each value check reports its first bad
 * element and how many there are.
 */
void qref_awq_check_linear(const qref_awq_linear *linear, const qref_awq_config *config,
                           qref_findings *findings);

/* Codes and quantization parameters of one linear, in the layout of PyTorch's weight. */
typedef struct qref_awq_codes {
    int bits;
    int64_t out_features;
    int64_t in_features;
    int64_t group_size;
    int64_t groups;          /* in_features / group_size */
    uint8_t *codes;          /* [out][in], 0..15 */
    uint8_t *zeros;          /* [out][groups], 0..15 */
    uint16_t *scales;        /* [out][groups], f16 bits */
} qref_awq_codes;

/* Frees the arrays of codes that qref_awq_unpack allocated. */
void qref_awq_codes_free(qref_awq_codes *codes);

/*
 * Checks the linear with qref_awq_check_linear and decodes codes, zero points (8 when
 * zero_point is false and qzeros is absent) and scales into out. Any ERROR finding other
 * than dequant.fp16_overflow fails with that finding's message.
 */
qref_status qref_awq_unpack(const qref_awq_linear *linear, const qref_awq_config *config, qref_awq_codes *out,
                            qref_error *err);

/*
 * Computes weight[out][in] from decoded codes as the layout's reader does (see the header
 * paragraph): GEMM rounds s * (q - z) to f16, GEMV keeps the exact f32 product.
 */
void qref_awq_codes_dequantize(const qref_awq_codes *codes, qref_awq_layout layout, float *weight);

/*
 * Checks, unpacks and dequantizes one linear into weight[out_features][in_features]. Any
 * ERROR finding, dequant.fp16_overflow included, fails with its message.
 */
qref_status qref_awq_dequantize(const qref_awq_linear *linear, const qref_awq_config *config, float *weight,
                                qref_error *err);

/* Packed tensors of one linear: views named "<prefix>.qweight" etc. over owned buffers. */
typedef struct qref_awq_packed {
    qref_tensor qweight;
    qref_tensor qzeros;
    qref_tensor scales;
    uint8_t *buffers[3];     /* qweight, qzeros, scales bytes, little-endian */
} qref_awq_packed;

/*
 * Packs codes into the three tensors of layout, zero padding included. The stored codes are
 * codes->codes as given: AutoAWQ's from_linear recomputes them as round((W_hat + z * s) / s)
 * in f16 from the fake-quantized weight W_hat, which returns the same codes (the unit tests
 * check that recomputation on every code of seeded random matrices). Fails on bits other
 * than 4, a code or zero point above 15, a scale that is not finite and positive, and widths
 * the layout cannot hold. GEMM needs out to be a multiple of 8. GEMV needs in to be a
 * multiple of 8 and a group size that calculate_zeros_width implements. Both need G to
 * divide in. prefix names the tensors.
 * Free out with qref_awq_packed_free, also after a failure.
 */
qref_status qref_awq_pack(const char *prefix, const qref_awq_codes *codes, qref_awq_layout layout,
                          qref_awq_packed *out, qref_error *err);

void qref_awq_packed_free(qref_awq_packed *packed);

#endif
