#include "core/qref_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

qref_status qref_error_set(qref_error *err, qref_status status, const char *fmt, ...)
{
    if (err == NULL)
        return status;
    err->status = status;
    va_list args;
    va_start(args, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, args);
    va_end(args);
    return status;
}

qref_status qref_error_prefix(qref_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return QREF_ERR_INTERNAL;
    char prefix[QREF_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, args);
    va_end(args);

    /* Keep as much of the original message as fits after the prefix. */
    size_t prefix_length = strlen(prefix);
    size_t message_length = strlen(err->message);
    if (prefix_length + message_length >= sizeof err->message)
        message_length = sizeof err->message - 1 - prefix_length;
    memmove(err->message + prefix_length, err->message, message_length);
    memcpy(err->message, prefix, prefix_length);
    err->message[prefix_length + message_length] = '\0';
    return err->status;
}

void qref_error_clear(qref_error *err)
{
    if (err == NULL)
        return;
    err->status = QREF_OK;
    err->message[0] = '\0';
}

const char *qref_status_name(qref_status status)
{
    switch (status) {
    case QREF_OK: return "ok";
    case QREF_ERR_INVALID: return "invalid input";
    case QREF_ERR_IO: return "I/O error";
    case QREF_ERR_UNSUPPORTED: return "not supported";
    case QREF_ERR_NOMEM: return "out of memory";
    case QREF_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}
