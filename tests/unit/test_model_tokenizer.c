/*
 * The tokenizer interface: which file a folder, a file or a snapshot gives, and that encoding
 * goes to the right implementation.
 *
 * Sources of the expected values: the file digests in fixtures/SHA256SUMS (sha256sum of the
 * published files), Meta's LLaMA-3 unit test (meta-llama/llama3 llama/test_tokenizer.py) for
 * "This is a test sentence.", and llama2.c's ids for stories260k
 * (fixtures/goldens/stories260k-once-upon-a-time.json, also used by test_model_spm).
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_blob.h"
#include "io/qref_snapshot.h"
#include "model/qref_tokenizer.h"

static const char LLAMA3_JSON_SHA256[] = "c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78";
static const char LLAMA3_TIKTOKEN_SHA256[] = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55";
static const char LLAMA2_SPM_SHA256[] = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347";
static const char STORIES_SPM_SHA256[] = "dfff07d929db979913f166ec94a6f5ecad4c70cfed8eb5c9cbe7e464455e46f5";

static qref_tokenizer *load_path_ok(const char *relative)
{
    qref_tokenizer *tokenizer = NULL;
    qref_error err = {0};
    qref_status status = qref_tokenizer_load_path(test_fixture_path(relative), &tokenizer, &err);
    if (status != QREF_OK)
        print_error("%s: %s\n", relative, err.message);
    assert_int_equal(status, QREF_OK);
    assert_non_null(tokenizer);
    return tokenizer;
}

/* Checks Meta's sentence with BOS: [128000, 2028, 374, 264, 1296, 11914, 13] (EOS not added). */
static void check_meta_sentence(const qref_tokenizer *tokenizer)
{
    static const int32_t expected[] = {128000, 2028, 374, 264, 1296, 11914, 13};
    const char *text = "This is a test sentence.";
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    assert_int_equal(qref_tokenizer_encode(tokenizer, text, strlen(text), true, &ids, &count, &err), QREF_OK);
    assert_int_equal(count, 7);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(ids[i], expected[i]);
    char *decoded = NULL;
    size_t length = 0;
    assert_int_equal(qref_tokenizer_decode(tokenizer, ids + 1, count - 1, &decoded, &length, &err), QREF_OK);
    assert_string_equal(decoded, text);
    free(decoded);
    free(ids);
}

static void test_folder_prefers_tokenizer_json(void **state)
{
    (void)state;
    qref_tokenizer *tokenizer = load_path_ok("tokenizers/llama3");
    assert_int_equal(qref_tokenizer_kind_of(tokenizer), QREF_TOKENIZER_HF_BPE);
    assert_string_equal(qref_tokenizer_sha256(tokenizer), LLAMA3_JSON_SHA256);
    assert_non_null(strstr(qref_tokenizer_file_name(tokenizer), "llama3/tokenizer.json"));
    assert_null(qref_tokenizer_skipped(tokenizer));
    assert_int_equal(qref_tokenizer_vocab_size(tokenizer), 128256);
    assert_int_equal(qref_tokenizer_bos_id(tokenizer), 128000);
    assert_int_equal(qref_tokenizer_eos_id(tokenizer), 128001);
    assert_non_null(qref_tokenizer_bpe(tokenizer));
    assert_null(qref_tokenizer_spm(tokenizer));
    check_meta_sentence(tokenizer);
    qref_tokenizer_free(tokenizer);
}

static void test_tiktoken_file_by_content(void **state)
{
    (void)state;
    qref_tokenizer *tokenizer = load_path_ok("tokenizers/llama3/tokenizer.model");
    assert_int_equal(qref_tokenizer_kind_of(tokenizer), QREF_TOKENIZER_TIKTOKEN);
    assert_string_equal(qref_tokenizer_kind_name(QREF_TOKENIZER_TIKTOKEN), "tiktoken");
    assert_string_equal(qref_tokenizer_sha256(tokenizer), LLAMA3_TIKTOKEN_SHA256);
    assert_int_equal(qref_tokenizer_eos_id(tokenizer), 128001);
    check_meta_sentence(tokenizer);
    qref_tokenizer_free(tokenizer);
}

static void test_json_file_reads_config_beside_it(void **state)
{
    (void)state;
    /* EOS is named only by tokenizer_config.json's eos_token */
    qref_tokenizer *tokenizer = load_path_ok("tokenizers/llama3/tokenizer.json");
    assert_int_equal(qref_tokenizer_kind_of(tokenizer), QREF_TOKENIZER_HF_BPE);
    assert_int_equal(qref_tokenizer_eos_id(tokenizer), 128001);
    qref_tokenizer_free(tokenizer);
}

static void test_sentencepiece_file_and_folder(void **state)
{
    (void)state;
    qref_tokenizer *tokenizer = load_path_ok("tokenizers/llama2/tokenizer.model");
    assert_int_equal(qref_tokenizer_kind_of(tokenizer), QREF_TOKENIZER_SENTENCEPIECE);
    assert_string_equal(qref_tokenizer_sha256(tokenizer), LLAMA2_SPM_SHA256);
    assert_int_equal(qref_tokenizer_vocab_size(tokenizer), 32000);
    assert_int_equal(qref_tokenizer_bos_id(tokenizer), 1);
    assert_non_null(qref_tokenizer_spm(tokenizer));
    qref_tokenizer_free(tokenizer);

    /* llama2.c: "Once upon a time" is 1 403 407 261 378 with stories260k's tokenizer */
    tokenizer = load_path_ok("models/stories260k");
    static const int32_t expected[] = {1, 403, 407, 261, 378};
    int32_t *ids = NULL;
    size_t count = 0;
    qref_error err = {0};
    assert_int_equal(qref_tokenizer_encode(tokenizer, "Once upon a time", 16, true, &ids, &count, &err), QREF_OK);
    assert_int_equal(count, 5);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(ids[i], expected[i]);
    free(ids);
    qref_tokenizer_free(tokenizer);
}

static void test_snapshot(void **state)
{
    (void)state;
    qref_snapshot *snapshot = NULL;
    qref_error err = {0};
    assert_int_equal(qref_snapshot_open(test_fixture_path("models/stories260k"), &snapshot, &err), QREF_OK);
    qref_tokenizer *tokenizer = NULL;
    assert_int_equal(qref_tokenizer_load_snapshot(snapshot, &tokenizer, &err), QREF_OK);
    assert_non_null(tokenizer);
    assert_int_equal(qref_tokenizer_kind_of(tokenizer), QREF_TOKENIZER_SENTENCEPIECE);
    assert_string_equal(qref_tokenizer_file_name(tokenizer), "tokenizer.model");
    assert_string_equal(qref_tokenizer_sha256(tokenizer), STORIES_SPM_SHA256);
    qref_tokenizer_free(tokenizer);
    qref_snapshot_free(snapshot);

    /* no tokenizer file: no tokenizer, and no error */
    qref_tokenizer_files none = {0};
    assert_int_equal(qref_tokenizer_load_snapshot_files(&none, &tokenizer, &err), QREF_OK);
    assert_null(tokenizer);
}

/* A blob over a string, not owned. */
static qref_blob text_blob(const char *text)
{
    qref_blob blob = {0};
    blob.data = (const uint8_t *)text;
    blob.size = strlen(text);
    return blob;
}

static void test_unsupported_json_gives_way(void **state)
{
    (void)state;
    /* a SentencePiece-style tokenizer.json (a normalizer): tokenizer.model is used instead */
    size_t size = 0;
    char *model = test_read_file(test_fixture_path("tokenizers/llama2/tokenizer.model"), &size);
    qref_blob model_blob = {0};
    model_blob.data = (const uint8_t *)model;
    model_blob.size = size;
    qref_blob json_blob = text_blob("{\"normalizer\": {\"type\": \"Replace\"}, \"model\": {\"type\": \"BPE\"}}");
    qref_tokenizer_files files = {.tokenizer_json = &json_blob, .tokenizer_model = &model_blob};
    qref_tokenizer *tokenizer = NULL;
    qref_error err = {0};
    assert_int_equal(qref_tokenizer_load_snapshot_files(&files, &tokenizer, &err), QREF_OK);
    assert_int_equal(qref_tokenizer_kind_of(tokenizer), QREF_TOKENIZER_SENTENCEPIECE);
    assert_non_null(qref_tokenizer_skipped(tokenizer));
    assert_non_null(strstr(qref_tokenizer_skipped(tokenizer), "tokenizer.json: normalizer is an object"));
    qref_tokenizer_free(tokenizer);

    /* without tokenizer.model the unsupported layout is the error */
    files.tokenizer_model = NULL;
    test_assert_error(qref_tokenizer_load_snapshot_files(&files, &tokenizer, &err), &err, QREF_ERR_UNSUPPORTED,
                      "tokenizer.json: normalizer is an object; supported: null");
    assert_null(tokenizer);

    /* a malformed tokenizer.json is an error even with tokenizer.model present */
    qref_blob broken = text_blob("{\"model\": ");
    files.tokenizer_json = &broken;
    files.tokenizer_model = &model_blob;
    qref_status status = qref_tokenizer_load_snapshot_files(&files, &tokenizer, &err);
    assert_int_equal(status, QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "tokenizer.json"));
    assert_null(tokenizer);
    free(model);
}

static void test_path_errors(void **state)
{
    (void)state;
    qref_tokenizer *tokenizer = NULL;
    qref_error err = {0};
    test_assert_error(qref_tokenizer_load_path(test_fixture_path("tokenizers/missing/tokenizer.model"), &tokenizer,
                                               &err),
                      &err, QREF_ERR_IO, "cannot open");
    test_assert_error(qref_tokenizer_load_path(test_fixture_path("datasets"), &tokenizer, &err), &err,
                      QREF_ERR_INVALID, "no tokenizer.json or tokenizer.model in the folder");
    assert_null(tokenizer);

    /* a text file that is neither: read as SentencePiece, which rejects it */
    const char *path = test_tmp_path("not_a_tokenizer.model");
    test_write_file(path, "hello\n", 6);
    assert_int_not_equal(qref_tokenizer_load_path(path, &tokenizer, &err), QREF_OK);
    assert_non_null(strstr(err.message, "not_a_tokenizer.model"));
    assert_null(tokenizer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_prefers_tokenizer_json),
        cmocka_unit_test(test_tiktoken_file_by_content),
        cmocka_unit_test(test_json_file_reads_config_beside_it),
        cmocka_unit_test(test_sentencepiece_file_and_folder),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_unsupported_json_gives_way),
        cmocka_unit_test(test_path_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
