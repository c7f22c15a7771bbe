/*
 * Fake-quantization detection (see qref_fakequant.h for the grid test, its tolerance and its
 * limits). The steps: per group, sort the distinct values and find the coarsest affine grid
 * that contains them; per linear, walk the group sizes 32, 64, ... and the whole row while the
 * bit width stays the smallest; per artifact, compare the linears with each other and with
 * what the config claims.
 */
#include "formats/qref_fakequant.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <omp.h>

const qref_finding_kind qref_fakequant_finding_kinds[] = {
    {"fakequant.linear", QREF_SEVERITY_INFO,
     "a float linear's values lie on a per-group quantization grid: its bits, group size and effective bits"},
    {"fakequant.none", QREF_SEVERITY_INFO, "no float linear lies on a quantization grid of at most 8 bits"},
    {"fakequant.partial", QREF_SEVERITY_WARNING,
     "some float linears are fake-quantized and others are full precision"},
    {"fakequant.mixed", QREF_SEVERITY_WARNING, "fake-quantized linears of one artifact differ in bits or group size"},
    {"fakequant.claim", QREF_SEVERITY_WARNING,
     "config.json claims a bit width (qconform member or _name_or_path) that the values contradict"},
    {NULL, QREF_SEVERITY_INFO, NULL},
};

/* ---- one group ------------------------------------------------------------------------------ */

/* Precision (significand bits, hidden bit included) and smallest normal exponent of a dtype. */
static bool storage_format(qref_dtype storage, int *precision, int *min_exponent)
{
    switch (storage) {
    case QREF_DTYPE_F32: *precision = 24; *min_exponent = -126; return true;
    case QREF_DTYPE_F16: *precision = 11; *min_exponent = -14; return true;
    case QREF_DTYPE_BF16: *precision = 8; *min_exponent = -126; return true;
    default: return false;
    }
}

/* Half a unit in the last place of the storage dtype at |v|, subnormals included. */
static double half_ulp(double v, int precision, int min_exponent)
{
    int exponent = min_exponent;
    if (v != 0.0) {
        int e;
        frexp(fabs(v), &e); /* |v| = m * 2^e, m in [0.5, 1): the binade is [2^(e-1), 2^e) */
        if (e - 1 > exponent)
            exponent = e - 1;
    }
    return ldexp(1.0, exponent - precision + 1) / 2.0;
}

static int compare_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/*
 * The grids (step s, offset c) that hold the values placed so far: a convex polygon in the
 * (s, c) plane, cut by two half-planes per placed value (c + s k >= v - tau and <= v + tau).
 */
typedef struct grid_region {
    double s[2 * QREF_FAKEQUANT_MAX_LEVELS + 8];
    double c[2 * QREF_FAKEQUANT_MAX_LEVELS + 8];
    int count;
} grid_region;

/* Keeps the part of the region where a s + b c >= d (Sutherland-Hodgman clipping). */
static void region_cut(grid_region *region, double a, double b, double d)
{
    double s_out[2 * QREF_FAKEQUANT_MAX_LEVELS + 8], c_out[2 * QREF_FAKEQUANT_MAX_LEVELS + 8];
    int n = 0;
    for (int i = 0; i < region->count; i++) {
        int j = (i + 1) % region->count;
        double fi = a * region->s[i] + b * region->c[i] - d;
        double fj = a * region->s[j] + b * region->c[j] - d;
        if (fi >= 0.0 && n < 2 * QREF_FAKEQUANT_MAX_LEVELS + 8) {
            s_out[n] = region->s[i];
            c_out[n++] = region->c[i];
        }
        if ((fi >= 0.0) != (fj >= 0.0) && n < 2 * QREF_FAKEQUANT_MAX_LEVELS + 8) {
            double t = fi / (fi - fj);
            s_out[n] = region->s[i] + t * (region->s[j] - region->s[i]);
            c_out[n++] = region->c[i] + t * (region->c[j] - region->c[i]);
        }
    }
    memcpy(region->s, s_out, (size_t)n * sizeof *s_out);
    memcpy(region->c, c_out, (size_t)n * sizeof *c_out);
    region->count = n;
}

/* Cuts the region to the grids that put value v (tolerance tau) on level k; false when none. */
static bool region_place(grid_region *region, double v, double tau, long k)
{
    region_cut(region, (double)k, 1.0, v - tau);
    region_cut(region, -(double)k, -1.0, -(v + tau));
    return region->count > 0;
}

/*
 * The levels k at which some grid of the region puts v within tau of a grid point: c + s k meets
 * [v - tau, v + tau] for some vertex on each side, so k runs from the smallest
 * (v - tau - c_j) / s_j to the largest (v + tau - c_j) / s_j over the vertices.
 */
static void region_levels(const grid_region *region, double v, double tau, long *first, long *last)
{
    double low = INFINITY, high = -INFINITY;
    for (int j = 0; j < region->count; j++) {
        low = fmin(low, (v - tau - region->c[j]) / region->s[j]);
        high = fmax(high, (v + tau - region->c[j]) / region->s[j]);
    }
    *first = low < -1e9 ? -1000000000L : (long)ceil(low);
    *last = high > 1e9 ? 1000000000L : (long)floor(high);
}

/*
 * Tests a grid of levels + 1 levels for the sorted distinct values v[0..m), with v[0] on level
 * 0 and v[m-1] on level `levels`. (A grid whose end levels have no value contains a smaller
 * grid, which was tried before.) The grids that put the extremes within their tolerances form
 * a parallelogram in (s, c), and each interior value narrows it, the most precise first (order
 * lists tau ascending). A value that fits exactly one level of the remaining grids goes there.
 * One that fits several is set aside until the others are placed, then takes the lowest level
 * that leaves the region non-empty. Levels rise strictly in value order, because distinct
 * stored values sit on distinct levels. The test is exact except for the greedy choice among
 * several levels.
 */
static bool grid_fits(const double *v, const double *tau, const size_t *order, size_t m, long levels)
{
    const double lo0 = v[0] - tau[0], hi0 = v[0] + tau[0];
    const double lo1 = v[m - 1] - tau[m - 1], hi1 = v[m - 1] + tau[m - 1];
    const double k_top = (double)levels;
    grid_region region = {
        .s = {(lo1 - lo0) / k_top, (hi1 - lo0) / k_top, (hi1 - hi0) / k_top, (lo1 - hi0) / k_top},
        .c = {lo0, lo0, hi0, hi0},
        .count = 4,
    };
    /* the step is positive: at least a millionth of the span over the levels */
    region_cut(&region, 1.0, 0.0, 1e-6 * (v[m - 1] - v[0]) / k_top);
    if (region.count == 0)
        return false;

    long level[QREF_FAKEQUANT_MAX_LEVELS];
    bool placed[QREF_FAKEQUANT_MAX_LEVELS] = {false};
    level[0] = 0;
    level[m - 1] = levels;
    placed[0] = placed[m - 1] = true;

    for (int pass = 0; pass < 2; pass++) {
        for (size_t j = 0; j < m; j++) {
            size_t i = order[j];
            if (placed[i])
                continue;
            /* levels strictly between the placed neighbours in value order */
            long below = 0, above = levels;
            for (size_t n = i; n-- > 0;)
                if (placed[n]) {
                    below = level[n];
                    break;
                }
            for (size_t n = i + 1; n < m; n++)
                if (placed[n]) {
                    above = level[n];
                    break;
                }
            long first, last;
            region_levels(&region, v[i], tau[i], &first, &last);
            if (first <= below)
                first = below + 1;
            if (last >= above)
                last = above - 1;
            if (first > last)
                return false;
            if (first < last && pass == 0)
                continue;
            grid_region saved = region;
            long chosen = first;
            while (!region_place(&region, v[i], tau[i], chosen)) {
                if (++chosen > last)
                    return false;
                region = saved;
            }
            level[i] = chosen;
            placed[i] = true;
        }
    }
    return true;
}

/* Orders value indices by tolerance, smallest first (ties by index, so the order is fixed). */
typedef struct tolerance_index {
    double tau;
    size_t index;
} tolerance_index;

static int compare_tolerance(const void *a, const void *b)
{
    const tolerance_index *x = a, *y = b;
    if (x->tau != y->tau)
        return (x->tau > y->tau) - (x->tau < y->tau);
    return (x->index > y->index) - (x->index < y->index);
}

int qref_fakequant_group_levels(const float *values, size_t count, qref_dtype storage, float *scratch)
{
    int precision, min_exponent;
    if (count == 0 || !storage_format(storage, &precision, &min_exponent))
        return 0;

    /* Step 1: the sorted distinct values; a value that is not finite lies on no grid. */
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(values[i]))
            return 0;
        scratch[i] = values[i];
    }
    qsort(scratch, count, sizeof *scratch, compare_float);
    size_t m = 1;
    for (size_t i = 1; i < count; i++)
        if (scratch[i] != scratch[m - 1])
            scratch[m++] = scratch[i];
    if (m <= 2)
        return (int)m; /* one or two values always lie on a grid of that many levels */
    if (m > QREF_FAKEQUANT_MAX_LEVELS)
        return 0;      /* distinct stored values are distinct levels */

    /* Step 2: tolerances, tau_i = ulp(v_i) / 2 + 2^-22 * max|v| (the header says why). */
    double v[QREF_FAKEQUANT_MAX_LEVELS], tau[QREF_FAKEQUANT_MAX_LEVELS];
    double magnitude = fmax(fabs((double)scratch[0]), fabs((double)scratch[m - 1]));
    for (size_t i = 0; i < m; i++) {
        v[i] = (double)scratch[i];
        tau[i] = half_ulp(v[i], precision, min_exponent) + ldexp(magnitude, -22);
    }

    /* Step 3: the smallest gap g is a multiple of the step s, so K >= (span - tau) / (g + tau). */
    double gap = v[1] - v[0], gap_tau = tau[0] + tau[1];
    for (size_t i = 1; i + 1 < m; i++) {
        if (v[i + 1] - v[i] < gap) {
            gap = v[i + 1] - v[i];
            gap_tau = tau[i] + tau[i + 1];
        }
    }
    double span = v[m - 1] - v[0];
    double bound = floor((span - tau[0] - tau[m - 1]) / (gap + gap_tau));
    long k_min = (long)m - 1;
    if (bound > (double)k_min)
        k_min = bound > (double)QREF_FAKEQUANT_MAX_LEVELS ? QREF_FAKEQUANT_MAX_LEVELS : (long)bound;

    /* Step 4: the coarsest grid that contains every value. */
    tolerance_index by_tolerance[QREF_FAKEQUANT_MAX_LEVELS];
    size_t order[QREF_FAKEQUANT_MAX_LEVELS];
    for (size_t i = 0; i < m; i++)
        by_tolerance[i] = (tolerance_index){tau[i], i};
    qsort(by_tolerance, m, sizeof *by_tolerance, compare_tolerance);
    for (size_t i = 0; i < m; i++)
        order[i] = by_tolerance[i].index;
    for (long k = k_min; k < QREF_FAKEQUANT_MAX_LEVELS; k++)
        if (grid_fits(v, tau, order, m, k))
            return (int)(k + 1);
    return 0;
}

/* ---- one linear ----------------------------------------------------------------------------- */

static int bits_for_levels(int levels)
{
    int bits = 1;
    while ((1 << bits) < levels)
        bits++;
    return bits;
}

/*
 * Most levels any group of group_size inputs spans, 0 when some group needs more than 256,
 * or -1 when memory runs out. Rows run in parallel; the maximum does not depend on the order.
 */
static int linear_group_levels(const qref_tensor *weight, int64_t rows, int64_t cols, int64_t group_size)
{
    const size_t row_bytes = (size_t)cols * qref_dtype_size(weight->dtype);
    int worst = 1;
    bool failed = false, out_of_memory = false;

#pragma omp parallel
    {
        float *row = malloc((size_t)cols * sizeof *row);
        float *scratch = malloc((size_t)group_size * sizeof *scratch);
        int local_worst = 1;
        bool local_failed = false;
        if (row == NULL || scratch == NULL) {
#pragma omp atomic write
            out_of_memory = true;
        }

#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++) {
            bool stop;
#pragma omp atomic read
            stop = failed;
            if (stop || row == NULL || scratch == NULL || local_failed)
                continue;
            qref_error ignored = {0};
            if (qref_convert_to_f32(weight->dtype, weight->data + (size_t)r * row_bytes, (size_t)cols, row,
                                    &ignored) != QREF_OK) {
                local_failed = true;
                continue;
            }
            for (int64_t start = 0; start < cols && !local_failed; start += group_size) {
                int levels = qref_fakequant_group_levels(row + start, (size_t)group_size, weight->dtype, scratch);
                if (levels == 0)
                    local_failed = true;
                else if (levels > local_worst)
                    local_worst = levels;
            }
            if (local_failed) {
#pragma omp atomic write
                failed = true;
            }
        }

#pragma omp critical(qref_fakequant_worst)
        if (local_worst > worst)
            worst = local_worst;
        free(row);
        free(scratch);
    }
    if (out_of_memory)
        return -1;
    return failed ? 0 : worst;
}

qref_status qref_fakequant_analyze_linear(const qref_tensor *weight, int64_t rows, int64_t cols,
                                          qref_fakequant_linear *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    char shape[96];
    qref_tensor_shape_string(weight, shape, sizeof shape);
    if (weight->ndim != 2 || weight->shape[0] != rows || weight->shape[1] != cols || rows <= 0 || cols <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: tensor \"%s\": shape %s, expected [%lld, %lld]", weight->file,
                              weight->name, shape, (long long)rows, (long long)cols);
    int precision, min_exponent;
    if (!storage_format(weight->dtype, &precision, &min_exponent))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: tensor \"%s\": dtype %s; fake-quantization is detected "
                              "in F32, F16 and BF16 weights only", weight->file, weight->name,
                              qref_dtype_name(weight->dtype));

    /* Step 1: group sizes 32, 64, ... dividing the row, then the whole row. */
    int64_t candidates[64];
    int candidate_count = 0;
    for (int64_t g = QREF_FAKEQUANT_MIN_GROUP; g < cols && candidate_count < 62; g *= 2)
        if (cols % g == 0)
            candidates[candidate_count++] = g;
    candidates[candidate_count++] = cols;

    /* Step 2: the fewest bits (the smallest group fits best), then the largest group keeping them. */
    for (int c = 0; c < candidate_count; c++) {
        int levels = linear_group_levels(weight, rows, cols, candidates[c]);
        if (levels < 0)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory analyzing %lld-wide rows", weight->name,
                                  (long long)cols);
        if (levels == 0)
            break;
        int bits = bits_for_levels(levels);
        if (out->quantized && bits != out->bits)
            break;
        out->quantized = true;
        out->bits = bits;
        out->levels = levels;
        out->group_size = candidates[c] == cols ? -1 : candidates[c];
    }
    if (out->quantized) {
        int64_t inputs = out->group_size == -1 ? cols : out->group_size;
        out->effective_bits = (double)out->bits + 32.0 / (double)inputs;
    }
    return QREF_OK;
}

void qref_fakequant_linear_describe(const qref_fakequant_linear *linear, int64_t cols, char *out, size_t size)
{
    if (!linear->quantized)
        snprintf(out, size, "not on a quantization grid of at most %d bits", QREF_FAKEQUANT_MAX_BITS);
    else if (linear->group_size == -1)
        snprintf(out, size, "%d-bit, one group per row of %lld, %.4g effective bits", linear->bits, (long long)cols,
                 linear->effective_bits);
    else
        snprintf(out, size, "%d-bit groups of %lld, %.4g effective bits", linear->bits,
                 (long long)linear->group_size, linear->effective_bits);
}

/* ---- claims --------------------------------------------------------------------------------- */

/*
 * The bit width a model name states: "w4" (optionally "w4a16"), "int4", "4bit", "4-bit" or
 * "4_bit", standing as its own word. Sizes such as "8B" are not bit widths.
 */
static int name_claimed_bits(const char *name)
{
    size_t length = strlen(name);
    for (size_t i = 0; i < length; i++) {
        bool word_start = i == 0 || !isalnum((unsigned char)name[i - 1]);
        /* "w<digit>" or "int<digit>" at a word start, the digit not followed by another digit */
        size_t prefix = 0;
        if (word_start && (name[i] == 'w' || name[i] == 'W'))
            prefix = 1;
        else if (word_start && strncasecmp(name + i, "int", 3) == 0)
            prefix = 3;
        if (prefix > 0 && i + prefix < length && name[i + prefix] >= '1' && name[i + prefix] <= '8') {
            char next = name[i + prefix + 1];
            if (!isalnum((unsigned char)next) || next == 'a' || next == 'A')
                return name[i + prefix] - '0';
        }
        /* "<digit>bit", "<digit>-bit", "<digit>_bit" with the digit at a word start */
        if (word_start && name[i] >= '1' && name[i] <= '8') {
            size_t j = i + 1;
            if (name[j] == '-' || name[j] == '_')
                j++;
            if (strncasecmp(name + j, "bit", 3) == 0)
                return name[i] - '0';
        }
    }
    return 0;
}

void qref_fakequant_claim_read(const cJSON *config, qref_fakequant_claim *claim)
{
    memset(claim, 0, sizeof *claim);
    const cJSON *record = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(config, "qconform"),
                                                           "fake_quant");
    const cJSON *bits = cJSON_GetObjectItemCaseSensitive(record, "bits");
    if (cJSON_IsNumber(bits) && bits->valuedouble >= 1 && bits->valuedouble <= 16 &&
        bits->valuedouble == floor(bits->valuedouble)) {
        claim->bits = (int)bits->valuedouble;
        const cJSON *group = cJSON_GetObjectItemCaseSensitive(record, "group_size");
        if (cJSON_IsNumber(group) && group->valuedouble == floor(group->valuedouble) && fabs(group->valuedouble) < 1e15)
            claim->group_size = (int64_t)group->valuedouble;
        snprintf(claim->source, sizeof claim->source, "qconform.fake_quant");
        return;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(config, "_name_or_path");
    if (cJSON_IsString(name)) {
        claim->bits = name_claimed_bits(name->valuestring);
        if (claim->bits > 0)
            snprintf(claim->source, sizeof claim->source, "_name_or_path \"%.120s\"", name->valuestring);
    }
}

/* ---- one artifact --------------------------------------------------------------------------- */

void qref_fakequant_analyze_artifact(const qref_tensor_set *tensors, const qref_fakequant_module *modules,
                                     size_t count, const char *config_display, const cJSON *config,
                                     qref_fakequant_summary *summary, qref_findings *findings)
{
    memset(summary, 0, sizeof *summary);
    qref_fakequant_claim_read(config, &summary->claim);

    /* Step 1: each linear on its own. */
    qref_fakequant_linear first = {0};
    const char *first_module = NULL, *first_plain = NULL, *first_other = NULL;
    char first_text[128] = "", other_text[128] = "";
    size_t differing = 0;
    double weighted_bits = 0.0, weights = 0.0;
    for (size_t i = 0; i < count; i++) {
        char name[512];
        snprintf(name, sizeof name, "%s.weight", modules[i].module);
        const qref_tensor *weight = qref_tensor_set_find(tensors, name);
        qref_fakequant_linear linear;
        qref_error err = {0};
        if (weight == NULL ||
            qref_fakequant_analyze_linear(weight, modules[i].rows, modules[i].cols, &linear, &err) != QREF_OK) {
            summary->unreadable++;
            continue;
        }
        summary->linears++;
        if (!linear.quantized) {
            if (first_plain == NULL)
                first_plain = modules[i].module;
            continue;
        }
        summary->quantized++;
        char text[128];
        qref_fakequant_linear_describe(&linear, modules[i].cols, text, sizeof text);
        qref_findings_add(findings, "fakequant.linear", QREF_SEVERITY_INFO, modules[i].module, "linear %s: %s",
                          modules[i].module, text);
        weighted_bits += linear.effective_bits * (double)modules[i].rows * (double)modules[i].cols;
        weights += (double)modules[i].rows * (double)modules[i].cols;
        if (first_module == NULL) {
            first = linear;
            first_module = modules[i].module;
            qref_fakequant_linear_describe(&linear, modules[i].cols, first_text, sizeof first_text);
        } else if (linear.bits != first.bits || linear.group_size != first.group_size) {
            if (differing++ == 0) {
                first_other = modules[i].module;
                snprintf(other_text, sizeof other_text, "%s", text);
            }
        }
    }

    /* Step 2: the linears against each other. */
    if (summary->quantized == 0 && summary->linears > 0)
        qref_findings_add(findings, "fakequant.none", QREF_SEVERITY_INFO, "",
                          "none of the %zu float linears lies on a quantization grid of at most %d bits per group of "
                          "%d or more inputs (or per row): the weights are full precision", summary->linears,
                          QREF_FAKEQUANT_MAX_BITS, QREF_FAKEQUANT_MIN_GROUP);
    if (summary->quantized > 0 && summary->quantized < summary->linears)
        qref_findings_add(findings, "fakequant.partial", QREF_SEVERITY_WARNING, first_plain,
                          "%zu of %zu float linears are fake-quantized (%s: %s) but %zu %s not (first: %s): the "
                          "artifact mixes quantized and full-precision linears", summary->quantized, summary->linears,
                          first_module, first_text, summary->linears - summary->quantized,
                          summary->linears - summary->quantized == 1 ? "is" : "are", first_plain);
    if (differing > 0)
        qref_findings_add(findings, "fakequant.mixed", QREF_SEVERITY_WARNING, first_other,
                          "fake-quantized linears disagree: %s is %s, but %zu other%s differ%s (first: %s, %s)",
                          first_module, first_text, differing, differing == 1 ? "" : "s", differing == 1 ? "s" : "",
                          first_other, other_text);
    summary->uniform = summary->quantized > 0 && summary->quantized == summary->linears && differing == 0 &&
                       summary->unreadable == 0;
    if (summary->uniform) {
        summary->bits = first.bits;
        summary->group_size = first.group_size;
        summary->effective_bits = weighted_bits / weights;
    }

    /* Step 3: what the config claims. */
    const qref_fakequant_claim *claim = &summary->claim;
    if (claim->bits == 0 || summary->linears == 0)
        return;
    if (summary->quantized == 0)
        qref_findings_add(findings, "fakequant.claim", QREF_SEVERITY_WARNING, "",
                          "%s: %s claims %d-bit weights, but no linear lies on a quantization grid of at most %d bits",
                          config_display, claim->source, claim->bits, QREF_FAKEQUANT_MAX_BITS);
    else if (summary->uniform && claim->bits != summary->bits)
        qref_findings_add(findings, "fakequant.claim", QREF_SEVERITY_WARNING, "",
                          "%s: %s claims %d-bit weights, but the values of every linear need %d bits (%s: %s)",
                          config_display, claim->source, claim->bits, summary->bits, first_module, first_text);
    else if (summary->uniform && claim->group_size != 0 && claim->group_size != summary->group_size)
        qref_findings_add(findings, "fakequant.claim", QREF_SEVERITY_WARNING, "",
                          "%s: %s claims group size %lld, but the values form groups of %lld (%s: %s)",
                          config_display, claim->source, (long long)claim->group_size,
                          (long long)summary->group_size, first_module, first_text);
}
