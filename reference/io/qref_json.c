/*
 * Strict JSON on top of cJSON 1.7.15.
 *
 * qref_json_parse works in three steps:
 *   1. a scanner checks the text against the RFC 8259 grammar, bounds the nesting, and records
 *      where each number literal sits;
 *   2. cJSON builds the tree from the same text;
 *   3. a walk over the tree rejects any object that repeats a key, naming the key and its JSON
 *      path, and hands each number node its literal (cJSON keeps only a double).
 * The tree and the scanner see the same document, so the walk meets the numbers in the order
 * the scanner recorded them.
 */
#include "io/qref_json.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (at most `available` bytes), or 0. */
static size_t utf8_sequence_length(const unsigned char *p, size_t available)
{
    unsigned char lead = p[0];
    if (lead < 0x80)
        return 1;

    /* Table 3-7 of the Unicode standard: the second byte's range depends on the lead byte. */
    size_t length;
    unsigned char low = 0x80, high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0)
            low = 0xa0;
        else if (lead == 0xed)
            high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0)
            low = 0x90;
        else if (lead == 0xf4)
            high = 0x8f;
    } else {
        return 0;
    }
    if (available < length)
        return 0;
    if (p[1] < low || p[1] > high)
        return 0;
    for (size_t i = 2; i < length; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    }
    return length;
}

bool qref_json_utf8_valid(const void *bytes, size_t length)
{
    const unsigned char *p = bytes;
    size_t i = 0;
    while (i < length) {
        size_t n = utf8_sequence_length(p + i, length - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* ---- Step 1: the grammar scanner ----------------------------------------------------- */

typedef struct json_literal {
    size_t offset;
    size_t length;
} json_literal;

typedef struct json_scanner {
    const char *display;
    const unsigned char *text;
    size_t length;
    size_t pos;
    int max_depth;
    json_literal *numbers; /* number literals in document order */
    size_t number_count;
    size_t number_capacity;
    qref_error *err;
} json_scanner;

/* Stores an error that locates scanner->pos as byte offset, line and column. */
__attribute__((format(printf, 2, 3)))
static qref_status scan_fail(json_scanner *s, const char *fmt, ...)
{
    char what[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(what, sizeof what, fmt, args);
    va_end(args);

    size_t line = 1, column = 1;
    for (size_t i = 0; i < s->pos && i < s->length; i++) {
        if (s->text[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    return qref_error_set(s->err, QREF_ERR_INVALID, "%s: invalid JSON at byte %zu (line %zu, column %zu): %s",
                          s->display, s->pos, line, column, what);
}

static bool is_json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(json_scanner *s)
{
    while (s->pos < s->length && is_json_space(s->text[s->pos]))
        s->pos++;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Describes the byte at pos for "unexpected ..." messages. */
static const char *describe_byte(const json_scanner *s, char *buf, size_t size)
{
    if (s->pos >= s->length)
        return "end of input";
    unsigned char c = s->text[s->pos];
    if (c >= 0x21 && c <= 0x7e)
        snprintf(buf, size, "character '%c'", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

static qref_status scan_value(json_scanner *s, int depth);

static qref_status scan_literal_word(json_scanner *s, const char *word)
{
    size_t n = strlen(word);
    if (s->length - s->pos < n || memcmp(s->text + s->pos, word, n) != 0)
        return scan_fail(s, "unknown literal, expected \"%s\"", word);
    s->pos += n;
    return QREF_OK;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits after "\u" at pos and stores the code unit. */
static qref_status scan_hex4(json_scanner *s, unsigned *unit)
{
    if (s->length - s->pos < 4)
        return scan_fail(s, "\\u escape needs 4 hex digits");
    unsigned value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_value(s->text[s->pos + (size_t)i]);
        if (digit < 0)
            return scan_fail(s, "\\u escape needs 4 hex digits");
        value = value * 16 + (unsigned)digit;
    }
    s->pos += 4;
    *unit = value;
    return QREF_OK;
}

static qref_status scan_string(json_scanner *s)
{
    s->pos++; /* opening quote */
    for (;;) {
        if (s->pos >= s->length)
            return scan_fail(s, "unterminated string");
        unsigned char c = s->text[s->pos];
        if (c == '"') {
            s->pos++;
            return QREF_OK;
        }
        if (c < 0x20)
            return scan_fail(s, "control character 0x%02x inside a string must be escaped", c);
        if (c >= 0x80) {
            size_t n = utf8_sequence_length(s->text + s->pos, s->length - s->pos);
            if (n == 0)
                return scan_fail(s, "invalid UTF-8 byte 0x%02x inside a string", c);
            s->pos += n;
            continue;
        }
        if (c != '\\') {
            s->pos++;
            continue;
        }

        /* An escape: one of \" \\ \/ \b \f \n \r \t, or \uXXXX with surrogates paired. */
        s->pos++;
        if (s->pos >= s->length)
            return scan_fail(s, "unterminated escape");
        unsigned char e = s->text[s->pos];
        if (strchr("\"\\/bfnrt", e) != NULL && e != '\0') {
            s->pos++;
            continue;
        }
        if (e != 'u')
            return scan_fail(s, "invalid escape \\%c", e >= 0x21 && e <= 0x7e ? e : '?');
        s->pos++;
        unsigned unit;
        qref_status status = scan_hex4(s, &unit);
        if (status != QREF_OK)
            return status;
        if (unit == 0)
            return scan_fail(s, "\\u0000 inside a string is not supported (C strings end at NUL)");
        if (unit >= 0xdc00 && unit <= 0xdfff)
            return scan_fail(s, "unpaired low surrogate \\u%04x", unit);
        if (unit >= 0xd800 && unit <= 0xdbff) {
            if (s->length - s->pos < 2 || s->text[s->pos] != '\\' || s->text[s->pos + 1] != 'u')
                return scan_fail(s, "high surrogate \\u%04x is not followed by a low surrogate", unit);
            s->pos += 2;
            unsigned low;
            status = scan_hex4(s, &low);
            if (status != QREF_OK)
                return status;
            if (low < 0xdc00 || low > 0xdfff)
                return scan_fail(s, "high surrogate \\u%04x is followed by \\u%04x, expected a low surrogate",
                                 unit, low);
        }
    }
}

static qref_status scan_number(json_scanner *s)
{
    size_t start = s->pos;

    /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
    if (s->text[s->pos] == '-')
        s->pos++;
    if (s->pos >= s->length || !is_digit(s->text[s->pos]))
        return scan_fail(s, "a number needs a digit after '-'");
    if (s->text[s->pos] == '0') {
        s->pos++;
        if (s->pos < s->length && is_digit(s->text[s->pos]))
            return scan_fail(s, "numbers must not have leading zeros");
    } else {
        while (s->pos < s->length && is_digit(s->text[s->pos]))
            s->pos++;
    }
    if (s->pos < s->length && s->text[s->pos] == '.') {
        s->pos++;
        if (s->pos >= s->length || !is_digit(s->text[s->pos]))
            return scan_fail(s, "a decimal point must be followed by a digit");
        while (s->pos < s->length && is_digit(s->text[s->pos]))
            s->pos++;
    }
    if (s->pos < s->length && (s->text[s->pos] == 'e' || s->text[s->pos] == 'E')) {
        s->pos++;
        if (s->pos < s->length && (s->text[s->pos] == '+' || s->text[s->pos] == '-'))
            s->pos++;
        if (s->pos >= s->length || !is_digit(s->text[s->pos]))
            return scan_fail(s, "an exponent needs a digit");
        while (s->pos < s->length && is_digit(s->text[s->pos]))
            s->pos++;
    }

    /* cJSON would store an overflowing literal as infinity and print it as null. */
    size_t length = s->pos - start;
    char *copy = malloc(length + 1);
    if (copy == NULL)
        return qref_error_set(s->err, QREF_ERR_NOMEM, "%s: out of memory while scanning JSON", s->display);
    memcpy(copy, s->text + start, length);
    copy[length] = '\0';
    /* strtod reads the locale's decimal point, as cJSON's own parse_number does. */
    char point = localeconv()->decimal_point[0];
    for (size_t i = 0; i < length; i++) {
        if (copy[i] == '.')
            copy[i] = point;
    }
    double value = strtod(copy, NULL);
    free(copy);
    if (!isfinite(value)) {
        s->pos = start;
        return scan_fail(s, "number %.*s is out of the range of a double", (int)(length > 40 ? 40 : length),
                         (const char *)s->text + start);
    }

    if (s->number_count == s->number_capacity) {
        size_t capacity = s->number_capacity ? s->number_capacity * 2 : 64;
        json_literal *grown = realloc(s->numbers, capacity * sizeof *grown);
        if (grown == NULL)
            return qref_error_set(s->err, QREF_ERR_NOMEM, "%s: out of memory while scanning JSON", s->display);
        s->numbers = grown;
        s->number_capacity = capacity;
    }
    s->numbers[s->number_count++] = (json_literal){start, length};
    return QREF_OK;
}

static qref_status scan_container(json_scanner *s, int depth, bool is_object)
{
    if (depth > s->max_depth)
        return scan_fail(s, "nesting is deeper than the limit of %d levels", s->max_depth);
    unsigned char close = is_object ? '}' : ']';
    s->pos++;
    skip_space(s);
    if (s->pos < s->length && s->text[s->pos] == close) {
        s->pos++;
        return QREF_OK;
    }
    char what[32];
    for (;;) {
        if (is_object) {
            skip_space(s);
            if (s->pos >= s->length || s->text[s->pos] != '"')
                return scan_fail(s, "expected a string key, found %s", describe_byte(s, what, sizeof what));
            qref_status status = scan_string(s);
            if (status != QREF_OK)
                return status;
            skip_space(s);
            if (s->pos >= s->length || s->text[s->pos] != ':')
                return scan_fail(s, "expected ':' after a key, found %s", describe_byte(s, what, sizeof what));
            s->pos++;
        }
        qref_status status = scan_value(s, depth);
        if (status != QREF_OK)
            return status;
        skip_space(s);
        if (s->pos < s->length && s->text[s->pos] == ',') {
            s->pos++;
            continue;
        }
        if (s->pos < s->length && s->text[s->pos] == close) {
            s->pos++;
            return QREF_OK;
        }
        return scan_fail(s, "expected ',' or '%c', found %s", close, describe_byte(s, what, sizeof what));
    }
}

/* Scans one value; depth is the nesting level of the container holding it (0 at the root). */
static qref_status scan_value(json_scanner *s, int depth)
{
    skip_space(s);
    char what[32];
    if (s->pos >= s->length)
        return scan_fail(s, "unexpected end of input, expected a value");
    unsigned char c = s->text[s->pos];
    switch (c) {
    case '{':
        return scan_container(s, depth + 1, true);
    case '[':
        return scan_container(s, depth + 1, false);
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal_word(s, "true");
    case 'f':
        return scan_literal_word(s, "false");
    case 'n':
        return scan_literal_word(s, "null");
    default:
        if (c == '-' || is_digit(c))
            return scan_number(s);
        return scan_fail(s, "unexpected %s, expected a value", describe_byte(s, what, sizeof what));
    }
}

/* ---- Step 3: duplicate keys and number literals -------------------------------------- */

typedef struct json_walk {
    const char *display;
    const char *text;
    const json_literal *numbers;
    size_t number_count;
    size_t next_number;
    qref_error *err;
} json_walk;

static bool is_identifier(const char *key)
{
    if (!((key[0] >= 'A' && key[0] <= 'Z') || (key[0] >= 'a' && key[0] <= 'z') || key[0] == '_'))
        return false;
    for (const char *p = key + 1; *p != '\0'; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    }
    return true;
}

/* Appends .key or ["key"] to a JSON path (JSONPath notation), truncating when full. */
static void path_append_key(char *path, size_t size, const char *key)
{
    size_t used = strlen(path);
    if (used >= size - 1)
        return;
    if (is_identifier(key))
        snprintf(path + used, size - used, ".%s", key);
    else
        snprintf(path + used, size - used, "[\"%s\"]", key);
}

static void path_append_index(char *path, size_t size, size_t index)
{
    size_t used = strlen(path);
    if (used < size - 1)
        snprintf(path + used, size - used, "[%zu]", index);
}

static int compare_key_pointers(const void *a, const void *b)
{
    const char *const *ka = a;
    const char *const *kb = b;
    return strcmp(*ka, *kb);
}

/* Rejects an object whose members repeat a key. Sorting the keys keeps this O(n log n). */
static qref_status check_unique_keys(json_walk *w, const cJSON *object, const char *path)
{
    size_t count = 0;
    for (const cJSON *child = object->child; child != NULL; child = child->next)
        count++;
    if (count < 2)
        return QREF_OK;

    const char **keys = malloc(count * sizeof *keys);
    if (keys == NULL)
        return qref_error_set(w->err, QREF_ERR_NOMEM, "%s: out of memory while checking JSON keys", w->display);
    size_t i = 0;
    for (const cJSON *child = object->child; child != NULL; child = child->next)
        keys[i++] = child->string;
    qsort(keys, count, sizeof *keys, compare_key_pointers);

    for (i = 1; i < count; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            char key_path[512];
            snprintf(key_path, sizeof key_path, "%s", path);
            path_append_key(key_path, sizeof key_path, keys[i]);
            qref_error_set(w->err, QREF_ERR_INVALID,
                           "%s: duplicate key \"%.200s\" at %s; JSON parsers disagree on which value wins, "
                           "so repeated keys are rejected",
                           w->display, keys[i], key_path);
            free(keys);
            return QREF_ERR_INVALID;
        }
    }
    free(keys);
    return QREF_OK;
}

static qref_status walk_value(json_walk *w, cJSON *item, char *path, size_t path_size)
{
    if (cJSON_IsNumber(item)) {
        if (w->next_number >= w->number_count)
            return qref_error_set(w->err, QREF_ERR_INTERNAL, "%s: cJSON produced more numbers than the text holds",
                                  w->display);
        const json_literal *literal = &w->numbers[w->next_number++];
        char *copy = cJSON_malloc(literal->length + 1);
        if (copy == NULL)
            return qref_error_set(w->err, QREF_ERR_NOMEM, "%s: out of memory while building the JSON tree",
                                  w->display);
        memcpy(copy, w->text + literal->offset, literal->length);
        copy[literal->length] = '\0';
        item->valuestring = copy;
        return QREF_OK;
    }
    if (!cJSON_IsObject(item) && !cJSON_IsArray(item))
        return QREF_OK;

    if (cJSON_IsObject(item)) {
        qref_status status = check_unique_keys(w, item, path);
        if (status != QREF_OK)
            return status;
    }
    size_t path_length = strlen(path);
    size_t index = 0;
    for (cJSON *child = item->child; child != NULL; child = child->next, index++) {
        if (cJSON_IsObject(item))
            path_append_key(path, path_size, child->string);
        else
            path_append_index(path, path_size, index);
        qref_status status = walk_value(w, child, path, path_size);
        path[path_length] = '\0';
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* ---- qref_json_parse ----------------------------------------------------------------- */

qref_status qref_json_parse(const char *display, const char *text, size_t length, int max_depth,
                            cJSON **out, qref_error *err)
{
    *out = NULL;
    if (max_depth < 1 || max_depth > QREF_JSON_MAX_DEPTH)
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: JSON depth limit %d outside [1, %d]", display, max_depth,
                              QREF_JSON_MAX_DEPTH);

    /* Step 1: grammar, depth, UTF-8 and number literals. */
    json_scanner scanner = {
        .display = display, .text = (const unsigned char *)text, .length = length, .max_depth = max_depth, .err = err,
    };
    if (length >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        qref_error_set(err, QREF_ERR_INVALID, "%s: invalid JSON: the text starts with a UTF-8 byte order mark", display);
        return QREF_ERR_INVALID;
    }
    qref_status status = scan_value(&scanner, 0);
    if (status == QREF_OK) {
        skip_space(&scanner);
        if (scanner.pos < length) {
            char what[32];
            status = scan_fail(&scanner, "unexpected %s after the JSON value; only whitespace may follow it",
                               describe_byte(&scanner, what, sizeof what));
        }
    }
    if (status != QREF_OK) {
        free(scanner.numbers);
        return status;
    }

    /* Step 2: the tree. The text is valid JSON, so a failure here is an allocation failure. */
    cJSON *root = cJSON_ParseWithLengthOpts(text, length, NULL, 0);
    if (root == NULL) {
        free(scanner.numbers);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: cJSON could not build the tree of %zu bytes of valid JSON "
                              "(out of memory)", display, length);
    }

    /* Step 3: duplicate keys and exact number literals. */
    json_walk walk = {
        .display = display, .text = text, .numbers = scanner.numbers, .number_count = scanner.number_count, .err = err,
    };
    char path[512] = "$";
    status = walk_value(&walk, root, path, sizeof path);
    if (status == QREF_OK && walk.next_number != scanner.number_count)
        status = qref_error_set(err, QREF_ERR_INTERNAL, "%s: cJSON produced %zu numbers, the text holds %zu", display,
                                walk.next_number, scanner.number_count);
    free(scanner.numbers);
    if (status != QREF_OK) {
        cJSON_Delete(root);
        return status;
    }
    *out = root;
    return QREF_OK;
}

/* ---- Describing values --------------------------------------------------------------- */

const char *qref_json_type_name(const cJSON *item)
{
    if (item == NULL)
        return "nothing";
    if (cJSON_IsObject(item))
        return "an object";
    if (cJSON_IsArray(item))
        return "an array";
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsNull(item))
        return "null";
    return "an invalid value";
}

char *qref_json_describe(const cJSON *item, char *buf, size_t size)
{
    if (size < 32) {
        if (size > 0)
            snprintf(buf, size, "%s", qref_json_type_name(item));
        return buf;
    }
    if (cJSON_IsString(item)) {
        /* Quote the string, escape quotes and control bytes, cut long ones short. */
        size_t used = 0;
        const unsigned char *p = (const unsigned char *)item->valuestring;
        buf[used++] = '"';
        for (; *p != '\0' && used + 24 < size && used < 64; p++) {
            if (*p == '"' || *p == '\\') {
                buf[used++] = '\\';
                buf[used++] = (char)*p;
            } else if (*p < 0x20) {
                used += (size_t)snprintf(buf + used, size - used, "\\u%04x", *p);
            } else {
                buf[used++] = (char)*p;
            }
        }
        snprintf(buf + used, size - used, "%s\" (a string)", *p != '\0' ? "..." : "");
    } else if (cJSON_IsNumber(item)) {
        if (item->valuestring != NULL)
            snprintf(buf, size, "%.60s (a number)", item->valuestring);
        else
            snprintf(buf, size, "%.17g (a number)", item->valuedouble);
    } else if (cJSON_IsBool(item)) {
        snprintf(buf, size, "%s (a boolean)", cJSON_IsTrue(item) ? "true" : "false");
    } else {
        snprintf(buf, size, "%s", qref_json_type_name(item));
    }
    return buf;
}

/* ---- Typed getters ------------------------------------------------------------------- */

/* Parses an integer literal exactly. Returns false for fractions, exponents or overflow. */
static bool literal_to_int(const char *literal, int64_t *out)
{
    const char *p = literal;
    if (*p == '-')
        p++;
    if (*p == '\0')
        return false;
    for (const char *q = p; *q != '\0'; q++) {
        if (!is_digit((unsigned char)*q))
            return false;
    }
    errno = 0;
    char *end = NULL;
    long long value = strtoll(literal, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return false;
    *out = (int64_t)value;
    return true;
}

/* Integer value of a number node: its literal when it has one, else an integral double. */
static bool number_to_int(const cJSON *item, int64_t *out)
{
    if (item->valuestring != NULL)
        return literal_to_int(item->valuestring, out);
    double value = item->valuedouble;
    /* 2^63 is the first double outside int64; every double of smaller magnitude converts. */
    if (!isfinite(value) || value != floor(value) || value >= 0x1p63 || value < -0x1p63)
        return false;
    *out = (int64_t)value;
    return true;
}

qref_status qref_json_item_int(const char *display, const char *label, const cJSON *item,
                               int64_t min, int64_t max, int64_t *out, qref_error *err)
{
    char found[96];
    int64_t value;
    if (!cJSON_IsNumber(item) || !number_to_int(item, &value) || value < min || value > max)
        return qref_error_set(err, QREF_ERR_INVALID,
                              "%s: %s: found %s, expected an integer in [%" PRId64 ", %" PRId64 "]", display, label,
                              qref_json_describe(item, found, sizeof found), min, max);
    *out = value;
    return QREF_OK;
}

/* Looks up key in object. Returns QREF_OK with *item NULL when the key is absent and not required. */
static qref_status find_member(const char *display, const cJSON *object, const char *key, bool required,
                               const char *expected, const cJSON **item, qref_error *err)
{
    *item = NULL;
    if (!cJSON_IsObject(object))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: looking up key \"%s\" in %s, expected an object", display,
                              key, qref_json_type_name(object));
    *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (*item == NULL && required)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: missing required key \"%s\" (expected %s)", display, key,
                              expected);
    return QREF_OK;
}

qref_status qref_json_get_int(const char *display, const cJSON *object, const char *key, bool required,
                              int64_t fallback, int64_t min, int64_t max, int64_t *out, qref_error *err)
{
    const cJSON *item;
    qref_status status = find_member(display, object, key, required, "an integer", &item, err);
    if (status != QREF_OK)
        return status;
    if (item == NULL) {
        *out = fallback;
        return QREF_OK;
    }
    char label[160];
    snprintf(label, sizeof label, "key \"%.120s\"", key);
    return qref_json_item_int(display, label, item, min, max, out, err);
}

qref_status qref_json_get_double(const char *display, const cJSON *object, const char *key,
                                 bool required, double fallback, double *out, qref_error *err)
{
    const cJSON *item;
    qref_status status = find_member(display, object, key, required, "a number", &item, err);
    if (status != QREF_OK)
        return status;
    if (item == NULL) {
        *out = fallback;
        return QREF_OK;
    }
    char found[96];
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: key \"%s\": found %s, expected a finite number", display,
                              key, qref_json_describe(item, found, sizeof found));
    *out = item->valuedouble;
    return QREF_OK;
}

qref_status qref_json_get_bool(const char *display, const cJSON *object, const char *key, bool required,
                               bool fallback, bool *out, qref_error *err)
{
    const cJSON *item;
    qref_status status = find_member(display, object, key, required, "true or false", &item, err);
    if (status != QREF_OK)
        return status;
    if (item == NULL) {
        *out = fallback;
        return QREF_OK;
    }
    char found[96];
    if (!cJSON_IsBool(item))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: key \"%s\": found %s, expected true or false", display,
                              key, qref_json_describe(item, found, sizeof found));
    *out = cJSON_IsTrue(item);
    return QREF_OK;
}

qref_status qref_json_get_string(const char *display, const cJSON *object, const char *key,
                                 bool required, const char *fallback, const char **out, qref_error *err)
{
    const cJSON *item;
    qref_status status = find_member(display, object, key, required, "a string", &item, err);
    if (status != QREF_OK)
        return status;
    if (item == NULL) {
        *out = fallback;
        return QREF_OK;
    }
    char found[96];
    if (!cJSON_IsString(item))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: key \"%s\": found %s, expected a string", display, key,
                              qref_json_describe(item, found, sizeof found));
    *out = item->valuestring;
    return QREF_OK;
}
