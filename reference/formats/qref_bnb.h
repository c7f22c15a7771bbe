/*
 * bitsandbytes checkpoints as transformers saves them: 4-bit NF4/FP4 linears (with or without
 * double quantization of the block scales) and LLM.int8 linears, one linear at a time.
 *
 * Sources: bitsandbytes-foundation/bitsandbytes bitsandbytes/functional.py (get_4bit_type,
 * quantize_4bit, dequantize_4bit, QuantState.as_dict and from_dict, create_dynamic_map,
 * int8_vectorwise_dequant), bitsandbytes/utils.py (pack_dict_to_tensor), bitsandbytes/nn/modules.py
 * (Linear4bit and Linear8bitLt._save_to_state_dict), the CUDA kernels kQuantizeBlockwise and
 * kDequantizeBlockwise (csrc/kernels.cu, csrc/cuda/blockwise_quantization.cu), and transformers
 * BitsAndBytesConfig and _replace_with_bnb_linear (integrations/bitsandbytes.py).
 *
 * Tensors of a 4-bit linear P with W[out][in], n = out * in and blocks = ceil(n / blocksize):
 *
 *   P.weight                                U8 [(n + 1) / 2, 1]   two codes per byte
 *   P.weight.absmax                         F32 [blocks], or U8 [blocks] with double quantization
 *   P.weight.quant_map                      F32 [16]              the code table
 *   P.weight.nested_absmax                  F32 [ceil(blocks / nested_blocksize)]  double quant only
 *   P.weight.nested_quant_map               F32 [256]             double quant only
 *   P.weight.quant_state.bitsandbytes__nf4  U8 [length]           JSON text (or __fp4)
 *
 * The JSON holds quant_type, blocksize, dtype (the original weight dtype), shape, and with
 * double quantization nested_blocksize, nested_dtype and nested_offset. With a
 * bnb_4bit_quant_storage other than uint8 the packed weight has that dtype and
 * (n + 1) / (2 * itemsize) elements, and its bytes are read as they are.
 *
 * Packing: W is flattened row-major and cut into blocks of blocksize values. Byte i holds
 * element 2i in its high nibble and element 2i + 1 in its low nibble.
 *
 * Dequantization, as the CUDA kernels compute it:
 *   double quantization: absmax[k] = nested_quant_map[absmax_u8[k]] * nested_absmax[k / nested_blocksize]
 *                        + nested_offset                            (f32, product then sum)
 *   W[e] = dtype(code[nibble(e)] * absmax[e / blocksize])           (f32 product, rounded once to dtype)
 * where code is the standard NF4 or FP4 table: the kernels use their own constants and never
 * read the stored quant_map. The PyTorch fallback backend of bitsandbytes rounds the code to
 * dtype before the product, so with bf16 or f16 it can differ from the kernels in the last bit.
 *
 * LLM.int8 linears: P.weight I8 [out, in], P.SCB F32 [out] (each row's absmax) and
 * P.weight_format, a U8 scalar that is 0 ("row") for every layout the current loader reads.
 * W[o][i] = (weight[o][i] * SCB[o]) * f32(1/127), as int8_vectorwise_dequant computes it.
 */
#ifndef QREF_BNB_H
#define QREF_BNB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/qref_dtype.h"
#include "core/qref_error.h"
#include "formats/qref_codec.h"
#include "io/qref_tensor.h"

/* ---- code tables -------------------------------------------------------------------------- */

typedef enum qref_bnb_quant_type {
    QREF_BNB_QUANT_NF4,
    QREF_BNB_QUANT_FP4
} qref_bnb_quant_type;

/* "nf4" or "fp4". */
const char *qref_bnb_quant_type_name(qref_bnb_quant_type type);

/*
 * The 16-entry table get_4bit_type returns and QuantState stores as quant_map: the NF4
 * literals, or FP4's raw values [0, 0.0625, 8, 12, 4, 6, 2, 3, then the same negated] divided
 * by 12 in f32. Entry 8 of FP4 is +0, because Python's -0 is the integer 0.
 */
void qref_bnb_quant_map(qref_bnb_quant_type type, float map[16]);

/*
 * The value code c (0..15) decodes to in the CUDA kernels: the quant_map entry, except that
 * FP4 code 8 decodes to -0 (dDequantizeFP4Tree multiplies 0 by the sign -1).
 */
float qref_bnb_code_value(qref_bnb_quant_type type, unsigned code);

/*
 * The 256-entry signed dynamic map of create_dynamic_map(signed=True, max_exponent_bits=7,
 * total_bits=8), which double quantization uses for the block scales: for i = 0..6 the 2^i
 * midpoints of torch.linspace(0.1, 1, 2^i + 1) in f32, times f32(10^(i - 6)), with both signs,
 * plus 0 and 1, sorted. Index 127 is 0 and index 255 is 1.
 */
void qref_bnb_dynamic_map(float map[256]);

/* ---- config ------------------------------------------------------------------------------- */

#define QREF_BNB_SKIP_MAX 1024    /* llm_int8_skip_modules entries accepted */
#define QREF_BNB_NAME_MAX 256     /* bytes of one entry, with the terminating NUL */

/*
 * config.json's quantization_config as transformers' BitsAndBytesConfig.to_dict writes it.
 * Keys left out (or null) keep BitsAndBytesConfig's defaults.
 */
typedef struct qref_bnb_config {
    bool load_in_8bit;                 /* LLM.int8; otherwise 4-bit (transformers' rule) */
    qref_bnb_quant_type quant_type;    /* bnb_4bit_quant_type, default fp4 */
    bool quant_type_set;               /* the config has a bnb_4bit_quant_type member */
    bool double_quant;                 /* bnb_4bit_use_double_quant, default false */
    qref_dtype compute_dtype;          /* bnb_4bit_compute_dtype, default float32 */
    qref_dtype quant_storage;          /* bnb_4bit_quant_storage, default uint8 */
    double int8_threshold;             /* llm_int8_threshold, default 6.0 */
    size_t skip_count;                 /* llm_int8_skip_modules */
    char (*skip_modules)[QREF_BNB_NAME_MAX];
} qref_bnb_config;

/*
 * Parses a quantization_config object (display names it in errors). Fails on load_in_4bit
 * and load_in_8bit both true, on a quant_type other than nf4 or fp4, on dtype names torch
 * does not have, and on members of the wrong JSON type. Free with qref_bnb_config_free.
 */
qref_status qref_bnb_config_parse(const char *display, const cJSON *object, qref_bnb_config *out,
                                  qref_error *err);

void qref_bnb_config_free(qref_bnb_config *config);

/*
 * True when transformers keeps `module` ("model.layers.0.mlp.down_proj") as a plain
 * nn.Linear: some llm_int8_skip_modules entry equals the module's last name, equals the whole
 * name, or followed by "." occurs inside it (_replace_with_bnb_linear).
 */
bool qref_bnb_config_skips(const qref_bnb_config *config, const char *module);

/* ---- the quant_state JSON ----------------------------------------------------------------- */

typedef struct qref_bnb_quant_state {
    qref_bnb_quant_type quant_type;
    int64_t blocksize;
    qref_dtype dtype;                  /* F16, BF16 or F32 */
    int ndim;
    int64_t shape[QREF_MAX_DIMS];
    bool nested;                       /* nested_blocksize, nested_dtype and nested_offset present */
    int64_t nested_blocksize;
    qref_dtype nested_dtype;
    float nested_offset;               /* the JSON double rounded to f32, as from_dict does */
} qref_bnb_quant_state;

/*
 * Parses the JSON text of a quant_state tensor strictly (one object, no repeated key, UTF-8):
 * only QuantState's keys, quant_type nf4 or fp4, blocksize and nested_blocksize powers of two
 * in [32, 4096], dtype float16, bfloat16 or float32, nested_dtype float32, shape a list of 1
 * to 8 positive integers, nested_offset finite, and the three nested keys all or none.
 */
qref_status qref_bnb_quant_state_parse(const char *display, const uint8_t *text, size_t length,
                                       qref_bnb_quant_state *out, qref_error *err);

/*
 * Writes the JSON text pack_dict_to_tensor stores: Python's json.dumps of the dict, keys in
 * as_dict order, ", " and ": " separators, nested_offset in Python's shortest repr. Caller
 * frees *text; *length excludes the NUL.
 */
qref_status qref_bnb_quant_state_format(const qref_bnb_quant_state *state, char **text, size_t *length,
                                        qref_error *err);

/* ---- one linear --------------------------------------------------------------------------- */

/* The stored tensors of one linear; absent ones are NULL. */
typedef struct qref_bnb_linear {
    const char *module;                   /* "model.layers.0.mlp.up_proj" */
    const qref_tensor *weight;
    const qref_tensor *absmax;
    const qref_tensor *quant_map;
    const qref_tensor *nested_absmax;
    const qref_tensor *nested_quant_map;
    const qref_tensor *quant_state;       /* the bitsandbytes__nf4 or __fp4 tensor */
    qref_bnb_quant_type state_suffix;     /* which of the two the name ends in */
    int quant_state_count;                /* quant_state tensors found: 0, 1 or 2 */
    const qref_tensor *scb;
    const qref_tensor *weight_format;
} qref_bnb_linear;

typedef enum qref_bnb_layout {
    QREF_BNB_LAYOUT_NONE,                 /* no weight tensor */
    QREF_BNB_LAYOUT_4BIT,                 /* a quant_state or absmax tensor */
    QREF_BNB_LAYOUT_INT8,                 /* an SCB tensor */
    QREF_BNB_LAYOUT_DENSE                 /* only a weight tensor */
} qref_bnb_layout;

/* Finds the tensors of `module` in tensors. */
void qref_bnb_linear_find(const qref_tensor_set *tensors, const char *module, qref_bnb_linear *out);

/* How the linear is stored, from which tensors exist. */
qref_bnb_layout qref_bnb_linear_layout(const qref_bnb_linear *linear);

/*
 * The structure steps qref_bnb_check_linear and qref_bnb_dequantize share. Each fails with a
 * message naming the tensor, the value found and the value expected.
 */

/* Decodes the quant_state tensor: exactly one, a U8 vector of valid JSON (qref_bnb_quant_state_parse). */
qref_status qref_bnb_state_load(const qref_bnb_linear *linear, qref_bnb_quant_state *state, qref_error *err);

/* Checks the quant_state's shape against [rows, cols] and its quant_type against the key's suffix. */
qref_status qref_bnb_state_match(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, int64_t rows,
                                 int64_t cols, qref_error *err);

/* Checks the packed weight: 2-D [(n + 1) / (2 * itemsize), 1] in its storage dtype, (n + 1) / 2 bytes. */
qref_status qref_bnb_weight_match(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, qref_error *err);

/*
 * Checks quant_map (F32 [16]), absmax (F32 [blocks], or U8 [blocks] with double quantization)
 * and the nested pair (F32 [ceil(blocks / nested_blocksize)] and F32 [256]).
 */
qref_status qref_bnb_scales_match(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, qref_error *err);

/* Checks an LLM.int8 weight (I8 [rows, cols]) and weight_format (a U8 scalar 0) when present. */
qref_status qref_bnb_int8_match(const qref_bnb_linear *linear, int64_t rows, int64_t cols, qref_error *err);

/* Checks SCB: F32 [rows]. */
qref_status qref_bnb_scb_match(const qref_bnb_linear *linear, int64_t rows, qref_error *err);

/*
 * Checks one linear against its features [rows = out][cols = in] and the config, adding one
 * finding per problem with the ids of qref_bnb_finding_kinds.
 */
void qref_bnb_check_linear(const qref_bnb_config *config, const qref_bnb_linear *linear, int64_t rows,
                           int64_t cols, qref_findings *findings);

/* The finding ids qref_bnb_check_linear reports, terminated by an entry whose id is NULL. */
extern const qref_finding_kind qref_bnb_finding_kinds[];

/*
 * Dequantizes one linear into weight[rows][cols] as bitsandbytes does: 4-bit through the
 * quant_state, LLM.int8 through SCB, and a dense float weight (a skipped module) by
 * conversion. Fails naming the tensor when the structure does not allow it (shapes, dtypes,
 * malformed quant_state); values such as a NaN absmax come through as they dequantize.
 */
qref_status qref_bnb_dequantize(const qref_bnb_linear *linear, int64_t rows, int64_t cols, float *weight,
                                qref_error *err);

/*
 * Decodes the block scales of a 4-bit linear into absmax[blocks] (f32): the stored F32 values,
 * or with double quantization nested_quant_map[code] * nested_absmax[k / nested_blocksize]
 * + nested_offset. Checks shapes and dtypes first.
 */
qref_status qref_bnb_absmax_decode(const qref_bnb_linear *linear, const qref_bnb_quant_state *state,
                                   float *absmax, size_t blocks, qref_error *err);

/* Dequantizes packed codes with decoded scales: weight[e] = dtype(code[nibble(e)] * absmax[e / blocksize]). */
void qref_bnb_dequantize_codes(qref_bnb_quant_type type, qref_dtype dtype, const uint8_t *packed, size_t n,
                               const float *absmax, int64_t blocksize, float *weight);

/* W[o][i] = (f32(q) * scb[o]) * f32(7.874015718698502e-3), int8_vectorwise_dequant's arithmetic. */
void qref_bnb_dequantize_int8(const int8_t *q, const float *scb, int64_t rows, int64_t cols, float *weight);

/* ---- writing ------------------------------------------------------------------------------ */

/* What a 4-bit linear stores, as qref_bnb_pack_4bit takes it. */
typedef struct qref_bnb_4bit_data {
    qref_bnb_quant_state state;       /* shape [out, in], type, blocksize, dtype, nested fields */
    const uint8_t *packed;            /* [(n + 1) / 2] */
    const float *absmax;              /* [blocks], without double quantization */
    const uint8_t *absmax_codes;      /* [blocks], with double quantization */
    const float *nested_absmax;       /* [ceil(blocks / nested_blocksize)] */
    const float *nested_quant_map;    /* [256] */
} qref_bnb_4bit_data;

/* Tensors of one written linear: views named "<module>.weight" etc. over owned buffers. */
typedef struct qref_bnb_packed {
    size_t count;
    qref_tensor tensors[6];
    uint8_t *buffers[6];
} qref_bnb_packed;

/*
 * Builds the tensors Linear4bit._save_to_state_dict writes for one linear: weight (U8), absmax,
 * quant_map (the get_4bit_type table), the nested pair with double quantization, and the
 * quant_state JSON. Free out with qref_bnb_packed_free, also after a failure.
 */
qref_status qref_bnb_pack_4bit(const char *module, const qref_bnb_4bit_data *data, qref_bnb_packed *out,
                               qref_error *err);

/* Builds weight (I8 [rows, cols]), SCB (F32 [rows]) and weight_format (U8 scalar 0) of an LLM.int8 linear. */
qref_status qref_bnb_pack_int8(const char *module, const int8_t *q, const float *scb, int64_t rows, int64_t cols,
                               qref_bnb_packed *out, qref_error *err);

void qref_bnb_packed_free(qref_bnb_packed *packed);

#endif
