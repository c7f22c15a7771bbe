#include "core/qref_sha256.h"

#include <openssl/evp.h>

qref_sha256 *qref_sha256_init(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return NULL;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return NULL;
    }
    /* The context is the EVP object itself; the wrapper type only hides OpenSSL's headers. */
    return (qref_sha256 *)md;
}

void qref_sha256_update(qref_sha256 *ctx, const void *data, size_t size)
{
    EVP_DigestUpdate((EVP_MD_CTX *)ctx, data, size);
}

void qref_sha256_final(qref_sha256 *ctx, uint8_t out[QREF_SHA256_SIZE])
{
    unsigned int length = 0;
    EVP_DigestFinal_ex((EVP_MD_CTX *)ctx, out, &length);
    EVP_MD_CTX_free((EVP_MD_CTX *)ctx);
}

int qref_sha256_buffer(const void *data, size_t size, uint8_t out[QREF_SHA256_SIZE])
{
    qref_sha256 *ctx = qref_sha256_init();
    if (ctx == NULL)
        return -1;
    qref_sha256_update(ctx, data, size);
    qref_sha256_final(ctx, out);
    return 0;
}

void qref_sha256_hex(const uint8_t digest[QREF_SHA256_SIZE], char hex[QREF_SHA256_HEX_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < QREF_SHA256_SIZE; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 0xf];
    }
    hex[64] = '\0';
}

int qref_sha256_buffer_hex(const void *data, size_t size, char hex[QREF_SHA256_HEX_SIZE])
{
    uint8_t digest[QREF_SHA256_SIZE];
    if (qref_sha256_buffer(data, size, digest) != 0)
        return -1;
    qref_sha256_hex(digest, hex);
    return 0;
}
