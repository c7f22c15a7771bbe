/*
 * Helpers shared by the programs that write integration-test inputs (make_malformed,
 * make_gptq_cases and the others): failures that print "PROGRAM: message" and exit 1, paths,
 * files and folders, text edits, and the seeded SplitMix64 stream each case draws from.
 *
 * These are for short-lived generator programs only: every helper exits the process on
 * failure instead of returning an error, so a generator's main reads as the list of cases.
 */
#ifndef QCONFORM_CASE_SUPPORT_H
#define QCONFORM_CASE_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/qref_error.h"
#include "io/qref_safetensors.h"

/* Size of every path buffer that case_join_path writes. */
#define CASE_PATH_SIZE 4096

/* Largest file that case_read_file reads. */
#define CASE_READ_MAX_SIZE (64u << 20)

/* Offset basis of 64-bit FNV-1a: pass it to case_fnv1a to hash text on its own. */
#define CASE_FNV1A_BASIS 0xcbf29ce484222325ull

/* Sets the program name that case_fail prints before each message. Call it first in main. */
void case_support_init(const char *program);

/* Prints "PROGRAM: message" and a newline to stderr, PROGRAM as set by case_support_init, and exits 1. */
__attribute__((format(printf, 1, 2), noreturn))
void case_fail(const char *fmt, ...);

/* Fails with err's message unless status is QREF_OK. */
void case_check_status(qref_status status, const qref_error *err);

/* Returns size zeroed bytes (at least one) from calloc, failing when memory runs out. */
void *case_allocate(size_t size);

/* Writes "dir/name" into out, which has CASE_PATH_SIZE bytes, and returns out. */
char *case_join_path(char *out, const char *dir, const char *name);

/* Creates the folder path. A folder already at path is not an error. */
void case_make_dir(const char *path);

/* Removes path and, when it is a folder, everything in it. Symbolic links are removed, never followed. */
void case_remove_tree(const char *path);

/* Writes size bytes to path atomically (a temporary file renamed over path). */
void case_write_file(const char *path, const void *data, size_t size);

/* Writes text, without its NUL, to path atomically. */
void case_write_text(const char *path, const char *text);

/*
 * Reads the whole file (at most CASE_READ_MAX_SIZE bytes) into a NUL-terminated heap buffer
 * that the caller frees. Stores its length in *size unless size is NULL.
 */
char *case_read_file(const char *path, size_t *size);

/* Copies the bytes of the file from to the file to, replacing it. */
void case_copy_file(const char *from, const char *to);

/* Returns a heap copy of text with its only occurrence of from replaced by to. */
char *case_replace_once(const char *text, const char *from, const char *to);

/* qsort comparator: orders qref_safetensors_entry items by tensor name (strcmp). */
int case_compare_entries(const void *a, const void *b);

/*
 * Advances the SplitMix64 state and returns the next value (Steele, Lea and Flood, "Fast
 * splittable pseudorandom number generators", 2014).
 */
uint64_t case_rng_next(uint64_t *state);

/* Continues the 64-bit FNV-1a hash from hash over the bytes of text and returns it. */
uint64_t case_fnv1a(uint64_t hash, const char *text);

#endif
