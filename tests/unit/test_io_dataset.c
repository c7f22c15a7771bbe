/*
 * WikiText-2 reader: rows, the study and llama.cpp texts, digests and zip archives.
 *
 * Sources of the expected values. The row count of the test split (4358) is the line count
 * that fixtures/README.md records for the file. The file digest is the one in
 * fixtures/goldens/perplexity.json. The joined-text prefix and the small crafted inputs follow
 * by hand from the loader rule in huggingface/datasets datasets/wikitext/wikitext.py: a blank
 * line becomes "", any other line keeps its "\n", and rows are joined with "\n\n".
 */
#include "test_support.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_sha256.h"
#include "io/qref_dataset.h"

static const char *fixture_raw(void)
{
    return test_fixture_path("datasets/wikitext-2-raw/wiki.test.raw");
}

static void load_text(const char *text, qref_wikitext *out)
{
    qref_error err = {0};
    qref_status status = qref_wikitext_load_memory("text.raw", (const uint8_t *)text, strlen(text),
                                                   QREF_WIKITEXT_TEST, out, &err);
    if (status != QREF_OK)
        fail_msg("%s", err.message);
}

static void test_fixture_rows_and_prefix(void **state)
{
    (void)state;
    qref_wikitext wikitext;
    qref_error err = {0};
    assert_int_equal(qref_wikitext_load_file(fixture_raw(), QREF_WIKITEXT_TEST, &wikitext, &err),
                     QREF_OK);
    assert_int_equal(wikitext.row_count, 4358);
    assert_false(wikitext.from_archive);

    /*
     * The file starts " \n = Robert Boulter = \n \n Robert Boulter is an English film": rows
     * "", " = Robert Boulter = \n", "", " Robert Boulter is ...", joined with "\n\n".
     */
    static const char prefix[] =
        "\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is an English film";
    assert_true(wikitext.study_size > sizeof prefix);
    assert_memory_equal(wikitext.study_text, prefix, sizeof prefix - 1);
    assert_int_equal(strlen(wikitext.study_text), wikitext.study_size);

    /* llama.cpp's text is the file minus its final "\n". */
    size_t raw_size = 0;
    char *raw = test_read_file(fixture_raw(), &raw_size);
    assert_int_equal(raw[raw_size - 1], '\n');
    assert_int_equal(wikitext.llamacpp_size, raw_size - 1);
    assert_memory_equal(wikitext.llamacpp_text, raw, raw_size - 1);
    assert_int_equal(wikitext.llamacpp_text[wikitext.llamacpp_size], '\0');

    /* A raw file is its own split file, so both digests agree. */
    assert_string_equal(wikitext.input_sha256, wikitext.raw_sha256);
    free(raw);
    qref_wikitext_free(&wikitext);
}

static void test_fixture_sha256_matches_golden(void **state)
{
    (void)state;
    char *json = test_read_file(test_fixture_path("goldens/perplexity.json"), NULL);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    cJSON *dataset = cJSON_GetObjectItemCaseSensitive(root, "dataset");
    cJSON *sha = cJSON_GetObjectItemCaseSensitive(dataset, "sha256");
    assert_true(cJSON_IsString(sha));

    qref_wikitext wikitext;
    qref_error err = {0};
    assert_int_equal(qref_wikitext_load_file(fixture_raw(), QREF_WIKITEXT_TEST, &wikitext, &err),
                     QREF_OK);
    assert_string_equal(wikitext.raw_sha256, sha->valuestring);
    assert_string_equal(wikitext.raw_sha256,
                        "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08");
    qref_wikitext_free(&wikitext);
    cJSON_Delete(root);
    free(json);
}

static void test_rows_from_crafted_text(void **state)
{
    (void)state;
    qref_wikitext wikitext;

    /*
     * Python reads "\r\n" and "\r" as line ends ("\n"). The lines " \t", "\u3000" and
     * "\u0085" strip to "" and become empty rows. A form feed inside a line neither ends the
     * line nor makes it blank. The last line has no newline and keeps none.
     */
    load_text("a\r\nb\rc\n \t\n\xe3\x80\x80\n\xc2\x85\nx\x0cy\nlast", &wikitext);
    assert_int_equal(wikitext.row_count, 8);
    static const char expected[] = "a\n" "\n\n" "b\n" "\n\n" "c\n" "\n\n" "" "\n\n" "" "\n\n"
                                   "" "\n\n" "x\x0cy\n" "\n\n" "last";
    assert_int_equal(wikitext.study_size, sizeof expected - 1);
    assert_memory_equal(wikitext.study_text, expected, sizeof expected - 1);
    /* No trailing "\n": llama.cpp's text is the input unchanged. */
    assert_string_equal(wikitext.llamacpp_text,
                        "a\r\nb\rc\n \t\n\xe3\x80\x80\n\xc2\x85\nx\x0cy\nlast");
    qref_wikitext_free(&wikitext);

    /* Exactly one trailing newline goes. */
    load_text("x\n\n", &wikitext);
    assert_int_equal(wikitext.row_count, 2);
    assert_string_equal(wikitext.study_text, "x\n\n\n");
    assert_string_equal(wikitext.llamacpp_text, "x\n");
    qref_wikitext_free(&wikitext);
}

/* Loads size bytes of text as display, expecting QREF_ERR_INVALID with phrase in the message. */
static void check_text_rejected(const char *display, const void *text, size_t size,
                                qref_wikitext_split split, const char *phrase)
{
    qref_wikitext wikitext;
    qref_error err = {0};
    test_assert_error(qref_wikitext_load_memory(display, text, size, split, &wikitext, &err), &err,
                      QREF_ERR_INVALID, phrase);
    assert_null(wikitext.study_text);
    assert_null(wikitext.llamacpp_text);
}

static void test_reject_empty_text(void **state)
{
    (void)state;
    check_text_rejected("text.raw", "", 0, QREF_WIKITEXT_TEST,
                        "text.raw: no text (expected the WikiText-2 test split, 4358 rows)");
    check_text_rejected("text.raw", NULL, 0, QREF_WIKITEXT_VALID,
                        "text.raw: no text (expected the WikiText-2 validation split, 3760 rows)");
    check_text_rejected("text.raw", " \n\n\t\r\n", 6, QREF_WIKITEXT_TEST,
                        "text.raw: no text, only 3 blank rows (expected the WikiText-2 test split, "
                        "4358 rows)");

    /* An empty file maps to no data at all, which once reached memcpy as a null pointer. */
    test_write_file(test_tmp_path("empty.raw"), "", 0);
    qref_wikitext wikitext;
    qref_error err = {0};
    char phrase[8192];
    snprintf(phrase, sizeof phrase, "%s: no text (expected the WikiText-2 train split, 36718 rows)",
             test_tmp_path("empty.raw"));
    test_assert_error(qref_wikitext_load_file(test_tmp_path("empty.raw"), QREF_WIKITEXT_TRAIN,
                                              &wikitext, &err),
                      &err, QREF_ERR_INVALID, phrase);
    assert_null(wikitext.study_text);
}

static void test_reject_nul_bytes(void **state)
{
    (void)state;
    check_text_rejected("text.raw", "ok\n\0\n", 5, QREF_WIKITEXT_TEST,
                        "text.raw: byte 3 is a NUL byte (0x00), expected text without NUL bytes");
    static const uint8_t nuls[4096];
    check_text_rejected("nul.raw", nuls, sizeof nuls, QREF_WIKITEXT_TEST,
                        "nul.raw: byte 0 is a NUL byte");
}

static void test_reject_invalid_utf8(void **state)
{
    (void)state;
    static const char *cases[] = {
        "ok\n\xff\n",         /* byte that never starts a character */
        "ok\n\xc0\xaf\n",     /* overlong "/" */
        "ok\n\xed\xa0\x80\n", /* surrogate U+D800 */
        "ok\n\xe2\x82",       /* sequence cut by the end of the file */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qref_wikitext wikitext;
        qref_error err = {0};
        assert_int_equal(qref_wikitext_load_memory("text.raw", (const uint8_t *)cases[i],
                                                   strlen(cases[i]), QREF_WIKITEXT_TEST,
                                                   &wikitext, &err),
                         QREF_ERR_INVALID);
        assert_non_null(strstr(err.message, "text.raw: byte 3"));
        assert_null(wikitext.study_text);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Zip archives written with libarchive                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct zip_file {
    const char *name;
    const void *data;
    size_t size;
    int type; /* AE_IFREG, AE_IFDIR or AE_IFLNK */
} zip_file;

/* Writes a zip of the given entries, deflated or stored; returns a heap buffer. */
static uint8_t *write_zip_with(const zip_file *files, size_t count, const char *compression,
                               size_t *size)
{
    size_t capacity = 8 << 20;
    uint8_t *buffer = malloc(capacity);
    assert_non_null(buffer);
    struct archive *archive = archive_write_new();
    assert_non_null(archive);
    assert_int_equal(archive_write_set_format_zip(archive), ARCHIVE_OK);
    assert_int_equal(archive_write_set_format_option(archive, "zip", "compression", compression),
                     ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(archive, buffer, capacity, size), ARCHIVE_OK);
    for (size_t i = 0; i < count; i++) {
        struct archive_entry *entry = archive_entry_new();
        archive_entry_set_pathname(entry, files[i].name);
        archive_entry_set_filetype(entry, (unsigned)files[i].type);
        archive_entry_set_perm(entry, 0644);
        if (files[i].type == AE_IFLNK)
            archive_entry_set_symlink(entry, "/etc/passwd");
        archive_entry_set_size(entry, files[i].type == AE_IFREG ? (la_int64_t)files[i].size : 0);
        assert_int_equal(archive_write_header(archive, entry), ARCHIVE_OK);
        if (files[i].type == AE_IFREG && files[i].size > 0)
            assert_int_equal(archive_write_data(archive, files[i].data, files[i].size),
                             (la_ssize_t)files[i].size);
        archive_entry_free(entry);
    }
    assert_int_equal(archive_write_close(archive), ARCHIVE_OK);
    archive_write_free(archive);
    return buffer;
}

static uint8_t *write_zip(const zip_file *files, size_t count, size_t *size)
{
    return write_zip_with(files, count, "deflate", size);
}

static void test_zip_matches_raw(void **state)
{
    (void)state;
    size_t raw_size = 0;
    char *raw = test_read_file(fixture_raw(), &raw_size);
    static const char valid[] = " \n = Valid = \n";
    const zip_file files[] = {
        {"wikitext-2-raw/", NULL, 0, AE_IFDIR},
        {"wikitext-2-raw/wiki.train.raw", "train\n", 6, AE_IFREG},
        {"wikitext-2-raw/wiki.test.raw", raw, raw_size, AE_IFREG},
        {"wikitext-2-raw/wiki.valid.raw", valid, sizeof valid - 1, AE_IFREG},
    };
    size_t zip_size = 0;
    uint8_t *zip = write_zip(files, 4, &zip_size);

    qref_wikitext from_raw, from_zip;
    qref_error err = {0};
    assert_int_equal(qref_wikitext_load_file(fixture_raw(), QREF_WIKITEXT_TEST, &from_raw, &err),
                     QREF_OK);
    assert_int_equal(qref_wikitext_load_memory("wikitext-2-raw-v1.zip", zip, zip_size,
                                               QREF_WIKITEXT_TEST, &from_zip, &err),
                     QREF_OK);
    assert_true(from_zip.from_archive);
    assert_int_equal(from_zip.row_count, from_raw.row_count);
    assert_int_equal(from_zip.study_size, from_raw.study_size);
    assert_memory_equal(from_zip.study_text, from_raw.study_text, from_raw.study_size);
    assert_int_equal(from_zip.llamacpp_size, from_raw.llamacpp_size);
    assert_memory_equal(from_zip.llamacpp_text, from_raw.llamacpp_text, from_raw.llamacpp_size);

    /* The entry digest is the raw file's; the input digest is the zip's own. */
    assert_string_equal(from_zip.raw_sha256, from_raw.raw_sha256);
    char zip_sha[QREF_SHA256_HEX_SIZE];
    assert_int_equal(qref_sha256_buffer_hex(zip, zip_size, zip_sha), 0);
    assert_string_equal(from_zip.input_sha256, zip_sha);
    assert_string_not_equal(from_zip.input_sha256, from_zip.raw_sha256);
    qref_wikitext_free(&from_zip);

    /* The split selects the entry. */
    assert_int_equal(qref_wikitext_load_memory("wikitext-2-raw-v1.zip", zip, zip_size,
                                               QREF_WIKITEXT_VALID, &from_zip, &err),
                     QREF_OK);
    assert_int_equal(from_zip.row_count, 2);
    assert_string_equal(from_zip.study_text, "\n\n = Valid = \n");
    qref_wikitext_free(&from_zip);

    qref_wikitext_free(&from_raw);
    free(zip);
    free(raw);
}

/* Writes a zip of files, loads the test split and checks the error. */
static void check_zip_rejected(const zip_file *files, size_t count, const char *message_part)
{
    size_t zip_size = 0;
    uint8_t *zip = write_zip(files, count, &zip_size);
    qref_wikitext wikitext;
    qref_error err = {0};
    qref_status status = qref_wikitext_load_memory("bad.zip", zip, zip_size, QREF_WIKITEXT_TEST,
                                                   &wikitext, &err);
    if (status != QREF_ERR_INVALID || strstr(err.message, message_part) == NULL)
        print_error("status %d, message: %s\n", status, err.message);
    assert_int_equal(status, QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "bad.zip"));
    assert_non_null(strstr(err.message, message_part));
    assert_null(wikitext.study_text);
    free(zip);
}

static void test_reject_bad_zips(void **state)
{
    (void)state;
    static const char text[] = " \n = A = \n";
    const size_t size = sizeof text - 1;

    const zip_file missing[] = {{"wikitext-2-raw/wiki.train.raw", text, size, AE_IFREG}};
    check_zip_rejected(missing, 1, "no entry \"wikitext-2-raw/wiki.test.raw\"");

    const zip_file parent[] = {{"../wiki.test.raw", text, size, AE_IFREG},
                               {"wikitext-2-raw/wiki.test.raw", text, size, AE_IFREG}};
    check_zip_rejected(parent, 2, "\"../wiki.test.raw\" is rejected because it contains a \"..\"");

    const zip_file inner_parent[] = {{"wikitext-2-raw/../../x", text, size, AE_IFREG}};
    check_zip_rejected(inner_parent, 1, "contains a \"..\" component");

    const zip_file absolute[] = {{"/etc/wiki.test.raw", text, size, AE_IFREG}};
    check_zip_rejected(absolute, 1, "it is an absolute path");

    const zip_file twice[] = {{"wikitext-2-raw/wiki.test.raw", text, size, AE_IFREG},
                              {"wikitext-2-raw/wiki.test.raw", text, size, AE_IFREG}};
    check_zip_rejected(twice, 2, "appears twice");

    const zip_file link[] = {{"wikitext-2-raw/wiki.test.raw", NULL, 0, AE_IFLNK}};
    check_zip_rejected(link, 1, "is not a regular file");
}

/* A name ending in .zip, in any letter case, makes the input a zip archive, whatever it holds. */
static void test_reject_non_zip_named_zip(void **state)
{
    (void)state;
    static const char text[] = " \n = Robert Boulter = \n";
    check_text_rejected("wikitext-2-raw-v1.zip", text, sizeof text - 1, QREF_WIKITEXT_TEST,
                        "wikitext-2-raw-v1.zip: not a zip archive (libarchive: ");
    check_text_rejected("WIKITEXT.ZIP", text, sizeof text - 1, QREF_WIKITEXT_TEST,
                        "WIKITEXT.ZIP: not a zip archive");
    check_text_rejected("empty.Zip", "", 0, QREF_WIKITEXT_TEST, "empty.Zip: not a zip archive");

    /* The same through a file, as qconform reads the data option. */
    test_write_file(test_tmp_path("text.ZIP"), text, sizeof text - 1);
    qref_wikitext wikitext;
    qref_error err = {0};
    char phrase[8192];
    snprintf(phrase, sizeof phrase, "%s: not a zip archive", test_tmp_path("text.ZIP"));
    test_assert_error(qref_wikitext_load_file(test_tmp_path("text.ZIP"), QREF_WIKITEXT_TEST,
                                              &wikitext, &err),
                      &err, QREF_ERR_INVALID, phrase);

    /* A zip of NUL bytes names the entry and the offset. */
    static const uint8_t nuls[64];
    const zip_file files[] = {{"wikitext-2-raw/wiki.test.raw", nuls, sizeof nuls, AE_IFREG}};
    size_t zip_size = 0;
    uint8_t *zip = write_zip(files, 1, &zip_size);
    check_text_rejected("nul.zip", zip, zip_size, QREF_WIKITEXT_TEST,
                        "nul.zip: wikitext-2-raw/wiki.test.raw: byte 0 is a NUL byte");
    free(zip);
}

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store_le32(uint8_t *p, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(value >> (8 * i));
}

/*
 * Rewrites the uncompressed size of the one entry of a zip written by libarchive (no comment, no
 * zip64 fields), so the headers lie about the data's size. The offsets are those of the PKWARE
 * APPNOTE: +24 in the central directory header, +22 in the local header and +12 in the data
 * descriptor.
 */
static void lie_about_zip_size(uint8_t *zip, size_t size, uint32_t declared)
{
    uint8_t *end = zip + size - 22;
    assert_memory_equal(end, "PK\x05\x06", 4);
    uint8_t *central = zip + load_le32(end + 16);
    assert_memory_equal(central, "PK\x01\x02", 4);
    uint8_t *local = zip + load_le32(central + 42);
    assert_memory_equal(local, "PK\x03\x04", 4);
    store_le32(central + 24, declared);
    store_le32(local + 22, declared);
    if (local[6] & 0x08) {
        size_t name_length = (size_t)local[26] | (size_t)local[27] << 8;
        size_t extra_length = (size_t)local[28] | (size_t)local[29] << 8;
        uint8_t *descriptor = local + 30 + name_length + extra_length + load_le32(central + 20);
        assert_memory_equal(descriptor, "PK\x07\x08", 4);
        store_le32(descriptor + 12, declared);
    }
}

/*
 * A split entry 1 MiB over QREF_WIKITEXT_MAX_BYTES (zeros, so it deflates to about 256 KiB):
 * rejected on its declared size before anything is read, and, when the headers declare 4096
 * bytes, after exactly one byte past the limit.
 */
static void test_reject_zip_bomb(void **state)
{
    (void)state;
    size_t entry_size = QREF_WIKITEXT_MAX_BYTES + ((size_t)1 << 20);
    uint8_t *zeros = calloc(1, entry_size);
    assert_non_null(zeros);
    const zip_file files[] = {{"wikitext-2-raw/wiki.test.raw", zeros, entry_size, AE_IFREG}};
    size_t zip_size = 0;
    uint8_t *zip = write_zip(files, 1, &zip_size);
    free(zeros);

    char phrase[256];
    snprintf(phrase, sizeof phrase,
             "bomb.zip: entry \"wikitext-2-raw/wiki.test.raw\" declares %zu bytes, more than the "
             "%zu-byte limit for a WikiText-2 split; the entry was not read",
             entry_size, QREF_WIKITEXT_MAX_BYTES);
    check_text_rejected("bomb.zip", zip, zip_size, QREF_WIKITEXT_TEST, phrase);

    lie_about_zip_size(zip, zip_size, 4096);
    snprintf(phrase, sizeof phrase,
             "bomb.zip: entry \"wikitext-2-raw/wiki.test.raw\" decompressed to %zu bytes, more than "
             "the %zu-byte limit for a WikiText-2 split; reading stopped there",
             QREF_WIKITEXT_MAX_BYTES + 1, QREF_WIKITEXT_MAX_BYTES);
    check_text_rejected("bomb.zip", zip, zip_size, QREF_WIKITEXT_TEST, phrase);
    free(zip);
}

static void test_reject_damaged_zip(void **state)
{
    (void)state;
    size_t raw_size = 0;
    char *raw = test_read_file(fixture_raw(), &raw_size);
    const zip_file files[] = {{"wikitext-2-raw/wiki.test.raw", raw, raw_size, AE_IFREG}};
    size_t zip_size = 0;
    uint8_t *zip = write_zip(files, 1, &zip_size);

    /* A cut inside the compressed data keeps the zip signature, but the entry cannot be read. */
    qref_wikitext wikitext;
    qref_error err = {0};
    assert_int_equal(qref_wikitext_load_memory("cut.zip", zip, zip_size / 2, QREF_WIKITEXT_TEST,
                                               &wikitext, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "cut.zip"));
    assert_null(wikitext.study_text);
    free(zip);

    /* One flipped bit in a stored entry fails its CRC-32. */
    zip = write_zip_with(files, 1, "store", &zip_size);
    static const char marker[] = "Robert Boulter is";
    size_t at = 0;
    while (at + sizeof marker - 1 <= zip_size && memcmp(zip + at, marker, sizeof marker - 1) != 0)
        at++;
    assert_true(at + sizeof marker - 1 <= zip_size);
    zip[at] ^= 1;
    assert_int_equal(qref_wikitext_load_memory("flip.zip", zip, zip_size, QREF_WIKITEXT_TEST,
                                               &wikitext, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "flip.zip: entry \"wikitext-2-raw/wiki.test.raw\" cannot "
                                        "be read"));
    assert_non_null(strstr(err.message, "CRC"));
    free(zip);
    free(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_rows_and_prefix),
        cmocka_unit_test(test_fixture_sha256_matches_golden),
        cmocka_unit_test(test_rows_from_crafted_text),
        cmocka_unit_test(test_reject_invalid_utf8),
        cmocka_unit_test(test_reject_empty_text),
        cmocka_unit_test(test_reject_nul_bytes),
        cmocka_unit_test(test_zip_matches_raw),
        cmocka_unit_test(test_reject_bad_zips),
        cmocka_unit_test(test_reject_non_zip_named_zip),
        cmocka_unit_test(test_reject_zip_bomb),
        cmocka_unit_test(test_reject_damaged_zip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
