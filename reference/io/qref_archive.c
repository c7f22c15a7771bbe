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
 * Caps apply to bytes libarchive actually produced (or, for a skipped entry with a size in
 * its header, to that size, which is what skipping decompresses), never to sizes in headers
 * alone, so a lying header cannot make a kept file bigger than the cap.
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

#define ARCHIVE_BLOCK_SIZE 65536
#define ARCHIVE_MAX_COMPONENT 255

void qref_archive_limits_init(qref_archive_limits *limits)
{
    limits->max_entries = QREF_ARCHIVE_MAX_ENTRIES;
    limits->max_name_length = QREF_ARCHIVE_MAX_NAME;
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
    uint64_t produced;
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

/* Counts n more decompressed bytes against the total and ratio caps. */
static qref_status charge_bytes(archive_reader *r, const char *raw, uint64_t n)
{
    char shown[512];
    if (n > r->limits.max_total_bytes - r->produced)
        return qref_error_set(r->err, QREF_ERR_NOMEM,
                              "%s: entry \"%s\": the archive decompresses to more than the limit of %" PRIu64 " bytes",
                              r->path, printable_name(raw, shown, sizeof shown), r->limits.max_total_bytes);
    r->produced += n;
    uint64_t archive_size = r->archive_size > 0 ? r->archive_size : 1;
    if (r->produced > r->limits.ratio_floor_bytes && r->produced / archive_size >= r->limits.max_ratio)
        return qref_error_set(r->err, QREF_ERR_NOMEM,
                              "%s: entry \"%s\": %" PRIu64 " bytes decompressed from a %" PRIu64
                              "-byte archive exceed the compression ratio limit of %" PRIu64 ":1 (archive bomb?)",
                              r->path, printable_name(raw, shown, sizeof shown), r->produced, r->archive_size,
                              r->limits.max_ratio);
    return QREF_OK;
}

static qref_status archive_failure(archive_reader *r, struct archive *a, const char *raw, const char *what)
{
    char shown[512];
    const char *reason = archive_error_string(a);
    return qref_error_set(r->err, QREF_ERR_INVALID, "%s: entry \"%s\": %s: %s", r->path,
                          printable_name(raw, shown, sizeof shown), what, reason != NULL ? reason : "unknown error");
}

/* Skips an entry's data, counting what skipping decompresses. */
static qref_status skip_entry_data(archive_reader *r, struct archive *a, struct archive_entry *entry, const char *raw)
{
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) >= 0) {
        qref_status status = charge_bytes(r, raw, (uint64_t)archive_entry_size(entry));
        if (status != QREF_OK)
            return status;
        if (archive_read_data_skip(a) != ARCHIVE_OK)
            return archive_failure(r, a, raw, "cannot skip the entry data");
        return QREF_OK;
    }
    /* No size in the header: read and discard, so the caps see every byte. */
    char scratch[ARCHIVE_BLOCK_SIZE];
    for (;;) {
        la_ssize_t n = archive_read_data(a, scratch, sizeof scratch);
        if (n < 0)
            return archive_failure(r, a, raw, "cannot read the entry data");
        if (n == 0)
            return QREF_OK;
        qref_status status = charge_bytes(r, raw, (uint64_t)n);
        if (status != QREF_OK)
            return status;
    }
}

/* Reads an entry's data into a heap buffer owned by blob. */
static qref_status read_entry_data(archive_reader *r, struct archive *a, struct archive_entry *entry,
                                   const char *raw, qref_blob *blob)
{
    /* Start from the declared size when it fits the budget, plus one byte for the read that returns EOF. */
    uint64_t remaining = r->limits.max_total_bytes - r->produced;
    uint64_t capacity = 1 << 20;
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) >= 0 &&
        (uint64_t)archive_entry_size(entry) <= remaining)
        capacity = (uint64_t)archive_entry_size(entry) + 1;
    if (capacity - 1 > remaining)
        capacity = remaining + 1;
    if (capacity > SIZE_MAX)
        capacity = SIZE_MAX;

    uint8_t *buffer = malloc((size_t)capacity);
    if (buffer == NULL)
        return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory for %" PRIu64 " bytes of an entry", r->path,
                              capacity);
    size_t size = 0;
    for (;;) {
        if (size == capacity) {
            /* Grow up to one byte past the budget, so an entry over the cap is seen as such. */
            uint64_t budget = r->limits.max_total_bytes - r->produced;
            uint64_t grown_capacity = capacity * 2;
            if (grown_capacity - size - 1 > budget)
                grown_capacity = size + budget + 1;
            uint8_t *grown = grown_capacity > capacity ? realloc(buffer, (size_t)grown_capacity) : NULL;
            if (grown == NULL) {
                free(buffer);
                return qref_error_set(r->err, QREF_ERR_NOMEM, "%s: out of memory for %" PRIu64
                                      " bytes of an entry", r->path, grown_capacity);
            }
            buffer = grown;
            capacity = grown_capacity;
        }
        la_ssize_t n = archive_read_data(a, buffer + size, (size_t)(capacity - size));
        if (n < 0) {
            free(buffer);
            return archive_failure(r, a, raw, "cannot read the entry data");
        }
        if (n == 0)
            break;
        qref_status status = charge_bytes(r, raw, (uint64_t)n);
        if (status != QREF_OK) {
            free(buffer);
            return status;
        }
        size += (size_t)n;
    }
    qref_blob_adopt(blob, buffer, size);
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
            status = qref_error_set(r->err, QREF_ERR_NOMEM, "%s: the archive holds more than %zu entries", r->path,
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

qref_status qref_archive_read_files(const char *path, const qref_archive_limits *limits,
                                    qref_archive_file **files, size_t *count, qref_error *err)
{
    *files = NULL;
    *count = 0;
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
    if (status == QREF_OK)
        status = check_duplicate_names(&r);

    /* Step 2: strip the common folder, or keep only true top-level files. */
    int keep_depth = r.strip_possible && r.top != NULL ? 2 : 1;
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
