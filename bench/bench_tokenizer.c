/*
 * Tokenizer throughput: encodes about 10 MB of WikiText-2 (wiki.test.raw repeated) with the
 * LLaMA-3 tokenizer, read from tokenizer.json and from Meta's tiktoken tokenizer.model, and
 * with the LLaMA-2 SentencePiece tokenizer.model, on one thread. Prints MB/s (10^6 bytes per
 * second, best of three runs) for each and the ratio of the BPE speeds to the SentencePiece
 * speed measured in the same run, so machines of different speed give comparable ratios.
 *
 *   bench_tokenizer FIXTURES_DIR
 *
 * Exits 1 when a tokenizer fails to load or encode, or when the two LLaMA-3 files give
 * different ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/qref_blob.h"
#include "model/qref_tokenizer.h"

/* The text is whole copies of wiki.test.raw, at least this many bytes. */
#define BENCH_TEXT_BYTES 10000000u
#define BENCH_RUNS 3

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

typedef struct bench_result {
    double seconds; /* best of BENCH_RUNS */
    int32_t *ids;
    size_t count;
} bench_result;

/* Encodes text BENCH_RUNS times and keeps the fastest time and the last ids. */
static int bench_encode(const char *label, const qref_tokenizer *tokenizer, const char *text, size_t length,
                        bench_result *result)
{
    result->seconds = 0.0;
    for (int run = 0; run < BENCH_RUNS; run++) {
        free(result->ids);
        result->ids = NULL;
        qref_error err = {0};
        double start = seconds_now();
        qref_status status = qref_tokenizer_encode(tokenizer, text, length, false, &result->ids, &result->count, &err);
        double elapsed = seconds_now() - start;
        if (status != QREF_OK) {
            fprintf(stderr, "bench_tokenizer: %s: %s\n", label, err.message);
            return 1;
        }
        if (run == 0 || elapsed < result->seconds)
            result->seconds = elapsed;
    }
    printf("%-40s %9zu ids  %7.3f s  %7.2f MB/s\n", label, result->count, result->seconds,
           (double)length / result->seconds / 1e6);
    return 0;
}

static qref_tokenizer *load(const char *fixtures, const char *relative)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", fixtures, relative);
    qref_tokenizer *tokenizer = NULL;
    qref_error err = {0};
    if (qref_tokenizer_load_path(path, &tokenizer, &err) != QREF_OK)
        fprintf(stderr, "bench_tokenizer: %s\n", err.message);
    return tokenizer;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_tokenizer FIXTURES_DIR\n");
        return 2;
    }
    const char *fixtures = argv[1];

    /* 1. the text: whole copies, so no UTF-8 character is cut */
    char path[4096];
    snprintf(path, sizeof path, "%s/datasets/wikitext-2-raw/wiki.test.raw", fixtures);
    char *raw = NULL;
    size_t raw_size = 0;
    qref_error err = {0};
    if (qref_file_read_all(path, (size_t)64 << 20, &raw, &raw_size, &err) != QREF_OK || raw_size == 0) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.message);
        return 1;
    }
    size_t copies = (BENCH_TEXT_BYTES + raw_size - 1) / raw_size;
    size_t length = copies * raw_size;
    char *text = malloc(length);
    if (text == NULL) {
        fprintf(stderr, "bench_tokenizer: out of memory for %zu bytes\n", length);
        return 1;
    }
    for (size_t c = 0; c < copies; c++)
        memcpy(text + c * raw_size, raw, raw_size);
    free(raw);
    printf("text: %zu bytes (%zu copies of wiki.test.raw), one thread, best of %d runs\n", length, copies,
           BENCH_RUNS);

    /* 2. the three tokenizers */
    qref_tokenizer *json = load(fixtures, "tokenizers/llama3/tokenizer.json");
    qref_tokenizer *tiktoken = load(fixtures, "tokenizers/llama3/tokenizer.model");
    qref_tokenizer *sentencepiece = load(fixtures, "tokenizers/llama2/tokenizer.model");
    int failed = json == NULL || tiktoken == NULL || sentencepiece == NULL;

    bench_result results[3] = {{0}};
    if (!failed)
        failed = bench_encode("LLaMA-3 tokenizer.json (byte-level BPE)", json, text, length, &results[0]) ||
                 bench_encode("LLaMA-3 tokenizer.model (tiktoken)", tiktoken, text, length, &results[1]) ||
                 bench_encode("LLaMA-2 tokenizer.model (SentencePiece)", sentencepiece, text, length, &results[2]);

    /* 3. the ratios, and a check that both LLaMA-3 files gave the same ids */
    if (!failed) {
        printf("speed ratio tokenizer.json / SentencePiece: %.2f\n", results[2].seconds / results[0].seconds);
        printf("speed ratio tiktoken / SentencePiece:       %.2f\n", results[2].seconds / results[1].seconds);
        if (results[0].count != results[1].count ||
            memcmp(results[0].ids, results[1].ids, results[0].count * sizeof *results[0].ids) != 0) {
            fprintf(stderr, "bench_tokenizer: tokenizer.json and tokenizer.model gave different ids\n");
            failed = 1;
        }
    }
    for (int i = 0; i < 3; i++)
        free(results[i].ids);
    qref_tokenizer_free(json);
    qref_tokenizer_free(tiktoken);
    qref_tokenizer_free(sentencepiece);
    free(text);
    return failed ? 1 : 0;
}
