/*
 * qconform quantize: writes a GPTQ artifact of a full-precision snapshot with a reference
 * quantizer.
 *
 *   qconform quantize REF --method rtn --bits B [--group G] [--sym] --format gptq
 *                     [--checkpoint-format auto|gptq|gptq_v2] [--desc-act [--static-groups]]
 *                     [--pack-dtype int32|int16|int8|int64] --out DIR [--force]
 *   qconform quantize REF --method nf4|fp4|int8 --format bnb [--double-quant] [--blocksize B]
 *                     --out DIR [--force]
 *   qconform quantize REF --method rtn --bits 4|8 [--group G] [--sym] --format compressed-tensors
 *                     --out DIR [--force]
 *   qconform quantize REF --method rtn-awq [--bits 4] [--group G] [--sym] --format awq-gemm|awq-gemv
 *                     --out DIR [--force]
 *   qconform quantize REF --method rtn --bits B [--group G] [--sym] --format fake [--dtype f16|bf16]
 *                     --out DIR [--force]
 */
#include <stdio.h>
#include <string.h>

#include "qc_args.h"
#include "qc_commands.h"
#include "qc_quantize.h"
#include "qc_quantize_awq.h"
#include "qc_quantize_bnb.h"
#include "qc_quantize_fake.h"
#include "qc_quantize_ct.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: qconform quantize REF --method rtn --bits B --format gptq --out DIR [options]\n"
            "       qconform quantize REF --method nf4|fp4|int8 --format bnb --out DIR [options]\n"
            "       qconform quantize REF --method rtn --bits 4|8 --format compressed-tensors --out DIR\n"
            "                         [options]\n"
            "       qconform quantize REF --method rtn-awq --format awq-gemm|awq-gemv --out DIR [options]\n"
            "       qconform quantize REF --method rtn --bits B --format fake [--dtype f16|bf16] --out DIR\n"
            "                         [options]\n"
            "\n"
            "Quantizes every linear of REF (a full-precision Hugging Face LLaMA snapshot folder,\n"
            ".safetensors file or archive) and writes an artifact folder in --format's layout:\n"
            "model.safetensors with each linear's tensors (for gptq: qweight, qzeros, scales and\n"
            "g_idx) and every other tensor copied, config.json with the format's\n"
            "quantization_config, quantize_config.json where the format's tools write one, and\n"
            "REF's tokenizer files.\n"
            "\n"
            "options:\n"
            "  --method NAME              quantizer: rtn (round-to-nearest, the GPTQ repository's)\n"
            "  --bits B                   bits per weight: 2, 3, 4 or 8\n"
            "  --group G                  input features per group; must divide every linear's input\n"
            "                             width (default -1: one group per output row)\n"
            "  --sym                      symmetric: every zero point is 2^(B-1) (default asymmetric)\n"
            "  --format NAME              artifact format: gptq (AutoGPTQ tensor layout), bnb\n"
            "                             (bitsandbytes tensors as transformers saves them) or\n"
            "                             compressed-tensors (llm-compressor's pack-quantized layout;\n"
            "                             --method rtn is then compressed-tensors' own min-max\n"
            "                             rounding, --bits 4 or 8, --group G or per-channel)\n"
            "  --format awq-gemm|awq-gemv AutoAWQ's GEMM or GEMV layout (qweight, qzeros, scales) with\n"
            "                             --method rtn-awq: AWQ's own f16 round-to-nearest pseudo\n"
            "                             quantizer without its activation-aware scaling; 4 bits only,\n"
            "                             --group G (default 128), --sym for zero_point false\n"
            "  --method nf4|fp4|int8      with --format bnb: bitsandbytes' blockwise 4-bit absmax\n"
            "                             quantization to the NF4 or FP4 code (QLoRA uses nf4), or\n"
            "                             LLM.int8's row-wise int8; --bits is then implied (4 or 8)\n"
            "  --double-quant             with nf4/fp4: quantize the block scales to 8 bits in\n"
            "                             blocks of 256 (bnb_4bit_use_double_quant)\n"
            "  --blocksize B              with nf4/fp4: values per block scale, a power of two in\n"
            "                             [32, 4096] (default 64, as transformers writes)\n"
            "  --checkpoint-format NAME   auto (default): gptq unless a zero point is 0, then gptq_v2;\n"
            "                             gptq: zero points stored minus one (fails on a zero point 0);\n"
            "                             gptq_v2: zero points stored as they are (GPTQModel)\n"
            "  --desc-act                 with gptq: act-order layout (desc_act true): each linear's\n"
            "                             groups are formed over its columns in descending order of\n"
            "                             their L2 norm in the reference weight and g_idx records them.\n"
            "                             RTN has no Hessian, so this proxy for act-order's Hessian\n"
            "                             order gives its layout, not its accuracy\n"
            "  --static-groups            with --desc-act: groups over the original column order\n"
            "                             (static_groups true, g_idx = i / G, the codes of plain RTN)\n"
            "  --pack-dtype NAME          with gptq: qweight and qzeros word type, int32 (default,\n"
            "                             AutoGPTQ) or GPTQModel's int16, int8, int64 (3-bit codes\n"
            "                             need int32)\n"
            "  --format fake              a fake-quantized snapshot: every linear's RTN codes stored\n"
            "                             dequantized, scale * (q - zero), as dense weights; --bits 2 to\n"
            "                             8, --group G or per-channel, --sym; no quantization config\n"
            "  --dtype f16|bf16           with --format fake: the dtype of every float tensor (default\n"
            "                             f16)\n"
            "  --out DIR                  output folder, created complete or not at all\n"
            "  --force                    replace an existing DIR once the new one is complete\n"
            "\n"
            "Exit codes: 0 success, 2 usage error, 3 invalid input, 4 internal error.\n");
}

/* Parses --group G into *group_size (left as is when text is NULL): -1 or a positive size. */
static int parse_group(const char *text, long *group_size)
{
    if (text == NULL)
        return 0;
    int code = qc_args_int("quantize", "--group", text, -1, 1L << 30, group_size);
    if (code == 0 && *group_size == 0)
        return qc_usage_error("quantize", "option --group: 0 is not a group size; use -1 for one group per output "
                              "row");
    return code;
}

/* Writes "per-channel" or "group G" for the summary line. */
static void group_label(long group_size, char *out, size_t size)
{
    if (group_size == -1)
        snprintf(out, size, "per-channel");
    else
        snprintf(out, size, "group %ld", group_size);
}

/* Prints the writer's warning when --force could not delete the old folder. */
static void warn_cleanup(const qc_quantize_outcome *outcome)
{
    if (outcome->cleanup_note[0] != '\0')
        fprintf(stderr, "qconform quantize: warning: %s\n", outcome->cleanup_note);
}

/* --format bnb: checks the options that apply and runs the bitsandbytes writer. */
static int quantize_bnb(const char *reference, const char *method, const char *out_dir, bool double_quant,
                        const char *blocksize_text, bool force, bool gptq_options)
{
    qc_bnb_request request = {.reference = reference, .out_dir = out_dir, .force = force,
                              .double_quant = double_quant, .blocksize = 64};
    if (method == NULL || !qc_bnb_method_parse(method, &request.method))
        return qc_usage_error("quantize", method == NULL ? "missing --method nf4, fp4 or int8"
                                                         : "unknown method '%s' for --format bnb (supported: nf4, "
                                                           "fp4, int8)", method);
    if (gptq_options)
        return qc_usage_error("quantize", "--bits, --group, --sym and --checkpoint-format do not apply to --format "
                              "bnb; --method sets the bits");
    if (out_dir == NULL)
        return qc_usage_error("quantize", "missing --out DIR");
    bool int8 = request.method == QC_BNB_METHOD_INT8;
    if (int8 && (double_quant || blocksize_text != NULL))
        return qc_usage_error("quantize", "--double-quant and --blocksize apply to nf4 and fp4, not int8");
    int code;
    long blocksize = 64;
    if (blocksize_text != NULL &&
        (code = qc_args_int("quantize", "--blocksize", blocksize_text, 32, 4096, &blocksize)) != 0)
        return code;
    if ((blocksize & (blocksize - 1)) != 0)
        return qc_usage_error("quantize", "option --blocksize: %ld is not a power of two", blocksize);
    request.blocksize = blocksize;

    qref_error err = {0};
    qc_quantize_outcome outcome;
    if (qc_quantize_bnb(&request, &outcome, &err) != QREF_OK)
        return qc_report_error(&err);
    warn_cleanup(&outcome);
    if (int8)
        printf("quantized %d layers (%d linears) with bitsandbytes LLM.int8: 8-bit, per row -> %s\n", outcome.layers,
               outcome.linears, out_dir);
    else
        printf("quantized %d layers (%d linears) with bitsandbytes %s: 4-bit, blocksize %ld, %s -> %s\n",
               outcome.layers, outcome.linears, method, blocksize,
               double_quant ? "double quantization" : "f32 block scales", out_dir);
    return QC_EXIT_PASS;
}

/* --format compressed-tensors: checks the options that apply and runs the compressed-tensors writer. */
static int quantize_ct(const char *reference, const char *method, const char *bits_text, const char *group_text,
                       bool sym, const char *checkpoint_text, const char *out_dir, bool force)
{
    if (method == NULL || strcmp(method, "rtn") != 0)
        return qc_usage_error("quantize", method == NULL ? "missing --method rtn"
                                                         : "unknown method '%s' for --format compressed-tensors "
                                                           "(supported: rtn)", method);
    if (checkpoint_text != NULL)
        return qc_usage_error("quantize", "--checkpoint-format applies to --format gptq");
    if (out_dir == NULL)
        return qc_usage_error("quantize", "missing --out DIR");
    if (bits_text == NULL)
        return qc_usage_error("quantize", "missing --bits B (4 or 8)");
    long bits;
    int code;
    if ((code = qc_args_int("quantize", "--bits", bits_text, 2, 8, &bits)) != 0)
        return code;
    if (bits != 4 && bits != 8)
        return qc_usage_error("quantize", "option --bits: %ld is not supported by the compressed-tensors "
                              "pack-quantized format, expected 4 or 8", bits);
    long group_size = -1;
    if ((code = parse_group(group_text, &group_size)) != 0)
        return code;

    qc_ct_request request = {.reference = reference, .out_dir = out_dir, .force = force, .bits = (int)bits,
                             .group_size = group_size, .sym = sym};
    qref_error err = {0};
    qc_quantize_outcome outcome;
    if (qc_quantize_ct(&request, &outcome, &err) != QREF_OK)
        return qc_report_error(&err);
    warn_cleanup(&outcome);
    char group[32];
    group_label(group_size, group, sizeof group);
    printf("quantized %d layers (%d linears) with rtn: %ld-bit, %s, %s, compressed-tensors pack-quantized -> %s\n",
           outcome.layers, outcome.linears, bits, group, sym ? "sym" : "asym", out_dir);
    return QC_EXIT_PASS;
}

/* --format awq-gemm|awq-gemv: checks the options that apply and runs the AWQ writer. */
static int quantize_awq(const char *reference, const char *method, const char *bits_text, const char *group_text,
                        bool sym, const char *checkpoint_text, const char *format, const char *out_dir, bool force)
{
    if (method == NULL || strcmp(method, "rtn-awq") != 0)
        return qc_usage_error("quantize", method == NULL ? "missing --method rtn-awq"
                                                         : "unknown method '%s' for --format %s (supported: rtn-awq, "
                                                           "AWQ's own round-to-nearest quantizer)", method, format);
    if (checkpoint_text != NULL)
        return qc_usage_error("quantize", "--checkpoint-format applies to --format gptq");
    if (out_dir == NULL)
        return qc_usage_error("quantize", "missing --out DIR");
    long bits = 4;
    int code;
    if (bits_text != NULL && (code = qc_args_int("quantize", "--bits", bits_text, 2, 8, &bits)) != 0)
        return code;
    if (bits != 4)
        return qc_usage_error("quantize", "option --bits: %ld is not supported by the AWQ GEMM and GEMV layouts, "
                              "expected 4", bits);
    long group_size = 128;
    if ((code = parse_group(group_text, &group_size)) != 0)
        return code;

    qc_awq_request request = {.reference = reference, .out_dir = out_dir, .force = force, .group_size = group_size,
                              .zero_point = !sym,
                              .layout = strcmp(format, "awq-gemv") == 0 ? QREF_AWQ_LAYOUT_GEMV : QREF_AWQ_LAYOUT_GEMM};
    qref_error err = {0};
    qc_quantize_outcome outcome;
    if (qc_quantize_awq(&request, &outcome, &err) != QREF_OK)
        return qc_report_error(&err);
    warn_cleanup(&outcome);
    char group[32];
    group_label(group_size, group, sizeof group);
    printf("quantized %d layers (%d linears) with rtn-awq: 4-bit, %s, zero_point %s, awq version %s -> %s\n",
           outcome.layers, outcome.linears, group, sym ? "false" : "true", qref_awq_layout_name(request.layout),
           out_dir);
    return QC_EXIT_PASS;
}

/* --format fake: checks the options that apply and runs the fake-quantized snapshot writer. */
static int quantize_fake(const char *reference, const char *method, const char *bits_text, const char *group_text,
                         bool sym, const char *dtype_text, const char *checkpoint_text, const char *out_dir, bool force)
{
    if (method == NULL || strcmp(method, "rtn") != 0)
        return qc_usage_error("quantize", method == NULL ? "missing --method rtn"
                                                         : "unknown method '%s' for --format fake (supported: rtn)",
                              method);
    if (checkpoint_text != NULL)
        return qc_usage_error("quantize", "--checkpoint-format applies to --format gptq");
    if (out_dir == NULL)
        return qc_usage_error("quantize", "missing --out DIR");
    if (bits_text == NULL)
        return qc_usage_error("quantize", "missing --bits B (2 to 8)");
    long bits;
    int code;
    if ((code = qc_args_int("quantize", "--bits", bits_text, 2, 8, &bits)) != 0)
        return code;
    long group_size = -1;
    if ((code = parse_group(group_text, &group_size)) != 0)
        return code;
    qc_fake_request request = {.reference = reference, .out_dir = out_dir, .force = force, .bits = (int)bits,
                               .group_size = group_size, .sym = sym, .dtype = QREF_DTYPE_F16,
                               .quantizer = "qconform:" QCONFORM_VERSION};
    if (dtype_text != NULL && !qc_fake_dtype_parse(dtype_text, &request.dtype))
        return qc_usage_error("quantize", "option --dtype: unknown dtype '%s' (supported: f16, bf16)", dtype_text);

    qref_error err = {0};
    qc_quantize_outcome outcome;
    if (qc_quantize_fake(&request, &outcome, &err) != QREF_OK)
        return qc_report_error(&err);
    warn_cleanup(&outcome);
    char group[32];
    group_label(group_size, group, sizeof group);
    printf("quantized %d layers (%d linears) with rtn: %ld-bit, %s, %s, fake-quantized %s -> %s\n", outcome.layers,
           outcome.linears, bits, group, sym ? "sym" : "asym", qref_dtype_name(request.dtype), out_dir);
    return QC_EXIT_PASS;
}

int qc_cmd_quantize(int argc, char **argv)
{
    const char *method = NULL, *bits_text = NULL, *group_text = NULL, *format = NULL, *checkpoint_text = NULL,
               *out_dir = NULL, *blocksize_text = NULL, *pack_dtype_text = NULL;
    bool sym = false, force = false, double_quant = false, desc_act = false, static_groups = false;
    const char *dtype_text = NULL; /* --format fake */
    const qc_arg_spec specs[] = {
        {"--method", QC_ARG_STRING, &method},
        {"--dtype", QC_ARG_STRING, &dtype_text},
        {"--bits", QC_ARG_STRING, &bits_text},
        {"--group", QC_ARG_STRING, &group_text},
        {"--sym", QC_ARG_FLAG, &sym},
        {"--format", QC_ARG_STRING, &format},
        {"--checkpoint-format", QC_ARG_STRING, &checkpoint_text},
        {"--out", QC_ARG_STRING, &out_dir},
        {"--force", QC_ARG_FLAG, &force},
        {"--double-quant", QC_ARG_FLAG, &double_quant},
        {"--blocksize", QC_ARG_STRING, &blocksize_text},
        {"--desc-act", QC_ARG_FLAG, &desc_act},
        {"--static-groups", QC_ARG_FLAG, &static_groups},
        {"--pack-dtype", QC_ARG_STRING, &pack_dtype_text},
    };
    qc_args_result args;
    int code;
    if (qc_args_parse_command("quantize", argc, argv, specs, sizeof specs / sizeof specs[0], 1, print_usage, &args, &code))
        return code;

    /* options */
    if (args.positional_count != 1)
        return qc_usage_error("quantize", "expected one REF snapshot path");
    if ((code = qc_args_check_output("quantize", "--out", out_dir, args.positional[0], true)) != 0)
        return code;
    if ((desc_act || static_groups || pack_dtype_text != NULL) && (format == NULL || strcmp(format, "gptq") != 0))
        return qc_usage_error("quantize", "--desc-act, --static-groups and --pack-dtype apply to --format gptq");
    if (format != NULL && strcmp(format, "fake") == 0)
        return quantize_fake(args.positional[0], method, bits_text, group_text, sym, dtype_text, checkpoint_text,
                             out_dir, force);
    if (dtype_text != NULL)
        return qc_usage_error("quantize", "--dtype applies to --format fake");
    if (format != NULL && strcmp(format, "bnb") == 0)
        return quantize_bnb(args.positional[0], method, out_dir, double_quant, blocksize_text, force,
                            bits_text != NULL || group_text != NULL || sym || checkpoint_text != NULL);
    if (double_quant || blocksize_text != NULL)
        return qc_usage_error("quantize", "--double-quant and --blocksize apply to --format bnb");
    if (format != NULL && strcmp(format, "compressed-tensors") == 0)
        return quantize_ct(args.positional[0], method, bits_text, group_text, sym, checkpoint_text, out_dir, force);
    if (format != NULL && (strcmp(format, "awq-gemm") == 0 || strcmp(format, "awq-gemv") == 0))
        return quantize_awq(args.positional[0], method, bits_text, group_text, sym, checkpoint_text, format, out_dir,
                            force);
    if (method == NULL || strcmp(method, "rtn") != 0)
        return qc_usage_error("quantize", method == NULL ? "missing --method (rtn, nf4, fp4, int8 or rtn-awq)"
                                                         : "unknown method '%s' for --format %s (supported: rtn; nf4, "
                                                           "fp4 and int8 need --format bnb, rtn-awq needs --format "
                                                           "awq-gemm or awq-gemv)", method,
                              format != NULL ? format : "gptq");
    if (format == NULL || strcmp(format, "gptq") != 0)
        return qc_usage_error("quantize", format == NULL ? "missing --format gptq"
                                                         : "unknown format '%s' (supported: gptq, bnb, "
                                                           "compressed-tensors, awq-gemm, awq-gemv, fake)", format);
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
    if ((code = parse_group(group_text, &group_size)) != 0)
        return code;
    if (static_groups && !desc_act)
        return qc_usage_error("quantize", "--static-groups applies to --desc-act");
    int pack_bits = 32;
    if (pack_dtype_text != NULL && !qref_gptq_pack_dtype_parse(pack_dtype_text, &pack_bits))
        return qc_usage_error("quantize", "option --pack-dtype: unknown type '%s' (supported: int32, int16, int8, "
                              "int64)", pack_dtype_text);
    if (bits == 3 && pack_bits != 32)
        return qc_usage_error("quantize", "option --pack-dtype: 3-bit codes need int32 words (GPTQModel packs "
                              "3-bit codes only in 32-bit words), not %s", pack_dtype_text);
    qc_quantize_request request = {.reference = args.positional[0], .out_dir = out_dir, .bits = (int)bits,
                                   .group_size = group_size, .sym = sym, .checkpoint = QC_CHECKPOINT_AUTO,
                                   .desc_act = desc_act, .static_groups = static_groups, .pack_bits = pack_bits,
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
    warn_cleanup(&outcome);

    /* print */
    char group[32];
    group_label(group_size, group, sizeof group);
    char layout[64] = "";
    if (desc_act || pack_bits != 32)
        snprintf(layout, sizeof layout, "%s%s%s%s", desc_act ? ", desc_act" : "", static_groups ? " static_groups" : "",
                 pack_bits != 32 ? ", pack_dtype " : "", pack_bits != 32 ? qref_gptq_pack_dtype_name(pack_bits) : "");
    printf("quantized %d layers (%d linears) with rtn: %ld-bit, %s, %s, gptq checkpoint_format %s%s -> %s\n",
           outcome.layers, outcome.linears, bits, group, sym ? "sym" : "asym", qref_gptq_format_name(outcome.format),
           layout, out_dir);
    return QC_EXIT_PASS;
}
