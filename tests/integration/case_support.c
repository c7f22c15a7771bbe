#include "case_support.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/qref_blob.h"

static const char *program_name = "case generator";

void case_support_init(const char *program)
{
    program_name = program;
}

void case_fail(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "%s: ", program_name);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    exit(1);
}

void case_check_status(qref_status status, const qref_error *err)
{
    if (status != QREF_OK)
        case_fail("%s", err->message);
}

void *case_allocate(size_t size)
{
    void *memory = calloc(1, size ? size : 1);
    if (memory == NULL)
        case_fail("out of memory for %zu bytes", size);
    return memory;
}

char *case_join_path(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, CASE_PATH_SIZE, "%s/%s", dir, name);
    if (n < 0 || n >= CASE_PATH_SIZE)
        case_fail("path %s/%s is too long", dir, name);
    return out;
}

void case_make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        case_fail("%s: cannot create the folder: %s", path, strerror(errno));
}

void case_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return;
        case_fail("%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0)
            case_fail("%s: cannot remove: %s", path, strerror(errno));
        return;
    }
    DIR *dir = opendir(path);
    if (dir == NULL)
        case_fail("%s: cannot open the folder: %s", path, strerror(errno));
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        char child[CASE_PATH_SIZE];
        case_remove_tree(case_join_path(child, path, entry->d_name));
    }
    closedir(dir);
    if (rmdir(path) != 0)
        case_fail("%s: cannot remove the folder: %s", path, strerror(errno));
}

void case_write_file(const char *path, const void *data, size_t size)
{
    qref_error err = {0};
    case_check_status(qref_file_write_atomic(path, data, size, &err), &err);
}

void case_write_text(const char *path, const char *text)
{
    case_write_file(path, text, strlen(text));
}

char *case_read_file(const char *path, size_t *size)
{
    char *data = NULL;
    qref_error err = {0};
    case_check_status(qref_file_read_all(path, CASE_READ_MAX_SIZE, &data, size, &err), &err);
    return data;
}

void case_copy_file(const char *from, const char *to)
{
    qref_blob blob;
    qref_error err = {0};
    case_check_status(qref_blob_map_file(from, &blob, &err), &err);
    case_write_file(to, blob.data, blob.size);
    qref_blob_free(&blob);
}

char *case_replace_once(const char *text, const char *from, const char *to)
{
    size_t count = 0, from_length = strlen(from);
    for (const char *p = strstr(text, from); p != NULL; p = strstr(p + 1, from))
        count++;
    if (count != 1)
        case_fail("\"%s\" occurs %zu times in the text to edit, expected once", from, count);

    const char *at = strstr(text, from);
    size_t before = (size_t)(at - text), to_length = strlen(to);
    char *out = case_allocate(strlen(text) - from_length + to_length + 1);
    memcpy(out, text, before);
    memcpy(out + before, to, to_length);
    strcpy(out + before + to_length, at + from_length);
    return out;
}

int case_compare_entries(const void *a, const void *b)
{
    return strcmp(((const qref_safetensors_entry *)a)->name, ((const qref_safetensors_entry *)b)->name);
}

uint64_t case_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t case_fnv1a(uint64_t hash, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
        hash = (hash ^ *p) * 0x100000001b3ull;
    return hash;
}
