/*
 * The tokenizer interface: picks the file, distinguishes tiktoken from SentencePiece by
 * content, and forwards to qref_spm or qref_bpe.
 */
#include "model/qref_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct qref_tokenizer {
    qref_tokenizer_kind kind;
    qref_spm *spm;
    qref_bpe *bpe;
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

void qref_tokenizer_free(qref_tokenizer *tokenizer)
{
    if (tokenizer == NULL)
        return;
    qref_spm_free(tokenizer->spm);
    qref_bpe_free(tokenizer->bpe);
    free(tokenizer->file_name);
    free(tokenizer->skipped);
    free(tokenizer);
}

qref_status qref_tokenizer_encode(const qref_tokenizer *tokenizer, const char *text, size_t length, bool add_bos,
                                  int32_t **ids, size_t *count, qref_error *err)
{
    if (tokenizer->spm != NULL)
        return qref_spm_encode(tokenizer->spm, text, length, add_bos, ids, count, err);
    return qref_bpe_encode(tokenizer->bpe, text, length, add_bos, ids, count, err);
}

qref_status qref_tokenizer_decode(const qref_tokenizer *tokenizer, const int32_t *ids, size_t count, char **text,
                                  size_t *length, qref_error *err)
{
    if (tokenizer->spm != NULL)
        return qref_spm_decode(tokenizer->spm, ids, count, text, length, err);
    return qref_bpe_decode(tokenizer->bpe, ids, count, text, length, err);
}

int32_t qref_tokenizer_bos_id(const qref_tokenizer *tokenizer)
{
    return tokenizer->spm != NULL ? qref_spm_bos_id(tokenizer->spm) : qref_bpe_bos_id(tokenizer->bpe);
}

int32_t qref_tokenizer_eos_id(const qref_tokenizer *tokenizer)
{
    return tokenizer->spm != NULL ? qref_spm_eos_id(tokenizer->spm) : qref_bpe_eos_id(tokenizer->bpe);
}

int32_t qref_tokenizer_vocab_size(const qref_tokenizer *tokenizer)
{
    return tokenizer->spm != NULL ? qref_spm_vocab_size(tokenizer->spm) : qref_bpe_vocab_size(tokenizer->bpe);
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
    }
    return "unknown";
}

const char *qref_tokenizer_file_name(const qref_tokenizer *tokenizer) { return tokenizer->file_name; }
const char *qref_tokenizer_sha256(const qref_tokenizer *tokenizer) { return tokenizer->sha256; }
const char *qref_tokenizer_skipped(const qref_tokenizer *tokenizer) { return tokenizer->skipped; }
const qref_spm *qref_tokenizer_spm(const qref_tokenizer *tokenizer) { return tokenizer->spm; }
const qref_bpe *qref_tokenizer_bpe(const qref_tokenizer *tokenizer) { return tokenizer->bpe; }
