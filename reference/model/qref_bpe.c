/*
 * Byte-level BPE: the tables every source builds, the encoder and the decoder. The loaders
 * for tokenizer.json and tiktoken files are in qref_bpe_load.c; the loader for plain (GGUF)
 * arrays is at the end of this file.
 *
 * Tokens are stored as raw bytes. The byte-level alphabet of tokenizer.json and GGUF (GPT-2's
 * bytes_to_unicode, huggingface/tokenizers pre_tokenizers/byte_level.rs) is decoded once at
 * load, so pieces of text are looked up and merged as bytes, as tiktoken does.
 */
#include "model/qref_bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "model/qref_bpe_build.h"

const char QREF_BPE_LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Per-id flags. */
enum {
    BPE_ID_DEFINED = 1,
    BPE_ID_MERGEABLE = 2, /* in the BPE vocabulary (merges and whole-piece lookups) */
    BPE_ID_ADDED = 4      /* matched in text before pre-tokenization */
};

/* Added-token flags, packed. */
enum {
    BPE_ADDED_SPECIAL = 1,
    BPE_ADDED_LSTRIP = 2,
    BPE_ADDED_RSTRIP = 4,
    BPE_ADDED_SINGLE_WORD = 8,
    BPE_ADDED_NORMALIZED = 16
};

/* Open-addressing slot of the vocabulary table: an id (-1 empty) and its hash's high bits. */
typedef struct bpe_vocab_slot {
    int32_t id;
    uint32_t tag;
} bpe_vocab_slot;

/* Open-addressing slot of the merge table: (left, right) -> (rank, merged); left -1 empty. */
typedef struct bpe_merge_slot {
    int32_t left;
    int32_t right;
    uint32_t rank;
    int32_t merged;
} bpe_merge_slot;

typedef struct bpe_added {
    int32_t id;
    uint8_t flags;
} bpe_added;

/* Byte trie of added-token contents, for leftmost-longest matching. */
typedef struct bpe_trie_node {
    int32_t first_child;
    int32_t next_sibling;
    int32_t added; /* index into qref_bpe.added of the token ending here, or -1 */
    uint8_t byte;
} bpe_trie_node;

typedef struct bpe_trie {
    bpe_trie_node *nodes; /* node 0 is the root; NULL when the trie is empty */
    int32_t count;
    int32_t capacity;
    bool first_byte[256]; /* bytes that start some token */
} bpe_trie;

/* Index of the trie of tokens matched on the raw text (normalized=false) and of the others. */
enum { BPE_TRIE_RAW = 0, BPE_TRIE_NORMALIZED = 1 };

struct qref_bpe {
    char *display;
    qref_bpe_source source;

    /* Tokens by id: bytes pool[offset[id] .. offset[id] + length[id]). */
    int32_t id_capacity;
    int32_t vocab_size;
    char *pool;
    size_t pool_size;
    size_t pool_capacity;
    size_t *offset;
    uint32_t *length;
    uint8_t *type;
    uint8_t *flags;

    bpe_vocab_slot *vocab_slots;
    size_t vocab_mask;
    int32_t byte_ids[256];

    bpe_merge_slot *merge_slots;
    size_t merge_mask;
    size_t merge_count;

    bpe_added *added;
    size_t added_count;
    size_t added_capacity;
    bpe_trie tries[2];

    char *pattern;
    pcre2_code *regex;
    pcre2_code *word_regex; /* the Rust regex \w class, compiled when a single_word token exists */

    bool ignore_merges;
    bool adds_bos;
    int32_t bos_id;
    int32_t eos_id;
};

/* ------------------------------------------------------------------------------------------ */
/* Byte-level alphabet and UTF-8                                                              */
/* ------------------------------------------------------------------------------------------ */

/*
 * GPT-2's bytes_to_unicode: bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves;
 * the other 68 bytes, in increasing order, become U+0100 .. U+0143.
 */
static uint32_t byte_level_encode_byte(uint8_t byte)
{
    if ((byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || byte >= 0xae)
        return byte;
    if (byte <= 0x20)
        return 0x100u + byte;
    if (byte <= 0xa0)
        return 0x100u + 33u + (byte - 0x7fu);
    return 0x100u + 67u; /* 0xAD */
}

int qref_bpe_byte_level_decode_char(uint32_t codepoint)
{
    if ((codepoint >= 0x21 && codepoint <= 0x7e) || (codepoint >= 0xa1 && codepoint <= 0xac) ||
        (codepoint >= 0xae && codepoint <= 0xff))
        return (int)codepoint;
    if (codepoint >= 0x100 && codepoint < 0x100 + 33)
        return (int)(codepoint - 0x100);
    if (codepoint >= 0x100 + 33 && codepoint < 0x100 + 67)
        return (int)(0x7f + codepoint - (0x100 + 33));
    if (codepoint == 0x100 + 67)
        return 0xad;
    return -1;
}

/* Length of the well-formed UTF-8 character at s (no overlong forms, surrogates or values
 * above U+10FFFF) with its code point in *codepoint, or 0 when it is malformed. */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *codepoint)
{
    if (n == 0)
        return 0;
    uint8_t lead = s[0];
    if (lead < 0x80) {
        *codepoint = lead;
        return 1;
    }
    size_t length;
    uint32_t cp, min;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2, cp = lead & 0x1fu, min = 0x80;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3, cp = lead & 0x0fu, min = 0x800;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4, cp = lead & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < length)
        return 0;
    for (size_t i = 1; i < length; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *codepoint = cp;
    return length;
}

/* Offset of the first malformed byte of text, or length when it is all valid UTF-8. */
static size_t utf8_first_invalid(const char *text, size_t length)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < length) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = utf8_decode(s + i, length - i, &cp);
        if (n == 0)
            return i;
        i += n;
    }
    return length;
}

/* Writes a code point below U+0800 as UTF-8; returns its length. */
static size_t utf8_encode_short(uint32_t cp, char out[2])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* Start of the character that ends at text[end] (exclusive), for valid UTF-8. */
static size_t utf8_previous_start(const char *text, size_t start, size_t end)
{
    size_t i = end - 1;
    while (i > start && ((uint8_t)text[i] & 0xc0) == 0x80)
        i--;
    return i;
}

/* Unicode White_Space, the \s of the Rust regex crate and of Oniguruma. */
static bool is_white_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

ptrdiff_t qref_bpe_byte_level_decode(const char *text, size_t length, char *out, size_t *bad_offset)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t written = 0;
    size_t i = 0;
    while (i < length) {
        uint32_t cp;
        size_t n = utf8_decode(s + i, length - i, &cp);
        int byte = n > 0 ? qref_bpe_byte_level_decode_char(cp) : -1;
        if (byte < 0) {
            *bad_offset = i;
            return -1;
        }
        out[written++] = (char)byte;
        i += n;
    }
    return (ptrdiff_t)written;
}

const char *qref_bpe_quote(const char *text, size_t length, char *buffer, size_t size)
{
    /* About 48 bytes of text, cut at a character boundary, with control bytes escaped. */
    size_t cut = length > 48 ? 48 : length;
    while (cut < length && cut > 0 && ((uint8_t)text[cut] & 0xc0) == 0x80)
        cut--;
    size_t used = 0;
    if (size < 16) {
        if (size > 0)
            buffer[0] = '\0';
        return buffer;
    }
    buffer[used++] = '"';
    for (size_t i = 0; i < cut && used + 10 < size; i++) {
        uint8_t byte = (uint8_t)text[i];
        if (byte < 0x20 || byte == 0x7f)
            used += (size_t)snprintf(buffer + used, size - used, "\\x%02x", byte);
        else
            buffer[used++] = (char)byte;
    }
    if (cut < length) {
        memcpy(buffer + used, "...", 3);
        used += 3;
    }
    buffer[used++] = '"';
    buffer[used] = '\0';
    return buffer;
}

/* ------------------------------------------------------------------------------------------ */
/* Vocabulary and merge tables                                                                */
/* ------------------------------------------------------------------------------------------ */

static uint64_t hash_bytes(const char *bytes, size_t length)
{
    /* FNV-1a, 64-bit. */
    uint64_t hash = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < length; i++) {
        hash ^= (uint8_t)bytes[i];
        hash *= 0x100000001b3ull;
    }
    return hash;
}

static uint64_t hash_pair(int32_t left, int32_t right)
{
    /* splitmix64 finalizer over the two ids */
    uint64_t z = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t table_capacity_for(size_t entries)
{
    size_t capacity = 16;
    while (capacity < 2 * entries)
        capacity *= 2;
    return capacity;
}

static int32_t vocab_find(const qref_bpe *bpe, const char *bytes, size_t length)
{
    if (bpe->vocab_slots == NULL)
        return -1;
    uint64_t hash = hash_bytes(bytes, length);
    uint32_t tag = (uint32_t)(hash >> 32);
    size_t slot = (size_t)hash & bpe->vocab_mask;
    while (bpe->vocab_slots[slot].id >= 0) {
        int32_t id = bpe->vocab_slots[slot].id;
        if (bpe->vocab_slots[slot].tag == tag && bpe->length[id] == length &&
            memcmp(bpe->pool + bpe->offset[id], bytes, length) == 0)
            return id;
        slot = (slot + 1) & bpe->vocab_mask;
    }
    return -1;
}

static const bpe_merge_slot *merge_find(const qref_bpe *bpe, int32_t left, int32_t right)
{
    if (bpe->merge_slots == NULL)
        return NULL;
    size_t slot = (size_t)hash_pair(left, right) & bpe->merge_mask;
    while (bpe->merge_slots[slot].left >= 0) {
        const bpe_merge_slot *entry = &bpe->merge_slots[slot];
        if (entry->left == left && entry->right == right)
            return entry;
        slot = (slot + 1) & bpe->merge_mask;
    }
    return NULL;
}

/* Doubles the merge table; returns false when out of memory. */
static bool merge_table_grow(qref_bpe *bpe)
{
    size_t old_capacity = bpe->merge_slots != NULL ? bpe->merge_mask + 1 : 0;
    size_t capacity = old_capacity == 0 ? 1024 : old_capacity * 2;
    bpe_merge_slot *slots = malloc(capacity * sizeof *slots);
    if (slots == NULL)
        return false;
    for (size_t i = 0; i < capacity; i++)
        slots[i].left = -1;
    size_t mask = capacity - 1;
    for (size_t i = 0; i < old_capacity; i++) {
        const bpe_merge_slot *entry = &bpe->merge_slots[i];
        if (entry->left < 0)
            continue;
        size_t slot = (size_t)hash_pair(entry->left, entry->right) & mask;
        while (slots[slot].left >= 0)
            slot = (slot + 1) & mask;
        slots[slot] = *entry;
    }
    free(bpe->merge_slots);
    bpe->merge_slots = slots;
    bpe->merge_mask = mask;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Building                                                                                   */
/* ------------------------------------------------------------------------------------------ */

qref_status qref_bpe_build_create(const char *display, qref_bpe_source source, int32_t id_capacity,
                                  qref_bpe **out, qref_error *err)
{
    *out = NULL;
    if (id_capacity < 0 || id_capacity > QREF_BPE_MAX_ID)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %d token ids; expected at most %d", display,
                              id_capacity, QREF_BPE_MAX_ID);
    qref_bpe *bpe = calloc(1, sizeof *bpe);
    if (bpe == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    size_t n = id_capacity > 0 ? (size_t)id_capacity : 1;
    bpe->display = strdup(display);
    bpe->offset = calloc(n, sizeof *bpe->offset);
    bpe->length = calloc(n, sizeof *bpe->length);
    bpe->type = calloc(n, sizeof *bpe->type);
    bpe->flags = calloc(n, sizeof *bpe->flags);
    if (bpe->display == NULL || bpe->offset == NULL || bpe->length == NULL || bpe->type == NULL ||
        bpe->flags == NULL) {
        qref_bpe_free(bpe);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %d tokens", display, id_capacity);
    }
    bpe->source = source;
    bpe->id_capacity = id_capacity;
    bpe->bos_id = -1;
    bpe->eos_id = -1;
    for (int i = 0; i < 256; i++)
        bpe->byte_ids[i] = -1;
    *out = bpe;
    return QREF_OK;
}

qref_status qref_bpe_build_token(qref_bpe *bpe, int32_t id, const char *bytes, size_t length,
                                 qref_bpe_token_type type, bool mergeable, const char *label,
                                 qref_error *err)
{
    char quoted[128];
    if (id < 0 || id >= bpe->id_capacity)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: id %d is out of range; expected 0 to %d",
                              bpe->display, label, id, bpe->id_capacity - 1);
    if (length == 0 || length > QREF_BPE_MAX_TOKEN_BYTES)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: token of %zu bytes; expected 1 to %u",
                              bpe->display, label, length, QREF_BPE_MAX_TOKEN_BYTES);

    /* An id defined twice must name the same bytes: an added token repeating a vocabulary entry. */
    if (bpe->flags[id] & BPE_ID_DEFINED) {
        if (bpe->length[id] != length || memcmp(bpe->pool + bpe->offset[id], bytes, length) != 0) {
            char other[128];
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: id %d of %s is already used by the token %s",
                                  bpe->display, label, id, qref_bpe_quote(bytes, length, quoted, sizeof quoted),
                                  qref_bpe_quote(bpe->pool + bpe->offset[id], bpe->length[id], other,
                                                 sizeof other));
        }
        if (type == QREF_BPE_TOKEN_CONTROL || type == QREF_BPE_TOKEN_USER_DEFINED)
            bpe->type[id] = (uint8_t)type;
        if (mergeable)
            bpe->flags[id] |= BPE_ID_MERGEABLE;
        return QREF_OK;
    }

    if (bpe->pool_size + length > bpe->pool_capacity) {
        size_t capacity = bpe->pool_capacity == 0 ? 1 << 16 : bpe->pool_capacity;
        while (capacity < bpe->pool_size + length)
            capacity *= 2;
        char *grown = realloc(bpe->pool, capacity);
        if (grown == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for token bytes", bpe->display);
        bpe->pool = grown;
        bpe->pool_capacity = capacity;
    }
    memcpy(bpe->pool + bpe->pool_size, bytes, length);
    bpe->offset[id] = bpe->pool_size;
    bpe->length[id] = (uint32_t)length;
    bpe->pool_size += length;
    bpe->type[id] = (uint8_t)type;
    bpe->flags[id] = BPE_ID_DEFINED | (mergeable ? BPE_ID_MERGEABLE : 0);
    if (id >= bpe->vocab_size)
        bpe->vocab_size = id + 1;
    return QREF_OK;
}

qref_status qref_bpe_build_index(qref_bpe *bpe, qref_error *err)
{
    size_t entries = 0;
    for (int32_t id = 0; id < bpe->vocab_size; id++)
        entries += (bpe->flags[id] & BPE_ID_MERGEABLE) != 0;
    size_t capacity = table_capacity_for(entries);
    free(bpe->vocab_slots);
    bpe->vocab_slots = malloc(capacity * sizeof *bpe->vocab_slots);
    if (bpe->vocab_slots == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for the vocabulary table", bpe->display);
    for (size_t i = 0; i < capacity; i++)
        bpe->vocab_slots[i].id = -1;
    bpe->vocab_mask = capacity - 1;

    /* Each id once; the bytes are unique because a repeated token would be found below. */
    for (int32_t id = 0; id < bpe->vocab_size; id++) {
        if (!(bpe->flags[id] & BPE_ID_MERGEABLE))
            continue;
        const char *bytes = bpe->pool + bpe->offset[id];
        int32_t existing = vocab_find(bpe, bytes, bpe->length[id]);
        if (existing >= 0) {
            char quoted[128];
            return qref_error_set(err, QREF_ERR_INVALID, "%s: ids %d and %d are the same token %s",
                                  bpe->display, existing, id,
                                  qref_bpe_quote(bytes, bpe->length[id], quoted, sizeof quoted));
        }
        uint64_t hash = hash_bytes(bytes, bpe->length[id]);
        size_t slot = (size_t)hash & bpe->vocab_mask;
        while (bpe->vocab_slots[slot].id >= 0)
            slot = (slot + 1) & bpe->vocab_mask;
        bpe->vocab_slots[slot] = (bpe_vocab_slot){id, (uint32_t)(hash >> 32)};
    }

    /* Byte-level BPE starts every piece from single bytes, so all 256 must be tokens. */
    for (int byte = 0; byte < 256; byte++) {
        char b = (char)byte;
        bpe->byte_ids[byte] = vocab_find(bpe, &b, 1);
        if (bpe->byte_ids[byte] < 0) {
            char text[2];
            size_t n = utf8_encode_short(byte_level_encode_byte((uint8_t)byte), text);
            return qref_error_set(err, QREF_ERR_INVALID, "%s: byte 0x%02X (\"%.*s\" in the byte-level "
                                  "alphabet) has no token; a byte-level BPE vocabulary has all 256 bytes",
                                  bpe->display, byte, (int)n, text);
        }
    }
    return QREF_OK;
}

int32_t qref_bpe_build_find(const qref_bpe *bpe, const char *bytes, size_t length)
{
    return vocab_find(bpe, bytes, length);
}

qref_status qref_bpe_build_merge(qref_bpe *bpe, int32_t left, int32_t right, int32_t merged,
                                 uint32_t rank, qref_error *err)
{
    /* keep the load at most 0.6: most lookups are misses, which probe to an empty slot */
    if (bpe->merge_slots == NULL || 5 * (bpe->merge_count + 1) > 3 * (bpe->merge_mask + 1)) {
        if (!merge_table_grow(bpe))
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for the merge table", bpe->display);
    }
    size_t slot = (size_t)hash_pair(left, right) & bpe->merge_mask;
    while (bpe->merge_slots[slot].left >= 0) {
        bpe_merge_slot *entry = &bpe->merge_slots[slot];
        if (entry->left == left && entry->right == right) {
            /* huggingface/tokenizers collects merges into a map, so the later entry wins */
            entry->rank = rank;
            entry->merged = merged;
            return QREF_OK;
        }
        slot = (slot + 1) & bpe->merge_mask;
    }
    bpe->merge_slots[slot] = (bpe_merge_slot){left, right, rank, merged};
    bpe->merge_count++;
    return QREF_OK;
}

qref_status qref_bpe_build_added(qref_bpe *bpe, int32_t id, const qref_bpe_added_flags *flags,
                                 const char *label, qref_error *err)
{
    if (id < 0 || id >= bpe->vocab_size || !(bpe->flags[id] & BPE_ID_DEFINED))
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: %s: id %d is not defined", bpe->display, label, id);
    const char *content = bpe->pool + bpe->offset[id];
    if (utf8_first_invalid(content, bpe->length[id]) < bpe->length[id]) {
        /* text is UTF-8, so a match of a token that is not could end inside a character */
        char quoted[128];
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: the added token %s (id %d) is not valid UTF-8",
                              bpe->display, label, qref_bpe_quote(content, bpe->length[id], quoted, sizeof quoted),
                              id);
    }
    if (bpe->flags[id] & BPE_ID_ADDED) {
        char quoted[128];
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: the added token %s (id %d) is listed twice",
                              bpe->display, label,
                              qref_bpe_quote(bpe->pool + bpe->offset[id], bpe->length[id], quoted, sizeof quoted),
                              id);
    }
    if (bpe->added_count == bpe->added_capacity) {
        size_t capacity = bpe->added_capacity == 0 ? 64 : bpe->added_capacity * 2;
        bpe_added *grown = realloc(bpe->added, capacity * sizeof *grown);
        if (grown == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for added tokens", bpe->display);
        bpe->added = grown;
        bpe->added_capacity = capacity;
    }
    uint8_t packed = (uint8_t)((flags->special ? BPE_ADDED_SPECIAL : 0) | (flags->lstrip ? BPE_ADDED_LSTRIP : 0) |
                               (flags->rstrip ? BPE_ADDED_RSTRIP : 0) |
                               (flags->single_word ? BPE_ADDED_SINGLE_WORD : 0) |
                               (flags->normalized ? BPE_ADDED_NORMALIZED : 0));
    bpe->added[bpe->added_count++] = (bpe_added){id, packed};
    bpe->flags[id] |= BPE_ID_ADDED;
    return QREF_OK;
}

/* The members of Unicode White_Space as PCRE2 class items. */
static const char WHITE_SPACE_CLASS_ITEMS[] =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

typedef struct bpe_text {
    char *data;
    size_t size;
    size_t capacity;
} bpe_text;

static bool text_append(bpe_text *text, const char *bytes, size_t length)
{
    if (text->size + length + 1 > text->capacity) {
        size_t capacity = text->capacity == 0 ? 256 : text->capacity;
        while (capacity < text->size + length + 1)
            capacity *= 2;
        char *grown = realloc(text->data, capacity);
        if (grown == NULL)
            return false;
        text->data = grown;
        text->capacity = capacity;
    }
    memcpy(text->data + text->size, bytes, length);
    text->size += length;
    text->data[text->size] = '\0';
    return true;
}

/*
 * Rewrites \s and \S of a pattern to the White_Space set: outside a class \s becomes
 * [items] and \S becomes [^items]; inside a class \s becomes the items. \S inside a class has
 * no PCRE2 equivalent and is rejected. \Q...\E quotes and POSIX [:name:] items are copied
 * unchanged.
 */
static qref_status rewrite_white_space(const qref_bpe *bpe, const char *pattern, size_t length,
                                       const char *label, bpe_text *out, qref_error *err)
{
    bool in_class = false;
    bool ok = true;
    size_t i = 0;
    while (i < length && ok) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < length) {
            char next = pattern[i + 1];
            if (next == 's') {
                ok = in_class ? text_append(out, WHITE_SPACE_CLASS_ITEMS, sizeof WHITE_SPACE_CLASS_ITEMS - 1)
                              : text_append(out, "[", 1) &&
                                    text_append(out, WHITE_SPACE_CLASS_ITEMS, sizeof WHITE_SPACE_CLASS_ITEMS - 1) &&
                                    text_append(out, "]", 1);
            } else if (next == 'S') {
                if (in_class)
                    return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s: \\S inside a character class "
                                          "(offset %zu) is not supported", bpe->display, label, i);
                ok = text_append(out, "[^", 2) &&
                     text_append(out, WHITE_SPACE_CLASS_ITEMS, sizeof WHITE_SPACE_CLASS_ITEMS - 1) &&
                     text_append(out, "]", 1);
            } else if (next == 'Q') {
                const char *end = NULL;
                for (size_t j = i + 2; j + 1 < length; j++) {
                    if (pattern[j] == '\\' && pattern[j + 1] == 'E') {
                        end = pattern + j + 2;
                        break;
                    }
                }
                size_t quoted = end != NULL ? (size_t)(end - (pattern + i)) : length - i;
                ok = text_append(out, pattern + i, quoted);
                i += quoted;
                continue;
            } else {
                ok = text_append(out, pattern + i, 2);
            }
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            size_t start = i++;
            if (i < length && pattern[i] == '^')
                i++;
            if (i < length && pattern[i] == ']')
                i++; /* a leading ] is a literal */
            ok = text_append(out, pattern + start, i - start);
            in_class = true;
            continue;
        }
        if (in_class && c == '[' && i + 1 < length && pattern[i + 1] == ':') {
            const char *end = strstr(pattern + i + 2, ":]");
            size_t item = end != NULL && (size_t)(end - pattern) + 2 <= length ? (size_t)(end - pattern) + 2 - i : 1;
            ok = text_append(out, pattern + i, item);
            i += item;
            continue;
        }
        if (in_class && c == ']')
            in_class = false;
        ok = text_append(out, &c, 1);
        i++;
    }
    if (!ok)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for the pattern", bpe->display);
    return QREF_OK;
}

qref_status qref_bpe_build_pattern(qref_bpe *bpe, const char *pattern, size_t length,
                                   const char *label, qref_error *err)
{
    if (length == 0 || length > QREF_BPE_MAX_TOKEN_BYTES)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: pattern of %zu bytes; expected 1 to %u",
                              bpe->display, label, length, QREF_BPE_MAX_TOKEN_BYTES);
    bpe->pattern = malloc(length + 1);
    if (bpe->pattern == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", bpe->display);
    memcpy(bpe->pattern, pattern, length);
    bpe->pattern[length] = '\0';

    bpe_text rewritten = {0};
    qref_status status = rewrite_white_space(bpe, pattern, length, label, &rewritten, err);
    if (status != QREF_OK) {
        free(rewritten.data);
        return status;
    }

    /* UTF mode checks the pattern's own encoding; UCP gives \p and case folding Unicode rules. */
    int code = 0;
    PCRE2_SIZE offset = 0;
    bpe->regex = pcre2_compile((PCRE2_SPTR)rewritten.data, rewritten.size, PCRE2_UTF | PCRE2_UCP, &code, &offset,
                               NULL);
    free(rewritten.data);
    if (bpe->regex == NULL) {
        char message[256];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)message, sizeof message);
        char quoted[128];
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: PCRE2 rejects the pattern %s: %s (near offset %zu "
                              "of the pattern with \\s expanded)", bpe->display, label,
                              qref_bpe_quote(pattern, length, quoted, sizeof quoted), message, (size_t)offset);
    }
    /* JIT is an optimization only; without it pcre2_match interprets the same pattern. */
    pcre2_jit_compile(bpe->regex, PCRE2_JIT_COMPLETE);
    return QREF_OK;
}

void qref_bpe_build_options(qref_bpe *bpe, bool ignore_merges, int32_t bos_id, int32_t eos_id,
                            bool adds_bos)
{
    bpe->ignore_merges = ignore_merges;
    bpe->bos_id = bos_id;
    bpe->eos_id = eos_id;
    bpe->adds_bos = adds_bos;
}

/* Inserts the added token with index added into trie; returns false when out of memory. */
static bool trie_insert(bpe_trie *trie, const char *bytes, size_t length, int32_t added)
{
    if (trie->nodes == NULL) {
        trie->capacity = 256;
        trie->nodes = malloc((size_t)trie->capacity * sizeof *trie->nodes);
        if (trie->nodes == NULL)
            return false;
        trie->nodes[0] = (bpe_trie_node){-1, -1, -1, 0};
        trie->count = 1;
    }
    int32_t node = 0;
    for (size_t i = 0; i < length; i++) {
        uint8_t byte = (uint8_t)bytes[i];
        int32_t child = trie->nodes[node].first_child;
        while (child >= 0 && trie->nodes[child].byte != byte)
            child = trie->nodes[child].next_sibling;
        if (child < 0) {
            if (trie->count == trie->capacity) {
                bpe_trie_node *grown = realloc(trie->nodes, (size_t)trie->capacity * 2 * sizeof *grown);
                if (grown == NULL)
                    return false;
                trie->nodes = grown;
                trie->capacity *= 2;
            }
            child = trie->count++;
            trie->nodes[child] = (bpe_trie_node){-1, trie->nodes[node].first_child, -1, byte};
            trie->nodes[node].first_child = child;
        }
        node = child;
    }
    trie->nodes[node].added = added;
    trie->first_byte[(uint8_t)bytes[0]] = true;
    return true;
}

qref_status qref_bpe_build_finish(qref_bpe *bpe, qref_error *err)
{
    if (bpe->regex == NULL)
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: no pre-tokenizer pattern", bpe->display);

    bool single_word = false;
    for (size_t i = 0; i < bpe->added_count; i++) {
        const bpe_added *added = &bpe->added[i];
        bpe_trie *trie = &bpe->tries[added->flags & BPE_ADDED_NORMALIZED ? BPE_TRIE_NORMALIZED : BPE_TRIE_RAW];
        if (!trie_insert(trie, bpe->pool + bpe->offset[added->id], bpe->length[added->id], (int32_t)i))
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for the added-token trie", bpe->display);
        single_word |= (added->flags & BPE_ADDED_SINGLE_WORD) != 0;
    }

    /* The Rust regex \w (regex-syntax: Alphabetic, M, Nd, Pc, Join_Control) for single_word. */
    if (single_word) {
        static const char word_class[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]";
        int code = 0;
        PCRE2_SIZE offset = 0;
        bpe->word_regex = pcre2_compile((PCRE2_SPTR)word_class, sizeof word_class - 1,
                                        PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &code, &offset, NULL);
        if (bpe->word_regex == NULL)
            return qref_error_set(err, QREF_ERR_INTERNAL, "%s: PCRE2 cannot compile the word class (error %d)",
                                  bpe->display, code);
    }

    const int32_t specials[2] = {bpe->bos_id, bpe->eos_id};
    const char *names[2] = {"BOS", "EOS"};
    for (int i = 0; i < 2; i++) {
        if (specials[i] >= 0 && (specials[i] >= bpe->vocab_size || !(bpe->flags[specials[i]] & BPE_ID_DEFINED)))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s id %d is not a token; expected 0 to %d",
                                  bpe->display, names[i], specials[i], bpe->vocab_size - 1);
    }
    return QREF_OK;
}

void qref_bpe_free(qref_bpe *bpe)
{
    if (bpe == NULL)
        return;
    free(bpe->display);
    free(bpe->pool);
    free(bpe->offset);
    free(bpe->length);
    free(bpe->type);
    free(bpe->flags);
    free(bpe->vocab_slots);
    free(bpe->merge_slots);
    free(bpe->added);
    for (int i = 0; i < 2; i++)
        free(bpe->tries[i].nodes);
    free(bpe->pattern);
    pcre2_code_free(bpe->regex);
    pcre2_code_free(bpe->word_regex);
    free(bpe);
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* A merge candidate: the pair starting at symbol pos would become merged, with rank. */
typedef struct bpe_candidate {
    uint32_t rank;
    uint32_t pos;
    int32_t merged;
} bpe_candidate;

/* Per-call state: the output ids and scratch space reused from piece to piece. */
typedef struct bpe_encoder {
    const qref_bpe *bpe;
    bool parse_special;
    qref_bpe_work *work;

    int32_t *ids;
    size_t count;
    size_t capacity;

    /* symbols of the piece being merged, by the byte offset where each starts */
    int32_t *symbol_id; /* -1 once merged into its left neighbour */
    int32_t *symbol_prev;
    int32_t *symbol_next;
    size_t symbol_capacity;

    bpe_candidate *heap;
    size_t heap_count;
    size_t heap_capacity;

    pcre2_match_data *match;
    pcre2_match_context *match_context;
    pcre2_jit_stack *jit_stack;
} bpe_encoder;

/* Largest JIT stack for one match: the LLaMA-3 pattern needs little, but a user pattern
 * with nested groups on a long piece may need more than PCRE2's 32 KiB default. */
#define BPE_JIT_STACK_MAX ((size_t)8 << 20)

static bool output_push(bpe_encoder *encoder, int32_t id)
{
    if (encoder->count == encoder->capacity) {
        size_t capacity = encoder->capacity == 0 ? 1024 : encoder->capacity * 2;
        int32_t *grown = realloc(encoder->ids, capacity * sizeof *grown);
        if (grown == NULL)
            return false;
        encoder->ids = grown;
        encoder->capacity = capacity;
    }
    encoder->ids[encoder->count++] = id;
    return true;
}

static bool candidate_before(const bpe_candidate *a, const bpe_candidate *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static bool heap_push(bpe_encoder *encoder, bpe_candidate candidate)
{
    if (encoder->heap_count == encoder->heap_capacity) {
        size_t capacity = encoder->heap_capacity == 0 ? 64 : encoder->heap_capacity * 2;
        bpe_candidate *grown = realloc(encoder->heap, capacity * sizeof *grown);
        if (grown == NULL)
            return false;
        encoder->heap = grown;
        encoder->heap_capacity = capacity;
    }
    bpe_candidate *heap = encoder->heap;
    size_t i = encoder->heap_count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!candidate_before(&candidate, &heap[parent]))
            break;
        heap[i] = heap[parent];
        i = parent;
        encoder->work->heap_sift_steps++;
    }
    heap[i] = candidate;
    encoder->work->heap_pushes++;
    return true;
}

static bpe_candidate heap_pop(bpe_encoder *encoder)
{
    bpe_candidate *heap = encoder->heap;
    bpe_candidate top = heap[0];
    bpe_candidate last = heap[--encoder->heap_count];
    size_t n = encoder->heap_count;
    size_t i = 0;
    while (2 * i + 1 < n) {
        size_t child = 2 * i + 1;
        if (child + 1 < n && candidate_before(&heap[child + 1], &heap[child]))
            child++;
        if (!candidate_before(&heap[child], &last))
            break;
        heap[i] = heap[child];
        i = child;
        encoder->work->heap_sift_steps++;
    }
    if (n > 0)
        heap[i] = last;
    encoder->work->heap_pops++;
    return top;
}

/* Queues the pair starting at symbol left when the merge table has it. */
static bool consider_pair(bpe_encoder *encoder, int32_t left)
{
    int32_t right = encoder->symbol_next[left];
    if (right < 0)
        return true;
    const bpe_merge_slot *merge = merge_find(encoder->bpe, encoder->symbol_id[left], encoder->symbol_id[right]);
    if (merge == NULL)
        return true;
    return heap_push(encoder, (bpe_candidate){merge->rank, (uint32_t)left, merge->merged});
}

/*
 * Merges one piece: its bytes start as single-byte tokens, and the queued pair with the lowest
 * (rank, position) is merged until no adjacent pair has a merge. A queued candidate is stale
 * when its left symbol was merged away or its pair no longer gives the same token. A symbol's
 * span only grows, so an equal merged id means the same pair; huggingface/tokenizers word.rs
 * merge_all makes the same check.
 */
static qref_status merge_piece(bpe_encoder *encoder, const char *bytes, size_t length, qref_error *err)
{
    const qref_bpe *bpe = encoder->bpe;
    if (length > (size_t)INT32_MAX)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "a piece of %zu bytes exceeds the %d-byte limit",
                              length, INT32_MAX);
    if (length > encoder->symbol_capacity) {
        size_t capacity = encoder->symbol_capacity == 0 ? 256 : encoder->symbol_capacity;
        while (capacity < length)
            capacity *= 2;
        int32_t *ids = realloc(encoder->symbol_id, capacity * sizeof *ids);
        if (ids != NULL)
            encoder->symbol_id = ids;
        int32_t *prev = realloc(encoder->symbol_prev, capacity * sizeof *prev);
        if (prev != NULL)
            encoder->symbol_prev = prev;
        int32_t *next = realloc(encoder->symbol_next, capacity * sizeof *next);
        if (next != NULL)
            encoder->symbol_next = next;
        if (ids == NULL || prev == NULL || next == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for a piece of %zu bytes", length);
        encoder->symbol_capacity = capacity;
    }

    /* 1. one symbol per byte */
    int32_t n = (int32_t)length;
    for (int32_t i = 0; i < n; i++) {
        encoder->symbol_id[i] = bpe->byte_ids[(uint8_t)bytes[i]];
        encoder->symbol_prev[i] = i - 1;
        encoder->symbol_next[i] = i + 1 < n ? i + 1 : -1;
    }

    /* 2. queue every adjacent pair that has a merge */
    encoder->heap_count = 0;
    for (int32_t i = 0; i + 1 < n; i++) {
        if (!consider_pair(encoder, i))
            return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for merge candidates");
    }

    /* 3. merge the lowest (rank, position) until the queue is empty */
    while (encoder->heap_count > 0) {
        bpe_candidate top = heap_pop(encoder);
        int32_t left = (int32_t)top.pos;
        if (encoder->symbol_id[left] < 0)
            continue;
        int32_t right = encoder->symbol_next[left];
        if (right < 0)
            continue;
        const bpe_merge_slot *merge = merge_find(bpe, encoder->symbol_id[left], encoder->symbol_id[right]);
        if (merge == NULL || merge->merged != top.merged)
            continue;

        encoder->symbol_id[left] = top.merged;
        encoder->symbol_id[right] = -1;
        int32_t after = encoder->symbol_next[right];
        encoder->symbol_next[left] = after;
        if (after >= 0)
            encoder->symbol_prev[after] = left;

        int32_t before = encoder->symbol_prev[left];
        if ((before >= 0 && !consider_pair(encoder, before)) || !consider_pair(encoder, left))
            return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for merge candidates");
    }

    /* 4. the surviving symbols, left to right */
    for (int32_t i = 0; i >= 0; i = encoder->symbol_next[i]) {
        if (!output_push(encoder, encoder->symbol_id[i]))
            return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for token ids");
    }
    return QREF_OK;
}

/* Encodes one pre-tokenizer piece. */
static qref_status encode_piece(bpe_encoder *encoder, const char *bytes, size_t length, qref_error *err)
{
    const qref_bpe *bpe = encoder->bpe;
    encoder->work->pieces++;
    int32_t id = -1;
    if (length == 1)
        id = bpe->byte_ids[(uint8_t)bytes[0]];
    else if (bpe->ignore_merges)
        id = vocab_find(bpe, bytes, length);
    if (id >= 0) {
        if (!output_push(encoder, id))
            return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for token ids");
        return QREF_OK;
    }
    return merge_piece(encoder, bytes, length, err);
}

/*
 * Splits text[start, end) with the pre-tokenizer regex and encodes each piece: every match, and
 * every gap between matches (Split with behavior "Isolated"). The span is the whole subject, so
 * lookarounds see its ends as the ends of the text, as in the originals.
 */
static qref_status pre_tokenize(bpe_encoder *encoder, const char *text, size_t start, size_t end,
                                qref_error *err)
{
    const qref_bpe *bpe = encoder->bpe;
    const char *subject = text + start;
    size_t length = end - start;
    size_t previous = 0; /* end of the last piece */
    size_t search = 0;
    while (search < length) {
        int rc = pcre2_match(bpe->regex, (PCRE2_SPTR)subject, length, search, PCRE2_NO_UTF_CHECK,
                             encoder->match, encoder->match_context);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            char message[256];
            pcre2_get_error_message(rc, (PCRE2_UCHAR *)message, sizeof message);
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "the pre-tokenizer regex failed at byte %zu: %s",
                                  start + search, message);
        }
        encoder->work->regex_matches++;
        const PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(encoder->match);
        size_t match_start = ovector[0], match_end = ovector[1];
        qref_status status = QREF_OK;
        if (match_start > previous)
            status = encode_piece(encoder, subject + previous, match_start - previous, err);
        if (status == QREF_OK && match_end > match_start)
            status = encode_piece(encoder, subject + match_start, match_end - match_start, err);
        if (status != QREF_OK)
            return status;
        previous = match_end;
        if (match_end > match_start) {
            search = match_end;
        } else {
            /* an empty match: search again one character further */
            uint32_t cp;
            size_t n = 1;
            if (match_end < length)
                n = utf8_decode((const uint8_t *)subject + match_end, length - match_end, &cp);
            search = match_end + (n > 0 ? n : 1);
        }
    }
    if (previous < length)
        return encode_piece(encoder, subject + previous, length - previous, err);
    return QREF_OK;
}

/* Whether the character at text[offset] is a Rust regex \w character. */
static bool is_word_char_at(const bpe_encoder *encoder, const char *text, size_t offset, size_t end)
{
    int rc = pcre2_match(encoder->bpe->word_regex, (PCRE2_SPTR)text, end, offset, PCRE2_NO_UTF_CHECK,
                         encoder->match, NULL);
    return rc >= 0;
}

/* Length of the run of White_Space characters that starts at text[offset]. */
static size_t white_space_after(const char *text, size_t offset, size_t end)
{
    size_t i = offset;
    while (i < end) {
        uint32_t cp;
        size_t n = utf8_decode((const uint8_t *)text + i, end - i, &cp);
        if (n == 0 || !is_white_space(cp))
            break;
        i += n;
    }
    return i - offset;
}

/* Start of the run of White_Space characters that ends at text[offset] (exclusive). */
static size_t white_space_before(const char *text, size_t start, size_t offset)
{
    size_t i = offset;
    while (i > start) {
        size_t previous = utf8_previous_start(text, start, i);
        uint32_t cp;
        size_t n = utf8_decode((const uint8_t *)text + previous, i - previous, &cp);
        if (n == 0 || !is_white_space(cp))
            break;
        i = previous;
    }
    return i;
}

/*
 * Finds the leftmost added token of trie in text[from, end), the longest at that position,
 * skipping special tokens when special tokens are not parsed. Returns the index into
 * bpe->added, or -1, with the match in [*match_start, *match_end).
 */
static int32_t find_added(bpe_encoder *encoder, const bpe_trie *trie, const char *text, size_t from,
                          size_t end, size_t *match_start, size_t *match_end)
{
    const qref_bpe *bpe = encoder->bpe;
    for (size_t i = from; i < end; i++) {
        if (!trie->first_byte[(uint8_t)text[i]])
            continue;
        int32_t node = 0, found = -1;
        size_t found_end = 0;
        for (size_t j = i; j < end; j++) {
            int32_t child = trie->nodes[node].first_child;
            while (child >= 0 && trie->nodes[child].byte != (uint8_t)text[j])
                child = trie->nodes[child].next_sibling;
            encoder->work->trie_steps++;
            if (child < 0)
                break;
            node = child;
            int32_t added = trie->nodes[node].added;
            if (added >= 0 && (encoder->parse_special || !(bpe->added[added].flags & BPE_ADDED_SPECIAL))) {
                found = added;
                found_end = j + 1;
            }
        }
        if (found >= 0) {
            *match_start = i;
            *match_end = found_end;
            return found;
        }
    }
    return -1;
}

/*
 * Encodes text[start, end): added tokens of the raw trie first (pass BPE_TRIE_RAW), then of the
 * normalized trie in the gaps (pass BPE_TRIE_NORMALIZED), then the pre-tokenizer on what is
 * left. single_word, lstrip and rstrip apply as in huggingface/tokenizers
 * added_vocabulary.rs find_matches, with the span's ends as the text's ends.
 * TODO: compare single_word, lstrip and rstrip with Hugging Face's own output; the tests derive
 * the expected ids by hand from find_matches.
 */
static qref_status encode_span(bpe_encoder *encoder, const char *text, size_t start, size_t end, int pass,
                               qref_error *err)
{
    const qref_bpe *bpe = encoder->bpe;
    if (pass > BPE_TRIE_NORMALIZED)
        return pre_tokenize(encoder, text, start, end, err);
    const bpe_trie *trie = &bpe->tries[pass];
    if (trie->nodes == NULL)
        return encode_span(encoder, text, start, end, pass + 1, err);

    size_t done = start; /* end of the last split */
    size_t search = start;
    while (search < end) {
        size_t match_start, match_end;
        int32_t index = find_added(encoder, trie, text, search, end, &match_start, &match_end);
        if (index < 0)
            break;
        const bpe_added *added = &bpe->added[index];
        search = match_end;

        if (added->flags & BPE_ADDED_SINGLE_WORD) {
            bool space_before = match_start == start ||
                                !is_word_char_at(encoder, text, utf8_previous_start(text, start, match_start), end);
            bool space_after = match_end == end || !is_word_char_at(encoder, text, match_end, end);
            if (!space_before || !space_after)
                continue;
        }
        if (added->flags & BPE_ADDED_LSTRIP) {
            size_t stripped = white_space_before(text, start, match_start);
            match_start = stripped > done ? stripped : done;
        }
        if (added->flags & BPE_ADDED_RSTRIP) {
            match_end += white_space_after(text, match_end, end);
            search = match_end;
        }

        if (match_start > done) {
            qref_status status = encode_span(encoder, text, done, match_start, pass + 1, err);
            if (status != QREF_OK)
                return status;
        }
        if (!output_push(encoder, added->id))
            return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for token ids");
        done = match_end;
    }
    if (done < end)
        return encode_span(encoder, text, done, end, pass + 1, err);
    return QREF_OK;
}

static void encoder_free(bpe_encoder *encoder)
{
    free(encoder->ids);
    free(encoder->symbol_id);
    free(encoder->symbol_prev);
    free(encoder->symbol_next);
    free(encoder->heap);
    pcre2_match_data_free(encoder->match);
    pcre2_match_context_free(encoder->match_context);
    pcre2_jit_stack_free(encoder->jit_stack);
}

qref_status qref_bpe_encode_counted(const qref_bpe *bpe, const char *text, size_t length,
                                    bool add_bos, bool parse_special, int32_t **ids, size_t *count,
                                    qref_bpe_work *work, qref_error *err)
{
    *ids = NULL;
    *count = 0;
    qref_bpe_work local_work = {0};
    bpe_encoder encoder = {.bpe = bpe, .parse_special = parse_special, .work = work != NULL ? work : &local_work};
    qref_status status = QREF_OK;

    /* 1. the text must be UTF-8, so that PCRE2 can skip its own check on every match */
    size_t invalid = utf8_first_invalid(text, length);
    if (invalid < length)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the text is not valid UTF-8 at byte %zu (0x%02X); "
                              "byte-level BPE tokenizers encode Unicode text", bpe->display, invalid,
                              (uint8_t)text[invalid]);
    if (add_bos && bpe->bos_id < 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: a BOS token was requested, but the tokenizer has none",
                              bpe->display);

    /* 2. matching state: one match block and a JIT stack per call, so calls may run in parallel */
    encoder.match = pcre2_match_data_create_from_pattern(bpe->regex, NULL);
    encoder.match_context = pcre2_match_context_create(NULL);
    encoder.jit_stack = pcre2_jit_stack_create(32 * 1024, BPE_JIT_STACK_MAX, NULL);
    if (encoder.match == NULL || encoder.match_context == NULL || encoder.jit_stack == NULL) {
        encoder_free(&encoder);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for regex matching", bpe->display);
    }
    pcre2_jit_stack_assign(encoder.match_context, NULL, encoder.jit_stack);

    /* 3. BOS, then the text */
    if (add_bos && !output_push(&encoder, bpe->bos_id))
        status = qref_error_set(err, QREF_ERR_NOMEM, "out of memory for token ids");
    if (status == QREF_OK && length > 0)
        status = encode_span(&encoder, text, 0, length, BPE_TRIE_RAW, err);
    if (status != QREF_OK) {
        encoder_free(&encoder);
        return qref_error_prefix(err, "%s: ", bpe->display);
    }

    /* an empty result is still an allocation, so callers may pass it to memcpy and free */
    if (encoder.ids == NULL && (encoder.ids = malloc(sizeof *encoder.ids)) == NULL) {
        encoder_free(&encoder);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", bpe->display);
    }
    *ids = encoder.ids;
    *count = encoder.count;
    encoder.ids = NULL;
    encoder_free(&encoder);
    return QREF_OK;
}

qref_status qref_bpe_encode(const qref_bpe *bpe, const char *text, size_t length, bool add_bos,
                            int32_t **ids, size_t *count, qref_error *err)
{
    return qref_bpe_encode_counted(bpe, text, length, add_bos, true, ids, count, NULL, err);
}

qref_status qref_bpe_encode_ordinary(const qref_bpe *bpe, const char *text, size_t length,
                                     bool add_bos, int32_t **ids, size_t *count, qref_error *err)
{
    return qref_bpe_encode_counted(bpe, text, length, add_bos, false, ids, count, NULL, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding and accessors                                                                     */
/* ------------------------------------------------------------------------------------------ */

qref_status qref_bpe_decode(const qref_bpe *bpe, const int32_t *ids, size_t count, char **text,
                            size_t *length, qref_error *err)
{
    *text = NULL;
    *length = 0;
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= bpe->vocab_size || !(bpe->flags[id] & BPE_ID_DEFINED))
            return qref_error_set(err, QREF_ERR_INVALID, "%s: ids[%zu] = %d is not a token; expected 0 to %d",
                                  bpe->display, i, id, bpe->vocab_size - 1);
        total += bpe->length[id];
    }
    char *out = malloc(total + 1);
    if (out == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu decoded bytes", bpe->display, total);
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        memcpy(out + used, bpe->pool + bpe->offset[ids[i]], bpe->length[ids[i]]);
        used += bpe->length[ids[i]];
    }
    out[used] = '\0';
    *text = out;
    *length = used;
    return QREF_OK;
}

int32_t qref_bpe_vocab_size(const qref_bpe *bpe) { return bpe->vocab_size; }
int32_t qref_bpe_bos_id(const qref_bpe *bpe) { return bpe->bos_id; }
int32_t qref_bpe_eos_id(const qref_bpe *bpe) { return bpe->eos_id; }
bool qref_bpe_adds_bos(const qref_bpe *bpe) { return bpe->adds_bos; }
qref_bpe_source qref_bpe_source_of(const qref_bpe *bpe) { return bpe->source; }
size_t qref_bpe_merge_count(const qref_bpe *bpe) { return bpe->merge_count; }
const char *qref_bpe_pattern(const qref_bpe *bpe) { return bpe->pattern; }

const char *qref_bpe_token(const qref_bpe *bpe, int32_t id, size_t *length)
{
    if (id < 0 || id >= bpe->vocab_size || !(bpe->flags[id] & BPE_ID_DEFINED)) {
        *length = 0;
        return NULL;
    }
    *length = bpe->length[id];
    return bpe->pool + bpe->offset[id];
}

qref_bpe_token_type qref_bpe_token_type_of(const qref_bpe *bpe, int32_t id)
{
    if (id < 0 || id >= bpe->vocab_size)
        return QREF_BPE_TOKEN_NONE;
    return (qref_bpe_token_type)bpe->type[id];
}

int32_t qref_bpe_token_id(const qref_bpe *bpe, const char *bytes, size_t length)
{
    int32_t id = vocab_find(bpe, bytes, length);
    if (id >= 0)
        return id;
    for (int t = 0; t < 2; t++) {
        const bpe_trie *trie = &bpe->tries[t];
        if (trie->nodes == NULL)
            continue;
        int32_t node = 0;
        size_t i = 0;
        for (; i < length; i++) {
            int32_t child = trie->nodes[node].first_child;
            while (child >= 0 && trie->nodes[child].byte != (uint8_t)bytes[i])
                child = trie->nodes[child].next_sibling;
            if (child < 0)
                break;
            node = child;
        }
        if (i == length && length > 0 && trie->nodes[node].added >= 0)
            return bpe->added[trie->nodes[node].added].id;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading from plain arrays (GGUF tokenizer.ggml.*)                                          */
/* ------------------------------------------------------------------------------------------ */

/* Defines the arrays' tokens: byte-level text for ordinary types, raw text for added ones. */
static qref_status arrays_define_tokens(qref_bpe *bpe, const qref_bpe_arrays *arrays, char *scratch,
                                        qref_error *err)
{
    for (size_t i = 0; i < arrays->token_count; i++) {
        char label[64];
        snprintf(label, sizeof label, "tokens[%zu]", i);
        const char *token = arrays->tokens[i];
        if (token == NULL)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is missing", bpe->display, label);
        size_t length = arrays->token_lengths != NULL ? arrays->token_lengths[i] : strlen(token);
        int32_t type = arrays->token_types != NULL ? arrays->token_types[i] : QREF_BPE_TOKEN_NORMAL;
        if (type < QREF_BPE_TOKEN_NORMAL || type > QREF_BPE_TOKEN_BYTE)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: token_types[%zu] = %d; expected 1 to 6",
                                  bpe->display, i, type);
        if (length > QREF_BPE_MAX_TOKEN_BYTES)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: token of %zu bytes; expected at most %u",
                                  bpe->display, label, length, QREF_BPE_MAX_TOKEN_BYTES);

        bool added = type == QREF_BPE_TOKEN_CONTROL || type == QREF_BPE_TOKEN_USER_DEFINED;
        const char *bytes = token;
        size_t byte_count = length;
        if (!added) {
            size_t bad = 0;
            ptrdiff_t decoded = qref_bpe_byte_level_decode(token, length, scratch, &bad);
            if (decoded < 0) {
                char quoted[128];
                return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s = %s: byte %zu is outside the byte-level "
                                      "alphabet; only byte-level BPE vocabularies are supported", bpe->display,
                                      label, qref_bpe_quote(token, length, quoted, sizeof quoted), bad);
            }
            bytes = scratch;
            byte_count = (size_t)decoded;
        }
        qref_status status = qref_bpe_build_token(bpe, (int32_t)i, bytes, byte_count, (qref_bpe_token_type)type,
                                                  !added, label, err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* Adds the arrays' merges "LEFT RIGHT" in rank order. */
static qref_status arrays_add_merges(qref_bpe *bpe, const qref_bpe_arrays *arrays, char *scratch, qref_error *err)
{
    for (size_t i = 0; i < arrays->merge_count; i++) {
        const char *merge = arrays->merges[i];
        size_t length = 0;
        if (merge != NULL)
            length = arrays->merge_lengths != NULL ? arrays->merge_lengths[i] : strlen(merge);
        char quoted[128], part[128];
        if (length > 2 * (size_t)QREF_BPE_MAX_TOKEN_BYTES)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: merges[%zu]: %zu bytes; expected at most %u",
                                  bpe->display, i, length, 2 * QREF_BPE_MAX_TOKEN_BYTES);
        const char *space = merge != NULL ? memchr(merge, ' ', length) : NULL;
        if (space == NULL || memchr(space + 1, ' ', length - (size_t)(space + 1 - merge)) != NULL)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: merges[%zu] = %s; expected two tokens separated by "
                                  "one space", bpe->display, i, qref_bpe_quote(merge != NULL ? merge : "", length,
                                                                              quoted, sizeof quoted));
        const char *parts[2] = {merge, space + 1};
        size_t part_lengths[2] = {(size_t)(space - merge), length - (size_t)(space + 1 - merge)};
        int32_t part_ids[2];
        size_t joined = 0;
        for (int p = 0; p < 2; p++) {
            size_t bad = 0;
            ptrdiff_t decoded = qref_bpe_byte_level_decode(parts[p], part_lengths[p], scratch + joined, &bad);
            part_ids[p] = decoded > 0 ? vocab_find(bpe, scratch + joined, (size_t)decoded) : -1;
            if (part_ids[p] < 0)
                return qref_error_set(err, QREF_ERR_INVALID, "%s: merges[%zu] = %s: the token %s is not in the "
                                      "vocabulary", bpe->display, i,
                                      qref_bpe_quote(merge, length, quoted, sizeof quoted),
                                      qref_bpe_quote(parts[p], part_lengths[p], part, sizeof part));
            joined += (size_t)decoded;
        }
        int32_t merged = vocab_find(bpe, scratch, joined);
        if (merged < 0)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: merges[%zu] = %s: the merged token is not in the "
                                  "vocabulary", bpe->display, i,
                                  qref_bpe_quote(merge, length, quoted, sizeof quoted));
        qref_status status = qref_bpe_build_merge(bpe, part_ids[0], part_ids[1], merged, (uint32_t)i, err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

qref_status qref_bpe_load_arrays(const qref_bpe_arrays *arrays, qref_bpe **out, qref_error *err)
{
    *out = NULL;
    const char *display = arrays->display != NULL ? arrays->display : "arrays";
    if (arrays->token_count == 0 || arrays->token_count > (size_t)QREF_BPE_MAX_ID)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %zu tokens; expected 1 to %d", display,
                              arrays->token_count, QREF_BPE_MAX_ID);
    if (arrays->merge_count > UINT32_MAX)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %zu merges; expected at most %u", display,
                              arrays->merge_count, UINT32_MAX);

    qref_bpe *bpe = NULL;
    qref_status status =
        qref_bpe_build_create(display, QREF_BPE_SOURCE_ARRAYS, (int32_t)arrays->token_count, &bpe, err);
    if (status != QREF_OK)
        return status;
    /* a decoded token or merge never exceeds twice the longest token */
    char *scratch = malloc(2 * (size_t)QREF_BPE_MAX_TOKEN_BYTES + 2);
    if (scratch == NULL) {
        qref_bpe_free(bpe);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    }

    status = arrays_define_tokens(bpe, arrays, scratch, err);
    if (status == QREF_OK)
        status = qref_bpe_build_index(bpe, err);
    if (status == QREF_OK)
        status = arrays_add_merges(bpe, arrays, scratch, err);
    for (size_t i = 0; status == QREF_OK && i < arrays->token_count; i++) {
        int32_t type = arrays->token_types != NULL ? arrays->token_types[i] : QREF_BPE_TOKEN_NORMAL;
        if (type != QREF_BPE_TOKEN_CONTROL && type != QREF_BPE_TOKEN_USER_DEFINED)
            continue;
        /* llama.cpp matches USER_DEFINED tokens always and CONTROL tokens when it parses specials */
        qref_bpe_added_flags flags = {.special = type == QREF_BPE_TOKEN_CONTROL};
        char label[64];
        snprintf(label, sizeof label, "tokens[%zu]", i);
        status = qref_bpe_build_added(bpe, (int32_t)i, &flags, label, err);
    }
    free(scratch);
    if (status == QREF_OK) {
        const char *pattern = arrays->pattern != NULL ? arrays->pattern : QREF_BPE_LLAMA3_PATTERN;
        status = qref_bpe_build_pattern(bpe, pattern, strlen(pattern), "pattern", err);
    }
    if (status == QREF_OK) {
        qref_bpe_build_options(bpe, arrays->ignore_merges, arrays->bos_id, arrays->eos_id, arrays->add_bos);
        status = qref_bpe_build_finish(bpe, err);
    }
    if (status != QREF_OK) {
        qref_bpe_free(bpe);
        return status;
    }
    *out = bpe;
    return QREF_OK;
}
