/*
 * llama.cpp's SentencePiece-style encoder over a GGUF vocabulary; see qref_spm_llamacpp.h for
 * the steps and the source.
 *
 * The vocabulary is one byte buffer of token texts with an open-addressing hash index from
 * text to id. Encoding keeps the symbols of one fragment as a doubly linked list over the
 * fragment's bytes, and the candidate merges in a binary heap ordered as llama.cpp's
 * llm_bigram_spm::comparator orders its std::priority_queue (score descending, then left
 * index ascending). An entry whose symbols changed since it was queued is skipped when
 * popped, as there.
 */
#include "model/qref_spm_llamacpp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SPACE_SYMBOL[] = "\xe2\x96\x81"; /* U+2581, written for every space */

struct qref_spm_llamacpp {
    char *display;
    int32_t count;
    char *texts;             /* all token texts back to back */
    size_t *offsets;         /* [count + 1]: token i is texts[offsets[i] .. offsets[i + 1]) */
    float *scores;           /* [count] */
    uint8_t *types;          /* [count] */
    int32_t bos_id, eos_id, unk_id;
    bool add_bos, add_eos, add_space_prefix;
    int32_t *slots;          /* hash index: id + 1, or 0 for an empty slot */
    size_t slot_count;       /* a power of two, at least twice count */
    int32_t *specials;       /* USER_DEFINED ids, longest text first, then lowest id */
    size_t special_count;
    int32_t byte_ids[256];   /* step 5's token for each byte, or -1 */
};

/* ---- vocabulary index ---------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *bytes, size_t length)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < length; i++) {
        h ^= (uint8_t)bytes[i];
        h *= 1099511628211ull;
    }
    return h;
}

static size_t token_length(const qref_spm_llamacpp *spm, int32_t id)
{
    return spm->offsets[id + 1] - spm->offsets[id];
}

static bool token_equals(const qref_spm_llamacpp *spm, int32_t id, const char *bytes, size_t length)
{
    return token_length(spm, id) == length && memcmp(spm->texts + spm->offsets[id], bytes, length) == 0;
}

int32_t qref_spm_llamacpp_token_id(const qref_spm_llamacpp *spm, const char *bytes, size_t length)
{
    size_t mask = spm->slot_count - 1;
    for (size_t slot = (size_t)hash_bytes(bytes, length) & mask;; slot = (slot + 1) & mask) {
        int32_t entry = spm->slots[slot];
        if (entry == 0)
            return -1;
        if (token_equals(spm, entry - 1, bytes, length))
            return entry - 1;
    }
}

/* Indexes id; a text already indexed now maps to id, so the last duplicate wins. */
static void index_insert(qref_spm_llamacpp *spm, int32_t id)
{
    const char *bytes = spm->texts + spm->offsets[id];
    size_t length = token_length(spm, id);
    size_t mask = spm->slot_count - 1;
    for (size_t slot = (size_t)hash_bytes(bytes, length) & mask;; slot = (slot + 1) & mask) {
        int32_t entry = spm->slots[slot];
        if (entry == 0 || token_equals(spm, entry - 1, bytes, length)) {
            spm->slots[slot] = id + 1;
            return;
        }
    }
}

/* A USER_DEFINED token with its text length, for sorting. */
typedef struct special_entry {
    size_t length;
    int32_t id;
} special_entry;

/* Longer USER_DEFINED texts are cut out first; equal lengths go by id, so the order is fixed. */
static int compare_specials(const void *a, const void *b)
{
    const special_entry *x = a, *y = b;
    if (x->length != y->length)
        return x->length > y->length ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

static qref_status check_special_id(const char *display, const char *name, int32_t id, size_t count,
                                    qref_error *err)
{
    if (id < -1 || (id >= 0 && (size_t)id >= count))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s %d is outside the vocabulary of %zu tokens",
                              display, name, id, count);
    return QREF_OK;
}

qref_status qref_spm_llamacpp_load(const qref_spm_llamacpp_vocab *vocab, qref_spm_llamacpp **out,
                                   qref_error *err)
{
    *out = NULL;
    const char *display = vocab->display != NULL ? vocab->display : "vocabulary";
    if (vocab->token_count == 0 || vocab->token_count > (size_t)INT32_MAX / 4)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %zu tokens, expected 1 to %d", display,
                              vocab->token_count, INT32_MAX / 4);
    size_t count = vocab->token_count;
    qref_status status = check_special_id(display, "bos_token_id", vocab->bos_id, count, err);
    if (status == QREF_OK)
        status = check_special_id(display, "eos_token_id", vocab->eos_id, count, err);
    if (status == QREF_OK)
        status = check_special_id(display, "unknown_token_id", vocab->unk_id, count, err);
    if (status != QREF_OK)
        return status;

    /* 1. copy the arrays, checking types and scores */
    qref_spm_llamacpp *spm = calloc(1, sizeof *spm);
    if (spm == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    spm->count = (int32_t)count;
    spm->bos_id = vocab->bos_id;
    spm->eos_id = vocab->eos_id;
    spm->unk_id = vocab->unk_id;
    spm->add_bos = vocab->add_bos;
    spm->add_eos = vocab->add_eos;
    spm->add_space_prefix = vocab->add_space_prefix;
    spm->display = strdup(display);
    spm->offsets = malloc((count + 1) * sizeof *spm->offsets);
    spm->scores = malloc(count * sizeof *spm->scores);
    spm->types = malloc(count);
    spm->slot_count = 1;
    while (spm->slot_count < 2 * count)
        spm->slot_count <<= 1;
    spm->slots = calloc(spm->slot_count, sizeof *spm->slots);
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += vocab->token_lengths != NULL ? vocab->token_lengths[i] : strlen(vocab->tokens[i]);
    spm->texts = malloc(total + 1);
    if (spm->display == NULL || spm->offsets == NULL || spm->scores == NULL || spm->types == NULL ||
        spm->slots == NULL || spm->texts == NULL) {
        qref_spm_llamacpp_free(spm);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu tokens", display, count);
    }
    size_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        size_t length = vocab->token_lengths != NULL ? vocab->token_lengths[i] : strlen(vocab->tokens[i]);
        memcpy(spm->texts + offset, vocab->tokens[i], length);
        spm->offsets[i] = offset;
        offset += length;
        float score = vocab->scores != NULL ? vocab->scores[i] : 0.0f;
        int32_t type = vocab->token_types != NULL ? vocab->token_types[i] : QREF_SPM_LLAMACPP_TOKEN_NORMAL;
        if (!isfinite(score)) {
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: scores[%zu] = %g, expected a finite number",
                                    display, i, (double)score);
            break;
        }
        if (type < QREF_SPM_LLAMACPP_TOKEN_NORMAL || type > QREF_SPM_LLAMACPP_TOKEN_BYTE) {
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: token_type[%zu] = %d, expected 1 to 6", display,
                                    i, type);
            break;
        }
        spm->scores[i] = score;
        spm->types[i] = (uint8_t)type;
        if (type == QREF_SPM_LLAMACPP_TOKEN_USER_DEFINED && length > 0)
            spm->special_count++;
    }
    spm->offsets[count] = offset;
    if (status != QREF_OK) {
        qref_spm_llamacpp_free(spm);
        return status;
    }

    /* 2. the text index, the USER_DEFINED list and the byte tokens */
    for (int32_t id = 0; id < spm->count; id++)
        index_insert(spm, id);
    if (spm->special_count > 0) {
        spm->specials = malloc(spm->special_count * sizeof *spm->specials);
        if (spm->specials == NULL) {
            qref_spm_llamacpp_free(spm);
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
        }
        special_entry *entries = malloc(spm->special_count * sizeof *entries);
        if (entries == NULL) {
            qref_spm_llamacpp_free(spm);
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
        }
        size_t k = 0;
        for (int32_t id = 0; id < spm->count; id++)
            if (spm->types[id] == QREF_SPM_LLAMACPP_TOKEN_USER_DEFINED && token_length(spm, id) > 0)
                entries[k++] = (special_entry){token_length(spm, id), id};
        qsort(entries, spm->special_count, sizeof *entries, compare_specials);
        for (k = 0; k < spm->special_count; k++)
            spm->specials[k] = entries[k].id;
        free(entries);
    }
    for (int byte = 0; byte < 256; byte++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", byte);
        int32_t id = qref_spm_llamacpp_token_id(spm, name, 6);
        if (id < 0) {
            char single = (char)byte;
            id = qref_spm_llamacpp_token_id(spm, &single, 1);
        }
        spm->byte_ids[byte] = id;
    }
    *out = spm;
    return QREF_OK;
}

void qref_spm_llamacpp_free(qref_spm_llamacpp *spm)
{
    if (spm == NULL)
        return;
    free(spm->display);
    free(spm->texts);
    free(spm->offsets);
    free(spm->scores);
    free(spm->types);
    free(spm->slots);
    free(spm->specials);
    free(spm);
}

/* ---- growing buffers ---------------------------------------------------------------------- */

typedef struct id_list {
    int32_t *items;
    size_t count, capacity;
} id_list;

static bool id_list_push(id_list *list, int32_t id)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 256;
        int32_t *items = realloc(list->items, capacity * sizeof *items);
        if (items == NULL)
            return false;
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = id;
    return true;
}

/* ---- step 1: USER_DEFINED tokens cut out of the text -------------------------------------- */

/* A piece of the text: raw bytes [offset, offset + length), or a token (token >= 0). */
typedef struct fragment {
    size_t offset, length;
    int32_t token;
} fragment;

typedef struct fragment_list {
    fragment *items;
    size_t count, capacity;
} fragment_list;

static bool fragment_push(fragment_list *list, fragment item)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 16;
        fragment *items = realloc(list->items, capacity * sizeof *items);
        if (items == NULL)
            return false;
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = item;
    return true;
}

/* Offset of the first occurrence of needle in haystack[from, end), or end. */
static size_t find_bytes(const char *haystack, size_t from, size_t end, const char *needle, size_t length)
{
    for (size_t i = from; i + length <= end; i++)
        if (haystack[i] == needle[0] && memcmp(haystack + i, needle, length) == 0)
            return i;
    return end;
}

/* Splits the raw fragments of *list at every occurrence of each USER_DEFINED token, in order. */
static bool partition_specials(const qref_spm_llamacpp *spm, const char *text, fragment_list *list)
{
    for (size_t s = 0; s < spm->special_count; s++) {
        int32_t id = spm->specials[s];
        const char *needle = spm->texts + spm->offsets[id];
        size_t needle_length = token_length(spm, id);
        fragment_list next = {0};
        for (size_t f = 0; f < list->count; f++) {
            fragment piece = list->items[f];
            if (piece.token >= 0) {
                if (!fragment_push(&next, piece))
                    goto nomem;
                continue;
            }
            size_t start = piece.offset, end = piece.offset + piece.length;
            for (;;) {
                size_t match = find_bytes(text, start, end, needle, needle_length);
                if (match == end)
                    break;
                if (match > start && !fragment_push(&next, (fragment){start, match - start, -1}))
                    goto nomem;
                if (!fragment_push(&next, (fragment){match, needle_length, id}))
                    goto nomem;
                start = match + needle_length;
            }
            if (end > start && !fragment_push(&next, (fragment){start, end - start, -1}))
                goto nomem;
            continue;
        nomem:
            free(next.items);
            return false;
        }
        free(list->items);
        *list = next;
    }
    return true;
}

/* ---- steps 3-5: one fragment through the bigram merges ------------------------------------ */

typedef struct symbol {
    int32_t prev, next; /* neighbours in the list, -1 at the ends */
    size_t start, length; /* bytes of the escaped fragment; length 0 once merged away */
} symbol;

typedef struct bigram {
    int32_t left, right;
    float score;
    size_t size; /* bytes of the merged text when queued */
} bigram;

typedef struct bigram_heap {
    bigram *items;
    size_t count, capacity;
} bigram_heap;

/* a pops before b: higher score, then the leftmost pair (llm_bigram_spm::comparator). */
static bool bigram_before(const bigram *a, const bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool heap_push(bigram_heap *heap, bigram item)
{
    if (heap->count == heap->capacity) {
        size_t capacity = heap->capacity ? 2 * heap->capacity : 256;
        bigram *items = realloc(heap->items, capacity * sizeof *items);
        if (items == NULL)
            return false;
        heap->items = items;
        heap->capacity = capacity;
    }
    size_t i = heap->count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&item, &heap->items[parent]))
            break;
        heap->items[i] = heap->items[parent];
        i = parent;
    }
    heap->items[i] = item;
    return true;
}

static bigram heap_pop(bigram_heap *heap)
{
    bigram top = heap->items[0];
    bigram last = heap->items[--heap->count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap->count)
            break;
        if (child + 1 < heap->count && bigram_before(&heap->items[child + 1], &heap->items[child]))
            child++;
        if (!bigram_before(&heap->items[child], &last))
            break;
        heap->items[i] = heap->items[child];
        i = child;
    }
    if (heap->count > 0)
        heap->items[i] = last;
    return top;
}

typedef struct session {
    const qref_spm_llamacpp *spm;
    const char *text; /* the escaped fragment */
    symbol *symbols;
    bigram_heap heap;
} session;

/* Queues the merge of symbols left and right when their concatenation is a vocabulary entry. */
static bool try_add_bigram(session *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return true;
    size_t size = s->symbols[left].length + s->symbols[right].length;
    int32_t id = qref_spm_llamacpp_token_id(s->spm, s->text + s->symbols[left].start, size);
    if (id < 0)
        return true;
    return heap_push(&s->heap, (bigram){left, right, s->spm->scores[id], size});
}

/* Appends the ids of one escaped fragment to out. */
static qref_status tokenize_fragment(const qref_spm_llamacpp *spm, const char *text, size_t length, id_list *out,
                                     qref_error *err)
{
    static const uint8_t utf8_lengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    session s = {.spm = spm, .text = text};
    s.symbols = malloc((length > 0 ? length : 1) * sizeof *s.symbols);
    if (s.symbols == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu bytes of text", spm->display, length);

    /* 3. one symbol per UTF-8 character, by its lead byte */
    int32_t n = 0;
    for (size_t offset = 0; offset < length; n++) {
        size_t char_length = utf8_lengths[(uint8_t)text[offset] >> 4];
        if (char_length > length - offset)
            char_length = length - offset;
        s.symbols[n] = (symbol){n - 1, offset + char_length == length ? -1 : n + 1, offset, char_length};
        offset += char_length;
    }

    /* 4. merge the best-scoring pair until none is left */
    qref_status status = QREF_OK;
    for (int32_t i = 1; i < n && status == QREF_OK; i++)
        if (!try_add_bigram(&s, i - 1, i))
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
    while (s.heap.count > 0 && status == QREF_OK) {
        bigram top = heap_pop(&s.heap);
        symbol *left = &s.symbols[top.left], *right = &s.symbols[top.right];
        if (left->length == 0 || right->length == 0 || left->length + right->length != top.size)
            continue; /* queued before one of the two symbols changed */
        left->length += right->length;
        right->length = 0;
        left->next = right->next;
        if (right->next >= 0)
            s.symbols[right->next].prev = top.left;
        if (!try_add_bigram(&s, left->prev, top.left) || !try_add_bigram(&s, top.left, left->next))
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
    }

    /* 5. ids, or byte tokens for a symbol that is no entry */
    for (int32_t i = n > 0 ? 0 : -1; i >= 0 && status == QREF_OK; i = s.symbols[i].next) {
        const symbol *sym = &s.symbols[i];
        int32_t id = qref_spm_llamacpp_token_id(spm, text + sym->start, sym->length);
        if (id >= 0) {
            if (!id_list_push(out, id))
                status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
            continue;
        }
        for (size_t b = 0; b < sym->length && status == QREF_OK; b++) {
            uint8_t byte = (uint8_t)text[sym->start + b];
            if (spm->byte_ids[byte] < 0)
                status = qref_error_set(err, QREF_ERR_INVALID, "%s: byte 0x%02X has no token (expected \"<0x%02X>\" "
                                        "or the byte itself in the vocabulary)", spm->display, byte, byte);
            else if (!id_list_push(out, spm->byte_ids[byte]))
                status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
        }
    }
    free(s.symbols);
    free(s.heap.items);
    return status;
}

/* Step 2: the fragment with an optional leading space, every space written as U+2581. */
static char *escape_fragment(const char *raw, size_t length, bool prefix_space, size_t *escaped_length)
{
    size_t spaces = prefix_space ? 1 : 0;
    for (size_t i = 0; i < length; i++)
        spaces += raw[i] == ' ';
    size_t size = length + (prefix_space ? 1 : 0) + spaces * (sizeof SPACE_SYMBOL - 2);
    char *escaped = malloc(size > 0 ? size : 1);
    if (escaped == NULL)
        return NULL;
    size_t k = 0;
    if (prefix_space) {
        memcpy(escaped, SPACE_SYMBOL, sizeof SPACE_SYMBOL - 1);
        k += sizeof SPACE_SYMBOL - 1;
    }
    for (size_t i = 0; i < length; i++) {
        if (raw[i] == ' ') {
            memcpy(escaped + k, SPACE_SYMBOL, sizeof SPACE_SYMBOL - 1);
            k += sizeof SPACE_SYMBOL - 1;
        } else {
            escaped[k++] = raw[i];
        }
    }
    *escaped_length = k;
    return escaped;
}

qref_status qref_spm_llamacpp_encode(const qref_spm_llamacpp *spm, const char *text, size_t length,
                                     bool add_bos, int32_t **ids, size_t *count, qref_error *err)
{
    *ids = NULL;
    *count = 0;
    if (add_bos && spm->bos_id < 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: BOS requested but the vocabulary has no bos_token_id",
                              spm->display);
    id_list out = {0};
    fragment_list fragments = {0};
    qref_status status = QREF_OK;
    if ((add_bos && !id_list_push(&out, spm->bos_id)) ||
        (length > 0 && !fragment_push(&fragments, (fragment){0, length, -1})) ||
        !partition_specials(spm, text, &fragments))
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);

    /* the first fragment counts as following a special token, as in llama_vocab::impl::tokenize */
    bool previous_special = true;
    for (size_t f = 0; f < fragments.count && status == QREF_OK; f++) {
        const fragment *piece = &fragments.items[f];
        if (piece->token >= 0) {
            if (!id_list_push(&out, piece->token))
                status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
            previous_special = true;
            continue;
        }
        size_t escaped_length = 0;
        char *escaped = escape_fragment(text + piece->offset, piece->length,
                                        spm->add_space_prefix && previous_special, &escaped_length);
        if (escaped == NULL) {
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu bytes of text", spm->display,
                                    piece->length);
            break;
        }
        status = tokenize_fragment(spm, escaped, escaped_length, &out, err);
        free(escaped);
        previous_special = false;
    }
    free(fragments.items);
    if (status != QREF_OK) {
        free(out.items);
        return status;
    }
    if (out.count == 0)
        out.items = malloc(sizeof *out.items); /* a valid pointer for an empty result */
    if (out.items == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
    *ids = out.items;
    *count = out.count;
    return QREF_OK;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xXX>" token text, or -1. */
static int parse_byte_token(const char *piece, size_t length)
{
    if (length != 6 || memcmp(piece, "<0x", 3) != 0 || piece[5] != '>')
        return -1;
    int high = hex_digit(piece[3]), low = hex_digit(piece[4]);
    return high < 0 || low < 0 ? -1 : high * 16 + low;
}

qref_status qref_spm_llamacpp_decode(const qref_spm_llamacpp *spm, const int32_t *ids, size_t count,
                                     char **text, size_t *length, qref_error *err)
{
    *text = NULL;
    *length = 0;
    size_t capacity = 1;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] < 0 || ids[i] >= spm->count)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: id %d at position %zu is outside the vocabulary of "
                                  "%d tokens", spm->display, ids[i], i, spm->count);
        capacity += token_length(spm, ids[i]);
    }
    char *out = malloc(capacity);
    if (out == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", spm->display);
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        int32_t id = ids[i];
        const char *piece = spm->texts + spm->offsets[id];
        size_t piece_length = token_length(spm, id);
        if (spm->types[id] == QREF_SPM_LLAMACPP_TOKEN_CONTROL)
            continue;
        int value = spm->types[id] == QREF_SPM_LLAMACPP_TOKEN_BYTE ? parse_byte_token(piece, piece_length) : -1;
        if (value >= 0) {
            out[k++] = (char)value;
            continue;
        }
        for (size_t j = 0; j < piece_length; j++) {
            if (j + 3 <= piece_length && memcmp(piece + j, SPACE_SYMBOL, 3) == 0) {
                out[k++] = ' ';
                j += 2;
            } else {
                out[k++] = piece[j];
            }
        }
    }
    size_t start = spm->add_space_prefix && k > 0 && out[0] == ' ' ? 1 : 0;
    memmove(out, out + start, k - start);
    k -= start;
    out[k] = '\0';
    *text = out;
    *length = k;
    return QREF_OK;
}

int32_t qref_spm_llamacpp_vocab_size(const qref_spm_llamacpp *spm) { return spm->count; }
int32_t qref_spm_llamacpp_bos_id(const qref_spm_llamacpp *spm) { return spm->bos_id; }
int32_t qref_spm_llamacpp_eos_id(const qref_spm_llamacpp *spm) { return spm->eos_id; }
bool qref_spm_llamacpp_adds_bos(const qref_spm_llamacpp *spm) { return spm->add_bos; }
bool qref_spm_llamacpp_adds_eos(const qref_spm_llamacpp *spm) { return spm->add_eos; }
