/*
 * Helpers shared by the GPTQ sources (qref_gptq.c, qref_gptq_check.c): the shape facts of
 * one linear and the bit-stream access to its packed words. Not part of the library's API.
 *
 * Every packed field is read and written through one rule: the words of a qweight column,
 * or of a qzeros row, form a little-endian bit stream and element k occupies bits
 * [b*k, b*k + b). Words are W = 8, 16, 32 or 64 bits wide (GPTQModel's pack_dtype int8,
 * int16, int32, int64; AutoGPTQ writes int32), stored little-endian, with the sign of the
 * signed container ignored.
 */
#ifndef QREF_GPTQ_INTERNAL_H
#define QREF_GPTQ_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/qref_gptq.h"

/* Shape facts of one linear, derived from bits, container width, features and group size. */
typedef struct qref_gptq_layout {
    int bits;
    unsigned mask;           /* 2^bits - 1 */
    int word_bits;           /* W: 8, 16, 32 or 64 */
    int word_bytes;          /* W / 8 */
    qref_dtype word_dtype;   /* I8, I16, I32 or I64 */
    int64_t in_features;
    int64_t out_features;
    int64_t group_size;      /* min(declared group size, in_features) */
    int64_t groups;          /* ceil(in / group_size) */
    int64_t qweight_rows;    /* ceil(in * bits / W) */
    int64_t qzeros_cols;     /* ceil(out * bits / W) */
} qref_gptq_layout;

/* Largest feature count accepted, so that every index fits in int32 as g_idx requires. */
#define QREF_GPTQ_MAX_FEATURES ((int64_t)1 << 30)

/* Fills layout; fails on bits other than 2, 3, 4, 8, a width other than 8, 16, 32, 64 bits,
 * features outside 1..2^30 and a group size <= 0. prefix names the linear in messages. */
qref_status qref_gptq_layout_init(const char *prefix, int bits, int word_bits, int64_t in_features,
                                  int64_t out_features, int64_t group_size, qref_gptq_layout *layout,
                                  qref_error *err);

/* Returns prefix, or "linear" when it is NULL or empty. */
const char *qref_gptq_prefix_name(const char *prefix);

/* Formats 'FILE: tensor "NAME"' for messages. A tensor without a name is called prefix.role. */
const char *qref_gptq_tensor_label(const qref_tensor *tensor, const char *prefix, const char *role, char *buf,
                                   size_t size);

/* Reads scale number index of an F16, BF16 or F32 scales buffer as f32. */
float qref_gptq_scale_load(qref_dtype dtype, const uint8_t *data, uint64_t index);

/* Reads one little-endian word of word_bytes bytes from a possibly unaligned address. */
static inline uint64_t qref_gptq_word_load(const uint8_t *p, int word_bytes)
{
    uint8_t bytes[8] = {0};
    memcpy(bytes, p, (size_t)word_bytes);
    uint64_t value = 0;
    for (int k = word_bytes - 1; k >= 0; k--)
        value = value << 8 | bytes[k];
    return value;
}

static inline void qref_gptq_word_store(uint8_t *p, int word_bytes, uint64_t value)
{
    for (int k = 0; k < word_bytes; k++)
        p[k] = (uint8_t)(value >> (8 * k));
}

/*
 * Reads element index of the bit stream whose n-th word sits at base + n * step bytes. An
 * element that straddles two words (3-bit codes) takes its high bits from the next word.
 */
static inline unsigned qref_gptq_field_get(const uint8_t *base, size_t step, uint64_t index, int bits,
                                           int word_bytes)
{
    const unsigned word_bits = 8u * (unsigned)word_bytes;
    uint64_t bit = (uint64_t)bits * index;
    uint64_t word = bit / word_bits;
    unsigned shift = (unsigned)(bit % word_bits);
    uint64_t value = qref_gptq_word_load(base + word * step, word_bytes) >> shift;
    if (shift + (unsigned)bits > word_bits)
        value |= qref_gptq_word_load(base + (word + 1) * step, word_bytes) << (word_bits - shift);
    return (unsigned)(value & ((1u << bits) - 1u));
}

/* ORs value into element index of the same kind of bit stream (the words start zeroed). */
static inline void qref_gptq_field_put(uint8_t *base, size_t step, uint64_t index, int bits, int word_bytes,
                                       unsigned value)
{
    const unsigned word_bits = 8u * (unsigned)word_bytes;
    uint64_t bit = (uint64_t)bits * index;
    uint64_t word = bit / word_bits;
    unsigned shift = (unsigned)(bit % word_bits);
    uint8_t *low = base + word * step;
    qref_gptq_word_store(low, word_bytes, qref_gptq_word_load(low, word_bytes) | (uint64_t)value << shift);
    if (shift + (unsigned)bits > word_bits) {
        uint8_t *high = base + (word + 1) * step;
        qref_gptq_word_store(high, word_bytes,
                             qref_gptq_word_load(high, word_bytes) | (uint64_t)value >> (word_bits - shift));
    }
}

#endif
