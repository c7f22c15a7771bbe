/*
 * Atomic output files: what replaces what. A new path and a regular file are written whole;
 * a symbolic link keeps pointing at its target, which is replaced; a folder, a FIFO or a
 * missing parent folder is refused with a message naming the path, and leaves nothing behind.
 */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/qref_blob.h"

static void write_regular_file_whole(void **state)
{
    (void)state;
    const char *path = test_tmp_path("blob_regular.txt");
    unlink(path);
    qref_error err = {0};
    assert_int_equal(qref_file_write_atomic(path, "first", 5, &err), QREF_OK);
    assert_int_equal(qref_file_write_atomic(path, "second", 6, &err), QREF_OK);
    size_t size = 0;
    char *text = test_read_file(path, &size);
    assert_int_equal(size, 6);
    assert_memory_equal(text, "second", 6);
    free(text);
}

static void symlink_target_replaced(void **state)
{
    (void)state;
    char target[4096], link[4096];
    snprintf(target, sizeof target, "%s", test_tmp_path("blob_target.txt"));
    snprintf(link, sizeof link, "%s", test_tmp_path("blob_link.txt"));
    unlink(link);
    test_write_file(target, "old", 3);
    assert_int_equal(symlink(target, link), 0);
    qref_error err = {0};
    assert_int_equal(qref_file_write_atomic(link, "new", 3, &err), QREF_OK);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    char *text = test_read_file(target, NULL);
    assert_memory_equal(text, "new", 3);
    free(text);
}

static void folder_and_fifo_refused(void **state)
{
    (void)state;
    char folder[4096], fifo[4096];
    snprintf(folder, sizeof folder, "%s", test_tmp_path("blob_folder"));
    snprintf(fifo, sizeof fifo, "%s", test_tmp_path("blob_fifo"));
    mkdir(folder, 0755);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    qref_error err = {0};
    test_assert_error(qref_file_write_atomic(folder, "x", 1, &err), &err, QREF_ERR_IO, "is not a regular file");
    assert_non_null(strstr(err.message, folder));
    test_assert_error(qref_file_write_atomic(fifo, "x", 1, &err), &err, QREF_ERR_IO, "is not a regular file");
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
}

static void missing_parent_named(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s", test_tmp_path("blob_missing/sub/file.bin"));
    qref_error err = {0};
    test_assert_error(qref_file_write_atomic(path, "x", 1, &err), &err, QREF_ERR_IO, "blob_missing/sub does not exist");
    /* the message starts with the path as given, not with freed or reused memory */
    assert_int_equal(strncmp(err.message, path, strlen(path)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(write_regular_file_whole),
        cmocka_unit_test(symlink_target_replaced),
        cmocka_unit_test(folder_and_fifo_refused),
        cmocka_unit_test(missing_parent_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
