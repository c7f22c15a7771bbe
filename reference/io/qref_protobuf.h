/*
 * A reader for the protobuf wire format (https://protobuf.dev/programming-guides/encoding/),
 * enough to walk a serialized message field by field without generated code.
 *
 * A message is a sequence of fields. Each field starts with a varint tag
 * (field_number << 3 | wire_type) followed by its payload:
 *
 *   0 VARINT  base-128 varint, at most 10 bytes
 *   1 I64     8 little-endian bytes (fixed64, sfixed64, double)
 *   2 LEN     varint length, then that many bytes (string, bytes, sub-message, packed)
 *   5 I32     4 little-endian bytes (fixed32, sfixed32, float)
 *
 * Wire types 3 and 4 (groups) are deprecated and rejected. Every error names the file, the
 * message path and field, the byte offset in the file, the value found and the value expected.
 */
#ifndef QREF_PROTOBUF_H
#define QREF_PROTOBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"

typedef enum qref_pb_wire {
    QREF_PB_WIRE_VARINT = 0,
    QREF_PB_WIRE_I64 = 1,
    QREF_PB_WIRE_LEN = 2,
    QREF_PB_WIRE_SGROUP = 3,
    QREF_PB_WIRE_EGROUP = 4,
    QREF_PB_WIRE_I32 = 5
} qref_pb_wire;

#define QREF_PB_PATH_MAX 160

/* A cursor over one message's bytes. */
typedef struct qref_pb_reader {
    const uint8_t *data;
    size_t size;
    size_t pos;
    size_t base;                  /* offset of data[0] in the file, for messages */
    const char *display;          /* file name shown in messages */
    char path[QREF_PB_PATH_MAX];  /* message path shown in messages, e.g. "ModelProto.pieces[3]" */
} qref_pb_reader;

/* One decoded field. For LEN fields, bytes points into the reader's buffer. */
typedef struct qref_pb_field {
    uint32_t number;
    qref_pb_wire wire;
    size_t offset;        /* file offset of the tag */
    uint64_t value;       /* payload of VARINT, I64 and I32 fields */
    const uint8_t *bytes; /* payload of LEN fields */
    size_t length;
} qref_pb_field;

/* Starts a reader over size bytes that sit at file offset base. */
void qref_pb_reader_init(qref_pb_reader *reader, const char *display, const char *path,
                         const uint8_t *data, size_t size, size_t base);

/* Starts a reader over the payload of a LEN field, with path as its message path. */
void qref_pb_reader_init_sub(qref_pb_reader *child, const qref_pb_reader *parent,
                             const qref_pb_field *field, const char *path);

/*
 * Decodes the next field into *field and sets *has_field; at the end of the message it sets
 * *has_field to false. Fails on a truncated or over-long varint, a field number of 0 or above
 * 2^29 - 1, a group or unknown wire type, or a payload that runs past the end of the message.
 */
qref_status qref_pb_next_field(qref_pb_reader *reader, qref_pb_field *field, bool *has_field,
                               qref_error *err);

/* Name of a wire type for messages ("varint", "length-delimited", ...). */
const char *qref_pb_wire_name(qref_pb_wire wire);

/* Fails unless field has the wire type expected for the field called name. */
qref_status qref_pb_expect_wire(const qref_pb_reader *reader, const qref_pb_field *field,
                                const char *name, qref_pb_wire expected, qref_error *err);

/*
 * Typed readers: each checks the wire type, then the value range of its protobuf type.
 * An int32 is a varint whose 64-bit value is either below 2^31 or a sign-extended negative
 * 32-bit number, as protobuf encoders write it. A bool is a varint of 0 or 1. A float is an
 * I32 field holding IEEE-754 binary32 bits.
 */
qref_status qref_pb_read_int32(const qref_pb_reader *reader, const qref_pb_field *field,
                               const char *name, int32_t *out, qref_error *err);
qref_status qref_pb_read_uint64(const qref_pb_reader *reader, const qref_pb_field *field,
                                const char *name, uint64_t *out, qref_error *err);
qref_status qref_pb_read_bool(const qref_pb_reader *reader, const qref_pb_field *field,
                              const char *name, bool *out, qref_error *err);
qref_status qref_pb_read_float(const qref_pb_reader *reader, const qref_pb_field *field,
                               const char *name, float *out, qref_error *err);
qref_status qref_pb_read_bytes(const qref_pb_reader *reader, const qref_pb_field *field,
                               const char *name, const uint8_t **bytes, size_t *length,
                               qref_error *err);

#endif
