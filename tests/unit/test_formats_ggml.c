/*
 * ggml block dequantizers.
 *
 * Two independent anchors. First, one hand-built block per supported type. Each expected
 * value is derived in a comment from the block bytes with the element formula of the format
 * (the block layout of ggml-common.h, the math of dequantize_row_* in ggml-quants.c), not
 * from the code under test. Second, the synth256 and stories260k GGUF fixtures, produced by
 * llama.cpp's own converter and llama-quantize (fixtures/README.md). There the F32 GGUF equals
 * the safetensors weights after undoing the Q/K row permutation of the converter. Each
 * quantized tensor decodes to within the error its format allows of the same F32 tensor, and
 * F16/BF16 tensors equal the F32 values rounded to nearest even.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_ggml.h"
#include "io/qref_blob.h"
#include "io/qref_gguf.h"
#include "io/qref_safetensors.h"

static void dequantize_ok(uint32_t type, const uint8_t *block, int64_t n, float *out)
{
    qref_error err = {0};
    qref_status status = qref_ggml_dequantize_row(type, block, n, out, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
}

/* Exact float comparison that prints the position on failure. */
static void assert_floats_equal(const float *got, const float *expected, int n)
{
    for (int i = 0; i < n; i++) {
        if (got[i] != expected[i])
            print_error("element %d: got %.9g, expected %.9g\n", i, got[i], expected[i]);
        assert_true(got[i] == expected[i]);
    }
}

/* ---- Plain floats ------------------------------------------------------------------------ */

static void block_f32_f16_bf16(void **state)
{
    (void)state;
    float out[4];

    /* F32: 0x3fc00000 = 1.5, 0xc0100000 = -2.25 (IEEE 754 binary32, little-endian bytes). */
    const uint8_t f32[] = {0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x10, 0xc0};
    dequantize_ok(QREF_GGML_TYPE_F32, f32, 2, out);
    assert_floats_equal(out, (const float[]){1.5f, -2.25f}, 2);

    /* F16: 0x3c00 = 1, 0xc100 = -(1 + 256/1024) * 2 = -2.5, 0x0001 = 2^-24 (smallest subnormal),
     * 0x7bff = (1 + 1023/1024) * 2^15 = 65504. */
    const uint8_t f16[] = {0x00, 0x3c, 0x00, 0xc1, 0x01, 0x00, 0xff, 0x7b};
    dequantize_ok(QREF_GGML_TYPE_F16, f16, 4, out);
    assert_floats_equal(out, (const float[]){1.0f, -2.5f, 0x1p-24f, 65504.0f}, 4);

    /* BF16 is the top half of an f32: 0x3f80 -> 0x3f800000 = 1, 0xc0a0 -> -5, 0x3e20 -> 0.15625. */
    const uint8_t bf16[] = {0x80, 0x3f, 0xa0, 0xc0, 0x20, 0x3e};
    dequantize_ok(QREF_GGML_TYPE_BF16, bf16, 3, out);
    assert_floats_equal(out, (const float[]){1.0f, -5.0f, 0.15625f}, 3);
}

/* ---- 32-element blocks ------------------------------------------------------------------- */

static void block_q4_0(void **state)
{
    (void)state;
    /* d = 0x3800 = 0.5; qs[j] = j | (15 - j) << 4, so element j has nibble j and element
     * j + 16 has nibble 15 - j. y = (nibble - 8) * d: y[j] = (j - 8) / 2, y[16 + j] = (7 - j) / 2. */
    uint8_t block[18] = {0x00, 0x38};
    for (int j = 0; j < 16; j++)
        block[2 + j] = (uint8_t)(j | (15 - j) << 4);
    const float expected[32] = {-4,  -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0,  0.5,  1,  1.5,  2,  2.5,  3,  3.5,
                                3.5, 3,    2.5, 2,   1.5, 1,   0.5, 0,   -0.5, -1, -1.5, -2, -2.5, -3, -3.5, -4};
    float out[32];
    dequantize_ok(QREF_GGML_TYPE_Q4_0, block, 32, out);
    assert_floats_equal(out, expected, 32);
}

static void block_q4_1(void **state)
{
    (void)state;
    /* d = 0x3400 = 0.25, m = 0xbc00 = -1; nibbles as in block_q4_0. y = nibble * d + m:
     * y[j] = j/4 - 1, y[16 + j] = (15 - j)/4 - 1. */
    uint8_t block[20] = {0x00, 0x34, 0x00, 0xbc};
    for (int j = 0; j < 16; j++)
        block[4 + j] = (uint8_t)(j | (15 - j) << 4);
    const float expected[32] = {-1,   -0.75, -0.5, -0.25, 0,     0.25, 0.5,   0.75, 1,     1.25, 1.5,
                                1.75, 2,     2.25, 2.5,   2.75,  2.75, 2.5,   2.25, 2,     1.75, 1.5,
                                1.25, 1,     0.75, 0.5,   0.25,  0,    -0.25, -0.5, -0.75, -1};
    float out[32];
    dequantize_ok(QREF_GGML_TYPE_Q4_1, block, 32, out);
    assert_floats_equal(out, expected, 32);
}

static void block_q5_0(void **state)
{
    (void)state;
    /* d = 0.5; qh bytes 02 00 01 80 = u32 0x80010002: fifth bits of elements 1, 16 and 31.
     * qs[j] = j | j << 4: element j and element j + 16 both have low bits j.
     * y = (low | fifth << 4) - 16) * d: y[0] = -8, y[1] = (1 + 16 - 16) / 2 = 0.5,
     * y[j] = (j - 16) / 2 for j = 2..15, y[16] = (0 + 16 - 16) / 2 = 0, y[16 + j] = (j - 16) / 2
     * for j = 1..14, y[31] = (15 + 16 - 16) / 2 = 7.5. */
    uint8_t block[22] = {0x00, 0x38, 0x02, 0x00, 0x01, 0x80};
    for (int j = 0; j < 16; j++)
        block[6 + j] = (uint8_t)(j | j << 4);
    const float expected[32] = {-8,   0.5,  -7,   -6.5, -6, -5.5, -5,   -4.5, -4, -3.5, -3,   -2.5, -2,   -1.5, -1, -0.5,
                                0,    -7.5, -7,   -6.5, -6, -5.5, -5,   -4.5, -4, -3.5, -3,   -2.5, -2,   -1.5, -1, 7.5};
    float out[32];
    dequantize_ok(QREF_GGML_TYPE_Q5_0, block, 32, out);
    assert_floats_equal(out, expected, 32);
}

static void block_q5_1(void **state)
{
    (void)state;
    /* d = 0.25, m = 0x3c00 = 1; qh bytes 01 00 00 80: fifth bits of elements 0 and 31.
     * qs[j] = (15 - j) | j << 4: element j has low bits 15 - j, element j + 16 has j.
     * y = (low | fifth << 4) * d + m: y[0] = 31/4 + 1 = 8.75, y[j] = (15 - j)/4 + 1 for j >= 1,
     * y[16 + j] = j/4 + 1 for j <= 14, y[31] = 31/4 + 1 = 8.75. */
    uint8_t block[24] = {0x00, 0x34, 0x00, 0x3c, 0x01, 0x00, 0x00, 0x80};
    for (int j = 0; j < 16; j++)
        block[8 + j] = (uint8_t)((15 - j) | j << 4);
    const float expected[32] = {8.75, 4.5,  4.25, 4,    3.75, 3.5,  3.25, 3,    2.75, 2.5,  2.25,
                                2,    1.75, 1.5,  1.25, 1,    1,    1.25, 1.5,  1.75, 2,    2.25,
                                2.5,  2.75, 3,    3.25, 3.5,  3.75, 4,    4.25, 4.5,  8.75};
    float out[32];
    dequantize_ok(QREF_GGML_TYPE_Q5_1, block, 32, out);
    assert_floats_equal(out, expected, 32);
}

static void block_q8_0(void **state)
{
    (void)state;
    /* d = 0x3000 = 0.125; qs[j] = 4j - 64 as int8, except qs[0] = -128 and qs[31] = 127.
     * y = qs * d: y[j] = j/2 - 8, y[0] = -16, y[31] = 127/8 = 15.875. */
    uint8_t block[34] = {0x00, 0x30};
    for (int j = 0; j < 32; j++)
        block[2 + j] = (uint8_t)(int8_t)(4 * j - 64);
    block[2] = 0x80;
    block[33] = 0x7f;
    float expected[32];
    expected[0] = -16.0f;
    for (int j = 1; j < 31; j++)
        expected[j] = (float)j / 2 - 8; /* exact: a multiple of 0.5 */
    expected[31] = 15.875f;
    float out[32];
    dequantize_ok(QREF_GGML_TYPE_Q8_0, block, 32, out);
    assert_floats_equal(out, expected, 32);
}

static void block_iq4_nl(void **state)
{
    (void)state;
    /* d = 0.5; nibbles as in block_q4_0 (element j: j, element 16 + j: 15 - j). y = d * T[nibble]
     * with T = kvalues_iq4nl = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69,
     * 89, 113} (ggml-common.h), so y[j] = T[j] / 2 and y[16 + j] = T[15 - j] / 2. */
    uint8_t block[18] = {0x00, 0x38};
    for (int j = 0; j < 16; j++)
        block[2 + j] = (uint8_t)(j | (15 - j) << 4);
    const float expected[32] = {-63.5, -52,   -41.5, -32.5, -24.5, -17.5, -11,   -5,    0.5,   6.5,   12.5,
                                19,    26.5,  34.5,  44.5,  56.5,  56.5,  44.5,  34.5,  26.5,  19,    12.5,
                                6.5,   0.5,   -5,    -11,   -17.5, -24.5, -32.5, -41.5, -52,   -63.5};
    float out[32];
    dequantize_ok(QREF_GGML_TYPE_IQ4_NL, block, 32, out);
    assert_floats_equal(out, expected, 32);
}

/* ---- 256-element super-blocks ------------------------------------------------------------ */

/*
 * The k-quant blocks are checked at eight elements chosen to cover both 128-element halves,
 * every 2-bit shift or 32-element chunk, and both 16-element sub-blocks of a group:
 * e = 5, 52, 73, 127, 144, 163, 222, 236. For Q2_K, Q3_K and Q6_K, e = 128h + 32j + l.
 */
static const int probe[8] = {5, 52, 73, 127, 144, 163, 222, 236};

static void assert_probes(const float *out, const float expected[8])
{
    for (int i = 0; i < 8; i++) {
        if (out[probe[i]] != expected[i])
            print_error("element %d: got %.9g, expected %.9g\n", probe[i], out[probe[i]], expected[i]);
        assert_true(out[probe[i]] == expected[i]);
    }
}

static void block_q2_k(void **state)
{
    (void)state;
    /* scales[s] = (15 - s) | s << 4 (scale 15 - s, min s); qs[k] = (89k + 45) mod 256;
     * d = 0.5, dmin = 0.25. Element e = 128h + 32j + l: q = (qs[32h + l] >> 2j) & 3, sub-block
     * s = 8h + 2j + (l >= 16), y = d * sc * q - dmin * m. */
    uint8_t block[84] = {0};
    for (int s = 0; s < 16; s++)
        block[s] = (uint8_t)((15 - s) | s << 4);
    for (int k = 0; k < 64; k++)
        block[16 + k] = (uint8_t)(89 * k + 45);
    block[80] = 0x00, block[81] = 0x38; /* d */
    block[82] = 0x00, block[83] = 0x34; /* dmin */
    const float expected[8] = {
        15.0f,  /* e=5: h0 j0 l5, s0: qs[5] = 0xea, q = 2; sc 15, m 0: 0.5*15*2 - 0 */
        -0.75f, /* e=52: h0 j1 l20, s3: qs[20] = 0x21, q = 0; sc 12, m 3: 0 - 0.25*3 */
        -1.0f,  /* e=73: h0 j2 l9, s4: qs[9] = 0x4e, q = 0; sc 11, m 4: 0 - 0.25*4 */
        10.25f, /* e=127: h0 j3 l31, s7: qs[31] = 0xf4, q = 3; sc 8, m 7: 0.5*8*3 - 0.25*7 */
        0.75f,  /* e=144: h1 j0 l16, s9: qs[48] = 0xdd, q = 1; sc 6, m 9: 0.5*6*1 - 0.25*9 */
        2.5f,   /* e=163: h1 j1 l3, s10: qs[35] = 0x58, q = 2; sc 5, m 10: 0.5*5*2 - 0.25*10 */
        -0.25f, /* e=222: h1 j2 l30, s13: qs[62] = 0xbb, q = 3; sc 2, m 13: 0.5*2*3 - 0.25*13 */
        -3.0f,  /* e=236: h1 j3 l12, s14: qs[44] = 0x79, q = 1; sc 1, m 14: 0.5*1*1 - 0.25*14 */
    };
    float out[256];
    dequantize_ok(QREF_GGML_TYPE_Q2_K, block, 256, out);
    assert_probes(out, expected);
}

static void block_q3_k(void **state)
{
    (void)state;
    /* Six-bit scales S = {0, 63, 5, 60, 17, 40, 33, 31, 8, 50, 20, 45, 12, 36, 2, 58}, packed as
     * scales[s] = (S[s] & 15) | (S[s + 8] & 15) << 4 for s < 8 and scales[8 + i] = the top two
     * bits of S[i], S[4 + i], S[8 + i], S[12 + i] at bits 0, 2, 4, 6. hmask[l] = (101l + 13) mod
     * 256, qs[k] = (89k + 45) mod 256, d = 0.25. Element e = 128h + 32j + l: q = ((qs[32h + l]
     * >> 2j) & 3) - (bit 4h + j of hmask[l] ? 0 : 4), y = d * (S[s] - 32) * q, s as in Q2_K. */
    uint8_t block[110] = {0};
    for (int l = 0; l < 32; l++)
        block[l] = (uint8_t)(101 * l + 13);
    for (int k = 0; k < 64; k++)
        block[32 + k] = (uint8_t)(89 * k + 45);
    const uint8_t scales[12] = {0x80, 0x2f, 0x45, 0xdc, 0xc1, 0x48, 0x21, 0xaf, 0x04, 0xbb, 0x18, 0xe7};
    memcpy(block + 96, scales, 12);
    block[108] = 0x00, block[109] = 0x34; /* d */
    const float expected[8] = {
        16.0f,  /* e=5: h0 j0 l5, s0: qs[5] = 0xea -> 2, hmask[5] = 0x06 bit 0 clear -> q = -2; 0.25*(0-32)*-2 */
        -28.0f, /* e=52: h0 j1 l20, s3: qs[20] = 0x21 -> 0, hmask[20] = 0xf1 bit 1 clear -> -4; 0.25*(60-32)*-4 */
        15.0f,  /* e=73: h0 j2 l9, s4: qs[9] = 0x4e -> 0, hmask[9] = 0x9a bit 2 clear -> -4; 0.25*(17-32)*-4 */
        -0.75f, /* e=127: h0 j3 l31, s7: qs[31] = 0xf4 -> 3, hmask[31] = 0x48 bit 3 set -> 3; 0.25*(31-32)*3 */
        4.5f,   /* e=144: h1 j0 l16, s9: qs[48] = 0xdd -> 1, hmask[16] = 0x5d bit 4 set -> 1; 0.25*(50-32)*1 */
        -6.0f,  /* e=163: h1 j1 l3, s10: qs[35] = 0x58 -> 2, hmask[3] = 0x3c bit 5 set -> 2; 0.25*(20-32)*2 */
        3.0f,   /* e=222: h1 j2 l30, s13: qs[62] = 0xbb -> 3, hmask[30] = 0xe3 bit 6 set -> 3; 0.25*(36-32)*3 */
        -7.5f,  /* e=236: h1 j3 l12, s14: qs[44] = 0x79 -> 1, hmask[12] = 0xc9 bit 7 set -> 1; 0.25*(2-32)*1 */
    };
    float out[256];
    dequantize_ok(QREF_GGML_TYPE_Q3_K, block, 256, out);
    assert_probes(out, expected);
}

/*
 * Scales of the Q4_K and Q5_K blocks: 6-bit scales sc = {1, 10, 20, 30, 40, 50, 60, 63} and
 * mins m = {63, 5, 0, 17, 33, 2, 48, 9} packed as get_scale_min_k4 reads them: for j < 4,
 * bytes j and j + 4 hold sc[j] and m[j] in their low six bits; for j >= 4, byte j + 4 holds
 * the low nibbles of sc[j] and m[j], and the top two bits of bytes j - 4 and j hold their
 * high two bits.
 */
static const uint8_t k4_scales[12] = {0x81, 0xca, 0xd4, 0xde, 0xbf, 0x05, 0xc0, 0x11, 0x18, 0x22, 0x0c, 0x9f};

static void block_q4_k(void **state)
{
    (void)state;
    /* d = 0.5, dmin = 0.125, qs[k] = (53k + 11) mod 256. Element e = 64c + 32hi + l is the low
     * (hi = 0) or high nibble of qs[32c + l], sub-block 2c + hi: y = d * sc * q - dmin * m. */
    uint8_t block[144] = {0x00, 0x38, 0x00, 0x30};
    memcpy(block + 4, k4_scales, 12);
    for (int k = 0; k < 128; k++)
        block[16 + k] = (uint8_t)(53 * k + 11);
    const float expected[8] = {
        -5.875f,  /* e=5: chunk 0 low, sub 0: qs[5] = 0x14 -> 4; 0.5*1*4 - 0.125*63 */
        9.375f,   /* e=52: chunk 0 high, sub 1: qs[20] = 0x2f -> 2; 0.5*10*2 - 0.125*5 */
        80.0f,    /* e=73: chunk 1 low, sub 2: qs[41] = 0x88 -> 8; 0.5*20*8 - 0.125*0 */
        12.875f,  /* e=127: chunk 1 high, sub 3: qs[63] = 0x16 -> 1; 0.5*30*1 - 0.125*17 */
        215.875f, /* e=144: chunk 2 low, sub 4: qs[80] = 0x9b -> 11; 0.5*40*11 - 0.125*33 */
        349.75f,  /* e=163: chunk 2 high, sub 5: qs[67] = 0xea -> 14; 0.5*50*14 - 0.125*2 */
        24.0f,    /* e=222: chunk 3 low, sub 6: qs[126] = 0x21 -> 1; 0.5*60*1 - 0.125*48 */
        187.875f, /* e=236: chunk 3 high, sub 7: qs[108] = 0x67 -> 6; 0.5*63*6 - 0.125*9 */
    };
    float out[256];
    dequantize_ok(QREF_GGML_TYPE_Q4_K, block, 256, out);
    assert_probes(out, expected);
}

static void block_q5_k(void **state)
{
    (void)state;
    /* As block_q4_k, plus qh[l] = (91l + 3) mod 256: 16 is added to the nibble of sub-block
     * 2c + hi when bit 2c + hi of qh[l] is set. */
    uint8_t block[176] = {0x00, 0x38, 0x00, 0x30};
    memcpy(block + 4, k4_scales, 12);
    for (int l = 0; l < 32; l++)
        block[16 + l] = (uint8_t)(91 * l + 3);
    for (int k = 0; k < 128; k++)
        block[48 + k] = (uint8_t)(53 * k + 11);
    const float expected[8] = {
        -5.875f,  /* e=5: sub 0: qs[5] = 0x14 -> 4, qh[5] = 0xca bit 0 clear -> 4; 0.5*1*4 - 0.125*63 */
        89.375f,  /* e=52: sub 1: qs[20] = 0x2f -> 2, qh[20] = 0x1f bit 1 set -> 18; 0.5*10*18 - 0.125*5 */
        240.0f,   /* e=73: sub 2: qs[41] = 0x88 -> 8, qh[9] = 0x36 bit 2 set -> 24; 0.5*20*24 - 0 */
        252.875f, /* e=127: sub 3: qs[63] = 0x16 -> 1, qh[31] = 0x08 bit 3 set -> 17; 0.5*30*17 - 0.125*17 */
        535.875f, /* e=144: sub 4: qs[80] = 0x9b -> 11, qh[16] = 0xb3 bit 4 set -> 27; 0.5*40*27 - 0.125*33 */
        349.75f,  /* e=163: sub 5: qs[67] = 0xea -> 14, qh[3] = 0x14 bit 5 clear -> 14; 0.5*50*14 - 0.125*2 */
        24.0f,    /* e=222: sub 6: qs[126] = 0x21 -> 1, qh[30] = 0xad bit 6 clear -> 1; 0.5*60*1 - 0.125*48 */
        187.875f, /* e=236: sub 7: qs[108] = 0x67 -> 6, qh[12] = 0x47 bit 7 clear -> 6; 0.5*63*6 - 0.125*9 */
    };
    float out[256];
    dequantize_ok(QREF_GGML_TYPE_Q5_K, block, 256, out);
    assert_probes(out, expected);
}

static void block_q6_k(void **state)
{
    (void)state;
    /* ql[k] = (71k + 5) mod 256, qh[k] = (43k + 17) mod 256, scales (int8) = {-128, 127, -1, 1,
     * 5, -7, 100, -50, 3, -3, 64, -64, 20, -20, 9, -9}, d = 0x2c00 = 0.0625. Element
     * e = 128h + 32k + l (quarter k): low four bits from ql[64h + l] (k = 0: & 15, k = 2: >> 4)
     * or ql[64h + l + 32] (k = 1: & 15, k = 3: >> 4), top two bits from bits 2k, 2k+1 of
     * qh[32h + l]; q = value - 32; y = d * scales[8h + l/16 + 2k] * q. */
    uint8_t block[210] = {0};
    for (int k = 0; k < 128; k++)
        block[k] = (uint8_t)(71 * k + 5);
    for (int k = 0; k < 64; k++)
        block[128 + k] = (uint8_t)(43 * k + 17);
    const int8_t scales[16] = {-128, 127, -1, 1, 5, -7, 100, -50, 3, -3, 64, -64, 20, -20, 9, -9};
    memcpy(block + 192, scales, 16);
    block[208] = 0x00, block[209] = 0x2c;
    const float expected[8] = {
        192.0f,   /* e=5: h0 l5 k0: ql[5] & 15 = 8, qh[5] = 0xe8 bits 0-1 = 0 -> -24; 0.0625*-128*-24 */
        1.0625f,  /* e=52: h0 l20 k1: ql[52] & 15 = 1, qh[20] = 0x6d bits 2-3 = 3 -> 17; 0.0625*1*17 */
        -2.5f,    /* e=73: h0 l9 k2: ql[9] >> 4 = 8, qh[9] = 0x94 bits 4-5 = 1 -> -8; 0.0625*5*-8 */
        28.125f,  /* e=127: h0 l31 k3: ql[63] >> 4 = 7, qh[31] = 0x46 bits 6-7 = 1 -> -9; 0.0625*-50*-9 */
        2.0625f,  /* e=144: h1 l16 k0: ql[80] & 15 = 5, qh[48] = 0x21 bits 0-1 = 1 -> -11; 0.0625*-3*-11 */
        -88.0f,   /* e=163: h1 l3 k1: ql[99] & 15 = 10, qh[35] = 0xf2 bits 2-3 = 0 -> -22; 0.0625*64*-22 */
        -21.25f,  /* e=222: h1 l30 k2: ql[94] >> 4 = 1, qh[62] = 0x7b bits 4-5 = 3 -> 17; 0.0625*-20*17 */
        -0.5625f, /* e=236: h1 l12 k3: ql[108] >> 4 = 15, qh[44] = 0x75 bits 6-7 = 1 -> -1; 0.0625*9*-1 */
    };
    float out[256];
    dequantize_ok(QREF_GGML_TYPE_Q6_K, block, 256, out);
    assert_probes(out, expected);
}

/* Two blocks read from an odd address: the second block's scale must apply to its elements. */
static void blocks_unaligned_and_strided(void **state)
{
    (void)state;
    uint8_t buffer[1 + 2 * 18];
    uint8_t *blocks = buffer + 1;
    memset(buffer, 0, sizeof buffer);
    blocks[0] = 0x00, blocks[1] = 0x38;  /* block 0: d = 0.5 */
    blocks[18] = 0x00, blocks[19] = 0x40; /* block 1: d = 2 */
    for (int j = 0; j < 16; j++) {
        blocks[2 + j] = 0x9a;  /* nibbles 10 (element j) and 9 (element j + 16) */
        blocks[20 + j] = 0x31; /* nibbles 1 and 3 */
    }
    float out[64];
    dequantize_ok(QREF_GGML_TYPE_Q4_0, blocks, 64, out);
    assert_true(out[0] == 1.0f);   /* (10 - 8) * 0.5 */
    assert_true(out[16] == 0.5f);  /* (9 - 8) * 0.5 */
    assert_true(out[32] == -14.0f); /* (1 - 8) * 2 */
    assert_true(out[63] == -10.0f); /* (3 - 8) * 2 */
}

/* ---- Errors ------------------------------------------------------------------------------ */

static void dequantize_errors(void **state)
{
    (void)state;
    uint8_t block[512] = {0};
    float out[256];
    qref_error err = {0};

    /* A valid type without a dequantizer is named. */
    test_assert_error(qref_ggml_dequantize_row(QREF_GGML_TYPE_IQ2_XXS, block, 256, out, &err), &err,
                      QREF_ERR_UNSUPPORTED, "ggml type IQ2_XXS (16) is not supported");
    test_assert_error(qref_ggml_dequantize_row(QREF_GGML_TYPE_MXFP4, block, 32, out, &err), &err,
                      QREF_ERR_UNSUPPORTED, "MXFP4 (39) is not supported");
    /* Removed and unknown ids are invalid input. */
    test_assert_error(qref_ggml_dequantize_row(4, block, 32, out, &err), &err, QREF_ERR_INVALID,
                      "ggml type 4 (Q4_2) was removed");
    test_assert_error(qref_ggml_dequantize_row(36, block, 32, out, &err), &err, QREF_ERR_INVALID,
                      "(IQ4_NL_4_4) was removed");
    test_assert_error(qref_ggml_dequantize_row(43, block, 32, out, &err), &err, QREF_ERR_INVALID,
                      "unknown ggml type 43, expected an id below 43");
    /* n must be a non-negative multiple of the block size. */
    test_assert_error(qref_ggml_dequantize_row(QREF_GGML_TYPE_Q4_K, block, 100, out, &err), &err, QREF_ERR_INVALID,
                      "100 elements of type Q4_K: expected a non-negative multiple of the block size 256");
    test_assert_error(qref_ggml_dequantize_row(QREF_GGML_TYPE_Q8_0, block, -32, out, &err), &err, QREF_ERR_INVALID,
                      "-32 elements of type Q8_0");
}

/* Block sizes and bytes per block of ggml-common.h (sizeof(block_*) and QK_*). */
static void type_table_sizes(void **state)
{
    (void)state;
    const struct {
        uint32_t type;
        const char *name;
        uint32_t block_size, type_size;
    } rows[] = {
        {0, "F32", 1, 4},        {1, "F16", 1, 2},        {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
        {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},     {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},
        {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},  {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},
        {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},  {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
        {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50}, {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},
        {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
        {26, "I32", 1, 4},       {27, "I64", 1, 8},       {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},
        {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54},  {35, "TQ2_0", 256, 66},  {39, "MXFP4", 32, 17},
        {40, "NVFP4", 64, 36},   {41, "Q1_0", 128, 18},   {42, "Q2_0", 64, 18},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const qref_ggml_type_traits *t = qref_ggml_type_traits_get(rows[i].type);
        assert_non_null(t);
        assert_string_equal(t->name, rows[i].name);
        assert_int_equal(t->block_size, rows[i].block_size);
        assert_int_equal(t->type_size, rows[i].type_size);
        assert_true(qref_ggml_type_is_valid(rows[i].type));
    }
    const uint32_t removed[] = {4, 5, 31, 32, 33, 36, 37, 38};
    for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++)
        assert_false(qref_ggml_type_is_valid(removed[i]));
    assert_null(qref_ggml_type_traits_get(QREF_GGML_TYPE_COUNT));
    assert_string_equal(qref_ggml_type_name(99), "unknown");
}

/* ---- Fixtures ---------------------------------------------------------------------------- */

static void open_gguf(const char *relative, qref_gguf *g)
{
    qref_error err = {0};
    qref_status status = qref_gguf_open(test_fixture_path(relative), g, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
}

static float *dequantize_tensor(const qref_gguf *g, const qref_gguf_tensor *t)
{
    float *out = malloc(t->numel * sizeof *out);
    assert_non_null(out);
    qref_error err = {0};
    qref_status status = qref_ggml_dequantize_tensor(g, t, out, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    return out;
}

/* The Hugging Face name of a GGUF LLaMA tensor (convert_hf_to_gguf.py's tensor map). */
static void hf_name(const char *gguf, char *out, size_t size)
{
    static const char *const pairs[][2] = {
        {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},    {"attn_v", "self_attn.v_proj"},
        {"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"},     {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"},      {"attn_norm", "input_layernorm"},  {"ffn_norm", "post_attention_layernorm"},
    };
    if (strcmp(gguf, "token_embd.weight") == 0 || strcmp(gguf, "output.weight") == 0) {
        /* Both models tie lm_head to the embedding, and llama.cpp's converter writes output.weight
         * as a copy of it. */
        snprintf(out, size, "model.embed_tokens.weight");
        return;
    }
    if (strcmp(gguf, "output_norm.weight") == 0) {
        snprintf(out, size, "model.norm.weight");
        return;
    }
    int layer;
    char part[32];
    assert_int_equal(sscanf(gguf, "blk.%d.%31[a-z_]", &layer, part), 2);
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if (strcmp(part, pairs[i][0]) == 0) {
            snprintf(out, size, "model.layers.%d.%s.weight", layer, pairs[i][1]);
            return;
        }
    }
    fail_msg("no Hugging Face name for %s", gguf);
}

/*
 * llama.cpp's converter reorders the rows of Q and K from rotate-half to interleaved RoPE
 * (LlamaModel.permute, convert_hf_to_gguf.py): within each head of head_dim rows, GGUF row
 * 2i + s is Hugging Face row s * head_dim/2 + i.
 */
static size_t hf_row_of_gguf_row(size_t row, size_t head_dim)
{
    size_t head = row / head_dim, r = row % head_dim;
    return head * head_dim + (r % 2) * (head_dim / 2) + r / 2;
}

/* The F32 GGUF contains exactly the safetensors weights, equal after the Q/K permutation. */
static void check_f32_matches_safetensors(const char *gguf_path, const char *safetensors_path, size_t head_dim)
{
    qref_gguf g;
    open_gguf(gguf_path, &g);
    qref_blob blob;
    qref_safetensors st;
    qref_error err = {0};
    assert_int_equal(qref_blob_map_file(test_fixture_path(safetensors_path), &blob, &err), QREF_OK);
    assert_int_equal(qref_safetensors_parse(safetensors_path, blob.data, blob.size, &st, &err), QREF_OK);

    for (size_t i = 0; i < g.tensor_count; i++) {
        const qref_gguf_tensor *t = &g.tensors[i];
        assert_int_equal(t->type, QREF_GGML_TYPE_F32);
        char name[128];
        hf_name(t->name, name, sizeof name);
        const qref_tensor *hf = qref_tensor_set_find(&st.tensors, name);
        assert_non_null(hf);
        assert_int_equal(hf->numel, t->numel);
        /* GGUF ne is the PyTorch shape reversed: ne[0] = in features, ne[1] = out features. */
        assert_int_equal(t->ne[0], hf->shape[hf->ndim - 1]);

        bool permuted = strstr(t->name, ".attn_q.") != NULL || strstr(t->name, ".attn_k.") != NULL;
        float *values = dequantize_tensor(&g, t);
        size_t cols = (size_t)t->ne[0], rows = (size_t)(t->numel / cols);
        for (size_t r = 0; r < rows; r++) {
            size_t hf_row = permuted ? hf_row_of_gguf_row(r, head_dim) : r;
            for (size_t col = 0; col < cols; col++) {
                float expected = qref_load_f32(hf->data + 4 * (hf_row * cols + col));
                if (values[r * cols + col] != expected)
                    fail_msg("%s row %zu column %zu: GGUF %.9g, safetensors %s row %zu: %.9g", t->name, r, col,
                             values[r * cols + col], name, hf_row, expected);
            }
        }
        free(values);
    }
    qref_safetensors_free(&st);
    qref_blob_free(&blob);
    qref_gguf_free(&g);
}

static void fixture_f32_gguf_is_safetensors(void **state)
{
    (void)state;
    /* head_dim from each model's config.json: synth256 64, stories260k 8. */
    check_f32_matches_safetensors("models/synth256-gguf/synth256-f32.gguf", "models/synth256/model.safetensors", 64);
    check_f32_matches_safetensors("models/stories260k-gguf/stories260k-f32.gguf",
                                  "models/stories260k/model.safetensors", 8);
}

/*
 * Quantization step of element e of a block: the spacing of the levels that the element's
 * value is a multiple of. Legacy types: d. K-quants: the sub-block scale d * sc. IQ4_NL: d
 * times 16, the mean spacing of its 16 levels (240 / 15).
 */
static double step_of(uint32_t type, const uint8_t *b, int e)
{
    double d;
    switch (type) {
    case QREF_GGML_TYPE_Q4_0: case QREF_GGML_TYPE_Q4_1: case QREF_GGML_TYPE_Q5_0: case QREF_GGML_TYPE_Q5_1:
    case QREF_GGML_TYPE_Q8_0:
        return fabs(qref_f16_to_f32(qref_load_u16(b)));
    case QREF_GGML_TYPE_IQ4_NL:
        return 16.0 * fabs(qref_f16_to_f32(qref_load_u16(b)));
    case QREF_GGML_TYPE_Q2_K:
        d = qref_f16_to_f32(qref_load_u16(b + 80));
        return fabs(d * (b[e / 16] & 15));
    case QREF_GGML_TYPE_Q3_K: {
        int s = e / 16;
        int low = s < 8 ? b[96 + s] & 15 : b[96 + s - 8] >> 4;
        int high = (b[96 + 8 + s % 4] >> (2 * (s / 4))) & 3;
        d = qref_f16_to_f32(qref_load_u16(b + 108));
        return fabs(d * ((low | high << 4) - 32));
    }
    case QREF_GGML_TYPE_Q4_K: case QREF_GGML_TYPE_Q5_K: {
        int j = e / 32;
        const uint8_t *q = b + 4;
        int sc = j < 4 ? q[j] & 63 : (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        d = qref_f16_to_f32(qref_load_u16(b));
        return fabs(d * sc);
    }
    case QREF_GGML_TYPE_Q6_K: {
        int half = e / 128, quarter = (e % 128) / 32, l = e % 32;
        d = qref_f16_to_f32(qref_load_u16(b + 208));
        return fabs(d * (int8_t)b[192 + 8 * half + l / 16 + 2 * quarter]);
    }
    default:
        fail_msg("no step for type %u", type);
        return 0;
    }
}

/*
 * Error budget per type: the largest |dequantized - f32| allowed, in steps of step_of.
 *   Q8_0: 0.5 + 127 * 2^-11. The quantizer rounds x / d to the nearest int8 (half a step) and
 *     stores d as f16, off by at most 2^-11 of d, which |q| <= 127 multiplies.
 *   Q4_0: 1 + 8 * 2^-11, Q5_0: 1 + 16 * 2^-11. The scale maps the signed maximum to -8 (-16),
 *     so a value of the other sign and the same size lands on +8 (+16) and is clamped to 7 (15):
 *     one full step; then the f16 rounding of d times |q|.
 *   Q4_1, Q5_1: 0.5 + 2^-10 * (q_max + |m| / d). Nearest level on [min, max], plus the f16
 *     rounding of d (times q_max = 15 or 31) and of m.
 *   Q2_K ... Q6_K: 5 steps. The k-quant scale search (make_qkx2_quants, make_qx_quants in
 *     ggml-quants.c) picks sub-block scales that minimize a weighted error, and the 6- or 4-bit
 *     rounding of those scales can leave the largest element of a sub-block outside the range
 *     of its levels; on these fixtures the worst element is 4.3 steps off.
 *   IQ4_NL: 1 mean level spacing. Its levels are up to 24 d apart (half: 0.75 of 16 d) and the
 *     scale search can clamp the extreme element; measured 0.92.
 * Every quantized type must also keep the RMS error over a tensor within 0.35 RMS steps:
 * uniform rounding gives step / sqrt(12) = 0.289 steps; the fixtures measure 0.25 to 0.28,
 * while a decoder that reads the wrong scale or bits gives errors of many steps.
 */
static double budget_of(uint32_t type, const uint8_t *b)
{
    const double f16_error = 0x1p-11;
    switch (type) {
    case QREF_GGML_TYPE_Q8_0: return 0.5 + 127 * f16_error;
    case QREF_GGML_TYPE_Q4_0: return 1.0 + 8 * f16_error;
    case QREF_GGML_TYPE_Q5_0: return 1.0 + 16 * f16_error;
    case QREF_GGML_TYPE_Q4_1: case QREF_GGML_TYPE_Q5_1: {
        double d = fabs(qref_f16_to_f32(qref_load_u16(b)));
        double m = fabs(qref_f16_to_f32(qref_load_u16(b + 2)));
        double q_max = type == QREF_GGML_TYPE_Q4_1 ? 15 : 31;
        return 0.5 + 2 * f16_error * (q_max + (d > 0 ? m / d : 0));
    }
    case QREF_GGML_TYPE_IQ4_NL: return 1.0;
    default: return 5.0;
    }
}

#define RMS_STEP_BUDGET 0.35

/* Compares every tensor of a quantized GGUF with the same tensor of the F32 GGUF. */
static void check_against_f32(const char *quantized_path, const char *f32_path, uint64_t *types_seen)
{
    qref_gguf q, f;
    open_gguf(quantized_path, &q);
    open_gguf(f32_path, &f);
    assert_int_equal(q.tensor_count, f.tensor_count);

    for (size_t i = 0; i < q.tensor_count; i++) {
        const qref_gguf_tensor *t = &q.tensors[i];
        const qref_gguf_tensor *ref = qref_gguf_find_tensor(&f, t->name);
        assert_non_null(ref);
        assert_int_equal(ref->numel, t->numel);
        float *got = dequantize_tensor(&q, t);
        float *want = dequantize_tensor(&f, ref);
        *types_seen |= 1ull << t->type;

        if (t->type == QREF_GGML_TYPE_F32 || t->type == QREF_GGML_TYPE_F16 || t->type == QREF_GGML_TYPE_BF16) {
            /* Unquantized types hold the F32 value rounded to nearest even (llama-quantize uses
             * ggml_fp32_to_fp16_row and ggml_fp32_to_bf16_row). */
            for (uint64_t k = 0; k < t->numel; k++) {
                float expected = want[k];
                if (t->type == QREF_GGML_TYPE_F16)
                    expected = qref_f16_to_f32(qref_f32_to_f16(want[k]));
                else if (t->type == QREF_GGML_TYPE_BF16)
                    expected = qref_bf16_to_f32(qref_f32_to_bf16(want[k]));
                if (got[k] != expected)
                    fail_msg("%s: %s element %llu: %.9g, expected %.9g", quantized_path, t->name,
                             (unsigned long long)k, got[k], expected);
            }
        } else {
            const qref_ggml_type_traits *traits = qref_ggml_type_traits_get(t->type);
            double sum_error2 = 0, sum_step2 = 0;
            for (uint64_t k = 0; k < t->numel; k++) {
                const uint8_t *block = t->data + (k / traits->block_size) * traits->type_size;
                double step = step_of(t->type, block, (int)(k % traits->block_size));
                double error = fabs((double)got[k] - (double)want[k]);
                /* 1e-6 absolute covers f32 rounding of the decode when the step is 0. */
                double limit = budget_of(t->type, block) * step + 1e-6;
                if (error > limit)
                    fail_msg("%s: %s (%s) element %llu: %.9g vs f32 %.9g, error %.3g above %.3g (step %.3g)",
                             quantized_path, t->name, traits->name, (unsigned long long)k, got[k], want[k], error,
                             limit, step);
                sum_error2 += error * error;
                sum_step2 += step * step;
            }
            double rms_ratio = sum_step2 > 0 ? sqrt(sum_error2 / sum_step2) : 0;
            if (rms_ratio > RMS_STEP_BUDGET)
                fail_msg("%s: %s (%s): RMS error %.3f steps, above %.2f", quantized_path, t->name, traits->name,
                         rms_ratio, RMS_STEP_BUDGET);
        }
        free(got);
        free(want);
    }
    qref_gguf_free(&q);
    qref_gguf_free(&f);
}

static void fixture_quantized_close_to_f32(void **state)
{
    (void)state;
    static const char *const synth256[] = {"F16",  "BF16", "Q8_0",   "Q4_0",   "Q4_1",   "Q5_0",  "Q5_1",
                                           "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL"};
    uint64_t types_seen = 0;
    for (size_t i = 0; i < sizeof synth256 / sizeof synth256[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "models/synth256-gguf/synth256-%s.gguf", synth256[i]);
        check_against_f32(path, "models/synth256-gguf/synth256-f32.gguf", &types_seen);
    }
    static const char *const stories[] = {"F16", "BF16", "Q4_K_M"};
    for (size_t i = 0; i < sizeof stories / sizeof stories[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "models/stories260k-gguf/stories260k-%s.gguf", stories[i]);
        check_against_f32(path, "models/stories260k-gguf/stories260k-f32.gguf", &types_seen);
    }

    /* Every supported type occurred in some fixture. */
    for (uint32_t type = 0; type < QREF_GGML_TYPE_COUNT; type++) {
        if (qref_ggml_type_can_dequantize(type) && !(types_seen & (1ull << type)))
            fail_msg("no fixture tensor of type %s", qref_ggml_type_name(type));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(block_f32_f16_bf16),
        cmocka_unit_test(block_q4_0),
        cmocka_unit_test(block_q4_1),
        cmocka_unit_test(block_q5_0),
        cmocka_unit_test(block_q5_1),
        cmocka_unit_test(block_q8_0),
        cmocka_unit_test(block_iq4_nl),
        cmocka_unit_test(block_q2_k),
        cmocka_unit_test(block_q3_k),
        cmocka_unit_test(block_q4_k),
        cmocka_unit_test(block_q5_k),
        cmocka_unit_test(block_q6_k),
        cmocka_unit_test(blocks_unaligned_and_strided),
        cmocka_unit_test(dequantize_errors),
        cmocka_unit_test(type_table_sizes),
        cmocka_unit_test(fixture_f32_gguf_is_safetensors),
        cmocka_unit_test(fixture_quantized_close_to_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
