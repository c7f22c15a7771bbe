/*
 * llama.cpp's SentencePiece-style tokenizer built from GGUF metadata (model/qref_spm_llamacpp.h
 * through qref_tokenizer_load_gguf).
 *
 * Expected values come from llama.cpp itself:
 *   - fixtures/tokenizers/llama2/vectors/llama-spm.inp/.out are llama.cpp's own test vectors of
 *     ggml-vocab-llama-spm.gguf (models/ggml-vocab-llama-spm.gguf.inp/.out, run by
 *     test-tokenizer-0 without BOS and without parsing special tokens);
 *   - 809289 is the number of tokens llama.cpp (commit c392e50, llama-perplexity) produced for
 *     wiki.test.raw minus one trailing newline with the stories260k GGUF vocabulary, BOS
 *     included (fixtures/goldens/perplexity.json notes), where the SentencePiece library gives
 *     809283 on the same vocabulary.
 * The hand-made vocabularies below check single rules of llama_vocab::impl::tokenize; their
 * expected ids follow from the rule stated at each case.
 */
#include "test_support.h"

#include <stdlib.h>
#include <string.h>

#include "io/qref_dataset.h"
#include "io/qref_gguf.h"
#include "model/qref_spm.h"
#include "model/qref_spm_llamacpp.h"
#include "model/qref_tokenizer.h"

static qref_tokenizer *load_gguf_tokenizer(const char *relative, qref_gguf *g)
{
    qref_error err = {0};
    qref_status status = qref_gguf_open(test_fixture_path(relative), g, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    qref_tokenizer *tokenizer = NULL;
    status = qref_tokenizer_load_gguf(g, relative, &tokenizer, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    assert_non_null(tokenizer);
    return tokenizer;
}

/* Parses one line of space-separated ids; returns the count. */
static size_t parse_ids(const char *line, size_t length, int32_t *ids, size_t capacity)
{
    size_t count = 0, pos = 0;
    while (pos < length) {
        while (pos < length && line[pos] == ' ')
            pos++;
        if (pos == length)
            break;
        char *end = NULL;
        long value = strtol(line + pos, &end, 10);
        assert_true(end > line + pos);
        assert_true(count < capacity);
        ids[count++] = (int32_t)value;
        pos = (size_t)(end - line);
    }
    return count;
}

static void llama_spm_vectors(void **state)
{
    (void)state;
    qref_gguf g;
    qref_tokenizer *tokenizer = load_gguf_tokenizer("tokenizers/llama2/ggml-vocab-llama-spm.gguf", &g);
    assert_int_equal(qref_tokenizer_kind_of(tokenizer), QREF_TOKENIZER_GGUF_SPM);
    assert_int_equal(qref_tokenizer_vocab_size(tokenizer), 32000);
    assert_int_equal(qref_tokenizer_bos_id(tokenizer), 1);
    assert_int_equal(qref_tokenizer_eos_id(tokenizer), 2);
    assert_true(qref_tokenizer_adds_bos(tokenizer));

    size_t input_size = 0, output_size = 0;
    char *input = test_read_file(test_fixture_path("tokenizers/llama2/vectors/llama-spm.inp"), &input_size);
    char *output = test_read_file(test_fixture_path("tokenizers/llama2/vectors/llama-spm.out"), &output_size);

    /* As in test-tokenizer-0.cpp: the cases are the parts between "\n__ggml_vocab_test__\n". */
    static const char separator[] = "\n__ggml_vocab_test__\n";
    size_t cases = 0, in_pos = 0, out_pos = 0;
    while (in_pos < input_size) {
        char *next = strstr(input + in_pos, separator);
        size_t case_length = next != NULL ? (size_t)(next - (input + in_pos)) : input_size - in_pos;
        char *line_end = memchr(output + out_pos, '\n', output_size - out_pos);
        assert_non_null(line_end);
        size_t line_length = (size_t)(line_end - (output + out_pos));
        int32_t expected[1024];
        size_t expected_count = parse_ids(output + out_pos, line_length, expected, 1024);

        int32_t *ids = NULL;
        size_t count = 0;
        qref_error err = {0};
        assert_int_equal(qref_tokenizer_encode(tokenizer, input + in_pos, case_length, false, &ids, &count, &err),
                         QREF_OK);
        if (count != expected_count)
            print_error("case %zu (\"%.*s\"): %zu ids, expected %zu\n", cases, (int)case_length, input + in_pos,
                        count, expected_count);
        assert_int_equal(count, expected_count);
        for (size_t i = 0; i < count; i++) {
            if (ids[i] != expected[i])
                print_error("case %zu: id %zu is %d, expected %d\n", cases, i, ids[i], expected[i]);
            assert_int_equal(ids[i], expected[i]);
        }
        free(ids);
        cases++;
        in_pos = next != NULL ? (size_t)(next - input) + sizeof separator - 1 : input_size;
        out_pos += line_length + 1;
    }
    assert_int_equal(cases, 46);
    assert_int_equal(out_pos, output_size);
    free(input);
    free(output);
    qref_tokenizer_free(tokenizer);
    qref_gguf_free(&g);
}

static void stories260k_wikitext_count(void **state)
{
    (void)state;
    qref_gguf g;
    qref_tokenizer *tokenizer = load_gguf_tokenizer("models/stories260k-gguf/stories260k-f32.gguf", &g);
    qref_wikitext wikitext;
    qref_error err = {0};
    assert_int_equal(qref_wikitext_load_file(test_fixture_path("datasets/wikitext-2-raw/wiki.test.raw"),
                                             QREF_WIKITEXT_TEST, &wikitext, &err),
                     QREF_OK);

    int32_t *ids = NULL;
    size_t count = 0;
    assert_int_equal(qref_tokenizer_encode(tokenizer, wikitext.llamacpp_text, wikitext.llamacpp_size, true, &ids,
                                           &count, &err),
                     QREF_OK);
    assert_int_equal(count, 809289);
    assert_int_equal(ids[0], 1);

    /* The SentencePiece library on the same vocabulary (the snapshot's tokenizer.model) gives 809283. */
    qref_spm *library = NULL;
    assert_int_equal(qref_spm_load_file(test_fixture_path("models/stories260k/tokenizer.model"), &library, &err),
                     QREF_OK);
    int32_t *library_ids = NULL;
    size_t library_count = 0;
    assert_int_equal(qref_spm_encode(library, wikitext.llamacpp_text, wikitext.llamacpp_size, true, &library_ids,
                                     &library_count, &err),
                     QREF_OK);
    assert_int_equal(library_count, 809283);

    free(ids);
    free(library_ids);
    qref_spm_free(library);
    qref_wikitext_free(&wikitext);
    qref_tokenizer_free(tokenizer);
    qref_gguf_free(&g);
}

/* ---- hand-made vocabularies --------------------------------------------------------------- */

static qref_spm_llamacpp *load_vocab(const char *const *tokens, const float *scores, const int32_t *types,
                                     size_t count, bool add_space_prefix)
{
    qref_spm_llamacpp_vocab vocab = {
        .display = "test.gguf", .token_count = count, .tokens = tokens, .scores = scores, .token_types = types,
        .bos_id = 1, .eos_id = 2, .unk_id = 0, .add_bos = true, .add_space_prefix = add_space_prefix,
    };
    qref_spm_llamacpp *spm = NULL;
    qref_error err = {0};
    qref_status status = qref_spm_llamacpp_load(&vocab, &spm, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    return spm;
}

static void expect_ids(const qref_spm_llamacpp *spm, const char *text, bool add_bos, const int32_t *expected,
                       size_t expected_count)
{
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    qref_status status = qref_spm_llamacpp_encode(spm, text, strlen(text), add_bos, &ids, &count, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    if (count != expected_count)
        print_error("\"%s\": %zu ids, expected %zu\n", text, count, expected_count);
    assert_int_equal(count, expected_count);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(ids[i], expected[i]);
    free(ids);
}

/* ids: 0 <unk>, 1 <s>, 2 </s>, 3 "<0x61>" ('a'), 4 "▁", 5 "a", 6 "b", 7 "▁a", 8 "ab", 9 "▁ab", 10 "<u>" */
static const char *const small_tokens[] = {"<unk>", "<s>", "</s>", "<0x61>", "\xe2\x96\x81", "a", "b",
                                           "\xe2\x96\x81" "a", "ab", "\xe2\x96\x81" "ab", "<u>"};
static const int32_t small_types[] = {2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 4};

static void merges_by_score_then_left(void **state)
{
    (void)state;
    /* "▁a" scores above "ab", so "▁ab" forms through "▁a" + "b" */
    const float scores[] = {0, 0, 0, 0, -1, -2, -3, -0.5f, -0.7f, -0.6f, 0};
    qref_spm_llamacpp *spm = load_vocab(small_tokens, scores, small_types, 11, true);
    expect_ids(spm, "ab", true, (const int32_t[]){1, 9}, 2);

    /* Two spaces are kept (no remove_extra_whitespaces): "▁▁ab" = "▁" + "▁ab" */
    expect_ids(spm, " ab", false, (const int32_t[]){4, 9}, 2);

    /* Equal scores: the leftmost pair merges first. "aab" with "ab" and "▁a" tied: "▁a" (left) wins. */
    const float tied[] = {0, 0, 0, 0, -1, -2, -3, -0.5f, -0.5f, -9, 0};
    qref_spm_llamacpp *tied_spm = load_vocab(small_tokens, tied, small_types, 11, false);
    /* without a space prefix "aab" -> "a", "ab": no "▁", so only "ab" can form */
    expect_ids(tied_spm, "aab", false, (const int32_t[]){5, 8}, 2);
    /* " ab": "▁a" and "ab" tie, "▁a" is leftmost, then "▁a" + "b" = "▁ab" */
    expect_ids(tied_spm, " ab", false, (const int32_t[]){9}, 1);
    qref_spm_llamacpp_free(tied_spm);
    qref_spm_llamacpp_free(spm);
}

static void byte_fallback_and_user_defined(void **state)
{
    (void)state;
    const float scores[] = {0, 0, 0, 0, -1, -2, -3, -0.5f, -0.7f, -0.6f, 0};
    qref_spm_llamacpp *spm = load_vocab(small_tokens, scores, small_types, 11, true);

    /* "<u>" is USER_DEFINED: cut out first, and the text after it gets the space prefix again */
    expect_ids(spm, "a<u>a", false, (const int32_t[]){7, 10, 7}, 3);
    /* "<s>" is CONTROL: ordinary text (parse_special = false); '<', 's', '>' have no byte token */
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    test_assert_error(qref_spm_llamacpp_encode(spm, "<s>", 3, false, &ids, &count, &err), &err, QREF_ERR_INVALID,
                      "test.gguf: byte 0x3C has no token (expected \"<0x3C>\"");

    /* 'a' as a lone byte: the vocabulary has "a" itself, and <0x61> is only used when "a" is absent */
    expect_ids(spm, "a", false, (const int32_t[]){7}, 1);
    qref_spm_llamacpp_free(spm);

    /* Without "a", the symbol "a" falls back to the byte token <0x61>. */
    const char *const no_a[] = {"<unk>", "<s>", "</s>", "<0x61>", "\xe2\x96\x81"};
    const int32_t no_a_types[] = {2, 3, 3, 6, 1};
    qref_spm_llamacpp *fallback = load_vocab(no_a, NULL, no_a_types, 5, true);
    expect_ids(fallback, "a", false, (const int32_t[]){4, 3}, 2);
    qref_spm_llamacpp_free(fallback);
}

static void empty_text_and_decode(void **state)
{
    (void)state;
    const float scores[] = {0, 0, 0, 0, -1, -2, -3, -0.5f, -0.7f, -0.6f, 0};
    qref_spm_llamacpp *spm = load_vocab(small_tokens, scores, small_types, 11, true);
    expect_ids(spm, "", true, (const int32_t[]){1}, 1);
    expect_ids(spm, "", false, NULL, 0);

    char *text = NULL;
    size_t length = 0;
    qref_error err = {0};
    assert_int_equal(qref_spm_llamacpp_decode(spm, (const int32_t[]){1, 9, 4, 3}, 4, &text, &length, &err),
                     QREF_OK);
    assert_string_equal(text, "ab a");
    free(text);
    test_assert_error(qref_spm_llamacpp_decode(spm, (const int32_t[]){11}, 1, &text, &length, &err), &err,
                      QREF_ERR_INVALID, "id 11 at position 0 is outside the vocabulary of 11 tokens");
    qref_spm_llamacpp_free(spm);
}

static void load_rejects_bad_vocab(void **state)
{
    (void)state;
    qref_spm_llamacpp *spm = NULL;
    qref_error err = {0};
    const int32_t bad_types[] = {2, 3, 3, 6, 9};
    qref_spm_llamacpp_vocab vocab = {.display = "bad.gguf", .token_count = 5, .tokens = small_tokens,
                                     .token_types = bad_types, .bos_id = 1, .eos_id = 2, .unk_id = 0};
    test_assert_error(qref_spm_llamacpp_load(&vocab, &spm, &err), &err, QREF_ERR_INVALID,
                      "bad.gguf: token_type[4] = 9, expected 1 to 6");
    vocab.token_types = NULL;
    vocab.bos_id = 5;
    test_assert_error(qref_spm_llamacpp_load(&vocab, &spm, &err), &err, QREF_ERR_INVALID,
                      "bad.gguf: bos_token_id 5 is outside the vocabulary of 5 tokens");
    assert_null(spm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama_spm_vectors),
        cmocka_unit_test(stories260k_wikitext_count),
        cmocka_unit_test(merges_by_score_then_left),
        cmocka_unit_test(byte_fallback_and_user_defined),
        cmocka_unit_test(empty_text_and_decode),
        cmocka_unit_test(load_rejects_bad_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
