/*
 * One tokenizer interface over SentencePiece (model/qref_spm.h) and byte-level BPE
 * (model/qref_bpe.h), and the rule that picks a snapshot's tokenizer file:
 *
 *   1. tokenizer.json, with tokenizer_config.json for BOS and EOS, when it is a byte-level BPE
 *      tokenizer that qref_bpe implements;
 *   2. else tokenizer.model, which is either Meta's tiktoken file (text lines "BASE64 RANK") or
 *      a SentencePiece ModelProto; the content decides, not the name.
 *
 * A tokenizer.json of a layout qref_bpe does not implement (QREF_ERR_UNSUPPORTED, for example
 * LLaMA-2's SentencePiece-style tokenizer.json) gives way to tokenizer.model when there is one,
 * and qref_tokenizer_skipped returns the reason. A malformed tokenizer.json is an error.
 *
 * Messages of the loaders name the file ("tokenizer.json: ..."); qref_tokenizer_load_path
 * names it by its path, and snapshot callers prefix the snapshot.
 */
#ifndef QREF_TOKENIZER_H
#define QREF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "core/qref_sha256.h"
#include "io/qref_blob.h"
#include "io/qref_snapshot.h"
#include "model/qref_bpe.h"
#include "model/qref_spm.h"

typedef enum qref_tokenizer_kind {
    QREF_TOKENIZER_SENTENCEPIECE = 1, /* a SentencePiece tokenizer.model */
    QREF_TOKENIZER_HF_BPE,            /* a byte-level BPE tokenizer.json */
    QREF_TOKENIZER_TIKTOKEN           /* Meta's tiktoken tokenizer.model */
} qref_tokenizer_kind;

/* The tokenizer files of a folder or snapshot; NULL for a file that is absent. */
typedef struct qref_tokenizer_files {
    const qref_blob *tokenizer_json;
    const qref_blob *tokenizer_config_json;
    const qref_blob *tokenizer_model;
    /* names used in messages; NULL gives "tokenizer.json", "tokenizer_config.json",
     * "tokenizer.model" */
    const char *tokenizer_json_name;
    const char *tokenizer_config_json_name;
    const char *tokenizer_model_name;
} qref_tokenizer_files;

typedef struct qref_tokenizer qref_tokenizer;

/*
 * Loads the tokenizer the rule above picks from files. Stores NULL and returns QREF_OK when
 * there is neither tokenizer.json nor tokenizer.model.
 */
qref_status qref_tokenizer_load_snapshot_files(const qref_tokenizer_files *files, qref_tokenizer **out,
                                               qref_error *err);

/* As qref_tokenizer_load_snapshot_files with the snapshot's top-level files. */
qref_status qref_tokenizer_load_snapshot(const qref_snapshot *snapshot, qref_tokenizer **out, qref_error *err);

/*
 * Loads from a path: a folder (its tokenizer.json, tokenizer_config.json and tokenizer.model),
 * a tokenizer.json (a file whose first non-blank byte is '{'; tokenizer_config.json next to it
 * is read when present), or a tiktoken or SentencePiece tokenizer.model. Fails when a folder
 * has no tokenizer file.
 */
qref_status qref_tokenizer_load_path(const char *path, qref_tokenizer **out, qref_error *err);

void qref_tokenizer_free(qref_tokenizer *tokenizer);

/*
 * Encodes length bytes of text, BOS first with add_bos. Byte-level BPE needs valid UTF-8 and
 * encodes special tokens written in the text as their ids; SentencePiece takes any bytes. On
 * success *ids is a heap array of *count ids that the caller frees.
 */
qref_status qref_tokenizer_encode(const qref_tokenizer *tokenizer, const char *text, size_t length, bool add_bos,
                                  int32_t **ids, size_t *count, qref_error *err);

/* Decodes ids for debugging; *text is a heap, NUL-terminated buffer of *length bytes. */
qref_status qref_tokenizer_decode(const qref_tokenizer *tokenizer, const int32_t *ids, size_t count, char **text,
                                  size_t *length, qref_error *err);

/* -1 when the tokenizer has none. */
int32_t qref_tokenizer_bos_id(const qref_tokenizer *tokenizer);
int32_t qref_tokenizer_eos_id(const qref_tokenizer *tokenizer);
/* One more than the largest id. */
int32_t qref_tokenizer_vocab_size(const qref_tokenizer *tokenizer);

qref_tokenizer_kind qref_tokenizer_kind_of(const qref_tokenizer *tokenizer);
/* "sentencepiece", "tokenizer.json (byte-level BPE)" or "tiktoken". */
const char *qref_tokenizer_kind_name(qref_tokenizer_kind kind);
/* The name of the file the tokenizer came from, as given in qref_tokenizer_files or the path. */
const char *qref_tokenizer_file_name(const qref_tokenizer *tokenizer);
/* SHA-256 of that file as 64 lower-case hex digits. */
const char *qref_tokenizer_sha256(const qref_tokenizer *tokenizer);
/* Why tokenizer.json was passed over for tokenizer.model, or NULL when it was not. */
const char *qref_tokenizer_skipped(const qref_tokenizer *tokenizer);

/* The underlying tokenizer; NULL when it is of the other kind. */
const qref_spm *qref_tokenizer_spm(const qref_tokenizer *tokenizer);
const qref_bpe *qref_tokenizer_bpe(const qref_tokenizer *tokenizer);

#endif
