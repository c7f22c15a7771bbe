/*
 * AWQ's pseudo quantizer in f16 (quant/qref_awq_rtn.h): one group worked by hand for each
 * branch, the clamp of the range at f16(1e-5), zero points clamped to [0, 15], and the
 * independence of the result from the OpenMP thread count.
 *
 * The expected values are worked by hand from pseudo_quantize_tensor (AutoAWQ
 * awq/quantize/quantizer.py) with every operation rounded to f16; the comments show each step.
 * f16 values in [2^e, 2^(e+1)) are 2^(e-10) apart.
 */
#include "test_support.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "quant/qref_awq_rtn.h"

static float f16(uint16_t bits)
{
    return qref_f16_to_f32(bits);
}

/*
 * Group [0.5, -1.2, 0.3, 2.0], 4 bits, zero_point true:
 *   f16 weights: 0.5, -1.2001953125 (0xBCCD), 0.300048828125 (0x34CD), 2.0
 *   max - min = 3.2001953125 = 1638.5 * 2^-9, a tie -> even 1638 * 2^-9 = 3.19921875
 *   scale = 3.19921875 / 15 = 0.21328125 = 1747.2 * 2^-13 -> 1747 * 2^-13 = 0.2132568359375 (0x32D3)
 *   min / scale = -5.62793... = -1440.75 * 2^-8 -> -1441 * 2^-8 = -5.62890625; round -> -6; zero = 6
 *   w / scale: 2.34457 -> f16 2.34375 -> 2 -> q = 8
 *              -5.62890625 -> -6 -> q = 0
 *              1.40697 -> f16 1.4072265625 -> 1 -> q = 7
 *              9.37836 -> f16 9.375 -> 9 -> q = 15
 *   w_hat = (q - 6) * scale: 2 s = 0.426513671875 (0x36D3) exact;
 *           -6 s = -10482 * 2^-13 = -1310.25 * 2^-10 -> -1310 * 2^-10 = -1.279296875 (0xBD1E);
 *           1 s = 0.2132568359375 (0x32D3); 9 s = 15723 * 2^-13 = 1965.375 * 2^-10 -> 1965 * 2^-10
 *           = 1.9189453125 (0x3FAD)
 */
static void asymmetric_group_by_hand(void **state)
{
    (void)state;
    const float weight[4] = {0.5f, -1.2f, 0.3f, 2.0f};
    qref_awq_rtn_config config = {.bits = 4, .group_size = 4, .zero_point = true};
    qref_awq_rtn_result result;
    qref_error err = {0};
    assert_int_equal(qref_awq_rtn_quantize("w", weight, 1, 4, &config, &result, &err), QREF_OK);
    assert_int_equal(result.scales[0], 0x32D3);
    assert_int_equal(result.zeros[0], 6);
    const uint8_t codes[4] = {8, 0, 7, 15};
    assert_memory_equal(result.codes, codes, 4);
    const uint16_t w_hat[4] = {0x36D3, 0xBD1E, 0x32D3, 0x3FAD};
    for (int k = 0; k < 4; k++)
        assert_int_equal(result.dequant[k], w_hat[k]);
    qref_awq_rtn_result_free(&result);
}

/*
 * The same group with zero_point false (max_int 7, min_int -8):
 *   max |w| = 2.0; scale = 2 / 7 = 0.285714 = 1170.29 * 2^-12 -> 1170 * 2^-12 = 0.28564453125 (0x3492)
 *   w / scale: 1.75044 -> f16 1.75 -> 2; -4.20162 -> -4.203125 -> -4; 1.05043 -> 1.05078125 -> 1;
 *              7.00171 -> 7.0 -> 7
 *   stored codes q + 8 = 10, 4, 9, 15 with zero 8
 *   w_hat = q * scale: 0.5712890625 (0x3892), -1.142578125 (0xBC92), 0.28564453125 (0x3492),
 *           7 s = 1.99951171875 = 2047.5 * 2^-10, a tie -> even 2048 * 2^-10 = 2.0 (0x4000)
 */
static void symmetric_group_by_hand(void **state)
{
    (void)state;
    const float weight[4] = {0.5f, -1.2f, 0.3f, 2.0f};
    qref_awq_rtn_config config = {.bits = 4, .group_size = 4, .zero_point = false};
    qref_awq_rtn_result result;
    qref_error err = {0};
    assert_int_equal(qref_awq_rtn_quantize("w", weight, 1, 4, &config, &result, &err), QREF_OK);
    assert_int_equal(result.scales[0], 0x3492);
    assert_int_equal(result.zeros[0], 8);
    const uint8_t codes[4] = {10, 4, 9, 15};
    assert_memory_equal(result.codes, codes, 4);
    const uint16_t w_hat[4] = {0x3892, 0xBC92, 0x3492, 0x4000};
    for (int k = 0; k < 4; k++)
        assert_int_equal(result.dequant[k], w_hat[k]);
    qref_awq_rtn_result_free(&result);
}

/*
 * A constant group [3, 3, 3, 3] has range 0, clamped to f16(1e-5) = 168 * 2^-24 (0x00A8, a
 * subnormal); scale = 168 * 2^-24 / 15 = 11.2 * 2^-24 -> 11 * 2^-24 (0x000B). zero =
 * clamp(-round(3 / scale)) = clamp(-inf) = 0, because 3 / 6.6e-7 overflows f16. Every code
 * clamps to 15, so w_hat = 15 * 11 * 2^-24 = 165 * 2^-24 (0x00A5): zero is not in range and
 * the group collapses, as in the original.
 */
static void constant_group_clamps(void **state)
{
    (void)state;
    const float weight[4] = {3.0f, 3.0f, 3.0f, 3.0f};
    qref_awq_rtn_config config = {.bits = 4, .group_size = -1, .zero_point = true};
    qref_awq_rtn_result result;
    qref_error err = {0};
    assert_int_equal(qref_awq_rtn_quantize("w", weight, 1, 4, &config, &result, &err), QREF_OK);
    assert_int_equal(result.groups, 1);
    assert_int_equal(result.scales[0], 0x000B);
    assert_int_equal(result.zeros[0], 0);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(result.codes[k], 15);
        assert_int_equal(result.dequant[k], 0x00A5);
    }
    qref_awq_rtn_result_free(&result);
}

/*
 * Zero points clamp to [0, 15]: [1, 2, 3, 4] has min 1 > 0, so -round(1 / 0.2) = -5 clamps to
 * 0 and the top values clip: scale = 3 / 15 = 0.2 -> f16 0.199951171875 (0x3266); codes
 * round(w / s) = 5, 10, 15, 20 -> clamp -> 5, 10, 15, 15. All negative: [-4, -3, -2, -1]
 * gives -round(-4 / s) = 20 -> 15, codes -20 + 15 ... -> 0, 0, 5, 10.
 */
static void zero_point_clamps(void **state)
{
    (void)state;
    const float weight[8] = {1.0f, 2.0f, 3.0f, 4.0f, -4.0f, -3.0f, -2.0f, -1.0f};
    qref_awq_rtn_config config = {.bits = 4, .group_size = 4, .zero_point = true};
    qref_awq_rtn_result result;
    qref_error err = {0};
    assert_int_equal(qref_awq_rtn_quantize("w", weight, 1, 8, &config, &result, &err), QREF_OK);
    assert_int_equal(result.scales[0], 0x3266);
    assert_int_equal(result.zeros[0], 0);
    assert_int_equal(result.zeros[1], 15);
    const uint8_t codes[8] = {5, 10, 15, 15, 0, 0, 5, 10};
    assert_memory_equal(result.codes, codes, 8);
    /* the clipped 4.0 comes back as 15 s = 2.999267578125 = 1535.625 * 2^-9 -> 1536 * 2^-9 = 3.0 */
    assert_int_equal(result.dequant[3], 0x4200);
    assert_true(f16(result.dequant[3]) == 3.0f);
    qref_awq_rtn_result_free(&result);
}

static void rejects_bad_input(void **state)
{
    (void)state;
    const float weight[4] = {0.5f, NAN, 0.3f, 2.0f};
    qref_awq_rtn_config config = {.bits = 4, .group_size = 4, .zero_point = true};
    qref_awq_rtn_result result;
    qref_error err = {0};
    test_assert_error(qref_awq_rtn_quantize("w", weight, 1, 4, &config, &result, &err), &err, QREF_ERR_INVALID,
                      "w: weight [0][1] = nan is not finite");
    qref_awq_rtn_result_free(&result);

    const float big[4] = {70000.0f, 0.0f, 0.0f, 0.0f};
    test_assert_error(qref_awq_rtn_quantize("w", big, 1, 4, &config, &result, &err), &err, QREF_ERR_INVALID,
                      "is infinite in f16");
    qref_awq_rtn_result_free(&result);

    /* range 40000 - (-40000) overflows f16, so the scale is infinite */
    const float wide[4] = {40000.0f, -40000.0f, 0.0f, 0.0f};
    test_assert_error(qref_awq_rtn_quantize("w", wide, 1, 4, &config, &result, &err), &err, QREF_ERR_INVALID,
                      "w: row 0, columns 0..3: the range of the group gives scale inf");
    qref_awq_rtn_result_free(&result);

    config.group_size = 3;
    test_assert_error(qref_awq_rtn_quantize("w", big, 1, 4, &config, &result, &err), &err, QREF_ERR_INVALID,
                      "group size 3 does not divide the row width 4");
    qref_awq_rtn_result_free(&result);
}

/* The same codes and values with 1 and 4 threads. */
static void thread_count_independent(void **state)
{
    (void)state;
    const size_t rows = 64, cols = 256;
    float *weight = malloc(rows * cols * sizeof *weight);
    assert_non_null(weight);
    test_rng rng = {42};
    for (size_t k = 0; k < rows * cols; k++)
        weight[k] = test_rng_float(&rng);
    qref_awq_rtn_config config = {.bits = 4, .group_size = 64, .zero_point = true};
    qref_awq_rtn_result one, four;
    qref_error err = {0};
    omp_set_num_threads(1);
    assert_int_equal(qref_awq_rtn_quantize("w", weight, rows, cols, &config, &one, &err), QREF_OK);
    omp_set_num_threads(4);
    assert_int_equal(qref_awq_rtn_quantize("w", weight, rows, cols, &config, &four, &err), QREF_OK);
    assert_memory_equal(one.codes, four.codes, rows * cols);
    assert_memory_equal(one.dequant, four.dequant, rows * cols * sizeof(uint16_t));
    assert_memory_equal(one.scales, four.scales, rows * one.groups * sizeof(uint16_t));
    assert_memory_equal(one.zeros, four.zeros, rows * one.groups);
    qref_awq_rtn_result_free(&one);
    qref_awq_rtn_result_free(&four);
    free(weight);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(asymmetric_group_by_hand),
        cmocka_unit_test(symmetric_group_by_hand),
        cmocka_unit_test(constant_group_clamps),
        cmocka_unit_test(zero_point_clamps),
        cmocka_unit_test(rejects_bad_input),
        cmocka_unit_test(thread_count_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
