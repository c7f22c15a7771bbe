/*
 * qconform hash: the SHA-256 manifest of a snapshot or GGUF file.
 *
 *   qconform hash MODEL [--json]
 *
 * Prints one line per file and per tensor ("sha256  kind  name") and the digest over the
 * listing, or the manifest as JSON.
 */
#include <stdio.h>
#include <stdlib.h>

#include "qc_args.h"
#include "qc_commands.h"
#include "qc_manifest.h"
#include "qc_model.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform hash MODEL [--json]\n"
            "\n"
            "Prints the SHA-256 of every file of MODEL (a snapshot folder, .safetensors file or\n"
            "archive, or a GGUF file) and of every tensor's stored bytes, then one digest over that\n"
            "listing.\n"
            "\n"
            "options:\n"
            "  --json   print the manifest as a JSON object\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 invalid input, 4 internal error.\n");
}

int qc_cmd_hash(int argc, char **argv)
{
    bool json = false;
    const qc_arg_spec specs[] = {{"--json", QC_ARG_FLAG, &json}};
    qc_args_result args;
    int code;
    if (qc_args_parse_command("hash", argc, argv, specs, 1, 1, print_usage, &args, &code))
        return code;
    if (args.positional_count != 1)
        return qc_usage_error("hash", "expected one MODEL path");

    qref_error err = {0};
    cJSON *manifest = NULL;
    char digest[QREF_SHA256_HEX_SIZE];
    qref_status status;
    if (qc_model_is_gguf_file(args.positional[0])) {
        qref_gguf gguf;
        if (qref_gguf_open(args.positional[0], &gguf, &err) != QREF_OK)
            return qc_report_error(&err);
        status = qc_manifest_build_gguf(args.positional[0], &gguf, &manifest, digest, &err);
        qref_gguf_free(&gguf);
    } else {
        qref_snapshot *snapshot = NULL;
        if (qref_snapshot_open(args.positional[0], &snapshot, &err) != QREF_OK)
            return qc_report_error(&err);
        status = qc_manifest_build(snapshot, &manifest, digest, &err);
        qref_snapshot_free(snapshot);
    }
    if (status != QREF_OK)
        return qc_report_error(&err);

    if (json) {
        char *text = cJSON_Print(manifest);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        const char *kinds[] = {"files", "tensors"};
        for (int k = 0; k < 2; k++) {
            const cJSON *item;
            cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(manifest, kinds[k]))
                printf("%s  %s  %s\n", cJSON_GetObjectItemCaseSensitive(item, "sha256")->valuestring,
                       k == 0 ? "file  " : "tensor", cJSON_GetObjectItemCaseSensitive(item, "name")->valuestring);
        }
        printf("%s  manifest\n", digest);
    }
    cJSON_Delete(manifest);
    return QC_EXIT_PASS;
}
