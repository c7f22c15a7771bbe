/*
 * SentencePiece BPE tokenizer. It reads a `tokenizer.model`, which is a serialized
 * sentencepiece.ModelProto (google/sentencepiece src/sentencepiece_model.proto). It encodes
 * text to ids exactly as the SentencePiece library 0.1.97 does for a BPE model (bpe_model.cc,
 * normalizer.cc, sentencepiece_processor.cc), so LLaMA-1/2 token streams match the ones that
 * GPTQ-style perplexity code evaluates.
 *
 * Encoding, in the library's order:
 *   1. normalize: drop leading spaces, collapse runs of spaces and drop trailing spaces
 *      (remove_extra_whitespaces), prepend one space (add_dummy_prefix), write each space as
 *      U+2581 (escape_whitespaces); a malformed UTF-8 byte becomes U+FFFD;
 *   2. split into characters, keeping user-defined symbols whole (longest match);
 *   3. merge adjacent symbols bottom-up: always the pair whose concatenation is the piece with
 *      the highest score, ties going to the leftmost pair;
 *   4. split merged UNUSED pieces back into the parts they were merged from;
 *   5. map pieces to ids; with byte_fallback an unknown piece becomes one <0xXX> piece per
 *      UTF-8 byte, without it a run of unknown pieces becomes one unknown id.
 *
 * Limits: only BPE models (model_type 2). A non-empty precompiled_charsmap (an NFKC-style
 * rule set such as "nmt_nfkc") is rejected as not supported. Sampling (BPE-dropout) is not
 * provided.
 */
#ifndef QREF_SPM_H
#define QREF_SPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"

/* ModelProto.SentencePiece.Type values. */
typedef enum qref_spm_piece_type {
    QREF_SPM_PIECE_NORMAL = 1,
    QREF_SPM_PIECE_UNKNOWN = 2,
    QREF_SPM_PIECE_CONTROL = 3,
    QREF_SPM_PIECE_USER_DEFINED = 4,
    QREF_SPM_PIECE_UNUSED = 5,
    QREF_SPM_PIECE_BYTE = 6
} qref_spm_piece_type;

typedef struct qref_spm qref_spm;

/*
 * Parses and validates a serialized ModelProto of size bytes; display names the file in
 * messages. Fails with QREF_ERR_INVALID on malformed protobuf or an inconsistent model, and
 * with QREF_ERR_UNSUPPORTED on a model type other than BPE or a precompiled normalizer.
 */
qref_status qref_spm_load(const char *display, const uint8_t *data, size_t size, qref_spm **out,
                          qref_error *err);

/* Maps the file at path and loads it with qref_spm_load. */
qref_status qref_spm_load_file(const char *path, qref_spm **out, qref_error *err);

void qref_spm_free(qref_spm *spm);

/*
 * Encodes length bytes of text (any bytes; NUL is an ordinary character). With add_bos the
 * BOS id comes first, as Hugging Face's LlamaTokenizer adds it. On success *ids is a heap array
 * of *count ids that the caller frees; an empty text gives only the BOS id, or no ids.
 */
qref_status qref_spm_encode(const qref_spm *spm, const char *text, size_t length, bool add_bos,
                            int32_t **ids, size_t *count, qref_error *err);

/*
 * Decodes ids for debugging: pieces are concatenated with U+2581 written as a space, runs of
 * byte pieces become their bytes, control pieces vanish, the unknown piece becomes " \u2047 ",
 * and one leading space is dropped when add_dummy_prefix is set. On success *text is a heap,
 * NUL-terminated string of *length bytes.
 */
qref_status qref_spm_decode(const qref_spm *spm, const int32_t *ids, size_t count, char **text,
                            size_t *length, qref_error *err);

int32_t qref_spm_vocab_size(const qref_spm *spm);
/* Special ids as the library reports them; -1 when the model has no such piece. */
int32_t qref_spm_bos_id(const qref_spm *spm);
int32_t qref_spm_eos_id(const qref_spm *spm);
int32_t qref_spm_unk_id(const qref_spm *spm);
int32_t qref_spm_pad_id(const qref_spm *spm);

/* Piece bytes of id (not NUL-terminated; *length set), or NULL when id is out of range. */
const char *qref_spm_piece(const qref_spm *spm, int32_t id, size_t *length);
float qref_spm_piece_score(const qref_spm *spm, int32_t id);
/* Type of id, or 0 when id is out of range. */
qref_spm_piece_type qref_spm_piece_type_of(const qref_spm *spm, int32_t id);

/* Normalizer settings read from the model. */
const char *qref_spm_normalizer_name(const qref_spm *spm);
bool qref_spm_add_dummy_prefix(const qref_spm *spm);
bool qref_spm_remove_extra_whitespaces(const qref_spm *spm);
bool qref_spm_escape_whitespaces(const qref_spm *spm);
bool qref_spm_byte_fallback(const qref_spm *spm);

#endif
