#include "core/qref_dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[QREF_DTYPE_COUNT] = {
    [QREF_DTYPE_BOOL] = {"BOOL", 1},   [QREF_DTYPE_U8] = {"U8", 1},
    [QREF_DTYPE_I8] = {"I8", 1},       [QREF_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [QREF_DTYPE_F8_E5M2] = {"F8_E5M2", 1}, [QREF_DTYPE_I16] = {"I16", 2},
    [QREF_DTYPE_U16] = {"U16", 2},     [QREF_DTYPE_F16] = {"F16", 2},
    [QREF_DTYPE_BF16] = {"BF16", 2},   [QREF_DTYPE_I32] = {"I32", 4},
    [QREF_DTYPE_U32] = {"U32", 4},     [QREF_DTYPE_F32] = {"F32", 4},
    [QREF_DTYPE_F64] = {"F64", 8},     [QREF_DTYPE_I64] = {"I64", 8},
    [QREF_DTYPE_U64] = {"U64", 8},
};

size_t qref_dtype_size(qref_dtype dtype)
{
    return (unsigned)dtype < QREF_DTYPE_COUNT ? dtype_table[dtype].size : 0;
}

const char *qref_dtype_name(qref_dtype dtype)
{
    return (unsigned)dtype < QREF_DTYPE_COUNT ? dtype_table[dtype].name : "?";
}

int qref_dtype_parse(const char *name, qref_dtype *out)
{
    for (int i = 0; i < QREF_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (qref_dtype)i;
            return 0;
        }
    }
    return -1;
}

int qref_dtype_is_float(qref_dtype dtype)
{
    switch (dtype) {
    case QREF_DTYPE_F8_E4M3:
    case QREF_DTYPE_F8_E5M2:
    case QREF_DTYPE_F16:
    case QREF_DTYPE_BF16:
    case QREF_DTYPE_F32:
    case QREF_DTYPE_F64:
        return 1;
    default:
        return 0;
    }
}

static float f32_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint32_t f32_to_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

float qref_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;

    if (exponent == 0x1f) /* inf or NaN, payload kept */
        return f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {
        /* zero or subnormal: value = mantissa * 2^-24, exact in f32 */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    return f32_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

float qref_bf16_to_f32(uint16_t b)
{
    return f32_from_bits((uint32_t)b << 16);
}

uint16_t qref_f32_to_bf16(float f)
{
    uint32_t bits = f32_to_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and signed */
        return (uint16_t)((bits >> 16) | 0x40u);
    uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u); /* ties to even */
    return (uint16_t)((bits + rounding) >> 16);
}

uint16_t qref_f32_to_f16(float f)
{
    uint32_t bits = f32_to_bits(f);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t abs_bits = bits & 0x7fffffffu;

    if (abs_bits > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((abs_bits >> 13) & 0x3ffu));
    if (abs_bits >= 0x477ff000u) /* rounds to a value >= 65520, i.e. overflows to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (abs_bits < 0x38800000u) {
        /* result is subnormal or zero: scale so that one f16 ulp (2^-24) becomes 1.0 */
        float magnitude = f32_from_bits(abs_bits);
        float scaled = magnitude * 0x1p24f; /* exact: a power-of-two scaling */
        return (uint16_t)(sign | (uint16_t)nearbyintf(scaled));
    }
    /* normal: rebias the exponent and round the 13 dropped mantissa bits to even */
    uint32_t rebased = abs_bits - (112u << 23);
    uint32_t rounding = 0xfffu + ((rebased >> 13) & 1u);
    return (uint16_t)(sign | ((rebased + rounding) >> 13));
}

float qref_f8_e4m3_to_f32(uint8_t v)
{
    /* E4M3 "fn": bias 7, no infinities, S.1111.111 is NaN */
    uint32_t sign = v >> 7;
    uint32_t exponent = (v >> 3) & 0xfu;
    uint32_t mantissa = v & 0x7u;
    float magnitude;
    if (exponent == 0xf && mantissa == 0x7)
        magnitude = NAN;
    else if (exponent == 0)
        magnitude = (float)mantissa * 0x1p-9f;
    else
        magnitude = ldexpf(1.0f + (float)mantissa / 8.0f, (int)exponent - 7);
    return sign ? -magnitude : magnitude;
}

float qref_f8_e5m2_to_f32(uint8_t v)
{
    /* E5M2 is the upper byte of an f16 */
    return qref_f16_to_f32((uint16_t)((uint16_t)v << 8));
}

uint16_t qref_load_u16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] | (b[1] << 8));
}

uint32_t qref_load_u32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

uint64_t qref_load_u64(const void *p)
{
    const uint8_t *b = p;
    return (uint64_t)qref_load_u32(b) | ((uint64_t)qref_load_u32(b + 4) << 32);
}

float qref_load_f32(const void *p)
{
    return f32_from_bits(qref_load_u32(p));
}

void qref_store_u16(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
}

void qref_store_u32(void *p, uint32_t v)
{
    uint8_t *b = p;
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

void qref_store_u64(void *p, uint64_t v)
{
    qref_store_u32(p, (uint32_t)v);
    qref_store_u32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

void qref_store_f32(void *p, float v)
{
    qref_store_u32(p, f32_to_bits(v));
}

qref_status qref_convert_to_f32(qref_dtype dtype, const void *src, size_t count, float *dst,
                                qref_error *err)
{
    const uint8_t *bytes = src;
    switch (dtype) {
    case QREF_DTYPE_F32:
        for (size_t i = 0; i < count; i++)
            dst[i] = qref_load_f32(bytes + 4 * i);
        return QREF_OK;
    case QREF_DTYPE_F16:
        for (size_t i = 0; i < count; i++)
            dst[i] = qref_f16_to_f32(qref_load_u16(bytes + 2 * i));
        return QREF_OK;
    case QREF_DTYPE_BF16:
        for (size_t i = 0; i < count; i++)
            dst[i] = qref_bf16_to_f32(qref_load_u16(bytes + 2 * i));
        return QREF_OK;
    case QREF_DTYPE_F64:
        for (size_t i = 0; i < count; i++) {
            uint64_t bits = qref_load_u64(bytes + 8 * i);
            double d;
            memcpy(&d, &bits, sizeof d);
            dst[i] = (float)d;
        }
        return QREF_OK;
    case QREF_DTYPE_F8_E4M3:
        for (size_t i = 0; i < count; i++)
            dst[i] = qref_f8_e4m3_to_f32(bytes[i]);
        return QREF_OK;
    case QREF_DTYPE_F8_E5M2:
        for (size_t i = 0; i < count; i++)
            dst[i] = qref_f8_e5m2_to_f32(bytes[i]);
        return QREF_OK;
    case QREF_DTYPE_U8:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)bytes[i];
        return QREF_OK;
    case QREF_DTYPE_I8:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)(int8_t)bytes[i];
        return QREF_OK;
    case QREF_DTYPE_I16:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)(int16_t)qref_load_u16(bytes + 2 * i);
        return QREF_OK;
    case QREF_DTYPE_U16:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)qref_load_u16(bytes + 2 * i);
        return QREF_OK;
    case QREF_DTYPE_I32:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)(int32_t)qref_load_u32(bytes + 4 * i);
        return QREF_OK;
    case QREF_DTYPE_U32:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)qref_load_u32(bytes + 4 * i);
        return QREF_OK;
    case QREF_DTYPE_I64:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)(int64_t)qref_load_u64(bytes + 8 * i);
        return QREF_OK;
    case QREF_DTYPE_U64:
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)qref_load_u64(bytes + 8 * i);
        return QREF_OK;
    case QREF_DTYPE_BOOL:
    case QREF_DTYPE_COUNT:
        break;
    }
    return qref_error_set(err, QREF_ERR_UNSUPPORTED, "conversion of dtype %s to F32 is not supported",
                          qref_dtype_name(dtype));
}
