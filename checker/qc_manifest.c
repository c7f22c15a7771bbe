#include "qc_manifest.h"

#include <stdio.h>
#include <string.h>

/* Adds "KIND NAME SHA\n" to the overall digest; the listing order is the snapshot's name order. */
static void digest_line(qref_sha256 *overall, const char *kind, const char *name, const char *hex)
{
    qref_sha256_update(overall, kind, strlen(kind));
    qref_sha256_update(overall, " ", 1);
    qref_sha256_update(overall, name, strlen(name));
    qref_sha256_update(overall, " ", 1);
    qref_sha256_update(overall, hex, 64);
    qref_sha256_update(overall, "\n", 1);
}

qref_status qc_manifest_build(const qref_snapshot *snapshot, cJSON **out, char digest[QREF_SHA256_HEX_SIZE],
                              qref_error *err)
{
    *out = NULL;
    if (snapshot == NULL)
        return qref_error_set(err, QREF_ERR_INTERNAL, "manifest: no snapshot to hash (a GGUF model's manifest is "
                              "built by qc_manifest_build_model)");
    qref_sha256 *overall = qref_sha256_init();
    if (overall == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "SHA-256: OpenSSL could not allocate a digest");
    cJSON *manifest = cJSON_CreateObject();
    cJSON *files = cJSON_AddArrayToObject(manifest, "files");
    cJSON *tensors = cJSON_AddArrayToObject(manifest, "tensors");

    char hex[QREF_SHA256_HEX_SIZE];
    for (size_t i = 0; i < qref_snapshot_file_count(snapshot); i++) {
        const qref_snapshot_file *file = qref_snapshot_file_at(snapshot, i);
        if (qref_sha256_buffer_hex(file->blob.data, file->blob.size, hex) != 0)
            goto digest_failed;
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", file->name);
        cJSON_AddNumberToObject(item, "size", (double)file->blob.size);
        cJSON_AddStringToObject(item, "sha256", hex);
        cJSON_AddItemToArray(files, item);
        digest_line(overall, "file", file->name, hex);
    }

    const qref_tensor_set *set = qref_snapshot_tensors(snapshot);
    for (size_t i = 0; i < set->count; i++) {
        const qref_tensor *tensor = &set->items[i];
        if (qref_sha256_buffer_hex(tensor->data, (size_t)tensor->nbytes, hex) != 0)
            goto digest_failed;
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", tensor->name);
        cJSON_AddStringToObject(item, "dtype", qref_dtype_name(tensor->dtype));
        cJSON *shape = cJSON_AddArrayToObject(item, "shape");
        for (int d = 0; d < tensor->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensor->shape[d]));
        cJSON_AddStringToObject(item, "file", tensor->file);
        cJSON_AddStringToObject(item, "sha256", hex);
        cJSON_AddItemToArray(tensors, item);
        digest_line(overall, "tensor", tensor->name, hex);
    }

    uint8_t raw[QREF_SHA256_SIZE];
    qref_sha256_final(overall, raw);
    qref_sha256_hex(raw, hex);
    cJSON_AddStringToObject(manifest, "sha256", hex);
    if (digest != NULL)
        memcpy(digest, hex, QREF_SHA256_HEX_SIZE);
    *out = manifest;
    return QREF_OK;

digest_failed:
    qref_sha256_final(overall, raw);
    cJSON_Delete(manifest);
    return qref_error_set(err, QREF_ERR_INTERNAL, "SHA-256: OpenSSL digest failed");
}

qref_status qc_manifest_build_gguf(const char *path, const qref_gguf *gguf, cJSON **out,
                                   char digest[QREF_SHA256_HEX_SIZE], qref_error *err)
{
    *out = NULL;
    qref_sha256 *overall = qref_sha256_init();
    if (overall == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "SHA-256: OpenSSL could not allocate a digest");
    cJSON *manifest = cJSON_CreateObject();
    cJSON *files = cJSON_AddArrayToObject(manifest, "files");
    cJSON *tensors = cJSON_AddArrayToObject(manifest, "tensors");

    /* the file */
    char hex[QREF_SHA256_HEX_SIZE];
    const char *slash = strrchr(path, '/');
    const char *name = slash != NULL ? slash + 1 : path;
    if (qref_sha256_buffer_hex(gguf->data, (size_t)gguf->size, hex) != 0)
        goto digest_failed;
    cJSON *file = cJSON_CreateObject();
    cJSON_AddStringToObject(file, "name", name);
    cJSON_AddNumberToObject(file, "size", (double)gguf->size);
    cJSON_AddStringToObject(file, "sha256", hex);
    cJSON_AddItemToArray(files, file);
    digest_line(overall, "file", name, hex);

    /* each tensor's stored bytes, in file order */
    for (size_t i = 0; i < gguf->tensor_count; i++) {
        const qref_gguf_tensor *tensor = &gguf->tensors[i];
        if (qref_sha256_buffer_hex(tensor->data, (size_t)tensor->nbytes, hex) != 0)
            goto digest_failed;
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", tensor->name);
        cJSON_AddStringToObject(item, "type", qref_ggml_type_name(tensor->type));
        cJSON *shape = cJSON_AddArrayToObject(item, "shape");
        for (int d = 0; d < tensor->n_dims; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensor->ne[d]));
        cJSON_AddStringToObject(item, "sha256", hex);
        cJSON_AddItemToArray(tensors, item);
        digest_line(overall, "tensor", tensor->name, hex);
    }

    uint8_t raw[QREF_SHA256_SIZE];
    qref_sha256_final(overall, raw);
    qref_sha256_hex(raw, hex);
    cJSON_AddStringToObject(manifest, "sha256", hex);
    if (digest != NULL)
        memcpy(digest, hex, QREF_SHA256_HEX_SIZE);
    *out = manifest;
    return QREF_OK;

digest_failed:
    qref_sha256_final(overall, raw);
    cJSON_Delete(manifest);
    return qref_error_set(err, QREF_ERR_INTERNAL, "SHA-256: OpenSSL digest failed");
}

qref_status qc_manifest_build_model(const qc_model *model, cJSON **out, char digest[QREF_SHA256_HEX_SIZE],
                                    qref_error *err)
{
    if (model->kind == QC_MODEL_GGUF)
        return qc_manifest_build_gguf(model->path, model->gguf, out, digest, err);
    return qc_manifest_build(model->snapshot, out, digest, err);
}
