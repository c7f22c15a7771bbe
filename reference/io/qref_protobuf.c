#include "io/qref_protobuf.h"

#include <stdio.h>
#include <string.h>

#define PB_MAX_FIELD_NUMBER ((1u << 29) - 1u)
#define PB_MAX_VARINT_BYTES 10

void qref_pb_reader_init(qref_pb_reader *reader, const char *display, const char *path,
                         const uint8_t *data, size_t size, size_t base)
{
    reader->data = data;
    reader->size = size;
    reader->pos = 0;
    reader->base = base;
    reader->display = display;
    snprintf(reader->path, sizeof reader->path, "%s", path);
}

void qref_pb_reader_init_sub(qref_pb_reader *child, const qref_pb_reader *parent,
                             const qref_pb_field *field, const char *path)
{
    size_t base = parent->base + (size_t)(field->bytes - parent->data);
    qref_pb_reader_init(child, parent->display, path, field->bytes, field->length, base);
}

const char *qref_pb_wire_name(qref_pb_wire wire)
{
    switch (wire) {
    case QREF_PB_WIRE_VARINT: return "varint";
    case QREF_PB_WIRE_I64: return "64-bit";
    case QREF_PB_WIRE_LEN: return "length-delimited";
    case QREF_PB_WIRE_SGROUP: return "start group";
    case QREF_PB_WIRE_EGROUP: return "end group";
    case QREF_PB_WIRE_I32: return "32-bit";
    }
    return "unknown";
}

/* Decodes a varint at reader->pos; what names the value in messages ("tag", "length", ...). */
static qref_status read_varint(qref_pb_reader *reader, const char *what, uint64_t *out,
                               qref_error *err)
{
    size_t start = reader->pos;
    uint64_t value = 0;
    for (int i = 0; i < PB_MAX_VARINT_BYTES; i++) {
        if (reader->pos >= reader->size)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s: %s varint at byte %zu is truncated: the message ends "
                                  "after %d byte(s) of it",
                                  reader->display, reader->path, what, reader->base + start, i);
        uint8_t byte = reader->data[reader->pos++];
        /* The 10th byte may only carry bit 63. */
        if (i == PB_MAX_VARINT_BYTES - 1 && byte > 1)
            return qref_error_set(err, QREF_ERR_INVALID,
                                  "%s: %s: %s varint at byte %zu overflows 64 bits: its 10th "
                                  "byte is 0x%02x, expected 0x00 or 0x01",
                                  reader->display, reader->path, what, reader->base + start, byte);
        value |= (uint64_t)(byte & 0x7f) << (7 * i);
        if ((byte & 0x80) == 0) {
            *out = value;
            return QREF_OK;
        }
    }
    return qref_error_set(err, QREF_ERR_INVALID,
                          "%s: %s: %s varint at byte %zu is longer than %d bytes",
                          reader->display, reader->path, what, reader->base + start,
                          PB_MAX_VARINT_BYTES);
}

/* Fails when fewer than needed bytes remain for the payload of the field that starts at tag_offset. */
static qref_status require_bytes(const qref_pb_reader *reader, uint32_t number, size_t tag_offset,
                                 uint64_t needed, qref_error *err)
{
    size_t remaining = reader->size - reader->pos;
    if (needed > remaining)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s: field %u at byte %zu needs %llu payload byte(s) but only "
                              "%zu remain in the message",
                              reader->display, reader->path, number, reader->base + tag_offset,
                              (unsigned long long)needed, remaining);
    return QREF_OK;
}

static uint64_t load_le(const uint8_t *bytes, int count)
{
    uint64_t value = 0;
    for (int i = count - 1; i >= 0; i--)
        value = value << 8 | bytes[i];
    return value;
}

qref_status qref_pb_next_field(qref_pb_reader *reader, qref_pb_field *field, bool *has_field,
                               qref_error *err)
{
    memset(field, 0, sizeof *field);
    *has_field = false;
    if (reader->pos >= reader->size)
        return QREF_OK;

    /* Tag: field number and wire type. */
    size_t tag_offset = reader->pos;
    uint64_t tag = 0;
    qref_status status = read_varint(reader, "tag", &tag, err);
    if (status != QREF_OK)
        return status;
    uint64_t number = tag >> 3;
    unsigned wire = (unsigned)(tag & 7);
    if (number == 0 || number > PB_MAX_FIELD_NUMBER)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s: tag at byte %zu has field number %llu, expected 1 to %u",
                              reader->display, reader->path, reader->base + tag_offset,
                              (unsigned long long)number, PB_MAX_FIELD_NUMBER);
    field->number = (uint32_t)number;
    field->wire = (qref_pb_wire)wire;
    field->offset = reader->base + tag_offset;

    /* Payload. */
    switch (wire) {
    case QREF_PB_WIRE_VARINT:
        status = read_varint(reader, "value", &field->value, err);
        if (status != QREF_OK)
            return status;
        break;
    case QREF_PB_WIRE_I64:
    case QREF_PB_WIRE_I32: {
        int width = wire == QREF_PB_WIRE_I64 ? 8 : 4;
        status = require_bytes(reader, field->number, tag_offset, (uint64_t)width, err);
        if (status != QREF_OK)
            return status;
        field->value = load_le(reader->data + reader->pos, width);
        reader->pos += (size_t)width;
        break;
    }
    case QREF_PB_WIRE_LEN: {
        uint64_t length = 0;
        status = read_varint(reader, "length", &length, err);
        if (status != QREF_OK)
            return status;
        status = require_bytes(reader, field->number, tag_offset, length, err);
        if (status != QREF_OK)
            return status;
        field->bytes = reader->data + reader->pos;
        field->length = (size_t)length;
        reader->pos += (size_t)length;
        break;
    }
    default:
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s: field %u at byte %zu has wire type %u (%s), expected 0 "
                              "(varint), 1 (64-bit), 2 (length-delimited) or 5 (32-bit)",
                              reader->display, reader->path, field->number, field->offset, wire,
                              qref_pb_wire_name((qref_pb_wire)wire));
    }
    *has_field = true;
    return QREF_OK;
}

qref_status qref_pb_expect_wire(const qref_pb_reader *reader, const qref_pb_field *field,
                                const char *name, qref_pb_wire expected, qref_error *err)
{
    if (field->wire == expected)
        return QREF_OK;
    return qref_error_set(err, QREF_ERR_INVALID,
                          "%s: %s.%s (field %u) at byte %zu has wire type %d (%s), expected %d "
                          "(%s)",
                          reader->display, reader->path, name, field->number, field->offset,
                          (int)field->wire, qref_pb_wire_name(field->wire), (int)expected,
                          qref_pb_wire_name(expected));
}

qref_status qref_pb_read_int32(const qref_pb_reader *reader, const qref_pb_field *field,
                               const char *name, int32_t *out, qref_error *err)
{
    qref_status status = qref_pb_expect_wire(reader, field, name, QREF_PB_WIRE_VARINT, err);
    if (status != QREF_OK)
        return status;
    uint64_t value = field->value;
    /* Negative int32 values are written sign-extended to 64 bits. */
    if (value <= (uint64_t)INT32_MAX) {
        *out = (int32_t)value;
        return QREF_OK;
    }
    if (value >= (uint64_t)0xffffffff80000000ull) {
        *out = (int32_t)(int64_t)value;
        return QREF_OK;
    }
    return qref_error_set(err, QREF_ERR_INVALID,
                          "%s: %s.%s (field %u) at byte %zu is %llu, which is not an int32 "
                          "(expected -2^31 to 2^31 - 1, negative values sign-extended)",
                          reader->display, reader->path, name, field->number, field->offset,
                          (unsigned long long)value);
}

qref_status qref_pb_read_uint64(const qref_pb_reader *reader, const qref_pb_field *field,
                                const char *name, uint64_t *out, qref_error *err)
{
    qref_status status = qref_pb_expect_wire(reader, field, name, QREF_PB_WIRE_VARINT, err);
    if (status == QREF_OK)
        *out = field->value;
    return status;
}

qref_status qref_pb_read_bool(const qref_pb_reader *reader, const qref_pb_field *field,
                              const char *name, bool *out, qref_error *err)
{
    qref_status status = qref_pb_expect_wire(reader, field, name, QREF_PB_WIRE_VARINT, err);
    if (status != QREF_OK)
        return status;
    if (field->value > 1)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s.%s (field %u) at byte %zu is %llu, expected a bool (0 or 1)",
                              reader->display, reader->path, name, field->number, field->offset,
                              (unsigned long long)field->value);
    *out = field->value == 1;
    return QREF_OK;
}

qref_status qref_pb_read_float(const qref_pb_reader *reader, const qref_pb_field *field,
                               const char *name, float *out, qref_error *err)
{
    qref_status status = qref_pb_expect_wire(reader, field, name, QREF_PB_WIRE_I32, err);
    if (status != QREF_OK)
        return status;
    uint32_t bits = (uint32_t)field->value;
    memcpy(out, &bits, sizeof *out);
    return QREF_OK;
}

qref_status qref_pb_read_bytes(const qref_pb_reader *reader, const qref_pb_field *field,
                               const char *name, const uint8_t **bytes, size_t *length,
                               qref_error *err)
{
    qref_status status = qref_pb_expect_wire(reader, field, name, QREF_PB_WIRE_LEN, err);
    if (status != QREF_OK)
        return status;
    *bytes = field->bytes;
    *length = field->length;
    return QREF_OK;
}
