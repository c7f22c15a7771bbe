/*
 * Steps shared by the byte-level BPE loaders (qref_bpe.c builds from arrays,
 * qref_bpe_load.c from tokenizer.json and tiktoken files). Not part of the public interface.
 *
 * A loader calls the steps in this order: create, then token for every vocabulary entry
 * (mergeable), index, merge for every merge, token and added for every added token, pattern,
 * options and finish.
 * Every step names the entry it rejects with the label it is given.
 */
#ifndef QREF_BPE_BUILD_H
#define QREF_BPE_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "model/qref_bpe.h"

/* Maximum length in bytes of a token, an added-token content or a pattern. */
#define QREF_BPE_MAX_TOKEN_BYTES (1u << 16)
/* Largest id accepted; the largest vocabularies in use have about 256k tokens. */
#define QREF_BPE_MAX_ID ((int32_t)1 << 24)

/* Flags of an added token (tokenizer.json added_tokens[i]). */
typedef struct qref_bpe_added_flags {
    bool special;
    bool lstrip;
    bool rstrip;
    bool single_word;
    bool normalized;
} qref_bpe_added_flags;

/* Starts an empty tokenizer with room for ids [0, id_capacity). */
qref_status qref_bpe_build_create(const char *display, qref_bpe_source source, int32_t id_capacity,
                                  qref_bpe **out, qref_error *err);

/*
 * Defines id as the raw bytes[0..length) of the given type. A mergeable token belongs to the
 * BPE vocabulary: merges and whole-piece lookups can produce it. Defining an id again is
 * allowed only with the same bytes (an added token that repeats a vocabulary entry).
 */
qref_status qref_bpe_build_token(qref_bpe *bpe, int32_t id, const char *bytes, size_t length,
                                 qref_bpe_token_type type, bool mergeable, const char *label,
                                 qref_error *err);

/* Indexes the mergeable tokens by their bytes; fails when a single byte has no token. */
qref_status qref_bpe_build_index(qref_bpe *bpe, qref_error *err);

/* The mergeable token with these bytes, or -1; valid after qref_bpe_build_index. */
int32_t qref_bpe_build_find(const qref_bpe *bpe, const char *bytes, size_t length);

/* Adds the merge (left, right) -> merged with rank; a pair given again takes the new values. */
qref_status qref_bpe_build_merge(qref_bpe *bpe, int32_t left, int32_t right, int32_t merged,
                                 uint32_t rank, qref_error *err);

/* Marks the defined token id as an added token, matched in text before pre-tokenization. */
qref_status qref_bpe_build_added(qref_bpe *bpe, int32_t id, const qref_bpe_added_flags *flags,
                                 const char *label, qref_error *err);

/* Compiles the pre-tokenizer regex; label names the field that contains it. */
qref_status qref_bpe_build_pattern(qref_bpe *bpe, const char *pattern, size_t length,
                                   const char *label, qref_error *err);

/* Sets whole-piece lookup, BOS, EOS (-1 for none) and whether the source adds BOS. */
void qref_bpe_build_options(qref_bpe *bpe, bool ignore_merges, int32_t bos_id, int32_t eos_id,
                            bool adds_bos);

/* Builds the added-token tries and checks that BOS and EOS name defined tokens. */
qref_status qref_bpe_build_finish(qref_bpe *bpe, qref_error *err);

/* Byte value of a character of the byte-level alphabet, or -1 (GPT-2 bytes_to_unicode). */
int qref_bpe_byte_level_decode_char(uint32_t codepoint);

/*
 * Decodes a byte-level string to raw bytes into out (capacity at least length). Returns the
 * number of bytes written, or -1 with *bad_offset at the first character outside the
 * alphabet (or of invalid UTF-8).
 */
ptrdiff_t qref_bpe_byte_level_decode(const char *text, size_t length, char *out, size_t *bad_offset);

/* Writes a shortened, quoted copy of text for messages (control bytes escaped). */
const char *qref_bpe_quote(const char *text, size_t length, char *buffer, size_t size);

#endif
