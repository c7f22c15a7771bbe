/*
 * Fake-quantization detection: whether the dense float weights of a linear W[out][in] lie on
 * a per-group quantization grid, and with how many bits and what group size.
 *
 * Fake-quantized checkpoints (the way the LLaMA-3 quantization study, arXiv 2404.14047,
 * released its models) store F16 or BF16 weights whose values are dequantized codes: in each
 * group of G consecutive inputs of a row, w = round_dtype(scale * (q - z)) for integer codes q
 * in [0, 2^b - 1]. No tensor or config records the quantization, so only the values show it.
 *
 * For one group, the distinct values v_0 < ... < v_{m-1} lie on a grid c + s k, k = 0..K, when
 * every v_i is within its tolerance tau_i of a grid point, distinct values on distinct levels;
 * the group then spans K + 1 levels and needs b = ceil(log2(K + 1)) bits. K is tried upward
 * from a lower bound (the smallest gap between distinct values is a multiple of s, and m
 * distinct values need m levels) to 255, so the first K that fits is the coarsest grid. For a
 * given K the extremes sit on levels 0 and K, and the grids (s, c) that hold the values are a
 * convex polygon, narrowed value by value from the most precise: that decides the test
 * exactly, except that a value fitting several levels of the remaining grids (possible only
 * where tau nears half a step, at the extremes of BF16 8-bit groups) is placed greedily. The
 * offset c need not be a multiple of s, so a real-valued zero point fits as an integer one.
 *
 * Tolerance: a stored value is the exact s * (q - z) computed in f32 and rounded once more to
 * the storage dtype, so it is off by at most half a unit in the last place (ulp) of the
 * storage dtype at its magnitude, plus the f32 product's own rounding. Each value therefore
 * gets tau = ulp(v) / 2 + 2^-22 * max|v| of its group, the second term covering f32
 * arithmetic (2^-24 relative per operation, a few operations).
 *
 * Per linear, group sizes are tried along the chain 32, 64, 128, ... (those dividing the row
 * width) and the whole row; a grid of a group is also a grid of each of its halves, so the
 * bits needed never decrease along the chain. The linear's bit width is the smallest over the
 * chain and its group size the largest that keeps that bit width. A linear whose groups need
 * more than 2^8 levels for every group size is not fake-quantized.
 *
 * Effective bits per weight count one 16-bit scale and one 16-bit zero point per group,
 * b + 32 / G, because the detected grid's offset is a real number like its scale (4-bit
 * groups of 128: 4.25 bits).
 *
 * Known limits: groups must be contiguous runs of a row (GPTQ act-order checkpoints, whose
 * groups are permuted, are not recognized); group sizes below 32 or not in the chain are not
 * tried; a grid whose step is finer than the storage dtype's ulp across a whole group (for
 * example BF16 with 8 bits over a wide range) collapses levels and reads as fewer bits.
 * NOTE: symmetric and asymmetric grids are not told apart; summaries report sym as false.
 */
#ifndef QREF_FAKEQUANT_H
#define QREF_FAKEQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/qref_error.h"
#include "formats/qref_codec.h"
#include "io/qref_tensor.h"

#define QREF_FAKEQUANT_MAX_BITS 8
#define QREF_FAKEQUANT_MAX_LEVELS 256
/* Smallest group size tried besides the whole row. */
#define QREF_FAKEQUANT_MIN_GROUP 32

/* The quantization that one linear's values show. */
typedef struct qref_fakequant_linear {
    bool quantized;         /* every group fits a grid of at most 2^8 levels */
    int bits;               /* 1..8 when quantized */
    int64_t group_size;     /* inputs per group; -1 = one group per row */
    int levels;             /* most levels any group spans */
    double effective_bits;  /* bits + 32 / inputs per group */
} qref_fakequant_linear;

/* Finding ids of the analysis, terminated by an entry whose id is NULL. */
extern const qref_finding_kind qref_fakequant_finding_kinds[];

/*
 * Returns the fewest levels (1..256) of an affine grid that contains count values stored in
 * dtype storage (F32, F16 or BF16), or 0 when more than 256 levels are needed or a value is
 * not finite. scratch has room for count floats; values are not modified.
 */
int qref_fakequant_group_levels(const float *values, size_t count, qref_dtype storage, float *scratch);

/*
 * Analyzes a stored linear weight of shape [rows, cols] (F32, F16 or BF16). Fails when the
 * tensor has another shape (QREF_ERR_INVALID) or dtype (QREF_ERR_UNSUPPORTED). Rows run in
 * parallel with OpenMP; the result does not depend on the thread count.
 */
qref_status qref_fakequant_analyze_linear(const qref_tensor *weight, int64_t rows, int64_t cols,
                                          qref_fakequant_linear *out, qref_error *err);

/* Formats "4-bit groups of 128, 4.25 effective bits" (or "one group per row of 256"). */
void qref_fakequant_linear_describe(const qref_fakequant_linear *linear, int64_t cols, char *out, size_t size);

/*
 * A bit width that config.json claims without a quantization_config: the "qconform" member
 * written by `qconform quantize --format fake` ({"fake_quant": {"bits": B, "group_size": G}}),
 * or a name in "_name_or_path" such as "...-w4a16", "...-4bit", "..._int4". bits is 0 when
 * nothing claims one; group_size is 0 unless the qconform member gives it.
 */
typedef struct qref_fakequant_claim {
    int bits;
    int64_t group_size;
    char source[160];       /* "_name_or_path \"llama-w4\"" or "qconform.fake_quant" */
} qref_fakequant_claim;

void qref_fakequant_claim_read(const cJSON *config, qref_fakequant_claim *claim);

/* The linears of one artifact, analyzed together. */
typedef struct qref_fakequant_summary {
    size_t linears;          /* linears analyzed */
    size_t quantized;        /* of those, fake-quantized */
    size_t unreadable;       /* linears not analyzed: missing, misshapen or of another dtype */
    bool uniform;            /* every linear is fake-quantized, all with the same bits and group size */
    int bits;                /* when uniform */
    int64_t group_size;      /* when uniform; -1 = one group per row */
    double effective_bits;   /* when uniform: the mean over all weights */
    qref_fakequant_claim claim;
} qref_fakequant_summary;

/* One linear to analyze: module "model.layers.0.mlp.up_proj", its weight "<module>.weight". */
typedef struct qref_fakequant_module {
    const char *module;
    int64_t rows;            /* out_features */
    int64_t cols;            /* in_features */
} qref_fakequant_module;

/*
 * Analyzes every listed linear and adds findings: fakequant.linear (INFO) per fake-quantized
 * linear and fakequant.none (INFO) when none is. fakequant.partial and fakequant.mixed
 * (WARNING) report linears that disagree, and fakequant.claim (WARNING) a bit width that
 * config (config.json's root, may be NULL) claims and the values contradict. config_display
 * names the config in messages.
 */
void qref_fakequant_analyze_artifact(const qref_tensor_set *tensors, const qref_fakequant_module *modules,
                                     size_t count, const char *config_display, const cJSON *config,
                                     qref_fakequant_summary *summary, qref_findings *findings);

#endif
