/* Overflow-checked size arithmetic for values read from untrusted files. */
#ifndef QREF_CHECKED_H
#define QREF_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/* Stores a * b in *out; returns false when the product does not fit in 64 bits. */
static inline bool qref_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Stores a + b in *out; returns false when the sum does not fit in 64 bits. */
static inline bool qref_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

#endif
