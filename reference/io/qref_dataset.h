/*
 * WikiText-2 reader: the evaluation texts that perplexity protocols build from a split of
 * WikiText-2 (raw), read from `wiki.*.raw` or from the canonical `wikitext-2-raw-v1.zip`.
 *
 * Two texts come out of one file:
 *
 *   study text     The Hugging Face `wikitext` loader (huggingface/datasets,
 *                  datasets/wikitext/wikitext.py) makes one row per line of the file as Python
 *                  reads it. With universal newlines, "\r\n" and "\r" end a line and read as
 *                  "\n". A line whose strip() is empty becomes "", and any other line is kept
 *                  verbatim with its "\n". GPTQ-style evaluation code (IST-DASLab/gptq
 *                  datautils.py and the code derived from it) joins the rows with "\n\n".
 *   llama.cpp text the file's bytes minus exactly one trailing "\n", as `llama-perplexity -f`
 *                  reads it (ggml-org/llama.cpp common/arg.cpp).
 *
 * A zip archive is read in memory through libarchive, never extracted: only the entry
 * `wikitext-2-raw/wiki.<split>.raw` is read, and the archive is rejected when any entry name is
 * absolute, contains a ".." component or a backslash, or when the wanted entry is missing,
 * duplicated, not a regular file or larger than QREF_WIKITEXT_MAX_BYTES. The entry's declared
 * size is checked before anything is allocated, and the bytes it decompresses to are checked
 * after each 64 KiB block, so a zip bomb stops one byte past the limit.
 *
 * The text must be UTF-8 without NUL bytes and hold at least one row that is not blank.
 */
#ifndef QREF_DATASET_H
#define QREF_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "core/qref_sha256.h"

/* Largest split file accepted; wiki.train.raw of WikiText-2 is about 11 MB. */
#define QREF_WIKITEXT_MAX_BYTES ((size_t)256 << 20)

typedef enum qref_wikitext_split {
    QREF_WIKITEXT_TEST,
    QREF_WIKITEXT_VALID,
    QREF_WIKITEXT_TRAIN
} qref_wikitext_split;

typedef struct qref_wikitext {
    char *study_text;     /* rows joined with "\n\n"; NUL-terminated */
    size_t study_size;
    char *llamacpp_text;  /* file bytes minus one trailing "\n"; NUL-terminated */
    size_t llamacpp_size;
    size_t row_count;     /* 4358 for the WikiText-2 test split */
    bool from_archive;
    char input_sha256[QREF_SHA256_HEX_SIZE]; /* of the file as given (raw file or zip) */
    char raw_sha256[QREF_SHA256_HEX_SIZE];   /* of the wiki.<split>.raw bytes */
} qref_wikitext;

/* Archive entry name of a split, e.g. "wikitext-2-raw/wiki.test.raw". */
const char *qref_wikitext_entry_name(qref_wikitext_split split);

/*
 * Reads a raw split file or a zip archive from memory; display names the input in messages. The
 * input is read as a zip when display ends in ".zip" (in any letter case) or the data starts
 * with the "PK\3\4" signature. split selects the archive entry and names the expected split in
 * messages; a raw file's content is not checked against it. Fails with QREF_ERR_INVALID on text
 * that is not UTF-8 (Python's strict decoder would raise), contains a NUL byte or has no
 * non-blank row, and on a rejected archive, including a .zip name on a file that is not a zip.
 */
qref_status qref_wikitext_load_memory(const char *display, const uint8_t *data, size_t size,
                                      qref_wikitext_split split, qref_wikitext *out,
                                      qref_error *err);

/* Maps the file at path and reads it with qref_wikitext_load_memory. */
qref_status qref_wikitext_load_file(const char *path, qref_wikitext_split split,
                                    qref_wikitext *out, qref_error *err);

void qref_wikitext_free(qref_wikitext *wikitext);

#endif
