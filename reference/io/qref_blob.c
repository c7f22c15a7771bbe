/* realpath() is an X/Open System Interfaces function. */
#define _XOPEN_SOURCE 700

#include "io/qref_blob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

qref_status qref_blob_map_file(const char *path, qref_blob *blob, qref_error *err)
{
    memset(blob, 0, sizeof *blob);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qref_error_set(err, QREF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));

    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        return qref_error_set(err, QREF_ERR_IO, "%s: cannot stat: %s", path, strerror(saved));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qref_error_set(err, QREF_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return QREF_OK;
    }

    void *mapping = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (mapping == MAP_FAILED)
        return qref_error_set(err, QREF_ERR_IO, "%s: cannot mmap %lld bytes: %s", path,
                              (long long)st.st_size, strerror(saved));
    blob->data = mapping;
    blob->size = (size_t)st.st_size;
    blob->mapping = mapping;
    blob->mapping_size = (size_t)st.st_size;
    return QREF_OK;
}

void qref_blob_adopt(qref_blob *blob, void *buffer, size_t size)
{
    memset(blob, 0, sizeof *blob);
    blob->data = buffer;
    blob->size = size;
    blob->owned = buffer;
}

void qref_blob_free(qref_blob *blob)
{
    if (blob->mapping != NULL)
        munmap(blob->mapping, blob->mapping_size);
    free(blob->owned);
    memset(blob, 0, sizeof *blob);
}

qref_status qref_file_read_all(const char *path, size_t max_size, char **out, size_t *out_size,
                               qref_error *err)
{
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return qref_error_set(err, QREF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));

    size_t capacity = 4096, size = 0;
    char *buffer = malloc(capacity + 1);
    while (buffer != NULL) {
        size_t got = fread(buffer + size, 1, capacity - size, file);
        size += got;
        if (got == 0)
            break;
        if (size > max_size)
            break;
        if (size == capacity) {
            capacity *= 2;
            char *grown = realloc(buffer, capacity + 1);
            if (grown == NULL) {
                free(buffer);
                buffer = NULL;
            } else {
                buffer = grown;
            }
        }
    }
    int read_failed = ferror(file);
    fclose(file);

    if (buffer == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory while reading", path);
    if (read_failed) {
        free(buffer);
        return qref_error_set(err, QREF_ERR_IO, "%s: read failed", path);
    }
    if (size > max_size) {
        free(buffer);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: file size exceeds the limit of %zu bytes",
                              path, max_size);
    }
    buffer[size] = '\0';
    *out = buffer;
    if (out_size != NULL)
        *out_size = size;
    return QREF_OK;
}

/*
 * Resolves the path to write: a symbolic link is followed to its target, so the link stays and
 * the target is replaced; an existing path that is not a regular file (a device such as
 * /dev/stdout, a FIFO, a folder) is refused, because renaming over it would replace it.
 */
static qref_status resolve_output_path(const char *path, char **out, qref_error *err)
{
    struct stat st;
    *out = NULL;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT)
            return qref_error_set(err, QREF_ERR_IO, "%s: cannot inspect the output path: %s", path, strerror(errno));
        *out = strdup(path);
    } else if (S_ISREG(st.st_mode)) {
        *out = strdup(path);
    } else if (S_ISLNK(st.st_mode)) {
        char *target = realpath(path, NULL);
        if (target == NULL || stat(target, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(target);
            return qref_error_set(err, QREF_ERR_IO, "%s: the output path is a symbolic link to something other "
                                  "than a regular file; expected a regular file or a new path", path);
        }
        *out = target;
    } else {
        return qref_error_set(err, QREF_ERR_IO, "%s: the output path exists and is not a regular file; expected a "
                              "regular file or a new path (use - for standard output where a command offers it)",
                              path);
    }
    if (*out == NULL)
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    return QREF_OK;
}

qref_status qref_atomic_file_open(qref_atomic_file *file, const char *path, qref_error *err)
{
    memset(file, 0, sizeof *file);
    file->fd = -1;
    qref_status status = resolve_output_path(path, &file->path, err);
    if (status != QREF_OK)
        return status;
    path = file->path;
    size_t length = strlen(path);
    file->temp_path = malloc(length + 16);
    if (file->path == NULL || file->temp_path == NULL) {
        qref_atomic_file_abort(file);
        return qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(file->temp_path, length + 16, "%s.tmp.XXXXXX", path);
    file->fd = mkstemp(file->temp_path);
    if (file->fd < 0) {
        if (errno == ENOENT) {
            /* name the folder that is missing rather than the temporary file */
            const char *slash = strrchr(path, '/');
            int folder = slash == NULL || slash == path ? 1 : (int)(slash - path);
            qref_error_set(err, QREF_ERR_IO, "%s: the folder %.*s does not exist; create it first", path, folder,
                           slash == NULL ? "." : path);
        } else {
            qref_error_set(err, QREF_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        }
        free(file->temp_path);
        file->temp_path = NULL; /* nothing was created */
        qref_atomic_file_abort(file);
        return QREF_ERR_IO;
    }
    return QREF_OK;
}

void qref_atomic_file_write(qref_atomic_file *file, const void *data, size_t size)
{
    const uint8_t *bytes = data;
    while (size > 0 && file->write_errno == 0) {
        ssize_t n = write(file->fd, bytes, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            file->write_errno = n < 0 ? errno : EIO;
            break;
        }
        bytes += n;
        size -= (size_t)n;
    }
}

qref_status qref_atomic_file_commit(qref_atomic_file *file, qref_error *err)
{
    int saved = file->write_errno;
    if (saved == 0 && fsync(file->fd) != 0)
        saved = errno;
    /* mkstemp creates the file with mode 0600; give it the mode a plain create would have. */
    fchmod(file->fd, 0644);
    if (close(file->fd) != 0 && saved == 0)
        saved = errno;
    file->fd = -1;
    if (saved != 0) {
        qref_error_set(err, QREF_ERR_IO, "%s: write failed: %s", file->path, strerror(saved));
        qref_atomic_file_abort(file);
        return QREF_ERR_IO;
    }
    if (rename(file->temp_path, file->path) != 0) {
        qref_error_set(err, QREF_ERR_IO, "%s: cannot rename the temporary file into place: %s", file->path,
                       strerror(errno));
        qref_atomic_file_abort(file);
        return QREF_ERR_IO;
    }
    free(file->temp_path);
    file->temp_path = NULL;
    qref_atomic_file_abort(file);
    return QREF_OK;
}

void qref_atomic_file_abort(qref_atomic_file *file)
{
    if (file->fd >= 0)
        close(file->fd);
    if (file->temp_path != NULL)
        unlink(file->temp_path);
    free(file->temp_path);
    free(file->path);
    memset(file, 0, sizeof *file);
    file->fd = -1;
}

qref_status qref_file_write_atomic(const char *path, const void *data, size_t size, qref_error *err)
{
    qref_atomic_file file;
    qref_status status = qref_atomic_file_open(&file, path, err);
    if (status != QREF_OK)
        return status;
    qref_atomic_file_write(&file, data, size);
    return qref_atomic_file_commit(&file, err);
}
