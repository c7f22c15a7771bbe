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
 *
 * A GGUF file carries its tokenizer as metadata (tokenizer.ggml.*), and
 * qref_tokenizer_load_gguf builds it the way llama.cpp's llama_vocab does:
 *   - tokenizer.ggml.model "llama": llama.cpp's SentencePiece-style encoder
 *     (model/qref_spm_llamacpp.h), which differs from the SentencePiece library on the same
 *     vocabulary (no remove_extra_whitespaces, byte fallback for any unknown piece);
 *   - "gpt2" with tokenizer.ggml.pre "llama-bpe", "llama3" or "llama-v3": byte-level BPE from
 *     the token and merge arrays (qref_bpe_load_arrays) with the LLaMA-3 pre-tokenizer regex and
 *     whole-word vocabulary lookup first, as llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3. Special
 *     (CONTROL) token texts in the input stay ordinary text, as llama.cpp encodes with
 *     parse_special = false;
 *   - any other model, or "gpt2" with another pre-tokenizer (llama.cpp's "default" runs four
 *     regexes in sequence, which qref_bpe does not implement), is QREF_ERR_UNSUPPORTED by name.
 * BOS, EOS and the unknown id, add_bos_token, add_eos_token and add_space_prefix come from the
 * metadata. An absent key takes llama.cpp's default. For "llama" these are BOS 1, EOS 2,
 * unknown 0, add_bos true and add_space_prefix true. For "gpt2" with the LLaMA-3
 * pre-tokenizer, add_bos is true and BOS and EOS are 11.
 */
#ifndef QREF_TOKENIZER_H
#define QREF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "core/qref_sha256.h"
#include "io/qref_blob.h"
#include "io/qref_gguf.h"
#include "io/qref_snapshot.h"
#include "model/qref_bpe.h"
#include "model/qref_spm.h"
#include "model/qref_spm_llamacpp.h"

typedef enum qref_tokenizer_kind {
    QREF_TOKENIZER_SENTENCEPIECE = 1, /* a SentencePiece tokenizer.model */
    QREF_TOKENIZER_HF_BPE,            /* a byte-level BPE tokenizer.json */
    QREF_TOKENIZER_TIKTOKEN,          /* Meta's tiktoken tokenizer.model */
    QREF_TOKENIZER_GGUF_SPM,          /* GGUF tokenizer.ggml.model "llama", encoded as llama.cpp does */
    QREF_TOKENIZER_GGUF_BPE           /* GGUF tokenizer.ggml.model "gpt2" (byte-level BPE) */
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
 * is read when present), a GGUF file (starting with "GGUF"; see qref_tokenizer_load_gguf), or a
 * tiktoken or SentencePiece tokenizer.model. Fails when a folder has no tokenizer file.
 */
qref_status qref_tokenizer_load_path(const char *path, qref_tokenizer **out, qref_error *err);

/*
 * Loads the tokenizer of a parsed GGUF file from its tokenizer.ggml.* metadata (see above).
 * display names the file in messages and becomes the tokenizer's file name. Stores NULL and
 * returns QREF_OK when the file has no tokenizer.ggml.model.
 */
qref_status qref_tokenizer_load_gguf(const qref_gguf *file, const char *display, qref_tokenizer **out,
                                     qref_error *err);

void qref_tokenizer_free(qref_tokenizer *tokenizer);

/*
 * Encodes length bytes of text, BOS first with add_bos. Byte-level BPE needs valid UTF-8; from
 * tokenizer.json or tiktoken it encodes special tokens written in the text as their ids, from
 * GGUF it encodes them as text, as llama.cpp does. SentencePiece takes any bytes. On success
 * *ids is a heap array of *count ids that the caller frees.
 */
qref_status qref_tokenizer_encode(const qref_tokenizer *tokenizer, const char *text, size_t length, bool add_bos,
                                  int32_t **ids, size_t *count, qref_error *err);

/* Decodes ids for debugging; *text is a heap, NUL-terminated buffer of *length bytes. */
qref_status qref_tokenizer_decode(const qref_tokenizer *tokenizer, const int32_t *ids, size_t count, char **text,
                                  size_t *length, qref_error *err);

/*
 * Whether evaluation text starts with BOS. For a GGUF tokenizer this is add_bos_token, because
 * llama.cpp adds BOS, and writes it over the first token of every perplexity chunk, only when
 * it is set. The other kinds return true, because their models are run with BOS first.
 */
bool qref_tokenizer_adds_bos(const qref_tokenizer *tokenizer);

/* -1 when the tokenizer has none. */
int32_t qref_tokenizer_bos_id(const qref_tokenizer *tokenizer);
int32_t qref_tokenizer_eos_id(const qref_tokenizer *tokenizer);
/* One more than the largest id. */
int32_t qref_tokenizer_vocab_size(const qref_tokenizer *tokenizer);

qref_tokenizer_kind qref_tokenizer_kind_of(const qref_tokenizer *tokenizer);
/* "sentencepiece", "tokenizer.json (byte-level BPE)", "tiktoken", "gguf llama (llama.cpp
 * SentencePiece)" or "gguf gpt2 (byte-level BPE)". */
const char *qref_tokenizer_kind_name(qref_tokenizer_kind kind);
/* The name of the file the tokenizer came from, as given in qref_tokenizer_files or the path. */
const char *qref_tokenizer_file_name(const qref_tokenizer *tokenizer);
/*
 * SHA-256 of that file as 64 lower-case hex digits. For a GGUF tokenizer it is the digest of
 * the tokenizer metadata, not of the whole model file. The digest covers each
 * tokenizer.ggml.* pair in file order: the key, one NUL byte, the u32 value type and the
 * value's bytes as stored (an array's element type, count and elements).
 */
const char *qref_tokenizer_sha256(const qref_tokenizer *tokenizer);
/* Why tokenizer.json was passed over for tokenizer.model, or NULL when it was not. */
const char *qref_tokenizer_skipped(const qref_tokenizer *tokenizer);

/* The underlying tokenizer; NULL when it is of the other kind. */
const qref_spm *qref_tokenizer_spm(const qref_tokenizer *tokenizer);
const qref_bpe *qref_tokenizer_bpe(const qref_tokenizer *tokenizer);
const qref_spm_llamacpp *qref_tokenizer_spm_llamacpp(const qref_tokenizer *tokenizer);

#endif
