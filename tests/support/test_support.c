#define _XOPEN_SOURCE 700 /* nftw, strdup */
#include "test_support.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *test_fixture_path(const char *relative)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", QCONFORM_FIXTURES_DIR, relative);
    return path;
}

const char *test_tmp_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", QCONFORM_TEST_TMPDIR, name);
    return path;
}

void test_write_file(const char *path, const void *data, size_t size)
{
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, size, file), size);
    assert_int_equal(fclose(file), 0);
}

char *test_read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    assert_int_equal(fseek(file, 0, SEEK_END), 0);
    long length = ftell(file);
    assert_true(length >= 0);
    rewind(file);
    char *buffer = malloc((size_t)length + 1);
    assert_non_null(buffer);
    assert_int_equal(fread(buffer, 1, (size_t)length, file), (size_t)length);
    fclose(file);
    buffer[length] = '\0';
    if (size != NULL)
        *size = (size_t)length;
    return buffer;
}

uint64_t test_rng_next(test_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float test_rng_float(test_rng *rng)
{
    return (float)((double)(test_rng_next(rng) >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

void test_assert_error(qref_status got, const qref_error *err, qref_status expected, const char *phrase)
{
    if (got != expected || strstr(err->message, phrase) == NULL)
        print_error("status %d, message: %s\nexpected status %d and the phrase: %s\n", got, err->message, expected,
                    phrase);
    assert_int_equal(got, expected);
    assert_non_null(strstr(err->message, phrase));
}

static int remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk)
{
    (void)info;
    (void)type;
    (void)walk;
    return remove(path);
}

char *test_scratch_path(const char *name)
{
    char *path = strdup(test_tmp_path(name));
    assert_non_null(path);
    struct stat info;
    if (lstat(path, &info) == 0)
        assert_int_equal(nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    return path;
}

qref_tensor test_tensor_view(const char *name, qref_dtype dtype, int ndim, int64_t rows, int64_t cols,
                             const void *data)
{
    qref_tensor tensor;
    memset(&tensor, 0, sizeof tensor);
    tensor.name = (char *)name;
    tensor.dtype = dtype;
    tensor.ndim = ndim;
    tensor.shape[0] = rows;
    tensor.shape[1] = ndim == 2 ? cols : 0;
    tensor.numel = (uint64_t)rows * (uint64_t)(ndim == 2 ? cols : 1);
    tensor.nbytes = tensor.numel * qref_dtype_size(dtype);
    tensor.data = data;
    return tensor;
}
