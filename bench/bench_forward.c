/*
 * Forward throughput: runs stories260k (fixtures/models/stories260k) over 64 windows of 512
 * tokens of WikiText-2 with one OpenMP thread and with every available thread, and prints
 * tokens per second for each and the speed-up measured in the same run. Exits 1 when the
 * model cannot be read or when the two runs' logits differ in any bit (the thread count must
 * not change results).
 *
 *   bench_forward FIXTURES_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "core/qref_sha256.h"
#include "io/qref_dataset.h"
#include "io/qref_snapshot.h"
#include "model/qref_config.h"
#include "model/qref_llama.h"
#include "model/qref_tensor_weights.h"
#include "model/qref_tokenizer.h"

#define BENCH_WINDOWS 64
#define BENCH_SEQ_LEN 512

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* Folds every logit row into one SHA-256, in window and position order. */
static qref_status digest_logits(void *ctx, size_t window, int position, int count, const float *logits,
                                 qref_error *err)
{
    (void)window;
    (void)position;
    (void)err;
    qref_sha256_update(ctx, logits, (size_t)count * 512 * sizeof(float));
    return QREF_OK;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_forward FIXTURES_DIR\n");
        return 2;
    }
    char path[4096];
    qref_error err = {0};
    qref_snapshot *snapshot = NULL;
    qref_tokenizer *tokenizer = NULL;
    qref_wikitext wikitext = {0};
    int32_t *ids = NULL;
    size_t count = 0;
    qref_llama_config config;

    snprintf(path, sizeof path, "%s/models/stories260k", argv[1]);
    if (qref_snapshot_open(path, &snapshot, &err) != QREF_OK)
        goto fail;
    const qref_blob *config_json = qref_snapshot_find_file(snapshot, "config.json");
    if (config_json == NULL ||
        qref_llama_config_parse("config.json", (const char *)config_json->data, config_json->size, &config, &err))
        goto fail;
    if (qref_tokenizer_load_snapshot(snapshot, &tokenizer, &err) != QREF_OK)
        goto fail;
    snprintf(path, sizeof path, "%s/datasets/wikitext-2-raw/wiki.test.raw", argv[1]);
    if (qref_wikitext_load_file(path, QREF_WIKITEXT_TEST, &wikitext, &err) != QREF_OK)
        goto fail;
    if (qref_tokenizer_encode(tokenizer, wikitext.study_text, wikitext.study_size, true, &ids, &count, &err))
        goto fail;
    if (count < (size_t)BENCH_WINDOWS * BENCH_SEQ_LEN) {
        fprintf(stderr, "bench_forward: %zu tokens, expected at least %d\n", count, BENCH_WINDOWS * BENCH_SEQ_LEN);
        return 1;
    }

    qref_tensor_weights tensor_weights = {qref_snapshot_tensors(snapshot), NULL, NULL};
    qref_weight_provider weights;
    qref_tensor_weights_provider(&tensor_weights, &weights);
    int max_threads = omp_get_max_threads();
    int thread_counts[2] = {1, max_threads};
    double tokens_per_second[2];
    uint8_t digests[2][QREF_SHA256_SIZE];
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(thread_counts[run]);
        qref_sha256 *digest = qref_sha256_init();
        double start = seconds_now();
        if (qref_llama_forward(&config, &weights, ids, BENCH_WINDOWS, BENCH_SEQ_LEN, NULL, digest_logits, digest,
                               &err) != QREF_OK)
            goto fail;
        double elapsed = seconds_now() - start;
        qref_sha256_final(digest, digests[run]);
        tokens_per_second[run] = (double)BENCH_WINDOWS * BENCH_SEQ_LEN / elapsed;
        printf("stories260k forward, %d thread%s: %.0f tokens/s\n", thread_counts[run], thread_counts[run] == 1 ? "" : "s",
               tokens_per_second[run]);
    }
    printf("speed-up with %d threads over 1: %.2fx\n", max_threads, tokens_per_second[1] / tokens_per_second[0]);
    if (memcmp(digests[0], digests[1], sizeof digests[0]) != 0) {
        fprintf(stderr, "bench_forward: logits differ between 1 and %d threads\n", max_threads);
        return 1;
    }
    printf("logits identical with 1 and %d threads\n", max_threads);
    free(ids);
    qref_wikitext_free(&wikitext);
    qref_tokenizer_free(tokenizer);
    qref_snapshot_free(snapshot);
    return 0;

fail:
    fprintf(stderr, "bench_forward: %s\n", err.message);
    return 1;
}
