#include "formats/qref_codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/qref_json.h"

/* ---- findings ----------------------------------------------------------------------------- */

const qref_finding_kind qref_findings_common[] = {
    {"structure.missing", QREF_SEVERITY_ERROR, "a tensor the LLaMA forward reads is stored in no form"},
    {"structure.shape", QREF_SEVERITY_ERROR, "a float tensor's shape differs from the one the config implies"},
    {"structure.dtype", QREF_SEVERITY_ERROR, "a tensor that should hold float weights has another dtype"},
    {"structure.nonfinite", QREF_SEVERITY_ERROR, "a stored float tensor holds NaN or infinity"},
    {"structure.type", QREF_SEVERITY_ERROR, "a GGUF tensor has a ggml type this version cannot dequantize"},
    {"structure.unquantized", QREF_SEVERITY_ERROR,
     "a linear layer is stored in float although the quantization config declares every linear quantized"},
    {"structure.layers", QREF_SEVERITY_ERROR, "the stored layers do not match the config's num_hidden_layers"},
    {"structure.unexpected", QREF_SEVERITY_WARNING, "stored tensors that the LLaMA forward never reads"},
    {"structure.tokenizer", QREF_SEVERITY_ERROR, "the tokenizer disagrees with the model (vocabulary size, special ids)"},
    {"reference.config", QREF_SEVERITY_ERROR, "the artifact's architecture differs from the reference's"},
    {"reference.weights", QREF_SEVERITY_ERROR,
     "a dequantized linear is further from the reference weight than its bit width allows"},
    {"rtn.codes", QREF_SEVERITY_ERROR,
     "an artifact that declares round-to-nearest codes differs from a fresh quantization of the reference"},
    {"dequant.fp16_overflow", QREF_SEVERITY_ERROR,
     "a dequantized weight overflows the f16 range the format computes in (|w| > 65504)"},
    {NULL, QREF_SEVERITY_INFO, NULL},
};

const char *qref_severity_name(qref_severity severity)
{
    switch (severity) {
    case QREF_SEVERITY_INFO: return "info";
    case QREF_SEVERITY_WARNING: return "warning";
    case QREF_SEVERITY_ERROR: return "error";
    }
    return "?";
}

static const qref_finding_kind *find_in(const qref_finding_kind *kinds, const char *id)
{
    for (size_t i = 0; kinds != NULL && kinds[i].id != NULL; i++)
        if (strcmp(kinds[i].id, id) == 0)
            return &kinds[i];
    return NULL;
}

const qref_finding_kind *qref_finding_kind_find(const char *id)
{
    const qref_finding_kind *kind = find_in(qref_findings_common, id);
    for (size_t c = 0; kind == NULL && qref_codecs[c] != NULL; c++)
        kind = find_in(qref_codecs[c]->finding_kinds, id);
    return kind;
}

static qref_finding *findings_append(qref_findings *findings)
{
    if (findings->count == findings->capacity) {
        size_t capacity = findings->capacity ? 2 * findings->capacity : 16;
        qref_finding *grown = realloc(findings->items, capacity * sizeof *grown);
        if (grown == NULL) {
            findings->dropped++;
            return NULL;
        }
        findings->items = grown;
        findings->capacity = capacity;
    }
    qref_finding *finding = &findings->items[findings->count++];
    memset(finding, 0, sizeof *finding);
    return finding;
}

void qref_findings_add(qref_findings *findings, const char *id, qref_severity severity, const char *tensor,
                       const char *fmt, ...)
{
    qref_finding *finding = findings_append(findings);
    if (finding == NULL)
        return;
    snprintf(finding->id, sizeof finding->id, "%s", id);
    finding->severity = severity;
    snprintf(finding->tensor, sizeof finding->tensor, "%s", tensor != NULL ? tensor : "");
    va_list args;
    va_start(args, fmt);
    vsnprintf(finding->message, sizeof finding->message, fmt, args);
    va_end(args);
}

void qref_findings_add_error(qref_findings *findings, const char *id, const char *tensor, const qref_error *err)
{
    qref_findings_add(findings, id, QREF_SEVERITY_ERROR, tensor, "%s", err->message);
}

void qref_findings_free(qref_findings *findings)
{
    free(findings->items);
    memset(findings, 0, sizeof *findings);
}

size_t qref_findings_count(const qref_findings *findings, qref_severity at_least)
{
    size_t count = 0;
    for (size_t i = 0; i < findings->count; i++)
        count += findings->items[i].severity >= at_least;
    return count;
}

/* ---- detection ---------------------------------------------------------------------------- */

extern const qref_codec qref_gptq_codec;
extern const qref_codec qref_ct_codec;
extern const qref_codec qref_bnb_codec;
extern const qref_codec qref_awq_codec;

const qref_codec *const qref_codecs[] = {
    &qref_gptq_codec,
    &qref_ct_codec,
    &qref_bnb_codec,
    &qref_awq_codec,
    NULL,
};

/*
 * Repacked layouts, recognized only to be refused by name rather than misread: kernels'
 * runtime layouts saved to disk (Marlin, GEMV_fast, EXL2) and GPTQModel extensions this
 * version does not read. First a tensor-name suffix each stores per linear, with what to call
 * the layout in the message.
 */
#define LAYOUT_EXL2 "ExLlamaV2 (EXL2: q_weight, q_invperm, q_scale, q_scale_max, q_groups)"
#define LAYOUT_GPTQ_MARLIN "Marlin-packed GPTQ (AutoGPTQ qlinear_marlin: tile-permuted B and s)"
#define LAYOUT_AWQ_MARLIN "AWQ Marlin (AutoAWQ WQLinear_Marlin: qweight [in/16, out*2] and no qzeros)"
#define LAYOUT_GEMV_FAST "AWQ GEMV_fast (int16 qweight with pre-scaled zeros: AutoAWQ gemv_fast, llm-awq)"
#define LAYOUT_PLANAR "GPTQModel planar (gptq_p: 5-, 6- and 7-bit codes split into bit planes)"
static const struct {
    const char *suffix;
    const char *layout;
} repacked_layouts[] = {
    {".q_weight", LAYOUT_EXL2},
    {".q_invperm", LAYOUT_EXL2},
    {".q_perm", LAYOUT_EXL2},
    {".q_scale", LAYOUT_EXL2},
    {".q_scale_max", LAYOUT_EXL2},
    {".q_groups", LAYOUT_EXL2},
    {".B", LAYOUT_GPTQ_MARLIN},
    {".s", LAYOUT_GPTQ_MARLIN},
    {".workspace", "Marlin"},
    {".weight_packed_marlin", "Marlin"},
    {".scaled_zeros", LAYOUT_GEMV_FAST},
};

/* Values of a quantization config's format keys (checkpoint_format, format, version) that name one. */
static const struct {
    const char *value;
    const char *layout;
} repacked_formats[] = {
    {"marlin", "Marlin"},
    {"gptq_marlin", LAYOUT_GPTQ_MARLIN},
    {"awq_marlin", LAYOUT_AWQ_MARLIN},
    {"marlin-24", "compressed-tensors marlin-24 (2:4 sparse Marlin)"},
    {"gemv_fast", LAYOUT_GEMV_FAST},
    {"gptq_p", LAYOUT_PLANAR},
    {"bitblas", "BitBLAS"},
    {"qqq", "QQQ"},
    {"exl2", LAYOUT_EXL2},
    {"exl3", "ExLlamaV3 (EXL3)"},
};

/* quant_method values of quantization configs that this version recognizes but does not read. */
static const char *const unsupported_methods[] = {
    "fp8", "fbgemm_fp8", "hqq", "eetq", "aqlm", "quanto", "exl2", "exl3", "marlin", "gptq_marlin", "gptq_marlin_24",
    "awq_marlin", "bitblas", "qqq", "bitnet", "vptq", "higgs", "torchao", "spqr", "quark", "fp_quant", "mxfp4",
    "auto-round", "squeezellm", NULL,
};

/* True when name is a per-layer tensor ending in suffix; *module gets its length before the suffix. */
static bool layer_tensor_suffix(const char *name, const char *suffix, size_t *module)
{
    size_t length = strlen(name), suffix_length = strlen(suffix);
    if (length <= suffix_length || strcmp(name + length - suffix_length, suffix) != 0 ||
        strncmp(name, "model.layers.", 13) != 0)
        return false;
    *module = length - suffix_length;
    return true;
}

/* The tensor "<module>.<part>" of the module that name[0..module_length) names, or NULL. */
static const qref_tensor *sibling_tensor(const qref_tensor_set *tensors, const char *name, size_t module_length,
                                         const char *part)
{
    char sibling[512];
    if (module_length + strlen(part) + 2 > sizeof sibling)
        return NULL;
    snprintf(sibling, sizeof sibling, "%.*s.%s", (int)module_length, name, part);
    return qref_tensor_set_find(tensors, sibling);
}

/*
 * Reports a repacked layout from the stored tensors. A name suffix above names one, and so do
 * qzeros stored as floats (GEMV_fast's pre-scaled zeros). A qweight without qzeros that is
 * twice as wide as its scales names Marlin, whose 16-row tiles give qweight [in/16, out * 2]
 * against scales [in/G, out].
 */
static qref_status detect_repacked_tensors(const qref_tensor_set *tensors, qref_error *err)
{
    for (size_t i = 0; tensors != NULL && i < tensors->count; i++) {
        const qref_tensor *tensor = &tensors->items[i];
        size_t module;
        for (size_t k = 0; k < sizeof repacked_layouts / sizeof repacked_layouts[0]; k++)
            if (layer_tensor_suffix(tensor->name, repacked_layouts[k].suffix, &module))
                return qref_error_set(err, QREF_ERR_UNSUPPORTED, "tensor \"%s\" is stored in the %s layout, which "
                                      "this version does not read (it is not misread as another format)",
                                      tensor->name, repacked_layouts[k].layout);
        if (layer_tensor_suffix(tensor->name, ".qzeros", &module) && qref_dtype_is_float(tensor->dtype))
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "tensor \"%s\" holds %s zero points, as the %s layout "
                                  "stores them, which this version does not read (integer qzeros were expected)",
                                  tensor->name, qref_dtype_name(tensor->dtype), LAYOUT_GEMV_FAST);
        if (layer_tensor_suffix(tensor->name, ".qweight", &module) &&
            sibling_tensor(tensors, tensor->name, module, "qzeros") == NULL) {
            const qref_tensor *scales = sibling_tensor(tensors, tensor->name, module, "scales");
            if (scales != NULL && tensor->ndim == 2 && scales->ndim == 2 && tensor->shape[1] == 2 * scales->shape[1])
                return qref_error_set(err, QREF_ERR_UNSUPPORTED, "tensor \"%s\" has shape [%lld, %lld] and no qzeros "
                                      "beside scales [%lld, %lld]: the %s layout, which this version does not read",
                                      tensor->name, (long long)tensor->shape[0], (long long)tensor->shape[1],
                                      (long long)scales->shape[0], (long long)scales->shape[1], LAYOUT_AWQ_MARLIN);
        }
    }
    return QREF_OK;
}

/*
 * Reports a repacked layout a quantization config object declares: a format key naming one,
 * AutoGPTQ's is_marlin_format, GPTQModel's per-module "dynamic" overrides, or GPTQ bits of 5,
 * 6 or 7, which GPTQModel stores only in its planar layout.
 */
static qref_status detect_repacked_config(const char *display, const cJSON *object, qref_error *err)
{
    if (!cJSON_IsObject(object))
        return QREF_OK;
    static const char *const format_keys[] = {"checkpoint_format", "format", "version"};
    for (size_t k = 0; k < sizeof format_keys / sizeof format_keys[0]; k++) {
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(object, format_keys[k]);
        for (size_t f = 0; cJSON_IsString(value) && f < sizeof repacked_formats / sizeof repacked_formats[0]; f++)
            if (strcasecmp(value->valuestring, repacked_formats[f].value) == 0)
                return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s \"%s\" names the %s layout, which this "
                                      "version does not read", display, format_keys[k], value->valuestring,
                                      repacked_formats[f].layout);
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(object, "is_marlin_format")))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: is_marlin_format is true: the %s layout, which this "
                              "version does not read", display, LAYOUT_GPTQ_MARLIN);
    const cJSON *dynamic = cJSON_GetObjectItemCaseSensitive(object, "dynamic");
    if (cJSON_IsObject(dynamic) && dynamic->child != NULL)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: dynamic holds GPTQModel per-module overrides (first "
                              "\"%.80s\"), which this version does not read: linears may differ in bits and group "
                              "size from the config", display, dynamic->child->string);
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(object, "quant_method");
    const cJSON *bits = cJSON_GetObjectItemCaseSensitive(object, "bits");
    bool gptq = !cJSON_IsString(method) || strcasecmp(method->valuestring, "gptq") == 0;
    if (gptq && cJSON_IsNumber(bits) && (bits->valuedouble == 5 || bits->valuedouble == 6 || bits->valuedouble == 7))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: bits %g: GPTQModel stores 5-, 6- and 7-bit GPTQ codes "
                              "only in the %s layout, which this version does not read", display, bits->valuedouble,
                              LAYOUT_PLANAR);
    return QREF_OK;
}

/* Reports a repacked layout from the tensors, then from config.json and quantize_config.json. */
static qref_status detect_repacked(const qref_codec_input *input, qref_error *err)
{
    qref_status status = detect_repacked_tensors(input->tensors, err);
    if (status == QREF_OK) {
        char display[160];
        snprintf(display, sizeof display, "%s: quantization_config", input->config_display);
        status = detect_repacked_config(display, cJSON_GetObjectItemCaseSensitive(input->config, "quantization_config"),
                                        err);
    }
    if (status == QREF_OK && input->quantize_text != NULL) {
        cJSON *root = NULL;
        qref_error ignored = {0};
        /* a quantize config that does not parse is reported where it is read */
        if (qref_json_parse(input->quantize_display, input->quantize_text, input->quantize_length,
                            QREF_JSON_MAX_DEPTH, &root, &ignored) == QREF_OK)
            status = detect_repacked_config(input->quantize_display, root, err);
        cJSON_Delete(root);
    }
    return status;
}

/* The quant_method a config object names ("quant_method", or GPTQModel's "method"), or NULL. */
static const char *config_method(const cJSON *object)
{
    if (!cJSON_IsObject(object))
        return NULL;
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(object, "quant_method");
    if (!cJSON_IsString(method))
        method = cJSON_GetObjectItemCaseSensitive(object, "method");
    return cJSON_IsString(method) ? method->valuestring : NULL;
}

/* True when a config object's "version" names an AutoAWQ layout (AwqConfig.to_dict writes it). */
static bool names_awq_version(const cJSON *object)
{
    static const char *const versions[] = {"gemm", "gemv", "gemv_fast", "marlin", "exllama", "ipex"};
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(object, "version");
    for (size_t k = 0; cJSON_IsString(version) && k < sizeof versions / sizeof versions[0]; k++)
        if (strcasecmp(version->valuestring, versions[k]) == 0)
            return true;
    return false;
}

/* True when some stored tensor's name ends in suffix. */
static bool tensors_have_suffix(const qref_tensor_set *tensors, const char *suffix)
{
    size_t suffix_length = strlen(suffix);
    for (size_t i = 0; tensors != NULL && i < tensors->count; i++) {
        size_t length = strlen(tensors->items[i].name);
        if (length > suffix_length && strcmp(tensors->items[i].name + length - suffix_length, suffix) == 0)
            return true;
    }
    return false;
}

qref_status qref_codec_detect(const qref_codec_input *input, const qref_codec **codec, void **config, qref_error *err)
{
    *codec = NULL;
    *config = NULL;
    qref_status status = detect_repacked(input, err);
    if (status != QREF_OK)
        return status;

    /* the declared method: quantize_config.json first (AutoGPTQ's lookup order), then config.json */
    const cJSON *quantization = cJSON_GetObjectItemCaseSensitive(input->config, "quantization_config");
    const char *method = config_method(quantization);
    cJSON *quantize_root = NULL;
    if (input->quantize_text != NULL) {
        status = qref_json_parse(input->quantize_display, input->quantize_text, input->quantize_length,
                                 QREF_JSON_MAX_DEPTH, &quantize_root, err);
        if (status != QREF_OK)
            return status;
        const char *declared = config_method(quantize_root);
        if (method == NULL)
            method = declared;
        if (method == NULL && names_awq_version(quantize_root))
            method = "awq"; /* AutoAWQ's quant_config.json has no quant_method */
        if (method == NULL)
            method = "gptq"; /* AutoGPTQ's quantize_config.json may omit quant_method */
    }
    if (method == NULL && quantization != NULL)
        status = qref_error_set(err, QREF_ERR_INVALID, "%s: quantization_config names no quant_method",
                                input->config_display);

    /* no declaration: a stored quantized layout without its config cannot be read */
    if (status == QREF_OK && method == NULL) {
        if (tensors_have_suffix(input->tensors, ".qweight") || tensors_have_suffix(input->tensors, ".weight_packed") ||
            tensors_have_suffix(input->tensors, ".SCB") || tensors_have_suffix(input->tensors, ".absmax"))
            status = qref_error_set(err, QREF_ERR_INVALID, "quantized tensors are stored but no quantization config "
                                    "was found (quantize_config.json or config.json quantization_config)");
        cJSON_Delete(quantize_root);
        return status;
    }

    for (size_t c = 0; status == QREF_OK && qref_codecs[c] != NULL && *codec == NULL; c++)
        for (size_t m = 0; qref_codecs[c]->quant_methods[m] != NULL; m++)
            if (strcasecmp(method, qref_codecs[c]->quant_methods[m]) == 0)
                *codec = qref_codecs[c];
    if (status == QREF_OK && *codec == NULL) {
        bool known = false;
        for (size_t i = 0; unsupported_methods[i] != NULL; i++)
            known = known || strcasecmp(method, unsupported_methods[i]) == 0;
        char readable[160] = "";
        size_t used = 0;
        for (size_t c = 0; qref_codecs[c] != NULL && used < sizeof readable; c++)
            used += (size_t)snprintf(readable + used, sizeof readable - used, "%s%s", c ? ", " : "",
                                     qref_codecs[c]->name);
        status = qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: quant_method \"%.64s\" is %s; this version reads %s "
                                "checkpoints", input->quantize_text != NULL ? input->quantize_display
                                                                            : input->config_display,
                                method, known ? "a known method that this version does not read" : "not a known method",
                                readable);
    }
    cJSON_Delete(quantize_root);
    if (status == QREF_OK)
        status = (*codec)->config_parse(input, config, err);
    if (status != QREF_OK)
        *codec = NULL;
    return status;
}
