/*
 * SentencePiece BPE tokenizer: loading, validation and encoding.
 *
 * Sources of the expected values:
 *   - llama.cpp's tokenizer test vectors for the LLaMA SentencePiece vocabulary
 *     (fixtures/tokenizers/llama2/vectors/llama-spm.inp/.out, produced by the Hugging Face /
 *     SentencePiece tokenizer), split exactly as llama.cpp tests/test-tokenizer-0.cpp does;
 *   - llama2.c's input ids for stories260k (fixtures/goldens/stories260k-once-upon-a-time.json);
 *   - token counts of the SentencePiece library 0.1.97 on WikiText-2
 *     (fixtures/goldens/perplexity.json);
 *   - small hand-built models whose expected ids follow from the merge rules of
 *     sentencepiece bpe_model.cc by hand; a comment at each case gives the derivation.
 */
#include "test_support.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_dataset.h"
#include "model/qref_spm.h"

/* ------------------------------------------------------------------------------------------ */
/* A protobuf writer for hand-built models                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct pb_buffer {
    uint8_t *data;
    size_t size;
    size_t capacity;
} pb_buffer;

static void pb_raw(pb_buffer *b, const void *bytes, size_t length)
{
    if (b->size + length > b->capacity) {
        b->capacity = (b->size + length) * 2 + 64;
        b->data = realloc(b->data, b->capacity);
        assert_non_null(b->data);
    }
    if (length > 0)
        memcpy(b->data + b->size, bytes, length);
    b->size += length;
}

static void pb_varint(pb_buffer *b, uint64_t value)
{
    uint8_t bytes[10];
    size_t n = 0;
    do {
        bytes[n] = (uint8_t)(value & 0x7f);
        value >>= 7;
        if (value != 0)
            bytes[n] |= 0x80;
        n++;
    } while (value != 0);
    pb_raw(b, bytes, n);
}

static void pb_field_varint(pb_buffer *b, uint32_t number, int64_t value)
{
    pb_varint(b, (uint64_t)number << 3 | 0);
    pb_varint(b, (uint64_t)value);
}

static void pb_field_bytes(pb_buffer *b, uint32_t number, const void *bytes, size_t length)
{
    pb_varint(b, (uint64_t)number << 3 | 2);
    pb_varint(b, length);
    pb_raw(b, bytes, length);
}

static void pb_field_float(pb_buffer *b, uint32_t number, float value)
{
    uint8_t bytes[4];
    uint32_t bits;
    memcpy(&bits, &value, 4);
    for (int i = 0; i < 4; i++)
        bytes[i] = (uint8_t)(bits >> (8 * i));
    pb_varint(b, (uint64_t)number << 3 | 5);
    pb_raw(b, bytes, 4);
}

static void pb_field_message(pb_buffer *b, uint32_t number, pb_buffer *message)
{
    pb_field_bytes(b, number, message->data, message->size);
    free(message->data);
    memset(message, 0, sizeof *message);
}

#define SP "\xe2\x96\x81" /* U+2581, the escaped space */

typedef struct test_piece {
    const char *piece;
    float score;
    int type;
} test_piece;

static void add_piece(pb_buffer *model, const char *piece, size_t length, float score, int type)
{
    pb_buffer message = {0};
    pb_field_bytes(&message, 1, piece, length);
    pb_field_float(&message, 2, score);
    if (type != QREF_SPM_PIECE_NORMAL)
        pb_field_varint(&message, 3, type);
    pb_field_message(model, 1, &message);
}

/* Options of a hand-built model; fields left at -1 are not written (the .proto default). */
typedef struct test_model_options {
    int model_type;
    int byte_fallback;
    int add_dummy_prefix;
    int remove_extra_whitespaces;
    int escape_whitespaces;
    int treat_whitespace_as_suffix;
    int with_byte_pieces;
} test_model_options;

static const test_model_options DEFAULT_OPTIONS = {2, -1, -1, -1, -1, -1, 0};

/* <unk>, <s>, </s>, then the given pieces, then (optionally) the 256 byte pieces. */
static pb_buffer build_model(const test_piece *pieces, size_t count, test_model_options options)
{
    pb_buffer model = {0};
    add_piece(&model, "<unk>", 5, 0.0f, QREF_SPM_PIECE_UNKNOWN);
    add_piece(&model, "<s>", 3, 0.0f, QREF_SPM_PIECE_CONTROL);
    add_piece(&model, "</s>", 4, 0.0f, QREF_SPM_PIECE_CONTROL);
    for (size_t i = 0; i < count; i++)
        add_piece(&model, pieces[i].piece, strlen(pieces[i].piece), pieces[i].score,
                  pieces[i].type);
    if (options.with_byte_pieces) {
        for (int byte = 0; byte < 256; byte++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", byte);
            add_piece(&model, name, 6, 0.0f, QREF_SPM_PIECE_BYTE);
        }
    }

    pb_buffer trainer = {0};
    if (options.model_type >= 0)
        pb_field_varint(&trainer, 3, options.model_type);
    if (options.treat_whitespace_as_suffix >= 0)
        pb_field_varint(&trainer, 24, options.treat_whitespace_as_suffix);
    if (options.byte_fallback >= 0)
        pb_field_varint(&trainer, 35, options.byte_fallback);
    pb_field_message(&model, 2, &trainer);

    pb_buffer normalizer = {0};
    pb_field_bytes(&normalizer, 1, "identity", 8);
    if (options.add_dummy_prefix >= 0)
        pb_field_varint(&normalizer, 3, options.add_dummy_prefix);
    if (options.remove_extra_whitespaces >= 0)
        pb_field_varint(&normalizer, 4, options.remove_extra_whitespaces);
    if (options.escape_whitespaces >= 0)
        pb_field_varint(&normalizer, 5, options.escape_whitespaces);
    pb_field_message(&model, 3, &normalizer);
    return model;
}

static qref_spm *load_model(pb_buffer *model)
{
    qref_spm *spm = NULL;
    qref_error err = {0};
    qref_status status = qref_spm_load("test.model", model->data, model->size, &spm, &err);
    if (status != QREF_OK)
        fail_msg("test model rejected: %s", err.message);
    return spm;
}

/* Encodes text without BOS and compares with the expected ids. */
static void check_encode(const qref_spm *spm, const char *text, const int32_t *expected,
                         size_t expected_count)
{
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    qref_status status = qref_spm_encode(spm, text, strlen(text), false, &ids, &count, &err);
    if (status != QREF_OK)
        fail_msg("encoding \"%s\" failed: %s", text, err.message);
    if (count != expected_count) {
        print_error("encoding \"%s\": %zu ids, expected %zu\n", text, count, expected_count);
        for (size_t i = 0; i < count; i++)
            print_error("  got id %d\n", ids[i]);
    }
    assert_int_equal(count, expected_count);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(ids[i], expected[i]);
    free(ids);
}

#define CHECK_ENCODE(spm, text, ...)                                                       \
    do {                                                                                   \
        const int32_t expected_[] = {__VA_ARGS__};                                         \
        check_encode(spm, text, expected_, sizeof expected_ / sizeof expected_[0]);        \
    } while (0)

static qref_spm *load_fixture_model(const char *relative)
{
    qref_spm *spm = NULL;
    qref_error err = {0};
    qref_status status = qref_spm_load_file(test_fixture_path(relative), &spm, &err);
    if (status != QREF_OK)
        fail_msg("%s", err.message);
    return spm;
}

/* ------------------------------------------------------------------------------------------ */
/* Real vocabularies                                                                          */
/* ------------------------------------------------------------------------------------------ */

static void test_llama2_model_fields(void **state)
{
    (void)state;
    qref_spm *spm = load_fixture_model("tokenizers/llama2/tokenizer.model");
    /* Values of the LLaMA-2 tokenizer.model as published by Meta. */
    assert_int_equal(qref_spm_vocab_size(spm), 32000);
    assert_int_equal(qref_spm_unk_id(spm), 0);
    assert_int_equal(qref_spm_bos_id(spm), 1);
    assert_int_equal(qref_spm_eos_id(spm), 2);
    assert_int_equal(qref_spm_pad_id(spm), -1);
    assert_true(qref_spm_byte_fallback(spm));
    assert_true(qref_spm_add_dummy_prefix(spm));
    assert_false(qref_spm_remove_extra_whitespaces(spm));
    assert_true(qref_spm_escape_whitespaces(spm));
    assert_string_equal(qref_spm_normalizer_name(spm), "identity");
    size_t length = 0;
    const char *piece = qref_spm_piece(spm, 3, &length);
    assert_int_equal(length, 6);
    assert_memory_equal(piece, "<0x00>", 6);
    assert_int_equal(qref_spm_piece_type_of(spm, 3), QREF_SPM_PIECE_BYTE);
    assert_null(qref_spm_piece(spm, 32000, NULL));
    qref_spm_free(spm);
}

/* Parses one line of ids ("  1 2 3") into ids; returns the count. */
static size_t parse_ids(const char *line, size_t length, int32_t *ids, size_t capacity)
{
    size_t count = 0;
    size_t pos = 0;
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

static void test_llama_cpp_vectors(void **state)
{
    (void)state;
    qref_spm *spm = load_fixture_model("tokenizers/llama2/tokenizer.model");
    size_t input_size = 0, output_size = 0;
    char *input = test_read_file(test_fixture_path("tokenizers/llama2/vectors/llama-spm.inp"),
                                 &input_size);
    char *output = test_read_file(test_fixture_path("tokenizers/llama2/vectors/llama-spm.out"),
                                  &output_size);

    /*
     * As in test-tokenizer-0.cpp, the inputs are the parts of the whole file between the
     * separators "\n__ggml_vocab_test__\n". The file ends with a separator, which adds no empty
     * case. The expected ids are the lines of the .out file in the same order.
     */
    static const char separator[] = "\n__ggml_vocab_test__\n";
    const size_t separator_length = sizeof separator - 1;
    size_t cases = 0;
    size_t in_pos = 0, out_pos = 0;
    while (in_pos < input_size) {
        char *next = strstr(input + in_pos, separator);
        size_t case_length = next != NULL ? (size_t)(next - (input + in_pos)) : input_size - in_pos;

        assert_true(out_pos < output_size);
        char *line_end = memchr(output + out_pos, '\n', output_size - out_pos);
        size_t line_length = line_end != NULL ? (size_t)(line_end - (output + out_pos))
                                              : output_size - out_pos;
        int32_t expected[1024];
        size_t expected_count = parse_ids(output + out_pos, line_length, expected, 1024);

        int32_t *ids = NULL;
        size_t count = 0;
        qref_error err = {0};
        assert_int_equal(qref_spm_encode(spm, input + in_pos, case_length, false, &ids, &count,
                                         &err),
                         QREF_OK);
        if (count != expected_count)
            print_error("case %zu (\"%.*s\"): %zu ids, expected %zu\n", cases, (int)case_length,
                        input + in_pos, count, expected_count);
        assert_int_equal(count, expected_count);
        for (size_t i = 0; i < count; i++) {
            if (ids[i] != expected[i])
                print_error("case %zu: id %zu is %d, expected %d\n", cases, i, ids[i],
                            expected[i]);
            assert_int_equal(ids[i], expected[i]);
        }
        free(ids);

        cases++;
        in_pos = next != NULL ? (size_t)(next - input) + separator_length : input_size;
        out_pos += line_length + 1;
    }
    /* The fixture has 46 cases, and every .out line must have been used. */
    assert_int_equal(cases, 46);
    assert_true(out_pos >= output_size);
    free(input);
    free(output);
    qref_spm_free(spm);
}

static void test_stories260k_once_upon_a_time(void **state)
{
    (void)state;
    qref_spm *spm = load_fixture_model("models/stories260k/tokenizer.model");
    assert_int_equal(qref_spm_vocab_size(spm), 512);
    assert_true(qref_spm_remove_extra_whitespaces(spm));

    char *json = test_read_file(test_fixture_path("goldens/stories260k-once-upon-a-time.json"),
                                NULL);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    cJSON *golden = cJSON_GetObjectItemCaseSensitive(root, "input_ids");
    assert_true(cJSON_IsArray(golden));

    /* llama2.c's input ids begin with the prompt's encoding, BOS first. */
    const char *prompt = "Once upon a time";
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    assert_int_equal(qref_spm_encode(spm, prompt, strlen(prompt), true, &ids, &count, &err),
                     QREF_OK);
    assert_true(count >= 2);
    assert_true(count < (size_t)cJSON_GetArraySize(golden));
    for (size_t i = 0; i < count; i++)
        assert_int_equal(ids[i], cJSON_GetArrayItem(golden, (int)i)->valueint);

    /* The ids decode back to the prompt. */
    char *text = NULL;
    size_t length = 0;
    assert_int_equal(qref_spm_decode(spm, ids, count, &text, &length, &err), QREF_OK);
    assert_string_equal(text, prompt);

    /* Extra spaces vanish with this vocabulary (remove_extra_whitespaces). */
    const char *spaced = "  Once   upon a  time ";
    int32_t *spaced_ids = NULL;
    size_t spaced_count = 0;
    assert_int_equal(qref_spm_encode(spm, spaced, strlen(spaced), true, &spaced_ids,
                                     &spaced_count, &err),
                     QREF_OK);
    assert_int_equal(spaced_count, count);
    assert_memory_equal(spaced_ids, ids, count * sizeof *ids);

    free(spaced_ids);
    free(text);
    free(ids);
    cJSON_Delete(root);
    free(json);
    qref_spm_free(spm);
}

/* Number of ids for text with BOS. */
static size_t count_tokens(const qref_spm *spm, const char *text, size_t length)
{
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    qref_status status = qref_spm_encode(spm, text, length, true, &ids, &count, &err);
    if (status != QREF_OK)
        fail_msg("%s", err.message);
    assert_int_equal(ids[0], 1);
    free(ids);
    return count;
}

static void test_wikitext2_token_counts(void **state)
{
    (void)state;
    qref_spm *spm = load_fixture_model("models/stories260k/tokenizer.model");
    qref_wikitext wikitext;
    qref_error err = {0};
    assert_int_equal(qref_wikitext_load_file(
                         test_fixture_path("datasets/wikitext-2-raw/wiki.test.raw"),
                         QREF_WIKITEXT_TEST, &wikitext, &err),
                     QREF_OK);

    char *json = test_read_file(test_fixture_path("goldens/perplexity.json"), NULL);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "values"), 0);
    cJSON *tokens = cJSON_GetObjectItemCaseSensitive(first, "tokens");
    assert_true(cJSON_IsNumber(tokens));

    /* The study text: the SentencePiece library gives 815066 ids, BOS included. */
    assert_int_equal(count_tokens(spm, wikitext.study_text, wikitext.study_size),
                     (size_t)tokens->valuedouble);
    assert_int_equal((size_t)tokens->valuedouble, 815066);

    /*
     * llama.cpp's text: perplexity.json's notes give 809283 ids from the SentencePiece library;
     * that count includes BOS (809282 text ids).
     */
    assert_int_equal(count_tokens(spm, wikitext.llamacpp_text, wikitext.llamacpp_size), 809283);

    cJSON_Delete(root);
    free(json);
    qref_wikitext_free(&wikitext);
    qref_spm_free(spm);
}

/* ------------------------------------------------------------------------------------------ */
/* Hand-built models: merge order, ties, normalizer options, special pieces                   */
/* ------------------------------------------------------------------------------------------ */

/* Ids in build_model: 0 <unk>, 1 <s>, 2 </s>, then pieces[i] at 3 + i. */
static void test_merge_order_by_score(void **state)
{
    (void)state;
    const test_piece pieces[] = {
        {SP, -1.0f, 1},   /* 3 */
        {"a", -1.0f, 1},  /* 4 */
        {"b", -1.0f, 1},  /* 5 */
        {"c", -1.0f, 1},  /* 6 */
        {"ab", -2.0f, 1}, /* 7 */
        {"bc", -1.5f, 1}, /* 8 */
        {"abc", -3.0f, 1},/* 9 */
        {SP "a", -4.0f, 1}, /* 10 */
    };
    pb_buffer model = build_model(pieces, 8, DEFAULT_OPTIONS);
    qref_spm *spm = load_model(&model);
    /*
     * "abc" -> "▁abc": candidates ▁a (-4), ab (-2), bc (-1.5). bc wins; then a+bc = abc (-3)
     * beats ▁a (-4); ▁abc is not a piece. Result ▁ abc.
     */
    CHECK_ENCODE(spm, "abc", 3, 9);
    /* "ab": candidates ▁a (-4) and ab (-2): ab wins, then ▁ab is not a piece. */
    CHECK_ENCODE(spm, "ab", 3, 7);
    /* "a": only ▁a. */
    CHECK_ENCODE(spm, "a", 10);
    qref_spm_free(spm);
    free(model.data);
}

static void test_merge_ties_go_left(void **state)
{
    (void)state;
    const test_piece pieces[] = {
        {SP, -1.0f, 1},  /* 3 */
        {"a", -1.0f, 1}, /* 4 */
        {"aa", -1.0f, 1},/* 5 */
    };
    pb_buffer model = build_model(pieces, 3, DEFAULT_OPTIONS);
    qref_spm *spm = load_model(&model);
    /* "▁aaa": two candidates aa with the same score; the leftmost merges first: ▁ aa a. */
    CHECK_ENCODE(spm, "aaa", 3, 5, 4);
    /* "▁aaaa": aa aa (left pair, then the next free pair). */
    CHECK_ENCODE(spm, "aaaa", 3, 5, 5);
    qref_spm_free(spm);
    free(model.data);
}

static void test_byte_fallback_and_unknown(void **state)
{
    (void)state;
    const test_piece pieces[] = {{SP, -1.0f, 1}, {"a", -1.0f, 1}};
    test_model_options options = DEFAULT_OPTIONS;
    options.byte_fallback = 1;
    options.with_byte_pieces = 1;
    pb_buffer model = build_model(pieces, 2, options);
    qref_spm *spm = load_model(&model);
    /* Byte pieces follow the 5 ids above: <0xXX> has id 5 + XX. "é" is C3 A9 in UTF-8. */
    CHECK_ENCODE(spm, "a\xc3\xa9", 3, 4, 5 + 0xc3, 5 + 0xa9);
    /* A malformed byte becomes U+FFFD (EF BF BD), which falls back to its three bytes. */
    CHECK_ENCODE(spm, "\xff", 3, 5 + 0xef, 5 + 0xbf, 5 + 0xbd);
    /* NUL is an ordinary character. */
    {
        const int32_t expected[] = {3, 5, 4};
        int32_t *ids = NULL;
        size_t count = 0;
        qref_error err = {0};
        assert_int_equal(qref_spm_encode(spm, "\0a", 2, false, &ids, &count, &err), QREF_OK);
        assert_int_equal(count, 3);
        assert_memory_equal(ids, expected, sizeof expected);
        free(ids);
    }
    qref_spm_free(spm);
    free(model.data);

    /* Without byte fallback a run of unknown characters is one unknown id (0). */
    pb_buffer plain = build_model(pieces, 2, DEFAULT_OPTIONS);
    spm = load_model(&plain);
    CHECK_ENCODE(spm, "\xc3\xa9\xc3\xa9" "a\xc3\xa9", 3, 0, 4, 0);
    qref_spm_free(spm);
    free(plain.data);
}

static void test_user_defined_symbols(void **state)
{
    (void)state;
    const test_piece pieces[] = {
        {SP, -1.0f, 1},                           /* 3 */
        {"a", -1.0f, 1},                          /* 4 */
        {"b", -1.0f, 1},                          /* 5 */
        {"<", -1.0f, 1},                          /* 6 */
        {"a<", 0.0f, 1},                          /* 7 */
        {"<sep>", 0.0f, QREF_SPM_PIECE_USER_DEFINED}, /* 8 */
        {"<sep>b", 5.0f, 1},                      /* 9 */
    };
    pb_buffer model = build_model(pieces, 7, DEFAULT_OPTIONS);
    qref_spm *spm = load_model(&model);
    /* The user-defined piece stays whole and never merges, although a< and <sep>b exist. */
    CHECK_ENCODE(spm, "a<sep>b", 3, 4, 8, 5);
    qref_spm_free(spm);
    free(model.data);
}

static void test_unused_pieces_resegmented(void **state)
{
    (void)state;
    const test_piece pieces[] = {
        {SP, -1.0f, 1},                        /* 3 */
        {"a", -1.0f, 1},                       /* 4 */
        {"b", -1.0f, 1},                       /* 5 */
        {"c", -1.0f, 1},                       /* 6 */
        {"ab", -1.0f, QREF_SPM_PIECE_UNUSED},  /* 7 */
        {"abc", -2.0f, 1},                     /* 8 */
    };
    pb_buffer model = build_model(pieces, 6, DEFAULT_OPTIONS);
    qref_spm *spm = load_model(&model);
    /* ab merges but is UNUSED, so it is split back into a b. */
    CHECK_ENCODE(spm, "ab", 3, 4, 5);
    /* ab then ab+c = abc, a normal piece. */
    CHECK_ENCODE(spm, "abc", 3, 8);
    qref_spm_free(spm);
    free(model.data);
}

static void check_encode_empty(const qref_spm *spm, const char *text)
{
    int32_t *ids = NULL;
    size_t count = 1;
    qref_error err = {0};
    assert_int_equal(qref_spm_encode(spm, text, strlen(text), false, &ids, &count, &err),
                     QREF_OK);
    assert_int_equal(count, 0);
    free(ids);
}

static void test_normalizer_options(void **state)
{
    (void)state;
    /* Ids: ▁ 3, a 4, b 5, space 6 (reachable only when spaces are not escaped). */
    const test_piece pieces[] = {{SP, -1.0f, 1}, {"a", -1.0f, 1}, {"b", -1.0f, 1},
                                 {" ", -1.0f, 1}};
    test_model_options options = DEFAULT_OPTIONS;

    /* Defaults: leading, trailing and repeated spaces go, one dummy prefix, spaces as ▁. */
    pb_buffer model = build_model(pieces, 4, options);
    qref_spm *spm = load_model(&model);
    CHECK_ENCODE(spm, "  a   b  ", 3, 4, 3, 5);
    check_encode_empty(spm, "   ");
    check_encode_empty(spm, "");
    /* Only ' ' is whitespace to the normalizer: a tab stays (unknown here) between spaces. */
    CHECK_ENCODE(spm, "a \t b", 3, 4, 3, 0, 3, 5);
    qref_spm_free(spm);
    free(model.data);

    /* remove_extra_whitespaces false (the LLaMA setting): every space is kept. */
    options.remove_extra_whitespaces = 0;
    model = build_model(pieces, 4, options);
    spm = load_model(&model);
    CHECK_ENCODE(spm, "  a   b  ", 3, 3, 3, 4, 3, 3, 3, 5, 3, 3);
    CHECK_ENCODE(spm, " ", 3, 3);
    qref_spm_free(spm);
    free(model.data);

    /* add_dummy_prefix false: no leading ▁. */
    options = DEFAULT_OPTIONS;
    options.add_dummy_prefix = 0;
    model = build_model(pieces, 4, options);
    spm = load_model(&model);
    CHECK_ENCODE(spm, " a b", 4, 3, 5);
    qref_spm_free(spm);
    free(model.data);

    /* escape_whitespaces false: spaces stay ' ', and trailing ' ' is still removed. */
    options = DEFAULT_OPTIONS;
    options.escape_whitespaces = 0;
    model = build_model(pieces, 4, options);
    spm = load_model(&model);
    CHECK_ENCODE(spm, "a b  ", 6, 4, 6, 5);
    qref_spm_free(spm);
    free(model.data);

    /* treat_whitespace_as_suffix: the dummy space goes at the end. */
    options = DEFAULT_OPTIONS;
    options.treat_whitespace_as_suffix = 1;
    model = build_model(pieces, 4, options);
    spm = load_model(&model);
    CHECK_ENCODE(spm, "a b", 4, 3, 5, 3);
    qref_spm_free(spm);
    free(model.data);
}

static void test_bos_and_control_text(void **state)
{
    (void)state;
    const test_piece pieces[] = {{SP, -1.0f, 1}, {"a", -1.0f, 1},
                                 {"X", 0.0f, QREF_SPM_PIECE_CONTROL}};
    pb_buffer model = build_model(pieces, 3, DEFAULT_OPTIONS);
    qref_spm *spm = load_model(&model);
    assert_int_equal(qref_spm_bos_id(spm), 1);
    assert_int_equal(qref_spm_eos_id(spm), 2);

    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    assert_int_equal(qref_spm_encode(spm, "a", 1, true, &ids, &count, &err), QREF_OK);
    assert_int_equal(count, 3);
    assert_int_equal(ids[0], 1);
    free(ids);
    assert_int_equal(qref_spm_encode(spm, "", 0, true, &ids, &count, &err), QREF_OK);
    assert_int_equal(count, 1);
    assert_int_equal(ids[0], 1);
    free(ids);

    /* A character that is a CONTROL piece: the library fails such text, and so does this. */
    assert_int_equal(qref_spm_encode(spm, "aX", 2, false, &ids, &count, &err), QREF_ERR_INVALID);
    assert_null(ids);
    assert_non_null(strstr(err.message, "CONTROL piece 5"));
    qref_spm_free(spm);
    free(model.data);
}

static void append_self_test(pb_buffer *model, const char *input, const char *expected)
{
    pb_buffer sample = {0};
    pb_field_bytes(&sample, 1, input, strlen(input));
    pb_field_bytes(&sample, 2, expected, strlen(expected));
    pb_buffer data = {0};
    pb_field_message(&data, 1, &sample);
    pb_field_message(model, 4, &data);
}

static void test_self_test_samples(void **state)
{
    (void)state;
    const test_piece pieces[] = {{SP, -1.0f, 1}, {"a", -1.0f, 1}, {"b", -1.0f, 1},
                                 {"ab", -1.0f, QREF_SPM_PIECE_UNUSED}};
    /* The library checks self_test_data samples at load: "ab" encodes to the pieces ▁ a b. */
    pb_buffer model = build_model(pieces, 4, DEFAULT_OPTIONS);
    append_self_test(&model, "ab", SP " a b");
    qref_spm *spm = load_model(&model);
    qref_spm_free(spm);
    free(model.data);

    model = build_model(pieces, 4, DEFAULT_OPTIONS);
    append_self_test(&model, "ab", SP " ab");
    qref_error err = {0};
    assert_int_equal(qref_spm_load("test.model", model.data, model.size, &spm, &err),
                     QREF_ERR_INVALID);
    assert_null(spm);
    assert_non_null(strstr(err.message, "self-test sample \"ab\""));
    free(model.data);
}

/* ------------------------------------------------------------------------------------------ */
/* Malformed models                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* Loads data under the name "bad.model" and checks the status and a part of the message. */
static void check_rejected(const uint8_t *data, size_t size, qref_status expected,
                           const char *message_part)
{
    qref_spm *spm = NULL;
    qref_error err = {0};
    qref_status status = qref_spm_load("bad.model", data, size, &spm, &err);
    if (status != expected || strstr(err.message, message_part) == NULL)
        print_error("status %d (expected %d), message: %s\n", status, expected, err.message);
    assert_int_equal(status, expected);
    assert_null(spm);
    assert_non_null(strstr(err.message, "bad.model"));
    assert_non_null(strstr(err.message, message_part));
}

static uint8_t *read_stories_model(size_t *size)
{
    return (uint8_t *)test_read_file(test_fixture_path("models/stories260k/tokenizer.model"),
                                     size);
}

/* Start offsets of the top-level fields of a well-formed model (all are length-delimited). */
static size_t top_level_fields(const uint8_t *data, size_t size, size_t *starts, size_t capacity)
{
    size_t count = 0, pos = 0;
    while (pos < size) {
        assert_true(count < capacity);
        starts[count++] = pos;
        assert_int_equal(data[pos] & 7, 2);
        pos++;
        uint64_t length = 0;
        for (int shift = 0;; shift += 7) {
            uint8_t byte = data[pos++];
            length |= (uint64_t)(byte & 0x7f) << shift;
            if ((byte & 0x80) == 0)
                break;
        }
        pos += (size_t)length;
    }
    assert_int_equal(pos, size);
    return count;
}

static void test_reject_truncated(void **state)
{
    (void)state;
    size_t size = 0;
    uint8_t *data = read_stories_model(&size);
    size_t starts[1024];
    size_t fields = top_level_fields(data, size, starts, 1024);
    assert_int_equal(fields, 512 + 2); /* 512 pieces, trainer_spec, normalizer_spec */

    /* A cut strictly inside a field leaves a truncated varint or a payload past the end. */
    test_rng rng = {20240501};
    for (int i = 0; i < 64; i++) {
        size_t field = (size_t)(test_rng_next(&rng) % fields);
        size_t end = field + 1 < fields ? starts[field + 1] : size;
        size_t cut = starts[field] + 1 + (size_t)(test_rng_next(&rng) % (end - starts[field] - 1));
        qref_spm *spm = NULL;
        qref_error err = {0};
        assert_int_equal(qref_spm_load("bad.model", data, cut, &spm, &err), QREF_ERR_INVALID);
        assert_null(spm);
        assert_true(strstr(err.message, "truncated") != NULL ||
                    strstr(err.message, "remain in the message") != NULL);
    }

    /* Cut between fields: no pieces at all, or pieces without trainer_spec (UNIGRAM default). */
    check_rejected(data, 0, QREF_ERR_INVALID, "ModelProto.pieces is empty");
    check_rejected(data, starts[100], QREF_ERR_UNSUPPORTED, "model_type is 1 (UNIGRAM)");
    free(data);
}

static void test_reject_bad_varint(void **state)
{
    (void)state;
    size_t size = 0;
    uint8_t *data = read_stories_model(&size);

    /* Eleven 0xff bytes where the first tag starts. */
    memset(data, 0xff, 11);
    check_rejected(data, size, QREF_ERR_INVALID, "overflows 64 bits");

    /* A tag varint cut by the end of the message, after one piece "A". */
    const uint8_t dangling[] = {0x0a, 0x03, 0x0a, 0x01, 0x41, 0x80};
    check_rejected(dangling, sizeof dangling, QREF_ERR_INVALID, "tag varint at byte 5 is truncated");
    free(data);
}

static void test_reject_bad_wire_type(void **state)
{
    (void)state;
    size_t size = 0;
    uint8_t *data = read_stories_model(&size);
    assert_int_equal(data[0], 0x0a); /* field 1 (pieces), length-delimited */

    data[0] = 0x0d; /* field 1 as a 32-bit value */
    check_rejected(data, size, QREF_ERR_INVALID, "ModelProto.pieces (field 1) at byte 0 has wire type 5");
    data[0] = 0x0b; /* field 1 as a group start */
    check_rejected(data, size, QREF_ERR_INVALID, "wire type 3 (start group)");
    data[0] = 0x0e; /* wire type 6 does not exist */
    check_rejected(data, size, QREF_ERR_INVALID, "wire type 6");
    data[0] = 0x02; /* field number 0 */
    check_rejected(data, size, QREF_ERR_INVALID, "field number 0");
    free(data);

    /* trainer_spec.model_type written as a string. */
    const test_piece pieces[] = {{SP, -1.0f, 1}};
    test_model_options options = DEFAULT_OPTIONS;
    options.model_type = -1;
    pb_buffer model = build_model(pieces, 1, options);
    pb_buffer trainer = {0};
    pb_field_bytes(&trainer, 3, "BPE", 3);
    pb_field_message(&model, 2, &trainer);
    check_rejected(model.data, model.size, QREF_ERR_INVALID,
                   "ModelProto.trainer_spec.model_type (field 3)");
    free(model.data);
}

static void test_reject_length_past_end(void **state)
{
    (void)state;
    size_t size = 0;
    uint8_t *data = read_stories_model(&size);
    pb_buffer model = {0};
    pb_raw(&model, data, size);
    const uint8_t tail[] = {0x22, 100, 'a', 'b', 'c'}; /* field 4 claims 100 bytes, has 3 */
    pb_raw(&model, tail, sizeof tail);
    check_rejected(model.data, model.size, QREF_ERR_INVALID,
                   "field 4 at byte 7645 needs 100 payload byte(s) but only 3 remain");
    free(model.data);

    /* A piece whose string length runs past the end of its piece message. */
    pb_buffer broken = {0};
    const uint8_t piece[] = {0x0a, 0x04, 0x0a, 0x09, 'a', 'b'};
    pb_raw(&broken, piece, sizeof piece);
    check_rejected(broken.data, broken.size, QREF_ERR_INVALID, "ModelProto.pieces[0]: field 1");
    free(broken.data);
    free(data);
}

static void test_reject_model_type(void **state)
{
    (void)state;
    const test_piece pieces[] = {{SP, -1.0f, 1}};
    test_model_options options = DEFAULT_OPTIONS;

    options.model_type = 1;
    pb_buffer model = build_model(pieces, 1, options);
    check_rejected(model.data, model.size, QREF_ERR_UNSUPPORTED,
                   "model_type is 1 (UNIGRAM), expected 2 (BPE)");
    free(model.data);

    options.model_type = 4;
    model = build_model(pieces, 1, options);
    check_rejected(model.data, model.size, QREF_ERR_UNSUPPORTED, "model_type is 4 (CHAR)");
    free(model.data);

    options.model_type = -1; /* absent: the .proto default is UNIGRAM */
    model = build_model(pieces, 1, options);
    check_rejected(model.data, model.size, QREF_ERR_UNSUPPORTED, "model_type is 1 (UNIGRAM)");
    free(model.data);

    options.model_type = 9;
    model = build_model(pieces, 1, options);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "model_type (field 3) at byte");
    free(model.data);
}

/* A BPE model with the given raw pieces (no implicit <unk>, <s>, </s>) and extra trainer fields. */
static pb_buffer build_raw_model(const test_piece *pieces, size_t count, pb_buffer *trainer_extra,
                                 pb_buffer *normalizer)
{
    pb_buffer model = {0};
    for (size_t i = 0; i < count; i++)
        add_piece(&model, pieces[i].piece, strlen(pieces[i].piece), pieces[i].score,
                  pieces[i].type);
    pb_buffer trainer = {0};
    pb_field_varint(&trainer, 3, 2);
    if (trainer_extra != NULL) {
        pb_raw(&trainer, trainer_extra->data, trainer_extra->size);
        free(trainer_extra->data);
        memset(trainer_extra, 0, sizeof *trainer_extra);
    }
    pb_field_message(&model, 2, &trainer);
    if (normalizer != NULL)
        pb_field_message(&model, 3, normalizer);
    return model;
}

static void test_reject_inconsistent_pieces(void **state)
{
    (void)state;
    pb_buffer model;

    const test_piece no_unknown[] = {{"<s>", 0.0f, 3}, {"</s>", 0.0f, 3}, {"a", 0.0f, 1}};
    model = build_raw_model(no_unknown, 3, NULL, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "no UNKNOWN piece");
    free(model.data);

    const test_piece two_unknown[] = {{"<unk>", 0.0f, 2}, {"<s>", 0.0f, 3}, {"</s>", 0.0f, 3},
                                      {"<unk2>", 0.0f, 2}};
    model = build_raw_model(two_unknown, 4, NULL, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "pieces[3] is a second UNKNOWN piece");
    free(model.data);

    const test_piece duplicate[] = {{"<unk>", 0.0f, 2}, {"<s>", 0.0f, 3}, {"</s>", 0.0f, 3},
                                    {"a", 0.0f, 1}, {"a", -1.0f, 1}};
    model = build_raw_model(duplicate, 5, NULL, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "pieces[4] \"a\" duplicates pieces[3]");
    free(model.data);

    const test_piece empty[] = {{"<unk>", 0.0f, 2}, {"", 0.0f, 1}};
    model = build_raw_model(empty, 2, NULL, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "ModelProto.pieces[1].piece is empty");
    free(model.data);

    const test_piece byte_piece[] = {{"<unk>", 0.0f, 2}, {"<s>", 0.0f, 3}, {"</s>", 0.0f, 3},
                                     {"<0x41>", 0.0f, 6}};
    model = build_raw_model(byte_piece, 4, NULL, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID,
                   "BYTE piece but trainer_spec.byte_fallback is false");
    free(model.data);

    pb_buffer fallback = {0};
    pb_field_varint(&fallback, 35, 1);
    model = build_raw_model(byte_piece, 4, &fallback, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "<0x00> is missing");
    free(model.data);

    const test_piece bad_type[] = {{"<unk>", 0.0f, 2}, {"a", 0.0f, 7}};
    model = build_raw_model(bad_type, 2, NULL, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "pieces[1].type (field 3)");
    free(model.data);

    const test_piece nan_score[] = {{"<unk>", 0.0f, 2}, {"a", NAN, 1}};
    model = build_raw_model(nan_score, 2, NULL, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "pieces[1].score (field 2)");
    free(model.data);
}

static void test_reject_bad_ids_and_fields(void **state)
{
    (void)state;
    const test_piece pieces[] = {{"<unk>", 0.0f, 2}, {"<s>", 0.0f, 3}, {"</s>", 0.0f, 3},
                                 {"a", 0.0f, 1}};
    pb_buffer model, extra;

    extra = (pb_buffer){0};
    pb_field_varint(&extra, 41, 600); /* bos_id past the 4 pieces */
    model = build_raw_model(pieces, 4, &extra, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "trainer_spec.bos_id is 600");
    free(model.data);

    extra = (pb_buffer){0};
    pb_field_varint(&extra, 42, 3); /* eos_id names the NORMAL piece "a" */
    model = build_raw_model(pieces, 4, &extra, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID,
                   "trainer_spec.eos_id is 3, but the piece \"</s>\" resolves to id 2");
    free(model.data);

    extra = (pb_buffer){0};
    pb_field_varint(&extra, 40, (int64_t)1 << 40); /* not an int32 */
    model = build_raw_model(pieces, 4, &extra, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "unk_id (field 40)");
    free(model.data);

    extra = (pb_buffer){0};
    pb_field_varint(&extra, 35, 2); /* bool out of range */
    model = build_raw_model(pieces, 4, &extra, NULL);
    check_rejected(model.data, model.size, QREF_ERR_INVALID, "byte_fallback (field 35)");
    free(model.data);

    pb_buffer normalizer = {0};
    pb_field_bytes(&normalizer, 1, "nmt_nfkc", 8);
    pb_field_bytes(&normalizer, 2, "\x04\x00\x00\x00xxxxyy", 10);
    model = build_raw_model(pieces, 4, NULL, &normalizer);
    check_rejected(model.data, model.size, QREF_ERR_UNSUPPORTED,
                   "precompiled_charsmap has 10 bytes (normalizer \"nmt_nfkc\")");
    free(model.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_model_fields),
        cmocka_unit_test(test_llama_cpp_vectors),
        cmocka_unit_test(test_stories260k_once_upon_a_time),
        cmocka_unit_test(test_wikitext2_token_counts),
        cmocka_unit_test(test_merge_order_by_score),
        cmocka_unit_test(test_merge_ties_go_left),
        cmocka_unit_test(test_byte_fallback_and_unknown),
        cmocka_unit_test(test_user_defined_symbols),
        cmocka_unit_test(test_unused_pieces_resegmented),
        cmocka_unit_test(test_normalizer_options),
        cmocka_unit_test(test_bos_and_control_text),
        cmocka_unit_test(test_self_test_samples),
        cmocka_unit_test(test_reject_truncated),
        cmocka_unit_test(test_reject_bad_varint),
        cmocka_unit_test(test_reject_bad_wire_type),
        cmocka_unit_test(test_reject_length_past_end),
        cmocka_unit_test(test_reject_model_type),
        cmocka_unit_test(test_reject_inconsistent_pieces),
        cmocka_unit_test(test_reject_bad_ids_and_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
