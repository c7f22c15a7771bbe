/*
 * llama.cpp's SentencePiece-style tokenizer for GGUF vocabularies whose tokenizer.ggml.model is
 * "llama" (LLaMA-1/2, TinyLlama, llama2.c conversions).
 *
 * llama.cpp does not run the SentencePiece library. It rebuilds the encoder from the GGUF
 * arrays (tokenizer.ggml.tokens, .scores, .token_type) in src/llama-vocab.cpp
 * (llm_tokenizer_spm_session and llama_vocab::impl::tokenize, ggml-org/llama.cpp, 2023-2025),
 * and applies none of SentencePiece's normalizer options except the space prefix and the
 * space escape. This module reproduces that encoder, so token streams equal the ones
 * llama-perplexity scores. Steps, in llama.cpp's order:
 *
 *   1. cut the text at every occurrence of a USER_DEFINED token's text, longest tokens first;
 *      each occurrence becomes that token. CONTROL and UNKNOWN token texts stay ordinary text,
 *      as llama.cpp does with parse_special = false (llama-perplexity, test-tokenizer-0);
 *   2. in each remaining fragment, prepend one space when add_space_prefix is set and the
 *      fragment starts the text or follows a token of step 1, then write every space (0x20)
 *      as U+2581. Runs of spaces are kept: there is no remove_extra_whitespaces and no
 *      Unicode normalization;
 *   3. split the fragment into UTF-8 characters by their lead byte (a stray continuation byte
 *      is a character of its own; nothing is replaced);
 *   4. merge adjacent symbols bottom-up: always the pair whose concatenation is a vocabulary
 *      entry with the highest score, the leftmost pair on ties. Any vocabulary entry may be
 *      formed, whatever its token type;
 *   5. each final symbol is its vocabulary id; a symbol that is no entry becomes one
 *      "<0xXX>" byte token per byte (or the token whose text is that single byte).
 *
 * A token text that occurs twice in the vocabulary maps to its last id, as llama.cpp's
 * token_to_id map does.
 *
 * Limits: the per-model LSTRIP/RSTRIP attributes that llama.cpp sets by model name (Phi-3) are
 * not applied, and special tokens are never parsed from the text (parse_special = true is not
 * offered).
 */
#ifndef QREF_SPM_LLAMACPP_H
#define QREF_SPM_LLAMACPP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"

/* GGUF token types (llama.cpp llama_token_type). */
typedef enum qref_spm_llamacpp_token_type {
    QREF_SPM_LLAMACPP_TOKEN_NORMAL = 1,
    QREF_SPM_LLAMACPP_TOKEN_UNKNOWN = 2,
    QREF_SPM_LLAMACPP_TOKEN_CONTROL = 3,
    QREF_SPM_LLAMACPP_TOKEN_USER_DEFINED = 4,
    QREF_SPM_LLAMACPP_TOKEN_UNUSED = 5,
    QREF_SPM_LLAMACPP_TOKEN_BYTE = 6
} qref_spm_llamacpp_token_type;

/* A vocabulary as GGUF stores it; token i has id i. */
typedef struct qref_spm_llamacpp_vocab {
    const char *display;             /* names the source in messages, e.g. "model.gguf" */
    size_t token_count;
    const char *const *tokens;       /* UTF-8 texts, U+2581 for a space */
    const size_t *token_lengths;     /* NULL: the tokens are NUL-terminated */
    const float *scores;             /* merge priority; NULL: all 0 */
    const int32_t *token_types;      /* qref_spm_llamacpp_token_type values; NULL: all NORMAL */
    int32_t bos_id, eos_id, unk_id;  /* -1 when there is none */
    bool add_bos;                    /* tokenizer.ggml.add_bos_token (llama.cpp default true) */
    bool add_eos;                    /* tokenizer.ggml.add_eos_token (default false) */
    bool add_space_prefix;           /* tokenizer.ggml.add_space_prefix (default true) */
} qref_spm_llamacpp_vocab;

typedef struct qref_spm_llamacpp qref_spm_llamacpp;

/*
 * Builds the encoder from vocab (the arrays are copied). QREF_ERR_INVALID for an empty
 * vocabulary, a token type outside 1..6, a non-finite score, or a special id outside it.
 */
qref_status qref_spm_llamacpp_load(const qref_spm_llamacpp_vocab *vocab, qref_spm_llamacpp **out,
                                   qref_error *err);

void qref_spm_llamacpp_free(qref_spm_llamacpp *spm);

/*
 * Encodes length bytes of text (any bytes) by steps 1-5 above; with add_bos the BOS id comes
 * first, and a vocabulary without BOS fails. On success *ids is a heap array of *count ids that
 * the caller frees. A byte that step 5 cannot map is QREF_ERR_INVALID naming the byte.
 */
qref_status qref_spm_llamacpp_encode(const qref_spm_llamacpp *spm, const char *text, size_t length,
                                     bool add_bos, int32_t **ids, size_t *count, qref_error *err);

/*
 * Decodes ids for debugging: texts concatenated with U+2581 written as a space, byte tokens
 * as their byte, CONTROL tokens dropped, and one leading space dropped when add_space_prefix
 * is set. On success *text is a heap, NUL-terminated buffer of *length bytes.
 */
qref_status qref_spm_llamacpp_decode(const qref_spm_llamacpp *spm, const int32_t *ids, size_t count,
                                     char **text, size_t *length, qref_error *err);

int32_t qref_spm_llamacpp_vocab_size(const qref_spm_llamacpp *spm);
/* -1 when the vocabulary has none. */
int32_t qref_spm_llamacpp_bos_id(const qref_spm_llamacpp *spm);
int32_t qref_spm_llamacpp_eos_id(const qref_spm_llamacpp *spm);
bool qref_spm_llamacpp_adds_bos(const qref_spm_llamacpp *spm);
bool qref_spm_llamacpp_adds_eos(const qref_spm_llamacpp *spm);

/* The id whose text is bytes[0..length), or -1 (the last id when the text occurs twice). */
int32_t qref_spm_llamacpp_token_id(const qref_spm_llamacpp *spm, const char *bytes, size_t length);

#endif
