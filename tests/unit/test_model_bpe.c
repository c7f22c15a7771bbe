/*
 * Byte-level BPE tokenizer: the LLaMA-3 tokenizer from tokenizer.json, from Meta's tiktoken
 * tokenizer.model and from plain arrays, small hand-built tokenizers, and malformed inputs.
 *
 * Sources of the expected values:
 *   - llama.cpp's tokenizer test vectors for the LLaMA-3 vocabulary
 *     (fixtures/tokenizers/llama3/vectors/llama-bpe.inp/.out, written by Hugging Face's
 *     tokenizer with add_special_tokens=False), split as llama.cpp tests/test-tokenizer-0.cpp
 *     does;
 *   - Meta's unit test of its LLaMA-3 tokenizer (meta-llama/llama3 llama/test_tokenizer.py):
 *     "This is a test sentence." with BOS and EOS is
 *     [128000, 2028, 374, 264, 1296, 11914, 13, 128001], and the ids of a chat dialog;
 *   - the special-token ids of tokenizer.json's added_tokens and of Meta's tokenizer.py list;
 *   - hand-built tokenizers whose ids follow from the merge and added-token rules of
 *     huggingface/tokenizers (models/bpe/word.rs, tokenizer/added_vocabulary.rs) by hand;
 *     a comment at each case gives the derivation;
 *   - properties that hold whatever the ids are: the two LLaMA-3 files agree, and decoding
 *     gives back the text.
 */
#include "test_support.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_blob.h"
#include "model/qref_bpe.h"

/* The LLaMA-3 tokenizer from each file, loaded once for the whole group. */
static qref_bpe *g_json;
static qref_bpe *g_tiktoken;
static char *g_tiktoken_bytes;
static size_t g_tiktoken_size;

static int load_llama3(void **state)
{
    (void)state;
    size_t json_size = 0, config_size = 0;
    char *json = test_read_file(test_fixture_path("tokenizers/llama3/tokenizer.json"), &json_size);
    char *config = test_read_file(test_fixture_path("tokenizers/llama3/tokenizer_config.json"), &config_size);
    g_tiktoken_bytes = test_read_file(test_fixture_path("tokenizers/llama3/tokenizer.model"), &g_tiktoken_size);
    qref_error err = {0};
    qref_status status = qref_bpe_load_hf_json("tokenizer.json", json, json_size, "tokenizer_config.json", config,
                                               config_size, &g_json, &err);
    if (status == QREF_OK)
        status = qref_bpe_load_tiktoken("tokenizer.model", (const uint8_t *)g_tiktoken_bytes, g_tiktoken_size,
                                        QREF_BPE_TIKTOKEN_LLAMA3, &g_tiktoken, &err);
    free(json);
    free(config);
    if (status != QREF_OK)
        print_error("loading the LLaMA-3 tokenizer failed: %s\n", err.message);
    return status == QREF_OK ? 0 : -1;
}

static int free_llama3(void **state)
{
    (void)state;
    qref_bpe_free(g_json);
    qref_bpe_free(g_tiktoken);
    free(g_tiktoken_bytes);
    return 0;
}

/* Encodes text, failing the test on error; the caller frees the ids. */
static int32_t *encode(const qref_bpe *bpe, const char *text, size_t length, bool add_bos, bool parse_special,
                       size_t *count)
{
    int32_t *ids = NULL;
    qref_error err = {0};
    qref_status status = qref_bpe_encode_counted(bpe, text, length, add_bos, parse_special, &ids, count, NULL, &err);
    if (status != QREF_OK)
        print_error("encode failed: %s\n", err.message);
    assert_int_equal(status, QREF_OK);
    return ids;
}

static void assert_ids(const int32_t *ids, size_t count, const int32_t *expected, size_t expected_count,
                       const char *what)
{
    if (count != expected_count)
        print_error("%s: %zu ids, expected %zu\n", what, count, expected_count);
    assert_int_equal(count, expected_count);
    for (size_t i = 0; i < count; i++) {
        if (ids[i] != expected[i])
            print_error("%s: id %zu is %d, expected %d\n", what, i, ids[i], expected[i]);
        assert_int_equal(ids[i], expected[i]);
    }
}

/* Encodes text and checks the ids against expected. */
static void check_encoding(const qref_bpe *bpe, const char *text, size_t length, bool add_bos, bool parse_special,
                           const int32_t *expected, size_t expected_count, const char *what)
{
    size_t count = 0;
    int32_t *ids = encode(bpe, text, length, add_bos, parse_special, &count);
    assert_ids(ids, count, expected, expected_count, what);
    free(ids);
}

/* Checks that decoding ids gives back text[0..length). */
static void assert_round_trip(const qref_bpe *bpe, const int32_t *ids, size_t count, const char *text, size_t length)
{
    char *decoded = NULL;
    size_t decoded_length = 0;
    qref_error err = {0};
    assert_int_equal(qref_bpe_decode(bpe, ids, count, &decoded, &decoded_length, &err), QREF_OK);
    assert_int_equal(decoded_length, length);
    assert_memory_equal(decoded, text, length);
    free(decoded);
}

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

/* Runs every case of llama-bpe.inp/.out on bpe, without BOS; returns the number of cases. */
static size_t run_llama_cpp_vectors(const qref_bpe *bpe)
{
    size_t input_size = 0, output_size = 0;
    char *input = test_read_file(test_fixture_path("tokenizers/llama3/vectors/llama-bpe.inp"), &input_size);
    char *output = test_read_file(test_fixture_path("tokenizers/llama3/vectors/llama-bpe.out"), &output_size);

    /*
     * As in test-tokenizer-0.cpp, the inputs are the parts of the whole file between the
     * separators "\n__ggml_vocab_test__\n". The file ends with a separator, which adds no empty
     * case. The expected ids are the lines of the .out file in the same order.
     */
    static const char separator[] = "\n__ggml_vocab_test__\n";
    const size_t separator_length = sizeof separator - 1;
    size_t cases = 0, in_pos = 0, out_pos = 0;
    while (in_pos < input_size) {
        char *next = strstr(input + in_pos, separator);
        size_t case_length = next != NULL ? (size_t)(next - (input + in_pos)) : input_size - in_pos;
        assert_true(out_pos < output_size);
        char *line_end = memchr(output + out_pos, '\n', output_size - out_pos);
        size_t line_length = line_end != NULL ? (size_t)(line_end - (output + out_pos)) : output_size - out_pos;
        int32_t expected[1024];
        size_t expected_count = parse_ids(output + out_pos, line_length, expected, 1024);

        char what[64];
        snprintf(what, sizeof what, "case %zu", cases);
        size_t count = 0;
        int32_t *ids = encode(bpe, input + in_pos, case_length, false, true, &count);
        assert_ids(ids, count, expected, expected_count, what);
        assert_round_trip(bpe, ids, count, input + in_pos, case_length);
        free(ids);

        cases++;
        in_pos = next != NULL ? (size_t)(next - input) + separator_length : input_size;
        out_pos += line_length + 1;
    }
    assert_true(out_pos >= output_size);
    free(input);
    free(output);
    return cases;
}

/* ------------------------------------------------------------------------------------------ */
/* The LLaMA-3 tokenizer                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_llama3_json_vectors(void **state)
{
    (void)state;
    /* the fixture has 46 cases, Hugging Face's output for each */
    assert_int_equal(run_llama_cpp_vectors(g_json), 46);
}

static void test_llama3_tiktoken_vectors(void **state)
{
    (void)state;
    assert_int_equal(run_llama_cpp_vectors(g_tiktoken), 46);
}

static void test_llama3_sizes_and_specials(void **state)
{
    (void)state;
    /* 128,000 ranked tokens and 256 special ones; BOS and EOS as tokenizer_config.json and
     * tokenizer.py name them */
    const qref_bpe *sources[2] = {g_json, g_tiktoken};
    for (int s = 0; s < 2; s++) {
        assert_int_equal(qref_bpe_vocab_size(sources[s]), 128256);
        assert_int_equal(qref_bpe_bos_id(sources[s]), 128000);
        assert_int_equal(qref_bpe_eos_id(sources[s]), 128001);
        assert_int_equal(qref_bpe_token_id(sources[s], "<|eot_id|>", 10), 128009);
        assert_int_equal(qref_bpe_token_id(sources[s], "<|start_header_id|>", 19), 128006);
        assert_int_equal(qref_bpe_token_id(sources[s], "<|reserved_special_token_250|>", 30), 128255);
        assert_int_equal(qref_bpe_token_type_of(sources[s], 128009), QREF_BPE_TOKEN_CONTROL);
        assert_string_equal(qref_bpe_pattern(sources[s]), QREF_BPE_LLAMA3_PATTERN);
    }
    /* the early Meta-Llama-3-8B tokenizer.json has a ByteLevel post-processor: no BOS added */
    assert_false(qref_bpe_adds_bos(g_json));
    assert_int_equal(qref_bpe_source_of(g_json), QREF_BPE_SOURCE_HF_JSON);
    assert_int_equal(qref_bpe_source_of(g_tiktoken), QREF_BPE_SOURCE_TIKTOKEN);
    /* both hold the same merge pairs: the converter wrote every split of every token */
    assert_int_equal(qref_bpe_merge_count(g_json), 280147);
    assert_int_equal(qref_bpe_merge_count(g_tiktoken), 280147);
}

static void test_llama3_meta_sentence(void **state)
{
    (void)state;
    /* meta-llama/llama3 test_tokenizer.py: encode(..., bos=True, eos=True) */
    static const int32_t expected[] = {128000, 2028, 374, 264, 1296, 11914, 13, 128001};
    const char *text = "This is a test sentence.";
    const qref_bpe *sources[2] = {g_json, g_tiktoken};
    for (int s = 0; s < 2; s++) {
        size_t count = 0;
        int32_t *ids = encode(sources[s], text, strlen(text), true, true, &count);
        int32_t with_eos[16];
        assert_true(count + 1 <= 16);
        memcpy(with_eos, ids, count * sizeof *ids);
        with_eos[count] = qref_bpe_eos_id(sources[s]);
        assert_ids(with_eos, count + 1, expected, 8, "Meta's sentence");
        free(ids);
    }
}

static void test_llama3_special_tokens_in_text(void **state)
{
    (void)state;
    /* "Hello" is 9906 (llama-bpe.out, "Hello world"); the special ids come from the token lists */
    const char *text = "<|begin_of_text|>Hello<|eot_id|>";
    static const int32_t parsed[] = {128000, 9906, 128009};
    const qref_bpe *sources[2] = {g_json, g_tiktoken};
    for (int s = 0; s < 2; s++) {
        check_encoding(sources[s], text, strlen(text), false, true, parsed, 3, "specials parsed");

        /* as ordinary text (Meta's default) no special id appears, and the bytes come back */
        size_t count = 0;
        int32_t *ids = encode(sources[s], text, strlen(text), false, false, &count);
        assert_true(count > 3);
        for (size_t i = 0; i < count; i++)
            assert_true(ids[i] < 128000);
        assert_round_trip(sources[s], ids, count, text, strlen(text));
        free(ids);

        /* a special token that is not complete is ordinary text */
        const char *partial = "<|eot_id|";
        ids = encode(sources[s], partial, strlen(partial), false, true, &count);
        for (size_t i = 0; i < count; i++)
            assert_true(ids[i] < 128000);
        free(ids);

        /* text right after a special token starts a new span: " Hello" is 22691 there */
        const char *spaced = "<|start_header_id|> Hello";
        static const int32_t spaced_ids[] = {128006, 22691};
        check_encoding(sources[s], spaced, strlen(spaced), false, true, spaced_ids, 2, "span after a special");
    }

    /* the two sources agree on ordinary encodings too */
    size_t count_json = 0, count_tiktoken = 0;
    int32_t *ids_json = encode(g_json, text, strlen(text), false, false, &count_json);
    int32_t *ids_tiktoken = encode(g_tiktoken, text, strlen(text), false, false, &count_tiktoken);
    assert_ids(ids_json, count_json, ids_tiktoken, count_tiktoken, "ordinary encodings");
    free(ids_json);
    free(ids_tiktoken);
}

static void test_llama3_meta_dialog(void **state)
{
    (void)state;
    /*
     * meta-llama/llama3 test_tokenizer.py test_encode_dialog: ChatFormat encodes the headers,
     * "\n\n" and the contents one by one. Written as one text with the special tokens in it,
     * every span between special tokens splits the same way, so the ids must be Meta's.
     */
    static const int32_t expected[] = {128000, 128006, 9125, 128007, 271, 2028, 374, 264, 1296, 11914, 13, 128009,
                                       128006, 882, 128007, 271, 2028, 374, 264, 2077, 13, 128009,
                                       128006, 78191, 128007, 271};
    const char *text = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nThis is a test sentence."
                       "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nThis is a response.<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n";
    const qref_bpe *sources[2] = {g_json, g_tiktoken};
    for (int s = 0; s < 2; s++) {
        size_t count = 0;
        int32_t *ids = encode(sources[s], text, strlen(text), false, true, &count);
        assert_ids(ids, count, expected, sizeof expected / sizeof expected[0], "Meta's dialog");
        /* test_decode: the special tokens decode to their text */
        assert_round_trip(sources[s], ids, count, text, strlen(text));
        free(ids);
    }
}

static void test_llama3_number_groups(void **state)
{
    (void)state;
    /* every number of one to three ASCII digits is one token, so a run of k digits (split by
     * \p{N}{1,3}) gives ceil(k / 3) ids, each of at most three digits */
    for (int n = 0; n < 1000; n++) {
        char digits[4];
        for (int width = 1; width <= 3; width++) {
            if (width < 3 && n >= (width == 1 ? 10 : 100))
                continue;
            snprintf(digits, sizeof digits, "%0*d", width, n);
            assert_true(qref_bpe_token_id(g_json, digits, (size_t)width) >= 0);
        }
    }
    test_rng rng = {20240418};
    for (int trial = 0; trial < 200; trial++) {
        char text[64];
        size_t k = 1 + test_rng_next(&rng) % 40;
        for (size_t i = 0; i < k; i++)
            text[i] = (char)('0' + test_rng_next(&rng) % 10);
        size_t count = 0;
        int32_t *ids = encode(g_json, text, k, false, true, &count);
        assert_int_equal(count, (k + 2) / 3);
        size_t offset = 0;
        for (size_t i = 0; i < count; i++) {
            size_t length = 0;
            const char *token = qref_bpe_token(g_json, ids[i], &length);
            size_t expected_length = i + 1 < count ? 3 : k - 3 * i;
            assert_int_equal(length, expected_length);
            assert_memory_equal(token, text + offset, length);
            offset += length;
        }
        free(ids);
    }
}

/* Appends the UTF-8 encoding of cp. */
static size_t put_codepoint(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Ranges of code points the random texts draw from, one kind of text each. */
typedef struct cp_range {
    uint32_t first;
    uint32_t last;
} cp_range;

static const cp_range SCRIPT_RANGES[] = {
    {0x00c0, 0x024f}, /* Latin-1 Supplement and Latin Extended */
    {0x0391, 0x03c9}, /* Greek */
    {0x0410, 0x044f}, /* Cyrillic */
    {0x05d0, 0x05ea}, /* Hebrew */
    {0x0620, 0x064a}, /* Arabic */
    {0x0905, 0x094d}, /* Devanagari letters and vowel signs (marks) */
    {0x0e01, 0x0e3a}, /* Thai */
    {0x1780, 0x17d2}, /* Khmer */
    {0x3041, 0x3096}, /* Hiragana */
    {0x4e00, 0x9fff}, /* CJK Unified Ideographs */
    {0xac00, 0xd7a3}, /* Hangul syllables */
    {0x0300, 0x036f}, /* combining diacritical marks */
    {0x0660, 0x0669}, /* Arabic-Indic digits (Nd) */
    {0xff10, 0xff19}, /* fullwidth digits */
    {0x2160, 0x2188}, /* Roman numerals (Nl) */
    {0x00b2, 0x00b3}, /* superscript digits (No) */
    {0x1f600, 0x1f64f}, /* emoticons */
    {0x1f680, 0x1f6ff}, /* transport and map symbols */
    {0x1f3fb, 0x1f3ff}, /* skin-tone modifiers */
    {0x1f1e6, 0x1f1ff}, /* regional indicators */
};

static const uint32_t SPACES[] = {' ', '\t', '\n', '\r', 0x0b, 0x0c, 0x85, 0xa0, 0x1680, 0x2000, 0x2009,
                                  0x2028, 0x2029, 0x202f, 0x3000, 0x180e, 0x200b, 0xfeff};

static const char *const FRAGMENTS[] = {
    "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'D", "'\xc5\xbf", /* 'ſ */
    "\xe2\x80\x8d", "\xef\xb8\x8f",                                                    /* ZWJ, VS-16 */
    "<|eot_id|>", "<|begin_of_text|>", "<|reserved_special_token_5|>", "<|eot_id|", "<|",
    "http://example.com/a?b=1&c=2", "\r\n", "...", "--", "C++", "x86_64", "1,234.56",
};

/* Writes a random text of up to 40 units into out (at least 40 * 32 bytes); returns its length. */
static size_t random_text(test_rng *rng, char *out)
{
    size_t length = 0;
    size_t units = test_rng_next(rng) % 41;
    for (size_t u = 0; u < units; u++) {
        uint64_t kind = test_rng_next(rng) % 10;
        size_t repeat = 1 + test_rng_next(rng) % 6;
        if (kind <= 2) { /* ASCII letters, digits and punctuation */
            for (size_t r = 0; r < repeat; r++)
                out[length++] = (char)(0x21 + test_rng_next(rng) % 94);
        } else if (kind == 3) { /* a digit run */
            for (size_t r = 0; r < repeat * 2; r++)
                out[length++] = (char)('0' + test_rng_next(rng) % 10);
        } else if (kind <= 5) { /* whitespace runs of several kinds */
            for (size_t r = 0; r < repeat; r++)
                length += put_codepoint(out + length, SPACES[test_rng_next(rng) % (sizeof SPACES / sizeof SPACES[0])]);
        } else if (kind <= 8) { /* another script, emoji or marks */
            size_t ranges = sizeof SCRIPT_RANGES / sizeof SCRIPT_RANGES[0];
            const cp_range *range = &SCRIPT_RANGES[test_rng_next(rng) % ranges];
            for (size_t r = 0; r < repeat; r++)
                length += put_codepoint(out + length, range->first + (uint32_t)(test_rng_next(rng) %
                                                                                 (range->last - range->first + 1)));
        } else {
            const char *fragment = FRAGMENTS[test_rng_next(rng) % (sizeof FRAGMENTS / sizeof FRAGMENTS[0])];
            size_t n = strlen(fragment);
            memcpy(out + length, fragment, n);
            length += n;
        }
    }
    return length;
}

static void test_llama3_sources_agree_random(void **state)
{
    (void)state;
    /* 3000 seeded texts: both files give the same ids, with and without special tokens, and
     * decoding gives back the text */
    test_rng rng = {0x11a3a3};
    char text[40 * 32];
    for (int trial = 0; trial < 3000; trial++) {
        size_t length = random_text(&rng, text);
        for (int special = 0; special < 2; special++) {
            size_t count_json = 0, count_tiktoken = 0;
            int32_t *ids_json = encode(g_json, text, length, false, special, &count_json);
            int32_t *ids_tiktoken = encode(g_tiktoken, text, length, false, special, &count_tiktoken);
            char what[64];
            snprintf(what, sizeof what, "trial %d", trial);
            if (count_json != count_tiktoken ||
                (count_json > 0 && memcmp(ids_json, ids_tiktoken, count_json * sizeof *ids_json) != 0))
                print_error("trial %d: text \"%.*s\"\n", trial, (int)length, text);
            assert_ids(ids_json, count_json, ids_tiktoken, count_tiktoken, what);
            assert_round_trip(g_json, ids_json, count_json, text, length);
            free(ids_json);
            free(ids_tiktoken);
        }
    }
}

static void test_llama3_long_runs(void **state)
{
    (void)state;
    /* 200,000 bytes of one kind each: a single piece of letters, of punctuation, of spaces and
     * of newlines, and a digit run. Both files agree and the text comes back. */
    const size_t length = 200000;
    char *text = malloc(length);
    assert_non_null(text);
    const char fills[] = {'a', '!', ' ', '7', '\n'};
    for (size_t f = 0; f < sizeof fills; f++) {
        memset(text, fills[f], length);
        size_t count_json = 0, count_tiktoken = 0;
        int32_t *ids_json = encode(g_json, text, length, false, true, &count_json);
        int32_t *ids_tiktoken = encode(g_tiktoken, text, length, false, true, &count_tiktoken);
        assert_ids(ids_json, count_json, ids_tiktoken, count_tiktoken, "long run");
        assert_round_trip(g_json, ids_json, count_json, text, length);
        if (fills[f] == '7') /* digits: groups of three, "777" each */
            assert_int_equal(count_json, (length + 2) / 3);
        free(ids_json);
        free(ids_tiktoken);
    }
    free(text);
}

/* Builds a tokenizer from the arrays a GGUF file would hold, written from tokenizer.json. */
static void test_llama3_arrays_match_json(void **state)
{
    (void)state;
    size_t json_size = 0;
    char *json = test_read_file(test_fixture_path("tokenizers/llama3/tokenizer.json"), &json_size);
    cJSON *root = cJSON_ParseWithLength(json, json_size);
    assert_non_null(root);
    free(json);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");

    /* tokens in id order: model.vocab as NORMAL, the added tokens (all special) as CONTROL */
    const size_t count = 128256;
    const char **tokens = calloc(count, sizeof *tokens);
    int32_t *types = calloc(count, sizeof *types);
    assert_non_null(tokens);
    assert_non_null(types);
    for (const cJSON *entry = vocab->child; entry != NULL; entry = entry->next) {
        tokens[entry->valueint] = entry->string;
        types[entry->valueint] = QREF_BPE_TOKEN_NORMAL;
    }
    for (const cJSON *token = added->child; token != NULL; token = token->next) {
        int id = cJSON_GetObjectItemCaseSensitive(token, "id")->valueint;
        tokens[id] = cJSON_GetObjectItemCaseSensitive(token, "content")->valuestring;
        types[id] = QREF_BPE_TOKEN_CONTROL;
    }
    size_t merge_count = (size_t)cJSON_GetArraySize(merges);
    const char **merge_texts = calloc(merge_count, sizeof *merge_texts);
    assert_non_null(merge_texts);
    size_t m = 0;
    for (const cJSON *merge = merges->child; merge != NULL; merge = merge->next)
        merge_texts[m++] = merge->valuestring;

    qref_bpe_arrays arrays = {
        .display = "arrays",
        .token_count = count,
        .tokens = tokens,
        .token_types = types,
        .merge_count = merge_count,
        .merges = merge_texts,
        .pattern = NULL,
        .bos_id = 128000,
        .eos_id = 128001,
        .add_bos = true,
        .ignore_merges = true,
    };
    qref_bpe *bpe = NULL;
    qref_error err = {0};
    qref_status status = qref_bpe_load_arrays(&arrays, &bpe, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    assert_int_equal(qref_bpe_source_of(bpe), QREF_BPE_SOURCE_ARRAYS);
    assert_int_equal(run_llama_cpp_vectors(bpe), 46);
    const char *text = "<|begin_of_text|>Hello<|eot_id|>";
    static const int32_t parsed[] = {128000, 9906, 128009};
    check_encoding(bpe, text, strlen(text), false, true, parsed, 3, "arrays specials");

    qref_bpe_free(bpe);
    free(tokens);
    free(types);
    free(merge_texts);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------------------------------ */
/* Hand-built tokenizers                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* GPT-2's bytes_to_unicode, written from huggingface/tokenizers pre_tokenizers/byte_level.rs bytes_char. */
static uint32_t byte_to_unicode(uint8_t byte)
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        if (b == byte)
            return printable ? (uint32_t)b : next;
        if (!printable)
            next++;
    }
    return 0;
}

/* Writes raw bytes in the byte-level alphabet as a NUL-terminated string. */
static char *byte_level(const char *bytes, size_t length)
{
    char *out = malloc(4 * length + 1);
    assert_non_null(out);
    size_t used = 0;
    for (size_t i = 0; i < length; i++)
        used += put_codepoint(out + used, byte_to_unicode((uint8_t)bytes[i]));
    out[used] = '\0';
    return out;
}

/* An added token of a hand-built tokenizer. */
typedef struct test_added {
    const char *content;
    bool special, lstrip, rstrip, single_word, normalized;
} test_added;

/*
 * A tokenizer.json in the LLaMA-3 layout: byte b has id b, tokens[i] (raw bytes) id 256 + i,
 * merges[i] the raw pair "LEFT RIGHT" (split at the first space), then the added tokens.
 */
static cJSON *build_tokenizer_json(const char *const *tokens, size_t token_count, const char *const *merges,
                                   size_t merge_count, const test_added *added, size_t added_count,
                                   bool ignore_merges)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added_tokens = cJSON_AddArrayToObject(root, "added_tokens");
    for (size_t i = 0; i < added_count; i++) {
        cJSON *token = cJSON_CreateObject();
        cJSON_AddNumberToObject(token, "id", (double)(256 + token_count + i));
        cJSON_AddStringToObject(token, "content", added[i].content);
        cJSON_AddBoolToObject(token, "single_word", added[i].single_word);
        cJSON_AddBoolToObject(token, "lstrip", added[i].lstrip);
        cJSON_AddBoolToObject(token, "rstrip", added[i].rstrip);
        cJSON_AddBoolToObject(token, "normalized", added[i].normalized);
        cJSON_AddBoolToObject(token, "special", added[i].special);
        cJSON_AddItemToArray(added_tokens, token);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *steps = cJSON_AddArrayToObject(pre, "pretokenizers");
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", QREF_BPE_LLAMA3_PATTERN);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddFalseToObject(split, "invert");
    cJSON_AddItemToArray(steps, split);
    cJSON *byte_level_step = cJSON_CreateObject();
    cJSON_AddStringToObject(byte_level_step, "type", "ByteLevel");
    cJSON_AddFalseToObject(byte_level_step, "add_prefix_space");
    cJSON_AddTrueToObject(byte_level_step, "trim_offsets");
    cJSON_AddFalseToObject(byte_level_step, "use_regex");
    cJSON_AddItemToArray(steps, byte_level_step);
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *decoder = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(decoder, "type", "ByteLevel");

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int b = 0; b < 256; b++) {
        char byte = (char)b;
        char *key = byte_level(&byte, 1);
        cJSON_AddNumberToObject(vocab, key, b);
        free(key);
    }
    for (size_t i = 0; i < token_count; i++) {
        char *key = byte_level(tokens[i], strlen(tokens[i]));
        cJSON_AddNumberToObject(vocab, key, (double)(256 + i));
        free(key);
    }
    cJSON *merge_list = cJSON_AddArrayToObject(model, "merges");
    for (size_t i = 0; i < merge_count; i++) {
        const char *space = strchr(merges[i], ' ');
        char *left = byte_level(merges[i], (size_t)(space - merges[i]));
        char *right = byte_level(space + 1, strlen(space + 1));
        char joined[256];
        snprintf(joined, sizeof joined, "%s %s", left, right);
        cJSON_AddItemToArray(merge_list, cJSON_CreateString(joined));
        free(left);
        free(right);
    }
    return root;
}

/* Loads a tokenizer.json tree; returns the status and stores the tokenizer or the error. */
static qref_status load_tree(const cJSON *root, qref_bpe **out, qref_error *err)
{
    char *json = cJSON_PrintUnformatted(root);
    assert_non_null(json);
    qref_status status = qref_bpe_load_hf_json("tokenizer.json", json, strlen(json), NULL, NULL, 0, out, err);
    free(json);
    return status;
}

static qref_bpe *load_tree_ok(cJSON *root)
{
    qref_bpe *bpe = NULL;
    qref_error err = {0};
    qref_status status = load_tree(root, &bpe, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    cJSON_Delete(root);
    return bpe;
}

static void test_merge_order(void **state)
{
    (void)state;
    /* Tokens: ab 256, bc 257, abc 258, aa 259. */
    static const char *const tokens[] = {"ab", "bc", "abc", "aa"};

    /* "b c" (rank 0) comes before "a b" (rank 1): a,b,c -> a,bc; no merge for (a, bc) -> [a, bc] */
    static const char *const merges[] = {"b c", "a b", "a a"};
    qref_bpe *bpe = load_tree_ok(build_tokenizer_json(tokens, 4, merges, 3, NULL, 0, false));
    static const int32_t abc[] = {'a', 257};
    check_encoding(bpe, "abc", 3, false, true, abc, 2, "rank order");
    /* "aaa": both pairs are (a, a), same rank; the leftmost merges first -> [aa, a] */
    static const int32_t aaa[] = {259, 'a'};
    check_encoding(bpe, "aaa", 3, false, true, aaa, 2, "leftmost tie");
    /* "aaaa": (0,1) merges, then (2,3) -> [aa, aa]; no merge for (aa, aa) */
    static const int32_t aaaa[] = {259, 259};
    check_encoding(bpe, "aaaa", 4, false, true, aaaa, 2, "two merges");
    qref_bpe_free(bpe);

    /* with the ranks swapped: a,b,c -> ab,c -> [ab, c] */
    static const char *const swapped[] = {"a b", "b c"};
    bpe = load_tree_ok(build_tokenizer_json(tokens, 4, swapped, 2, NULL, 0, false));
    static const int32_t ab_c[] = {256, 'c'};
    check_encoding(bpe, "abc", 3, false, true, ab_c, 2, "swapped ranks");
    qref_bpe_free(bpe);

    /* ignore_merges: "abc" is a vocabulary token, so the whole piece is one id -> [abc] */
    bpe = load_tree_ok(build_tokenizer_json(tokens, 4, swapped, 2, NULL, 0, true));
    static const int32_t whole[] = {258};
    check_encoding(bpe, "abc", 3, false, true, whole, 1, "ignore_merges");
    qref_bpe_free(bpe);
}

static void test_white_space_class(void **state)
{
    (void)state;
    /*
     * U+180E MONGOLIAN VOWEL SEPARATOR is not White_Space, so in "!\u180E!" the pattern's
     * " ?[^\s\p{L}\p{N}]+" takes all three characters as one piece, which ignore_merges maps to
     * the token "!\u180E!" (id 256). PCRE2's own \s would end the piece before U+180E.
     * U+0085 NEXT LINE is White_Space, so "!\u0085!" is three pieces ("!", "\u0085" by \s+,
     * "!") and the token "!\u0085!" (id 257) is not used: the ids are the bytes 21 C2 85 21.
     */
    static const char *const tokens[] = {"!\xe1\xa0\x8e!", "!\xc2\x85!"};
    qref_bpe *bpe = load_tree_ok(build_tokenizer_json(tokens, 2, NULL, 0, NULL, 0, true));
    static const int32_t one_piece[] = {256};
    check_encoding(bpe, "!\xe1\xa0\x8e!", 5, false, true, one_piece, 1, "U+180E");
    static const int32_t three_pieces[] = {'!', 0xc2, 0x85, '!'};
    check_encoding(bpe, "!\xc2\x85!", 4, false, true, three_pieces, 4, "U+0085");
    qref_bpe_free(bpe);
}

static void test_added_token_rules(void **state)
{
    (void)state;
    /*
     * No merges, so every ordinary byte b is id b. Added tokens (id 256 + i): "<l>" lstrip,
     * "<r>" rstrip, "<w>" single_word, "b>" raw, "<ab" normalized.
     */
    static const test_added added[] = {
        {"<l>", true, true, false, false, false},  {"<r>", true, false, true, false, false},
        {"<w>", true, false, false, true, false},  {"b>", false, false, false, false, false},
        {"<ab", false, false, false, false, true},
    };
    qref_bpe *bpe = load_tree_ok(build_tokenizer_json(NULL, 0, NULL, 0, added, 5, false));

    /* lstrip: "x  <l> y" -> the token takes the two spaces before it: x, <l>, " ", y */
    static const int32_t lstrip[] = {'x', 256, ' ', 'y'};
    check_encoding(bpe, "x  <l> y", 8, false, true, lstrip, 4, "lstrip");
    /* rstrip: "x <r>  y" -> x, " ", <r> (with both spaces after it), y */
    static const int32_t rstrip[] = {'x', ' ', 257, 'y'};
    check_encoding(bpe, "x <r>  y", 8, false, true, rstrip, 4, "rstrip");
    /* single_word: in "x<w>" a word character precedes, so it is text; in "x <w> " it matches */
    static const int32_t inside[] = {'x', '<', 'w', '>'};
    check_encoding(bpe, "x<w>", 4, false, true, inside, 4, "single_word inside a word");
    static const int32_t alone[] = {'x', ' ', 258, ' '};
    check_encoding(bpe, "x <w> ", 6, false, true, alone, 4, "single_word alone");
    /* raw tokens first: in "<ab>" the raw "b>" is found before the normalized "<ab" is tried,
     * which leaves "<a" as text -> <, a, b> */
    static const int32_t raw_first[] = {'<', 'a', 259};
    check_encoding(bpe, "<ab>", 4, false, true, raw_first, 3, "raw before normalized");
    /* "<abc": no raw match, so the normalized "<ab" matches -> <ab, c */
    static const int32_t normalized[] = {260, 'c'};
    check_encoding(bpe, "<abc", 4, false, true, normalized, 2, "normalized");
    /* without special parsing the special "<l>" is text but the non-special "b>" still matches */
    static const int32_t ordinary[] = {'<', 'l', '>', ' ', 'a', 259};
    check_encoding(bpe, "<l> ab>", 7, false, false, ordinary, 6, "ordinary");
    qref_bpe_free(bpe);
}

static void test_template_bos(void **state)
{
    (void)state;
    /* A TemplateProcessing "<s> $A" names BOS; encode then adds it when asked */
    static const test_added added[] = {{"<s>", true, false, false, false, false}};
    cJSON *root = build_tokenizer_json(NULL, 0, NULL, 0, added, 1, false);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "post_processor");
    cJSON *post = cJSON_Parse("{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\"},"
                              "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
                              "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],"
                              "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[256],\"tokens\":[\"<s>\"]}}}]}");
    assert_non_null(post);
    cJSON_AddItemToObject(root, "post_processor", post);
    qref_bpe *bpe = load_tree_ok(root);
    assert_int_equal(qref_bpe_bos_id(bpe), 256);
    assert_true(qref_bpe_adds_bos(bpe));
    static const int32_t with_bos[] = {256, 'h', 'i'};
    check_encoding(bpe, "hi", 2, true, true, with_bos, 3, "template BOS");
    qref_bpe_free(bpe);
}

/* ------------------------------------------------------------------------------------------ */
/* Malformed inputs: one per failure kind                                                     */
/* ------------------------------------------------------------------------------------------ */

static const char *const SMALL_TOKENS[] = {"ab", "bc"};
static const char *const SMALL_MERGES[] = {"a b", "b c"};

static cJSON *small_tree(void)
{
    return build_tokenizer_json(SMALL_TOKENS, 2, SMALL_MERGES, 2, NULL, 0, false);
}

static cJSON *tree_member(cJSON *root, const char *path)
{
    /* path of object keys separated by '/' */
    char copy[128];
    snprintf(copy, sizeof copy, "%s", path);
    cJSON *item = root;
    for (char *key = strtok(copy, "/"); key != NULL && item != NULL; key = strtok(NULL, "/"))
        item = cJSON_GetObjectItemCaseSensitive(item, key);
    assert_non_null(item);
    return item;
}

static void expect_tree_error(cJSON *root, qref_status expected, const char *phrase)
{
    qref_bpe *bpe = NULL;
    qref_error err = {0};
    qref_status status = load_tree(root, &bpe, &err);
    test_assert_error(status, &err, expected, phrase);
    assert_null(bpe);
    cJSON_Delete(root);
}

static void test_malformed_merges(void **state)
{
    (void)state;
    /* a merge naming a token that model.vocab does not have */
    cJSON *root = small_tree();
    cJSON_ReplaceItemInArray(tree_member(root, "model/merges"), 1, cJSON_CreateString("b zq"));
    expect_tree_error(root, QREF_ERR_INVALID, "model.merges[1]: the token \"zq\" is not in model.vocab");

    /* a merge whose concatenation is not a token */
    root = small_tree();
    cJSON_ReplaceItemInArray(tree_member(root, "model/merges"), 0, cJSON_CreateString("a c"));
    expect_tree_error(root, QREF_ERR_INVALID, "model.merges[0]: the merge of \"a\" and \"c\" is not in model.vocab");

    /* an entry without the separating space */
    root = small_tree();
    cJSON_ReplaceItemInArray(tree_member(root, "model/merges"), 1, cJSON_CreateString("bc"));
    expect_tree_error(root, QREF_ERR_INVALID, "model.merges[1] is \"bc\" (a string); expected \"LEFT RIGHT\"");

    /* an array entry of the wrong shape */
    root = small_tree();
    cJSON_ReplaceItemInArray(tree_member(root, "model/merges"), 0, cJSON_Parse("[\"a\", \"b\", \"c\"]"));
    expect_tree_error(root, QREF_ERR_INVALID, "model.merges[0] is an array");

    /* the newer [left, right] form is accepted */
    root = small_tree();
    cJSON_ReplaceItemInArray(tree_member(root, "model/merges"), 0, cJSON_Parse("[\"a\", \"b\"]"));
    qref_bpe *bpe = load_tree_ok(root);
    static const int32_t ab[] = {256};
    check_encoding(bpe, "ab", 2, false, true, ab, 1, "pair form");
    qref_bpe_free(bpe);
}

static void test_malformed_vocab(void **state)
{
    (void)state;
    /* ids run to the number of vocabulary and added entries (258 here), less one */
    cJSON *root = small_tree();
    cJSON_ReplaceItemInObjectCaseSensitive(tree_member(root, "model/vocab"), "a", cJSON_CreateNumber(99999));
    expect_tree_error(root, QREF_ERR_INVALID, "tokenizer.json: model.vocab[\"a\"]: found 99999 (a number), expected "
                                              "an integer in [0, 257]");

    root = small_tree();
    cJSON_ReplaceItemInObjectCaseSensitive(tree_member(root, "model/vocab"), "a", cJSON_CreateNumber(-1));
    expect_tree_error(root, QREF_ERR_INVALID, "model.vocab[\"a\"]: found -1 (a number)");

    /* two tokens with one id */
    root = small_tree();
    cJSON_ReplaceItemInObjectCaseSensitive(tree_member(root, "model/vocab"), "ab", cJSON_CreateNumber(98));
    expect_tree_error(root, QREF_ERR_INVALID,
                      "model.vocab[\"ab\"]: id 98 of \"ab\" is already used by the token \"b\"");

    /* a byte without a token: id 98 given to "zz" in place of "b" leaves byte 0x62 uncovered */
    root = small_tree();
    cJSON_DeleteItemFromObjectCaseSensitive(tree_member(root, "model/vocab"), "b");
    cJSON_AddNumberToObject(tree_member(root, "model/vocab"), "zz", 98);
    expect_tree_error(root, QREF_ERR_INVALID, "tokenizer.json: byte 0x62 (\"b\" in the byte-level alphabet) has no "
                                              "token");

    /* a token written outside the byte-level alphabet (a raw space) */

    root = small_tree();
    cJSON_AddNumberToObject(tree_member(root, "model/vocab"), "raw space", 258);
    expect_tree_error(root, QREF_ERR_UNSUPPORTED, "model.vocab[\"raw space\"]: the character at byte 3 is outside "
                                                  "the byte-level alphabet");
}

static void test_malformed_pattern(void **state)
{
    (void)state;
    cJSON *root = small_tree();
    cJSON *split = cJSON_GetArrayItem(tree_member(root, "pre_tokenizer/pretokenizers"), 0);
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex",
                              cJSON_CreateString("(?<name\\p{L}"));
    expect_tree_error(root, QREF_ERR_INVALID, "pre_tokenizer.pretokenizers[0].pattern.Regex: PCRE2 rejects the pattern "
                                              "\"(?<name\\p{L}\"");

    root = small_tree();
    split = cJSON_GetArrayItem(tree_member(root, "pre_tokenizer/pretokenizers"), 0);
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex",
                              cJSON_CreateString("[^\\S\\p{L}]"));
    expect_tree_error(root, QREF_ERR_UNSUPPORTED, "\\S inside a character class");
}

static void test_unsupported_layouts(void **state)
{
    (void)state;
    /* a GPT-2 style lone ByteLevel pre-tokenizer */
    cJSON *root = small_tree();
    cJSON *byte_level_only = cJSON_Parse("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                                         "\"trim_offsets\":true,\"use_regex\":true}");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "pre_tokenizer", byte_level_only);
    expect_tree_error(root, QREF_ERR_UNSUPPORTED, "pre_tokenizer is an object; supported: the LLaMA-3 layout");

    /* a normalizer, as SentencePiece-style tokenizer.json files have */
    root = small_tree();
    cJSON_ReplaceItemInObjectCaseSensitive(root, "normalizer", cJSON_Parse("{\"type\":\"NFC\"}"));
    expect_tree_error(root, QREF_ERR_UNSUPPORTED, "normalizer is an object; supported: null");

    root = small_tree();
    cJSON_ReplaceItemInObjectCaseSensitive(tree_member(root, "model"), "byte_fallback", cJSON_CreateTrue());
    expect_tree_error(root, QREF_ERR_UNSUPPORTED, "model.byte_fallback is true");

    root = small_tree();
    cJSON_ReplaceItemInObjectCaseSensitive(tree_member(root, "model"), "type", cJSON_CreateString("WordPiece"));
    expect_tree_error(root, QREF_ERR_UNSUPPORTED, "model.type is \"WordPiece\"");
}

/* Loads the LLaMA-3 tiktoken file with line `line` (1-based) replaced by replacement. */
static void expect_tiktoken_error(size_t line, const char *replacement, qref_status expected, const char *phrase)
{
    size_t start = 0;
    for (size_t l = 1; l < line; l++)
        start = (size_t)((const char *)memchr(g_tiktoken_bytes + start, '\n', g_tiktoken_size - start) -
                         g_tiktoken_bytes) + 1;
    size_t end = (size_t)((const char *)memchr(g_tiktoken_bytes + start, '\n', g_tiktoken_size - start) -
                          g_tiktoken_bytes);
    size_t replacement_length = strlen(replacement);
    size_t size = g_tiktoken_size - (end - start) + replacement_length;
    char *edited = malloc(size);
    assert_non_null(edited);
    memcpy(edited, g_tiktoken_bytes, start);
    memcpy(edited + start, replacement, replacement_length);
    memcpy(edited + start + replacement_length, g_tiktoken_bytes + end, g_tiktoken_size - end);

    qref_bpe *bpe = NULL;
    qref_error err = {0};
    qref_status status = qref_bpe_load_tiktoken("tokenizer.model", (const uint8_t *)edited, size,
                                                QREF_BPE_TIKTOKEN_LLAMA3, &bpe, &err);
    test_assert_error(status, &err, expected, phrase);
    assert_null(bpe);
    free(edited);
}

static void test_malformed_tiktoken(void **state)
{
    (void)state;
    /* line 5 is "JQ== 4" (the byte '%') in Meta's file */
    expect_tiktoken_error(5, "J$== 4", QREF_ERR_INVALID, "tokenizer.model: line 5: invalid base64 \"J$==\": "
                                                         "character '$' at offset 1");
    expect_tiktoken_error(5, "JQ= 4", QREF_ERR_INVALID, "line 5: invalid base64 \"JQ=\": 3 digits");
    expect_tiktoken_error(5, "JQ==", QREF_ERR_INVALID, "line 5 is \"JQ==\"; expected \"BASE64 RANK\"");
    expect_tiktoken_error(5, "JQ== 4x", QREF_ERR_INVALID, "line 5 is \"JQ== 4x\"");
    /* rank 3 given twice: the byte '$' already holds id 3 */
    expect_tiktoken_error(5, "JQ== 3", QREF_ERR_INVALID, "line 5 (rank 3): id 3 of \"%\" is already used by the "
                                                         "token \"$\"");
    expect_tiktoken_error(5, "JQ== 128000", QREF_ERR_INVALID, "line 5: rank 128000 is out of range; expected 0 "
                                                              "to 127999");
    /* the byte '%' given again under rank 4's line: "JA==" is '$' (rank 3) */
    expect_tiktoken_error(5, "JA== 4", QREF_ERR_INVALID, "ids 3 and 4 are the same token \"$\"");
}

static void test_malformed_arrays(void **state)
{
    (void)state;
    /* 256 byte tokens in byte-level form, then "ab" */
    char *owned[257];
    const char *tokens[257];
    for (int b = 0; b < 256; b++) {
        char byte = (char)b;
        owned[b] = byte_level(&byte, 1);
        tokens[b] = owned[b];
    }
    tokens[256] = "ab";
    owned[256] = NULL;
    const char *merges[1] = {"a b"};
    qref_bpe_arrays arrays = {.display = "model.gguf", .token_count = 257, .tokens = tokens, .merge_count = 1,
                              .merges = merges, .bos_id = -1, .eos_id = -1};
    qref_bpe *bpe = NULL;
    qref_error err = {0};
    assert_int_equal(qref_bpe_load_arrays(&arrays, &bpe, &err), QREF_OK);
    static const int32_t ab[] = {256};
    check_encoding(bpe, "ab", 2, false, true, ab, 1, "arrays");
    qref_bpe_free(bpe);

    merges[0] = "ab";
    test_assert_error(qref_bpe_load_arrays(&arrays, &bpe, &err), &err, QREF_ERR_INVALID,
                      "model.gguf: merges[0] = \"ab\"; expected two tokens separated by one space");
    merges[0] = "a x";
    test_assert_error(qref_bpe_load_arrays(&arrays, &bpe, &err), &err, QREF_ERR_INVALID,
                      "model.gguf: merges[0] = \"a x\": the merged token is not in the vocabulary");
    merges[0] = "a b";
    int32_t types[257];
    for (int i = 0; i < 257; i++)
        types[i] = QREF_BPE_TOKEN_NORMAL;
    types[256] = 9;
    arrays.token_types = types;
    test_assert_error(qref_bpe_load_arrays(&arrays, &bpe, &err), &err, QREF_ERR_INVALID,
                      "model.gguf: token_types[256] = 9; expected 1 to 6");
    for (int b = 0; b < 256; b++)
        free(owned[b]);
}

static void test_invalid_text(void **state)
{
    (void)state;
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    /* a lone continuation byte at offset 3 */
    test_assert_error(qref_bpe_encode(g_json, "abc\x80x", 5, false, &ids, &count, &err), &err, QREF_ERR_INVALID,
                      "tokenizer.json: the text is not valid UTF-8 at byte 3 (0x80)");
    assert_null(ids);
    /* an encoded surrogate */
    test_assert_error(qref_bpe_encode(g_tiktoken, "\xed\xa0\x80", 3, false, &ids, &count, &err), &err,
                      QREF_ERR_INVALID, "not valid UTF-8 at byte 0");
    /* decoding an id outside the vocabulary */
    int32_t bad_ids[2] = {9906, 128256};
    char *text = NULL;
    size_t length = 0;
    test_assert_error(qref_bpe_decode(g_json, bad_ids, 2, &text, &length, &err), &err, QREF_ERR_INVALID,
                      "ids[1] = 128256 is not a token; expected 0 to 128255");
    assert_null(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3_json_vectors),
        cmocka_unit_test(test_llama3_tiktoken_vectors),
        cmocka_unit_test(test_llama3_sizes_and_specials),
        cmocka_unit_test(test_llama3_meta_sentence),
        cmocka_unit_test(test_llama3_special_tokens_in_text),
        cmocka_unit_test(test_llama3_meta_dialog),
        cmocka_unit_test(test_llama3_number_groups),
        cmocka_unit_test(test_llama3_sources_agree_random),
        cmocka_unit_test(test_llama3_long_runs),
        cmocka_unit_test(test_llama3_arrays_match_json),
        cmocka_unit_test(test_merge_order),
        cmocka_unit_test(test_white_space_class),
        cmocka_unit_test(test_added_token_rules),
        cmocka_unit_test(test_template_bos),
        cmocka_unit_test(test_malformed_merges),
        cmocka_unit_test(test_malformed_vocab),
        cmocka_unit_test(test_malformed_pattern),
        cmocka_unit_test(test_unsupported_layouts),
        cmocka_unit_test(test_malformed_tiktoken),
        cmocka_unit_test(test_malformed_arrays),
        cmocka_unit_test(test_invalid_text),
    };
    return cmocka_run_group_tests(tests, load_llama3, free_llama3);
}
