/*
 * Archive reading through libarchive, entirely in memory.
 *
 * One pass over the entries: each header is checked (type, name, limits) before any data is
 * read, kept files are read into heap buffers, and every other file is skipped. Whether a
 * common top-level folder can be stripped is only known at the end. So the pass keeps the
 * files that are top level under either reading, one component or two under the first
 * entry's folder, and drops one of the two groups at the end.
 *
 * Names are checked as libarchive returns them. Its zip reader (3.6.2) already turns a
 * backslash into "/", so "..\x" in a zip meets the ".." rule rather than the backslash rule.
 *
 * A size in an entry header is checked against the caps before anything is allocated, so a
 * bomb with an honest header fails at once. The caps then apply to the bytes libarchive actually
 * produced, checked after each block of at most ARCHIVE_BLOCK_SIZE bytes. A skipped entry with a
 * size in its header is charged that size, which is what skipping decompresses. So a header that
 * lies low cannot make a kept file, or its buffer, more than one byte bigger than the cap.
 */
#include "io/qref_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "io/qref_json.h"

/* Bytes libarchive reads from the file at a time, and decompressed bytes read per check. */
#define ARCHIVE_BLOCK_SIZE 65536
/* First buffer of an entry without a declared size, and the most a buffer grows at once. */
#define ARCHIVE_FIRST_CAPACITY ((uint64_t)1 << 20)
#define ARCHIVE_GROW_STEP ((uint64_t)256 << 20)
#define ARCHIVE_MAX_COMPONENT 255

void qref_archive_limits_init(qref_archive_limits *limits)
{
    limits->max_entries = QREF_ARCHIVE_MAX_ENTRIES;
    limits->max_name_length = QREF_ARCHIVE_MAX_NAME;
    limits->max_entry_bytes = QREF_ARCHIVE_MAX_ENTRY_BYTES;
    limits->max_total_bytes = QREF_ARCHIVE_MAX_TOTAL_BYTES;
    limits->max_ratio = QREF_ARCHIVE_MAX_RATIO;
    limits->ratio_floor_bytes = QREF_ARCHIVE_RATIO_FLOOR_BYTES;
}

void qref_archive_files_free(qref_archive_file *files, size_t count)
{
    if (files == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        free(files[i].name);
        qref_blob_free(&files[i].blob);
    }
    free(files);
}

/* A name seen in the archive, for the duplicate check. */
typedef struct seen_name {
    char *name;
    bool is_dir;
} seen_name;

/* A file kept during the pass, at depth 1 (top level) or 2 (under the candidate folder). */
typedef struct kept_file {
    qref_archive_file file;
    int depth;
} kept_file;

typedef struct archive_reader {
    const char *path;
    qref_archive_limits limits;
    uint64_t archive_size;
    uint64_t produced;       /* bytes counted against the caps so far */
    uint64_t largest_buffer; /* capacity of the largest entry buffer allocated */
    size_t entry_count;

    seen_name *names;
    size_t name_count, name_capacity;
    kept_file *kept;
    size_t kept_count, kept_capacity;

    char *top;           /* first component of the first entry */
    bool strip_possible; /* every entry so far sits under top */
    qref_error *err;
} archive_reader;

/* Writes name with control and non-ASCII bytes as \xNN, cut at 200 bytes, for messages. */
static const char *printable_name(const char *name, char *buf, size_t size)
{
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0' && used + 5 < size && used < 200; p++) {
        if (*p < 0x20 || *p >= 0x7f)
            used += (size_t)snprintf(buf + used, size - used, "\\x%02x", *p);
        else
            buf[used++] = (char)*p;
    }
    buf[used] = '\0';
    return buf;
}

/* Rejects the entry named raw for breaking rule; the message names archive, entry and rule. */
__attribute__((format(printf, 3, 4)))
static qref_status reject_entry(archive_reader *r, const char *raw, const char *fmt, ...)
{
    char rule[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(rule, sizeof rule, fmt, args);
    va_end(args);
    char shown[1024];
    return qref_error_set(r->err, QREF_ERR_INVALID, "%s: entry \"%s\" rejected: %s; nothing was extracted", r->path,
                          printable_name(raw, shown, sizeof shown), rule);
}

/* ---- Names ----------------------------------------------------------------------------- */

/*
 * Checks an entry name and writes its normalized form ("." and empty components dropped)
 * into *normalized; *components gets the component count (0 for the archive root "./").
 */
static qref_status normalize_name(archive_reader *r, const char *raw, char **normalized, size_t *components)
{
    *normalized = NULL;
    *components = 0;
    size_t length = strlen(raw);
    if (length == 0)
        return reject_entry(r, raw, "the name is empty");
    if (length > r->limits.max_name_length)
        return reject_entry(r, raw, "the name is %zu bytes long, the limit is %zu", length, r->limits.max_name_length);
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c < 0x20 || c == 0x7f)
            return reject_entry(r, raw, "the name contains the control character 0x%02x", c);
        if (c == '\\')
            return reject_entry(r, raw, "the name contains a backslash, which Windows reads as a folder separator");
    }
    if (!qref_json_utf8_valid(raw, length))
        return reject_entry(r, raw, "the name is not valid UTF-8");
    if (raw[0] == '/')
        return reject_entry(r, raw, "the name is an absolute path");
    if (((raw[0] >= 'A' && raw[0] <= 'Z') || (raw[0] >= 'a' && raw[0] <= 'z')) && raw[1] == ':')
        return reject_entry(r, raw, "the name starts with a drive letter");

    char *out = malloc(length + 1);
    if (out == NULL)
        return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory", r->path);
    size_t used = 0;
    const char *p = raw;
    while (*p != '\0') {
        const char *slash = strchr(p, '/');
        size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            free(out);
            return reject_entry(r, raw, "the name has a \"..\" component, which could point outside the snapshot");
        }
        if (n > ARCHIVE_MAX_COMPONENT) {
            free(out);
            return reject_entry(r, raw, "a name component is %zu bytes long, the limit is %d", n,
                                ARCHIVE_MAX_COMPONENT);
        }
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (used > 0)
                out[used++] = '/';
            memcpy(out + used, p, n);
            used += n;
            (*components)++;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    out[used] = '\0';
    *normalized = out;
    return QREF_OK;
}

static qref_status remember_name(archive_reader *r, char *name, bool is_dir)
{
    if (r->name_count == r->name_capacity) {
        size_t capacity = r->name_capacity ? r->name_capacity * 2 : 64;
        seen_name *grown = realloc(r->names, capacity * sizeof *grown);
        if (grown == NULL) {
            free(name);
            return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory", r->path);
        }
        r->names = grown;
        r->name_capacity = capacity;
    }
    r->names[r->name_count++] = (seen_name){name, is_dir};
    return QREF_OK;
}

static int compare_seen_names(const void *a, const void *b)
{
    const seen_name *na = a;
    const seen_name *nb = b;
    int order = strcasecmp(na->name, nb->name);
    return order != 0 ? order : strcmp(na->name, nb->name);
}

/*
 * Rejects two entries with the same name, or names that differ only in ASCII case.
 * TODO: names equal after Unicode case folding or normalization are not detected.
 */
static qref_status check_duplicate_names(archive_reader *r)
{
    if (r->name_count > 1)
        qsort(r->names, r->name_count, sizeof *r->names, compare_seen_names);
    for (size_t i = 1; i < r->name_count; i++) {
        const seen_name *a = &r->names[i - 1];
        const seen_name *b = &r->names[i];
        if (strcasecmp(a->name, b->name) != 0 || (a->is_dir && b->is_dir))
            continue;
        if (strcmp(a->name, b->name) == 0)
            return reject_entry(r, b->name, "another entry has the same name");
        char shown[512];
        return reject_entry(r, b->name, "it differs from entry \"%s\" only in letter case",
                            printable_name(a->name, shown, sizeof shown));
    }
    return QREF_OK;
}

/* ---- Entry types ----------------------------------------------------------------------- */

static qref_status check_entry_type(archive_reader *r, struct archive_entry *entry, const char *raw)
{
    char shown[512];
    const char *link = archive_entry_hardlink(entry);
    if (link != NULL)
        return reject_entry(r, raw, "it is a hard link (to \"%s\"); only regular files and directories are accepted",
                            printable_name(link, shown, sizeof shown));
    switch (archive_entry_filetype(entry)) {
    case AE_IFREG:
        break;
    case AE_IFDIR:
        return QREF_OK;
    case AE_IFLNK:
        link = archive_entry_symlink(entry);
        return reject_entry(r, raw,
                            "it is a symbolic link (to \"%s\"); only regular files and directories are accepted",
                            printable_name(link != NULL ? link : "", shown, sizeof shown));
    case AE_IFCHR:
    case AE_IFBLK:
        return reject_entry(r, raw, "it is a device node; only regular files and directories are accepted");
    case AE_IFIFO:
        return reject_entry(r, raw, "it is a FIFO; only regular files and directories are accepted");
    case AE_IFSOCK:
        return reject_entry(r, raw, "it is a socket; only regular files and directories are accepted");
    default:
        return reject_entry(r, raw, "it has file type 0%o; only regular files and directories are accepted",
                            (unsigned)archive_entry_filetype(entry));
    }
    if (archive_entry_sparse_count(entry) > 0)
        return reject_entry(r, raw, "it is a sparse file, which a snapshot never needs");
    return QREF_OK;
}

/* ---- Data ------------------------------------------------------------------------------ */

static uint64_t add_saturated(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/*
 * Largest total that passes the ratio check. The check fails once total > ratio_floor_bytes
 * and total / archive_size >= max_ratio, that is total >= max_ratio * archive_size.
 */
static uint64_t ratio_allowed_total(const archive_reader *r)
{
    uint64_t archive_size = r->archive_size > 0 ? r->archive_size : 1;
    uint64_t product = r->limits.max_ratio > UINT64_MAX / archive_size ? UINT64_MAX
                                                                       : r->limits.max_ratio * archive_size;
    uint64_t allowed = product > 0 ? product - 1 : 0;
    return allowed > r->limits.ratio_floor_bytes ? allowed : r->limits.ratio_floor_bytes;
}

/* Bytes the current entry may still produce after entry_bytes, under all three byte caps. */
static uint64_t entry_budget(const archive_reader *r, uint64_t entry_bytes)
{
    uint64_t allowed_total = min_u64(r->limits.max_total_bytes, ratio_allowed_total(r));
    uint64_t entry_left = r->limits.max_entry_bytes > entry_bytes ? r->limits.max_entry_bytes - entry_bytes : 0;
    uint64_t total_left = allowed_total > r->produced ? allowed_total - r->produced : 0;
    return min_u64(entry_left, total_left);
}

/*
 * Checks an entry of entry_bytes bytes that brings the archive to total bytes against the
 * per-entry, total and ratio caps. declared is true for sizes from the entry header, checked
 * before reading, and false for bytes produced by decompression, checked after each block.
 */
static qref_status check_byte_caps(archive_reader *r, const char *raw, uint64_t entry_bytes, uint64_t total,
                                   bool declared)
{
    char shown[512];
    const char *name = printable_name(raw, shown, sizeof shown);
    const char *stop = declared ? "the entry was not read" : "reading stopped there";
    if (entry_bytes > r->limits.max_entry_bytes)
        return qref_error_set(r->err, QREF_ERR_INVALID,
                              "%s: entry \"%s\" %s %" PRIu64 " bytes, more than the limit of %" PRIu64
                              " bytes for one entry; %s",
                              r->path, name, declared ? "declares" : "decompressed to", entry_bytes,
                              r->limits.max_entry_bytes, stop);
    if (total > r->limits.max_total_bytes)
        return qref_error_set(r->err, QREF_ERR_INVALID,
                              "%s: entry \"%s\": the archive decompresses to more than the limit of %" PRIu64
                              " bytes (%" PRIu64 " bytes %s through this entry); %s",
                              r->path, name, r->limits.max_total_bytes, total, declared ? "declared" : "decompressed",
                              stop);
    uint64_t archive_size = r->archive_size > 0 ? r->archive_size : 1;
    if (total > r->limits.ratio_floor_bytes && total / archive_size >= r->limits.max_ratio)
        return qref_error_set(r->err, QREF_ERR_INVALID,
                              "%s: entry \"%s\": %" PRIu64 " bytes %s through this entry, %" PRIu64
                              " times the %" PRIu64 "-byte archive, break the compression ratio limit of %" PRIu64
                              ":1 (archive bomb?); %s",
                              r->path, name, total, declared ? "declared" : "decompressed", total / archive_size,
                              r->archive_size, r->limits.max_ratio, stop);
    return QREF_OK;
}

static qref_status archive_failure(archive_reader *r, struct archive *a, const char *raw, const char *what)
{
    char shown[512];
    const char *reason = archive_error_string(a);
    return qref_error_set(r->err, QREF_ERR_INVALID, "%s: entry \"%s\": %s: %s", r->path,
                          printable_name(raw, shown, sizeof shown), what, reason != NULL ? reason : "unknown error");
}

/* True, with the size, when the entry header declares the data size. */
static bool declared_size(struct archive_entry *entry, uint64_t *size)
{
    if (!archive_entry_size_is_set(entry) || archive_entry_size(entry) < 0)
        return false;
    *size = (uint64_t)archive_entry_size(entry);
    return true;
}

/* Skips an entry's data, counting what skipping decompresses. */
static qref_status skip_entry_data(archive_reader *r, struct archive *a, struct archive_entry *entry, const char *raw)
{
    uint64_t size;
    if (declared_size(entry, &size)) {
        /* Skipping a compressed tar entry decompresses its declared size; a zip reader seeks past the data. */
        qref_status status = check_byte_caps(r, raw, size, add_saturated(r->produced, size), true);
        if (status != QREF_OK)
            return status;
        r->produced += size;
        if (archive_read_data_skip(a) != ARCHIVE_OK)
            return archive_failure(r, a, raw, "cannot skip the entry data");
        return QREF_OK;
    }

    /* No size in the header: read and discard, at most one byte past the caps. */
    char scratch[ARCHIVE_BLOCK_SIZE];
    uint64_t entry_bytes = 0;
    for (;;) {
        uint64_t request = min_u64(sizeof scratch, add_saturated(entry_budget(r, entry_bytes), 1));
        la_ssize_t n = archive_read_data(a, scratch, (size_t)request);
        if (n < 0)
            return archive_failure(r, a, raw, "cannot read the entry data");
        if (n == 0)
            return QREF_OK;
        entry_bytes += (uint64_t)n;
        r->produced = add_saturated(r->produced, (uint64_t)n);
        qref_status status = check_byte_caps(r, raw, entry_bytes, r->produced, false);
        if (status != QREF_OK)
            return status;
    }
}

/*
 * Reads an entry's data into a heap buffer owned by blob.
 *
 * The buffer starts at the declared size (already checked against the caps) or 1 MiB, grows
 * by doubling, at most ARCHIVE_GROW_STEP at a time, and never past the entry's remaining budget
 * plus one byte. Filling that last byte breaks a cap, so an entry over a cap fails right at the
 * cap and its buffer never exceeds the cap by more than one byte.
 */
static qref_status read_entry_data(archive_reader *r, struct archive *a, struct archive_entry *entry,
                                   const char *raw, qref_blob *blob)
{
    /* Step 1: a declared size must fit every cap before anything is allocated. */
    uint64_t size_declared = 0;
    bool has_size = declared_size(entry, &size_declared);
    if (has_size) {
        qref_status status =
            check_byte_caps(r, raw, size_declared, add_saturated(r->produced, size_declared), true);
        if (status != QREF_OK)
            return status;
    }
    uint64_t ceiling = min_u64(add_saturated(entry_budget(r, 0), 1), SIZE_MAX);
    uint64_t capacity = min_u64(has_size ? size_declared + 1 : ARCHIVE_FIRST_CAPACITY, ceiling);

    /* Step 2: read block by block, checking the bytes produced after each block. */
    uint8_t *buffer = malloc((size_t)capacity);
    if (buffer == NULL)
        return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory for %" PRIu64 " bytes of an entry", r->path,
                              capacity);
    if (capacity > r->largest_buffer)
        r->largest_buffer = capacity;
    uint64_t size = 0;
    for (;;) {
        if (size == capacity) {
            /* Not reached at the ceiling: the byte that filled it broke a cap below. */
            uint64_t grown_capacity = min_u64(min_u64(capacity * 2, capacity + ARCHIVE_GROW_STEP), ceiling);
            uint8_t *grown = grown_capacity > capacity ? realloc(buffer, (size_t)grown_capacity) : NULL;
            if (grown == NULL) {
                free(buffer);
                return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory for %" PRIu64
                                      " bytes of an entry", r->path, grown_capacity);
            }
            buffer = grown;
            capacity = grown_capacity;
            if (capacity > r->largest_buffer)
                r->largest_buffer = capacity;
        }
        uint64_t request = min_u64(capacity - size, ARCHIVE_BLOCK_SIZE);
        la_ssize_t n = archive_read_data(a, buffer + size, (size_t)request);
        if (n < 0) {
            free(buffer);
            return archive_failure(r, a, raw, "cannot read the entry data");
        }
        if (n == 0)
            break;
        size += (uint64_t)n;
        r->produced = add_saturated(r->produced, (uint64_t)n);
        qref_status status = check_byte_caps(r, raw, size, r->produced, false);
        if (status != QREF_OK) {
            free(buffer);
            return status;
        }
    }
    qref_blob_adopt(blob, buffer, (size_t)size);
    return QREF_OK;
}

/* ---- One entry ------------------------------------------------------------------------- */

static qref_status keep_file(archive_reader *r, char *name, int depth, qref_blob *blob)
{
    if (r->kept_count == r->kept_capacity) {
        size_t capacity = r->kept_capacity ? r->kept_capacity * 2 : 16;
        kept_file *grown = realloc(r->kept, capacity * sizeof *grown);
        if (grown == NULL) {
            free(name);
            qref_blob_free(blob);
            return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory", r->path);
        }
        r->kept = grown;
        r->kept_capacity = capacity;
    }
    r->kept[r->kept_count++] = (kept_file){{name, *blob}, depth};
    return QREF_OK;
}

/* Length of the first component of a normalized name. */
static size_t first_component_length(const char *name)
{
    const char *slash = strchr(name, '/');
    return slash != NULL ? (size_t)(slash - name) : strlen(name);
}

static qref_status read_entry(archive_reader *r, struct archive *a, struct archive_entry *entry)
{
    const char *raw = archive_entry_pathname(entry);
    if (raw == NULL)
        raw = archive_entry_pathname_utf8(entry);
    if (raw == NULL)
        return qref_error_set(r->err, QREF_ERR_INVALID, "%s: entry %zu has no readable name", r->path, r->entry_count);

    /* Step 1: type and name. */
    qref_status status = check_entry_type(r, entry, raw);
    if (status != QREF_OK)
        return status;
    bool is_dir = archive_entry_filetype(entry) == AE_IFDIR;
    char *name;
    size_t components;
    status = normalize_name(r, raw, &name, &components);
    if (status != QREF_OK)
        return status;
    if (components == 0) {
        free(name);
        if (is_dir)
            return QREF_OK; /* "./", the archive root */
        return reject_entry(r, raw, "a file needs a name besides \".\" and \"/\"");
    }

    /* Step 2: does every entry so far sit under one top-level folder? */
    size_t top_length = first_component_length(name);
    if (r->top == NULL) {
        r->top = strndup(name, top_length);
        if (r->top == NULL) {
            free(name);
            return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory", r->path);
        }
    }
    if ((!is_dir && components == 1) || strlen(r->top) != top_length || strncmp(name, r->top, top_length) != 0)
        r->strip_possible = false;

    char *kept_name = NULL;
    if (!is_dir && (components == 1 || (components == 2 && r->strip_possible))) {
        kept_name = strdup(name);
        if (kept_name == NULL) {
            free(name);
            return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory", r->path);
        }
    }
    status = remember_name(r, name, is_dir);
    if (status != QREF_OK) {
        free(kept_name);
        return status;
    }
    if (is_dir)
        return QREF_OK;

    /* Step 3: the data, kept or skipped. */
    if (kept_name == NULL)
        return skip_entry_data(r, a, entry, raw);
    qref_blob blob;
    status = read_entry_data(r, a, entry, raw, &blob);
    if (status != QREF_OK) {
        free(kept_name);
        return status;
    }
    return keep_file(r, kept_name, (int)components, &blob);
}

/* ---- The pass -------------------------------------------------------------------------- */

/*
 * Enables tar, zip and the built-in filters, never a filter that runs an external program.
 * TODO: zip local headers are not compared with the central directory beyond libarchive's own checks.
 */
static qref_status enable_formats(archive_reader *r, struct archive *a)
{
    if (archive_read_support_format_tar(a) != ARCHIVE_OK || archive_read_support_format_zip(a) != ARCHIVE_OK)
        return qref_error_set(r->err, QREF_ERR_INTERNAL, "%s: libarchive cannot read tar or zip: %s", r->path,
                              archive_error_string(a));
    struct {
        const char *(*version)(void);
        int (*enable)(struct archive *);
        const char *name;
    } filters[] = {
        {archive_zlib_version, archive_read_support_filter_gzip, "gzip"},
        {archive_liblzma_version, archive_read_support_filter_xz, "xz"},
        {archive_libzstd_version, archive_read_support_filter_zstd, "zstd"},
    };
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        if (filters[i].version() == NULL)
            continue;
        if (filters[i].enable(a) != ARCHIVE_OK)
            return qref_error_set(r->err, QREF_ERR_INTERNAL, "%s: libarchive has no built-in %s decoder: %s",
                                  r->path, filters[i].name, archive_error_string(a));
    }
    return QREF_OK;
}

static qref_status read_all_entries(archive_reader *r)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory", r->path);
    qref_status status = enable_formats(r, a);
    /* The caller has checked that the file opens, so a failure here is about its content. */
    if (status == QREF_OK && archive_read_open_filename(a, r->path, ARCHIVE_BLOCK_SIZE) != ARCHIVE_OK)
        status = qref_error_set(r->err, QREF_ERR_INVALID, "%s: not a readable tar or zip archive: %s", r->path,
                                archive_error_string(a));
    while (status == QREF_OK) {
        struct archive_entry *entry;
        int result = archive_read_next_header(a, &entry);
        if (result == ARCHIVE_EOF)
            break;
        if (result != ARCHIVE_OK) {
            /* NOTE: a warning also stops the read, e.g. a name libarchive cannot convert to the locale. */
            const char *reason = archive_error_string(a);
            status = qref_error_set(r->err, QREF_ERR_INVALID, "%s: cannot read the header of entry %zu: %s", r->path,
                                    r->entry_count, reason != NULL ? reason : "unknown error");
            break;
        }
        if (++r->entry_count > r->limits.max_entries) {
            status = qref_error_set(r->err, QREF_ERR_INVALID, "%s: the archive holds more than %zu entries", r->path,
                                    r->limits.max_entries);
            break;
        }
        status = read_entry(r, a, entry);
    }
    archive_read_free(a);
    return status;
}

static int compare_files(const void *a, const void *b)
{
    return strcmp(((const qref_archive_file *)a)->name, ((const qref_archive_file *)b)->name);
}

/* A top-level folder name: the first component of a normalized entry name. */
typedef struct folder_name {
    const char *start;
    size_t length;
} folder_name;

static int compare_folder_names(const void *a, const void *b)
{
    const folder_name *fa = a;
    const folder_name *fb = b;
    size_t n = fa->length < fb->length ? fa->length : fb->length;
    int order = memcmp(fa->start, fb->start, n);
    if (order != 0)
        return order;
    return fa->length < fb->length ? -1 : fa->length > fb->length;
}

/* Counts the distinct top-level folders of the entries seen, and names the first two in name order. */
static qref_status find_top_folders(archive_reader *r, qref_archive_info *info)
{
    folder_name *folders = malloc((r->name_count ? r->name_count : 1) * sizeof *folders);
    if (folders == NULL)
        return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory", r->path);
    size_t count = 0;
    for (size_t i = 0; i < r->name_count; i++) {
        const char *name = r->names[i].name;
        size_t length = first_component_length(name);
        if (r->names[i].is_dir || name[length] == '/')
            folders[count++] = (folder_name){name, length};
    }
    if (count > 1)
        qsort(folders, count, sizeof *folders, compare_folder_names);
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && compare_folder_names(&folders[i - 1], &folders[i]) == 0)
            continue;
        if (info->top_folder_count < 2) {
            /* Components are at most ARCHIVE_MAX_COMPONENT (255) bytes, so the name fits. */
            char *slot = info->top_folders[info->top_folder_count];
            memcpy(slot, folders[i].start, folders[i].length);
            slot[folders[i].length] = '\0';
        }
        info->top_folder_count++;
    }
    free(folders);
    return QREF_OK;
}

qref_status qref_archive_read_files(const char *path, const qref_archive_limits *limits,
                                    qref_archive_file **files, size_t *count, qref_error *err)
{
    return qref_archive_read_files_info(path, limits, files, count, NULL, err);
}

qref_status qref_archive_read_files_info(const char *path, const qref_archive_limits *limits,
                                         qref_archive_file **files, size_t *count,
                                         qref_archive_info *info, qref_error *err)
{
    *files = NULL;
    *count = 0;
    qref_archive_info scratch_info;
    if (info == NULL)
        info = &scratch_info;
    memset(info, 0, sizeof *info);
    archive_reader r = {.path = path, .strip_possible = true, .err = err};
    if (limits != NULL)
        r.limits = *limits;
    else
        qref_archive_limits_init(&r.limits);
    struct stat st;
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return qref_error_set(err, QREF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int stat_result = fstat(fileno(file), &st);
    fclose(file);
    if (stat_result != 0 || !S_ISREG(st.st_mode))
        return qref_error_set(err, QREF_ERR_IO, "%s: not a regular file", path);
    r.archive_size = (uint64_t)st.st_size;

    /* Step 1: every entry, checked; top-level candidates read into memory. */
    qref_status status = read_all_entries(&r);
    info->bytes_produced = r.produced;
    info->largest_buffer = r.largest_buffer;
    if (status == QREF_OK)
        status = check_duplicate_names(&r);
    if (status == QREF_OK)
        status = find_top_folders(&r, info);

    /* Step 2: strip the common folder, or keep only true top-level files. */
    int keep_depth = r.strip_possible && r.top != NULL ? 2 : 1;
    info->top_folder_stripped = status == QREF_OK && keep_depth == 2;
    qref_archive_file *out = NULL;
    size_t out_count = 0;
    if (status == QREF_OK && r.kept_count > 0) {
        out = calloc(r.kept_count, sizeof *out);
        if (out == NULL)
            status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < r.kept_count; i++) {
        kept_file *k = &r.kept[i];
        if (status != QREF_OK || k->depth != keep_depth) {
            free(k->file.name);
            qref_blob_free(&k->file.blob);
            continue;
        }
        if (keep_depth == 2) {
            size_t skip = first_component_length(k->file.name) + 1;
            memmove(k->file.name, k->file.name + skip, strlen(k->file.name + skip) + 1);
        }
        out[out_count++] = k->file;
    }
    if (out_count > 1)
        qsort(out, out_count, sizeof *out, compare_files);

    for (size_t i = 0; i < r.name_count; i++)
        free(r.names[i].name);
    free(r.names);
    free(r.kept);
    free(r.top);
    if (status != QREF_OK) {
        qref_archive_files_free(out, out_count);
        return status;
    }
    *files = out;
    *count = out_count;
    return QREF_OK;
}
