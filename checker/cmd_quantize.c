/*
 * qconform quantize: writes a GPTQ artifact of a full-precision snapshot with a reference
 * quantizer.
 *
 *   qconform quantize REF --method rtn --bits B [--group G] [--sym] --format gptq
 *                     [--checkpoint-format auto|gptq|gptq_v2] --out DIR [--force]
 */
#include <stdio.h>
#include <string.h>

#include "qc_args.h"
#include "qc_commands.h"
#include "qc_quantize.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform quantize REF --method rtn --bits B --format gptq --out DIR [options]\n"
            "\n"
            "Quantizes every linear of REF (a full-precision Hugging Face LLaMA snapshot folder,\n"
            ".safetensors file or archive) and writes a GPTQ artifact folder: model.safetensors with\n"
            "qweight, qzeros, scales and g_idx per linear and every other tensor copied, config.json\n"
            "with a quantization_config, quantize_config.json, and REF's tokenizer files.\n"
            "\n"
            "options:\n"
            "  --method NAME              quantizer: rtn (round-to-nearest, the GPTQ repository's)\n"
            "  --bits B                   bits per weight: 2, 3, 4 or 8\n"
            "  --group G                  input features per group; must divide every linear's input\n"
            "                             width (default -1: one group per output row)\n"
            "  --sym                      symmetric: every zero point is 2^(B-1) (default asymmetric)\n"
            "  --format NAME              artifact format: gptq (AutoGPTQ tensor layout)\n"
            "  --checkpoint-format NAME   auto (default): gptq unless a zero point is 0, then gptq_v2;\n"
            "                             gptq: zero points stored minus one (fails on a zero point 0);\n"
            "                             gptq_v2: zero points stored as they are (GPTQModel)\n"
            "  --out DIR                  output folder, created complete or not at all\n"
            "  --force                    replace an existing DIR once the new one is complete\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 invalid input, 4 internal error.\n");
}

int qc_cmd_quantize(int argc, char **argv)
{
    const char *method = NULL, *bits_text = NULL, *group_text = NULL, *format = NULL, *checkpoint_text = NULL,
               *out_dir = NULL;
    bool sym = false, force = false;
    const qc_arg_spec specs[] = {
        {"--method", QC_ARG_STRING, &method},
        {"--bits", QC_ARG_STRING, &bits_text},
        {"--group", QC_ARG_STRING, &group_text},
        {"--sym", QC_ARG_FLAG, &sym},
        {"--format", QC_ARG_STRING, &format},
        {"--checkpoint-format", QC_ARG_STRING, &checkpoint_text},
        {"--out", QC_ARG_STRING, &out_dir},
        {"--force", QC_ARG_FLAG, &force},
    };
    qc_args_result args;
    int code;
    if (qc_args_parse_command("quantize", argc, argv, specs, sizeof specs / sizeof specs[0], 1, print_usage, &args, &code))
        return code;

    /* options */
    if (args.positional_count != 1)
        return qc_usage_error("quantize", "expected one REF snapshot path");
    if (method == NULL || strcmp(method, "rtn") != 0)
        return qc_usage_error("quantize", method == NULL ? "missing --method rtn"
                                                         : "unknown method '%s' (supported: rtn)", method);
    if (format == NULL || strcmp(format, "gptq") != 0)
        return qc_usage_error("quantize", format == NULL ? "missing --format gptq"
                                                         : "unknown format '%s' (supported: gptq)", format);
    if (out_dir == NULL)
        return qc_usage_error("quantize", "missing --out DIR");
    if (bits_text == NULL)
        return qc_usage_error("quantize", "missing --bits B (2, 3, 4 or 8)");
    long bits;
    if ((code = qc_args_int("quantize", "--bits", bits_text, 2, 8, &bits)) != 0)
        return code;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return qc_usage_error("quantize", "option --bits: %ld is not supported by the GPTQ format, expected 2, 3, 4 "
                              "or 8", bits);
    long group_size = -1;
    if (group_text != NULL) {
        if ((code = qc_args_int("quantize", "--group", group_text, -1, 1L << 30, &group_size)) != 0)
            return code;
        if (group_size == 0)
            return qc_usage_error("quantize", "option --group: 0 is not a group size; use -1 for one group per "
                                  "output row");
    }
    qc_quantize_request request = {.reference = args.positional[0], .out_dir = out_dir, .bits = (int)bits,
                                   .group_size = group_size, .sym = sym, .checkpoint = QC_CHECKPOINT_AUTO,
                                   .force = force, .quantizer = "qconform:" QCONFORM_VERSION};
    if (checkpoint_text != NULL && !qc_checkpoint_choice_parse(checkpoint_text, &request.checkpoint))
        return qc_usage_error("quantize", "unknown checkpoint format '%s' (supported: auto, gptq, gptq_v2)",
                              checkpoint_text);

    /* quantize */
    qref_error err = {0};
    qc_quantize_outcome outcome;
    if (qc_quantize_gptq(&request, &outcome, &err) != QREF_OK)
        return qc_report_error(&err);
    if (outcome.format_switched)
        fprintf(stderr, "qconform quantize: note: writing checkpoint_format gptq_v2 because %s\n",
                outcome.switch_reason);
    if (outcome.cleanup_note[0] != '\0')
        fprintf(stderr, "qconform quantize: warning: %s\n", outcome.cleanup_note);

    /* print */
    char group[32];
    if (group_size == -1)
        snprintf(group, sizeof group, "per-channel");
    else
        snprintf(group, sizeof group, "group %ld", group_size);
    printf("quantized %d layers (%d linears) with rtn: %ld-bit, %s, %s, gptq checkpoint_format %s -> %s\n",
           outcome.layers, outcome.linears, bits, group, sym ? "sym" : "asym", qref_gptq_format_name(outcome.format),
           out_dir);
    return QC_EXIT_PASS;
}
