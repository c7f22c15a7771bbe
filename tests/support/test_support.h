/* Helpers shared by the CMocka unit tests: fixture paths, scratch files, tensor views and a seeded PRNG. */
#ifndef QCONFORM_TEST_SUPPORT_H
#define QCONFORM_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/qref_error.h"
#include "io/qref_tensor.h"

/* Absolute path of a file under fixtures/; returns a static buffer valid until the next call. */
const char *test_fixture_path(const char *relative);

/* Absolute path under the test scratch folder (created by CMake); same lifetime rule. */
const char *test_tmp_path(const char *name);

/* Writes size bytes to path, failing the test on error. */
void test_write_file(const char *path, const void *data, size_t size);

/* Reads a whole file into a NUL-terminated heap buffer, failing the test on error. */
char *test_read_file(const char *path, size_t *size);

/* Fails unless got == expected and err's message contains phrase; prints both on failure. */
void test_assert_error(qref_status got, const qref_error *err, qref_status expected, const char *phrase);

/* Returns an owned path under the test scratch folder with nothing at it (an earlier run's tree removed). */
char *test_scratch_path(const char *name);

/* Returns a tensor view of data: [rows] when ndim is 1, else [rows, cols]. */
qref_tensor test_tensor_view(const char *name, qref_dtype dtype, int ndim, int64_t rows, int64_t cols,
                             const void *data);

/* SplitMix64: a small deterministic generator for seeded test inputs. */
typedef struct test_rng {
    uint64_t state;
} test_rng;

uint64_t test_rng_next(test_rng *rng);
/* Uniform float in [-1, 1). */
float test_rng_float(test_rng *rng);

#endif
