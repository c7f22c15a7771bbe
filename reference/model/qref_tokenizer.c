/*
 * The tokenizer interface: picks the file, distinguishes tiktoken from SentencePiece by
 * content, reads a GGUF file's tokenizer metadata, and forwards to qref_spm, qref_bpe or
 * qref_spm_llamacpp.
 */
#include "model/qref_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/qref_dtype.h"

struct qref_tokenizer {
    qref_tokenizer_kind kind;
    qref_spm *spm;
    qref_bpe *bpe;
    qref_spm_llamacpp *spm_llamacpp;
    bool adds_bos;
    char *file_name;
    char sha256[QREF_SHA256_HEX_SIZE];
    char *skipped;
};

/*
 * True when data starts like Meta's tiktoken file: a line of base64 digits, one space and a
 * decimal rank. A SentencePiece ModelProto starts with a protobuf tag byte (0x0A for its
 * first field), which is not a base64 digit.
 */
static bool looks_like_tiktoken(const uint8_t *data, size_t size)
{
    size_t i = 0;
    while (i < size && ((data[i] >= 'A' && data[i] <= 'Z') || (data[i] >= 'a' && data[i] <= 'z') ||
                        (data[i] >= '0' && data[i] <= '9') || data[i] == '+' || data[i] == '/' || data[i] == '='))
        i++;
    if (i == 0 || i >= size || data[i] != ' ')
        return false;
    size_t digits = ++i;
    while (i < size && data[i] >= '0' && data[i] <= '9')
        i++;
    return i > digits && (i == size || data[i] == '\n' || data[i] == '\r');
}

static qref_status tokenizer_create(qref_tokenizer_kind kind, const char *file_name, const qref_blob *blob,
                                    qref_tokenizer **out, qref_error *err)
{
    qref_tokenizer *tokenizer = calloc(1, sizeof *tokenizer);
    if (tokenizer == NULL || (tokenizer->file_name = strdup(file_name)) == NULL) {
        free(tokenizer);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", file_name);
    }
    if (qref_sha256_buffer_hex(blob->data, blob->size, tokenizer->sha256) != 0) {
        free(tokenizer->file_name);
        free(tokenizer);
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: SHA-256 failed", file_name);
    }
    tokenizer->kind = kind;
    tokenizer->adds_bos = true;
    *out = tokenizer;
    return QREF_OK;
}

/* Loads tokenizer.model: tiktoken or SentencePiece by content. */
static qref_status load_model_file(const qref_blob *blob, const char *name, qref_tokenizer **out, qref_error *err)
{
    qref_tokenizer *tokenizer = NULL;
    bool tiktoken = looks_like_tiktoken(blob->data, blob->size);
    qref_status status = tokenizer_create(tiktoken ? QREF_TOKENIZER_TIKTOKEN : QREF_TOKENIZER_SENTENCEPIECE, name,
                                          blob, &tokenizer, err);
    if (status != QREF_OK)
        return status;
    /* TODO: a tiktoken file alone does not say its model version; LLaMA-3.1 and later use the
     * same ranks with another special-token list (QREF_BPE_TIKTOKEN_LLAMA3_1). */
    if (tiktoken)
        status = qref_bpe_load_tiktoken(name, blob->data, blob->size, QREF_BPE_TIKTOKEN_LLAMA3, &tokenizer->bpe, err);
    else
        status = qref_spm_load(name, blob->data, blob->size, &tokenizer->spm, err);
    if (status != QREF_OK) {
        qref_tokenizer_free(tokenizer);
        return status;
    }
    *out = tokenizer;
    return QREF_OK;
}

qref_status qref_tokenizer_load_snapshot_files(const qref_tokenizer_files *files, qref_tokenizer **out,
                                               qref_error *err)
{
    *out = NULL;
    const char *json_name = files->tokenizer_json_name != NULL ? files->tokenizer_json_name : "tokenizer.json";
    const char *config_name =
        files->tokenizer_config_json_name != NULL ? files->tokenizer_config_json_name : "tokenizer_config.json";
    const char *model_name = files->tokenizer_model_name != NULL ? files->tokenizer_model_name : "tokenizer.model";

    /* 1. tokenizer.json when qref_bpe implements its layout */
    char *skipped = NULL;
    if (files->tokenizer_json != NULL) {
        const qref_blob *json = files->tokenizer_json;
        const qref_blob *config = files->tokenizer_config_json;
        qref_bpe *bpe = NULL;
        qref_status status = qref_bpe_load_hf_json(json_name, (const char *)json->data, json->size, config_name,
                                                   config != NULL ? (const char *)config->data : NULL,
                                                   config != NULL ? config->size : 0, &bpe, err);
        if (status == QREF_OK) {
            status = tokenizer_create(QREF_TOKENIZER_HF_BPE, json_name, json, out, err);
            if (status != QREF_OK) {
                qref_bpe_free(bpe);
                return status;
            }
            (*out)->bpe = bpe;
            return QREF_OK;
        }
        if (status != QREF_ERR_UNSUPPORTED || files->tokenizer_model == NULL)
            return status;
        skipped = strdup(err->message);
        if (skipped == NULL)
            return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", json_name);
        qref_error_clear(err);
    }

    /* 2. tokenizer.model */
    if (files->tokenizer_model == NULL)
        return QREF_OK;
    qref_status status = load_model_file(files->tokenizer_model, model_name, out, err);
    if (status != QREF_OK) {
        free(skipped);
        return status;
    }
    (*out)->skipped = skipped;
    return QREF_OK;
}

qref_status qref_tokenizer_load_snapshot(const qref_snapshot *snapshot, qref_tokenizer **out, qref_error *err)
{
    qref_tokenizer_files files = {
        .tokenizer_json = qref_snapshot_find_file(snapshot, "tokenizer.json"),
        .tokenizer_config_json = qref_snapshot_find_file(snapshot, "tokenizer_config.json"),
        .tokenizer_model = qref_snapshot_find_file(snapshot, "tokenizer.model"),
    };
    return qref_tokenizer_load_snapshot_files(&files, out, err);
}

/* Joins folder and name into a heap string; NULL when out of memory. */
static char *path_join(const char *folder, size_t folder_length, const char *name)
{
    size_t length = folder_length + 1 + strlen(name) + 1;
    char *joined = malloc(length);
    if (joined != NULL)
        snprintf(joined, length, "%.*s/%s", (int)folder_length, folder, name);
    return joined;
}

static bool is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Maps folder/name into blob when that file exists, with its path in *path; else *path is NULL. */
static qref_status map_optional(const char *folder, size_t folder_length, const char *name, qref_blob *blob,
                                char **path, qref_error *err)
{
    *path = path_join(folder, folder_length, name);
    if (*path == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "out of memory");
    if (!is_regular_file(*path)) {
        free(*path);
        *path = NULL;
        return QREF_OK;
    }
    return qref_blob_map_file(*path, blob, err);
}

/* True when the first byte that is not JSON whitespace is '{'. */
static bool starts_json_object(const qref_blob *blob)
{
    for (size_t i = 0; i < blob->size; i++) {
        uint8_t c = blob->data[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        return c == '{';
    }
    return false;
}

qref_status qref_tokenizer_load_path(const char *path, qref_tokenizer **out, qref_error *err)
{
    *out = NULL;
    struct stat st;
    bool folder = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    qref_blob blobs[3] = {{0}};
    char *paths[3] = {NULL, NULL, NULL};
    enum { JSON = 0, CONFIG = 1, MODEL = 2 };
    qref_status status = QREF_OK;

    /* 1. the files: a folder's three, or the one file (and tokenizer_config.json beside a JSON) */
    if (folder) {
        static const char *const names[3] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model"};
        for (int i = 0; i < 3 && status == QREF_OK; i++)
            status = map_optional(path, strlen(path), names[i], &blobs[i], &paths[i], err);
        if (status == QREF_OK && paths[JSON] == NULL && paths[MODEL] == NULL)
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: no tokenizer.json or tokenizer.model in the folder",
                                    path);
    } else {
        qref_blob file = {0};
        status = qref_blob_map_file(path, &file, err);
        if (status == QREF_OK && file.size >= 4 && memcmp(file.data, "GGUF", 4) == 0) {
            /* a GGUF file carries its vocabulary in tokenizer.ggml.* metadata */
            qref_gguf gguf;
            status = qref_gguf_parse(path, file.data, file.size, &gguf, err);
            if (status == QREF_OK) {
                status = qref_tokenizer_load_gguf(&gguf, path, out, err);
                qref_gguf_free(&gguf);
            }
            qref_blob_free(&file);
            if (status == QREF_OK && *out == NULL)
                status = qref_error_set(err, QREF_ERR_INVALID, "%s: the GGUF file has no tokenizer.ggml.model "
                                        "metadata, so it holds no tokenizer", path);
            return status;
        }
        if (status == QREF_OK) {
            int slot = starts_json_object(&file) ? JSON : MODEL;
            blobs[slot] = file;
            paths[slot] = strdup(path);
            if (paths[slot] == NULL)
                status = qref_error_set(err, QREF_ERR_NOMEM, "out of memory");
        }
        if (status == QREF_OK && paths[JSON] != NULL) {
            const char *slash = strrchr(path, '/');
            const char *dir = slash != NULL ? path : ".";
            size_t dir_length = slash != NULL ? (size_t)(slash - path) : 1;
            if (slash == path)
                dir_length = 1; /* a file in the root folder */
            status = map_optional(dir, dir_length, "tokenizer_config.json", &blobs[CONFIG], &paths[CONFIG], err);
        }
    }

    /* 2. the rule of qref_tokenizer_load_snapshot_files, with the paths as names */
    if (status == QREF_OK) {
        qref_tokenizer_files files = {
            .tokenizer_json = paths[JSON] != NULL ? &blobs[JSON] : NULL,
            .tokenizer_config_json = paths[CONFIG] != NULL ? &blobs[CONFIG] : NULL,
            .tokenizer_model = paths[MODEL] != NULL ? &blobs[MODEL] : NULL,
            .tokenizer_json_name = paths[JSON],
            .tokenizer_config_json_name = paths[CONFIG],
            .tokenizer_model_name = paths[MODEL],
        };
        status = qref_tokenizer_load_snapshot_files(&files, out, err);
    }
    for (int i = 0; i < 3; i++) {
        qref_blob_free(&blobs[i]);
        free(paths[i]);
    }
    return status;
}

/* ---- GGUF metadata ------------------------------------------------------------------------- */

#define GGUF_TOKENIZER_PREFIX "tokenizer.ggml."

/* Bytes of one scalar of a GGUF value type; 0 for STRING and ARRAY. */
static uint64_t gguf_scalar_size(qref_gguf_type type)
{
    switch (type) {
    case QREF_GGUF_TYPE_UINT8: case QREF_GGUF_TYPE_INT8: case QREF_GGUF_TYPE_BOOL: return 1;
    case QREF_GGUF_TYPE_UINT16: case QREF_GGUF_TYPE_INT16: return 2;
    case QREF_GGUF_TYPE_UINT32: case QREF_GGUF_TYPE_INT32: case QREF_GGUF_TYPE_FLOAT32: return 4;
    case QREF_GGUF_TYPE_UINT64: case QREF_GGUF_TYPE_INT64: case QREF_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* File offsets [begin, end) of a pair's value as stored; an array begins at its element type. */
static void gguf_value_span(const qref_gguf *g, const qref_gguf_kv *kv, uint64_t *begin, uint64_t *end)
{
    if (kv->type == QREF_GGUF_TYPE_STRING) {
        *begin = kv->value_offset;
        *end = *begin + 8 + qref_load_u64(g->data + *begin);
    } else if (kv->type != QREF_GGUF_TYPE_ARRAY) {
        *begin = kv->value_offset;
        *end = *begin + gguf_scalar_size(kv->type);
    } else if (kv->elem_type == QREF_GGUF_TYPE_STRING) {
        *begin = kv->value_offset - 12; /* u32 element type and u64 count */
        uint64_t last = kv->count > 0 ? kv->string_offsets[kv->count - 1] : 0;
        *end = kv->count > 0 ? last + 8 + qref_load_u64(g->data + last) : kv->value_offset;
    } else {
        *begin = kv->value_offset - 12;
        *end = kv->value_offset + kv->count * gguf_scalar_size(kv->elem_type);
    }
}

/* The digest qref_tokenizer_sha256 documents for a GGUF tokenizer. */
static qref_status gguf_tokenizer_digest(const qref_gguf *g, const char *display, char hex[QREF_SHA256_HEX_SIZE],
                                         qref_error *err)
{
    qref_sha256 *digest = qref_sha256_init();
    if (digest == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: SHA-256: OpenSSL could not allocate a digest", display);
    for (size_t i = 0; i < g->kv_count; i++) {
        const qref_gguf_kv *kv = &g->kvs[i];
        if (strncmp(kv->key, GGUF_TOKENIZER_PREFIX, sizeof GGUF_TOKENIZER_PREFIX - 1) != 0)
            continue;
        uint64_t begin, end;
        gguf_value_span(g, kv, &begin, &end);
        uint8_t type[4] = {(uint8_t)kv->type, 0, 0, 0};
        qref_sha256_update(digest, kv->key, strlen(kv->key) + 1);
        qref_sha256_update(digest, type, sizeof type);
        qref_sha256_update(digest, g->data + begin, (size_t)(end - begin));
    }
    uint8_t raw[QREF_SHA256_SIZE];
    qref_sha256_final(digest, raw);
    qref_sha256_hex(raw, hex);
    return QREF_OK;
}

/* Copies a metadata string for a message: printable ASCII kept, other bytes as '?', cut at 64. */
static void gguf_printable(const qref_gguf_string *value, char out[72])
{
    size_t n = value->length < 64 ? (size_t)value->length : 64;
    for (size_t i = 0; i < n; i++) {
        char c = value->data[i];
        out[i] = c >= 0x20 && c < 0x7f ? c : '?';
    }
    strcpy(out + n, value->length > 64 ? "..." : "");
}

static bool gguf_string_is(const qref_gguf_string *value, const char *text)
{
    return value->length == strlen(text) && memcmp(value->data, text, value->length) == 0;
}

/* An optional token id: fallback when the key is absent, -1 for "none" (4294967295 or -1). */
static qref_status gguf_optional_id(const qref_gguf *g, const char *key, int32_t fallback, int32_t *out,
                                    qref_error *err)
{
    *out = fallback;
    if (qref_gguf_find_kv(g, key) == NULL)
        return QREF_OK;
    int64_t value = 0;
    qref_status status = qref_gguf_get_i64(g, key, &value, err);
    if (status != QREF_OK)
        return status;
    if (value == -1 || value == (int64_t)UINT32_MAX)
        *out = -1;
    else if (value < 0 || value > INT32_MAX)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: metadata key \"%s\" is %lld, expected a token id",
                              g->display, key, (long long)value);
    else
        *out = (int32_t)value;
    return QREF_OK;
}

static qref_status gguf_optional_bool(const qref_gguf *g, const char *key, bool fallback, bool *out, qref_error *err)
{
    *out = fallback;
    if (qref_gguf_find_kv(g, key) == NULL)
        return QREF_OK;
    return qref_gguf_get_bool(g, key, out, err);
}

/* The vocabulary arrays of a GGUF file, pointing into its buffer (token texts) or owned. */
typedef struct gguf_vocab {
    size_t count;
    const char **tokens;
    size_t *lengths;
    float *scores;       /* NULL when tokenizer.ggml.scores is absent */
    int32_t *types;      /* NULL when tokenizer.ggml.token_type is absent */
    size_t merge_count;
    const char **merges;
    size_t *merge_lengths;
} gguf_vocab;

static void gguf_vocab_free(gguf_vocab *vocab)
{
    free(vocab->tokens);
    free(vocab->lengths);
    free(vocab->scores);
    free(vocab->types);
    free(vocab->merges);
    free(vocab->merge_lengths);
    memset(vocab, 0, sizeof *vocab);
}

/* Reads an ARRAY of STRING into pointers and lengths. */
static qref_status gguf_read_strings(const qref_gguf *g, const char *key, size_t *count, const char ***texts,
                                     size_t **lengths, qref_error *err)
{
    qref_gguf_array array;
    qref_status status = qref_gguf_get_array(g, key, QREF_GGUF_TYPE_STRING, &array, err);
    if (status != QREF_OK)
        return status;
    *count = (size_t)array.count;
    *texts = malloc((*count ? *count : 1) * sizeof **texts);
    *lengths = malloc((*count ? *count : 1) * sizeof **lengths);
    if (*texts == NULL || *lengths == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory for %zu strings of \"%s\"", g->display, *count,
                              key);
    for (size_t i = 0; i < *count && status == QREF_OK; i++) {
        qref_gguf_string value;
        status = qref_gguf_array_get_string(&array, i, &value, err);
        (*texts)[i] = value.data;
        (*lengths)[i] = (size_t)value.length;
    }
    return status;
}

/* Reads tokens, scores, token types and (for gpt2) merges. */
static qref_status gguf_read_vocab(const qref_gguf *g, bool merges, gguf_vocab *vocab, qref_error *err)
{
    qref_status status = gguf_read_strings(g, GGUF_TOKENIZER_PREFIX "tokens", &vocab->count, &vocab->tokens,
                                           &vocab->lengths, err);
    if (status == QREF_OK && qref_gguf_find_kv(g, GGUF_TOKENIZER_PREFIX "scores") != NULL) {
        qref_gguf_array array;
        status = qref_gguf_get_array(g, GGUF_TOKENIZER_PREFIX "scores", QREF_GGUF_TYPE_FLOAT32, &array, err);
        if (status == QREF_OK && (vocab->scores = malloc(vocab->count * sizeof *vocab->scores + 1)) == NULL)
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", g->display);
        for (size_t i = 0; i < vocab->count && status == QREF_OK; i++)
            status = qref_gguf_array_get_f32(&array, i, &vocab->scores[i], err);
    }
    if (status == QREF_OK && qref_gguf_find_kv(g, GGUF_TOKENIZER_PREFIX "token_type") != NULL) {
        qref_gguf_array array;
        status = qref_gguf_get_array(g, GGUF_TOKENIZER_PREFIX "token_type", QREF_GGUF_TYPE_COUNT, &array, err);
        if (status == QREF_OK && (vocab->types = malloc(vocab->count * sizeof *vocab->types + 1)) == NULL)
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", g->display);
        for (size_t i = 0; i < vocab->count && status == QREF_OK; i++) {
            int64_t type = 0;
            status = qref_gguf_array_get_i64(&array, i, &type, err);
            /* out-of-range values fail in the loaders, which name the index */
            vocab->types[i] = type < INT32_MIN || type > INT32_MAX ? INT32_MIN : (int32_t)type;
        }
    }
    if (status == QREF_OK && merges)
        status = gguf_read_strings(g, GGUF_TOKENIZER_PREFIX "merges", &vocab->merge_count, &vocab->merges,
                                   &vocab->merge_lengths, err);
    return status;
}

/* Checks tokenizer.ggml.pre for a "gpt2" vocabulary: only llama.cpp's LLaMA-3 pre-tokenizer is implemented. */
static qref_status gguf_check_bpe_pre(const qref_gguf *g, const char *display, qref_error *err)
{
    if (qref_gguf_find_kv(g, GGUF_TOKENIZER_PREFIX "pre") == NULL)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                              "%s: tokenizer.ggml.pre is missing for a gpt2 tokenizer, so llama.cpp uses its "
                              "\"default\" pre-tokenizer (four regexes in sequence), which is not supported "
                              "(supported: \"llama-bpe\", \"llama3\", \"llama-v3\")", display);
    qref_gguf_string pre;
    qref_status status = qref_gguf_get_string(g, GGUF_TOKENIZER_PREFIX "pre", &pre, err);
    if (status != QREF_OK)
        return status;
    if (gguf_string_is(&pre, "llama-bpe") || gguf_string_is(&pre, "llama3") || gguf_string_is(&pre, "llama-v3"))
        return QREF_OK;
    char name[72];
    gguf_printable(&pre, name);
    return qref_error_set(err, QREF_ERR_UNSUPPORTED,
                          "%s: tokenizer.ggml.pre \"%s\" is not supported (supported: \"llama-bpe\", \"llama3\", "
                          "\"llama-v3\", the LLaMA-3 pre-tokenizer)", display, name);
}

qref_status qref_tokenizer_load_gguf(const qref_gguf *file, const char *display, qref_tokenizer **out,
                                     qref_error *err)
{
    *out = NULL;
    if (qref_gguf_find_kv(file, GGUF_TOKENIZER_PREFIX "model") == NULL)
        return QREF_OK;

    /* 1. the tokenizer model and, for gpt2, its pre-tokenizer */
    qref_gguf_string model;
    qref_status status = qref_gguf_get_string(file, GGUF_TOKENIZER_PREFIX "model", &model, err);
    if (status != QREF_OK)
        return status;
    bool spm = gguf_string_is(&model, "llama");
    if (!spm && !gguf_string_is(&model, "gpt2")) {
        char name[72];
        gguf_printable(&model, name);
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%s\" is not supported "
                              "(supported: \"llama\", \"gpt2\")", display, name);
    }
    if (!spm && (status = gguf_check_bpe_pre(file, display, err)) != QREF_OK)
        return status;

    /* 2. special ids and flags, with llama.cpp's defaults (llama_vocab::impl::load) */
    int32_t bos_id, eos_id, unk_id;
    bool add_bos, add_eos, add_space_prefix;
    if ((status = gguf_optional_id(file, GGUF_TOKENIZER_PREFIX "bos_token_id", spm ? 1 : 11, &bos_id, err)) ||
        (status = gguf_optional_id(file, GGUF_TOKENIZER_PREFIX "eos_token_id", spm ? 2 : 11, &eos_id, err)) ||
        (status = gguf_optional_id(file, GGUF_TOKENIZER_PREFIX "unknown_token_id", spm ? 0 : -1, &unk_id, err)) ||
        (status = gguf_optional_bool(file, GGUF_TOKENIZER_PREFIX "add_bos_token", true, &add_bos, err)) ||
        (status = gguf_optional_bool(file, GGUF_TOKENIZER_PREFIX "add_eos_token", false, &add_eos, err)) ||
        (status = gguf_optional_bool(file, GGUF_TOKENIZER_PREFIX "add_space_prefix", spm, &add_space_prefix, err)))
        return status;

    /* 3. the vocabulary */
    gguf_vocab vocab = {0};
    status = gguf_read_vocab(file, !spm, &vocab, err);
    if (status != QREF_OK) {
        gguf_vocab_free(&vocab);
        return status;
    }
    /* llama.cpp keeps a default id only when the vocabulary has it */
    if (bos_id >= (int64_t)vocab.count)
        bos_id = -1;
    if (eos_id >= (int64_t)vocab.count)
        eos_id = -1;
    if (unk_id >= (int64_t)vocab.count)
        unk_id = -1;

    /* 4. the encoder */
    qref_tokenizer *tokenizer = calloc(1, sizeof *tokenizer);
    if (tokenizer == NULL || (tokenizer->file_name = strdup(display)) == NULL) {
        free(tokenizer);
        gguf_vocab_free(&vocab);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    }
    tokenizer->kind = spm ? QREF_TOKENIZER_GGUF_SPM : QREF_TOKENIZER_GGUF_BPE;
    tokenizer->adds_bos = add_bos;
    status = gguf_tokenizer_digest(file, display, tokenizer->sha256, err);
    if (status == QREF_OK && spm) {
        qref_spm_llamacpp_vocab arrays = {
            .display = display, .token_count = vocab.count, .tokens = vocab.tokens, .token_lengths = vocab.lengths,
            .scores = vocab.scores, .token_types = vocab.types, .bos_id = bos_id, .eos_id = eos_id,
            .unk_id = unk_id, .add_bos = add_bos, .add_eos = add_eos, .add_space_prefix = add_space_prefix,
        };
        status = qref_spm_llamacpp_load(&arrays, &tokenizer->spm_llamacpp, err);
    } else if (status == QREF_OK) {
        qref_bpe_arrays arrays = {
            .display = display, .token_count = vocab.count, .tokens = vocab.tokens, .token_lengths = vocab.lengths,
            .token_types = vocab.types, .merge_count = vocab.merge_count, .merges = vocab.merges,
            .merge_lengths = vocab.merge_lengths, .pattern = NULL, .bos_id = bos_id, .eos_id = eos_id,
            .add_bos = add_bos, .ignore_merges = true,
        };
        status = qref_bpe_load_arrays(&arrays, &tokenizer->bpe, err);
    }
    gguf_vocab_free(&vocab);
    if (status != QREF_OK) {
        qref_tokenizer_free(tokenizer);
        return status;
    }
    *out = tokenizer;
    return QREF_OK;
}

void qref_tokenizer_free(qref_tokenizer *tokenizer)
{
    if (tokenizer == NULL)
        return;
    qref_spm_free(tokenizer->spm);
    qref_bpe_free(tokenizer->bpe);
    qref_spm_llamacpp_free(tokenizer->spm_llamacpp);
    free(tokenizer->file_name);
    free(tokenizer->skipped);
    free(tokenizer);
}

qref_status qref_tokenizer_encode(const qref_tokenizer *tokenizer, const char *text, size_t length, bool add_bos,
                                  int32_t **ids, size_t *count, qref_error *err)
{
    if (tokenizer->spm != NULL)
        return qref_spm_encode(tokenizer->spm, text, length, add_bos, ids, count, err);
    if (tokenizer->spm_llamacpp != NULL)
        return qref_spm_llamacpp_encode(tokenizer->spm_llamacpp, text, length, add_bos, ids, count, err);
    if (tokenizer->kind == QREF_TOKENIZER_GGUF_BPE)
        return qref_bpe_encode_ordinary(tokenizer->bpe, text, length, add_bos, ids, count, err);
    return qref_bpe_encode(tokenizer->bpe, text, length, add_bos, ids, count, err);
}

qref_status qref_tokenizer_decode(const qref_tokenizer *tokenizer, const int32_t *ids, size_t count, char **text,
                                  size_t *length, qref_error *err)
{
    if (tokenizer->spm != NULL)
        return qref_spm_decode(tokenizer->spm, ids, count, text, length, err);
    if (tokenizer->spm_llamacpp != NULL)
        return qref_spm_llamacpp_decode(tokenizer->spm_llamacpp, ids, count, text, length, err);
    return qref_bpe_decode(tokenizer->bpe, ids, count, text, length, err);
}

bool qref_tokenizer_adds_bos(const qref_tokenizer *tokenizer) { return tokenizer->adds_bos; }

int32_t qref_tokenizer_bos_id(const qref_tokenizer *tokenizer)
{
    if (tokenizer->spm != NULL)
        return qref_spm_bos_id(tokenizer->spm);
    if (tokenizer->spm_llamacpp != NULL)
        return qref_spm_llamacpp_bos_id(tokenizer->spm_llamacpp);
    return qref_bpe_bos_id(tokenizer->bpe);
}

int32_t qref_tokenizer_eos_id(const qref_tokenizer *tokenizer)
{
    if (tokenizer->spm != NULL)
        return qref_spm_eos_id(tokenizer->spm);
    if (tokenizer->spm_llamacpp != NULL)
        return qref_spm_llamacpp_eos_id(tokenizer->spm_llamacpp);
    return qref_bpe_eos_id(tokenizer->bpe);
}

int32_t qref_tokenizer_vocab_size(const qref_tokenizer *tokenizer)
{
    if (tokenizer->spm != NULL)
        return qref_spm_vocab_size(tokenizer->spm);
    if (tokenizer->spm_llamacpp != NULL)
        return qref_spm_llamacpp_vocab_size(tokenizer->spm_llamacpp);
    return qref_bpe_vocab_size(tokenizer->bpe);
}

qref_tokenizer_kind qref_tokenizer_kind_of(const qref_tokenizer *tokenizer) { return tokenizer->kind; }

const char *qref_tokenizer_kind_name(qref_tokenizer_kind kind)
{
    switch (kind) {
    case QREF_TOKENIZER_SENTENCEPIECE:
        return "sentencepiece";
    case QREF_TOKENIZER_HF_BPE:
        return "tokenizer.json (byte-level BPE)";
    case QREF_TOKENIZER_TIKTOKEN:
        return "tiktoken";
    case QREF_TOKENIZER_GGUF_SPM:
        return "gguf llama (llama.cpp SentencePiece)";
    case QREF_TOKENIZER_GGUF_BPE:
        return "gguf gpt2 (byte-level BPE)";
    }
    return "unknown";
}

const char *qref_tokenizer_file_name(const qref_tokenizer *tokenizer) { return tokenizer->file_name; }
const char *qref_tokenizer_sha256(const qref_tokenizer *tokenizer) { return tokenizer->sha256; }
const char *qref_tokenizer_skipped(const qref_tokenizer *tokenizer) { return tokenizer->skipped; }
const qref_spm *qref_tokenizer_spm(const qref_tokenizer *tokenizer) { return tokenizer->spm; }
const qref_bpe *qref_tokenizer_bpe(const qref_tokenizer *tokenizer) { return tokenizer->bpe; }

const qref_spm_llamacpp *qref_tokenizer_spm_llamacpp(const qref_tokenizer *tokenizer)
{
    return tokenizer->spm_llamacpp;
}
