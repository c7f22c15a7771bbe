/*
 * Reference log-probabilities in llama.cpp's `--kl-divergence-base` file format, so that a
 * file written here can be read by `llama-perplexity --kl-divergence` and the other way
 * round (ggml-org/llama.cpp tools/perplexity/perplexity.cpp: log_softmax with a uint16_t
 * output, perplexity() with a logits file, kl_divergence()).
 *
 * Layout, all little-endian (llama.cpp writes native byte order, little-endian in practice):
 *
 *   offset 0     8 bytes    the ASCII magic "_logits_", no NUL
 *   offset 8     int32      n_ctx, the chunk length (llama.cpp reads it back as uint32)
 *   offset 12    int32      n_vocab
 *   offset 16    int32      n_chunk
 *   offset 20    int32[n_chunk * n_ctx]   the tokens of the chunks as tokenized, position 0
 *                                         of each chunk not replaced by BOS
 *   then, per chunk, n_ctx - 1 - n_ctx/2 rows (logit positions n_ctx/2 .. n_ctx-2, which
 *   predict tokens n_ctx/2+1 .. n_ctx-1), each of nv = 2*ceil(n_vocab/2) + 4 uint16 words:
 *     words 0-1  f32 scale
 *     words 2-3  f32 min_log_prob
 *     words 4..  n_vocab uint16 codes, then one zero pad code when n_vocab is odd
 *
 * File size = 20 + 4*n_chunk*n_ctx + 2*nv*n_chunk*(n_ctx - 1 - n_ctx/2) bytes; about
 * 2*n_vocab bytes per scored token (256 KiB for a 128k vocabulary).
 *
 * Encoding of one row of logits z (all in f32, as llama.cpp computes it):
 *   M = max z, lse = log(sum_i exp(z_i - M)) (the sum in double), zmin = max(min z, M - 16),
 *   scale = (M - zmin) / 65535, min_log_prob = zmin - M - lse,
 *   code_i = round((z_i - zmin) * (1 / scale)) if z_i > zmin, else 0; all codes 0 when scale = 0.
 * Rounding is to nearest, ties to even: llama.cpp adds 1.5 * 2^23 and reads the mantissa,
 * which equals nearbyintf for the values that occur here (0 .. 65535).
 * Decoding: log p_i = scale * code_i + min_log_prob.
 *
 * Error bound: for every entry with z_i > zmin the decoded log-probability is within half a
 * quantization step, step = (M - zmin) / 65535 <= 16 / 65535 (about 2.44e-4), of the exact
 * log-softmax, plus f32 rounding of a few ulp of the values involved. Entries with z_i <= zmin
 * (the minimum logit, and every logit 16 or more below M) decode to min_log_prob, which is at
 * least their exact log-probability. llama.cpp's KL sum skips every entry whose decoded
 * log-probability is <= -16.
 *
 * TODO: no file written by llama-perplexity is among the test fixtures; interchangeability
 * rests on the layout above as read in llama.cpp's source.
 */
#ifndef QREF_KLD_LOGITS_H
#define QREF_KLD_LOGITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "core/qref_sha256.h"
#include "io/qref_blob.h"

#define QREF_KLD_LOGITS_MAGIC "_logits_"
#define QREF_KLD_LOGITS_HEADER_SIZE 20
/* Codes of one row span at most this many natural-log units below the row's maximum logit. */
#define QREF_KLD_LOGITS_RANGE 16.0f
#define QREF_KLD_LOGITS_CODE_MAX 65535

/* Scored tokens per chunk of n_ctx tokens: n_ctx - 1 - n_ctx/2. */
int qref_kld_scored_per_chunk(int n_ctx);

/* Bytes of one row: 2 * (2*ceil(n_vocab/2) + 4). */
size_t qref_kld_row_bytes(int n_vocab);

/*
 * Encodes one row of n_vocab logits into row (qref_kld_row_bytes(n_vocab) bytes). Returns the
 * NLL of target computed as llama.cpp's writer does, (M + lse) - z[target] in f32.
 */
double qref_kld_row_encode(int n_vocab, const float *logits, int target, uint8_t *row);

/* Reads the scale and min_log_prob of a row. */
void qref_kld_row_params(const uint8_t *row, float *scale, float *min_log_prob);

/* Decodes the n_vocab base log-probabilities of a row: scale * code + min_log_prob in f32. */
void qref_kld_row_decode(int n_vocab, const uint8_t *row, float *log_probs);

/* A base logits file opened for reading: the header, the tokens and the mapped rows. */
typedef struct qref_kld_logits_file {
    qref_blob blob;
    int n_ctx;
    int n_vocab;
    int n_chunk;
    int scored_per_chunk;
    int32_t *tokens;         /* [n_chunk * n_ctx], decoded from little-endian */
    const uint8_t *rows;     /* first byte of the first row, inside blob */
    size_t row_bytes;
    char sha256[QREF_SHA256_HEX_SIZE]; /* of the whole file */
} qref_kld_logits_file;

/*
 * Parses and validates a base logits file held in memory (display names it in messages):
 * the magic, n_ctx with at least one scored token per chunk, n_vocab and n_chunk > 0, the
 * exact file size, n_vocab equal to expected_vocab (skipped when expected_vocab <= 0), every
 * token in [0, n_vocab), and every row's scale finite and >= 0 and min_log_prob finite and
 * <= 0. On success the file keeps pointers into data, which must outlive it; file->blob is
 * left empty.
 */
qref_status qref_kld_logits_parse(const char *display, const uint8_t *data, size_t size, int expected_vocab,
                                  qref_kld_logits_file *file, qref_error *err);

/* Maps the file at path and parses it with qref_kld_logits_parse. */
qref_status qref_kld_logits_open(const char *path, int expected_vocab, qref_kld_logits_file *file,
                                 qref_error *err);

/* Row `index` (0 .. scored_per_chunk-1) of chunk `chunk`. */
const uint8_t *qref_kld_logits_row(const qref_kld_logits_file *file, size_t chunk, int index);

/* Releases the tokens and the mapping and zeroes the struct. Safe on a zeroed struct. */
void qref_kld_logits_close(qref_kld_logits_file *file);

/*
 * A base logits file written atomically (a temporary file renamed into place by commit):
 * open writes the header and the tokens, rows are appended in chunk order, and commit
 * fails unless exactly n_chunk * scored_per_chunk rows were written. The SHA-256 of the bytes
 * is computed as they are written. A writer opened with a NULL path writes no file and only
 * computes that SHA-256.
 */
typedef struct qref_kld_logits_writer {
    qref_atomic_file file;
    qref_sha256 *digest;
    int n_ctx;
    int n_vocab;
    int n_chunk;
    size_t rows_expected;
    size_t rows_written;
    char sha256[QREF_SHA256_HEX_SIZE]; /* set by commit */
} qref_kld_logits_writer;

/* Creates the temporary file (unless path is NULL) and writes the header and tokens[n_chunk * n_ctx]. */
qref_status qref_kld_logits_writer_open(qref_kld_logits_writer *writer, const char *path, int n_ctx,
                                        int n_vocab, int n_chunk, const int32_t *tokens, qref_error *err);

/* Appends count encoded rows (count * qref_kld_row_bytes(n_vocab) bytes). */
qref_status qref_kld_logits_writer_append(qref_kld_logits_writer *writer, const uint8_t *rows, size_t count,
                                          qref_error *err);

/* Checks the row count, sets writer->sha256, and flushes and renames the file into place. */
qref_status qref_kld_logits_writer_commit(qref_kld_logits_writer *writer, qref_error *err);

/* Removes the temporary file. Safe after a failed open or a commit. */
void qref_kld_logits_writer_abort(qref_kld_logits_writer *writer);

#endif
