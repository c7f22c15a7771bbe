/*
 * AWQ tensors in the AutoAWQ GEMM and GEMV layouts: structure check, unpacking,
 * dequantization and packing of one linear layer. The layouts and their sources are
 * described in qref_awq.h, and the config code is in qref_awq_config.c.
 *
 * Every field goes through two word rules. GEMM: column 8c + j of a run of eight sits in
 * field AWQ_REVERSE_ORDER[j] (packing_utils.py's reverse_awq_order undoes from_linear's
 * order_map AWQ_ORDER). GEMV: element k of a run of eight sits in field k. Field s is bits
 * [4s, 4s + 4) of the little-endian word.
 */
#include "formats/qref_awq.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"
#include "core/qref_dtype.h"

/* Field that receives column 8c + AWQ_ORDER[s] is s (from_linear's order_map). */
static const int awq_order[QREF_AWQ_PACK] = {0, 2, 4, 6, 1, 3, 5, 7};
/* Field that contains column 8c + j (AWQ_REVERSE_ORDER). */
static const int awq_reverse_order[QREF_AWQ_PACK] = {0, 4, 1, 5, 2, 6, 3, 7};

/* Largest feature count accepted, so that every index product fits comfortably in int64. */
#define AWQ_MAX_FEATURES ((int64_t)1 << 30)

const char *qref_awq_layout_name(qref_awq_layout layout)
{
    return layout == QREF_AWQ_LAYOUT_GEMV ? "gemv" : "gemm";
}

/* ---- words -------------------------------------------------------------------------------- */

uint32_t qref_awq_gemm_word_pack(const uint8_t values[QREF_AWQ_PACK])
{
    uint32_t word = 0;
    for (int s = 0; s < QREF_AWQ_PACK; s++)
        word |= (uint32_t)(values[awq_order[s]] & 0xfu) << (4 * s);
    return word;
}

void qref_awq_gemm_word_unpack(uint32_t word, uint8_t values[QREF_AWQ_PACK])
{
    for (int j = 0; j < QREF_AWQ_PACK; j++)
        values[j] = (uint8_t)((word >> (4 * awq_reverse_order[j])) & 0xfu);
}

uint32_t qref_awq_gemv_word_pack(const uint8_t values[QREF_AWQ_PACK])
{
    uint32_t word = 0;
    for (int k = 0; k < QREF_AWQ_PACK; k++)
        word |= (uint32_t)(values[k] & 0xfu) << (4 * k);
    return word;
}

void qref_awq_gemv_word_unpack(uint32_t word, uint8_t values[QREF_AWQ_PACK])
{
    for (int k = 0; k < QREF_AWQ_PACK; k++)
        values[k] = (uint8_t)((word >> (4 * k)) & 0xfu);
}

/* ---- shapes ------------------------------------------------------------------------------- */

int64_t qref_awq_gemv_zeros_width(int64_t in_features, int64_t group_size)
{
    int64_t multiplier;
    if (group_size >= 128)
        multiplier = 1;
    else if (group_size == 64)
        multiplier = 2;
    else if (group_size == 32)
        multiplier = 4;
    else
        return -1;
    int64_t base = (in_features / group_size + QREF_AWQ_PACK - 1) / QREF_AWQ_PACK;
    return (base + multiplier - 1) / multiplier * multiplier;
}

/* The three shapes of one linear in one layout, [rows, cols] each. */
typedef struct awq_shapes {
    int64_t qweight[2];
    int64_t qzeros[2];
    int64_t scales[2];
    int64_t groups;
    int64_t zeros_width;     /* qzeros columns: out / 8 (GEMM) or Zw (GEMV) */
} awq_shapes;

/* Fills the shapes of layout; returns false when the layout cannot hold these widths. */
static bool shapes_of(qref_awq_layout layout, int64_t in, int64_t out, int64_t group_size, awq_shapes *s)
{
    if (group_size <= 0 || in % group_size != 0)
        return false;
    s->groups = in / group_size;
    if (layout == QREF_AWQ_LAYOUT_GEMM) {
        if (out % QREF_AWQ_PACK != 0)
            return false;
        s->zeros_width = out / QREF_AWQ_PACK;
        s->qweight[0] = in, s->qweight[1] = out / QREF_AWQ_PACK;
        s->qzeros[0] = s->groups, s->qzeros[1] = s->zeros_width;
        s->scales[0] = s->groups, s->scales[1] = out;
        return true;
    }
    int64_t width = qref_awq_gemv_zeros_width(in, group_size);
    if (in % QREF_AWQ_PACK != 0 || width < 0)
        return false;
    s->zeros_width = width;
    s->qweight[0] = out, s->qweight[1] = in / QREF_AWQ_PACK;
    s->qzeros[0] = out, s->qzeros[1] = width;
    s->scales[0] = out, s->scales[1] = width * QREF_AWQ_PACK;
    return true;
}

static bool tensor_has_shape(const qref_tensor *tensor, const int64_t shape[2])
{
    return tensor != NULL && tensor->ndim == 2 && tensor->shape[0] == shape[0] && tensor->shape[1] == shape[1];
}

/* True when every present tensor of the linear has the shapes s. */
static bool linear_has_shapes(const qref_awq_linear *linear, const awq_shapes *s)
{
    return tensor_has_shape(linear->qweight, s->qweight) && tensor_has_shape(linear->scales, s->scales) &&
           (linear->qzeros == NULL || tensor_has_shape(linear->qzeros, s->qzeros));
}

/* ---- findings ----------------------------------------------------------------------------- */

static const char *prefix_or_default(const char *prefix)
{
    return prefix != NULL && prefix[0] != '\0' ? prefix : "linear";
}

/* Formats 'FILE: tensor "NAME"' for messages. A tensor without a name is called prefix.role. */
static const char *tensor_label(const qref_tensor *tensor, const char *prefix, const char *role, char *buf,
                                size_t size)
{
    if (tensor != NULL && tensor->name != NULL) {
        if (tensor->file != NULL)
            snprintf(buf, size, "%s: tensor \"%s\"", tensor->file, tensor->name);
        else
            snprintf(buf, size, "tensor \"%s\"", tensor->name);
    } else {
        snprintf(buf, size, "tensor \"%s.%s\"", prefix_or_default(prefix), role);
    }
    return buf;
}

/* The name a finding records for one tensor of the linear. */
static const char *finding_tensor(const qref_tensor *tensor, const char *prefix, const char *role, char *buf,
                                  size_t size)
{
    if (tensor != NULL && tensor->name != NULL)
        return tensor->name;
    snprintf(buf, size, "%s.%s", prefix_or_default(prefix), role);
    return buf;
}

static char *shape_text(const qref_tensor *tensor, char *buf, size_t size)
{
    return qref_tensor_shape_string(tensor, buf, size);
}

/* ---- structure check ---------------------------------------------------------------------- */

/* Checks the config against the features before any tensor is read. Returns false to stop the check. */
static bool check_config(const qref_awq_linear *linear, const qref_awq_config *config, qref_findings *findings)
{
    const char *name = prefix_or_default(linear->prefix);
    const int64_t in = linear->in_features, out = linear->out_features;
    if (in <= 0 || in > AWQ_MAX_FEATURES || out <= 0 || out > AWQ_MAX_FEATURES) {
        qref_findings_add(findings, "awq.shape", QREF_SEVERITY_ERROR, name,
                          "%s: features in %lld, out %lld, expected each in 1..%lld", name, (long long)in,
                          (long long)out, (long long)AWQ_MAX_FEATURES);
        return false;
    }
    if (config->bits != QREF_AWQ_BITS) {
        char shape[96] = "absent";
        if (linear->qweight != NULL)
            shape_text(linear->qweight, shape, sizeof shape);
        qref_findings_add(findings, "awq.bits", QREF_SEVERITY_ERROR, name,
                          "%s: the config (%s) declares bits %d, but AutoAWQ's GEMM and GEMV layouts hold only "
                          "4-bit codes (WQLinear_GEMM and WQLinear_GEMV raise NotImplementedError for other widths); "
                          "qweight is %s",
                          name, config->source, config->bits, shape);
        return false;
    }

    const int64_t group_size = qref_awq_group_size(config, in);
    if (group_size <= 0 || in % group_size != 0) {
        qref_findings_add(findings, "awq.group_size", QREF_SEVERITY_ERROR, name,
                          "%s: group size %lld does not divide in_features %lld, expected a divisor of %lld or -1 "
                          "(AutoAWQ asserts in_features %% group_size == 0)",
                          name, (long long)group_size, (long long)in, (long long)in);
        return false;
    }
    if (config->layout == QREF_AWQ_LAYOUT_GEMM && out % QREF_AWQ_PACK != 0) {
        qref_findings_add(findings, "awq.shape", QREF_SEVERITY_ERROR, name,
                          "%s: out_features %lld is not a multiple of 8, which the GEMM layout packs into each "
                          "int32 of qweight and qzeros",
                          name, (long long)out);
        return false;
    }
    if (config->layout == QREF_AWQ_LAYOUT_GEMV && in % QREF_AWQ_PACK != 0) {
        qref_findings_add(findings, "awq.shape", QREF_SEVERITY_ERROR, name,
                          "%s: in_features %lld is not a multiple of 8, which the GEMV layout packs into each "
                          "int32 of qweight",
                          name, (long long)in);
        return false;
    }
    if (config->layout == QREF_AWQ_LAYOUT_GEMV && qref_awq_gemv_zeros_width(in, group_size) < 0) {
        qref_findings_add(findings, "awq.group_size", QREF_SEVERITY_ERROR, name,
                          "%s: group size %lld is not implemented by the GEMV layout, expected 32, 64 or at least 128 "
                          "(AutoAWQ's calculate_zeros_width raises NotImplementedError)",
                          name, (long long)group_size);
        return false;
    }
    return true;
}

/* Checks presence and dtypes. Returns false to stop the check. */
static bool check_presence(const qref_awq_linear *linear, const qref_awq_config *config, qref_findings *findings)
{
    char label[512], name[320];
    const struct {
        const qref_tensor *tensor;
        const char *role;
        qref_dtype dtype;
        bool required;
    } parts[] = {
        {linear->qweight, "qweight", QREF_DTYPE_I32, true},
        {linear->qzeros, "qzeros", QREF_DTYPE_I32, config->zero_point},
        {linear->scales, "scales", QREF_DTYPE_F16, true},
    };
    bool ok = true;
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        const qref_tensor *tensor = parts[k].tensor;
        tensor_label(tensor, linear->prefix, parts[k].role, label, sizeof label);
        const char *tensor_name = finding_tensor(tensor, linear->prefix, parts[k].role, name, sizeof name);
        if (tensor == NULL && parts[k].required) {
            qref_findings_add(findings, "awq.tensor.missing", QREF_SEVERITY_ERROR, tensor_name,
                              "%s: missing, expected an %s tensor of the AWQ %s layout%s", label,
                              qref_dtype_name(parts[k].dtype), qref_awq_layout_name(config->layout),
                              k == 1 ? " (zero_point is true)" : "");
            ok = false;
        } else if (tensor == NULL) {
            qref_findings_add(findings, "awq.qzeros.missing", QREF_SEVERITY_WARNING, tensor_name,
                              "%s: missing; zero_point is false, so its zero points are read as 8, but AutoAWQ's "
                              "WQLinear_GEMM and WQLinear_GEMV always load a qzeros buffer and would use zero "
                              "points 0 for a file without one",
                              label);
        } else if (tensor->dtype != parts[k].dtype) {
            qref_findings_add(findings, "awq.dtype", QREF_SEVERITY_ERROR, tensor_name, "%s: dtype %s, expected %s",
                              label, qref_dtype_name(tensor->dtype), qref_dtype_name(parts[k].dtype));
            ok = false;
        }
    }
    return ok;
}

/* Adds one awq.shape finding for the first tensor whose shape differs from s. */
static void report_shape(const qref_awq_linear *linear, const qref_awq_config *config, const awq_shapes *s,
                         qref_findings *findings)
{
    const struct {
        const qref_tensor *tensor;
        const char *role;
        const int64_t *shape;
        const char *why;
    } parts[] = {
        {linear->qweight, "qweight", s->qweight,
         config->layout == QREF_AWQ_LAYOUT_GEMM ? "[in, out / 8]" : "[out, in / 8]"},
        {linear->qzeros, "qzeros", s->qzeros,
         config->layout == QREF_AWQ_LAYOUT_GEMM ? "[in / group_size, out / 8]"
                                                : "[out, calculate_zeros_width(in, group_size)]"},
        {linear->scales, "scales", s->scales,
         config->layout == QREF_AWQ_LAYOUT_GEMM ? "[in / group_size, out]"
                                                : "[out, 8 * calculate_zeros_width(in, group_size)]"},
    };
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        if (parts[k].tensor == NULL || tensor_has_shape(parts[k].tensor, parts[k].shape))
            continue;
        char label[512], found[96];
        tensor_label(parts[k].tensor, linear->prefix, parts[k].role, label, sizeof label);
        qref_findings_add(findings, "awq.shape", QREF_SEVERITY_ERROR, parts[k].tensor->name,
                          "%s: shape %s, expected [%lld, %lld] = %s of the %s layout for in %lld, out %lld, group "
                          "size %lld",
                          label, shape_text(parts[k].tensor, found, sizeof found), (long long)parts[k].shape[0],
                          (long long)parts[k].shape[1], parts[k].why, qref_awq_layout_name(config->layout),
                          (long long)linear->in_features, (long long)linear->out_features,
                          (long long)(linear->in_features / s->groups));
        return;
    }
}

/* Returns a group size G' != declared whose shapes in this layout the tensors have, or 0. */
static int64_t find_other_group_size(const qref_awq_linear *linear, const qref_awq_config *config, int64_t declared)
{
    static const int64_t candidates[] = {32, 64, 128, 256, 512, 1024, 2048, 4096};
    const int64_t in = linear->in_features;
    for (size_t k = 0; k <= sizeof candidates / sizeof candidates[0]; k++) {
        int64_t candidate = k < sizeof candidates / sizeof candidates[0] ? candidates[k] : in;
        awq_shapes s;
        if (candidate != declared && shapes_of(config->layout, in, linear->out_features, candidate, &s) &&
            linear_has_shapes(linear, &s))
            return candidate;
    }
    return 0;
}

/* Returns a code width b' != 4 whose GEMM or GEMV qweight packing the stored qweight has, or 0. */
static int find_other_bits(const qref_awq_linear *linear, const qref_awq_config *config)
{
    static const int candidates[] = {2, 8};
    const qref_tensor *qweight = linear->qweight;
    const int64_t in = linear->in_features, out = linear->out_features;
    for (size_t k = 0; k < sizeof candidates / sizeof candidates[0]; k++) {
        int b = candidates[k];
        int64_t packed[2];
        if (config->layout == QREF_AWQ_LAYOUT_GEMM) {
            packed[0] = in;
            packed[1] = out * b / 32;
        } else {
            packed[0] = out;
            packed[1] = in * b / 32;
        }
        if (tensor_has_shape(qweight, packed))
            return b;
    }
    return 0;
}

/* Checks the shapes against the declared layout and names the likely cause. Returns false to stop the check. */
static bool check_shapes(const qref_awq_linear *linear, const qref_awq_config *config, awq_shapes *s,
                         qref_findings *findings)
{
    const char *name = prefix_or_default(linear->prefix);
    const int64_t in = linear->in_features, out = linear->out_features;
    const int64_t group_size = qref_awq_group_size(config, in);
    shapes_of(config->layout, in, out, group_size, s);
    if (linear_has_shapes(linear, s)) {
        /* The data length must match too (the safetensors reader checks it, views may not). */
        const qref_tensor *tensors[] = {linear->qweight, linear->qzeros, linear->scales};
        for (size_t k = 0; k < 3; k++) {
            const qref_tensor *t = tensors[k];
            if (t == NULL)
                continue;
            uint64_t expected = (uint64_t)t->shape[0] * (uint64_t)t->shape[1] * qref_dtype_size(t->dtype);
            if (t->data == NULL || t->nbytes != expected) {
                char label[512], found[96];
                tensor_label(t, linear->prefix, "tensor", label, sizeof label);
                qref_findings_add(findings, "awq.shape", QREF_SEVERITY_ERROR, t->name,
                                  "%s: holds %llu bytes, expected %llu for shape %s", label,
                                  (unsigned long long)t->nbytes, (unsigned long long)expected,
                                  shape_text(t, found, sizeof found));
                return false;
            }
        }
        return true;
    }

    /* the other layout: a GEMV file declared GEMM, or the reverse */
    qref_awq_layout other = config->layout == QREF_AWQ_LAYOUT_GEMM ? QREF_AWQ_LAYOUT_GEMV : QREF_AWQ_LAYOUT_GEMM;
    awq_shapes o;
    if (shapes_of(other, in, out, group_size, &o) && linear_has_shapes(linear, &o)) {
        char qweight[96], scales[96];
        qref_findings_add(findings, "awq.layout.mismatch", QREF_SEVERITY_ERROR, name,
                          "%s: the tensors have the %s shapes (qweight %s, scales %s), but the config (%s) %s "
                          "version \"%s\", whose layout expects qweight [%lld, %lld] and scales [%lld, %lld]; hint: "
                          "the file was written with version \"%s\"",
                          name, qref_awq_layout_name(other), shape_text(linear->qweight, qweight, sizeof qweight),
                          shape_text(linear->scales, scales, sizeof scales), config->source,
                          (config->declared & QREF_AWQ_KEY_VERSION) ? "declares" : "sets no version, so AutoAWQ uses",
                          config->version,
                          (long long)s->qweight[0], (long long)s->qweight[1], (long long)s->scales[0],
                          (long long)s->scales[1], qref_awq_layout_name(other));
        return false;
    }

    /* the declared group size against the one the tensors were packed with */
    int64_t stored_group = find_other_group_size(linear, config, group_size);
    if (stored_group != 0) {
        char scales[96];
        qref_findings_add(findings, "awq.group_size", QREF_SEVERITY_ERROR, name,
                          "%s: scales %s and qzeros have the %s shapes of group size %lld, but the config (%s) "
                          "declares group size %lld (expected scales [%lld, %lld])",
                          name, shape_text(linear->scales, scales, sizeof scales), qref_awq_layout_name(config->layout),
                          (long long)stored_group, config->source, (long long)config->group_size,
                          (long long)s->scales[0], (long long)s->scales[1]);
        return false;
    }

    /* a qweight packed with another code width */
    int stored_bits = find_other_bits(linear, config);
    if (stored_bits != 0) {
        char label[512], qweight[96];
        tensor_label(linear->qweight, linear->prefix, "qweight", label, sizeof label);
        qref_findings_add(findings, "awq.bits", QREF_SEVERITY_ERROR, linear->qweight->name,
                          "%s: shape %s is the packing of %d-bit codes (%d per int32), expected [%lld, %lld] for "
                          "the 4-bit codes the config (%s) declares and AWQ layouts hold",
                          label, shape_text(linear->qweight, qweight, sizeof qweight), stored_bits, 32 / stored_bits,
                          (long long)s->qweight[0], (long long)s->qweight[1], config->source);
        return false;
    }

    report_shape(linear, config, s, findings);
    return false;
}

/* Reads field `field` of word `index` of a tensor of int32 words. */
static unsigned word_field(const qref_tensor *tensor, uint64_t index, int field)
{
    return (qref_load_u32(tensor->data + 4 * index) >> (4 * field)) & 0xfu;
}

/* Zero point of (group g, output o) as stored, for a present qzeros in valid shapes. */
static unsigned zero_at(const qref_awq_linear *linear, qref_awq_layout layout, const awq_shapes *s, int64_t g,
                        int64_t o)
{
    if (layout == QREF_AWQ_LAYOUT_GEMM)
        return word_field(linear->qzeros, (uint64_t)(g * s->zeros_width + o / QREF_AWQ_PACK),
                          awq_reverse_order[o % QREF_AWQ_PACK]);
    return word_field(linear->qzeros, (uint64_t)(o * s->zeros_width + g / QREF_AWQ_PACK), (int)(g % QREF_AWQ_PACK));
}

/* Scale bits of (group g, output o). */
static uint16_t scale_at(const qref_awq_linear *linear, qref_awq_layout layout, const awq_shapes *s, int64_t g,
                         int64_t o)
{
    uint64_t index = layout == QREF_AWQ_LAYOUT_GEMM ? (uint64_t)(g * linear->out_features + o)
                                                    : (uint64_t)(o * s->scales[1] + g);
    return qref_load_u16(linear->scales->data + 2 * index);
}

/* Formats the stored index of (group g, output o) in scales or qzeros: "[g][o]" or "[o][g]". */
static void index_text(qref_awq_layout layout, int64_t g, int64_t o, char *buf, size_t size)
{
    if (layout == QREF_AWQ_LAYOUT_GEMM)
        snprintf(buf, size, "[%lld][%lld]", (long long)g, (long long)o);
    else
        snprintf(buf, size, "[%lld][%lld]", (long long)o, (long long)g);
}

/* Scales: finite and positive in every group; GEMV padding columns zero. */
static void check_scales(const qref_awq_linear *linear, const qref_awq_config *config, const awq_shapes *s,
                         qref_findings *findings)
{
    const int64_t out = linear->out_features;
    uint64_t bad = 0, padding = 0;
    int64_t bad_g = 0, bad_o = 0, pad_o = 0, pad_c = 0;
    uint16_t bad_bits = 0, pad_bits = 0;
    for (int64_t o = 0; o < out; o++) {
        for (int64_t g = 0; g < s->groups; g++) {
            uint16_t bits = scale_at(linear, config->layout, s, g, o);
            float value = qref_f16_to_f32(bits);
            if (!isfinite(value) || !(value > 0.0f)) {
                if (bad++ == 0)
                    bad_g = g, bad_o = o, bad_bits = bits;
            }
        }
        for (int64_t c = s->groups; config->layout == QREF_AWQ_LAYOUT_GEMV && c < s->scales[1]; c++) {
            uint16_t bits = qref_load_u16(linear->scales->data + 2 * (uint64_t)(o * s->scales[1] + c));
            if (bits != 0 && padding++ == 0)
                pad_o = o, pad_c = c, pad_bits = bits;
        }
    }
    char label[512], where[64];
    tensor_label(linear->scales, linear->prefix, "scales", label, sizeof label);
    if (bad > 0) {
        index_text(config->layout, bad_g, bad_o, where, sizeof where);
        qref_findings_add(findings, "awq.scales.invalid", QREF_SEVERITY_ERROR, linear->scales->name,
                          "%s: scale %g (f16 0x%04x) at %s, expected a finite value > 0 (%llu of %lld scales are "
                          "not)",
                          label, (double)qref_f16_to_f32(bad_bits), bad_bits, where, (unsigned long long)bad,
                          (long long)(s->groups * out));
    }
    if (padding > 0)
        qref_findings_add(findings, "awq.scales.padding", QREF_SEVERITY_WARNING, linear->scales->name,
                          "%s: padding column [%lld][%lld] holds %g (f16 0x%04x), expected 0: columns %lld..%lld "
                          "follow the %lld groups and WQLinear_GEMV.from_linear leaves them zero (%llu nonzero)",
                          label, (long long)pad_o, (long long)pad_c, (double)qref_f16_to_f32(pad_bits), pad_bits,
                          (long long)s->groups, (long long)s->scales[1] - 1, (long long)s->groups,
                          (unsigned long long)padding);
}

/* Zero points: 8 everywhere with zero_point false; GEMV padding fields zero. */
static void check_zeros(const qref_awq_linear *linear, const qref_awq_config *config, const awq_shapes *s,
                        qref_findings *findings)
{
    if (linear->qzeros == NULL)
        return;
    const int64_t out = linear->out_features;
    const unsigned symmetric = 1u << (QREF_AWQ_BITS - 1);
    uint64_t asymmetric = 0, padding = 0;
    int64_t bad_g = 0, bad_o = 0, pad_o = 0, pad_field = 0;
    unsigned bad_value = 0, pad_value = 0;
    for (int64_t o = 0; o < out; o++) {
        for (int64_t g = 0; !config->zero_point && g < s->groups; g++) {
            unsigned zero = zero_at(linear, config->layout, s, g, o);
            if (zero != symmetric && asymmetric++ == 0)
                bad_g = g, bad_o = o, bad_value = zero;
        }
        for (int64_t f = s->groups; config->layout == QREF_AWQ_LAYOUT_GEMV && f < s->zeros_width * QREF_AWQ_PACK;
             f++) {
            unsigned field = word_field(linear->qzeros, (uint64_t)(o * s->zeros_width + f / QREF_AWQ_PACK),
                                        (int)(f % QREF_AWQ_PACK));
            if (field != 0 && padding++ == 0)
                pad_o = o, pad_field = f, pad_value = field;
        }
    }
    char label[512], where[64];
    tensor_label(linear->qzeros, linear->prefix, "qzeros", label, sizeof label);
    if (asymmetric > 0) {
        index_text(config->layout, bad_g, bad_o, where, sizeof where);
        qref_findings_add(findings, "awq.zero_point.not_symmetric", QREF_SEVERITY_ERROR, linear->qzeros->name,
                          "%s: zero point %u at %s, expected %u because the config (%s) declares zero_point false "
                          "(symmetric codes); %llu of %lld zero points differ",
                          label, bad_value, where, symmetric, config->source, (unsigned long long)asymmetric,
                          (long long)(s->groups * out));
    }
    if (padding > 0)
        qref_findings_add(findings, "awq.qzeros.padding", QREF_SEVERITY_WARNING, linear->qzeros->name,
                          "%s: row %lld, field %lld (word %lld, bits %lld..%lld) holds %u, expected 0: fields "
                          "%lld..%lld follow the %lld groups and WQLinear_GEMV.from_linear leaves them zero "
                          "(%llu nonzero)",
                          label, (long long)pad_o, (long long)pad_field, (long long)(pad_field / QREF_AWQ_PACK),
                          (long long)(4 * (pad_field % QREF_AWQ_PACK)), (long long)(4 * (pad_field % QREF_AWQ_PACK) + 3),
                          pad_value, (long long)s->groups, (long long)(s->zeros_width * QREF_AWQ_PACK - 1),
                          (long long)s->groups, (unsigned long long)padding);
}

/*
 * GEMM weights overflow when f16(s * |q - z|) is infinite, which needs s * 15 >= 65520. Only
 * such groups are scanned for their largest |q - z|.
 */
static void check_overflow(const qref_awq_linear *linear, const qref_awq_config *config, const awq_shapes *s,
                           qref_findings *findings)
{
    if (config->layout != QREF_AWQ_LAYOUT_GEMM)
        return;
    const int64_t in = linear->in_features, out = linear->out_features, group_size = in / s->groups;
    const unsigned symmetric = 1u << (QREF_AWQ_BITS - 1);
    uint64_t overflows = 0;
    int64_t first_o = 0, first_i = 0;
    float first_scale = 0.0f;
    int first_offset = 0;
    for (int64_t g = 0; g < s->groups; g++) {
        for (int64_t o = 0; o < out; o++) {
            float scale = qref_f16_to_f32(scale_at(linear, config->layout, s, g, o));
            if (!isfinite(scale) || qref_f32_to_f16(scale * 15.0f) != 0x7c00u)
                continue;
            unsigned zero = linear->qzeros != NULL ? zero_at(linear, config->layout, s, g, o) : symmetric;
            for (int64_t i = g * group_size; i < (g + 1) * group_size; i++) {
                unsigned code = word_field(linear->qweight, (uint64_t)(i * s->qweight[1] + o / QREF_AWQ_PACK),
                                           awq_reverse_order[o % QREF_AWQ_PACK]);
                int offset = (int)code - (int)zero;
                uint16_t product = qref_f32_to_f16(scale * (float)abs(offset));
                if ((product & 0x7fffu) == 0x7c00u && overflows++ == 0)
                    first_o = o, first_i = i, first_scale = scale, first_offset = offset;
            }
        }
    }
    if (overflows > 0) {
        char name[320];
        const char *tensor = finding_tensor(linear->scales, linear->prefix, "scales", name, sizeof name);
        qref_findings_add(findings, "dequant.fp16_overflow", QREF_SEVERITY_ERROR, tensor,
                          "%s: weight [%lld][%lld] = scale %g x (q - z) %d overflows f16 (|w| > 65504), which "
                          "dequantize_gemm computes in; %llu weights overflow",
                          prefix_or_default(linear->prefix), (long long)first_o, (long long)first_i,
                          (double)first_scale, first_offset, (unsigned long long)overflows);
    }
}

void qref_awq_check_linear(const qref_awq_linear *linear, const qref_awq_config *config, qref_findings *findings)
{
    /* Step 1: the config against the features, then presence and dtypes. */
    if (!check_config(linear, config, findings))
        return;
    if (!check_presence(linear, config, findings))
        return;

    /* Step 2: shapes, naming the likely cause of a mismatch. */
    awq_shapes s;
    if (!check_shapes(linear, config, &s, findings))
        return;

    /* Step 3: values: scales, zero points and padding, f16 overflow. */
    check_scales(linear, config, &s, findings);
    check_zeros(linear, config, &s, findings);
    check_overflow(linear, config, &s, findings);
}

/* ---- unpack and dequantize ---------------------------------------------------------------- */

void qref_awq_codes_free(qref_awq_codes *codes)
{
    if (codes == NULL)
        return;
    free(codes->codes);
    free(codes->zeros);
    free(codes->scales);
    memset(codes, 0, sizeof *codes);
}

/* Runs the check and fails with the first ERROR finding's message (dequant.fp16_overflow only if asked). */
static qref_status check_for_reading(const qref_awq_linear *linear, const qref_awq_config *config,
                                     bool overflow_fails, qref_error *err)
{
    qref_findings findings = {0};
    qref_awq_check_linear(linear, config, &findings);
    qref_status status = QREF_OK;
    for (size_t k = 0; k < findings.count && status == QREF_OK; k++) {
        const qref_finding *finding = &findings.items[k];
        if (finding->severity != QREF_SEVERITY_ERROR)
            continue;
        if (!overflow_fails && strcmp(finding->id, "dequant.fp16_overflow") == 0)
            continue;
        status = qref_error_set(err, QREF_ERR_INVALID, "%s", finding->message);
    }
    if (status == QREF_OK && findings.dropped > 0)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory while checking the AWQ tensors",
                                prefix_or_default(linear->prefix));
    qref_findings_free(&findings);
    return status;
}

static qref_status unpack_checked(const qref_awq_linear *linear, const qref_awq_config *config, qref_awq_codes *out,
                                  qref_error *err)
{
    const int64_t in = linear->in_features, out_features = linear->out_features;
    const int64_t group_size = qref_awq_group_size(config, in);
    awq_shapes s;
    shapes_of(config->layout, in, out_features, group_size, &s);

    /* Step 1: allocate [out][in] codes and [out][groups] zeros and scales. */
    uint64_t count;
    if (!qref_mul_u64((uint64_t)in, (uint64_t)out_features, &count) || count > SIZE_MAX / sizeof(float))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: %lld x %lld weights are too many",
                              prefix_or_default(linear->prefix), (long long)out_features, (long long)in);
    const size_t parameters = (size_t)(out_features * s.groups);
    out->bits = QREF_AWQ_BITS;
    out->in_features = in;
    out->out_features = out_features;
    out->group_size = group_size;
    out->groups = s.groups;
    out->codes = malloc((size_t)count);
    out->zeros = malloc(parameters);
    out->scales = malloc(parameters * sizeof *out->scales);
    if (out->codes == NULL || out->zeros == NULL || out->scales == NULL) {
        qref_awq_codes_free(out);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the unpacked codes",
                              prefix_or_default(linear->prefix));
    }

    /* Step 2: zero points (8 without qzeros) and scales, as [out][groups]. */
    const unsigned symmetric = 1u << (QREF_AWQ_BITS - 1);
    for (int64_t o = 0; o < out_features; o++) {
        for (int64_t g = 0; g < s.groups; g++) {
            out->zeros[o * s.groups + g] =
                (uint8_t)(linear->qzeros != NULL ? zero_at(linear, config->layout, &s, g, o) : symmetric);
            out->scales[o * s.groups + g] = scale_at(linear, config->layout, &s, g, o);
        }
    }

    /* Step 3: codes. GEMM word [i][c] contains columns 8c..8c+7 of row i, and GEMV word
     * [o][k] contains inputs 8k..8k+7 of row o. */
    const uint8_t *qweight = linear->qweight->data;
    const int64_t words = s.qweight[1];
    if (config->layout == QREF_AWQ_LAYOUT_GEMM) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < in; i++) {
            uint8_t values[QREF_AWQ_PACK];
            for (int64_t c = 0; c < words; c++) {
                qref_awq_gemm_word_unpack(qref_load_u32(qweight + 4 * (size_t)(i * words + c)), values);
                for (int j = 0; j < QREF_AWQ_PACK; j++)
                    out->codes[(c * QREF_AWQ_PACK + j) * in + i] = values[j];
            }
        }
    } else {
#pragma omp parallel for schedule(static)
        for (int64_t o = 0; o < out_features; o++) {
            for (int64_t k = 0; k < words; k++)
                qref_awq_gemv_word_unpack(qref_load_u32(qweight + 4 * (size_t)(o * words + k)),
                                          out->codes + o * in + k * QREF_AWQ_PACK);
        }
    }
    return QREF_OK;
}

qref_status qref_awq_unpack(const qref_awq_linear *linear, const qref_awq_config *config, qref_awq_codes *out,
                            qref_error *err)
{
    memset(out, 0, sizeof *out);
    qref_status status = check_for_reading(linear, config, false, err);
    if (status != QREF_OK)
        return status;
    return unpack_checked(linear, config, out, err);
}

void qref_awq_codes_dequantize(const qref_awq_codes *codes, qref_awq_layout layout, float *weight)
{
    const int64_t in = codes->in_features, groups = codes->groups, group_size = codes->group_size;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < codes->out_features; o++) {
        for (int64_t i = 0; i < in; i++) {
            int64_t g = i / group_size;
            float scale = qref_f16_to_f32(codes->scales[o * groups + g]);
            int offset = (int)codes->codes[o * in + i] - (int)codes->zeros[o * groups + g];

            /* The f32 product is exact (an 11-bit scale times |offset| <= 15 needs at most 15
             * bits). GEMM rounds it once to f16, as PyTorch's int8 x f16 product does.
             * NOTE: GEMV follows gemv_cuda.cu's f32 product, which AutoAWQ uses up to 8 input
             * rows; for more rows it calls gemmv2_forward_cuda, whose rounding is not mirrored. */
            float product = scale * (float)offset;
            if (layout == QREF_AWQ_LAYOUT_GEMM)
                product = qref_f16_to_f32(qref_f32_to_f16(product));
            weight[o * in + i] = product;
        }
    }
}

qref_status qref_awq_dequantize(const qref_awq_linear *linear, const qref_awq_config *config, float *weight,
                                qref_error *err)
{
    qref_status status = check_for_reading(linear, config, true, err);
    if (status != QREF_OK)
        return status;
    qref_awq_codes codes = {0};
    status = unpack_checked(linear, config, &codes, err);
    if (status != QREF_OK)
        return status;
    qref_awq_codes_dequantize(&codes, config->layout, weight);
    qref_awq_codes_free(&codes);
    return QREF_OK;
}

/* ---- pack --------------------------------------------------------------------------------- */

void qref_awq_packed_free(qref_awq_packed *packed)
{
    if (packed == NULL)
        return;
    free(packed->qweight.name);
    free(packed->qzeros.name);
    free(packed->scales.name);
    for (int k = 0; k < 3; k++)
        free(packed->buffers[k]);
    memset(packed, 0, sizeof *packed);
}

/* Allocates a zeroed 2-D tensor named "<prefix>.<role>" and its buffer. */
static qref_status packed_tensor_init(qref_tensor *tensor, uint8_t **buffer, const char *prefix, const char *role,
                                      qref_dtype dtype, const int64_t shape[2], qref_error *err)
{
    const char *base = prefix_or_default(prefix);
    size_t name_size = strlen(base) + strlen(role) + 2;
    uint64_t numel = (uint64_t)shape[0] * (uint64_t)shape[1];
    tensor->name = malloc(name_size);
    *buffer = calloc(numel == 0 ? 1 : (size_t)numel, qref_dtype_size(dtype));
    if (tensor->name == NULL || *buffer == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s.%s: cannot allocate %llu elements", base, role,
                              (unsigned long long)numel);
    snprintf(tensor->name, name_size, "%s.%s", base, role);
    tensor->dtype = dtype;
    tensor->ndim = 2;
    tensor->shape[0] = shape[0];
    tensor->shape[1] = shape[1];
    tensor->numel = numel;
    tensor->nbytes = numel * qref_dtype_size(dtype);
    tensor->data = *buffer;
    tensor->file = NULL;
    return QREF_OK;
}

/* Checks what the layout can store: widths, codes and zeros in 0..15, finite positive scales. */
static qref_status pack_check(const char *name, const qref_awq_codes *codes, qref_awq_layout layout, awq_shapes *s,
                              qref_error *err)
{
    const int64_t in = codes->in_features, out = codes->out_features;
    if (codes->bits != QREF_AWQ_BITS)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: bits %d, expected 4 (the only width of the AWQ "
                              "GEMM and GEMV layouts)", name, codes->bits);
    if (in <= 0 || in > AWQ_MAX_FEATURES || out <= 0 || out > AWQ_MAX_FEATURES)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: features in %lld, out %lld, expected each in 1..%lld",
                              name, (long long)in, (long long)out, (long long)AWQ_MAX_FEATURES);
    if (codes->group_size <= 0 || in % codes->group_size != 0 || codes->groups != in / codes->group_size)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: group size %lld with %lld groups, expected a divisor of "
                              "in_features %lld and in / group size groups", name, (long long)codes->group_size,
                              (long long)codes->groups, (long long)in);
    if (layout == QREF_AWQ_LAYOUT_GEMM && out % QREF_AWQ_PACK != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: out_features %lld is not a multiple of 8, which the GEMM "
                              "layout packs into each int32", name, (long long)out);
    if (layout == QREF_AWQ_LAYOUT_GEMV && in % QREF_AWQ_PACK != 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: in_features %lld is not a multiple of 8, which the GEMV "
                              "layout packs into each int32", name, (long long)in);
    if (!shapes_of(layout, in, out, codes->group_size, s))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: group size %lld is not implemented by the GEMV "
                              "layout, expected 32, 64 or at least 128", name, (long long)codes->group_size);

    for (int64_t k = 0; k < in * out; k++)
        if (codes->codes[k] > 15)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: code %u at [%lld][%lld], expected 0..15", name,
                                  codes->codes[k], (long long)(k / in), (long long)(k % in));
    for (int64_t k = 0; k < out * codes->groups; k++) {
        float scale = qref_f16_to_f32(codes->scales[k]);
        if (codes->zeros[k] > 15)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: zero point %u at [%lld][%lld], expected 0..15", name,
                                  codes->zeros[k], (long long)(k / codes->groups), (long long)(k % codes->groups));
        if (!isfinite(scale) || !(scale > 0.0f))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: scale %g at [%lld][%lld], expected a finite value > 0",
                                  name, (double)scale, (long long)(k / codes->groups), (long long)(k % codes->groups));
    }
    return QREF_OK;
}

qref_status qref_awq_pack(const char *prefix, const qref_awq_codes *codes, qref_awq_layout layout,
                          qref_awq_packed *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    const char *name = prefix_or_default(prefix);

    /* Step 1: what the layout can store, and the three zeroed tensors. */
    awq_shapes s;
    qref_status status = pack_check(name, codes, layout, &s, err);
    if (status == QREF_OK)
        status = packed_tensor_init(&out->qweight, &out->buffers[0], prefix, "qweight", QREF_DTYPE_I32, s.qweight, err);
    if (status == QREF_OK)
        status = packed_tensor_init(&out->qzeros, &out->buffers[1], prefix, "qzeros", QREF_DTYPE_I32, s.qzeros, err);
    if (status == QREF_OK)
        status = packed_tensor_init(&out->scales, &out->buffers[2], prefix, "scales", QREF_DTYPE_F16, s.scales, err);
    if (status != QREF_OK)
        return status;

    const int64_t in = codes->in_features, out_features = codes->out_features, groups = codes->groups;
    uint8_t *qweight = out->buffers[0], *qzeros = out->buffers[1], *scales = out->buffers[2];
    const int64_t words = s.qweight[1];

    /* Step 2: qweight. GEMM word [i][c] takes columns 8c..8c+7 of input i in AWQ_ORDER;
     * GEMV word [o][k] takes inputs 8k..8k+7 of output o in natural order. */
    if (layout == QREF_AWQ_LAYOUT_GEMM) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < in; i++) {
            uint8_t values[QREF_AWQ_PACK];
            for (int64_t c = 0; c < words; c++) {
                for (int j = 0; j < QREF_AWQ_PACK; j++)
                    values[j] = codes->codes[(c * QREF_AWQ_PACK + j) * in + i];
                qref_store_u32(qweight + 4 * (size_t)(i * words + c), qref_awq_gemm_word_pack(values));
            }
        }
    } else {
#pragma omp parallel for schedule(static)
        for (int64_t o = 0; o < out_features; o++) {
            for (int64_t k = 0; k < words; k++)
                qref_store_u32(qweight + 4 * (size_t)(o * words + k),
                               qref_awq_gemv_word_pack(codes->codes + o * in + k * QREF_AWQ_PACK));
        }
    }

    /* Step 3: qzeros and scales. GEMM: [groups][out / 8] words and [groups][out] scales;
     * GEMV: [out][Zw] words whose fields after the last group stay zero, and [out][8 Zw]
     * scales whose columns after the last group stay zero. */
    for (int64_t o = 0; o < out_features; o++) {
        for (int64_t g = 0; g < groups; g++) {
            unsigned zero = codes->zeros[o * groups + g];
            uint16_t scale = codes->scales[o * groups + g];
            uint8_t *word;
            int field;
            if (layout == QREF_AWQ_LAYOUT_GEMM) {
                word = qzeros + 4 * (size_t)(g * s.zeros_width + o / QREF_AWQ_PACK);
                field = awq_reverse_order[o % QREF_AWQ_PACK];
                qref_store_u16(scales + 2 * (size_t)(g * out_features + o), scale);
            } else {
                word = qzeros + 4 * (size_t)(o * s.zeros_width + g / QREF_AWQ_PACK);
                field = (int)(g % QREF_AWQ_PACK);
                qref_store_u16(scales + 2 * (size_t)(o * s.scales[1] + g), scale);
            }
            qref_store_u32(word, qref_load_u32(word) | (uint32_t)zero << (4 * field));
        }
    }
    return QREF_OK;
}
