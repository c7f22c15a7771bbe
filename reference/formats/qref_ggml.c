/*
 * Reference dequantizers of the ggml block formats.
 *
 * One function per type, each a transcription of dequantize_row_<type> in
 * ggml/src/ggml-quants.c: the same integer unpacking, and the same f32 expressions in the same
 * order (for example Q4_1 computes x*d + m, Q6_K computes (d*sc)*q, Q2_K computes
 * (d*sc)*q - (dmin*m)). Float multiplication is commutative but not associative, so the
 * grouping is what has to match. Block layouts come from the block_* structs of
 * ggml/src/ggml-common.h; all multi-byte fields are little-endian and f16 scales are IEEE
 * binary16. Blocks are read byte by byte, so src may have any alignment.
 *
 * Notation in the layout comments: d, m, dmin are f16; qs, qh, ql, hmask, scales are byte
 * arrays; QK_K = 256 elements per super-block.
 */
#include "formats/qref_ggml.h"

#include <inttypes.h>

#include "core/qref_dtype.h"

#define QK_K 256

static float load_f16(const uint8_t *p)
{
    return qref_f16_to_f32(qref_load_u16(p));
}

/* ---- Plain floats ------------------------------------------------------------------------ */

static void dequantize_f32(const uint8_t *src, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = qref_load_f32(src + 4 * i);
}

static void dequantize_f16(const uint8_t *src, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = qref_f16_to_f32(qref_load_u16(src + 2 * i));
}

/* BF16 is the upper half of an f32: f32 bits = bf16 bits << 16. */
static void dequantize_bf16(const uint8_t *src, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = qref_bf16_to_f32(qref_load_u16(src + 2 * i));
}

/* ---- 32-element blocks ------------------------------------------------------------------- */

/*
 * Q4_0, 18 bytes: d | qs[16]. Byte qs[j] stores element j in its low nibble and element
 * j+16 in its high nibble. y = (nibble - 8) * d.
 */
static void dequantize_q4_0(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 18 * i;
        const float d = load_f16(block);
        const uint8_t *qs = block + 2;

        for (int j = 0; j < 16; j++) {
            const int x0 = (qs[j] & 0x0F) - 8;
            const int x1 = (qs[j] >> 4) - 8;
            y[i * 32 + j] = x0 * d;
            y[i * 32 + j + 16] = x1 * d;
        }
    }
}

/* Q4_1, 20 bytes: d | m | qs[16]. Nibbles as Q4_0; y = nibble * d + m. */
static void dequantize_q4_1(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 20 * i;
        const float d = load_f16(block);
        const float m = load_f16(block + 2);
        const uint8_t *qs = block + 4;

        for (int j = 0; j < 16; j++) {
            const int x0 = qs[j] & 0x0F;
            const int x1 = qs[j] >> 4;
            y[i * 32 + j] = x0 * d + m;
            y[i * 32 + j + 16] = x1 * d + m;
        }
    }
}

/*
 * Q5_0, 22 bytes: d | qh[4] | qs[16]. Nibbles as Q4_0; bit j of the little-endian u32 qh is
 * the fifth bit of element j (j < 32). y = (5-bit value - 16) * d.
 */
static void dequantize_q5_0(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 22 * i;
        const float d = load_f16(block);
        const uint32_t qh = qref_load_u32(block + 2);
        const uint8_t *qs = block + 6;

        for (int j = 0; j < 16; j++) {
            const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
            const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
            const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - 16;
            const int32_t x1 = ((qs[j] >> 4) | xh_1) - 16;
            y[i * 32 + j] = x0 * d;
            y[i * 32 + j + 16] = x1 * d;
        }
    }
}

/* Q5_1, 24 bytes: d | m | qh[4] | qs[16]. Bits as Q5_0; y = 5-bit value * d + m. */
static void dequantize_q5_1(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 24 * i;
        const float d = load_f16(block);
        const float m = load_f16(block + 2);
        const uint32_t qh = qref_load_u32(block + 4);
        const uint8_t *qs = block + 8;

        for (int j = 0; j < 16; j++) {
            const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
            const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
            const int x0 = (qs[j] & 0x0F) | xh_0;
            const int x1 = (qs[j] >> 4) | xh_1;
            y[i * 32 + j] = x0 * d + m;
            y[i * 32 + j + 16] = x1 * d + m;
        }
    }
}

/* Q8_0, 34 bytes: d | qs[32] as int8. y = qs[j] * d. */
static void dequantize_q8_0(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 34 * i;
        const float d = load_f16(block);
        const int8_t *qs = (const int8_t *)(block + 2);

        for (int j = 0; j < 32; j++)
            y[i * 32 + j] = qs[j] * d;
    }
}

/*
 * IQ4_NL, 18 bytes: d | qs[16]. Nibbles as Q4_0, mapped through a fixed non-linear table
 * (kvalues_iq4nl in ggml-common.h); y = d * table[nibble].
 */
static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void dequantize_iq4_nl(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 18 * i;
        const float d = load_f16(block);
        const uint8_t *qs = block + 2;

        for (int j = 0; j < 16; j++) {
            y[i * 32 + j] = d * kvalues_iq4nl[qs[j] & 0xf];
            y[i * 32 + j + 16] = d * kvalues_iq4nl[qs[j] >> 4];
        }
    }
}

/* ---- 256-element super-blocks (k-quants) ------------------------------------------------- */

/*
 * Q2_K, 84 bytes: scales[16] | qs[64] | d | dmin. Sixteen sub-blocks of 16 elements; scales[s]
 * holds the 4-bit scale of sub-block s in its low nibble and the 4-bit min in its high one.
 * Element 128h + 32j + l (h < 2, j < 4, l < 32) is bits 2j..2j+1 of qs[32h + l], in
 * sub-block s = 8h + 2j + l/16: y = (d * (sc & 15)) * q - (dmin * (sc >> 4)).
 */
static void dequantize_q2_k(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 84 * i;
        const uint8_t *scales = block;
        const uint8_t *q = block + 16;
        const float d = load_f16(block + 80);
        const float min = load_f16(block + 82);

        int is = 0;
        for (int n = 0; n < QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                uint8_t sc = scales[is++];
                float dl = d * (sc & 0xF);
                float ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;

                sc = scales[is++];
                dl = d * (sc & 0xF);
                ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;

                shift += 2;
            }
            q += 32;
        }
    }
}

/*
 * Q3_K, 110 bytes: hmask[32] | qs[64] | scales[12] | d. Element positions as Q2_K; the 2-bit
 * value of qs has 4 subtracted unless bit 4h + j of hmask[l] is set (range -4..3). The 16
 * scales are 6 bits: scale s < 8 has its low nibble in scales[s] & 15, s >= 8 in
 * scales[s - 8] >> 4, and its top two bits at bits 2(s/4)..2(s/4)+1 of scales[8 + s%4].
 * y = (d * (scale - 32)) * q. The unpacking below is the kmask1/kmask2 shuffle of ggml on
 * little-endian words.
 */
static void unpack_q3_k_scales(const uint8_t *packed, int8_t scales[16])
{
    const uint32_t kmask1 = 0x03030303;
    const uint32_t kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    aux[0] = qref_load_u32(packed);
    aux[1] = qref_load_u32(packed + 4);
    uint32_t tmp = qref_load_u32(packed + 8);

    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);

    for (int s = 0; s < 16; s++)
        scales[s] = (int8_t)((aux[s / 4] >> (8 * (s % 4))) & 0xFF);
}

static void dequantize_q3_k(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 110 * i;
        const uint8_t *hm = block;
        const uint8_t *q = block + 32;
        const float d_all = load_f16(block + 108);
        int8_t scales[16];
        unpack_q3_k_scales(block + 96, scales);

        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                float dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));

                dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));

                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

/*
 * The 6-bit scale and min of sub-block j < 8 in the 12-byte scales field of Q4_K and Q5_K
 * (get_scale_min_k4): j < 4 uses the low six bits of bytes j and j + 4; j >= 4 takes its low
 * four bits from byte j + 4 and its top two bits from the top of bytes j - 4 and j.
 */
static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

/*
 * Q4_K, 144 bytes: d | dmin | scales[12] | qs[128]. Eight sub-blocks of 32. For chunk c < 4,
 * qs[32c + l] holds element 64c + l in its low nibble (sub-block 2c) and element 64c + 32 + l
 * in its high nibble (sub-block 2c + 1). y = (d * sc) * q - (dmin * m).
 */
static void dequantize_q4_k(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 144 * i;
        const float d = load_f16(block);
        const float min = load_f16(block + 2);
        const uint8_t *scales = block + 4;
        const uint8_t *q = block + 16;

        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < QK_K; j += 64) {
            get_scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc;
            const float m1 = min * m;
            get_scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc;
            const float m2 = min * m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

/*
 * Q5_K, 176 bytes: d | dmin | scales[12] | qh[32] | qs[128]. As Q4_K, plus 16 when bit 2c of
 * qh[l] is set (low nibble of chunk c) or bit 2c + 1 (high nibble).
 */
static void dequantize_q5_k(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 176 * i;
        const float d = load_f16(block);
        const float min = load_f16(block + 2);
        const uint8_t *scales = block + 4;
        const uint8_t *qh = block + 16;
        const uint8_t *ql = block + 48;

        int is = 0;
        uint8_t sc, m;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            get_scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc;
            const float m1 = min * m;
            get_scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc;
            const float m2 = min * m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

/*
 * Q6_K, 210 bytes: ql[128] | qh[64] | scales[16] as int8 | d. Two halves of 128; in half h,
 * with L = ql + 64h, H = qh + 32h, S = scales + 8h and l < 32, the four elements l, l+32,
 * l+64, l+96 take their low four bits from L[l] & 15, L[l+32] & 15, L[l] >> 4, L[l+32] >> 4
 * and their top two bits from bits 0-1, 2-3, 4-5, 6-7 of H[l]; scales S[l/16 + 0, 2, 4, 6].
 * y = (d * scale) * (6-bit value - 32).
 */
static void dequantize_q6_k(const uint8_t *src, int64_t nb, float *y)
{
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *block = src + 210 * i;
        const uint8_t *ql = block;
        const uint8_t *qh = block + 128;
        const int8_t *sc = (const int8_t *)(block + 192);
        const float d = load_f16(block + 208);

        for (int n = 0; n < QK_K; n += 128) {
            for (int l = 0; l < 32; ++l) {
                int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* ---- Dispatch ---------------------------------------------------------------------------- */

/* TODO: no dequantizer yet for the grid types (IQ1_S, IQ1_M, IQ2_*, IQ3_*, IQ4_XS), TQ1_0,
 * TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0 and the integer types: such tensors parse but do not decode. */
bool qref_ggml_type_can_dequantize(uint32_t type)
{
    switch (type) {
    case QREF_GGML_TYPE_F32:
    case QREF_GGML_TYPE_F16:
    case QREF_GGML_TYPE_BF16:
    case QREF_GGML_TYPE_Q4_0:
    case QREF_GGML_TYPE_Q4_1:
    case QREF_GGML_TYPE_Q5_0:
    case QREF_GGML_TYPE_Q5_1:
    case QREF_GGML_TYPE_Q8_0:
    case QREF_GGML_TYPE_Q2_K:
    case QREF_GGML_TYPE_Q3_K:
    case QREF_GGML_TYPE_Q4_K:
    case QREF_GGML_TYPE_Q5_K:
    case QREF_GGML_TYPE_Q6_K:
    case QREF_GGML_TYPE_IQ4_NL:
        return true;
    default:
        return false;
    }
}

qref_status qref_ggml_dequantize_row(uint32_t type, const void *src, int64_t n, float *dst, qref_error *err)
{
    uint64_t bytes;
    qref_status status = qref_ggml_row_bytes(type, n, &bytes, err);
    if (status != QREF_OK)
        return status;
    if (!qref_ggml_type_can_dequantize(type))
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "ggml type %s (%" PRIu32 ") is not supported; the dequantizer handles F32, F16, BF16, "
                              "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_NL",
                              qref_ggml_type_name(type), type);

    const uint8_t *bytes_in = src;
    const int64_t nb = n / (int64_t)qref_ggml_type_traits_get(type)->block_size;
    switch (type) {
    case QREF_GGML_TYPE_F32: dequantize_f32(bytes_in, n, dst); break;
    case QREF_GGML_TYPE_F16: dequantize_f16(bytes_in, n, dst); break;
    case QREF_GGML_TYPE_BF16: dequantize_bf16(bytes_in, n, dst); break;
    case QREF_GGML_TYPE_Q4_0: dequantize_q4_0(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q4_1: dequantize_q4_1(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q5_0: dequantize_q5_0(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q5_1: dequantize_q5_1(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q8_0: dequantize_q8_0(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q2_K: dequantize_q2_k(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q3_K: dequantize_q3_k(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q4_K: dequantize_q4_k(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q5_K: dequantize_q5_k(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_Q6_K: dequantize_q6_k(bytes_in, nb, dst); break;
    case QREF_GGML_TYPE_IQ4_NL: dequantize_iq4_nl(bytes_in, nb, dst); break;
    default: break;
    }
    return QREF_OK;
}

qref_status qref_ggml_dequantize_tensor(const qref_gguf *file, const qref_gguf_tensor *tensor, float *dst,
                                        qref_error *err)
{
    qref_status status = qref_ggml_dequantize_row(tensor->type, tensor->data, (int64_t)tensor->numel, dst, err);
    if (status != QREF_OK)
        qref_error_prefix(err, "%s: tensor \"%s\": ", file->display, tensor->name);
    return status;
}
