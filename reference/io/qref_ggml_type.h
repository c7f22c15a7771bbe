/*
 * ggml tensor types: the type ids a GGUF tensor info may name, with each type's block size
 * (elements per block) and type size (bytes per block).
 *
 * Ids, block sizes and type sizes follow enum ggml_type in ggml/include/ggml.h and the block
 * structs in ggml/src/ggml-common.h (ggml-org/llama.cpp, 2026, GGML_TYPE_COUNT = 43). Ids that
 * ggml removed (4, 5 = Q4_2, Q4_3; 31-33 = Q4_0_4_4, Q4_0_4_8, Q4_0_8_8; 36-38 = IQ4_NL_4_4,
 * IQ4_NL_4_8, IQ4_NL_8_8) keep their old names and have block size 0, so a file that uses one
 * can be rejected by name. The table lives in io because the GGUF reader needs the sizes to
 * find each tensor's bytes; the dequantizers in formats/qref_ggml.h use the same table.
 */
#ifndef QREF_GGML_TYPE_H
#define QREF_GGML_TYPE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/qref_error.h"

typedef enum qref_ggml_type {
    QREF_GGML_TYPE_F32 = 0,
    QREF_GGML_TYPE_F16 = 1,
    QREF_GGML_TYPE_Q4_0 = 2,
    QREF_GGML_TYPE_Q4_1 = 3,
    QREF_GGML_TYPE_Q5_0 = 6,
    QREF_GGML_TYPE_Q5_1 = 7,
    QREF_GGML_TYPE_Q8_0 = 8,
    QREF_GGML_TYPE_Q8_1 = 9,
    QREF_GGML_TYPE_Q2_K = 10,
    QREF_GGML_TYPE_Q3_K = 11,
    QREF_GGML_TYPE_Q4_K = 12,
    QREF_GGML_TYPE_Q5_K = 13,
    QREF_GGML_TYPE_Q6_K = 14,
    QREF_GGML_TYPE_Q8_K = 15,
    QREF_GGML_TYPE_IQ2_XXS = 16,
    QREF_GGML_TYPE_IQ2_XS = 17,
    QREF_GGML_TYPE_IQ3_XXS = 18,
    QREF_GGML_TYPE_IQ1_S = 19,
    QREF_GGML_TYPE_IQ4_NL = 20,
    QREF_GGML_TYPE_IQ3_S = 21,
    QREF_GGML_TYPE_IQ2_S = 22,
    QREF_GGML_TYPE_IQ4_XS = 23,
    QREF_GGML_TYPE_I8 = 24,
    QREF_GGML_TYPE_I16 = 25,
    QREF_GGML_TYPE_I32 = 26,
    QREF_GGML_TYPE_I64 = 27,
    QREF_GGML_TYPE_F64 = 28,
    QREF_GGML_TYPE_IQ1_M = 29,
    QREF_GGML_TYPE_BF16 = 30,
    QREF_GGML_TYPE_TQ1_0 = 34,
    QREF_GGML_TYPE_TQ2_0 = 35,
    QREF_GGML_TYPE_MXFP4 = 39,
    QREF_GGML_TYPE_NVFP4 = 40,
    QREF_GGML_TYPE_Q1_0 = 41,
    QREF_GGML_TYPE_Q2_0 = 42,
    QREF_GGML_TYPE_COUNT = 43
} qref_ggml_type;

/* One row of the type table. */
typedef struct qref_ggml_type_traits {
    const char *name;    /* gguf-py spelling: "Q4_K", "IQ2_XXS", "BF16" */
    uint32_t block_size; /* elements per block; 0 for an id that ggml removed */
    uint32_t type_size;  /* bytes per block */
} qref_ggml_type_traits;

/* The table row for a type id, or NULL when the id is QREF_GGML_TYPE_COUNT or above. */
const qref_ggml_type_traits *qref_ggml_type_traits_get(uint32_t type);

/* The type's name, "removed" ids included; "unknown" for ids outside the table. */
const char *qref_ggml_type_name(uint32_t type);

/* True for an id below QREF_GGML_TYPE_COUNT that ggml has not removed. */
bool qref_ggml_type_is_valid(uint32_t type);

/*
 * Stores the bytes of n consecutive elements of a valid type in *bytes. Fails with
 * QREF_ERR_INVALID for an invalid type, a negative n, an n that is not a multiple of the
 * block size, or a size that does not fit in 64 bits.
 */
qref_status qref_ggml_row_bytes(uint32_t type, int64_t n, uint64_t *bytes, qref_error *err);

#endif
