/* SHA-256 through OpenSSL's EVP interface, with hex formatting for manifests and reports. */
#ifndef QREF_SHA256_H
#define QREF_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define QREF_SHA256_SIZE 32
#define QREF_SHA256_HEX_SIZE 65 /* 64 hex digits and a NUL */

typedef struct qref_sha256 qref_sha256;

/* Starts an incremental digest; returns NULL when OpenSSL cannot allocate one. */
qref_sha256 *qref_sha256_init(void);
void qref_sha256_update(qref_sha256 *ctx, const void *data, size_t size);
/* Writes the digest to out and frees ctx. */
void qref_sha256_final(qref_sha256 *ctx, uint8_t out[QREF_SHA256_SIZE]);

/* One-shot digest of a buffer; returns 0, or -1 when OpenSSL fails. */
int qref_sha256_buffer(const void *data, size_t size, uint8_t out[QREF_SHA256_SIZE]);

/* Formats a digest as 64 lower-case hex digits. */
void qref_sha256_hex(const uint8_t digest[QREF_SHA256_SIZE], char hex[QREF_SHA256_HEX_SIZE]);

/* One-shot digest of a buffer formatted as hex; returns 0, or -1 when OpenSSL fails. */
int qref_sha256_buffer_hex(const void *data, size_t size, char hex[QREF_SHA256_HEX_SIZE]);

#endif
