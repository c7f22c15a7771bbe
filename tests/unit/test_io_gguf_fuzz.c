/*
 * GGUF reader robustness: 10,000 seeded mutations of a real GGUF file.
 *
 * Each mutant is parsed from an exact-size heap buffer, so that AddressSanitizer reports any
 * read past its end. A mutant that parses has every metadata value and every tensor read
 * back, and every supported tensor dequantized. The test passes when no mutant crashes, trips
 * a sanitizer, or returns a status other than OK, INVALID or UNSUPPORTED, and when every error
 * message names the file. Hangs are caught by the ctest TIMEOUT. The run is labelled "long"
 * (tens of seconds under the sanitizers), so default CI skips it:
 *   ctest --test-dir build-asan -L long
 */
#include "test_support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_ggml.h"
#include "io/qref_gguf.h"

#define FUZZ_SEED 0xf022ed6067ull
#define FUZZ_MUTANTS 10000

/* Values that tend to sit on a limit: zero, one, powers of two and their neighbours, all ones. */
static uint64_t interesting_value(test_rng *rng)
{
    static const uint64_t values[] = {
        0,           1,           2,          3,          4,          5,          8,           9,
        12,          13,          31,         32,         33,         63,         64,          65,
        255,         256,         65535,      65536,      0x7fffffff, 0x80000000, 0xffffffff,  0x100000000ull,
        1ull << 42,  (1ull << 42) + 1, 1ull << 60, 1ull << 61, 1ull << 62, 0x7fffffffffffffffull,
        0x8000000000000000ull, 0xffffffffffffffffull, 0x055555555555555aull,
    };
    return values[test_rng_next(rng) % (sizeof values / sizeof values[0])];
}

/* Mutates a copy of the file in place and may shorten *size. Most mutations hit the header,
 * where the parser reads, and some hit the data section. */
static void mutate(uint8_t *bytes, size_t *size, size_t header_end, test_rng *rng)
{
    int rounds = 1 + (int)(test_rng_next(rng) % 4);
    for (int r = 0; r < rounds; r++) {
        size_t span = test_rng_next(rng) % 8 == 0 ? *size : header_end;
        if (span == 0)
            return;
        size_t at = test_rng_next(rng) % span;
        switch (test_rng_next(rng) % 6) {
        case 0: /* flip one bit */
            bytes[at] ^= (uint8_t)(1u << (test_rng_next(rng) % 8));
            break;
        case 1: /* a random byte */
            bytes[at] = (uint8_t)test_rng_next(rng);
            break;
        case 2: /* a limit value as a u32 */
            if (at + 4 <= *size)
                qref_store_u32(bytes + at, (uint32_t)interesting_value(rng));
            break;
        case 3: /* a limit value as a u64 */
            if (at + 8 <= *size)
                qref_store_u64(bytes + at, interesting_value(rng));
            break;
        case 4: /* truncate */
            *size = at;
            if (header_end > *size)
                header_end = *size;
            break;
        case 5: { /* copy a short run of bytes over another place */
            size_t from = test_rng_next(rng) % span;
            size_t n = 1 + test_rng_next(rng) % 16;
            if (from + n <= *size && at + n <= *size)
                memmove(bytes + at, bytes + from, n);
            break;
        }
        }
    }
}

/* Reads back everything a parsed file offers, as a consumer would. */
static void exercise(const qref_gguf *g)
{
    qref_error err = {0};
    for (size_t i = 0; i < g->kv_count; i++) {
        const qref_gguf_kv *kv = &g->kvs[i];
        assert_ptr_equal(qref_gguf_find_kv(g, kv->key), kv);
        if (kv->type == QREF_GGUF_TYPE_ARRAY) {
            qref_gguf_array array;
            assert_int_equal(qref_gguf_get_array(g, kv->key, kv->elem_type, &array, &err), QREF_OK);
            for (uint64_t k = 0; k < array.count; k++) {
                qref_gguf_string s;
                int64_t i64;
                float f32;
                qref_gguf_array_get_string(&array, k, &s, &err);
                qref_gguf_array_get_i64(&array, k, &i64, &err);
                qref_gguf_array_get_f32(&array, k, &f32, &err);
            }
            continue;
        }
        uint64_t u64;
        int64_t i64;
        double f64;
        bool flag;
        qref_gguf_string s;
        qref_gguf_get_u64(g, kv->key, &u64, &err);
        qref_gguf_get_i64(g, kv->key, &i64, &err);
        qref_gguf_get_f64(g, kv->key, &f64, &err);
        qref_gguf_get_bool(g, kv->key, &flag, &err);
        if (qref_gguf_get_string(g, kv->key, &s, &err) == QREF_OK)
            assert_true(s.data + s.length <= (const char *)g->data + g->size);
    }
    for (size_t i = 0; i < g->tensor_count; i++) {
        const qref_gguf_tensor *t = &g->tensors[i];
        assert_ptr_equal(qref_gguf_find_tensor(g, t->name), t);
        assert_true(t->data + t->nbytes <= g->data + g->size);
        if (!qref_ggml_type_can_dequantize(t->type) || t->numel > (1u << 22))
            continue;
        float *out = malloc(t->numel * sizeof *out);
        assert_non_null(out);
        assert_int_equal(qref_ggml_dequantize_tensor(g, t, out, &err), QREF_OK);
        free(out);
    }
}

static void mutants_never_crash(void **state)
{
    (void)state;
    size_t size;
    uint8_t *original = (uint8_t *)test_read_file(test_fixture_path("models/stories260k-gguf/stories260k-Q4_K_M.gguf"),
                                                  &size);
    qref_gguf g;
    qref_error err = {0};
    assert_int_equal(qref_gguf_parse("original", original, size, &g, &err), QREF_OK);
    size_t header_end = (size_t)g.data_offset;
    qref_gguf_free(&g);

    test_rng rng = {FUZZ_SEED};
    unsigned counts[3] = {0};
    for (int i = 0; i < FUZZ_MUTANTS; i++) {
        uint8_t *bytes = malloc(size);
        assert_non_null(bytes);
        memcpy(bytes, original, size);
        size_t mutant_size = size;
        mutate(bytes, &mutant_size, header_end, &rng);

        /* An exact-size buffer: a read past mutant_size is a heap overflow that ASan reports. */
        uint8_t *exact = malloc(mutant_size > 0 ? mutant_size : 1);
        assert_non_null(exact);
        memcpy(exact, bytes, mutant_size);
        free(bytes);

        qref_status status = qref_gguf_parse("mutant.gguf", exact, mutant_size, &g, &err);
        if (status == QREF_OK) {
            counts[0]++;
            exercise(&g);
            qref_gguf_free(&g);
        } else if (status == QREF_ERR_INVALID || status == QREF_ERR_UNSUPPORTED) {
            counts[status == QREF_ERR_INVALID ? 1 : 2]++;
            if (strncmp(err.message, "mutant.gguf: ", 13) != 0)
                fail_msg("mutant %d: message without the file name: %s", i, err.message);
        } else {
            fail_msg("mutant %d: status %d (%s): %s", i, status, qref_status_name(status), err.message);
        }
        free(exact);
    }
    print_message("%d mutants: %u parsed, %u invalid, %u unsupported\n", FUZZ_MUTANTS, counts[0], counts[1],
                  counts[2]);
    /* The mutations reach both outcomes, so the run exercised the checks and the readers. */
    assert_true(counts[0] > 0);
    assert_true(counts[1] > 0);
    free(original);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mutants_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
