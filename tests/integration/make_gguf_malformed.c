/*
 * Writes GGUF models that parse as GGUF but break the model they claim to be, one per failure
 * kind, from fixtures/models/synth256-gguf/synth256-f32.gguf:
 *
 *   gguf_wrong_shape.gguf       blk.0.attn_k.weight with 64 rows where the config implies 128
 *   gguf_missing_tensor.gguf    blk.1.ffn_down.weight left out
 *   gguf_unsupported_type.gguf  blk.0.ffn_up.weight stored as IQ2_XXS (valid, no dequantizer here)
 *   gguf_not_llama.gguf         general.architecture "gptneox"
 *
 *   make_gguf_malformed SYNTH256_F32_GGUF OUTPUT_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/qref_error.h"
#include "io/qref_gguf.h"
#include "test_gguf_writer.h"

typedef struct edit {
    const char *file;
    const char *short_tensor;    /* written with half its rows */
    const char *dropped_tensor;  /* left out */
    const char *iq2_tensor;      /* written as zero IQ2_XXS blocks (66 bytes per 256 values) */
    const char *architecture;    /* replaces general.architecture */
} edit;

static int write_edit(const qref_gguf *g, const edit *e, const char *dir)
{
    test_gguf_writer w = {0};
    for (size_t i = 0; i < g->kv_count; i++) {
        const qref_gguf_kv *kv = &g->kvs[i];
        if (e->architecture != NULL && strcmp(kv->key, "general.architecture") == 0)
            test_gguf_kv_string(&w, kv->key, e->architecture);
        else
            test_gguf_copy_kv(&w, g, kv);
    }
    for (size_t i = 0; i < g->tensor_count; i++) {
        const qref_gguf_tensor *t = &g->tensors[i];
        int64_t ne[QREF_GGUF_MAX_DIMS];
        memcpy(ne, t->ne, sizeof ne);
        if (e->dropped_tensor != NULL && strcmp(t->name, e->dropped_tensor) == 0)
            continue;
        if (e->short_tensor != NULL && strcmp(t->name, e->short_tensor) == 0) {
            ne[1] /= 2;
            test_gguf_tensor(&w, t->name, t->n_dims, ne, t->type, t->data, (size_t)(t->nbytes / 2));
        } else if (e->iq2_tensor != NULL && strcmp(t->name, e->iq2_tensor) == 0) {
            size_t bytes = (size_t)(t->numel / 256 * 66);
            uint8_t *zeros = calloc(bytes, 1);
            if (zeros == NULL)
                return 1;
            test_gguf_tensor(&w, t->name, t->n_dims, ne, QREF_GGML_TYPE_IQ2_XXS, zeros, bytes);
            free(zeros);
        } else {
            test_gguf_tensor(&w, t->name, t->n_dims, ne, t->type, t->data, (size_t)t->nbytes);
        }
    }
    size_t size = 0;
    uint8_t *bytes = test_gguf_finish(&w, &size);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->file);
    FILE *out = fopen(path, "wb");
    int failed = out == NULL || fwrite(bytes, 1, size, out) != size;
    if (out != NULL && fclose(out) != 0)
        failed = 1;
    free(bytes);
    if (failed)
        fprintf(stderr, "make_gguf_malformed: cannot write %s\n", path);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: make_gguf_malformed SYNTH256_F32_GGUF OUTPUT_DIR\n");
        return 2;
    }
    mkdir(argv[2], 0777);
    qref_gguf g;
    qref_error err = {0};
    if (qref_gguf_open(argv[1], &g, &err) != QREF_OK) {
        fprintf(stderr, "make_gguf_malformed: %s\n", err.message);
        return 1;
    }
    const edit edits[] = {
        {.file = "gguf_wrong_shape.gguf", .short_tensor = "blk.0.attn_k.weight"},
        {.file = "gguf_missing_tensor.gguf", .dropped_tensor = "blk.1.ffn_down.weight"},
        {.file = "gguf_unsupported_type.gguf", .iq2_tensor = "blk.0.ffn_up.weight"},
        {.file = "gguf_not_llama.gguf", .architecture = "gptneox"},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++)
        failed |= write_edit(&g, &edits[i], argv[2]);
    qref_gguf_free(&g);
    return failed;
}
