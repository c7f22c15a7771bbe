/*
 * Byte-level BPE tokenizer, as LLaMA-3 uses it. One core serves three sources:
 *
 *   - a Hugging Face tokenizer.json (huggingface/tokenizers: models/bpe/model.rs and word.rs
 *     for the merges, pre_tokenizers/split.rs and byte_level.rs for the pre-tokenizer,
 *     tokenizer/added_vocabulary.rs for added tokens), with tokenizer_config.json for BOS
 *     and EOS when the post-processor does not name them;
 *   - Meta's tiktoken tokenizer.model (base64 token and rank per line), encoded as
 *     openai/tiktoken src/lib.rs does, with the pattern and the 256 special tokens of
 *     Meta's tokenizer.py;
 *   - plain arrays of tokens, merges and token types, as GGUF stores them for its "gpt2"
 *     tokenizer model (tokenizer.ggml.tokens, .merges, .token_type).
 *
 * Encoding, in the originals' order:
 *   1. text must be valid UTF-8 (both originals take Unicode strings);
 *   2. added tokens are cut out of the text first: leftmost match, longest at that position.
 *      Tokens with normalized=false are matched on the whole text, then tokens with
 *      normalized=true in what remains (without a normalizer the two texts are the same);
 *   3. each remaining span is split by the pre-tokenizer regex: every match is a piece, and
 *      so is every gap between matches;
 *   4. each piece is one token when its bytes are a vocabulary entry (ignore_merges, which
 *      tiktoken always does). Otherwise its bytes start as single-byte tokens, and the adjacent
 *      pair with the lowest merge rank is merged repeatedly, the leftmost pair on ties.
 *
 * The merge table maps a pair of token ids to (rank, merged id). From tokenizer.json the rank
 * is the merge's index in model.merges. From tiktoken every split of a token into two tokens
 * is a pair whose rank is the merged token's rank, which makes step 4 the same choice as
 * tiktoken's byte_pair_merge (lowest rank of the concatenated bytes, leftmost on ties).
 *
 * The regex is compiled with PCRE2 in UTF mode with Unicode properties. \s and \S are
 * rewritten to the Unicode White_Space set first, because PCRE2 also counts U+180E as space
 * while the Rust regex crate (tiktoken) and Oniguruma (Hugging Face) do not.
 *
 * Limits:
 *   - tokenizer.json: only the LLaMA-3 layout. normalizer null; pre_tokenizer a Sequence of a
 *     Split (pattern.Regex, behavior "Isolated", invert false) and a ByteLevel
 *     (add_prefix_space false, use_regex false); decoder ByteLevel or null; post_processor
 *     null, ByteLevel, TemplateProcessing with at most one special token before $A and none
 *     after, or a Sequence of those; truncation and padding null; model.type "BPE" without
 *     dropout, byte_fallback, continuing_subword_prefix or end_of_word_suffix. Anything else
 *     is QREF_ERR_UNSUPPORTED, naming the field. Every model.vocab entry must be written in
 *     the byte-level alphabet, and all 256 single bytes must be tokens.
 *   - Added tokens: lstrip and rstrip take Unicode White_Space, single_word uses the Rust
 *     regex \w class (Alphabetic, M, Nd, Pc, Join_Control). These three are untested against
 *     the original, because no LLaMA-3 token sets them.
 *   - \p{L} and \p{N} follow PCRE2's Unicode tables (14.0 in PCRE2 10.42); characters assigned
 *     in later Unicode versions may split differently from newer Rust regex or Oniguruma builds.
 *   - tiktoken: Meta's Tokenizer.encode also cuts its input every 400,000 characters and
 *     inside runs of more than 25,000 whitespace or non-whitespace characters before encoding.
 *     This module does not: it encodes as tiktoken's CoreBPE.encode and Hugging Face do, so
 *     ids can differ from Meta's encode around such cuts.
 *
 * TODO: offer Meta's cuts as an encode option, for exact parity with Meta's Tokenizer.encode.
 */
#ifndef QREF_BPE_H
#define QREF_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"

/* GGUF token types (llama.cpp llama_token_type); CONTROL and USER_DEFINED are added tokens. */
typedef enum qref_bpe_token_type {
    QREF_BPE_TOKEN_NONE = 0, /* an id no source defines */
    QREF_BPE_TOKEN_NORMAL = 1,
    QREF_BPE_TOKEN_UNKNOWN = 2,
    QREF_BPE_TOKEN_CONTROL = 3,
    QREF_BPE_TOKEN_USER_DEFINED = 4,
    QREF_BPE_TOKEN_UNUSED = 5,
    QREF_BPE_TOKEN_BYTE = 6
} qref_bpe_token_type;

/* Where a tokenizer was loaded from. */
typedef enum qref_bpe_source {
    QREF_BPE_SOURCE_HF_JSON = 1,
    QREF_BPE_SOURCE_TIKTOKEN,
    QREF_BPE_SOURCE_ARRAYS
} qref_bpe_source;

/* The special-token list that Meta's tokenizer.py appends after the tiktoken ranks. */
typedef enum qref_bpe_tiktoken_specials {
    /* meta-llama/llama3 llama/tokenizer.py (LLaMA-3): <|begin_of_text|>, <|end_of_text|>,
     * reserved 0-3, <|start_header_id|>, <|end_header_id|>, reserved 4, <|eot_id|>,
     * reserved 5-250. */
    QREF_BPE_TIKTOKEN_LLAMA3 = 1,
    /* meta-llama/llama-models models/llama3/tokenizer.py (LLaMA-3.1 and later): ... reserved
     * 0-1, <|finetune_right_pad_id|>, <|step_id|>, headers, <|eom_id|>, <|eot_id|>,
     * <|python_tag|>, <|image|>, reserved 2-245. */
    QREF_BPE_TIKTOKEN_LLAMA3_1
} qref_bpe_tiktoken_specials;

/* The pre-tokenizer regex of LLaMA-3 (Meta's tokenizer.py pat_str, tokenizer.json Split). */
extern const char QREF_BPE_LLAMA3_PATTERN[];

/*
 * Plain arrays for qref_bpe_load_arrays. Token strings are written in the byte-level alphabet
 * (GPT-2's bytes_to_unicode), except CONTROL and USER_DEFINED tokens, which are raw text.
 * Token i has id i.
 */
typedef struct qref_bpe_arrays {
    const char *display;             /* names the source in messages, e.g. "model.gguf" */
    size_t token_count;
    const char *const *tokens;
    const size_t *token_lengths;     /* NULL: the tokens are NUL-terminated */
    const int32_t *token_types;      /* qref_bpe_token_type values; NULL: all NORMAL */
    size_t merge_count;
    const char *const *merges;       /* "LEFT RIGHT", in rank order */
    const size_t *merge_lengths;     /* NULL: the merges are NUL-terminated */
    const char *pattern;             /* pre-tokenizer regex; NULL: QREF_BPE_LLAMA3_PATTERN */
    int32_t bos_id;                  /* -1 when there is none */
    int32_t eos_id;                  /* -1 when there is none */
    bool add_bos;                    /* the source adds BOS by default (informational) */
    bool ignore_merges;              /* whole-piece vocabulary lookup first, as LLaMA-3 does */
} qref_bpe_arrays;

typedef struct qref_bpe qref_bpe;

/*
 * Loads a tokenizer.json of json_length bytes; config_json (may be NULL) is the
 * tokenizer_config.json next to it. display and config_display name the files in messages.
 * BOS comes from a TemplateProcessing post-processor, else from the config's bos_token; EOS
 * from the config's eos_token. QREF_ERR_INVALID for a malformed file, QREF_ERR_UNSUPPORTED for
 * a layout this module does not implement (see Limits above).
 */
qref_status qref_bpe_load_hf_json(const char *display, const char *json, size_t json_length,
                                  const char *config_display, const char *config_json,
                                  size_t config_length, qref_bpe **out, qref_error *err);

/*
 * Loads Meta's tiktoken file: one "BASE64 RANK" line per token, ranks 0 .. n-1 each once, then
 * the special tokens of specials with ids n, n+1, ... BOS is <|begin_of_text|>, EOS
 * <|end_of_text|>, and the pattern is QREF_BPE_LLAMA3_PATTERN.
 */
qref_status qref_bpe_load_tiktoken(const char *display, const uint8_t *data, size_t size,
                                   qref_bpe_tiktoken_specials specials, qref_bpe **out,
                                   qref_error *err);

/* Builds a tokenizer from plain arrays (see qref_bpe_arrays). */
qref_status qref_bpe_load_arrays(const qref_bpe_arrays *arrays, qref_bpe **out, qref_error *err);

void qref_bpe_free(qref_bpe *bpe);

/*
 * Encodes length bytes of UTF-8 text; every added token in the text becomes its id (Hugging
 * Face's encode, tiktoken's encode with allowed_special="all"). With add_bos the BOS id comes
 * first, and a tokenizer without BOS fails. On success *ids is a heap array of *count ids that
 * the caller frees. Invalid UTF-8 fails with QREF_ERR_INVALID naming the byte offset.
 */
qref_status qref_bpe_encode(const qref_bpe *bpe, const char *text, size_t length, bool add_bos,
                            int32_t **ids, size_t *count, qref_error *err);

/*
 * As qref_bpe_encode, but special added tokens in the text are encoded as ordinary text, as
 * Meta's Tokenizer.encode does by default and Hugging Face's split_special_tokens=True does.
 * Non-special added tokens are still matched.
 */
qref_status qref_bpe_encode_ordinary(const qref_bpe *bpe, const char *text, size_t length,
                                     bool add_bos, int32_t **ids, size_t *count, qref_error *err);

/*
 * Work counters of one encode call. On an encoder without quadratic steps each grows in
 * proportion to the input size, except heap_sift_steps, which grows by log(word length)
 * per merge.
 */
typedef struct qref_bpe_work {
    uint64_t regex_matches;   /* pre-tokenizer matches found */
    uint64_t pieces;          /* pieces looked up or merged */
    uint64_t heap_pushes;     /* merge candidates queued */
    uint64_t heap_pops;       /* merge candidates taken from the queue */
    uint64_t heap_sift_steps; /* heap levels moved through by pushes and pops */
    uint64_t trie_steps;      /* added-token trie transitions */
} qref_bpe_work;

/* As qref_bpe_encode (parse_special true) or qref_bpe_encode_ordinary, adding to *work. */
qref_status qref_bpe_encode_counted(const qref_bpe *bpe, const char *text, size_t length,
                                    bool add_bos, bool parse_special, int32_t **ids, size_t *count,
                                    qref_bpe_work *work, qref_error *err);

/*
 * Decodes ids to bytes as the ByteLevel decoder does: token bytes concatenated, added tokens
 * as their text. On success *text is a heap, NUL-terminated buffer of *length bytes. An id
 * outside the vocabulary fails with QREF_ERR_INVALID.
 */
qref_status qref_bpe_decode(const qref_bpe *bpe, const int32_t *ids, size_t count, char **text,
                            size_t *length, qref_error *err);

/* One more than the largest id. */
int32_t qref_bpe_vocab_size(const qref_bpe *bpe);
/* -1 when the tokenizer has none. */
int32_t qref_bpe_bos_id(const qref_bpe *bpe);
int32_t qref_bpe_eos_id(const qref_bpe *bpe);
/* Whether the source adds BOS by default (TemplateProcessing, add_bos_token, Meta's encode). */
bool qref_bpe_adds_bos(const qref_bpe *bpe);
qref_bpe_source qref_bpe_source_of(const qref_bpe *bpe);
/* Number of merge pairs in the table. */
size_t qref_bpe_merge_count(const qref_bpe *bpe);
/* The pre-tokenizer regex as the source wrote it. */
const char *qref_bpe_pattern(const qref_bpe *bpe);

/* Raw bytes of id (not NUL-terminated; *length set), or NULL for an id no source defines. */
const char *qref_bpe_token(const qref_bpe *bpe, int32_t id, size_t *length);
qref_bpe_token_type qref_bpe_token_type_of(const qref_bpe *bpe, int32_t id);
/* The id whose raw bytes are bytes[0..length): a vocabulary token or an added token; else -1. */
int32_t qref_bpe_token_id(const qref_bpe *bpe, const char *bytes, size_t length);

#endif
