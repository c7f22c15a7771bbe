/*
 * compare_f32 ACTUAL EXPECTED TOLERANCE: compares two files of little-endian f32 values.
 * Prints the largest absolute difference; exits 0 when the files hold the same number of
 * values and every difference is within TOLERANCE, 1 otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: compare_f32 ACTUAL EXPECTED TOLERANCE\n");
        return 2;
    }
    double tolerance = strtod(argv[3], NULL);
    qref_blob actual = {0}, expected = {0};
    qref_error err = {0};
    if (qref_blob_map_file(argv[1], &actual, &err) != QREF_OK || qref_blob_map_file(argv[2], &expected, &err) != QREF_OK) {
        fprintf(stderr, "compare_f32: %s\n", err.message);
        return 1;
    }
    if (actual.size != expected.size || actual.size % 4 != 0) {
        fprintf(stderr, "compare_f32: %s has %zu bytes, %s has %zu\n", argv[1], actual.size, argv[2], expected.size);
        return 1;
    }
    double max_error = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < actual.size / 4; i++) {
        double error = fabs((double)qref_load_f32(actual.data + 4 * i) - (double)qref_load_f32(expected.data + 4 * i));
        if (!(error <= max_error)) {
            max_error = isnan(error) ? INFINITY : error;
            worst = i;
        }
    }
    printf("compare_f32: %zu values, max |difference| %.3g at index %zu (tolerance %g)\n", actual.size / 4,
           max_error, worst, tolerance);
    qref_blob_free(&actual);
    qref_blob_free(&expected);
    return max_error <= tolerance ? 0 : 1;
}
