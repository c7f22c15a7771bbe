/*
 * The byte-level BPE encoder does work in proportion to its input: encoding 4 MB costs about
 * four times what 1 MB costs. The test counts the encoder's steps (regex matches, pieces, heap
 * operations and the levels they move through, added-token trie steps) instead of timing them,
 * so machine load cannot make it flaky.
 *
 * The bound: per byte, the 4 MB text may cost at most 1.5 times the 1 MB text. An encoder with
 * a quadratic step (a rescan of the text or of a long piece per merge) costs about 4 times as
 * much per byte at 4 MB. Heap levels grow with the logarithm of a piece's length, by a factor
 * of log2(4n) / log2(n) = 1.12 for a single piece of n = 128 KiB.
 *
 * NOTE: the counts do not see inside PCRE2, so backtracking in the regex itself is checked
 * only by the long-run cases of test_model_bpe finishing.
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/qref_bpe.h"

/* WikiText sizes; single long pieces are merged through the heap, so they use an eighth of
 * these to keep the test short */
#define SMALL_BYTES ((size_t)1 << 20)
#define LARGE_BYTES ((size_t)4 << 20)
#define PIECE_SMALL_BYTES (SMALL_BYTES / 8)
#define PIECE_LARGE_BYTES (LARGE_BYTES / 8)
#define MAX_COST_RATIO 1.5

static qref_bpe *g_bpe;

static int load_llama3(void **state)
{
    (void)state;
    size_t size = 0;
    char *json = test_read_file(test_fixture_path("tokenizers/llama3/tokenizer.json"), &size);
    qref_error err = {0};
    qref_status status = qref_bpe_load_hf_json("tokenizer.json", json, size, NULL, NULL, 0, &g_bpe, &err);
    free(json);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    return status == QREF_OK ? 0 : -1;
}

static int free_llama3(void **state)
{
    (void)state;
    qref_bpe_free(g_bpe);
    return 0;
}

/* Total steps of encoding text[0..length). */
static uint64_t encode_cost(const char *text, size_t length)
{
    qref_bpe_work work = {0};
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    qref_status status = qref_bpe_encode_counted(g_bpe, text, length, false, true, &ids, &count, &work, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    free(ids);
    return work.regex_matches + work.pieces + work.heap_pushes + work.heap_pops + work.heap_sift_steps +
           work.trie_steps;
}

/* Checks the cost per byte of large against small (both prefixes of text). */
static void check_linear(const char *what, const char *text, size_t small, size_t large)
{
    double small_cost = (double)encode_cost(text, small) / (double)small;
    double large_cost = (double)encode_cost(text, large) / (double)large;
    print_message("%s: %.4f steps per byte at %zu bytes, %.4f at %zu bytes\n", what, small_cost, small, large_cost,
                  large);
    assert_true(small_cost > 0.0);
    assert_true(large_cost <= MAX_COST_RATIO * small_cost);
}

/* Largest length <= limit at which text has a line break, so no UTF-8 character is cut. */
static size_t cut_at_line(const char *text, size_t limit)
{
    while (limit > 0 && text[limit - 1] != '\n')
        limit--;
    assert_true(limit > 0);
    return limit;
}

static void test_wikitext_linear(void **state)
{
    (void)state;
    /* WikiText-2's test split repeated to 4 MB; the 1 MB text is its prefix */
    size_t raw_size = 0;
    char *raw = test_read_file(test_fixture_path("datasets/wikitext-2-raw/wiki.test.raw"), &raw_size);
    char *text = malloc(LARGE_BYTES);
    assert_non_null(text);
    for (size_t used = 0; used < LARGE_BYTES; used += raw_size)
        memcpy(text + used, raw, used + raw_size <= LARGE_BYTES ? raw_size : LARGE_BYTES - used);
    free(raw);
    check_linear("wikitext", text, cut_at_line(text, SMALL_BYTES), cut_at_line(text, LARGE_BYTES));
    free(text);
}

static void test_single_pieces_linear(void **state)
{
    (void)state;
    /* one piece per text: letters (merged through the heap), punctuation, a digit run (pieces of
     * three) and a run of spaces */
    char *text = malloc(PIECE_LARGE_BYTES);
    assert_non_null(text);
    const char fills[] = {'q', '#', '9', ' '};
    for (size_t f = 0; f < sizeof fills; f++) {
        memset(text, fills[f], PIECE_LARGE_BYTES);
        char what[32];
        snprintf(what, sizeof what, "a run of '%c'", fills[f]);
        check_linear(what, text, PIECE_SMALL_BYTES, PIECE_LARGE_BYTES);
    }

    /* special tokens back to back: every position starts a trie walk */
    static const char special[] = "<|eot_id|>";
    size_t special_length = sizeof special - 1;
    for (size_t used = 0; used + special_length <= PIECE_LARGE_BYTES; used += special_length)
        memcpy(text + used, special, special_length);
    check_linear("special tokens", text, PIECE_SMALL_BYTES / special_length * special_length,
                 PIECE_LARGE_BYTES / special_length * special_length);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wikitext_linear),
        cmocka_unit_test(test_single_pieces_linear),
    };
    return cmocka_run_group_tests(tests, load_llama3, free_llama3);
}
