#include "qc_reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_ggml.h"
#include "model/qref_gguf_model.h"
#include "model/qref_llama.h"
#include "quant/qref_rtn.h"
#include "qc_structure.h"

static const qref_tensor *find_tensor(const qc_model *model, const char *module, const char *suffix)
{
    char name[512];
    snprintf(name, sizeof name, "%s.%s", module, suffix);
    return qref_tensor_set_find(model->tensor_weights.tensors, name);
}

static qref_gptq_linear gptq_linear_of(const qc_model *model, const char *module, int64_t rows, int64_t cols)
{
    qref_gptq_linear linear = {
        .prefix = module,
        .qweight = find_tensor(model, module, "qweight"),
        .qzeros = find_tensor(model, module, "qzeros"),
        .scales = find_tensor(model, module, "scales"),
        .g_idx = find_tensor(model, module, "g_idx"),
        .out_features = rows,
        .in_features = cols,
    };
    return linear;
}

static bool configs_match(const qref_llama_config *a, const qref_llama_config *b, char *message, size_t size)
{
    const struct {
        const char *key;
        int artifact, reference;
    } fields[] = {
        {"vocab_size", a->vocab_size, b->vocab_size},
        {"hidden_size", a->hidden_size, b->hidden_size},
        {"intermediate_size", a->intermediate_size, b->intermediate_size},
        {"num_hidden_layers", a->num_hidden_layers, b->num_hidden_layers},
        {"num_attention_heads", a->num_attention_heads, b->num_attention_heads},
        {"num_key_value_heads", a->num_key_value_heads, b->num_key_value_heads},
        {"head_dim", a->head_dim, b->head_dim},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].artifact != fields[i].reference) {
            snprintf(message, size, "config.json: %s is %d in the artifact, expected %d as in the reference",
                     fields[i].key, fields[i].artifact, fields[i].reference);
            return false;
        }
    }
    return true;
}

/*
 * Compares the artifact's RTN codes of one linear with a fresh quantization of the reference
 * weight. Under act_order the reference columns are first put in the order quantize uses
 * (qref_gptq_order_by_column_norm), so column i of the artifact is column position[i] of the
 * fresh codes and g_idx[i] must be position[i] / G; otherwise position[i] = i.
 */
static qref_status compare_rtn_codes(const qc_model *artifact, const char *module, const float *reference_weight,
                                     int64_t rows, int64_t cols, bool act_order, char *mismatch, size_t size,
                                     qref_error *err)
{
    mismatch[0] = '\0';
    qref_gptq_linear linear = gptq_linear_of(artifact, module, rows, cols);
    qref_gptq_codes codes = {0};
    qref_status status = qref_gptq_unpack(&linear, &artifact->gptq, &codes, err);
    if (status != QREF_OK)
        return status;

    /* Step 1: the column order and the weight in it. */
    int32_t *order = malloc((size_t)cols * sizeof *order), *position = malloc((size_t)cols * sizeof *position);
    float *ordered = act_order ? malloc((size_t)rows * (size_t)cols * sizeof *ordered) : NULL;
    if (order == NULL || position == NULL || (act_order && ordered == NULL))
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the column order of %lld columns", module,
                                (long long)cols);
    for (int64_t k = 0; status == QREF_OK && k < cols; k++)
        order[k] = (int32_t)k;
    if (status == QREF_OK && act_order)
        status = qref_gptq_order_by_column_norm(reference_weight, rows, cols, order, err);
    for (int64_t k = 0; status == QREF_OK && k < cols; k++)
        position[order[k]] = (int32_t)k;
    for (int64_t o = 0; status == QREF_OK && act_order && o < rows; o++)
        for (int64_t k = 0; k < cols; k++)
            ordered[o * cols + k] = reference_weight[o * cols + order[k]];

    /* Step 2: a fresh quantization, and its groups against the stored ones. */
    qref_rtn_config rtn = {.bits = artifact->gptq.bits, .group_size = artifact->gptq.group_size,
                           .sym = artifact->gptq.sym};
    qref_rtn_result fresh = {0};
    if (status == QREF_OK)
        status = qref_rtn_quantize(module, act_order ? ordered : reference_weight, (size_t)rows, (size_t)cols, &rtn,
                                   &fresh, err);
    if (status == QREF_OK && (fresh.groups != (size_t)codes.groups || codes.g_idx != NULL)) {
        for (int64_t i = 0; codes.g_idx != NULL && i < cols; i++)
            if (codes.g_idx[i] != position[i] / codes.group_size) {
                snprintf(mismatch, size, "%s: g_idx[%lld] is %d, expected %lld for round-to-nearest%s groups",
                         module, (long long)i, codes.g_idx[i], (long long)(position[i] / codes.group_size),
                         act_order ? " act-order" : "");
                break;
            }
        if (mismatch[0] == '\0' && fresh.groups != (size_t)codes.groups)
            snprintf(mismatch, size, "%s: %lld groups per row, expected %zu", module, (long long)codes.groups,
                     fresh.groups);
    }

    /* Step 3: scales, zero points and codes, bit for bit. */
    for (int64_t o = 0; status == QREF_OK && mismatch[0] == '\0' && o < rows; o++) {
        for (size_t g = 0; g < fresh.groups && mismatch[0] == '\0'; g++) {
            size_t k = (size_t)o * fresh.groups + g;
            float stored = codes.scales[k];
            float expected = qref_f16_to_f32(qref_f32_to_f16(fresh.scales[k]));
            if (codes.scale_dtype == QREF_DTYPE_F32)
                expected = fresh.scales[k];
            if (codes.zeros[k] != fresh.zeros[k])
                snprintf(mismatch, size, "%s: zero point [%lld][%zu] is %u, expected %u", module, (long long)o, g,
                         codes.zeros[k], fresh.zeros[k]);
            else if (memcmp(&stored, &expected, sizeof stored) != 0)
                snprintf(mismatch, size, "%s: scale [%lld][%zu] is %.9g, expected %.9g", module, (long long)o, g,
                         stored, expected);
        }
        for (int64_t i = 0; mismatch[0] == '\0' && i < cols; i++) {
            uint8_t expected = fresh.codes[(size_t)o * (size_t)cols + (size_t)position[i]];
            if (codes.codes[(size_t)o * (size_t)cols + (size_t)i] != expected)
                snprintf(mismatch, size, "%s: code [%lld][%lld] is %u, expected %u", module, (long long)o,
                         (long long)i, codes.codes[(size_t)o * (size_t)cols + (size_t)i], expected);
        }
    }
    qref_rtn_result_free(&fresh);
    qref_gptq_codes_free(&codes);
    free(ordered);
    free(position);
    free(order);
    return status;
}

/*
 * Largest relative Frobenius error ||W' - W|| / ||W|| accepted for one linear of a b-bit
 * artifact. Min-max b-bit quantization of a row or group with range R leaves a uniform error
 * of RMS R / ((2^b - 1) sqrt(12)); for 4096 Gaussian weights R is about 8.2 sigma, giving
 * 2.37 / (2^b - 1) of the weights' RMS. The limit is three times that, because outlier
 * channels widen R and GPTQ trades weight error for output error, capped at 1.0, the error of
 * setting every weight to zero. A 16- or 32-bit artifact may differ by bf16 rounding
 * (2^-9 relative per weight) and is held to 0.01.
 */
static double weight_error_limit(int bits)
{
    if (bits >= 16)
        return 0.01;
    double limit = 3.0 * 2.37 / (double)((1 << bits) - 1);
    return limit < 1.0 ? limit : 1.0;
}

/*
 * Largest relative Frobenius error accepted for one linear stored as a ggml type. ggml scales
 * blocks of 32 values (16 or 32 inside the 256-value K-quant super-blocks), and the largest
 * magnitude among 32 Gaussian weights is about 2.2 sigma, so a block's range is about 4.4
 * sigma. A b-bit uniform code over that range leaves an error of RMS 4.4 / ((2^b - 1) sqrt(12))
 * = 1.27 / (2^b - 1) of the weights' RMS. As for GPTQ the limit is three times that, capped at
 * 1.0. IQ4_NL's 16 non-uniform levels count as 4 bits. F32, F16 and BF16 are held to 0.01, the
 * limit of 16-bit artifacts above.
 */
static double ggml_weight_error_limit(uint32_t type)
{
    int bits;
    switch (type) {
    case QREF_GGML_TYPE_Q2_K: bits = 2; break;
    case QREF_GGML_TYPE_Q3_K: bits = 3; break;
    case QREF_GGML_TYPE_Q4_0: case QREF_GGML_TYPE_Q4_1: case QREF_GGML_TYPE_Q4_K: case QREF_GGML_TYPE_IQ4_NL:
        bits = 4;
        break;
    case QREF_GGML_TYPE_Q5_0: case QREF_GGML_TYPE_Q5_1: case QREF_GGML_TYPE_Q5_K: bits = 5; break;
    case QREF_GGML_TYPE_Q6_K: bits = 6; break;
    case QREF_GGML_TYPE_Q8_0: bits = 8; break;
    default: return 0.01;
    }
    double limit = 3.0 * 1.27 / (double)((1 << bits) - 1);
    return limit < 1.0 ? limit : 1.0;
}

/* GGUF names of the seven linears, in the order of qref_llama_linear_names. */
static const char *const gguf_linear_names[QREF_LLAMA_LINEAR_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};

bool qc_reference_compare(const qc_model *artifact, const qc_model *reference, qc_report *report)
{
    char message[QREF_ERROR_MESSAGE_MAX];
    if (!qc_structure_layers_consistent(reference, message, sizeof message)) {
        qc_check *check = qc_report_add_check(report, "reference.structure", QC_VERDICT_ERROR,
                                              "the reference is invalid: %s", message);
        check->error_status = QREF_ERR_INVALID;
        return false;
    }
    if (!configs_match(&artifact->config, &reference->config, message, sizeof message)) {
        qc_report_add_check(report, "reference.config", QC_VERDICT_FAIL,
                            "%s; the artifact was not made from this reference", message);
        return false;
    }
    qc_report_add_check(report, "reference.config", QC_VERDICT_PASS,
                        "artifact and reference configs describe the same architecture");

    const qref_llama_config *config = &artifact->config;
    /* an attached LoRA adapter changes the weights on purpose: the base weights are compared */
    const qref_weight_provider *artifact_weights =
        artifact->adapter != NULL ? &artifact->lora_weights.base : &artifact->weights;
    bool act_order = artifact->quantized && strcmp(artifact->gptq.algorithm, "rtn_act_order") == 0;
    bool rtn = artifact->quantized && (strcmp(artifact->gptq.algorithm, "rtn") == 0 || act_order);
    cJSON *layers = cJSON_CreateArray();
    char rtn_mismatch[QREF_ERROR_MESSAGE_MAX] = "";
    qref_error err = {0};
    qref_status status = QREF_OK;
    bool gguf = artifact->kind == QC_MODEL_GGUF;
    int bits = artifact->quantized ? artifact->gptq.bits : 16;
    const qref_fakequant_summary *fake = qc_structure_fakequant(artifact);
    if (fake != NULL && fake->uniform)
        bits = fake->bits; /* dense weights on a quantization grid: the bit width their values show */
    double worst_error = 0.0, worst_limit = weight_error_limit(bits), worst_ratio = 0.0;
    int worst_bits = bits;
    char worst_linear[256] = "", worst_type[16] = "";

    for (int layer = 0; layer < config->num_hidden_layers && status == QREF_OK; layer++) {
        for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT && status == QREF_OK; k++) {
            int64_t rows, cols;
            qref_llama_linear_shape(config, k, &rows, &cols);
            char module[256], name[300];
            qref_llama_layer_tensor_name(module, sizeof module, layer, qref_llama_linear_names[k]);
            snprintf(name, sizeof name, "%s.weight", module);
            size_t count = (size_t)(rows * cols);
            float *ref = malloc(count * sizeof(float));
            float *art = malloc(count * sizeof(float));
            if (ref == NULL || art == NULL)
                status = qref_error_set(&err, QREF_ERR_NOMEM, "%s: cannot allocate %zu floats", module, count);
            if (status == QREF_OK)
                status = qref_weights_load(&reference->weights, name, rows, cols, ref, &err);
            if (status == QREF_OK)
                status = qref_weights_load(artifact_weights, name, rows, cols, art, &err);

            /* the limit follows the linear's stored bit width (codec) or ggml type (GGUF) */
            double limit = weight_error_limit(bits);
            int linear_bits = bits;
            if (!gguf && artifact->codec != NULL &&
                artifact->codec->linear_stored(artifact->codec_config, artifact->tensor_weights.tensors, module)) {
                qref_linear_info info = {.bits = 0};
                artifact->codec->linear_describe(artifact->codec_config, artifact->tensor_weights.tensors, module,
                                                 &info);
                if (info.bits > 0) {
                    limit = weight_error_limit(info.bits);
                    linear_bits = info.bits;
                }
            }
            /* a fake-quantized linear of a mixed artifact: the bit width its own values show */
            if (fake != NULL && !fake->uniform && fake->quantized > 0 && status == QREF_OK) {
                qref_fakequant_linear found = {.quantized = false};
                const qref_tensor *tensor = qref_tensor_set_find(artifact->tensor_weights.tensors, name);
                if (tensor != NULL && qref_fakequant_analyze_linear(tensor, rows, cols, &found, &err) == QREF_OK &&
                    found.quantized) {
                    limit = weight_error_limit(found.bits);
                    linear_bits = found.bits;
                }
                err = (qref_error){0}; /* a linear that cannot be analyzed keeps the float limit */
            }
            const char *type_name = NULL;
            if (gguf) {
                char gguf_name[64];
                snprintf(gguf_name, sizeof gguf_name, "blk.%d.%s.weight", layer, gguf_linear_names[k]);
                const qref_gguf_tensor *tensor = qref_gguf_find_tensor(artifact->gguf, gguf_name);
                if (tensor != NULL) {
                    limit = ggml_weight_error_limit(tensor->type);
                    type_name = qref_ggml_type_name(tensor->type);
                }
            }

            /* relative Frobenius error ||W' - W|| / ||W|| and SQNR = 10 log10(||W||^2 / ||W' - W||^2) */
            if (status == QREF_OK) {
                double signal = 0.0, noise = 0.0;
                for (size_t i = 0; i < count; i++) {
                    double d = (double)art[i] - (double)ref[i];
                    signal += (double)ref[i] * ref[i];
                    noise += d * d;
                }
                double relative = signal > 0.0 ? sqrt(noise / signal) : (noise > 0.0 ? INFINITY : 0.0);
                cJSON *item = cJSON_CreateObject();
                cJSON_AddStringToObject(item, "linear", module);
                if (type_name != NULL)
                    cJSON_AddStringToObject(item, "ggml_type", type_name);
                cJSON_AddNumberToObject(item, "relative_frobenius_error", relative);
                cJSON_AddNumberToObject(item, "limit", limit);
                if (noise > 0.0)
                    cJSON_AddNumberToObject(item, "sqnr_db", 10.0 * log10(signal / noise));
                else
                    cJSON_AddNullToObject(item, "sqnr_db");
                /* the same limit as a floor on SQNR = -20 log10(relative error) */
                cJSON_AddNumberToObject(item, "sqnr_min_db", -20.0 * log10(limit));
                cJSON_AddItemToArray(layers, item);
                /* the worst linear is the one closest to (or furthest past) its own limit */
                double ratio = isnan(relative) ? INFINITY : relative / limit;
                if (!(ratio <= worst_ratio) || worst_linear[0] == '\0') {
                    worst_ratio = ratio;
                    worst_error = isnan(relative) ? INFINITY : relative;
                    worst_limit = limit;
                    worst_bits = linear_bits;
                    snprintf(worst_linear, sizeof worst_linear, "%s", module);
                    snprintf(worst_type, sizeof worst_type, "%s", type_name != NULL ? type_name : "");
                }
            }
            if (status == QREF_OK && rtn && rtn_mismatch[0] == '\0' && artifact->quantized)
                status = compare_rtn_codes(artifact, module, ref, rows, cols, act_order, rtn_mismatch,
                                           sizeof rtn_mismatch, &err);
            free(ref);
            free(art);
        }
    }
    cJSON_AddItemToObject(report->metrics, "weight_error", layers);
    if (status != QREF_OK) {
        qc_report_add_error(report, "reference.weights", &err);
        return false;
    }
    if (gguf) {
        if (!(worst_error <= worst_limit)) {
            qc_report_add_check(report, "reference.weights", QC_VERDICT_FAIL,
                                "%s (%s): relative Frobenius error %.4g against the reference exceeds %.3g, the "
                                "limit for %s weights; the artifact was not made from this reference, or its "
                                "weights are damaged (per-linear values in metrics.weight_error)",
                                worst_linear, worst_type, worst_error, worst_limit, worst_type);
            return false;
        }
        qc_report_add_check(report, "reference.weights", QC_VERDICT_PASS,
                            "every linear is within the relative Frobenius error limit of its ggml type against "
                            "the reference; closest to its limit: %s (%s) with %.4g of %.3g (per-linear values in "
                            "metrics.weight_error)", worst_linear, worst_type, worst_error, worst_limit);
        return true;
    }
    char bits_label[32] = "float";
    if (worst_bits < 16)
        snprintf(bits_label, sizeof bits_label, "%d-bit", worst_bits);
    if (!(worst_error <= worst_limit)) {
        qc_report_add_check(report, "reference.weights", QC_VERDICT_FAIL,
                            "%s: relative Frobenius error %.4g against the reference exceeds %.3g, the limit for "
                            "%s weights; the artifact was not made from this reference, or its weights are "
                            "damaged (per-linear values in metrics.weight_error)",
                            worst_linear, worst_error, worst_limit, bits_label);
        return false;
    }
    qc_report_add_check(report, "reference.weights", QC_VERDICT_PASS,
                        "every linear is within the %s limit of %.3g relative Frobenius error against the "
                        "reference; worst %.4g in %s (per-linear values in metrics.weight_error)",
                        bits_label, worst_limit, worst_error, worst_linear);
    if (rtn) {
        if (rtn_mismatch[0] != '\0') {
            qc_report_add_check(report, "rtn.codes", QC_VERDICT_FAIL,
                                "the artifact declares round-to-nearest codes but they differ from a fresh "
                                "reference quantization: %s", rtn_mismatch);
            return false;
        }
        qc_report_add_check(report, "rtn.codes", QC_VERDICT_PASS,
                            "codes, zero points and scales of every linear equal a fresh round-to-nearest "
                            "quantization of the reference (%d-bit, group size %ld, %s%s)",
                            artifact->gptq.bits, artifact->gptq.group_size,
                            artifact->gptq.sym ? "symmetric" : "asymmetric",
                            act_order ? ", in act-order's column order" : "");
    }
    return true;
}
