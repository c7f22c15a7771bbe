#include "io/qref_ggml_type.h"

#include <inttypes.h>

#include "core/qref_checked.h"

/* Sizes are sizeof(block_*) of ggml/src/ggml-common.h, e.g. block_q4_K: 2 + 2 + 12 + 128.
 * NOTE: the sizes of NVFP4, Q1_0 and Q2_0 (added to ggml in 2026) were read from copies of
 * ggml-common.h in downstream repositories, not from a ggml release. */
static const qref_ggml_type_traits type_table[QREF_GGML_TYPE_COUNT] = {
    [0] = {"F32", 1, 4},
    [1] = {"F16", 1, 2},
    [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},
    [4] = {"Q4_2", 0, 0},
    [5] = {"Q4_3", 0, 0},
    [6] = {"Q5_0", 32, 22},
    [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},
    [9] = {"Q8_1", 32, 36},
    [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},
    [12] = {"Q4_K", 256, 144},
    [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},
    [15] = {"Q8_K", 256, 292},
    [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98},
    [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},
    [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136},
    [24] = {"I8", 1, 1},
    [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},
    [27] = {"I64", 1, 8},
    [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},
    [31] = {"Q4_0_4_4", 0, 0},
    [32] = {"Q4_0_4_8", 0, 0},
    [33] = {"Q4_0_8_8", 0, 0},
    [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},
    [36] = {"IQ4_NL_4_4", 0, 0},
    [37] = {"IQ4_NL_4_8", 0, 0},
    [38] = {"IQ4_NL_8_8", 0, 0},
    [39] = {"MXFP4", 32, 17},
    [40] = {"NVFP4", 64, 36},
    [41] = {"Q1_0", 128, 18},
    [42] = {"Q2_0", 64, 18},
};

const qref_ggml_type_traits *qref_ggml_type_traits_get(uint32_t type)
{
    return type < QREF_GGML_TYPE_COUNT ? &type_table[type] : NULL;
}

const char *qref_ggml_type_name(uint32_t type)
{
    return type < QREF_GGML_TYPE_COUNT ? type_table[type].name : "unknown";
}

bool qref_ggml_type_is_valid(uint32_t type)
{
    return type < QREF_GGML_TYPE_COUNT && type_table[type].block_size != 0;
}

qref_status qref_ggml_row_bytes(uint32_t type, int64_t n, uint64_t *bytes, qref_error *err)
{
    if (type >= QREF_GGML_TYPE_COUNT)
        return qref_error_set(err, QREF_ERR_INVALID, "unknown ggml type %" PRIu32 ", expected an id below %d", type,
                              QREF_GGML_TYPE_COUNT);
    const qref_ggml_type_traits *traits = &type_table[type];
    if (traits->block_size == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "ggml type %" PRIu32 " (%s) was removed from ggml", type,
                              traits->name);
    if (n < 0 || n % traits->block_size != 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%" PRId64 " elements of type %s: expected a non-negative multiple of the block size %" PRIu32,
                              n, traits->name, traits->block_size);
    if (!qref_mul_u64((uint64_t)n / traits->block_size, traits->type_size, bytes))
        return qref_error_set(err, QREF_ERR_INVALID, "%" PRId64 " elements of type %s do not fit in 2^64 bytes", n,
                              traits->name);
    return QREF_OK;
}
