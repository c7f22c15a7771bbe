/*
 * SentencePiece BPE tokenizer: model loading (protobuf), normalization, BPE merges and id
 * mapping. The behaviour follows google/sentencepiece 0.1.97: model_interface.cc (piece
 * tables), normalizer.cc (Normalize, NormalizePrefix, PrefixMatcher), bpe_model.cc (the merge
 * loop and the resegmentation of UNUSED pieces) and sentencepiece_processor.cc (byte
 * fallback, merging of unknown runs, self-test samples run at load).
 */
#include "model/qref_spm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_blob.h"
#include "io/qref_protobuf.h"

/* The library rejects pieces of 8000 bytes or more (model_interface.cc kMaxPieceSize). */
#define SPM_MAX_PIECE_LENGTH 8000
/* Upper bound on the piece count; the largest SentencePiece vocabularies in use have 256k. */
#define SPM_MAX_PIECES (1 << 22)
/* U+2581 LOWER ONE EIGHTH BLOCK, the escaped space. */
static const char SPM_SPACE_SYMBOL[] = "\xe2\x96\x81";
/* U+FFFD REPLACEMENT CHARACTER, written for each malformed UTF-8 byte. */
static const char SPM_REPLACEMENT[] = "\xef\xbf\xbd";

/* Open-addressing hash set of piece ids keyed by piece bytes. */
typedef struct spm_table {
    int32_t *slots; /* -1 marks an empty slot */
    size_t mask;
} spm_table;

/* Byte trie of the USER_DEFINED pieces, for longest-prefix matching. */
typedef struct spm_trie_node {
    int32_t first_child;
    int32_t next_sibling;
    uint8_t byte;
    bool terminal;
} spm_trie_node;

struct qref_spm {
    char *display;

    /* Pieces in id order; piece i's bytes are pool[offset[i] .. offset[i] + length[i]). */
    int32_t count;
    char *pool;
    uint32_t *offset;
    uint32_t *length;
    float *score;
    uint8_t *type;

    spm_table normal;   /* NORMAL, USER_DEFINED and UNUSED pieces: the ones merges may form */
    spm_table reserved; /* UNKNOWN, CONTROL and BYTE pieces */
    uint32_t max_normal_length;
    bool has_unused;
    /* ASCII bytes that no normal piece of two or more bytes contains: they never merge */
    bool isolated[128];

    spm_trie_node *trie; /* node 0 is the root; NULL when there is no user-defined piece */
    int32_t trie_count;

    int32_t byte_ids[256];
    int32_t unk_id, bos_id, eos_id, pad_id;
    bool byte_fallback;
    bool treat_whitespace_as_suffix;

    char *normalizer_name;
    bool add_dummy_prefix;
    bool remove_extra_whitespaces;
    bool escape_whitespaces;
};

/* ------------------------------------------------------------------------------------------ */
/* Piece tables                                                                               */
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

static bool piece_equals(const qref_spm *spm, int32_t id, const char *bytes, size_t length)
{
    return spm->length[id] == length && memcmp(spm->pool + spm->offset[id], bytes, length) == 0;
}

static int32_t table_find(const qref_spm *spm, const spm_table *table, const char *bytes,
                          size_t length)
{
    if (table->slots == NULL)
        return -1;
    size_t slot = (size_t)hash_bytes(bytes, length) & table->mask;
    while (table->slots[slot] >= 0) {
        if (piece_equals(spm, table->slots[slot], bytes, length))
            return table->slots[slot];
        slot = (slot + 1) & table->mask;
    }
    return -1;
}

static void table_insert(const qref_spm *spm, spm_table *table, int32_t id)
{
    size_t slot = (size_t)hash_bytes(spm->pool + spm->offset[id], spm->length[id]) & table->mask;
    while (table->slots[slot] >= 0)
        slot = (slot + 1) & table->mask;
    table->slots[slot] = id;
}

static bool table_init(spm_table *table, size_t entries)
{
    size_t capacity = 16;
    while (capacity < 2 * entries)
        capacity *= 2;
    table->slots = malloc(capacity * sizeof *table->slots);
    if (table->slots == NULL)
        return false;
    memset(table->slots, 0xff, capacity * sizeof *table->slots);
    table->mask = capacity - 1;
    return true;
}

static bool is_normal_type(uint8_t type)
{
    return type == QREF_SPM_PIECE_NORMAL || type == QREF_SPM_PIECE_USER_DEFINED ||
           type == QREF_SPM_PIECE_UNUSED;
}

/* The library's PieceToId: reserved pieces first, then the normal ones, else the unknown id. */
static int32_t piece_to_id(const qref_spm *spm, const char *bytes, size_t length)
{
    int32_t id = table_find(spm, &spm->reserved, bytes, length);
    if (id >= 0)
        return id;
    id = table_find(spm, &spm->normal, bytes, length);
    return id >= 0 ? id : spm->unk_id;
}

/* Adds a user-defined piece to the trie; returns false when out of memory. */
static bool trie_insert(qref_spm *spm, int32_t *capacity, const char *bytes, size_t length)
{
    int32_t node = 0;
    for (size_t i = 0; i < length; i++) {
        uint8_t byte = (uint8_t)bytes[i];
        int32_t child = spm->trie[node].first_child;
        while (child >= 0 && spm->trie[child].byte != byte)
            child = spm->trie[child].next_sibling;
        if (child < 0) {
            if (spm->trie_count == *capacity) {
                int32_t grown_capacity = *capacity * 2;
                spm_trie_node *grown = realloc(spm->trie, (size_t)grown_capacity * sizeof *grown);
                if (grown == NULL)
                    return false;
                spm->trie = grown;
                *capacity = grown_capacity;
            }
            child = spm->trie_count++;
            spm->trie[child] = (spm_trie_node){-1, spm->trie[node].first_child, byte, false};
            spm->trie[node].first_child = child;
        }
        node = child;
    }
    spm->trie[node].terminal = true;
    return true;
}

/* Length of the longest user-defined piece that starts text, or 0 when none does. */
static size_t trie_longest_match(const qref_spm *spm, const char *text, size_t length)
{
    if (spm->trie == NULL)
        return 0;
    size_t longest = 0;
    int32_t node = 0;
    for (size_t i = 0; i < length; i++) {
        int32_t child = spm->trie[node].first_child;
        while (child >= 0 && spm->trie[child].byte != (uint8_t)text[i])
            child = spm->trie[child].next_sibling;
        if (child < 0)
            break;
        node = child;
        if (spm->trie[node].terminal)
            longest = i + 1;
    }
    return longest;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 helpers with the library's rules (util.h, util.cc)                                   */
/* ------------------------------------------------------------------------------------------ */

/* Byte length of the character that starts with lead, from its high nibble (OneCharLen). */
static size_t utf8_char_length(uint8_t lead)
{
    static const uint8_t lengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lengths[lead >> 4];
}

static bool is_trail_byte(uint8_t byte)
{
    return (byte & 0xc0) == 0x80;
}

static bool is_valid_codepoint(uint32_t cp)
{
    return cp < 0xd800 || (cp >= 0xe000 && cp <= 0x10ffff);
}

/*
 * Returns the byte length of the well-formed character at text, or 0 when the bytes are
 * malformed (DecodeUTF8: overlong forms, surrogates and code points above U+10FFFF are
 * malformed, and so is a sequence cut by the end of the text).
 */
static size_t utf8_decode_length(const uint8_t *text, size_t length)
{
    uint8_t lead = text[0];
    if (lead < 0x80)
        return 1;
    if (length >= 2 && (lead & 0xe0) == 0xc0) {
        uint32_t cp = (uint32_t)(lead & 0x1f) << 6 | (text[1] & 0x3f);
        if (is_trail_byte(text[1]) && cp >= 0x80 && is_valid_codepoint(cp))
            return 2;
    } else if (length >= 3 && (lead & 0xf0) == 0xe0) {
        uint32_t cp = (uint32_t)(lead & 0x0f) << 12 | (uint32_t)(text[1] & 0x3f) << 6 |
                      (text[2] & 0x3f);
        if (is_trail_byte(text[1]) && is_trail_byte(text[2]) && cp >= 0x800 &&
            is_valid_codepoint(cp))
            return 3;
    } else if (length >= 4 && (lead & 0xf8) == 0xf0) {
        uint32_t cp = (uint32_t)(lead & 0x07) << 18 | (uint32_t)(text[1] & 0x3f) << 12 |
                      (uint32_t)(text[2] & 0x3f) << 6 | (text[3] & 0x3f);
        if (is_trail_byte(text[1]) && is_trail_byte(text[2]) && is_trail_byte(text[3]) &&
            cp >= 0x10000 && is_valid_codepoint(cp))
            return 4;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Fields read from ModelProto before the model is assembled. Absent fields keep the defaults. */
typedef struct spm_proto {
    /* pieces: collected in a first pass, then copied into the model */
    int32_t piece_count;
    size_t pool_size;

    /* trainer_spec */
    int32_t model_type;
    bool byte_fallback;
    bool treat_whitespace_as_suffix;
    int32_t unk_id, bos_id, eos_id, pad_id;
    const uint8_t *unk_piece, *bos_piece, *eos_piece, *pad_piece;
    size_t unk_piece_length, bos_piece_length, eos_piece_length, pad_piece_length;

    /* normalizer_spec */
    const uint8_t *normalizer_name;
    size_t normalizer_name_length;
    size_t charsmap_length;
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;

    /* self_test_data: the serialized message, checked after the model is built */
    const uint8_t **self_tests;
    size_t *self_test_lengths;
    size_t *self_test_offsets;
    size_t self_test_count, self_test_capacity;
} spm_proto;

static const char *model_type_name(int32_t type)
{
    switch (type) {
    case 1: return "UNIGRAM";
    case 2: return "BPE";
    case 3: return "WORD";
    case 4: return "CHAR";
    }
    return "unknown";
}

static qref_status parse_trainer_spec(qref_pb_reader *reader, spm_proto *proto, qref_error *err)
{
    qref_pb_field field;
    bool has_field = false;
    for (;;) {
        qref_status status = qref_pb_next_field(reader, &field, &has_field, err);
        if (status != QREF_OK || !has_field)
            return status;
        switch (field.number) {
        case 3:
            status = qref_pb_read_int32(reader, &field, "model_type", &proto->model_type, err);
            if (status == QREF_OK && (proto->model_type < 1 || proto->model_type > 4))
                status = qref_error_set(err, QREF_ERR_INVALID,
                                        "%s: %s.model_type (field 3) at byte %zu is %d, expected "
                                        "1 (UNIGRAM), 2 (BPE), 3 (WORD) or 4 (CHAR)",
                                        reader->display, reader->path, field.offset,
                                        proto->model_type);
            break;
        case 24:
            status = qref_pb_read_bool(reader, &field, "treat_whitespace_as_suffix",
                                       &proto->treat_whitespace_as_suffix, err);
            break;
        case 35:
            status = qref_pb_read_bool(reader, &field, "byte_fallback", &proto->byte_fallback, err);
            break;
        case 40: status = qref_pb_read_int32(reader, &field, "unk_id", &proto->unk_id, err); break;
        case 41: status = qref_pb_read_int32(reader, &field, "bos_id", &proto->bos_id, err); break;
        case 42: status = qref_pb_read_int32(reader, &field, "eos_id", &proto->eos_id, err); break;
        case 43: status = qref_pb_read_int32(reader, &field, "pad_id", &proto->pad_id, err); break;
        case 45:
            status = qref_pb_read_bytes(reader, &field, "unk_piece", &proto->unk_piece,
                                        &proto->unk_piece_length, err);
            break;
        case 46:
            status = qref_pb_read_bytes(reader, &field, "bos_piece", &proto->bos_piece,
                                        &proto->bos_piece_length, err);
            break;
        case 47:
            status = qref_pb_read_bytes(reader, &field, "eos_piece", &proto->eos_piece,
                                        &proto->eos_piece_length, err);
            break;
        case 48:
            status = qref_pb_read_bytes(reader, &field, "pad_piece", &proto->pad_piece,
                                        &proto->pad_piece_length, err);
            break;
        default:
            break; /* training options that do not change encoding */
        }
        if (status != QREF_OK)
            return status;
    }
}

static qref_status parse_normalizer_spec(qref_pb_reader *reader, spm_proto *proto, qref_error *err)
{
    qref_pb_field field;
    bool has_field = false;
    const uint8_t *charsmap = NULL;
    for (;;) {
        qref_status status = qref_pb_next_field(reader, &field, &has_field, err);
        if (status != QREF_OK || !has_field)
            return status;
        switch (field.number) {
        case 1:
            status = qref_pb_read_bytes(reader, &field, "name", &proto->normalizer_name,
                                        &proto->normalizer_name_length, err);
            break;
        case 2:
            status = qref_pb_read_bytes(reader, &field, "precompiled_charsmap", &charsmap,
                                        &proto->charsmap_length, err);
            break;
        case 3:
            status = qref_pb_read_bool(reader, &field, "add_dummy_prefix",
                                       &proto->add_dummy_prefix, err);
            break;
        case 4:
            status = qref_pb_read_bool(reader, &field, "remove_extra_whitespaces",
                                       &proto->remove_extra_whitespaces, err);
            break;
        case 5:
            status = qref_pb_read_bool(reader, &field, "escape_whitespaces",
                                       &proto->escape_whitespaces, err);
            break;
        default:
            break; /* normalization_rule_tsv and extensions are used only in training */
        }
        if (status != QREF_OK)
            return status;
    }
}

/* Validates one ModelProto.SentencePiece; stores it when spm is not NULL (second pass). */
static qref_status parse_piece(qref_pb_reader *reader, qref_spm *spm, int32_t id,
                               size_t *pool_used, qref_error *err)
{
    const uint8_t *bytes = NULL;
    size_t length = 0;
    float score = 0.0f;
    int32_t type = QREF_SPM_PIECE_NORMAL;
    bool has_piece = false;

    qref_pb_field field;
    bool has_field = false;
    for (;;) {
        qref_status status = qref_pb_next_field(reader, &field, &has_field, err);
        if (status != QREF_OK)
            return status;
        if (!has_field)
            break;
        switch (field.number) {
        case 1:
            status = qref_pb_read_bytes(reader, &field, "piece", &bytes, &length, err);
            has_piece = true;
            break;
        case 2:
            status = qref_pb_read_float(reader, &field, "score", &score, err);
            if (status == QREF_OK && isnan(score))
                status = qref_error_set(err, QREF_ERR_INVALID,
                                        "%s: %s.score (field 2) at byte %zu is NaN, expected a "
                                        "number",
                                        reader->display, reader->path, field.offset);
            break;
        case 3:
            status = qref_pb_read_int32(reader, &field, "type", &type, err);
            if (status == QREF_OK && (type < 1 || type > 6))
                status = qref_error_set(err, QREF_ERR_INVALID,
                                        "%s: %s.type (field 3) at byte %zu is %d, expected 1 "
                                        "(NORMAL) to 6 (BYTE)",
                                        reader->display, reader->path, field.offset, type);
            break;
        default:
            break;
        }
        if (status != QREF_OK)
            return status;
    }

    /* The library's rules: a piece is non-empty, has no NUL byte and is under 8000 bytes. */
    if (!has_piece || length == 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s.piece is %s, expected a non-empty string",
                              reader->display, reader->path, has_piece ? "empty" : "missing");
    if (length >= SPM_MAX_PIECE_LENGTH)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s.piece is %zu bytes long, expected fewer than %d",
                              reader->display, reader->path, length, SPM_MAX_PIECE_LENGTH);
    if (memchr(bytes, '\0', length) != NULL)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s.piece contains a NUL byte, expected none",
                              reader->display, reader->path);

    if (spm != NULL) {
        spm->offset[id] = (uint32_t)*pool_used;
        spm->length[id] = (uint32_t)length;
        spm->score[id] = score;
        spm->type[id] = (uint8_t)type;
        memcpy(spm->pool + *pool_used, bytes, length);
        spm->pool[*pool_used + length] = '\0';
    }
    *pool_used += length + 1;
    return QREF_OK;
}

static qref_status add_self_test(const qref_pb_reader *reader, const qref_pb_field *field,
                                 spm_proto *proto, qref_error *err)
{
    if (proto->self_test_count == proto->self_test_capacity) {
        size_t capacity = proto->self_test_capacity == 0 ? 4 : proto->self_test_capacity * 2;
        const uint8_t **tests = realloc(proto->self_tests, capacity * sizeof *tests);
        if (tests != NULL)
            proto->self_tests = tests;
        size_t *lengths = realloc(proto->self_test_lengths, capacity * sizeof *lengths);
        if (lengths != NULL)
            proto->self_test_lengths = lengths;
        size_t *offsets = realloc(proto->self_test_offsets, capacity * sizeof *offsets);
        if (offsets != NULL)
            proto->self_test_offsets = offsets;
        if (tests == NULL || lengths == NULL || offsets == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", reader->display);
        proto->self_test_capacity = capacity;
    }
    proto->self_tests[proto->self_test_count] = field->bytes;
    proto->self_test_lengths[proto->self_test_count] = field->length;
    proto->self_test_offsets[proto->self_test_count] =
        reader->base + (size_t)(field->bytes - reader->data);
    proto->self_test_count++;
    return QREF_OK;
}

/*
 * Walks ModelProto. With spm == NULL it validates every field and counts the pieces and
 * their bytes; with spm set it stores the pieces (second pass over the same bytes).
 */
static qref_status parse_model_proto(const char *display, const uint8_t *data, size_t size,
                                     spm_proto *proto, qref_spm *spm, qref_error *err)
{
    qref_pb_reader reader;
    qref_pb_reader_init(&reader, display, "ModelProto", data, size, 0);
    int32_t piece_index = 0;
    size_t pool_used = 0;

    qref_pb_field field;
    bool has_field = false;
    for (;;) {
        qref_status status = qref_pb_next_field(&reader, &field, &has_field, err);
        if (status != QREF_OK)
            return status;
        if (!has_field)
            break;

        qref_pb_reader child;
        char path[QREF_PB_PATH_MAX];
        switch (field.number) {
        case 1: /* repeated SentencePiece pieces */
            status = qref_pb_expect_wire(&reader, &field, "pieces", QREF_PB_WIRE_LEN, err);
            if (status != QREF_OK)
                return status;
            if (piece_index >= SPM_MAX_PIECES)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: ModelProto.pieces has more than %d entries",
                                      display, SPM_MAX_PIECES);
            snprintf(path, sizeof path, "ModelProto.pieces[%d]", piece_index);
            qref_pb_reader_init_sub(&child, &reader, &field, path);
            status = parse_piece(&child, spm, piece_index, &pool_used, err);
            piece_index++;
            break;
        case 2: /* TrainerSpec; repeated occurrences merge, as protobuf parsers do */
            if (spm != NULL)
                break;
            status = qref_pb_expect_wire(&reader, &field, "trainer_spec", QREF_PB_WIRE_LEN, err);
            if (status != QREF_OK)
                return status;
            qref_pb_reader_init_sub(&child, &reader, &field, "ModelProto.trainer_spec");
            status = parse_trainer_spec(&child, proto, err);
            break;
        case 3: /* NormalizerSpec */
            if (spm != NULL)
                break;
            status = qref_pb_expect_wire(&reader, &field, "normalizer_spec", QREF_PB_WIRE_LEN,
                                         err);
            if (status != QREF_OK)
                return status;
            qref_pb_reader_init_sub(&child, &reader, &field, "ModelProto.normalizer_spec");
            status = parse_normalizer_spec(&child, proto, err);
            break;
        case 4: /* SelfTestData */
            if (spm != NULL)
                break;
            status = qref_pb_expect_wire(&reader, &field, "self_test_data", QREF_PB_WIRE_LEN,
                                         err);
            if (status == QREF_OK)
                status = add_self_test(&reader, &field, proto, err);
            break;
        default:
            break; /* denormalizer_spec (decoding only) and extensions */
        }
        if (status != QREF_OK)
            return status;
    }
    proto->piece_count = piece_index;
    proto->pool_size = pool_used;
    return QREF_OK;
}

/* Parses "<0xXX>" (upper-case hex, as the library's ByteToPiece writes it); returns -1 otherwise. */
static int parse_byte_piece(const char *piece, size_t length)
{
    static const char digits[] = "0123456789ABCDEF";
    if (length != 6 || memcmp(piece, "<0x", 3) != 0 || piece[5] != '>')
        return -1;
    const char *high = memchr(digits, piece[3], 16);
    const char *low = memchr(digits, piece[4], 16);
    if (high == NULL || low == NULL)
        return -1;
    return (int)((high - digits) * 16 + (low - digits));
}

/* Builds the piece tables, the user-defined trie and the byte map, checking the model rules. */
static qref_status index_pieces(qref_spm *spm, qref_error *err)
{
    size_t normal_count = 0, reserved_count = 0;
    for (int32_t id = 0; id < spm->count; id++) {
        if (is_normal_type(spm->type[id]))
            normal_count++;
        else
            reserved_count++;
    }
    if (!table_init(&spm->normal, normal_count) || !table_init(&spm->reserved, reserved_count))
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);

    for (int i = 0; i < 256; i++)
        spm->byte_ids[i] = -1;
    for (int i = 0; i < 128; i++)
        spm->isolated[i] = true;
    spm->unk_id = -1;
    int32_t trie_capacity = 0;

    for (int32_t id = 0; id < spm->count; id++) {
        const char *piece = spm->pool + spm->offset[id];
        size_t length = spm->length[id];
        uint8_t type = spm->type[id];

        /* Every piece string is unique across the whole vocabulary. */
        int32_t other = table_find(spm, &spm->normal, piece, length);
        if (other < 0)
            other = table_find(spm, &spm->reserved, piece, length);
        if (other >= 0)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: ModelProto.pieces[%d] \"%s\" duplicates pieces[%d], "
                                  "expected unique pieces",
                                  spm->display, id, piece, other);
        if (is_normal_type(type)) {
            table_insert(spm, &spm->normal, id);
            if (length > spm->max_normal_length)
                spm->max_normal_length = (uint32_t)length;
            for (size_t i = 0; length >= 2 && i < length; i++) {
                if ((uint8_t)piece[i] < 128)
                    spm->isolated[(uint8_t)piece[i]] = false;
            }
        } else {
            table_insert(spm, &spm->reserved, id);
        }

        if (type == QREF_SPM_PIECE_UNUSED)
            spm->has_unused = true;

        if (type == QREF_SPM_PIECE_UNKNOWN) {
            if (spm->unk_id >= 0)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: ModelProto.pieces[%d] is a second UNKNOWN piece after "
                                      "pieces[%d], expected exactly one",
                                      spm->display, id, spm->unk_id);
            spm->unk_id = id;
        }

        if (type == QREF_SPM_PIECE_BYTE) {
            if (!spm->byte_fallback)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: ModelProto.pieces[%d] \"%s\" is a BYTE piece but "
                                      "trainer_spec.byte_fallback is false, expected no BYTE "
                                      "pieces",
                                      spm->display, id, piece);
            int byte = parse_byte_piece(piece, length);
            if (byte < 0)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: ModelProto.pieces[%d] is the BYTE piece \"%s\", "
                                      "expected the form <0xXX> with upper-case hex digits",
                                      spm->display, id, piece);
            spm->byte_ids[byte] = id;
        }

        if (type == QREF_SPM_PIECE_USER_DEFINED) {
            if (spm->trie == NULL) {
                trie_capacity = 64;
                spm->trie = malloc((size_t)trie_capacity * sizeof *spm->trie);
                if (spm->trie == NULL)
                    return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
                spm->trie[0] = (spm_trie_node){-1, -1, 0, false};
                spm->trie_count = 1;
            }
            if (!trie_insert(spm, &trie_capacity, piece, length))
                return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
        }
    }

    if (spm->unk_id < 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: ModelProto.pieces has no UNKNOWN piece, expected exactly one",
                              spm->display);
    if (spm->byte_fallback) {
        for (int byte = 0; byte < 256; byte++) {
            if (spm->byte_ids[byte] < 0)
                return qref_error_set(err, QREF_ERR_INVALID,
                                      "%s: trainer_spec.byte_fallback is true but the BYTE piece "
                                      "<0x%02X> is missing, expected all 256",
                                      spm->display, byte);
        }
    }
    return QREF_OK;
}

/*
 * Resolves a special id as the library does (the id of the named piece when that piece has
 * the required type, else -1) and checks it against the id trainer_spec declares.
 */
static qref_status resolve_special(qref_spm *spm, const char *field_name, int32_t declared,
                                   const uint8_t *piece, size_t piece_length,
                                   const char *default_piece, qref_spm_piece_type required,
                                   int32_t *out, qref_error *err)
{
    if (declared < -1 || declared >= spm->count)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: ModelProto.trainer_spec.%s is %d, expected -1 or 0 to %d",
                              spm->display, field_name, declared, spm->count - 1);
    /* An empty piece name falls back to the default, as ModelInterface does. */
    const char *name = piece_length > 0 ? (const char *)piece : default_piece;
    size_t name_length = piece_length > 0 ? piece_length : strlen(default_piece);
    int32_t id = piece_to_id(spm, name, name_length);
    *out = spm->type[id] == required ? id : -1;
    if (declared >= 0 && declared != *out)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: ModelProto.trainer_spec.%s is %d, but the piece \"%.*s\" "
                              "resolves to id %d, expected the two to agree",
                              spm->display, field_name, declared, (int)name_length, name, *out);
    return QREF_OK;
}

static qref_status run_self_tests(const qref_spm *spm, const spm_proto *proto, qref_error *err);

static void proto_free(spm_proto *proto)
{
    free(proto->self_tests);
    free(proto->self_test_lengths);
    free(proto->self_test_offsets);
}

qref_status qref_spm_load(const char *display, const uint8_t *data, size_t size, qref_spm **out,
                          qref_error *err)
{
    *out = NULL;

    /* A JSON file here is most likely a Hugging Face tokenizer.json given by mistake. */
    if (size > 0 && data[0] == '{')
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: starts with '{' like a JSON file, expected a serialized "
                              "SentencePiece ModelProto (tokenizer.model, not tokenizer.json)",
                              display);

    /* Step 1: validate the whole message and count pieces; defaults from the .proto file. */
    spm_proto proto = {
        .model_type = 1, /* UNIGRAM */
        .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
        .add_dummy_prefix = true, .remove_extra_whitespaces = true, .escape_whitespaces = true,
    };
    qref_status status = parse_model_proto(display, data, size, &proto, NULL, err);
    if (status != QREF_OK) {
        proto_free(&proto);
        return status;
    }
    if (proto.piece_count == 0) {
        proto_free(&proto);
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: ModelProto.pieces is empty, expected at least the UNKNOWN "
                              "piece",
                              display);
    }
    if (proto.model_type != 2) {
        proto_free(&proto);
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: ModelProto.trainer_spec.model_type is %d (%s), expected 2 "
                              "(BPE): only BPE models are supported",
                              display, proto.model_type, model_type_name(proto.model_type));
    }
    if (proto.charsmap_length > 0) {
        /* TODO: decode precompiled_charsmap (Darts double-array trie) to support NFKC models. */
        proto_free(&proto);
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: ModelProto.normalizer_spec.precompiled_charsmap has %zu bytes "
                              "(normalizer \"%.*s\"), expected none: precompiled normalization "
                              "rules are not supported",
                              display, proto.charsmap_length, (int)proto.normalizer_name_length,
                              proto.normalizer_name != NULL ? (const char *)proto.normalizer_name
                                                            : "");
    }

    /* Step 2: allocate the model and copy the pieces in a second pass. */
    qref_spm *spm = calloc(1, sizeof *spm);
    if (spm == NULL) {
        proto_free(&proto);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    }
    size_t pieces = (size_t)proto.piece_count;
    spm->display = strdup(display);
    spm->count = proto.piece_count;
    spm->pool = malloc(proto.pool_size);
    spm->offset = malloc(pieces * sizeof *spm->offset);
    spm->length = malloc(pieces * sizeof *spm->length);
    spm->score = malloc(pieces * sizeof *spm->score);
    spm->type = malloc(pieces);
    spm->normalizer_name = strndup(proto.normalizer_name != NULL
                                       ? (const char *)proto.normalizer_name : "",
                                   proto.normalizer_name_length);
    if (spm->display == NULL || spm->pool == NULL || spm->offset == NULL || spm->length == NULL ||
        spm->score == NULL || spm->type == NULL || spm->normalizer_name == NULL) {
        proto_free(&proto);
        qref_spm_free(spm);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    }
    spm->byte_fallback = proto.byte_fallback;
    spm->treat_whitespace_as_suffix = proto.treat_whitespace_as_suffix;
    spm->add_dummy_prefix = proto.add_dummy_prefix;
    spm->remove_extra_whitespaces = proto.remove_extra_whitespaces;
    spm->escape_whitespaces = proto.escape_whitespaces;
    status = parse_model_proto(display, data, size, &proto, spm, err);

    /* Step 3: piece tables, then the special ids, then the model's own self-test samples. */
    if (status == QREF_OK)
        status = index_pieces(spm, err);
    int32_t declared_unk = 0;
    if (status == QREF_OK)
        status = resolve_special(spm, "unk_id", proto.unk_id, proto.unk_piece,
                                 proto.unk_piece_length, "<unk>", QREF_SPM_PIECE_UNKNOWN,
                                 &declared_unk, err);
    if (status == QREF_OK)
        status = resolve_special(spm, "bos_id", proto.bos_id, proto.bos_piece,
                                 proto.bos_piece_length, "<s>", QREF_SPM_PIECE_CONTROL,
                                 &spm->bos_id, err);
    if (status == QREF_OK)
        status = resolve_special(spm, "eos_id", proto.eos_id, proto.eos_piece,
                                 proto.eos_piece_length, "</s>", QREF_SPM_PIECE_CONTROL,
                                 &spm->eos_id, err);
    if (status == QREF_OK)
        status = resolve_special(spm, "pad_id", proto.pad_id, proto.pad_piece,
                                 proto.pad_piece_length, "<pad>", QREF_SPM_PIECE_CONTROL,
                                 &spm->pad_id, err);
    if (status == QREF_OK)
        status = run_self_tests(spm, &proto, err);
    proto_free(&proto);
    if (status != QREF_OK) {
        qref_spm_free(spm);
        return status;
    }
    *out = spm;
    return QREF_OK;
}

qref_status qref_spm_load_file(const char *path, qref_spm **out, qref_error *err)
{
    *out = NULL;
    qref_blob blob;
    qref_status status = qref_blob_map_file(path, &blob, err);
    if (status != QREF_OK)
        return status;
    status = qref_spm_load(path, blob.data, blob.size, out, err);
    qref_blob_free(&blob);
    return status;
}

void qref_spm_free(qref_spm *spm)
{
    if (spm == NULL)
        return;
    free(spm->display);
    free(spm->pool);
    free(spm->offset);
    free(spm->length);
    free(spm->score);
    free(spm->type);
    free(spm->normal.slots);
    free(spm->reserved.slots);
    free(spm->trie);
    free(spm->normalizer_name);
    free(spm);
}

/* ------------------------------------------------------------------------------------------ */
/* Step 1 of encoding: normalization (normalizer.cc Normalize without a charsmap)             */
/* ------------------------------------------------------------------------------------------ */

/* Growable byte buffer sized up front for the worst case. */
typedef struct spm_text {
    char *data;
    size_t length;
} spm_text;

/*
 * One normalization step (NormalizePrefix): a user-defined piece is copied whole, a
 * well-formed character is copied, and a malformed byte becomes U+FFFD. Sets *piece and
 * *piece_length to the output bytes and returns the number of input bytes consumed.
 */
static size_t normalize_prefix(const qref_spm *spm, const char *input, size_t length,
                               const char **piece, size_t *piece_length)
{
    size_t matched = trie_longest_match(spm, input, length);
    if (matched > 0) {
        *piece = input;
        *piece_length = matched;
        return matched;
    }
    size_t char_length = utf8_decode_length((const uint8_t *)input, length);
    if (char_length == 0) {
        *piece = SPM_REPLACEMENT;
        *piece_length = 3;
        return 1;
    }
    *piece = input;
    *piece_length = char_length;
    return char_length;
}

static void text_append(spm_text *text, const char *bytes, size_t length)
{
    memcpy(text->data + text->length, bytes, length);
    text->length += length;
}

static void append_space(const qref_spm *spm, spm_text *text)
{
    if (spm->escape_whitespaces)
        text_append(text, SPM_SPACE_SYMBOL, 3);
    else
        text_append(text, " ", 1);
}

/* Normalizes input into out->data, which has room for at least 3 * length + 3 bytes. */
static void normalize(const qref_spm *spm, const char *input, size_t length, spm_text *out)
{
    out->length = 0;
    size_t pos = 0;
    const char *piece = NULL;
    size_t piece_length = 0;

    /* Leading spaces are dropped before anything is written. */
    if (spm->remove_extra_whitespaces) {
        while (pos < length) {
            size_t consumed = normalize_prefix(spm, input + pos, length - pos, &piece,
                                               &piece_length);
            if (piece_length != 1 || piece[0] != ' ')
                break;
            pos += consumed;
        }
    }
    if (pos == length)
        return; /* empty, or spaces only */

    if (spm->add_dummy_prefix && !spm->treat_whitespace_as_suffix)
        append_space(spm, out);

    /* Copy the text; a space that follows a space is dropped when removing extra spaces. */
    bool previous_is_space = spm->remove_extra_whitespaces;
    while (pos < length) {
        size_t consumed = normalize_prefix(spm, input + pos, length - pos, &piece, &piece_length);
        while (previous_is_space && piece_length > 0 && piece[0] == ' ') {
            piece++;
            piece_length--;
        }
        if (piece_length > 0) {
            for (size_t i = 0; i < piece_length; i++) {
                if (piece[i] == ' ')
                    append_space(spm, out);
                else
                    out->data[out->length++] = piece[i];
            }
            previous_is_space = piece[piece_length - 1] == ' ';
        }
        pos += consumed;
        if (!spm->remove_extra_whitespaces)
            previous_is_space = false;
    }

    /* Trailing spaces (escaped or not) are dropped. */
    if (spm->remove_extra_whitespaces) {
        const char *space = spm->escape_whitespaces ? SPM_SPACE_SYMBOL : " ";
        size_t space_length = spm->escape_whitespaces ? 3 : 1;
        while (out->length >= space_length &&
               memcmp(out->data + out->length - space_length, space, space_length) == 0)
            out->length -= space_length;
    }

    if (spm->add_dummy_prefix && spm->treat_whitespace_as_suffix)
        append_space(spm, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Steps 2-4 of encoding: symbols, BPE merges, resegmentation (bpe_model.cc)                  */
/* ------------------------------------------------------------------------------------------ */

/* A candidate merge of the adjacent symbols left and right into a piece of size bytes. */
typedef struct spm_pair {
    float score;
    int32_t left;
    int32_t right;
    uint32_t size;
} spm_pair;

/* Max-heap of candidate merges: higher score first, then the leftmost pair. */
typedef struct spm_heap {
    spm_pair *items;
    size_t count;
    size_t capacity;
} spm_heap;

static bool pair_before(const spm_pair *a, const spm_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool heap_push(spm_heap *heap, spm_pair pair)
{
    if (heap->count == heap->capacity) {
        size_t capacity = heap->capacity == 0 ? 256 : heap->capacity * 2;
        spm_pair *items = realloc(heap->items, capacity * sizeof *items);
        if (items == NULL)
            return false;
        heap->items = items;
        heap->capacity = capacity;
    }
    size_t i = heap->count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&pair, &heap->items[parent]))
            break;
        heap->items[i] = heap->items[parent];
        i = parent;
    }
    heap->items[i] = pair;
    return true;
}

static spm_pair heap_pop(spm_heap *heap)
{
    spm_pair top = heap->items[0];
    spm_pair last = heap->items[--heap->count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap->count)
            break;
        if (child + 1 < heap->count && pair_before(&heap->items[child + 1], &heap->items[child]))
            child++;
        if (!pair_before(&heap->items[child], &last))
            break;
        heap->items[i] = heap->items[child];
        i = child;
    }
    if (heap->count > 0)
        heap->items[i] = last;
    return top;
}

/*
 * Reverse merges of UNUSED pieces (rev_merge in bpe_model.cc): for each UNUSED piece string
 * formed as a candidate, the last two parts it was formed from. Keys and values are spans of
 * the normalized text.
 */
typedef struct spm_split {
    uint32_t start;       /* key: the merged piece */
    uint32_t length;
    uint32_t left_length; /* value: left part [start, start + left_length), right part after it */
} spm_split;

typedef struct spm_splits {
    spm_split *items;
    int32_t *slots;
    size_t count;
    size_t mask;
} spm_splits;

/* Linked list of symbols over the normalized text, with the merge agenda. */
typedef struct spm_merger {
    const qref_spm *spm;
    const char *text;
    int32_t *prev;
    int32_t *next;
    uint32_t *start;
    uint32_t *length; /* 0 once merged into its left neighbour */
    bool *frozen;     /* user-defined symbols never merge */
    spm_heap heap;
    spm_splits splits;
} spm_merger;

static int32_t splits_find(const spm_merger *merger, const char *bytes, size_t length)
{
    const spm_splits *splits = &merger->splits;
    if (splits->slots == NULL)
        return -1;
    size_t slot = (size_t)hash_bytes(bytes, length) & splits->mask;
    while (splits->slots[slot] >= 0) {
        const spm_split *split = &splits->items[splits->slots[slot]];
        if (split->length == length && memcmp(merger->text + split->start, bytes, length) == 0)
            return splits->slots[slot];
        slot = (slot + 1) & splits->mask;
    }
    return -1;
}

/* Records (or overwrites) the split of the piece at [start, start + length). */
static bool splits_store(spm_merger *merger, uint32_t start, uint32_t length, uint32_t left_length)
{
    spm_splits *splits = &merger->splits;
    int32_t index = splits_find(merger, merger->text + start, length);
    if (index >= 0) {
        splits->items[index] = (spm_split){start, length, left_length};
        return true;
    }
    /* Grow at half load: items and slots are rebuilt together. */
    if (splits->slots == NULL || 2 * (splits->count + 1) > splits->mask + 1) {
        size_t capacity = splits->slots == NULL ? 64 : 2 * (splits->mask + 1);
        int32_t *slots = malloc(capacity * sizeof *slots);
        spm_split *items = realloc(splits->items, capacity / 2 * sizeof *items);
        if (slots == NULL || items == NULL) {
            free(slots);
            if (items != NULL)
                splits->items = items;
            return false;
        }
        splits->items = items;
        memset(slots, 0xff, capacity * sizeof *slots);
        free(splits->slots);
        splits->slots = slots;
        splits->mask = capacity - 1;
        for (size_t i = 0; i < splits->count; i++) {
            size_t slot = (size_t)hash_bytes(merger->text + items[i].start, items[i].length) &
                          splits->mask;
            while (splits->slots[slot] >= 0)
                slot = (slot + 1) & splits->mask;
            splits->slots[slot] = (int32_t)i;
        }
    }
    size_t slot = (size_t)hash_bytes(merger->text + start, length) & splits->mask;
    while (splits->slots[slot] >= 0)
        slot = (slot + 1) & splits->mask;
    splits->items[splits->count] = (spm_split){start, length, left_length};
    splits->slots[slot] = (int32_t)splits->count++;
    return true;
}

/* Queues the merge of left and right when their concatenation is a piece (MaybeAddNewSymbolPair). */
static bool merger_consider(spm_merger *merger, int32_t left, int32_t right)
{
    if (left < 0 || right < 0 || merger->frozen[left] || merger->frozen[right])
        return true;
    uint32_t size = merger->length[left] + merger->length[right];
    if (size > merger->spm->max_normal_length)
        return true;
    const char *bytes = merger->text + merger->start[left];
    int32_t id = table_find(merger->spm, &merger->spm->normal, bytes, size);
    if (id < 0)
        return true;
    if (!heap_push(&merger->heap, (spm_pair){merger->spm->score[id], left, right, size}))
        return false;
    if (merger->spm->type[id] == QREF_SPM_PIECE_UNUSED)
        return splits_store(merger, merger->start[left], size, merger->length[left]);
    return true;
}

/* True when symbol index is a single isolated byte, which ends a merge segment. */
static bool symbol_is_isolated(const spm_merger *merger, int32_t index)
{
    uint8_t byte = (uint8_t)merger->text[merger->start[index]];
    return merger->length[index] == 1 && byte < 128 && merger->spm->isolated[byte];
}

static void merger_free(spm_merger *merger)
{
    free(merger->prev);
    free(merger->next);
    free(merger->start);
    free(merger->length);
    free(merger->frozen);
    free(merger->heap.items);
    free(merger->splits.items);
    free(merger->splits.slots);
}

/* A piece of the encoder output: an id and its span of the normalized text. */
typedef struct spm_token {
    int32_t id;
    uint32_t start;
    uint32_t length;
} spm_token;

typedef struct spm_tokens {
    spm_token *items;
    size_t count;
    size_t capacity;
} spm_tokens;

static bool tokens_push(spm_tokens *tokens, spm_token token)
{
    if (tokens->count == tokens->capacity) {
        size_t capacity = tokens->capacity == 0 ? 64 : tokens->capacity * 2;
        spm_token *items = realloc(tokens->items, capacity * sizeof *items);
        if (items == NULL)
            return false;
        tokens->items = items;
        tokens->capacity = capacity;
    }
    tokens->items[tokens->count++] = token;
    return true;
}

/*
 * Runs the BPE merges over the normalized text and appends the resulting pieces to out, each
 * with the id PieceToId gives it (UNUSED pieces already split back into their parts).
 */
static qref_status merge_symbols(const qref_spm *spm, const spm_text *text, spm_tokens *out,
                                 qref_error *err)
{
    if (text->length == 0)
        return QREF_OK;

    spm_merger merger = {.spm = spm, .text = text->data};
    size_t capacity = text->length;
    merger.prev = malloc(capacity * sizeof *merger.prev);
    merger.next = malloc(capacity * sizeof *merger.next);
    merger.start = malloc(capacity * sizeof *merger.start);
    merger.length = malloc(capacity * sizeof *merger.length);
    merger.frozen = malloc(capacity * sizeof *merger.frozen);
    if (merger.prev == NULL || merger.next == NULL || merger.start == NULL ||
        merger.length == NULL || merger.frozen == NULL) {
        merger_free(&merger);
        return qref_error_set(err, QREF_ERR_NOMEM,
                              "out of memory for %zu bytes of normalized text", text->length);
    }

    /* Split into characters, keeping user-defined pieces whole (PrefixMatcher::PrefixMatch). */
    int32_t symbol_count = 0;
    size_t pos = 0;
    while (pos < text->length) {
        size_t remaining = text->length - pos;
        size_t matched = trie_longest_match(spm, text->data + pos, remaining);
        size_t symbol_length = matched;
        if (matched == 0) {
            symbol_length = utf8_char_length((uint8_t)text->data[pos]);
            if (symbol_length > remaining)
                symbol_length = remaining;
        }
        int32_t index = symbol_count++;
        merger.prev[index] = index - 1;
        merger.start[index] = (uint32_t)pos;
        merger.length[index] = (uint32_t)symbol_length;
        merger.frozen[index] = matched > 0;
        pos += symbol_length;
        merger.next[index] = pos < text->length ? index + 1 : -1;
    }

    /*
     * Merge segment by segment. A symbol that is an isolated byte (a newline in the LLaMA
     * vocabularies) never merges, so the merges on its two sides never interact. One agenda
     * per segment therefore applies the same merges as one agenda over the whole text, with a
     * much smaller heap. The split is skipped when UNUSED pieces exist, because their recorded
     * splits depend on the global order of candidates.
     */
    bool ok = true;
    int32_t segment_begin = 0;
    while (ok && segment_begin < symbol_count) {
        int32_t segment_end = segment_begin + 1;
        while (!spm->has_unused && segment_end < symbol_count &&
               !symbol_is_isolated(&merger, segment_end - 1))
            segment_end++;
        if (spm->has_unused)
            segment_end = symbol_count;

        /* Queue every adjacent pair of the segment that forms a piece. */
        for (int32_t i = segment_begin + 1; i < segment_end && ok; i++)
            ok = merger_consider(&merger, i - 1, i);

        /* Apply the best merge until none is left; skip entries made stale by earlier merges. */
        while (ok && merger.heap.count > 0) {
            spm_pair top = heap_pop(&merger.heap);
            uint32_t left_length = merger.length[top.left];
            uint32_t right_length = merger.length[top.right];
            if (left_length == 0 || right_length == 0 || left_length + right_length != top.size)
                continue;
            merger.length[top.left] = top.size;
            int32_t after = merger.next[top.right];
            merger.next[top.left] = after;
            if (after >= 0)
                merger.prev[after] = top.left;
            merger.length[top.right] = 0;
            ok = merger_consider(&merger, merger.prev[top.left], top.left) &&
                 merger_consider(&merger, top.left, merger.next[top.left]);
        }
        segment_begin = segment_end;
    }

    /* Emit the symbols left to right; split UNUSED pieces back into their recorded parts. */
    spm_token *stack = NULL;
    size_t stack_capacity = 0;
    for (int32_t index = 0; ok && index >= 0; index = merger.next[index]) {
        size_t depth = 0;
        if (stack_capacity == 0) {
            stack_capacity = 64;
            stack = malloc(stack_capacity * sizeof *stack);
            ok = stack != NULL;
            if (!ok)
                break;
        }
        stack[depth++] = (spm_token){-1, merger.start[index], merger.length[index]};
        while (ok && depth > 0) {
            spm_token piece = stack[--depth];
            const char *bytes = text->data + piece.start;
            int32_t id = piece_to_id(spm, bytes, piece.length);
            int32_t split = spm->type[id] == QREF_SPM_PIECE_UNUSED
                                ? splits_find(&merger, bytes, piece.length) : -1;
            if (split < 0) {
                piece.id = id;
                ok = tokens_push(out, piece);
                continue;
            }
            if (depth + 2 > stack_capacity) {
                spm_token *grown = realloc(stack, 2 * stack_capacity * sizeof *stack);
                ok = grown != NULL;
                if (!ok)
                    break;
                stack = grown;
                stack_capacity *= 2;
            }
            /* The parts are recorded as lengths, so they apply at this occurrence too. */
            uint32_t left = merger.splits.items[split].left_length;
            stack[depth++] = (spm_token){-1, piece.start + left, piece.length - left};
            stack[depth++] = (spm_token){-1, piece.start, left};
        }
    }
    free(stack);
    merger_free(&merger);
    if (!ok)
        return qref_error_set(err, QREF_ERR_NOMEM,
                              "out of memory while merging %zu bytes of normalized text",
                              text->length);
    return QREF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Step 5 of encoding: ids (PopulateSentencePieceText), and the public entry points           */
/* ------------------------------------------------------------------------------------------ */

/*
 * Replaces unknown pieces: with byte_fallback each becomes one BYTE piece per byte, otherwise
 * a run of unknown pieces becomes one. A CONTROL piece in the output is an error, as the
 * library reports it ("all normalized characters are not consumed").
 */
static qref_status map_unknown(const qref_spm *spm, const spm_text *text, const spm_tokens *merged,
                               spm_tokens *out, qref_error *err)
{
    bool previous_unknown = false;
    for (size_t i = 0; i < merged->count; i++) {
        spm_token token = merged->items[i];
        uint8_t type = spm->type[token.id];
        bool unknown = type == QREF_SPM_PIECE_UNKNOWN;
        bool ok = true;
        if (type == QREF_SPM_PIECE_CONTROL) {
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: the text contains \"%.*s\", which is the CONTROL piece %d; "
                                  "the SentencePiece library rejects such text",
                                  spm->display, (int)token.length, text->data + token.start,
                                  token.id);
        } else if (unknown && spm->byte_fallback) {
            for (uint32_t b = 0; b < token.length && ok; b++) {
                uint8_t byte = (uint8_t)text->data[token.start + b];
                ok = tokens_push(out, (spm_token){spm->byte_ids[byte], token.start + b, 1});
            }
        } else if (unknown && previous_unknown) {
            out->items[out->count - 1].length += token.length;
        } else {
            ok = tokens_push(out, token);
        }
        if (!ok)
            return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for %zu tokens",
                                  merged->count);
        previous_unknown = unknown;
    }
    return QREF_OK;
}

/* Normalizes, merges and maps text; out receives the tokens (spans of norm). */
static qref_status encode_tokens(const qref_spm *spm, const char *text, size_t length,
                                 spm_text *norm, spm_tokens *out, qref_error *err)
{
    memset(norm, 0, sizeof *norm);
    memset(out, 0, sizeof *out);
    /* Every offset into the normalized text (up to 3 bytes per input byte) fits in int32_t. */
    if (length > (size_t)(INT32_MAX - 16) / 3)
        return qref_error_set(err, QREF_ERR_NOMEM,
                              "%s: text of %zu bytes exceeds the encoder limit of %d bytes",
                              spm->display, length, (INT32_MAX - 16) / 3);
    norm->data = malloc(3 * length + 8);
    if (norm->data == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for %zu bytes of text", length);
    normalize(spm, text, length, norm);

    spm_tokens merged = {0};
    qref_status status = merge_symbols(spm, norm, &merged, err);
    if (status == QREF_OK)
        status = map_unknown(spm, norm, &merged, out, err);
    free(merged.items);
    if (status != QREF_OK) {
        free(norm->data);
        free(out->items);
        memset(norm, 0, sizeof *norm);
        memset(out, 0, sizeof *out);
    }
    return status;
}

qref_status qref_spm_encode(const qref_spm *spm, const char *text, size_t length, bool add_bos,
                            int32_t **ids, size_t *count, qref_error *err)
{
    *ids = NULL;
    *count = 0;
    if (add_bos && spm->bos_id < 0)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: BOS requested but the model has no BOS piece (trainer_spec "
                              "bos_piece is not a CONTROL piece)",
                              spm->display);

    spm_text norm;
    spm_tokens tokens;
    qref_status status = encode_tokens(spm, text, length, &norm, &tokens, err);
    if (status != QREF_OK)
        return status;

    size_t total = tokens.count + (add_bos ? 1 : 0);
    int32_t *result = malloc((total > 0 ? total : 1) * sizeof *result);
    if (result == NULL) {
        free(norm.data);
        free(tokens.items);
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for %zu ids", total);
    }
    size_t n = 0;
    if (add_bos)
        result[n++] = spm->bos_id;
    for (size_t i = 0; i < tokens.count; i++)
        result[n++] = tokens.items[i].id;
    free(norm.data);
    free(tokens.items);
    *ids = result;
    *count = total;
    return QREF_OK;
}

/*
 * Runs the model's SelfTestData samples as the library does at load: each input is encoded
 * to piece strings, joined with single spaces, and compared with the expected string.
 */
static qref_status run_self_test(const qref_spm *spm, const uint8_t *data, size_t size,
                                 size_t base, size_t index, qref_error *err)
{
    char path[QREF_PB_PATH_MAX];
    snprintf(path, sizeof path, "ModelProto.self_test_data[%zu]", index);
    qref_pb_reader reader;
    qref_pb_reader_init(&reader, spm->display, path, data, size, base);

    qref_pb_field field;
    bool has_field = false;
    for (;;) {
        qref_status status = qref_pb_next_field(&reader, &field, &has_field, err);
        if (status != QREF_OK)
            return status;
        if (!has_field)
            return QREF_OK;
        if (field.number != 1)
            continue;
        status = qref_pb_expect_wire(&reader, &field, "samples", QREF_PB_WIRE_LEN, err);
        if (status != QREF_OK)
            return status;

        /* Sample: input (1) and expected (2). */
        qref_pb_reader sample;
        qref_pb_reader_init_sub(&sample, &reader, &field, "SelfTestData.samples");
        const uint8_t *input = (const uint8_t *)"", *expected = (const uint8_t *)"";
        size_t input_length = 0, expected_length = 0;
        qref_pb_field part;
        for (;;) {
            status = qref_pb_next_field(&sample, &part, &has_field, err);
            if (status != QREF_OK)
                return status;
            if (!has_field)
                break;
            if (part.number == 1)
                status = qref_pb_read_bytes(&sample, &part, "input", &input, &input_length, err);
            else if (part.number == 2)
                status = qref_pb_read_bytes(&sample, &part, "expected", &expected,
                                            &expected_length, err);
            if (status != QREF_OK)
                return status;
        }

        spm_text norm;
        spm_tokens tokens;
        status = encode_tokens(spm, (const char *)input, input_length, &norm, &tokens, err);
        if (status != QREF_OK)
            return status;
        /* Compare piece by piece without building the joined string. */
        size_t at = 0;
        bool equal = true;
        for (size_t i = 0; i < tokens.count && equal; i++) {
            const spm_token *token = &tokens.items[i];
            const char *piece = norm.data + token->start;
            size_t piece_length = token->length;
            if (spm->type[token->id] == QREF_SPM_PIECE_BYTE) {
                piece = spm->pool + spm->offset[token->id];
                piece_length = spm->length[token->id];
            }
            if (i > 0)
                equal = at < expected_length && expected[at++] == ' ';
            equal = equal && expected_length - at >= piece_length &&
                    memcmp(expected + at, piece, piece_length) == 0;
            at += piece_length;
        }
        equal = equal && at == expected_length;
        free(norm.data);
        free(tokens.items);
        if (!equal)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s: self-test sample \"%.*s\" does not encode to the "
                                  "expected pieces \"%.*s\"",
                                  spm->display, path, (int)(input_length > 200 ? 200 : input_length),
                                  (const char *)input,
                                  (int)(expected_length > 200 ? 200 : expected_length),
                                  (const char *)expected);
    }
}

static qref_status run_self_tests(const qref_spm *spm, const spm_proto *proto, qref_error *err)
{
    for (size_t i = 0; i < proto->self_test_count; i++) {
        qref_status status = run_self_test(spm, proto->self_tests[i], proto->self_test_lengths[i],
                                           proto->self_test_offsets[i], i, err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding and accessors                                                                     */
/* ------------------------------------------------------------------------------------------ */

qref_status qref_spm_decode(const qref_spm *spm, const int32_t *ids, size_t count, char **text,
                            size_t *length, qref_error *err)
{
    *text = NULL;
    *length = 0;
    /* Each piece is under 8000 bytes; the unknown surface is 5 bytes. */
    size_t capacity = 1;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] < 0 || ids[i] >= spm->count)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: id %d at position %zu is out of range, expected 0 to %d",
                                  spm->display, ids[i], i, spm->count - 1);
        capacity += spm->length[ids[i]] + 5;
    }
    char *out = malloc(capacity);
    if (out == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory for %zu bytes", capacity);

    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        int32_t id = ids[i];
        const char *piece = spm->pool + spm->offset[id];
        size_t piece_length = spm->length[id];
        switch ((qref_spm_piece_type)spm->type[id]) {
        case QREF_SPM_PIECE_CONTROL:
            break;
        case QREF_SPM_PIECE_UNKNOWN:
            memcpy(out + n, " \xe2\x81\x87 ", 5);
            n += 5;
            break;
        case QREF_SPM_PIECE_BYTE:
            out[n++] = (char)parse_byte_piece(piece, piece_length);
            break;
        default:
            for (size_t j = 0; j < piece_length;) {
                if (piece_length - j >= 3 && memcmp(piece + j, SPM_SPACE_SYMBOL, 3) == 0) {
                    out[n++] = ' ';
                    j += 3;
                } else {
                    out[n++] = piece[j++];
                }
            }
            break;
        }
    }
    size_t skip = spm->add_dummy_prefix && n > 0 && out[0] == ' ' ? 1 : 0;
    memmove(out, out + skip, n - skip);
    n -= skip;
    out[n] = '\0';
    *text = out;
    *length = n;
    return QREF_OK;
}

int32_t qref_spm_vocab_size(const qref_spm *spm) { return spm->count; }
int32_t qref_spm_bos_id(const qref_spm *spm) { return spm->bos_id; }
int32_t qref_spm_eos_id(const qref_spm *spm) { return spm->eos_id; }
int32_t qref_spm_unk_id(const qref_spm *spm) { return spm->unk_id; }
int32_t qref_spm_pad_id(const qref_spm *spm) { return spm->pad_id; }

const char *qref_spm_piece(const qref_spm *spm, int32_t id, size_t *length)
{
    if (id < 0 || id >= spm->count)
        return NULL;
    if (length != NULL)
        *length = spm->length[id];
    return spm->pool + spm->offset[id];
}

float qref_spm_piece_score(const qref_spm *spm, int32_t id)
{
    return id >= 0 && id < spm->count ? spm->score[id] : 0.0f;
}

qref_spm_piece_type qref_spm_piece_type_of(const qref_spm *spm, int32_t id)
{
    return id >= 0 && id < spm->count ? (qref_spm_piece_type)spm->type[id] : 0;
}

const char *qref_spm_normalizer_name(const qref_spm *spm) { return spm->normalizer_name; }
bool qref_spm_add_dummy_prefix(const qref_spm *spm) { return spm->add_dummy_prefix; }
bool qref_spm_remove_extra_whitespaces(const qref_spm *spm) { return spm->remove_extra_whitespaces; }
bool qref_spm_escape_whitespaces(const qref_spm *spm) { return spm->escape_whitespaces; }
bool qref_spm_byte_fallback(const qref_spm *spm) { return spm->byte_fallback; }
