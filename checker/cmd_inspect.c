/*
 * qconform inspect: what an artifact is, without a reference or a benchmark.
 *
 *   qconform inspect ARTIFACT [--json]
 *   qconform inspect --list-findings
 *
 * Prints the model family and size, the quantization it declares (method, bits, group size,
 * format version), a table of every stored tensor (name, shape, codec or dtype, bits, group
 * size, SHA-256), and every structural finding with its stable id. Exit code 3 when a finding
 * is an error (the artifact is invalid), else 0.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_codec.h"
#include "formats/qref_fakequant.h"
#include "formats/qref_lora.h"
#include "model/qref_llama.h"
#include "qc_args.h"
#include "qc_commands.h"
#include "qc_manifest.h"
#include "qc_model.h"
#include "qc_report.h"
#include "qc_structure.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform inspect ARTIFACT [--json]\n"
            "       qconform inspect --list-findings\n"
            "\n"
            "Describes ARTIFACT (a snapshot folder, .safetensors file, archive or GGUF file): model\n"
            "family and size, declared quantization, every stored tensor with its SHA-256, and\n"
            "every structural finding.\n"
            "\n"
            "options:\n"
            "  --json            print a JSON object instead of tables\n"
            "  --list-findings   print every finding id with its severity and meaning, and exit\n"
            "\n"
            "Exit codes: 0 no error finding, 2 usage error, 3 unreadable or invalid input,\n"
            "4 internal error.\n");
}

static void print_kinds(const qref_finding_kind *kinds)
{
    for (size_t i = 0; kinds != NULL && kinds[i].id != NULL; i++)
        printf("%-36s %-8s %s\n", kinds[i].id, qref_severity_name(kinds[i].severity), kinds[i].meaning);
}

static int list_findings(void)
{
    printf("%-36s %-8s %s\n", "ID", "SEVERITY", "MEANING");
    print_kinds(qref_findings_common);
    for (size_t c = 0; qref_codecs[c] != NULL; c++)
        print_kinds(qref_codecs[c]->finding_kinds);
    print_kinds(qref_fakequant_finding_kinds);
    print_kinds(qref_lora_finding_kinds);
    return QC_EXIT_PASS;
}

/* Parameters of the LLaMA architecture the config describes (embedding, layers, norm, output). */
static uint64_t parameter_count(const qref_llama_config *c)
{
    uint64_t per_layer = 2 * (uint64_t)c->hidden_size;
    for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT; k++) {
        int64_t rows, cols;
        qref_llama_linear_shape(c, k, &rows, &cols);
        per_layer += (uint64_t)rows * (uint64_t)cols;
    }
    uint64_t embedding = (uint64_t)c->vocab_size * (uint64_t)c->hidden_size;
    return embedding * (c->tie_word_embeddings ? 1 : 2) + (uint64_t)c->hidden_size +
           (uint64_t)c->num_hidden_layers * per_layer;
}

/* True for "model.layers.N.<linear>.weight", the weight of one of a layer's seven linears. */
static bool is_linear_weight(const char *name)
{
    const char prefix[] = "model.layers.";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *rest = name + sizeof prefix - 1;
    while (*rest >= '0' && *rest <= '9')
        rest++;
    if (*rest != '.' || rest == name + sizeof prefix - 1)
        return false;
    for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT; k++) {
        size_t length = strlen(qref_llama_linear_names[k]);
        if (strncmp(rest + 1, qref_llama_linear_names[k], length) == 0 && strcmp(rest + 1 + length, ".weight") == 0)
            return true;
    }
    return false;
}

/*
 * Adds codec, bits and group size to each manifest tensor that belongs to a quantized linear
 * ("<module>.<part>"); other tensors keep their dtype as codec.
 */
static void annotate_tensors(const qc_model *model, cJSON *tensors)
{
    cJSON *tensor;
    cJSON_ArrayForEach(tensor, tensors) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tensor, "name");
        const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(tensor, "dtype");
        if (dtype == NULL) /* GGUF manifests name the ggml type */
            dtype = cJSON_GetObjectItemCaseSensitive(tensor, "type");
        qref_linear_info info = {.group_size = 0};
        snprintf(info.codec, sizeof info.codec, "%s", cJSON_IsString(dtype) ? dtype->valuestring : "?");
        /* the linears of a fake-quantized float snapshot: the grid their values lie on */
        const qref_fakequant_summary *fake = qc_structure_fakequant(model);
        if (fake != NULL && fake->uniform && cJSON_IsString(name) && is_linear_weight(name->valuestring)) {
            info.bits = fake->bits;
            info.group_size = fake->group_size;
        }
        if (model->codec != NULL && cJSON_IsString(name)) {
            char module[512];
            snprintf(module, sizeof module, "%s", name->valuestring);
            char *dot = strrchr(module, '.');
            if (dot != NULL) {
                *dot = '\0';
                if (model->codec->linear_stored(model->codec_config, model->tensor_weights.tensors, module))
                    model->codec->linear_describe(model->codec_config, model->tensor_weights.tensors, module, &info);
            }
        }
        cJSON_AddStringToObject(tensor, "codec", info.codec);
        if (info.bits > 0)
            cJSON_AddNumberToObject(tensor, "bits", info.bits);
        else
            cJSON_AddNullToObject(tensor, "bits");
        if (info.group_size != 0)
            cJSON_AddNumberToObject(tensor, "group_size", (double)info.group_size);
        else
            cJSON_AddNullToObject(tensor, "group_size");
    }
}

static void print_text(const cJSON *root, const qc_report *report)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *quantization = cJSON_GetObjectItemCaseSensitive(root, "quantization");
    printf("model: %s, %s parameters, %d layers, hidden %d, vocabulary %d\n",
           cJSON_GetObjectItemCaseSensitive(model, "family")->valuestring,
           cJSON_GetObjectItemCaseSensitive(model, "size")->valuestring,
           cJSON_GetObjectItemCaseSensitive(model, "layers")->valueint,
           cJSON_GetObjectItemCaseSensitive(model, "hidden_size")->valueint,
           cJSON_GetObjectItemCaseSensitive(model, "vocab_size")->valueint);
    printf("quantization:");
    const cJSON *item;
    cJSON_ArrayForEach(item, quantization) {
        char *value = cJSON_PrintUnformatted(item);
        printf(" %s=%s", item->string, value != NULL ? value : "?");
        free(value);
    }
    printf("\n\n%-52s %-16s %-12s %-5s %-6s %s\n", "TENSOR", "SHAPE", "CODEC", "BITS", "GROUP", "SHA-256");
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, "tensors")) {
        char shape[64];
        char *shape_text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(item, "shape"));
        snprintf(shape, sizeof shape, "%s", shape_text != NULL ? shape_text : "?");
        free(shape_text);
        const cJSON *bits = cJSON_GetObjectItemCaseSensitive(item, "bits");
        const cJSON *group = cJSON_GetObjectItemCaseSensitive(item, "group_size");
        char bits_text[16] = "-", group_text[24] = "-";
        if (cJSON_IsNumber(bits))
            snprintf(bits_text, sizeof bits_text, "%d", bits->valueint);
        if (cJSON_IsNumber(group))
            snprintf(group_text, sizeof group_text, "%.0f", group->valuedouble);
        printf("%-52s %-16s %-12s %-5s %-6s %s\n", cJSON_GetObjectItemCaseSensitive(item, "name")->valuestring, shape,
               cJSON_GetObjectItemCaseSensitive(item, "codec")->valuestring, bits_text, group_text,
               cJSON_GetObjectItemCaseSensitive(item, "sha256")->valuestring);
    }
    printf("\nfindings:\n");
    for (size_t i = 0; i < report->check_count; i++)
        printf("  %-8s %-28s %s\n", qc_verdict_name(report->checks[i].verdict), report->checks[i].id,
               report->checks[i].message);
}

int qc_cmd_inspect(int argc, char **argv)
{
    bool json = false, list = false;
    const qc_arg_spec specs[] = {{"--json", QC_ARG_FLAG, &json}, {"--list-findings", QC_ARG_FLAG, &list}};
    qc_args_result args;
    int code;
    if (qc_args_parse_command("inspect", argc, argv, specs, 2, 1, print_usage, &args, &code))
        return code;
    if (list && args.positional_count != 0)
        return qc_usage_error("inspect", "--list-findings takes no ARTIFACT");
    if (list)
        return list_findings();
    if (args.positional_count != 1)
        return qc_usage_error("inspect", "expected one ARTIFACT path");

    qref_error err = {0};
    qc_model model;
    if (qc_model_open(args.positional[0], &model, &err) != QREF_OK)
        return qc_report_error(&err);

    /* the tensors with their digests, then what each is */
    cJSON *manifest = NULL;
    char digest[QREF_SHA256_HEX_SIZE];
    if (qc_manifest_build_model(&model, &manifest, digest, &err) != QREF_OK) {
        qc_model_close(&model);
        return qc_report_error(&err);
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "qconform-inspect/1");
    cJSON_AddStringToObject(root, "path", args.positional[0]);
    cJSON_AddStringToObject(root, "manifest_sha256", digest);
    cJSON *description = qc_structure_describe(&model);
    cJSON *model_json = cJSON_AddObjectToObject(root, "model");
    cJSON *quantization = cJSON_AddObjectToObject(root, "quantization");
    static const char *const model_keys[] = {"family", "layers", "hidden_size", "intermediate_size",
                                             "attention_heads", "key_value_heads", "vocab_size"};
    cJSON *item = description != NULL ? description->child : NULL;
    while (item != NULL) {
        cJSON *next = item->next;
        bool model_key = false;
        for (size_t k = 0; k < sizeof model_keys / sizeof model_keys[0]; k++)
            model_key = model_key || strcmp(item->string, model_keys[k]) == 0;
        cJSON_AddItemToObject(model_key ? model_json : quantization, item->string,
                              cJSON_DetachItemViaPointer(description, item));
        item = next;
    }
    cJSON_Delete(description);
    uint64_t parameters = parameter_count(&model.config);
    char size[32];
    snprintf(size, sizeof size, parameters >= 1000000000 ? "%.2f B" : "%.2f M",
             (double)parameters / (parameters >= 1000000000 ? 1e9 : 1e6));
    cJSON_AddNumberToObject(model_json, "parameters", (double)parameters);
    cJSON_AddStringToObject(model_json, "size", size);
    cJSON *tensors = cJSON_DetachItemFromObjectCaseSensitive(manifest, "tensors");
    annotate_tensors(&model, tensors);
    cJSON_AddItemToObject(root, "tensors", tensors);
    cJSON_AddItemToObject(root, "files", cJSON_DetachItemFromObjectCaseSensitive(manifest, "files"));
    cJSON_Delete(manifest);

    /* findings: the structure checks of verify */
    qc_report report;
    qc_report_init(&report, "inspect");
    qc_structure_check(&model, &report);
    cJSON *findings = cJSON_AddArrayToObject(root, "findings");
    for (size_t i = 0; i < report.check_count; i++) {
        cJSON *finding = cJSON_CreateObject();
        cJSON_AddStringToObject(finding, "id", report.checks[i].id);
        cJSON_AddStringToObject(finding, "verdict", qc_verdict_name(report.checks[i].verdict));
        cJSON_AddStringToObject(finding, "message", report.checks[i].message);
        cJSON_AddItemToArray(findings, finding);
    }
    code = qc_report_exit_code(&report);
    cJSON_AddNumberToObject(root, "exit_code", code);

    if (json) {
        char *text = cJSON_Print(root);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        print_text(root, &report);
    }
    qc_report_print_errors(&report, stderr);
    qc_report_free(&report);
    cJSON_Delete(root);
    qc_model_close(&model);
    return code;
}
