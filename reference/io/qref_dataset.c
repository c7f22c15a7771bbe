#include "io/qref_dataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/qref_blob.h"

/* An archive with more entries than this is rejected; the canonical zip has 4. */
#define WIKITEXT_MAX_ENTRIES 10000
/* Bytes decompressed per read, and the first buffer for an entry without a declared size. */
#define WIKITEXT_READ_BLOCK ((size_t)64 << 10)
#define WIKITEXT_FIRST_CAPACITY ((size_t)1 << 20)

const char *qref_wikitext_entry_name(qref_wikitext_split split)
{
    switch (split) {
    case QREF_WIKITEXT_TEST: return "wikitext-2-raw/wiki.test.raw";
    case QREF_WIKITEXT_VALID: return "wikitext-2-raw/wiki.valid.raw";
    case QREF_WIKITEXT_TRAIN: return "wikitext-2-raw/wiki.train.raw";
    }
    return "wikitext-2-raw/wiki.test.raw";
}

/*
 * Split name and row count as the Hugging Face dataset card of Salesforce/wikitext lists them
 * for the wikitext-2-raw-v1 configuration (num_examples), for messages.
 */
static const char *split_name(qref_wikitext_split split)
{
    switch (split) {
    case QREF_WIKITEXT_TEST: return "test";
    case QREF_WIKITEXT_VALID: return "validation";
    case QREF_WIKITEXT_TRAIN: return "train";
    }
    return "test";
}

static int split_row_count(qref_wikitext_split split)
{
    switch (split) {
    case QREF_WIKITEXT_TEST: return 4358;
    case QREF_WIKITEXT_VALID: return 3760;
    case QREF_WIKITEXT_TRAIN: return 36718;
    }
    return 4358;
}

/* ------------------------------------------------------------------------------------------ */
/* Text: strict UTF-8 and Python's notion of whitespace                                       */
/* ------------------------------------------------------------------------------------------ */

/*
 * Decodes the character at text as Python's strict "utf-8" codec does; returns its length
 * and stores the code point, or returns 0 for a malformed sequence (overlong form, surrogate,
 * code point above U+10FFFF, bad or missing continuation byte).
 */
static size_t utf8_decode(const uint8_t *text, size_t length, uint32_t *cp)
{
    uint8_t lead = text[0];
    size_t need;
    uint32_t value, minimum;
    if (lead < 0x80) {
        *cp = lead;
        return 1;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
        need = 2, value = lead & 0x1f, minimum = 0x80;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        need = 3, value = lead & 0x0f, minimum = 0x800;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        need = 4, value = lead & 0x07, minimum = 0x10000;
    } else {
        return 0;
    }
    if (length < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((text[i] & 0xc0) != 0x80)
            return 0;
        value = value << 6 | (text[i] & 0x3f);
    }
    if (value < minimum || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff))
        return 0;
    *cp = value;
    return need;
}

/* Python's str.isspace(): what str.strip() with no argument removes. */
static bool is_python_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 ||
           cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* Checks that text is UTF-8 without a NUL byte; WikiText-2 has none, and a NUL ends C strings. */
static qref_status check_text(const char *display, const uint8_t *text, size_t size,
                              qref_error *err)
{
    for (size_t pos = 0; pos < size;) {
        if (text[pos] == 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: byte %zu is a NUL byte (0x00), expected text without NUL "
                                  "bytes",
                                  display, pos);
        uint32_t cp = 0;
        size_t length = utf8_decode(text + pos, size - pos, &cp);
        if (length == 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: byte %zu (0x%02x) starts a malformed UTF-8 sequence, "
                                  "expected UTF-8 text",
                                  display, pos, text[pos]);
        pos += length;
    }
    return QREF_OK;
}

/* True when every character of the line is whitespace, so Python's strip() leaves "". */
static bool line_is_blank(const uint8_t *line, size_t length)
{
    for (size_t pos = 0; pos < length;) {
        uint32_t cp = 0;
        size_t char_length = utf8_decode(line + pos, length - pos, &cp);
        if (char_length == 0 || !is_python_space(cp))
            return false;
        pos += char_length;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Building the two texts from the raw bytes                                                  */
/* ------------------------------------------------------------------------------------------ */

/*
 * Finds the end of the line that starts at pos: sets *content_end to the first byte of its
 * terminator and returns the position after the terminator ("\n", "\r\n" or "\r"; none at the
 * end of the file).
 */
static size_t next_line(const uint8_t *text, size_t size, size_t pos, size_t *content_end,
                        bool *terminated)
{
    size_t end = pos;
    while (end < size && text[end] != '\n' && text[end] != '\r')
        end++;
    *content_end = end;
    *terminated = end < size;
    if (end == size)
        return size;
    if (text[end] == '\r' && end + 1 < size && text[end + 1] == '\n')
        return end + 2;
    return end + 1;
}

static qref_status build_texts(const char *display, const uint8_t *raw, size_t size,
                               qref_wikitext_split split, qref_wikitext *out, qref_error *err)
{
    qref_status status = check_text(display, raw, size, err);
    if (status != QREF_OK)
        return status;
    if (size == 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: no text (expected the WikiText-2 %s split, %d rows)", display,
                              split_name(split), split_row_count(split));

    /* llama.cpp: the bytes as read, minus one trailing newline. */
    size_t llamacpp_size = size > 0 && raw[size - 1] == '\n' ? size - 1 : size;
    out->llamacpp_text = malloc(llamacpp_size + 1);
    /* Study text: each row is at most its line plus "\n", and rows are joined by 2 bytes. */
    size_t study_capacity = 3 * size + 1;
    out->study_text = malloc(study_capacity);
    if (out->llamacpp_text == NULL || out->study_text == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu bytes of text",
                              display, size);
    memcpy(out->llamacpp_text, raw, llamacpp_size);
    out->llamacpp_text[llamacpp_size] = '\0';
    out->llamacpp_size = llamacpp_size;

    /* Hugging Face rows: a blank line becomes "", any other line keeps its "\n". */
    size_t n = 0, rows = 0, text_rows = 0;
    for (size_t pos = 0; pos < size;) {
        size_t content_end = 0;
        bool terminated = false;
        size_t next = next_line(raw, size, pos, &content_end, &terminated);
        if (rows > 0) {
            out->study_text[n++] = '\n';
            out->study_text[n++] = '\n';
        }
        if (!line_is_blank(raw + pos, content_end - pos)) {
            memcpy(out->study_text + n, raw + pos, content_end - pos);
            n += content_end - pos;
            if (terminated)
                out->study_text[n++] = '\n';
            text_rows++;
        }
        rows++;
        pos = next;
    }
    out->study_text[n] = '\0';
    out->study_size = n;
    out->row_count = rows;
    if (text_rows == 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: no text, only %zu blank rows (expected the WikiText-2 %s split, "
                              "%d rows)",
                              display, rows, split_name(split), split_row_count(split));
    return QREF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Zip archives through libarchive                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Returns NULL when name is a safe relative path, else the reason it is rejected. */
static const char *unsafe_name_reason(const char *name)
{
    if (name[0] == '\0')
        return "it is empty";
    if (name[0] == '/')
        return "it is an absolute path";
    if (strchr(name, '\\') != NULL)
        return "it contains a backslash";
    for (const char *part = name; *part != '\0';) {
        size_t length = strcspn(part, "/");
        if (length == 2 && part[0] == '.' && part[1] == '.')
            return "it contains a \"..\" component";
        part += length;
        if (*part == '/')
            part++;
    }
    for (const char *c = name; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return "it contains a control character";
    }
    return NULL;
}

/*
 * Reads the current entry's data into a heap buffer. A declared size over
 * QREF_WIKITEXT_MAX_BYTES is rejected before anything is allocated. Otherwise the buffer grows
 * by doubling up to one byte past the limit, and the bytes produced are checked after each
 * block, so an entry that decompresses to more (a header that lies low) stops right there.
 */
static qref_status read_entry(struct archive *archive, struct archive_entry *entry,
                              const char *display, const char *name, uint8_t **data,
                              size_t *size, qref_error *err)
{
    const size_t ceiling = QREF_WIKITEXT_MAX_BYTES + 1;
    size_t capacity = WIKITEXT_FIRST_CAPACITY;
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) >= 0) {
        la_int64_t declared = archive_entry_size(entry);
        if ((uint64_t)declared > QREF_WIKITEXT_MAX_BYTES)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: entry \"%s\" declares %lld bytes, more than the %zu-byte "
                                  "limit for a WikiText-2 split; the entry was not read",
                                  display, name, (long long)declared, QREF_WIKITEXT_MAX_BYTES);
        capacity = (size_t)declared + 1;
    }
    if (capacity > ceiling)
        capacity = ceiling;

    uint8_t *buffer = malloc(capacity);
    if (buffer == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu bytes", display,
                              capacity);
    size_t used = 0;
    for (;;) {
        if (used == capacity) {
            /* Never at the ceiling: the byte that filled it broke the limit below. */
            size_t grown_capacity = capacity > ceiling / 2 ? ceiling : capacity * 2;
            uint8_t *grown = realloc(buffer, grown_capacity);
            if (grown == NULL) {
                free(buffer);
                return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu bytes",
                                      display, grown_capacity);
            }
            buffer = grown;
            capacity = grown_capacity;
        }
        size_t request = capacity - used < WIKITEXT_READ_BLOCK ? capacity - used
                                                               : WIKITEXT_READ_BLOCK;
        la_ssize_t got = archive_read_data(archive, buffer + used, request);
        if (got < 0) {
            qref_error_set(err, QREF_ERR_INVALID, "%s: entry \"%s\" cannot be read: %s", display,
                           name, archive_error_string(archive));
            free(buffer);
            return QREF_ERR_INVALID;
        }
        if (got == 0)
            break;
        used += (size_t)got;
        if (used > QREF_WIKITEXT_MAX_BYTES) {
            free(buffer);
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: entry \"%s\" decompressed to %zu bytes, more than the "
                                  "%zu-byte limit for a WikiText-2 split; reading stopped there",
                                  display, name, used, QREF_WIKITEXT_MAX_BYTES);
        }
    }
    *data = buffer;
    *size = used;
    return QREF_OK;
}

/* Finds and reads the split's entry; every entry name is checked before anything is used. */
static qref_status read_zip_entry(const char *display, const uint8_t *data, size_t size,
                                  const char *wanted, uint8_t **raw, size_t *raw_size,
                                  qref_error *err)
{
    *raw = NULL;
    *raw_size = 0;
    struct archive *archive = archive_read_new();
    if (archive == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    /* Zip only: no other format reader and no external filter program is enabled. */
    archive_read_support_format_zip(archive);
    if (archive_read_open_memory(archive, data, size) != ARCHIVE_OK) {
        const char *reason = archive_error_string(archive);
        qref_error_set(err, QREF_ERR_INVALID,
                       "%s: not a zip archive (libarchive: %s), expected wikitext-2-raw-v1.zip or "
                       "a raw split file such as wiki.test.raw",
                       display, reason != NULL ? reason : "unknown error");
        archive_read_free(archive);
        return QREF_ERR_INVALID;
    }

    qref_status status = QREF_OK;
    size_t entries = 0;
    struct archive_entry *entry = NULL;
    for (;;) {
        int rc = archive_read_next_header(archive, &entry);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: zip entry %zu cannot be read: %s", display, entries,
                                    archive_error_string(archive));
            break;
        }
        if (++entries > WIKITEXT_MAX_ENTRIES) {
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: archive has more than %d entries, expected a WikiText "
                                    "archive of a few files",
                                    display, WIKITEXT_MAX_ENTRIES);
            break;
        }
        const char *name = archive_entry_pathname(entry);
        if (name == NULL) {
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: zip entry %zu has no readable name", display, entries - 1);
            break;
        }
        const char *reason = unsafe_name_reason(name);
        if (reason != NULL) {
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: zip entry \"%s\" is rejected because %s, expected a "
                                    "relative path without \"..\"",
                                    display, name, reason);
            break;
        }
        if (strcmp(name, wanted) != 0)
            continue; /* libarchive skips the unread data of this entry */
        if (*raw != NULL) {
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: zip entry \"%s\" appears twice, expected once", display,
                                    name);
            break;
        }
        if (archive_entry_filetype(entry) != AE_IFREG) {
            status = qref_error_set(err, QREF_ERR_INVALID,
                                    "%s: zip entry \"%s\" is not a regular file", display, name);
            break;
        }
        status = read_entry(archive, entry, display, name, raw, raw_size, err);
        if (status != QREF_OK)
            break;
    }
    archive_read_free(archive);

    if (status == QREF_OK && *raw == NULL)
        status = qref_error_set(err, QREF_ERR_INVALID,
                                "%s: zip archive has no entry \"%s\", expected the canonical "
                                "wikitext-2-raw-v1.zip layout",
                                display, wanted);
    if (status != QREF_OK) {
        free(*raw);
        *raw = NULL;
        *raw_size = 0;
    }
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Entry points                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* A zip by its local file header signature, or by a name ending in ".zip" in any letter case. */
static bool is_zip(const char *display, const uint8_t *data, size_t size)
{
    size_t length = strlen(display);
    if (length >= 4 && strcasecmp(display + length - 4, ".zip") == 0)
        return true;
    return size >= 4 && memcmp(data, "PK\x03\x04", 4) == 0;
}

qref_status qref_wikitext_load_memory(const char *display, const uint8_t *data, size_t size,
                                      qref_wikitext_split split, qref_wikitext *out,
                                      qref_error *err)
{
    memset(out, 0, sizeof *out);
    if (qref_sha256_buffer_hex(data, size, out->input_sha256) != 0)
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: SHA-256 failed", display);

    /* Step 1: the raw split bytes, from the zip entry or the input itself. */
    uint8_t *entry = NULL;
    const uint8_t *raw = data;
    size_t raw_size = size;
    if (is_zip(display, data, size)) {
        const char *wanted = qref_wikitext_entry_name(split);
        qref_status status = read_zip_entry(display, data, size, wanted, &entry, &raw_size, err);
        if (status != QREF_OK)
            return status;
        raw = entry;
        out->from_archive = true;
    } else if (size > QREF_WIKITEXT_MAX_BYTES) {
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: file is %zu bytes, larger than the %zu-byte limit for a "
                              "WikiText-2 split",
                              display, size, QREF_WIKITEXT_MAX_BYTES);
    }

    /* Step 2: digests and the two evaluation texts. */
    qref_status status = QREF_OK;
    if (qref_sha256_buffer_hex(raw, raw_size, out->raw_sha256) != 0)
        status = qref_error_set(err, QREF_ERR_INTERNAL, "%s: SHA-256 failed", display);
    if (status == QREF_OK) {
        char entry_display[1024];
        snprintf(entry_display, sizeof entry_display, "%s%s%s", display,
                 out->from_archive ? ": " : "", out->from_archive ? qref_wikitext_entry_name(split) : "");
        status = build_texts(entry_display, raw, raw_size, split, out, err);
    }
    free(entry);
    if (status != QREF_OK)
        qref_wikitext_free(out);
    return status;
}

qref_status qref_wikitext_load_file(const char *path, qref_wikitext_split split,
                                    qref_wikitext *out, qref_error *err)
{
    memset(out, 0, sizeof *out);
    qref_blob blob;
    qref_status status = qref_blob_map_file(path, &blob, err);
    if (status != QREF_OK)
        return status;
    status = qref_wikitext_load_memory(path, blob.data, blob.size, split, out, err);
    qref_blob_free(&blob);
    return status;
}

void qref_wikitext_free(qref_wikitext *wikitext)
{
    free(wikitext->study_text);
    free(wikitext->llamacpp_text);
    memset(wikitext, 0, sizeof *wikitext);
}
