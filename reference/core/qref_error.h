/*
 * Error values returned by every libqref function that can fail.
 *
 * A failing function fills a qref_error with a status and one message that names where the
 * problem is (file, tensor, field or byte offset), the value found and the value expected,
 * for example:
 *
 *   model.safetensors: tensor "lm_head.weight": data_offsets end 4096 exceeds the data
 *   buffer of 1024 bytes
 *
 * Library code never exits and never asserts on input; it returns the status it stored.
 */
#ifndef QREF_ERROR_H
#define QREF_ERROR_H

#include <stddef.h>

typedef enum qref_status {
    QREF_OK = 0,
    QREF_ERR_INVALID,     /* input that violates its format or its declared configuration */
    QREF_ERR_IO,          /* a file that cannot be opened, read or written */
    QREF_ERR_UNSUPPORTED, /* well-formed input of a kind this version does not handle */
    QREF_ERR_NOMEM,       /* an allocation failed or a size exceeds the configured limits */
    QREF_ERR_INTERNAL     /* a programming error detected at run time */
} qref_status;

#define QREF_ERROR_MESSAGE_MAX 1024

typedef struct qref_error {
    qref_status status;
    char message[QREF_ERROR_MESSAGE_MAX];
} qref_error;

/* Stores status and a printf-style message in err (which may be NULL); returns status. */
qref_status qref_error_set(qref_error *err, qref_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends a printf-style context ("FILE: ") to the message already in err; returns its status. */
qref_status qref_error_prefix(qref_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Resets err to QREF_OK with an empty message. */
void qref_error_clear(qref_error *err);

/* Short lower-case name of a status, for logs and reports ("invalid input", "I/O error", ...). */
const char *qref_status_name(qref_status status);

#endif
