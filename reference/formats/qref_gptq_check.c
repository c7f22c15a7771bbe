/*
 * Structure check of one GPTQ linear, reported as findings, and the zero-point statistics
 * that tell checkpoint format v1 from v2 across an artifact. The layout is described in
 * qref_gptq.h and the finding ids in qref_gptq_codec.c.
 *
 * The check walks the four tensors in a fixed order. First come presence, dtype and shape
 * of each, and a shape that another bit width or group size explains is named as such.
 * Then come the values of every tensor whose dtype and shape are right: padding bits, group
 * indices, zero points, scales, and last the dequantized weights that could leave the f16
 * range. A value
 * check reads a tensor only after its shape check passed, so no input makes it read out of
 * bounds. Each kind of problem becomes one finding per tensor with the first index, the
 * value found, the value expected and the number of elements affected.
 */
#include "formats/qref_gptq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qref_gptq_internal.h"

/* Largest magnitude of a finite f16 value. */
#define GPTQ_F16_MAX 65504.0f

/* One linear under check, and which of its tensors the value checks may read. */
typedef struct linear_check {
    const qref_gptq_linear *linear;
    const qref_gptq_config *config;
    qref_gptq_layout layout;
    qref_findings *findings;
    bool qweight_ok;
    bool qzeros_ok;
    bool scales_ok;
    bool g_idx_ok;     /* present with the right dtype and shape */
    bool groups_ok;    /* every group index in range (or g_idx absent) */
} linear_check;

/* The first element where a problem was found, and how many elements have it. */
typedef struct problem_tally {
    uint64_t count;
    int64_t row;
    int64_t col;
    double value;
    uint64_t word;
    unsigned field;
} problem_tally;

static void tally_record(problem_tally *tally, int64_t row, int64_t col, double value)
{
    if (tally->count++ == 0) {
        tally->row = row;
        tally->col = col;
        tally->value = value;
    }
}

/* "<prefix>.<role>", the tensor a finding names. */
static const char *tensor_name(const linear_check *check, const qref_tensor *tensor, const char *role, char *buf,
                               size_t size)
{
    if (tensor != NULL && tensor->name != NULL)
        snprintf(buf, size, "%s", tensor->name);
    else
        snprintf(buf, size, "%s.%s", qref_gptq_prefix_name(check->linear->prefix), role);
    return buf;
}

static void add_finding(linear_check *check, const char *id, qref_severity severity, const qref_tensor *tensor,
                        const char *role, const char *message)
{
    char name[256];
    qref_findings_add(check->findings, id, severity, tensor_name(check, tensor, role, name, sizeof name), "%s",
                      message);
}

static bool is_word_dtype(qref_dtype dtype)
{
    return dtype == QREF_DTYPE_I8 || dtype == QREF_DTYPE_I16 || dtype == QREF_DTYPE_I32 || dtype == QREF_DTYPE_I64;
}

/* ---- presence, dtype and shape ----------------------------------------------------------- */

/*
 * Adds gptq.missing when tensor is absent, or gptq.dtype when its dtype is none of allowed
 * (expected names them), and then returns false. A word dtype of another width gets a hint
 * naming the pack_dtype that stores it.
 */
static bool check_presence(linear_check *check, const qref_tensor *tensor, const char *role,
                           const qref_dtype *allowed, size_t allowed_count, const char *expected)
{
    char label[512], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(tensor, check->linear->prefix, role, label, sizeof label);
    if (tensor == NULL) {
        snprintf(message, sizeof message, "%s: missing, expected a tensor of dtype %s", label, expected);
        add_finding(check, "gptq.missing", QREF_SEVERITY_ERROR, tensor, role, message);
        return false;
    }
    for (size_t k = 0; k < allowed_count; k++)
        if (tensor->dtype == allowed[k])
            return true;

    /* A word dtype of another width is what GPTQModel writes for another pack_dtype. */
    char hint[160] = "";
    if (allowed_count == 1 && is_word_dtype(allowed[0]) && is_word_dtype(tensor->dtype)) {
        int stored_bits = 8 * (int)qref_dtype_size(tensor->dtype);
        snprintf(hint, sizeof hint, "; hint: %s words are what pack_dtype \"%s\" stores, but the config declares "
                 "pack_dtype \"%s\"", qref_dtype_name(tensor->dtype), qref_gptq_pack_dtype_name(stored_bits),
                 qref_gptq_pack_dtype_name(check->layout.word_bits));
    }
    snprintf(message, sizeof message, "%s: dtype %s, expected %s%s", label, qref_dtype_name(tensor->dtype), expected,
             hint);
    add_finding(check, "gptq.dtype", QREF_SEVERITY_ERROR, tensor, role, message);
    return false;
}

/* Formats "[rows, cols]" or "[rows]". */
static const char *shape_text(int ndim, int64_t rows, int64_t cols, char *buf, size_t size)
{
    if (ndim == 1)
        snprintf(buf, size, "[%lld]", (long long)rows);
    else
        snprintf(buf, size, "[%lld, %lld]", (long long)rows, (long long)cols);
    return buf;
}

static bool shape_equals(const qref_tensor *tensor, int ndim, int64_t rows, int64_t cols)
{
    return tensor->ndim == ndim && tensor->shape[0] == rows && (ndim == 1 || tensor->shape[1] == cols);
}

/*
 * Adds a finding of id unless tensor has the expected shape, with why explaining that shape
 * and an optional hint. Then checks that its byte size matches, and returns whether the
 * tensor can be read as [rows, cols].
 */
static bool check_shape(linear_check *check, const qref_tensor *tensor, const char *role, const char *id, int ndim,
                        int64_t rows, int64_t cols, const char *why, const char *hint)
{
    char label[512], found[256], expected[64], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(tensor, check->linear->prefix, role, label, sizeof label);
    qref_tensor_shape_string(tensor, found, sizeof found);
    shape_text(ndim, rows, cols, expected, sizeof expected);
    if (!shape_equals(tensor, ndim, rows, cols)) {
        snprintf(message, sizeof message, "%s: shape %s, expected %s (%s)%s%s", label, found, expected, why,
                 hint != NULL ? "; hint: " : "", hint != NULL ? hint : "");
        add_finding(check, id, QREF_SEVERITY_ERROR, tensor, role, message);
        return false;
    }
    uint64_t nbytes = (uint64_t)rows * (uint64_t)(ndim == 1 ? 1 : cols) * qref_dtype_size(tensor->dtype);
    if (tensor->data == NULL || tensor->nbytes != nbytes) {
        snprintf(message, sizeof message, "%s: holds %llu bytes, expected %llu for shape %s", label,
                 (unsigned long long)tensor->nbytes, (unsigned long long)nbytes, found);
        add_finding(check, "gptq.shape", QREF_SEVERITY_ERROR, tensor, role, message);
        return false;
    }
    return true;
}

/* The one bit width other than the declared one whose packing gives count words for
 * features elements, or 0 when none or several do. */
static int other_bits_matching(const qref_gptq_layout *layout, int64_t features, int64_t count)
{
    static const int candidates[] = {2, 3, 4, 8};
    int matches = 0, found = 0;
    for (size_t k = 0; k < sizeof candidates / sizeof candidates[0]; k++) {
        int bits = candidates[k];
        if (bits == layout->bits || (bits == 3 && layout->word_bits != 32))
            continue;
        if ((features * bits + layout->word_bits - 1) / layout->word_bits == count) {
            matches++;
            found = bits;
        }
    }
    return matches == 1 ? found : 0;
}

/*
 * Names a group size G' with ceil(in / G') = rows when the declared one gives another group
 * count: a power of two when the range of such sizes contains one, else its smallest member.
 * Returns false when no group size gives rows groups.
 */
static bool other_group_size_matching(const qref_gptq_layout *layout, int64_t rows, char *buf, size_t size)
{
    const int64_t in = layout->in_features;
    if (rows < 1 || rows > in || rows == layout->groups)
        return false;
    if (rows == 1) {
        snprintf(buf, size, "-1 (one group)");
        return true;
    }
    /* ceil(in / G) == rows exactly for in / rows <= G < in / (rows - 1) */
    int64_t low = (in + rows - 1) / rows, high = (in - 1) / (rows - 1);
    if (low > high)
        return false;
    int64_t chosen = low;
    for (int64_t power = 1; power <= high; power *= 2)
        if (power >= low)
            chosen = power;
    snprintf(buf, size, "%lld", (long long)chosen);
    return true;
}

/* Writes "the config declares group_size 128", or, without the key, that AutoGPTQ's default of -1 applies. */
static void declared_group_size_text(const linear_check *check, char *out, size_t size)
{
    if (check->config->declared & QREF_GPTQ_KEY_GROUP_SIZE)
        snprintf(out, size, "the config declares group_size %ld", check->config->group_size);
    else
        snprintf(out, size, "the config sets no group_size, so AutoGPTQ's default of %ld applies",
                 check->config->group_size);
}

/* Writes "the config declares 4 bits", or, without a bits key, that AutoGPTQ's default of 4 applies. */
static void declared_bits_text(const linear_check *check, char *out, size_t size)
{
    if (check->config->declared & QREF_GPTQ_KEY_BITS)
        snprintf(out, size, "the config declares %d bits", check->layout.bits);
    else
        snprintf(out, size, "the config sets no bits, so AutoGPTQ's default of %d applies", check->layout.bits);
}

static void check_qweight(linear_check *check)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_tensor *qweight = check->linear->qweight;
    char expected[64];
    snprintf(expected, sizeof expected, "%s (pack_dtype %s)", qref_dtype_name(layout->word_dtype),
             qref_gptq_pack_dtype_name(layout->word_bits));
    if (!check_presence(check, qweight, "qweight", &layout->word_dtype, 1, expected))
        return;

    char why[256], hint[160];
    snprintf(why, sizeof why, "%d-bit packing of %lld input features by %lld output features", layout->bits,
             (long long)layout->in_features, (long long)layout->out_features);
    const char *id = "gptq.shape", *hint_text = NULL;
    if (qweight->ndim == 2 && qweight->shape[1] == layout->out_features && qweight->shape[0] != layout->qweight_rows) {
        int stored_bits = other_bits_matching(layout, layout->in_features, qweight->shape[0]);
        if (stored_bits != 0) {
            char declared[96];
            declared_bits_text(check, declared, sizeof declared);
            snprintf(hint, sizeof hint, "the row count matches %d-bit codes but %s", stored_bits, declared);
            id = "gptq.bits_mismatch";
            hint_text = hint;
        }
    }
    check->qweight_ok = check_shape(check, qweight, "qweight", id, 2, layout->qweight_rows, layout->out_features, why,
                                    hint_text);
}

static void check_qzeros(linear_check *check)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_tensor *qzeros = check->linear->qzeros;
    char expected[64];
    snprintf(expected, sizeof expected, "%s (pack_dtype %s)", qref_dtype_name(layout->word_dtype),
             qref_gptq_pack_dtype_name(layout->word_bits));
    if (!check_presence(check, qzeros, "qzeros", &layout->word_dtype, 1, expected))
        return;

    char why[256], hint[200], group_size[48];
    snprintf(why, sizeof why, "%lld group%s by %d-bit zero points of %lld output features", (long long)layout->groups,
             layout->groups == 1 ? "" : "s", layout->bits, (long long)layout->out_features);
    const char *id = "gptq.shape", *hint_text = NULL;
    if (qzeros->ndim == 2 && qzeros->shape[0] == layout->groups && qzeros->shape[1] != layout->qzeros_cols) {
        int stored_bits = other_bits_matching(layout, layout->out_features, qzeros->shape[1]);
        if (stored_bits != 0) {
            char declared[96];
            declared_bits_text(check, declared, sizeof declared);
            snprintf(hint, sizeof hint, "the column count matches %d-bit zero points but %s", stored_bits, declared);
            id = "gptq.bits_mismatch";
            hint_text = hint;
        }
    } else if (qzeros->ndim == 2 && qzeros->shape[1] == layout->qzeros_cols &&
               other_group_size_matching(layout, qzeros->shape[0], group_size, sizeof group_size)) {
        char declared[96];
        declared_group_size_text(check, declared, sizeof declared);
        snprintf(hint, sizeof hint, "%lld rows are the groups of group_size %s, but %s", (long long)qzeros->shape[0],
                 group_size, declared);
        id = "gptq.group_size_mismatch";
        hint_text = hint;
    }
    check->qzeros_ok = check_shape(check, qzeros, "qzeros", id, 2, layout->groups, layout->qzeros_cols, why,
                                   hint_text);
}

static void check_scales(linear_check *check)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_tensor *scales = check->linear->scales;
    static const qref_dtype scale_dtypes[] = {QREF_DTYPE_F16, QREF_DTYPE_BF16, QREF_DTYPE_F32};
    if (!check_presence(check, scales, "scales", scale_dtypes, 3, "F16 (or BF16, F32)"))
        return;

    char why[256], hint[200], group_size[48];
    snprintf(why, sizeof why, "%lld group%s by %lld output features", (long long)layout->groups,
             layout->groups == 1 ? "" : "s", (long long)layout->out_features);
    const char *id = "gptq.shape", *hint_text = NULL;
    if (scales->ndim == 2 && scales->shape[1] == layout->out_features &&
        other_group_size_matching(layout, scales->shape[0], group_size, sizeof group_size)) {
        char declared[96];
        declared_group_size_text(check, declared, sizeof declared);
        snprintf(hint, sizeof hint, "%lld rows are the groups of group_size %s, but %s", (long long)scales->shape[0],
                 group_size, declared);
        id = "gptq.group_size_mismatch";
        hint_text = hint;
    }
    check->scales_ok = check_shape(check, scales, "scales", id, 2, layout->groups, layout->out_features, why,
                                   hint_text);
}

static void check_g_idx_tensor(linear_check *check)
{
    const qref_gptq_linear *linear = check->linear;
    const qref_gptq_config *config = check->config;
    check->groups_ok = true;
    if (linear->g_idx == NULL) {
        /* GPTQ-for-LLaMa era files have no g_idx and mean i / G; act-order cannot be stored so. */
        if ((config->declared & QREF_GPTQ_KEY_DESC_ACT) && config->desc_act && !config->static_groups) {
            char label[512], message[QREF_ERROR_MESSAGE_MAX];
            qref_gptq_tensor_label(NULL, linear->prefix, "g_idx", label, sizeof label);
            snprintf(message, sizeof message, "%s: missing, expected a tensor of dtype I32 with %lld group indices, "
                     "because the config declares desc_act true without static_groups", label,
                     (long long)check->layout.in_features);
            add_finding(check, "gptq.missing", QREF_SEVERITY_ERROR, NULL, "g_idx", message);
        }
        return;
    }
    static const qref_dtype index_dtype = QREF_DTYPE_I32;
    check->groups_ok = false;
    if (!check_presence(check, linear->g_idx, "g_idx", &index_dtype, 1, "I32"))
        return;
    check->g_idx_ok = check_shape(check, linear->g_idx, "g_idx", "gptq.shape", 1, check->layout.in_features, 0,
                                  "one group index per input feature", NULL);
    check->groups_ok = check->g_idx_ok;
}

/* ---- values -------------------------------------------------------------------------------- */

/*
 * Checks that the bits after the last of count elements of each bit stream are zero. There
 * are stream_count streams, stream_step bytes apart, each of words words that lie word_step
 * bytes apart. Padding is shorter than one word, so it lies in the last word only.
 */
static void check_padding(linear_check *check, const qref_tensor *tensor, const char *role, int64_t count,
                          int64_t words, int64_t stream_count, size_t stream_step, size_t word_step, bool by_column)
{
    const qref_gptq_layout *layout = &check->layout;
    const unsigned word_bits = (unsigned)layout->word_bits;
    const uint64_t used = (uint64_t)count * (uint64_t)layout->bits - (uint64_t)(words - 1) * word_bits;
    if (used == word_bits)
        return;
    const uint64_t word_mask = word_bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << word_bits) - 1;
    const uint64_t padding_mask = (word_mask << used) & word_mask;

    problem_tally tally = {0};
    for (int64_t s = 0; s < stream_count; s++) {
        const uint8_t *last = tensor->data + (size_t)s * stream_step + (size_t)(words - 1) * word_step;
        uint64_t word = qref_gptq_word_load(last, layout->word_bytes);
        if ((word & padding_mask) != 0) {
            if (tally.count == 0)
                tally.word = word;
            tally_record(&tally, by_column ? words - 1 : s, by_column ? s : words - 1, 0.0);
        }
    }
    if (tally.count == 0)
        return;
    char label[512], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(tensor, check->linear->prefix, role, label, sizeof label);
    const int digits = layout->word_bytes * 2;
    snprintf(message, sizeof message,
             "%s: word [%lld][%lld] is 0x%0*llx, but its bits %u..%u follow the last of %lld %d-bit %s and must be "
             "zero (padding bits 0x%0*llx are set); %llu of %lld %s have padding bits set",
             label, (long long)tally.row, (long long)tally.col, digits, (unsigned long long)tally.word, (unsigned)used,
             word_bits - 1, (long long)count, layout->bits, by_column ? "codes" : "zero points", digits,
             (unsigned long long)(tally.word & padding_mask), (unsigned long long)tally.count,
             (long long)stream_count, by_column ? "columns" : "rows");
    add_finding(check, "gptq.padding", QREF_SEVERITY_ERROR, tensor, role, message);
}

/* Group i / G is what the config expects without act-order or with static groups. */
static void check_g_idx_order(linear_check *check, const int32_t *g_idx)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_gptq_config *config = check->config;
    const qref_tensor *tensor = check->linear->g_idx;
    bool declared = (config->declared & QREF_GPTQ_KEY_DESC_ACT) != 0;
    bool monotone_expected = (declared && !config->desc_act) || config->static_groups;
    bool permuted_expected = declared && config->desc_act && !config->static_groups && layout->groups > 1;

    int64_t first = -1;
    for (int64_t i = 0; i < layout->in_features && first < 0; i++)
        if (g_idx[i] != i / layout->group_size)
            first = i;

    char label[512], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(tensor, check->linear->prefix, "g_idx", label, sizeof label);
    if (monotone_expected && first >= 0) {
        snprintf(message, sizeof message,
                 "%s: value %d at [%lld], expected %lld = %lld / group size %lld because the config declares %s; "
                 "g_idx is an act-order permutation, which kernels that trust the config (ExLlama, Marlin) ignore. "
                 "expected g_idx[i] = i / group size, or desc_act true without static_groups",
                 label, g_idx[first], (long long)first, (long long)(first / layout->group_size), (long long)first,
                 (long long)layout->group_size,
                 config->static_groups ? "static_groups true (which keeps the original order)" : "desc_act false");
        add_finding(check, "gptq.desc_act_mismatch", QREF_SEVERITY_WARNING, tensor, "g_idx", message);
    } else if (permuted_expected && first < 0) {
        snprintf(message, sizeof message,
                 "%s: every value is i / group size %lld (monotone), but the config declares desc_act true without "
                 "static_groups, which orders the %lld groups by activation; expected a permuted g_idx, or desc_act "
                 "false",
                 label, (long long)layout->group_size, (long long)layout->groups);
        add_finding(check, "gptq.desc_act_mismatch", QREF_SEVERITY_WARNING, tensor, "g_idx", message);
    }
}

/* Range of every group index, then the size of every group, then the order against desc_act. */
static void check_g_idx_values(linear_check *check)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_tensor *tensor = check->linear->g_idx;
    int32_t *g_idx = malloc((size_t)layout->in_features * sizeof *g_idx);
    int64_t *counts = calloc((size_t)layout->groups, sizeof *counts);
    if (g_idx == NULL || counts == NULL) {
        free(g_idx);
        free(counts);
        check->findings->dropped++;
        check->groups_ok = false;
        return;
    }
    char label[512], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(tensor, check->linear->prefix, "g_idx", label, sizeof label);

    problem_tally range = {0};
    for (int64_t i = 0; i < layout->in_features; i++) {
        g_idx[i] = (int32_t)qref_load_u32(tensor->data + 4 * i);
        if (g_idx[i] < 0 || g_idx[i] >= layout->groups)
            tally_record(&range, i, 0, g_idx[i]);
        else
            counts[g_idx[i]]++;
    }
    if (range.count > 0) {
        snprintf(message, sizeof message, "%s: value %d at [%lld], expected a group in 0..%lld; %llu of %lld entries "
                 "are out of range", label, (int)range.value, (long long)range.row, (long long)layout->groups - 1,
                 (unsigned long long)range.count, (long long)layout->in_features);
        add_finding(check, "gptq.g_idx.out_of_range", QREF_SEVERITY_ERROR, tensor, "g_idx", message);
        check->groups_ok = false;
    }

    problem_tally sizes = {0};
    int64_t expected_size = 0;
    for (int64_t g = 0; range.count == 0 && g < layout->groups; g++) {
        int64_t expected = g + 1 < layout->groups ? layout->group_size : layout->in_features - g * layout->group_size;
        if (counts[g] != expected) {
            if (sizes.count == 0)
                expected_size = expected;
            tally_record(&sizes, g, 0, (double)counts[g]);
        }
    }
    if (sizes.count > 0) {
        snprintf(message, sizeof message, "%s: group %lld holds %lld input features, expected %lld (group size %lld); "
                 "%llu of %lld groups have another size", label, (long long)sizes.row, (long long)sizes.value,
                 (long long)expected_size, (long long)layout->group_size, (unsigned long long)sizes.count,
                 (long long)layout->groups);
        add_finding(check, "gptq.g_idx.group_size", QREF_SEVERITY_ERROR, tensor, "g_idx", message);
    }
    if (range.count == 0 && sizes.count == 0)
        check_g_idx_order(check, g_idx);
    free(g_idx);
    free(counts);
}

/* True when the bits of word from shift up are all ones: the trace AutoGPTQ's pack() leaves
 * when it ORs in a zero point of 0 stored as -1 (an unsigned word of all ones) << shift. */
static bool underflow_trace(uint64_t word, unsigned shift, int word_bits)
{
    uint64_t word_mask = word_bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << word_bits) - 1;
    uint64_t high = (word_mask << shift) & word_mask;
    return (word & high) == high;
}

static void report_zero_fields(linear_check *check, const problem_tally *underflow, const problem_tally *out_of_range)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_tensor *tensor = check->linear->qzeros;
    const int digits = layout->word_bytes * 2;
    const int64_t total = layout->groups * layout->out_features;
    char label[512], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(tensor, check->linear->prefix, "qzeros", label, sizeof label);
    if (underflow->count > 0) {
        snprintf(message, sizeof message,
                 "%s: v1 zero-point underflow at [%lld][%lld]: stored field %u (all ones) decodes to zero point %u, "
                 "outside 0..%u; its word 0x%0*llx has every bit from that field up set, the trace of AutoGPTQ's "
                 "pack() storing zero point 0 minus one as -1; %llu of %lld zero points are affected. Hint: such data "
                 "needs checkpoint_format gptq_v2, or the checkpoint is gptq_v2 labelled gptq",
                 label, (long long)underflow->row, (long long)underflow->col, underflow->field, underflow->field + 1,
                 layout->mask, digits, (unsigned long long)underflow->word, (unsigned long long)underflow->count,
                 (long long)total);
        add_finding(check, "gptq.zero_point.v1_underflow", QREF_SEVERITY_ERROR, tensor, "qzeros", message);
    }
    if (out_of_range->count > 0) {
        snprintf(message, sizeof message,
                 "%s: zero point %u at [%lld][%lld] (stored field %u, all ones, format gptq) is outside 0..%u, "
                 "expected a stored field in 0..%u; its word 0x%0*llx does not have every higher bit set, so this is "
                 "not AutoGPTQ's underflow trace; %llu of %lld zero points are affected",
                 label, out_of_range->field + 1, (long long)out_of_range->row, (long long)out_of_range->col,
                 out_of_range->field, layout->mask, layout->mask - 1, digits, (unsigned long long)out_of_range->word,
                 (unsigned long long)out_of_range->count, (long long)total);
        add_finding(check, "gptq.zero_point.out_of_range", QREF_SEVERITY_ERROR, tensor, "qzeros", message);
    }
}

/* Zero points: v1 fields of all ones (underflow or out of range), and 2^(b-1) under sym. */
static void check_zero_values(linear_check *check)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_gptq_config *config = check->config;
    const qref_tensor *tensor = check->linear->qzeros;
    const bool v1 = config->format == QREF_GPTQ_FORMAT_V1;
    const unsigned sym_zero = 1u << (layout->bits - 1);
    const unsigned other_encoding = v1 ? sym_zero + 1 : sym_zero - 1;  /* the other format's sym zero, read so */
    const int word_bytes = layout->word_bytes;
    const size_t row_bytes = (size_t)layout->qzeros_cols * (size_t)word_bytes;

    problem_tally underflow = {0}, out_of_range = {0}, sym = {0};
    uint64_t other_format = 0, checked = 0;
    for (int64_t g = 0; g < layout->groups; g++) {
        const uint8_t *row = tensor->data + (size_t)g * row_bytes;
        for (int64_t o = 0; o < layout->out_features; o++) {
            unsigned field = qref_gptq_field_get(row, (size_t)word_bytes, (uint64_t)o, layout->bits, word_bytes);
            if (v1 && field == layout->mask) {
                uint64_t bit = (uint64_t)layout->bits * (uint64_t)o;
                uint64_t word = qref_gptq_word_load(row + (bit / (uint64_t)layout->word_bits) * (size_t)word_bytes,
                                                    word_bytes);
                problem_tally *tally = underflow_trace(word, (unsigned)(bit % (uint64_t)layout->word_bits),
                                                       layout->word_bits)
                                           ? &underflow
                                           : &out_of_range;
                if (tally->count == 0) {
                    tally->word = word;
                    tally->field = field;
                }
                tally_record(tally, g, o, field);
                continue;
            }
            unsigned zero = v1 ? field + 1 : field;
            checked++;
            other_format += zero == other_encoding;
            if (config->sym && zero != sym_zero) {
                if (sym.count == 0)
                    sym.field = field;
                tally_record(&sym, g, o, zero);
            }
        }
    }
    report_zero_fields(check, &underflow, &out_of_range);

    /* Every zero point in the other format's encoding is a mislabelled format, which
     * qref_gptq_format_check reports for the whole artifact. */
    if (sym.count == 0 || (other_format == checked && underflow.count + out_of_range.count == 0))
        return;
    const char *hint = "";
    if (!v1 && sym.field == sym_zero - 1)
        hint = "; the stored field equals the v1 encoding, so the checkpoint may be v1 read as gptq_v2";
    else if (v1 && sym.field == sym_zero)
        hint = "; the stored field equals the v2 encoding, so the checkpoint may be gptq_v2 read as v1";
    char label[512], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(tensor, check->linear->prefix, "qzeros", label, sizeof label);
    snprintf(message, sizeof message,
             "%s: zero point %u at [%lld][%lld] (stored field %u, format %s), expected %u for sym=true; %llu of %llu "
             "zero points differ%s",
             label, (unsigned)sym.value, (long long)sym.row, (long long)sym.col, sym.field,
             qref_gptq_format_name(config->format), sym_zero, (unsigned long long)sym.count,
             (unsigned long long)checked, hint);
    add_finding(check, "gptq.sym_mismatch", QREF_SEVERITY_ERROR, tensor, "qzeros", message);
}

static void report_scale_tally(linear_check *check, const char *id, const problem_tally *tally,
                               const char *condition)
{
    if (tally->count == 0)
        return;
    const qref_tensor *tensor = check->linear->scales;
    char label[512], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(tensor, check->linear->prefix, "scales", label, sizeof label);
    snprintf(message, sizeof message, "%s: scale %g at [%lld][%lld], expected a finite value > 0; %llu of %lld scales "
             "are %s", label, tally->value, (long long)tally->row, (long long)tally->col,
             (unsigned long long)tally->count, (long long)(check->layout.groups * check->layout.out_features),
             condition);
    add_finding(check, id, QREF_SEVERITY_ERROR, tensor, "scales", message);
}

static void check_scale_values(linear_check *check)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_tensor *scales = check->linear->scales;
    problem_tally non_finite = {0}, zero = {0}, negative = {0};
    for (int64_t g = 0; g < layout->groups; g++) {
        for (int64_t o = 0; o < layout->out_features; o++) {
            float scale = qref_gptq_scale_load(scales->dtype, scales->data, (uint64_t)(g * layout->out_features + o));
            if (!isfinite(scale))
                tally_record(&non_finite, g, o, scale);
            else if (scale == 0.0f)
                tally_record(&zero, g, o, scale);
            else if (scale < 0.0f)
                tally_record(&negative, g, o, scale);
        }
    }
    report_scale_tally(check, "gptq.scale.non_finite", &non_finite, "not finite");
    report_scale_tally(check, "gptq.scale.zero", &zero, "zero");
    report_scale_tally(check, "gptq.scale.negative", &negative, "negative");
}

/* scale * steps as the format computes it: rounded once to the scale's dtype. */
static float product_in_scale_dtype(qref_dtype dtype, float scale, float steps)
{
    float product = scale * steps;
    if (dtype == QREF_DTYPE_F16)
        return qref_f16_to_f32(qref_f32_to_f16(product));
    if (dtype == QREF_DTYPE_BF16)
        return qref_bf16_to_f32(qref_f32_to_bf16(product));
    return product;
}

/*
 * Weights beyond the f16 range, for F16 scales: the product of the integer codes and the
 * scales has the scales' dtype, so BF16 and F32 scales compute in a wider range. A group
 * whose largest possible step count, max(z, mask - z), times its scale stays within 65504
 * cannot overflow, so only the codes of the other groups are read.
 */
static void check_overflow(linear_check *check)
{
    const qref_gptq_layout *layout = &check->layout;
    const qref_gptq_linear *linear = check->linear;
    const qref_tensor *scales = linear->scales;
    const bool v1 = check->config->format == QREF_GPTQ_FORMAT_V1;
    const int64_t groups = layout->groups, out = layout->out_features, in = layout->in_features;
    const int word_bytes = layout->word_bytes;
    const size_t zero_row_bytes = (size_t)layout->qzeros_cols * (size_t)word_bytes;

    /* Step 1: the groups whose bound exceeds the f16 range. */
    uint8_t *risky = NULL;
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t o = 0; o < out; o++) {
            float scale = qref_gptq_scale_load(scales->dtype, scales->data, (uint64_t)(g * out + o));
            unsigned field = qref_gptq_field_get(linear->qzeros->data + (size_t)g * zero_row_bytes, (size_t)word_bytes,
                                                 (uint64_t)o, layout->bits, word_bytes);
            int zero = (int)(v1 ? field + 1 : field);
            int steps = zero > (int)layout->mask - zero ? zero : (int)layout->mask - zero;
            float bound = product_in_scale_dtype(scales->dtype, fabsf(scale), (float)steps);
            if (!isfinite(scale) || fabsf(bound) <= GPTQ_F16_MAX)
                continue;
            if (risky == NULL && (risky = calloc((size_t)(groups * out), 1)) == NULL) {
                check->findings->dropped++;
                return;
            }
            risky[g * out + o] = 1;
        }
    }
    if (risky == NULL)
        return;

    /* Step 2: the weights of those groups, as qref_gptq_codes_dequantize computes them. */
    problem_tally overflow = {0};
    unsigned first_code = 0, first_zero = 0;
    float first_scale = 0.0f;
    const size_t step = (size_t)out * (size_t)word_bytes;
    for (int64_t o = 0; o < out; o++) {
        for (int64_t i = 0; i < in; i++) {
            int64_t g = linear->g_idx != NULL ? (int32_t)qref_load_u32(linear->g_idx->data + 4 * i)
                                              : i / layout->group_size;
            if (!risky[g * out + o])
                continue;
            float scale = qref_gptq_scale_load(scales->dtype, scales->data, (uint64_t)(g * out + o));
            unsigned field = qref_gptq_field_get(linear->qzeros->data + (size_t)g * zero_row_bytes, (size_t)word_bytes,
                                                 (uint64_t)o, layout->bits, word_bytes);
            unsigned zero = v1 ? field + 1 : field;
            unsigned code = qref_gptq_field_get(linear->qweight->data + o * word_bytes, step, (uint64_t)i,
                                                layout->bits, word_bytes);
            float weight = product_in_scale_dtype(scales->dtype, scale, (float)((int)code - (int)zero));
            if (fabsf(weight) <= GPTQ_F16_MAX)
                continue;
            if (overflow.count == 0) {
                first_code = code;
                first_zero = zero;
                first_scale = scale;
            }
            tally_record(&overflow, o, i, weight);
        }
    }
    free(risky);
    if (overflow.count == 0)
        return;
    char label[512], message[QREF_ERROR_MESSAGE_MAX];
    qref_gptq_tensor_label(scales, linear->prefix, "scales", label, sizeof label);
    snprintf(message, sizeof message,
             "%s: dequantized weight [%lld][%lld] = scale %g * (code %u - zero point %u) is %g in %s, expected "
             "|w| <= 65504 (the f16 range AutoGPTQ and GPTQModel compute in); %llu weights overflow",
             label, (long long)overflow.row, (long long)overflow.col, (double)first_scale, first_code, first_zero,
             overflow.value, qref_dtype_name(scales->dtype), (unsigned long long)overflow.count);
    add_finding(check, "dequant.fp16_overflow", QREF_SEVERITY_ERROR, scales, "scales", message);
}

/* ---- the check ---------------------------------------------------------------------------- */

qref_status qref_gptq_check_findings(const qref_gptq_linear *linear, const qref_gptq_config *config,
                                     qref_findings *findings, qref_error *err)
{
    linear_check check = {.linear = linear, .config = config, .findings = findings};
    const size_t dropped = findings->dropped;

    /* Step 1: the shape facts implied by the config and the expected features. */
    qref_error layout_err = {0};
    qref_status status = QREF_OK;
    if (config->group_size != -1 && config->group_size <= 0)
        status = qref_error_set(&layout_err, QREF_ERR_INVALID, "%s: group_size %ld, expected -1 or a positive number",
                                qref_gptq_prefix_name(linear->prefix), config->group_size);
    if (status == QREF_OK)
        status = qref_gptq_layout_init(linear->prefix, config->bits, config->pack_bits, linear->in_features,
                                       linear->out_features, qref_gptq_group_size(config, linear->in_features),
                                       &check.layout, &layout_err);
    if (status != QREF_OK) {
        qref_findings_add_error(findings, "gptq.shape", qref_gptq_prefix_name(linear->prefix), &layout_err);
        return QREF_OK;
    }

    /* Step 2: presence, dtypes and shapes of the four tensors. */
    check_qweight(&check);
    check_qzeros(&check);
    check_scales(&check);
    check_g_idx_tensor(&check);

    /* Step 3: padding bits after the last code of each qweight column and the last zero
     * point of each qzeros row. */
    const qref_gptq_layout *layout = &check.layout;
    const size_t word_bytes = (size_t)layout->word_bytes;
    if (check.qweight_ok)
        check_padding(&check, linear->qweight, "qweight", layout->in_features, layout->qweight_rows,
                      layout->out_features, word_bytes, (size_t)layout->out_features * word_bytes, true);
    if (check.qzeros_ok)
        check_padding(&check, linear->qzeros, "qzeros", layout->out_features, layout->qzeros_cols, layout->groups,
                      (size_t)layout->qzeros_cols * word_bytes, word_bytes, false);

    /* Step 4: values: group indices, zero points, scales, then the weights they give. */
    if (check.g_idx_ok)
        check_g_idx_values(&check);
    if (check.qzeros_ok)
        check_zero_values(&check);
    if (check.scales_ok)
        check_scale_values(&check);
    if (check.qweight_ok && check.qzeros_ok && check.scales_ok && check.groups_ok &&
        linear->scales->dtype == QREF_DTYPE_F16)
        check_overflow(&check);

    if (findings->dropped != dropped)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory while checking the linear",
                              qref_gptq_prefix_name(linear->prefix));
    return QREF_OK;
}

qref_status qref_gptq_check_linear(const qref_gptq_linear *linear, const qref_gptq_config *config, qref_error *err)
{
    qref_findings findings = {0};
    qref_status status = qref_gptq_check_findings(linear, config, &findings, err);
    for (size_t i = 0; status == QREF_OK && i < findings.count; i++) {
        if (findings.items[i].severity == QREF_SEVERITY_ERROR)
            status = qref_error_set(err, QREF_ERR_INVALID, "%s", findings.items[i].message);
    }
    if (status == QREF_OK && findings.dropped > 0)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory while checking the linear",
                                qref_gptq_prefix_name(linear->prefix));
    qref_findings_free(&findings);
    return status;
}

/* ---- v1 or v2: zero-point statistics -------------------------------------------------------- */

void qref_gptq_format_stats_init(qref_gptq_format_stats *stats, const qref_gptq_config *config)
{
    memset(stats, 0, sizeof *stats);
    stats->bits = config->bits;
    stats->format = config->format;
}

qref_status qref_gptq_format_stats_add(qref_gptq_format_stats *stats, const qref_gptq_linear *linear,
                                       const qref_gptq_config *config, qref_error *err)
{
    qref_status status = qref_gptq_check_linear(linear, config, err);
    if (status != QREF_OK)
        return status;
    qref_gptq_layout layout;
    status = qref_gptq_layout_init(linear->prefix, config->bits, config->pack_bits, linear->in_features,
                                   linear->out_features, qref_gptq_group_size(config, linear->in_features), &layout,
                                   err);
    if (status != QREF_OK)
        return status;
    const int64_t groups = layout.groups, out = layout.out_features, in = layout.in_features;
    const int word_bytes = layout.word_bytes;
    const size_t zero_row_bytes = (size_t)layout.qzeros_cols * (size_t)word_bytes;
    const bool v1 = config->format == QREF_GPTQ_FORMAT_V1;
    const unsigned sym_zero = 1u << (layout.bits - 1);

    double *code_sums = calloc((size_t)groups, sizeof *code_sums);
    int64_t *code_counts = calloc((size_t)groups, sizeof *code_counts);
    int32_t *g_idx = malloc((size_t)in * sizeof *g_idx);
    if (code_sums == NULL || code_counts == NULL || g_idx == NULL) {
        free(code_sums);
        free(code_counts);
        free(g_idx);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate the group sums",
                              qref_gptq_prefix_name(linear->prefix));
    }
    for (int64_t i = 0; i < in; i++)
        g_idx[i] = linear->g_idx != NULL ? (int32_t)qref_load_u32(linear->g_idx->data + 4 * i)
                                         : (int32_t)(i / layout.group_size);

    /* Step 1: zero offset over every zero point, in steps from the middle of the code range. */
    double zero_sum = 0.0;
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t o = 0; o < out; o++) {
            unsigned field = qref_gptq_field_get(linear->qzeros->data + (size_t)g * zero_row_bytes, (size_t)word_bytes,
                                                 (uint64_t)o, layout.bits, word_bytes);
            unsigned zero = v1 ? field + 1 : field;
            zero_sum += zero;
            for (int k = 0; k < 3; k++)
                stats->at_sym_zero[k] += zero + 1 == sym_zero + (unsigned)k;
        }
    }
    double zero_offset = zero_sum / (double)(groups * out) - (double)layout.mask / 2.0;

    /* Step 2: code offset over evenly spaced output rows: per (row, group), the mean code of
     * the group's features minus its zero point. */
    const int64_t rows = out < QREF_GPTQ_FORMAT_ROWS ? out : QREF_GPTQ_FORMAT_ROWS;
    const size_t step = (size_t)out * (size_t)word_bytes;
    double code_offset_sum = 0.0;
    int64_t terms = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t o = r * out / rows;
        memset(code_sums, 0, (size_t)groups * sizeof *code_sums);
        memset(code_counts, 0, (size_t)groups * sizeof *code_counts);
        for (int64_t i = 0; i < in; i++) {
            code_sums[g_idx[i]] += qref_gptq_field_get(linear->qweight->data + o * word_bytes, step, (uint64_t)i,
                                                       layout.bits, word_bytes);
            code_counts[g_idx[i]]++;
        }
        for (int64_t g = 0; g < groups; g++) {
            unsigned field = qref_gptq_field_get(linear->qzeros->data + (size_t)g * zero_row_bytes, (size_t)word_bytes,
                                                 (uint64_t)o, layout.bits, word_bytes);
            double zero = v1 ? field + 1.0 : field;
            code_offset_sum += code_sums[g] / (double)code_counts[g] - zero;
            terms++;
        }
    }
    double code_offset = code_offset_sum / (double)terms;
    free(code_sums);
    free(code_counts);
    free(g_idx);

    /* Step 3: per-linear sums, for the mean and the spread between linears. */
    stats->linears++;
    stats->zero_points += (uint64_t)(groups * out);
    stats->zero_offset_sum += zero_offset;
    stats->zero_offset_sumsq += zero_offset * zero_offset;
    stats->code_offset_sum += code_offset;
    stats->code_offset_sumsq += code_offset * code_offset;
    return QREF_OK;
}

void qref_gptq_format_check(const qref_gptq_format_stats *stats, qref_findings *findings)
{
    if (stats->linears == 0 || stats->zero_points == 0)
        return;
    const bool v2 = stats->format == QREF_GPTQ_FORMAT_V2;
    const char *declared = qref_gptq_format_name(stats->format);
    const char *other = qref_gptq_format_name(v2 ? QREF_GPTQ_FORMAT_V1 : QREF_GPTQ_FORMAT_V2);
    const unsigned sym_zero = 1u << (stats->bits - 1);

    /* Step 1: symmetric files have one zero point, so their fingerprint is exact. */
    const uint64_t fingerprint = stats->at_sym_zero[v2 ? 0 : 2];
    if (fingerprint == stats->zero_points) {
        unsigned read = v2 ? sym_zero - 1 : sym_zero + 1;
        qref_findings_add(findings, "gptq.format_mismatch", QREF_SEVERITY_ERROR, "",
                          "all %llu zero points read as %u in checkpoint_format %s (stored field %u), which is the %s "
                          "encoding of the symmetric %d-bit zero point %u, expected %u; read as %s every weight is one "
                          "scale step off. Hint: re-label checkpoint_format as \"%s\"",
                          (unsigned long long)stats->zero_points, read, declared, v2 ? read : read - 1, other,
                          stats->bits, sym_zero, sym_zero, declared, other);
        return;
    }
    if (stats->at_sym_zero[1] == stats->zero_points)
        return;

    /* Step 2: the offsets, signed so that +1 is one step towards the other format. */
    const double linears = (double)stats->linears;
    const double code_mean = stats->code_offset_sum / linears, zero_mean = stats->zero_offset_sum / linears;
    double code_error = INFINITY;
    if (stats->linears >= 2) {
        double variance = (stats->code_offset_sumsq - linears * code_mean * code_mean) / (linears - 1.0);
        code_error = sqrt((variance > 0.0 ? variance : 0.0) / linears);
    }
    const double towards_code = v2 ? code_mean : -code_mean;
    const double towards_zero = v2 ? -zero_mean : zero_mean;
    const bool clear = stats->linears >= 2 && towards_code >= 0.5 && towards_code <= 1.5 &&
                       towards_code >= QREF_GPTQ_FORMAT_CLEAR_SIGMAS * code_error && towards_zero > 0.0;
    if (!clear && towards_code < 0.5)
        return;

    /* Step 3: the finding, with both statistics and what each format predicts. */
    qref_findings_add(findings, "gptq.format_mismatch", clear ? QREF_SEVERITY_ERROR : QREF_SEVERITY_WARNING, "",
                      "%s: read as checkpoint_format %s, the mean code minus zero point per group is %+.3f steps "
                      "(standard error %.3f over %zu linears), expected about 0 for weights centred near zero and "
                      "%+d if the checkpoint were %s; the mean zero point is %+.3f steps from the middle of the %d-bit "
                      "range (expected about 0, or %+d for %s). %s. Hint: re-label checkpoint_format as \"%s\"",
                      clear ? "zero points one step off" : "weak evidence of zero points one step off", declared,
                      code_mean, code_error, stats->linears, v2 ? 1 : -1, other, zero_mean, stats->bits,
                      v2 ? -1 : 1, other,
                      clear ? "Every weight would be one scale step off"
                            : "The evidence is weak (the offset is not about one step, is within "
                              "five standard errors of 0, rests on one linear, or the zero points disagree)",
                      other);
}
