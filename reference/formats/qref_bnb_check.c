/*
 * Structure checks of bitsandbytes linears (formats/qref_bnb.h): each problem becomes one
 * finding with an id of qref_bnb_finding_kinds.
 *
 * Tolerances:
 *   QUANT_MAP_TOLERANCE   1e-6, the atol of QuantState.__eq__ for code tables. The kernels never
 *                         read the stored quant_map, so a table off by more than that was written
 *                         for another code and dequantizes differently from what its writer meant.
 *   NESTED_MEAN_ERROR     0.0071 of the largest nested_absmax: double quantization stores
 *                         a = absmax - mean(absmax), whose mean is 0, and the dynamic map
 *                         rounds a / nested_absmax to a code at most 0.00703125 away (half the
 *                         widest gap, between 0.99296875 and 1, and inside [0.1, 1)), so the
 *                         mean of the decoded a is at most that far from 0. Another 1e-5 of
 *                         |nested_offset| covers the f32 rounding of the offset and of a.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_bnb.h"

#define QUANT_MAP_TOLERANCE 1e-6
#define NESTED_MEAN_ERROR 0.0071
#define NESTED_OFFSET_ROUNDING 1e-5

const qref_finding_kind qref_bnb_finding_kinds[] = {
    {"bnb.quant_state.malformed", QREF_SEVERITY_ERROR,
     "a 4-bit linear's quant_state tensor is missing, repeated, not U8, or not the JSON QuantState.from_dict reads"},
    {"bnb.quant_state.mismatch", QREF_SEVERITY_ERROR,
     "the quant_state JSON disagrees with the linear or its tensors: shape, quant_type, or a blocksize that does "
     "not give the stored number of block scales"},
    {"bnb.weight.size", QREF_SEVERITY_ERROR,
     "the packed 4-bit weight does not hold (n + 1) / 2 bytes as [count, 1] for the declared shape"},
    {"bnb.absmax.invalid", QREF_SEVERITY_ERROR,
     "a 4-bit linear's block scales are missing, of the wrong dtype, non-finite or negative"},
    {"bnb.absmax.decoded_negative", QREF_SEVERITY_WARNING,
     "a double-quantized block scale decodes below zero, which flips the sign of that block's weights"},
    {"bnb.quant_map.mismatch", QREF_SEVERITY_ERROR,
     "the stored quant_map is not F32 [16] or differs from the standard NF4/FP4 table of the quant_type"},
    {"bnb.nested.invalid", QREF_SEVERITY_ERROR,
     "double quantization is inconsistent: U8 absmax without nested keys or the reverse, nested tensors of the "
     "wrong shape, non-finite or negative nested_absmax, a nested_quant_map that is not the dynamic map, or "
     "decoded scales whose mean is not the offset"},
    {"bnb.int8.invalid", QREF_SEVERITY_ERROR,
     "an LLM.int8 weight is not I8 [out, in], or weight_format is not the U8 scalar 0 (row-major)"},
    {"bnb.scb.invalid", QREF_SEVERITY_ERROR, "an LLM.int8 SCB is missing, not F32 [out], non-finite or negative"},
    {"bnb.scb.zero", QREF_SEVERITY_WARNING,
     "an LLM.int8 SCB row scale is 0, so the whole row dequantizes to zero"},
    {"bnb.skip_modules.unlisted", QREF_SEVERITY_ERROR,
     "a linear is stored unquantized but llm_int8_skip_modules does not list it, so transformers expects it "
     "quantized and fails to load it"},
    {"bnb.skip_modules.quantized", QREF_SEVERITY_ERROR,
     "a linear listed in llm_int8_skip_modules is stored quantized, so transformers builds a plain nn.Linear "
     "that cannot load it"},
    {"bnb.config.mismatch", QREF_SEVERITY_WARNING,
     "the quantization config disagrees with a linear's stored quant_type, double quantization or storage dtype; "
     "transformers loads the stored state, so the config misdescribes the artifact"},
    {"bnb.config.mode", QREF_SEVERITY_ERROR,
     "a linear is stored in the other bitsandbytes mode (4-bit tensors under load_in_8bit, or LLM.int8 tensors "
     "under a 4-bit config), which transformers cannot load"},
    {NULL, QREF_SEVERITY_INFO, NULL},
};

/* ---- 4-bit linears ------------------------------------------------------------------------ */

/* Checks quant_map's dtype, shape and values. */
static void check_quant_map(const qref_bnb_linear *linear, const qref_bnb_quant_state *state,
                            qref_findings *findings)
{
    const qref_tensor *map = linear->quant_map;
    char shape[96];
    if (map == NULL) {
        qref_findings_add(findings, "bnb.quant_map.mismatch", QREF_SEVERITY_ERROR, linear->module,
                          "linear \"%s\": tensor \"%s.weight.quant_map\" is missing, expected F32 [16]",
                          linear->module, linear->module);
        return;
    }
    if (map->dtype != QREF_DTYPE_F32 || map->ndim != 1 || map->shape[0] != 16) {
        qref_findings_add(findings, "bnb.quant_map.mismatch", QREF_SEVERITY_ERROR, map->name,
                          "%s: tensor \"%s\": %s %s, expected F32 [16]", map->file, map->name,
                          qref_dtype_name(map->dtype), qref_tensor_shape_string(map, shape, sizeof shape));
        return;
    }
    float expected[16];
    qref_bnb_quant_map(state->quant_type, expected);
    for (int c = 0; c < 16; c++) {
        float value = qref_load_f32(map->data + 4 * c);
        if (!(fabs((double)value - (double)expected[c]) <= QUANT_MAP_TOLERANCE)) {
            qref_findings_add(findings, "bnb.quant_map.mismatch", QREF_SEVERITY_ERROR, map->name,
                              "%s: tensor \"%s\": entry %d is %.9g, expected %.9g (the standard %s table, within "
                              "%g); the bitsandbytes kernels ignore the stored table", map->file, map->name, c,
                              (double)value, (double)expected[c], qref_bnb_quant_type_name(state->quant_type),
                              QUANT_MAP_TOLERANCE);
            return;
        }
    }
}

/*
 * Checks absmax and the nested tensors against the quant_state: which layout (F32, or U8 with
 * nested tensors), the number of blocks, and the nested shapes. Returns true when the scales
 * can be decoded.
 */
static bool check_scale_layout(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, size_t blocks,
                               qref_findings *findings)
{
    const qref_tensor *absmax = linear->absmax;
    char shape[96];
    if (absmax == NULL) {
        qref_findings_add(findings, "bnb.absmax.invalid", QREF_SEVERITY_ERROR, linear->module,
                          "linear \"%s\": tensor \"%s.weight.absmax\" is missing, expected %s [%zu]", linear->module,
                          linear->module, state->nested ? "U8" : "F32", blocks);
        return false;
    }
    bool u8 = absmax->dtype == QREF_DTYPE_U8;
    if (!u8 && absmax->dtype != QREF_DTYPE_F32) {
        qref_findings_add(findings, "bnb.absmax.invalid", QREF_SEVERITY_ERROR, absmax->name,
                          "%s: tensor \"%s\": dtype %s, expected F32 (or U8 codes with double quantization)",
                          absmax->file, absmax->name, qref_dtype_name(absmax->dtype));
        return false;
    }
    if (u8 != state->nested) {
        qref_findings_add(findings, "bnb.nested.invalid", QREF_SEVERITY_ERROR, absmax->name,
                          "%s: tensor \"%s\": dtype %s, but the quant_state %s nested keys; expected %s", absmax->file,
                          absmax->name, qref_dtype_name(absmax->dtype), state->nested ? "has" : "has no",
                          state->nested ? "U8 codes of double quantization" : "F32 block scales");
        return false;
    }
    bool has_nested_tensors = linear->nested_absmax != NULL || linear->nested_quant_map != NULL;
    if (!state->nested && has_nested_tensors) {
        qref_findings_add(findings, "bnb.nested.invalid", QREF_SEVERITY_ERROR, linear->module,
                          "linear \"%s\": nested_absmax or nested_quant_map is stored, but the quant_state has no "
                          "nested keys and absmax is F32; expected neither", linear->module);
        return false;
    }
    if (absmax->ndim != 1 || (uint64_t)absmax->shape[0] != blocks) {
        qref_findings_add(findings, "bnb.quant_state.mismatch", QREF_SEVERITY_ERROR, absmax->name,
                          "%s: tensor \"%s\": shape %s, expected [%zu]: ceil(%" PRId64 " x %" PRId64 " / blocksize "
                          "%" PRId64 ") block scales", absmax->file, absmax->name,
                          qref_tensor_shape_string(absmax, shape, sizeof shape), blocks, state->shape[0],
                          state->shape[1], state->blocksize);
        return false;
    }
    if (!state->nested)
        return true;

    /* the nested pair */
    qref_error err = {0};
    if (qref_bnb_scales_match(linear, state, &err) != QREF_OK) {
        qref_findings_add_error(findings, "bnb.nested.invalid", linear->module, &err);
        return false;
    }
    return true;
}

/* Reports the first non-finite or negative value of an F32 vector; returns false when there is one. */
static bool check_scales_values(const qref_tensor *tensor, const char *id, const char *what, qref_findings *findings)
{
    for (uint64_t k = 0; k < tensor->numel; k++) {
        float value = qref_load_f32(tensor->data + 4 * k);
        if (!isfinite(value) || value < 0.0f) {
            qref_findings_add(findings, id, QREF_SEVERITY_ERROR, tensor->name,
                              "%s: tensor \"%s\": %s %g at [%" PRIu64 "], expected a finite value >= 0", tensor->file,
                              tensor->name, what, (double)value, k);
            return false;
        }
    }
    return true;
}

/* Checks the values of double quantization: nested_absmax, the dynamic map, the decoded scales and their mean. */
static void check_nested_values(const qref_bnb_linear *linear, const qref_bnb_quant_state *state, size_t blocks,
                                qref_findings *findings)
{
    if (!check_scales_values(linear->nested_absmax, "bnb.nested.invalid", "nested absmax", findings))
        return;
    const qref_tensor *map = linear->nested_quant_map;
    float expected[256];
    qref_bnb_dynamic_map(expected);
    for (int c = 0; c < 256; c++) {
        float value = qref_load_f32(map->data + 4 * c);
        if (!(fabs((double)value - (double)expected[c]) <= QUANT_MAP_TOLERANCE)) {
            qref_findings_add(findings, "bnb.nested.invalid", QREF_SEVERITY_ERROR, map->name,
                              "%s: tensor \"%s\": entry %d is %.9g, expected %.9g (create_dynamic_map's signed 8-bit "
                              "map, within %g)", map->file, map->name, c, (double)value, (double)expected[c],
                              QUANT_MAP_TOLERANCE);
            return;
        }
    }

    /* decoded scales */
    float *absmax = malloc((blocks > 0 ? blocks : 1) * sizeof *absmax);
    qref_error err = {0};
    if (absmax == NULL) {
        qref_error_set(&err, QREF_ERR_NOMEM, "linear \"%s\": cannot allocate %zu block scales", linear->module, blocks);
        qref_findings_add_error(findings, "bnb.absmax.invalid", linear->module, &err);
        return;
    }
    if (qref_bnb_absmax_decode(linear, state, absmax, blocks, &err) != QREF_OK) {
        qref_findings_add_error(findings, "bnb.nested.invalid", linear->module, &err);
        free(absmax);
        return;
    }
    double sum = 0.0, largest = 0.0;
    size_t negative = 0, first_negative = 0;
    for (size_t k = 0; k < blocks; k++) {
        if (!isfinite(absmax[k])) {
            qref_findings_add(findings, "bnb.absmax.invalid", QREF_SEVERITY_ERROR, linear->absmax->name,
                              "%s: tensor \"%s\": block %zu decodes to %g (code %u), expected a finite scale",
                              linear->absmax->file, linear->absmax->name, k, (double)absmax[k],
                              linear->absmax->data[k]);
            free(absmax);
            return;
        }
        if (absmax[k] < 0.0f && negative++ == 0)
            first_negative = k;
        sum += (double)absmax[k] - (double)state->nested_offset;
    }
    if (negative > 0)
        qref_findings_add(findings, "bnb.absmax.decoded_negative", QREF_SEVERITY_WARNING, linear->absmax->name,
                          "%s: tensor \"%s\": %zu block scales decode below zero, the first at block %zu: %g "
                          "(code %u), expected >= 0", linear->absmax->file, linear->absmax->name, negative,
                          first_negative, (double)absmax[first_negative], linear->absmax->data[first_negative]);
    for (uint64_t k = 0; k < linear->nested_absmax->numel; k++) {
        double value = (double)qref_load_f32(linear->nested_absmax->data + 4 * k);
        largest = value > largest ? value : largest;
    }
    double mean = blocks > 0 ? sum / (double)blocks : 0.0;
    double limit = NESTED_MEAN_ERROR * largest + NESTED_OFFSET_ROUNDING * fabs((double)state->nested_offset);
    if (fabs(mean) > limit)
        qref_findings_add(findings, "bnb.nested.invalid", QREF_SEVERITY_ERROR, linear->absmax->name,
                          "%s: tensor \"%s\": the decoded block scales average %.9g, nested_offset %.9g apart from "
                          "their mean by %.3g, expected at most %.3g (double quantization stores scales minus their "
                          "mean)", linear->absmax->file, linear->absmax->name, (double)state->nested_offset + mean,
                          (double)state->nested_offset, fabs(mean), limit);
    free(absmax);
}

static void check_config_4bit(const qref_bnb_config *config, const qref_bnb_linear *linear,
                              const qref_bnb_quant_state *state, qref_findings *findings)
{
    if (config->quant_type != state->quant_type)
        qref_findings_add(findings, "bnb.config.mismatch", QREF_SEVERITY_WARNING, linear->module,
                          "linear \"%s\": quant_type \"%s\" in its quant_state, but config.json: quantization_config: "
                          "bnb_4bit_quant_type is \"%s\"%s; expected the two to agree", linear->module,
                          qref_bnb_quant_type_name(state->quant_type), qref_bnb_quant_type_name(config->quant_type),
                          config->quant_type_set ? "" : " (not set: transformers' default)");
    if (config->double_quant != state->nested)
        qref_findings_add(findings, "bnb.config.mismatch", QREF_SEVERITY_WARNING, linear->module,
                          "linear \"%s\": stored %s double quantization, but config.json: quantization_config: "
                          "bnb_4bit_use_double_quant is %s; expected the two to agree", linear->module,
                          state->nested ? "with" : "without", config->double_quant ? "true" : "false");
    if (linear->weight != NULL && linear->weight->dtype != config->quant_storage)
        qref_findings_add(findings, "bnb.config.mismatch", QREF_SEVERITY_WARNING, linear->weight->name,
                          "%s: tensor \"%s\": dtype %s, but config.json: quantization_config: bnb_4bit_quant_storage "
                          "is %s; expected the two to agree", linear->weight->file, linear->weight->name,
                          qref_dtype_name(linear->weight->dtype), qref_dtype_name(config->quant_storage));
}

static void check_4bit(const qref_bnb_config *config, const qref_bnb_linear *linear, int64_t rows, int64_t cols,
                       qref_findings *findings)
{
    /* Step 1: the quant_state JSON and its agreement with the linear */
    qref_error err = {0};
    qref_bnb_quant_state state;
    if (qref_bnb_state_load(linear, &state, &err) != QREF_OK) {
        qref_findings_add_error(findings, "bnb.quant_state.malformed", linear->module, &err);
        return;
    }
    if (qref_bnb_state_match(linear, &state, rows, cols, &err) != QREF_OK) {
        qref_findings_add_error(findings, "bnb.quant_state.mismatch", linear->module, &err);
        return;
    }
    check_config_4bit(config, linear, &state, findings);

    /* Step 2: the packed codes and the code table */
    if (qref_bnb_weight_match(linear, &state, &err) != QREF_OK)
        qref_findings_add_error(findings, "bnb.weight.size", linear->module, &err);
    check_quant_map(linear, &state, findings);

    /* Step 3: block scales, plain or double-quantized */
    size_t n = (size_t)rows * (size_t)cols;
    size_t blocks = (n + (size_t)state.blocksize - 1) / (size_t)state.blocksize;
    if (!check_scale_layout(linear, &state, blocks, findings))
        return;
    if (state.nested)
        check_nested_values(linear, &state, blocks, findings);
    else
        check_scales_values(linear->absmax, "bnb.absmax.invalid", "absmax", findings);
}

/* ---- LLM.int8 and dense linears ----------------------------------------------------------- */

static void check_int8(const qref_bnb_linear *linear, int64_t rows, int64_t cols, qref_findings *findings)
{
    qref_error err = {0};
    if (qref_bnb_int8_match(linear, rows, cols, &err) != QREF_OK)
        qref_findings_add_error(findings, "bnb.int8.invalid", linear->module, &err);
    if (qref_bnb_scb_match(linear, rows, &err) != QREF_OK) {
        qref_findings_add_error(findings, "bnb.scb.invalid", linear->module, &err);
        return;
    }
    const qref_tensor *scb = linear->scb;
    size_t zeros = 0, first_zero = 0;
    for (int64_t o = 0; o < rows; o++) {
        float value = qref_load_f32(scb->data + 4 * (size_t)o);
        if (!isfinite(value) || value < 0.0f) {
            qref_findings_add(findings, "bnb.scb.invalid", QREF_SEVERITY_ERROR, scb->name,
                              "%s: tensor \"%s\": row scale %g at [%" PRId64 "], expected a finite value > 0",
                              scb->file, scb->name, (double)value, o);
            return;
        }
        if (value == 0.0f && zeros++ == 0)
            first_zero = (size_t)o;
    }
    if (zeros > 0)
        qref_findings_add(findings, "bnb.scb.zero", QREF_SEVERITY_WARNING, scb->name,
                          "%s: tensor \"%s\": %zu row scales are 0, the first at [%zu], so those rows dequantize to "
                          "zero; expected values > 0", scb->file, scb->name, zeros, first_zero);
}

static void check_dense(const qref_bnb_linear *linear, int64_t rows, int64_t cols, qref_findings *findings)
{
    const qref_tensor *weight = linear->weight;
    char shape[96];
    if (!qref_dtype_is_float(weight->dtype)) {
        qref_findings_add(findings, "structure.dtype", QREF_SEVERITY_ERROR, weight->name,
                          "%s: tensor \"%s\": dtype %s, expected a float dtype (the module is not quantized)",
                          weight->file, weight->name, qref_dtype_name(weight->dtype));
        return;
    }
    if (weight->ndim != 2 || weight->shape[0] != rows || weight->shape[1] != cols) {
        qref_findings_add(findings, "structure.shape", QREF_SEVERITY_ERROR, weight->name,
                          "%s: tensor \"%s\": shape %s, expected [%" PRId64 ", %" PRId64 "]", weight->file,
                          weight->name, qref_tensor_shape_string(weight, shape, sizeof shape), rows, cols);
        return;
    }
    qref_error err = {0};
    if (qref_tensor_check_finite(weight, &err) != QREF_OK)
        qref_findings_add_error(findings, "structure.nonfinite", weight->name, &err);
}

void qref_bnb_check_linear(const qref_bnb_config *config, const qref_bnb_linear *linear, int64_t rows, int64_t cols,
                           qref_findings *findings)
{
    qref_bnb_layout layout = qref_bnb_linear_layout(linear);
    bool skipped = qref_bnb_config_skips(config, linear->module);
    const char *file = linear->weight != NULL ? linear->weight->file : "";

    /* which mode the linear is stored in, against the config's mode and skip list */
    if (layout == QREF_BNB_LAYOUT_DENSE) {
        if (!skipped)
            qref_findings_add(findings, "bnb.skip_modules.unlisted", QREF_SEVERITY_ERROR, linear->module,
                              "%s: linear \"%s\" is stored unquantized (%s, %s), but config.json: quantization_config: "
                              "llm_int8_skip_modules does not list it; expected the %s layout or an entry such as "
                              "\"%s\"", file, linear->module, linear->weight->name,
                              qref_dtype_name(linear->weight->dtype), config->load_in_8bit ? "LLM.int8" : "4-bit",
                              strrchr(linear->module, '.') != NULL ? strrchr(linear->module, '.') + 1 : linear->module);
        check_dense(linear, rows, cols, findings);
        return;
    }
    if (skipped)
        qref_findings_add(findings, "bnb.skip_modules.quantized", QREF_SEVERITY_ERROR, linear->module,
                          "%s: linear \"%s\" is stored quantized, but config.json: quantization_config: "
                          "llm_int8_skip_modules lists it; expected a float weight", file, linear->module);
    bool int8 = layout == QREF_BNB_LAYOUT_INT8;
    if (int8 != config->load_in_8bit) {
        qref_findings_add(findings, "bnb.config.mode", QREF_SEVERITY_ERROR, linear->module,
                          "%s: linear \"%s\" is stored as %s, but config.json: quantization_config declares %s; "
                          "expected the declared mode", file, linear->module,
                          int8 ? "LLM.int8 (weight and SCB)" : "4-bit (quant_state and absmax)",
                          config->load_in_8bit ? "load_in_8bit" : "4-bit (load_in_8bit is not set)");
        return;
    }
    if (int8)
        check_int8(linear, rows, cols, findings);
    else
        check_4bit(config, linear, rows, cols, findings);
}
