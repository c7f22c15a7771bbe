/*
 * Round-to-nearest with the GPTQ repository's quantizer (quant/qref_rtn.h).
 *
 * Expected values come from hand derivations written next to each case (float32 where the
 * bits matter), and from a float64 pure-Python re-implementation of quant.py for the real
 * weight matrix at the end.
 */
#include "test_support.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"
#include "quant/qref_rtn.h"

/* Quantizes one row with one group and checks codes, zero, scale and values. */
static void check_row(const float *row, size_t count, int bits, bool sym, const uint8_t *codes,
                      unsigned zero, double scale, const double *values)
{
    qref_rtn_config config = {.bits = bits, .group_size = -1, .sym = sym};
    qref_rtn_result result;
    qref_error err = {0};
    assert_int_equal(qref_rtn_quantize("row", row, 1, count, &config, &result, &err), QREF_OK);
    assert_int_equal(result.groups, 1);
    assert_int_equal(result.zeros[0], zero);
    assert_float_equal(result.scales[0], scale, 1e-6);
    for (size_t j = 0; j < count; j++) {
        assert_int_equal(result.codes[j], codes[j]);
        assert_float_equal(result.dequant[j], values[j], 1e-5);
    }
    qref_rtn_result_free(&result);
}

/*
 * Row [0.5, -1.2, 0.3, 2.0], 2-bit asymmetric (maxq 3):
 *   xmin = -1.2, xmax = 2.0, scale = 3.2 / 3 = 1.0666667, zero = round(1.2 / 1.0666667)
 *   = round(1.125) = 1.
 *   x / scale = [0.46875, -1.125, 0.28125, 1.875] rounds to [0, -1, 0, 2]; + 1 gives
 *   q = [1, 0, 1, 3]; x_hat = scale * (q - 1) = [0, -1.0666667, 0, 2.1333333].
 */
static void test_rtn_worked_2bit_asym(void **state)
{
    (void)state;
    const float row[] = {0.5f, -1.2f, 0.3f, 2.0f};
    const uint8_t codes[] = {1, 0, 1, 3};
    const double values[] = {0.0, -3.2 / 3.0, 0.0, 6.4 / 3.0};
    check_row(row, 4, 2, false, codes, 1, 3.2 / 3.0, values);
}

/*
 * Same row, 2-bit symmetric: xmax = max(|-1.2|, 2.0) = 2, xmin = -2, scale = 4 / 3, zero =
 * (3 + 1) / 2 = 2. x / scale = [0.375, -0.9, 0.225, 1.5] rounds to [0, -1, 0, 2] (1.5 is a
 * tie and goes to the even 2); + 2 gives [2, 1, 2, 4] and 4 is clamped to 3: q = [2, 1, 2, 3],
 * x_hat = (4/3) * [0, -1, 0, 1]. The 2.0 is clipped to 1.3333 (sym clipping).
 */
static void test_rtn_worked_2bit_sym_clipping(void **state)
{
    (void)state;
    const float row[] = {0.5f, -1.2f, 0.3f, 2.0f};
    const uint8_t codes[] = {2, 1, 2, 3};
    const double values[] = {0.0, -4.0 / 3.0, 0.0, 4.0 / 3.0};
    check_row(row, 4, 2, true, codes, 2, 4.0 / 3.0, values);
}

/*
 * Same row, 3-bit (maxq 7).
 * asym: scale = 3.2 / 7 = 0.45714286, zero = round(1.2 / 0.45714286) = round(2.625) = 3;
 *   x / scale = [1.09375, -2.625, 0.65625, 4.375] rounds to [1, -3, 1, 4]; q = [4, 0, 4, 7];
 *   x_hat = scale * [1, -3, 1, 4] = [0.45714, -1.37143, 0.45714, 1.82857].
 * sym: xmax = 2, xmin = -2, scale = 4 / 7 = 0.57142857, zero = 4;
 *   x / scale = [0.875, -2.1, 0.525, 3.5] rounds to [1, -2, 1, 4] (3.5 ties to even 4);
 *   + 4 gives [5, 2, 5, 8], clamped to q = [5, 2, 5, 7]; x_hat = scale * [1, -2, 1, 3].
 */
static void test_rtn_worked_3bit(void **state)
{
    (void)state;
    const float row[] = {0.5f, -1.2f, 0.3f, 2.0f};
    const uint8_t asym_codes[] = {4, 0, 4, 7};
    const double asym_values[] = {3.2 / 7.0, -3.0 * 3.2 / 7.0, 3.2 / 7.0, 4.0 * 3.2 / 7.0};
    check_row(row, 4, 3, false, asym_codes, 3, 3.2 / 7.0, asym_values);

    const uint8_t sym_codes[] = {5, 2, 5, 7};
    const double sym_values[] = {4.0 / 7.0, -8.0 / 7.0, 4.0 / 7.0, 12.0 / 7.0};
    check_row(row, 4, 3, true, sym_codes, 4, 4.0 / 7.0, sym_values);
}

/*
 * All-positive row [0.5, 1.2, 0.3, 2.0].
 * 2-bit asym: xmin is forced to 0, scale = 2 / 3, zero = round(0) = 0;
 *   x / scale = [0.75, 1.8, 0.45, 3.0] rounds to q = [1, 2, 0, 3];
 *   x_hat = [0.6667, 1.3333, 0, 2.0].
 * 4-bit sym: no negatives, so xmin stays 0 and scale = 2 / 15 = 0.13333, while the zero is
 *   still (15 + 1) / 2 = 8: x / scale = [3.75, 9, 2.25, 15] rounds to [4, 9, 2, 15]; + 8 gives
 *   [12, 17, 10, 23], clamped to [12, 15, 10, 15]; x_hat = scale * [4, 7, 2, 7]. Only the
 *   lower half of the range survives: 1.2 and 2.0 both become 7/15 * 2 = 0.9333.
 */
static void test_rtn_worked_all_positive(void **state)
{
    (void)state;
    const float row[] = {0.5f, 1.2f, 0.3f, 2.0f};
    const uint8_t asym_codes[] = {1, 2, 0, 3};
    const double asym_values[] = {2.0 / 3.0, 4.0 / 3.0, 0.0, 2.0};
    check_row(row, 4, 2, false, asym_codes, 0, 2.0 / 3.0, asym_values);

    const uint8_t sym_codes[] = {12, 15, 10, 15};
    const double sym_values[] = {8.0 / 15.0, 14.0 / 15.0, 4.0 / 15.0, 14.0 / 15.0};
    check_row(row, 4, 4, true, sym_codes, 8, 2.0 / 15.0, sym_values);
}

/*
 * Tie case: row [-1, 0.5, 2], 2-bit asym: scale = 3 / 3 = 1, zero = round(1) = 1.
 * 0.5 / 1 = 0.5 rounds half to even, to 0, so q = 1 and x_hat = 0.0 (round-half-away-from-
 * zero would give q = 2 and 1.0). -1 gives q = 0, 2 gives q = 3.
 *
 * Row [-1.5, 0.25, -0.75, 1.25, 6.0], 4-bit asym: scale = 7.5 / 15 = 0.5, zero = round(3) = 3;
 * x / scale = [-3, 0.5, -1.5, 2.5, 12] rounds to [-3, 0, -2, 2, 12]: three ties, each to the
 * even neighbour; q = [0, 3, 1, 5, 15]; x_hat = [-1.5, 0, -1, 1, 6].
 */
static void test_rtn_ties_round_to_even(void **state)
{
    (void)state;
    const float row[] = {-1.0f, 0.5f, 2.0f};
    const uint8_t codes[] = {0, 1, 3};
    const double values[] = {-1.0, 0.0, 2.0};
    check_row(row, 3, 2, false, codes, 1, 1.0, values);

    const float row4[] = {-1.5f, 0.25f, -0.75f, 1.25f, 6.0f};
    const uint8_t codes4[] = {0, 3, 1, 5, 15};
    const double values4[] = {-1.5, 0.0, -1.0, 1.0, 6.0};
    check_row(row4, 5, 4, false, codes4, 3, 0.5, values4);
}

/*
 * An all-zero row widens its range to [-1, 1], so scale = 2 / 15 = 0.13333334 (float32
 * 0.133333340287). asym: zero = round(1 / scale); the exact quotient 7.4999996 rounds to the
 * float32 7.4999995 (ulp 4.8e-7 there), so zero = 7 (float64 arithmetic would reach the tie
 * 7.5 only for an exact 2/15 and give 8). Every code is round(0) + 7 = 7 and every x_hat is 0.
 * sym: zero = 8 and every code is 8.
 */
static void test_rtn_all_zero_row(void **state)
{
    (void)state;
    const float row[] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint8_t asym_codes[] = {7, 7, 7, 7};
    const uint8_t sym_codes[] = {8, 8, 8, 8};
    const double values[] = {0.0, 0.0, 0.0, 0.0};
    check_row(row, 4, 4, false, asym_codes, 7, 2.0 / 15.0, values);
    check_row(row, 4, 4, true, sym_codes, 8, 2.0 / 15.0, values);
}

/*
 * float32 operation order, where float64 or a reciprocal would give other codes.
 * Row [-0.1f, 0.02f, 0.1f], 4-bit asym, in float32 (hex = IEEE bits):
 *   xmin = -0.1f = -0.100000001490116 (0xbdcccccd), xmax = 0.1f
 *   xmax - xmin = 0.200000002980232 (0.2f, exact)
 *   scale = 0.2f / 15 = 0.0133333336562 (0x3c5a740e)
 *   -xmin / scale: exactly 7.4999999302, which rounds to the float32 7.5; 7.5 ties to even,
 *     so zero = 8 (float64 arithmetic would keep 7.49999993 and give zero = 7)
 *   0.02f / scale: 0.0199999995529652 / 0.0133333336562 = 1.49999993 exactly, float32
 *     1.49999988, which rounds to 1: q = 9 (0.02f * (1 / scale) = 0.02f * 75.0 gives the
 *     float32 1.5, which rounds to 2: q = 10)
 *   -0.1f / scale = -7.5 rounds to -8: q = 0; 0.1f / scale = 7.5 rounds to 8: q = 16 -> 15.
 */
static void test_rtn_float32_operation_order(void **state)
{
    (void)state;
    const float row[] = {-0.1f, 0.02f, 0.1f};
    qref_rtn_config config = {.bits = 4, .group_size = -1, .sym = false};
    qref_rtn_result result;
    qref_error err = {0};
    assert_int_equal(qref_rtn_quantize("row", row, 1, 3, &config, &result, &err), QREF_OK);

    uint32_t scale_bits;
    memcpy(&scale_bits, &result.scales[0], 4);
    assert_int_equal(scale_bits, 0x3c5a740e);
    assert_int_equal(result.zeros[0], 8);
    assert_int_equal(result.codes[0], 0);
    assert_int_equal(result.codes[1], 9);
    assert_int_equal(result.codes[2], 15);
    /* x_hat = scale * (q - 8): -8 * scale is exact; 1 * scale is scale. */
    assert_true(result.dequant[0] == -8.0f * result.scales[0]);
    assert_true(result.dequant[1] == result.scales[0]);
    qref_rtn_result_free(&result);
}

/*
 * Every width 2..8 on a ladder row: x_k = 0.5 * (k - 3) for k = 0..maxq, so xmin = -1.5,
 * xmax = 0.5 * (maxq - 3), scale = 0.5 * maxq / maxq = 0.5 and zero = round(1.5 / 0.5) = 3.
 * Then x_k / scale = k - 3 exactly, q_k = k and x_hat_k = x_k: every code 0..maxq appears.
 */
static void test_rtn_every_width_ladder(void **state)
{
    (void)state;
    for (int bits = 2; bits <= 8; bits++) {
        const int maxq = (1 << bits) - 1;
        float row[256];
        for (int k = 0; k <= maxq; k++)
            row[k] = 0.5f * (float)(k - 3);

        qref_rtn_config config = {.bits = bits, .group_size = -1, .sym = false};
        qref_rtn_result result;
        qref_error err = {0};
        assert_int_equal(qref_rtn_quantize("ladder", row, 1, (size_t)maxq + 1, &config, &result, &err), QREF_OK);
        assert_true(result.scales[0] == 0.5f);
        assert_int_equal(result.zeros[0], 3);
        for (int k = 0; k <= maxq; k++) {
            assert_int_equal(result.codes[k], k);
            assert_true(result.dequant[k] == row[k]);
        }
        qref_rtn_result_free(&result);

        /* sym: the zero is (maxq + 1) / 2 = 2^(bits-1) whatever the data. */
        config.sym = true;
        assert_int_equal(qref_rtn_quantize("ladder", row, 1, (size_t)maxq + 1, &config, &result, &err), QREF_OK);
        assert_int_equal(result.zeros[0], 1 << (bits - 1));
        qref_rtn_result_free(&result);
    }
}

/*
 * Per-group: one row of 8 values in two groups of 4, the 2-bit rows of the worked examples:
 * group 0 = [0.5, -1.2, 0.3, 2.0] (scale 3.2/3, zero 1, q [1, 0, 1, 3]) and group 1 =
 * [0.5, 1.2, 0.3, 2.0] (scale 2/3, zero 0, q [1, 2, 0, 3]). Per-channel on the same row
 * uses the whole range [-1.2, 2.0] for both halves: the second half's q = round(x / (3.2/3))
 * + 1 = [1, 2, 1, 3].
 */
static void test_rtn_per_group(void **state)
{
    (void)state;
    const float row[] = {0.5f, -1.2f, 0.3f, 2.0f, 0.5f, 1.2f, 0.3f, 2.0f};
    const uint8_t grouped[] = {1, 0, 1, 3, 1, 2, 0, 3};
    qref_rtn_config config = {.bits = 2, .group_size = 4, .sym = false};
    qref_rtn_result result;
    qref_error err = {0};
    assert_int_equal(qref_rtn_quantize("row", row, 1, 8, &config, &result, &err), QREF_OK);
    assert_int_equal(result.groups, 2);
    assert_int_equal(result.zeros[0], 1);
    assert_int_equal(result.zeros[1], 0);
    assert_float_equal(result.scales[0], 3.2 / 3.0, 1e-6);
    assert_float_equal(result.scales[1], 2.0 / 3.0, 1e-6);
    assert_memory_equal(result.codes, grouped, 8);
    qref_rtn_result_free(&result);

    const uint8_t per_channel[] = {1, 0, 1, 3, 1, 2, 1, 3};
    config.group_size = -1;
    assert_int_equal(qref_rtn_quantize("row", row, 1, 8, &config, &result, &err), QREF_OK);
    assert_int_equal(result.groups, 1);
    assert_memory_equal(result.codes, per_channel, 8);
    qref_rtn_result_free(&result);
}

static void fill_random(float *values, size_t count, uint64_t seed)
{
    test_rng rng = {seed};
    for (size_t k = 0; k < count; k++)
        values[k] = test_rng_float(&rng) * 0.05f;
    /* A few large values, as real weight rows have, so some groups have a wide range. */
    for (size_t k = 0; k < count; k += 97)
        values[k] *= 20.0f;
}

/*
 * Properties on seeded random matrices, for every width 2..8, sym and asym, per-channel and
 * groups of 32. Codes and zeros are in range and sym zeros equal 2^(bits-1). Every value whose
 * unclamped code round(x / scale) + zero lies in [0, maxq] is reconstructed within scale / 2.
 * NOTE: the bound carries 4 float32 ulps of slack: x / scale is rounded before round(), and
 * scale * (q - zero) is rounded once more.
 */
static void test_rtn_random_properties(void **state)
{
    (void)state;
    enum { ROWS = 37, COLS = 256 };
    float *weight = malloc(ROWS * COLS * sizeof(float));
    assert_non_null(weight);
    fill_random(weight, ROWS * COLS, 20240401);

    const long group_sizes[] = {-1, 32};
    for (int bits = 2; bits <= 8; bits++) {
        for (int sym = 0; sym <= 1; sym++) {
            for (size_t gs = 0; gs < 2; gs++) {
                qref_rtn_config config = {.bits = bits, .group_size = group_sizes[gs], .sym = sym};
                qref_rtn_result result;
                qref_error err = {0};
                assert_int_equal(qref_rtn_quantize("random", weight, ROWS, COLS, &config, &result, &err), QREF_OK);
                const int maxq = (1 << bits) - 1;
                size_t unclipped = 0;
                for (size_t r = 0; r < ROWS; r++) {
                    for (size_t c = 0; c < COLS; c++) {
                        size_t g = c / result.group_size;
                        float scale = result.scales[r * result.groups + g];
                        float zero = (float)result.zeros[r * result.groups + g];
                        assert_true(result.codes[r * COLS + c] <= maxq);
                        assert_true(result.zeros[r * result.groups + g] <= maxq);
                        if (sym)
                            assert_int_equal(result.zeros[r * result.groups + g], 1 << (bits - 1));
                        float x = weight[r * COLS + c];
                        float raw = nearbyintf(x / scale) + zero;
                        if (raw < 0.0f || raw > (float)maxq)
                            continue;
                        unclipped++;
                        float error = fabsf(x - result.dequant[r * COLS + c]);
                        float bound = 0.5f * scale + 4.0f * FLT_EPSILON * fmaxf(fabsf(x), scale * (float)maxq);
                        assert_true(error <= bound);
                    }
                }
                /* asym never clips; sym clips at most the top of each row's positive side. */
                if (!sym)
                    assert_int_equal(unclipped, ROWS * COLS);
                else
                    assert_true(unclipped > ROWS * COLS * 9 / 10);
                qref_rtn_result_free(&result);
            }
        }
    }
    free(weight);
}

/* The result must not depend on the OpenMP thread count: 1 and 2 threads give equal bytes. */
static void test_rtn_thread_count_invariant(void **state)
{
    (void)state;
    enum { ROWS = 129, COLS = 384 };
    float *weight = malloc(ROWS * COLS * sizeof(float));
    assert_non_null(weight);
    fill_random(weight, ROWS * COLS, 7);
    qref_rtn_config config = {.bits = 3, .group_size = 128, .sym = false};
    qref_rtn_result one, two;
    qref_error err = {0};

    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(qref_rtn_quantize("w", weight, ROWS, COLS, &config, &one, &err), QREF_OK);
    omp_set_num_threads(2);
    assert_int_equal(qref_rtn_quantize("w", weight, ROWS, COLS, &config, &two, &err), QREF_OK);
    omp_set_num_threads(saved);

    assert_memory_equal(one.codes, two.codes, ROWS * COLS);
    assert_memory_equal(one.dequant, two.dequant, ROWS * COLS * sizeof(float));
    assert_memory_equal(one.scales, two.scales, ROWS * one.groups * sizeof(float));
    assert_memory_equal(one.zeros, two.zeros, ROWS * one.groups);
    qref_rtn_result_free(&one);
    qref_rtn_result_free(&two);
    free(weight);
}

static void test_rtn_rejects_bad_input(void **state)
{
    (void)state;
    float row[12] = {0};
    qref_rtn_result result;
    qref_error err = {0};

    qref_rtn_config config = {.bits = 4, .group_size = 5, .sym = false};
    assert_int_equal(qref_rtn_quantize("model.layers.0.mlp.up_proj.weight", row, 1, 12, &config, &result, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "model.layers.0.mlp.up_proj.weight"));
    assert_non_null(strstr(err.message, "group size 5"));
    assert_non_null(strstr(err.message, "row width 12"));
    qref_rtn_result_free(&result);

    config.group_size = 4;
    config.bits = 9;
    assert_int_equal(qref_rtn_quantize("w", row, 1, 12, &config, &result, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "bits 9"));
    qref_rtn_result_free(&result);

    /* A NaN in row 2 is reported for row 2, the lowest failing row, also with several threads. */
    float matrix[4 * 4] = {0};
    matrix[2 * 4 + 1] = NAN;
    matrix[3 * 4 + 0] = INFINITY;
    config.bits = 4;
    assert_int_equal(qref_rtn_quantize("w", matrix, 4, 4, &config, &result, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "row 2"));
    assert_non_null(strstr(err.message, "not finite"));
    qref_rtn_result_free(&result);

    /* A range of 1e-45 (the smallest float32 subnormals) gives a scale that underflows to 0. */
    float tiny[2] = {1e-45f, 0.0f};
    config.group_size = -1;
    assert_int_equal(qref_rtn_quantize("w", tiny, 1, 2, &config, &result, &err), QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "gives scale 0"));
    qref_rtn_result_free(&result);
}

/*
 * 4-bit, group 128, asymmetric RTN of the real matrix model.layers.0.self_attn.q_proj.weight
 * of fixtures/models/synth256 ([256, 256] f32). The relative Frobenius error
 * ||W - W_hat|| / ||W|| = 0.17651945670300115 comes from a float64 pure-Python port of
 * quant.py (find_params and quantize, Python's round() is half-to-even) run on the same file.
 * NOTE: tolerance 1e-5: float32 and float64 arithmetic can put a value on either side of a
 * rounding boundary, which moves a handful of codes by one step out of 65,536.
 */
static void test_rtn_synth256_q_proj_error(void **state)
{
    (void)state;
    qref_blob blob;
    qref_error err = {0};
    assert_int_equal(qref_blob_map_file(test_fixture_path("models/synth256/model.safetensors"), &blob, &err),
                     QREF_OK);
    qref_safetensors st;
    assert_int_equal(qref_safetensors_parse("model.safetensors", blob.data, blob.size, &st, &err), QREF_OK);
    const qref_tensor *tensor = qref_tensor_set_find(&st.tensors, "model.layers.0.self_attn.q_proj.weight");
    assert_non_null(tensor);
    assert_int_equal(tensor->dtype, QREF_DTYPE_F32);
    assert_int_equal(tensor->shape[0], 256);
    assert_int_equal(tensor->shape[1], 256);

    float *weight = malloc(256 * 256 * sizeof(float));
    assert_non_null(weight);
    for (size_t k = 0; k < 256 * 256; k++)
        weight[k] = qref_load_f32(tensor->data + 4 * k);

    qref_rtn_config config = {.bits = 4, .group_size = 128, .sym = false};
    qref_rtn_result result;
    assert_int_equal(qref_rtn_quantize(tensor->name, weight, 256, 256, &config, &result, &err), QREF_OK);
    double num = 0.0, den = 0.0;
    for (size_t k = 0; k < 256 * 256; k++) {
        double d = (double)result.dequant[k] - (double)weight[k];
        num += d * d;
        den += (double)weight[k] * (double)weight[k];
    }
    assert_float_equal(sqrt(num / den), 0.17651945670300115, 1e-5);

    qref_rtn_result_free(&result);
    free(weight);
    qref_safetensors_free(&st);
    qref_blob_free(&blob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rtn_worked_2bit_asym),
        cmocka_unit_test(test_rtn_worked_2bit_sym_clipping),
        cmocka_unit_test(test_rtn_worked_3bit),
        cmocka_unit_test(test_rtn_worked_all_positive),
        cmocka_unit_test(test_rtn_ties_round_to_even),
        cmocka_unit_test(test_rtn_all_zero_row),
        cmocka_unit_test(test_rtn_float32_operation_order),
        cmocka_unit_test(test_rtn_every_width_ladder),
        cmocka_unit_test(test_rtn_per_group),
        cmocka_unit_test(test_rtn_random_properties),
        cmocka_unit_test(test_rtn_thread_count_invariant),
        cmocka_unit_test(test_rtn_rejects_bad_input),
        cmocka_unit_test(test_rtn_synth256_q_proj_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
