/*
 * llama.cpp's `--kl-divergence-base` file: row codec, reader and atomic writer; see
 * qref_kld_logits.h for the layout, the encoding and its error bound.
 */
#include "eval/qref_kld_logits.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_checked.h"
#include "core/qref_dtype.h"

int qref_kld_scored_per_chunk(int n_ctx)
{
    return n_ctx - 1 - n_ctx / 2;
}

size_t qref_kld_row_bytes(int n_vocab)
{
    size_t words = 2 * (((size_t)n_vocab + 1) / 2) + 4;
    return words * sizeof(uint16_t);
}

double qref_kld_row_encode(int n_vocab, const float *logits, int target, uint8_t *row)
{
    /* 1. M = max z and zmin = max(min z, M - 16) */
    float max_logit = logits[0];
    float min_logit = logits[0];
    for (int i = 1; i < n_vocab; i++) {
        max_logit = logits[i] > max_logit ? logits[i] : max_logit;
        min_logit = logits[i] < min_logit ? logits[i] : min_logit;
    }
    if (min_logit < max_logit - QREF_KLD_LOGITS_RANGE)
        min_logit = max_logit - QREF_KLD_LOGITS_RANGE;

    /* 2. lse = log(sum exp(z - M)): f32 exponentials summed in double, the log rounded to f32 */
    double sum_exp = 0.0;
    for (int i = 0; i < n_vocab; i++)
        sum_exp += expf(logits[i] - max_logit);
    const float log_sum_exp = (float)log(sum_exp);
    const float min_log_prob = min_logit - max_logit - log_sum_exp;
    const float scale = (max_logit - min_logit) / 65535.0f;
    qref_store_f32(row, scale);
    qref_store_f32(row + 4, min_log_prob);

    /* 3. codes: round((z - zmin) / scale) above zmin, else 0; the odd-vocabulary pad is 0 */
    uint8_t *codes = row + 8;
    size_t padded = 2 * (((size_t)n_vocab + 1) / 2);
    memset(codes, 0, padded * sizeof(uint16_t));
    if (scale != 0.0f) {
        const float inv_scale = 1.0f / scale;
        for (int i = 0; i < n_vocab; i++) {
            if (logits[i] <= min_logit)
                continue;
            float code = nearbyintf(inv_scale * (logits[i] - min_logit));
            /* f32 rounding overshoots 65535 by a fraction at most; a NaN logit lands here too and
             * its row gets a NaN min_log_prob, which the readers reject */
            if (!(code <= (float)QREF_KLD_LOGITS_CODE_MAX))
                code = (float)QREF_KLD_LOGITS_CODE_MAX;
            qref_store_u16(codes + 2 * (size_t)i, (uint16_t)code);
        }
    }
    return max_logit + log_sum_exp - logits[target];
}

void qref_kld_row_params(const uint8_t *row, float *scale, float *min_log_prob)
{
    *scale = qref_load_f32(row);
    *min_log_prob = qref_load_f32(row + 4);
}

void qref_kld_row_decode(int n_vocab, const uint8_t *row, float *log_probs)
{
    float scale, min_log_prob;
    qref_kld_row_params(row, &scale, &min_log_prob);
    const uint8_t *codes = row + 8;
    for (int i = 0; i < n_vocab; i++)
        log_probs[i] = scale * (float)qref_load_u16(codes + 2 * (size_t)i) + min_log_prob;
}

/* ---- reader ------------------------------------------------------------------------------ */

/* Formats 8 bytes for a message: printable ASCII as is, anything else (and quotes) as \xNN. */
static void format_magic(const uint8_t *bytes, char out[8 * 4 + 1])
{
    char *p = out;
    for (int i = 0; i < 8; i++) {
        if (bytes[i] >= 0x20 && bytes[i] < 0x7f && bytes[i] != '"' && bytes[i] != '\\')
            *p++ = (char)bytes[i];
        else
            p += sprintf(p, "\\x%02x", bytes[i]);
    }
    *p = '\0';
}

static qref_status logits_check_rows(const char *display, const uint8_t *data, const qref_kld_logits_file *file,
                                     qref_error *err)
{
    size_t rows = (size_t)file->n_chunk * (size_t)file->scored_per_chunk;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = file->rows + r * file->row_bytes;
        float scale, min_log_prob;
        qref_kld_row_params(row, &scale, &min_log_prob);
        size_t chunk = r / (size_t)file->scored_per_chunk;
        int position = file->n_ctx / 2 + (int)(r % (size_t)file->scored_per_chunk);
        size_t offset = (size_t)(row - data);
        if (!isfinite(scale) || scale < 0.0f)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: chunk %zu, logit position %d (byte offset %zu): "
                                  "scale %g, expected a finite value >= 0", display, chunk, position, offset,
                                  (double)scale);
        if (!isfinite(min_log_prob) || min_log_prob > 0.0f)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: chunk %zu, logit position %d (byte offset %zu): "
                                  "min_log_prob %g, expected a finite log-probability <= 0", display, chunk,
                                  position, offset + 4, (double)min_log_prob);
    }
    return QREF_OK;
}

qref_status qref_kld_logits_parse(const char *display, const uint8_t *data, size_t size, int expected_vocab,
                                  qref_kld_logits_file *file, qref_error *err)
{
    memset(file, 0, sizeof *file);

    /* 1. magic and header */
    if (size < QREF_KLD_LOGITS_HEADER_SIZE)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: file is %zu bytes, expected at least %d (the "
                              "\"_logits_\" magic, n_ctx, n_vocab and n_chunk)", display, size,
                              QREF_KLD_LOGITS_HEADER_SIZE);
    if (memcmp(data, QREF_KLD_LOGITS_MAGIC, 8) != 0) {
        char found[8 * 4 + 1];
        format_magic(data, found);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: magic \"%s\" at offset 0, expected \"_logits_\" "
                              "(a llama.cpp --kl-divergence-base file)", display, found);
    }
    uint32_t n_ctx = qref_load_u32(data + 8);
    int32_t n_vocab = (int32_t)qref_load_u32(data + 12);
    int32_t n_chunk = (int32_t)qref_load_u32(data + 16);
    if (n_ctx < 3 || n_ctx > INT32_MAX)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: n_ctx %u, expected at least 3 (a chunk must score "
                              "n_ctx - 1 - n_ctx/2 >= 1 tokens) and at most %d", display, n_ctx, INT32_MAX);
    if (n_vocab <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: n_vocab %d, expected a positive vocabulary size",
                              display, n_vocab);
    if (n_chunk <= 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: n_chunk %d, expected at least one chunk", display,
                              n_chunk);
    if (expected_vocab > 0 && n_vocab != expected_vocab)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: n_vocab %d, expected %d (the vocabulary size of "
                              "the model being compared)", display, n_vocab, expected_vocab);

    /* 2. exact size: header + tokens + rows */
    int scored = qref_kld_scored_per_chunk((int)n_ctx);
    size_t row_bytes = qref_kld_row_bytes(n_vocab);
    uint64_t token_count, token_bytes, row_count, rows_bytes, expected;
    if (!qref_mul_u64(n_ctx, (uint64_t)n_chunk, &token_count) || !qref_mul_u64(token_count, 4, &token_bytes) ||
        !qref_mul_u64((uint64_t)n_chunk, (uint64_t)scored, &row_count) ||
        !qref_mul_u64(row_count, row_bytes, &rows_bytes) ||
        !qref_add_u64(QREF_KLD_LOGITS_HEADER_SIZE, token_bytes, &expected) ||
        !qref_add_u64(expected, rows_bytes, &expected) || expected > SIZE_MAX)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: n_ctx %u, n_vocab %d and n_chunk %d give a file "
                              "size that overflows 64 bits", display, n_ctx, n_vocab, n_chunk);
    if (size != expected)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: file is %zu bytes, expected %llu (header %d + "
                              "%d*%u tokens of 4 bytes + %d*%d rows of %zu bytes)%s", display, size,
                              (unsigned long long)expected, QREF_KLD_LOGITS_HEADER_SIZE, n_chunk, n_ctx,
                              n_chunk, scored, row_bytes, size < expected ? "; the file is truncated" : "");

    /* 3. tokens, each in [0, n_vocab) */
    file->tokens = malloc((size_t)token_count * sizeof(int32_t));
    if (file->tokens == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %llu tokens", display,
                              (unsigned long long)token_count);
    const uint8_t *token_data = data + QREF_KLD_LOGITS_HEADER_SIZE;
    for (size_t t = 0; t < (size_t)token_count; t++) {
        int32_t token = (int32_t)qref_load_u32(token_data + 4 * t);
        if (token < 0 || token >= n_vocab) {
            qref_kld_logits_close(file);
            return qref_error_set(err, QREF_ERR_INVALID, "%s: token %d at chunk %zu, position %zu (byte offset "
                                  "%zu), expected an id in [0, %d)", display, token, t / n_ctx, t % n_ctx,
                                  (size_t)QREF_KLD_LOGITS_HEADER_SIZE + 4 * t, n_vocab);
        }
        file->tokens[t] = token;
    }
    file->n_ctx = (int)n_ctx;
    file->n_vocab = n_vocab;
    file->n_chunk = n_chunk;
    file->scored_per_chunk = scored;
    file->row_bytes = row_bytes;
    file->rows = token_data + token_bytes;

    /* 4. every row's scale and min_log_prob */
    qref_status status = logits_check_rows(display, data, file, err);
    if (status != QREF_OK) {
        qref_kld_logits_close(file);
        return status;
    }
    if (qref_sha256_buffer_hex(data, size, file->sha256) != 0) {
        qref_kld_logits_close(file);
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: SHA-256 failed", display);
    }
    return QREF_OK;
}

qref_status qref_kld_logits_open(const char *path, int expected_vocab, qref_kld_logits_file *file,
                                 qref_error *err)
{
    qref_blob blob;
    qref_status status = qref_blob_map_file(path, &blob, err);
    if (status != QREF_OK) {
        memset(file, 0, sizeof *file);
        return status;
    }
    status = qref_kld_logits_parse(path, blob.data, blob.size, expected_vocab, file, err);
    if (status != QREF_OK) {
        qref_blob_free(&blob);
        return status;
    }
    file->blob = blob;
    return QREF_OK;
}

const uint8_t *qref_kld_logits_row(const qref_kld_logits_file *file, size_t chunk, int index)
{
    size_t row = chunk * (size_t)file->scored_per_chunk + (size_t)index;
    return file->rows + row * file->row_bytes;
}

void qref_kld_logits_close(qref_kld_logits_file *file)
{
    free(file->tokens);
    qref_blob_free(&file->blob);
    memset(file, 0, sizeof *file);
}

/* ---- writer ------------------------------------------------------------------------------ */

static void writer_write(qref_kld_logits_writer *writer, const void *data, size_t size)
{
    if (writer->file.fd >= 0)
        qref_atomic_file_write(&writer->file, data, size);
    qref_sha256_update(writer->digest, data, size);
}

qref_status qref_kld_logits_writer_open(qref_kld_logits_writer *writer, const char *path, int n_ctx,
                                        int n_vocab, int n_chunk, const int32_t *tokens, qref_error *err)
{
    memset(writer, 0, sizeof *writer);
    writer->file.fd = -1;
    const char *display = path != NULL ? path : "base logits";
    if (n_ctx < 3 || n_vocab <= 0 || n_chunk <= 0)
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: n_ctx %d, n_vocab %d, n_chunk %d, expected n_ctx "
                              ">= 3 and positive counts", display, n_ctx, n_vocab, n_chunk);
    writer->digest = qref_sha256_init();
    if (writer->digest == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot start a SHA-256 digest", display);
    if (path != NULL) {
        qref_status status = qref_atomic_file_open(&writer->file, path, err);
        if (status != QREF_OK) {
            qref_kld_logits_writer_abort(writer);
            return status;
        }
    }
    writer->n_ctx = n_ctx;
    writer->n_vocab = n_vocab;
    writer->n_chunk = n_chunk;
    writer->rows_expected = (size_t)n_chunk * (size_t)qref_kld_scored_per_chunk(n_ctx);

    uint8_t header[QREF_KLD_LOGITS_HEADER_SIZE];
    memcpy(header, QREF_KLD_LOGITS_MAGIC, 8);
    qref_store_u32(header + 8, (uint32_t)n_ctx);
    qref_store_u32(header + 12, (uint32_t)n_vocab);
    qref_store_u32(header + 16, (uint32_t)n_chunk);
    writer_write(writer, header, sizeof header);

    /* tokens in little-endian blocks, so a large-vocabulary run needs no second copy */
    uint8_t block[4096];
    size_t total = (size_t)n_chunk * (size_t)n_ctx;
    for (size_t t = 0; t < total;) {
        size_t n = total - t < sizeof block / 4 ? total - t : sizeof block / 4;
        for (size_t k = 0; k < n; k++)
            qref_store_u32(block + 4 * k, (uint32_t)tokens[t + k]);
        writer_write(writer, block, 4 * n);
        t += n;
    }
    return QREF_OK;
}

qref_status qref_kld_logits_writer_append(qref_kld_logits_writer *writer, const uint8_t *rows, size_t count,
                                          qref_error *err)
{
    if (count > writer->rows_expected - writer->rows_written)
        return qref_error_set(err, QREF_ERR_INTERNAL, "base logits: %zu more rows would exceed the %zu rows of "
                              "%d chunks", count, writer->rows_expected, writer->n_chunk);
    writer_write(writer, rows, count * qref_kld_row_bytes(writer->n_vocab));
    writer->rows_written += count;
    return QREF_OK;
}

qref_status qref_kld_logits_writer_commit(qref_kld_logits_writer *writer, qref_error *err)
{
    if (writer->rows_written != writer->rows_expected) {
        qref_error_set(err, QREF_ERR_INTERNAL, "base logits: %zu rows written, expected %zu",
                       writer->rows_written, writer->rows_expected);
        qref_kld_logits_writer_abort(writer);
        return QREF_ERR_INTERNAL;
    }
    uint8_t digest[QREF_SHA256_SIZE];
    qref_sha256_final(writer->digest, digest);
    writer->digest = NULL;
    qref_sha256_hex(digest, writer->sha256);
    if (writer->file.fd < 0)
        return QREF_OK;
    return qref_atomic_file_commit(&writer->file, err);
}

void qref_kld_logits_writer_abort(qref_kld_logits_writer *writer)
{
    if (writer->digest != NULL) {
        uint8_t unused[QREF_SHA256_SIZE];
        qref_sha256_final(writer->digest, unused);
        writer->digest = NULL;
    }
    qref_atomic_file_abort(&writer->file); /* a no-op on a closed or never opened file */
}
