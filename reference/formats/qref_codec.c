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
extern const qref_codec qref_bnb_codec;
extern const qref_codec qref_awq_codec;

const qref_codec *const qref_codecs[] = {
    &qref_gptq_codec,
    &qref_bnb_codec,
    &qref_awq_codec,
    NULL,
};

/*
 * Layouts recognized only to be refused: a tensor-name suffix each stores per linear, and what
 * to call the layout in the message.
 */
static const struct {
    const char *suffix;
    const char *layout;
} repacked_layouts[] = {
    {".q_invperm", "ExLlamaV2 (EXL2)"},
    {".q_scale_max", "ExLlamaV2 (EXL2)"},
    {".q_groups", "ExLlamaV2 (EXL2)"},
    {".B", "Marlin-packed GPTQ"},
    {".workspace", "Marlin"},
    {".weight_packed_marlin", "Marlin"},
};

/* quant_method values of quantization configs that this version recognizes but does not read. */
static const char *const unsupported_methods[] = {
    "fp8", "fbgemm_fp8", "hqq", "eetq", "aqlm", "quanto", "exl2", "marlin", "bitnet", "vptq", "higgs",
    "torchao", "spqr", "quark", "fp_quant", "mxfp4", "auto-round", "squeezellm", NULL,
};

/* Reports a repacked layout when some stored tensor name ends in one of its suffixes. */
static qref_status detect_repacked(const qref_tensor_set *tensors, qref_error *err)
{
    for (size_t i = 0; tensors != NULL && i < tensors->count; i++) {
        const char *name = tensors->items[i].name;
        size_t length = strlen(name);
        for (size_t k = 0; k < sizeof repacked_layouts / sizeof repacked_layouts[0]; k++) {
            size_t suffix_length = strlen(repacked_layouts[k].suffix);
            if (length > suffix_length && strcmp(name + length - suffix_length, repacked_layouts[k].suffix) == 0 &&
                strncmp(name, "model.layers.", 13) == 0)
                return qref_error_set(err, QREF_ERR_UNSUPPORTED, "tensor \"%s\" is stored in the %s layout, "
                                      "which this version does not read (it is not misread as another format)",
                                      name, repacked_layouts[k].layout);
        }
    }
    return QREF_OK;
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
    qref_status status = detect_repacked(input->tensors, err);
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
